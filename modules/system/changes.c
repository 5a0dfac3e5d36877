/* The changes feed, GET /v1/changes (CONTRACT.md "Partner gateway"): the
 * tenant's events after an event id, paged, for the topics the caller may
 * read - the events WebSocket push delivers, with the same ids, so that a
 * client can catch up here and resume there. The platform reads the
 * stream (events.h, tr_changes_read); this file turns the query into a
 * reader and the page into the answer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "events.h"
#include "perm.h"
#include "system.h"
#include "util.h"

/* The contract's page sizes (the route row's "limit=1..500" says so to
 * the OpenAPI document). */
#define CHANGES_LIMIT_DEFAULT 100
#define CHANGES_LIMIT_MAX 500
#define TOPIC_BITS 32 /* module.h: at most 32 topics in all */

/* A 422 naming the query parameter (field) that is wrong. */
static void
bad_parameter(struct tr_ctx *c, const char *field, const char *message)
{
	tr_problem(c, 422, "validation-failed", "a query parameter is not acceptable");
	tr_problem_field(c, field, message);
}

static bool
read_limit(struct tr_ctx *c, int *limit)
{
	const char *s = tr_query(c, "limit");
	char *end;
	long v;

	*limit = CHANGES_LIMIT_DEFAULT;
	if (!s)
		return true;
	v = strtol(s, &end, 10);
	if (!*s || *end || *s == '+' || *s == '-' || v < 1 || v > CHANGES_LIMIT_MAX) {
		bad_parameter(c, "limit", "must be an integer from 1 to 500");
		return false;
	}
	*limit = (int)v;
	return true;
}

static bool
read_since(struct tr_ctx *c, struct tr_changes_query *q)
{
	const char *s = tr_query(c, "since");

	if (!s)
		return true; /* from the oldest event held */
	if (!tr_evid_parse(s, strlen(s), &q->since)) {
		bad_parameter(c, "since",
			      "must be an event id as events carry it (\"<ms>-<seq>\")");
		return false;
	}
	q->has_since = true;
	return true;
}

/* ?topics=crm.leads,erp.orders, or every topic the caller may read. A
 * name no module publishes is 422; one the caller may not read is 403
 * (names are checked first, so a 403 never hides a typo). */
static bool
read_topics(struct tr_ctx *c, struct tr_changes_query *q)
{
	const char *perms = c->req->principal.perms ? c->req->principal.perms : "";
	const char *list = tr_query(c, "topics");
	unsigned named = 0;
	bool own;

	if (!list) {
		for (int t = 0; t < TOPIC_BITS; t++)
			if (tr_topic_may_read(perms, t, &own)) {
				q->topics |= 1u << t;
				q->own_only |= own ? 1u << t : 0;
			}
		return true;
	}
	for (const char *p = list;;) {
		size_t len = strcspn(p, ",");
		int t = tr_topic_find(p, len);
		if (t < 0 || t >= TOPIC_BITS) {
			bad_parameter(c, "topics",
				      len ? "names a topic that does not exist"
					  : "must be topic names separated by commas");
			return false;
		}
		named |= 1u << t;
		if (!p[len])
			break;
		p += len + 1;
	}
	for (int t = 0; t < TOPIC_BITS; t++) {
		if (!(named & (1u << t)))
			continue;
		if (!tr_topic_may_read(perms, t, &own)) {
			tr_problem(c, 403, "forbidden",
				   "topics names a topic your permissions do not let you read");
			return false;
		}
		q->topics |= 1u << t;
		q->own_only |= own ? 1u << t : 0;
	}
	return true;
}

/* GET /v1/changes?since=<event id>&topics=a,b&limit=100 ->
 * {"items": [...], "next", "has_more"}. */
void
changes_list(struct tr_ctx *c)
{
	const struct tr_principal *p = &c->req->principal;
	struct tr_changes_query q = {.tenant_hex = p->tenant_hex, .user_hex = p->user_hex};
	bson_t doc = BSON_INITIALIZER, items;
	char next[48];
	bool has_more = false;
	int rc;

	if (!read_limit(c, &q.limit) || !read_since(c, &q) || !read_topics(c, &q))
		goto out;
	BSON_APPEND_ARRAY_BEGIN(&doc, "items", &items);
	rc = tr_changes_read(&q, &items, next, &has_more);
	bson_append_array_end(&doc, &items);
	if (rc == TR_EGONE) {
		tr_problem(c, 410, "resync-required",
			   "the events after since are no longer kept (or since is no event of "
			   "this tenant): read the current state again, then follow the feed "
			   "from the newest event id");
	} else if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
	} else {
		BSON_APPEND_UTF8(&doc, "next", next);
		BSON_APPEND_BOOL(&doc, "has_more", has_more);
		tr_reply_json(c, 200, &doc);
	}
out:
	bson_destroy(&doc);
}
