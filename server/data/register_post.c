/* Registers (register.h), the posting side: one movement appended after
 * the register's newest (each sequence one unique insert, retried on a
 * collision, the floor checked against the state it appends to), several
 * at once in one insert when their states are cached, and reversals.
 * Reading states is in register.c; the storage layout in register_int.h. */
#include "register.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "counters.h"
#include "dbpool.h"
#include "log.h"
#include "register_int.h"
#include "util.h"

#define ATTEMPTS 400
#define STRIPES 64
#define MAX_DELTAS 64 /* of a reckoned movement, or a reversed one */

/* ---- names ---- */

static bool
counter_ok(const char *name)
{
	return name && reg_chars_ok(name, 100, "_:|-");
}

static bool
op_ok(const char *op)
{
	size_t n = op ? strlen(op) : 0;

	if (n == 0 || n > 400)
		return false;
	for (const unsigned char *p = (const unsigned char *)op; *p; p++)
		if (*p < 0x21 || *p == 0x7f)
			return false;
	return true;
}

/* ---- the process's view: a lock per key ---- */

static pthread_mutex_t stripes[STRIPES] = {[0 ... STRIPES - 1] = PTHREAD_MUTEX_INITIALIZER};

static pthread_mutex_t *
key_lock(const char *id)
{
	return &stripes[tr_name_hash(id) % STRIPES];
}

/* ---- writing ---- */

/* The movement posted under op, if any. */
static int
find_op(struct tr_db *db, const char *op, bson_t *out, bool *found)
{
	bson_t filter = BSON_INITIALIZER, doc;
	int rc;

	BSON_APPEND_OID(&filter, "tenant_id", &db->tenant_id);
	BSON_APPEND_UTF8(&filter, "op", op);
	rc = tr_db_first(db, MOVES, &filter, &doc);
	*found = rc == TR_OK;
	if (*found)
		reg_render(&doc, out);
	bson_destroy(&doc);
	bson_destroy(&filter);
	return rc == TR_ENOTFOUND ? TR_OK : rc;
}

int
tr_register_find_op(struct tr_db *db, const char *op_id, bson_t *out, bool *found)
{
	bson_init(out);
	*found = false;
	if (!db->has_tenant || !op_ok(op_id))
		return TR_EINVALID;
	return find_op(db, op_id, out, found);
}

/* The movement that appends p after (seq, values), into *stored: TR_OK,
 * TR_ELIMIT (the floor), TR_EINVALID (an overflow). */
static int
build(struct tr_db *db, const struct tr_reg_post *p, long long reverses, long long seq,
      const struct counters *values, bson_t *stored)
{
	bson_t d, a;
	char id[320], rb[320];

	for (size_t i = 0; i < p->ndeltas; i++) {
		int64_t now = counters_get(values, p->deltas[i].counter), after;
		if (__builtin_add_overflow(now, p->deltas[i].delta, &after))
			return TR_EINVALID;
		if (p->has_floor && after < p->floor && p->deltas[i].delta < 0)
			return TR_ELIMIT;
	}
	reg_name_of(db, p->key, "", seq + 1, id, sizeof(id));
	reg_name_of(db, p->key, "b", (seq + 1) / TR_REG_BUCKET, rb, sizeof(rb));
	bson_reinit(stored);
	BSON_APPEND_UTF8(stored, "_id", id);
	BSON_APPEND_OID(stored, "tenant_id", &db->tenant_id);
	BSON_APPEND_UTF8(stored, "key", p->key);
	BSON_APPEND_INT64(stored, "seq", seq + 1);
	BSON_APPEND_UTF8(stored, "op", p->op_id);
	BSON_APPEND_DOCUMENT_BEGIN(stored, "d", &d);
	for (size_t i = 0; i < p->ndeltas; i++)
		BSON_APPEND_INT64(&d, p->deltas[i].counter, p->deltas[i].delta);
	bson_append_document_end(stored, &d);
	BSON_APPEND_DOCUMENT_BEGIN(stored, "a", &a);
	for (size_t i = 0; i < p->ndeltas; i++)
		BSON_APPEND_INT64(&a, p->deltas[i].counter,
				  counters_get(values, p->deltas[i].counter) + p->deltas[i].delta);
	bson_append_document_end(stored, &a);
	BSON_APPEND_DATE_TIME(stored, "at", tr_now_ms());
	BSON_APPEND_UTF8(stored, "rb", rb);
	if (p->meta)
		BSON_APPEND_DOCUMENT(stored, "meta", p->meta);
	if (reverses > 0)
		BSON_APPEND_INT64(stored, "reverses", reverses);
	return TR_OK;
}

/* The values after p. */
static int
advance(const struct tr_reg_post *p, struct counters *values)
{
	for (size_t i = 0; i < p->ndeltas; i++)
		if (!counters_set(values, p->deltas[i].counter,
				  counters_get(values, p->deltas[i].counter) + p->deltas[i].delta))
			return TR_ENOMEM;
	return TR_OK;
}

/* One attempt at appending the movement after (seq, values). TR_OK with
 * *stored filled, TR_EDUPLICATE (the sequence or the op is taken),
 * TR_ELIMIT (the floor), others. */
static int
append(struct tr_db *db, const struct tr_reg_post *p, long long reverses, long long seq,
       struct counters *values, bson_t *stored)
{
	bson_error_t error;
	mongoc_collection_t *c;
	int rc = build(db, p, reverses, seq, values, stored);

	if (rc != TR_OK)
		return rc;
	c = tr_db_collection(db, MOVES);
	if (!mongoc_collection_insert_one(c, stored, NULL, NULL, &error))
		rc = tr_db_fail("insert", MOVES, &error);
	mongoc_collection_destroy(c);
	return rc == TR_OK ? advance(p, values) : rc;
}

static int
post(struct tr_db *db, const struct tr_reg_post *p, long long reverses, bson_t *movement,
     bool *replayed)
{
	struct counters values;
	char cache_id[256];
	pthread_mutex_t *lock;
	long long seq = 0;
	int rc = TR_EBUSY;
	struct tr_reg_delta reckoned[MAX_DELTAS];
	struct tr_reg_post now = *p; /* with the reckoned deltas */

	bson_init(movement);
	*replayed = false;
	if (!db->has_tenant || !tr_register_key_ok(p->key) || !op_ok(p->op_id) || p->ndeltas == 0 ||
	    (p->reckon && p->ndeltas > MAX_DELTAS))
		return TR_EINVALID;
	for (size_t i = 0; i < p->ndeltas; i++) {
		if (!counter_ok(p->deltas[i].counter))
			return TR_EINVALID;
		for (size_t j = 0; j < i; j++)
			if (strcmp(p->deltas[i].counter, p->deltas[j].counter) == 0)
				return TR_EINVALID;
	}
	reg_name_of(db, p->key, "", -1, cache_id, sizeof(cache_id));
	lock = key_lock(cache_id); /* this process's writers of key, one at a time */
	pthread_mutex_lock(lock);
	memset(&values, 0, sizeof(values));
	for (int attempt = 0; attempt < ATTEMPTS; attempt++) {
		bson_t stored = BSON_INITIALIZER;
		bool found;

		/* The first attempt appends to the cached state without asking
		 * whether it is still the newest: sequences have no gaps, so the
		 * insert of seq + 1 succeeds only if it is (and the floor was
		 * checked against the state at seq); otherwise it collides and
		 * the next attempt reads on. */
		counters_free(&values);
		if ((rc = reg_read_state_as(db, p->key, cache_id, attempt == 0, &seq, &values)) !=
		    TR_OK)
			break;
		if (p->reckon) {
			memcpy(reckoned, p->deltas, p->ndeltas * sizeof(*reckoned));
			now.deltas = reckoned;
		}
		if (p->reckon &&
		    !p->reckon(p->reckon_arg, (const struct tr_reg_state *)(const void *)&values,
			       reckoned, p->ndeltas))
			rc = TR_ELIMIT;
		else
			rc = append(db, &now, reverses, seq, &values, &stored);
		if (rc == TR_OK) {
			reg_render(&stored, movement);
			reg_cache_put(cache_id, seq + 1, &values);
			if ((seq + 2) % TR_REG_BUCKET == 0)
				reg_store_snapshot(db, p->key, (seq + 2) / TR_REG_BUCKET, &values);
		}
		bson_destroy(&stored);
		if (rc != TR_EDUPLICATE && rc != TR_ELIMIT)
			break;
		if (rc == TR_ELIMIT && attempt == 0)
			continue; /* judged on a state that may be old: read on first */
		/* the op may have been posted before (then it is the answer) */
		bson_destroy(movement);
		bson_init(movement);
		int frc = find_op(db, p->op_id, movement, &found);
		if (frc != TR_OK) {
			rc = frc;
			break;
		}
		if (found) {
			*replayed = true;
			rc = TR_OK;
			break;
		}
		if (rc == TR_ELIMIT) {
			BSON_APPEND_UTF8(movement, "key", p->key);
			BSON_APPEND_INT64(movement, "seq", seq);
			reg_counters_append(&values, movement, "values", true);
			break;
		}
		/* another process took seq + 1: read on and try the next one (at
		 * once after a first attempt that trusted the cache) */
		if (attempt > 0)
			usleep((useconds_t)(rand() % 2000));
		rc = TR_EBUSY;
	}
	pthread_mutex_unlock(lock);
	counters_free(&values);
	return rc;
}

int
tr_register_post(struct tr_db *db, const struct tr_reg_post *p, bson_t *movement, bool *replayed)
{
	return post(db, p, 0, movement, replayed);
}

static int
stripe_order(const void *a, const void *b)
{
	uintptr_t x = (uintptr_t) * (pthread_mutex_t *const *)a,
		  y = (uintptr_t) * (pthread_mutex_t *const *)b;
	return x < y ? -1 : x > y;
}

/* The fast path of tr_register_post_all: every register's state cached,
 * every movement built on it, all inserted by one command (one
 * transaction on FerretDB). False when it did not write them all: the
 * caller posts them one by one, which finds the ones written. */
static bool
post_batch(struct tr_db *db, const struct tr_reg_post *p, size_t n)
{
	char ids[16][256];
	pthread_mutex_t *locks[16];
	struct counters values[16];
	long long seqs[16];
	bson_t docs[16];
	const bson_t *ptrs[16];
	size_t nlocks = 0, built = 0, loaded = 0;
	bson_error_t error;
	bool ok = false;

	if (n > 16)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (!tr_register_key_ok(p[i].key) || !op_ok(p[i].op_id) || p[i].ndeltas == 0 ||
		    p[i].reckon)
			return false;
		reg_name_of(db, p[i].key, "", -1, ids[i], sizeof(ids[i]));
		pthread_mutex_t *l = key_lock(ids[i]);
		bool have = false;
		for (size_t j = 0; j < nlocks; j++)
			have |= locks[j] == l;
		if (!have)
			locks[nlocks++] = l;
	}
	qsort(locks, nlocks, sizeof(locks[0]), stripe_order); /* one order: no deadlock */
	for (size_t j = 0; j < nlocks; j++)
		pthread_mutex_lock(locks[j]);
	for (; loaded < n; loaded++) {
		if (!reg_cache_get(ids[loaded], &seqs[loaded], &values[loaded]))
			break;
	}
	if (loaded < n)
		goto out;
	for (; built < n; built++) {
		bson_init(&docs[built]);
		if (build(db, &p[built], 0, seqs[built], &values[built], &docs[built]) != TR_OK) {
			bson_destroy(&docs[built]);
			goto out;
		}
		ptrs[built] = &docs[built];
	}
	mongoc_collection_t *c = tr_db_collection(db, MOVES);
	ok = mongoc_collection_insert_many(c, ptrs, n, NULL, NULL, &error);
	mongoc_collection_destroy(c);
	for (size_t i = 0; ok && i < n; i++) {
		if (advance(&p[i], &values[i]) != TR_OK) {
			ok = false;
			break;
		}
		reg_cache_put(ids[i], seqs[i] + 1, &values[i]);
		if ((seqs[i] + 2) % TR_REG_BUCKET == 0)
			reg_store_snapshot(db, p[i].key, (seqs[i] + 2) / TR_REG_BUCKET, &values[i]);
	}
out:
	for (size_t i = 0; i < built; i++)
		bson_destroy(&docs[i]);
	for (size_t i = 0; i < loaded; i++)
		counters_free(&values[i]);
	for (size_t j = nlocks; j-- > 0;)
		pthread_mutex_unlock(locks[j]);
	return ok;
}

int
tr_register_post_all(struct tr_db *db, const struct tr_reg_post *posts, size_t n)
{
	int rc = TR_OK;

	if (!db->has_tenant)
		return TR_EINVALID;
	if (n > 1 && post_batch(db, posts, n))
		return TR_OK;
	for (size_t i = 0; rc == TR_OK && i < n; i++) {
		bson_t movement;
		bool replayed;
		rc = tr_register_post(db, &posts[i], &movement, &replayed);
		bson_destroy(&movement);
	}
	return rc;
}

int
tr_register_reverse(struct tr_db *db, const char *key, long long seq, bool has_floor, int64_t floor,
		    const bson_t *meta, bson_t *movement, bool *replayed)
{
	bson_t original;
	bson_iter_t it, sub;
	struct tr_reg_delta deltas[MAX_DELTAS];
	char op[256];
	size_t n = 0;
	int rc = tr_register_movement(db, key, seq, &original);

	bson_init(movement);
	*replayed = false;
	if (rc != TR_OK)
		goto out;
	if (bson_iter_init_find(&it, &original, "reverses") && !BSON_ITER_HOLDS_NULL(&it)) {
		rc = TR_EINVALID;
		goto out;
	}
	if (bson_iter_init_find(&it, &original, "deltas") && BSON_ITER_HOLDS_DOCUMENT(&it) &&
	    bson_iter_recurse(&it, &sub))
		while (bson_iter_next(&sub) && n < sizeof(deltas) / sizeof(deltas[0])) {
			deltas[n].counter = bson_iter_key(&sub);
			deltas[n].delta = -bson_iter_as_int64(&sub);
			n++;
		}
	snprintf(op, sizeof(op), "reverse:%s:%lld", key, seq);
	struct tr_reg_post p = {.key = key,
				.op_id = op,
				.deltas = deltas,
				.ndeltas = n,
				.has_floor = has_floor,
				.floor = floor,
				.meta = meta};
	bson_destroy(movement);
	rc = post(db, &p, seq, movement, replayed);
out:
	bson_destroy(&original);
	return rc;
}
