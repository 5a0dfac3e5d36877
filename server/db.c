#include "db.h"
#include "dbpool.h"

#include <pthread.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "log.h"
#include "seq.h"
#include "util.h"

static int find_first(struct tr_db *db, const char *coll, const bson_t *filter, bson_t *out);

/* Set once at start by the main thread; the pool itself is thread-safe. */
static struct {
	mongoc_client_pool_t *pool;
	mongoc_uri_t *uri;
	const struct tr_config *cfg;
} P;

/* mongoc's own log lines, into ours. FerretDB has no endSessions; the
 * driver's warning about it at shutdown is noise. */
static void
mongoc_log_cb(mongoc_log_level_t level, const char *domain, const char *message, void *arg)
{
	(void)arg;
	if (level > MONGOC_LOG_LEVEL_WARNING || strstr(message, "endSessions"))
		return;
	tr_log(level == MONGOC_LOG_LEVEL_WARNING ? TR_LOG_WARN : TR_LOG_ERROR, "mongoc %s: %s",
	       domain, message);
}

int
tr_dbpool_init(const struct tr_config *cfg, char *err, size_t errlen)
{
	bson_error_t error;

	mongoc_log_set_handler(mongoc_log_cb, NULL);
	mongoc_init();
	P.cfg = cfg;
	P.uri = mongoc_uri_new_with_error(cfg->mongo_uri, &error);
	if (!P.uri) {
		snprintf(err, errlen, "mongo_uri is not a valid MongoDB URI: %s", error.message);
		return -1;
	}
	/* Fail fast when the database is away, so requests answer 503 within
	 * about dep_timeout_ms instead of hanging; the URI may override. */
	if (!mongoc_uri_has_option(P.uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS))
		mongoc_uri_set_option_as_int32(P.uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS,
					       cfg->dep_timeout_ms);
	if (!mongoc_uri_has_option(P.uri, MONGOC_URI_CONNECTTIMEOUTMS))
		mongoc_uri_set_option_as_int32(P.uri, MONGOC_URI_CONNECTTIMEOUTMS,
					       cfg->dep_timeout_ms);
	if (!mongoc_uri_has_option(P.uri, MONGOC_URI_HEARTBEATFREQUENCYMS))
		mongoc_uri_set_option_as_int32(P.uri, MONGOC_URI_HEARTBEATFREQUENCYMS, 1000);
	if (!mongoc_uri_has_option(P.uri, MONGOC_URI_SOCKETTIMEOUTMS))
		mongoc_uri_set_option_as_int32(P.uri, MONGOC_URI_SOCKETTIMEOUTMS, 30000);
	P.pool = mongoc_client_pool_new(P.uri);
	if (!P.pool) {
		snprintf(err, errlen, "mongo_uri: cannot create a client pool");
		return -1;
	}
	mongoc_client_pool_set_error_api(P.pool, MONGOC_ERROR_API_VERSION_2);
	mongoc_client_pool_set_appname(P.pool, "trellis");
	/* workers + the health check + maintenance: pop never waits for a
	 * client that another worker holds. */
	/* request workers, job threads, and two for the platform's own work */
	mongoc_client_pool_max_size(P.pool, (uint32_t)(cfg->workers + cfg->job_workers) + 2);
	return 0;
}

void
tr_dbpool_free(void)
{
	if (P.pool)
		mongoc_client_pool_destroy(P.pool);
	if (P.uri)
		mongoc_uri_destroy(P.uri);
	memset(&P, 0, sizeof(P));
	mongoc_cleanup();
}

mongoc_client_t *
tr_dbpool_pop(void)
{
	return mongoc_client_pool_pop(P.pool);
}

void
tr_dbpool_push(mongoc_client_t *client)
{
	mongoc_client_pool_push(P.pool, client);
}

mongoc_database_t *
tr_dbpool_database(mongoc_client_t *client)
{
	return mongoc_client_get_database(client, P.cfg->mongo_db);
}

int
tr_db_err_from_mongoc(const bson_error_t *e)
{
	if (e->code == 11000 || e->code == 11001)
		return TR_EDUPLICATE;
	/* FerretDB 1.24 reports a unique index violated by an update (not an
	 * insert) as code 1 with PostgreSQL's own message, and PostgreSQL
	 * being away as code 1 with the driver's. */
	if (e->domain == MONGOC_ERROR_SERVER && e->code == 1) {
		static const char *const away[] = {
		    "failed to connect", "write failed",   "broken pipe",      "connection refused",
		    "connection reset",	 "unexpected EOF", "SQLSTATE 57P",     "SQLSTATE 08",
		    "closed pool",	 "conn closed",	   "timeout: context", NULL};
		if (strstr(e->message, "SQLSTATE 23505"))
			return TR_EDUPLICATE;
		for (const char *const *a = away; *a; a++)
			if (strstr(e->message, *a))
				return TR_EUNAVAILABLE;
	}
	if (e->domain == MONGOC_ERROR_SERVER_SELECTION || e->domain == MONGOC_ERROR_STREAM ||
	    e->domain == MONGOC_ERROR_CLIENT)
		return TR_EUNAVAILABLE;
	return TR_EINTERNAL;
}

/* Logs an unexpected database error once and maps it. */
int
tr_db_fail(const char *op, const char *coll, const bson_error_t *e)
{
	int rc = tr_db_err_from_mongoc(e);

	if (rc == TR_EINTERNAL)
		tr_error("db: %s on %s failed: %s (domain %u, code %u)", op, coll, e->message,
			 e->domain, e->code);
	return rc;
}

int
tr_dbpool_ping(void)
{
	mongoc_client_t *client = tr_dbpool_pop();
	bson_t cmd = BSON_INITIALIZER;
	bson_error_t error;
	bool ok;

	BSON_APPEND_INT32(&cmd, "ping", 1);
	ok = mongoc_client_command_simple(client, "admin", &cmd, NULL, NULL, &error);
	bson_destroy(&cmd);
	tr_dbpool_push(client);
	return ok ? TR_OK : TR_EUNAVAILABLE;
}

struct tr_db *
tr_db_open(const struct tr_principal *principal)
{
	struct tr_db *db = calloc(1, sizeof(*db));

	if (!db)
		return NULL;
	db->client = tr_dbpool_pop();
	db->database = tr_dbpool_database(db->client);
	db->principal = principal;
	if (principal) {
		db->has_tenant = true;
		bson_oid_copy(&principal->tenant_id, &db->tenant_id);
	}
	return db;
}

void
tr_db_close(struct tr_db *db)
{
	if (!db)
		return;
	mongoc_database_destroy(db->database);
	tr_dbpool_push(db->client);
	free(db);
}

void
tr_db_set_tenant(struct tr_db *db, const bson_oid_t *tenant_id)
{
	db->has_tenant = true;
	bson_oid_copy(tenant_id, &db->tenant_id);
}

int
tr_db_find_global(struct tr_db *db, const char *coll, const bson_t *filter, bson_t *out)
{
	int rc = find_first(db, coll, filter, out);

	if (rc != TR_OK)
		bson_init(out);
	return rc;
}

double
tr_db_elapsed(const struct tr_db *db)
{
	return (double)db->elapsed_ns / 1e9;
}

const struct tr_config *
tr_db_config(void)
{
	return P.cfg;
}

mongoc_collection_t *
tr_db_collection(struct tr_db *db, const char *name)
{
	return mongoc_database_get_collection(db->database, name);
}

/* Field names the layer owns: callers cannot set them (an ObjectId _id on
 * insert is the exception, see tr_db_insert). */
static bool
reserved(const char *key)
{
	return strcmp(key, "_id") == 0 || strcmp(key, "tenant_id") == 0 ||
	       strcmp(key, "version") == 0 || strcmp(key, "created_at") == 0 ||
	       strcmp(key, "updated_at") == 0 || strcmp(key, "_seq") == 0 || strcmp(key, "_b") == 0;
}

int
tr_db_insert(struct tr_db *db, const char *coll, const bson_t *fields, bson_t *stored)
{
	bson_t doc = BSON_INITIALIZER;
	bson_error_t error;
	bson_iter_t it;
	bson_oid_t oid;
	mongoc_collection_t *c = NULL;
	int64_t now = tr_now_ms(), bucket = 0;
	uint64_t t0 = tr_mono_ns();
	int rc = TR_OK;

	bson_init(stored);
	if (!db->has_tenant)
		return TR_EINVALID;
	/* The caller may choose the id (an ObjectId), e.g. to make a create
	 * idempotent; otherwise a new one. */
	if (bson_iter_init_find(&it, fields, "_id") && BSON_ITER_HOLDS_OID(&it))
		bson_oid_copy(bson_iter_oid(&it), &oid);
	else
		bson_oid_init(&oid, NULL);
	BSON_APPEND_OID(&doc, "_id", &oid);
	BSON_APPEND_OID(&doc, "tenant_id", &db->tenant_id);
	if (bson_iter_init(&it, fields))
		while (bson_iter_next(&it))
			if (!reserved(bson_iter_key(&it)))
				bson_append_iter(&doc, bson_iter_key(&it), -1, &it);
	BSON_APPEND_DATE_TIME(&doc, "created_at", now);
	BSON_APPEND_DATE_TIME(&doc, "updated_at", now);
	BSON_APPEND_INT64(&doc, "version", 1);
	rc = tr_seq_bucket_for_insert(db, coll, &bucket);
	if (rc != TR_OK)
		goto out;
	tr_seq_stamp(db, &doc, bucket);
	c = tr_db_collection(db, coll);
	if (!mongoc_collection_insert_one(c, &doc, NULL, NULL, &error)) {
		rc = tr_db_fail("insert", coll, &error);
		goto out;
	}
	bson_copy_to(&doc, stored);
	bson_destroy(&doc);
	bson_init(&doc);
out:
	db->elapsed_ns += tr_mono_ns() - t0;
	mongoc_collection_destroy(c);
	bson_destroy(&doc);
	return rc;
}

#define IMPORT_BATCH 1000

int
tr_db_import(struct tr_db *db, const char *coll, bson_t **docs, size_t n)
{
	bson_error_t error;
	mongoc_collection_t *c;
	int64_t first;
	uint64_t t0 = tr_mono_ns();
	int rc;

	if (!db->has_tenant)
		return TR_EINVALID;
	if (n == 0)
		return TR_OK;
	/* whole buckets of their own, in order */
	rc = tr_seq_open_buckets(db, coll, (int64_t)((n + TR_SEQ_BUCKET - 1) / TR_SEQ_BUCKET),
				 &first);
	if (rc != TR_OK)
		return rc;
	for (size_t i = 0; i < n; i++)
		tr_seq_stamp(db, docs[i], first + (int64_t)(i / TR_SEQ_BUCKET));
	c = tr_db_collection(db, coll);
	for (size_t i = 0; i < n && rc == TR_OK; i += IMPORT_BATCH) {
		size_t k = n - i < IMPORT_BATCH ? n - i : IMPORT_BATCH;
		if (!mongoc_collection_insert_many(c, (const bson_t **)docs + i, k, NULL, NULL,
						   &error))
			rc = tr_db_fail("insert", coll, &error);
	}
	mongoc_collection_destroy(c);
	db->elapsed_ns += tr_mono_ns() - t0;
	return rc;
}

static int
find_first(struct tr_db *db, const char *coll, const bson_t *filter, bson_t *out)
{
	bson_t opts = BSON_INITIALIZER;
	const bson_t *doc;
	bson_error_t error;
	mongoc_collection_t *c = tr_db_collection(db, coll);
	mongoc_cursor_t *cur;
	uint64_t t0 = tr_mono_ns();
	int rc = TR_ENOTFOUND;

	BSON_APPEND_INT64(&opts, "limit", 1);
	cur = mongoc_collection_find_with_opts(c, filter, &opts, NULL);
	if (mongoc_cursor_next(cur, &doc)) {
		bson_copy_to(doc, out);
		rc = TR_OK;
	} else if (mongoc_cursor_error(cur, &error)) {
		rc = tr_db_fail("find", coll, &error);
	}
	mongoc_cursor_destroy(cur);
	mongoc_collection_destroy(c);
	bson_destroy(&opts);
	db->elapsed_ns += tr_mono_ns() - t0;
	return rc;
}

/* Looks the record up by _id alone and checks its tenant here: a record's
 * tenant never changes, so this answers exactly what {_id, tenant_id}
 * would, and a bare _id filter is the one FerretDB's SQLite backend pushes
 * down into SQL (several times faster than decoding every document). Another
 * tenant's record is reported as missing. */
int
tr_db_get(struct tr_db *db, const char *coll, const char *id, bson_t *out)
{
	bson_t filter = BSON_INITIALIZER;
	bson_iter_t it;
	bson_oid_t oid;
	int rc = TR_ENOTFOUND;

	if (db->has_tenant && tr_is_object_id(id)) {
		bson_oid_init_from_string(&oid, id);
		BSON_APPEND_OID(&filter, "_id", &oid);
		rc = find_first(db, coll, &filter, out); /* initialises out on success */
		if (rc == TR_OK &&
		    !(bson_iter_init_find(&it, out, "tenant_id") && BSON_ITER_HOLDS_OID(&it) &&
		      bson_oid_equal(bson_iter_oid(&it), &db->tenant_id))) {
			bson_destroy(out);
			rc = TR_ENOTFOUND;
		}
	}
	bson_destroy(&filter);
	if (rc != TR_OK)
		bson_init(out);
	return rc;
}

/* filter + tenant_id; fields named tenant_id in the caller's filter are
 * dropped, so a filter can never widen the scope. */
void
tr_db_scoped_filter(struct tr_db *db, const bson_t *filter, bson_t *out)
{
	bson_iter_t it;

	BSON_APPEND_OID(out, "tenant_id", &db->tenant_id);
	if (filter && bson_iter_init(&it, filter))
		while (bson_iter_next(&it))
			if (strcmp(bson_iter_key(&it), "tenant_id") != 0)
				bson_append_iter(out, bson_iter_key(&it), -1, &it);
}

int
tr_db_find_one(struct tr_db *db, const char *coll, const bson_t *filter, bson_t *out)
{
	bson_t scoped = BSON_INITIALIZER;
	int rc = TR_EINVALID;

	if (db->has_tenant) {
		tr_db_scoped_filter(db, filter, &scoped);
		rc = find_first(db, coll, &scoped, out);
	}
	bson_destroy(&scoped);
	if (rc != TR_OK)
		bson_init(out);
	return rc;
}

int
tr_db_each(struct tr_db *db, const char *coll, const bson_t *filter,
	   int (*visit)(void *arg, const bson_t *resource), void *arg)
{
	bson_t scoped = BSON_INITIALIZER, opts = BSON_INITIALIZER;
	bson_error_t error;
	const bson_t *doc;
	mongoc_collection_t *c;
	mongoc_cursor_t *cur;
	uint64_t t0 = tr_mono_ns();
	int rc = TR_OK;

	if (!db->has_tenant) {
		bson_destroy(&scoped);
		bson_destroy(&opts);
		return TR_EINVALID;
	}
	tr_db_scoped_filter(db, filter, &scoped);
	BSON_APPEND_INT32(&opts, "batchSize", 1000);
	c = tr_db_collection(db, coll);
	cur = mongoc_collection_find_with_opts(c, &scoped, &opts, NULL);
	while (rc == TR_OK && mongoc_cursor_next(cur, &doc)) {
		bson_t item = BSON_INITIALIZER;
		tr_render_resource(doc, &item);
		rc = visit(arg, &item);
		bson_destroy(&item);
	}
	if (rc == TR_OK && mongoc_cursor_error(cur, &error))
		rc = tr_db_fail("find", coll, &error);
	mongoc_cursor_destroy(cur);
	mongoc_collection_destroy(c);
	bson_destroy(&scoped);
	bson_destroy(&opts);
	db->elapsed_ns += tr_mono_ns() - t0;
	return rc;
}

int
tr_db_count(struct tr_db *db, const char *coll, const bson_t *filter, long long *n)
{
	bson_t scoped = BSON_INITIALIZER;
	bson_error_t err;
	mongoc_collection_t *c;
	uint64_t t0 = tr_mono_ns();
	int64_t count;

	if (!db->has_tenant) {
		bson_destroy(&scoped);
		return TR_EINVALID;
	}
	tr_db_scoped_filter(db, filter, &scoped);
	c = tr_db_collection(db, coll);
	count = mongoc_collection_count_documents(c, &scoped, NULL, NULL, NULL, &err);
	db->elapsed_ns += tr_mono_ns() - t0;
	mongoc_collection_destroy(c);
	bson_destroy(&scoped);
	if (count < 0)
		return tr_db_fail("count", coll, &err);
	*n = count;
	return TR_OK;
}

/* ---- exact writes: claims ----
 *
 * FerretDB v1.24 runs findAndModify and update as a read followed by a
 * whole-document write by _id, so a version check in the filter holds for
 * nobody but the writer that happens to read last: two writers that both
 * read version v both "succeed". What it does make atomic is a unique key
 * on insert. Every change of a record (tr_db_update, tr_db_delete) is
 * therefore made under a claim:
 *
 *   1. read the record: version v (or TR_EVERSION when If-Match names
 *      another one);
 *   2. insert the claim {_id: "<coll>/<id>/<v>/<gen>"} into _claims - of all
 *      writers of version v, in any process, exactly one inserts it;
 *   3. write the record, still conditional on version v, which now only the
 *      claim's holder can be writing;
 *   4. delete the claim.
 *
 * Writers that lose step 2 wait (up to claim_wait_ms) for the holder to
 * finish: once the record has moved on, a conditional write answers
 * TR_EVERSION and an unconditional one starts again from the new version;
 * if the holder gave up without writing, they claim again. Waiting longer
 * answers TR_EBUSY (409).
 *
 * A holder that dies between 2 and 3 (kill -9, a lost machine) leaves its
 * claim behind. A claim is a lease: past claim_lease_ms it is stale, and a
 * writer that finds a stale claim of the version the record still has
 * takes the next generation (<gen>+1, again a unique insert, so again one
 * writer) - the record is writable again at most claim_lease_ms after its
 * writer died. The other side of the lease: a holder that has not started
 * its write within half the lease gives the claim up (TR_EUNAVAILABLE)
 * rather than write on a lease that may be someone else's by then.
 *
 * Ids are canonical: the claim names the parsed ObjectId, so "ABC..." and
 * "abc..." are one record behind one claim. A striped mutex per process
 * keeps this process's writers of one record from racing each other for
 * the claim; it is an optimisation, not the guarantee. On MongoDB the
 * same steps run (its findAndModify would be atomic on its own; one code
 * path is one thing to test). */
#define CLAIMS "_claims"
#define STRIPES 64
static pthread_mutex_t stripes[STRIPES] = {[0 ... STRIPES - 1] = PTHREAD_MUTEX_INITIALIZER};

static pthread_mutex_t *
record_lock(const char *coll, const bson_oid_t *oid)
{
	uint32_t h = 2166136261u;
	for (const char *p = coll; *p; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	for (int i = 0; i < 12; i++)
		h = (h ^ oid->bytes[i]) * 16777619u;
	return &stripes[h % STRIPES];
}

struct claim {
	char key[128]; /* "<coll>/<id>/<version>": every generation's rk */
	char id[144];  /* key + "/<gen>" */
	uint64_t taken_ns;
};

/* The generation of the newest claim on key and whether it is still
 * live; *gen = -1 when there is none. */
static int
newest_claim(struct tr_db *db, const char *key, int *gen, bool *live)
{
	bson_t filter = BSON_INITIALIZER;
	const bson_t *doc;
	bson_error_t error;
	bson_iter_t it;
	mongoc_collection_t *c = tr_db_collection(db, CLAIMS);
	mongoc_cursor_t *cur;
	int64_t now = tr_now_ms();
	int rc = TR_OK;

	*gen = -1;
	*live = false;
	BSON_APPEND_UTF8(&filter, "rk", key);
	cur = mongoc_collection_find_with_opts(c, &filter, NULL, NULL);
	while (mongoc_cursor_next(cur, &doc)) {
		int g = bson_iter_init_find(&it, doc, "gen") ? (int)bson_iter_as_int64(&it) : 0;
		int64_t exp = bson_iter_init_find(&it, doc, "exp") && BSON_ITER_HOLDS_DATE_TIME(&it)
				  ? bson_iter_date_time(&it)
				  : 0;
		if (g > *gen) {
			*gen = g;
			*live = exp > now;
		}
	}
	if (mongoc_cursor_error(cur, &error))
		rc = tr_db_fail("find", CLAIMS, &error);
	mongoc_cursor_destroy(cur);
	mongoc_collection_destroy(c);
	bson_destroy(&filter);
	return rc;
}

/* Inserts claim generation gen of key; TR_EDUPLICATE when it exists. */
static int
insert_claim(struct tr_db *db, const char *coll, const bson_oid_t *oid, long long version, int gen,
	     struct claim *cl)
{
	bson_t doc = BSON_INITIALIZER;
	bson_error_t error;
	mongoc_collection_t *c = tr_db_collection(db, CLAIMS);
	int64_t now = tr_now_ms();
	int rc = TR_OK;

	snprintf(cl->id, sizeof(cl->id), "%s/%d", cl->key, gen);
	BSON_APPEND_UTF8(&doc, "_id", cl->id);
	BSON_APPEND_UTF8(&doc, "rk", cl->key);
	BSON_APPEND_OID(&doc, "tenant_id", &db->tenant_id);
	BSON_APPEND_UTF8(&doc, "coll", coll);
	BSON_APPEND_OID(&doc, "record", oid);
	BSON_APPEND_INT64(&doc, "version", version);
	BSON_APPEND_INT32(&doc, "gen", gen);
	BSON_APPEND_DATE_TIME(&doc, "at", now);
	BSON_APPEND_DATE_TIME(&doc, "exp", now + P.cfg->claim_lease_ms);
	if (!mongoc_collection_insert_one(c, &doc, NULL, NULL, &error))
		rc = tr_db_fail("insert", CLAIMS, &error);
	else
		cl->taken_ns = tr_mono_ns();
	mongoc_collection_destroy(c);
	bson_destroy(&doc);
	return rc;
}

/* Deletes every generation of the claim (the stale ones it replaced too).
 * Best effort: a claim left behind is only a stale lease. */
static void
release_claim(struct tr_db *db, const struct claim *cl)
{
	bson_t filter = BSON_INITIALIZER;
	mongoc_collection_t *c = tr_db_collection(db, CLAIMS);

	BSON_APPEND_UTF8(&filter, "rk", cl->key);
	mongoc_collection_delete_many(c, &filter, NULL, NULL, NULL);
	mongoc_collection_destroy(c);
	bson_destroy(&filter);
}

/* The record's current version (as the tenant sees it); TR_ENOTFOUND. */
static int
current_version(struct tr_db *db, const char *coll, const char *id, long long *version)
{
	bson_t doc;
	bson_iter_t it;
	int rc = tr_db_get(db, coll, id, &doc);

	if (rc == TR_OK)
		*version = bson_iter_init_find(&it, &doc, "version") ? bson_iter_as_int64(&it) : 0;
	bson_destroy(&doc);
	return rc;
}

/* Steps 1 and 2 above: reads the record and claims its version. On
 * success *version is the claimed version. TR_EVERSION when the record is
 * not at expected_version (> 0), TR_EBUSY when another writer held it for
 * longer than claim_wait_ms, TR_ENOTFOUND, TR_EUNAVAILABLE. */
static int
claim_record(struct tr_db *db, const char *coll, const char *id, const bson_oid_t *oid,
	     long long expected_version, long long *version, struct claim *cl)
{
	uint64_t deadline = tr_mono_ns() + (uint64_t)P.cfg->claim_wait_ms * 1000000ull;
	unsigned pause_ms = 2;
	char hex[25];
	int rc;

	bson_oid_to_string(oid, hex);
	for (;;) {
		int gen;
		bool live;

		rc = current_version(db, coll, id, version);
		if (rc != TR_OK)
			return rc;
		if (expected_version > 0 && *version != expected_version) {
			db->conflict_version = *version;
			return TR_EVERSION;
		}
		snprintf(cl->key, sizeof(cl->key), "%s/%s/%lld", coll, hex, *version);
		rc = insert_claim(db, coll, oid, *version, 0, cl);
		if (rc != TR_EDUPLICATE)
			return rc;
		rc = newest_claim(db, cl->key, &gen, &live);
		if (rc != TR_OK)
			return rc;
		if (gen >= 0 && !live) {
			/* its holder died; is the record still at that version? */
			long long now_at;
			rc = current_version(db, coll, id, &now_at);
			if (rc != TR_OK)
				return rc;
			if (now_at == *version) {
				rc = insert_claim(db, coll, oid, *version, gen + 1, cl);
				if (rc != TR_EDUPLICATE)
					return rc;
			}
		}
		/* someone else holds it: wait for them to finish */
		if (tr_mono_ns() > deadline) {
			db->conflict_version = *version;
			return TR_EBUSY;
		}
		usleep(pause_ms * 1000);
		if (pause_ms < 32)
			pause_ms *= 2;
	}
}

/* May the holder still write? Not once half its lease is gone. */
static bool
claim_fresh(const struct claim *cl)
{
	if (P.cfg->debug_claim_delay_ms > 0)
		usleep((useconds_t)P.cfg->debug_claim_delay_ms * 1000);
	return tr_mono_ns() - cl->taken_ns < (uint64_t)P.cfg->claim_lease_ms * 500000ull;
}

long long
tr_db_conflict_version(const struct tr_db *db)
{
	return db->conflict_version;
}

int
tr_db_update(struct tr_db *db, const char *coll, const char *id, long long expected_version,
	     const bson_t *set, const bson_t *unset, bson_t *out)
{
	bson_t query = BSON_INITIALIZER, update = BSON_INITIALIZER, reply = BSON_INITIALIZER;
	bson_t child;
	bson_error_t error;
	bson_iter_t it;
	bson_oid_t oid;
	mongoc_collection_t *c = NULL;
	mongoc_find_and_modify_opts_t *opts = NULL;
	pthread_mutex_t *lock = NULL;
	struct claim cl;
	long long version = 0;
	bool claimed = false;
	uint64_t t0 = tr_mono_ns();
	int rc = TR_OK;

	bson_init(out);
	db->conflict_version = 0;
	if (!db->has_tenant || !tr_is_object_id(id)) {
		rc = TR_ENOTFOUND;
		goto out;
	}
	bson_oid_init_from_string(&oid, id);
	lock = record_lock(coll, &oid);
	pthread_mutex_lock(lock);
	rc = claim_record(db, coll, id, &oid, expected_version, &version, &cl);
	if (rc != TR_OK)
		goto out;
	claimed = true;

	BSON_APPEND_OID(&query, "_id", &oid);
	BSON_APPEND_OID(&query, "tenant_id", &db->tenant_id);
	BSON_APPEND_INT64(&query, "version", version);
	BSON_APPEND_DOCUMENT_BEGIN(&update, "$set", &child);
	if (set && bson_iter_init(&it, set))
		while (bson_iter_next(&it))
			if (!reserved(bson_iter_key(&it)))
				bson_append_iter(&child, bson_iter_key(&it), -1, &it);
	BSON_APPEND_DATE_TIME(&child, "updated_at", tr_now_ms());
	BSON_APPEND_INT64(&child, "version", version + 1);
	bson_append_document_end(&update, &child);
	if (unset && !bson_empty(unset)) {
		BSON_APPEND_DOCUMENT_BEGIN(&update, "$unset", &child);
		if (bson_iter_init(&it, unset))
			while (bson_iter_next(&it))
				if (!reserved(bson_iter_key(&it)))
					BSON_APPEND_UTF8(&child, bson_iter_key(&it), "");
		bson_append_document_end(&update, &child);
	}

	if (!claim_fresh(&cl)) {
		rc = TR_EUNAVAILABLE; /* too slow to write on this lease */
		goto out;
	}
	c = tr_db_collection(db, coll);
	opts = mongoc_find_and_modify_opts_new();
	mongoc_find_and_modify_opts_set_update(opts, &update);
	mongoc_find_and_modify_opts_set_flags(opts, MONGOC_FIND_AND_MODIFY_RETURN_NEW);
	if (!mongoc_collection_find_and_modify_with_opts(c, &query, opts, &reply, &error)) {
		rc = tr_db_fail("update", coll, &error);
		goto out;
	}
	if (bson_iter_init_find(&it, &reply, "value") && BSON_ITER_HOLDS_DOCUMENT(&it)) {
		const uint8_t *data;
		uint32_t len;
		bson_t value;
		bson_iter_document(&it, &len, &data);
		if (bson_init_static(&value, data, len))
			bson_copy_to_excluding_noinit(&value, out, "", NULL);
	} else {
		/* Only a writer outside the claims (or one past its lease) gets
		 * here: the record is not at the claimed version any more. */
		rc = current_version(db, coll, id, &db->conflict_version);
		rc = rc == TR_OK ? TR_EVERSION : rc;
	}
out:
	if (claimed)
		release_claim(db, &cl);
	if (lock)
		pthread_mutex_unlock(lock);
	db->elapsed_ns += tr_mono_ns() - t0;
	if (opts)
		mongoc_find_and_modify_opts_destroy(opts);
	mongoc_collection_destroy(c);
	bson_destroy(&query);
	bson_destroy(&update);
	bson_destroy(&reply);
	return rc;
}

int
tr_db_delete(struct tr_db *db, const char *coll, const char *id, long long expected_version)
{
	bson_t filter = BSON_INITIALIZER, reply = BSON_INITIALIZER;
	bson_error_t error;
	bson_iter_t it;
	bson_oid_t oid;
	mongoc_collection_t *c = NULL;
	pthread_mutex_t *lock = NULL;
	struct claim cl;
	long long version = 0;
	bool claimed = false;
	uint64_t t0 = tr_mono_ns();
	int rc = TR_OK;

	db->conflict_version = 0;
	if (!db->has_tenant || !tr_is_object_id(id)) {
		rc = TR_ENOTFOUND;
		goto out;
	}
	bson_oid_init_from_string(&oid, id);
	lock = record_lock(coll, &oid);
	pthread_mutex_lock(lock);
	rc = claim_record(db, coll, id, &oid, expected_version, &version, &cl);
	if (rc != TR_OK)
		goto out;
	claimed = true;
	BSON_APPEND_OID(&filter, "_id", &oid);
	BSON_APPEND_OID(&filter, "tenant_id", &db->tenant_id);
	BSON_APPEND_INT64(&filter, "version", version);
	if (!claim_fresh(&cl)) {
		rc = TR_EUNAVAILABLE;
		goto out;
	}
	c = tr_db_collection(db, coll);
	if (!mongoc_collection_delete_one(c, &filter, NULL, &reply, &error)) {
		rc = tr_db_fail("delete", coll, &error);
		goto out;
	}
	if (!bson_iter_init_find(&it, &reply, "deletedCount") || bson_iter_as_int64(&it) == 0) {
		rc = current_version(db, coll, id, &db->conflict_version);
		rc = rc == TR_OK ? TR_EVERSION : rc;
	}
out:
	if (claimed)
		release_claim(db, &cl);
	if (lock)
		pthread_mutex_unlock(lock);
	db->elapsed_ns += tr_mono_ns() - t0;
	mongoc_collection_destroy(c);
	bson_destroy(&filter);
	bson_destroy(&reply);
	return rc;
}

long long
tr_if_match_version(const char *h)
{
	long long v;
	char buf[32];
	size_t n;

	if (!h)
		return -1;
	if (strcmp(h, "*") == 0)
		return -1;
	n = strlen(h);
	if (n >= 2 && h[0] == '"' && h[n - 1] == '"') {
		h++;
		n -= 2;
	}
	if (n == 0 || n >= sizeof(buf))
		return 0;
	memcpy(buf, h, n);
	buf[n] = '\0';
	if (tr_parse_int(buf, 1, INT64_MAX, &v) != 0)
		return 0;
	return v;
}

void
tr_reply_resource(struct tr_ctx *c, int status, const bson_t *stored)
{
	bson_t out = BSON_INITIALIZER;
	bson_iter_t it;

	tr_render_resource(stored, &out);
	if (bson_iter_init_find(&it, stored, "version"))
		c->resp->etag_version = bson_iter_as_int64(&it);
	tr_reply_json(c, status, &out);
	bson_destroy(&out);
}

bool
tr_if_match(struct tr_ctx *c, long long *version)
{
	*version = tr_if_match_version(c->req->if_match);
	if (*version == 0) {
		tr_problem(c, 400, "malformed-request", "If-Match must be a version such as \"3\"");
		return false;
	}
	return true;
}
