/* Authentication: access-token verification (CPU only, any thread) and the
 * per-request gate in Redis (session alive + tenant rate limit, one round
 * trip, loop thread). */
#ifndef TR_AUTH_H
#define TR_AUTH_H

#include "config.h"
#include "module.h"
#include "redis.h"

#define TR_JWT_LEEWAY_S 30

void tr_auth_init(uv_loop_t *loop, const struct tr_config *cfg);
/* Answers the liveness checks still open when the loop ended (unavailable),
 * so no request waits on one; call after uv_run returns. */
void tr_auth_stop(void);
/* Frees the verified-token and session caches (at shutdown). */
void tr_auth_close(void);
/* Forgets cached sessions of a tenant: one session (sid), a user's (uid),
 * or all of them (both NULL). Loop thread. */
void tr_auth_evict(const char *tid, const char *uid, const char *sid);

/* Verifies an access token (loop thread: results are cached): HS256 only (the header's alg is
 * checked, so "none" or RS256 are refused), signature, exp and nbf with leeway, iss, aud, and the
 * shape of sub/tid/sid. Fills the principal. 0 or -1 with a short reason (for logs, not for
 * clients). */
int tr_auth_verify_token(const char *token, struct tr_principal *p, const char **why);

/* A signed access token for a session (HS256, kid, access_ttl); malloc'd,
 * NULL when out of memory. Any thread. */
char *tr_auth_issue_token(const char *tid, const char *uid, const char *sid);

/* The gate result. Strings borrow from the Redis reply: valid during the
 * callback only. */
struct tr_gate {
	bool session_alive;
	bool allowed;
	int retry_after_ms;
	const char *user_id;
	const char *perms; /* space-separated */
	const char *me;	   /* the /v1/me document */
	size_t me_len;
};

typedef void (*tr_gate_cb)(void *arg, int status, const struct tr_gate *g);

/* Checks the session t:{tid}:sess:{sid} and takes a token from the
 * caller's and the tenant's buckets. Every call asks Redis, after the call
 * was made: a plain EXISTS when the session's data is cached and leased
 * tokens remain (one per session and loop turn, shared by the requests of
 * that turn), else one Lua call. Same contract as tr_redis_command. */
int tr_auth_gate(const struct tr_principal *p, tr_gate_cb cb, void *arg);

#endif
