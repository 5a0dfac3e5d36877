/* The BCG quadrant of one item (modules/crm/report_bcg_class.c): growth
 * and relative share as exact fractions, the borders of both thresholds
 * decided without rounding, the new and the gone item, amounts where
 * doubles lose integers, and how the numbers are written. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "crm/reports.h"

static const struct bcg_thresholds classic = {1000, 10000}; /* 10%, 1.0 */

static struct bcg_class
classify(int64_t revenue, int64_t previous, int64_t largest_other)
{
	struct bcg_class c;
	crm_bcg_classify(revenue, previous, largest_other, &classic, &c);
	return c;
}

static void
test_the_four_quadrants(void **state)
{
	(void)state;
	assert_int_equal(classify(1200, 1000, 1000).quadrant, BCG_STAR);
	assert_int_equal(classify(1050, 1000, 1000).quadrant, BCG_CASH_COW);
	assert_int_equal(classify(600, 500, 1200).quadrant, BCG_QUESTION_MARK);
	assert_int_equal(classify(300, 400, 1200).quadrant, BCG_DOG);
	assert_string_equal(crm_bcg_quadrant_name(BCG_STAR), "star");
	assert_string_equal(crm_bcg_quadrant_name(BCG_CASH_COW), "cash_cow");
	assert_string_equal(crm_bcg_quadrant_name(BCG_QUESTION_MARK), "question_mark");
	assert_string_equal(crm_bcg_quadrant_name(BCG_DOG), "dog");
}

static void
test_borders_are_exact(void **state)
{
	(void)state;
	/* growth exactly 10% is high, a minor unit less is low */
	assert_true(classify(110, 100, 1).high_growth);
	assert_false(classify(109, 100, 1).high_growth);
	/* 10% of 3 is 0.3: 3 -> 4 (33%) is high, 3 -> 3 is not */
	assert_true(classify(4, 3, 1).high_growth);
	assert_false(classify(3, 3, 1).high_growth);
	/* a share exactly the largest other's (a tie) is high, one under low */
	assert_true(classify(1000, 1, 1000).high_share);
	assert_false(classify(999, 1, 1000).high_share);
	/* past 2^53 a double would call these equal */
	int64_t big = 9007199254740993LL; /* 2^53 + 1 */
	assert_false(classify(big - 1, 1, big).high_share);
	assert_true(classify(big, 1, big).high_share);
	assert_true(classify(big, big - 1, 1).has_growth);
	assert_false(classify(big, big - 1, 1).high_growth);
}

static void
test_nothing_before_is_new_and_high_growth(void **state)
{
	(void)state;
	struct bcg_class c = classify(7, 0, 900);
	assert_false(c.has_growth);
	assert_true(c.high_growth);
	assert_int_equal(c.quadrant, BCG_QUESTION_MARK);
	/* nothing now and nothing before: no growth at all */
	c = classify(0, 0, 900);
	assert_false(c.high_growth);
	assert_int_equal(c.quadrant, BCG_DOG);
}

static void
test_alone_in_the_market_is_a_high_share(void **state)
{
	(void)state;
	struct bcg_class c = classify(70, 50, 0);
	assert_false(c.has_share);
	assert_true(c.high_share);
	assert_int_equal(c.quadrant, BCG_STAR);
	/* gone: nothing now, so no share even alone */
	c = classify(0, 50, 0);
	assert_false(c.high_share);
	assert_true(c.has_growth && c.growth_negative);
	assert_int_equal((int64_t)c.growth_scaled, 10000);
	assert_int_equal(c.quadrant, BCG_DOG);
}

static void
test_shown_values_round_half_up_away_from_zero(void **state)
{
	(void)state;
	/* 200/700 = 0.285714 -> 2857; 1/3 -> 3333; 2/3 -> 6667 */
	assert_int_equal((int64_t)classify(900, 700, 1).growth_scaled, 2857);
	assert_int_equal((int64_t)classify(4, 3, 1).growth_scaled, 3333);
	struct bcg_class c = classify(1, 3, 1);
	assert_true(c.growth_negative);
	assert_int_equal((int64_t)c.growth_scaled, 6667);
	/* 1/20000 = 0.00005 rounds up to 0.0001, -0.00005 to -0.0001 */
	assert_int_equal((int64_t)classify(20001, 20000, 1).growth_scaled, 1);
	c = classify(19999, 20000, 1);
	assert_true(c.growth_negative);
	assert_int_equal((int64_t)c.growth_scaled, 1);
	/* shares: 7/900 = 0.0077 -> 78; 1001/1000 -> 10010 */
	assert_int_equal((int64_t)classify(7, 0, 900).share_scaled, 78);
	assert_int_equal((int64_t)classify(1001, 0, 1000).share_scaled, 10010);
}

static void
test_configured_thresholds(void **state)
{
	(void)state;
	struct bcg_thresholds t = {0, 5000};
	struct bcg_class c;
	crm_bcg_classify(500, 500, 1000, &t, &c); /* 0% growth, share 0.5 */
	assert_int_equal(c.quadrant, BCG_STAR);
	crm_bcg_classify(499, 500, 1000, &t, &c);
	assert_int_equal(c.quadrant, BCG_DOG);
	/* a negative threshold: shrinking by less than 5% is still high */
	t.growth_bp = -500;
	crm_bcg_classify(95, 100, 1000, &t, &c);
	assert_true(c.high_growth);
	crm_bcg_classify(94, 100, 1000, &t, &c);
	assert_false(c.high_growth);
}

static void
test_signed_decimals_are_written_with_four_places(void **state)
{
	(void)state;
	bson_t doc = BSON_INITIALIZER;
	crm_report_signed_decimal4_append(&doc, "a", true, 2500);
	crm_report_signed_decimal4_append(&doc, "b", false, 3323333);
	crm_report_signed_decimal4_append(&doc, "c", true, 0);
	bson_iter_t it;
	assert_true(bson_iter_init_find(&it, &doc, "a"));
	assert_string_equal(bson_iter_utf8(&it, NULL), "-0.2500");
	assert_true(bson_iter_init_find(&it, &doc, "b"));
	assert_string_equal(bson_iter_utf8(&it, NULL), "332.3333");
	assert_true(bson_iter_init_find(&it, &doc, "c"));
	assert_string_equal(bson_iter_utf8(&it, NULL), "0.0000");
	bson_destroy(&doc);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_the_four_quadrants),
	    cmocka_unit_test(test_borders_are_exact),
	    cmocka_unit_test(test_nothing_before_is_new_and_high_growth),
	    cmocka_unit_test(test_alone_in_the_market_is_a_high_share),
	    cmocka_unit_test(test_shown_values_round_half_up_away_from_zero),
	    cmocka_unit_test(test_configured_thresholds),
	    cmocka_unit_test(test_signed_decimals_are_written_with_four_places),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
