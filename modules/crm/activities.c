/* Interactions, tasks (with reminders through the job queue), campaigns
 * and claims. */
#include <stdio.h>
#include <string.h>

#include "crm.h"
#include "db.h"
#include "events.h"
#include "json.h"
#include "log.h"

static const char *const by_at[] = {"-at", "at", "-created_at", NULL};
static const char *const by_created[] = {"-created_at", "created_at", "-updated_at", NULL};
static const char *const by_due[] = {"due_at", "-due_at", "-created_at", "created_at", NULL};
static const char *const by_start[] = {"-starts_at", "starts_at", "-created_at", "name", NULL};

/* ---- interactions ---- */

static const char *const interaction_kinds[] = {"meeting", "call_in", "call_out",
						"sms",	   "email",   NULL};

static const struct tr_field interaction_fields[] = {
    {"client_id", TR_K_REF, TR_F_FILTER | TR_F_NARROW | TR_F_NULLABLE, 0, 0, NULL, "clients"},
    {"deal_id", TR_K_REF, TR_F_FILTER | TR_F_NARROW | TR_F_NULLABLE, 0, 0, NULL, "deals"},
    {"lead_id", TR_K_REF, TR_F_FILTER | TR_F_NARROW | TR_F_NULLABLE, 0, 0, NULL, "leads"},
    {"kind", TR_K_ENUM, TR_F_REQUIRED | TR_F_FILTER, 0, 0, interaction_kinds, NULL},
    {"at", TR_K_TIME, TR_F_REQUIRED, 0, 0, NULL, NULL},
    {"summary", TR_K_TEXT, TR_F_REQUIRED, 1, 5000, NULL, NULL},
    {"user_id", TR_K_REF, TR_F_FILTER, 0, 0, NULL, "users"},
    {NULL, 0, 0, 0, 0, NULL, NULL},
};

/* Linked to at least one of client, deal or lead. */
static bool
linked_hook(struct tr_ctx *c, const struct tr_resource *e, bson_t *set, const bson_t *old)
{
	static const char *const links[] = {"client_id", "deal_id", "lead_id"};
	bson_iter_t it;
	int n = 0;
	(void)e;

	for (int i = 0; i < 3; i++) {
		if (bson_iter_init_find(&it, set, links[i]))
			n += BSON_ITER_HOLDS_OID(&it);
		else if (old && bson_iter_init_find(&it, old, links[i]))
			n += BSON_ITER_HOLDS_OID(&it);
	}
	if (n == 0) {
		tr_problem_field(c, "client_id",
				 "an interaction is linked to a client, deal or lead");
		return false;
	}
	return true;
}

const struct tr_resource crm_interactions = {
    .name = "interaction",
    .read = "crm.interactions.read",
    .write = "crm.interactions.write",
    .about = "Meetings, calls and messages with a client, deal or lead.",
    .coll = "interactions",
    .path = "/v1/crm/interactions",
    .owner_field = "user_id",
    .fields = interaction_fields,
    .sorts = by_at,
    .hook = linked_hook,
    .deletable = true,
};

/* ---- tasks ---- */

#define REMINDERS "crm.reminders"

static const struct tr_field task_fields[] = {
    {"title", TR_K_LINE, TR_F_REQUIRED, 1, 200, NULL, NULL},
    {"due_at", TR_K_TIME, TR_F_NULLABLE, 0, 0, NULL, NULL},
    {"assignee_id", TR_K_REF, TR_F_FILTER, 0, 0, NULL, "users"},
    {"related", TR_K_OBJECT, TR_F_NULLABLE, 0, 0, NULL, NULL},
    {"done", TR_K_BOOL, TR_F_FILTER, 0, 0, NULL, NULL},
    {NULL, 0, 0, 0, 0, NULL, NULL},
};

/* related: one of {"client_id"}, {"deal_id"}, {"lead_id"} naming a record. */
static bool
related_ok(struct tr_ctx *c, bson_t *set)
{
	static const struct {
		const char *key, *coll;
	} kinds[] = {{"client_id", "clients"}, {"deal_id", "deals"}, {"lead_id", "leads"}};
	bson_iter_t it, r;
	bson_t out;
	int n = 0;
	bool ok = true;

	if (!bson_iter_init_find(&it, &c->req->body, "related") || BSON_ITER_HOLDS_NULL(&it))
		return true;
	bson_iter_recurse(&it, &r);
	BSON_APPEND_DOCUMENT_BEGIN(set, "related", &out);
	while (ok && bson_iter_next(&r)) {
		size_t k;
		for (k = 0; k < 3; k++)
			if (strcmp(bson_iter_key(&r), kinds[k].key) == 0)
				break;
		const char *hex = BSON_ITER_HOLDS_UTF8(&r) ? bson_iter_utf8(&r, NULL) : "";
		bson_oid_t id;
		if (k == 3 || !tr_is_object_id(hex) || n++) {
			ok = false;
			break;
		}
		bson_oid_init_from_string(&id, hex);
		if (!tr_res_exists(c, kinds[k].coll, &id)) {
			bson_append_document_end(set, &out);
			tr_problem_field(c, "related", "names a record that does not exist");
			return false;
		}
		BSON_APPEND_OID(&out, kinds[k].key, &id);
	}
	bson_append_document_end(set, &out);
	if (!ok || n != 1) {
		tr_problem_field(c, "related",
				 "must be one of {\"client_id\"}, {\"deal_id\"}, {\"lead_id\"}");
		return false;
	}
	return true;
}

/* A reminder job for the task's due time; the job checks, when it runs,
 * that the task is still open and still due then (so moving or finishing
 * a task needs no cancellation). */
static void
schedule_reminder(struct tr_ctx *c, const bson_t *task, const bson_t *old)
{
	bson_iter_t it;
	bson_oid_t id;
	char hex[25], payload[96];
	int64_t due;

	(void)old;
	if (!bson_iter_init_find(&it, task, "due_at") || !BSON_ITER_HOLDS_DATE_TIME(&it))
		return;
	due = bson_iter_date_time(&it);
	if (bson_iter_init_find(&it, task, "done") && bson_iter_as_bool(&it))
		return;
	if (!tr_doc_oid(task, "_id", &id))
		return;
	bson_oid_to_string(&id, hex);
	snprintf(payload, sizeof(payload), "{\"task_id\":\"%s\",\"due_at\":%lld}", hex,
		 (long long)due);
	/* Redis answered the request's own check a moment ago; if it went
	 * away since, the task stays saved and the reminder is lost: logged. */
	if (tr_job_enqueue(REMINDERS, c->req->principal.tenant_hex, payload, due, NULL) != TR_OK)
		tr_error("crm: the reminder of task %s could not be scheduled", hex);
}

static bool
task_hook(struct tr_ctx *c, const struct tr_resource *e, bson_t *set, const bson_t *old)
{
	(void)e;
	if (!related_ok(c, set))
		return false;
	if (!old && !bson_has_field(set, "done"))
		BSON_APPEND_BOOL(set, "done", false);
	return true;
}

const struct tr_resource crm_tasks = {
    .name = "task",
    .read = "crm.tasks.read",
    .write = "crm.tasks.write",
    .about = "A task for a user; at due_at the assignee gets crm.task.due.",
    .coll = "tasks",
    .path = "/v1/crm/tasks",
    .topic = "crm.tasks",
    .event = "crm.task",
    .owner_field = "assignee_id",
    .fields = task_fields,
    .sorts = by_due,
    .hook = task_hook,
    .saved = schedule_reminder,
    .deletable = true,
};

/* The reminder job: emits crm.task.due once, if the task is open and due at
 * the time the job was made for. */
int
crm_task_reminder(const struct tr_job *job, char *err, size_t errlen)
{
	bson_t payload, task = BSON_INITIALIZER;
	const char *task_hex;
	int64_t due;
	bson_iter_t it;
	struct tr_db *db = NULL;
	char perr[64], once[96];
	int rc = 0, drc;

	if (tr_json_parse(job->payload, job->payload_len, &payload, perr, sizeof(perr)) != 0 ||
	    !(task_hex = tr_doc_str(&payload, "task_id")) || !tr_is_object_id(task_hex) ||
	    (due = tr_doc_int(&payload, "due_at", -1)) < 0 || !tr_is_object_id(job->tenant)) {
		bson_destroy(&payload);
		bson_destroy(&task);
		return 0; /* not a reminder: nothing to do */
	}
	db = tr_db_for_tenant(job->tenant);
	if (!db) {
		snprintf(err, errlen, "out of memory");
		rc = -1;
		goto out;
	}
	bson_destroy(&task);
	drc = tr_db_get(db, "tasks", task_hex, &task);
	if (drc == TR_ENOTFOUND)
		goto out; /* deleted since */
	if (drc != TR_OK) {
		snprintf(err, errlen, "database: %s", tr_strerror(drc));
		rc = -1;
		goto out;
	}
	/* only for the due time it was made for, and only while open */
	if (!bson_iter_init_find(&it, &task, "due_at") || !BSON_ITER_HOLDS_DATE_TIME(&it) ||
	    bson_iter_date_time(&it) != due ||
	    (bson_iter_init_find(&it, &task, "done") && BSON_ITER_HOLDS_BOOL(&it) &&
	     bson_iter_bool(&it)))
		goto out;
	/* once, however often the job runs (it is delivered at least once) */
	snprintf(once, sizeof(once), "crm.task.due/%s/%lld", task_hex, (long long)due);
	drc = tr_db_once(db, once);
	if (drc == TR_EDUPLICATE)
		goto out;
	if (drc != TR_OK) {
		snprintf(err, errlen, "database: %s", tr_strerror(drc));
		rc = -1;
		goto out;
	}
	bson_t data = BSON_INITIALIZER;
	bson_oid_t assignee;
	char owner[25] = "";
	if (tr_doc_oid(&task, "assignee_id", &assignee))
		bson_oid_to_string(&assignee, owner);
	tr_render_resource(&task, &data);
	tr_emit_background(job->tenant, "crm.tasks", "crm.task.due", task_hex,
			   owner[0] ? owner : NULL, &data);
	bson_destroy(&data);
out:
	tr_db_release(db); /* NULL: nothing */
	bson_destroy(&task);
	bson_destroy(&payload);
	return rc;
}

/* ---- campaigns ---- */

static const char *const campaign_kinds[] = {"exhibition", "seminar", "ads",
					     "mailing",	   "other",   NULL};

static const struct tr_field campaign_fields[] = {
    {"name", TR_K_LINE, TR_F_REQUIRED, 1, 200, NULL, NULL},
    {"kind", TR_K_ENUM, TR_F_REQUIRED | TR_F_FILTER, 0, 0, campaign_kinds, NULL},
    {"channel", TR_K_LINE, TR_F_NULLABLE, 1, 100, NULL, NULL},
    {"cost", TR_K_MONEY, TR_F_NULLABLE, 0, 1000000000000000LL, NULL, NULL},
    {"starts_at", TR_K_TIME, TR_F_NULLABLE, 0, 0, NULL, NULL},
    {"ends_at", TR_K_TIME, TR_F_NULLABLE, 0, 0, NULL, NULL},
    {NULL, 0, 0, 0, 0, NULL, NULL},
};

const struct tr_resource crm_campaigns = {
    .name = "campaign",
    .read = "crm.campaigns.read",
    .write = "crm.campaigns.write",
    .about = "A marketing campaign that leads are attributed to.",
    .coll = "campaigns",
    .path = "/v1/crm/campaigns",
    .fields = campaign_fields,
    .sorts = by_start,
    .deletable = true,
};

/* ---- claims ---- */

static const char *const claim_statuses[] = {"open", "in_progress", "resolved", "rejected", NULL};

static const struct tr_field claim_fields[] = {
    {"client_id", TR_K_REF, TR_F_REQUIRED | TR_F_FILTER | TR_F_NARROW, 0, 0, NULL, "clients"},
    {"subject", TR_K_LINE, TR_F_REQUIRED, 1, 200, NULL, NULL},
    {"description", TR_K_TEXT, TR_F_NULLABLE, 1, 10000, NULL, NULL},
    {"status", TR_K_ENUM, TR_F_FILTER, 0, 0, claim_statuses, NULL},
    {"assignee_id", TR_K_REF, TR_F_FILTER, 0, 0, NULL, "users"},
    {NULL, 0, 0, 0, 0, NULL, NULL},
};

/* open -> in_progress -> resolved | rejected (also straight from open);
 * resolved and rejected are final. */
static const struct tr_transition claim_moves[] = {
    {NULL, "open", NULL, NULL},
    {"open", "in_progress", NULL, NULL},
    {"open", "resolved", NULL, NULL},
    {"open", "rejected", NULL, NULL},
    {"in_progress", "resolved", NULL, NULL},
    {"in_progress", "rejected", NULL, NULL},
    {NULL, NULL, NULL, NULL},
};
static const struct tr_states claim_states = {"status", claim_moves};

const struct tr_resource crm_claims = {
    .name = "claim",
    .read = "crm.claims.read",
    .write = "crm.claims.write",
    .about = "A client's complaint; status open -> in_progress -> resolved | rejected.",
    .coll = "claims",
    .path = "/v1/crm/claims",
    .topic = "crm.claims",
    .event = "crm.claim",
    .owner_field = "assignee_id",
    .fields = claim_fields,
    .sorts = by_created,
    .states = &claim_states,
    .deletable = true,
};
