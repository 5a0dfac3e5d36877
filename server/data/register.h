/* Registers: exact running balances and period totals, for stock, accounts
 * and report totals alike.
 *
 * A register is named by a key within the tenant ("stock/<product>/<wh>",
 * "crm.deals/2026-03") and holds int64 counters by name. It changes only
 * by movements, and these invariants hold, across processes, on FerretDB
 * and MongoDB alike:
 *
 *   - A movement is immutable. It is keyed by (register key, sequence):
 *     sequences are 1, 2, 3, ... without a gap, each taken by one unique
 *     insert, so two writers of the same sequence collide and the loser
 *     reads again and retries on the new state.
 *   - A movement carries, for each counter it changes, the delta and the
 *     value after it: the balance at any sequence can be read, never
 *     recomputed.
 *   - A floor (balances never below zero, say) is checked against the
 *     state the movement is appended to, so no sequence ever shows a value
 *     below it; a movement that would cross it is refused (TR_ELIMIT) and
 *     nothing is written.
 *   - Every movement has an operation id, unique in the tenant: posting the
 *     same operation again finds the first movement instead of adding one.
 *   - Nothing posted is edited. A correction is a reversing movement
 *     (tr_register_reverse), which a movement gets at most once.
 *
 * Reading a register costs a few lookups by key whatever its length:
 * every TR_REG_BUCKET movements a snapshot of all counters is stored, and
 * the state is the latest snapshot plus the movements after it (found by
 * equality on their bucket).
 *
 * Worker threads only. Keys: 1..200 characters of letters, digits and
 * "_.:/-"; counter names: 1..100 of letters, digits and "_:|-". */
#ifndef TR_REGISTER_H
#define TR_REGISTER_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "module.h"

#define TR_REG_BUCKET 64

struct tr_reg_delta {
	const char *counter;
	int64_t delta;
};

/* The counters a movement would follow (opaque), and one of them (0 when
 * absent). */
struct tr_reg_state;
int64_t tr_reg_value(const struct tr_reg_state *s, const char *counter);

struct tr_reg_post {
	const char *key;
	const char *op_id; /* the operation's id, unique in the tenant: 1..400 chars */
	const struct tr_reg_delta *deltas;
	size_t ndeltas;
	bool has_floor; /* no counter the movement changes may end below floor */
	int64_t floor;
	const bson_t *meta; /* stored with the movement as "meta" (reason, document), or NULL */
	/* Deltas that depend on the state the movement follows (stock leaving
	 * at its moving-average cost), or NULL. Called on every attempt with
	 * that state, it sets the delta of each of the n counters `deltas`
	 * names (their deltas here are ignored), or returns false to refuse
	 * the movement on that state (TR_ELIMIT, as a floor does). The
	 * movement is appended only right after the state it was reckoned on,
	 * so the answer is exact under any number of writers.
	 * tr_register_post only. */
	bool (*reckon)(void *arg, const struct tr_reg_state *state, struct tr_reg_delta *deltas,
		       size_t n);
	void *reckon_arg;
};

/* Posts one movement. On TR_OK *movement (initialised by the call) is the
 * movement as stored {key, seq, op, deltas, after, at, meta, reverses} and
 * *replayed tells whether it was posted earlier under the same op_id (then
 * it may differ from p: the caller compares). TR_ELIMIT: refused by the
 * floor; *movement is then the state it would have changed {key, seq,
 * values}. TR_EINVALID: a bad key, counter or op_id, or a sum that would
 * overflow. TR_EBUSY: too many writers of this register at once. */
int tr_register_post(struct tr_db *db, const struct tr_reg_post *p, bson_t *movement,
		     bool *replayed);

/* Posts several movements, to different registers, as tr_register_post
 * would one after the other; when this process holds the state of every
 * one of them, they are appended by one insert (one transaction on
 * FerretDB), and one by one only when that collides. */
int tr_register_post_all(struct tr_db *db, const struct tr_reg_post *posts, size_t n);

/* Reverses movement seq of key: the same counters, the deltas negated,
 * "reverses": seq, op_id "reverse:<key>:<seq>" (so a movement is reversed
 * once: a second call finds the first reversal, *replayed). The floor
 * applies as for any movement. TR_ENOTFOUND when there is no such
 * movement; TR_EINVALID for a movement that is itself a reversal. */
int tr_register_reverse(struct tr_db *db, const char *key, long long seq, bool has_floor,
			int64_t floor, const bson_t *meta, bson_t *movement, bool *replayed);

/* The register's state: {key, seq (0: nothing posted), values: {counter:
 * value}}, values 0 left out. */
int tr_register_read(struct tr_db *db, const char *key, bson_t *state);

/* The movement posted under op_id, as tr_register_post answers it, into
 * *out (initialised by the call); *found false when there is none. */
int tr_register_find_op(struct tr_db *db, const char *op_id, bson_t *out, bool *found);

/* Movement seq of key, as stored; TR_ENOTFOUND. */
int tr_register_movement(struct tr_db *db, const char *key, long long seq, bson_t *out);

/* Appends to the array `items` up to limit movements of key, newest first,
 * with seq below `before` (<= 0: from the newest); *next (0: none) is the
 * `before` of the following page. */
int tr_register_movements(struct tr_db *db, const char *key, long long before, int limit,
			  bson_t *items, long long *next);

/* Is key a valid register key? */
bool tr_register_key_ok(const char *key);

#endif
