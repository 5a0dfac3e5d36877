/* The response writer (http_int.h): from the WRITEABLE callback, the
 * headers, then the body (small bodies go out with the headers in one
 * write); then the access log line and the metrics, and the exchange is
 * freed. Loop thread only. */
#include "http_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "metrics.h"
#include "response.h"
#include "router.h"
#include "util.h"

#define HEADER_BUF 4096
#define ONE_WRITE_MAX (64 * 1024) /* bodies up to this go out with the headers */

/* ---- respond phase ---- */

void
tr_http_respond(struct exchange *ex)
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

/* The path as the access log shows it: a route whose path holds a
 * credential shows its pattern. */
static const char *
logged_path(const struct exchange *ex)
{
	if (ex->req.route && (ex->req.route->flags & TR_SECRET_PATH))
		return ex->req.route->path;
	return ex->req.path ? ex->req.path : "-";
}

static void
log_and_count(struct exchange *ex)
{
	double secs = (double)(tr_mono_ns() - ex->start_ns) / 1e9;
	struct tr_access_entry e = {
	    .request_id = ex->req.request_id,
	    .method = ex->req.method ? tr_method_name(ex->req.method) : "-",
	    .route = ex->req.route ? ex->req.route->path : "-",
	    .path = logged_path(ex),
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
					r->status == 204 || r->status == 304 ? NULL : ctype,
					ex->out_len, &p, end))
		return -1;
	if (add_header(ex, "x-request-id:", ex->req.request_id, &p, end) ||
	    add_header(ex, "cache-control:", r->cache_control ? r->cache_control : "no-store", &p,
		       end))
		return -1;
	if (r->etag && add_header(ex, "etag:", r->etag, &p, end))
		return -1;
	for (int i = 0; i < r->nheaders; i++) {
		char name[64];
		snprintf(name, sizeof(name), "%s:", r->headers[i].name);
		if (add_header(ex, name, r->headers[i].value, &p, end))
			return -1;
	}
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
int
tr_http_on_writeable(struct conn *conn)
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
	tr_http_exchange_free(ex);
	if (close_after)
		return -1;
	if (lws_http_transaction_completed(wsi))
		return -1;
	return 0;
close:
	log_and_count(ex);
	conn->ex = NULL;
	tr_http_exchange_free(ex);
	return -1;
}
