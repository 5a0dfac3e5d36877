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
#define ERP_LEDGER_KEY "erp.ledger" /* the journal's register (ledger.c) */
#define ERP_MAX_LINES 40
#define ERP_SETTLE_QUEUE "erp.stock.settle"

extern const struct tr_resource erp_products, erp_warehouses, erp_moves, erp_accounts, erp_orders,
    erp_invoices, erp_payments, erp_shipments;

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

void erp_stock_list(struct tr_ctx *c);
void erp_move_reverse(struct tr_ctx *c);
struct tr_job;
int erp_settle_run(const struct tr_job *job, char *err, size_t errlen);

#endif
