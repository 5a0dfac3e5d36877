/* Service actions: what a service step does in the CRM and the ERP, and
 * how each is undone when its instance is cancelled (CONTRACT.md "BPM").
 *
 * Every action runs the module's own route (direct.h), never a copy of
 * it, and is idempotent by (instance, step): the ERP's actions that take
 * an Idempotency-Key get one derived from the step's token, so a step run
 * again after a crash finishes the first run instead of repeating it; the
 * others look for what a first run made before making it (an order of the
 * deal, a task of the step) or are repeatable by nature (a stage move).
 *
 * An action reads its inputs from the node's "input" object, then from
 * the instance's variables, then from its subject: erp.create_order_from_deal
 * takes warehouse_id and lines, and the deal is the subject's (or the
 * variable deal_id). */
#include <stdio.h>
#include <string.h>

#include "bpm.h"
#include "db.h"
#include "log.h"
#include "direct.h"
#include "events.h"
#include "resource.h"

struct action {
	const char *name;
	int (*run)(struct tr_db *db, const bson_t *inst, const bson_t *node, const char *key,
		   bson_t *vars, bson_t *step, char *why, size_t whylen);
	/* NULL: cannot be undone; the text says why */
	int (*undo)(struct tr_db *db, const bson_t *inst, const bson_t *step, char *why,
		    size_t whylen);
	const char *compensation;
};

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

/* An input's value: the node's input, the instance's variables, or (for
 * "<type>_id") the subject's id. The iterator points at it. */
static bool
input(const bson_t *inst, const bson_t *node, const char *name, bson_iter_t *out)
{
	bson_t in, vars, subject;

	if (sub_doc(node, "input", &in) && bson_iter_init_find(out, &in, name))
		return true;
	if (sub_doc(inst, "variables", &vars) && bson_iter_init_find(out, &vars, name))
		return true;
	if (sub_doc(inst, "subject", &subject)) {
		const char *type = str_of(&subject, "type"),
			   *dot = type ? strrchr(type, '.') : NULL;
		char var[64];
		snprintf(var, sizeof(var), "%s_id", dot ? dot + 1 : "");
		if (strcmp(var, name) == 0)
			return bson_iter_init_find(out, &subject, "id");
	}
	return false;
}

/* An input holding an id (24 hex), lower case, into out. */
static bool
input_id(const bson_t *inst, const bson_t *node, const char *name, char out[25])
{
	bson_iter_t it;

	out[0] = '\0';
	if (!input(inst, node, name, &it))
		return false;
	if (BSON_ITER_HOLDS_OID(&it))
		bson_oid_to_string(bson_iter_oid(&it), out);
	else if (BSON_ITER_HOLDS_UTF8(&it) && tr_is_object_id(bson_iter_utf8(&it, NULL)))
		snprintf(out, 25, "%s", bson_iter_utf8(&it, NULL));
	for (char *p = out; *p; p++)
		if (*p >= 'A' && *p <= 'F')
			*p = (char)(*p - 'A' + 'a');
	return out[0] != '\0';
}

/* Who acts: the user who started the instance, else the owner in its
 * variables, else no one (the zero id). */
static void
actor(const bson_t *inst, bson_oid_t *user)
{
	bson_t vars;
	bson_iter_t it;

	memset(user, 0, sizeof(*user));
	if (tr_doc_oid(inst, "started_by", user))
		return;
	if (sub_doc(inst, "variables", &vars) && bson_iter_init_find(&it, &vars, "owner_id") &&
	    BSON_ITER_HOLDS_UTF8(&it) && tr_is_object_id(bson_iter_utf8(&it, NULL)))
		bson_oid_init_from_string(user, bson_iter_utf8(&it, NULL));
}

/* Runs a route as the instance's actor; the status, the answer into
 * *answer (initialised). */
static int
call(struct tr_db *db, const bson_t *inst, const char *route, const char *id, const bson_t *body,
     const char *key, bson_t *answer)
{
	bson_oid_t tenant, user;

	tr_doc_oid(inst, "tenant_id", &tenant);
	actor(inst, &user);
	return tr_direct(db, &tenant, &user, route, id, body, key, true, answer);
}

/* The answer's problem as a reason. */
static void
reason(const bson_t *answer, int status, char *why, size_t whylen)
{
	const char *d = str_of(answer, "detail"), *t = str_of(answer, "type");
	bson_iter_t it, arr;
	char fields[160] = "";

	if (bson_iter_init_find(&it, answer, "errors") && bson_iter_recurse(&it, &arr))
		while (bson_iter_next(&arr)) {
			bson_iter_t f;
			if (bson_iter_recurse(&arr, &f) && bson_iter_find(&f, "field") &&
			    BSON_ITER_HOLDS_UTF8(&f)) {
				size_t n = strlen(fields);
				snprintf(fields + n, sizeof(fields) - n, "%s%s", n ? ", " : " (",
					 bson_iter_utf8(&f, NULL));
			}
		}
	if (fields[0])
		strncat(fields, ")", sizeof(fields) - strlen(fields) - 1);
	snprintf(why, whylen, "%d %s: %s%s", status, t ? t : "", d ? d : "", fields);
}

/* 1: may succeed later (conflict, unavailable); -1: never will. */
static int
failure(int status)
{
	return status == 409 || status == 429 || status >= 500 || status < 0 ? 1 : -1;
}

static void
step_base(const bson_t *node, const char *record, bson_t *step)
{
	BSON_APPEND_UTF8(step, "node_id", str_of(node, "id") ? str_of(node, "id") : "");
	BSON_APPEND_UTF8(step, "action", str_of(node, "action") ? str_of(node, "action") : "");
	if (record)
		BSON_APPEND_UTF8(step, "record_id", record);
	BSON_APPEND_DATE_TIME(step, "at", tr_now_ms());
}

/* ---- the ERP ---- */

static int
order_status(struct tr_db *db, const bson_t *inst, const char *order, char out[24], bson_t *answer)
{
	int st = call(db, inst, "GET /v1/erp/orders/{id}", order, NULL, NULL, answer);

	snprintf(out, 24, "%s",
		 st == 200 && str_of(answer, "status") ? str_of(answer, "status") : "");
	return st;
}

static int
create_order(struct tr_db *db, const bson_t *inst, const bson_t *node, const char *key,
	     bson_t *vars, bson_t *step, char *why, size_t whylen)
{
	bson_t body = BSON_INITIALIZER, answer, found;
	bson_iter_t it;
	char deal[25], wh[25], order[25] = "";
	int st, rc = 0;

	(void)key;
	if (!input_id(inst, node, "deal_id", deal)) {
		snprintf(why, whylen, "no deal: the subject or the variable deal_id names one");
		bson_destroy(&body);
		return -1;
	}
	/* one order per deal: a first run's order is this run's */
	bson_t *filter = BCON_NEW("deal_id", BCON_OID(&(bson_oid_t){{0}}));
	bson_destroy(filter);
	bson_oid_t did;
	bson_oid_init_from_string(&did, deal);
	filter = BCON_NEW("deal_id", BCON_OID(&did));
	if (tr_db_find_one(db, "erp_orders", filter, &found) == TR_OK) {
		bson_oid_t oid;
		if (tr_doc_oid(&found, "_id", &oid))
			bson_oid_to_string(&oid, order);
	}
	bson_destroy(&found);
	bson_destroy(filter);
	if (!order[0]) {
		BSON_APPEND_UTF8(&body, "deal_id", deal);
		if (input_id(inst, node, "warehouse_id", wh))
			BSON_APPEND_UTF8(&body, "warehouse_id", wh);
		if (input(inst, node, "lines", &it))
			bson_append_iter(&body, "lines", -1, &it);
		if (input(inst, node, "currency", &it))
			bson_append_iter(&body, "currency", -1, &it);
		st = call(db, inst, "POST /v1/erp/orders", NULL, &body, NULL, &answer);
		if (st == 201 && str_of(&answer, "id")) {
			snprintf(order, sizeof(order), "%s", str_of(&answer, "id"));
		} else {
			reason(&answer, st, why, whylen);
			rc = failure(st);
		}
		bson_destroy(&answer);
	}
	if (rc == 0) {
		BSON_APPEND_UTF8(vars, "order_id", order);
		step_base(node, order, step);
	}
	bson_destroy(&body);
	return rc;
}

/* Runs an order action; an order already past it counts as done. */
static int
order_action(struct tr_db *db, const bson_t *inst, const bson_t *node, const char *route,
	     const char *const *done_states, bson_t *step, char *why, size_t whylen)
{
	bson_t answer, again;
	char order[25], status[24];
	int st, rc = 0;

	if (!input_id(inst, node, "order_id", order)) {
		snprintf(why, whylen, "no order: the variable order_id names one");
		return -1;
	}
	st = call(db, inst, route, order, NULL, NULL, &answer);
	if (st != 200 && st != 201) {
		order_status(db, inst, order, status, &again);
		bson_destroy(&again);
		rc = failure(st);
		for (const char *const *s = done_states; *s; s++)
			if (strcmp(*s, status) == 0)
				rc = 0;
		if (rc)
			reason(&answer, st, why, whylen);
	}
	bson_destroy(&answer);
	if (rc == 0)
		step_base(node, order, step);
	return rc;
}

static int
confirm_order(struct tr_db *db, const bson_t *inst, const bson_t *node, const char *key,
	      bson_t *vars, bson_t *step, char *why, size_t whylen)
{
	static const char *const done[] = {"confirmed", "invoiced",  "paid",
					   "shipped",	"completed", NULL};
	(void)key;
	(void)vars;
	return order_action(db, inst, node, "POST /v1/erp/orders/{id}/confirm", done, step, why,
			    whylen);
}

static int
cancel_order(struct tr_db *db, const bson_t *inst, const bson_t *node, const char *key,
	     bson_t *vars, bson_t *step, char *why, size_t whylen)
{
	static const char *const done[] = {"cancelled", NULL};
	(void)key;
	(void)vars;
	return order_action(db, inst, node, "POST /v1/erp/orders/{id}/cancel", done, step, why,
			    whylen);
}

/* Ships what remains of every line, under a key of the step: a second
 * run finds the shipment the first made. */
static int
ship_order(struct tr_db *db, const bson_t *inst, const bson_t *node, const char *key, bson_t *vars,
	   bson_t *step, char *why, size_t whylen)
{
	bson_t order, body = BSON_INITIALIZER, lines, answer;
	bson_iter_t it, arr;
	char id[25], status[24];
	int st, n = 0, rc = 0;

	(void)vars;
	if (!input_id(inst, node, "order_id", id)) {
		snprintf(why, whylen, "no order: the variable order_id names one");
		bson_destroy(&body);
		return -1;
	}
	st = order_status(db, inst, id, status, &order);
	if (st != 200) {
		reason(&order, st, why, whylen);
		bson_destroy(&order);
		bson_destroy(&body);
		return failure(st);
	}
	BSON_APPEND_ARRAY_BEGIN(&body, "lines", &lines);
	if (bson_iter_init_find(&it, &order, "lines") && bson_iter_recurse(&it, &arr))
		while (bson_iter_next(&arr)) {
			bson_t line, item;
			const uint8_t *data;
			uint32_t len;
			char k[16];
			const char *kk;
			if (!BSON_ITER_HOLDS_DOCUMENT(&arr))
				continue;
			bson_iter_document(&arr, &len, &data);
			if (!bson_init_static(&line, data, len))
				continue;
			int64_t q =
			    tr_doc_int(&line, "quantity", 0) - tr_doc_int(&line, "shipped", 0);
			const char *p = str_of(&line, "product_id");
			if (q <= 0 || !p)
				continue;
			bson_uint32_to_string((uint32_t)n++, &kk, k, sizeof(k));
			BSON_APPEND_DOCUMENT_BEGIN(&lines, kk, &item);
			BSON_APPEND_UTF8(&item, "product_id", p);
			BSON_APPEND_INT64(&item, "quantity", q);
			bson_append_document_end(&lines, &item);
		}
	bson_append_array_end(&body, &lines);
	if (n > 0) {
		st = call(db, inst, "POST /v1/erp/orders/{id}/shipments", id, &body, key, &answer);
		if (st != 201 && st != 200) {
			reason(&answer, st, why, whylen);
			rc = failure(st);
		}
		bson_destroy(&answer);
	}
	if (rc == 0)
		step_base(node, id, step);
	bson_destroy(&order);
	bson_destroy(&body);
	return rc;
}

static int
undo_order(struct tr_db *db, const bson_t *inst, const bson_t *step, char *why, size_t whylen)
{
	const char *order = str_of(step, "record_id");
	bson_t answer, again;
	char status[24];
	int st;

	if (!order)
		return -1;
	st = call(db, inst, "POST /v1/erp/orders/{id}/cancel", order, NULL, NULL, &answer);
	if (st != 200 && st != 201) {
		order_status(db, inst, order, status, &again);
		bson_destroy(&again);
		if (strcmp(status, "cancelled") != 0) {
			reason(&answer, st, why, whylen);
			bson_destroy(&answer);
			return -1;
		}
	}
	bson_destroy(&answer);
	return 0;
}

/* ---- the CRM ---- */

static int
move_stage(struct tr_db *db, const bson_t *inst, const bson_t *node, const char *key, bson_t *vars,
	   bson_t *step, char *why, size_t whylen)
{
	bson_t body = BSON_INITIALIZER, answer, deal;
	bson_iter_t it;
	char id[25], from[48] = "";
	const char *stage;
	int st, rc = 0;

	(void)key;
	(void)vars;
	if (!input_id(inst, node, "deal_id", id) || !input(inst, node, "stage", &it) ||
	    !BSON_ITER_HOLDS_UTF8(&it)) {
		snprintf(why, whylen, "needs a deal (subject or deal_id) and input.stage");
		bson_destroy(&body);
		return -1;
	}
	stage = bson_iter_utf8(&it, NULL);
	if (call(db, inst, "GET /v1/crm/deals/{id}", id, NULL, NULL, &deal) == 200 &&
	    str_of(&deal, "stage"))
		snprintf(from, sizeof(from), "%s", str_of(&deal, "stage"));
	bson_destroy(&deal);
	if (strcmp(from, stage) != 0) {
		BSON_APPEND_UTF8(&body, "stage", stage);
		st = call(db, inst, "POST /v1/crm/deals/{id}/stage", id, &body, NULL, &answer);
		if (st != 200) {
			reason(&answer, st, why, whylen);
			rc = failure(st);
		}
		bson_destroy(&answer);
	}
	if (rc == 0) {
		step_base(node, id, step);
		BSON_APPEND_UTF8(step, "previous_stage", from);
	}
	bson_destroy(&body);
	return rc;
}

static int
undo_stage(struct tr_db *db, const bson_t *inst, const bson_t *step, char *why, size_t whylen)
{
	const char *deal = str_of(step, "record_id"), *prev = str_of(step, "previous_stage");
	bson_t body = BSON_INITIALIZER, answer;
	int st;

	if (!deal || !prev || !*prev) {
		bson_destroy(&body);
		return -1;
	}
	BSON_APPEND_UTF8(&body, "stage", prev);
	st = call(db, inst, "POST /v1/crm/deals/{id}/stage", deal, &body, NULL, &answer);
	bson_destroy(&body);
	if (st != 200 && st != 409) {
		reason(&answer, st, why, whylen);
		bson_destroy(&answer);
		return -1;
	}
	bson_destroy(&answer);
	return 0;
}

struct task_match {
	const char *title;
	int64_t since;
	char id[25];
};

static int
task_match_cb(void *arg, const bson_t *res)
{
	struct task_match *m = arg;
	const char *id = tr_doc_str(res, "id");

	if (id && !m->id[0])
		snprintf(m->id, sizeof(m->id), "%s", id);
	return 0;
}

/* A CRM task for the subject's owner (or the instance's starter), titled
 * by input.title or the step's name. The step's token is the task's
 * `related.bpm_step`-free marker: a run again first looks for a task of
 * this title made by the first run (the step journal, bpm_seen-like, is
 * the record tr_db_once keeps). */
static int
create_task(struct tr_db *db, const bson_t *inst, const bson_t *node, const char *key, bson_t *vars,
	    bson_t *step, char *why, size_t whylen)
{
	bson_t body = BSON_INITIALIZER, answer, related;
	bson_iter_t it;
	char deal[25], owner[25], marker[200], id[25] = "";
	const char *title;
	int st, rc = 0;

	if (input(inst, node, "title", &it) && BSON_ITER_HOLDS_UTF8(&it))
		title = bson_iter_utf8(&it, NULL);
	else
		title = str_of(node, "name") ? str_of(node, "name") : "Follow up";
	/* once per step: the first run marks the step before creating */
	snprintf(marker, sizeof(marker), "bpm:crm_task:%s", key);
	if (tr_db_once(db, marker) == TR_EDUPLICATE) {
		struct task_match m = {.title = title};
		bson_t *filter = BCON_NEW("title", BCON_UTF8(title));
		tr_db_each(db, "tasks", filter, task_match_cb, &m);
		bson_destroy(filter);
		snprintf(id, sizeof(id), "%s", m.id);
	}
	if (!id[0]) {
		BSON_APPEND_UTF8(&body, "title", title);
		if (input_id(inst, node, "owner_id", owner))
			BSON_APPEND_UTF8(&body, "assignee_id", owner);
		if (input_id(inst, node, "deal_id", deal)) {
			BSON_APPEND_DOCUMENT_BEGIN(&body, "related", &related);
			BSON_APPEND_UTF8(&related, "deal_id", deal);
			bson_append_document_end(&body, &related);
		}
		st = call(db, inst, "POST /v1/crm/tasks", NULL, &body, NULL, &answer);
		if (st == 201 && str_of(&answer, "id")) {
			snprintf(id, sizeof(id), "%s", str_of(&answer, "id"));
		} else {
			reason(&answer, st, why, whylen);
			rc = failure(st);
		}
		bson_destroy(&answer);
	}
	if (rc == 0) {
		BSON_APPEND_UTF8(vars, "task_id", id);
		step_base(node, id, step);
	}
	bson_destroy(&body);
	return rc;
}

static int
undo_task(struct tr_db *db, const bson_t *inst, const bson_t *step, char *why, size_t whylen)
{
	const char *task = str_of(step, "record_id");
	bson_t body = BSON_INITIALIZER, answer;
	int st;

	if (!task) {
		bson_destroy(&body);
		return -1;
	}
	BSON_APPEND_BOOL(&body, "done", true);
	st = call(db, inst, "PATCH /v1/crm/tasks/{id}", task, &body, NULL, &answer);
	bson_destroy(&body);
	if (st != 200) {
		reason(&answer, st, why, whylen);
		bson_destroy(&answer);
		return -1;
	}
	bson_destroy(&answer);
	return 0;
}

/* ---- webhooks ---- */

/* Publishes bpm.step.webhook on bpm.instances, once per step: the
 * tenant's webhooks subscribed to the topic deliver it. */
static int
webhook_post(struct tr_db *db, const bson_t *inst, const bson_t *node, const char *key,
	     bson_t *vars, bson_t *step, char *why, size_t whylen)
{
	bson_t data = BSON_INITIALIZER, v, in;
	char marker[200], ihex[25], tenant[25];
	bson_oid_t oid;
	int rc = TR_OK;

	(void)vars;
	tr_doc_oid(inst, "_id", &oid);
	bson_oid_to_string(&oid, ihex);
	tr_doc_oid(inst, "tenant_id", &oid);
	bson_oid_to_string(&oid, tenant);
	snprintf(marker, sizeof(marker), "bpm:webhook:%s", key);
	if (tr_db_once(db, marker) == TR_OK) {
		BSON_APPEND_UTF8(&data, "instance_id", ihex);
		BSON_APPEND_UTF8(&data, "node_id", str_of(node, "id") ? str_of(node, "id") : "");
		if (sub_doc(node, "input", &in))
			BSON_APPEND_DOCUMENT(&data, "input", &in);
		if (sub_doc(inst, "variables", &v))
			BSON_APPEND_DOCUMENT(&data, "variables", &v);
		rc = tr_emit_background(tenant, "bpm.instances", "bpm.step.webhook", ihex, NULL,
					&data);
	}
	bson_destroy(&data);
	if (rc != TR_OK) {
		snprintf(why, whylen, "the event was not published: %s", tr_strerror(rc));
		return 1;
	}
	step_base(node, NULL, step);
	return 0;
}

static const struct action actions[] = {
    {"crm.create_task", create_task, undo_task, "the task is closed"},
    {"crm.move_deal_stage", move_stage, undo_stage, "the deal goes back to its stage"},
    {"erp.create_order_from_deal", create_order, undo_order, "the order is cancelled"},
    {"erp.confirm_order", confirm_order, undo_order,
     "the order is cancelled, releasing its reservations"},
    {"erp.ship_order", ship_order, NULL,
     "none: goods shipped are not un-shipped; book a return by hand"},
    {"erp.cancel_order", cancel_order, NULL, "none: a cancelled order stays cancelled"},
    {"webhook.post", webhook_post, NULL, "none: a webhook sent cannot be taken back"},
};

static const struct action *
find(const char *name)
{
	for (size_t i = 0; name && i < sizeof(actions) / sizeof(actions[0]); i++)
		if (strcmp(actions[i].name, name) == 0)
			return &actions[i];
	return NULL;
}

bool
bpm_action_known(const char *action)
{
	return find(action) != NULL;
}

int
bpm_action_run(struct tr_db *db, const bson_t *inst, const bson_t *node, const char *token,
	       bson_t *vars_out, bson_t *step_out, char *why, size_t whylen)
{
	const struct action *a = find(str_of(node, "action"));
	char key[80], ihex[25];
	bson_oid_t oid;

	bson_init(vars_out);
	bson_init(step_out);
	if (!a) {
		snprintf(why, whylen, "unknown action");
		return -1;
	}
	tr_doc_oid(inst, "_id", &oid);
	bson_oid_to_string(&oid, ihex);
	snprintf(key, sizeof(key), "bpm:%s:%s", ihex, token);
	int rc = a->run(db, inst, node, key, vars_out, step_out, why, whylen);
	if (rc == 0)
		BSON_APPEND_UTF8(step_out, "token", token);
	return rc;
}

void
bpm_action_compensate(struct tr_db *db, const bson_t *inst, const bson_t *step, bson_t *line)
{
	const struct action *a = find(str_of(step, "action"));
	char why[300] = "";

	bson_init(line);
	BSON_APPEND_UTF8(line, "node_id", str_of(step, "node_id") ? str_of(step, "node_id") : "");
	BSON_APPEND_UTF8(line, "action", str_of(step, "action") ? str_of(step, "action") : "");
	BSON_APPEND_UTF8(line, "compensation", a ? a->compensation : "none");
	if (!a || !a->undo) {
		BSON_APPEND_UTF8(line, "result", "not possible");
		return;
	}
	if (a->undo(db, inst, step, why, sizeof(why)) == 0) {
		BSON_APPEND_UTF8(line, "result", "done");
	} else {
		BSON_APPEND_UTF8(line, "result", "failed");
		BSON_APPEND_UTF8(line, "error", why);
	}
}
