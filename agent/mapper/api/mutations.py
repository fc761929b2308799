"""Report mutations' inputs → ``agent.model`` observations (pure; no I/O).

The inputs come from producers over HTTP, already coerced by graphql-core (dicts keyed by the
schema's field names, ``Time`` already epoch seconds); the observations go onto the report
queue (:mod:`.reportqueue`), then through the resolver into the store. The schema's additive
``Destination`` fields (``srcPort``; for DNS ``dnsServerIP`` and ``cnames``; for a socket scan
``clientPodUid`` and ``clientPod``), which Otterize's producers never send, fill the observations'
client port, DNS server, CNAME chain and client pod.

Entries that parse as GraphQL but cannot be an observation (a source that is not an IP, a
port outside 0-65535, a time that is not one or lies outside the codec's range — the ``Time``
scalar hands those over as NaN —, an empty or over-long name) are skipped and counted per
reason (:data:`REASONS`) in :class:`Converted`, so the API logs them and serves the counts on
``/metrics``: a producer that keeps sending one bad entry must not have its whole batch refused
and retried forever.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agent.mapper.api.queries import kafka_operation
from agent.model import (
    AwsOperation,
    DnsAnswer,
    IstioRequest,
    KafkaAccess,
    Observation,
    SocketConnection,
    TcpConnection,
    WorkloadIdentity,
)
from agent.wirechecks import MAX_NAME, MAX_TEXT, is_ip, name_problem
from agent.wiretime import RANGE

KAFKA_SERVER_KIND = "Pod"
"""``reportKafkaMapperResults`` names the Kafka server by *pod* (``serverPodName``): the
observation carries ``WorkloadIdentity(serverNamespace, serverPodName, "Pod")`` and the resolver
maps that pod to its workload."""

Input = Mapping[str, Any]


REASONS = ("bad_ip", "bad_port", "bad_time", "bad_status", "empty_name", "too_long", "no_actions")
"""Why an entry was skipped: a closed set (the ``reason`` label of the skip counter)."""


@dataclass(slots=True)
class Converted:
    """Observations made from one mutation, the entries skipped by reason, and the first one's detail."""

    observations: list[Observation] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    first: str = ""

    def skip(self, reason: str, detail: str) -> None:
        self.skipped[reason] += 1
        if not self.first:
            self.first = detail

    def named(self, *names: str, empty: bool = False, bound: int = MAX_NAME) -> bool:
        """Whether every one of ``names`` is non-empty (unless ``empty``) and at most ``bound``
        long; else the entry is skipped."""
        for name in names:
            why = name_problem(name, empty=empty, bound=bound)
            if why:
                self.skip(
                    *(("too_long", f"{why}: {name[:64]!r}") if name else ("empty_name", "a name is empty"))
                )
                return False
        return True

    def timed(self, seen: float) -> bool:
        """Whether ``seen`` is a time (the ``Time`` scalar gives NaN for what is not; else skipped)."""
        if not math.isnan(seen):
            return True
        self.skip("bad_time", f"lastSeen is not an RFC 3339 time in {RANGE}")
        return False


def _port(value: Any) -> int | None:
    """A port (absent or null: 0), or None when out of range."""
    port = int(value or 0)
    return port if 0 <= port <= 65535 else None


def _sources(results: Input, converted: Converted) -> Iterable[tuple[str, Input]]:
    """(srcIp, source entry) of each ``RecordedDestinationsForSrc`` whose srcIp is an IP."""
    for source in results["results"]:
        src = source["srcIp"]
        if is_ip(src):
            yield src, source
        else:
            for _ in source["destinations"] or [None]:
                converted.skip("bad_ip", f"srcIp is not an IP: {src[:64]!r}")


def capture_results(results: Input) -> Converted:
    """``reportCaptureResults`` (DNS answers seen by the sniffer) → one :class:`DnsAnswer` per
    (source, queried name): the IPs of its entries merged in order, the largest TTL, and the
    newest entry's ``lastSeen`` and extension fields (``srcPort``, ``dnsServerIP``, ``cnames``;
    absent: 0, ``""``, ``()``). ``destination`` is the name; ``destinationIP`` one of its addresses."""
    out = Converted()
    for src, source in _sources(results, out):
        # name → [its IPs (an ordered set), newest lastSeen, largest TTL, the newest entry]: a list
        # updated in place (this loop sees every DNS entry reported).
        names: dict[str, list[Any]] = {}
        for dest in source["destinations"]:
            name = dest["destination"]
            if not out.named(name) or not out.timed(dest["lastSeen"]):
                continue
            ip = dest.get("destinationIP") or ""
            if ip and not is_ip(ip):
                out.skip("bad_ip", f"destinationIP is not an IP: {ip[:64]!r}")
                continue
            client_port = dest.get("srcPort") or 0
            if not 0 <= client_port <= 65535:
                out.skip("bad_port", f"srcPort out of range: {client_port}")
                continue
            server_ip = dest.get("dnsServerIP") or ""
            if server_ip and not is_ip(server_ip):
                out.skip("bad_ip", f"dnsServerIP is not an IP: {server_ip[:64]!r}")
                continue
            seen, ttl = dest["lastSeen"], max(int(dest.get("TTL") or 0), 0)
            have = names.get(name)
            if have is None:
                names[name] = [{ip: None} if ip else {}, seen, ttl, dest]
                continue
            if ip:
                have[0][ip] = None
            if seen > have[1]:
                have[1], have[3] = seen, dest
            have[2] = max(have[2], ttl)
        for name, (ips, seen, ttl, dest) in names.items():
            port, server, cnames = dest.get("srcPort") or 0, dest.get("dnsServerIP") or "", dest.get("cnames")
            out.observations.append(
                DnsAnswer(src, port, server, name, tuple(ips), seen, tuple(cnames or ()), ttl)
            )
    return out


def _connections(results: Input, *, socket_scan: bool) -> Converted:
    out = Converted()
    for src, source in _sources(results, out):
        hostname = source["srcHostname"]
        for dest in source["destinations"]:
            server = dest.get("destinationIP") or dest["destination"]
            port = _port(dest.get("destinationPort"))
            client_port = _port(dest.get("srcPort"))
            if not is_ip(server):
                out.skip("bad_ip", f"destination is not an IP: {server[:64]!r}")
            elif port is None:
                out.skip("bad_port", f"destinationPort out of range: {dest.get('destinationPort')}")
            elif client_port is None:
                out.skip("bad_port", f"srcPort out of range: {dest.get('srcPort')}")
            elif not (out.timed(dest["lastSeen"]) and out.named(hostname, empty=True)):
                continue
            elif socket_scan:
                pod_uid, pod = dest.get("clientPodUid") or "", dest.get("clientPod") or ""
                if out.named(pod_uid, pod, empty=True, bound=MAX_TEXT):
                    out.observations.append(
                        SocketConnection(
                            src, client_port, server, port, dest["lastSeen"], hostname, pod_uid, pod
                        )
                    )
            else:
                out.observations.append(TcpConnection(src, client_port, server, port, dest["lastSeen"]))
    return out


def tcp_results(results: Input) -> Converted:
    """``reportTCPCaptureResults`` (SYNs seen by the sniffer) → :class:`TcpConnection` per
    destination; the server is ``destinationIP`` when given, else ``destination`` (an IP); the
    client port is the extension field ``srcPort`` (absent: 0)."""
    return _connections(results, socket_scan=False)


def socket_results(results: Input) -> Converted:
    """``reportSocketScanResults`` (the sniffer's /proc scan) → :class:`SocketConnection` per
    destination, carrying ``srcHostname`` as the client's hostname, ``srcPort`` (absent: 0)
    as its port, and ``clientPodUid`` / ``clientPod`` (absent: "") as its pod."""
    return _connections(results, socket_scan=True)


def kafka_results(results: Input) -> Converted:
    """``reportKafkaMapperResults`` (the Kafka watcher) → :class:`KafkaAccess` per result; the
    server is the pod named by ``serverPodName`` (see :data:`KAFKA_SERVER_KIND`). The extension
    fields ``principal`` (absent: unknown) and ``allowed`` (absent or null: allowed — Otterize's
    watcher reports what the broker logged, which by default is allowed accesses) are carried."""
    out = Converted()
    for r in results["results"]:
        if not is_ip(r["srcIp"]):
            out.skip("bad_ip", f"srcIp is not an IP: {r['srcIp'][:64]!r}")
            continue
        principal = r.get("principal") or ""
        if not (
            out.named(r["serverNamespace"], r["serverPodName"])
            and out.named(r["topic"], r["operation"], bound=MAX_TEXT)
            and out.named(principal, empty=True, bound=MAX_TEXT)
            and out.timed(r["lastSeen"])
        ):
            continue
        server = WorkloadIdentity(r["serverNamespace"], r["serverPodName"], KAFKA_SERVER_KIND)
        # One spelling per operation in the store: Kafka's Read (AclAuthorizer), READ (KRaft) and
        # Otterize's consume all become "consume"; an operation we do not know is kept, lower-cased.
        known = kafka_operation(r["operation"].strip())
        operation = known.lower().replace("_", "-") if known else r["operation"].strip().lower()
        allowed = r.get("allowed") is not False
        out.observations.append(
            KafkaAccess(r["srcIp"], server, r["topic"], operation, r["lastSeen"], 0, principal, allowed)
        )
    return out


def istio_results(results: Input) -> Converted:
    """``reportIstioConnectionResults`` (the Istio watcher) → one :class:`IstioRequest` per
    method, ``count=1`` (the watcher reports deltas); no methods → one request with method ``""``.
    The extension fields ``srcPrincipal`` and ``responseCodes`` (100-599) are carried."""
    out = Converted()
    for r in results["results"]:
        principal, codes = r.get("srcPrincipal") or "", tuple(r.get("responseCodes") or ())
        if not (
            out.named(r["srcWorkload"], r["srcWorkloadNamespace"])
            and out.named(r["dstWorkload"], r["dstWorkloadNamespace"])
            and out.named(r["dstServiceName"], empty=True)
            and out.named(r["path"], *r["methods"], principal, empty=True, bound=MAX_TEXT)
            and out.timed(r["lastSeen"])
        ):
            continue
        if not all(100 <= code <= 599 for code in codes):
            out.skip("bad_status", f"a response code is not in 100-599: {codes[:8]}")
            continue
        for method in r["methods"] or [""]:
            out.observations.append(
                IstioRequest(
                    r["srcWorkload"],
                    r["srcWorkloadNamespace"],
                    r["dstWorkload"],
                    r["dstWorkloadNamespace"],
                    r["dstServiceName"],
                    r["path"],
                    method,
                    1,
                    r["lastSeen"],
                    principal,
                    codes,
                )
            )
    return out


def split_action(action: str) -> tuple[str, str]:
    """``s3:GetObject`` → (``s3``, ``GetObject``); no colon → (``""``, action)."""
    service, sep, name = action.partition(":")
    return (service, name) if sep else ("", action)


def aws_operations(operations: Sequence[Input], now: float) -> Converted:
    """``reportAWSOperation`` (the IAM proxy) → one :class:`AwsOperation` per action, seen ``now``.

    ``iamRole`` and ``client`` (a NamespacedName) are accepted but not carried: the model
    attributes AWS calls by client IP only (``""`` when ``srcIp`` is absent, which the resolver
    cannot attribute).
    """
    out = Converted()
    for op in operations:
        src = op.get("srcIp") or ""
        if src and not is_ip(src):
            out.skip("bad_ip", f"srcIp is not an IP: {src[:64]!r}")
            continue
        if not op["actions"]:
            out.skip("no_actions", "no actions")
        if not out.named(op["resource"], *op["actions"], bound=MAX_TEXT):
            continue
        for action in op["actions"]:
            service, name = split_action(action)
            out.observations.append(AwsOperation(src, 0, service, name, op["resource"], "", now))
    return out
