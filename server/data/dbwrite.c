/* Writes of the data layer: inserts, and the changes of a record made
 * exact across processes by claims, with their effects on registers.
 *
 * FerretDB v1.24 runs findAndModify and update as a read followed by a
 * whole-document write by _id, so a version check in the filter holds for
 * nobody but the writer that happens to read last: two writers that both
 * read version v both "succeed". What it does make atomic is a unique key
 * on insert. Every change of a record (tr_db_update, tr_db_delete) is
 * therefore made under a claim:
 *
 *   1. read the record: version v (or TR_EVERSION when If-Match names
 *      another one);
 *   2. insert the claim {_id: "<coll>/<id>/<v>/<gen>"} into _claims - of all
 *      writers of version v, in any process, exactly one inserts it;
 *   3. write the record, still conditional on version v, which now only the
 *      claim's holder can be writing;
 *   4. post the change's effects on registers, if its module declares any
 *      (module.h: struct tr_effects), each posting idempotent by the claim;
 *   5. delete the claim.
 *
 * Writers that lose step 2 wait (up to claim_wait_ms) for the holder to
 * finish: once the record has moved on, a conditional write answers
 * TR_EVERSION and an unconditional one starts again from the new version;
 * if the holder gave up without writing, they claim again. Waiting longer
 * answers TR_EBUSY (409).
 *
 * A holder that dies between 2 and 3 (kill -9, a lost machine) leaves its
 * claim behind. A claim is a lease: past claim_lease_ms it is stale, and a
 * writer that finds a stale claim of the version the record still has
 * takes the next generation (<gen>+1, again a unique insert, so again one
 * writer) - the record is writable again at most claim_lease_ms after its
 * writer died. The other side of the lease: a holder that has not started
 * its write within half the lease gives the claim up (TR_EUNAVAILABLE)
 * rather than write on a lease that may be someone else's by then.
 *
 * A holder that dies between 3 and 5 leaves a claim whose write happened:
 * the claim carries the effects ("fx"), and tr_db_settle, run by every
 * process now and then, finds stale claims and posts the effects of those
 * whose write happened (the record is past the claimed version, or gone
 * for a delete, or there for an insert). Of several generations of one
 * version only the newest can have written: the older ones were given up
 * by their takers.
 *
 * Ids are canonical: the claim names the parsed ObjectId, so "ABC..." and
 * "abc..." are one record behind one claim. A striped mutex per process
 * keeps this process's writers of one record from racing each other for
 * the claim; it is an optimisation, not the guarantee. On MongoDB the
 * same steps run (its findAndModify would be atomic on its own; one code
 * path is one thing to test). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "counters.h"
#include "db.h"
#include "dbpool.h"
#include "log.h"
#include "register.h"
#include "seq.h"
#include "util.h"
#include "dbwrite_int.h"

#define STRIPES 64

static const char *const change_names[] = {"insert", "update", "delete"};

static pthread_mutex_t stripes[STRIPES] = {[0 ... STRIPES - 1] = PTHREAD_MUTEX_INITIALIZER};

static pthread_mutex_t *
record_lock(const char *coll, const bson_oid_t *oid)
{
	uint32_t h = 2166136261u;
	for (const char *p = coll; *p; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	for (int i = 0; i < 12; i++)
		h = (h ^ oid->bytes[i]) * 16777619u;
	return &stripes[h % STRIPES];
}

/* ---- claims ---- */

struct claim {
	char key[128]; /* "<coll>/<id>/<version>": every generation's rk */
	char id[144];  /* key + "/<gen>" */
	uint64_t taken_ns;
	bson_t fx; /* the change's effects; empty when none */
	int nfx;
};

/* The generation of the newest claim on key and whether it is still
 * live; *gen = -1 when there is none. */
int
tr_dbw_newest_claim(struct tr_db *db, const char *key, int *gen, bool *live)
{
	bson_t filter = BSON_INITIALIZER;
	const bson_t *doc;
	bson_error_t error;
	bson_iter_t it;
	mongoc_collection_t *c = tr_db_collection(db, CLAIMS);
	mongoc_cursor_t *cur;
	int64_t now = tr_now_ms();
	int rc = TR_OK;

	*gen = -1;
	*live = false;
	BSON_APPEND_UTF8(&filter, "rk", key);
	cur = mongoc_collection_find_with_opts(c, &filter, NULL, NULL);
	while (mongoc_cursor_next(cur, &doc)) {
		int g = bson_iter_init_find(&it, doc, "gen") ? (int)bson_iter_as_int64(&it) : 0;
		int64_t exp = bson_iter_init_find(&it, doc, "exp") && BSON_ITER_HOLDS_DATE_TIME(&it)
				  ? bson_iter_date_time(&it)
				  : 0;
		if (g > *gen) {
			*gen = g;
			*live = exp > now;
		}
	}
	if (mongoc_cursor_error(cur, &error))
		rc = tr_db_fail("find", CLAIMS, &error);
	mongoc_cursor_destroy(cur);
	mongoc_collection_destroy(c);
	bson_destroy(&filter);
	return rc;
}

/* Inserts claim generation gen of cl->key; TR_EDUPLICATE when it exists. */
static int
insert_claim(struct tr_db *db, const char *coll, const bson_oid_t *oid, long long version, int gen,
	     enum change kind, struct claim *cl)
{
	bson_t doc = BSON_INITIALIZER;
	bson_error_t error;
	mongoc_collection_t *c = tr_db_collection(db, CLAIMS);
	int64_t now = tr_now_ms();
	int rc = TR_OK;

	snprintf(cl->id, sizeof(cl->id), "%s/%d", cl->key, gen);
	BSON_APPEND_UTF8(&doc, "_id", cl->id);
	BSON_APPEND_UTF8(&doc, "rk", cl->key);
	BSON_APPEND_OID(&doc, "tenant_id", &db->tenant_id);
	BSON_APPEND_UTF8(&doc, "coll", coll);
	BSON_APPEND_OID(&doc, "record", oid);
	BSON_APPEND_INT64(&doc, "version", version);
	BSON_APPEND_INT32(&doc, "gen", gen);
	BSON_APPEND_UTF8(&doc, "change", change_names[kind]);
	BSON_APPEND_DATE_TIME(&doc, "at", now);
	BSON_APPEND_DATE_TIME(&doc, "exp", now + tr_db_config()->claim_lease_ms);
	if (cl->nfx > 0)
		BSON_APPEND_ARRAY(&doc, "fx", &cl->fx);
	if (!mongoc_collection_insert_one(c, &doc, NULL, NULL, &error))
		rc = tr_db_fail("insert", CLAIMS, &error);
	else
		cl->taken_ns = tr_mono_ns();
	mongoc_collection_destroy(c);
	bson_destroy(&doc);
	return rc;
}

/* Deletes every generation of the claim (the stale ones it replaced too).
 * Best effort: a claim left behind is a stale lease that tr_db_settle
 * finds. */
static void
release_claim(struct tr_db *db, const struct claim *cl)
{
	bson_t filter = BSON_INITIALIZER;
	mongoc_collection_t *c = tr_db_collection(db, CLAIMS);

	BSON_APPEND_UTF8(&filter, "rk", cl->key);
	mongoc_collection_delete_many(c, &filter, NULL, NULL, NULL);
	mongoc_collection_destroy(c);
	bson_destroy(&filter);
}

/* The record as stored now and its version; TR_ENOTFOUND. */
int
tr_dbw_current(struct tr_db *db, const char *coll, const char *id, bson_t *doc, long long *version)
{
	bson_iter_t it;
	int rc = tr_db_get(db, coll, id, doc);

	if (rc == TR_OK)
		*version = bson_iter_init_find(&it, doc, "version") ? bson_iter_as_int64(&it) : 0;
	return rc;
}

static int
current_version(struct tr_db *db, const char *coll, const char *id, long long *version)
{
	bson_t doc;
	int rc = tr_dbw_current(db, coll, id, &doc, version);

	bson_destroy(&doc);
	return rc;
}

/* Steps 1 and 2: reads the record and claims its version with the effects
 * of changing it by (set, unset) or deleting it. On success *version is
 * the claimed version. TR_EVERSION when the record is not at
 * expected_version (> 0), TR_EBUSY when another writer held it for longer
 * than claim_wait_ms, TR_ENOTFOUND, TR_EUNAVAILABLE. */
static int
claim_record(struct tr_db *db, const char *coll, const char *id, const bson_oid_t *oid,
	     long long expected_version, enum change kind, const bson_t *set, const bson_t *unset,
	     long long *version, struct claim *cl)
{
	uint64_t deadline = tr_mono_ns() + (uint64_t)tr_db_config()->claim_wait_ms * 1000000ull;
	unsigned pause_ms = 2;
	char hex[25];
	int rc;

	bson_oid_to_string(oid, hex);
	for (;;) {
		bson_t before, after;
		int gen;
		bool live;

		rc = tr_dbw_current(db, coll, id, &before, version);
		if (rc != TR_OK) {
			bson_destroy(&before);
			return rc;
		}
		if (expected_version > 0 && *version != expected_version) {
			bson_destroy(&before);
			db->conflict_version = *version;
			return TR_EVERSION;
		}
		if (kind == CH_UPDATE)
			tr_dbw_merge(&before, set, unset, *version + 1, tr_now_ms(), &after);
		bson_destroy(&cl->fx);
		rc = tr_dbw_compute_fx(coll, &before, kind == CH_UPDATE ? &after : NULL, &cl->fx,
				       &cl->nfx);
		if (kind == CH_UPDATE)
			bson_destroy(&after);
		bson_destroy(&before);
		if (rc != TR_OK)
			return rc;
		snprintf(cl->key, sizeof(cl->key), "%s/%s/%lld", coll, hex, *version);
		rc = insert_claim(db, coll, oid, *version, 0, kind, cl);
		if (rc != TR_EDUPLICATE)
			return rc;
		rc = tr_dbw_newest_claim(db, cl->key, &gen, &live);
		if (rc != TR_OK)
			return rc;
		if (gen >= 0 && !live) {
			/* its holder died; is the record still at that version? */
			long long now_at;
			rc = current_version(db, coll, id, &now_at);
			if (rc != TR_OK)
				return rc;
			if (now_at == *version) {
				rc = insert_claim(db, coll, oid, *version, gen + 1, kind, cl);
				if (rc != TR_EDUPLICATE)
					return rc;
			}
		}
		/* someone else holds it: wait for them to finish */
		if (tr_mono_ns() > deadline) {
			db->conflict_version = *version;
			return TR_EBUSY;
		}
		usleep(pause_ms * 1000);
		if (pause_ms < 32)
			pause_ms *= 2;
	}
}

/* May the holder still write? Not once half its lease is gone. */
static bool
claim_fresh(const struct claim *cl)
{
	if (tr_db_config()->debug_claim_delay_ms > 0)
		usleep((useconds_t)tr_db_config()->debug_claim_delay_ms * 1000);
	return tr_mono_ns() - cl->taken_ns < (uint64_t)tr_db_config()->claim_lease_ms * 500000ull;
}

/* Steps 4 and 5: the effects, then the claim goes. Effects that cannot be
 * posted now (the database went away) stay with the claim for
 * tr_db_settle; the write itself stands. */
static void
finish_claim(struct tr_db *db, const char *coll, struct claim *cl)
{
	if (cl->nfx > 0) {
		if (tr_db_config()->debug_effects_delay_ms > 0)
			usleep((useconds_t)tr_db_config()->debug_effects_delay_ms * 1000);
		int rc = tr_dbw_apply_fx(db, cl->id, &cl->fx);
		if (rc != TR_OK) {
			tr_warn("db: effects of a change of %s left for settling: %s", coll,
				tr_strerror(rc));
			return;
		}
	}
	release_claim(db, cl);
}

long long
tr_db_conflict_version(const struct tr_db *db)
{
	return db->conflict_version;
}

/* ---- inserts ---- */

/* A new record in its stored shape into doc (initialised by the caller):
 * the id the fields name (an ObjectId, e.g. to make a create idempotent)
 * or a new one into *oid, the tenant, the fields but the layer's own, the
 * times, version 1 and its list position. */
static int
new_record(struct tr_db *db, const char *coll, const bson_t *fields, int64_t now, bson_oid_t *oid,
	   bson_t *doc)
{
	bson_iter_t it;
	int64_t bucket = 0;
	char day[16];
	int rc;

	if (bson_iter_init_find(&it, fields, "_id") && BSON_ITER_HOLDS_OID(&it))
		bson_oid_copy(bson_iter_oid(&it), oid);
	else
		bson_oid_init(oid, NULL);
	BSON_APPEND_OID(doc, "_id", oid);
	BSON_APPEND_OID(doc, "tenant_id", &db->tenant_id);
	if (bson_iter_init(&it, fields))
		while (bson_iter_next(&it))
			if (!tr_db_reserved_field(bson_iter_key(&it)))
				bson_append_iter(doc, bson_iter_key(&it), -1, &it);
	tr_dbw_append_nulls(coll, fields, doc);
	BSON_APPEND_DATE_TIME(doc, "created_at", now);
	BSON_APPEND_DATE_TIME(doc, "updated_at", now);
	BSON_APPEND_INT64(doc, "version", 1);
	tr_format_day(now, day);
	BSON_APPEND_UTF8(doc, "_cd", day);
	if ((rc = tr_seq_bucket_for_insert(db, coll, &bucket)) != TR_OK)
		return rc;
	tr_seq_stamp(db, doc, bucket);
	return TR_OK;
}

int
tr_db_insert(struct tr_db *db, const char *coll, const bson_t *fields, bson_t *stored)
{
	bson_t doc = BSON_INITIALIZER;
	bson_error_t error;
	bson_oid_t oid;
	mongoc_collection_t *c = NULL;
	struct claim cl = {.fx = BSON_INITIALIZER};
	int64_t now = tr_now_ms();
	uint64_t t0 = tr_mono_ns();
	bool claimed = false;
	int rc = TR_OK;

	bson_init(stored);
	if (!db->has_tenant) {
		rc = TR_EINVALID;
		goto out;
	}
	if ((rc = new_record(db, coll, fields, now, &oid, &doc)) != TR_OK)
		goto out;
	/* a record with effects is created under a claim of version 0 */
	bson_destroy(&cl.fx);
	if ((rc = tr_dbw_compute_fx(coll, NULL, &doc, &cl.fx, &cl.nfx)) != TR_OK)
		goto out;
	if (cl.nfx > 0) {
		char hex[25];
		bson_oid_to_string(&oid, hex);
		snprintf(cl.key, sizeof(cl.key), "%s/%s/0", coll, hex);
		if ((rc = insert_claim(db, coll, &oid, 0, 0, CH_INSERT, &cl)) != TR_OK)
			goto out;
		claimed = true;
	}
	c = tr_db_collection(db, coll);
	if (!mongoc_collection_insert_one(c, &doc, NULL, NULL, &error)) {
		rc = tr_db_fail("insert", coll, &error);
		goto out;
	}
	if (claimed) {
		finish_claim(db, coll, &cl);
		claimed = false;
	}
	bson_copy_to(&doc, stored);
	bson_destroy(&doc);
	bson_init(&doc);
out:
	if (claimed) /* nothing was written: the claim goes too */
		release_claim(db, &cl);
	db->elapsed_ns += tr_mono_ns() - t0;
	mongoc_collection_destroy(c);
	bson_destroy(&doc);
	bson_destroy(&cl.fx);
	return rc;
}

/* True when every error of a failed unordered insert_many is a duplicate
 * id (the records an earlier try wrote). */
static bool
only_duplicates(const bson_t *reply)
{
	bson_iter_t it, errs, e;
	bool any = false;

	if (!bson_iter_init_find(&it, reply, "writeErrors") || !BSON_ITER_HOLDS_ARRAY(&it) ||
	    !bson_iter_recurse(&it, &errs))
		return false;
	while (bson_iter_next(&errs)) {
		if (!BSON_ITER_HOLDS_DOCUMENT(&errs) || !bson_iter_recurse(&errs, &e) ||
		    !bson_iter_find(&e, "code"))
			return false;
		int64_t code = bson_iter_as_int64(&e);
		if (code != 11000 && code != 11001)
			return false;
		any = true;
	}
	return any;
}

int
tr_db_insert_batch(struct tr_db *db, const char *coll, const bson_t *const *fields, size_t n)
{
	bson_t **docs = NULL, opts = BSON_INITIALIZER, reply;
	bson_error_t error;
	bson_oid_t oid;
	mongoc_collection_t *c = NULL;
	int64_t now = tr_now_ms();
	uint64_t t0 = tr_mono_ns();
	size_t made = 0;
	int rc = TR_OK;

	bson_init(&reply);
	if (!db->has_tenant)
		return TR_EINVALID;
	if (n == 0)
		return TR_OK;
	if (!(docs = calloc(n, sizeof(*docs))))
		return TR_ENOMEM;
	for (; made < n && rc == TR_OK; made++) {
		bson_t fx = BSON_INITIALIZER;
		int nfx = 0;
		docs[made] = bson_new();
		if ((rc = new_record(db, coll, fields[made], now, &oid, docs[made])) == TR_OK &&
		    (rc = tr_dbw_compute_fx(coll, NULL, docs[made], &fx, &nfx)) == TR_OK && nfx > 0)
			rc = TR_EINVALID; /* effects are claimed one record at a time */
		bson_destroy(&fx);
	}
	if (rc != TR_OK)
		goto out;
	BSON_APPEND_BOOL(&opts, "ordered", false);
	c = tr_db_collection(db, coll);
	bson_destroy(&reply);
	if (!mongoc_collection_insert_many(c, (const bson_t **)docs, n, &opts, &reply, &error) &&
	    !only_duplicates(&reply))
		rc = tr_db_fail("insert", coll, &error);
out:
	for (size_t i = 0; i < made; i++)
		bson_destroy(docs[i]);
	free(docs);
	mongoc_collection_destroy(c);
	bson_destroy(&opts);
	bson_destroy(&reply);
	db->elapsed_ns += tr_mono_ns() - t0;
	return rc;
}

/* ---- changes ---- */

/* Steps 1 and 2 for a change of record id: this process's lock on the
 * record, then the claim of its version, and the filter that writes that
 * version only. *lock is set (and held) once the id is a valid one; the
 * caller unlocks it. */
static int
begin_change(struct tr_db *db, const char *coll, const char *id, long long expected_version,
	     enum change kind, const bson_t *set, const bson_t *unset, bson_oid_t *oid,
	     pthread_mutex_t **lock, long long *version, struct claim *cl, bson_t *filter)
{
	int rc;

	db->conflict_version = 0;
	if (!db->has_tenant || !tr_is_object_id(id))
		return TR_ENOTFOUND;
	bson_oid_init_from_string(oid, id);
	*lock = record_lock(coll, oid);
	pthread_mutex_lock(*lock);
	rc = claim_record(db, coll, id, oid, expected_version, kind, set, unset, version, cl);
	if (rc == TR_OK) {
		BSON_APPEND_OID(filter, "_id", oid);
		BSON_APPEND_OID(filter, "tenant_id", &db->tenant_id);
		BSON_APPEND_INT64(filter, "version", *version);
	}
	return rc;
}

int
tr_db_update(struct tr_db *db, const char *coll, const char *id, long long expected_version,
	     const bson_t *set, const bson_t *unset, bson_t *out)
{
	bson_t query = BSON_INITIALIZER, update = BSON_INITIALIZER, reply = BSON_INITIALIZER;
	bson_t child;
	bson_error_t error;
	bson_iter_t it;
	bson_oid_t oid;
	mongoc_collection_t *c = NULL;
	mongoc_find_and_modify_opts_t *opts = NULL;
	pthread_mutex_t *lock = NULL;
	struct claim cl = {.fx = BSON_INITIALIZER};
	long long version = 0;
	bool claimed = false;
	uint64_t t0 = tr_mono_ns();
	int rc = TR_OK;

	bson_init(out);
	rc = begin_change(db, coll, id, expected_version, CH_UPDATE, set, unset, &oid, &lock,
			  &version, &cl, &query);
	if (rc != TR_OK)
		goto out;
	claimed = true;
	BSON_APPEND_DOCUMENT_BEGIN(&update, "$set", &child);
	if (set && bson_iter_init(&it, set))
		while (bson_iter_next(&it))
			if (!tr_db_reserved_field(bson_iter_key(&it)))
				bson_append_iter(&child, bson_iter_key(&it), -1, &it);
	BSON_APPEND_DATE_TIME(&child, "updated_at", tr_now_ms());
	BSON_APPEND_INT64(&child, "version", version + 1);
	bson_append_document_end(&update, &child);
	if (unset && !bson_empty(unset)) {
		BSON_APPEND_DOCUMENT_BEGIN(&update, "$unset", &child);
		if (bson_iter_init(&it, unset))
			while (bson_iter_next(&it))
				if (!tr_db_reserved_field(bson_iter_key(&it)))
					BSON_APPEND_UTF8(&child, bson_iter_key(&it), "");
		bson_append_document_end(&update, &child);
	}

	if (!claim_fresh(&cl)) {
		rc = TR_EUNAVAILABLE; /* too slow to write on this lease */
		goto out;
	}
	c = tr_db_collection(db, coll);
	opts = mongoc_find_and_modify_opts_new();
	mongoc_find_and_modify_opts_set_update(opts, &update);
	mongoc_find_and_modify_opts_set_flags(opts, MONGOC_FIND_AND_MODIFY_RETURN_NEW);
	if (!mongoc_collection_find_and_modify_with_opts(c, &query, opts, &reply, &error)) {
		rc = tr_db_fail("update", coll, &error);
		goto out;
	}
	if (bson_iter_init_find(&it, &reply, "value") && BSON_ITER_HOLDS_DOCUMENT(&it)) {
		const uint8_t *data;
		uint32_t len;
		bson_t value;
		bson_iter_document(&it, &len, &data);
		if (bson_init_static(&value, data, len)) {
			bson_copy_to_excluding_noinit(&value, out, "", NULL);
			tr_dbw_append_nulls(coll, &value, out);
		}
		finish_claim(db, coll, &cl);
		claimed = false;
	} else {
		/* Only a writer outside the claims (or one past its lease) gets
		 * here: the record is not at the claimed version any more. */
		rc = current_version(db, coll, id, &db->conflict_version);
		rc = rc == TR_OK ? TR_EVERSION : rc;
	}
out:
	if (claimed)
		release_claim(db, &cl);
	if (lock)
		pthread_mutex_unlock(lock);
	db->elapsed_ns += tr_mono_ns() - t0;
	if (opts)
		mongoc_find_and_modify_opts_destroy(opts);
	mongoc_collection_destroy(c);
	bson_destroy(&query);
	bson_destroy(&update);
	bson_destroy(&reply);
	bson_destroy(&cl.fx);
	return rc;
}

int
tr_db_delete(struct tr_db *db, const char *coll, const char *id, long long expected_version)
{
	bson_t filter = BSON_INITIALIZER, reply = BSON_INITIALIZER;
	bson_error_t error;
	bson_iter_t it;
	bson_oid_t oid;
	mongoc_collection_t *c = NULL;
	pthread_mutex_t *lock = NULL;
	struct claim cl = {.fx = BSON_INITIALIZER};
	long long version = 0;
	bool claimed = false;
	uint64_t t0 = tr_mono_ns();
	int rc = TR_OK;

	rc = begin_change(db, coll, id, expected_version, CH_DELETE, NULL, NULL, &oid, &lock,
			  &version, &cl, &filter);
	if (rc != TR_OK)
		goto out;
	claimed = true;
	if (!claim_fresh(&cl)) {
		rc = TR_EUNAVAILABLE;
		goto out;
	}
	c = tr_db_collection(db, coll);
	if (!mongoc_collection_delete_one(c, &filter, NULL, &reply, &error)) {
		rc = tr_db_fail("delete", coll, &error);
		goto out;
	}
	if (!bson_iter_init_find(&it, &reply, "deletedCount") || bson_iter_as_int64(&it) == 0) {
		rc = current_version(db, coll, id, &db->conflict_version);
		rc = rc == TR_OK ? TR_EVERSION : rc;
	} else {
		finish_claim(db, coll, &cl);
		claimed = false;
	}
out:
	if (claimed)
		release_claim(db, &cl);
	if (lock)
		pthread_mutex_unlock(lock);
	db->elapsed_ns += tr_mono_ns() - t0;
	mongoc_collection_destroy(c);
	bson_destroy(&filter);
	bson_destroy(&reply);
	bson_destroy(&cl.fx);
	return rc;
}
