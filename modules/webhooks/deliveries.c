/* A webhook's delivery log, its replays and the rotation of its secret.
 *
 * The log holds one record per attempt (deliver.c writes them): the
 * event, the webhook-id it went with, the attempt's number in its chain
 * (a chain is one job: the first attempt and its retries), when, the
 * outcome - delivered (2xx), pending (failed, retried at
 * next_attempt_at), failed (failed, no attempt left), skipped (the
 * webhook was paused) - the response code, the duration and the error.
 *
 * A replay is a new chain of the same event with the same webhook-id, so
 * a receiver that de-duplicates by webhook-id sees it once. */
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "events.h"
#include "json.h"
#include "resource.h"
#include "webhooks.h"

static const char *const delivery_sorts[] = {"-created_at", NULL};

/* The webhook named by the path's first id (404 for an unknown one or
 * another tenant's). */
static bool
load_webhook(struct tr_ctx *c, bson_t *hook)
{
	return tr_res_load(c, &webhooks_resource, tr_param(c, 0), hook);
}

void
webhooks_deliveries_list(struct tr_ctx *c)
{
	bson_t hook = BSON_INITIALIZER, filter = BSON_INITIALIZER;

	bson_destroy(&hook);
	if (load_webhook(c, &hook)) {
		BSON_APPEND_UTF8(&filter, "webhook_id", tr_param(c, 0));
		tr_list_reply(c, WEBHOOK_DELIVERIES, &filter, delivery_sorts);
	}
	bson_destroy(&hook);
	bson_destroy(&filter);
}

/* Enqueues a new chain delivering event_json (an event as the sink sends
 * it) to hook_id; an ordered webhook's joins the end of its lane, after
 * every delivery already waiting. */
static int
enqueue(struct tr_ctx *c, const char *hook_id, const bson_t *hook, const char *event_json,
	size_t len, char job_id[33])
{
	size_t plen = len + 64;
	char *payload = malloc(plen);
	int rc;

	if (!payload)
		return TR_ENOMEM;
	snprintf(payload, plen, "{\"webhook_id\":\"%s\",\"event\":%.*s}", hook_id, (int)len,
		 event_json);
	rc = tr_job_enqueue_lane(WEBHOOKS, webhooks_is_ordered(hook) ? hook_id : NULL,
				 c->req->principal.tenant_hex, payload, 0, job_id);
	free(payload);
	return rc;
}

void
webhooks_delivery_replay(struct tr_ctx *c)
{
	bson_t hook = BSON_INITIALIZER, rec = BSON_INITIALIZER, answer = BSON_INITIALIZER;
	const char *of, *event;
	char job_id[33];
	uint32_t len = 0;
	bson_iter_t it;
	int rc;

	bson_destroy(&hook);
	if (!load_webhook(c, &hook)) {
		bson_init(&rec);
		goto out;
	}
	bson_destroy(&rec);
	rc = tr_db_get(c->db, WEBHOOK_DELIVERIES, tr_param(c, 1), &rec);
	of = rc == TR_OK ? tr_doc_str(&rec, "webhook_id") : NULL;
	if (rc == TR_OK && (!of || strcmp(of, tr_param(c, 0)) != 0))
		rc = TR_ENOTFOUND; /* another webhook's delivery */
	if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
		goto out;
	}
	if (!bson_iter_init_find(&it, &rec, "_event") || !BSON_ITER_HOLDS_UTF8(&it)) {
		tr_problem(c, 409, "conflict", "this delivery's event was not kept");
		goto out;
	}
	event = bson_iter_utf8(&it, &len);
	rc = enqueue(c, tr_param(c, 0), &hook, event, len, job_id);
	if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
		goto out;
	}
	BSON_APPEND_UTF8(&answer, "event_id", tr_doc_str(&rec, "event_id"));
	BSON_APPEND_UTF8(&answer, "message_id", tr_doc_str(&rec, "message_id"));
	BSON_APPEND_UTF8(&answer, "chain_id", job_id);
	tr_reply_json(c, 202, &answer);
out:
	bson_destroy(&hook);
	bson_destroy(&rec);
	bson_destroy(&answer);
}

/* ---- replay since an event ---- */

struct since_walk {
	struct tr_ctx *c;
	const char *hook_id;
	const bson_t *hook;
	int replayed, read, rc;
};

static bool
on_topics(const bson_t *hook, const char *topic)
{
	bson_iter_t it, arr;

	if (!bson_iter_init_find(&it, hook, "topics") || !BSON_ITER_HOLDS_ARRAY(&it) ||
	    !bson_iter_recurse(&it, &arr))
		return false;
	while (bson_iter_next(&arr))
		if (BSON_ITER_HOLDS_UTF8(&arr) && strcmp(bson_iter_utf8(&arr, NULL), topic) == 0)
			return true;
	return false;
}

static int
replay_one(void *arg, const char *id, const char *topic, const char *json, size_t len)
{
	struct since_walk *w = arg;
	char job_id[33];
	(void)id;

	w->read++;
	if (!on_topics(w->hook, topic))
		return 0;
	w->rc = enqueue(w->c, w->hook_id, w->hook, json, len, job_id);
	if (w->rc != TR_OK)
		return 1;
	w->replayed++;
	return 0;
}

void
webhooks_replay_since(struct tr_ctx *c)
{
	static const char *const allowed[] = {"since", NULL};
	bson_t hook = BSON_INITIALIZER, answer = BSON_INITIALIZER;
	struct since_walk w = {c, tr_param(c, 0), &hook, 0, 0, TR_OK};
	const char *since = NULL;
	char last[64];
	struct tr_evid id;
	int max = tr_config_int("webhook_replay_max"), rc;

	bson_destroy(&hook);
	bson_init(&hook);
	if (!tr_body_only(c, allowed) || !tr_body_line(c, "since", 3, 41, true, &since))
		goto out;
	if (!tr_evid_parse(since, strlen(since), &id)) {
		tr_problem_field(c, "since", "must be an event id (<ms>-<seq>)");
		goto out;
	}
	bson_destroy(&hook);
	if (!load_webhook(c, &hook))
		goto out;
	rc = tr_events_after(c->req->principal.tenant_hex, since, max, replay_one, &w, last);
	if (rc == TR_OK)
		rc = w.rc;
	if (rc == TR_ENOTFOUND) {
		tr_problem(c, 410, "resync-required",
			   "events after this id are no longer kept; start from a later one");
		goto out;
	}
	if (rc == TR_EINVALID) {
		tr_problem_field(c, "since", "must be an event id (<ms>-<seq>)");
		goto out;
	}
	if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
		goto out;
	}
	BSON_APPEND_INT32(&answer, "replayed", w.replayed);
	if (last[0])
		BSON_APPEND_UTF8(&answer, "last_event_id", last);
	else
		BSON_APPEND_NULL(&answer, "last_event_id");
	BSON_APPEND_BOOL(&answer, "has_more", w.read >= max);
	tr_reply_json(c, 202, &answer);
out:
	bson_destroy(&hook);
	bson_destroy(&answer);
}

/* ---- rotation ---- */

void
webhooks_rotate_secret(struct tr_ctx *c)
{
	bson_t hook = BSON_INITIALIZER, set = BSON_INITIALIZER, out = BSON_INITIALIZER;
	bson_t answer = BSON_INITIALIZER;
	char secret[WEBHOOKS_SECRET_MAX];
	const char *old;
	int64_t until = tr_now_ms() + tr_config_int("webhook_secret_overlap_ms");
	int rc;

	bson_destroy(&hook);
	if (!load_webhook(c, &hook))
		goto out;
	old = tr_doc_str(&hook, "_secret");
	webhooks_secret_new(secret);
	BSON_APPEND_UTF8(&set, "_secret", secret);
	if (old) {
		BSON_APPEND_UTF8(&set, "_secret_prev", old);
		BSON_APPEND_DATE_TIME(&set, "_secret_prev_until", until);
	}
	BSON_APPEND_DATE_TIME(&set, "secret_rotated_at", tr_now_ms());
	rc = tr_db_update(c->db, WEBHOOKS, tr_param(c, 0), tr_doc_int(&hook, "version", 0), &set,
			  NULL, &out);
	if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
		goto out;
	}
	tr_render_resource(&out, &answer);
	BSON_APPEND_UTF8(&answer, "secret", secret);
	if (old) {
		char ts[32];
		tr_format_time(until, ts);
		BSON_APPEND_UTF8(&answer, "previous_secret_expires_at", ts);
	}
	c->resp->etag_version = tr_doc_int(&out, "version", 0);
	tr_reply_json(c, 200, &answer);
out:
	sodium_memzero(secret, sizeof(secret));
	bson_destroy(&hook);
	bson_destroy(&set);
	bson_destroy(&out);
	bson_destroy(&answer);
}
