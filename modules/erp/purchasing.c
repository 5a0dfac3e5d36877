/* Purchasing (CONTRACT.md "ERP"): suppliers, purchase orders, and receipts
 * of purchase orders in part or whole.
 *
 * A receipt claims its quantities on the purchase order first (parts.c:
 * two receipts never take the same remainder, in any process), then each
 * line enters the stock as a receipt move at the order's unit cost, which
 * posts inventory against payables; the move's id comes from the receipt's
 * id and the line, and the receipt's from the request's Idempotency-Key,
 * so a retried request finishes the first and never receives twice. */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "erp.h"
#include "json.h"

static const char *const supplier_sorts[] = {"name", "-created_at", "created_at", NULL};

static const struct tr_field supplier_fields[] = {
    {"name", TR_K_LINE, TR_F_REQUIRED, 1, 200, NULL, NULL},
    {"email", TR_K_EMAIL, TR_F_FILTER | TR_F_NARROW | TR_F_NULLABLE, 3, 254, NULL, NULL},
    {"phone", TR_K_PHONE, TR_F_NULLABLE, 3, 40, NULL, NULL},
    {"active", TR_K_BOOL, TR_F_FILTER, 0, 0, NULL, NULL},
    {NULL, 0, 0, 0, 0, NULL, NULL},
};

static bool
supplier_hook(struct tr_ctx *c, const struct tr_resource *e, bson_t *set, const bson_t *old)
{
	(void)c;
	(void)e;
	if (!old && !bson_has_field(set, "active"))
		BSON_APPEND_BOOL(set, "active", true);
	return true;
}

const struct tr_resource erp_suppliers = {
    .name = "supplier",
    .coll = ERP_SUPPLIERS,
    .path = "/v1/erp/suppliers",
    .read = "erp.purchasing.read",
    .write = "erp.purchasing.write",
    .about = "Someone the tenant buys from. DELETE deactivates.",
    .topic = "erp.purchasing",
    .event = "erp.supplier",
    .fields = supplier_fields,
    .sorts = supplier_sorts,
    .hook = supplier_hook,
    .retire = "active",
};

/* draft and cancelled: purchase orders planning drafted (drafts.c) */
static const char *const po_statuses[] = {"draft",    "open",	   "partially_received",
					  "received", "cancelled", NULL};
static const char *const po_sorts[] = {"-created_at", "created_at", NULL};

static const struct tr_field po_fields[] = {
    {"supplier_id", TR_K_REF, TR_F_REQUIRED | TR_F_FILTER, 0, 0, NULL, ERP_SUPPLIERS},
    {"warehouse_id", TR_K_REF, TR_F_REQUIRED | TR_F_FILTER, 0, 0, NULL, ERP_WAREHOUSES},
    {"currency", TR_K_LINE, TR_F_REQUIRED | TR_F_FIXED, 3, 3, NULL, NULL},
    {"lines", TR_K_ARRAY, TR_F_REQUIRED, 0, 0, NULL, NULL},
    {"status", TR_K_ENUM, TR_F_SERVER | TR_F_FILTER, 0, 0, po_statuses, NULL},
    {"total", TR_K_MONEY, TR_F_SERVER, 0, 0, NULL, NULL},
    {NULL, 0, 0, 0, 0, NULL, NULL},
};

/* [{product_id, quantity, unit_cost}] priced into set: lines with
 * "received": 0, and the total. */
static bool
po_lines(struct tr_ctx *c, const char *currency, bson_t *set)
{
	bson_iter_t it, arr, line, m;
	bson_t lines, out;
	bson_oid_t *seen = tr_arena_alloc(c->req->arena, ERP_MAX_DOC_LINES * sizeof(*seen));
	int n = 0;
	int64_t total = 0;
	bool ok = true;

	if (!seen || !bson_iter_init_find(&it, &c->req->body, "lines") ||
	    !BSON_ITER_HOLDS_ARRAY(&it) || !bson_iter_recurse(&it, &arr)) {
		tr_problem_field(c, "lines", "must be an array of 1 to 100 lines");
		return false;
	}
	BSON_APPEND_ARRAY_BEGIN(set, "lines", &lines);
	while (bson_iter_next(&arr)) {
		char f[32], key[16];
		const char *k, *pid = NULL, *cur = NULL;
		int64_t q = 0, cost = -1, value;
		bool good = n < ERP_MAX_DOC_LINES && BSON_ITER_HOLDS_DOCUMENT(&arr) &&
			    bson_iter_recurse(&arr, &line);
		while (good && bson_iter_next(&line)) {
			const char *name = bson_iter_key(&line);
			if (strcmp(name, "product_id") == 0 && BSON_ITER_HOLDS_UTF8(&line))
				pid = bson_iter_utf8(&line, NULL);
			else if (strcmp(name, "quantity") == 0 &&
				 (BSON_ITER_HOLDS_INT32(&line) || BSON_ITER_HOLDS_INT64(&line)))
				q = bson_iter_as_int64(&line);
			else if (strcmp(name, "unit_cost") == 0 &&
				 BSON_ITER_HOLDS_DOCUMENT(&line) && bson_iter_recurse(&line, &m))
				while (bson_iter_next(&m)) {
					if (strcmp(bson_iter_key(&m), "amount") == 0 &&
					    (BSON_ITER_HOLDS_INT32(&m) ||
					     BSON_ITER_HOLDS_INT64(&m)))
						cost = bson_iter_as_int64(&m);
					else if (strcmp(bson_iter_key(&m), "currency") == 0 &&
						 BSON_ITER_HOLDS_UTF8(&m))
						cur = bson_iter_utf8(&m, NULL);
					else
						good = false;
				}
			else
				good = false;
		}
		snprintf(f, sizeof(f), "lines[%d]", n);
		bson_t product;
		int rc = TR_ENOTFOUND;
		if (good && pid && tr_is_object_id(pid))
			rc = tr_db_get(c->db, ERP_PRODUCTS, pid, &product);
		else
			bson_init(&product);
		int64_t scale = tr_doc_int(&product, "uom_scale", 0);
		/* a product's stock is valued in its price's currency: the order's */
		bson_iter_t pit, psub;
		if (rc == TR_OK && (!bson_iter_init(&pit, &product) ||
				    !bson_iter_find_descendant(&pit, "price.currency", &psub) ||
				    !BSON_ITER_HOLDS_UTF8(&psub) ||
				    strcmp(bson_iter_utf8(&psub, NULL), currency) != 0))
			good = false;
		bson_oid_t this_one;
		if (rc == TR_OK) {
			bson_oid_init_from_string(&this_one, pid);
			for (int j = 0; j < n && good; j++)
				good = !bson_oid_equal(&seen[j], &this_one);
			if (n < ERP_MAX_DOC_LINES)
				seen[n] = this_one;
		}
		bson_destroy(&product);
		if (!good || !pid || q <= 0 || q > 1000000000000LL || cost < 0 ||
		    cost > 1000000000000LL || !cur || strcmp(cur, currency) != 0 || rc != TR_OK ||
		    !erp_muldiv_half_even(q, cost, erp_scale_factor(scale), &value) ||
		    __builtin_add_overflow(total, value, &total)) {
			tr_problem_field(
			    c, tr_arena_strdup(c->req->arena, f),
			    rc == TR_OK || !good || !pid
				? "must be {\"product_id\" (once, a product priced in the "
				  "order's currency), \"quantity\" (above 0), \"unit_cost\" "
				  "(in the order's currency)}"
				: "names a product that does not exist");
			ok = false;
			n++;
			continue;
		}
		bson_uint32_to_string((uint32_t)n++, &k, key, sizeof(key));
		bson_oid_t oid;
		bson_oid_init_from_string(&oid, pid);
		BSON_APPEND_DOCUMENT_BEGIN(&lines, k, &out);
		BSON_APPEND_OID(&out, "product_id", &oid);
		BSON_APPEND_INT64(&out, "quantity", q);
		erp_append_money(&out, "unit_cost", cost, currency);
		BSON_APPEND_INT64(&out, "received", 0);
		bson_append_document_end(&lines, &out);
	}
	bson_append_array_end(set, &lines);
	if (ok && n == 0) {
		tr_problem_field(c, "lines", "must be an array of 1 to 100 lines");
		ok = false;
	}
	if (ok)
		erp_append_money(set, "total", total, currency);
	return ok;
}

static bool
po_hook(struct tr_ctx *c, const struct tr_resource *e, bson_t *set, const bson_t *old)
{
	const char *currency = old ? tr_doc_str(old, "currency") : tr_doc_str(set, "currency");

	(void)e;
	bson_iter_t pend, parr;
	bool pending = old && bson_iter_init_find(&pend, old, "_pending_receipts") &&
		       bson_iter_recurse(&pend, &parr) && bson_iter_next(&parr);
	const char *was = old && tr_doc_str(old, "status") ? tr_doc_str(old, "status") : "";
	if (old && (pending || (strcmp(was, "open") != 0 && strcmp(was, "draft") != 0))) {
		tr_problem(c, 409, "conflict",
			   "a purchase order with receipts, or cancelled, does not change");
		return false;
	}
	if (!erp_currency_ok(currency)) {
		tr_problem_field(c, "currency", "must be an ISO 4217 code like EUR");
		return false;
	}
	currency = tr_arena_strdup(c->req->arena, currency);
	if (!old)
		BSON_APPEND_UTF8(set, "status", "open");
	if (!old || (c->req->has_body && bson_has_field(&c->req->body, "lines")))
		return po_lines(c, currency, set);
	return true;
}

const struct tr_resource erp_purchase_orders = {
    .name = "purchase order",
    .coll = ERP_PURCHASE_ORDERS,
    .path = "/v1/erp/purchase-orders",
    .read = "erp.purchasing.read",
    .write = "erp.purchasing.write",
    .about = "What the tenant ordered from a supplier, received in part or whole by POST "
	     ".../{id}/receive (more than ordered: 409).",
    .topic = "erp.purchasing",
    .event = "erp.purchase_order",
    .fields = po_fields,
    .sorts = po_sorts,
    .hook = po_hook,
};

/* A purchase order's status once a receipt is done. */
static const char *
po_status_after(const bson_t *po)
{
	bson_oid_t products[ERP_MAX_DOC_LINES];
	int64_t qty[ERP_MAX_DOC_LINES], done[ERP_MAX_DOC_LINES];
	int n = erp_lines_of(po, "received", products, qty, done);
	bool all = true, any = false;

	for (int i = 0; i < n; i++) {
		all &= done[i] >= qty[i];
		any |= done[i] > 0;
	}
	return all ? "received" : any ? "partially_received" : NULL;
}

void
erp_po_receive(struct tr_ctx *c)
{
	bson_t po = BSON_INITIALIZER, settled = BSON_INITIALIZER, body = BSON_INITIALIZER, moves;
	bson_oid_t products[ERP_MAX_DOC_LINES], oid, wid;
	int64_t qty[ERP_MAX_DOC_LINES], received[ERP_MAX_DOC_LINES];
	struct erp_claim *cl = tr_arena_alloc(c->req->arena, ERP_MAX_DOC_LINES * sizeof(*cl));
	char id[25], rid[25], ref[64];
	int m, rc;

	bson_destroy(&po);
	if (!cl) {
		tr_problem_from_err(c, TR_ENOMEM);
		goto out;
	}
	if (!tr_res_load(c, &erp_purchase_orders, tr_param(c, 0), &po))
		goto out;
	if (strcmp(tr_doc_str(&po, "status") ? tr_doc_str(&po, "status") : "", "received") == 0) {
		tr_problem(c, 409, "conflict", "the purchase order is received in full");
		goto out;
	}
	int n = erp_lines_of(&po, "received", products, qty, received);
	if ((m = erp_read_claim(c, products, n, cl)) < 0)
		goto out;
	tr_doc_oid(&po, "_id", &oid);
	bson_oid_to_string(&oid, id);
	tr_doc_oid(&po, "warehouse_id", &wid);
	const char *currency = tr_arena_strdup(c->req->arena, tr_doc_str(&po, "currency"));
	erp_request_id(c, "receipt", id, rid);
	static const char *const receivable[] = {"open", "partially_received", NULL};
	if ((rc = erp_claim_lines(c, ERP_PURCHASE_ORDERS, id, "received", "_pending_receipts", rid,
				  cl, m, receivable, &po)) != TR_OK) {
		if (rc != TR_ELIMIT)
			tr_problem_from_err(c, rc);
		goto out;
	}
	snprintf(ref, sizeof(ref), "purchase order %s", id);
	BSON_APPEND_UTF8(&body, "id", rid);
	BSON_APPEND_ARRAY_BEGIN(&body, "moves", &moves);
	for (int j = 0; j < m; j++) {
		/* the line's unit cost, from the purchase order */
		bson_iter_t it, arr, line, sub;
		int64_t cost = 0;
		int i = 0;
		if (bson_iter_init_find(&it, &po, "lines") && bson_iter_recurse(&it, &arr))
			while (bson_iter_next(&arr))
				if (i++ == cl[j].index && bson_iter_recurse(&arr, &line) &&
				    bson_iter_find_descendant(&line, "unit_cost.amount", &sub))
					cost = bson_iter_as_int64(&sub);
		struct erp_receipt r = {.product = cl[j].product,
					.warehouse = wid,
					.quantity = cl[j].quantity,
					.unit_cost = cost,
					.currency = currency,
					.reference = ref};
		char mseed[64];
		snprintf(mseed, sizeof(mseed), "%s:%d", rid, cl[j].index);
		char mhex[25];
		erp_derived_id(mseed, mhex);
		bson_oid_init_from_string(&r.id, mhex);
		bson_t stored, render = BSON_INITIALIZER;
		rc = erp_stock_receive(c, &r, &stored);
		if (rc != TR_OK) { /* asking again with the same key finishes it */
			if (!c->resp->status)
				erp_unfinished(c, rc);
			bson_destroy(&stored);
			bson_destroy(&render);
			goto out;
		}
		char key[16];
		const char *k;
		bson_uint32_to_string((uint32_t)j, &k, key, sizeof(key));
		tr_render_resource(&stored, &render);
		BSON_APPEND_DOCUMENT(&moves, k, &render);
		bson_destroy(&render);
		bson_destroy(&stored);
	}
	bson_append_array_end(&body, &moves);
	rc = erp_unpend(c->db, ERP_PURCHASE_ORDERS, id, "_pending_receipts", rid, po_status_after,
			&settled);
	if (rc != TR_OK) {
		erp_unfinished(c, rc);
		goto out;
	}
	bson_t rendered = BSON_INITIALIZER;
	tr_render_resource(&settled, &rendered);
	BSON_APPEND_DOCUMENT(&body, "purchase_order", &rendered);
	bson_destroy(&rendered);
	tr_res_emit(c, &erp_purchase_orders, "erp.purchase_order.received", &settled);
	tr_reply_json(c, 201, &body);
out:
	bson_destroy(&po);
	bson_destroy(&settled);
	bson_destroy(&body);
}
