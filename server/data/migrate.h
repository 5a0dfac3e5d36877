/* Migrations: NNNN_name.json files, each {"description": "...",
 * "commands": [<database command>, ...]}, applied once each, recorded in
 * the `_migrations` collection with a SHA-256 of the file. The platform's
 * are in migrations_dir (migrations/) and recorded by name
 * ("0001_platform"); a module's are in the folder its tr_module declares
 * (modules/crm/migrations) and recorded as "<module>/<name>"
 * ("crm/0001_crm"). Order: the platform's, then each module's in registry
 * order, each folder in name order.
 *
 * Steps for the PostgreSQL behind FerretDB ({"postgresqlIndexes": ...},
 * pg.h) run only when postgresql_uri is set, recorded as
 * "<name>@postgresql". A migration whose steps were moved out of ones
 * already applied names them in "replaces" and is recorded without running
 * on a database that has them all (migrate.c, replaced_done).
 *
 * A migration is claimed by inserting its record ({_id: name, state:
 * "applying"}): the unique _id lets one process apply it while others wait
 * for state "done". A claim older than a minute belonged to a process that
 * died and is taken over. Commands must be safe to run twice
 * (createIndexes is, sent one index at a time for FerretDB's sake; inserts
 * of reference data use upserts). An applied migration whose file changed
 * stops start-up. Blocking: worker or main thread only. */
#ifndef TR_MIGRATE_H
#define TR_MIGRATE_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

/* 0 when every migration is applied; -1 with err filled. *fatal is set
 * when retrying cannot help (edited migration, malformed file). */
int tr_migrate_run(const struct tr_config *cfg, char *err, size_t errlen);
int tr_migrate_run_checked(const struct tr_config *cfg, char *err, size_t errlen, int *fatal);

/* Renames a single Redis's keys from the names before hash tags
 * (keymigrate.c). Once: a marker key remembers a finished pass, unless
 * always (`trellis migrate` runs it every time). Safe to run from several
 * processes at once. Nothing to do in cluster mode. 0, or -1 with err. */
int tr_migrate_redis_keys(const struct tr_config *cfg, bool always, char *err, size_t errlen);

#endif
