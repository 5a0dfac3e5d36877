#include "jobs.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bson/bson.h>
#include <sodium.h>
#include <uv.h>

#include "events.h"
#include "json.h"
#include "kvconn.h"
#include "log.h"
#include "metrics.h"
#include "module.h"
#include "redis.h"
#include "util.h"

#define GROUP "workers"
#define MAX_QUEUES 16
#define MAX_THREADS 64
#define BLOCK_MS 500
#define MOVE_EVERY_MS 250
#define STATS_EVERY_MS 2000
#define CLAIM_COUNT "16"
#define MAX_PARTITIONS 16
/* In a cluster a worker reads one partition's stream a command (several
 * streams in one XREADGROUP are several slots, which it refuses), in turn
 * (a single Redis takes them all in one read, read_all_single). When a
 * whole round found nothing it blocks on the next one for this long: the
 * longest a new job waits on an idle worker. */
#define ROTATE_BLOCK_MS 100

/* KEYS[1] delayed set, KEYS[2] stream; ARGV[1] now. Moves due jobs to the
 * stream. A member is "id \n tenant \n attempt \n payload", or, for a job
 * in a lane, "id \n tenant \n attempt \n lane \n payload" (a payload is a
 * JSON object, so it starts with '{' and a lane never does). */
static const char move_lua[] =
    "local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 100)\n"
    "for _, m in ipairs(due) do\n"
    "  local id, tenant, attempt, rest = string.match(m, "
    "'^([^\\n]*)\\n([^\\n]*)\\n([^\\n]*)\\n(.*)$')\n"
    "  local lane, payload = '', rest\n"
    "  if rest and string.sub(rest, 1, 1) ~= '{' then\n"
    "    lane, payload = string.match(rest, '^([^\\n]*)\\n(.*)$')\n"
    "  end\n"
    "  if id and payload then\n"
    "    redis.call('XADD', KEYS[2], '*', 'id', id, 'tenant', tenant, 'attempt', attempt,\n"
    "      'lane', lane, 'payload', payload)\n"
    "  end\n"
    "  redis.call('ZREM', KEYS[1], m)\n"
    "end\n"
    "return #due\n";

/* Lanes: jobs of one lane run one at a time, in the order they were
 * enqueued, in every process. A lane is a Redis list of job ids,
 * q:<db>:<queue>:lane:<name>, appended by the enqueue (by the same call
 * for the event sink's deliveries, events.c); its head is the one job
 * that may run. A job that is read from the stream while another heads
 * its lane is parked (q:<db>:<queue>:parked:<name>, job id -> "tenant \n
 * attempt \n payload") and leaves the stream; a failed head keeps its
 * place through its retries, so the lane waits for it. The head leaves
 * when it is done or dead, and the same script puts the next head, if
 * parked, back on the stream: leaving and waking are one step, so no
 * process can die between them and no wake-up is lost.
 *
 * LANE_RELEASE is that step, in a script that has set stream, lane,
 * parked (keys), id (the job's) and name (the lane's, '' for none). */
#define LANE_RELEASE                                                                               \
	"if name ~= '' then\n"                                                                     \
	"  redis.call('LREM', lane, 1, id)\n"                                                      \
	"  local head = redis.call('LINDEX', lane, 0)\n"                                           \
	"  local m = head and redis.call('HGET', parked, head)\n"                                  \
	"  if m then\n"                                                                            \
	"    redis.call('HDEL', parked, head)\n"                                                   \
	"    local tenant, attempt, payload = string.match(m, "                                    \
	"'^([^\\n]*)\\n([^\\n]*)\\n(.*)$')\n"                                                      \
	"    if tenant then\n"                                                                     \
	"      redis.call('XADD', stream, '*', 'id', head, 'tenant', tenant, 'attempt',\n"         \
	"        attempt, 'lane', name, 'payload', payload)\n"                                     \
	"    end\n"                                                                                \
	"  end\n"                                                                                  \
	"end\n"

/* The keys and arguments every finishing script starts with: KEYS[1]
 * stream, KEYS[2] lane, KEYS[3] parked; ARGV[1] entry, ARGV[2] job id,
 * ARGV[3] lane name ('' for none). */
#define FINISH_LOCALS                                                                              \
	"local stream, lane, parked = KEYS[1], KEYS[2], KEYS[3]\n"                                 \
	"local id, name = ARGV[2], ARGV[3]\n"

/* A finished job leaves the stream and its lane. */
static const char done_lua[] =
    FINISH_LOCALS LANE_RELEASE "redis.call('XACK', stream, '" GROUP "', ARGV[1])\n"
			       "return redis.call('XDEL', stream, ARGV[1])\n";

/* KEYS[4] delayed; ARGV[4] run at, ARGV[5] member. A failed job waits in
 * the delayed set, keeping its place in its lane. */
static const char retry_lua[] = FINISH_LOCALS "redis.call('ZADD', KEYS[4], ARGV[4], ARGV[5])\n"
					      "redis.call('XACK', stream, '" GROUP "', ARGV[1])\n"
					      "return redis.call('XDEL', stream, ARGV[1])\n";

/* KEYS[4] dead stream, KEYS[5] the tenant's dead jobs; ARGV[4] tenant,
 * ARGV[5] record (JSON). A job out of attempts leaves its lane too: the
 * jobs after it go on. */
static const char dead_lua[] = FINISH_LOCALS LANE_RELEASE
    "local d = redis.call('XADD', KEYS[4], '*', 'id', id, 'tenant', ARGV[4], 'job', ARGV[5])\n"
    "redis.call('HSET', KEYS[5], id, d .. '\\n' .. ARGV[5])\n"
    "redis.call('XACK', stream, '" GROUP "', ARGV[1])\n"
    "return redis.call('XDEL', stream, ARGV[1])\n";

/* KEYS[1] stream, KEYS[2] lane, KEYS[3] parked; ARGV[1] entry, ARGV[2]
 * job id, ARGV[3] "tenant \n attempt \n payload". 1: the job heads its
 * lane and runs; 0: it was parked until the jobs before it leave. A job
 * not in its lane (a dead job retried by hand) joins it at the end. */
static const char lane_enter_lua[] = "local head = redis.call('LINDEX', KEYS[2], 0)\n"
				     "if head == ARGV[2] then return 1 end\n"
				     "if not redis.call('LPOS', KEYS[2], ARGV[2]) then\n"
				     "  redis.call('RPUSH', KEYS[2], ARGV[2])\n"
				     "  if not head then return 1 end\n"
				     "end\n"
				     "redis.call('HSET', KEYS[3], ARGV[2], ARGV[3])\n"
				     "redis.call('XACK', KEYS[1], '" GROUP "', ARGV[1])\n"
				     "redis.call('XDEL', KEYS[1], ARGV[1])\n"
				     "return 0\n";

/* KEYS[1] stream, KEYS[2] delayed, KEYS[3] lane; ARGV id, tenant, lane
 * name, payload, run at ("0": now), delayed member. A job of a lane
 * takes its place in the lane by the call that enqueues it. */
static const char enqueue_lane_lua[] =
    "redis.call('RPUSH', KEYS[3], ARGV[1])\n"
    "if ARGV[5] == '0' then\n"
    "  return redis.call('XADD', KEYS[1], '*', 'id', ARGV[1], 'tenant', ARGV[2], 'attempt', '0',\n"
    "    'lane', ARGV[3], 'payload', ARGV[4])\n"
    "end\n"
    "return redis.call('ZADD', KEYS[2], ARGV[5], ARGV[6])\n";

/* KEYS[1] the tenant's dead jobs, KEYS[2] stream, KEYS[3] dead stream;
 * ARGV job id, dead entry, tenant, payload, lane ('' for none). Once
 * only: HDEL decides. A job of a lane joins the lane's end when it runs. */
static const char requeue_lua[] =
    "if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end\n"
    "redis.call('XDEL', KEYS[3], ARGV[2])\n"
    "redis.call('XADD', KEYS[2], '*', 'id', ARGV[1], 'tenant', ARGV[3], 'attempt', '0',\n"
    "  'lane', ARGV[5], 'payload', ARGV[4])\n"
    "return 1\n";

/* KEYS: a partition's stream, delayed set and dead stream (one slot).
 * Returns {length, in flight, delayed, dead}. */
static const char stats_lua[] =
    "local out = {}\n"
    "for i = 1, #KEYS, 3 do\n"
    "  local len = redis.call('XLEN', KEYS[i])\n"
    "  local ok, p = pcall(redis.call, 'XPENDING', KEYS[i], '" GROUP "')\n"
    "  local inflight = 0\n"
    "  if ok and type(p) == 'table' then inflight = p[1] end\n"
    "  out[#out + 1] = len\n"
    "  out[#out + 1] = inflight\n"
    "  out[#out + 1] = redis.call('ZCARD', KEYS[i + 1])\n"
    "  out[#out + 1] = redis.call('XLEN', KEYS[i + 2])\n"
    "end\n"
    "return out\n";

/* KEYS[1] stream, KEYS[2] delayed set; ARGV[1] tenant, ARGV[2] entries to
 * read at most (both together). Returns {in the stream, delayed, 1 when
 * every entry was read}: the tenant's share of a queue shared by all. */
static const char tenant_counts_lua[] =
    "local max, seen, ready, delayed = tonumber(ARGV[2]), 0, 0, 0\n"
    "local start = '-'\n"
    "while seen < max do\n"
    "  local page = redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', math.min(500, max - seen))\n"
    "  for _, e in ipairs(page) do\n"
    "    local f = e[2]\n"
    "    for i = 1, #f, 2 do\n"
    "      if f[i] == 'tenant' then\n"
    "        if f[i + 1] == ARGV[1] then ready = ready + 1 end\n"
    "        break\n"
    "      end\n"
    "    end\n"
    "    start = '(' .. e[1]\n"
    "  end\n"
    "  seen = seen + #page\n"
    "  if #page < 500 then break end\n"
    "end\n"
    "local stream_done = seen < max or redis.call('XLEN', KEYS[1]) <= seen\n"
    "local needle, from = '\\n' .. ARGV[1] .. '\\n', 0\n"
    "while seen < max do\n"
    "  local n = math.min(500, max - seen)\n"
    "  local page = redis.call('ZRANGE', KEYS[2], from, from + n - 1)\n"
    "  for _, m in ipairs(page) do\n"
    "    if string.find(m, needle, 1, true) then delayed = delayed + 1 end\n"
    "  end\n"
    "  seen = seen + #page\n"
    "  from = from + #page\n"
    "  if #page < n then break end\n"
    "end\n"
    "local exact = stream_done and redis.call('ZCARD', KEYS[2]) <= from\n"
    "return {ready, delayed, exact and 1 or 0}\n";

/* A queue is spread over partitions, each a set of keys with one hash tag
 * ({<db>:<queue>:<n>}) so every script's keys share a cluster slot: its
 * stream, delayed set, dead-letter stream, lanes, parked jobs and each
 * tenant's dead jobs. A job without a lane goes to the partition its id
 * hashes to; all jobs of a lane go to one (its name's hash), so the lane
 * keeps its order. */
struct partition {
	char stream[200], delayed[200], dead[200];
};

struct queue {
	const struct tr_job_handler *h;
	int nparts;
	struct partition parts[MAX_PARTITIONS];
	atomic_ullong done, retried, dead_count;
	long long waiting, inflight, delayed_n, dead_n; /* loop thread */
	long long sums[4];				/* loop thread: the stats round under way */
};

static struct {
	const struct tr_config *cfg;
	uv_loop_t *loop;
	struct queue queues[MAX_QUEUES];
	int nqueues;
	pthread_t threads[MAX_THREADS];
	int nthreads;
	atomic_bool stopping;
	uv_timer_t stats_timer;
	bool stats_busy, timer_on, stats_failed;
	int stats_script, stats_pending;
	char host[64];
} J;

static bool
queue_name_ok(const char *q)
{
	size_t n = strlen(q);
	if (n == 0 || n > 40)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((q[i] >= 'a' && q[i] <= 'z') || (q[i] >= '0' && q[i] <= '9') || q[i] == '.' ||
		      q[i] == '_' || q[i] == '-'))
			return false;
	return true;
}

/* ---- enqueue ---- */

static redisReply *eval(const char *script, int nkeys, int nargs, const char **args,
			const size_t *lens);

void
tr_job_key(char *buf, size_t len, const char *queue, int partition, const char *suffix)
{
	snprintf(buf, len, "q:{%s:%s:%d}%s", tr_cfg->mongo_db, queue, partition, suffix);
}

int
tr_job_partitions(void)
{
	int n = tr_cfg ? tr_cfg->job_partitions : 1;

	return n < 1 ? 1 : n > MAX_PARTITIONS ? MAX_PARTITIONS : n;
}

/* The partition of a lane (by its name) or of a job without one (by its
 * id): FNV-1a, modulo the partitions. */
int
tr_job_partition_of(const char *lane_or_id)
{
	uint32_t h = 2166136261u;

	for (const char *c = lane_or_id; *c; c++)
		h = (h ^ (unsigned char)*c) * 16777619u;
	return (int)(h % (uint32_t)tr_job_partitions());
}

/* Where a partition keeps a tenant's dead jobs (job id -> "dead entry \n
 * record"): in the partition's slot, so the script that kills a job
 * writes it with the dead stream. */
static void
tenant_dead_key(char *buf, size_t len, const char *queue, int partition, const char *tenant)
{
	tr_job_key(buf, len, queue, partition, ":tenant-dead:");
	snprintf(buf + strlen(buf), len - strlen(buf), "%s", tenant);
}

/* A job entering its lane: the lane's place and the job are written by
 * one script, so the lane's order is the order of the enqueues. */
static redisReply *
enqueue_in_lane(const char *queue, const char *lane, const char *tenant_hex, const char *id,
		const char *payload, int64_t run_at_ms)
{
	char stream[200], delayed[200], key[300], when[24];
	size_t mlen = 32 + 1 + 24 + 1 + 1 + 1 + strlen(lane) + 1 + strlen(payload);
	char *member = malloc(mlen + 1);
	redisReply *r;

	int part = tr_job_partition_of(lane);

	if (!member)
		return NULL;
	tr_job_key(stream, sizeof(stream), queue, part, "");
	tr_job_key(delayed, sizeof(delayed), queue, part, ":delayed");
	tr_job_key(key, sizeof(key), queue, part, ":lane:");
	snprintf(key + strlen(key), sizeof(key) - strlen(key), "%s", lane);
	snprintf(member, mlen + 1, "%s\n%s\n0\n%s\n%s", id, tenant_hex, lane, payload);
	snprintf(when, sizeof(when), "%lld", run_at_ms <= tr_now_ms() ? 0LL : (long long)run_at_ms);
	const char *args[] = {stream, delayed, key, id, tenant_hex, lane, payload, when, member};
	r = eval(enqueue_lane_lua, 3, 9, args, NULL);
	free(member);
	return r;
}

int
tr_job_enqueue(const char *queue, const char *tenant_hex, const char *payload, int64_t run_at_ms,
	       char *id_out)
{
	return tr_job_enqueue_lane(queue, NULL, tenant_hex, payload, run_at_ms, id_out);
}

int
tr_job_enqueue_lane(const char *queue, const char *lane, const char *tenant_hex,
		    const char *payload, int64_t run_at_ms, char *id_out)
{
	char id[33], stream[200], when[24];
	redisReply *r;

	if (!queue_name_ok(queue) || !tr_is_object_id(tenant_hex) || !payload ||
	    strchr(payload, '\n') || (lane && *lane && !queue_name_ok(lane)))
		return TR_EINVALID;
	tr_random_hex(id, 16);
	tr_job_key(stream, sizeof(stream), queue, tr_job_partition_of(id), "");
	if (lane && *lane) {
		r = enqueue_in_lane(queue, lane, tenant_hex, id, payload, run_at_ms);
	} else if (run_at_ms <= tr_now_ms()) {
		const char *argv[] = {"XADD",	  stream,    "*", "id",	     id,     "tenant",
				      tenant_hex, "attempt", "0", "payload", payload};
		r = tr_kv_command(11, argv, NULL);
	} else {
		char delayed[200];
		size_t mlen = 32 + 1 + 24 + 1 + 1 + 1 + strlen(payload);
		char *member = malloc(mlen + 1);
		if (!member)
			return TR_ENOMEM;
		snprintf(member, mlen + 1, "%s\n%s\n0\n%s", id, tenant_hex, payload);
		tr_job_key(delayed, sizeof(delayed), queue, tr_job_partition_of(id), ":delayed");
		snprintf(when, sizeof(when), "%lld", (long long)run_at_ms);
		const char *argv[] = {"ZADD", delayed, when, member};
		r = tr_kv_command(4, argv, NULL);
		free(member);
	}
	if (!r)
		return TR_EUNAVAILABLE;
	bool ok = r->type != REDIS_REPLY_ERROR;
	if (!ok)
		tr_error("jobs: enqueue on %s failed: %s", queue, r->str);
	freeReplyObject(r);
	if (ok && id_out)
		memcpy(id_out, id, 33);
	return ok ? TR_OK : TR_EUNAVAILABLE;
}

/* ---- the job threads ---- */

static redisReply *
eval(const char *script, int nkeys, int nargs, const char **args, const size_t *lens)
{
	const char *argv[16];
	size_t alen[16];
	char nk[8];

	snprintf(nk, sizeof(nk), "%d", nkeys);
	argv[0] = "EVAL";
	argv[1] = script;
	argv[2] = nk;
	alen[0] = 4;
	alen[1] = strlen(script);
	alen[2] = strlen(nk);
	for (int i = 0; i < nargs; i++) {
		argv[3 + i] = args[i];
		alen[3 + i] = lens ? lens[i] : strlen(args[i]);
	}
	return tr_kv_command(3 + nargs, argv, alen);
}

static void
ensure_groups(void)
{
	for (int i = 0; i < J.nqueues; i++)
		for (int p = 0; p < J.queues[i].nparts; p++) {
			const char *argv[] = {"XGROUP", "CREATE", J.queues[i].parts[p].stream,
					      GROUP,	"0",	  "MKSTREAM"};
			redisReply *r = tr_kv_command(6, argv, NULL);
			if (r)
				freeReplyObject(r); /* BUSYGROUP: it exists */
		}
}

static const redisReply *
field(const redisReply *fields, const char *name)
{
	for (size_t i = 0; i + 1 < fields->elements; i += 2)
		if (fields->element[i]->type == REDIS_REPLY_STRING &&
		    strcmp(fields->element[i]->str, name) == 0 &&
		    fields->element[i + 1]->type == REDIS_REPLY_STRING)
			return fields->element[i + 1];
	return NULL;
}

/* The wait before a job's next run: doubling from job_backoff_ms up to
 * job_backoff_max_ms, half of it fixed and half spread by the job's id
 * and attempt, so that retries of many jobs spread out while a handler
 * can still say when its own retry comes (tr_job_next_attempt_ms). */
static const struct tr_job_handler *
handler_of(const char *queue)
{
	for (int i = 0; i < J.nqueues; i++)
		if (queue && strcmp(J.queues[i].h->queue, queue) == 0)
			return J.queues[i].h;
	return NULL;
}

/* A job's runs before the dead letters and its longest wait: its queue's
 * own (tr_job_handler) or the defaults. */
static int
max_attempts_of(const struct tr_job *job)
{
	const struct tr_job_handler *h = handler_of(job->queue);

	return h && h->max_attempts_key ? (int)tr_config_int(h->max_attempts_key)
					: J.cfg->job_max_attempts;
}

static long long
backoff_cap_of(const struct tr_job *job)
{
	const struct tr_job_handler *h = handler_of(job->queue);

	return h && h->backoff_max_key ? tr_config_int(h->backoff_max_key)
				       : J.cfg->job_backoff_max_ms;
}

static long long
backoff_ms(const struct tr_job *job)
{
	long long d = J.cfg->job_backoff_ms, cap = backoff_cap_of(job);
	unsigned char h[8];
	char salt[16];
	uint64_t spread = 0;

	for (int i = 1; i < job->attempt && d < cap; i++)
		d *= 2;
	if (d > cap)
		d = cap;
	crypto_generichash_state st;
	int n = snprintf(salt, sizeof(salt), ":%d", job->attempt);
	crypto_generichash_init(&st, NULL, 0, sizeof(h));
	crypto_generichash_update(&st, (const unsigned char *)job->id, strlen(job->id));
	crypto_generichash_update(&st, (const unsigned char *)salt, (size_t)n);
	crypto_generichash_final(&st, h, sizeof(h));
	for (size_t i = 0; i < sizeof(h); i++)
		spread = spread << 8 | h[i];
	return d / 2 + (long long)(spread % (uint64_t)(d / 2 + 1));
}

int64_t
tr_job_next_attempt_ms(const struct tr_job *job)
{
	if (!J.cfg || job->attempt >= max_attempts_of(job))
		return 0;
	return tr_now_ms() + backoff_ms(job);
}

/* The keys of a job's lane (or of none: the scripts then leave them) in
 * the partition the job was read from: the lane's (its name's, or 0 for
 * a lane the key migration moved). */
static void
lane_keys(const struct queue *q, int part, const char *lane, char list[300], char parked[300])
{
	tr_job_key(list, 300, q->h->queue, part, ":lane:");
	tr_job_key(parked, 300, q->h->queue, part, ":parked:");
	snprintf(list + strlen(list), 300 - strlen(list), "%s", lane);
	snprintf(parked + strlen(parked), 300 - strlen(parked), "%s", lane);
}

static void
finish(struct queue *q, int part, const char *entry, const struct tr_job *job, int rc,
       const char *err)
{
	const struct partition *pt = &q->parts[part];
	const char *lane = job->lane ? job->lane : "";
	char list[300], parked[300];
	redisReply *r;

	lane_keys(q, part, lane, list, parked);
	if (rc == 0) {
		const char *args[] = {pt->stream, list, parked, entry, job->id, lane};
		r = eval(done_lua, 3, 6, args, NULL);
		atomic_fetch_add(&q->done, 1);
	} else if (job->attempt < max_attempts_of(job)) {
		char when[24];
		size_t mlen =
		    strlen(job->id) + strlen(job->tenant) + strlen(lane) + 16 + job->payload_len;
		char *member = malloc(mlen);
		if (!member)
			return; /* left pending: reclaimed later */
		int n = *lane ? snprintf(member, mlen, "%s\n%s\n%d\n%s\n%.*s", job->id, job->tenant,
					 job->attempt, lane, (int)job->payload_len, job->payload)
			      : snprintf(member, mlen, "%s\n%s\n%d\n%.*s", job->id, job->tenant,
					 job->attempt, (int)job->payload_len, job->payload);
		snprintf(when, sizeof(when), "%lld", (long long)tr_now_ms() + backoff_ms(job));
		const char *args[] = {pt->stream, list, parked, pt->delayed, entry,
				      job->id,	  lane, when,	member};
		size_t lens[] = {strlen(pt->stream),  strlen(list),  strlen(parked),
				 strlen(pt->delayed), strlen(entry), strlen(job->id),
				 strlen(lane),	      strlen(when),  (size_t)n};
		r = eval(retry_lua, 4, 9, args, lens);
		free(member);
		atomic_fetch_add(&q->retried, 1);
		tr_warn("jobs: %s job %s failed (attempt %d of %d): %s; retrying", q->h->queue,
			job->id, job->attempt, max_attempts_of(job), err);
	} else {
		bson_t rec = BSON_INITIALIZER, payload;
		char ts[32], hash[300], *json;
		size_t len;
		char perr[64];
		tr_format_time(tr_now_ms(), ts);
		BSON_APPEND_UTF8(&rec, "id", job->id);
		BSON_APPEND_UTF8(&rec, "queue", q->h->queue);
		BSON_APPEND_UTF8(&rec, "state", "dead");
		BSON_APPEND_INT32(&rec, "attempts", job->attempt);
		BSON_APPEND_UTF8(&rec, "last_error", err);
		BSON_APPEND_UTF8(&rec, "failed_at", ts);
		if (*lane)
			BSON_APPEND_UTF8(&rec, "lane", lane);
		if (tr_json_parse(job->payload, job->payload_len, &payload, perr, sizeof(perr)) ==
		    0)
			BSON_APPEND_DOCUMENT(&rec, "payload", &payload);
		bson_destroy(&payload);
		json = tr_json_render(&rec, &len);
		bson_destroy(&rec);
		if (!json)
			return;
		tenant_dead_key(hash, sizeof(hash), q->h->queue, part, job->tenant);
		const char *args[] = {pt->stream, list,	   parked, pt->dead,	hash,
				      entry,	  job->id, lane,   job->tenant, json};
		r = eval(dead_lua, 5, 10, args, NULL);
		free(json);
		atomic_fetch_add(&q->dead_count, 1);
		tr_warn("jobs: %s job %s failed %d times: %s; moved to the dead letters",
			q->h->queue, job->id, job->attempt, err);
	}
	if (r)
		freeReplyObject(r);
}

/* Does the job head its lane (then it runs)? Otherwise it was parked, or
 * Redis did not answer (it stays pending and is reclaimed later): false. */
static bool
lane_enter(struct queue *q, int part, const char *entry, const struct tr_job *job,
	   const char *attempt)
{
	const char *stream = q->parts[part].stream;
	char list[300], parked[300];
	size_t mlen = strlen(job->tenant) + strlen(attempt) + 3 + job->payload_len;
	char *member = malloc(mlen);
	redisReply *r;
	bool run;
	int n;

	if (!member)
		return false;
	lane_keys(q, part, job->lane, list, parked);
	n = snprintf(member, mlen, "%s\n%s\n%.*s", job->tenant, attempt, (int)job->payload_len,
		     job->payload);
	const char *args[] = {stream, list, parked, entry, job->id, member};
	size_t lens[] = {strlen(stream), strlen(list),	  strlen(parked),
			 strlen(entry),	 strlen(job->id), (size_t)n};
	r = eval(lane_enter_lua, 3, 6, args, lens);
	free(member);
	run = r && r->type == REDIS_REPLY_INTEGER && r->integer == 1;
	if (r)
		freeReplyObject(r);
	return run;
}

static void
run_entry(struct queue *q, int part, const redisReply *e)
{
	const char *stream = q->parts[part].stream;
	const redisReply *fields, *id, *tenant, *attempt, *payload, *lane;
	struct tr_job job;
	char err[256] = "";
	int rc;

	if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
	    e->element[0]->type != REDIS_REPLY_STRING || e->element[1]->type != REDIS_REPLY_ARRAY)
		return; /* a deleted entry (XAUTOCLAIM reports those as nil) */
	fields = e->element[1];
	id = field(fields, "id");
	tenant = field(fields, "tenant");
	attempt = field(fields, "attempt");
	payload = field(fields, "payload");
	lane = field(fields, "lane");
	if (!id || !tenant || !attempt || !payload) {
		const char *args[] = {stream, stream, stream, e->element[0]->str, "", ""};
		redisReply *r = eval(done_lua, 3, 6, args, NULL); /* not a job: drop it */
		if (r)
			freeReplyObject(r);
		return;
	}
	job.queue = q->h->queue;
	job.id = id->str;
	job.tenant = tenant->str;
	job.payload = payload->str;
	job.payload_len = payload->len;
	job.attempt = atoi(attempt->str) + 1;
	job.lane = lane && lane->len ? lane->str : NULL;
	if (job.lane && !lane_enter(q, part, e->element[0]->str, &job, attempt->str))
		return; /* waits for the jobs before it in its lane */
	rc = q->h->run(&job, err, sizeof(err));
	if (rc != 0 && !err[0])
		snprintf(err, sizeof(err), "failed");
	finish(q, part, e->element[0]->str, &job, rc, err);
}

/* Every entry read is run, even after a stop was asked: an entry left
 * pending would wait out job_visibility_ms before another process took it
 * over. A read holds at most CLAIM_COUNT entries, so the stop waits for
 * little. */
static void
run_entries(struct queue *q, int part, const redisReply *entries)
{
	for (size_t i = 0; i < entries->elements; i++)
		run_entry(q, part, entries->element[i]);
}

static void
move_due(void)
{
	char now[24];

	snprintf(now, sizeof(now), "%lld", (long long)tr_now_ms());
	for (int i = 0; i < J.nqueues; i++)
		for (int p = 0; p < J.queues[i].nparts; p++) {
			const struct partition *pt = &J.queues[i].parts[p];
			const char *args[] = {pt->delayed, pt->stream, now};
			redisReply *r = eval(move_lua, 2, 3, args, NULL);
			if (r)
				freeReplyObject(r);
		}
}

/* Jobs taken by a worker that has been silent for the visibility timeout
 * (it died, or hangs) are taken over. */
static void
reclaim(const char *consumer)
{
	char idle[24];

	snprintf(idle, sizeof(idle), "%d", J.cfg->job_visibility_ms);
	for (int i = 0; i < J.nqueues; i++)
		for (int p = 0; p < J.queues[i].nparts; p++) {
			const char *argv[] = {"XAUTOCLAIM", J.queues[i].parts[p].stream,
					      GROUP,	    consumer,
					      idle,	    "0-0",
					      "COUNT",	    CLAIM_COUNT};
			redisReply *r = tr_kv_command(8, argv, NULL);
			if (r && r->type == REDIS_REPLY_ARRAY && r->elements >= 2 &&
			    r->element[1]->type == REDIS_REPLY_ARRAY && r->element[1]->elements) {
				tr_info("jobs: reclaimed %zu %s jobs of a silent worker",
					r->element[1]->elements, J.queues[i].h->queue);
				run_entries(&J.queues[i], p, r->element[1]);
			}
			if (r)
				freeReplyObject(r);
		}
}

/* Runs what an XREADGROUP read (r, which it frees; NULL when Redis is
 * down): each stream's entries with the partition of that stream's name.
 * found is set when there were any. */
static void
run_read(redisReply *r, bool *found)
{
	if (!r) {
		usleep(BLOCK_MS * 1000); /* Redis is down: try again shortly */
		return;
	}
	if (r->type == REDIS_REPLY_ERROR && strstr(r->str, "NOGROUP"))
		ensure_groups(); /* Redis lost its data */
	if (r->type == REDIS_REPLY_ARRAY)
		for (size_t e = 0; e < r->elements; e++) {
			const redisReply *s = r->element[e];
			if (s->type != REDIS_REPLY_ARRAY || s->elements != 2 ||
			    s->element[0]->type != REDIS_REPLY_STRING ||
			    s->element[1]->type != REDIS_REPLY_ARRAY)
				continue;
			if (s->element[1]->elements)
				*found = true;
			for (int i = 0; i < J.nqueues; i++)
				for (int p = 0; p < J.queues[i].nparts; p++)
					if (strcmp(J.queues[i].parts[p].stream,
						   s->element[0]->str) == 0)
						run_entries(&J.queues[i], p, s->element[1]);
		}
	freeReplyObject(r);
}

/* One read of one partition's stream: without BLOCK (block_ms 0) it
 * answers at once. The entries read are run. */
static void
read_partition(const char *consumer, struct queue *q, int part, int block_ms, bool *found)
{
	char block[16];
	const char *argv[] = {"XREADGROUP", "GROUP", GROUP, consumer,  "COUNT",
			      "1",	    "BLOCK", block, "STREAMS", q->parts[part].stream,
			      ">"};
	const char *nonblocking[] = {"XREADGROUP", "GROUP",   GROUP,   consumer, "COUNT",
				     "1",	   "STREAMS", argv[9], ">"};
	redisReply *r;

	snprintf(block, sizeof(block), "%d", block_ms);
	r = block_ms ? tr_kv_command_wait(11, argv, NULL, block_ms + 2000)
		     : tr_kv_command(9, nonblocking, NULL);
	run_read(r, found);
}

/* On a single Redis one blocking XREADGROUP covers every partition of
 * every queue, so a new job wakes an idle worker at once; a cluster
 * refuses a read across slots, so there the partitions are read in turn. */
static void
read_all_single(const char *consumer)
{
	const char *argv[9 + 2 * MAX_QUEUES * MAX_PARTITIONS];
	char block[16];
	int argc = 0, n = 0;

	snprintf(block, sizeof(block), "%d", BLOCK_MS);
	argv[argc++] = "XREADGROUP";
	argv[argc++] = "GROUP";
	argv[argc++] = GROUP;
	argv[argc++] = consumer;
	argv[argc++] = "COUNT";
	argv[argc++] = "1";
	argv[argc++] = "BLOCK";
	argv[argc++] = block;
	argv[argc++] = "STREAMS";
	for (int i = 0; i < J.nqueues; i++)
		for (int p = 0; p < J.queues[i].nparts; p++, n++)
			argv[argc++] = J.queues[i].parts[p].stream;
	for (int k = 0; k < n; k++)
		argv[argc++] = ">";
	bool found = false;
	run_read(tr_kv_command_wait_single_only(argc, argv, NULL, BLOCK_MS + 2000), &found);
}

static void *
job_thread(void *arg)
{
	int index = (int)(intptr_t)arg;
	char consumer[128];
	uint64_t next_move = 0, next_claim = 0;
	uint64_t claim_every = (uint64_t)J.cfg->job_visibility_ms / 2;
	int nstreams = 0, cursor, empty = 0;

	snprintf(consumer, sizeof(consumer), "%s-%d-%d", J.host, (int)getpid(), index);
	for (int i = 0; i < J.nqueues; i++)
		nstreams += J.queues[i].nparts;
	cursor = index % nstreams; /* threads start apart, so they block apart */
	if (claim_every < 100)
		claim_every = 100;
	if (index == 0)
		ensure_groups();
	while (!atomic_load(&J.stopping)) {
		uint64_t now = tr_mono_ns() / 1000000u;
		if (index == 0 && now >= next_move) {
			move_due();
			next_move = now + MOVE_EVERY_MS;
		}
		if (now >= next_claim) {
			reclaim(consumer);
			next_claim = now + claim_every;
		}
		if (!J.cfg->redis_cluster) {
			read_all_single(consumer);
			continue;
		}
		int q = 0, part = cursor;
		while (part >= J.queues[q].nparts)
			part -= J.queues[q++].nparts;
		cursor = (cursor + 1) % nstreams;
		/* a round of reads that wait for nothing, then one that blocks */
		bool found = false, block = empty >= nstreams;
		read_partition(consumer, &J.queues[q], part, block ? ROTATE_BLOCK_MS : 0, &found);
		empty = found || block ? 0 : empty + 1;
	}
	return NULL;
}

/* ---- stats for /metrics (loop thread) ---- */

/* A stats round is a script call per partition (each its own slot);
 * the sums are shown once every call of the round answered. */
static void
stats_cb(void *arg, const redisReply *r, int status)
{
	struct queue *q = &J.queues[(intptr_t)arg];

	if (status == TR_OK && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0)
		tr_redis_script_reset(J.stats_script);
	if (status != TR_OK || r->type != REDIS_REPLY_ARRAY || r->elements != 4)
		J.stats_failed = true;
	else
		for (int k = 0; k < 4; k++)
			if (r->element[k]->type == REDIS_REPLY_INTEGER)
				q->sums[k] += r->element[k]->integer;
	if (--J.stats_pending > 0)
		return;
	J.stats_busy = false;
	if (J.stats_failed)
		return;
	for (int i = 0; i < J.nqueues; i++) {
		const long long *v = J.queues[i].sums;
		J.queues[i].inflight = v[1];
		J.queues[i].waiting = v[0] > v[1] ? v[0] - v[1] : 0;
		J.queues[i].delayed_n = v[2];
		J.queues[i].dead_n = v[3];
	}
}

static void
stats_timer_cb(uv_timer_t *t)
{
	(void)t;

	if (J.stats_busy || J.nqueues == 0)
		return;
	J.stats_busy = true;
	J.stats_failed = false;
	J.stats_pending = 1; /* held until every call is sent */
	for (int i = 0; i < J.nqueues; i++) {
		memset(J.queues[i].sums, 0, sizeof(J.queues[i].sums));
		for (int p = 0; p < J.queues[i].nparts; p++) {
			const struct partition *pt = &J.queues[i].parts[p];
			const char *argv[] = {pt->stream, pt->delayed, pt->dead};
			J.stats_pending++;
			if (tr_redis_script_call(J.stats_script, stats_cb, (void *)(intptr_t)i, 3,
						 3, argv, NULL) != TR_OK) {
				J.stats_pending--; /* its callback never comes */
				J.stats_failed = true;
			}
		}
	}
	if (--J.stats_pending == 0)
		J.stats_busy = false;
}

static char *
render_metrics(void)
{
	size_t cap = 1024 + (size_t)J.nqueues * 1024, len = 0;
	char *text = malloc(cap);

	if (!text)
		return NULL;
	len += (size_t)snprintf(text + len, cap - len,
				"# HELP trellis_jobs Jobs per queue and state (from Redis).\n"
				"# TYPE trellis_jobs gauge\n");
	for (int i = 0; i < J.nqueues; i++) {
		const struct queue *q = &J.queues[i];
		len += (size_t)snprintf(text + len, cap - len,
					"trellis_jobs{queue=\"%s\",state=\"waiting\"} %lld\n"
					"trellis_jobs{queue=\"%s\",state=\"in_flight\"} %lld\n"
					"trellis_jobs{queue=\"%s\",state=\"delayed\"} %lld\n"
					"trellis_jobs{queue=\"%s\",state=\"dead\"} %lld\n",
					q->h->queue, q->waiting, q->h->queue, q->inflight,
					q->h->queue, q->delayed_n, q->h->queue, q->dead_n);
	}
	len +=
	    (size_t)snprintf(text + len, cap - len,
			     "# HELP trellis_job_runs_total Job runs by outcome (this process).\n"
			     "# TYPE trellis_job_runs_total counter\n");
	for (int i = 0; i < J.nqueues; i++) {
		struct queue *q = &J.queues[i];
		len += (size_t)snprintf(
		    text + len, cap - len,
		    "trellis_job_runs_total{queue=\"%s\",outcome=\"done\"} %llu\n"
		    "trellis_job_runs_total{queue=\"%s\",outcome=\"retried\"} %llu\n"
		    "trellis_job_runs_total{queue=\"%s\",outcome=\"dead\"} %llu\n",
		    q->h->queue, (unsigned long long)atomic_load(&q->done), q->h->queue,
		    (unsigned long long)atomic_load(&q->retried), q->h->queue,
		    (unsigned long long)atomic_load(&q->dead_count));
	}
	return text;
}

/* ---- start / stop ---- */

void
tr_jobs_register(void)
{
	J.stats_script = tr_redis_script_register(stats_lua);
}

int
tr_jobs_start(uv_loop_t *loop, const struct tr_config *cfg)
{
	J.cfg = cfg;
	J.loop = loop;
	if (gethostname(J.host, sizeof(J.host)) != 0)
		snprintf(J.host, sizeof(J.host), "host");
	J.host[sizeof(J.host) - 1] = '\0';
	for (size_t m = 0; m < tr_nmodules; m++) {
		const struct tr_module *mod = tr_modules[m];
		for (size_t i = 0; i < mod->njobs && J.nqueues < MAX_QUEUES; i++) {
			struct queue *q = &J.queues[J.nqueues++];
			q->h = &mod->jobs[i];
			q->nparts = tr_job_partitions();
			for (int p = 0; p < q->nparts; p++) {
				struct partition *pt = &q->parts[p];
				tr_job_key(pt->stream, sizeof(pt->stream), q->h->queue, p, "");
				tr_job_key(pt->delayed, sizeof(pt->delayed), q->h->queue, p,
					   ":delayed");
				tr_job_key(pt->dead, sizeof(pt->dead), q->h->queue, p, ":dead");
			}
		}
	}
	tr_metrics_add_source(render_metrics);
	uv_timer_init(loop, &J.stats_timer);
	uv_timer_start(&J.stats_timer, stats_timer_cb, 100, STATS_EVERY_MS);
	J.timer_on = true;
	if (!cfg->role_worker || cfg->job_workers == 0 || J.nqueues == 0)
		return 0;
	for (int i = 0; i < cfg->job_workers && i < MAX_THREADS; i++) {
		if (pthread_create(&J.threads[i], NULL, job_thread, (void *)(intptr_t)i) != 0) {
			tr_error("jobs: cannot start job thread %d", i);
			break;
		}
		J.nthreads++;
	}
	tr_info("jobs: %d threads on %d queues of %d partitions", J.nthreads, J.nqueues,
		tr_job_partitions());
	return 0;
}

void
tr_jobs_quiesce(void)
{
	atomic_store(&J.stopping, true);
}

void
tr_jobs_stop(void)
{
	atomic_store(&J.stopping, true);
	if (J.timer_on) {
		uv_timer_stop(&J.stats_timer);
		uv_close((uv_handle_t *)&J.stats_timer, NULL);
		J.timer_on = false;
	}
	for (int i = 0; i < J.nthreads; i++)
		pthread_join(J.threads[i], NULL);
	J.nthreads = 0;
}

/* ---- the jobs API ---- */

struct dead_item {
	struct tr_evid at;
	const char *json;
	size_t len;
};

static int
newest_first(const void *a, const void *b)
{
	return -tr_evid_cmp(&((const struct dead_item *)a)->at, &((const struct dead_item *)b)->at);
}

/* A tenant's dead jobs are kept per queue partition (tenant_dead_key):
 * the API reads every partition of every queue this server knows. */
char *
tr_jobs_dead_json(const char *tenant_hex, size_t *len_out)
{
	redisReply *replies[MAX_QUEUES * MAX_PARTITIONS];
	int nreplies = 0;
	struct dead_item *items = NULL;
	size_t n = 0, total = 2, cap = 0;
	char *out = NULL;

	for (int q = 0; q < J.nqueues; q++)
		for (int p = 0; p < J.queues[q].nparts; p++) {
			char key[300];
			tenant_dead_key(key, sizeof(key), J.queues[q].h->queue, p, tenant_hex);
			const char *argv[] = {"HVALS", key};
			redisReply *r = tr_kv_command(2, argv, NULL);
			if (!r || r->type != REDIS_REPLY_ARRAY) {
				if (r)
					freeReplyObject(r);
				goto out;
			}
			replies[nreplies++] = r;
			cap += r->elements;
		}
	items = calloc(cap + 1, sizeof(*items));
	if (!items)
		goto out;
	for (int k = 0; k < nreplies; k++)
		for (size_t i = 0; i < replies[k]->elements; i++) {
			const redisReply *v = replies[k]->element[i];
			const char *nl =
			    v->type == REDIS_REPLY_STRING ? memchr(v->str, '\n', v->len) : NULL;
			if (!nl || !tr_evid_parse(v->str, (size_t)(nl - v->str), &items[n].at))
				continue;
			items[n].json = nl + 1;
			items[n].len = v->len - (size_t)(nl + 1 - v->str);
			total += items[n].len + 1;
			n++;
		}
	qsort(items, n, sizeof(*items), newest_first);
	out = malloc(total + 1);
	if (out) {
		size_t len = 0;
		out[len++] = '[';
		for (size_t i = 0; i < n; i++) {
			if (i)
				out[len++] = ',';
			memcpy(out + len, items[i].json, items[i].len);
			len += items[i].len;
		}
		out[len++] = ']';
		out[len] = '\0';
		*len_out = len;
	}
out:
	free(items);
	for (int k = 0; k < nreplies; k++)
		freeReplyObject(replies[k]);
	return out;
}

/* Finds a tenant's dead job: its queue and partition and the record
 * ("dead entry \n JSON", to be freed). TR_OK, TR_ENOTFOUND or
 * TR_EUNAVAILABLE. */
static int
find_dead(const char *tenant_hex, const char *job_id, int *qi, int *part, redisReply **rec)
{
	for (int q = 0; q < J.nqueues; q++)
		for (int p = 0; p < J.queues[q].nparts; p++) {
			char key[300];
			tenant_dead_key(key, sizeof(key), J.queues[q].h->queue, p, tenant_hex);
			const char *get[] = {"HGET", key, job_id};
			redisReply *r = tr_kv_command(3, get, NULL);
			if (!r)
				return TR_EUNAVAILABLE;
			if (r->type == REDIS_REPLY_STRING) {
				*qi = q;
				*part = p;
				*rec = r;
				return TR_OK;
			}
			freeReplyObject(r);
		}
	return TR_ENOTFOUND;
}

int
tr_jobs_retry(const char *tenant_hex, const char *job_id, char *queue_out, size_t qlen)
{
	char key[300], entry[48], perr[64];
	redisReply *r;
	bson_t rec;
	bson_iter_t it;
	int rc, qi = 0, part = 0;

	if (strlen(job_id) != 32 || strspn(job_id, "0123456789abcdef") != 32)
		return TR_ENOTFOUND;
	rc = find_dead(tenant_hex, job_id, &qi, &part, &r);
	if (rc != TR_OK)
		return rc;
	rc = TR_ENOTFOUND;
	const char *nl = memchr(r->str, '\n', r->len);
	if (!nl || (size_t)(nl - r->str) >= sizeof(entry) ||
	    tr_json_parse(nl + 1, r->len - (size_t)(nl + 1 - r->str), &rec, perr, sizeof(perr)) !=
		0) {
		freeReplyObject(r);
		return TR_ENOTFOUND;
	}
	memcpy(entry, r->str, (size_t)(nl - r->str));
	entry[nl - r->str] = '\0';
	freeReplyObject(r);
	const struct queue *q = &J.queues[qi];
	const struct partition *pt = &q->parts[part];
	bson_t payload;
	uint32_t plen = 0;
	const uint8_t *pdata = NULL;
	snprintf(queue_out, qlen, "%s", q->h->queue);
	tenant_dead_key(key, sizeof(key), q->h->queue, part, tenant_hex);
	if (!bson_iter_init_find(&it, &rec, "payload") || !BSON_ITER_HOLDS_DOCUMENT(&it))
		goto out;
	bson_iter_document(&it, &plen, &pdata);
	if (!bson_init_static(&payload, pdata, plen))
		goto out;
	/* the payload again, counting the rounds: a handler that derives
	 * ids from (job, attempt) tells this round's attempts from the last */
	bson_t again = BSON_INITIALIZER;
	bson_iter_t pi;
	int32_t rounds = 0;
	if (bson_iter_init(&pi, &payload))
		while (bson_iter_next(&pi)) {
			if (strcmp(bson_iter_key(&pi), TR_JOB_RETRIED) != 0)
				bson_append_iter(&again, NULL, 0, &pi);
			else if (BSON_ITER_HOLDS_INT32(&pi))
				rounds = bson_iter_int32(&pi);
		}
	BSON_APPEND_INT32(&again, TR_JOB_RETRIED, rounds + 1);
	size_t jlen;
	char *pjson = tr_json_render(&again, &jlen);
	bson_destroy(&again);
	if (!pjson) {
		rc = TR_ENOMEM;
		goto out;
	}
	const char *lane = bson_iter_init_find(&it, &rec, "lane") && BSON_ITER_HOLDS_UTF8(&it)
			       ? bson_iter_utf8(&it, NULL)
			       : "";
	/* back into the partition it died in: its lane's, if it has one */
	const char *args[] = {key, pt->stream, pt->dead, job_id, entry, tenant_hex, pjson, lane};
	r = eval(requeue_lua, 3, 8, args, NULL);
	free(pjson);
	if (!r)
		rc = TR_EUNAVAILABLE;
	else if (r->type == REDIS_REPLY_INTEGER && r->integer == 1)
		rc = TR_OK;
	if (r)
		freeReplyObject(r);
out:
	bson_destroy(&rec);
	return rc;
}

int
tr_jobs_tenant_counts(const char *tenant_hex, long long max_scan, struct tr_job_counts *out,
		      int max, int *nout, long long *dead)
{
	char key[300], limit[24];
	redisReply *r;
	int n = 0;

	*nout = 0;
	*dead = 0;
	snprintf(limit, sizeof(limit), "%lld", max_scan);
	for (int i = 0; i < J.nqueues && n < max; i++) {
		const struct queue *q = &J.queues[i];
		out[n].queue = q->h->queue;
		out[n].ready = out[n].delayed = 0;
		out[n].exact = true;
		for (int p = 0; p < q->nparts; p++) {
			tenant_dead_key(key, sizeof(key), q->h->queue, p, tenant_hex);
			const char *hlen[] = {"HLEN", key};
			r = tr_kv_command(2, hlen, NULL);
			if (!r)
				return TR_EUNAVAILABLE;
			if (r->type == REDIS_REPLY_INTEGER)
				*dead += r->integer;
			freeReplyObject(r);
			const char *args[] = {q->parts[p].stream, q->parts[p].delayed, tenant_hex,
					      limit};
			r = eval(tenant_counts_lua, 2, 4, args, NULL);
			if (!r)
				return TR_EUNAVAILABLE;
			if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
			    r->element[0]->type != REDIS_REPLY_INTEGER ||
			    r->element[1]->type != REDIS_REPLY_INTEGER ||
			    r->element[2]->type != REDIS_REPLY_INTEGER) {
				tr_error("jobs: counting %s for a tenant failed: %s", q->h->queue,
					 r->type == REDIS_REPLY_ERROR ? r->str
								      : "unexpected reply");
				freeReplyObject(r);
				return TR_EUNAVAILABLE;
			}
			out[n].ready += r->element[0]->integer;
			out[n].delayed += r->element[1]->integer;
			out[n].exact = out[n].exact && r->element[2]->integer == 1;
			freeReplyObject(r);
		}
		n++;
	}
	*nout = n;
	return TR_OK;
}

/* A lane lives in one partition, its name's (tr_job_partition_of) - but
 * a lane moved by the key migration is in partition 0 - so every
 * partition is asked. */
long long
tr_job_lane_length(const char *queue, const char *lane)
{
	char key[300];
	const char *argv[2] = {"LLEN", key};
	long long n = 0;

	for (int p = 0; p < tr_job_partitions(); p++) {
		redisReply *r;
		tr_job_key(key, sizeof(key), queue, p, ":lane:");
		snprintf(key + strlen(key), sizeof(key) - strlen(key), "%s", lane);
		if (!(r = tr_kv_command(2, argv, NULL)))
			return TR_EUNAVAILABLE;
		if (r->type == REDIS_REPLY_INTEGER)
			n += r->integer;
		freeReplyObject(r);
	}
	return n;
}
