/* Process definitions: posted as JSON or as BPMN 2.0 XML (bpmn.c turns a
 * file into the JSON form), checked whole - every fault in one 422 - and
 * stored as the next version of their key. A version is never changed:
 * running instances keep the one they started with.
 *
 * The next version is taken by inserting it under a unique (key, version)
 * index, so two processes posting the same key at once get two versions,
 * never one twice. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bpm.h"
#include "bpmn.h"
#include "cond.h"
#include "db.h"
#include "json.h"
#include "log.h"
#include "resource.h"

/* Events a process may start on or wait for (the module listens to these:
 * module.c). */
static const char *const known_events[] = {
    "crm.deal.won",
    "crm.deal.lost",
    "crm.lead.created",
    "crm.lead.converted",
    "erp.order.confirmed",
    "erp.order.paid",
    "erp.order.shipped",
    "erp.order.completed",
    "erp.order.cancelled",
    "erp.invoice.created",
    NULL,
};

static const char *const node_types[] = {
    "user_task", "service", "exclusive",      "parallel",	"wait_event",
    "timer",	 "end",	    "boundary_timer", "boundary_error", NULL,
};

static const char *const form_types[] = {"string", "int", "bool", "date", "decimal", "enum", NULL};

bool
bpm_event_known(const char *event)
{
	for (const char *const *e = known_events; *e; e++)
		if (strcmp(*e, event) == 0)
			return true;
	return false;
}

static bool
in_list(const char *const *list, const char *s)
{
	for (; *list; list++)
		if (strcmp(*list, s) == 0)
			return true;
	return false;
}

/* A node or definition id: 1..64 of [A-Za-z0-9_.-]. */
static bool
id_ok(const char *s)
{
	size_t n = s ? strlen(s) : 0;

	if (n == 0 || n > BPM_MAX_ID)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
		      (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || s[i] == '-' || s[i] == '.'))
			return false;
	return true;
}

/* Adds a problem field with a formatted name and message. */
static void
fault(struct tr_ctx *c, const char *field, const char *fmt, const char *arg)
{
	char msg[300];

	snprintf(msg, sizeof(msg), fmt, arg ? arg : "");
	tr_problem_field(c, tr_arena_strdup(c->req->arena, field),
			 tr_arena_strdup(c->req->arena, msg));
}

static const char *
str_of(const bson_t *doc, const char *key)
{
	bson_iter_t it;

	if (bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_UTF8(&it))
		return bson_iter_utf8(&it, NULL);
	return NULL;
}

bool
bpm_def_node(const bson_t *def, const char *id, bson_t *node)
{
	bson_iter_t it, arr;
	const uint8_t *data;
	uint32_t len;

	if (!bson_iter_init_find(&it, def, "nodes") || !BSON_ITER_HOLDS_ARRAY(&it) ||
	    !bson_iter_recurse(&it, &arr))
		return false;
	/* a bson_t points into itself: each candidate is made in *node, never
	 * copied there */
	while (bson_iter_next(&arr)) {
		if (!BSON_ITER_HOLDS_DOCUMENT(&arr))
			continue;
		bson_iter_document(&arr, &len, &data);
		if (!bson_init_static(node, data, len))
			continue;
		const char *nid = str_of(node, "id");
		if (nid && strcmp(nid, id) == 0)
			return true;
	}
	return false;
}

const char *
bpm_node_type(const bson_t *node)
{
	const char *t = str_of(node, "type");
	return t ? t : "";
}

/* ---- checking a definition ---- */

struct graph {
	char ids[BPM_MAX_NODES + 1][BPM_MAX_ID + 1]; /* [0] is "start" */
	const char *types[BPM_MAX_NODES + 1];
	char attached[BPM_MAX_NODES + 1][BPM_MAX_ID + 1];
	int n;
	int from[BPM_MAX_FLOWS], to[BPM_MAX_FLOWS];
	bool when[BPM_MAX_FLOWS];
	int nflows;
	char defaults[BPM_MAX_NODES + 1][BPM_MAX_ID + 1];
};

static int
graph_find(const struct graph *g, const char *id)
{
	for (int i = 0; i < g->n; i++)
		if (strcmp(g->ids[i], id) == 0)
			return i;
	return -1;
}

static void
check_duration(struct tr_ctx *c, const bson_t *node, const char *key, const char *where,
	       bool required)
{
	const char *v = str_of(node, key);
	char field[128];

	snprintf(field, sizeof(field), "%s.%s", where, key);
	if (!v) {
		if (required || bson_has_field(node, key))
			fault(c, field, "must be an ISO 8601 duration such as PT4H%s", NULL);
		return;
	}
	if (bpm_duration_ms(v) <= 0)
		fault(c, field, "is not an ISO 8601 duration of fixed length: %s", v);
}

/* {"role"} | {"user_id"} | {"field"} | {"head_of"}: exactly one. */
static void
check_person(struct tr_ctx *c, const bson_t *node, const char *key, const char *where,
	     bool allow_field)
{
	bson_iter_t it;
	char field[128];
	bson_t who;
	const uint8_t *data;
	uint32_t len;
	int kinds = 0;

	snprintf(field, sizeof(field), "%s.%s", where, key);
	if (!bson_iter_init_find(&it, node, key) || !BSON_ITER_HOLDS_DOCUMENT(&it)) {
		fault(
		    c, field,
		    "must be an object: {\"role\"}, {\"user_id\"}, {\"field\"} or {\"head_of\"}%s",
		    NULL);
		return;
	}
	bson_iter_document(&it, &len, &data);
	if (!bson_init_static(&who, data, len))
		return;
	const char *role = str_of(&who, "role"), *user = str_of(&who, "user_id");
	const char *f = str_of(&who, "field"), *head = str_of(&who, "head_of");
	kinds = (role != NULL) + (user != NULL) + (f != NULL) + (head != NULL);
	if (kinds != 1 || bson_count_keys(&who) != 1) {
		fault(c, field, "must name exactly one of role, user_id, field, head_of%s", NULL);
		return;
	}
	if (user && !tr_is_object_id(user))
		fault(c, field, "user_id must be a user's id: %s", user);
	if (role && !id_ok(role))
		fault(c, field, "role is not a role name: %s", role);
	if ((f || head) && !allow_field)
		fault(c, field, "may name a role or a user here%s", NULL);
	if (f && !id_ok(f))
		fault(c, field, "field is not a field name: %s", f);
	if (head && !id_ok(head))
		fault(c, field, "head_of is not a field name: %s", head);
}

static void
check_form(struct tr_ctx *c, const bson_t *node, const char *where)
{
	bson_iter_t it, arr;
	char field[160];
	int i = 0;

	if (!bson_iter_init_find(&it, node, "form"))
		return;
	snprintf(field, sizeof(field), "%s.form", where);
	if (!BSON_ITER_HOLDS_ARRAY(&it) || !bson_iter_recurse(&it, &arr)) {
		fault(c, field, "must be an array of fields%s", NULL);
		return;
	}
	while (bson_iter_next(&arr)) {
		bson_t f;
		const uint8_t *data;
		uint32_t len;
		snprintf(field, sizeof(field), "%s.form[%d]", where, i);
		if (++i > BPM_MAX_FORM) {
			fault(c, field, "a form has at most 50 fields%s", NULL);
			return;
		}
		if (!BSON_ITER_HOLDS_DOCUMENT(&arr)) {
			fault(c, field, "must be an object {key, type, required}%s", NULL);
			continue;
		}
		bson_iter_document(&arr, &len, &data);
		if (!bson_init_static(&f, data, len))
			continue;
		const char *key = str_of(&f, "key"), *type = str_of(&f, "type");
		if (!id_ok(key) || strchr(key, '.'))
			fault(c, field, "key must be 1 to 64 letters, digits, _ or -%s", NULL);
		if (!type || !in_list(form_types, type))
			fault(c, field, "unknown form field type: %s", type ? type : "(none)");
		bson_iter_t o;
		if (type && strcmp(type, "enum") == 0 &&
		    (!bson_iter_init_find(&o, &f, "options") || !BSON_ITER_HOLDS_ARRAY(&o)))
			fault(c, field, "an enum field needs its options%s", NULL);
		if (bson_iter_init_find(&o, &f, "required") && !BSON_ITER_HOLDS_BOOL(&o))
			fault(c, field, "required must be true or false%s", NULL);
	}
}

static void
check_node(struct tr_ctx *c, const bson_t *n, const char *where, const char *type)
{
	bson_iter_t it;

	if (strcmp(type, "user_task") == 0) {
		const char *name = str_of(n, "name");
		if (!name || !*name || strlen(name) > 200)
			fault(c, where, "a user task needs a name of 1 to 200 characters%s", NULL);
		if (bson_iter_init_find(&it, n, "instructions") && !BSON_ITER_HOLDS_UTF8(&it))
			fault(c, where, "instructions must be text%s", NULL);
		check_person(c, n, "assignee", where, true);
		check_form(c, n, where);
		check_duration(c, n, "due_in", where, false);
		check_duration(c, n, "escalate_after", where, false);
		if (bson_has_field(n, "escalate_after") || bson_has_field(n, "escalate_to")) {
			check_person(c, n, "escalate_to", where, false);
			check_duration(c, n, "escalate_after", where, true);
		}
	} else if (strcmp(type, "service") == 0) {
		const char *action = str_of(n, "action");
		if (!action || !bpm_action_known(action))
			fault(c, where, "unknown action: %s", action ? action : "(none)");
		if (bson_iter_init_find(&it, n, "input") && !BSON_ITER_HOLDS_DOCUMENT(&it))
			fault(c, where, "input must be an object%s", NULL);
	} else if (strcmp(type, "wait_event") == 0) {
		const char *ev = str_of(n, "event"), *corr = str_of(n, "correlate");
		if (!ev || !bpm_event_known(ev))
			fault(c, where, "unknown event: %s", ev ? ev : "(none)");
		if (!id_ok(corr))
			fault(c, where,
			      "correlate must name the variable holding the record's id%s", NULL);
	} else if (strcmp(type, "timer") == 0 || strcmp(type, "boundary_timer") == 0) {
		check_duration(c, n, "duration", where, true);
		if (bson_iter_init_find(&it, n, "interrupting") && !BSON_ITER_HOLDS_BOOL(&it))
			fault(c, where, "interrupting must be true or false%s", NULL);
	}
}

/* Marks what is reachable from node i (boundary events through what they
 * are attached to). */
static void
reach(const struct graph *g, int i, bool *seen)
{
	if (seen[i])
		return;
	seen[i] = true;
	for (int f = 0; f < g->nflows; f++)
		if (g->from[f] == i)
			reach(g, g->to[f], seen);
	for (int b = 1; b < g->n; b++)
		if (g->attached[b][0] && strcmp(g->attached[b], g->ids[i]) == 0)
			reach(g, b, seen);
}

static bool
read_nodes(struct tr_ctx *c, const bson_t *def, struct graph *g)
{
	bson_iter_t it, arr;
	char where[64];
	int i = 0;

	if (!bson_iter_init_find(&it, def, "nodes") || !BSON_ITER_HOLDS_ARRAY(&it) ||
	    !bson_iter_recurse(&it, &arr)) {
		tr_problem_field(c, "nodes", "must be an array of nodes");
		return false;
	}
	while (bson_iter_next(&arr)) {
		bson_t n;
		const uint8_t *data;
		uint32_t len;
		snprintf(where, sizeof(where), "nodes[%d]", i++);
		if (g->n > BPM_MAX_NODES) {
			tr_problem_field(c, "nodes", "a definition has at most 200 nodes");
			return false;
		}
		if (!BSON_ITER_HOLDS_DOCUMENT(&arr)) {
			fault(c, where, "must be an object {id, type, ...}%s", NULL);
			continue;
		}
		bson_iter_document(&arr, &len, &data);
		if (!bson_init_static(&n, data, len))
			continue;
		const char *id = str_of(&n, "id"), *type = str_of(&n, "type");
		if (!id_ok(id)) {
			fault(c, where, "id must be 1 to 64 letters, digits, _ . or -%s", NULL);
			continue;
		}
		if (strcmp(id, "start") == 0 || graph_find(g, id) >= 0) {
			fault(c, where, "the id %s is taken (\"start\" is the start event's)", id);
			continue;
		}
		if (!type || !in_list(node_types, type)) {
			fault(c, where, "unknown node type: %s", type ? type : "(none)");
			continue;
		}
		snprintf(g->ids[g->n], sizeof(g->ids[0]), "%s", id);
		for (const char *const *t = node_types; *t; t++)
			if (strcmp(*t, type) == 0)
				g->types[g->n] = *t;
		const char *att = str_of(&n, "attached_to"), *dflt = str_of(&n, "default");
		if (att && strlen(att) <= BPM_MAX_ID)
			snprintf(g->attached[g->n], sizeof(g->attached[0]), "%s", att);
		if (dflt && strlen(dflt) <= BPM_MAX_ID)
			snprintf(g->defaults[g->n], sizeof(g->defaults[0]), "%s", dflt);
		g->n++;
		check_node(c, &n, where, type);
	}
	return true;
}

static void
read_flows(struct tr_ctx *c, const bson_t *def, struct graph *g)
{
	bson_iter_t it, arr;
	char where[64];
	int i = 0;

	if (!bson_iter_init_find(&it, def, "flows") || !BSON_ITER_HOLDS_ARRAY(&it) ||
	    !bson_iter_recurse(&it, &arr)) {
		tr_problem_field(c, "flows", "must be an array of flows {from, to, when}");
		return;
	}
	while (bson_iter_next(&arr)) {
		bson_t f;
		const uint8_t *data;
		uint32_t len;
		char err[200];
		snprintf(where, sizeof(where), "flows[%d]", i++);
		if (g->nflows >= BPM_MAX_FLOWS) {
			tr_problem_field(c, "flows", "a definition has at most 400 flows");
			return;
		}
		if (!BSON_ITER_HOLDS_DOCUMENT(&arr)) {
			fault(c, where, "must be an object {from, to, when}%s", NULL);
			continue;
		}
		bson_iter_document(&arr, &len, &data);
		if (!bson_init_static(&f, data, len))
			continue;
		const char *from = str_of(&f, "from"), *to = str_of(&f, "to");
		int a = from ? graph_find(g, from) : -1, b = to ? graph_find(g, to) : -1;
		if (a < 0)
			fault(c, where, "from names no node: %s", from ? from : "(none)");
		if (b < 0 || b == 0)
			fault(c, where, "to names no node: %s", to ? to : "(none)");
		bson_iter_t w;
		bool has_when = bson_iter_init_find(&w, &f, "when");
		if (has_when) {
			if (!BSON_ITER_HOLDS_UTF8(&w)) {
				fault(c, where, "when must be a condition (text)%s", NULL);
			} else {
				struct bpm_cond *cond =
				    bpm_cond_parse(bson_iter_utf8(&w, NULL), err, sizeof(err));
				if (!cond)
					fault(c, where, "when: %s", err);
				bpm_cond_free(cond);
			}
			if (a > 0 && strcmp(g->types[a], "exclusive") != 0)
				fault(c, where,
				      "only flows out of an exclusive gateway take a condition%s",
				      NULL);
		}
		if (a < 0 || b <= 0)
			continue;
		g->from[g->nflows] = a;
		g->to[g->nflows] = b;
		g->when[g->nflows] = has_when;
		g->nflows++;
	}
}

/* The shape of the graph: outgoing flows per node type, defaults,
 * boundary events, reachability. */
static void
check_graph(struct tr_ctx *c, struct graph *g)
{
	bool seen[BPM_MAX_NODES + 1] = {false};
	char where[96];

	for (int i = 0; i < g->n; i++) {
		int out = 0, in = 0, unconditional = 0;
		bool default_ok = false;
		for (int f = 0; f < g->nflows; f++) {
			if (g->from[f] == i) {
				out++;
				unconditional += !g->when[f];
				if (g->defaults[i][0] &&
				    strcmp(g->ids[g->to[f]], g->defaults[i]) == 0)
					default_ok = true;
			}
			in += g->to[f] == i;
		}
		const char *type = i == 0 ? "start" : g->types[i];
		snprintf(where, sizeof(where), "%s", i == 0 ? "flows" : g->ids[i]);
		if (strcmp(type, "end") == 0) {
			if (out)
				fault(c, where, "an end event has no outgoing flow%s", NULL);
		} else if (strcmp(type, "exclusive") == 0) {
			if (out == 0)
				fault(c, where, "an exclusive gateway needs outgoing flows%s",
				      NULL);
			if (g->defaults[i][0] && !default_ok)
				fault(c, where,
				      "default must name the target of one of its flows: %s",
				      g->defaults[i]);
			if (!g->defaults[i][0] && unconditional == 0 && out > 0)
				fault(c, where,
				      "no condition may hold: give the gateway a default or a flow "
				      "without a condition%s",
				      NULL);
			if (unconditional > 1 ||
			    (g->defaults[i][0] && unconditional > 0 && !default_ok))
				fault(c, where,
				      "at most one flow without a condition (the default)%s", NULL);
		} else if (strcmp(type, "parallel") == 0) {
			if (out == 0)
				fault(c, where, "a parallel gateway needs outgoing flows%s", NULL);
		} else if (out != 1) {
			fault(c, where,
			      i == 0 ? "the start event needs exactly one outgoing flow (from "
				       "\"start\")%s"
				     : "needs exactly one outgoing flow%s",
			      NULL);
		}
		if (strncmp(type, "boundary_", 9) == 0) {
			int t = graph_find(g, g->attached[i]);
			if (t <= 0) {
				fault(c, where, "attached_to names no node: %s", g->attached[i]);
			} else if (strcmp(g->types[t], "user_task") != 0 &&
				   strcmp(g->types[t], "service") != 0) {
				fault(c, where,
				      "a boundary event attaches to a user task or service: %s",
				      g->attached[i]);
			} else if (strcmp(type, "boundary_error") == 0 &&
				   strcmp(g->types[t], "service") != 0) {
				fault(c, where, "an error boundary attaches to a service step: %s",
				      g->attached[i]);
			}
			if (in)
				fault(c, where, "a boundary event has no incoming flow%s", NULL);
		}
	}
	reach(g, 0, seen);
	for (int i = 1; i < g->n; i++)
		if (!seen[i])
			fault(c, g->ids[i], "unreachable from the start%s", NULL);
}

bool
bpm_def_check(struct tr_ctx *c, const bson_t *def)
{
	struct graph *g = calloc(1, sizeof(*g));
	const char *key = str_of(def, "key"), *name = str_of(def, "name");
	const char *start_on = str_of(def, "start_on");
	bson_iter_t it;

	if (!g) {
		tr_problem_from_err(c, TR_ENOMEM);
		return false;
	}
	if (!id_ok(key))
		tr_problem_field(c, "key", "must be 1 to 64 letters, digits, _ . or -");
	if (bson_iter_init_find(&it, def, "name") &&
	    (!name || strlen(name) > 200 || !BSON_ITER_HOLDS_UTF8(&it)))
		tr_problem_field(c, "name", "must be text of at most 200 characters");
	if (bson_iter_init_find(&it, def, "start_on") && !BSON_ITER_HOLDS_NULL(&it) &&
	    (!start_on || !bpm_event_known(start_on)))
		fault(c, "start_on", "unknown event: %s", start_on ? start_on : "(not text)");
	if (bson_has_field(def, "start_every"))
		check_duration(c, def, "start_every", "definition", true);
	snprintf(g->ids[0], sizeof(g->ids[0]), "start");
	g->types[0] = "start";
	g->n = 1;
	if (read_nodes(c, def, g)) {
		read_flows(c, def, g);
		check_graph(c, g);
	}
	free(g);
	return c->resp->problem_slug == NULL;
}

/* ---- storing and reading ---- */

struct newest {
	long long n;
	char id[25];
};

static int
newest_cb(void *arg, const bson_t *res)
{
	struct newest *w = arg;
	long long n = tr_doc_int(res, "rev", 0);
	const char *id = tr_doc_str(res, "id");

	if (n > w->n && id) {
		w->n = n;
		snprintf(w->id, sizeof(w->id), "%s", id);
	}
	return 0;
}

int
bpm_def_get(struct tr_db *db, const char *id, bson_t *out)
{
	return tr_db_get_immutable(db, BPM_DEFS, id, out); /* a version never changes */
}

int
bpm_def_load(struct tr_db *db, const char *key, long long n, bson_t *out)
{
	struct newest w = {0};
	bson_t *filter;
	int rc;

	if (n > 0) {
		filter = BCON_NEW("key", BCON_UTF8(key), "rev", BCON_INT64(n));
		rc = tr_db_find_one(db, BPM_DEFS, filter, out);
		bson_destroy(filter);
		return rc;
	}
	bson_init(out);
	filter = BCON_NEW("key", BCON_UTF8(key));
	rc = tr_db_each(db, BPM_DEFS, filter, newest_cb, &w);
	bson_destroy(filter);
	if (rc != TR_OK)
		return rc;
	if (!w.n)
		return TR_ENOTFOUND;
	bson_destroy(out);
	return tr_db_get_immutable(db, BPM_DEFS, w.id, out);
}

/* The definition as the API shows it: the stored fields, its version as
 * "version" (the record's own version counter stays inside). */
static void
render_def(const bson_t *stored, bson_t *out)
{
	bson_t tmp = BSON_INITIALIZER;
	bson_iter_t it;

	tr_render_resource(stored, &tmp);
	bson_init(out);
	if (!bson_iter_init(&it, &tmp))
		goto done;
	while (bson_iter_next(&it)) {
		const char *k = bson_iter_key(&it);
		if (strcmp(k, "version") == 0 || strcmp(k, "diagram") == 0)
			continue;
		if (strcmp(k, "rev") == 0)
			BSON_APPEND_INT64(out, "version", bson_iter_as_int64(&it));
		else
			bson_append_iter(out, k, -1, &it);
	}
done:
	bson_destroy(&tmp);
}

/* The definition to store from the request: the JSON body, or the BPMN
 * file read into the same form. False after setting the problem. */
static bool
definition_of(struct tr_ctx *c, bson_t *def)
{
	bson_t problems = BSON_INITIALIZER;
	bson_iter_t it, arr;

	if (!c->req->body_xml) {
		bson_copy_to(&c->req->body, def);
		bson_destroy(&problems);
		return true;
	}
	if (bpm_bpmn_read(c->req->raw_body ? c->req->raw_body : "", c->req->raw_body_len, def,
			  &problems) == 0) {
		bson_destroy(&problems);
		return true;
	}
	tr_problem(c, 422, "validation-failed", "the BPMN file cannot be used as it is");
	if (bson_iter_init(&it, &problems))
		while (bson_iter_next(&it)) {
			bson_t p;
			const uint8_t *data;
			uint32_t len;
			if (!BSON_ITER_HOLDS_DOCUMENT(&it))
				continue;
			bson_iter_document(&it, &len, &data);
			if (!bson_init_static(&p, data, len))
				continue;
			const char *f = str_of(&p, "field"), *m = str_of(&p, "message");
			tr_problem_field(c, tr_arena_strdup(c->req->arena, f ? f : "bpmn"),
					 tr_arena_strdup(c->req->arena, m ? m : "invalid"));
		}
	(void)arr;
	bson_destroy(&problems);
	return false;
}

/* Copies the members of def a definition keeps into doc. */
static void
stored_fields(const bson_t *def, const char *source, bson_t *doc)
{
	static const char *const keep[] = {"key",   "name",  "start_on", "start_every",
					   "nodes", "flows", "diagram",	 NULL};
	bson_iter_t it;

	for (const char *const *k = keep; *k; k++)
		if (bson_iter_init_find(&it, def, *k) && !BSON_ITER_HOLDS_NULL(&it))
			bson_append_iter(doc, *k, -1, &it);
	BSON_APPEND_UTF8(doc, "source", source);
}

void
bpm_definition_create(struct tr_ctx *c)
{
	bson_t def = BSON_INITIALIZER, stored = BSON_INITIALIZER, newest = BSON_INITIALIZER;
	bson_t answer = BSON_INITIALIZER;
	int rc = TR_EBUSY;

	bson_destroy(&def);
	if (!definition_of(c, &def))
		goto out; /* def is initialised either way */
	if (!bpm_def_check(c, &def))
		goto out;
	const char *key = str_of(&def, "key");
	for (int attempt = 0; attempt < 20; attempt++) {
		bson_t doc = BSON_INITIALIZER;
		long long n = 0;
		bson_destroy(&newest);
		rc = bpm_def_load(c->db, key, 0, &newest);
		if (rc == TR_OK)
			n = tr_doc_int(&newest, "rev", 0);
		else if (rc != TR_ENOTFOUND)
			break;
		stored_fields(&def, c->req->body_xml ? "bpmn" : "json", &doc);
		BSON_APPEND_INT64(&doc, "rev", n + 1);
		bson_destroy(&stored);
		rc = tr_db_insert(c->db, BPM_DEFS, &doc, &stored);
		bson_destroy(&doc);
		if (rc != TR_EDUPLICATE)
			break;
	}
	if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
		goto out;
	}
	if (bpm_every_schedule(c->req->principal.tenant_hex, &stored, tr_now_ms()) != TR_OK)
		tr_error("bpm: the timer start of %s was not scheduled (Redis): post it again",
			 key);
	render_def(&stored, &answer);
	tr_reply_json(c, 201, &answer);
out:
	bson_destroy(&def);
	bson_destroy(&stored);
	bson_destroy(&newest);
	bson_destroy(&answer);
}

void
bpm_list_reply(struct tr_ctx *c, const char *coll, const bson_t *filter, const char *const *sorts,
	       bool narrow, void (*render)(const bson_t *res, bson_t *out))
{
	struct tr_list_query q;
	bson_t items = BSON_INITIALIZER, answer = BSON_INITIALIZER, out;
	bson_iter_t it;
	char *next = NULL;
	int rc, i = 0;

	if (!tr_list_query_parse_as(c, sorts, narrow, &q)) {
		bson_destroy(&items);
		bson_destroy(&answer);
		return;
	}
	rc = tr_db_list(c->db, coll, filter, &q, &items, &next);
	if (rc != TR_OK) {
		tr_problem_from_err(c, rc);
		goto out;
	}
	BSON_APPEND_ARRAY_BEGIN(&answer, "items", &out);
	if (bson_iter_init(&it, &items))
		while (bson_iter_next(&it)) {
			bson_t res, item = BSON_INITIALIZER;
			const uint8_t *data;
			uint32_t len;
			char k[16];
			const char *kk;
			if (!BSON_ITER_HOLDS_DOCUMENT(&it))
				continue;
			bson_iter_document(&it, &len, &data);
			if (!bson_init_static(&res, data, len))
				continue;
			render(&res, &item);
			bson_uint32_to_string((uint32_t)i++, &kk, k, sizeof(k));
			BSON_APPEND_DOCUMENT(&out, kk, &item);
			bson_destroy(&item);
		}
	bson_append_array_end(&answer, &out);
	if (next)
		BSON_APPEND_UTF8(&answer, "next_cursor", next);
	else
		BSON_APPEND_NULL(&answer, "next_cursor");
	tr_reply_json(c, 200, &answer);
out:
	free(next);
	tr_list_query_free(&q);
	bson_destroy(&items);
	bson_destroy(&answer);
}

static void render_def(const bson_t *stored, bson_t *out);

static void
render_def_item(const bson_t *res, bson_t *out)
{
	bson_t tmp;

	render_def(res, &tmp);
	bson_concat(out, &tmp);
	bson_destroy(&tmp);
}

void
bpm_definition_list(struct tr_ctx *c)
{
	bson_t filter = BSON_INITIALIZER;
	const char *key = tr_query(c, "key");

	if (key)
		BSON_APPEND_UTF8(&filter, "key", key);
	bpm_list_reply(c, BPM_DEFS, &filter, bpm_newest_first, key != NULL, render_def_item);
	bson_destroy(&filter);
}

static void
reply_def(struct tr_ctx *c, const char *key, long long n)
{
	bson_t stored, answer;
	int rc = bpm_def_load(c->db, key, n, &stored);

	if (rc == TR_OK) {
		render_def(&stored, &answer);
		tr_reply_json(c, 200, &answer);
		bson_destroy(&answer);
	} else if (rc == TR_ENOTFOUND) {
		tr_problem(c, 404, "not-found", "no such process definition or version");
	} else {
		tr_problem_from_err(c, rc);
	}
	bson_destroy(&stored);
}

void
bpm_definition_get(struct tr_ctx *c)
{
	reply_def(c, tr_param(c, 0), 0);
}

void
bpm_definition_version(struct tr_ctx *c)
{
	const char *s = tr_param(c, 1);
	char *end;
	long long n = strtoll(s, &end, 10);

	if (*s == '\0' || *end != '\0' || n <= 0 || n > 1000000000) {
		tr_problem(c, 404, "not-found", "versions are numbered from 1");
		return;
	}
	reply_def(c, tr_param(c, 0), n);
}

void
bpm_definition_bpmn(struct tr_ctx *c)
{
	bson_t stored;
	size_t len = 0;
	char *xml;
	int rc = bpm_def_load(c->db, tr_param(c, 0), 0, &stored);

	if (rc != TR_OK) {
		if (rc == TR_ENOTFOUND)
			tr_problem(c, 404, "not-found", "no such process definition");
		else
			tr_problem_from_err(c, rc);
		bson_destroy(&stored);
		return;
	}
	xml = bpm_bpmn_write(&stored, &len);
	bson_destroy(&stored);
	if (!xml) {
		tr_problem_from_err(c, TR_ENOMEM);
		return;
	}
	char *copy = tr_arena_strndup(c->req->arena, xml, len);
	free(xml);
	if (!copy) {
		tr_problem_from_err(c, TR_ENOMEM);
		return;
	}
	tr_reply_text(c, 200, "application/xml", copy, len);
}
