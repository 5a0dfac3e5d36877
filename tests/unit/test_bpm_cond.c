/* The BPM condition language and ISO 8601 durations (modules/bpm/cond.c,
 * cond.h says the language): each operator and its precedence, how values
 * of each type compare, variables missing or nested, every parse error
 * with its byte offset, the length and depth limits, arbitrary bytes, and
 * durations well-formed and not. Every expected value is worked by hand. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bpm/cond.h"

static char err[256];

/* bpm_cond_check of src against the variables in json (extended JSON as
 * libbson reads it); the reason of a -1 is left in err. */
static int
check(const char *src, const char *json)
{
	bson_error_t berr;
	bson_t *vars = bson_new_from_json((const uint8_t *)json, -1, &berr);
	int r;

	assert_non_null(vars);
	memset(err, 0, sizeof(err));
	r = bpm_cond_check(src, vars, err, sizeof(err));
	bson_destroy(vars);
	return r;
}

/* The reason src does not parse (the test fails if it does). */
static const char *
parse_error(const char *src)
{
	struct bpm_cond *c;

	memset(err, 0, sizeof(err));
	c = bpm_cond_parse(src, err, sizeof(err));
	if (c != NULL) {
		bpm_cond_free(c);
		fail_msg("parsed: %s", src);
	}
	return err;
}

/* ---- the contract's example and each operator ---- */

static void
test_the_contract_example_reads_a_form_field(void **state)
{
	(void)state;
	assert_int_equal(check("approved == true", "{\"approved\": true}"), 1);
	assert_int_equal(check("approved == true", "{\"approved\": false}"), 0);
	assert_string_equal(err, "");
}

static void
test_each_comparison_on_integers(void **state)
{
	static const struct {
		const char *src;
		int when2, when3, when4; /* n = 2, 3, 4 */
	} rows[] = {
	    {"n == 3", 0, 1, 0}, {"n != 3", 1, 0, 1}, {"n < 3", 1, 0, 0},
	    {"n <= 3", 1, 1, 0}, {"n > 3", 0, 0, 1},  {"n >= 3", 0, 1, 1},
	};

	(void)state;
	for (size_t k = 0; k < sizeof(rows) / sizeof(rows[0]); k++) {
		assert_int_equal(check(rows[k].src, "{\"n\": 2}"), rows[k].when2);
		assert_int_equal(check(rows[k].src, "{\"n\": 3}"), rows[k].when3);
		assert_int_equal(check(rows[k].src, "{\"n\": 4}"), rows[k].when4);
	}
}

static void
test_literal_may_stand_on_either_side(void **state)
{
	(void)state;
	assert_int_equal(check("3 < n", "{\"n\": 4}"), 1);
	assert_int_equal(check("3 < n", "{\"n\": 3}"), 0);
	assert_int_equal(check("a == b", "{\"a\": \"x\", \"b\": \"x\"}"), 1);
}

static void
test_spaces_are_optional_between_tokens(void **state)
{
	(void)state;
	assert_int_equal(check("n>=-1 and(s=='x')", "{\"n\": -1, \"s\": \"x\"}"), 1);
	assert_int_equal(check(" \t\r\n n == 1 \n", "{\"n\": 1}"), 1);
}

/* ---- precedence ---- */

static void
test_and_binds_tighter_than_or(void **state)
{
	(void)state;
	/* true or (true and false); (true or true) and false would be false */
	assert_int_equal(check("true or true and false", "{}"), 1);
	/* (false and false) or true; false and (false or true) would be false */
	assert_int_equal(check("false and false or true", "{}"), 1);
	assert_int_equal(check("(true or true) and false", "{}"), 0);
}

static void
test_comparison_binds_tighter_than_and_and_or(void **state)
{
	(void)state;
	assert_int_equal(check("a == 1 and b == 2 or c == 3", "{\"a\": 1, \"b\": 0, \"c\": 3}"), 1);
	assert_int_equal(check("a == 1 and (b == 2 or c == 3)", "{\"a\": 0, \"b\": 2, \"c\": 3}"),
			 0);
}

static void
test_not_binds_tighter_than_a_comparison(void **state)
{
	(void)state;
	/* (not n) == 1: `not` of a number cannot be evaluated */
	assert_int_equal(check("not n == 1", "{\"n\": 1}"), -1);
	assert_string_equal(err, "\"n\" is a number, not true or false");
	assert_int_equal(check("not (n == 1)", "{\"n\": 1}"), 0);
	assert_int_equal(check("not (n == 1)", "{\"n\": 2}"), 1);
	/* (not done) == false */
	assert_int_equal(check("not done == false", "{\"done\": true}"), 1);
}

static void
test_not_negates_and_nests(void **state)
{
	(void)state;
	assert_int_equal(check("not true", "{}"), 0);
	assert_int_equal(check("not not true", "{}"), 1);
	assert_int_equal(check("not flag", "{\"flag\": false}"), 1);
	assert_int_equal(check("not (true and false)", "{}"), 1);
}

static void
test_a_comparison_may_compare_conditions(void **state)
{
	(void)state;
	assert_int_equal(check("(a < 1) == (b < 1)", "{\"a\": 0, \"b\": 0}"), 1);
	assert_int_equal(check("(a < 1) != (b < 1)", "{\"a\": 0, \"b\": 0}"), 0);
}

/* ---- and / or evaluate their right side only when needed ---- */

static void
test_and_or_short_circuit(void **state)
{
	(void)state;
	assert_int_equal(check("false and missing", "{}"), 0);
	assert_int_equal(check("true or missing", "{}"), 1);
	assert_int_equal(check("true and missing", "{}"), -1);
	assert_string_equal(err, "unknown variable \"missing\"");
	assert_int_equal(check("false or missing == 1", "{}"), -1);
	assert_int_equal(check("x != null and x > 3", "{\"x\": 5}"), 1);
	assert_int_equal(check("x != null and x > 3", "{\"x\": null}"), 0);
}

/* ---- values and their types ---- */

static void
test_integers_of_either_width_compare_exactly(void **state)
{
	(void)state;
	/* 2^53 + 1: int64 in BSON, and not a double */
	assert_int_equal(check("big == 9007199254740993", "{\"big\": 9007199254740993}"), 1);
	assert_int_equal(check("big > 9007199254740992", "{\"big\": 9007199254740993}"), 1);
	/* an int32 variable against an int64 literal */
	assert_int_equal(check("n < 3000000000", "{\"n\": 7}"), 1);
	assert_int_equal(check("a == b", "{\"a\": 7, \"b\": {\"$numberLong\": \"7\"}}"), 1);
}

static void
test_an_integer_and_a_decimal_compare_by_value(void **state)
{
	(void)state;
	assert_int_equal(check("n == 3.0", "{\"n\": 3}"), 1);
	assert_int_equal(check("n < 3.5", "{\"n\": 3}"), 1);
	assert_int_equal(check("n > 2.5", "{\"n\": 3}"), 1);
	assert_int_equal(check("n >= 3.5", "{\"n\": 3}"), 0);
	assert_int_equal(check("x == 3", "{\"x\": 3.0}"), 1);
	assert_int_equal(check("x <= -1", "{\"x\": -1.5}"), 1);
	assert_int_equal(check("total >= 99.99", "{\"total\": 100.0}"), 1);
	/* 2^53 + 1 is not the double 2^53, though converting it would say so */
	assert_int_equal(check("big == 9007199254740992.0", "{\"big\": 9007199254740993}"), 0);
	assert_int_equal(check("big > 9007199254740992.0", "{\"big\": 9007199254740993}"), 1);
}

static void
test_a_not_a_number_equals_nothing(void **state)
{
	static const char *nan = "{\"x\": {\"$numberDouble\": \"NaN\"}}";

	(void)state;
	assert_int_equal(check("x == x", nan), 0);
	assert_int_equal(check("x != x", nan), 1);
	assert_int_equal(check("x < 1", nan), 0);
	assert_int_equal(check("x >= 1", nan), 0);
	assert_int_equal(check("1 > x", nan), 0);
}

static void
test_int64_limits_are_numbers(void **state)
{
	(void)state;
	assert_int_equal(check("n == -9223372036854775808",
			       "{\"n\": {\"$numberLong\": \"-9223372036854775808\"}}"),
			 1);
	assert_int_equal(check("n == 9223372036854775807",
			       "{\"n\": {\"$numberLong\": \"9223372036854775807\"}}"),
			 1);
	assert_int_equal(check("-9223372036854775808 < 9223372036854775807", "{}"), 1);
	assert_int_equal(check("-0 == 0", "{}"), 1);
}

static void
test_strings_order_by_bytes(void **state)
{
	(void)state;
	assert_int_equal(check("s < \"b\"", "{\"s\": \"a\"}"), 1);
	assert_int_equal(check("s < \"b\"", "{\"s\": \"b\"}"), 0);
	assert_int_equal(check("s < \"b\"", "{\"s\": \"ab\"}"), 1);
	assert_int_equal(check("s < \"abc\"", "{\"s\": \"ab\"}"), 1); /* a prefix first */
	assert_int_equal(check("s > \"B\"", "{\"s\": \"a\"}"), 1);    /* 'a' 0x61 > 'B' 0x42 */
	/* UTF-8 lead bytes sort after ASCII: "é" (c3 a9) > "z" */
	assert_int_equal(check("s > 'z'", "{\"s\": \"\xc3\xa9\"}"), 1);
	assert_int_equal(check("s == ''", "{\"s\": \"\"}"), 1);
	assert_int_equal(check("s <= 'gold'", "{\"s\": \"gold\"}"), 1);
}

static void
test_string_escapes_and_either_quote(void **state)
{
	(void)state;
	assert_int_equal(check("s == 'it\\'s'", "{\"s\": \"it's\"}"), 1);
	assert_int_equal(check("s == \"say \\\"hi\\\"\"", "{\"s\": \"say \\\"hi\\\"\"}"), 1);
	assert_int_equal(check("s == 'say \"hi\"'", "{\"s\": \"say \\\"hi\\\"\"}"), 1);
	assert_int_equal(check("s == \"a\\\\b\"", "{\"s\": \"a\\\\b\"}"), 1);
	assert_int_equal(check("s == \"it\\'s\"", "{\"s\": \"it's\"}"), 1);
}

static void
test_equality_across_types_is_false_never_an_error(void **state)
{
	(void)state;
	assert_int_equal(check("n == \"3\"", "{\"n\": 3}"), 0);
	assert_int_equal(check("n != \"3\"", "{\"n\": 3}"), 1);
	assert_int_equal(check("flag == 1", "{\"flag\": true}"), 0);
	assert_int_equal(check("flag != 0", "{\"flag\": false}"), 1);
	assert_int_equal(check("n == null", "{\"n\": 0}"), 0);
	assert_int_equal(check("s != null", "{\"s\": \"\"}"), 1);
	assert_int_equal(check("true == 'true'", "{}"), 0);
}

static void
test_null_equals_null(void **state)
{
	(void)state;
	assert_int_equal(check("x == null", "{\"x\": null}"), 1);
	assert_int_equal(check("x != null", "{\"x\": null}"), 0);
	assert_int_equal(check("null == null", "{}"), 1);
}

static void
test_booleans_equal_by_value(void **state)
{
	(void)state;
	assert_int_equal(check("a == b", "{\"a\": true, \"b\": true}"), 1);
	assert_int_equal(check("a == b", "{\"a\": true, \"b\": false}"), 0);
	assert_int_equal(check("a != false", "{\"a\": true}"), 1);
}

static void
test_ordering_other_than_numbers_or_strings_is_an_error(void **state)
{
	(void)state;
	assert_int_equal(check("s < 3", "{\"s\": \"2\"}"), -1);
	assert_string_equal(err, "cannot order a string and a number with '<'");
	assert_int_equal(check("3 >= s", "{\"s\": \"2\"}"), -1);
	assert_string_equal(err, "cannot order a number and a string with '>='");
	assert_int_equal(check("flag > false", "{\"flag\": true}"), -1);
	assert_string_equal(err, "cannot order a bool and a bool with '>'");
	assert_int_equal(check("x <= null", "{\"x\": null}"), -1);
	assert_string_equal(err, "cannot order null and null with '<='");
}

static void
test_documents_and_arrays_equal_nothing_else(void **state)
{
	static const char *vars = "{\"order\": {\"total\": 1}, \"lines\": [1, 2]}";

	(void)state;
	assert_int_equal(check("order == null", vars), 0);
	assert_int_equal(check("order != null", vars), 1);
	assert_int_equal(check("lines == 1", vars), 0);
	assert_int_equal(check("order == lines", vars), 0);
	assert_int_equal(check("order == order", vars), -1);
	assert_string_equal(err, "cannot compare a document and a document with '=='");
	assert_int_equal(check("lines != lines", vars), -1);
	assert_string_equal(err, "cannot compare an array and an array with '!='");
	assert_int_equal(check("lines < 3", vars), -1);
	assert_string_equal(err, "cannot order an array and a number with '<'");
}

/* ---- variables ---- */

static void
test_paths_walk_sub_documents(void **state)
{
	static const char *vars =
	    "{\"order\": {\"total\": 150, \"customer\": {\"tier\": \"gold\"}}, \"total\": 1}";

	(void)state;
	assert_int_equal(check("order.total >= 100 and order.customer.tier == 'gold'", vars), 1);
	assert_int_equal(check("order.total == 1", vars), 0); /* not the top-level total */
	assert_int_equal(check("total == 1", vars), 1);
	assert_int_equal(check("_a.b_2.c3 == 'x'", "{\"_a\": {\"b_2\": {\"c3\": \"x\"}}}"), 1);
}

static void
test_a_missing_variable_is_an_error_not_null(void **state)
{
	(void)state;
	assert_int_equal(check("missing == null", "{}"), -1);
	assert_string_equal(err, "unknown variable \"missing\"");
	assert_int_equal(check("missing != 1", "{\"other\": 1}"), -1);
	assert_string_equal(err, "unknown variable \"missing\"");
}

static void
test_a_missing_nested_variable_names_its_whole_path(void **state)
{
	static const char *vars = "{\"order\": {\"total\": 150, \"lines\": [{\"qty\": 1}]}}";

	(void)state;
	assert_int_equal(check("order.tax == 0", vars), -1);
	assert_string_equal(err, "unknown variable \"order.tax\"");
	/* through a number, and through an array: neither is a document */
	assert_int_equal(check("order.total.cents == 0", vars), -1);
	assert_string_equal(err, "unknown variable \"order.total.cents\"");
	assert_int_equal(check("order.lines.qty == 1", vars), -1);
	assert_string_equal(err, "unknown variable \"order.lines.qty\"");
}

static void
test_names_match_exactly(void **state)
{
	(void)state;
	assert_int_equal(check("Total == 1", "{\"total\": 1}"), -1);
	assert_string_equal(err, "unknown variable \"Total\"");
	assert_int_equal(check("tot == 1", "{\"total\": 1}"), -1);
	assert_int_equal(check("total == 1", "{\"tot\": 1}"), -1);
}

static void
test_names_may_begin_with_a_keyword(void **state)
{
	(void)state;
	assert_int_equal(check("null_count == 0 and order_no == 7 and nothing",
			       "{\"null_count\": 0, \"order_no\": 7, \"nothing\": true}"),
			 1);
	/* keywords are lower case; TRUE is a name */
	assert_int_equal(check("TRUE", "{\"TRUE\": false}"), 0);
}

static void
test_a_bare_path_must_hold_true_or_false(void **state)
{
	(void)state;
	assert_int_equal(check("approved", "{\"approved\": true}"), 1);
	assert_int_equal(check("approved", "{\"approved\": false}"), 0);
	assert_int_equal(check("n", "{\"n\": 1}"), -1);
	assert_string_equal(err, "\"n\" is a number, not true or false");
	assert_int_equal(check("ok and s", "{\"ok\": true, \"s\": \"yes\"}"), -1);
	assert_string_equal(err, "\"s\" is a string, not true or false");
	assert_int_equal(check("x or true", "{\"x\": null}"), -1);
	assert_string_equal(err, "\"x\" is null, not true or false");
}

static void
test_no_variables_is_an_empty_document(void **state)
{
	(void)state;
	assert_int_equal(bpm_cond_check("1 < 2", NULL, err, sizeof(err)), 1);
	assert_int_equal(bpm_cond_check("x", NULL, err, sizeof(err)), -1);
	assert_string_equal(err, "unknown variable \"x\"");
}

static void
test_a_condition_parsed_once_evaluates_many_times(void **state)
{
	bson_t *low = BCON_NEW("amount", BCON_INT32(10));
	bson_t *high = BCON_NEW("amount", BCON_INT64(5000));
	bson_t *none = bson_new();
	struct bpm_cond *c = bpm_cond_parse("amount > 1000", err, sizeof(err));

	(void)state;
	assert_non_null(c);
	assert_int_equal(bpm_cond_eval(c, low, err, sizeof(err)), 0);
	assert_int_equal(bpm_cond_eval(c, high, err, sizeof(err)), 1);
	assert_int_equal(bpm_cond_eval(c, none, err, sizeof(err)), -1);
	assert_string_equal(err, "unknown variable \"amount\"");
	assert_int_equal(bpm_cond_eval(c, high, err, sizeof(err)), 1);
	assert_string_equal(err, ""); /* cleared by a success */
	bpm_cond_free(c);
	bson_destroy(low);
	bson_destroy(high);
	bson_destroy(none);
}

static void
test_null_arguments_and_no_error_buffer_are_safe(void **state)
{
	(void)state;
	bpm_cond_free(NULL);
	assert_null(bpm_cond_parse(NULL, err, sizeof(err)));
	assert_string_equal(err, "at 0: no condition");
	assert_int_equal(bpm_cond_eval(NULL, NULL, err, sizeof(err)), -1);
	assert_string_equal(err, "no condition");
	assert_int_equal(bpm_cond_check("x ==", NULL, NULL, 0), -1);
	assert_int_equal(bpm_cond_check("x", NULL, NULL, 0), -1);
	assert_int_equal(bpm_cond_check("true", NULL, NULL, 0), 1);
}

static void
test_a_short_error_buffer_is_cut_and_terminated(void **state)
{
	char small[8];

	(void)state;
	memset(small, 'z', sizeof(small));
	assert_int_equal(bpm_cond_check("approved ==", NULL, small, sizeof(small)), -1);
	assert_string_equal(small, "at 11: ");
}

/* ---- parse errors and their offsets ---- */

static void
test_parse_errors_name_the_byte_offset(void **state)
{
	static const struct {
		const char *src, *reason;
	} rows[] = {
	    {"approved ==", "at 11: expected a value after '=='"},
	    {"", "at 0: empty condition"},
	    {"   ", "at 3: empty condition"},
	    {"a ==)", "at 4: expected a value after '==', found ')'"},
	    {"a and", "at 5: expected a value after 'and'"},
	    {"not", "at 3: expected a value after 'not'"},
	    {"and a", "at 0: expected a value, found 'and'"},
	    {"()", "at 1: expected a value after '(', found ')'"},
	    {"(a == 1", "at 7: expected ')' to close '(' at 0"},
	    {"(a == 1 b", "at 8: expected an operator or ')', found \"b\""},
	    {"a == 1)", "at 6: ')' without '('"},
	    {"a b", "at 2: expected an operator or the end, found \"b\""},
	    {"a == 1 2", "at 7: expected an operator or the end, found 2"},
	    {"a == 1 'x'", "at 7: expected an operator or the end, found a string"},
	    {"a = 1", "at 2: '=' is not an operator; use '=='"},
	    {"!a", "at 0: '!' is not an operator; use '!=' or 'not'"},
	    {"a && b", "at 2: '&' is not an operator; use 'and'"},
	    {"a || b", "at 2: '|' is not an operator; use 'or'"},
	    {"a == @", "at 5: unexpected '@'"},
	    {"a == \x01", "at 5: unexpected byte 0x01"},
	    {"a == \xff", "at 5: unexpected byte 0xff"},
	    {"a == 'x", "at 5: unterminated string"},
	    {"a == \"x\\", "at 5: unterminated string"},
	    {"s == 'a\\nb'", "at 7: unknown escape '\\n'"},
	    {"s == 'a\\\x01'", "at 7: unknown escape: '\\' then byte 0x01"},
	    {"a.", "at 2: expected a name after '.'"},
	    {"a..b", "at 2: expected a name after '.'"},
	    {"a.1b == 1", "at 2: expected a name after '.'"},
	    {"a . b", "at 2: unexpected '.'"},
	    {".5 < 1", "at 0: unexpected '.'"},
	    {"a.true", "at 2: 'true' is a reserved word, not a name"},
	    {"order.not == 1", "at 6: 'not' is a reserved word, not a name"},
	    {"null.x == 1", "at 0: 'null' is a reserved word, not a name"},
	    {"x == 1.", "at 7: expected a digit after '.'"},
	    {"x == - 1", "at 6: expected a digit after '-'"},
	    {"x == 1.5e3", "at 5: malformed number"},
	    {"x == 1.2.3", "at 5: malformed number"},
	    {"x == 12abc", "at 5: malformed number"},
	    {"x == -1and y", "at 5: malformed number"},
	    {"a < b < c", "at 6: comparisons do not chain; join them with 'and'"},
	    {"a == b != c", "at 7: comparisons do not chain; join them with 'and'"},
	};

	(void)state;
	for (size_t k = 0; k < sizeof(rows) / sizeof(rows[0]); k++) {
		const char *reason = parse_error(rows[k].src);
		if (strcmp(reason, rows[k].reason) != 0)
			fail_msg("%s: got \"%s\", want \"%s\"", rows[k].src, reason,
				 rows[k].reason);
	}
}

static void
test_numbers_out_of_range_are_refused(void **state)
{
	char src[600];

	(void)state;
	assert_string_equal(parse_error("x == 9223372036854775808"), "at 5: number out of range");
	assert_string_equal(parse_error("x == -9223372036854775809"), "at 5: number out of range");
	assert_string_equal(parse_error("x == 99999999999999999999999999"),
			    "at 5: number out of range");
	/* a decimal beyond the largest double: 1 and 400 zeros, then ".0" */
	strcpy(src, "x == 1");
	memset(src + 6, '0', 400);
	strcpy(src + 406, ".0");
	assert_string_equal(parse_error(src), "at 5: number out of range");
	/* a decimal too small for a double is as near as a double gets: 0 */
	strcpy(src, "0.");
	memset(src + 2, '0', 400);
	strcpy(src + 402, "1 == 0");
	assert_int_equal(check(src, "{}"), 1);
}

static void
test_a_literal_that_is_never_true_or_false_is_refused(void **state)
{
	(void)state;
	assert_string_equal(parse_error("5"),
			    "at 0: expected a condition (true or false), found a number");
	assert_string_equal(parse_error("'yes'"),
			    "at 0: expected a condition (true or false), found a string");
	assert_string_equal(parse_error("x and \"yes\""),
			    "at 6: expected a condition (true or false), found a string");
	assert_string_equal(parse_error("1.5 or x"),
			    "at 0: expected a condition (true or false), found a number");
	assert_string_equal(parse_error("not null"),
			    "at 4: expected a condition (true or false), found null");
	assert_string_equal(parse_error("(((7)))"),
			    "at 3: expected a condition (true or false), found a number");
	/* but true and false are conditions */
	assert_int_equal(check("true", "{}"), 1);
	assert_int_equal(check("false", "{}"), 0);
}

/* ---- limits ---- */

static void
test_a_condition_may_be_1000_bytes_and_no_more(void **state)
{
	char src[BPM_COND_MAX_LEN + 2];

	(void)state;
	/* s == "aaa...a": 6 bytes, 993 a's, the closing quote: 1000 */
	memcpy(src, "s == \"", 6);
	memset(src + 6, 'a', 993);
	src[999] = '"';
	src[1000] = '\0';
	assert_int_equal(check(src, "{\"s\": \"a\"}"), 0);
	assert_string_equal(err, "");
	src[999] = 'a';
	src[1000] = '"';
	src[1001] = '\0';
	assert_string_equal(parse_error(src), "at 1000: longer than 1000 bytes");
}

/* n opening parentheses, "true", n closing ones, in buf. */
static const char *
nested(char *buf, int n)
{
	memset(buf, '(', (size_t)n);
	memcpy(buf + n, "true", 4);
	memset(buf + n + 4, ')', (size_t)n);
	buf[2 * n + 4] = '\0';
	return buf;
}

static void
test_nesting_is_64_deep_at_most(void **state)
{
	char src[BPM_COND_MAX_LEN + 1];

	(void)state;
	assert_int_equal(check(nested(src, 64), "{}"), 1);
	assert_string_equal(parse_error(nested(src, 65)), "at 64: nested deeper than 64");
	/* `not` nests too: 64 of them (even: true), then 65 */
	src[0] = '\0';
	for (int k = 0; k < 64; k++)
		strcat(src, "not ");
	strcat(src, "true");
	assert_int_equal(check(src, "{}"), 1);
	memmove(src + 4, src, strlen(src) + 1);
	memcpy(src, "not ", 4);
	assert_string_equal(parse_error(src), "at 256: nested deeper than 64");
	/* a thousand parentheses stop at the 65th, without deep recursion */
	memset(src, '(', BPM_COND_MAX_LEN);
	src[BPM_COND_MAX_LEN] = '\0';
	assert_string_equal(parse_error(src), "at 64: nested deeper than 64");
}

static void
test_long_chains_of_and_or_are_not_nesting(void **state)
{
	char src[BPM_COND_MAX_LEN + 1] = "";

	(void)state;
	/* "a or a or ... or b": 199 times "a or " (5 bytes), then "b": 996 */
	for (int k = 0; k < 199; k++)
		strcat(src, "a or ");
	strcat(src, "b");
	assert_true(strlen(src) <= BPM_COND_MAX_LEN);
	assert_int_equal(check(src, "{\"a\": false, \"b\": true}"), 1);
	assert_int_equal(check(src, "{\"a\": false, \"b\": false}"), 0);
}

/* ---- any bytes at all ---- */

/* Parses and evaluates src: whatever it is, the answer is -1 with a
 * reason, or 0 or 1 without one (ASan and UBSan watch the rest). */
static void
parse_and_eval_anything(const char *src, const bson_t *vars)
{
	int r = bpm_cond_check(src, vars, err, sizeof(err));

	assert_true(r == -1 || r == 0 || r == 1);
	if (r == -1)
		assert_true(err[0] != '\0' && strchr(err, '\n') == NULL);
}

static void
test_every_prefix_of_a_condition_is_handled(void **state)
{
	static const char *full = "not (order.total >= 100.5 and s != 'it\\'s') or n < -3";
	bson_t *vars = BCON_NEW("order", "{", "total", BCON_DOUBLE(150.0), "}", "s", BCON_UTF8("x"),
				"n", BCON_INT32(-4));
	char src[128];

	(void)state;
	for (size_t k = 0; k <= strlen(full); k++) {
		memcpy(src, full, k);
		src[k] = '\0';
		parse_and_eval_anything(src, vars);
	}
	assert_int_equal(bpm_cond_check(full, vars, err, sizeof(err)), 1);
	bson_destroy(vars);
}

static void
test_random_bytes_are_handled(void **state)
{
	static const char alphabet[] = "()=!<>&|'\"\\.-_ 0123456789aznotrufls\t\x01\x80\xff";
	bson_t *vars =
	    BCON_NEW("a", BCON_BOOL(true), "n", BCON_INT32(1), "o", "{", "t", BCON_UTF8("x"), "}");
	char src[64];
	uint32_t seed = 12345;

	(void)state;
	for (int round = 0; round < 50000; round++) {
		size_t len = (size_t)(round % 40);
		for (size_t k = 0; k < len; k++) {
			seed = seed * 1103515245u + 12345u;
			src[k] = alphabet[(seed >> 16) % (sizeof(alphabet) - 1)];
		}
		src[len] = '\0';
		parse_and_eval_anything(src, vars);
	}
	bson_destroy(vars);
}

/* ---- durations ---- */

static void
test_durations_of_fixed_length_in_milliseconds(void **state)
{
	static const struct {
		const char *iso;
		long long ms;
	} rows[] = {
	    {"PT15M", 900000LL},
	    {"PT4H", 14400000LL},
	    {"PT8H", 28800000LL},
	    {"P1D", 86400000LL},
	    {"P1DT2H30M", 95400000LL}, /* 86400000 + 7200000 + 1800000 */
	    {"P2W", 1209600000LL},     /* 14 days */
	    {"PT0S", 0LL},
	    {"PT90S", 90000LL},
	    {"PT1H1M1S", 3661000LL},
	    {"P1DT1S", 86401000LL},
	    {"PT05M", 300000LL},
	    {"PT36H", 129600000LL},
	    {"P0D", 0LL},
	    /* the largest: 106751991167 days, 7:12:55 - 807 ms short of 2^63 - 1 */
	    {"P106751991167DT7H12M55S", 9223372036854775000LL},
	};

	(void)state;
	for (size_t k = 0; k < sizeof(rows) / sizeof(rows[0]); k++)
		if (bpm_duration_ms(rows[k].iso) != rows[k].ms)
			fail_msg("%s: got %lld, want %lld", rows[k].iso,
				 bpm_duration_ms(rows[k].iso), rows[k].ms);
}

static void
test_malformed_durations_are_minus_one(void **state)
{
	static const char *rows[] = {
	    "",
	    "P",
	    "PT",
	    "P1DT",   /* a T with no time after it */
	    "PT0.5S", /* whole numbers only */
	    "PT0,5S",
	    "-PT1M", /* negative */
	    "P-1D",
	    "P1Y", /* years and months have no fixed length */
	    "P1M",
	    "P1Y2M3D",
	    "P1W1D", /* weeks stand alone */
	    "P1WT1H",
	    "PT1H1H", /* repeated */
	    "P1D1D",
	    "PT1M1H", /* out of order */
	    "PT1S1M",
	    "P1H",  /* a time unit before the T */
	    "PT1D", /* a date unit after it */
	    "PT1W",
	    "PTT1H",
	    "P1DTT1H",
	    "pt1m", /* designators are upper case */
	    "PT1m",
	    " PT1M",
	    "PT1M ",
	    "P1",
	    "PT1",
	    "PTM",
	    "1D",
	    "T1H",
	    "PT+1M",
	    "PT1M\x01",
	    "PT99999999999999999999999S", /* beyond long long */
	    "PT9223372036854775807S",	  /* in range as seconds, not as ms */
	    "P106751991168D",		  /* one day too many */
	    "P106751991167DT7H12M56S",	  /* one second too many */
	    "P15250284453W",		  /* 2^63 ms is 15250284452.47 weeks */
	};

	(void)state;
	assert_int_equal(bpm_duration_ms(NULL), -1);
	for (size_t k = 0; k < sizeof(rows) / sizeof(rows[0]); k++)
		if (bpm_duration_ms(rows[k]) != -1)
			fail_msg("\"%s\": got %lld, want -1", rows[k], bpm_duration_ms(rows[k]));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_the_contract_example_reads_a_form_field),
	    cmocka_unit_test(test_each_comparison_on_integers),
	    cmocka_unit_test(test_literal_may_stand_on_either_side),
	    cmocka_unit_test(test_spaces_are_optional_between_tokens),
	    cmocka_unit_test(test_and_binds_tighter_than_or),
	    cmocka_unit_test(test_comparison_binds_tighter_than_and_and_or),
	    cmocka_unit_test(test_not_binds_tighter_than_a_comparison),
	    cmocka_unit_test(test_not_negates_and_nests),
	    cmocka_unit_test(test_a_comparison_may_compare_conditions),
	    cmocka_unit_test(test_and_or_short_circuit),
	    cmocka_unit_test(test_integers_of_either_width_compare_exactly),
	    cmocka_unit_test(test_an_integer_and_a_decimal_compare_by_value),
	    cmocka_unit_test(test_a_not_a_number_equals_nothing),
	    cmocka_unit_test(test_int64_limits_are_numbers),
	    cmocka_unit_test(test_strings_order_by_bytes),
	    cmocka_unit_test(test_string_escapes_and_either_quote),
	    cmocka_unit_test(test_equality_across_types_is_false_never_an_error),
	    cmocka_unit_test(test_null_equals_null),
	    cmocka_unit_test(test_booleans_equal_by_value),
	    cmocka_unit_test(test_ordering_other_than_numbers_or_strings_is_an_error),
	    cmocka_unit_test(test_documents_and_arrays_equal_nothing_else),
	    cmocka_unit_test(test_paths_walk_sub_documents),
	    cmocka_unit_test(test_a_missing_variable_is_an_error_not_null),
	    cmocka_unit_test(test_a_missing_nested_variable_names_its_whole_path),
	    cmocka_unit_test(test_names_match_exactly),
	    cmocka_unit_test(test_names_may_begin_with_a_keyword),
	    cmocka_unit_test(test_a_bare_path_must_hold_true_or_false),
	    cmocka_unit_test(test_no_variables_is_an_empty_document),
	    cmocka_unit_test(test_a_condition_parsed_once_evaluates_many_times),
	    cmocka_unit_test(test_null_arguments_and_no_error_buffer_are_safe),
	    cmocka_unit_test(test_a_short_error_buffer_is_cut_and_terminated),
	    cmocka_unit_test(test_parse_errors_name_the_byte_offset),
	    cmocka_unit_test(test_numbers_out_of_range_are_refused),
	    cmocka_unit_test(test_a_literal_that_is_never_true_or_false_is_refused),
	    cmocka_unit_test(test_a_condition_may_be_1000_bytes_and_no_more),
	    cmocka_unit_test(test_nesting_is_64_deep_at_most),
	    cmocka_unit_test(test_long_chains_of_and_or_are_not_nesting),
	    cmocka_unit_test(test_every_prefix_of_a_condition_is_handled),
	    cmocka_unit_test(test_random_bytes_are_handled),
	    cmocka_unit_test(test_durations_of_fixed_length_in_milliseconds),
	    cmocka_unit_test(test_malformed_durations_are_minus_one),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
