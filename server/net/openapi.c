/* The OpenAPI document (openapi.h). Every operation comes from a route row:
 * its path parameters from the {name} segments, its query parameters from
 * what the router lets through (tr_router_query_known: the row's `query`,
 * and for TR_PAGED lists limit, cursor, sort and the resource's filters),
 * its body and response schemas from the resource's field table (or the
 * row's `body` table), and its problems from the checks the router and
 * the engine make for a row with those flags. */
#include "openapi.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "resource.h"
#include "router.h"
#include "json.h"
#include "log.h"
#include "openapi_schema.h"
#include "timeline.h"

/* ---- parameters ---- */

static void
param_begin(struct arr *params, bson_t *p, const char *name, size_t len, const char *in,
	    bool required)
{
	BSON_APPEND_DOCUMENT_BEGIN(&params->b, tr_openapi_next_key(params), p);
	bson_append_utf8(p, "name", 4, name, (int)len);
	BSON_APPEND_UTF8(p, "in", in);
	BSON_APPEND_BOOL(p, "required", required);
}

/* {id}, {cid}, ...: record ids; {key}: a balance key (balances.c
 * register_key); {seq}: a position from 1; {name}: a role name. */
static void
path_param_schema(bson_t *s, const char *name, size_t len)
{
	if (len == 3 && memcmp(name, "key", 3) == 0) {
		BSON_APPEND_UTF8(s, "type", "string");
		BSON_APPEND_UTF8(s, "pattern", "^[a-z0-9_.:-]{1,100}$");
	} else if (len == 3 && memcmp(name, "seq", 3) == 0) {
		BSON_APPEND_UTF8(s, "type", "integer");
		BSON_APPEND_INT32(s, "minimum", 1);
	} else if (len == 4 && memcmp(name, "name", 4) == 0) {
		BSON_APPEND_UTF8(s, "type", "string");
		BSON_APPEND_UTF8(s, "pattern", "^[a-z0-9_-]{2,40}$");
	} else {
		tr_openapi_id_schema(s);
	}
}

static void
path_params(struct arr *params, const char *path)
{
	for (const char *s = strchr(path, '{'); s; s = strchr(s + 1, '{')) {
		const char *end = strchr(s, '}');
		bson_t p, sch;
		if (!end)
			break;
		param_begin(params, &p, s + 1, (size_t)(end - s - 1), "path", true);
		BSON_APPEND_DOCUMENT_BEGIN(&p, "schema", &sch);
		path_param_schema(&sch, s + 1, (size_t)(end - s - 1));
		bson_append_document_end(&p, &sch);
		bson_append_document_end(&params->b, &p);
	}
}

static const struct tr_field *
filter_field(const struct tr_route *r, const char *name)
{
	if (!r->resource || !(r->flags & TR_PAGED))
		return NULL;
	for (const struct tr_field *f = r->resource->fields; f->name; f++)
		if ((f->flags & TR_F_FILTER) && strcmp(f->name, name) == 0)
			return f;
	return NULL;
}

/* The values ?sort= takes: each of the list's sorts (the resource's, or
 * the route's), either way. */
static void
sort_schema(bson_t *s, const struct tr_route *r)
{
	const char *const *sorts = r->resource ? r->resource->sorts : r->sorts;
	struct arr a = {.n = 0};
	char buf[80];

	BSON_APPEND_UTF8(s, "type", "string");
	if (!sorts)
		return;
	BSON_APPEND_ARRAY_BEGIN(s, "enum", &a.b);
	for (const char *const *o = sorts; *o; o++) {
		const char *field = (*o)[0] == '-' ? *o + 1 : *o;
		bool seen = false;
		for (const char *const *q = sorts; q < o; q++)
			seen |= strcmp((*q)[0] == '-' ? *q + 1 : *q, field) == 0;
		if (seen) /* "-created_at" and "created_at": once */
			continue;
		tr_openapi_arr_utf8(&a, field);
		snprintf(buf, sizeof(buf), "-%s", field);
		tr_openapi_arr_utf8(&a, buf);
	}
	bson_append_array_end(s, &a.b);
}

/* ?topics=: topic names the modules publish (tr_topic), comma-separated. */
static void
topics_schema(bson_t *s)
{
	char one[1024] = "", pattern[2200];
	size_t n = 0;

	for (size_t m = 0; m < tr_nmodules; m++)
		for (size_t t = 0; t < tr_modules[m]->ntopics; t++)
			for (const char *c = tr_modules[m]->topics[t].name;
			     *c && n + 4 < sizeof(one); c++) {
				if (c == tr_modules[m]->topics[t].name && n)
					one[n++] = '|';
				if (*c == '.')
					one[n++] = '\\';
				one[n++] = *c;
				one[n] = '\0';
			}
	snprintf(pattern, sizeof(pattern), "^(%s)(,(%s))*$", one, one);
	BSON_APPEND_UTF8(s, "type", "string");
	BSON_APPEND_UTF8(s, "pattern", pattern);
}

static void
query_param_schema(bson_t *s, const struct tr_route *r, const char *name)
{
	const struct tr_field *f = filter_field(r, name);
	static const char *const booleans[] = {"true", "false", NULL};
	size_t olen = 0;
	const char *options = tr_router_query_options(r, name, strlen(name), &olen);

	unsigned long lo, hi;
	int used = 0;

	if (options && sscanf(options, "%lu..%lu%n", &lo, &hi, &used) == 2 &&
	    (size_t)used == olen) {
		/* "limit=1..500": an integer range */
		BSON_APPEND_UTF8(s, "type", "integer");
		BSON_APPEND_INT64(s, "minimum", (int64_t)lo);
		BSON_APPEND_INT64(s, "maximum", (int64_t)hi);
	} else if (options) {
		/* "<id>" among the values: a record's id is one too */
		struct arr a = {.n = 0}, any = {.n = 0};
		char value[64];
		bool id = false;
		bson_t words = BSON_INITIALIZER, alt;
		for (size_t i = 0; i < olen;) {
			size_t n = strcspn(options + i, "| ");
			if (n > olen - i)
				n = olen - i;
			snprintf(value, sizeof(value), "%.*s", (int)n, options + i);
			if (strcmp(value, "<id>") == 0)
				id = true;
			i += n + 1;
		}
		BSON_APPEND_UTF8(&words, "type", "string");
		BSON_APPEND_ARRAY_BEGIN(&words, "enum", &a.b);
		for (size_t i = 0; i < olen;) {
			size_t n = strcspn(options + i, "| ");
			if (n > olen - i)
				n = olen - i;
			snprintf(value, sizeof(value), "%.*s", (int)n, options + i);
			if (strcmp(value, "<id>") != 0)
				tr_openapi_arr_utf8(&a, value);
			i += n + 1;
		}
		bson_append_array_end(&words, &a.b);
		if (!id) {
			bson_concat(s, &words);
		} else {
			BSON_APPEND_ARRAY_BEGIN(s, "anyOf", &any.b);
			BSON_APPEND_DOCUMENT(&any.b, "0", &words);
			BSON_APPEND_DOCUMENT_BEGIN(&any.b, "1", &alt);
			tr_openapi_id_schema(&alt);
			bson_append_document_end(&any.b, &alt);
			bson_append_array_end(s, &any.b);
		}
		bson_destroy(&words);
	} else if (strcmp(name, "limit") == 0) {
		BSON_APPEND_UTF8(s, "type", "integer");
		BSON_APPEND_INT32(s, "minimum", 1);
		BSON_APPEND_INT32(s, "maximum", 200);
	} else if (strcmp(name, "sort") == 0 && (r->flags & TR_PAGED)) {
		sort_schema(s, r);
	} else if (f && (f->kind == TR_K_REF || f->kind == TR_K_REFS)) {
		tr_openapi_id_schema(s);
	} else if (f && f->kind == TR_K_ENUM) {
		BSON_APPEND_UTF8(s, "type", "string");
		tr_openapi_str_array(s, "enum", f->options);
	} else if (f && f->kind == TR_K_BOOL) {
		BSON_APPEND_UTF8(s, "type", "string");
		tr_openapi_str_array(s, "enum", booleans);
	} else if (strcmp(name, "from") == 0 || strcmp(name, "to") == 0 ||
		   strcmp(name, "at") == 0) {
		tr_openapi_time_schema(s, false, true);
	} else if (strlen(name) > 3 && strcmp(name + strlen(name) - 3, "_id") == 0) {
		tr_openapi_id_schema(s); /* ?pipeline_id, ?product_id: a record's id */
	} else if (strcmp(name, "cursor") == 0) {
		/* opaque: next_cursor of the previous page, base64url (dblist.c);
		 * one the server did not make is 400 */
		BSON_APPEND_UTF8(s, "type", "string");
		BSON_APPEND_UTF8(s, "pattern", "^[A-Za-z0-9_-]+$");
		BSON_APPEND_INT32(s, "maxLength", 1024);
	} else if (strcmp(name, "currency") == 0) {
		BSON_APPEND_UTF8(s, "type", "string");
		BSON_APPEND_UTF8(s, "pattern", "^[A-Z]{3}$");
	} else if (strcmp(name, "since") == 0) { /* an event id, "<ms>-<seq>" (events.h) */
		BSON_APPEND_UTF8(s, "type", "string");
		BSON_APPEND_UTF8(s, "pattern", "^[0-9]{1,19}-[0-9]{1,19}$");
	} else if (strcmp(name, "topics") == 0) {
		topics_schema(s);
	} else if (strcmp(name, "state") == 0) { /* /v1/jobs: only the dead are listed */
		static const char *const states[] = {"dead", NULL};
		BSON_APPEND_UTF8(s, "type", "string");
		tr_openapi_str_array(s, "enum", states);
	} else {
		/* free text: the query may not carry control bytes (http.c) */
		BSON_APPEND_UTF8(s, "type", "string");
		BSON_APPEND_UTF8(s, "pattern", LINE_PATTERN);
	}
}

struct query_walk {
	const struct tr_route *route;
	struct arr *params;
};

static bool
add_query_param(const char *name, size_t len, void *arg)
{
	struct query_walk *w = arg;
	char key[64];
	bson_t p, sch;

	snprintf(key, sizeof(key), "%.*s", (int)len, name);
	param_begin(w->params, &p, name, len, "query",
		    tr_router_query_required(w->route, name, len));
	BSON_APPEND_DOCUMENT_BEGIN(&p, "schema", &sch);
	query_param_schema(&sch, w->route, key);
	bson_append_document_end(&p, &sch);
	bson_append_document_end(&w->params->b, &p);
	return false;
}

static void
header_param(struct arr *params, const char *name, const char *pattern, const char *about)
{
	bson_t p, sch;

	param_begin(params, &p, name, strlen(name), "header", false);
	BSON_APPEND_UTF8(&p, "description", about);
	BSON_APPEND_DOCUMENT_BEGIN(&p, "schema", &sch);
	BSON_APPEND_UTF8(&sch, "type", "string");
	BSON_APPEND_UTF8(&sch, "pattern", pattern);
	bson_append_document_end(&p, &sch);
	bson_append_document_end(&params->b, &p);
}

/* ---- responses ---- */

/* Engine routes are known by their handler. */
static bool
is_resource_get(const struct tr_route *r)
{
	return r->resource && r->handler == tr_res_get_route;
}

static bool
is_resource_write(const struct tr_route *r)
{
	return r->resource &&
	       (r->handler == tr_res_update_route || r->handler == tr_res_delete_route);
}

/* Success answers of hand-written routes that are not the default (200;
 * 201 for a TR_IDEMPOTENT create; 204 for a DELETE). */
static const struct {
	enum tr_method method;
	const char *path;
	int status, also; /* also: a second success answer, or 0 */
	const char *media;
} successes[] = {
    {TR_POST, "/v1/signup", 201, 0, NULL},
    {TR_POST, "/v1/auth/logout", 204, 0, NULL},
    {TR_POST, "/v1/api-keys", 201, 0, NULL},
    {TR_POST, "/v1/roles", 201, 0, NULL},
    {TR_POST, "/v1/webhooks", 201, 0, NULL},
    /* 200: the same operation_id again answers the movement it made */
    {TR_POST, "/v1/balances/{key}/movements", 201, 200, NULL},
    {TR_POST, "/v1/balances/{key}/movements/{seq}/reverse", 201, 200, NULL},
    {TR_POST, "/v1/jobs/{id}/retry", 202, 0, NULL},
    {TR_POST, "/v1/webhooks/{id}/deliveries/{did}/replay", 202, 0, NULL},
    {TR_POST, "/v1/webhooks/{id}/replay", 202, 0, NULL},
    /* 200: a webhook-id received before answers what it made */
    {TR_POST, "/v1/inbound/{token}", 202, 200, NULL},
    {TR_POST, "/v1/crm/questionnaires/{id}/invitations", 201, 0, NULL},
    {TR_POST, "/v1/questionnaire-links/{token}", 201, 0, NULL},
    {TR_GET, "/metrics", 200, 0, "text/plain"},
    {TR_GET, "/v1/ws", 101, 0, ""},
};

static int
success_status(const struct tr_route *r, int *also, const char **media)
{
	*also = 0;
	*media = "application/json";
	for (size_t i = 0; i < sizeof(successes) / sizeof(successes[0]); i++)
		if (successes[i].method == r->method && strcmp(successes[i].path, r->path) == 0) {
			*also = successes[i].also;
			if (successes[i].media)
				*media = successes[i].media;
			return successes[i].status;
		}
	if (r->method == TR_DELETE)
		return 204;
	if (r->method == TR_POST && (r->flags & TR_IDEMPOTENT))
		return 201;
	return 200;
}

static void
header_doc(bson_t *headers, const char *name, bool required, const char *about)
{
	bson_t h, sch;

	BSON_APPEND_DOCUMENT_BEGIN(headers, name, &h);
	BSON_APPEND_UTF8(&h, "description", about);
	BSON_APPEND_BOOL(&h, "required", required);
	BSON_APPEND_DOCUMENT_BEGIN(&h, "schema", &sch);
	BSON_APPEND_UTF8(&sch, "type", "string");
	bson_append_document_end(&h, &sch);
	bson_append_document_end(headers, &h);
}

/* The answer schema a module declares for a row of its own, or NULL. */
static const struct tr_answer_schema *
declared_answer(const struct tr_route *r)
{
	for (size_t m = 0; m < tr_nmodules; m++)
		for (size_t i = 0; i < tr_modules[m]->nanswers; i++) {
			const struct tr_answer_schema *a = &tr_modules[m]->answers[i];
			if (a->method == r->method && strcmp(a->path, r->path) == 0)
				return a;
		}
	return NULL;
}

/* The schema a route's success answer carries. */
static void
answer_schema(bson_t *media, const struct tr_route *r)
{
	const struct tr_answer_schema *declared = declared_answer(r);
	char name[96];
	bson_t s;

	if (declared) {
		tr_openapi_ref_to(media, "schema", "schemas", declared->name);
	} else if (r->handler == tr_timeline_route) {
		tr_openapi_ref_to(media, "schema", "schemas", "Timeline");
	} else if (r->resource && (r->flags & TR_PAGED)) {
		tr_openapi_schema_name(name, sizeof(name), r->resource, "List");
		tr_openapi_ref_to(media, "schema", "schemas", name);
	} else if (r->resource &&
		   (r->handler == tr_res_create_route || r->handler == tr_res_get_route ||
		    r->handler == tr_res_update_route)) {
		tr_openapi_schema_name(name, sizeof(name), r->resource, "");
		tr_openapi_ref_to(media, "schema", "schemas", name);
	} else if (r->flags & TR_PAGED) {
		tr_openapi_ref_to(media, "schema", "schemas", "List");
	} else {
		BSON_APPEND_DOCUMENT_BEGIN(media, "schema", &s);
		BSON_APPEND_UTF8(&s, "type",
				 strcmp(r->path, "/metrics") == 0 ? "string" : "object");
		if (strcmp(r->path, "/metrics") != 0)
			BSON_APPEND_BOOL(&s, "additionalProperties", true);
		bson_append_document_end(media, &s);
	}
}

static void
success_response(bson_t *responses, const struct tr_route *r, int status, const char *media)
{
	bson_t resp, content, m, headers;
	char code[8];

	snprintf(code, sizeof(code), "%d", status);
	BSON_APPEND_DOCUMENT_BEGIN(responses, code, &resp);
	BSON_APPEND_UTF8(&resp, "description",
			 status == 201	 ? "Created."
			 : status == 202 ? "Accepted."
			 : status == 204 ? "Done; no body."
			 : status == 101 ? "Switching to WebSocket."
					 : "OK.");
	if (status == 201 || is_resource_get(r)) {
		BSON_APPEND_DOCUMENT_BEGIN(&resp, "headers", &headers);
		if (status == 201 && r->resource)
			header_doc(&headers, "Location", true, "The created record's path.");
		if (is_resource_get(r))
			header_doc(&headers, "ETag", true, "The record's version, quoted.");
		bson_append_document_end(&resp, &headers);
	}
	if (status != 204 && status != 101 && media[0]) {
		BSON_APPEND_DOCUMENT_BEGIN(&resp, "content", &content);
		BSON_APPEND_DOCUMENT_BEGIN(&content, media, &m);
		answer_schema(&m, r);
		bson_append_document_end(&content, &m);
		bson_append_document_end(&resp, &content);
	}
	bson_append_document_end(responses, &resp);
}

/* Rows that read a tenant's event stream from an id: 410 resync-required
 * when the stream no longer reaches back to it. Those with a `since` in
 * the body are listed; a `since` in the query says so itself. */
static const struct {
	enum tr_method method;
	const char *path;
} stream_readers[] = {
    {TR_POST, "/v1/webhooks/{id}/replay"},
};

static bool
reads_stream(const struct tr_route *r)
{
	for (size_t i = 0; i < sizeof(stream_readers) / sizeof(stream_readers[0]); i++)
		if (stream_readers[i].method == r->method &&
		    strcmp(stream_readers[i].path, r->path) == 0)
			return true;
	return r->query && tr_router_query_known(r, "since");
}

/* The problems a row can answer, from what is checked for its flags. */
static unsigned
problem_codes(const struct tr_route *r, int *codes)
{
	unsigned n = 0;
	bool pub = r->flags & TR_PUBLIC, body = r->flags & TR_JSON_BODY;
	bool reads = (r->flags & TR_PAGED) || r->query;
	/* a public credential url (a questionnaire link) is checked and rate
	 * limited by its handler, and says when its state refuses */
	bool link = pub && (r->flags & TR_SECRET_PATH);

	codes[n++] = 400; /* malformed request, unknown query parameter */
	/* a public row with a body checks credentials of its own (login,
	 * refresh: 401; signup switched off: 403) */
	if (!pub || body)
		codes[n++] = 401, codes[n++] = 403;
	/* a record named in the path, or by a query parameter (?pipeline_id) */
	if (strchr(r->path, '{') || (r->query && strstr(r->query, "_id")))
		codes[n++] = 404;
	if (!pub && r->method != TR_GET)
		codes[n++] = 409;
	else if (pub && (body || link))
		codes[n++] = 409;
	if (reads_stream(r))
		codes[n++] = 410;
	if (is_resource_write(r))
		codes[n++] = 412;
	if (body)
		codes[n++] = 413, codes[n++] = 415;
	if (body || reads || (r->flags & TR_IDEMPOTENT) || (!pub && r->method != TR_GET))
		codes[n++] = 422;
	if (strcmp(r->path, "/v1/ws") == 0)
		codes[n++] = 426;
	if (!pub || body || link)
		codes[n++] = 429;
	if (!(r->flags & TR_INLINE) || strcmp(r->path, "/readyz") == 0)
		codes[n++] = 503;
	return n;
}

static void
responses_of(bson_t *op, const struct tr_route *r)
{
	bson_t responses;
	int codes[16], also;
	const char *media;
	int status = success_status(r, &also, &media);
	unsigned n = problem_codes(r, codes);
	char code[8];

	BSON_APPEND_DOCUMENT_BEGIN(op, "responses", &responses);
	success_response(&responses, r, status, media);
	if (also)
		success_response(&responses, r, also, media);
	for (unsigned i = 0; i < n; i++) {
		char name[16];
		snprintf(code, sizeof(code), "%d", codes[i]);
		snprintf(name, sizeof(name), "Problem%d", codes[i]);
		tr_openapi_ref_to(&responses, code, "responses", name);
	}
	bson_append_document_end(op, &responses);
}

/* ---- operations ---- */

static void
operation_id(char *out, size_t len, const struct tr_route *r)
{
	const struct tr_resource *e = r->resource;
	const char *verb = NULL;

	out[0] = '\0';
	if (e && r->handler == tr_res_list_route) {
		const char *plural = strrchr(r->path, '/');
		snprintf(out, len, "list");
		tr_openapi_camel(out, len, plural ? plural + 1 : e->name, true);
		return;
	}
	if (e && r->handler == tr_res_create_route)
		verb = "create";
	else if (e && r->handler == tr_res_get_route)
		verb = "get";
	else if (e && r->handler == tr_res_update_route)
		verb = "update";
	else if (e && r->handler == tr_res_delete_route)
		verb = "delete";
	if (verb) {
		snprintf(out, len, "%s", verb);
		tr_openapi_camel(out, len, e->name, true);
		return;
	}
	/* others: the method and the path, "postCrmLeadsIdConvert" */
	for (const char *m = tr_method_name(r->method); *m && strlen(out) + 1 < len; m++) {
		size_t k = strlen(out);
		out[k] = (char)(*m - 'A' + 'a');
		out[k + 1] = '\0';
	}
	tr_openapi_camel(out, len, strncmp(r->path, "/v1/", 4) == 0 ? r->path + 4 : r->path, true);
}

static void
security_of(bson_t *op, const struct tr_route *r)
{
	struct arr sec = {.n = 0};
	bson_t item, none;

	BSON_APPEND_ARRAY_BEGIN(op, "security", &sec.b);
	if (!(r->flags & TR_PUBLIC)) {
		/* inline rows answer from the session on the loop thread: users
		 * only, an API key is refused (403) */
		static const char *const schemes[] = {"bearer", "apiKey"};
		for (size_t i = 0; i < ((r->flags & TR_INLINE) ? 1u : 2u); i++) {
			BSON_APPEND_DOCUMENT_BEGIN(&sec.b, tr_openapi_next_key(&sec), &item);
			BSON_APPEND_ARRAY_BEGIN(&item, schemes[i], &none);
			bson_append_array_end(&item, &none);
			bson_append_document_end(&sec.b, &item);
		}
	}
	bson_append_array_end(op, &sec.b);
}

static void
request_body(bson_t *op, const struct tr_route *r)
{
	bson_t body, content, media, s;
	char name[96];

	if (!(r->flags & TR_JSON_BODY))
		return;
	BSON_APPEND_DOCUMENT_BEGIN(op, "requestBody", &body);
	BSON_APPEND_BOOL(&body, "required", true);
	BSON_APPEND_DOCUMENT_BEGIN(&body, "content", &content);
	BSON_APPEND_DOCUMENT_BEGIN(&content, "application/json", &media);
	if (r->resource && r->handler == tr_res_create_route) {
		tr_openapi_schema_name(name, sizeof(name), r->resource, "Create");
		tr_openapi_ref_to(&media, "schema", "schemas", name);
	} else if (r->resource && r->handler == tr_res_update_route) {
		tr_openapi_schema_name(name, sizeof(name), r->resource, "Update");
		tr_openapi_ref_to(&media, "schema", "schemas", name);
	} else {
		BSON_APPEND_DOCUMENT_BEGIN(&media, "schema", &s);
		BSON_APPEND_UTF8(&s, "type", "object");
		BSON_APPEND_BOOL(&s, "additionalProperties", true);
		bson_append_document_end(&media, &s);
	}
	bson_append_document_end(&content, &media);
	if (r->flags & TR_XML_BODY) {
		BSON_APPEND_DOCUMENT_BEGIN(&content, "application/xml", &media);
		BSON_APPEND_DOCUMENT_BEGIN(&media, "schema", &s);
		BSON_APPEND_UTF8(&s, "type", "string");
		bson_append_document_end(&media, &s);
		bson_append_document_end(&content, &media);
	}
	bson_append_document_end(&body, &content);
	bson_append_document_end(op, &body);
}

/* Operation ids seen so far, to keep them unique. */
struct op_ids {
	char (*ids)[MAX_OPERATION_ID];
	int n;
};

static void
unique_id(struct op_ids *seen, char *id, size_t len)
{
	size_t base = strlen(id);

	for (int k = 2;; k++) {
		bool taken = false;
		for (int i = 0; i < seen->n && !taken; i++)
			taken = strcmp(seen->ids[i], id) == 0;
		if (!taken)
			break;
		snprintf(id + base, len - base, "%d", k);
	}
	snprintf(seen->ids[seen->n++], MAX_OPERATION_ID, "%s", id);
}

static void
operation(bson_t *path_item, const struct tr_route *r, const char *module, struct op_ids *seen)
{
	bson_t op;
	struct arr params = {.n = 0}, tags = {.n = 0};
	char method[8], id[MAX_OPERATION_ID];
	struct query_walk walk = {r, &params};
	size_t i;

	for (i = 0; tr_method_name(r->method)[i] && i < sizeof(method) - 1; i++)
		method[i] = (char)(tr_method_name(r->method)[i] - 'A' + 'a');
	method[i] = '\0';
	operation_id(id, sizeof(id), r);
	unique_id(seen, id, sizeof(id));
	BSON_APPEND_DOCUMENT_BEGIN(path_item, method, &op);
	BSON_APPEND_UTF8(&op, "operationId", id);
	BSON_APPEND_UTF8(&op, "summary", r->summary ? r->summary : "");
	BSON_APPEND_ARRAY_BEGIN(&op, "tags", &tags.b);
	tr_openapi_arr_utf8(&tags, module);
	bson_append_array_end(&op, &tags.b);
	BSON_APPEND_ARRAY_BEGIN(&op, "parameters", &params.b);
	path_params(&params, r->path);
	tr_router_query_each(r, add_query_param, &walk);
	if (is_resource_write(r))
		/* quoted or bare; an empty header counts as absent */
		header_param(&params, "If-Match",
			     "^[ \t]*(\"0*[1-9][0-9]{0,17}\"|0*[1-9][0-9]{0,17}|\\*|)[ \t]*$",
			     "The version the change was made against (the ETag): 412 when the "
			     "record moved on.");
	if (r->flags & TR_IDEMPOTENT)
		header_param(&params, "Idempotency-Key", "^([!-~]{1,255}|)$",
			     "The same key with the same body within 24 h answers the first "
			     "response again; with another body, 422.");
	if (r->flags & TR_SIGNED) {
		header_param(&params, "webhook-id", "^[!-~]{1,200}$",
			     "Standard Webhooks: the message id; a second delivery of the same "
			     "id makes nothing new.");
		header_param(&params, "webhook-timestamp", "^[0-9]{1,12}$",
			     "Standard Webhooks: Unix seconds; more than the tolerance away: 401.");
		header_param(&params, "webhook-signature", "^[!-~ ]{1,2000}$",
			     "Standard Webhooks: space-separated v1,<base64 HMAC-SHA256>.");
	}
	bson_append_array_end(&op, &params.b);
	request_body(&op, r);
	security_of(&op, r);
	responses_of(&op, r);
	bson_append_document_end(path_item, &op);
}

/* ---- components ---- */

static void
problem_schema(bson_t *schemas)
{
	bson_t s, props, p, items, ip, ipp;
	static const char *const required[] = {"type", "title", "status", NULL};
	static const char *const item_required[] = {"field", "message", NULL};

	BSON_APPEND_DOCUMENT_BEGIN(schemas, "Problem", &s);
	BSON_APPEND_UTF8(&s, "type", "object");
	BSON_APPEND_DOCUMENT_BEGIN(&s, "properties", &props);
	BSON_APPEND_DOCUMENT_BEGIN(&props, "type", &p);
	BSON_APPEND_UTF8(&p, "type", "string");
	BSON_APPEND_UTF8(&p, "format", "uri");
	bson_append_document_end(&props, &p);
	BSON_APPEND_DOCUMENT_BEGIN(&props, "title", &p);
	BSON_APPEND_UTF8(&p, "type", "string");
	bson_append_document_end(&props, &p);
	BSON_APPEND_DOCUMENT_BEGIN(&props, "status", &p);
	BSON_APPEND_UTF8(&p, "type", "integer");
	bson_append_document_end(&props, &p);
	BSON_APPEND_DOCUMENT_BEGIN(&props, "detail", &p);
	BSON_APPEND_UTF8(&p, "type", "string");
	bson_append_document_end(&props, &p);
	BSON_APPEND_DOCUMENT_BEGIN(&props, "errors", &p);
	BSON_APPEND_UTF8(&p, "type", "array");
	BSON_APPEND_DOCUMENT_BEGIN(&p, "items", &items);
	BSON_APPEND_UTF8(&items, "type", "object");
	BSON_APPEND_DOCUMENT_BEGIN(&items, "properties", &ip);
	BSON_APPEND_DOCUMENT_BEGIN(&ip, "field", &ipp);
	BSON_APPEND_UTF8(&ipp, "type", "string");
	bson_append_document_end(&ip, &ipp);
	BSON_APPEND_DOCUMENT_BEGIN(&ip, "message", &ipp);
	BSON_APPEND_UTF8(&ipp, "type", "string");
	bson_append_document_end(&ip, &ipp);
	bson_append_document_end(&items, &ip);
	tr_openapi_str_array(&items, "required", item_required);
	bson_append_document_end(&p, &items);
	bson_append_document_end(&props, &p);
	BSON_APPEND_DOCUMENT_BEGIN(&props, "current_version", &p);
	BSON_APPEND_UTF8(&p, "type", "integer");
	bson_append_document_end(&props, &p);
	bson_append_document_end(&s, &props);
	tr_openapi_str_array(&s, "required", required);
	bson_append_document_end(schemas, &s);
}

static void
problem_responses(bson_t *comps)
{
	static const struct {
		int status;
		const char *about;
	} problems[] = {
	    {400, "Malformed request (bad JSON, unknown query parameter, bad header)."},
	    {401, "No or bad credentials."},
	    {403, "Not allowed."},
	    {404, "Not found (also another tenant's record)."},
	    {409, "Conflict: a duplicate, or the state does not allow it."},
	    {410, "Gone: the event stream no longer reaches back to that id (resync-required)."},
	    {412, "The record's version moved on (If-Match)."},
	    {413, "Body too large."},
	    {415, "The body is not JSON."},
	    {422, "Validation failed; errors name the fields."},
	    {426, "Upgrade required (WebSocket)."},
	    {429, "Rate limited; Retry-After says when to come back."},
	    {503, "A dependency is down; Retry-After says when to come back."},
	};
	bson_t all, r, content, media, headers;
	char name[16];

	BSON_APPEND_DOCUMENT_BEGIN(comps, "responses", &all);
	for (size_t i = 0; i < sizeof(problems) / sizeof(problems[0]); i++) {
		snprintf(name, sizeof(name), "Problem%d", problems[i].status);
		BSON_APPEND_DOCUMENT_BEGIN(&all, name, &r);
		BSON_APPEND_UTF8(&r, "description", problems[i].about);
		if (problems[i].status == 429 || problems[i].status == 503) {
			BSON_APPEND_DOCUMENT_BEGIN(&r, "headers", &headers);
			header_doc(&headers, "Retry-After", problems[i].status == 429,
				   "Seconds to wait.");
			bson_append_document_end(&r, &headers);
		}
		BSON_APPEND_DOCUMENT_BEGIN(&r, "content", &content);
		BSON_APPEND_DOCUMENT_BEGIN(&content, "application/problem+json", &media);
		tr_openapi_ref_to(&media, "schema", "schemas", "Problem");
		bson_append_document_end(&content, &media);
		bson_append_document_end(&r, &content);
		bson_append_document_end(&all, &r);
	}
	bson_append_document_end(comps, &all);
}

static void
resource_schemas(bson_t *schemas, const struct tr_resource *e)
{
	bson_t s;
	char name[96];

	tr_openapi_schema_name(name, sizeof(name), e, "");
	BSON_APPEND_DOCUMENT_BEGIN(schemas, name, &s);
	tr_openapi_record_schema(&s, e);
	bson_append_document_end(schemas, &s);
	tr_openapi_schema_name(name, sizeof(name), e, "List");
	BSON_APPEND_DOCUMENT_BEGIN(schemas, name, &s);
	tr_openapi_list_schema(&s, e);
	bson_append_document_end(schemas, &s);
	if (!e->no_create) {
		tr_openapi_schema_name(name, sizeof(name), e, "Create");
		BSON_APPEND_DOCUMENT_BEGIN(schemas, name, &s);
		tr_openapi_body_schema(&s, e->fields, true);
		bson_append_document_end(schemas, &s);
	}
	tr_openapi_schema_name(name, sizeof(name), e, "Update");
	BSON_APPEND_DOCUMENT_BEGIN(schemas, name, &s);
	tr_openapi_body_schema(&s, e->fields, false);
	bson_append_document_end(schemas, &s);
}

/* One item of a client's timeline (timeline.h) of kind k: its type, its
 * time, and under the kind's name the record (a resource's, as GET shows
 * it) or the module's summary of it. */
static void
timeline_item_schema(bson_t *s, const struct tr_timeline_kind *k)
{
	const char *const required[] = {"type", "at", k->name, NULL};
	const char *const type[] = {k->name, NULL};
	bson_t props, p, sprops, id;
	char name[96];

	BSON_APPEND_UTF8(s, "type", "object");
	if (k->about)
		BSON_APPEND_UTF8(s, "description", k->about);
	BSON_APPEND_DOCUMENT_BEGIN(s, "properties", &props);
	BSON_APPEND_DOCUMENT_BEGIN(&props, "type", &p);
	BSON_APPEND_UTF8(&p, "type", "string");
	tr_openapi_str_array(&p, "enum", type);
	bson_append_document_end(&props, &p);
	BSON_APPEND_DOCUMENT_BEGIN(&props, "at", &p);
	tr_openapi_time_schema(&p, false, false);
	bson_append_document_end(&props, &p);
	if (k->record) {
		tr_openapi_schema_name(name, sizeof(name), k->record, "");
		tr_openapi_ref_to(&props, k->name, "schemas", name);
	} else {
		static const char *const has_id[] = {"id", NULL};
		BSON_APPEND_DOCUMENT_BEGIN(&props, k->name, &p);
		BSON_APPEND_UTF8(&p, "type", "object");
		BSON_APPEND_DOCUMENT_BEGIN(&p, "properties", &sprops);
		BSON_APPEND_DOCUMENT_BEGIN(&sprops, "id", &id);
		tr_openapi_id_schema(&id);
		bson_append_document_end(&sprops, &id);
		bson_append_document_end(&p, &sprops);
		tr_openapi_str_array(&p, "required", has_id);
		bson_append_document_end(&props, &p);
	}
	bson_append_document_end(s, &props);
	tr_openapi_str_array(s, "required", required);
	BSON_APPEND_BOOL(s, "additionalProperties", false);
}

/* A page of a client's timeline: one item schema per kind the modules
 * declare, told apart by "type". */
static void
timeline_schema(bson_t *schemas)
{
	static const char *const required[] = {"items", "next_cursor", NULL};
	struct arr kinds = {.n = 0}, cursor = {.n = 0};
	bson_t s, props, p, items, k;
	size_t declared = 0;

	for (size_t m = 0; m < tr_nmodules; m++)
		declared += tr_modules[m]->timeline ? tr_modules[m]->timeline->nkinds : 0;
	BSON_APPEND_DOCUMENT_BEGIN(schemas, "Timeline", &s);
	BSON_APPEND_UTF8(&s, "type", "object");
	BSON_APPEND_DOCUMENT_BEGIN(&s, "properties", &props);
	BSON_APPEND_DOCUMENT_BEGIN(&props, "items", &p);
	BSON_APPEND_UTF8(&p, "type", "array");
	BSON_APPEND_DOCUMENT_BEGIN(&p, "items", &items);
	if (declared == 0) /* oneOf may not be empty */
		BSON_APPEND_UTF8(&items, "type", "object");
	else
		BSON_APPEND_ARRAY_BEGIN(&items, "oneOf", &kinds.b);
	for (size_t m = 0; declared && m < tr_nmodules; m++) {
		const struct tr_timeline *t = tr_modules[m]->timeline;
		for (size_t i = 0; t && i < t->nkinds; i++) {
			BSON_APPEND_DOCUMENT_BEGIN(&kinds.b, tr_openapi_next_key(&kinds), &k);
			timeline_item_schema(&k, &t->kinds[i]);
			bson_append_document_end(&kinds.b, &k);
		}
	}
	if (declared)
		bson_append_array_end(&items, &kinds.b);
	bson_append_document_end(&p, &items);
	bson_append_document_end(&props, &p);
	BSON_APPEND_DOCUMENT_BEGIN(&props, "next_cursor", &p);
	BSON_APPEND_ARRAY_BEGIN(&p, "type", &cursor.b);
	tr_openapi_arr_utf8(&cursor, "string");
	tr_openapi_arr_utf8(&cursor, "null");
	bson_append_array_end(&p, &cursor.b);
	bson_append_document_end(&props, &p);
	bson_append_document_end(&s, &props);
	tr_openapi_str_array(&s, "required", required);
	bson_append_document_end(schemas, &s);
}

/* The answers modules declare (tr_answer_schema), parsed from their JSON
 * text. One that does not parse is a module's bug: logged, and documented
 * as any object so that the document stays valid. */
static void
answer_schemas(bson_t *schemas)
{
	for (size_t m = 0; m < tr_nmodules; m++)
		for (size_t i = 0; i < tr_modules[m]->nanswers; i++) {
			const struct tr_answer_schema *a = &tr_modules[m]->answers[i];
			bson_t parsed, any = BSON_INITIALIZER;
			char err[128];
			if (tr_json_parse(a->schema, strlen(a->schema), &parsed, err,
					  sizeof(err)) == 0) {
				BSON_APPEND_DOCUMENT(schemas, a->name, &parsed);
			} else {
				tr_error("openapi: the schema %s of module %s does not parse: %s",
					 a->name, tr_modules[m]->name, err);
				BSON_APPEND_UTF8(&any, "type", "object");
				BSON_APPEND_DOCUMENT(schemas, a->name, &any);
			}
			bson_destroy(&parsed);
			bson_destroy(&any);
		}
}

static void
components(bson_t *doc)
{
	bson_t comps, schemas, schemes, s;

	BSON_APPEND_DOCUMENT_BEGIN(doc, "components", &comps);
	BSON_APPEND_DOCUMENT_BEGIN(&comps, "schemas", &schemas);
	problem_schema(&schemas);
	BSON_APPEND_DOCUMENT_BEGIN(&schemas, "List", &s);
	tr_openapi_list_schema(&s, NULL);
	bson_append_document_end(&schemas, &s);
	timeline_schema(&schemas);
	answer_schemas(&schemas);
	for (size_t m = 0; m < tr_nmodules; m++)
		for (size_t i = 0; i < tr_modules[m]->nresources; i++)
			resource_schemas(&schemas, tr_modules[m]->resources[i]);
	bson_append_document_end(&comps, &schemas);
	problem_responses(&comps);
	BSON_APPEND_DOCUMENT_BEGIN(&comps, "securitySchemes", &schemes);
	BSON_APPEND_DOCUMENT_BEGIN(&schemes, "bearer", &s);
	BSON_APPEND_UTF8(&s, "type", "http");
	BSON_APPEND_UTF8(&s, "scheme", "bearer");
	BSON_APPEND_UTF8(&s, "bearerFormat", "JWT");
	bson_append_document_end(&schemes, &s);
	BSON_APPEND_DOCUMENT_BEGIN(&schemes, "apiKey", &s);
	BSON_APPEND_UTF8(&s, "type", "apiKey");
	BSON_APPEND_UTF8(&s, "in", "header");
	BSON_APPEND_UTF8(&s, "name", "X-API-Key");
	bson_append_document_end(&schemes, &s);
	bson_append_document_end(&comps, &schemes);
	bson_append_document_end(doc, &comps);
}

void
tr_openapi_build(bson_t *doc)
{
	bson_t info, paths;
	int n = tr_router_count();
	bool *done = calloc((size_t)n + 1, sizeof(bool));
	struct op_ids seen = {calloc((size_t)n + 1, MAX_OPERATION_ID), 0};

	BSON_APPEND_UTF8(doc, "openapi", "3.1.0");
	BSON_APPEND_DOCUMENT_BEGIN(doc, "info", &info);
	BSON_APPEND_UTF8(&info, "title", "Trellis API");
	BSON_APPEND_UTF8(&info, "version", "1");
	bson_append_document_end(doc, &info);
	BSON_APPEND_DOCUMENT_BEGIN(doc, "paths", &paths);
	for (int i = 0; i < n && done && seen.ids; i++) {
		if (done[i] || (tr_router_route(i)->flags & TR_STATIC))
			continue;
		bson_t item;
		const char *path = tr_router_route(i)->path;
		BSON_APPEND_DOCUMENT_BEGIN(&paths, path, &item);
		for (int j = i; j < n; j++) {
			if (strcmp(tr_router_route(j)->path, path) != 0)
				continue;
			operation(&item, tr_router_route(j), tr_router_module_name(j), &seen);
			done[j] = true;
		}
		bson_append_document_end(&paths, &item);
	}
	bson_append_document_end(doc, &paths);
	components(doc);
	free(seen.ids);
	free(done);
}
