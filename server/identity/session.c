#include "session.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "auth.h"
#include "kvconn.h"
#include "util.h"

#define SECRET_BYTES 32

static const struct tr_config *cfg;

/* KEYS[1] session, KEYS[2] user's session set; ARGV: uid perms me rt_hash ttl sid now */
static const char create_lua[] =
    "redis.call('HSET', KEYS[1], 'uid', ARGV[1], 'perms', ARGV[2], 'me', ARGV[3], 'rt', ARGV[4],"
    " 'created_at', ARGV[7])\n"
    "redis.call('EXPIRE', KEYS[1], ARGV[5])\n"
    "redis.call('SADD', KEYS[2], ARGV[6])\n"
    "redis.call('EXPIRE', KEYS[2], ARGV[5])\n"
    "return 1\n";

/* KEYS[1] session; ARGV: presented hash, new hash, ttl. {1, uid} rotated,
 * {0, ''} unknown, {-1, uid} reuse: the session is deleted. */
static const char refresh_lua[] =
    "local s = redis.call('HMGET', KEYS[1], 'rt', 'uid')\n"
    "if not s[1] then return {0, ''} end\n"
    "if s[1] ~= ARGV[1] then redis.call('DEL', KEYS[1]); return {-1, s[2]} end\n"
    "redis.call('HSET', KEYS[1], 'rt', ARGV[2])\n"
    "redis.call('EXPIRE', KEYS[1], ARGV[3])\n"
    "return {1, s[2]}\n";

/* KEYS[1] user's session set; ARGV[1] tenant key prefix "t:<tid>:sess:",
 * ARGV[2] channel, ARGV[3] tid. Deletes every session, publishes each. */
static const char revoke_user_lua[] = "local sids = redis.call('SMEMBERS', KEYS[1])\n"
				      "for _, sid in ipairs(sids) do\n"
				      "  redis.call('DEL', ARGV[1] .. sid)\n"
				      "  redis.call('PUBLISH', ARGV[2], ARGV[3] .. ':' .. sid)\n"
				      "end\n"
				      "redis.call('DEL', KEYS[1])\n"
				      "return #sids\n";

/* KEYS[1] user's session set; ARGV: prefix, perms, me. */
static const char update_user_lua[] =
    "local sids = redis.call('SMEMBERS', KEYS[1])\n"
    "for _, sid in ipairs(sids) do\n"
    "  if redis.call('EXISTS', ARGV[1] .. sid) == 1 then\n"
    "    redis.call('HSET', ARGV[1] .. sid, 'perms', ARGV[2], 'me', ARGV[3])\n"
    "  else redis.call('SREM', KEYS[1], sid) end\n"
    "end\n"
    "return #sids\n";

void
tr_session_init(const struct tr_config *c)
{
	cfg = c;
}

void
tr_tokens_free(struct tr_tokens *t)
{
	free(t->access_token);
	free(t->refresh_token);
	t->access_token = t->refresh_token = NULL;
}

static redisReply *
eval(const char *script, int nkeys, int nargs, const char **args)
{
	const char *argv[16];
	char nk[8];

	snprintf(nk, sizeof(nk), "%d", nkeys);
	argv[0] = "EVAL";
	argv[1] = script;
	argv[2] = nk;
	for (int i = 0; i < nargs; i++)
		argv[3 + i] = args[i];
	return tr_kv_command(3 + nargs, argv, NULL);
}

/* A fresh refresh token for (tid, sid), and the hash to store. */
static char *
new_refresh_token(const char *tid, const char *sid, char *hash_hex)
{
	uint8_t secret[SECRET_BYTES];
	char *b64, *token;

	randombytes_buf(secret, sizeof(secret));
	b64 = tr_b64url_encode(secret, sizeof(secret));
	if (!b64)
		return NULL;
	tr_sha256_hex(b64, strlen(b64), hash_hex);
	token = malloc(strlen(tid) + strlen(sid) + strlen(b64) + 3);
	if (token)
		sprintf(token, "%s.%s.%s", tid, sid, b64);
	free(b64);
	return token;
}

static int
issue(const char *tid, const char *uid, const char *sid, char *refresh, struct tr_tokens *out)
{
	out->refresh_token = refresh;
	out->access_token = tr_auth_issue_token(tid, uid, sid);
	out->expires_in = cfg->access_ttl;
	if (!out->access_token || !out->refresh_token) {
		tr_tokens_free(out);
		return TR_ENOMEM;
	}
	return TR_OK;
}

int
tr_session_create(const char *tid, const char *uid, const char *perms, const char *me_json,
		  struct tr_tokens *out)
{
	char sid[33], hash[65], key[128], ukey[128], ttl[16], now[24];
	char *refresh;
	redisReply *r;

	memset(out, 0, sizeof(*out));
	tr_random_hex(sid, 16);
	refresh = new_refresh_token(tid, sid, hash);
	if (!refresh)
		return TR_ENOMEM;
	snprintf(key, sizeof(key), "t:{%s}:sess:%s", tid, sid);
	snprintf(ukey, sizeof(ukey), "t:{%s}:usess:%s", tid, uid);
	snprintf(ttl, sizeof(ttl), "%d", cfg->refresh_ttl);
	snprintf(now, sizeof(now), "%lld", (long long)tr_now_ms());
	const char *args[] = {key, ukey, uid, perms, me_json, hash, ttl, sid, now};
	r = eval(create_lua, 2, 9, args);
	if (!r || r->type == REDIS_REPLY_ERROR) {
		if (r)
			freeReplyObject(r);
		free(refresh);
		return TR_EUNAVAILABLE;
	}
	freeReplyObject(r);
	return issue(tid, uid, sid, refresh, out);
}

/* "<24 hex>.<32 hex>.<secret>" */
static bool
split_refresh(const char *t, char *tid, char *sid, const char **secret)
{
	if (strlen(t) < 24 + 1 + 32 + 1 + 10 || strlen(t) > 200 || t[24] != '.' || t[57] != '.')
		return false;
	memcpy(tid, t, 24);
	tid[24] = '\0';
	memcpy(sid, t + 25, 32);
	sid[32] = '\0';
	*secret = t + 58;
	if (!tr_is_object_id(tid))
		return false;
	for (int i = 0; i < 32; i++)
		if (!strchr("0123456789abcdef", sid[i]))
			return false;
	for (const char *p = *secret; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '-' || *p == '_'))
			return false;
	return true;
}

int
tr_session_refresh(const char *refresh_token, struct tr_tokens *out)
{
	char tid[25], sid[33], presented[65], fresh[65], key[128], ttl[16], uid[25];
	const char *secret;
	char *refresh;
	redisReply *r;
	int rc;

	memset(out, 0, sizeof(*out));
	if (!split_refresh(refresh_token, tid, sid, &secret))
		return TR_EINVALID;
	tr_sha256_hex(secret, strlen(secret), presented);
	refresh = new_refresh_token(tid, sid, fresh);
	if (!refresh)
		return TR_ENOMEM;
	snprintf(key, sizeof(key), "t:{%s}:sess:%s", tid, sid);
	snprintf(ttl, sizeof(ttl), "%d", cfg->refresh_ttl);
	const char *args[] = {key, presented, fresh, ttl};
	r = eval(refresh_lua, 1, 4, args);
	if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
		rc = r ? TR_EINTERNAL : TR_EUNAVAILABLE;
		goto fail;
	}
	long long state = r->element[0]->integer;
	snprintf(uid, sizeof(uid), "%s", r->element[1]->str ? r->element[1]->str : "");
	freeReplyObject(r);
	r = NULL;
	if (state == -1) {
		/* A rotated token came back: someone else may hold the
		 * current one. End the whole session. */
		tr_session_revoke(tid, uid, sid);
		rc = TR_EINVALID;
		goto fail;
	}
	if (state != 1 || !tr_is_object_id(uid)) {
		rc = TR_EINVALID;
		goto fail;
	}
	return issue(tid, uid, sid, refresh, out);
fail:
	if (r)
		freeReplyObject(r);
	free(refresh);
	return rc;
}

int
tr_session_revoke(const char *tid, const char *uid, const char *sid)
{
	redisReply *r = tr_kv_commandf("DEL t:{%s}:sess:%s", tid, sid);

	if (!r)
		return TR_EUNAVAILABLE;
	freeReplyObject(r);
	if (uid && tr_is_object_id(uid)) { /* the user's set of sessions */
		r = tr_kv_commandf("SREM t:{%s}:usess:%s %s", tid, uid, sid);
		if (r)
			freeReplyObject(r);
	}
	r = tr_kv_commandf("PUBLISH %s %s:%s", TR_REVOKE_CHANNEL, tid, sid);
	if (r)
		freeReplyObject(r);
	return TR_OK;
}

int
tr_sessions_revoke_user(const char *tid, const char *uid)
{
	char ukey[128], prefix[64], tidsp[32];
	redisReply *r;

	snprintf(ukey, sizeof(ukey), "t:{%s}:usess:%s", tid, uid);
	snprintf(prefix, sizeof(prefix), "t:{%s}:sess:", tid);
	snprintf(tidsp, sizeof(tidsp), "%s", tid);
	const char *args[] = {ukey, prefix, TR_REVOKE_CHANNEL, tidsp};
	r = eval(revoke_user_lua, 1, 4, args);
	if (!r)
		return TR_EUNAVAILABLE;
	int rc = r->type == REDIS_REPLY_ERROR ? TR_EINTERNAL : TR_OK;
	freeReplyObject(r);
	return rc;
}

int
tr_sessions_update_user(const char *tid, const char *uid, const char *perms, const char *me_json)
{
	char ukey[128], prefix[64];
	redisReply *r;

	snprintf(ukey, sizeof(ukey), "t:{%s}:usess:%s", tid, uid);
	snprintf(prefix, sizeof(prefix), "t:{%s}:sess:", tid);
	const char *args[] = {ukey, prefix, perms, me_json};
	r = eval(update_user_lua, 1, 4, args);
	if (!r)
		return TR_EUNAVAILABLE;
	int rc = r->type == REDIS_REPLY_ERROR ? TR_EINTERNAL : TR_OK;
	freeReplyObject(r);
	return rc;
}
