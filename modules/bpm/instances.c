/* Process instances and their incidents: started by hand or by API,
 * read with their history, cancelled with compensation; an incident
 * (a step out of retries, a condition that cannot be evaluated) retried
 * once its cause is fixed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bpm.h"
#include "db.h"
#include "json.h"
#include "log.h"
#include "resource.h"

static const char *
str_of(const bson_t *doc, const char *key)
{
	bson_iter_t it;

	if (doc && bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_UTF8(&it))
		return bson_iter_utf8(&it, NULL);
	return NULL;
}

/* Variables as stored: names without dots (field paths) at any depth,
 * at most 20 levels, 64 KiB in all. */
static bool
vars_ok(const bson_t *doc, int depth)
{
	bson_iter_t it;

	if (depth > 20 || doc->len > 65536 || !bson_iter_init(&it, doc))
		return false;
	while (bson_iter_next(&it)) {
		const char *k = bson_iter_key(&it);
		if (!*k || strchr(k, '.') || *k == '$')
			return false;
		if (BSON_ITER_HOLDS_DOCUMENT(&it) || BSON_ITER_HOLDS_ARRAY(&it)) {
			bson_t sub;
			const uint8_t *d;
			uint32_t len;
			if (BSON_ITER_HOLDS_DOCUMENT(&it))
				bson_iter_document(&it, &len, &d);
			else
				bson_iter_array(&it, &len, &d);
			if (!bson_init_static(&sub, d, len) || !vars_ok(&sub, depth + 1))
				return false;
		}
	}
	return true;
}

static void
reply_instance(struct tr_ctx *c, int status, const bson_t *stored)
{
	bson_t out = BSON_INITIALIZER;

	bpm_instance_render(stored, &out);
	tr_reply_json(c, status, &out);
	bson_destroy(&out);
}

/* Subject types an instance may name, and the collection of each. */
static const struct {
	const char *type, *coll;
} subjects[] = {
    {"crm.deal", "deals"},	 {"crm.lead", "leads"},		  {"crm.client", "clients"},
    {"erp.order", "erp_orders"}, {"erp.invoice", "erp_invoices"},
};

void
bpm_instance_create(struct tr_ctx *c)
{
	static const char *const allowed[] = {"definition_key", "version", "subject", "variables",
					      NULL};
	bson_t def = BSON_INITIALIZER, out = BSON_INITIALIZER, subject = BSON_INITIALIZER;
	bson_t vars = BSON_INITIALIZER, sub;
	bson_iter_t it;
	const char *key;
	long long version = 0;
	bool has_subject = false;
	int rc;

	if (!tr_body_only(c, allowed))
		goto out;
	key = tr_body_str(c, "definition_key");
	if (!key || !*key)
		tr_problem_field(c, "definition_key", "is required: the key of a definition");
	if (bson_iter_init_find(&it, &c->req->body, "version")) {
		if (!BSON_ITER_HOLDS_INT32(&it) && !BSON_ITER_HOLDS_INT64(&it))
			tr_problem_field(c, "version", "must be a version number");
		else if ((version = bson_iter_as_int64(&it)) <= 0)
			tr_problem_field(c, "version", "versions are numbered from 1");
	}
	if (bson_iter_init_find(&it, &c->req->body, "variables")) {
		const uint8_t *d;
		uint32_t len;
		if (!BSON_ITER_HOLDS_DOCUMENT(&it)) {
			tr_problem_field(c, "variables", "must be an object");
		} else {
			bson_iter_document(&it, &len, &d);
			bson_destroy(&vars);
			if (!bson_init_static(&vars, d, len))
				bson_init(&vars);
			else if (!vars_ok(&vars, 0))
				tr_problem_field(
				    c, "variables",
				    "names must be free of dots, at most 20 levels deep and "
				    "64 KiB in all");
		}
	}
	if (bson_iter_init_find(&it, &c->req->body, "subject") && !BSON_ITER_HOLDS_NULL(&it)) {
		const uint8_t *d;
		uint32_t len;
		const char *type = NULL, *id = NULL, *coll = NULL;
		if (BSON_ITER_HOLDS_DOCUMENT(&it)) {
			bson_iter_document(&it, &len, &d);
			if (bson_init_static(&sub, d, len)) {
				type = str_of(&sub, "type");
				id = str_of(&sub, "id");
			}
		}
		for (size_t i = 0; type && i < sizeof(subjects) / sizeof(subjects[0]); i++)
			if (strcmp(subjects[i].type, type) == 0)
				coll = subjects[i].coll;
		if (!coll || !id || !tr_is_object_id(id) || bson_count_keys(&sub) != 2) {
			tr_problem_field(
			    c, "subject",
			    "must be {\"type\": crm.deal|crm.lead|crm.client|erp.order|"
			    "erp.invoice, \"id\"}");
		} else {
			bson_t rec;
			char lower[25];
			snprintf(lower, sizeof(lower), "%s", id);
			for (char *p = lower; *p; p++)
				if (*p >= 'A' && *p <= 'F')
					*p = (char)(*p - 'A' + 'a');
			rc = tr_db_get(c->db, coll, lower, &rec);
			bson_destroy(&rec);
			if (rc == TR_ENOTFOUND)
				tr_problem_field(c, "subject", "names no record of the tenant");
			else if (rc != TR_OK)
				tr_problem_from_err(c, rc);
			BSON_APPEND_UTF8(&subject, "type", type);
			BSON_APPEND_UTF8(&subject, "id", lower);
			has_subject = true;
		}
	}
	if (c->resp->problem_slug)
		goto out;
	bson_destroy(&def);
	rc = bpm_def_load(c->db, key, version, &def);
	if (rc == TR_ENOTFOUND) {
		tr_problem_field(c, "definition_key", "no such definition or version");
		goto out;
	}
	if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
		goto out;
	}
	/* the subject's id as a variable too ("deal_id"), for steps and
	 * conditions */
	bson_t all = BSON_INITIALIZER;
	bson_concat(&all, &vars);
	if (has_subject) {
		const char *type = str_of(&subject, "type"), *dot = strrchr(type, '.');
		char var[48];
		snprintf(var, sizeof(var), "%s_id", dot ? dot + 1 : type);
		if (!bson_has_field(&all, var))
			BSON_APPEND_UTF8(&all, var, str_of(&subject, "id"));
	}
	bson_destroy(&out);
	rc = bpm_start(c->db, &def, has_subject ? &subject : NULL, &all, c->req->principal.user_hex,
		       NULL, &out);
	bson_destroy(&all);
	if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
		goto out;
	}
	reply_instance(c, 201, &out);
out:
	bson_destroy(&def);
	bson_destroy(&out);
	bson_destroy(&subject);
	bson_destroy(&vars);
}

void
bpm_instance_list(struct tr_ctx *c)
{
	bson_t filter = BSON_INITIALIZER;
	const char *status = tr_query(c, "status"), *key = tr_query(c, "definition_key");

	if (status && strcmp(status, "running") != 0 && strcmp(status, "completed") != 0 &&
	    strcmp(status, "cancelled") != 0 && strcmp(status, "failed") != 0) {
		tr_problem_field(c, "status", "must be running, completed, cancelled or failed");
		bson_destroy(&filter);
		return;
	}
	if (status)
		BSON_APPEND_UTF8(&filter, "status", status);
	if (key)
		BSON_APPEND_UTF8(&filter, "definition_key", key);
	bpm_list_reply(c, BPM_INSTANCES, &filter, bpm_newest_first, false, bpm_instance_render);
	bson_destroy(&filter);
}

void
bpm_instance_get(struct tr_ctx *c)
{
	bson_t inst;
	int rc = tr_db_get(c->db, BPM_INSTANCES, tr_param(c, 0), &inst);

	if (rc == TR_OK)
		reply_instance(c, 200, &inst);
	else
		tr_problem_from_err(c, rc);
	bson_destroy(&inst);
}

struct entries {
	bson_t *docs[2048];
	int n;
};

static int
entries_cb(void *arg, const bson_t *res)
{
	struct entries *e = arg;

	if (e->n < 2048)
		e->docs[e->n++] = bson_copy(res);
	return 0;
}

static int
by_seq(const void *a, const void *b)
{
	int64_t x = tr_doc_int(*(bson_t *const *)a, "seq", 0);
	int64_t y = tr_doc_int(*(bson_t *const *)b, "seq", 0);
	return x < y ? -1 : x > y;
}

void
bpm_instance_history(struct tr_ctx *c)
{
	bson_t inst, answer = BSON_INITIALIZER, items;
	struct entries *e = calloc(1, sizeof(*e));
	bson_oid_t iid;
	int rc = tr_db_get(c->db, BPM_INSTANCES, tr_param(c, 0), &inst);

	if (rc != TR_OK || !e) {
		tr_problem_from_err(c, e ? rc : TR_ENOMEM);
		goto out;
	}
	tr_doc_oid(&inst, "_id", &iid);
	bson_t *filter = BCON_NEW("instance_id", BCON_OID(&iid));
	rc = tr_db_each(c->db, BPM_HISTORY, filter, entries_cb, e);
	bson_destroy(filter);
	if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
		goto out;
	}
	qsort(e->docs, (size_t)e->n, sizeof(e->docs[0]), by_seq);
	BSON_APPEND_ARRAY_BEGIN(&answer, "items", &items);
	for (int i = 0; i < e->n; i++) {
		char k[16];
		const char *kk;
		bson_t item;
		bson_iter_t it;
		bson_uint32_to_string((uint32_t)i, &kk, k, sizeof(k));
		BSON_APPEND_DOCUMENT_BEGIN(&items, kk, &item);
		if (bson_iter_init(&it, e->docs[i]))
			while (bson_iter_next(&it)) {
				const char *key = bson_iter_key(&it);
				if (strcmp(key, "node_id") == 0 || strcmp(key, "action") == 0 ||
				    strcmp(key, "by") == 0 || strcmp(key, "at") == 0)
					bson_append_iter(&item, key, -1, &it);
			}
		bson_append_document_end(&items, &item);
	}
	bson_append_array_end(&answer, &items);
	tr_reply_json(c, 200, &answer);
out:
	if (e)
		for (int i = 0; i < e->n; i++)
			bson_destroy(e->docs[i]);
	free(e);
	bson_destroy(&inst);
	bson_destroy(&answer);
}

void
bpm_instance_cancel(struct tr_ctx *c)
{
	bson_t inst, report, out, answer = BSON_INITIALIZER;
	char id[25];
	bson_oid_t oid;
	int rc = tr_db_get(c->db, BPM_INSTANCES, tr_param(c, 0), &inst);

	if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
		bson_destroy(&inst);
		bson_destroy(&answer);
		return;
	}
	tr_doc_oid(&inst, "_id", &oid);
	bson_oid_to_string(&oid, id);
	bson_destroy(&inst);
	rc = bpm_cancel(c->db, id, c->req->principal.user_hex, &report, &out);
	if (rc == TR_EVERSION) {
		tr_problem(c, 409, "conflict", "the instance has ended: it cannot be cancelled");
	} else if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
	} else {
		bpm_instance_render(&out, &answer);
		BSON_APPEND_ARRAY(&answer, "compensations", &report);
		tr_reply_json(c, 200, &answer);
	}
	bson_destroy(&report);
	bson_destroy(&out);
	bson_destroy(&answer);
}

/* ---- incidents ---- */

void
bpm_incident_list(struct tr_ctx *c)
{
	bson_t filter = BSON_INITIALIZER;
	const char *status = tr_query(c, "status"), *inst = tr_query(c, "instance_id");

	if (status && strcmp(status, "open") != 0 && strcmp(status, "resolved") != 0) {
		tr_problem_field(c, "status", "must be open or resolved");
		goto out;
	}
	if (inst && !tr_is_object_id(inst)) {
		tr_problem_field(c, "instance_id", "must be an instance's id");
		goto out;
	}
	if (status)
		BSON_APPEND_UTF8(&filter, "status", status);
	if (inst) {
		bson_oid_t oid;
		bson_oid_init_from_string(&oid, inst);
		BSON_APPEND_OID(&filter, "instance_id", &oid);
	}
	tr_list_reply_as(c, BPM_INCIDENTS, &filter, bpm_newest_first, inst != NULL);
out:
	bson_destroy(&filter);
}

/* Retries what failed: the instance runs again (one version-checked
 * write, so two retries at once make one), and the failed step's token
 * moves or runs again. */
void
bpm_incident_retry(struct tr_ctx *c)
{
	bson_t inc, inst = BSON_INITIALIZER, set = BSON_INITIALIZER, after = BSON_INITIALIZER;
	bson_t iset = BSON_INITIALIZER, iafter = BSON_INITIALIZER, unset = BSON_INITIALIZER;
	bson_oid_t iid;
	char ihex[25];
	const char *token;
	int rc = tr_db_get(c->db, BPM_INCIDENTS, tr_param(c, 0), &inc);

	if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
		goto out;
	}
	if (!str_of(&inc, "status") || strcmp(str_of(&inc, "status"), "open") != 0) {
		tr_problem(c, 409, "conflict", "the incident is resolved already");
		goto out;
	}
	tr_doc_oid(&inc, "instance_id", &iid);
	bson_oid_to_string(&iid, ihex);
	token = str_of(&inc, "token");
	bson_destroy(&inst);
	if ((rc = tr_db_get(c->db, BPM_INSTANCES, ihex, &inst)) != TR_OK) {
		tr_problem_from_err(c, rc);
		goto out;
	}
	if (!str_of(&inst, "status") || strcmp(str_of(&inst, "status"), "failed") != 0) {
		tr_problem(c, 409, "conflict", "the instance is not failed");
		goto out;
	}
	/* the incident first: of two retries at once, one goes on */
	BSON_APPEND_UTF8(&set, "status", "resolved");
	BSON_APPEND_OID(&set, "resolved_by", &c->req->principal.user_id);
	bson_destroy(&after);
	rc = tr_db_update(c->db, BPM_INCIDENTS, tr_param(c, 0), tr_doc_int(&inc, "version", 0),
			  &set, NULL, &after);
	if (rc == TR_EVERSION || rc == TR_EBUSY) {
		tr_problem(c, 409, "conflict", "the incident is being retried already");
		goto out;
	}
	if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
		goto out;
	}
	/* a gateway's token evaluates again when moved; a step's runs again */
	BSON_APPEND_UTF8(&iset, "status", "running");
	BSON_APPEND_INT32(&unset, "error", 1);
	BSON_APPEND_INT32(&unset, "error_node", 1);
	bson_destroy(&iafter);
	rc = tr_db_update(c->db, BPM_INSTANCES, ihex, tr_doc_int(&inst, "version", 0), &iset,
			  &unset, &iafter);
	if (rc == TR_OK && token && *token) {
		bson_t def, node;
		char did[25];
		bson_oid_t d;
		tr_doc_oid(&inst, "definition_id", &d);
		bson_oid_to_string(&d, did);
		const char *nid = str_of(&inc, "node_id");
		if (bpm_def_get(c->db, did, &def) == TR_OK && nid &&
		    bpm_def_node(&def, nid, &node) &&
		    strcmp(bpm_node_type(&node), "exclusive") == 0) {
			struct bpm_move mv = {.token = token, .by = c->req->principal.user_hex};
			rc = bpm_advance(c->db, ihex, &mv, NULL);
		} else {
			rc = bpm_job_schedule(c->req->principal.tenant_hex, "step", ihex, token,
					      "retry", 0);
		}
		bson_destroy(&def);
	}
	if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
		goto out;
	}
	tr_reply_resource(c, 200, &after);
out:
	bson_destroy(&inc);
	bson_destroy(&inst);
	bson_destroy(&set);
	bson_destroy(&after);
	bson_destroy(&iset);
	bson_destroy(&iafter);
	bson_destroy(&unset);
}
