/* Redis: one async hiredis connection attached to the loop through an own
 * uv_poll_t adapter, reconnected automatically. Loop thread only.
 *
 * Every call either returns an error (and then its callback is never
 * called) or returns 0 and calls its callback exactly once: with the reply,
 * or with reply NULL and status TR_EUNAVAILABLE when Redis is down, the
 * connection drops, or no reply came within dep_timeout_ms. A call that
 * times out drops the connection (its state is unknown) and reconnects. */
#ifndef TR_REDIS_H
#define TR_REDIS_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "config.h"

typedef void (*tr_redis_cb)(void *arg, const redisReply *reply, int status);

int tr_redis_init(uv_loop_t *loop, const struct tr_config *cfg);
/* Starts closing: pending callbacks get TR_EUNAVAILABLE, handles close on
 * the next loop turns. */
void tr_redis_close(void);
bool tr_redis_up(void);

int tr_redis_command(tr_redis_cb cb, void *arg, int argc, const char **argv, const size_t *lens);

/* Lua scripts: registered once at start (before tr_redis_init), loaded on
 * every (re)connect with SCRIPT LOAD and called by hash; EVAL is used until
 * the hash is known. Returns the script id. */
int tr_redis_script_register(const char *source);
int tr_redis_script_call(int script, tr_redis_cb cb, void *arg, int nkeys, int argc,
			 const char **argv, const size_t *lens);

/* Forgets a script's hash after Redis answered NOSCRIPT (its script cache
 * was flushed): the next call sends the source again. */
void tr_redis_script_reset(int script);

/* Pub/sub on a second connection (loop thread), reconnected like the
 * first. on_msg gets every message of the channels; on_state(true) once
 * all are subscribed, on_state(false) when the connection is lost (what
 * was published meanwhile is missed). Call once, after tr_redis_init. */
typedef void (*tr_redis_msg_cb)(const char *channel, const char *payload, size_t len);
typedef void (*tr_redis_sub_state_cb)(bool up);
int tr_redis_subscribe(const char *const *channels, int n, tr_redis_msg_cb on_msg,
		       tr_redis_sub_state_cb on_state);
bool tr_redis_subscribed(void);

#endif
