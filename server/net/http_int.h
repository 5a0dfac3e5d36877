/* What the HTTP server's files share (http.h is the public side):
 * http_listen.c (the listening socket, the lws context, the refusal
 * protocol for methods lws does not parse), http.c (the request pipeline:
 * parse, authenticate, gate, authorize, worker dispatch) and http_write.c
 * (the response, from the WRITEABLE callback). Not for other areas.
 *
 * Threads: everything here belongs to the loop thread, except an
 * exchange's req/resp between uv_queue_work and its after-callback, when
 * the worker owns them. Workers never read H. */
#ifndef TR_HTTP_INT_H
#define TR_HTTP_INT_H

#include <libwebsockets.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "module.h"

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
	void *ws; /* struct ws_conn, for an upgraded connection (ws_int.h) */
};

/* The server's state (defined in http_listen.c). Loop thread only. */
struct http_state {
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
};
extern struct http_state H;

/* http.c: the callback of the "http" protocol (http_listen.c names it). */
int tr_http_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len);
/* http.c: frees an exchange and counts it out of the in-flight requests. */
void tr_http_exchange_free(struct exchange *ex);
/* http_write.c: renders the response (unless a worker did) and asks for WRITEABLE. */
void tr_http_respond(struct exchange *ex);
/* http_write.c: LWS_CALLBACK_HTTP_WRITEABLE; returns -1 to close the connection. */
int tr_http_on_writeable(struct conn *conn);

#endif
