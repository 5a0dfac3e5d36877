/* What the CRM reports share (CONTRACT.md "Reports"), internal to
 * modules/crm: one file per report (report_funnel.c, report_abc_xyz.c,
 * report_managers.c, report_sources.c, report_bcg.c with its arithmetic in
 * report_bcg_class.c) and one per piece of machinery they
 * share - the period and the plan for reading totals (report_period.c),
 * walking records (report_walk.c), the hash index (report_index.c), money
 * per group (report_ledger.c), numbers of the answer (report_render.c),
 * names of records (report_names.c).
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
 */
#ifndef TR_CRM_REPORTS_H
#define TR_CRM_REPORTS_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "counters.h"
#include "crm.h"

typedef unsigned __int128 u128;

/* ---- the period and query parameters (report_period.c) ---- */

/* [from, to); a missing bound is open. */
struct period {
	bool has_from, has_to;
	int64_t from, to; /* ms since the epoch */
};

/* A field error on a query parameter (422). */
void crm_report_bad_param(struct tr_ctx *c, const char *field, const char *message);
/* Reads ?from&to; sets the 422 and returns false when they are not good. */
bool crm_report_period_read(struct tr_ctx *c, bool required, struct period *p);
bool crm_report_in_period(const struct period *p, int64_t ms);
/* field: {"$gte": from, "$lt": to} for the bounds there are. */
void crm_report_period_filter(bson_t *filter, const char *field, const struct period *p);
/* "from" and "to" of the answer (null for an open bound). */
void crm_report_period_append(bson_t *out, const struct period *p);
/* A ":own" holder of crm.reports.read reads only what they own. */
void crm_report_own_filter(const struct tr_ctx *c, bson_t *filter);
/* Month number (year * 12 + month - 1) of a time, in UTC. */
long crm_report_month_of(int64_t ms);

/* ---- totals: the registers of a period (report_period.c) ---- */

#define MAX_SPANS 4096

struct span {
	char suffix[32]; /* "d2026-03-05", "m2026-03" or "all" */
	int sign;	 /* +1, or -1 for what an open start takes off all time */
	long month;	 /* crm_report_month_of the span (-1 for all) */
};

struct plan {
	struct span spans[MAX_SPANS];
	int n;
	char scan[2][11]; /* partial days whose records are read */
	int nscan;
};

/* Called for each record; a non-zero return (a TR_E* code) stops the walk. */
typedef int (*visit_fn)(void *arg, const bson_t *record);

/* The spans and partial days of a period; false when it needs more spans
 * than a report reads. */
bool crm_report_plan_period(struct plan *p, const struct period *per);
/* Calls fn with each span's register values ({counter: value}). */
int crm_report_spans_each(struct tr_ctx *c, const char *family, const struct plan *p,
			  int (*fn)(void *arg, const struct span *span, const bson_t *values),
			  void *arg);
/* The counters of family over the plan's spans, added up (signs applied). */
int crm_report_spans_sum(struct tr_ctx *c, const char *family, const struct plan *p,
			 struct counters *total);
/* Visits the records of coll matching filter on each partial day of the
 * plan (day_field is the record's day of the moment the report groups by). */
int crm_report_scan_days(struct tr_ctx *c, const struct plan *p, const char *coll,
			 const bson_t *filter, const char *day_field, visit_fn visit, void *arg);
/* A counter "<prefix><rest>": rest, or NULL. */
const char *crm_report_after_prefix(const char *name, const char *prefix);

/* ---- reading rendered records, walking a collection (report_walk.c) ---- */

bool crm_report_rec_oid(const bson_t *rec, const char *field, bson_oid_t *out);
bool crm_report_rec_time(const bson_t *rec, const char *field, int64_t *ms);
bool crm_report_status_is(const bson_t *rec, const char *status);
/* A money field {"amount", "currency"}; false when absent or null. */
bool crm_report_rec_money(const bson_t *rec, const char *field, int64_t *amount, char currency[4]);
/* True unless the caller holds crm.reports.read only as ":own" and does
 * not own record. */
bool crm_report_own_ok(const struct tr_ctx *c, const bson_t *record);
/* Calls visit for every record of coll matching filter (the tenant's only),
 * in created_at then id order. Returns 0 or the first error of the data
 * layer or of visit. */
int crm_report_walk(struct tr_ctx *c, const char *coll, const bson_t *filter, visit_fn visit,
		    void *arg);
/* The same for aggregates that do not depend on order: one unsorted cursor. */
int crm_report_walk_all(struct tr_ctx *c, const char *coll, const bson_t *filter, visit_fn visit,
			void *arg);

/* ---- a small hash index: 16-byte keys -> dense indexes and values
 * (report_index.c) ---- */

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

/* One key of an rindex in a sorted listing. */
struct ranked {
	const uint8_t *key;
	int64_t weight; /* the value's first int64 when asked for, else 0 */
	long index;
};

void crm_report_rindex_init(struct rindex *ix, size_t vsize);
void crm_report_rindex_free(struct rindex *ix);
const uint8_t *crm_report_rindex_key(const struct rindex *ix, long i);
void *crm_report_rindex_val(const struct rindex *ix, long i);
/* The index of key, or -1. */
long crm_report_rindex_find(const struct rindex *ix, const uint8_t *key);
/* The index of key, added (with a zeroed value) when absent; -1 when out
 * of memory. */
long crm_report_rindex_put(struct rindex *ix, const uint8_t *key);
/* A key of an ObjectId and a tag byte (the rest zero). */
void crm_report_oid_key(uint8_t key[KEY_LEN], const bson_oid_t *oid, uint8_t tag);
/* Key order (memcmp), for crm_report_rindex_sorted. */
int crm_report_key_order(const void *a, const void *b);
/* malloc'd listing of the ix->n keys sorted by cmp (on struct ranked);
 * NULL when out of memory. */
struct ranked *crm_report_rindex_sorted(const struct rindex *ix,
					int (*cmp)(const void *, const void *), bool weighted);

/* ---- money per group and currency (report_ledger.c) ---- */

/* A ledger: rindex with key {group[13], currency[3]} and an int64 sum. The
 * group names what the money belongs to (an owner, a campaign, "won"). */
struct ledger {
	struct rindex ix;
	struct ranked *order; /* after crm_report_ledger_close: the keys in order */
};

void crm_report_ledger_init(struct ledger *l);
void crm_report_ledger_free(struct ledger *l);
/* Adds amount to group's currency sum; TR_ELIMIT when the sum would not
 * fit an amount. */
int crm_report_ledger_add(struct ledger *l, const uint8_t group[13], const char *currency,
			  int64_t amount);
/* Sorts the ledger's keys for crm_report_ledger_append; TR_ENOMEM or TR_OK. */
int crm_report_ledger_close(struct ledger *l);
/* Appends field: [{"amount", "currency"}...] of group, by currency. */
void crm_report_ledger_append(bson_t *out, const char *field, const struct ledger *l,
			      const uint8_t group[13]);
/* Appends field: {"amount", "currency"}. */
void crm_report_money_append(bson_t *out, const char *field, int64_t amount, const char *currency);

/* ---- numbers and errors of the answer (report_render.c) ---- */

/* num/den rounded half up to 4 decimals, as a number; null when den is 0. */
void crm_report_ratio_append(bson_t *out, const char *field, int64_t num, int64_t den);
/* A ratio scaled by 10^4 as "0.4500". */
void crm_report_decimal4_append(bson_t *out, const char *field, u128 scaled);
/* The key of element i of a BSON array (buf holds it when needed). */
const char *crm_report_array_key(uint32_t i, char *buf, size_t len);
/* Tells the client what went wrong in a walk. */
void crm_report_failed(struct tr_ctx *c, int rc);

/* A signed ratio scaled by 10^4 (its magnitude) as "-0.2500". */
void crm_report_signed_decimal4_append(bson_t *out, const char *field, bool negative, u128 scaled);

/* ---- the quadrant of a bcg item (report_bcg_class.c) ---- */

enum bcg_quadrant { BCG_STAR, BCG_CASH_COW, BCG_QUESTION_MARK, BCG_DOG };

/* High growth from growth_bp up (basis points: 1000 = 10%), high relative
 * share from share_bp up (10000 = 1.0). */
struct bcg_thresholds {
	int64_t growth_bp, share_bp;
};

/* An item's growth and relative share and what the thresholds make of
 * them. Growth = (revenue - previous) / previous, none (has_growth false)
 * when previous is 0; share = revenue / largest_other, none when that is
 * 0. Both scaled by 10^4, rounded half up, growth's sign apart. */
struct bcg_class {
	bool has_growth, growth_negative, high_growth;
	u128 growth_scaled;
	bool has_share, high_share;
	u128 share_scaled;
	enum bcg_quadrant quadrant;
};

/* Classifies an item from its revenue in the period, in the period before
 * it, and the largest revenue in the period of any other item (all >= 0).
 * No previous revenue counts as high growth when there is revenue now; no
 * other item with revenue as a high share when the item has some. */
void crm_bcg_classify(int64_t revenue, int64_t previous, int64_t largest_other,
		      const struct bcg_thresholds *t, struct bcg_class *out);
/* "star", "cash_cow", "question_mark", "dog". */
const char *crm_bcg_quadrant_name(enum bcg_quadrant q);

/* ---- names of records by id (report_names.c) ---- */

/* A record's name copied into the request arena, or NULL. */
const char *crm_report_arena_name(struct tr_ctx *c, const bson_t *record);
/* Fills the name (a const char * at name_offset of each value) of every key
 * of ix that is an id (tag byte 0) from coll. */
int crm_report_names_fill(struct tr_ctx *c, const char *coll, struct rindex *ix,
			  size_t name_offset);
/* crm_report_names_fill for clients, through the process's cache. */
int crm_report_client_names_fill(struct tr_ctx *c, struct rindex *ix, size_t name_offset);

#endif
