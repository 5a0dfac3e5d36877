/* GET /v1/erp/checks: the ERP's invariants, computed afresh from what is
 * stored, for the caller's tenant:
 *   ledger_balanced         debits equal credits, per currency;
 *   stock_folds_movements   every stock balance equals the fold of its
 *                           movements (register.h keeps the value after
 *                           each one: this recomputes it from the deltas);
 *   inventory_matches_ledger the stock's value equals the inventory
 *                           account (1300), per currency;
 *   no_negative_available   no available stock below zero in a warehouse
 *                           that does not allow it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "erp.h"
#include "json.h"
#include "register.h"

#define MAX_CURRENCIES 8
#define PAGE 500

struct per_currency {
	char code[4];
	int64_t ledger_sum, inventory_account, stock_value;
};

struct audit {
	struct tr_db *db;
	struct per_currency cur[MAX_CURRENCIES];
	int ncur;
	long long pairs, unfolded, negative;
	char first_unfolded[120], first_negative[120];
	int rc;
};

static struct per_currency *
currency(struct audit *a, const char *code)
{
	for (int i = 0; i < a->ncur; i++)
		if (strcmp(a->cur[i].code, code) == 0)
			return &a->cur[i];
	if (a->ncur == MAX_CURRENCIES)
		return NULL;
	struct per_currency *p = &a->cur[a->ncur++];
	memset(p, 0, sizeof(*p));
	snprintf(p->code, sizeof(p->code), "%s", code);
	return p;
}

/* The ledger's accounts, from the journal register's state. */
static int
read_ledger(struct audit *a)
{
	bson_t state = BSON_INITIALIZER;
	bson_iter_t it, vals;
	int rc;

	bson_destroy(&state);
	rc = tr_register_read(a->db, ERP_LEDGER_KEY, &state);
	if (rc == TR_OK && bson_iter_init_find(&it, &state, "values") &&
	    bson_iter_recurse(&it, &vals))
		while (bson_iter_next(&vals)) {
			const char *name = bson_iter_key(&vals), *colon;
			char code[16];
			if (strncmp(name, "a:", 2) != 0 || !(colon = strchr(name + 2, ':')))
				continue;
			snprintf(code, sizeof(code), "%.*s", (int)(colon - name - 2), name + 2);
			struct per_currency *p = currency(a, colon + 1);
			if (!p)
				continue;
			p->ledger_sum += bson_iter_as_int64(&vals);
			if (strcmp(code, "1300") == 0)
				p->inventory_account += bson_iter_as_int64(&vals);
		}
	bson_destroy(&state);
	return rc;
}

/* The sum of every movement's deltas of a counter of key. */
static int
fold(struct tr_db *db, const char *key, const char *counter, int64_t *sum)
{
	long long before = 0, next = 0;
	int rc;

	*sum = 0;
	do {
		bson_t items = BSON_INITIALIZER;
		bson_iter_t it;
		rc = tr_register_movements(db, key, before, PAGE, &items, &next);
		if (rc == TR_OK && bson_iter_init(&it, &items))
			while (bson_iter_next(&it)) {
				bson_t mv;
				uint32_t len;
				const uint8_t *data;
				if (!BSON_ITER_HOLDS_DOCUMENT(&it))
					continue;
				bson_iter_document(&it, &len, &data);
				if (bson_init_static(&mv, data, len))
					*sum += erp_counter(&mv, "deltas", counter);
			}
		bson_destroy(&items);
		before = next;
	} while (rc == TR_OK && next > 0);
	return rc;
}

static int
check_pair(void *arg, const bson_t *slot)
{
	struct audit *a = arg;
	const char *ps = tr_doc_str(slot, "product_id"), *ws = tr_doc_str(slot, "warehouse_id");
	bson_t state = BSON_INITIALIZER, product = BSON_INITIALIZER, wh = BSON_INITIALIZER;
	bson_iter_t it, sub;
	char key[96], code[4] = "";
	static const char *const counters[] = {"on_hand", "reserved", "available", "value"};

	if (!ps || !ws)
		return 0;
	a->pairs++;
	snprintf(key, sizeof(key), "erp.stock/%s/%s", ps, ws);
	bson_destroy(&state);
	if ((a->rc = tr_register_read(a->db, key, &state)) != TR_OK)
		goto out;
	for (size_t i = 0; i < sizeof(counters) / sizeof(counters[0]); i++) {
		int64_t sum;
		if ((a->rc = fold(a->db, key, counters[i], &sum)) != TR_OK)
			goto out;
		if (sum != erp_counter(&state, "values", counters[i]) && a->unfolded++ == 0)
			snprintf(a->first_unfolded, sizeof(a->first_unfolded), "%s %s", key,
				 counters[i]);
	}
	bson_destroy(&product);
	if (tr_db_get(a->db, ERP_PRODUCTS, ps, &product) == TR_OK &&
	    bson_iter_init(&it, &product) &&
	    bson_iter_find_descendant(&it, "price.currency", &sub) && BSON_ITER_HOLDS_UTF8(&sub))
		snprintf(code, sizeof(code), "%s", bson_iter_utf8(&sub, NULL));
	struct per_currency *p = currency(a, code);
	if (p)
		p->stock_value += erp_counter(&state, "values", "value");
	bson_destroy(&wh);
	bool floor = !(tr_db_get(a->db, ERP_WAREHOUSES, ws, &wh) == TR_OK &&
		       bson_iter_init_find(&it, &wh, "allow_negative") &&
		       BSON_ITER_HOLDS_BOOL(&it) && bson_iter_bool(&it));
	if (floor && erp_counter(&state, "values", "available") < 0 && a->negative++ == 0)
		snprintf(a->first_negative, sizeof(a->first_negative), "%s", key);
out:
	bson_destroy(&state);
	bson_destroy(&product);
	bson_destroy(&wh);
	return a->rc != TR_OK ? a->rc : 0;
}

static void
add_check(bson_t *list, int *n, const char *name, bool ok, const char *detail)
{
	bson_t item;
	char key[16];
	const char *k;

	bson_uint32_to_string((uint32_t)(*n)++, &k, key, sizeof(key));
	BSON_APPEND_DOCUMENT_BEGIN(list, k, &item);
	BSON_APPEND_UTF8(&item, "name", name);
	BSON_APPEND_BOOL(&item, "ok", ok);
	BSON_APPEND_UTF8(&item, "detail", detail);
	bson_append_document_end(list, &item);
}

const char *const erp_check_names[ERP_NCHECKS] = {"ledger_balanced", "stock_folds_movements",
						  "inventory_matches_ledger",
						  "no_negative_available"};

int
erp_checks_compute(struct tr_db *db, bson_t *body, bool ok[ERP_NCHECKS])
{
	struct audit *a = calloc(1, sizeof(*a));
	bson_t list;
	char detail[512];
	int rc, n = 0;
	bool all = true;

	if (!a)
		return TR_ENOMEM;
	a->db = db;
	a->rc = TR_OK;
	rc = read_ledger(a);
	if (rc == TR_OK)
		rc = tr_db_each(db, ERP_SLOTS, NULL, check_pair, a);
	if (rc != TR_OK)
		goto out;

	bool balanced = true, matched = true;
	for (int i = 0; i < a->ncur; i++) {
		balanced &= a->cur[i].ledger_sum == 0;
		matched &= a->cur[i].stock_value == a->cur[i].inventory_account;
	}
	ok[0] = balanced;
	ok[1] = a->unfolded == 0;
	ok[2] = matched;
	ok[3] = a->negative == 0;
	for (int i = 0; i < ERP_NCHECKS; i++)
		all &= ok[i];
	if (!body)
		goto out;
	BSON_APPEND_ARRAY_BEGIN(body, "checks", &list);

	size_t len = 0;
	detail[0] = '\0';
	for (int i = 0; i < a->ncur; i++)
		if (len < sizeof(detail) - 64)
			len += (size_t)snprintf(detail + len, sizeof(detail) - len,
						"%s%s: debits - credits = %lld", len ? "; " : "",
						a->cur[i].code, (long long)a->cur[i].ledger_sum);
	add_check(&list, &n, erp_check_names[0], ok[0], a->ncur ? detail : "no entries");

	snprintf(detail, sizeof(detail), "%lld product and warehouse pairs%s%s", a->pairs,
		 a->unfolded ? "; first off: " : "", a->unfolded ? a->first_unfolded : "");
	add_check(&list, &n, erp_check_names[1], ok[1], detail);

	len = 0;
	detail[0] = '\0';
	for (int i = 0; i < a->ncur; i++)
		if (len < sizeof(detail) - 96)
			len +=
			    (size_t)snprintf(detail + len, sizeof(detail) - len,
					     "%s%s: stock %lld, account 1300 %lld", len ? "; " : "",
					     a->cur[i].code, (long long)a->cur[i].stock_value,
					     (long long)a->cur[i].inventory_account);
	add_check(&list, &n, erp_check_names[2], ok[2], a->ncur ? detail : "no stock");

	snprintf(detail, sizeof(detail), "%lld below zero%s%s", a->negative,
		 a->negative ? "; first: " : "", a->negative ? a->first_negative : "");
	add_check(&list, &n, erp_check_names[3], ok[3], detail);

	bson_append_array_end(body, &list);
	BSON_APPEND_BOOL(body, "ok", all);
out:
	free(a);
	return rc;
}

void
erp_checks(struct tr_ctx *c)
{
	bson_t body = BSON_INITIALIZER;
	bool ok[ERP_NCHECKS];
	int rc = erp_checks_compute(c->db, &body, ok);

	if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
	} else {
		erp_health_record(c->req->principal.tenant_hex, ok);
		tr_reply_json(c, 200, &body);
	}
	bson_destroy(&body);
}
