from pathlib import Path

import pytest

from shared.kafka.topics import TopicCatalog, new_topic


@pytest.fixture(scope="module")
def catalog() -> TopicCatalog:
    return TopicCatalog.load()


def test_data_topics_keep_their_full_history_for_replay(catalog: TopicCatalog) -> None:
    data = [spec for spec in catalog.specs.values() if spec.kind == "data"]
    assert {"data.raw", "data.validated", "serving.predictions"} <= {s.name for s in data}
    for spec in data:
        assert spec.config["retention.ms"] == "-1", spec.name
        assert spec.config["retention.bytes"] == "-1", spec.name
        assert spec.config["cleanup.policy"] == "delete", spec.name


def test_model_state_topics_are_compacted(catalog: TopicCatalog) -> None:
    assert catalog["models.lifecycle"].config["cleanup.policy"] == "compact"


def test_names_carry_the_namespace(catalog: TopicCatalog) -> None:
    assert catalog.name("data.raw", "mlops") == "mlops.data.raw"
    assert catalog.name("data.raw", "replay-7") == "replay-7.data.raw"


def test_unknown_topic_lists_the_known_ones(catalog: TopicCatalog) -> None:
    with pytest.raises(KeyError, match=r"data\.raw"):
        catalog["data.nope"]


def test_replication_is_capped_at_the_cluster_size(catalog: TopicCatalog) -> None:
    single = new_topic(catalog["data.raw"], "ns", broker_count=1)
    assert single.replication_factor == 1
    assert single.config["min.insync.replicas"] == "1"
    triple = new_topic(catalog["data.raw"], "ns", broker_count=3)
    assert triple.replication_factor == 3
    assert triple.config["min.insync.replicas"] == "2"
    assert triple.topic == "ns.data.raw"


def test_a_topic_of_an_unknown_kind_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "topics.yaml"
    path.write_text("kinds: {data: {}}\ntopics:\n  x.y: {kind: archive}\n")
    with pytest.raises(ValueError, match="unknown kind 'archive'"):
        TopicCatalog.load(path)
