"""The sniffer's counters (:class:`agent.metrics.Metrics`).

The capture loop counts packets, parsed DNS responses and parse errors, and copies libpcap's own
totals (what passed the filter, what the kernel and the interface dropped); the socket scanner
counts scans and the owners of the node network's client sockets (named a pod or not,
unreadable), the reporter's collector counts pending and dropped pairs and the reporter
counts mutations sent and failed. :mod:`agent.health` serves :meth:`SnifferMetrics.render` at
``/metrics``.
"""

from __future__ import annotations

from agent.metrics import Counter, Gauge, Metrics
from agent.reporter import report_counters

PREFIX = "network_mapper_sniffer_"


class SnifferMetrics(Metrics):
    """Every metric of the sniffer. One instance per process, passed to each component."""

    def __init__(self) -> None:
        self.packets_seen = Counter(f"{PREFIX}packets_seen_total", "Packets delivered by the capture.")
        self.dns_responses_parsed = Counter(
            f"{PREFIX}dns_responses_parsed_total", "DNS responses parsed into answers."
        )
        self.parse_errors = Counter(f"{PREFIX}parse_errors_total", "Captured frames that failed to parse.")
        self.kernel_received = Counter(
            f"{PREFIX}kernel_received_total", "Packets the capture filter passed (libpcap ps_recv)."
        )
        self.kernel_dropped = Counter(
            f"{PREFIX}kernel_dropped_total", "Packets the kernel dropped: capture buffer full (ps_drop)."
        )
        self.interface_dropped = Counter(
            f"{PREFIX}interface_dropped_total", "Packets the interface dropped (libpcap ps_ifdrop)."
        )
        self.pairs_pending = Gauge(
            f"{PREFIX}pairs_pending", "Distinct (source, destination) pairs waiting to be reported."
        )
        self.pairs_dropped = Counter(
            f"{PREFIX}pairs_dropped_total", "New pairs refused because the pending bound was reached."
        )
        self.reports_sent, self.report_failures = report_counters(PREFIX)
        self.socket_scans = Counter(f"{PREFIX}socket_scans_total", "Completed /proc socket scans.")
        # Client sockets of the node's own network namespace (hostNetwork pods and node processes),
        # per scan: whose owning process named its pod, and whose did not (a node process, or one
        # that could not be read); processes whose descriptors could not be read (another uid's).
        self.socket_owners_named = Counter(
            f"{PREFIX}socket_owners_named_total", "Node-network client sockets whose owner named its pod."
        )
        self.socket_owners_unnamed = Counter(
            f"{PREFIX}socket_owners_unnamed_total", "Node-network client sockets whose owner named no pod."
        )
        self.socket_owner_unreadable = Counter(
            f"{PREFIX}socket_owner_unreadable_total",
            "Node-network processes whose /proc/<pid>/fd could not be read (another uid's).",
        )
