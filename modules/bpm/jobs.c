/* The engine's jobs (queue "bpm") and the events of other modules it acts
 * on (queue "bpm.events", module.h tr_event_listener).
 *
 * Jobs come at least once: each names the token it moves, and a move
 * whose token is gone changes nothing (engine.c), so a job run twice, or
 * on two processes, moves once. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bpm.h"
#include "cond.h"
#include "db.h"
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

static bool
sub_doc(const bson_t *doc, const char *key, bson_t *out)
{
	bson_iter_t it;
	const uint8_t *data;
	uint32_t len;

	if (!doc || !bson_iter_init_find(&it, doc, key) || !BSON_ITER_HOLDS_DOCUMENT(&it))
		return false;
	bson_iter_document(&it, &len, &data);
	return bson_init_static(out, data, len);
}

/* The node a token of the instance waits in, into *node (borrowed from
 * def); false when the token is gone. */
static bool
token_node(const bson_t *inst, const bson_t *def, const char *token, bson_t *node)
{
	bson_iter_t it, arr;

	if (!bson_iter_init_find(&it, inst, "tokens") || !bson_iter_recurse(&it, &arr))
		return false;
	while (bson_iter_next(&arr)) {
		bson_t t;
		const uint8_t *data;
		uint32_t len;
		if (!BSON_ITER_HOLDS_DOCUMENT(&arr))
			continue;
		bson_iter_document(&arr, &len, &data);
		if (!bson_init_static(&t, data, len))
			continue;
		const char *id = str_of(&t, "id"), *n = str_of(&t, "node");
		if (id && n && strcmp(id, token) == 0)
			return bpm_def_node(def, n, node);
	}
	return false;
}

/* An error boundary attached to node, or NULL. */
static const char *
error_boundary(const bson_t *def, const char *node)
{
	bson_iter_t it, arr;

	if (!bson_iter_init_find(&it, def, "nodes") || !bson_iter_recurse(&it, &arr))
		return NULL;
	while (bson_iter_next(&arr)) {
		bson_t n;
		const uint8_t *data;
		uint32_t len;
		if (!BSON_ITER_HOLDS_DOCUMENT(&arr))
			continue;
		bson_iter_document(&arr, &len, &data);
		if (!bson_init_static(&n, data, len))
			continue;
		const char *att = str_of(&n, "attached_to");
		if (att && strcmp(att, node) == 0 &&
		    strcmp(bpm_node_type(&n), "boundary_error") == 0)
			return str_of(&n, "id");
	}
	return NULL;
}

/* A service step: its action, then the move past it. A failure is retried
 * by the queue (with backoff) until bpm_step_attempts; then an error
 * boundary takes over, or the instance fails with an incident. */
static int
run_step(struct tr_db *db, const struct tr_job *job, const char *instance, const char *token,
	 char *err, size_t errlen)
{
	bson_t inst, def = BSON_INITIALIZER, node, vars, step;
	char why[300] = "";
	int rc, done;

	rc = tr_db_get(db, BPM_INSTANCES, instance, &inst);
	if (rc == TR_ENOTFOUND) {
		bson_destroy(&inst);
		return 0;
	}
	if (rc != TR_OK) {
		bson_destroy(&inst);
		snprintf(err, errlen, "instance not read: %s", tr_strerror(rc));
		return -1;
	}
	const char *status = str_of(&inst, "status");
	char did[25] = "";
	bson_iter_t it;
	if (bson_iter_init_find(&it, &inst, "definition_id") && BSON_ITER_HOLDS_OID(&it))
		bson_oid_to_string(bson_iter_oid(&it), did);
	if (!status || strcmp(status, "running") != 0 || !did[0]) {
		bson_destroy(&inst);
		return 0; /* failed, cancelled or done: nothing to run */
	}
	bson_destroy(&def);
	if ((rc = bpm_def_get(db, did, &def)) != TR_OK || !token_node(&inst, &def, token, &node)) {
		bson_destroy(&inst);
		bson_destroy(&def);
		return rc == TR_OK || rc == TR_ENOTFOUND ? 0 : -1; /* moved on already */
	}
	done = bpm_action_run(db, &inst, &node, token, &vars, &step, why, sizeof(why));
	if (done == 0) {
		struct bpm_move mv = {.token = token, .vars = &vars, .step = &step};
		rc = bpm_advance(db, instance, &mv, NULL);
	} else if (done > 0 && job->attempt < bpm_step_attempts()) {
		snprintf(err, errlen, "%s", why);
		rc = TR_EUNAVAILABLE; /* the queue retries it */
	} else {
		const char *b =
		    error_boundary(&def, str_of(&node, "id") ? str_of(&node, "id") : "");
		struct bpm_move mv = {.token = token};
		char reason[400];
		snprintf(reason, sizeof(reason), "%s failed: %s",
			 str_of(&node, "action") ? str_of(&node, "action") : "the step", why);
		if (b)
			mv.boundary = b;
		else
			mv.incident = reason;
		rc = bpm_advance(db, instance, &mv, NULL);
	}
	bson_destroy(&vars);
	bson_destroy(&step);
	bson_destroy(&inst);
	bson_destroy(&def);
	if (rc != TR_OK && !err[0])
		snprintf(err, errlen, "%s", tr_strerror(rc));
	return rc == TR_OK ? 0 : -1;
}

/* An escalation: the task, if still open and not escalated, goes to
 * escalate_to (a role's candidates or a user) and says so. */
static int
escalate(struct tr_db *db, const char *tenant, const char *instance, const char *task_id)
{
	bson_t task, inst = BSON_INITIALIZER, def = BSON_INITIALIZER, node, to;
	bson_t set = BSON_INITIALIZER, after, roles;
	int rc = tr_db_get(db, BPM_TASKS, task_id, &task);
	bson_iter_t it;
	char did[25] = "";

	if (rc != TR_OK)
		goto out;
	const char *status = str_of(&task, "status");
	if (!status || strcmp(status, "open") != 0 ||
	    (bson_iter_init_find(&it, &task, "escalated") && bson_iter_as_bool(&it)))
		goto out;
	bson_destroy(&inst);
	if ((rc = tr_db_get(db, BPM_INSTANCES, instance, &inst)) != TR_OK)
		goto out;
	if (bson_iter_init_find(&it, &inst, "definition_id") && BSON_ITER_HOLDS_OID(&it))
		bson_oid_to_string(bson_iter_oid(&it), did);
	bson_destroy(&def);
	if (!did[0] || (rc = bpm_def_get(db, did, &def)) != TR_OK)
		goto out;
	const char *nid = str_of(&task, "node_id");
	if (!nid || !bpm_def_node(&def, nid, &node))
		goto out;
	BSON_APPEND_BOOL(&set, "escalated", true);
	BSON_APPEND_DATE_TIME(&set, "escalated_at", tr_now_ms());
	if (sub_doc(&node, "escalate_to", &to)) {
		const char *user = str_of(&to, "user_id"), *role = str_of(&to, "role");
		if (user && tr_is_object_id(user)) {
			bson_oid_t u;
			bson_oid_init_from_string(&u, user);
			BSON_APPEND_OID(&set, "assignee_id", &u);
		} else if (role) {
			BSON_APPEND_NULL(&set, "assignee_id");
			BSON_APPEND_ARRAY_BEGIN(&set, "candidate_roles", &roles);
			BSON_APPEND_UTF8(&roles, "0", role);
			bson_append_array_end(&set, &roles);
		}
	}
	rc = tr_db_update(db, BPM_TASKS, task_id, tr_doc_int(&task, "version", 0), &set, NULL,
			  &after);
	if (rc == TR_OK) {
		bson_t data = BSON_INITIALIZER;
		char owner[TR_OWNERS_LEN];
		bpm_task_audience(db, &after, owner);
		tr_render_resource(&after, &data);
		tr_emit_background(tenant, "bpm.tasks", "bpm.task.escalated", task_id,
				   owner[0] ? owner : NULL, &data);
		bson_destroy(&data);
		bson_destroy(&after);
	} else if (rc == TR_EVERSION) {
		rc = TR_OK; /* completed or claimed meanwhile: the next run looks again */
	}
out:
	bson_destroy(&task);
	bson_destroy(&inst);
	bson_destroy(&def);
	bson_destroy(&set);
	return rc == TR_ENOTFOUND ? TR_OK : rc;
}

int
bpm_job_run(const struct tr_job *job, char *err, size_t errlen)
{
	bson_t payload = BSON_INITIALIZER;
	struct tr_db *db = NULL;
	const char *kind, *instance, *token, *extra;
	int rc = TR_OK;

	err[0] = '\0';
	bson_destroy(&payload);
	if (tr_json_parse(job->payload, job->payload_len, &payload, err, errlen) != 0) {
		bson_destroy(&payload);
		return 0; /* not ours to retry */
	}
	kind = str_of(&payload, "kind");
	instance = str_of(&payload, "instance");
	token = str_of(&payload, "token");
	extra = str_of(&payload, "extra");
	if (!kind || !instance || !tr_is_object_id(instance) || !token || !extra) {
		snprintf(err, errlen, "malformed bpm job");
		bson_destroy(&payload);
		return 0;
	}
	if (!(db = tr_db_for_tenant(job->tenant))) {
		snprintf(err, errlen, "no database handle");
		bson_destroy(&payload);
		return -1;
	}
	if (strcmp(kind, "step") == 0) {
		int r = run_step(db, job, instance, token, err, errlen);
		tr_db_release(db);
		bson_destroy(&payload);
		return r;
	}
	if (strcmp(kind, "timer") == 0) {
		struct bpm_move mv = {.token = token};
		rc = bpm_advance(db, instance, &mv, NULL);
	} else if (strcmp(kind, "boundary") == 0) {
		bson_t inst, def = BSON_INITIALIZER, node;
		bson_iter_t it;
		rc = tr_db_get(db, BPM_INSTANCES, instance, &inst);
		if (rc == TR_OK && bson_iter_init_find(&it, &inst, "definition_id") &&
		    BSON_ITER_HOLDS_OID(&it)) {
			char did[25];
			bson_oid_to_string(bson_iter_oid(&it), did);
			bson_destroy(&def);
			rc = bpm_def_get(db, did, &def);
			if (rc == TR_OK && bpm_def_node(&def, extra, &node)) {
				bson_iter_t b;
				bool interrupting =
				    !(bson_iter_init_find(&b, &node, "interrupting") &&
				      BSON_ITER_HOLDS_BOOL(&b) && !bson_iter_bool(&b));
				struct bpm_move mv = {
				    .token = token, .boundary = extra, .keep_token = !interrupting};
				rc = bpm_advance(db, instance, &mv, NULL);
			}
		}
		bson_destroy(&inst);
		bson_destroy(&def);
	} else if (strcmp(kind, "escalate") == 0) {
		rc = escalate(db, job->tenant, instance, token);
	} else if (strcmp(kind, "settle") == 0) {
		rc = bpm_settle(db, instance);
	} else if (strcmp(kind, "every") == 0) {
		rc = bpm_every_run(db, job->tenant, instance, extra);
	}
	tr_db_release(db);
	bson_destroy(&payload);
	if (rc == TR_ENOTFOUND)
		rc = TR_OK;
	if (rc != TR_OK)
		snprintf(err, errlen, "%s", tr_strerror(rc));
	return rc == TR_OK ? 0 : -1;
}

/* ---- timer starts ---- */

int
bpm_every_schedule(const char *tenant, const bson_t *def, int64_t after_ms)
{
	bson_oid_t oid;
	char id[25], slot[32];
	const char *every = str_of(def, "start_every");
	long long period = every ? bpm_duration_ms(every) : -1;
	int64_t next;

	if (period <= 0 || !tr_doc_oid(def, "_id", &oid))
		return TR_OK;
	bson_oid_to_string(&oid, id);
	next = after_ms - after_ms % period + period;
	snprintf(slot, sizeof(slot), "%lld", (long long)next);
	return bpm_job_schedule(tenant, "every", id, NULL, slot, next);
}

/* A timer start (start_every): one instance per slot of the period, in
 * any number of processes (its id is the key's and the slot's), while
 * this is the key's newest version; then the next slot, scheduled by the
 * first run of this one only. */
int
bpm_every_run(struct tr_db *db, const char *tenant, const char *def_id, const char *slot_text)
{
	bson_t def, newest, inst;
	char seed[160], iid[25], once[160];
	long long slot = strtoll(slot_text, NULL, 10);
	int rc = bpm_def_get(db, def_id, &def);

	if (rc != TR_OK) {
		bson_destroy(&def);
		return rc == TR_ENOTFOUND ? TR_OK : rc;
	}
	const char *key = str_of(&def, "key");
	rc = key ? bpm_def_load(db, key, 0, &newest) : TR_ENOTFOUND;
	bson_oid_t a, b;
	bool current = rc == TR_OK && tr_doc_oid(&def, "_id", &a) &&
		       tr_doc_oid(&newest, "_id", &b) && bson_oid_equal(&a, &b);
	if (rc == TR_OK || rc == TR_ENOTFOUND)
		bson_destroy(&newest);
	if (!current) {
		bson_destroy(&def);
		return rc == TR_ENOTFOUND ? TR_OK : rc; /* a newer version runs its own */
	}
	snprintf(seed, sizeof(seed), "every:%s:%lld", key, slot);
	bpm_derived_id(seed, iid);
	rc = bpm_start(db, &def, NULL, NULL, NULL, iid, &inst);
	bson_destroy(&inst);
	if (rc == TR_EDUPLICATE)
		rc = TR_OK;
	snprintf(once, sizeof(once), "bpm:every:%s:%lld", key, slot);
	if (rc == TR_OK && tr_db_once(db, once) == TR_OK)
		rc = bpm_every_schedule(tenant, &def, slot);
	bson_destroy(&def);
	return rc;
}

/* ---- events of other modules ---- */

struct waiting {
	char (*ids)[25];
	char (*instances)[25];
	int n, cap;
};

static int
waiting_cb(void *arg, const bson_t *res)
{
	struct waiting *w = arg;
	const char *token = tr_doc_str(res, "token"), *inst = tr_doc_str(res, "instance_id");

	if (!token || !inst || w->n >= w->cap)
		return 0;
	snprintf(w->ids[w->n], 25, "%s", token);
	snprintf(w->instances[w->n++], 25, "%s", inst);
	return 0;
}

struct starters {
	char keys[32][BPM_MAX_ID + 1];
	int n;
};

static int
starters_cb(void *arg, const bson_t *res)
{
	struct starters *s = arg;
	const char *key = tr_doc_str(res, "key");

	if (!key)
		return 0;
	for (int i = 0; i < s->n; i++)
		if (strcmp(s->keys[i], key) == 0)
			return 0;
	if (s->n < 32)
		snprintf(s->keys[s->n++], sizeof(s->keys[0]), "%s", key);
	return 0;
}

/* The subject a start by this event gets ("crm.deal.won" on a deal: a
 * crm.deal). */
static void
subject_of(const char *event, const char *entity, bson_t *subject, char var[48])
{
	const char *dot = strchr(event, '.');
	const char *second = dot ? strchr(dot + 1, '.') : NULL;
	char type[40];
	size_t n = second ? (size_t)(second - event) : strlen(event);

	snprintf(type, sizeof(type), "%.*s", (int)(n < sizeof(type) ? n : sizeof(type) - 1), event);
	BSON_APPEND_UTF8(subject, "type", type);
	BSON_APPEND_UTF8(subject, "id", entity);
	/* "crm.deal" -> "deal_id" */
	const char *last = strrchr(type, '.');
	snprintf(var, 48, "%.40s_id", last ? last + 1 : type);
}

int
bpm_events_run(const struct tr_job *job, char *err, size_t errlen)
{
	bson_t payload = BSON_INITIALIZER, ev, data, seen = BSON_INITIALIZER, stored;
	struct tr_db *db = NULL;
	char value[128], sid[25];
	const char *name, *entity, *actor;
	int rc = TR_OK;

	err[0] = '\0';
	bson_destroy(&payload);
	if (tr_json_parse(job->payload, job->payload_len, &payload, err, errlen) != 0 ||
	    !sub_doc(&payload, "event", &ev) || !(name = str_of(&ev, "event")) ||
	    !(entity = str_of(&ev, "entity_id"))) {
		bson_destroy(&payload);
		bson_destroy(&seen);
		return 0;
	}
	actor = str_of(&ev, "actor");
	snprintf(value, sizeof(value), "%s", entity);
	for (char *p = value; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	if (!(db = tr_db_for_tenant(job->tenant))) {
		snprintf(err, errlen, "no database handle");
		bson_destroy(&payload);
		bson_destroy(&seen);
		return -1;
	}

	/* 1. remember the event, then wake who waits for it (make_wait in
	 * engine.c looks the other way round) */
	bpm_seen_id(name, value, sid);
	{
		bson_oid_t oid;
		bson_oid_init_from_string(&oid, sid);
		BSON_APPEND_OID(&seen, "_id", &oid);
		BSON_APPEND_UTF8(&seen, "event", name);
		BSON_APPEND_UTF8(&seen, "value", value);
		if (sub_doc(&ev, "data", &data))
			BSON_APPEND_DOCUMENT(&seen, "data", &data);
		rc = tr_db_insert(db, BPM_SEEN, &seen, &stored);
		bson_destroy(&stored);
		if (rc == TR_EDUPLICATE)
			rc = TR_OK;
	}
	if (rc == TR_OK) {
		struct waiting w = {.cap = 256};
		bson_t *filter = BCON_NEW("event", BCON_UTF8(name), "value", BCON_UTF8(value));
		w.ids = calloc((size_t)w.cap, 25);
		w.instances = calloc((size_t)w.cap, 25);
		if (w.ids && w.instances)
			rc = tr_db_each(db, BPM_WAITS, filter, waiting_cb, &w);
		for (int i = 0; rc == TR_OK && i < w.n; i++) {
			bson_t vars = BSON_INITIALIZER;
			struct bpm_move mv = {.token = w.ids[i], .vars = &vars};
			char var[80];
			bpm_event_var(name, var, sizeof(var));
			if (sub_doc(&ev, "data", &data))
				BSON_APPEND_DOCUMENT(&vars, var, &data);
			rc = bpm_advance(db, w.instances[i], &mv, NULL);
			if (rc == TR_ENOTFOUND)
				rc = TR_OK;
			if (rc == TR_OK) /* done with: the token is gone */
				tr_db_delete(db, BPM_WAITS, w.ids[i], -1);
			bson_destroy(&vars);
		}
		free(w.ids);
		free(w.instances);
		bson_destroy(filter);
	}

	/* 2. start the processes that start on it: the newest version of each
	 * key, once per key and record (the instance id says so) */
	if (rc == TR_OK) {
		struct starters s = {0};
		bson_t *filter = BCON_NEW("start_on", BCON_UTF8(name));
		rc = tr_db_each(db, BPM_DEFS, filter, starters_cb, &s);
		bson_destroy(filter);
		for (int i = 0; rc == TR_OK && i < s.n; i++) {
			bson_t def, subject = BSON_INITIALIZER, vars = BSON_INITIALIZER, inst;
			char seed[256], iid[25], var[48];
			if ((rc = bpm_def_load(db, s.keys[i], 0, &def)) != TR_OK) {
				bson_destroy(&def);
				break;
			}
			if (!str_of(&def, "start_on") ||
			    strcmp(str_of(&def, "start_on"), name) != 0) {
				bson_destroy(&def); /* the newest version no longer starts on it */
				continue;
			}
			subject_of(name, value, &subject, var);
			if (sub_doc(&ev, "data", &data)) {
				bson_iter_t it;
				if (bson_iter_init(&it, &data))
					while (bson_iter_next(&it))
						if (strcmp(bson_iter_key(&it), "id") != 0)
							bson_append_iter(&vars, bson_iter_key(&it),
									 -1, &it);
			}
			BSON_APPEND_UTF8(&vars, var, value);
			snprintf(seed, sizeof(seed), "start:%s:%s:%s", s.keys[i], name, value);
			bpm_derived_id(seed, iid);
			rc = bpm_start(db, &def, &subject, &vars,
				       actor && tr_is_object_id(actor) ? actor : NULL, iid, &inst);
			if (rc == TR_EDUPLICATE) {
				/* started before: finish what that start may have left */
				rc = bpm_settle(db, iid);
			}
			bson_destroy(&inst);
			bson_destroy(&def);
			bson_destroy(&subject);
			bson_destroy(&vars);
		}
	}
	tr_db_release(db);
	bson_destroy(&payload);
	bson_destroy(&seen);
	if (rc != TR_OK)
		snprintf(err, errlen, "%s", tr_strerror(rc));
	return rc == TR_OK ? 0 : -1;
}
