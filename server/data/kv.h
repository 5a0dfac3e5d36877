/* Synchronous Redis for worker threads, in the terms module code needs:
 * commands whose reply is an integer (counters, limits, EVAL of a script
 * that returns one). Each worker thread has its own connection (connected
 * lazily, dropped and reopened after any error), with dep_timeout_ms as
 * connect and command timeout. Never call it on the loop thread: it
 * blocks. The platform's raw replies are in kvconn.h; the loop thread
 * uses redis.h. */
#ifndef TR_KV_H
#define TR_KV_H

#include <stddef.h>

/* Runs one command whose reply is an integer and stores it in *out.
 * TR_OK; TR_EUNAVAILABLE when Redis is unreachable or too slow;
 * TR_EINTERNAL when it answered anything but an integer (an error reply,
 * a script that returned something else). *out is left alone on failure. */
int tr_kv_integer(long long *out, int argc, const char **argv, const size_t *lens);
/* The same, printf-style, for commands without binary arguments. */
int tr_kv_integerf(long long *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Takes one token from the token bucket at key (rate tokens a second,
 * at most burst; Redis's clock, so every process shares it). *wait_ms:
 * 0 when a token was taken, else the milliseconds until one is. Codes as
 * tr_kv_integer. */
int tr_kv_rate_take(const char *key, long rate, long burst, long long *wait_ms);

#endif
