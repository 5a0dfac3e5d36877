/* Sessions: a Redis hash t:{tid}:sess:{sid} per login, holding the user id,
 * the user's permissions, the /v1/me document and the hash of the current
 * refresh token; a set t:{tid}:usess:{uid} lists a user's sessions. Access
 * tokens are JWTs naming the session; the gate checks it on every request,
 * so deleting the hash ends the session at once. Refresh tokens are opaque
 * ("<tid>.<sid>.<secret>"), stored hashed, rotated on every use; presenting
 * a rotated one revokes the session. Revocations are published on
 * TR_REVOKE_CHANNEL for other processes.
 *
 * Worker threads only (synchronous Redis through kv.h). Functions return 0
 * or TR_EINVALID (unknown/expired/reused: 401) or TR_EUNAVAILABLE (503). */
#ifndef TR_SESSION_H
#define TR_SESSION_H

#include "config.h"

#define TR_REVOKE_CHANNEL "trellis:revoked"

struct tr_tokens {
	char *access_token;  /* malloc'd */
	char *refresh_token; /* malloc'd */
	int expires_in;
};

void tr_session_init(const struct tr_config *cfg);
void tr_tokens_free(struct tr_tokens *t);

int tr_session_create(const char *tid, const char *uid, const char *perms, const char *me_json,
		      struct tr_tokens *out);
int tr_session_refresh(const char *refresh_token, struct tr_tokens *out);
/* Ends one session; uid (may be NULL) also drops it from the user's set. */
int tr_session_revoke(const char *tid, const char *uid, const char *sid);
/* Ends every session of a user (deactivation). */
int tr_sessions_revoke_user(const char *tid, const char *uid);
/* Rewrites the permissions and /v1/me document of a user's live sessions. */
int tr_sessions_update_user(const char *tid, const char *uid, const char *perms,
			    const char *me_json);

#endif
