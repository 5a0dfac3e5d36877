/* Registers (register.h), the reading side: the names of a register's
 * documents, the process's cache of states, snapshots, catching a state up
 * with the movements after it, and movements as the API shows them.
 * Posting is in register_post.c; the storage layout in register_int.h. */
#include "register.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "counters.h"
#include "dbpool.h"
#include "log.h"
#include "register_int.h"
#include "util.h"

#define CACHE_SLOTS 512

/* Sets every counter of a {name: value} document. */
static bool
counters_load(struct counters *m, const bson_t *doc, const char *field)
{
	bson_iter_t it, sub;

	if (!bson_iter_init_find(&it, doc, field) || !BSON_ITER_HOLDS_DOCUMENT(&it) ||
	    !bson_iter_recurse(&it, &sub))
		return true;
	while (bson_iter_next(&sub))
		if (BSON_ITER_HOLDS_NUMBER(&sub) &&
		    !counters_set(m, bson_iter_key(&sub), bson_iter_as_int64(&sub)))
			return false;
	return true;
}

/* Appends {name: value} of the counters that are not 0, by name. */
static int
by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

void
reg_counters_append(const struct counters *m, bson_t *doc, const char *field, bool skip_zero)
{
	bson_t sub;
	char **names = malloc((m->n ? m->n : 1) * sizeof(*names));

	BSON_APPEND_DOCUMENT_BEGIN(doc, field, &sub);
	if (names && m->n) {
		memcpy(names, m->names, m->n * sizeof(*names));
		qsort(names, m->n, sizeof(*names), by_name);
		for (size_t i = 0; i < m->n; i++) {
			int64_t v = counters_get(m, names[i]);
			if (!skip_zero || v != 0)
				BSON_APPEND_INT64(&sub, names[i], v);
		}
	}
	free(names);
	bson_append_document_end(doc, &sub);
}

/* ---- names ---- */

bool
reg_chars_ok(const char *s, size_t max, const char *extra)
{
	size_t n = strlen(s);

	if (n == 0 || n > max)
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || strchr(extra, *s)))
			return false;
	return true;
}

bool
tr_register_key_ok(const char *key)
{
	return key && reg_chars_ok(key, 200, "_.:/-");
}

void
reg_name_of(const struct tr_db *db, const char *key, const char *suffix, long long n, char *out,
	    size_t len)
{
	char hex[25];

	bson_oid_to_string(&db->tenant_id, hex);
	if (n >= 0)
		snprintf(out, len, "%s/%s#%s%lld", hex, key, suffix, n);
	else
		snprintf(out, len, "%s/%s#%s", hex, key, suffix);
}

/* ---- the process's view: a cache of states ---- */

struct cached_state {
	bool used;
	char id[256]; /* reg_name_of(key, "", -1) */
	long long seq;
	struct counters values;
};

static struct {
	pthread_mutex_t lock;
	struct cached_state slot[CACHE_SLOTS];
} C = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* A copy of the cached state of id; false when there is none. */
bool
reg_cache_get(const char *id, long long *seq, struct counters *values)
{
	struct cached_state *e = &C.slot[tr_name_hash(id) % CACHE_SLOTS];
	bool hit = false;

	pthread_mutex_lock(&C.lock);
	if (e->used && strcmp(e->id, id) == 0 && counters_copy(&e->values, values)) {
		*seq = e->seq;
		hit = true;
	}
	pthread_mutex_unlock(&C.lock);
	return hit;
}

void
reg_cache_put(const char *id, long long seq, const struct counters *values)
{
	struct cached_state *e = &C.slot[tr_name_hash(id) % CACHE_SLOTS];
	struct counters copy;

	if (strlen(id) >= sizeof(e->id) || !counters_copy(values, &copy))
		return;
	pthread_mutex_lock(&C.lock);
	if (e->used && strcmp(e->id, id) == 0 && e->seq > seq) {
		pthread_mutex_unlock(&C.lock);
		counters_free(&copy);
		return;
	}
	counters_free(&e->values);
	e->used = true;
	snprintf(e->id, sizeof(e->id), "%s", id);
	e->seq = seq;
	e->values = copy;
	pthread_mutex_unlock(&C.lock);
}

/* ---- reading ---- */

static int
find_by_id(struct tr_db *db, const char *coll, const char *id, bson_t *out, bool *found)
{
	bson_t filter = BSON_INITIALIZER, doc;
	int rc;

	BSON_APPEND_UTF8(&filter, "_id", id);
	rc = tr_db_first(db, coll, &filter, &doc);
	*found = rc == TR_OK;
	if (*found && out)
		bson_copy_to_excluding_noinit(&doc, out, "", NULL);
	bson_destroy(&doc);
	bson_destroy(&filter);
	return rc == TR_ENOTFOUND ? TR_OK : rc;
}

static long long
seq_of(const bson_t *doc)
{
	bson_iter_t it;
	return bson_iter_init_find(&it, doc, "seq") ? bson_iter_as_int64(&it) : 0;
}

static int
by_seq_asc(const void *a, const void *b)
{
	long long x = seq_of(*(bson_t *const *)a), y = seq_of(*(bson_t *const *)b);
	return x < y ? -1 : x > y;
}

/* The movements of bucket n of key, sorted by seq (copies the caller frees
 * with free_docs). */
static int
bucket_docs(struct tr_db *db, const char *key, long long n, bson_t ***docs, size_t *count)
{
	bson_t filter = BSON_INITIALIZER;
	const bson_t *doc;
	bson_error_t error;
	char rb[320];
	mongoc_collection_t *c = tr_db_collection(db, MOVES);
	mongoc_cursor_t *cur;
	size_t cap = 0;
	int rc = TR_OK;

	*docs = NULL;
	*count = 0;
	reg_name_of(db, key, "b", n, rb, sizeof(rb));
	BSON_APPEND_UTF8(&filter, "rb", rb);
	cur = mongoc_collection_find_with_opts(c, &filter, NULL, NULL);
	while (mongoc_cursor_next(cur, &doc)) {
		if (*count == cap) {
			cap = cap ? cap * 2 : TR_REG_BUCKET;
			bson_t **more = realloc(*docs, cap * sizeof(*more));
			if (!more) {
				rc = TR_ENOMEM;
				break;
			}
			*docs = more;
		}
		(*docs)[(*count)++] = bson_copy(doc);
	}
	if (rc == TR_OK && mongoc_cursor_error(cur, &error))
		rc = tr_db_fail("find", MOVES, &error);
	mongoc_cursor_destroy(cur);
	mongoc_collection_destroy(c);
	bson_destroy(&filter);
	if (*count)
		qsort(*docs, *count, sizeof(**docs), by_seq_asc);
	return rc;
}

static void
free_docs(bson_t **docs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		bson_destroy(docs[i]);
	free(docs);
}

/* A movement's values after it onto the state. */
static bool
apply(struct counters *values, const bson_t *movement)
{
	return counters_load(values, movement, "a");
}

/* Stores snapshot n (the state after every movement below n * 64) and
 * moves the head hint to it. Both are derived data: a duplicate snapshot
 * is the same one, and a hint that falls behind only costs reads. */
void
reg_store_snapshot(struct tr_db *db, const char *key, long long n, const struct counters *values)
{
	bson_t doc = BSON_INITIALIZER, filter = BSON_INITIALIZER, update = BSON_INITIALIZER, set;
	bson_t opts = BSON_INITIALIZER;
	char id[320];
	mongoc_collection_t *c = tr_db_collection(db, SNAPS);

	reg_name_of(db, key, "s", n, id, sizeof(id));
	BSON_APPEND_UTF8(&doc, "_id", id);
	BSON_APPEND_OID(&doc, "tenant_id", &db->tenant_id);
	BSON_APPEND_UTF8(&doc, "key", key);
	BSON_APPEND_INT64(&doc, "below", n * TR_REG_BUCKET);
	reg_counters_append(values, &doc, "values", false);
	mongoc_collection_insert_one(c, &doc, NULL, NULL, NULL);
	reg_name_of(db, key, "h", -1, id, sizeof(id));
	BSON_APPEND_UTF8(&filter, "_id", id);
	BSON_APPEND_DOCUMENT_BEGIN(&update, "$set", &set);
	BSON_APPEND_OID(&set, "tenant_id", &db->tenant_id);
	BSON_APPEND_INT64(&set, "snap", n);
	bson_append_document_end(&update, &set);
	BSON_APPEND_BOOL(&opts, "upsert", true);
	mongoc_collection_update_one(c, &filter, &update, &opts, NULL, NULL);
	mongoc_collection_destroy(c);
	bson_destroy(&doc);
	bson_destroy(&filter);
	bson_destroy(&update);
	bson_destroy(&opts);
}

/* Brings (seq, values) up to the register's newest movement, starting in
 * the bucket of seq + 1. Buckets it finds complete get their snapshot when
 * it is missing. */
static int
catch_up(struct tr_db *db, const char *key, long long *seq, struct counters *values)
{
	char next[320];
	bool found;
	int rc;

	/* Most reads find nothing new: one lookup of seq + 1 says so without
	 * reading its bucket's movements (which may hold many counters). */
	reg_name_of(db, key, "", *seq + 1, next, sizeof(next));
	if ((rc = find_by_id(db, MOVES, next, NULL, &found)) != TR_OK || !found)
		return rc;
	for (;;) {
		long long n = (*seq + 1) / TR_REG_BUCKET;
		bson_t **docs;
		size_t count;

		rc = bucket_docs(db, key, n, &docs, &count);
		for (size_t i = 0; rc == TR_OK && i < count; i++) {
			long long s = seq_of(docs[i]);
			if (s <= *seq)
				continue;
			if (s != *seq + 1) { /* a gap: a writer is between seq and insert */
				break;
			}
			if (!apply(values, docs[i]))
				rc = TR_ENOMEM;
			else
				*seq = s;
		}
		free_docs(docs, count);
		if (rc != TR_OK)
			return rc;
		if ((*seq + 1) % TR_REG_BUCKET != 0 || *seq + 1 <= n * TR_REG_BUCKET)
			return TR_OK; /* the bucket is not complete: this is the newest */
		/* complete: the next bucket may hold more */
		char id[320];
		reg_name_of(db, key, "s", (*seq + 1) / TR_REG_BUCKET, id, sizeof(id));
		if ((rc = find_by_id(db, SNAPS, id, NULL, &found)) != TR_OK)
			return rc;
		if (!found)
			reg_store_snapshot(db, key, (*seq + 1) / TR_REG_BUCKET, values);
	}
}

/* The state of key: the cached one brought up to date (or, trusting,
 * as cached: see post in register_post.c), or the newest snapshot the
 * head names and the movements after it. */
int
reg_read_state_as(struct tr_db *db, const char *key, const char *cache_id, bool trust_cache,
		  long long *seq, struct counters *values)
{
	bson_t doc;
	bson_iter_t it;
	bool found;
	char id[320];
	int rc;

	memset(values, 0, sizeof(*values));
	if (!reg_cache_get(cache_id, seq, values)) {
		long long snap = 0;
		*seq = 0;
		reg_name_of(db, key, "h", -1, id, sizeof(id));
		bson_init(&doc);
		rc = find_by_id(db, SNAPS, id, &doc, &found);
		if (rc == TR_OK && found && bson_iter_init_find(&it, &doc, "snap"))
			snap = bson_iter_as_int64(&it);
		bson_destroy(&doc);
		if (rc != TR_OK)
			return rc;
		for (; snap > 0; snap--) { /* the hint's snapshot, or an older one */
			reg_name_of(db, key, "s", snap, id, sizeof(id));
			bson_init(&doc);
			rc = find_by_id(db, SNAPS, id, &doc, &found);
			if (rc == TR_OK && found && !counters_load(values, &doc, "values"))
				rc = TR_ENOMEM;
			bson_destroy(&doc);
			if (rc != TR_OK)
				return rc;
			if (found) {
				*seq = snap * TR_REG_BUCKET - 1;
				break;
			}
		}
	} else if (trust_cache) {
		return TR_OK;
	}
	rc = catch_up(db, key, seq, values);
	if (rc == TR_OK)
		reg_cache_put(cache_id, *seq, values);
	return rc;
}

static int
read_state(struct tr_db *db, const char *key, const char *cache_id, long long *seq,
	   struct counters *values)
{
	return reg_read_state_as(db, key, cache_id, false, seq, values);
}

int
tr_register_read(struct tr_db *db, const char *key, bson_t *state)
{
	struct counters values;
	char cache_id[256];
	long long seq;
	int rc;

	bson_init(state);
	if (!db->has_tenant || !tr_register_key_ok(key))
		return TR_EINVALID;
	reg_name_of(db, key, "", -1, cache_id, sizeof(cache_id));
	rc = read_state(db, key, cache_id, &seq, &values);
	if (rc == TR_OK) {
		BSON_APPEND_UTF8(state, "key", key);
		BSON_APPEND_INT64(state, "seq", seq);
		reg_counters_append(&values, state, "values", true);
	}
	counters_free(&values);
	return rc;
}

/* ---- movements as the API shows them ---- */

/* The movement as the API shows it. */
void
reg_render(const bson_t *stored, bson_t *out)
{
	bson_iter_t it;

	bson_init(out);
	if (bson_iter_init_find(&it, stored, "key"))
		bson_append_iter(out, "key", -1, &it);
	BSON_APPEND_INT64(out, "seq", seq_of(stored));
	if (bson_iter_init_find(&it, stored, "op"))
		bson_append_iter(out, "operation_id", -1, &it);
	if (bson_iter_init_find(&it, stored, "d"))
		bson_append_iter(out, "deltas", -1, &it);
	if (bson_iter_init_find(&it, stored, "a"))
		bson_append_iter(out, "after", -1, &it);
	if (bson_iter_init_find(&it, stored, "at"))
		bson_append_iter(out, "at", -1, &it);
	if (bson_iter_init_find(&it, stored, "meta"))
		bson_append_iter(out, "meta", -1, &it);
	else
		BSON_APPEND_NULL(out, "meta");
	if (bson_iter_init_find(&it, stored, "reverses"))
		bson_append_iter(out, "reverses", -1, &it);
	else
		BSON_APPEND_NULL(out, "reverses");
}

int
tr_register_movement(struct tr_db *db, const char *key, long long seq, bson_t *out)
{
	bson_t doc = BSON_INITIALIZER;
	char id[320];
	bool found;
	int rc;

	bson_init(out);
	if (!db->has_tenant || !tr_register_key_ok(key) || seq < 1) {
		bson_destroy(&doc);
		return TR_ENOTFOUND;
	}
	reg_name_of(db, key, "", seq, id, sizeof(id));
	rc = find_by_id(db, MOVES, id, &doc, &found);
	if (rc == TR_OK && !found)
		rc = TR_ENOTFOUND;
	if (rc == TR_OK) {
		bson_destroy(out);
		reg_render(&doc, out);
	}
	bson_destroy(&doc);
	return rc;
}

int
tr_register_movements(struct tr_db *db, const char *key, long long before, int limit, bson_t *items,
		      long long *next)
{
	bson_t state;
	bson_iter_t it;
	long long top;
	int shown = 0, rc;

	*next = 0;
	if (!db->has_tenant || !tr_register_key_ok(key) || limit < 1)
		return TR_EINVALID;
	if ((rc = tr_register_read(db, key, &state)) != TR_OK) {
		bson_destroy(&state);
		return rc;
	}
	top = bson_iter_init_find(&it, &state, "seq") ? bson_iter_as_int64(&it) : 0;
	bson_destroy(&state);
	if (before > 0 && before - 1 < top)
		top = before - 1;
	for (long long b = top / TR_REG_BUCKET; b >= 0 && top > 0 && shown < limit; b--) {
		bson_t **docs;
		size_t count;
		if ((rc = bucket_docs(db, key, b, &docs, &count)) != TR_OK) {
			free_docs(docs, count);
			return rc;
		}
		for (size_t i = count; i-- > 0 && shown < limit;) {
			long long s = seq_of(docs[i]);
			if (s > top)
				continue;
			char k[16];
			const char *kk;
			bson_t m;
			bson_uint32_to_string((uint32_t)shown++, &kk, k, sizeof(k));
			reg_render(docs[i], &m);
			BSON_APPEND_DOCUMENT(items, kk, &m);
			bson_destroy(&m);
			if (shown == limit && s > 1)
				*next = s;
		}
		free_docs(docs, count);
	}
	return TR_OK;
}

int64_t
tr_reg_value(const struct tr_reg_state *s, const char *counter)
{
	return counters_get((const struct counters *)(const void *)s, counter);
}
