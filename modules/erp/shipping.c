/* Shipments of sales orders (CONTRACT.md "ERP", Sales): reserved stock
 * leaves the warehouse at its moving-average cost, cost of goods sold is
 * posted against inventory.
 *
 * A shipment first claims its quantities on the order (one version-checked
 * write adds them to the lines' "shipped" and names the shipment pending),
 * so two shipments never take the same remaining quantity, in any process.
 * Then each line's movement leaves the stock register (on hand and
 * reserved go down together; its cost reckoned on the state it follows),
 * the cost is posted, the shipment is written and the order no longer
 * names it pending. Every step is idempotent by the shipment's id, which
 * comes from the request's Idempotency-Key: a retried request finishes a
 * shipment its first attempt left halfway, never ships twice. */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "erp.h"
#include "events.h"
#include "json.h"
#include "register.h"

static const char *const shipment_sorts[] = {"-created_at", "created_at", NULL};

static const struct tr_field shipment_fields[] = {
    {"order_id", TR_K_REF, TR_F_SERVER | TR_F_FILTER | TR_F_NARROW, 0, 0, NULL, ERP_ORDERS},
    {"lines", TR_K_ARRAY, TR_F_SERVER, 0, 0, NULL, NULL},
    {"cost", TR_K_MONEY, TR_F_SERVER, 0, 0, NULL, NULL},
    {NULL, 0, 0, 0, 0, NULL, NULL},
};

const struct tr_resource erp_shipments = {
    .name = "shipment",
    .coll = ERP_SHIPMENTS,
    .path = "/v1/erp/shipments",
    .read = "erp.shipments.read",
    .write = "erp.shipments.write",
    .about = "Goods of an order that left the warehouse (POST /v1/erp/orders/{id}/shipments), "
	     "at their moving-average cost.",
    .topic = "erp.shipments",
    .event = "erp.shipment",
    .fields = shipment_fields,
    .sorts = shipment_sorts,
    .no_create = true,
    .immutable = true,
};

/* An order's status once a shipment is done: shipped in full, it is
 * completed when paid, shipped when only confirmed. */
static const char *
order_status_after(const bson_t *order)
{
	const char *status = tr_doc_str(order, "status");

	if (!status || !erp_order_fully_shipped(order))
		return NULL;
	if (strcmp(status, "paid") == 0)
		return "completed";
	return strcmp(status, "confirmed") == 0 ? "shipped" : NULL;
}

void
erp_order_ship(struct tr_ctx *c)
{
	bson_t order = BSON_INITIALIZER, doc = BSON_INITIALIZER, stored = BSON_INITIALIZER,
	       settled = BSON_INITIALIZER, lines;
	bson_oid_t products[ERP_MAX_DOC_LINES], oid, wid, soid;
	int64_t qty[ERP_MAX_DOC_LINES], shipped[ERP_MAX_DOC_LINES], total_cost = 0;
	struct erp_claim *sl = tr_arena_alloc(c->req->arena, ERP_MAX_DOC_LINES * sizeof(*sl));
	char id[25], sid[25], wh[25], seed[160], op[96];
	int m, rc;

	bson_destroy(&order);
	if (!sl) {
		tr_problem_from_err(c, TR_ENOMEM);
		goto out;
	}
	if (!tr_res_load(c, &erp_orders, tr_param(c, 0), &order))
		goto out;
	int n = erp_lines_of(&order, "shipped", products, qty, shipped);
	if ((m = erp_read_claim(c, products, n, sl)) < 0)
		goto out;
	tr_doc_oid(&order, "_id", &oid);
	bson_oid_to_string(&oid, id);
	tr_doc_oid(&order, "warehouse_id", &wid);
	bson_oid_to_string(&wid, wh);
	const char *currency = tr_arena_strdup(c->req->arena, tr_doc_str(&order, "currency"));
	if (c->req->idempotency_key)
		snprintf(seed, sizeof(seed), "shipment:%s:%s:%.100s", id,
			 c->req->principal.user_hex, c->req->idempotency_key);
	else {
		bson_oid_t fresh;
		char hex[25];
		bson_oid_init(&fresh, NULL);
		bson_oid_to_string(&fresh, hex);
		snprintf(seed, sizeof(seed), "shipment:%s", hex);
	}
	uint8_t digest[32];
	crypto_hash_sha256(digest, (const unsigned char *)seed, strlen(seed));
	sodium_bin2hex(sid, sizeof(sid), digest, 12);

	/* done before (the same request again): its shipment */
	bson_destroy(&stored);
	if (tr_db_get(c->db, ERP_SHIPMENTS, sid, &stored) == TR_OK) {
		tr_reply_resource(c, 201, &stored);
		goto out;
	}
	static const char *const shippable[] = {"confirmed", "invoiced", "paid", NULL};
	if ((rc = erp_claim_lines(c, ERP_ORDERS, id, "shipped", "_pending_shipments", sid, sl, m,
				  shippable, &order)) != TR_OK) {
		if (rc != TR_ELIMIT)
			tr_problem_from_err(c, rc);
		goto out;
	}
	/* the stock leaves, each line at its cost */
	for (int j = 0; j < m; j++) {
		char key[96], p[25];
		bson_t mv;
		bool replayed;
		bson_oid_to_string(&sl[j].product, p);
		snprintf(key, sizeof(key), "erp.stock/%s/%s", p, wh);
		snprintf(op, sizeof(op), "erp.ship:%s:%d", sid, sl[j].index);
		struct tr_reg_delta d[] = {{"on_hand", 0}, {"reserved", 0}, {"value", 0}};
		struct erp_reckoning r = {.q = sl[j].quantity};
		struct tr_reg_post post = {.key = key,
					   .op_id = op,
					   .deltas = d,
					   .ndeltas = 3,
					   .reckon = erp_at_average,
					   .reckon_arg = &r};
		rc = tr_register_post(c->db, &post, &mv, &replayed);
		bson_iter_t it, sub;
		if (rc == TR_OK && bson_iter_init(&it, &mv) &&
		    bson_iter_find_descendant(&it, "deltas.value", &sub))
			sl[j].cost = -bson_iter_as_int64(&sub);
		bson_destroy(&mv);
		if (rc != TR_OK) { /* asking again with the same key finishes it */
			erp_unfinished(c, rc);
			goto out;
		}
		total_cost += sl[j].cost;
	}
	/* cost of goods sold against inventory */
	if (total_cost > 0) {
		struct erp_entry *en = tr_arena_alloc(c->req->arena, sizeof(*en));
		bson_t mv;
		bool replayed;
		memset(en, 0, sizeof(*en));
		snprintf(en->id, sizeof(en->id), "%s", sid);
		erp_today(en->date);
		snprintf(en->memo, sizeof(en->memo), "shipment of order %s", id);
		snprintf(en->currency, sizeof(en->currency), "%s", currency);
		snprintf(en->source, sizeof(en->source), "shipment");
		en->nlines = 2;
		en->lines[0] = (struct erp_line){"5000", total_cost, 0};
		en->lines[1] = (struct erp_line){"1300", 0, total_cost};
		snprintf(op, sizeof(op), "erp.entry:%s", sid);
		rc = erp_chart_ensure(c->db);
		if (rc == TR_OK)
			rc = erp_ledger_post(c->db, en, op, &mv, &replayed);
		if (rc == TR_OK)
			bson_destroy(&mv);
		if (rc != TR_OK) {
			erp_unfinished(c, rc);
			goto out;
		}
	}
	bson_oid_init_from_string(&soid, sid);
	BSON_APPEND_OID(&doc, "_id", &soid);
	BSON_APPEND_OID(&doc, "order_id", &oid);
	BSON_APPEND_ARRAY_BEGIN(&doc, "lines", &lines);
	for (int j = 0; j < m; j++) {
		bson_t line, money;
		char key[16];
		const char *k;
		bson_uint32_to_string((uint32_t)j, &k, key, sizeof(key));
		BSON_APPEND_DOCUMENT_BEGIN(&lines, k, &line);
		BSON_APPEND_OID(&line, "product_id", &sl[j].product);
		BSON_APPEND_INT64(&line, "quantity", sl[j].quantity);
		BSON_APPEND_DOCUMENT_BEGIN(&line, "cost", &money);
		BSON_APPEND_INT64(&money, "amount", sl[j].cost);
		BSON_APPEND_UTF8(&money, "currency", currency);
		bson_append_document_end(&line, &money);
		bson_append_document_end(&lines, &line);
	}
	bson_append_array_end(&doc, &lines);
	bson_t money;
	BSON_APPEND_DOCUMENT_BEGIN(&doc, "cost", &money);
	BSON_APPEND_INT64(&money, "amount", total_cost);
	BSON_APPEND_UTF8(&money, "currency", currency);
	bson_append_document_end(&doc, &money);
	rc = tr_db_insert(c->db, ERP_SHIPMENTS, &doc, &stored);
	if (rc == TR_EDUPLICATE) {
		bson_destroy(&stored);
		rc = tr_db_get(c->db, ERP_SHIPMENTS, sid, &stored);
	}
	if (rc == TR_OK)
		rc = erp_unpend(c->db, ERP_ORDERS, id, "_pending_shipments", sid,
				order_status_after, &settled);
	if (rc != TR_OK) {
		erp_unfinished(c, rc);
		goto out;
	}
	char *loc = tr_arena_alloc(c->req->arena, 64);
	snprintf(loc, 64, "/v1/erp/shipments/%s", sid);
	c->resp->location = loc;
	tr_res_emit(c, &erp_shipments, "erp.shipment.created", &stored);
	tr_reply_resource(c, 201, &stored);
out:
	bson_destroy(&order);
	bson_destroy(&doc);
	bson_destroy(&stored);
	bson_destroy(&settled);
}
