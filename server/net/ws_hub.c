/* The WebSocket hub (ws.h, ws_int.h): the connections and their tenants,
 * frames and the queues that hold them, the fan-out of events from the
 * channel to the clients that subscribed and may read them, and catching
 * up from the tenant's stream on resume. Loop thread only. */
#include "ws.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "events.h"
#include "perm.h"
#include "redis.h"
#include "stream.h"
#include "util.h"
#include "ws_int.h"

#define REPLAY_PAGE 256 /* events per XRANGE while catching up */

struct ws_hub W;

/* ---- frames and queues ---- */

struct frame *
tr_ws_frame_new(const char *head, size_t hlen, const char *body, size_t blen)
{
	struct frame *f = malloc(sizeof(*f) + LWS_PRE + hlen + blen);

	if (!f)
		return NULL;
	f->refs = 0;
	f->topic = -1;
	f->live = false;
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

struct frame *
tr_ws_fifo_peek(const struct fifo *q, int i)
{
	return q->f[(q->head + i) % q->cap];
}

void
tr_ws_fifo_drop(struct fifo *q, int n)
{
	for (int i = 0; i < n; i++)
		frame_unref(tr_ws_fifo_peek(q, i));
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

void
tr_ws_link_conn(struct ws_conn *c)
{
	c->next = W.head;
	if (W.head)
		W.head->prev = c;
	W.head = c;
	W.count++;
}

void
tr_ws_link_tenant(struct ws_conn *c)
{
	c->bucket = tenant_bucket(c->principal.tenant_hex, 24);
	c->tnext = W.tenants[c->bucket];
	if (c->tnext)
		c->tnext->tprev = c;
	W.tenants[c->bucket] = c;
	c->in_tenant = true;
}

void
tr_ws_unlink_conn(struct ws_conn *c)
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
	tr_ws_fifo_drop(&c->q, c->q.len);
	tr_ws_fifo_drop(&c->pend, c->pend.len);
	free(c->rx);
	free(c->perms);
	free(c);
}

/* A closed connection is freed once nothing refers to it: no pending Redis
 * call (checking) and not on the flush list (dirty). */
void
tr_ws_conn_free(struct ws_conn *c)
{
	if (!c->checking && !c->dirty)
		conn_free_now(c);
}

/* Sends what is queued, then closes with code. */
void
tr_ws_close_with(struct ws_conn *c, int code, const char *reason)
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
	tr_ws_fifo_drop(&c->q, c->q.len);
	tr_ws_fifo_drop(&c->pend, c->pend.len);
	W.slow_closed++;
	tr_ws_close_with(c, 4009, "too slow; resume to catch up");
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
		uv_check_start(&W.flush, tr_ws_flush_cb);
		W.flush_on = true;
	}
}

void
tr_ws_enqueue(struct ws_conn *c, struct frame *f, bool force)
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

int
tr_ws_topic_index(const char *name, size_t len)
{
	return tr_topic_find(name, len);
}

/* May this connection see the event? Its tenant is already matched. */
static bool
allowed(const struct ws_conn *c, const struct frame *f)
{
	return tr_event_visible(f->topic, f->owner, c->subscribed, c->own_only,
				c->principal.user_hex);
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
		tr_ws_enqueue(c, f, force);
		W.delivered++;
	}
}

/* ---- catching up: the stream after c->last, then live ---- */

static void
replay_done(struct ws_conn *c)
{
	c->replaying = false;
	c->replay_more = false;
	for (int i = 0; i < c->pend.len && c->state == WS_READY; i++)
		offer(c, tr_ws_fifo_peek(&c->pend, i), true);
	tr_ws_fifo_drop(&c->pend, c->pend.len);
}

/* An event frame of an XRANGE entry (stream.h reads it). */
static struct frame *
frame_from_entry(const redisReply *e)
{
	static const char head[] = "{\"type\":\"event\",\"id\":\"";
	struct tr_stream_entry entry;
	char prefix[96];
	struct frame *f;

	if (!tr_stream_entry_parse(e, &entry))
		return NULL;
	int n =
	    snprintf(prefix, sizeof(prefix), "%s%.*s\",", head, (int)entry.id_len, entry.id_str);
	f = tr_ws_frame_new(prefix, (size_t)n, entry.tail, entry.tail_len);
	if (!f)
		return NULL;
	f->topic = entry.topic;
	f->id = entry.id;
	memcpy(f->owner, entry.owner, sizeof(f->owner));
	return f;
}

static void
replay_cb(void *arg, const redisReply *r, int status)
{
	struct ws_conn *c = arg;

	c->checking = false;
	if (!c->wsi) {
		tr_ws_conn_free(c);
		return;
	}
	if (c->state != WS_READY)
		return;
	if (status != TR_OK || r->type != REDIS_REPLY_ARRAY) {
		tr_ws_send_error(c, "unavailable",
				 "events could not be read; reconnect and resume");
		tr_ws_close_with(c, 1011, "reconnect and resume");
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
		tr_ws_replay_page(c);
	else
		c->replay_more = true; /* continued as the client reads */
}

void
tr_ws_replay_page(struct ws_conn *c)
{
	char key[64], start[64], count[16];
	const char *argv[6] = {"XRANGE", key, start, "+", "COUNT", count};

	c->replay_more = false;
	snprintf(key, sizeof(key), "t:{%s}:events", c->principal.tenant_hex);
	snprintf(start, sizeof(start), "(%llu-%llu", c->last.ms, c->last.seq);
	snprintf(count, sizeof(count), "%d", REPLAY_PAGE);
	c->checking = true;
	if (tr_redis_command(replay_cb, c, 6, argv, NULL) != TR_OK) {
		c->checking = false;
		tr_ws_send_error(c, "unavailable",
				 "events could not be read; reconnect and resume");
		tr_ws_close_with(c, 1011, "reconnect and resume");
	}
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
	if (!first || (t = tr_ws_topic_index(topic, topic_len)) < 0)
		return;
	for (struct ws_conn *c = first; c; c = c->tnext) {
		if (c->state != WS_READY || memcmp(c->principal.tenant_hex, tid, 24) != 0)
			continue;
		if (!f) {
			int n =
			    snprintf(prefix, sizeof(prefix), "%s%.*s\",", head, (int)id_len, id);
			f = tr_ws_frame_new(prefix, (size_t)n, tail, tail_len);
			if (!f)
				return;
			f->topic = t;
			f->id = evid;
			f->live = true;
			tr_owners_parse(owner, owner_len, f->owner);
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
			tr_ws_send_error(c, "session-ended",
					 "the session has ended; sign in again");
			tr_ws_close_with(c, 4001, "session ended");
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
		tr_ws_send_error(c, "unavailable",
				 "live events were interrupted; reconnect and resume");
		tr_ws_close_with(c, 1012, "reconnect and resume");
	}
}

void
tr_ws_register(void)
{
	W.resume_script = tr_redis_script_register(tr_stream_bounds_lua);
}

void
tr_ws_init(uv_loop_t *loop, const struct tr_config *cfg)
{
	W.loop = loop;
	W.cfg = cfg;
	uv_check_init(loop, &W.flush);
	uv_unref((uv_handle_t *)&W.flush);
	if (cfg->role_ws)
		tr_ws_report_start();
}

void
tr_ws_shutdown(void)
{
	if (W.stopping)
		return;
	W.stopping = true;
	tr_ws_report_stop();
	for (struct ws_conn *c = W.head; c; c = c->next)
		tr_ws_close_with(c, 1001, "server going away");
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
