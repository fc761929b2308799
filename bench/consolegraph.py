"""A generated tenant for the console bench: N workloads over ~40 namespaces and E distinct edges.

Pure and seeded: :func:`generate` returns the same edge documents (``agent.wire``'s upload form,
as plain dicts) for the same arguments; only ``now`` anchors the times, so that "seen since"
filters and the console's default window see recent edges.

The shape follows what a real cluster of that size looks like rather than a uniform random graph:

* namespaces of uneven size (a few large teams, many small ones), with one ``kafka`` namespace
  holding the brokers;
* most edges stay within a namespace, and within it go to a few popular servers (Zipf-like
  weights: an API, a database, a cache take most calls);
* some edges cross namespaces, mostly towards shared platform namespaces (auth, identity, gateway,
  platform ...);
* some go to Kafka brokers, with topics and produce/consume operations;
* some go to Internet names (SaaS APIs, partners; a few bare IPs) and to AWS resources (S3, DynamoDB,
  SQS, SNS, with the actions of their service);
* a share of the workload edges carry HTTP paths and methods (seen by Istio).

Every workload is the client of at least one edge, so the tenant has exactly N workloads.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any

from agent import wire

NAMESPACES = (
    "shop", "payments", "checkout", "catalog", "search", "identity", "auth", "billing", "orders",
    "inventory", "shipping", "notifications", "recommendations", "ads", "analytics", "reporting",
    "data", "ml", "kafka", "monitoring", "logging", "ingress", "gateway", "frontend", "mobile-api",
    "partners", "fraud", "risk", "ledger", "pricing", "promotions", "reviews", "media", "origin",
    "support", "crm", "people", "finance", "platform", "batch",
)  # fmt: skip
SHARED = {"auth": 8.0, "identity": 6.0, "gateway": 4.0, "platform": 5.0, "monitoring": 3.0, "logging": 3.0}
"""Namespaces other teams call more than the rest (relative weights; others weigh 1)."""
NOUNS = (
    "cart", "user", "account", "order", "payment", "invoice", "price", "stock", "item", "product",
    "session", "token", "profile", "search", "index", "event", "report", "metric", "audit", "email",
    "sms", "push", "image", "video", "review", "rating", "coupon", "offer", "ledger", "refund",
    "fraud", "risk", "score", "model", "feature", "feed", "geo", "address", "tax", "currency",
)  # fmt: skip
ROLES = (
    "api", "service", "worker", "web", "grpc", "consumer", "producer", "sync", "indexer", "gateway",
    "scheduler", "exporter", "proxy", "admin", "db", "cache", "store", "cron",
)  # fmt: skip
STATEFUL_ROLES = {"db", "cache", "store"}
HTTP_PATHS = (
    "/api/v1/items", "/api/v1/users", "/api/v1/orders", "/api/v2/search", "/healthz", "/metrics",
    "/graphql", "/v1/charge", "/v1/quote", "/login", "/token", "/cart", "/checkout", "/events",
)  # fmt: skip
SAAS = (
    "api.stripe.com", "api.github.com", "hooks.slack.com", "api.twilio.com", "api.sendgrid.com",
    "oauth2.googleapis.com", "storage.googleapis.com", "login.microsoftonline.com", "api.datadoghq.com",
    "sentry.io", "api.segment.io", "api.mixpanel.com", "registry.npmjs.org", "pypi.org",
    "api.pagerduty.com", "api.openai.com", "maps.googleapis.com", "api.paypal.com",
)  # fmt: skip
AWS_SERVICES = {
    "s3": ("arn:aws:s3:::{name}", ("s3:GetObject", "s3:PutObject", "s3:ListBucket", "s3:DeleteObject")),
    "dynamodb": (
        "arn:aws:dynamodb:eu-west-1:123456789012:table/{name}",
        ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:UpdateItem"),
    ),
    "sqs": (
        "arn:aws:sqs:eu-west-1:123456789012:{name}",
        ("sqs:SendMessage", "sqs:ReceiveMessage", "sqs:DeleteMessage"),
    ),
    "sns": ("arn:aws:sns:eu-west-1:123456789012:{name}", ("sns:Publish", "sns:Subscribe")),
}
SHAPES = ("same", "cross", "kafka", "internet", "aws")
SHARES = (0.70, 0.16, 0.04, 0.06, 0.04)
"""Share of edges of each shape (same namespace, across namespaces, to Kafka, Internet, AWS)."""
HTTP_SHARE = 0.3
"""Share of workload edges (not Kafka) carrying HTTP paths."""
DAY = 86400.0


@dataclass(frozen=True)
class Tenant:
    namespaces: tuple[str, ...]
    workloads: tuple[tuple[str, str, str], ...]  # (namespace, name, kind)
    edges: tuple[dict[str, Any], ...]  # upload documents (agent.wire's EdgeDoc as plain JSON)

    def batches(self, size: int = 500) -> list[list[dict[str, Any]]]:
        return [list(self.edges[i : i + size]) for i in range(0, len(self.edges), size)]

    def kinds(self) -> dict[str, int]:
        """Edges per console kind (the contract's rule: aws, internet, kafka, http, tcp)."""
        out: dict[str, int] = {}
        for e in self.edges:
            out[edge_kind(e)] = out.get(edge_kind(e), 0) + 1
        return out


def edge_kind(edge: dict[str, Any]) -> str:
    target_type = edge["target"]["type"]
    if target_type in ("aws", "internet"):
        return str(target_type)
    return "kafka" if edge["kafkaTopics"] else "http" if edge["http"] else "tcp"


def _sizes(rng: random.Random, total: int, count: int) -> list[int]:
    """``count`` uneven namespace sizes summing to ``total``, each at least 5."""
    weights = [rng.lognormvariate(0.0, 0.8) for _ in range(count)]
    scale = (total - 5 * count) / sum(weights)
    sizes = [5 + int(w * scale) for w in weights]
    for i in range(total - sum(sizes)):  # the rounding's remainder, spread
        sizes[i % count] += 1
    return sizes


def _workloads(rng: random.Random, namespace: str, size: int) -> list[tuple[str, str, str]]:
    if namespace == "kafka":
        brokers = [(namespace, f"kafka-{i}", "StatefulSet") for i in range(3)]
        rest = ["zookeeper", "schema-registry", "kafka-connect", "kafka-exporter", "cruise-control"]
        named = brokers + [(namespace, n, "Deployment") for n in rest]
    else:
        named = []
    names = {n for _, n, _ in named}
    while len(named) < size:
        role = rng.choice(ROLES)
        name = f"{rng.choice(NOUNS)}-{role}"
        if name in names:
            name = f"{name}-{len(named)}"
        names.add(name)
        kind = "StatefulSet" if role in STATEFUL_ROLES else "CronJob" if role == "cron" else "Deployment"
        named.append((namespace, name, kind))
    return named[:size]


def _zipf(count: int, s: float = 1.1) -> list[float]:
    return [1.0 / (rank + 1) ** s for rank in range(count)]


class _Builder:
    def __init__(
        self, rng: random.Random, now: float, members: dict[str, list[tuple[str, str, str]]]
    ) -> None:
        self.rng, self.now, self.members = rng, now, members
        self.namespaces = list(members)
        self.popularity = {ns: _zipf(len(ws)) for ns, ws in members.items()}
        self.shared = [SHARED.get(ns, 1.0) for ns in self.namespaces]
        self.brokers = [w for w in members.get("kafka", []) if re.fullmatch(r"kafka-\d", w[1])]
        self.internet = [{"type": "internet", "dnsName": n, "ips": [], "port": 443} for n in SAAS]
        for i in range(120):  # partners' APIs, and a few bare IPs
            octet = f"{i % 250 + 1}"
            if i % 6 == 0:
                self.internet.append(
                    {"type": "internet", "dnsName": "", "ips": [f"203.0.113.{octet}"], "port": 0}
                )
            else:
                name = f"api.partner{i}.example.com"
                self.internet.append(
                    {"type": "internet", "dnsName": name, "ips": [f"198.51.100.{octet}"], "port": 443}
                )
        self.aws: list[tuple[str, tuple[str, ...]]] = []
        for i in range(100):
            service = list(AWS_SERVICES)[i % len(AWS_SERVICES)]
            pattern, actions = AWS_SERVICES[service]
            self.aws.append((pattern.format(name=f"{NOUNS[i % len(NOUNS)]}-{service}-{i}"), actions))

    def _pick(self, namespace: str, exclude: tuple[str, str, str]) -> tuple[str, str, str]:
        workloads = self.members[namespace]
        target = self.rng.choices(workloads, self.popularity[namespace])[0]
        return target if target != exclude or len(workloads) == 1 else self._pick(namespace, exclude)

    def edge(self, client: tuple[str, str, str], shape: str) -> dict[str, Any]:
        rng = self.rng
        last = self.now - rng.uniform(0, 7 * DAY)
        first = last - rng.uniform(0, 30 * DAY)
        doc: dict[str, Any] = {
            "client": {"namespace": client[0], "name": client[1], "kind": client[2]},
            "methods": ["dns", "tcp"],
            "firstSeen": wire.format_time(first),
            "lastSeen": wire.format_time(last),
            "count": rng.randint(1, 5000),
            "http": [],
            "kafkaTopics": [],
            "awsActions": [],
            "targetService": "",
            "ambiguous": False,
        }
        if shape in ("same", "cross") or (shape == "kafka" and not self.brokers):
            namespace = client[0] if shape == "same" else rng.choices(self.namespaces, self.shared)[0]
            ns, name, kind = self._pick(namespace, client)
            doc["target"] = {"type": "workload", "namespace": ns, "name": name, "kind": kind}
            doc["targetService"] = name
            if rng.random() < 0.1:
                doc["methods"] = ["socket-scan"]
            if rng.random() < HTTP_SHARE:
                doc["methods"] = ["dns", "istio", "tcp"]
                paths = rng.sample(HTTP_PATHS, rng.randint(1, 3))
                doc["http"] = [
                    {
                        "path": p,
                        "methods": sorted(rng.sample(["GET", "POST", "PUT", "DELETE"], rng.randint(1, 2))),
                    }
                    for p in sorted(paths)
                ]
        elif shape == "kafka":
            ns, name, kind = rng.choice(self.brokers)
            doc["target"] = {"type": "workload", "namespace": ns, "name": name, "kind": kind}
            doc["targetService"] = "kafka"
            doc["methods"] = ["kafka", "tcp"]
            topics = {f"{client[0]}.{rng.choice(NOUNS)}-events" for _ in range(rng.randint(1, 3))}
            doc["kafkaTopics"] = [
                {
                    "name": t,
                    "operations": sorted(rng.sample(["consume", "describe", "produce"], rng.randint(1, 2))),
                }
                for t in sorted(topics)
            ]
        elif shape == "internet":
            doc["target"] = dict(rng.choice(self.internet))
        else:
            arn, actions = rng.choice(self.aws)
            doc["target"] = {"type": "aws", "arn": arn}
            doc["methods"] = ["aws"]
            doc["awsActions"] = sorted(rng.sample(actions, rng.randint(1, len(actions))))
        return doc


def _key(doc: dict[str, Any]) -> tuple[str, ...]:
    c, t = doc["client"], doc["target"]
    return (c["namespace"], c["name"], *(str(v) for v in t.values()))


def generate(
    seed: int, now: float, workloads: int = 2000, edges: int = 10000, namespaces: int = 40
) -> Tenant:
    """The tenant for ``seed``: ``workloads`` workloads in ``namespaces`` namespaces and ``edges``
    distinct (client, target) edges, last seen within the week before ``now``."""
    if not 1 <= namespaces <= len(NAMESPACES) or workloads < 5 * namespaces or edges < workloads:
        raise ValueError("need 1-40 namespaces, >= 5 workloads each, at least one edge per workload")
    rng = random.Random(seed)
    chosen = list(NAMESPACES[:namespaces])
    members = {
        ns: _workloads(rng, ns, size)
        for ns, size in zip(chosen, _sizes(rng, workloads, namespaces), strict=True)
    }
    builder = _Builder(rng, now, members)
    everyone = [w for ws in members.values() for w in ws]
    out: dict[tuple[str, ...], dict[str, Any]] = {}
    queue = iter(everyone)  # every workload calls something first; then anyone calls anything
    while len(out) < edges:
        client = next(queue, None) or rng.choice(everyone)
        doc = builder.edge(client, rng.choices(SHAPES, SHARES)[0])
        out.setdefault(_key(doc), doc)
    return Tenant(tuple(chosen), tuple(everyone), tuple(out.values()))


def _group(endpoint: dict[str, Any]) -> str:
    kind = endpoint.get("type", "workload")
    return "internet" if kind == "internet" else "aws" if kind == "aws" else f"ns:{endpoint['namespace']}"


def _node_id(endpoint: dict[str, Any], expanded: str | None) -> str:
    """The contract's node id of an endpoint, its group's when its namespace is not ``expanded``."""
    if endpoint.get("type", "workload") == "workload" and endpoint["namespace"] == expanded:
        return f"w:{endpoint['namespace']}/{endpoint['name']}"
    return _group(endpoint)


def elements(tenant: Tenant, expanded: str | None = None, everything: bool = False) -> list[dict[str, Any]]:
    """Cytoscape elements (``{"data": {...}}``) with the console's ids: namespaces collapsed into
    ``ns:<ns>`` nodes (Internet and AWS targets into one node each) except ``expanded``'s workloads;
    with ``everything``, every workload, Internet name and AWS resource its own node."""
    nodes: dict[str, dict[str, Any]] = {}
    links: dict[str, dict[str, Any]] = {}
    for edge in tenant.edges:
        ends = []
        for endpoint in (edge["client"], edge["target"]):
            if everything:
                kind = endpoint.get("type", "workload")
                name = (
                    endpoint.get("dnsName") or (endpoint.get("ips") or [""])[0] if kind == "internet" else ""
                )
                node = (
                    f"inet:{name}" if kind == "internet"
                    else f"aws:{endpoint['arn']}" if kind == "aws"
                    else f"w:{endpoint['namespace']}/{endpoint['name']}"
                )  # fmt: skip
            else:
                node = _node_id(endpoint, expanded)
            nodes.setdefault(node, {"data": {"id": node, "label": node.split("/")[-1].split(":")[-1]}})
            ends.append(node)
        link = f"e:{ends[0]}->{ends[1]}"
        entry = links.setdefault(
            link, {"data": {"id": link, "source": ends[0], "target": ends[1], "edges": 0}}
        )
        entry["data"]["edges"] += 1
        entry["data"]["kind"] = edge_kind(edge)
    return list(nodes.values()) + list(links.values())


def biggest_namespaces(tenant: Tenant, count: int = 1) -> list[str]:
    """The ``count`` namespaces with the most workloads, biggest first (ties: in namespace order)."""
    sizes: dict[str, int] = {}
    for namespace, _, _ in tenant.workloads:
        sizes[namespace] = sizes.get(namespace, 0) + 1
    return sorted(tenant.namespaces, key=lambda ns: -sizes.get(ns, 0))[:count]
