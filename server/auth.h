/* Authentication: access-token verification (CPU only, any thread) and the
 * per-request gate in Redis (session alive + tenant rate limit, one round
 * trip, loop thread). */
#ifndef TR_AUTH_H
#define TR_AUTH_H

#include "config.h"
#include "module.h"
#include "redis.h"

#define TR_JWT_LEEWAY_S 30

void tr_auth_init(const struct tr_config *cfg);

/* Verifies an access token: HS256 only (the header's alg is checked, so
 * "none" or RS256 are refused), signature, exp and nbf with leeway, iss,
 * aud, and the shape of sub/tid/sid. Fills the principal. 0 or -1 with a
 * short reason (for logs, not for clients). */
int tr_auth_verify_token(const char *token, struct tr_principal *p, const char **why);

/* The gate result. */
struct tr_gate {
	bool session_alive;
	bool allowed;
	int retry_after_ms;
};

typedef void (*tr_gate_cb)(void *arg, int status, const struct tr_gate *g);

/* Checks t:{tid}:sess:{sid} exists and takes a token from the tenant's
 * bucket. Same contract as tr_redis_command. */
int tr_auth_gate(const struct tr_principal *p, tr_gate_cb cb, void *arg);

#endif
