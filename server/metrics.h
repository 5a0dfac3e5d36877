/* Prometheus metrics. Loop thread only: workers hand their measurements
 * back with their results. */
#ifndef TR_METRICS_H
#define TR_METRICS_H

#include <stdbool.h>
#include <stddef.h>

#include "module.h"

int tr_metrics_init(int nroutes);
void tr_metrics_free(void);

/* route_index -1: no route matched. */
void tr_metrics_http_observe(int route_index, enum tr_method method, int status, double seconds);
void tr_metrics_db_observe(double seconds, bool ok);
void tr_metrics_redis_observe(double seconds, bool ok);
void tr_metrics_connections(int delta);

/* The exposition text; free() it. */
char *tr_metrics_render(size_t *len);
/* Another part's metrics: a function returning malloc'd Prometheus text,
 * called on every render (loop thread). Register at start. */
typedef char *(*tr_metrics_source)(void);
void tr_metrics_add_source(tr_metrics_source fn);

#endif
