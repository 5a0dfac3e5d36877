/* The HTTP server's front (http.h): its own listening socket on the loop
 * (so shutdown can stop accepting), accepted connections adopted into
 * libwebsockets, the lws context and its protocols, and answers written
 * outside the request pipeline (a WebSocket upgrade refused, a method lws
 * does not parse). Loop thread only. */
#include "http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http_int.h"
#include "log.h"
#include "metrics.h"
#include "router.h"
#include "util.h"

struct http_state H;

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
    {"http", tr_http_cb, sizeof(struct conn), 0, 0, NULL, 0},
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
	info.max_http_header_pool2 = (unsigned int)cfg->max_requests; /* allocated as used */
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
