/* Operations endpoints. Public and inline on the loop thread: they read
 * state the health checker keeps, never block. */
#include <stdlib.h>
#include <string.h>

#include "health.h"
#include "json.h"
#include "metrics.h"
#include "openapi.h"
#include "router.h"
#include "system.h"

void
system_healthz(struct tr_ctx *c)
{
	bson_t doc = BSON_INITIALIZER;

	BSON_APPEND_UTF8(&doc, "status", "ok");
	tr_reply_json(c, 200, &doc);
	bson_destroy(&doc);
}

void
system_readyz(struct tr_ctx *c)
{
	bson_t doc = BSON_INITIALIZER, checks;
	bool db = tr_health_db_up(), redis = tr_health_redis_up(),
	     mig = tr_health_migrations_done(), pg = tr_health_pg_up();
	bool stopping = tr_health_stopping();
	bool ready = db && redis && mig && pg && !stopping;

	/* A draining process is healthy but wants no new requests. */
	BSON_APPEND_UTF8(&doc, "status", stopping ? "stopping" : (ready ? "ready" : "not_ready"));
	BSON_APPEND_DOCUMENT_BEGIN(&doc, "checks", &checks);
	BSON_APPEND_UTF8(&checks, "mongodb", db ? "ok" : "down");
	if (tr_health_pg_configured())
		BSON_APPEND_UTF8(&checks, "postgresql", pg ? "ok" : "down");
	BSON_APPEND_UTF8(&checks, "redis", redis ? "ok" : "down");
	BSON_APPEND_UTF8(&checks, "migrations", mig ? "ok" : "pending");
	bson_append_document_end(&doc, &checks);
	tr_reply_json(c, ready ? 200 : 503, &doc);
	if (!ready)
		c->resp->retry_after = 1;
	bson_destroy(&doc);
}

void
system_metrics(struct tr_ctx *c)
{
	size_t len = 0;
	char *text = tr_metrics_render(&len);

	if (!text) {
		tr_problem(c, 500, "internal", "metrics unavailable");
		return;
	}
	/* The response outlives this call: copy into the request arena. */
	tr_reply_text(c, 200, "text/plain; version=0.0.4",
		      tr_arena_strndup(c->req->arena, text, len), len);
	free(text);
}

/* Built from the route table and the resource declarations (openapi.c),
 * so it always describes what is served. */
void
system_openapi(struct tr_ctx *c)
{
	bson_t doc = BSON_INITIALIZER;

	tr_openapi_build(&doc);
	tr_reply_json(c, 200, &doc);
	bson_destroy(&doc);
}

/* A plain GET of the WebSocket endpoint: say how to use it. */
void
system_ws_upgrade_required(struct tr_ctx *c)
{
	tr_problem(c, 426, "upgrade-required",
		   "this endpoint speaks WebSocket: connect with an Upgrade request");
}
