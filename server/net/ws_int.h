/* What the WebSocket endpoint's files share (ws.h is the public side):
 * ws_hub.c (connections, tenants, frames and their queues, fan-out of
 * events, catching up from the stream), ws_protocol.c (the lws callback,
 * the auth / subscribe / unsubscribe / ping frames, errors, rate limit)
 * and ws_write.c (framing and writing queued frames, the close frame).
 * Not for other areas.
 *
 * Threads: everything here belongs to the loop thread; no worker thread
 * touches a connection, a frame or W. */
#ifndef TR_WS_INT_H
#define TR_WS_INT_H

#include <libwebsockets.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"
#include "events.h"
#include "module.h"

#define TENANT_BUCKETS 1024 /* connections are found by tenant */
#define WRITE_BATCH 16384   /* bytes of queued frames sent in one write */

/* A frame to send, shared by every connection it goes to. Event frames
 * carry what delivery filters on. */
struct frame {
	int refs;
	int topic; /* -1: not an event */
	bool live; /* an event from the channel (not read back from the stream) */
	struct tr_evid id;
	char owner[TR_OWNERS_LEN]; /* who it is for under ":own" (events.h) */
	size_t len;
	unsigned char data[]; /* LWS_PRE headroom, then the payload */
};

/* A FIFO of frame pointers that grows up to the send-queue bound. */
struct fifo {
	struct frame **f;
	int cap, head, len;
};

enum ws_state { WS_AWAIT_AUTH, WS_AUTHING, WS_READY, WS_CLOSING };

/* One connection. Owned by the loop thread. While a Redis call for it is
 * pending, `checking` is set; if the socket closes meanwhile, wsi is
 * cleared and the callback frees it. */
struct ws_conn {
	struct lws *wsi;
	enum ws_state state;
	struct tr_principal principal;
	char *perms;
	unsigned subscribed; /* bit per topic */
	unsigned own_only;   /* bit per topic: only the user's own records */
	long exp;
	struct fifo q;	     /* frames to send */
	struct fifo pend;    /* live events that arrived while catching up */
	struct tr_evid last; /* the newest event this client has been given */
	struct tr_evid resume;
	bool has_resume;
	bool replaying;	     /* catching up from the stream; live events wait */
	bool replay_more;    /* another page to read once the queue drains */
	bool replay_waiting; /* resuming: catch-up waits for the first subscribe */
	bool revoked;
	int close_code; /* to send once the queue is empty */
	bool close_sent;
	char close_reason[64];
	char *rx;
	size_t rx_len;
	bool checking;
	double tokens; /* frames the client may still send (rate limit) */
	uint64_t refill_ms, rate_error_ms;
	struct ws_conn *prev, *next;   /* every connection */
	struct ws_conn *tprev, *tnext; /* its tenant's connections */
	bool in_tenant;
	unsigned bucket;
	bool dirty; /* has frames for the next flush */
	/* the longest delay from an event's id to its write, of the live events
	 * written since the last report (ws_report.c); -1 none */
	long long lag_max_ms;
	struct ws_conn *dnext;
};

/* The endpoint's state (defined in ws_hub.c). Loop thread only. */
struct ws_hub {
	uv_loop_t *loop;
	const struct tr_config *cfg;
	struct ws_conn *head;
	struct ws_conn *tenants[TENANT_BUCKETS];
	int count;
	bool stopping;
	int resume_script;
	unsigned long long delivered, slow_closed;
	unsigned char batch[LWS_PRE + WRITE_BATCH];
	struct ws_conn *dirty; /* connections with frames to write */
	uv_check_t flush;
	bool flush_on;
};
extern struct ws_hub W;

/* ws_hub.c: a frame holding head then body, no references yet. */
struct frame *tr_ws_frame_new(const char *head, size_t hlen, const char *body, size_t blen);
/* ws_hub.c: the i-th frame from the front of the queue. */
struct frame *tr_ws_fifo_peek(const struct fifo *q, int i);
/* ws_hub.c: drops (and unrefs) the n frames at the front of the queue. */
void tr_ws_fifo_drop(struct fifo *q, int n);
/* ws_hub.c: adds a new connection to the list of every connection. */
void tr_ws_link_conn(struct ws_conn *c);
/* ws_hub.c: adds an authenticating connection to its tenant's list. */
void tr_ws_link_tenant(struct ws_conn *c);
/* ws_hub.c: takes a closed connection out of both lists. */
void tr_ws_unlink_conn(struct ws_conn *c);
/* ws_hub.c: frees a closed connection once nothing refers to it. */
void tr_ws_conn_free(struct ws_conn *c);
/* ws_hub.c: sends what is queued, then closes with code. */
void tr_ws_close_with(struct ws_conn *c, int code, const char *reason);
/* ws_hub.c: queues a frame (force: past the send-queue bound, for replies and catch-up). */
void tr_ws_enqueue(struct ws_conn *c, struct frame *f, bool force);
/* ws_hub.c: the topic's index, or -1 for no such topic. */
int tr_ws_topic_index(const char *name, size_t len);
/* ws_hub.c: reads the next page of the tenant's stream after c->last. */
void tr_ws_replay_page(struct ws_conn *c);
/* ws_protocol.c: queues an error frame {"type":"error","code","message"}. */
void tr_ws_send_error(struct ws_conn *c, const char *code, const char *message);
/* ws_write.c: after each loop turn, writes the frames of connections marked dirty. */
void tr_ws_flush_cb(uv_check_t *h);
/* ws_report.c: starts and stops writing this process's per-tenant numbers
 * to Redis every ws_report_ms (ws_stats.h reads them). */
void tr_ws_report_start(void);
void tr_ws_report_stop(void);
/* ws_write.c: LWS_CALLBACK_SERVER_WRITEABLE; -1 closes the connection. */
int tr_ws_on_writeable(struct ws_conn *c);

#endif
