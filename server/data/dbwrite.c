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

#define CLAIMS "_claims"
#define STRIPES 64
#define MAX_POSTINGS 512 /* postings one change may make */

enum change { CH_INSERT, CH_UPDATE, CH_DELETE };
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

/* ---- effects ---- */

static const struct tr_effects *
effects_of(const char *coll)
{
	for (size_t m = 0; m < tr_nmodules; m++)
		for (size_t i = 0; i < tr_modules[m]->neffects; i++)
			if (strcmp(tr_modules[m]->effects[i].coll, coll) == 0)
				return &tr_modules[m]->effects[i];
	return NULL;
}

struct posting {
	const char *k, *c; /* borrowed from the postings array */
	int64_t d;
};

static int
posting_name_order(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int
posting_order(const void *a, const void *b)
{
	const struct posting *x = a, *y = b;
	int r = strcmp(x->k, y->k);
	return r ? r : strcmp(x->c, y->c);
}

/* The effects of a change as an array of {k: register key, d: {counter:
 * delta}} (register keys hold dots, which field names may not), deltas of
 * the same counter summed and zeros left out; *n = how many registers. */
static int
compute_fx(const char *coll, const bson_t *before, const bson_t *after, bson_t *fx, int *n)
{
	const struct tr_effects *e = effects_of(coll);
	bson_t postings = BSON_INITIALIZER;
	struct posting *ps = NULL;
	size_t np = 0;
	bson_iter_t it, p;
	int rc = TR_OK;

	bson_init(fx);
	*n = 0;
	if (!e)
		goto out;
	bson_destroy(&postings);
	bson_init(&postings);
	if ((rc = e->postings(before, after, &postings)) != TR_OK)
		goto out;
	ps = calloc(MAX_POSTINGS, sizeof(*ps));
	if (!ps) {
		rc = TR_ENOMEM;
		goto out;
	}
	if (bson_iter_init(&it, &postings))
		while (bson_iter_next(&it)) {
			struct posting one = {NULL, NULL, 0};
			if (!BSON_ITER_HOLDS_DOCUMENT(&it) || !bson_iter_recurse(&it, &p))
				continue;
			while (bson_iter_next(&p)) {
				const char *key = bson_iter_key(&p);
				if (strcmp(key, "k") == 0 && BSON_ITER_HOLDS_UTF8(&p))
					one.k = bson_iter_utf8(&p, NULL);
				else if (strcmp(key, "c") == 0 && BSON_ITER_HOLDS_UTF8(&p))
					one.c = bson_iter_utf8(&p, NULL);
				else if (strcmp(key, "d") == 0 && BSON_ITER_HOLDS_NUMBER(&p))
					one.d = bson_iter_as_int64(&p);
			}
			if (!one.k || !one.c) {
				rc = TR_EINTERNAL;
				goto out;
			}
			size_t j = 0;
			while (j < np && (strcmp(ps[j].k, one.k) || strcmp(ps[j].c, one.c)))
				j++;
			if (j == np) {
				if (np == MAX_POSTINGS) {
					rc = TR_ELIMIT;
					goto out;
				}
				ps[np++] = one;
			} else if (__builtin_add_overflow(ps[j].d, one.d, &ps[j].d)) {
				rc = TR_EINVALID;
				goto out;
			}
		}
	qsort(ps, np, sizeof(*ps), posting_order);
	for (size_t i = 0; i < np;) {
		bson_t deltas;
		size_t j = i;
		bool any = false;
		for (size_t q = i; q < np && strcmp(ps[q].k, ps[i].k) == 0; q++)
			any |= ps[q].d != 0;
		if (!any) {
			while (j < np && strcmp(ps[j].k, ps[i].k) == 0)
				j++;
			i = j;
			continue;
		}
		bson_t entry;
		char idx[16];
		const char *ik;
		bson_uint32_to_string((uint32_t)*n, &ik, idx, sizeof(idx));
		BSON_APPEND_DOCUMENT_BEGIN(fx, ik, &entry);
		BSON_APPEND_UTF8(&entry, "k", ps[i].k);
		BSON_APPEND_DOCUMENT_BEGIN(&entry, "d", &deltas);
		for (; j < np && strcmp(ps[j].k, ps[i].k) == 0; j++)
			if (ps[j].d != 0)
				BSON_APPEND_INT64(&deltas, ps[j].c, ps[j].d);
		bson_append_document_end(&entry, &deltas);
		bson_append_document_end(fx, &entry);
		(*n)++;
		i = j;
	}
out:
	free(ps);
	bson_destroy(&postings);
	return rc;
}

/* Posts the effects of a claim's change, one movement per register, each
 * named by the claim so that posting again (settling) finds the first. */
static int
apply_fx(struct tr_db *db, const char *claim_id, const bson_t *fx)
{
	struct tr_reg_post posts[16];
	char ops[16][512];
	size_t n = 0;
	bson_iter_t it, e, d;
	int rc = TR_OK;

	memset(posts, 0, sizeof(posts));
	if (!bson_iter_init(&it, fx))
		return TR_OK;
	while (rc == TR_OK && bson_iter_next(&it)) {
		struct tr_reg_post *p = &posts[n];
		size_t cap = 0;
		if (!BSON_ITER_HOLDS_DOCUMENT(&it) || !bson_iter_recurse(&it, &e))
			continue;
		while (rc == TR_OK && bson_iter_next(&e)) {
			if (strcmp(bson_iter_key(&e), "k") == 0 && BSON_ITER_HOLDS_UTF8(&e))
				p->key = bson_iter_utf8(&e, NULL);
			if (strcmp(bson_iter_key(&e), "d") != 0 || !BSON_ITER_HOLDS_DOCUMENT(&e) ||
			    !bson_iter_recurse(&e, &d))
				continue;
			while (bson_iter_next(&d)) {
				struct tr_reg_delta *deltas = (struct tr_reg_delta *)p->deltas;
				if (p->ndeltas == cap) {
					cap = cap ? cap * 2 : 16;
					deltas = realloc(deltas, cap * sizeof(*deltas));
					if (!deltas) {
						rc = TR_ENOMEM;
						break;
					}
					p->deltas = deltas;
				}
				deltas[p->ndeltas].counter = bson_iter_key(&d);
				deltas[p->ndeltas].delta = bson_iter_as_int64(&d);
				p->ndeltas++;
			}
		}
		if (rc != TR_OK || !p->key || p->ndeltas == 0)
			continue;
		snprintf(ops[n], sizeof(ops[n]), "fx:%s:%s", claim_id, p->key);
		p->op_id = ops[n];
		if (++n == sizeof(posts) / sizeof(posts[0])) { /* a full batch: post it */
			rc = tr_register_post_all(db, posts, n);
			for (size_t i = 0; i < n; i++)
				free((void *)posts[i].deltas);
			memset(posts, 0, sizeof(posts));
			n = 0;
		}
	}
	if (rc == TR_OK && n > 0)
		rc = tr_register_post_all(db, posts, n);
	for (size_t i = 0; i <= n && i < sizeof(posts) / sizeof(posts[0]); i++)
		free((void *)posts[i].deltas);
	return rc;
}

/* The record as a change leaves it: before with set's fields replaced,
 * unset's removed, and the layer's fields moved on. */
static void
merge(const bson_t *before, const bson_t *set, const bson_t *unset, long long version, int64_t now,
      bson_t *after)
{
	bson_iter_t it;

	bson_init(after);
	if (bson_iter_init(&it, before))
		while (bson_iter_next(&it)) {
			const char *k = bson_iter_key(&it);
			if ((set && bson_has_field(set, k) && !tr_db_reserved_field(k)) ||
			    (unset && bson_has_field(unset, k) && !tr_db_reserved_field(k)) ||
			    strcmp(k, "version") == 0 || strcmp(k, "updated_at") == 0)
				continue;
			bson_append_iter(after, k, -1, &it);
		}
	if (set && bson_iter_init(&it, set))
		while (bson_iter_next(&it))
			if (!tr_db_reserved_field(bson_iter_key(&it)))
				bson_append_iter(after, bson_iter_key(&it), -1, &it);
	BSON_APPEND_DATE_TIME(after, "updated_at", now);
	BSON_APPEND_INT64(after, "version", version);
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
static int
newest_claim(struct tr_db *db, const char *key, int *gen, bool *live)
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
static int
current(struct tr_db *db, const char *coll, const char *id, bson_t *doc, long long *version)
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
	int rc = current(db, coll, id, &doc, version);

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

		rc = current(db, coll, id, &before, version);
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
			merge(&before, set, unset, *version + 1, tr_now_ms(), &after);
		bson_destroy(&cl->fx);
		rc =
		    compute_fx(coll, &before, kind == CH_UPDATE ? &after : NULL, &cl->fx, &cl->nfx);
		if (kind == CH_UPDATE)
			bson_destroy(&after);
		bson_destroy(&before);
		if (rc != TR_OK)
			return rc;
		snprintf(cl->key, sizeof(cl->key), "%s/%s/%lld", coll, hex, *version);
		rc = insert_claim(db, coll, oid, *version, 0, kind, cl);
		if (rc != TR_EDUPLICATE)
			return rc;
		rc = newest_claim(db, cl->key, &gen, &live);
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
		int rc = apply_fx(db, cl->id, &cl->fx);
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

int
tr_db_insert(struct tr_db *db, const char *coll, const bson_t *fields, bson_t *stored)
{
	bson_t doc = BSON_INITIALIZER;
	bson_error_t error;
	bson_iter_t it;
	bson_oid_t oid;
	mongoc_collection_t *c = NULL;
	struct claim cl = {.fx = BSON_INITIALIZER};
	int64_t now = tr_now_ms(), bucket = 0;
	uint64_t t0 = tr_mono_ns();
	bool claimed = false;
	char day[16];
	int rc = TR_OK;

	bson_init(stored);
	if (!db->has_tenant) {
		rc = TR_EINVALID;
		goto out;
	}
	/* The caller may choose the id (an ObjectId), e.g. to make a create
	 * idempotent; otherwise a new one. */
	if (bson_iter_init_find(&it, fields, "_id") && BSON_ITER_HOLDS_OID(&it))
		bson_oid_copy(bson_iter_oid(&it), &oid);
	else
		bson_oid_init(&oid, NULL);
	BSON_APPEND_OID(&doc, "_id", &oid);
	BSON_APPEND_OID(&doc, "tenant_id", &db->tenant_id);
	if (bson_iter_init(&it, fields))
		while (bson_iter_next(&it))
			if (!tr_db_reserved_field(bson_iter_key(&it)))
				bson_append_iter(&doc, bson_iter_key(&it), -1, &it);
	BSON_APPEND_DATE_TIME(&doc, "created_at", now);
	BSON_APPEND_DATE_TIME(&doc, "updated_at", now);
	BSON_APPEND_INT64(&doc, "version", 1);
	tr_format_day(now, day);
	BSON_APPEND_UTF8(&doc, "_cd", day);
	rc = tr_seq_bucket_for_insert(db, coll, &bucket);
	if (rc != TR_OK)
		goto out;
	tr_seq_stamp(db, &doc, bucket);
	/* a record with effects is created under a claim of version 0 */
	bson_destroy(&cl.fx);
	if ((rc = compute_fx(coll, NULL, &doc, &cl.fx, &cl.nfx)) != TR_OK)
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

/* ---- once ---- */

int
tr_db_once(struct tr_db *db, const char *key)
{
	bson_t doc = BSON_INITIALIZER;
	bson_error_t error;
	char hex[25], id[256];
	mongoc_collection_t *c;
	int rc = TR_OK;

	if (!db->has_tenant || !key || !*key || strlen(key) > 200) {
		bson_destroy(&doc);
		return TR_EINVALID;
	}
	bson_oid_to_string(&db->tenant_id, hex);
	snprintf(id, sizeof(id), "%s/%s", hex, key);
	BSON_APPEND_UTF8(&doc, "_id", id);
	BSON_APPEND_OID(&doc, "tenant_id", &db->tenant_id);
	BSON_APPEND_DATE_TIME(&doc, "at", tr_now_ms());
	c = tr_db_collection(db, "once_marks");
	if (!mongoc_collection_insert_one(c, &doc, NULL, NULL, &error))
		rc = tr_db_fail("insert", "once_marks", &error);
	mongoc_collection_destroy(c);
	bson_destroy(&doc);
	return rc;
}

/* ---- imports ---- */

#define IMPORT_BATCH 1000

/* The summed effects of creating every record of docs, posted one
 * movement per register; op ids name the import's first list bucket. */
static int
import_fx(struct tr_db *db, const char *coll, bson_t **docs, size_t n, int64_t first_bucket)
{
	const struct tr_effects *e = effects_of(coll);
	struct counters sums;
	char name[512];
	int rc = TR_OK;

	if (!e)
		return TR_OK;
	memset(&sums, 0, sizeof(sums));
	for (size_t i = 0; rc == TR_OK && i < n; i++) {
		bson_t postings = BSON_INITIALIZER;
		bson_iter_t it, p;
		rc = e->postings(NULL, docs[i], &postings);
		if (rc == TR_OK && bson_iter_init(&it, &postings))
			while (rc == TR_OK && bson_iter_next(&it)) {
				const char *k = NULL, *c = NULL;
				int64_t d = 0, sum;
				if (!bson_iter_recurse(&it, &p))
					continue;
				while (bson_iter_next(&p)) {
					if (strcmp(bson_iter_key(&p), "k") == 0)
						k = bson_iter_utf8(&p, NULL);
					else if (strcmp(bson_iter_key(&p), "c") == 0)
						c = bson_iter_utf8(&p, NULL);
					else if (strcmp(bson_iter_key(&p), "d") == 0)
						d = bson_iter_as_int64(&p);
				}
				if (!k || !c)
					continue;
				snprintf(name, sizeof(name), "%s\x1f%s", k, c);
				if (__builtin_add_overflow(counters_get(&sums, name), d, &sum))
					rc = TR_EINVALID;
				else if (!counters_set(&sums, name, sum))
					rc = TR_ENOMEM;
			}
		bson_destroy(&postings);
	}
	/* {key: {counter: delta}} in key order, then posted as one change */
	bson_t fx = BSON_INITIALIZER;
	char **names = rc == TR_OK ? malloc((sums.n ? sums.n : 1) * sizeof(*names)) : NULL;
	if (rc == TR_OK && !names)
		rc = TR_ENOMEM;
	uint32_t nkeys = 0;
	if (rc == TR_OK) {
		for (size_t i = 0; i < sums.n; i++)
			names[i] = sums.names[i];
		qsort(names, sums.n, sizeof(*names), posting_name_order);
		for (size_t i = 0; i < sums.n;) {
			size_t klen = (size_t)(strchr(names[i], '\x1f') - names[i]);
			char key[256];
			bson_t deltas;
			bson_t entry;
			char idx[16];
			const char *ik;
			snprintf(key, sizeof(key), "%.*s", (int)klen, names[i]);
			bson_uint32_to_string((uint32_t)nkeys++, &ik, idx, sizeof(idx));
			BSON_APPEND_DOCUMENT_BEGIN(&fx, ik, &entry);
			BSON_APPEND_UTF8(&entry, "k", key);
			BSON_APPEND_DOCUMENT_BEGIN(&entry, "d", &deltas);
			for (; i < sums.n && strncmp(names[i], key, klen) == 0 &&
			       names[i][klen] == '\x1f';
			     i++) {
				int64_t d = counters_get(&sums, names[i]);
				if (d != 0)
					BSON_APPEND_INT64(&deltas, names[i] + klen + 1, d);
			}
			bson_append_document_end(&entry, &deltas);
			bson_append_document_end(&fx, &entry);
		}
		snprintf(name, sizeof(name), "import:%s:%lld", coll, (long long)first_bucket);
		rc = apply_fx(db, name, &fx);
	}
	free(names);
	bson_destroy(&fx);
	counters_free(&sums);
	return rc;
}

int
tr_db_import(struct tr_db *db, const char *coll, bson_t **docs, size_t n)
{
	bson_error_t error;
	mongoc_collection_t *c;
	int64_t first;
	uint64_t t0 = tr_mono_ns();
	char day[16];
	int rc;

	if (!db->has_tenant)
		return TR_EINVALID;
	if (n == 0)
		return TR_OK;
	/* whole buckets of their own, in order */
	rc = tr_seq_open_buckets(db, coll, (int64_t)((n + TR_SEQ_BUCKET - 1) / TR_SEQ_BUCKET),
				 &first);
	if (rc != TR_OK)
		return rc;
	for (size_t i = 0; i < n; i++) {
		bson_iter_t it;
		tr_seq_stamp(db, docs[i], first + (int64_t)(i / TR_SEQ_BUCKET));
		if (!bson_has_field(docs[i], "_cd") &&
		    bson_iter_init_find(&it, docs[i], "created_at") &&
		    BSON_ITER_HOLDS_DATE_TIME(&it)) {
			tr_format_day(bson_iter_date_time(&it), day);
			BSON_APPEND_UTF8(docs[i], "_cd", day);
		}
	}
	c = tr_db_collection(db, coll);
	for (size_t i = 0; i < n && rc == TR_OK; i += IMPORT_BATCH) {
		size_t k = n - i < IMPORT_BATCH ? n - i : IMPORT_BATCH;
		if (!mongoc_collection_insert_many(c, (const bson_t **)docs + i, k, NULL, NULL,
						   &error))
			rc = tr_db_fail("insert", coll, &error);
	}
	mongoc_collection_destroy(c);
	if (rc == TR_OK)
		rc = import_fx(db, coll, docs, n, first);
	db->elapsed_ns += tr_mono_ns() - t0;
	return rc;
}

int
tr_db_purge(struct tr_db *db, const char *coll)
{
	bson_t filter = BSON_INITIALIZER;
	bson_error_t error;
	mongoc_collection_t *c = NULL;
	uint64_t t0 = tr_mono_ns();
	int rc = TR_EINVALID;

	if (!db->has_tenant)
		goto out;
	BSON_APPEND_OID(&filter, "tenant_id", &db->tenant_id);
	c = tr_db_collection(db, coll);
	rc = mongoc_collection_delete_many(c, &filter, NULL, NULL, &error)
		 ? TR_OK
		 : tr_db_fail("delete", coll, &error);
out:
	mongoc_collection_destroy(c);
	bson_destroy(&filter);
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
		if (bson_init_static(&value, data, len))
			bson_copy_to_excluding_noinit(&value, out, "", NULL);
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

/* ---- settling what dead writers left ---- */

/* One stale claim: was its change written? Then its effects are posted
 * (again: each posting finds itself). Either way it goes. */
static int
settle_one(struct tr_db *db, const bson_t *claim)
{
	bson_iter_t it;
	bson_oid_t rec, tenant;
	const char *coll = NULL, *change = NULL, *id = NULL;
	long long version = 0, now_at = 0;
	char hex[25];
	bson_t doc, fx;
	int rc;

	if (bson_iter_init_find(&it, claim, "_id") && BSON_ITER_HOLDS_UTF8(&it))
		id = bson_iter_utf8(&it, NULL);
	if (bson_iter_init_find(&it, claim, "coll") && BSON_ITER_HOLDS_UTF8(&it))
		coll = bson_iter_utf8(&it, NULL);
	if (bson_iter_init_find(&it, claim, "change") && BSON_ITER_HOLDS_UTF8(&it))
		change = bson_iter_utf8(&it, NULL);
	if (bson_iter_init_find(&it, claim, "version"))
		version = bson_iter_as_int64(&it);
	if (!id || !coll || !change || !bson_iter_init_find(&it, claim, "record") ||
	    !BSON_ITER_HOLDS_OID(&it))
		return TR_EINTERNAL;
	bson_oid_copy(bson_iter_oid(&it), &rec);
	if (!bson_iter_init_find(&it, claim, "tenant_id") || !BSON_ITER_HOLDS_OID(&it))
		return TR_EINTERNAL;
	bson_oid_copy(bson_iter_oid(&it), &tenant);
	tr_db_set_tenant(db, &tenant);
	bson_oid_to_string(&rec, hex);
	rc = current(db, coll, hex, &doc, &now_at);
	bson_destroy(&doc);
	if (rc != TR_OK && rc != TR_ENOTFOUND)
		return rc;
	bool exists = rc == TR_OK, written;
	if (strcmp(change, "insert") == 0)
		written = exists;
	else if (strcmp(change, "delete") == 0)
		written = !exists;
	else
		written = exists && now_at > version;
	if (written && bson_iter_init_find(&it, claim, "fx") && BSON_ITER_HOLDS_ARRAY(&it)) {
		const uint8_t *data;
		uint32_t len;
		bson_iter_array(&it, &len, &data);
		if (bson_init_static(&fx, data, len) && (rc = apply_fx(db, id, &fx)) != TR_OK)
			return rc;
		tr_info("db: settled the effects of a %s of %s %s left by a writer that stopped",
			change, coll, hex);
	}
	return TR_OK;
}

int
tr_db_settle(void)
{
	struct tr_db *db = tr_db_open(NULL);
	bson_t filter = BSON_INITIALIZER, **stale = NULL;
	const bson_t *doc;
	bson_error_t error;
	bson_iter_t it;
	mongoc_collection_t *c;
	mongoc_cursor_t *cur;
	size_t n = 0, cap = 0;
	int64_t now = tr_now_ms();
	int rc = TR_OK;

	if (!db) {
		bson_destroy(&filter);
		return TR_ENOMEM;
	}
	c = tr_db_collection(db, CLAIMS);
	cur = mongoc_collection_find_with_opts(c, &filter, NULL, NULL); /* a handful */
	while (mongoc_cursor_next(cur, &doc)) {
		if (!bson_iter_init_find(&it, doc, "exp") || !BSON_ITER_HOLDS_DATE_TIME(&it) ||
		    bson_iter_date_time(&it) > now)
			continue; /* its writer is within its lease */
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			bson_t **more = realloc(stale, cap * sizeof(*more));
			if (!more)
				break;
			stale = more;
		}
		stale[n++] = bson_copy(doc);
	}
	if (mongoc_cursor_error(cur, &error))
		rc = tr_db_fail("find", CLAIMS, &error);
	mongoc_cursor_destroy(cur);
	for (size_t i = 0; rc == TR_OK && i < n; i++) {
		const char *rk = NULL, *id = NULL;
		int gen = 0;
		bool newest = true;
		if (bson_iter_init_find(&it, stale[i], "rk") && BSON_ITER_HOLDS_UTF8(&it))
			rk = bson_iter_utf8(&it, NULL);
		if (bson_iter_init_find(&it, stale[i], "_id") && BSON_ITER_HOLDS_UTF8(&it))
			id = bson_iter_utf8(&it, NULL);
		if (bson_iter_init_find(&it, stale[i], "gen"))
			gen = (int)bson_iter_as_int64(&it);
		if (!rk || !id)
			continue;
		/* an older generation was given up by whoever took the next one */
		int g;
		bool live;
		if ((rc = newest_claim(db, rk, &g, &live)) != TR_OK)
			break;
		newest = g <= gen;
		if (newest && (rc = settle_one(db, stale[i])) != TR_OK)
			break;
		bson_t del = BSON_INITIALIZER;
		BSON_APPEND_UTF8(&del, "_id", id);
		mongoc_collection_delete_one(c, &del, NULL, NULL, NULL);
		bson_destroy(&del);
	}
	for (size_t i = 0; i < n; i++)
		bson_destroy(stale[i]);
	free(stale);
	mongoc_collection_destroy(c);
	bson_destroy(&filter);
	tr_db_close(db);
	return rc;
}
