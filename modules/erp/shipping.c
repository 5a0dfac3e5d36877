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
 * shipment its first attempt left halfway, never ships twice. A settle job
 * scheduled before the claim finishes a claimed shipment whose writer died
 * (with or without a key): a shipment is claimed and done, or not at all. */
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
    .own_none = true, /* its order's owner is not its own */
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

/* A shipment that does not exist yet for a claimed part (the same id
 * again: the same movements, the same entry, the record found). */
struct ship {
	const char *order, *sid, *warehouse, *currency;
	struct erp_claim *lines;
	int n;
};

/* What a claimed shipment still has to do, each step once by the
 * shipment's id: the stock leaves at its cost, the cost of goods sold is
 * posted against inventory, the shipment is written and the order no
 * longer names it pending. *stored: the shipment. */
static int
ship_claimed(struct tr_db *db, const struct ship *s, bson_t *stored)
{
	bson_t doc = BSON_INITIALIZER, settled = BSON_INITIALIZER, lines, money;
	bson_oid_t oid, soid;
	int64_t total_cost = 0;
	char op[96];
	int rc = TR_OK;

	for (int j = 0; j < s->n; j++) {
		char key[96], p[25];
		bson_t mv;
		bool replayed;
		bson_oid_to_string(&s->lines[j].product, p);
		snprintf(key, sizeof(key), "erp.stock/%s/%s", p, s->warehouse);
		snprintf(op, sizeof(op), "erp.ship:%s:%d", s->sid, s->lines[j].index);
		struct tr_reg_delta d[] = {{"on_hand", 0}, {"reserved", 0}, {"value", 0}};
		struct erp_reckoning r = {.q = s->lines[j].quantity};
		struct tr_reg_post post = {.key = key,
					   .op_id = op,
					   .deltas = d,
					   .ndeltas = 3,
					   .reckon = erp_at_average,
					   .reckon_arg = &r};
		rc = tr_register_post(db, &post, &mv, &replayed);
		bson_iter_t it, sub;
		if (rc == TR_OK && bson_iter_init(&it, &mv) &&
		    bson_iter_find_descendant(&it, "deltas.value", &sub))
			s->lines[j].cost = -bson_iter_as_int64(&sub);
		bson_destroy(&mv);
		if (rc != TR_OK)
			goto out;
		total_cost += s->lines[j].cost;
		erp_step_pause();
	}
	if (total_cost > 0) {
		struct erp_line entry[2] = {{"5000", total_cost, 0}, {"1300", 0, total_cost}};
		char memo[64];
		snprintf(memo, sizeof(memo), "shipment of order %s", s->order);
		if ((rc = erp_post_lines(db, s->sid, memo, s->currency, "shipment", entry, 2)) !=
		    TR_OK)
			goto out;
		erp_step_pause();
	}
	bson_oid_init_from_string(&oid, s->order);
	bson_oid_init_from_string(&soid, s->sid);
	BSON_APPEND_OID(&doc, "_id", &soid);
	BSON_APPEND_OID(&doc, "order_id", &oid);
	BSON_APPEND_ARRAY_BEGIN(&doc, "lines", &lines);
	for (int j = 0; j < s->n; j++) {
		bson_t line;
		char key[16];
		const char *k;
		bson_uint32_to_string((uint32_t)j, &k, key, sizeof(key));
		BSON_APPEND_DOCUMENT_BEGIN(&lines, k, &line);
		BSON_APPEND_OID(&line, "product_id", &s->lines[j].product);
		BSON_APPEND_INT64(&line, "quantity", s->lines[j].quantity);
		erp_append_money(&line, "cost", s->lines[j].cost, s->currency);
		bson_append_document_end(&lines, &line);
	}
	bson_append_array_end(&doc, &lines);
	BSON_APPEND_DOCUMENT_BEGIN(&doc, "cost", &money);
	BSON_APPEND_INT64(&money, "amount", total_cost);
	BSON_APPEND_UTF8(&money, "currency", s->currency);
	bson_append_document_end(&doc, &money);
	bson_destroy(stored);
	rc = tr_db_insert(db, ERP_SHIPMENTS, &doc, stored);
	if (rc == TR_EDUPLICATE) {
		bson_destroy(stored);
		rc = tr_db_get(db, ERP_SHIPMENTS, s->sid, stored);
	}
	if (rc == TR_OK)
		rc = erp_unpend(db, ERP_ORDERS, s->order, "_pending_shipments", s->sid,
				order_status_after, &settled);
out:
	bson_destroy(&doc);
	bson_destroy(&settled);
	return rc;
}

/* Does the order name shipment sid pending? */
static bool
pending(const bson_t *order, const char *sid)
{
	bson_iter_t it, arr;

	if (bson_iter_init_find(&it, order, "_pending_shipments") && bson_iter_recurse(&it, &arr))
		while (bson_iter_next(&arr))
			if (BSON_ITER_HOLDS_UTF8(&arr) &&
			    strcmp(bson_iter_utf8(&arr, NULL), sid) == 0)
				return true;
	return false;
}

/* The settle job's payload naming the shipment (erp.h); malloc'd. */
static char *
settle_payload(const struct ship *s)
{
	size_t len = 256 + (size_t)s->n * 64, at;
	char *buf = malloc(len);

	if (!buf)
		return NULL;
	at = (size_t)snprintf(buf, len,
			      "{\"order\":\"%s\",\"shipment\":\"%s\",\"warehouse\":\"%s\","
			      "\"currency\":\"%s\",\"lines\":[",
			      s->order, s->sid, s->warehouse, s->currency);
	for (int j = 0; j < s->n && at < len; j++) {
		char p[25];
		bson_oid_to_string(&s->lines[j].product, p);
		at += (size_t)snprintf(buf + at, len - at, "%s[%d,\"%s\",%lld]", j ? "," : "",
				       s->lines[j].index, p, (long long)s->lines[j].quantity);
	}
	if (at < len)
		snprintf(buf + at, len - at, "]}");
	return buf;
}

void
erp_order_ship(struct tr_ctx *c)
{
	bson_t order = BSON_INITIALIZER, stored = BSON_INITIALIZER, settled = BSON_INITIALIZER;
	bson_oid_t products[ERP_MAX_DOC_LINES], oid, wid;
	int64_t qty[ERP_MAX_DOC_LINES], shipped[ERP_MAX_DOC_LINES];
	struct erp_claim *sl = tr_arena_alloc(c->req->arena, ERP_MAX_DOC_LINES * sizeof(*sl));
	char id[25], sid[25], wh[25];
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
	erp_request_id(c, "shipment", id, sid);
	struct ship s = {.order = id,
			 .sid = sid,
			 .warehouse = wh,
			 .currency = currency ? currency : "",
			 .lines = sl,
			 .n = m};

	/* done before (the same request again): its shipment, the order
	 * no longer naming it pending */
	bson_destroy(&stored);
	if (tr_db_get(c->db, ERP_SHIPMENTS, sid, &stored) == TR_OK) {
		if (pending(&order, sid) &&
		    (rc = erp_unpend(c->db, ERP_ORDERS, id, "_pending_shipments", sid,
				     order_status_after, &settled)) != TR_OK) {
			erp_unfinished(c, rc);
			goto out;
		}
		tr_reply_resource(c, 201, &stored);
		goto out;
	}
	/* a writer that dies from here on leaves the shipment to the job */
	char *payload = settle_payload(&s);
	rc = payload ? erp_schedule_settle(c->req->principal.tenant_hex, payload) : TR_ENOMEM;
	free(payload);
	if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
		goto out;
	}
	static const char *const shippable[] = {"confirmed", "invoiced", "paid", NULL};
	if ((rc = erp_claim_lines(c, ERP_ORDERS, id, "shipped", "_pending_shipments", sid, sl, m,
				  shippable, &order)) != TR_OK) {
		if (rc != TR_ELIMIT)
			tr_problem_from_err(c, rc);
		goto out;
	}
	if ((rc = ship_claimed(c->db, &s, &stored)) != TR_OK) {
		/* asking again with the same key finishes it, as the job does */
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
	bson_destroy(&stored);
	bson_destroy(&settled);
}

/* The settle job of a shipment (erp.h): a shipment the order still names
 * pending is finished from the quantities the job names. */
int
erp_shipment_settle(struct tr_db *db, const char *tenant, const bson_t *payload, char *err,
		    size_t errlen)
{
	struct erp_claim lines[ERP_MAX_DOC_LINES];
	bson_t order = BSON_INITIALIZER, stored = BSON_INITIALIZER;
	bson_iter_t it, arr, item;
	struct ship s = {.order = tr_doc_str(payload, "order"),
			 .sid = tr_doc_str(payload, "shipment"),
			 .warehouse = tr_doc_str(payload, "warehouse"),
			 .currency = tr_doc_str(payload, "currency"),
			 .lines = lines};
	int rc = TR_OK;

	if (!s.order || !tr_is_object_id(s.order) || !s.sid || !tr_is_object_id(s.sid) ||
	    !s.warehouse || !tr_is_object_id(s.warehouse) || !s.currency)
		goto out; /* not a shipment's: nothing to do */
	if (bson_iter_init_find(&it, payload, "lines") && bson_iter_recurse(&it, &arr))
		while (s.n < ERP_MAX_DOC_LINES && bson_iter_next(&arr)) {
			const char *p = NULL;
			int64_t v[2] = {-1, 0};
			int k = 0;
			if (!bson_iter_recurse(&arr, &item))
				continue;
			while (bson_iter_next(&item)) {
				if (BSON_ITER_HOLDS_UTF8(&item))
					p = bson_iter_utf8(&item, NULL);
				else if (BSON_ITER_HOLDS_NUMBER(&item) && k < 2)
					v[k++] = bson_iter_as_int64(&item);
			}
			if (!p || !tr_is_object_id(p) || v[0] < 0 || v[1] <= 0)
				goto out;
			lines[s.n].index = (int)v[0];
			bson_oid_init_from_string(&lines[s.n].product, p);
			lines[s.n].quantity = v[1];
			lines[s.n++].cost = 0;
		}
	bson_destroy(&order);
	rc = tr_db_get(db, ERP_ORDERS, s.order, &order);
	if (rc != TR_OK || !pending(&order, s.sid))
		goto out; /* never claimed, or finished */
	tr_warn("erp: shipment %s of order %s was left halfway: finishing it", s.sid, s.order);
	if ((rc = ship_claimed(db, &s, &stored)) == TR_OK) {
		bson_t data = BSON_INITIALIZER;
		tr_render_resource(&stored, &data);
		tr_emit_background(tenant, erp_shipments.topic, "erp.shipment.created", s.sid, NULL,
				   &data);
		bson_destroy(&data);
	}
out:
	if (rc == TR_ENOTFOUND)
		rc = TR_OK; /* the order is gone */
	if (rc != TR_OK)
		snprintf(err, errlen, "settling shipment %s: %s", s.sid ? s.sid : "?",
			 tr_strerror(rc));
	bson_destroy(&order);
	bson_destroy(&stored);
	return rc;
}
