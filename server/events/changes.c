/* The changes feed's reading of a tenant's event stream (events.h,
 * tr_changes_read). Entries and bounds are read as WebSocket catch-up
 * reads them (stream.h), and shown under the rule that filters delivery
 * (tr_event_visible), so a client may alternate between the two and see
 * every change once. Worker threads: the calls wait for Redis. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "events.h"
#include "json.h"
#include "kvconn.h"
#include "perm.h"
#include "stream.h"
#include "util.h"

#define CHANGES_PAGE 256 /* entries per XRANGE */

static int
read_bounds(const char *key, struct tr_stream_bounds *b)
{
	const char *argv[4] = {"EVAL", tr_stream_bounds_lua, "1", key};
	redisReply *r = tr_kv_command(4, argv, NULL);
	int rc = TR_OK;

	if (!r)
		return TR_EUNAVAILABLE;
	if (!tr_stream_bounds_parse(r, b))
		rc = TR_EINTERNAL;
	freeReplyObject(r);
	return rc;
}

static bool
is_deletion(const char *event)
{
	static const char suffix[] = ".deleted";
	size_t n = strlen(event), k = sizeof(suffix) - 1;

	return n > k && strcmp(event + n - k, suffix) == 0;
}

/* The item of an entry: its id, then the members of its frame as the
 * WebSocket sends them, data null for a deletion. */
static int
append_item(bson_t *items, uint32_t index, const struct tr_stream_entry *e)
{
	bson_t frame = BSON_INITIALIZER, item;
	bson_iter_t it;
	char key[16], err[128];
	const char *k;
	char *json = malloc(e->tail_len + 1);
	bool deletion = false;
	int rc = TR_OK;

	if (!json)
		return TR_ENOMEM;
	json[0] = '{'; /* the tail is the frame after its opening brace and id */
	memcpy(json + 1, e->tail, e->tail_len);
	if (tr_json_parse(json, e->tail_len + 1, &frame, err, sizeof(err)) != 0) {
		rc = TR_EINTERNAL;
		goto out;
	}
	if (bson_iter_init_find(&it, &frame, "event") && BSON_ITER_HOLDS_UTF8(&it))
		deletion = is_deletion(bson_iter_utf8(&it, NULL));
	bson_uint32_to_string(index, &k, key, sizeof(key));
	BSON_APPEND_DOCUMENT_BEGIN(items, k, &item);
	bson_append_utf8(&item, "id", 2, e->id_str, (int)e->id_len);
	if (bson_iter_init(&it, &frame))
		while (bson_iter_next(&it)) {
			if (deletion && strcmp(bson_iter_key(&it), "data") == 0)
				BSON_APPEND_NULL(&item, "data");
			else
				bson_append_iter(&item, NULL, 0, &it);
		}
	bson_append_document_end(items, &item);
out:
	bson_destroy(&frame);
	free(json);
	return rc;
}

/* Is since still good against the stream's bounds (read after the page,
 * so that what the page read was there when it read it: trimming only
 * moves the first id forward)? An id later than the newest is none of
 * this tenant's; one before the oldest held is too old once retention
 * trimmed anything (resuming from the very last trimmed id is refused
 * too, as WebSocket resume refuses it: conservative). */
static bool
since_held(const struct tr_evid *since, const struct tr_stream_bounds *b)
{
	if (tr_evid_cmp(since, &b->last) > 0)
		return false;
	if (!b->trimmed)
		return true;
	return b->held ? tr_evid_cmp(since, &b->first) >= 0 : tr_evid_cmp(since, &b->last) >= 0;
}

int
tr_changes_read(const struct tr_changes_query *q, bson_t *items, char *next, bool *has_more)
{
	struct tr_stream_bounds bounds;
	struct tr_evid cursor = {0, 0}, fallback = {0, 0};
	char key[64], start[48], count[16];
	const char *argv[6] = {"XRANGE", key, start, "+", "COUNT", count};
	int nitems = 0, examined = 0, rc;
	bool done = false, more = false;

	snprintf(key, sizeof(key), "t:{%s}:events", q->tenant_hex);
	snprintf(count, sizeof(count), "%d", CHANGES_PAGE);
	if (q->has_since) {
		cursor = fallback = q->since;
	} else {
		/* from the oldest held; with nothing to read, next is the
		 * newest id as it was before the read, so nothing added
		 * meanwhile is skipped */
		rc = read_bounds(key, &bounds);
		if (rc != TR_OK)
			return rc;
		fallback = bounds.last;
	}
	while (!done) {
		snprintf(start, sizeof(start), "(%llu-%llu", cursor.ms, cursor.seq);
		redisReply *r = tr_kv_command(6, argv, NULL);
		if (!r)
			return TR_EUNAVAILABLE;
		if (r->type != REDIS_REPLY_ARRAY) {
			freeReplyObject(r);
			return TR_EINTERNAL;
		}
		for (size_t i = 0; i < r->elements && !done; i++) {
			struct tr_stream_entry e;
			bool known = tr_stream_entry_parse(r->element[i], &e);
			if (!known && e.id_len == 0) {
				rc = TR_EINTERNAL; /* no id to step past */
				freeReplyObject(r);
				return rc;
			}
			bool visible = known && tr_event_visible(e.topic, e.owner, q->topics,
								 q->own_only, q->user_hex);
			if (visible && nitems == q->limit) {
				more = true; /* one more for the reader: the page ends before it */
				done = true;
				break;
			}
			if (visible) {
				rc = append_item(items, (uint32_t)nitems, &e);
				if (rc != TR_OK) {
					freeReplyObject(r);
					return rc;
				}
				nitems++;
			}
			cursor = fallback = e.id;
			if (++examined >= tr_cfg->changes_scan) {
				more = true; /* not known: the next page tells */
				done = true;
			}
		}
		if (r->elements < CHANGES_PAGE)
			done = true; /* the end of the stream */
		freeReplyObject(r);
	}
	if (q->has_since) {
		rc = read_bounds(key, &bounds);
		if (rc != TR_OK)
			return rc;
		if (!since_held(&q->since, &bounds))
			return TR_EGONE;
	}
	snprintf(next, 48, "%llu-%llu", fallback.ms, fallback.seq);
	*has_more = more;
	return TR_OK;
}

/* A webhook's replay walks the stream as the feed does, under the same
 * rule for an id retention passed (since_held), and hands each entry on
 * as the JSON a delivery carries: {"id", then the frame's members}. */
int
tr_events_after(const char *tenant_hex, const char *after, int max,
		int (*visit)(void *arg, const char *id, const char *topic, const char *json,
			     size_t len),
		void *arg, char last[64])
{
	struct tr_stream_bounds bounds;
	struct tr_evid cursor;
	char key[64], start[48], count[16];
	const char *argv[6] = {"XRANGE", key, start, "+", "COUNT", count};
	int seen = 0, rc;
	bool stop = false;

	last[0] = '\0';
	if (!tr_is_object_id(tenant_hex) || !tr_evid_parse(after, strlen(after), &cursor))
		return TR_EINVALID;
	snprintf(key, sizeof(key), "t:{%s}:events", tenant_hex);
	if ((rc = read_bounds(key, &bounds)) != TR_OK)
		return rc;
	if (!since_held(&cursor, &bounds))
		return TR_ENOTFOUND;
	while (!stop && seen < max) {
		int want = max - seen < CHANGES_PAGE ? max - seen : CHANGES_PAGE;
		snprintf(start, sizeof(start), "(%llu-%llu", cursor.ms, cursor.seq);
		snprintf(count, sizeof(count), "%d", want);
		redisReply *r = tr_kv_command(6, argv, NULL);
		if (!r)
			return TR_EUNAVAILABLE;
		if (r->type != REDIS_REPLY_ARRAY) {
			freeReplyObject(r);
			return TR_EINTERNAL;
		}
		for (size_t i = 0; i < r->elements && !stop; i++) {
			struct tr_stream_entry e;
			bool known = tr_stream_entry_parse(r->element[i], &e);
			if (e.id_len == 0) {
				freeReplyObject(r);
				return TR_EINTERNAL; /* no id to step past */
			}
			cursor = e.id;
			snprintf(last, 64, "%.*s", (int)e.id_len, e.id_str);
			seen++;
			if (!known)
				continue;
			size_t len = 8 + e.id_len + 2 + e.tail_len;
			char *json = malloc(len + 1);
			if (!json) {
				freeReplyObject(r);
				return TR_ENOMEM;
			}
			int n = snprintf(json, len + 1, "{\"id\":\"%s\",%.*s", last,
					 (int)e.tail_len, e.tail);
			stop = visit(arg, last, tr_topic_name(e.topic), json, (size_t)n) != 0;
			free(json);
		}
		bool more = (int)r->elements == want;
		freeReplyObject(r);
		if (!more)
			break;
	}
	return TR_OK;
}

static void
format_evid(const struct tr_evid *id, char out[48])
{
	snprintf(out, 48, "%llu-%llu", id->ms, id->seq);
}

/* The stream's bounds as the feed sees them, with the retention that keeps
 * them: read once, by the script every reader uses, so the numbers agree
 * with what a resume or a feed page from the oldest id would find. */
int
tr_events_stream_stats(const char *tenant_hex, struct tr_stream_stats *out)
{
	struct tr_stream_bounds b;
	char key[96];
	int rc;

	memset(out, 0, sizeof(*out));
	out->max_len = tr_cfg->events_max_len;
	out->max_age_s = tr_cfg->events_max_age;
	snprintf(key, sizeof(key), "t:{%s}:events", tenant_hex);
	rc = read_bounds(key, &b);
	if (rc != TR_OK)
		return rc;
	if (b.last.ms || b.last.seq)
		format_evid(&b.last, out->newest);
	if (b.held)
		format_evid(&b.first, out->oldest);
	out->length = b.length;
	out->added = b.added;
	out->trimmed = b.trimmed;
	return TR_OK;
}
