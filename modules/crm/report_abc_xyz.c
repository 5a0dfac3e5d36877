/* The CRM abc-xyz report (reports.h for what the reports share).
 *
 * abc-xyz ?from&to&currency (all required): revenue of a client = the sum
 *   of the amounts of its deals won with closed_at in the period, in that
 *   currency (deals in other currencies or without an amount are ignored).
 *   Only clients with revenue > 0 are listed, by revenue descending, ties by
 *   client id ascending. total = the sum over them.
 *   ABC: with cum = the revenue of the client and of all listed before it,
 *   A when cum*100 <= total*80 (and always the first client), else B when
 *   cum*100 <= total*95, else C - compared in 128-bit integers.
 *   XYZ: the calendar months (UTC) overlapping [from, to), at most
 *   crm_report_max_months of them; a month only partly inside the period counts as a
 *   whole month holding the revenue of its part inside (nothing outside
 *   the period is read). monthly = the client's revenue per month, 0 for a
 *   month without any. With n months, R = revenue and S2 = the sum of the
 *   squared monthly values, cv = population stddev / mean = sqrt(n*S2 -
 *   R^2) / R, so cv <= 10% exactly when 100*(n*S2 - R^2) <= R^2 (X), and
 *   cv <= 25% exactly when 16*(n*S2 - R^2) <= R^2 (Y), else Z - compared
 *   in 128-bit integers (for a client above about 10^17 minor units, where
 *   these overflow, in long double). cv is shown rounded to 4 decimals.
 *   Answer: {"currency", "from", "to", "months": n, "calendar_months":
 *   ["2026-01", ...], "total": money, "items": [{"client_id", "client_name"
 *   (null when the client is gone), "revenue": money, "share",
 *   "cumulative_share", "abc", "monthly": [amounts], "cv", "xyz"}]}.
 *
 * managers ?from&to: per owner (owner_id and the user's name; leads and
 */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "db.h"
#include "json.h"
#include "reports.h"
#include "util.h"

/* ---- abc-xyz ---- */

struct client_revenue {
	int64_t revenue; /* first: the weight of the listing order */
	const char *name;
};

struct abc {
	struct tr_ctx *c;
	struct period period;
	char currency[4];
	long first_month; /* crm_report_month_of(from) */
	int months;
	struct rindex clients; /* client id -> struct client_revenue */
	struct rindex monthly; /* {client id, month index (big-endian)} -> int64 */
};

static int
abc_visit(void *arg, const bson_t *deal)
{
	struct abc *a = arg;
	uint8_t key[KEY_LEN];
	bson_oid_t client;
	int64_t closed, amount;
	char currency[4];
	long i, m;

	if (!crm_report_status_is(deal, "won") ||
	    !crm_report_rec_time(deal, "closed_at", &closed) ||
	    !crm_report_in_period(&a->period, closed) ||
	    !crm_report_rec_money(deal, "amount", &amount, currency) || amount == 0 ||
	    strcmp(currency, a->currency) != 0 || !crm_report_rec_oid(deal, "client_id", &client) ||
	    !crm_report_own_ok(a->c, deal))
		return TR_OK;
	crm_report_oid_key(key, &client, 0);
	i = crm_report_rindex_put(&a->clients, key);
	if (i < 0)
		return TR_ENOMEM;
	struct client_revenue *cr = crm_report_rindex_val(&a->clients, i);
	if (__builtin_add_overflow(cr->revenue, amount, &cr->revenue))
		return TR_ELIMIT;
	m = crm_report_month_of(closed) - a->first_month;
	if (m < 0 || m >= a->months)
		return TR_OK; /* cannot be: closed is inside the period */
	key[12] = (uint8_t)(m >> 8);
	key[13] = (uint8_t)m;
	i = crm_report_rindex_put(&a->monthly, key);
	if (i < 0)
		return TR_ENOMEM;
	int64_t *sum = crm_report_rindex_val(&a->monthly, i);
	*sum += amount; /* at most the client's revenue, which did not overflow */
	return TR_OK;
}

/* One span's "c:<currency>:<client>" counters into the clients' revenue
 * and their month. */
static int
abc_span(void *arg, const struct span *span, const bson_t *values)
{
	struct abc *a = arg;
	bson_iter_t it;
	long m = span->month - a->first_month;

	if (m < 0 || m >= a->months || !bson_iter_init(&it, values))
		return TR_OK;
	while (bson_iter_next(&it)) {
		const char *rest = crm_report_after_prefix(bson_iter_key(&it), "c:");
		int64_t amount = bson_iter_as_int64(&it);
		uint8_t key[KEY_LEN];
		bson_oid_t client;
		long i;
		if (!rest || strncmp(rest, a->currency, 3) != 0 || rest[3] != ':' ||
		    !tr_is_object_id(rest + 4) || amount == 0)
			continue;
		bson_oid_init_from_string(&client, rest + 4);
		crm_report_oid_key(key, &client, 0);
		if ((i = crm_report_rindex_put(&a->clients, key)) < 0)
			return TR_ENOMEM;
		struct client_revenue *cr = crm_report_rindex_val(&a->clients, i);
		if (__builtin_add_overflow(cr->revenue, amount, &cr->revenue))
			return TR_ELIMIT;
		key[12] = (uint8_t)(m >> 8);
		key[13] = (uint8_t)m;
		if ((i = crm_report_rindex_put(&a->monthly, key)) < 0)
			return TR_ENOMEM;
		*(int64_t *)crm_report_rindex_val(&a->monthly, i) += amount;
	}
	return TR_OK;
}

static int
abc_totals(struct tr_ctx *c, struct abc *a, const bson_t *filter)
{
	struct plan *p = calloc(1, sizeof(*p));
	int rc;

	if (!p)
		return TR_ENOMEM;
	rc = crm_report_plan_period(p, &a->period)
		 ? crm_report_spans_each(c, "crm.x", p, abc_span, a)
		 : TR_ELIMIT;
	if (rc == TR_OK)
		rc = crm_report_scan_days(c, p, "deals", filter, "_xd", abc_visit, a);
	free(p);
	return rc;
}

/* Listing order: revenue (the weight) descending, then client id. */
static int
revenue_order(const void *a, const void *b)
{
	const struct ranked *ra = a, *rb = b;

	if (ra->weight != rb->weight)
		return ra->weight > rb->weight ? -1 : 1;
	return memcmp(ra->key, rb->key, KEY_LEN);
}

/* XYZ class and cv (rounded to 4 decimals, scaled by 10^4) of monthly
 * values m[0..n) summing to r > 0; see the comment at the top. */
static char
xyz_class(const int64_t *m, int n, int64_t r, u128 *cv_scaled)
{
	u128 s2 = 0, v, r2 = (u128)r * (u128)r, ns2;
	bool exact = true;
	char cls;

	for (int i = 0; i < n && exact; i++) {
		u128 sq = (u128)m[i] * (u128)m[i];
		exact = !__builtin_add_overflow(s2, sq, &s2);
	}
	exact = exact && !__builtin_mul_overflow(s2, (u128)n, &ns2);
	if (exact) {
		u128 v100;
		v = ns2 - r2; /* n * sum(m^2) >= (sum m)^2 */
		exact = !__builtin_mul_overflow(v, (u128)100, &v100);
		if (exact) {
			cls = v100 <= r2 ? 'X' : v * 16 <= r2 ? 'Y' : 'Z';
			long double cv = sqrtl((long double)v) / (long double)r;
			*cv_scaled = (u128)floorl(cv * 10000.0L + 0.5L);
			return cls;
		}
	}
	/* beyond 128 bits: long double, over deviations from the mean */
	long double mean = (long double)r / n, var = 0;
	for (int i = 0; i < n; i++)
		var += ((long double)m[i] - mean) * ((long double)m[i] - mean);
	var /= n;
	long double cv = sqrtl(var) / mean;
	*cv_scaled = (u128)floorl(cv * 10000.0L + 0.5L);
	return var * 100 <= mean * mean ? 'X' : var * 16 <= mean * mean ? 'Y' : 'Z';
}

/* GET /v1/crm/reports/abc-xyz?from&to&currency */
void
crm_reports_abc_xyz(struct tr_ctx *c)
{
	struct abc a;
	bson_t filter = BSON_INITIALIZER, out = BSON_INITIALIZER, items, item, list;
	const char *currency = tr_query(c, "currency");
	struct ranked *order = NULL;
	int64_t *monthly = NULL;
	u128 total = 0, cum = 0;
	bool ok;
	int rc;

	memset(&a, 0, sizeof(a));
	a.c = c;
	crm_report_rindex_init(&a.clients, sizeof(struct client_revenue));
	crm_report_rindex_init(&a.monthly, sizeof(int64_t));
	ok = crm_report_period_read(c, true, &a.period);
	if (!currency || strlen(currency) != 3 || !isupper((unsigned char)currency[0]) ||
	    !isupper((unsigned char)currency[1]) || !isupper((unsigned char)currency[2])) {
		crm_report_bad_param(
		    c, "currency", currency ? "must be an ISO 4217 code like EUR" : "is required");
		ok = false;
	}
	if (ok) {
		long last = crm_report_month_of(a.period.to - 1);
		a.first_month = crm_report_month_of(a.period.from);
		/* each listed client has a monthly value per month in the answer */
		long most = tr_config_int("crm_report_max_months");
		if (last - a.first_month + 1 > most) {
			char *why = tr_arena_alloc(c->req->arena, 80);
			snprintf(why, 80, "the period may span at most %ld calendar months", most);
			crm_report_bad_param(c, "to", why);
			ok = false;
		}
		a.months = (int)(last - a.first_month + 1);
	}
	if (!ok)
		goto done;
	memcpy(a.currency, currency, 4);

	BSON_APPEND_UTF8(&filter, "status", "won");
	if (c->req->principal.own_only) {
		crm_report_period_filter(&filter, "closed_at", &a.period);
		crm_report_own_filter(c, &filter);
		rc = crm_report_walk_all(c, "deals", &filter, abc_visit, &a);
	} else {
		rc = abc_totals(c, &a, &filter);
	}
	if (rc == TR_OK)
		rc = crm_report_client_names_fill(c, &a.clients,
						  offsetof(struct client_revenue, name));
	order = rc == TR_OK ? crm_report_rindex_sorted(&a.clients, revenue_order, true) : NULL;
	monthly = calloc((size_t)a.months, sizeof(*monthly));
	if (rc == TR_OK && (!order || !monthly))
		rc = TR_ENOMEM;
	for (size_t i = 0; rc == TR_OK && i < a.clients.n; i++)
		total += (u128)((struct client_revenue *)crm_report_rindex_val(&a.clients, (long)i))
			     ->revenue;
	if (rc == TR_OK && total > (u128)INT64_MAX)
		rc = TR_ELIMIT;
	if (rc != TR_OK) {
		crm_report_failed(c, rc);
		goto done;
	}

	BSON_APPEND_UTF8(&out, "currency", a.currency);
	crm_report_period_append(&out, &a.period);
	BSON_APPEND_INT32(&out, "months", a.months);
	BSON_APPEND_ARRAY_BEGIN(&out, "calendar_months", &list);
	for (int m = 0; m < a.months; m++) {
		char label[48], idx[16];
		long mm = a.first_month + m;
		snprintf(label, sizeof(label), "%04ld-%02ld", mm / 12, mm % 12 + 1);
		BSON_APPEND_UTF8(&list, crm_report_array_key((uint32_t)m, idx, sizeof(idx)), label);
	}
	bson_append_array_end(&out, &list);
	crm_report_money_append(&out, "total", (int64_t)total, a.currency);
	BSON_APPEND_ARRAY_BEGIN(&out, "items", &items);
	for (size_t i = 0; i < a.clients.n; i++) {
		const uint8_t *ckey = order[i].key;
		const struct client_revenue *cr = crm_report_rindex_val(&a.clients, order[i].index);
		uint8_t mkey[KEY_LEN];
		char hex[25], idx[16];
		bson_oid_t id;
		u128 cv;
		char abc_cls, xyz_cls;

		memcpy(id.bytes, ckey, 12);
		bson_oid_to_string(&id, hex);
		cum += (u128)cr->revenue;
		if (i == 0 || cum * 100 <= total * 80)
			abc_cls = 'A';
		else if (cum * 100 <= total * 95)
			abc_cls = 'B';
		else
			abc_cls = 'C';
		memcpy(mkey, ckey, KEY_LEN);
		for (int m = 0; m < a.months; m++) {
			long mi;
			mkey[12] = (uint8_t)(m >> 8);
			mkey[13] = (uint8_t)m;
			mi = crm_report_rindex_find(&a.monthly, mkey);
			monthly[m] =
			    mi >= 0 ? *(int64_t *)crm_report_rindex_val(&a.monthly, mi) : 0;
		}
		xyz_cls = xyz_class(monthly, a.months, cr->revenue, &cv);

		BSON_APPEND_DOCUMENT_BEGIN(
		    &items, crm_report_array_key((uint32_t)i, idx, sizeof(idx)), &item);
		BSON_APPEND_UTF8(&item, "client_id", hex);
		if (cr->name)
			BSON_APPEND_UTF8(&item, "client_name", cr->name);
		else
			BSON_APPEND_NULL(&item, "client_name");
		crm_report_money_append(&item, "revenue", cr->revenue, a.currency);
		crm_report_decimal4_append(&item, "share",
					   ((u128)cr->revenue * 20000 + total) / (total * 2));
		crm_report_decimal4_append(&item, "cumulative_share",
					   (cum * 20000 + total) / (total * 2));
		BSON_APPEND_UTF8(&item, "abc", abc_cls == 'A' ? "A" : abc_cls == 'B' ? "B" : "C");
		BSON_APPEND_ARRAY_BEGIN(&item, "monthly", &list);
		for (int m = 0; m < a.months; m++) {
			char midx[16];
			BSON_APPEND_INT64(&list,
					  crm_report_array_key((uint32_t)m, midx, sizeof(midx)),
					  monthly[m]);
		}
		bson_append_array_end(&item, &list);
		crm_report_decimal4_append(&item, "cv", cv);
		BSON_APPEND_UTF8(&item, "xyz", xyz_cls == 'X' ? "X" : xyz_cls == 'Y' ? "Y" : "Z");
		bson_append_document_end(&items, &item);
	}
	bson_append_array_end(&out, &items);
	tr_reply_json(c, 200, &out);
done:
	free(order);
	free(monthly);
	crm_report_rindex_free(&a.clients);
	crm_report_rindex_free(&a.monthly);
	bson_destroy(&filter);
	bson_destroy(&out);
}
