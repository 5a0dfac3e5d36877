/* Helpers shared by the identity handlers. Worker threads. */
#include <ctype.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "identity.h"
#include "json.h"
#include "perm.h"
#include "pwhash.h"
#include "session.h"

#define MAX_PERMS 256

bool
identity_email_normalize(const char *raw, char *e, size_t cap)
{
	size_t n;
	char *at;

	while (*raw == ' ' || *raw == '\t')
		raw++;
	n = strlen(raw);
	while (n && (raw[n - 1] == ' ' || raw[n - 1] == '\t'))
		n--;
	if (n < 3 || n > 254 || n >= cap)
		return false;
	memcpy(e, raw, n);
	e[n] = '\0';
	for (char *p = e; *p; p++) {
		if ((unsigned char)*p <= ' ' || *p == '"' || *p == '<' || *p == '>' || *p == ',')
			return false;
		*p = (char)tolower((unsigned char)*p);
	}
	at = strchr(e, '@');
	return at && at != e && !strchr(at + 1, '@') && strchr(at + 1, '.') && at[1] != '.' &&
	       e[n - 1] != '.';
}

char *
identity_email(struct tr_ctx *c, const char *raw)
{
	char *e = tr_arena_alloc(c->req->arena, 256);

	return e && identity_email_normalize(raw, e, 256) ? e : NULL;
}

bool
identity_password(struct tr_ctx *c, const char *field, bool required, const char **out)
{
	if (!tr_body_string(c, field, 10, 256, required, out)) {
		return false;
	}
	return true;
}

bool
identity_hash_password(const char *password, char *hash)
{
	return tr_pwhash(password, hash);
}

bool
identity_has_role(const bson_t *user, const char *role)
{
	bson_iter_t it, arr;

	if (!bson_iter_init_find(&it, user, "roles") || !BSON_ITER_HOLDS_ARRAY(&it) ||
	    !bson_iter_recurse(&it, &arr))
		return false;
	while (bson_iter_next(&arr))
		if (BSON_ITER_HOLDS_UTF8(&arr) && strcmp(bson_iter_utf8(&arr, NULL), role) == 0)
			return true;
	return false;
}

struct holders {
	char (*out)[25];
	int max, n;
};

static int
holder_cb(void *arg, const bson_t *user)
{
	struct holders *h = arg;
	bson_iter_t it;

	if (bson_iter_init_find(&it, user, "active") && BSON_ITER_HOLDS_BOOL(&it) &&
	    !bson_iter_bool(&it))
		return 0;
	if (!bson_iter_init_find(&it, user, "id") || !BSON_ITER_HOLDS_UTF8(&it) ||
	    !tr_is_object_id(bson_iter_utf8(&it, NULL)))
		return 0;
	snprintf(h->out[h->n], 25, "%s", bson_iter_utf8(&it, NULL));
	return ++h->n >= h->max; /* enough: stop */
}

/* tr_module.users_with_role: the array field matches any of its items. */
int
identity_users_with_role(struct tr_db *db, const char *role, char (*out)[25], int max)
{
	struct holders h = {out, max, 0};
	bson_t *filter;
	int rc;

	if (max <= 0 || !tr_role_name_valid(role))
		return 0;
	filter = BCON_NEW("roles", BCON_UTF8(role));
	rc = tr_db_each(db, USERS, filter, holder_cb, &h);
	bson_destroy(filter);
	return rc < 0 ? rc : h.n; /* 1: the visitor stopped it */
}

static int
by_string(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

struct permset {
	char *items[MAX_PERMS];
	int n;
};

static void
add(struct permset *s, const char *p)
{
	for (int i = 0; i < s->n; i++)
		if (strcmp(s->items[i], p) == 0)
			return;
	if (s->n < MAX_PERMS)
		s->items[s->n++] = strdup(p);
}

int
identity_permissions(struct tr_db *db, const bson_t *user, char **perms)
{
	struct permset set = {.n = 0};
	bson_iter_t it, arr;
	size_t len = 1;
	int rc = TR_OK;

	*perms = NULL;
	if (bson_iter_init_find(&it, user, "roles") && BSON_ITER_HOLDS_ARRAY(&it) &&
	    bson_iter_recurse(&it, &arr)) {
		while (bson_iter_next(&arr)) {
			if (!BSON_ITER_HOLDS_UTF8(&arr))
				continue;
			const char *name = bson_iter_utf8(&arr, NULL);
			const struct tr_builtin_role *b = tr_builtin_role(name);
			if (b) {
				const char *const *list =
				    b->permissions ? b->permissions : tr_permission_list();
				for (; *list; list++)
					add(&set, *list);
				continue;
			}
			bson_t filter = BSON_INITIALIZER, role;
			BSON_APPEND_UTF8(&filter, "name", name);
			rc = tr_db_find_one(db, ROLES, &filter, &role);
			bson_destroy(&filter);
			if (rc == TR_ENOTFOUND) { /* deleted since: grants nothing */
				bson_destroy(&role);
				rc = TR_OK;
				continue;
			}
			if (rc != TR_OK) {
				bson_destroy(&role);
				goto out;
			}
			bson_iter_t pit, parr;
			if (bson_iter_init_find(&pit, &role, "permissions") &&
			    BSON_ITER_HOLDS_ARRAY(&pit) && bson_iter_recurse(&pit, &parr))
				while (bson_iter_next(&parr))
					if (BSON_ITER_HOLDS_UTF8(&parr))
						add(&set, bson_iter_utf8(&parr, NULL));
			bson_destroy(&role);
		}
	}
	qsort(set.items, (size_t)set.n, sizeof(char *), by_string);
	for (int i = 0; i < set.n; i++)
		len += strlen(set.items[i]) + 1;
	*perms = calloc(1, len);
	if (!*perms) {
		rc = TR_ENOMEM;
		goto out;
	}
	for (int i = 0; i < set.n; i++) {
		if (i)
			strcat(*perms, " ");
		strcat(*perms, set.items[i]);
	}
out:
	for (int i = 0; i < set.n; i++)
		free(set.items[i]);
	return rc;
}

char *
identity_me_json(const bson_t *user, const bson_t *tenant, const char *perms)
{
	bson_t doc = BSON_INITIALIZER, sub, arr;
	size_t len, i = 0;
	char *json;

	BSON_APPEND_DOCUMENT_BEGIN(&doc, "user", &sub);
	tr_render_resource(user, &sub);
	bson_append_document_end(&doc, &sub);
	BSON_APPEND_DOCUMENT_BEGIN(&doc, "tenant", &sub);
	tr_render_resource(tenant, &sub);
	bson_append_document_end(&doc, &sub);
	BSON_APPEND_ARRAY_BEGIN(&doc, "permissions", &arr);
	for (const char *p = perms; p && *p; i++) {
		const char *end = strchr(p, ' ');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		char key[16];
		const char *k;
		bson_uint32_to_string((uint32_t)i, &k, key, sizeof(key));
		bson_append_utf8(&arr, k, -1, p, (int)n);
		p = end ? end + 1 : NULL;
	}
	bson_append_array_end(&doc, &arr);
	json = tr_json_render(&doc, &len);
	bson_destroy(&doc);
	return json;
}

int
identity_refresh_sessions(struct tr_db *db, const bson_t *user)
{
	bson_iter_t it;
	char tid[25], uid[25];
	char *perms = NULL, *me = NULL;
	bson_t tenant;
	int rc;

	if (!bson_iter_init_find(&it, user, "tenant_id") || !BSON_ITER_HOLDS_OID(&it))
		return TR_EINTERNAL;
	bson_oid_to_string(bson_iter_oid(&it), tid);
	if (!bson_iter_init_find(&it, user, "_id") || !BSON_ITER_HOLDS_OID(&it))
		return TR_EINTERNAL;
	bson_oid_to_string(bson_iter_oid(&it), uid);
	if (bson_iter_init_find(&it, user, "active") && BSON_ITER_HOLDS_BOOL(&it) &&
	    !bson_iter_bool(&it))
		return tr_sessions_revoke_user(tid, uid);
	rc = tr_db_get(db, TENANTS, tid, &tenant);
	if (rc == TR_OK)
		rc = identity_permissions(db, user, &perms);
	if (rc == TR_OK) {
		me = identity_me_json(user, &tenant, perms);
		rc = me ? tr_sessions_update_user(tid, uid, perms, me) : TR_ENOMEM;
	}
	bson_destroy(&tenant);
	free(perms);
	free(me);
	return rc;
}

bool
identity_roles_known(struct tr_ctx *c, const bson_t *set)
{
	bson_iter_t it, arr;
	bool ok = true;

	if (!bson_iter_init_find(&it, set, "roles") || !BSON_ITER_HOLDS_ARRAY(&it) ||
	    !bson_iter_recurse(&it, &arr))
		return true;
	while (bson_iter_next(&arr)) {
		const char *name = bson_iter_utf8(&arr, NULL);
		if (tr_builtin_role(name))
			continue;
		bson_t filter = BSON_INITIALIZER, role;
		BSON_APPEND_UTF8(&filter, "name", name);
		int rc = tr_role_name_valid(name) ? tr_db_find_one(c->db, ROLES, &filter, &role)
						  : (bson_init(&role), TR_ENOTFOUND);
		bson_destroy(&filter);
		bson_destroy(&role);
		if (rc == TR_EUNAVAILABLE) {
			tr_problem_from_err(c, rc);
			return false;
		}
		if (rc != TR_OK) {
			char *msg = tr_arena_alloc(c->req->arena, 120);
			snprintf(msg, 120, "no role named \"%.60s\"", name);
			tr_problem_field(c, "roles", msg);
			ok = false;
		}
	}
	return ok;
}
