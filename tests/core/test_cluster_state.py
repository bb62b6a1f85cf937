"""Per-cluster upstream state: shared by streams, kept across swaps while endpoints stay."""

from __future__ import annotations

from plait.core.config import Cluster, Endpoint, Protocol
from plait.core.upstream import _manager
from plait.sdk import StashKey

KEY: StashKey[str] = StashKey("test")


def _cluster(*ports: int, weight: int = 1) -> Cluster:
    eps = tuple(Endpoint(address="127.0.0.1", port=p, weight=weight) for p in ports)
    return Cluster(name="svc.default:80", protocol=Protocol.HTTP, endpoints=eps)


def test_state_survives_a_swap_with_the_same_endpoints() -> None:
    ups = _manager.Upstreams()
    first = _manager.ClusterRuntime(_cluster(9001, 9002), ups)
    first.state.stash[KEY] = "ejections and latency estimates"
    again = _manager.ClusterRuntime(_cluster(9001, 9002), ups)  # a reload, same cluster
    assert again.state is first.state and again.state.stash[KEY]
    changed = _manager.ClusterRuntime(_cluster(9001, 9003), ups)
    assert changed.state is not first.state and KEY not in changed.state.stash
    reweighted = _manager.ClusterRuntime(_cluster(9001, 9003, weight=2), ups)
    assert reweighted.state is not changed.state  # weights matter to the balancers
    ups.prune_states([])
    assert ups.states() == {}
    ups.close()


def test_pick_for_honours_choice_and_exclusion() -> None:
    ups = _manager.Upstreams()
    crt = _manager.ClusterRuntime(_cluster(9001, 9002, 9003), ups)
    assert crt.pick_for("127.0.0.1:9002", frozenset()).key == "127.0.0.1:9002"
    picks = {crt.pick_for(None, frozenset({"127.0.0.1:9001"})).key for _ in range(10)}
    assert picks == {"127.0.0.1:9002", "127.0.0.1:9003"}
    every = frozenset({"127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003"})
    assert crt.pick_for(None, every).key in every  # all excluded: still somewhere
    ups.close()
