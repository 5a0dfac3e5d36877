/* Operations endpoints. Public and inline on the loop thread: they read
 * state the health checker keeps, never block. */
#include <stdlib.h>
#include <string.h>

#include "health.h"
#include "json.h"
#include "metrics.h"
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
	bool ready = db && redis && mig && pg;

	BSON_APPEND_UTF8(&doc, "status", ready ? "ready" : "not_ready");
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

/* Appends the OpenAPI {name} path form; ours is the same syntax. */
static void
operation(bson_t *path_item, const struct tr_route *r, const char *module)
{
	bson_t op, responses, resp, params, p, schema, sec, secitem, arr, tags;
	char method[8];
	size_t i;

	for (i = 0; tr_method_name(r->method)[i] && i < sizeof(method) - 1; i++)
		method[i] = (char)(tr_method_name(r->method)[i] - 'A' + 'a');
	method[i] = '\0';
	BSON_APPEND_DOCUMENT_BEGIN(path_item, method, &op);
	BSON_APPEND_UTF8(&op, "summary", r->summary ? r->summary : "");
	BSON_APPEND_ARRAY_BEGIN(&op, "tags", &tags);
	BSON_APPEND_UTF8(&tags, "0", module);
	bson_append_array_end(&op, &tags);
	int np = 0;
	BSON_APPEND_ARRAY_BEGIN(&op, "parameters", &params);
	for (const char *s = strchr(r->path, '{'); s; s = strchr(s + 1, '{')) {
		const char *e = strchr(s, '}');
		char key[8];
		const char *k;
		bson_uint32_to_string((uint32_t)np++, &k, key, sizeof(key));
		BSON_APPEND_DOCUMENT_BEGIN(&params, k, &p);
		bson_append_utf8(&p, "name", 4, s + 1, (int)(e - s - 1));
		BSON_APPEND_UTF8(&p, "in", "path");
		BSON_APPEND_BOOL(&p, "required", true);
		BSON_APPEND_DOCUMENT_BEGIN(&p, "schema", &schema);
		BSON_APPEND_UTF8(&schema, "type", "string");
		bson_append_document_end(&p, &schema);
		bson_append_document_end(&params, &p);
	}
	bson_append_array_end(&op, &params);
	if (r->flags & TR_JSON_BODY) {
		bson_t body, content, media, sch;
		BSON_APPEND_DOCUMENT_BEGIN(&op, "requestBody", &body);
		BSON_APPEND_BOOL(&body, "required", true);
		BSON_APPEND_DOCUMENT_BEGIN(&body, "content", &content);
		BSON_APPEND_DOCUMENT_BEGIN(&content, "application/json", &media);
		BSON_APPEND_DOCUMENT_BEGIN(&media, "schema", &sch);
		BSON_APPEND_UTF8(&sch, "type", "object");
		bson_append_document_end(&media, &sch);
		bson_append_document_end(&content, &media);
		bson_append_document_end(&body, &content);
		bson_append_document_end(&op, &body);
	}
	if (!(r->flags & TR_PUBLIC)) {
		BSON_APPEND_ARRAY_BEGIN(&op, "security", &sec);
		BSON_APPEND_DOCUMENT_BEGIN(&sec, "0", &secitem);
		BSON_APPEND_ARRAY_BEGIN(&secitem, "bearer", &arr);
		bson_append_array_end(&secitem, &arr);
		bson_append_document_end(&sec, &secitem);
		bson_append_array_end(&op, &sec);
	}
	BSON_APPEND_DOCUMENT_BEGIN(&op, "responses", &responses);
	BSON_APPEND_DOCUMENT_BEGIN(&responses, "default", &resp);
	BSON_APPEND_UTF8(&resp, "description", "Success, or application/problem+json on error.");
	bson_append_document_end(&responses, &resp);
	bson_append_document_end(&op, &responses);
	bson_append_document_end(path_item, &op);
}

/* Built from the route table, so it always describes what is served. */
void
system_openapi(struct tr_ctx *c)
{
	bson_t doc = BSON_INITIALIZER, info, paths, comps, schemes, bearer;
	int n = tr_router_count();
	bool *done = calloc((size_t)n, sizeof(bool));

	BSON_APPEND_UTF8(&doc, "openapi", "3.1.0");
	BSON_APPEND_DOCUMENT_BEGIN(&doc, "info", &info);
	BSON_APPEND_UTF8(&info, "title", "Trellis API");
	BSON_APPEND_UTF8(&info, "version", "1");
	bson_append_document_end(&doc, &info);
	BSON_APPEND_DOCUMENT_BEGIN(&doc, "paths", &paths);
	for (int i = 0; i < n && done; i++) {
		if (done[i])
			continue;
		bson_t item;
		const char *path = tr_router_route(i)->path;
		BSON_APPEND_DOCUMENT_BEGIN(&paths, path, &item);
		for (int j = i; j < n; j++) {
			if (strcmp(tr_router_route(j)->path, path) != 0)
				continue;
			operation(&item, tr_router_route(j), tr_router_module_name(j));
			done[j] = true;
		}
		bson_append_document_end(&paths, &item);
	}
	bson_append_document_end(&doc, &paths);
	BSON_APPEND_DOCUMENT_BEGIN(&doc, "components", &comps);
	BSON_APPEND_DOCUMENT_BEGIN(&comps, "securitySchemes", &schemes);
	BSON_APPEND_DOCUMENT_BEGIN(&schemes, "bearer", &bearer);
	BSON_APPEND_UTF8(&bearer, "type", "http");
	BSON_APPEND_UTF8(&bearer, "scheme", "bearer");
	BSON_APPEND_UTF8(&bearer, "bearerFormat", "JWT");
	bson_append_document_end(&schemes, &bearer);
	bson_append_document_end(&comps, &schemes);
	bson_append_document_end(&doc, &comps);
	free(done);
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
