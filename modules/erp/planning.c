/* Reorder planning (issue 12 part 4): what fell below its reorder point
 * (reorder.c) drafted as purchase orders, by POST /v1/erp/planning/run and
 * by a daily job on the task queue.
 *
 * The rule. A rule's position is the available stock of its product in
 * its warehouse (the stock register "erp.stock/<product>/<warehouse>")
 * plus what is on order for it: what is not yet received of that product
 * on the warehouse's purchase orders that are draft, open or partially
 * received. A rule is short when its position is below its reorder_point.
 * A run then orders the smallest multiple of reorder_quantity that lifts
 * the position to the point or above: reorder_quantity when that is
 * enough, more when the shortfall is larger - so that a run right after
 * finds nothing short, where ordering reorder_quantity alone would draft
 * again for what is still missing. The drafts are purchase orders in
 * status "draft": one per supplier, warehouse and currency (a purchase
 * order has one of each; the currency is the rule's unit_cost's, which is
 * the product's price currency), a line per short rule at its unit_cost,
 * at most ERP_MAX_DOC_LINES lines each (a supplier with more short rules
 * gets another draft). A draft counts as on order, so the same shortfall
 * is never drafted twice; once cancelled it no longer counts, and the next
 * run drafts again. A short rule whose product, warehouse or supplier is
 * inactive is reported and skipped.
 *
 * Purchase orders are read status by status in the order they move
 * through (draft, open, partially received): one that moves during the
 * walk is counted once or twice, never missed. One with a receipt under
 * way (its quantities claimed on it, the stock not in yet; parts.c)
 * counts its lines' whole quantities as on order: never short for the
 * moment in between, at worst drafted by the next run.
 *
 * Exact across processes. Runs at the same moment, in any processes, see
 * the same shortfall; exactly one of them drafts it. Each tenant has one
 * planning record (ERP_PLANNING, its id derived from the tenant's), and a
 * run goes:
 *
 *   1. read the planning record, at version v;
 *   2. a plan left on it (by a run that died, or by one still at work) is
 *      finished first: its drafts inserted under the ids the plan chose
 *      (inserting an id that is there already changes nothing), each
 *      draft's event published once (tr_db_once by the draft's id), then
 *      the plan cleared by a write on version v; back to 1;
 *   3. with no plan on it, work out what is short from the rules, the
 *      stock registers and the purchase orders - every draft of an earlier
 *      plan is among them, since a plan is cleared only once its drafts
 *      are stored;
 *   4. claim: write the plan (its drafts, their ids chosen now) onto the
 *      record on version v. tr_db_update is exact across processes: of
 *      the writers expecting v, one succeeds. A run that loses goes back
 *      to 1, where it finds the winner's plan, or its drafts on order;
 *   5. finish its plan as in 2, and answer its drafts.
 *
 * So a plan is made only on a record no other plan touched since the run
 * read it, each plan counts every draft made before it, and a run killed
 * anywhere leaves at most a plan that the next run (or the daily job)
 * finishes. No lock is held: the record's version is the only guard. An
 * event whose run dies between its mark and its publication is lost (the
 * draft is not); it is never published twice.
 *
 * The daily job (queue ERP_PLANNING_QUEUE). A tenant's runs are due at the
 * multiples of erp_planning_every_ms since the epoch (daily: at 00:00
 * UTC). The planning record names the tenant's chain, {"at", "token",
 * "by"}: when the next run is due, a token that only that run's job
 * carries, and the queue id of the job that named it. A job runs only
 * while its token is the chain's: it runs planning, names the job of the
 * next multiple after now (a new token, by a version-checked write while
 * its own token is still named) and then enqueues it. Naming comes before enqueuing, so a
 * job never finds itself not yet named; a job whose enqueue failed is
 * retried by the queue and, finding the chain named "by" itself, enqueues
 * the job it named. Any other job - a duplicate delivery, one a newer
 * chain replaced - finds its token not named and does nothing. So a tenant
 * never has two chains, whatever runs twice: duplicates of one job (an
 * enqueue that succeeded but was not acknowledged) both run planning,
 * which is exact anyway, and only one of them names a successor.
 *
 * Creating a rule, and POST .../run, start a chain when the tenant has
 * none, or when the chain's run is a whole period overdue (its job was
 * lost: dead after its attempts, or never enqueued); the job they replace,
 * if it still comes, finds its token gone. A chain ends at a run whose
 * tenant has no rules left. (Not a once-mark per due time with
 * tr_db_once: a mark taken before an enqueue that fails, or by a job that
 * is retried, leaves the time marked and no job to run it - the chain
 * would stop.) The chain keeps times, not period numbers, so a changed
 * erp_planning_every_ms applies from the run after the one already due. */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "db.h"
#include "erp.h"
#include "events.h"
#include "jobs.h"
#include "json.h"
#include "log.h"
#include "register.h"
#include "util.h"

#define ATTEMPTS 20
#define SUGGESTED "erp.purchasing.suggested"

/* Whom a run works for: a request (its events go out with the answer), or
 * a job (c NULL: events are published at once). */
struct run_env {
	struct tr_db *db;
	struct tr_ctx *c;
	const char *tenant; /* 24 hex */
};

/* ---- the planning record ---- */

/* The tenant's planning record: its id, derived from the tenant's, and the
 * record as stored (made when missing; two makers insert one). */
static int
planning_record(struct tr_db *db, const char *tenant, char id[25], bson_t *out)
{
	uint8_t digest[32];
	char seed[64];
	bson_t fields = BSON_INITIALIZER, stored;
	bson_oid_t oid;
	int rc;

	snprintf(seed, sizeof(seed), "erp.planning/%s", tenant);
	crypto_hash_sha256(digest, (const unsigned char *)seed, strlen(seed));
	sodium_bin2hex(id, 25, digest, 12);
	if ((rc = tr_db_get(db, ERP_PLANNING, id, out)) != TR_ENOTFOUND) {
		bson_destroy(&fields);
		return rc;
	}
	bson_destroy(out);
	bson_oid_init_from_string(&oid, id);
	BSON_APPEND_OID(&fields, "_id", &oid);
	rc = tr_db_insert(db, ERP_PLANNING, &fields, &stored);
	bson_destroy(&stored);
	bson_destroy(&fields);
	if (rc != TR_OK && rc != TR_EDUPLICATE) {
		bson_init(out);
		return rc;
	}
	return tr_db_get(db, ERP_PLANNING, id, out);
}

/* ---- what is short ---- */

struct rule {
	char id[25];
	bson_oid_t product, warehouse, supplier;
	int64_t point, quantity, cost;
	char currency[4];
	int64_t available, on_order;
	bool is_short;
	int64_t order;	     /* what this run orders */
	const char *skipped; /* why a short rule is not ordered, or NULL */
	int64_t scale;	     /* the product's uom_scale */
	int draft;	     /* its draft in the plan, -1: none */
};

struct rule_set {
	struct rule *r;
	size_t n, cap;
};

/* An id of a rendered resource (hex) or of a stored record (ObjectId). */
static bool
oid_of(const bson_t *doc, const char *field, bson_oid_t *out)
{
	const char *hex = tr_doc_str(doc, field);

	if (hex && tr_is_object_id(hex)) {
		bson_oid_init_from_string(out, hex);
		return true;
	}
	return tr_doc_oid(doc, field, out);
}

static int
read_rule(void *arg, const bson_t *res)
{
	struct rule_set *rs = arg;
	struct rule r = {.draft = -1};
	bson_iter_t it, sub;
	const char *id = tr_doc_str(res, "id");

	if (!id || strlen(id) != 24 || !oid_of(res, "product_id", &r.product) ||
	    !oid_of(res, "warehouse_id", &r.warehouse) || !oid_of(res, "supplier_id", &r.supplier))
		return 0;
	snprintf(r.id, sizeof(r.id), "%s", id);
	r.point = tr_doc_int(res, "reorder_point", 0);
	r.quantity = tr_doc_int(res, "reorder_quantity", 0);
	r.cost = erp_money_amount(res, "unit_cost");
	if (bson_iter_init(&it, res) &&
	    bson_iter_find_descendant(&it, "unit_cost.currency", &sub) &&
	    BSON_ITER_HOLDS_UTF8(&sub))
		snprintf(r.currency, sizeof(r.currency), "%s", bson_iter_utf8(&sub, NULL));
	if (r.quantity <= 0 || !erp_currency_ok(r.currency))
		return 0;
	if (rs->n == rs->cap) {
		size_t cap = rs->cap ? rs->cap * 2 : 64;
		struct rule *more = realloc(rs->r, cap * sizeof(*more));
		if (!more)
			return TR_ENOMEM;
		rs->r = more;
		rs->cap = cap;
	}
	rs->r[rs->n++] = r;
	return 0;
}

/* Rules in (product, warehouse) order, to find a purchase order line's. */
static int
by_product_and_warehouse(const void *a, const void *b)
{
	const struct rule *x = a, *y = b;
	int d = memcmp(x->product.bytes, y->product.bytes, sizeof(x->product.bytes));

	return d ? d : memcmp(x->warehouse.bytes, y->warehouse.bytes, sizeof(x->warehouse.bytes));
}

static void
add_capped(int64_t *sum, int64_t add)
{
	if (__builtin_add_overflow(*sum, add, sum))
		*sum = INT64_MAX;
}

struct po_walk {
	struct tr_db *db;
	struct rule_set *rules;
};

/* Adds what a purchase order still brings to the rules of its lines. */
static int
count_po(void *arg, const bson_t *po)
{
	struct po_walk *w = arg;
	bson_oid_t products[ERP_MAX_DOC_LINES];
	int64_t qty[ERP_MAX_DOC_LINES], received[ERP_MAX_DOC_LINES];
	struct rule key;
	bson_iter_t it, arr, line;
	bool under_way = false, any_received = false;
	int n = 0;

	if (!oid_of(po, "warehouse_id", &key.warehouse))
		return 0;
	/* rendered: ids are hex, so the lines are read here (erp_lines_of
	 * reads stored ones) */
	if (bson_iter_init_find(&it, po, "lines") && bson_iter_recurse(&it, &arr))
		while (n < ERP_MAX_DOC_LINES && bson_iter_next(&arr)) {
			bson_t l;
			const uint8_t *data;
			uint32_t len;
			if (!BSON_ITER_HOLDS_DOCUMENT(&arr) || !bson_iter_recurse(&arr, &line))
				continue;
			bson_iter_document(&arr, &len, &data);
			if (!bson_init_static(&l, data, len) ||
			    !oid_of(&l, "product_id", &products[n]))
				continue;
			qty[n] = tr_doc_int(&l, "quantity", 0);
			received[n] = tr_doc_int(&l, "received", 0);
			any_received |= received[n] > 0;
			n++;
		}
	if (any_received) {
		/* a receipt under way names itself pending on the stored record */
		bson_t stored;
		const char *id = tr_doc_str(po, "id");
		int rc = tr_db_get(w->db, ERP_PURCHASE_ORDERS, id ? id : "", &stored);
		if (rc != TR_OK && rc != TR_ENOTFOUND) {
			bson_destroy(&stored);
			return rc;
		}
		under_way = rc == TR_OK && bson_iter_init_find(&it, &stored, "_pending_receipts") &&
			    BSON_ITER_HOLDS_ARRAY(&it) && bson_iter_recurse(&it, &arr) &&
			    bson_iter_next(&arr);
		bson_destroy(&stored);
	}
	for (int i = 0; i < n; i++) {
		int64_t open = under_way ? qty[i] : qty[i] - received[i];
		key.product = products[i];
		struct rule *r =
		    bsearch(&key, w->rules->r, w->rules->n, sizeof(key), by_product_and_warehouse);
		if (r && open > 0)
			add_capped(&r->on_order, open);
	}
	return 0;
}

static bool
inactive(const bson_t *doc)
{
	bson_iter_t it;

	return bson_iter_init_find(&it, doc, "active") && BSON_ITER_HOLDS_BOOL(&it) &&
	       !bson_iter_bool(&it);
}

/* May a short rule be ordered: its product, warehouse and supplier there
 * and active, the product in the rule's currency? Sets r->skipped when
 * not, and r->scale. */
static int
check_short(struct tr_db *db, struct rule *r)
{
	static const struct {
		const char *coll;
		const char *gone, *off;
	} refs[] = {
	    {ERP_PRODUCTS, "the product does not exist", "the product is inactive"},
	    {ERP_WAREHOUSES, "the warehouse does not exist", "the warehouse is inactive"},
	    {ERP_SUPPLIERS, "the supplier does not exist", "the supplier is inactive"},
	};
	const bson_oid_t *ids[] = {&r->product, &r->warehouse, &r->supplier};

	for (size_t i = 0; i < sizeof(refs) / sizeof(refs[0]) && !r->skipped; i++) {
		bson_t doc;
		bson_iter_t it, sub;
		char hex[25];
		bson_oid_to_string(ids[i], hex);
		int rc = tr_db_get(db, refs[i].coll, hex, &doc);
		if (rc != TR_OK && rc != TR_ENOTFOUND) {
			bson_destroy(&doc);
			return rc;
		}
		if (rc == TR_ENOTFOUND)
			r->skipped = refs[i].gone;
		else if (inactive(&doc))
			r->skipped = refs[i].off;
		else if (i == 0) {
			r->scale = tr_doc_int(&doc, "uom_scale", 0);
			if (!bson_iter_init(&it, &doc) ||
			    !bson_iter_find_descendant(&it, "price.currency", &sub) ||
			    !BSON_ITER_HOLDS_UTF8(&sub) ||
			    strcmp(bson_iter_utf8(&sub, NULL), r->currency) != 0)
				r->skipped = "the unit cost is not in the product's price currency";
		}
		bson_destroy(&doc);
	}
	return TR_OK;
}

/* The smallest multiple of the reorder quantity that lifts the position
 * to the point, or 0 when it is not short; capped at the largest multiple
 * a purchase order line takes. */
static int64_t
to_order(const struct rule *r, int64_t position)
{
	int64_t missing, lots, q;

	if (position >= r->point)
		return 0;
	if (__builtin_sub_overflow(r->point, position, &missing))
		missing = INT64_MAX;
	lots = missing / r->quantity + (missing % r->quantity != 0);
	if (__builtin_mul_overflow(lots, r->quantity, &q) || q > ERP_PLANNING_MAX)
		q = ERP_PLANNING_MAX / r->quantity * r->quantity;
	return q;
}

/* Reads the tenant's rules and finds the short ones: available stock and
 * what is on order for each, and what to order. The purchase orders are
 * read before the stock: a receipt that lands in between is counted twice
 * (still on order, already in stock), never missed. */
static int
find_short(struct tr_db *db, struct rule_set *rs)
{
	static const char *const on_order[] = {"draft", "open", "partially_received"};
	bson_t all = BSON_INITIALIZER;
	int rc = tr_db_each(db, ERP_REORDER_RULES, &all, read_rule, rs);

	bson_destroy(&all);
	if (rc != TR_OK || rs->n == 0)
		return rc;
	qsort(rs->r, rs->n, sizeof(*rs->r), by_product_and_warehouse);
	struct po_walk walk = {db, rs};
	for (size_t i = 0; i < sizeof(on_order) / sizeof(on_order[0]) && rc == TR_OK; i++) {
		bson_t filter = BSON_INITIALIZER;
		BSON_APPEND_UTF8(&filter, "status", on_order[i]);
		rc = tr_db_each(db, ERP_PURCHASE_ORDERS, &filter, count_po, &walk);
		bson_destroy(&filter);
	}
	for (size_t i = 0; i < rs->n && rc == TR_OK; i++) {
		struct rule *r = &rs->r[i];
		char key[128], p[25], w[25];
		bson_t state;
		bson_oid_to_string(&r->product, p);
		bson_oid_to_string(&r->warehouse, w);
		snprintf(key, sizeof(key), "erp.stock/%s/%s", p, w);
		if ((rc = tr_register_read(db, key, &state)) == TR_OK) {
			r->available = erp_counter(&state, "values", "available");
			int64_t position = r->available;
			add_capped(&position, r->on_order);
			r->order = to_order(r, position);
			r->is_short = r->order > 0;
		}
		bson_destroy(&state);
		if (rc == TR_OK && r->is_short)
			rc = check_short(db, r);
		if (r->skipped)
			r->order = 0;
	}
	return rc;
}

/* Drafts in (supplier, warehouse, currency) order, then by product. */
static int
by_draft(const void *a, const void *b)
{
	const struct rule *x = *(const struct rule *const *)a, *y = *(const struct rule *const *)b;
	int d = memcmp(x->supplier.bytes, y->supplier.bytes, sizeof(x->supplier.bytes));

	if (!d)
		d = memcmp(x->warehouse.bytes, y->warehouse.bytes, sizeof(x->warehouse.bytes));
	if (!d)
		d = strcmp(x->currency, y->currency);
	return d ? d : memcmp(x->product.bytes, y->product.bytes, sizeof(x->product.bytes));
}

static bool
same_draft(const struct rule *x, const struct rule *y)
{
	return bson_oid_equal(&x->supplier, &y->supplier) &&
	       bson_oid_equal(&x->warehouse, &y->warehouse) &&
	       strcmp(x->currency, y->currency) == 0;
}

static void
append_line(bson_t *lines, int i, const struct rule *r)
{
	char key[16];
	const char *k;
	bson_t line;

	bson_uint32_to_string((uint32_t)i, &k, key, sizeof(key));
	BSON_APPEND_DOCUMENT_BEGIN(lines, k, &line);
	BSON_APPEND_OID(&line, "product_id", &r->product);
	BSON_APPEND_INT64(&line, "quantity", r->order);
	erp_append_money(&line, "unit_cost", r->cost, r->currency);
	BSON_APPEND_INT64(&line, "received", 0);
	bson_append_document_end(lines, &line);
}

/* The plan {"id", "at", "drafts": [{"id", "supplier_id", "warehouse_id",
 * "currency", "lines", "total"}]} of the rules to order into set.plan, each
 * rule's draft noted; the number of drafts (0: nothing to order). A line
 * whose value does not fit is skipped. */
static int
make_plan(struct rule_set *rs, bson_t *set, int *ndrafts)
{
	struct rule **order = malloc((rs->n ? rs->n : 1) * sizeof(*order));
	size_t m = 0;

	*ndrafts = 0;
	if (!order)
		return TR_ENOMEM;
	for (size_t i = 0; i < rs->n; i++) {
		int64_t value;
		struct rule *r = &rs->r[i];
		if (r->order > 0 &&
		    !erp_muldiv_half_even(r->order, r->cost, erp_scale_factor(r->scale), &value)) {
			r->skipped = "the line's value is too large";
			r->order = 0;
		}
		if (r->order > 0)
			order[m++] = r;
	}
	qsort(order, m, sizeof(*order), by_draft);
	bson_t plan, drafts, draft, lines;
	bson_oid_t plan_id;
	bson_oid_init(&plan_id, NULL);
	BSON_APPEND_DOCUMENT_BEGIN(set, "plan", &plan);
	BSON_APPEND_OID(&plan, "id", &plan_id);
	BSON_APPEND_DATE_TIME(&plan, "at", tr_now_ms());
	BSON_APPEND_ARRAY_BEGIN(&plan, "drafts", &drafts);
	for (size_t i = 0; i < m;) {
		size_t end = i;
		int64_t total = 0;
		int nlines = 0;
		char key[16];
		const char *k;
		bson_oid_t draft_id;
		while (end < m && end - i < ERP_MAX_DOC_LINES && same_draft(order[i], order[end]))
			end++;
		bson_oid_init(&draft_id, NULL);
		bson_uint32_to_string((uint32_t)*ndrafts, &k, key, sizeof(key));
		BSON_APPEND_DOCUMENT_BEGIN(&drafts, k, &draft);
		BSON_APPEND_OID(&draft, "id", &draft_id);
		BSON_APPEND_OID(&draft, "supplier_id", &order[i]->supplier);
		BSON_APPEND_OID(&draft, "warehouse_id", &order[i]->warehouse);
		BSON_APPEND_UTF8(&draft, "currency", order[i]->currency);
		BSON_APPEND_ARRAY_BEGIN(&draft, "lines", &lines);
		for (size_t j = i; j < end; j++) {
			int64_t value = 0, sum;
			/* fits: checked above; the first line always fits the total */
			erp_muldiv_half_even(order[j]->order, order[j]->cost,
					     erp_scale_factor(order[j]->scale), &value);
			if (__builtin_add_overflow(total, value, &sum)) {
				order[j]->skipped = "the purchase order's total would be too large";
				order[j]->order = 0;
				continue;
			}
			total = sum;
			order[j]->draft = *ndrafts;
			append_line(&lines, nlines++, order[j]);
		}
		bson_append_array_end(&draft, &lines);
		erp_append_money(&draft, "total", total, order[i]->currency);
		bson_append_document_end(&drafts, &draft);
		(*ndrafts)++;
		i = end;
	}
	bson_append_array_end(&plan, &drafts);
	bson_append_document_end(set, &plan);
	free(order);
	return TR_OK;
}

/* ---- storing a plan ---- */

/* erp.purchasing.suggested for a draft, once whoever stores it. */
static int
suggest_once(const struct run_env *env, const bson_t *stored)
{
	bson_oid_t id;
	char hex[25], once[64];
	int rc;

	if (!tr_doc_oid(stored, "_id", &id))
		return TR_OK;
	bson_oid_to_string(&id, hex);
	snprintf(once, sizeof(once), SUGGESTED "/%s", hex);
	if ((rc = tr_db_once(env->db, once)) != TR_OK)
		return rc == TR_EDUPLICATE ? TR_OK : rc;
	if (env->c) {
		tr_res_emit(env->c, &erp_purchase_orders, SUGGESTED, stored);
	} else {
		bson_t data = BSON_INITIALIZER;
		tr_render_resource(stored, &data);
		tr_emit_background(env->tenant, "erp.purchasing", SUGGESTED, hex, NULL, &data);
		bson_destroy(&data);
	}
	return TR_OK;
}

/* Stores each draft of the plan on rec (the planning record as read) -
 * the same id again changes nothing - publishes its event once, appends
 * it as stored to out (rendered; NULL: not wanted), then clears the plan
 * on rec's version. TR_EVERSION: another run cleared it (or more) first;
 * the drafts are stored either way. */
static int
finish_plan(const struct run_env *env, const char *rid, const bson_t *rec, bson_t *out)
{
	bson_iter_t it, arr, field;
	int rc = TR_OK, n = 0;

	if (bson_iter_init(&it, rec) && bson_iter_find_descendant(&it, "plan.drafts", &arr) &&
	    BSON_ITER_HOLDS_ARRAY(&arr) && bson_iter_recurse(&arr, &it))
		while (rc == TR_OK && bson_iter_next(&it)) {
			bson_t fields = BSON_INITIALIZER, stored;
			char hex[25] = "";
			if (!bson_iter_recurse(&it, &field)) {
				bson_destroy(&fields);
				continue;
			}
			while (bson_iter_next(&field))
				if (strcmp(bson_iter_key(&field), "id") == 0 &&
				    BSON_ITER_HOLDS_OID(&field)) {
					BSON_APPEND_OID(&fields, "_id", bson_iter_oid(&field));
					bson_oid_to_string(bson_iter_oid(&field), hex);
				} else {
					bson_append_iter(&fields, NULL, 0, &field);
				}
			BSON_APPEND_UTF8(&fields, "status", "draft");
			rc = tr_db_insert(env->db, ERP_PURCHASE_ORDERS, &fields, &stored);
			if (rc == TR_EDUPLICATE) {
				bson_destroy(&stored);
				rc = tr_db_get(env->db, ERP_PURCHASE_ORDERS, hex, &stored);
			}
			if (rc == TR_OK)
				rc = suggest_once(env, &stored);
			if (rc == TR_OK && out) {
				bson_t rendered = BSON_INITIALIZER;
				char key[16];
				const char *k;
				bson_uint32_to_string((uint32_t)n++, &k, key, sizeof(key));
				tr_render_resource(&stored, &rendered);
				BSON_APPEND_DOCUMENT(out, k, &rendered);
				bson_destroy(&rendered);
			}
			bson_destroy(&stored);
			bson_destroy(&fields);
		}
	if (rc != TR_OK)
		return rc; /* the plan stays: the next run finishes it */
	bson_t unset = BSON_INITIALIZER, after;
	BSON_APPEND_INT32(&unset, "plan", 1);
	rc = tr_db_update(env->db, ERP_PLANNING, rid, tr_doc_int(rec, "version", 0), NULL, &unset,
			  &after);
	bson_destroy(&unset);
	bson_destroy(&after);
	return rc == TR_EBUSY ? TR_EVERSION : rc;
}

/* {"drafts": [...], "short": [...]} of a run: drafts (taken) and each
 * short rule, what it found and what became of it. */
static void
answer_of(const struct rule_set *rs, const bson_t *plan, bson_t *drafts, bson_t *answer)
{
	bson_t shorts, item;
	bson_iter_t it, id;
	int n = 0;

	BSON_APPEND_ARRAY(answer, "drafts", drafts);
	BSON_APPEND_ARRAY_BEGIN(answer, "short", &shorts);
	for (size_t i = 0; i < rs->n; i++) {
		const struct rule *r = &rs->r[i];
		char key[16], hex[25], path[32];
		const char *k;
		if (!r->is_short)
			continue;
		bson_uint32_to_string((uint32_t)n++, &k, key, sizeof(key));
		BSON_APPEND_DOCUMENT_BEGIN(&shorts, k, &item);
		BSON_APPEND_UTF8(&item, "rule_id", r->id);
		bson_oid_to_string(&r->product, hex);
		BSON_APPEND_UTF8(&item, "product_id", hex);
		bson_oid_to_string(&r->warehouse, hex);
		BSON_APPEND_UTF8(&item, "warehouse_id", hex);
		bson_oid_to_string(&r->supplier, hex);
		BSON_APPEND_UTF8(&item, "supplier_id", hex);
		BSON_APPEND_INT64(&item, "available", r->available);
		BSON_APPEND_INT64(&item, "on_order", r->on_order);
		BSON_APPEND_INT64(&item, "reorder_point", r->point);
		BSON_APPEND_INT64(&item, "reorder_quantity", r->quantity);
		BSON_APPEND_INT64(&item, "ordered", r->order);
		snprintf(path, sizeof(path), "plan.drafts.%d.id", r->draft);
		if (r->draft >= 0 && plan && bson_iter_init(&it, plan) &&
		    bson_iter_find_descendant(&it, path, &id) && BSON_ITER_HOLDS_OID(&id)) {
			bson_oid_to_string(bson_iter_oid(&id), hex);
			BSON_APPEND_UTF8(&item, "purchase_order_id", hex);
		} else {
			BSON_APPEND_NULL(&item, "purchase_order_id");
		}
		if (r->skipped)
			BSON_APPEND_UTF8(&item, "skipped", r->skipped);
		else
			BSON_APPEND_NULL(&item, "skipped");
		bson_append_document_end(&shorts, &item);
	}
	bson_append_array_end(answer, &shorts);
}

int
erp_planning_run(struct tr_db *db, struct tr_ctx *c, const char *tenant, bson_t *answer,
		 size_t *nrules)
{
	const struct run_env env = {db, c, tenant};

	*nrules = 0;
	for (int attempt = 0; attempt < ATTEMPTS; attempt++) {
		struct rule_set rs = {0};
		bson_t rec, set = BSON_INITIALIZER, after = BSON_INITIALIZER,
			    drafts = BSON_INITIALIZER;
		char rid[25];
		int ndrafts = 0, rc;
		bool again = false;

		rc = planning_record(db, tenant, rid, &rec);
		if (rc == TR_OK && bson_has_field(&rec, "plan")) {
			/* 2: another run's plan first */
			rc = finish_plan(&env, rid, &rec, NULL);
			again = rc == TR_OK || rc == TR_EVERSION;
		} else if (rc == TR_OK && (rc = find_short(db, &rs)) == TR_OK &&
			   (rc = make_plan(&rs, &set, &ndrafts)) == TR_OK) {
			*nrules = rs.n;
			if (ndrafts > 0) {
				/* 4: the claim */
				bson_destroy(&after);
				rc = tr_db_update(db, ERP_PLANNING, rid,
						  tr_doc_int(&rec, "version", 0), &set, NULL,
						  &after);
				again = rc == TR_EVERSION || rc == TR_EBUSY;
				/* 5: ours to store (fault tests kill a run here) */
				if (rc == TR_OK) {
					erp_step_pause();
					rc = finish_plan(&env, rid, &after, &drafts);
				}
				if (rc == TR_EVERSION && !again)
					rc = TR_OK; /* another run cleared our plan: stored */
			}
			if (rc == TR_OK && answer) {
				bson_init(answer);
				answer_of(&rs, &after, &drafts, answer);
			}
		}
		bson_destroy(&rec);
		bson_destroy(&set);
		bson_destroy(&after);
		bson_destroy(&drafts);
		free(rs.r);
		if (!again)
			return rc;
	}
	return TR_EBUSY; /* the record kept changing under every attempt */
}

/* ---- the daily job ---- */

struct chain {
	int64_t at;		/* when its run is due (ms since the epoch) */
	char token[33], by[33]; /* "" when none */
};

static void
chain_of(const bson_t *rec, struct chain *ch)
{
	bson_iter_t it, sub;

	memset(ch, 0, sizeof(*ch));
	if (bson_iter_init(&it, rec) && bson_iter_find_descendant(&it, "chain.at", &sub) &&
	    BSON_ITER_HOLDS_NUMBER(&sub))
		ch->at = bson_iter_as_int64(&sub);
	if (bson_iter_init(&it, rec) && bson_iter_find_descendant(&it, "chain.token", &sub) &&
	    BSON_ITER_HOLDS_UTF8(&sub))
		snprintf(ch->token, sizeof(ch->token), "%s", bson_iter_utf8(&sub, NULL));
	if (bson_iter_init(&it, rec) && bson_iter_find_descendant(&it, "chain.by", &sub) &&
	    BSON_ITER_HOLDS_UTF8(&sub))
		snprintf(ch->by, sizeof(ch->by), "%s", bson_iter_utf8(&sub, NULL));
}

static int64_t
period_ms(void)
{
	return tr_config_int("erp_planning_every_ms");
}

/* Is there a chain whose run is not a whole period overdue? */
static bool
chain_alive(const struct chain *ch)
{
	return ch->token[0] && tr_now_ms() < ch->at + period_ms();
}

static int
enqueue(const char *tenant, const struct chain *ch)
{
	char payload[96];

	snprintf(payload, sizeof(payload), "{\"at\":%lld,\"token\":\"%s\"}", (long long)ch->at,
		 ch->token);
	return tr_job_enqueue(ERP_PLANNING_QUEUE, tenant, payload, ch->at, NULL);
}

/* The first multiple of the period after both now and after (ms). */
static int64_t
next_run(int64_t after)
{
	int64_t now = tr_now_ms(), period = period_ms();

	return ((now > after ? now : after) / period + 1) * period;
}

/* Names the job due at `at` as the chain's on the planning record rec (read
 * again while others write it) and enqueues it - while the chain is still
 * the one the caller found: the job holding token `from`, or (from NULL)
 * none alive. by: the queue id of the job handing over, or "". Nothing is
 * done when the chain moved on. */
static int
name_next(struct tr_db *db, const char *tenant, const char *rid, bson_t *rec, const char *from,
	  const char *by, int64_t at)
{
	struct chain next = {.at = at};

	snprintf(next.by, sizeof(next.by), "%s", by);
	tr_random_hex(next.token, 16);
	for (int attempt = 0; attempt < ATTEMPTS; attempt++) {
		struct chain now;
		bson_t set = BSON_INITIALIZER, ch, after;
		int rc;

		chain_of(rec, &now);
		if (from ? strcmp(now.token, from) != 0 : chain_alive(&now)) {
			bson_destroy(&set);
			return TR_OK; /* someone else's chain now */
		}
		BSON_APPEND_DOCUMENT_BEGIN(&set, "chain", &ch);
		BSON_APPEND_INT64(&ch, "at", next.at);
		BSON_APPEND_UTF8(&ch, "token", next.token);
		BSON_APPEND_UTF8(&ch, "by", next.by);
		bson_append_document_end(&set, &ch);
		rc = tr_db_update(db, ERP_PLANNING, rid, tr_doc_int(rec, "version", 0), &set, NULL,
				  &after);
		bson_destroy(&set);
		bson_destroy(&after);
		if (rc == TR_OK)
			return enqueue(tenant, &next);
		if (rc != TR_EVERSION && rc != TR_EBUSY)
			return rc;
		bson_destroy(rec);
		if ((rc = tr_db_get(db, ERP_PLANNING, rid, rec)) != TR_OK)
			return rc;
	}
	return TR_EBUSY;
}

int
erp_planning_ensure_job(struct tr_db *db, const char *tenant)
{
	bson_t rec;
	char rid[25];
	int rc = planning_record(db, tenant, rid, &rec);

	if (rc == TR_OK)
		rc = name_next(db, tenant, rid, &rec, NULL, "", next_run(0));
	bson_destroy(&rec);
	return rc;
}

/* Ends the chain of the job holding token (no rules left). */
static int
end_chain(struct tr_db *db, const char *rid, bson_t *rec, const char *token)
{
	for (int attempt = 0; attempt < ATTEMPTS; attempt++) {
		struct chain now;
		bson_t unset = BSON_INITIALIZER, after;
		int rc;

		chain_of(rec, &now);
		if (strcmp(now.token, token) != 0) {
			bson_destroy(&unset);
			return TR_OK;
		}
		BSON_APPEND_INT32(&unset, "chain", 1);
		rc = tr_db_update(db, ERP_PLANNING, rid, tr_doc_int(rec, "version", 0), NULL,
				  &unset, &after);
		bson_destroy(&unset);
		bson_destroy(&after);
		if (rc != TR_EVERSION && rc != TR_EBUSY)
			return rc;
		bson_destroy(rec);
		if ((rc = tr_db_get(db, ERP_PLANNING, rid, rec)) != TR_OK)
			return rc;
	}
	return TR_EBUSY;
}

int
erp_planning_job(const struct tr_job *job, char *err, size_t errlen)
{
	bson_t payload = BSON_INITIALIZER, rec = BSON_INITIALIZER, none = BSON_INITIALIZER;
	struct tr_db *db = NULL;
	struct chain ch;
	char perr[64], rid[25], token[33];
	const char *t;
	long long rules = 0;
	size_t nrules;
	int64_t at;
	int rc = TR_OK;

	bson_destroy(&payload);
	if (tr_json_parse(job->payload, job->payload_len, &payload, perr, sizeof(perr)) != 0 ||
	    !(t = tr_doc_str(&payload, "token")) || strlen(t) != 32 ||
	    (at = tr_doc_int(&payload, "at", -1)) < 0 || !tr_is_object_id(job->tenant))
		goto out; /* not a planning job: nothing to do */
	snprintf(token, sizeof(token), "%s", t);
	if (!(db = tr_db_for_tenant(job->tenant))) {
		rc = TR_ENOMEM;
		goto out;
	}
	bson_destroy(&rec);
	if ((rc = planning_record(db, job->tenant, rid, &rec)) != TR_OK)
		goto out;
	chain_of(&rec, &ch);
	if (strcmp(ch.token, token) != 0) {
		/* not the chain's job - unless it named the chain's and was
		 * stopped before enqueuing it: then it does that now */
		if (ch.token[0] && strcmp(ch.by, job->id) == 0)
			rc = enqueue(job->tenant, &ch);
		goto out;
	}
	if ((rc = tr_db_count(db, ERP_REORDER_RULES, &none, &rules)) != TR_OK)
		goto out;
	if (rules == 0) {
		rc = end_chain(db, rid, &rec, token);
		goto out;
	}
	if ((rc = erp_planning_run(db, NULL, job->tenant, NULL, &nrules)) != TR_OK)
		goto out; /* retried: the chain still names this job */
	bson_destroy(&rec);
	if ((rc = tr_db_get(db, ERP_PLANNING, rid, &rec)) != TR_OK)
		goto out;
	rc = name_next(db, job->tenant, rid, &rec, token, job->id, next_run(at));
out:
	if (rc != TR_OK)
		snprintf(err, errlen, "planning of tenant %s: %s", job->tenant, tr_strerror(rc));
	tr_db_release(db);
	bson_destroy(&payload);
	bson_destroy(&rec);
	bson_destroy(&none);
	return rc == TR_OK ? 0 : -1;
}

/* ---- POST /v1/erp/planning/run ---- */

void
erp_planning_run_route(struct tr_ctx *c)
{
	const char *tenant = c->req->principal.tenant_hex;
	bson_t answer;
	size_t nrules = 0;
	int rc = erp_planning_run(c->db, c, tenant, &answer, &nrules);

	if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
		return;
	}
	/* a tenant with rules has its daily job (started here if it was lost) */
	if (nrules > 0 && (rc = erp_planning_ensure_job(c->db, tenant)) != TR_OK)
		tr_warn("erp: tenant %s: the daily planning job could not be scheduled: %s", tenant,
			tr_strerror(rc));
	tr_reply_json(c, 200, &answer);
	bson_destroy(&answer);
}
