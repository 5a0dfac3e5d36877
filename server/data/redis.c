#include "redis.h"

#include <hiredis/async.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "log.h"
#include "metrics.h"
#include "rcluster.h"
#include "util.h"

#define MAX_SCRIPTS 12
/* Arguments of one command: the job stats script (jobs.c) passes three
 * keys per queue, up to 16 queues, plus its own three. */
#define MAX_ARGS 64
#define RECONNECT_MIN_MS 100
#define RECONNECT_MAX_MS 1000
#define SWEEP_MS 50
/* Cluster mode: a command redirected more often than this is answered
 * TR_EUNAVAILABLE (a cluster whose nodes disagree would bounce it
 * forever), and the slot map is read again this long after a MOVED or a
 * lost connection (many MOVED in a burst cause one CLUSTER SLOTS). */
#define MAX_REDIRECTS 5
#define REFRESH_DELAY_MS 100

struct node;

/* One outstanding command. Freed when hiredis calls back (it always does:
 * with the reply, or NULL when the context is freed). `answered` is set when
 * the caller was already told (timeout), so the late reply is dropped.
 * In cluster mode it keeps the encoded command, to send it again to the
 * node a MOVED or ASK names. */
struct call {
	tr_redis_cb cb;
	void *arg;
	uint64_t start_ns, deadline_ns;
	bool answered;
	int script; /* its script id, or -1 */
	int redirects;
	char *cmd; /* cluster mode only */
	size_t len;
	struct node *node; /* the connection whose list holds it */
	struct call *prev, *next;
};

/* hiredis <-> libuv: readiness of the connection's socket. */
struct poll_adapter {
	uv_poll_t handle;
	redisAsyncContext *ac; /* NULL once hiredis cleaned up */
	int events;
};

/* One Redis server and the command connection to it. Single mode has one
 * (redis_url); cluster mode one per master (the seed first). Nodes are
 * never removed, so pointers to them stay valid. */
struct node {
	char host[256];
	int port;
	redisAsyncContext *ac;
	bool connected;
	bool master; /* cluster mode: serves slots in the current map */
	int backoff_ms;
	uv_timer_t reconnect_timer;
	uint64_t last_reply_ns;	   /* when it last answered anything */
	struct call *head, *tail;  /* in submission order = deadline order */
	char sha[MAX_SCRIPTS][41]; /* "" until its SCRIPT LOAD answered */
};

/* All of it is owned by the loop thread. */
static struct {
	uv_loop_t *loop;
	const struct tr_config *cfg;
	bool closing, cluster;
	uv_timer_t sweep_timer, refresh_timer;
	uv_check_t service;
	struct node nodes[TR_RCL_MAX_NODES];
	int nnodes;
	const char *scripts[MAX_SCRIPTS];
	int nscripts;
	/* cluster mode: which node serves each slot (index into nodes, -1) */
	bool map_known, refreshing, refresh_again;
	int8_t owner[TR_RCL_SLOTS];
} R;

static void connect_now(struct node *n);
static void service_cb(uv_check_t *h);
static void schedule_refresh(void);
static void sub_map_changed(void);
static void ssub_node_lost(int i);

static void
list_remove(struct call *c)
{
	struct node *n = c->node;

	if (c->prev)
		c->prev->next = c->next;
	else
		n->head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	else
		n->tail = c->prev;
	c->prev = c->next = NULL;
}

static void
list_append(struct node *n, struct call *c)
{
	c->node = n;
	c->prev = n->tail;
	if (n->tail)
		n->tail->next = c;
	else
		n->head = c;
	n->tail = c;
}

static void
poll_cb(uv_poll_t *h, int status, int events)
{
	struct poll_adapter *p = h->data;

	if (!p->ac)
		return;
	if (status < 0)
		events = p->events; /* let hiredis find the error itself */
	if (events & UV_READABLE)
		redisAsyncHandleRead(p->ac);
	if (p->ac && (events & UV_WRITABLE))
		redisAsyncHandleWrite(p->ac);
}

static void
poll_update(struct poll_adapter *p, int add, int del)
{
	if (!p->ac)
		return;
	int events = (p->events | add) & ~del;
	if (events == p->events)
		return; /* no change, no system call */
	p->events = events;
	if (p->events)
		uv_poll_start(&p->handle, p->events, poll_cb);
	else
		uv_poll_stop(&p->handle);
}

static void
ev_add_read(void *d)
{
	poll_update(d, UV_READABLE, 0);
}
static void
ev_del_read(void *d)
{
	poll_update(d, 0, UV_READABLE);
}
static void
ev_add_write(void *d)
{
	poll_update(d, UV_WRITABLE, 0);
}
static void
ev_del_write(void *d)
{
	poll_update(d, 0, UV_WRITABLE);
}

static void
poll_closed_cb(uv_handle_t *h)
{
	free(h->data);
}

static void
ev_cleanup(void *d)
{
	struct poll_adapter *p = d;

	p->ac = NULL;
	uv_poll_stop(&p->handle);
	uv_close((uv_handle_t *)&p->handle, poll_closed_cb);
}

static int
attach(redisAsyncContext *ac)
{
	struct poll_adapter *p = calloc(1, sizeof(*p));

	if (!p)
		return -1;
	if (uv_poll_init(R.loop, &p->handle, ac->c.fd) != 0) {
		free(p);
		return -1;
	}
	p->handle.data = p;
	p->ac = ac;
	ac->ev.data = p;
	ac->ev.addRead = ev_add_read;
	ac->ev.delRead = ev_del_read;
	ac->ev.addWrite = ev_add_write;
	ac->ev.delWrite = ev_del_write;
	ac->ev.cleanup = ev_cleanup;
	return 0;
}

/* A node is worth reconnecting to in single mode, before the map is
 * known (the seed), and while it is a master of the map. */
static bool
node_wanted(const struct node *n)
{
	return !R.cluster || !R.map_known || n->master;
}

static void
reconnect_cb(uv_timer_t *t)
{
	connect_now(t->data);
}

static void
schedule_reconnect(struct node *n)
{
	if (R.closing || !node_wanted(n))
		return;
	uv_timer_start(&n->reconnect_timer, reconnect_cb, (uint64_t)n->backoff_ms, 0);
	n->backoff_ms = n->backoff_ms * 2 > RECONNECT_MAX_MS ? RECONNECT_MAX_MS : n->backoff_ms * 2;
}

/* The node of host:port, added (and connected) when new; -1 when the
 * table is full. */
static int
node_add(const char *host, int port)
{
	struct node *n;

	for (int i = 0; i < R.nnodes; i++)
		if (R.nodes[i].port == port && strcmp(R.nodes[i].host, host) == 0)
			return i;
	if (R.nnodes == TR_RCL_MAX_NODES || strlen(host) >= sizeof(n->host))
		return -1;
	n = &R.nodes[R.nnodes];
	memset(n, 0, sizeof(*n));
	snprintf(n->host, sizeof(n->host), "%s", host);
	n->port = port;
	n->backoff_ms = RECONNECT_MIN_MS;
	uv_timer_init(R.loop, &n->reconnect_timer);
	n->reconnect_timer.data = n;
	R.nnodes++;
	connect_now(n);
	return R.nnodes - 1;
}

static int redirect(struct call *c, const redisReply *r);

static void
reply_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
	struct call *c = privdata;
	struct node *n = c->node;
	const redisReply *r = reply;
	(void)ac;

	list_remove(c);
	if (r)
		n->last_reply_ns = tr_mono_ns();
	if (r && c->script >= 0 && r->type == REDIS_REPLY_ERROR &&
	    strncmp(r->str, "NOSCRIPT", 8) == 0)
		n->sha[c->script][0] = '\0'; /* this node lost it: EVAL from now */
	if (r && R.cluster && !c->answered) {
		int rc = redirect(c, r);
		if (rc > 0)
			return; /* sent again: this call is answered later */
		if (rc < 0) {
			r = NULL; /* could not follow it */
		}
	}
	if (!c->answered) {
		tr_metrics_redis_observe((double)(tr_mono_ns() - c->start_ns) / 1e9, r != NULL);
		c->cb(c->arg, r, r ? TR_OK : TR_EUNAVAILABLE);
	}
	if (c->cmd)
		redisFreeCommand(c->cmd);
	free(c);
}

/* Queues c (encoded, c->cmd) on node n's connection. */
static int
node_send(struct node *n, struct call *c)
{
	if (!n->connected || !n->ac)
		return TR_EUNAVAILABLE;
	if (redisAsyncFormattedCommand(n->ac, reply_cb, c, c->cmd, c->len) != REDIS_OK)
		return TR_EUNAVAILABLE;
	list_append(n, c);
	return TR_OK;
}

/* Follows a MOVED (the slot has a new owner: remember it, send there, and
 * read the whole map again soon) or an ASK (the slot is being migrated
 * and this key already moved: ASKING + the command, to that node, once).
 * 1: sent again; 0: not a redirection; -1: cannot follow it. */
static int
redirect(struct call *c, const redisReply *r)
{
	char host[64];
	int slot, port, to;
	enum tr_rcl_redirect kind;

	if (r->type != REDIS_REPLY_ERROR)
		return 0;
	kind = tr_rcl_redirect(r->str, r->len, &slot, host, sizeof(host), &port);
	if (kind == TR_RCL_NOT_REDIRECT)
		return 0;
	if (++c->redirects > MAX_REDIRECTS) {
		tr_error("redis: slot %d redirected %d times (%s); the cluster is not settled",
			 slot, MAX_REDIRECTS, r->str);
		schedule_refresh();
		return -1;
	}
	to = node_add(host[0] ? host : c->node->host, port);
	if (to < 0)
		return -1;
	if (kind == TR_RCL_MOVED) {
		if (R.owner[slot] != to) /* once per move, not per command */
			tr_info("redis: slot %d moved to %s:%d", slot, R.nodes[to].host,
				R.nodes[to].port);
		R.owner[slot] = (int8_t)to;
		R.nodes[to].master = true;
		schedule_refresh();
	} else if (R.nodes[to].connected && R.nodes[to].ac) {
		/* its reply (+OK) needs nobody */
		redisAsyncCommand(R.nodes[to].ac, NULL, NULL, "ASKING");
	}
	c->deadline_ns = tr_mono_ns() + (uint64_t)R.cfg->dep_timeout_ms * 1000000u;
	return node_send(&R.nodes[to], c) == TR_OK ? 1 : -1;
}

/* Encodes and queues a command on node n. The callback contract is the
 * header's: an error return means cb is never called. */
static int
submit_to(struct node *n, tr_redis_cb cb, void *arg, int script, int argc, const char **argv,
	  const size_t *lens)
{
	struct call *c;
	char *cmd = NULL;
	int len;

	len = redisFormatCommandArgv(&cmd, argc, argv, lens);
	if (len < 0)
		return TR_ENOMEM;
	c = calloc(1, sizeof(*c));
	if (!c) {
		redisFreeCommand(cmd);
		return TR_ENOMEM;
	}
	c->cb = cb;
	c->arg = arg;
	c->script = script;
	c->cmd = cmd;
	c->len = (size_t)len;
	c->start_ns = tr_mono_ns();
	c->deadline_ns = c->start_ns + (uint64_t)R.cfg->dep_timeout_ms * 1000000u;
	if (node_send(n, c) != TR_OK) {
		redisFreeCommand(cmd);
		free(c);
		return TR_EUNAVAILABLE;
	}
	if (!R.cluster) { /* hiredis copied it; no redirects to follow */
		redisFreeCommand(c->cmd);
		c->cmd = NULL;
	}
	return TR_OK;
}

static void
script_loaded_cb(void *arg, const redisReply *reply, int status)
{
	char *sha = arg;

	if (status == TR_OK && reply->type == REDIS_REPLY_STRING && reply->len == 40)
		memcpy(sha, reply->str, 41);
}

static void
setup_reply_cb(void *arg, const redisReply *reply, int status)
{
	struct node *n = arg;

	if (status == TR_OK && reply->type == REDIS_REPLY_ERROR)
		tr_error("redis: connection setup on %s:%d failed: %s", n->host, n->port,
			 reply->str);
}

static void
connected_cb(const redisAsyncContext *ac, int status)
{
	struct node *n = ac->data;

	if (status != REDIS_OK) {
		/* hiredis frees the context after this callback */
		tr_warn("redis: connect to %s:%d failed: %s", n->host, n->port, ac->errstr);
		n->ac = NULL;
		n->connected = false;
		schedule_reconnect(n);
		return;
	}
	n->connected = true;
	n->backoff_ms = RECONNECT_MIN_MS;
	tr_info("redis: connected to %s:%d", n->host, n->port);
	/* Commands are pipelined in order: these run before anything else
	 * sent on this connection. */
	if (R.cfg->redis_user[0]) {
		const char *argv[] = {"AUTH", R.cfg->redis_user, R.cfg->redis_password};
		submit_to(n, setup_reply_cb, n, -1, 3, argv, NULL);
	} else if (R.cfg->redis_password[0]) {
		const char *argv[] = {"AUTH", R.cfg->redis_password};
		submit_to(n, setup_reply_cb, n, -1, 2, argv, NULL);
	}
	if (R.cfg->redis_db && !R.cluster) {
		char db[8];
		snprintf(db, sizeof(db), "%d", R.cfg->redis_db);
		const char *argv[] = {"SELECT", db};
		submit_to(n, setup_reply_cb, n, -1, 2, argv, NULL);
	}
	for (int i = 0; i < R.nscripts; i++) {
		/* A restarted Redis has an empty script cache: until it has
		 * loaded the script again (it may still be loading its data),
		 * calls send the source. Scripts live per node: each master
		 * loads them on its own connection. */
		n->sha[i][0] = '\0';
		const char *argv[] = {"SCRIPT", "LOAD", R.scripts[i]};
		submit_to(n, script_loaded_cb, n->sha[i], -1, 3, argv, NULL);
	}
	if (R.cluster && !R.map_known)
		schedule_refresh();
}

static void
disconnected_cb(const redisAsyncContext *ac, int status)
{
	struct node *n = ac->data;

	if (n->connected && !R.closing)
		tr_warn("redis: disconnected from %s:%d (%s)", n->host, n->port,
			status == REDIS_OK ? "closed" : ac->errstr);
	n->ac = NULL;
	n->connected = false;
	schedule_reconnect(n);
	if (R.cluster)
		schedule_refresh(); /* a failover may have moved its slots */
}

static void
connect_now(struct node *n)
{
	redisAsyncContext *ac;

	if (R.closing || n->ac || !node_wanted(n))
		return;
	ac = redisAsyncConnect(n->host, n->port);
	if (!ac || ac->err) {
		tr_warn("redis: cannot connect to %s:%d: %s", n->host, n->port,
			ac ? ac->errstr : "out of memory");
		if (ac)
			redisAsyncFree(ac);
		schedule_reconnect(n);
		return;
	}
	if (attach(ac) != 0) {
		redisAsyncFree(ac);
		schedule_reconnect(n);
		return;
	}
	n->ac = ac;
	ac->data = n;
	redisAsyncSetConnectCallback(ac, connected_cb);
	redisAsyncSetDisconnectCallback(ac, disconnected_cb);
}

/* Drops a connection whose replies are overdue; everything pending on it is
 * answered TR_EUNAVAILABLE by hiredis (through reply_cb). */
static void
drop_connection(struct node *n)
{
	redisAsyncContext *ac = n->ac;

	if (!ac)
		return;
	bool was_connected = n->connected;
	n->connected = false;
	redisAsyncFree(ac); /* calls disconnected_cb when it was connected */
	if (!was_connected) {
		n->ac = NULL;
		schedule_reconnect(n);
	}
}

bool
tr_redis_silent(uint64_t now, uint64_t last_reply_ns, uint64_t timeout_ns)
{
	return now > last_reply_ns && now - last_reply_ns >= timeout_ns;
}

static void
sweep_node(struct node *n, uint64_t now)
{
	bool overdue = false;

	/* A busy loop may not have read replies that did arrive: read what
	 * the socket holds before calling anything overdue. */
	if (n->head && n->head->deadline_ns <= now && n->ac && n->connected)
		redisAsyncHandleRead(n->ac);
	/* Redis answers in order: while replies keep arriving, the late ones
	 * were held up by this process (a loop busy with thousands of
	 * sockets), not by Redis, and come next. */
	if (n->connected &&
	    !tr_redis_silent(now, n->last_reply_ns, (uint64_t)R.cfg->dep_timeout_ms * 1000000u))
		return;
	for (struct call *c = n->head; c && c->deadline_ns <= now; c = c->next) {
		if (c->answered)
			continue;
		c->answered = true;
		overdue = true;
		tr_metrics_redis_observe((double)(now - c->start_ns) / 1e9, false);
		c->cb(c->arg, NULL, TR_EUNAVAILABLE);
	}
	if (overdue) {
		tr_warn("redis: no reply from %s:%d within %d ms, reconnecting", n->host, n->port,
			R.cfg->dep_timeout_ms);
		drop_connection(n);
	}
}

static void
sweep_cb(uv_timer_t *t)
{
	uint64_t now = tr_mono_ns();
	(void)t;

	for (int i = 0; i < R.nnodes; i++)
		sweep_node(&R.nodes[i], now);
}

/* ---- cluster mode: the slot map ---- */

static void
slots_cb(void *arg, const redisReply *reply, int status)
{
	static struct tr_rcl_map map; /* 16 KiB: not on the stack */
	struct node *from = arg;

	R.refreshing = false;
	if (R.closing)
		return;
	if (status != TR_OK || tr_rcl_map_parse(&map, reply, from->host) != 0) {
		tr_warn("redis: CLUSTER SLOTS from %s:%d unusable (%s)", from->host, from->port,
			status != TR_OK			   ? "no reply"
			: reply->type == REDIS_REPLY_ERROR ? reply->str
							   : "unexpected shape");
		schedule_refresh();
		return;
	}
	int8_t index[TR_RCL_MAX_NODES];
	for (int i = 0; i < map.nnodes; i++)
		index[i] = (int8_t)node_add(map.nodes[i].host, map.nodes[i].port);
	for (int i = 0; i < R.nnodes; i++)
		R.nodes[i].master = false;
	for (int s = 0; s < TR_RCL_SLOTS; s++) {
		int m = tr_rcl_map_node(&map, s);
		R.owner[s] = m < 0 ? -1 : index[m];
		if (R.owner[s] >= 0)
			R.nodes[R.owner[s]].master = true;
	}
	if (!R.map_known)
		tr_info("redis: cluster map read: %d masters", map.nnodes);
	R.map_known = true;
	for (int i = 0; i < R.nnodes; i++)
		if (R.nodes[i].master && !R.nodes[i].ac &&
		    !uv_is_active((uv_handle_t *)&R.nodes[i].reconnect_timer))
			connect_now(&R.nodes[i]);
	sub_map_changed();
	if (R.refresh_again) {
		R.refresh_again = false;
		schedule_refresh();
	}
}

/* Reads CLUSTER SLOTS from a connected node, masters first. */
static void
refresh_cb(uv_timer_t *t)
{
	static const char *const argv[] = {"CLUSTER", "SLOTS"};
	struct node *from = NULL;
	(void)t;

	if (R.refreshing) {
		R.refresh_again = true;
		return;
	}
	for (int i = 0; i < R.nnodes && !from; i++)
		if (R.nodes[i].connected && R.nodes[i].master)
			from = &R.nodes[i];
	for (int i = 0; i < R.nnodes && !from; i++)
		if (R.nodes[i].connected)
			from = &R.nodes[i];
	if (!from || submit_to(from, slots_cb, from, -1, 2, (const char **)argv, NULL) != TR_OK) {
		schedule_refresh();
		return;
	}
	R.refreshing = true;
}

static void
schedule_refresh(void)
{
	if (!R.cluster || R.closing || uv_is_active((uv_handle_t *)&R.refresh_timer))
		return;
	uv_timer_start(&R.refresh_timer, refresh_cb, REFRESH_DELAY_MS, 0);
}

int
tr_redis_init(uv_loop_t *loop, const struct tr_config *cfg)
{
	R.loop = loop;
	R.cfg = cfg;
	R.cluster = cfg->redis_cluster;
	memset(R.owner, -1, sizeof(R.owner));
	uv_timer_init(loop, &R.sweep_timer);
	uv_timer_init(loop, &R.refresh_timer);
	uv_check_init(loop, &R.service);
	uv_check_start(&R.service, service_cb);
	uv_unref((uv_handle_t *)&R.service);
	uv_timer_start(&R.sweep_timer, sweep_cb, SWEEP_MS, SWEEP_MS);
	/* single mode: the server; cluster mode: the seed, which answers
	 * CLUSTER SLOTS once connected */
	if (node_add(cfg->redis_host, cfg->redis_port) < 0)
		return TR_EINVALID;
	return 0;
}

/* ---- the subscriber: classic channels on a connection in subscribe
 * mode (hiredis's own pub/sub support) ---- */

#define MAX_CHANNELS 4

static struct {
	redisAsyncContext *ac;
	bool connected, classic_up, up;
	int backoff_ms, nchannels, confirmed, node;
	const char *channels[MAX_CHANNELS];
	tr_redis_msg_cb on_msg;
	tr_redis_sub_state_cb on_state;
	uv_timer_t timer;
	bool started;
	/* cluster mode: sharded channels "<prefix>{TAG}", one per slot */
	const char *prefix;
	int nconfirmed;			 /* slots whose channel is subscribed */
	int8_t sub_at[TR_RCL_SLOTS];	 /* node subscribed to it, or -1 */
	int8_t pending_at[TR_RCL_SLOTS]; /* node asked to subscribe, or -1 */
} S;

static void sub_connect(void);

/* on_state follows the whole: classic channels and, in cluster mode,
 * every slot's channel. */
static void
sub_update_state(void)
{
	bool up = S.classic_up && (!S.prefix || S.nconfirmed == TR_RCL_SLOTS);

	if (up == S.up)
		return;
	S.up = up;
	if (up)
		tr_info("redis: subscribed to %d channels%s", S.nchannels,
			S.prefix ? " and every slot's shard channel" : "");
	S.on_state(up);
}

static void
sub_lost(void)
{
	S.ac = NULL;
	S.connected = S.classic_up = false;
	S.confirmed = 0;
	sub_update_state();
	if (R.closing)
		return;
	S.node++; /* cluster mode: try the next master */
	uv_timer_start(&S.timer, (uv_timer_cb)sub_connect, (uint64_t)S.backoff_ms, 0);
	S.backoff_ms = S.backoff_ms * 2 > RECONNECT_MAX_MS ? RECONNECT_MAX_MS : S.backoff_ms * 2;
}

static void
sub_reply_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
	redisReply *r = reply;
	(void)ac;
	(void)privdata;

	if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 3 ||
	    r->element[0]->type != REDIS_REPLY_STRING)
		return;
	if (strcmp(r->element[0]->str, "message") == 0 &&
	    r->element[1]->type == REDIS_REPLY_STRING &&
	    r->element[2]->type == REDIS_REPLY_STRING) {
		S.on_msg(r->element[1]->str, r->element[2]->str, r->element[2]->len);
	} else if (strcmp(r->element[0]->str, "subscribe") == 0) {
		if (++S.confirmed == S.nchannels) {
			S.classic_up = true;
			S.backoff_ms = RECONNECT_MIN_MS;
			sub_update_state();
		}
	}
}

static void
sub_setup_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
	redisReply *r = reply;
	(void)ac;
	(void)privdata;
	if (r && r->type == REDIS_REPLY_ERROR)
		tr_error("redis: subscriber setup failed: %s", r->str);
}

static void
sub_connected_cb(const redisAsyncContext *ac, int status)
{
	if (status != REDIS_OK) {
		tr_warn("redis: subscriber connect failed: %s", ac->errstr);
		sub_lost();
		return;
	}
	S.connected = true;
	if (R.cfg->redis_user[0])
		redisAsyncCommand(S.ac, sub_setup_cb, NULL, "AUTH %s %s", R.cfg->redis_user,
				  R.cfg->redis_password);
	else if (R.cfg->redis_password[0])
		redisAsyncCommand(S.ac, sub_setup_cb, NULL, "AUTH %s", R.cfg->redis_password);
	for (int i = 0; i < S.nchannels; i++)
		redisAsyncCommand(S.ac, sub_reply_cb, NULL, "SUBSCRIBE %s", S.channels[i]);
}

static void
sub_disconnected_cb(const redisAsyncContext *ac, int status)
{
	if (S.up && !R.closing)
		tr_warn("redis: subscriber disconnected (%s)",
			status == REDIS_OK ? "closed" : ac->errstr);
	sub_lost();
}

/* Single mode: the server. Cluster mode: a master (any one: a classic
 * PUBLISH reaches every node's subscribers), the next after a failure. */
static const struct node *
sub_node(void)
{
	if (!R.cluster || !R.map_known)
		return &R.nodes[0];
	for (int k = 0; k < R.nnodes; k++) {
		const struct node *n = &R.nodes[(S.node + k) % R.nnodes];
		if (n->master)
			return n;
	}
	return &R.nodes[0];
}

static void
sub_connect(void)
{
	const struct node *n = sub_node();
	redisAsyncContext *ac;

	if (R.closing || S.ac)
		return;
	ac = redisAsyncConnect(n->host, n->port);
	if (!ac || ac->err || attach(ac) != 0) {
		if (ac)
			redisAsyncFree(ac);
		sub_lost();
		return;
	}
	S.ac = ac;
	redisAsyncSetConnectCallback(ac, sub_connected_cb);
	redisAsyncSetDisconnectCallback(ac, sub_disconnected_cb);
}

/* ---- cluster mode: sharded channels (SSUBSCRIBE), one connection per
 * master ----
 *
 * hiredis 0.14 knows nothing of SSUBSCRIBE (its async context would take
 * each smessage for the reply of a command), so these connections use
 * hiredis only to encode commands and decode replies: a non-blocking
 * redisContext watched by a uv_poll_t, every reply handed to ssub_reply.
 * Each SSUBSCRIBE names one channel (a command may only name channels of
 * one slot), all pipelined on the slot owner's connection. */

struct ssub {
	redisContext *c;
	uv_poll_t *poll;
	bool connecting, connected;
	int backoff_ms;
	uv_timer_t timer;
};

static struct ssub Q[TR_RCL_MAX_NODES];
static bool ssub_timers_init[TR_RCL_MAX_NODES];

static char slot_tags[TR_RCL_SLOTS][TR_RCL_TAG_SIZE];
static pthread_once_t slot_tags_once = PTHREAD_ONCE_INIT;

static void
fill_slot_tags(void)
{
	tr_rcl_slot_tags(slot_tags);
}

int
tr_redis_shard_channel(const char *prefix, const char *key, size_t keylen, char *buf, size_t len)
{
	pthread_once(&slot_tags_once, fill_slot_tags);
	int n = snprintf(buf, len, "%s{%s}", prefix, slot_tags[tr_rcl_keyslot(key, keylen)]);
	return n < 0 || (size_t)n >= len ? TR_EINVALID : TR_OK;
}

static void ssub_poll_cb(uv_poll_t *h, int status, int events);

static void
ssub_watch(int i, bool write)
{
	uv_poll_start(Q[i].poll, UV_READABLE | (write ? UV_WRITABLE : 0), ssub_poll_cb);
}

/* Asks node i for the channel of every slot it owns that nobody
 * subscribed or was asked to. */
static void
ssub_send(int i)
{
	char channel[64];
	int sent = 0;

	if (!Q[i].connected)
		return;
	for (int s = 0; s < TR_RCL_SLOTS; s++) {
		if (R.owner[s] != i || S.sub_at[s] >= 0 || S.pending_at[s] >= 0)
			continue;
		int n = snprintf(channel, sizeof(channel), "%s{%.*s}", S.prefix,
				 (int)TR_RCL_TAG_SIZE, slot_tags[s]);
		if (n < 0 || (size_t)n >= sizeof(channel))
			break; /* a prefix too long for any channel */
		if (redisAppendCommand(Q[i].c, "SSUBSCRIBE %s", channel) != REDIS_OK)
			break;
		S.pending_at[s] = (int8_t)i;
		sent++;
	}
	if (sent)
		ssub_watch(i, true);
}

static void
ssub_reply(int i, const redisReply *r)
{
	if (r->type == REDIS_REPLY_ERROR) {
		int slot, port;
		char host[64];
		/* the slot moved before our SSUBSCRIBE arrived */
		if (tr_rcl_redirect(r->str, r->len, &slot, host, sizeof(host), &port) !=
		    TR_RCL_NOT_REDIRECT) {
			if (S.pending_at[slot] == i)
				S.pending_at[slot] = -1;
			schedule_refresh();
		} else {
			tr_error("redis: shard subscriber on %s:%d: %s", R.nodes[i].host,
				 R.nodes[i].port, r->str);
		}
		return;
	}
	if (r->type != REDIS_REPLY_ARRAY || r->elements < 3 ||
	    r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_STRING)
		return; /* +OK of AUTH */
	const char *kind = r->element[0]->str;
	const redisReply *ch = r->element[1];
	int slot = tr_rcl_keyslot(ch->str, ch->len);
	if (strcmp(kind, "smessage") == 0 && r->element[2]->type == REDIS_REPLY_STRING) {
		S.on_msg(ch->str, r->element[2]->str, r->element[2]->len);
	} else if (strcmp(kind, "ssubscribe") == 0) {
		if (S.pending_at[slot] == i)
			S.pending_at[slot] = -1;
		if (S.sub_at[slot] < 0) {
			S.sub_at[slot] = (int8_t)i;
			S.nconfirmed++;
			Q[i].backoff_ms = RECONNECT_MIN_MS;
			sub_update_state();
		}
	} else if (strcmp(kind, "sunsubscribe") == 0) {
		/* the node gave the slot away (resharding, failover): what is
		 * published there until we subscribe on its new owner is
		 * missed, so clients are told to resync */
		if (S.sub_at[slot] == i) {
			tr_info("redis: slot %d left %s:%d; its channel follows it", slot,
				R.nodes[i].host, R.nodes[i].port);
			S.sub_at[slot] = -1;
			S.nconfirmed--;
			sub_update_state();
		}
		schedule_refresh();
	}
}

static void
ssub_poll_closed_cb(uv_handle_t *h)
{
	free(h);
}

static void
ssub_connect_cb(uv_timer_t *t)
{
	int i = (int)(intptr_t)t->data;
	struct ssub *q = &Q[i];
	struct node *n = &R.nodes[i];

	if (R.closing || q->c || !n->master)
		return;
	q->c = redisConnectNonBlock(n->host, n->port);
	q->poll = calloc(1, sizeof(*q->poll));
	if (!q->c || q->c->err || !q->poll || uv_poll_init(R.loop, q->poll, q->c->fd) != 0) {
		tr_warn("redis: shard subscriber cannot connect to %s:%d", n->host, n->port);
		free(q->poll);
		q->poll = NULL;
		if (q->c)
			redisFree(q->c);
		q->c = NULL;
		ssub_node_lost(i);
		return;
	}
	q->poll->data = (void *)(intptr_t)i;
	q->connecting = true;
	ssub_watch(i, true); /* writable: the connection is made */
}

/* Node i's shard connection is gone (or never came): its slots are not
 * subscribed any more; try again after a pause. */
static void
ssub_node_lost(int i)
{
	struct ssub *q = &Q[i];

	if (q->poll) {
		uv_poll_stop(q->poll);
		uv_close((uv_handle_t *)q->poll, ssub_poll_closed_cb);
		q->poll = NULL;
	}
	if (q->c) {
		redisFree(q->c);
		q->c = NULL;
	}
	if (q->connected && !R.closing)
		tr_warn("redis: shard subscriber on %s:%d lost", R.nodes[i].host, R.nodes[i].port);
	q->connecting = q->connected = false;
	for (int s = 0; s < TR_RCL_SLOTS; s++) {
		if (S.pending_at[s] == i)
			S.pending_at[s] = -1;
		if (S.sub_at[s] == i) {
			S.sub_at[s] = -1;
			S.nconfirmed--;
		}
	}
	sub_update_state();
	if (R.closing)
		return;
	schedule_refresh();
	uv_timer_start(&q->timer, ssub_connect_cb, (uint64_t)q->backoff_ms, 0);
	q->backoff_ms = q->backoff_ms * 2 > RECONNECT_MAX_MS ? RECONNECT_MAX_MS : q->backoff_ms * 2;
}

static void
ssub_poll_cb(uv_poll_t *h, int status, int events)
{
	int i = (int)(intptr_t)h->data;
	struct ssub *q = &Q[i];
	void *reply;
	int done = 0;

	if (status < 0)
		goto lost;
	if (q->connecting) {
		int err = 0;
		socklen_t elen = sizeof(err);
		if (!(events & UV_WRITABLE))
			return;
		if (getsockopt(q->c->fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0 || err)
			goto lost;
		q->connecting = false;
		q->connected = true;
		if (R.cfg->redis_user[0])
			redisAppendCommand(q->c, "AUTH %s %s", R.cfg->redis_user,
					   R.cfg->redis_password);
		else if (R.cfg->redis_password[0])
			redisAppendCommand(q->c, "AUTH %s", R.cfg->redis_password);
		ssub_send(i);
	}
	if (events & UV_READABLE) {
		if (redisBufferRead(q->c) != REDIS_OK)
			goto lost;
		for (;;) {
			reply = NULL;
			if (redisGetReplyFromReader(q->c, &reply) != REDIS_OK)
				goto lost;
			if (!reply)
				break;
			ssub_reply(i, reply);
			freeReplyObject(reply);
			if (!q->c)
				return; /* closed meanwhile */
		}
	}
	if (events & UV_WRITABLE) {
		if (redisBufferWrite(q->c, &done) != REDIS_OK)
			goto lost;
		if (done)
			ssub_watch(i, false);
	}
	return;
lost:
	ssub_node_lost(i);
}

/* After a map change: ask each slot's owner for the channels not
 * subscribed anywhere, connecting to new masters. */
static void
sub_map_changed(void)
{
	if (!S.started || !S.prefix)
		return;
	for (int i = 0; i < R.nnodes; i++) {
		if (!ssub_timers_init[i]) {
			uv_timer_init(R.loop, &Q[i].timer);
			Q[i].timer.data = (void *)(intptr_t)i;
			Q[i].backoff_ms = RECONNECT_MIN_MS;
			ssub_timers_init[i] = true;
		}
		if (!R.nodes[i].master)
			continue;
		if (Q[i].connected)
			ssub_send(i);
		else if (!Q[i].c && !uv_is_active((uv_handle_t *)&Q[i].timer))
			ssub_connect_cb(&Q[i].timer);
	}
}

/* After every loop turn: with thousands of ready WebSocket sockets, epoll
 * hands out at most 1024 events per wait and Redis's socket could wait
 * for its turn for a second. Every connection sends what is queued and
 * reads what has arrived (a read of nothing costs one EAGAIN). */
static void
service_cb(uv_check_t *h)
{
	(void)h;
	for (int i = 0; i < R.nnodes; i++) {
		struct node *n = &R.nodes[i];
		if (n->ac && n->connected) {
			redisAsyncHandleWrite(n->ac);
			if (n->ac)
				redisAsyncHandleRead(n->ac);
		}
	}
	if (S.ac && S.connected) {
		redisAsyncHandleWrite(S.ac);
		if (S.ac)
			redisAsyncHandleRead(S.ac);
	}
	for (int i = 0; i < R.nnodes; i++)
		if (Q[i].connected && Q[i].poll)
			ssub_poll_cb(Q[i].poll, 0, UV_READABLE);
}

int
tr_redis_subscribe(const char *const *channels, int n, const char *shard_prefix,
		   tr_redis_msg_cb on_msg, tr_redis_sub_state_cb on_state)
{
	if (S.started || n < 1 || n > MAX_CHANNELS)
		return TR_EINVALID;
	for (int i = 0; i < n; i++)
		S.channels[i] = channels[i];
	S.nchannels = n;
	S.on_msg = on_msg;
	S.on_state = on_state;
	S.backoff_ms = RECONNECT_MIN_MS;
	S.started = true;
	if (R.cluster && shard_prefix) {
		pthread_once(&slot_tags_once, fill_slot_tags);
		S.prefix = shard_prefix;
		memset(S.sub_at, -1, sizeof(S.sub_at));
		memset(S.pending_at, -1, sizeof(S.pending_at));
		if (R.map_known)
			sub_map_changed();
	}
	uv_timer_init(R.loop, &S.timer);
	sub_connect();
	return TR_OK;
}

bool
tr_redis_subscribed(void)
{
	return S.up;
}

void
tr_redis_close(void)
{
	R.closing = true;
	S.up = false; /* shutting down tells nobody to resync */
	if (S.started) {
		uv_timer_stop(&S.timer);
		uv_close((uv_handle_t *)&S.timer, NULL);
		if (S.ac) {
			redisAsyncContext *ac = S.ac;
			S.ac = NULL;
			S.connected = S.up = false;
			redisAsyncFree(ac);
		}
	}
	for (int i = 0; i < TR_RCL_MAX_NODES; i++) {
		if (!ssub_timers_init[i])
			continue;
		uv_timer_stop(&Q[i].timer);
		uv_close((uv_handle_t *)&Q[i].timer, NULL);
		ssub_node_lost(i);
	}
	uv_timer_stop(&R.sweep_timer);
	uv_timer_stop(&R.refresh_timer);
	uv_close((uv_handle_t *)&R.sweep_timer, NULL);
	uv_close((uv_handle_t *)&R.refresh_timer, NULL);
	uv_check_stop(&R.service);
	uv_close((uv_handle_t *)&R.service, NULL);
	for (int i = 0; i < R.nnodes; i++) {
		struct node *n = &R.nodes[i];
		uv_timer_stop(&n->reconnect_timer);
		uv_close((uv_handle_t *)&n->reconnect_timer, NULL);
		if (n->ac) {
			redisAsyncContext *ac = n->ac;
			n->ac = NULL;
			n->connected = false;
			redisAsyncFree(ac);
		}
	}
}

bool
tr_redis_up(void)
{
	if (!R.cluster)
		return R.nnodes > 0 && R.nodes[0].connected;
	if (!R.map_known)
		return false;
	for (int i = 0; i < R.nnodes; i++)
		if (R.nodes[i].master && !R.nodes[i].connected)
			return false;
	return true;
}

/* The connection a command goes to: single mode's only one; in cluster
 * mode its slot's master, or for a keyless command any connected master.
 * NULL when there is none. */
static struct node *
route(int slot)
{
	if (!R.cluster)
		return &R.nodes[0];
	if (slot >= 0)
		return R.owner[slot] >= 0 ? &R.nodes[R.owner[slot]] : NULL;
	for (int i = 0; i < R.nnodes; i++)
		if (R.nodes[i].master && R.nodes[i].connected)
			return &R.nodes[i];
	return NULL;
}

/* Routes and sends a command or script call (script >= 0: argv[0] and
 * argv[1] are filled here, EVALSHA and the hash when the target node has
 * loaded the script, else EVAL and its source). A command whose keys lie
 * in different slots is refused in both modes: one Redis would run it,
 * a cluster would not, so the single-mode test suite proves every command
 * of this server is cluster-safe. */
static int
submit(tr_redis_cb cb, void *arg, int script, int argc, const char **argv, const size_t *lens,
       bool single_only)
{
	size_t lenbuf[MAX_ARGS];
	struct node *n;
	int slot;

	if (argc > MAX_ARGS || argc < 1)
		return TR_EINVALID;
	if (!lens) {
		for (int i = 0; i < argc; i++)
			lenbuf[i] = argv[i] ? strlen(argv[i]) : 0;
		lens = lenbuf;
	}
	slot = tr_rcl_command_slot(argc, argv, lens);
	if (single_only && R.cfg->redis_cluster) {
		tr_error("redis: a single-Redis-only call refused in cluster mode");
		return TR_EINVALID;
	}
	if (single_only)
		slot = TR_RCL_ANY; /* one Redis: any key may be anywhere */
	if (slot == TR_RCL_CROSS) {
		int k = script >= 0 ? 3 : 1;
		tr_error("redis: %s refused: its keys lie in different cluster slots "
			 "(first key %.*s)",
			 script >= 0 ? "a script call" : argv[0], (int)lens[k], argv[k]);
		return TR_EINVALID;
	}
	n = route(slot);
	if (!n || !n->connected || !n->ac)
		return TR_EUNAVAILABLE;
	if (script >= 0) {
		bool by_hash = n->sha[script][0] != '\0';
		size_t *l = (size_t *)lens;
		argv[0] = by_hash ? "EVALSHA" : "EVAL";
		argv[1] = by_hash ? n->sha[script] : R.scripts[script];
		l[0] = strlen(argv[0]);
		l[1] = strlen(argv[1]);
	}
	return submit_to(n, cb, arg, script, argc, argv, lens);
}

int
tr_redis_command(tr_redis_cb cb, void *arg, int argc, const char **argv, const size_t *lens)
{
	return submit(cb, arg, -1, argc, argv, lens, false);
}

int
tr_redis_script_register(const char *source)
{
	if (R.nscripts == MAX_SCRIPTS)
		return -1;
	R.scripts[R.nscripts] = source;
	return R.nscripts++;
}

static int
script_call(int script, tr_redis_cb cb, void *arg, int nkeys, int argc, const char **argv,
	    const size_t *lens, bool single_only)
{
	const char *full[MAX_ARGS];
	size_t full_lens[MAX_ARGS];
	char nk[12];

	if (argc + 3 > MAX_ARGS || script < 0 || script >= R.nscripts)
		return TR_EINVALID;
	snprintf(nk, sizeof(nk), "%d", nkeys);
	full[0] = "EVALSHA"; /* both filled by submit, per node */
	full[1] = "";
	full[2] = nk;
	for (int i = 0; i < argc; i++) {
		full[i + 3] = argv[i];
		full_lens[i + 3] = lens ? lens[i] : strlen(argv[i]);
	}
	full_lens[0] = 7;
	full_lens[1] = 0;
	full_lens[2] = strlen(nk);
	return submit(cb, arg, script, argc + 3, full, full_lens, single_only);
}

int
tr_redis_script_call(int script, tr_redis_cb cb, void *arg, int nkeys, int argc, const char **argv,
		     const size_t *lens)
{
	return script_call(script, cb, arg, nkeys, argc, argv, lens, false);
}

int
tr_redis_script_call_single_only(int script, tr_redis_cb cb, void *arg, int nkeys, int argc,
				 const char **argv, const size_t *lens)
{
	return script_call(script, cb, arg, nkeys, argc, argv, lens, true);
}

void
tr_redis_script_reset(int script)
{
	for (int i = 0; i < R.nnodes; i++)
		R.nodes[i].sha[script][0] = '\0';
}
