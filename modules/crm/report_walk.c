/* Reading the records of a CRM report (reports.h): fields of rendered
 * records (ids are hex, times RFC 3339 strings) and walks over a
 * collection, the path of ":own" callers and of partial days. */
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "reports.h"
#include "util.h"

/* Records read per page while walking a collection: large enough to keep
 * the number of queries down (FerretDB's SQLite backend reads and sorts the
 * whole collection for every page), small enough that a page of rendered
 * deals with their stage history stays around two megabytes. */
#define REPORT_PAGE 2000

/* ---- reading rendered records (ids are hex, times RFC 3339 strings) ---- */

bool
crm_report_rec_oid(const bson_t *rec, const char *field, bson_oid_t *out)
{
	const char *hex = tr_doc_str(rec, field);

	if (!hex || !tr_is_object_id(hex))
		return false;
	bson_oid_init_from_string(out, hex);
	return true;
}

bool
crm_report_rec_time(const bson_t *rec, const char *field, int64_t *ms)
{
	const char *s = tr_doc_str(rec, field);

	return s && tr_parse_time(s, ms);
}

bool
crm_report_status_is(const bson_t *rec, const char *status)
{
	const char *s = tr_doc_str(rec, "status");

	return s && strcmp(s, status) == 0;
}

/* A money field {"amount", "currency"}; false when absent or null. */
bool
crm_report_rec_money(const bson_t *rec, const char *field, int64_t *amount, char currency[4])
{
	bson_iter_t it, sub;
	int seen = 0;

	if (!bson_iter_init_find(&it, rec, field) || !BSON_ITER_HOLDS_DOCUMENT(&it) ||
	    !bson_iter_recurse(&it, &sub))
		return false;
	while (bson_iter_next(&sub)) {
		if (strcmp(bson_iter_key(&sub), "amount") == 0 &&
		    (BSON_ITER_HOLDS_INT64(&sub) || BSON_ITER_HOLDS_INT32(&sub))) {
			*amount = bson_iter_as_int64(&sub);
			seen |= 1;
		} else if (strcmp(bson_iter_key(&sub), "currency") == 0 &&
			   BSON_ITER_HOLDS_UTF8(&sub) && strlen(bson_iter_utf8(&sub, NULL)) == 3) {
			memcpy(currency, bson_iter_utf8(&sub, NULL), 4);
			seen |= 2;
		}
	}
	return seen == 3 && *amount >= 0;
}

bool
crm_report_own_ok(const struct tr_ctx *c, const bson_t *record)
{
	bson_oid_t owner;

	if (!c->req->principal.own_only)
		return true;
	return crm_report_rec_oid(record, "owner_id", &owner) &&
	       bson_oid_equal(&owner, &c->req->principal.user_id);
}

/* ---- walking a collection ---- */

/* Calls visit for every record of coll matching filter (the tenant's only),
 * REPORT_PAGE at a time in created_at then id order. Returns 0 or the
 * first error of the data layer or of visit. */
int
crm_report_walk(struct tr_ctx *c, const char *coll, const bson_t *filter, visit_fn visit, void *arg)
{
	struct tr_list_query q;
	char *next = NULL;
	int rc = TR_OK;

	memset(&q, 0, sizeof(q));
	q.sort_field = "created_at";
	q.direction = 1;
	q.limit = REPORT_PAGE;
	q.narrow = true; /* everything that matches, in one sorted read per page */
	for (;;) {
		bson_t items = BSON_INITIALIZER;
		bson_iter_t it;

		rc = tr_db_list(c->db, coll, filter, &q, &items, &next);
		if (rc == TR_OK && bson_iter_init(&it, &items))
			while (rc == TR_OK && bson_iter_next(&it)) {
				const uint8_t *data;
				uint32_t len;
				bson_t record;
				if (!BSON_ITER_HOLDS_DOCUMENT(&it))
					continue;
				bson_iter_document(&it, &len, &data);
				if (bson_init_static(&record, data, len))
					rc = visit(arg, &record);
			}
		bson_destroy(&items);
		if (rc != TR_OK || !next)
			break;
		if (!tr_list_query_next(&q, next)) {
			rc = TR_EINTERNAL;
			break;
		}
		free(next);
		next = NULL;
	}
	free(next);
	tr_list_query_free(&q);
	return rc;
}

/* The same for aggregates that do not depend on order (deals, leads): one
 * unsorted cursor, which FerretDB answers without sorting the collection
 * for every page. */
int
crm_report_walk_all(struct tr_ctx *c, const char *coll, const bson_t *filter, visit_fn visit,
		    void *arg)
{
	return tr_db_each(c->db, coll, filter, visit, arg);
}
