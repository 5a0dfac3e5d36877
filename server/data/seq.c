#include "seq.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dbpool.h"
#include "log.h"
#include "util.h"

#define MARKERS "_buckets"
#define CACHE_SLOTS 4096
/* How often a writer looks whether another process opened a newer bucket. */
#define RECHECK_NS (20 * 1000000ull)

/* The bucket this process writes to, per tenant and collection: a hint
 * (a forgotten entry costs a few probes), guarded by one mutex that is
 * never held across a database call. */
struct open_bucket {
	bool used;
	bson_oid_t tenant;
	char coll[48];
	int64_t bucket;
	int count;	     /* records this process put into it */
	uint64_t checked_ns; /* when a newer bucket was last looked for */
};

static struct {
	pthread_mutex_t lock;
	struct open_bucket slot[CACHE_SLOTS];
} M = {.lock = PTHREAD_MUTEX_INITIALIZER};

static size_t
slot_of(const struct tr_db *db, const char *coll)
{
	uint64_t h = 1469598103934665603ull;
	for (int i = 0; i < 12; i++)
		h = (h ^ db->tenant_id.bytes[i]) * 1099511628211ull;
	for (const char *p = coll; *p; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ull;
	return (size_t)(h % CACHE_SLOTS);
}

/* A copy of the cached entry for (tenant, coll); false when there is none. */
static bool
cached(const struct tr_db *db, const char *coll, struct open_bucket *out)
{
	size_t i = slot_of(db, coll);
	bool hit;

	pthread_mutex_lock(&M.lock);
	hit = M.slot[i].used && bson_oid_equal(&M.slot[i].tenant, &db->tenant_id) &&
	      strcmp(M.slot[i].coll, coll) == 0;
	if (hit)
		*out = M.slot[i];
	pthread_mutex_unlock(&M.lock);
	return hit;
}

/* Records that this process writes `added` more records to bucket (0: only
 * that it knows the bucket); never moves an entry back to an older bucket. */
static void
remember(const struct tr_db *db, const char *coll, int64_t bucket, int added, uint64_t checked_ns)
{
	size_t i = slot_of(db, coll);
	struct open_bucket *e = &M.slot[i];

	if (strlen(coll) >= sizeof(e->coll))
		return;
	pthread_mutex_lock(&M.lock);
	bool same =
	    e->used && bson_oid_equal(&e->tenant, &db->tenant_id) && strcmp(e->coll, coll) == 0;
	if (!same || bucket > e->bucket) {
		e->used = true;
		bson_oid_copy(&db->tenant_id, &e->tenant);
		snprintf(e->coll, sizeof(e->coll), "%s", coll);
		e->bucket = bucket;
		e->count = added;
		e->checked_ns = checked_ns;
	} else if (bucket == e->bucket) {
		e->count += added;
		if (checked_ns > e->checked_ns)
			e->checked_ns = checked_ns;
	}
	pthread_mutex_unlock(&M.lock);
}

static void
marker_id(const struct tr_db *db, const char *coll, int64_t bucket, char *out, size_t len)
{
	char hex[25];

	bson_oid_to_string(&db->tenant_id, hex);
	snprintf(out, len, "%s/%s/%" PRId64, hex, coll, bucket);
}

void
tr_seq_bucket(const struct tr_db *db, int64_t bucket, char *out)
{
	char hex[25];

	bson_oid_to_string(&db->tenant_id, hex);
	snprintf(out, 64, "%s:%" PRId64, hex, bucket);
}

void
tr_seq_stamp(const struct tr_db *db, bson_t *doc, int64_t bucket)
{
	char b[64];

	tr_seq_bucket(db, bucket, b);
	BSON_APPEND_UTF8(doc, "_b", b);
}

int64_t
tr_seq_of(const bson_t *doc)
{
	bson_iter_t it;
	const char *colon;
	long long n;

	if (!bson_iter_init_find(&it, doc, "_b") || !BSON_ITER_HOLDS_UTF8(&it) ||
	    !(colon = strchr(bson_iter_utf8(&it, NULL), ':')) ||
	    tr_parse_int(colon + 1, 0, INT64_MAX, &n) != 0)
		return -1;
	return n;
}

static int
marker_exists(struct tr_db *db, const char *coll, int64_t bucket, bool *exists)
{
	bson_t filter = BSON_INITIALIZER, doc;
	char id[128];
	int rc;

	marker_id(db, coll, bucket, id, sizeof(id));
	BSON_APPEND_UTF8(&filter, "_id", id);
	rc = tr_db_first(db, MARKERS, &filter, &doc);
	*exists = rc == TR_OK;
	bson_destroy(&doc);
	bson_destroy(&filter);
	return rc == TR_ENOTFOUND ? TR_OK : rc;
}

/* Inserts the marker of bucket: TR_OK when this call opened it,
 * TR_EDUPLICATE when it was open already. */
static int
open_marker(struct tr_db *db, const char *coll, int64_t bucket)
{
	bson_t doc = BSON_INITIALIZER;
	bson_error_t error;
	char id[128];
	mongoc_collection_t *c = tr_db_collection(db, MARKERS);
	int rc = TR_OK;

	marker_id(db, coll, bucket, id, sizeof(id));
	BSON_APPEND_UTF8(&doc, "_id", id);
	BSON_APPEND_OID(&doc, "tenant_id", &db->tenant_id);
	BSON_APPEND_UTF8(&doc, "coll", coll);
	BSON_APPEND_INT64(&doc, "bucket", bucket);
	BSON_APPEND_DATE_TIME(&doc, "at", tr_now_ms());
	if (!mongoc_collection_insert_one(c, &doc, NULL, NULL, &error))
		rc = tr_db_fail("insert", MARKERS, &error);
	mongoc_collection_destroy(c);
	bson_destroy(&doc);
	return rc;
}

/* The newest bucket at or after `from` (which exists): probes forward. */
static int
newest_from(struct tr_db *db, const char *coll, int64_t from, int64_t *newest)
{
	bool exists = true;
	int rc = TR_OK;

	*newest = from;
	while (rc == TR_OK) {
		rc = marker_exists(db, coll, *newest + 1, &exists);
		if (rc != TR_OK || !exists)
			break;
		(*newest)++;
	}
	return rc;
}

/* With no hint: markers run from 0 without a gap, so the last one is found
 * by doubling, then halving. -1 when there is none. */
static int
newest_cold(struct tr_db *db, const char *coll, int64_t *newest)
{
	int64_t lo = 0, hi = 1;
	bool exists;
	int rc = marker_exists(db, coll, 0, &exists);

	*newest = -1;
	if (rc != TR_OK || !exists)
		return rc;
	for (;;) { /* lo exists; find a hi that does not */
		if ((rc = marker_exists(db, coll, hi, &exists)) != TR_OK)
			return rc;
		if (!exists)
			break;
		lo = hi;
		hi *= 2;
	}
	while (hi - lo > 1) {
		int64_t mid = lo + (hi - lo) / 2;
		if ((rc = marker_exists(db, coll, mid, &exists)) != TR_OK)
			return rc;
		if (exists)
			lo = mid;
		else
			hi = mid;
	}
	*newest = lo;
	return TR_OK;
}

int
tr_seq_newest(struct tr_db *db, const char *coll, int64_t *newest)
{
	struct open_bucket e;
	int rc;

	if (!db->has_tenant)
		return TR_EINVALID;
	if (cached(db, coll, &e))
		rc = newest_from(db, coll, e.bucket, newest);
	else
		rc = newest_cold(db, coll, newest);
	if (rc == TR_OK && *newest >= 0)
		remember(db, coll, *newest, 0, tr_mono_ns());
	return rc;
}

/* Opens bucket after `current` (TR_EDUPLICATE from the insert: another
 * process did), then goes to the newest one. */
static int
open_next(struct tr_db *db, const char *coll, int64_t current, int64_t *bucket)
{
	int rc = open_marker(db, coll, current + 1);

	if (rc != TR_OK && rc != TR_EDUPLICATE)
		return rc;
	return newest_from(db, coll, current + 1, bucket);
}

/* The common case, all in the cache: this process's current bucket, not
 * full and recently checked, takes one more record. */
static bool
take_cached(const struct tr_db *db, const char *coll, int64_t *bucket)
{
	size_t i = slot_of(db, coll);
	struct open_bucket *e = &M.slot[i];
	bool taken = false;

	pthread_mutex_lock(&M.lock);
	if (e->used && bson_oid_equal(&e->tenant, &db->tenant_id) && strcmp(e->coll, coll) == 0 &&
	    tr_mono_ns() - e->checked_ns <= RECHECK_NS && e->count < TR_SEQ_BUCKET) {
		e->count++;
		*bucket = e->bucket;
		taken = true;
	}
	pthread_mutex_unlock(&M.lock);
	return taken;
}

int
tr_seq_bucket_for_insert(struct tr_db *db, const char *coll, int64_t *bucket)
{
	struct open_bucket e;
	int count = 0, rc = TR_OK;

	if (!db->has_tenant)
		return TR_EINVALID;
	if (take_cached(db, coll, bucket))
		return TR_OK;
	if (!cached(db, coll, &e)) {
		if ((rc = newest_cold(db, coll, bucket)) != TR_OK)
			return rc;
		if (*bucket < 0 && (rc = open_next(db, coll, -1, bucket)) != TR_OK)
			return rc;
	} else {
		if ((rc = newest_from(db, coll, e.bucket, bucket)) != TR_OK)
			return rc;
		count = *bucket == e.bucket ? e.count : 0;
	}
	if (count >= TR_SEQ_BUCKET) {
		if ((rc = open_next(db, coll, *bucket, bucket)) != TR_OK)
			return rc;
	}
	remember(db, coll, *bucket, 1, tr_mono_ns());
	return TR_OK;
}

int
tr_seq_open_buckets(struct tr_db *db, const char *coll, int64_t n, int64_t *first)
{
	int64_t newest;
	int rc;

	if (!db->has_tenant || n < 1)
		return TR_EINVALID;
	for (int attempt = 0; attempt < 10; attempt++) {
		if ((rc = tr_seq_newest(db, coll, &newest)) != TR_OK)
			return rc;
		rc = open_marker(db, coll, newest + 1);
		if (rc == TR_EDUPLICATE)
			continue; /* another process opened it first: look again */
		if (rc != TR_OK)
			return rc;
		*first = newest + 1;
		for (int64_t k = 1; k < n; k++) {
			rc = open_marker(db, coll, *first + k);
			if (rc != TR_OK && rc != TR_EDUPLICATE)
				return rc;
		}
		remember(db, coll, *first + n - 1, TR_SEQ_BUCKET, tr_mono_ns());
		return TR_OK;
	}
	return TR_EBUSY;
}
