#include "kvconn.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "rcluster.h"
#include "util.h"

/* Redirections one command may follow (MOVED, ASK) before it gives up: a
 * slot moves once at a time, so more means the cluster is reshaping. */
#define MAX_REDIRECTS 5

struct node_conn {
	char host[64];
	int port;
	redisContext *ctx;
};

/* One worker thread's Redis state; only that thread touches it, except
 * tr_kv_close_all once the workers are idle. Single mode uses ctx. Cluster
 * mode keeps a connection per master it has talked to (nodes, by address,
 * so a new slot map keeps them) and its own copy of the slot map: a
 * per-thread map needs no lock on the hot path, and a reshard costs each
 * thread one CLUSTER SLOTS, which is cheap and rare. */
struct kvconn {
	redisContext *ctx;
	struct node_conn nodes[TR_RCL_MAX_NODES];
	int nnodes;
	struct tr_rcl_map *map; /* NULL until read; stale ones are re-read */
	bool map_stale;
	struct kvconn *next;
};

/* Every connection is on this list so that shutdown can free them; each is
 * used only by the thread that made it. */
static struct {
	const struct tr_config *cfg;
	pthread_mutex_t lock;
	struct kvconn *all;
} K = {.lock = PTHREAD_MUTEX_INITIALIZER};

static __thread struct kvconn *mine;

void
tr_kv_init(const struct tr_config *cfg)
{
	K.cfg = cfg;
}

static void
free_state(struct kvconn *c)
{
	if (c->ctx)
		redisFree(c->ctx);
	for (int i = 0; i < c->nnodes; i++)
		if (c->nodes[i].ctx)
			redisFree(c->nodes[i].ctx);
	free(c->map);
	free(c);
}

void
tr_kv_close_all(void)
{
	pthread_mutex_lock(&K.lock);
	for (struct kvconn *c = K.all, *next; c; c = next) {
		next = c->next;
		free_state(c);
	}
	K.all = NULL;
	pthread_mutex_unlock(&K.lock);
}

static bool
setup_ok(redisReply *r)
{
	bool ok = r && r->type != REDIS_REPLY_ERROR;
	if (r)
		freeReplyObject(r);
	return ok;
}

static struct timeval
ms_tv(int ms)
{
	return (struct timeval){ms / 1000, (ms % 1000) * 1000};
}

static struct kvconn *
state(void)
{
	if (!mine) {
		mine = calloc(1, sizeof(*mine));
		if (!mine)
			return NULL;
		pthread_mutex_lock(&K.lock);
		mine->next = K.all;
		K.all = mine;
		pthread_mutex_unlock(&K.lock);
	}
	return mine;
}

/* A new connection to host:port, authenticated (and on the configured db
 * in single mode), or NULL. */
static redisContext *
dial(const char *host, int port)
{
	struct timeval tv = ms_tv(K.cfg->dep_timeout_ms);
	redisContext *c = redisConnectWithTimeout(host, port, tv);

	if (!c || c->err)
		goto fail;
	redisSetTimeout(c, tv);
	if (K.cfg->redis_user[0] &&
	    !setup_ok(redisCommand(c, "AUTH %s %s", K.cfg->redis_user, K.cfg->redis_password)))
		goto fail;
	if (!K.cfg->redis_user[0] && K.cfg->redis_password[0] &&
	    !setup_ok(redisCommand(c, "AUTH %s", K.cfg->redis_password)))
		goto fail;
	if (!K.cfg->redis_cluster && K.cfg->redis_db &&
	    !setup_ok(redisCommand(c, "SELECT %d", K.cfg->redis_db)))
		goto fail;
	return c;
fail:
	if (c)
		redisFree(c);
	return NULL;
}

/* A connection that Redis closed (it restarted, say) fails its next
 * command without running it: that one case is retried once on a new
 * connection. A timeout is not retried, since the command may have run. */
static bool
closed_by_peer(const redisContext *c)
{
	return c->err == REDIS_ERR_EOF ||
	       (c->err == REDIS_ERR_IO && (errno == ECONNRESET || errno == EPIPE));
}

/* ---- single mode: one connection per thread ---- */

static redisReply *
single_command(int argc, const char **argv, const size_t *lens, int timeout_ms)
{
	struct kvconn *k = state();

	if (!k)
		return NULL;
	for (int attempt = 0; attempt < 2; attempt++) {
		bool fresh = !k->ctx;
		if (!k->ctx)
			k->ctx = dial(K.cfg->redis_host, K.cfg->redis_port);
		if (!k->ctx)
			return NULL;
		if (timeout_ms)
			redisSetTimeout(k->ctx, ms_tv(timeout_ms));
		redisReply *r = redisCommandArgv(k->ctx, argc, argv, lens);
		if (r) {
			if (timeout_ms)
				redisSetTimeout(k->ctx, ms_tv(K.cfg->dep_timeout_ms));
			return r;
		}
		bool retry = !fresh && !timeout_ms && closed_by_peer(k->ctx);
		redisFree(k->ctx); /* its state is unknown */
		k->ctx = NULL;
		if (!retry)
			break;
	}
	return NULL;
}

/* ---- cluster mode: a connection per master, routed by slot ---- */

static struct node_conn *
node_conn(struct kvconn *k, const char *host, int port)
{
	for (int i = 0; i < k->nnodes; i++)
		if (k->nodes[i].port == port && strcmp(k->nodes[i].host, host) == 0)
			return &k->nodes[i];
	if (k->nnodes == TR_RCL_MAX_NODES || strlen(host) >= sizeof(k->nodes[0].host))
		return NULL;
	struct node_conn *n = &k->nodes[k->nnodes++];
	snprintf(n->host, sizeof(n->host), "%s", host);
	n->port = port;
	n->ctx = NULL;
	return n;
}

static void
node_drop(struct node_conn *n)
{
	if (n->ctx) {
		redisFree(n->ctx);
		n->ctx = NULL;
	}
}

/* Reads the slot map from a master this thread knows, the seed (redis_url)
 * at first. false when none answers. */
static bool
refresh_map(struct kvconn *k)
{
	if (!k->map) {
		k->map = malloc(sizeof(*k->map));
		if (!k->map)
			return false;
		k->map->nnodes = 0;
		k->map_stale = true;
	}
	if (k->nnodes == 0 && !node_conn(k, K.cfg->redis_host, K.cfg->redis_port))
		return false;
	/* masters already connected first (no connect timeout to wait out
	 * when one has failed), then the others; the seed is among them */
	for (int pass = 0; pass < 2 * k->nnodes; pass++) {
		struct node_conn *n = &k->nodes[pass % k->nnodes];
		bool connected = n->ctx != NULL;
		if (connected != (pass < k->nnodes))
			continue;
		if (!n->ctx)
			n->ctx = dial(n->host, n->port);
		if (!n->ctx)
			continue;
		redisReply *r = redisCommand(n->ctx, "CLUSTER SLOTS");
		if (!r) {
			node_drop(n);
			continue;
		}
		int rc = tr_rcl_map_parse(k->map, r, n->host);
		freeReplyObject(r);
		if (rc == 0) {
			k->map_stale = false;
			return true;
		}
		tr_error("kv: CLUSTER SLOTS from %s:%d is not a slot map", n->host, n->port);
	}
	k->map_stale = true;
	return false;
}

/* The master serving slot (a master for TR_RCL_ANY), by the map. */
static struct node_conn *
route(struct kvconn *k, int slot)
{
	if ((!k->map || k->map_stale) && !refresh_map(k))
		return NULL;
	/* a keyless command goes to a master of the map, which is live as of
	 * the last read, rather than to the seed, which may have failed */
	int i = slot == TR_RCL_ANY ? (k->map->nnodes ? 0 : -1) : tr_rcl_map_node(k->map, slot);
	if (i < 0) {
		k->map_stale = true;
		return NULL;
	}
	return node_conn(k, k->map->nodes[i].host, k->map->nodes[i].port);
}

/* MOVED: the slot has a new owner (retry there, and re-read the map before
 * the next command); ASK: the slot is being migrated and this key already
 * went (retry there once, after ASKING). Bounded by MAX_REDIRECTS. A
 * connection closed by the peer is retried once, as in single mode. */
static redisReply *
cluster_command(int argc, const char **argv, const size_t *lens, int slot, int timeout_ms)
{
	struct kvconn *k = state();
	struct node_conn *n;
	bool asking = false, retried = false;

	if (!k || !(n = route(k, slot)))
		return NULL;
	for (int hop = 0; hop <= MAX_REDIRECTS; hop++) {
		bool fresh = !n->ctx;
		if (!n->ctx)
			n->ctx = dial(n->host, n->port);
		if (!n->ctx) {
			k->map_stale = true; /* the master may have failed over */
			return NULL;
		}
		if (asking && !setup_ok(redisCommand(n->ctx, "ASKING"))) {
			node_drop(n);
			return NULL;
		}
		if (timeout_ms)
			redisSetTimeout(n->ctx, ms_tv(timeout_ms));
		redisReply *r = redisCommandArgv(n->ctx, argc, argv, lens);
		if (!r) {
			bool retry = !fresh && !retried && !timeout_ms && closed_by_peer(n->ctx);
			node_drop(n);
			k->map_stale = true;
			if (!retry)
				return NULL;
			retried = true;
			asking = false;
			continue;
		}
		if (timeout_ms)
			redisSetTimeout(n->ctx, ms_tv(K.cfg->dep_timeout_ms));
		char host[64];
		int rslot, port;
		enum tr_rcl_redirect kind =
		    r->type == REDIS_REPLY_ERROR
			? tr_rcl_redirect(r->str, r->len, &rslot, host, sizeof(host), &port)
			: TR_RCL_NOT_REDIRECT;
		if (kind == TR_RCL_NOT_REDIRECT)
			return r;
		if (!host[0])
			snprintf(host, sizeof(host), "%s", n->host);
		freeReplyObject(r);
		if (kind == TR_RCL_MOVED)
			k->map_stale = true;
		asking = kind == TR_RCL_ASK;
		if (!(n = node_conn(k, host, port)))
			return NULL;
	}
	tr_error("kv: %.*s redirected more than %d times; giving up",
		 (int)(lens ? lens[0] : strlen(argv[0])), argv[0], MAX_REDIRECTS);
	return NULL;
}

/* Every command goes through here. One whose keys hash to different slots
 * is refused in both modes: one Redis would run it, a cluster would not,
 * so refusing it everywhere lets the single-Redis tests prove that every
 * command is cluster-safe. */
static redisReply *
command_argv(int argc, const char **argv, const size_t *lens, int timeout_ms)
{
	int slot = tr_rcl_command_slot(argc, argv, lens);

	if (slot == TR_RCL_CROSS) {
		tr_error("kv: %.*s refused: its keys are in different cluster slots",
			 (int)(lens ? lens[0] : strlen(argv[0])), argv[0]);
		return NULL;
	}
	if (!K.cfg->redis_cluster)
		return single_command(argc, argv, lens, timeout_ms);
	return cluster_command(argc, argv, lens, slot, timeout_ms);
}

redisReply *
tr_kv_command(int argc, const char **argv, const size_t *lens)
{
	return command_argv(argc, argv, lens, 0);
}

redisReply *
tr_kv_command_single_only(int argc, const char **argv, const size_t *lens)
{
	if (K.cfg->redis_cluster) {
		tr_error("kv: %.*s refused: its keys span cluster slots",
			 (int)(lens ? lens[0] : strlen(argv[0])), argv[0]);
		return NULL;
	}
	return single_command(argc, argv, lens, 0);
}

redisReply *
tr_kv_command_wait_single_only(int argc, const char **argv, const size_t *lens, int timeout_ms)
{
	if (K.cfg->redis_cluster) {
		tr_error("kv: %.*s refused: its keys span cluster slots",
			 (int)(lens ? lens[0] : strlen(argv[0])), argv[0]);
		return NULL;
	}
	return single_command(argc, argv, lens, timeout_ms > 0 ? timeout_ms : 1);
}

redisReply *
tr_kv_command_wait(int argc, const char **argv, const size_t *lens, int timeout_ms)
{
	return command_argv(argc, argv, lens, timeout_ms > 0 ? timeout_ms : 1);
}

/* Splits a command hiredis formatted (RESP: "*N\r\n" then "$len\r\n" arg
 * "\r\n" per argument) into argv pointing into buf and lens. The count is
 * at most max. Returns it, or -1 for anything else. */
static int
split_formatted(const char *buf, size_t len, const char **argv, size_t *lens, int max)
{
	const char *p = buf, *end = buf + len;
	char *e;
	long n;

	if (len < 4 || *p != '*')
		return -1;
	n = strtol(p + 1, &e, 10);
	if (e + 2 > end || e[0] != '\r' || e[1] != '\n' || n < 1 || n > max)
		return -1;
	p = e + 2;
	for (long i = 0; i < n; i++) {
		if (p >= end || *p != '$')
			return -1;
		long l = strtol(p + 1, &e, 10);
		if (l < 0 || e + 2 > end || e[0] != '\r' || e[1] != '\n' ||
		    (size_t)(end - (e + 2)) < (size_t)l + 2)
			return -1;
		argv[i] = e + 2;
		lens[i] = (size_t)l;
		p = e + 2 + l;
		if (p[0] != '\r' || p[1] != '\n')
			return -1;
		p += 2;
	}
	return p == end ? (int)n : -1;
}

/* A printf-style command, formatted to arguments first so that its keys,
 * and so its slot, are known. */
static redisReply *
command_v(const char *fmt, va_list ap)
{
	char *buf = NULL;
	const char *argv[32];
	size_t lens[32];
	redisReply *r = NULL;
	int len = redisvFormatCommand(&buf, fmt, ap);
	int argc = len > 0 ? split_formatted(buf, (size_t)len, argv, lens, 32) : -1;

	if (argc < 0)
		tr_error("kv: cannot format the command \"%s\"", fmt);
	else
		r = command_argv(argc, argv, lens, 0);
	if (buf)
		redisFreeCommand(buf);
	return r;
}

redisReply *
tr_kv_commandf(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	redisReply *r = command_v(fmt, ap);
	va_end(ap);
	return r;
}

/* The integer of reply r, which it frees. */
static int
integer_of(redisReply *r, long long *out)
{
	int rc = TR_EUNAVAILABLE;

	if (r) {
		rc = r->type == REDIS_REPLY_INTEGER ? TR_OK : TR_EINTERNAL;
		if (rc == TR_OK)
			*out = r->integer;
		freeReplyObject(r);
	}
	return rc;
}

int
tr_kv_integer(long long *out, int argc, const char **argv, const size_t *lens)
{
	return integer_of(tr_kv_command(argc, argv, lens), out);
}

int
tr_kv_integerf(long long *out, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	redisReply *r = command_v(fmt, ap);
	va_end(ap);
	return integer_of(r, out);
}

static const char rate_lua[] =
    "local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
    "local b = redis.call('HMGET', KEYS[1], 'n', 'ts')\n"
    "local n, ts = tonumber(b[1]) or burst, tonumber(b[2]) or now\n"
    "n = math.min(burst, n + math.max(0, now - ts) * rate / 1000)\n"
    "local wait = 0\n"
    "if n >= 1 then n = n - 1 else wait = math.ceil((1 - n) * 1000 / rate) end\n"
    "redis.call('HSET', KEYS[1], 'n', tostring(n), 'ts', tostring(now))\n"
    "redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)\n"
    "return wait\n";

int
tr_kv_rate_take(const char *key, long rate, long burst, long long *wait_ms)
{
	char r[24], b[24];
	const char *argv[] = {"EVAL", rate_lua, "1", key, r, b};

	snprintf(r, sizeof(r), "%ld", rate);
	snprintf(b, sizeof(b), "%ld", burst);
	return tr_kv_integer(wait_ms, 6, argv, NULL);
}
