#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <libwebsockets.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "auth.h"
#include "perm.h"
#include "dbpool.h"
#include "events.h"
#include "health.h"
#include "json.h"
#include "log.h"
#include "metrics.h"
#include "redis.h"
#include "response.h"
#include "router.h"
#include "util.h"
#include "ws.h"

#define HEADER_BUF 4096
#define ONE_WRITE_MAX (64 * 1024) /* bodies up to this go out with the headers */
#define DISCARD_FACTOR 8	  /* drain at most this many times the limit before closing */

enum phase {
	PH_READING,    /* head parsed, body arriving */
	PH_GATE,       /* waiting on Redis */
	PH_WORKING,    /* on a worker thread */
	PH_RESPONDING, /* response ready, waiting for WRITEABLE */
	PH_BODY,       /* headers sent, body next */
};

/* One request and its response. Owned by the loop thread, except between
 * uv_queue_work and its after-callback, when the worker owns req/resp.
 * If the connection closes while Redis or a worker holds the exchange, wsi
 * is cleared and whoever finishes last frees it. */
struct exchange {
	struct lws *wsi;
	struct tr_arena arena;
	struct tr_req req;
	struct tr_resp resp;
	struct tr_ctx ctx;
	enum phase phase;
	bool waiting;	    /* Redis or a worker holds it */
	bool error_pending; /* an error answer waits for the body to be drained */
	bool close_after;
	char *body;
	size_t body_len, body_cap, drained;
	long long content_length;
	char *out; /* rendered body, LWS_PRE headroom */
	size_t out_len;
	uint64_t start_ns;
	double db_seconds;
	bool db_unavailable;
	uv_work_t work;
};

/* Per connection (lws per-session data). */
struct conn {
	struct exchange *ex;
	void *ws; /* struct ws_conn, for an upgraded connection (ws.c) */
};

static struct {
	uv_loop_t *loop;
	const struct tr_config *cfg;
	struct lws_context *lws;
	struct lws_vhost *vhost;
	int listen_fd;
	uv_poll_t listen_poll;
	uv_timer_t accept_pause;
	bool listening;
	int inflight;
	char id_prefix[21]; /* random per process: ids are unique across processes */
	unsigned long long id_counter;
} H;

static void respond(struct exchange *ex);
static void fail_early(struct exchange *ex, int status, const char *slug, const char *detail);

static void
exchange_free(struct exchange *ex)
{
	H.inflight--;
	if (ex->req.has_body)
		bson_destroy(&ex->req.body);
	if (ex->resp.has_body)
		bson_destroy(&ex->resp.body);
	free(ex->body);
	free(ex->out);
	tr_arena_free(&ex->arena);
	free(ex);
}

static struct exchange *
exchange_new(struct lws *wsi)
{
	struct exchange *ex = NULL;

	/* It holds bson_t values, which need 128-byte alignment. */
	if (posix_memalign((void **)&ex, 128, sizeof(*ex)) != 0)
		return NULL;
	memset(ex, 0, sizeof(*ex));
	H.inflight++;
	ex->wsi = wsi;
	tr_arena_init(&ex->arena);
	ex->req.arena = &ex->arena;
	ex->req.route_index = -1;
	ex->ctx.req = &ex->req;
	ex->ctx.resp = &ex->resp;
	ex->start_ns = tr_mono_ns();
	return ex;
}

static char *
header(struct exchange *ex, enum lws_token_indexes h)
{
	int n = lws_hdr_total_length(ex->wsi, h);
	char *buf;

	if (n <= 0)
		return NULL;
	buf = tr_arena_alloc(&ex->arena, (size_t)n + 1);
	if (!buf || lws_hdr_copy(ex->wsi, buf, n + 1, h) < 0)
		return NULL;
	return buf;
}

static char *
custom_header(struct exchange *ex, const char *name)
{
	int nlen = (int)strlen(name);
	int n = lws_hdr_custom_length(ex->wsi, name, nlen);
	char *buf;

	if (n <= 0)
		return NULL;
	buf = tr_arena_alloc(&ex->arena, (size_t)n + 1);
	if (!buf || lws_hdr_custom_copy(ex->wsi, buf, n + 1, name, nlen) < 0)
		return NULL;
	return buf;
}

static bool
valid_request_id(const char *s)
{
	size_t n = s ? strlen(s) : 0;

	if (n == 0 || n > 64)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_' || c == '.'))
			return false;
	}
	return true;
}

/* Reads the query string; false when it has more parameters than
 * TR_MAX_QUERY (nothing is silently dropped). */
static bool
read_query(struct exchange *ex)
{
	for (int i = 0;; i++) {
		int len = lws_hdr_fragment_length(ex->wsi, WSI_TOKEN_HTTP_URI_ARGS, i);
		if (len <= 0)
			return true;
		if (ex->req.nquery == TR_MAX_QUERY)
			return false;
		char *buf = tr_arena_alloc(&ex->arena, (size_t)len + 1);
		if (!buf ||
		    lws_hdr_copy_fragment(ex->wsi, buf, len + 1, WSI_TOKEN_HTTP_URI_ARGS, i) < 0)
			return false;
		char *eq = strchr(buf, '=');
		struct tr_query_param *q = &ex->req.query[ex->req.nquery++];
		q->raw_len = (size_t)len;
		if (eq) {
			*eq = '\0';
			q->name = buf;
			q->value = eq + 1;
		} else {
			q->name = buf;
			q->value = "";
		}
	}
}

static bool
has_control(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return true;
	return false;
}

/* A NUL byte ends the query string lws hands over, so a parameter
 * shorter than its fragment held one. Control bytes are malformed. */
static bool
query_clean(struct exchange *ex)
{
	for (int i = 0; i < ex->req.nquery; i++) {
		const struct tr_query_param *q = &ex->req.query[i];
		if (has_control(q->name) || has_control(q->value) ||
		    strlen(q->name) + strlen(q->value) + 1 < q->raw_len) {
			fail_early(ex, 400, "malformed-request",
				   "the query string contains control characters");
			return false;
		}
	}
	return true;
}

/* Every query parameter is one the route reads: a misspelt filter is an
 * error, never a silent "everything". Checked once the caller is
 * authorized (a stranger learns nothing of a path's parameters). Sets the
 * problem and returns false. */
static bool
query_known(struct tr_ctx *c)
{
	const struct tr_route *r = c->req->route;
	char *detail;
	size_t n = 0;
	int unknown = 0;

	for (int i = 0; i < c->req->nquery; i++)
		unknown += !tr_router_query_known(r, c->req->query[i].name);
	if (!unknown)
		return true;
	detail = tr_arena_alloc(c->req->arena, 512);
	if (!detail) {
		tr_problem(c, 400, "unknown-parameter", "unknown query parameters");
		return false;
	}
	n = (size_t)snprintf(detail, 512, "unknown query parameter:");
	for (int i = 0; i < c->req->nquery; i++) {
		const char *name = c->req->query[i].name;
		if (tr_router_query_known(r, name))
			continue;
		if (n < 400)
			n += (size_t)snprintf(detail + n, 512 - n, " %.60s", name);
		tr_problem_field(c, name, "is not a parameter of this path");
	}
	if (n < 400)
		tr_router_query_names(r, detail + n, 512 - n);
	tr_problem(c, 400, "unknown-parameter", detail);
	return false;
}

static enum tr_method
method_from_lws(int m)
{
	switch (m) {
	case LWSHUMETH_GET:
		return TR_GET;
	case LWSHUMETH_POST:
		return TR_POST;
	case LWSHUMETH_PUT:
		return TR_PUT;
	case LWSHUMETH_PATCH:
		return TR_PATCH;
	case LWSHUMETH_DELETE:
		return TR_DELETE;
	case LWSHUMETH_HEAD:
		return TR_HEAD;
	case LWSHUMETH_OPTIONS:
		return TR_OPTIONS;
	default:
		return 0;
	}
}

static bool
is_json_content_type(const char *ct)
{
	static const char json[] = "application/json";

	if (!ct || strncasecmp(ct, json, sizeof(json) - 1) != 0)
		return false;
	ct += sizeof(json) - 1;
	while (*ct == ' ')
		ct++;
	return *ct == '\0' || *ct == ';';
}

/* An error decided before the body was read: answer once the body is
 * drained, so the connection stays in sync. */
static void
fail_early(struct exchange *ex, int status, const char *slug, const char *detail)
{
	tr_problem(&ex->ctx, status, slug, detail);
	if (ex->phase == PH_READING && ex->content_length != 0) {
		ex->error_pending = true;
		lws_set_timeout(ex->wsi, PENDING_TIMEOUT_HTTP_CONTENT, H.cfg->body_timeout);
		return;
	}
	respond(ex);
}

/* ---- worker phase ---- */

/* X-API-Key, through the module that offers keys (tr_module hook). */
static int
authenticate_key(struct tr_db *db, struct tr_ctx *c)
{
	for (size_t m = 0; m < tr_nmodules; m++)
		if (tr_modules[m]->authenticate_key)
			return tr_modules[m]->authenticate_key(db, c, c->req->api_key);
	tr_problem(c, 401, "unauthorized", "API keys are not accepted here");
	return -1;
}

static void
work_cb(uv_work_t *w)
{
	struct exchange *ex = w->data;
	struct tr_ctx *c = &ex->ctx;
	struct tr_idem idem = {0};
	struct tr_db *db = NULL;
	char err[200];
	int rc;

	if (c->req->route->flags & TR_JSON_BODY) {
		if (tr_json_parse(ex->body ? ex->body : "", ex->body_len, &c->req->body, err,
				  sizeof(err)) != 0) {
			c->req->has_body = true; /* body holds an empty doc to destroy */
			tr_problem(c, 400, "malformed-request", tr_arena_strdup(&ex->arena, err));
			goto render;
		}
		c->req->has_body = true;
	}
	db = tr_db_open(c->req->authenticated ? &c->req->principal : NULL);
	if (!db) {
		tr_problem_from_err(c, TR_ENOMEM);
		goto render;
	}
	c->db = db;
	if (c->req->api_key) {
		bool own;
		if (authenticate_key(db, c) != 0)
			goto render;
		tr_db_act_for(db, &c->req->principal);
		const char *need = c->req->route->permission;
		if (need && (!tr_permission_check(c->req->principal.perms, need, &own) || own)) {
			tr_problem(c, 403, "forbidden", "this API key does not allow this");
			goto render;
		}
	}
	if (!query_known(c))
		goto render;
	if (c->req->route->flags & TR_IDEMPOTENT) {
		rc = tr_idem_begin(db, c, &idem);
		if (rc < 0)
			tr_problem_from_err(c, rc);
		if (rc != 0)
			goto render;
	}
	c->req->route->handler(c);
	if (c->resp->status == 0)
		tr_problem(c, 500, "internal", "the handler produced no response");
render:
	free(ex->out);
	ex->out = tr_resp_render(c->resp, LWS_PRE, &ex->out_len);
	if (idem.claimed)
		tr_idem_finish(db, &idem, c->resp, ex->out ? ex->out + LWS_PRE : NULL, ex->out_len);
	if (db) {
		ex->db_seconds = tr_db_elapsed(db);
		tr_db_close(db);
		c->db = NULL;
	}
	ex->db_unavailable = c->resp->status == 503;
}

static void
after_work_cb(uv_work_t *w, int status)
{
	struct exchange *ex = w->data;
	(void)status;

	ex->waiting = false;
	if (ex->resp.evict) /* before anyone can see the response */
		tr_auth_evict(ex->resp.evict_tid, ex->resp.evict_uid, ex->resp.evict_sid);
	/* The write is done, whether or not its client is still there. */
	tr_events_publish(ex->resp.events);
	ex->resp.events = ex->resp.events_tail = NULL;
	tr_metrics_db_observe(ex->db_seconds, !ex->db_unavailable);
	if (ex->db_unavailable)
		tr_health_report_db_down();
	if (!ex->wsi) {
		exchange_free(ex);
		return;
	}
	ex->phase = PH_RESPONDING;
	lws_callback_on_writable(ex->wsi);
}

/* Hands the exchange to a worker thread (database work). */
static void
run_on_worker(struct exchange *ex)
{
	if (!tr_health_db_up() || !tr_health_migrations_done()) {
		tr_problem(&ex->ctx, 503, "dependency-unavailable",
			   "the database is unavailable; retry shortly");
		ex->resp.retry_after = 1;
		respond(ex);
		return;
	}
	ex->phase = PH_WORKING;
	ex->waiting = true;
	ex->work.data = ex;
	if (uv_queue_work(H.loop, &ex->work, work_cb, after_work_cb) != 0) {
		ex->waiting = false;
		tr_problem(&ex->ctx, 503, "overloaded", "the server is overloaded; retry shortly");
		ex->resp.retry_after = 1;
		respond(ex);
	}
}

/* ---- gate phase ---- */

static void
gate_cb(void *arg, int status, const struct tr_gate *g)
{
	struct exchange *ex = arg;

	ex->waiting = false;
	if (!ex->wsi) {
		exchange_free(ex);
		return;
	}
	if (status != TR_OK) {
		tr_problem(&ex->ctx, 503, "dependency-unavailable",
			   "the session store is unavailable; retry shortly");
		ex->resp.retry_after = 1;
		respond(ex);
		return;
	}
	if (!g->session_alive) {
		tr_problem(&ex->ctx, 401, "unauthorized", "the session has ended; sign in again");
		respond(ex);
		return;
	}
	if (!g->allowed) {
		tr_problem(&ex->ctx, 429, "rate-limited",
			   "too many requests for this tenant; slow down");
		ex->resp.retry_after = (g->retry_after_ms + 999) / 1000;
		if (ex->resp.retry_after < 1)
			ex->resp.retry_after = 1;
		respond(ex);
		return;
	}
	if (strcmp(g->user_id, ex->req.principal.user_hex) != 0) {
		tr_problem(&ex->ctx, 401, "unauthorized", "the token does not match its session");
		respond(ex);
		return;
	}
	ex->req.principal.perms = tr_arena_strdup(&ex->arena, g->perms);
	ex->req.session_me = tr_arena_strndup(&ex->arena, g->me, g->me_len);
	ex->req.session_me_len = g->me_len;
	const char *need = ex->req.route->permission;
	if (need &&
	    !tr_permission_check(ex->req.principal.perms, need, &ex->req.principal.own_only)) {
		tr_problem(&ex->ctx, 403, "forbidden", "your role does not allow this");
		respond(ex);
		return;
	}
	if (ex->req.route->flags & TR_INLINE) {
		if (query_known(&ex->ctx))
			ex->req.route->handler(&ex->ctx);
		respond(ex);
		return;
	}
	run_on_worker(ex);
}

/* The body is complete (or there is none): run the route. */
static void
dispatch(struct exchange *ex)
{
	const struct tr_route *route = ex->req.route;
	int rc;

	ex->req.raw_body = ex->body;
	ex->req.raw_body_len = ex->body_len;
	lws_set_timeout(ex->wsi, NO_PENDING_TIMEOUT, 0);
	if ((route->flags & TR_PUBLIC) && (route->flags & TR_INLINE)) {
		if (query_known(&ex->ctx))
			route->handler(&ex->ctx);
		respond(ex);
		return;
	}
	if (!H.cfg->role_api) { /* a WebSocket or worker process: operations only */
		tr_problem(&ex->ctx, 503, "dependency-unavailable",
			   "this server does not serve the API (see its roles setting)");
		respond(ex);
		return;
	}
	if (route->flags & TR_PUBLIC) {
		run_on_worker(ex);
		return;
	}
	if (ex->req.api_key) {
		if (route->flags & TR_INLINE) {
			tr_problem(&ex->ctx, 403, "forbidden",
				   "this endpoint is for users, not API keys");
			respond(ex);
			return;
		}
		run_on_worker(ex);
		return;
	}
	if (!tr_redis_up()) {
		tr_problem(&ex->ctx, 503, "dependency-unavailable",
			   "the session store is unavailable; retry shortly");
		ex->resp.retry_after = 1;
		respond(ex);
		return;
	}
	ex->phase = PH_GATE;
	ex->waiting = true;
	rc = tr_auth_gate(&ex->req.principal, gate_cb, ex);
	if (rc != TR_OK) {
		ex->waiting = false;
		tr_problem(&ex->ctx, 503, "dependency-unavailable",
			   "the session store is unavailable; retry shortly");
		ex->resp.retry_after = 1;
		respond(ex);
	}
}

/* ---- respond phase ---- */

static void
respond(struct exchange *ex)
{
	if (!ex->out) {
		ex->out = tr_resp_render(&ex->resp, LWS_PRE, &ex->out_len);
		if (!ex->out)
			ex->close_after = true;
	}
	ex->phase = PH_RESPONDING;
	lws_callback_on_writable(ex->wsi);
}

static int
add_header(struct exchange *ex, const char *name, const char *value, unsigned char **p,
	   unsigned char *end)
{
	return lws_add_http_header_by_name(ex->wsi, (const unsigned char *)name,
					   (const unsigned char *)value, (int)strlen(value), p,
					   end);
}

static void
log_and_count(struct exchange *ex)
{
	double secs = (double)(tr_mono_ns() - ex->start_ns) / 1e9;
	struct tr_access_entry e = {
	    .request_id = ex->req.request_id,
	    .method = ex->req.method ? tr_method_name(ex->req.method) : "-",
	    .route = ex->req.route ? ex->req.route->path : "-",
	    .path = ex->req.path ? ex->req.path : "-",
	    .tenant = ex->req.authenticated ? ex->req.principal.tenant_hex : NULL,
	    .status = ex->resp.status,
	    .duration_ms = secs * 1000,
	};
	tr_log_access(&e);
	tr_metrics_http_observe(ex->req.route_index, ex->req.method ? ex->req.method : TR_GET,
				ex->resp.status, secs);
}

/* Returns -1 to close the connection. */
static int
write_headers(struct exchange *ex)
{
	unsigned char buf[LWS_PRE + HEADER_BUF], *start = buf + LWS_PRE, *p = start,
						 *end = buf + sizeof(buf) - 1;
	char num[32];
	struct tr_resp *r = &ex->resp;
	const char *ctype = tr_resp_content_type(r);

	if (r->status == 0)
		r->status = 500;
	if (!H.listening)
		ex->close_after = true; /* draining: move keep-alive clients elsewhere */
	if (lws_add_http_common_headers(ex->wsi, (unsigned int)r->status,
					r->status == 204 ? NULL : ctype, ex->out_len, &p, end))
		return -1;
	if (add_header(ex, "x-request-id:", ex->req.request_id, &p, end) ||
	    add_header(ex, "cache-control:", "no-store", &p, end))
		return -1;
	if (r->etag_version > 0) {
		snprintf(num, sizeof(num), "\"%lld\"", r->etag_version);
		if (add_header(ex, "etag:", num, &p, end))
			return -1;
	}
	if (r->location && add_header(ex, "location:", r->location, &p, end))
		return -1;
	if (r->allow && add_header(ex, "allow:", r->allow, &p, end))
		return -1;
	if (r->retry_after > 0) {
		snprintf(num, sizeof(num), "%d", r->retry_after);
		if (add_header(ex, "retry-after:", num, &p, end))
			return -1;
	}
	if (r->replayed && add_header(ex, "idempotent-replayed:", "true", &p, end))
		return -1;
	if (ex->close_after && add_header(ex, "connection:", "close", &p, end))
		return -1;
	if (lws_finalize_http_header(ex->wsi, &p, end))
		return -1;
	size_t hlen = (size_t)(p - start);
	if (ex->out_len > 0 && ex->out_len <= ONE_WRITE_MAX) {
		/* HTTP/1.1: headers and body in one write, one packet. */
		unsigned char *one = malloc(LWS_PRE + hlen + ex->out_len);
		if (!one)
			return -1;
		memcpy(one + LWS_PRE, start, hlen);
		memcpy(one + LWS_PRE + hlen, ex->out + LWS_PRE, ex->out_len);
		int n =
		    lws_write(ex->wsi, one + LWS_PRE, hlen + ex->out_len, LWS_WRITE_HTTP_HEADERS);
		free(one);
		if (n < 0)
			return -1;
		ex->out_len = 0; /* sent */
		return 0;
	}
	if (lws_write(ex->wsi, start, hlen, LWS_WRITE_HTTP_HEADERS) < 0)
		return -1;
	return 0;
}

/* WRITEABLE: headers first, then the body in the next callback. */
static int
on_writeable(struct conn *conn)
{
	struct exchange *ex = conn->ex;
	bool close_after;

	if (!ex || (ex->phase != PH_RESPONDING && ex->phase != PH_BODY))
		return 0;
	if (ex->phase == PH_RESPONDING) {
		if (write_headers(ex))
			goto close;
		if (ex->out_len > 0) {
			ex->phase = PH_BODY;
			lws_callback_on_writable(ex->wsi);
			return 0;
		}
	} else if (lws_write(ex->wsi, (unsigned char *)ex->out + LWS_PRE, ex->out_len,
			     LWS_WRITE_HTTP_FINAL) < (int)ex->out_len) {
		goto close;
	}
	log_and_count(ex);
	close_after = ex->close_after;
	struct lws *wsi = ex->wsi;
	conn->ex = NULL;
	exchange_free(ex);
	if (close_after)
		return -1;
	if (lws_http_transaction_completed(wsi))
		return -1;
	return 0;
close:
	log_and_count(ex);
	conn->ex = NULL;
	exchange_free(ex);
	return -1;
}

/* ---- lws callbacks ---- */

/* LWS_CALLBACK_HTTP: the head is parsed. */
static int
on_request(struct lws *wsi, struct conn *conn, const char *uri)
{
	struct exchange *ex = exchange_new(wsi);
	struct tr_route_match m;
	char *uri_ptr = NULL, allow[64];
	int uri_len = 0, lm;
	const char *rid, *cl, *te;

	if (!ex)
		return -1;
	conn->ex = ex;
	rid = custom_header(ex, "x-request-id:");
	if (valid_request_id(rid))
		snprintf(ex->req.request_id, sizeof(ex->req.request_id), "%s", rid);
	else
		snprintf(ex->req.request_id, sizeof(ex->req.request_id), "%s%012llx", H.id_prefix,
			 ++H.id_counter);
	ex->req.path = tr_arena_strdup(&ex->arena, uri);
	lws_get_peer_simple(wsi, ex->req.peer, sizeof(ex->req.peer));
	lm = lws_http_get_uri_and_method(wsi, &uri_ptr, &uri_len);
	ex->req.method = method_from_lws(lm);

	cl = header(ex, WSI_TOKEN_HTTP_CONTENT_LENGTH);
	te = header(ex, WSI_TOKEN_HTTP_TRANSFER_ENCODING);
	ex->content_length = 0;
	if (cl && tr_parse_int(cl, 0, INT64_MAX, &ex->content_length) != 0) {
		ex->close_after = true;
		fail_early(ex, 400, "malformed-request", "Content-Length is not a number");
		return 0;
	}
	ex->phase = PH_READING;
	if (te) {
		/* libwebsockets 4.1 cannot decode chunked request bodies: refuse
		 * them clearly and close, since the body cannot be skipped. */
		ex->close_after = true;
		ex->content_length = 0;
		fail_early(ex, 411, "length-required",
			   "send the body with a Content-Length header");
		return 0;
	}

	if (ex->req.method == 0) {
		/* CONNECT and the like: the path's methods are still named */
		if (tr_router_match(0, ex->req.path, &ex->arena, &m) == TR_MATCH_BAD_METHOD) {
			tr_router_allow_header(m.allowed, allow, sizeof(allow));
			ex->resp.allow = tr_arena_strdup(&ex->arena, allow);
		}
		fail_early(ex, 405, "method-not-allowed", "this method is not supported");
		return 0;
	}
	switch (tr_router_match(ex->req.method, ex->req.path, &ex->arena, &m)) {
	case TR_MATCH_BAD_PATH:
		fail_early(ex, 400, "malformed-request", "the path is not a valid resource path");
		return 0;
	case TR_MATCH_NOT_FOUND:
		fail_early(ex, 404, "not-found", "no such resource");
		return 0;
	case TR_MATCH_BAD_METHOD:
		tr_router_allow_header(m.allowed, allow, sizeof(allow));
		ex->resp.allow = tr_arena_strdup(&ex->arena, allow);
		fail_early(ex, 405, "method-not-allowed",
			   "this resource does not support the method");
		return 0;
	case TR_MATCH_OK:
		break;
	}
	ex->req.route_index = m.index;
	ex->req.route = tr_router_route(m.index);
	memcpy(ex->req.params, m.params, sizeof(m.params));
	ex->req.nparams = m.nparams;
	if (!read_query(ex)) {
		fail_early(ex, 400, "malformed-request", "too many query parameters");
		return 0;
	}
	if (!query_clean(ex))
		return 0;
	ex->req.if_match = header(ex, WSI_TOKEN_HTTP_IF_MATCH);
	ex->req.idempotency_key = custom_header(ex, "idempotency-key:");

	if (ex->content_length > H.cfg->body_limit) {
		if (ex->content_length > (long long)H.cfg->body_limit * DISCARD_FACTOR) {
			ex->close_after = true;
			ex->content_length = 0; /* answer now and close */
		}
		fail_early(ex, 413, "payload-too-large",
			   "the request body is larger than the limit");
		return 0;
	}
	if ((ex->req.route->flags & TR_JSON_BODY) &&
	    !is_json_content_type(header(ex, WSI_TOKEN_HTTP_CONTENT_TYPE))) {
		fail_early(ex, 415, "unsupported-media-type", "send the body as application/json");
		return 0;
	}
	if (!(ex->req.route->flags & TR_PUBLIC)) {
		const char *auth = header(ex, WSI_TOKEN_HTTP_AUTHORIZATION), *why = "missing";
		const char *key = custom_header(ex, "x-api-key:");
		if (!auth && key) {
			ex->req.api_key = key; /* resolved on a worker */
		} else if (!auth || strncasecmp(auth, "Bearer ", 7) != 0 ||
			   tr_auth_verify_token(auth + 7, &ex->req.principal, &why) != 0) {
			tr_debug("auth refused: %s", why);
			fail_early(ex, 401, "unauthorized", "a valid access token is required");
			return 0;
		} else {
			ex->req.authenticated = true;
		}
	}
	if (ex->content_length != 0) {
		lws_set_timeout(wsi, PENDING_TIMEOUT_HTTP_CONTENT, H.cfg->body_timeout);
		return 0; /* wait for the body */
	}
	dispatch(ex);
	return 0;
}

static int
on_body(struct exchange *ex, const char *in, size_t len)
{
	if (ex->error_pending) {
		ex->drained += len;
		if (ex->drained > (size_t)H.cfg->body_limit * DISCARD_FACTOR) {
			ex->close_after = true;
			ex->error_pending = false;
			respond(ex);
		}
		return 0;
	}
	if (ex->body_len + len > (size_t)H.cfg->body_limit) {
		tr_problem(&ex->ctx, 413, "payload-too-large",
			   "the request body is larger than the limit");
		ex->error_pending = true;
		ex->drained = ex->body_len + len;
		return 0;
	}
	if (ex->body_len + len + 1 > ex->body_cap) {
		size_t cap = ex->body_cap ? ex->body_cap : 1024;
		while (cap < ex->body_len + len + 1)
			cap *= 2;
		char *b = realloc(ex->body, cap);
		if (!b)
			return -1;
		ex->body = b;
		ex->body_cap = cap;
	}
	memcpy(ex->body + ex->body_len, in, len);
	ex->body_len += len;
	ex->body[ex->body_len] = '\0';
	return 0;
}

static int
http_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
	struct conn *conn = user;

	switch (reason) {
	case LWS_CALLBACK_HTTP:
		if (!conn)
			return -1;
		if (conn->ex) /* a pipelined request while one is in progress */
			return -1;
		return on_request(wsi, conn, in ? (const char *)in : "/");
	case LWS_CALLBACK_HTTP_BODY:
		if (!conn || !conn->ex || conn->ex->phase != PH_READING)
			return 0;
		return on_body(conn->ex, in, len);
	case LWS_CALLBACK_HTTP_BODY_COMPLETION:
		if (!conn || !conn->ex || conn->ex->phase != PH_READING)
			return 0;
		if (conn->ex->error_pending) {
			conn->ex->error_pending = false;
			respond(conn->ex);
		} else {
			dispatch(conn->ex);
		}
		return 0;
	case LWS_CALLBACK_HTTP_WRITEABLE:
		return conn ? on_writeable(conn) : 0;
	case LWS_CALLBACK_CLOSED_HTTP:
		if (conn && conn->ex) {
			struct exchange *ex = conn->ex;
			conn->ex = NULL;
			if (ex->waiting)
				ex->wsi = NULL; /* the callback that holds it frees it */
			else
				exchange_free(ex);
		}
		break;
	case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
	case LWS_CALLBACK_ESTABLISHED:
	case LWS_CALLBACK_RECEIVE:
	case LWS_CALLBACK_SERVER_WRITEABLE:
	case LWS_CALLBACK_TIMER:
	case LWS_CALLBACK_CLOSED:
		return conn ? tr_ws_callback(wsi, reason, &conn->ws, in, len) : -1;
	case LWS_CALLBACK_WSI_CREATE:
		tr_metrics_connections(1);
		break;
	case LWS_CALLBACK_WSI_DESTROY:
		tr_metrics_connections(-1);
		break;
	default:
		break;
	}
	return lws_callback_http_dummy(wsi, reason, user, in, len);
}

/* A whole HTTP/1.1 problem response with connection: close, for answers
 * written outside the request pipeline (a WebSocket upgrade refused, a
 * method lws does not parse): status 404, 405 or 503, its own request id,
 * extra header lines ("allow: GET\r\n") or "". Returns the length in
 * out, or 0 when it does not fit. */
static size_t
canned_problem(char *out, size_t cap, int status, const char *slug, const char *detail,
	       const char *extra)
{
	const char *reason = status == 404   ? "Not Found"
			     : status == 405 ? "Method Not Allowed"
					     : "Service Unavailable";
	const char *title = status == 404   ? "Not found"
			    : status == 405 ? "Method not allowed"
					    : "Service unavailable";
	char body[512], rid[48];
	int n, len;

	snprintf(rid, sizeof(rid), "%s%012llx", H.id_prefix, ++H.id_counter);
	n = snprintf(body, sizeof(body),
		     "{\"type\":\"https://trellis.dev/errors/%s\",\"title\":\"%s\","
		     "\"status\":%d,\"detail\":\"%s\"}",
		     slug, title, status, detail);
	len = snprintf(out, cap,
		       "HTTP/1.1 %d %s\r\ncontent-type: application/problem+json\r\n"
		       "content-length: %d\r\nx-request-id: %s\r\n%sconnection: close\r\n\r\n%s",
		       status, reason, n, rid, extra, body);
	return len > 0 && (size_t)len < cap ? (size_t)len : 0;
}

/* ---- methods lws does not parse ----
 *
 * lws 4.1 knows GET, POST, OPTIONS, PUT, PATCH, DELETE, CONNECT and HEAD;
 * any other method (TRACE, PROPFIND...) stops its parser. Rather than its
 * 403 HTML page, the connection falls back to the raw role (the vhost's
 * listen-accept protocol below) with the bytes received, and is answered
 * here: 405 problem+json with the path's Allow (404 for no such path),
 * then closed, since the rest of the request cannot be framed. */

#define REFUSAL_MAX 1024

struct refusal {
	char out[LWS_PRE + REFUSAL_MAX];
	size_t len;
};

static void
refusal_render(struct refusal *rf, const char *head, size_t len)
{
	char path[256] = "/", allow[64] = "", extra[96] = "";
	const char *sp = memchr(head, ' ', len), *end;
	struct tr_route_match m;
	struct tr_arena arena;
	int status = 405;

	/* the target, without its query: "TRACE /v1/tags?x HTTP/1.1" */
	if (sp) {
		sp++;
		end = sp;
		while ((size_t)(end - head) < len && *end != ' ' && *end != '?' && *end != '\r')
			end++;
		if (end > sp && (size_t)(end - sp) < sizeof(path))
			snprintf(path, sizeof(path), "%.*s", (int)(end - sp), sp);
	}
	tr_arena_init(&arena);
	switch (tr_router_match(0, path, &arena, &m)) {
	case TR_MATCH_BAD_METHOD:
		tr_router_allow_header(m.allowed, allow, sizeof(allow));
		snprintf(extra, sizeof(extra), "allow: %s\r\n", allow);
		break;
	case TR_MATCH_OK:
		break;
	default:
		status = 404;
	}
	tr_arena_free(&arena);
	rf->len = canned_problem(
	    rf->out + LWS_PRE, REFUSAL_MAX, status,
	    status == 405 ? "method-not-allowed" : "not-found",
	    status == 405 ? "this method is not supported" : "no such resource", extra);
}

static int
refusal_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
	struct refusal *rf = user;

	switch (reason) {
	case LWS_CALLBACK_RAW_RX:
		if (rf && !rf->len && in) {
			refusal_render(rf, in, len);
			lws_callback_on_writable(wsi);
		}
		return 0;
	case LWS_CALLBACK_RAW_WRITEABLE:
		if (rf && rf->len)
			lws_write(wsi, (unsigned char *)rf->out + LWS_PRE, rf->len, LWS_WRITE_RAW);
		return -1; /* answered: close */
	case LWS_CALLBACK_RAW_ADOPT:
		tr_metrics_connections(1);
		return 0;
	case LWS_CALLBACK_RAW_CLOSE:
		tr_metrics_connections(-1);
		return 0;
	default:
		return 0;
	}
}

static const struct lws_protocols protocols[] = {
    {"http", http_cb, sizeof(struct conn), 0, 0, NULL, 0},
    {"refusal", refusal_cb, sizeof(struct refusal), 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

int
tr_http_refuse(struct lws *wsi, int status, const char *slug, const char *detail)
{
	unsigned char buf[LWS_PRE + 1024];
	/* Written whole, as HTTP/1.1: at this stage of an upgrade lws would
	 * answer HTTP/1.0, which WebSocket clients refuse to read. */
	size_t len =
	    canned_problem((char *)buf + LWS_PRE, sizeof(buf) - LWS_PRE, status, slug, detail, "");

	if (len)
		lws_write(wsi, buf + LWS_PRE, len, LWS_WRITE_HTTP_HEADERS);
	return -1;
}

/* ---- listener ---- */

static void listen_cb(uv_poll_t *h, int status, int events);

static void
resume_accept(uv_timer_t *t)
{
	(void)t;
	if (H.listening)
		uv_poll_start(&H.listen_poll, UV_READABLE, listen_cb);
}

static void
listen_cb(uv_poll_t *h, int status, int events)
{
	(void)h;
	(void)events;
	if (status < 0 || !H.listening)
		return;
	for (int i = 0; i < 256; i++) {
		int fd = accept4(H.listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
			    errno == ENOMEM) {
				/* out of descriptors: pause rather than spin */
				tr_warn("accept: %s; pausing 100 ms", strerror(errno));
				uv_poll_stop(&H.listen_poll);
				uv_timer_start(&H.accept_pause, resume_accept, 100, 0);
			}
			return;
		}
		/* Responses go out as headers then body: without NODELAY the
		 * body waits for the client's delayed ACK (~40 ms). */
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (!lws_adopt_socket_vhost(H.vhost, fd))
			close(fd);
	}
}

static int
open_listener(const struct tr_config *cfg, char *err, size_t errlen)
{
	struct addrinfo hints = {0}, *res = NULL;
	char port[8];
	int fd = -1, one = 1, rc;

	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	snprintf(port, sizeof(port), "%d", cfg->port);
	rc = getaddrinfo(cfg->host, port, &hints, &res);
	if (rc != 0) {
		snprintf(err, errlen, "host \"%s\": %s", cfg->host, gai_strerror(rc));
		return -1;
	}
	fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 1024) != 0) {
		snprintf(err, errlen, "cannot listen on %s:%d: %s", cfg->host, cfg->port,
			 strerror(errno));
		if (fd >= 0)
			close(fd);
		freeaddrinfo(res);
		return -1;
	}
	freeaddrinfo(res);
	return fd;
}

static void
lws_log_emit(int level, const char *line)
{
	size_t n = strlen(line);
	char buf[512];

	snprintf(buf, sizeof(buf), "%.*s", (int)(n && line[n - 1] == '\n' ? n - 1 : n), line);
	if (level & LLL_ERR)
		tr_error("lws: %s", buf);
	else
		tr_warn("lws: %s", buf);
}

int
tr_http_init(uv_loop_t *loop, const struct tr_config *cfg, char *err, size_t errlen)
{
	struct lws_context_creation_info info;
	void *foreign_loops[1] = {loop};

	H.loop = loop;
	H.cfg = cfg;
	tr_random_hex(H.id_prefix, 10);
	H.listen_fd = open_listener(cfg, err, errlen);
	if (H.listen_fd < 0)
		return -1;

	lws_set_log_level(LLL_ERR | LLL_WARN, lws_log_emit);
	memset(&info, 0, sizeof(info));
	info.port = CONTEXT_PORT_NO_LISTEN_SERVER;
	info.protocols = protocols;
	info.options = LWS_SERVER_OPTION_LIBUV | LWS_SERVER_OPTION_VALIDATE_UTF8 |
		       LWS_SERVER_OPTION_FALLBACK_TO_APPLY_LISTEN_ACCEPT_CONFIG;
	info.listen_accept_role = "raw-skt";
	info.listen_accept_protocol = "refusal";
	info.foreign_loops = foreign_loops;
	info.timeout_secs = (unsigned int)cfg->header_timeout;
	info.timeout_secs_ah_idle = (unsigned int)cfg->header_timeout;
	info.keepalive_timeout = cfg->idle_timeout;
	info.max_http_header_data = 8192;
	info.max_http_header_pool = 256;
	info.fd_limit_per_thread = (unsigned int)cfg->max_connections + 64;
	info.vhost_name = "default";
	H.lws = lws_create_context(&info);
	if (!H.lws) {
		snprintf(err, errlen, "libwebsockets: cannot create the server context");
		close(H.listen_fd);
		return -1;
	}
	H.vhost = lws_get_vhost_by_name(H.lws, "default");
	if (!H.vhost) {
		snprintf(err, errlen, "libwebsockets: no default vhost");
		return -1;
	}
	uv_timer_init(loop, &H.accept_pause);
	uv_poll_init(loop, &H.listen_poll, H.listen_fd);
	uv_poll_start(&H.listen_poll, UV_READABLE, listen_cb);
	H.listening = true;
	return 0;
}

void
tr_http_stop_accepting(void)
{
	if (!H.listening)
		return;
	H.listening = false;
	uv_poll_stop(&H.listen_poll);
	uv_timer_stop(&H.accept_pause);
	uv_close((uv_handle_t *)&H.listen_poll, NULL);
	uv_close((uv_handle_t *)&H.accept_pause, NULL);
	close(H.listen_fd);
	H.listen_fd = -1;
}

int
tr_http_inflight(void)
{
	return H.inflight;
}

void
tr_http_destroy(void)
{
	tr_http_stop_accepting();
	if (H.lws)
		lws_context_destroy(H.lws);
	H.lws = NULL;
}
