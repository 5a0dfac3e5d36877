/* The JSON reader (server/net/json.c) on any bytes: every request body and
 * every WebSocket frame passes tr_json_parse first. Beyond not crashing,
 * what it accepts must render (tr_json_render) to JSON that it accepts
 * again, with the same keys in the same order, the same strings and the
 * same numbers - a body the server took is one it can answer with - and
 * must go through tr_render_resource.
 *
 * "The same numbers" as numbers, not as types: a double renders in its
 * shortest form, so 2.0 comes back as the integer 2 and -0.0 as "-0",
 * which reads back as the integer 0 (regressions/json/negative_zero). */
#include "fuzz.h"

#include <bson/bson.h>

#include "json.h"

static bool same_document(bson_iter_t *a, bson_iter_t *b);

static bool
is_number(const bson_iter_t *it)
{
	return BSON_ITER_HOLDS_INT32(it) || BSON_ITER_HOLDS_INT64(it) || BSON_ITER_HOLDS_DOUBLE(it);
}

static bool
same_number(const bson_iter_t *a, const bson_iter_t *b)
{
	if (BSON_ITER_HOLDS_DOUBLE(a) || BSON_ITER_HOLDS_DOUBLE(b))
		return bson_iter_as_double(a) == bson_iter_as_double(b);
	return bson_iter_as_int64(a) == bson_iter_as_int64(b);
}

static bool
same_value(bson_iter_t *a, bson_iter_t *b)
{
	bson_iter_t ca, cb;
	uint32_t la = 0, lb = 0;
	const char *sa, *sb;

	if (is_number(a) && is_number(b))
		return same_number(a, b);
	if (bson_iter_type(a) != bson_iter_type(b))
		return false;
	switch (bson_iter_type(a)) {
	case BSON_TYPE_UTF8:
		sa = bson_iter_utf8(a, &la);
		sb = bson_iter_utf8(b, &lb);
		return la == lb && memcmp(sa, sb, la) == 0;
	case BSON_TYPE_BOOL:
		return bson_iter_bool(a) == bson_iter_bool(b);
	case BSON_TYPE_NULL:
		return true;
	case BSON_TYPE_DOCUMENT:
	case BSON_TYPE_ARRAY:
		return bson_iter_recurse(a, &ca) && bson_iter_recurse(b, &cb) &&
		       same_document(&ca, &cb);
	default:
		return false; /* tr_json_parse lets no other type through */
	}
}

static bool
same_document(bson_iter_t *a, bson_iter_t *b)
{
	for (;;) {
		bool more_a = bson_iter_next(a), more_b = bson_iter_next(b);
		if (more_a != more_b)
			return false;
		if (!more_a)
			return true;
		if (strcmp(bson_iter_key(a), bson_iter_key(b)) != 0 || !same_value(a, b))
			return false;
	}
}

/* The rendered text parses again into the same document. */
static void
check_round_trip(const bson_t *doc)
{
	bson_t again;
	bson_iter_t a, b;
	char err[256];
	size_t len = 0;
	char *text = tr_json_render(doc, &len);

	if (!text)
		fuzz_fail("tr_json_render returned NULL for an accepted document");
	if (tr_json_parse(text, len, &again, err, sizeof(err)) != 0)
		fuzz_fail("rendered JSON is refused (%s): %.*s", err, (int)len, text);
	if (!bson_iter_init(&a, doc) || !bson_iter_init(&b, &again) || !same_document(&a, &b))
		fuzz_fail("rendered JSON reads back as another document: %.*s", (int)len, text);
	free(text);
	bson_destroy(&again);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	bson_t doc, resource = BSON_INITIALIZER;
	char err[256];

	err[0] = '\0';
	if (tr_json_parse((const char *)data, size, &doc, err, sizeof(err)) == 0) {
		check_round_trip(&doc);
		tr_render_resource(&doc, &resource);
	} else if (err[0] == '\0') {
		fuzz_fail("tr_json_parse refused the input without a reason");
	}
	bson_destroy(&resource);
	bson_destroy(&doc);
	return 0;
}
