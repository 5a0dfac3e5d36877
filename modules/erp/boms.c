/* Bills of materials (issue "people and production"): what a product is
 * made of, in exact quantities.
 *
 * A bill makes `quantity` of its product (in the product's smallest unit,
 * a whole unit by default) from components, each an exact quantity in its
 * own smallest unit, plus a labour cost per batch. Bills are versions:
 * never changed, a new one is a new version (its `revision`, numbered per
 * product by a register, once per bill). The product names its active bill (bom_id):
 * a new bill becomes it, POST /v1/erp/boms/{id}/activate makes an older
 * one it again, each by a version-checked write of the product, so a
 * product has one active bill in any process.
 *
 * A component may have its own active bill (multi-level). A bill whose
 * components lead back to its product through active bills is refused
 * (422 naming the loop, by SKU), when created and when activated.
 * Explosion (GET .../explosion?quantity=) walks the active bills down to
 * what has none: each level's quantities are component x made / batch and
 * must come out whole - a quantity that would need part of a component's
 * smallest unit is refused naming it, never rounded. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "erp.h"
#include "json.h"
#include "register.h"

#define QTY_MAX 1000000000000LL
#define LOOP_NODES 2000

static const char *const bom_sorts[] = {"-created_at", "created_at", NULL};

static const struct tr_field bom_fields[] = {
    {"product_id", TR_K_REF, TR_F_REQUIRED | TR_F_FILTER | TR_F_NARROW, 0, 0, NULL, ERP_PRODUCTS},
    {"quantity", TR_K_QUANTITY, 0, 1, QTY_MAX, NULL, NULL},
    {"components", TR_K_ARRAY, TR_F_REQUIRED, 0, 0, NULL, NULL},
    {"labour_cost", TR_K_MONEY, 0, 0, QTY_MAX, NULL, NULL},
    {"note", TR_K_LINE, TR_F_NULLABLE, 1, 200, NULL, NULL},
    /* the bill's number among its product's (the record's own "version"
     * counts its changes, as every record's does) */
    {"revision", TR_K_INT, TR_F_SERVER, 0, 0, NULL, NULL},
    {NULL, 0, 0, 0, 0, NULL, NULL},
};

int
erp_bom_components(const bson_t *bom, struct erp_component *out)
{
	bson_iter_t it, arr, c;
	int n = 0;

	if (!bson_iter_init_find(&it, bom, "components") || !bson_iter_recurse(&it, &arr))
		return 0;
	while (n < ERP_MAX_BOM_COMPONENTS && bson_iter_next(&arr)) {
		if (!bson_iter_recurse(&arr, &c))
			continue;
		out[n].quantity = 0;
		while (bson_iter_next(&c)) {
			if (strcmp(bson_iter_key(&c), "product_id") == 0 && BSON_ITER_HOLDS_OID(&c))
				bson_oid_copy(bson_iter_oid(&c), &out[n].product);
			else if (strcmp(bson_iter_key(&c), "quantity") == 0)
				out[n].quantity = bson_iter_as_int64(&c);
		}
		n++;
	}
	return n;
}

bool
erp_bom_scale(const struct erp_component *comp, int n, int64_t batch, int64_t made, int64_t *need,
	      int *bad)
{
	for (int i = 0; i < n; i++) {
		__int128 q = (__int128)comp[i].quantity * made;
		if (batch <= 0 || q % batch != 0 || q / batch > QTY_MAX) {
			*bad = i;
			return false;
		}
		need[i] = (int64_t)(q / batch);
	}
	return true;
}

int
erp_active_bom(struct tr_db *db, const bson_oid_t *product, bson_t *bom)
{
	bson_t p;
	bson_oid_t bid;
	char hex[25];
	int rc;

	bson_init(bom);
	bson_oid_to_string(product, hex);
	if ((rc = tr_db_get(db, ERP_PRODUCTS, hex, &p)) != TR_OK) {
		bson_destroy(&p);
		return rc;
	}
	bool has = tr_doc_oid(&p, "bom_id", &bid);
	bson_destroy(&p);
	if (!has)
		return TR_ENOTFOUND;
	bson_oid_to_string(&bid, hex);
	bson_destroy(bom);
	return tr_db_get(db, ERP_BOMS, hex, bom);
}

/* ---- loops ---- */

struct walk {
	struct tr_db *db;
	const bson_oid_t *target;
	bson_oid_t path[ERP_BOM_DEPTH + 2];
	int depth, nodes, rc;
	bool too_deep;
};

/* Does `from`, through active bills, lead to w->target? path[0..depth]
 * holds the way when it does. */
static bool
leads_back(struct walk *w, const bson_oid_t *from)
{
	struct erp_component comp[ERP_MAX_BOM_COMPONENTS];
	bson_t bom;

	w->path[w->depth] = *from;
	if (bson_oid_equal(from, w->target))
		return true;
	if (w->depth >= ERP_BOM_DEPTH || ++w->nodes > LOOP_NODES) {
		w->too_deep = true;
		return false;
	}
	int rc = erp_active_bom(w->db, from, &bom);
	if (rc != TR_OK) {
		bson_destroy(&bom);
		if (rc != TR_ENOTFOUND)
			w->rc = rc;
		return false;
	}
	int n = erp_bom_components(&bom, comp);
	bson_destroy(&bom);
	for (int i = 0; i < n && w->rc == TR_OK && !w->too_deep; i++) {
		w->depth++;
		if (leads_back(w, &comp[i].product))
			return true;
		w->depth--;
	}
	return false;
}

static const char *
sku_of(struct tr_ctx *c, const bson_oid_t *product)
{
	bson_t p;
	char hex[25];
	const char *out = NULL;

	bson_oid_to_string(product, hex);
	if (tr_db_get(c->db, ERP_PRODUCTS, hex, &p) == TR_OK && tr_doc_str(&p, "sku"))
		out = tr_arena_strdup(c->req->arena, tr_doc_str(&p, "sku"));
	bson_destroy(&p);
	if (!out) {
		char *h = tr_arena_alloc(c->req->arena, 25);
		memcpy(h, hex, 25);
		out = h;
	}
	return out;
}

bool
erp_bom_loop_free(struct tr_ctx *c, const bson_oid_t *product, const struct erp_component *comp,
		  int n, const char *field)
{
	struct walk *w = tr_arena_alloc(c->req->arena, sizeof(*w));

	if (!w) {
		tr_problem_from_err(c, TR_ENOMEM);
		return false;
	}
	for (int i = 0; i < n; i++) {
		memset(w, 0, sizeof(*w));
		w->db = c->db;
		w->target = product;
		w->rc = TR_OK;
		w->depth = 1;
		w->path[0] = *product;
		bool loop = leads_back(w, &comp[i].product);
		if (w->rc != TR_OK) {
			tr_problem_from_err(c, w->rc);
			return false;
		}
		if (w->too_deep) {
			char *m = tr_arena_alloc(c->req->arena, 96);
			snprintf(m, 96, "leads more than %d levels deep through active bills",
				 ERP_BOM_DEPTH);
			tr_problem_field(c, field, m);
			return false;
		}
		if (loop) {
			size_t cap = 64 + (size_t)(w->depth + 1) * 72, len = 0;
			char *m = tr_arena_alloc(c->req->arena, cap);
			len += (size_t)snprintf(m, cap, "makes a loop: ");
			for (int k = 0; k <= w->depth && len < cap; k++)
				len += (size_t)snprintf(m + len, cap - len, "%s%s", k ? " -> " : "",
							sku_of(c, &w->path[k]));
			tr_problem_field(c, field, m);
			return false;
		}
	}
	return true;
}

/* ---- create ---- */

/* The body's components, each a product of the tenant other than the
 * bill's, once, in a whole quantity of its smallest unit: into set. */
static bool
read_components(struct tr_ctx *c, const bson_oid_t *product, bson_t *set,
		struct erp_component *comp, int *n)
{
	bson_iter_t it, arr, line;
	bson_t list, out;
	bool ok = true;

	*n = 0;
	if (!bson_iter_init_find(&it, &c->req->body, "components") || !BSON_ITER_HOLDS_ARRAY(&it) ||
	    !bson_iter_recurse(&it, &arr)) {
		tr_problem_field(c, "components", "must be an array of 1 to 100 components");
		return false;
	}
	BSON_APPEND_ARRAY_BEGIN(set, "components", &list);
	int i = 0;
	while (bson_iter_next(&arr)) {
		char f[32], key[16];
		const char *k, *pid = NULL, *why = NULL;
		int64_t q = 0;
		bool good = i < ERP_MAX_BOM_COMPONENTS && BSON_ITER_HOLDS_DOCUMENT(&arr) &&
			    bson_iter_recurse(&arr, &line);
		while (good && bson_iter_next(&line)) {
			const char *name = bson_iter_key(&line);
			if (strcmp(name, "product_id") == 0 && BSON_ITER_HOLDS_UTF8(&line))
				pid = bson_iter_utf8(&line, NULL);
			else if (strcmp(name, "quantity") == 0 &&
				 (BSON_ITER_HOLDS_INT32(&line) || BSON_ITER_HOLDS_INT64(&line)))
				q = bson_iter_as_int64(&line);
			else
				good = false;
		}
		snprintf(f, sizeof(f), "components[%d]", i);
		if (!good || !pid || !tr_is_object_id(pid) || q <= 0 || q > QTY_MAX)
			why = "must be {\"product_id\", \"quantity\" (a whole number of the "
			      "component's smallest unit, above 0)}";
		bson_oid_t oid;
		if (!why) {
			bson_t p;
			bson_oid_init_from_string(&oid, pid);
			if (tr_db_get(c->db, ERP_PRODUCTS, pid, &p) != TR_OK)
				why = "names a product that does not exist";
			else if (bson_oid_equal(&oid, product))
				why = "is the product itself";
			for (int j = 0; !why && j < *n; j++)
				if (bson_oid_equal(&comp[j].product, &oid))
					why = "names a product twice";
			bson_destroy(&p);
		}
		if (why) {
			tr_problem_field(c, tr_arena_strdup(c->req->arena, f), why);
			ok = false;
			i++;
			continue;
		}
		comp[*n].product = oid;
		comp[(*n)++].quantity = q;
		bson_uint32_to_string((uint32_t)i++, &k, key, sizeof(key));
		BSON_APPEND_DOCUMENT_BEGIN(&list, k, &out);
		BSON_APPEND_OID(&out, "product_id", &oid);
		BSON_APPEND_INT64(&out, "quantity", q);
		bson_append_document_end(&list, &out);
	}
	bson_append_array_end(set, &list);
	if (ok && *n == 0) {
		tr_problem_field(c, "components", "must be an array of 1 to 100 components");
		ok = false;
	}
	return ok;
}

static bool
bom_hook(struct tr_ctx *c, const struct tr_resource *e, bson_t *set, const bson_t *old)
{
	struct erp_component *comp =
	    tr_arena_alloc(c->req->arena, ERP_MAX_BOM_COMPONENTS * sizeof(*comp));
	bson_oid_t product;
	bson_t p;
	bson_iter_t it, sub;
	char hex[25], cur[4] = "";
	int n;

	(void)e;
	if (old || !comp || !tr_doc_oid(set, "product_id", &product))
		return true; /* bills never change (immutable) */
	bson_oid_to_string(&product, hex);
	if (tr_db_get(c->db, ERP_PRODUCTS, hex, &p) != TR_OK) {
		bson_destroy(&p);
		tr_problem_field(c, "product_id", "names a product that does not exist");
		return false;
	}
	int64_t scale = tr_doc_int(&p, "uom_scale", 0);
	if (bson_iter_init(&it, &p) && bson_iter_find_descendant(&it, "price.currency", &sub) &&
	    BSON_ITER_HOLDS_UTF8(&sub))
		snprintf(cur, sizeof(cur), "%s", bson_iter_utf8(&sub, NULL));
	bson_destroy(&p);
	tr_doc_remove(set, "components");
	if (!read_components(c, &product, set, comp, &n))
		return false;
	/* labour is valued as the product's stock is: in its price's currency */
	if (bson_iter_init(&it, set) &&
	    bson_iter_find_descendant(&it, "labour_cost.currency", &sub)) {
		if (!BSON_ITER_HOLDS_UTF8(&sub) || strcmp(bson_iter_utf8(&sub, NULL), cur) != 0) {
			char *m = tr_arena_alloc(c->req->arena, 64);
			snprintf(m, 64, "must be in the product's currency, %s", cur);
			tr_problem_field(c, "labour_cost", m);
			return false;
		}
	} else {
		erp_append_money(set, "labour_cost", 0, cur);
	}
	if (!bson_has_field(set, "quantity"))
		BSON_APPEND_INT64(set, "quantity", erp_scale_factor(scale));
	if (!erp_bom_loop_free(c, &product, comp, n, "components"))
		return false;
	/* the product's next version number, once per bill */
	char key[64], op[64];
	bson_oid_t fresh;
	bson_t mv;
	bool replayed;
	bson_oid_init(&fresh, NULL);
	bson_oid_to_string(&fresh, hex);
	snprintf(op, sizeof(op), "erp.bom:%s", hex);
	bson_oid_to_string(&product, hex);
	snprintf(key, sizeof(key), "erp.bom-versions/%s", hex);
	struct tr_reg_delta d[] = {{"n", 1}};
	struct tr_reg_post post = {.key = key, .op_id = op, .deltas = d, .ndeltas = 1};
	int rc = tr_register_post(c->db, &post, &mv, &replayed);
	if (rc == TR_OK)
		BSON_APPEND_INT64(set, "revision", erp_after(&mv, "n"));
	bson_destroy(&mv);
	if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
		return false;
	}
	return true;
}

/* The product's active bill becomes bom (a version-checked write of the
 * product, read again when another writer moved it). */
static int
make_active(struct tr_db *db, const bson_oid_t *product, const bson_oid_t *bom)
{
	char hex[25];
	int rc = TR_EVERSION;

	bson_oid_to_string(product, hex);
	for (int attempt = 0; attempt < 20 && rc == TR_EVERSION; attempt++) {
		bson_t p, set = BSON_INITIALIZER, out;
		bson_oid_t now;
		rc = tr_db_get(db, ERP_PRODUCTS, hex, &p);
		if (rc == TR_OK && tr_doc_oid(&p, "bom_id", &now) && bson_oid_equal(&now, bom)) {
			bson_destroy(&p);
			bson_destroy(&set);
			return TR_OK;
		}
		if (rc == TR_OK) {
			BSON_APPEND_OID(&set, "bom_id", bom);
			rc = tr_db_update(db, ERP_PRODUCTS, hex, tr_doc_int(&p, "version", 0), &set,
					  NULL, &out);
			bson_destroy(&out);
		}
		bson_destroy(&p);
		bson_destroy(&set);
	}
	return rc;
}

/* A new bill is its product's active one; the answer says so. */
static void
bom_created(struct tr_ctx *c, const bson_t *stored, bson_t *answer)
{
	bson_oid_t product, id;

	if (!tr_doc_oid(stored, "product_id", &product) || !tr_doc_oid(stored, "_id", &id))
		return;
	BSON_APPEND_BOOL(answer, "active", make_active(c->db, &product, &id) == TR_OK);
}

const struct tr_resource erp_boms = {
    .name = "bill of materials",
    .coll = ERP_BOMS,
    .path = "/v1/erp/boms",
    .read = "erp.production.read",
    .write = "erp.production.write",
    .about = "What `quantity` of a product (a whole unit by default) is made of: components "
	     "in exact quantities of their smallest units, and a labour cost per batch. Never "
	     "changed: a new bill is the product's next version and its active one "
	     "(the product's bom_id).",
    .topic = "erp.production",
    .event = "erp.bom",
    .fields = bom_fields,
    .sorts = bom_sorts,
    .hook = bom_hook,
    .created = bom_created,
    .immutable = true,
};

void
erp_bom_activate(struct tr_ctx *c)
{
	struct erp_component comp[ERP_MAX_BOM_COMPONENTS];
	bson_t bom = BSON_INITIALIZER, answer = BSON_INITIALIZER;
	bson_oid_t product, id;
	int rc;

	bson_destroy(&bom);
	if (!tr_res_load(c, &erp_boms, tr_param(c, 0), &bom))
		goto out;
	tr_doc_oid(&bom, "product_id", &product);
	tr_doc_oid(&bom, "_id", &id);
	int n = erp_bom_components(&bom, comp);
	if (!erp_bom_loop_free(c, &product, comp, n, "components"))
		goto out;
	if ((rc = make_active(c->db, &product, &id)) != TR_OK) {
		tr_problem_from_err(c, rc);
		goto out;
	}
	tr_res_emit(c, &erp_boms, "erp.bom.activated", &bom);
	tr_render_resource(&bom, &answer);
	BSON_APPEND_BOOL(&answer, "active", true);
	tr_reply_json(c, 200, &answer);
out:
	bson_destroy(&bom);
	bson_destroy(&answer);
}

/* ---- explosion ---- */

struct explosion {
	struct tr_ctx *c;
	struct {
		bson_oid_t product;
		int64_t quantity;
	} totals[256];
	int ntotals, nodes;
	bool bad;
};

static void
add_total(struct explosion *x, const bson_oid_t *product, int64_t q)
{
	for (int i = 0; i < x->ntotals; i++)
		if (bson_oid_equal(&x->totals[i].product, product)) {
			x->totals[i].quantity += q;
			return;
		}
	if (x->ntotals < (int)(sizeof(x->totals) / sizeof(x->totals[0]))) {
		x->totals[x->ntotals].product = *product;
		x->totals[x->ntotals++].quantity = q;
	} else {
		x->bad = true;
		tr_problem(x->c, 422, "validation", "more than 256 distinct materials");
	}
}

static int explode(struct explosion *x, const bson_oid_t *product, int64_t made, int depth,
		   bson_t *list);

/* Appends to `list` each component with the quantity needed and, below
 * it, the components of its own active bill; a component without one is a
 * material, added to the totals. */
static int
explode_list(struct explosion *x, const struct erp_component *comp, const int64_t *need, int n,
	     int depth, bson_t *list)
{
	for (int i = 0; i < n && !x->bad; i++) {
		bson_t item, below;
		char key[16];
		const char *k;
		bson_uint32_to_string((uint32_t)i, &k, key, sizeof(key));
		BSON_APPEND_DOCUMENT_BEGIN(list, k, &item);
		BSON_APPEND_OID(&item, "product_id", &comp[i].product);
		BSON_APPEND_UTF8(&item, "sku", sku_of(x->c, &comp[i].product));
		BSON_APPEND_INT64(&item, "quantity", need[i]);
		BSON_APPEND_ARRAY_BEGIN(&item, "components", &below);
		int rc = explode(x, &comp[i].product, need[i], depth + 1, &below);
		bson_append_array_end(&item, &below);
		bson_append_document_end(list, &item);
		if (rc == TR_ENOTFOUND)
			add_total(x, &comp[i].product, need[i]);
		else if (rc != TR_OK)
			return rc;
	}
	return TR_OK;
}

/* The components of making `made` of product by its active bill
 * (TR_ENOTFOUND: it has none). */
static int
explode(struct explosion *x, const bson_oid_t *product, int64_t made, int depth, bson_t *list)
{
	struct erp_component comp[ERP_MAX_BOM_COMPONENTS];
	int64_t need[ERP_MAX_BOM_COMPONENTS];
	bson_t bom;
	int bad, rc;

	if (depth > ERP_BOM_DEPTH || ++x->nodes > LOOP_NODES) {
		tr_problem(x->c, 422, "validation", "the bills nest too deep (or loop)");
		x->bad = true;
		return TR_OK;
	}
	rc = erp_active_bom(x->c->db, product, &bom);
	if (rc != TR_OK) {
		bson_destroy(&bom);
		return rc;
	}
	int n = erp_bom_components(&bom, comp);
	int64_t batch = tr_doc_int(&bom, "quantity", 0);
	bson_destroy(&bom);
	if (!erp_bom_scale(comp, n, batch, made, need, &bad)) {
		char *m = tr_arena_alloc(x->c->req->arena, 200);
		snprintf(m, 200,
			 "making %lld of %s would need part of the smallest unit of %s: make a "
			 "multiple of %lld",
			 (long long)made, sku_of(x->c, product), sku_of(x->c, &comp[bad].product),
			 (long long)batch);
		tr_problem_field(x->c, "quantity", m);
		x->bad = true;
		return TR_OK;
	}
	return explode_list(x, comp, need, n, depth, list);
}

void
erp_bom_explosion(struct tr_ctx *c)
{
	struct explosion *x = tr_arena_alloc(c->req->arena, sizeof(*x));
	bson_t bom = BSON_INITIALIZER, body = BSON_INITIALIZER, list, totals;
	bson_oid_t product;
	int64_t made;
	int rc;

	bson_destroy(&bom);
	if (!x) {
		tr_problem_from_err(c, TR_ENOMEM);
		goto out;
	}
	memset(x, 0, sizeof(*x));
	x->c = c;
	if (!tr_res_load(c, &erp_boms, tr_param(c, 0), &bom))
		goto out;
	tr_doc_oid(&bom, "product_id", &product);
	made = tr_doc_int(&bom, "quantity", 1);
	const char *q = tr_query(c, "quantity");
	if (q) {
		char *end;
		long long v = strtoll(q, &end, 10);
		if (*q == '\0' || *end != '\0' || v <= 0 || v > QTY_MAX) {
			tr_problem_field(c, "quantity",
					 "must be a whole number of the product's smallest unit, "
					 "above 0");
			goto out;
		}
		made = v;
	}
	/* this bill at the top, the active ones below */
	struct erp_component comp[ERP_MAX_BOM_COMPONENTS];
	int64_t need[ERP_MAX_BOM_COMPONENTS];
	int n = erp_bom_components(&bom, comp), bad;
	if (!erp_bom_scale(comp, n, tr_doc_int(&bom, "quantity", 0), made, need, &bad)) {
		char *m = tr_arena_alloc(c->req->arena, 200);
		snprintf(m, 200,
			 "would need part of the smallest unit of %s: make a multiple of %lld",
			 sku_of(c, &comp[bad].product), (long long)tr_doc_int(&bom, "quantity", 0));
		tr_problem_field(c, "quantity", m);
		goto out;
	}
	bson_oid_t id;
	tr_doc_oid(&bom, "_id", &id);
	BSON_APPEND_OID(&body, "bom_id", &id);
	BSON_APPEND_OID(&body, "product_id", &product);
	BSON_APPEND_INT64(&body, "quantity", made);
	BSON_APPEND_ARRAY_BEGIN(&body, "components", &list);
	rc = explode_list(x, comp, need, n, 0, &list);
	bson_append_array_end(&body, &list);
	if (rc != TR_OK)
		tr_problem_from_err(c, rc);
	if (rc != TR_OK || x->bad)
		goto out;
	BSON_APPEND_ARRAY_BEGIN(&body, "materials", &totals);
	for (int i = 0; i < x->ntotals; i++) {
		bson_t item;
		char key[16];
		const char *k;
		bson_uint32_to_string((uint32_t)i, &k, key, sizeof(key));
		BSON_APPEND_DOCUMENT_BEGIN(&totals, k, &item);
		BSON_APPEND_OID(&item, "product_id", &x->totals[i].product);
		BSON_APPEND_UTF8(&item, "sku", sku_of(c, &x->totals[i].product));
		BSON_APPEND_INT64(&item, "quantity", x->totals[i].quantity);
		bson_append_document_end(&totals, &item);
	}
	bson_append_array_end(&body, &totals);
	tr_reply_json(c, 200, &body);
out:
	bson_destroy(&bom);
	bson_destroy(&body);
}
