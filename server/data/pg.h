/* The PostgreSQL behind the embedded database (FerretDB v1.24 with its
 * PostgreSQL backend), reached with libpq for the two things FerretDB
 * cannot do itself: indexes its pushed-down filters can use, and telling
 * /readyz that PostgreSQL, not FerretDB, is what is down.
 *
 * FerretDB stores a collection as a table with one jsonb column `_jsonb`
 * (its name is in the database schema's `_ferretdb_database_metadata`) and
 * pushes a top-level equality {f: v} down as `_jsonb->'f' @> v`. The btree
 * indexes its createIndexes builds cannot serve `@>`; a GIN index on the
 * expression can. So migrations declare, per collection, the fields that
 * are filtered by equality:
 *
 *     {"postgresqlIndexes": "leads", "equality": ["_id", "tenant_id", "status"]}
 *
 * and this file builds `USING gin ((_jsonb->'f') jsonb_path_ops)` for each.
 * On MongoDB (postgresql_uri empty) the step is skipped: its own indexes
 * serve the same queries.
 *
 * Everything here blocks: worker or main thread only. */
#ifndef TR_PG_H
#define TR_PG_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stddef.h>

#include "config.h"

/* Is there a PostgreSQL to talk to (postgresql_uri set)? */
bool tr_pg_configured(const struct tr_config *cfg);

/* 0 when PostgreSQL accepts connections, TR_EUNAVAILABLE otherwise. */
int tr_pg_ping(const struct tr_config *cfg);

/* Runs one {"postgresqlIndexes": coll, "equality": [...]} migration step
 * on the database schema `schema` (the MongoDB database name). ensure_coll
 * is called when FerretDB has no table for coll yet and must create the
 * collection (returns 0 or -1). Builds the missing indexes concurrently, so
 * writers are not blocked; an index a failed build left invalid is rebuilt.
 * 0, or -1 with err filled. */
int tr_pg_equality_indexes(const struct tr_config *cfg, const char *schema, const bson_t *step,
			   int (*ensure_coll)(void *arg, const char *coll), void *arg, char *err,
			   size_t errlen);

#endif
