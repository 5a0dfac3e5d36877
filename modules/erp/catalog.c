/* Products and warehouses: declarations on the resource engine. DELETE
 * deactivates both (moves, orders and the ledger refer to them). */
#include <string.h>

#include "db.h"
#include "erp.h"

static const char *const product_sorts[] = {"-created_at", "created_at", "sku", "name", NULL};
static const char *const warehouse_sorts[] = {"-created_at", "created_at", "code", NULL};

static const struct tr_field product_fields[] = {
    {"sku", TR_K_LINE, TR_F_REQUIRED | TR_F_FILTER | TR_F_NARROW, 1, 64, NULL, NULL},
    {"name", TR_K_LINE, TR_F_REQUIRED, 1, 200, NULL, NULL},
    {"uom", TR_K_LINE, 0, 1, 16, NULL, NULL},
    /* changing it would change the meaning of every stored quantity */
    {"uom_scale", TR_K_INT, TR_F_FIXED, 0, 6, NULL, NULL},
    {"price", TR_K_MONEY, TR_F_REQUIRED, 0, 1000000000000LL, NULL, NULL},
    {"tax_rate_bp", TR_K_INT, 0, 0, 10000, NULL, NULL},
    {"active", TR_K_BOOL, TR_F_FILTER, 0, 0, NULL, NULL},
    /* its active bill of materials (boms.c) */
    {"bom_id", TR_K_REF, TR_F_SERVER, 0, 0, NULL, ERP_BOMS},
    {NULL, 0, 0, 0, 0, NULL, NULL},
};

/* Defaults on create; the price's currency is the stock value's, so it
 * stays once set. */
static bool
product_hook(struct tr_ctx *c, const struct tr_resource *e, bson_t *set, const bson_t *old)
{
	bson_iter_t it, was, sub, prev;

	(void)e;
	if (!old) {
		if (!bson_has_field(set, "uom"))
			BSON_APPEND_UTF8(set, "uom", "pcs");
		if (!bson_has_field(set, "uom_scale"))
			BSON_APPEND_INT32(set, "uom_scale", 0);
		if (!bson_has_field(set, "tax_rate_bp"))
			BSON_APPEND_INT32(set, "tax_rate_bp", 0);
		if (!bson_has_field(set, "active"))
			BSON_APPEND_BOOL(set, "active", true);
		return true;
	}
	if (bson_iter_init(&it, set) && bson_iter_find_descendant(&it, "price.currency", &sub) &&
	    bson_iter_init(&was, old) && bson_iter_find_descendant(&was, "price.currency", &prev) &&
	    strcmp(bson_iter_utf8(&sub, NULL), bson_iter_utf8(&prev, NULL)) != 0) {
		tr_problem_field(c, "price", "keeps its currency: stock is valued in it");
		return false;
	}
	return true;
}

const struct tr_resource erp_products = {
    .name = "product",
    .coll = ERP_PRODUCTS,
    .path = "/v1/erp/products",
    .read = "erp.products.read",
    .write = "erp.products.write",
    .about = "Something the tenant stocks or sells. Quantities are integers in the smallest "
	     "unit: with uom kg and uom_scale 3, 1250 is 1.250 kg. DELETE deactivates.",
    .topic = "erp.stock",
    .event = "erp.product",
    .fields = product_fields,
    .sorts = product_sorts,
    .hook = product_hook,
    .retire = "active",
};

static const struct tr_field warehouse_fields[] = {
    {"code", TR_K_LINE, TR_F_REQUIRED | TR_F_FIXED | TR_F_FILTER | TR_F_NARROW, 1, 32, NULL, NULL},
    {"name", TR_K_LINE, TR_F_REQUIRED, 1, 200, NULL, NULL},
    {"allow_negative", TR_K_BOOL, 0, 0, 0, NULL, NULL},
    {"active", TR_K_BOOL, TR_F_FILTER, 0, 0, NULL, NULL},
    {NULL, 0, 0, 0, 0, NULL, NULL},
};

static bool
warehouse_hook(struct tr_ctx *c, const struct tr_resource *e, bson_t *set, const bson_t *old)
{
	(void)c;
	(void)e;
	if (!old && !bson_has_field(set, "allow_negative"))
		BSON_APPEND_BOOL(set, "allow_negative", false);
	if (!old && !bson_has_field(set, "active"))
		BSON_APPEND_BOOL(set, "active", true);
	return true;
}

const struct tr_resource erp_warehouses = {
    .name = "warehouse",
    .coll = ERP_WAREHOUSES,
    .path = "/v1/erp/warehouses",
    .read = "erp.stock.read",
    .write = "erp.products.write",
    .about = "A place stock is kept. Unless allow_negative, no move may take its available "
	     "stock below zero. DELETE deactivates.",
    .topic = "erp.stock",
    .event = "erp.warehouse",
    .fields = warehouse_fields,
    .sorts = warehouse_sorts,
    .hook = warehouse_hook,
    .retire = "active",
};
