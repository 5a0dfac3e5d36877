/* The WebSocket protocol (ws.h, ws_int.h): the lws callback of an
 * upgraded connection, and the frames a client sends - auth (token,
 * session, then the resume point), subscribe, unsubscribe, ping - with
 * their answers and error frames, under a per-connection rate limit.
 * Loop thread only. */
#include "ws.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth.h"
#include "events.h"
#include "http.h"
#include "json.h"
#include "perm.h"
#include "redis.h"
#include "stream.h"
#include "util.h"
#include "ws_int.h"

#define WS_PATH "/v1/ws"

static void
send_json(struct ws_conn *c, const bson_t *doc)
{
	size_t len;
	char *json = tr_json_render(doc, &len);
	struct frame *f;

	if (!json)
		return;
	f = tr_ws_frame_new(json, len, "", 0);
	free(json);
	if (!f)
		return;
	tr_ws_enqueue(c, f, true); /* replies are few; events are what is bounded */
	if (f->refs == 0)
		free(f);
}

void
tr_ws_send_error(struct ws_conn *c, const char *code, const char *message)
{
	bson_t doc = BSON_INITIALIZER;

	BSON_APPEND_UTF8(&doc, "type", "error");
	BSON_APPEND_UTF8(&doc, "code", code);
	BSON_APPEND_UTF8(&doc, "message", message);
	send_json(c, &doc);
	bson_destroy(&doc);
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
		tr_ws_send_error(c, "bad-message", "topics must be an array of topic names");
		goto out;
	}
	while (bson_iter_next(&arr)) {
		char key[16];
		const char *k;
		uint32_t nlen = 0;
		const char *name = BSON_ITER_HOLDS_UTF8(&arr) ? bson_iter_utf8(&arr, &nlen) : "";
		int t = tr_ws_topic_index(name, nlen);
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
	tr_ws_send_error(c, "unavailable", "the event service is unavailable; reconnect shortly");
	tr_ws_close_with(c, 1013, "try again later");
}

static void
resume_cb(void *arg, const redisReply *r, int status)
{
	struct auth_call *ac = arg;
	struct ws_conn *c = ac->conn;
	struct tr_stream_bounds bounds;
	struct tr_evid last;
	const char *resync = NULL;
	bson_t doc = BSON_INITIALIZER;
	char last_s[48];

	c->checking = false;
	if (status == TR_OK && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0)
		tr_redis_script_reset(W.resume_script);
	if (!c->wsi) {
		tr_ws_conn_free(c);
		goto out;
	}
	if (c->state != WS_AUTHING)
		goto out;
	if (c->revoked) {
		tr_ws_send_error(c, "session-ended", "the session has ended; sign in again");
		tr_ws_close_with(c, 4001, "session ended");
		goto out;
	}
	if (status != TR_OK || !tr_stream_bounds_parse(r, &bounds)) {
		auth_unavailable(c);
		goto out;
	}
	last = bounds.last;
	c->state = WS_READY;
	c->last = last;
	if (c->has_resume) {
		/* An id the client saw is the oldest held or newer, unless
		 * retention removed what came after it. (Resuming from the
		 * very last trimmed id is told to resync too: conservative.) */
		if (bounds.held ? tr_evid_cmp(&c->resume, &bounds.first) < 0
				: tr_evid_cmp(&c->resume, &last) < 0)
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
		tr_ws_replay_page(c);
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
		tr_ws_conn_free(c);
		auth_call_free(ac);
		return;
	}
	if (status != TR_OK) {
		auth_unavailable(c);
		auth_call_free(ac);
		return;
	}
	if (c->revoked || !g->session_alive || strcmp(g->user_id, c->principal.user_hex) != 0) {
		tr_ws_send_error(c, "unauthorized", "the session has ended; sign in again");
		tr_ws_close_with(c, 4001, "session ended");
		auth_call_free(ac);
		return;
	}
	c->perms = strdup(g->perms);
	snprintf(key, sizeof(key), "t:{%s}:events", c->principal.tenant_hex);
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
		tr_ws_send_error(c, "unauthorized", "a valid access token is required");
		tr_ws_close_with(c, 4001, "bad token");
		return;
	}
	if (bson_iter_init_find(&it, msg, "resume_from") && !BSON_ITER_HOLDS_NULL(&it)) {
		uint32_t len = 0;
		const char *s = BSON_ITER_HOLDS_UTF8(&it) ? bson_iter_utf8(&it, &len) : "";
		if (!tr_evid_parse(s, len, &c->resume)) {
			tr_ws_send_error(c, "bad-message",
					 "resume_from must be an event id as sent in event frames");
			tr_ws_close_with(c, 4400, "bad message");
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
		tr_ws_close_with(c, 1011, "out of memory");
		return;
	}
	ac->conn = c;
	ac->topics_msg = bson_copy(msg);
	ac->has_topics = bson_iter_init_find(&it, msg, "topics");
	c->exp = c->principal.token_exp; /* for the expiry timer */
	c->state = WS_AUTHING;
	tr_ws_link_tenant(c); /* from now on a revocation reaches it */
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
		tr_ws_send_error(c, "rate-limited", "too many frames; this one was dropped");
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
		tr_ws_send_error(c, "bad-message", "frames must be JSON objects");
		tr_ws_close_with(c, 4400, "bad message");
		return;
	}
	type = bson_iter_init_find(&it, &msg, "type") && BSON_ITER_HOLDS_UTF8(&it)
		   ? bson_iter_utf8(&it, NULL)
		   : "";
	if (c->state == WS_AWAIT_AUTH) {
		if (strcmp(type, "auth") == 0) {
			on_auth(c, &msg);
		} else {
			tr_ws_send_error(c, "auth-required",
					 "the first frame must be {\"type\":\"auth\",...}");
			tr_ws_close_with(c, 4001, "auth required");
		}
	} else if (c->state == WS_AUTHING) {
		tr_ws_send_error(c, "busy", "wait for ready before sending more frames");
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
				tr_ws_replay_page(c);
		}
	} else if (strcmp(type, "auth") == 0) {
		tr_ws_send_error(c, "already-authenticated", "this connection is authenticated");
	} else {
		tr_ws_send_error(c, "unknown-type", "unknown message type");
	}
	bson_destroy(&msg);
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
		c->lag_max_ms = -1;
		*slot = c;
		tr_ws_link_conn(c);
		lws_set_timer_usecs(wsi, (lws_usec_t)W.cfg->ws_auth_timeout * LWS_US_PER_SEC);
		return 0;
	case LWS_CALLBACK_RECEIVE:
		if (!c || c->state == WS_CLOSING)
			return 0;
		if (c->rx_len + len > (size_t)W.cfg->ws_max_frame) {
			tr_ws_close_with(c, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE, "frame too large");
			return 0;
		}
		if (lws_frame_is_binary(wsi)) {
			tr_ws_send_error(c, "bad-message", "frames must be text");
			tr_ws_close_with(c, 4400, "bad message");
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
		return c ? tr_ws_on_writeable(c) : 0;
	case LWS_CALLBACK_TIMER:
		if (!c)
			return 0;
		if (c->state == WS_AWAIT_AUTH || c->state == WS_AUTHING)
			tr_ws_close_with(c, 4008, "no auth in time");
		else if (c->state == WS_READY) {
			tr_ws_send_error(c, "token-expired",
					 "the access token expired; reconnect with a new one");
			tr_ws_close_with(c, 4001, "token expired");
		}
		return 0;
	case LWS_CALLBACK_CLOSED:
		if (c) {
			*slot = NULL;
			tr_ws_unlink_conn(c);
			c->wsi = NULL;
			tr_ws_conn_free(c); /* or the pending callback / the flush does */
		}
		return 0;
	default:
		return 0;
	}
}
