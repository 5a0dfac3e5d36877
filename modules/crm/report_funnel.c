/* The CRM funnel report (reports.h for what the reports share).
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
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "json.h"
#include "reports.h"
#include "util.h"

/* Stages of a pipeline the funnel follows (pipelines.c allows 30). */
#define MAX_FUNNEL_STAGES 64

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

	if (!crm_report_rec_oid(deal, "pipeline_id", &pid) ||
	    !bson_oid_equal(&pid, &f->pipeline_id) ||
	    !crm_report_rec_time(deal, "created_at", &created) ||
	    !crm_report_in_period(&f->period, created) || !crm_report_own_ok(f->c, deal))
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
	bool open = crm_report_status_is(deal, "open");
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
	} else if (crm_report_status_is(deal, "won")) {
		f->won++;
		if (crm_report_rec_money(deal, "amount", &amount, currency))
			return crm_report_ledger_add(&f->amounts, won_group, currency, amount);
	} else if (crm_report_status_is(deal, "lost")) {
		f->lost++;
		if (crm_report_rec_money(deal, "amount", &amount, currency))
			return crm_report_ledger_add(&f->amounts, lost_group, currency, amount);
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
	if (!crm_report_plan_period(p, &f->period)) {
		free(p);
		return TR_ELIMIT;
	}
	bson_oid_to_string(&f->pipeline_id, hex);
	snprintf(family, sizeof(family), "crm.f/%s", hex);
	rc = crm_report_spans_sum(c, family, p, &t);
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
		bool won = (cur = crm_report_after_prefix(t.names[i], "wq:")) != NULL;
		if (!won && !(cur = crm_report_after_prefix(t.names[i], "lq:")))
			continue;
		if (t.values[i] <= 0 || strlen(cur) != 3)
			continue;
		snprintf(name, sizeof(name), "%sa:%s", won ? "w" : "l", cur);
		rc = crm_report_ledger_add(&f->amounts, won ? won_group : lost_group, cur,
					   counters_get(&t, name));
	}
	if (rc == TR_OK)
		rc = crm_report_scan_days(c, p, "deals", filter, "_cd", funnel_visit, f);
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
		crm_report_failed(c, TR_ENOMEM);
		goto done;
	}
	f->c = c;
	crm_report_ledger_init(&f->amounts);
	ok = crm_report_period_read(c, false, &f->period);
	if (tr_query(c, "pipeline_id") && !tr_is_object_id(tr_query(c, "pipeline_id"))) {
		crm_report_bad_param(c, "pipeline_id", "must be an id");
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
		crm_report_period_filter(&filter, "created_at", &f->period);
		crm_report_own_filter(c, &filter);
		rc = crm_report_walk_all(c, "deals", &filter, funnel_visit, f);
	} else {
		rc = funnel_totals(c, f, &filter);
	}
	if (rc == TR_OK)
		rc = crm_report_ledger_close(&f->amounts);
	if (rc != TR_OK) {
		crm_report_failed(c, rc);
		goto done;
	}

	char hex[25];
	bson_oid_to_string(&f->pipeline_id, hex);
	BSON_APPEND_UTF8(&out, "pipeline_id", hex);
	if (tr_doc_str(&pipeline, "name"))
		BSON_APPEND_UTF8(&out, "pipeline_name", tr_doc_str(&pipeline, "name"));
	else
		BSON_APPEND_NULL(&out, "pipeline_name");
	crm_report_period_append(&out, &f->period);
	BSON_APPEND_ARRAY_BEGIN(&out, "stages", &stages);
	for (int i = 0; i < f->nstages; i++) {
		char idx[16];
		BSON_APPEND_DOCUMENT_BEGIN(
		    &stages, crm_report_array_key((uint32_t)i, idx, sizeof(idx)), &stage);
		BSON_APPEND_UTF8(&stage, "key", f->keys[i]);
		if (f->names[i])
			BSON_APPEND_UTF8(&stage, "name", f->names[i]);
		else
			BSON_APPEND_NULL(&stage, "name");
		BSON_APPEND_INT64(&stage, "entered", f->entered[i]);
		BSON_APPEND_INT64(&stage, "still_there", f->still_there[i]);
		BSON_APPEND_INT64(&stage, "moved_on", f->moved_on[i]);
		if (i + 1 < f->nstages)
			crm_report_ratio_append(&stage, "conversion_to_next", f->entered[i + 1],
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
	crm_report_ledger_append(&totals, "won_amounts", &f->amounts, won_group);
	crm_report_ledger_append(&totals, "lost_amounts", &f->amounts, lost_group);
	bson_append_document_end(&out, &totals);
	tr_reply_json(c, 200, &out);
done:
	if (f)
		crm_report_ledger_free(&f->amounts);
	bson_destroy(&pipeline);
	bson_destroy(&filter);
	bson_destroy(&out);
}
