/* Lists: cursor pagination over the data API (db.h). A list is sorted by
 * one field plus _id; the cursor is opaque to clients and names the sort it
 * belongs to. Lists in created_at order page through list positions
 * (seq.h) so that a page reads a bounded number of records however many
 * the tenant has; other orders, and narrow filters (an id, an email), read
 * what matches and sort it. */
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "dbpool.h"
#include "json.h"
#include "log.h"
#include "seq.h"
#include "dbwrite_int.h"
#include "util.h"

#define MAX_CURSOR_LEN 1024
/* Records a page may hold while it is filled (the page is at most 200). */
#define SCAN_KEEP 1024

void
tr_list_query_free(struct tr_list_query *q)
{
	if (q->owns_doc)
		bson_destroy(&q->cursor_doc);
	q->owns_doc = q->has_after = q->has_seq = false;
}

/* Lists in created_at order, unless their filter is narrow, page through
 * list positions (seq.h). */
static bool
by_seq(const struct tr_list_query *q)
{
	return !q->narrow && strcmp(q->sort_field, "created_at") == 0;
}

static bool
decode_cursor(const char *text, struct tr_list_query *q)
{
	uint8_t raw[MAX_CURSOR_LEN];
	size_t len = sizeof(raw);
	bson_iter_t it;
	bson_t view;
	size_t offset;
	bool ok = false;

	if (strlen(text) > MAX_CURSOR_LEN || tr_b64url_decode(text, raw, &len) != 0)
		return false;
	if (!bson_init_static(&view, raw, len) ||
	    !bson_validate(&view, BSON_VALIDATE_NONE, &offset))
		return false;
	bson_copy_to(&view, &q->cursor_doc);
	q->owns_doc = true;
	q->has_after = true;
	if (!bson_iter_init_find(&it, &q->cursor_doc, "s") || !BSON_ITER_HOLDS_UTF8(&it) ||
	    strcmp(bson_iter_utf8(&it, NULL), q->sort_field) != 0)
		goto out;
	if (!bson_iter_init_find(&it, &q->cursor_doc, "d") || !BSON_ITER_HOLDS_INT32(&it) ||
	    bson_iter_int32(&it) != q->direction)
		goto out;
	if (bson_iter_init_find(&it, &q->cursor_doc, "q")) { /* a bucket (by_seq) */
		if (!BSON_ITER_HOLDS_INT64(&it) || bson_iter_int64(&it) < 0 || !by_seq(q))
			goto out;
		q->has_seq = true;
		q->after_seq = bson_iter_int64(&it);
		q->has_after = false;
		if (bson_iter_init_find(&it, &q->cursor_doc, "i")) { /* and a record in it */
			if (!BSON_ITER_HOLDS_OID(&it))
				goto out;
			bson_oid_copy(bson_iter_oid(&it), &q->after_id);
			if (!bson_iter_init_find(&it, &q->cursor_doc, "v") ||
			    !BSON_ITER_HOLDS_DATE_TIME(&it))
				goto out;
			q->after_value = *bson_iter_value(&it);
			q->has_after = true;
		}
		ok = true;
		goto out;
	}
	if (by_seq(q))
		goto out;
	if (!bson_iter_init_find(&it, &q->cursor_doc, "i") || !BSON_ITER_HOLDS_OID(&it))
		goto out;
	bson_oid_copy(bson_iter_oid(&it), &q->after_id);
	if (!bson_iter_init_find(&it, &q->cursor_doc, "v"))
		goto out;
	q->after_value = *bson_iter_value(&it); /* points into cursor_doc */
	ok = true;
out:
	return ok;
}

bool
tr_list_query_next(struct tr_list_query *q, const char *cursor)
{
	tr_list_query_free(q);
	return decode_cursor(cursor, q);
}

bool
tr_list_query_parse(struct tr_ctx *c, const char *const *sorts, struct tr_list_query *q)
{
	return tr_list_query_parse_as(c, sorts, false, q);
}

bool
tr_list_query_parse_as(struct tr_ctx *c, const char *const *sorts, bool narrow,
		       struct tr_list_query *q)
{
	const char *limit = tr_query(c, "limit"), *sort = tr_query(c, "sort"),
		   *cursor = tr_query(c, "cursor");
	long long n = 50;

	memset(q, 0, sizeof(*q));
	q->narrow = narrow;
	if (limit && tr_parse_int(limit, 1, 200, &n) != 0)
		tr_problem_field(c, "limit", "must be an integer from 1 to 200");
	q->limit = (int)n;
	if (!sort)
		sort = sorts[0];
	q->direction = sort[0] == '-' ? -1 : 1;
	q->sort_field = sort[0] == '-' ? sort + 1 : sort;
	bool known = false;
	for (const char *const *s = sorts; *s; s++)
		if (strcmp((*s)[0] == '-' ? *s + 1 : *s, q->sort_field) == 0)
			known = true;
	if (!known)
		tr_problem_field(c, "sort", "is not a sortable field");
	if (c->resp->problem_slug)
		return false;
	if (cursor && !decode_cursor(cursor, q)) {
		tr_list_query_free(q);
		tr_problem(c, 400, "malformed-request",
			   "cursor is not valid for this list and sort; start again without it");
		return false;
	}
	return true;
}

static char *
encode_cursor(const struct tr_list_query *q, const bson_t *last)
{
	bson_t doc = BSON_INITIALIZER;
	bson_iter_t it;
	char *out = NULL;

	BSON_APPEND_UTF8(&doc, "s", q->sort_field);
	BSON_APPEND_INT32(&doc, "d", q->direction);
	if (bson_iter_init_find(&it, last, q->sort_field))
		bson_append_iter(&doc, "v", 1, &it);
	else
		BSON_APPEND_NULL(&doc, "v");
	if (bson_iter_init_find(&it, last, "_id") && BSON_ITER_HOLDS_OID(&it)) {
		BSON_APPEND_OID(&doc, "i", bson_iter_oid(&it));
		out = tr_b64url_encode(bson_get_data(&doc), doc.len);
	}
	bson_destroy(&doc);
	return out;
}

static int64_t
created_of(const bson_t *doc)
{
	bson_iter_t it;

	return bson_iter_init_find(&it, doc, "created_at") && BSON_ITER_HOLDS_DATE_TIME(&it)
		   ? bson_iter_date_time(&it)
		   : 0;
}

/* Order within a bucket: created_at, then _id. */
static int
position_cmp(const bson_t *x, int64_t bx, const bson_t *y, int64_t by)
{
	int64_t tx = created_of(x), ty = created_of(y);
	bson_oid_t ix, iy;
	bson_iter_t it;

	if (bx != by)
		return bx < by ? -1 : 1;
	if (tx != ty)
		return tx < ty ? -1 : 1;
	memset(&ix, 0, sizeof(ix));
	memset(&iy, 0, sizeof(iy));
	if (bson_iter_init_find(&it, x, "_id") && BSON_ITER_HOLDS_OID(&it))
		bson_oid_copy(bson_iter_oid(&it), &ix);
	if (bson_iter_init_find(&it, y, "_id") && BSON_ITER_HOLDS_OID(&it))
		bson_oid_copy(bson_iter_oid(&it), &iy);
	return bson_oid_compare(&ix, &iy);
}

static int
position_asc(const void *a, const void *b)
{
	const bson_t *x = *(bson_t *const *)a, *y = *(bson_t *const *)b;
	return position_cmp(x, tr_seq_of(x), y, tr_seq_of(y));
}

static int
position_desc(const void *a, const void *b)
{
	return -position_asc(a, b);
}

/* Is doc (in bucket b) past the cursor's position in the list's direction? */
static bool
after_cursor(const struct tr_list_query *q, const bson_t *doc, int64_t b)
{
	bson_t pos = BSON_INITIALIZER;
	int cmp;

	if (!q->has_after)
		return true;
	BSON_APPEND_OID(&pos, "_id", &q->after_id);
	bson_append_value(&pos, "created_at", -1, &q->after_value);
	cmp = position_cmp(doc, b, &pos, q->after_seq);
	bson_destroy(&pos);
	return q->direction < 0 ? cmp < 0 : cmp > 0;
}

/* The cursor of a page: at bucket b, after the record last (NULL: the
 * whole of bucket b is still to come). */
static char *
encode_seq_cursor(const struct tr_list_query *q, int64_t b, const bson_t *last)
{
	bson_t doc = BSON_INITIALIZER;
	bson_iter_t it;
	char *out;

	BSON_APPEND_UTF8(&doc, "s", q->sort_field);
	BSON_APPEND_INT32(&doc, "d", q->direction);
	BSON_APPEND_INT64(&doc, "q", b);
	if (last && bson_iter_init_find(&it, last, "_id") && BSON_ITER_HOLDS_OID(&it)) {
		BSON_APPEND_OID(&doc, "i", bson_iter_oid(&it));
		BSON_APPEND_DATE_TIME(&doc, "v", created_of(last));
	}
	out = tr_b64url_encode(bson_get_data(&doc), doc.len);
	bson_destroy(&doc);
	return out;
}

/* A page in created_at order: the list buckets (seq.h) read one at a time
 * by equality on _b, newest (or oldest) first, from the cursor's position
 * on, until the page is full. A page reads at most list_scan_buckets
 * buckets, so a filter that matches few of the tenant's records answers a
 * short page (with a cursor to go on) instead of reading them all. */
static int
list_by_seq(struct tr_db *db, const char *coll, const bson_t *filter, const struct tr_list_query *q,
	    bson_t *items, char **next_cursor)
{
	bson_t *found[SCAN_KEEP];
	int nfound = 0, scanned = 0, rc = TR_OK;
	int64_t newest, b;
	bool desc = q->direction < 0;

	if ((rc = tr_seq_newest(db, coll, &newest)) != TR_OK || newest < 0)
		return rc;
	if (q->has_seq)
		b = q->after_seq;
	else
		b = desc ? newest : 0;
	while ((desc ? b >= 0 : b <= newest) && nfound <= q->limit &&
	       scanned < tr_db_config()->list_scan_buckets) {
		bson_t scoped = BSON_INITIALIZER;
		const bson_t *doc;
		bson_error_t error;
		char key[64];
		mongoc_collection_t *c = tr_db_collection(db, coll);
		mongoc_cursor_t *cur;
		int first = nfound;

		tr_db_scoped_filter(db, filter, &scoped);
		tr_seq_bucket(db, b, key);
		BSON_APPEND_UTF8(&scoped, "_b", key);
		cur = mongoc_collection_find_with_opts(c, &scoped, NULL, NULL);
		while (rc == TR_OK && mongoc_cursor_next(cur, &doc)) {
			if (!after_cursor(q, doc, b))
				continue;
			if (nfound == SCAN_KEEP) { /* a bucket far larger than TR_SEQ_BUCKET */
				tr_error("db: list of %s: bucket %s holds too many records", coll,
					 key);
				rc = TR_EINTERNAL;
				break;
			}
			found[nfound] = bson_copy(doc);
			tr_dbw_append_nulls(coll, doc, found[nfound++]);
		}
		if (rc == TR_OK && mongoc_cursor_error(cur, &error))
			rc = tr_db_fail("list", coll, &error);
		mongoc_cursor_destroy(cur);
		mongoc_collection_destroy(c);
		bson_destroy(&scoped);
		if (rc != TR_OK)
			goto out;
		qsort(found + first, (size_t)(nfound - first), sizeof(found[0]),
		      desc ? position_desc : position_asc);
		scanned++;
		b += desc ? -1 : 1;
	}
	int shown = nfound < q->limit ? nfound : q->limit;
	for (int i = 0; i < shown; i++) {
		char k[16];
		const char *key;
		bson_t item;
		bson_uint32_to_string((uint32_t)i, &key, k, sizeof(k));
		BSON_APPEND_DOCUMENT_BEGIN(items, key, &item);
		tr_render_resource(found[i], &item);
		bson_append_document_end(items, &item);
	}
	if (nfound > q->limit) /* more after the last one shown */
		*next_cursor = encode_seq_cursor(q, tr_seq_of(found[shown - 1]), found[shown - 1]);
	else if (desc ? b >= 0 : b <= newest) /* buckets not read yet */
		*next_cursor = encode_seq_cursor(q, b, NULL);
out:
	for (int i = 0; i < nfound; i++)
		bson_destroy(found[i]);
	return rc;
}

int
tr_db_list(struct tr_db *db, const char *coll, const bson_t *filter, const struct tr_list_query *q,
	   bson_t *items, char **next_cursor)
{
	bson_t scoped = BSON_INITIALIZER, opts = BSON_INITIALIZER, sort, or, branch, cond;
	bson_t last = BSON_INITIALIZER;
	const bson_t *doc;
	bson_error_t error;
	mongoc_collection_t *c = NULL;
	mongoc_cursor_t *cur = NULL;
	uint64_t t0 = tr_mono_ns();
	const char *op = q->direction > 0 ? "$gt" : "$lt";
	int n = 0, rc = TR_OK;

	*next_cursor = NULL;
	if (!db->has_tenant) {
		rc = TR_EINVALID;
		goto out;
	}
	if (by_seq(q)) {
		rc = list_by_seq(db, coll, filter, q, items, next_cursor);
		goto out;
	}
	tr_db_scoped_filter(db, filter, &scoped);
	if (q->has_after) {
		/* (field > v) or (field == v and _id > id), flipped for descending */
		BSON_APPEND_ARRAY_BEGIN(&scoped, "$or", & or);
		BSON_APPEND_DOCUMENT_BEGIN(& or, "0", &branch);
		BSON_APPEND_DOCUMENT_BEGIN(&branch, q->sort_field, &cond);
		bson_append_value(&cond, op, -1, &q->after_value);
		bson_append_document_end(&branch, &cond);
		bson_append_document_end(& or, &branch);
		BSON_APPEND_DOCUMENT_BEGIN(& or, "1", &branch);
		bson_append_value(&branch, q->sort_field, -1, &q->after_value);
		BSON_APPEND_DOCUMENT_BEGIN(&branch, "_id", &cond);
		BSON_APPEND_OID(&cond, op, &q->after_id);
		bson_append_document_end(&branch, &cond);
		bson_append_document_end(& or, &branch);
		bson_append_array_end(&scoped, & or);
	}
	BSON_APPEND_DOCUMENT_BEGIN(&opts, "sort", &sort);
	BSON_APPEND_INT32(&sort, q->sort_field, q->direction);
	BSON_APPEND_INT32(&sort, "_id", q->direction);
	bson_append_document_end(&opts, &sort);
	BSON_APPEND_INT64(&opts, "limit", q->limit + 1);

	c = tr_db_collection(db, coll);
	cur = mongoc_collection_find_with_opts(c, &scoped, &opts, NULL);
	while (mongoc_cursor_next(cur, &doc)) {
		if (n == q->limit) {
			*next_cursor = encode_cursor(q, &last);
			break;
		}
		char key[16];
		const char *k;
		bson_t item;
		bson_uint32_to_string((uint32_t)n, &k, key, sizeof(key));
		BSON_APPEND_DOCUMENT_BEGIN(items, k, &item);
		tr_render_resource(doc, &item);
		tr_dbw_append_nulls(coll, doc, &item);
		bson_append_document_end(items, &item);
		bson_reinit(&last);
		bson_copy_to_excluding_noinit(doc, &last, "", NULL);
		n++;
	}
	if (mongoc_cursor_error(cur, &error)) {
		free(*next_cursor);
		*next_cursor = NULL;
		rc = tr_db_fail("list", coll, &error);
	}
out:
	db->elapsed_ns += tr_mono_ns() - t0;
	if (cur)
		mongoc_cursor_destroy(cur);
	mongoc_collection_destroy(c);
	bson_destroy(&scoped);
	bson_destroy(&opts);
	bson_destroy(&last);
	return rc;
}

void
tr_list_reply(struct tr_ctx *c, const char *coll, const bson_t *filter, const char *const *sorts)
{
	tr_list_reply_as(c, coll, filter, sorts, false);
}

void
tr_list_reply_as(struct tr_ctx *c, const char *coll, const bson_t *filter, const char *const *sorts,
		 bool narrow)
{
	struct tr_list_query q;
	bson_t doc = BSON_INITIALIZER, items;
	char *next = NULL;
	int rc;

	if (!tr_list_query_parse_as(c, sorts, narrow, &q))
		goto out;
	BSON_APPEND_ARRAY_BEGIN(&doc, "items", &items);
	rc = tr_db_list(c->db, coll, filter, &q, &items, &next);
	bson_append_array_end(&doc, &items);
	tr_list_query_free(&q);
	if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
		goto out;
	}
	if (next)
		BSON_APPEND_UTF8(&doc, "next_cursor", next);
	else
		BSON_APPEND_NULL(&doc, "next_cursor");
	tr_reply_json(c, 200, &doc);
out:
	free(next);
	bson_destroy(&doc);
}
