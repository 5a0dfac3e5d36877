/* The platform side of the data layer: the mongoc client pool, what a
 * handle holds, the idempotency store, health and maintenance. Module code
 * uses db.h instead, and never includes this header (make test checks). */
#ifndef TR_DBPOOL_H
#define TR_DBPOOL_H

#include <mongoc/mongoc.h>
#include <stdbool.h>

#include "config.h"
#include "db.h"
#include "module.h"

/* Creates the pool (thread-safe, size = workers). Main thread, at start. */
int tr_dbpool_init(const struct tr_config *cfg, char *err, size_t errlen);
void tr_dbpool_free(void);

/* A tenant-scoped handle: lives for one handler call on one worker thread.
 * Only the data layer looks inside. */
struct tr_db {
	mongoc_client_t *client;
	mongoc_database_t *database;
	bool has_tenant;
	bson_oid_t tenant_id;
	const struct tr_principal *principal;
	uint64_t elapsed_ns;
	long long conflict_version; /* what a refused write found (TR_EVERSION, TR_EBUSY) */
};

/* The framework, once a module's authenticate_key hook resolved an API
 * key into principal: the handle now acts for it (its tenant, and its user
 * for idempotency keys). principal must outlive the handle. */
void tr_db_act_for(struct tr_db *db, const struct tr_principal *principal);

/* Seconds spent in MongoDB through this handle, and whether any call found
 * MongoDB unavailable. */
double tr_db_elapsed(const struct tr_db *db);

/* Platform access to a database handle (migrations, health, maintenance).
 * Pops a pooled client: push it back with tr_dbpool_push. */
mongoc_client_t *tr_dbpool_pop(void);
void tr_dbpool_push(mongoc_client_t *client);
mongoc_database_t *tr_dbpool_database(mongoc_client_t *client);

/* Maps a mongoc error to a TR_E* code. */
int tr_db_err_from_mongoc(const bson_error_t *error);

/* For the data layer's own files (db.c, dblist.c, seq.c, register.c):
 * a collection of the handle's database (destroy it), an error mapped and
 * logged when unexpected, and filter with the handle's tenant_id added
 * (any tenant_id in filter dropped). */
mongoc_collection_t *tr_db_collection(struct tr_db *db, const char *name);
const struct tr_config *tr_db_config(void);
/* Fields the layer owns (_id, tenant_id, version, dates, _b, _cd): callers
 * cannot set them. */
bool tr_db_reserved_field(const char *key);
int tr_db_fail(const char *op, const char *coll, const bson_error_t *e);
void tr_db_scoped_filter(struct tr_db *db, const bson_t *filter, bson_t *out);
/* The first document of coll matching filter as given (no tenant added),
 * into *out (initialised by the call); TR_ENOTFOUND. */
int tr_db_first(struct tr_db *db, const char *coll, const bson_t *filter, bson_t *out);

/* Worker thread: posts the effects of changes whose writer stopped
 * between its write and its effects, and clears claims of writers that
 * stopped before writing (stale claims, past claim_lease_ms). Run by every
 * process now and then; safe to run anywhere at once. */
int tr_db_settle(void);

/* Worker thread: `ping`; 0 or TR_EUNAVAILABLE. */
int tr_dbpool_ping(void);

/* Idempotency-Key store, run by the framework around TR_IDEMPOTENT
 * handlers on the worker thread. begin() returns 0 when the handler should
 * run (the key is claimed, or no key was sent), 1 when resp was answered
 * from the store (a replay, a reused key, a request still in progress), or a
 * negative TR_E* code. finish() records the response (status < 500) or
 * releases the key (>= 500) so that the client may retry. */
struct tr_idem {
	bool claimed;
	bson_oid_t record_id;
};
int tr_idem_begin(struct tr_db *db, struct tr_ctx *c, struct tr_idem *idem);
void tr_idem_finish(struct tr_db *db, const struct tr_idem *idem, const struct tr_resp *resp,
		    const char *body, size_t body_len);
/* Deletes keys older than 24 h, for every tenant. Worker thread. */
int tr_idem_expire(void);

#endif
