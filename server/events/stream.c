/* Reading a tenant's event stream back from an id (worker threads): what
 * a webhook's replay walks. The stream keeps events_max_len entries for
 * events_max_age seconds (events.c trims it as it appends). */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "events.h"
#include "kvconn.h"
#include "util.h"

#define PAGE 200

/* The first id the stream still holds into first (64 bytes): TR_OK,
 * TR_ENOTFOUND for an empty (or expired) stream, TR_EUNAVAILABLE. */
static int
first_id(const char *key, char first[64])
{
	const char *argv[] = {"XRANGE", key, "-", "+", "COUNT", "1"};
	size_t lens[6];
	redisReply *r;
	int rc = TR_ENOTFOUND;

	for (int i = 0; i < 6; i++)
		lens[i] = strlen(argv[i]);
	r = tr_kv_command(6, argv, lens);
	if (!r)
		return TR_EUNAVAILABLE;
	if (r->type == REDIS_REPLY_ERROR)
		rc = TR_EINTERNAL;
	else if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
		 r->element[0]->type == REDIS_REPLY_ARRAY && r->element[0]->elements == 2 &&
		 r->element[0]->element[0]->type == REDIS_REPLY_STRING &&
		 r->element[0]->element[0]->len < 64) {
		snprintf(first, 64, "%s", r->element[0]->element[0]->str);
		rc = TR_OK;
	}
	freeReplyObject(r);
	return rc;
}

/* One XRANGE entry handed to visit as the event's JSON; 1 when visit
 * stopped the walk. */
static int
visit_entry(const redisReply *e,
	    int (*visit)(void *, const char *, const char *, const char *, size_t), void *arg,
	    char *last)
{
	const redisReply *id, *fields, *t = NULL, *b = NULL;
	char topic[64], *json;
	int stop;

	if (e->type != REDIS_REPLY_ARRAY || e->elements != 2)
		return 0;
	id = e->element[0];
	fields = e->element[1];
	if (id->type != REDIS_REPLY_STRING || id->len >= 64 || fields->type != REDIS_REPLY_ARRAY)
		return 0;
	snprintf(last, 64, "%s", id->str);
	for (size_t i = 0; i + 1 < fields->elements; i += 2) {
		const redisReply *k = fields->element[i], *v = fields->element[i + 1];
		if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING || k->len != 1)
			continue;
		if (k->str[0] == 't')
			t = v;
		else if (k->str[0] == 'b')
			b = v;
	}
	if (!t || !b || t->len >= sizeof(topic))
		return 0;
	snprintf(topic, sizeof(topic), "%s", t->str);
	size_t len = 8 + id->len + 2 + b->len;
	json = malloc(len + 1);
	if (!json)
		return 0;
	/* the same shape the publish script gives a delivery's event */
	int n = snprintf(json, len + 1, "{\"id\":\"%s\",%.*s", id->str, (int)b->len, b->str);
	stop = visit(arg, id->str, topic, json, (size_t)n);
	free(json);
	return stop;
}

int
tr_events_after(const char *tenant_hex, const char *after, int max,
		int (*visit)(void *arg, const char *id, const char *topic, const char *json,
			     size_t len),
		void *arg, char last[64])
{
	char key[96], first[64], start[72], count[16];
	struct tr_evid a, f;
	int rc, seen = 0;

	last[0] = '\0';
	if (!tr_is_object_id(tenant_hex) || !tr_evid_parse(after, strlen(after), &a))
		return TR_EINVALID;
	snprintf(key, sizeof(key), "t:%s:events", tenant_hex);
	rc = first_id(key, first);
	if (rc != TR_OK)
		return rc;
	if (!tr_evid_parse(first, strlen(first), &f))
		return TR_EINTERNAL;
	if (tr_evid_cmp(&a, &f) < 0)
		return TR_ENOTFOUND; /* events after it may have been trimmed */
	snprintf(start, sizeof(start), "(%s", after);
	while (seen < max) {
		int want = max - seen < PAGE ? max - seen : PAGE;
		const char *argv[6] = {"XRANGE", key, start, "+", "COUNT", count};
		size_t lens[6];
		redisReply *r;
		bool stop = false;
		snprintf(count, sizeof(count), "%d", want);
		for (int i = 0; i < 6; i++)
			lens[i] = strlen(argv[i]);
		r = tr_kv_command(6, argv, lens);
		if (!r)
			return TR_EUNAVAILABLE;
		if (r->type != REDIS_REPLY_ARRAY) {
			freeReplyObject(r);
			return TR_EINTERNAL;
		}
		for (size_t i = 0; i < r->elements && !stop; i++) {
			stop = visit_entry(r->element[i], visit, arg, last) != 0;
			seen++;
		}
		bool more = (int)r->elements == want && !stop;
		freeReplyObject(r);
		if (!more)
			break;
		snprintf(start, sizeof(start), "(%s", last);
	}
	return TR_OK;
}
