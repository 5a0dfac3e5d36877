/* BPMN 2.0 XML in and out (modules/bpm/bpmn.h): a Camunda Modeler file of
 * the contract's "fulfil a won deal" process reads into the JSON form, every
 * element outside the subset is named, the XML reader refuses what could
 * hurt it (DTDs and their entities, deep nesting, large or broken input)
 * with the line, and a definition written out reads back the same - with a
 * diagram where every node has a shape. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bpm/bpmn.h"
#include "bpm/xml.h"

/* ---- helpers ---- */

static bool same_value(const bson_iter_t *a, const bson_iter_t *b);

/* Documents alike whatever the order of their keys; arrays in order;
 * numbers alike whatever their BSON type. */
static bool
same_doc(const bson_t *a, const bson_t *b)
{
	bson_iter_t ia, ib;

	if (bson_count_keys(a) != bson_count_keys(b) || !bson_iter_init(&ia, a))
		return false;
	while (bson_iter_next(&ia)) {
		if (!bson_iter_init_find(&ib, b, bson_iter_key(&ia)) || !same_value(&ia, &ib))
			return false;
	}
	return true;
}

static bool
number_of(const bson_iter_t *it, double *v)
{
	if (BSON_ITER_HOLDS_DOUBLE(it))
		*v = bson_iter_double(it);
	else if (BSON_ITER_HOLDS_INT32(it))
		*v = bson_iter_int32(it);
	else if (BSON_ITER_HOLDS_INT64(it))
		*v = (double)bson_iter_int64(it);
	else
		return false;
	return true;
}

static bool
same_value(const bson_iter_t *a, const bson_iter_t *b)
{
	double x, y;
	bson_t da, db;
	const uint8_t *data;
	uint32_t len;

	if (number_of(a, &x) && number_of(b, &y))
		return x == y;
	if (bson_iter_type(a) != bson_iter_type(b))
		return false;
	if (BSON_ITER_HOLDS_UTF8(a))
		return strcmp(bson_iter_utf8(a, NULL), bson_iter_utf8(b, NULL)) == 0;
	if (BSON_ITER_HOLDS_BOOL(a))
		return bson_iter_bool(a) == bson_iter_bool(b);
	if (BSON_ITER_HOLDS_DOCUMENT(a) || BSON_ITER_HOLDS_ARRAY(a)) {
		if (BSON_ITER_HOLDS_DOCUMENT(a))
			bson_iter_document(a, &len, &data);
		else
			bson_iter_array(a, &len, &data);
		bson_init_static(&da, data, len);
		if (BSON_ITER_HOLDS_DOCUMENT(b))
			bson_iter_document(b, &len, &data);
		else
			bson_iter_array(b, &len, &data);
		bson_init_static(&db, data, len);
		return same_doc(&da, &db);
	}
	return false;
}

static void
print_json(const char *what, const bson_t *doc)
{
	char *json = bson_as_relaxed_extended_json(doc, NULL);

	print_message("%s: %s\n", what, json ? json : "(not JSON)");
	bson_free(json);
}

static bson_t *
json(const char *text)
{
	bson_error_t error;
	bson_t *doc = bson_new_from_json((const uint8_t *)text, -1, &error);

	if (!doc)
		fail_msg("test JSON: %s", error.message);
	return doc;
}

/* doc[key] as a view, the test failing when it is not a document or array. */
static void
sub(const bson_t *doc, const char *key, bson_t *out)
{
	bson_iter_t it;
	const uint8_t *data;
	uint32_t len;

	if (!bson_iter_init_find(&it, doc, key))
		fail_msg("no %s", key);
	if (BSON_ITER_HOLDS_DOCUMENT(&it))
		bson_iter_document(&it, &len, &data);
	else if (BSON_ITER_HOLDS_ARRAY(&it))
		bson_iter_array(&it, &len, &data);
	else
		fail_msg("%s is neither a document nor an array", key);
	assert_true(bson_init_static(out, data, len));
}

static void
assert_same(const bson_t *got, const bson_t *expected)
{
	if (!same_doc(got, expected)) {
		print_json("got     ", got);
		print_json("expected", expected);
		fail_msg("not the same");
	}
}

/* Reads xml, the test failing on any problem. */
static void
read_ok(const char *xml, bson_t *definition)
{
	bson_t problems = BSON_INITIALIZER;
	int rc = bpm_bpmn_read(xml, strlen(xml), definition, &problems);

	if (rc != 0 || !bson_empty(&problems)) {
		print_json("problems", &problems);
		bson_destroy(&problems);
		fail_msg("the file was refused");
	}
	bson_destroy(&problems);
}

/* True when problems has one with this field whose message contains `part`. */
static bool
has_problem(const bson_t *problems, const char *field, const char *part)
{
	bson_iter_t it, f;

	bson_iter_init(&it, problems);
	while (bson_iter_next(&it)) {
		bson_t p;
		const uint8_t *data;
		uint32_t len;
		const char *pf, *pm;

		bson_iter_document(&it, &len, &data);
		bson_init_static(&p, data, len);
		if (!bson_iter_init_find(&f, &p, "field"))
			continue;
		pf = bson_iter_utf8(&f, NULL);
		if (!bson_iter_init_find(&f, &p, "message"))
			continue;
		pm = bson_iter_utf8(&f, NULL);
		if ((!field || strcmp(pf, field) == 0) && strstr(pm, part))
			return true;
	}
	return false;
}

/* Reads len bytes of xml expecting it refused with a problem about field
 * (NULL: any) whose message contains part; the definition must be empty. */
static void
refused_n(const char *xml, size_t len, const char *field, const char *part)
{
	bson_t definition, problems = BSON_INITIALIZER;
	int rc = bpm_bpmn_read(xml, len, &definition, &problems);

	if (rc != -1 || !has_problem(&problems, field, part)) {
		print_json("problems", &problems);
		fail_msg("expected a problem %s: ...%s...", field ? field : "(any)", part);
	}
	assert_true(bson_empty(&definition));
	bson_destroy(&definition);
	bson_destroy(&problems);
}

static void
refused(const char *xml, const char *field, const char *part)
{
	refused_n(xml, strlen(xml), field, part);
}

/* The node of a definition with this id, as a view. */
static void
node_of(const bson_t *definition, const char *id, bson_t *node)
{
	bson_t nodes;
	bson_iter_t it, f;

	sub(definition, "nodes", &nodes);
	bson_iter_init(&it, &nodes);
	while (bson_iter_next(&it)) {
		const uint8_t *data;
		uint32_t len;

		bson_iter_document(&it, &len, &data);
		bson_init_static(node, data, len);
		if (bson_iter_init_find(&f, node, "id") &&
		    strcmp(bson_iter_utf8(&f, NULL), id) == 0)
			return;
	}
	fail_msg("no node %s", id);
}

static void
assert_node(const bson_t *definition, const char *id, const char *expected_json)
{
	bson_t node, *expected = json(expected_json);

	node_of(definition, id, &node);
	assert_same(&node, expected);
	bson_destroy(expected);
}

static const char *
str_of(const bson_t *doc, const char *key)
{
	bson_iter_t it;

	if (bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_UTF8(&it))
		return bson_iter_utf8(&it, NULL);
	return NULL;
}

/* s with every `from` made `to`; malloc'd. */
static char *
replace_all(const char *s, const char *from, const char *to)
{
	size_t nf = strlen(from), nt = strlen(to), count = 0;
	const char *p;
	char *out, *w;

	for (p = strstr(s, from); p; p = strstr(p + nf, from))
		count++;
	out = malloc(strlen(s) + count * nt + 1);
	assert_non_null(out);
	w = out;
	while ((p = strstr(s, from)) != NULL) {
		memcpy(w, s, (size_t)(p - s));
		w += p - s;
		memcpy(w, to, nt);
		w += nt;
		s = p + nf;
	}
	strcpy(w, s);
	return out;
}

#define MODEL_NS "http://www.omg.org/spec/BPMN/20100524/MODEL"
#define DEFINITIONS_OPEN                                                                           \
	"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"                                             \
	"<bpmn:definitions xmlns:bpmn=\"" MODEL_NS "\"\n"                                          \
	"  xmlns:bpmndi=\"http://www.omg.org/spec/BPMN/20100524/DI\"\n"                            \
	"  xmlns:dc=\"http://www.omg.org/spec/DD/20100524/DC\"\n"                                  \
	"  xmlns:di=\"http://www.omg.org/spec/DD/20100524/DI\"\n"                                  \
	"  xmlns:zeebe=\"http://camunda.org/schema/zeebe/1.0\"\n"                                  \
	"  xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" id=\"Definitions_1\">\n"

/* A file with `messages` beside a process "p" whose start event "s" is
 * followed by `body`; malloc'd. */
static char *
file_with(const char *messages, const char *body)
{
	static const char process[] = "<bpmn:process id=\"p\" name=\"P\" isExecutable=\"true\">\n"
				      "<bpmn:startEvent id=\"s\" />\n";
	static const char tail[] = "</bpmn:process>\n</bpmn:definitions>\n";
	size_t n = strlen(DEFINITIONS_OPEN) + strlen(messages) + strlen(process) + strlen(body) +
		   strlen(tail) + 1;
	char *xml = malloc(n);

	assert_non_null(xml);
	snprintf(xml, n, "%s%s%s%s%s", DEFINITIONS_OPEN, messages, process, body, tail);
	return xml;
}

/* ---- the contract's process, as Camunda Modeler saves it ---- */

static const char won_deal[] =
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    "<bpmn:definitions xmlns:bpmn=\"http://www.omg.org/spec/BPMN/20100524/MODEL\" "
    "xmlns:bpmndi=\"http://www.omg.org/spec/BPMN/20100524/DI\" "
    "xmlns:dc=\"http://www.omg.org/spec/DD/20100524/DC\" "
    "xmlns:zeebe=\"http://camunda.org/schema/zeebe/1.0\" "
    "xmlns:di=\"http://www.omg.org/spec/DD/20100524/DI\" "
    "xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" "
    "xmlns:modeler=\"http://camunda.org/schema/modeler/1.0\" id=\"Definitions_0k2x9f1\" "
    "targetNamespace=\"http://bpmn.io/schema/bpmn\" exporter=\"Camunda Modeler\" "
    "exporterVersion=\"5.28.0\" modeler:executionPlatform=\"Camunda Cloud\" "
    "modeler:executionPlatformVersion=\"8.6.0\">\n"
    "  <bpmn:process id=\"fulfilment\" name=\"Fulfil a won deal\" isExecutable=\"true\">\n"
    "    <bpmn:documentation>From a won deal to a shipped order.</bpmn:documentation>\n"
    "    <bpmn:extensionElements>\n"
    "      <zeebe:versionTag value=\"3\" />\n"
    "    </bpmn:extensionElements>\n"
    "    <bpmn:laneSet id=\"LaneSet_1\">\n"
    "      <bpmn:lane id=\"Lane_sales\" name=\"Sales\">\n"
    "        <bpmn:flowNodeRef>approve</bpmn:flowNodeRef>\n"
    "      </bpmn:lane>\n"
    "    </bpmn:laneSet>\n"
    "    <bpmn:startEvent id=\"StartEvent_1\" name=\"Deal won\">\n"
    "      <bpmn:outgoing>Flow_start</bpmn:outgoing>\n"
    "      <bpmn:messageEventDefinition id=\"MessageEventDefinition_0won\" "
    "messageRef=\"Message_won\" />\n"
    "    </bpmn:startEvent>\n"
    "    <bpmn:userTask id=\"approve\" name=\"Approve the deal\">\n"
    "      <bpmn:documentation>Check the deal's amount &amp; terms &lt;before&gt; "
    "approving.</bpmn:documentation>\n"
    "      <bpmn:extensionElements>\n"
    "        <zeebe:userTask />\n"
    "        <zeebe:formDefinition formId=\"approve-form\" />\n"
    "        <zeebe:assignmentDefinition assignee=\"=owner_id\" />\n"
    "        <zeebe:taskSchedule dueDate=\"PT4H\" />\n"
    "        <zeebe:properties>\n"
    "          <zeebe:property name=\"form.approved\" value=\"bool!\" />\n"
    "          <zeebe:property name=\"form.note\" value=\"string\" />\n"
    "          <zeebe:property name=\"form.priority\" value=\"enum:low|high\" />\n"
    "          <zeebe:property name=\"escalate_after\" value=\"PT8H\" />\n"
    "          <zeebe:property name=\"escalate_to\" value=\"role:admin\" />\n"
    "          <zeebe:property name=\"colour\" value=\"blue\" />\n"
    "        </zeebe:properties>\n"
    "      </bpmn:extensionElements>\n"
    "      <bpmn:incoming>Flow_start</bpmn:incoming>\n"
    "      <bpmn:outgoing>Flow_decide</bpmn:outgoing>\n"
    "    </bpmn:userTask>\n"
    "    <bpmn:boundaryEvent id=\"approve_late\" name=\"A day late\" cancelActivity=\"false\" "
    "attachedToRef=\"approve\">\n"
    "      <bpmn:outgoing>Flow_late</bpmn:outgoing>\n"
    "      <bpmn:timerEventDefinition id=\"TimerEventDefinition_1\">\n"
    "        <bpmn:timeDuration xsi:type=\"bpmn:tFormalExpression\">P1D</bpmn:timeDuration>\n"
    "      </bpmn:timerEventDefinition>\n"
    "    </bpmn:boundaryEvent>\n"
    "    <bpmn:serviceTask id=\"remind\" name=\"Remind the owner\">\n"
    "      <bpmn:extensionElements>\n"
    "        <zeebe:taskDefinition type=\"crm.create_task\" retries=\"3\" />\n"
    "      </bpmn:extensionElements>\n"
    "      <bpmn:incoming>Flow_late</bpmn:incoming>\n"
    "      <bpmn:outgoing>Flow_reminded</bpmn:outgoing>\n"
    "    </bpmn:serviceTask>\n"
    "    <bpmn:endEvent id=\"reminded\">\n"
    "      <bpmn:incoming>Flow_reminded</bpmn:incoming>\n"
    "    </bpmn:endEvent>\n"
    "    <bpmn:exclusiveGateway id=\"ok\" name=\"Approved?\" default=\"Flow_no\">\n"
    "      <bpmn:incoming>Flow_decide</bpmn:incoming>\n"
    "      <bpmn:outgoing>Flow_yes</bpmn:outgoing>\n"
    "      <bpmn:outgoing>Flow_no</bpmn:outgoing>\n"
    "    </bpmn:exclusiveGateway>\n"
    "    <bpmn:serviceTask id=\"create_order\" name=\"Create the order\">\n"
    "      <bpmn:extensionElements>\n"
    "        <zeebe:taskDefinition type=\"erp.create_order_from_deal\" />\n"
    "        <zeebe:ioMapping>\n"
    "          <zeebe:output source=\"=order.id\" target=\"order_id\" />\n"
    "        </zeebe:ioMapping>\n"
    "      </bpmn:extensionElements>\n"
    "      <bpmn:incoming>Flow_yes</bpmn:incoming>\n"
    "      <bpmn:outgoing>Flow_order</bpmn:outgoing>\n"
    "    </bpmn:serviceTask>\n"
    "    <bpmn:intermediateCatchEvent id=\"paid\" name=\"Order paid\">\n"
    "      <bpmn:incoming>Flow_order</bpmn:incoming>\n"
    "      <bpmn:outgoing>Flow_paid</bpmn:outgoing>\n"
    "      <bpmn:messageEventDefinition id=\"MessageEventDefinition_1\" "
    "messageRef=\"Message_paid\" />\n"
    "    </bpmn:intermediateCatchEvent>\n"
    "    <bpmn:serviceTask id=\"ship\" name=\"Ship\">\n"
    "      <bpmn:extensionElements>\n"
    "        <zeebe:taskDefinition type=\"erp.ship_order\" />\n"
    "      </bpmn:extensionElements>\n"
    "      <bpmn:incoming>Flow_paid</bpmn:incoming>\n"
    "      <bpmn:outgoing>Flow_shipped</bpmn:outgoing>\n"
    "    </bpmn:serviceTask>\n"
    "    <bpmn:endEvent id=\"done\" name=\"Shipped\">\n"
    "      <bpmn:incoming>Flow_shipped</bpmn:incoming>\n"
    "    </bpmn:endEvent>\n"
    "    <bpmn:endEvent id=\"rejected\" name=\"Rejected\">\n"
    "      <bpmn:incoming>Flow_no</bpmn:incoming>\n"
    "    </bpmn:endEvent>\n"
    "    <bpmn:sequenceFlow id=\"Flow_start\" sourceRef=\"StartEvent_1\" targetRef=\"approve\" />\n"
    "    <bpmn:sequenceFlow id=\"Flow_decide\" sourceRef=\"approve\" targetRef=\"ok\" />\n"
    "    <bpmn:sequenceFlow id=\"Flow_yes\" name=\"yes\" sourceRef=\"ok\" "
    "targetRef=\"create_order\">\n"
    "      <bpmn:conditionExpression xsi:type=\"bpmn:tFormalExpression\">= approved == "
    "true</bpmn:conditionExpression>\n"
    "    </bpmn:sequenceFlow>\n"
    "    <bpmn:sequenceFlow id=\"Flow_no\" name=\"no\" sourceRef=\"ok\" targetRef=\"rejected\" />\n"
    "    <bpmn:sequenceFlow id=\"Flow_order\" sourceRef=\"create_order\" targetRef=\"paid\" />\n"
    "    <bpmn:sequenceFlow id=\"Flow_paid\" sourceRef=\"paid\" targetRef=\"ship\" />\n"
    "    <bpmn:sequenceFlow id=\"Flow_shipped\" sourceRef=\"ship\" targetRef=\"done\" />\n"
    "    <bpmn:sequenceFlow id=\"Flow_late\" sourceRef=\"approve_late\" targetRef=\"remind\" />\n"
    "    <bpmn:sequenceFlow id=\"Flow_reminded\" sourceRef=\"remind\" targetRef=\"reminded\" />\n"
    "    <bpmn:textAnnotation id=\"TextAnnotation_1\">\n"
    "      <bpmn:text>Approval within a day</bpmn:text>\n"
    "    </bpmn:textAnnotation>\n"
    "    <bpmn:association id=\"Association_1\" sourceRef=\"approve\" "
    "targetRef=\"TextAnnotation_1\" />\n"
    "  </bpmn:process>\n"
    "  <bpmn:message id=\"Message_won\" name=\"crm.deal.won\" />\n"
    "  <bpmn:message id=\"Message_paid\" name=\"erp.order.paid\">\n"
    "    <bpmn:extensionElements>\n"
    "      <zeebe:subscription correlationKey=\"=order_id\" />\n"
    "    </bpmn:extensionElements>\n"
    "  </bpmn:message>\n"
    "  <bpmndi:BPMNDiagram id=\"BPMNDiagram_1\">\n"
    "    <bpmndi:BPMNPlane id=\"BPMNPlane_1\" bpmnElement=\"fulfilment\">\n"
    "      <bpmndi:BPMNShape id=\"Lane_sales_di\" bpmnElement=\"Lane_sales\" "
    "isHorizontal=\"true\">\n"
    "        <dc:Bounds x=\"120\" y=\"60\" width=\"800\" height=\"300\" />\n"
    "      </bpmndi:BPMNShape>\n"
    "      <bpmndi:BPMNShape id=\"_BPMNShape_StartEvent_2\" bpmnElement=\"StartEvent_1\">\n"
    "        <dc:Bounds x=\"152\" y=\"102\" width=\"36\" height=\"36\" />\n"
    "        <bpmndi:BPMNLabel>\n"
    "          <dc:Bounds x=\"148\" y=\"145\" width=\"45\" height=\"14\" />\n"
    "        </bpmndi:BPMNLabel>\n"
    "      </bpmndi:BPMNShape>\n"
    "      <bpmndi:BPMNShape id=\"Activity_approve_di\" bpmnElement=\"approve\">\n"
    "        <dc:Bounds x=\"240\" y=\"80\" width=\"100\" height=\"80\" />\n"
    "      </bpmndi:BPMNShape>\n"
    "      <bpmndi:BPMNShape id=\"Gateway_ok_di\" bpmnElement=\"ok\" isMarkerVisible=\"true\">\n"
    "        <dc:Bounds x=\"395\" y=\"95\" width=\"50\" height=\"50\" />\n"
    "      </bpmndi:BPMNShape>\n"
    "      <bpmndi:BPMNShape id=\"Activity_create_di\" bpmnElement=\"create_order\">\n"
    "        <dc:Bounds x=\"500\" y=\"80\" width=\"100\" height=\"80\" />\n"
    "      </bpmndi:BPMNShape>\n"
    "      <bpmndi:BPMNShape id=\"Event_paid_di\" bpmnElement=\"paid\">\n"
    "        <dc:Bounds x=\"652\" y=\"102\" width=\"36\" height=\"36\" />\n"
    "      </bpmndi:BPMNShape>\n"
    "      <bpmndi:BPMNShape id=\"Activity_ship_di\" bpmnElement=\"ship\">\n"
    "        <dc:Bounds x=\"740\" y=\"80\" width=\"100\" height=\"80\" />\n"
    "      </bpmndi:BPMNShape>\n"
    "      <bpmndi:BPMNShape id=\"Event_done_di\" bpmnElement=\"done\">\n"
    "        <dc:Bounds x=\"892\" y=\"102\" width=\"36\" height=\"36\" />\n"
    "      </bpmndi:BPMNShape>\n"
    "      <bpmndi:BPMNShape id=\"Event_rejected_di\" bpmnElement=\"rejected\">\n"
    "        <dc:Bounds x=\"502\" y=\"212\" width=\"36\" height=\"36\" />\n"
    "      </bpmndi:BPMNShape>\n"
    "      <bpmndi:BPMNShape id=\"Activity_remind_di\" bpmnElement=\"remind\">\n"
    "        <dc:Bounds x=\"340\" y=\"240\" width=\"100\" height=\"80\" />\n"
    "      </bpmndi:BPMNShape>\n"
    "      <bpmndi:BPMNShape id=\"Event_reminded_di\" bpmnElement=\"reminded\">\n"
    "        <dc:Bounds x=\"492\" y=\"262\" width=\"36\" height=\"36\" />\n"
    "      </bpmndi:BPMNShape>\n"
    "      <bpmndi:BPMNShape id=\"TextAnnotation_1_di\" bpmnElement=\"TextAnnotation_1\">\n"
    "        <dc:Bounds x=\"340\" y=\"0\" width=\"100\" height=\"30\" />\n"
    "      </bpmndi:BPMNShape>\n"
    "      <bpmndi:BPMNShape id=\"Event_late_di\" bpmnElement=\"approve_late\">\n"
    "        <dc:Bounds x=\"272.5\" y=\"142\" width=\"36\" height=\"36\" />\n"
    "      </bpmndi:BPMNShape>\n"
    "      <bpmndi:BPMNEdge id=\"Flow_start_di\" bpmnElement=\"Flow_start\">\n"
    "        <di:waypoint x=\"188\" y=\"120\" />\n"
    "        <di:waypoint x=\"240\" y=\"120\" />\n"
    "      </bpmndi:BPMNEdge>\n"
    "      <bpmndi:BPMNEdge id=\"Flow_decide_di\" bpmnElement=\"Flow_decide\">\n"
    "        <di:waypoint x=\"340\" y=\"120\" />\n"
    "        <di:waypoint x=\"395\" y=\"120\" />\n"
    "      </bpmndi:BPMNEdge>\n"
    "      <bpmndi:BPMNEdge id=\"Flow_yes_di\" bpmnElement=\"Flow_yes\">\n"
    "        <di:waypoint x=\"445\" y=\"120\" />\n"
    "        <di:waypoint x=\"500\" y=\"120\" />\n"
    "        <bpmndi:BPMNLabel>\n"
    "          <dc:Bounds x=\"464\" y=\"102\" width=\"18\" height=\"14\" />\n"
    "        </bpmndi:BPMNLabel>\n"
    "      </bpmndi:BPMNEdge>\n"
    "      <bpmndi:BPMNEdge id=\"Flow_no_di\" bpmnElement=\"Flow_no\">\n"
    "        <di:waypoint x=\"420\" y=\"145\" />\n"
    "        <di:waypoint x=\"420\" y=\"230\" />\n"
    "        <di:waypoint x=\"502\" y=\"230\" />\n"
    "      </bpmndi:BPMNEdge>\n"
    "      <bpmndi:BPMNEdge id=\"Flow_order_di\" bpmnElement=\"Flow_order\">\n"
    "        <di:waypoint x=\"600\" y=\"120\" />\n"
    "        <di:waypoint x=\"652\" y=\"120\" />\n"
    "      </bpmndi:BPMNEdge>\n"
    "      <bpmndi:BPMNEdge id=\"Flow_paid_di\" bpmnElement=\"Flow_paid\">\n"
    "        <di:waypoint x=\"688\" y=\"120\" />\n"
    "        <di:waypoint x=\"740\" y=\"120\" />\n"
    "      </bpmndi:BPMNEdge>\n"
    "      <bpmndi:BPMNEdge id=\"Flow_shipped_di\" bpmnElement=\"Flow_shipped\">\n"
    "        <di:waypoint x=\"840\" y=\"120\" />\n"
    "        <di:waypoint x=\"892\" y=\"120\" />\n"
    "      </bpmndi:BPMNEdge>\n"
    "      <bpmndi:BPMNEdge id=\"Flow_late_di\" bpmnElement=\"Flow_late\">\n"
    "        <di:waypoint x=\"290\" y=\"178\" />\n"
    "        <di:waypoint x=\"290\" y=\"280\" />\n"
    "        <di:waypoint x=\"340\" y=\"280\" />\n"
    "      </bpmndi:BPMNEdge>\n"
    "      <bpmndi:BPMNEdge id=\"Flow_reminded_di\" bpmnElement=\"Flow_reminded\">\n"
    "        <di:waypoint x=\"440\" y=\"280\" />\n"
    "        <di:waypoint x=\"492\" y=\"280\" />\n"
    "      </bpmndi:BPMNEdge>\n"
    "      <bpmndi:BPMNEdge id=\"Association_1_di\" bpmnElement=\"Association_1\">\n"
    "        <di:waypoint x=\"320\" y=\"80\" />\n"
    "        <di:waypoint x=\"370\" y=\"30\" />\n"
    "      </bpmndi:BPMNEdge>\n"
    "    </bpmndi:BPMNPlane>\n"
    "  </bpmndi:BPMNDiagram>\n"
    "</bpmn:definitions>\n";

/* What won_deal is, in the JSON form (without its diagram). */
static const char won_deal_json[] =
    "{\"key\": \"fulfilment\", \"name\": \"Fulfil a won deal\", \"start_on\": \"crm.deal.won\","
    " \"nodes\": ["
    "  {\"id\": \"approve\", \"type\": \"user_task\", \"name\": \"Approve the deal\","
    "   \"instructions\": \"Check the deal's amount & terms <before> approving.\","
    "   \"assignee\": {\"field\": \"owner_id\"},"
    "   \"form\": [{\"key\": \"approved\", \"type\": \"bool\", \"required\": true},"
    "              {\"key\": \"note\", \"type\": \"string\", \"required\": false},"
    "              {\"key\": \"priority\", \"type\": \"enum\", \"required\": false,"
    "               \"options\": [\"low\", \"high\"]}],"
    "   \"due_in\": \"PT4H\", \"escalate_after\": \"PT8H\", \"escalate_to\": {\"role\": "
    "\"admin\"}},"
    "  {\"id\": \"approve_late\", \"type\": \"boundary_timer\", \"attached_to\": \"approve\","
    "   \"duration\": \"P1D\", \"interrupting\": false},"
    "  {\"id\": \"remind\", \"type\": \"service\", \"name\": \"Remind the owner\","
    "   \"action\": \"crm.create_task\"},"
    "  {\"id\": \"reminded\", \"type\": \"end\"},"
    "  {\"id\": \"ok\", \"type\": \"exclusive\", \"default\": \"rejected\"},"
    "  {\"id\": \"create_order\", \"type\": \"service\", \"name\": \"Create the order\","
    "   \"action\": \"erp.create_order_from_deal\"},"
    "  {\"id\": \"paid\", \"type\": \"wait_event\", \"event\": \"erp.order.paid\","
    "   \"correlate\": \"order_id\"},"
    "  {\"id\": \"ship\", \"type\": \"service\", \"name\": \"Ship\", \"action\": "
    "\"erp.ship_order\"},"
    "  {\"id\": \"done\", \"type\": \"end\"},"
    "  {\"id\": \"rejected\", \"type\": \"end\"}],"
    " \"flows\": ["
    "  {\"id\": \"Flow_start\", \"from\": \"start\", \"to\": \"approve\"},"
    "  {\"id\": \"Flow_decide\", \"from\": \"approve\", \"to\": \"ok\"},"
    "  {\"id\": \"Flow_yes\", \"from\": \"ok\", \"to\": \"create_order\", \"when\": \"approved "
    "== true\"},"
    "  {\"id\": \"Flow_no\", \"from\": \"ok\", \"to\": \"rejected\"},"
    "  {\"id\": \"Flow_order\", \"from\": \"create_order\", \"to\": \"paid\"},"
    "  {\"id\": \"Flow_paid\", \"from\": \"paid\", \"to\": \"ship\"},"
    "  {\"id\": \"Flow_shipped\", \"from\": \"ship\", \"to\": \"done\"},"
    "  {\"id\": \"Flow_late\", \"from\": \"approve_late\", \"to\": \"remind\"},"
    "  {\"id\": \"Flow_reminded\", \"from\": \"remind\", \"to\": \"reminded\"}]}";

/* definition without its "diagram". */
static void
without_diagram(const bson_t *definition, bson_t *out)
{
	bson_init(out);
	bson_copy_to_excluding_noinit(definition, out, "diagram", NULL);
}

static void
assert_reads_as_won_deal(const char *xml)
{
	bson_t definition, plain, *expected = json(won_deal_json);

	read_ok(xml, &definition);
	without_diagram(&definition, &plain);
	assert_same(&plain, expected);
	bson_destroy(&plain);
	bson_destroy(&definition);
	bson_destroy(expected);
}

static void
test_a_modeler_file_of_the_won_deal_process_reads_into_the_contract_form(void **state)
{
	(void)state;
	assert_reads_as_won_deal(won_deal);
}

static void
test_the_diagram_keeps_each_node_s_shape_and_each_flow_s_waypoints(void **state)
{
	bson_t definition, diagram, shapes, edges, labels;
	bson_t *expected_shapes =
	    json("{\"start\": [152, 102, 36, 36], \"approve\": [240, 80, 100, 80],"
		 " \"ok\": [395, 95, 50, 50], \"create_order\": [500, 80, 100, 80],"
		 " \"paid\": [652, 102, 36, 36], \"ship\": [740, 80, 100, 80],"
		 " \"done\": [892, 102, 36, 36], \"rejected\": [502, 212, 36, 36],"
		 " \"remind\": [340, 240, 100, 80], \"reminded\": [492, 262, 36, 36],"
		 " \"approve_late\": [272.5, 142, 36, 36]}");
	bson_t *expected_labels = json("{\"start\": \"Deal won\", \"approve_late\": \"A day late\","
				       " \"ok\": \"Approved?\", \"paid\": \"Order paid\","
				       " \"done\": \"Shipped\", \"rejected\": \"Rejected\","
				       " \"Flow_yes\": \"yes\", \"Flow_no\": \"no\"}");
	bson_t *no_edge = json("{\"Flow_no\": [{\"x\": 420, \"y\": 145}, {\"x\": 420, \"y\": 230},"
			       " {\"x\": 502, \"y\": 230}]}");
	bson_t flow_no, expected_no;
	bson_iter_t it;

	(void)state;
	read_ok(won_deal, &definition);
	sub(&definition, "diagram", &diagram);
	sub(&diagram, "shapes", &shapes);
	sub(&diagram, "edges", &edges);
	sub(&diagram, "labels", &labels);
	assert_same(&shapes, expected_shapes); /* the lane and the annotation are not nodes */
	assert_same(&labels, expected_labels);
	assert_int_equal(bson_count_keys(&edges), 9); /* not the association */
	sub(&edges, "Flow_no", &flow_no);
	sub(no_edge, "Flow_no", &expected_no);
	assert_same(&flow_no, &expected_no);
	/* numbers are doubles, whichever way the file wrote them */
	assert_true(bson_iter_init_find(&it, &shapes, "approve"));
	assert_true(bson_iter_recurse(&it, &it) && bson_iter_next(&it));
	assert_true(BSON_ITER_HOLDS_DOUBLE(&it));
	bson_destroy(&definition);
	bson_destroy(expected_shapes);
	bson_destroy(expected_labels);
	bson_destroy(no_edge);
}

static void
test_prefixes_vary_but_the_namespace_decides(void **state)
{
	char *bpmn2, *default_ns, *step, *wrong_ns;

	(void)state;
	step = replace_all(won_deal, "bpmn:", "bpmn2:");
	bpmn2 = replace_all(step, "xmlns:bpmn=", "xmlns:bpmn2=");
	free(step);
	assert_reads_as_won_deal(bpmn2);

	step = replace_all(won_deal, "<bpmn:", "<");
	free(bpmn2);
	bpmn2 = replace_all(step, "</bpmn:", "</");
	free(step);
	default_ns = replace_all(bpmn2, "xmlns:bpmn=", "xmlns=");
	assert_reads_as_won_deal(default_ns);

	wrong_ns = replace_all(won_deal, MODEL_NS, "http://example.com/not-bpmn");
	refused(wrong_ns, "xml", "the root element is not BPMN's definitions");
	free(bpmn2);
	free(default_ns);
	free(wrong_ns);
}

static void
test_elements_of_another_namespace_with_bpmn_names_are_not_read_as_bpmn(void **state)
{
	char *xml = file_with("", "<x:subProcess xmlns:x=\"urn:other\" id=\"other\" />"
				  "<bpmn:endEvent id=\"e\" />"
				  "<bpmn:sequenceFlow id=\"f\" sourceRef=\"s\" targetRef=\"e\" />");
	bson_t definition, nodes;

	(void)state;
	read_ok(xml, &definition);
	sub(&definition, "nodes", &nodes);
	assert_int_equal(bson_count_keys(&nodes), 1);
	assert_string_equal(str_of(&definition, "name"), "P");
	bson_destroy(&definition);
	free(xml);
}

/* ---- the mapping, element by element ---- */

static void
test_assignees_map_from_zeebe_assignment_definitions(void **state)
{
	char *xml = file_with(
	    "",
	    "<bpmn:userTask id=\"by_role\"><bpmn:extensionElements><zeebe:assignmentDefinition "
	    "candidateGroups=\" manager \" /></bpmn:extensionElements></bpmn:userTask>"
	    "<bpmn:userTask id=\"by_id\"><bpmn:extensionElements><zeebe:assignmentDefinition "
	    "assignee=\"5f1d7a2b3c4d5e6f7a8b9c0d\" /></bpmn:extensionElements></bpmn:userTask>"
	    "<bpmn:userTask id=\"by_field\"><bpmn:extensionElements><zeebe:assignmentDefinition "
	    "assignee=\"= deal.owner_id\" /></bpmn:extensionElements></bpmn:userTask>"
	    "<bpmn:userTask id=\"by_head\"><bpmn:extensionElements><zeebe:assignmentDefinition "
	    "assignee=\"=head_of(owner_id)\" /><zeebe:properties><zeebe:property "
	    "name=\"escalate_to\" value=\"head_of:owner_id\" /><zeebe:property "
	    "name=\"escalate_after\" value=\"P1DT2H\" /></zeebe:properties>"
	    "</bpmn:extensionElements></bpmn:userTask>"
	    "<bpmn:userTask id=\"nobody\" name=\"Anyone\" />");
	bson_t definition;

	(void)state;
	read_ok(xml, &definition);
	assert_node(&definition, "by_role",
		    "{\"id\": \"by_role\", \"type\": \"user_task\", \"assignee\": {\"role\": "
		    "\"manager\"}}");
	assert_node(&definition, "by_id",
		    "{\"id\": \"by_id\", \"type\": \"user_task\", \"assignee\": {\"user_id\": "
		    "\"5f1d7a2b3c4d5e6f7a8b9c0d\"}}");
	assert_node(&definition, "by_field",
		    "{\"id\": \"by_field\", \"type\": \"user_task\", \"assignee\": {\"field\": "
		    "\"deal.owner_id\"}}");
	assert_node(&definition, "by_head",
		    "{\"id\": \"by_head\", \"type\": \"user_task\", \"assignee\": {\"head_of\": "
		    "\"owner_id\"}, \"escalate_after\": \"P1DT2H\", \"escalate_to\": {\"head_of\": "
		    "\"owner_id\"}}");
	assert_node(&definition, "nobody",
		    "{\"id\": \"nobody\", \"type\": \"user_task\", \"name\": \"Anyone\"}");
	bson_destroy(&definition);
	free(xml);
}

static void
test_two_candidate_groups_are_one_too_many(void **state)
{
	char *xml =
	    file_with("", "<bpmn:userTask id=\"t\"><bpmn:extensionElements>"
			  "<zeebe:assignmentDefinition candidateGroups=\"sales,managers\" />"
			  "</bpmn:extensionElements></bpmn:userTask>");

	(void)state;
	refused(xml, "t", "one candidate group is supported");
	free(xml);
}

static void
test_assignees_that_name_no_user_or_variable_are_refused(void **state)
{
	static const char *const bad[] = {"assignee=\"demo\"", "assignee=\"=owner_id + 1\"",
					  "assignee=\"=head_of()\"", "candidateUsers=\"a,b\"",
					  "assignee=\"=x\" candidateGroups=\"sales\""};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char body[512], *xml;

		snprintf(body, sizeof(body),
			 "<bpmn:userTask id=\"t\"><bpmn:extensionElements>"
			 "<zeebe:assignmentDefinition %s /></bpmn:extensionElements>"
			 "</bpmn:userTask>",
			 bad[i]);
		xml = file_with("", body);
		refused(xml, "t", "");
		free(xml);
	}
}

static void
test_form_fields_carry_type_required_and_enum_options(void **state)
{
	char *xml =
	    file_with("", "<bpmn:userTask id=\"t\"><bpmn:extensionElements><zeebe:properties>"
			  "<zeebe:property name=\"form.amount\" value=\"decimal!\" />"
			  "<zeebe:property name=\"form.when\" value=\"date\" />"
			  "<zeebe:property name=\"form.count\" value=\"int\" />"
			  "<zeebe:property name=\"form.level\" value=\"enum:low|mid|high!\" />"
			  "</zeebe:properties></bpmn:extensionElements></bpmn:userTask>");
	bson_t definition;

	(void)state;
	read_ok(xml, &definition);
	assert_node(&definition, "t",
		    "{\"id\": \"t\", \"type\": \"user_task\", \"form\": ["
		    "{\"key\": \"amount\", \"type\": \"decimal\", \"required\": true},"
		    "{\"key\": \"when\", \"type\": \"date\", \"required\": false},"
		    "{\"key\": \"count\", \"type\": \"int\", \"required\": false},"
		    "{\"key\": \"level\", \"type\": \"enum\", \"required\": true,"
		    " \"options\": [\"low\", \"mid\", \"high\"]}]}");
	bson_destroy(&definition);
	free(xml);
}

static void
test_form_fields_of_unknown_types_or_names_are_refused(void **state)
{
	static const char *const bad[] = {
	    "name=\"form.x\" value=\"money\"", "name=\"form.x\" value=\"enum\"",
	    "name=\"form.x\" value=\"enum:a||b\"", "name=\"form.$x\" value=\"int\"",
	    "name=\"form.a.b\" value=\"int\"", "name=\"escalate_after\" value=\"8 hours\"",
	    "name=\"escalate_to\" value=\"admin\"",
	    /* one key twice: the JSON form has room for one */
	    "name=\"form.x\" value=\"int\" /><zeebe:property name=\"form.x\" value=\"bool\"",
	    "name=\"escalate_to\" value=\"role:a\" /><zeebe:property name=\"escalate_to\" "
	    "value=\"role:b\""};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char body[512], *xml;

		snprintf(body, sizeof(body),
			 "<bpmn:userTask id=\"t\"><bpmn:extensionElements><zeebe:properties>"
			 "<zeebe:property %s /></zeebe:properties></bpmn:extensionElements>"
			 "</bpmn:userTask>",
			 bad[i]);
		xml = file_with("", body);
		refused(xml, "t", "");
		free(xml);
	}
}

static void
test_a_timer_start_event_repeats_its_cycle(void **state)
{
	char *xml =
	    strdup(DEFINITIONS_OPEN "<bpmn:process id=\"nightly\"><bpmn:startEvent id=\"tick\">"
				    "<bpmn:timerEventDefinition><bpmn:timeCycle xsi:type=\"bpmn:"
				    "tFormalExpression\"> R/PT1H </bpmn:timeCycle>"
				    "</bpmn:timerEventDefinition></bpmn:startEvent>"
				    "<bpmn:endEvent id=\"e\" /><bpmn:sequenceFlow id=\"f\" "
				    "sourceRef=\"tick\" targetRef=\"e\" /></bpmn:process>"
				    "</bpmn:definitions>");
	char *bounded = replace_all(xml, "R/PT1H", "R5/PT1H");
	char *dated = replace_all(xml, "timeCycle", "timeDate");
	bson_t definition,
	    *expected = json("{\"key\": \"nightly\", \"name\": \"nightly\", \"start_every\": "
			     "\"PT1H\", \"nodes\": [{\"id\": \"e\", \"type\": \"end\"}],"
			     " \"flows\": [{\"id\": \"f\", \"from\": \"start\", \"to\": \"e\"}]}");

	(void)state;
	read_ok(xml, &definition);
	assert_same(&definition, expected);
	refused(bounded, "tick", "R/<duration>");
	refused(dated, "tick", "needs a timeCycle");
	bson_destroy(&definition);
	bson_destroy(expected);
	free(xml);
	free(bounded);
	free(dated);
}

static void
test_catch_events_wait_for_a_timer_or_a_message(void **state)
{
	char *xml =
	    file_with("<bpmn:message id=\"m\" name=\"erp.order.paid\" />",
		      "<bpmn:intermediateCatchEvent id=\"later\"><bpmn:timerEventDefinition>"
		      "<bpmn:timeDuration>P1D</bpmn:timeDuration></bpmn:timerEventDefinition>"
		      "</bpmn:intermediateCatchEvent>"
		      "<bpmn:intermediateCatchEvent id=\"paid\"><bpmn:messageEventDefinition "
		      "messageRef=\"m\" /></bpmn:intermediateCatchEvent>");
	char *undefined = replace_all(xml, "messageRef=\"m\"", "messageRef=\"nope\"");
	char *not_duration = replace_all(xml, "P1D", "tomorrow");
	bson_t definition;

	(void)state;
	read_ok(xml, &definition);
	assert_node(&definition, "later",
		    "{\"id\": \"later\", \"type\": \"timer\", \"duration\": "
		    "\"P1D\"}");
	assert_node(&definition, "paid",
		    "{\"id\": \"paid\", \"type\": \"wait_event\", \"event\": \"erp.order.paid\"}");
	refused(undefined, "paid", "names no message");
	refused(not_duration, "later", "not an ISO 8601 duration");
	bson_destroy(&definition);
	free(xml);
	free(undefined);
	free(not_duration);
}

static void
test_boundary_events_attach_to_tasks(void **state)
{
	char *xml = file_with(
	    "", "<bpmn:serviceTask id=\"ship\"><bpmn:extensionElements><zeebe:taskDefinition "
		"type=\"erp.ship_order\" /></bpmn:extensionElements></bpmn:serviceTask>"
		"<bpmn:boundaryEvent id=\"failed\" attachedToRef=\"ship\">"
		"<bpmn:errorEventDefinition errorRef=\"e1\" /></bpmn:boundaryEvent>"
		"<bpmn:boundaryEvent id=\"slow\" attachedToRef=\"ship\"><bpmn:timerEventDefinition>"
		"<bpmn:timeDuration>PT30M</bpmn:timeDuration></bpmn:timerEventDefinition>"
		"</bpmn:boundaryEvent>");
	char *on_start = replace_all(xml, "attachedToRef=\"ship\"><bpmn:error",
				     "attachedToRef=\"s\"><bpmn:error");
	char *message = replace_all(xml, "<bpmn:errorEventDefinition errorRef=\"e1\" />",
				    "<bpmn:messageEventDefinition />");
	bson_t definition;

	(void)state;
	read_ok(xml, &definition);
	assert_node(&definition, "failed",
		    "{\"id\": \"failed\", \"type\": \"boundary_error\", \"attached_to\": "
		    "\"ship\"}");
	assert_node(&definition, "slow",
		    "{\"id\": \"slow\", \"type\": \"boundary_timer\", \"attached_to\": \"ship\","
		    " \"duration\": \"PT30M\", \"interrupting\": true}");
	refused(on_start, "failed", "attached to a user or service task");
	refused(message, "failed", "boundaryEvent with messageEventDefinition is not supported");
	bson_destroy(&definition);
	free(xml);
	free(on_start);
	free(message);
}

static void
test_a_default_flow_must_leave_its_gateway(void **state)
{
	char *xml =
	    file_with("", "<bpmn:exclusiveGateway id=\"g\" default=\"f2\" />"
			  "<bpmn:endEvent id=\"e\" />"
			  "<bpmn:sequenceFlow id=\"f1\" sourceRef=\"s\" targetRef=\"g\" />"
			  "<bpmn:sequenceFlow id=\"f2\" sourceRef=\"s\" targetRef=\"e\" />");

	(void)state;
	refused(xml, "g", "no flow out of the gateway");
	free(xml);
}

static void
test_flows_name_nodes_of_the_process(void **state)
{
	char *xml =
	    file_with("", "<bpmn:endEvent id=\"e\" />"
			  "<bpmn:sequenceFlow id=\"f1\" sourceRef=\"s\" targetRef=\"nowhere\" />"
			  "<bpmn:sequenceFlow id=\"f2\" targetRef=\"e\" />"
			  "<bpmn:sequenceFlow id=\"f3\" sourceRef=\"e\" targetRef=\"s\" />");
	bson_t definition, problems = BSON_INITIALIZER;

	(void)state;
	assert_int_equal(bpm_bpmn_read(xml, strlen(xml), &definition, &problems), -1);
	assert_true(has_problem(&problems, "f1", "targetRef nowhere names no node"));
	assert_true(has_problem(&problems, "f2", "sourceRef is missing"));
	assert_true(has_problem(&problems, "f3", "no flow leads into the start event"));
	bson_destroy(&definition);
	bson_destroy(&problems);
	free(xml);
}

static void
test_ids_are_unique_and_fit_for_keys(void **state)
{
	char *twice = file_with("", "<bpmn:endEvent id=\"e\" /><bpmn:endEvent id=\"e\" />");
	char *dotted = file_with("", "<bpmn:endEvent id=\"e.1\" />");
	char *start = file_with("", "<bpmn:endEvent id=\"start\" />");
	char *two_starts = file_with("", "<bpmn:startEvent id=\"s2\" />");

	(void)state;
	refused(twice, "e", "more than one element");
	refused(dotted, "e.1", "an id of letters");
	refused(start, "start", "the start event's");
	refused(two_starts, "s2", "one start event is supported");
	free(twice);
	free(dotted);
	free(start);
	free(two_starts);
}

static void
test_one_process_with_a_start_event_is_needed(void **state)
{
	static const char none[] = DEFINITIONS_OPEN "</bpmn:definitions>";
	static const char two[] =
	    DEFINITIONS_OPEN "<bpmn:process id=\"a\"><bpmn:startEvent id=\"s\" /></bpmn:process>"
			     "<bpmn:process id=\"b\"><bpmn:startEvent id=\"t\" /></bpmn:process>"
			     "</bpmn:definitions>";
	static const char no_start[] =
	    DEFINITIONS_OPEN "<bpmn:process id=\"a\"><bpmn:endEvent id=\"e\" /></bpmn:process>"
			     "</bpmn:definitions>";

	(void)state;
	refused(none, "definitions", "no process");
	refused(two, "b", "one process per file");
	refused(no_start, "a", "no start event");
}

/* ---- what the subset leaves out ---- */

static void
test_each_unsupported_element_is_a_problem_naming_it(void **state)
{
	static const char *const tags[] = {"subProcess",
					   "scriptTask",
					   "inclusiveGateway",
					   "eventBasedGateway",
					   "complexGateway",
					   "callActivity",
					   "sendTask",
					   "receiveTask",
					   "manualTask",
					   "businessRuleTask",
					   "task",
					   "transaction",
					   "adHocSubProcess",
					   "intermediateThrowEvent",
					   "dataObject",
					   "dataObjectReference",
					   "dataStoreReference"};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(tags) / sizeof(tags[0]); i++) {
		char body[256], message[128], *xml;

		snprintf(body, sizeof(body), "<bpmn:%s id=\"x%zu\" />", tags[i], i);
		snprintf(message, sizeof(message), "unsupported BPMN element %s", tags[i]);
		xml = file_with("", body);
		{
			char field[16];

			snprintf(field, sizeof(field), "x%zu", i);
			refused(xml, field, message);
		}
		free(xml);
	}
}

static void
test_each_unsupported_event_definition_is_a_problem_naming_it(void **state)
{
	static const char *const definitions[] = {
	    "signalEventDefinition",	  "escalationEventDefinition", "compensateEventDefinition",
	    "conditionalEventDefinition", "linkEventDefinition",       "terminateEventDefinition",
	    "cancelEventDefinition"};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(definitions) / sizeof(definitions[0]); i++) {
		char body[256], message[128], *with_id, *without_id;

		snprintf(message, sizeof(message), "unsupported BPMN element %s", definitions[i]);
		snprintf(body, sizeof(body),
			 "<bpmn:endEvent id=\"e\"><bpmn:%s id=\"d\" /></bpmn:endEvent>",
			 definitions[i]);
		with_id = file_with("", body);
		snprintf(body, sizeof(body),
			 "<bpmn:intermediateCatchEvent id=\"c\"><bpmn:%s "
			 "/></bpmn:intermediateCatchEvent>",
			 definitions[i]);
		without_id = file_with("", body);
		refused(with_id, "d", message);
		refused(without_id, "c", message);
		free(with_id);
		free(without_id);
	}
}

static void
test_what_changes_a_task_s_meaning_is_refused_inside_it_too(void **state)
{
	char *xml = file_with("", "<bpmn:userTask id=\"t\"><bpmn:multiInstanceLoopCharacteristics "
				  "/></bpmn:userTask>"
				  "<bpmn:endEvent id=\"e\"><bpmn:messageEventDefinition />"
				  "</bpmn:endEvent>");
	bson_t definition, problems = BSON_INITIALIZER;

	(void)state;
	assert_int_equal(bpm_bpmn_read(xml, strlen(xml), &definition, &problems), -1);
	assert_true(has_problem(&problems, "multiInstanceLoopCharacteristics",
				"unsupported BPMN element multiInstanceLoopCharacteristics"));
	assert_true(has_problem(&problems, "e", "endEvent with messageEventDefinition"));
	bson_destroy(&definition);
	bson_destroy(&problems);
	free(xml);
}

static void
test_every_unsupported_element_is_listed_at_once_up_to_a_limit(void **state)
{
	char body[8192] = "", *xml;
	bson_t definition, problems = BSON_INITIALIZER;
	size_t i;

	(void)state;
	for (i = 0; i < 3; i++)
		snprintf(body + strlen(body), sizeof(body) - strlen(body),
			 "<bpmn:scriptTask id=\"s%zu\" />", i);
	xml = file_with("", body);
	assert_int_equal(bpm_bpmn_read(xml, strlen(xml), &definition, &problems), -1);
	assert_int_equal(bson_count_keys(&problems), 3);
	bson_destroy(&definition);
	bson_destroy(&problems);
	free(xml);

	body[0] = '\0';
	for (i = 0; i < 80; i++)
		snprintf(body + strlen(body), sizeof(body) - strlen(body),
			 "<bpmn:scriptTask id=\"s%zu\" />", i);
	xml = file_with("", body);
	bson_init(&problems);
	assert_int_equal(bpm_bpmn_read(xml, strlen(xml), &definition, &problems), -1);
	assert_int_equal(bson_count_keys(&problems), BPM_BPMN_MAX_PROBLEMS + 1);
	assert_true(has_problem(&problems, "definition", "more problems"));
	bson_destroy(&definition);
	bson_destroy(&problems);
	free(xml);
}

static void
test_problems_join_those_the_caller_already_has(void **state)
{
	char *xml = file_with("", "<bpmn:scriptTask id=\"x\" />");
	bson_t definition, *problems = json("[{\"field\": \"before\", \"message\": \"earlier\"}]");
	bson_iter_t it;

	(void)state;
	assert_int_equal(bpm_bpmn_read(xml, strlen(xml), &definition, problems), -1);
	assert_int_equal(bson_count_keys(problems), 2);
	assert_true(bson_iter_init_find(&it, problems, "1"));
	bson_destroy(&definition);
	bson_destroy(problems);
	free(xml);
}

/* ---- the XML reader's safety ---- */

static void
test_a_doctype_is_refused(void **state)
{
	(void)state;
	refused("<?xml version=\"1.0\"?>\n<!DOCTYPE definitions>\n<definitions />", "xml",
		"line 2: DTDs are not accepted");
	refused("<!ENTITY x \"y\"><definitions />", "xml", "DTDs are not accepted");
}

static void
test_the_billion_laughs_file_is_refused_not_expanded(void **state)
{
	static const char laughs[] =
	    "<?xml version=\"1.0\"?>\n"
	    "<!DOCTYPE lolz [\n"
	    " <!ENTITY lol \"lol\">\n"
	    " <!ENTITY lol1 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">\n"
	    " <!ENTITY lol2 \"&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;\">\n"
	    " <!ENTITY lol3 \"&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;\">\n"
	    " <!ENTITY lol4 \"&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;\">\n"
	    " <!ENTITY lol5 \"&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;\">\n"
	    " <!ENTITY lol6 \"&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;\">\n"
	    " <!ENTITY lol7 \"&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;\">\n"
	    " <!ENTITY lol8 \"&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;\">\n"
	    " <!ENTITY lol9 \"&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;\">\n"
	    "]>\n"
	    "<lolz>&lol9;</lolz>\n";

	(void)state;
	refused(laughs, "xml", "line 2: DTDs are not accepted");
	/* and without its DTD, the entity is simply unknown */
	refused("<lolz>&lol9;</lolz>", "xml", "unknown entity &lol9;");
}

static void
test_an_external_entity_is_refused(void **state)
{
	(void)state;
	refused("<!DOCTYPE d [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]><d>&xxe;</d>", "xml",
		"DTDs are not accepted");
}

static const char *
instructions_of(const char *documentation, bson_t *definition)
{
	char body[1024], *xml;
	bson_t node;

	snprintf(body, sizeof(body),
		 "<bpmn:userTask id=\"t\"><bpmn:documentation>%s</bpmn:documentation>"
		 "</bpmn:userTask>",
		 documentation);
	xml = file_with("", body);
	read_ok(xml, definition);
	free(xml);
	node_of(definition, "t", &node);
	return str_of(&node, "instructions");
}

static void
test_predefined_entities_and_character_references_are_decoded(void **state)
{
	bson_t definition;

	(void)state;
	assert_string_equal(instructions_of("&lt;&gt;&amp;&quot;&apos; caf&#233; &#x1F600;"
					    "a&#10;b",
					    &definition),
			    "<>&\"' caf\xc3\xa9 \xf0\x9f\x98\x80"
			    "a\nb");
	bson_destroy(&definition);
}

static void
test_character_references_to_no_xml_character_are_refused(void **state)
{
	static const char *const bad[] = {"&#0;",	"&#1;",	    "&#xD800;",
					  "&#x110000;", "&#xFFFE;", "&#;",
					  "&#x;",	"&#12a;",   "&#99999999999999999999;",
					  "& amp;",	"&amp",	    "&nbsp;",
					  "&#X41;"};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char body[256], *xml;

		snprintf(body, sizeof(body),
			 "<bpmn:userTask id=\"t\"><bpmn:documentation>%s</bpmn:documentation>"
			 "</bpmn:userTask>",
			 bad[i]);
		xml = file_with("", body);
		refused(xml, "xml", "line 10: ");
		free(xml);
	}
}

static void
test_cdata_sections_are_text_as_written(void **state)
{
	bson_t definition;

	(void)state;
	assert_string_equal(
	    instructions_of("Check: <![CDATA[a < b && c > d &amp; ]]]]><![CDATA[> ok]]>",
			    &definition),
	    "Check: a < b && c > d &amp; ]]> ok");
	bson_destroy(&definition);
}

static void
test_comments_and_processing_instructions_are_skipped(void **state)
{
	char *xml = replace_all(won_deal, "<bpmn:userTask id=\"approve\"",
				"<!-- the approval -- by a manager --><?render shape=\"round\"?>\n"
				"<bpmn:userTask id=\"approve\"");
	char *commented = replace_all(xml, "</bpmn:definitions>\n",
				      "</bpmn:definitions>\n<!-- saved by hand -->\n<?end?>\n");

	(void)state;
	assert_reads_as_won_deal(commented);
	refused("<a/><?xml version=\"1.0\"?>", "xml", "must come first");
	refused("<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><a/>", "xml", "only UTF-8");
	refused("<a><!-- open </a>", "xml", "comment is not closed");
	refused("<a><?pi </a>", "xml", "processing instruction is not closed");
	refused("<a><![CDATA[ open </a>", "xml", "CDATA section is not closed");
	free(xml);
	free(commented);
}

static void
test_mismatched_and_unclosed_tags_name_their_lines(void **state)
{
	(void)state;
	refused("<a>\n<b>\n</a>", "xml", "line 3: </a> does not close <b> (line 2)");
	refused("<a>\n<b>\n</b>\n", "xml", "line 4: <a> (line 1) is not closed");
	refused("<a>\n</a>\n</a>", "xml", "line 3: </a> closes no element");
	refused("<a\nb=\"1\"", "xml", "line 1: the tag <a is not closed");
	refused("<a></a", "xml", "end tag </a is not closed");
}

static void
test_garbage_and_text_outside_the_root_are_refused(void **state)
{
	(void)state;
	refused("hello", "xml", "line 1: text outside the root element");
	refused("<a/>\n\njunk", "xml", "line 3: text outside the root element");
	refused("<a/><b/>", "xml", "a second element");
	refused("<a>< b</a>", "xml", "a < that starts no tag");
	refused("<a b=\"1\"c=\"2\"/>", "xml", "garbage in the tag <a");
	refused("<a b=1 />", "xml", "not in quotes");
	refused("<a b />", "xml", "has no value");
	refused("<a b=\"1\" b='2' />", "xml", "given twice");
	refused("<a b=\"<\" />", "xml", "a < in an attribute value");
	refused("<a></>", "xml", "garbage in an end tag");
	refused("<a><!BOGUS></a>", "xml", "garbage after <!");
	refused("<x:a/>", "xml", "the prefix of x:a is not declared");
	refused("<a:b:c xmlns:a=\"urn:a\"/>", "xml", "not a name XML namespaces allow");
	refused("", "xml", "no root element");
	refused("   \n ", "xml", "no root element");
}

static void
test_bytes_that_are_not_utf8_or_xml_characters_are_refused(void **state)
{
	(void)state;
	refused("<a>\xc3\x28</a>", "xml", "not UTF-8");
	refused("<a>\xed\xa0\x80</a>", "xml", "not UTF-8"); /* a surrogate */
	refused("<a>\xc0\xaf</a>", "xml", "not UTF-8");	    /* overlong */
	refused("<a>\x01</a>", "xml", "a character XML does not allow");
	refused_n("<a>\0</a>", 8, "xml", "a character XML does not allow");
	refused("<a>\xef\xbf\xbe</a>", "xml", "not UTF-8"); /* U+FFFE */
}

static void
test_attribute_values_take_either_quote_and_are_normalised(void **state)
{
	static const char xml[] = "<a x='say \"hi\"' y=\"it's\" z=\"one\ttwo\nthree&#10;four\"/>";
	struct bpm_xml_error error;
	struct bpm_xml_doc *doc = bpm_xml_doc_new(xml, strlen(xml), &error);

	(void)state;
	assert_non_null(doc);
	assert_string_equal(bpm_xml_attribute(doc->root, "", "x"), "say \"hi\"");
	assert_string_equal(bpm_xml_attribute(doc->root, "", "y"), "it's");
	assert_string_equal(bpm_xml_attribute(doc->root, "", "z"), "one two three\nfour");
	bpm_xml_doc_free(doc);
}

static void
test_namespaces_resolve_by_scope(void **state)
{
	static const char xml[] =
	    "<r xmlns=\"urn:d\" xmlns:p=\"urn:p\">"
	    "<p:a p:k=\"1\" k=\"2\"><b xmlns=\"\"/><p:c xmlns:p=\"urn:q\"/></p:a>"
	    "<xml:z xml:lang=\"en\"/></r>";
	struct bpm_xml_error error;
	struct bpm_xml_doc *doc = bpm_xml_doc_new(xml, strlen(xml), &error);
	const struct bpm_xml_element *a, *b, *c;

	(void)state;
	assert_non_null(doc);
	assert_true(bpm_xml_is(doc->root, "urn:d", "r"));
	a = doc->root->children;
	assert_true(bpm_xml_is(a, "urn:p", "a"));
	assert_string_equal(bpm_xml_attribute(a, "urn:p", "k"), "1");
	assert_string_equal(bpm_xml_attribute(a, "", "k"), "2");
	b = a->children;
	c = b->next;
	assert_true(bpm_xml_is(b, "", "b"));
	assert_true(bpm_xml_is(c, "urn:q", "c"));
	assert_true(bpm_xml_is(a->next, "http://www.w3.org/XML/1998/namespace", "z"));
	bpm_xml_doc_free(doc);
}

/* n elements nested inside the process's extensionElements (depth 3). */
static char *
nested(int total_depth)
{
	size_t size = 4096 + (size_t)total_depth * 32;
	char *body = malloc(size), *xml;
	int i;

	assert_non_null(body);
	snprintf(body, size, "<bpmn:extensionElements>");
	for (i = 3; i < total_depth; i++)
		strcat(body, "<x:n xmlns:x=\"urn:x\">");
	for (i = 3; i < total_depth; i++)
		strcat(body, "</x:n>");
	strcat(body, "</bpmn:extensionElements><bpmn:endEvent id=\"e\" />");
	xml = file_with("", body);
	free(body);
	return xml;
}

static void
test_elements_nest_64_deep_and_no_deeper(void **state)
{
	char *ok = nested(64), *deep = nested(65);
	bson_t definition;

	(void)state;
	read_ok(ok, &definition);
	refused(deep, "xml", "nested deeper than 64");
	bson_destroy(&definition);
	free(ok);
	free(deep);
}

static void
test_input_is_limited_to_one_mebibyte(void **state)
{
	char *small = file_with("", "<bpmn:endEvent id=\"e\" />");
	size_t n = strlen(small);
	char *full = malloc(BPM_XML_MAX_INPUT + 2);
	bson_t definition;

	(void)state;
	assert_non_null(full);
	memcpy(full, small, n);
	memset(full + n, ' ', BPM_XML_MAX_INPUT + 1 - n);
	full[BPM_XML_MAX_INPUT + 1] = '\0';
	refused_n(full, BPM_XML_MAX_INPUT + 1, "xml", "larger than 1048576 bytes");
	full[BPM_XML_MAX_INPUT] = '\0';
	read_ok(full, &definition); /* exactly 1 MiB */
	bson_destroy(&definition);
	free(full);
	free(small);
}

static void
test_an_element_has_at_most_64_attributes(void **state)
{
	char xml[2048] = "<a";
	int i;

	(void)state;
	for (i = 0; i < 65; i++)
		snprintf(xml + strlen(xml), sizeof(xml) - strlen(xml), " a%d=\"\"", i);
	strcat(xml, "/>");
	refused(xml, "xml", "more than 64 attributes");
}

/* Every prefix of the Modeler file, and the file with bytes changed all
 * over: each is read or refused, never a crash or a leak (ASan watches). */
static void
test_truncated_and_mangled_files_are_refused_cleanly(void **state)
{
	static const char bytes[] = {'<', '>', '&', '"', '\'', '/', '\0', '\xff', 'x', ' ', ':'};
	size_t len = strlen(won_deal), i, j;
	char *copy = malloc(len);

	(void)state;
	assert_non_null(copy);
	for (i = 0; i + 1 < len; i++) { /* all but the last line feed is needed */
		bson_t definition, problems = BSON_INITIALIZER;

		assert_int_equal(bpm_bpmn_read(won_deal, i, &definition, &problems), -1);
		bson_destroy(&definition);
		bson_destroy(&problems);
	}
	for (i = 0; i < len; i += 3) {
		for (j = 0; j < sizeof(bytes); j++) {
			bson_t definition, problems = BSON_INITIALIZER;
			int rc;

			memcpy(copy, won_deal, len);
			copy[i] = bytes[j];
			rc = bpm_bpmn_read(copy, len, &definition, &problems);
			assert_true(rc == 0 || rc == -1);
			assert_true(rc == 0 ? bson_empty(&problems) : !bson_empty(&problems));
			bson_destroy(&definition);
			bson_destroy(&problems);
		}
	}
	free(copy);
}

/* ---- writing ---- */

/* The contract's process with every node type and every assignee kind. */
static const char every_node_json[] =
    "{\"key\": \"fulfilment\", \"name\": \"Fulfil a won deal\", \"start_on\": \"crm.deal.won\","
    " \"nodes\": ["
    "  {\"id\": \"approve\", \"type\": \"user_task\", \"name\": \"Approve <now> & \\\"then\\\"\","
    "   \"instructions\": \"Check the amount & the terms:\\n  <all> of \\\"them\\\", 'now'\\r\\n"
    "\\tthen approve.\","
    "   \"assignee\": {\"role\": \"manager\"},"
    "   \"form\": [{\"key\": \"approved\", \"type\": \"bool\", \"required\": true},"
    "              {\"key\": \"level\", \"type\": \"enum\", \"required\": false,"
    "               \"options\": [\"a\", \"b & c\"]}],"
    "   \"due_in\": \"PT4H\", \"escalate_after\": \"PT8H\", \"escalate_to\": {\"role\": "
    "\"admin\"}},"
    "  {\"id\": \"late\", \"type\": \"boundary_timer\", \"attached_to\": \"approve\","
    "   \"duration\": \"P1D\", \"interrupting\": false},"
    "  {\"id\": \"cut\", \"type\": \"boundary_timer\", \"attached_to\": \"approve\","
    "   \"duration\": \"P2D\", \"interrupting\": true},"
    "  {\"id\": \"ok\", \"type\": \"exclusive\", \"default\": \"reject\"},"
    "  {\"id\": \"both\", \"type\": \"parallel\"},"
    "  {\"id\": \"ship\", \"type\": \"service\", \"name\": \"Ship\", \"action\": "
    "\"erp.ship_order\"},"
    "  {\"id\": \"failed\", \"type\": \"boundary_error\", \"attached_to\": \"ship\"},"
    "  {\"id\": \"confirm\", \"type\": \"service\", \"action\": \"erp.confirm_order\"},"
    "  {\"id\": \"join\", \"type\": \"parallel\"},"
    "  {\"id\": \"paid\", \"type\": \"wait_event\", \"event\": \"erp.order.paid\","
    "   \"correlate\": \"order_id\"},"
    "  {\"id\": \"paid_again\", \"type\": \"wait_event\", \"event\": \"erp.order.paid\","
    "   \"correlate\": \"order_id\"},"
    "  {\"id\": \"later\", \"type\": \"timer\", \"duration\": \"P1DT12H\"},"
    "  {\"id\": \"by_id\", \"type\": \"user_task\", \"name\": \"By id\","
    "   \"assignee\": {\"user_id\": \"5f1d7a2b3c4d5e6f7a8b9c0d\"},"
    "   \"escalate_to\": {\"user_id\": \"5f1d7a2b3c4d5e6f7a8b9c0e\"}},"
    "  {\"id\": \"by_head\", \"type\": \"user_task\", \"name\": \"By head\","
    "   \"assignee\": {\"head_of\": \"owner_id\"}, \"escalate_to\": {\"field\": "
    "\"manager_id\"}},"
    "  {\"id\": \"by_field\", \"type\": \"user_task\", \"name\": \"By field\","
    "   \"assignee\": {\"field\": \"owner_id\"}},"
    "  {\"id\": \"reject\", \"type\": \"end\"},"
    "  {\"id\": \"done\", \"type\": \"end\"}],"
    " \"flows\": ["
    "  {\"id\": \"f1\", \"from\": \"start\", \"to\": \"approve\"},"
    "  {\"id\": \"f2\", \"from\": \"approve\", \"to\": \"ok\"},"
    "  {\"id\": \"f3\", \"from\": \"ok\", \"to\": \"both\","
    "   \"when\": \"approved == true and amount < 1000 and note != \\\"a & b\\\"\"},"
    "  {\"id\": \"f4\", \"from\": \"ok\", \"to\": \"reject\"},"
    "  {\"id\": \"f5\", \"from\": \"both\", \"to\": \"ship\"},"
    "  {\"id\": \"f6\", \"from\": \"both\", \"to\": \"confirm\"},"
    "  {\"id\": \"f7\", \"from\": \"ship\", \"to\": \"join\"},"
    "  {\"id\": \"f8\", \"from\": \"confirm\", \"to\": \"join\"},"
    "  {\"id\": \"f9\", \"from\": \"join\", \"to\": \"paid\"},"
    "  {\"id\": \"f10\", \"from\": \"paid\", \"to\": \"later\"},"
    "  {\"id\": \"f11\", \"from\": \"later\", \"to\": \"paid_again\"},"
    "  {\"id\": \"f12\", \"from\": \"paid_again\", \"to\": \"by_id\"},"
    "  {\"id\": \"f13\", \"from\": \"by_id\", \"to\": \"by_head\"},"
    "  {\"id\": \"f14\", \"from\": \"by_head\", \"to\": \"by_field\"},"
    "  {\"id\": \"f15\", \"from\": \"by_field\", \"to\": \"done\"},"
    "  {\"id\": \"f16\", \"from\": \"late\", \"to\": \"reject\"},"
    "  {\"id\": \"f17\", \"from\": \"cut\", \"to\": \"reject\"},"
    "  {\"id\": \"f18\", \"from\": \"failed\", \"to\": \"reject\"}]}";

static char *
write_ok(const bson_t *definition, size_t *len)
{
	char *xml = bpm_bpmn_write(definition, len);

	assert_non_null(xml);
	assert_int_equal(strlen(xml), *len);
	return xml;
}

static void
assert_same_part(const bson_t *got, const bson_t *expected, const char *key)
{
	bson_t a, b;

	sub(got, key, &a);
	sub(expected, key, &b);
	assert_same(&a, &b);
}

static void
test_a_definition_written_reads_back_the_same(void **state)
{
	bson_t *definition = json(every_node_json), back;
	size_t len;
	char *xml;

	(void)state;
	xml = write_ok(definition, &len);
	read_ok(xml, &back);
	assert_same_part(&back, definition, "nodes");
	assert_same_part(&back, definition, "flows");
	assert_string_equal(str_of(&back, "key"), "fulfilment");
	assert_string_equal(str_of(&back, "name"), "Fulfil a won deal");
	assert_string_equal(str_of(&back, "start_on"), "crm.deal.won");
	/* one message for the two waits on the same event */
	assert_non_null(strstr(xml, "name=\"erp.order.paid\""));
	assert_null(strstr(strstr(xml, "name=\"erp.order.paid\"") + 1, "name=\"erp.order.paid\""));
	bson_destroy(&back);
	bson_destroy(definition);
	free(xml);
}

static void
test_text_is_escaped_on_the_way_out(void **state)
{
	bson_t *definition = json(every_node_json);
	size_t len;
	char *xml;

	(void)state;
	xml = write_ok(definition, &len);
	assert_non_null(strstr(xml, "name=\"Approve &lt;now&gt; &amp; &quot;then&quot;\""));
	assert_non_null(strstr(xml, "&lt;all&gt; of &quot;them&quot;, &apos;now&apos;&#13;&#10;"
				    "&#9;then"));
	assert_non_null(strstr(xml, ">=approved == true and amount &lt; 1000 and note != "
				    "&quot;a &amp; b&quot;</bpmn:conditionExpression>"));
	bson_destroy(definition);
	free(xml);
}

static void
test_a_modeler_file_survives_a_round_trip_with_its_diagram(void **state)
{
	bson_t first, second;
	size_t len;
	char *xml;

	(void)state;
	read_ok(won_deal, &first);
	xml = write_ok(&first, &len);
	read_ok(xml, &second);
	assert_same(&second, &first); /* nodes, flows, shapes, edges and labels */
	bson_destroy(&first);
	bson_destroy(&second);
	free(xml);
}

static void
test_a_timer_start_is_written_as_its_cycle(void **state)
{
	bson_t *definition =
	    json("{\"key\": \"nightly\", \"name\": \"Nightly\", \"start_every\": "
		 "\"PT1H\", \"nodes\": [{\"id\": \"e\", \"type\": \"end\"}],"
		 " \"flows\": [{\"id\": \"f\", \"from\": \"start\", \"to\": \"e\"}]}");
	bson_t back, plain;
	size_t len;
	char *xml;

	(void)state;
	xml = write_ok(definition, &len);
	assert_non_null(strstr(xml, ">R/PT1H</bpmn:timeCycle>"));
	read_ok(xml, &back);
	without_diagram(&back, &plain);
	assert_same(&plain, definition);
	bson_destroy(&back);
	bson_destroy(&plain);
	bson_destroy(definition);
	free(xml);
}

static void
test_flows_without_an_id_are_numbered_by_their_place(void **state)
{
	bson_t *definition = json("{\"key\": \"k\", \"name\": \"K\", \"nodes\": ["
				  " {\"id\": \"a\", \"type\": \"end\"}, {\"id\": \"flow_2\", "
				  "\"type\": \"parallel\"}],"
				  " \"flows\": [{\"from\": \"start\", \"to\": \"flow_2\"},"
				  "  {\"from\": \"flow_2\", \"to\": \"a\"}]}");
	bson_t *expected = json("[{\"id\": \"flow_1\", \"from\": \"start\", \"to\": \"flow_2\"},"
				" {\"id\": \"flow_2_2\", \"from\": \"flow_2\", \"to\": \"a\"}]");
	bson_t back, flows;
	size_t len;
	char *xml;

	(void)state;
	xml = write_ok(definition, &len);
	read_ok(xml, &back);
	sub(&back, "flows", &flows);
	assert_same(&flows, expected);
	bson_destroy(&back);
	bson_destroy(definition);
	bson_destroy(expected);
	free(xml);
}

/* The written diagram, read with the XML reader. */
struct drawing {
	struct bpm_xml_doc *doc;
	const struct bpm_xml_element *plane;
};

static void
drawing_of(const char *xml, size_t len, struct drawing *d)
{
	struct bpm_xml_error error;
	const struct bpm_xml_element *diagram;

	d->doc = bpm_xml_doc_new(xml, len, &error);
	if (!d->doc)
		fail_msg("line %d: %s", error.line, error.message);
	diagram =
	    bpm_xml_child(d->doc->root, "http://www.omg.org/spec/BPMN/20100524/DI", "BPMNDiagram");
	assert_non_null(diagram);
	d->plane = bpm_xml_child(diagram, "http://www.omg.org/spec/BPMN/20100524/DI", "BPMNPlane");
	assert_non_null(d->plane);
}

static int
count_drawn(const struct drawing *d, const char *tag, const char *id)
{
	const struct bpm_xml_element *c;
	int n = 0;

	for (c = d->plane->children; c; c = c->next) {
		const char *e = bpm_xml_attribute(c, "", "bpmnElement");

		if (strcmp(c->name, tag) == 0 && e && strcmp(e, id) == 0)
			n++;
	}
	return n;
}

static const struct bpm_xml_element *
drawn(const struct drawing *d, const char *tag, const char *id)
{
	const struct bpm_xml_element *c;

	for (c = d->plane->children; c; c = c->next) {
		const char *e = bpm_xml_attribute(c, "", "bpmnElement");

		if (strcmp(c->name, tag) == 0 && e && strcmp(e, id) == 0)
			return c;
	}
	fail_msg("no %s for %s", tag, id);
	return NULL;
}

static void
bounds(const struct drawing *d, const char *id, double v[4])
{
	const struct bpm_xml_element *b = bpm_xml_child(
	    drawn(d, "BPMNShape", id), "http://www.omg.org/spec/DD/20100524/DC", "Bounds");

	assert_non_null(b);
	v[0] = atof(bpm_xml_attribute(b, "", "x"));
	v[1] = atof(bpm_xml_attribute(b, "", "y"));
	v[2] = atof(bpm_xml_attribute(b, "", "width"));
	v[3] = atof(bpm_xml_attribute(b, "", "height"));
}

/* The edge's waypoints into xy (2 per point); how many points. */
static int
waypoints(const struct drawing *d, const char *flow, double *xy, int max)
{
	const struct bpm_xml_element *c;
	int n = 0;

	for (c = drawn(d, "BPMNEdge", flow)->children; c && n < max; c = c->next) {
		xy[2 * n] = atof(bpm_xml_attribute(c, "", "x"));
		xy[2 * n + 1] = atof(bpm_xml_attribute(c, "", "y"));
		n++;
	}
	return n;
}

static void
test_a_definition_without_a_diagram_gets_a_shape_for_every_node(void **state)
{
	bson_t *definition = json(every_node_json), nodes, flows;
	bson_iter_t it, f;
	struct drawing d;
	double start[4], approve[4], ok[4], late[4], cut[4], xy[8];
	size_t len;
	char *xml;
	int n;

	(void)state;
	xml = write_ok(definition, &len);
	drawing_of(xml, len, &d);
	assert_int_equal(count_drawn(&d, "BPMNShape", "start"), 1);
	sub(definition, "nodes", &nodes);
	bson_iter_init(&it, &nodes);
	while (bson_iter_next(&it)) {
		assert_true(bson_iter_recurse(&it, &f) && bson_iter_find(&f, "id"));
		assert_int_equal(count_drawn(&d, "BPMNShape", bson_iter_utf8(&f, NULL)), 1);
	}
	sub(definition, "flows", &flows);
	bson_iter_init(&it, &flows);
	while (bson_iter_next(&it)) {
		assert_true(bson_iter_recurse(&it, &f) && bson_iter_find(&f, "id"));
		assert_int_equal(count_drawn(&d, "BPMNEdge", bson_iter_utf8(&f, NULL)), 1);
		assert_true(waypoints(&d, bson_iter_utf8(&f, NULL), xy, 4) >= 2);
	}

	/* the start in the first cell, centred; the task in the next layer */
	bounds(&d, "start", start);
	assert_true(start[0] == 132 && start[1] == 122 && start[2] == 36 && start[3] == 36);
	bounds(&d, "approve", approve);
	assert_true(approve[0] == 280 && approve[1] == 100 && approve[2] == 100 &&
		    approve[3] == 80);
	bounds(&d, "ok", ok);
	assert_true(ok[0] == 100 + 2 * 180 + 25 && ok[2] == 50);
	/* boundary events sit on the bottom edge of their task, side by side */
	bounds(&d, "late", late);
	bounds(&d, "cut", cut);
	assert_true(late[1] + late[3] / 2 == approve[1] + approve[3]);
	assert_true(cut[1] == late[1] && cut[0] > late[0] + late[2] - 1);
	assert_true(late[0] >= approve[0] && cut[0] + cut[2] <= approve[0] + approve[2]);
	/* an edge from the source's right middle to the target's left middle */
	n = waypoints(&d, "f1", xy, 4);
	assert_int_equal(n, 2);
	assert_true(xy[0] == 168 && xy[1] == 140 && xy[2] == 280 && xy[3] == 140);
	bpm_xml_doc_free(d.doc);
	bson_destroy(definition);
	free(xml);
}

static void
test_the_layout_puts_a_node_after_its_longest_path_and_ignores_loops(void **state)
{
	bson_t *definition =
	    json("{\"key\": \"k\", \"name\": \"K\", \"nodes\": ["
		 " {\"id\": \"a\", \"type\": \"service\", \"action\": \"x\"},"
		 " {\"id\": \"b\", \"type\": \"service\", \"action\": \"x\"},"
		 " {\"id\": \"c\", \"type\": \"service\", \"action\": \"x\"},"
		 " {\"id\": \"d\", \"type\": \"service\", \"action\": \"x\"}],"
		 " \"flows\": [{\"id\": \"f1\", \"from\": \"start\", \"to\": \"a\"},"
		 "  {\"id\": \"f2\", \"from\": \"a\", \"to\": \"b\"},"
		 "  {\"id\": \"f3\", \"from\": \"b\", \"to\": \"c\"},"
		 "  {\"id\": \"f4\", \"from\": \"start\", \"to\": \"c\"},"
		 "  {\"id\": \"f5\", \"from\": \"c\", \"to\": \"a\"},"
		 "  {\"id\": \"f6\", \"from\": \"start\", \"to\": \"d\"}]}");
	struct drawing d;
	double a[4], b[4], c[4], dd[4];
	size_t len;
	char *xml;

	(void)state;
	xml = write_ok(definition, &len);
	drawing_of(xml, len, &d);
	bounds(&d, "a", a);
	bounds(&d, "b", b);
	bounds(&d, "c", c);
	bounds(&d, "d", dd);
	assert_true(a[0] == 280 && b[0] == 460 && c[0] == 640);
	assert_true(dd[0] == 280 && dd[1] == 220); /* second in its layer */
	bpm_xml_doc_free(d.doc);
	bson_destroy(definition);
	free(xml);
}

static void
test_the_diagram_s_own_positions_are_kept(void **state)
{
	bson_t *definition = json(
	    "{\"key\": \"k\", \"name\": \"K\", \"nodes\": [{\"id\": \"a\", \"type\": \"end\"}],"
	    " \"flows\": [{\"id\": \"f\", \"from\": \"start\", \"to\": \"a\"}],"
	    " \"diagram\": {\"shapes\": {\"a\": [10, 20.5, 36, 36]},"
	    "  \"edges\": {\"f\": [{\"x\": 1, \"y\": 2}, {\"x\": 3.25, \"y\": 4}]}}}");
	struct drawing d;
	double a[4], start[4], xy[8];
	size_t len;
	char *xml;

	(void)state;
	xml = write_ok(definition, &len);
	drawing_of(xml, len, &d);
	bounds(&d, "a", a);
	assert_true(a[0] == 10 && a[1] == 20.5 && a[2] == 36 && a[3] == 36);
	bounds(&d, "start", start); /* not in the diagram: laid out */
	assert_true(start[0] == 132 && start[1] == 122);
	assert_int_equal(waypoints(&d, "f", xy, 4), 2);
	assert_true(xy[0] == 1 && xy[1] == 2 && xy[2] == 3.25 && xy[3] == 4);
	bpm_xml_doc_free(d.doc);
	bson_destroy(definition);
	free(xml);
}

static void
test_an_empty_definition_is_still_a_document(void **state)
{
	bson_t empty = BSON_INITIALIZER;
	struct drawing d;
	size_t len;
	char *xml;

	(void)state;
	xml = write_ok(&empty, &len);
	drawing_of(xml, len, &d);
	assert_int_equal(count_drawn(&d, "BPMNShape", "start"), 1);
	bpm_xml_doc_free(d.doc);
	free(xml);
}

/* What the writer is given is stored and checked JSON; should it not be,
 * the output is still well-formed XML (wrong types passed over, unknown
 * node types a plain task, characters XML cannot carry replaced). */
static void
test_a_malformed_definition_is_still_written_as_well_formed_xml(void **state)
{
	static const char *const definitions[] = {
	    "{}",
	    "{\"key\": 5, \"nodes\": \"x\", \"flows\": {\"a\": 1}, \"diagram\": []}",
	    "{\"key\": \"k\", \"nodes\": [1, {\"type\": \"end\"},"
	    " {\"id\": \"a\", \"type\": \"boundary_timer\", \"attached_to\": \"a\"},"
	    " {\"id\": \"b\", \"type\": \"boundary_error\", \"attached_to\": \"start\"},"
	    " {\"id\": \"c\", \"type\": \"weird\", \"name\": \"\\u0001bad\"},"
	    " {\"id\": \"c\", \"type\": \"end\"}, {\"id\": \"start\", \"type\": \"end\"}],"
	    " \"flows\": [{\"from\": \"a\", \"to\": \"zz\"}, {\"from\": \"c\", \"to\": \"c\"},"
	    "  {\"from\": \"c\", \"to\": \"start\"}, 7, {\"id\": 3}],"
	    " \"diagram\": {\"shapes\": {\"a\": [1, 2, 3], \"c\": [\"x\", 1, 2, 3], \"b\": 4},"
	    "  \"edges\": {\"flow_1\": [[1, 2], [3]], \"flow_2\": [{\"x\": 1}], \"flow_3\": 1},"
	    "  \"labels\": {\"start\": 5}}}",
	};
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(definitions) / sizeof(definitions[0]); i++) {
		bson_t *definition = json(definitions[i]);
		struct drawing d;
		size_t len;
		char *xml = write_ok(definition, &len);

		drawing_of(xml, len, &d);
		assert_int_equal(count_drawn(&d, "BPMNShape", "start"), 1);
		if (i == 2)
			assert_non_null(strstr(xml, "name=\"\xef\xbf\xbd"
						    "bad\""));
		bpm_xml_doc_free(d.doc);
		bson_destroy(definition);
		free(xml);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(
		test_a_modeler_file_of_the_won_deal_process_reads_into_the_contract_form),
	    cmocka_unit_test(test_the_diagram_keeps_each_node_s_shape_and_each_flow_s_waypoints),
	    cmocka_unit_test(test_prefixes_vary_but_the_namespace_decides),
	    cmocka_unit_test(
		test_elements_of_another_namespace_with_bpmn_names_are_not_read_as_bpmn),
	    cmocka_unit_test(test_assignees_map_from_zeebe_assignment_definitions),
	    cmocka_unit_test(test_two_candidate_groups_are_one_too_many),
	    cmocka_unit_test(test_assignees_that_name_no_user_or_variable_are_refused),
	    cmocka_unit_test(test_form_fields_carry_type_required_and_enum_options),
	    cmocka_unit_test(test_form_fields_of_unknown_types_or_names_are_refused),
	    cmocka_unit_test(test_a_timer_start_event_repeats_its_cycle),
	    cmocka_unit_test(test_catch_events_wait_for_a_timer_or_a_message),
	    cmocka_unit_test(test_boundary_events_attach_to_tasks),
	    cmocka_unit_test(test_a_default_flow_must_leave_its_gateway),
	    cmocka_unit_test(test_flows_name_nodes_of_the_process),
	    cmocka_unit_test(test_ids_are_unique_and_fit_for_keys),
	    cmocka_unit_test(test_one_process_with_a_start_event_is_needed),
	    cmocka_unit_test(test_each_unsupported_element_is_a_problem_naming_it),
	    cmocka_unit_test(test_each_unsupported_event_definition_is_a_problem_naming_it),
	    cmocka_unit_test(test_what_changes_a_task_s_meaning_is_refused_inside_it_too),
	    cmocka_unit_test(test_every_unsupported_element_is_listed_at_once_up_to_a_limit),
	    cmocka_unit_test(test_problems_join_those_the_caller_already_has),
	    cmocka_unit_test(test_a_doctype_is_refused),
	    cmocka_unit_test(test_the_billion_laughs_file_is_refused_not_expanded),
	    cmocka_unit_test(test_an_external_entity_is_refused),
	    cmocka_unit_test(test_predefined_entities_and_character_references_are_decoded),
	    cmocka_unit_test(test_character_references_to_no_xml_character_are_refused),
	    cmocka_unit_test(test_cdata_sections_are_text_as_written),
	    cmocka_unit_test(test_comments_and_processing_instructions_are_skipped),
	    cmocka_unit_test(test_mismatched_and_unclosed_tags_name_their_lines),
	    cmocka_unit_test(test_garbage_and_text_outside_the_root_are_refused),
	    cmocka_unit_test(test_bytes_that_are_not_utf8_or_xml_characters_are_refused),
	    cmocka_unit_test(test_attribute_values_take_either_quote_and_are_normalised),
	    cmocka_unit_test(test_namespaces_resolve_by_scope),
	    cmocka_unit_test(test_elements_nest_64_deep_and_no_deeper),
	    cmocka_unit_test(test_input_is_limited_to_one_mebibyte),
	    cmocka_unit_test(test_an_element_has_at_most_64_attributes),
	    cmocka_unit_test(test_truncated_and_mangled_files_are_refused_cleanly),
	    cmocka_unit_test(test_a_definition_written_reads_back_the_same),
	    cmocka_unit_test(test_text_is_escaped_on_the_way_out),
	    cmocka_unit_test(test_a_modeler_file_survives_a_round_trip_with_its_diagram),
	    cmocka_unit_test(test_a_timer_start_is_written_as_its_cycle),
	    cmocka_unit_test(test_flows_without_an_id_are_numbered_by_their_place),
	    cmocka_unit_test(test_a_definition_without_a_diagram_gets_a_shape_for_every_node),
	    cmocka_unit_test(test_the_layout_puts_a_node_after_its_longest_path_and_ignores_loops),
	    cmocka_unit_test(test_the_diagram_s_own_positions_are_kept),
	    cmocka_unit_test(test_an_empty_definition_is_still_a_document),
	    cmocka_unit_test(test_a_malformed_definition_is_still_written_as_well_formed_xml),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
