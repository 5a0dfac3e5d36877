/* The engine: how an instance moves (bpm.h says why it is exact).
 *
 * A move reads the instance, consumes one token, and walks the definition
 * from there - entering nodes, taking flows, evaluating exclusive
 * gateways, counting arrivals at parallel joins - until every branch
 * waits again in a step (a new token) or has ended. The whole result is
 * one version-checked write of the instance. Only after it succeeded does
 * the engine make what the new tokens need outside the record: a task
 * (its id is the token's, so it is made once), a job (a step, a timer), a
 * wait for an event (its id is the token's too); then the history and the
 * events. A settle job, enqueued before the write, makes again whatever a
 * crash left unmade. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bpm.h"
#include "cond.h"
#include "db.h"
#include "directory.h"
#include "events.h"
#include "jobs.h"
#include "json.h"
#include "log.h"
#include "resource.h"

#define MAX_JOINS 16
#define MAX_ARRIVALS 16
#define MAX_HISTORY 256
#define MAX_FIRED 64
#define MAX_DEPTH 200

struct token {
	char id[25];
	char node[BPM_MAX_ID + 1];
	int64_t at;
	bool fresh; /* made by this move */
};

struct join {
	char node[BPM_MAX_ID + 1];
	char from[MAX_ARRIVALS][BPM_MAX_ID + 1];
	int n;
};

struct hist {
	char node[BPM_MAX_ID + 1];
	const char *what; /* "entered", "left", "failed", "cancelled" */
};

/* One move being computed. */
struct run {
	const bson_t *def;
	bson_t vars;
	struct token tokens[BPM_MAX_TOKENS];
	int ntokens;
	struct join joins[MAX_JOINS];
	int njoins;
	char fired[MAX_FIRED][BPM_MAX_ID + 27];
	int nfired;
	struct hist hist[MAX_HISTORY];
	int nhist;
	char status[16];
	char error[300];
	char error_node[BPM_MAX_ID + 1];
	char interrupted[25]; /* a task's token an interrupting boundary took */
	int depth;
	int64_t now;
};

void
bpm_derived_id(const char *seed, char out[25])
{
	/* FNV-1a in two lanes and a third from both: 96 bits, stable; these
	 * ids only need to be the same for the same seed and apart for
	 * different ones, within one tenant. */
	uint64_t a = 1469598103934665603ULL, b = 1099511628211ULL ^ 0x9e3779b97f4a7c15ULL;
	uint32_t c;

	for (const unsigned char *p = (const unsigned char *)seed; *p; p++) {
		a = (a ^ *p) * 1099511628211ULL;
		b = (b ^ *p) * 0x100000001b3ULL;
		b ^= b >> 29;
	}
	c = (uint32_t)((a >> 17) ^ (b << 7) ^ (a * 31 + b));
	snprintf(out, 25, "%016llx%08x", (unsigned long long)(a ^ (b >> 3)), c);
}

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

/* ---- walking the definition ---- */

static void
history(struct run *r, const char *node, const char *what)
{
	if (r->nhist >= MAX_HISTORY)
		return;
	snprintf(r->hist[r->nhist].node, sizeof(r->hist[0].node), "%s", node);
	r->hist[r->nhist++].what = what;
}

static void
fail(struct run *r, const char *node, const char *why)
{
	if (strcmp(r->status, "failed") == 0)
		return; /* the first failure is the one to report */
	snprintf(r->status, sizeof(r->status), "failed");
	snprintf(r->error, sizeof(r->error), "%s", why);
	snprintf(r->error_node, sizeof(r->error_node), "%s", node);
	history(r, node, "failed");
}

static struct token *
add_token(struct run *r, const char *node)
{
	bson_oid_t oid;
	struct token *t;

	if (r->ntokens >= BPM_MAX_TOKENS) {
		fail(r, node, "the instance has too many steps open at once");
		return NULL;
	}
	t = &r->tokens[r->ntokens++];
	memset(t, 0, sizeof(*t));
	bson_oid_init(&oid, NULL);
	bson_oid_to_string(&oid, t->id);
	snprintf(t->node, sizeof(t->node), "%s", node);
	t->at = r->now;
	t->fresh = true;
	return t;
}

/* Calls fn with each flow out of node (from, to, when), in order, until
 * fn returns non-zero; returns that. */
static int
each_flow(const bson_t *def, const char *from, int (*fn)(void *arg, const bson_t *flow), void *arg)
{
	bson_iter_t it, arr;

	if (!bson_iter_init_find(&it, def, "flows") || !bson_iter_recurse(&it, &arr))
		return 0;
	while (bson_iter_next(&arr)) {
		bson_t f;
		const uint8_t *data;
		uint32_t len;
		if (!BSON_ITER_HOLDS_DOCUMENT(&arr))
			continue;
		bson_iter_document(&arr, &len, &data);
		if (!bson_init_static(&f, data, len))
			continue;
		const char *fr = str_of(&f, "from");
		if (fr && strcmp(fr, from) == 0) {
			int rc = fn(arg, &f);
			if (rc)
				return rc;
		}
	}
	return 0;
}

/* How many flows enter node. */
static int
incoming(const bson_t *def, const char *node)
{
	bson_iter_t it, arr;
	int n = 0;

	if (!bson_iter_init_find(&it, def, "flows") || !bson_iter_recurse(&it, &arr))
		return 0;
	while (bson_iter_next(&arr)) {
		bson_iter_t to;
		if (BSON_ITER_HOLDS_DOCUMENT(&arr) && bson_iter_recurse(&arr, &to) &&
		    bson_iter_find(&to, "to") && BSON_ITER_HOLDS_UTF8(&to) &&
		    strcmp(bson_iter_utf8(&to, NULL), node) == 0)
			n++;
	}
	return n;
}

static void enter(struct run *r, const char *node, const char *from);

struct take {
	struct run *r;
	const char *from;
};

static int
take_cb(void *arg, const bson_t *flow)
{
	struct take *t = arg;
	const char *to = str_of(flow, "to");

	if (to)
		enter(t->r, to, t->from);
	return 0;
}

/* Leaves node by every flow out of it (one, except after a parallel
 * split). */
static void
leave(struct run *r, const char *node)
{
	struct take t = {r, node};

	history(r, node, "left");
	each_flow(r->def, node, take_cb, &t);
}

struct choose {
	struct run *r;
	char chosen[BPM_MAX_ID + 1];
	char unconditional[BPM_MAX_ID + 1];
	char error[300];
};

static int
choose_cb(void *arg, const bson_t *flow)
{
	struct choose *ch = arg;
	const char *to = str_of(flow, "to"), *when = str_of(flow, "when");
	char err[240];
	int v;

	if (!to)
		return 0;
	if (!when) {
		if (!ch->unconditional[0])
			snprintf(ch->unconditional, sizeof(ch->unconditional), "%s", to);
		return 0;
	}
	v = bpm_cond_check(when, &ch->r->vars, err, sizeof(err));
	if (v < 0) {
		snprintf(ch->error, sizeof(ch->error),
			 "the condition \"%.80s\" cannot be evaluated: %.150s", when, err);
		return 1;
	}
	if (v == 1) {
		snprintf(ch->chosen, sizeof(ch->chosen), "%s", to);
		return 1;
	}
	return 0;
}

/* An exclusive gateway: the first flow whose condition holds, else the
 * default (or the flow without a condition). A condition that cannot be
 * evaluated, or none holding with no default, fails the instance with an
 * incident and leaves a token at the gateway, so a retry evaluates it
 * again. */
static void
exclusive(struct run *r, const bson_t *node, const char *id)
{
	struct choose ch = {.r = r};
	const char *dflt = str_of(node, "default");

	each_flow(r->def, id, choose_cb, &ch);
	if (!ch.error[0] && !ch.chosen[0]) {
		if (dflt)
			snprintf(ch.chosen, sizeof(ch.chosen), "%s", dflt);
		else if (ch.unconditional[0])
			snprintf(ch.chosen, sizeof(ch.chosen), "%s", ch.unconditional);
		else
			snprintf(ch.error, sizeof(ch.error),
				 "no condition holds and there is no default");
	}
	if (ch.error[0]) {
		add_token(r, id);
		fail(r, id, ch.error);
		return;
	}
	history(r, id, "left");
	enter(r, ch.chosen, id);
}

static void
parallel(struct run *r, const char *id, const char *from)
{
	int need = incoming(r->def, id);
	struct join *j = NULL;

	if (need > 1 && from) {
		for (int i = 0; i < r->njoins && !j; i++)
			if (strcmp(r->joins[i].node, id) == 0)
				j = &r->joins[i];
		if (!j) {
			if (r->njoins >= MAX_JOINS) {
				fail(r, id, "too many parallel joins waiting at once");
				return;
			}
			j = &r->joins[r->njoins++];
			memset(j, 0, sizeof(*j));
			snprintf(j->node, sizeof(j->node), "%s", id);
		}
		if (j->n < MAX_ARRIVALS)
			snprintf(j->from[j->n++], sizeof(j->from[0]), "%s", from);
		if (j->n < need)
			return; /* waits for the other branches */
		*j = r->joins[--r->njoins];
	}
	leave(r, id);
}

static void
enter(struct run *r, const char *id, const char *from)
{
	bson_t node;
	const char *type;

	if (++r->depth > MAX_DEPTH) {
		fail(r, id, "the process goes round without reaching a step that waits");
		return;
	}
	if (!bpm_def_node(r->def, id, &node)) {
		fail(r, id, "the definition has no such node");
		return;
	}
	type = bpm_node_type(&node);
	history(r, id, "entered");
	if (strcmp(type, "end") == 0)
		history(r, id, "left");
	else if (strcmp(type, "exclusive") == 0)
		exclusive(r, &node, id);
	else if (strcmp(type, "parallel") == 0)
		parallel(r, id, from);
	else
		add_token(r, id); /* a step: user task, service, timer, event */
	r->depth--;
}

/* ---- the instance record ---- */

static bool
load_run(struct run *r, const bson_t *inst, const bson_t *def)
{
	bson_iter_t it, arr;
	bson_t vars;

	memset(r, 0, sizeof(*r));
	r->def = def;
	r->now = tr_now_ms();
	snprintf(r->status, sizeof(r->status), "%s",
		 str_of(inst, "status") ? str_of(inst, "status") : "running");
	if (sub_doc(inst, "variables", &vars))
		bson_copy_to(&vars, &r->vars);
	else
		bson_init(&r->vars);
	if (bson_iter_init_find(&it, inst, "tokens") && bson_iter_recurse(&it, &arr))
		while (bson_iter_next(&arr) && r->ntokens < BPM_MAX_TOKENS) {
			bson_t t;
			const uint8_t *data;
			uint32_t len;
			if (!BSON_ITER_HOLDS_DOCUMENT(&arr))
				continue;
			bson_iter_document(&arr, &len, &data);
			if (!bson_init_static(&t, data, len))
				continue;
			struct token *k = &r->tokens[r->ntokens++];
			snprintf(k->id, sizeof(k->id), "%s",
				 str_of(&t, "id") ? str_of(&t, "id") : "");
			snprintf(k->node, sizeof(k->node), "%s",
				 str_of(&t, "node") ? str_of(&t, "node") : "");
			k->at = tr_doc_int(&t, "at", 0);
		}
	if (bson_iter_init_find(&it, inst, "joins") && bson_iter_recurse(&it, &arr))
		while (bson_iter_next(&arr) && r->njoins < MAX_JOINS) {
			bson_iter_t f, fa;
			struct join *j = &r->joins[r->njoins];
			memset(j, 0, sizeof(*j));
			if (!BSON_ITER_HOLDS_DOCUMENT(&arr) || !bson_iter_recurse(&arr, &f))
				continue;
			while (bson_iter_next(&f)) {
				if (strcmp(bson_iter_key(&f), "node") == 0 &&
				    BSON_ITER_HOLDS_UTF8(&f))
					snprintf(j->node, sizeof(j->node), "%s",
						 bson_iter_utf8(&f, NULL));
				if (strcmp(bson_iter_key(&f), "from") == 0 &&
				    bson_iter_recurse(&f, &fa))
					while (bson_iter_next(&fa) && j->n < MAX_ARRIVALS)
						if (BSON_ITER_HOLDS_UTF8(&fa))
							snprintf(j->from[j->n++],
								 sizeof(j->from[0]), "%s",
								 bson_iter_utf8(&fa, NULL));
			}
			if (j->node[0])
				r->njoins++;
		}
	if (bson_iter_init_find(&it, inst, "fired") && bson_iter_recurse(&it, &arr))
		while (bson_iter_next(&arr) && r->nfired < MAX_FIRED)
			if (BSON_ITER_HOLDS_UTF8(&arr))
				snprintf(r->fired[r->nfired++], sizeof(r->fired[0]), "%s",
					 bson_iter_utf8(&arr, NULL));
	return true;
}

/* The fields of the instance a move writes. */
static void
run_fields(const struct run *r, const bson_t *inst, const bson_t *new_step, bson_t *set)
{
	bson_t arr, item, sub;
	char key[16];
	const char *k;
	bson_iter_t it;

	BSON_APPEND_UTF8(set, "status", r->status);
	BSON_APPEND_DOCUMENT(set, "variables", &r->vars);
	BSON_APPEND_ARRAY_BEGIN(set, "tokens", &arr);
	for (int i = 0; i < r->ntokens; i++) {
		bson_uint32_to_string((uint32_t)i, &k, key, sizeof(key));
		BSON_APPEND_DOCUMENT_BEGIN(&arr, k, &item);
		BSON_APPEND_UTF8(&item, "id", r->tokens[i].id);
		BSON_APPEND_UTF8(&item, "node", r->tokens[i].node);
		BSON_APPEND_INT64(&item, "at", r->tokens[i].at);
		bson_append_document_end(&arr, &item);
	}
	bson_append_array_end(set, &arr);
	BSON_APPEND_ARRAY_BEGIN(set, "active_nodes", &arr);
	for (int i = 0; i < r->ntokens; i++) {
		bson_uint32_to_string((uint32_t)i, &k, key, sizeof(key));
		BSON_APPEND_UTF8(&arr, k, r->tokens[i].node);
	}
	bson_append_array_end(set, &arr);
	BSON_APPEND_ARRAY_BEGIN(set, "joins", &arr);
	for (int i = 0; i < r->njoins; i++) {
		bson_uint32_to_string((uint32_t)i, &k, key, sizeof(key));
		BSON_APPEND_DOCUMENT_BEGIN(&arr, k, &item);
		BSON_APPEND_UTF8(&item, "node", r->joins[i].node);
		BSON_APPEND_ARRAY_BEGIN(&item, "from", &sub);
		for (int f = 0; f < r->joins[i].n; f++) {
			char k2[16];
			const char *kk;
			bson_uint32_to_string((uint32_t)f, &kk, k2, sizeof(k2));
			BSON_APPEND_UTF8(&sub, kk, r->joins[i].from[f]);
		}
		bson_append_array_end(&item, &sub);
		bson_append_document_end(&arr, &item);
	}
	bson_append_array_end(set, &arr);
	BSON_APPEND_ARRAY_BEGIN(set, "fired", &arr);
	for (int i = 0; i < r->nfired; i++) {
		bson_uint32_to_string((uint32_t)i, &k, key, sizeof(key));
		BSON_APPEND_UTF8(&arr, k, r->fired[i]);
	}
	bson_append_array_end(set, &arr);
	/* the service steps done, oldest first, for compensation */
	BSON_APPEND_ARRAY_BEGIN(set, "steps", &arr);
	uint32_t n = 0;
	if (inst && bson_iter_init_find(&it, inst, "steps") && BSON_ITER_HOLDS_ARRAY(&it)) {
		bson_iter_t s;
		if (bson_iter_recurse(&it, &s))
			while (bson_iter_next(&s)) {
				bson_uint32_to_string(n++, &k, key, sizeof(key));
				bson_append_iter(&arr, k, -1, &s);
			}
	}
	if (new_step) {
		bson_uint32_to_string(n, &k, key, sizeof(key));
		BSON_APPEND_DOCUMENT(&arr, k, new_step);
	}
	bson_append_array_end(set, &arr);
	if (r->error[0]) {
		BSON_APPEND_UTF8(set, "error", r->error);
		BSON_APPEND_UTF8(set, "error_node", r->error_node);
	}
	if (strcmp(r->status, "running") != 0 && strcmp(r->status, "failed") != 0)
		BSON_APPEND_DATE_TIME(set, "ended_at", r->now);
}

/* Merges vars into the run's variables (top-level keys replace). */
static void
merge_vars(struct run *r, const bson_t *vars)
{
	bson_t merged = BSON_INITIALIZER;
	bson_iter_t it;

	if (!vars)
		return;
	if (bson_iter_init(&it, &r->vars))
		while (bson_iter_next(&it))
			if (!bson_has_field(vars, bson_iter_key(&it)))
				bson_append_iter(&merged, bson_iter_key(&it), -1, &it);
	if (bson_iter_init(&it, vars))
		while (bson_iter_next(&it))
			bson_append_iter(&merged, bson_iter_key(&it), -1, &it);
	bson_destroy(&r->vars);
	bson_copy_to(&merged, &r->vars);
	bson_destroy(&merged);
}

/* ---- after a write: what the new tokens need ---- */

static void
hex_of(const bson_t *doc, const char *field, char out[25])
{
	bson_oid_t oid;

	out[0] = '\0';
	if (tr_doc_oid(doc, field, &oid))
		bson_oid_to_string(&oid, out);
	else if (str_of(doc, field) && tr_is_object_id(str_of(doc, field)))
		snprintf(out, 25, "%s", str_of(doc, field));
}

static const char *
subject_coll(const char *type)
{
	static const struct {
		const char *type, *coll;
	} map[] = {
	    {"crm.deal", "deals"},	 {"crm.lead", "leads"},		  {"crm.client", "clients"},
	    {"erp.order", "erp_orders"}, {"erp.invoice", "erp_invoices"},
	};
	for (size_t i = 0; type && i < sizeof(map) / sizeof(map[0]); i++)
		if (strcmp(map[i].type, type) == 0)
			return map[i].coll;
	return NULL;
}

/* The person named by field f: a variable of the instance holding a user
 * id, or that field of the subject's record (owner_id of a deal). */
static void
person_of(struct tr_db *db, const bson_t *inst, const char *f, char out[25])
{
	bson_t vars, subject, rec;
	const char *coll, *sid;

	out[0] = '\0';
	if (sub_doc(inst, "variables", &vars))
		hex_of(&vars, f, out);
	if (out[0] || !sub_doc(inst, "subject", &subject))
		return;
	coll = subject_coll(str_of(&subject, "type"));
	sid = str_of(&subject, "id");
	if (!coll || !sid || tr_db_get(db, coll, sid, &rec) != TR_OK) {
		if (coll && sid)
			bson_destroy(&rec);
		return;
	}
	hex_of(&rec, f, out);
	bson_destroy(&rec);
}

/* The assignee or the candidate roles of a person spec ({"user_id"},
 * {"role"}, {"field"}, {"head_of"}) for an instance. A field that names
 * no one falls back to whoever started the instance. */
static void
resolve_person(struct tr_db *db, const bson_t *inst, const bson_t *spec, char user[25],
	       const char **role)
{
	const char *v;

	user[0] = '\0';
	*role = NULL;
	if ((v = str_of(spec, "user_id")) && tr_is_object_id(v)) {
		snprintf(user, 25, "%s", v);
	} else if ((v = str_of(spec, "role"))) {
		*role = v;
	} else if ((v = str_of(spec, "field"))) {
		person_of(db, inst, v, user);
	} else if ((v = str_of(spec, "head_of"))) {
		char who[25];
		person_of(db, inst, v, who);
		if (who[0] && tr_directory_head_of(db, who, user) != TR_OK)
			user[0] = '\0';
	}
	if (!user[0] && !*role)
		hex_of(inst, "started_by", user);
}

int
bpm_job_schedule(const char *tenant, const char *kind, const char *instance, const char *token,
		 const char *extra, int64_t run_at_ms)
{
	char payload[400];

	snprintf(payload, sizeof(payload),
		 "{\"kind\":\"%s\",\"instance\":\"%s\",\"token\":\"%s\",\"extra\":\"%s\"}", kind,
		 instance, token ? token : "", extra ? extra : "");
	return tr_job_enqueue(BPM_QUEUE, tenant, payload, run_at_ms, NULL);
}

static void
emit_task(struct tr_db *db, const char *tenant, const char *event, const bson_t *task)
{
	bson_t data = BSON_INITIALIZER;
	char id[25], owner[TR_OWNERS_LEN];

	hex_of(task, "_id", id);
	bpm_task_audience(db, task, owner);
	tr_render_resource(task, &data);
	tr_emit_background(tenant, "bpm.tasks", event, id, owner[0] ? owner : NULL, &data);
	bson_destroy(&data);
}

struct boundary_scan {
	const char *tenant, *instance, *token, *node;
	int64_t at;
};

/* Schedules the boundary timers attached to a step's node. */
static void
schedule_boundaries(const bson_t *def, const char *tenant, const char *instance,
		    const struct token *t)
{
	bson_iter_t it, arr;

	if (!bson_iter_init_find(&it, def, "nodes") || !bson_iter_recurse(&it, &arr))
		return;
	while (bson_iter_next(&arr)) {
		bson_t n;
		const uint8_t *data;
		uint32_t len;
		if (!BSON_ITER_HOLDS_DOCUMENT(&arr))
			continue;
		bson_iter_document(&arr, &len, &data);
		if (!bson_init_static(&n, data, len))
			continue;
		const char *att = str_of(&n, "attached_to"), *id = str_of(&n, "id");
		if (!att || !id || strcmp(att, t->node) != 0 ||
		    strcmp(bpm_node_type(&n), "boundary_timer") != 0)
			continue;
		long long ms =
		    bpm_duration_ms(str_of(&n, "duration") ? str_of(&n, "duration") : "");
		if (ms > 0 &&
		    bpm_job_schedule(tenant, "boundary", instance, t->id, id, t->at + ms) != TR_OK)
			tr_error("bpm: the boundary timer %s of instance %s was not scheduled; the "
				 "settle job schedules it again",
				 id, instance);
	}
}

/* The task of a user task's token. */
static int
make_task(struct tr_db *db, const char *tenant, const bson_t *inst, const bson_t *def,
	  const bson_t *node, const struct token *t)
{
	bson_t doc = BSON_INITIALIZER, stored = BSON_INITIALIZER, spec, subject, arr;
	bson_oid_t oid, iid;
	char user[25], ihex[25];
	const char *role = NULL, *v;
	bson_iter_t it;
	int rc;

	hex_of(inst, "_id", ihex);
	bson_oid_init_from_string(&oid, t->id);
	bson_oid_init_from_string(&iid, ihex);
	if (sub_doc(node, "assignee", &spec))
		resolve_person(db, inst, &spec, user, &role);
	else
		hex_of(inst, "started_by", user), role = NULL;
	BSON_APPEND_OID(&doc, "_id", &oid);
	BSON_APPEND_OID(&doc, "instance_id", &iid);
	BSON_APPEND_UTF8(&doc, "definition_key",
			 str_of(inst, "definition_key") ? str_of(inst, "definition_key") : "");
	BSON_APPEND_UTF8(&doc, "node_id", t->node);
	BSON_APPEND_UTF8(&doc, "name", str_of(node, "name") ? str_of(node, "name") : t->node);
	if ((v = str_of(node, "instructions")))
		BSON_APPEND_UTF8(&doc, "instructions", v);
	else
		BSON_APPEND_NULL(&doc, "instructions");
	if (user[0]) {
		bson_oid_t u;
		bson_oid_init_from_string(&u, user);
		BSON_APPEND_OID(&doc, "assignee_id", &u);
	} else {
		BSON_APPEND_NULL(&doc, "assignee_id");
	}
	BSON_APPEND_ARRAY_BEGIN(&doc, "candidate_roles", &arr);
	if (role)
		BSON_APPEND_UTF8(&arr, "0", role);
	bson_append_array_end(&doc, &arr);
	long long due = bpm_duration_ms(str_of(node, "due_in") ? str_of(node, "due_in") : "");
	if (due > 0)
		BSON_APPEND_DATE_TIME(&doc, "due_at", t->at + due);
	else
		BSON_APPEND_NULL(&doc, "due_at");
	BSON_APPEND_UTF8(&doc, "status", "open");
	if (bson_iter_init_find(&it, node, "form"))
		bson_append_iter(&doc, "form", -1, &it);
	else {
		BSON_APPEND_ARRAY_BEGIN(&doc, "form", &arr);
		bson_append_array_end(&doc, &arr);
	}
	if (sub_doc(inst, "subject", &subject))
		BSON_APPEND_DOCUMENT(&doc, "subject", &subject);
	else
		BSON_APPEND_NULL(&doc, "subject");

	/* jobs first: a task never waits without its escalation or timers */
	long long esc =
	    bpm_duration_ms(str_of(node, "escalate_after") ? str_of(node, "escalate_after") : "");
	if (esc > 0 &&
	    bpm_job_schedule(tenant, "escalate", ihex, t->id, NULL, t->at + esc) != TR_OK)
		tr_error("bpm: the escalation of task %s was not scheduled", t->id);
	schedule_boundaries(def, tenant, ihex, t);

	rc = tr_db_insert(db, BPM_TASKS, &doc, &stored);
	if (rc == TR_OK)
		emit_task(db, tenant, "bpm.task.assigned", &stored);
	else if (rc == TR_EDUPLICATE)
		rc = TR_OK; /* made before */
	bson_destroy(&doc);
	bson_destroy(&stored);
	return rc;
}

/* The id of the record a wait_event waits for: the instance variable it
 * correlates on. */
static bool
wait_value(const bson_t *inst, const bson_t *node, char out[128])
{
	bson_t vars;
	bson_iter_t it;
	const char *corr = str_of(node, "correlate");

	out[0] = '\0';
	if (!corr || !sub_doc(inst, "variables", &vars) || !bson_iter_init_find(&it, &vars, corr))
		return false;
	if (BSON_ITER_HOLDS_UTF8(&it))
		snprintf(out, 128, "%s", bson_iter_utf8(&it, NULL));
	else if (BSON_ITER_HOLDS_OID(&it))
		bson_oid_to_string(bson_iter_oid(&it), out);
	else if (BSON_ITER_HOLDS_INT(&it))
		snprintf(out, 128, "%lld", (long long)bson_iter_as_int64(&it));
	/* ids compare whatever their case */
	for (char *p = out; *p; p++)
		if (*p >= 'A' && *p <= 'Z')
			*p = (char)(*p - 'A' + 'a');
	return out[0] != '\0';
}

void
bpm_event_var(const char *event, char *out, size_t len)
{
	snprintf(out, len, "%s", event);
	for (char *p = out; *p; p++)
		if (*p == '.')
			*p = '_';
}

void
bpm_seen_id(const char *event, const char *value, char out[25])
{
	char seed[256];

	snprintf(seed, sizeof(seed), "seen:%s:%s", event, value);
	bpm_derived_id(seed, out);
}

/* A wait for an event: registered, then checked against the events seen
 * already (the event may have come first; the listener checks the other
 * way round, so one of the two finds the other). */
static int
make_wait(struct tr_db *db, const bson_t *inst, const bson_t *node, const struct token *t)
{
	bson_t doc = BSON_INITIALIZER, stored = BSON_INITIALIZER, seen;
	bson_oid_t oid, iid;
	char value[128], ihex[25], sid[25];
	const char *event = str_of(node, "event");
	int rc;

	hex_of(inst, "_id", ihex);
	if (!event || !wait_value(inst, node, value)) {
		struct bpm_move mv = {.token = t->id,
				      .incident =
					  "the variable to correlate the event on is not set"};
		bson_destroy(&doc);
		return bpm_advance(db, ihex, &mv, NULL);
	}
	bson_oid_init_from_string(&oid, t->id);
	bson_oid_init_from_string(&iid, ihex);
	BSON_APPEND_OID(&doc, "_id", &oid);
	BSON_APPEND_OID(&doc, "instance_id", &iid);
	BSON_APPEND_UTF8(&doc, "token", t->id);
	BSON_APPEND_UTF8(&doc, "event", event);
	BSON_APPEND_UTF8(&doc, "value", value);
	rc = tr_db_insert(db, BPM_WAITS, &doc, &stored);
	bson_destroy(&doc);
	bson_destroy(&stored);
	if (rc != TR_OK && rc != TR_EDUPLICATE)
		return rc;
	bpm_seen_id(event, value, sid);
	rc = tr_db_get(db, BPM_SEEN, sid, &seen);
	if (rc == TR_OK) {
		bson_t data;
		struct bpm_move mv = {.token = t->id};
		bson_t vars = BSON_INITIALIZER;
		if (sub_doc(&seen, "data", &data)) {
			char key[80];
			bpm_event_var(event, key, sizeof(key));
			BSON_APPEND_DOCUMENT(&vars, key, &data);
			mv.vars = &vars;
		}
		rc = bpm_advance(db, ihex, &mv, NULL);
		bson_destroy(&vars);
	} else if (rc == TR_ENOTFOUND) {
		rc = TR_OK;
	}
	bson_destroy(&seen);
	return rc;
}

/* What token t needs outside the instance record. */
static int
token_effects(struct tr_db *db, const char *tenant, const bson_t *inst, const bson_t *def,
	      const struct token *t)
{
	bson_t node;
	const char *type;
	char ihex[25];

	hex_of(inst, "_id", ihex);
	if (!bpm_def_node(def, t->node, &node))
		return TR_OK;
	type = bpm_node_type(&node);
	if (strcmp(type, "user_task") == 0)
		return make_task(db, tenant, inst, def, &node, t);
	if (strcmp(type, "service") == 0) {
		schedule_boundaries(def, tenant, ihex, t);
		return bpm_job_schedule(tenant, "step", ihex, t->id, NULL, 0);
	}
	if (strcmp(type, "timer") == 0) {
		long long ms =
		    bpm_duration_ms(str_of(&node, "duration") ? str_of(&node, "duration") : "");
		return bpm_job_schedule(tenant, "timer", ihex, t->id, NULL,
					t->at + (ms > 0 ? ms : 0));
	}
	if (strcmp(type, "wait_event") == 0)
		return make_wait(db, inst, &node, t);
	return TR_OK; /* a gateway holding a failed instance's place */
}

/* The move's history entries in one insert; their ids come from the
 * instance's version, so a settle writing them again adds only what is
 * missing. */
static void
write_history(struct tr_db *db, const char *ihex, long long version, const struct run *r,
	      const char *by)
{
	bson_t docs[MAX_HISTORY];
	const bson_t *all[MAX_HISTORY];
	bson_oid_t iid;
	int rc;

	if (r->nhist == 0)
		return;
	bson_oid_init_from_string(&iid, ihex);
	for (int i = 0; i < r->nhist; i++) {
		bson_t *doc = &docs[i];
		bson_oid_t oid;
		char seed[80], id[25];
		bson_init(doc);
		snprintf(seed, sizeof(seed), "hist:%s:%lld:%d", ihex, version, i);
		bpm_derived_id(seed, id);
		bson_oid_init_from_string(&oid, id);
		BSON_APPEND_OID(doc, "_id", &oid);
		BSON_APPEND_OID(doc, "instance_id", &iid);
		BSON_APPEND_INT64(doc, "seq", version * 1000 + i);
		BSON_APPEND_UTF8(doc, "node_id", r->hist[i].node);
		BSON_APPEND_UTF8(doc, "action", r->hist[i].what);
		if (by && tr_is_object_id(by)) {
			bson_oid_t u;
			bson_oid_init_from_string(&u, by);
			BSON_APPEND_OID(doc, "by", &u);
		} else {
			BSON_APPEND_NULL(doc, "by");
		}
		BSON_APPEND_DATE_TIME(doc, "at", r->now);
		all[i] = doc;
	}
	rc = tr_db_insert_batch(db, BPM_HISTORY, all, (size_t)r->nhist);
	if (rc != TR_OK)
		tr_warn("bpm: history of instance %s not written (%s)", ihex, tr_strerror(rc));
	for (int i = 0; i < r->nhist; i++)
		bson_destroy(&docs[i]);
}

static void
emit_instance(const char *tenant, const char *event, const bson_t *inst)
{
	bson_t data = BSON_INITIALIZER;
	char id[25], owner[25];

	hex_of(inst, "_id", id);
	hex_of(inst, "started_by", owner);
	bpm_instance_render(inst, &data);
	tr_emit_background(tenant, "bpm.instances", event, id, owner[0] ? owner : NULL, &data);
	bson_destroy(&data);
}

/* An incident for a failed instance: one per failure (its id is the
 * instance's and the failing write's). */
static void
write_incident(struct tr_db *db, const char *ihex, long long version, const struct run *r,
	       const char *token)
{
	bson_t doc = BSON_INITIALIZER, stored;
	bson_oid_t oid, iid;
	char seed[80], id[25];

	snprintf(seed, sizeof(seed), "incident:%s:%lld", ihex, version);
	bpm_derived_id(seed, id);
	bson_oid_init_from_string(&oid, id);
	bson_oid_init_from_string(&iid, ihex);
	BSON_APPEND_OID(&doc, "_id", &oid);
	BSON_APPEND_OID(&doc, "instance_id", &iid);
	BSON_APPEND_UTF8(&doc, "node_id", r->error_node);
	BSON_APPEND_UTF8(&doc, "token", token ? token : "");
	BSON_APPEND_UTF8(&doc, "error", r->error);
	BSON_APPEND_UTF8(&doc, "status", "open");
	int rc = tr_db_insert(db, BPM_INCIDENTS, &doc, &stored);
	if (rc != TR_OK && rc != TR_EDUPLICATE)
		tr_error("bpm: the incident of instance %s was not written (%s)", ihex,
			 tr_strerror(rc));
	bson_destroy(&doc);
	bson_destroy(&stored);
}

/* After a write: everything outside the record, then the events. */
static void
after_write(struct tr_db *db, const bson_t *inst, const bson_t *def, struct run *r, const char *by,
	    const char *prev_status, const char *token)
{
	char ihex[25], tenant[25];
	long long version = tr_doc_int(inst, "version", 0);

	hex_of(inst, "_id", ihex);
	hex_of(inst, "tenant_id", tenant);
	if (r->interrupted[0]) {
		bson_t task, set = BSON_INITIALIZER, out;
		if (tr_db_get(db, BPM_TASKS, r->interrupted, &task) == TR_OK &&
		    str_of(&task, "status") && strcmp(str_of(&task, "status"), "open") == 0) {
			BSON_APPEND_UTF8(&set, "status", "cancelled");
			if (tr_db_update(db, BPM_TASKS, r->interrupted,
					 tr_doc_int(&task, "version", 0), &set, NULL,
					 &out) == TR_OK) {
				emit_task(db, tenant, "bpm.task.cancelled", &out);
				bson_destroy(&out);
			}
		}
		bson_destroy(&task);
		bson_destroy(&set);
	}
	write_history(db, ihex, version, r, by);
	if (strcmp(r->status, "failed") == 0 && strcmp(prev_status, "failed") != 0) {
		const char *at = token;
		for (int i = 0; i < r->ntokens; i++)
			if (strcmp(r->tokens[i].node, r->error_node) == 0)
				at = r->tokens[i].id;
		write_incident(db, ihex, version, r, at);
		emit_instance(tenant, "bpm.instance.failed", inst);
	}
	if (strcmp(r->status, "completed") == 0 && strcmp(prev_status, "completed") != 0)
		emit_instance(tenant, "bpm.instance.completed", inst);
	if (strcmp(r->status, "running") != 0 && strcmp(r->status, "failed") != 0)
		return;
	for (int i = 0; i < r->ntokens; i++)
		if (r->tokens[i].fresh && strcmp(r->status, "running") == 0) {
			int rc = token_effects(db, tenant, inst, def, &r->tokens[i]);
			if (rc != TR_OK)
				tr_warn("bpm: step %s of instance %s not prepared (%s); the settle "
					"job does it",
					r->tokens[i].node, ihex, tr_strerror(rc));
		}
}

/* ---- starting ---- */

int
bpm_start(struct tr_db *db, const bson_t *def, const bson_t *subject, const bson_t *vars,
	  const char *by, const char *id, bson_t *out)
{
	struct run *r = calloc(1, sizeof(*r));
	bson_t doc = BSON_INITIALIZER, fields = BSON_INITIALIZER, empty = BSON_INITIALIZER;
	bson_oid_t oid, did;
	char ihex[25], tenant[25];
	int rc;

	bson_init(out);
	if (!r)
		return TR_ENOMEM;
	load_run(r, &empty, def);
	snprintf(r->status, sizeof(r->status), "running");
	merge_vars(r, vars);
	history(r, "start", "entered");
	leave(r, "start");
	if (r->ntokens == 0 && strcmp(r->status, "running") == 0)
		snprintf(r->status, sizeof(r->status), "completed");

	if (id)
		snprintf(ihex, sizeof(ihex), "%s", id);
	else
		bson_oid_init(&oid, NULL), bson_oid_to_string(&oid, ihex);
	bson_oid_init_from_string(&oid, ihex);
	BSON_APPEND_OID(&doc, "_id", &oid);
	BSON_APPEND_UTF8(&doc, "definition_key", str_of(def, "key") ? str_of(def, "key") : "");
	if (tr_doc_oid(def, "_id", &did))
		BSON_APPEND_OID(&doc, "definition_id", &did);
	BSON_APPEND_INT64(&doc, "def_version", tr_doc_int(def, "rev", 1));
	if (subject)
		BSON_APPEND_DOCUMENT(&doc, "subject", subject);
	else
		BSON_APPEND_NULL(&doc, "subject");
	if (by && tr_is_object_id(by)) {
		bson_oid_t u;
		bson_oid_init_from_string(&u, by);
		BSON_APPEND_OID(&doc, "started_by", &u);
	} else {
		BSON_APPEND_NULL(&doc, "started_by");
	}
	run_fields(r, NULL, NULL, &fields);
	bson_concat(&doc, &fields);

	/* the settle job first: it finishes the start if this process dies
	 * between the insert and the tasks */
	hex_of(def, "tenant_id", tenant);
	if (strcmp(r->status, "running") == 0 &&
	    bpm_job_schedule(tenant, "settle", ihex, NULL, NULL,
			     tr_now_ms() + bpm_settle_after_ms()) != TR_OK)
		tr_warn("bpm: no settle job for instance %s", ihex);
	rc = tr_db_insert(db, BPM_INSTANCES, &doc, out);
	if (rc == TR_OK)
		after_write(db, out, def, r, by, "running", NULL);
	bson_destroy(&doc);
	bson_destroy(&fields);
	bson_destroy(&empty);
	bson_destroy(&r->vars);
	free(r);
	return rc;
}

/* ---- moving ---- */

static int
find_token(const struct run *r, const char *id)
{
	for (int i = 0; i < r->ntokens; i++)
		if (strcmp(r->tokens[i].id, id) == 0)
			return i;
	return -1;
}

/* The definition an instance runs (its own version). */
static int
def_of(struct tr_db *db, const bson_t *inst, bson_t *def)
{
	char id[25];

	hex_of(inst, "definition_id", id);
	if (!id[0]) {
		bson_init(def);
		return TR_ENOTFOUND;
	}
	return bpm_def_get(db, id, def);
}

/* One attempt at a move on the instance as read. 1: nothing to do (the
 * token is gone, or the instance ended); 0: *set holds the write. */
static int
compute(struct run *r, const bson_t *inst, const struct bpm_move *mv, bson_t *set)
{
	const char *status = str_of(inst, "status");
	int t = -1;
	char node[BPM_MAX_ID + 1] = "";

	if (!status || (strcmp(status, "running") != 0 && strcmp(status, "failed") != 0))
		return 1;
	if (mv->token) {
		t = find_token(r, mv->token);
		if (t < 0)
			return 1;
		snprintf(node, sizeof(node), "%s", r->tokens[t].node);
	}
	merge_vars(r, mv->vars);
	if (mv->incident) {
		fail(r, node, mv->incident);
	} else if (mv->boundary) {
		char mark[sizeof(r->fired[0])];
		snprintf(mark, sizeof(mark), "%s:%s", mv->token, mv->boundary);
		for (int i = 0; i < r->nfired; i++)
			if (strcmp(r->fired[i], mark) == 0)
				return 1; /* fired already */
		if (mv->keep_token) {
			if (r->nfired < MAX_FIRED)
				snprintf(r->fired[r->nfired++], sizeof(r->fired[0]), "%s", mark);
		} else {
			snprintf(r->interrupted, sizeof(r->interrupted), "%s", mv->token);
			r->tokens[t] = r->tokens[--r->ntokens];
		}
		history(r, mv->boundary, "entered");
		leave(r, mv->boundary);
	} else if (t >= 0) {
		bson_t n;
		bool gateway =
		    bpm_def_node(r->def, node, &n) && strcmp(bpm_node_type(&n), "exclusive") == 0;
		r->tokens[t] = r->tokens[--r->ntokens];
		if (gateway) {
			/* a token rests at a gateway only when it failed there:
			 * a retry evaluates it again */
			snprintf(r->status, sizeof(r->status), "running");
			r->error[0] = '\0';
			exclusive(r, &n, node);
		} else {
			leave(r, node);
		}
	}
	if (r->ntokens == 0 && strcmp(r->status, "running") == 0)
		snprintf(r->status, sizeof(r->status), "completed");
	run_fields(r, inst, mv->step, set);
	return 0;
}

int
bpm_advance(struct tr_db *db, const char *id, const struct bpm_move *mv, bson_t *out)
{
	bson_t inst = BSON_INITIALIZER, def = BSON_INITIALIZER;
	int rc = TR_EBUSY;

	if (out)
		bson_init(out);
	for (int attempt = 0; attempt < 40; attempt++) {
		struct run *r = calloc(1, sizeof(*r));
		bson_t set = BSON_INITIALIZER, after;
		char prev[16];
		if (!r) {
			rc = TR_ENOMEM;
			break;
		}
		bson_destroy(&inst);
		rc = tr_db_get(db, BPM_INSTANCES, id, &inst);
		if (rc == TR_OK && attempt == 0) {
			bson_destroy(&def);
			rc = def_of(db, &inst, &def);
		}
		if (rc != TR_OK) {
			free(r);
			bson_destroy(&set);
			break;
		}
		load_run(r, &inst, &def);
		snprintf(prev, sizeof(prev), "%s", r->status);
		if (compute(r, &inst, mv, &set) == 1) {
			if (out) {
				bson_destroy(out);
				bson_copy_to(&inst, out);
			}
			bson_destroy(&set);
			bson_destroy(&r->vars);
			free(r);
			rc = TR_OK;
			break;
		}
		bson_t unset = BSON_INITIALIZER;
		if (!r->error[0])
			BSON_APPEND_INT32(&unset, "error", 1),
			    BSON_APPEND_INT32(&unset, "error_node", 1);
		/* a move that makes steps leaves a settle job behind it */
		bool fresh = false;
		for (int i = 0; i < r->ntokens; i++)
			fresh |= r->tokens[i].fresh;
		char tenant[25];
		hex_of(&inst, "tenant_id", tenant);
		if (fresh && bpm_job_schedule(tenant, "settle", id, NULL, NULL,
					      tr_now_ms() + bpm_settle_after_ms()) != TR_OK)
			tr_warn("bpm: no settle job for instance %s", id);
		rc = tr_db_update(db, BPM_INSTANCES, id, tr_doc_int(&inst, "version", 0), &set,
				  &unset, &after);
		bson_destroy(&set);
		bson_destroy(&unset);
		if (rc == TR_OK) {
			after_write(db, &after, &def, r, mv->by, prev, mv->token);
			if (out) {
				bson_destroy(out);
				bson_copy_to(&after, out);
			}
			bson_destroy(&after);
		}
		bson_destroy(&r->vars);
		free(r);
		if (rc != TR_EVERSION && rc != TR_EBUSY)
			break;
	}
	bson_destroy(&inst);
	bson_destroy(&def);
	return rc;
}

/* ---- settling ---- */

int
bpm_settle(struct tr_db *db, const char *id)
{
	bson_t inst, def = BSON_INITIALIZER;
	struct run *r = calloc(1, sizeof(*r));
	char tenant[25];
	int rc;

	if (!r)
		return TR_ENOMEM;
	bson_init(&r->vars);
	rc = tr_db_get(db, BPM_INSTANCES, id, &inst);
	if (rc == TR_OK) {
		bson_destroy(&def);
		rc = def_of(db, &inst, &def);
	}
	if (rc != TR_OK)
		goto out;
	const char *status = str_of(&inst, "status");
	if (!status || strcmp(status, "running") != 0)
		goto out;
	bson_destroy(&r->vars);
	load_run(r, &inst, &def);
	hex_of(&inst, "tenant_id", tenant);
	int64_t now = tr_now_ms(), grace = bpm_settle_after_ms();
	for (int i = 0; i < r->ntokens; i++) {
		struct token *t = &r->tokens[i];
		bson_t node, task;
		if (!bpm_def_node(&def, t->node, &node))
			continue;
		const char *type = bpm_node_type(&node);
		if (strcmp(type, "user_task") == 0) {
			int g = tr_db_get(db, BPM_TASKS, t->id, &task);
			if (g == TR_ENOTFOUND) {
				token_effects(db, tenant, &inst, &def, t);
			} else if (g == TR_OK && str_of(&task, "status") &&
				   strcmp(str_of(&task, "status"), "done") == 0) {
				bson_t data;
				char by[25];
				hex_of(&task, "completed_by", by);
				struct bpm_move mv = {.token = t->id, .by = by[0] ? by : NULL};
				if (sub_doc(&task, "data", &data))
					mv.vars = &data;
				bpm_advance(db, id, &mv, NULL);
			}
			bson_destroy(&task);
		} else if (t->at + grace <= now) {
			/* a step, timer or wait whose job or record may be lost */
			token_effects(db, tenant, &inst, &def, t);
		}
	}
out:
	if (rc == TR_OK || rc == TR_ENOTFOUND)
		bson_destroy(&inst);
	bson_destroy(&def);
	bson_destroy(&r->vars);
	free(r);
	return rc == TR_ENOTFOUND ? TR_OK : rc;
}

/* ---- cancelling ---- */

int
bpm_cancel(struct tr_db *db, const char *id, const char *by, bson_t *report, bson_t *out)
{
	bson_t inst = BSON_INITIALIZER, set, tokens_empty, steps_copy = BSON_INITIALIZER;
	bson_iter_t it;
	char tenant[25];
	int rc = TR_EBUSY;

	bson_init(report);
	bson_init(out);
	for (int attempt = 0; attempt < 40; attempt++) {
		bson_destroy(&inst);
		rc = tr_db_get(db, BPM_INSTANCES, id, &inst);
		if (rc != TR_OK)
			break;
		const char *status = str_of(&inst, "status");
		if (!status || (strcmp(status, "running") != 0 && strcmp(status, "failed") != 0)) {
			rc = TR_EVERSION;
			break;
		}
		bson_init(&set);
		BSON_APPEND_UTF8(&set, "status", "cancelled");
		BSON_APPEND_ARRAY_BEGIN(&set, "tokens", &tokens_empty);
		bson_append_array_end(&set, &tokens_empty);
		BSON_APPEND_ARRAY_BEGIN(&set, "active_nodes", &tokens_empty);
		bson_append_array_end(&set, &tokens_empty);
		BSON_APPEND_DATE_TIME(&set, "ended_at", tr_now_ms());
		bson_destroy(out);
		rc = tr_db_update(db, BPM_INSTANCES, id, tr_doc_int(&inst, "version", 0), &set,
				  NULL, out);
		bson_destroy(&set);
		if (rc == TR_OK)
			break;
		bson_init(out);
		if (rc != TR_EVERSION && rc != TR_EBUSY)
			break;
	}
	if (rc != TR_OK)
		goto done;
	hex_of(&inst, "tenant_id", tenant);

	/* its open tasks end with it */
	if (bson_iter_init_find(&it, &inst, "tokens") && BSON_ITER_HOLDS_ARRAY(&it)) {
		bson_iter_t arr;
		bson_iter_recurse(&it, &arr);
		while (bson_iter_next(&arr)) {
			bson_iter_t f;
			if (!BSON_ITER_HOLDS_DOCUMENT(&arr) || !bson_iter_recurse(&arr, &f) ||
			    !bson_iter_find(&f, "id") || !BSON_ITER_HOLDS_UTF8(&f))
				continue;
			const char *tid = bson_iter_utf8(&f, NULL);
			bson_t task, tset = BSON_INITIALIZER, tout;
			if (tr_db_get(db, BPM_TASKS, tid, &task) == TR_OK &&
			    str_of(&task, "status") &&
			    strcmp(str_of(&task, "status"), "open") == 0) {
				BSON_APPEND_UTF8(&tset, "status", "cancelled");
				if (tr_db_update(db, BPM_TASKS, tid,
						 tr_doc_int(&task, "version", 0), &tset, NULL,
						 &tout) == TR_OK) {
					emit_task(db, tenant, "bpm.task.cancelled", &tout);
					bson_destroy(&tout);
				}
			}
			bson_destroy(&task);
			bson_destroy(&tset);
		}
	}

	/* compensation, newest step first */
	if (bson_iter_init_find(&it, &inst, "steps") && BSON_ITER_HOLDS_ARRAY(&it)) {
		bson_iter_t arr;
		bson_t *steps[256];
		int n = 0;
		bson_iter_recurse(&it, &arr);
		while (bson_iter_next(&arr) && n < 256) {
			const uint8_t *data;
			uint32_t len;
			if (!BSON_ITER_HOLDS_DOCUMENT(&arr))
				continue;
			bson_iter_document(&arr, &len, &data);
			steps[n++] = bson_new_from_data(data, len);
		}
		for (int i = n - 1, k = 0; i >= 0; i--) {
			bson_t line;
			char key[16];
			const char *kk;
			if (steps[i]) {
				bpm_action_compensate(db, out, steps[i], &line);
				bson_uint32_to_string((uint32_t)k++, &kk, key, sizeof(key));
				BSON_APPEND_DOCUMENT(report, kk, &line);
				bson_destroy(&line);
				bson_destroy(steps[i]);
			}
		}
	}
	{
		struct run r0;
		memset(&r0, 0, sizeof(r0));
		r0.now = tr_now_ms();
		bson_init(&r0.vars);
		history(&r0, "cancel", "cancelled");
		write_history(db, id, tr_doc_int(out, "version", 0), &r0, by);
		bson_destroy(&r0.vars);
	}
	emit_instance(tenant, "bpm.instance.cancelled", out);
done:
	bson_destroy(&inst);
	bson_destroy(&steps_copy);
	return rc;
}

void
bpm_instance_render(const bson_t *stored, bson_t *out)
{
	bson_t tmp = BSON_INITIALIZER;
	bson_iter_t it;

	tr_render_resource(stored, &tmp);
	if (bson_iter_init(&it, &tmp))
		while (bson_iter_next(&it)) {
			const char *k = bson_iter_key(&it);
			if (strcmp(k, "version") == 0 || strcmp(k, "tokens") == 0 ||
			    strcmp(k, "joins") == 0 || strcmp(k, "fired") == 0)
				continue;
			if (strcmp(k, "def_version") == 0)
				BSON_APPEND_INT64(out, "version", bson_iter_as_int64(&it));
			else
				bson_append_iter(out, k, -1, &it);
		}
	bson_destroy(&tmp);
}
