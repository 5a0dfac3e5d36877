/* Routes called without a request (direct.h): the route's own handler,
 * or the resource engine's create, get and change with the module's hooks,
 * on a request made here - the caller's tenant and user as principal, the
 * id as the path's parameter, the body, the Idempotency-Key.
 *
 * What the router does before a handler is not done here: there is no
 * authentication, rate limit or permission check (the caller is trusted,
 * as a job is), and no Idempotency-Key store. */
#include <stdio.h>
#include <string.h>

#include "db.h"
#include "direct.h"
#include "events.h"
#include "resource.h"

/* The resource of module m whose create ("POST <path>"), get ("GET
 * <path>/{id}") or change ("PATCH <path>/{id}") route is named, or NULL;
 * its method tells which. */
static const struct tr_resource *
resource_route(const struct tr_module *m, enum tr_method method, const char *path)
{
	for (size_t i = 0; i < m->nresources; i++) {
		const struct tr_resource *e = m->resources[i];
		size_t n = strlen(e->path);
		if (strncmp(path, e->path, n) != 0)
			continue;
		if (method == TR_POST && path[n] == '\0' && !e->no_create)
			return e;
		if ((method == TR_GET || (method == TR_PATCH && !e->immutable)) &&
		    strcmp(path + n, "/{id}") == 0)
			return e;
	}
	return NULL;
}

/* The problem a call ended with, as the answer: {status, type, detail,
 * errors: [{field, message}]}. */
static void
problem_answer(const struct tr_resp *r, bson_t *answer)
{
	bson_t errors, item;
	int i = 0;

	BSON_APPEND_INT32(answer, "status", r->status);
	BSON_APPEND_UTF8(answer, "type", r->problem_slug ? r->problem_slug : "");
	BSON_APPEND_UTF8(answer, "detail", r->problem_detail ? r->problem_detail : "");
	BSON_APPEND_ARRAY_BEGIN(answer, "errors", &errors);
	for (const struct tr_problem_field *f = r->problem_fields; f; f = f->next) {
		char key[16];
		const char *k;
		bson_uint32_to_string((uint32_t)i++, &k, key, sizeof(key));
		BSON_APPEND_DOCUMENT_BEGIN(&errors, k, &item);
		BSON_APPEND_UTF8(&item, "field", f->field ? f->field : "");
		BSON_APPEND_UTF8(&item, "message", f->message ? f->message : "");
		bson_append_document_end(&errors, &item);
	}
	bson_append_array_end(answer, &errors);
}

int
tr_direct(struct tr_db *db, const bson_oid_t *tenant, const bson_oid_t *user, const char *route,
	  const char *id, const bson_t *body, const char *key, bool publish, bson_t *answer)
{
	struct tr_arena arena;
	struct tr_req req;
	struct tr_resp resp;
	struct tr_ctx c = {.req = &req, .resp = &resp, .db = db};
	const struct tr_route *row = NULL;
	const struct tr_resource *e = NULL;
	enum tr_method method;
	const char *path;

	bson_init(answer);
	if (strncmp(route, "GET ", 4) == 0)
		method = TR_GET, path = route + 4;
	else if (strncmp(route, "POST ", 5) == 0)
		method = TR_POST, path = route + 5;
	else if (strncmp(route, "PATCH ", 6) == 0)
		method = TR_PATCH, path = route + 6;
	else
		return TR_EINVALID;
	for (size_t m = 0; m < tr_nmodules && !row; m++)
		for (size_t i = 0; i < tr_modules[m]->nroutes && !row; i++)
			if (tr_modules[m]->routes[i].method == method &&
			    strcmp(tr_modules[m]->routes[i].path, path) == 0)
				row = &tr_modules[m]->routes[i];
	for (size_t m = 0; m < tr_nmodules && !row && !e; m++)
		e = resource_route(tr_modules[m], method, path);
	if (!row && !e)
		return TR_EINVALID;
	if ((strstr(path, "{id}") != NULL) != (id != NULL))
		return TR_EINVALID;

	tr_arena_init(&arena);
	memset(&req, 0, sizeof(req));
	memset(&resp, 0, sizeof(resp));
	req.method = method;
	req.path = path;
	req.route = row;
	req.arena = &arena;
	req.authenticated = true;
	req.principal.tenant_id = *tenant;
	req.principal.user_id = *user;
	bson_oid_to_string(tenant, req.principal.tenant_hex);
	bson_oid_to_string(user, req.principal.user_hex);
	req.principal.perms = "";
	snprintf(req.request_id, sizeof(req.request_id), "direct");
	if (id) {
		req.params[0] = tr_arena_strdup(&arena, id);
		req.nparams = 1;
	}
	req.idempotency_key = key ? tr_arena_strdup(&arena, key) : NULL;
	if (body)
		bson_copy_to(body, &req.body);
	else
		bson_init(&req.body);
	req.has_body = true;

	if (row)
		row->handler(&c);
	else if (method == TR_GET)
		tr_res_get(&c, e);
	else if (method == TR_PATCH)
		tr_res_update(&c, e);
	else
		tr_res_create(&c, e);

	if (resp.status == 0)
		tr_problem(&c, 500, "internal", "the handler produced no response");
	if (resp.problem_slug)
		problem_answer(&resp, answer);
	else if (resp.has_body)
		bson_concat(answer, &resp.body);
	int status = resp.status;
	if (resp.has_body)
		bson_destroy(&resp.body);
	bson_destroy(&req.body);
	if (publish)
		tr_events_flush(resp.events);
	else
		tr_events_leave(resp.events);
	tr_arena_free(&arena);
	return status;
}
