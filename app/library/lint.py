"""Structural checks the engine's validator leaves out: flows that lead nowhere.

SpiffWorkflow accepts a task with no outgoing sequence flow (the branch just stops)
and an element nothing leads to (it never runs). In the modeler either usually means
a flow was deleted by mistake, so the library reports both next to the validator's
errors and refuses to deploy until they are fixed. Pure lxml over the BPMN files.
"""
from __future__ import annotations

from typing import Mapping

from lxml import etree

from workflows.definitions import BPMN_NS, ValidationIssue

_NODES = ("task", "userTask", "manualTask", "scriptTask", "serviceTask", "businessRuleTask", "sendTask",
          "receiveTask", "callActivity", "subProcess", "transaction", "exclusiveGateway", "inclusiveGateway",
          "parallelGateway", "eventBasedGateway", "intermediateCatchEvent", "intermediateThrowEvent",
          "startEvent", "endEvent", "boundaryEvent")
_NEEDS_INCOMING = set(_NODES) - {"startEvent", "boundaryEvent"}
_NEEDS_OUTGOING = set(_NODES) - {"endEvent"}


def flow_issues(files: Mapping[str, bytes]) -> list[ValidationIssue]:
    issues: list[ValidationIssue] = []
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    for name, content in sorted(files.items()):
        if not name.endswith(".bpmn"):
            continue
        try:
            root = etree.fromstring(content, parser)
        except etree.XMLSyntaxError:
            continue  # the validator reports it
        for container in root.iter(f"{{{BPMN_NS}}}process", f"{{{BPMN_NS}}}subProcess", f"{{{BPMN_NS}}}transaction"):
            if container.get("isExecutable") == "false":
                continue
            flows = container.findall(f"{{{BPMN_NS}}}sequenceFlow")
            sources = {f.get("sourceRef") for f in flows}
            targets = {f.get("targetRef") for f in flows}
            for node in container:
                if not isinstance(node.tag, str):
                    continue
                tag = etree.QName(node).localname
                element_id = node.get("id")
                if tag not in _NODES or not element_id:
                    continue
                if tag in _NEEDS_INCOMING and element_id not in targets and not node.get("isForCompensation") == "true":
                    issues.append(ValidationIssue(name, node.sourceline, element_id,
                                                  f"{tag} has no incoming sequence flow: nothing ever reaches it",
                                                  "flow_broken"))
                if tag in _NEEDS_OUTGOING and element_id not in sources:
                    issues.append(ValidationIssue(name, node.sourceline, element_id,
                                                  f"{tag} has no outgoing sequence flow: the process would stop here "
                                                  "without reaching an end event", "flow_broken"))
    return issues
