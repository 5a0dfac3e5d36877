#include "db.h"
#include "dbpool.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "log.h"
#include "util.h"

#define MAX_CURSOR_LEN 1024

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
	/* FerretDB 1.24 (SQLite) reports a unique index violated by an update
	 * as code 1 with SQLite's own message. */
	if (e->domain == MONGOC_ERROR_SERVER && strstr(e->message, "UNIQUE constraint failed"))
		return TR_EDUPLICATE;
	if (e->domain == MONGOC_ERROR_SERVER_SELECTION || e->domain == MONGOC_ERROR_STREAM ||
	    e->domain == MONGOC_ERROR_CLIENT)
		return TR_EUNAVAILABLE;
	return TR_EINTERNAL;
}

/* Logs an unexpected database error once and maps it. */
static int
fail(const char *op, const char *coll, const bson_error_t *e)
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

static mongoc_collection_t *
collection(struct tr_db *db, const char *name)
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
	       strcmp(key, "updated_at") == 0;
}

static bool
id_filter(struct tr_db *db, const char *id, bson_t *filter)
{
	bson_oid_t oid;

	if (!db->has_tenant || !tr_is_object_id(id))
		return false;
	bson_oid_init_from_string(&oid, id);
	BSON_APPEND_OID(filter, "_id", &oid);
	BSON_APPEND_OID(filter, "tenant_id", &db->tenant_id);
	return true;
}

int
tr_db_insert(struct tr_db *db, const char *coll, const bson_t *fields, bson_t *stored)
{
	bson_t doc = BSON_INITIALIZER;
	bson_error_t error;
	bson_iter_t it;
	bson_oid_t oid;
	mongoc_collection_t *c = NULL;
	int64_t now = tr_now_ms();
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
	c = collection(db, coll);
	if (!mongoc_collection_insert_one(c, &doc, NULL, NULL, &error)) {
		rc = fail("insert", coll, &error);
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

static int
find_first(struct tr_db *db, const char *coll, const bson_t *filter, bson_t *out)
{
	bson_t opts = BSON_INITIALIZER;
	const bson_t *doc;
	bson_error_t error;
	mongoc_collection_t *c = collection(db, coll);
	mongoc_cursor_t *cur;
	uint64_t t0 = tr_mono_ns();
	int rc = TR_ENOTFOUND;

	BSON_APPEND_INT64(&opts, "limit", 1);
	cur = mongoc_collection_find_with_opts(c, filter, &opts, NULL);
	if (mongoc_cursor_next(cur, &doc)) {
		bson_copy_to(doc, out);
		rc = TR_OK;
	} else if (mongoc_cursor_error(cur, &error)) {
		rc = fail("find", coll, &error);
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
static void
scoped_filter(struct tr_db *db, const bson_t *filter, bson_t *out)
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
		scoped_filter(db, filter, &scoped);
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
	scoped_filter(db, filter, &scoped);
	BSON_APPEND_INT32(&opts, "batchSize", 1000);
	c = collection(db, coll);
	cur = mongoc_collection_find_with_opts(c, &scoped, &opts, NULL);
	while (rc == TR_OK && mongoc_cursor_next(cur, &doc)) {
		bson_t item = BSON_INITIALIZER;
		tr_render_resource(doc, &item);
		rc = visit(arg, &item);
		bson_destroy(&item);
	}
	if (rc == TR_OK && mongoc_cursor_error(cur, &error))
		rc = fail("find", coll, &error);
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
	scoped_filter(db, filter, &scoped);
	c = collection(db, coll);
	count = mongoc_collection_count_documents(c, &scoped, NULL, NULL, NULL, &err);
	db->elapsed_ns += tr_mono_ns() - t0;
	mongoc_collection_destroy(c);
	bson_destroy(&scoped);
	if (count < 0)
		return fail("count", coll, &err);
	*n = count;
	return TR_OK;
}

/* After a conditional write matched nothing: was it the version, or is the
 * record not there (for this tenant)? */
static int
missing_or_moved(struct tr_db *db, const char *coll, const char *id)
{
	bson_t doc;
	int rc = tr_db_get(db, coll, id, &doc);

	bson_destroy(&doc);
	return rc == TR_OK ? TR_EVERSION : rc;
}

/* Changes of one record are made one at a time within this process.
 * MongoDB applies a findAndModify atomically; FerretDB 1.24 on SQLite reads
 * and writes in separate steps, so two version-checked updates running
 * together could both match the same version (a lost update). Striped
 * locks keep the version check honest for a single process on FerretDB;
 * across processes it is MongoDB's atomicity that does. */
#define STRIPES 64
static pthread_mutex_t stripes[STRIPES] = {[0 ... STRIPES - 1] = PTHREAD_MUTEX_INITIALIZER};

static pthread_mutex_t *
record_lock(const char *coll, const char *id)
{
	uint32_t h = 2166136261u;
	for (const char *p = coll; *p; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	for (const char *p = id; *p; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	return &stripes[h % STRIPES];
}

int
tr_db_update(struct tr_db *db, const char *coll, const char *id, long long expected_version,
	     const bson_t *set, const bson_t *unset, bson_t *out)
{
	bson_t query = BSON_INITIALIZER, update = BSON_INITIALIZER, reply = BSON_INITIALIZER;
	bson_t child;
	bson_error_t error;
	bson_iter_t it;
	mongoc_collection_t *c = NULL;
	mongoc_find_and_modify_opts_t *opts = NULL;
	uint64_t t0 = tr_mono_ns();
	int rc = TR_OK;

	bson_init(out);
	if (!id_filter(db, id, &query)) {
		rc = TR_ENOTFOUND;
		goto out;
	}
	if (expected_version > 0)
		BSON_APPEND_INT64(&query, "version", expected_version);
	BSON_APPEND_DOCUMENT_BEGIN(&update, "$set", &child);
	if (set && bson_iter_init(&it, set))
		while (bson_iter_next(&it))
			if (!reserved(bson_iter_key(&it)))
				bson_append_iter(&child, bson_iter_key(&it), -1, &it);
	BSON_APPEND_DATE_TIME(&child, "updated_at", tr_now_ms());
	bson_append_document_end(&update, &child);
	if (unset && !bson_empty(unset)) {
		BSON_APPEND_DOCUMENT_BEGIN(&update, "$unset", &child);
		if (bson_iter_init(&it, unset))
			while (bson_iter_next(&it))
				if (!reserved(bson_iter_key(&it)))
					BSON_APPEND_UTF8(&child, bson_iter_key(&it), "");
		bson_append_document_end(&update, &child);
	}
	BSON_APPEND_DOCUMENT_BEGIN(&update, "$inc", &child);
	BSON_APPEND_INT64(&child, "version", 1);
	bson_append_document_end(&update, &child);

	c = collection(db, coll);
	opts = mongoc_find_and_modify_opts_new();
	mongoc_find_and_modify_opts_set_update(opts, &update);
	mongoc_find_and_modify_opts_set_flags(opts, MONGOC_FIND_AND_MODIFY_RETURN_NEW);
	pthread_mutex_t *lock = record_lock(coll, id);
	pthread_mutex_lock(lock);
	bool done = mongoc_collection_find_and_modify_with_opts(c, &query, opts, &reply, &error);
	pthread_mutex_unlock(lock);
	if (!done) {
		rc = fail("update", coll, &error);
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
		db->elapsed_ns += tr_mono_ns() - t0;
		t0 = tr_mono_ns();
		rc = missing_or_moved(db, coll, id);
	}
out:
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
	mongoc_collection_t *c = NULL;
	uint64_t t0 = tr_mono_ns();
	int rc = TR_OK;

	if (!id_filter(db, id, &filter)) {
		rc = TR_ENOTFOUND;
		goto out;
	}
	if (expected_version > 0)
		BSON_APPEND_INT64(&filter, "version", expected_version);
	c = collection(db, coll);
	pthread_mutex_t *lock = record_lock(coll, id);
	pthread_mutex_lock(lock);
	bool done = mongoc_collection_delete_one(c, &filter, NULL, &reply, &error);
	pthread_mutex_unlock(lock);
	if (!done) {
		rc = fail("delete", coll, &error);
		goto out;
	}
	if (!bson_iter_init_find(&it, &reply, "deletedCount") || bson_iter_as_int64(&it) == 0)
		rc = missing_or_moved(db, coll, id);
out:
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

/* ---- lists ---- */

void
tr_list_query_free(struct tr_list_query *q)
{
	if (q->has_after)
		bson_destroy(&q->cursor_doc);
	q->has_after = false;
}

static bool
decode_cursor(const char *text, struct tr_list_query *q)
{
	uint8_t raw[MAX_CURSOR_LEN];
	size_t len = sizeof(raw);
	bson_iter_t it;
	bson_t view;
	size_t offset;
	bool ok = false;

	if (strlen(text) > MAX_CURSOR_LEN || tr_b64url_decode(text, raw, &len) != 0)
		return false;
	if (!bson_init_static(&view, raw, len) ||
	    !bson_validate(&view, BSON_VALIDATE_NONE, &offset))
		return false;
	bson_copy_to(&view, &q->cursor_doc);
	q->has_after = true;
	if (!bson_iter_init_find(&it, &q->cursor_doc, "s") || !BSON_ITER_HOLDS_UTF8(&it) ||
	    strcmp(bson_iter_utf8(&it, NULL), q->sort_field) != 0)
		goto out;
	if (!bson_iter_init_find(&it, &q->cursor_doc, "d") || !BSON_ITER_HOLDS_INT32(&it) ||
	    bson_iter_int32(&it) != q->direction)
		goto out;
	if (!bson_iter_init_find(&it, &q->cursor_doc, "i") || !BSON_ITER_HOLDS_OID(&it))
		goto out;
	bson_oid_copy(bson_iter_oid(&it), &q->after_id);
	if (!bson_iter_init_find(&it, &q->cursor_doc, "v"))
		goto out;
	q->after_value = *bson_iter_value(&it); /* points into cursor_doc */
	ok = true;
out:
	return ok;
}

bool
tr_list_query_next(struct tr_list_query *q, const char *cursor)
{
	tr_list_query_free(q);
	return decode_cursor(cursor, q);
}

bool
tr_list_query_parse(struct tr_ctx *c, const char *const *sorts, struct tr_list_query *q)
{
	const char *limit = tr_query(c, "limit"), *sort = tr_query(c, "sort"),
		   *cursor = tr_query(c, "cursor");
	long long n = 50;

	memset(q, 0, sizeof(*q));
	if (limit && tr_parse_int(limit, 1, 200, &n) != 0)
		tr_problem_field(c, "limit", "must be an integer from 1 to 200");
	q->limit = (int)n;
	if (!sort)
		sort = sorts[0];
	q->direction = sort[0] == '-' ? -1 : 1;
	q->sort_field = sort[0] == '-' ? sort + 1 : sort;
	bool known = false;
	for (const char *const *s = sorts; *s; s++)
		if (strcmp((*s)[0] == '-' ? *s + 1 : *s, q->sort_field) == 0)
			known = true;
	if (!known)
		tr_problem_field(c, "sort", "is not a sortable field");
	if (c->resp->problem_slug)
		return false;
	if (cursor && !decode_cursor(cursor, q)) {
		tr_list_query_free(q);
		tr_problem(c, 400, "malformed-request",
			   "cursor is not valid for this list and sort; start again without it");
		return false;
	}
	return true;
}

static char *
encode_cursor(const struct tr_list_query *q, const bson_t *last)
{
	bson_t doc = BSON_INITIALIZER;
	bson_iter_t it;
	char *out = NULL;

	BSON_APPEND_UTF8(&doc, "s", q->sort_field);
	BSON_APPEND_INT32(&doc, "d", q->direction);
	if (bson_iter_init_find(&it, last, q->sort_field))
		bson_append_iter(&doc, "v", 1, &it);
	else
		BSON_APPEND_NULL(&doc, "v");
	if (bson_iter_init_find(&it, last, "_id") && BSON_ITER_HOLDS_OID(&it)) {
		BSON_APPEND_OID(&doc, "i", bson_iter_oid(&it));
		out = tr_b64url_encode(bson_get_data(&doc), doc.len);
	}
	bson_destroy(&doc);
	return out;
}

int
tr_db_list(struct tr_db *db, const char *coll, const bson_t *filter, const struct tr_list_query *q,
	   bson_t *items, char **next_cursor)
{
	bson_t scoped = BSON_INITIALIZER, opts = BSON_INITIALIZER, sort, or, branch, cond;
	bson_t last = BSON_INITIALIZER;
	const bson_t *doc;
	bson_error_t error;
	mongoc_collection_t *c = NULL;
	mongoc_cursor_t *cur = NULL;
	uint64_t t0 = tr_mono_ns();
	const char *op = q->direction > 0 ? "$gt" : "$lt";
	int n = 0, rc = TR_OK;

	*next_cursor = NULL;
	if (!db->has_tenant) {
		rc = TR_EINVALID;
		goto out;
	}
	scoped_filter(db, filter, &scoped);
	if (q->has_after) {
		/* (field > v) or (field == v and _id > id), flipped for descending */
		BSON_APPEND_ARRAY_BEGIN(&scoped, "$or", & or);
		BSON_APPEND_DOCUMENT_BEGIN(& or, "0", &branch);
		BSON_APPEND_DOCUMENT_BEGIN(&branch, q->sort_field, &cond);
		bson_append_value(&cond, op, -1, &q->after_value);
		bson_append_document_end(&branch, &cond);
		bson_append_document_end(& or, &branch);
		BSON_APPEND_DOCUMENT_BEGIN(& or, "1", &branch);
		bson_append_value(&branch, q->sort_field, -1, &q->after_value);
		BSON_APPEND_DOCUMENT_BEGIN(&branch, "_id", &cond);
		BSON_APPEND_OID(&cond, op, &q->after_id);
		bson_append_document_end(&branch, &cond);
		bson_append_document_end(& or, &branch);
		bson_append_array_end(&scoped, & or);
	}
	BSON_APPEND_DOCUMENT_BEGIN(&opts, "sort", &sort);
	BSON_APPEND_INT32(&sort, q->sort_field, q->direction);
	BSON_APPEND_INT32(&sort, "_id", q->direction);
	bson_append_document_end(&opts, &sort);
	BSON_APPEND_INT64(&opts, "limit", q->limit + 1);

	c = collection(db, coll);
	cur = mongoc_collection_find_with_opts(c, &scoped, &opts, NULL);
	while (mongoc_cursor_next(cur, &doc)) {
		if (n == q->limit) {
			*next_cursor = encode_cursor(q, &last);
			break;
		}
		char key[16];
		const char *k;
		bson_t item;
		bson_uint32_to_string((uint32_t)n, &k, key, sizeof(key));
		BSON_APPEND_DOCUMENT_BEGIN(items, k, &item);
		tr_render_resource(doc, &item);
		bson_append_document_end(items, &item);
		bson_reinit(&last);
		bson_copy_to_excluding_noinit(doc, &last, "", NULL);
		n++;
	}
	if (mongoc_cursor_error(cur, &error)) {
		free(*next_cursor);
		*next_cursor = NULL;
		rc = fail("list", coll, &error);
	}
out:
	db->elapsed_ns += tr_mono_ns() - t0;
	if (cur)
		mongoc_cursor_destroy(cur);
	mongoc_collection_destroy(c);
	bson_destroy(&scoped);
	bson_destroy(&opts);
	bson_destroy(&last);
	return rc;
}

void
tr_list_reply(struct tr_ctx *c, const char *coll, const bson_t *filter, const char *const *sorts)
{
	struct tr_list_query q;
	bson_t doc = BSON_INITIALIZER, items;
	char *next = NULL;
	int rc;

	if (!tr_list_query_parse(c, sorts, &q))
		goto out;
	BSON_APPEND_ARRAY_BEGIN(&doc, "items", &items);
	rc = tr_db_list(c->db, coll, filter, &q, &items, &next);
	bson_append_array_end(&doc, &items);
	tr_list_query_free(&q);
	if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
		goto out;
	}
	if (next)
		BSON_APPEND_UTF8(&doc, "next_cursor", next);
	else
		BSON_APPEND_NULL(&doc, "next_cursor");
	tr_reply_json(c, 200, &doc);
out:
	free(next);
	bson_destroy(&doc);
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
