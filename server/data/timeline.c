/* A client's timeline (timeline.h): the window a request asks for, every
 * module's items gathered on the worker that answers it, sorted, cut to a
 * page, and the cursor of the next page. */
#include "timeline.h"

#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "resource.h"
#include "util.h"

#define DEFAULT_LIMIT 50
#define MAX_LIMIT 200
#define MAX_CURSOR_LEN 256

struct timeline_item {
	int64_t at;
	const char *kind; /* the declaration's name (static) */
	bson_oid_t id;
	bson_t *shown; /* owned */
};

struct tr_timeline_items {
	const struct tr_timeline *from; /* the module adding now */
	struct timeline_item *all;
	size_t n, cap;
};

/* Where (at, kind, id) stands against (bat, bkind, bid) in the timeline's
 * order: negative when it comes first (newer; at a tie, the smaller kind,
 * then the larger id), positive when it comes after, 0 for the same. */
static int
position_cmp(int64_t at, const char *kind, const bson_oid_t *id, int64_t bat, const char *bkind,
	     const bson_oid_t *bid)
{
	int k, i;

	if (at != bat)
		return at > bat ? -1 : 1;
	if ((k = strcmp(kind, bkind)) != 0)
		return k < 0 ? -1 : 1;
	i = bson_oid_compare(id, bid);
	return i > 0 ? -1 : i < 0 ? 1 : 0;
}

static int
item_cmp(const void *a, const void *b)
{
	const struct timeline_item *x = a, *y = b;
	return position_cmp(x->at, x->kind, &x->id, y->at, y->kind, &y->id);
}

bool
tr_timeline_after(const struct tr_timeline_window *w, const char *kind, int64_t at,
		  const bson_oid_t *id)
{
	return !w->has_after ||
	       position_cmp(at, kind, id, w->after_at, w->after_kind, &w->after_id) > 0;
}

/* A kind's records past the cursor, in the kind's own list sorted by
 * (at, id) descending: at the cursor's time, those below its id when the
 * kind is the cursor's, all of them when the kind comes after the
 * cursor's (an id above every id), none when it comes before (an id below
 * every id); older ones always. */
void
tr_timeline_query(const struct tr_timeline_window *w, const char *kind, const char *at_field,
		  struct tr_list_query *q)
{
	int k;

	memset(q, 0, sizeof(*q));
	q->sort_field = at_field;
	q->direction = -1;
	q->limit = w->limit;
	q->narrow = true;
	if (!w->has_after)
		return;
	q->has_after = true;
	q->after_value.value_type = BSON_TYPE_DATE_TIME;
	q->after_value.value.v_datetime = w->after_at;
	k = strcmp(kind, w->after_kind);
	if (k == 0)
		bson_oid_copy(&w->after_id, &q->after_id);
	else
		memset(&q->after_id, k > 0 ? 0xff : 0x00, sizeof(q->after_id));
}

int
tr_timeline_add(struct tr_timeline_items *out, const char *kind, const bson_oid_t *id, int64_t at,
		const bson_t *shown)
{
	const char *declared = NULL;
	bson_t *copy;

	for (size_t i = 0; out->from && i < out->from->nkinds; i++)
		if (strcmp(out->from->kinds[i].name, kind) == 0)
			declared = out->from->kinds[i].name;
	if (!declared)
		return TR_EINVALID;
	if (out->n == out->cap) {
		size_t cap = out->cap ? out->cap * 2 : 64;
		struct timeline_item *all = realloc(out->all, cap * sizeof(*all));
		if (!all)
			return TR_ENOMEM;
		out->all = all;
		out->cap = cap;
	}
	if (!(copy = bson_copy(shown)))
		return TR_ENOMEM;
	out->all[out->n].at = at;
	out->all[out->n].kind = declared;
	bson_oid_copy(id, &out->all[out->n].id);
	out->all[out->n].shown = copy;
	out->n++;
	return TR_OK;
}

/* The cursor is base64url of {"a": at, "k": kind, "i": id}: the last item
 * of the page before. */
static char *
encode_cursor(const struct timeline_item *last)
{
	bson_t doc = BSON_INITIALIZER;
	char *out;

	BSON_APPEND_DATE_TIME(&doc, "a", last->at);
	BSON_APPEND_UTF8(&doc, "k", last->kind);
	BSON_APPEND_OID(&doc, "i", &last->id);
	out = tr_b64url_encode(bson_get_data(&doc), doc.len);
	bson_destroy(&doc);
	return out;
}

static bool
decode_cursor(const char *text, struct tr_timeline_window *w)
{
	uint8_t raw[MAX_CURSOR_LEN];
	size_t len = sizeof(raw), klen = 0, offset;
	bson_iter_t it;
	bson_t view;

	if (strlen(text) > MAX_CURSOR_LEN || tr_b64url_decode(text, raw, &len) != 0)
		return false;
	if (!bson_init_static(&view, raw, len) ||
	    !bson_validate(&view, BSON_VALIDATE_UTF8, &offset))
		return false;
	if (!bson_iter_init_find(&it, &view, "a") || !BSON_ITER_HOLDS_DATE_TIME(&it))
		return false;
	w->after_at = bson_iter_date_time(&it);
	if (!bson_iter_init_find(&it, &view, "k") || !BSON_ITER_HOLDS_UTF8(&it))
		return false;
	const char *kind = bson_iter_utf8(&it, NULL);
	klen = strlen(kind);
	if (klen == 0 || klen >= sizeof(w->after_kind))
		return false;
	memcpy(w->after_kind, kind, klen + 1);
	if (!bson_iter_init_find(&it, &view, "i") || !BSON_ITER_HOLDS_OID(&it))
		return false;
	bson_oid_copy(bson_iter_oid(&it), &w->after_id);
	w->has_after = true;
	return true;
}

/* ?limit and ?cursor: the page's size into *page, the window (one more of
 * each kind than the page shows); false after a 422 or 400. */
static bool
read_window(struct tr_ctx *c, struct tr_timeline_window *w, int *page)
{
	const char *limit = tr_query(c, "limit"), *cursor = tr_query(c, "cursor");
	long long n = DEFAULT_LIMIT;

	memset(w, 0, sizeof(*w));
	if (limit && tr_parse_int(limit, 1, MAX_LIMIT, &n) != 0) {
		tr_problem_field(c, "limit", "must be an integer from 1 to 200");
		return false;
	}
	*page = (int)n;
	w->limit = (int)n + 1;
	if (cursor && !decode_cursor(cursor, w)) {
		tr_problem(c, 400, "malformed-request",
			   "cursor is not valid for this list; start again without it");
		return false;
	}
	return true;
}

void
tr_timeline_route(struct tr_ctx *c)
{
	struct tr_timeline_window w;
	struct tr_timeline_items items = {.n = 0};
	bson_t record, body = BSON_INITIALIZER, list;
	bson_oid_t client;
	char *next = NULL;
	int page = 0, rc = TR_OK;

	if (!tr_res_load(c, c->req->route->resource, tr_param(c, 0), &record))
		goto out;
	if (!read_window(c, &w, &page))
		goto out;
	tr_doc_oid(&record, "_id", &client);
	for (size_t m = 0; rc == TR_OK && m < tr_nmodules; m++) {
		const struct tr_timeline *t = tr_modules[m]->timeline;
		if (!t)
			continue;
		items.from = t;
		rc = t->items(c->db, &c->req->principal, &client, &w, &items);
	}
	if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
		goto out;
	}
	if (items.n > 1) /* an empty timeline has no array: qsort takes none */
		qsort(items.all, items.n, sizeof(*items.all), item_cmp);
	size_t shown = items.n < (size_t)page ? items.n : (size_t)page;
	BSON_APPEND_ARRAY_BEGIN(&body, "items", &list);
	for (size_t i = 0; i < shown; i++) {
		const struct timeline_item *e = &items.all[i];
		char key[16], at[32];
		const char *k;
		bson_t item;
		bson_uint32_to_string((uint32_t)i, &k, key, sizeof(key));
		tr_format_time(e->at, at);
		BSON_APPEND_DOCUMENT_BEGIN(&list, k, &item);
		BSON_APPEND_UTF8(&item, "type", e->kind);
		BSON_APPEND_UTF8(&item, "at", at);
		BSON_APPEND_DOCUMENT(&item, e->kind, e->shown);
		bson_append_document_end(&list, &item);
	}
	bson_append_array_end(&body, &list);
	if (items.n > shown) { /* more past the last one shown */
		if (!(next = encode_cursor(&items.all[shown - 1]))) {
			tr_problem_from_err(c, TR_ENOMEM);
			goto out;
		}
		BSON_APPEND_UTF8(&body, "next_cursor", next);
	} else {
		BSON_APPEND_NULL(&body, "next_cursor");
	}
	tr_reply_json(c, 200, &body);
out:
	for (size_t i = 0; i < items.n; i++)
		bson_destroy(items.all[i].shown);
	free(items.all);
	free(next);
	bson_destroy(&record);
	bson_destroy(&body);
}
