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

/* KEYS[1] session, KEYS[2] tenant bucket; ARGV[1] rate/s, ARGV[2] burst.
 * Returns {session_alive, allowed, retry_after_ms}. Time is Redis's, so
 * every process shares one clock. */
static const char gate_lua[] =
    "if redis.call('EXISTS', KEYS[1]) == 0 then return {0, 0, 0} end\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])\n"
    "local b = redis.call('HMGET', KEYS[2], 'tokens', 'ts')\n"
    "local tokens = tonumber(b[1]) or burst\n"
    "local ts = tonumber(b[2]) or now\n"
    "tokens = math.min(burst, tokens + math.max(0, now - ts) * rate / 1000)\n"
    "local allowed, wait = 0, 0\n"
    "if tokens >= 1 then tokens = tokens - 1; allowed = 1\n"
    "else wait = math.ceil((1 - tokens) * 1000 / rate) end\n"
    "redis.call('HSET', KEYS[2], 'tokens', tostring(tokens), 'ts', tostring(now))\n"
    "redis.call('PEXPIRE', KEYS[2], math.ceil(burst * 1000 / rate) + 1000)\n"
    "return {1, allowed, wait}\n";

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
	if (jwt_decode(&jwt, token, (const unsigned char *)cfg->jwt_secret,
		       (int)strlen(cfg->jwt_secret)) != 0 ||
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
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
	    r->element[0]->type != REDIS_REPLY_INTEGER) {
		gc.cb(gc.arg, TR_EUNAVAILABLE, NULL);
		return;
	}
	g.session_alive = r->element[0]->integer == 1;
	g.allowed = r->element[1]->integer == 1;
	g.retry_after_ms = (int)r->element[2]->integer;
	gc.cb(gc.arg, TR_OK, &g);
}

int
tr_auth_gate(const struct tr_principal *p, tr_gate_cb cb, void *arg)
{
	char session_key[128], bucket_key[64], rate[16], burst[16];
	const char *argv[4] = {session_key, bucket_key, rate, burst};
	struct gate_call *gc = malloc(sizeof(*gc));
	int rc;

	if (!gc)
		return TR_ENOMEM;
	gc->cb = cb;
	gc->arg = arg;
	snprintf(session_key, sizeof(session_key), "t:%s:sess:%s", p->tenant_hex, p->session_id);
	snprintf(bucket_key, sizeof(bucket_key), "t:%s:rl:tenant", p->tenant_hex);
	snprintf(rate, sizeof(rate), "%d", cfg->rate_limit_rps);
	snprintf(burst, sizeof(burst), "%d", cfg->rate_limit_burst);
	rc = tr_redis_script_call(gate_script, gate_reply, gc, 2, 4, argv, NULL);
	if (rc != TR_OK)
		free(gc);
	return rc;
}
