/* BPMN 2.0 XML into the JSON definition form (bpmn.h).
 *
 * Two passes over the one process. The first indexes every id the file
 * declares - nodes, flows, messages - so that a reference (a flow's source,
 * a gateway's default flow, a boundary event's task, an event's message)
 * is one lookup, whatever the order of the elements. The second writes
 * each node in the file's order through the table `process_elements`,
 * whose row for a BPMN element says what it becomes; an element of the
 * BPMN model with no row is a problem naming it.
 *
 * The JSON nodes, by BPMN element:
 *   userTask          {"type": "user_task", "name", "instructions" (its
 *                      documentation), "assignee", "form", "due_in",
 *                      "escalate_after", "escalate_to"}
 *   serviceTask       {"type": "service", "name", "action"}
 *   exclusiveGateway  {"type": "exclusive", "default": <target of the default flow>}
 *   parallelGateway   {"type": "parallel"}
 *   intermediateCatchEvent  timer: {"type": "timer", "duration"};
 *                     message: {"type": "wait_event", "event", "correlate"}
 *   boundaryEvent     timer: {"type": "boundary_timer", "attached_to",
 *                     "duration", "interrupting"}; error: {"type":
 *                     "boundary_error", "attached_to"}
 *   endEvent          {"type": "end"}
 * The names of the other nodes, and of flows, are a diagram's labels. */
#include "bpmn.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xml.h"

/* An id the JSON form may carry: it is also a key of the diagram's shapes,
 * so never a '.' or a leading '$' (MongoDB field names). */
#define MAX_ID 128
/* A message's quoted field, and the message itself. */
#define MAX_FIELD 128
#define MAX_MESSAGE 256

enum role {
	ROLE_IGNORED, /* read quietly past */
	ROLE_START,
	ROLE_NODE,
	ROLE_FLOW,
	ROLE_MESSAGE,
};

/* An id the file declares. */
struct entry {
	const char *id;
	const struct bpm_xml_element *element;
	enum role role;
	bool drawn; /* the diagram has had its shape or edge */
};

struct reader;

/* What a BPMN element of the process becomes; read appends the node's
 * fields after its "id". */
struct element_kind {
	const char *tag;
	enum role role;
	void (*read)(struct reader *r, const struct bpm_xml_element *e, bson_t *node);
};

struct reader {
	struct tr_arena *arena; /* the document's: trimmed copies of its text */
	bson_t *problems;
	uint32_t nproblems; /* entries in problems, those before the call included */
	uint32_t nlisted;   /* problems this call listed */
	const struct bpm_xml_element *definitions, *process, *start;
	struct entry *entries; /* sorted by id */
	size_t nentries;
	const char *start_on, *start_every;
	bson_t labels;
};

/* ---- problems ---- */

/* Copies s into dst (size bytes) whole characters only. */
static void
clip(char *dst, size_t size, const char *s)
{
	size_t n = strlen(s);

	if (n >= size) {
		n = size - 1;
		while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
			n--;
	}
	memcpy(dst, s, n);
	dst[n] = '\0';
}

static void __attribute__((format(printf, 3, 4)))
problem(struct reader *r, const char *field, const char *fmt, ...)
{
	char message[MAX_MESSAGE], clipped[MAX_MESSAGE], quoted[MAX_FIELD], key[16];
	const char *k;
	bson_t entry;
	va_list ap;

	if (r->nlisted > BPM_BPMN_MAX_PROBLEMS)
		return;
	if (r->nlisted == BPM_BPMN_MAX_PROBLEMS) {
		field = "definition";
		snprintf(message, sizeof(message), "more problems, not listed");
	} else {
		va_start(ap, fmt);
		vsnprintf(message, sizeof(message), fmt, ap);
		va_end(ap);
	}
	/* vsnprintf may have cut a character in two: back to a whole one */
	clip(clipped, sizeof(clipped), message);
	while (!bson_utf8_validate(clipped, strlen(clipped), false))
		clipped[strlen(clipped) - 1] = '\0';
	clip(quoted, sizeof(quoted), field);
	bson_uint32_to_string(r->nproblems, &k, key, sizeof(key));
	BSON_APPEND_DOCUMENT_BEGIN(r->problems, k, &entry);
	BSON_APPEND_UTF8(&entry, "field", quoted);
	BSON_APPEND_UTF8(&entry, "message", clipped);
	bson_append_document_end(r->problems, &entry);
	r->nproblems++;
	r->nlisted++;
}

static const char *
attribute(const struct bpm_xml_element *e, const char *name)
{
	return bpm_xml_attribute(e, "", name);
}

/* What a problem about e names: its id, else its tag. */
static const char *
field_of(const struct bpm_xml_element *e)
{
	const char *id = attribute(e, "id");

	return id && id[0] ? id : e->name;
}

static void
unsupported(struct reader *r, const struct bpm_xml_element *e)
{
	problem(r, field_of(e), "unsupported BPMN element %s", e->name);
}

static void
out_of_memory(struct reader *r)
{
	problem(r, "definition", "out of memory");
}

/* ---- small readers of values ---- */

static bool
is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* s without white space around it, in the arena; NULL for NULL. */
static const char *
trimmed(struct reader *r, const char *s)
{
	size_t n;
	char *copy;

	if (!s)
		return NULL;
	while (is_space(*s))
		s++;
	n = strlen(s);
	while (n > 0 && is_space(s[n - 1]))
		n--;
	copy = tr_arena_strndup(r->arena, s, n);
	if (!copy)
		out_of_memory(r);
	return copy;
}

/* An expression's text: trimmed, a leading '=' (FEEL's mark) and the white
 * space after it dropped. */
static const char *
expression(struct reader *r, const char *s)
{
	s = trimmed(r, s);
	if (s && s[0] == '=')
		s = trimmed(r, s + 1);
	return s;
}

static bool
is_letter(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

static bool
is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* An id of the JSON form: a letter or '_', then letters, digits, '_' and
 * '-'; at most MAX_ID bytes. */
static bool
is_id(const char *s)
{
	size_t n;

	if (!s || !is_letter(s[0]))
		return false;
	for (n = 1; s[n]; n++) {
		if (!is_letter(s[n]) && !is_digit(s[n]) && s[n] != '-')
			return false;
	}
	return n <= MAX_ID;
}

/* A variable's path: names of letters, digits and '_' joined by '.'. */
static bool
is_variable(const char *s)
{
	size_t n = 0;
	bool start = true;

	for (; s[n]; n++) {
		if (start && !is_letter(s[n]))
			return false;
		start = s[n] == '.';
		if (!start && !is_letter(s[n]) && !is_digit(s[n]))
			return false;
	}
	return n > 0 && !start && n <= MAX_ID;
}

/* 24 hex digits: a user's id. */
static bool
is_object_id(const char *s)
{
	size_t n;

	for (n = 0; s[n]; n++) {
		char c = s[n];

		if (!is_digit(c) && !(c >= 'a' && c <= 'f') && !(c >= 'A' && c <= 'F'))
			return false;
	}
	return n == 24;
}

/* An ISO 8601 duration: P, then years, months, weeks and days in that
 * order, then T with hours, minutes and seconds (the seconds may have a
 * fraction); at least one part, each at most 9 digits. */
static bool
is_duration(const char *s)
{
	const char *units = "YMWD";
	bool any = false, time = false, any_time = false;

	if (!s || *s++ != 'P')
		return false;
	while (*s) {
		const char *unit;
		int digits = 0;

		if (*s == 'T' && !time) {
			time = true;
			units = "HMS";
			s++;
			continue;
		}
		while (is_digit(*s) && digits <= 9) {
			s++;
			digits++;
		}
		if (digits == 0 || digits > 9)
			return false;
		if (*s == '.' && time) {
			digits = 0;
			s++;
			while (is_digit(*s) && digits <= 9) {
				s++;
				digits++;
			}
			if (digits == 0 || digits > 9 || *s != 'S')
				return false;
		}
		unit = *s ? strchr(units, *s) : NULL;
		if (!unit)
			return false;
		units = unit + 1;
		any = true;
		any_time = any_time || time;
		s++;
	}
	return any && (!time || any_time);
}

/* A number of the diagram: [-]digits[.digits][e[-]digits], finite. */
static bool
number(const char *s, double *out)
{
	const char *p = s;
	char *end;
	int digits = 0;

	if (!s)
		return false;
	if (*p == '-' || *p == '+')
		p++;
	while (is_digit(*p)) {
		p++;
		digits++;
	}
	if (*p == '.') {
		p++;
		while (is_digit(*p)) {
			p++;
			digits++;
		}
	}
	if (digits == 0)
		return false;
	if (*p == 'e' || *p == 'E') {
		p++;
		if (*p == '-' || *p == '+')
			p++;
		if (!is_digit(*p))
			return false;
		while (is_digit(*p))
			p++;
	}
	if (*p)
		return false;
	*out = strtod(s, &end);
	return end == p && isfinite(*out);
}

/* ---- the index of ids ---- */

static int
entry_cmp(const void *a, const void *b)
{
	return strcmp(((const struct entry *)a)->id, ((const struct entry *)b)->id);
}

static struct entry *
lookup(const struct reader *r, const char *id)
{
	struct entry key = {.id = id};

	if (!id || r->nentries == 0)
		return NULL;
	return bsearch(&key, r->entries, r->nentries, sizeof(key), entry_cmp);
}

/* The JSON id of a node's entry: "start" for the start event. */
static const char *
node_id(const struct reader *r, const struct entry *e)
{
	return e->element == r->start ? "start" : e->id;
}

/* The node a reference names, or NULL after a problem about `field`. */
static const struct entry *
node_ref(struct reader *r, const char *field, const char *what, const char *ref)
{
	const struct entry *e = lookup(r, ref);

	if (!ref || !ref[0]) {
		problem(r, field, "%s is missing", what);
		return NULL;
	}
	if (!e || (e->role != ROLE_NODE && e->role != ROLE_START)) {
		problem(r, field, "%s %s names no node of the process", what, ref);
		return NULL;
	}
	return e;
}

/* ---- the elements of a node ---- */

static bool
in(const char *name, const char *const *list)
{
	for (; list && *list; list++) {
		if (strcmp(name, *list) == 0)
			return true;
	}
	return false;
}

static const char *const own_children[] = {"documentation", "extensionElements", "incoming",
					   "outgoing", NULL};
static const char *const event_definitions[] = {"timerEventDefinition",
						"messageEventDefinition",
						"errorEventDefinition",
						"signalEventDefinition",
						"escalationEventDefinition",
						"compensateEventDefinition",
						"conditionalEventDefinition",
						"linkEventDefinition",
						"terminateEventDefinition",
						"cancelEventDefinition",
						NULL};
static const char *const supported_definitions[] = {
    "timerEventDefinition", "messageEventDefinition", "errorEventDefinition", NULL};

/* Checks e's children of the BPMN model: its own (own_children and
 * `also`) are fine, an event definition listed in `definitions` is
 * returned (one at most), anything else is a problem. */
static const struct bpm_xml_element *
read_children(struct reader *r, const struct bpm_xml_element *e, const char *const *also,
	      const char *const *definitions)
{
	const struct bpm_xml_element *c, *found = NULL;

	for (c = e->children; c; c = c->next) {
		if (strcmp(c->ns, BPM_BPMN_NS) != 0 || in(c->name, own_children) ||
		    in(c->name, also))
			continue;
		if (definitions && in(c->name, definitions)) {
			if (found)
				problem(r, field_of(e),
					"one event definition per event is supported");
			found = c;
		} else if (in(c->name, supported_definitions)) {
			problem(r, field_of(e), "%s with %s is not supported", e->name, c->name);
		} else if (in(c->name, event_definitions)) {
			problem(r, attribute(c, "id") ? field_of(c) : field_of(e),
				"unsupported BPMN element %s", c->name);
		} else {
			unsupported(r, c);
		}
	}
	return found;
}

/* The Camunda extension zeebe:name of e, or NULL. */
static const struct bpm_xml_element *
zeebe(const struct bpm_xml_element *e, const char *name)
{
	const struct bpm_xml_element *ext = bpm_xml_child(e, BPM_BPMN_NS, "extensionElements");

	return ext ? bpm_xml_child(ext, BPM_ZEEBE_NS, name) : NULL;
}

static void
append_name(const struct bpm_xml_element *e, bson_t *node)
{
	const char *name = attribute(e, "name");

	if (name && name[0])
		BSON_APPEND_UTF8(node, "name", name);
}

/* A name of a node the JSON form gives none, or of a flow: a label. */
static void
append_label(struct reader *r, const struct bpm_xml_element *e, const char *id)
{
	const char *name = attribute(e, "name");

	if (name && name[0])
		BSON_APPEND_UTF8(&r->labels, id, name);
}

/* The timer's `wanted` (timeDuration, timeCycle) as trimmed text, or NULL
 * after a problem. */
static const char *
timer_value(struct reader *r, const struct bpm_xml_element *event,
	    const struct bpm_xml_element *timer, const char *wanted)
{
	const struct bpm_xml_element *value = bpm_xml_child(timer, BPM_BPMN_NS, wanted);
	const char *text;

	if (!value) {
		problem(r, field_of(event), "the timer of a %s needs a %s", event->name, wanted);
		return NULL;
	}
	text = trimmed(r, value->text);
	if (text && strcmp(wanted, "timeCycle") == 0) {
		if (strncmp(text, "R/", 2) != 0 || !is_duration(text + 2)) {
			problem(
			    r, field_of(event),
			    "a timer start event repeats an ISO duration forever: R/<duration>");
			return NULL;
		}
		return text + 2;
	}
	if (text && !is_duration(text)) {
		problem(r, field_of(event), "%s is not an ISO 8601 duration", text);
		return NULL;
	}
	return text;
}

/* The message an event definition names, or NULL after a problem. */
static const struct bpm_xml_element *
message_of(struct reader *r, const struct bpm_xml_element *event,
	   const struct bpm_xml_element *definition)
{
	const char *ref = attribute(definition, "messageRef");
	const struct entry *m = lookup(r, ref);
	const char *name;

	if (!m || m->role != ROLE_MESSAGE) {
		problem(r, field_of(event), "the event names no message of the file");
		return NULL;
	}
	name = attribute(m->element, "name");
	if (!name || !name[0]) {
		problem(r, m->id, "a message needs a name: the event's name");
		return NULL;
	}
	return m->element;
}

/* ---- the nodes ---- */

static void
read_start_event(struct reader *r, const struct bpm_xml_element *e)
{
	static const char *const allowed[] = {"timerEventDefinition", "messageEventDefinition",
					      NULL};
	const struct bpm_xml_element *definition = read_children(r, e, NULL, allowed);
	const struct bpm_xml_element *message;

	append_label(r, e, "start");
	if (!definition)
		return;
	if (strcmp(definition->name, "timerEventDefinition") == 0) {
		r->start_every = timer_value(r, e, definition, "timeCycle");
		return;
	}
	message = message_of(r, e, definition);
	if (message)
		r->start_on = attribute(message, "name");
}

static void
read_end_event(struct reader *r, const struct bpm_xml_element *e, bson_t *node)
{
	read_children(r, e, NULL, NULL);
	BSON_APPEND_UTF8(node, "type", "end");
	append_label(r, e, attribute(e, "id"));
}

/* An assignee or escalation target as its JSON object into parent[key]. */
static void
append_target(bson_t *parent, const char *key, const char *kind, const char *value)
{
	bson_t target;

	BSON_APPEND_DOCUMENT_BEGIN(parent, key, &target);
	BSON_APPEND_UTF8(&target, kind, value);
	bson_append_document_end(parent, &target);
}

/* zeebe:assignmentDefinition: assignee "=owner_id" (a variable), or
 * "=head_of(owner_id)", or a user's id; or one candidate group, a role. */
static void
read_assignment(struct reader *r, const struct bpm_xml_element *task, bson_t *node)
{
	const struct bpm_xml_element *a = zeebe(task, "assignmentDefinition");
	const char *assignee, *groups, *users, *comma;

	if (!a)
		return;
	assignee = trimmed(r, attribute(a, "assignee"));
	groups = trimmed(r, attribute(a, "candidateGroups"));
	users = trimmed(r, attribute(a, "candidateUsers"));
	if (users && users[0])
		problem(r, field_of(task), "candidate users are not supported");
	if (assignee && assignee[0] && groups && groups[0]) {
		problem(r, field_of(task), "an assignee or a candidate group, not both");
		return;
	}
	if (assignee && assignee[0] == '=') {
		const char *expr = expression(r, assignee);
		size_t n = expr ? strlen(expr) : 0;

		if (expr && strncmp(expr, "head_of(", 8) == 0 && n > 9 && expr[n - 1] == ')') {
			char *inner = tr_arena_strndup(r->arena, expr + 8, n - 9);
			const char *variable = trimmed(r, inner);

			if (variable && is_variable(variable)) {
				append_target(node, "assignee", "head_of", variable);
				return;
			}
		} else if (expr && is_variable(expr)) {
			append_target(node, "assignee", "field", expr);
			return;
		}
		problem(r, field_of(task),
			"the assignee expression names a variable: =owner_id or "
			"=head_of(owner_id)");
	} else if (assignee && assignee[0]) {
		if (is_object_id(assignee))
			append_target(node, "assignee", "user_id", assignee);
		else
			problem(r, field_of(task),
				"the assignee is a user's id (24 hex digits) or =<variable>");
	} else if (groups && groups[0]) {
		comma = strchr(groups, ',');
		if (comma || groups[0] == '=') {
			problem(r, field_of(task), "one candidate group is supported");
			return;
		}
		append_target(node, "assignee", "role", groups);
	}
}

static const char *const form_types[] = {"string", "int", "bool", "date", "decimal", "enum", NULL};

/* A form field from zeebe:property name="form.<key>" value="<type>[!]", or
 * "enum:a|b|c[!]"; '!' marks it required. */
static void
append_form_field(struct reader *r, const struct bpm_xml_element *task, bson_t *form,
		  uint32_t index, const char *key, const char *spec)
{
	char number[16], *type;
	const char *k, *options = NULL;
	size_t n = spec ? strlen(spec) : 0;
	bool required = n > 0 && spec[n - 1] == '!';
	bson_t field, list;

	if (!is_letter(key[0]) || !is_variable(key) || strchr(key, '.')) {
		problem(r, field_of(task),
			"the form field name %s is not a name of letters, "
			"digits and _",
			key);
		return;
	}
	type = tr_arena_strndup(r->arena, spec ? spec : "", required ? n - 1 : n);
	if (!type) {
		out_of_memory(r);
		return;
	}
	if (strncmp(type, "enum:", 5) == 0) {
		options = type + 5;
		type[4] = '\0';
	}
	if (!in(type, form_types)) {
		problem(r, field_of(task),
			"the form field %s has a type other than string, int, bool, date, "
			"decimal, enum:a|b",
			key);
		return;
	}
	if (strcmp(type, "enum") == 0 && (!options || !options[0])) {
		problem(r, field_of(task), "the enum field %s needs its options: enum:a|b", key);
		return;
	}
	bson_uint32_to_string(index, &k, number, sizeof(number));
	BSON_APPEND_DOCUMENT_BEGIN(form, k, &field);
	BSON_APPEND_UTF8(&field, "key", key);
	BSON_APPEND_UTF8(&field, "type", type);
	BSON_APPEND_BOOL(&field, "required", required);
	if (options) {
		uint32_t i = 0;

		BSON_APPEND_ARRAY_BEGIN(&field, "options", &list);
		while (options) {
			const char *bar = strchr(options, '|');
			size_t len = bar ? (size_t)(bar - options) : strlen(options);

			if (len == 0)
				problem(r, field_of(task), "the enum field %s has an empty option",
					key);
			bson_uint32_to_string(i++, &k, number, sizeof(number));
			bson_append_utf8(&list, k, -1, options, (int)len);
			options = bar ? bar + 1 : NULL;
		}
		bson_append_array_end(&field, &list);
	}
	bson_append_document_end(form, &field);
}

/* escalate_to's value: role:<role>, user:<id>, field:<variable>,
 * head_of:<variable>. */
static void
append_escalation_target(struct reader *r, const struct bpm_xml_element *task, bson_t *node,
			 const char *value)
{
	if (value && strncmp(value, "role:", 5) == 0 && value[5])
		append_target(node, "escalate_to", "role", value + 5);
	else if (value && strncmp(value, "user:", 5) == 0 && is_object_id(value + 5))
		append_target(node, "escalate_to", "user_id", value + 5);
	else if (value && strncmp(value, "field:", 6) == 0 && is_variable(value + 6))
		append_target(node, "escalate_to", "field", value + 6);
	else if (value && strncmp(value, "head_of:", 8) == 0 && is_variable(value + 8))
		append_target(node, "escalate_to", "head_of", value + 8);
	else
		problem(r, field_of(task),
			"escalate_to is role:<role>, user:<id>, field:<variable> or "
			"head_of:<variable>");
}

/* Calls each(r, task, name, value, arg) for every zeebe:property of task. */
static void
each_property(struct reader *r, const struct bpm_xml_element *task,
	      void (*each)(struct reader *, const struct bpm_xml_element *, const char *,
			   const char *, void *),
	      void *arg)
{
	const struct bpm_xml_element *ext = bpm_xml_child(task, BPM_BPMN_NS, "extensionElements");
	const struct bpm_xml_element *list, *p;

	for (list = ext ? ext->children : NULL; list; list = list->next) {
		if (!bpm_xml_is(list, BPM_ZEEBE_NS, "properties"))
			continue;
		for (p = list->children; p; p = p->next) {
			const char *name = attribute(p, "name");

			if (bpm_xml_is(p, BPM_ZEEBE_NS, "property") && name)
				each(r, task, name, trimmed(r, attribute(p, "value")), arg);
		}
	}
}

/* The form properties of a task, walked twice: counted, then appended
 * with their keys kept to find one given twice. */
struct form_walk {
	bson_t *form;
	uint32_t n;
	bool counting;
	const char **keys; /* n of them, in the arena */
};

static void
form_property(struct reader *r, const struct bpm_xml_element *task, const char *name,
	      const char *value, void *arg)
{
	struct form_walk *walk = arg;

	if (strncmp(name, "form.", 5) != 0)
		return;
	if (!walk->counting) {
		walk->keys[walk->n] = name + 5;
		append_form_field(r, task, walk->form, walk->n, name + 5, value);
	}
	walk->n++;
}

static int
key_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* A form field given twice is a problem (sorted, so that a long form is
 * no slower to check than to read). */
static void
check_form_keys(struct reader *r, const struct bpm_xml_element *task, struct form_walk *walk)
{
	uint32_t i;

	qsort(walk->keys, walk->n, sizeof(*walk->keys), key_cmp);
	for (i = 1; i < walk->n; i++) {
		if (strcmp(walk->keys[i - 1], walk->keys[i]) == 0) {
			problem(r, field_of(task), "the form field %s is given twice",
				walk->keys[i]);
			return;
		}
	}
}

/* Which escalation properties a task has had: each is one key. */
struct escalation_walk {
	bson_t *node;
	bool after, to;
};

static void
escalation_property(struct reader *r, const struct bpm_xml_element *task, const char *name,
		    const char *value, void *arg)
{
	struct escalation_walk *walk = arg;
	bool after = strcmp(name, "escalate_after") == 0, to = strcmp(name, "escalate_to") == 0;

	if ((after && walk->after) || (to && walk->to)) {
		problem(r, field_of(task), "%s is given twice", name);
		return;
	}
	walk->after = walk->after || after;
	walk->to = walk->to || to;
	if (after) {
		if (is_duration(value))
			BSON_APPEND_UTF8(walk->node, "escalate_after", value);
		else
			problem(r, field_of(task), "escalate_after is an ISO 8601 duration");
	} else if (to) {
		append_escalation_target(r, task, walk->node, value);
	}
}

static void
read_user_task(struct reader *r, const struct bpm_xml_element *e, bson_t *node)
{
	const struct bpm_xml_element *doc = bpm_xml_child(e, BPM_BPMN_NS, "documentation");
	const struct bpm_xml_element *schedule = zeebe(e, "taskSchedule");
	struct form_walk walk = {.counting = true};
	struct escalation_walk escalation = {.node = node};
	bson_t form;

	read_children(r, e, NULL, NULL);
	BSON_APPEND_UTF8(node, "type", "user_task");
	append_name(e, node);
	if (doc) {
		const char *text = trimmed(r, doc->text);

		if (text && text[0])
			BSON_APPEND_UTF8(node, "instructions", text);
	}
	read_assignment(r, e, node);
	each_property(r, e, form_property, &walk);
	if (walk.n > 0) {
		walk.keys = tr_arena_alloc(r->arena, walk.n * sizeof(*walk.keys));
		if (!walk.keys) {
			out_of_memory(r);
			return;
		}
		walk.counting = false;
		walk.n = 0;
		walk.form = &form;
		BSON_APPEND_ARRAY_BEGIN(node, "form", &form);
		each_property(r, e, form_property, &walk);
		bson_append_array_end(node, &form);
		check_form_keys(r, e, &walk);
	}
	if (schedule && attribute(schedule, "dueDate")) {
		const char *due = trimmed(r, attribute(schedule, "dueDate"));

		if (is_duration(due))
			BSON_APPEND_UTF8(node, "due_in", due);
		else
			problem(r, field_of(e), "the due date is an ISO 8601 duration (PT4H)");
	}
	each_property(r, e, escalation_property, &escalation);
}

static void
read_service_task(struct reader *r, const struct bpm_xml_element *e, bson_t *node)
{
	const struct bpm_xml_element *definition = zeebe(e, "taskDefinition");
	const char *action = definition ? trimmed(r, attribute(definition, "type")) : NULL;

	read_children(r, e, NULL, NULL);
	BSON_APPEND_UTF8(node, "type", "service");
	append_name(e, node);
	if (!action || !action[0] || action[0] == '=')
		problem(r, field_of(e),
			"a service task needs a zeebe:taskDefinition type: its "
			"action");
	else
		BSON_APPEND_UTF8(node, "action", action);
}

static void
read_exclusive_gateway(struct reader *r, const struct bpm_xml_element *e, bson_t *node)
{
	const char *flow_id = attribute(e, "default");

	read_children(r, e, NULL, NULL);
	BSON_APPEND_UTF8(node, "type", "exclusive");
	append_label(r, e, attribute(e, "id"));
	if (flow_id) {
		const struct entry *flow = lookup(r, flow_id);
		const char *source =
		    flow && flow->role == ROLE_FLOW ? attribute(flow->element, "sourceRef") : NULL;
		const struct entry *target;

		if (!source || strcmp(source, attribute(e, "id")) != 0) {
			problem(r, field_of(e), "the default %s is no flow out of the gateway",
				flow_id);
			return;
		}
		target = node_ref(r, flow->id, "targetRef", attribute(flow->element, "targetRef"));
		if (target)
			BSON_APPEND_UTF8(node, "default", node_id(r, target));
	}
}

static void
read_parallel_gateway(struct reader *r, const struct bpm_xml_element *e, bson_t *node)
{
	read_children(r, e, NULL, NULL);
	BSON_APPEND_UTF8(node, "type", "parallel");
	append_label(r, e, attribute(e, "id"));
}

static void
read_catch_event(struct reader *r, const struct bpm_xml_element *e, bson_t *node)
{
	static const char *const allowed[] = {"timerEventDefinition", "messageEventDefinition",
					      NULL};
	const struct bpm_xml_element *definition = read_children(r, e, NULL, allowed);
	const struct bpm_xml_element *message, *subscription = NULL;
	const char *value;

	append_label(r, e, attribute(e, "id"));
	if (!definition) {
		BSON_APPEND_UTF8(node, "type", "wait_event");
		problem(r, field_of(e),
			"an intermediate catch event waits for a timer or a "
			"message");
		return;
	}
	if (strcmp(definition->name, "timerEventDefinition") == 0) {
		BSON_APPEND_UTF8(node, "type", "timer");
		value = timer_value(r, e, definition, "timeDuration");
		if (value)
			BSON_APPEND_UTF8(node, "duration", value);
		return;
	}
	BSON_APPEND_UTF8(node, "type", "wait_event");
	message = message_of(r, e, definition);
	if (!message)
		return;
	BSON_APPEND_UTF8(node, "event", attribute(message, "name"));
	subscription = zeebe(message, "subscription");
	value = subscription ? expression(r, attribute(subscription, "correlationKey")) : NULL;
	if (value && value[0] && is_variable(value))
		BSON_APPEND_UTF8(node, "correlate", value);
	else if (value && value[0])
		problem(r, field_of(message), "the correlation key names a variable: =order_id");
}

static void
read_boundary_event(struct reader *r, const struct bpm_xml_element *e, bson_t *node)
{
	static const char *const allowed[] = {"timerEventDefinition", "errorEventDefinition", NULL};
	const struct bpm_xml_element *definition = read_children(r, e, NULL, allowed);
	const struct entry *task =
	    node_ref(r, field_of(e), "attachedToRef", attribute(e, "attachedToRef"));
	const char *cancel = attribute(e, "cancelActivity");
	bool timer = definition && strcmp(definition->name, "timerEventDefinition") == 0;
	const char *duration;

	append_label(r, e, attribute(e, "id"));
	BSON_APPEND_UTF8(node, "type", timer ? "boundary_timer" : "boundary_error");
	if (!definition)
		problem(r, field_of(e), "a boundary event waits for a timer or an error");
	if (task && !bpm_xml_is(task->element, BPM_BPMN_NS, "userTask") &&
	    !bpm_xml_is(task->element, BPM_BPMN_NS, "serviceTask")) {
		problem(r, field_of(e), "a boundary event is attached to a user or service task");
		task = NULL;
	}
	if (task)
		BSON_APPEND_UTF8(node, "attached_to", task->id);
	if (!timer)
		return;
	duration = timer_value(r, e, definition, "timeDuration");
	if (duration)
		BSON_APPEND_UTF8(node, "duration", duration);
	if (cancel && strcmp(cancel, "true") != 0 && strcmp(cancel, "false") != 0)
		problem(r, field_of(e), "cancelActivity is true or false");
	BSON_APPEND_BOOL(node, "interrupting", !cancel || strcmp(cancel, "false") != 0);
}

/* The elements a process may hold, and what each becomes. */
static const struct element_kind process_elements[] = {
    {"startEvent", ROLE_START, NULL}, /* read first: read_start_event */
    {"endEvent", ROLE_NODE, read_end_event},
    {"userTask", ROLE_NODE, read_user_task},
    {"serviceTask", ROLE_NODE, read_service_task},
    {"exclusiveGateway", ROLE_NODE, read_exclusive_gateway},
    {"parallelGateway", ROLE_NODE, read_parallel_gateway},
    {"intermediateCatchEvent", ROLE_NODE, read_catch_event},
    {"boundaryEvent", ROLE_NODE, read_boundary_event},
    {"sequenceFlow", ROLE_FLOW, NULL}, /* read after the nodes: read_flows */
    /* what changes nothing the engine does */
    {"documentation", ROLE_IGNORED, NULL},
    {"extensionElements", ROLE_IGNORED, NULL},
    {"laneSet", ROLE_IGNORED, NULL},
    {"textAnnotation", ROLE_IGNORED, NULL},
    {"association", ROLE_IGNORED, NULL},
    {"group", ROLE_IGNORED, NULL},
};

/* The elements beside the process: its messages, what its events may
 * name, and the collaboration a pool is drawn in. */
static const struct element_kind definitions_elements[] = {
    {"process", ROLE_IGNORED, NULL}, /* counted and read on its own */
    {"message", ROLE_MESSAGE, NULL},	   {"collaboration", ROLE_IGNORED, NULL},
    {"error", ROLE_IGNORED, NULL},	   {"signal", ROLE_IGNORED, NULL},
    {"escalation", ROLE_IGNORED, NULL},	   {"category", ROLE_IGNORED, NULL},
    {"documentation", ROLE_IGNORED, NULL}, {"extensionElements", ROLE_IGNORED, NULL},
};

static const struct element_kind *
kind_of(const struct bpm_xml_element *e, const struct element_kind *kinds, size_t n)
{
	size_t i;

	if (strcmp(e->ns, BPM_BPMN_NS) != 0)
		return NULL;
	for (i = 0; i < n; i++) {
		if (strcmp(e->name, kinds[i].tag) == 0)
			return &kinds[i];
	}
	return NULL;
}

#define KIND_OF(e, kinds) kind_of((e), (kinds), sizeof(kinds) / sizeof((kinds)[0]))

/* ---- the first pass: the index ---- */

/* Adds e to the index when its id is one the JSON form may carry. */
static void
index_element(struct reader *r, const struct bpm_xml_element *e, enum role role)
{
	const char *id = attribute(e, "id");
	struct entry *entry = &r->entries[r->nentries];

	if (role == ROLE_MESSAGE) {
		if (!id || !id[0])
			return; /* nothing can name it */
	} else if (!is_id(id)) {
		problem(r, field_of(e),
			"an id of letters, digits, _ and - (at most %d, starting with a letter "
			"or _) is needed",
			MAX_ID);
		return;
	}
	if (role == ROLE_START) {
		if (r->start) {
			problem(r, field_of(e), "one start event is supported");
			return;
		}
		r->start = e;
	} else if (role == ROLE_NODE && strcmp(id, "start") == 0) {
		problem(r, id, "the id start is the start event's");
		return;
	}
	entry->id = id;
	entry->element = e;
	entry->role = role;
	r->nentries++;
}

static int
build_index(struct reader *r)
{
	const struct bpm_xml_element *c;
	size_t n = 0, i;

	for (c = r->process->children; c; c = c->next)
		n++;
	for (c = r->definitions->children; c; c = c->next)
		n++;
	r->entries = calloc(n ? n : 1, sizeof(*r->entries));
	if (!r->entries) {
		out_of_memory(r);
		return -1;
	}
	for (c = r->definitions->children; c; c = c->next) {
		const struct element_kind *kind = KIND_OF(c, definitions_elements);

		if (kind && kind->role == ROLE_MESSAGE)
			index_element(r, c, ROLE_MESSAGE);
		else if (!kind && strcmp(c->ns, BPM_BPMN_NS) == 0)
			unsupported(r, c);
	}
	for (c = r->process->children; c; c = c->next) {
		const struct element_kind *kind = KIND_OF(c, process_elements);

		if (kind && kind->role != ROLE_IGNORED)
			index_element(r, c, kind->role);
		else if (!kind && strcmp(c->ns, BPM_BPMN_NS) == 0)
			unsupported(r, c);
	}
	qsort(r->entries, r->nentries, sizeof(*r->entries), entry_cmp);
	for (i = 1; i < r->nentries; i++) {
		if (strcmp(r->entries[i - 1].id, r->entries[i].id) == 0 &&
		    (i < 2 || strcmp(r->entries[i - 2].id, r->entries[i].id) != 0))
			problem(r, r->entries[i].id, "the id is given to more than one element");
	}
	if (!r->start)
		problem(r, field_of(r->process), "the process has no start event");
	return 0;
}

/* ---- the second pass: nodes, flows, diagram ---- */

static void
read_nodes(struct reader *r, bson_t *definition)
{
	const struct bpm_xml_element *c;
	uint32_t i = 0;
	char number[16];
	const char *k;
	bson_t nodes, node;

	BSON_APPEND_ARRAY_BEGIN(definition, "nodes", &nodes);
	for (c = r->process->children; c; c = c->next) {
		const struct element_kind *kind = KIND_OF(c, process_elements);
		const struct entry *e = lookup(r, attribute(c, "id"));

		if (!kind || kind->role != ROLE_NODE || !e || e->element != c)
			continue;
		bson_uint32_to_string(i++, &k, number, sizeof(number));
		BSON_APPEND_DOCUMENT_BEGIN(&nodes, k, &node);
		BSON_APPEND_UTF8(&node, "id", e->id);
		kind->read(r, c, &node);
		bson_append_document_end(&nodes, &node);
	}
	bson_append_array_end(definition, &nodes);
}

static void
read_flows(struct reader *r, bson_t *definition)
{
	static const char *const flow_children[] = {"conditionExpression", NULL};
	const struct bpm_xml_element *c;
	uint32_t i = 0;
	char number[16];
	const char *k;
	bson_t flows, flow;

	BSON_APPEND_ARRAY_BEGIN(definition, "flows", &flows);
	for (c = r->process->children; c; c = c->next) {
		const struct entry *e = lookup(r, attribute(c, "id"));
		const struct entry *from, *to;
		const struct bpm_xml_element *condition;
		const char *when = NULL;

		if (!e || e->element != c || e->role != ROLE_FLOW)
			continue;
		read_children(r, c, flow_children, NULL);
		condition = bpm_xml_child(c, BPM_BPMN_NS, "conditionExpression");
		from = node_ref(r, e->id, "sourceRef", attribute(c, "sourceRef"));
		to = node_ref(r, e->id, "targetRef", attribute(c, "targetRef"));
		if (to && to->element == r->start)
			problem(r, e->id, "no flow leads into the start event");
		if (condition)
			when = expression(r, condition->text);
		append_label(r, c, e->id);
		bson_uint32_to_string(i++, &k, number, sizeof(number));
		BSON_APPEND_DOCUMENT_BEGIN(&flows, k, &flow);
		BSON_APPEND_UTF8(&flow, "id", e->id);
		BSON_APPEND_UTF8(&flow, "from", from ? node_id(r, from) : "");
		BSON_APPEND_UTF8(&flow, "to", to ? node_id(r, to) : "");
		if (when && when[0])
			BSON_APPEND_UTF8(&flow, "when", when);
		bson_append_document_end(&flows, &flow);
	}
	bson_append_array_end(definition, &flows);
}

/* A BPMNShape's dc:Bounds into shapes[id] as [x, y, width, height]. */
static void
read_shape(struct reader *r, const struct bpm_xml_element *shape, const char *id, bson_t *shapes)
{
	static const char *const names[] = {"x", "y", "width", "height"};
	const struct bpm_xml_element *bounds = bpm_xml_child(shape, BPM_DC_NS, "Bounds");
	double v[4];
	bson_t list;
	size_t i;

	if (!bounds)
		return;
	for (i = 0; i < 4; i++) {
		if (!number(attribute(bounds, names[i]), &v[i])) {
			problem(r, id, "the diagram's bounds are not numbers");
			return;
		}
	}
	BSON_APPEND_ARRAY_BEGIN(shapes, id, &list);
	BSON_APPEND_DOUBLE(&list, "0", v[0]);
	BSON_APPEND_DOUBLE(&list, "1", v[1]);
	BSON_APPEND_DOUBLE(&list, "2", v[2]);
	BSON_APPEND_DOUBLE(&list, "3", v[3]);
	bson_append_array_end(shapes, &list);
}

/* A BPMNEdge's di:waypoints into edges[id] as [{"x", "y"}, ...]. */
static void
read_edge(struct reader *r, const struct bpm_xml_element *edge, const char *id, bson_t *edges)
{
	const struct bpm_xml_element *w;
	uint32_t i = 0;
	char number_key[16];
	const char *k;
	bson_t list, point;

	for (w = edge->children; w; w = w->next) {
		double x, y;

		if (!bpm_xml_is(w, BPM_DI_NS, "waypoint"))
			continue;
		if (!number(attribute(w, "x"), &x) || !number(attribute(w, "y"), &y)) {
			problem(r, id, "the diagram's waypoints are not numbers");
			return;
		}
		i++;
	}
	if (i == 0)
		return;
	i = 0;
	BSON_APPEND_ARRAY_BEGIN(edges, id, &list);
	for (w = edge->children; w; w = w->next) {
		double x = 0, y = 0;

		if (!bpm_xml_is(w, BPM_DI_NS, "waypoint"))
			continue;
		number(attribute(w, "x"), &x);
		number(attribute(w, "y"), &y);
		bson_uint32_to_string(i++, &k, number_key, sizeof(number_key));
		BSON_APPEND_DOCUMENT_BEGIN(&list, k, &point);
		BSON_APPEND_DOUBLE(&point, "x", x);
		BSON_APPEND_DOUBLE(&point, "y", y);
		bson_append_document_end(&list, &point);
	}
	bson_append_array_end(edges, &list);
}

/* Every BPMNDiagram's shapes of nodes and edges of flows; the first
 * drawing of an element counts, shapes of anything else (pools, lanes,
 * annotations) are passed over. */
static void
read_diagram(struct reader *r, bson_t *definition)
{
	const struct bpm_xml_element *d, *plane, *c;
	bson_t shapes = BSON_INITIALIZER, edges = BSON_INITIALIZER, diagram;

	for (d = r->definitions->children; d; d = d->next) {
		if (!bpm_xml_is(d, BPM_BPMNDI_NS, "BPMNDiagram"))
			continue;
		for (plane = d->children; plane; plane = plane->next) {
			if (!bpm_xml_is(plane, BPM_BPMNDI_NS, "BPMNPlane"))
				continue;
			for (c = plane->children; c; c = c->next) {
				struct entry *e = lookup(r, attribute(c, "bpmnElement"));
				bool shape = bpm_xml_is(c, BPM_BPMNDI_NS, "BPMNShape");
				bool edge = bpm_xml_is(c, BPM_BPMNDI_NS, "BPMNEdge");

				if (!e || e->drawn)
					continue;
				if (shape && (e->role == ROLE_NODE || e->role == ROLE_START)) {
					read_shape(r, c, node_id(r, e), &shapes);
					e->drawn = true;
				} else if (edge && e->role == ROLE_FLOW) {
					read_edge(r, c, e->id, &edges);
					e->drawn = true;
				}
			}
		}
	}
	if (!bson_empty(&shapes) || !bson_empty(&edges) || !bson_empty(&r->labels)) {
		BSON_APPEND_DOCUMENT_BEGIN(definition, "diagram", &diagram);
		if (!bson_empty(&shapes))
			BSON_APPEND_DOCUMENT(&diagram, "shapes", &shapes);
		if (!bson_empty(&edges))
			BSON_APPEND_DOCUMENT(&diagram, "edges", &edges);
		if (!bson_empty(&r->labels))
			BSON_APPEND_DOCUMENT(&diagram, "labels", &r->labels);
		bson_append_document_end(definition, &diagram);
	}
	bson_destroy(&shapes);
	bson_destroy(&edges);
}

/* The one process of the definitions, or NULL after a problem. */
static const struct bpm_xml_element *
the_process(struct reader *r)
{
	const struct bpm_xml_element *c, *process = NULL;

	for (c = r->definitions->children; c; c = c->next) {
		if (!bpm_xml_is(c, BPM_BPMN_NS, "process"))
			continue;
		if (process) {
			problem(r, field_of(c), "one process per file is supported");
			return NULL;
		}
		process = c;
	}
	if (!process)
		problem(r, "definitions", "the file has no process");
	return process;
}

static void
read_definition(struct reader *r, bson_t *definition)
{
	const char *key = attribute(r->process, "id"), *name = attribute(r->process, "name");

	if (!is_id(key)) {
		problem(r, field_of(r->process),
			"the process id is its key: letters, digits, _ "
			"and -, starting with a letter or _");
		return;
	}
	if (build_index(r) != 0)
		return;
	if (r->start)
		read_start_event(r, r->start);
	BSON_APPEND_UTF8(definition, "key", key);
	BSON_APPEND_UTF8(definition, "name", name && name[0] ? name : key);
	if (r->start_on)
		BSON_APPEND_UTF8(definition, "start_on", r->start_on);
	if (r->start_every)
		BSON_APPEND_UTF8(definition, "start_every", r->start_every);
	read_nodes(r, definition);
	read_flows(r, definition);
	read_diagram(r, definition);
}

int
bpm_bpmn_read(const char *xml, size_t len, bson_t *definition, bson_t *problems)
{
	struct reader r = {.problems = problems};
	struct bpm_xml_error error;
	struct bpm_xml_doc *doc;

	bson_init(definition);
	bson_init(&r.labels);
	r.nproblems = bson_count_keys(problems);
	doc = bpm_xml_doc_new(xml, len, &error);
	if (!doc) {
		if (error.line > 0)
			problem(&r, "xml", "line %d: %s", error.line, error.message);
		else
			problem(&r, "xml", "%s", error.message);
		goto out;
	}
	r.arena = &doc->arena;
	r.definitions = doc->root;
	if (!bpm_xml_is(r.definitions, BPM_BPMN_NS, "definitions")) {
		problem(&r, "xml", "line %d: the root element is not BPMN's definitions",
			r.definitions->line);
		goto out;
	}
	r.process = the_process(&r);
	if (r.process)
		read_definition(&r, definition);
out:
	if (r.nlisted > 0)
		bson_reinit(definition);
	free(r.entries);
	bson_destroy(&r.labels);
	bpm_xml_doc_free(doc);
	return r.nlisted > 0 ? -1 : 0;
}
