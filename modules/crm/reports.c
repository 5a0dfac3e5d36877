/* CRM reports (CONTRACT.md "Reports"): funnel, abc-xyz, managers, sources.
 *
 * How they are computed. Every report walks the tenant's records page by
 * page through the data API (tr_db_list, REPORT_PAGE records a page, in
 * created_at then id order) and aggregates in C as it goes, so the answer
 * is the same on FerretDB and MongoDB and memory grows with the number of
 * groups (stages, clients x months, owners, leads of the period), never
 * with a whole collection held at once. The database filter only narrows
 * the walk; every condition is checked again in C on the rendered record.
 * A caller holding crm.reports.read only as ":own" sees reports over the
 * deals and leads they own.
 *
 * Common parameters. `from` and `to` are RFC 3339 times (any offset; the
 * answer shows them in UTC). The period is [from, to): from included, to
 * excluded. Where they are optional, a missing bound is open. from must be
 * before to. Bad values answer 422 with the field named.
 *
 * Money is {"amount", "currency"}, amounts in minor units; sums are kept
 * per currency and listed in currency order ("won_amounts": [...]). A deal
 * without an amount counts everywhere except in sums. Ratios are numbers
 * rounded half up to 4 decimals (0.6667) or null when undefined; the
 * shares and cv of abc-xyz are strings with exactly 4 decimals ("0.4500")
 * so they read back exactly; classes are decided on exact values, never on
 * the rounded ones.
 *
 * funnel ?pipeline_id (default: the tenant's default pipeline) &from&to:
 *   the deals of the pipeline with created_at in the period. For each stage
 *   of the pipeline, in its order:
 *     entered      deals whose stage_history names the stage (or that are
 *                  in it now), each deal once however often it came back;
 *     still_there  of those, open deals whose current stage it is;
 *     moved_on     of those, the rest: moved to another stage or closed
 *                  (won or lost) - so entered = still_there + moved_on;
 *     conversion_to_next  entered of the next stage / entered of this one
 *                  (it can exceed 1 when deals skip this stage or start in
 *                  a later one); null for the last stage and when entered
 *                  is 0.
 *   Stage keys no longer in the pipeline are not listed (their deals count
 *   in the totals). totals: deals, open, won, lost, and won_amounts /
 *   lost_amounts per currency. pipeline_id that is not an id: 422; another
 *   tenant's or an unknown one: 404.
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
 *   MAX_MONTHS of them; a month only partly inside the period counts as a
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
 *   deals without an owner are one row with owner_id null, listed last;
 *   others by owner id): leads = leads with created_at in the period they
 *   own; deals_won / deals_lost = their deals won / lost with closed_at in
 *   the period; revenue = the amounts of those won deals per currency;
 *   conversion = deals_won / (deals_won + deals_lost), null when both are 0.
 *   Owners with none of these are not listed.
 *
 * sources ?from&to: the leads with created_at in the period, and what came
 *   of them up to now. Per channel (in the contract's order, then leads
 *   without a source as channel null; channels without leads are left out)
 *   and per campaign (every campaign of the tenant, by creation, then
 *   campaigns named by leads but since deleted, with name and cost null):
 *   leads; deals = deals whose lead_id is one of those leads (any status,
 *   created any time); revenue = the amounts of those deals that are won,
 *   per currency; cost = the campaign's cost (the whole cost, not spread
 *   over periods; null for a channel, since a campaign's leads may come
 *   through several channels); cost_per_lead = {cost amount / leads rounded
 *   half up to a minor unit, cost currency}, null when there is no cost or
 *   no leads. */
#include <ctype.h>
#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "counters.h"
#include "crm.h"
#include "db.h"
#include "json.h"
#include "register.h"
#include "util.h"

/* Records read per page while walking a collection: large enough to keep
 * the number of queries down (FerretDB's SQLite backend reads and sorts the
 * whole collection for every page), small enough that a page of rendered
 * deals with their stage history stays around two megabytes. */
#define REPORT_PAGE 2000
/* More ids than this are named by one read of the whole collection
 * (client, user names; see names_fill). */
#define POINT_LOOKUPS 40
/* The longest abc-xyz period, in calendar months (each listed client has
 * one monthly value per month in the answer). */
#define MAX_MONTHS 120
#define MAX_MONTHS_TEXT "120"
/* Stages of a pipeline the funnel follows (pipelines.c allows 30). */
#define MAX_FUNNEL_STAGES 64

typedef unsigned __int128 u128;

/* ---- parameters ---- */

/* [from, to); a missing bound is open. */
struct period {
	bool has_from, has_to;
	int64_t from, to; /* ms since the epoch */
};

/* A field error on a query parameter (422). */
static void
bad_param(struct tr_ctx *c, const char *field, const char *message)
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
			bad_param(c, name, "is required (an RFC 3339 time)");
		return !required;
	}
	if (!tr_parse_time(v, ms)) {
		bad_param(c, name, "must be an RFC 3339 time like 2026-01-01T00:00:00Z");
		return false;
	}
	*has = true;
	return true;
}

/* Reads ?from&to; sets the 422 and returns false when they are not good. */
static bool
period_read(struct tr_ctx *c, bool required, struct period *p)
{
	bool ok = true;

	memset(p, 0, sizeof(*p));
	ok &= time_param(c, "from", required, &p->has_from, &p->from);
	ok &= time_param(c, "to", required, &p->has_to, &p->to);
	if (ok && p->has_from && p->has_to && p->from >= p->to) {
		bad_param(c, "to", "must be later than from");
		ok = false;
	}
	return ok;
}

static bool
in_period(const struct period *p, int64_t ms)
{
	return (!p->has_from || ms >= p->from) && (!p->has_to || ms < p->to);
}

/* field: {"$gte": from, "$lt": to} for the bounds there are. */
static void
period_filter(bson_t *filter, const char *field, const struct period *p)
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
static void
period_append(bson_t *out, const struct period *p)
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
static void
own_filter(const struct tr_ctx *c, bson_t *filter)
{
	if (c->req->principal.own_only)
		BSON_APPEND_OID(filter, "owner_id", &c->req->principal.user_id);
}

/* ---- reading rendered records (ids are hex, times RFC 3339 strings) ---- */

static bool
rec_oid(const bson_t *rec, const char *field, bson_oid_t *out)
{
	const char *hex = tr_doc_str(rec, field);

	if (!hex || !tr_is_object_id(hex))
		return false;
	bson_oid_init_from_string(out, hex);
	return true;
}

static bool
rec_time(const bson_t *rec, const char *field, int64_t *ms)
{
	const char *s = tr_doc_str(rec, field);

	return s && tr_parse_time(s, ms);
}

static bool
status_is(const bson_t *rec, const char *status)
{
	const char *s = tr_doc_str(rec, "status");

	return s && strcmp(s, status) == 0;
}

/* A money field {"amount", "currency"}; false when absent or null. */
static bool
rec_money(const bson_t *rec, const char *field, int64_t *amount, char currency[4])
{
	bson_iter_t it, sub;
	int seen = 0;

	if (!bson_iter_init_find(&it, rec, field) || !BSON_ITER_HOLDS_DOCUMENT(&it) ||
	    !bson_iter_recurse(&it, &sub))
		return false;
	while (bson_iter_next(&sub)) {
		if (strcmp(bson_iter_key(&sub), "amount") == 0 &&
		    (BSON_ITER_HOLDS_INT64(&sub) || BSON_ITER_HOLDS_INT32(&sub))) {
			*amount = bson_iter_as_int64(&sub);
			seen |= 1;
		} else if (strcmp(bson_iter_key(&sub), "currency") == 0 &&
			   BSON_ITER_HOLDS_UTF8(&sub) && strlen(bson_iter_utf8(&sub, NULL)) == 3) {
			memcpy(currency, bson_iter_utf8(&sub, NULL), 4);
			seen |= 2;
		}
	}
	return seen == 3 && *amount >= 0;
}

static bool
own_ok(const struct tr_ctx *c, const bson_t *record)
{
	bson_oid_t owner;

	if (!c->req->principal.own_only)
		return true;
	return rec_oid(record, "owner_id", &owner) &&
	       bson_oid_equal(&owner, &c->req->principal.user_id);
}

/* ---- walking a collection ---- */

/* Called for each record; a non-zero return (a TR_E* code) stops the walk. */
typedef int (*visit_fn)(void *arg, const bson_t *record);

/* Calls visit for every record of coll matching filter (the tenant's only),
 * REPORT_PAGE at a time in created_at then id order. Returns 0 or the
 * first error of the data layer or of visit. */
static int
walk(struct tr_ctx *c, const char *coll, const bson_t *filter, visit_fn visit, void *arg)
{
	struct tr_list_query q;
	char *next = NULL;
	int rc = TR_OK;

	memset(&q, 0, sizeof(q));
	q.sort_field = "created_at";
	q.direction = 1;
	q.limit = REPORT_PAGE;
	q.narrow = true; /* everything that matches, in one sorted read per page */
	for (;;) {
		bson_t items = BSON_INITIALIZER;
		bson_iter_t it;

		rc = tr_db_list(c->db, coll, filter, &q, &items, &next);
		if (rc == TR_OK && bson_iter_init(&it, &items))
			while (rc == TR_OK && bson_iter_next(&it)) {
				const uint8_t *data;
				uint32_t len;
				bson_t record;
				if (!BSON_ITER_HOLDS_DOCUMENT(&it))
					continue;
				bson_iter_document(&it, &len, &data);
				if (bson_init_static(&record, data, len))
					rc = visit(arg, &record);
			}
		bson_destroy(&items);
		if (rc != TR_OK || !next)
			break;
		if (!tr_list_query_next(&q, next)) {
			rc = TR_EINTERNAL;
			break;
		}
		free(next);
		next = NULL;
	}
	free(next);
	tr_list_query_free(&q);
	return rc;
}

/* The same for aggregates that do not depend on order (deals, leads): one
 * unsorted cursor, which FerretDB answers without sorting the collection
 * for every page. */
static int
walk_all(struct tr_ctx *c, const char *coll, const bson_t *filter, visit_fn visit, void *arg)
{
	return tr_db_each(c->db, coll, filter, visit, arg);
}

/* ---- a small hash index: 16-byte keys -> dense indexes and values ---- */

#define KEY_LEN 16

/* Keys in insertion order, each with a zeroed value of vsize bytes; found
 * through an open-addressing table. Owned by the report that made it. */
struct rindex {
	size_t vsize;
	size_t n, cap;	 /* keys held, room in keys and vals */
	uint8_t *keys;	 /* n * KEY_LEN */
	uint8_t *vals;	 /* n * vsize */
	uint32_t *slots; /* key index + 1; 0 is empty */
	size_t nslots;	 /* a power of two */
};

static void
rindex_init(struct rindex *ix, size_t vsize)
{
	memset(ix, 0, sizeof(*ix));
	ix->vsize = vsize;
}

static void
rindex_free(struct rindex *ix)
{
	free(ix->keys);
	free(ix->vals);
	free(ix->slots);
	memset(ix, 0, sizeof(*ix));
}

static uint64_t
key_hash(const uint8_t *key)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */

	for (int i = 0; i < KEY_LEN; i++)
		h = (h ^ key[i]) * 1099511628211ULL;
	return h;
}

static const uint8_t *
rindex_key(const struct rindex *ix, long i)
{
	return ix->keys + (size_t)i * KEY_LEN;
}

static void *
rindex_val(const struct rindex *ix, long i)
{
	return ix->vals + (size_t)i * ix->vsize;
}

/* The index of key, or -1. */
static long
rindex_find(const struct rindex *ix, const uint8_t *key)
{
	if (!ix->nslots)
		return -1;
	for (size_t s = key_hash(key) & (ix->nslots - 1);; s = (s + 1) & (ix->nslots - 1)) {
		uint32_t v = ix->slots[s];
		if (v == 0)
			return -1;
		if (memcmp(rindex_key(ix, (long)v - 1), key, KEY_LEN) == 0)
			return (long)v - 1;
	}
}

static void
slot_put(uint32_t *slots, size_t nslots, const uint8_t *key, uint32_t v)
{
	size_t s = key_hash(key) & (nslots - 1);

	while (slots[s])
		s = (s + 1) & (nslots - 1);
	slots[s] = v;
}

/* The index of key, added (with a zeroed value) when absent; -1 when out
 * of memory. */
static long
rindex_put(struct rindex *ix, const uint8_t *key)
{
	long i = rindex_find(ix, key);

	if (i >= 0)
		return i;
	if (ix->n >= UINT32_MAX - 1)
		return -1;
	if (ix->n == ix->cap) {
		size_t cap = ix->cap ? ix->cap * 2 : 64;
		uint8_t *keys = realloc(ix->keys, cap * KEY_LEN);
		if (!keys)
			return -1;
		ix->keys = keys;
		uint8_t *vals = realloc(ix->vals, cap * (ix->vsize ? ix->vsize : 1));
		if (!vals)
			return -1;
		ix->vals = vals;
		ix->cap = cap;
	}
	if ((ix->n + 1) * 2 > ix->nslots) {
		size_t nslots = ix->nslots ? ix->nslots * 2 : 128;
		uint32_t *slots = calloc(nslots, sizeof(*slots));
		if (!slots)
			return -1;
		for (size_t k = 0; k < ix->n; k++)
			slot_put(slots, nslots, rindex_key(ix, (long)k), (uint32_t)k + 1);
		free(ix->slots);
		ix->slots = slots;
		ix->nslots = nslots;
	}
	i = (long)ix->n++;
	memcpy(ix->keys + (size_t)i * KEY_LEN, key, KEY_LEN);
	memset(rindex_val(ix, i), 0, ix->vsize);
	slot_put(ix->slots, ix->nslots, key, (uint32_t)i + 1);
	return i;
}

/* A key of an ObjectId and a tag byte (the rest zero). */
static void
oid_key(uint8_t key[KEY_LEN], const bson_oid_t *oid, uint8_t tag)
{
	memset(key, 0, KEY_LEN);
	if (oid)
		memcpy(key, oid->bytes, 12);
	key[12] = tag;
}

/* One key of an rindex in a sorted listing. */
struct ranked {
	const uint8_t *key;
	int64_t weight; /* the value's first int64 when asked for, else 0 */
	long index;
};

static int
key_order(const void *a, const void *b)
{
	return memcmp(((const struct ranked *)a)->key, ((const struct ranked *)b)->key, KEY_LEN);
}

/* malloc'd listing of the ix->n keys sorted by cmp (on struct ranked);
 * NULL when out of memory. */
static struct ranked *
rindex_sorted(const struct rindex *ix, int (*cmp)(const void *, const void *), bool weighted)
{
	struct ranked *r = malloc((ix->n ? ix->n : 1) * sizeof(*r));

	if (!r)
		return NULL;
	for (size_t i = 0; i < ix->n; i++) {
		r[i].key = rindex_key(ix, (long)i);
		r[i].index = (long)i;
		r[i].weight = weighted ? *(const int64_t *)rindex_val(ix, (long)i) : 0;
	}
	qsort(r, ix->n, sizeof(*r), cmp);
	return r;
}

/* ---- money per group and currency ---- */

/* A ledger: rindex with key {group[13], currency[3]} and an int64 sum. The
 * group names what the money belongs to (an owner, a campaign, "won"). */
struct ledger {
	struct rindex ix;
	struct ranked *order; /* after ledger_close: the keys in order */
};

static void
ledger_init(struct ledger *l)
{
	rindex_init(&l->ix, sizeof(int64_t));
	l->order = NULL;
}

static void
ledger_free(struct ledger *l)
{
	rindex_free(&l->ix);
	free(l->order);
	l->order = NULL;
}

/* Adds amount to group's currency sum; TR_ELIMIT when the sum would not
 * fit an amount. */
static int
ledger_add(struct ledger *l, const uint8_t group[13], const char *currency, int64_t amount)
{
	uint8_t key[KEY_LEN];
	long i;

	memcpy(key, group, 13);
	memcpy(key + 13, currency, 3);
	i = rindex_put(&l->ix, key);
	if (i < 0)
		return TR_ENOMEM;
	int64_t *sum = rindex_val(&l->ix, i);
	if (__builtin_add_overflow(*sum, amount, sum))
		return TR_ELIMIT;
	return TR_OK;
}

static int
ledger_close(struct ledger *l)
{
	l->order = rindex_sorted(&l->ix, key_order, false);
	return l->order ? TR_OK : TR_ENOMEM;
}

/* Appends field: [{"amount", "currency"}...] of group, by currency. */
static void
ledger_append(bson_t *out, const char *field, const struct ledger *l, const uint8_t group[13])
{
	size_t lo = 0, hi = l->ix.n;
	bson_t arr, money;
	uint32_t n = 0;

	while (lo < hi) { /* the first key not below group */
		size_t mid = (lo + hi) / 2;
		if (memcmp(l->order[mid].key, group, 13) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	BSON_APPEND_ARRAY_BEGIN(out, field, &arr);
	for (; lo < l->ix.n && memcmp(l->order[lo].key, group, 13) == 0; lo++) {
		const uint8_t *key = l->order[lo].key;
		char idx[16], currency[4];
		const char *k;
		bson_uint32_to_string(n++, &k, idx, sizeof(idx));
		memcpy(currency, key + 13, 3);
		currency[3] = '\0';
		BSON_APPEND_DOCUMENT_BEGIN(&arr, k, &money);
		BSON_APPEND_INT64(&money, "amount",
				  *(int64_t *)rindex_val(&l->ix, l->order[lo].index));
		BSON_APPEND_UTF8(&money, "currency", currency);
		bson_append_document_end(&arr, &money);
	}
	bson_append_array_end(out, &arr);
}

static void
money_append(bson_t *out, const char *field, int64_t amount, const char *currency)
{
	bson_t money;

	BSON_APPEND_DOCUMENT_BEGIN(out, field, &money);
	BSON_APPEND_INT64(&money, "amount", amount);
	BSON_APPEND_UTF8(&money, "currency", currency);
	bson_append_document_end(out, &money);
}

/* ---- numbers ---- */

/* num/den rounded half up to 4 decimals, as a number; null when den is 0. */
static void
ratio_append(bson_t *out, const char *field, int64_t num, int64_t den)
{
	if (den <= 0) {
		BSON_APPEND_NULL(out, field);
		return;
	}
	u128 q = ((u128)num * 20000 + (u128)den) / ((u128)den * 2);
	BSON_APPEND_DOUBLE(out, field, (double)(int64_t)q / 10000.0);
}

/* A ratio scaled by 10^4 as "0.4500". */
static void
decimal4_append(bson_t *out, const char *field, u128 scaled)
{
	char s[48];

	snprintf(s, sizeof(s), "%llu.%04llu", (unsigned long long)(scaled / 10000),
		 (unsigned long long)(scaled % 10000));
	BSON_APPEND_UTF8(out, field, s);
}

static const char *
array_key(uint32_t i, char *buf, size_t len)
{
	const char *k;

	bson_uint32_to_string(i, &k, buf, len);
	return k;
}

/* Tells the client what went wrong in a walk. */
static void
report_failed(struct tr_ctx *c, int rc)
{
	if (rc == TR_ELIMIT)
		tr_problem(c, 422, "validation-failed",
			   "the amounts in this period add up to more than an amount can hold; "
			   "choose a shorter period");
	else if (rc == TR_ENOMEM)
		tr_problem(c, 500, "internal", "the report did not fit in memory");
	else
		tr_problem_from_err(c, rc);
}

/* ---- names of records by id ---- */

/* A record's name copied into the request arena, or NULL. */
static const char *
arena_name(struct tr_ctx *c, const bson_t *record)
{
	const char *name = tr_doc_str(record, "name");

	return name ? tr_arena_strdup(c->req->arena, name) : NULL;
}

struct names {
	struct tr_ctx *c;
	struct rindex *ix;
	size_t name_offset; /* where the const char * lives in a value */
};

static int
names_visit(void *arg, const bson_t *record)
{
	struct names *nm = arg;
	uint8_t key[KEY_LEN];
	bson_oid_t id;
	long i;

	if (!rec_oid(record, "id", &id))
		return TR_OK;
	oid_key(key, &id, 0);
	i = rindex_find(nm->ix, key);
	if (i >= 0)
		*(const char **)((uint8_t *)rindex_val(nm->ix, i) + nm->name_offset) =
		    arena_name(nm->c, record);
	return TR_OK;
}

/* Fills the name (a const char * at name_offset of each value) of every key
 * of ix that is an id (tag byte 0) from coll. FerretDB pushes no $in down
 * (a batch of ids would read all of the tenant's records of coll each
 * time), so a few ids are read one by one, and many by one read of the
 * tenant's records of coll. */
static int
names_fill(struct tr_ctx *c, const char *coll, struct rindex *ix, size_t name_offset)
{
	struct names nm = {c, ix, name_offset};
	int rc = TR_OK;

	if (ix->n > POINT_LOOKUPS)
		return walk_all(c, coll, NULL, names_visit, &nm);
	for (size_t i = 0; rc == TR_OK && i < ix->n; i++) {
		const uint8_t *key = rindex_key(ix, (long)i);
		char hex[25];
		bson_oid_t id;
		bson_t record, rendered = BSON_INITIALIZER;
		if (key[12] != 0)
			continue;
		memcpy(id.bytes, key, 12);
		bson_oid_to_string(&id, hex);
		rc = tr_db_get(c->db, coll, hex, &record);
		if (rc == TR_OK) {
			tr_render_resource(&record, &rendered);
			rc = names_visit(&nm, &rendered);
		} else if (rc == TR_ENOTFOUND) {
			rc = TR_OK; /* gone since: no name */
		}
		bson_destroy(&record);
		bson_destroy(&rendered);
	}
	return rc;
}

/* ---- client names, kept per process ----
 *
 * Naming the clients abc-xyz lists means reading them, and FerretDB decodes
 * every record it returns in Go (about 0.1 ms each: naming 5,000 clients
 * takes half a second). So each process keeps the client names it read,
 * per tenant, each with the client's change count in the crm.names
 * register (totals.c) at the time. A report reads that register - one
 * lookup when nothing changed - and reads again only the clients whose
 * count moved. Exact across processes: every change of a name, in any
 * process, moves its count. */

#define NAME_TENANTS 8
#define NAME_MAX_CLIENTS 200000

struct cached_name {
	int64_t count;
	char *name; /* malloc'd, or NULL */
};

struct name_cache {
	bool used;
	bson_oid_t tenant;
	uint64_t last_used;
	struct rindex names; /* client key -> struct cached_name */
};

static struct {
	pthread_mutex_t lock;
	struct name_cache t[NAME_TENANTS];
	uint64_t clock;
} NC = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void
name_cache_clear(struct name_cache *nc)
{
	for (size_t i = 0; i < nc->names.n; i++)
		free(((struct cached_name *)rindex_val(&nc->names, (long)i))->name);
	rindex_free(&nc->names);
	nc->used = false;
}

/* The tenant's cache, made (in place of the least recently used) when
 * there is none. NC.lock held. */
static struct name_cache *
name_cache_of(const bson_oid_t *tenant)
{
	struct name_cache *lru = &NC.t[0];

	for (int i = 0; i < NAME_TENANTS; i++) {
		if (NC.t[i].used && bson_oid_equal(&NC.t[i].tenant, tenant)) {
			NC.t[i].last_used = ++NC.clock;
			return &NC.t[i];
		}
		if (!NC.t[i].used || NC.t[i].last_used < lru->last_used)
			lru = &NC.t[i];
	}
	if (lru->used)
		name_cache_clear(lru);
	lru->used = true;
	bson_oid_copy(tenant, &lru->tenant);
	rindex_init(&lru->names, sizeof(struct cached_name));
	lru->last_used = ++NC.clock;
	return lru;
}

/* A client's change count in the crm.names values. */
static int64_t
name_count(const struct counters *counts, const uint8_t *key)
{
	bson_oid_t id;
	char name[32], hex[25];

	memcpy(id.bytes, key, 12);
	bson_oid_to_string(&id, hex);
	snprintf(name, sizeof(name), "c:%s", hex);
	return counters_get(counts, name);
}

struct name_refresh {
	struct tr_ctx *c;
	const struct counters *counts;
	struct rindex *fresh; /* client key -> struct cached_name (names malloc'd) */
};

static int
refresh_visit(void *arg, const bson_t *client)
{
	struct name_refresh *r = arg;
	uint8_t key[KEY_LEN];
	bson_oid_t id;
	const char *name = tr_doc_str(client, "name");
	long i;

	if (!rec_oid(client, "id", &id))
		return TR_OK;
	oid_key(key, &id, 0);
	if ((i = rindex_put(r->fresh, key)) < 0)
		return TR_ENOMEM;
	struct cached_name *cn = rindex_val(r->fresh, i);
	cn->count = name_count(r->counts, key);
	free(cn->name);
	cn->name = name ? strdup(name) : NULL;
	return TR_OK;
}

/* names_fill for clients, through the process's cache. */
static int
client_names_fill(struct tr_ctx *c, struct rindex *ix, size_t name_offset)
{
	struct counters counts;
	struct rindex fresh, missing;
	bson_t state;
	bson_iter_t it;
	int rc;

	memset(&counts, 0, sizeof(counts));
	rindex_init(&fresh, sizeof(struct cached_name));
	rindex_init(&missing, 1);
	rc = tr_register_read(c->db, CRM_NAMES, &state);
	if (rc == TR_OK && bson_iter_init_find(&it, &state, "values") &&
	    BSON_ITER_HOLDS_DOCUMENT(&it)) {
		const uint8_t *data;
		uint32_t len;
		bson_t values;
		bson_iter_document(&it, &len, &data);
		if (bson_init_static(&values, data, len) && bson_iter_init(&it, &values))
			while (rc == TR_OK && bson_iter_next(&it))
				if (!counters_set(&counts, bson_iter_key(&it),
						  bson_iter_as_int64(&it)))
					rc = TR_ENOMEM;
	}
	bson_destroy(&state);
	/* names the cache has at the count the register has now */
	pthread_mutex_lock(&NC.lock);
	struct name_cache *nc = rc == TR_OK ? name_cache_of(&c->req->principal.tenant_id) : NULL;
	for (size_t i = 0; nc && rc == TR_OK && i < ix->n; i++) {
		const uint8_t *key = rindex_key(ix, (long)i);
		long k = rindex_find(&nc->names, key);
		const struct cached_name *cn = k >= 0 ? rindex_val(&nc->names, k) : NULL;
		if (cn && cn->count == name_count(&counts, key))
			*(const char **)((uint8_t *)rindex_val(ix, (long)i) + name_offset) =
			    cn->name ? tr_arena_strdup(c->req->arena, cn->name) : NULL;
		else if (rindex_put(&missing, key) < 0)
			rc = TR_ENOMEM;
	}
	pthread_mutex_unlock(&NC.lock);
	/* the others from the database: one by one when few, else all */
	struct name_refresh r = {c, &counts, &fresh};
	if (rc == TR_OK && missing.n > POINT_LOOKUPS) {
		rc = walk_all(c, "clients", NULL, refresh_visit, &r);
	} else {
		for (size_t i = 0; rc == TR_OK && i < missing.n; i++) {
			bson_t record, rendered = BSON_INITIALIZER;
			bson_oid_t id;
			char hex[25];
			memcpy(id.bytes, rindex_key(&missing, (long)i), 12);
			bson_oid_to_string(&id, hex);
			int grc = tr_db_get(c->db, "clients", hex, &record);
			if (grc == TR_OK) {
				tr_render_resource(&record, &rendered);
				rc = refresh_visit(&r, &rendered);
			} else if (grc != TR_ENOTFOUND) {
				rc = grc;
			}
			bson_destroy(&record);
			bson_destroy(&rendered);
		}
	}
	/* a client gone since has no name: kept as such */
	for (size_t i = 0; rc == TR_OK && i < missing.n; i++) {
		const uint8_t *key = rindex_key(&missing, (long)i);
		long k;
		if (rindex_find(&fresh, key) >= 0)
			continue;
		if ((k = rindex_put(&fresh, key)) < 0)
			rc = TR_ENOMEM;
		else
			((struct cached_name *)rindex_val(&fresh, k))->count =
			    name_count(&counts, key);
	}
	/* into the report, and into the cache */
	pthread_mutex_lock(&NC.lock);
	nc = rc == TR_OK ? name_cache_of(&c->req->principal.tenant_id) : NULL;
	for (size_t i = 0; nc && i < fresh.n; i++) {
		const uint8_t *key = rindex_key(&fresh, (long)i);
		struct cached_name *cn = rindex_val(&fresh, (long)i);
		long k = rindex_find(ix, key);
		if (k >= 0)
			*(const char **)((uint8_t *)rindex_val(ix, k) + name_offset) =
			    cn->name ? tr_arena_strdup(c->req->arena, cn->name) : NULL;
		if (nc->names.n >= NAME_MAX_CLIENTS)
			continue;
		long j = rindex_put(&nc->names, key);
		if (j < 0)
			continue;
		struct cached_name *kept = rindex_val(&nc->names, j);
		free(kept->name);
		*kept = *cn; /* the cache takes the name */
		cn->name = NULL;
	}
	pthread_mutex_unlock(&NC.lock);
	for (size_t i = 0; i < fresh.n; i++)
		free(((struct cached_name *)rindex_val(&fresh, (long)i))->name);
	rindex_free(&fresh);
	rindex_free(&missing);
	counters_free(&counts);
	return rc;
}

/* Month number (year * 12 + month - 1) of a time, in UTC. */
static long
month_of(int64_t ms)
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
#define MAX_SPANS 4096

struct span {
	char suffix[32]; /* "d2026-03-05", "m2026-03" or "all" */
	int sign;	 /* +1, or -1 for what an open start takes off all time */
	long month;	 /* month_of the span (-1 for all) */
};

struct plan {
	struct span spans[MAX_SPANS];
	int n;
	char scan[2][11]; /* partial days whose records are read */
	int nscan;
};

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
				if (!plan_add(p, suffix, sign, month_of(a)))
					return false;
				a = end;
				continue;
			}
		}
		snprintf(suffix, sizeof(suffix), "d%s", day);
		if (!plan_add(p, suffix, sign, month_of(a)))
			return false;
		a += DAY_MS;
	}
	return true;
}

/* The spans and partial days of a period; false when it needs more spans
 * than a report reads. Nothing is dated after tomorrow (records carry the
 * server's clock; imported deals close in the past). */
static bool
plan_period(struct plan *p, const struct period *per)
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
static int
spans_each(struct tr_ctx *c, const char *family, const struct plan *p,
	   int (*fn)(void *arg, const struct span *span, const bson_t *values), void *arg)
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
static int
spans_sum(struct tr_ctx *c, const char *family, const struct plan *p, struct counters *total)
{
	memset(total, 0, sizeof(*total));
	return spans_each(c, family, p, sum_span, total);
}

/* Visits the records of coll matching filter on each partial day of the
 * plan (day_field is the record's day of the moment the report groups by). */
static int
scan_days(struct tr_ctx *c, const struct plan *p, const char *coll, const bson_t *filter,
	  const char *day_field, visit_fn visit, void *arg)
{
	int rc = TR_OK;

	for (int i = 0; rc == TR_OK && i < p->nscan; i++) {
		bson_t f = BSON_INITIALIZER;
		if (filter)
			bson_concat(&f, filter);
		BSON_APPEND_UTF8(&f, day_field, p->scan[i]);
		rc = walk_all(c, coll, &f, visit, arg);
		bson_destroy(&f);
	}
	return rc;
}

/* A counter "<prefix><rest>": rest, or NULL. */
static const char *
after_prefix(const char *name, const char *prefix)
{
	size_t n = strlen(prefix);
	return strncmp(name, prefix, n) == 0 ? name + n : NULL;
}

/* ---- funnel ---- */

struct funnel {
	struct tr_ctx *c;
	struct period period;
	bson_oid_t pipeline_id;
	int nstages;
	const char *keys[MAX_FUNNEL_STAGES], *names[MAX_FUNNEL_STAGES];
	long long entered[MAX_FUNNEL_STAGES], still_there[MAX_FUNNEL_STAGES],
	    moved_on[MAX_FUNNEL_STAGES];
	long long deals, open, won, lost;
	struct ledger amounts; /* groups "w" (won) and "l" (lost) */
};

static int
stage_index(const struct funnel *f, const char *key)
{
	for (int i = 0; key && i < f->nstages; i++)
		if (strcmp(f->keys[i], key) == 0)
			return i;
	return -1;
}

static const uint8_t won_group[13] = {'w'}, lost_group[13] = {'l'};

static int
funnel_visit(void *arg, const bson_t *deal)
{
	struct funnel *f = arg;
	bson_oid_t pid;
	bson_iter_t it, hist, entry;
	uint64_t entered = 0;
	int64_t created, amount;
	char currency[4];
	int now;

	if (!rec_oid(deal, "pipeline_id", &pid) || !bson_oid_equal(&pid, &f->pipeline_id) ||
	    !rec_time(deal, "created_at", &created) || !in_period(&f->period, created) ||
	    !own_ok(f->c, deal))
		return TR_OK;
	now = stage_index(f, tr_doc_str(deal, "stage"));
	if (now >= 0)
		entered |= 1ULL << now;
	if (bson_iter_init_find(&it, deal, "stage_history") && BSON_ITER_HOLDS_ARRAY(&it) &&
	    bson_iter_recurse(&it, &hist))
		while (bson_iter_next(&hist)) {
			int i;
			if (!BSON_ITER_HOLDS_DOCUMENT(&hist) || !bson_iter_recurse(&hist, &entry) ||
			    !bson_iter_find(&entry, "stage") || !BSON_ITER_HOLDS_UTF8(&entry))
				continue;
			i = stage_index(f, bson_iter_utf8(&entry, NULL));
			if (i >= 0)
				entered |= 1ULL << i;
		}
	bool open = status_is(deal, "open");
	for (int i = 0; i < f->nstages; i++) {
		if (!(entered & (1ULL << i)))
			continue;
		f->entered[i]++;
		if (open && i == now)
			f->still_there[i]++;
		else
			f->moved_on[i]++;
	}
	f->deals++;
	if (open) {
		f->open++;
	} else if (status_is(deal, "won")) {
		f->won++;
		if (rec_money(deal, "amount", &amount, currency))
			return ledger_add(&f->amounts, won_group, currency, amount);
	} else if (status_is(deal, "lost")) {
		f->lost++;
		if (rec_money(deal, "amount", &amount, currency))
			return ledger_add(&f->amounts, lost_group, currency, amount);
	}
	return TR_OK;
}

/* The funnel from the pipeline's totals; filter names the pipeline. */
static int
funnel_totals(struct tr_ctx *c, struct funnel *f, const bson_t *filter)
{
	struct plan *p = calloc(1, sizeof(*p));
	struct counters t;
	char family[64], hex[25], name[160];
	int rc;

	memset(&t, 0, sizeof(t));
	if (!p)
		return TR_ENOMEM;
	if (!plan_period(p, &f->period)) {
		free(p);
		return TR_ELIMIT;
	}
	bson_oid_to_string(&f->pipeline_id, hex);
	snprintf(family, sizeof(family), "crm.f/%s", hex);
	rc = spans_sum(c, family, p, &t);
	for (int i = 0; rc == TR_OK && i < f->nstages; i++) {
		snprintf(name, sizeof(name), "e:%s", f->keys[i]);
		int64_t e = counters_get(&t, name);
		snprintf(name, sizeof(name), "s:%s", f->keys[i]);
		int64_t still = counters_get(&t, name);
		f->entered[i] += e;
		f->still_there[i] += still;
		f->moved_on[i] += e - still;
	}
	if (rc == TR_OK) {
		f->deals += counters_get(&t, "n");
		f->open += counters_get(&t, "o");
		f->won += counters_get(&t, "w");
		f->lost += counters_get(&t, "x");
	}
	for (size_t i = 0; rc == TR_OK && i < t.n; i++) {
		const char *cur;
		bool won = (cur = after_prefix(t.names[i], "wq:")) != NULL;
		if (!won && !(cur = after_prefix(t.names[i], "lq:")))
			continue;
		if (t.values[i] <= 0 || strlen(cur) != 3)
			continue;
		snprintf(name, sizeof(name), "%sa:%s", won ? "w" : "l", cur);
		rc = ledger_add(&f->amounts, won ? won_group : lost_group, cur,
				counters_get(&t, name));
	}
	if (rc == TR_OK)
		rc = scan_days(c, p, "deals", filter, "_cd", funnel_visit, f);
	counters_free(&t);
	free(p);
	return rc;
}

/* The pipeline the funnel is about (?pipeline_id or the default one) into
 * *pipeline; sets the problem and returns false. */
static bool
funnel_pipeline(struct tr_ctx *c, bson_t *pipeline)
{
	const char *id = tr_query(c, "pipeline_id"); /* checked to be an id */
	int rc;

	rc = id ? tr_db_get(c->db, "pipelines", id, pipeline) : crm_default_pipeline(c, pipeline);
	if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
		return false;
	}
	return true;
}

/* GET /v1/crm/reports/funnel?pipeline_id&from&to */
void
crm_reports_funnel(struct tr_ctx *c)
{
	struct funnel *f = tr_arena_alloc(c->req->arena, sizeof(*f));
	bson_t pipeline = BSON_INITIALIZER, filter = BSON_INITIALIZER, out = BSON_INITIALIZER;
	bson_t stages, stage, totals;
	bson_iter_t it, arr, st;
	bool ok;
	int rc;

	if (!f) {
		report_failed(c, TR_ENOMEM);
		goto done;
	}
	f->c = c;
	ledger_init(&f->amounts);
	ok = period_read(c, false, &f->period);
	if (tr_query(c, "pipeline_id") && !tr_is_object_id(tr_query(c, "pipeline_id"))) {
		bad_param(c, "pipeline_id", "must be an id");
		ok = false;
	}
	if (!ok)
		goto done;
	bson_destroy(&pipeline);
	if (!funnel_pipeline(c, &pipeline))
		goto done;
	tr_doc_oid(&pipeline, "_id", &f->pipeline_id);
	if (bson_iter_init_find(&it, &pipeline, "stages") && bson_iter_recurse(&it, &arr))
		while (bson_iter_next(&arr) && f->nstages < MAX_FUNNEL_STAGES) {
			const char *key = NULL, *name = NULL;
			if (!BSON_ITER_HOLDS_DOCUMENT(&arr) || !bson_iter_recurse(&arr, &st))
				continue;
			while (bson_iter_next(&st)) {
				if (!BSON_ITER_HOLDS_UTF8(&st))
					continue;
				if (strcmp(bson_iter_key(&st), "key") == 0)
					key = bson_iter_utf8(&st, NULL);
				else if (strcmp(bson_iter_key(&st), "name") == 0)
					name = bson_iter_utf8(&st, NULL);
			}
			if (!key)
				continue;
			f->keys[f->nstages] = key;
			f->names[f->nstages++] = name;
		}

	BSON_APPEND_OID(&filter, "pipeline_id", &f->pipeline_id);
	if (c->req->principal.own_only) {
		period_filter(&filter, "created_at", &f->period);
		own_filter(c, &filter);
		rc = walk_all(c, "deals", &filter, funnel_visit, f);
	} else {
		rc = funnel_totals(c, f, &filter);
	}
	if (rc == TR_OK)
		rc = ledger_close(&f->amounts);
	if (rc != TR_OK) {
		report_failed(c, rc);
		goto done;
	}

	char hex[25];
	bson_oid_to_string(&f->pipeline_id, hex);
	BSON_APPEND_UTF8(&out, "pipeline_id", hex);
	if (tr_doc_str(&pipeline, "name"))
		BSON_APPEND_UTF8(&out, "pipeline_name", tr_doc_str(&pipeline, "name"));
	else
		BSON_APPEND_NULL(&out, "pipeline_name");
	period_append(&out, &f->period);
	BSON_APPEND_ARRAY_BEGIN(&out, "stages", &stages);
	for (int i = 0; i < f->nstages; i++) {
		char idx[16];
		BSON_APPEND_DOCUMENT_BEGIN(&stages, array_key((uint32_t)i, idx, sizeof(idx)),
					   &stage);
		BSON_APPEND_UTF8(&stage, "key", f->keys[i]);
		if (f->names[i])
			BSON_APPEND_UTF8(&stage, "name", f->names[i]);
		else
			BSON_APPEND_NULL(&stage, "name");
		BSON_APPEND_INT64(&stage, "entered", f->entered[i]);
		BSON_APPEND_INT64(&stage, "still_there", f->still_there[i]);
		BSON_APPEND_INT64(&stage, "moved_on", f->moved_on[i]);
		if (i + 1 < f->nstages)
			ratio_append(&stage, "conversion_to_next", f->entered[i + 1],
				     f->entered[i]);
		else
			BSON_APPEND_NULL(&stage, "conversion_to_next");
		bson_append_document_end(&stages, &stage);
	}
	bson_append_array_end(&out, &stages);
	BSON_APPEND_DOCUMENT_BEGIN(&out, "totals", &totals);
	BSON_APPEND_INT64(&totals, "deals", f->deals);
	BSON_APPEND_INT64(&totals, "open", f->open);
	BSON_APPEND_INT64(&totals, "won", f->won);
	BSON_APPEND_INT64(&totals, "lost", f->lost);
	ledger_append(&totals, "won_amounts", &f->amounts, won_group);
	ledger_append(&totals, "lost_amounts", &f->amounts, lost_group);
	bson_append_document_end(&out, &totals);
	tr_reply_json(c, 200, &out);
done:
	if (f)
		ledger_free(&f->amounts);
	bson_destroy(&pipeline);
	bson_destroy(&filter);
	bson_destroy(&out);
}

/* ---- abc-xyz ---- */

struct client_revenue {
	int64_t revenue; /* first: the weight of the listing order */
	const char *name;
};

struct abc {
	struct tr_ctx *c;
	struct period period;
	char currency[4];
	long first_month; /* month_of(from) */
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

	if (!status_is(deal, "won") || !rec_time(deal, "closed_at", &closed) ||
	    !in_period(&a->period, closed) || !rec_money(deal, "amount", &amount, currency) ||
	    amount == 0 || strcmp(currency, a->currency) != 0 ||
	    !rec_oid(deal, "client_id", &client) || !own_ok(a->c, deal))
		return TR_OK;
	oid_key(key, &client, 0);
	i = rindex_put(&a->clients, key);
	if (i < 0)
		return TR_ENOMEM;
	struct client_revenue *cr = rindex_val(&a->clients, i);
	if (__builtin_add_overflow(cr->revenue, amount, &cr->revenue))
		return TR_ELIMIT;
	m = month_of(closed) - a->first_month;
	if (m < 0 || m >= a->months)
		return TR_OK; /* cannot be: closed is inside the period */
	key[12] = (uint8_t)(m >> 8);
	key[13] = (uint8_t)m;
	i = rindex_put(&a->monthly, key);
	if (i < 0)
		return TR_ENOMEM;
	int64_t *sum = rindex_val(&a->monthly, i);
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
		const char *rest = after_prefix(bson_iter_key(&it), "c:");
		int64_t amount = bson_iter_as_int64(&it);
		uint8_t key[KEY_LEN];
		bson_oid_t client;
		long i;
		if (!rest || strncmp(rest, a->currency, 3) != 0 || rest[3] != ':' ||
		    !tr_is_object_id(rest + 4) || amount == 0)
			continue;
		bson_oid_init_from_string(&client, rest + 4);
		oid_key(key, &client, 0);
		if ((i = rindex_put(&a->clients, key)) < 0)
			return TR_ENOMEM;
		struct client_revenue *cr = rindex_val(&a->clients, i);
		if (__builtin_add_overflow(cr->revenue, amount, &cr->revenue))
			return TR_ELIMIT;
		key[12] = (uint8_t)(m >> 8);
		key[13] = (uint8_t)m;
		if ((i = rindex_put(&a->monthly, key)) < 0)
			return TR_ENOMEM;
		*(int64_t *)rindex_val(&a->monthly, i) += amount;
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
	rc = plan_period(p, &a->period) ? spans_each(c, "crm.x", p, abc_span, a) : TR_ELIMIT;
	if (rc == TR_OK)
		rc = scan_days(c, p, "deals", filter, "_xd", abc_visit, a);
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
	rindex_init(&a.clients, sizeof(struct client_revenue));
	rindex_init(&a.monthly, sizeof(int64_t));
	ok = period_read(c, true, &a.period);
	if (!currency || strlen(currency) != 3 || !isupper((unsigned char)currency[0]) ||
	    !isupper((unsigned char)currency[1]) || !isupper((unsigned char)currency[2])) {
		bad_param(c, "currency",
			  currency ? "must be an ISO 4217 code like EUR" : "is required");
		ok = false;
	}
	if (ok) {
		long last = month_of(a.period.to - 1);
		a.first_month = month_of(a.period.from);
		if (last - a.first_month + 1 > MAX_MONTHS) {
			bad_param(c, "to",
				  "the period may span at most " MAX_MONTHS_TEXT
				  " calendar months");
			ok = false;
		}
		a.months = (int)(last - a.first_month + 1);
	}
	if (!ok)
		goto done;
	memcpy(a.currency, currency, 4);

	BSON_APPEND_UTF8(&filter, "status", "won");
	if (c->req->principal.own_only) {
		period_filter(&filter, "closed_at", &a.period);
		own_filter(c, &filter);
		rc = walk_all(c, "deals", &filter, abc_visit, &a);
	} else {
		rc = abc_totals(c, &a, &filter);
	}
	if (rc == TR_OK)
		rc = client_names_fill(c, &a.clients, offsetof(struct client_revenue, name));
	order = rc == TR_OK ? rindex_sorted(&a.clients, revenue_order, true) : NULL;
	monthly = calloc((size_t)a.months, sizeof(*monthly));
	if (rc == TR_OK && (!order || !monthly))
		rc = TR_ENOMEM;
	for (size_t i = 0; rc == TR_OK && i < a.clients.n; i++)
		total += (u128)((struct client_revenue *)rindex_val(&a.clients, (long)i))->revenue;
	if (rc == TR_OK && total > (u128)INT64_MAX)
		rc = TR_ELIMIT;
	if (rc != TR_OK) {
		report_failed(c, rc);
		goto done;
	}

	BSON_APPEND_UTF8(&out, "currency", a.currency);
	period_append(&out, &a.period);
	BSON_APPEND_INT32(&out, "months", a.months);
	BSON_APPEND_ARRAY_BEGIN(&out, "calendar_months", &list);
	for (int m = 0; m < a.months; m++) {
		char label[48], idx[16];
		long mm = a.first_month + m;
		snprintf(label, sizeof(label), "%04ld-%02ld", mm / 12, mm % 12 + 1);
		BSON_APPEND_UTF8(&list, array_key((uint32_t)m, idx, sizeof(idx)), label);
	}
	bson_append_array_end(&out, &list);
	money_append(&out, "total", (int64_t)total, a.currency);
	BSON_APPEND_ARRAY_BEGIN(&out, "items", &items);
	for (size_t i = 0; i < a.clients.n; i++) {
		const uint8_t *ckey = order[i].key;
		const struct client_revenue *cr = rindex_val(&a.clients, order[i].index);
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
			mi = rindex_find(&a.monthly, mkey);
			monthly[m] = mi >= 0 ? *(int64_t *)rindex_val(&a.monthly, mi) : 0;
		}
		xyz_cls = xyz_class(monthly, a.months, cr->revenue, &cv);

		BSON_APPEND_DOCUMENT_BEGIN(&items, array_key((uint32_t)i, idx, sizeof(idx)), &item);
		BSON_APPEND_UTF8(&item, "client_id", hex);
		if (cr->name)
			BSON_APPEND_UTF8(&item, "client_name", cr->name);
		else
			BSON_APPEND_NULL(&item, "client_name");
		money_append(&item, "revenue", cr->revenue, a.currency);
		decimal4_append(&item, "share", ((u128)cr->revenue * 20000 + total) / (total * 2));
		decimal4_append(&item, "cumulative_share", (cum * 20000 + total) / (total * 2));
		BSON_APPEND_UTF8(&item, "abc", abc_cls == 'A' ? "A" : abc_cls == 'B' ? "B" : "C");
		BSON_APPEND_ARRAY_BEGIN(&item, "monthly", &list);
		for (int m = 0; m < a.months; m++) {
			char midx[16];
			BSON_APPEND_INT64(&list, array_key((uint32_t)m, midx, sizeof(midx)),
					  monthly[m]);
		}
		bson_append_array_end(&item, &list);
		decimal4_append(&item, "cv", cv);
		BSON_APPEND_UTF8(&item, "xyz", xyz_cls == 'X' ? "X" : xyz_cls == 'Y' ? "Y" : "Z");
		bson_append_document_end(&items, &item);
	}
	bson_append_array_end(&out, &items);
	tr_reply_json(c, 200, &out);
done:
	free(order);
	free(monthly);
	rindex_free(&a.clients);
	rindex_free(&a.monthly);
	bson_destroy(&filter);
	bson_destroy(&out);
}

/* ---- managers ---- */

struct owner_stats {
	long long leads, won, lost;
	const char *name;
};

struct managers {
	struct tr_ctx *c;
	struct period period;
	struct rindex owners;  /* {owner id, 0} or {0, 1} (no owner) -> owner_stats */
	struct ledger revenue; /* group = the owner key's first 13 bytes */
};

static struct owner_stats *
owner_of(struct managers *mg, const bson_t *record, uint8_t key[KEY_LEN])
{
	bson_oid_t owner;
	long i;

	if (rec_oid(record, "owner_id", &owner))
		oid_key(key, &owner, 0);
	else
		oid_key(key, NULL, 1);
	i = rindex_put(&mg->owners, key);
	return i < 0 ? NULL : rindex_val(&mg->owners, i);
}

static int
managers_lead(void *arg, const bson_t *lead)
{
	struct managers *mg = arg;
	uint8_t key[KEY_LEN];
	struct owner_stats *os;
	int64_t created;

	if (!rec_time(lead, "created_at", &created) || !in_period(&mg->period, created) ||
	    !own_ok(mg->c, lead))
		return TR_OK;
	os = owner_of(mg, lead, key);
	if (!os)
		return TR_ENOMEM;
	os->leads++;
	return TR_OK;
}

static int
managers_deal(void *arg, const bson_t *deal)
{
	struct managers *mg = arg;
	uint8_t key[KEY_LEN];
	struct owner_stats *os;
	int64_t closed, amount;
	char currency[4];
	bool won = status_is(deal, "won");

	if ((!won && !status_is(deal, "lost")) || !rec_time(deal, "closed_at", &closed) ||
	    !in_period(&mg->period, closed) || !own_ok(mg->c, deal))
		return TR_OK;
	os = owner_of(mg, deal, key);
	if (!os)
		return TR_ENOMEM;
	if (!won) {
		os->lost++;
		return TR_OK;
	}
	os->won++;
	if (rec_money(deal, "amount", &amount, currency))
		return ledger_add(&mg->revenue, key, currency, amount);
	return TR_OK;
}

/* The stats of the owner a counter names ("-": nobody). */
static struct owner_stats *
owner_named(struct managers *mg, const char *owner, uint8_t key[KEY_LEN])
{
	bson_oid_t id;
	long i;

	if (tr_is_object_id(owner)) {
		bson_oid_init_from_string(&id, owner);
		oid_key(key, &id, 0);
	} else {
		oid_key(key, NULL, 1);
	}
	i = rindex_put(&mg->owners, key);
	return i < 0 ? NULL : rindex_val(&mg->owners, i);
}

static int
managers_totals(struct tr_ctx *c, struct managers *mg)
{
	struct plan *p = calloc(1, sizeof(*p));
	struct counters leads, closed;
	char name[160], owner[32];
	int rc;

	memset(&leads, 0, sizeof(leads));
	memset(&closed, 0, sizeof(closed));
	if (!p)
		return TR_ENOMEM;
	rc = plan_period(p, &mg->period) ? spans_sum(c, "crm.l", p, &leads) : TR_ELIMIT;
	if (rc == TR_OK)
		rc = spans_sum(c, "crm.x", p, &closed);
	for (size_t i = 0; rc == TR_OK && i < leads.n; i++) {
		const char *who = after_prefix(leads.names[i], "l:");
		uint8_t key[KEY_LEN];
		struct owner_stats *os;
		if (!who || leads.values[i] == 0)
			continue;
		if (!(os = owner_named(mg, who, key)))
			rc = TR_ENOMEM;
		else
			os->leads += leads.values[i];
	}
	for (size_t i = 0; rc == TR_OK && i < closed.n; i++) {
		const char *n = closed.names[i], *who;
		uint8_t key[KEY_LEN];
		struct owner_stats *os;
		if (closed.values[i] == 0)
			continue;
		if ((who = after_prefix(n, "w:")) || (who = after_prefix(n, "x:"))) {
			if (!(os = owner_named(mg, who, key)))
				rc = TR_ENOMEM;
			else if (n[0] == 'w')
				os->won += closed.values[i];
			else
				os->lost += closed.values[i];
		} else if ((who = after_prefix(n, "rq:")) && closed.values[i] > 0) {
			const char *colon = strrchr(who, ':');
			if (!colon || strlen(colon + 1) != 3 ||
			    (size_t)(colon - who) >= sizeof(owner))
				continue;
			snprintf(owner, sizeof(owner), "%.*s", (int)(colon - who), who);
			snprintf(name, sizeof(name), "r:%s", who);
			if (!owner_named(mg, owner, key))
				rc = TR_ENOMEM;
			else
				rc = ledger_add(&mg->revenue, key, colon + 1,
						counters_get(&closed, name));
		}
	}
	if (rc == TR_OK)
		rc = scan_days(c, p, "leads", NULL, "_cd", managers_lead, mg);
	if (rc == TR_OK)
		rc = scan_days(c, p, "deals", NULL, "_xd", managers_deal, mg);
	counters_free(&leads);
	counters_free(&closed);
	free(p);
	return rc;
}

/* Owners by id, the row without an owner (tag 1) last. */
static int
owner_order(const void *a, const void *b)
{
	const uint8_t *ka = ((const struct ranked *)a)->key, *kb = ((const struct ranked *)b)->key;

	if (ka[12] != kb[12])
		return ka[12] < kb[12] ? -1 : 1;
	return memcmp(ka, kb, KEY_LEN);
}

/* GET /v1/crm/reports/managers?from&to */
void
crm_reports_managers(struct tr_ctx *c)
{
	struct managers mg;
	bson_t leads_filter = BSON_INITIALIZER, deals_filter = BSON_INITIALIZER;
	bson_t out = BSON_INITIALIZER, items, item, in, list;
	struct ranked *order = NULL;
	int rc;

	memset(&mg, 0, sizeof(mg));
	mg.c = c;
	rindex_init(&mg.owners, sizeof(struct owner_stats));
	ledger_init(&mg.revenue);
	if (!period_read(c, false, &mg.period))
		goto done;

	period_filter(&leads_filter, "created_at", &mg.period);
	own_filter(c, &leads_filter);
	BSON_APPEND_DOCUMENT_BEGIN(&deals_filter, "status", &in);
	BSON_APPEND_ARRAY_BEGIN(&in, "$in", &list);
	BSON_APPEND_UTF8(&list, "0", "won");
	BSON_APPEND_UTF8(&list, "1", "lost");
	bson_append_array_end(&in, &list);
	bson_append_document_end(&deals_filter, &in);
	period_filter(&deals_filter, "closed_at", &mg.period);
	own_filter(c, &deals_filter);
	if (c->req->principal.own_only) {
		rc = walk_all(c, "leads", &leads_filter, managers_lead, &mg);
		if (rc == TR_OK)
			rc = walk_all(c, "deals", &deals_filter, managers_deal, &mg);
	} else {
		rc = managers_totals(c, &mg);
	}
	if (rc == TR_OK)
		rc = names_fill(c, "users", &mg.owners, offsetof(struct owner_stats, name));
	if (rc == TR_OK)
		rc = ledger_close(&mg.revenue);
	if (rc == TR_OK) {
		order = rindex_sorted(&mg.owners, owner_order, false);
		if (!order)
			rc = TR_ENOMEM;
	}
	if (rc != TR_OK) {
		report_failed(c, rc);
		goto done;
	}

	period_append(&out, &mg.period);
	BSON_APPEND_ARRAY_BEGIN(&out, "items", &items);
	for (size_t i = 0; i < mg.owners.n; i++) {
		const uint8_t *key = order[i].key;
		const struct owner_stats *os = rindex_val(&mg.owners, order[i].index);
		char idx[16], hex[25];
		bson_oid_t id;

		BSON_APPEND_DOCUMENT_BEGIN(&items, array_key((uint32_t)i, idx, sizeof(idx)), &item);
		if (key[12] == 0) {
			memcpy(id.bytes, key, 12);
			bson_oid_to_string(&id, hex);
			BSON_APPEND_UTF8(&item, "owner_id", hex);
		} else {
			BSON_APPEND_NULL(&item, "owner_id");
		}
		if (os->name)
			BSON_APPEND_UTF8(&item, "name", os->name);
		else
			BSON_APPEND_NULL(&item, "name");
		BSON_APPEND_INT64(&item, "leads", os->leads);
		BSON_APPEND_INT64(&item, "deals_won", os->won);
		BSON_APPEND_INT64(&item, "deals_lost", os->lost);
		ledger_append(&item, "revenue", &mg.revenue, key);
		ratio_append(&item, "conversion", os->won, os->won + os->lost);
		bson_append_document_end(&items, &item);
	}
	bson_append_array_end(&out, &items);
	tr_reply_json(c, 200, &out);
done:
	free(order);
	rindex_free(&mg.owners);
	ledger_free(&mg.revenue);
	bson_destroy(&leads_filter);
	bson_destroy(&deals_filter);
	bson_destroy(&out);
}

/* ---- sources ---- */

/* The channels of CONTRACT.md, in its order; NCHANNELS is "no source". */
static const char *const channels[] = {"web", "phone", "email",	  "referral",
				       "ads", "event", "partner", "other"};
#define NCHANNELS ((int)(sizeof(channels) / sizeof(channels[0])))

struct source_stats {
	long long leads, deals;
};

struct campaign_stats {
	struct source_stats s;
	const char *name;
	bool has_cost, known;
	int64_t cost;
	char cost_currency[4];
};

/* What the sources report remembers of a lead of the period. */
struct lead_source {
	int channel;   /* index into channels, NCHANNELS for none */
	long campaign; /* index in campaigns, -1 for none */
};

struct sources {
	struct tr_ctx *c;
	struct period period;
	struct source_stats channel[NCHANNELS + 1];
	struct rindex campaigns; /* campaign id -> campaign_stats */
	struct rindex leads;	 /* lead id -> lead_source */
	struct ledger revenue;	 /* groups: channel_group(), campaign key */
};

/* A channel's ledger group: {index, 0 x 11, tag 2} (campaigns have tag 0). */
static void
channel_group(uint8_t group[KEY_LEN], int channel)
{
	memset(group, 0, KEY_LEN);
	group[0] = (uint8_t)channel;
	group[12] = 2;
}

static int
sources_campaign(void *arg, const bson_t *campaign)
{
	struct sources *sr = arg;
	uint8_t key[KEY_LEN];
	bson_oid_t id;
	long i;

	if (!rec_oid(campaign, "id", &id))
		return TR_OK;
	oid_key(key, &id, 0);
	i = rindex_put(&sr->campaigns, key);
	if (i < 0)
		return TR_ENOMEM;
	struct campaign_stats *cs = rindex_val(&sr->campaigns, i);
	cs->known = true;
	cs->name = arena_name(sr->c, campaign);
	cs->has_cost = rec_money(campaign, "cost", &cs->cost, cs->cost_currency);
	return TR_OK;
}

static int
sources_lead(void *arg, const bson_t *lead)
{
	struct sources *sr = arg;
	uint8_t key[KEY_LEN];
	struct lead_source ls = {NCHANNELS, -1};
	bson_iter_t it, sub;
	bson_oid_t id, campaign;
	int64_t created;
	long i;

	if (!rec_oid(lead, "id", &id) || !rec_time(lead, "created_at", &created) ||
	    !in_period(&sr->period, created) || !own_ok(sr->c, lead))
		return TR_OK;
	if (bson_iter_init_find(&it, lead, "source") && BSON_ITER_HOLDS_DOCUMENT(&it) &&
	    bson_iter_recurse(&it, &sub))
		while (bson_iter_next(&sub)) {
			const char *k = bson_iter_key(&sub);
			if (!BSON_ITER_HOLDS_UTF8(&sub))
				continue;
			if (strcmp(k, "channel") == 0) {
				for (int ch = 0; ch < NCHANNELS; ch++)
					if (strcmp(channels[ch], bson_iter_utf8(&sub, NULL)) == 0)
						ls.channel = ch;
			} else if (strcmp(k, "campaign_id") == 0 &&
				   tr_is_object_id(bson_iter_utf8(&sub, NULL))) {
				bson_oid_init_from_string(&campaign, bson_iter_utf8(&sub, NULL));
				oid_key(key, &campaign, 0);
				ls.campaign = rindex_put(&sr->campaigns, key);
				if (ls.campaign < 0)
					return TR_ENOMEM;
			}
		}
	sr->channel[ls.channel].leads++;
	if (ls.campaign >= 0)
		((struct campaign_stats *)rindex_val(&sr->campaigns, ls.campaign))->s.leads++;
	oid_key(key, &id, 0);
	i = rindex_put(&sr->leads, key);
	if (i < 0)
		return TR_ENOMEM;
	*(struct lead_source *)rindex_val(&sr->leads, i) = ls;
	return TR_OK;
}

static int
sources_deal(void *arg, const bson_t *deal)
{
	struct sources *sr = arg;
	uint8_t key[KEY_LEN], group[KEY_LEN];
	const struct lead_source *ls;
	bson_oid_t lead;
	int64_t amount;
	char currency[4];
	bool paid;
	long i;
	int rc = TR_OK;

	if (!rec_oid(deal, "lead_id", &lead) || !own_ok(sr->c, deal))
		return TR_OK;
	oid_key(key, &lead, 0);
	i = rindex_find(&sr->leads, key);
	if (i < 0)
		return TR_OK; /* a lead of another period */
	ls = rindex_val(&sr->leads, i);
	paid = status_is(deal, "won") && rec_money(deal, "amount", &amount, currency);
	sr->channel[ls->channel].deals++;
	if (paid) {
		channel_group(group, ls->channel);
		rc = ledger_add(&sr->revenue, group, currency, amount);
	}
	if (ls->campaign >= 0) {
		((struct campaign_stats *)rindex_val(&sr->campaigns, ls->campaign))->s.deals++;
		if (paid && rc == TR_OK)
			rc = ledger_add(&sr->revenue, rindex_key(&sr->campaigns, ls->campaign),
					currency, amount);
	}
	return rc;
}

static int
channel_named(const char *name)
{
	for (int ch = 0; ch < NCHANNELS; ch++)
		if (strcmp(channels[ch], name) == 0)
			return ch;
	return strcmp(name, "-") == 0 ? NCHANNELS : -1;
}

static int
sources_totals(struct tr_ctx *c, struct sources *sr)
{
	struct plan *p = calloc(1, sizeof(*p));
	struct counters t;
	char name[160], who[32];
	int rc;

	memset(&t, 0, sizeof(t));
	if (!p)
		return TR_ENOMEM;
	rc = plan_period(p, &sr->period) ? spans_sum(c, "crm.l", p, &t) : TR_ELIMIT;
	for (size_t i = 0; rc == TR_OK && i < t.n; i++) {
		const char *n = t.names[i], *rest;
		int64_t v = t.values[i];
		bool per_campaign = false, money = false, leads = false;
		if ((rest = after_prefix(n, "lc:")))
			leads = true;
		else if ((rest = after_prefix(n, "dc:")))
			;
		else if ((rest = after_prefix(n, "rcq:")))
			money = true;
		else if ((rest = after_prefix(n, "lk:")))
			leads = per_campaign = true;
		else if ((rest = after_prefix(n, "dk:")))
			per_campaign = true;
		else if ((rest = after_prefix(n, "rkq:")))
			money = per_campaign = true;
		else
			continue;
		if (v == 0 || (money && v < 0))
			continue;
		const char *cur = NULL;
		snprintf(who, sizeof(who), "%s", rest);
		if (money) {
			char *colon = strrchr(who, ':');
			if (!colon || strlen(colon + 1) != 3)
				continue;
			*colon = '\0';
			cur = rest + (colon - who) + 1;
			snprintf(name, sizeof(name), "%s:%s:%s", per_campaign ? "rk" : "rc", who,
				 cur);
		}
		uint8_t group[KEY_LEN];
		struct source_stats *st;
		if (per_campaign) {
			bson_oid_t id;
			long k;
			if (!tr_is_object_id(who))
				continue;
			bson_oid_init_from_string(&id, who);
			oid_key(group, &id, 0);
			if ((k = rindex_put(&sr->campaigns, group)) < 0) {
				rc = TR_ENOMEM;
				break;
			}
			st = &((struct campaign_stats *)rindex_val(&sr->campaigns, k))->s;
		} else {
			int ch = channel_named(who);
			if (ch < 0)
				continue;
			channel_group(group, ch);
			st = &sr->channel[ch];
		}
		if (money)
			rc = ledger_add(&sr->revenue, group, cur, counters_get(&t, name));
		else if (leads)
			st->leads += v;
		else
			st->deals += v;
	}
	if (rc == TR_OK)
		rc = scan_days(c, p, "leads", NULL, "_cd", sources_lead, sr);
	if (rc == TR_OK && sr->leads.n > 0)
		rc = scan_days(c, p, "deals", NULL, "_lcd", sources_deal, sr);
	counters_free(&t);
	free(p);
	return rc;
}

/* leads, deals and revenue of one row */
static void
source_append(bson_t *row, const struct source_stats *s, const struct ledger *revenue,
	      const uint8_t *group)
{
	BSON_APPEND_INT64(row, "leads", s->leads);
	BSON_APPEND_INT64(row, "deals", s->deals);
	ledger_append(row, "revenue", revenue, group);
}

/* GET /v1/crm/reports/sources?from&to */
void
crm_reports_sources(struct tr_ctx *c)
{
	struct sources *sr = tr_arena_alloc(c->req->arena, sizeof(*sr));
	bson_t leads_filter = BSON_INITIALIZER, deals_filter = BSON_INITIALIZER;
	bson_t out = BSON_INITIALIZER, rows, row, exists;
	uint32_t n = 0;
	int rc;

	if (!sr) {
		report_failed(c, TR_ENOMEM);
		goto done;
	}
	sr->c = c;
	rindex_init(&sr->campaigns, sizeof(struct campaign_stats));
	rindex_init(&sr->leads, sizeof(struct lead_source));
	ledger_init(&sr->revenue);
	if (!period_read(c, false, &sr->period))
		goto done;

	period_filter(&leads_filter, "created_at", &sr->period);
	own_filter(c, &leads_filter);
	BSON_APPEND_DOCUMENT_BEGIN(&deals_filter, "lead_id", &exists);
	BSON_APPEND_BOOL(&exists, "$exists", true);
	bson_append_document_end(&deals_filter, &exists);
	own_filter(c, &deals_filter);
	rc = walk(c, "campaigns", NULL, sources_campaign, sr);
	if (rc == TR_OK && c->req->principal.own_only) {
		rc = walk_all(c, "leads", &leads_filter, sources_lead, sr);
		if (rc == TR_OK && sr->leads.n > 0)
			rc = walk_all(c, "deals", &deals_filter, sources_deal, sr);
	} else if (rc == TR_OK) {
		rc = sources_totals(c, sr);
	}
	if (rc == TR_OK)
		rc = ledger_close(&sr->revenue);
	if (rc != TR_OK) {
		report_failed(c, rc);
		goto done;
	}

	period_append(&out, &sr->period);
	BSON_APPEND_ARRAY_BEGIN(&out, "channels", &rows);
	for (int ch = 0; ch <= NCHANNELS; ch++) {
		uint8_t group[KEY_LEN];
		char idx[16];
		if (sr->channel[ch].leads == 0)
			continue;
		channel_group(group, ch);
		const char *k = array_key(n++, idx, sizeof(idx));
		BSON_APPEND_DOCUMENT_BEGIN(&rows, k, &row);
		if (ch < NCHANNELS)
			BSON_APPEND_UTF8(&row, "channel", channels[ch]);
		else
			BSON_APPEND_NULL(&row, "channel");
		source_append(&row, &sr->channel[ch], &sr->revenue, group);
		BSON_APPEND_NULL(&row, "cost");
		BSON_APPEND_NULL(&row, "cost_per_lead");
		bson_append_document_end(&rows, &row);
	}
	bson_append_array_end(&out, &rows);
	BSON_APPEND_ARRAY_BEGIN(&out, "campaigns", &rows);
	for (size_t i = 0; i < sr->campaigns.n; i++) {
		const uint8_t *key = rindex_key(&sr->campaigns, (long)i);
		const struct campaign_stats *cs = rindex_val(&sr->campaigns, (long)i);
		char idx[16], hex[25];
		bson_oid_t id;

		memcpy(id.bytes, key, 12);
		bson_oid_to_string(&id, hex);
		BSON_APPEND_DOCUMENT_BEGIN(&rows, array_key((uint32_t)i, idx, sizeof(idx)), &row);
		BSON_APPEND_UTF8(&row, "campaign_id", hex);
		if (cs->name)
			BSON_APPEND_UTF8(&row, "name", cs->name);
		else
			BSON_APPEND_NULL(&row, "name");
		source_append(&row, &cs->s, &sr->revenue, key);
		if (cs->has_cost)
			money_append(&row, "cost", cs->cost, cs->cost_currency);
		else
			BSON_APPEND_NULL(&row, "cost");
		if (cs->has_cost && cs->s.leads > 0) {
			/* half up: q + 1 when the remainder is at least half a lead */
			int64_t q = cs->cost / cs->s.leads, r = cs->cost % cs->s.leads;
			if (r * 2 >= cs->s.leads)
				q++;
			money_append(&row, "cost_per_lead", q, cs->cost_currency);
		} else {
			BSON_APPEND_NULL(&row, "cost_per_lead");
		}
		bson_append_document_end(&rows, &row);
	}
	bson_append_array_end(&out, &rows);
	tr_reply_json(c, 200, &out);
done:
	if (sr) {
		rindex_free(&sr->campaigns);
		rindex_free(&sr->leads);
		ledger_free(&sr->revenue);
	}
	bson_destroy(&leads_filter);
	bson_destroy(&deals_filter);
	bson_destroy(&out);
}
