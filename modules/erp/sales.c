/* What the ERP sold, by product, for reports of other modules (sales.h,
 * tr_module.sales_by_product; the CRM's BCG matrix).
 *
 * A sale is a line of an invoiced sales order, dated by its invoice's
 * created_at (the day it was invoiced, whatever happens to the order
 * after: paid, shipped, completed), worth the line's net: quantity x
 * unit price less discount, before tax, in the order's currency. Orders
 * never invoiced (drafts, confirmed, cancelled) sold nothing; a void
 * invoice takes its order's lines back out. With q->owner, only orders
 * that user owns count.
 *
 * The invoices of the period are read through one unsorted cursor
 * (created_at in [from, to)), then each one's order by id: one point read
 * per invoice. FerretDB pushes no date range down, so the walk reads all
 * of the tenant's invoices (README, Known limits). */
#include <string.h>

#include "db.h"
#include "erp.h"
#include "sales.h"
#include "util.h"

struct sales_walk {
	struct tr_db *db;
	const struct tr_sales_query *q;
	tr_sales_line_fn line;
	void *arg;
};

/* A stored money field {amount, currency}: false when it is not one. */
static bool
stored_money(const bson_t *doc, const char *field, int64_t *amount, char currency[4])
{
	bson_iter_t it, m;
	int seen = 0;

	if (!bson_iter_init_find(&it, doc, field) || !BSON_ITER_HOLDS_DOCUMENT(&it) ||
	    !bson_iter_recurse(&it, &m))
		return false;
	while (bson_iter_next(&m)) {
		if (strcmp(bson_iter_key(&m), "amount") == 0 &&
		    (BSON_ITER_HOLDS_INT32(&m) || BSON_ITER_HOLDS_INT64(&m))) {
			*amount = bson_iter_as_int64(&m);
			seen |= 1;
		} else if (strcmp(bson_iter_key(&m), "currency") == 0 && BSON_ITER_HOLDS_UTF8(&m) &&
			   strlen(bson_iter_utf8(&m, NULL)) == 3) {
			memcpy(currency, bson_iter_utf8(&m, NULL), 4);
			seen |= 2;
		}
	}
	return seen == 3;
}

/* Every line of a stored order invoiced at `at`, when the order is one
 * the query counts. */
static int
order_lines(struct sales_walk *w, const bson_t *order, int64_t at)
{
	const char *currency = tr_doc_str(order, "currency");
	bson_iter_t it, lines;
	bson_oid_t owner;
	int rc = TR_OK;

	if (!currency || strcmp(currency, w->q->currency) != 0)
		return TR_OK;
	if (w->q->owner &&
	    (!tr_doc_oid(order, "owner_id", &owner) || !bson_oid_equal(&owner, w->q->owner)))
		return TR_OK;
	if (!bson_iter_init_find(&it, order, "lines") || !BSON_ITER_HOLDS_ARRAY(&it) ||
	    !bson_iter_recurse(&it, &lines))
		return TR_OK;
	while (rc == TR_OK && bson_iter_next(&lines)) {
		const uint8_t *data;
		uint32_t len;
		bson_t line;
		bson_oid_t product;
		int64_t net;
		char cur[4];
		if (!BSON_ITER_HOLDS_DOCUMENT(&lines))
			continue;
		bson_iter_document(&lines, &len, &data);
		if (!bson_init_static(&line, data, len) ||
		    !tr_doc_oid(&line, "product_id", &product) ||
		    !stored_money(&line, "net", &net, cur) || strcmp(cur, w->q->currency) != 0)
			continue;
		rc = w->line(w->arg, &product, at, net);
	}
	return rc;
}

/* One invoice (rendered) of the walk: its order's lines, when the invoice
 * stands and is dated inside the period. */
static int
invoice_visit(void *arg, const bson_t *invoice)
{
	struct sales_walk *w = arg;
	const char *status = tr_doc_str(invoice, "status"), *at = tr_doc_str(invoice, "created_at");
	const char *order_id = tr_doc_str(invoice, "order_id");
	bson_t order;
	int64_t ms;
	int rc;

	if (!status || strcmp(status, "void") == 0 || !at || !tr_parse_time(at, &ms) ||
	    ms < w->q->from || ms >= w->q->to || !order_id)
		return TR_OK;
	rc = tr_db_get(w->db, ERP_ORDERS, order_id, &order);
	if (rc == TR_OK)
		rc = order_lines(w, &order, ms);
	else if (rc == TR_ENOTFOUND)
		rc = TR_OK; /* orders are never deleted once invoiced */
	bson_destroy(&order);
	return rc;
}

int
erp_sales_by_product(struct tr_db *db, const struct tr_sales_query *q,
		     int (*line)(void *arg, const bson_oid_t *product, int64_t at, int64_t net),
		     void *arg)
{
	struct sales_walk w = {db, q, line, arg};
	bson_t filter = BSON_INITIALIZER, range;
	int rc;

	BSON_APPEND_DOCUMENT_BEGIN(&filter, "created_at", &range);
	BSON_APPEND_DATE_TIME(&range, "$gte", q->from);
	BSON_APPEND_DATE_TIME(&range, "$lt", q->to);
	bson_append_document_end(&filter, &range);
	rc = tr_db_each(db, ERP_INVOICES, &filter, invoice_visit, &w);
	bson_destroy(&filter);
	return rc;
}
