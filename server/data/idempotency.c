/* The Idempotency-Key store. A key is claimed by inserting a "pending"
 * record (a unique index on tenant, principal and key makes the claim
 * atomic); the handler runs; the response is stored with the record. A
 * second request with the key gets the stored response (same body) or 422
 * (different body). Records older than 24 h are expired by maintenance. A
 * pending record whose process died is taken over after a minute. */
#include "dbpool.h"

#include <string.h>

#include "log.h"
#include "util.h"

#define COLL "idempotency_keys"
#define TTL_MS (24LL * 3600 * 1000)
#define STALE_MS (60LL * 1000)

static bool
valid_key(const char *k)
{
	size_t n = strlen(k);

	if (n == 0 || n > 255)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)k[i] < 0x21 || (unsigned char)k[i] > 0x7e)
			return false;
	return true;
}

static void
key_filter(struct tr_db *db, const char *key, bson_t *f)
{
	BSON_APPEND_OID(f, "tenant_id", &db->tenant_id);
	BSON_APPEND_OID(f, "principal", &db->principal->user_id);
	BSON_APPEND_UTF8(f, "key", key);
}

static void
replay(struct tr_ctx *c, const bson_t *rec)
{
	bson_iter_t it;
	struct tr_resp *resp = c->resp;

	resp->status = bson_iter_init_find(&it, rec, "status") ? (int)bson_iter_as_int64(&it) : 200;
	if (bson_iter_init_find(&it, rec, "body") && BSON_ITER_HOLDS_UTF8(&it)) {
		uint32_t len;
		const char *s = bson_iter_utf8(&it, &len);
		resp->text = tr_arena_strndup(c->req->arena, s, len);
		resp->text_len = len;
	}
	resp->content_type = "application/json";
	if (bson_iter_init_find(&it, rec, "content_type") && BSON_ITER_HOLDS_UTF8(&it))
		resp->content_type = tr_arena_strdup(c->req->arena, bson_iter_utf8(&it, NULL));
	if (bson_iter_init_find(&it, rec, "location") && BSON_ITER_HOLDS_UTF8(&it))
		resp->location = tr_arena_strdup(c->req->arena, bson_iter_utf8(&it, NULL));
	resp->replayed = true;
}

int
tr_idem_begin(struct tr_db *db, struct tr_ctx *c, struct tr_idem *idem)
{
	const char *key = c->req->idempotency_key;
	mongoc_collection_t *coll = NULL;
	bson_t doc = BSON_INITIALIZER, filter = BSON_INITIALIZER, found = BSON_INITIALIZER;
	bson_error_t error;
	bson_iter_t it;
	char hash[65];
	int rc = 0;

	memset(idem, 0, sizeof(*idem));
	if (!key)
		return 0;
	if (!valid_key(key)) {
		tr_problem(c, 400, "malformed-request",
			   "Idempotency-Key must be 1 to 255 visible ASCII characters");
		return 1;
	}
	/* The request's identity: route and canonical (parsed) body. */
	{
		const bson_t *body = &c->req->body;
		size_t plen = strlen(c->req->route->path);
		size_t blen = c->req->has_body ? body->len : 0;
		char *buf = tr_arena_alloc(c->req->arena, plen + 1 + blen + 1);
		memcpy(buf, c->req->route->path, plen);
		buf[plen] = '\n';
		if (blen)
			memcpy(buf + plen + 1, bson_get_data(body), blen);
		tr_sha256_hex(buf, plen + 1 + blen, hash);
	}
	coll = mongoc_database_get_collection(db->database, COLL);
	key_filter(db, key, &filter);
	for (int attempt = 0; attempt < 3; attempt++) {
		int64_t now = tr_now_ms();
		bson_reinit(&doc);
		bson_oid_init(&idem->record_id, NULL);
		BSON_APPEND_OID(&doc, "_id", &idem->record_id);
		key_filter(db, key, &doc);
		BSON_APPEND_UTF8(&doc, "request_hash", hash);
		BSON_APPEND_UTF8(&doc, "state", "pending");
		BSON_APPEND_DATE_TIME(&doc, "created_at", now);
		if (mongoc_collection_insert_one(coll, &doc, NULL, NULL, &error)) {
			idem->claimed = true;
			goto out;
		}
		rc = tr_db_err_from_mongoc(&error);
		if (rc != TR_EDUPLICATE)
			goto out;
		rc = 0;
		/* Someone holds the key: look at what they stored. */
		bson_reinit(&found);
		mongoc_cursor_t *cur = mongoc_collection_find_with_opts(coll, &filter, NULL, NULL);
		const bson_t *rec;
		bool have = mongoc_cursor_next(cur, &rec);
		if (have)
			bson_copy_to_excluding_noinit(rec, &found, "", NULL);
		else if (mongoc_cursor_error(cur, &error))
			rc = tr_db_err_from_mongoc(&error);
		mongoc_cursor_destroy(cur);
		if (rc)
			goto out;
		if (!have)
			continue; /* expired between our insert and find: claim again */
		int64_t created =
		    bson_iter_init_find(&it, &found, "created_at") ? bson_iter_date_time(&it) : 0;
		if (created < now - TTL_MS) {
			mongoc_collection_delete_one(coll, &filter, NULL, NULL, NULL);
			continue;
		}
		if (!bson_iter_init_find(&it, &found, "request_hash") ||
		    strcmp(bson_iter_utf8(&it, NULL), hash) != 0) {
			tr_problem(c, 422, "idempotency-key-reused",
				   "this Idempotency-Key was used with a different request");
			rc = 1;
			goto out;
		}
		if (bson_iter_init_find(&it, &found, "state") &&
		    strcmp(bson_iter_utf8(&it, NULL), "done") == 0) {
			replay(c, &found);
			rc = 1;
			goto out;
		}
		if (created >= now - STALE_MS) {
			tr_problem(c, 409, "conflict",
				   "a request with this Idempotency-Key is still in progress; "
				   "retry later");
			c->resp->retry_after = 1;
			rc = 1;
			goto out;
		}
		/* A stale claim: its process died. Take it over atomically. */
		bson_t upd = BSON_INITIALIZER, set, take = BSON_INITIALIZER;
		bson_copy_to_excluding_noinit(&filter, &take, "", NULL);
		BSON_APPEND_UTF8(&take, "state", "pending");
		BSON_APPEND_DATE_TIME(&take, "created_at", created);
		BSON_APPEND_DOCUMENT_BEGIN(&upd, "$set", &set);
		BSON_APPEND_DATE_TIME(&set, "created_at", now);
		bson_append_document_end(&upd, &set);
		bson_t reply = BSON_INITIALIZER;
		bool ok = mongoc_collection_update_one(coll, &take, &upd, NULL, &reply, &error);
		bool took = ok && bson_iter_init_find(&it, &reply, "modifiedCount") &&
			    bson_iter_as_int64(&it) == 1;
		if (took && bson_iter_init_find(&it, &found, "_id") && BSON_ITER_HOLDS_OID(&it))
			bson_oid_copy(bson_iter_oid(&it), &idem->record_id);
		bson_destroy(&reply);
		bson_destroy(&upd);
		bson_destroy(&take);
		if (!ok) {
			rc = tr_db_err_from_mongoc(&error);
			goto out;
		}
		if (took) {
			idem->claimed = true;
			goto out;
		}
	}
	tr_problem(c, 409, "conflict", "this Idempotency-Key is busy; retry later");
	rc = 1;
out:
	mongoc_collection_destroy(coll);
	bson_destroy(&doc);
	bson_destroy(&filter);
	bson_destroy(&found);
	return rc;
}

void
tr_idem_finish(struct tr_db *db, const struct tr_idem *idem, const struct tr_resp *resp,
	       const char *body, size_t body_len)
{
	mongoc_collection_t *coll;
	bson_t filter = BSON_INITIALIZER, upd = BSON_INITIALIZER, set;
	bson_error_t error;
	bool ok;

	if (!idem->claimed)
		return;
	coll = mongoc_database_get_collection(db->database, COLL);
	BSON_APPEND_OID(&filter, "_id", &idem->record_id);
	BSON_APPEND_OID(&filter, "tenant_id", &db->tenant_id);
	if (resp->status >= 500) {
		ok = mongoc_collection_delete_one(coll, &filter, NULL, NULL, &error);
	} else {
		BSON_APPEND_DOCUMENT_BEGIN(&upd, "$set", &set);
		BSON_APPEND_UTF8(&set, "state", "done");
		BSON_APPEND_INT32(&set, "status", resp->status);
		bson_append_utf8(&set, "body", 4, body ? body : "", body ? (int)body_len : 0);
		BSON_APPEND_UTF8(&set, "content_type",
				 resp->content_type ? resp->content_type : "application/json");
		if (resp->location)
			BSON_APPEND_UTF8(&set, "location", resp->location);
		bson_append_document_end(&upd, &set);
		ok = mongoc_collection_update_one(coll, &filter, &upd, NULL, NULL, &error);
	}
	if (!ok)
		tr_warn("idempotency: could not record the outcome: %s", error.message);
	mongoc_collection_destroy(coll);
	bson_destroy(&filter);
	bson_destroy(&upd);
}

int
tr_idem_expire(void)
{
	mongoc_client_t *client = tr_dbpool_pop();
	mongoc_database_t *database = tr_dbpool_database(client);
	mongoc_collection_t *coll = mongoc_database_get_collection(database, COLL);
	bson_t filter = BSON_INITIALIZER, cond;
	bson_error_t error;
	int rc = TR_OK;

	BSON_APPEND_DOCUMENT_BEGIN(&filter, "created_at", &cond);
	BSON_APPEND_DATE_TIME(&cond, "$lt", tr_now_ms() - TTL_MS);
	bson_append_document_end(&filter, &cond);
	if (!mongoc_collection_delete_many(coll, &filter, NULL, NULL, &error))
		rc = tr_db_err_from_mongoc(&error);
	bson_destroy(&filter);
	mongoc_collection_destroy(coll);
	mongoc_database_destroy(database);
	tr_dbpool_push(client);
	return rc;
}
