/* Redis: async hiredis connections attached to the loop through an own
 * uv_poll_t adapter, reconnected automatically. Loop thread only.
 *
 * Single mode (redis_mode = single): one connection to redis_url.
 * Cluster mode: the seed (redis_url) answers CLUSTER SLOTS; then one
 * connection per master, each command sent to the master of its keys'
 * slot (keyless ones to any master), MOVED and ASK followed (at most 5
 * redirects), the map read again after a MOVED or a lost connection.
 * In both modes a command whose keys lie in different slots is refused
 * (TR_EINVALID, logged at error level): the single-mode suite thereby
 * proves every command is cluster-safe.
 *
 * Every call either returns an error (and then its callback is never
 * called) or returns 0 and calls its callback exactly once: with the reply,
 * or with reply NULL and status TR_EUNAVAILABLE when Redis is down, the
 * connection drops, or no reply came within dep_timeout_ms. A call that
 * times out drops its connection (its state is unknown) and reconnects. */
#ifndef TR_REDIS_H
#define TR_REDIS_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config.h"

typedef void (*tr_redis_cb)(void *arg, const redisReply *reply, int status);

int tr_redis_init(uv_loop_t *loop, const struct tr_config *cfg);
/* Starts closing: pending callbacks get TR_EUNAVAILABLE, handles close on
 * the next loop turns. */
void tr_redis_close(void);
bool tr_redis_up(void);

/* Whether a connection that last answered at last_reply_ns (monotonic) has
 * been silent for timeout_ns at now. A reply read after now was taken (the
 * deadline sweep reads the socket itself) is newer than now: not silent. */
bool tr_redis_silent(uint64_t now, uint64_t last_reply_ns, uint64_t timeout_ns);

int tr_redis_command(tr_redis_cb cb, void *arg, int argc, const char **argv, const size_t *lens);

/* Lua scripts: registered once at start (before tr_redis_init), loaded on
 * every (re)connect with SCRIPT LOAD (on every master: scripts live per
 * node) and called by hash; EVAL is used until that node has the hash.
 * Returns the script id. */
int tr_redis_script_register(const char *source);
int tr_redis_script_call(int script, tr_redis_cb cb, void *arg, int nkeys, int argc,
			 const char **argv, const size_t *lens);

/* The same for a script whose keys may lie in different slots, which
 * only one Redis runs: refused (TR_EINVALID, logged) in cluster mode. For
 * the event publish on a single Redis (events.c), whose one call keeps
 * webhook lanes in the stream's order. */
int tr_redis_script_call_single_only(int script, tr_redis_cb cb, void *arg, int nkeys, int argc,
				     const char **argv, const size_t *lens);

/* Forgets a script's hash after Redis answered NOSCRIPT (its script cache
 * was flushed): the next call sends the source again. (The node that
 * answered NOSCRIPT is already forgotten by the reply itself; this
 * forgets it on every node.) */
void tr_redis_script_reset(int script);

/* Pub/sub on connections of their own (loop thread), reconnected like
 * the others. on_msg gets every message of the channels; on_state(true)
 * once all are subscribed, on_state(false) when a subscription is lost
 * (what was published meanwhile is missed). Call once, after
 * tr_redis_init.
 * channels are classic channels (SUBSCRIBE: in a cluster one connection
 * to any master hears every node's PUBLISH). In cluster mode a non-NULL
 * shard_prefix also subscribes the sharded channel of every slot,
 * "<shard_prefix>{TAG}" (see tr_redis_shard_channel), with SSUBSCRIBE on
 * one connection per master; a slot that moves away is subscribed again
 * on its new owner (on_state(false) meanwhile). */
typedef void (*tr_redis_msg_cb)(const char *channel, const char *payload, size_t len);
typedef void (*tr_redis_sub_state_cb)(bool up);
int tr_redis_subscribe(const char *const *channels, int n, const char *shard_prefix,
		       tr_redis_msg_cb on_msg, tr_redis_sub_state_cb on_state);
/* The sharded channel "<prefix>{TAG}" of key's slot (TAG hashes to that
 * slot, so a script whose keys are in it may SPUBLISH there). Any thread. */
int tr_redis_shard_channel(const char *prefix, const char *key, size_t keylen, char *buf,
			   size_t len);
bool tr_redis_subscribed(void);

#endif
