/* Report totals: what the CRM reports read instead of every deal and lead.
 *
 * Each deal and lead contributes counters to registers (register.h) of the
 * day, the month and all time of the moment the report groups it by; the
 * data layer posts the difference between a record's contributions before
 * and after each change, with the change and exactly once (module.h,
 * struct tr_effects). A report adds up the registers of the whole days and
 * months of its period and reads the records of a period's partial first
 * and last day itself (report_period.c).
 *
 *   crm.f/<pipeline>/<period>   deals of the pipeline by created_at (funnel):
 *       n (deals), o, w, x (open, won, lost), e:<stage> (deals that entered
 *       the stage, once each), s:<stage> (open deals in it now),
 *       wa:<cur>, la:<cur> (won, lost amounts) with wq:<cur>, lq:<cur> (how
 *       many amounts, so a sum of 0 still shows)
 *   crm.x/<period>              won and lost deals by closed_at:
 *       w:<owner>, x:<owner>, r:<owner>:<cur> (+ rq:...) for managers;
 *       c:<cur>:<client> (non-zero won amounts) for abc-xyz
 *   crm.l/<period>              leads by created_at: l:<owner>, lc:<channel>,
 *       lk:<campaign>; and the deals made from them, by the lead's
 *       created_at: dc:<channel>, dk:<campaign>, rc:<channel>:<cur>,
 *       rk:<campaign>:<cur> (+ rcq, rkq) for sources
 *
 *   crm.names                   c:<client>: how often the client's name changed
 *
 * <period> is d2026-03-05, m2026-03 or all; an owner, channel or campaign
 * that is not there is "-". A deal knows its lead's created day, channel and
 * campaign (_lcd, _lch, _lk), set by the conversion and kept up to date
 * when the lead changes (leads.c). */
#include <stdio.h>
#include <string.h>

#include "crm.h"
#include "util.h"

#define FUNNEL "crm.f"
#define CLOSED "crm.x"
#define LEADS_FAMILY "crm.l"

struct out {
	bson_t *postings;
	int sign;
	int n;
};

static void
post(struct out *o, const char *key, const char *counter, int64_t d)
{
	bson_t p;
	char idx[16];
	const char *k;

	bson_uint32_to_string((uint32_t)o->n++, &k, idx, sizeof(idx));
	BSON_APPEND_DOCUMENT_BEGIN(o->postings, k, &p);
	BSON_APPEND_UTF8(&p, "k", key);
	BSON_APPEND_UTF8(&p, "c", counter);
	BSON_APPEND_INT64(&p, "d", d * o->sign);
	bson_append_document_end(o->postings, &p);
}

/* The counter in the day, month and all-time registers of family at day
 * ("2026-03-05"). */
static void
post_at(struct out *o, const char *family, const char *day, const char *counter, int64_t d)
{
	char key[160];

	snprintf(key, sizeof(key), "%s/d%s", family, day);
	post(o, key, counter, d);
	snprintf(key, sizeof(key), "%s/m%.7s", family, day);
	post(o, key, counter, d);
	snprintf(key, sizeof(key), "%s/all", family);
	post(o, key, counter, d);
}

static bool
time_of(const bson_t *doc, const char *field, int64_t *ms)
{
	bson_iter_t it;

	if (!bson_iter_init_find(&it, doc, field) || !BSON_ITER_HOLDS_DATE_TIME(&it))
		return false;
	*ms = bson_iter_date_time(&it);
	return true;
}

/* An ObjectId field as hex, or "-". */
static void
hex_or_dash(const bson_t *doc, const char *field, char out[25])
{
	bson_oid_t id;

	if (tr_doc_oid(doc, field, &id))
		bson_oid_to_string(&id, out);
	else
		strcpy(out, "-");
}

/* A money field as stored: {amount (int64), currency}. */
static bool
money_of(const bson_t *doc, const char *field, int64_t *amount, char currency[4])
{
	bson_iter_t it, m;
	bool has_amount = false, has_currency = false;

	if (!bson_iter_init_find(&it, doc, field) || !BSON_ITER_HOLDS_DOCUMENT(&it) ||
	    !bson_iter_recurse(&it, &m))
		return false;
	while (bson_iter_next(&m)) {
		if (strcmp(bson_iter_key(&m), "amount") == 0 && BSON_ITER_HOLDS_NUMBER(&m)) {
			*amount = bson_iter_as_int64(&m);
			has_amount = true;
		} else if (strcmp(bson_iter_key(&m), "currency") == 0 && BSON_ITER_HOLDS_UTF8(&m) &&
			   strlen(bson_iter_utf8(&m, NULL)) == 3) {
			memcpy(currency, bson_iter_utf8(&m, NULL), 4);
			has_currency = true;
		}
	}
	return has_amount && has_currency;
}

static void
deal_contributions(const bson_t *deal, struct out *o)
{
	const char *status = tr_doc_str(deal, "status"), *stage = tr_doc_str(deal, "stage");
	char pipeline[25], owner[25], client[25], currency[4] = "", day[16], family[64];
	char counter[160];
	int64_t created, closed, amount = 0;
	bool money = money_of(deal, "amount", &amount, currency);
	bool open = status && strcmp(status, "open") == 0, won = status && !strcmp(status, "won"),
	     lost = status && strcmp(status, "lost") == 0;
	bson_iter_t it, hist, entry;

	hex_or_dash(deal, "owner_id", owner);
	hex_or_dash(deal, "client_id", client);
	/* the funnel: by created_at, in the deal's pipeline */
	hex_or_dash(deal, "pipeline_id", pipeline);
	if (strcmp(pipeline, "-") != 0 && time_of(deal, "created_at", &created)) {
		const char *seen[64];
		int nseen = 0;
		tr_format_day(created, day);
		snprintf(family, sizeof(family), "%s/%s", FUNNEL, pipeline);
		post_at(o, family, day, "n", 1);
		post_at(o, family, day, open ? "o" : won ? "w" : lost ? "x" : "u", 1);
		if (stage)
			seen[nseen++] = stage;
		if (bson_iter_init_find(&it, deal, "stage_history") && BSON_ITER_HOLDS_ARRAY(&it) &&
		    bson_iter_recurse(&it, &hist))
			while (bson_iter_next(&hist) && nseen < 64) {
				const char *s;
				bool dup = false;
				if (!BSON_ITER_HOLDS_DOCUMENT(&hist) ||
				    !bson_iter_recurse(&hist, &entry) ||
				    !bson_iter_find(&entry, "stage") ||
				    !BSON_ITER_HOLDS_UTF8(&entry))
					continue;
				s = bson_iter_utf8(&entry, NULL);
				for (int i = 0; i < nseen && !dup; i++)
					dup = strcmp(seen[i], s) == 0;
				if (!dup)
					seen[nseen++] = s;
			}
		for (int i = 0; i < nseen; i++) {
			snprintf(counter, sizeof(counter), "e:%s", seen[i]);
			post_at(o, family, day, counter, 1);
		}
		if (open && stage) {
			snprintf(counter, sizeof(counter), "s:%s", stage);
			post_at(o, family, day, counter, 1);
		}
		if ((won || lost) && money) {
			snprintf(counter, sizeof(counter), "%sa:%s", won ? "w" : "l", currency);
			post_at(o, family, day, counter, amount);
			snprintf(counter, sizeof(counter), "%sq:%s", won ? "w" : "l", currency);
			post_at(o, family, day, counter, 1);
		}
	}
	/* closed deals: by closed_at */
	if ((won || lost) && time_of(deal, "closed_at", &closed)) {
		tr_format_day(closed, day);
		snprintf(counter, sizeof(counter), "%s:%s", won ? "w" : "x", owner);
		post_at(o, CLOSED, day, counter, 1);
		if (won && money) {
			snprintf(counter, sizeof(counter), "r:%s:%s", owner, currency);
			post_at(o, CLOSED, day, counter, amount);
			snprintf(counter, sizeof(counter), "rq:%s:%s", owner, currency);
			post_at(o, CLOSED, day, counter, 1);
			if (amount != 0 && strcmp(client, "-") != 0) {
				snprintf(counter, sizeof(counter), "c:%s:%s", currency, client);
				post_at(o, CLOSED, day, counter, amount);
			}
		}
	}
	/* a deal made from a lead: by the lead's created day */
	const char *lcd = tr_doc_str(deal, "_lcd");
	if (lcd && strlen(lcd) == 10) {
		const char *ch = tr_doc_str(deal, "_lch");
		char campaign[25];
		hex_or_dash(deal, "_lk", campaign);
		snprintf(counter, sizeof(counter), "dc:%s", ch ? ch : "-");
		post_at(o, LEADS_FAMILY, lcd, counter, 1);
		if (strcmp(campaign, "-") != 0) {
			snprintf(counter, sizeof(counter), "dk:%s", campaign);
			post_at(o, LEADS_FAMILY, lcd, counter, 1);
		}
		if (won && money) {
			snprintf(counter, sizeof(counter), "rc:%s:%s", ch ? ch : "-", currency);
			post_at(o, LEADS_FAMILY, lcd, counter, amount);
			snprintf(counter, sizeof(counter), "rcq:%s:%s", ch ? ch : "-", currency);
			post_at(o, LEADS_FAMILY, lcd, counter, 1);
			if (strcmp(campaign, "-") != 0) {
				snprintf(counter, sizeof(counter), "rk:%s:%s", campaign, currency);
				post_at(o, LEADS_FAMILY, lcd, counter, amount);
				snprintf(counter, sizeof(counter), "rkq:%s:%s", campaign, currency);
				post_at(o, LEADS_FAMILY, lcd, counter, 1);
			}
		}
	}
}

/* A lead's source as stored: {channel, campaign_id}; "-" for what is not
 * there. */
static void
lead_source(const bson_t *lead, char channel[16], char campaign[25])
{
	bson_iter_t it, s;

	strcpy(channel, "-");
	strcpy(campaign, "-");
	if (!bson_iter_init_find(&it, lead, "source") || !BSON_ITER_HOLDS_DOCUMENT(&it) ||
	    !bson_iter_recurse(&it, &s))
		return;
	while (bson_iter_next(&s)) {
		if (strcmp(bson_iter_key(&s), "channel") == 0 && BSON_ITER_HOLDS_UTF8(&s) &&
		    strlen(bson_iter_utf8(&s, NULL)) < 16)
			strcpy(channel, bson_iter_utf8(&s, NULL));
		else if (strcmp(bson_iter_key(&s), "campaign_id") == 0 && BSON_ITER_HOLDS_OID(&s))
			bson_oid_to_string(bson_iter_oid(&s), campaign);
	}
}

static void
lead_contributions(const bson_t *lead, struct out *o)
{
	char owner[25], channel[16], campaign[25], day[16], counter[64];
	int64_t created;

	if (!time_of(lead, "created_at", &created))
		return;
	tr_format_day(created, day);
	hex_or_dash(lead, "owner_id", owner);
	lead_source(lead, channel, campaign);
	snprintf(counter, sizeof(counter), "l:%s", owner);
	post_at(o, LEADS_FAMILY, day, counter, 1);
	snprintf(counter, sizeof(counter), "lc:%s", channel);
	post_at(o, LEADS_FAMILY, day, counter, 1);
	if (strcmp(campaign, "-") != 0) {
		snprintf(counter, sizeof(counter), "lk:%s", campaign);
		post_at(o, LEADS_FAMILY, day, counter, 1);
	}
}

static int
deal_postings(const bson_t *before, const bson_t *after, bson_t *postings)
{
	struct out o = {postings, -1, 0};

	if (before)
		deal_contributions(before, &o);
	o.sign = 1;
	if (after)
		deal_contributions(after, &o);
	return 0;
}

static int
lead_postings(const bson_t *before, const bson_t *after, bson_t *postings)
{
	struct out o = {postings, -1, 0};

	if (before)
		lead_contributions(before, &o);
	o.sign = 1;
	if (after)
		lead_contributions(after, &o);
	return 0;
}

/* crm.names: a change count per client ("c:<id>"), moved by every change
 * of a client's name (its creation and deletion too). A process that keeps
 * client names can tell from this one register which of them changed
 * since it read them, in any process (report_names.c). */
static int
client_postings(const bson_t *before, const bson_t *after, bson_t *postings)
{
	const char *was = before ? tr_doc_str(before, "name") : NULL;
	const char *is = after ? tr_doc_str(after, "name") : NULL;
	char id[25], counter[40];
	struct out o = {postings, 1, 0};

	if (was && is && strcmp(was, is) == 0)
		return 0;
	hex_or_dash(after ? after : before, "_id", id);
	snprintf(counter, sizeof(counter), "c:%s", id);
	post(&o, CRM_NAMES, counter, 1);
	return 0;
}

const struct tr_effects crm_effects[CRM_NEFFECTS] = {
    {"deals", deal_postings},
    {"leads", lead_postings},
    {"clients", client_postings},
};
const size_t crm_neffects = sizeof(crm_effects) / sizeof(crm_effects[0]);

void
crm_lead_snapshot(const bson_t *lead, bson_t *set)
{
	char channel[16], campaign[25], day[16];
	int64_t created;
	bson_oid_t id;

	if (!time_of(lead, "created_at", &created)) {
		BSON_APPEND_NULL(set, "_lcd");
		BSON_APPEND_NULL(set, "_lch");
		BSON_APPEND_NULL(set, "_lk");
		return;
	}
	tr_format_day(created, day);
	lead_source(lead, channel, campaign);
	BSON_APPEND_UTF8(set, "_lcd", day);
	if (strcmp(channel, "-") != 0)
		BSON_APPEND_UTF8(set, "_lch", channel);
	else
		BSON_APPEND_NULL(set, "_lch");
	if (strcmp(campaign, "-") != 0) {
		bson_oid_init_from_string(&id, campaign);
		BSON_APPEND_OID(set, "_lk", &id);
	} else {
		BSON_APPEND_NULL(set, "_lk");
	}
}

void
crm_deal_closed_day(bson_t *set)
{
	int64_t closed;
	char day[16];

	if (time_of(set, "closed_at", &closed)) {
		tr_format_day(closed, day);
		BSON_APPEND_UTF8(set, "_xd", day);
	}
}
