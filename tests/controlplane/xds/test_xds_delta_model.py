"""Delta's state machine against a model client, for random sequences (hypothesis, no I/O).

The invariant: after every push, a client that applied every response it got (resources set,
``removed_resources`` dropped, its own unsubscriptions forgotten) holds exactly the resources it
is subscribed to that exist, each at its current content version.
"""

from __future__ import annotations

from collections.abc import Mapping

from envoy.service.discovery.v3 import discovery_pb2  # type: ignore[import-untyped]
from hypothesis import given, settings
from hypothesis import strategies as st

from plait.controlplane.xds import CLUSTER, Message
from plait.controlplane.xds._content import Encoder
from plait.controlplane.xds._delta import DeltaMachine

from .xds_harness import cluster

NAMES = ["a", "b", "c", "d"]
Op = tuple[str, object]
ops = st.one_of(
    st.tuples(st.just("source"), st.dictionaries(st.sampled_from(NAMES), st.integers(1, 3))),
    st.tuples(st.just("subscribe"), st.lists(st.sampled_from([*NAMES, "*"]), max_size=3)),
    st.tuples(st.just("unsubscribe"), st.lists(st.sampled_from([*NAMES, "*"]), max_size=3)),
    st.tuples(st.just("push"), st.none()),
)


@settings(max_examples=200, deadline=None)
@given(first=st.lists(st.sampled_from([*NAMES, "*"]), max_size=3), steps=st.lists(ops))
def test_a_client_applying_every_response_holds_its_subscribed_set(
    first: list[str], steps: list[Op]
) -> None:
    encoder = Encoder()
    machine = DeltaMachine(encoder)
    world: dict[str, Message] = {n: cluster(n) for n in NAMES[:2]}
    client: dict[str, str] = {}
    wildcard, named = not first or "*" in first, set(first) - {"*"}

    def fetch(type_url: str, names: frozenset[str] | None) -> Mapping[str, Message]:
        return dict(world) if names is None else {n: world[n] for n in names if n in world}

    def apply(response: Message | None) -> None:
        if response is not None:
            for r in response.resources:
                client[r.name] = r.version
            for name in response.removed_resources:
                client.pop(name, None)

    def request(sub: list[str], unsub: list[str]) -> Message:
        return discovery_pb2.DeltaDiscoveryRequest(
            type_url=CLUSTER, resource_names_subscribe=sub, resource_names_unsubscribe=unsub
        )

    machine.on_request(request(first, []))
    apply(machine.response(CLUSTER, fetch, force=True))
    for kind, arg in steps:
        if kind == "source":
            assert isinstance(arg, dict)
            world = {n: cluster(n, timeout_s=t) for n, t in arg.items()}
        elif kind == "subscribe":
            assert isinstance(arg, list)
            wildcard = wildcard or "*" in arg
            named |= set(arg) - {"*"}
            if machine.on_request(request(arg, [])).respond:
                apply(machine.response(CLUSTER, fetch, force=False))
        elif kind == "unsubscribe":
            assert isinstance(arg, list)
            named -= set(arg)
            for name in set(arg) - {"*"}:
                client.pop(name, None)
            if "*" in arg and wildcard:
                wildcard = False
                for name in set(client) - named:
                    client.pop(name)
            if machine.on_request(request([], arg)).respond:
                apply(machine.response(CLUSTER, fetch, force=False))
        else:
            apply(machine.response(CLUSTER, fetch, force=False))
            expected = {n for n in world if wildcard or n in named}
            assert client == {n: encoder.encode(world[n]).version for n in expected}
