/* The CRM bcg report, the Boston Consulting Group's growth-share matrix
 * (reports.h for what the reports share).
 *
 * bcg ?from&to&currency&group_by (all required; group_by product or
 *   client_group): the period [from, to), at most crm_report_max_months
 *   calendar months, and the previous period of the same length right
 *   before it, [from - (to - from), from). An item's revenue in each:
 *   - product: the net (after discount, before tax) of the lines of sales
 *     orders invoiced in the period (dated by the invoice; the ERP answers,
 *     sales.h), in the currency; a ":own" reader counts the orders they own;
 *   - client_group: the amounts of won deals with closed_at in the period,
 *     in the currency, of the group's clients (as abc-xyz counts a client's
 *     revenue). A static group's clients list it in group_ids; a filter
 *     group's clients match its rule (kind, owner_id) as they are now. A
 *     client in two groups counts in both; a client in none is left out of
 *     the items and shown in "ungrouped". A ":own" reader counts the deals
 *     they own.
 *   Items are those with revenue in either period, by revenue descending,
 *   ties by id ascending.
 *   growth = (revenue - previous) / previous; null when previous is 0 (a
 *   new item), which counts as high growth. relative share = revenue /
 *   the largest revenue of any OTHER item in the period (so the leader's is
 *   above 1, and items tied for the lead have 1 each); null when no other
 *   item has revenue, which counts as a high share for an item with
 *   revenue. High growth: growth >= crm_bcg_growth_high_bp / 10^4 (10%);
 *   high share: relative share >= crm_bcg_share_high_bp / 10^4 (1.0) -
 *   decided on the exact fractions in 128-bit integers. Star: high growth
 *   and high share; cash cow: low growth, high share; question mark: high
 *   growth, low share; dog: low, low.
 *   Answer: {"group_by", "currency", "from", "to", "previous_from",
 *   "previous_to", "thresholds": {"growth", "relative_share"}, "total",
 *   "previous_total" (money: every item's revenue once; for client groups
 *   every client's once, ungrouped ones included), "ungrouped" (client
 *   groups only: {"revenue", "previous_revenue"}), "items": [{"product_id"
 *   or "group_id", "name" (null when gone), "revenue", "previous_revenue",
 *   "growth" ("0.2500", "-1.0000" or null), "relative_share" ("1.5000" or
 *   null), "bcg" ("star", "cash_cow", "question_mark", "dog")}]}. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "db.h"
#include "direct.h"
#include "json.h"
#include "reports.h"
#include "sales.h"
#include "util.h"

/* 1900-01-01T00:00:00Z: the earliest time the answer can show. */
#define EARLIEST_MS (-2208988800000LL)
/* More clients than this are read by one walk of all clients. */
#define POINT_READS 40

/* An item's (or a client's) revenue in the period and the one before. */
struct revenue {
	int64_t now; /* first: the weight of the listing order */
	int64_t before;
};

/* A client group: its revenue, name and rule. r comes first, so a group's
 * value in the index is read as a struct revenue too (listing, answer). */
struct group {
	struct revenue r;
	const char *name;
	bool filter; /* a filter rule (kind, owner); else static */
	char kind[12];
	bool has_owner;
	bson_oid_t owner;
	long last_client; /* index + 1 of the last client counted in it */
};

struct bcg {
	struct tr_ctx *c;
	struct period now, before; /* before: the previous period */
	char currency[4];
	bool by_product;
	struct rindex items;   /* product key -> struct revenue; group key -> struct group */
	struct rindex clients; /* client key -> struct revenue (client_group) */
	struct revenue total, ungrouped;
	int in_before; /* walking the period before (1), the period (0), both (-1) */
};

static int
add_to(struct revenue *r, bool before, int64_t amount)
{
	int64_t *sum = before ? &r->before : &r->now;
	return __builtin_add_overflow(*sum, amount, sum) ? TR_ELIMIT : TR_OK;
}

/* ---- parameters ---- */

static bool
read_params(struct tr_ctx *c, struct bcg *b)
{
	const char *currency = tr_query(c, "currency"), *by = tr_query(c, "group_by");
	bool ok = crm_report_period_read(c, true, &b->now);

	if (!currency || strlen(currency) != 3 || !isupper((unsigned char)currency[0]) ||
	    !isupper((unsigned char)currency[1]) || !isupper((unsigned char)currency[2])) {
		crm_report_bad_param(
		    c, "currency", currency ? "must be an ISO 4217 code like EUR" : "is required");
		ok = false;
	} else {
		memcpy(b->currency, currency, 4);
	}
	if (!by || (strcmp(by, "product") != 0 && strcmp(by, "client_group") != 0)) {
		crm_report_bad_param(c, "group_by",
				     by ? "must be product or client_group" : "is required");
		ok = false;
	} else {
		b->by_product = strcmp(by, "product") == 0;
	}
	if (!ok)
		return false;
	long months = crm_report_month_of(b->now.to - 1) - crm_report_month_of(b->now.from) + 1;
	long most = tr_config_int("crm_report_max_months");
	if (months > most) {
		char *why = tr_arena_alloc(c->req->arena, 80);
		snprintf(why, 80, "the period may span at most %ld calendar months", most);
		crm_report_bad_param(c, "to", why);
		return false;
	}
	b->before.has_from = b->before.has_to = true;
	b->before.to = b->now.from;
	b->before.from = b->now.from - (b->now.to - b->now.from);
	if (b->before.from < EARLIEST_MS) {
		crm_report_bad_param(c, "from",
				     "the period before from (as long as the period) must start "
				     "in 1900 or later");
		return false;
	}
	return true;
}

/* ---- revenue by product: the ERP's sales ---- */

static int
sale_line(void *arg, const bson_oid_t *product, int64_t at, int64_t net)
{
	struct bcg *b = arg;
	uint8_t key[KEY_LEN];
	long i;

	if (net == 0 || at < b->before.from || at >= b->now.to)
		return TR_OK;
	crm_report_oid_key(key, product, 0);
	if ((i = crm_report_rindex_put(&b->items, key)) < 0)
		return TR_ENOMEM;
	return add_to(crm_report_rindex_val(&b->items, i), at < b->now.from, net);
}

/* Each listed product's name, as GET /v1/erp/products/{id} shows it. */
static int
product_names(struct bcg *b, const char **names)
{
	const struct tr_principal *who = &b->c->req->principal;

	for (size_t i = 0; i < b->items.n; i++) {
		const uint8_t *key = crm_report_rindex_key(&b->items, (long)i);
		bson_t answer;
		bson_oid_t id;
		char hex[25];
		memcpy(id.bytes, key, 12);
		bson_oid_to_string(&id, hex);
		int status =
		    tr_direct(b->c->db, &who->tenant_id, &who->user_id, "GET /v1/erp/products/{id}",
			      hex, NULL, NULL, false, &answer);
		if (status == 200 && tr_doc_str(&answer, "name"))
			names[i] = tr_arena_strdup(b->c->req->arena, tr_doc_str(&answer, "name"));
		bson_destroy(&answer);
		if (status == 503) /* the database: the report cannot be whole */
			return TR_EUNAVAILABLE;
	}
	return TR_OK;
}

static int
by_product(struct bcg *b)
{
	const bson_oid_t *owner =
	    b->c->req->principal.own_only ? &b->c->req->principal.user_id : NULL;
	/* both periods in one walk: they touch */
	struct tr_sales_query q = {b->before.from, b->now.to, b->currency, owner};

	return tr_sales_by_product(b->c->db, &q, sale_line, b);
}

/* ---- revenue by client: won deals, as abc-xyz reads them ---- */

static int
client_add(struct bcg *b, const bson_oid_t *client, bool before, int64_t amount)
{
	uint8_t key[KEY_LEN];
	long i;

	crm_report_oid_key(key, client, 0);
	if ((i = crm_report_rindex_put(&b->clients, key)) < 0)
		return TR_ENOMEM;
	return add_to(crm_report_rindex_val(&b->clients, i), before, amount);
}

/* A rendered deal: its amount to its client, in whichever period it
 * closed (the walk of a partial day reads one period only: in_before). */
static int
deal_visit(void *arg, const bson_t *deal)
{
	struct bcg *b = arg;
	bson_oid_t client;
	int64_t closed, amount;
	char currency[4];

	if (!crm_report_status_is(deal, "won") ||
	    !crm_report_rec_time(deal, "closed_at", &closed) ||
	    !crm_report_rec_money(deal, "amount", &amount, currency) || amount == 0 ||
	    strcmp(currency, b->currency) != 0 || !crm_report_rec_oid(deal, "client_id", &client) ||
	    !crm_report_own_ok(b->c, deal))
		return TR_OK;
	if (b->in_before >= 0 && !crm_report_in_period(b->in_before ? &b->before : &b->now, closed))
		return TR_OK;
	if (b->in_before < 0 && !crm_report_in_period(&b->now, closed) &&
	    !crm_report_in_period(&b->before, closed))
		return TR_OK;
	return client_add(b, &client, crm_report_in_period(&b->before, closed), amount);
}

/* One span's "c:<currency>:<client>" counters (totals.c). */
static int
deal_span(void *arg, const struct span *span, const bson_t *values)
{
	struct bcg *b = arg;
	bson_iter_t it;
	int rc = TR_OK;

	if (!bson_iter_init(&it, values))
		return TR_OK;
	while (rc == TR_OK && bson_iter_next(&it)) {
		const char *rest = crm_report_after_prefix(bson_iter_key(&it), "c:");
		int64_t amount = bson_iter_as_int64(&it) * span->sign;
		bson_oid_t client;
		if (!rest || strncmp(rest, b->currency, 3) != 0 || rest[3] != ':' ||
		    !tr_is_object_id(rest + 4) || amount == 0)
			continue;
		bson_oid_init_from_string(&client, rest + 4);
		rc = client_add(b, &client, b->in_before, amount);
	}
	return rc;
}

static int
clients_revenue(struct bcg *b)
{
	bson_t filter = BSON_INITIALIZER;
	struct plan *p = NULL;
	int rc = TR_OK;

	BSON_APPEND_UTF8(&filter, "status", "won");
	if (b->c->req->principal.own_only) {
		struct period both = {true, true, b->before.from, b->now.to};
		crm_report_period_filter(&filter, "closed_at", &both);
		crm_report_own_filter(b->c, &filter);
		b->in_before = -1;
		rc = crm_report_walk_all(b->c, "deals", &filter, deal_visit, b);
		goto out;
	}
	if (!(p = calloc(1, sizeof(*p)))) {
		rc = TR_ENOMEM;
		goto out;
	}
	for (b->in_before = 0; rc == TR_OK && b->in_before < 2; b->in_before++) {
		if (!crm_report_plan_period(p, b->in_before ? &b->before : &b->now)) {
			rc = TR_ELIMIT;
			break;
		}
		rc = crm_report_spans_each(b->c, "crm.x", p, deal_span, b);
		if (rc == TR_OK)
			rc = crm_report_scan_days(b->c, p, "deals", &filter, "_xd", deal_visit, b);
	}
out:
	free(p);
	bson_destroy(&filter);
	return rc;
}

/* ---- client groups ---- */

static int
group_visit(void *arg, const bson_t *record)
{
	struct bcg *b = arg;
	uint8_t key[KEY_LEN];
	bson_iter_t it, r;
	bson_oid_t id;
	long i;

	if (!crm_report_rec_oid(record, "id", &id))
		return TR_OK;
	crm_report_oid_key(key, &id, 0);
	if ((i = crm_report_rindex_put(&b->items, key)) < 0)
		return TR_ENOMEM;
	struct group *g = crm_report_rindex_val(&b->items, i);
	g->name = crm_report_arena_name(b->c, record);
	if (!bson_iter_init_find(&it, record, "rule") || !BSON_ITER_HOLDS_DOCUMENT(&it) ||
	    !bson_iter_recurse(&it, &r))
		return TR_OK;
	while (bson_iter_next(&r)) {
		const char *k = bson_iter_key(&r);
		const char *v = BSON_ITER_HOLDS_UTF8(&r) ? bson_iter_utf8(&r, NULL) : NULL;
		if (!v)
			continue;
		if (strcmp(k, "type") == 0)
			g->filter = strcmp(v, "filter") == 0;
		else if (strcmp(k, "kind") == 0)
			snprintf(g->kind, sizeof(g->kind), "%s", v);
		else if (strcmp(k, "owner_id") == 0 && tr_is_object_id(v)) {
			bson_oid_init_from_string(&g->owner, v);
			g->has_owner = true;
		}
	}
	return TR_OK;
}

/* Does a filter group's rule take the client (rendered)? A rule names at
 * least one condition (clients.c). */
static bool
rule_takes(const struct group *g, const bson_t *client)
{
	const char *kind = tr_doc_str(client, "kind");
	bson_oid_t owner;

	if (!g->kind[0] && !g->has_owner)
		return false;
	if (g->kind[0] && (!kind || strcmp(kind, g->kind) != 0))
		return false;
	if (g->has_owner &&
	    (!crm_report_rec_oid(client, "owner_id", &owner) || !bson_oid_equal(&owner, &g->owner)))
		return false;
	return true;
}

/* Adds the client's revenue to group i, once per client. */
static int
group_take(struct bcg *b, long i, long client, const struct revenue *r)
{
	struct group *g = crm_report_rindex_val(&b->items, i);

	if (g->last_client == client + 1)
		return TR_OK;
	g->last_client = client + 1;
	if (add_to(&g->r, false, r->now) != TR_OK || add_to(&g->r, true, r->before) != TR_OK)
		return TR_ELIMIT;
	return TR_OK;
}

struct membership {
	struct bcg *b;
	bool *placed; /* per client: its groups were counted */
};

/* A rendered client: its revenue to every group holding it. */
static int
member_visit(void *arg, const bson_t *client)
{
	struct membership *m = arg;
	struct bcg *b = m->b;
	uint8_t key[KEY_LEN];
	bson_iter_t it, ids;
	bson_oid_t id;
	long ci;
	int rc = TR_OK;

	if (!crm_report_rec_oid(client, "id", &id))
		return TR_OK;
	crm_report_oid_key(key, &id, 0);
	if ((ci = crm_report_rindex_find(&b->clients, key)) < 0 || m->placed[ci])
		return TR_OK;
	m->placed[ci] = true;
	const struct revenue *r = crm_report_rindex_val(&b->clients, ci);
	bool grouped = false;
	if (bson_iter_init_find(&it, client, "group_ids") && BSON_ITER_HOLDS_ARRAY(&it) &&
	    bson_iter_recurse(&it, &ids))
		while (rc == TR_OK && bson_iter_next(&ids)) {
			const char *hex =
			    BSON_ITER_HOLDS_UTF8(&ids) ? bson_iter_utf8(&ids, NULL) : "";
			uint8_t gkey[KEY_LEN];
			bson_oid_t gid;
			long gi;
			if (!tr_is_object_id(hex))
				continue;
			bson_oid_init_from_string(&gid, hex);
			crm_report_oid_key(gkey, &gid, 0);
			gi = crm_report_rindex_find(&b->items, gkey);
			if (gi < 0 ||
			    ((struct group *)crm_report_rindex_val(&b->items, gi))->filter)
				continue;
			grouped = true;
			rc = group_take(b, gi, ci, r);
		}
	for (size_t gi = 0; rc == TR_OK && gi < b->items.n; gi++) {
		const struct group *g = crm_report_rindex_val(&b->items, (long)gi);
		if (g->filter && rule_takes(g, client)) {
			grouped = true;
			rc = group_take(b, (long)gi, ci, r);
		}
	}
	if (rc == TR_OK && !grouped &&
	    (add_to(&b->ungrouped, false, r->now) != TR_OK ||
	     add_to(&b->ungrouped, true, r->before) != TR_OK))
		rc = TR_ELIMIT;
	return rc;
}

static int
by_client_group(struct bcg *b)
{
	struct membership m = {b, NULL};
	int rc = clients_revenue(b);

	if (rc == TR_OK)
		rc = crm_report_walk_all(b->c, "crm_groups", NULL, group_visit, b);
	if (rc == TR_OK && b->clients.n > 0 && !(m.placed = calloc(b->clients.n, sizeof(bool))))
		rc = TR_ENOMEM;
	if (rc == TR_OK && b->clients.n > POINT_READS) {
		rc = crm_report_walk_all(b->c, "clients", NULL, member_visit, &m);
	} else {
		for (size_t i = 0; rc == TR_OK && i < b->clients.n; i++) {
			bson_t record, rendered = BSON_INITIALIZER;
			bson_oid_t id;
			char hex[25];
			memcpy(id.bytes, crm_report_rindex_key(&b->clients, (long)i), 12);
			bson_oid_to_string(&id, hex);
			rc = tr_db_get(b->c->db, "clients", hex, &record);
			if (rc == TR_OK) {
				tr_render_resource(&record, &rendered);
				rc = member_visit(&m, &rendered);
			} else if (rc == TR_ENOTFOUND) {
				rc = TR_OK; /* gone: ungrouped, below */
			}
			bson_destroy(&record);
			bson_destroy(&rendered);
		}
	}
	/* every client counts in the totals once; one not found, ungrouped */
	for (size_t i = 0; rc == TR_OK && i < b->clients.n; i++) {
		const struct revenue *r = crm_report_rindex_val(&b->clients, (long)i);
		if (add_to(&b->total, false, r->now) != TR_OK ||
		    add_to(&b->total, true, r->before) != TR_OK)
			rc = TR_ELIMIT;
		else if (!m.placed[i] && (add_to(&b->ungrouped, false, r->now) != TR_OK ||
					  add_to(&b->ungrouped, true, r->before) != TR_OK))
			rc = TR_ELIMIT;
	}
	free(m.placed);
	return rc;
}

/* ---- the answer ---- */

/* Listing order: revenue (the weight) descending, then id. */
static int
bcg_order(const void *x, const void *y)
{
	const struct ranked *a = x, *b = y;

	if (a->weight != b->weight)
		return a->weight > b->weight ? -1 : 1;
	return memcmp(a->key, b->key, KEY_LEN);
}

static void
item_append(bson_t *items, uint32_t n, const struct bcg *b, const uint8_t *key,
	    const struct revenue *r, const char *name, const struct bcg_class *cls)
{
	bson_t item;
	bson_oid_t id;
	char hex[25], idx[16];

	memcpy(id.bytes, key, 12);
	bson_oid_to_string(&id, hex);
	BSON_APPEND_DOCUMENT_BEGIN(items, crm_report_array_key(n, idx, sizeof(idx)), &item);
	BSON_APPEND_UTF8(&item, b->by_product ? "product_id" : "group_id", hex);
	if (name)
		BSON_APPEND_UTF8(&item, "name", name);
	else
		BSON_APPEND_NULL(&item, "name");
	crm_report_money_append(&item, "revenue", r->now, b->currency);
	crm_report_money_append(&item, "previous_revenue", r->before, b->currency);
	if (cls->has_growth)
		crm_report_signed_decimal4_append(&item, "growth", cls->growth_negative,
						  cls->growth_scaled);
	else
		BSON_APPEND_NULL(&item, "growth");
	if (cls->has_share)
		crm_report_decimal4_append(&item, "relative_share", cls->share_scaled);
	else
		BSON_APPEND_NULL(&item, "relative_share");
	BSON_APPEND_UTF8(&item, "bcg", crm_bcg_quadrant_name(cls->quadrant));
	bson_append_document_end(items, &item);
}

static int
answer(struct bcg *b, const char **names, bson_t *out)
{
	struct bcg_thresholds t = {tr_config_int("crm_bcg_growth_high_bp"),
				   tr_config_int("crm_bcg_share_high_bp")};
	struct ranked *order = crm_report_rindex_sorted(&b->items, bcg_order, true);
	bson_t items, th;
	char ts[32];
	uint32_t n = 0;

	if (!order)
		return TR_ENOMEM;
	BSON_APPEND_UTF8(out, "group_by", b->by_product ? "product" : "client_group");
	BSON_APPEND_UTF8(out, "currency", b->currency);
	crm_report_period_append(out, &b->now);
	tr_format_time(b->before.from, ts);
	BSON_APPEND_UTF8(out, "previous_from", ts);
	tr_format_time(b->before.to, ts);
	BSON_APPEND_UTF8(out, "previous_to", ts);
	BSON_APPEND_DOCUMENT_BEGIN(out, "thresholds", &th);
	crm_report_signed_decimal4_append(&th, "growth", t.growth_bp < 0,
					  (u128)(t.growth_bp < 0 ? -t.growth_bp : t.growth_bp));
	crm_report_decimal4_append(&th, "relative_share", (u128)t.share_bp);
	bson_append_document_end(out, &th);
	crm_report_money_append(out, "total", b->total.now, b->currency);
	crm_report_money_append(out, "previous_total", b->total.before, b->currency);
	if (!b->by_product) {
		BSON_APPEND_DOCUMENT_BEGIN(out, "ungrouped", &th);
		crm_report_money_append(&th, "revenue", b->ungrouped.now, b->currency);
		crm_report_money_append(&th, "previous_revenue", b->ungrouped.before, b->currency);
		bson_append_document_end(out, &th);
	}
	/* the two largest revenues now: an item's largest other is the
	 * first's unless it is the first */
	int64_t top = b->items.n > 0 ? order[0].weight : 0;
	int64_t second = b->items.n > 1 ? order[1].weight : 0;
	BSON_APPEND_ARRAY_BEGIN(out, "items", &items);
	for (size_t i = 0; i < b->items.n; i++) {
		const struct revenue *r = crm_report_rindex_val(&b->items, order[i].index);
		struct bcg_class cls;
		if (r->now == 0 && r->before == 0)
			continue; /* a group without revenue in either period */
		crm_bcg_classify(r->now, r->before, i == 0 ? second : top, &t, &cls);
		item_append(&items, n++, b, order[i].key, r,
			    b->by_product ? names[order[i].index] : ((const struct group *)r)->name,
			    &cls);
	}
	bson_append_array_end(out, &items);
	free(order);
	return TR_OK;
}

/* GET /v1/crm/reports/bcg?from&to&currency&group_by */
void
crm_reports_bcg(struct tr_ctx *c)
{
	struct bcg b;
	bson_t out = BSON_INITIALIZER;
	const char **names = NULL;
	int rc;

	memset(&b, 0, sizeof(b));
	b.c = c;
	crm_report_rindex_init(&b.clients, sizeof(struct revenue));
	if (!read_params(c, &b)) {
		crm_report_rindex_init(&b.items, sizeof(struct revenue));
		goto done;
	}
	crm_report_rindex_init(&b.items,
			       b.by_product ? sizeof(struct revenue) : sizeof(struct group));
	if (b.by_product) {
		rc = by_product(&b);
		for (size_t i = 0; rc == TR_OK && i < b.items.n; i++) {
			const struct revenue *r = crm_report_rindex_val(&b.items, (long)i);
			if (add_to(&b.total, false, r->now) != TR_OK ||
			    add_to(&b.total, true, r->before) != TR_OK)
				rc = TR_ELIMIT;
		}
		if (rc == TR_OK && b.items.n > 0 && !(names = calloc(b.items.n, sizeof(*names))))
			rc = TR_ENOMEM;
		if (rc == TR_OK)
			rc = product_names(&b, names);
	} else {
		rc = by_client_group(&b);
	}
	if (rc == TR_OK)
		rc = answer(&b, names, &out);
	if (rc != TR_OK) {
		crm_report_failed(c, rc);
		goto done;
	}
	tr_reply_json(c, 200, &out);
done:
	free(names);
	crm_report_rindex_free(&b.items);
	crm_report_rindex_free(&b.clients);
	bson_destroy(&out);
}
