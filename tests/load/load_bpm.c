/* The BPM inbox of `make bench` (section bpm): open user tasks for one user,
 * many more than the API can make in the time a benchmark has on two cores.
 *
 *   build/load_bpm TENANT_ID INSTANCE_ID COUNT
 *
 * INSTANCE_ID is an instance the server started through the API (POST
 * /v1/bpm/instances) that waits in one user task. COUNT copies of it and
 * of its task are written, each pair with ids of its own - the instance a
 * new _id and its token the new task's id, the task its own _id and the
 * instance's id - and created_at / updated_at (and the token's `at`) one
 * millisecond apart, ending now. Everything else is the server's own
 * record, byte for byte: assignee, candidate roles, form, subject, status,
 * variables, version. They go in through the data layer's import
 * (tr_db_import), which gives them their list positions (_b: buckets of
 * their own, in created_at order, each as full as one server process's
 * inserts leave it) and their day (_cd) as records written by the API get
 * them, at insert_many speed. Not written:
 * the instances' history entries (start entered and left, the task
 * entered) and their settle jobs, which no task list reads.
 *
 * The database comes from the environment as for the server
 * (TRELLIS_MONGO_URI, TRELLIS_POSTGRESQL_URI, ...). Prints one JSON object:
 * what was written, how long it took, and the open tasks of the task's
 * assignee counted afterwards (tr_db_count). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "db.h"
#include "dbpool.h"
#include "log.h"
#include "resource.h"
#include "seq.h"
#include "util.h"

#define INSTANCES "bpm_instances"
#define TASKS "bpm_tasks"
/* Copies per import: whole list buckets (seq.h), so that every bucket but
 * the newest is as full as the server's own inserts leave them. */
#define CHUNK (78 * TR_SEQ_BUCKET)

/* Fields the import stamps itself. */
static bool
restamped(const char *key)
{
	return strcmp(key, "_b") == 0 || strcmp(key, "_cd") == 0;
}

/* The instance's tokens with the one that was tmpl_token now token. */
static void
copy_tokens(bson_iter_t *arr, const char *tmpl_token, const char *token, int64_t at, bson_t *out)
{
	bson_iter_t t;
	uint32_t i = 0;

	while (bson_iter_next(arr)) {
		bson_t item;
		char k[16];
		const char *key;
		bson_uint32_to_string(i++, &key, k, sizeof(k));
		if (!BSON_ITER_HOLDS_DOCUMENT(arr) || !bson_iter_recurse(arr, &t)) {
			bson_append_iter(out, key, -1, arr);
			continue;
		}
		BSON_APPEND_DOCUMENT_BEGIN(out, key, &item);
		bool ours = false;
		bson_iter_t probe = t;
		if (bson_iter_find(&probe, "id") && BSON_ITER_HOLDS_UTF8(&probe) &&
		    strcmp(bson_iter_utf8(&probe, NULL), tmpl_token) == 0)
			ours = true;
		while (bson_iter_next(&t)) {
			const char *f = bson_iter_key(&t);
			if (ours && strcmp(f, "id") == 0)
				BSON_APPEND_UTF8(&item, "id", token);
			else if (ours && strcmp(f, "at") == 0)
				BSON_APPEND_INT64(&item, "at", at);
			else
				bson_append_iter(&item, f, -1, &t);
		}
		bson_append_document_end(out, &item);
	}
}

static bson_t *
clone_instance(const bson_t *tmpl, const char *tmpl_token, const bson_oid_t *id, const char *token,
	       int64_t at)
{
	bson_t *doc = bson_new(), arr;
	bson_iter_t it, sub;

	bson_iter_init(&it, tmpl);
	while (bson_iter_next(&it)) {
		const char *k = bson_iter_key(&it);
		if (restamped(k))
			continue;
		if (strcmp(k, "_id") == 0) {
			BSON_APPEND_OID(doc, "_id", id);
		} else if (strcmp(k, "created_at") == 0 || strcmp(k, "updated_at") == 0) {
			BSON_APPEND_DATE_TIME(doc, k, at);
		} else if (strcmp(k, "tokens") == 0 && BSON_ITER_HOLDS_ARRAY(&it) &&
			   bson_iter_recurse(&it, &sub)) {
			BSON_APPEND_ARRAY_BEGIN(doc, "tokens", &arr);
			copy_tokens(&sub, tmpl_token, token, at, &arr);
			bson_append_array_end(doc, &arr);
		} else {
			bson_append_iter(doc, k, -1, &it);
		}
	}
	return doc;
}

static bson_t *
clone_task(const bson_t *tmpl, const bson_oid_t *id, const bson_oid_t *instance, int64_t at)
{
	bson_t *doc = bson_new();
	bson_iter_t it;

	bson_iter_init(&it, tmpl);
	while (bson_iter_next(&it)) {
		const char *k = bson_iter_key(&it);
		if (restamped(k))
			continue;
		if (strcmp(k, "_id") == 0)
			BSON_APPEND_OID(doc, "_id", id);
		else if (strcmp(k, "instance_id") == 0)
			BSON_APPEND_OID(doc, "instance_id", instance);
		else if (strcmp(k, "created_at") == 0 || strcmp(k, "updated_at") == 0)
			BSON_APPEND_DATE_TIME(doc, k, at);
		else
			bson_append_iter(doc, k, -1, &it);
	}
	return doc;
}

static int
flush(struct tr_db *db, const char *coll, bson_t **docs, size_t n)
{
	int rc = tr_db_import(db, coll, docs, n);

	for (size_t i = 0; i < n; i++)
		bson_destroy(docs[i]);
	if (rc != TR_OK)
		fprintf(stderr, "load_bpm: import of %s failed: %s\n", coll, tr_strerror(rc));
	return rc;
}

/* The template: the instance, its one task, and the token that is the
 * task's id. */
static int
load_template(struct tr_db *db, const char *id, bson_t *inst, bson_t *task, char token[25])
{
	bson_t filter = BSON_INITIALIZER;
	bson_oid_t iid, tid;
	bson_iter_t it, arr;
	int rc, tokens = 0;

	bson_init(task);
	if ((rc = tr_db_get(db, INSTANCES, id, inst)) != TR_OK) {
		fprintf(stderr, "load_bpm: instance %s: %s\n", id, tr_strerror(rc));
		return rc;
	}
	bson_oid_init_from_string(&iid, id);
	BSON_APPEND_OID(&filter, "instance_id", &iid);
	bson_destroy(task);
	rc = tr_db_find_one(db, TASKS, &filter, task);
	bson_destroy(&filter);
	if (rc != TR_OK) {
		fprintf(stderr, "load_bpm: the task of instance %s: %s\n", id, tr_strerror(rc));
		return rc;
	}
	if (!bson_iter_init_find(&it, task, "_id") || !BSON_ITER_HOLDS_OID(&it)) {
		fprintf(stderr, "load_bpm: the task has no ObjectId\n");
		return TR_EINVALID;
	}
	bson_oid_copy(bson_iter_oid(&it), &tid);
	bson_oid_to_string(&tid, token);
	/* the instance waits in that task and nothing else */
	if (bson_iter_init_find(&it, inst, "tokens") && bson_iter_recurse(&it, &arr))
		while (bson_iter_next(&arr)) {
			bson_iter_t f;
			tokens++;
			if (!bson_iter_recurse(&arr, &f) || !bson_iter_find(&f, "id") ||
			    !BSON_ITER_HOLDS_UTF8(&f) ||
			    strcmp(bson_iter_utf8(&f, NULL), token) != 0)
				tokens = 99;
		}
	if (tokens != 1) {
		fprintf(stderr, "load_bpm: instance %s must wait in exactly its one task\n", id);
		return TR_EINVALID;
	}
	return TR_OK;
}

int
main(int argc, char **argv)
{
	static struct tr_config cfg;
	static bson_t *insts[CHUNK], *tasks[CHUNK];
	bson_t inst, task, filter = BSON_INITIALIZER;
	char err[512], token[25], *end;
	long n, made = 0, next_report = 20000;
	long long open_tasks = -1;
	uint64_t t0 = tr_mono_ns();
	bson_oid_t tenant, assignee;
	struct tr_db *db;
	int rc;

	if (argc != 4 || !tr_is_object_id(argv[1]) || !tr_is_object_id(argv[2]) ||
	    (n = strtol(argv[3], &end, 10)) < 0 || *end) {
		fprintf(stderr, "usage: load_bpm TENANT_ID INSTANCE_ID COUNT (see the comment in "
				"tests/load/load_bpm.c)\n");
		return 2;
	}
	if (tr_config_load(&cfg, NULL, err, sizeof(err)) != 0 ||
	    tr_dbpool_init(&cfg, err, sizeof(err)) != 0) {
		fprintf(stderr, "load_bpm: %s\n", err);
		return 2;
	}
	tr_log_set_level((enum tr_log_level)tr_log_level_parse(cfg.log_level));
	bson_oid_init_from_string(&tenant, argv[1]);
	db = tr_db_open(NULL);
	if (!db) {
		fprintf(stderr, "load_bpm: out of memory\n");
		tr_dbpool_free();
		return 1;
	}
	tr_db_set_tenant(db, &tenant);
	rc = load_template(db, argv[2], &inst, &task, token);
	int64_t last = tr_now_ms();
	for (long i = 0; i < n && rc == TR_OK;) {
		size_t k = 0;
		for (; k < CHUNK && i < n; k++, i++) {
			bson_oid_t iid, tid;
			char thex[25];
			int64_t at = last - (n - 1 - i); /* one ms apart, oldest first */
			bson_oid_init(&iid, NULL);
			bson_oid_init(&tid, NULL);
			bson_oid_to_string(&tid, thex);
			insts[k] = clone_instance(&inst, token, &iid, thex, at);
			tasks[k] = clone_task(&task, &tid, &iid, at);
		}
		rc = flush(db, INSTANCES, insts, k);
		if (rc == TR_OK)
			rc = flush(db, TASKS, tasks, k);
		else
			for (size_t j = 0; j < k; j++)
				bson_destroy(tasks[j]);
		if (rc == TR_OK)
			made += (long)k;
		if (rc == TR_OK && (made >= next_report || made == n)) {
			fprintf(stderr, "load_bpm: %ld instances and tasks, %.1f s\n", made,
				(double)(tr_mono_ns() - t0) / 1e9);
			next_report = made + 20000;
		}
	}
	double seconds = (double)(tr_mono_ns() - t0) / 1e9;
	if (rc == TR_OK && tr_doc_oid(&task, "assignee_id", &assignee)) {
		BSON_APPEND_OID(&filter, "assignee_id", &assignee);
		BSON_APPEND_UTF8(&filter, "status", "open");
		rc = tr_db_count(db, TASKS, &filter, &open_tasks);
	}
	bson_destroy(&filter);
	bson_destroy(&inst);
	bson_destroy(&task);
	tr_db_close(db);
	tr_dbpool_free();
	if (rc != TR_OK) {
		fprintf(stderr, "load_bpm: failed after %ld copies: %s\n", made, tr_strerror(rc));
		return 1;
	}
	printf("{\"instances\": %ld, \"tasks\": %ld, \"seconds\": %.1f, \"open_tasks\": %lld}\n",
	       made, made, seconds, open_tasks);
	return 0;
}
