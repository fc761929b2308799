"""A :class:`~agent.policy.check.CheckResult` → what users and CI read: text (one line per denied
edge and a summary), a JSON document (stable keys; each edge as ``agent.wire``'s edge document)
and JUnit XML (a testcase per judged edge, a failure per denial), written by the CLI and
answered by the cloud's check route. Pure: no I/O.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import defaultdict
from typing import Any

from agent import wire
from agent.model import AwsTarget, Edge, InternetTarget, Target
from agent.policy.check import CheckResult, Denial
from agent.policy.documents import PolicyRef, PolicySet

SUITE = "network-mapper check"


def target_label(target: Target) -> str:
    if isinstance(target, InternetTarget):
        return target.dns_name or ",".join(target.ips) or "internet"
    if isinstance(target, AwsTarget):
        return f"aws:{target.arn}"
    return str(target)


def edge_label(edge: Edge) -> str:
    return f"{edge.client} → {target_label(edge.target)}"


def _ports(edge: Edge) -> str:
    return "ports " + ",".join(map(str, edge.ports)) if edge.ports else "ports unknown"


def denial_line(denial: Denial) -> str:
    edge, ref = denial.edge, denial.policy
    return (
        f"DENIED {edge_label(edge)} ({_ports(edge)}) {denial.direction}:"
        f" {ref.kind} {ref.namespace}/{ref.name} ({ref.source}#{ref.document}): {denial.reason};"
        f" last seen {wire.format_time(edge.last_seen)}, count {edge.count}"
    )


def summary_line(result: CheckResult) -> str:
    denied = len({d.edge.key for d in result.denials})
    skipped = ", ".join(f"{reason} {count}" for reason, count in sorted(result.skipped.items()))
    return (
        f"{denied} of {result.evaluated} edges would be denied"
        f" ({result.ports_unknown} with unknown ports, judged on peers only;"
        f" skipped: {skipped or 'none'})"
    )


def report_text(result: CheckResult) -> str:
    return "".join(denial_line(d) + "\n" for d in result.denials) + summary_line(result) + "\n"


def _ref(ref: PolicyRef) -> dict[str, Any]:
    return {
        "kind": ref.kind,
        "namespace": ref.namespace,
        "name": ref.name,
        "source": ref.source,
        "document": ref.document,
    }


def report_json(result: CheckResult) -> dict[str, Any]:
    return {
        "apiVersion": "network-mapper/v1",
        "kind": "PolicyCheck",
        "evaluated": result.evaluated,
        "denied": len({d.edge.key for d in result.denials}),
        "portsUnknown": result.ports_unknown,
        "skipped": dict(sorted(result.skipped.items())),
        "denials": [
            {
                "direction": d.direction,
                "policy": _ref(d.policy),
                "reason": d.reason,
                "edge": wire.plain(wire.to_doc(d.edge)),
            }
            for d in result.denials
        ],
    }


def report_junit(result: CheckResult, policies: PolicySet) -> str:
    """One testsuite; a testcase per judged edge (classname: the target's namespace, or
    ``internet``), with a ``<failure>`` per denial; the policies checked are its properties."""
    by_edge: dict[Any, list[Denial]] = defaultdict(list)
    for denial in result.denials:
        by_edge[denial.edge.key].append(denial)
    failures = sum(1 for edge in result.checked if edge.key in by_edge)
    suite = ET.Element(
        "testsuite",
        name=SUITE,
        tests=str(len(result.checked)),
        failures=str(failures),
        errors="0",
        skipped=str(sum(result.skipped.values())),
    )
    properties = ET.SubElement(suite, "properties")
    for ref in policies.refs:
        ET.SubElement(properties, "property", name="policy", value=str(ref))
    for edge in result.checked:
        target = edge.target
        classname = getattr(target, "namespace", "") or "internet"
        case = ET.SubElement(suite, "testcase", classname=classname, name=edge_label(edge))
        for denial in by_edge.get(edge.key, ()):
            failure = ET.SubElement(
                case, "failure", message=f"{denial.direction}: {denial.reason}", type=denial.policy.kind
            )
            failure.text = denial_line(denial)
    suites = ET.Element("testsuites", name=SUITE, tests=suite.get("tests", "0"), failures=str(failures))
    suites.append(suite)
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"
