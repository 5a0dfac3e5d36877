/* Per-tenant WebSocket numbers shared through Redis (ws_stats.h): every
 * ws_report_ms the loop thread counts this process's authenticated
 * connections by tenant and writes one field per tenant hash; tenants it
 * no longer serves lose their field. Worker threads read the hash back.
 *
 * Why Redis and not a question to each process: a tenant's sockets are
 * spread over every process with the ws role, and none of them knows the
 * others. A report a few seconds old is what an admin needs; asking every
 * process at request time would make one slow process slow the answer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kvconn.h"
#include "redis.h"
#include "util.h"
#include "ws_int.h"
#include "ws_stats.h"

/* One tenant's numbers in this process (loop thread). */
struct tenant_row {
	char tid[25];
	long long connections, queued, lag_max_ms;
};

/* The reporter's state: loop thread only. `reported` names the tenants of
 * the last report, sorted, so that a tenant whose last connection closed
 * loses this process's field. */
static struct {
	uv_timer_t timer;
	bool on;
	char proc[96];
	char (*reported)[25];
	size_t nreported;
} R;

static void
ignore_cb(void *arg, const redisReply *r, int status)
{
	(void)arg;
	(void)r;
	(void)status;
}

static int
by_tenant(const void *a, const void *b)
{
	const struct ws_conn *x = *(const struct ws_conn *const *)a;
	const struct ws_conn *y = *(const struct ws_conn *const *)b;
	return memcmp(x->principal.tenant_hex, y->principal.tenant_hex, 24);
}

static int
ttl_ms(void)
{
	return 3 * W.cfg->ws_report_ms;
}

static void
write_row(const struct tenant_row *row, long long now)
{
	char key[64], value[128], ttl[24];

	snprintf(key, sizeof(key), "t:{%s}:ws", row->tid);
	snprintf(value, sizeof(value), "%lld %lld %lld %lld", row->connections, row->queued,
		 row->lag_max_ms, now);
	snprintf(ttl, sizeof(ttl), "%d", ttl_ms());
	const char *hset[] = {"HSET", key, R.proc, value};
	const char *expire[] = {"PEXPIRE", key, ttl};
	tr_redis_command(ignore_cb, NULL, 4, hset, NULL);
	tr_redis_command(ignore_cb, NULL, 3, expire, NULL);
}

static void
forget_tenant(const char *tid)
{
	char key[64];

	snprintf(key, sizeof(key), "t:{%s}:ws", tid);
	const char *hdel[] = {"HDEL", key, R.proc};
	tr_redis_command(ignore_cb, NULL, 3, hdel, NULL);
}

/* Drops the fields of tenants reported last time but not in rows (both
 * sorted), then remembers rows as the last report. */
static void
forget_gone(const struct tenant_row *rows, size_t nrows)
{
	size_t i = 0, k = 0;
	char(*now)[25] = nrows ? malloc(nrows * sizeof(*now)) : NULL;

	while (i < R.nreported) {
		int cmp = k < nrows ? memcmp(R.reported[i], rows[k].tid, 24) : -1;
		if (cmp < 0)
			forget_tenant(R.reported[i++]);
		else if (cmp > 0)
			k++;
		else
			i++, k++;
	}
	free(R.reported);
	R.reported = now;
	R.nreported = now ? nrows : 0;
	for (size_t j = 0; j < R.nreported; j++)
		memcpy(R.reported[j], rows[j].tid, 25);
}

static void
report_cb(uv_timer_t *t)
{
	struct ws_conn **conns = NULL;
	struct tenant_row *rows = NULL;
	size_t n = 0, nrows = 0;
	long long now = (long long)tr_now_ms();
	(void)t;

	if (!tr_redis_up())
		return; /* the next tick writes; reports older than the ttl are ignored */
	if (W.count > 0) {
		conns = malloc((size_t)W.count * sizeof(*conns));
		rows = malloc((size_t)W.count * sizeof(*rows));
		if (!conns || !rows)
			goto out;
	}
	for (struct ws_conn *c = W.head; c && n < (size_t)W.count; c = c->next)
		if (c->state == WS_READY && c->wsi)
			conns[n++] = c;
	if (n > 1)
		qsort(conns, n, sizeof(*conns), by_tenant);
	for (size_t i = 0; i < n; i++) {
		struct ws_conn *c = conns[i];
		if (nrows == 0 || memcmp(rows[nrows - 1].tid, c->principal.tenant_hex, 24) != 0) {
			struct tenant_row *row = &rows[nrows++];
			memcpy(row->tid, c->principal.tenant_hex, 24);
			row->tid[24] = '\0';
			row->connections = row->queued = 0;
			row->lag_max_ms = -1;
		}
		struct tenant_row *row = &rows[nrows - 1];
		row->connections++;
		row->queued += c->q.len;
		if (c->lag_max_ms > row->lag_max_ms)
			row->lag_max_ms = c->lag_max_ms;
		c->lag_max_ms = -1;
	}
	for (size_t i = 0; i < nrows; i++)
		write_row(&rows[i], now);
	forget_gone(rows, nrows);
out:
	free(conns);
	free(rows);
}

void
tr_ws_report_start(void)
{
	char host[64];

	if (R.on)
		return;
	if (gethostname(host, sizeof(host)) != 0)
		snprintf(host, sizeof(host), "host");
	host[sizeof(host) - 1] = '\0';
	snprintf(R.proc, sizeof(R.proc), "%s:%d", host, (int)getpid());
	uv_timer_init(W.loop, &R.timer);
	uv_unref((uv_handle_t *)&R.timer);
	uv_timer_start(&R.timer, report_cb, (uint64_t)W.cfg->ws_report_ms,
		       (uint64_t)W.cfg->ws_report_ms);
	R.on = true;
}

/* Shutdown: this process's fields go (best effort: a report left behind is
 * ignored once older than the ttl). */
void
tr_ws_report_stop(void)
{
	if (!R.on)
		return;
	uv_timer_stop(&R.timer);
	uv_close((uv_handle_t *)&R.timer, NULL);
	R.on = false;
	forget_gone(NULL, 0);
}

/* ---- the reader (worker threads) ---- */

int
tr_ws_tenant_stats(const char *tenant_hex, struct tr_ws_tenant_stats *out)
{
	char key[64];
	long long now = (long long)tr_now_ms();
	int ttl = 3 * tr_cfg->ws_report_ms;
	redisReply *r;

	memset(out, 0, sizeof(*out));
	out->lag_max_ms = -1;
	out->report_every_ms = tr_cfg->ws_report_ms;
	snprintf(key, sizeof(key), "t:{%s}:ws", tenant_hex);
	const char *argv[] = {"HGETALL", key};
	r = tr_kv_command(2, argv, NULL);
	if (!r)
		return TR_EUNAVAILABLE;
	for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2) {
		const redisReply *v = r->element[i + 1];
		long long conns, queued, lag, at;
		if (v->type != REDIS_REPLY_STRING ||
		    sscanf(v->str, "%lld %lld %lld %lld", &conns, &queued, &lag, &at) != 4 ||
		    now - at > ttl)
			continue;
		out->processes++;
		out->connections += conns;
		out->queued_frames += queued;
		if (lag > out->lag_max_ms)
			out->lag_max_ms = lag;
	}
	freeReplyObject(r);
	return TR_OK;
}
