#include "kvconn.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util.h"

struct kvconn {
	redisContext *ctx;
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

void
tr_kv_close_all(void)
{
	pthread_mutex_lock(&K.lock);
	for (struct kvconn *c = K.all, *next; c; c = next) {
		next = c->next;
		if (c->ctx)
			redisFree(c->ctx);
		free(c);
	}
	K.all = NULL;
	pthread_mutex_unlock(&K.lock);
}

static void
drop(void)
{
	if (mine && mine->ctx) {
		redisFree(mine->ctx);
		mine->ctx = NULL;
	}
}

static bool
setup_ok(redisReply *r)
{
	bool ok = r && r->type != REDIS_REPLY_ERROR;
	if (r)
		freeReplyObject(r);
	return ok;
}

static redisContext *
connection(void)
{
	struct timeval tv = {K.cfg->dep_timeout_ms / 1000, (K.cfg->dep_timeout_ms % 1000) * 1000};
	redisContext *c;

	if (!mine) {
		mine = calloc(1, sizeof(*mine));
		if (!mine)
			return NULL;
		pthread_mutex_lock(&K.lock);
		mine->next = K.all;
		K.all = mine;
		pthread_mutex_unlock(&K.lock);
	}
	if (mine->ctx)
		return mine->ctx;
	c = redisConnectWithTimeout(K.cfg->redis_host, K.cfg->redis_port, tv);
	if (!c || c->err) {
		if (c)
			redisFree(c);
		return NULL;
	}
	redisSetTimeout(c, tv);
	mine->ctx = c;
	if (K.cfg->redis_user[0] &&
	    !setup_ok(redisCommand(c, "AUTH %s %s", K.cfg->redis_user, K.cfg->redis_password)))
		goto fail;
	if (!K.cfg->redis_user[0] && K.cfg->redis_password[0] &&
	    !setup_ok(redisCommand(c, "AUTH %s", K.cfg->redis_password)))
		goto fail;
	if (K.cfg->redis_db && !setup_ok(redisCommand(c, "SELECT %d", K.cfg->redis_db)))
		goto fail;
	return c;
fail:
	drop();
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

redisReply *
tr_kv_command(int argc, const char **argv, const size_t *lens)
{
	for (int attempt = 0; attempt < 2; attempt++) {
		bool fresh = !mine || !mine->ctx;
		redisContext *c = connection();
		if (!c)
			return NULL;
		redisReply *r = redisCommandArgv(c, argc, argv, lens);
		if (r)
			return r;
		bool retry = !fresh && closed_by_peer(c);
		drop(); /* its state is unknown */
		if (!retry)
			break;
	}
	return NULL;
}

redisReply *
tr_kv_command_wait(int argc, const char **argv, const size_t *lens, int timeout_ms)
{
	struct timeval normal = {K.cfg->dep_timeout_ms / 1000,
				 (K.cfg->dep_timeout_ms % 1000) * 1000};
	struct timeval longer = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
	redisContext *c = connection();
	redisReply *r;

	if (!c)
		return NULL;
	redisSetTimeout(c, longer);
	r = redisCommandArgv(c, argc, argv, lens);
	if (!r) {
		drop();
		return NULL;
	}
	redisSetTimeout(c, normal);
	return r;
}

/* One printf-style command; a closed connection is retried once, as in
 * tr_kv_command. */
static redisReply *
command_v(const char *fmt, va_list ap)
{
	for (int attempt = 0; attempt < 2; attempt++) {
		bool fresh = !mine || !mine->ctx;
		redisContext *c = connection();
		va_list again;
		if (!c)
			return NULL;
		va_copy(again, ap);
		redisReply *r = redisvCommand(c, fmt, again);
		va_end(again);
		if (r)
			return r;
		bool retry = !fresh && closed_by_peer(c);
		drop();
		if (!retry)
			break;
	}
	return NULL;
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
