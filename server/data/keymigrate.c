/* Renames the Redis keys of a single-Redis deployment to the names that
 * Redis Cluster needs (hash tags): t:<tid>:... becomes t:{<tid>}:..., a
 * queue's q:<db>:<queue><suffix> becomes its partition 0,
 * q:{<db>:<queue>:0}<suffix>, and a tenant's dead jobs move from
 * t:{<tid>}:jobs:dead to their queue partition's hash.
 *
 * Every step is safe to repeat and to run from several processes at once:
 * a rename happens only when the new name is free (RENAMENX), and a key
 * another process renamed first is simply gone. A new name that already
 * holds data is newer than the old key and is never overwritten; the one
 * exception is an empty queue stream, which a server of the new version
 * makes (MKSTREAM) before the old one is moved: the old stream, with its
 * jobs and consumer group, takes its place.
 *
 * A cluster is new (it never had the old names), so cluster mode skips
 * all of this. The renames span slots: they use tr_kv_command_single_only. */
#include "migrate.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <bson/bson.h>

#include "jobs.h"
#include "json.h"
#include "kvconn.h"
#include "log.h"
#include "util.h"

#define SCAN_COUNT "1000"
#define MARKER "trellis:keys:v2"

/* KEYS[1] old, KEYS[2] new. 1 renamed, 0 the new name holds data (kept),
 * -1 the old key is gone (renamed by another process). */
static const char rename_lua[] =
    "if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end\n"
    "if redis.call('EXISTS', KEYS[2]) == 1 then\n"
    "  local t = redis.call('TYPE', KEYS[2])['ok']\n"
    "  if t ~= 'stream' or redis.call('XLEN', KEYS[2]) > 0 then return 0 end\n"
    "  redis.call('DEL', KEYS[2])\n"
    "end\n"
    "redis.call('RENAME', KEYS[1], KEYS[2])\n"
    "return 1\n";

struct tally {
	long long renamed, kept, moved;
};

static int
rename_key(const char *from, const char *to, struct tally *t)
{
	const char *argv[] = {"EVAL", rename_lua, "2", from, to};
	redisReply *r = tr_kv_command_single_only(5, argv, NULL);
	int rc = TR_OK;

	if (!r)
		return TR_EUNAVAILABLE;
	if (r->type != REDIS_REPLY_INTEGER) {
		tr_error("migrate: renaming %s failed: %s", from,
			 r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
		rc = TR_EINTERNAL;
	} else if (r->integer == 1) {
		t->renamed++;
	} else if (r->integer == 0) {
		t->kept++;
		tr_warn("migrate: %s kept: %s already holds newer data", from, to);
	}
	freeReplyObject(r);
	return rc;
}

/* The new name of an old tenant key "t:<24 hex>:rest", or false. */
static bool
new_tenant_key(const char *key, size_t len, char *out, size_t outlen)
{
	if (len < 28 || strncmp(key, "t:", 2) != 0 || key[26] != ':' ||
	    strspn(key + 2, "0123456789abcdef") < 24)
		return false;
	return snprintf(out, outlen, "t:{%.24s}%.*s", key + 2, (int)(len - 26), key + 26) <
	       (int)outlen;
}

/* The new name of an old queue key "q:<db>:<queue><suffix>" (prefix is
 * "q:<db>:"), or false. A queue name has no ':'. */
static bool
new_queue_key(const char *prefix, const char *key, size_t len, char *out, size_t outlen)
{
	size_t plen = strlen(prefix);

	if (len <= plen || strncmp(key, prefix, plen) != 0 || key[plen] == '{')
		return false;
	const char *queue = key + plen;
	size_t qlen = strcspn(queue, ":");
	char name[64];
	if (qlen == 0 || qlen >= sizeof(name))
		return false;
	memcpy(name, queue, qlen);
	name[qlen] = '\0';
	tr_job_key(out, outlen, name, 0, "");
	size_t n = strlen(out);
	return snprintf(out + n, outlen - n, "%.*s", (int)(len - plen - qlen), queue + qlen) <
	       (int)(outlen - n);
}

/* Moves the dead jobs of t:{<tid>}:jobs:dead (job id -> "entry \n record")
 * into their queue's partition 0 (tenant_dead_key in jobs.c): HSETNX then
 * HDEL, each safe to repeat. */
static int
move_dead_jobs(const char *key, size_t len, struct tally *t)
{
	char tid[25];
	const char *argv[] = {"HGETALL", key};
	redisReply *r;
	int rc = TR_OK;

	if (len != 38 || strncmp(key, "t:{", 3) != 0 || strcmp(key + 27, "}:jobs:dead") != 0)
		return TR_OK;
	memcpy(tid, key + 3, 24);
	tid[24] = '\0';
	if (!(r = tr_kv_command(2, argv, NULL)))
		return TR_EUNAVAILABLE;
	for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2) {
		const redisReply *id = r->element[i], *v = r->element[i + 1];
		const char *nl =
		    v->type == REDIS_REPLY_STRING ? memchr(v->str, '\n', v->len) : NULL;
		char queue[64], dest[300], perr[64];
		bson_t rec;
		bson_iter_t it;
		if (!nl || id->type != REDIS_REPLY_STRING)
			continue; /* not a dead job: left where it is */
		bool named = tr_json_parse(nl + 1, v->len - (size_t)(nl + 1 - v->str), &rec, perr,
					   sizeof(perr)) == 0 &&
			     bson_iter_init_find(&it, &rec, "queue") && BSON_ITER_HOLDS_UTF8(&it);
		snprintf(queue, sizeof(queue), "%s", named ? bson_iter_utf8(&it, NULL) : "");
		bson_destroy(&rec);
		if (!queue[0] || strchr(queue, ':') || strchr(queue, '}'))
			continue;
		tr_job_key(dest, sizeof(dest), queue, 0, ":tenant-dead:");
		snprintf(dest + strlen(dest), sizeof(dest) - strlen(dest), "%s", tid);
		const char *set[] = {"HSETNX", dest, id->str, v->str};
		size_t lens[] = {6, strlen(dest), id->len, v->len};
		const char *del[] = {"HDEL", key, id->str};
		redisReply *s = tr_kv_command(4, set, lens);
		redisReply *d =
		    s && s->type == REDIS_REPLY_INTEGER ? tr_kv_command(3, del, NULL) : NULL;
		if (!d)
			rc = TR_EUNAVAILABLE;
		else
			t->moved++;
		if (s)
			freeReplyObject(s);
		if (d)
			freeReplyObject(d);
		if (rc != TR_OK)
			break;
	}
	freeReplyObject(r);
	return rc;
}

/* One SCAN pass over pattern, each key handed to step. */
static int
scan(const char *pattern, int (*step)(const char *, size_t, void *), void *arg)
{
	char cursor[32] = "0";
	int rc = TR_OK;

	do {
		const char *argv[] = {"SCAN", cursor, "MATCH", pattern, "COUNT", SCAN_COUNT};
		redisReply *r = tr_kv_command(6, argv, NULL);
		if (!r)
			return TR_EUNAVAILABLE;
		if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
		    r->element[0]->type != REDIS_REPLY_STRING ||
		    r->element[1]->type != REDIS_REPLY_ARRAY) {
			freeReplyObject(r);
			return TR_EINTERNAL;
		}
		snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
		for (size_t i = 0; i < r->element[1]->elements && rc == TR_OK; i++) {
			const redisReply *k = r->element[1]->element[i];
			if (k->type == REDIS_REPLY_STRING)
				rc = step(k->str, k->len, arg);
		}
		freeReplyObject(r);
	} while (rc == TR_OK && strcmp(cursor, "0") != 0);
	return rc;
}

struct pass {
	struct tally t;
	char prefix[160];
};

static int
tenant_step(const char *key, size_t len, void *arg)
{
	struct pass *p = arg;
	char to[512];

	return new_tenant_key(key, len, to, sizeof(to)) ? rename_key(key, to, &p->t) : TR_OK;
}

static int
queue_step(const char *key, size_t len, void *arg)
{
	struct pass *p = arg;
	char to[512];

	return new_queue_key(p->prefix, key, len, to, sizeof(to)) ? rename_key(key, to, &p->t)
								  : TR_OK;
}

static int
dead_step(const char *key, size_t len, void *arg)
{
	return move_dead_jobs(key, len, &((struct pass *)arg)->t);
}

int
tr_migrate_redis_keys(const struct tr_config *cfg, bool always, char *err, size_t errlen)
{
	struct pass p = {0};
	char pattern[200];
	long long done = 0;
	int rc;

	if (cfg->redis_cluster)
		return 0;
	if (!always && tr_kv_integerf(&done, "EXISTS %s", MARKER) == TR_OK && done)
		return 0;
	/* glob characters in the database's name would widen the match */
	snprintf(p.prefix, sizeof(p.prefix), "q:%s:", cfg->mongo_db);
	if (strpbrk(cfg->mongo_db, "*?[]\\")) {
		snprintf(err, errlen, "migrate: database name %s has glob characters",
			 cfg->mongo_db);
		return -1;
	}
	snprintf(pattern, sizeof(pattern), "q:%s:*", cfg->mongo_db);
	rc = scan("t:[0-9a-f]*", tenant_step, &p);
	if (rc == TR_OK)
		rc = scan(pattern, queue_step, &p);
	if (rc == TR_OK)
		rc = scan("t:{*}:jobs:dead", dead_step, &p);
	if (rc != TR_OK) {
		snprintf(err, errlen, "migrate: renaming Redis keys failed (%d); run it again", rc);
		return -1;
	}
	long long ignored;
	tr_kv_integerf(&ignored, "SETNX %s 1", MARKER);
	if (p.t.renamed || p.t.kept || p.t.moved)
		tr_info("migrate: Redis keys: %lld renamed, %lld kept (newer data under the new "
			"name), %lld dead jobs moved",
			p.t.renamed, p.t.kept, p.t.moved);
	return 0;
}
