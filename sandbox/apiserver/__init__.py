"""The sandbox's Kubernetes API server: the real REST wire protocol over an in-memory store.

No kube-apiserver binary can run in the sandbox, so this package stands in for one. Clients —
the real Python `kubernetes` client, kubectl, and the sandbox's pod runner — talk to it over
HTTP exactly as they would to a cluster; objects live in `store.Store` and vanish on exit.
Start it in-process with `ApiServer(...).start()` or as `python -m sandbox.apiserver`.
"""

from sandbox.apiserver.server import CONTEXT_NAME, ApiServer
from sandbox.apiserver.webhookclient import Dial, tcp_dial

__all__ = ["CONTEXT_NAME", "ApiServer", "Dial", "tcp_dial"]
