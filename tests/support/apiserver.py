"""The sandbox's Kubernetes API server stand-in, run in the test process, with a real
``kubernetes`` client for it: what the integration tests of every API reader (the mapper, the
watchers, the API server's own log options) start from."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from kubernetes import client, config

from sandbox.apiserver import ApiServer, Dial, tcp_dial


@dataclass(frozen=True)
class RunningApi:
    server: ApiServer
    kubeconfig: Path  # for the processes under test
    api: client.ApiClient  # for the test itself

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)


@contextlib.contextmanager
def running_api(directory: Path, log_dir: Path | None = None, dial: Dial = tcp_dial) -> Iterator[RunningApi]:
    """The API server (pod logs read from ``log_dir``, admission webhooks reached through ``dial``),
    its kubeconfig in ``directory``, and a client of it; all stopped on exit."""
    server = ApiServer(log_dir=log_dir, dial=dial)
    server.start()
    try:
        kubeconfig = server.write_kubeconfig(directory / "kubeconfig")
        configuration = client.Configuration()
        config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
        with client.ApiClient(configuration) as api:
            yield RunningApi(server, kubeconfig, api)
    finally:
        server.stop()
