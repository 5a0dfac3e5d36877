/* Users of a tenant: list, create, read, change, deactivate. Changes to a
 * user's roles, name or state reach their live sessions at once. */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "events.h"
#include "db.h"
#include "identity.h"
#include "json.h"
#include "log.h"

/* Is the caller an owner? Only owners may touch owners or grant the role. */
static int
caller_is_owner(struct tr_ctx *c, bool *owner)
{
	bson_t me;
	int rc = tr_db_get(c->db, USERS, c->req->principal.user_hex, &me);

	*owner = rc == TR_OK && identity_has_role(&me, "owner");
	bson_destroy(&me);
	return rc == TR_ENOTFOUND ? TR_OK : rc;
}

static bool
roles_name_owner(const bson_t *fields)
{
	return identity_has_role(fields, "owner");
}

void
users_list(struct tr_ctx *c)
{
	tr_list_reply(c, USERS, NULL, c->req->route->sorts);
}

void
users_create(struct tr_ctx *c)
{
	static const char *const fields[] = {"email", "name", "roles", "password", NULL};
	const char *email_raw, *name, *password;
	char *email = NULL, hash[crypto_pwhash_STRBYTES];
	bson_t set = BSON_INITIALIZER, stored = BSON_INITIALIZER;
	bool present, owner;
	int rc;

	bool ok = tr_body_only(c, fields);
	ok &= tr_body_string(c, "email", 3, 254, true, &email_raw);
	ok &= tr_body_line(c, "name", 1, 100, true, &name);
	ok &= identity_password(c, "password", true, &password);
	if (email_raw && !(email = identity_email(c, email_raw))) {
		tr_problem_field(c, "email", "is not an email address");
		ok = false;
	}
	if (ok)
		BSON_APPEND_UTF8(&set, "email", email);
	ok &= identity_roles(c, &set, &present);
	if (ok && !present)
		tr_problem_field(c, "roles", "is required"), ok = false;
	if (!ok)
		goto out;
	rc = caller_is_owner(c, &owner);
	if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
		goto out;
	}
	if (roles_name_owner(&set) && !owner) {
		tr_problem(c, 403, "forbidden", "only an owner may grant the owner role");
		goto out;
	}
	if (!identity_hash_password(password, hash)) {
		tr_problem_from_err(c, TR_ENOMEM);
		goto out;
	}
	BSON_APPEND_UTF8(&set, "name", name);
	BSON_APPEND_BOOL(&set, "active", true);
	BSON_APPEND_UTF8(&set, "_password", hash);
	sodium_memzero(hash, sizeof(hash));
	bson_destroy(&stored);
	rc = tr_db_insert(c->db, USERS, &set, &stored);
	if (rc == TR_EDUPLICATE)
		tr_problem(c, 409, "conflict", "a user with this email exists in the tenant");
	else if (rc != TR_OK)
		tr_problem_from_err(c, rc);
	else {
		bson_iter_t it;
		char *loc = tr_arena_alloc(c->req->arena, 48);
		char hex[25];
		bson_iter_init_find(&it, &stored, "_id");
		bson_oid_to_string(bson_iter_oid(&it), hex);
		snprintf(loc, 48, "/v1/users/%s", hex);
		c->resp->location = loc;
		identity_audit(c, "user.created", "user", hex);
		tr_emit(c, "admin.users", "system.user.created", hex, &stored);
		tr_reply_resource(c, 201, &stored);
	}
out:
	bson_destroy(&set);
	bson_destroy(&stored);
}

void
users_get(struct tr_ctx *c)
{
	bson_t stored;
	int rc = tr_db_get(c->db, USERS, tr_param(c, 0), &stored);

	if (rc == TR_OK)
		tr_reply_resource(c, 200, &stored);
	else
		tr_problem_from_err(c, rc);
	bson_destroy(&stored);
}

/* Applies `set` to a user after the owner and self rules; used by PATCH
 * and DELETE (which is PATCH active=false). */
static void
change_user(struct tr_ctx *c, bson_t *set, long long version, int ok_status)
{
	bson_t target, stored = BSON_INITIALIZER;
	bson_iter_t it;
	bool owner;
	int rc = tr_db_get(c->db, USERS, tr_param(c, 0), &target);

	if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
		goto out;
	}
	rc = caller_is_owner(c, &owner);
	if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
		goto out;
	}
	bool touches_owner = identity_has_role(&target, "owner") || identity_has_role(set, "owner");
	if (touches_owner && !owner) {
		tr_problem(c, 403, "forbidden",
			   "only an owner may change an owner or grant the owner role");
		goto out;
	}
	bool self = strcmp(tr_param(c, 0), c->req->principal.user_hex) == 0;
	if (self && bson_iter_init_find(&it, set, "active") && !bson_iter_bool(&it)) {
		tr_problem(c, 409, "conflict", "you cannot deactivate yourself");
		goto out;
	}
	if (self && bson_iter_init_find(&it, set, "roles") && identity_has_role(&target, "owner") &&
	    !identity_has_role(set, "owner")) {
		tr_problem(c, 409, "conflict", "you cannot remove your own owner role");
		goto out;
	}
	bson_destroy(&stored);
	rc = tr_db_update(c->db, USERS, tr_param(c, 0), version, set, NULL, &stored);
	if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
		goto out;
	}
	/* Sessions see the change at once: new permissions, or none. */
	rc = identity_refresh_sessions(c->db, &stored);
	tr_sessions_changed(c, c->req->principal.tenant_hex, tr_param(c, 0), NULL);
	if (rc != TR_OK)
		tr_warn("users: sessions of %s not refreshed: %s", tr_param(c, 0), tr_strerror(rc));
	bool deactivated = bson_iter_init_find(&it, set, "active") && !bson_iter_bool(&it);
	identity_audit(c, deactivated ? "user.deactivated" : "user.updated", "user",
		       tr_param(c, 0));
	tr_emit(c, "admin.users", deactivated ? "system.user.deactivated" : "system.user.updated",
		tr_param(c, 0), &stored);
	if (ok_status == 204)
		tr_reply_empty(c, 204);
	else
		tr_reply_resource(c, 200, &stored);
out:
	bson_destroy(&target);
	bson_destroy(&stored);
}

void
users_update(struct tr_ctx *c)
{
	static const char *const fields[] = {"name", "roles", "active", "password", NULL};
	const char *name, *password;
	char hash[crypto_pwhash_STRBYTES];
	bson_t set = BSON_INITIALIZER;
	bson_iter_t it;
	long long version;
	bool present;

	bool ok = tr_body_only(c, fields);
	ok &= tr_body_line(c, "name", 1, 100, false, &name);
	ok &= identity_password(c, "password", false, &password);
	ok &= identity_roles(c, &set, &present);
	if (bson_iter_init_find(&it, &c->req->body, "active")) {
		if (!BSON_ITER_HOLDS_BOOL(&it))
			tr_problem_field(c, "active", "must be true or false"), ok = false;
		else
			BSON_APPEND_BOOL(&set, "active", bson_iter_bool(&it));
	}
	if (!ok || !tr_if_match(c, &version))
		goto out;
	if (name)
		BSON_APPEND_UTF8(&set, "name", name);
	if (password) {
		if (!identity_hash_password(password, hash)) {
			tr_problem_from_err(c, TR_ENOMEM);
			goto out;
		}
		BSON_APPEND_UTF8(&set, "_password", hash);
		sodium_memzero(hash, sizeof(hash));
	}
	change_user(c, &set, version, 200);
out:
	bson_destroy(&set);
}

/* DELETE deactivates: the record stays (its history, audit and ownership
 * of CRM records refer to it), its sessions end, it cannot log in. */
void
users_delete(struct tr_ctx *c)
{
	bson_t set = BSON_INITIALIZER;
	long long version;

	if (tr_if_match(c, &version)) {
		BSON_APPEND_BOOL(&set, "active", false);
		change_user(c, &set, version, 204);
	}
	bson_destroy(&set);
}
