"""What an edge document may hold beyond what its structs check: the system's input bounds.

Decoded documents (:class:`agent.wire.EdgeDoc`) come here from the cloud's ingest
(:mod:`cloud_functions.handlers.ingest`: each problem becomes a 422 detail naming its field); the
mapper's report conversion (:mod:`agent.mapper.api.mutations`) applies the same bounds to report
entries, skipping and counting what breaks them. The structs check in C what a decoder can
(counts in [0, 2**53), ports, list lengths); :func:`problems` checks the rest: non-empty names,
string lengths, IPs that parse, times (the provenance's too) within :data:`agent.wiretime.RANGE`.
"""

from __future__ import annotations

import ipaddress
from datetime import datetime
from functools import lru_cache

from agent.wire import EdgeDoc, InternetTargetDoc, WorkloadTargetDoc
from agent.wiretime import EARLIEST, END, RANGE

MAX_NAME = 253
"""Names and namespaces (DNS subdomain names), DNS names and Service names: at most this long."""
MAX_TEXT = 2048
"""An ARN, an HTTP path, a Kafka topic, an AWS action, a kind, an HTTP method: at most this long."""
MAX_IPS = 64
"""IPs of one Internet target."""

Loc = tuple[str | int, ...]


@lru_cache(maxsize=65536)
def is_ip(text: str) -> bool:
    """Whether ``text`` is an IPv4 or IPv6 address (cached: reports repeat a cluster's few IPs)."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def name_problem(value: str, *, empty: bool = False, bound: int = MAX_NAME) -> str:
    """Why ``value`` is no name (empty: unless allowed; longer than ``bound``), or ``""``: the rule
    for documents here and for report entries (:mod:`agent.mapper.api.mutations`)."""
    if not value and not empty:
        return "must not be empty"
    return f"longer than {bound} characters" if len(value) > bound else ""


def problems(doc: EdgeDoc) -> list[tuple[Loc, str]]:
    """What is wrong with a decoded document beyond what its structs check, each with where (a
    path into the document: ``("client", "name")``, ``("target", "ips", 2)``); empty when nothing.
    An Internet target's ``dnsName`` may be empty (an IP-only target)."""
    ips: list[tuple[Loc, str]] = []
    fields: list[tuple[Loc, str]] = [
        (("client", "namespace"), name_problem(doc.client.namespace)),
        (("client", "name"), name_problem(doc.client.name)),
        (("client", "kind"), name_problem(doc.client.kind, empty=True, bound=MAX_TEXT)),
        (("targetService",), name_problem(doc.targetService, empty=True)),
    ]
    t = doc.target
    if type(t) is WorkloadTargetDoc:
        fields += [
            (("target", "namespace"), name_problem(t.namespace)),
            (("target", "name"), name_problem(t.name)),
            (("target", "kind"), name_problem(t.kind, empty=True, bound=MAX_TEXT)),
        ]
    elif type(t) is InternetTargetDoc:
        fields.append((("target", "dnsName"), name_problem(t.dnsName, empty=True)))
        if len(t.ips) > MAX_IPS:
            ips.append((("target", "ips"), f"more than {MAX_IPS} IPs"))
        ips += [(("target", "ips", i), "not an IP address") for i, ip in enumerate(t.ips) if not is_ip(ip)]
    else:
        arn = t.arn  # type: ignore[union-attr]  # the union's last member
        fields.append((("target", "arn"), name_problem(arn, bound=MAX_TEXT)))
    found = [(loc, why) for loc, why in fields if why] + ips
    named = (
        ("http", [(r.path, (*r.methods, *r.principals)) for r in doc.http]),
        ("kafkaTopics", [(k.name, (*k.operations, *k.denied, k.principal)) for k in doc.kafkaTopics]),
    )
    for name, items in named:
        for i, (label, values) in enumerate(items):
            why = name_problem(label, bound=MAX_TEXT)
            if why:
                found.append(((name, i), why))
            if any(len(v) > MAX_TEXT for v in values):
                found.append(((name, i), f"a value is longer than {MAX_TEXT} characters"))
    found += [
        (("http", i, "statuses"), "a response code is not in 100-599")
        for i, r in enumerate(doc.http)
        if any(not 100 <= code <= 599 for code in r.statuses)
    ]
    found += [
        (("awsActions", i), why)
        for i, a in enumerate(doc.awsActions)
        if (why := name_problem(a, bound=MAX_TEXT))
    ]
    times: list[tuple[Loc, datetime | None]] = [
        (("firstSeen",), doc.firstSeen),
        (("lastSeen",), doc.lastSeen),
        (("targetServiceSeen",), doc.targetServiceSeen),
    ]
    for i, seen in enumerate(doc.provenance):
        times += [
            (("provenance", i, "firstSeen"), seen.firstSeen),
            (("provenance", i, "lastSeen"), seen.lastSeen),
        ]
    for loc, at in times:
        if at is not None and not EARLIEST <= at.timestamp() < END:
            found.append((loc, f"time out of range {RANGE}"))
    return found
