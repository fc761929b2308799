"""Kafka authorizer line parsing: agent.watchers.kafka.classify_authorizer_line against a naive parser.

The mix is every line of tests/data/kafka/*.log once: the authorizer audit lines of each layout
(AclAuthorizer, SimpleAclAuthorizer, KRaft 3.x/4.x, Strimzi Log4j1/Log4j2, Kubernetes timestamps),
malformed lines, and broker-other.log's ordinary broker lines (start-up, coordinators, log cleaner,
a stack trace). The share of ordinary lines is printed; a broker whose authorizer logs at DEBUG
writes mostly audit lines in steady state, so the audit-lines-only rate is printed too, and a
"cold" rate on thousands of distinct audit lines (distinct clients and topics), which defeats the
parser's memo of repeated accesses.

The baseline is what one writes first: one regex with named groups per message layout, tried in
turn with a non-anchored ``re.search``, host checked with ``ipaddress.ip_address``. It is checked to
give the same TopicAccess as ours on every well-formed fixture line before it is timed.
Last line: ``kafka_parse: <ratio>x naive (<N>k lines/s)``, N being our rate on the mix.
"""

from __future__ import annotations

import argparse
import ipaddress
import re
from pathlib import Path

from rates import rates  # bench/rates.py: run as `python bench/<bench>.py`

from agent.watchers.kafka import LineKind, TopicAccess, classify_authorizer_line

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "kafka"

_MESSAGE = (
    r"Principal = (?P<principal>.+?) is (?P<result>Allowed|Denied) (?:Operation|operation) = "
    r"(?P<operation>\w+) from host = (?P<host>\S+) on resource = "
)
NAIVE_LAYOUTS = [
    # KRaft StandardAuthorizer, 3.x and 4.x.
    re.compile(
        _MESSAGE + r"(?P<type>\w+):(?P<pattern>\w+):(?P<name>\S+) for request = (?P<request>\w+) "
        r"with resourceRefCount = (?P<refcount>\d+) based on rule (?P<rule>.*?)"
        r"(?: \(kafka\.authorizer\.logger\)(?: \[(?P<thread>[^\]]*)\])?)?\s*$"
    ),
    # AclAuthorizer 2.4-3.x.
    re.compile(
        _MESSAGE + r"(?P<type>\w+):(?P<pattern>\w+):(?P<name>\S+) for request = (?P<request>\w+) "
        r"with resourceRefCount = (?P<refcount>\d+)(?: \(kafka\.authorizer\.logger\))?"
    ),
    # SimpleAclAuthorizer 2.0-2.3.
    re.compile(_MESSAGE + r"(?P<type>\w+):(?P<pattern>\w+):(?P<name>\S+)(?: \(kafka\.authorizer\.logger\))?"),
    # SimpleAclAuthorizer 1.x.
    re.compile(_MESSAGE + r"(?P<type>\w+):(?P<name>\S+)(?: \(kafka\.authorizer\.logger\))?"),
]


def naive_classify(line: str) -> TopicAccess | LineKind:
    for layout in NAIVE_LAYOUTS:
        match = layout.search(line)
        if match is None:
            continue
        fields = match.groupdict()
        if fields["type"] != "Topic" or fields.get("pattern") == "UNKNOWN":
            return LineKind.OTHER_RESOURCE
        try:
            ipaddress.ip_address(fields["host"])
        except ValueError:
            return LineKind.UNPARSED
        operation = fields["operation"]
        if operation.isupper():  # KRaft prints the AclOperation constant: DESCRIBE_CONFIGS
            operation = "".join(word.capitalize() for word in operation.split("_"))
        return TopicAccess(
            fields["principal"],
            fields["host"],
            operation,
            fields["name"],
            fields["result"] == "Allowed",
            fields.get("pattern") or "LITERAL",
        )
    if "Principal = " in line and (" is Allowed" in line or " is Denied" in line):
        return LineKind.UNPARSED
    return LineKind.NOT_AUTHORIZER


def fixture_lines() -> dict[str, list[str]]:
    files = {}
    for path in sorted(DATA.glob("*.log")):
        with path.open(encoding="utf-8", newline="") as handle:
            files[path.name] = handle.readlines()
    return files


def distinct_audit_lines(audit: list[str], count: int) -> list[str]:
    """``count`` different audit lines: the fixture accesses with other client IPs and topics."""
    templates = [line for line in audit if isinstance(classify_authorizer_line(line), TopicAccess)]
    out = []
    for n in range(count):
        line = templates[n % len(templates)]
        line = re.sub(r"host = [0-9.]+ ", f"host = 10.{n % 250}.{n // 250 % 250}.{n % 7 + 1} ", line)
        out.append(re.sub(r"(Topic:(?:LITERAL:)?)([\w.-]+)", rf"\g<1>\g<2>-{n}", line, count=1))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=16.0, help="total timing budget (default 16)")
    args = parser.parse_args()

    files = fixture_lines()
    mix = [line for lines in files.values() for line in lines]
    results = [classify_authorizer_line(line) for line in mix]
    audit = [line for line, result in zip(mix, results, strict=True) if result is not LineKind.NOT_AUTHORIZER]
    accesses = sum(isinstance(result, TopicAccess) for result in results)
    ordinary = len(mix) - len(audit)
    print(
        f"mix: {len(mix)} lines from {len(files)} files: {accesses} topic accesses,"
        f" {len(audit) - accesses} other audit lines, {ordinary} ordinary ({ordinary / len(mix):.0%})"
    )

    # The baseline must do the same job on the lines it was written for before its speed counts.
    for name, lines in files.items():
        if name == "malformed.log":
            continue
        for number, line in enumerate(lines, start=1):
            ours = classify_authorizer_line(line)
            if isinstance(ours, TopicAccess):
                assert naive_classify(line) == ours, f"baseline disagrees on {name}:{number}"

    cold = distinct_audit_lines(audit, 20_000)
    assert len(set(cold)) == len(cold)

    def ours_mix() -> None:
        for line in mix:
            classify_authorizer_line(line)

    def naive_mix() -> None:
        for line in mix:
            naive_classify(line)

    def ours_audit() -> None:
        for line in audit:
            classify_authorizer_line(line)

    def naive_audit() -> None:
        for line in audit:
            naive_classify(line)

    def ours_cold() -> None:
        for line in cold:
            classify_authorizer_line(line)

    def naive_cold() -> None:
        for line in cold:
            naive_classify(line)

    result = rates(
        {
            "ours": (ours_mix, len(mix)),
            "naive": (naive_mix, len(mix)),
            "ours_audit": (ours_audit, len(audit)),
            "naive_audit": (naive_audit, len(audit)),
            "ours_cold": (ours_cold, len(cold)),
            "naive_cold": (naive_cold, len(cold)),
        },
        budget=args.seconds,
    )
    for label, key in (("audit lines only", "audit"), ("distinct audit lines (cold memo)", "cold")):
        ours_rate, naive_rate = result[f"ours_{key}"], result[f"naive_{key}"]
        print(
            f"{label}: ours {ours_rate / 1000:.0f}k lines/s, naive {naive_rate / 1000:.0f}k lines/s,"
            f" {ours_rate / naive_rate:.1f}x"
        )
    print(f"naive on the mix: {result['naive'] / 1000:.0f}k lines/s")
    print(
        f"kafka_parse: {result['ours'] / result['naive']:.1f}x naive ({result['ours'] / 1000:.0f}k lines/s)"
    )


if __name__ == "__main__":
    main()
