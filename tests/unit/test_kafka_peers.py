"""Monitoring replicas find each other through the consumer group's client ids."""

from __future__ import annotations

import pytest

from shared.kafka.peers import Peers, client_id_for, url_of


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8007", "http://monitoring-7f9c-x2:8007", "https://10.1.2.3:443"]
)
def test_an_address_survives_the_client_id(url: str) -> None:
    client_id = client_id_for("monitoring", url)
    assert all(c.isalnum() or c in ".-_" for c in client_id), client_id
    assert url_of("monitoring", client_id) == url
    assert url_of("validation", client_id) is None


def test_client_ids_of_other_services_name_no_peer() -> None:
    assert url_of("monitoring", "monitoring") is None
    assert url_of("monitoring", "monitoring-at-http-nohost") is None


def test_peers_are_the_other_members_and_a_failed_describe_keeps_the_last_view() -> None:
    members = [client_id_for("monitoring", u) for u in ("http://a:1", "http://b:2", "http://c:3")]
    calls: list[int] = []

    def describe() -> list[str]:
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("broker away")
        return [*members, "monitoring-router"]

    peers = Peers("monitoring", describe, "http://b:2", refresh_s=0)
    assert peers.urls() == ["http://a:1", "http://c:3"]
    assert peers.urls() == ["http://a:1", "http://c:3"]


def test_a_peer_that_does_not_answer_is_named() -> None:
    peers = Peers(
        "monitoring",
        lambda: [client_id_for("monitoring", "http://127.0.0.1:9")],
        "http://me:1",
        timeout_s=0.5,
    )
    answers, missing = peers.gather("/performance")
    assert answers == [] and len(missing) == 1 and missing[0].startswith("http://127.0.0.1:9")
