// unit-under-test: server/data/timeline.c
/* The cursors clients hand back: a list's ?cursor (tr_list_query_next,
 * server/data/dblist.c), a client timeline's ?cursor (timeline.c, included
 * to reach its decoder) and an event id as resume_from or ?after takes it
 * (tr_evid_parse, server/events/events.c). They are opaque to clients, so
 * anything may come back. An input is one byte choosing the list's sort
 * (field, direction, narrow or not) and the form of the rest: the cursor
 * text, or (bit 0x10) the bytes a cursor decodes to, which the harness
 * encodes first - so that mutations reach what is read from the BSON
 * inside rather than mostly breaking its base64.
 *
 * Beyond not crashing: a timeline cursor that decodes encodes to a cursor
 * of the same position, which is not after itself; an event id that
 * parses prints as one that parses to the same id. */
#include "fuzz.h"

#include "../../server/data/timeline.c"

#include "events.h"
#include "util.h"

/* The sort fields lists really have; created_at lists page by bucket. */
static const char *const sort_fields[] = {"created_at", "name", "amount", "due_at"};

static void
list_cursor(uint8_t shape, const char *text)
{
	struct tr_list_query q;

	memset(&q, 0, sizeof(q));
	q.sort_field = sort_fields[shape % 4];
	q.direction = shape & 4 ? -1 : 1;
	q.narrow = shape & 8;
	q.limit = 50;
	if (tr_list_query_next(&q, text) && q.has_seq && q.after_seq < 0)
		fuzz_fail("list cursor decoded to bucket %lld", (long long)q.after_seq);
	tr_list_query_free(&q);
}

static void
timeline_cursor(const char *text)
{
	struct tr_timeline_window w, again;
	struct tr_list_query q;
	struct timeline_item last;
	char *encoded;

	memset(&w, 0, sizeof(w));
	if (!decode_cursor(text, &w))
		return;
	last.at = w.after_at;
	last.kind = w.after_kind;
	last.id = w.after_id;
	last.shown = NULL;
	encoded = encode_cursor(&last);
	if (!encoded)
		fuzz_fail("a decoded timeline cursor does not encode");
	memset(&again, 0, sizeof(again));
	if (!decode_cursor(encoded, &again) || again.after_at != w.after_at ||
	    strcmp(again.after_kind, w.after_kind) != 0 ||
	    bson_oid_compare(&again.after_id, &w.after_id) != 0)
		fuzz_fail("timeline cursor %s re-encodes as %s, another position", text, encoded);
	free(encoded);
	if (tr_timeline_after(&w, w.after_kind, w.after_at, &w.after_id))
		fuzz_fail("the cursor's own item is after the cursor");
	w.limit = 51;
	tr_timeline_query(&w, w.after_kind, "at", &q);
	tr_list_query_free(&q);
}

static void
event_id(const char *text, size_t len)
{
	struct tr_evid id, again;
	char printed[48];

	if (!tr_evid_parse(text, len, &id))
		return;
	snprintf(printed, sizeof(printed), "%llu-%llu", id.ms, id.seq);
	if (!tr_evid_parse(printed, strlen(printed), &again) || tr_evid_cmp(&id, &again) != 0)
		fuzz_fail("event id %.*s prints as %s, another id", (int)len, text, printed);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text;

	if (size < 1)
		return 0;
	if (data[0] & 0x10) {
		text = tr_b64url_encode(data + 1, size - 1);
		if (!text)
			abort();
	} else {
		text = fuzz_cstring(data + 1, size - 1);
	}
	list_cursor(data[0], text);
	timeline_cursor(text);
	event_id(text, strlen(text));
	free(text);
	return 0;
}
