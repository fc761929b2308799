"""``python -m sandbox up|down|status|demo|restart`` — a Kubernetes cluster on one machine.

``up`` starts the supervisor (:mod:`sandbox.supervisor`) detached and waits until it is
ready; it is idempotent. ``down`` stops it and removes exactly what the state file
(:mod:`sandbox.state`) lists, even after a crash. ``status`` prints the pods. ``demo`` is
``up`` plus the pods table and ten seconds of live traffic. ``restart <ns> <pod> [container]``
restarts one container of a running pod (its restart count goes up, its log becomes the
previous log), through the supervisor's control endpoint (:mod:`sandbox.control`). ``traffic stop|start
<ns> <workload>`` stops or starts a workload's calls, ``traffic add <ns> <client> <server>`` makes the
client call the server's first Service port every two seconds, ``traffic remove ...`` ends that
(:mod:`sandbox.trafficcontrol`).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sandbox import network
from sandbox.state import DEFAULT_STATE_DIR, SandboxState, StateFile


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped) is not alive.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def is_up(state: SandboxState) -> bool:
    return state.ready and _alive(state.pids.get("supervisor", 0))


def up(state_dir: Path, timeout: float = 90.0) -> int:
    files = StateFile(state_dir)
    if is_up(files.load()):
        print(f"sandbox already up (state in {state_dir})")
        return 0
    if files.exists():
        down(state_dir, quiet=True)
    state_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with (state_dir / "supervisor.log").open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sandbox", "supervise", "--state-dir", str(state_dir)],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # outlives this command, like a daemon
        )
    deadline = started + timeout
    while time.monotonic() < deadline:
        if is_up(files.load()):
            print(f"sandbox up in {time.monotonic() - started:.1f}s (state in {state_dir})")
            return 0
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    log_tail = (state_dir / "supervisor.log").read_text(errors="replace").splitlines()[-25:]
    print("sandbox failed to start; supervisor log:\n  " + "\n  ".join(log_tail), file=sys.stderr)
    down(state_dir, quiet=True)
    return 1


def _remove_host_dirs(state: SandboxState) -> None:
    """The /etc/netns directories, and the mount points the kubelet made on the machine for pods'
    volumes: those only if still empty, deepest first (nothing was ever mounted on them outside the
    pods' own mount namespaces)."""
    for d in state.etc_netns:
        for f in Path(d).glob("*"):
            f.unlink()
        if Path(d).exists():
            Path(d).rmdir()
    for d in sorted(state.mount_points, key=len, reverse=True):
        with contextlib.suppress(OSError):
            Path(d).rmdir()


def down(state_dir: Path, quiet: bool = False) -> int:
    files = StateFile(state_dir)
    if not files.exists():
        if not quiet:
            print("sandbox is not up")
        return 0
    state = files.load()
    sup = state.pids.get("supervisor", 0)
    if _alive(sup):
        os.kill(sup, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while _alive(sup) and time.monotonic() < deadline:
            time.sleep(0.1)
    for pid in state.pids.values():
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    # Pods first, the nodes (which hold the bridges, the link and the nft tables) last.
    for name in sorted(state.netns, key=lambda n: n in network.NODE_NAMESPACES):
        network.delete_netns(name)
    _remove_host_dirs(state)
    for f in sorted(state_dir.rglob("*"), reverse=True):
        f.unlink() if f.is_file() or f.is_symlink() else f.rmdir()
    state_dir.rmdir()
    if not quiet:
        print(f"sandbox down: removed {len(state.netns)} namespaces, {len(state.etc_netns)} /etc/netns dirs")
    return 0


def status(state_dir: Path) -> int:
    from sandbox.views import pods_table

    state = StateFile(state_dir).load()
    if not is_up(state):
        print("sandbox is not up")
        return 1
    print(pods_table(state_dir))
    return 0


def restart(state_dir: Path, namespace: str, pod: str, container: str | None) -> int:
    from sandbox.control import send

    state = StateFile(state_dir).load()
    if not is_up(state):
        print("sandbox is not up", file=sys.stderr)
        return 1
    if not send(state.forwards["control"], namespace, pod, "restart", container):
        print(f"no running pod {namespace}/{pod}* with container {container or '(first)'}", file=sys.stderr)
        return 1
    print(f"restarted {namespace}/{pod} container {container or '(first)'}")
    return 0


def traffic(state_dir: Path, action: str, namespace: str, workload: str, server: str | None) -> int:
    from sandbox.control import traffic as send_traffic

    if (action in ("add", "remove")) != (server is not None):
        print(
            "traffic: add and remove need NAMESPACE CLIENT SERVER; stop and start NAMESPACE WORKLOAD",
            file=sys.stderr,
        )
        return 2
    state = StateFile(state_dir).load()
    if not is_up(state):
        print("sandbox is not up", file=sys.stderr)
        return 1
    if not send_traffic(state.forwards["control"], namespace, workload, action, server):
        what = f"{namespace}/{workload} -> {server}" if server else f"{namespace}/{workload}"
        print(
            f"traffic {action} not done for {what} (no such workload or Service, or it makes no calls)",
            file=sys.stderr,
        )
        return 1
    print(f"traffic {action} {namespace}/{workload}" + (f" -> {server}" if server else ""))
    return 0


def helm_test(state_dir: Path) -> int:
    """``helm test network-mapper``: the chart's test pods run in the sandbox; 0 when all succeed."""
    from sandbox.control import helm_test as run_helm_test

    state = StateFile(state_dir).load()
    if not is_up(state):
        print("sandbox is not up", file=sys.stderr)
        return 1
    passed, report = run_helm_test(state.forwards["control"])
    print(f"NAME: network-mapper\nNAMESPACE: otterize-system\n{report}")
    return 0 if passed else 1


def _print_helm_test(state_dir: Path) -> None:
    """The demo's line for ``helm test``: each test pod's phase and how much of the map it listed."""
    from sandbox.control import helm_test as run_helm_test

    passed, report = run_helm_test(StateFile(state_dir).load().forwards["control"])
    for line in report.splitlines():
        if line.startswith(("TEST SUITE:", "Phase:")):
            print(f"  {line}")
    listed = sum(1 for line in report.splitlines() if line.endswith(" calls:"))
    print(f"  its log lists {listed} clients' calls ({'passed' if passed else 'FAILED'})")


def _print_policy_check(url: str, state_dir: Path) -> None:
    """The demo's line for ``network-mapper check``: the exported NetworkPolicies, checked against
    the map they came from (the map may grow in between: a call first seen after the export is
    rightly reported)."""
    cli = [sys.executable, "-m", "agent.cli", "--mapper-url", url]
    exported = state_dir / "demo-networkpolicies.yaml"
    subprocess.run(
        [*cli, "export", "--format", "networkpolicy", "-o", str(exported)], capture_output=True, check=False
    )
    checked = subprocess.run([*cli, "check", str(exported)], capture_output=True, text=True, check=False)
    for line in (checked.stdout + checked.stderr).strip().splitlines()[-3:]:
        print(f"  {line}")
    print(f"  (exit {checked.returncode}; the policies are in {exported})")


def _print_nodes() -> None:
    from sandbox.nodes import NODES

    print("\ntwo nodes, routed to each other (a cross-node call crosses both; the sniffer runs on each):")
    for node in NODES:
        print(f"  {node.name}: address {node.ip}, pods in {node.pod_cidr} (network namespace {node.netns})")


def _print_coverage(url: str) -> None:
    """The demo's last word: ``network-mapper coverage`` (every node covered, no drop unexplained),
    once the sniffers' status reports are in (up to 40 s); left out where the CLI lacks it."""
    import importlib.util

    print(f"\nnetwork-mapper --mapper-url {url} coverage: what the map may miss (nodes, watchers, drops):")
    if importlib.util.find_spec("agent.cli.coverage") is None:
        print("  (network-mapper coverage is not in this build)")
        return
    cli = [sys.executable, "-m", "agent.cli", "--mapper-url", url, "coverage"]
    deadline = time.monotonic() + 40
    while (result := subprocess.run(cli, capture_output=True, text=True, check=False)).returncode == 1:
        if time.monotonic() > deadline:
            break
        time.sleep(2)
    print("\n".join(f"  {line}" for line in (result.stdout + result.stderr).rstrip().splitlines()))
    print(f"  (exit {result.returncode})")


def _cloud_map(state_dir: Path) -> dict[str, frozenset[str]]:
    import requests

    from sandbox.views import cloud_demo_map

    try:
        return cloud_demo_map(state_dir)
    except requests.RequestException:
        return {}


def demo(state_dir: Path, seconds: float) -> int:
    from sandbox.awsdemo import AWS_DEMO_NS, CLIENT
    from sandbox.topology import EXPECTED_DEMO_MAP, ISTIO_NS, KAFKA_NS
    from sandbox.views import (
        cloud_access,
        mapper_url,
        traffic_view,
        wait_for_aws_map,
        wait_for_demo_map,
        wait_for_watcher_maps,
    )

    if rc := up(state_dir):
        return rc
    print(
        "\nthe product runs from its helm chart (helm/network-mapper, rendered as release network-mapper"
        "\nin otterize-system): its pods below are its templates' pods, READY their readiness probes"
    )
    status(state_dir)
    _print_nodes()
    print(f"\ncapturing live traffic on the nodes for {seconds:.0f}s ...", flush=True)
    print(traffic_view(state_dir, seconds))
    url = mapper_url(state_dir)
    print("\nwaiting for the network-mapper to map otterize-ecom-demo (up to 60s) ...", flush=True)
    complete, took = wait_for_demo_map(url, 60.0)
    print(f"demo map {'complete' if complete else 'INCOMPLETE'} after {took:.0f}s", flush=True)
    print(f"\nwaiting for the Kafka and Istio watchers ({KAFKA_NS}, {ISTIO_NS}; up to 60s) ...", flush=True)
    complete, took = wait_for_watcher_maps(url, 60.0)
    print(
        f"watchers' map {'complete' if complete else 'INCOMPLETE'} after {took:.0f}s; network-mapper list:\n",
        flush=True,
    )
    print(f"\nwaiting for the IAM proxy's view of {AWS_DEMO_NS} (up to 60s) ...", flush=True)
    complete, took = wait_for_aws_map(url, 60.0)
    print(
        f"AWS map {'complete' if complete else 'INCOMPLETE'} after {took:.0f}s; network-mapper list:\n",
        flush=True,
    )
    subprocess.run([sys.executable, "-m", "agent.cli", "--mapper-url", url, "list"], check=False)
    print(f"\n{CLIENT}'s least-privilege IAM policy (network-mapper export --format iam -n {AWS_DEMO_NS}):")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "agent.cli",
            "--mapper-url",
            url,
            "export",
            "--format",
            "iam",
            "-n",
            AWS_DEMO_NS,
        ],
        check=False,
    )
    print("\nhelm test network-mapper (the chart's test pod runs `network-mapper list` in the cluster):")
    _print_helm_test(state_dir)
    print("\nnetwork-mapper check: would the exported NetworkPolicies deny any call seen?")
    _print_policy_check(url, state_dir)
    print(f"\ntry: network-mapper --mapper-url {url} export --format yaml")
    print(
        f"     network-mapper --mapper-url {url} export --format istio   (or kafka-acl, kafka-acl-commands)"
    )
    base, tenant, token = cloud_access(state_dir)
    print(f"\nthe local cloud ({base}) holds tenant {tenant}'s graph, uploaded by the mapper:", flush=True)
    deadline = time.monotonic() + 60
    while (cloud := _cloud_map(state_dir)) != EXPECTED_DEMO_MAP and time.monotonic() < deadline:
        time.sleep(1)
    edges = sum(len(v) for v in cloud.values())
    whole = "the whole map" if cloud == EXPECTED_DEMO_MAP else "incomplete"
    print(f"  {edges} demo edges in the cloud ({whole})")
    print(f"  curl -H 'Authorization: Bearer {token}' {base}/graph")
    print(f"  the console: {base}/#token={token}   (the token stays in the fragment: never sent to a server)")
    print("  (a page at a time: while nextCursor is not null, repeat with ?cursor=<nextCursor>)")
    print("\nkubectl: kubectl --kubeconfig", state_dir / "kubeconfig", "get pods -A -o wide")
    print(f"  Kafka's authorizer log: kubectl ... logs -n {KAFKA_NS} kafka-0 | grep kafka.authorizer.logger")
    print(f"  Istio sidecars: kubectl ... logs -n {ISTIO_NS} deploy/server -c istio-proxy")
    print(
        f"  AWS visibility: kubectl ... get pod -n {AWS_DEMO_NS} -o yaml   (the webhook's patch: dnsConfig,"
    )
    print("    AWS_CA_BUNDLE); proxy: kubectl ... logs -n otterize-system deploy/network-mapper-aws-proxy")
    print("restart a container: python -m sandbox restart <namespace> <pod> [container]")
    print("NetworkPolicies are enforced (nftables on the node, within ~1 s): kubectl ... apply -f p.yaml")
    print("  and: network-mapper check p.yaml; network-mapper snapshot save NAME; network-mapper diff NAME")
    print(
        "traffic: python -m sandbox traffic stop|start <namespace> <workload>"
        " | add|remove <namespace> <client> <server>"
    )
    _print_coverage(url)
    print("\nstop it: python -m sandbox down")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--state-dir", type=Path, default=DEFAULT_STATE_DIR, help="where the sandbox keeps its state"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("up", help="start the sandbox cluster (idempotent)")
    sub.add_parser("down", help="stop it and remove everything it created")
    sub.add_parser("status", help="show the pods")
    d = sub.add_parser("demo", help="up, then show pods and live traffic")
    d.add_argument("--seconds", type=float, default=10.0, help="how long to capture traffic")
    r = sub.add_parser("restart", help="restart one container of a pod (as if its process exited)")
    r.add_argument("namespace")
    r.add_argument("pod", help="the pod's name (or a prefix of it)")
    r.add_argument("container", nargs="?", help="the container (default: the pod's first)")
    t = sub.add_parser("traffic", help="stop/start a workload's calls, or add a call (tests, the demo)")
    t.add_argument("action", choices=("stop", "start", "add", "remove"))
    t.add_argument("namespace")
    t.add_argument("workload", help="the workload (the client, for add)")
    t.add_argument(
        "server", nargs="?", help="add, remove: the server workload (its Service's first port is called)"
    )
    sub.add_parser("helm-test", help="run the chart's `helm test` pods (they query the mapper)")
    s = sub.add_parser("supervise", help=argparse.SUPPRESS)
    s.add_argument("--state-dir", type=Path, dest="sup_state_dir", required=True)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("sandbox: must run as root (it creates network namespaces and nftables rules)", file=sys.stderr)
        return 2
    if args.command == "supervise":
        from sandbox.supervisor import main as supervise

        supervise(args.sup_state_dir)
        return 0
    commands = {
        "up": lambda: up(args.state_dir),
        "down": lambda: down(args.state_dir),
        "status": lambda: status(args.state_dir),
        "demo": lambda: demo(args.state_dir, args.seconds),
        "restart": lambda: restart(args.state_dir, args.namespace, args.pod, args.container),
        "helm-test": lambda: helm_test(args.state_dir),
        "traffic": lambda: traffic(args.state_dir, args.action, args.namespace, args.workload, args.server),
    }
    return commands[args.command]()


if __name__ == "__main__":
    sys.exit(main())
