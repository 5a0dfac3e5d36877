/* Building responses: the helpers handlers call, and rendering a response
 * into bytes (any thread; the worker renders what it produced). */
#include "response.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "json.h"
#include "util.h"

const char *
tr_param(const struct tr_ctx *c, int i)
{
	return i < c->req->nparams ? c->req->params[i] : NULL;
}

const char *
tr_query(const struct tr_ctx *c, const char *name)
{
	for (int i = 0; i < c->req->nquery; i++)
		if (strcmp(c->req->query[i].name, name) == 0)
			return c->req->query[i].value;
	return NULL;
}

void
tr_reply_json(struct tr_ctx *c, int status, bson_t *doc)
{
	if (c->resp->has_body)
		bson_destroy(&c->resp->body);
	c->resp->status = status;
	bson_steal(&c->resp->body, doc);
	bson_init(doc);
	c->resp->has_body = true;
	c->resp->content_type = "application/json";
}

void
tr_reply_text(struct tr_ctx *c, int status, const char *content_type, const char *text, size_t len)
{
	c->resp->status = status;
	c->resp->content_type = content_type;
	c->resp->text = text;
	c->resp->text_len = len;
}

void
tr_reply_empty(struct tr_ctx *c, int status)
{
	c->resp->status = status;
}

void
tr_reply_header(struct tr_ctx *c, const char *name, const char *value)
{
	struct tr_resp *r = c->resp;

	if (r->nheaders >= TR_RESP_HEADERS)
		return;
	r->headers[r->nheaders].name = name;
	r->headers[r->nheaders].value = value;
	r->nheaders++;
}

static const char *
title_for(int status)
{
	switch (status) {
	case 400:
		return "Malformed request";
	case 401:
		return "Unauthorized";
	case 403:
		return "Forbidden";
	case 404:
		return "Not found";
	case 405:
		return "Method not allowed";
	case 409:
		return "Conflict";
	case 410:
		return "Gone";
	case 411:
		return "Length required";
	case 412:
		return "Precondition failed";
	case 413:
		return "Payload too large";
	case 415:
		return "Unsupported media type";
	case 422:
		return "Validation failed";
	case 426:
		return "Upgrade required";
	case 429:
		return "Too many requests";
	case 503:
		return "Service unavailable";
	default:
		return status >= 500 ? "Internal error" : "Error";
	}
}

void
tr_problem(struct tr_ctx *c, int status, const char *slug, const char *detail)
{
	struct tr_resp *r = c->resp;

	r->status = status;
	r->problem_slug = slug;
	r->problem_title = title_for(status);
	r->problem_detail = detail;
}

void
tr_problem_field(struct tr_ctx *c, const char *field, const char *message)
{
	struct tr_resp *r = c->resp;
	struct tr_problem_field *f = tr_arena_alloc(c->req->arena, sizeof(*f));

	if (!r->problem_slug)
		tr_problem(c, 422, "validation-failed", "the request body has invalid fields");
	if (!f)
		return;
	f->field = field;
	f->message = message;
	if (r->problem_fields_tail)
		r->problem_fields_tail->next = f;
	else
		r->problem_fields = f;
	r->problem_fields_tail = f;
}

void
tr_sessions_changed(struct tr_ctx *c, const char *tid, const char *uid, const char *sid)
{
	struct tr_resp *r = c->resp;

	r->evict = true;
	r->evict_tid = tr_arena_strdup(c->req->arena, tid);
	r->evict_uid = uid ? tr_arena_strdup(c->req->arena, uid) : NULL;
	r->evict_sid = sid ? tr_arena_strdup(c->req->arena, sid) : NULL;
}

void
tr_problem_member(struct tr_ctx *c, const char *name, long long value)
{
	c->resp->problem_member = name;
	c->resp->problem_member_value = value;
}

/* A refused write names the version it found (and sends it as ETag). */
static void
conflict_version(struct tr_ctx *c)
{
	long long v = c->db ? tr_db_conflict_version(c->db) : 0;

	if (v > 0) {
		c->resp->problem_version = v;
		c->resp->etag_version = v;
	}
}

void
tr_problem_from_err(struct tr_ctx *c, int err)
{
	switch (err) {
	case TR_ENOTFOUND:
		tr_problem(c, 404, "not-found", "no such record");
		break;
	case TR_EVERSION:
		tr_problem(c, 412, "version-mismatch",
			   "the record changed since the version in If-Match; fetch it again");
		conflict_version(c);
		break;
	case TR_EBUSY:
		tr_problem(c, 409, "record-busy",
			   "another request is changing this record right now; fetch it again "
			   "and retry");
		c->resp->retry_after = 1;
		conflict_version(c);
		break;
	case TR_EDUPLICATE:
		tr_problem(c, 409, "conflict", "a record with the same unique value exists");
		break;
	case TR_EUNAVAILABLE:
		tr_problem(c, 503, "dependency-unavailable",
			   "a service this request needs (database or session store) is "
			   "unavailable; retry shortly");
		c->resp->retry_after = 1;
		break;
	case TR_EINVALID:
		tr_problem(c, 400, "malformed-request", "the request cannot be processed");
		break;
	default:
		tr_problem(c, 500, "internal", "an internal error occurred; it was logged");
		break;
	}
}

/* Renders the body with LWS_PRE bytes of headroom in front. */
/* Appends text as key, valid UTF-8 whatever it holds: a problem's detail
 * and field errors quote what the client sent, cut to a length by bytes
 * (a field name "custom.<key>" of 64 bytes may end inside a character).
 * Each byte that does not start a valid sequence becomes U+FFFD. */
static void
append_text(bson_t *doc, const char *key, const char *text)
{
	size_t n = strlen(text), o = 0;
	char *clean;

	if (bson_utf8_validate(text, n, false)) {
		BSON_APPEND_UTF8(doc, key, text);
		return;
	}
	clean = malloc(n * 3 + 1);
	if (!clean) {
		BSON_APPEND_UTF8(doc, key, "(unprintable)");
		return;
	}
	for (size_t i = 0; i < n;) {
		size_t len = 1;
		unsigned char c = (unsigned char)text[i];
		if (c >= 0xc2 && c <= 0xdf)
			len = 2;
		else if (c >= 0xe0 && c <= 0xef)
			len = 3;
		else if (c >= 0xf0 && c <= 0xf4)
			len = 4;
		if (c < 0x80 ||
		    (len > 1 && i + len <= n && bson_utf8_validate(text + i, len, false))) {
			memcpy(clean + o, text + i, len);
			o += len;
			i += len;
		} else {
			memcpy(clean + o, "\xef\xbf\xbd", 3);
			o += 3;
			i++;
		}
	}
	clean[o] = '\0';
	BSON_APPEND_UTF8(doc, key, clean);
	free(clean);
}

char *
tr_resp_render(const struct tr_resp *r, size_t pre, size_t *len)
{
	bson_t doc = BSON_INITIALIZER, arr, item;
	const char *src = NULL;
	char *json = NULL, *out = NULL;
	size_t n = 0;

	if (r->problem_slug) {
		char type[128];
		snprintf(type, sizeof(type), "https://trellis.dev/errors/%s", r->problem_slug);
		BSON_APPEND_UTF8(&doc, "type", type);
		BSON_APPEND_UTF8(&doc, "title", r->problem_title);
		BSON_APPEND_INT32(&doc, "status", r->status);
		append_text(&doc, "detail",
			    r->problem_detail ? r->problem_detail : r->problem_title);
		if (r->problem_version > 0)
			BSON_APPEND_INT64(&doc, "current_version", r->problem_version);
		if (r->problem_member)
			BSON_APPEND_INT64(&doc, r->problem_member, r->problem_member_value);
		if (r->problem_fields) {
			int i = 0;
			BSON_APPEND_ARRAY_BEGIN(&doc, "errors", &arr);
			for (const struct tr_problem_field *f = r->problem_fields; f;
			     f = f->next, i++) {
				char key[16];
				const char *k;
				bson_uint32_to_string((uint32_t)i, &k, key, sizeof(key));
				BSON_APPEND_DOCUMENT_BEGIN(&arr, k, &item);
				append_text(&item, "field", f->field);
				append_text(&item, "message", f->message);
				bson_append_document_end(&arr, &item);
			}
			bson_append_array_end(&doc, &arr);
		}
		json = tr_json_render(&doc, &n);
		src = json;
	} else if (r->has_body) {
		json = tr_json_render(&r->body, &n);
		src = json;
	} else if (r->text) {
		src = r->text;
		n = r->text_len;
	}
	out = malloc(pre + n + 1);
	if (out) {
		if (n)
			memcpy(out + pre, src, n);
		out[pre + n] = '\0';
		*len = n;
	}
	free(json);
	bson_destroy(&doc);
	return out;
}

const char *
tr_resp_content_type(const struct tr_resp *r)
{
	if (r->problem_slug)
		return "application/problem+json";
	if (r->content_type)
		return r->content_type;
	return "application/json";
}
