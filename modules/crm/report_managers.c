/* The CRM managers report (reports.h for what the reports share).
 *
 *   others by owner id): leads = leads with created_at in the period they
 *   own; deals_won / deals_lost = their deals won / lost with closed_at in
 *   the period; revenue = the amounts of those won deals per currency;
 *   conversion = deals_won / (deals_won + deals_lost), null when both are 0.
 *   Owners with none of these are not listed.
 *
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "json.h"
#include "reports.h"
#include "util.h"

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

	if (crm_report_rec_oid(record, "owner_id", &owner))
		crm_report_oid_key(key, &owner, 0);
	else
		crm_report_oid_key(key, NULL, 1);
	i = crm_report_rindex_put(&mg->owners, key);
	return i < 0 ? NULL : crm_report_rindex_val(&mg->owners, i);
}

static int
managers_lead(void *arg, const bson_t *lead)
{
	struct managers *mg = arg;
	uint8_t key[KEY_LEN];
	struct owner_stats *os;
	int64_t created;

	if (!crm_report_rec_time(lead, "created_at", &created) ||
	    !crm_report_in_period(&mg->period, created) || !crm_report_own_ok(mg->c, lead))
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
	bool won = crm_report_status_is(deal, "won");

	if ((!won && !crm_report_status_is(deal, "lost")) ||
	    !crm_report_rec_time(deal, "closed_at", &closed) ||
	    !crm_report_in_period(&mg->period, closed) || !crm_report_own_ok(mg->c, deal))
		return TR_OK;
	os = owner_of(mg, deal, key);
	if (!os)
		return TR_ENOMEM;
	if (!won) {
		os->lost++;
		return TR_OK;
	}
	os->won++;
	if (crm_report_rec_money(deal, "amount", &amount, currency))
		return crm_report_ledger_add(&mg->revenue, key, currency, amount);
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
		crm_report_oid_key(key, &id, 0);
	} else {
		crm_report_oid_key(key, NULL, 1);
	}
	i = crm_report_rindex_put(&mg->owners, key);
	return i < 0 ? NULL : crm_report_rindex_val(&mg->owners, i);
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
	rc = crm_report_plan_period(p, &mg->period) ? crm_report_spans_sum(c, "crm.l", p, &leads)
						    : TR_ELIMIT;
	if (rc == TR_OK)
		rc = crm_report_spans_sum(c, "crm.x", p, &closed);
	for (size_t i = 0; rc == TR_OK && i < leads.n; i++) {
		const char *who = crm_report_after_prefix(leads.names[i], "l:");
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
		if ((who = crm_report_after_prefix(n, "w:")) ||
		    (who = crm_report_after_prefix(n, "x:"))) {
			if (!(os = owner_named(mg, who, key)))
				rc = TR_ENOMEM;
			else if (n[0] == 'w')
				os->won += closed.values[i];
			else
				os->lost += closed.values[i];
		} else if ((who = crm_report_after_prefix(n, "rq:")) && closed.values[i] > 0) {
			const char *colon = strrchr(who, ':');
			if (!colon || strlen(colon + 1) != 3 ||
			    (size_t)(colon - who) >= sizeof(owner))
				continue;
			snprintf(owner, sizeof(owner), "%.*s", (int)(colon - who), who);
			snprintf(name, sizeof(name), "r:%s", who);
			if (!owner_named(mg, owner, key))
				rc = TR_ENOMEM;
			else
				rc = crm_report_ledger_add(&mg->revenue, key, colon + 1,
							   counters_get(&closed, name));
		}
	}
	if (rc == TR_OK)
		rc = crm_report_scan_days(c, p, "leads", NULL, "_cd", managers_lead, mg);
	if (rc == TR_OK)
		rc = crm_report_scan_days(c, p, "deals", NULL, "_xd", managers_deal, mg);
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
	crm_report_rindex_init(&mg.owners, sizeof(struct owner_stats));
	crm_report_ledger_init(&mg.revenue);
	if (!crm_report_period_read(c, false, &mg.period))
		goto done;

	crm_report_period_filter(&leads_filter, "created_at", &mg.period);
	crm_report_own_filter(c, &leads_filter);
	BSON_APPEND_DOCUMENT_BEGIN(&deals_filter, "status", &in);
	BSON_APPEND_ARRAY_BEGIN(&in, "$in", &list);
	BSON_APPEND_UTF8(&list, "0", "won");
	BSON_APPEND_UTF8(&list, "1", "lost");
	bson_append_array_end(&in, &list);
	bson_append_document_end(&deals_filter, &in);
	crm_report_period_filter(&deals_filter, "closed_at", &mg.period);
	crm_report_own_filter(c, &deals_filter);
	if (c->req->principal.own_only) {
		rc = crm_report_walk_all(c, "leads", &leads_filter, managers_lead, &mg);
		if (rc == TR_OK)
			rc = crm_report_walk_all(c, "deals", &deals_filter, managers_deal, &mg);
	} else {
		rc = managers_totals(c, &mg);
	}
	if (rc == TR_OK)
		rc = crm_report_names_fill(c, "users", &mg.owners,
					   offsetof(struct owner_stats, name));
	if (rc == TR_OK)
		rc = crm_report_ledger_close(&mg.revenue);
	if (rc == TR_OK) {
		order = crm_report_rindex_sorted(&mg.owners, owner_order, false);
		if (!order)
			rc = TR_ENOMEM;
	}
	if (rc != TR_OK) {
		crm_report_failed(c, rc);
		goto done;
	}

	crm_report_period_append(&out, &mg.period);
	BSON_APPEND_ARRAY_BEGIN(&out, "items", &items);
	for (size_t i = 0; i < mg.owners.n; i++) {
		const uint8_t *key = order[i].key;
		const struct owner_stats *os = crm_report_rindex_val(&mg.owners, order[i].index);
		char idx[16], hex[25];
		bson_oid_t id;

		BSON_APPEND_DOCUMENT_BEGIN(
		    &items, crm_report_array_key((uint32_t)i, idx, sizeof(idx)), &item);
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
		crm_report_ledger_append(&item, "revenue", &mg.revenue, key);
		crm_report_ratio_append(&item, "conversion", os->won, os->won + os->lost);
		bson_append_document_end(&items, &item);
	}
	bson_append_array_end(&out, &items);
	tr_reply_json(c, 200, &out);
done:
	free(order);
	crm_report_rindex_free(&mg.owners);
	crm_report_ledger_free(&mg.revenue);
	bson_destroy(&leads_filter);
	bson_destroy(&deals_filter);
	bson_destroy(&out);
}
