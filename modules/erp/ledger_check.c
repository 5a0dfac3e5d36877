/* The ledger's checks and reports: verifying the hash chain, closing a
 * period, the trial balance. They read the journal's movements (ledger.c)
 * newest first, a page at a time. */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db.h"
#include "erp.h"
#include "json.h"
#include "register.h"
#include "resource.h"

#define PAGE 1000

/* Calls visit with every movement of the journal, newest first. */
static int
each_movement(struct tr_db *db, int (*visit)(void *arg, const bson_t *mv), void *arg)
{
	long long before = 0, next = 0;
	int rc;

	do {
		bson_t items = BSON_INITIALIZER;
		bson_iter_t it;
		rc = tr_register_movements(db, ERP_LEDGER_KEY, before, PAGE, &items, &next);
		if (rc == TR_OK && bson_iter_init(&it, &items))
			while (rc == TR_OK && bson_iter_next(&it)) {
				bson_t mv;
				uint32_t len;
				const uint8_t *data;
				if (!BSON_ITER_HOLDS_DOCUMENT(&it))
					continue;
				bson_iter_document(&it, &len, &data);
				if (bson_init_static(&mv, data, len))
					rc = visit(arg, &mv);
			}
		bson_destroy(&items);
		before = next;
	} while (rc == TR_OK && next > 0);
	return rc;
}

/* ---- verify ---- */

struct verify {
	long long entries, expect_seq, broken; /* broken: the lowest seq that breaks, 0: none */
	uint8_t newer_before[32];	       /* the head the newer entry followed */
	bool have_newer;
	char head[65];
};

static void
broke(struct verify *v, long long seq)
{
	if (v->broken == 0 || seq < v->broken)
		v->broken = seq;
}

/* An entry holds when its hash is SHA-256 of the head before it and what
 * it says, its lines balance and are what it did to the accounts, its
 * number follows the one before, and the entry after it follows its hash. */
static int
verify_one(void *arg, const bson_t *mv)
{
	struct verify *v = arg;
	struct erp_entry en;
	uint8_t before[32], after[32], want[32];
	long long seq = erp_counter(mv, "after", "n");
	int64_t debits = 0, credits = 0;

	if (!erp_entry_of(mv, &en))
		return TR_OK; /* a period's close */
	v->entries++;
	erp_chain_words(mv, true, before);
	erp_chain_words(mv, false, after);
	if (!v->have_newer)
		sodium_bin2hex(v->head, sizeof(v->head), after, 32);
	erp_chain_hash(before, &en, seq, want);
	if (sodium_memcmp(want, after, 32) != 0)
		broke(v, seq);
	if (v->have_newer && sodium_memcmp(after, v->newer_before, 32) != 0)
		broke(v, seq);
	if (v->expect_seq && seq != v->expect_seq)
		broke(v, seq);
	for (int i = 0; i < en.nlines; i++) {
		char name[40];
		int64_t sum = 0;
		debits += en.lines[i].debit;
		credits += en.lines[i].credit;
		snprintf(name, sizeof(name), "a:%s:%s", en.lines[i].account, en.currency);
		for (int j = 0; j < en.nlines; j++)
			if (strcmp(en.lines[j].account, en.lines[i].account) == 0)
				sum += en.lines[j].debit - en.lines[j].credit;
		if (erp_counter(mv, "deltas", name) != sum)
			broke(v, seq);
	}
	if (debits != credits || en.nlines < 2)
		broke(v, seq);
	memcpy(v->newer_before, before, 32);
	v->have_newer = true;
	v->expect_seq = seq - 1;
	return TR_OK;
}

void
erp_ledger_verify(struct tr_ctx *c)
{
	struct verify v = {0};
	bson_t body = BSON_INITIALIZER;
	int rc = each_movement(c->db, verify_one, &v);

	if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
		bson_destroy(&body);
		return;
	}
	if (v.expect_seq > 0) /* the oldest entry is not number 1 */
		broke(&v, v.expect_seq);
	BSON_APPEND_BOOL(&body, "ok", v.broken == 0);
	BSON_APPEND_INT64(&body, "entries", v.entries);
	if (v.entries)
		BSON_APPEND_UTF8(&body, "head", v.head);
	else
		BSON_APPEND_NULL(&body, "head");
	if (v.broken)
		BSON_APPEND_INT64(&body, "broken_at", v.broken);
	tr_reply_json(c, 200, &body);
	bson_destroy(&body);
}

/* ---- periods ---- */

struct closing {
	int64_t yyyymm;
	bool already;
};

static bool
close_after(void *arg, const struct tr_reg_state *state, struct tr_reg_delta *d, size_t n)
{
	struct closing *cl = arg;
	int64_t now = tr_reg_value(state, "closed");

	if (now >= cl->yyyymm) {
		cl->already = true;
		return false;
	}
	for (size_t i = 0; i < n; i++)
		d[i].delta = cl->yyyymm - now;
	return true;
}

/* POST /v1/erp/periods/{YYYY-MM}/close: entries dated in it or before are
 * refused from then on (closing a month closes those before it). */
void
erp_period_close(struct tr_ctx *c)
{
	const char *period = tr_param(c, 0);
	int y, m;
	char tail, today[11], op[48];
	struct closing cl = {0};
	struct tr_reg_delta d[] = {{"closed", 0}};
	bson_t mv, body = BSON_INITIALIZER, meta = BSON_INITIALIZER;
	bool replayed;

	if (strlen(period) != 7 || sscanf(period, "%4d-%2d%c", &y, &m, &tail) != 2 || m < 1 ||
	    m > 12 || y < 1900 || period[4] != '-') {
		tr_problem(c, 404, "not-found",
			   "a period is a month: /v1/erp/periods/2026-11/close");
		goto out;
	}
	erp_today(today);
	cl.yyyymm = (int64_t)y * 100 + m;
	if (cl.yyyymm >= atoi(today) * 100 + atoi(today + 5)) {
		tr_problem(c, 409, "conflict", "only a month that has ended can be closed");
		goto out;
	}
	snprintf(op, sizeof(op), "erp.close:%04d-%02d", y, m);
	BSON_APPEND_UTF8(&meta, "close", period);
	struct tr_reg_post p = {.key = ERP_LEDGER_KEY,
				.op_id = op,
				.deltas = d,
				.ndeltas = 1,
				.meta = &meta,
				.reckon = close_after,
				.reckon_arg = &cl};
	int rc = tr_register_post(c->db, &p, &mv, &replayed);
	bson_destroy(&mv);
	if (rc == TR_ELIMIT || (rc == TR_OK && replayed)) {
		tr_problem(c, 409, "conflict", "the period is closed already");
		goto out;
	}
	if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
		goto out;
	}
	BSON_APPEND_UTF8(&body, "period", period);
	BSON_APPEND_BOOL(&body, "closed", true);
	tr_reply_json(c, 200, &body);
out:
	bson_destroy(&meta);
	bson_destroy(&body);
}

/* ---- trial balance ---- */

struct account_sum {
	char code[16];
	int64_t balance;
};

struct trial {
	char at[11];
	const char *currency;
	struct account_sum *sums;
	size_t n, cap;
	char seen[4][4]; /* currencies met, when none was asked for */
	int nseen;
	int rc;
};

static int
fold_entry(void *arg, const bson_t *mv)
{
	struct trial *t = arg;
	struct erp_entry en;

	if (!erp_entry_of(mv, &en) || strcmp(en.date, t->at) > 0)
		return TR_OK;
	bool known = false;
	for (int i = 0; i < t->nseen; i++)
		known |= strcmp(t->seen[i], en.currency) == 0;
	if (!known && t->nseen < 4)
		snprintf(t->seen[t->nseen++], 4, "%s", en.currency);
	if (t->currency && strcmp(en.currency, t->currency) != 0)
		return TR_OK;
	for (int i = 0; i < en.nlines; i++) {
		size_t j;
		for (j = 0; j < t->n && strcmp(t->sums[j].code, en.lines[i].account) != 0; j++)
			;
		if (j == t->n) {
			if (t->n == t->cap) {
				size_t cap = t->cap ? 2 * t->cap : 32;
				struct account_sum *grown = realloc(t->sums, cap * sizeof(*grown));
				if (!grown)
					return TR_ENOMEM;
				t->sums = grown;
				t->cap = cap;
			}
			snprintf(t->sums[t->n].code, sizeof(t->sums[t->n].code), "%s",
				 en.lines[i].account);
			t->sums[t->n++].balance = 0;
		}
		t->sums[j].balance += en.lines[i].debit - en.lines[i].credit;
	}
	return TR_OK;
}

static int
by_code(const void *a, const void *b)
{
	return strcmp(((const struct account_sum *)a)->code, ((const struct account_sum *)b)->code);
}

void
erp_trial_balance(struct tr_ctx *c)
{
	struct trial t = {0};
	const char *at = tr_query(c, "at"), *cur = tr_query(c, "currency");
	bson_t body = BSON_INITIALIZER, list, row;
	int64_t total_debit = 0, total_credit = 0;
	int rc;

	int64_t at_ms;
	if (at && strlen(at) != 10 && tr_parse_time(at, &at_ms)) {
		/* a time: the day it falls on (UTC) */
		time_t secs = (time_t)(at_ms / 1000);
		struct tm tm;
		char *day = tr_arena_alloc(c->req->arena, 11);
		gmtime_r(&secs, &tm);
		strftime(day, 11, "%Y-%m-%d", &tm);
		at = day;
	}
	if (at &&
	    (strlen(at) != 10 || at[4] != '-' || at[7] != '-' || strspn(at, "0123456789-") != 10)) {
		tr_problem_field(c, "at", "must be a date like 2026-11-30 or an RFC 3339 time");
		goto out;
	}
	if (cur && (strlen(cur) != 3 || strspn(cur, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") != 3)) {
		tr_problem_field(c, "currency", "must be an ISO 4217 code like EUR");
		goto out;
	}
	if (at)
		snprintf(t.at, sizeof(t.at), "%s", at);
	else
		erp_today(t.at);
	t.currency = cur;
	rc = each_movement(c->db, fold_entry, &t);
	if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
		goto out;
	}
	if (!cur && t.nseen > 1) {
		tr_problem_field(c, "currency", "the ledger holds several currencies: name one");
		goto out;
	}
	if (t.n)
		qsort(t.sums, t.n, sizeof(*t.sums), by_code);
	BSON_APPEND_UTF8(&body, "at", t.at);
	BSON_APPEND_UTF8(&body, "currency", cur ? cur : t.nseen ? t.seen[0] : "EUR");
	BSON_APPEND_ARRAY_BEGIN(&body, "accounts", &list);
	for (size_t i = 0; i < t.n; i++) {
		char key[16], *name = NULL;
		const char *k;
		bson_t filter = BSON_INITIALIZER, acct;
		BSON_APPEND_UTF8(&filter, "code", t.sums[i].code);
		if (tr_db_find_one(c->db, ERP_ACCOUNTS, &filter, &acct) == TR_OK &&
		    tr_doc_str(&acct, "name"))
			name = tr_arena_strdup(c->req->arena, tr_doc_str(&acct, "name"));
		bson_destroy(&filter);
		bson_destroy(&acct);
		int64_t b = t.sums[i].balance;
		bson_uint32_to_string((uint32_t)i, &k, key, sizeof(key));
		BSON_APPEND_DOCUMENT_BEGIN(&list, k, &row);
		BSON_APPEND_UTF8(&row, "code", t.sums[i].code);
		BSON_APPEND_UTF8(&row, "name", name ? name : "");
		BSON_APPEND_INT64(&row, "debit", b > 0 ? b : 0);
		BSON_APPEND_INT64(&row, "credit", b < 0 ? -b : 0);
		bson_append_document_end(&list, &row);
		total_debit += b > 0 ? b : 0;
		total_credit += b < 0 ? -b : 0;
	}
	bson_append_array_end(&body, &list);
	BSON_APPEND_INT64(&body, "total_debit", total_debit);
	BSON_APPEND_INT64(&body, "total_credit", total_credit);
	tr_reply_json(c, 200, &body);
out:
	free(t.sums);
	bson_destroy(&body);
}
