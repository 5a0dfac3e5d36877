"""BPMN 2.0 over the API: a file posted as application/xml becomes the same
definition as its JSON form and runs; unsupported elements are 422 naming
each; DTDs, entities and broken XML are refused and store nothing; the
export carries diagram information for every node and posts back as the
next version with the same nodes and flows."""

import xml.etree.ElementTree as ET

import pytest
import requests

from conftest import check_problem, signup, user_session
from erp_support import call
from test_bpm_flow import DEFS, INSTANCES, TASKS, instance, tasks

BPMN_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"
DI_NS = "http://www.omg.org/spec/BPMN/20100524/DI"


def bpmn(user_id, process_body=None, key="review"):
    body = process_body or f"""
    <bpmn:startEvent id="begin"/>
    <bpmn:userTask id="review" name="Review the offer">
      <bpmn:documentation>Read it &amp; decide.</bpmn:documentation>
      <bpmn:extensionElements>
        <zeebe:assignmentDefinition assignee="{user_id}"/>
        <zeebe:taskSchedule dueDate="PT2H"/>
        <zeebe:properties><zeebe:property name="form.ok" value="bool!"/></zeebe:properties>
      </bpmn:extensionElements>
    </bpmn:userTask>
    <bpmn:exclusiveGateway id="decide" default="f_no"/>
    <bpmn:endEvent id="accepted"/>
    <bpmn:endEvent id="declined"/>
    <bpmn:sequenceFlow id="f1" sourceRef="begin" targetRef="review"/>
    <bpmn:sequenceFlow id="f2" sourceRef="review" targetRef="decide"/>
    <bpmn:sequenceFlow id="f_yes" sourceRef="decide" targetRef="accepted">
      <bpmn:conditionExpression xsi:type="bpmn:tFormalExpression">=ok == true</bpmn:conditionExpression>
    </bpmn:sequenceFlow>
    <bpmn:sequenceFlow id="f_no" sourceRef="decide" targetRef="declined"/>"""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="{BPMN_NS}" xmlns:zeebe="http://camunda.org/schema/zeebe/1.0"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" id="defs" targetNamespace="http://example.com">
  <bpmn:process id="{key}" name="Review an offer" isExecutable="true">{body}
  </bpmn:process>
</bpmn:definitions>
"""


def post_xml(stack, acct, text, content_type="application/xml"):
    return requests.post(stack.base_url + DEFS, data=text.encode(),
                         headers={**acct.headers, "Content-Type": content_type}, timeout=30)


@pytest.fixture
def owner(stack):
    return signup(stack)


def test_a_bpmn_file_becomes_a_definition_that_runs(stack, owner):
    r = post_xml(stack, owner, bpmn(owner.user_id))
    assert r.status_code == 201, r.text
    d = r.json()
    assert (d["key"], d["version"], d["name"]) == ("review", 1, "Review an offer")
    review = [n for n in d["nodes"] if n["id"] == "review"][0]
    assert review["type"] == "user_task" and review["assignee"] == {"user_id": owner.user_id}
    assert review["instructions"] == "Read it & decide." and review["due_in"] == "PT2H"
    assert review["form"] == [{"key": "ok", "type": "bool", "required": True}]
    assert {"from": "start", "to": "review"} in [{k: f[k] for k in ("from", "to")} for f in d["flows"]]
    r = call(stack, owner, "POST", INSTANCES, json={"definition_key": "review"})
    assert r.status_code == 201, r.text
    inst = r.json()
    task = tasks(stack, owner, assignee="me")[0]
    assert call(stack, owner, "POST", f"{TASKS}/{task['id']}/complete", json={"data": {"ok": True}}).status_code == 200
    assert instance(stack, owner, inst["id"])["status"] == "completed"
    hist = call(stack, owner, "GET", f"{INSTANCES}/{inst['id']}/history").json()["items"]
    assert ("accepted", "entered") in [(h["node_id"], h["action"]) for h in hist]


def test_unsupported_elements_are_422_naming_each_and_nothing_is_stored(stack, owner):
    body = """
    <bpmn:startEvent id="begin"/>
    <bpmn:scriptTask id="calc" name="Calculate"/>
    <bpmn:subProcess id="inner"/>
    <bpmn:endEvent id="done"/>
    <bpmn:sequenceFlow id="f1" sourceRef="begin" targetRef="calc"/>
    <bpmn:sequenceFlow id="f2" sourceRef="calc" targetRef="done"/>"""
    r = post_xml(stack, owner, bpmn(owner.user_id, body, key="odd"))
    problems = check_problem(r, 422)["errors"]
    text = " ".join(f"{p['field']} {p['message']}" for p in problems)
    assert "scriptTask" in text and "subProcess" in text, problems
    assert call(stack, owner, "GET", f"{DEFS}/odd").status_code == 404


@pytest.mark.parametrize("text", [
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>'
    '<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL">&lol2;</bpmn:definitions>',
    '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    '<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL">&xxe;</bpmn:definitions>',
    '<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"><bpmn:process id="p">',
    'this is not xml at all',
    '',
])
def test_dtds_entities_and_broken_xml_are_refused(stack, owner, text):
    r = post_xml(stack, owner, text)
    problems = check_problem(r, 422)["errors"]
    assert problems and all(p["message"] for p in problems)
    if "DOCTYPE" in text:
        assert any("DTD" in p["message"] for p in problems), problems
    assert call(stack, owner, "GET", DEFS).json()["items"] == []


def test_other_media_types_are_415(stack, owner):
    check_problem(post_xml(stack, owner, bpmn(owner.user_id), content_type="text/plain"), 415)


def test_the_export_has_a_shape_for_every_node_and_posts_back_as_the_next_version(stack, owner):
    assert post_xml(stack, owner, bpmn(owner.user_id)).status_code == 201
    r = call(stack, owner, "GET", f"{DEFS}/review/bpmn")
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/xml")
    root = ET.fromstring(r.content)
    process = root.find(f"{{{BPMN_NS}}}process")
    ids = {el.get("id") for el in process if el.tag != f"{{{BPMN_NS}}}sequenceFlow"}
    shapes = {el.get("bpmnElement") for el in root.iter(f"{{{DI_NS}}}BPMNShape")}
    edges = {el.get("bpmnElement") for el in root.iter(f"{{{DI_NS}}}BPMNEdge")}
    flows = {el.get("id") for el in process.iter(f"{{{BPMN_NS}}}sequenceFlow")}
    assert ids and ids <= shapes, (ids, shapes)
    assert flows == edges
    again = post_xml(stack, owner, r.text)
    assert again.status_code == 201, again.text
    first = call(stack, owner, "GET", f"{DEFS}/review/versions/1").json()
    second = again.json()
    assert second["version"] == 2
    assert first["nodes"] == second["nodes"]
    assert [(f["from"], f["to"], f.get("when")) for f in first["flows"]] == \
        [(f["from"], f["to"], f.get("when")) for f in second["flows"]]


def test_a_json_definition_is_exported_laid_out(stack, owner):
    r = call(stack, owner, "POST", DEFS, json={
        "key": "plain", "nodes": [{"id": "wait", "type": "timer", "duration": "PT1H"}, {"id": "end", "type": "end"}],
        "flows": [{"from": "start", "to": "wait"}, {"from": "wait", "to": "end"}]})
    assert r.status_code == 201, r.text
    root = ET.fromstring(call(stack, owner, "GET", f"{DEFS}/plain/bpmn").content)
    shapes = {el.get("bpmnElement") for el in root.iter(f"{{{DI_NS}}}BPMNShape")}
    assert {"start", "wait", "end"} <= shapes


def test_others_cannot_read_or_write_definitions(stack, owner):
    assert post_xml(stack, owner, bpmn(owner.user_id)).status_code == 201
    stranger = signup(stack)
    check_problem(call(stack, stranger, "GET", f"{DEFS}/review/bpmn"), 404)
    rep = user_session(stack, owner, ["sales"])
    check_problem(post_xml(stack, rep, bpmn(owner.user_id)), 403)
    check_problem(call(stack, rep, "GET", f"{DEFS}/review/bpmn"), 403)
