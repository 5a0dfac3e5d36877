/* Invoices and payments of sales orders (CONTRACT.md "ERP", Sales).
 *
 * Invoicing a confirmed order takes the next number of the tenant's year
 * from a register ("erp.invoice-numbers/<year>": a number per order, by
 * the order's id, so numbers have no gap and no duplicate however many
 * invoice at once), opens the order's receivable ("erp.receivable/<order>",
 * counter open = what is still owed), posts receivables against sales and
 * tax, and writes the invoice, whose id is derived from the order's.
 * Every step is idempotent: invoicing again after a failure finishes it,
 * under the number taken the first time (even in another year), and a
 * settle job scheduled before the number is taken finishes an invoice
 * whose writer died, so no number stays without its invoice.
 *
 * A payment takes its amount off open with a floor of zero, so no order is
 * ever paid beyond its total, in any process; its operation is named by
 * the request's Idempotency-Key (or a fresh id), so a retried request is
 * the same payment. The payment that brings open to zero marks the order
 * paid and publishes erp.order.paid, once. */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db.h"
#include "erp.h"
#include "events.h"
#include "json.h"
#include "log.h"
#include "register.h"

#define DUE_DAYS 30
#define DAY_MS (24LL * 3600 * 1000)

static const char *const invoice_statuses[] = {"open", "partially_paid", "paid", "void", NULL};
static const char *const invoice_sorts[] = {"-created_at", "created_at", "number", NULL};

static const struct tr_field invoice_fields[] = {
    {"order_id", TR_K_REF, TR_F_SERVER | TR_F_FILTER | TR_F_NARROW, 0, 0, NULL, ERP_ORDERS},
    {"number", TR_K_LINE, TR_F_SERVER | TR_F_FILTER | TR_F_NARROW, 0, 0, NULL, NULL},
    {"total", TR_K_MONEY, TR_F_SERVER, 0, 0, NULL, NULL},
    {"paid", TR_K_MONEY, TR_F_SERVER, 0, 0, NULL, NULL},
    {"due_at", TR_K_TIME, TR_F_SERVER, 0, 0, NULL, NULL},
    {"status", TR_K_ENUM, TR_F_SERVER | TR_F_FILTER, 0, 0, invoice_statuses, NULL},
    {NULL, 0, 0, 0, 0, NULL, NULL},
};

const struct tr_resource erp_invoices = {
    .name = "invoice",
    .coll = ERP_INVOICES,
    .path = "/v1/erp/invoices",
    .read = "erp.invoices.read",
    .write = "erp.invoices.write",
    .about = "The invoice of a sales order (POST /v1/erp/orders/{id}/invoice), numbered "
	     "INV-<year>-<n> without gaps per tenant and year.",
    .topic = "erp.invoices",
    .event = "erp.invoice",
    .fields = invoice_fields,
    .sorts = invoice_sorts,
    .no_create = true,
    .own_none = true, /* its order's owner is not its own */
    .immutable = true,
};

static const char *const methods[] = {"card", "bank", "cash", NULL};
static const char *const payment_sorts[] = {"-created_at", "created_at", NULL};

static const struct tr_field payment_fields[] = {
    {"order_id", TR_K_REF, TR_F_SERVER | TR_F_FILTER | TR_F_NARROW, 0, 0, NULL, ERP_ORDERS},
    {"amount", TR_K_MONEY, TR_F_REQUIRED, 1, 100000000000000LL, NULL, NULL},
    {"method", TR_K_ENUM, TR_F_REQUIRED | TR_F_FILTER, 0, 0, methods, NULL},
    {"reference", TR_K_LINE, 0, 1, 200, NULL, NULL},
    {"open_after", TR_K_MONEY, TR_F_SERVER, 0, 0, NULL, NULL},
    {NULL, 0, 0, 0, 0, NULL, NULL},
};

const struct tr_resource erp_payments = {
    .name = "payment",
    .coll = ERP_PAYMENTS,
    .path = "/v1/erp/payments",
    .read = "erp.payments.read",
    .write = "erp.payments.write",
    .about = "A payment of an order (POST /v1/erp/orders/{id}/payments).",
    .topic = "erp.payments",
    .event = "erp.payment",
    .fields = payment_fields,
    .sorts = payment_sorts,
    .no_create = true,
    .own_none = true, /* its order's owner is not its own */
    .immutable = true,
};

/* ---- helpers ---- */

/* Changes the order (status and more) on its current version, reading it
 * again when another writer changed it meanwhile, as long as its status is
 * one of from (TR_ELIMIT when it is not: cancelled meanwhile, say). */
static int
update_order(struct tr_db *db, const char *id, const char *const *from, const char *status,
	     const bson_t *more, bson_t *out)
{
	int rc = TR_EVERSION;

	for (int attempt = 0; attempt < 20 && rc == TR_EVERSION; attempt++) {
		bson_t order, set = BSON_INITIALIZER;
		if ((rc = tr_db_get(db, ERP_ORDERS, id, &order)) == TR_OK) {
			const char *now = tr_doc_str(&order, "status");
			bool allowed = false;
			for (const char *const *f = from; *f && now; f++)
				allowed |= strcmp(*f, now) == 0;
			if (!allowed) {
				bson_destroy(&order);
				bson_destroy(&set);
				return TR_ELIMIT;
			}
			BSON_APPEND_UTF8(&set, "status", status);
			if (more)
				bson_concat(&set, more);
			bson_destroy(out);
			rc = tr_db_update(db, ERP_ORDERS, id, tr_doc_int(&order, "version", 0),
					  &set, NULL, out);
		}
		bson_destroy(&order);
		bson_destroy(&set);
	}
	return rc;
}

/* ---- invoice ---- */

/* Is this the one time erp.order.paid goes out for the order? */
static bool
paid_once(struct tr_db *db, const char *order)
{
	char once[64];

	snprintf(once, sizeof(once), "erp.order.paid:%s", order);
	return tr_db_once(db, once) == TR_OK;
}

/* An order's invoicing, from its number on. */
struct invoicing {
	char order[25], inv[25], number[32], currency[4];
	int64_t net, tax, total;
};

/* The invoice number of the order: the one it took before (in whatever
 * year it took it), or the next of this year's. */
static int
take_number(struct tr_db *db, struct invoicing *iv)
{
	const char *prefix = "erp.invoice-numbers/";
	char op[96], key[64], today[11];
	bson_t mv;
	bool found = false, replayed;
	int rc;

	snprintf(op, sizeof(op), "erp.invoice:%s", iv->order);
	rc = tr_register_find_op(db, op, &mv, &found);
	if (rc == TR_OK && !found) {
		erp_today(today);
		snprintf(key, sizeof(key), "%s%.4s", prefix, today);
		struct tr_reg_delta next[] = {{"n", 1}};
		struct tr_reg_post post = {.key = key, .op_id = op, .deltas = next, .ndeltas = 1};
		bson_destroy(&mv);
		rc = tr_register_post(db, &post, &mv, &replayed);
	}
	const char *k = rc == TR_OK ? tr_doc_str(&mv, "key") : NULL;
	if (rc == TR_OK && (!k || strncmp(k, prefix, strlen(prefix)) != 0))
		rc = TR_EINTERNAL;
	if (rc == TR_OK)
		snprintf(iv->number, sizeof(iv->number), "INV-%.4s-%06lld", k + strlen(prefix),
			 (long long)erp_after(&mv, "n"));
	bson_destroy(&mv);
	return rc;
}

/* What follows the number, each step once: the receivable opens, the
 * entry is posted, the invoice is written (*created when by this call),
 * the order is invoiced (TR_ELIMIT: it was cancelled meanwhile). */
static int
invoice_rest(struct tr_db *db, const struct invoicing *iv, bson_t *stored, bson_t *updated,
	     bool *created)
{
	bson_t mv, doc = BSON_INITIALIZER, more = BSON_INITIALIZER;
	bson_oid_t oid, inv_oid;
	char op[96], rkey[64], memo[96];
	bool replayed;
	int rc;

	*created = false;
	snprintf(rkey, sizeof(rkey), "erp.receivable/%s", iv->order);
	snprintf(op, sizeof(op), "erp.open:%s", iv->order);
	struct tr_reg_delta open[] = {{"open", iv->total}};
	struct tr_reg_post open_post = {.key = rkey, .op_id = op, .deltas = open, .ndeltas = 1};
	rc = tr_register_post(db, &open_post, &mv, &replayed);
	bson_destroy(&mv);
	if (rc != TR_OK)
		goto out;
	erp_step_pause();
	/* receivables against sales and tax */
	struct erp_line lines[3] = {
	    {"1200", iv->total, 0}, {"4000", 0, iv->net}, {"2100", 0, iv->tax}};
	snprintf(memo, sizeof(memo), "invoice %s, order %s", iv->number, iv->order);
	if ((rc = erp_post_lines(db, iv->inv, memo, iv->currency, "invoice", lines, 3)) != TR_OK)
		goto out;
	erp_step_pause();
	bson_oid_init_from_string(&oid, iv->order);
	bson_oid_init_from_string(&inv_oid, iv->inv);
	BSON_APPEND_OID(&doc, "_id", &inv_oid);
	BSON_APPEND_OID(&doc, "order_id", &oid);
	BSON_APPEND_UTF8(&doc, "number", iv->number);
	erp_append_money(&doc, "total", iv->total, iv->currency);
	erp_append_money(&doc, "paid", 0, iv->currency);
	BSON_APPEND_DATE_TIME(&doc, "due_at", tr_now_ms() + DUE_DAYS * DAY_MS);
	BSON_APPEND_UTF8(&doc, "status", iv->total > 0 ? "open" : "paid");
	bson_destroy(stored);
	rc = tr_db_insert(db, ERP_INVOICES, &doc, stored);
	*created = rc == TR_OK;
	if (rc == TR_EDUPLICATE) { /* written by an earlier attempt */
		bson_destroy(stored);
		rc = tr_db_get(db, ERP_INVOICES, iv->inv, stored);
	}
	if (rc != TR_OK)
		goto out;
	BSON_APPEND_OID(&more, "invoice_id", &inv_oid);
	/* an order worth nothing is paid by its invoice (completed when it
	 * has all shipped): no payment could ever close it */
	const char *status = "invoiced";
	if (iv->total == 0) {
		bson_t now = BSON_INITIALIZER;
		bool shipped = tr_db_get(db, ERP_ORDERS, iv->order, &now) == TR_OK &&
			       erp_order_fully_shipped(&now);
		bson_destroy(&now);
		status = shipped ? "completed" : "paid";
	}
	static const char *const invoiceable[] = {"confirmed", "shipped", "invoiced", NULL};
	static const char *const free_of_charge[] = {"confirmed", "shipped",   "invoiced",
						     "paid",	  "completed", NULL};
	rc = update_order(db, iv->order, iv->total == 0 ? free_of_charge : invoiceable, status,
			  &more, updated);
out:
	bson_destroy(&doc);
	bson_destroy(&more);
	return rc;
}

static void
invoicing_of(const bson_t *order, struct invoicing *iv)
{
	bson_oid_t oid;
	char seed[48];

	memset(iv, 0, sizeof(*iv));
	tr_doc_oid(order, "_id", &oid);
	bson_oid_to_string(&oid, iv->order);
	snprintf(iv->currency, sizeof(iv->currency), "%s",
		 tr_doc_str(order, "currency") ? tr_doc_str(order, "currency") : "");
	iv->net = erp_money_amount(order, "net");
	iv->tax = erp_money_amount(order, "tax");
	iv->total = erp_money_amount(order, "total");
	snprintf(seed, sizeof(seed), "invoice:%s", iv->order);
	erp_derived_id(seed, iv->inv);
}

void
erp_order_invoice(struct tr_ctx *c)
{
	bson_t order = BSON_INITIALIZER, stored = BSON_INITIALIZER, updated = BSON_INITIALIZER;
	struct invoicing iv;
	char payload[128];
	bool created;
	int rc;

	bson_destroy(&order);
	if (!tr_res_load(c, &erp_orders, tr_param(c, 0), &order))
		goto out;
	if (!tr_res_move_ok(c, &erp_orders, tr_doc_str(&order, "status"), "invoiced", "invoice",
			    NULL, &order))
		goto out;
	invoicing_of(&order, &iv);
	/* a writer that dies from here on leaves the invoice to the job:
	 * no number is taken without its invoice */
	snprintf(payload, sizeof(payload), "{\"order\":\"%s\",\"invoice\":\"%s\"}", iv.order,
		 iv.inv);
	if ((rc = erp_schedule_settle(c->req->principal.tenant_hex, payload)) != TR_OK) {
		tr_problem_from_err(c, rc);
		goto out;
	}
	if ((rc = take_number(c->db, &iv)) != TR_OK) {
		tr_problem_from_err(c, rc);
		goto out;
	}
	erp_step_pause();
	rc = invoice_rest(c->db, &iv, &stored, &updated, &created);
	if (rc == TR_ELIMIT) {
		tr_problem(c, 409, "conflict", "the order was cancelled meanwhile");
		goto out;
	}
	if (rc != TR_OK) {
		erp_unfinished(c, rc);
		goto out;
	}
	char *loc = tr_arena_alloc(c->req->arena, 64);
	snprintf(loc, 64, "/v1/erp/invoices/%s", iv.inv);
	c->resp->location = loc;
	tr_res_emit(c, &erp_invoices, "erp.invoice.created", &stored);
	if (iv.total == 0 && paid_once(c->db, iv.order))
		tr_res_emit(c, &erp_orders, "erp.order.paid", &updated);
	tr_reply_resource(c, 201, &stored);
out:
	bson_destroy(&order);
	bson_destroy(&stored);
	bson_destroy(&updated);
}

/* The settle job of an invoice (erp.h): a number taken without its
 * invoice gets it. */
int
erp_invoice_settle(struct tr_db *db, const char *tenant, const bson_t *payload, char *err,
		   size_t errlen)
{
	bson_t order = BSON_INITIALIZER, stored = BSON_INITIALIZER, updated = BSON_INITIALIZER,
	       mv = BSON_INITIALIZER;
	const char *id = tr_doc_str(payload, "order");
	struct invoicing iv;
	char op[96];
	bool found = false, created = false;
	int rc = TR_OK;

	if (!id || !tr_is_object_id(id))
		goto out; /* not an invoice's: nothing to do */
	bson_destroy(&order);
	if ((rc = tr_db_get(db, ERP_ORDERS, id, &order)) != TR_OK)
		goto out;
	if (bson_has_field(&order, "invoice_id"))
		goto out; /* invoiced */
	snprintf(op, sizeof(op), "erp.invoice:%s", id);
	bson_destroy(&mv);
	if ((rc = tr_register_find_op(db, op, &mv, &found)) != TR_OK || !found)
		goto out; /* no number taken: nothing happened */
	invoicing_of(&order, &iv);
	tr_warn("erp: the invoice of order %s was left halfway: finishing it", id);
	if ((rc = take_number(db, &iv)) == TR_OK)
		rc = invoice_rest(db, &iv, &stored, &updated, &created);
	if (rc == TR_ELIMIT)
		rc = TR_OK; /* cancelled meanwhile: the invoice stays, as a request's would */
	if (rc == TR_OK && created) {
		bson_t data = BSON_INITIALIZER;
		tr_render_resource(&stored, &data);
		tr_emit_background(tenant, erp_invoices.topic, "erp.invoice.created", iv.inv, NULL,
				   &data);
		bson_destroy(&data);
	}
	if (rc == TR_OK && iv.total == 0 && bson_has_field(&updated, "_id") &&
	    paid_once(db, iv.order)) {
		bson_t data = BSON_INITIALIZER;
		bson_oid_t owner;
		char owner_hex[25] = "";
		if (tr_doc_oid(&updated, erp_orders.owner_field, &owner))
			bson_oid_to_string(&owner, owner_hex);
		tr_render_resource(&updated, &data);
		tr_emit_background(tenant, erp_orders.topic, "erp.order.paid", iv.order,
				   owner_hex[0] ? owner_hex : NULL, &data);
		bson_destroy(&data);
	}
out:
	if (rc == TR_ENOTFOUND)
		rc = TR_OK;
	if (rc != TR_OK)
		snprintf(err, errlen, "settling the invoice of order %s: %s", id ? id : "?",
			 tr_strerror(rc));
	bson_destroy(&order);
	bson_destroy(&stored);
	bson_destroy(&updated);
	bson_destroy(&mv);
	return rc;
}

/* ---- payments ---- */

static const struct tr_field payment_body[] = {
    {"amount", TR_K_MONEY, TR_F_REQUIRED, 1, 100000000000000LL, NULL, NULL},
    {"method", TR_K_ENUM, TR_F_REQUIRED, 0, 0, methods, NULL},
    {"reference", TR_K_LINE, 0, 1, 200, NULL, NULL},
    {NULL, 0, 0, 0, 0, NULL, NULL},
};

/* The invoice's paid amount and status follow what is still open (only
 * ever upwards: a payment read late never lowers what a later one wrote). */
static void
follow_invoice(struct tr_db *db, const char *inv, int64_t total, int64_t open, const char *cur)
{
	for (int attempt = 0; attempt < 20; attempt++) {
		bson_t invoice, set = BSON_INITIALIZER, out = BSON_INITIALIZER;
		int rc = tr_db_get(db, ERP_INVOICES, inv, &invoice);
		int64_t paid = total - open;
		if (rc != TR_OK || erp_money_amount(&invoice, "paid") >= paid) {
			bson_destroy(&invoice);
			bson_destroy(&set);
			bson_destroy(&out);
			return;
		}
		erp_append_money(&set, "paid", paid, cur);
		BSON_APPEND_UTF8(&set, "status", open == 0 ? "paid" : "partially_paid");
		bson_destroy(&out);
		rc = tr_db_update(db, ERP_INVOICES, inv, tr_doc_int(&invoice, "version", 0), &set,
				  NULL, &out);
		bson_destroy(&invoice);
		bson_destroy(&set);
		bson_destroy(&out);
		if (rc != TR_EVERSION)
			return;
	}
}

void
erp_order_pay(struct tr_ctx *c)
{
	bson_t order = BSON_INITIALIZER, set = BSON_INITIALIZER, mv = BSON_INITIALIZER,
	       stored = BSON_INITIALIZER, paid_order = BSON_INITIALIZER;
	char id[25], pid[25], op[96], rkey[64], inv[25] = "", memo[96];
	bool replayed;
	bson_oid_t oid, poid, inv_oid;
	int rc;

	if (!tr_res_read_body(c, payment_body, &set))
		goto out;
	bson_destroy(&order);
	if (!tr_res_load(c, &erp_orders, tr_param(c, 0), &order))
		goto out;
	tr_doc_oid(&order, "_id", &oid);
	bson_oid_to_string(&oid, id);
	/* one payment per Idempotency-Key (and caller): a retried request is the
	 * same payment, and finishes it whatever the order became since */
	erp_request_id(c, "payment", id, pid);
	bson_oid_init_from_string(&poid, pid);
	snprintf(op, sizeof(op), "erp.payment:%s", pid);
	bson_t prior;
	bool begun = false;
	if (tr_register_find_op(c->db, op, &prior, &begun) != TR_OK)
		begun = false;
	bson_destroy(&prior);
	const char *status = tr_doc_str(&order, "status");
	if (!begun && (!status || strcmp(status, "invoiced") != 0)) {
		tr_problem(c, 409, "conflict",
			   status && strcmp(status, "paid") == 0
			       ? "the order is paid already"
			       : "only an invoiced order takes payments");
		goto out;
	}
	const char *currency = tr_arena_strdup(c->req->arena, tr_doc_str(&order, "currency"));
	bson_iter_t it, sub;
	if (!bson_iter_init(&it, &set) ||
	    !bson_iter_find_descendant(&it, "amount.currency", &sub) ||
	    strcmp(bson_iter_utf8(&sub, NULL), currency) != 0) {
		tr_problem_field(c, "amount", "must be in the order's currency");
		goto out;
	}
	int64_t amount = erp_money_amount(&set, "amount"),
		total = erp_money_amount(&order, "total");
	const char *method = tr_arena_strdup(c->req->arena, tr_doc_str(&set, "method"));
	if (tr_doc_oid(&order, "invoice_id", &inv_oid))
		bson_oid_to_string(&inv_oid, inv);

	snprintf(rkey, sizeof(rkey), "erp.receivable/%s", id);
	snprintf(op, sizeof(op), "erp.payment:%s", pid);
	struct tr_reg_delta d[] = {{"open", -amount}};
	struct tr_reg_post post = {
	    .key = rkey, .op_id = op, .deltas = d, .ndeltas = 1, .has_floor = true, .floor = 0};
	bson_destroy(&mv);
	rc = tr_register_post(c->db, &post, &mv, &replayed);
	if (rc == TR_ELIMIT) {
		bson_iter_t vit, vsub;
		int64_t open = 0;
		if (bson_iter_init(&vit, &mv) &&
		    bson_iter_find_descendant(&vit, "values.open", &vsub))
			open = bson_iter_as_int64(&vsub);
		char *m = tr_arena_alloc(c->req->arena, 96);
		snprintf(m, 96, "%lld is open on the order: no more can be paid", (long long)open);
		tr_problem(c, 409, "overpayment", m);
		tr_problem_member(c, "open", open);
		goto out;
	}
	if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
		goto out;
	}
	int64_t open_after = erp_after(&mv, "open");

	/* bank or cash against receivables */
	struct erp_line lines[2] = {{"", amount, 0}, {"1200", 0, amount}};
	snprintf(lines[0].account, sizeof(lines[0].account), "%s",
		 strcmp(method, "cash") == 0 ? "1000" : "1100");
	snprintf(memo, sizeof(memo), "payment of order %s", id);
	erp_health_touch(c->req->principal.tenant_hex);
	if ((rc = erp_post_lines(c->db, pid, memo, currency, "payment", lines, 2)) != TR_OK) {
		erp_unfinished(c, rc);
		goto out;
	}
	BSON_APPEND_OID(&set, "_id", &poid);
	BSON_APPEND_OID(&set, "order_id", &oid);
	erp_append_money(&set, "open_after", open_after, currency);
	rc = tr_db_insert(c->db, ERP_PAYMENTS, &set, &stored);
	if (rc == TR_EDUPLICATE) {
		bson_destroy(&stored);
		rc = tr_db_get(c->db, ERP_PAYMENTS, pid, &stored);
	}
	if (rc != TR_OK) {
		erp_unfinished(c, rc);
		goto out;
	}
	if (*inv)
		follow_invoice(c->db, inv, total, open_after, currency);
	if (open_after == 0) {
		/* the one payment that closed it: the order is paid, once */
		bson_t now = BSON_INITIALIZER;
		bool shipped = tr_db_get(c->db, ERP_ORDERS, id, &now) == TR_OK &&
			       erp_order_fully_shipped(&now);
		bson_destroy(&now);
		static const char *const payable[] = {"invoiced", "paid", "completed", NULL};
		rc = update_order(c->db, id, payable, shipped ? "completed" : "paid", NULL,
				  &paid_order);
		if (rc == TR_OK && paid_once(c->db, id))
			tr_res_emit(c, &erp_orders, "erp.order.paid", &paid_order);
		else if (rc != TR_OK)
			tr_warn("erp: order %s fully paid but not marked: %s", id, tr_strerror(rc));
	}
	char *loc = tr_arena_alloc(c->req->arena, 64);
	snprintf(loc, 64, "/v1/erp/payments/%s", pid);
	c->resp->location = loc;
	if (!replayed)
		tr_res_emit(c, &erp_payments, "erp.payment.created", &stored);
	tr_reply_resource(c, 201, &stored);
out:
	bson_destroy(&order);
	bson_destroy(&set);
	bson_destroy(&mv);
	bson_destroy(&stored);
	bson_destroy(&paid_order);
}
