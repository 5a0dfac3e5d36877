/* WebSocket push endpoint /v1/ws (CONTRACT.md "WebSocket push"): the
 * protocol of auth, subscribe, unsubscribe, ping; close codes 4001 (session
 * ended or token expired), 4003, 4008 (no auth in time), 4009 (too slow),
 * 4400 (bad message), 1001 (server going away). Events arrive in the next
 * step (the live-events issue). Loop thread only. */
#ifndef TR_WS_H
#define TR_WS_H

#include <libwebsockets.h>
#include <uv.h>

#include "config.h"

void tr_ws_init(uv_loop_t *loop, const struct tr_config *cfg);
/* Closes every WebSocket with 1001 (shutdown) and stops the sweep. */
void tr_ws_shutdown(void);
int tr_ws_count(void);

/* The lws callback reasons of a WebSocket connection, delegated by the
 * HTTP callback. `slot` is the connection's per-session pointer. */
int tr_ws_callback(struct lws *wsi, enum lws_callback_reasons reason, void **slot, void *in,
		   size_t len);

#endif
