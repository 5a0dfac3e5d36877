/* The ERP module (CONTRACT.md "ERP"), what its files share.
 *
 * catalog.c: products and warehouses, declarations on the resource engine.
 * stock.c: stock moves on registers, the stock they leave, reversals, and
 * the settling of moves whose writer died halfway.
 * ledger.c: the chart of accounts and the journal, a hash-chained register;
 * ledger_check.c its verify, period close and trial balance.
 * checks.c: the invariants, computed afresh (GET /v1/erp/checks).
 * orders.c: sales orders, priced exactly, confirmed all or nothing.
 * billing.c: invoices numbered without gaps, payments never beyond the total.
 * shipping.c: shipments from reservations at moving-average cost.
 * purchasing.c: suppliers, purchase orders and their receipts.
 * parts.c: lines fulfilled in parts (shipments, receipts), claimed exactly.
 * reports.c: stock valuation and receivables ageing.
 * boms.c: bills of materials, versions, loops refused, explosion.
 * work_orders.c: making products from components, reserved, consumed and
 * received exactly.
 * timeline.c: a client's orders and invoices on its timeline (timeline.h).
 * sales.c: what was sold, by product and period, for other modules' reports.
 * direct.c: the routes run for callers without a request (the demo seed).
 * people.h: departments, employees and the org chart (people.c,
 * people_tree.c, org_chart.c).
 * reorder.c, planning.c, drafts.c: reorder rules, the planning runs that
 * draft purchase orders for what fell below them (and the daily job), and
 * the drafts' approval or cancellation.
 *
 * Stock lives in one register per product and warehouse,
 * "erp.stock/<product>/<warehouse>", with the counters on_hand, reserved,
 * available (on_hand - reserved, kept as a counter so a floor guards it)
 * and value (minor units of the product's price currency). Its cost is the
 * moving average of that register: stock leaving takes value * q /
 * on_hand, rounded half to even, reckoned on the very state the movement
 * follows (register.h), so concurrent moves never mis-cost each other. */
#ifndef TR_ERP_H
#define TR_ERP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <bson/bson.h>

#include "resource.h"

#define ERP_PRODUCTS "erp_products"
#define ERP_WAREHOUSES "erp_warehouses"
#define ERP_MOVES "erp_stock_moves"
#define ERP_SLOTS "erp_stock_slots" /* which (product, warehouse) pairs hold stock */
#define ERP_ACCOUNTS "erp_accounts"
#define ERP_ORDERS "erp_orders"
#define ERP_INVOICES "erp_invoices"
#define ERP_PAYMENTS "erp_payments"
#define ERP_SHIPMENTS "erp_shipments"
#define ERP_SUPPLIERS "erp_suppliers"
#define ERP_PURCHASE_ORDERS "erp_purchase_orders"
#define ERP_BOMS "erp_boms"
#define ERP_WORK_ORDERS "erp_work_orders"
#define ERP_LEDGER_KEY "erp.ledger" /* the journal's register (ledger.c) */
#define ERP_MAX_LINES 40
#define ERP_SETTLE_QUEUE "erp.stock.settle"

extern const struct tr_resource erp_products, erp_warehouses, erp_moves, erp_accounts, erp_orders,
    erp_invoices, erp_payments, erp_shipments, erp_suppliers, erp_purchase_orders;

/* The ERP's part of a client's timeline (timeline.c). */
extern const struct tr_timeline erp_timeline;

/* What was sold, by product (sales.c; module.h, sales_by_product). */
struct tr_sales_query;
int erp_sales_by_product(struct tr_db *db, const struct tr_sales_query *q,
			 int (*line)(void *arg, const bson_oid_t *product, int64_t at, int64_t net),
			 void *arg);

/* Bills of materials (boms.c). A component of a bill: a product and its
 * quantity in the component's smallest unit, per batch of the bill. */
#define ERP_MAX_BOM_COMPONENTS 100
#define ERP_BOM_DEPTH 16 /* levels of bills below a product */
extern const struct tr_resource erp_boms, erp_work_orders;
struct erp_component {
	bson_oid_t product;
	int64_t quantity;
};
/* The bill's components (up to ERP_MAX_BOM_COMPONENTS). */
int erp_bom_components(const bson_t *bom, struct erp_component *out);
/* need[i] = comp[i].quantity x made / batch for each component, when each
 * is whole; false with *bad the first that is not. */
bool erp_bom_scale(const struct erp_component *comp, int n, int64_t batch, int64_t made,
		   int64_t *need, int *bad);
/* The product's active bill into *bom (initialised); TR_ENOTFOUND when it
 * has none. */
int erp_active_bom(struct tr_db *db, const bson_oid_t *product, bson_t *bom);
/* Do these components of product stay clear of it through active bills?
 * Otherwise a 422 on field naming the loop by SKU. */
bool erp_bom_loop_free(struct tr_ctx *c, const bson_oid_t *product,
		       const struct erp_component *comp, int n, const char *field);
void erp_bom_activate(struct tr_ctx *c);
void erp_bom_explosion(struct tr_ctx *c);
void erp_wo_release(struct tr_ctx *c); /* work_orders.c */
void erp_wo_complete(struct tr_ctx *c);
void erp_wo_cancel(struct tr_ctx *c);

/* Reserving every line of a record or none (reserve.c): an order's
 * confirmation, a work order's release. */
struct erp_hold {
	const char *coll;
	const char *kind;		   /* "order", "work_order": names the settle job's kind */
	const char *name;		   /* "order", "work order": in answers */
	const char *op;			   /* operation ids: <op>:<id>:<attempt>:<line> */
	const char *busy, *before, *after; /* statuses while, before and after */
	const char *attempt_field;	   /* the attempt that held, on the record */
	const char *field;		   /* of the lines, in problems: "lines" */
};
extern const struct erp_hold erp_order_hold, erp_wo_hold;
/* Reserves qty[i] of products[i] in the record's warehouse_id, every line
 * or none; true with *out the record as stored (status after, its
 * _reservations); otherwise the problem is set (409 insufficient-stock
 * naming the lines). */
bool erp_hold_all(struct tr_ctx *c, const struct erp_hold *h, const bson_t *rec,
		  const bson_oid_t *products, const int64_t *qty, int n, bson_t *out);
/* The settle job of an attempt: {"order" (the record), "kind", "attempt",
 * "lines"}. */
int erp_hold_settle(struct tr_db *db, const struct erp_hold *h, const bson_t *payload, char *err,
		    size_t errlen);
bool erp_warehouse_allows_negative(struct tr_db *db, const bson_oid_t *wid);

/* A priced order line (orders.c). */
struct erp_order_line {
	bson_oid_t product;
	int64_t quantity, unit_price, discount_bp, tax_rate_bp, scale;
	int64_t net, tax, total;
};

void erp_order_confirm(struct tr_ctx *c);
void erp_order_cancel(struct tr_ctx *c);
void erp_order_invoice(struct tr_ctx *c); /* billing.c */
void erp_order_pay(struct tr_ctx *c);
void erp_order_ship(struct tr_ctx *c); /* shipping.c */
void erp_po_receive(struct tr_ctx *c); /* purchasing.c */
/* Parts of records with lines (parts.c): a shipment of an order, a receipt
 * of a purchase order. */
#define ERP_MAX_DOC_LINES 100
struct erp_claim {
	int index; /* of the record's line */
	bson_oid_t product;
	int64_t quantity, cost;
};
/* The record's lines: product, quantity and what is done (done_field). */
int erp_lines_of(const bson_t *doc, const char *done_field, bson_oid_t *products, int64_t *qty,
		 int64_t *done);
/* The body's {"lines": [{"product_id", "quantity"}]}, each matched to the
 * record's line of that product; -1 after field errors. */
int erp_read_claim(struct tr_ctx *c, const bson_oid_t *products, int n, struct erp_claim *out);
/* Adds the part's quantities to the lines' done_field and names part sid
 * in pending_field, on the record's version (read again when it moved),
 * while the record's status is one of statuses;
 * TR_ELIMIT after a 409 when more than remains. *doc becomes the record as
 * stored. A part already pending is claimed already: TR_OK. */
int erp_claim_lines(struct tr_ctx *c, const char *coll, const char *id, const char *done_field,
		    const char *pending_field, const char *sid, const struct erp_claim *sl, int m,
		    const char *const *statuses, bson_t *doc);
/* The record without part sid pending, and the status status_of says
 * (NULL: unchanged); *out the record as stored. */
int erp_unpend(struct tr_db *db, const char *coll, const char *id, const char *pending_field,
	       const char *sid, const char *(*status_of)(const bson_t *doc), bson_t *out);

/* Has every line of the order shipped in full? */
bool erp_order_fully_shipped(const bson_t *order);

/* A journal entry to post: debits equal credits, at least two lines. */
struct erp_line {
	char account[16];
	int64_t debit, credit;
};

struct erp_entry {
	char id[25];   /* its id (24 hex) */
	char date[11]; /* YYYY-MM-DD */
	char memo[504];
	char currency[4];
	char source[24];   /* manual, reversal, receipt, write_off, ... */
	char reverses[25]; /* the entry it reverses, or "" */
	int nlines;
	struct erp_line lines[ERP_MAX_LINES];
};

struct tr_db;
/* Posts an entry under op_id (once: again, *replayed and the first one).
 * TR_ELIMIT: its date is in a closed period; TR_EINVALID: a bad date or
 * line count. *movement is the entry's movement. */
int erp_ledger_post(struct tr_db *db, const struct erp_entry *en, const char *op_id,
		    bson_t *movement, bool *replayed);
/* The entry a journal movement carries; false when it carries none (a
 * period's close). */
bool erp_entry_of(const bson_t *movement, struct erp_entry *en);
/* The chain: SHA-256 of the previous hash and the entry numbered seq; the
 * head a movement follows (before) or leaves (after). */
void erp_chain_hash(const uint8_t prev[32], const struct erp_entry *en, long long seq,
		    uint8_t out[32]);
void erp_chain_words(const bson_t *movement, bool before, uint8_t out[32]);
/* The tenant's default chart exists. */
int erp_chart_ensure(struct tr_db *db);
/* Today (UTC) as YYYY-MM-DD. */
void erp_today(char out[11]);

void erp_journal_create(struct tr_ctx *c);
void erp_journal_list(struct tr_ctx *c);
void erp_journal_get(struct tr_ctx *c);
void erp_journal_reverse(struct tr_ctx *c);
void erp_ledger_verify(struct tr_ctx *c);
void erp_period_close(struct tr_ctx *c);
void erp_trial_balance(struct tr_ctx *c);
void erp_checks(struct tr_ctx *c); /* checks.c */
/* The invariants of GET /v1/erp/checks, in this order, computed afresh for
 * db's tenant: ok[i] for each; the answer's body too when body is not NULL
 * ({"checks": [{"name", "ok", "detail"}], "ok"}). */
#define ERP_NCHECKS 4
extern const char *const erp_check_names[ERP_NCHECKS];
int erp_checks_compute(struct tr_db *db, bson_t *body, bool ok[ERP_NCHECKS]);
/* Checked all the time (health.c): work that changes stock or money
 * touches its tenant, which schedules a check job now and then; results
 * (of the job and of GET /v1/erp/checks) are recorded for GET /metrics. */
#define ERP_CHECKS_QUEUE "erp.checks"
struct tr_job;
void erp_health_touch(const char *tenant);
void erp_health_record(const char *tenant, const bool ok[ERP_NCHECKS]);
int erp_checks_run(const struct tr_job *job, char *err, size_t errlen);
char *erp_metrics(void);
void erp_stock_valuation(struct tr_ctx *c); /* reports.c */
void erp_ar_aging(struct tr_ctx *c);

/* Helpers (util.c). A counter of a movement or register state: sub is
 * "deltas", "after" or "values"; 0 when absent. */
int64_t erp_counter(const bson_t *doc, const char *sub, const char *name);
int64_t erp_after(const bson_t *movement, const char *counter);
/* field.amount of a record (a money field), 0 when absent. */
int64_t erp_money_amount(const bson_t *doc, const char *field);
/* Is s an ISO 4217 code's shape (three capital letters)? */
bool erp_currency_ok(const char *s);
/* {"amount", "currency"} as doc.name. */
void erp_append_money(bson_t *doc, const char *name, int64_t amount, const char *currency);

/* Posts the entry id (dated today; lines of 0 left out) once, under the
 * operation "erp.entry:<id>"; nothing when fewer than two lines remain. */
int erp_post_lines(struct tr_db *db, const char *id, const char *memo, const char *currency,
		   const char *source, const struct erp_line *lines, int n);
/* A 24-hex id derived from a seed: the same seed, the same id. */
void erp_derived_id(const char *seed, char out[25]);
/* The id of what a request makes of record (a shipment, a payment, a
 * receipt, a completion: kind): derived from the record, the caller and
 * the request's Idempotency-Key, so a retried request names the same
 * thing; a fresh one without a key. */
void erp_request_id(const struct tr_ctx *c, const char *kind, const char *record, char out[25]);

/* A failure after the first write of a change that a retry finishes: 503
 * with Retry-After (never stored as the key's answer, so asking again with
 * the same Idempotency-Key runs the idempotent steps again). */
void erp_unfinished(struct tr_ctx *c, int rc);

/* q * num / den rounded half to even, for exact money from quantities;
 * false when the result does not fit (or den is 0). */
bool erp_muldiv_half_even(int64_t q, int64_t num, int64_t den, int64_t *out);

/* Stock moving at the average of the register state it is appended to
 * (a tr_reg_post reckon): q > 0 leaves, taking value x q / on_hand (all
 * of it when q takes all), q < 0 arrives at the same rate; every counter
 * but "value" moves by -q. */
struct erp_reckoning {
	int64_t q;
};
struct tr_reg_state;
struct tr_reg_delta;
bool erp_at_average(void *arg, const struct tr_reg_state *state, struct tr_reg_delta *deltas,
		    size_t n);

/* 10^scale for a product's uom_scale (0..6). */
int64_t erp_scale_factor(int64_t scale);

/* A receipt into stock under a given move id (the same id again: the
 * move made the first time), as POST /v1/erp/stock/moves would make it;
 * sets the problem and returns non-zero when it cannot. */
struct erp_receipt {
	bson_oid_t id, product, warehouse;
	int64_t quantity, unit_cost;
	const char *currency, *reference;
};
int erp_stock_receive(struct tr_ctx *c, const struct erp_receipt *r, bson_t *stored);

/* The product and warehouse pair holds stock (listed, checked): before
 * the first movement of its register. */
int erp_stock_slot(struct tr_db *db, const bson_oid_t *product, const bson_oid_t *warehouse);
void erp_stock_list(struct tr_ctx *c);
void erp_move_reverse(struct tr_ctx *c);

/* Work a writer may leave halfway when its process dies (a stock move, an
 * order's confirmation, a shipment) schedules a settle job before its
 * first write, erp_settle_after_ms later; the job finishes or undoes what
 * the writer left, and does nothing when the writer finished. Its payload
 * names the work: {"id", "key"[, "to_key", "reverses"]} for a move,
 * {"order", "kind", "attempt", "lines"} for an order's confirmation or a
 * work order's release (kind "work_order"), {"order", "completion",
 * "quantity"} for a work order's completion, {"order", "invoice"}
 * for an invoice, {"order", "shipment",
 * "warehouse", "currency", "lines": [[index, product, quantity]...]} for a
 * shipment. Each returns TR_OK when nothing is left to do.  */
struct tr_job;
int erp_settle_run(const struct tr_job *job, char *err, size_t errlen);
int erp_shipment_settle(struct tr_db *db, const char *tenant, const bson_t *payload, char *err,
			size_t errlen); /* shipping.c */
int erp_invoice_settle(struct tr_db *db, const char *tenant, const bson_t *payload, char *err,
		       size_t errlen); /* billing.c */
int erp_wo_completion_settle(struct tr_db *db, const char *tenant, const bson_t *payload, char *err,
			     size_t errlen); /* work_orders.c */
/* When a settle job scheduled now runs (ms since the epoch), and the
 * scheduling (TR_OK or TR_EUNAVAILABLE). */
int64_t erp_settle_at(void);
int erp_schedule_settle(const char *tenant, const char *payload);
/* Fault tests: the pause debug_step_delay_ms after a register write of a
 * multi-step operation (none in production). */
void erp_step_pause(void);

/* The module (module.c): its route table and resources. */
extern const struct tr_module tr_erp_module;

/* Runs the ERP route named by route ("POST /v1/erp/orders/{id}/confirm",
 * as the route table spells it; a resource's create "POST
 * /v1/erp/orders", get "GET /v1/erp/orders/{id}" and change "PATCH
 * /v1/erp/departments/{id}" too) on db's tenant
 * (tenant: the same, which events and jobs name) as user, through the
 * code the route runs (direct.c): id is the path's
 * {id} (NULL when it has none), body the JSON body (NULL: none), key an
 * Idempotency-Key or NULL. Returns the HTTP status the route answers, with
 * the answer's body in *answer (initialised by the call; a problem as
 * {status, type, detail, errors}), or TR_EINVALID (negative) for a route
 * the module does not have. No permission is checked: for trusted callers
 * only. Worker thread or command. */
int erp_direct(struct tr_db *db, const bson_oid_t *tenant, const bson_oid_t *user,
	       const char *route, const char *id, const bson_t *body, const char *key,
	       bson_t *answer);
/* Reorder planning (reorder.c, planning.c, drafts.c). */
#define ERP_REORDER_RULES "erp_reorder_rules"
#define ERP_PLANNING "erp_planning" /* one record per tenant: a plan under way, the job chain */
#define ERP_PLANNING_QUEUE "erp.planning"
#define ERP_PLANNING_MAX 1000000000000LL /* largest quantity or unit cost of a rule */
extern const struct tr_resource erp_reorder_rules;
/* Runs planning for db's tenant (c: the request it answers, whose events
 * go out with it; NULL in a job): drafts what is short, exactly once
 * across processes. *answer (when not NULL; initialised by the call on
 * TR_OK) is {"drafts": [...], "short": [...]}; *nrules the tenant's
 * rules. */
int erp_planning_run(struct tr_db *db, struct tr_ctx *c, const char *tenant, bson_t *answer,
		     size_t *nrules);
/* The tenant's daily planning job is scheduled (a chain is started when
 * there is none, or when its job was lost). */
int erp_planning_ensure_job(struct tr_db *db, const char *tenant);
int erp_planning_job(const struct tr_job *job, char *err, size_t errlen);
void erp_planning_run_route(struct tr_ctx *c);
void erp_po_approve(struct tr_ctx *c); /* drafts.c */
void erp_po_cancel(struct tr_ctx *c);

#endif
