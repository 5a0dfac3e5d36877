/* The webhooks' part of GET /v1/observability: per endpoint, how its
 * deliveries went over the window, read from the delivery log (one record
 * per attempt, deliver.c).
 *
 * success_rate is delivered attempts over attempts that went out
 * (delivered, pending: failed and retried, failed: failed with no attempt
 * left); skipped attempts (the webhook was paused) went nowhere and are
 * counted apart. Lag is the time from the event (its id is the time Redis
 * gave it) to the end of the attempt that delivered it, so retries and a
 * busy queue show in it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "events.h"
#include "resource.h"
#include "webhooks.h"

/* Endpoints shown; a tenant has a handful. Past it the answer says
 * complete: false. */
#define OBSERVE_HOOKS_MAX 1000

struct hook_stats {
	char id[25];
	bool ordered; /* its deliveries wait in a lane (queued_in_order) */
	/* the webhook's fields shown (a pointer: bson_t needs an alignment
	 * calloc does not give) */
	bson_t *endpoint;
	long long delivered, pending, failed, skipped;
	int64_t last_success_ms, last_failure_ms;
	int64_t *lags; /* ms, one per delivered attempt */
	size_t nlags, cap;
};

struct observe_walk {
	struct hook_stats *hooks;
	size_t n;
	long long read, max;
	bool complete;
};

static const char *
utf8_of(const bson_t *doc, const char *key)
{
	bson_iter_t it;
	return bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_UTF8(&it)
		   ? bson_iter_utf8(&it, NULL)
		   : NULL;
}

static int
hook_cb(void *arg, const bson_t *hook)
{
	struct observe_walk *w = arg;
	const char *id = utf8_of(hook, "id");
	static const char *const shown[] = {"url", "active", "failing_since", "disabled_at"};
	bson_iter_t it;

	if (!id || strlen(id) != 24)
		return 0;
	if (w->n >= OBSERVE_HOOKS_MAX) {
		w->complete = false;
		return 0;
	}
	struct hook_stats *h = &w->hooks[w->n++];
	memcpy(h->id, id, 25);
	h->ordered = bson_iter_init_find(&it, hook, "ordered") && BSON_ITER_HOLDS_BOOL(&it) &&
		     bson_iter_bool(&it);
	h->endpoint = bson_new();
	BSON_APPEND_UTF8(h->endpoint, "id", id);
	for (size_t i = 0; i < sizeof(shown) / sizeof(shown[0]); i++) {
		if (bson_iter_init_find(&it, hook, shown[i]))
			bson_append_iter(h->endpoint, shown[i], -1, &it);
		else
			BSON_APPEND_NULL(h->endpoint, shown[i]);
	}
	return 0;
}

static struct hook_stats *
find_hook(struct observe_walk *w, const char *id)
{
	for (size_t i = 0; id && i < w->n; i++)
		if (strcmp(w->hooks[i].id, id) == 0)
			return &w->hooks[i];
	return NULL;
}

static int
attempt_cb(void *arg, const bson_t *attempt)
{
	struct observe_walk *w = arg;
	struct hook_stats *h = find_hook(w, utf8_of(attempt, "webhook_id"));
	const char *status = utf8_of(attempt, "status");
	const char *at = utf8_of(attempt, "attempted_at");
	const char *event_id = utf8_of(attempt, "event_id");
	int64_t at_ms = 0;
	struct tr_evid ev;
	bson_iter_t it;

	if (w->read >= w->max) {
		w->complete = false;
		return 1;
	}
	w->read++;
	if (!h || !status || !at || !tr_parse_time(at, &at_ms))
		return 0; /* a deleted webhook's attempts, or not an attempt */
	if (strcmp(status, "skipped") == 0) {
		h->skipped++;
		return 0;
	}
	if (strcmp(status, "delivered") != 0) {
		if (strcmp(status, "failed") == 0)
			h->failed++;
		else
			h->pending++;
		if (at_ms > h->last_failure_ms)
			h->last_failure_ms = at_ms;
		return 0;
	}
	h->delivered++;
	if (at_ms > h->last_success_ms)
		h->last_success_ms = at_ms;
	if (!event_id || !tr_evid_parse(event_id, strlen(event_id), &ev))
		return 0;
	int64_t done_ms = at_ms;
	if (bson_iter_init_find(&it, attempt, "duration_ms") && BSON_ITER_HOLDS_NUMBER(&it))
		done_ms += bson_iter_as_int64(&it);
	if (h->nlags == h->cap) {
		size_t cap = h->cap ? h->cap * 2 : 64;
		int64_t *lags = realloc(h->lags, cap * sizeof(*lags));
		if (!lags)
			return TR_ENOMEM;
		h->lags = lags;
		h->cap = cap;
	}
	h->lags[h->nlags++] = done_ms > (int64_t)ev.ms ? done_ms - (int64_t)ev.ms : 0;
	return 0;
}

static int
ascending(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return (x > y) - (x < y);
}

/* The nearest-rank percentile of sorted values (n > 0). */
static int64_t
percentile(const int64_t *sorted, size_t n, int pct)
{
	size_t rank = (n * (size_t)pct + 99) / 100;
	return sorted[rank ? rank - 1 : 0];
}

static void
append_time_or_null(bson_t *doc, const char *key, int64_t ms)
{
	char ts[32];

	if (ms <= 0) {
		BSON_APPEND_NULL(doc, key);
		return;
	}
	tr_format_time(ms, ts);
	BSON_APPEND_UTF8(doc, key, ts);
}

static void
append_endpoint(bson_t *endpoints, uint32_t index, struct hook_stats *h)
{
	bson_t doc, attempts, lag;
	char key[16];
	const char *k;
	long long sent = h->delivered + h->pending + h->failed;

	bson_uint32_to_string(index, &k, key, sizeof(key));
	bson_copy_to(h->endpoint, &doc);
	BSON_APPEND_DOCUMENT_BEGIN(&doc, "attempts", &attempts);
	BSON_APPEND_INT64(&attempts, "delivered", h->delivered);
	BSON_APPEND_INT64(&attempts, "pending", h->pending);
	BSON_APPEND_INT64(&attempts, "failed", h->failed);
	BSON_APPEND_INT64(&attempts, "skipped", h->skipped);
	bson_append_document_end(&doc, &attempts);
	if (sent)
		BSON_APPEND_DOUBLE(&doc, "success_rate", (double)h->delivered / (double)sent);
	else
		BSON_APPEND_NULL(&doc, "success_rate");
	if (h->nlags) {
		qsort(h->lags, h->nlags, sizeof(*h->lags), ascending);
		BSON_APPEND_DOCUMENT_BEGIN(&doc, "lag_ms", &lag);
		BSON_APPEND_INT64(&lag, "p50", percentile(h->lags, h->nlags, 50));
		BSON_APPEND_INT64(&lag, "p99", percentile(h->lags, h->nlags, 99));
		BSON_APPEND_INT64(&lag, "max", h->lags[h->nlags - 1]);
		bson_append_document_end(&doc, &lag);
	} else {
		BSON_APPEND_NULL(&doc, "lag_ms");
	}
	append_time_or_null(&doc, "last_success_at", h->last_success_ms);
	append_time_or_null(&doc, "last_failure_at", h->last_failure_ms);
	/* an ordered endpoint's deliveries queued in its lane, the one in
	 * flight or retrying first (null: not ordered, or Redis away) */
	long long queued = h->ordered ? tr_job_lane_length(WEBHOOKS, h->id) : -1;
	if (queued >= 0)
		BSON_APPEND_INT64(&doc, "queued_in_order", queued);
	else
		BSON_APPEND_NULL(&doc, "queued_in_order");
	BSON_APPEND_DOCUMENT(endpoints, k, &doc);
	bson_destroy(&doc);
}

int
webhooks_observe(struct tr_db *db, int64_t since_ms, bson_t *out)
{
	struct observe_walk w = {.max = tr_config_int("webhook_observe_max"), .complete = true};
	bson_t none = BSON_INITIALIZER, window = BSON_INITIALIZER, range, section, endpoints;
	int rc;

	w.hooks = calloc(OBSERVE_HOOKS_MAX, sizeof(*w.hooks));
	if (!w.hooks) {
		rc = TR_ENOMEM;
		goto out;
	}
	rc = tr_db_each(db, WEBHOOKS, &none, hook_cb, &w);
	if (rc != TR_OK)
		goto out;
	BSON_APPEND_DOCUMENT_BEGIN(&window, "created_at", &range);
	BSON_APPEND_DATE_TIME(&range, "$gte", since_ms);
	bson_append_document_end(&window, &range);
	if (w.n) {
		rc = tr_db_each(db, WEBHOOK_DELIVERIES, &window, attempt_cb, &w);
		if (rc == 1)
			rc = TR_OK; /* stopped at webhook_observe_max */
		if (rc != TR_OK)
			goto out;
	}
	BSON_APPEND_DOCUMENT_BEGIN(out, "webhooks", &section);
	BSON_APPEND_INT64(&section, "attempts_read", w.read);
	BSON_APPEND_BOOL(&section, "complete", w.complete);
	BSON_APPEND_ARRAY_BEGIN(&section, "endpoints", &endpoints);
	for (size_t i = 0; i < w.n; i++)
		append_endpoint(&endpoints, (uint32_t)i, &w.hooks[i]);
	bson_append_array_end(&section, &endpoints);
	bson_append_document_end(out, &section);
out:
	for (size_t i = 0; w.hooks && i < w.n; i++) {
		bson_destroy(w.hooks[i].endpoint);
		free(w.hooks[i].lags);
	}
	free(w.hooks);
	bson_destroy(&none);
	bson_destroy(&window);
	return rc;
}
