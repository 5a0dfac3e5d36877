/* ERP reports beside the trial balance (ledger_check.c):
 *   GET /v1/erp/reports/stock-valuation  the stock's value per product and
 *       warehouse, its total per currency and the inventory account (1300)
 *       beside it: they are equal;
 *   GET /v1/erp/reports/ar-aging?at       what invoices still have open, by
 *       days past due at a date: current, 1-30, 31-60, 61-90, 90+. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "erp.h"
#include "json.h"
#include "register.h"
#include "util.h"

#define DAY_MS (24LL * 3600 * 1000)
#define MAX_CURRENCIES 8

/* ---- stock valuation ---- */

struct valuation {
	struct tr_ctx *c;
	bson_t *items;
	int n, rc;
	struct {
		char code[4];
		int64_t stock, account;
	} cur[MAX_CURRENCIES];
	int ncur;
};

static int
currency_slot(struct valuation *v, const char *code)
{
	for (int i = 0; i < v->ncur; i++)
		if (strcmp(v->cur[i].code, code) == 0)
			return i;
	if (v->ncur == MAX_CURRENCIES)
		return -1;
	snprintf(v->cur[v->ncur].code, 4, "%s", code);
	v->cur[v->ncur].stock = v->cur[v->ncur].account = 0;
	return v->ncur++;
}

static int
value_pair(void *arg, const bson_t *slot)
{
	struct valuation *v = arg;
	const char *ps = tr_doc_str(slot, "product_id"), *ws = tr_doc_str(slot, "warehouse_id");
	bson_t state = BSON_INITIALIZER, product = BSON_INITIALIZER, item;
	bson_iter_t it, sub;
	char key[96], code[4] = "", idx[16];
	const char *k;

	if (!ps || !ws)
		return 0;
	snprintf(key, sizeof(key), "erp.stock/%s/%s", ps, ws);
	bson_destroy(&state);
	if ((v->rc = tr_register_read(v->c->db, key, &state)) != TR_OK)
		goto out;
	bson_destroy(&product);
	if (tr_db_get(v->c->db, ERP_PRODUCTS, ps, &product) == TR_OK &&
	    bson_iter_init(&it, &product) &&
	    bson_iter_find_descendant(&it, "price.currency", &sub) && BSON_ITER_HOLDS_UTF8(&sub))
		snprintf(code, sizeof(code), "%s", bson_iter_utf8(&sub, NULL));
	int64_t value = erp_counter(&state, "values", "value");
	int slot_i = currency_slot(v, code);
	if (slot_i >= 0)
		v->cur[slot_i].stock += value;
	bson_uint32_to_string((uint32_t)v->n++, &k, idx, sizeof(idx));
	BSON_APPEND_DOCUMENT_BEGIN(v->items, k, &item);
	BSON_APPEND_UTF8(&item, "product_id", ps);
	BSON_APPEND_UTF8(&item, "sku",
			 tr_doc_str(&product, "sku") ? tr_doc_str(&product, "sku") : "");
	BSON_APPEND_UTF8(&item, "warehouse_id", ws);
	BSON_APPEND_INT64(&item, "on_hand", erp_counter(&state, "values", "on_hand"));
	erp_append_money(&item, "value", value, code);
	bson_append_document_end(v->items, &item);
out:
	bson_destroy(&state);
	bson_destroy(&product);
	return v->rc != TR_OK ? v->rc : 0;
}

void
erp_stock_valuation(struct tr_ctx *c)
{
	struct valuation *v = calloc(1, sizeof(*v));
	bson_t body = BSON_INITIALIZER, items, totals, t, ledger = BSON_INITIALIZER;
	bson_iter_t it, vals;
	int rc;

	if (!v) {
		tr_problem_from_err(c, TR_ENOMEM);
		bson_destroy(&body);
		bson_destroy(&ledger);
		return;
	}
	v->c = c;
	v->rc = TR_OK;
	BSON_APPEND_ARRAY_BEGIN(&body, "items", &items);
	v->items = &items;
	rc = tr_db_each(c->db, ERP_SLOTS, NULL, value_pair, v);
	bson_append_array_end(&body, &items);
	bson_destroy(&ledger);
	if (rc == TR_OK)
		rc = tr_register_read(c->db, ERP_LEDGER_KEY, &ledger);
	if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
		goto out;
	}
	if (bson_iter_init_find(&it, &ledger, "values") && bson_iter_recurse(&it, &vals))
		while (bson_iter_next(&vals))
			if (strncmp(bson_iter_key(&vals), "a:1300:", 7) == 0) {
				int i = currency_slot(v, bson_iter_key(&vals) + 7);
				if (i >= 0)
					v->cur[i].account += bson_iter_as_int64(&vals);
			}
	BSON_APPEND_ARRAY_BEGIN(&body, "totals", &totals);
	for (int i = 0; i < v->ncur; i++) {
		char idx[16];
		const char *k;
		bson_uint32_to_string((uint32_t)i, &k, idx, sizeof(idx));
		BSON_APPEND_DOCUMENT_BEGIN(&totals, k, &t);
		BSON_APPEND_UTF8(&t, "currency", v->cur[i].code);
		erp_append_money(&t, "stock", v->cur[i].stock, v->cur[i].code);
		erp_append_money(&t, "inventory_account", v->cur[i].account, v->cur[i].code);
		BSON_APPEND_BOOL(&t, "equal", v->cur[i].stock == v->cur[i].account);
		bson_append_document_end(&totals, &t);
	}
	bson_append_array_end(&body, &totals);
	tr_reply_json(c, 200, &body);
out:
	free(v);
	bson_destroy(&body);
	bson_destroy(&ledger);
}

/* ---- receivables ageing ---- */

static const char *const buckets[] = {"current", "1_30", "31_60", "61_90", "90_plus"};

struct ageing {
	struct tr_ctx *c;
	int64_t at_ms;
	const char *currency;
	int64_t sums[5], total;
	bson_t *invoices;
	int n;
	char seen[4];
	bool mixed;
};

static int
age_invoice(void *arg, const bson_t *inv)
{
	struct ageing *a = arg;
	bson_iter_t it, sub;
	int64_t total = 0, paid = 0, due = 0;
	const char *cur = "";
	bson_t item;
	char idx[16];
	const char *k;

	if (bson_iter_init(&it, inv) && bson_iter_find_descendant(&it, "total.amount", &sub))
		total = bson_iter_as_int64(&sub);
	if (bson_iter_init(&it, inv) && bson_iter_find_descendant(&it, "paid.amount", &sub))
		paid = bson_iter_as_int64(&sub);
	if (bson_iter_init(&it, inv) && bson_iter_find_descendant(&it, "total.currency", &sub) &&
	    BSON_ITER_HOLDS_UTF8(&sub))
		cur = bson_iter_utf8(&sub, NULL);
	const char *due_s = tr_doc_str(inv, "due_at");
	if (!due_s || !tr_parse_time(due_s, &due) || total - paid <= 0)
		return 0;
	if (a->currency && strcmp(cur, a->currency) != 0)
		return 0;
	if (!a->seen[0])
		snprintf(a->seen, sizeof(a->seen), "%s", cur);
	else if (strcmp(a->seen, cur) != 0)
		a->mixed = true;
	int64_t days = a->at_ms > due ? (a->at_ms - due + DAY_MS - 1) / DAY_MS : 0;
	int b = days <= 0 ? 0 : days <= 30 ? 1 : days <= 60 ? 2 : days <= 90 ? 3 : 4;
	a->sums[b] += total - paid;
	a->total += total - paid;
	bson_uint32_to_string((uint32_t)a->n++, &k, idx, sizeof(idx));
	BSON_APPEND_DOCUMENT_BEGIN(a->invoices, k, &item);
	BSON_APPEND_UTF8(&item, "id", tr_doc_str(inv, "id"));
	BSON_APPEND_UTF8(&item, "number",
			 tr_doc_str(inv, "number") ? tr_doc_str(inv, "number") : "");
	BSON_APPEND_UTF8(&item, "order_id",
			 tr_doc_str(inv, "order_id") ? tr_doc_str(inv, "order_id") : "");
	erp_append_money(&item, "open", total - paid, cur);
	BSON_APPEND_INT64(&item, "days_overdue", days);
	BSON_APPEND_UTF8(&item, "bucket", buckets[b]);
	bson_append_document_end(a->invoices, &item);
	return 0;
}

void
erp_ar_aging(struct tr_ctx *c)
{
	const char *at = tr_query(c, "at"), *cur = tr_query(c, "currency");
	struct ageing a = {.c = c, .currency = cur};
	bson_t body = BSON_INITIALIZER, list, sums;
	char at_s[32];
	int rc;

	if (at) {
		char buf[40];
		if (strlen(at) == 10) {
			snprintf(buf, sizeof(buf), "%sT23:59:59.999Z", at);
			at = buf;
		}
		if (!tr_parse_time(at, &a.at_ms)) {
			tr_problem_field(c, "at",
					 "must be a date like 2026-11-30 or an RFC 3339 time");
			goto out;
		}
	} else {
		a.at_ms = tr_now_ms();
	}
	if (cur && (strlen(cur) != 3 || strspn(cur, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != 3)) {
		tr_problem_field(c, "currency", "must be an ISO 4217 code like EUR");
		goto out;
	}
	tr_format_time(a.at_ms, at_s);
	BSON_APPEND_UTF8(&body, "at", at_s);
	BSON_APPEND_ARRAY_BEGIN(&body, "invoices", &list);
	a.invoices = &list;
	rc = tr_db_each(c->db, ERP_INVOICES, NULL, age_invoice, &a);
	bson_append_array_end(&body, &list);
	if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
		goto out;
	}
	if (a.mixed) {
		tr_problem_field(c, "currency", "invoices are in several currencies: name one");
		goto out;
	}
	const char *shown = cur ? cur : a.seen[0] ? a.seen : "EUR";
	BSON_APPEND_UTF8(&body, "currency", shown);
	BSON_APPEND_DOCUMENT_BEGIN(&body, "buckets", &sums);
	for (int i = 0; i < 5; i++)
		BSON_APPEND_INT64(&sums, buckets[i], a.sums[i]);
	bson_append_document_end(&body, &sums);
	erp_append_money(&body, "total", a.total, shown);
	tr_reply_json(c, 200, &body);
out:
	bson_destroy(&body);
}
