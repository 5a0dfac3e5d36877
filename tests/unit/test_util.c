/* Shared helpers (server/util.c): RFC 3339 timestamps, ObjectId checks,
 * base64url, SHA-256 and bounded integer parsing. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "util.h"

/* ---- tr_format_time ---- */

static void
test_format_time_of_epoch_zero(void **state)
{
	char buf[25];

	(void)state;
	tr_format_time(0, buf);
	assert_string_equal(buf, "1970-01-01T00:00:00.000Z");
}

static void
test_format_time_keeps_milliseconds(void **state)
{
	char buf[25];

	(void)state;
	/* 2024-02-29T12:34:56Z is 1709210096 seconds after the epoch. */
	tr_format_time(1709210096789LL, buf);
	assert_string_equal(buf, "2024-02-29T12:34:56.789Z");
}

static void
test_format_time_pads_small_milliseconds(void **state)
{
	char buf[25];

	(void)state;
	tr_format_time(1005, buf);
	assert_string_equal(buf, "1970-01-01T00:00:01.005Z");
}

static void
test_format_time_of_negative_ms_counts_back_from_the_epoch(void **state)
{
	char buf[25];

	(void)state;
	tr_format_time(-1, buf);
	assert_string_equal(buf, "1969-12-31T23:59:59.999Z");
}

static void
test_format_time_of_negative_whole_seconds(void **state)
{
	char buf[25];

	(void)state;
	tr_format_time(-1000, buf);
	assert_string_equal(buf, "1969-12-31T23:59:59.000Z");
}

static void
test_format_time_writes_exactly_24_chars_and_a_terminator(void **state)
{
	char buf[32];

	(void)state;
	memset(buf, 'x', sizeof(buf));
	tr_format_time(1, buf);
	assert_int_equal(strlen(buf), 24);
	assert_int_equal(buf[25], 'x');
}

/* ---- tr_is_object_id ---- */

static void
test_object_id_accepts_24_hex_digits_of_either_case(void **state)
{
	(void)state;
	assert_true(tr_is_object_id("0123456789abcdef01234567"));
	assert_true(tr_is_object_id("ABCDEF0123456789ABCDEF01"));
}

static void
test_object_id_rejects_wrong_length(void **state)
{
	(void)state;
	assert_false(tr_is_object_id(""));
	assert_false(tr_is_object_id("0123456789abcdef0123456"));
	assert_false(tr_is_object_id("0123456789abcdef012345678"));
}

static void
test_object_id_rejects_non_hex_characters(void **state)
{
	(void)state;
	assert_false(tr_is_object_id("0123456789abcdef0123456g"));
	assert_false(tr_is_object_id("0123456789abcdef 1234567"));
	assert_false(tr_is_object_id("-123456789abcdef01234567"));
}

static void
test_object_id_rejects_null(void **state)
{
	(void)state;
	assert_false(tr_is_object_id(NULL));
}

/* ---- base64url ---- */

static void
test_b64url_encode_uses_url_alphabet_without_padding(void **state)
{
	static const uint8_t in[] = {0xfb, 0xff, 0xbf};
	char *out;

	(void)state;
	out = tr_b64url_encode(in, sizeof(in));
	assert_non_null(out);
	assert_string_equal(out, "-_-_");
	free(out);
	out = tr_b64url_encode((const uint8_t *)"a", 1);
	assert_non_null(out);
	assert_string_equal(out, "YQ");
	free(out);
}

static void
test_b64url_round_trip_of_every_byte_value(void **state)
{
	uint8_t in[256], back[256];
	size_t len = sizeof(back);
	char *text;

	(void)state;
	for (int i = 0; i < 256; i++)
		in[i] = (uint8_t)i;
	text = tr_b64url_encode(in, sizeof(in));
	assert_non_null(text);
	assert_int_equal(tr_b64url_decode(text, back, &len), TR_OK);
	assert_int_equal(len, sizeof(in));
	assert_memory_equal(back, in, sizeof(in));
	free(text);
}

static void
test_b64url_round_trip_of_empty_input(void **state)
{
	uint8_t back[4];
	size_t len = sizeof(back);
	char *text;

	(void)state;
	text = tr_b64url_encode((const uint8_t *)"", 0);
	assert_non_null(text);
	assert_string_equal(text, "");
	assert_int_equal(tr_b64url_decode(text, back, &len), TR_OK);
	assert_int_equal(len, 0);
	free(text);
}

static void
test_b64url_decode_rejects_standard_alphabet(void **state)
{
	uint8_t out[16];
	size_t len = sizeof(out);

	(void)state;
	assert_int_equal(tr_b64url_decode("+/+/", out, &len), TR_EINVALID);
}

static void
test_b64url_decode_rejects_padding(void **state)
{
	uint8_t out[16];
	size_t len = sizeof(out);

	(void)state;
	assert_int_equal(tr_b64url_decode("YQ==", out, &len), TR_EINVALID);
}

static void
test_b64url_decode_rejects_impossible_length(void **state)
{
	uint8_t out[16];
	size_t len = sizeof(out);

	(void)state;
	assert_int_equal(tr_b64url_decode("YWJjZ", out, &len), TR_EINVALID);
}

static void
test_b64url_decode_rejects_garbage_characters(void **state)
{
	uint8_t out[16];
	size_t len = sizeof(out);

	(void)state;
	assert_int_equal(tr_b64url_decode("YW J", out, &len), TR_EINVALID);
	len = sizeof(out);
	assert_int_equal(tr_b64url_decode("YW.j", out, &len), TR_EINVALID);
}

static void
test_b64url_decode_rejects_output_larger_than_buffer(void **state)
{
	uint8_t out[2];
	size_t len = sizeof(out);

	(void)state;
	assert_int_equal(tr_b64url_decode("YWJj", out, &len), TR_EINVALID);
}

/* ---- tr_sha256_hex ---- */

static void
test_sha256_hex_of_abc(void **state)
{
	char hex[65];

	(void)state;
	tr_sha256_hex("abc", 3, hex);
	assert_string_equal(hex,
			    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

static void
test_sha256_hex_of_empty_input(void **state)
{
	char hex[65];

	(void)state;
	tr_sha256_hex("", 0, hex);
	assert_string_equal(hex,
			    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

/* ---- tr_parse_int ---- */

static void
test_parse_int_accepts_values_within_bounds(void **state)
{
	long long v = 0;

	(void)state;
	assert_int_equal(tr_parse_int("42", 0, 100, &v), TR_OK);
	assert_int_equal(v, 42);
	assert_int_equal(tr_parse_int("-7", -10, 10, &v), TR_OK);
	assert_int_equal(v, -7);
}

static void
test_parse_int_accepts_both_bounds_inclusive(void **state)
{
	long long v = 0;

	(void)state;
	assert_int_equal(tr_parse_int("1", 1, 100, &v), TR_OK);
	assert_int_equal(v, 1);
	assert_int_equal(tr_parse_int("100", 1, 100, &v), TR_OK);
	assert_int_equal(v, 100);
}

static void
test_parse_int_rejects_values_outside_bounds(void **state)
{
	long long v = 99;

	(void)state;
	assert_int_equal(tr_parse_int("0", 1, 100, &v), TR_EINVALID);
	assert_int_equal(tr_parse_int("101", 1, 100, &v), TR_EINVALID);
	assert_int_equal(v, 99);
}

static void
test_parse_int_rejects_overflowing_values(void **state)
{
	long long v = 99;

	(void)state;
	assert_int_equal(tr_parse_int("9223372036854775808", 0, INT64_MAX, &v), TR_EINVALID);
	assert_int_equal(tr_parse_int("-9223372036854775809", INT64_MIN, 0, &v), TR_EINVALID);
	assert_int_equal(v, 99);
}

static void
test_parse_int_accepts_int64_max(void **state)
{
	long long v = 0;

	(void)state;
	assert_int_equal(tr_parse_int("9223372036854775807", 0, INT64_MAX, &v), TR_OK);
	assert_true(v == INT64_MAX);
}

static void
test_parse_int_rejects_empty_and_null(void **state)
{
	long long v = 0;

	(void)state;
	assert_int_equal(tr_parse_int("", 0, 10, &v), TR_EINVALID);
	assert_int_equal(tr_parse_int(NULL, 0, 10, &v), TR_EINVALID);
}

static void
test_parse_int_rejects_garbage(void **state)
{
	static const char *const bad[] = {"abc", "12abc", "1.5", " 1",	 "1 ",
					  "+1",	 "-",	  "1-2", "0x10", "--1"};
	long long v = 0;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (tr_parse_int(bad[i], -100, 100, &v) != TR_EINVALID)
			fail_msg("tr_parse_int accepted \"%s\"", bad[i]);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_format_time_of_epoch_zero),
	    cmocka_unit_test(test_format_time_keeps_milliseconds),
	    cmocka_unit_test(test_format_time_pads_small_milliseconds),
	    cmocka_unit_test(test_format_time_of_negative_ms_counts_back_from_the_epoch),
	    cmocka_unit_test(test_format_time_of_negative_whole_seconds),
	    cmocka_unit_test(test_format_time_writes_exactly_24_chars_and_a_terminator),
	    cmocka_unit_test(test_object_id_accepts_24_hex_digits_of_either_case),
	    cmocka_unit_test(test_object_id_rejects_wrong_length),
	    cmocka_unit_test(test_object_id_rejects_non_hex_characters),
	    cmocka_unit_test(test_object_id_rejects_null),
	    cmocka_unit_test(test_b64url_encode_uses_url_alphabet_without_padding),
	    cmocka_unit_test(test_b64url_round_trip_of_every_byte_value),
	    cmocka_unit_test(test_b64url_round_trip_of_empty_input),
	    cmocka_unit_test(test_b64url_decode_rejects_standard_alphabet),
	    cmocka_unit_test(test_b64url_decode_rejects_padding),
	    cmocka_unit_test(test_b64url_decode_rejects_impossible_length),
	    cmocka_unit_test(test_b64url_decode_rejects_garbage_characters),
	    cmocka_unit_test(test_b64url_decode_rejects_output_larger_than_buffer),
	    cmocka_unit_test(test_sha256_hex_of_abc),
	    cmocka_unit_test(test_sha256_hex_of_empty_input),
	    cmocka_unit_test(test_parse_int_accepts_values_within_bounds),
	    cmocka_unit_test(test_parse_int_accepts_both_bounds_inclusive),
	    cmocka_unit_test(test_parse_int_rejects_values_outside_bounds),
	    cmocka_unit_test(test_parse_int_rejects_overflowing_values),
	    cmocka_unit_test(test_parse_int_accepts_int64_max),
	    cmocka_unit_test(test_parse_int_rejects_empty_and_null),
	    cmocka_unit_test(test_parse_int_rejects_garbage),
	};

	return cmocka_run_group_tests_name("util", tests, NULL, NULL);
}
