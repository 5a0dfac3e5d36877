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

#define MAX_SHIP_LINES 100

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

struct ship_line {
	int index; /* of the order's line */
	bson_oid_t product;
	int64_t quantity, cost;
};

/* The order's lines as {product, quantity, shipped}. */
static int
lines_of(const bson_t *order, bson_oid_t *products, int64_t *qty, int64_t *shipped)
{
	bson_iter_t it, arr, line;
	int n = 0;

	if (!bson_iter_init_find(&it, order, "lines") || !bson_iter_recurse(&it, &arr))
		return 0;
	while (n < MAX_SHIP_LINES && bson_iter_next(&arr)) {
		qty[n] = shipped[n] = 0;
		if (!bson_iter_recurse(&arr, &line))
			continue;
		while (bson_iter_next(&line)) {
			const char *k = bson_iter_key(&line);
			if (strcmp(k, "product_id") == 0 && BSON_ITER_HOLDS_OID(&line))
				bson_oid_copy(bson_iter_oid(&line), &products[n]);
			else if (strcmp(k, "quantity") == 0)
				qty[n] = bson_iter_as_int64(&line);
			else if (strcmp(k, "shipped") == 0)
				shipped[n] = bson_iter_as_int64(&line);
		}
		n++;
	}
	return n;
}

/* The body's lines, each matched to the first order line of its product. */
static int
read_lines(struct tr_ctx *c, const bson_oid_t *products, int n, struct ship_line *out)
{
	bson_iter_t it, arr, line;
	int m = 0;
	bool ok = true;
	static const char *const fields[] = {"lines", NULL};

	if (!tr_body_only(c, fields))
		return -1;
	if (!bson_iter_init_find(&it, &c->req->body, "lines") || !BSON_ITER_HOLDS_ARRAY(&it) ||
	    !bson_iter_recurse(&it, &arr)) {
		tr_problem_field(c, "lines", "must be an array of {\"product_id\", \"quantity\"}");
		return -1;
	}
	while (bson_iter_next(&arr)) {
		char f[32];
		const char *pid = NULL;
		int64_t q = 0;
		bool good = m < MAX_SHIP_LINES && BSON_ITER_HOLDS_DOCUMENT(&arr) &&
			    bson_iter_recurse(&arr, &line);
		while (good && bson_iter_next(&line)) {
			const char *k = bson_iter_key(&line);
			if (strcmp(k, "product_id") == 0 && BSON_ITER_HOLDS_UTF8(&line))
				pid = bson_iter_utf8(&line, NULL);
			else if (strcmp(k, "quantity") == 0 &&
				 (BSON_ITER_HOLDS_INT32(&line) || BSON_ITER_HOLDS_INT64(&line)))
				q = bson_iter_as_int64(&line);
			else
				good = false;
		}
		snprintf(f, sizeof(f), "lines[%d]", m);
		if (!good || !pid || !tr_is_object_id(pid) || q <= 0) {
			tr_problem_field(
			    c, tr_arena_strdup(c->req->arena, f),
			    "must be {\"product_id\", \"quantity\" (a whole number above "
			    "0)}");
			ok = false;
			m++;
			continue;
		}
		bson_oid_t oid;
		bson_oid_init_from_string(&oid, pid);
		int i;
		for (i = 0; i < n && !bson_oid_equal(&products[i], &oid); i++)
			;
		if (i == n) {
			tr_problem_field(c, tr_arena_strdup(c->req->arena, f),
					 "names a product the order does not have");
			ok = false;
			m++;
			continue;
		}
		for (int j = 0; j < m; j++)
			if (ok && out[j].index == i) {
				tr_problem_field(c, tr_arena_strdup(c->req->arena, f),
						 "names a product twice");
				ok = false;
			}
		out[m++] = (struct ship_line){.index = i, .product = oid, .quantity = q};
	}
	if (ok && m == 0) {
		tr_problem_field(c, "lines", "must name at least one product");
		ok = false;
	}
	return ok ? m : -1;
}

/* Adds the shipment's quantities to the order's lines and names it pending,
 * on the order's version; 409 when more than remains. */
static int
claim(struct tr_ctx *c, const char *id, const char *sid, struct ship_line *sl, int m, bson_t *order)
{
	for (int attempt = 0; attempt < 20; attempt++) {
		bson_oid_t products[MAX_SHIP_LINES];
		int64_t qty[MAX_SHIP_LINES], shipped[MAX_SHIP_LINES];
		bson_t set = BSON_INITIALIZER, lines, line, pending, out = BSON_INITIALIZER;
		bson_iter_t it, arr, field;
		int n = lines_of(order, products, qty, shipped), rc;

		/* a retry of this shipment: claimed already */
		if (bson_iter_init_find(&it, order, "_pending_shipments") &&
		    bson_iter_recurse(&it, &arr))
			while (bson_iter_next(&arr))
				if (BSON_ITER_HOLDS_UTF8(&arr) &&
				    strcmp(bson_iter_utf8(&arr, NULL), sid) == 0) {
					bson_destroy(&set);
					bson_destroy(&out);
					return TR_OK;
				}
		for (int j = 0; j < m; j++)
			if (sl[j].quantity > qty[sl[j].index] - shipped[sl[j].index]) {
				char *f = tr_arena_alloc(c->req->arena, 32),
				     *msg = tr_arena_alloc(c->req->arena, 96);
				snprintf(f, 32, "lines[%d]", j);
				snprintf(msg, 96, "%lld remains to ship",
					 (long long)(qty[sl[j].index] - shipped[sl[j].index]));
				tr_problem(c, 409, "conflict", "more than remains to ship");
				tr_problem_field(c, f, msg);
				bson_destroy(&set);
				bson_destroy(&out);
				return TR_ELIMIT;
			}
		/* the lines again, with what ships now added */
		BSON_APPEND_ARRAY_BEGIN(&set, "lines", &lines);
		int i = 0;
		if (bson_iter_init_find(&it, order, "lines") && bson_iter_recurse(&it, &arr))
			while (bson_iter_next(&arr)) {
				char key[16];
				const char *k;
				int64_t add = 0;
				for (int j = 0; j < m; j++)
					if (sl[j].index == i)
						add = sl[j].quantity;
				bson_uint32_to_string((uint32_t)i, &k, key, sizeof(key));
				BSON_APPEND_DOCUMENT_BEGIN(&lines, k, &line);
				bool more = bson_iter_recurse(&arr, &field);
				while (more && bson_iter_next(&field)) {
					if (strcmp(bson_iter_key(&field), "shipped") == 0)
						BSON_APPEND_INT64(&line, "shipped",
								  bson_iter_as_int64(&field) + add);
					else
						bson_append_iter(&line, NULL, 0, &field);
				}
				bson_append_document_end(&lines, &line);
				i++;
			}
		bson_append_array_end(&set, &lines);
		BSON_APPEND_ARRAY_BEGIN(&set, "_pending_shipments", &pending);
		int np = 0;
		if (bson_iter_init_find(&it, order, "_pending_shipments") &&
		    bson_iter_recurse(&it, &arr))
			while (bson_iter_next(&arr)) {
				char key[16];
				const char *k;
				bson_uint32_to_string((uint32_t)np++, &k, key, sizeof(key));
				bson_append_iter(&pending, k, -1, &arr);
			}
		char key[16];
		const char *k;
		bson_uint32_to_string((uint32_t)np, &k, key, sizeof(key));
		BSON_APPEND_UTF8(&pending, k, sid);
		bson_append_array_end(&set, &pending);
		rc = tr_db_update(c->db, ERP_ORDERS, id, tr_doc_int(order, "version", 0), &set,
				  NULL, &out);
		bson_destroy(&set);
		(void)n;
		if (rc != TR_EVERSION) {
			if (rc == TR_OK) {
				bson_destroy(order);
				bson_copy_to(&out, order);
			}
			bson_destroy(&out);
			return rc;
		}
		bson_destroy(&out);
		bson_destroy(order);
		if ((rc = tr_db_get(c->db, ERP_ORDERS, id, order)) != TR_OK)
			return rc;
	}
	return TR_EBUSY;
}

/* The order without the shipment pending, and its status once all has
 * shipped. */
static int
settle_order(struct tr_db *db, const char *id, const char *sid, bson_t *out)
{
	for (int attempt = 0; attempt < 20; attempt++) {
		bson_t order, set = BSON_INITIALIZER, pending;
		bson_iter_t it, arr;
		int np = 0, rc = tr_db_get(db, ERP_ORDERS, id, &order);
		if (rc != TR_OK) {
			bson_destroy(&order);
			bson_destroy(&set);
			return rc;
		}
		BSON_APPEND_ARRAY_BEGIN(&set, "_pending_shipments", &pending);
		if (bson_iter_init_find(&it, &order, "_pending_shipments") &&
		    bson_iter_recurse(&it, &arr))
			while (bson_iter_next(&arr))
				if (!BSON_ITER_HOLDS_UTF8(&arr) ||
				    strcmp(bson_iter_utf8(&arr, NULL), sid) != 0) {
					char key[16];
					const char *k;
					bson_uint32_to_string((uint32_t)np++, &k, key, sizeof(key));
					bson_append_iter(&pending, k, -1, &arr);
				}
		bson_append_array_end(&set, &pending);
		const char *status = tr_doc_str(&order, "status");
		if (status && erp_order_fully_shipped(&order)) {
			if (strcmp(status, "paid") == 0)
				BSON_APPEND_UTF8(&set, "status", "completed");
			else if (strcmp(status, "confirmed") == 0)
				BSON_APPEND_UTF8(&set, "status", "shipped");
		}
		bson_destroy(out);
		rc = tr_db_update(db, ERP_ORDERS, id, tr_doc_int(&order, "version", 0), &set, NULL,
				  out);
		bson_destroy(&order);
		bson_destroy(&set);
		if (rc != TR_EVERSION)
			return rc;
	}
	return TR_EBUSY;
}

void
erp_order_ship(struct tr_ctx *c)
{
	bson_t order = BSON_INITIALIZER, doc = BSON_INITIALIZER, stored = BSON_INITIALIZER,
	       settled = BSON_INITIALIZER, lines;
	bson_oid_t products[MAX_SHIP_LINES], oid, wid, soid;
	int64_t qty[MAX_SHIP_LINES], shipped[MAX_SHIP_LINES], total_cost = 0;
	struct ship_line *sl = tr_arena_alloc(c->req->arena, MAX_SHIP_LINES * sizeof(*sl));
	char id[25], sid[25], wh[25], seed[160], op[96];
	int m, rc;

	bson_destroy(&order);
	if (!sl) {
		tr_problem_from_err(c, TR_ENOMEM);
		goto out;
	}
	if (!tr_res_load(c, &erp_orders, tr_param(c, 0), &order))
		goto out;
	const char *status = tr_doc_str(&order, "status");
	if (!status || !(strcmp(status, "confirmed") == 0 || strcmp(status, "invoiced") == 0 ||
			 strcmp(status, "paid") == 0)) {
		tr_problem(c, 409, "conflict", "only a confirmed order ships");
		goto out;
	}
	int n = lines_of(&order, products, qty, shipped);
	if ((m = read_lines(c, products, n, sl)) < 0)
		goto out;
	tr_doc_oid(&order, "_id", &oid);
	bson_oid_to_string(&oid, id);
	tr_doc_oid(&order, "warehouse_id", &wid);
	bson_oid_to_string(&wid, wh);
	const char *currency = tr_arena_strdup(c->req->arena, tr_doc_str(&order, "currency"));
	if (c->req->idempotency_key)
		snprintf(seed, sizeof(seed), "shipment:%s:%.100s", id, c->req->idempotency_key);
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

	if ((rc = claim(c, id, sid, sl, m, &order)) != TR_OK) {
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
			tr_problem_from_err(c, rc);
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
			tr_problem_from_err(c, rc);
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
		rc = settle_order(c->db, id, sid, &settled);
	if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
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
