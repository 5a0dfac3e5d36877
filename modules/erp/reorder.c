/* Reorder rules (issue 12 part 4): per product and warehouse, the stock
 * below which planning (planning.c) drafts a purchase order, how much it
 * orders at a time, from whom and at what unit cost. A declaration on the
 * resource engine; one rule per product and warehouse (a unique index:
 * 409 in any process), and those two are fixed once set.
 *
 * reorder_point and reorder_quantity are quantities in the product's
 * smallest unit (uom_scale), as stock is; unit_cost is money in the
 * product's price currency, the currency its stock is valued in and so
 * the currency of any purchase order of it (purchasing.c). Creating a
 * rule makes sure its tenant's daily planning job is scheduled. */
#include <string.h>

#include "db.h"
#include "erp.h"
#include "log.h"

static const char *const rule_sorts[] = {"-created_at", "created_at", NULL};

static const struct tr_field rule_fields[] = {
    {"product_id", TR_K_REF, TR_F_REQUIRED | TR_F_FILTER | TR_F_FIXED, 0, 0, NULL, ERP_PRODUCTS},
    {"warehouse_id", TR_K_REF, TR_F_REQUIRED | TR_F_FILTER | TR_F_FIXED, 0, 0, NULL,
     ERP_WAREHOUSES},
    {"supplier_id", TR_K_REF, TR_F_REQUIRED | TR_F_FILTER, 0, 0, NULL, ERP_SUPPLIERS},
    {"reorder_point", TR_K_QUANTITY, TR_F_REQUIRED, 0, ERP_PLANNING_MAX, NULL, NULL},
    {"reorder_quantity", TR_K_QUANTITY, TR_F_REQUIRED, 1, ERP_PLANNING_MAX, NULL, NULL},
    {"unit_cost", TR_K_MONEY, TR_F_REQUIRED, 0, ERP_PLANNING_MAX, NULL, NULL},
    {NULL, 0, 0, 0, 0, NULL, NULL},
};

/* The unit cost is in the product's price currency: a purchase order of
 * the product is (its stock is valued in it). */
static bool
rule_hook(struct tr_ctx *c, const struct tr_resource *e, bson_t *set, const bson_t *old)
{
	bson_t product = BSON_INITIALIZER;
	bson_iter_t it, sub;
	bson_oid_t pid;
	char hex[25];
	bool ok = true;

	(void)e;
	if (!bson_has_field(set, "unit_cost"))
		return true; /* the currency was checked when it was set */
	if (!tr_doc_oid(set, "product_id", &pid) && !(old && tr_doc_oid(old, "product_id", &pid)))
		return true; /* on create a missing product is the field's error already */
	bson_oid_to_string(&pid, hex);
	bson_destroy(&product);
	int rc = tr_db_get(c->db, ERP_PRODUCTS, hex, &product);
	if (rc != TR_OK) {
		if (rc == TR_ENOTFOUND)
			tr_problem_field(c, "product_id", "names a record that does not exist");
		else
			tr_problem_from_err(c, rc);
		ok = false;
	} else {
		const char *want = NULL, *got = NULL;
		if (bson_iter_init(&it, &product) &&
		    bson_iter_find_descendant(&it, "price.currency", &sub) &&
		    BSON_ITER_HOLDS_UTF8(&sub))
			want = bson_iter_utf8(&sub, NULL);
		if (bson_iter_init(&it, set) &&
		    bson_iter_find_descendant(&it, "unit_cost.currency", &sub) &&
		    BSON_ITER_HOLDS_UTF8(&sub))
			got = bson_iter_utf8(&sub, NULL);
		if (!want || !got || strcmp(want, got) != 0) {
			tr_problem_field(c, "unit_cost",
					 "must be in the product's price currency (its stock is "
					 "valued in it)");
			ok = false;
		}
	}
	bson_destroy(&product);
	return ok;
}

/* The first rule of a tenant starts its daily planning; later ones find
 * it running. A rule is stored either way: a chain that could not be
 * started now is started by the next rule or run. */
static void
rule_saved(struct tr_ctx *c, const bson_t *stored, const bson_t *old)
{
	(void)stored;
	if (old)
		return;
	int rc = erp_planning_ensure_job(c->db, c->req->principal.tenant_hex);
	if (rc != TR_OK)
		tr_warn("erp: tenant %s: the daily planning job could not be scheduled: %s",
			c->req->principal.tenant_hex, tr_strerror(rc));
}

const struct tr_resource erp_reorder_rules = {
    .name = "reorder rule",
    .coll = ERP_REORDER_RULES,
    .path = "/v1/erp/reorder-rules",
    .read = "erp.purchasing.read",
    .write = "erp.purchasing.write",
    .about = "When a product's available stock in a warehouse plus what is on order for it "
	     "falls below reorder_point, planning (POST /v1/erp/planning/run, and a daily job) "
	     "drafts a purchase order from the supplier of reorder_quantity (or the smallest "
	     "multiple of it that reaches the point) at unit_cost. One rule per product and "
	     "warehouse (409).",
    .topic = "erp.purchasing",
    .event = "erp.reorder_rule",
    .fields = rule_fields,
    .sorts = rule_sorts,
    .hook = rule_hook,
    .saved = rule_saved,
    .deletable = true,
};
