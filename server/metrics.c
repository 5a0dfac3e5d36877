#include "metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "router.h"

static const double bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
				0.1,	0.25,  0.5,    1,     2.5,  5};
#define NB (sizeof(bounds) / sizeof(bounds[0]))

struct histogram {
	unsigned long long buckets[NB]; /* non-cumulative; summed when rendered */
	unsigned long long count;
	double sum;
};

struct status_count {
	enum tr_method method;
	int status;
	unsigned long long count;
};

struct route_stats {
	struct histogram latency;
	struct status_count *counts;
	int ncounts, cap;
};

static struct {
	struct route_stats *routes; /* nroutes + 1: the last is "no route" */
	int nroutes;
	struct histogram db, redis;
	unsigned long long db_errors, redis_errors;
	long long connections;
} M;

int
tr_metrics_init(int nroutes)
{
	M.routes = calloc((size_t)nroutes + 1, sizeof(*M.routes));
	M.nroutes = nroutes;
	return M.routes ? 0 : -1;
}

void
tr_metrics_free(void)
{
	for (int i = 0; i <= M.nroutes && M.routes; i++)
		free(M.routes[i].counts);
	free(M.routes);
	memset(&M, 0, sizeof(M));
}

static void
observe(struct histogram *h, double v)
{
	size_t i = 0;

	while (i < NB && v > bounds[i])
		i++;
	if (i < NB)
		h->buckets[i]++;
	h->count++;
	h->sum += v;
}

void
tr_metrics_http_observe(int route_index, enum tr_method method, int status, double seconds)
{
	struct route_stats *rs;

	if (!M.routes)
		return;
	rs = &M.routes[route_index < 0 ? M.nroutes : route_index];
	observe(&rs->latency, seconds);
	for (int i = 0; i < rs->ncounts; i++) {
		if (rs->counts[i].method == method && rs->counts[i].status == status) {
			rs->counts[i].count++;
			return;
		}
	}
	if (rs->ncounts == rs->cap) {
		int cap = rs->cap ? rs->cap * 2 : 4;
		struct status_count *n = realloc(rs->counts, (size_t)cap * sizeof(*n));
		if (!n)
			return;
		rs->counts = n;
		rs->cap = cap;
	}
	rs->counts[rs->ncounts++] = (struct status_count){method, status, 1};
}

void
tr_metrics_db_observe(double seconds, bool ok)
{
	observe(&M.db, seconds);
	M.db_errors += !ok;
}

void
tr_metrics_redis_observe(double seconds, bool ok)
{
	observe(&M.redis, seconds);
	M.redis_errors += !ok;
}

void
tr_metrics_connections(int delta)
{
	M.connections += delta;
}

struct out {
	char *buf;
	size_t len, cap;
};

static void __attribute__((format(printf, 2, 3))) put(struct out *o, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
		va_end(ap);
		if (n >= 0 && (size_t)n < o->cap - o->len)
			break;
		size_t cap = o->cap * 2 + (size_t)n;
		char *b = realloc(o->buf, cap);
		if (!b)
			return;
		o->buf = b;
		o->cap = cap;
	}
	o->len += (size_t)n;
}

static void
put_histogram(struct out *o, const char *name, const char *labels, const struct histogram *h)
{
	unsigned long long cum = 0;
	const char *sep = labels[0] ? "," : "";

	for (size_t i = 0; i < NB; i++) {
		cum += h->buckets[i];
		put(o, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep, bounds[i], cum);
	}
	put(o, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep, h->count);
	put(o, "%s_sum{%s} %.6f\n", name, labels, h->sum);
	put(o, "%s_count{%s} %llu\n", name, labels, h->count);
}

#define MAX_SOURCES 16
static tr_metrics_source sources[MAX_SOURCES];
static int nsources;

void
tr_metrics_add_source(tr_metrics_source fn)
{
	if (nsources < MAX_SOURCES)
		sources[nsources++] = fn;
}

char *
tr_metrics_render(size_t *len)
{
	struct out o = {malloc(8192), 0, 8192};
	char labels[512];

	if (!o.buf || !M.routes) {
		free(o.buf);
		return NULL;
	}
	o.buf[0] = '\0';
	put(&o, "# HELP trellis_http_requests_total HTTP requests by route, method and status.\n"
		"# TYPE trellis_http_requests_total counter\n");
	for (int r = 0; r <= M.nroutes; r++) {
		const char *route = r < M.nroutes ? tr_router_route(r)->path : "unmatched";
		for (int i = 0; i < M.routes[r].ncounts; i++) {
			const struct status_count *sc = &M.routes[r].counts[i];
			put(&o,
			    "trellis_http_requests_total{route=\"%s\",method=\"%s\",status=\"%d\"} "
			    "%llu\n",
			    route, tr_method_name(sc->method), sc->status, sc->count);
		}
	}
	put(&o, "# HELP trellis_http_request_duration_seconds Time from request head to response.\n"
		"# TYPE trellis_http_request_duration_seconds histogram\n");
	for (int r = 0; r <= M.nroutes; r++) {
		if (M.routes[r].latency.count == 0)
			continue;
		snprintf(labels, sizeof(labels), "route=\"%s\"",
			 r < M.nroutes ? tr_router_route(r)->path : "unmatched");
		put_histogram(&o, "trellis_http_request_duration_seconds", labels,
			      &M.routes[r].latency);
	}
	put(&o,
	    "# HELP trellis_db_operation_duration_seconds MongoDB work per request on a worker.\n"
	    "# TYPE trellis_db_operation_duration_seconds histogram\n");
	put_histogram(&o, "trellis_db_operation_duration_seconds", "", &M.db);
	put(&o, "# TYPE trellis_db_errors_total counter\ntrellis_db_errors_total %llu\n",
	    M.db_errors);
	put(&o, "# HELP trellis_redis_command_duration_seconds Redis round trips.\n"
		"# TYPE trellis_redis_command_duration_seconds histogram\n");
	put_histogram(&o, "trellis_redis_command_duration_seconds", "", &M.redis);
	put(&o, "# TYPE trellis_redis_errors_total counter\ntrellis_redis_errors_total %llu\n",
	    M.redis_errors);
	put(&o,
	    "# HELP trellis_connections Open client connections.\n"
	    "# TYPE trellis_connections gauge\ntrellis_connections %lld\n",
	    M.connections);
	for (int i = 0; i < nsources; i++) {
		char *text = sources[i]();
		if (text)
			put(&o, "%s", text);
		free(text);
	}
	*len = o.len;
	return o.buf;
}
