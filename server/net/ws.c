#include "ws.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth.h"
#include "events.h"
#include "http.h"
#include "json.h"
#include "log.h"
#include "perm.h"
#include "redis.h"
#include "util.h"

#define WS_PATH "/v1/ws"
#define REPLAY_PAGE 256	    /* events per XRANGE while catching up */
#define TENANT_BUCKETS 1024 /* connections are found by tenant */
#define WRITE_BATCH 16384   /* bytes of queued frames sent in one write */

/* A frame to send, shared by every connection it goes to. Event frames
 * carry what delivery filters on. */
struct frame {
	int refs;
	int topic; /* -1: not an event */
	struct tr_evid id;
	char owner[25];
	size_t len;
	unsigned char data[]; /* LWS_PRE headroom, then the payload */
};

/* A FIFO of frame pointers that grows up to the send-queue bound. */
struct fifo {
	struct frame **f;
	int cap, head, len;
};

enum ws_state { WS_AWAIT_AUTH, WS_AUTHING, WS_READY, WS_CLOSING };

/* One connection. Owned by the loop thread. While a Redis call for it is
 * pending, `checking` is set; if the socket closes meanwhile, wsi is
 * cleared and the callback frees it. */
struct ws_conn {
	struct lws *wsi;
	enum ws_state state;
	struct tr_principal principal;
	char *perms;
	unsigned subscribed; /* bit per topic */
	unsigned own_only;   /* bit per topic: only the user's own records */
	long exp;
	struct fifo q;	     /* frames to send */
	struct fifo pend;    /* live events that arrived while catching up */
	struct tr_evid last; /* the newest event this client has been given */
	struct tr_evid resume;
	bool has_resume;
	bool replaying;	     /* catching up from the stream; live events wait */
	bool replay_more;    /* another page to read once the queue drains */
	bool replay_waiting; /* resuming: catch-up waits for the first subscribe */
	bool revoked;
	int close_code; /* to send once the queue is empty */
	bool close_sent;
	char close_reason[64];
	char *rx;
	size_t rx_len;
	bool checking;
	double tokens; /* frames the client may still send (rate limit) */
	uint64_t refill_ms, rate_error_ms;
	struct ws_conn *prev, *next;   /* every connection */
	struct ws_conn *tprev, *tnext; /* its tenant's connections */
	bool in_tenant;
	unsigned bucket;
	bool dirty; /* has frames for the next flush */
	struct ws_conn *dnext;
};

static struct {
	uv_loop_t *loop;
	const struct tr_config *cfg;
	struct ws_conn *head;
	struct ws_conn *tenants[TENANT_BUCKETS];
	int count;
	bool stopping;
	int resume_script;
	unsigned long long delivered, slow_closed;
	unsigned char batch[LWS_PRE + WRITE_BATCH];
	struct ws_conn *dirty; /* connections with frames to write */
	uv_check_t flush;
	bool flush_on;
} W;

/* KEYS[1] the tenant's stream. Returns {last generated id, oldest id still
 * held ("" when none)}; {"0-0", ""} when the stream does not exist.
 * (Redis reports trimming in no other field: max-deleted-entry-id moves
 * only with XDEL.) */
static const char resume_lua[] =
    "if redis.call('EXISTS', KEYS[1]) == 0 then return {'0-0', ''} end\n"
    "local info = redis.call('XINFO', 'STREAM', KEYS[1])\n"
    "local last, first = '0-0', ''\n"
    "for i = 1, #info, 2 do\n"
    "  if info[i] == 'last-generated-id' then last = info[i + 1] end\n"
    "  if info[i] == 'first-entry' and type(info[i + 1]) == 'table' then\n"
    "    first = info[i + 1][1]\n"
    "  end\n"
    "end\n"
    "return {last, first}\n";

static void flush_cb(uv_check_t *h);

/* ---- frames and queues ---- */

static struct frame *
frame_new(const char *head, size_t hlen, const char *body, size_t blen)
{
	struct frame *f = malloc(sizeof(*f) + LWS_PRE + hlen + blen);

	if (!f)
		return NULL;
	f->refs = 0;
	f->topic = -1;
	f->owner[0] = '\0';
	f->id.ms = f->id.seq = 0;
	f->len = hlen + blen;
	memcpy(f->data + LWS_PRE, head, hlen);
	memcpy(f->data + LWS_PRE + hlen, body, blen);
	return f;
}

static void
frame_unref(struct frame *f)
{
	if (--f->refs <= 0)
		free(f);
}

static bool
fifo_push(struct fifo *q, struct frame *f, int bound)
{
	if (q->len == q->cap) {
		int cap = q->cap ? q->cap * 2 : 8;
		if (cap > bound)
			cap = bound;
		if (q->len >= cap)
			return false;
		struct frame **n = malloc((size_t)cap * sizeof(*n));
		if (!n)
			return false;
		for (int i = 0; i < q->len; i++)
			n[i] = q->f[(q->head + i) % q->cap];
		free(q->f);
		q->f = n;
		q->cap = cap;
		q->head = 0;
	}
	q->f[(q->head + q->len) % q->cap] = f;
	q->len++;
	f->refs++;
	return true;
}

static struct frame *
fifo_peek(const struct fifo *q, int i)
{
	return q->f[(q->head + i) % q->cap];
}

static void
fifo_drop(struct fifo *q, int n)
{
	for (int i = 0; i < n; i++)
		frame_unref(fifo_peek(q, i));
	q->head = q->cap ? (q->head + n) % q->cap : 0;
	q->len -= n;
	if (q->len == 0) { /* an idle connection keeps no buffer */
		free(q->f);
		q->f = NULL;
		q->cap = q->head = 0;
	}
}

/* ---- connections ---- */

static unsigned
tenant_bucket(const char *tid, size_t len)
{
	unsigned h = 2166136261u;
	for (size_t i = 0; i < len; i++)
		h = (h ^ (unsigned char)tid[i]) * 16777619u;
	return h % TENANT_BUCKETS;
}

static void
link_conn(struct ws_conn *c)
{
	c->next = W.head;
	if (W.head)
		W.head->prev = c;
	W.head = c;
	W.count++;
}

static void
link_tenant(struct ws_conn *c)
{
	c->bucket = tenant_bucket(c->principal.tenant_hex, 24);
	c->tnext = W.tenants[c->bucket];
	if (c->tnext)
		c->tnext->tprev = c;
	W.tenants[c->bucket] = c;
	c->in_tenant = true;
}

static void
unlink_conn(struct ws_conn *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else if (W.head == c)
		W.head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->prev = c->next = NULL;
	W.count--;
	if (c->in_tenant) {
		if (c->tprev)
			c->tprev->tnext = c->tnext;
		else
			W.tenants[c->bucket] = c->tnext;
		if (c->tnext)
			c->tnext->tprev = c->tprev;
		c->tprev = c->tnext = NULL;
		c->in_tenant = false;
	}
}

static void
conn_free_now(struct ws_conn *c)
{
	fifo_drop(&c->q, c->q.len);
	fifo_drop(&c->pend, c->pend.len);
	free(c->rx);
	free(c->perms);
	free(c);
}

/* A closed connection is freed once nothing refers to it: no pending Redis
 * call (checking) and not on the flush list (dirty). */
static void
conn_free(struct ws_conn *c)
{
	if (!c->checking && !c->dirty)
		conn_free_now(c);
}

/* Sends what is queued, then closes with code. */
static void
close_with(struct ws_conn *c, int code, const char *reason)
{
	if (!c->wsi || c->state == WS_CLOSING)
		return;
	c->close_code = code;
	snprintf(c->close_reason, sizeof(c->close_reason), "%s", reason);
	c->state = WS_CLOSING;
	lws_callback_on_writable(c->wsi);
}

/* The client does not keep up: what it has not read is dropped (it resumes
 * from the last event it got) and it is closed with 4009. */
static void
close_slow(struct ws_conn *c)
{
	if (!c->wsi || c->state == WS_CLOSING)
		return;
	fifo_drop(&c->q, c->q.len);
	fifo_drop(&c->pend, c->pend.len);
	W.slow_closed++;
	close_with(c, 4009, "too slow; resume to catch up");
	/* a client that reads nothing would never take the close frame */
	lws_set_timeout(c->wsi, PENDING_TIMEOUT_CLOSE_SEND, 5);
}

/* Frames are written once per loop turn, after the events of that turn
 * were queued: a client receiving many events gets them in one write. */
static void
mark_dirty(struct ws_conn *c)
{
	if (c->dirty)
		return;
	c->dirty = true;
	c->dnext = W.dirty;
	W.dirty = c;
	if (!W.flush_on) {
		uv_check_start(&W.flush, flush_cb);
		W.flush_on = true;
	}
}

static void
enqueue(struct ws_conn *c, struct frame *f, bool force)
{
	int bound = force ? 2 * W.cfg->ws_send_queue + REPLAY_PAGE : W.cfg->ws_send_queue;

	if (!c->wsi || c->state == WS_CLOSING)
		return;
	if (!fifo_push(&c->q, f, bound)) {
		close_slow(c);
		return;
	}
	mark_dirty(c);
}

static void
send_json(struct ws_conn *c, const bson_t *doc)
{
	size_t len;
	char *json = tr_json_render(doc, &len);
	struct frame *f;

	if (!json)
		return;
	f = frame_new(json, len, "", 0);
	free(json);
	if (!f)
		return;
	enqueue(c, f, true); /* replies are few; events are what is bounded */
	if (f->refs == 0)
		free(f);
}

static void
send_error(struct ws_conn *c, const char *code, const char *message)
{
	bson_t doc = BSON_INITIALIZER;

	BSON_APPEND_UTF8(&doc, "type", "error");
	BSON_APPEND_UTF8(&doc, "code", code);
	BSON_APPEND_UTF8(&doc, "message", message);
	send_json(c, &doc);
	bson_destroy(&doc);
}

static int
topic_index(const char *name, size_t len)
{
	return tr_topic_find(name, len);
}

/* May this connection see the event? Its tenant is already matched. */
static bool
allowed(const struct ws_conn *c, const struct frame *f)
{
	unsigned bit = 1u << f->topic;

	if (!(c->subscribed & bit))
		return false;
	return !(c->own_only & bit) || strcmp(f->owner, c->principal.user_hex) == 0;
}

/* Gives the client an event in stream order: older or repeated ids are
 * skipped (a live copy of a replayed event, or the reverse). */
static void
offer(struct ws_conn *c, struct frame *f, bool force)
{
	if (tr_evid_cmp(&f->id, &c->last) <= 0)
		return;
	c->last = f->id;
	if (allowed(c, f)) {
		enqueue(c, f, force);
		W.delivered++;
	}
}

/* ---- catching up: the stream after c->last, then live ---- */

static void replay_page(struct ws_conn *c);

static void
replay_done(struct ws_conn *c)
{
	c->replaying = false;
	c->replay_more = false;
	for (int i = 0; i < c->pend.len && c->state == WS_READY; i++)
		offer(c, fifo_peek(&c->pend, i), true);
	fifo_drop(&c->pend, c->pend.len);
}

/* An entry of XRANGE: [id, [field, value, ...]] with t (topic), o (owner)
 * and b (the frame after its id). */
static struct frame *
frame_from_entry(const redisReply *e)
{
	static const char head[] = "{\"type\":\"event\",\"id\":\"";
	const redisReply *id, *fields, *t = NULL, *o = NULL, *b = NULL;
	char prefix[96];
	struct frame *f;

	if (e->type != REDIS_REPLY_ARRAY || e->elements != 2)
		return NULL;
	id = e->element[0];
	fields = e->element[1];
	if (id->type != REDIS_REPLY_STRING || fields->type != REDIS_REPLY_ARRAY)
		return NULL;
	for (size_t i = 0; i + 1 < fields->elements; i += 2) {
		const redisReply *k = fields->element[i], *v = fields->element[i + 1];
		if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING || k->len != 1)
			continue;
		if (k->str[0] == 't')
			t = v;
		else if (k->str[0] == 'o')
			o = v;
		else if (k->str[0] == 'b')
			b = v;
	}
	if (!t || !b || id->len > 40)
		return NULL;
	int n = snprintf(prefix, sizeof(prefix), "%s%.*s\",", head, (int)id->len, id->str);
	f = frame_new(prefix, (size_t)n, b->str, b->len);
	if (!f)
		return NULL;
	f->topic = topic_index(t->str, t->len);
	if (f->topic < 0 || !tr_evid_parse(id->str, id->len, &f->id)) {
		free(f);
		return NULL;
	}
	if (o && o->len == 24)
		memcpy(f->owner, o->str, 25);
	return f;
}

static void
replay_cb(void *arg, const redisReply *r, int status)
{
	struct ws_conn *c = arg;

	c->checking = false;
	if (!c->wsi) {
		conn_free(c);
		return;
	}
	if (c->state != WS_READY)
		return;
	if (status != TR_OK || r->type != REDIS_REPLY_ARRAY) {
		send_error(c, "unavailable", "events could not be read; reconnect and resume");
		close_with(c, 1011, "reconnect and resume");
		return;
	}
	for (size_t i = 0; i < r->elements; i++) {
		struct frame *f = frame_from_entry(r->element[i]);
		if (!f)
			continue;
		offer(c, f, true);
		if (f->refs == 0)
			free(f);
	}
	if (r->elements < REPLAY_PAGE)
		replay_done(c);
	else if (c->q.len < W.cfg->ws_send_queue / 2)
		replay_page(c);
	else
		c->replay_more = true; /* continued as the client reads */
}

static void
replay_page(struct ws_conn *c)
{
	char key[64], start[64], count[16];
	const char *argv[6] = {"XRANGE", key, start, "+", "COUNT", count};

	c->replay_more = false;
	snprintf(key, sizeof(key), "t:%s:events", c->principal.tenant_hex);
	snprintf(start, sizeof(start), "(%llu-%llu", c->last.ms, c->last.seq);
	snprintf(count, sizeof(count), "%d", REPLAY_PAGE);
	c->checking = true;
	if (tr_redis_command(replay_cb, c, 6, argv, NULL) != TR_OK) {
		c->checking = false;
		send_error(c, "unavailable", "events could not be read; reconnect and resume");
		close_with(c, 1011, "reconnect and resume");
	}
}

/* ---- subscribe / unsubscribe ---- */

static bool
may_read(const struct ws_conn *c, int t, bool *own)
{
	return tr_topic_may_read(c->perms, t, own);
}

/* Answers with the topics changed and, for subscribe, an error frame
 * listing those refused. */
static void
change_topics(struct ws_conn *c, const bson_t *msg, bool subscribe)
{
	bson_iter_t it, arr;
	bson_t ok = BSON_INITIALIZER, refused = BSON_INITIALIZER, doc = BSON_INITIALIZER, list;
	int nok = 0, nref = 0;

	if (!bson_iter_init_find(&it, msg, "topics") || !BSON_ITER_HOLDS_ARRAY(&it) ||
	    !bson_iter_recurse(&it, &arr)) {
		send_error(c, "bad-message", "topics must be an array of topic names");
		goto out;
	}
	while (bson_iter_next(&arr)) {
		char key[16];
		const char *k;
		uint32_t nlen = 0;
		const char *name = BSON_ITER_HOLDS_UTF8(&arr) ? bson_iter_utf8(&arr, &nlen) : "";
		int t = topic_index(name, nlen);
		bool own = false;
		if (subscribe && (t < 0 || !may_read(c, t, &own))) {
			bson_uint32_to_string((uint32_t)nref++, &k, key, sizeof(key));
			BSON_APPEND_UTF8(&refused, k, name);
			continue;
		}
		if (t < 0)
			continue;
		if (subscribe) {
			c->subscribed |= 1u << t;
			if (own)
				c->own_only |= 1u << t;
			else
				c->own_only &= ~(1u << t);
		} else {
			c->subscribed &= ~(1u << t);
		}
		bson_uint32_to_string((uint32_t)nok++, &k, key, sizeof(key));
		BSON_APPEND_UTF8(&ok, k, name);
	}
	BSON_APPEND_UTF8(&doc, "type", subscribe ? "subscribed" : "unsubscribed");
	BSON_APPEND_ARRAY_BEGIN(&doc, "topics", &list);
	bson_concat(&list, &ok);
	bson_append_array_end(&doc, &list);
	send_json(c, &doc);
	if (nref) {
		bson_reinit(&doc);
		BSON_APPEND_UTF8(&doc, "type", "error");
		BSON_APPEND_UTF8(&doc, "code", "forbidden-topics");
		BSON_APPEND_UTF8(&doc, "message",
				 "these topics do not exist or your role may not read them");
		BSON_APPEND_ARRAY_BEGIN(&doc, "topics", &list);
		bson_concat(&list, &refused);
		bson_append_array_end(&doc, &list);
		send_json(c, &doc);
	}
out:
	bson_destroy(&ok);
	bson_destroy(&refused);
	bson_destroy(&doc);
}

/* ---- auth: token, session, then the resume point ---- */

struct auth_call {
	struct ws_conn *conn;
	bson_t *topics_msg; /* the auth frame, for its "topics" (a pointer:
			     * bson_t needs 128-byte alignment calloc does not give) */
	bool has_topics;
};

static void
auth_call_free(struct auth_call *ac)
{
	bson_destroy(ac->topics_msg);
	free(ac);
}

/* Ends an auth that cannot complete now. */
static void
auth_unavailable(struct ws_conn *c)
{
	send_error(c, "unavailable", "the event service is unavailable; reconnect shortly");
	close_with(c, 1013, "try again later");
}

static void
resume_cb(void *arg, const redisReply *r, int status)
{
	struct auth_call *ac = arg;
	struct ws_conn *c = ac->conn;
	struct tr_evid last = {0, 0}, first = {0, 0};
	bool held = false; /* the stream holds events (first is the oldest) */
	const char *resync = NULL;
	bson_t doc = BSON_INITIALIZER;
	char last_s[48];

	c->checking = false;
	if (status == TR_OK && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0)
		tr_redis_script_reset(W.resume_script);
	if (!c->wsi) {
		conn_free(c);
		goto out;
	}
	if (c->state != WS_AUTHING)
		goto out;
	if (c->revoked) {
		send_error(c, "session-ended", "the session has ended; sign in again");
		close_with(c, 4001, "session ended");
		goto out;
	}
	if (status != TR_OK || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
	    r->element[0]->type != REDIS_REPLY_STRING ||
	    r->element[1]->type != REDIS_REPLY_STRING ||
	    !tr_evid_parse(r->element[0]->str, r->element[0]->len, &last) ||
	    (r->element[1]->len &&
	     !(held = tr_evid_parse(r->element[1]->str, r->element[1]->len, &first)))) {
		auth_unavailable(c);
		goto out;
	}
	c->state = WS_READY;
	c->last = last;
	if (c->has_resume) {
		/* An id the client saw is the oldest held or newer, unless
		 * retention removed what came after it. (Resuming from the
		 * very last trimmed id is told to resync too: conservative.) */
		if (held ? tr_evid_cmp(&c->resume, &first) < 0 : tr_evid_cmp(&c->resume, &last) < 0)
			resync = "events after resume_from are no longer kept";
		else if (tr_evid_cmp(&c->resume, &last) > 0)
			resync = "resume_from is not an event id of this tenant";
		else
			c->last = c->resume;
	}
	/* the token's end ends the connection (4001): clients re-auth */
	long left = c->exp - (long)time(NULL) + TR_JWT_LEEWAY_S;
	lws_set_timer_usecs(c->wsi, (lws_usec_t)(left > 0 ? left : 1) * LWS_US_PER_SEC);
	BSON_APPEND_UTF8(&doc, "type", "ready");
	BSON_APPEND_UTF8(&doc, "user_id", c->principal.user_hex);
	BSON_APPEND_UTF8(&doc, "tenant_id", c->principal.tenant_hex);
	if (last.ms || last.seq) {
		snprintf(last_s, sizeof(last_s), "%llu-%llu", last.ms, last.seq);
		BSON_APPEND_UTF8(&doc, "last_event_id", last_s);
	} else {
		BSON_APPEND_NULL(&doc, "last_event_id");
	}
	send_json(c, &doc);
	if (resync) {
		bson_reinit(&doc);
		BSON_APPEND_UTF8(&doc, "type", "resync_required");
		BSON_APPEND_UTF8(&doc, "reason", resync);
		send_json(c, &doc);
	}
	if (ac->has_topics)
		change_topics(c, ac->topics_msg, true);
	/* Live events wait in pend until the stream after c->last is read. A
	 * resuming client that named no topics yet catches up after its
	 * first subscribe. */
	c->replaying = true;
	if (c->has_resume && !resync && !ac->has_topics)
		c->replay_waiting = true;
	else
		replay_page(c);
out:
	bson_destroy(&doc);
	auth_call_free(ac);
}

static void
auth_gate_cb(void *arg, int status, const struct tr_gate *g)
{
	struct auth_call *ac = arg;
	struct ws_conn *c = ac->conn;
	char key[64];

	c->checking = false;
	if (!c->wsi) { /* closed meanwhile */
		conn_free(c);
		auth_call_free(ac);
		return;
	}
	if (status != TR_OK) {
		auth_unavailable(c);
		auth_call_free(ac);
		return;
	}
	if (c->revoked || !g->session_alive || strcmp(g->user_id, c->principal.user_hex) != 0) {
		send_error(c, "unauthorized", "the session has ended; sign in again");
		close_with(c, 4001, "session ended");
		auth_call_free(ac);
		return;
	}
	c->perms = strdup(g->perms);
	snprintf(key, sizeof(key), "t:%s:events", c->principal.tenant_hex);
	const char *argv[1] = {key};
	c->checking = true;
	if (!c->perms ||
	    tr_redis_script_call(W.resume_script, resume_cb, ac, 1, 1, argv, NULL) != TR_OK) {
		c->checking = false;
		auth_unavailable(c);
		auth_call_free(ac);
	}
}

static void
on_auth(struct ws_conn *c, const bson_t *msg)
{
	bson_iter_t it;
	const char *why = "missing";
	struct auth_call *ac;

	if (!bson_iter_init_find(&it, msg, "token") || !BSON_ITER_HOLDS_UTF8(&it) ||
	    tr_auth_verify_token(bson_iter_utf8(&it, NULL), &c->principal, &why) != 0) {
		send_error(c, "unauthorized", "a valid access token is required");
		close_with(c, 4001, "bad token");
		return;
	}
	if (bson_iter_init_find(&it, msg, "resume_from") && !BSON_ITER_HOLDS_NULL(&it)) {
		uint32_t len = 0;
		const char *s = BSON_ITER_HOLDS_UTF8(&it) ? bson_iter_utf8(&it, &len) : "";
		if (!tr_evid_parse(s, len, &c->resume)) {
			send_error(c, "bad-message",
				   "resume_from must be an event id as sent in event frames");
			close_with(c, 4400, "bad message");
			return;
		}
		c->has_resume = true;
	}
	if (!tr_redis_subscribed()) { /* live events could not reach it */
		auth_unavailable(c);
		return;
	}
	ac = calloc(1, sizeof(*ac));
	if (!ac) {
		close_with(c, 1011, "out of memory");
		return;
	}
	ac->conn = c;
	ac->topics_msg = bson_copy(msg);
	ac->has_topics = bson_iter_init_find(&it, msg, "topics");
	c->exp = c->principal.token_exp; /* for the expiry timer */
	c->state = WS_AUTHING;
	link_tenant(c); /* from now on a revocation reaches it */
	c->checking = true;
	if (tr_auth_gate(&c->principal, auth_gate_cb, ac) != TR_OK) {
		c->checking = false;
		auth_call_free(ac);
		auth_unavailable(c);
	}
}

/* A token bucket per connection: ws_rate frames a second, ws_rate_burst at
 * once. Frames over it are dropped with an error frame (at most one a
 * second). */
static bool
rate_ok(struct ws_conn *c)
{
	uint64_t now = (uint64_t)tr_now_ms();

	if (c->refill_ms == 0) {
		c->tokens = W.cfg->ws_rate_burst;
	} else {
		c->tokens += (double)(now - c->refill_ms) * W.cfg->ws_rate / 1000.0;
		if (c->tokens > W.cfg->ws_rate_burst)
			c->tokens = W.cfg->ws_rate_burst;
	}
	c->refill_ms = now;
	if (c->tokens >= 1) {
		c->tokens -= 1;
		return true;
	}
	if (now - c->rate_error_ms >= 1000) {
		c->rate_error_ms = now;
		send_error(c, "rate-limited", "too many frames; this one was dropped");
	}
	return false;
}

static void
on_message(struct ws_conn *c, const char *text, size_t len)
{
	bson_t msg;
	bson_iter_t it;
	char err[160];
	const char *type;

	if (!rate_ok(c))
		return;
	if (tr_json_parse(text, len, &msg, err, sizeof(err)) != 0) {
		bson_destroy(&msg);
		send_error(c, "bad-message", "frames must be JSON objects");
		close_with(c, 4400, "bad message");
		return;
	}
	type = bson_iter_init_find(&it, &msg, "type") && BSON_ITER_HOLDS_UTF8(&it)
		   ? bson_iter_utf8(&it, NULL)
		   : "";
	if (c->state == WS_AWAIT_AUTH) {
		if (strcmp(type, "auth") == 0) {
			on_auth(c, &msg);
		} else {
			send_error(c, "auth-required",
				   "the first frame must be {\"type\":\"auth\",...}");
			close_with(c, 4001, "auth required");
		}
	} else if (c->state == WS_AUTHING) {
		send_error(c, "busy", "wait for ready before sending more frames");
	} else if (strcmp(type, "ping") == 0) {
		bson_t pong = BSON_INITIALIZER;
		BSON_APPEND_UTF8(&pong, "type", "pong");
		send_json(c, &pong);
		bson_destroy(&pong);
	} else if (strcmp(type, "subscribe") == 0 || strcmp(type, "unsubscribe") == 0) {
		change_topics(c, &msg, type[0] == 's');
		if (c->replay_waiting && type[0] == 's' && c->state == WS_READY) {
			c->replay_waiting = false;
			if (!c->checking)
				replay_page(c);
		}
	} else if (strcmp(type, "auth") == 0) {
		send_error(c, "already-authenticated", "this connection is authenticated");
	} else {
		send_error(c, "unknown-type", "unknown message type");
	}
	bson_destroy(&msg);
}

/* ---- from the event channel ---- */

void
tr_ws_event(const char *tid, size_t tid_len, const char *topic, size_t topic_len, const char *owner,
	    size_t owner_len, const char *id, size_t id_len, const char *tail, size_t tail_len)
{
	static const char head[] = "{\"type\":\"event\",\"id\":\"";
	struct ws_conn *first;
	struct frame *f = NULL;
	struct tr_evid evid;
	char prefix[96];
	int t;

	if (tid_len != 24 || id_len > 40 || !tr_evid_parse(id, id_len, &evid))
		return;
	first = W.tenants[tenant_bucket(tid, tid_len)];
	if (!first || (t = topic_index(topic, topic_len)) < 0)
		return;
	for (struct ws_conn *c = first; c; c = c->tnext) {
		if (c->state != WS_READY || memcmp(c->principal.tenant_hex, tid, 24) != 0)
			continue;
		if (!f) {
			int n =
			    snprintf(prefix, sizeof(prefix), "%s%.*s\",", head, (int)id_len, id);
			f = frame_new(prefix, (size_t)n, tail, tail_len);
			if (!f)
				return;
			f->topic = t;
			f->id = evid;
			if (owner_len == 24) {
				memcpy(f->owner, owner, 24);
				f->owner[24] = '\0';
			}
		}
		if (c->replaying) {
			if (tr_evid_cmp(&evid, &c->last) > 0 &&
			    !fifo_push(&c->pend, f, W.cfg->ws_send_queue))
				close_slow(c);
		} else {
			offer(c, f, false);
		}
	}
	if (f && f->refs == 0)
		free(f);
}

void
tr_ws_revoked(const char *tid, const char *sid)
{
	for (struct ws_conn *c = W.tenants[tenant_bucket(tid, 24)]; c; c = c->tnext) {
		if (strcmp(c->principal.tenant_hex, tid) != 0 ||
		    strcmp(c->principal.session_id, sid) != 0)
			continue;
		if (c->state == WS_AUTHING) {
			c->revoked = true; /* closed when its check returns */
		} else if (c->state == WS_READY) {
			send_error(c, "session-ended", "the session has ended; sign in again");
			close_with(c, 4001, "session ended");
		}
	}
}

void
tr_ws_pubsub_state(bool up)
{
	if (up)
		return;
	/* Events published while the channel is down would be missed: every
	 * client reconnects and resumes from the stream. */
	for (struct ws_conn *c = W.head; c; c = c->next) {
		if (c->state != WS_READY && c->state != WS_AUTHING)
			continue;
		send_error(c, "unavailable", "live events were interrupted; reconnect and resume");
		close_with(c, 1012, "reconnect and resume");
	}
}

void
tr_ws_register(void)
{
	W.resume_script = tr_redis_script_register(resume_lua);
}

void
tr_ws_init(uv_loop_t *loop, const struct tr_config *cfg)
{
	W.loop = loop;
	W.cfg = cfg;
	uv_check_init(loop, &W.flush);
	uv_unref((uv_handle_t *)&W.flush);
}

void
tr_ws_shutdown(void)
{
	if (W.stopping)
		return;
	W.stopping = true;
	for (struct ws_conn *c = W.head; c; c = c->next)
		close_with(c, 1001, "server going away");
}

int
tr_ws_count(void)
{
	return W.count;
}

void
tr_ws_metrics(unsigned long long *delivered, unsigned long long *slow_closed)
{
	*delivered = W.delivered;
	*slow_closed = W.slow_closed;
}

/* ---- writing ---- */

/* A server frame header: FIN + text, then the length (servers do not
 * mask). */
static size_t
frame_header(unsigned char *p, size_t len, unsigned char opcode)
{
	p[0] = (unsigned char)(0x80 | opcode);
	if (len < 126) {
		p[1] = (unsigned char)len;
		return 2;
	}
	if (len < 65536) {
		p[1] = 126;
		p[2] = (unsigned char)(len >> 8);
		p[3] = (unsigned char)len;
		return 4;
	}
	p[1] = 127;
	for (int i = 0; i < 8; i++)
		p[2 + i] = (unsigned char)(len >> (56 - 8 * i));
	return 10;
}

static int
write_close(struct ws_conn *c)
{
	/* The close frame is written raw: lws_close_reason() followed by
	 * returning -1 sent none with libwebsockets 4.1. */
	unsigned char buf[LWS_PRE + 4 + sizeof(c->close_reason)];
	size_t rlen = strlen(c->close_reason);
	if (rlen > 120)
		rlen = 120; /* control frames carry at most 125 bytes */
	buf[LWS_PRE] = 0x88;
	buf[LWS_PRE + 1] = (unsigned char)(2 + rlen);
	buf[LWS_PRE + 2] = (unsigned char)(c->close_code >> 8);
	buf[LWS_PRE + 3] = (unsigned char)(c->close_code & 0xff);
	memcpy(buf + LWS_PRE + 4, c->close_reason, rlen);
	if (lws_write(c->wsi, buf + LWS_PRE, 4 + rlen, LWS_WRITE_RAW) < 0)
		return -1;
	/* Closing the socket now could lose the close frame: if the client is
	 * still sending, unread data makes the kernel reset the connection.
	 * Wait for the client's close (lws answers it and closes), discarding
	 * what arrives, for a few seconds. */
	c->close_code = 0;
	c->close_sent = true;
	lws_set_timeout(c->wsi, PENDING_TIMEOUT_CLOSE_ACK, 3);
	return 0;
}

/* Writes queued frames: several small ones go out in one write, framed
 * here (lws frames one message per write). -1 when the write failed. */
static int
write_queued(struct ws_conn *c)
{
	struct frame *f = fifo_peek(&c->q, 0);
	int n = 1, rc;

	if (f->len + 10 > WRITE_BATCH) {
		rc = lws_write(c->wsi, f->data + LWS_PRE, f->len, LWS_WRITE_TEXT);
	} else {
		unsigned char *p = W.batch + LWS_PRE;
		size_t used = 0;
		n = 0;
		while (n < c->q.len) {
			f = fifo_peek(&c->q, n);
			if (used + f->len + 10 > WRITE_BATCH)
				break;
			used += frame_header(p + used, f->len, 0x1);
			memcpy(p + used, f->data + LWS_PRE, f->len);
			used += f->len;
			n++;
		}
		rc = lws_write(c->wsi, p, used, LWS_WRITE_RAW);
	}
	fifo_drop(&c->q, n);
	if (rc < 0)
		return -1;
	if (c->replay_more && !c->checking && c->state == WS_READY &&
	    c->q.len < W.cfg->ws_send_queue / 2)
		replay_page(c);
	return 0;
}

/* After each loop turn: connections with new frames write them now when
 * their socket takes data (one write, no poll change); the others wait for
 * writability. */
static void
flush_cb(uv_check_t *h)
{
	struct ws_conn *list = W.dirty;
	(void)h;

	W.dirty = NULL;
	while (list) {
		struct ws_conn *c = list;
		list = c->dnext;
		c->dirty = false;
		c->dnext = NULL;
		if (!c->wsi) {
			conn_free(c); /* closed while on the list */
			continue;
		}
		if (c->close_sent)
			continue;
		if (c->q.len && !lws_send_pipe_choked(c->wsi) && write_queued(c) < 0) {
			/* outside lws's callback a failed write cannot close the
			 * socket directly: lws does it at once */
			lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
			continue;
		}
		if (c->q.len || c->close_code)
			lws_callback_on_writable(c->wsi);
	}
	if (!W.dirty && W.flush_on) {
		uv_check_stop(&W.flush);
		W.flush_on = false;
	}
}

static int
on_writeable(struct ws_conn *c)
{
	if (c->close_sent)
		return 0;
	if (c->q.len) {
		if (write_queued(c) < 0)
			return -1;
		if (c->q.len || c->close_code)
			lws_callback_on_writable(c->wsi);
		return 0;
	}
	if (c->close_code)
		return write_close(c);
	return 0;
}

int
tr_ws_callback(struct lws *wsi, enum lws_callback_reasons reason, void **slot, void *in, size_t len)
{
	struct ws_conn *c = *slot;

	switch (reason) {
	case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION: {
		char uri[64];
		if (W.stopping)
			return tr_http_refuse(wsi, 503, "dependency-unavailable",
					      "the server is shutting down");
		if (lws_hdr_copy(wsi, uri, sizeof(uri), WSI_TOKEN_GET_URI) <= 0 ||
		    strcmp(uri, WS_PATH) != 0)
			return tr_http_refuse(wsi, 404, "not-found",
					      "WebSocket connections are served at /v1/ws only");
		if (!W.cfg->role_ws)
			return tr_http_refuse(wsi, 503, "dependency-unavailable",
					      "this server does not serve WebSockets (roles)");
		return 0;
	}
	case LWS_CALLBACK_ESTABLISHED:
		c = calloc(1, sizeof(*c));
		if (!c)
			return -1;
		c->wsi = wsi;
		*slot = c;
		link_conn(c);
		lws_set_timer_usecs(wsi, (lws_usec_t)W.cfg->ws_auth_timeout * LWS_US_PER_SEC);
		return 0;
	case LWS_CALLBACK_RECEIVE:
		if (!c || c->state == WS_CLOSING)
			return 0;
		if (c->rx_len + len > (size_t)W.cfg->ws_max_frame) {
			close_with(c, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, "frame too large");
			return 0;
		}
		if (lws_frame_is_binary(wsi)) {
			send_error(c, "bad-message", "frames must be text");
			close_with(c, 4400, "bad message");
			return 0;
		}
		char *buf = realloc(c->rx, c->rx_len + len + 1);
		if (!buf)
			return -1;
		c->rx = buf;
		memcpy(c->rx + c->rx_len, in, len);
		c->rx_len += len;
		if (lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi)) {
			on_message(c, c->rx, c->rx_len);
			c->rx_len = 0;
			free(c->rx); /* idle connections hold no receive buffer */
			c->rx = NULL;
		}
		return 0;
	case LWS_CALLBACK_SERVER_WRITEABLE:
		return c ? on_writeable(c) : 0;
	case LWS_CALLBACK_TIMER:
		if (!c)
			return 0;
		if (c->state == WS_AWAIT_AUTH || c->state == WS_AUTHING)
			close_with(c, 4008, "no auth in time");
		else if (c->state == WS_READY) {
			send_error(c, "token-expired",
				   "the access token expired; reconnect with a new one");
			close_with(c, 4001, "token expired");
		}
		return 0;
	case LWS_CALLBACK_CLOSED:
		if (c) {
			*slot = NULL;
			unlink_conn(c);
			c->wsi = NULL;
			conn_free(c); /* or the pending callback / the flush does */
		}
		return 0;
	default:
		return 0;
	}
}
