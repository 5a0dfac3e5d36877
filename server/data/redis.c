#include "redis.h"

#include <hiredis/async.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "metrics.h"
#include "util.h"

#define MAX_SCRIPTS 8
/* Arguments of one command: the job stats script (jobs.c) passes three
 * keys per queue, up to 16 queues, plus its own three. */
#define MAX_ARGS 64
#define RECONNECT_MIN_MS 100
#define RECONNECT_MAX_MS 1000
#define SWEEP_MS 50

/* One outstanding command. Freed when hiredis calls back (it always does:
 * with the reply, or NULL when the context is freed). `answered` is set when
 * the caller was already told (timeout), so the late reply is dropped. */
struct call {
	tr_redis_cb cb;
	void *arg;
	uint64_t start_ns, deadline_ns;
	bool answered;
	struct call *prev, *next;
};

/* hiredis <-> libuv: readiness of the connection's socket. */
struct poll_adapter {
	uv_poll_t handle;
	redisAsyncContext *ac; /* NULL once hiredis cleaned up */
	int events;
};

struct script {
	const char *source;
	char sha[41];
};

/* All of it is owned by the loop thread. */
static struct {
	uv_loop_t *loop;
	const struct tr_config *cfg;
	redisAsyncContext *ac;
	bool connected, closing;
	int backoff_ms;
	uv_timer_t reconnect_timer, sweep_timer;
	uv_check_t service;
	uint64_t last_reply_ns;	  /* when Redis last answered anything */
	struct call *head, *tail; /* in submission order = deadline order */
	struct script scripts[MAX_SCRIPTS];
	int nscripts;
} R;

static void connect_now(void);
static void service_cb(uv_check_t *h);

static void
list_remove(struct call *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		R.head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	else
		R.tail = c->prev;
	c->prev = c->next = NULL;
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

static void
schedule_reconnect(void)
{
	if (R.closing)
		return;
	uv_timer_start(&R.reconnect_timer, (uv_timer_cb)connect_now, (uint64_t)R.backoff_ms, 0);
	R.backoff_ms = R.backoff_ms * 2 > RECONNECT_MAX_MS ? RECONNECT_MAX_MS : R.backoff_ms * 2;
}

static void
reply_cb(redisAsyncContext *ac, void *r, void *privdata)
{
	struct call *c = privdata;
	(void)ac;

	list_remove(c);
	if (r)
		R.last_reply_ns = tr_mono_ns();
	if (!c->answered) {
		tr_metrics_redis_observe((double)(tr_mono_ns() - c->start_ns) / 1e9, r != NULL);
		c->cb(c->arg, r, r ? TR_OK : TR_EUNAVAILABLE);
	}
	free(c);
}

static void
script_loaded_cb(void *arg, const redisReply *reply, int status)
{
	struct script *s = arg;

	if (status == TR_OK && reply->type == REDIS_REPLY_STRING && reply->len == 40)
		memcpy(s->sha, reply->str, 41);
}

static void
setup_reply_cb(void *arg, const redisReply *reply, int status)
{
	(void)arg;
	if (status == TR_OK && reply->type == REDIS_REPLY_ERROR)
		tr_error("redis: connection setup failed: %s", reply->str);
}

static void
connected_cb(const redisAsyncContext *ac, int status)
{
	if (status != REDIS_OK) {
		/* hiredis frees the context after this callback */
		tr_warn("redis: connect to %s:%d failed: %s", R.cfg->redis_host, R.cfg->redis_port,
			ac->errstr);
		R.ac = NULL;
		R.connected = false;
		schedule_reconnect();
		return;
	}
	R.connected = true;
	R.backoff_ms = RECONNECT_MIN_MS;
	tr_info("redis: connected to %s:%d", R.cfg->redis_host, R.cfg->redis_port);
	/* Commands are pipelined in order: these run before anything else
	 * sent on this connection. */
	if (R.cfg->redis_user[0]) {
		const char *argv[] = {"AUTH", R.cfg->redis_user, R.cfg->redis_password};
		tr_redis_command(setup_reply_cb, NULL, 3, argv, NULL);
	} else if (R.cfg->redis_password[0]) {
		const char *argv[] = {"AUTH", R.cfg->redis_password};
		tr_redis_command(setup_reply_cb, NULL, 2, argv, NULL);
	}
	if (R.cfg->redis_db) {
		char db[8];
		snprintf(db, sizeof(db), "%d", R.cfg->redis_db);
		const char *argv[] = {"SELECT", db};
		tr_redis_command(setup_reply_cb, NULL, 2, argv, NULL);
	}
	for (int i = 0; i < R.nscripts; i++) {
		/* A restarted Redis has an empty script cache: until it has
		 * loaded the script again (it may still be loading its data),
		 * calls send the source. */
		R.scripts[i].sha[0] = '\0';
		const char *argv[] = {"SCRIPT", "LOAD", R.scripts[i].source};
		tr_redis_command(script_loaded_cb, &R.scripts[i], 3, argv, NULL);
	}
}

static void
disconnected_cb(const redisAsyncContext *ac, int status)
{
	(void)ac;
	if (R.connected && !R.closing)
		tr_warn("redis: disconnected (%s)", status == REDIS_OK ? "closed" : ac->errstr);
	R.ac = NULL;
	R.connected = false;
	schedule_reconnect();
}

static void
connect_now(void)
{
	redisAsyncContext *ac;

	if (R.closing || R.ac)
		return;
	ac = redisAsyncConnect(R.cfg->redis_host, R.cfg->redis_port);
	if (!ac || ac->err) {
		tr_warn("redis: cannot connect to %s:%d: %s", R.cfg->redis_host, R.cfg->redis_port,
			ac ? ac->errstr : "out of memory");
		if (ac)
			redisAsyncFree(ac);
		schedule_reconnect();
		return;
	}
	if (attach(ac) != 0) {
		redisAsyncFree(ac);
		schedule_reconnect();
		return;
	}
	R.ac = ac;
	redisAsyncSetConnectCallback(ac, connected_cb);
	redisAsyncSetDisconnectCallback(ac, disconnected_cb);
}

/* Drops a connection whose replies are overdue; everything pending on it is
 * answered TR_EUNAVAILABLE by hiredis (through reply_cb). */
static void
drop_connection(void)
{
	redisAsyncContext *ac = R.ac;

	if (!ac)
		return;
	bool was_connected = R.connected;
	R.connected = false;
	redisAsyncFree(ac); /* calls disconnected_cb when it was connected */
	if (!was_connected) {
		R.ac = NULL;
		schedule_reconnect();
	}
}

static void
sweep_cb(uv_timer_t *t)
{
	uint64_t now = tr_mono_ns();
	bool overdue = false;
	(void)t;

	/* A busy loop may not have read replies that did arrive: read what
	 * the socket holds before calling anything overdue. */
	if (R.head && R.head->deadline_ns <= now && R.ac && R.connected)
		redisAsyncHandleRead(R.ac);
	/* Redis answers in order: while replies keep arriving, the late ones
	 * were held up by this process (a loop busy with thousands of
	 * sockets), not by Redis, and come next. */
	if (R.connected && now - R.last_reply_ns < (uint64_t)R.cfg->dep_timeout_ms * 1000000u)
		return;
	for (struct call *c = R.head; c && c->deadline_ns <= now; c = c->next) {
		if (c->answered)
			continue;
		c->answered = true;
		overdue = true;
		tr_metrics_redis_observe((double)(now - c->start_ns) / 1e9, false);
		c->cb(c->arg, NULL, TR_EUNAVAILABLE);
	}
	if (overdue) {
		tr_warn("redis: no reply within %d ms, reconnecting", R.cfg->dep_timeout_ms);
		drop_connection();
	}
}

int
tr_redis_init(uv_loop_t *loop, const struct tr_config *cfg)
{
	R.loop = loop;
	R.cfg = cfg;
	R.backoff_ms = RECONNECT_MIN_MS;
	uv_timer_init(loop, &R.reconnect_timer);
	uv_timer_init(loop, &R.sweep_timer);
	uv_check_init(loop, &R.service);
	uv_check_start(&R.service, service_cb);
	uv_unref((uv_handle_t *)&R.service);
	uv_timer_start(&R.sweep_timer, sweep_cb, SWEEP_MS, SWEEP_MS);
	connect_now();
	return 0;
}

/* ---- the subscriber: a second connection in subscribe mode ---- */

#define MAX_CHANNELS 4

static struct {
	redisAsyncContext *ac;
	bool connected, up;
	int backoff_ms, nchannels, confirmed;
	const char *channels[MAX_CHANNELS];
	tr_redis_msg_cb on_msg;
	tr_redis_sub_state_cb on_state;
	uv_timer_t timer;
	bool started;
} S;

static void sub_connect(void);

static void
sub_lost(void)
{
	bool was_up = S.up;

	S.ac = NULL;
	S.connected = S.up = false;
	S.confirmed = 0;
	if (was_up)
		S.on_state(false);
	if (R.closing)
		return;
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
		if (++S.confirmed == S.nchannels && !S.up) {
			S.up = true;
			S.backoff_ms = RECONNECT_MIN_MS;
			tr_info("redis: subscribed to %d channels", S.nchannels);
			S.on_state(true);
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

static void
sub_connect(void)
{
	redisAsyncContext *ac;

	if (R.closing || S.ac)
		return;
	ac = redisAsyncConnect(R.cfg->redis_host, R.cfg->redis_port);
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

/* After every loop turn: with thousands of ready WebSocket sockets, epoll
 * hands out at most 1024 events per wait and Redis's socket could wait
 * for its turn for a second. Both connections send what is queued and
 * read what has arrived (a read of nothing costs one EAGAIN). */
static void
service_cb(uv_check_t *h)
{
	(void)h;
	if (R.ac && R.connected) {
		redisAsyncHandleWrite(R.ac);
		if (R.ac)
			redisAsyncHandleRead(R.ac);
	}
	if (S.ac && S.connected) {
		redisAsyncHandleWrite(S.ac);
		if (S.ac)
			redisAsyncHandleRead(S.ac);
	}
}

int
tr_redis_subscribe(const char *const *channels, int n, tr_redis_msg_cb on_msg,
		   tr_redis_sub_state_cb on_state)
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
	uv_timer_stop(&R.reconnect_timer);
	uv_timer_stop(&R.sweep_timer);
	uv_close((uv_handle_t *)&R.reconnect_timer, NULL);
	uv_close((uv_handle_t *)&R.sweep_timer, NULL);
	uv_check_stop(&R.service);
	uv_close((uv_handle_t *)&R.service, NULL);
	if (R.ac) {
		redisAsyncContext *ac = R.ac;
		R.ac = NULL;
		R.connected = false;
		redisAsyncFree(ac);
	}
}

bool
tr_redis_up(void)
{
	return R.connected;
}

int
tr_redis_command(tr_redis_cb cb, void *arg, int argc, const char **argv, const size_t *lens)
{
	size_t lenbuf[MAX_ARGS];
	struct call *c;

	if (!R.connected || !R.ac)
		return TR_EUNAVAILABLE;
	if (argc > MAX_ARGS)
		return TR_EINVALID;
	if (!lens) {
		for (int i = 0; i < argc; i++)
			lenbuf[i] = strlen(argv[i]);
		lens = lenbuf;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return TR_ENOMEM;
	c->cb = cb;
	c->arg = arg;
	c->start_ns = tr_mono_ns();
	c->deadline_ns = c->start_ns + (uint64_t)R.cfg->dep_timeout_ms * 1000000u;
	if (redisAsyncCommandArgv(R.ac, reply_cb, c, argc, argv, lens) != REDIS_OK) {
		free(c);
		return TR_EUNAVAILABLE;
	}
	c->prev = R.tail;
	if (R.tail)
		R.tail->next = c;
	else
		R.head = c;
	R.tail = c;
	return TR_OK;
}

int
tr_redis_script_register(const char *source)
{
	if (R.nscripts == MAX_SCRIPTS)
		return -1;
	R.scripts[R.nscripts].source = source;
	return R.nscripts++;
}

int
tr_redis_script_call(int script, tr_redis_cb cb, void *arg, int nkeys, int argc, const char **argv,
		     const size_t *lens)
{
	const char *full[MAX_ARGS];
	size_t full_lens[MAX_ARGS];
	char nk[12];
	struct script *s = &R.scripts[script];
	bool by_hash = s->sha[0] != '\0';

	if (argc + 3 > MAX_ARGS)
		return TR_EINVALID;
	snprintf(nk, sizeof(nk), "%d", nkeys);
	full[0] = by_hash ? "EVALSHA" : "EVAL";
	full[1] = by_hash ? s->sha : s->source;
	full[2] = nk;
	for (int i = 0; i < argc; i++) {
		full[i + 3] = argv[i];
		full_lens[i + 3] = lens ? lens[i] : strlen(argv[i]);
	}
	full_lens[0] = strlen(full[0]);
	full_lens[1] = strlen(full[1]);
	full_lens[2] = strlen(nk);
	return tr_redis_command(cb, arg, argc + 3, full, full_lens);
}

void
tr_redis_script_reset(int script)
{
	R.scripts[script].sha[0] = '\0';
}
