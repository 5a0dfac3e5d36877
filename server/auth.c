#include "auth.h"

#include <errno.h>
#include <jwt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util.h"

static const struct tr_config *cfg;
static int gate_script = -1;

/* KEYS[1] session, KEYS[2] tenant bucket, KEYS[3] the caller's own bucket;
 * ARGV: tenant rate/s, burst, caller rate/s, burst. Returns
 * {session_alive, allowed, retry_after_ms, uid, perms, me}. The caller's
 * bucket is asked first, so a caller over its own limit does not drain the
 * tenant's. Time is Redis's, so every process shares one clock. */
static const char gate_lua[] =
    "local s = redis.call('HMGET', KEYS[1], 'uid', 'perms', 'me')\n"
    "if not s[1] then return {0, 0, 0, '', '', ''} end\n"
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
    "local wait = take(KEYS[3], tonumber(ARGV[3]), tonumber(ARGV[4]))\n"
    "if wait == 0 then wait = take(KEYS[2], tonumber(ARGV[1]), tonumber(ARGV[2])) end\n"
    "return {1, wait == 0 and 1 or 0, wait, s[1], s[2] or '', s[3] or ''}\n";

void
tr_auth_init(const struct tr_config *c)
{
	cfg = c;
	gate_script = tr_redis_script_register(gate_lua);
}

static bool
claim_oid(jwt_t *jwt, const char *name, bson_oid_t *oid, char *hex)
{
	const char *v = jwt_get_grant(jwt, name);

	if (!tr_is_object_id(v))
		return false;
	bson_oid_init_from_string(oid, v);
	bson_oid_to_string(oid, hex);
	return true;
}

/* The secret named by the token header's kid: the current one (or no
 * kid), the previous one during a rotation, else none. */
static const char *
secret_for(const char *token)
{
	const char *dot = strchr(token, '.');
	uint8_t raw[512];
	size_t len = sizeof(raw) - 1;
	char head[700];
	bson_t doc;
	bson_iter_t it;
	bson_error_t error;
	const char *secret = NULL;

	if (!dot || (size_t)(dot - token) >= sizeof(head))
		return NULL;
	memcpy(head, token, (size_t)(dot - token));
	head[dot - token] = '\0';
	if (tr_b64url_decode(head, raw, &len) != 0 ||
	    !bson_init_from_json(&doc, (char *)raw, (ssize_t)len, &error))
		return NULL;
	if (!bson_iter_init_find(&it, &doc, "kid"))
		secret = cfg->jwt_secret;
	else if (BSON_ITER_HOLDS_UTF8(&it) && strcmp(bson_iter_utf8(&it, NULL), cfg->jwt_kid) == 0)
		secret = cfg->jwt_secret;
	else if (BSON_ITER_HOLDS_UTF8(&it) && cfg->jwt_previous_secret[0] &&
		 strcmp(bson_iter_utf8(&it, NULL), cfg->jwt_previous_kid) == 0)
		secret = cfg->jwt_previous_secret;
	bson_destroy(&doc);
	return secret;
}

char *
tr_auth_issue_token(const char *tid, const char *uid, const char *sid)
{
	jwt_t *jwt = NULL;
	long now = (long)time(NULL);
	char *out = NULL;

	if (jwt_new(&jwt) != 0)
		return NULL;
	if (jwt_add_grant(jwt, "sub", uid) || jwt_add_grant(jwt, "tid", tid) ||
	    jwt_add_grant(jwt, "sid", sid) || jwt_add_grant(jwt, "iss", cfg->jwt_issuer) ||
	    jwt_add_grant(jwt, "aud", cfg->jwt_audience) || jwt_add_grant_int(jwt, "iat", now) ||
	    jwt_add_grant_int(jwt, "exp", now + cfg->access_ttl) ||
	    jwt_add_header(jwt, "kid", cfg->jwt_kid) ||
	    jwt_set_alg(jwt, JWT_ALG_HS256, (const unsigned char *)cfg->jwt_secret,
			(int)strlen(cfg->jwt_secret)))
		goto out;
	out = jwt_encode_str(jwt);
out:
	jwt_free(jwt);
	return out;
}

int
tr_auth_verify_token(const char *token, struct tr_principal *p, const char **why)
{
	jwt_t *jwt = NULL;
	long now = (long)time(NULL), exp, nbf;
	const char *s;
	int rc = -1;

	memset(p, 0, sizeof(*p));
	if (strlen(token) > 4096) {
		*why = "token too long";
		return -1;
	}
	const char *secret = secret_for(token);
	if (!secret) {
		*why = "unknown kid";
		return -1;
	}
	if (jwt_decode(&jwt, token, (const unsigned char *)secret, (int)strlen(secret)) != 0 ||
	    !jwt) {
		*why = "signature or format";
		goto out;
	}
	/* libjwt verifies with whatever alg the header names: pin it. */
	if (jwt_get_alg(jwt) != JWT_ALG_HS256) {
		*why = "algorithm";
		goto out;
	}
	errno = 0;
	exp = jwt_get_grant_int(jwt, "exp");
	if (errno || exp + TR_JWT_LEEWAY_S < now) {
		*why = "expired";
		goto out;
	}
	errno = 0;
	nbf = jwt_get_grant_int(jwt, "nbf");
	if (errno == 0 && nbf - TR_JWT_LEEWAY_S > now) {
		*why = "not yet valid";
		goto out;
	}
	s = jwt_get_grant(jwt, "iss");
	if (!s || strcmp(s, cfg->jwt_issuer) != 0) {
		*why = "issuer";
		goto out;
	}
	s = jwt_get_grant(jwt, "aud");
	if (!s || strcmp(s, cfg->jwt_audience) != 0) {
		*why = "audience";
		goto out;
	}
	if (!claim_oid(jwt, "tid", &p->tenant_id, p->tenant_hex) ||
	    !claim_oid(jwt, "sub", &p->user_id, p->user_hex)) {
		*why = "subject or tenant";
		goto out;
	}
	s = jwt_get_grant(jwt, "sid");
	if (!s || !*s || strlen(s) >= sizeof(p->session_id) || strpbrk(s, ":{}* \t\r\n")) {
		*why = "session id";
		goto out;
	}
	strcpy(p->session_id, s);
	rc = 0;
out:
	if (jwt)
		jwt_free(jwt);
	return rc;
}

struct gate_call {
	tr_gate_cb cb;
	void *arg;
};

static void
gate_reply(void *arg, const redisReply *r, int status)
{
	struct gate_call gc = *(struct gate_call *)arg;
	struct tr_gate g = {0};

	free(arg);
	if (status != TR_OK) {
		gc.cb(gc.arg, status, NULL);
		return;
	}
	if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0)
		tr_redis_script_reset(gate_script);
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 6 ||
	    r->element[0]->type != REDIS_REPLY_INTEGER) {
		gc.cb(gc.arg, TR_EUNAVAILABLE, NULL);
		return;
	}
	g.session_alive = r->element[0]->integer == 1;
	g.allowed = r->element[1]->integer == 1;
	g.retry_after_ms = (int)r->element[2]->integer;
	g.user_id = r->element[3]->str ? r->element[3]->str : "";
	g.perms = r->element[4]->str ? r->element[4]->str : "";
	g.me = r->element[5]->str ? r->element[5]->str : "";
	g.me_len = r->element[5]->str ? r->element[5]->len : 0;
	gc.cb(gc.arg, TR_OK, &g);
}

int
tr_auth_gate(const struct tr_principal *p, tr_gate_cb cb, void *arg)
{
	char session_key[128], bucket_key[64], own_key[96], rate[16], burst[16], urate[16],
	    uburst[16];
	const char *argv[7] = {session_key, bucket_key, own_key, rate, burst, urate, uburst};
	struct gate_call *gc = malloc(sizeof(*gc));
	int rc;

	if (!gc)
		return TR_ENOMEM;
	gc->cb = cb;
	gc->arg = arg;
	snprintf(session_key, sizeof(session_key), "t:%s:sess:%s", p->tenant_hex, p->session_id);
	snprintf(bucket_key, sizeof(bucket_key), "t:%s:rl:tenant", p->tenant_hex);
	snprintf(own_key, sizeof(own_key), "t:%s:rl:u:%s", p->tenant_hex, p->user_hex);
	snprintf(rate, sizeof(rate), "%d", cfg->rate_limit_rps);
	snprintf(burst, sizeof(burst), "%d", cfg->rate_limit_burst);
	snprintf(urate, sizeof(urate), "%d", cfg->rate_limit_user_rps);
	snprintf(uburst, sizeof(uburst), "%d", cfg->rate_limit_user_burst);
	rc = tr_redis_script_call(gate_script, gate_reply, gc, 3, 7, argv, NULL);
	if (rc != TR_OK)
		free(gc);
	return rc;
}
