/* The request pipeline (http.h, http_int.h): a request's head is parsed
 * (route, limits, content type), its caller authenticated (JWT, CPU only),
 * gated (session + rate limit, one async Redis call), authorized, and its
 * handler run on a worker thread (public and inline routes on the loop);
 * then http_write.c answers. Every phase can end the request with a
 * problem+json response. */
#include "http_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

#define DISCARD_FACTOR 8 /* drain at most this many times the limit before closing */

static void fail_early(struct exchange *ex, int status, const char *slug, const char *detail);

void
tr_http_exchange_free(struct exchange *ex)
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

/* Is ct the media type `type` (parameters such as charset allowed)? */
static bool
is_content_type(const char *ct, const char *type)
{
	size_t n = strlen(type);

	if (!ct || strncasecmp(ct, type, n) != 0)
		return false;
	ct += n;
	while (*ct == ' ')
		ct++;
	return *ct == '\0' || *ct == ';';
}

static bool
is_json_content_type(const char *ct)
{
	return is_content_type(ct, "application/json");
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
	tr_http_respond(ex);
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

	if ((c->req->route->flags & TR_JSON_BODY) && !c->req->body_xml) {
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
		tr_http_exchange_free(ex);
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
		tr_http_respond(ex);
		return;
	}
	ex->phase = PH_WORKING;
	ex->waiting = true;
	ex->work.data = ex;
	if (uv_queue_work(H.loop, &ex->work, work_cb, after_work_cb) != 0) {
		ex->waiting = false;
		tr_problem(&ex->ctx, 503, "overloaded", "the server is overloaded; retry shortly");
		ex->resp.retry_after = 1;
		tr_http_respond(ex);
	}
}

/* ---- gate phase ---- */

static void
gate_cb(void *arg, int status, const struct tr_gate *g)
{
	struct exchange *ex = arg;

	ex->waiting = false;
	if (!ex->wsi) {
		tr_http_exchange_free(ex);
		return;
	}
	if (status != TR_OK) {
		tr_problem(&ex->ctx, 503, "dependency-unavailable",
			   "the session store is unavailable; retry shortly");
		ex->resp.retry_after = 1;
		tr_http_respond(ex);
		return;
	}
	if (!g->session_alive) {
		tr_problem(&ex->ctx, 401, "unauthorized", "the session has ended; sign in again");
		tr_http_respond(ex);
		return;
	}
	if (!g->allowed) {
		tr_problem(&ex->ctx, 429, "rate-limited",
			   "too many requests for this tenant; slow down");
		ex->resp.retry_after = (g->retry_after_ms + 999) / 1000;
		if (ex->resp.retry_after < 1)
			ex->resp.retry_after = 1;
		tr_http_respond(ex);
		return;
	}
	if (strcmp(g->user_id, ex->req.principal.user_hex) != 0) {
		tr_problem(&ex->ctx, 401, "unauthorized", "the token does not match its session");
		tr_http_respond(ex);
		return;
	}
	ex->req.principal.perms = tr_arena_strdup(&ex->arena, g->perms);
	ex->req.session_me = tr_arena_strndup(&ex->arena, g->me, g->me_len);
	ex->req.session_me_len = g->me_len;
	const char *need = ex->req.route->permission;
	if (need &&
	    !tr_permission_check(ex->req.principal.perms, need, &ex->req.principal.own_only)) {
		tr_problem(&ex->ctx, 403, "forbidden", "your role does not allow this");
		tr_http_respond(ex);
		return;
	}
	if (ex->req.route->flags & TR_INLINE) {
		if (query_known(&ex->ctx))
			ex->req.route->handler(&ex->ctx);
		tr_http_respond(ex);
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
		tr_http_respond(ex);
		return;
	}
	if (!H.cfg->role_api) { /* a WebSocket or worker process: operations only */
		tr_problem(&ex->ctx, 503, "dependency-unavailable",
			   "this server does not serve the API (see its roles setting)");
		tr_http_respond(ex);
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
			tr_http_respond(ex);
			return;
		}
		run_on_worker(ex);
		return;
	}
	if (!tr_redis_up()) {
		tr_problem(&ex->ctx, 503, "dependency-unavailable",
			   "the session store is unavailable; retry shortly");
		ex->resp.retry_after = 1;
		tr_http_respond(ex);
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
		tr_http_respond(ex);
	}
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
	if (ex->req.route->flags & TR_SIGNED) {
		ex->req.webhook_id = custom_header(ex, "webhook-id:");
		ex->req.webhook_timestamp = custom_header(ex, "webhook-timestamp:");
		ex->req.webhook_signature = custom_header(ex, "webhook-signature:");
	}
	if (ex->req.route->flags & TR_STATIC) {
		ex->req.if_none_match = header(ex, WSI_TOKEN_HTTP_IF_NONE_MATCH);
		ex->req.accept_encoding = header(ex, WSI_TOKEN_HTTP_ACCEPT_ENCODING);
	}

	if (ex->content_length > H.cfg->body_limit) {
		if (ex->content_length > (long long)H.cfg->body_limit * DISCARD_FACTOR) {
			ex->close_after = true;
			ex->content_length = 0; /* answer now and close */
		}
		fail_early(ex, 413, "payload-too-large",
			   "the request body is larger than the limit");
		return 0;
	}
	if (ex->req.route->flags & TR_JSON_BODY) {
		const char *ct = header(ex, WSI_TOKEN_HTTP_CONTENT_TYPE);
		bool xml_ok = ex->req.route->flags & TR_XML_BODY;
		if (xml_ok &&
		    (is_content_type(ct, "application/xml") || is_content_type(ct, "text/xml"))) {
			ex->req.body_xml = true;
		} else if (!is_json_content_type(ct)) {
			fail_early(ex, 415, "unsupported-media-type",
				   xml_ok ? "send the body as application/json or application/xml"
					  : "send the body as application/json");
			return 0;
		}
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
			tr_http_respond(ex);
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

int
tr_http_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
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
			tr_http_respond(conn->ex);
		} else {
			dispatch(conn->ex);
		}
		return 0;
	case LWS_CALLBACK_HTTP_WRITEABLE:
		return conn ? tr_http_on_writeable(conn) : 0;
	case LWS_CALLBACK_CLOSED_HTTP:
		if (conn && conn->ex) {
			struct exchange *ex = conn->ex;
			conn->ex = NULL;
			if (ex->waiting)
				ex->wsi = NULL; /* the callback that holds it frees it */
			else
				tr_http_exchange_free(ex);
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
