/* The pieces of the OpenAPI generator shared by its files (openapi.c: the
 * document, parameters and operations; openapi_schema.c: schemas of
 * fields, bodies and records). Not for modules. */
#ifndef TR_OPENAPI_SCHEMA_H
#define TR_OPENAPI_SCHEMA_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stddef.h>

#include "resource.h"

/* ids go out in lower case; the API accepts either case (util.c) */
#define ID_PATTERN "^[0-9a-fA-F]{24}$"
/* What the engine's checks accept (resource.c field_ok), as patterns. */
#define LINE_PATTERN "^[^\\x00-\\x1f]*$"
#define TEXT_PATTERN "^[^\\x00-\\x08\\x0b\\x0c\\x0e-\\x1f]*$"
#define PHONE_PATTERN "^[-+(). ]*([0-9][-+(). ]*){5,15}$"
#define EMAIL_PATTERN "^[^@ \\x00-\\x1f]+@[^@ \\x00-\\x1f]*\\.[^@ \\x00-\\x1f]*$"
/* tr_parse_time: upper-case T and Z, years 1900 to 9999. */
#define TIME_PATTERN                                                                               \
	"^(19|[2-9][0-9])[0-9]{2}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,9})?"    \
	"(Z|[+-][0-9]{2}:[0-9]{2})$"
/* field_ok: a calendar day (the day itself is checked too: no 2026-02-30) */
#define DATE_PATTERN "^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$"
#define DEFAULT_MAX_CHARS 200 /* field_ok: a string field without max */
#define DEFAULT_MAX_ITEMS 100
#define MAX_OPERATION_ID 128

/* An array being appended to: keys "0", "1", ... */
struct arr {
	bson_t b;
	uint32_t n;
	char buf[16];
};

const char *tr_openapi_next_key(struct arr *a);
void tr_openapi_arr_utf8(struct arr *a, const char *s);
void tr_openapi_str_array(bson_t *parent, const char *key, const char *const *items);
void tr_openapi_ref_to(bson_t *parent, const char *key, const char *kind, const char *name);
void tr_openapi_camel(char *out, size_t len, const char *in, bool upper_first);
void tr_openapi_schema_name(char *out, size_t len, const struct tr_resource *e, const char *suffix);
void tr_openapi_id_schema(bson_t *s);
void tr_openapi_time_schema(bson_t *s, bool nullable, bool request);
void tr_openapi_body_schema(bson_t *s, const struct tr_field *fields, bool creating);
void tr_openapi_record_schema(bson_t *s, const struct tr_resource *e);
void tr_openapi_list_schema(bson_t *s, const struct tr_resource *e);

#endif
