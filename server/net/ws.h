/* WebSocket push endpoint /v1/ws (CONTRACT.md "WebSocket push"): the
 * protocol of auth, subscribe, unsubscribe, ping; close codes 4001 (session
 * ended or token expired), 4003, 4008 (no auth in time), 4009 (too slow),
 * 4400 (bad message), 1001 (server going away), 1012 (event channel lost:
 * resume), 1013 (try again later); events with resume. Loop thread only. */
#ifndef TR_WS_H
#define TR_WS_H

#include <libwebsockets.h>
#include <stdbool.h>
#include <uv.h>

#include "config.h"

/* Registers the resume script; before tr_redis_init. */
void tr_ws_register(void);
void tr_ws_init(uv_loop_t *loop, const struct tr_config *cfg);
/* Closes every WebSocket with 1001 (shutdown). */
void tr_ws_shutdown(void);
int tr_ws_count(void);
void tr_ws_metrics(unsigned long long *delivered, unsigned long long *slow_closed);

/* An event from the channel every process publishes to (events.c):
 * delivered to this process's clients of the tenant that subscribed to
 * the topic and may read the record. */
void tr_ws_event(const char *tid, size_t tid_len, const char *topic, size_t topic_len,
		 const char *owner, size_t owner_len, const char *id, size_t id_len,
		 const char *tail, size_t tail_len);
/* A session ended (on any process): its connections close with 4001. */
void tr_ws_revoked(const char *tid, const char *sid);
/* The event channel's connection went up or down; down closes every client
 * with 1012 so that it resumes from the stream. */
void tr_ws_pubsub_state(bool up);

/* The lws callback reasons of a WebSocket connection, delegated by the
 * HTTP callback. `slot` is the connection's per-session pointer. */
int tr_ws_callback(struct lws *wsi, enum lws_callback_reasons reason, void **slot, void *in,
		   size_t len);

#endif
