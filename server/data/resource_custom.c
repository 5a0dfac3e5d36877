/* Custom fields: per tenant and entity (a resource that opts in with
 * .custom), a typed key that records carry in "custom"; every write of such
 * a record is checked against the definitions. A module declares where its
 * definitions live (a resource with its own path and collection); the
 * checks of a definition and of the values are the same for all. */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "db.h"
#include "json.h"
#include "resource.h"

#define MAX_DEFS 100

bool
tr_custom_def_hook(struct tr_ctx *c, const struct tr_resource *e, bson_t *set, const bson_t *old)
{
	const char *key = tr_doc_str(set, "key");
	const char *type = old ? tr_doc_str(old, "type") : tr_doc_str(set, "type");
	bson_iter_t it, arr;
	(void)e;

	if (key) {
		bool ok = islower((unsigned char)key[0]);
		for (const char *p = key; *p; p++)
			ok &= islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '_';
		if (!ok) {
			tr_problem_field(c, "key", "must be lower case letters, digits and _");
			return false;
		}
	}
	bool has_options = bson_iter_init_find(&it, set, "options") && BSON_ITER_HOLDS_ARRAY(&it);
	int n = 0;
	if (has_options && bson_iter_recurse(&it, &arr))
		while (bson_iter_next(&arr))
			n++;
	if (type && strcmp(type, "enum") == 0) {
		if (!old && n == 0) {
			tr_problem_field(c, "options", "an enum field needs its options");
			return false;
		}
	} else if (n > 0) {
		tr_problem_field(c, "options", "only an enum field has options");
		return false;
	}
	if (!old && !bson_has_field(set, "required"))
		BSON_APPEND_BOOL(set, "required", false);
	return true;
}

/* One value against its definition. */
static bool
value_ok(const bson_t *def, bson_iter_t *v, bson_t *out, const char *key)
{
	const char *type = tr_doc_str(def, "type");
	int64_t ms;

	if (!type)
		return false;
	if (strcmp(type, "string") == 0) {
		if (!BSON_ITER_HOLDS_UTF8(v) || strlen(bson_iter_utf8(v, NULL)) > 1000)
			return false;
		BSON_APPEND_UTF8(out, key, bson_iter_utf8(v, NULL));
	} else if (strcmp(type, "number") == 0) {
		if (!BSON_ITER_HOLDS_NUMBER(v))
			return false;
		bson_append_iter(out, key, -1, v);
	} else if (strcmp(type, "date") == 0) {
		if (!BSON_ITER_HOLDS_UTF8(v) || !tr_parse_time(bson_iter_utf8(v, NULL), &ms))
			return false;
		BSON_APPEND_UTF8(out, key, bson_iter_utf8(v, NULL));
	} else if (strcmp(type, "bool") == 0) {
		if (!BSON_ITER_HOLDS_BOOL(v))
			return false;
		BSON_APPEND_BOOL(out, key, bson_iter_bool(v));
	} else if (strcmp(type, "enum") == 0) {
		bson_iter_t it, arr;
		if (!BSON_ITER_HOLDS_UTF8(v) || !bson_iter_init_find(&it, def, "options") ||
		    !bson_iter_recurse(&it, &arr))
			return false;
		while (bson_iter_next(&arr))
			if (BSON_ITER_HOLDS_UTF8(&arr) &&
			    strcmp(bson_iter_utf8(&arr, NULL), bson_iter_utf8(v, NULL)) == 0) {
				BSON_APPEND_UTF8(out, key, bson_iter_utf8(v, NULL));
				return true;
			}
		return false;
	} else {
		return false;
	}
	return true;
}

/* Loads the tenant's definitions for entity into defs (an array). */
static int
load_defs(struct tr_ctx *c, const struct tr_resource *e, bson_t *defs)
{
	struct tr_list_query q = {.sort_field = "key", .direction = 1, .limit = MAX_DEFS};
	bson_t filter = BSON_INITIALIZER;
	char *next = NULL;
	int rc;

	BSON_APPEND_UTF8(&filter, "entity", e->custom);
	bson_init(&q.cursor_doc);
	rc = tr_db_list(c->db, e->custom_defs, &filter, &q, defs, &next);
	free(next);
	bson_destroy(&q.cursor_doc);
	bson_destroy(&filter);
	return rc;
}

bool
tr_custom_check(struct tr_ctx *c, const struct tr_resource *e, bool creating, const bson_t *old,
		bson_t *set)
{
	bson_t defs = BSON_INITIALIZER, custom = BSON_INITIALIZER, stored = BSON_INITIALIZER;
	bson_iter_t it, body, d;
	bool ok = true, given;
	int rc;

	given = c->req->has_body && bson_iter_init_find(&body, &c->req->body, "custom") &&
		!BSON_ITER_HOLDS_NULL(&body);
	if (given && !BSON_ITER_HOLDS_DOCUMENT(&body)) {
		tr_problem_field(c, "custom", "must be an object of custom field values");
		ok = false;
		goto out;
	}
	if (!given && !creating)
		goto out; /* unchanged */
	rc = load_defs(c, e, &defs);
	if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
		ok = false;
		goto out;
	}
	/* the values after the change: the stored ones, replaced by those given */
	if (old && bson_iter_init_find(&it, old, "custom") && BSON_ITER_HOLDS_DOCUMENT(&it)) {
		uint32_t len;
		const uint8_t *data;
		bson_iter_document(&it, &len, &data);
		bson_destroy(&stored);
		bson_init_static(&stored, data, len);
	}
	if (given) {
		bson_iter_t v;
		bson_iter_recurse(&body, &v);
		while (bson_iter_next(&v)) {
			const char *key = bson_iter_key(&v);
			bool known = false;
			bson_iter_init(&d, &defs);
			while (bson_iter_next(&d)) {
				bson_t def;
				uint32_t len;
				const uint8_t *data;
				bson_iter_document(&d, &len, &data);
				bson_init_static(&def, data, len);
				const char *k = tr_doc_str(&def, "key");
				if (!k || strcmp(k, key) != 0)
					continue;
				known = true;
				/* null clears the value: nothing is kept for it */
				if (BSON_ITER_HOLDS_NULL(&v))
					continue;
				if (!value_ok(&def, &v, &custom, key)) {
					char *f = tr_arena_alloc(c->req->arena, 64);
					snprintf(f, 64, "custom.%s", key);
					tr_problem_field(
					    c, f, "does not match the field's type or options");
					ok = false;
				}
			}
			if (!known) {
				char *f = tr_arena_alloc(c->req->arena, 64);
				snprintf(f, 64, "custom.%.50s", key);
				tr_problem_field(c, f, "is not a custom field of this tenant");
				ok = false;
			}
		}
	}
	/* keep stored values that were not given */
	if (bson_iter_init(&it, &stored))
		while (bson_iter_next(&it))
			if (!bson_has_field(&custom, bson_iter_key(&it)) &&
			    !(given && bson_iter_init_find(&d, &c->req->body, "custom") &&
			      bson_iter_recurse(&d, &d) && bson_iter_find(&d, bson_iter_key(&it))))
				bson_append_iter(&custom, bson_iter_key(&it), -1, &it);
	/* required ones must have a value */
	bson_iter_init(&d, &defs);
	while (ok && bson_iter_next(&d)) {
		bson_t def;
		uint32_t len;
		const uint8_t *data;
		bson_iter_t req;
		bson_iter_document(&d, &len, &data);
		bson_init_static(&def, data, len);
		const char *k = tr_doc_str(&def, "key");
		if (k && bson_iter_init_find(&req, &def, "required") && bson_iter_as_bool(&req) &&
		    !bson_has_field(&custom, k)) {
			char *f = tr_arena_alloc(c->req->arena, 64);
			snprintf(f, 64, "custom.%s", k);
			tr_problem_field(c, f, "is required");
			ok = false;
		}
	}
	if (ok) {
		tr_doc_remove(set, "custom");
		BSON_APPEND_DOCUMENT(set, "custom", &custom);
	}
out:
	bson_destroy(&defs);
	bson_destroy(&custom);
	bson_destroy(&stored);
	return ok;
}
