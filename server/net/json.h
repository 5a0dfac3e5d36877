/* JSON in and out through libbson, plus the validation helpers handlers use
 * on request bodies. Safe on any thread. */
#ifndef TR_JSON_H
#define TR_JSON_H

#include <bson/bson.h>
#include <stdbool.h>

#include "module.h"

/* Parses a request body: valid UTF-8, a JSON object at the top, only plain
 * JSON types (no extended-JSON such as {"$oid": ...}), no key starting with
 * '$'. On error returns -1 with a short reason in err. */
int tr_json_parse(const char *buf, size_t len, bson_t *out, char *err, size_t errlen);

/* Renders a document as compact JSON (dates as RFC 3339 strings, ObjectIds
 * as hex); malloc'd, free() it. NULL when out of memory. */
char *tr_json_render(const bson_t *doc, size_t *len);

/* Appends a stored document to out as an API resource: _id becomes "id",
 * tenant_id and "_"-prefixed fields are dropped, dates become RFC 3339
 * strings, ObjectIds hex strings. */
void tr_render_resource(const bson_t *stored, bson_t *out);

/* Body validation: each adds a field error (422) to the response and returns
 * false when the value is unacceptable. */
bool tr_body_only(struct tr_ctx *c, const char *const *allowed);
/* A string field of min..max characters (UTF-8 code points). Sets *out to
 * NULL when absent; absent is an error only when required. */
bool tr_body_string(struct tr_ctx *c, const char *field, size_t min, size_t max, bool required,
		    const char **out);
/* The same for names and titles: one line, no control characters (so
 * nothing shown in lists or logs can forge extra lines). */
bool tr_body_line(struct tr_ctx *c, const char *field, size_t min, size_t max, bool required,
		  const char **out);
/* True when the body has the field with a JSON null. */
bool tr_body_is_null(struct tr_ctx *c, const char *field);

#endif
