// unit-under-test: server/data/kv.c
/* The worker threads' Redis client (server/data/kv.c) without a Redis: a
 * printf-style command is split into its arguments (so its slot is
 * known), and a command whose keys span cluster slots is refused before
 * any connection is made, on one Redis as on a cluster. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../../server/data/kv.c"

static int
split(const char *resp, const char **argv, size_t *lens)
{
	return split_formatted(resp, strlen(resp), argv, lens, 8);
}

static void
test_a_formatted_command_splits_into_its_arguments(void **state)
{
	const char *argv[8];
	size_t lens[8];
	char *buf = NULL;

	(void)state;
	assert_int_equal(split("*2\r\n$3\r\nDEL\r\n$5\r\nt:{a}\r\n", argv, lens), 2);
	assert_true(lens[0] == 3 && memcmp(argv[0], "DEL", 3) == 0);
	assert_true(lens[1] == 5 && memcmp(argv[1], "t:{a}", 5) == 0);
	/* what hiredis makes of a format: an interpolated string is one
	 * argument, spaces and all; binary arguments stay whole */
	int len = redisFormatCommand(&buf, "SET %s %b", "k y", "a\r\nb", (size_t)4);
	assert_true(len > 0);
	int argc = split_formatted(buf, (size_t)len, argv, lens, 8);
	bool ok = argc == 3 && lens[1] == 3 && memcmp(argv[1], "k y", 3) == 0 && lens[2] == 4 &&
		  memcmp(argv[2], "a\r\nb", 4) == 0;
	redisFreeCommand(buf);
	assert_true(ok);
	assert_int_equal(split("*1\r\n$0\r\n\r\n", argv, lens), 1);
	assert_int_equal(lens[0], 0);
}

static void
test_a_malformed_or_oversized_command_is_not_split(void **state)
{
	const char *argv[8];
	size_t lens[8];

	(void)state;
	assert_int_equal(split("", argv, lens), -1);
	assert_int_equal(split("PING\r\n", argv, lens), -1);
	assert_int_equal(split("*0\r\n", argv, lens), -1);
	assert_int_equal(split("*9\r\n", argv, lens), -1);		/* more than max */
	assert_int_equal(split("*1\r\n$9\r\nDEL\r\n", argv, lens), -1); /* short */
	assert_int_equal(split("*1\r\n$3\r\nDELX\r\n", argv, lens), -1);
	assert_int_equal(split("*2\r\n$3\r\nDEL\r\n", argv, lens), -1);	 /* one missing */
	assert_int_equal(split("*1\r\n$3\r\nDEL\r\nx", argv, lens), -1); /* trailing */
	assert_int_equal(split("*1\r\n$-1\r\n", argv, lens), -1);
}

/* K.cfg is NULL here: reaching the connection code would crash, so a NULL
 * reply shows the refusal came first. */
static void
test_a_command_whose_keys_span_slots_is_refused_before_connecting(void **state)
{
	const char *eval[] = {"EVAL", "return 1", "2", "t:{a}:x", "t:{b}:y"};
	const char *rename[] = {"RENAME", "t:a:x", "t:{a}:x"};

	(void)state;
	assert_null(tr_kv_command(5, eval, NULL));
	assert_null(tr_kv_command(3, rename, NULL));
	assert_null(tr_kv_command_wait(5, eval, NULL, 100));
	assert_null(tr_kv_commandf("DEL t:{%s}:x t:{%s}:y", "a", "b"));
	long long n = 7;
	assert_int_equal(tr_kv_integerf(&n, "MGET %s %s", "t:{a}:x", "t:{b}:x"), TR_EUNAVAILABLE);
	assert_int_equal(n, 7);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_a_formatted_command_splits_into_its_arguments),
	    cmocka_unit_test(test_a_malformed_or_oversized_command_is_not_split),
	    cmocka_unit_test(test_a_command_whose_keys_span_slots_is_refused_before_connecting),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
