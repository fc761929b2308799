"""The server side of a DNS answer: the target of the edges from the client that looked the name up.

Asked by `agent.mapper.resolver`, like `agent.mapper.servers` (whose hits, spans and service
lookup it shares); answers from `agent.mapper.cluster.ClusterState`, counting every unresolved
name in the shared `stats` by reason.

`<svc>.<ns>.svc.<domain>` is the Service's endpoint workloads (the pods themselves for a headless
Service, the external name for an ExternalName one); `<host>.<svc>.<ns>.svc.<domain>` one pod of a
headless Service; `a-b-c-d.<ns>.pod.<domain>` the pod with that IP; any other name under the
cluster domain is unsupported; every name outside it is an Internet target.

One Internet edge per name: each external DNS answer is remembered per (client IP, answered IP)
(bounded, oldest first out), so a TCP connection or socket-scan entry from that client to that IP
becomes an edge to the *same* `InternetTarget` (the store merges them and adds the method) rather
than a second, IP-only one. A name holds from an hour before its answer was seen until the later of
its TTL and an hour after (clients keep connections, and their own caches, past the TTL). A
connection reported before the answer that named its IP keeps its IP-only target.
"""

from __future__ import annotations

from collections import Counter
from itertools import islice

from agent.mapper.cluster import ClusterState
from agent.mapper.servers import ALWAYS, Hit, ServerResolver, Span
from agent.model import DnsAnswer, InternetTarget, WorkloadIdentity

NAMED_MAX = 100_000  # (client IP, answered IP) pairs remembered for naming Internet IPs
NAME_HOLD = 3600.0  # a DNS name holds for its IP for at least this long (and as long before)


class NameResolver:
    def __init__(
        self, state: ClusterState, stats: Counter[str], servers: ServerResolver, domain: str
    ) -> None:
        self.state, self.stats, self._servers = state, stats, servers
        domain = domain.strip(".").lower()
        self._domain, self._domain_suffix = domain, "." + domain
        self._svc_suffix, self._pod_suffix = f".svc.{domain}", f".pod.{domain}"
        # (client IP, answered IP) → (valid from, until, the hit its DNS answer named), oldest first.
        self._named: dict[tuple[str, str], tuple[float, float, Hit]] = {}

    def name_targets(self, name: str, ips: tuple[str, ...], t: float) -> tuple[list[Hit], Span | None]:
        """The targets of a DNS answer for `name` (lower case, no final dot), and the span they hold for."""
        if name.endswith(self._svc_suffix):
            parts = name[: -len(self._svc_suffix)].split(".")
            if len(parts) == 2:  # <service>.<namespace>
                return self._service_name_targets(parts[1], parts[0], ips, t)
            if len(parts) == 3:  # <hostname>.<service>.<namespace>: one pod of a headless service
                hits = self._pod_hits(ips, t, parts[1])
                if not hits:
                    pod = self.state.pod_named(parts[2], parts[0])
                    hits = [(pod.identity, parts[1], False)] if pod is not None else []
                if not hits:
                    self.stats["dns_service_pod_unknown"] += 1
                return hits, None
            self.stats["dns_cluster_name_unsupported"] += 1
            return [], None
        if name.endswith(self._pod_suffix):  # a-b-c-d.<namespace>.pod.<domain>
            dashed = name[: -len(self._pod_suffix)].split(".", maxsplit=1)[0]
            ip = dashed.replace("-", ".") if dashed.count("-") == 3 else dashed.replace("-", ":")
            hits = self._pod_hits((ip,), t, "")
            if not hits:
                self.stats["dns_pod_unknown"] += 1
            return hits, None
        if name == self._domain or name.endswith(self._domain_suffix):
            self.stats["dns_cluster_name_unsupported"] += 1
            return [], None
        return self._internet_targets(name, ips, t)

    def _internet_targets(self, name: str, ips: tuple[str, ...], t: float) -> tuple[list[Hit], Span | None]:
        external = tuple(ip for ip in ips if not self._servers.in_cluster(ip, t))
        if len(external) == len(ips):
            return [(InternetTarget(name, tuple(sorted(ips))), "", False)], ALWAYS
        # A name outside the cluster answered with the cluster's own addresses: DNS interception (the
        # AWS visibility forwarder answers AWS names with its proxy's Service) or split-horizon DNS.
        # Those addresses are not the Internet; the connections that follow show what they are.
        self.stats["dns_external_name_in_cluster"] += 1
        hits: list[Hit] = [(InternetTarget(name, tuple(sorted(external))), "", False)] if external else []
        return hits, None

    def _service_name_targets(
        self, namespace: str, name: str, ips: tuple[str, ...], t: float
    ) -> tuple[list[Hit], Span | None]:
        found = self.state.service_span_named(namespace, name, t)
        if found is None:
            self.stats["dns_service_unknown"] += 1
            return [], None
        start, end, service = found
        if service.external_name:
            target = InternetTarget(service.external_name.rstrip(".").lower(), tuple(sorted(ips)))
            return [(target, name, False)], (start, end)
        if service.headless:  # the answer's IPs are the pods themselves
            hits = self._pod_hits(ips, t, name)
            if hits:
                return hits, None
        return self._servers.service_hits(service), (start, end)

    def _pod_hits(self, ips: tuple[str, ...], t: float, service: str) -> list[Hit]:
        found: dict[WorkloadIdentity, None] = {}
        for ip in ips:
            pod = self.state.pod_at(ip, t)
            if pod is not None:
                found[pod.identity] = None
        return [(identity, service, False) for identity in found]

    def remember_name(self, obs: DnsAnswer, hit: Hit) -> None:
        """Connections from `obs`'s client to the IPs it answered go to `hit`'s target (see module doc)."""
        t, ttl, client, named = obs.seen_at, obs.ttl, obs.client_ip, self._named
        entry = (t - NAME_HOLD, t + (ttl if ttl > NAME_HOLD else NAME_HOLD), hit)
        for ip in obs.ips:
            key = (client, ip)
            # Re-inserted at the end, so the dict's order is answer order: the front is the oldest.
            if named.pop(key, None) is None and len(named) >= NAMED_MAX:
                # Oldest first, a tenth at a time: one front scan per many evictions (a front scan
                # per eviction would walk every earlier deletion's hole).
                for old in list(islice(named, NAMED_MAX // 10 or 1)):
                    del named[old]
            named[key] = entry

    def named(self, client_ip: str, server_ip: str, t: float) -> Hit | None:
        """The hit of the DNS answer that named `server_ip` for `client_ip` around `t`, if any."""
        entry = self._named.get((client_ip, server_ip))
        if entry is not None and entry[0] <= t < entry[1]:
            self.stats["internet_ip_named_by_dns"] += 1
            return entry[2]
        return None
