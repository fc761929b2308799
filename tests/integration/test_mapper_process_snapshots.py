"""Cluster facts and snapshots through the real mapper process (``python -m agent.mapper``) over the
in-process sandbox Kubernetes API: namespace labels, container ports and node addresses as the API
server gives them; a saved snapshot with its edges' ports and the facts; automatic snapshots on a
short interval, bounded; snapshots surviving ``resetCapture`` and a restart."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from agent import snapshotwire
from agent.mapperclient import GraphQLErrors
from agent.model import NamedPort, NamespaceFacts, WorkloadIdentity
from tests.support.mapper_process import CART, FRONTEND, Cluster, MapperProcess, running_cluster, wait_until

OWLS = "owl-policies"
ROOST = WorkloadIdentity(OWLS, "barn-owl", "Pod")
HOST_AGENT = WorkloadIdentity(OWLS, "hoot-agent", "Pod")
NODE_IP = "192.168.50.1"  # the hostIP of running_cluster's pods

FACTS = (
    "{ clusterFacts { namespaces { name labels { key value } } workloads { namespace name kind "
    "labels { key value } ports { name port protocol } hostNetwork ips } nodes { name addresses } } }"
)
LIST = "{ snapshots { name takenAt auto edges } }"
GET = "query S($name: String!) { snapshot(name: $name) }"
SAVE = "mutation S($name: String!) { saveSnapshot(name: $name) { name auto edges } }"
RESET = "mutation { resetCapture }"


def _add_policy_objects(cluster: Cluster) -> None:
    """A labelled namespace, a pod with named container ports, a hostNetwork pod."""
    with client.ApiClient(_configuration(cluster)) as api:
        core = client.CoreV1Api(api)
        core.create_namespace(
            client.V1Namespace(metadata=client.V1ObjectMeta(name=OWLS, labels={"team": "night"}))
        )
        ports = [
            client.V1ContainerPort(name="http", container_port=8080, protocol="TCP"),
            client.V1ContainerPort(name="dns", container_port=5353, protocol="UDP"),
        ]
        for name, host_network, ip in ((ROOST.name, False, "10.244.7.40"), (HOST_AGENT.name, True, NODE_IP)):
            core.create_namespaced_pod(
                OWLS,
                client.V1Pod(
                    metadata=client.V1ObjectMeta(name=name, labels={"app": name}),
                    spec=client.V1PodSpec(
                        containers=[client.V1Container(name="main", image="demo", ports=ports)],
                        node_name="node-1",
                        host_network=host_network,
                    ),
                    status=client.V1PodStatus(phase="Running", pod_ip=ip, host_ip=NODE_IP),
                ),
            )


def _configuration(cluster: Cluster) -> client.Configuration:
    from kubernetes import config

    configuration = client.Configuration()
    config.load_kube_config(config_file=str(cluster.kubeconfig), client_configuration=configuration)
    return configuration


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("cluster")) as running:
        _add_policy_objects(running)
        yield running


def execute(mapper: MapperProcess, document: str, variables: dict[str, Any] | None = None) -> Any:
    api = mapper.client()
    try:
        return api.execute(document, variables or {})
    finally:
        api.close()


def test_cluster_facts_come_from_the_api_server(cluster: Cluster, tmp_path: Path) -> None:
    with MapperProcess(cluster, tmp_path) as mapper:
        facts = wait_until(
            lambda: (found := execute(mapper, FACTS)["clusterFacts"])["namespaces"] and found,
            10.0,
            "clusterFacts",
        )
    namespaces = {n["name"]: {p["key"]: p["value"] for p in n["labels"]} for n in facts["namespaces"]}
    # The API server labels every namespace with its own name; ours carries its label too.
    assert namespaces[OWLS] == {"kubernetes.io/metadata.name": OWLS, "team": "night"}
    assert set(namespaces) >= {"kube-system", *cluster.namespaces}
    workloads = {(w["namespace"], w["name"], w["kind"]): w for w in facts["workloads"]}
    roost = workloads[(ROOST.namespace, ROOST.name, ROOST.kind)]
    assert roost["ports"] == [
        {"name": "dns", "port": 5353, "protocol": "UDP"},
        {"name": "http", "port": 8080, "protocol": "TCP"},
    ]
    assert (roost["ips"], roost["hostNetwork"], roost["labels"]) == (
        ["10.244.7.40"],
        False,
        [{"key": "app", "value": ROOST.name}],
    )
    agent = workloads[(HOST_AGENT.namespace, HOST_AGENT.name, HOST_AGENT.kind)]
    assert (agent["hostNetwork"], agent["ips"]) == (True, [NODE_IP])
    front = workloads[(FRONTEND.namespace, FRONTEND.name, FRONTEND.kind)]
    assert front["ips"] == [cluster.pod_ips[FRONTEND]]
    assert facts["nodes"] == [{"name": "node-1", "addresses": [NODE_IP]}]


def test_snapshots_are_saved_taken_automatically_and_kept(cluster: Cluster, tmp_path: Path) -> None:
    args = ["--snapshot-interval", "1", "--auto-snapshots", "2", "--snapshot-limit", "3"]
    with MapperProcess(cluster, tmp_path, args) as mapper:
        mapper.report_tcp([(FRONTEND, CART, 7070)])
        mapper.wait_for_edges([(FRONTEND, CART)])
        assert execute(mapper, SAVE, {"name": "before"}) == {
            "saveSnapshot": {"name": "before", "auto": False, "edges": 1}
        }
        snapshot = snapshotwire.decode_snapshot(execute(mapper, GET, {"name": "before"})["snapshot"])
        (edge,) = snapshot.edges
        assert (edge.key, edge.ports) == ((FRONTEND, CART), (7070,))
        assert NamespaceFacts(OWLS, (("kubernetes.io/metadata.name", OWLS), ("team", "night"))) in (
            snapshot.facts.namespaces
        )
        roost = next(w for w in snapshot.facts.workloads if w.workload == ROOST)
        assert NamedPort("http", 8080) in roost.ports
        with pytest.raises(GraphQLErrors, match="reserved"):
            execute(mapper, SAVE, {"name": "auto-mine"})

        def autos() -> list[dict[str, Any]]:
            return [s for s in execute(mapper, LIST)["snapshots"] if s["auto"]]

        # One a second, at most two kept: wait until the first two have been replaced.
        first = wait_until(autos, 10.0, "an automatic snapshot")
        wait_until(lambda: not {s["name"] for s in first} & {s["name"] for s in autos()}, 15.0, "newer ones")
        assert len(autos()) <= 2 and all(s["name"].startswith("auto-") for s in autos())
        assert execute(mapper, RESET) == {"resetCapture": True}
        assert mapper.edges() == []
    with MapperProcess(cluster, tmp_path) as mapper:  # the same data dir, restarted
        names = [s["name"] for s in execute(mapper, LIST)["snapshots"]]
        assert "before" in names
        kept = snapshotwire.decode_snapshot(execute(mapper, GET, {"name": "before"})["snapshot"])
        assert kept == snapshot
