/* GET /v1/observability: the caller's tenant's operational numbers, what
 * an integrator asks before opening a support ticket - how its webhooks
 * deliver, how many of its jobs wait or died, its WebSocket connections,
 * and how far back its event stream reaches. Every number is the tenant's
 * own: the platform counts by the tenant of the credentials, and the
 * modules' parts (tr_module.observe) read through the tenant-scoped data
 * API. Each section says the scope and freshness of its numbers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "events.h"
#include "jobs.h"
#include "system.h"
#include "util.h"
#include "ws_stats.h"

#define WINDOW_HOURS_DEFAULT 24
#define WINDOW_HOURS_MAX 168
#define QUEUES_MAX 16

static const int64_t hour_ms = 3600000;

/* ?window_hours: 1..168, 24 when absent. False after setting a 422. */
static bool
window_hours(struct tr_ctx *c, int *hours)
{
	const char *v = tr_query(c, "window_hours");
	size_t len = v ? strlen(v) : 0;
	long n;

	*hours = WINDOW_HOURS_DEFAULT;
	if (!v)
		return true;
	/* digits only: strtol alone would take " 5" and "+5" */
	n = len && len <= 3 && strspn(v, "0123456789") == len ? strtol(v, NULL, 10) : 0;
	if (n < 1 || n > WINDOW_HOURS_MAX) {
		tr_problem_field(c, "window_hours", "must be a whole number of hours, 1 to 168");
		return false;
	}
	*hours = (int)n;
	return true;
}

static void
append_time(bson_t *doc, const char *key, int64_t ms)
{
	char ts[32];

	tr_format_time(ms, ts);
	BSON_APPEND_UTF8(doc, key, ts);
}

/* "jobs": the tenant's jobs on every queue. */
static int
append_jobs(struct tr_ctx *c, bson_t *out)
{
	struct tr_job_counts counts[QUEUES_MAX];
	long long dead = 0, ready = 0, delayed = 0;
	int n = 0, rc;
	bool exact = true;
	bson_t jobs, queues, q;
	char key[16];
	const char *k;

	rc = tr_jobs_tenant_counts(c->req->principal.tenant_hex,
				   tr_config_int("observability_scan_max"), counts, QUEUES_MAX, &n,
				   &dead);
	if (rc != TR_OK)
		return rc;
	BSON_APPEND_DOCUMENT_BEGIN(out, "jobs", &jobs);
	BSON_APPEND_ARRAY_BEGIN(&jobs, "queues", &queues);
	for (int i = 0; i < n; i++) {
		bson_uint32_to_string((uint32_t)i, &k, key, sizeof(key));
		BSON_APPEND_DOCUMENT_BEGIN(&queues, k, &q);
		BSON_APPEND_UTF8(&q, "queue", counts[i].queue);
		BSON_APPEND_INT64(&q, "ready", counts[i].ready);
		BSON_APPEND_INT64(&q, "delayed", counts[i].delayed);
		BSON_APPEND_BOOL(&q, "exact", counts[i].exact);
		bson_append_document_end(&queues, &q);
		ready += counts[i].ready;
		delayed += counts[i].delayed;
		exact = exact && counts[i].exact;
	}
	bson_append_array_end(&jobs, &queues);
	BSON_APPEND_INT64(&jobs, "ready", ready);
	BSON_APPEND_INT64(&jobs, "delayed", delayed);
	BSON_APPEND_INT64(&jobs, "depth", ready + delayed);
	BSON_APPEND_INT64(&jobs, "dead", dead);
	BSON_APPEND_BOOL(&jobs, "exact", exact);
	bson_append_document_end(out, &jobs);
	return TR_OK;
}

/* "websocket": the tenant's sockets on every process, as last reported. */
static int
append_websocket(struct tr_ctx *c, bson_t *out)
{
	struct tr_ws_tenant_stats ws;
	bson_t doc;
	int rc = tr_ws_tenant_stats(c->req->principal.tenant_hex, &ws);

	if (rc != TR_OK)
		return rc;
	BSON_APPEND_DOCUMENT_BEGIN(out, "websocket", &doc);
	BSON_APPEND_UTF8(&doc, "scope", "cluster");
	BSON_APPEND_INT64(&doc, "connections", ws.connections);
	BSON_APPEND_INT64(&doc, "queued_frames", ws.queued_frames);
	if (ws.lag_max_ms >= 0)
		BSON_APPEND_INT64(&doc, "lag_max_ms", ws.lag_max_ms);
	else
		BSON_APPEND_NULL(&doc, "lag_max_ms");
	BSON_APPEND_INT32(&doc, "processes", ws.processes);
	BSON_APPEND_INT32(&doc, "report_every_ms", ws.report_every_ms);
	bson_append_document_end(out, &doc);
	return TR_OK;
}

static void
append_id_or_null(bson_t *doc, const char *key, const char *id)
{
	if (id[0])
		BSON_APPEND_UTF8(doc, key, id);
	else
		BSON_APPEND_NULL(doc, key);
}

/* "events": what the tenant's stream holds (the changes feed, WebSocket
 * resume and webhook replays reach back this far) and what keeps it. */
static int
append_events(struct tr_ctx *c, bson_t *out, int64_t now)
{
	struct tr_stream_stats s;
	struct tr_evid oldest;
	bson_t doc;
	int rc = tr_events_stream_stats(c->req->principal.tenant_hex, &s);

	if (rc != TR_OK)
		return rc;
	BSON_APPEND_DOCUMENT_BEGIN(out, "events", &doc);
	append_id_or_null(&doc, "newest_id", s.newest);
	append_id_or_null(&doc, "oldest_id", s.oldest);
	if (s.oldest[0] && tr_evid_parse(s.oldest, strlen(s.oldest), &oldest)) {
		int64_t at = (int64_t)oldest.ms;
		append_time(&doc, "oldest_at", at);
		BSON_APPEND_INT64(&doc, "oldest_age_s", now > at ? (now - at) / 1000 : 0);
	} else {
		BSON_APPEND_NULL(&doc, "oldest_at");
		BSON_APPEND_NULL(&doc, "oldest_age_s");
	}
	BSON_APPEND_INT64(&doc, "entries", s.length);
	if (s.added >= 0)
		BSON_APPEND_INT64(&doc, "entries_added", s.added);
	else
		BSON_APPEND_NULL(&doc, "entries_added");
	BSON_APPEND_BOOL(&doc, "trimmed", s.trimmed);
	BSON_APPEND_INT32(&doc, "max_len", s.max_len);
	BSON_APPEND_INT32(&doc, "max_age_s", s.max_age_s);
	bson_append_document_end(out, &doc);
	return TR_OK;
}

void
observability_get(struct tr_ctx *c)
{
	bson_t doc = BSON_INITIALIZER, window;
	int64_t now = tr_now_ms();
	int hours, rc = TR_OK;

	if (!window_hours(c, &hours))
		goto out;
	BSON_APPEND_UTF8(&doc, "tenant_id", c->req->principal.tenant_hex);
	append_time(&doc, "generated_at", now);
	BSON_APPEND_DOCUMENT_BEGIN(&doc, "window", &window);
	BSON_APPEND_INT32(&window, "hours", hours);
	append_time(&window, "from", now - hours * hour_ms);
	bson_append_document_end(&doc, &window);
	for (size_t m = 0; rc == TR_OK && m < tr_nmodules; m++)
		if (tr_modules[m]->observe)
			rc = tr_modules[m]->observe(c->db, now - hours * hour_ms, &doc);
	if (rc == TR_OK)
		rc = append_jobs(c, &doc);
	if (rc == TR_OK)
		rc = append_websocket(c, &doc);
	if (rc == TR_OK)
		rc = append_events(c, &doc, now);
	if (rc != TR_OK)
		tr_problem_from_err(c, rc);
	else
		tr_reply_json(c, 200, &doc);
out:
	bson_destroy(&doc);
}
