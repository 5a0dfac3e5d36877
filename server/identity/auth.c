#include "auth.h"

#include <errno.h>
#include <stdint.h>
#include <jwt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "util.h"

static const struct tr_config *cfg;
static int gate_script = -1;

/* KEYS[1] session, KEYS[2] tenant bucket, KEYS[3] the caller's bucket;
 * ARGV: tenant rate/s, burst, caller rate/s, burst, tenant tokens wanted,
 * caller tokens wanted, "1" to read the session's data. Returns
 * {session_alive, caller_granted, tenant_granted, retry_after_ms, uid,
 * perms, me}. A process takes a small lease of tokens at a time and spends
 * it locally (see lease_size); a refused tenant bucket gives the caller's
 * tokens back. Time is Redis's, so every process shares one clock. */
static const char gate_lua[] =
    "local s = {'', '', ''}\n"
    "if ARGV[7] == '1' then\n"
    "  s = redis.call('HMGET', KEYS[1], 'uid', 'perms', 'me')\n"
    "  if not s[1] then return {0, 0, 0, 0, '', '', ''} end\n"
    "elseif redis.call('EXISTS', KEYS[1]) == 0 then return {0, 0, 0, 0, '', '', ''} end\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local function take(key, rate, burst, want)\n"
    "  if want == 0 then return 0, 0 end\n"
    "  local b = redis.call('HMGET', key, 'tokens', 'ts')\n"
    "  local tokens = tonumber(b[1]) or burst\n"
    "  local ts = tonumber(b[2]) or now\n"
    "  tokens = math.min(burst, tokens + math.max(0, now - ts) * rate / 1000)\n"
    "  local got = math.min(want, math.floor(tokens))\n"
    "  local wait = 0\n"
    "  if got >= 1 then tokens = tokens - got\n"
    "  else got = 0; wait = math.ceil((1 - tokens) * 1000 / rate) end\n"
    "  redis.call('HSET', key, 'tokens', tostring(tokens), 'ts', tostring(now))\n"
    "  redis.call('PEXPIRE', key, math.ceil(burst * 1000 / rate) + 1000)\n"
    "  return got, wait\n"
    "end\n"
    "local uwant, twant = tonumber(ARGV[6]), tonumber(ARGV[5])\n"
    "local ug, uw = take(KEYS[3], tonumber(ARGV[3]), tonumber(ARGV[4]), uwant)\n"
    "if uwant > 0 and ug == 0 then return {1, 0, 0, uw, s[1], s[2] or '', s[3] or ''} end\n"
    "local tg, tw = take(KEYS[2], tonumber(ARGV[1]), tonumber(ARGV[2]), twant)\n"
    "if twant > 0 and tg == 0 then\n"
    "  if ug > 0 then redis.call('HINCRBYFLOAT', KEYS[3], 'tokens', ug) end\n"
    "  return {1, 0, 0, tw, s[1], s[2] or '', s[3] or ''}\n"
    "end\n"
    "return {1, ug, tg, 0, s[1], s[2] or '', s[3] or ''}\n";

static void live_init(uv_loop_t *loop);

void
tr_auth_init(uv_loop_t *loop, const struct tr_config *c)
{
	cfg = c;
	gate_script = tr_redis_script_register(gate_lua);
	live_init(loop);
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

/* Verified tokens, so a client's next request skips the signature check:
 * direct-mapped by a hash of the whole token, compared in full on a hit,
 * expiry checked every time. Revocation is unaffected: the session gate
 * still runs on every request. Loop thread only. */
#define TOKEN_CACHE_SLOTS 1024

struct cached_token {
	char *token; /* malloc'd copy, NULL when empty */
	long exp;
	struct tr_principal principal;
};

static struct cached_token token_cache[TOKEN_CACHE_SLOTS];

static uint64_t
token_hash(const char *s)
{
	uint64_t h = 1469598103934665603ull;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

static int verify_uncached(const char *token, struct tr_principal *p, long *exp_out,
			   const char **why);

int
tr_auth_verify_token(const char *token, struct tr_principal *p, const char **why)
{
	struct cached_token *slot = &token_cache[token_hash(token) % TOKEN_CACHE_SLOTS];
	long now = (long)time(NULL), exp;

	if (slot->token && strcmp(slot->token, token) == 0) {
		if (slot->exp + TR_JWT_LEEWAY_S < now) {
			*why = "expired";
			return -1;
		}
		*p = slot->principal;
		return 0;
	}
	if (verify_uncached(token, p, &exp, why) != 0)
		return -1;
	char *copy = strdup(token);
	if (copy) {
		free(slot->token);
		slot->token = copy;
		slot->exp = exp;
		slot->principal = *p;
	}
	return 0;
}

static void session_clear_all(void);

void
tr_auth_close(void)
{
	for (int i = 0; i < TOKEN_CACHE_SLOTS; i++) {
		free(token_cache[i].token);
		token_cache[i].token = NULL;
	}
	session_clear_all();
}

static int
verify_uncached(const char *token, struct tr_principal *p, long *exp_out, const char **why)
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
	*exp_out = exp;
	p->token_exp = exp;
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

/* ---- the gate: session cache and rate-limit leases (loop thread) ----
 *
 * Asking Redis on every request costs a round trip and a Lua call. A
 * process therefore keeps, for session_cache_ms, what Redis said about a
 * session, and takes rate-limit tokens in small leases that it spends
 * locally for up to LEASE_MS. Whether the session still exists is asked of Redis on every request
 * (a plain EXISTS), so a logout or revocation anywhere takes effect at once;
 * its permissions and /v1/me document come from the cache: a change made
 * through this process evicts them at once (tr_auth_evict), other processes
 * see it within session_cache_ms. */
#define SESSION_SLOTS 1024
#define LEASE_SLOTS 2048
#define LEASE_MS 1000
#define MAX_LEASE 100

struct cached_session {
	char key[100]; /* "<tid>:<sid>", empty when free */
	char tid[25], uid[25];
	char *perms, *me;
	size_t me_len;
	uint64_t until_ms;
};

struct lease {
	char key[100];
	long tokens;
	uint64_t until_ms;
};

static struct cached_session sessions[SESSION_SLOTS];
static struct lease leases[LEASE_SLOTS];

static uint64_t
mono_ms(void)
{
	return tr_mono_ns() / 1000000;
}

/* Tokens to ask for at a time: a twentieth of a second's worth, 1..100.
 * Small rates stay exact (one token per call). */
static long
lease_size(int rps)
{
	long n = rps / 20;
	return n < 1 ? 1 : n > MAX_LEASE ? MAX_LEASE : n;
}

static struct lease *
lease_for(const char *key)
{
	return &leases[token_hash(key) % LEASE_SLOTS];
}

static bool
lease_has(const char *key)
{
	struct lease *l = lease_for(key);
	return strcmp(l->key, key) == 0 && l->until_ms > mono_ms() && l->tokens >= 1;
}

static void
lease_add(const char *key, long tokens)
{
	struct lease *l = lease_for(key);

	if (strcmp(l->key, key) != 0 || l->until_ms <= mono_ms()) {
		snprintf(l->key, sizeof(l->key), "%s", key);
		l->tokens = 0;
	}
	l->tokens += tokens;
	l->until_ms = mono_ms() + LEASE_MS;
}

static void
session_clear(struct cached_session *cs)
{
	free(cs->perms);
	free(cs->me);
	memset(cs, 0, sizeof(*cs));
}

static struct cached_session *
session_find(const char *key)
{
	struct cached_session *cs = &sessions[token_hash(key) % SESSION_SLOTS];

	if (strcmp(cs->key, key) != 0)
		return NULL;
	if (cs->until_ms <= mono_ms()) {
		session_clear(cs);
		return NULL;
	}
	return cs;
}

static void
session_store(const char *key, const struct tr_principal *p, const char *uid, const char *perms,
	      const char *me, size_t me_len)
{
	struct cached_session *cs = &sessions[token_hash(key) % SESSION_SLOTS];
	char *pcopy, *mcopy;

	if (cfg->session_cache_ms <= 0)
		return;
	pcopy = strdup(perms);
	mcopy = malloc(me_len + 1);
	if (!pcopy || !mcopy) {
		free(pcopy);
		free(mcopy);
		return;
	}
	memcpy(mcopy, me, me_len);
	mcopy[me_len] = '\0';
	session_clear(cs);
	snprintf(cs->key, sizeof(cs->key), "%s", key);
	snprintf(cs->tid, sizeof(cs->tid), "%s", p->tenant_hex);
	snprintf(cs->uid, sizeof(cs->uid), "%s", uid);
	cs->perms = pcopy;
	cs->me = mcopy;
	cs->me_len = me_len;
	cs->until_ms = mono_ms() + (uint64_t)cfg->session_cache_ms;
}

static void
session_clear_all(void)
{
	for (int i = 0; i < SESSION_SLOTS; i++)
		session_clear(&sessions[i]);
}

void
tr_auth_evict(const char *tid, const char *uid, const char *sid)
{
	for (int i = 0; i < SESSION_SLOTS; i++) {
		struct cached_session *cs = &sessions[i];
		if (!cs->key[0] || strcmp(cs->tid, tid) != 0)
			continue;
		if (uid && strcmp(cs->uid, uid) != 0)
			continue;
		if (sid && strcmp(cs->key + 25, sid) != 0)
			continue;
		session_clear(cs);
	}
}

struct gate_call {
	tr_gate_cb cb;
	void *arg;
	char session_key[100], tenant_bucket[64], user_bucket[100];
	bool want_session;
	struct tr_principal principal;
	struct gate_call *next; /* the next request waiting on one check */
};

static int full_call(struct gate_call *gc, const char *redis_session_key);

/* The answer to one request from a liveness check (EXISTS): with a cached
 * session and leased tokens, that is all Redis is asked. Frees gc unless
 * it is handed on to a Lua call. */
static void
exists_answer(struct gate_call *gc, const redisReply *r, int status)
{
	struct cached_session *cs;
	struct tr_gate g = {0};

	if (status != TR_OK || !r || r->type != REDIS_REPLY_INTEGER) {
		gc->cb(gc->arg, TR_EUNAVAILABLE, NULL);
	} else if (r->integer != 1) {
		tr_auth_evict(gc->principal.tenant_hex, NULL, gc->principal.session_id);
		gc->cb(gc->arg, TR_OK, &g); /* not alive */
	} else if (!(cs = session_find(gc->session_key))) {
		/* alive, but the cached copy expired meanwhile: fetch it */
		char key[128];
		snprintf(key, sizeof(key), "t:{%s}:sess:%s", gc->principal.tenant_hex,
			 gc->principal.session_id);
		if (full_call(gc, key) == TR_OK)
			return; /* gc now belongs to that call */
		gc->cb(gc->arg, TR_EUNAVAILABLE, NULL);
	} else {
		g.session_alive = g.allowed = true;
		g.user_id = cs->uid;
		g.perms = cs->perms;
		g.me = cs->me;
		g.me_len = cs->me_len;
		gc->cb(gc->arg, TR_OK, &g);
	}
	free(gc);
}

/* ---- liveness checks: one EXISTS per session and loop turn ----
 *
 * Every request must learn whether its session exists from an answer Redis
 * gave after the request arrived: then a logout or revocation that
 * finished before it, on any process, refuses it. A check not yet sent
 * gives that answer to every request that joins it. So the requests of a
 * loop turn join an open check of their session, and a uv_check handle
 * sends all open checks when the turn's callbacks are done (before
 * redis.c writes them out, on the same turn). A sent check is closed:
 * later requests open a new one. With many requests of one session per
 * turn (a busy client, a UI's burst) this saves Redis and this loop a
 * command per request; alone, a request costs what it did. */
#define OPEN_CHECKS 64

struct live_check {
	char redis_key[128];
	struct gate_call *first, *last; /* in order of arrival */
};

/* Loop thread only. */
static struct {
	uv_check_t turn_end;
	bool started;
	int n;
	struct live_check *open[OPEN_CHECKS];
} L;

static void
live_reply(void *arg, const redisReply *r, int status)
{
	struct live_check *lc = arg;
	struct gate_call *gc = lc->first, *next;

	for (; gc; gc = next) {
		next = gc->next;
		exists_answer(gc, r, status);
	}
	free(lc);
}

static void
live_send_cb(uv_check_t *h)
{
	struct live_check *batch[OPEN_CHECKS];
	int n = L.n;

	/* Closed before any answer runs, so nothing can join them late. */
	memcpy(batch, L.open, sizeof(batch[0]) * (size_t)n);
	L.n = 0;
	uv_check_stop(h);
	L.started = false;
	for (int i = 0; i < n; i++) {
		const char *argv[2] = {"EXISTS", batch[i]->redis_key};
		if (tr_redis_command(live_reply, batch[i], 2, argv, NULL) != TR_OK)
			live_reply(batch[i], NULL, TR_EUNAVAILABLE);
	}
}

static void
live_init(uv_loop_t *loop)
{
	uv_check_init(loop, &L.turn_end);
	uv_unref((uv_handle_t *)&L.turn_end); /* never keeps the loop alive */
}

void
tr_auth_stop(void)
{
	int n = L.n;

	/* The loop has ended: checks opened too late in its last turn (from a
	 * later check or close callback) are never sent. Their requests are
	 * answered as if Redis were down, which frees them. */
	L.n = 0;
	for (int i = 0; i < n; i++)
		live_reply(L.open[i], NULL, TR_EUNAVAILABLE);
}

/* Adds gc to this turn's check of its session. False (gc untouched) when
 * no check can be opened: the caller takes the Lua path. */
static bool
live_join(struct gate_call *gc, const char *redis_session_key)
{
	struct live_check *lc = NULL;

	for (int i = 0; i < L.n && !lc; i++)
		if (strcmp(L.open[i]->redis_key, redis_session_key) == 0)
			lc = L.open[i];
	if (!lc) {
		if (L.n == OPEN_CHECKS)
			return false;
		if (!L.started) { /* nothing would send the check */
			if (uv_check_start(&L.turn_end, live_send_cb) != 0)
				return false;
			L.started = true;
		}
		lc = calloc(1, sizeof(*lc));
		if (!lc)
			return false;
		snprintf(lc->redis_key, sizeof(lc->redis_key), "%s", redis_session_key);
		L.open[L.n++] = lc;
	}
	gc->next = NULL;
	if (lc->last)
		lc->last->next = gc;
	else
		lc->first = gc;
	lc->last = gc;
	return true;
}

static bool
cheap_check(struct gate_call *gc, const char *redis_session_key)
{
	if (!session_find(gc->session_key) || !lease_has(gc->user_bucket) ||
	    !lease_has(gc->tenant_bucket))
		return false;
	if (!live_join(gc, redis_session_key))
		return false;
	lease_for(gc->user_bucket)->tokens--;
	lease_for(gc->tenant_bucket)->tokens--;
	return true;
}

static void
gate_reply(void *arg, const redisReply *r, int status)
{
	struct gate_call *gc = arg;
	struct tr_gate g = {0};

	if (status != TR_OK) {
		gc->cb(gc->arg, status, NULL);
		goto out;
	}
	if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0)
		tr_redis_script_reset(gate_script);
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 7 ||
	    r->element[0]->type != REDIS_REPLY_INTEGER) {
		gc->cb(gc->arg, TR_EUNAVAILABLE, NULL);
		goto out;
	}
	if (r->element[0]->integer != 1) { /* the session is gone */
		tr_auth_evict(gc->principal.tenant_hex, NULL, gc->principal.session_id);
		gc->cb(gc->arg, TR_OK, &g);
		goto out;
	}
	if (gc->want_session)
		session_store(gc->session_key, &gc->principal,
			      r->element[4]->str ? r->element[4]->str : "",
			      r->element[5]->str ? r->element[5]->str : "",
			      r->element[6]->str ? r->element[6]->str : "",
			      r->element[6]->str ? r->element[6]->len : 0);
	if (r->element[1]->integer > 0)
		lease_add(gc->user_bucket, (long)r->element[1]->integer);
	if (r->element[2]->integer > 0)
		lease_add(gc->tenant_bucket, (long)r->element[2]->integer);
	/* Redis refused only when it computed a wait; otherwise the request
	 * passes even if concurrent requests emptied the leases meanwhile. */
	long long wait = r->element[3]->integer;
	struct cached_session *cs = session_find(gc->session_key);
	g.session_alive = true;
	if (cs) {
		g.user_id = cs->uid;
		g.perms = cs->perms;
		g.me = cs->me;
		g.me_len = cs->me_len;
	} else { /* caching off: answer from the reply */
		g.user_id = r->element[4]->str ? r->element[4]->str : "";
		g.perms = r->element[5]->str ? r->element[5]->str : "";
		g.me = r->element[6]->str ? r->element[6]->str : "";
		g.me_len = r->element[6]->str ? r->element[6]->len : 0;
	}
	if (wait > 0) {
		g.allowed = false;
		g.retry_after_ms = (int)wait;
	} else {
		g.allowed = true;
		if (lease_has(gc->user_bucket))
			lease_for(gc->user_bucket)->tokens--;
		if (lease_has(gc->tenant_bucket))
			lease_for(gc->tenant_bucket)->tokens--;
	}
	gc->cb(gc->arg, TR_OK, &g);
out:
	free(gc);
}

/* The Lua gate: session data, and fresh leases where needed. */
static int
full_call(struct gate_call *gc, const char *redis_session_key)
{
	char rate[16], burst[16], urate[16], uburst[16], twant[16], uwant[16];
	int rc;

	gc->want_session = true; /* the cached copy may expire before the reply */
	snprintf(rate, sizeof(rate), "%d", cfg->rate_limit_rps);
	snprintf(burst, sizeof(burst), "%d", cfg->rate_limit_burst);
	snprintf(urate, sizeof(urate), "%d", cfg->rate_limit_user_rps);
	snprintf(uburst, sizeof(uburst), "%d", cfg->rate_limit_user_burst);
	snprintf(twant, sizeof(twant), "%ld",
		 lease_has(gc->tenant_bucket) ? 0L : lease_size(cfg->rate_limit_rps));
	snprintf(uwant, sizeof(uwant), "%ld",
		 lease_has(gc->user_bucket) ? 0L : lease_size(cfg->rate_limit_user_rps));
	const char *argv[10] = {redis_session_key,
				gc->tenant_bucket,
				gc->user_bucket,
				rate,
				burst,
				urate,
				uburst,
				twant,
				uwant,
				gc->want_session ? "1" : "0"};
	rc = tr_redis_script_call(gate_script, gate_reply, gc, 3, 10, argv, NULL);
	return rc;
}

int
tr_auth_gate(const struct tr_principal *p, tr_gate_cb cb, void *arg)
{
	struct gate_call *gc = calloc(1, sizeof(*gc));
	int rc;

	if (!gc)
		return TR_ENOMEM;
	gc->cb = cb;
	gc->arg = arg;
	gc->principal = *p;
	snprintf(gc->session_key, sizeof(gc->session_key), "%s:%s", p->tenant_hex, p->session_id);
	snprintf(gc->tenant_bucket, sizeof(gc->tenant_bucket), "t:{%s}:rl:tenant", p->tenant_hex);
	snprintf(gc->user_bucket, sizeof(gc->user_bucket), "t:{%s}:rl:u:%s", p->tenant_hex,
		 p->user_hex);
	char redis_session_key[128];
	snprintf(redis_session_key, sizeof(redis_session_key), "t:{%s}:sess:%s", p->tenant_hex,
		 p->session_id);
	if (cheap_check(gc, redis_session_key))
		return TR_OK; /* gc is answered by live_reply */
	rc = full_call(gc, redis_session_key);
	if (rc != TR_OK)
		free(gc);
	return rc;
}
