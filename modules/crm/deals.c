/* Deals: a client's opportunity moving through a pipeline's stages (each
 * move kept with who and when), won or lost with a reason. Users with
 * crm.deals.import may create closed deals with a past closed_at (history
 * moved from another CRM). */
#include <stdio.h>
#include <string.h>

#include "crm.h"
#include "db.h"
#include "json.h"
#include "perm.h"

#define DEALS "deals"

static const char *const statuses[] = {"open", "won", "lost", NULL};
static const char *const sorts[] = {"-created_at",    "created_at", "-updated_at",
				    "expected_close", "title",	    NULL};

static const struct tr_field fields[] = {
    {"client_id", TR_K_REF, TR_F_REQUIRED | TR_F_FILTER | TR_F_NARROW, 0, 0, NULL, "clients"},
    {"title", TR_K_LINE, TR_F_REQUIRED, 1, 200, NULL, NULL},
    {"amount", TR_K_MONEY, TR_F_NULLABLE, 0, 1000000000000000LL, NULL, NULL},
    {"pipeline_id", TR_K_REF, TR_F_FIXED | TR_F_FILTER, 0, 0, NULL, "pipelines"},
    {"stage", TR_K_LINE, TR_F_FIXED | TR_F_FILTER, 1, 40, NULL, NULL},
    {"owner_id", TR_K_REF, TR_F_FILTER, 0, 0, NULL, "users"},
    {"expected_close", TR_K_TIME, TR_F_NULLABLE, 0, 0, NULL, NULL},
    {"status", TR_K_ENUM, TR_F_FIXED | TR_F_FILTER, 0, 0, statuses, NULL},
    {"lost_reason", TR_K_TEXT, TR_F_FIXED, 1, 1000, NULL, NULL},
    {"closed_at", TR_K_TIME, TR_F_FIXED, 0, 0, NULL, NULL},
    {"custom", TR_K_CUSTOM, 0, 0, 0, NULL, NULL},
    {"lead_id", TR_K_REF, TR_F_SERVER | TR_F_FILTER | TR_F_NARROW, 0, 0, NULL, "leads"},
    {"stage_history", TR_K_ARRAY, TR_F_SERVER, 0, 0, NULL, NULL},
    {NULL, 0, 0, 0, 0, NULL, NULL},
};

bool crm_pipeline_has_stage(const bson_t *pipeline, const char *stage);

static void
history_entry(const bson_oid_t *by, bson_t *arr, const char *key, const char *stage,
	      const char *from)
{
	bson_t e;

	BSON_APPEND_DOCUMENT_BEGIN(arr, key, &e);
	BSON_APPEND_UTF8(&e, "stage", stage);
	if (from)
		BSON_APPEND_UTF8(&e, "from", from);
	else
		BSON_APPEND_NULL(&e, "from");
	BSON_APPEND_DATE_TIME(&e, "at", tr_now_ms());
	if (by)
		BSON_APPEND_OID(&e, "by", by);
	else
		BSON_APPEND_NULL(&e, "by");
	bson_append_document_end(arr, &e);
}

/* The caller, for a stage history entry ("by"), or NULL for a key. */
static const bson_oid_t *
caller(struct tr_ctx *c)
{
	return c->req->principal.user_hex[0] ? &c->req->principal.user_id : NULL;
}

void
crm_deal_history_start(const bson_oid_t *by, bson_t *deal, const char *stage)
{
	bson_t arr;

	BSON_APPEND_ARRAY_BEGIN(deal, "stage_history", &arr);
	history_entry(by, &arr, "0", stage, NULL);
	bson_append_array_end(deal, &arr);
}

static bool
deal_hook(struct tr_ctx *c, const struct tr_resource *e, bson_t *set, const bson_t *old)
{
	bson_t pipeline = BSON_INITIALIZER;
	bson_oid_t pid;
	const char *stage, *status;
	bool ok = false, own;
	int rc;
	(void)e;

	if (old)
		return true; /* stage, status and closing have their own actions */
	/* copies: set moves as fields are added to it */
	status = tr_doc_str(set, "status");
	status = status ? tr_arena_strdup(c->req->arena, status) : NULL;
	if (!status) {
		status = "open";
		BSON_APPEND_UTF8(set, "status", status);
	}
	if (strcmp(status, "open") != 0) {
		int64_t closed;
		bson_iter_t it;
		if (!tr_permission_check(c->req->principal.perms, "crm.deals.import", &own)) {
			tr_problem(c, 403, "forbidden",
				   "only crm.deals.import may create a deal already won or lost");
			goto out;
		}
		if (!bson_iter_init_find(&it, set, "closed_at")) {
			tr_problem_field(c, "closed_at", "is required for an imported closed deal");
			goto out;
		}
		closed = bson_iter_date_time(&it);
		if (closed > tr_now_ms()) {
			tr_problem_field(c, "closed_at", "must not be in the future");
			goto out;
		}
		if (strcmp(status, "lost") == 0 && !bson_has_field(set, "lost_reason")) {
			tr_problem_field(c, "lost_reason", "is required for a lost deal");
			goto out;
		}
	} else if (bson_has_field(set, "closed_at") || bson_has_field(set, "lost_reason")) {
		tr_problem_field(c, "closed_at",
				 "only a won or lost deal has closed_at or lost_reason");
		goto out;
	}
	if (tr_doc_oid(set, "pipeline_id", &pid)) {
		char hex[25];
		bson_oid_to_string(&pid, hex);
		rc = tr_db_get(c->db, "pipelines", hex, &pipeline);
	} else {
		bson_destroy(&pipeline);
		rc = crm_default_pipeline(c, &pipeline);
		if (rc == TR_OK && tr_doc_oid(&pipeline, "_id", &pid))
			BSON_APPEND_OID(set, "pipeline_id", &pid);
	}
	if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
		goto out;
	}
	stage = tr_doc_str(set, "stage");
	stage = stage ? tr_arena_strdup(c->req->arena, stage) : NULL;
	if (!stage) {
		bson_iter_t it, arr, f;
		if (bson_iter_init_find(&it, &pipeline, "stages") && bson_iter_recurse(&it, &arr) &&
		    bson_iter_next(&arr) && bson_iter_recurse(&arr, &f) &&
		    bson_iter_find(&f, "key"))
			stage = tr_arena_strdup(c->req->arena, bson_iter_utf8(&f, NULL));
		if (!stage) {
			tr_problem(c, 409, "conflict", "the pipeline has no stages");
			goto out;
		}
		BSON_APPEND_UTF8(set, "stage", stage);
	} else if (!crm_pipeline_has_stage(&pipeline, stage)) {
		tr_problem_field(c, "stage", "is not a stage of the deal's pipeline");
		goto out;
	}
	crm_deal_history_start(caller(c), set, stage);
	crm_deal_closed_day(set);
	ok = true;
out:
	bson_destroy(&pipeline);
	return ok;
}

/* A deal is open until won or lost, each by its action; a closed deal may
 * be created as such only by an import (crm.deals.import, deal_hook). */
static const struct tr_transition deal_moves[] = {
    {NULL, "open", NULL, NULL},
    {NULL, "won", NULL, "closed_at"},
    {NULL, "lost", NULL, "lost_reason"},
    {"open", "won", "won", NULL},
    {"open", "lost", "lost", "lost_reason"},
    {NULL, NULL, NULL, NULL},
};
static const struct tr_states deal_states = {"status", deal_moves};

const struct tr_resource crm_deals = {
    .name = "deal",
    .coll = DEALS,
    .path = "/v1/crm/deals",
    .read = "crm.deals.read",
    .write = "crm.deals.write",
    .about = "A client's opportunity moving through a pipeline's stages; closed deals may be "
	     "created with crm.deals.import.",
    .states = &deal_states,
    .topic = "crm.deals",
    .event = "crm.deal",
    .owner_field = "owner_id",
    .custom = "deal",
    .custom_defs = CRM_FIELDS,
    .fields = fields,
    .sorts = sorts,
    .hook = deal_hook,
    .deletable = true,
};

/* An open deal of the caller's, or the problem. */
static bool
open_deal(struct tr_ctx *c, bson_t *deal)
{
	const char *status;

	if (!tr_res_load(c, &crm_deals, tr_param(c, 0), deal))
		return false;
	status = tr_doc_str(deal, "status");
	if (!status || strcmp(status, "open") != 0) {
		tr_problem(c, 409, "conflict", "the deal is closed (won or lost)");
		return false;
	}
	return true;
}

/* POST /v1/crm/deals/{id}/stage {"stage"} */
void
crm_deals_stage(struct tr_ctx *c)
{
	static const char *const allowed[] = {"stage", NULL};
	bson_t deal = BSON_INITIALIZER, pipeline = BSON_INITIALIZER, set = BSON_INITIALIZER, arr;
	const char *stage, *from;
	bson_oid_t pid;
	bson_iter_t it, hist;
	char hex[25];
	int n = 0;

	bool ok = tr_body_only(c, allowed);
	ok &= tr_body_line(c, "stage", 1, 40, true, &stage);
	if (!ok)
		goto out;
	bson_destroy(&deal);
	if (!open_deal(c, &deal))
		goto out;
	from = tr_doc_str(&deal, "stage");
	if (from && strcmp(from, stage) == 0) {
		tr_problem(c, 409, "conflict", "the deal is in this stage already");
		goto out;
	}
	tr_doc_oid(&deal, "pipeline_id", &pid);
	bson_oid_to_string(&pid, hex);
	bson_destroy(&pipeline);
	if (tr_db_get(c->db, "pipelines", hex, &pipeline) != TR_OK ||
	    !crm_pipeline_has_stage(&pipeline, stage)) {
		tr_problem_field(c, "stage", "is not a stage of the deal's pipeline");
		goto out;
	}
	BSON_APPEND_UTF8(&set, "stage", stage);
	BSON_APPEND_ARRAY_BEGIN(&set, "stage_history", &arr);
	if (bson_iter_init_find(&it, &deal, "stage_history") && bson_iter_recurse(&it, &hist))
		while (bson_iter_next(&hist)) {
			char key[16];
			const char *k;
			bson_uint32_to_string((uint32_t)n++, &k, key, sizeof(key));
			bson_append_iter(&arr, k, -1, &hist);
		}
	char key[16];
	const char *k;
	bson_uint32_to_string((uint32_t)n, &k, key, sizeof(key));
	history_entry(caller(c), &arr, k, stage, from);
	bson_append_array_end(&set, &arr);
	tr_res_save(c, &crm_deals, tr_param(c, 0), &deal, &set, "crm.deal.stage_changed");
out:
	bson_destroy(&deal);
	bson_destroy(&pipeline);
	bson_destroy(&set);
}

static void
close_deal(struct tr_ctx *c, bool won)
{
	static const char *const none[] = {NULL};
	static const char *const reason_only[] = {"reason", NULL};
	bson_t deal = BSON_INITIALIZER, set = BSON_INITIALIZER;
	const char *reason = NULL;

	bool ok = tr_body_only(c, won ? none : reason_only);
	if (!won)
		ok &= tr_body_string(c, "reason", 1, 1000, true, &reason);
	if (!ok)
		goto out;
	bson_destroy(&deal);
	if (!open_deal(c, &deal))
		goto out;
	BSON_APPEND_UTF8(&set, "status", won ? "won" : "lost");
	BSON_APPEND_DATE_TIME(&set, "closed_at", tr_now_ms());
	if (reason)
		BSON_APPEND_UTF8(&set, "lost_reason", reason);
	if (!tr_res_move_ok(c, &crm_deals, "open", won ? "won" : "lost", won ? "won" : "lost", &set,
			    &deal))
		goto out;
	crm_deal_closed_day(&set);
	tr_res_save(c, &crm_deals, tr_param(c, 0), &deal, &set,
		    won ? "crm.deal.won" : "crm.deal.lost");
out:
	bson_destroy(&deal);
	bson_destroy(&set);
}

void
crm_deals_won(struct tr_ctx *c)
{
	close_deal(c, true);
}

void
crm_deals_lost(struct tr_ctx *c)
{
	close_deal(c, false);
}
