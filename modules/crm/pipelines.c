/* Pipelines: ordered stages deals move through. Every tenant has a
 * default one, created on first use. */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "crm.h"
#include "db.h"
#include "json.h"

#define PIPELINES "pipelines"
#define MAX_STAGES 30

static const char *const sorts[] = {"created_at", "-created_at", "name", NULL};

static const struct tr_field fields[] = {
    {"name", TR_K_LINE, TR_F_REQUIRED, 1, 100, NULL, NULL},
    {"stages", TR_K_ARRAY, TR_F_REQUIRED, 0, 0, NULL, NULL},
    {"is_default", TR_K_BOOL, TR_F_SERVER, 0, 0, NULL, NULL},
    {NULL, 0, 0, 0, 0, NULL, NULL},
};

static bool
key_ok(const char *k)
{
	size_t n = strlen(k);
	if (n == 0 || n > 40)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!(islower((unsigned char)k[i]) || isdigit((unsigned char)k[i]) || k[i] == '_'))
			return false;
	return true;
}

/* stages: 1..30 of {"key": [a-z0-9_]{1,40} unique, "name", "probability": 0..100}. */
static bool
stages_ok(struct tr_ctx *c, bson_t *set)
{
	bson_iter_t it, arr;
	bson_t list;
	const char *keys[MAX_STAGES];
	int n = 0;
	bool ok = true;

	if (!bson_iter_init_find(&it, &c->req->body, "stages"))
		return true;
	bson_iter_recurse(&it, &arr);
	BSON_APPEND_ARRAY_BEGIN(set, "stages", &list);
	while (ok && bson_iter_next(&arr)) {
		bson_iter_t f;
		const char *key = NULL, *name = NULL;
		int64_t prob = -1;
		int extra = 0;
		if (n == MAX_STAGES || !BSON_ITER_HOLDS_DOCUMENT(&arr) ||
		    !bson_iter_recurse(&arr, &f)) {
			ok = false;
			break;
		}
		while (bson_iter_next(&f)) {
			const char *k = bson_iter_key(&f);
			if (strcmp(k, "key") == 0 && BSON_ITER_HOLDS_UTF8(&f))
				key = bson_iter_utf8(&f, NULL);
			else if (strcmp(k, "name") == 0 && BSON_ITER_HOLDS_UTF8(&f))
				name = bson_iter_utf8(&f, NULL);
			else if (strcmp(k, "probability") == 0 &&
				 (BSON_ITER_HOLDS_INT32(&f) || BSON_ITER_HOLDS_INT64(&f)))
				prob = bson_iter_as_int64(&f);
			else
				extra++;
		}
		if (extra || !key || !key_ok(key) || !name || !*name || strlen(name) > 100 ||
		    strpbrk(name, "\r\n\t") || prob < 0 || prob > 100) {
			ok = false;
			break;
		}
		for (int i = 0; i < n; i++)
			if (strcmp(keys[i], key) == 0)
				ok = false;
		keys[n] = key;
		char idx[16];
		const char *ik;
		bson_t st;
		bson_uint32_to_string((uint32_t)n++, &ik, idx, sizeof(idx));
		BSON_APPEND_DOCUMENT_BEGIN(&list, ik, &st);
		BSON_APPEND_UTF8(&st, "key", key);
		BSON_APPEND_UTF8(&st, "name", name);
		BSON_APPEND_INT32(&st, "probability", (int32_t)prob);
		bson_append_document_end(&list, &st);
	}
	bson_append_array_end(set, &list);
	if (!ok || n == 0) {
		tr_problem_field(c, "stages",
				 "must be 1 to 30 stages {\"key\": [a-z0-9_], \"name\", "
				 "\"probability\": 0..100} with unique keys");
		return false;
	}
	return true;
}

static bool
pipeline_hook(struct tr_ctx *c, const struct tr_resource *e, bson_t *set, const bson_t *old)
{
	(void)e;
	if (!stages_ok(c, set))
		return false;
	if (!old) {
		char slug[33];
		tr_random_hex(slug, 16);
		BSON_APPEND_UTF8(set, "slug", slug);
		BSON_APPEND_BOOL(set, "is_default", false);
	}
	return true;
}

/* The default pipeline exists before anyone lists. */
static bool
pipelines_listing(struct tr_ctx *c)
{
	bson_t p;
	int rc = crm_default_pipeline(c, &p);

	bson_destroy(&p);
	if (rc != TR_OK)
		tr_problem_from_err(c, rc);
	return rc == TR_OK;
}

/* The default pipeline stays; one with deals stays. */
static bool
pipeline_may_delete(struct tr_ctx *c, const bson_t *p)
{
	bson_t filter = BSON_INITIALIZER;
	bson_oid_t id;
	long long n = 0;
	bson_iter_t it;
	bool ok = false;
	int rc;

	if (bson_iter_init_find(&it, p, "is_default") && bson_iter_as_bool(&it)) {
		tr_problem(c, 409, "conflict", "the default pipeline cannot be deleted");
		goto out;
	}
	tr_doc_oid(p, "_id", &id);
	BSON_APPEND_OID(&filter, "pipeline_id", &id);
	rc = tr_db_count(c->db, "deals", &filter, &n);
	if (rc != TR_OK)
		tr_problem_from_err(c, rc);
	else if (n > 0)
		tr_problem(c, 409, "conflict", "the pipeline still has deals");
	else
		ok = true;
out:
	bson_destroy(&filter);
	return ok;
}

const struct tr_resource crm_pipelines = {
    .name = "pipeline",
    .coll = PIPELINES,
    .path = "/v1/crm/pipelines",
    .read = "crm.deals.read",
    .write = "crm.settings.write",
    .about = "A sales pipeline and its stages (the default one always exists and stays); one "
	     "with deals cannot be deleted.",
    .fields = fields,
    .sorts = sorts,
    .hook = pipeline_hook,
    .listing = pipelines_listing,
    .may_delete = pipeline_may_delete,
    .deletable = true,
};

int
crm_default_pipeline(struct tr_ctx *c, bson_t *out)
{
	static const struct {
		const char *key, *name;
		int probability;
	} stages[] = {{"new", "New", 10},
		      {"qualified", "Qualified", 25},
		      {"proposal", "Proposal", 50},
		      {"negotiation", "Negotiation", 75},
		      {"closing", "Closing", 90}};
	bson_t filter = BSON_INITIALIZER, doc = BSON_INITIALIZER, arr, st;
	int rc;

	BSON_APPEND_UTF8(&filter, "slug", "default");
	rc = tr_db_find_one(c->db, PIPELINES, &filter, out);
	if (rc != TR_ENOTFOUND)
		goto done;
	bson_destroy(out);
	BSON_APPEND_UTF8(&doc, "name", "Sales");
	BSON_APPEND_UTF8(&doc, "slug", "default");
	BSON_APPEND_BOOL(&doc, "is_default", true);
	BSON_APPEND_ARRAY_BEGIN(&doc, "stages", &arr);
	for (size_t i = 0; i < sizeof(stages) / sizeof(stages[0]); i++) {
		char idx[16];
		const char *k;
		bson_uint32_to_string((uint32_t)i, &k, idx, sizeof(idx));
		BSON_APPEND_DOCUMENT_BEGIN(&arr, k, &st);
		BSON_APPEND_UTF8(&st, "key", stages[i].key);
		BSON_APPEND_UTF8(&st, "name", stages[i].name);
		BSON_APPEND_INT32(&st, "probability", stages[i].probability);
		bson_append_document_end(&arr, &st);
	}
	bson_append_array_end(&doc, &arr);
	rc = tr_db_insert(c->db, PIPELINES, &doc, out);
	if (rc == TR_EDUPLICATE) { /* made by a concurrent request */
		bson_destroy(out);
		rc = tr_db_find_one(c->db, PIPELINES, &filter, out);
	}
done:
	bson_destroy(&filter);
	bson_destroy(&doc);
	return rc;
}

/* Does the pipeline have this stage key? */
bool
crm_pipeline_has_stage(const bson_t *pipeline, const char *stage)
{
	bson_iter_t it, arr, f;

	if (!bson_iter_init_find(&it, pipeline, "stages") || !bson_iter_recurse(&it, &arr))
		return false;
	while (bson_iter_next(&arr))
		if (bson_iter_recurse(&arr, &f) && bson_iter_find(&f, "key") &&
		    BSON_ITER_HOLDS_UTF8(&f) && strcmp(bson_iter_utf8(&f, NULL), stage) == 0)
			return true;
	return false;
}
