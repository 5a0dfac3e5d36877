/* A definition in the JSON form (bpmn.h) as BPMN 2.0 XML, with Camunda's
 * zeebe: extensions and a BPMNDiagram, so that a modeler opens it as drawn.
 *
 * What bpmn_read.c reads, this writes: the two are each other's inverse
 * for nodes and flows (tests/unit/test_bpm_bpmn.c proves the round trip).
 * The table `node_kinds` says which BPMN element each node type becomes.
 *
 * The diagram: a node or flow the definition's "diagram" draws keeps its
 * place. The others are laid out left to right: a node's layer is the
 * longest path to it from the start (flows that close a loop do not
 * count), its row its place among the layer's nodes in the definition's
 * order; the cell of (layer, row) is 100 + 180 * layer, 100 + 120 * row,
 * and a shape sits in the middle of the cell's 100 x 80 (tasks 100 x 80,
 * events 36 x 36, gateways 50 x 50). A boundary event sits on the bottom
 * edge of its task. An edge runs from its source's right middle to its
 * target's left middle, with a bend halfway when they are not level. */
#include "bpmn.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xml.h"

#define LAYOUT_X 100
#define LAYOUT_DX 180
#define LAYOUT_Y 100
#define LAYOUT_DY 120
#define TASK_W 100
#define TASK_H 80
#define EVENT_SIZE 36
#define GATEWAY_SIZE 50
/* Boundary events along their task's bottom edge: the first's left edge
 * from the task's, and the step to the next. */
#define BOUNDARY_X 14
#define BOUNDARY_DX 40

enum shape {
	SHAPE_TASK,
	SHAPE_EVENT,
	SHAPE_GATEWAY,
};

struct writer;
struct node;

struct node_kind {
	const char *type; /* the JSON type */
	const char *tag;  /* the BPMN element */
	enum shape shape;
	/* the element's own attributes and content, after id and name;
	 * doc is the node's document */
	void (*write)(struct writer *w, const struct node *n, const bson_t *doc);
};

/* A node of the definition. Its document is kept as bytes, not as a
 * bson_t: libbson aligns bson_t to 128 bytes, which an array from calloc
 * is not, so node_doc() makes a view on the stack when one is needed. */
struct node {
	const char *id;
	const char *type;
	const uint8_t *data; /* the node's document in the definition; NULL: the start event */
	uint32_t len;
	const struct node_kind *kind;
	int host; /* a boundary event's task, else -1 */
	int layer, row;
	double x, y, width, height;
};

struct flow {
	const char *id; /* given, or made unique (flow_<n>) */
	const char *from, *to, *when, *name;
	int source, target; /* nodes, -1 when none has the id */
	size_t place;	    /* in "flows", from 1 */
};

/* An event a start or wait names, with its correlation: one <message> each. */
struct message {
	const char *event, *correlate;
	const char *id;
};

/* Strings to indices, open addressing; keys are borrowed. */
struct slot {
	const char *key;
	int value;
};

struct id_map {
	struct slot *slots;
	size_t cap, count;
};

struct writer {
	struct bpm_xml_out out;
	int depth;
	bool open;     /* a start tag waits for its ">" */
	bool had_text; /* the element being ended holds text */
	bool failed;   /* out of memory outside out */
	struct tr_arena arena;
	const char *key, *name, *start_on, *start_every;
	bson_t shapes, edges, labels; /* views into the definition's "diagram"; maybe empty */
	struct node *nodes;	      /* [0] is the start event */
	size_t nnodes;
	struct flow *flows;
	size_t nflows;
	struct message *messages;
	size_t nmessages;
	struct id_map node_index; /* node id -> index in nodes */
	struct id_map taken;	  /* every id the document has so far */
};

/* ---- small readers of the definition ---- */

static const char *
str(const bson_t *doc, const char *key)
{
	bson_iter_t it;

	if (bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_UTF8(&it))
		return bson_iter_utf8(&it, NULL);
	return NULL;
}

/* What it points at as a view, when it is a document or an array. */
static bool
view(const bson_iter_t *it, bson_t *out)
{
	const uint8_t *data;
	uint32_t len;

	if (BSON_ITER_HOLDS_DOCUMENT(it))
		bson_iter_document(it, &len, &data);
	else if (BSON_ITER_HOLDS_ARRAY(it))
		bson_iter_array(it, &len, &data);
	else
		return false;
	return bson_init_static(out, data, len);
}

/* doc[key] as a view when it is a document or an array; else empty. */
static bool
sub(const bson_t *doc, const char *key, bson_t *out)
{
	bson_iter_t it;

	if (bson_iter_init_find(&it, doc, key) && view(&it, out))
		return true;
	bson_init(out); /* inline, nothing to release */
	return false;
}

static bool
flag(const bson_t *doc, const char *key, bool otherwise)
{
	bson_iter_t it;

	if (bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_BOOL(&it))
		return bson_iter_bool(&it);
	return otherwise;
}

/* A view of the node's document (empty for the start event). */
static void
node_doc(const struct node *n, bson_t *doc)
{
	if (!n->data || !bson_init_static(doc, n->data, n->len))
		bson_init(doc);
}

static const char *
node_str(const struct node *n, const char *key)
{
	bson_t doc;

	node_doc(n, &doc);
	return str(&doc, key);
}

static bool
finite_number(const bson_iter_t *it, double *out)
{
	if (BSON_ITER_HOLDS_DOUBLE(it))
		*out = bson_iter_double(it);
	else if (BSON_ITER_HOLDS_INT32(it))
		*out = bson_iter_int32(it);
	else if (BSON_ITER_HOLDS_INT64(it))
		*out = (double)bson_iter_int64(it);
	else
		return false;
	return isfinite(*out);
}

/* ---- ids ---- */

static uint64_t
hash(const char *s)
{
	uint64_t h = 1469598103934665603ULL;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h;
}

static int
map_get(const struct id_map *m, const char *key)
{
	size_t i;

	if (m->cap == 0)
		return -1;
	for (i = hash(key) & (m->cap - 1); m->slots[i].key; i = (i + 1) & (m->cap - 1)) {
		if (strcmp(m->slots[i].key, key) == 0)
			return m->slots[i].value;
	}
	return -1;
}

/* Adds key unless it is there (the first keeps its value); false when out
 * of memory. */
static bool
map_put(struct id_map *m, const char *key, int value)
{
	size_t i;

	if (map_get(m, key) >= 0)
		return true;
	if (2 * (m->count + 1) > m->cap) {
		size_t cap = m->cap ? 2 * m->cap : 64, j;
		struct slot *slots = calloc(cap, sizeof(*slots));

		if (!slots)
			return false;
		for (j = 0; j < m->cap; j++) {
			if (!m->slots[j].key)
				continue;
			for (i = hash(m->slots[j].key) & (cap - 1); slots[i].key;
			     i = (i + 1) & (cap - 1))
				;
			slots[i] = m->slots[j];
		}
		free(m->slots);
		m->slots = slots;
		m->cap = cap;
	}
	for (i = hash(key) & (m->cap - 1); m->slots[i].key; i = (i + 1) & (m->cap - 1))
		;
	m->slots[i].key = key;
	m->slots[i].value = value;
	m->count++;
	return true;
}

/* An id no element of the document has: printf(fmt, ...), or that with
 * "_2", "_3"... appended; in the writer's arena. NULL when out of memory. */
static const char *__attribute__((format(printf, 2, 3)))
fresh_id(struct writer *w, const char *fmt, ...)
{
	char base[300], *id;
	unsigned n;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(base, sizeof(base), fmt, ap);
	va_end(ap);
	for (n = 1;; n++) {
		size_t size = strlen(base) + 16;

		id = tr_arena_alloc(&w->arena, size);
		if (!id)
			goto fail;
		if (n == 1)
			snprintf(id, size, "%s", base);
		else
			snprintf(id, size, "%s_%u", base, n);
		if (map_get(&w->taken, id) < 0)
			break;
	}
	if (!map_put(&w->taken, id, 0))
		goto fail;
	return id;
fail:
	w->failed = true;
	return NULL;
}

/* ---- writing XML ---- */

static void
raw(struct writer *w, const char *s)
{
	bpm_xml_out_raw(&w->out, s);
}

static void
begin(struct writer *w, const char *tag)
{
	int i;

	if (w->open)
		raw(w, ">");
	raw(w, "\n");
	for (i = 0; i < w->depth; i++)
		raw(w, "  ");
	raw(w, "<");
	raw(w, tag);
	w->open = true;
	w->had_text = false;
	w->depth++;
}

static void
attr(struct writer *w, const char *name, const char *value)
{
	if (!value)
		return;
	raw(w, " ");
	raw(w, name);
	raw(w, "=\"");
	bpm_xml_out_escaped(&w->out, value);
	raw(w, "\"");
}

static void
text(struct writer *w, const char *s)
{
	if (w->open)
		raw(w, ">");
	w->open = false;
	bpm_xml_out_escaped(&w->out, s);
	w->had_text = true;
}

static void
end(struct writer *w, const char *tag)
{
	int i;

	w->depth--;
	if (w->open) {
		raw(w, " />");
	} else {
		if (!w->had_text) {
			raw(w, "\n");
			for (i = 0; i < w->depth; i++)
				raw(w, "  ");
		}
		raw(w, "</");
		raw(w, tag);
		raw(w, ">");
	}
	w->open = false;
	w->had_text = false;
}

/* A number as short as it reads back the same. */
static void
attr_number(struct writer *w, const char *name, double v)
{
	char buf[40];

	snprintf(buf, sizeof(buf), "%.15g", v);
	if (strtod(buf, NULL) != v)
		snprintf(buf, sizeof(buf), "%.17g", v);
	attr(w, name, buf);
}

/* <tag xsi:type="bpmn:tFormalExpression">prefix value</tag> */
static void
expression(struct writer *w, const char *tag, const char *prefix, const char *value)
{
	size_t n = strlen(prefix) + strlen(value) + 1;
	char *s = tr_arena_alloc(&w->arena, n);

	if (!s) {
		w->failed = true;
		return;
	}
	snprintf(s, n, "%s%s", prefix, value);
	begin(w, tag);
	attr(w, "xsi:type", "bpmn:tFormalExpression");
	text(w, s);
	end(w, tag);
}

static const char *
label(const struct writer *w, const char *id, const char *name)
{
	return name ? name : id ? str(&w->labels, id) : NULL;
}

static const struct message *
message_of(const struct writer *w, const char *event, const char *correlate)
{
	size_t i;

	for (i = 0; i < w->nmessages; i++) {
		const struct message *m = &w->messages[i];

		if (strcmp(m->event, event) == 0 &&
		    ((!m->correlate && !correlate) ||
		     (m->correlate && correlate && strcmp(m->correlate, correlate) == 0)))
			return m;
	}
	return NULL;
}

static void
message_ref(struct writer *w, const char *event, const char *correlate)
{
	const struct message *m = message_of(w, event, correlate);

	begin(w, "bpmn:messageEventDefinition");
	attr(w, "messageRef", m ? m->id : NULL);
	end(w, "bpmn:messageEventDefinition");
}

static void
timer(struct writer *w, const char *tag, const char *prefix, const char *value)
{
	begin(w, "bpmn:timerEventDefinition");
	if (value)
		expression(w, tag, prefix, value);
	end(w, "bpmn:timerEventDefinition");
}

/* ---- the nodes ---- */

static void
write_start(struct writer *w, const struct node *n, const bson_t *doc)
{
	(void)n;
	(void)doc;
	if (w->start_on)
		message_ref(w, w->start_on, NULL);
	if (w->start_every)
		timer(w, "bpmn:timeCycle", "R/", w->start_every);
}

/* An assignee or escalation target {"role" | "user_id" | "field" |
 * "head_of": v}: which it is and its value. */
static const char *
target(const bson_t *doc, const char *key, const char **kind)
{
	static const char *const kinds[] = {"role", "user_id", "field", "head_of"};
	bson_t t;
	size_t i;

	if (!sub(doc, key, &t))
		return NULL;
	for (i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		const char *v = str(&t, kinds[i]);

		if (v) {
			*kind = kinds[i];
			return v;
		}
	}
	return NULL;
}

static void
write_assignment(struct writer *w, const bson_t *doc)
{
	const char *kind = NULL, *v = target(doc, "assignee", &kind);
	char *expr;
	size_t size;

	if (!v)
		return;
	begin(w, "zeebe:assignmentDefinition");
	if (strcmp(kind, "role") == 0) {
		attr(w, "candidateGroups", v);
	} else if (strcmp(kind, "user_id") == 0) {
		attr(w, "assignee", v);
	} else {
		size = strlen(v) + 16;
		expr = tr_arena_alloc(&w->arena, size);
		if (expr) {
			snprintf(expr, size, strcmp(kind, "field") == 0 ? "=%s" : "=head_of(%s)",
				 v);
			attr(w, "assignee", expr);
		} else {
			w->failed = true;
		}
	}
	end(w, "zeebe:assignmentDefinition");
}

static void
property(struct writer *w, const char *name, const char *value)
{
	begin(w, "zeebe:property");
	attr(w, "name", name);
	attr(w, "value", value);
	end(w, "zeebe:property");
}

/* form.<key> = <type>[:a|b][!] */
static void
write_form_field(struct writer *w, const bson_t *field)
{
	const char *key = str(field, "key"), *type = str(field, "type");
	struct bpm_xml_out spec = {0};
	bson_t options;
	bson_iter_t it;
	bool first = true;
	char *name, *value;
	size_t size;

	if (!key || !type)
		return;
	bpm_xml_out_raw(&spec, type);
	if (sub(field, "options", &options) && bson_iter_init(&it, &options)) {
		while (bson_iter_next(&it)) {
			if (!BSON_ITER_HOLDS_UTF8(&it))
				continue;
			bpm_xml_out_raw(&spec, first ? ":" : "|");
			bpm_xml_out_raw(&spec, bson_iter_utf8(&it, NULL));
			first = false;
		}
	}
	if (flag(field, "required", false))
		bpm_xml_out_raw(&spec, "!");
	value = bpm_xml_out_take(&spec, NULL);
	size = strlen(key) + 8;
	name = tr_arena_alloc(&w->arena, size);
	if (!value || !name) {
		w->failed = true;
		free(value);
		return;
	}
	snprintf(name, size, "form.%s", key);
	property(w, name, value);
	free(value);
}

static void
write_properties(struct writer *w, const bson_t *doc)
{
	const char *kind = NULL, *to = target(doc, "escalate_to", &kind);
	const char *after = str(doc, "escalate_after");
	bson_t form, field;
	bson_iter_t it;
	bool any = sub(doc, "form", &form) && !bson_empty(&form);

	if (!any && !to && !after)
		return;
	begin(w, "zeebe:properties");
	if (any && bson_iter_init(&it, &form)) {
		while (bson_iter_next(&it)) {
			const uint8_t *data;
			uint32_t len;

			if (!BSON_ITER_HOLDS_DOCUMENT(&it))
				continue;
			bson_iter_document(&it, &len, &data);
			if (bson_init_static(&field, data, len))
				write_form_field(w, &field);
		}
	}
	if (after)
		property(w, "escalate_after", after);
	if (to) {
		static const struct {
			const char *kind, *prefix;
		} prefixes[] = {{"role", "role:"},
				{"user_id", "user:"},
				{"field", "field:"},
				{"head_of", "head_of:"}};
		size_t i, size = strlen(to) + 16;
		char *value = tr_arena_alloc(&w->arena, size);

		for (i = 0; value && i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
			if (strcmp(kind, prefixes[i].kind) == 0)
				snprintf(value, size, "%s%s", prefixes[i].prefix, to);
		}
		if (value)
			property(w, "escalate_to", value);
		else
			w->failed = true;
	}
	end(w, "zeebe:properties");
}

static void
write_user_task(struct writer *w, const struct node *n, const bson_t *doc)
{
	const char *instructions = str(doc, "instructions"), *due = str(doc, "due_in");
	const char *kind;
	bson_t form;

	(void)n;
	if (instructions) {
		begin(w, "bpmn:documentation");
		text(w, instructions);
		end(w, "bpmn:documentation");
	}
	if (!target(doc, "assignee", &kind) && !due &&
	    !(sub(doc, "form", &form) && !bson_empty(&form)) &&
	    !target(doc, "escalate_to", &kind) && !str(doc, "escalate_after"))
		return;
	begin(w, "bpmn:extensionElements");
	write_assignment(w, doc);
	if (due) {
		begin(w, "zeebe:taskSchedule");
		attr(w, "dueDate", due);
		end(w, "zeebe:taskSchedule");
	}
	write_properties(w, doc);
	end(w, "bpmn:extensionElements");
}

static void
write_service(struct writer *w, const struct node *n, const bson_t *doc)
{
	const char *action = str(doc, "action");

	(void)n;
	if (!action)
		return;
	begin(w, "bpmn:extensionElements");
	begin(w, "zeebe:taskDefinition");
	attr(w, "type", action);
	end(w, "zeebe:taskDefinition");
	end(w, "bpmn:extensionElements");
}

/* The gateway's default: the flow to the default target, one without a
 * condition first. */
static void
write_exclusive(struct writer *w, const struct node *n, const bson_t *doc)
{
	const char *to = str(doc, "default");
	const struct flow *found = NULL;
	size_t i;

	for (i = 0; to && i < w->nflows; i++) {
		const struct flow *f = &w->flows[i];

		if (f->source != (int)(n - w->nodes) || !f->to || strcmp(f->to, to) != 0)
			continue;
		if (!found || (found->when && !f->when))
			found = f;
	}
	if (found)
		attr(w, "default", found->id);
}

static void
write_wait_event(struct writer *w, const struct node *n, const bson_t *doc)
{
	const char *event = str(doc, "event");

	(void)n;
	if (event)
		message_ref(w, event, str(doc, "correlate"));
}

static void
write_timer(struct writer *w, const struct node *n, const bson_t *doc)
{
	(void)n;
	timer(w, "bpmn:timeDuration", "", str(doc, "duration"));
}

static void
write_boundary_timer(struct writer *w, const struct node *n, const bson_t *doc)
{
	(void)n;
	if (!flag(doc, "interrupting", true))
		attr(w, "cancelActivity", "false");
	attr(w, "attachedToRef", str(doc, "attached_to"));
	timer(w, "bpmn:timeDuration", "", str(doc, "duration"));
}

static void
write_boundary_error(struct writer *w, const struct node *n, const bson_t *doc)
{
	(void)n;
	attr(w, "attachedToRef", str(doc, "attached_to"));
	begin(w, "bpmn:errorEventDefinition");
	end(w, "bpmn:errorEventDefinition");
}

/* Each node type and the BPMN element it becomes. Attributes come first:
 * a write function writes its element's attributes before any child. */
static const struct node_kind node_kinds[] = {
    {"start", "bpmn:startEvent", SHAPE_EVENT, write_start},
    {"user_task", "bpmn:userTask", SHAPE_TASK, write_user_task},
    {"service", "bpmn:serviceTask", SHAPE_TASK, write_service},
    {"exclusive", "bpmn:exclusiveGateway", SHAPE_GATEWAY, write_exclusive},
    {"parallel", "bpmn:parallelGateway", SHAPE_GATEWAY, NULL},
    {"wait_event", "bpmn:intermediateCatchEvent", SHAPE_EVENT, write_wait_event},
    {"timer", "bpmn:intermediateCatchEvent", SHAPE_EVENT, write_timer},
    {"end", "bpmn:endEvent", SHAPE_EVENT, NULL},
    {"boundary_timer", "bpmn:boundaryEvent", SHAPE_EVENT, write_boundary_timer},
    {"boundary_error", "bpmn:boundaryEvent", SHAPE_EVENT, write_boundary_error},
};

/* A type this writer does not know is a plain task: visible, and refused
 * by the reader rather than lost. */
static const struct node_kind unknown_kind = {"", "bpmn:task", SHAPE_TASK, NULL};

static const struct node_kind *
kind_of(const char *type)
{
	size_t i;

	for (i = 0; type && i < sizeof(node_kinds) / sizeof(node_kinds[0]); i++) {
		if (strcmp(node_kinds[i].type, type) == 0)
			return &node_kinds[i];
	}
	return &unknown_kind;
}

static bool
is_boundary(const struct node *n)
{
	return n->kind->write == write_boundary_timer || n->kind->write == write_boundary_error;
}

/* ---- reading the definition in ---- */

/* The nodes, the start event first; a node whose id an earlier one has
 * (the start's included) is passed over, so that each id names one
 * element. */
static int
collect_nodes(struct writer *w, const bson_t *definition)
{
	bson_t list, doc;
	bson_iter_t it;
	size_t n = 1;

	sub(definition, "nodes", &list);
	n += bson_count_keys(&list);
	w->nodes = calloc(n, sizeof(*w->nodes));
	if (!w->nodes)
		return -1;
	w->nodes[0].id = "start";
	w->nodes[0].type = "start";
	w->nodes[0].kind = &node_kinds[0];
	w->nodes[0].host = -1;
	w->nnodes = 1;
	if (!map_put(&w->node_index, "start", 0))
		return -1;
	if (!bson_iter_init(&it, &list))
		return 0;
	while (bson_iter_next(&it) && w->nnodes < n) {
		struct node *node = &w->nodes[w->nnodes];
		const uint8_t *data;
		uint32_t len;

		if (!BSON_ITER_HOLDS_DOCUMENT(&it))
			continue;
		bson_iter_document(&it, &len, &data);
		if (!bson_init_static(&doc, data, len))
			continue;
		node->data = data;
		node->len = len;
		node->id = str(&doc, "id");
		node->type = str(&doc, "type");
		if (!node->id || map_get(&w->node_index, node->id) >= 0)
			continue; /* one element per id: the start is the start event */
		if (!map_put(&w->node_index, node->id, (int)w->nnodes))
			return -1;
		node->kind = kind_of(node->type);
		w->nnodes++;
	}
	return 0;
}

static int
collect_flows(struct writer *w, const bson_t *definition)
{
	bson_t list, doc;
	bson_iter_t it;
	size_t n, place = 0;

	sub(definition, "flows", &list);
	n = bson_count_keys(&list);
	w->flows = calloc(n ? n : 1, sizeof(*w->flows));
	if (!w->flows || !bson_iter_init(&it, &list))
		return w->flows ? 0 : -1;
	while (bson_iter_next(&it) && w->nflows < n) {
		struct flow *f = &w->flows[w->nflows];
		const uint8_t *data;
		uint32_t len;

		place++;
		if (!BSON_ITER_HOLDS_DOCUMENT(&it))
			continue;
		bson_iter_document(&it, &len, &data);
		if (!bson_init_static(&doc, data, len))
			continue;
		f->id = str(&doc, "id");
		f->from = str(&doc, "from");
		f->to = str(&doc, "to");
		f->when = str(&doc, "when");
		f->name = str(&doc, "name");
		f->place = place;
		w->nflows++;
	}
	return 0;
}

/* Every id the definition gives is taken before any is made up. A node or
 * flow may share the process's id (the reader allows it), so the key is
 * taken after them: only made-up ids keep clear of it. */
static int
index_ids(struct writer *w)
{
	size_t i;

	for (i = 0; i < w->nnodes; i++) {
		if (!map_put(&w->taken, w->nodes[i].id, 0))
			return -1;
	}
	for (i = 0; i < w->nflows; i++) {
		struct flow *f = &w->flows[i];

		if (!f->id)
			continue;
		if (map_get(&w->taken, f->id) >= 0)
			f->id = fresh_id(w, "%s", f->id); /* an id twice: XML allows it once */
		else if (!map_put(&w->taken, f->id, 0))
			return -1;
		if (!f->id)
			return -1;
	}
	if (!map_put(&w->taken, w->key, 0))
		return -1;
	for (i = 0; i < w->nflows; i++) {
		struct flow *f = &w->flows[i];

		if (!f->id)
			f->id = fresh_id(w, "flow_%zu", f->place);
		if (!f->id)
			return -1;
		f->source = f->from ? map_get(&w->node_index, f->from) : -1;
		f->target = f->to ? map_get(&w->node_index, f->to) : -1;
	}
	for (i = 1; i < w->nnodes; i++) {
		struct node *n = &w->nodes[i];
		const char *host = node_str(n, "attached_to");
		int h = host ? map_get(&w->node_index, host) : -1;

		n->host = -1;
		if (is_boundary(n) && h > 0 && !is_boundary(&w->nodes[h]))
			n->host = h;
	}
	return 0;
}

/* One <message> per event and correlation the definition waits for. */
static int
collect_messages(struct writer *w)
{
	size_t i;

	w->messages = calloc(w->nnodes + 1, sizeof(*w->messages));
	if (!w->messages)
		return -1;
	for (i = 0; i < w->nnodes; i++) {
		const char *event = i == 0 ? w->start_on : NULL, *correlate = NULL;
		struct message *m;

		if (i > 0 && w->nodes[i].kind->write == write_wait_event) {
			event = node_str(&w->nodes[i], "event");
			correlate = node_str(&w->nodes[i], "correlate");
		}
		if (!event || message_of(w, event, correlate))
			continue;
		m = &w->messages[w->nmessages];
		m->event = event;
		m->correlate = correlate;
		m->id = fresh_id(w, "message_%zu", w->nmessages + 1);
		if (!m->id)
			return -1;
		w->nmessages++;
	}
	return 0;
}

/* ---- the layout ---- */

static void
shape_size(const struct node *n, double *width, double *height)
{
	switch (n->kind->shape) {
	case SHAPE_TASK:
		*width = TASK_W;
		*height = TASK_H;
		break;
	case SHAPE_GATEWAY:
		*width = *height = GATEWAY_SIZE;
		break;
	default:
		*width = *height = EVENT_SIZE;
		break;
	}
}

/* The diagram's [x, y, w, h] for id, when it has four finite numbers. */
static bool
drawn_shape(const struct writer *w, const char *id, double v[4])
{
	bson_t list;
	bson_iter_t it;
	size_t i = 0;

	if (!sub(&w->shapes, id, &list) || !bson_iter_init(&it, &list))
		return false;
	while (bson_iter_next(&it)) {
		if (i == 4 || !finite_number(&it, &v[i]))
			return false;
		i++;
	}
	return i == 4;
}

/* A flow's source for the layout: a boundary event counts as its task. */
static int
layout_source(const struct writer *w, const struct flow *f)
{
	if (f->source >= 0 && w->nodes[f->source].host >= 0)
		return w->nodes[f->source].host;
	return f->source;
}

static bool
in_grid(const struct node *n)
{
	return n->host < 0;
}

/* Layers: the longest path from the start over the flows that close no
 * loop. A depth-first walk (with its own stack) marks the flows back to a
 * node still on the walk; what remains has no cycle, and Kahn's order over
 * it gives every node its layer after all of its predecessors. */
static int
assign_layers(struct writer *w)
{
	size_t n = w->nnodes, f = w->nflows, i;
	size_t *first = calloc(n + 1, sizeof(size_t)), *edges = calloc(f + 1, sizeof(size_t));
	size_t *stack = calloc(n + 1, sizeof(size_t)), *next = calloc(n + 1, sizeof(size_t));
	size_t *indegree = calloc(n + 1, sizeof(size_t)), *rows = calloc(n + 1, sizeof(size_t));
	char *state = calloc(n + 1, 1), *back = calloc(f + 1, 1);
	size_t depth, head, tail, root;
	int rc = -1;

	if (!first || !edges || !stack || !next || !indegree || !rows || !state || !back)
		goto out;
	/* the flows out of each node, grouped by source (counting sort) */
	for (i = 0; i < f; i++) {
		int s = layout_source(w, &w->flows[i]), t = w->flows[i].target;

		if (s >= 0 && t >= 0 && s != t && in_grid(&w->nodes[t]))
			first[s + 1]++;
	}
	for (i = 0; i < n; i++)
		first[i + 1] += first[i];
	memcpy(next, first, n * sizeof(size_t));
	for (i = 0; i < f; i++) {
		int s = layout_source(w, &w->flows[i]), t = w->flows[i].target;

		if (s >= 0 && t >= 0 && s != t && in_grid(&w->nodes[t]))
			edges[next[s]++] = i;
	}
	/* the walk: state 0 not seen, 1 on the walk, 2 done */
	for (root = 0; root < n; root++) {
		if (state[root] || !in_grid(&w->nodes[root]))
			continue;
		depth = 0;
		stack[depth++] = root;
		state[root] = 1;
		next[root] = first[root];
		while (depth > 0) {
			size_t v = stack[depth - 1];

			if (next[v] < first[v + 1]) {
				size_t e = edges[next[v]++];
				size_t t = (size_t)w->flows[e].target;

				if (state[t] == 1) {
					back[e] = 1;
				} else if (state[t] == 0) {
					state[t] = 1;
					next[t] = first[t];
					stack[depth++] = t;
				}
			} else {
				state[v] = 2;
				depth--;
			}
		}
	}
	/* Kahn's order over the rest; stack serves as its queue */
	for (i = 0; i < n; i++)
		w->nodes[i].layer = 0;
	for (i = 0; i < first[n]; i++) {
		if (!back[edges[i]])
			indegree[w->flows[edges[i]].target]++;
	}
	head = tail = 0;
	for (i = 0; i < n; i++) {
		if (in_grid(&w->nodes[i]) && indegree[i] == 0)
			stack[tail++] = i;
	}
	while (head < tail) {
		size_t v = stack[head++], j;

		for (j = first[v]; j < first[v + 1]; j++) {
			size_t e = edges[j], t = (size_t)w->flows[e].target;

			if (back[e])
				continue;
			if (w->nodes[t].layer < w->nodes[v].layer + 1)
				w->nodes[t].layer = w->nodes[v].layer + 1;
			if (--indegree[t] == 0)
				stack[tail++] = t;
		}
	}
	for (i = 0; i < n; i++) {
		if (in_grid(&w->nodes[i]))
			w->nodes[i].row = (int)rows[w->nodes[i].layer]++;
	}
	rc = 0;
out:
	free(first);
	free(edges);
	free(stack);
	free(next);
	free(indegree);
	free(rows);
	free(state);
	free(back);
	return rc;
}

static int
place_nodes(struct writer *w)
{
	size_t i;
	int *boundaries;

	if (assign_layers(w) != 0)
		return -1;
	boundaries = calloc(w->nnodes, sizeof(int));
	if (!boundaries)
		return -1;
	for (i = 0; i < w->nnodes; i++) {
		struct node *n = &w->nodes[i];
		double v[4];

		shape_size(n, &n->width, &n->height);
		if (drawn_shape(w, n->id, v)) {
			n->x = v[0];
			n->y = v[1];
			n->width = v[2];
			n->height = v[3];
		} else if (in_grid(n)) {
			n->x = LAYOUT_X + LAYOUT_DX * n->layer + (TASK_W - n->width) / 2;
			n->y = LAYOUT_Y + LAYOUT_DY * n->row + (TASK_H - n->height) / 2;
		}
	}
	/* boundary events after their tasks, whose places are known now */
	for (i = 0; i < w->nnodes; i++) {
		struct node *n = &w->nodes[i];
		const struct node *host;
		double v[4];

		if (in_grid(n) || drawn_shape(w, n->id, v))
			continue;
		host = &w->nodes[n->host];
		n->x = host->x + BOUNDARY_X + BOUNDARY_DX * boundaries[n->host]++;
		n->y = host->y + host->height - n->height / 2;
	}
	free(boundaries);
	return 0;
}

/* ---- the document ---- */

static void
write_node(struct writer *w, const struct node *n)
{
	const char *name = label(w, n->id, node_str(n, "name"));
	bson_t doc;

	node_doc(n, &doc);
	begin(w, n->kind->tag);
	attr(w, "id", n->id);
	attr(w, "name", name);
	if (n->kind->write)
		n->kind->write(w, n, &doc);
	end(w, n->kind->tag);
}

static void
write_flow(struct writer *w, const struct flow *f)
{
	begin(w, "bpmn:sequenceFlow");
	attr(w, "id", f->id);
	attr(w, "name", label(w, f->id, f->name));
	attr(w, "sourceRef", f->from);
	attr(w, "targetRef", f->to);
	if (f->when)
		expression(w, "bpmn:conditionExpression", "=", f->when);
	end(w, "bpmn:sequenceFlow");
}

static void
write_messages(struct writer *w)
{
	size_t i;

	for (i = 0; i < w->nmessages; i++) {
		const struct message *m = &w->messages[i];

		begin(w, "bpmn:message");
		attr(w, "id", m->id);
		attr(w, "name", m->event);
		if (m->correlate) {
			size_t size = strlen(m->correlate) + 2;
			char *key = tr_arena_alloc(&w->arena, size);

			if (!key) {
				w->failed = true;
				return;
			}
			snprintf(key, size, "=%s", m->correlate);
			begin(w, "bpmn:extensionElements");
			begin(w, "zeebe:subscription");
			attr(w, "correlationKey", key);
			end(w, "zeebe:subscription");
			end(w, "bpmn:extensionElements");
		}
		end(w, "bpmn:message");
	}
}

static void
waypoint(struct writer *w, double x, double y)
{
	begin(w, "di:waypoint");
	attr_number(w, "x", x);
	attr_number(w, "y", y);
	end(w, "di:waypoint");
}

/* The diagram's waypoints for a flow, [{"x", "y"}, ...] (or [[x, y], ...]),
 * as di:waypoints; false, writing nothing, unless it has two or more that
 * are whole. */
static bool
drawn_edge(struct writer *w, const char *id)
{
	bson_t list, point;
	bson_iter_t it, c;
	size_t count = 0, pass;

	if (!sub(&w->edges, id, &list))
		return false;
	for (pass = 0; pass < 2; pass++) {
		if (!bson_iter_init(&it, &list))
			return false;
		while (bson_iter_next(&it)) {
			double xy[2];
			size_t i = 0;

			if (!view(&it, &point))
				return false;
			if (BSON_ITER_HOLDS_DOCUMENT(&it)) {
				if (!bson_iter_init_find(&c, &point, "x") ||
				    !finite_number(&c, &xy[0]) ||
				    !bson_iter_init_find(&c, &point, "y") ||
				    !finite_number(&c, &xy[1]))
					return false;
			} else {
				if (!bson_iter_init(&c, &point))
					return false;
				while (bson_iter_next(&c)) {
					if (i == 2 || !finite_number(&c, &xy[i]))
						return false;
					i++;
				}
				if (i != 2)
					return false;
			}
			if (pass == 1)
				waypoint(w, xy[0], xy[1]);
			count++;
		}
		if (pass == 0 && count < 2)
			return false;
	}
	return true;
}

static void
write_shapes(struct writer *w)
{
	size_t i;

	for (i = 0; i < w->nnodes; i++) {
		const struct node *n = &w->nodes[i];

		begin(w, "bpmndi:BPMNShape");
		attr(w, "id", fresh_id(w, "%s_di", n->id));
		attr(w, "bpmnElement", n->id);
		begin(w, "dc:Bounds");
		attr_number(w, "x", n->x);
		attr_number(w, "y", n->y);
		attr_number(w, "width", n->width);
		attr_number(w, "height", n->height);
		end(w, "dc:Bounds");
		end(w, "bpmndi:BPMNShape");
	}
}

static void
write_edges(struct writer *w)
{
	size_t i;

	for (i = 0; i < w->nflows; i++) {
		const struct flow *f = &w->flows[i];

		begin(w, "bpmndi:BPMNEdge");
		attr(w, "id", fresh_id(w, "%s_di", f->id));
		attr(w, "bpmnElement", f->id);
		if (!drawn_edge(w, f->id) && f->source >= 0 && f->target >= 0) {
			const struct node *s = &w->nodes[f->source], *t = &w->nodes[f->target];
			double sx = s->x + s->width, sy = s->y + s->height / 2;
			double tx = t->x, ty = t->y + t->height / 2;

			waypoint(w, sx, sy);
			if (sy != ty && tx > sx) {
				waypoint(w, (sx + tx) / 2, sy);
				waypoint(w, (sx + tx) / 2, ty);
			}
			waypoint(w, tx, ty);
		}
		end(w, "bpmndi:BPMNEdge");
	}
}

static void
write_document(struct writer *w)
{
	size_t i;

	raw(w, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
	begin(w, "bpmn:definitions");
	attr(w, "xmlns:bpmn", BPM_BPMN_NS);
	attr(w, "xmlns:bpmndi", BPM_BPMNDI_NS);
	attr(w, "xmlns:dc", BPM_DC_NS);
	attr(w, "xmlns:di", BPM_DI_NS);
	attr(w, "xmlns:zeebe", BPM_ZEEBE_NS);
	attr(w, "xmlns:xsi", BPM_XSI_NS);
	attr(w, "id", fresh_id(w, "definitions"));
	attr(w, "targetNamespace", "http://bpmn.io/schema/bpmn");
	attr(w, "exporter", "Trellis");
	attr(w, "exporterVersion", "1");
	write_messages(w);
	begin(w, "bpmn:process");
	attr(w, "id", w->key);
	attr(w, "name", w->name);
	attr(w, "isExecutable", "true");
	for (i = 0; i < w->nnodes; i++)
		write_node(w, &w->nodes[i]);
	for (i = 0; i < w->nflows; i++)
		write_flow(w, &w->flows[i]);
	end(w, "bpmn:process");
	begin(w, "bpmndi:BPMNDiagram");
	attr(w, "id", fresh_id(w, "diagram"));
	begin(w, "bpmndi:BPMNPlane");
	attr(w, "id", fresh_id(w, "plane"));
	attr(w, "bpmnElement", w->key);
	write_shapes(w);
	write_edges(w);
	end(w, "bpmndi:BPMNPlane");
	end(w, "bpmndi:BPMNDiagram");
	end(w, "bpmn:definitions");
	raw(w, "\n");
}

char *
bpm_bpmn_write(const bson_t *definition, size_t *len)
{
	struct writer w = {0};
	bson_t diagram;
	char *xml = NULL;

	tr_arena_init(&w.arena);
	w.key = str(definition, "key");
	if (!w.key)
		w.key = "process";
	w.name = str(definition, "name");
	w.start_on = str(definition, "start_on");
	w.start_every = str(definition, "start_every");
	sub(definition, "diagram", &diagram);
	sub(&diagram, "shapes", &w.shapes);
	sub(&diagram, "edges", &w.edges);
	sub(&diagram, "labels", &w.labels);
	if (collect_nodes(&w, definition) != 0 || collect_flows(&w, definition) != 0 ||
	    index_ids(&w) != 0 || collect_messages(&w) != 0 || place_nodes(&w) != 0)
		goto out;
	write_document(&w);
	if (w.failed)
		goto out;
	xml = bpm_xml_out_take(&w.out, len);
out:
	free(w.out.text);
	free(w.nodes);
	free(w.flows);
	free(w.messages);
	free(w.node_index.slots);
	free(w.taken.slots);
	tr_arena_free(&w.arena);
	return xml;
}
