/* JSON in and out (server/net/json.c): what tr_json_parse lets through to
 * handlers (a plain JSON object, nothing libbson's extended JSON could turn
 * into a typed value or an operator), the exact compact text
 * tr_json_render writes, and how tr_render_resource turns a stored record
 * into an API resource. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

#define OID_HEX "0123456789abcdef01234567"

/* ---- parsing ---- */

/* Parses text; on success leaves the document in *doc, on failure the
 * reason in err. The caller destroys *doc either way. */
static int
parse(const char *text, bson_t *doc, char *err, size_t errlen)
{
	err[0] = '\0';
	return tr_json_parse(text, strlen(text), doc, err, errlen);
}

/* Asserts text is refused with a reason, and frees what parsing left. */
static void
assert_refused(const char *text)
{
	bson_t doc;
	char err[256];
	int rc = parse(text, &doc, err, sizeof(err));

	bson_destroy(&doc);
	if (rc != -1)
		fail_msg("accepted: %s", text);
	if (err[0] == '\0')
		fail_msg("refused without a reason: %s", text);
}

/* Builds "{"a":" x depth ... 1 ... "}" x depth. */
static char *
nested_objects(int depth)
{
	char *s = malloc((size_t)depth * 6 + 2);
	size_t n = 0;

	assert_non_null(s);
	for (int i = 0; i < depth; i++) {
		memcpy(s + n, "{\"a\":", 5);
		n += 5;
	}
	s[n++] = '1';
	for (int i = 0; i < depth; i++)
		s[n++] = '}';
	s[n] = '\0';
	return s;
}

static void
test_parse_accepts_an_object_of_plain_values(void **state)
{
	bson_t doc;
	bson_iter_t it;
	char err[256];

	(void)state;
	assert_int_equal(
	    parse(
		" {\"name\":\"x\",\"n\":3,\"big\":12345678901,\"f\":1.5,\"ok\":true,\"none\":null,"
		"\"list\":[1,\"two\"],\"sub\":{\"k\":\"v\"}}",
		&doc, err, sizeof(err)),
	    0);
	assert_true(bson_iter_init_find(&it, &doc, "name"));
	assert_string_equal(bson_iter_utf8(&it, NULL), "x");
	assert_true(bson_iter_init_find(&it, &doc, "n"));
	assert_int_equal(bson_iter_as_int64(&it), 3);
	assert_true(bson_iter_init_find(&it, &doc, "big"));
	assert_true(bson_iter_as_int64(&it) == 12345678901LL);
	assert_true(bson_iter_init_find(&it, &doc, "ok"));
	assert_true(bson_iter_as_bool(&it));
	assert_true(bson_iter_init_find(&it, &doc, "none"));
	assert_true(BSON_ITER_HOLDS_NULL(&it));
	assert_true(bson_iter_init_find(&it, &doc, "list"));
	assert_true(BSON_ITER_HOLDS_ARRAY(&it));
	assert_true(bson_iter_init_find(&it, &doc, "sub"));
	assert_true(BSON_ITER_HOLDS_DOCUMENT(&it));
	bson_destroy(&doc);
}

static void
test_parse_accepts_the_empty_object(void **state)
{
	bson_t doc;
	char err[256];

	(void)state;
	assert_int_equal(parse("{}", &doc, err, sizeof(err)), 0);
	assert_int_equal(bson_count_keys(&doc), 0);
	bson_destroy(&doc);
}

static void
test_parse_rejects_a_top_level_array(void **state)
{
	(void)state;
	assert_refused("[{\"a\":1}]");
}

static void
test_parse_rejects_a_top_level_number(void **state)
{
	(void)state;
	assert_refused("42");
}

static void
test_parse_rejects_a_top_level_string(void **state)
{
	(void)state;
	assert_refused("\"{}\"");
}

static void
test_parse_rejects_an_empty_body(void **state)
{
	bson_t doc;
	char err[256];

	(void)state;
	assert_int_equal(tr_json_parse("", 0, &doc, err, sizeof(err)), -1);
	bson_destroy(&doc);
	assert_refused("   \n");
}

static void
test_parse_rejects_malformed_json(void **state)
{
	(void)state;
	assert_refused("{\"a\":1");
	assert_refused("{\"a\":1,}");
	assert_refused("{a:1}");
	assert_refused("{\"a\":'x'}");
	assert_refused("{\"a\":1} trailing");
}

static void
test_parse_rejects_a_second_document_after_the_object(void **state)
{
	(void)state;
	assert_refused("{\"a\":1}{\"b\":2}");
}

static void
test_parse_rejects_nan_and_infinity(void **state)
{
	(void)state;
	/* Neither is JSON (RFC 8259 section 6). */
	assert_refused("{\"a\":NaN}");
	assert_refused("{\"a\":Infinity}");
}

static void
test_parse_rejects_invalid_utf8(void **state)
{
	bson_t doc;
	char err[256];

	(void)state;
	assert_int_equal(parse("{\"a\":\"\xff\"}", &doc, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "UTF-8"));
	bson_destroy(&doc);
}

static void
test_parse_rejects_overlong_utf8_encoding(void **state)
{
	(void)state;
	assert_refused("{\"a\":\"\xc0\xaf\"}");
}

static void
test_parse_rejects_a_raw_nul_byte(void **state)
{
	static const char body[] = "{\"a\":\"x\0y\"}";
	bson_t doc;
	char err[256];

	(void)state;
	assert_int_equal(tr_json_parse(body, sizeof(body) - 1, &doc, err, sizeof(err)), -1);
	bson_destroy(&doc);
}

static void
test_parse_rejects_extended_json_object_id(void **state)
{
	bson_t doc;
	char err[256];

	(void)state;
	assert_int_equal(parse("{\"a\":{\"$oid\":\"" OID_HEX "\"}}", &doc, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "extended JSON"));
	bson_destroy(&doc);
}

static void
test_parse_rejects_extended_json_inside_an_array(void **state)
{
	(void)state;
	assert_refused("{\"a\":[1,{\"$oid\":\"" OID_HEX "\"}]}");
}

static void
test_parse_rejects_extended_json_date(void **state)
{
	(void)state;
	assert_refused("{\"at\":{\"$date\":0}}");
}

static void
test_parse_rejects_extended_json_numbers(void **state)
{
	(void)state;
	/* libbson turns these into plain int64/int32/double: they must be caught
	 * before that, or the "no extended JSON" contract has holes. */
	assert_refused("{\"a\":{\"$numberLong\":\"5\"}}");
	assert_refused("{\"a\":{\"$numberInt\":\"5\"}}");
	assert_refused("{\"a\":{\"$numberDouble\":\"5\"}}");
}

static void
test_parse_rejects_top_level_dollar_key(void **state)
{
	bson_t doc;
	char err[256];

	(void)state;
	assert_int_equal(parse("{\"$set\":{\"tenant_id\":1}}", &doc, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "$"));
	bson_destroy(&doc);
}

static void
test_parse_rejects_nested_dollar_key(void **state)
{
	(void)state;
	assert_refused("{\"name\":{\"$ne\":null}}");
	assert_refused("{\"list\":[{\"$gt\":1}]}");
}

static void
test_parse_accepts_dollar_inside_a_key(void **state)
{
	bson_t doc;
	char err[256];

	(void)state;
	assert_int_equal(parse("{\"price$\":1}", &doc, err, sizeof(err)), 0);
	bson_destroy(&doc);
}

static void
test_parse_accepts_moderate_nesting(void **state)
{
	char *text = nested_objects(20);
	bson_t doc;
	char err[256];

	(void)state;
	assert_int_equal(parse(text, &doc, err, sizeof(err)), 0);
	bson_destroy(&doc);
	free(text);
}

static void
test_parse_rejects_deep_nesting(void **state)
{
	char *text = nested_objects(40);

	(void)state;
	assert_refused(text);
	free(text);
}

static void
test_parse_rejects_very_deep_nesting(void **state)
{
	char *text = nested_objects(5000);

	(void)state;
	assert_refused(text);
	free(text);
}

/* ---- rendering ---- */

static char *
render(const bson_t *doc)
{
	size_t len = 0;
	char *s = tr_json_render(doc, &len);

	assert_non_null(s);
	assert_int_equal(len, strlen(s));
	return s;
}

static void
assert_renders(const bson_t *doc, const char *want)
{
	char *got = render(doc);

	assert_string_equal(got, want);
	free(got);
}

static void
test_render_empty_document(void **state)
{
	bson_t doc = BSON_INITIALIZER;

	(void)state;
	assert_renders(&doc, "{}");
	bson_destroy(&doc);
}

static void
test_render_is_compact(void **state)
{
	bson_t doc = BSON_INITIALIZER;

	(void)state;
	BSON_APPEND_UTF8(&doc, "name", "x");
	BSON_APPEND_INT32(&doc, "n", 3);
	assert_renders(&doc, "{\"name\":\"x\",\"n\":3}");
	bson_destroy(&doc);
}

static void
test_render_escapes_quotes_and_backslashes(void **state)
{
	bson_t doc = BSON_INITIALIZER;

	(void)state;
	BSON_APPEND_UTF8(&doc, "s", "say \"hi\" \\o/");
	assert_renders(&doc, "{\"s\":\"say \\\"hi\\\" \\\\o/\"}");
	bson_destroy(&doc);
}

static void
test_render_escapes_control_characters(void **state)
{
	bson_t doc = BSON_INITIALIZER;

	(void)state;
	BSON_APPEND_UTF8(&doc, "s", "a\nb\tc\x01\x1f");
	assert_renders(&doc, "{\"s\":\"a\\u000ab\\u0009c\\u0001\\u001f\"}");
	bson_destroy(&doc);
}

static void
test_render_escapes_an_embedded_nul(void **state)
{
	bson_t doc = BSON_INITIALIZER;

	(void)state;
	bson_append_utf8(&doc, "s", 1, "a\0b", 3);
	assert_renders(&doc, "{\"s\":\"a\\u0000b\"}");
	bson_destroy(&doc);
}

static void
test_render_escapes_keys(void **state)
{
	bson_t doc = BSON_INITIALIZER;

	(void)state;
	BSON_APPEND_INT32(&doc, "we\"ird\n", 1);
	assert_renders(&doc, "{\"we\\\"ird\\u000a\":1}");
	bson_destroy(&doc);
}

static void
test_render_keeps_utf8_as_is(void **state)
{
	bson_t doc = BSON_INITIALIZER;

	(void)state;
	BSON_APPEND_UTF8(&doc, "s", "caf\xc3\xa9 \xe2\x82\xac");
	assert_renders(&doc, "{\"s\":\"caf\xc3\xa9 \xe2\x82\xac\"}");
	bson_destroy(&doc);
}

static void
test_render_int64_extremes(void **state)
{
	bson_t doc = BSON_INITIALIZER;

	(void)state;
	BSON_APPEND_INT64(&doc, "max", INT64_MAX);
	BSON_APPEND_INT64(&doc, "min", INT64_MIN);
	assert_renders(&doc, "{\"max\":9223372036854775807,\"min\":-9223372036854775808}");
	bson_destroy(&doc);
}

static void
test_render_bools_and_null(void **state)
{
	bson_t doc = BSON_INITIALIZER;

	(void)state;
	BSON_APPEND_BOOL(&doc, "t", true);
	BSON_APPEND_BOOL(&doc, "f", false);
	BSON_APPEND_NULL(&doc, "z");
	assert_renders(&doc, "{\"t\":true,\"f\":false,\"z\":null}");
	bson_destroy(&doc);
}

static void
test_render_doubles(void **state)
{
	bson_t doc = BSON_INITIALIZER;

	(void)state;
	BSON_APPEND_DOUBLE(&doc, "half", 1.5);
	BSON_APPEND_DOUBLE(&doc, "neg", -2.25);
	assert_renders(&doc, "{\"half\":1.5,\"neg\":-2.25}");
	bson_destroy(&doc);
}

static void
test_render_nan_and_infinity_as_null(void **state)
{
	bson_t doc = BSON_INITIALIZER;

	(void)state;
	BSON_APPEND_DOUBLE(&doc, "nan", NAN);
	BSON_APPEND_DOUBLE(&doc, "inf", INFINITY);
	BSON_APPEND_DOUBLE(&doc, "ninf", -INFINITY);
	assert_renders(&doc, "{\"nan\":null,\"inf\":null,\"ninf\":null}");
	bson_destroy(&doc);
}

static void
test_render_nested_arrays(void **state)
{
	bson_t doc = BSON_INITIALIZER, outer, inner;

	(void)state;
	BSON_APPEND_ARRAY_BEGIN(&doc, "m", &outer);
	BSON_APPEND_ARRAY_BEGIN(&outer, "0", &inner);
	BSON_APPEND_INT32(&inner, "0", 1);
	BSON_APPEND_INT32(&inner, "1", 2);
	bson_append_array_end(&outer, &inner);
	BSON_APPEND_ARRAY_BEGIN(&outer, "1", &inner);
	bson_append_array_end(&outer, &inner);
	bson_append_array_end(&doc, &outer);
	assert_renders(&doc, "{\"m\":[[1,2],[]]}");
	bson_destroy(&doc);
}

static void
test_render_nested_object(void **state)
{
	bson_t doc = BSON_INITIALIZER, sub;

	(void)state;
	BSON_APPEND_DOCUMENT_BEGIN(&doc, "sub", &sub);
	BSON_APPEND_UTF8(&sub, "k", "v");
	bson_append_document_end(&doc, &sub);
	assert_renders(&doc, "{\"sub\":{\"k\":\"v\"}}");
	bson_destroy(&doc);
}

static void
test_render_object_id_as_hex_string(void **state)
{
	bson_t doc = BSON_INITIALIZER;
	bson_oid_t oid;

	(void)state;
	bson_oid_init_from_string(&oid, OID_HEX);
	BSON_APPEND_OID(&doc, "ref", &oid);
	assert_renders(&doc, "{\"ref\":\"" OID_HEX "\"}");
	bson_destroy(&doc);
}

static void
test_render_date_as_rfc3339_string(void **state)
{
	bson_t doc = BSON_INITIALIZER;

	(void)state;
	BSON_APPEND_DATE_TIME(&doc, "at", 1709210096789LL);
	assert_renders(&doc, "{\"at\":\"2024-02-29T12:34:56.789Z\"}");
	bson_destroy(&doc);
}

static void
test_render_unsupported_types_as_null(void **state)
{
	bson_t doc = BSON_INITIALIZER;

	(void)state;
	BSON_APPEND_BINARY(&doc, "bin", BSON_SUBTYPE_BINARY, (const uint8_t *)"xy", 2);
	BSON_APPEND_REGEX(&doc, "re", "^a", "i");
	assert_renders(&doc, "{\"bin\":null,\"re\":null}");
	bson_destroy(&doc);
}

static void
test_parsed_body_renders_back_to_the_same_text(void **state)
{
	const char *text =
	    "{\"name\":\"t\\\"x\",\"n\":-7,\"ok\":false,\"z\":null,\"list\":[1,[2],{\"k\":\"v\"}]}";
	bson_t doc;
	char err[256];

	(void)state;
	assert_int_equal(parse(text, &doc, err, sizeof(err)), 0);
	assert_renders(&doc, text);
	bson_destroy(&doc);
}

/* ---- resources ---- */

/* A stored tag as the data layer keeps it. */
static void
stored_tag(bson_t *stored)
{
	bson_oid_t id, tenant;
	bson_t meta;

	bson_oid_init_from_string(&id, OID_HEX);
	bson_oid_init_from_string(&tenant, "aaaaaaaaaaaaaaaaaaaaaaaa");
	bson_init(stored);
	BSON_APPEND_OID(stored, "_id", &id);
	BSON_APPEND_OID(stored, "tenant_id", &tenant);
	BSON_APPEND_UTF8(stored, "name", "vip");
	BSON_APPEND_INT64(stored, "version", 3);
	BSON_APPEND_DATE_TIME(stored, "created_at", 0);
	BSON_APPEND_BOOL(stored, "_deleted", false);
	BSON_APPEND_DOCUMENT_BEGIN(stored, "meta", &meta);
	BSON_APPEND_DATE_TIME(&meta, "seen_at", 1005);
	BSON_APPEND_OID(&meta, "by", &tenant);
	bson_append_document_end(stored, &meta);
}

static char *
render_resource(void)
{
	bson_t stored, out = BSON_INITIALIZER;
	char *text;

	stored_tag(&stored);
	tr_render_resource(&stored, &out);
	text = render(&out);
	bson_destroy(&stored);
	bson_destroy(&out);
	return text;
}

static void
test_resource_renames_id_to_id_hex_string(void **state)
{
	char *text = render_resource();

	(void)state;
	assert_non_null(strstr(text, "\"id\":\"" OID_HEX "\""));
	assert_null(strstr(text, "\"_id\""));
	free(text);
}

static void
test_resource_drops_tenant_id(void **state)
{
	char *text = render_resource();
	const char *first = strstr(text, "aaaaaaaaaaaaaaaaaaaaaaaa");

	(void)state;
	assert_null(strstr(text, "tenant_id"));
	/* The tenant's id appears once: as meta.by, not as a dropped field. */
	assert_non_null(first);
	assert_null(strstr(first + 1, "aaaaaaaaaaaaaaaaaaaaaaaa"));
	free(text);
}

static void
test_resource_drops_underscore_fields(void **state)
{
	char *text = render_resource();

	(void)state;
	assert_null(strstr(text, "_deleted"));
	free(text);
}

static void
test_resource_converts_dates_and_ids_at_every_level(void **state)
{
	char *text = render_resource();

	(void)state;
	assert_string_equal(text, "{\"id\":\"" OID_HEX "\",\"name\":\"vip\",\"version\":3,"
				  "\"created_at\":\"1970-01-01T00:00:00.000Z\","
				  "\"meta\":{\"seen_at\":\"1970-01-01T00:00:01.005Z\","
				  "\"by\":\"aaaaaaaaaaaaaaaaaaaaaaaa\"}}");
	free(text);
}

static void
test_resource_converts_dates_inside_arrays(void **state)
{
	bson_t stored = BSON_INITIALIZER, arr, out = BSON_INITIALIZER;
	bson_iter_t it, child;

	(void)state;
	BSON_APPEND_ARRAY_BEGIN(&stored, "times", &arr);
	BSON_APPEND_DATE_TIME(&arr, "0", 0);
	bson_append_array_end(&stored, &arr);
	tr_render_resource(&stored, &out);
	assert_true(bson_iter_init_find(&it, &out, "times"));
	assert_true(BSON_ITER_HOLDS_ARRAY(&it));
	assert_true(bson_iter_recurse(&it, &child));
	assert_true(bson_iter_next(&child));
	assert_true(BSON_ITER_HOLDS_UTF8(&child));
	assert_string_equal(bson_iter_utf8(&child, NULL), "1970-01-01T00:00:00.000Z");
	bson_destroy(&stored);
	bson_destroy(&out);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_accepts_an_object_of_plain_values),
	    cmocka_unit_test(test_parse_accepts_the_empty_object),
	    cmocka_unit_test(test_parse_rejects_a_top_level_array),
	    cmocka_unit_test(test_parse_rejects_a_top_level_number),
	    cmocka_unit_test(test_parse_rejects_a_top_level_string),
	    cmocka_unit_test(test_parse_rejects_an_empty_body),
	    cmocka_unit_test(test_parse_rejects_malformed_json),
	    cmocka_unit_test(test_parse_rejects_a_second_document_after_the_object),
	    cmocka_unit_test(test_parse_rejects_nan_and_infinity),
	    cmocka_unit_test(test_parse_rejects_invalid_utf8),
	    cmocka_unit_test(test_parse_rejects_overlong_utf8_encoding),
	    cmocka_unit_test(test_parse_rejects_a_raw_nul_byte),
	    cmocka_unit_test(test_parse_rejects_extended_json_object_id),
	    cmocka_unit_test(test_parse_rejects_extended_json_inside_an_array),
	    cmocka_unit_test(test_parse_rejects_extended_json_date),
	    cmocka_unit_test(test_parse_rejects_extended_json_numbers),
	    cmocka_unit_test(test_parse_rejects_top_level_dollar_key),
	    cmocka_unit_test(test_parse_rejects_nested_dollar_key),
	    cmocka_unit_test(test_parse_accepts_dollar_inside_a_key),
	    cmocka_unit_test(test_parse_accepts_moderate_nesting),
	    cmocka_unit_test(test_parse_rejects_deep_nesting),
	    cmocka_unit_test(test_parse_rejects_very_deep_nesting),
	    cmocka_unit_test(test_render_empty_document),
	    cmocka_unit_test(test_render_is_compact),
	    cmocka_unit_test(test_render_escapes_quotes_and_backslashes),
	    cmocka_unit_test(test_render_escapes_control_characters),
	    cmocka_unit_test(test_render_escapes_an_embedded_nul),
	    cmocka_unit_test(test_render_escapes_keys),
	    cmocka_unit_test(test_render_keeps_utf8_as_is),
	    cmocka_unit_test(test_render_int64_extremes),
	    cmocka_unit_test(test_render_bools_and_null),
	    cmocka_unit_test(test_render_doubles),
	    cmocka_unit_test(test_render_nan_and_infinity_as_null),
	    cmocka_unit_test(test_render_nested_arrays),
	    cmocka_unit_test(test_render_nested_object),
	    cmocka_unit_test(test_render_object_id_as_hex_string),
	    cmocka_unit_test(test_render_date_as_rfc3339_string),
	    cmocka_unit_test(test_render_unsupported_types_as_null),
	    cmocka_unit_test(test_parsed_body_renders_back_to_the_same_text),
	    cmocka_unit_test(test_resource_renames_id_to_id_hex_string),
	    cmocka_unit_test(test_resource_drops_tenant_id),
	    cmocka_unit_test(test_resource_drops_underscore_fields),
	    cmocka_unit_test(test_resource_converts_dates_and_ids_at_every_level),
	    cmocka_unit_test(test_resource_converts_dates_inside_arrays),
	};

	return cmocka_run_group_tests_name("json", tests, NULL, NULL);
}
