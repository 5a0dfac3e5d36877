/* Roles: the seven built in (read-only) and the tenant's own. Changing a
 * role's permissions reaches the live sessions of every user holding it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "events.h"
#include "db.h"
#include "identity.h"
#include "json.h"
#include "perm.h"

#define PAGE 200

static void
append_permissions(bson_t *doc, const char *const *list)
{
	bson_t arr;
	int i = 0;

	BSON_APPEND_ARRAY_BEGIN(doc, "permissions", &arr);
	for (; list && *list; list++, i++) {
		char key[16];
		const char *k;
		bson_uint32_to_string((uint32_t)i, &k, key, sizeof(key));
		BSON_APPEND_UTF8(&arr, k, *list);
	}
	bson_append_array_end(doc, &arr);
}

/* Calls fn for every record of coll matching filter, page by page. */
static int
each(struct tr_ctx *c, const char *coll, const bson_t *filter, const char *sort,
     void (*fn)(struct tr_ctx *c, const bson_t *item, void *arg), void *arg)
{
	struct tr_list_query q = {.sort_field = sort, .direction = 1, .limit = PAGE};
	char *next = NULL;
	int rc;

	do {
		bson_t page = BSON_INITIALIZER;
		bson_iter_t it;
		free(next);
		next = NULL;
		rc = tr_db_list(c->db, coll, filter, &q, &page, &next);
		if (rc == TR_OK && bson_iter_init(&it, &page)) {
			while (bson_iter_next(&it)) {
				const uint8_t *data;
				uint32_t len;
				bson_t item;
				bson_iter_document(&it, &len, &data);
				if (bson_init_static(&item, data, len))
					fn(c, &item, arg);
			}
		}
		bson_destroy(&page);
	} while (rc == TR_OK && next && tr_list_query_next(&q, next));
	free(next);
	tr_list_query_free(&q);
	return rc;
}

static void
append_custom(struct tr_ctx *c, const bson_t *role, void *arg)
{
	bson_t *items = arg, out;
	char key[16];
	const char *k;
	(void)c;

	bson_uint32_to_string(bson_count_keys(items), &k, key, sizeof(key));
	BSON_APPEND_DOCUMENT_BEGIN(items, k, &out);
	bson_copy_to_excluding_noinit(role, &out, "created_at", "updated_at", NULL);
	BSON_APPEND_BOOL(&out, "builtin", false);
	bson_append_document_end(items, &out);
}

void
roles_list(struct tr_ctx *c)
{
	bson_t doc = BSON_INITIALIZER, items, item;
	int rc;

	BSON_APPEND_ARRAY_BEGIN(&doc, "items", &items);
	for (size_t b = 0; b < tr_builtin_role_count(); b++) {
		const struct tr_builtin_role *role = tr_builtin_role_at(b);
		char key[16];
		const char *k;
		bson_uint32_to_string((uint32_t)b, &k, key, sizeof(key));
		BSON_APPEND_DOCUMENT_BEGIN(&items, k, &item);
		BSON_APPEND_UTF8(&item, "name", role->name);
		append_permissions(&item,
				   role->permissions ? role->permissions : tr_permission_list());
		BSON_APPEND_BOOL(&item, "builtin", true);
		bson_append_document_end(&items, &item);
	}
	rc = each(c, ROLES, NULL, "name", append_custom, &items);
	bson_append_array_end(&doc, &items);
	if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
	} else {
		BSON_APPEND_NULL(&doc, "next_cursor");
		tr_reply_json(c, 200, &doc);
	}
	bson_destroy(&doc);
}

/* Reads "permissions": an array of known permission strings. */
static bool
read_permissions(struct tr_ctx *c, bson_t *set, bool required)
{
	bson_iter_t it, arr;
	bson_t list;
	int i = 0;
	bool ok = true;

	if (!bson_iter_init_find(&it, &c->req->body, "permissions")) {
		if (required)
			tr_problem_field(c, "permissions", "is required");
		return !required;
	}
	if (!BSON_ITER_HOLDS_ARRAY(&it) || !bson_iter_recurse(&it, &arr)) {
		tr_problem_field(c, "permissions", "must be an array of permissions");
		return false;
	}
	BSON_APPEND_ARRAY_BEGIN(set, "permissions", &list);
	while (bson_iter_next(&arr)) {
		const char *p = BSON_ITER_HOLDS_UTF8(&arr) ? bson_iter_utf8(&arr, NULL) : NULL;
		if (!p || !tr_permission_valid(p) || i >= 200) {
			char *msg = tr_arena_alloc(c->req->arena, 120);
			snprintf(msg, 120, "unknown permission \"%.60s\"",
				 p ? p : "(not a string)");
			tr_problem_field(c, "permissions", msg);
			ok = false;
			continue;
		}
		char key[16];
		const char *k;
		bson_uint32_to_string((uint32_t)i++, &k, key, sizeof(key));
		BSON_APPEND_UTF8(&list, k, p);
	}
	bson_append_array_end(set, &list);
	return ok;
}

/* Replies with a custom role as GET shows it, and emits the event of the
 * change with the same document. */
static void
reply_role(struct tr_ctx *c, int status, const bson_t *stored, const char *event)
{
	bson_t out = BSON_INITIALIZER, src = BSON_INITIALIZER;
	bson_iter_t it;

	tr_render_resource(stored, &src);
	bson_copy_to_excluding_noinit(&src, &out, "created_at", "updated_at", NULL);
	BSON_APPEND_BOOL(&out, "builtin", false);
	if (bson_iter_init_find(&it, &out, "name") && BSON_ITER_HOLDS_UTF8(&it))
		tr_emit_data(c, "admin.users", event, bson_iter_utf8(&it, NULL), NULL, &out);
	tr_reply_json(c, status, &out);
	bson_destroy(&out);
	bson_destroy(&src);
}

void
roles_create(struct tr_ctx *c)
{
	static const char *const fields[] = {"name", "permissions", NULL};
	const char *name;
	bson_t set = BSON_INITIALIZER, stored = BSON_INITIALIZER;
	bool ok = tr_body_only(c, fields);
	int rc;

	ok &= tr_body_line(c, "name", 2, 40, true, &name);
	if (name && !tr_role_name_valid(name))
		tr_problem_field(c, "name", "use 2 to 40 of a-z, 0-9, _ and -"), ok = false;
	ok &= read_permissions(c, &set, true);
	if (!ok)
		goto out;
	if (tr_builtin_role(name)) {
		tr_problem(c, 409, "conflict", "a built-in role has this name");
		goto out;
	}
	BSON_APPEND_UTF8(&set, "name", name);
	bson_destroy(&stored);
	rc = tr_db_insert(c->db, ROLES, &set, &stored);
	if (rc == TR_EDUPLICATE)
		tr_problem(c, 409, "conflict", "a role with this name exists");
	else if (rc != TR_OK)
		tr_problem_from_err(c, rc);
	else {
		identity_audit(c, "role.created", "role", name);
		reply_role(c, 201, &stored, "system.role.created");
	}
out:
	bson_destroy(&set);
	bson_destroy(&stored);
}

/* The tenant's role named in the path, or a problem set. */
static bool
find_role(struct tr_ctx *c, bson_t *role)
{
	const char *name = tr_param(c, 0);
	bson_t filter = BSON_INITIALIZER;
	int rc;

	if (tr_builtin_role(name)) {
		bson_init(role);
		tr_problem(c, 409, "conflict", "built-in roles cannot be changed or deleted");
		bson_destroy(&filter);
		return false;
	}
	BSON_APPEND_UTF8(&filter, "name", name);
	rc = tr_role_name_valid(name) ? tr_db_find_one(c->db, ROLES, &filter, role)
				      : (bson_init(role), TR_ENOTFOUND);
	bson_destroy(&filter);
	if (rc != TR_OK)
		tr_problem_from_err(c, rc);
	return rc == TR_OK;
}

static void
refresh_holder(struct tr_ctx *c, const bson_t *item, void *arg)
{
	bson_iter_t id;
	bson_t user;
	(void)arg;

	if (!bson_iter_init_find(&id, item, "id") || !BSON_ITER_HOLDS_UTF8(&id))
		return;
	if (tr_db_get(c->db, USERS, bson_iter_utf8(&id, NULL), &user) == TR_OK)
		identity_refresh_sessions(c->db, &user);
	bson_destroy(&user);
}

/* Every user holding the role gets their sessions' permissions recomputed. */
static void
refresh_holders(struct tr_ctx *c, const char *role)
{
	bson_t filter = BSON_INITIALIZER;

	BSON_APPEND_UTF8(&filter, "roles", role);
	each(c, USERS, &filter, "created_at", refresh_holder, NULL);
	bson_destroy(&filter);
}

void
roles_update(struct tr_ctx *c)
{
	static const char *const fields[] = {"permissions", NULL};
	bson_t role, set = BSON_INITIALIZER, stored = BSON_INITIALIZER;
	bson_iter_t it;
	char id[25];
	bool ok = tr_body_only(c, fields);
	int rc;

	ok &= read_permissions(c, &set, true);
	if (!ok) {
		bson_init(&role);
		goto out_role;
	}
	if (!find_role(c, &role))
		goto out_role;
	bson_iter_init_find(&it, &role, "_id");
	bson_oid_to_string(bson_iter_oid(&it), id);
	bson_destroy(&stored);
	rc = tr_db_update(c->db, ROLES, id, -1, &set, NULL, &stored);
	if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
		goto out_role;
	}
	refresh_holders(c, tr_param(c, 0));
	tr_sessions_changed(c, c->req->principal.tenant_hex, NULL, NULL);
	identity_audit(c, "role.updated", "role", tr_param(c, 0));
	reply_role(c, 200, &stored, "system.role.updated");
out_role:
	bson_destroy(&role);
	bson_destroy(&set);
	bson_destroy(&stored);
}

void
roles_delete(struct tr_ctx *c)
{
	bson_t role, filter = BSON_INITIALIZER, holder;
	bson_iter_t it;
	char id[25];
	int rc;

	if (!find_role(c, &role))
		goto out;
	BSON_APPEND_UTF8(&filter, "roles", tr_param(c, 0));
	rc = tr_db_find_one(c->db, USERS, &filter, &holder);
	bson_destroy(&holder);
	if (rc == TR_OK) {
		tr_problem(c, 409, "conflict", "the role is still assigned to users");
		goto out;
	}
	if (rc != TR_ENOTFOUND) {
		tr_problem_from_err(c, rc);
		goto out;
	}
	bson_iter_init_find(&it, &role, "_id");
	bson_oid_to_string(bson_iter_oid(&it), id);
	rc = tr_db_delete(c->db, ROLES, id, -1);
	if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
	} else {
		identity_audit(c, "role.deleted", "role", tr_param(c, 0));
		bson_t gone = BSON_INITIALIZER;
		BSON_APPEND_UTF8(&gone, "name", tr_param(c, 0));
		tr_emit_data(c, "admin.users", "system.role.deleted", tr_param(c, 0), NULL, &gone);
		bson_destroy(&gone);
		tr_reply_empty(c, 204);
	}
out:
	bson_destroy(&role);
	bson_destroy(&filter);
}
