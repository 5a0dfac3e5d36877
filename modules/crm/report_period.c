/* The period of a CRM report and how it is read (reports.h): the from/to
 * query parameters, the ":own" filter, and the plan that cuts a period
 * into the months and days whose registers hold its totals. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "register.h"
#include "reports.h"
#include "util.h"

/* ---- parameters ---- */

/* A field error on a query parameter (422). */
void
crm_report_bad_param(struct tr_ctx *c, const char *field, const char *message)
{
	if (!c->resp->problem_slug)
		tr_problem(c, 422, "validation-failed", "the query has invalid parameters");
	tr_problem_field(c, field, message);
}

static bool
time_param(struct tr_ctx *c, const char *name, bool required, bool *has, int64_t *ms)
{
	const char *v = tr_query(c, name);

	*has = false;
	if (!v || !*v) {
		if (required)
			crm_report_bad_param(c, name, "is required (an RFC 3339 time)");
		return !required;
	}
	if (!tr_parse_time(v, ms)) {
		crm_report_bad_param(c, name, "must be an RFC 3339 time like 2026-01-01T00:00:00Z");
		return false;
	}
	*has = true;
	return true;
}

/* Reads ?from&to; sets the 422 and returns false when they are not good. */
bool
crm_report_period_read(struct tr_ctx *c, bool required, struct period *p)
{
	bool ok = true;

	memset(p, 0, sizeof(*p));
	ok &= time_param(c, "from", required, &p->has_from, &p->from);
	ok &= time_param(c, "to", required, &p->has_to, &p->to);
	if (ok && p->has_from && p->has_to && p->from >= p->to) {
		crm_report_bad_param(c, "to", "must be later than from");
		ok = false;
	}
	return ok;
}

bool
crm_report_in_period(const struct period *p, int64_t ms)
{
	return (!p->has_from || ms >= p->from) && (!p->has_to || ms < p->to);
}

/* field: {"$gte": from, "$lt": to} for the bounds there are. */
void
crm_report_period_filter(bson_t *filter, const char *field, const struct period *p)
{
	bson_t range;

	if (!p->has_from && !p->has_to)
		return;
	BSON_APPEND_DOCUMENT_BEGIN(filter, field, &range);
	if (p->has_from)
		BSON_APPEND_DATE_TIME(&range, "$gte", p->from);
	if (p->has_to)
		BSON_APPEND_DATE_TIME(&range, "$lt", p->to);
	bson_append_document_end(filter, &range);
}

/* "from" and "to" of the answer (null for an open bound). */
void
crm_report_period_append(bson_t *out, const struct period *p)
{
	char ts[32];

	if (p->has_from) {
		tr_format_time(p->from, ts);
		BSON_APPEND_UTF8(out, "from", ts);
	} else {
		BSON_APPEND_NULL(out, "from");
	}
	if (p->has_to) {
		tr_format_time(p->to, ts);
		BSON_APPEND_UTF8(out, "to", ts);
	} else {
		BSON_APPEND_NULL(out, "to");
	}
}

/* A ":own" holder of crm.reports.read reads only what they own. */
void
crm_report_own_filter(const struct tr_ctx *c, bson_t *filter)
{
	if (c->req->principal.own_only)
		BSON_APPEND_OID(filter, "owner_id", &c->req->principal.user_id);
}

/* Month number (year * 12 + month - 1) of a time, in UTC. */
long
crm_report_month_of(int64_t ms)
{
	int64_t s = ms / 1000 - (ms % 1000 < 0 ? 1 : 0);
	time_t t = (time_t)s;
	struct tm tm;

	gmtime_r(&t, &tm);
	return (long)(tm.tm_year + 1900) * 12 + tm.tm_mon;
}

/* ---- totals: the registers of a period (totals.c) ----
 *
 * A caller with the whole of crm.reports.read gets reports from the totals
 * the records keep in registers, not from the records: the period is cut
 * into whole months and whole days (their registers are read and added
 * up) and at most two partial days at its ends (their records are read and
 * counted as before). An open start is all time minus what lies after the
 * end. A ":own" caller's reports still count the caller's own records. */

#define DAY_MS (24LL * 3600 * 1000)
static int64_t
day_floor(int64_t ms)
{
	int64_t d = ms / DAY_MS;
	if (ms % DAY_MS < 0)
		d--;
	return d * DAY_MS;
}

static bool
plan_add(struct plan *p, const char *suffix, int sign, long month)
{
	if (p->n == MAX_SPANS)
		return false;
	snprintf(p->spans[p->n].suffix, sizeof(p->spans[p->n].suffix), "%s", suffix);
	p->spans[p->n].sign = sign;
	p->spans[p->n].month = month;
	p->n++;
	return true;
}

static void
plan_scan(struct plan *p, int64_t day)
{
	tr_format_day(day, p->scan[p->nscan++]);
}

/* Whole days [a, b) (both midnights UTC): whole months where they fit. */
static bool
plan_days(struct plan *p, int64_t a, int64_t b, int sign)
{
	while (a < b) {
		time_t t = (time_t)(a / 1000);
		struct tm tm;
		char suffix[32], day[16];
		gmtime_r(&t, &tm);
		tr_format_day(a, day);
		if (tm.tm_mday == 1) {
			struct tm next = tm;
			next.tm_mon++;
			int64_t end = (int64_t)timegm(&next) * 1000;
			if (end <= b) {
				snprintf(suffix, sizeof(suffix), "m%.7s", day);
				if (!plan_add(p, suffix, sign, crm_report_month_of(a)))
					return false;
				a = end;
				continue;
			}
		}
		snprintf(suffix, sizeof(suffix), "d%s", day);
		if (!plan_add(p, suffix, sign, crm_report_month_of(a)))
			return false;
		a += DAY_MS;
	}
	return true;
}

/* The spans and partial days of a period; false when it needs more spans
 * than a report reads. Nothing is dated after tomorrow (records carry the
 * server's clock; imported deals close in the past). */
bool
crm_report_plan_period(struct plan *p, const struct period *per)
{
	int64_t far = day_floor(tr_now_ms()) + 2 * DAY_MS;

	p->n = p->nscan = 0;
	if (!per->has_from) {
		if (!plan_add(p, "all", 1, -1))
			return false;
		if (!per->has_to)
			return true;
		int64_t b = day_floor(per->to);
		if (b < per->to)
			plan_scan(p, b);
		return per->to >= far || plan_days(p, b, far > b ? far : b, -1);
	}
	int64_t hi = per->has_to ? per->to : far;
	int64_t a = day_floor(per->from), b = day_floor(hi);
	if (a < per->from)
		a += DAY_MS; /* the first whole day */
	if (a > b) {	     /* within one day */
		plan_scan(p, day_floor(per->from));
		return true;
	}
	if (day_floor(per->from) < a)
		plan_scan(p, day_floor(per->from));
	if (b < hi)
		plan_scan(p, b);
	return plan_days(p, a, b, 1);
}

/* Calls fn with each span's register values ({counter: value}). */
int
crm_report_spans_each(struct tr_ctx *c, const char *family, const struct plan *p,
		      int (*fn)(void *arg, const struct span *span, const bson_t *values),
		      void *arg)
{
	int rc = TR_OK;

	for (int i = 0; rc == TR_OK && i < p->n; i++) {
		char key[200];
		bson_t state, values;
		bson_iter_t it;
		const uint8_t *data;
		uint32_t len;

		snprintf(key, sizeof(key), "%s/%s", family, p->spans[i].suffix);
		rc = tr_register_read(c->db, key, &state);
		if (rc == TR_OK && bson_iter_init_find(&it, &state, "values") &&
		    BSON_ITER_HOLDS_DOCUMENT(&it)) {
			bson_iter_document(&it, &len, &data);
			if (bson_init_static(&values, data, len))
				rc = fn(arg, &p->spans[i], &values);
		}
		bson_destroy(&state);
	}
	return rc;
}

static int
sum_span(void *arg, const struct span *span, const bson_t *values)
{
	struct counters *total = arg;
	bson_iter_t it;

	if (!bson_iter_init(&it, values))
		return TR_OK;
	while (bson_iter_next(&it)) {
		int64_t v = bson_iter_as_int64(&it) * span->sign, sum;
		if (__builtin_add_overflow(counters_get(total, bson_iter_key(&it)), v, &sum))
			return TR_ELIMIT;
		if (!counters_set(total, bson_iter_key(&it), sum))
			return TR_ENOMEM;
	}
	return TR_OK;
}

/* The counters of family over the plan's spans, added up (signs applied). */
int
crm_report_spans_sum(struct tr_ctx *c, const char *family, const struct plan *p,
		     struct counters *total)
{
	memset(total, 0, sizeof(*total));
	return crm_report_spans_each(c, family, p, sum_span, total);
}

/* Visits the records of coll matching filter on each partial day of the
 * plan (day_field is the record's day of the moment the report groups by). */
int
crm_report_scan_days(struct tr_ctx *c, const struct plan *p, const char *coll, const bson_t *filter,
		     const char *day_field, visit_fn visit, void *arg)
{
	int rc = TR_OK;

	for (int i = 0; rc == TR_OK && i < p->nscan; i++) {
		bson_t f = BSON_INITIALIZER;
		if (filter)
			bson_concat(&f, filter);
		BSON_APPEND_UTF8(&f, day_field, p->scan[i]);
		rc = crm_report_walk_all(c, coll, &f, visit, arg);
		bson_destroy(&f);
	}
	return rc;
}

/* A counter "<prefix><rest>": rest, or NULL. */
const char *
crm_report_after_prefix(const char *name, const char *prefix)
{
	size_t n = strlen(prefix);
	return strncmp(name, prefix, n) == 0 ? name + n : NULL;
}
