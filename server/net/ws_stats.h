/* A tenant's WebSocket numbers across every process, for tenant admins
 * (GET /v1/observability). Each process serving WebSockets writes its own
 * every ws_report_ms (ws_report.c): the hash t:<tenant>:ws holds one field
 * per process, "<host>:<pid>" -> "<connections> <queued frames> <lag ms>
 * <written at ms>". A process that stops writing (it died) is left out
 * once its report is older than three intervals, and the hash expires
 * when no process writes it. So the numbers are at most one interval old.
 * Public: no driver types; modules may call it. */
#ifndef TR_WS_STATS_H
#define TR_WS_STATS_H

#include <stdbool.h>

struct tr_ws_tenant_stats {
	long long connections;	 /* authenticated sockets of the tenant */
	long long queued_frames; /* frames written to none of them yet */
	long long lag_max_ms;	 /* the longest event-to-write delay of live
				  * events in the last interval, -1 none */
	int processes;		 /* processes that reported connections */
	int report_every_ms;	 /* ws_report_ms */
};

/* Worker threads (waits for Redis): TR_OK or TR_EUNAVAILABLE. */
int tr_ws_tenant_stats(const char *tenant_hex, struct tr_ws_tenant_stats *out);

#endif
