/* Signup, login, refresh, logout and /v1/me. */
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "db.h"
#include "identity.h"
#include "json.h"
#include "kv.h"
#include "pwhash.h"
#include "session.h"

#define BAD_LOGIN "wrong tenant, email or password"

static bool
valid_slug(const char *s)
{
	size_t n = strlen(s);

	if (n < 3 || n > 40)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
			return false;
	return true;
}

/* {access_token, refresh_token, expires_in} into doc. */
static void
append_tokens(bson_t *doc, const struct tr_tokens *t)
{
	BSON_APPEND_UTF8(doc, "access_token", t->access_token);
	BSON_APPEND_UTF8(doc, "refresh_token", t->refresh_token);
	BSON_APPEND_INT32(doc, "expires_in", t->expires_in);
}

/* Opens a session for the user and appends its tokens to the response. */
static int
start_session(struct tr_ctx *c, const bson_t *user, const bson_t *tenant, bson_t *doc)
{
	char tid[25], uid[25], *perms = NULL, *me = NULL;
	struct tr_tokens tokens = {0};
	bson_iter_t it;
	int rc;

	bson_iter_init_find(&it, tenant, "_id");
	bson_oid_to_string(bson_iter_oid(&it), tid);
	bson_iter_init_find(&it, user, "_id");
	bson_oid_to_string(bson_iter_oid(&it), uid);
	rc = identity_permissions(c->db, user, &perms);
	if (rc == TR_OK) {
		me = identity_me_json(user, tenant, perms);
		rc = me ? tr_session_create(tid, uid, perms, me, &tokens) : TR_ENOMEM;
	}
	if (rc == TR_OK)
		append_tokens(doc, &tokens);
	tr_tokens_free(&tokens);
	free(perms);
	free(me);
	return rc;
}

static void
append_resource(bson_t *doc, const char *key, const bson_t *stored)
{
	bson_t sub;

	BSON_APPEND_DOCUMENT_BEGIN(doc, key, &sub);
	tr_render_resource(stored, &sub);
	bson_append_document_end(doc, &sub);
}

void
identity_signup(struct tr_ctx *c)
{
	static const char *const fields[] = {"tenant_name", "tenant_slug", "email",
					     "password",    "name",	   NULL};
	const char *tenant_name, *slug, *email_raw, *password, *name;
	char *email = NULL, hash[crypto_pwhash_STRBYTES], tid_hex[25];
	bson_t tenant_fields = BSON_INITIALIZER, user_fields = BSON_INITIALIZER, roles;
	bson_t tenant = BSON_INITIALIZER, user = BSON_INITIALIZER, doc = BSON_INITIALIZER;
	bson_oid_t tid;
	int rc;

	if (!tr_config_int("signup_enabled")) {
		tr_problem(c, 403, "signup-disabled", "signup is switched off on this server");
		goto out;
	}
	bool ok = tr_body_only(c, fields);
	ok &= tr_body_line(c, "tenant_name", 1, 100, true, &tenant_name);
	ok &= tr_body_string(c, "tenant_slug", 3, 40, true, &slug);
	ok &= tr_body_string(c, "email", 3, 254, true, &email_raw);
	ok &= identity_password(c, "password", true, &password);
	ok &= tr_body_line(c, "name", 1, 100, true, &name);
	if (slug && !valid_slug(slug)) {
		tr_problem_field(c, "tenant_slug", "use 3 to 40 of a-z, 0-9 and -");
		ok = false;
	}
	if (email_raw && !(email = identity_email(c, email_raw))) {
		tr_problem_field(c, "email", "is not an email address");
		ok = false;
	}
	if (!ok)
		goto out;
	if (!identity_hash_password(password, hash)) {
		tr_problem_from_err(c, TR_ENOMEM);
		goto out;
	}
	bson_oid_init(&tid, NULL);
	bson_oid_to_string(&tid, tid_hex);
	tr_db_set_tenant(c->db, &tid);
	bson_destroy(&tenant);
	bson_destroy(&user);
	BSON_APPEND_OID(&tenant_fields, "_id", &tid);
	BSON_APPEND_UTF8(&tenant_fields, "name", tenant_name);
	BSON_APPEND_UTF8(&tenant_fields, "slug", slug);
	rc = tr_db_insert(c->db, TENANTS, &tenant_fields, &tenant);
	if (rc != TR_OK) {
		bson_init(&user);
		if (rc == TR_EDUPLICATE)
			tr_problem(c, 409, "conflict", "this tenant_slug is taken");
		else
			tr_problem_from_err(c, rc);
		goto out;
	}
	BSON_APPEND_UTF8(&user_fields, "email", email);
	BSON_APPEND_UTF8(&user_fields, "name", name);
	BSON_APPEND_ARRAY_BEGIN(&user_fields, "roles", &roles);
	BSON_APPEND_UTF8(&roles, "0", "owner");
	bson_append_array_end(&user_fields, &roles);
	BSON_APPEND_BOOL(&user_fields, "active", true);
	BSON_APPEND_UTF8(&user_fields, "_password", hash);
	rc = tr_db_insert(c->db, USERS, &user_fields, &user);
	if (rc != TR_OK) {
		tr_db_delete(c->db, TENANTS, tid_hex, -1); /* no tenant without its owner */
		tr_problem_from_err(c, rc);
		goto out;
	}
	append_resource(&doc, "tenant", &tenant);
	append_resource(&doc, "user", &user);
	rc = start_session(c, &user, &tenant, &doc);
	if (rc != TR_OK) {
		/* The tenant exists; the owner can log in once Redis is back. */
		tr_problem_from_err(c, rc == TR_EUNAVAILABLE ? rc : TR_EINTERNAL);
		goto out;
	}
	tr_reply_json(c, 201, &doc);
out:
	sodium_memzero(hash, sizeof(hash));
	bson_destroy(&tenant_fields);
	bson_destroy(&user_fields);
	bson_destroy(&tenant);
	bson_destroy(&user);
	bson_destroy(&doc);
}

/* A hash to verify against when the account does not exist, so that a
 * wrong email costs as much time as a wrong password. */
static char dummy_hash[crypto_pwhash_STRBYTES];
static pthread_once_t dummy_once = PTHREAD_ONCE_INIT;

static void
make_dummy_hash(void)
{
	identity_hash_password("no such account, no such password", dummy_hash);
}

/* Failed-login counters: per account (slug + email) and per address. */
static void
throttle_keys(struct tr_ctx *c, const char *slug, const char *email, char *acct, char *addr)
{
	char buf[400], hex[65];

	snprintf(buf, sizeof(buf), "%s\n%s", slug, email);
	tr_sha256_hex(buf, strlen(buf), hex);
	snprintf(acct, 100, "login:fail:acct:%s", hex);
	snprintf(addr, 100, "login:fail:addr:%s", c->req->peer);
}

/* Counts a login attempt against the account's and the address's limits
 * before the password is checked, so parallel guesses cannot slip past
 * the limit. Returns the seconds to wait (throttled), 0 to proceed, or -1
 * when Redis is unavailable. A successful login takes its attempt back. */
static int
count_attempt(const char *acct, const char *addr)
{
	const char *keys[2] = {acct, addr};
	long limits[2] = {tr_config_int("login_max_account_failures"),
			  tr_config_int("login_max_address_failures")};
	int wait = 0;

	for (int i = 0; i < 2; i++) {
		long long n = 0, ignored, ttl = 1;
		if (tr_kv_integerf(&n, "INCR %s", keys[i]) != TR_OK)
			return -1;
		if (n == 1)
			tr_kv_integerf(&ignored, "EXPIRE %s %ld", keys[i],
				       tr_config_int("login_failure_window"));
		if (n > limits[i] && wait == 0) {
			tr_kv_integerf(&ttl, "TTL %s", keys[i]); /* 1 when unknown */
			wait = ttl > 0 ? (int)ttl : 1;
		}
	}
	return wait;
}

/* A successful login: the account starts afresh, the address gets its
 * attempt back. */
static void
forgive(const char *acct, const char *addr)
{
	long long ignored;

	tr_kv_integerf(&ignored, "DEL %s", acct);
	tr_kv_integerf(&ignored, "DECR %s", addr);
}

void
identity_login(struct tr_ctx *c)
{
	static const char *const fields[] = {"tenant_slug", "email", "password", NULL};
	const char *slug, *email_raw, *password;
	char *email, acct[100], addr[100];
	bson_t filter = BSON_INITIALIZER, tenant = BSON_INITIALIZER, user = BSON_INITIALIZER;
	bson_t doc = BSON_INITIALIZER;
	bson_iter_t it;
	bool found = false, ok;
	int rc, wait;

	ok = tr_body_only(c, fields);
	ok &= tr_body_string(c, "tenant_slug", 1, 100, true, &slug);
	ok &= tr_body_string(c, "email", 1, 254, true, &email_raw);
	ok &= tr_body_string(c, "password", 1, 1024, true, &password);
	if (!ok)
		goto out;
	email = identity_email(c, email_raw);
	if (!email)
		email = tr_arena_strdup(c->req->arena, email_raw);
	throttle_keys(c, slug, email, acct, addr);
	wait = count_attempt(acct, addr);
	if (wait < 0) {
		tr_problem_from_err(c, TR_EUNAVAILABLE);
		goto out;
	}
	if (wait > 0) {
		tr_problem(c, 429, "rate-limited",
			   "too many failed logins; wait before trying again");
		c->resp->retry_after = wait;
		goto out;
	}
	bson_destroy(&tenant);
	bson_destroy(&user);
	BSON_APPEND_UTF8(&filter, "slug", slug);
	rc = tr_db_find_global(c->db, TENANTS, &filter, &tenant);
	if (rc == TR_OK && bson_iter_init_find(&it, &tenant, "_id") && BSON_ITER_HOLDS_OID(&it)) {
		tr_db_set_tenant(c->db, bson_iter_oid(&it));
		bson_reinit(&filter);
		BSON_APPEND_UTF8(&filter, "email", email);
		rc = tr_db_find_one(c->db, USERS, &filter, &user);
		found = rc == TR_OK;
	} else {
		bson_init(&user);
	}
	if (rc != TR_OK && rc != TR_ENOTFOUND) {
		tr_problem_from_err(c, rc);
		goto out;
	}
	const char *hash = NULL;
	if (found && bson_iter_init_find(&it, &user, "_password") && BSON_ITER_HOLDS_UTF8(&it))
		hash = bson_iter_utf8(&it, NULL);
	if (!hash) {
		pthread_once(&dummy_once, make_dummy_hash);
		hash = dummy_hash;
		found = false;
	}
	bool match = tr_pwhash_verify(hash, password);
	bool active = found && bson_iter_init_find(&it, &user, "active") &&
		      BSON_ITER_HOLDS_BOOL(&it) && bson_iter_bool(&it);
	if (!found || !match || !active) {
		tr_problem(c, 401, "unauthorized", BAD_LOGIN); /* the attempt stays counted */
		goto out;
	}
	forgive(acct, addr);
	rc = start_session(c, &user, &tenant, &doc);
	if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
		goto out;
	}
	append_resource(&doc, "user", &user);
	tr_reply_json(c, 200, &doc);
out:
	bson_destroy(&filter);
	bson_destroy(&tenant);
	bson_destroy(&user);
	bson_destroy(&doc);
}

void
identity_refresh(struct tr_ctx *c)
{
	static const char *const fields[] = {"refresh_token", NULL};
	const char *token;
	struct tr_tokens tokens = {0};
	bson_t doc = BSON_INITIALIZER;
	bool ok = tr_body_only(c, fields);
	int rc;

	ok &= tr_body_string(c, "refresh_token", 1, 512, true, &token);
	if (!ok)
		goto out;
	rc = tr_session_refresh(token, &tokens);
	if (rc == TR_EINVALID && strlen(token) > 58 && token[24] == '.' && token[57] == '.') {
		/* maybe a reused token that just ended its session: forget it */
		char tid[25], sid[33];
		memcpy(tid, token, 24);
		tid[24] = '\0';
		memcpy(sid, token + 25, 32);
		sid[32] = '\0';
		tr_sessions_changed(c, tid, NULL, sid);
	}
	if (rc == TR_EINVALID) {
		tr_problem(c, 401, "unauthorized", "the refresh token is not valid; sign in again");
	} else if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
	} else {
		append_tokens(&doc, &tokens);
		tr_reply_json(c, 200, &doc);
	}
	tr_tokens_free(&tokens);
out:
	bson_destroy(&doc);
}

void
identity_logout(struct tr_ctx *c)
{
	const struct tr_principal *p = &c->req->principal;
	int rc = tr_session_revoke(p->tenant_hex, p->user_hex, p->session_id);

	tr_sessions_changed(c, p->tenant_hex, NULL, p->session_id);
	if (rc != TR_OK)
		tr_problem_from_err(c, rc);
	else
		tr_reply_empty(c, 204);
}

/* Inline: the session carries the document, kept current by every change
 * to the user or their roles. */
void
identity_me(struct tr_ctx *c)
{
	if (!c->req->session_me || c->req->session_me_len == 0) {
		tr_problem(c, 401, "unauthorized", "the session has no profile; sign in again");
		return;
	}
	tr_reply_text(c, 200, "application/json", c->req->session_me, c->req->session_me_len);
}
