/* Sales orders (CONTRACT.md "ERP", Sales): lines whose net, tax and total
 * are exact integers, confirmed by reserving every line or none, cancelled
 * by releasing what was reserved.
 *
 * A line's net is quantity x unit price x (1 - discount), in minor units,
 * rounded half to even once per line; its tax is net x the product's tax
 * rate, rounded the same way; the order's sums are the lines' sums.
 *
 * Confirming holds every line or none (reserve.c): the order is
 * "confirming" while its lines are reserved, "confirmed" when all were,
 * a draft again when one did not fit - or when its writer died, by the
 * settle job. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "erp.h"
#include "events.h"
#include "json.h"
#include "log.h"
#include "register.h"

#define MAX_ORDER_LINES ERP_MAX_DOC_LINES
#define QTY_MAX 1000000000000LL
#define PRICE_MAX 1000000000000LL

static const char *const statuses[] = {"draft",	  "confirming", "confirmed", "invoiced", "paid",
				       "shipped", "completed",	"cancelled", NULL};
static const char *const order_sorts[] = {"-created_at", "created_at", NULL};

static const struct tr_transition order_moves[] = {
    {NULL, "draft", NULL, NULL},
    {"draft", "confirming", "confirm", NULL},
    {"confirming", "confirmed", "confirm", NULL},
    {"confirming", "draft", "confirm", NULL},
    {"draft", "cancelled", "cancel", NULL},
    {"confirmed", "cancelled", "cancel", NULL},
    {"confirmed", "invoiced", "invoice", NULL},
    {"shipped", "invoiced", "invoice", NULL},
    {"invoiced", "paid", "pay", NULL},
    {NULL, NULL, NULL, NULL},
};

static const struct tr_states order_states = {"status", order_moves};

static const struct tr_field order_fields[] = {
    {"client_id", TR_K_REF, TR_F_FILTER | TR_F_NULLABLE, 0, 0, NULL, "clients"},
    {"counterparty_id", TR_K_REF, TR_F_NULLABLE, 0, 0, NULL, "counterparties"},
    {"deal_id", TR_K_REF, TR_F_FILTER | TR_F_NARROW | TR_F_FIXED, 0, 0, NULL, "deals"},
    {"warehouse_id", TR_K_REF, TR_F_REQUIRED | TR_F_FILTER, 0, 0, NULL, ERP_WAREHOUSES},
    {"currency", TR_K_LINE, TR_F_REQUIRED | TR_F_FIXED, 3, 3, NULL, NULL},
    {"lines", TR_K_ARRAY, TR_F_REQUIRED, 0, 0, NULL, NULL},
    {"owner_id", TR_K_REF, TR_F_FILTER, 0, 0, NULL, "users"},
    {"status", TR_K_ENUM, TR_F_SERVER | TR_F_FILTER, 0, 0, statuses, NULL},
    {"net", TR_K_MONEY, TR_F_SERVER, 0, 0, NULL, NULL},
    {"tax", TR_K_MONEY, TR_F_SERVER, 0, 0, NULL, NULL},
    {"total", TR_K_MONEY, TR_F_SERVER, 0, 0, NULL, NULL},
    {"invoice_id", TR_K_REF, TR_F_SERVER, 0, 0, NULL, ERP_INVOICES},
    {NULL, 0, 0, 0, 0, NULL, NULL},
};

/* ---- lines ---- */

/* Reads one line of the body into *l (the product looked up in the
 * tenant), adding field errors as lines[i].<field>. */
static bool
read_line(struct tr_ctx *c, bson_iter_t *it, int i, const char *currency, struct erp_order_line *l)
{
	bson_iter_t sub, m;
	char f[48];
	bool ok = true;
	int seen = 0;

	memset(l, 0, sizeof(*l));
#define LINE_ERR(field, msg)                                                                       \
	do {                                                                                       \
		snprintf(f, sizeof(f), "lines[%d].%s", i, field);                                  \
		tr_problem_field(c, tr_arena_strdup(c->req->arena, f), msg);                       \
		ok = false;                                                                        \
	} while (0)
	if (!BSON_ITER_HOLDS_DOCUMENT(it) || !bson_iter_recurse(it, &sub)) {
		snprintf(f, sizeof(f), "lines[%d]", i);
		tr_problem_field(c, tr_arena_strdup(c->req->arena, f),
				 "must be {\"product_id\", \"quantity\", \"unit_price\", "
				 "\"discount_bp\"}");
		return false;
	}
	while (bson_iter_next(&sub)) {
		const char *k = bson_iter_key(&sub);
		if (strcmp(k, "product_id") == 0) {
			const char *v =
			    BSON_ITER_HOLDS_UTF8(&sub) ? bson_iter_utf8(&sub, NULL) : "";
			if (!tr_is_object_id(v)) {
				LINE_ERR("product_id", "must be an id");
				continue;
			}
			bson_oid_init_from_string(&l->product, v);
			seen |= 1;
		} else if (strcmp(k, "quantity") == 0) {
			if (!(BSON_ITER_HOLDS_INT32(&sub) || BSON_ITER_HOLDS_INT64(&sub)) ||
			    bson_iter_as_int64(&sub) <= 0 || bson_iter_as_int64(&sub) > QTY_MAX) {
				LINE_ERR("quantity", "must be a whole number above 0 (in the "
						     "product's smallest unit)");
				continue;
			}
			l->quantity = bson_iter_as_int64(&sub);
			seen |= 2;
		} else if (strcmp(k, "unit_price") == 0) {
			const char *cur = NULL;
			int64_t amount = -1;
			bool shape = BSON_ITER_HOLDS_DOCUMENT(&sub) && bson_iter_recurse(&sub, &m);
			while (shape && bson_iter_next(&m)) {
				if (strcmp(bson_iter_key(&m), "amount") == 0 &&
				    (BSON_ITER_HOLDS_INT32(&m) || BSON_ITER_HOLDS_INT64(&m)))
					amount = bson_iter_as_int64(&m);
				else if (strcmp(bson_iter_key(&m), "currency") == 0 &&
					 BSON_ITER_HOLDS_UTF8(&m))
					cur = bson_iter_utf8(&m, NULL);
				else
					shape = false;
			}
			if (!shape || amount < 0 || amount > PRICE_MAX || !erp_currency_ok(cur)) {
				LINE_ERR("unit_price", "must be {\"amount\": <minor units, 0 or "
						       "more>, \"currency\": \"EUR\"}");
				continue;
			}
			if (currency && strcmp(cur, currency) != 0) {
				LINE_ERR("unit_price", "must be in the order's currency");
				continue;
			}
			l->unit_price = amount;
			seen |= 4;
		} else if (strcmp(k, "discount_bp") == 0) {
			if (!(BSON_ITER_HOLDS_INT32(&sub) || BSON_ITER_HOLDS_INT64(&sub)) ||
			    bson_iter_as_int64(&sub) < 0 || bson_iter_as_int64(&sub) > 10000) {
				LINE_ERR("discount_bp", "must be 0 to 10000 (basis points)");
				continue;
			}
			l->discount_bp = bson_iter_as_int64(&sub);
		} else {
			LINE_ERR(k, "is not a field of a line");
		}
	}
	if (ok && (seen & 1) == 0)
		LINE_ERR("product_id", "is required");
	if (ok && (seen & 2) == 0)
		LINE_ERR("quantity", "is required");
	if (ok && (seen & 4) == 0)
		LINE_ERR("unit_price", "is required");
	if (!ok)
		return false;
	/* the product: its unit's scale and tax rate, as they are now */
	bson_t product;
	char hex[25];
	bson_oid_to_string(&l->product, hex);
	int rc = tr_db_get(c->db, ERP_PRODUCTS, hex, &product);
	if (rc == TR_ENOTFOUND)
		LINE_ERR("product_id", "names a product that does not exist");
	else if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
		ok = false;
	} else {
		l->scale = tr_doc_int(&product, "uom_scale", 0);
		l->tax_rate_bp = tr_doc_int(&product, "tax_rate_bp", 0);
		/* its stock is valued in its price's currency: the order's */
		bson_iter_t pit, psub;
		if (currency && (!bson_iter_init(&pit, &product) ||
				 !bson_iter_find_descendant(&pit, "price.currency", &psub) ||
				 !BSON_ITER_HOLDS_UTF8(&psub) ||
				 strcmp(bson_iter_utf8(&psub, NULL), currency) != 0))
			LINE_ERR("product_id", "names a product priced in another currency");
	}
	bson_destroy(&product);
	if (!ok)
		return false;
	/* net = q x price x (10000 - discount) / (10000 x 10^scale) */
	if (!erp_muldiv_half_even(l->quantity, l->unit_price * (10000 - l->discount_bp),
				  10000 * erp_scale_factor(l->scale), &l->net) ||
	    !erp_muldiv_half_even(l->net, l->tax_rate_bp, 10000, &l->tax) ||
	    __builtin_add_overflow(l->net, l->tax, &l->total)) {
		LINE_ERR("quantity", "times the unit price is too large");
		return false;
	}
#undef LINE_ERR
	return true;
}

/* The lines of the body, priced, into set ("lines", "net", "tax", "total"). */
static bool
price_lines(struct tr_ctx *c, const char *currency, bson_t *set)
{
	bson_iter_t it, arr;
	struct erp_order_line l;
	bson_oid_t *seen = tr_arena_alloc(c->req->arena, MAX_ORDER_LINES * sizeof(*seen));
	int64_t net = 0, tax = 0, total = 0;
	int i = 0;
	bool ok = true;
	bson_t lines, line;
	char hex[25];

	if (!seen || !bson_iter_init_find(&it, &c->req->body, "lines") ||
	    !BSON_ITER_HOLDS_ARRAY(&it) || !bson_iter_recurse(&it, &arr)) {
		tr_problem_field(c, "lines", "must be an array of 1 to 100 lines");
		return false;
	}
	BSON_APPEND_ARRAY_BEGIN(set, "lines", &lines);
	while (bson_iter_next(&arr)) {
		if (i == MAX_ORDER_LINES) {
			tr_problem_field(c, "lines", "must be an array of 1 to 100 lines");
			ok = false;
			break;
		}
		if (!read_line(c, &arr, i, currency, &l)) {
			ok = false;
			i++;
			continue;
		}
		for (int j = 0; j < i && ok; j++)
			if (bson_oid_equal(&seen[j], &l.product)) {
				char *f = tr_arena_alloc(c->req->arena, 32);
				snprintf(f, 32, "lines[%d].product_id", i);
				tr_problem_field(c, f,
						 "is on another line already: add the quantities");
				ok = false;
			}
		seen[i] = l.product;
		ok &= !__builtin_add_overflow(net, l.net, &net) &&
		      !__builtin_add_overflow(tax, l.tax, &tax) &&
		      !__builtin_add_overflow(total, l.total, &total);
		char key[16];
		const char *k;
		bson_uint32_to_string((uint32_t)i++, &k, key, sizeof(key));
		BSON_APPEND_DOCUMENT_BEGIN(&lines, k, &line);
		bson_oid_to_string(&l.product, hex);
		BSON_APPEND_OID(&line, "product_id", &l.product);
		BSON_APPEND_INT64(&line, "quantity", l.quantity);
		erp_append_money(&line, "unit_price", l.unit_price, currency);
		BSON_APPEND_INT64(&line, "discount_bp", l.discount_bp);
		BSON_APPEND_INT64(&line, "tax_rate_bp", l.tax_rate_bp);
		erp_append_money(&line, "net", l.net, currency);
		erp_append_money(&line, "tax", l.tax, currency);
		erp_append_money(&line, "total", l.total, currency);
		BSON_APPEND_INT64(&line, "shipped", 0);
		bson_append_document_end(&lines, &line);
	}
	bson_append_array_end(set, &lines);
	if (ok && i == 0) {
		tr_problem_field(c, "lines", "must be an array of 1 to 100 lines");
		ok = false;
	}
	if (!ok)
		return false;
	erp_append_money(set, "net", net, currency);
	erp_append_money(set, "tax", tax, currency);
	erp_append_money(set, "total", total, currency);
	return true;
}

/* Create and change (drafts only): the client from the deal, the lines
 * priced. */
static bool
order_hook(struct tr_ctx *c, const struct tr_resource *e, bson_t *set, const bson_t *old)
{
	const char *currency = old ? tr_doc_str(old, "currency") : tr_doc_str(set, "currency");
	bson_oid_t deal_id;

	(void)e;
	if (old &&
	    strcmp(tr_doc_str(old, "status") ? tr_doc_str(old, "status") : "", "draft") != 0) {
		tr_problem(c, 409, "conflict", "only a draft order is changed; cancel it instead");
		return false;
	}
	if (!erp_currency_ok(currency)) {
		tr_problem_field(c, "currency", "must be an ISO 4217 code like EUR");
		return false;
	}
	currency = tr_arena_strdup(c->req->arena, currency); /* set grows below */
	if (!old && tr_doc_oid(set, "deal_id", &deal_id)) {
		bson_t deal;
		char hex[25];
		bson_oid_t client, given;
		bson_oid_to_string(&deal_id, hex);
		int rc = tr_db_get(c->db, "deals", hex, &deal);
		bool has = rc == TR_OK && tr_doc_oid(&deal, "client_id", &client);
		const char *st = rc == TR_OK ? tr_doc_str(&deal, "status") : NULL;
		bool won = st && strcmp(st, "won") == 0;
		char *why = tr_arena_alloc(c->req->arena, 64);
		snprintf(why, 64, "must be a won deal; this one is %s", st ? st : "without status");
		bson_destroy(&deal);
		if (rc != TR_OK) {
			tr_problem_from_err(c, rc);
			return false;
		}
		if (!won) { /* an order is what a won deal becomes */
			tr_problem_field(c, "deal_id", why);
			return false;
		}
		if (has && tr_doc_oid(set, "client_id", &given) &&
		    !bson_oid_equal(&given, &client)) {
			tr_problem_field(c, "client_id", "differs from the deal's client");
			return false;
		}
		if (has && !bson_has_field(set, "client_id"))
			BSON_APPEND_OID(set, "client_id", &client);
	}
	if (!old || (c->req->has_body && bson_has_field(&c->req->body, "lines"))) {
		tr_doc_remove(set, "lines");
		if (!price_lines(c, currency, set))
			return false;
	}
	return true;
}

const struct tr_resource erp_orders = {
    .name = "order",
    .coll = ERP_ORDERS,
    .path = "/v1/erp/orders",
    .read = "erp.orders.read",
    .write = "erp.orders.write",
    .about = "A sales order. Each line's net (quantity x unit price x (1 - discount)), tax "
	     "(net x the product's rate) and total are integers rounded half to even per line. "
	     "Drafts change; confirm reserves every line or none.",
    .topic = "erp.orders",
    .event = "erp.order",
    .owner_field = "owner_id",
    .fields = order_fields,
    .sorts = order_sorts,
    .states = &order_states,
    .hook = order_hook,
};

/* ---- confirm and cancel ---- */

static bool
shipped_test(const bson_t *order, bool all)
{
	bson_iter_t it, arr, line;

	if (!bson_iter_init_find(&it, order, "lines") || !bson_iter_recurse(&it, &arr))
		return false;
	while (bson_iter_next(&arr)) {
		int64_t q = 0, shipped = 0;
		if (!bson_iter_recurse(&arr, &line))
			continue;
		while (bson_iter_next(&line)) {
			if (strcmp(bson_iter_key(&line), "quantity") == 0)
				q = bson_iter_as_int64(&line);
			else if (strcmp(bson_iter_key(&line), "shipped") == 0)
				shipped = bson_iter_as_int64(&line);
		}
		if (all && shipped < q)
			return false;
		if (!all && shipped > 0)
			return true;
	}
	return all;
}

bool
erp_order_fully_shipped(const bson_t *order)
{
	return shipped_test(order, true);
}

static bool
erp_order_any_shipped(const bson_t *order)
{
	return shipped_test(order, false);
}

/* The answer to a refused set_status: another writer changed the order. */
static void
status_refused(struct tr_ctx *c, int rc)
{
	if (rc == TR_EVERSION)
		tr_problem(c, 409, "conflict", "the order changed meanwhile; read it again");
	else
		tr_problem_from_err(c, rc);
}

/* Sets the order's status (and more) on the version it was read at; the
 * stored order goes to *out. */
static int
set_status(struct tr_ctx *c, const char *id, const bson_t *order, const char *status,
	   const bson_t *more, bson_t *out)
{
	bson_t set = BSON_INITIALIZER;
	int rc;

	BSON_APPEND_UTF8(&set, "status", status);
	if (more)
		bson_concat(&set, more);
	rc = tr_db_update(c->db, ERP_ORDERS, id, tr_doc_int(order, "version", 0), &set, NULL, out);
	bson_destroy(&set);
	return rc;
}

const struct erp_hold erp_order_hold = {
    .coll = ERP_ORDERS,
    .kind = "order",
    .name = "order",
    .op = "erp.reserve",
    .busy = "confirming",
    .before = "draft",
    .after = "confirmed",
    .attempt_field = "_confirm_attempt",
    .field = "lines",
};

/* Confirming reserves every line or none (reserve.c). */
void
erp_order_confirm(struct tr_ctx *c)
{
	bson_t order = BSON_INITIALIZER, done = BSON_INITIALIZER;
	bson_oid_t products[ERP_MAX_DOC_LINES];
	int64_t qty[ERP_MAX_DOC_LINES], shipped[ERP_MAX_DOC_LINES];

	bson_destroy(&order);
	if (!tr_res_load(c, &erp_orders, tr_param(c, 0), &order))
		goto out;
	if (!tr_res_move_ok(c, &erp_orders, tr_doc_str(&order, "status"), "confirming", "confirm",
			    NULL, &order))
		goto out;
	int n = erp_lines_of(&order, "shipped", products, qty, shipped);
	if (erp_hold_all(c, &erp_order_hold, &order, products, qty, n, &done)) {
		tr_res_emit(c, &erp_orders, "erp.order.confirmed", &done);
		tr_reply_resource(c, 200, &done);
	}
out:
	bson_destroy(&order);
	bson_destroy(&done);
}

/* Releases the reservations an order names (each reversal once, by its own
 * id, so asking again finishes what an earlier attempt left). */
static int
release_named(struct tr_db *db, const bson_t *order)
{
	bson_iter_t it, arr, item;
	int rc = TR_OK;

	if (!bson_iter_init_find(&it, order, "_reservations") || !bson_iter_recurse(&it, &arr))
		return TR_OK;
	while (rc == TR_OK && bson_iter_next(&arr)) {
		const char *key = NULL;
		long long seq = 0;
		bson_t mv;
		bool replayed;
		if (!bson_iter_recurse(&arr, &item))
			continue;
		while (bson_iter_next(&item)) {
			if (strcmp(bson_iter_key(&item), "key") == 0 && BSON_ITER_HOLDS_UTF8(&item))
				key = bson_iter_utf8(&item, NULL);
			else if (strcmp(bson_iter_key(&item), "seq") == 0)
				seq = bson_iter_as_int64(&item);
		}
		if (!key)
			continue;
		rc = tr_register_reverse(db, key, seq, false, 0, NULL, &mv, &replayed);
		bson_destroy(&mv);
	}
	return rc;
}

/* Cancelling takes the order first (a version-checked write to
 * "cancelled", so no shipment or invoice can start after it), then
 * releases what it reserved and notes it; a cancel asked again finishes a
 * release an earlier attempt left halfway. */
void
erp_order_cancel(struct tr_ctx *c)
{
	bson_t order = BSON_INITIALIZER, stored = BSON_INITIALIZER, done = BSON_INITIALIZER,
	       released = BSON_INITIALIZER;
	bson_oid_t oid;
	char id[25];
	int rc;

	bson_destroy(&order);
	if (!tr_res_load(c, &erp_orders, tr_param(c, 0), &order))
		goto out;
	tr_doc_oid(&order, "_id", &oid);
	bson_oid_to_string(&oid, id);
	const char *status = tr_doc_str(&order, "status");
	bool unfinished = status && strcmp(status, "cancelled") == 0 &&
			  !tr_doc_int(&order, "_released", 0) &&
			  bson_has_field(&order, "_reservations");
	if (!unfinished) {
		if (!tr_res_move_ok(c, &erp_orders, status, "cancelled", "cancel", NULL, &order))
			goto out;
		bson_iter_t it, arr;
		bool pending = bson_iter_init_find(&it, &order, "_pending_shipments") &&
			       bson_iter_recurse(&it, &arr) && bson_iter_next(&arr);
		if (pending || erp_order_any_shipped(&order)) {
			tr_problem(c, 409, "conflict",
				   "part of the order has shipped: it is not cancelled");
			goto out;
		}
		bson_destroy(&stored);
		rc = set_status(c, id, &order, "cancelled", NULL, &stored);
		if (rc != TR_OK) {
			status_refused(c, rc);
			goto out;
		}
	} else {
		bson_destroy(&stored);
		bson_copy_to(&order, &stored);
	}
	if ((rc = release_named(c->db, &stored)) != TR_OK) {
		erp_unfinished(c, rc);
		goto out;
	}
	BSON_APPEND_INT32(&released, "_released", 1);
	bson_destroy(&done);
	rc = tr_db_update(c->db, ERP_ORDERS, id, tr_doc_int(&stored, "version", 0), &released, NULL,
			  &done);
	if (rc != TR_OK && rc != TR_EVERSION) {
		erp_unfinished(c, rc);
		goto out;
	}
	if (unfinished) {
		tr_problem(c, 409, "conflict", "the order is cancelled");
		goto out;
	}
	tr_res_emit(c, &erp_orders, "erp.order.cancelled", &stored);
	tr_reply_resource(c, 200, rc == TR_OK ? &done : &stored);
out:
	bson_destroy(&order);
	bson_destroy(&stored);
	bson_destroy(&done);
	bson_destroy(&released);
}
