#include "ws.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth.h"
#include "json.h"
#include "http.h"
#include "log.h"
#include "perm.h"
#include "redis.h"
#include "util.h"

#define WS_PATH "/v1/ws"
#define SWEEP_MS 500 /* how often live connections' sessions are checked */
#define MAX_TOPICS 64

/* Topics a client may subscribe to, and the permission each needs (the
 * ":own" form is enough: delivery filters records later). */
static const struct topic {
	const char *name, *permission;
} topics[] = {
    {"admin.users", "system.users.read"},  {"crm.leads", "crm.leads.read"},
    {"crm.deals", "crm.deals.read"},	   {"crm.clients", "crm.clients.read"},
    {"crm.tasks", "crm.tasks.read"},	   {"crm.claims", "crm.claims.read"},
    {"erp.orders", "erp.orders.read"},	   {"erp.stock", "erp.stock.read"},
    {"erp.invoices", "erp.invoices.read"}, {"erp.shipments", "erp.shipments.read"},
    {"bpm.tasks", "bpm.tasks.read"},
};
#define NTOPICS (sizeof(topics) / sizeof(topics[0]))

struct frame {
	struct frame *next;
	size_t len;
	unsigned char data[]; /* LWS_PRE headroom, then the payload */
};

enum ws_state { WS_AWAIT_AUTH, WS_AUTHING, WS_READY, WS_CLOSING };

/* One connection. Owned by the loop thread. While a Redis check is
 * pending, `checking` is set; if the socket closes meanwhile, wsi is
 * cleared and the callback frees it. */
struct ws_conn {
	struct lws *wsi;
	enum ws_state state;
	struct tr_principal principal;
	char *perms;
	unsigned long long subscribed; /* bit per topic */
	long exp;
	struct frame *q_head, *q_tail;
	int q_len;
	int close_code; /* to send once the queue is empty */
	bool close_sent;
	char close_reason[64];
	char *rx;
	size_t rx_len;
	bool checking;
	struct ws_conn *prev, *next;
};

static struct {
	uv_loop_t *loop;
	const struct tr_config *cfg;
	uv_timer_t sweep;
	struct ws_conn *head;
	int count;
	bool stopping;
} W;

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
}

static void
conn_free(struct ws_conn *c)
{
	for (struct frame *f = c->q_head, *n; f; f = n) {
		n = f->next;
		free(f);
	}
	free(c->rx);
	free(c->perms);
	free(c);
}

/* Queues a text frame; past the queue bound the client is too slow. */
static void
send_json(struct ws_conn *c, const bson_t *doc)
{
	size_t len;
	char *json;
	struct frame *f;

	if (!c->wsi || c->state == WS_CLOSING)
		return;
	if (c->q_len >= W.cfg->ws_send_queue) {
		c->close_code = 4009;
		snprintf(c->close_reason, sizeof(c->close_reason), "too slow; resume to catch up");
		c->state = WS_CLOSING;
		lws_callback_on_writable(c->wsi);
		return;
	}
	json = tr_json_render(doc, &len);
	if (!json)
		return;
	f = malloc(sizeof(*f) + LWS_PRE + len);
	if (f) {
		f->next = NULL;
		f->len = len;
		memcpy(f->data + LWS_PRE, json, len);
		if (c->q_tail)
			c->q_tail->next = f;
		else
			c->q_head = f;
		c->q_tail = f;
		c->q_len++;
		lws_callback_on_writable(c->wsi);
	}
	free(json);
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

static int
topic_index(const char *name)
{
	for (size_t i = 0; i < NTOPICS; i++)
		if (strcmp(topics[i].name, name) == 0)
			return (int)i;
	return -1;
}

/* subscribe / unsubscribe: answers with the topics changed and, for
 * subscribe, an error frame listing those refused. */
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
		const char *name = BSON_ITER_HOLDS_UTF8(&arr) ? bson_iter_utf8(&arr, NULL) : "";
		int t = topic_index(name);
		bool own;
		if (subscribe &&
		    (t < 0 || !tr_permission_check(c->perms, topics[t].permission, &own))) {
			bson_uint32_to_string((uint32_t)nref++, &k, key, sizeof(key));
			BSON_APPEND_UTF8(&refused, k, name);
			continue;
		}
		if (t < 0)
			continue;
		if (subscribe)
			c->subscribed |= 1ull << t;
		else
			c->subscribed &= ~(1ull << t);
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

struct auth_call {
	struct ws_conn *conn;
	bson_t *topics_msg; /* the auth frame, for its "topics" (a pointer:
			     * bson_t needs 128-byte alignment calloc does not give) */
	bool has_topics;
};

static void
auth_gate_cb(void *arg, int status, const struct tr_gate *g)
{
	struct auth_call *ac = arg;
	struct ws_conn *c = ac->conn;
	bson_t doc = BSON_INITIALIZER;

	c->checking = false;
	if (!c->wsi) { /* closed meanwhile */
		conn_free(c);
		goto out;
	}
	if (status != TR_OK) {
		send_error(c, "unavailable", "the session store is unavailable; reconnect shortly");
		close_with(c, 1013, "try again later");
		goto out;
	}
	if (!g->session_alive || strcmp(g->user_id, c->principal.user_hex) != 0) {
		send_error(c, "unauthorized", "the session has ended; sign in again");
		close_with(c, 4001, "session ended");
		goto out;
	}
	c->perms = strdup(g->perms);
	c->state = WS_READY;
	/* the token's end ends the connection (4001): clients re-auth */
	long left = c->exp - (long)time(NULL) + TR_JWT_LEEWAY_S;
	lws_set_timer_usecs(c->wsi, (lws_usec_t)(left > 0 ? left : 1) * LWS_US_PER_SEC);
	BSON_APPEND_UTF8(&doc, "type", "ready");
	BSON_APPEND_UTF8(&doc, "user_id", c->principal.user_hex);
	BSON_APPEND_UTF8(&doc, "tenant_id", c->principal.tenant_hex);
	BSON_APPEND_NULL(&doc, "last_event_id");
	send_json(c, &doc);
	if (ac->has_topics)
		change_topics(c, ac->topics_msg, true);
out:
	bson_destroy(&doc);
	bson_destroy(ac->topics_msg);
	free(ac);
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
	c->checking = true;
	if (tr_auth_gate(&c->principal, auth_gate_cb, ac) != TR_OK) {
		c->checking = false;
		bson_destroy(ac->topics_msg);
		free(ac);
		send_error(c, "unavailable", "the session store is unavailable; reconnect shortly");
		close_with(c, 1013, "try again later");
	}
}

static void
on_message(struct ws_conn *c, const char *text, size_t len)
{
	bson_t msg;
	bson_iter_t it;
	char err[160];
	const char *type;

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
	} else if (strcmp(type, "auth") == 0) {
		send_error(c, "already-authenticated", "this connection is authenticated");
	} else {
		send_error(c, "unknown-type", "unknown message type");
	}
	bson_destroy(&msg);
}

/* Every SWEEP_MS: is each live connection's session still there? Logout,
 * deactivation and revocation on any process close it with 4001. */
static void
exists_cb(void *arg, const redisReply *r, int status)
{
	struct ws_conn *c = arg;

	c->checking = false;
	if (!c->wsi) {
		conn_free(c);
		return;
	}
	if (status == TR_OK && r->type == REDIS_REPLY_INTEGER && r->integer == 0) {
		send_error(c, "session-ended", "the session has ended; sign in again");
		close_with(c, 4001, "session ended");
	}
}

static void
sweep_cb(uv_timer_t *t)
{
	char key[128];
	(void)t;

	for (struct ws_conn *c = W.head; c; c = c->next) {
		if (c->state != WS_READY || c->checking)
			continue;
		snprintf(key, sizeof(key), "t:%s:sess:%s", c->principal.tenant_hex,
			 c->principal.session_id);
		const char *argv[2] = {"EXISTS", key};
		c->checking = true;
		if (tr_redis_command(exists_cb, c, 2, argv, NULL) != TR_OK)
			c->checking = false;
	}
}

void
tr_ws_init(uv_loop_t *loop, const struct tr_config *cfg)
{
	W.loop = loop;
	W.cfg = cfg;
	uv_timer_init(loop, &W.sweep);
	uv_timer_start(&W.sweep, sweep_cb, SWEEP_MS, SWEEP_MS);
}

void
tr_ws_shutdown(void)
{
	if (W.stopping)
		return;
	W.stopping = true;
	uv_timer_stop(&W.sweep);
	uv_close((uv_handle_t *)&W.sweep, NULL);
	for (struct ws_conn *c = W.head; c; c = c->next)
		close_with(c, 1001, "server going away");
}

int
tr_ws_count(void)
{
	return W.count;
}

static int
on_writeable(struct ws_conn *c)
{
	struct frame *f = c->q_head;

	if (c->close_sent)
		return 0;
	if (f) {
		c->q_head = f->next;
		if (!c->q_head)
			c->q_tail = NULL;
		c->q_len--;
		int n = lws_write(c->wsi, f->data + LWS_PRE, f->len, LWS_WRITE_TEXT);
		free(f);
		if (n < 0)
			return -1;
		if (c->q_head || c->close_code)
			lws_callback_on_writable(c->wsi);
		return 0;
	}
	if (c->close_code) {
		/* The close frame is written here, raw (FIN + opcode 8, length,
		 * code, reason; servers do not mask): lws_close_reason()
		 * followed by returning -1 sent none with libwebsockets 4.1. */
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
		/* Closing the socket now could lose the close frame: if the
		 * client is still sending, unread data makes the kernel reset
		 * the connection. Wait for the client's close (lws answers it
		 * and closes), discarding what arrives, for a few seconds. */
		c->close_code = 0;
		c->close_sent = true;
		lws_set_timeout(c->wsi, PENDING_TIMEOUT_CLOSE_ACK, 3);
		return 0;
	}
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
			if (!c->checking)
				conn_free(c); /* else the pending callback frees it */
		}
		return 0;
	default:
		return 0;
	}
}
