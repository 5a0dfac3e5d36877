/* If-Match parsing (tr_if_match_version in server/data/db.c): a positive version
 * when the header names one, -1 when the write is unconditional (no header,
 * or "*"), 0 when the header is malformed and the caller answers 400. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "db.h"

static void
test_bare_number_is_that_version(void **state)
{
	(void)state;
	assert_int_equal(tr_if_match_version("3"), 3);
}

static void
test_quoted_number_is_that_version(void **state)
{
	(void)state;
	assert_int_equal(tr_if_match_version("\"3\""), 3);
}

static void
test_large_version_is_kept_whole(void **state)
{
	(void)state;
	assert_true(tr_if_match_version("\"9223372036854775807\"") == INT64_MAX);
}

static void
test_star_is_unconditional(void **state)
{
	(void)state;
	assert_int_equal(tr_if_match_version("*"), -1);
}

static void
test_absent_header_is_unconditional(void **state)
{
	(void)state;
	assert_int_equal(tr_if_match_version(NULL), -1);
}

static void
test_empty_header_is_malformed(void **state)
{
	(void)state;
	assert_int_equal(tr_if_match_version(""), 0);
}

static void
test_empty_quotes_are_malformed(void **state)
{
	(void)state;
	assert_int_equal(tr_if_match_version("\"\""), 0);
}

static void
test_weak_etag_is_malformed(void **state)
{
	(void)state;
	assert_int_equal(tr_if_match_version("W/\"3\""), 0);
}

static void
test_letters_are_malformed(void **state)
{
	(void)state;
	assert_int_equal(tr_if_match_version("abc"), 0);
	assert_int_equal(tr_if_match_version("\"abc\""), 0);
}

static void
test_version_zero_is_malformed(void **state)
{
	(void)state;
	assert_int_equal(tr_if_match_version("0"), 0);
	assert_int_equal(tr_if_match_version("\"0\""), 0);
}

static void
test_negative_version_is_malformed(void **state)
{
	(void)state;
	assert_int_equal(tr_if_match_version("-3"), 0);
}

static void
test_lone_quote_is_malformed(void **state)
{
	(void)state;
	assert_int_equal(tr_if_match_version("\""), 0);
	assert_int_equal(tr_if_match_version("\"3"), 0);
}

static void
test_list_of_etags_is_malformed(void **state)
{
	(void)state;
	assert_int_equal(tr_if_match_version("\"3\", \"4\""), 0);
}

static void
test_overlong_header_is_malformed(void **state)
{
	(void)state;
	assert_int_equal(tr_if_match_version("\"00000000000000000000000000000000000000001\""), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_bare_number_is_that_version),
	    cmocka_unit_test(test_quoted_number_is_that_version),
	    cmocka_unit_test(test_large_version_is_kept_whole),
	    cmocka_unit_test(test_star_is_unconditional),
	    cmocka_unit_test(test_absent_header_is_unconditional),
	    cmocka_unit_test(test_empty_header_is_malformed),
	    cmocka_unit_test(test_empty_quotes_are_malformed),
	    cmocka_unit_test(test_weak_etag_is_malformed),
	    cmocka_unit_test(test_letters_are_malformed),
	    cmocka_unit_test(test_version_zero_is_malformed),
	    cmocka_unit_test(test_negative_version_is_malformed),
	    cmocka_unit_test(test_lone_quote_is_malformed),
	    cmocka_unit_test(test_list_of_etags_is_malformed),
	    cmocka_unit_test(test_overlong_header_is_malformed),
	};

	return cmocka_run_group_tests_name("db_if_match", tests, NULL, NULL);
}
