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
#include "dbwrite_int.h"
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

	if (rc == TR_EUNAVAILABLE)
		tr_debug("db: %s on %s: %s (domain %u, code %u)", op, coll, e->message, e->domain,
			 e->code);
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
	if (principal)
		tr_db_act_for(db, principal);
	return db;
}

void
tr_db_act_for(struct tr_db *db, const struct tr_principal *principal)
{
	db->principal = principal;
	tr_db_set_tenant(db, &principal->tenant_id);
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

struct tr_db *
tr_db_for_tenant(const char *tenant_hex)
{
	bson_oid_t tenant;
	struct tr_db *db;

	if (!tenant_hex || !tr_is_object_id(tenant_hex))
		return NULL;
	bson_oid_init_from_string(&tenant, tenant_hex);
	db = tr_db_open(NULL);
	if (db)
		tr_db_set_tenant(db, &tenant);
	return db;
}

void
tr_db_release(struct tr_db *db)
{
	tr_db_close(db);
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

int
tr_db_each_global(struct tr_db *db, const char *coll, const bson_t *filter, const char *sort_field,
		  int (*visit)(void *arg, const bson_t *doc), void *arg)
{
	bson_t opts = BSON_INITIALIZER, sort;
	bson_error_t error;
	const bson_t *doc;
	mongoc_collection_t *c = tr_db_collection(db, coll);
	mongoc_cursor_t *cur = NULL;
	uint64_t t0 = tr_mono_ns();
	int rc = TR_OK;

	BSON_APPEND_DOCUMENT_BEGIN(&opts, "sort", &sort);
	BSON_APPEND_INT32(&sort, sort_field, 1);
	bson_append_document_end(&opts, &sort);
	cur = mongoc_collection_find_with_opts(c, filter, &opts, NULL);
	while (rc == TR_OK && mongoc_cursor_next(cur, &doc)) {
		bson_t tmp;
		bool copied;
		rc = visit(arg, tr_dbw_with_nulls(coll, doc, &tmp, &copied));
		if (copied)
			bson_destroy(&tmp);
	}
	if (rc == TR_OK && mongoc_cursor_error(cur, &error))
		rc = tr_db_fail("find", coll, &error);
	mongoc_cursor_destroy(cur);
	mongoc_collection_destroy(c);
	bson_destroy(&opts);
	db->elapsed_ns += tr_mono_ns() - t0;
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
bool
tr_db_reserved_field(const char *key)
{
	return strcmp(key, "_id") == 0 || strcmp(key, "tenant_id") == 0 ||
	       strcmp(key, "version") == 0 || strcmp(key, "created_at") == 0 ||
	       strcmp(key, "updated_at") == 0 || strcmp(key, "_b") == 0 || strcmp(key, "_cd") == 0;
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
		tr_dbw_append_nulls(coll, doc, out);
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

int
tr_db_first(struct tr_db *db, const char *coll, const bson_t *filter, bson_t *out)
{
	int rc = find_first(db, coll, filter, out);

	if (rc != TR_OK)
		bson_init(out);
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

/* The cache of tr_db_get_immutable: a few records, replaced round robin.
 * Small records only, so that it stays a few megabytes whatever is read. */
#define IMMUTABLE_SLOTS 64
#define IMMUTABLE_MAX_BYTES (128 * 1024)

static struct {
	pthread_mutex_t lock;
	unsigned next;
	struct {
		bson_oid_t tenant, id;
		char coll[48];
		bson_t *doc; /* NULL: empty */
	} slot[IMMUTABLE_SLOTS];
} immutable = {.lock = PTHREAD_MUTEX_INITIALIZER};

static bool
immutable_lookup(const bson_oid_t *tenant, const char *coll, const bson_oid_t *id, bson_t *out)
{
	bool hit = false;

	pthread_mutex_lock(&immutable.lock);
	for (unsigned i = 0; i < IMMUTABLE_SLOTS && !hit; i++)
		if (immutable.slot[i].doc && bson_oid_equal(&immutable.slot[i].id, id) &&
		    bson_oid_equal(&immutable.slot[i].tenant, tenant) &&
		    strcmp(immutable.slot[i].coll, coll) == 0) {
			bson_copy_to(immutable.slot[i].doc, out);
			hit = true;
		}
	pthread_mutex_unlock(&immutable.lock);
	return hit;
}

static void
immutable_keep(const bson_oid_t *tenant, const char *coll, const bson_oid_t *id, const bson_t *doc)
{
	bson_t *copy;
	unsigned i;

	if (doc->len > IMMUTABLE_MAX_BYTES || strlen(coll) >= sizeof(immutable.slot[0].coll))
		return;
	if (!(copy = bson_copy(doc)))
		return;
	pthread_mutex_lock(&immutable.lock);
	i = immutable.next++ % IMMUTABLE_SLOTS;
	if (immutable.slot[i].doc)
		bson_destroy(immutable.slot[i].doc);
	immutable.slot[i].tenant = *tenant;
	immutable.slot[i].id = *id;
	snprintf(immutable.slot[i].coll, sizeof(immutable.slot[i].coll), "%s", coll);
	immutable.slot[i].doc = copy;
	pthread_mutex_unlock(&immutable.lock);
}

int
tr_db_get_immutable(struct tr_db *db, const char *coll, const char *id, bson_t *out)
{
	bson_oid_t oid;
	int rc;

	if (!db->has_tenant || !tr_is_object_id(id))
		return tr_db_get(db, coll, id, out);
	bson_oid_init_from_string(&oid, id);
	if (immutable_lookup(&db->tenant_id, coll, &oid, out))
		return TR_OK;
	rc = tr_db_get(db, coll, id, out);
	if (rc == TR_OK)
		immutable_keep(&db->tenant_id, coll, &oid, out);
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
		tr_dbw_append_nulls(coll, doc, &item);
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
