/* Users of a tenant, on the resource engine: list, create, read, change,
 * deactivate (DELETE keeps the record: audit, ownership and history refer
 * to it). The password is write-only and stored as its hash. What the
 * table cannot say is here: only owners touch owners, nobody locks
 * themselves out, and changes reach the user's live sessions at once. */
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "db.h"
#include "identity.h"
#include "log.h"
#include "resource.h"

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

/* Does doc hold field as false? */
static bool
turns_false(const bson_t *doc, const char *field)
{
	bson_iter_t it;

	return bson_iter_init_find(&it, doc, field) && BSON_ITER_HOLDS_BOOL(&it) &&
	       !bson_iter_bool(&it);
}

/* The rules of a create (old NULL) or change, then the password's hash in
 * place of the password. */
static bool
user_hook(struct tr_ctx *c, const struct tr_resource *e, bson_t *set, const bson_t *old)
{
	const char *email = tr_doc_str(set, "email");
	/* a copy: set grows below, which moves what tr_doc_str pointed into */
	char *password = tr_doc_str(set, "password")
			     ? tr_arena_strdup(c->req->arena, tr_doc_str(set, "password"))
			     : NULL;
	char hash[crypto_pwhash_STRBYTES];
	bool owner;
	int rc;

	(void)e;
	if (email && !identity_email(c, email)) {
		tr_problem_field(c, "email", "is not an email address");
		return false;
	}
	if (!identity_roles_known(c, set))
		return false;
	rc = caller_is_owner(c, &owner);
	if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
		return false;
	}
	if (((old && identity_has_role(old, "owner")) || identity_has_role(set, "owner")) &&
	    !owner) {
		tr_problem(c, 403, "forbidden",
			   old ? "only an owner may change an owner or grant the owner role"
			       : "only an owner may grant the owner role");
		return false;
	}
	/* the record's id, not the path's spelling of it */
	bson_oid_t id;
	bool self =
	    old && tr_doc_oid(old, "_id", &id) && bson_oid_equal(&id, &c->req->principal.user_id);
	if (self && turns_false(set, "active")) {
		tr_problem(c, 409, "conflict", "you cannot deactivate yourself");
		return false;
	}
	if (self && bson_has_field(set, "roles") && identity_has_role(old, "owner") &&
	    !identity_has_role(set, "owner")) {
		tr_problem(c, 409, "conflict", "you cannot remove your own owner role");
		return false;
	}
	if (!old && !bson_has_field(set, "active"))
		BSON_APPEND_BOOL(set, "active", true);
	if (password) {
		if (!identity_hash_password(password, hash)) {
			tr_problem_from_err(c, TR_ENOMEM);
			return false;
		}
		BSON_APPEND_UTF8(set, "_password", hash);
		sodium_memzero(hash, sizeof(hash));
		sodium_memzero(password, strlen(password));
	}
	return true;
}

/* Audit, and the user's sessions: new permissions, or none. */
static void
user_saved(struct tr_ctx *c, const bson_t *stored, const bson_t *old)
{
	bson_oid_t id;
	char hex[25];
	bool was_active = !old || !turns_false(old, "active"),
	     active = !turns_false(stored, "active");

	if (!tr_doc_oid(stored, "_id", &id))
		return;
	bson_oid_to_string(&id, hex);
	if (!old) {
		identity_audit(c, "user.created", "user", hex);
		return;
	}
	int rc = identity_refresh_sessions(c->db, stored);
	tr_sessions_changed(c, c->req->principal.tenant_hex, hex, NULL);
	if (rc != TR_OK)
		tr_warn("users: sessions of %s not refreshed: %s", hex, tr_strerror(rc));
	identity_audit(c, was_active && !active ? "user.deactivated" : "user.updated", "user", hex);
}

static const char *const user_sorts[] = {"-created_at", "created_at", "email", NULL};

static const struct tr_field user_fields[] = {
    {"email", TR_K_EMAIL, TR_F_REQUIRED | TR_F_FIXED | TR_F_FILTER | TR_F_NARROW, 3, 254, NULL,
     NULL},
    {"name", TR_K_LINE, TR_F_REQUIRED, 1, 100, NULL, NULL},
    {"roles", TR_K_STRINGS, TR_F_REQUIRED, 0, 20, NULL, NULL},
    {"active", TR_K_BOOL, TR_F_FILTER, 0, 0, NULL, NULL},
    {"password", TR_K_TEXT, TR_F_REQUIRED | TR_F_SECRET, 10, 256, NULL, NULL},
    {NULL, 0, 0, 0, 0, NULL, NULL},
};

const struct tr_resource identity_users = {
    .name = "user",
    .coll = USERS,
    .path = "/v1/users",
    .read = "system.users.read",
    .write = "system.users.write",
    .about = "A person who signs in to the tenant. DELETE deactivates: the record stays, "
	     "its sessions end and it cannot sign in; PATCH active=true brings it back.",
    .topic = "admin.users",
    .event = "system.user",
    .fields = user_fields,
    .sorts = user_sorts,
    .hook = user_hook,
    .saved = user_saved,
    .retire = "active",
};
