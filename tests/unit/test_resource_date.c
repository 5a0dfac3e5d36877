/* Calendar days (tr_parse_date in server/data/resource_fields.c), what a
 * TR_K_DATE field accepts: YYYY-MM-DD naming a day that exists, leap years
 * by the Gregorian rule, nothing around it. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "resource.h"

static void
test_a_plain_day_is_a_date(void **state)
{
	(void)state;
	assert_true(tr_parse_date("2026-11-22"));
	assert_true(tr_parse_date("1999-01-01"));
	assert_true(tr_parse_date("2026-12-31"));
	assert_true(tr_parse_date("0000-01-01"));
	assert_true(tr_parse_date("9999-12-31"));
}

static void
test_days_a_month_lacks_are_refused(void **state)
{
	(void)state;
	assert_false(tr_parse_date("2026-02-29"));
	assert_false(tr_parse_date("2026-04-31"));
	assert_false(tr_parse_date("2026-01-32"));
	assert_false(tr_parse_date("2026-13-01"));
	assert_false(tr_parse_date("2026-00-10"));
	assert_false(tr_parse_date("2026-05-00"));
}

static void
test_february_29_follows_the_gregorian_rule(void **state)
{
	(void)state;
	assert_true(tr_parse_date("2024-02-29"));
	assert_true(tr_parse_date("2000-02-29"));  /* divisible by 400 */
	assert_false(tr_parse_date("1900-02-29")); /* by 100, not 400 */
	assert_false(tr_parse_date("2100-02-29"));
}

static void
test_other_shapes_are_refused(void **state)
{
	(void)state;
	assert_false(tr_parse_date(""));
	assert_false(tr_parse_date("2026-1-22"));
	assert_false(tr_parse_date("2026/11/22"));
	assert_false(tr_parse_date("2026-11-22T00:00:00Z"));
	assert_false(tr_parse_date("2026-11-22 "));
	assert_false(tr_parse_date(" 2026-11-22"));
	assert_false(tr_parse_date("20261-11-22"));
	assert_false(tr_parse_date("2026-1a-22"));
	assert_false(tr_parse_date("+026-11-22"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_a_plain_day_is_a_date),
	    cmocka_unit_test(test_days_a_month_lacks_are_refused),
	    cmocka_unit_test(test_february_29_follows_the_gregorian_rule),
	    cmocka_unit_test(test_other_shapes_are_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
