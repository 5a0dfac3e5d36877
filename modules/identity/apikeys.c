/* API keys for partner integrations: "trk_<id>_<secret>", shown once,
 * stored as a SHA-256 of the secret, scoped to permissions the creator
 * holds, revocable. Requests with X-API-Key are resolved here on a worker
 * thread (a read by _id), then rate limited per key and per tenant. */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "events.h"
#include "db.h"
#include "identity.h"
#include "json.h"
#include "kv.h"
#include "perm.h"

#define KEYS "api_keys"
#define SECRET_BYTES 32
#define LAST_USED_EVERY_MS 60000 /* last_used_at is written at most once a minute */

/* KEYS[1] the key's bucket, KEYS[2] the tenant's; ARGV: key rate, burst,
 * tenant rate, burst. Returns the wait in ms (0: allowed). */
static const char buckets_lua[] =
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local function take(key, rate, burst)\n"
    "  local b = redis.call('HMGET', key, 'tokens', 'ts')\n"
    "  local tokens = tonumber(b[1]) or burst\n"
    "  local ts = tonumber(b[2]) or now\n"
    "  tokens = math.min(burst, tokens + math.max(0, now - ts) * rate / 1000)\n"
    "  local wait = 0\n"
    "  if tokens >= 1 then tokens = tokens - 1 else wait = math.ceil((1 - tokens) * 1000 / rate) "
    "end\n"
    "  redis.call('HSET', key, 'tokens', tostring(tokens), 'ts', tostring(now))\n"
    "  redis.call('PEXPIRE', key, math.ceil(burst * 1000 / rate) + 1000)\n"
    "  return wait\n"
    "end\n"
    "local wait = take(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]))\n"
    "if wait == 0 then wait = take(KEYS[2], tonumber(ARGV[3]), tonumber(ARGV[4])) end\n"
    "return wait\n";

/* "trk_<24 hex>_<43 base64url>" */
static bool
split_key(const char *k, char *id, const char **secret)
{
	if (strlen(k) < 4 + 24 + 1 + 20 || strlen(k) > 120 || strncmp(k, "trk_", 4) != 0 ||
	    k[28] != '_')
		return false;
	memcpy(id, k + 4, 24);
	id[24] = '\0';
	*secret = k + 29;
	return tr_is_object_id(id);
}

/* Joins a BSON array of strings with spaces into the arena. */
static char *
joined(struct tr_ctx *c, const bson_t *doc, const char *field)
{
	bson_iter_t it, arr;
	size_t len = 1;
	char *out;

	if (!bson_iter_init_find(&it, doc, field) || !BSON_ITER_HOLDS_ARRAY(&it))
		return tr_arena_strdup(c->req->arena, "");
	bson_iter_recurse(&it, &arr);
	while (bson_iter_next(&arr))
		if (BSON_ITER_HOLDS_UTF8(&arr))
			len += strlen(bson_iter_utf8(&arr, NULL)) + 1;
	out = tr_arena_alloc(c->req->arena, len);
	bson_iter_recurse(&it, &arr);
	while (bson_iter_next(&arr)) {
		if (!BSON_ITER_HOLDS_UTF8(&arr))
			continue;
		if (*out)
			strcat(out, " ");
		strcat(out, bson_iter_utf8(&arr, NULL));
	}
	return out;
}

int
identity_authenticate_key(struct tr_db *db, struct tr_ctx *c, const char *key)
{
	char id[25], hash[65], bucket[96], tbucket[64], r1[16], b1[16], r2[16], b2[16];
	const char *secret;
	bson_t filter = BSON_INITIALIZER, rec;
	bson_iter_t it;
	struct tr_principal *p = &c->req->principal;
	int rc;

	if (!split_key(key, id, &secret)) {
		bson_destroy(&filter);
		tr_problem(c, 401, "unauthorized", "the API key is not valid");
		return -1;
	}
	bson_oid_t oid;
	bson_oid_init_from_string(&oid, id);
	BSON_APPEND_OID(&filter, "_id", &oid);
	rc = tr_db_find_global(db, KEYS, &filter, &rec);
	bson_destroy(&filter);
	if (rc == TR_ENOTFOUND) {
		bson_destroy(&rec);
		tr_problem(c, 401, "unauthorized", "the API key is not valid");
		return -1;
	}
	if (rc != TR_OK) {
		bson_destroy(&rec);
		tr_problem_from_err(c, rc);
		return -1;
	}
	tr_sha256_hex(secret, strlen(secret), hash);
	bool match = bson_iter_init_find(&it, &rec, "_hash") && BSON_ITER_HOLDS_UTF8(&it) &&
		     strlen(bson_iter_utf8(&it, NULL)) == 64 &&
		     sodium_memcmp(bson_iter_utf8(&it, NULL), hash, 64) == 0;
	if (!match || !bson_iter_init_find(&it, &rec, "tenant_id") || !BSON_ITER_HOLDS_OID(&it)) {
		bson_destroy(&rec);
		tr_problem(c, 401, "unauthorized", "the API key is not valid");
		return -1;
	}
	bson_oid_copy(bson_iter_oid(&it), &p->tenant_id);
	bson_oid_to_string(&p->tenant_id, p->tenant_hex);
	bson_oid_copy(&oid, &p->user_id); /* the key acts as itself */
	bson_oid_to_string(&oid, p->user_hex);
	snprintf(p->session_id, sizeof(p->session_id), "apikey");
	p->perms = joined(c, &rec, "permissions");
	c->req->authenticated = true;
	tr_db_set_tenant(db, &p->tenant_id); /* for last_used_at below */

	/* Rate limits: the key's own bucket, then the tenant's. */
	snprintf(bucket, sizeof(bucket), "t:{%s}:rl:k:%s", p->tenant_hex, id);
	snprintf(tbucket, sizeof(tbucket), "t:{%s}:rl:tenant", p->tenant_hex);
	snprintf(r1, sizeof(r1), "%ld", tr_config_int("rate_limit_key_rps"));
	snprintf(b1, sizeof(b1), "%ld", tr_config_int("rate_limit_key_burst"));
	snprintf(r2, sizeof(r2), "%d", tr_cfg->rate_limit_rps);
	snprintf(b2, sizeof(b2), "%d", tr_cfg->rate_limit_burst);
	const char *argv[] = {"EVAL", buckets_lua, "2", bucket, tbucket, r1, b1, r2, b2};
	long long wait = 0;
	if (tr_kv_integer(&wait, 9, argv, NULL) != TR_OK) {
		bson_destroy(&rec);
		tr_problem_from_err(c, TR_EUNAVAILABLE);
		return -1;
	}
	if (wait > 0) {
		bson_destroy(&rec);
		tr_problem(c, 429, "rate-limited", "too many requests for this API key; slow down");
		c->resp->retry_after = (int)((wait + 999) / 1000);
		return -1;
	}
	/* last_used_at, at most once a minute per key */
	int64_t last =
	    bson_iter_init_find(&it, &rec, "last_used_at") && BSON_ITER_HOLDS_DATE_TIME(&it)
		? bson_iter_date_time(&it)
		: 0;
	if (tr_now_ms() - last > LAST_USED_EVERY_MS) {
		bson_t set = BSON_INITIALIZER, out;
		BSON_APPEND_DATE_TIME(&set, "last_used_at", tr_now_ms());
		tr_db_update(db, KEYS, id, -1, &set, NULL, &out);
		bson_destroy(&out);
		bson_destroy(&set);
	}
	bson_destroy(&rec);
	return 0;
}

void
apikeys_create(struct tr_ctx *c)
{
	static const char *const fields[] = {"name", "permissions", NULL};
	const char *name;
	bson_t set = BSON_INITIALIZER, stored = BSON_INITIALIZER, out = BSON_INITIALIZER, list;
	bson_iter_t it, arr;
	uint8_t raw[SECRET_BYTES];
	char id[25], hash[65], prefix[16], *secret = NULL, *key = NULL;
	bson_oid_t oid;
	int i = 0, rc;
	bool ok = tr_body_only(c, fields);

	ok &= tr_body_line(c, "name", 1, 100, true, &name);
	if (!bson_iter_init_find(&it, &c->req->body, "permissions") ||
	    !BSON_ITER_HOLDS_ARRAY(&it)) {
		tr_problem_field(c, "permissions", "must be an array of permissions");
		ok = false;
	} else {
		bson_iter_recurse(&it, &arr);
		BSON_APPEND_ARRAY_BEGIN(&set, "permissions", &list);
		while (bson_iter_next(&arr)) {
			const char *p =
			    BSON_ITER_HOLDS_UTF8(&arr) ? bson_iter_utf8(&arr, NULL) : NULL;
			bool own;
			if (!p || !tr_permission_valid(p) || strstr(p, ":own") || i >= 100) {
				tr_problem_field(
				    c, "permissions",
				    "unknown permission (keys take whole permissions, not :own)");
				ok = false;
				continue;
			}
			if (!tr_permission_check(c->req->principal.perms, p, &own) || own) {
				char *msg = tr_arena_alloc(c->req->arena, 120);
				snprintf(msg, 120, "you do not hold \"%.60s\"", p);
				tr_problem_field(c, "permissions", msg);
				ok = false;
				continue;
			}
			char k[16];
			const char *kk;
			bson_uint32_to_string((uint32_t)i++, &kk, k, sizeof(k));
			BSON_APPEND_UTF8(&list, kk, p);
		}
		bson_append_array_end(&set, &list);
	}
	if (!ok)
		goto out;
	randombytes_buf(raw, sizeof(raw));
	secret = tr_b64url_encode(raw, sizeof(raw));
	sodium_memzero(raw, sizeof(raw));
	bson_oid_init(&oid, NULL);
	bson_oid_to_string(&oid, id);
	key = malloc(4 + 24 + 1 + strlen(secret) + 1);
	sprintf(key, "trk_%s_%s", id, secret);
	tr_sha256_hex(secret, strlen(secret), hash);
	snprintf(prefix, sizeof(prefix), "%.12s", key);
	BSON_APPEND_OID(&set, "_id", &oid);
	BSON_APPEND_UTF8(&set, "name", name);
	BSON_APPEND_UTF8(&set, "prefix", prefix);
	BSON_APPEND_UTF8(&set, "created_by", c->req->principal.user_hex);
	BSON_APPEND_NULL(&set, "last_used_at");
	BSON_APPEND_UTF8(&set, "_hash", hash);
	bson_destroy(&stored);
	rc = tr_db_insert(c->db, KEYS, &set, &stored);
	if (rc != TR_OK) {
		bson_init(&stored);
		tr_problem_from_err(c, rc);
		goto out;
	}
	tr_render_resource(&stored, &out);
	BSON_APPEND_UTF8(&out, "key", key); /* shown once, never again */
	identity_audit(c, "api_key.created", "api_key", id);
	tr_emit(c, "admin.users", "system.api_key.created", id, &stored); /* no secret in it */
	tr_reply_json(c, 201, &out);
out:
	if (secret)
		sodium_memzero(secret, strlen(secret));
	if (key)
		sodium_memzero(key, strlen(key));
	free(secret);
	free(key);
	bson_destroy(&set);
	bson_destroy(&stored);
	bson_destroy(&out);
}

void
apikeys_list(struct tr_ctx *c)
{

	tr_list_reply(c, KEYS, NULL, c->req->route->sorts);
}

/* Revocation is deletion: the next request with the key finds nothing. */
void
apikeys_delete(struct tr_ctx *c)
{
	int rc = tr_db_delete(c->db, KEYS, tr_param(c, 0), -1);

	if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
		return;
	}
	identity_audit(c, "api_key.revoked", "api_key", tr_param(c, 0));
	tr_emit(c, "admin.users", "system.api_key.revoked", tr_param(c, 0), NULL);
	tr_reply_empty(c, 204);
}
