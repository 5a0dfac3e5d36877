#include "events.h"

#include <mongoc/mongoc.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "auth.h"
#include "dbpool.h"
#include "health.h"
#include "jobs.h"
#include "json.h"
#include "kvconn.h"
#include "log.h"
#include "metrics.h"
#include "redis.h"
#include "session.h"
#include "util.h"
#include "ws.h"

#define OUTBOX "outbox"
#define EVENTS_CHANNEL "trellis:events"
/* cluster mode: one sharded channel per slot, this prefix + {slot tag} */
#define EVENTS_SHARD_PREFIX "trellis:ev:"
#define RELAY_BATCH 500
#define DELETE_BATCH 256

/* Publishing an event takes up to three scripts, each on the keys of one
 * cluster slot (a script's keys must share one; the single-mode client
 * refuses others too, so the whole suite proves it):
 *   1. the tenant's stream (publish_lua),
 *   2. the event sink's deliveries (deliver_lua), when it has subscribers,
 *   3. the event listener's job (listen_lua), when it takes the event.
 * On a single Redis the three are one call (publish_all_lua, through the
 * single-only script call), as before the cluster: a delivery joins its
 * webhook's lane in the call that appends its event, so the lane's order
 * is the stream's across processes, and nothing is enqueued twice.
 * In a cluster, steps 2 and 3 start together when step 1 succeeded
 * (publish_queues);
 * the outbox record is deleted only when all did. A failure leaves the
 * record to the relay, which runs all three again: step 1 answers the id
 * it appended before (the dedupe key), steps 2 and 3 enqueue again -
 * deliveries are at least once when a step failed after step 1 succeeded
 * (job ids are derived from event and subscriber, so a consumer can
 * tell).
 *
 * publish_lua: KEYS[1] the tenant's stream, KEYS[2] the outbox record's
 * dedupe key. ARGV: max length, min id ("0": none), topic, owner, tail,
 * tenant, dedupe ttl, the publish command and channel (PUBLISH
 * trellis:events on one Redis; on a cluster SPUBLISH to the shard channel
 * of the tenant's slot, the only channel a script may publish to there).
 * Appends, trims, remembers the outbox id, publishes "tenant \n topic \n
 * owner \n id \n tail" and returns the id; an outbox id already
 * published returns its event id and does nothing. */
/* The stream step's Lua, up to a local `id` (the appended event id). */
#define LUA_STREAM                                                                                 \
	"local prev = redis.call('GET', KEYS[2])\n"                                                \
	"if prev then return prev end\n"                                                           \
	"local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*',\n"                    \
	"  't', ARGV[3], 'o', ARGV[4], 'b', ARGV[5])\n"                                            \
	"if ARGV[2] ~= '0' then redis.call('XTRIM', KEYS[1], 'MINID', '~', ARGV[2]) end\n"         \
	"redis.call('SET', KEYS[2], id, 'EX', ARGV[7])\n"                                          \
	"redis.call(ARGV[8], ARGV[9],\n"                                                           \
	"  ARGV[6] .. '\\n' .. ARGV[3] .. '\\n' .. ARGV[4] .. '\\n' .. id .. '\\n' .. ARGV[5])\n"

/* One delivery job, from the locals q (the queue), id, tenant, tail,
 * field (the sink's id field), sub (the subscriber) and ordered: its id is
 * derived from event and subscriber, and the job of a subscriber that
 * keeps order joins its lane (jobs.c, the subscriber's id naming it). */
#define LUA_DELIVER_ONE                                                                            \
	"local job = string.sub(redis.sha1hex(id .. sub), 1, 32)\n"                                \
	"local lane = ''\n"                                                                        \
	"if ordered then\n"                                                                        \
	"  lane = sub\n"                                                                           \
	"  redis.call('RPUSH', q .. ':lane:' .. lane, job)\n"                                      \
	"end\n"                                                                                    \
	"redis.call('XADD', q, '*', 'id', job, 'tenant', tenant, 'attempt', '0',\n"                \
	"  'lane', lane, 'payload',\n"                                                             \
	"  '{\"' .. field .. '\":\"' .. sub .. '\",\"event\":{\"id\":\"' .. id .. '\",' .. tail "  \
	".. "                                                                                      \
	"'}')\n"

/* The listener's job, from the locals q, id, tenant and tail. */
#define LUA_LISTEN                                                                                 \
	"redis.call('XADD', q, '*', 'id', string.sub(redis.sha1hex(id .. ':listener'), 1, 32),\n"  \
	"  'tenant', tenant, 'attempt', '0', 'payload',\n"                                         \
	"  '{\"event\":{\"id\":\"' .. id .. '\",' .. tail .. '}')\n"

static const char publish_lua[] = LUA_STREAM "return id\n";

/* deliver_lua: KEYS[1] the event sink's job queue. ARGV: event id,
 * tenant, tail, the sink's id field, a '0' or '1' per subscriber ('1': its
 * deliveries keep event order), then the subscribers' ids. Enqueues one
 * delivery job per subscriber; the lane's order is the order of these
 * calls - the stream's, as each runs after its event's step 1 answered,
 * on one connection. Returns the id. */
static const char deliver_lua[] =
    "local id, tenant, tail, field = ARGV[1], ARGV[2], ARGV[3], ARGV[4]\n"
    "local q = KEYS[1]\n"
    "for i = 6, #ARGV do\n"
    "  local sub, ordered = ARGV[i], string.sub(ARGV[5], i - 5, i - 5) == '1'\n" LUA_DELIVER_ONE
    "end\n"
    "return id\n";

/* listen_lua: KEYS[1] the event listener's job queue. ARGV: event id,
 * tenant, tail. Enqueues the listener's job; returns the id. */
static const char listen_lua[] = "local id, tenant, tail = ARGV[1], ARGV[2], ARGV[3]\n"
				 "local q = KEYS[1]\n" LUA_LISTEN "return id\n";

/* publish_all_lua, on a single Redis: all three steps in one call, so a
 * delivery joins its lane in the same step that appends its event to the
 * stream, and the lane's order is the stream's across processes (the
 * steps of a cluster are three calls; see above). KEYS: the stream, the
 * dedupe key, the listener's queue, then the sink's queue partitions.
 * ARGV: those of publish_lua, then the sink's id field, "1" when the
 * listener takes the event, the order string, a hex digit per subscriber
 * (its queue partition), then the subscribers' ids. */
static const char publish_all_lua[] = LUA_STREAM
    "local tenant, tail, field = ARGV[6], ARGV[5], ARGV[10]\n"
    "for i = 14, #ARGV do\n"
    "  local sub, ordered = ARGV[i], string.sub(ARGV[12], i - 13, i - 13) == '1'\n"
    "  local q = KEYS[4 + tonumber(string.sub(ARGV[13], i - 13, i - 13), 16)]\n" LUA_DELIVER_ONE
    "end\n"
    "if ARGV[11] == '1' then\n"
    "  local q = KEYS[3]\n" LUA_LISTEN "end\n"
    "return id\n";

enum publish_stage { STAGE_STREAM, STAGE_SINK, STAGE_LISTENER, STAGE_DONE, STAGE_ALL };

static struct {
	const struct tr_config *cfg;
	uv_loop_t *loop;
	int script, deliver_script, listen_script; /* by stage, see publish_lua */
	int all_script;				   /* single Redis: publish_all_lua */
	uv_timer_t relay_timer;
	uv_work_t relay_work, delete_work;
	bool relay_busy, delete_busy, started;
	/* outbox ids published from the loop, waiting to be deleted */
	char (*to_delete)[25];
	int ndelete, cap_delete;
	char (*deleting)[25];
	int ndeleting;
	unsigned long long published;
	atomic_ullong relayed;
	const struct tr_event_sink *sink;	  /* the module that offers one, or NULL */
	const struct tr_event_listener *listener; /* likewise */
} E;

/* Where the queue steps write: jobs.c's queues are split into partitions
 * (job_partitions), each in its own cluster slot. A subscriber's
 * deliveries go to the partition of its id (its lane's, so the lane's
 * order holds) and the listener's job to the partition of the event id. */
static int
queue_partitions(void)
{
	return tr_job_partitions();
}

static int
queue_partition_of(const char *lane_or_id)
{
	return tr_job_partition_of(lane_or_id);
}

static void
queue_key(char *buf, size_t len, const char *queue, int partition)
{
	tr_job_key(buf, len, queue, partition, "");
}

/* ---- ids ---- */

bool
tr_evid_parse(const char *s, size_t len, struct tr_evid *out)
{
	unsigned long long v[2] = {0, 0};
	int part = 0;
	size_t digits = 0;

	for (size_t i = 0; i < len; i++) {
		if (s[i] == '-' && part == 0 && digits) {
			part = 1;
			digits = 0;
		} else if (s[i] >= '0' && s[i] <= '9' && digits < 19) {
			v[part] = v[part] * 10 + (unsigned long long)(s[i] - '0');
			digits++;
		} else {
			return false;
		}
	}
	if (part != 1 || !digits)
		return false;
	out->ms = v[0];
	out->seq = v[1];
	return true;
}

int
tr_evid_cmp(const struct tr_evid *a, const struct tr_evid *b)
{
	if (a->ms != b->ms)
		return a->ms < b->ms ? -1 : 1;
	if (a->seq != b->seq)
		return a->seq < b->seq ? -1 : 1;
	return 0;
}

bool
tr_event_visible(int topic, const char *owner, unsigned topics, unsigned own_only,
		 const char *user_hex)
{
	unsigned bit;

	if (topic < 0 || topic >= 32)
		return false;
	bit = 1u << topic;
	if (!(topics & bit))
		return false;
	return !(own_only & bit) || tr_owners_has(owner, user_hex);
}

bool
tr_owners_parse(const char *s, size_t len, char out[TR_OWNERS_LEN])
{
	size_t n = 0;

	out[0] = '\0';
	if (len == 0 || len >= TR_OWNERS_LEN || (len + 1) % 25 != 0)
		return false;
	for (size_t at = 0; at < len; at += 25, n++) {
		char id[25];
		memcpy(id, s + at, 24);
		id[24] = '\0';
		if (!tr_is_object_id(id) || (at + 24 < len && s[at + 24] != ','))
			return false;
	}
	memcpy(out, s, len);
	out[len] = '\0';
	return n <= TR_AUDIENCE_MAX;
}

bool
tr_owners_has(const char *owners, const char *user_hex)
{
	size_t len = strlen(owners);

	if (strlen(user_hex) != 24)
		return false;
	for (size_t at = 0; at + 24 <= len; at += 25)
		if (memcmp(owners + at, user_hex, 24) == 0)
			return true;
	return false;
}

/* ---- emitting (worker thread) ---- */

static void
owner_of(const bson_t *stored, char owner[25])
{
	bson_iter_t it;

	owner[0] = '\0';
	if (!stored || !bson_iter_init_find(&it, stored, "owner_id"))
		return;
	if (BSON_ITER_HOLDS_OID(&it))
		bson_oid_to_string(bson_iter_oid(&it), owner);
	else if (BSON_ITER_HOLDS_UTF8(&it) && tr_is_object_id(bson_iter_utf8(&it, NULL)))
		memcpy(owner, bson_iter_utf8(&it, NULL), 25);
}

/* The event sink's subscribers to the event in db's tenant: the same call
 * that publishes the event enqueues their deliveries. A sink that cannot
 * answer leaves the event without deliveries (logged): the event itself
 * is still published. */
static void
find_subscribers(struct tr_db *db, struct tr_event_out *ev)
{
	int n;

	const struct tr_event_listener *l = E.listener;

	/* commands (the demo seed) record events without tr_events_register */
	for (size_t m = 0; m < tr_nmodules && !l; m++)
		l = tr_modules[m]->event_listener;
	ev->listen = false;
	for (const char *const *e = l ? l->events : NULL; e && *e; e++)
		if (strcmp(*e, ev->event) == 0)
			ev->listen = true;

	if (!E.sink || !db)
		return;
	n = E.sink->subscribers(db, ev->topic, ev->subscribers, ev->ordered, TR_MAX_SUBSCRIBERS);
	if (n < 0) {
		tr_warn("events: subscribers to %s not read (%s); no deliveries for this event",
			ev->topic, tr_strerror(n));
		n = 0;
	}
	ev->nsubscribers = n < TR_MAX_SUBSCRIBERS ? n : TR_MAX_SUBSCRIBERS;
}

int
tr_emit(struct tr_ctx *c, const char *topic, const char *event, const char *entity_id,
	const bson_t *stored)
{
	bson_t data = BSON_INITIALIZER;
	char owner[25];
	int rc;

	if (stored)
		tr_render_resource(stored, &data);
	else
		BSON_APPEND_UTF8(&data, "id", entity_id);
	owner_of(stored, owner);
	rc = tr_emit_data(c, topic, event, entity_id, owner, &data);
	bson_destroy(&data);
	return rc;
}

static bool relay_publish_sync(struct tr_event_out *ev);

/* The outbox record of an event: what the relay needs to publish it. */
static void
outbox_record(const struct tr_event_out *ev, const bson_oid_t *id, const bson_oid_t *tenant,
	      int64_t now, bson_t *rec)
{
	BSON_APPEND_OID(rec, "_id", id);
	BSON_APPEND_OID(rec, "tenant_id", tenant);
	BSON_APPEND_UTF8(rec, "topic", ev->topic);
	BSON_APPEND_UTF8(rec, "owner", ev->owner);
	BSON_APPEND_UTF8(rec, "tail", ev->tail);
	if (ev->listen)
		BSON_APPEND_BOOL(rec, "listen", true);
	if (ev->nsubscribers) {
		bson_t arr;
		char key[8];
		const char *k;
		BSON_APPEND_ARRAY_BEGIN(rec, "hooks", &arr);
		for (int i = 0; i < ev->nsubscribers; i++) {
			bson_uint32_to_string((uint32_t)i, &k, key, sizeof(key));
			BSON_APPEND_UTF8(&arr, k, ev->subscribers[i]);
		}
		bson_append_array_end(rec, &arr);
		BSON_APPEND_ARRAY_BEGIN(rec, "ordered", &arr);
		for (int i = 0; i < ev->nsubscribers; i++) {
			bson_uint32_to_string((uint32_t)i, &k, key, sizeof(key));
			BSON_APPEND_BOOL(&arr, k, ev->ordered[i]);
		}
		bson_append_array_end(rec, &arr);
	}
	BSON_APPEND_DATE_TIME(rec, "created_at", now);
}

/* The frame after its id, for an event. malloc'd. */
static char *
render_tail(const char *topic, const char *event, const char *entity_id, const char *actor,
	    const bson_t *data, int64_t now, size_t *len)
{
	bson_t frame = BSON_INITIALIZER;
	char ts[32], *json;
	size_t n;

	tr_format_time(now, ts);
	BSON_APPEND_UTF8(&frame, "topic", topic);
	BSON_APPEND_UTF8(&frame, "event", event);
	BSON_APPEND_UTF8(&frame, "entity_id", entity_id);
	if (actor && *actor)
		BSON_APPEND_UTF8(&frame, "actor", actor);
	else
		BSON_APPEND_NULL(&frame, "actor");
	BSON_APPEND_UTF8(&frame, "ts", ts);
	BSON_APPEND_DOCUMENT(&frame, "data", data);
	json = tr_json_render(&frame, &n);
	bson_destroy(&frame);
	if (!json)
		return NULL;
	memmove(json, json + 1, n); /* without the opening brace */
	*len = n - 1;
	return json;
}

int
tr_emit_background(const char *tenant_hex, const char *topic, const char *event,
		   const char *entity_id, const char *owner, const bson_t *data)
{
	struct tr_event_out ev = {0};
	mongoc_client_t *client;
	mongoc_database_t *db;
	mongoc_collection_t *coll;
	bson_t rec = BSON_INITIALIZER;
	bson_oid_t oid, tid;
	int64_t now = tr_now_ms();
	bool stored, published;

	if (!tr_is_object_id(tenant_hex) || strlen(topic) >= sizeof(ev.topic))
		return TR_EINVALID;
	ev.tail = render_tail(topic, event, entity_id, NULL, data, now, &ev.tail_len);
	if (!ev.tail)
		return TR_ENOMEM;
	memcpy(ev.tenant, tenant_hex, 25);
	snprintf(ev.topic, sizeof(ev.topic), "%s", topic);
	snprintf(ev.event, sizeof(ev.event), "%s", event);
	if (owner)
		tr_owners_parse(owner, strlen(owner), ev.owner);
	/* The subscribers are read on a connection of their own before this
	 * one is taken: holding two at once deadlocks a drained pool. */
	struct tr_db *tdb = tr_db_for_tenant(tenant_hex);
	find_subscribers(tdb, &ev);
	tr_db_release(tdb);
	/* Published at once; the outbox only when that failed (Redis away):
	 * the change this event tells of is written already, so an outbox
	 * record first would guard nothing a publish first does not, at two
	 * writes an event. The id goes with the publish either way, so a
	 * publish whose answer was lost and the relay's are one event. */
	bson_oid_init(&oid, NULL);
	bson_oid_to_string(&oid, ev.outbox_id);
	published = relay_publish_sync(&ev);
	stored = false;
	if (!published) {
		client = tr_dbpool_pop();
		db = tr_dbpool_database(client);
		bson_oid_init_from_string(&tid, tenant_hex);
		outbox_record(&ev, &oid, &tid, now, &rec);
		coll = mongoc_database_get_collection(db, OUTBOX);
		stored = mongoc_collection_insert_one(coll, &rec, NULL, NULL, NULL);
		mongoc_collection_destroy(coll);
		mongoc_database_destroy(db);
		tr_dbpool_push(client);
	}
	bson_destroy(&rec);
	free(ev.tail);
	if (!stored && !published)
		return TR_EUNAVAILABLE;
	return TR_OK; /* published now, or by the relay from the outbox */
}

int
tr_emit_data(struct tr_ctx *c, const char *topic, const char *event, const char *entity_id,
	     const char *owner, const bson_t *data)
{
	const struct tr_principal *p = &c->req->principal;
	struct tr_event_out *ev;
	bson_t rec = BSON_INITIALIZER;
	bson_oid_t oid;
	char *json;
	size_t len;
	int64_t now = tr_now_ms();

	if (strlen(topic) >= sizeof(ev->topic))
		return TR_EINVALID;
	json = render_tail(topic, event, entity_id, p->user_hex, data, now, &len);
	ev = calloc(1, sizeof(*ev));
	if (!json || !ev) {
		free(json);
		free(ev);
		return TR_ENOMEM;
	}
	ev->tail = json;
	ev->tail_len = len;
	memcpy(ev->tenant, p->tenant_hex, 25);
	snprintf(ev->topic, sizeof(ev->topic), "%s", topic);
	snprintf(ev->event, sizeof(ev->event), "%s", event);
	if (owner)
		tr_owners_parse(owner, strlen(owner), ev->owner);

	find_subscribers(c->db, ev);

	/* The outbox record, before the response is sent. */
	bson_oid_init(&oid, NULL);
	outbox_record(ev, &oid, &p->tenant_id, now, &rec);
	mongoc_collection_t *coll = mongoc_database_get_collection(c->db->database, OUTBOX);
	bson_error_t err;
	uint64_t t0 = tr_mono_ns();
	if (mongoc_collection_insert_one(coll, &rec, NULL, NULL, &err)) {
		bson_oid_to_string(&oid, ev->outbox_id);
	} else {
		/* Published anyway, right after the response; only a crash
		 * before that would lose it. */
		tr_warn("events: outbox write failed (%s); publishing without it", err.message);
		tr_random_hex(ev->outbox_id, 12);
		memmove(ev->outbox_id + 1, ev->outbox_id, 24);
		ev->outbox_id[0] = 'x'; /* never an ObjectId: nothing to delete */
		ev->outbox_id[24] = '\0';
	}
	c->db->elapsed_ns += tr_mono_ns() - t0;
	mongoc_collection_destroy(coll);
	bson_destroy(&rec);

	if (c->resp->events_tail)
		c->resp->events_tail->next = ev;
	else
		c->resp->events = ev;
	c->resp->events_tail = ev;
	return TR_OK;
}

/* ---- publishing (loop thread) ---- */

static void
publish_args(const struct tr_event_out *ev, char keys[2][96], char maxlen[24], char minid[32],
	     char ttl[16])
{
	snprintf(keys[0], 96, "t:{%s}:events", ev->tenant);
	snprintf(keys[1], 96, "t:{%s}:ob:%s", ev->tenant, ev->outbox_id);
	snprintf(maxlen, 24, "%d", E.cfg->events_max_len);
	long long min_ms = (long long)tr_now_ms() - (long long)E.cfg->events_max_age * 1000;
	snprintf(minid, 32, "%lld-0", min_ms > 0 ? min_ms : 0);
	snprintf(ttl, 16, "%d", E.cfg->outbox_dedupe_s);
}

static void delete_flush(void);
static char *render_metrics(void);

/* The script of a stage (for the queue steps: in one queue partition)
 * - keys and arguments into argv, at least 8 + TR_MAX_SUBSCRIBERS;
 * returns the argument count, *nkeys and *script (a tr_redis id) set, or
 * 0 when it has nothing to do there. */
#define MAX_QUEUE_PARTS 16 /* jobs.c's most */
/* the most arguments of a stage's script: STAGE_ALL's */
#define STAGE_MAX_ARGS (3 + MAX_QUEUE_PARTS + 11 + TR_MAX_SUBSCRIBERS)
struct stage_bufs {
	char keys[2][96], maxlen[24], minid[32], ttl[16], channel[64], queue[200];
	char order[TR_MAX_SUBSCRIBERS + 1], parts[TR_MAX_SUBSCRIBERS + 1];
	char queues[MAX_QUEUE_PARTS][200];
};

static int
stage_argv(const struct tr_event_out *ev, int stage, int part, struct stage_bufs *b, int *nkeys,
	   int *script, const char **argv, size_t *lens)
{
	int n = 0, nsubs = 0;

	switch (stage) {
	case STAGE_STREAM:
		publish_args(ev, b->keys, b->maxlen, b->minid, b->ttl);
		argv[n++] = b->keys[0];
		argv[n++] = b->keys[1];
		argv[n++] = b->maxlen;
		argv[n++] = b->minid;
		argv[n++] = ev->topic;
		argv[n++] = ev->owner;
		argv[n++] = ev->tail;
		argv[n++] = ev->tenant;
		argv[n++] = b->ttl;
		if (E.cfg->redis_cluster) {
			tr_redis_shard_channel(EVENTS_SHARD_PREFIX, b->keys[0], strlen(b->keys[0]),
					       b->channel, sizeof(b->channel));
			argv[n++] = "SPUBLISH";
		} else {
			snprintf(b->channel, sizeof(b->channel), "%s", EVENTS_CHANNEL);
			argv[n++] = "PUBLISH";
		}
		argv[n++] = b->channel;
		*nkeys = 2;
		*script = E.script;
		break;
	case STAGE_ALL: {
		int nparts = E.sink ? queue_partitions() : 0;
		if (nparts > MAX_QUEUE_PARTS)
			return 0;
		n = stage_argv(ev, STAGE_STREAM, 0, b, nkeys, script, argv + 1 + nparts, lens);
		/* the keys first: stream, dedupe, listener queue, sink partitions */
		argv[0] = argv[1 + nparts];
		argv[1] = argv[2 + nparts];
		queue_key(b->queue, sizeof(b->queue), E.listener ? E.listener->queue : "none",
			  queue_partition_of(ev->outbox_id[0] ? ev->outbox_id : ev->tenant));
		argv[2] = b->queue;
		for (int p = 0; p < nparts; p++) {
			queue_key(b->queues[p], sizeof(b->queues[p]), E.sink->queue, p);
			argv[3 + p] = b->queues[p];
		}
		n += 1 + nparts;
		argv[n++] = E.sink ? E.sink->id_field : "";
		argv[n++] = ev->listen && E.listener ? "1" : "0";
		argv[n++] = b->order;
		argv[n++] = b->parts;
		for (int i = 0; E.sink && i < ev->nsubscribers; i++) {
			b->order[nsubs] = ev->ordered[i] ? '1' : '0';
			b->parts[nsubs++] =
			    "0123456789abcdef"[queue_partition_of(ev->subscribers[i])];
			argv[n++] = ev->subscribers[i];
		}
		b->order[nsubs] = b->parts[nsubs] = '\0';
		*nkeys = 3 + nparts;
		*script = E.all_script;
		break;
	}
	case STAGE_SINK:
		if (!E.sink)
			return 0;
		queue_key(b->queue, sizeof(b->queue), E.sink->queue, part);
		argv[n++] = b->queue;
		argv[n++] = ev->id;
		argv[n++] = ev->tenant;
		argv[n++] = ev->tail;
		argv[n++] = E.sink->id_field;
		argv[n++] = b->order;
		for (int i = 0; i < ev->nsubscribers; i++) {
			if (queue_partition_of(ev->subscribers[i]) != part)
				continue;
			b->order[nsubs++] = ev->ordered[i] ? '1' : '0';
			argv[n++] = ev->subscribers[i];
		}
		b->order[nsubs] = '\0';
		if (nsubs == 0)
			return 0;
		*nkeys = 1;
		*script = E.deliver_script;
		break;
	case STAGE_LISTENER:
		if (!ev->listen || !E.listener || queue_partition_of(ev->id) != part)
			return 0;
		queue_key(b->queue, sizeof(b->queue), E.listener->queue, part);
		argv[n++] = b->queue;
		argv[n++] = ev->id;
		argv[n++] = ev->tenant;
		argv[n++] = ev->tail;
		*nkeys = 1;
		*script = E.listen_script;
		break;
	default:
		return 0;
	}
	for (int i = 0; i < n; i++)
		lens[i] = argv[i] == ev->tail ? ev->tail_len : strlen(argv[i]);
	return n;
}

static const char *
stage_source(int script)
{
	return script == E.all_script	    ? publish_all_lua
	       : script == E.script	    ? publish_lua
	       : script == E.deliver_script ? deliver_lua
					    : listen_lua;
}

static void published_cb(void *arg, const redisReply *r, int status);

/* The queue steps (2 and 3) go out together, right when step 1
 * answered: a queue's calls then leave in the order of the events' step 1
 * replies - the stream's order - whichever nodes the queues live on.
 * Returns how many were sent; *failed when one could not be. */
static int
publish_queues(struct tr_event_out *ev, bool *failed)
{
	struct stage_bufs b;
	const char *argv[8 + TR_MAX_SUBSCRIBERS];
	size_t lens[8 + TR_MAX_SUBSCRIBERS];
	int nkeys = 0, script = -1, n, sent = 0;

	for (int stage = STAGE_SINK; stage < STAGE_DONE; stage++)
		for (int part = 0; part < queue_partitions(); part++) {
			n = stage_argv(ev, stage, part, &b, &nkeys, &script, argv, lens);
			if (n == 0)
				continue;
			if (tr_redis_script_call(script, published_cb, ev, nkeys, n, argv, lens) ==
			    TR_OK)
				sent++;
			else
				*failed = true;
		}
	return sent;
}

static void
published_cb(void *arg, const redisReply *r, int status)
{
	struct tr_event_out *ev = arg;
	bool ok = status == TR_OK && r->type == REDIS_REPLY_STRING;

	if (status == TR_OK && r->type == REDIS_REPLY_ERROR &&
	    strncmp(r->str, "NOSCRIPT", 8) == 0) {
		tr_redis_script_reset(E.script);
		tr_redis_script_reset(E.all_script);
		tr_redis_script_reset(E.deliver_script);
		tr_redis_script_reset(E.listen_script);
	}
	if (ev->stage == STAGE_ALL) {
		if (ok)
			snprintf(ev->id, sizeof(ev->id), "%.*s", (int)r->len, r->str);
	} else if (ev->stage == STAGE_STREAM) {
		if (ok) {
			snprintf(ev->id, sizeof(ev->id), "%.*s", (int)r->len, r->str);
			ev->stage = STAGE_SINK;
			ev->failed = false;
			ev->pending = publish_queues(ev, &ev->failed);
			if (ev->pending > 0)
				return; /* their replies finish it */
			ok = !ev->failed;
		}
	} else {
		ev->failed = ev->failed || !ok;
		if (--ev->pending > 0)
			return;
		ok = !ev->failed;
	}
	if (ok) {
		E.published++;
		if (tr_is_object_id(ev->outbox_id)) {
			if (E.ndelete == E.cap_delete) {
				int cap = E.cap_delete ? E.cap_delete * 2 : 64;
				void *n = realloc(E.to_delete, (size_t)cap * sizeof(*E.to_delete));
				if (n) {
					E.to_delete = n;
					E.cap_delete = cap;
				}
			}
			if (E.ndelete < E.cap_delete)
				memcpy(E.to_delete[E.ndelete++], ev->outbox_id, 25);
			delete_flush();
		}
	} else if (tr_is_object_id(ev->outbox_id)) {
		tr_warn("events: publish failed; the relay will retry from the outbox");
	} else {
		tr_error("events: an event of tenant %s on %s was lost (no outbox, no Redis)",
			 ev->tenant, ev->topic);
	}
	free(ev->tail);
	free(ev);
}

static int
publish_async(struct tr_event_out *ev)
{
	struct stage_bufs b;
	const char *argv[STAGE_MAX_ARGS];
	size_t lens[STAGE_MAX_ARGS];
	int nkeys = 0, script = -1;
	bool all = !E.cfg->redis_cluster;
	int n = stage_argv(ev, all ? STAGE_ALL : STAGE_STREAM, 0, &b, &nkeys, &script, argv, lens);

	if (n == 0)
		return TR_EINVALID;
	ev->stage = all ? STAGE_ALL : STAGE_STREAM;
	return all ? tr_redis_script_call_single_only(script, published_cb, ev, nkeys, n, argv,
						      lens)
		   : tr_redis_script_call(script, published_cb, ev, nkeys, n, argv, lens);
}

void
tr_events_publish(struct tr_event_out *list)
{
	for (struct tr_event_out *ev = list, *next; ev; ev = next) {
		next = ev->next;
		ev->next = NULL;
		if (publish_async(ev) != TR_OK)
			published_cb(ev, NULL, TR_EUNAVAILABLE);
	}
}

void
tr_events_leave(struct tr_event_out *list)
{
	for (struct tr_event_out *ev = list, *next; ev; ev = next) {
		next = ev->next;
		free(ev->tail);
		free(ev);
	}
}

/* Published records leave the outbox in batches, on a worker. */
static void
delete_work_cb(uv_work_t *w)
{
	mongoc_client_t *client = tr_dbpool_pop();
	mongoc_database_t *db = tr_dbpool_database(client);
	mongoc_collection_t *coll = mongoc_database_get_collection(db, OUTBOX);
	bson_t filter = BSON_INITIALIZER, in, ids;
	char key[16];
	const char *k;
	(void)w;

	BSON_APPEND_DOCUMENT_BEGIN(&filter, "_id", &in);
	BSON_APPEND_ARRAY_BEGIN(&in, "$in", &ids);
	for (int i = 0; i < E.ndeleting; i++) {
		bson_oid_t oid;
		bson_oid_init_from_string(&oid, E.deleting[i]);
		bson_uint32_to_string((uint32_t)i, &k, key, sizeof(key));
		BSON_APPEND_OID(&ids, k, &oid);
	}
	bson_append_array_end(&in, &ids);
	bson_append_document_end(&filter, &in);
	/* a failure leaves them to the relay, which publishes idempotently */
	mongoc_collection_delete_many(coll, &filter, NULL, NULL, NULL);
	bson_destroy(&filter);
	mongoc_collection_destroy(coll);
	mongoc_database_destroy(db);
	tr_dbpool_push(client);
}

static void
delete_after_cb(uv_work_t *w, int status)
{
	(void)w;
	(void)status;
	free(E.deleting);
	E.deleting = NULL;
	E.ndeleting = 0;
	E.delete_busy = false;
	delete_flush();
}

static void
delete_flush(void)
{
	if (E.delete_busy || E.ndelete == 0 || !E.started)
		return;
	int n = E.ndelete < DELETE_BATCH ? E.ndelete : DELETE_BATCH;
	E.deleting = malloc((size_t)n * sizeof(*E.deleting));
	if (!E.deleting)
		return;
	memcpy(E.deleting, E.to_delete, (size_t)n * sizeof(*E.deleting));
	memmove(E.to_delete, E.to_delete + n, (size_t)(E.ndelete - n) * sizeof(*E.to_delete));
	E.ndelete -= n;
	E.ndeleting = n;
	E.delete_busy = true;
	if (uv_queue_work(E.loop, &E.delete_work, delete_work_cb, delete_after_cb) != 0) {
		free(E.deleting);
		E.deleting = NULL;
		E.delete_busy = false;
	}
}

/* ---- the relay (worker thread): outbox records nobody published ---- */

static bool
relay_publish_sync(struct tr_event_out *ev)
{
	struct stage_bufs b;
	char nk[4];
	const char *argv[3 + STAGE_MAX_ARGS] = {"EVAL", NULL, nk};
	size_t lens[3 + STAGE_MAX_ARGS];
	int n, nkeys, script;
	bool all;

	if (!E.cfg)
		return false;	     /* a command: the relay of a running server publishes it */
	all = !E.cfg->redis_cluster; /* one call, as publish_async */
	for (int stage = all ? STAGE_ALL : STAGE_STREAM; stage < (all ? STAGE_ALL + 1 : STAGE_DONE);
	     stage++)
		for (int part = 0; part < (stage < STAGE_SINK || all ? 1 : queue_partitions());
		     part++) {
			n = stage_argv(ev, stage, part, &b, &nkeys, &script, argv + 3, lens + 3);
			if (n == 0)
				continue;
			snprintf(nk, sizeof(nk), "%d", nkeys);
			argv[1] = stage_source(script);
			lens[0] = 4;
			lens[1] = strlen(argv[1]);
			lens[2] = strlen(nk);
			redisReply *r = all ? tr_kv_command_single_only(n + 3, argv, lens)
					    : tr_kv_command(n + 3, argv, lens);
			bool ok = r && r->type == REDIS_REPLY_STRING;
			if (ok && (stage == STAGE_STREAM || stage == STAGE_ALL))
				snprintf(ev->id, sizeof(ev->id), "%.*s", (int)r->len, r->str);
			if (r)
				freeReplyObject(r);
			if (!ok)
				return false;
		}
	return true;
}

void
tr_events_flush(struct tr_event_out *list)
{
	mongoc_client_t *client = NULL;
	mongoc_collection_t *coll = NULL;
	mongoc_database_t *db = NULL;

	while (list) {
		struct tr_event_out *ev = list;
		list = ev->next;
		if (relay_publish_sync(ev) && tr_is_object_id(ev->outbox_id)) {
			bson_oid_t oid;
			if (!client) {
				client = tr_dbpool_pop();
				db = tr_dbpool_database(client);
				coll = mongoc_database_get_collection(db, OUTBOX);
			}
			bson_oid_init_from_string(&oid, ev->outbox_id);
			bson_t *del = BCON_NEW("_id", BCON_OID(&oid));
			mongoc_collection_delete_one(coll, del, NULL, NULL, NULL);
			bson_destroy(del);
		}
		free(ev->tail);
		free(ev);
	}
	if (client) {
		mongoc_collection_destroy(coll);
		mongoc_database_destroy(db);
		tr_dbpool_push(client);
	}
}

static void
relay_work_cb(uv_work_t *w)
{
	mongoc_client_t *client = tr_dbpool_pop();
	mongoc_database_t *db = tr_dbpool_database(client);
	mongoc_collection_t *coll = mongoc_database_get_collection(db, OUTBOX);
	bson_t *filter, *opts;
	const bson_t *doc;
	mongoc_cursor_t *cur;
	(void)w;

	filter = BCON_NEW("created_at", "{", "$lt",
			  BCON_DATE_TIME(tr_now_ms() - E.cfg->outbox_grace_ms), "}");
	opts = BCON_NEW("sort", "{", "_id", BCON_INT32(1), "}", "limit", BCON_INT64(RELAY_BATCH));
	cur = mongoc_collection_find_with_opts(coll, filter, opts, NULL);
	while (mongoc_cursor_next(cur, &doc)) {
		struct tr_event_out ev = {0};
		bson_oid_t oid;
		bson_iter_t it;
		const char *tail = NULL;
		uint32_t tlen = 0;
		if (bson_iter_init_find(&it, doc, "_id") && BSON_ITER_HOLDS_OID(&it)) {
			bson_oid_copy(bson_iter_oid(&it), &oid);
			bson_oid_to_string(&oid, ev.outbox_id);
		}
		if (bson_iter_init_find(&it, doc, "tenant_id") && BSON_ITER_HOLDS_OID(&it))
			bson_oid_to_string(bson_iter_oid(&it), ev.tenant);
		if (bson_iter_init_find(&it, doc, "topic") && BSON_ITER_HOLDS_UTF8(&it))
			snprintf(ev.topic, sizeof(ev.topic), "%s", bson_iter_utf8(&it, NULL));
		if (bson_iter_init_find(&it, doc, "owner") && BSON_ITER_HOLDS_UTF8(&it))
			snprintf(ev.owner, sizeof(ev.owner), "%s", bson_iter_utf8(&it, NULL));
		if (bson_iter_init_find(&it, doc, "tail") && BSON_ITER_HOLDS_UTF8(&it))
			tail = bson_iter_utf8(&it, &tlen);
		ev.listen = bson_iter_init_find(&it, doc, "listen") && BSON_ITER_HOLDS_BOOL(&it) &&
			    bson_iter_bool(&it);
		bson_iter_t arr;
		if (bson_iter_init_find(&it, doc, "hooks") && BSON_ITER_HOLDS_ARRAY(&it) &&
		    bson_iter_recurse(&it, &arr))
			while (ev.nsubscribers < TR_MAX_SUBSCRIBERS && bson_iter_next(&arr))
				if (BSON_ITER_HOLDS_UTF8(&arr) &&
				    tr_is_object_id(bson_iter_utf8(&arr, NULL)))
					memcpy(ev.subscribers[ev.nsubscribers++],
					       bson_iter_utf8(&arr, NULL), 25);
		/* ordered[i] says whether hooks[i] keeps event order (absent in
		 * records written before: none did) */
		if (bson_iter_init_find(&it, doc, "ordered") && BSON_ITER_HOLDS_ARRAY(&it) &&
		    bson_iter_recurse(&it, &arr))
			for (int i = 0; i < ev.nsubscribers && bson_iter_next(&arr); i++)
				ev.ordered[i] = BSON_ITER_HOLDS_BOOL(&arr) && bson_iter_bool(&arr);
		if (!ev.outbox_id[0] || !ev.tenant[0] || !ev.topic[0] || !tail)
			continue; /* not written by tr_emit */
		ev.tail = (char *)tail;
		ev.tail_len = tlen;
		if (!relay_publish_sync(&ev))
			break; /* Redis is down: the next sweep retries */
		atomic_fetch_add(&E.relayed, 1);
		bson_t *del = BCON_NEW("_id", BCON_OID(&oid));
		mongoc_collection_delete_one(coll, del, NULL, NULL, NULL);
		bson_destroy(del);
	}
	mongoc_cursor_destroy(cur);
	bson_destroy(filter);
	bson_destroy(opts);
	mongoc_collection_destroy(coll);
	mongoc_database_destroy(db);
	tr_dbpool_push(client);
}

static void
relay_after_cb(uv_work_t *w, int status)
{
	(void)w;
	(void)status;
	E.relay_busy = false;
}

static void
relay_timer_cb(uv_timer_t *t)
{
	(void)t;
	if (E.relay_busy || !tr_health_db_up() || !tr_redis_up())
		return;
	E.relay_busy = true;
	if (uv_queue_work(E.loop, &E.relay_work, relay_work_cb, relay_after_cb) != 0)
		E.relay_busy = false;
}

/* ---- fan-out: messages from every process ---- */

static void
on_message(const char *channel, const char *payload, size_t len)
{
	if (strcmp(channel, EVENTS_CHANNEL) == 0 ||
	    strncmp(channel, EVENTS_SHARD_PREFIX, sizeof(EVENTS_SHARD_PREFIX) - 1) == 0) {
		/* tenant \n topic \n owner \n id \n tail */
		const char *f[5];
		size_t flen[5];
		const char *p = payload, *end = payload + len;
		for (int i = 0; i < 4; i++) {
			const char *nl = memchr(p, '\n', (size_t)(end - p));
			if (!nl)
				return;
			f[i] = p;
			flen[i] = (size_t)(nl - p);
			p = nl + 1;
		}
		f[4] = p;
		flen[4] = (size_t)(end - p);
		tr_ws_event(f[0], flen[0], f[1], flen[1], f[2], flen[2], f[3], flen[3], f[4],
			    flen[4]);
	} else if (strcmp(channel, TR_REVOKE_CHANNEL) == 0) {
		/* tenant:session */
		const char *colon = memchr(payload, ':', len);
		char tid[25], sid[65];
		if (!colon || colon - payload != 24 || len - 25 >= sizeof(sid))
			return;
		memcpy(tid, payload, 24);
		tid[24] = '\0';
		memcpy(sid, colon + 1, len - 25);
		sid[len - 25] = '\0';
		tr_auth_evict(tid, NULL, sid);
		tr_ws_revoked(tid, sid);
	}
}

void
tr_events_register(const struct tr_config *cfg)
{
	E.cfg = cfg;
	E.script = tr_redis_script_register(publish_lua);
	E.all_script = tr_redis_script_register(publish_all_lua);
	E.deliver_script = tr_redis_script_register(deliver_lua);
	E.listen_script = tr_redis_script_register(listen_lua);
	for (size_t m = 0; m < tr_nmodules && !E.sink; m++)
		E.sink = tr_modules[m]->event_sink;
	for (size_t m = 0; m < tr_nmodules && !E.listener; m++)
		E.listener = tr_modules[m]->event_listener;
}

void
tr_events_start(uv_loop_t *loop)
{
	/* Revocations stay on a classic channel in cluster mode too: every
	 * process's auth cache needs every tenant's revocations (a sharded
	 * channel per slot would only regroup the same traffic), they are
	 * rare, and a classic PUBLISH reaches the subscribers of every node
	 * (the session scripts and tr_kv_commandf publish them so). */
	static const char *const classic[] = {EVENTS_CHANNEL, TR_REVOKE_CHANNEL};
	static const char *const classic_cluster[] = {TR_REVOKE_CHANNEL};
	uint64_t every = (uint64_t)E.cfg->outbox_grace_ms / 2;

	E.loop = loop;
	E.started = true;
	tr_metrics_add_source(render_metrics);
	if (E.cfg->redis_cluster)
		tr_redis_subscribe(classic_cluster, 1, EVENTS_SHARD_PREFIX, on_message,
				   tr_ws_pubsub_state);
	else
		tr_redis_subscribe(classic, 2, NULL, on_message, tr_ws_pubsub_state);
	uv_timer_init(loop, &E.relay_timer);
	uv_timer_start(&E.relay_timer, relay_timer_cb, every, every < 100 ? 100 : every);
}

void
tr_events_stop(void)
{
	if (!E.started)
		return;
	E.started = false;
	uv_timer_stop(&E.relay_timer);
	uv_close((uv_handle_t *)&E.relay_timer, NULL);
	free(E.to_delete);
	E.to_delete = NULL;
	E.ndelete = E.cap_delete = 0;
}

static char *
render_metrics(void)
{
	unsigned long long delivered, slow;
	char *text = malloc(1024);

	if (!text)
		return NULL;
	tr_ws_metrics(&delivered, &slow);
	snprintf(text, 1024,
		 "# HELP trellis_events_published_total Events this process published.\n"
		 "# TYPE trellis_events_published_total counter\n"
		 "trellis_events_published_total{path=\"direct\"} %llu\n"
		 "trellis_events_published_total{path=\"relay\"} %llu\n"
		 "# HELP trellis_events_delivered_total Event frames queued to WebSocket clients.\n"
		 "# TYPE trellis_events_delivered_total counter\n"
		 "trellis_events_delivered_total %llu\n"
		 "# HELP trellis_ws_slow_closed_total WebSocket clients closed with 4009.\n"
		 "# TYPE trellis_ws_slow_closed_total counter\n"
		 "trellis_ws_slow_closed_total %llu\n"
		 "# HELP trellis_ws_connections Open WebSocket connections.\n"
		 "# TYPE trellis_ws_connections gauge\n"
		 "trellis_ws_connections %d\n",
		 E.published, (unsigned long long)atomic_load(&E.relayed), delivered, slow,
		 tr_ws_count());
	return text;
}

void
tr_events_metrics(unsigned long long *published, unsigned long long *relayed)
{
	*published = E.published;
	*relayed = atomic_load(&E.relayed);
}
