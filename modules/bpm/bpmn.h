/* BPMN 2.0 XML <-> Trellis' JSON process definitions (CONTRACT.md, "BPM").
 *
 * The JSON form, as the engine stores it:
 *   {"key", "name", "start_on" (an event name), "start_every" (an ISO
 *    duration), "nodes": [...], "flows": [{"id", "from", "to", "when"}],
 *    "diagram": {"shapes": {"<node id>": [x, y, w, h]},
 *                "edges": {"<flow id>": [{"x", "y"}, ...]},
 *                "labels": {"<node or flow id>": "<name>"}}}
 * The start event is always the node "start" and is not listed in "nodes";
 * the other nodes are user_task, service, exclusive, parallel, wait_event,
 * timer, end, boundary_timer and boundary_error (their fields in
 * bpmn_read.c, which maps each BPMN element to one).
 *
 * The BPMN subset read: one process with startEvent (none, timer cycle
 * "R/<duration>", message), endEvent, userTask, serviceTask,
 * exclusiveGateway, parallelGateway, sequenceFlow (conditionExpression),
 * intermediateCatchEvent (timer duration, message), boundaryEvent (timer
 * duration, error) and Camunda's zeebe: extensions for assignee, candidate
 * group, task type, due date and properties; the diagram's shapes and
 * edges. Every other element of the BPMN model is a problem naming it.
 *
 * Numbers of the diagram are doubles. Positions are a diagram's own, so
 * edges are objects {"x", "y"} rather than pairs: the embedded database
 * (FerretDB 1.x) stores no arrays inside arrays. */
#ifndef BPM_BPMN_H
#define BPM_BPMN_H

#include <stddef.h>

#include <bson/bson.h>

#define BPM_BPMN_NS "http://www.omg.org/spec/BPMN/20100524/MODEL"
#define BPM_BPMNDI_NS "http://www.omg.org/spec/BPMN/20100524/DI"
#define BPM_DC_NS "http://www.omg.org/spec/DD/20100524/DC"
#define BPM_DI_NS "http://www.omg.org/spec/DD/20100524/DI"
#define BPM_ZEEBE_NS "http://camunda.org/schema/zeebe/1.0"
#define BPM_XSI_NS "http://www.w3.org/2001/XMLSchema-instance"

/* At most this many problems are listed; one more entry says there were
 * more (a file of a thousand unsupported elements is one answer, not a
 * thousand lines). */
#define BPM_BPMN_MAX_PROBLEMS 50

/* Reads xml (len bytes) into *definition (initialised by the call; caller
 * destroys) in the JSON form above. Every problem is appended to `problems`
 * (an initialised BSON array the caller owns) as {"field": "<element id or
 * path>", "message": "..."}; a problem of the XML itself has the field "xml"
 * and a message that starts with its line ("line 3: ..."). Returns 0 when
 * there was none, -1 otherwise (then *definition is empty but still
 * initialised). */
int bpm_bpmn_read(const char *xml, size_t len, bson_t *definition, bson_t *problems);

/* The definition (the JSON form, as stored; may carry "diagram") as BPMN 2.0
 * XML with a BPMNDiagram; malloc'd, NUL-terminated, length in *len. NULL when
 * out of memory. Flows without an id are written as "flow_<n>" (n: the
 * flow's place in "flows", from 1); shapes and edges the diagram does not
 * have are laid out (bpmn_write.c says how). */
char *bpm_bpmn_write(const bson_t *definition, size_t *len);

#endif
