"""A Service's target workloads stay right while only the memos a pod's change can affect are dropped.

``ClusterState.service_targets`` memoises each Service's answer and a pod's change drops only the
answers that read that pod's namespace (or looked a pod up by IP). The check: after every event of a
generated history (pods coming and going in two namespaces, IPs reused, Endpoints and
EndpointSlices naming pods across namespaces or by IP only), the memoised answer of a state asked
all along equals the answer of a fresh state that saw the same events and computes it once.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.mapper.cluster import ClusterState
from tests.unit.mapper.test_mapper_cluster import T0, pod, service

NAMESPACES = ("a", "b")
PODS = ("p0", "p1", "p2", "p3")
IPS = ("10.244.0.1", "10.244.0.2", "10.244.0.3")
SERVICES = (("a", "s0", "10.96.0.1"), ("b", "s1", "10.96.0.2"))

Event = tuple[str, str, Any]  # (watch event type, kind, object)


def _address(target: tuple[str, str] | None, ip: str) -> dict[str, Any]:
    if target is None:  # an address without a targetRef: the pod is found by IP
        return {"ip": ip}
    ns, name = target
    return {"ip": ip, "targetRef": {"kind": "Pod", "namespace": ns, "name": name, "uid": f"uid-{ns}-{name}"}}


@st.composite
def histories(draw: st.DrawFn) -> list[Event]:
    events: list[Event] = [("ADDED", "Service", service(name, ip, ns=ns)) for ns, name, ip in SERVICES]
    for _ in range(draw(st.integers(1, 25))):
        ns, name, ip = (
            draw(st.sampled_from(NAMESPACES)),
            draw(st.sampled_from(PODS)),
            draw(st.sampled_from(IPS)),
        )
        choice = draw(st.integers(0, 4))
        if choice <= 1:
            events.append(("ADDED", "Pod", pod(name, ip, ns=ns, uid=f"uid-{ns}-{name}")))
        elif choice == 2:
            events.append(("DELETED", "Pod", pod(name, ip, ns=ns, uid=f"uid-{ns}-{name}")))
        else:
            svc_ns, svc, _ = draw(st.sampled_from(SERVICES))
            refs = draw(
                st.lists(
                    st.tuples(
                        st.one_of(st.none(), st.tuples(st.sampled_from(NAMESPACES), st.sampled_from(PODS))),
                        st.sampled_from(IPS),
                    ),
                    max_size=3,
                )
            )
            addresses = [_address(target, addr) for target, addr in refs]
            if choice == 3:
                obj = {"metadata": {"name": svc, "namespace": svc_ns}, "subsets": [{"addresses": addresses}]}
                events.append(("MODIFIED", "Endpoints", obj))
            else:
                endpoints = [
                    {"addresses": [a["ip"]], **({"targetRef": a["targetRef"]} if "targetRef" in a else {})}
                    for a in addresses
                ]
                labels = {"kubernetes.io/service-name": svc}
                obj = {
                    "metadata": {"name": f"{svc}-x", "namespace": svc_ns, "labels": labels},
                    "endpoints": endpoints,
                }
                events.append(("MODIFIED", "EndpointSlice", obj))
    return events


def _targets(state: ClusterState, at: float) -> dict[str, tuple[Any, ...]]:
    answers = {}
    for ns, name, _ in SERVICES:
        found = state.service_named(ns, name, at)
        assert found is not None
        answers[name] = state.service_targets(found)
    return answers


@settings(max_examples=200, deadline=None)
@given(history=histories())
def test_memoised_targets_equal_targets_computed_afresh(history: list[Event]) -> None:
    asked = ClusterState()
    for i, (kind_of_event, kind, obj) in enumerate(history):
        at = T0 + i
        asked.apply(kind_of_event, kind, obj, at)
        if i < len(SERVICES) - 1:
            continue  # the Services first
        memoised = _targets(asked, at)
        fresh = ClusterState()
        for j, (e, k, o) in enumerate(history[: i + 1]):
            fresh.apply(e, k, o, T0 + j)
        for name, expected in _targets(fresh, at).items():
            # A fresh state has no history of answers: when nothing resolves now it answers (),
            # where the asked one keeps its last non-empty answer (a Service briefly without pods).
            if expected:
                assert memoised[name] == expected, f"after event {i} ({kind_of_event} {kind})"
