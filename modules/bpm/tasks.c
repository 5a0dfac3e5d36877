/* The task inbox: user tasks listed, claimed, unclaimed and completed.
 *
 * Who may act on a task: its assignee; for a task offered to roles, a
 * user holding one of them (completing claims it); and whoever holds
 * bpm.tasks.write without ":own" (a manager). Others get 403, another
 * tenant's task is 404. Completing is one version-checked write of the
 * task, so of 50 completes at once exactly one wins; the rest are 409. */
#include <stdio.h>
#include <string.h>

#include "bpm.h"
#include "db.h"
#include "directory.h"
#include "events.h"
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

/* The caller's roles (their user record), space-separated into out. */
static void
caller_roles(struct tr_ctx *c, char *out, size_t len)
{
	bson_t user;
	bson_iter_t it, arr;

	out[0] = '\0';
	if (tr_db_get(c->db, "users", c->req->principal.user_hex, &user) == TR_OK &&
	    bson_iter_init_find(&it, &user, "roles") && bson_iter_recurse(&it, &arr))
		while (bson_iter_next(&arr))
			if (BSON_ITER_HOLDS_UTF8(&arr)) {
				size_t n = strlen(out);
				snprintf(out + n, len - n, "%s%s ", n ? "" : " ",
					 bson_iter_utf8(&arr, NULL));
			}
	bson_destroy(&user);
}

/* Is the caller one of the task's candidates? */
static bool
is_candidate(struct tr_ctx *c, const bson_t *task)
{
	char roles[512], word[80];
	bson_iter_t it, arr;

	caller_roles(c, roles, sizeof(roles));
	if (!bson_iter_init_find(&it, task, "candidate_roles") || !bson_iter_recurse(&it, &arr))
		return false;
	while (bson_iter_next(&arr))
		if (BSON_ITER_HOLDS_UTF8(&arr)) {
			snprintf(word, sizeof(word), " %s ", bson_iter_utf8(&arr, NULL));
			if (strstr(roles, word))
				return true;
		}
	return false;
}

static void
assignee_of(const bson_t *task, char out[25])
{
	bson_oid_t oid;

	out[0] = '\0';
	if (tr_doc_oid(task, "assignee_id", &oid))
		bson_oid_to_string(&oid, out);
}

int
bpm_task_audience(struct tr_db *db, const bson_t *task, char out[TR_OWNERS_LEN])
{
	char users[TR_AUDIENCE_MAX][25];
	bson_iter_t it, arr;
	int n = 0;

	assignee_of(task, out);
	if (out[0])
		return 1;
	if (bson_iter_init_find(&it, task, "candidate_roles") && bson_iter_recurse(&it, &arr))
		while (bson_iter_next(&arr) && n < TR_AUDIENCE_MAX) {
			char got[TR_AUDIENCE_MAX][25];
			int k;
			if (!BSON_ITER_HOLDS_UTF8(&arr))
				continue;
			k = tr_directory_users_with_role(db, bson_iter_utf8(&arr, NULL), got,
							 TR_AUDIENCE_MAX);
			for (int i = 0; i < k && n < TR_AUDIENCE_MAX; i++) {
				bool seen = false;
				for (int j = 0; j < n && !seen; j++)
					seen = strcmp(users[j], got[i]) == 0;
				if (!seen)
					memcpy(users[n++], got[i], 25);
			}
		}
	for (int i = 0; i < n; i++) {
		memcpy(out + i * 25, users[i], 24);
		out[i * 25 + 24] = i + 1 < n ? ',' : '\0';
	}
	return n;
}

/* The task, if the caller may see it: a manager any, others theirs and
 * those offered to their roles. 404 otherwise. */
static bool
load_task(struct tr_ctx *c, bson_t *task)
{
	char who[25];
	int rc = tr_db_get(c->db, BPM_TASKS, tr_param(c, 0), task);

	if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
		return false;
	}
	if (!c->req->principal.own_only)
		return true;
	assignee_of(task, who);
	if (strcmp(who, c->req->principal.user_hex) == 0 || (!who[0] && is_candidate(c, task)))
		return true;
	tr_problem(c, 404, "not-found", "no such task");
	return false;
}

/* Emits a task event from a request; the assignee is its owner, so
 * ":own" readers get the events of their own tasks. */
/* The event of task as it is now, heard by the audience of heard_by (the
 * task before the change: a claim is heard by every candidate, so that
 * the task leaves their inboxes). */
static void
emit_to(struct tr_ctx *c, const char *event, const bson_t *task, const bson_t *heard_by)
{
	bson_t data = BSON_INITIALIZER;
	char who[TR_OWNERS_LEN];

	bpm_task_audience(c->db, heard_by, who);
	tr_render_resource(task, &data);
	tr_emit_data(c, "bpm.tasks", event, tr_doc_str(&data, "id") ? tr_doc_str(&data, "id") : "",
		     who[0] ? who : NULL, &data);
	bson_destroy(&data);
}

static void
emit(struct tr_ctx *c, const char *event, const bson_t *task)
{
	emit_to(c, event, task, task);
}

void
bpm_task_list(struct tr_ctx *c)
{
	bson_t filter = BSON_INITIALIZER;
	const char *assignee = tr_query(c, "assignee"), *candidate = tr_query(c, "candidate");
	const char *status = tr_query(c, "status");
	bool narrow = false;

	if (status && strcmp(status, "open") != 0 && strcmp(status, "done") != 0 &&
	    strcmp(status, "cancelled") != 0) {
		tr_problem_field(c, "status", "must be open, done or cancelled");
		goto out;
	}
	if (assignee && candidate) {
		tr_problem(c, 400, "malformed-request", "ask for assignee or candidate, not both");
		goto out;
	}
	if (candidate && strcmp(candidate, "me") != 0) {
		tr_problem_field(c, "candidate", "must be me");
		goto out;
	}
	if (assignee && strcmp(assignee, "me") != 0 && !tr_is_object_id(assignee)) {
		tr_problem_field(c, "assignee", "must be me or a user's id");
		goto out;
	}
	if (c->req->principal.own_only && !candidate &&
	    (!assignee || (strcmp(assignee, "me") != 0 &&
			   strcasecmp(assignee, c->req->principal.user_hex) != 0)))
		assignee = "me"; /* ":own" sees its own tasks */
	if (assignee) {
		bson_oid_t u;
		if (strcmp(assignee, "me") == 0)
			u = c->req->principal.user_id;
		else
			bson_oid_init_from_string(&u, assignee);
		/* Not narrow: a busy assignee's tasks page through list
		 * positions instead of being read whole and sorted. */
		BSON_APPEND_OID(&filter, "assignee_id", &u);
	}
	if (candidate) {
		char roles[512], first[80];
		caller_roles(c, roles, sizeof(roles));
		if (sscanf(roles, " %79s", first) != 1) {
			/* no roles: offered nothing */
			snprintf(first, sizeof(first), "%s", "-");
		}
		BSON_APPEND_NULL(&filter, "assignee_id");
		BSON_APPEND_UTF8(&filter, "candidate_roles", first);
		narrow = true;
	}
	if (status)
		BSON_APPEND_UTF8(&filter, "status", status);
	tr_list_reply_as(c, BPM_TASKS, &filter, bpm_task_sorts, narrow);
out:
	bson_destroy(&filter);
}

void
bpm_task_get(struct tr_ctx *c)
{
	bson_t task;

	if (load_task(c, &task))
		tr_reply_resource(c, 200, &task);
	bson_destroy(&task);
}

/* May the caller act on the task (its assignee, a candidate of an
 * unassigned one, or a manager)? 403 otherwise. */
static bool
may_act(struct tr_ctx *c, const bson_t *task)
{
	char who[25];

	if (!c->req->principal.own_only)
		return true;
	assignee_of(task, who);
	if (strcmp(who, c->req->principal.user_hex) == 0 || (!who[0] && is_candidate(c, task)))
		return true;
	tr_problem(c, 403, "forbidden", "this task is someone else's");
	return false;
}

static bool
open_task(struct tr_ctx *c, const bson_t *task)
{
	const char *status = str_of(task, "status");

	if (status && strcmp(status, "open") == 0)
		return true;
	tr_problem(c, 409, "conflict", "the task is not open");
	return false;
}

static void
reply_change(struct tr_ctx *c, int rc, bson_t *after)
{
	if (rc == TR_EVERSION || rc == TR_EBUSY)
		tr_problem(c, 409, "conflict", "the task changed meanwhile: read it again");
	else if (rc != TR_OK)
		tr_problem_from_err(c, rc);
	else
		tr_reply_resource(c, 200, after);
}

void
bpm_task_claim(struct tr_ctx *c)
{
	bson_t task, set = BSON_INITIALIZER, after = BSON_INITIALIZER;
	char who[25];
	int rc;

	if (!load_task(c, &task) || !open_task(c, &task))
		goto out;
	assignee_of(&task, who);
	if (strcmp(who, c->req->principal.user_hex) == 0) {
		tr_reply_resource(c, 200, &task); /* claimed already, by the caller */
		goto out;
	}
	if (who[0]) {
		tr_problem(c, 409, "conflict", "the task is claimed by someone else");
		goto out;
	}
	if (c->req->principal.own_only && !is_candidate(c, &task)) {
		tr_problem(c, 403, "forbidden", "the task is not offered to your roles");
		goto out;
	}
	BSON_APPEND_OID(&set, "assignee_id", &c->req->principal.user_id);
	bson_destroy(&after);
	rc = tr_db_update(c->db, BPM_TASKS, tr_param(c, 0), tr_doc_int(&task, "version", 0), &set,
			  NULL, &after);
	if (rc == TR_OK)
		emit_to(c, "bpm.task.claimed", &after, &task);
	reply_change(c, rc, &after);
out:
	bson_destroy(&task);
	bson_destroy(&set);
	bson_destroy(&after);
}

void
bpm_task_unclaim(struct tr_ctx *c)
{
	bson_t task, set = BSON_INITIALIZER, after = BSON_INITIALIZER;
	bson_iter_t it, arr;
	int rc;

	if (!load_task(c, &task) || !open_task(c, &task) || !may_act(c, &task))
		goto out;
	if (!bson_iter_init_find(&it, &task, "candidate_roles") || !bson_iter_recurse(&it, &arr) ||
	    !bson_iter_next(&arr)) {
		tr_problem(c, 409, "conflict",
			   "the task is assigned to a person, not offered to roles: nobody could "
			   "claim it back");
		goto out;
	}
	BSON_APPEND_NULL(&set, "assignee_id");
	bson_destroy(&after);
	rc = tr_db_update(c->db, BPM_TASKS, tr_param(c, 0), tr_doc_int(&task, "version", 0), &set,
			  NULL, &after);
	if (rc == TR_OK)
		emit(c, "bpm.task.assigned", &after);
	reply_change(c, rc, &after);
out:
	bson_destroy(&task);
	bson_destroy(&set);
	bson_destroy(&after);
}

/* Checks data against the task's form: every key a field of it, required
 * ones present, each of its type. Field errors (422) when not. */
static bool
form_ok(struct tr_ctx *c, const bson_t *task, const bson_t *data)
{
	bson_iter_t it, arr, v;
	bool ok = true;

	if (bson_iter_init(&it, data))
		while (bson_iter_next(&it)) {
			bool known = false;
			bson_iter_t f, fa;
			if (bson_iter_init_find(&f, task, "form") && bson_iter_recurse(&f, &fa))
				while (bson_iter_next(&fa)) {
					bson_iter_t k;
					if (bson_iter_recurse(&fa, &k) &&
					    bson_iter_find(&k, "key") && BSON_ITER_HOLDS_UTF8(&k) &&
					    strcmp(bson_iter_utf8(&k, NULL), bson_iter_key(&it)) ==
						0)
						known = true;
				}
			if (!known) {
				char field[200];
				snprintf(field, sizeof(field), "data.%s", bson_iter_key(&it));
				tr_problem_field(c, tr_arena_strdup(c->req->arena, field),
						 "is not a field of this task's form");
				ok = false;
			}
		}
	if (!bson_iter_init_find(&it, task, "form") || !bson_iter_recurse(&it, &arr))
		return ok;
	while (bson_iter_next(&arr)) {
		bson_t f;
		const uint8_t *d;
		uint32_t len;
		char field[200];
		if (!BSON_ITER_HOLDS_DOCUMENT(&arr))
			continue;
		bson_iter_document(&arr, &len, &d);
		if (!bson_init_static(&f, d, len))
			continue;
		const char *key = str_of(&f, "key"), *type = str_of(&f, "type");
		bson_iter_t r;
		bool required = bson_iter_init_find(&r, &f, "required") && bson_iter_as_bool(&r);
		const char *msg = NULL;
		if (!key || !type)
			continue;
		snprintf(field, sizeof(field), "data.%s", key);
		if (!bson_iter_init_find(&v, data, key) || BSON_ITER_HOLDS_NULL(&v)) {
			if (required)
				msg = "is required";
		} else if (strcmp(type, "string") == 0) {
			if (!BSON_ITER_HOLDS_UTF8(&v))
				msg = "must be text";
			else if (strlen(bson_iter_utf8(&v, NULL)) > 10000)
				msg = "must be at most 10000 bytes";
		} else if (strcmp(type, "int") == 0) {
			if (!BSON_ITER_HOLDS_INT32(&v) && !BSON_ITER_HOLDS_INT64(&v))
				msg = "must be a whole number";
		} else if (strcmp(type, "bool") == 0) {
			if (!BSON_ITER_HOLDS_BOOL(&v))
				msg = "must be true or false";
		} else if (strcmp(type, "date") == 0) {
			if (!BSON_ITER_HOLDS_UTF8(&v) || !tr_parse_date(bson_iter_utf8(&v, NULL)))
				msg = "must be a date YYYY-MM-DD";
		} else if (strcmp(type, "decimal") == 0) {
			const char *s = BSON_ITER_HOLDS_UTF8(&v) ? bson_iter_utf8(&v, NULL) : NULL;
			bool digits = false, dot = false, good = s != NULL;
			for (const char *p = s && *s == '-' ? s + 1 : s; good && p && *p; p++) {
				if (*p >= '0' && *p <= '9')
					digits = true;
				else if (*p == '.' && !dot && digits)
					dot = true;
				else
					good = false;
			}
			if (BSON_ITER_HOLDS_INT32(&v) || BSON_ITER_HOLDS_INT64(&v))
				good = digits = true;
			if (!good || !digits || (s && s[strlen(s) - 1] == '.'))
				msg = "must be a decimal number, as a string (\"12.50\") or an "
				      "integer";
		} else if (strcmp(type, "enum") == 0) {
			bool found = false;
			bson_iter_t o, oa;
			if (BSON_ITER_HOLDS_UTF8(&v) && bson_iter_init_find(&o, &f, "options") &&
			    bson_iter_recurse(&o, &oa))
				while (bson_iter_next(&oa))
					if (BSON_ITER_HOLDS_UTF8(&oa) &&
					    strcmp(bson_iter_utf8(&oa, NULL),
						   bson_iter_utf8(&v, NULL)) == 0)
						found = true;
			if (!found)
				msg = "must be one of the field's options";
		}
		if (msg) {
			tr_problem_field(c, tr_arena_strdup(c->req->arena, field), msg);
			ok = false;
		}
	}
	return ok;
}

void
bpm_task_complete(struct tr_ctx *c)
{
	static const char *const allowed[] = {"data", NULL};
	bson_t task, set = BSON_INITIALIZER, after = BSON_INITIALIZER, data = BSON_INITIALIZER;
	bson_iter_t it;
	char instance[25];
	bson_oid_t iid;
	int rc;

	if (!load_task(c, &task))
		goto out;
	if (!tr_body_only(c, allowed))
		goto out;
	if (bson_iter_init_find(&it, &c->req->body, "data")) {
		const uint8_t *d;
		uint32_t len;
		if (!BSON_ITER_HOLDS_DOCUMENT(&it)) {
			tr_problem_field(c, "data", "must be an object of the form's fields");
			goto out;
		}
		bson_iter_document(&it, &len, &d);
		bson_destroy(&data);
		if (!bson_init_static(&data, d, len)) {
			bson_init(&data);
			goto out;
		}
	}
	if (!may_act(c, &task) || !open_task(c, &task) || !form_ok(c, &task, &data))
		goto out;
	if (!tr_doc_oid(&task, "instance_id", &iid)) {
		tr_problem(c, 500, "internal", "the task names no instance");
		goto out;
	}
	bson_oid_to_string(&iid, instance);
	/* the settle job first: if this process dies between the task and
	 * the instance, it makes the move */
	if (bpm_job_schedule(c->req->principal.tenant_hex, "settle", instance, NULL, NULL,
			     tr_now_ms() + bpm_settle_after_ms()) != TR_OK) {
		tr_problem_from_err(c, TR_EUNAVAILABLE);
		goto out;
	}
	BSON_APPEND_UTF8(&set, "status", "done");
	BSON_APPEND_DOCUMENT(&set, "data", &data);
	BSON_APPEND_OID(&set, "completed_by", &c->req->principal.user_id);
	BSON_APPEND_DATE_TIME(&set, "completed_at", tr_now_ms());
	{
		char who[25];
		assignee_of(&task, who);
		if (!who[0])
			BSON_APPEND_OID(&set, "assignee_id", &c->req->principal.user_id);
	}
	bson_destroy(&after);
	rc = tr_db_update(c->db, BPM_TASKS, tr_param(c, 0), tr_doc_int(&task, "version", 0), &set,
			  NULL, &after);
	if (rc == TR_EVERSION || rc == TR_EBUSY) {
		tr_problem(c, 409, "conflict", "the task was completed or changed meanwhile");
		goto out;
	}
	if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
		goto out;
	}
	{
		struct bpm_move mv = {
		    .token = tr_param(c, 0), .vars = &data, .by = c->req->principal.user_hex};
		/* the token is the task's id as stored: the path may spell it
		 * in capitals */
		char tid[25];
		bson_oid_t oid;
		tr_doc_oid(&after, "_id", &oid);
		bson_oid_to_string(&oid, tid);
		mv.token = tid;
		rc = bpm_advance(c->db, instance, &mv, NULL);
		if (rc != TR_OK)
			tr_warn(
			    "bpm: instance %s not moved past task %s (%s); its settle job does it",
			    instance, tid, tr_strerror(rc));
	}
	emit(c, "bpm.task.completed", &after);
	tr_reply_resource(c, 200, &after);
out:
	bson_destroy(&task);
	bson_destroy(&set);
	bson_destroy(&after);
	bson_destroy(&data);
}
