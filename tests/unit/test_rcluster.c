/* Redis Cluster arithmetic (server/data/rcluster.c): key slots checked
 * against what redis-server's CLUSTER KEYSLOT answers, where each command's
 * keys are, redirections and the slot map. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rcluster.h"

static int
slot(const char *key)
{
	return tr_rcl_keyslot(key, strlen(key));
}

/* The expected values are redis-server 7.0's CLUSTER KEYSLOT answers. */
static void
test_keyslot_matches_redis(void **state)
{
	(void)state;
	assert_int_equal(slot("foo"), 12182);
	assert_int_equal(slot("bar"), 5061);
	assert_int_equal(slot("hello"), 866);
	assert_int_equal(slot("123456789"), 12739);
	assert_int_equal(slot(""), 0);
	assert_int_equal(slot("t:{64a1b2c3d4e5f60718293a4b}:events"), 276);
}

static void
test_hash_tags(void **state)
{
	(void)state;
	assert_int_equal(slot("{user1000}.following"), 3443);
	assert_int_equal(slot("{user1000}.followers"), 3443);
	/* an empty tag hashes the whole key; only the first tag counts */
	assert_int_equal(slot("foo{}{bar}"), 8363);
	assert_int_equal(slot("foo{{bar}}zap"), 4015);
	assert_int_equal(slot("foo{bar}{zap}"), 5061);
	/* no closing brace: the whole key */
	assert_int_not_equal(slot("t:{abc:events"), slot("abc"));
	/* binary keys: the length counts, not a NUL */
	assert_int_not_equal(tr_rcl_keyslot("a\0b", 3), tr_rcl_keyslot("a", 1));
}

#define CMD(...) ((const char *const[]){__VA_ARGS__})
#define N(...) ((int)(sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *)))
#define SLOT(...) tr_rcl_command_slot(N(__VA_ARGS__), CMD(__VA_ARGS__), NULL)

static void
test_command_keys(void **state)
{
	(void)state;
	assert_int_equal(SLOT("GET", "foo"), 12182);
	assert_int_equal(SLOT("hset", "foo", "a", "bar"), 12182);
	assert_int_equal(SLOT("PING"), TR_RCL_ANY);
	assert_int_equal(SLOT("SCRIPT", "LOAD", "return 1"), TR_RCL_ANY);
	assert_int_equal(SLOT("PUBLISH", "foo", "x"), TR_RCL_ANY);
	assert_int_equal(SLOT("SPUBLISH", "foo", "x"), 12182);
	/* scripts: the keys after numkeys, not the arguments */
	assert_int_equal(SLOT("EVALSHA", "abc", "2", "{t}:a", "{t}:b", "foo"), slot("{t}:a"));
	assert_int_equal(SLOT("EVAL", "return 1", "0", "foo"), TR_RCL_ANY);
	assert_int_equal(SLOT("EVAL", "return 1", "2", "foo", "bar"), TR_RCL_CROSS);
	assert_int_equal(SLOT("EVAL", "return 1", "9", "foo"), TR_RCL_ANY);
	/* streams: the keys after STREAMS, not the ids */
	assert_int_equal(SLOT("XREADGROUP", "GROUP", "g", "c", "COUNT", "1", "STREAMS", "foo", ">"),
			 12182);
	assert_int_equal(SLOT("XREAD", "STREAMS", "{q}:a", "{q}:b", "0", "0"), slot("{q}:a"));
	assert_int_equal(SLOT("XREAD", "STREAMS", "foo", "bar", "0", "0"), TR_RCL_CROSS);
	assert_int_equal(SLOT("XGROUP", "CREATE", "foo", "g", "$"), 12182);
	/* multi-key commands */
	assert_int_equal(SLOT("DEL", "{t}:a", "{t}:b"), slot("{t}:a"));
	assert_int_equal(SLOT("DEL", "foo", "bar"), TR_RCL_CROSS);
	assert_int_equal(SLOT("RENAME", "foo", "bar"), TR_RCL_CROSS);
	assert_int_equal(SLOT("MSET", "{t}a", "foo", "{t}b", "bar"), slot("t"));
}

static void
test_command_lengths(void **state)
{
	const char *argv[] = {"GETX", "foo"};
	size_t lens[] = {3, 3};

	(void)state;
	assert_int_equal(tr_rcl_command_slot(2, argv, lens), 12182);
}

static void
test_redirects(void **state)
{
	char host[64];
	int s = -1, port = -1;
	const char *moved = "MOVED 3999 127.0.0.1:6381";
	const char *ask = "ASK 12182 10.0.0.7:7002";
	const char *v6 = "MOVED 1 ::1:7000";

	(void)state;
	assert_int_equal(tr_rcl_redirect(moved, strlen(moved), &s, host, sizeof(host), &port),
			 TR_RCL_MOVED);
	assert_int_equal(s, 3999);
	assert_string_equal(host, "127.0.0.1");
	assert_int_equal(port, 6381);
	assert_int_equal(tr_rcl_redirect(ask, strlen(ask), &s, host, sizeof(host), &port),
			 TR_RCL_ASK);
	assert_int_equal(s, 12182);
	assert_string_equal(host, "10.0.0.7");
	assert_int_equal(tr_rcl_redirect(v6, strlen(v6), &s, host, sizeof(host), &port),
			 TR_RCL_MOVED);
	assert_string_equal(host, "::1");
	assert_int_equal(port, 7000);

	static const char *const bad[] = {"ERR wrong type",	   "MOVED",
					  "MOVED x 1.2.3.4:5",	   "MOVED 16384 1.2.3.4:5",
					  "MOVED 1 1.2.3.4",	   "MOVED 1 1.2.3.4:0",
					  "MOVED 1 1.2.3.4:70000", "MOVED 1 1.2.3.4:5x",
					  "CROSSSLOT Keys"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_int_equal(
		    tr_rcl_redirect(bad[i], strlen(bad[i]), &s, host, sizeof(host), &port),
		    TR_RCL_NOT_REDIRECT);
	/* a host longer than the caller's buffer is refused, not cut */
	assert_int_equal(tr_rcl_redirect(moved, strlen(moved), &s, host, 5, &port),
			 TR_RCL_NOT_REDIRECT);
}

/* A CLUSTER SLOTS reply built by hand: [[from, to, [host, port, id]]...] */
static redisReply *
reply(int type)
{
	redisReply *r = calloc(1, sizeof(*r));
	r->type = type;
	return r;
}

static redisReply *
integer(long long v)
{
	redisReply *r = reply(REDIS_REPLY_INTEGER);
	r->integer = v;
	return r;
}

static redisReply *
string(const char *s)
{
	redisReply *r = reply(REDIS_REPLY_STRING);
	r->str = strdup(s);
	r->len = strlen(s);
	return r;
}

static redisReply *
array(size_t n, ...)
{
	va_list ap;
	redisReply *r = reply(REDIS_REPLY_ARRAY);

	r->elements = n;
	r->element = calloc(n, sizeof(*r->element));
	va_start(ap, n);
	for (size_t i = 0; i < n; i++)
		r->element[i] = va_arg(ap, redisReply *);
	va_end(ap);
	return r;
}

static void
free_reply(redisReply *r)
{
	for (size_t i = 0; i < r->elements; i++)
		free_reply(r->element[i]);
	free(r->element);
	free(r->str);
	free(r);
}

static void
test_slot_map(void **state)
{
	struct tr_rcl_map *m = malloc(sizeof(*m));
	redisReply *r =
	    array(3,
		  array(3, integer(0), integer(5460),
			array(3, string("127.0.0.1"), integer(7001), string("a"))),
		  array(4, integer(5461), integer(10922), array(2, string(""), integer(7002)),
			array(2, string("127.0.0.1"), integer(7005))),
		  array(3, integer(10923), integer(16383),
			array(3, string("127.0.0.1"), integer(7003), string("c"))));

	(void)state;
	assert_int_equal(tr_rcl_map_parse(m, r, "10.1.1.1"), 0);
	assert_int_equal(m->nnodes, 3);
	assert_int_equal(m->nodes[tr_rcl_map_node(m, 0)].port, 7001);
	assert_int_equal(m->nodes[tr_rcl_map_node(m, 5460)].port, 7001);
	/* a master without an address is the one we asked; replicas are not
	 * nodes to send to */
	assert_int_equal(m->nodes[tr_rcl_map_node(m, 5461)].port, 7002);
	assert_string_equal(m->nodes[tr_rcl_map_node(m, 5461)].host, "10.1.1.1");
	assert_int_equal(m->nodes[tr_rcl_map_node(m, 16383)].port, 7003);
	assert_int_equal(tr_rcl_map_node(m, 16384), -1);
	assert_int_equal(tr_rcl_map_node(m, -1), -1);
	free_reply(r);

	/* slots nobody serves answer -1 */
	r = array(1,
		  array(3, integer(0), integer(99), array(2, string("127.0.0.1"), integer(7001))));
	assert_int_equal(tr_rcl_map_parse(m, r, "h"), 0);
	assert_int_equal(tr_rcl_map_node(m, 99), 0);
	assert_int_equal(tr_rcl_map_node(m, 100), -1);
	free_reply(r);

	/* wrong shapes are refused */
	r = array(1, array(2, integer(0), integer(99)));
	assert_int_equal(tr_rcl_map_parse(m, r, "h"), -1);
	free_reply(r);
	r = array(1, array(3, integer(5), integer(2), array(2, string("h"), integer(1))));
	assert_int_equal(tr_rcl_map_parse(m, r, "h"), -1);
	free_reply(r);
	r = array(1, array(3, integer(0), integer(16384), array(2, string("h"), integer(1))));
	assert_int_equal(tr_rcl_map_parse(m, r, "h"), -1);
	free_reply(r);
	r = string("ERR This instance has cluster support disabled");
	assert_int_equal(tr_rcl_map_parse(m, r, "h"), -1);
	free_reply(r);
	free(m);
}

/* Every slot has a tag of at most four characters that hashes to it
 * (also as a channel name's hash tag), and the table is the same on every
 * call: processes agree on channel names without talking. Known values
 * are redis-server 7.0's CLUSTER KEYSLOT answers. */
static void
test_slot_tags_cover_every_slot(void **state)
{
	char(*tags)[TR_RCL_TAG_SIZE] = malloc(sizeof(char[TR_RCL_SLOTS][TR_RCL_TAG_SIZE]));
	char(*again)[TR_RCL_TAG_SIZE] = malloc(sizeof(char[TR_RCL_SLOTS][TR_RCL_TAG_SIZE]));
	char channel[32];
	(void)state;

	tr_rcl_slot_tags(tags);
	for (int s = 0; s < TR_RCL_SLOTS; s++) {
		size_t len = strlen(tags[s]);
		assert_true(len >= 1 && len <= 4);
		assert_int_equal(tr_rcl_keyslot(tags[s], len), s);
		snprintf(channel, sizeof(channel), "trellis:ev:{%s}", tags[s]);
		assert_int_equal(slot(channel), s);
	}
	assert_string_equal(tags[0], "1bz");
	assert_string_equal(tags[16383], "hia");
	assert_int_equal(slot("trellis:ev:{1bz}"), 0);
	tr_rcl_slot_tags(again);
	assert_memory_equal(tags, again, sizeof(char[TR_RCL_SLOTS][TR_RCL_TAG_SIZE]));
	free(tags);
	free(again);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_keyslot_matches_redis),
	    cmocka_unit_test(test_hash_tags),
	    cmocka_unit_test(test_command_keys),
	    cmocka_unit_test(test_command_lengths),
	    cmocka_unit_test(test_redirects),
	    cmocka_unit_test(test_slot_map),
	    cmocka_unit_test(test_slot_tags_cover_every_slot),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
