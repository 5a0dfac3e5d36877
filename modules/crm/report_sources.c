/* The CRM sources report (reports.h for what the reports share).
 *
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "json.h"
#include "reports.h"
#include "util.h"

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

	if (!crm_report_rec_oid(campaign, "id", &id))
		return TR_OK;
	crm_report_oid_key(key, &id, 0);
	i = crm_report_rindex_put(&sr->campaigns, key);
	if (i < 0)
		return TR_ENOMEM;
	struct campaign_stats *cs = crm_report_rindex_val(&sr->campaigns, i);
	cs->known = true;
	cs->name = crm_report_arena_name(sr->c, campaign);
	cs->has_cost = crm_report_rec_money(campaign, "cost", &cs->cost, cs->cost_currency);
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

	if (!crm_report_rec_oid(lead, "id", &id) ||
	    !crm_report_rec_time(lead, "created_at", &created) ||
	    !crm_report_in_period(&sr->period, created) || !crm_report_own_ok(sr->c, lead))
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
				crm_report_oid_key(key, &campaign, 0);
				ls.campaign = crm_report_rindex_put(&sr->campaigns, key);
				if (ls.campaign < 0)
					return TR_ENOMEM;
			}
		}
	sr->channel[ls.channel].leads++;
	if (ls.campaign >= 0)
		((struct campaign_stats *)crm_report_rindex_val(&sr->campaigns, ls.campaign))
		    ->s.leads++;
	crm_report_oid_key(key, &id, 0);
	i = crm_report_rindex_put(&sr->leads, key);
	if (i < 0)
		return TR_ENOMEM;
	*(struct lead_source *)crm_report_rindex_val(&sr->leads, i) = ls;
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

	if (!crm_report_rec_oid(deal, "lead_id", &lead) || !crm_report_own_ok(sr->c, deal))
		return TR_OK;
	crm_report_oid_key(key, &lead, 0);
	i = crm_report_rindex_find(&sr->leads, key);
	if (i < 0)
		return TR_OK; /* a lead of another period */
	ls = crm_report_rindex_val(&sr->leads, i);
	paid = crm_report_status_is(deal, "won") &&
	       crm_report_rec_money(deal, "amount", &amount, currency);
	sr->channel[ls->channel].deals++;
	if (paid) {
		channel_group(group, ls->channel);
		rc = crm_report_ledger_add(&sr->revenue, group, currency, amount);
	}
	if (ls->campaign >= 0) {
		((struct campaign_stats *)crm_report_rindex_val(&sr->campaigns, ls->campaign))
		    ->s.deals++;
		if (paid && rc == TR_OK)
			rc = crm_report_ledger_add(
			    &sr->revenue, crm_report_rindex_key(&sr->campaigns, ls->campaign),
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
	rc = crm_report_plan_period(p, &sr->period) ? crm_report_spans_sum(c, "crm.l", p, &t)
						    : TR_ELIMIT;
	for (size_t i = 0; rc == TR_OK && i < t.n; i++) {
		const char *n = t.names[i], *rest;
		int64_t v = t.values[i];
		bool per_campaign = false, money = false, leads = false;
		if ((rest = crm_report_after_prefix(n, "lc:")))
			leads = true;
		else if ((rest = crm_report_after_prefix(n, "dc:")))
			;
		else if ((rest = crm_report_after_prefix(n, "rcq:")))
			money = true;
		else if ((rest = crm_report_after_prefix(n, "lk:")))
			leads = per_campaign = true;
		else if ((rest = crm_report_after_prefix(n, "dk:")))
			per_campaign = true;
		else if ((rest = crm_report_after_prefix(n, "rkq:")))
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
			crm_report_oid_key(group, &id, 0);
			if ((k = crm_report_rindex_put(&sr->campaigns, group)) < 0) {
				rc = TR_ENOMEM;
				break;
			}
			st =
			    &((struct campaign_stats *)crm_report_rindex_val(&sr->campaigns, k))->s;
		} else {
			int ch = channel_named(who);
			if (ch < 0)
				continue;
			channel_group(group, ch);
			st = &sr->channel[ch];
		}
		if (money)
			rc =
			    crm_report_ledger_add(&sr->revenue, group, cur, counters_get(&t, name));
		else if (leads)
			st->leads += v;
		else
			st->deals += v;
	}
	if (rc == TR_OK)
		rc = crm_report_scan_days(c, p, "leads", NULL, "_cd", sources_lead, sr);
	if (rc == TR_OK && sr->leads.n > 0)
		rc = crm_report_scan_days(c, p, "deals", NULL, "_lcd", sources_deal, sr);
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
	crm_report_ledger_append(row, "revenue", revenue, group);
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
		crm_report_failed(c, TR_ENOMEM);
		goto done;
	}
	sr->c = c;
	crm_report_rindex_init(&sr->campaigns, sizeof(struct campaign_stats));
	crm_report_rindex_init(&sr->leads, sizeof(struct lead_source));
	crm_report_ledger_init(&sr->revenue);
	if (!crm_report_period_read(c, false, &sr->period))
		goto done;

	crm_report_period_filter(&leads_filter, "created_at", &sr->period);
	crm_report_own_filter(c, &leads_filter);
	BSON_APPEND_DOCUMENT_BEGIN(&deals_filter, "lead_id", &exists);
	BSON_APPEND_BOOL(&exists, "$exists", true);
	bson_append_document_end(&deals_filter, &exists);
	crm_report_own_filter(c, &deals_filter);
	rc = crm_report_walk(c, "campaigns", NULL, sources_campaign, sr);
	if (rc == TR_OK && c->req->principal.own_only) {
		rc = crm_report_walk_all(c, "leads", &leads_filter, sources_lead, sr);
		if (rc == TR_OK && sr->leads.n > 0)
			rc = crm_report_walk_all(c, "deals", &deals_filter, sources_deal, sr);
	} else if (rc == TR_OK) {
		rc = sources_totals(c, sr);
	}
	if (rc == TR_OK)
		rc = crm_report_ledger_close(&sr->revenue);
	if (rc != TR_OK) {
		crm_report_failed(c, rc);
		goto done;
	}

	crm_report_period_append(&out, &sr->period);
	BSON_APPEND_ARRAY_BEGIN(&out, "channels", &rows);
	for (int ch = 0; ch <= NCHANNELS; ch++) {
		uint8_t group[KEY_LEN];
		char idx[16];
		if (sr->channel[ch].leads == 0)
			continue;
		channel_group(group, ch);
		const char *k = crm_report_array_key(n++, idx, sizeof(idx));
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
		const uint8_t *key = crm_report_rindex_key(&sr->campaigns, (long)i);
		const struct campaign_stats *cs = crm_report_rindex_val(&sr->campaigns, (long)i);
		char idx[16], hex[25];
		bson_oid_t id;

		memcpy(id.bytes, key, 12);
		bson_oid_to_string(&id, hex);
		BSON_APPEND_DOCUMENT_BEGIN(
		    &rows, crm_report_array_key((uint32_t)i, idx, sizeof(idx)), &row);
		BSON_APPEND_UTF8(&row, "campaign_id", hex);
		if (cs->name)
			BSON_APPEND_UTF8(&row, "name", cs->name);
		else
			BSON_APPEND_NULL(&row, "name");
		source_append(&row, &cs->s, &sr->revenue, key);
		if (cs->has_cost)
			crm_report_money_append(&row, "cost", cs->cost, cs->cost_currency);
		else
			BSON_APPEND_NULL(&row, "cost");
		if (cs->has_cost && cs->s.leads > 0) {
			/* half up: q + 1 when the remainder is at least half a lead */
			int64_t q = cs->cost / cs->s.leads, r = cs->cost % cs->s.leads;
			if (r * 2 >= cs->s.leads)
				q++;
			crm_report_money_append(&row, "cost_per_lead", q, cs->cost_currency);
		} else {
			BSON_APPEND_NULL(&row, "cost_per_lead");
		}
		bson_append_document_end(&rows, &row);
	}
	bson_append_array_end(&out, &rows);
	tr_reply_json(c, 200, &out);
done:
	if (sr) {
		crm_report_rindex_free(&sr->campaigns);
		crm_report_rindex_free(&sr->leads);
		crm_report_ledger_free(&sr->revenue);
	}
	bson_destroy(&leads_filter);
	bson_destroy(&deals_filter);
	bson_destroy(&out);
}
