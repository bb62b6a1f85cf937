"""SPIFFE IDs parse strictly: one spelling per identity."""

import pytest

from plait.sdk import InvalidSpiffeId, SpiffeId


def test_a_workload_id_round_trips_and_names_its_parts() -> None:
    sid = SpiffeId.for_workload("plait.local", "shop", "web")
    assert str(sid) == "spiffe://plait.local/ns/shop/sa/web"
    assert SpiffeId.parse(str(sid)) == sid
    assert (sid.namespace, sid.service_account) == ("shop", "web")


def test_other_paths_parse_without_namespace() -> None:
    sid = SpiffeId.parse("spiffe://example.org/some/service")
    assert sid.namespace is None and sid.service_account is None
    assert str(SpiffeId.parse("spiffe://example.org")) == "spiffe://example.org"


@pytest.mark.parametrize(
    "text",
    [
        "http://plait.local/ns/a/sa/b",
        "SPIFFE://plait.local/ns/a/sa/b",
        "spiffe://Plait.Local/ns/a/sa/b",
        "spiffe:///ns/a/sa/b",
        "spiffe://plait.local/ns//sa/b",
        "spiffe://plait.local/ns/a/sa/b/",
        "spiffe://plait.local/ns/../sa/b",
        "spiffe://plait.local/ns/a/sa/b?x=1",
        "spiffe://plait.local/ns/a/sa/b#f",
        "spiffe://plait.local:443/ns/a/sa/b",
        "spiffe://user@plait.local/ns/a/sa/b",
        "spiffe://plait.local/ns/a%2Fb/sa/c",
        "spiffe://plait.local/" + "a" * 2100,
    ],
)
def test_every_other_spelling_is_refused(text: str) -> None:
    with pytest.raises(InvalidSpiffeId):
        SpiffeId.parse(text)
