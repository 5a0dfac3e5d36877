/* Department names compared whatever their case (erp_fold_name in
 * modules/erp/people.c): the folded form a unique index holds, so that
 * "Sales" and " SALES " are one department. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "erp/people.h"

static const char *
fold(const char *name)
{
	static char out[256];

	erp_fold_name(name, out, sizeof(out));
	return out;
}

static void
test_ascii_capitals_fold_to_small_letters(void **state)
{
	(void)state;
	assert_string_equal(fold("Sales EMEA"), "sales emea");
	assert_string_equal(fold("R&D-2"), "r&d-2");
}

static void
test_white_space_around_and_between_words_folds_away(void **state)
{
	(void)state;
	assert_string_equal(fold("  Sales \t  EMEA  "), "sales emea");
	assert_string_equal(fold("Sales\xc2\xa0"
				 "EMEA"),
			    "sales emea"); /* no-break space */
	assert_string_equal(fold("   "), "");
}

static void
test_capitals_of_other_scripts_fold_too(void **state)
{
	(void)state;
	/* Latin-1: Ä Ö Ü, and × (a sign, not a letter) unchanged */
	assert_string_equal(fold("\xc3\x84\xc3\x96\xc3\x9c \xc3\x97"),
			    "\xc3\xa4\xc3\xb6\xc3\xbc \xc3\x97");
	/* Latin Extended-A: Ł Ś Ž -> ł ś ž; Ÿ -> ÿ */
	assert_string_equal(fold("\xc5\x81\xc5\x9a\xc5\xbd\xc5\xb8"),
			    "\xc5\x82\xc5\x9b\xc5\xbe\xc3\xbf");
	/* Greek: ΑΒΓ Ά -> αβγ ά */
	assert_string_equal(fold("\xce\x91\xce\x92\xce\x93 \xce\x86"),
			    "\xce\xb1\xce\xb2\xce\xb3 \xce\xac");
	/* Cyrillic: ПРОДАЖИ Ё -> продажи ё */
	assert_string_equal(
	    fold("\xd0\x9f\xd0\xa0\xd0\x9e\xd0\x94\xd0\x90\xd0\x96\xd0\x98 \xd0\x81"),
	    "\xd0\xbf\xd1\x80\xd0\xbe\xd0\xb4\xd0\xb0\xd0\xb6\xd0\xb8 \xd1\x91");
}

static void
test_small_letters_and_other_text_stay_as_they_are(void **state)
{
	(void)state;
	assert_string_equal(fold("\xc3\xa4 \xd0\xbf \xe6\x97\xa5\xe6\x9c\xac"),
			    "\xc3\xa4 \xd0\xbf \xe6\x97\xa5\xe6\x9c\xac"); /* ä п 日本 */
	assert_string_equal(fold("\xf0\x9f\x98\x80"), "\xf0\x9f\x98\x80"); /* an emoji */
}

static void
test_a_short_buffer_gets_whole_characters_only(void **state)
{
	char out[4];

	(void)state;
	erp_fold_name("\xd0\x9f\xd0\xa0", out, sizeof(out)); /* two 2-byte letters: one fits */
	assert_string_equal(out, "\xd0\xbf");
	erp_fold_name("ABC DEF", out, sizeof(out));
	assert_string_equal(out, "abc");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_ascii_capitals_fold_to_small_letters),
	    cmocka_unit_test(test_white_space_around_and_between_words_folds_away),
	    cmocka_unit_test(test_capitals_of_other_scripts_fold_too),
	    cmocka_unit_test(test_small_letters_and_other_text_stay_as_they_are),
	    cmocka_unit_test(test_a_short_buffer_gets_whole_characters_only),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
