"""The sandbox's CNI policy agent: keeps the node's nftables policy table in step with the API.

Data comes from a *source* — :func:`api_source` lists Namespaces, Pods and NetworkPolicies from the
sandbox API server through the ``kubernetes`` client, as a controller would; tests pass their own —
every ``interval`` seconds. The ruleset (:func:`sandbox.netpolicy.ruleset`) goes to ``nft -f -`` in
each node namespace (the same table on every node: a call between nodes crosses the forward path of
both, which give the same verdict) only when its text changed: one transaction that replaces the table, so a
change is in force within one interval plus the load (well under 2 s) and never half applied.
Malformed policies are logged once and left out (a real API server would have refused them).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from kubernetes import client as k8s
from urllib3.exceptions import HTTPError

from sandbox import netns
from sandbox.netpolicy import (
    Cluster,
    NetPolicyError,
    Policy,
    isolated,
    namespaces_from_api,
    parse_policy,
    pods_from_api,
    ruleset,
)

log = logging.getLogger(__name__)

INTERVAL = 1.0  # seconds between polls: a change is in force within ~1 s

Source = Callable[[], Cluster]


def apply(text: str, node_netns: str) -> None:
    """Load ``text`` (a whole-table transaction) in ``node_netns``."""
    netns.run("nft", "-f", "-", netns=node_netns, input_text=text)


def parse_policies(items: list[dict[str, Any]], reported: set[str]) -> tuple[Policy, ...]:
    """The readable policies; each unreadable one logged once (``reported`` remembers which)."""
    policies = []
    for obj in items:
        try:
            policies.append(parse_policy(obj))
        except NetPolicyError as exc:
            if str(exc) not in reported:
                reported.add(str(exc))
                log.warning("NetworkPolicy not enforced: %s", exc)
    return tuple(policies)


def api_source(api_client: k8s.ApiClient, node_addresses: tuple[str, ...]) -> Source:
    """Reads the cluster through the API server, as a CNI's policy agent watches it."""
    core, networking = k8s.CoreV1Api(api_client), k8s.NetworkingV1Api(api_client)
    reported: set[str] = set()

    def items(answer: Any) -> list[dict[str, Any]]:
        return list(api_client.sanitize_for_serialization(answer).get("items") or [])

    def read() -> Cluster:
        return Cluster(
            namespaces_from_api(items(core.list_namespace())),
            pods_from_api(items(core.list_pod_for_all_namespaces())),
            parse_policies(items(networking.list_network_policy_for_all_namespaces()), reported),
            node_addresses,
        )

    return read


class Enforcer:
    """Polls ``source`` and loads a changed ruleset into the table of ``node_netns`` (one node
    namespace, or several)."""

    def __init__(self, source: Source, node_netns: str | Sequence[str], interval: float = INTERVAL) -> None:
        self.source = source
        self.node_namespaces = (node_netns,) if isinstance(node_netns, str) else tuple(node_netns)
        self.interval = interval
        self.applied = ""  # the ruleset now loaded
        self.generation = 0  # how many rulesets were loaded
        self._stop = threading.Event()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def sync(self) -> bool:
        """One round: read, compile, load if changed; True when a new ruleset was loaded."""
        cluster = self.source()
        text = ruleset(cluster)
        if text == self.applied:
            return False
        started = time.monotonic()
        for ns in self.node_namespaces:
            apply(text, ns)
        with self._changed:
            self.applied = text
            self.generation += 1
            self._changed.notify_all()
        log.info(
            "network policies applied policies=%d isolated=%d pods=%d in %.0f ms",
            len(cluster.policies),
            isolated(cluster),
            len(cluster.pods),
            (time.monotonic() - started) * 1000,
        )
        return True

    def _loop(self) -> None:
        failing = False
        while not self._stop.is_set():
            try:
                self.sync()
                failing = False
            except (k8s.ApiException, HTTPError, netns.NetnsError) as exc:
                if not failing:  # logged once per outage, not every poll
                    log.warning("network policies not applied (retrying): %s", exc)
                failing = True
            self._stop.wait(self.interval)

    def start(self) -> Enforcer:
        self.sync()  # the first table is in place before any pod of the caller starts
        self._thread = threading.Thread(target=self._loop, name="netpolicy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def wait_generation(self, after: int, timeout: float) -> bool:
        """True once a ruleset newer than generation ``after`` is loaded (within ``timeout`` s)."""
        with self._changed:
            return self._changed.wait_for(lambda: self.generation > after, timeout)
