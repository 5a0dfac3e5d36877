/* The platform side of kv.h: the per-thread connections and raw hiredis
 * replies, for the framework's own Redis work (sessions, jobs, events).
 * Module code uses kv.h instead, and never includes this header (make
 * test checks). */
#ifndef TR_KVCONN_H
#define TR_KVCONN_H

#include <hiredis/hiredis.h>
#include <stddef.h>

#include "config.h"
#include "kv.h"

void tr_kv_init(const struct tr_config *cfg);
/* Closes every thread's connection; call once the workers are idle. */
void tr_kv_close_all(void);

/* Runs one command. NULL when Redis is unreachable or too slow (the caller
 * answers 503); otherwise the reply, which the caller frees with
 * freeReplyObject. An error reply is returned as such. */
redisReply *tr_kv_command(int argc, const char **argv, const size_t *lens);
/* The same for a command that blocks on purpose (XREADGROUP BLOCK): the
 * reply may take up to timeout_ms. Not retried. */
redisReply *tr_kv_command_wait(int argc, const char **argv, const size_t *lens, int timeout_ms);
/* tr_kv_command for a command known to span slots, which only one Redis
 * runs: refused (NULL, logged) in cluster mode. For the renames of the
 * single-Redis key migration (keymigrate.c) alone. */
redisReply *tr_kv_command_single_only(int argc, const char **argv, const size_t *lens);
/* tr_kv_command_wait for such a command: the job threads' one blocking
 * read of every queue stream on a single Redis (jobs.c). */
redisReply *tr_kv_command_wait_single_only(int argc, const char **argv, const size_t *lens,
					   int timeout_ms);
/* Printf-style, for commands without binary arguments. */
redisReply *tr_kv_commandf(const char *fmt, ...);

#endif
