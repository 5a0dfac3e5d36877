// unit-under-test: server/data/keymigrate.c
/* Which Redis keys the single-Redis key migration renames, and to what
 * (server/data/keymigrate.c): old tenant keys get their tenant as a hash
 * tag, old queue keys become their queue's partition 0; anything else,
 * new names included, is left alone. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "../../server/data/keymigrate.c"

#define TID "0123456789abcdef01234567"

static bool
tenant(const char *key, char *out)
{
	return new_tenant_key(key, strlen(key), out, 200);
}

static void
test_an_old_tenant_key_gets_its_tenant_as_hash_tag(void **state)
{
	char to[200];

	(void)state;
	assert_true(tenant("t:" TID ":sess:abc", to));
	assert_string_equal(to, "t:{" TID "}:sess:abc");
	assert_true(tenant("t:" TID ":events", to));
	assert_string_equal(to, "t:{" TID "}:events");
	assert_false(tenant("t:{" TID "}:events", to)); /* already new */
	assert_false(tenant("t:" TID, to));
	assert_false(tenant("t:0123456789ABCDEF01234567:events", to)); /* not an id */
	assert_false(tenant("t:0123456789abcdef0123456:events", to));  /* 23 digits */
	assert_false(tenant("login:fail:addr:1.2.3.4", to));
	/* a name too long for the buffer is not cut short */
	assert_false(new_tenant_key("t:" TID ":sess:abc", 36, to, 20));
}

static bool
queue(const char *key, char *out)
{
	return new_queue_key("q:app:", key, strlen(key), out, 200);
}

static void
test_an_old_queue_key_becomes_its_partition_zero(void **state)
{
	static struct tr_config cfg = {.mongo_db = "app", .job_partitions = 1};
	const struct tr_config *saved = tr_cfg;
	char to[200];

	(void)state;
	tr_cfg = &cfg;
	assert_true(queue("q:app:webhooks", to));
	assert_string_equal(to, "q:{app:webhooks:0}");
	assert_true(queue("q:app:webhooks:delayed", to));
	assert_string_equal(to, "q:{app:webhooks:0}:delayed");
	assert_true(queue("q:app:webhooks:lane:sub:1", to));
	assert_string_equal(to, "q:{app:webhooks:0}:lane:sub:1");
	assert_true(queue("q:app:crm.reminders:dead", to));
	assert_string_equal(to, "q:{app:crm.reminders:0}:dead");
	assert_false(queue("q:{app:webhooks:0}", to)); /* already new */
	assert_false(queue("q:other:webhooks", to));   /* another deployment's */
	assert_false(queue("q:app:", to));
	tr_cfg = saved;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_an_old_tenant_key_gets_its_tenant_as_hash_tag),
	    cmocka_unit_test(test_an_old_queue_key_becomes_its_partition_zero),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
