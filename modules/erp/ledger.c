/* The ledger (CONTRACT.md "ERP", Ledger): a chart of accounts per tenant
 * and journal entries that are never changed.
 *
 * The tenant's journal is one register, "erp.ledger": each entry is one
 * movement, written whole or not at all by one insert, so debits always
 * equal credits. Its counters:
 *   a:<code>:<currency>  the account's balance, debits minus credits;
 *   n                    entries so far: an entry's seq is n after it,
 *                        gapless because sequences are (register.h);
 *   h0..h7               the head of the hash chain, SHA-256 in eight
 *                        32-bit words: an entry's hash is SHA-256 of the
 *                        previous hash and the entry, reckoned on the very
 *                        state it is appended to, so the chain has no fork
 *                        however many processes post at once;
 *   closed               the last closed period as YYYYMM: an entry dated
 *                        in it or before is refused on that same state.
 * The movement's meta is the entry {id, date, memo, currency, lines,
 * source, reverses}; GET answers read the movements themselves. */
#include <sodium.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db.h"
#include "erp.h"
#include "events.h"
#include "json.h"
#include "register.h"

#define LEDGER_KEY ERP_LEDGER_KEY
#define MAX_LINES ERP_MAX_LINES
#define AMOUNT_MAX 100000000000000000LL /* 10^17 minor units */

/* ---- the chart ---- */

static const char *const account_types[] = {"asset",  "liability", "equity",
					    "income", "expense",   NULL};

static const struct {
	const char *code, *name, *type;
} default_chart[] = {
    {"1000", "Cash", "asset"},
    {"1100", "Bank", "asset"},
    {"1200", "Receivables", "asset"},
    {"1300", "Inventory", "asset"},
    {"2000", "Payables", "liability"},
    {"2100", "Tax payable", "liability"},
    {"3000", "Equity", "equity"},
    {"4000", "Sales", "income"},
    {"5000", "Cost of goods sold", "expense"},
    {"6000", "Expenses", "expense"},
};

/* The default chart exists in the tenant (each account once: the code is
 * unique per tenant, so processes racing to make it make it once). Its
 * accounts are made in order and the last is looked for: whoever made
 * the last one had made, or found, all those before it. */
int
erp_chart_ensure(struct tr_db *db)
{
	bson_t filter = BSON_INITIALIZER, found;
	size_t n = sizeof(default_chart) / sizeof(default_chart[0]);
	int rc;

	BSON_APPEND_UTF8(&filter, "code", default_chart[n - 1].code);
	rc = tr_db_find_one(db, ERP_ACCOUNTS, &filter, &found);
	bson_destroy(&filter);
	bson_destroy(&found);
	if (rc != TR_ENOTFOUND)
		return rc;
	for (size_t i = 0; i < sizeof(default_chart) / sizeof(default_chart[0]); i++) {
		bson_t doc = BSON_INITIALIZER, stored;
		BSON_APPEND_UTF8(&doc, "code", default_chart[i].code);
		BSON_APPEND_UTF8(&doc, "name", default_chart[i].name);
		BSON_APPEND_UTF8(&doc, "type", default_chart[i].type);
		rc = tr_db_insert(db, ERP_ACCOUNTS, &doc, &stored);
		bson_destroy(&doc);
		bson_destroy(&stored);
		if (rc != TR_OK && rc != TR_EDUPLICATE)
			return rc;
	}
	return TR_OK;
}

static bool
chart_listing(struct tr_ctx *c)
{
	int rc = erp_chart_ensure(c->db);

	if (rc != TR_OK)
		tr_problem_from_err(c, rc);
	return rc == TR_OK;
}

static bool
account_hook(struct tr_ctx *c, const struct tr_resource *e, bson_t *set, const bson_t *old)
{
	const char *code = tr_doc_str(set, "code");

	(void)e;
	(void)old;
	if (code && strspn(code, "0123456789") != strlen(code)) {
		tr_problem_field(c, "code", "must be digits");
		return false;
	}
	return chart_listing(c); /* a new account joins the default chart */
}

static const struct tr_field account_fields[] = {
    {"code", TR_K_LINE, TR_F_REQUIRED | TR_F_FIXED | TR_F_FILTER | TR_F_NARROW, 1, 12, NULL, NULL},
    {"name", TR_K_LINE, TR_F_REQUIRED, 1, 200, NULL, NULL},
    {"type", TR_K_ENUM, TR_F_REQUIRED | TR_F_FIXED | TR_F_FILTER, 0, 0, account_types, NULL},
    {NULL, 0, 0, 0, 0, NULL, NULL},
};

static const char *const account_sorts[] = {"code", "-created_at", "created_at", NULL};

const struct tr_resource erp_accounts = {
    .name = "account",
    .coll = ERP_ACCOUNTS,
    .path = "/v1/erp/accounts",
    .read = "erp.ledger.read",
    .write = "erp.ledger.write",
    .about = "An account of the tenant's chart. Every tenant starts with 1000 cash, 1100 bank, "
	     "1200 receivables, 1300 inventory, 2000 payables, 2100 tax payable, 3000 equity, "
	     "4000 sales, 5000 cost of goods sold and 6000 expenses.",
    .topic = "erp.ledger",
    .event = "erp.account",
    .fields = account_fields,
    .sorts = account_sorts,
    .hook = account_hook,
    .listing = chart_listing,
};

/* ---- entries: validation ---- */

static bool
date_ok(const char *s, int *yyyymm)
{
	int y, m, d;
	char tail;

	if (!s || strlen(s) != 10 || strspn(s, "0123456789") != 4 ||
	    strspn(s + 5, "0123456789") != 2 || strspn(s + 8, "0123456789") != 2 ||
	    sscanf(s, "%4d-%2d-%2d%c", &y, &m, &d, &tail) != 3 || s[4] != '-' || s[7] != '-' ||
	    y < 1900 || y > 9999 || m < 1 || m > 12 || d < 1)
		return false;
	static const int days[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	if (d > days[m - 1] || (m == 2 && d == 29 && !leap))
		return false;
	*yyyymm = y * 100 + m;
	return true;
}

void
erp_today(char out[11])
{
	time_t now = time(NULL);
	struct tm tm;

	gmtime_r(&now, &tm);
	strftime(out, 11, "%Y-%m-%d", &tm);
}

/* One line: {account_code, debit, credit}, exactly one of them above 0. */
static bool
line_ok(struct tr_ctx *c, bson_iter_t *it, int i, struct erp_line *out)
{
	bson_iter_t sub;
	char field[48];
	int seen = 0;

	snprintf(field, sizeof(field), "lines[%d]", i);
	memset(out, 0, sizeof(*out));
	if (!BSON_ITER_HOLDS_DOCUMENT(it) || !bson_iter_recurse(it, &sub))
		goto bad;
	while (bson_iter_next(&sub)) {
		const char *k = bson_iter_key(&sub);
		if (strcmp(k, "account_code") == 0 && BSON_ITER_HOLDS_UTF8(&sub)) {
			const char *code = bson_iter_utf8(&sub, NULL);
			if (!*code || strlen(code) > 12 ||
			    strspn(code, "0123456789") != strlen(code))
				goto bad;
			snprintf(out->account, sizeof(out->account), "%s", code);
			seen |= 1;
		} else if ((strcmp(k, "debit") == 0 || strcmp(k, "credit") == 0) &&
			   (BSON_ITER_HOLDS_INT32(&sub) || BSON_ITER_HOLDS_INT64(&sub))) {
			int64_t v = bson_iter_as_int64(&sub);
			if (v < 0 || v > AMOUNT_MAX)
				goto bad;
			if (k[0] == 'd')
				out->debit = v;
			else
				out->credit = v;
		} else {
			goto bad;
		}
	}
	if (seen != 1 || (out->debit > 0) == (out->credit > 0))
		goto bad;
	return true;
bad:
	tr_problem_field(c, tr_arena_strdup(c->req->arena, field),
			 "must be {\"account_code\": \"1000\", \"debit\": <minor units>} or the "
			 "same with \"credit\": one of them above 0");
	return false;
}

/* The accounts named exist in the tenant's chart. */
static bool
accounts_exist(struct tr_ctx *c, const struct erp_entry *en)
{
	int rc = erp_chart_ensure(c->db);

	if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
		return false;
	}
	for (int i = 0; i < en->nlines; i++) {
		bson_t filter = BSON_INITIALIZER, found;
		BSON_APPEND_UTF8(&filter, "code", en->lines[i].account);
		rc = tr_db_find_one(c->db, ERP_ACCOUNTS, &filter, &found);
		bson_destroy(&filter);
		bson_destroy(&found);
		if (rc == TR_ENOTFOUND) {
			char *m = tr_arena_alloc(c->req->arena, 64);
			snprintf(m, 64, "no account %s in the chart", en->lines[i].account);
			tr_problem_field(c, "lines", m);
			return false;
		}
		if (rc != TR_OK) {
			tr_problem_from_err(c, rc);
			return false;
		}
	}
	return true;
}

/* ---- entries: the chain ---- */

static void bytes_of(const int64_t w[8], uint8_t h[32]);
static const char *const hword[8];

/* What the hash covers of an entry, in one canonical form. */
static size_t
canonical(const struct erp_entry *en, long long seq, char *out, size_t len)
{
	size_t n = (size_t)snprintf(out, len, "%lld|%s|%s|%s|%s|%s|%s", seq, en->id, en->date,
				    en->currency, en->memo, en->source, en->reverses);
	for (int i = 0; i < en->nlines && n < len; i++)
		n +=
		    (size_t)snprintf(out + n, len - n, "|%s:%lld:%lld", en->lines[i].account,
				     (long long)en->lines[i].debit, (long long)en->lines[i].credit);
	return n < len ? n : len - 1;
}

void
erp_chain_hash(const uint8_t prev[32], const struct erp_entry *en, long long seq, uint8_t out[32])
{
	crypto_hash_sha256_state st;
	char buf[8192];
	size_t n = canonical(en, seq, buf, sizeof(buf));

	crypto_hash_sha256_init(&st);
	crypto_hash_sha256_update(&st, prev, 32);
	crypto_hash_sha256_update(&st, (const unsigned char *)buf, n);
	crypto_hash_sha256_final(&st, out);
}

static void words_of(const uint8_t h[32], int64_t w[8]);

void
erp_chain_words(const bson_t *movement, bool before, uint8_t out[32])
{
	int64_t w[8];

	for (int k = 0; k < 8; k++) {
		w[k] = erp_counter(movement, "after", hword[k]);
		if (before)
			w[k] -= erp_counter(movement, "deltas", hword[k]);
	}
	bytes_of(w, out);
}

static void
words_of(const uint8_t h[32], int64_t w[8])
{
	for (int i = 0; i < 8; i++)
		w[i] = (int64_t)((uint32_t)h[4 * i] << 24 | (uint32_t)h[4 * i + 1] << 16 |
				 (uint32_t)h[4 * i + 2] << 8 | (uint32_t)h[4 * i + 3]);
}

static void
bytes_of(const int64_t w[8], uint8_t h[32])
{
	for (int i = 0; i < 8; i++) {
		uint32_t v = (uint32_t)w[i];
		h[4 * i] = (uint8_t)(v >> 24);
		h[4 * i + 1] = (uint8_t)(v >> 16);
		h[4 * i + 2] = (uint8_t)(v >> 8);
		h[4 * i + 3] = (uint8_t)v;
	}
}

static const char *const hword[8] = {"h0", "h1", "h2", "h3", "h4", "h5", "h6", "h7"};

struct chain_step {
	const struct erp_entry *en;
	int yyyymm;
	size_t naccounts; /* deltas[0..naccounts) are the accounts' */
	const int64_t *account_deltas;
	bool closed; /* refused: its period is closed */
};

/* The entry's hash and number on the state it follows. */
static bool
chain(void *arg, const struct tr_reg_state *state, struct tr_reg_delta *d, size_t n)
{
	struct chain_step *s = arg;
	int64_t prev_w[8], next_w[8];
	uint8_t prev[32], next[32];
	long long seq = tr_reg_value(state, "n") + 1;

	if (s->yyyymm <= tr_reg_value(state, "closed")) {
		s->closed = true;
		return false;
	}
	for (int i = 0; i < 8; i++)
		prev_w[i] = tr_reg_value(state, hword[i]);
	bytes_of(prev_w, prev);
	erp_chain_hash(prev, s->en, seq, next);
	words_of(next, next_w);
	for (size_t i = 0; i < n; i++) {
		if (i < s->naccounts)
			d[i].delta = s->account_deltas[i];
		else if (strcmp(d[i].counter, "n") == 0)
			d[i].delta = 1;
		else
			for (int k = 0; k < 8; k++)
				if (strcmp(d[i].counter, hword[k]) == 0)
					d[i].delta = next_w[k] - prev_w[k];
	}
	return true;
}

static void
entry_meta(const struct erp_entry *en, bson_t *meta)
{
	bson_t e, lines, line;

	BSON_APPEND_DOCUMENT_BEGIN(meta, "entry", &e);
	BSON_APPEND_UTF8(&e, "id", en->id);
	BSON_APPEND_UTF8(&e, "date", en->date);
	BSON_APPEND_UTF8(&e, "memo", en->memo);
	BSON_APPEND_UTF8(&e, "currency", en->currency);
	BSON_APPEND_UTF8(&e, "source", en->source);
	BSON_APPEND_UTF8(&e, "reverses", en->reverses);
	BSON_APPEND_ARRAY_BEGIN(&e, "lines", &lines);
	for (int i = 0; i < en->nlines; i++) {
		char key[16];
		const char *k;
		bson_uint32_to_string((uint32_t)i, &k, key, sizeof(key));
		BSON_APPEND_DOCUMENT_BEGIN(&lines, k, &line);
		BSON_APPEND_UTF8(&line, "account_code", en->lines[i].account);
		BSON_APPEND_INT64(&line, "debit", en->lines[i].debit);
		BSON_APPEND_INT64(&line, "credit", en->lines[i].credit);
		bson_append_document_end(&lines, &line);
	}
	bson_append_array_end(&e, &lines);
	bson_append_document_end(meta, &e);
}

int
erp_ledger_post(struct tr_db *db, const struct erp_entry *en, const char *op_id, bson_t *movement,
		bool *replayed)
{
	struct tr_reg_delta d[MAX_LINES + 9];
	int64_t amounts[MAX_LINES];
	char names[MAX_LINES][40];
	size_t na = 0;
	bson_t meta = BSON_INITIALIZER;
	int yyyymm;
	int rc;

	bson_init(movement);
	*replayed = false;
	if (!date_ok(en->date, &yyyymm) || en->nlines < 2 || en->nlines > MAX_LINES) {
		bson_destroy(&meta);
		return TR_EINVALID;
	}
	/* one counter per account and currency, the lines summed */
	for (int i = 0; i < en->nlines; i++) {
		char name[40];
		size_t j;
		snprintf(name, sizeof(name), "a:%s:%s", en->lines[i].account, en->currency);
		for (j = 0; j < na && strcmp(names[j], name) != 0; j++)
			;
		if (j == na) {
			snprintf(names[na], sizeof(names[na]), "%s", name);
			amounts[na++] = 0;
		}
		amounts[j] += en->lines[i].debit - en->lines[i].credit;
	}
	for (size_t i = 0; i < na; i++)
		d[i] = (struct tr_reg_delta){names[i], amounts[i]};
	d[na] = (struct tr_reg_delta){"n", 1};
	for (int k = 0; k < 8; k++)
		d[na + 1 + k] = (struct tr_reg_delta){hword[k], 0};
	struct chain_step step = {
	    .en = en, .yyyymm = yyyymm, .naccounts = na, .account_deltas = amounts};
	entry_meta(en, &meta);
	struct tr_reg_post p = {.key = LEDGER_KEY,
				.op_id = op_id,
				.deltas = d,
				.ndeltas = na + 9,
				.meta = &meta,
				.reckon = chain,
				.reckon_arg = &step};
	bson_destroy(movement);
	rc = tr_register_post(db, &p, movement, replayed);
	if (rc == TR_ELIMIT && !step.closed)
		rc = TR_EBUSY;
	bson_destroy(&meta);
	return rc;
}

/* ---- entries: rendering ---- */

static void
hex_of(const int64_t w[8], char out[65])
{
	uint8_t h[32];

	bytes_of(w, h);
	sodium_bin2hex(out, 65, h, 32);
}

static const bson_t *
entry_of(const bson_t *movement, bson_t *scratch)
{
	bson_iter_t it, sub;
	uint32_t len;
	const uint8_t *data;

	if (!bson_iter_init(&it, movement) || !bson_iter_find_descendant(&it, "meta.entry", &sub) ||
	    !BSON_ITER_HOLDS_DOCUMENT(&sub))
		return NULL;
	bson_iter_document(&sub, &len, &data);
	return bson_init_static(scratch, data, len) ? scratch : NULL;
}

bool
erp_entry_of(const bson_t *movement, struct erp_entry *en)
{
	bson_t scratch;
	const bson_t *doc = entry_of(movement, &scratch);
	bson_iter_t it, arr, line;

	if (!doc)
		return false;
	memset(en, 0, sizeof(*en));
	static const struct {
		const char *name;
		size_t off, len;
	} text[] = {
	    {"id", offsetof(struct erp_entry, id), sizeof(en->id)},
	    {"date", offsetof(struct erp_entry, date), sizeof(en->date)},
	    {"memo", offsetof(struct erp_entry, memo), sizeof(en->memo)},
	    {"currency", offsetof(struct erp_entry, currency), sizeof(en->currency)},
	    {"source", offsetof(struct erp_entry, source), sizeof(en->source)},
	    {"reverses", offsetof(struct erp_entry, reverses), sizeof(en->reverses)},
	};
	for (size_t i = 0; i < sizeof(text) / sizeof(text[0]); i++) {
		const char *v = tr_doc_str(doc, text[i].name);
		snprintf((char *)en + text[i].off, text[i].len, "%s", v ? v : "");
	}
	if (bson_iter_init_find(&it, doc, "lines") && bson_iter_recurse(&it, &arr))
		while (bson_iter_next(&arr) && en->nlines < MAX_LINES) {
			struct erp_line *l = &en->lines[en->nlines++];
			if (!bson_iter_recurse(&arr, &line))
				continue;
			while (bson_iter_next(&line)) {
				const char *k = bson_iter_key(&line);
				if (strcmp(k, "account_code") == 0 && BSON_ITER_HOLDS_UTF8(&line))
					snprintf(l->account, sizeof(l->account), "%s",
						 bson_iter_utf8(&line, NULL));
				else if (strcmp(k, "debit") == 0 && BSON_ITER_HOLDS_NUMBER(&line))
					l->debit = bson_iter_as_int64(&line);
				else if (strcmp(k, "credit") == 0 && BSON_ITER_HOLDS_NUMBER(&line))
					l->credit = bson_iter_as_int64(&line);
			}
		}
	return true;
}

/* An entry as the API shows it, from its movement. */
static bool
render_entry(const bson_t *movement, bson_t *out)
{
	bson_t scratch, *en;
	bson_iter_t it;
	int64_t after[8], before[8];
	char hash[65], prev[65];

	en = (bson_t *)entry_of(movement, &scratch);
	if (!en)
		return false;
	for (int k = 0; k < 8; k++) {
		after[k] = erp_counter(movement, "after", hword[k]);
		before[k] = after[k] - erp_counter(movement, "deltas", hword[k]);
	}
	hex_of(after, hash);
	hex_of(before, prev);
	static const char *const copied[] = {"date", "memo", "currency", "lines", "source", NULL};
	BSON_APPEND_UTF8(out, "id", tr_doc_str(en, "id"));
	BSON_APPEND_INT64(out, "seq", erp_counter(movement, "after", "n"));
	for (const char *const *f = copied; *f; f++)
		if (bson_iter_init_find(&it, en, *f))
			bson_append_iter(out, *f, -1, &it);
	const char *rev = tr_doc_str(en, "reverses");
	if (rev && *rev)
		BSON_APPEND_UTF8(out, "reverses", rev);
	else
		BSON_APPEND_NULL(out, "reverses");
	BSON_APPEND_UTF8(out, "hash", hash);
	BSON_APPEND_UTF8(out, "prev_hash", prev);
	if (bson_iter_init_find(&it, movement, "at")) {
		bson_append_iter(out, "created_at", -1, &it);
		bson_append_iter(out, "updated_at", -1, &it);
	}
	BSON_APPEND_INT32(out, "version", 1);
	return true;
}

/* The entry with this id: its movement (TR_ENOTFOUND). */
static int
find_entry(struct tr_db *db, const char *id_hex, bson_t *movement)
{
	char op[64];
	bool found;
	int rc;

	snprintf(op, sizeof(op), "erp.entry:%s", id_hex);
	rc = tr_register_find_op(db, op, movement, &found);
	return rc != TR_OK ? rc : found ? TR_OK : TR_ENOTFOUND;
}

/* ---- the handlers ---- */

static bool
read_entry(struct tr_ctx *c, struct erp_entry *en)
{
	static const char *const fields[] = {"date", "memo", "currency", "lines", NULL};
	const char *date = NULL, *memo = NULL, *currency = NULL;
	bson_iter_t it, arr;
	int64_t debits = 0, credits = 0;
	int yyyymm;
	bool ok = tr_body_only(c, fields);

	ok &= tr_body_string(c, "date", 10, 10, true, &date);
	ok &= tr_body_line(c, "memo", 1, 500, false, &memo);
	ok &= tr_body_string(c, "currency", 3, 3, true, &currency);
	if (date && !date_ok(date, &yyyymm)) {
		tr_problem_field(c, "date", "must be a date like 2026-11-30");
		ok = false;
	}
	if (currency && !(currency[0] >= 'A' && currency[0] <= 'Z' && currency[1] >= 'A' &&
			  currency[1] <= 'Z' && currency[2] >= 'A' && currency[2] <= 'Z')) {
		tr_problem_field(c, "currency", "must be an ISO 4217 code like EUR");
		ok = false;
	}
	if (!bson_iter_init_find(&it, &c->req->body, "lines") || !BSON_ITER_HOLDS_ARRAY(&it) ||
	    !bson_iter_recurse(&it, &arr)) {
		tr_problem_field(c, "lines", "must be an array of at least two lines");
		return false;
	}
	en->nlines = 0;
	while (bson_iter_next(&arr)) {
		if (en->nlines == MAX_LINES) {
			tr_problem_field(c, "lines", "has more than 40 lines");
			return false;
		}
		ok &= line_ok(c, &arr, en->nlines, &en->lines[en->nlines]);
		debits += en->lines[en->nlines].debit;
		credits += en->lines[en->nlines].credit;
		en->nlines++;
	}
	if (ok && en->nlines < 2) {
		tr_problem_field(c, "lines", "must be an array of at least two lines");
		ok = false;
	}
	if (ok && debits != credits) {
		char *m = tr_arena_alloc(c->req->arena, 120);
		snprintf(m, 120, "debits (%lld) must equal credits (%lld)", (long long)debits,
			 (long long)credits);
		tr_problem_field(c, "lines", m);
		ok = false;
	}
	if (!ok)
		return false;
	snprintf(en->date, sizeof(en->date), "%s", date);
	snprintf(en->memo, sizeof(en->memo), "%s", memo ? memo : "");
	snprintf(en->currency, sizeof(en->currency), "%s", currency);
	snprintf(en->source, sizeof(en->source), "manual");
	en->reverses[0] = '\0';
	return accounts_exist(c, en);
}

/* Posts en under its id and answers 201 with it (or the problem). */
static void
post_and_answer(struct tr_ctx *c, const struct erp_entry *en, const char *op)
{
	bson_t movement, out = BSON_INITIALIZER;
	bool replayed;
	int rc = erp_ledger_post(c->db, en, op, &movement, &replayed);

	if (rc == TR_OK)
		erp_health_touch(c->req->principal.tenant_hex);
	if (rc == TR_ELIMIT) {
		tr_problem(c, 409, "period-closed",
			   "the entry's date is in a closed period: date it in an open one");
	} else if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
	} else if (!render_entry(&movement, &out)) {
		tr_problem_from_err(c, TR_EINTERNAL);
	} else {
		char *loc = tr_arena_alloc(c->req->arena, 64);
		snprintf(loc, 64, "/v1/erp/journal/%s", tr_doc_str(&out, "id"));
		c->resp->location = loc;
		if (!replayed)
			tr_emit(c, "erp.ledger", "erp.journal.posted", tr_doc_str(&out, "id"),
				&out);
		tr_reply_json(c, replayed ? 200 : 201, &out);
	}
	bson_destroy(&movement);
	bson_destroy(&out);
}

void
erp_journal_create(struct tr_ctx *c)
{
	struct erp_entry *en = tr_arena_alloc(c->req->arena, sizeof(*en));
	bson_oid_t id;
	char op[64];

	if (!en) {
		tr_problem_from_err(c, TR_ENOMEM);
		return;
	}
	memset(en, 0, sizeof(*en));
	if (!read_entry(c, en))
		return;
	bson_oid_init(&id, NULL);
	bson_oid_to_string(&id, en->id);
	snprintf(op, sizeof(op), "erp.entry:%s", en->id);
	post_and_answer(c, en, op);
}

void
erp_journal_get(struct tr_ctx *c)
{
	bson_t movement, out = BSON_INITIALIZER;
	char id[25];
	int rc = TR_ENOTFOUND;

	if (tr_is_object_id(tr_param(c, 0))) {
		bson_oid_t oid;
		bson_oid_init_from_string(&oid, tr_param(c, 0));
		bson_oid_to_string(&oid, id); /* any spelling: the stored one */
		rc = find_entry(c->db, id, &movement);
	} else {
		bson_init(&movement);
	}
	if (rc == TR_OK && render_entry(&movement, &out)) {
		c->resp->etag_version = 1;
		tr_reply_json(c, 200, &out);
	} else {
		tr_problem_from_err(c, rc == TR_OK ? TR_EINTERNAL : rc);
	}
	bson_destroy(&movement);
	bson_destroy(&out);
}

/* GET /v1/erp/journal: newest first; the cursor is the seq to go below. */
void
erp_journal_list(struct tr_ctx *c)
{
	const char *cursor = tr_query(c, "cursor"), *limit_s = tr_query(c, "limit");
	long long before = 0, next = 0;
	long limit = 50;
	bson_t items = BSON_INITIALIZER, body = BSON_INITIALIZER, list;
	bson_iter_t it;
	int rc, n = 0;

	if (limit_s) {
		char *end;
		limit = strtol(limit_s, &end, 10);
		if (*end || limit < 1 || limit > 200) {
			tr_problem_field(c, "limit", "must be 1 to 200");
			goto out;
		}
	}
	if (cursor) {
		char *end;
		before = strtoll(cursor, &end, 10);
		if (*end || before < 1) {
			tr_problem(c, 400, "malformed-request",
				   "cursor is not valid for this list; start again without it");
			goto out;
		}
	}
	rc = tr_register_movements(c->db, LEDGER_KEY, before, (int)limit, &items, &next);
	if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
		goto out;
	}
	BSON_APPEND_ARRAY_BEGIN(&body, "items", &list);
	if (bson_iter_init(&it, &items))
		while (bson_iter_next(&it)) {
			bson_t mv, entry = BSON_INITIALIZER;
			uint32_t len;
			const uint8_t *data;
			if (!BSON_ITER_HOLDS_DOCUMENT(&it))
				continue;
			bson_iter_document(&it, &len, &data);
			if (bson_init_static(&mv, data, len) && render_entry(&mv, &entry)) {
				char key[16];
				const char *k;
				bson_uint32_to_string((uint32_t)n++, &k, key, sizeof(key));
				BSON_APPEND_DOCUMENT(&list, k, &entry);
			}
			bson_destroy(&entry);
		}
	bson_append_array_end(&body, &list);
	if (next > 0) {
		char buf[32];
		snprintf(buf, sizeof(buf), "%lld", next);
		BSON_APPEND_UTF8(&body, "next_cursor", buf);
	} else {
		BSON_APPEND_NULL(&body, "next_cursor");
	}
	tr_reply_json(c, 200, &body);
out:
	bson_destroy(&items);
	bson_destroy(&body);
}

/* POST /v1/erp/journal/{id}/reverse: the reversing entry, dated today,
 * once (its operation is named after the entry it reverses). */
void
erp_journal_reverse(struct tr_ctx *c)
{
	bson_t movement, scratch;
	const bson_t *orig;
	struct erp_entry *en = tr_arena_alloc(c->req->arena, sizeof(*en));
	char id[25], op[64];
	int rc = TR_ENOTFOUND;

	bson_init(&movement);
	if (tr_is_object_id(tr_param(c, 0))) {
		bson_oid_t oid;
		bson_oid_init_from_string(&oid, tr_param(c, 0));
		bson_oid_to_string(&oid, id);
		bson_destroy(&movement);
		rc = find_entry(c->db, id, &movement);
	}
	if (rc != TR_OK || !en) {
		tr_problem_from_err(c, rc == TR_OK ? TR_ENOMEM : rc);
		goto out;
	}
	orig = entry_of(&movement, &scratch);
	if (!orig) {
		tr_problem_from_err(c, TR_EINTERNAL);
		goto out;
	}
	if (tr_doc_str(orig, "reverses") && *tr_doc_str(orig, "reverses")) {
		tr_problem(c, 409, "conflict", "a reversal is not reversed: post a new entry");
		goto out;
	}
	struct erp_entry *o = tr_arena_alloc(c->req->arena, sizeof(*o));
	if (!o || !erp_entry_of(&movement, o)) {
		tr_problem_from_err(c, o ? TR_EINTERNAL : TR_ENOMEM);
		goto out;
	}
	memset(en, 0, sizeof(*en));
	erp_today(en->date);
	snprintf(en->memo, sizeof(en->memo), "reversal of entry %s", id);
	snprintf(en->currency, sizeof(en->currency), "%s", o->currency);
	snprintf(en->source, sizeof(en->source), "reversal");
	snprintf(en->reverses, sizeof(en->reverses), "%s", id);
	en->nlines = o->nlines;
	for (int i = 0; i < o->nlines; i++) /* debits become credits */
		en->lines[i] =
		    (struct erp_line){.debit = o->lines[i].credit, .credit = o->lines[i].debit};
	for (int i = 0; i < o->nlines; i++)
		snprintf(en->lines[i].account, sizeof(en->lines[i].account), "%s",
			 o->lines[i].account);
	/* the reversal's id is derived from the entry it reverses, and so is
	 * its operation: it is posted once, whoever asks and however often */
	uint8_t digest[32];
	char seed[48];
	snprintf(seed, sizeof(seed), "reversal:%s", id);
	crypto_hash_sha256(digest, (const unsigned char *)seed, strlen(seed));
	sodium_bin2hex(en->id, sizeof(en->id), digest, 12);
	snprintf(op, sizeof(op), "erp.entry:%s", en->id);
	bson_t again;
	rc = find_entry(c->db, en->id, &again);
	bson_destroy(&again);
	if (rc == TR_OK) {
		char *m = tr_arena_alloc(c->req->arena, 96);
		snprintf(m, 96, "the entry was reversed by entry %s", en->id);
		tr_problem(c, 409, "conflict", m);
		goto out;
	}
	if (rc != TR_ENOTFOUND) {
		tr_problem_from_err(c, rc);
		goto out;
	}
	post_and_answer(c, en, op);
	if (c->resp->status == 200) { /* replayed: another request reversed it first */
		bson_reinit(&c->resp->body);
		c->resp->has_body = false;
		c->resp->status = 0;
		tr_problem(c, 409, "conflict", "the entry was reversed by another request");
	}
out:
	bson_destroy(&movement);
}
