"""Everything the sandbox runs besides the product, in start order.

The product itself (the mapper, the sniffer, the watchers, AWS visibility's proxy, forwarder and
webhook) is not here: the sandbox installs it from its helm chart, rendered with the values a user
could set (:mod:`sandbox.chartrun`), and runs each pod as the chart's templates state it.

:data:`WORKLOADS` is the rest of the cluster: the system pods (started first: :data:`FIRST` of
them, before the chart's), then the patterns of :mod:`sandbox.topology` (the demo, the identity
extras, the Kafka and Istio tutorials) and the AWS demo (:mod:`sandbox.awsdemo`), whose pods the
chart's admission webhook patches.
:mod:`sandbox.supervisor` turns them into API objects and processes.
"""

from __future__ import annotations

from sandbox.awsdemo import AWS_DEMO
from sandbox.topology import DEMO, EXTRAS, ISTIO, KAFKA, SYSTEM, Workload

WORKLOADS: tuple[Workload, ...] = SYSTEM + DEMO + EXTRAS + KAFKA + ISTIO + AWS_DEMO
FIRST = len(SYSTEM)
"""How many of :data:`WORKLOADS` start before the chart's pods (the cluster's DNS)."""
