// unit-under-test: server/events/jobs.c
/* Event ids (their order decides resume and de-duplication), retry
 * backoff, and the addresses webhooks may not reach. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../../server/events/jobs.c"
#include "webhooks/webhooks.h"
#include <arpa/inet.h>

static void
test_event_ids_parse_only_stream_ids(void **state)
{
	struct tr_evid id;

	(void)state;
	assert_true(tr_evid_parse("1763880671234-0", 15, &id));
	assert_true(id.ms == 1763880671234ull && id.seq == 0);
	assert_true(tr_evid_parse("0-0", 3, &id));
	assert_true(tr_evid_parse("5-18446744073", 13, &id) && id.seq == 18446744073ull);
	assert_false(tr_evid_parse("", 0, &id));
	assert_false(tr_evid_parse("123", 3, &id));
	assert_false(tr_evid_parse("123-", 4, &id));
	assert_false(tr_evid_parse("-1", 2, &id));
	assert_false(tr_evid_parse("1-2-3", 5, &id));
	assert_false(tr_evid_parse("1-x", 3, &id));
	assert_false(tr_evid_parse(" 1-2", 4, &id));
	assert_false(tr_evid_parse("99999999999999999999-0", 22, &id)); /* 20 digits */
}

static void
test_event_ids_order_by_time_then_sequence(void **state)
{
	struct tr_evid a = {10, 5}, b = {10, 6}, c = {11, 0}, d = {10, 5};

	(void)state;
	assert_true(tr_evid_cmp(&a, &b) < 0);
	assert_true(tr_evid_cmp(&b, &c) < 0); /* 10-6 before 11-0, not by text */
	assert_true(tr_evid_cmp(&c, &a) > 0);
	assert_int_equal(tr_evid_cmp(&a, &d), 0);
}

static long long
backoff_of(const char *id, int attempt)
{
	struct tr_job job = {.queue = "q", .id = id, .tenant = "t", .attempt = attempt};

	return backoff_ms(&job);
}

static void
test_backoff_doubles_with_jitter_and_is_capped(void **state)
{
	static struct tr_config cfg;
	char id[33];
	long long first = -1;
	bool spread = false;

	(void)state;
	cfg.job_backoff_ms = 1000;
	cfg.job_backoff_max_ms = 5000;
	J.cfg = &cfg;
	for (int i = 0; i < 200; i++) {
		snprintf(id, sizeof(id), "%032d", i);
		long long d1 = backoff_of(id, 1), d2 = backoff_of(id, 2), d3 = backoff_of(id, 3);
		long long d9 = backoff_of(id, 9);
		assert_true(d1 >= 500 && d1 <= 1000);
		assert_true(d2 >= 1000 && d2 <= 2000);
		assert_true(d3 >= 2000 && d3 <= 4000);
		assert_true(d9 >= 2500 && d9 <= 5000); /* capped */
		/* the same job and attempt wait the same: a handler can say when */
		assert_int_equal(d2, backoff_of(id, 2));
		if (first < 0)
			first = d1;
		else if (d1 != first)
			spread = true;
	}
	assert_true(spread); /* different jobs spread out */
}

static bool
blocked(const char *text)
{
	struct sockaddr_in v4 = {.sin_family = AF_INET};
	struct sockaddr_in6 v6 = {.sin6_family = AF_INET6};

	if (inet_pton(AF_INET, text, &v4.sin_addr) == 1)
		return webhooks_address_blocked((struct sockaddr *)&v4);
	assert_int_equal(inet_pton(AF_INET6, text, &v6.sin6_addr), 1);
	return webhooks_address_blocked((struct sockaddr *)&v6);
}

static void
test_webhooks_never_reach_internal_addresses(void **state)
{
	(void)state;
	const char *internal[] = {
	    "127.0.0.1",   "127.255.0.9",     "10.0.0.1", "172.16.0.1",	    "172.31.255.255",
	    "192.168.1.1", "169.254.169.254", "0.0.0.0",  "100.64.0.1",	    "::1",
	    "::",	   "fe80::1",	      "fd00::1",  "::ffff:10.0.0.1"};
	const char *public[] = {"8.8.8.8",	 "172.32.0.1",	"172.15.255.255",
				"192.169.0.1",	 "100.128.0.1", "2001:4860:4860::8888",
				"::ffff:8.8.8.8"};
	for (size_t i = 0; i < sizeof(internal) / sizeof(internal[0]); i++)
		if (!blocked(internal[i]))
			fail_msg("%s should be blocked", internal[i]);
	for (size_t i = 0; i < sizeof(public) / sizeof(public[0]); i++)
		if (blocked(public[i]))
			fail_msg("%s should be allowed", public[i]);
}

static void
test_queue_names_are_short_plain_words(void **state)
{
	(void)state;
	assert_true(queue_name_ok("webhooks"));
	assert_true(queue_name_ok("crm.reminders"));
	assert_false(queue_name_ok(""));
	assert_false(queue_name_ok("a b"));
	assert_false(queue_name_ok("q:x"));
	assert_false(queue_name_ok("Upper"));
	assert_false(queue_name_ok("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa")); /* 41 */
}

/* A lane's name goes into a Redis key and a delayed member: a bad one is
 * refused before Redis is asked (there is none here). */
static void
test_a_lane_is_named_like_a_queue_and_a_bad_name_is_refused(void **state)
{
	const char *tenant = "0123456789abcdef01234567";

	(void)state;
	assert_int_equal(tr_job_enqueue_lane("webhooks", "Upper", tenant, "{}", 0, NULL),
			 TR_EINVALID);
	assert_int_equal(tr_job_enqueue_lane("webhooks", "a\nb", tenant, "{}", 0, NULL),
			 TR_EINVALID);
	assert_int_equal(tr_job_enqueue_lane("webhooks", "q:x", tenant, "{}", 0, NULL),
			 TR_EINVALID);
	assert_int_equal(
	    tr_job_enqueue_lane("webhooks", "0123456789abcdef01234567", tenant, "{\n}", 0, NULL),
	    TR_EINVALID);
}

/* A queue partition's keys share one hash tag, so one cluster slot. */
static void
test_a_partitions_keys_share_a_hash_tag(void **state)
{
	static struct tr_config cfg = {.mongo_db = "app", .job_partitions = 4};
	const struct tr_config *saved = tr_cfg;
	char key[200];

	(void)state;
	tr_cfg = &cfg;
	tr_job_key(key, sizeof(key), "webhooks", 3, ":lane:sub1");
	assert_string_equal(key, "q:{app:webhooks:3}:lane:sub1");
	tr_job_key(key, sizeof(key), "webhooks", 0, "");
	assert_string_equal(key, "q:{app:webhooks:0}");
	tr_cfg = saved;
}

/* A lane's jobs all go to one partition (so the lane keeps its order);
 * ids spread over all of them; one partition takes everything. */
static void
test_lanes_keep_one_partition_and_ids_spread_over_all(void **state)
{
	static struct tr_config cfg = {.mongo_db = "app", .job_partitions = 4};
	const struct tr_config *saved = tr_cfg;
	int seen[4] = {0};
	char id[33];

	(void)state;
	tr_cfg = &cfg;
	assert_int_equal(tr_job_partitions(), 4);
	assert_int_equal(tr_job_partition_of("sub-a"), tr_job_partition_of("sub-a"));
	for (int i = 0; i < 400; i++) {
		snprintf(id, sizeof(id), "%032x", i * 2654435761u);
		int p = tr_job_partition_of(id);
		assert_true(p >= 0 && p < 4);
		seen[p]++;
	}
	for (int p = 0; p < 4; p++)
		assert_true(seen[p] > 50);
	cfg.job_partitions = 1;
	assert_int_equal(tr_job_partition_of("sub-a"), 0);
	cfg.job_partitions = 99; /* past the most there can be */
	assert_int_equal(tr_job_partitions(), MAX_PARTITIONS);
	tr_cfg = saved;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_event_ids_parse_only_stream_ids),
	    cmocka_unit_test(test_event_ids_order_by_time_then_sequence),
	    cmocka_unit_test(test_backoff_doubles_with_jitter_and_is_capped),
	    cmocka_unit_test(test_webhooks_never_reach_internal_addresses),
	    cmocka_unit_test(test_queue_names_are_short_plain_words),
	    cmocka_unit_test(test_a_lane_is_named_like_a_queue_and_a_bad_name_is_refused),
	    cmocka_unit_test(test_a_partitions_keys_share_a_hash_tag),
	    cmocka_unit_test(test_lanes_keep_one_partition_and_ids_spread_over_all),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
