/* Synchronous Redis for worker threads. Each worker thread has its own
 * connection (connected lazily, dropped and reopened after any error), with
 * dep_timeout_ms as connect and command timeout. Never call it on the loop
 * thread: it blocks. The loop thread uses redis.h instead. */
#ifndef TR_KV_H
#define TR_KV_H

#include <hiredis/hiredis.h>
#include <stddef.h>

#include "config.h"

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
/* Printf-style, for commands without binary arguments. */
redisReply *tr_kv_commandf(const char *fmt, ...);

#endif
