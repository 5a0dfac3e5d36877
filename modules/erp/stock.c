/* Stock moves (CONTRACT.md "ERP"): receipts, write-offs, transfers and
 * adjustments, posted on the stock registers (erp.h) and recorded as
 * moves that are never changed; a reversal is a new move.
 *
 * A move is written in this order, each step idempotent:
 *   1. a settle job is scheduled for the move's id (erp_settle_after_ms
 *      later, a minute by default);
 *   2. its movements are posted under operation ids made of its id
 *      ("erp.move:<id>", "erp.move:<id>:in" for a transfer's arrival),
 *      each carrying the move in its meta;
 *   3. the move record is inserted with that id.
 * A writer that dies between 2 and 3 leaves movements without a record:
 * the settle job finds them by their operation ids and writes the record
 * (and a transfer's arrival). If it finds none, it posts an empty movement
 * under the operation id, so a writer that was only slow can no longer
 * post it: a move happens wholly or not at all. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "erp.h"
#include "events.h"
#include "jobs.h"
#include "json.h"
#include "log.h"
#include "register.h"

#define QTY_MAX 1000000000000000LL
#define STOCK_PAIRS_MAX 1000

static const char *const kinds[] = {"receipt", "write_off", "transfer", "adjustment", NULL};
static const char *const move_sorts[] = {"-created_at", "created_at", NULL};

static const struct tr_field move_fields[] = {
    {"kind", TR_K_ENUM, TR_F_REQUIRED | TR_F_FILTER, 0, 0, kinds, NULL},
    {"product_id", TR_K_REF, TR_F_REQUIRED | TR_F_FILTER | TR_F_NARROW, 0, 0, NULL, ERP_PRODUCTS},
    {"warehouse_id", TR_K_REF, TR_F_REQUIRED | TR_F_FILTER, 0, 0, NULL, ERP_WAREHOUSES},
    {"to_warehouse_id", TR_K_REF, 0, 0, 0, NULL, ERP_WAREHOUSES},
    {"quantity", TR_K_QUANTITY, TR_F_REQUIRED, -QTY_MAX, QTY_MAX, NULL, NULL},
    {"unit_cost", TR_K_MONEY, 0, 0, 1000000000000LL, NULL, NULL},
    {"reason", TR_K_LINE, 0, 1, 500, NULL, NULL},
    {"reference", TR_K_LINE, TR_F_FILTER | TR_F_NARROW, 1, 200, NULL, NULL},
    /* what the move did: value is the change of the stock's value at
     * warehouse_id, on_hand_after its quantity after the move */
    {"value", TR_K_MONEY, TR_F_SERVER, 0, 0, NULL, NULL},
    {"on_hand_after", TR_K_QUANTITY, TR_F_SERVER, 0, 0, NULL, NULL},
    {"to_on_hand_after", TR_K_QUANTITY, TR_F_SERVER, 0, 0, NULL, NULL},
    {"reverses", TR_K_REF, TR_F_SERVER | TR_F_FILTER | TR_F_NARROW, 0, 0, NULL, ERP_MOVES},
    {NULL, 0, 0, 0, 0, NULL, NULL},
};

/* ---- exact arithmetic ---- */

bool
erp_muldiv_half_even(int64_t q, int64_t num, int64_t den, int64_t *out)
{
	__int128 p = (__int128)q * num, quo, rem;

	if (den == 0)
		return false;
	if (den < 0)
		p = -p, den = -den;
	quo = p / den;
	rem = p % den;
	if (rem != 0) {
		__int128 twice = rem < 0 ? -2 * rem : 2 * rem;
		if (twice > den || (twice == den && (quo % 2 != 0)))
			quo += p < 0 ? -1 : 1;
	}
	if (quo > INT64_MAX || quo < INT64_MIN)
		return false;
	*out = (int64_t)quo;
	return true;
}

int64_t
erp_scale_factor(int64_t scale)
{
	int64_t f = 1;

	for (int64_t i = 0; i < scale && i < 18; i++)
		f *= 10;
	return f;
}

/* ---- registers ---- */

static void
stock_key(char *out, size_t len, const bson_oid_t *product, const bson_oid_t *warehouse)
{
	char p[25], w[25];

	bson_oid_to_string(product, p);
	bson_oid_to_string(warehouse, w);
	snprintf(out, len, "erp.stock/%s/%s", p, w);
}

/* Stock leaving at the moving average of the state it leaves: q of
 * on_hand n worth v costs v * q / n (all of v when q takes it all, none
 * when there is none). Arriving at the average (a positive adjustment):
 * the same rate. */
bool
erp_at_average(void *arg, const struct tr_reg_state *state, struct tr_reg_delta *deltas, size_t n)
{
	const struct erp_reckoning *r = arg;
	int64_t on_hand = tr_reg_value(state, "on_hand"), value = tr_reg_value(state, "value");
	int64_t q = r->q < 0 ? -r->q : r->q, cost = 0;

	if (on_hand > 0 && value > 0) {
		if (r->q > 0 && q >= on_hand)
			cost = value;
		else if (!erp_muldiv_half_even(q, value, on_hand, &cost))
			cost = 0;
	}
	for (size_t i = 0; i < n; i++) {
		if (strcmp(deltas[i].counter, "value") == 0)
			deltas[i].delta = r->q > 0 ? -cost : cost;
		else /* on_hand, available */
			deltas[i].delta = -r->q;
	}
	return true;
}

/* ---- the record ---- */

/* Completes a move record from its movements: the value change and the
 * quantity after at warehouse_id (and at to_warehouse_id), and where its
 * movements are (for reversals). */
static void
finish_record(bson_t *doc, const char *currency, const bson_t *out, const bson_t *in)
{
	bson_t m, legs, leg;

	BSON_APPEND_DOCUMENT_BEGIN(doc, "value", &m);
	BSON_APPEND_INT64(&m, "amount", erp_counter(out, "deltas", "value"));
	BSON_APPEND_UTF8(&m, "currency", currency);
	bson_append_document_end(doc, &m);
	BSON_APPEND_INT64(doc, "on_hand_after", erp_counter(out, "after", "on_hand"));
	if (in)
		BSON_APPEND_INT64(doc, "to_on_hand_after", erp_counter(in, "after", "on_hand"));
	BSON_APPEND_ARRAY_BEGIN(doc, "_legs", &legs);
	for (int i = 0; i < (in ? 2 : 1); i++) {
		const bson_t *mv = i ? in : out;
		BSON_APPEND_DOCUMENT_BEGIN(&legs, i ? "1" : "0", &leg);
		BSON_APPEND_UTF8(&leg, "key", tr_doc_str(mv, "key"));
		BSON_APPEND_INT64(&leg, "seq", tr_doc_int(mv, "seq", 0));
		bson_append_document_end(&legs, &leg);
	}
	bson_append_array_end(doc, &legs);
}

/* The price currency of a product (stock is valued in it). */
static bool
product_currency(const bson_t *product, char out[4])
{
	bson_iter_t it, sub;

	if (!bson_iter_init(&it, product) ||
	    !bson_iter_find_descendant(&it, "price.currency", &sub) || !BSON_ITER_HOLDS_UTF8(&sub))
		return false;
	snprintf(out, 4, "%s", bson_iter_utf8(&sub, NULL));
	return true;
}

/* ---- the ledger ---- */

/* The journal entry of a move that changed the stock's value by v at its
 * warehouse: inventory (1300) against payables (2000) for a receipt and
 * against expenses (6000) for the rest, either way round by the sign; none
 * for a transfer (it stays in inventory) or a move worth nothing. Posted
 * once, under the move's id, which is the entry's. */
static int
post_entry(struct tr_db *db, const char *move_hex, const char *kind, int64_t v,
	   const char *currency)
{
	struct erp_entry *en;
	bson_t mv;
	bool replayed;
	char op[64];
	const char *other = strcmp(kind, "receipt") == 0 ? "2000" : "6000";
	int64_t a = v > 0 ? v : -v;
	int rc;

	if (strcmp(kind, "transfer") == 0 || v == 0)
		return TR_OK;
	if ((rc = erp_chart_ensure(db)) != TR_OK)
		return rc;
	if (!(en = calloc(1, sizeof(*en))))
		return TR_ENOMEM;
	snprintf(en->id, sizeof(en->id), "%s", move_hex);
	erp_today(en->date);
	snprintf(en->memo, sizeof(en->memo), "stock %s, move %s", kind, move_hex);
	snprintf(en->currency, sizeof(en->currency), "%s", currency);
	snprintf(en->source, sizeof(en->source), "stock.%s", kind);
	en->nlines = 2;
	en->lines[0] = (struct erp_line){.debit = a};
	en->lines[1] = (struct erp_line){.credit = a};
	snprintf(en->lines[0].account, sizeof(en->lines[0].account), "%s", v > 0 ? "1300" : other);
	snprintf(en->lines[1].account, sizeof(en->lines[1].account), "%s", v > 0 ? other : "1300");
	snprintf(op, sizeof(op), "erp.entry:%s", move_hex);
	rc = erp_ledger_post(db, en, op, &mv, &replayed);
	bson_destroy(&mv);
	free(en);
	return rc;
}

/* ---- slots: which pairs hold stock, for listing ---- */

int
erp_stock_slot(struct tr_db *db, const bson_oid_t *product, const bson_oid_t *warehouse)
{
	bson_t doc = BSON_INITIALIZER, stored;
	int rc;

	BSON_APPEND_OID(&doc, "product_id", product);
	BSON_APPEND_OID(&doc, "warehouse_id", warehouse);
	rc = tr_db_insert(db, ERP_SLOTS, &doc, &stored);
	bson_destroy(&stored);
	bson_destroy(&doc);
	return rc == TR_EDUPLICATE ? TR_OK : rc;
}

/* ---- posting a move ---- */

struct plan {
	const char *kind;
	bson_oid_t id, product, warehouse, to_warehouse;
	int64_t quantity, unit_cost, scale;
	bool floor, to_floor, transfer;
	char key[96], to_key[96], id_hex[25], currency[4];
};

static int
schedule_settle(const struct tr_ctx *c, const struct plan *p, const char *reverses)
{
	char payload[400];

	snprintf(payload, sizeof(payload), "{\"id\":\"%s\",\"key\":\"%s\"%s%s%s%s%s%s}", p->id_hex,
		 p->key, p->transfer ? ",\"to_key\":\"" : "", p->transfer ? p->to_key : "",
		 p->transfer ? "\"" : "", reverses ? ",\"reverses\":\"" : "",
		 reverses ? reverses : "", reverses ? "\"" : "");
	return erp_schedule_settle(c->req->principal.tenant_hex, payload);
}

/* The arrival of a transfer at its destination, worth what left. */
static int
post_arrival(struct tr_db *db, const struct plan *p, const bson_t *out, const bson_t *meta,
	     bson_t *in)
{
	char op[64];
	bool replayed;
	int64_t q = p->quantity, cost = -erp_counter(out, "deltas", "value");
	struct tr_reg_delta d[] = {{"on_hand", q}, {"available", q}, {"value", cost}};

	snprintf(op, sizeof(op), "erp.move:%s:in", p->id_hex);
	struct tr_reg_post post = {
	    .key = p->to_key, .op_id = op, .deltas = d, .ndeltas = 3, .meta = meta};
	return tr_register_post(db, &post, in, &replayed);
}

static void
insufficient(struct tr_ctx *c, const bson_t *state)
{
	char *m = tr_arena_alloc(c->req->arena, 160);
	int64_t available = erp_counter(state, "values", "available");

	snprintf(m, 160, "the warehouse has %lld available", (long long)available);
	tr_problem(c, 409, "insufficient-stock", m);
	tr_problem_member(c, "available", available);
}

static bool
load_refs(struct tr_ctx *c, struct plan *p, bson_t *product)
{
	bson_t wh = BSON_INITIALIZER;
	char hex[25];
	bool ok = false;
	bson_iter_t it;

	bson_oid_to_string(&p->product, hex);
	if (tr_db_get(c->db, ERP_PRODUCTS, hex, product) != TR_OK) {
		tr_problem_field(c, "product_id", "names a record that does not exist");
		goto out;
	}
	p->scale = tr_doc_int(product, "uom_scale", 0);
	if (!product_currency(product, p->currency)) {
		tr_problem(c, 409, "conflict",
			   "the product has no price currency to value stock in");
		goto out;
	}
	for (int i = 0; i < (p->transfer ? 2 : 1); i++) {
		const char *field = i ? "to_warehouse_id" : "warehouse_id";
		bson_oid_to_string(i ? &p->to_warehouse : &p->warehouse, hex);
		bson_reinit(&wh);
		bson_destroy(&wh);
		if (tr_db_get(c->db, ERP_WAREHOUSES, hex, &wh) != TR_OK) {
			tr_problem_field(c, field, "names a record that does not exist");
			goto out;
		}
		if (bson_iter_init_find(&it, &wh, "active") && BSON_ITER_HOLDS_BOOL(&it) &&
		    !bson_iter_bool(&it)) {
			tr_problem_field(c, field, "names an inactive warehouse");
			goto out;
		}
		bool negative = bson_iter_init_find(&it, &wh, "allow_negative") &&
				BSON_ITER_HOLDS_BOOL(&it) && bson_iter_bool(&it);
		if (i)
			p->to_floor = !negative;
		else
			p->floor = !negative;
	}
	ok = true;
out:
	bson_destroy(&wh);
	return ok;
}

/* Does the warehouse keep its available stock from going below zero? (It
 * does unless it says otherwise, also when it cannot be read.) */
static bool
warehouse_floor(struct tr_db *db, const bson_oid_t *id)
{
	bson_t wh;
	bson_iter_t it;
	char hex[25];
	bool floor = true;

	bson_oid_to_string(id, hex);
	if (tr_db_get(db, ERP_WAREHOUSES, hex, &wh) == TR_OK &&
	    bson_iter_init_find(&it, &wh, "allow_negative") && BSON_ITER_HOLDS_BOOL(&it))
		floor = !bson_iter_bool(&it);
	bson_destroy(&wh);
	return floor;
}

/* The rules between fields a table cannot say. */
static bool
read_plan(struct tr_ctx *c, const bson_t *set, struct plan *p)
{
	bson_iter_t it, sub;
	bool ok = true;

	p->kind = tr_arena_strdup(c->req->arena, tr_doc_str(set, "kind")); /* set grows later */
	p->quantity = tr_doc_int(set, "quantity", 0);
	tr_doc_oid(set, "product_id", &p->product);
	tr_doc_oid(set, "warehouse_id", &p->warehouse);
	p->transfer = strcmp(p->kind, "transfer") == 0;
	bool receipt = strcmp(p->kind, "receipt") == 0;
	bool adjustment = strcmp(p->kind, "adjustment") == 0;
	if (adjustment ? p->quantity == 0 : p->quantity <= 0) {
		tr_problem_field(c, "quantity",
				 adjustment ? "must not be 0" : "must be greater than 0");
		ok = false;
	}
	if (receipt != bson_has_field(set, "unit_cost")) {
		tr_problem_field(c, "unit_cost",
				 receipt ? "is required for a receipt"
					 : "is given only for a receipt");
		ok = false;
	} else if (receipt && bson_iter_init(&it, set) &&
		   bson_iter_find_descendant(&it, "unit_cost.amount", &sub)) {
		p->unit_cost = bson_iter_as_int64(&sub);
	}
	if (p->transfer != bson_has_field(set, "to_warehouse_id")) {
		tr_problem_field(c, "to_warehouse_id",
				 p->transfer ? "is required for a transfer"
					     : "is given only for a transfer");
		ok = false;
	} else if (p->transfer) {
		tr_doc_oid(set, "to_warehouse_id", &p->to_warehouse);
		if (bson_oid_equal(&p->to_warehouse, &p->warehouse)) {
			tr_problem_field(c, "to_warehouse_id", "must differ from warehouse_id");
			ok = false;
		}
	}
	if (strcmp(p->kind, "write_off") == 0 && !bson_has_field(set, "reason")) {
		tr_problem_field(c, "reason", "is required for a write-off");
		ok = false;
	}
	return ok;
}

static bool post_move(struct tr_ctx *c, struct plan *p, bson_t *set);

/* The create hook of a move: checks, posts its movements and completes
 * the record the engine then inserts. */
static bool
move_hook(struct tr_ctx *c, const struct tr_resource *e, bson_t *set, const bson_t *old)
{
	struct plan p = {0};
	bson_t product = BSON_INITIALIZER;
	bool ok = false;

	(void)e;
	(void)old;
	if (!read_plan(c, set, &p))
		goto done;
	bson_destroy(&product);
	if (!load_refs(c, &p, &product))
		goto done;
	if (strcmp(p.kind, "receipt") == 0) {
		char cur[4] = "";
		bson_iter_t it, sub;
		if (bson_iter_init(&it, set) &&
		    bson_iter_find_descendant(&it, "unit_cost.currency", &sub))
			snprintf(cur, sizeof(cur), "%s", bson_iter_utf8(&sub, NULL));
		if (strcmp(cur, p.currency) != 0) {
			char *m = tr_arena_alloc(c->req->arena, 80);
			snprintf(m, 80, "must be in the product's currency, %s", p.currency);
			tr_problem_field(c, "unit_cost", m);
			goto done;
		}
	}
	bson_oid_init(&p.id, NULL);
	ok = post_move(c, &p, set);
done:
	bson_destroy(&product);
	return ok;
}

/* Posts a checked move under p->id: its movements, its entry, and the
 * record's remaining fields into set (which the caller inserts). */
static bool
post_move(struct tr_ctx *c, struct plan *p_, bson_t *set)
{
	struct plan p = *p_;
	bson_t meta = BSON_INITIALIZER, out = BSON_INITIALIZER, in = BSON_INITIALIZER;
	bool ok = false, replayed;
	int rc;

	bson_oid_to_string(&p.id, p.id_hex);
	stock_key(p.key, sizeof(p.key), &p.product, &p.warehouse);
	if (p.transfer)
		stock_key(p.to_key, sizeof(p.to_key), &p.product, &p.to_warehouse);
	BSON_APPEND_OID(set, "_id", &p.id);

	/* before anything is posted: the pairs can be listed, and the move
	 * will be settled if this writer dies */
	if ((rc = erp_stock_slot(c->db, &p.product, &p.warehouse)) != TR_OK ||
	    (p.transfer && (rc = erp_stock_slot(c->db, &p.product, &p.to_warehouse)) != TR_OK) ||
	    (rc = schedule_settle(c, &p, NULL)) != TR_OK) {
		tr_problem_from_err(c, rc);
		goto done;
	}
	BSON_APPEND_DOCUMENT(&meta, "move", set);
	BSON_APPEND_UTF8(&meta, "currency", p.currency);

	char op[64];
	snprintf(op, sizeof(op), "erp.move:%s", p.id_hex);
	struct tr_reg_delta d[] = {{"on_hand", 0}, {"available", 0}, {"value", 0}};
	struct erp_reckoning r = {.q = p.quantity};
	struct tr_reg_post post = {
	    .key = p.key, .op_id = op, .deltas = d, .ndeltas = 3, .meta = &meta};
	if (strcmp(p.kind, "receipt") == 0) {
		int64_t value;
		if (!erp_muldiv_half_even(p.quantity, p.unit_cost, erp_scale_factor(p.scale),
					  &value)) {
			tr_problem_field(c, "unit_cost", "times the quantity is too large");
			goto done;
		}
		d[0].delta = d[1].delta = p.quantity;
		d[2].delta = value;
	} else {
		/* stock leaving (or an adjustment either way) at the average */
		r.q = strcmp(p.kind, "adjustment") == 0 ? -p.quantity : p.quantity;
		post.reckon = erp_at_average;
		post.reckon_arg = &r;
		post.has_floor = p.floor;
	}
	bson_destroy(&out);
	rc = tr_register_post(c->db, &post, &out, &replayed);
	if (rc == TR_ELIMIT) {
		insufficient(c, &out);
		goto done;
	}
	if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
		goto done;
	}
	if (replayed) {
		/* only this move's own movement finishes it: the settle job's
		 * placeholder means it was given up */
		bson_iter_t it, sub;
		if (!bson_iter_init(&it, &out) ||
		    !bson_iter_find_descendant(&it, "meta.move._id", &sub) ||
		    !BSON_ITER_HOLDS_OID(&sub) || !bson_oid_equal(bson_iter_oid(&sub), &p.id)) {
			tr_problem(c, 409, "conflict",
				   "this move was given up after its first attempt failed; post it "
				   "again as a new move");
			goto done;
		}
	}
	if (p.transfer) {
		bson_destroy(&in);
		rc = post_arrival(c->db, &p, &out, &meta, &in);
		if (rc != TR_OK) { /* the settle job completes it */
			tr_problem_from_err(c, rc);
			goto done;
		}
	}
	rc = post_entry(c->db, p.id_hex, p.kind, erp_counter(&out, "deltas", "value"), p.currency);
	if (rc != TR_OK) { /* the settle job posts it */
		tr_problem_from_err(c, rc);
		goto done;
	}
	finish_record(set, p.currency, &out, p.transfer ? &in : NULL);
	ok = true;
done:
	bson_destroy(&meta);
	bson_destroy(&out);
	bson_destroy(&in);
	return ok;
}

int
erp_stock_receive(struct tr_ctx *c, const struct erp_receipt *r, bson_t *stored)
{
	struct plan p = {0};
	bson_t set = BSON_INITIALIZER, product = BSON_INITIALIZER, cost;
	char hex[25];
	int rc = TR_OK;

	bson_init(stored);
	bson_oid_to_string(&r->id, hex);
	bson_destroy(stored);
	if ((rc = tr_db_get(c->db, ERP_MOVES, hex, stored)) != TR_ENOTFOUND) /* done before */
		goto out;
	BSON_APPEND_UTF8(&set, "kind", "receipt");
	BSON_APPEND_OID(&set, "product_id", &r->product);
	BSON_APPEND_OID(&set, "warehouse_id", &r->warehouse);
	BSON_APPEND_INT64(&set, "quantity", r->quantity);
	BSON_APPEND_DOCUMENT_BEGIN(&set, "unit_cost", &cost);
	BSON_APPEND_INT64(&cost, "amount", r->unit_cost);
	BSON_APPEND_UTF8(&cost, "currency", r->currency);
	bson_append_document_end(&set, &cost);
	if (r->reference)
		BSON_APPEND_UTF8(&set, "reference", r->reference);
	rc = TR_EINVALID;
	bson_destroy(&product);
	if (!read_plan(c, &set, &p) || !load_refs(c, &p, &product))
		goto out;
	if (strcmp(r->currency, p.currency) != 0) {
		tr_problem(c, 409, "conflict", "the product's stock is valued in another currency");
		goto out;
	}
	p.id = r->id;
	if (!post_move(c, &p, &set))
		goto out;
	bson_destroy(stored);
	rc = tr_db_insert(c->db, ERP_MOVES, &set, stored);
	if (rc == TR_EDUPLICATE) {
		bson_destroy(stored);
		rc = tr_db_get(c->db, ERP_MOVES, hex, stored);
	} else if (rc == TR_OK) {
		tr_res_emit(c, &erp_moves, "erp.stock.moved", stored);
	}
out:
	bson_destroy(&set);
	bson_destroy(&product);
	return rc;
}

const struct tr_resource erp_moves = {
    .name = "stock move",
    .coll = ERP_MOVES,
    .path = "/v1/erp/stock/moves",
    .read = "erp.stock.read",
    .write = "erp.stock.write",
    .about = "A receipt, write-off, transfer or adjustment of a product's stock. Never changed "
	     "or deleted: POST .../{id}/reverse posts the reversing move. Stock leaves at its "
	     "moving-average cost per product and warehouse.",
    .topic = "erp.stock",
    .event = "erp.stock",
    .create_event = "erp.stock.moved",
    .fields = move_fields,
    .sorts = move_sorts,
    .hook = move_hook,
    .immutable = true,
};

/* ---- reversal ---- */

/* The legs of a move: [{key, seq}], out first. */
static int
legs_of(const bson_t *move, char keys[2][96], long long seqs[2])
{
	bson_iter_t it, arr, leg;
	int n = 0;

	if (!bson_iter_init_find(&it, move, "_legs") || !BSON_ITER_HOLDS_ARRAY(&it) ||
	    !bson_iter_recurse(&it, &arr))
		return 0;
	while (n < 2 && bson_iter_next(&arr)) {
		bson_t doc;
		uint32_t len;
		const uint8_t *data;
		if (!BSON_ITER_HOLDS_DOCUMENT(&arr))
			continue;
		bson_iter_document(&arr, &len, &data);
		if (!bson_init_static(&doc, data, len) || !bson_iter_init(&leg, &doc))
			continue;
		const char *key = tr_doc_str(&doc, "key");
		snprintf(keys[n], 96, "%s", key ? key : "");
		seqs[n] = tr_doc_int(&doc, "seq", 0);
		n++;
	}
	return n;
}

void
erp_move_reverse(struct tr_ctx *c)
{
	bson_t move = BSON_INITIALIZER, prior = BSON_INITIALIZER, filter = BSON_INITIALIZER,
	       set = BSON_INITIALIZER, stored = BSON_INITIALIZER, mv[2];
	char keys[2][96], id_hex[25];
	char *m = tr_arena_alloc(c->req->arena, 160); /* details outlive this function */
	long long seqs[2];
	bson_oid_t id, orig;
	int n, done = 0, rc;
	bool replayed;
	struct plan p = {0};

	bson_destroy(&move);
	if (!tr_res_load(c, &erp_moves, tr_param(c, 0), &move))
		goto out;
	tr_doc_oid(&move, "_id", &orig);
	if (bson_has_field(&move, "reverses")) {
		tr_problem(c, 409, "conflict", "a reversal is not reversed: post a new move");
		goto out;
	}
	BSON_APPEND_OID(&filter, "reverses", &orig);
	bson_destroy(&prior);
	rc = tr_db_find_one(c->db, ERP_MOVES, &filter, &prior);
	if (rc == TR_OK) {
		bson_oid_t pid;
		char hex[25];
		tr_doc_oid(&prior, "_id", &pid);
		bson_oid_to_string(&pid, hex);
		snprintf(m, 160, "the move was reversed by move %s", hex);
		tr_problem(c, 409, "conflict", m);
		goto out;
	}
	if (rc != TR_ENOTFOUND) {
		tr_problem_from_err(c, rc);
		goto out;
	}
	n = legs_of(&move, keys, seqs);
	if (n == 0) {
		tr_problem_from_err(c, TR_EINTERNAL);
		goto out;
	}
	/* floors: where stock goes out again (a receipt's, a transfer's arrival) */
	tr_doc_oid(&move, "warehouse_id", &p.warehouse);
	p.floor = warehouse_floor(c->db, &p.warehouse);
	if (tr_doc_oid(&move, "to_warehouse_id", &p.to_warehouse))
		p.to_floor = warehouse_floor(c->db, &p.to_warehouse);
	bson_oid_init(&id, NULL);
	bson_oid_to_string(&id, id_hex);
	snprintf(p.id_hex, sizeof(p.id_hex), "%s", id_hex);
	snprintf(p.key, sizeof(p.key), "%s", keys[0]);
	p.transfer = n == 2;
	if (p.transfer)
		snprintf(p.to_key, sizeof(p.to_key), "%s", keys[1]);
	char orig_hex[25];
	bson_oid_to_string(&orig, orig_hex);
	if ((rc = schedule_settle(c, &p, orig_hex)) != TR_OK) {
		tr_problem_from_err(c, rc);
		goto out;
	}
	/* the arrival first: stock goes back from where it went */
	bson_t meta = BSON_INITIALIZER;
	BSON_APPEND_OID(&meta, "reversal", &id);
	for (int i = n - 1; i >= 0; i--) {
		bool floor = i == 1 ? p.to_floor : p.floor;
		rc = tr_register_reverse(c->db, keys[i], seqs[i], floor, 0, &meta, &mv[i],
					 &replayed);
		if (rc != TR_OK) {
			if (rc == TR_ELIMIT) {
				bson_t state = BSON_INITIALIZER;
				bson_destroy(&state);
				if (tr_register_read(c->db, keys[i], &state) == TR_OK)
					insufficient(c, &state);
				else
					tr_problem_from_err(c, TR_EUNAVAILABLE);
				bson_destroy(&state);
			} else {
				tr_problem_from_err(c, rc);
			}
			bson_destroy(&mv[i]);
			break;
		}
		done++;
	}
	bson_destroy(&meta);
	if (done < n) /* an arrival taken back stays so: asking again finishes */
		goto free_mv;
	/* the reversal's id is the one its first movement names: asked again
	 * after a writer died, or twice at once, it is the same record */
	{
		bson_iter_t rit, rsub;
		if (bson_iter_init(&rit, &mv[n - 1]) &&
		    bson_iter_find_descendant(&rit, "meta.reversal", &rsub) &&
		    BSON_ITER_HOLDS_OID(&rsub)) {
			bson_oid_copy(bson_iter_oid(&rsub), &id);
			bson_oid_to_string(&id, id_hex);
		}
	}
	/* the record: the original's fields, the reversed value */
	static const char *const copied[] = {
	    "kind",	"product_id", "warehouse_id", "to_warehouse_id",
	    "quantity", "unit_cost",  "reference",    NULL};
	bson_iter_t it;
	BSON_APPEND_OID(&set, "_id", &id);
	for (const char *const *f = copied; *f; f++)
		if (bson_iter_init_find(&it, &move, *f))
			bson_append_iter(&set, *f, -1, &it);
	snprintf(m, 160, "reversal of move %s", orig_hex);
	BSON_APPEND_UTF8(&set, "reason", m);
	BSON_APPEND_OID(&set, "reverses", &orig);
	{
		char cur[4] = "EUR";
		bson_iter_t sub;
		if (bson_iter_init(&it, &move) &&
		    bson_iter_find_descendant(&it, "value.currency", &sub))
			snprintf(cur, sizeof(cur), "%s", bson_iter_utf8(&sub, NULL));
		finish_record(&set, cur, &mv[0], n == 2 ? &mv[1] : NULL);
		rc = post_entry(c->db, id_hex, tr_doc_str(&move, "kind"),
				erp_counter(&mv[0], "deltas", "value"), cur);
		if (rc != TR_OK) {
			tr_problem_from_err(c, rc);
			goto free_mv;
		}
	}
	bson_destroy(&stored);
	rc = tr_db_insert(c->db, ERP_MOVES, &set, &stored);
	if (rc == TR_EDUPLICATE) {
		snprintf(m, 160, "the move was reversed by move %s", id_hex);
		tr_problem(c, 409, "conflict", m);
		goto free_mv;
	}
	if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
		goto free_mv;
	}
	char *loc = tr_arena_alloc(c->req->arena, 64);
	snprintf(loc, 64, "%s/%s", erp_moves.path, id_hex);
	c->resp->location = loc;
	tr_res_emit(c, &erp_moves, "erp.stock.moved", &stored);
	tr_reply_resource(c, 201, &stored);
free_mv:
	for (int i = n - 1; i >= n - done; i--)
		bson_destroy(&mv[i]);
out:
	bson_destroy(&move);
	bson_destroy(&prior);
	bson_destroy(&filter);
	bson_destroy(&set);
	bson_destroy(&stored);
}

/* ---- the stock ---- */

struct stock_walk {
	struct tr_ctx *c;
	bson_t *items;
	int n, rc;
};

static int
stock_item(void *arg, const bson_t *slot)
{
	struct stock_walk *w = arg;
	bson_oid_t product, warehouse;
	bson_t state = BSON_INITIALIZER, prod = BSON_INITIALIZER, item, money;
	char key[96], key_idx[16], phex[25], whex[25], cur[4] = "";
	const char *k;
	const char *ps = tr_doc_str(slot, "product_id"), *ws = tr_doc_str(slot, "warehouse_id");

	if (!ps || !ws || !tr_is_object_id(ps) || !tr_is_object_id(ws))
		goto out;
	bson_oid_init_from_string(&product, ps);
	bson_oid_init_from_string(&warehouse, ws);
	bson_oid_to_string(&product, phex);
	bson_oid_to_string(&warehouse, whex);
	stock_key(key, sizeof(key), &product, &warehouse);
	bson_destroy(&state);
	if ((w->rc = tr_register_read(w->c->db, key, &state)) != TR_OK)
		goto out;
	bson_destroy(&prod);
	if (tr_db_get(w->c->db, ERP_PRODUCTS, phex, &prod) == TR_OK)
		product_currency(&prod, cur);
	bson_uint32_to_string((uint32_t)w->n++, &k, key_idx, sizeof(key_idx));
	BSON_APPEND_DOCUMENT_BEGIN(w->items, k, &item);
	BSON_APPEND_UTF8(&item, "product_id", phex);
	BSON_APPEND_UTF8(&item, "warehouse_id", whex);
	BSON_APPEND_INT64(&item, "on_hand", erp_counter(&state, "values", "on_hand"));
	BSON_APPEND_INT64(&item, "reserved", erp_counter(&state, "values", "reserved"));
	BSON_APPEND_INT64(&item, "available", erp_counter(&state, "values", "available"));
	BSON_APPEND_DOCUMENT_BEGIN(&item, "value", &money);
	BSON_APPEND_INT64(&money, "amount", erp_counter(&state, "values", "value"));
	BSON_APPEND_UTF8(&money, "currency", cur);
	bson_append_document_end(&item, &money);
	BSON_APPEND_INT64(&item, "seq", tr_doc_int(&state, "seq", 0));
	bson_append_document_end(w->items, &item);
out:
	bson_destroy(&state);
	bson_destroy(&prod);
	return w->rc != TR_OK ? w->rc : 0;
}

void
erp_stock_list(struct tr_ctx *c)
{
	const char *pid = tr_query(c, "product_id"), *wid = tr_query(c, "warehouse_id");
	bson_t filter = BSON_INITIALIZER, body = BSON_INITIALIZER, items;
	bson_oid_t oid;
	int rc;

	for (int i = 0; i < 2; i++) {
		const char *v = i ? wid : pid, *name = i ? "warehouse_id" : "product_id";
		if (!v)
			continue;
		if (!tr_is_object_id(v)) {
			tr_problem_field(c, name, "must be an id");
			continue;
		}
		bson_oid_init_from_string(&oid, v);
		BSON_APPEND_OID(&filter, name, &oid);
	}
	if (c->resp->status)
		goto out;
	BSON_APPEND_ARRAY_BEGIN(&body, "items", &items);
	struct stock_walk w = {.c = c, .items = &items, .rc = TR_OK};
	long long pairs = 0;
	rc = tr_db_count(c->db, ERP_SLOTS, &filter, &pairs);
	if (rc == TR_OK && pairs > STOCK_PAIRS_MAX) {
		bson_append_array_end(&body, &items);
		tr_problem(
		    c, 422, "validation-failed",
		    "more than 1000 product and warehouse pairs hold stock: name a product_id "
		    "or a warehouse_id");
		goto out;
	}
	if (rc == TR_OK)
		rc = tr_db_each(c->db, ERP_SLOTS, &filter, stock_item, &w);
	bson_append_array_end(&body, &items);
	if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
		goto out;
	}
	BSON_APPEND_NULL(&body, "next_cursor");
	tr_reply_json(c, 200, &body);
out:
	bson_destroy(&filter);
	bson_destroy(&body);
}

/* ---- settling ---- */

/* Posts an empty movement under op unless one is there; *found tells
 * whether the real one was, into *mv. */
static int
claim_or_find(struct tr_db *db, const char *key, const char *op, bson_t *mv, bool *found)
{
	struct tr_reg_delta none[] = {{"on_hand", 0}};
	struct tr_reg_post post = {.key = key, .op_id = op, .deltas = none, .ndeltas = 1};
	bool replayed;
	int rc = tr_register_find_op(db, op, mv, found);

	if (rc == TR_OK && *found) {
		bson_iter_t it, sub;
		/* a placeholder an earlier run posted: the move never happened */
		*found =
		    bson_iter_init(&it, mv) && bson_iter_find_descendant(&it, "meta.move", &sub);
		return rc;
	}
	if (rc != TR_OK)
		return rc;
	bson_destroy(mv);
	rc = tr_register_post(db, &post, mv, &replayed);
	/* replayed: the writer posted it after all, a moment ago */
	bson_iter_t it, sub;
	*found = rc == TR_OK && replayed && bson_iter_init(&it, mv) &&
		 bson_iter_find_descendant(&it, "meta.move", &sub);
	return rc;
}

static int
settle_move(struct tr_db *db, const char *tenant, const char *id, const char *key,
	    const char *to_key, char *err, size_t errlen)
{
	bson_t out = BSON_INITIALIZER, in = BSON_INITIALIZER, doc = BSON_INITIALIZER,
	       stored = BSON_INITIALIZER;
	char op[64];
	bool found;
	int rc;

	snprintf(op, sizeof(op), "erp.move:%s", id);
	bson_destroy(&out);
	rc = claim_or_find(db, key, op, &out, &found);
	if (rc != TR_OK || !found)
		goto out; /* never happened, and now never will */
	bson_iter_t it, sub;
	uint32_t len;
	const uint8_t *data;
	bson_t move;
	if (!bson_iter_init(&it, &out) || !bson_iter_find_descendant(&it, "meta.move", &sub) ||
	    !BSON_ITER_HOLDS_DOCUMENT(&sub)) {
		rc = TR_EINTERNAL;
		goto out;
	}
	bson_iter_document(&sub, &len, &data);
	if (!bson_init_static(&move, data, len)) {
		rc = TR_EINTERNAL;
		goto out;
	}
	if (to_key) { /* the arrival, once */
		struct plan p = {0};
		p.quantity = tr_doc_int(&move, "quantity", 0);
		snprintf(p.id_hex, sizeof(p.id_hex), "%s", id);
		snprintf(p.to_key, sizeof(p.to_key), "%s", to_key);
		bson_t meta = BSON_INITIALIZER;
		if (bson_iter_init(&it, &out) && bson_iter_find_descendant(&it, "meta", &sub) &&
		    BSON_ITER_HOLDS_DOCUMENT(&sub)) {
			bson_iter_document(&sub, &len, &data);
			bson_destroy(&meta);
			bson_init_static(&meta, data, len);
		}
		bson_destroy(&in);
		rc = post_arrival(db, &p, &out, &meta, &in);
		bson_destroy(&meta);
		if (rc != TR_OK)
			goto out;
	}
	bson_concat(&doc, &move);
	const char *cur = NULL;
	if (bson_iter_init(&it, &out) && bson_iter_find_descendant(&it, "meta.currency", &sub) &&
	    BSON_ITER_HOLDS_UTF8(&sub))
		cur = bson_iter_utf8(&sub, NULL);
	rc = post_entry(db, id, tr_doc_str(&move, "kind") ? tr_doc_str(&move, "kind") : "",
			erp_counter(&out, "deltas", "value"), cur ? cur : "");
	if (rc != TR_OK)
		goto out;
	finish_record(&doc, cur ? cur : "", &out, to_key ? &in : NULL);
	bson_destroy(&stored);
	rc = tr_db_insert(db, ERP_MOVES, &doc, &stored);
	if (rc == TR_OK) {
		bson_t data_out = BSON_INITIALIZER;
		tr_render_resource(&stored, &data_out);
		tr_emit_background(tenant, "erp.stock", "erp.stock.moved", id, NULL, &data_out);
		bson_destroy(&data_out);
		tr_warn("erp: move %s settled after its writer stopped", id);
	}
	if (rc == TR_EDUPLICATE)
		rc = TR_OK; /* written meanwhile */
out:
	if (rc != TR_OK)
		snprintf(err, errlen, "settling move %s: %s", id, tr_strerror(rc));
	bson_destroy(&out);
	bson_destroy(&in);
	bson_destroy(&doc);
	bson_destroy(&stored);
	return rc;
}

/* The settle job of work on a record (erp.h): which work its payload
 * names. */
static int
settle_record(struct tr_db *db, const char *tenant, const bson_t *payload, char *err, size_t errlen)
{
	const char *kind = tr_doc_str(payload, "kind");

	if (tr_doc_str(payload, "shipment"))
		return erp_shipment_settle(db, tenant, payload, err, errlen);
	if (tr_doc_str(payload, "invoice"))
		return erp_invoice_settle(db, tenant, payload, err, errlen);
	if (tr_doc_str(payload, "completion"))
		return erp_wo_completion_settle(db, tenant, payload, err, errlen);
	return erp_hold_settle(
	    db, kind && strcmp(kind, "work_order") == 0 ? &erp_wo_hold : &erp_order_hold, payload,
	    err, errlen);
}

int
erp_settle_run(const struct tr_job *job, char *err, size_t errlen)
{
	bson_t payload, found = BSON_INITIALIZER;
	struct tr_db *db = NULL;
	const char *id, *key, *to_key, *reverses;
	char perr[64];
	int rc = TR_OK;

	if (tr_json_parse(job->payload, job->payload_len, &payload, perr, sizeof(perr)) == 0 &&
	    tr_doc_str(&payload, "order") && tr_is_object_id(job->tenant)) {
		/* an order's confirmation or shipment */
		if ((db = tr_db_for_tenant(job->tenant))) {
			rc = settle_record(db, job->tenant, &payload, err, errlen);
		} else {
			snprintf(err, errlen, "out of memory");
			rc = TR_ENOMEM;
		}
		goto out;
	}
	if (!(id = tr_doc_str(&payload, "id")) || !tr_is_object_id(id) ||
	    !(key = tr_doc_str(&payload, "key")) || !tr_is_object_id(job->tenant)) {
		bson_destroy(&payload);
		bson_destroy(&found);
		return 0; /* not a settle job: nothing to do */
	}
	to_key = tr_doc_str(&payload, "to_key");
	reverses = tr_doc_str(&payload, "reverses");
	if (!(db = tr_db_for_tenant(job->tenant))) {
		snprintf(err, errlen, "out of memory");
		rc = TR_ENOMEM;
		goto out;
	}
	bson_destroy(&found);
	rc = tr_db_get(db, ERP_MOVES, id, &found);
	if (rc == TR_OK || rc != TR_ENOTFOUND) {
		if (rc != TR_OK)
			snprintf(err, errlen, "database: %s", tr_strerror(rc));
		goto out; /* written as it should be, or ask again later */
	}
	rc = TR_OK;
	if (reverses)
		/* a reversal's movements are once-only by their own ids: the
		 * next POST .../reverse finds them and writes the record */
		goto out;
	rc = settle_move(db, job->tenant, id, key, to_key, err, errlen);
out:
	tr_db_release(db);
	bson_destroy(&payload);
	bson_destroy(&found);
	return rc == TR_OK ? 0 : -1;
}
