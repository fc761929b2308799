"""Keyed hashes for names that leave the cluster, and the way back for those who hold the key.

Shared by the mapper (which anonymizes) and the CLI (which de-anonymizes), so it sits below
both: it imports only :mod:`agent.model` and :mod:`agent.exports`.

With ``cloud.anonymize=true`` the mapper's uploader (:mod:`agent.mapper.uploader`) sends
:meth:`Anonymizer.anonymize` of each edge: workload names, namespaces, DNS names (the whole
name), ARNs, ``target_service`` and principals (Istio's ``spiffe://.../ns/<ns>/sa/<sa>``, Kafka's
``User:CN=<name>``: they name workloads too) become ``h-`` + 24 hex digits of HMAC-SHA256 under a
key that never leaves the cluster (a Secret mounted as a file: :func:`load_key`). Kinds, IPs, ports,
HTTP paths and methods, Kafka topics and AWS actions are kept: they are what makes the map
useful, and are not workload or namespace names.

A hash is a valid DNS-1123 label (``h-`` + lower-case hex, 26 characters), so exports made by the
cloud from anonymized edges stay valid Kubernetes objects, and short enough that the
NetworkPolicy exporter's ``access-to-<name>-from-observed-clients`` is not cut (cutting would
lose the hash). 96 bits: no collision in any cluster's worth of names.

The way back: :class:`Deanonymizer` hashes every name the cluster knows (the mapper's own edges)
and maps a cloud export back: the JSON edge document (edge by edge, then re-sorted), ClientIntents
YAML (back to edges, names restored, exported again, so the result equals the plain export),
NetworkPolicy YAML and any other text (each known hash replaced by its name). Names are hashed
part by part, never as ``<name>.<namespace>``, so ``h-aaa.h-bbb`` maps back to ``name.ns``.
Pure, except :func:`load_key` (reads the key file) and :func:`generate_key`.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from agent.exports import clientintents, jsonexport, yaml_documents
from agent.model import AwsTarget, Edge, HttpResource, InternetTarget, KafkaTopic, Target, WorkloadIdentity

PREFIX = "h-"
HEX_DIGITS = 24
KEY_BYTES = 32
_MIN_KEY_BYTES = 16
TOKEN = re.compile(rf"(?<![0-9a-z]){PREFIX}[0-9a-f]{{{HEX_DIGITS}}}(?![0-9a-z])")


class AnonymizationKeyError(ValueError):
    """The anonymization key file is missing, unreadable or too short."""


def generate_key() -> bytes:
    """A new random key (32 bytes)."""
    return secrets.token_bytes(KEY_BYTES)


def load_key(path: str | Path) -> bytes:
    """The key in ``path``: its bytes, with surrounding whitespace stripped (a Secret's value).

    Raises :class:`AnonymizationKeyError` when the file is missing or holds fewer than 16 bytes.
    """
    try:
        key = Path(path).read_bytes().strip()
    except OSError as exc:
        raise AnonymizationKeyError(
            f"cannot read the anonymization key file {path}: {exc.strerror or exc}"
        ) from exc
    if len(key) < _MIN_KEY_BYTES:
        raise AnonymizationKeyError(f"the anonymization key in {path} is shorter than {_MIN_KEY_BYTES} bytes")
    return key


class Anonymizer:
    """Edges → the same edges with names replaced by keyed hashes (see the module docstring)."""

    def __init__(self, key: bytes) -> None:
        if len(key) < _MIN_KEY_BYTES:
            raise AnonymizationKeyError(f"an anonymization key needs at least {_MIN_KEY_BYTES} bytes")
        self._key = key
        self._cache: dict[str, str] = {}

    def hash(self, name: str) -> str:
        """``h-`` + 24 hex digits of HMAC-SHA256(key, name); the empty name stays empty."""
        if not name:
            return name
        found = self._cache.get(name)
        if found is None:
            digest = hmac.new(self._key, name.encode(), hashlib.sha256).hexdigest()
            found = PREFIX + digest[:HEX_DIGITS]
            if len(self._cache) < 100_000:
                self._cache[name] = found
        return found

    def anonymize(self, edge: Edge) -> Edge:
        return _renamed(edge, self.hash)


def _renamed(edge: Edge, rename: Callable[[str], str]) -> Edge:
    """``edge`` with its namespaces, names, DNS name, ARN (but the wildcard ``*``) and Service
    name passed through ``rename``; kinds, IPs, ports and the rest kept."""

    def identity(who: WorkloadIdentity) -> WorkloadIdentity:
        return WorkloadIdentity(rename(who.namespace), rename(who.name), who.kind)

    target = edge.target
    if isinstance(target, WorkloadIdentity):
        target = identity(target)
    elif isinstance(target, InternetTarget):
        target = dataclasses.replace(target, dns_name=rename(target.dns_name))
    elif target.arn != "*":
        target = AwsTarget(rename(target.arn))
    http = tuple(
        dataclasses.replace(r, principals=tuple(map(rename, r.principals))) if r.principals else r
        for r in edge.http
    )
    topics = tuple(
        dataclasses.replace(t, principal=rename(t.principal)) if t.principal else t for t in edge.kafka_topics
    )
    return dataclasses.replace(
        edge,
        client=identity(edge.client),
        target=target,
        target_service=rename(edge.target_service),
        http=http,
        kafka_topics=topics,
    )


def _names(edge: Edge) -> Iterable[str]:
    yield from (edge.client.namespace, edge.client.name, edge.target_service)
    for r in edge.http:
        yield from r.principals
    yield from (t.principal for t in edge.kafka_topics)
    target = edge.target
    if isinstance(target, WorkloadIdentity):
        yield from (target.namespace, target.name)
    elif isinstance(target, InternetTarget):
        yield target.dns_name
    else:
        yield target.arn


class Deanonymizer:
    """Hashes → real names, for every name in ``known_edges`` (the mapper's own edges)."""

    def __init__(self, key: bytes, known_edges: Iterable[Edge]) -> None:
        anonymizer = Anonymizer(key)
        self.names: dict[str, str] = {}
        for edge in known_edges:
            for name in _names(edge):
                if name:
                    self.names[anonymizer.hash(name)] = name

    def text(self, text: str) -> str:
        """Every known hash in ``text`` replaced by its name (unknown hashes stay)."""
        return TOKEN.sub(lambda m: self.names.get(m.group(0), m.group(0)), text)

    def unknown(self, text: str) -> set[str]:
        """The hashes in ``text`` this cluster does not know (names it no longer has edges of)."""
        return {m for m in TOKEN.findall(text) if m not in self.names}

    def edge(self, edge: Edge) -> Edge:
        return _renamed(edge, self.text)

    def document(self, document: Mapping[str, Any]) -> dict[str, Any]:
        """A JSON edge document (``network-mapper/v1``) with names restored, re-sorted."""
        return jsonexport.edges_document(self.edge(e) for e in jsonexport.edges_from_document(document))

    def client_intents(self, documents: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """ClientIntents made from anonymized edges → the ClientIntents of the real edges."""
        docs = list(documents)
        version = str(docs[0].get("apiVersion", "")).rpartition("/")[2] if docs else "v2beta1"
        edges = [self.edge(e) for doc in docs for e in intents_edges(doc)]
        return clientintents.client_intents(edges, version=version)

    def network_policies(self, documents: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """NetworkPolicies with names restored, in the exporter's order (server, then client)."""
        restored: list[dict[str, Any]] = json.loads(self.text(json.dumps(list(documents))))
        for policy in restored:
            namespace = policy.get("metadata", {}).get("namespace", "")
            for rule in policy.get("spec", {}).get("ingress", []):
                rule["from"] = sorted(rule.get("from", []), key=functools.partial(_peer_key, namespace))
        restored.sort(key=_policy_key)
        return restored

    def export_text(self, text: str) -> str:
        """A cloud export in any format → the same export with real names (see the module doc).

        JSON edge documents come back as ``export --format json`` writes them; ClientIntents and
        NetworkPolicy YAML as ``export`` writes them; any other text with hashes replaced.
        """
        import yaml

        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict) and parsed.get("apiVersion") == jsonexport.API_VERSION:
            return json.dumps(self.document(parsed), indent=2) + "\n"
        try:
            docs = [d for d in yaml.safe_load_all(text) if d is not None]
        except yaml.YAMLError:
            return self.text(text)
        kinds = {d.get("kind") if isinstance(d, dict) else None for d in docs}
        versions = {d.get("apiVersion") for d in docs if isinstance(d, dict)}
        if docs and kinds == {clientintents.KIND} and len(versions) == 1:
            return yaml_documents(self.client_intents(docs))
        if docs and kinds == {"NetworkPolicy"}:
            return yaml_documents(self.network_policies(docs))
        return self.text(text)


def _labels(selector: Any) -> list[tuple[str, str]]:
    labels = (selector or {}).get("matchLabels") or {}
    return sorted(labels.items())


def _peer_key(policy_namespace: str, peer: Mapping[str, Any]) -> tuple[Any, ...]:
    ns = dict(_labels(peer.get("namespaceSelector"))).get("kubernetes.io/metadata.name", policy_namespace)
    return (ns, _labels(peer.get("podSelector")))


def _policy_key(policy: Mapping[str, Any]) -> tuple[Any, ...]:
    meta = policy.get("metadata", {})
    return (meta.get("namespace", ""), _labels(policy.get("spec", {}).get("podSelector")), meta.get("name"))


# --------------------------------------------------------------------------- ClientIntents → edges


def _split(qualified: str, namespace: str, kind: str = "") -> WorkloadIdentity:
    """``name`` (in ``namespace``) or ``name.ns`` → an identity (hashes have no dots)."""
    name, dot, ns = qualified.rpartition(".")
    return WorkloadIdentity(ns, name, kind) if dot else WorkloadIdentity(namespace, qualified, kind)


def _http(resources: Any) -> tuple[HttpResource, ...]:
    return tuple(HttpResource(r["path"], tuple(r.get("methods") or ())) for r in resources or ())


def _topics(topics: Any) -> tuple[KafkaTopic, ...]:
    return tuple(KafkaTopic(t["name"], tuple(t.get("operations") or ())) for t in topics or ())


def _internet(body: Mapping[str, Any]) -> list[InternetTarget]:
    ports = body.get("ports") or [0]
    return [InternetTarget(d, (), p) for d in body.get("domains") or () for p in ports] + [
        InternetTarget("", (ip,), p) for ip in body.get("ips") or () for p in ports
    ]


def intents_edges(document: Mapping[str, Any]) -> list[Edge]:
    """The edges a ClientIntents document (as :mod:`agent.exports.clientintents` writes it) says.

    Re-exporting them gives the same document. Times are zero: a ClientIntents has none.
    """
    meta, spec = document.get("metadata") or {}, document.get("spec") or {}
    ns = str(meta.get("namespace", ""))
    workload = spec.get("workload") or spec.get("service") or {}
    client = WorkloadIdentity(ns, str(workload.get("name", "")), str(workload.get("kind", "")))
    edges: list[Edge] = []

    def add(target: Target, **details: Any) -> None:
        edges.append(Edge(client, target, 0.0, 0.0, **details))

    for entry in spec.get("targets") or ():
        if "kubernetes" in entry or "service" in entry:
            body = entry.get("kubernetes") or entry["service"]
            kind = "Service" if "service" in entry else str(body.get("kind", ""))
            add(_split(body["name"], ns, kind), http=_http(body.get("http")))
        elif "kafka" in entry:
            add(_split(entry["kafka"]["name"], ns), kafka_topics=_topics(entry["kafka"].get("topics")))
        elif "internet" in entry:
            for internet in _internet(entry["internet"]):
                add(internet)
        elif "aws" in entry:
            add(AwsTarget(entry["aws"]["arn"]), aws_actions=tuple(entry["aws"].get("actions") or ()))
    for call in spec.get("calls") or ():
        kind = call.get("type", "")
        if kind == "kafka":
            add(_split(call["name"], ns), kafka_topics=_topics(call.get("kafkaTopics")))
        elif kind == "internet":
            for internet in _internet(call.get("internet") or {}):
                add(internet)
        elif kind == "aws":
            add(AwsTarget(call["name"]), aws_actions=tuple(call.get("awsActions") or ()))
        else:
            add(_split(call["name"], ns, str(call.get("kind", ""))), http=_http(call.get("HTTPResources")))
    return edges
