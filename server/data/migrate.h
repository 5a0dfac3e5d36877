/* Migrations: migrations/NNNN_name.json, each {"description": "...",
 * "commands": [<database command>, ...]}, applied once each, in name order,
 * recorded in the `_migrations` collection with a SHA-256 of the file.
 *
 * A migration is claimed by inserting its record ({_id: name, state:
 * "applying"}): the unique _id lets one process apply it while others wait
 * for state "done". A claim older than a minute belonged to a process that
 * died and is taken over. Commands must be safe to run twice
 * (createIndexes is; inserts of reference data use upserts). An applied
 * migration whose file changed stops start-up. Blocking: worker or main
 * thread only. */
#ifndef TR_MIGRATE_H
#define TR_MIGRATE_H

#include <stddef.h>

#include "config.h"

/* 0 when every migration is applied; -1 with err filled. *fatal is set
 * when retrying cannot help (edited migration, malformed file). */
int tr_migrate_run(const struct tr_config *cfg, char *err, size_t errlen);
int tr_migrate_run_checked(const struct tr_config *cfg, char *err, size_t errlen, int *fatal);

#endif
