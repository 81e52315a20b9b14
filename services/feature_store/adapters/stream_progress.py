"""How far the feature stream has processed data.validated, and how far data.features
reaches: what `with_stream_progress` needs to count records that gave no vector as written."""

from __future__ import annotations

import logging
from typing import Any

from confluent_kafka import KafkaException

from services.feature_store.domain.training_sets import Coverage
from shared.kafka.committed import CommittedOffsets
from shared.kafka.watermarks import HighWatermarks

log = logging.getLogger(__name__)


class StreamProgress:
    def __init__(
        self,
        config: dict[str, Any],
        stream_group: str,
        validated_topic: str,
        features_topic: str,
        timeout_s: float = 10.0,
    ) -> None:
        self._group = stream_group
        self._validated = validated_topic
        self._features = features_topic
        self._committed = CommittedOffsets(config, timeout_s)
        self._ends = HighWatermarks(config, f"{stream_group}-progress", timeout_s)

    def read(self) -> tuple[Coverage, Coverage]:
        """(the stream's committed offsets on data.validated, then data.features' ends); both
        empty when Kafka does not answer: the files' own coverage then stands alone."""
        try:
            partitions = self._ends.of_topic(self._validated)
            processed = self._committed.of(self._group, partitions)
            return processed, self._ends.of_topic(self._features)
        except (KafkaException, LookupError) as error:
            log.warning("the feature stream's progress could not be read: %s", error)
            return {}, {}

    def close(self) -> None:
        self._committed.close()
        self._ends.close()
