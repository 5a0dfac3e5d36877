/* Work orders (issue "people and production"): making a quantity of a
 * product from the components of its active bill of materials.
 *
 *   plan (POST /v1/erp/work-orders): the bill is exploded one level for the
 *     quantity (each component's need exact, else 422) and every component
 *     must be available in the warehouse (409 insufficient-stock naming
 *     the short ones); nothing is reserved yet;
 *   release: every component reserved, or none (reserve.c, as an order's
 *     confirmation);
 *   complete {quantity}: a part is claimed on the work order first (one
 *     version-checked write adds it to `made` and names the completion
 *     pending, so two completions never make more than was planned, in any
 *     process); then each component's share leaves the stock at its
 *     moving-average cost (on hand and reserved together), the product
 *     arrives worth those costs plus its share of the labour, the ledger
 *     posts components to finished goods (inventory against inventory, and
 *     applied labour against expenses 6000), and the completion is
 *     recorded. Each step is once by the completion's id (from the
 *     Idempotency-Key, or fresh); a settle job finishes a completion whose
 *     writer died;
 *   cancel: a planned or released work order stops; what it still holds
 *     reserved is released (once per component); what was made stays.
 *
 * A part's components are its share of the planned ones, which must come
 * out whole; its labour is the difference of the labour of what was made
 * after and before it (each rounded half to even), so the parts' labour
 * adds up to the planned labour exactly. */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "erp.h"
#include "events.h"
#include "json.h"
#include "log.h"
#include "register.h"

#define QTY_MAX 1000000000000LL

static const char *const wo_statuses[] = {"planned",   "releasing", "released",
					  "completed", "cancelled", NULL};
static const char *const wo_sorts[] = {"-created_at", "created_at", NULL};

static const struct tr_transition wo_moves[] = {
    {NULL, "planned", NULL, NULL},
    {"planned", "releasing", "release", NULL},
    {"releasing", "released", "release", NULL},
    {"releasing", "planned", "release", NULL},
    {"released", "completed", "complete", NULL},
    {"planned", "cancelled", "cancel", NULL},
    {"released", "cancelled", "cancel", NULL},
    {NULL, NULL, NULL, NULL},
};

static const struct tr_states wo_states = {"status", wo_moves};

static const struct tr_field wo_fields[] = {
    {"product_id", TR_K_REF, TR_F_REQUIRED | TR_F_FIXED | TR_F_FILTER | TR_F_NARROW, 0, 0, NULL,
     ERP_PRODUCTS},
    {"warehouse_id", TR_K_REF, TR_F_REQUIRED | TR_F_FIXED | TR_F_FILTER, 0, 0, NULL,
     ERP_WAREHOUSES},
    {"quantity", TR_K_QUANTITY, TR_F_REQUIRED | TR_F_FIXED, 1, QTY_MAX, NULL, NULL},
    {"note", TR_K_LINE, TR_F_NULLABLE, 1, 200, NULL, NULL},
    {"status", TR_K_ENUM, TR_F_SERVER | TR_F_FILTER, 0, 0, wo_statuses, NULL},
    {"bom_id", TR_K_REF, TR_F_SERVER, 0, 0, NULL, ERP_BOMS},
    {"components", TR_K_ARRAY, TR_F_SERVER, 0, 0, NULL, NULL},
    {"labour_cost", TR_K_MONEY, TR_F_SERVER, 0, 0, NULL, NULL},
    {"made", TR_K_QUANTITY, TR_F_SERVER, 0, 0, NULL, NULL},
    {"cost", TR_K_MONEY, TR_F_SERVER, 0, 0, NULL, NULL},
    {"completions", TR_K_ARRAY, TR_F_SERVER, 0, 0, NULL, NULL},
    {NULL, 0, 0, 0, 0, NULL, NULL},
};

const struct erp_hold erp_wo_hold = {
    .coll = ERP_WORK_ORDERS,
    .kind = "work_order",
    .name = "work order",
    .op = "erp.wo.reserve",
    .busy = "releasing",
    .before = "planned",
    .after = "released",
    .attempt_field = "_release_attempt",
    .field = "components",
};

/* The work order's components: product, need (planned) and consumed
 * (claimed by completions so far). */
static int
components_of(const bson_t *wo, bson_oid_t *product, int64_t *need, int64_t *consumed)
{
	bson_iter_t it, arr, c;
	int n = 0;

	if (!bson_iter_init_find(&it, wo, "components") || !bson_iter_recurse(&it, &arr))
		return 0;
	while (n < ERP_MAX_BOM_COMPONENTS && bson_iter_next(&arr)) {
		need[n] = consumed[n] = 0;
		if (!bson_iter_recurse(&arr, &c))
			continue;
		while (bson_iter_next(&c)) {
			const char *k = bson_iter_key(&c);
			if (strcmp(k, "product_id") == 0 && BSON_ITER_HOLDS_OID(&c))
				bson_oid_copy(bson_iter_oid(&c), &product[n]);
			else if (strcmp(k, "quantity") == 0)
				need[n] = bson_iter_as_int64(&c);
			else if (strcmp(k, "consumed") == 0)
				consumed[n] = bson_iter_as_int64(&c);
		}
		n++;
	}
	return n;
}

static void
append_components(bson_t *set, const bson_oid_t *product, const int64_t *need,
		  const int64_t *consumed, int n)
{
	bson_t arr, item;

	BSON_APPEND_ARRAY_BEGIN(set, "components", &arr);
	for (int i = 0; i < n; i++) {
		char key[16];
		const char *k;
		bson_uint32_to_string((uint32_t)i, &k, key, sizeof(key));
		BSON_APPEND_DOCUMENT_BEGIN(&arr, k, &item);
		BSON_APPEND_OID(&item, "product_id", &product[i]);
		BSON_APPEND_INT64(&item, "quantity", need[i]);
		BSON_APPEND_INT64(&item, "consumed", consumed[i]);
		bson_append_document_end(&arr, &item);
	}
	bson_append_array_end(set, &arr);
}

static void
stock_key(char *out, size_t len, const bson_oid_t *product, const bson_oid_t *warehouse)
{
	char p[25], w[25];

	bson_oid_to_string(product, p);
	bson_oid_to_string(warehouse, w);
	snprintf(out, len, "erp.stock/%s/%s", p, w);
}

/* Plan: the active bill exploded for the quantity, every component
 * available. */
static bool
wo_hook(struct tr_ctx *c, const struct tr_resource *e, bson_t *set, const bson_t *old)
{
	struct erp_component comp[ERP_MAX_BOM_COMPONENTS];
	bson_oid_t products[ERP_MAX_BOM_COMPONENTS], product, wid, bid;
	int64_t need[ERP_MAX_BOM_COMPONENTS], zero[ERP_MAX_BOM_COMPONENTS] = {0};
	bson_t bom, p;
	bson_iter_t it, sub;
	char hex[25], cur[4] = "";
	int bad, short_ones = 0;

	(void)e;
	if (old) {
		const char *st = tr_doc_str(old, "status");
		if (!st || (strcmp(st, "planned") != 0 && strcmp(st, "released") != 0)) {
			tr_problem(c, 409, "conflict",
				   "only a planned or released work order changes");
			return false;
		}
		return true; /* its note */
	}
	if (!tr_doc_oid(set, "product_id", &product) || !tr_doc_oid(set, "warehouse_id", &wid))
		return true; /* required fields: reported already */
	int64_t made = tr_doc_int(set, "quantity", 0);
	int rc = erp_active_bom(c->db, &product, &bom);
	if (rc == TR_ENOTFOUND) {
		bson_destroy(&bom);
		tr_problem_field(c, "product_id", "has no active bill of materials");
		return false;
	}
	if (rc != TR_OK) {
		bson_destroy(&bom);
		tr_problem_from_err(c, rc);
		return false;
	}
	int n = erp_bom_components(&bom, comp);
	int64_t batch = tr_doc_int(&bom, "quantity", 0);
	int64_t labour = erp_money_amount(&bom, "labour_cost");
	tr_doc_oid(&bom, "_id", &bid);
	bson_destroy(&bom);
	if (!erp_bom_scale(comp, n, batch, made, need, &bad)) {
		char *m = tr_arena_alloc(c->req->arena, 160);
		snprintf(
		    m, 160,
		    "would need part of the smallest unit of a component (components[%d]): make "
		    "a multiple of %lld",
		    bad, (long long)batch);
		tr_problem_field(c, "quantity", m);
		return false;
	}
	/* every component there now (release reserves them) */
	bool floor = !erp_warehouse_allows_negative(c->db, &wid);
	for (int i = 0; i < n && floor; i++) {
		char key[96];
		bson_t state;
		products[i] = comp[i].product;
		stock_key(key, sizeof(key), &comp[i].product, &wid);
		if ((rc = tr_register_read(c->db, key, &state)) != TR_OK) {
			bson_destroy(&state);
			tr_problem_from_err(c, rc);
			return false;
		}
		int64_t available = erp_counter(&state, "values", "available");
		bson_destroy(&state);
		if (available < need[i]) {
			char *f = tr_arena_alloc(c->req->arena, 32),
			     *m = tr_arena_alloc(c->req->arena, 96);
			snprintf(f, 32, "components[%d]", i);
			snprintf(m, 96, "needs %lld, the warehouse has %lld available",
				 (long long)need[i], (long long)available);
			tr_problem_field(c, f, m);
			short_ones++;
		}
	}
	for (int i = 0; i < n; i++)
		products[i] = comp[i].product;
	if (short_ones) {
		c->resp->status = 409;
		c->resp->problem_slug = "insufficient-stock";
		c->resp->problem_title = "Insufficient stock";
		c->resp->problem_detail = "not every component is available: nothing was planned";
		return false;
	}
	bson_oid_to_string(&product, hex);
	if (tr_db_get(c->db, ERP_PRODUCTS, hex, &p) == TR_OK && bson_iter_init(&it, &p) &&
	    bson_iter_find_descendant(&it, "price.currency", &sub) && BSON_ITER_HOLDS_UTF8(&sub))
		snprintf(cur, sizeof(cur), "%s", bson_iter_utf8(&sub, NULL));
	bson_destroy(&p);
	int64_t labour_total = 0;
	if (!erp_muldiv_half_even(labour, made, batch, &labour_total)) {
		tr_problem_field(c, "quantity", "makes a labour cost too large");
		return false;
	}
	BSON_APPEND_OID(set, "bom_id", &bid);
	append_components(set, products, need, zero, n);
	erp_append_money(set, "labour_cost", labour_total, cur);
	BSON_APPEND_INT64(set, "made", 0);
	erp_append_money(set, "cost", 0, cur);
	bson_t none;
	BSON_APPEND_ARRAY_BEGIN(set, "completions", &none);
	bson_append_array_end(set, &none);
	return true;
}

const struct tr_resource erp_work_orders = {
    .name = "work order",
    .coll = ERP_WORK_ORDERS,
    .path = "/v1/erp/work-orders",
    .read = "erp.production.read",
    .write = "erp.production.write",
    .about = "Making a quantity of a product from the components of its active bill of "
	     "materials: planned (components checked), released (reserved), completed in part "
	     "or whole (consumed at their moving-average cost, the product received at that "
	     "cost plus labour), or cancelled (released).",
    .topic = "erp.production",
    .event = "erp.work_order",
    .fields = wo_fields,
    .sorts = wo_sorts,
    .states = &wo_states,
    .hook = wo_hook,
};

void
erp_wo_release(struct tr_ctx *c)
{
	bson_oid_t products[ERP_MAX_BOM_COMPONENTS];
	int64_t need[ERP_MAX_BOM_COMPONENTS], consumed[ERP_MAX_BOM_COMPONENTS];
	bson_t wo = BSON_INITIALIZER, done = BSON_INITIALIZER;

	bson_destroy(&wo);
	if (!tr_res_load(c, &erp_work_orders, tr_param(c, 0), &wo))
		goto out;
	if (!tr_res_move_ok(c, &erp_work_orders, tr_doc_str(&wo, "status"), "releasing", "release",
			    NULL, &wo))
		goto out;
	int n = components_of(&wo, products, need, consumed);
	if (erp_hold_all(c, &erp_wo_hold, &wo, products, need, n, &done)) {
		tr_res_emit(c, &erp_work_orders, "erp.work_order.released", &done);
		tr_reply_resource(c, 200, &done);
	}
out:
	bson_destroy(&wo);
	bson_destroy(&done);
}

/* ---- completion ---- */

/* A completion: its id, quantity and share of components and labour. */
struct completion {
	char id[25], wo[25], currency[4];
	bson_oid_t product, warehouse, components[ERP_MAX_BOM_COMPONENTS];
	int64_t quantity, use[ERP_MAX_BOM_COMPONENTS], labour;
	int64_t cost[ERP_MAX_BOM_COMPONENTS]; /* of each component's share */
	int n;
};

static bool
pending_has(const bson_t *wo, const char *cid, int64_t *quantity, int64_t *labour)
{
	bson_iter_t it, arr, item;

	if (!bson_iter_init_find(&it, wo, "_pending_completions") || !bson_iter_recurse(&it, &arr))
		return false;
	while (bson_iter_next(&arr)) {
		const char *id = NULL;
		int64_t q = 0, l = 0;
		if (!bson_iter_recurse(&arr, &item))
			continue;
		while (bson_iter_next(&item)) {
			const char *k = bson_iter_key(&item);
			if (strcmp(k, "id") == 0 && BSON_ITER_HOLDS_UTF8(&item))
				id = bson_iter_utf8(&item, NULL);
			else if (strcmp(k, "quantity") == 0)
				q = bson_iter_as_int64(&item);
			else if (strcmp(k, "labour") == 0)
				l = bson_iter_as_int64(&item);
		}
		if (id && strcmp(id, cid) == 0) {
			*quantity = q;
			*labour = l;
			return true;
		}
	}
	return false;
}

/* The completion's share of each component: need x q / planned, whole. */
static bool
share_of(const bson_t *wo, struct completion *k, int *bad)
{
	bson_oid_t products[ERP_MAX_BOM_COMPONENTS];
	int64_t need[ERP_MAX_BOM_COMPONENTS], consumed[ERP_MAX_BOM_COMPONENTS];
	int64_t planned = tr_doc_int(wo, "quantity", 0);

	k->n = components_of(wo, products, need, consumed);
	for (int i = 0; i < k->n; i++) {
		__int128 v = (__int128)need[i] * k->quantity;
		k->components[i] = products[i];
		if (planned <= 0 || v % planned != 0) {
			*bad = i;
			return false;
		}
		k->use[i] = (int64_t)(v / planned);
	}
	return true;
}

/* Claims the completion on the work order: `made` and each component's
 * consumed grow by its share, it is named pending with its labour (the
 * labour of made-after minus that of made-before). TR_ELIMIT after a 409
 * when it takes more than remains or the order is not released. */
static int
claim(struct tr_ctx *c, struct completion *k, bson_t *wo)
{
	for (int attempt = 0; attempt < 20; attempt++) {
		bson_oid_t products[ERP_MAX_BOM_COMPONENTS];
		int64_t need[ERP_MAX_BOM_COMPONENTS], consumed[ERP_MAX_BOM_COMPONENTS], q, l;
		bson_t set = BSON_INITIALIZER, pend, item, out;
		bson_iter_t it, arr;
		int rc;

		if (pending_has(wo, k->id, &q, &l)) { /* claimed by an earlier attempt */
			k->labour = l;
			bson_destroy(&set);
			return TR_OK;
		}
		const char *st = tr_doc_str(wo, "status");
		int64_t planned = tr_doc_int(wo, "quantity", 0), made = tr_doc_int(wo, "made", 0);
		if (!st || strcmp(st, "released") != 0) {
			char *m = tr_arena_alloc(c->req->arena, 96);
			snprintf(m, 96, "the work order is %s: only a released one is completed",
				 st ? st : "gone");
			tr_problem(c, 409, "conflict", m);
			bson_destroy(&set);
			return TR_ELIMIT;
		}
		if (k->quantity > planned - made) {
			char *m = tr_arena_alloc(c->req->arena, 64);
			snprintf(m, 64, "%lld remains to make", (long long)(planned - made));
			tr_problem(c, 409, "conflict", "more than remains to make");
			tr_problem_field(c, "quantity", m);
			bson_destroy(&set);
			return TR_ELIMIT;
		}
		int64_t labour = erp_money_amount(wo, "labour_cost"), before, after;
		if (!erp_muldiv_half_even(labour, made, planned, &before) ||
		    !erp_muldiv_half_even(labour, made + k->quantity, planned, &after)) {
			bson_destroy(&set);
			return TR_EINTERNAL;
		}
		k->labour = after - before;
		int n = components_of(wo, products, need, consumed);
		for (int i = 0; i < n && i < k->n; i++)
			consumed[i] += k->use[i];
		append_components(&set, products, need, consumed, n);
		BSON_APPEND_INT64(&set, "made", made + k->quantity);
		BSON_APPEND_ARRAY_BEGIN(&set, "_pending_completions", &pend);
		int np = 0;
		char key[16];
		const char *kk;
		if (bson_iter_init_find(&it, wo, "_pending_completions") &&
		    bson_iter_recurse(&it, &arr))
			while (bson_iter_next(&arr)) {
				bson_uint32_to_string((uint32_t)np++, &kk, key, sizeof(key));
				bson_append_iter(&pend, kk, -1, &arr);
			}
		bson_uint32_to_string((uint32_t)np, &kk, key, sizeof(key));
		BSON_APPEND_DOCUMENT_BEGIN(&pend, kk, &item);
		BSON_APPEND_UTF8(&item, "id", k->id);
		BSON_APPEND_INT64(&item, "quantity", k->quantity);
		BSON_APPEND_INT64(&item, "labour", k->labour);
		bson_append_document_end(&pend, &item);
		bson_append_array_end(&set, &pend);
		rc = tr_db_update(c->db, ERP_WORK_ORDERS, k->wo, tr_doc_int(wo, "version", 0), &set,
				  NULL, &out);
		bson_destroy(&set);
		if (rc == TR_OK) {
			bson_destroy(wo);
			bson_copy_to(&out, wo);
		}
		bson_destroy(&out);
		if (rc != TR_EVERSION)
			return rc;
		bson_destroy(wo);
		if ((rc = tr_db_get(c->db, ERP_WORK_ORDERS, k->wo, wo)) != TR_OK)
			return rc;
	}
	return TR_EBUSY;
}

/* The completion recorded on the work order, no longer pending; completed
 * when all was made and nothing is pending. */
static int
record(struct tr_db *db, const struct completion *k, int64_t value, bson_t *out, bool *done)
{
	for (int attempt = 0; attempt < 20; attempt++) {
		bson_t wo, set = BSON_INITIALIZER, pend, list, item;
		bson_iter_t it, arr;
		int64_t q, l;
		int rc = tr_db_get(db, ERP_WORK_ORDERS, k->wo, &wo);
		if (rc != TR_OK || !pending_has(&wo, k->id, &q, &l)) {
			if (rc == TR_OK) { /* recorded already */
				bson_destroy(out);
				bson_copy_to(&wo, out);
			}
			*done = false;
			bson_destroy(&wo);
			bson_destroy(&set);
			return rc;
		}
		int np = 0, nl = 0;
		char key[16];
		const char *kk;
		BSON_APPEND_ARRAY_BEGIN(&set, "_pending_completions", &pend);
		if (bson_iter_init_find(&it, &wo, "_pending_completions") &&
		    bson_iter_recurse(&it, &arr))
			while (bson_iter_next(&arr)) {
				bson_iter_t f;
				bool mine = false;
				if (bson_iter_recurse(&arr, &f) && bson_iter_find(&f, "id") &&
				    BSON_ITER_HOLDS_UTF8(&f))
					mine = strcmp(bson_iter_utf8(&f, NULL), k->id) == 0;
				if (!mine) {
					bson_uint32_to_string((uint32_t)np++, &kk, key,
							      sizeof(key));
					bson_append_iter(&pend, kk, -1, &arr);
				}
			}
		bson_append_array_end(&set, &pend);
		BSON_APPEND_ARRAY_BEGIN(&set, "completions", &list);
		if (bson_iter_init_find(&it, &wo, "completions") && bson_iter_recurse(&it, &arr))
			while (bson_iter_next(&arr)) {
				bson_uint32_to_string((uint32_t)nl++, &kk, key, sizeof(key));
				bson_append_iter(&list, kk, -1, &arr);
			}
		bson_uint32_to_string((uint32_t)nl, &kk, key, sizeof(key));
		BSON_APPEND_DOCUMENT_BEGIN(&list, kk, &item);
		BSON_APPEND_UTF8(&item, "id", k->id);
		BSON_APPEND_INT64(&item, "quantity", k->quantity);
		erp_append_money(&item, "cost", value, k->currency);
		erp_append_money(&item, "labour", k->labour, k->currency);
		bson_t used, one;
		BSON_APPEND_ARRAY_BEGIN(&item, "components", &used);
		for (int i = 0; i < k->n; i++) {
			char ik[16];
			const char *ikk;
			bson_uint32_to_string((uint32_t)i, &ikk, ik, sizeof(ik));
			BSON_APPEND_DOCUMENT_BEGIN(&used, ikk, &one);
			BSON_APPEND_OID(&one, "product_id", &k->components[i]);
			BSON_APPEND_INT64(&one, "quantity", k->use[i]);
			erp_append_money(&one, "cost", k->cost[i], k->currency);
			bson_append_document_end(&used, &one);
		}
		bson_append_array_end(&item, &used);
		BSON_APPEND_DATE_TIME(&item, "at", tr_now_ms());
		bson_append_document_end(&list, &item);
		bson_append_array_end(&set, &list);
		erp_append_money(&set, "cost", erp_money_amount(&wo, "cost") + value, k->currency);
		*done = np == 0 && tr_doc_int(&wo, "made", 0) == tr_doc_int(&wo, "quantity", -1) &&
			strcmp(tr_doc_str(&wo, "status") ? tr_doc_str(&wo, "status") : "",
			       "released") == 0;
		if (*done)
			BSON_APPEND_UTF8(&set, "status", "completed");
		bson_destroy(out);
		rc = tr_db_update(db, ERP_WORK_ORDERS, k->wo, tr_doc_int(&wo, "version", 0), &set,
				  NULL, out);
		bson_destroy(&wo);
		bson_destroy(&set);
		if (rc != TR_EVERSION)
			return rc;
	}
	return TR_EBUSY;
}

/* What a claimed completion still has to do, each step once by its id:
 * the components leave, the product arrives, the entry is posted, the
 * completion is recorded. */
static int
finish(struct tr_db *db, struct completion *k, bson_t *out, bool *done)
{
	char key[96], op[96];
	int64_t cost = 0;
	bson_t mv;
	bool replayed;
	int rc;

	for (int i = 0; i < k->n; i++) {
		k->cost[i] = 0;
		if (k->use[i] == 0)
			continue;
		stock_key(key, sizeof(key), &k->components[i], &k->warehouse);
		snprintf(op, sizeof(op), "erp.wo.consume:%s:%d", k->id, i);
		struct tr_reg_delta d[] = {{"on_hand", 0}, {"reserved", 0}, {"value", 0}};
		struct erp_reckoning r = {.q = k->use[i]};
		struct tr_reg_post post = {.key = key,
					   .op_id = op,
					   .deltas = d,
					   .ndeltas = 3,
					   .reckon = erp_at_average,
					   .reckon_arg = &r};
		rc = tr_register_post(db, &post, &mv, &replayed);
		k->cost[i] = rc == TR_OK ? -erp_counter(&mv, "deltas", "value") : 0;
		cost += k->cost[i];
		bson_destroy(&mv);
		if (rc != TR_OK)
			return rc;
		erp_step_pause();
	}
	int64_t value = cost + k->labour;
	if ((rc = erp_stock_slot(db, &k->product, &k->warehouse)) != TR_OK)
		return rc;
	stock_key(key, sizeof(key), &k->product, &k->warehouse);
	snprintf(op, sizeof(op), "erp.wo.make:%s", k->id);
	struct tr_reg_delta in[] = {
	    {"on_hand", k->quantity}, {"available", k->quantity}, {"value", value}};
	struct tr_reg_post made = {.key = key, .op_id = op, .deltas = in, .ndeltas = 3};
	rc = tr_register_post(db, &made, &mv, &replayed);
	bson_destroy(&mv);
	if (rc != TR_OK)
		return rc;
	erp_step_pause();
	/* components to finished goods, the labour applied */
	struct erp_line lines[3] = {{"1300", value, 0}, {"1300", 0, cost}, {"6000", 0, k->labour}};
	char memo[96];
	snprintf(memo, sizeof(memo), "work order %s: %lld made", k->wo, (long long)k->quantity);
	if ((rc = erp_post_lines(db, k->id, memo, k->currency, "production", lines, 3)) != TR_OK)
		return rc;
	return record(db, k, value, out, done);
}

static void
completion_of(const bson_t *wo, struct completion *k)
{
	char *cur = k->currency;
	bson_iter_t it, sub;

	tr_doc_oid(wo, "product_id", &k->product);
	tr_doc_oid(wo, "warehouse_id", &k->warehouse);
	cur[0] = '\0';
	if (bson_iter_init(&it, wo) &&
	    bson_iter_find_descendant(&it, "labour_cost.currency", &sub) &&
	    BSON_ITER_HOLDS_UTF8(&sub))
		snprintf(cur, sizeof(k->currency), "%s", bson_iter_utf8(&sub, NULL));
}

static void
emit_completion(struct tr_ctx *c, const char *tenant, const bson_t *wo, bool done)
{
	bson_oid_t id;
	char hex[25];
	bson_t data = BSON_INITIALIZER;

	if (c) {
		tr_res_emit(c, &erp_work_orders, "erp.work_order.produced", wo);
		if (done)
			tr_res_emit(c, &erp_work_orders, "erp.work_order.completed", wo);
		bson_destroy(&data);
		return;
	}
	tr_doc_oid(wo, "_id", &id);
	bson_oid_to_string(&id, hex);
	tr_render_resource(wo, &data);
	tr_emit_background(tenant, "erp.production", "erp.work_order.produced", hex, NULL, &data);
	if (done)
		tr_emit_background(tenant, "erp.production", "erp.work_order.completed", hex, NULL,
				   &data);
	bson_destroy(&data);
}

void
erp_wo_complete(struct tr_ctx *c)
{
	static const char *const fields[] = {"quantity", NULL};
	struct completion *k = tr_arena_alloc(c->req->arena, sizeof(*k));
	bson_t wo = BSON_INITIALIZER, out = BSON_INITIALIZER;
	bson_oid_t oid;
	bson_iter_t it;
	char payload[160];
	int bad, rc;
	bool done = false;

	bson_destroy(&wo);
	if (!k) {
		tr_problem_from_err(c, TR_ENOMEM);
		goto out;
	}
	memset(k, 0, sizeof(*k));
	if (!tr_body_only(c, fields))
		goto out;
	if (!bson_iter_init_find(&it, &c->req->body, "quantity") ||
	    !(BSON_ITER_HOLDS_INT32(&it) || BSON_ITER_HOLDS_INT64(&it)) ||
	    bson_iter_as_int64(&it) <= 0 || bson_iter_as_int64(&it) > QTY_MAX) {
		tr_problem_field(c, "quantity",
				 "must be a whole number of the product's smallest unit, above 0");
		goto out;
	}
	k->quantity = bson_iter_as_int64(&it);
	if (!tr_res_load(c, &erp_work_orders, tr_param(c, 0), &wo))
		goto out;
	tr_doc_oid(&wo, "_id", &oid);
	bson_oid_to_string(&oid, k->wo);
	completion_of(&wo, k);
	erp_request_id(c, "completion", k->wo, k->id);
	if (!share_of(&wo, k, &bad)) {
		char *m = tr_arena_alloc(c->req->arena, 160);
		snprintf(m, 160,
			 "would need part of the smallest unit of components[%d]: complete a "
			 "quantity that uses whole units",
			 bad);
		tr_problem_field(c, "quantity", m);
		goto out;
	}
	/* a writer that dies from here on leaves the completion to the job */
	snprintf(payload, sizeof(payload), "{\"order\":\"%s\",\"completion\":\"%s\"}", k->wo,
		 k->id);
	if ((rc = erp_schedule_settle(c->req->principal.tenant_hex, payload)) != TR_OK) {
		tr_problem_from_err(c, rc);
		goto out;
	}
	if ((rc = claim(c, k, &wo)) != TR_OK) {
		if (rc != TR_ELIMIT)
			tr_problem_from_err(c, rc);
		goto out;
	}
	if ((rc = finish(c->db, k, &out, &done)) != TR_OK) {
		erp_unfinished(c, rc);
		goto out;
	}
	emit_completion(c, NULL, &out, done);
	tr_reply_resource(c, 200, &out);
out:
	bson_destroy(&wo);
	bson_destroy(&out);
}

int
erp_wo_completion_settle(struct tr_db *db, const char *tenant, const bson_t *payload, char *err,
			 size_t errlen)
{
	struct completion *k = calloc(1, sizeof(*k));
	const char *id = tr_doc_str(payload, "order"), *cid = tr_doc_str(payload, "completion");
	bson_t wo = BSON_INITIALIZER, out = BSON_INITIALIZER;
	int64_t q = 0, l = 0;
	int rc = TR_OK, bad;
	bool done = false;

	if (!k) {
		rc = TR_ENOMEM;
		goto out;
	}
	if (!id || !tr_is_object_id(id) || !cid || !tr_is_object_id(cid))
		goto out; /* not a completion's: nothing to do */
	bson_destroy(&wo);
	if ((rc = tr_db_get(db, ERP_WORK_ORDERS, id, &wo)) != TR_OK ||
	    !pending_has(&wo, cid, &q, &l))
		goto out; /* never claimed, or finished */
	snprintf(k->id, sizeof(k->id), "%s", cid);
	snprintf(k->wo, sizeof(k->wo), "%s", id);
	k->quantity = q;
	k->labour = l;
	completion_of(&wo, k);
	if (!share_of(&wo, k, &bad)) {
		rc = TR_EINTERNAL;
		goto out;
	}
	tr_warn("erp: completion %s of work order %s was left halfway: finishing it", cid, id);
	if ((rc = finish(db, k, &out, &done)) == TR_OK)
		emit_completion(NULL, tenant, &out, done);
out:
	if (rc == TR_ENOTFOUND)
		rc = TR_OK;
	if (rc != TR_OK)
		snprintf(err, errlen, "settling completion %s: %s", cid ? cid : "?",
			 tr_strerror(rc));
	free(k);
	bson_destroy(&wo);
	bson_destroy(&out);
	return rc;
}

/* ---- cancel ---- */

void
erp_wo_cancel(struct tr_ctx *c)
{
	bson_oid_t products[ERP_MAX_BOM_COMPONENTS], oid, wid;
	int64_t need[ERP_MAX_BOM_COMPONENTS], consumed[ERP_MAX_BOM_COMPONENTS];
	bson_t wo = BSON_INITIALIZER, stored = BSON_INITIALIZER, done = BSON_INITIALIZER;
	bson_iter_t it, arr;
	char id[25];
	int rc;

	bson_destroy(&wo);
	if (!tr_res_load(c, &erp_work_orders, tr_param(c, 0), &wo))
		goto out;
	tr_doc_oid(&wo, "_id", &oid);
	bson_oid_to_string(&oid, id);
	tr_doc_oid(&wo, "warehouse_id", &wid);
	const char *status = tr_doc_str(&wo, "status");
	bool unfinished = status && strcmp(status, "cancelled") == 0 &&
			  !tr_doc_int(&wo, "_released", 0) && bson_has_field(&wo, "_reservations");
	if (!unfinished) {
		if (!tr_res_move_ok(c, &erp_work_orders, status, "cancelled", "cancel", NULL, &wo))
			goto out;
		if (bson_iter_init_find(&it, &wo, "_pending_completions") &&
		    bson_iter_recurse(&it, &arr) && bson_iter_next(&arr)) {
			tr_problem(c, 409, "conflict", "a completion is under way: ask again");
			goto out;
		}
		bson_t set = BSON_INITIALIZER;
		BSON_APPEND_UTF8(&set, "status", "cancelled");
		bson_destroy(&stored);
		rc = tr_db_update(c->db, ERP_WORK_ORDERS, id, tr_doc_int(&wo, "version", 0), &set,
				  NULL, &stored);
		bson_destroy(&set);
		if (rc != TR_OK) {
			if (rc == TR_EVERSION)
				tr_problem(c, 409, "conflict",
					   "the work order changed meanwhile; read it again");
			else
				tr_problem_from_err(c, rc);
			goto out;
		}
	} else {
		bson_destroy(&stored);
		bson_copy_to(&wo, &stored);
	}
	/* what it still holds reserved, once per component */
	int n = bson_has_field(&stored, "_reservations")
		    ? components_of(&stored, products, need, consumed)
		    : 0;
	for (int i = 0; i < n; i++) {
		int64_t rest = need[i] - consumed[i];
		char key[96], op[96];
		bson_t mv;
		bool replayed;
		if (rest <= 0)
			continue;
		stock_key(key, sizeof(key), &products[i], &wid);
		snprintf(op, sizeof(op), "erp.wo.release:%s:%d", id, i);
		struct tr_reg_delta d[] = {{"reserved", -rest}, {"available", rest}};
		struct tr_reg_post post = {.key = key, .op_id = op, .deltas = d, .ndeltas = 2};
		rc = tr_register_post(c->db, &post, &mv, &replayed);
		bson_destroy(&mv);
		if (rc != TR_OK) {
			erp_unfinished(c, rc);
			goto out;
		}
	}
	bson_t released = BSON_INITIALIZER;
	BSON_APPEND_INT32(&released, "_released", 1);
	rc = tr_db_update(c->db, ERP_WORK_ORDERS, id, tr_doc_int(&stored, "version", 0), &released,
			  NULL, &done);
	bson_destroy(&released);
	if (rc != TR_OK && rc != TR_EVERSION) {
		erp_unfinished(c, rc);
		goto out;
	}
	if (unfinished) {
		tr_problem(c, 409, "conflict", "the work order is cancelled");
		goto out;
	}
	tr_res_emit(c, &erp_work_orders, "erp.work_order.cancelled", &stored);
	tr_reply_resource(c, 200, rc == TR_OK ? &done : &stored);
out:
	bson_destroy(&wo);
	bson_destroy(&stored);
	bson_destroy(&done);
}
