/* Schemas of fields, request bodies, records and list pages, from the
 * resource tables (openapi_schema.h). */
#include "openapi_schema.h"

#include <stdio.h>
#include <string.h>

/* ---- small builders ---- */

const char *
tr_openapi_next_key(struct arr *a)
{
	const char *k;

	bson_uint32_to_string(a->n++, &k, a->buf, sizeof(a->buf));
	return k;
}

void
tr_openapi_arr_utf8(struct arr *a, const char *s)
{
	BSON_APPEND_UTF8(&a->b, tr_openapi_next_key(a), s);
}

void
tr_openapi_str_array(bson_t *parent, const char *key, const char *const *items)
{
	struct arr a = {.n = 0};

	BSON_APPEND_ARRAY_BEGIN(parent, key, &a.b);
	for (; items && *items; items++)
		tr_openapi_arr_utf8(&a, *items);
	bson_append_array_end(parent, &a.b);
}

/* "type": t, or [t, "null"]. */
static void
type_of(bson_t *schema, const char *t, bool nullable)
{
	struct arr a = {.n = 0};

	if (!nullable) {
		BSON_APPEND_UTF8(schema, "type", t);
		return;
	}
	BSON_APPEND_ARRAY_BEGIN(schema, "type", &a.b);
	tr_openapi_arr_utf8(&a, t);
	tr_openapi_arr_utf8(&a, "null");
	bson_append_array_end(schema, &a.b);
}

void
tr_openapi_ref_to(bson_t *parent, const char *key, const char *kind, const char *name)
{
	bson_t r;
	char path[160];

	snprintf(path, sizeof(path), "#/components/%s/%s", kind, name);
	BSON_APPEND_DOCUMENT_BEGIN(parent, key, &r);
	BSON_APPEND_UTF8(&r, "$ref", path);
	bson_append_document_end(parent, &r);
}

/* "lead_item" -> "LeadItem"; "/v1/crm/leads" pieces likewise. */
void
tr_openapi_camel(char *out, size_t len, const char *in, bool upper_first)
{
	size_t n = strlen(out);
	bool up = upper_first;

	for (; *in && n + 1 < len; in++) {
		if (!((*in >= 'a' && *in <= 'z') || (*in >= 'A' && *in <= 'Z') ||
		      (*in >= '0' && *in <= '9'))) {
			up = true;
			continue;
		}
		out[n++] = up && *in >= 'a' && *in <= 'z' ? (char)(*in - 'a' + 'A') : *in;
		up = false;
	}
	out[n] = '\0';
}

void
tr_openapi_schema_name(char *out, size_t len, const struct tr_resource *e, const char *suffix)
{
	out[0] = '\0';
	tr_openapi_camel(out, len, e->name, true);
	tr_openapi_camel(out, len, suffix, true);
}

/* ---- field schemas ---- */

static void
string_rules(bson_t *s, const struct tr_field *f, const char *pattern)
{
	long long max = f->max ? f->max : DEFAULT_MAX_CHARS;

	if (f->min > 0)
		BSON_APPEND_INT64(s, "minLength", f->min);
	BSON_APPEND_INT64(s, "maxLength", max);
	BSON_APPEND_UTF8(s, "pattern", pattern);
}

void
tr_openapi_id_schema(bson_t *s)
{
	BSON_APPEND_UTF8(s, "type", "string");
	BSON_APPEND_UTF8(s, "pattern", ID_PATTERN);
}

void
tr_openapi_time_schema(bson_t *s, bool nullable, bool request)
{
	type_of(s, "string", nullable);
	BSON_APPEND_UTF8(s, "format", "date-time");
	if (request)
		BSON_APPEND_UTF8(s, "pattern", TIME_PATTERN);
}

static void
money_schema(bson_t *s, const struct tr_field *f, bool nullable, bool request)
{
	bson_t props, p;
	static const char *const required[] = {"amount", "currency", NULL};

	type_of(s, "object", nullable);
	BSON_APPEND_DOCUMENT_BEGIN(s, "properties", &props);
	BSON_APPEND_DOCUMENT_BEGIN(&props, "amount", &p);
	BSON_APPEND_UTF8(&p, "type", "integer");
	if (request && f) {
		BSON_APPEND_INT64(&p, "minimum", f->min);
		BSON_APPEND_INT64(&p, "maximum", f->max);
	}
	bson_append_document_end(&props, &p);
	BSON_APPEND_DOCUMENT_BEGIN(&props, "currency", &p);
	BSON_APPEND_UTF8(&p, "type", "string");
	BSON_APPEND_UTF8(&p, "pattern", "^[A-Z]{3}$");
	bson_append_document_end(&props, &p);
	bson_append_document_end(s, &props);
	tr_openapi_str_array(s, "required", required);
	BSON_APPEND_BOOL(s, "additionalProperties", false);
}

/* The schema of one field: in a request body (the engine's rules, as far
 * as a schema can say them) or in a response (the shape only: what is
 * stored was checked when it was written). */
static void
field_schema(bson_t *props, const struct tr_field *f, bool request)
{
	bson_t s, items;
	/* a field the server sets is null where it does not apply (a lead
	 * that duplicates nothing has "duplicate_of": null) */
	bool nullable = request ? (f->flags & TR_F_NULLABLE) && !(f->flags & TR_F_REQUIRED)
				: (f->flags & (TR_F_NULLABLE | TR_F_SERVER)) != 0;

	BSON_APPEND_DOCUMENT_BEGIN(props, f->name, &s);
	if (f->flags & TR_F_SECRET)
		BSON_APPEND_BOOL(&s, "writeOnly", true);
	switch (f->kind) {
	case TR_K_LINE:
	case TR_K_TEXT:
	case TR_K_EMAIL:
	case TR_K_PHONE:
		type_of(&s, "string", nullable);
		if (request)
			string_rules(&s, f,
				     f->kind == TR_K_TEXT    ? TEXT_PATTERN
				     : f->kind == TR_K_EMAIL ? EMAIL_PATTERN
				     : f->kind == TR_K_PHONE ? PHONE_PATTERN
							     : LINE_PATTERN);
		break;
	case TR_K_ENUM: {
		struct arr a = {.n = 0};
		type_of(&s, "string", nullable);
		BSON_APPEND_ARRAY_BEGIN(&s, "enum", &a.b);
		for (const char *const *o = f->options; o && *o; o++)
			tr_openapi_arr_utf8(&a, *o);
		if (nullable)
			BSON_APPEND_NULL(&a.b, tr_openapi_next_key(&a));
		bson_append_array_end(&s, &a.b);
		break;
	}
	case TR_K_MONEY:
		money_schema(&s, f, nullable, request);
		break;
	case TR_K_QUANTITY:
	case TR_K_INT:
		type_of(&s, "integer", nullable);
		if (request) {
			BSON_APPEND_INT64(&s, "minimum", f->min);
			BSON_APPEND_INT64(&s, "maximum", f->max);
		}
		break;
	case TR_K_TIME:
		tr_openapi_time_schema(&s, nullable, request);
		break;
	case TR_K_DATE:
		type_of(&s, "string", nullable);
		BSON_APPEND_UTF8(&s, "format", "date");
		if (request)
			BSON_APPEND_UTF8(&s, "pattern", DATE_PATTERN);
		break;
	case TR_K_REF:
		type_of(&s, "string", nullable);
		BSON_APPEND_UTF8(&s, "pattern", ID_PATTERN);
		break;
	case TR_K_REFS:
	case TR_K_STRINGS:
		type_of(&s, "array", nullable);
		BSON_APPEND_DOCUMENT_BEGIN(&s, "items", &items);
		if (f->kind == TR_K_REFS) {
			tr_openapi_id_schema(&items);
		} else {
			BSON_APPEND_UTF8(&items, "type", "string");
			if (request) {
				BSON_APPEND_INT32(&items, "minLength", 1);
				BSON_APPEND_INT32(&items, "maxLength", 100);
				BSON_APPEND_UTF8(&items, "pattern", LINE_PATTERN);
			}
		}
		bson_append_document_end(&s, &items);
		if (request)
			BSON_APPEND_INT64(&s, "maxItems", f->max ? f->max : DEFAULT_MAX_ITEMS);
		break;
	case TR_K_BOOL:
		type_of(&s, "boolean", nullable);
		break;
	case TR_K_OBJECT:
	case TR_K_CUSTOM:
		/* checked by the resource's hook or the custom-field definitions */
		type_of(&s, "object", nullable);
		BSON_APPEND_BOOL(&s, "additionalProperties", true);
		break;
	case TR_K_ARRAY:
		type_of(&s, "array", nullable);
		BSON_APPEND_DOCUMENT_BEGIN(&s, "items", &items);
		bson_append_document_end(&s, &items);
		break;
	}
	bson_append_document_end(props, &s);
}

/* A request body from a field table: what the engine reads
 * (tr_res_read_fields), which refuses members it does not know. */
void
tr_openapi_body_schema(bson_t *s, const struct tr_field *fields, bool creating)
{
	bson_t props;
	struct arr req = {.n = 0};

	BSON_APPEND_UTF8(s, "type", "object");
	BSON_APPEND_DOCUMENT_BEGIN(s, "properties", &props);
	for (const struct tr_field *f = fields; f->name; f++) {
		if ((f->flags & TR_F_SERVER) || (!creating && (f->flags & TR_F_FIXED)))
			continue;
		field_schema(&props, f, true);
	}
	bson_append_document_end(s, &props);
	BSON_APPEND_ARRAY_BEGIN(s, "required", &req.b);
	for (const struct tr_field *f = fields; creating && f->name; f++)
		if ((f->flags & TR_F_REQUIRED) && !(f->flags & TR_F_SERVER))
			tr_openapi_arr_utf8(&req, f->name);
	bson_append_array_end(s, &req.b);
	BSON_APPEND_BOOL(s, "additionalProperties", false);
}

/* A record as tr_render_resource sends it: _id as id, dates and ids as
 * strings, internal members left out. */
void
tr_openapi_record_schema(bson_t *s, const struct tr_resource *e)
{
	bson_t props, p;
	static const char *const required[] = {"id", "created_at", "updated_at", "version", NULL};

	BSON_APPEND_UTF8(s, "type", "object");
	if (e->about)
		BSON_APPEND_UTF8(s, "description", e->about);
	BSON_APPEND_DOCUMENT_BEGIN(s, "properties", &props);
	BSON_APPEND_DOCUMENT_BEGIN(&props, "id", &p);
	tr_openapi_id_schema(&p);
	bson_append_document_end(&props, &p);
	BSON_APPEND_DOCUMENT_BEGIN(&props, "created_at", &p);
	tr_openapi_time_schema(&p, false, false);
	bson_append_document_end(&props, &p);
	BSON_APPEND_DOCUMENT_BEGIN(&props, "updated_at", &p);
	tr_openapi_time_schema(&p, false, false);
	bson_append_document_end(&props, &p);
	BSON_APPEND_DOCUMENT_BEGIN(&props, "version", &p);
	BSON_APPEND_UTF8(&p, "type", "integer");
	BSON_APPEND_INT32(&p, "minimum", 1);
	bson_append_document_end(&props, &p);
	for (const struct tr_field *f = e->fields; f->name; f++)
		if (!(f->flags & TR_F_SECRET))
			field_schema(&props, f, false);
	bson_append_document_end(s, &props);
	tr_openapi_str_array(s, "required", required);
}

void
tr_openapi_list_schema(bson_t *s, const struct tr_resource *e)
{
	bson_t props, p, items;
	char name[96];
	static const char *const required[] = {"items", "next_cursor", NULL};

	BSON_APPEND_UTF8(s, "type", "object");
	BSON_APPEND_DOCUMENT_BEGIN(s, "properties", &props);
	BSON_APPEND_DOCUMENT_BEGIN(&props, "items", &p);
	BSON_APPEND_UTF8(&p, "type", "array");
	if (e) {
		tr_openapi_schema_name(name, sizeof(name), e, "");
		tr_openapi_ref_to(&p, "items", "schemas", name);
	} else {
		BSON_APPEND_DOCUMENT_BEGIN(&p, "items", &items);
		BSON_APPEND_UTF8(&items, "type", "object");
		bson_append_document_end(&p, &items);
	}
	bson_append_document_end(&props, &p);
	BSON_APPEND_DOCUMENT_BEGIN(&props, "next_cursor", &p);
	type_of(&p, "string", true);
	bson_append_document_end(&props, &p);
	bson_append_document_end(s, &props);
	tr_openapi_str_array(s, "required", required);
}
