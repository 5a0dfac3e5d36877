/* Tags: tenant-wide labels (name unique in the tenant, optional colour).
 * Small on purpose: the first resource on the data layer, exercising
 * create with Idempotency-Key, ETag/If-Match, cursor lists and tenancy. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "json.h"
#include "system.h"

#define COLL "tags"

static const char *const fields[] = {"name", "color", NULL};
static const char *const sorts[] = {"-created_at", "created_at", "name", NULL};

static bool
valid_color(const char *s)
{
	if (strlen(s) != 7 || s[0] != '#')
		return false;
	for (int i = 1; i < 7; i++)
		if (!strchr("0123456789abcdefABCDEF", s[i]))
			return false;
	return true;
}

/* Reads and validates the writable fields into set. */
static bool
read_body(struct tr_ctx *c, bool creating, bson_t *set)
{
	const char *name, *color;
	bool ok = tr_body_only(c, fields);

	ok &= tr_body_line(c, "name", 1, 64, creating, &name);
	ok &= tr_body_string(c, "color", 7, 7, false, &color);
	if (color && !valid_color(color)) {
		tr_problem_field(c, "color", "must be a colour like #1a2b3c");
		ok = false;
	}
	if (!ok)
		return false;
	if (name)
		BSON_APPEND_UTF8(set, "name", name);
	if (color)
		BSON_APPEND_UTF8(set, "color", color);
	else if (creating || tr_body_is_null(c, "color"))
		BSON_APPEND_NULL(set, "color"); /* no colour */
	return true;
}

static void
conflict_or_error(struct tr_ctx *c, int rc)
{
	if (rc == TR_EDUPLICATE)
		tr_problem(c, 409, "conflict", "a tag with this name exists");
	else
		tr_problem_from_err(c, rc);
}

void
tags_create(struct tr_ctx *c)
{
	bson_t set = BSON_INITIALIZER, stored;
	int rc;

	if (!read_body(c, true, &set))
		goto out;
	rc = tr_db_insert(c->db, COLL, &set, &stored);
	if (rc == TR_OK) {
		bson_iter_t it;
		char *loc = tr_arena_alloc(c->req->arena, 48);
		if (bson_iter_init_find(&it, &stored, "_id")) {
			char hex[25];
			bson_oid_to_string(bson_iter_oid(&it), hex);
			snprintf(loc, 48, "/v1/tags/%s", hex);
			c->resp->location = loc;
		}
		tr_reply_resource(c, 201, &stored);
	} else {
		conflict_or_error(c, rc);
	}
	bson_destroy(&stored);
out:
	bson_destroy(&set);
}

void
tags_get(struct tr_ctx *c)
{
	bson_t stored;
	int rc = tr_db_get(c->db, COLL, tr_param(c, 0), &stored);

	if (rc == TR_OK)
		tr_reply_resource(c, 200, &stored);
	else
		tr_problem_from_err(c, rc);
	bson_destroy(&stored);
}

void
tags_update(struct tr_ctx *c)
{
	bson_t set = BSON_INITIALIZER, stored = BSON_INITIALIZER;
	long long version;
	int rc;

	if (!read_body(c, false, &set) || !tr_if_match(c, &version))
		goto out;
	bson_destroy(&stored);
	rc = tr_db_update(c->db, COLL, tr_param(c, 0), version, &set, NULL, &stored);
	if (rc == TR_OK)
		tr_reply_resource(c, 200, &stored);
	else
		conflict_or_error(c, rc);
out:
	bson_destroy(&stored);
	bson_destroy(&set);
}

void
tags_delete(struct tr_ctx *c)
{
	long long version;
	int rc;

	if (!tr_if_match(c, &version))
		return;
	rc = tr_db_delete(c->db, COLL, tr_param(c, 0), version);
	if (rc == TR_OK)
		tr_reply_empty(c, 204);
	else
		tr_problem_from_err(c, rc);
}

void
tags_list(struct tr_ctx *c)
{
	bson_t filter = BSON_INITIALIZER;
	const char *name = tr_query(c, "name");

	if (name)
		BSON_APPEND_UTF8(&filter, "name", name);
	tr_list_reply(c, COLL, &filter, sorts);
	bson_destroy(&filter);
}
