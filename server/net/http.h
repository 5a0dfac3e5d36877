/* The HTTP server: an own listening socket on the loop (so shutdown can stop
 * accepting), accepted connections handed to libwebsockets, and the request
 * pipeline:
 *
 *   parse (route, limits, content type) -> authenticate (JWT, CPU only)
 *   -> gate (session + rate limit, one async Redis call)
 *   -> handle (worker thread with a tenant-scoped db; public routes inline)
 *   -> respond (loop thread, from the WRITEABLE callback)
 *
 * Every phase can end the request with a problem+json response. Loop thread
 * only, except the handler phase which the worker runs with exclusive use
 * of the request. */
#ifndef TR_HTTP_H
#define TR_HTTP_H

#include <stddef.h>
#include <uv.h>

#include "config.h"

int tr_http_init(uv_loop_t *loop, const struct tr_config *cfg, char *err, size_t errlen);
/* Closes the listening socket; open connections finish their requests. */
void tr_http_stop_accepting(void);
/* Requests begun and not yet answered. */
int tr_http_inflight(void);
/* Answers a request that cannot go on (a WebSocket upgrade on another
 * path) with a problem+json and closes; returns -1 for the lws callback. */
struct lws;
int tr_http_refuse(struct lws *wsi, int status, const char *slug, const char *detail);

/* Destroys the libwebsockets context (closes every connection). */
void tr_http_destroy(void);

#endif
