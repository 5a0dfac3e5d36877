#include "json.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* Only the types plain JSON produces may reach handlers. */
static bool
plain_json(bson_iter_t *it, int depth, char *err, size_t errlen)
{
	while (bson_iter_next(it)) {
		const char *key = bson_iter_key(it);
		bson_iter_t child;

		if (key[0] == '$') {
			snprintf(err, errlen, "field names must not start with '$'");
			return false;
		}
		switch (bson_iter_type(it)) {
		case BSON_TYPE_DOUBLE:
			if (!isfinite(bson_iter_double(it))) {
				snprintf(err, errlen, "numbers must be finite (field \"%s\")", key);
				return false;
			}
			break;
		case BSON_TYPE_UTF8:
		case BSON_TYPE_INT32:
		case BSON_TYPE_INT64:
		case BSON_TYPE_BOOL:
		case BSON_TYPE_NULL:
			break;
		case BSON_TYPE_DOCUMENT:
		case BSON_TYPE_ARRAY:
			if (depth > 32) {
				snprintf(err, errlen, "JSON nested too deeply");
				return false;
			}
			if (!bson_iter_recurse(it, &child) ||
			    !plain_json(&child, depth + 1, err, errlen))
				return false;
			break;
		default:
			snprintf(err, errlen,
				 "extended JSON values are not accepted (field \"%s\")", key);
			return false;
		}
	}
	return true;
}

/* libbson reads extended JSON ({"$numberLong": "5"} becomes an int64), so
 * '$' keys must be refused in the text, before parsing: a string followed by
 * ':' is a key. */
static bool
has_dollar_key(const char *buf, size_t len)
{
	size_t i = 0;

	while (i < len) {
		if (buf[i] != '"') {
			i++;
			continue;
		}
		size_t start = ++i;
		while (i < len && buf[i] != '"')
			i += buf[i] == '\\' ? 2 : 1;
		size_t j = ++i;
		while (j < len &&
		       (buf[j] == ' ' || buf[j] == '\t' || buf[j] == '\n' || buf[j] == '\r'))
			j++;
		if (j < len && buf[j] == ':' && start < len && buf[start] == '$')
			return true;
	}
	return false;
}

int
tr_json_parse(const char *buf, size_t len, bson_t *out, char *err, size_t errlen)
{
	bson_error_t error;
	bson_iter_t it;
	size_t i = 0;

	bson_init(out);
	if (!bson_utf8_validate(buf, len, false)) {
		snprintf(err, errlen, "body is not valid UTF-8");
		return -1;
	}
	while (i < len && (buf[i] == ' ' || buf[i] == '\t' || buf[i] == '\n' || buf[i] == '\r'))
		i++;
	if (i == len || buf[i] != '{') {
		snprintf(err, errlen, "body must be a JSON object");
		return -1;
	}
	if (has_dollar_key(buf, len)) {
		snprintf(err, errlen,
			 "field names must not start with '$' (extended JSON is not accepted)");
		return -1;
	}
	/* A reader rather than bson_init_from_json: it also tells whether
	 * anything follows the object. */
	bson_json_reader_t *reader = bson_json_data_reader_new(false, 0);
	bson_json_data_reader_ingest(reader, (const uint8_t *)buf, len);
	int got = bson_json_reader_read(reader, out, &error);
	if (got == 1) {
		bson_t extra = BSON_INITIALIZER;
		bson_error_t more;
		if (bson_json_reader_read(reader, &extra, &more) != 0) {
			snprintf(err, errlen, "malformed JSON: data after the object");
			got = -2;
		}
		bson_destroy(&extra);
	}
	bson_json_reader_destroy(reader);
	if (got != 1) {
		if (got != -2)
			snprintf(err, errlen, "malformed JSON: %s",
				 got == 0 ? "empty" : error.message);
		bson_reinit(out);
		return -1;
	}
	if (!bson_iter_init(&it, out) || !plain_json(&it, 0, err, errlen))
		return -1;
	return 0;
}

/* A growable output buffer for the writer below. */
struct jbuf {
	char *p;
	size_t len, cap;
	bool oom;
};

static void
jput(struct jbuf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *np = realloc(b->p, cap);
		if (!np) {
			b->oom = true;
			return;
		}
		b->p = np;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void
jstr(struct jbuf *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t start = 0;

	jput(b, "\"", 1);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		jput(b, s + start, i - start);
		start = i + 1;
		if (c == '"' || c == '\\') {
			char esc[2] = {'\\', (char)c};
			jput(b, esc, 2);
		} else {
			char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
			jput(b, esc, 6);
		}
	}
	jput(b, s + start, n - start);
	jput(b, "\"", 1);
}

static void jvalue(struct jbuf *b, bson_iter_t *it);

static void
jcontainer(struct jbuf *b, bson_iter_t *it, bool array)
{
	bool first = true;

	jput(b, array ? "[" : "{", 1);
	while (bson_iter_next(it)) {
		if (!first)
			jput(b, ",", 1);
		first = false;
		if (!array) {
			jstr(b, bson_iter_key(it), bson_iter_key_len(it));
			jput(b, ":", 1);
		}
		jvalue(b, it);
	}
	jput(b, array ? "]" : "}", 1);
}

static void
jvalue(struct jbuf *b, bson_iter_t *it)
{
	char num[40];
	bson_iter_t child;
	uint32_t len;
	const char *s;

	switch (bson_iter_type(it)) {
	case BSON_TYPE_UTF8:
		s = bson_iter_utf8(it, &len);
		jstr(b, s, len);
		break;
	case BSON_TYPE_INT32:
		jput(b, num, (size_t)snprintf(num, sizeof(num), "%" PRId32, bson_iter_int32(it)));
		break;
	case BSON_TYPE_INT64:
		jput(b, num, (size_t)snprintf(num, sizeof(num), "%" PRId64, bson_iter_int64(it)));
		break;
	case BSON_TYPE_DOUBLE: {
		double d = bson_iter_double(it);
		if (d != d || d > 1.7976931348623157e308 || d < -1.7976931348623157e308)
			jput(b, "null", 4); /* JSON has no NaN or Infinity */
		else {
			/* the shortest form that reads back as the same double */
			int n = snprintf(num, sizeof(num), "%.15g", d);
			if (strtod(num, NULL) != d)
				n = snprintf(num, sizeof(num), "%.17g", d);
			jput(b, num, (size_t)n);
		}
		break;
	}
	case BSON_TYPE_BOOL:
		bson_iter_bool(it) ? jput(b, "true", 4) : jput(b, "false", 5);
		break;
	case BSON_TYPE_DOCUMENT:
	case BSON_TYPE_ARRAY:
		if (bson_iter_recurse(it, &child))
			jcontainer(b, &child, BSON_ITER_HOLDS_ARRAY(it));
		break;
	case BSON_TYPE_DATE_TIME:
		tr_format_time(bson_iter_date_time(it), num);
		jstr(b, num, strlen(num));
		break;
	case BSON_TYPE_OID:
		bson_oid_to_string(bson_iter_oid(it), num);
		jstr(b, num, 24);
		break;
	default:
		jput(b, "null", 4);
		break;
	}
}

char *
tr_json_render(const bson_t *doc, size_t *len)
{
	struct jbuf b = {0};
	bson_iter_t it;

	if (bson_iter_init(&it, doc))
		jcontainer(&b, &it, false);
	if (b.oom) {
		free(b.p);
		return NULL;
	}
	*len = b.len;
	return b.p;
}

static void render_value(bson_iter_t *it, const char *key, bson_t *out);

static void
render_children(bson_iter_t *it, bson_t *out, bool top)
{
	while (bson_iter_next(it)) {
		const char *key = bson_iter_key(it);
		if (top && strcmp(key, "_id") == 0 && BSON_ITER_HOLDS_OID(it)) {
			char hex[25];
			bson_oid_to_string(bson_iter_oid(it), hex);
			BSON_APPEND_UTF8(out, "id", hex);
			continue;
		}
		if (top && (strcmp(key, "tenant_id") == 0 || key[0] == '_'))
			continue;
		render_value(it, key, out);
	}
}

static void
render_value(bson_iter_t *it, const char *key, bson_t *out)
{
	bson_iter_t child;
	bson_t sub;

	switch (bson_iter_type(it)) {
	case BSON_TYPE_DATE_TIME: {
		char ts[25];
		tr_format_time(bson_iter_date_time(it), ts);
		BSON_APPEND_UTF8(out, key, ts);
		break;
	}
	case BSON_TYPE_OID: {
		char hex[25];
		bson_oid_to_string(bson_iter_oid(it), hex);
		BSON_APPEND_UTF8(out, key, hex);
		break;
	}
	case BSON_TYPE_DOCUMENT:
		bson_iter_recurse(it, &child);
		BSON_APPEND_DOCUMENT_BEGIN(out, key, &sub);
		render_children(&child, &sub, false);
		bson_append_document_end(out, &sub);
		break;
	case BSON_TYPE_ARRAY:
		bson_iter_recurse(it, &child);
		BSON_APPEND_ARRAY_BEGIN(out, key, &sub);
		render_children(&child, &sub, false);
		bson_append_array_end(out, &sub);
		break;
	default:
		bson_append_iter(out, key, -1, it);
		break;
	}
}

void
tr_render_resource(const bson_t *stored, bson_t *out)
{
	bson_iter_t it;

	if (bson_iter_init(&it, stored))
		render_children(&it, out, true);
}

bool
tr_body_only(struct tr_ctx *c, const char *const *allowed)
{
	bson_iter_t it;
	bool ok = true;

	if (!c->req->has_body || !bson_iter_init(&it, &c->req->body))
		return true;
	while (bson_iter_next(&it)) {
		const char *key = bson_iter_key(&it);
		bool known = false;
		for (const char *const *a = allowed; *a; a++)
			if (strcmp(*a, key) == 0)
				known = true;
		if (!known) {
			tr_problem_field(
			    c, tr_arena_strdup(c->req->arena, key),
			    strcmp(key, "tenant_id") == 0
				? "the tenant comes from your credentials and cannot be set"
				: "unknown field");
			ok = false;
		}
	}
	return ok;
}

bool
tr_body_string(struct tr_ctx *c, const char *field, size_t min, size_t max, bool required,
	       const char **out)
{
	bson_iter_t it;

	*out = NULL;
	if (!c->req->has_body || !bson_iter_init_find(&it, &c->req->body, field) ||
	    BSON_ITER_HOLDS_NULL(&it)) {
		if (required) {
			tr_problem_field(c, field, "is required");
			return false;
		}
		return true;
	}
	if (!BSON_ITER_HOLDS_UTF8(&it)) {
		tr_problem_field(c, field, "must be a string");
		return false;
	}
	uint32_t len;
	const char *s = bson_iter_utf8(&it, &len);
	size_t chars = 0;
	for (uint32_t i = 0; i < len; i++)
		chars += ((unsigned char)s[i] & 0xC0) != 0x80;
	if (chars < min || chars > max) {
		char *msg = tr_arena_alloc(c->req->arena, 96);
		snprintf(msg, 96, "must be %zu to %zu characters long", min, max);
		tr_problem_field(c, field, msg);
		return false;
	}
	if (memchr(s, '\0', len)) {
		tr_problem_field(c, field, "must not contain NUL characters");
		return false;
	}
	*out = s;
	return true;
}

bool
tr_body_is_null(struct tr_ctx *c, const char *field)
{
	bson_iter_t it;

	return c->req->has_body && bson_iter_init_find(&it, &c->req->body, field) &&
	       BSON_ITER_HOLDS_NULL(&it);
}

bool
tr_body_line(struct tr_ctx *c, const char *field, size_t min, size_t max, bool required,
	     const char **out)
{
	if (!tr_body_string(c, field, min, max, required, out))
		return false;
	for (const unsigned char *p = (const unsigned char *)*out; p && *p; p++) {
		if (*p < 0x20 || *p == 0x7f) {
			tr_problem_field(c, field,
					 "must not contain control characters (tabs, newlines)");
			*out = NULL;
			return false;
		}
	}
	return true;
}
