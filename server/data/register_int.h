/* What the files of registers share (register.c: names, the process's
 * cache of states, snapshots and reading; register_post.c: posting one
 * movement or several, and reversals). Not for modules; see register.h for
 * the design.
 *
 * Movements: {_id: "<tenant>/<key>#<seq>", tenant_id, key, seq, op, d: {counter:
 * delta}, a: {counter: value after}, at, rb: "<tenant>/<key>#b<seq / 64>",
 * meta?, reverses?}; unique (tenant_id, op). Snapshots and the head hint
 * live in SNAPS: {_id: "<tenant>/<key>#s<n>", values} is the state after
 * every movement below n * 64; {_id: "<tenant>/<key>#h", snap: n} names
 * the newest snapshot known (a hint: reading goes on from it). */
#ifndef TR_REGISTER_INT_H
#define TR_REGISTER_INT_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stddef.h>

#include "counters.h"
#include "dbpool.h"

#define MOVES "register_moves"
#define SNAPS "register_snaps"

/* Appends {name: value} of the counters (by name) as field of doc; with
 * skip_zero, only those that are not 0. */
void reg_counters_append(const struct counters *m, bson_t *doc, const char *field, bool skip_zero);
/* Whether s is 1..max characters of letters, digits and extra. */
bool reg_chars_ok(const char *s, size_t max, const char *extra);
/* The name "<tenant>/<key>#<suffix><n>" into out (without n when n < 0):
 * a movement's _id, its bucket, a snapshot, the head hint, a cache slot. */
void reg_name_of(const struct tr_db *db, const char *key, const char *suffix, long long n,
		 char *out, size_t len);
/* A copy of the cached state of id; false when there is none. */
bool reg_cache_get(const char *id, long long *seq, struct counters *values);
/* Caches the state of id at seq, unless a newer one is cached. */
void reg_cache_put(const char *id, long long seq, const struct counters *values);
/* Stores snapshot n of key and moves the head hint to it. */
void reg_store_snapshot(struct tr_db *db, const char *key, long long n,
			const struct counters *values);
/* The state (*seq, *values: the caller frees them) of key, cached as
 * cache_id; with trust_cache, a cached state as it is, without catching up. */
int reg_read_state_as(struct tr_db *db, const char *key, const char *cache_id, bool trust_cache,
		      long long *seq, struct counters *values);
/* The stored movement as the API shows it, into *out (initialised by the
 * call). */
void reg_render(const bson_t *stored, bson_t *out);

#endif
