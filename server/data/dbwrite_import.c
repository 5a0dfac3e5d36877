/* Bulk writes of the data layer: imports (a seed or a migration of many
 * records at once, their effects summed), purges (undoing an import), and
 * once-only marks (tr_db_once). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "counters.h"
#include "db.h"
#include "dbpool.h"
#include "dbwrite_int.h"
#include "log.h"
#include "register.h"
#include "seq.h"
#include "util.h"

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
	const struct tr_effects *e = tr_dbw_effects_of(coll);
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
		qsort(names, sums.n, sizeof(*names), tr_dbw_posting_name_order);
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
		rc = tr_dbw_apply_fx(db, name, &fx);
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
		tr_dbw_append_nulls(coll, docs[i], docs[i]);
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
