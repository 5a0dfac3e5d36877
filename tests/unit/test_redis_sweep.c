/* The loop's Redis client calls a connection dead only when it has been
 * silent for dep_timeout_ms (server/data/redis.c, tr_redis_silent). Its
 * deadline sweep reads the socket before judging, so the last reply can be
 * newer than the sweep's "now": that connection is alive. Judged as 2^64 ns
 * of silence it was dropped, and every call on it failed with 503 - the
 * publishes a busy fan-out loop lost (README, "WebSocket fan-out"). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "redis.h"

#define MS 1000000ull

static void
test_a_reply_read_during_the_sweep_is_not_silence(void **state)
{
	uint64_t now = 5000 * MS;

	(void)state;
	assert_false(tr_redis_silent(now, now + 1, 1000 * MS));
	assert_false(tr_redis_silent(now, now + 2 * MS, 50 * MS));
	assert_false(tr_redis_silent(now, now, 1000 * MS));
}

static void
test_silence_counts_from_the_last_reply(void **state)
{
	uint64_t now = 5000 * MS;

	(void)state;
	assert_false(tr_redis_silent(now, now - 999 * MS, 1000 * MS));
	assert_true(tr_redis_silent(now, now - 1000 * MS, 1000 * MS));
	assert_true(tr_redis_silent(now, 0, 1000 * MS)); /* never answered */
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_a_reply_read_during_the_sweep_is_not_silence),
	    cmocka_unit_test(test_silence_counts_from_the_last_reply),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
