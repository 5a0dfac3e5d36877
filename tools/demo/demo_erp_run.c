/* `trellis-demo seed` (demo.h): the ERP's story made, step after step in
 * the story's order, through the ERP's own routes - erp_direct
 * (modules/erp/direct.c) runs the code POST /v1/erp/... runs, on this
 * process's database handle. The ERP reserves, costs at moving average,
 * numbers invoices, opens receivables and posts every journal entry
 * itself, as it would for an API client; the seed only says what happens,
 * as the company's users would: the admin buys and takes orders, the
 * warehouse ships and writes off, the accountant invoices and books
 * payments. Then the ERP's checks and the ledger's verify must hold.
 *
 * What the ERP posts it dates itself, at the moment of seeding: the
 * records and entries carry today's date, in the story's order. */
#include <stdio.h>
#include <string.h>

#include "demo.h"
#include "erp/erp.h"
#include "erp/people.h"

#define CURRENCY DEMO_CURRENCY

const char *const crm_demo_erp_colls[] = {ERP_PRODUCTS,
					  ERP_WAREHOUSES,
					  ERP_MOVES,
					  ERP_SLOTS,
					  ERP_ACCOUNTS,
					  ERP_ORDERS,
					  ERP_INVOICES,
					  ERP_PAYMENTS,
					  ERP_SHIPMENTS,
					  ERP_SUPPLIERS,
					  ERP_PURCHASE_ORDERS,
					  ERP_BOMS,
					  ERP_WORK_ORDERS,
					  ERP_DEPARTMENTS,
					  ERP_EMPLOYEES,
					  ERP_HR_TREES,
					  NULL};

static const char *const methods[] = {"bank", "card", "cash"};
static const char *const write_off_reasons[] = {"Damaged in transit", "Water damage in storage",
						"Failed the quality check",
						"Missing at the stock count"};

/* Runs route as user (a demo user) with body and key; TR_OK when the ERP
 * answers `want`, the answer in *answer (the caller destroys it either
 * way). Otherwise says on stderr what was refused and why. */
static int
run(struct demo *d, struct tr_db *db, int user, const char *route, const char *id,
    const bson_t *body, const char *key, int want, bson_t *answer)
{
	int status = erp_direct(db, &d->tenant_id, &d->users[user], route, id, body, key, answer);
	bson_iter_t it, sub;
	const char *field = NULL, *message = NULL;

	if (status == want)
		return TR_OK;
	if (bson_iter_init(&it, answer) && bson_iter_find_descendant(&it, "errors.0.field", &sub))
		field = bson_iter_utf8(&sub, NULL);
	if (bson_iter_init(&it, answer) && bson_iter_find_descendant(&it, "errors.0.message", &sub))
		message = bson_iter_utf8(&sub, NULL);
	fprintf(stderr, "trellis: the ERP answered %s %s with %d %s: %s%s%s%s\n", route,
		id ? id : "", status, tr_doc_str(answer, "type") ? tr_doc_str(answer, "type") : "",
		tr_doc_str(answer, "detail") ? tr_doc_str(answer, "detail") : "", field ? " (" : "",
		field ? field : "", field ? ")" : "");
	if (message)
		fprintf(stderr, "trellis:   %s %s\n", field, message);
	return status == 503 ? TR_EUNAVAILABLE : TR_EINTERNAL;
}

/* The answer's "id" into out (24 hex). */
static int
id_of(const bson_t *answer, char out[25])
{
	const char *id = tr_doc_str(answer, "id");

	if (!id || strlen(id) != 24)
		return TR_EINTERNAL;
	memcpy(out, id, 25);
	return TR_OK;
}

static void
append_money(bson_t *doc, const char *key, int64_t amount)
{
	bson_t m;

	BSON_APPEND_DOCUMENT_BEGIN(doc, key, &m);
	BSON_APPEND_INT64(&m, "amount", amount);
	BSON_APPEND_UTF8(&m, "currency", CURRENCY);
	bson_append_document_end(doc, &m);
}

static void
append_oid_hex(bson_t *doc, const char *key, const bson_oid_t *id)
{
	char hex[25];

	bson_oid_to_string(id, hex);
	BSON_APPEND_UTF8(doc, key, hex);
}

/* ---- what the company has: warehouses, suppliers, products ---- */

static int
make_world(struct demo *d, struct tr_db *db)
{
	struct erp_plan *e = &d->erp;
	int rc = TR_OK;

	for (int w = 0; w < DEMO_NWAREHOUSES && rc == TR_OK; w++) {
		bson_t body = BSON_INITIALIZER, answer;
		BSON_APPEND_UTF8(&body, "code", crm_demo_warehouses[w].code);
		BSON_APPEND_UTF8(&body, "name", crm_demo_warehouses[w].name);
		rc =
		    run(d, db, U_ADMIN, "POST /v1/erp/warehouses", NULL, &body, NULL, 201, &answer);
		if (rc == TR_OK)
			rc = id_of(&answer, e->warehouses[w]);
		bson_destroy(&body);
		bson_destroy(&answer);
	}
	for (int k = 0; k < DEMO_NSUPPLIERS && rc == TR_OK; k++) {
		bson_t body = BSON_INITIALIZER, answer;
		char email[64];
		snprintf(email, sizeof(email), "orders.%s@suppliers.example",
			 crm_demo_suppliers[k].code);
		for (char *p = email; *p; p++)
			*p = (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
		BSON_APPEND_UTF8(&body, "name", crm_demo_suppliers[k].name);
		BSON_APPEND_UTF8(&body, "email", email);
		rc = run(d, db, U_ADMIN, "POST /v1/erp/suppliers", NULL, &body, NULL, 201, &answer);
		if (rc == TR_OK)
			rc = id_of(&answer, e->suppliers[k]);
		bson_destroy(&body);
		bson_destroy(&answer);
	}
	for (int p = 0; p < DEMO_NPRODUCTS && rc == TR_OK; p++) {
		const struct demo_product *pr = &crm_demo_products[p];
		bson_t body = BSON_INITIALIZER, answer;
		BSON_APPEND_UTF8(&body, "sku", pr->sku);
		BSON_APPEND_UTF8(&body, "name", pr->name);
		BSON_APPEND_UTF8(&body, "uom", pr->uom);
		BSON_APPEND_INT32(&body, "uom_scale", pr->scale);
		append_money(&body, "price", pr->price);
		BSON_APPEND_INT32(&body, "tax_rate_bp", pr->tax_bp);
		rc = run(d, db, U_ADMIN, "POST /v1/erp/products", NULL, &body, NULL, 201, &answer);
		if (rc == TR_OK)
			rc = id_of(&answer, e->products[p]);
		bson_destroy(&body);
		bson_destroy(&answer);
	}
	return rc;
}

/* ---- the steps ---- */

/* {"lines": [{"product_id", "quantity"}]} of the lines that take some. */
static void
append_part(struct erp_plan *e, bson_t *body, const struct doc_line *lines, int n,
	    const int64_t *qty)
{
	bson_t arr, line;
	int k = 0;

	BSON_APPEND_ARRAY_BEGIN(body, "lines", &arr);
	for (int i = 0; i < n; i++) {
		char key[16];
		const char *ks;
		if (qty[i] <= 0)
			continue;
		bson_uint32_to_string((uint32_t)k++, &ks, key, sizeof(key));
		BSON_APPEND_DOCUMENT_BEGIN(&arr, ks, &line);
		BSON_APPEND_UTF8(&line, "product_id", e->products[lines[i].product]);
		BSON_APPEND_INT64(&line, "quantity", qty[i]);
		bson_append_document_end(&arr, &line);
	}
	bson_append_array_end(body, &arr);
}

/* {"lines": [{"product_id", "quantity", price_key: money, ...}]}. */
static void
append_lines(struct erp_plan *e, bson_t *body, const struct doc_line *lines, int n,
	     const char *price_key, bool discount)
{
	bson_t arr, line;

	BSON_APPEND_ARRAY_BEGIN(body, "lines", &arr);
	for (int i = 0; i < n; i++) {
		char key[16];
		const char *ks;
		bson_uint32_to_string((uint32_t)i, &ks, key, sizeof(key));
		BSON_APPEND_DOCUMENT_BEGIN(&arr, ks, &line);
		BSON_APPEND_UTF8(&line, "product_id", e->products[lines[i].product]);
		BSON_APPEND_INT64(&line, "quantity", lines[i].quantity);
		append_money(&line, price_key, lines[i].price);
		if (discount)
			BSON_APPEND_INT64(&line, "discount_bp", lines[i].discount_bp);
		bson_append_document_end(&arr, &line);
	}
	bson_append_array_end(body, &arr);
}

/* A sales order as its client's owner takes it: from the deal it was won
 * in (the ERP takes the client from the deal) or for the client, billed to
 * the client's legal entity when it has one. */
static void
order_body(struct demo *d, const struct sales_plan *o, bson_t *body)
{
	const struct client_plan *c = &d->clients[o->client];

	if (o->deal >= 0)
		append_oid_hex(body, "deal_id", &d->deals[o->deal].id);
	else
		append_oid_hex(body, "client_id", &c->id);
	if (c->has_counterparty)
		append_oid_hex(body, "counterparty_id", &c->counterparty);
	BSON_APPEND_UTF8(body, "warehouse_id", d->erp.warehouses[o->warehouse]);
	BSON_APPEND_UTF8(body, "currency", CURRENCY);
	if (c->owner >= 0)
		append_oid_hex(body, "owner_id", &d->users[c->owner]);
	append_lines(&d->erp, body, o->lines, o->nlines, "unit_price", true);
}

static int
make_step(struct demo *d, struct tr_db *db, const struct erp_step *s)
{
	struct erp_plan *e = &d->erp;
	bson_t body = BSON_INITIALIZER, answer = BSON_INITIALIZER;
	struct sales_plan *o =
	    s->kind >= ES_ORDER && s->kind <= ES_CANCEL ? &e->orders[s->doc] : NULL;
	struct purchase_plan *po =
	    s->kind == ES_PURCHASE || s->kind == ES_RECEIVE ? &e->purchases[s->doc] : NULL;
	const char *id = o ? o->id : po ? po->id : NULL;
	char key[48];
	int rc;

	bson_destroy(&answer);
	switch (s->kind) {
	case ES_PURCHASE:
		BSON_APPEND_UTF8(&body, "supplier_id", e->suppliers[po->supplier]);
		BSON_APPEND_UTF8(&body, "warehouse_id", e->warehouses[po->warehouse]);
		BSON_APPEND_UTF8(&body, "currency", CURRENCY);
		append_lines(e, &body, po->lines, po->nlines, "unit_cost", false);
		rc = run(d, db, U_ADMIN, "POST /v1/erp/purchase-orders", NULL, &body, NULL, 201,
			 &answer);
		if (rc == TR_OK)
			rc = id_of(&answer, po->id);
		break;
	case ES_RECEIVE:
		append_part(e, &body, po->lines, po->nlines, s->qty);
		snprintf(key, sizeof(key), "demo-receipt-%d", s->part);
		rc = run(d, db, U_ADMIN, "POST /v1/erp/purchase-orders/{id}/receive", id, &body,
			 key, 201, &answer);
		break;
	case ES_ORDER:
		order_body(d, o, &body);
		rc = run(d, db, U_ADMIN, "POST /v1/erp/orders", NULL, &body, NULL, 201, &answer);
		if (rc == TR_OK && (rc = id_of(&answer, o->id)) == TR_OK)
			o->total = erp_money_amount(&answer, "total");
		break;
	case ES_CONFIRM:
		rc = run(d, db, U_ADMIN, "POST /v1/erp/orders/{id}/confirm", id, NULL, NULL, 200,
			 &answer);
		break;
	case ES_CANCEL:
		rc = run(d, db, U_ADMIN, "POST /v1/erp/orders/{id}/cancel", id, NULL, NULL, 200,
			 &answer);
		break;
	case ES_SHIP:
		append_part(e, &body, o->lines, o->nlines, s->qty);
		snprintf(key, sizeof(key), "demo-shipment-%d", s->part);
		rc = run(d, db, U_WAREHOUSE, "POST /v1/erp/orders/{id}/shipments", id, &body, key,
			 201, &answer);
		break;
	case ES_INVOICE:
		rc = run(d, db, U_ACCOUNTANT, "POST /v1/erp/orders/{id}/invoice", id, NULL, NULL,
			 201, &answer);
		if (rc == TR_OK && tr_doc_str(&answer, "number"))
			snprintf(o->number, sizeof(o->number), "%s", tr_doc_str(&answer, "number"));
		break;
	case ES_PAY: {
		int64_t amount = s->last ? o->total - o->paid : o->total / 2;
		if (amount <= 0) {
			rc = TR_OK;
			break;
		}
		append_money(&body, "amount", amount);
		BSON_APPEND_UTF8(&body, "method", methods[s->method]);
		if (s->method == 0 && o->number[0])
			BSON_APPEND_UTF8(&body, "reference", o->number);
		snprintf(key, sizeof(key), "demo-payment-%d", s->part);
		rc = run(d, db, U_ACCOUNTANT, "POST /v1/erp/orders/{id}/payments", id, &body, key,
			 201, &answer);
		if (rc == TR_OK)
			o->paid += amount;
		break;
	}
	case ES_WRITE_OFF:
	case ES_TRANSFER:
		BSON_APPEND_UTF8(&body, "kind", s->kind == ES_TRANSFER ? "transfer" : "write_off");
		BSON_APPEND_UTF8(&body, "product_id", e->products[s->doc]);
		BSON_APPEND_UTF8(&body, "warehouse_id", e->warehouses[s->warehouse]);
		if (s->kind == ES_TRANSFER)
			BSON_APPEND_UTF8(&body, "to_warehouse_id", e->warehouses[s->to_warehouse]);
		BSON_APPEND_INT64(&body, "quantity", s->qty[0]);
		BSON_APPEND_UTF8(&body, "reason",
				 s->kind == ES_TRANSFER
				     ? "Stock for an order at the other warehouse"
				     : write_off_reasons[s->reason]);
		rc = run(d, db, U_WAREHOUSE, "POST /v1/erp/stock/moves", NULL, &body, NULL, 201,
			 &answer);
		break;
	default:
		rc = TR_EINTERNAL;
	}
	if (rc == TR_OK)
		e->made[s->kind]++;
	bson_destroy(&body);
	bson_destroy(&answer);
	return rc;
}

/* ---- production: workstation kits assembled in the first warehouse ---- */

/* A kit is a 14" laptop, two 24" monitors, a dock and a keyboard set,
 * plus 15.00 of labour; the parts for two kits arrive, two are planned,
 * released and one is assembled (the other is still on the bench). */
static const struct {
	const char *sku;
	int64_t per_kit;
} kit_parts[] = {{"LAP-14", 1}, {"MON-24", 2}, {"DOCK-C", 1}, {"KB-SET", 1}};

static int
product_index(const char *sku)
{
	for (int p = 0; p < DEMO_NPRODUCTS; p++)
		if (strcmp(crm_demo_products[p].sku, sku) == 0)
			return p;
	return -1;
}

static int
make_production(struct demo *d, struct tr_db *db)
{
	struct erp_plan *e = &d->erp;
	bson_t body = BSON_INITIALIZER, answer = BSON_INITIALIZER, list, item;
	char kit[25], wo[25];
	int rc;

	BSON_APPEND_UTF8(&body, "sku", "WS-KIT");
	BSON_APPEND_UTF8(&body, "name", "Workstation kit, assembled");
	append_money(&body, "price", 219000);
	BSON_APPEND_INT32(&body, "tax_rate_bp", 2000);
	bson_destroy(&answer);
	rc = run(d, db, U_ADMIN, "POST /v1/erp/products", NULL, &body, NULL, 201, &answer);
	if (rc == TR_OK)
		rc = id_of(&answer, kit);
	for (size_t i = 0; i < N(kit_parts) && rc == TR_OK; i++) {
		int p = product_index(kit_parts[i].sku);
		if (p < 0)
			return TR_EINTERNAL;
		bson_reinit(&body);
		BSON_APPEND_UTF8(&body, "kind", "receipt");
		BSON_APPEND_UTF8(&body, "product_id", e->products[p]);
		BSON_APPEND_UTF8(&body, "warehouse_id", e->warehouses[0]);
		BSON_APPEND_INT64(&body, "quantity", 2 * kit_parts[i].per_kit);
		append_money(&body, "unit_cost", crm_demo_products[p].cost);
		BSON_APPEND_UTF8(&body, "reference", "parts for workstation kits");
		bson_destroy(&answer);
		rc = run(d, db, U_WAREHOUSE, "POST /v1/erp/stock/moves", NULL, &body, NULL, 201,
			 &answer);
	}
	if (rc == TR_OK) {
		bson_reinit(&body);
		BSON_APPEND_UTF8(&body, "product_id", kit);
		BSON_APPEND_ARRAY_BEGIN(&body, "components", &list);
		for (size_t i = 0; i < N(kit_parts); i++) {
			char k[16];
			const char *kk;
			bson_uint32_to_string((uint32_t)i, &kk, k, sizeof(k));
			BSON_APPEND_DOCUMENT_BEGIN(&list, kk, &item);
			BSON_APPEND_UTF8(&item, "product_id",
					 e->products[product_index(kit_parts[i].sku)]);
			BSON_APPEND_INT64(&item, "quantity", kit_parts[i].per_kit);
			bson_append_document_end(&list, &item);
		}
		bson_append_array_end(&body, &list);
		append_money(&body, "labour_cost", 1500);
		bson_destroy(&answer);
		rc = run(d, db, U_ADMIN, "POST /v1/erp/boms", NULL, &body, NULL, 201, &answer);
	}
	if (rc == TR_OK) {
		bson_reinit(&body);
		BSON_APPEND_UTF8(&body, "product_id", kit);
		BSON_APPEND_UTF8(&body, "warehouse_id", e->warehouses[0]);
		BSON_APPEND_INT64(&body, "quantity", 2);
		bson_destroy(&answer);
		rc = run(d, db, U_WAREHOUSE, "POST /v1/erp/work-orders", NULL, &body, NULL, 201,
			 &answer);
		if (rc == TR_OK)
			rc = id_of(&answer, wo);
	}
	if (rc == TR_OK) {
		bson_destroy(&answer);
		rc = run(d, db, U_WAREHOUSE, "POST /v1/erp/work-orders/{id}/release", wo, NULL,
			 NULL, 200, &answer);
	}
	if (rc == TR_OK) {
		bson_reinit(&body);
		BSON_APPEND_INT64(&body, "quantity", 1);
		bson_destroy(&answer);
		rc = run(d, db, U_WAREHOUSE, "POST /v1/erp/work-orders/{id}/complete", wo, &body,
			 "demo-kit-1", 200, &answer);
	}
	bson_destroy(&body);
	bson_destroy(&answer);
	return rc;
}

/* ---- the ERP's own verdict ---- */

/* GET /v1/erp/checks and /v1/erp/ledger/verify must both say ok. */
static int
check(struct demo *d, struct tr_db *db)
{
	static const char *const routes[] = {"GET /v1/erp/checks", "GET /v1/erp/ledger/verify"};
	int rc = TR_OK;

	for (int i = 0; i < 2 && rc == TR_OK; i++) {
		bson_t answer;
		bson_iter_t it;
		rc = run(d, db, U_ACCOUNTANT, routes[i], NULL, NULL, NULL, 200, &answer);
		bool ok = bson_iter_init_find(&it, &answer, "ok") && BSON_ITER_HOLDS_BOOL(&it) &&
			  bson_iter_bool(&it);
		if (rc == TR_OK && i == 1)
			d->erp.entries = tr_doc_int(&answer, "entries", 0);
		if (rc == TR_OK && !ok) {
			char *json = bson_as_relaxed_extended_json(&answer, NULL);
			fprintf(stderr, "trellis: the ERP's %s is not ok: %s\n", routes[i] + 4,
				json);
			bson_free(json);
			rc = TR_EINTERNAL;
		}
		bson_destroy(&answer);
	}
	return rc;
}

int
crm_demo_make_erp(struct demo *d, struct tr_db *db)
{
	int rc = make_world(d, db);

	for (size_t i = 0; i < d->erp.nsteps && rc == TR_OK; i++)
		rc = make_step(d, db, &d->erp.steps[i]);
	if (rc == TR_OK)
		rc = make_production(d, db);
	if (rc == TR_OK)
		rc = crm_demo_make_people(d, db);
	if (rc == TR_OK)
		rc = check(d, db);
	return rc;
}
