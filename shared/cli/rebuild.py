"""The heavy half of `mlops reproduce` (pandas, scikit-learn, the services' domain code),
imported only when the command runs so the other `mlops` commands start fast.

    lineage -> data.labels: exactly the recorded offset ranges, read from Kafka
    -> features: the data.features events whose source lies in the recorded data.validated
       ranges (the feature store's output for exactly those records)
    -> the offline store's rows (same code, same types, through Parquet)
    -> the feature store's point-in-time join -> the set as training reads it (Parquet)
    -> training's own frame, window, split, fit and evaluation (services.training.domain)
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from services.feature_store.domain.offline import (
    as_stored,
    feature_row,
    feature_schema,
    label_row,
    label_schema,
)
from services.feature_store.domain.training_sets import point_in_time_join
from services.training.domain.errors import TrainingRefused
from services.training.domain.fitting import evaluate, fit_pipeline, split_frame
from services.training.domain.frames import TrainingFrame
from services.training.domain.lineage import library_versions
from services.training.settings import TrainingSettings
from shared.artifacts import ArtifactRefused, load_model
from shared.cli.common import CliError, Unreachable
from shared.cli.reproduce import (
    FEATURES,
    LABELS,
    VALIDATED,
    Check,
    compare_metrics,
    compare_predictions,
    compare_value,
    namespace_of,
)
from shared.cli.topics import progress_bar
from shared.datasets.registry import SpecRegistry
from shared.datasets.spec import ModelSpec, VersionedSpec
from shared.events.codec import EventDecoder, UndecodableMessage
from shared.events.models import ArtifactRef, OffsetRange, TrainingLineage
from shared.events.records import (
    FeaturesComputed,
    LabelRecorded,
    RecordValidated,
    SourcePosition,
)
from shared.settings import PlatformSettings
from shared.storage import minio_client

# -- reading the ranges from Kafka ----------------------------------------------------------


class RangeReader:
    """Reads offset ranges of topic partitions: assign, seek to the first, read to the last."""

    def __init__(self, config: dict[str, Any], timeout_s: float = 30.0) -> None:
        self._config = config
        self._timeout_s = timeout_s

    def bounds(self, topic: str) -> dict[int, tuple[int, int]]:
        """Each partition's (first stored offset, next offset) of `topic`."""
        consumer = Consumer(self._config)
        try:
            metadata = consumer.list_topics(topic, timeout=self._timeout_s)
            found = metadata.topics.get(topic)
            if found is None or found.error is not None or not found.partitions:
                raise CliError(f"topic {topic!r} does not exist")
            return {
                p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=self._timeout_s)
                for p in sorted(found.partitions)
            }
        except KafkaException as error:
            raise Unreachable(f"Kafka: {error.args[0]}") from None
        finally:
            consumer.close()

    def check(self, ranges: list[OffsetRange]) -> None:
        """Every range must still be stored: retention must keep what a model needs."""
        for topic in sorted({r.topic for r in ranges}):
            bounds = self.bounds(topic)
            for r in (r for r in ranges if r.topic == topic):
                low, high = bounds.get(r.partition, (0, 0))
                if r.first_offset > r.last_offset or r.first_offset < low or r.last_offset >= high:
                    raise CliError(
                        f"{topic} [{r.partition}] holds offsets {low}..{high - 1}; the lineage "
                        f"needs {r.first_offset}..{r.last_offset}"
                    )

    def read(self, ranges: list[OffsetRange], advance: Callable[[int], None]) -> Iterator[Message]:
        """Every message of the ranges, in offset order per partition."""
        pending = {(r.topic, r.partition): r.last_offset for r in ranges}
        if not pending:
            return
        consumer = Consumer(self._config)
        try:
            consumer.assign([TopicPartition(r.topic, r.partition, r.first_offset) for r in ranges])
            yield from self._drain(consumer, pending, advance)
        except KafkaException as error:
            raise Unreachable(f"Kafka: {error.args[0]}") from None
        finally:
            consumer.close()

    def _drain(
        self,
        consumer: Consumer,
        pending: dict[tuple[str, int], int],
        advance: Callable[[int], None],
    ) -> Iterator[Message]:
        idle_since = time.monotonic()
        while pending:
            # consume() waits for the whole batch or the timeout: keep the wait short.
            batch = consumer.consume(1000, 0.2)
            if not batch:
                if time.monotonic() - idle_since > self._timeout_s:
                    left = ", ".join(f"{t}[{p}]" for t, p in sorted(pending))
                    raise CliError(f"no message within {self._timeout_s:.0f}s reading {left}")
                continue
            idle_since = time.monotonic()
            kept = 0
            for message in batch:
                key = (message.topic(), message.partition())
                error = message.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        raise CliError(f"{message.topic()}: {error.str()}")
                    pending.pop(key, None)  # the end: nothing more of the range is stored
                    continue
                last = pending.get(key)
                if last is None or message.offset() > last:
                    continue
                kept += 1
                yield message
                if message.offset() >= last:
                    del pending[key]
                    consumer.pause([TopicPartition(*key)])
            advance(kept)


# -- rebuilding the training set ------------------------------------------------------------


@dataclass(frozen=True)
class Rebuilt:
    raw: pd.DataFrame
    feature_events: int
    label_events: int
    validated_records: int
    """Records of the dataset in the data.validated ranges."""
    records_with_features: int
    mismatched: int
    """Feature events whose data.validated message is not the record they name."""
    undecodable: int


Position = tuple[str, int, int]


class _Rows:
    """What the ranges hold, decoded: label rows, validated record ids, feature rows."""

    def __init__(self, dataset: str, max_bytes: int) -> None:
        self.dataset = dataset
        self.labels: list[dict[str, Any]] = []
        self.records: dict[Position, str] = {}
        self.features: list[dict[str, Any]] = []
        self.versions: set[int] = set()
        self.sources: set[Position] = set()
        self.mismatched = 0
        self.undecodable = 0
        self._decoders = {
            kind: EventDecoder([payload], max_bytes)
            for kind, payload in (
                (LABELS, LabelRecorded),
                (VALIDATED, RecordValidated),
                (FEATURES, FeaturesComputed),
            )
        }

    def decode(self, kind: str, message: Message) -> Any | None:
        """The payload of a message of this dataset (None: another dataset, or undecodable)."""
        try:
            payload = self._decoders[kind].decode(message.value()).data
        except UndecodableMessage:
            self.undecodable += 1
            return None
        return payload if payload.dataset == self.dataset else None

    def add_label(self, message: Message) -> None:
        if (payload := self.decode(LABELS, message)) is not None:
            position = SourcePosition(
                topic=message.topic(), partition=message.partition(), offset=message.offset()
            )
            self.labels.append(label_row(payload, position).values)

    def add_record(self, message: Message) -> None:
        if (payload := self.decode(VALIDATED, message)) is not None:
            self.records[(message.topic(), message.partition(), message.offset())] = (
                payload.record_id
            )

    def add_features(self, message: Message) -> None:
        payload = self.decode(FEATURES, message)
        if payload is None:
            return
        source = payload.source
        record = self.records.get((source.topic, source.partition, source.offset))
        if record is None:
            return  # not one of the ranges' records
        if record != payload.record_id:
            self.mismatched += 1
            return
        self.features.append(feature_row(payload, message.offset()).values)
        self.versions.add(payload.spec_version)
        self.sources.add((source.topic, source.partition, source.offset))


def rebuild_training_set(
    lineage: TrainingLineage, reader: RangeReader, specs: SpecRegistry, max_bytes: int
) -> Rebuilt:
    """The training set of the lineage's ranges, as the feature store builds it: the labels
    of the data.labels ranges, and the features the feature store computed (data.features)
    for the records of the data.validated ranges."""
    namespace = namespace_of(lineage.offsets)
    by_topic = {
        kind: [r for r in lineage.offsets if r.topic == f"{namespace}.{kind}"]
        for kind in (LABELS, VALIDATED)
    }
    reader.check(lineage.offsets)
    features_topic = f"{namespace}.{FEATURES}"
    whole = [
        OffsetRange(topic=features_topic, partition=p, first_offset=low, last_offset=high - 1)
        for p, (low, high) in reader.bounds(features_topic).items()
        if high > low
    ]
    rows = _Rows(lineage.dataset, max_bytes)
    with progress_bar() as progress:

        def read(description: str, ranges: list[OffsetRange]) -> Iterator[Message]:
            total = sum(r.last_offset - r.first_offset + 1 for r in ranges)
            task_id = progress.add_task(description, total=total)
            return reader.read(ranges, lambda n: progress.advance(task_id, n))

        for message in read(f"{LABELS} ranges", by_topic[LABELS]):
            rows.add_label(message)
        for message in read(f"{VALIDATED} ranges", by_topic[VALIDATED]):
            rows.add_record(message)
        for message in read(f"{FEATURES} of those records", whole):
            rows.add_features(message)
    raw = _join(lineage, specs, rows.features, rows.labels, rows.versions)
    return Rebuilt(
        raw,
        feature_events=len(rows.features),
        label_events=len(rows.labels),
        validated_records=len(rows.records),
        records_with_features=len(rows.sources),
        mismatched=rows.mismatched,
        undecodable=rows.undecodable,
    )


def _join(
    lineage: TrainingLineage,
    specs: SpecRegistry,
    feature_rows: list[dict[str, Any]],
    label_rows: list[dict[str, Any]],
    versions: set[int],
) -> pd.DataFrame:
    if not feature_rows:
        raise CliError(f"no feature of {lineage.dataset!r} in the lineage's ranges")
    known = [specs.get(lineage.dataset, v).spec for v in sorted(versions)]
    features = as_stored(feature_rows, feature_schema(known))
    labels = as_stored(label_rows, label_schema(specs.latest(lineage.dataset).spec))
    training = point_in_time_join(features, labels, lineage.cut_off)
    # The training set as training reads it: written to Parquet by the feature store.
    return pd.read_parquet(_parquet(training.frame))


def _parquet(frame: pd.DataFrame) -> io.BytesIO:
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), buffer)
    buffer.seek(0)
    return buffer


# -- the command ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Reproduction:
    training: TrainingFrame
    holdout: pd.DataFrame
    metrics: dict[str, float]
    model: Any


def retrain(
    raw: pd.DataFrame,
    versioned: VersionedSpec,
    lineage: TrainingLineage,
    version: dict[str, Any],
    settings: TrainingSettings,
) -> Reproduction:
    """Training's own steps on the rebuilt set, with the version's estimator, params, seed."""
    try:
        holdout = lineage.holdout_fraction or settings.holdout_fraction
        cut = split_frame(raw, versioned.spec, lineage.trigger.since, 1, holdout)
        model = ModelSpec(estimator=version["estimator"], params=version["params"])
        fitted = fit_pipeline(model, {}, int(version["seed"]), cut.training, cut.split)
    except TrainingRefused as refused:
        raise CliError(f"the rebuilt training set cannot be trained on: {refused}") from None
    primary = version["evaluation"].get("primary_metric") or settings.classification_metric
    evaluation = evaluate(fitted.pipeline, cut.training, cut.split, primary)
    return Reproduction(cut.training, cut.split.holdout, evaluation.metrics, fitted.pipeline)


def outputs(model: Any, rows: pd.DataFrame) -> np.ndarray:
    """What a model says about the probe rows: probabilities when it gives them."""
    if hasattr(model, "predict_proba"):
        return np.asarray(model.predict_proba(rows))
    return np.asarray(model.predict(rows))


def checks_of(
    lineage: TrainingLineage,
    version: dict[str, Any],
    versioned: VersionedSpec,
    reproduction: Reproduction,
    registered_model: Any,
) -> list[Check]:
    training = reproduction.training
    probe = reproduction.holdout[training.features]
    return [
        compare_value("spec fingerprint", lineage.spec_fingerprint, versioned.fingerprint),
        compare_value("rows", lineage.rows, len(training.frame)),
        compare_value("holdout rows", lineage.holdout_rows, len(reproduction.holdout)),
        compare_value("training-set hash", lineage.training_set_sha256, training.sha256),
        compare_metrics(version["evaluation"]["metrics"], reproduction.metrics),
        compare_predictions(outputs(registered_model, probe), outputs(reproduction.model, probe)),
    ]


def environment_notes(lineage: TrainingLineage, rebuilt: Rebuilt) -> list[str]:
    notes = [
        "artifact: skops files hold their write time and object ids, so the bytes of two fits "
        "never match; the registered artifact (sha256 checked on load) is compared by its "
        "predictions on the holdout rows instead"
    ]
    current = library_versions()
    changed = {
        name: f"{was} -> {current.get(name)}"
        for name, was in sorted(lineage.library_versions.items())
        if current.get(name) != was
    }
    if changed:
        notes.append(f"libraries differ from the run's: {changed}")
    if rebuilt.undecodable:
        notes.append(f"{rebuilt.undecodable} undecodable messages in the ranges were skipped")
    without = rebuilt.validated_records - rebuilt.records_with_features
    if without:
        notes.append(
            f"{without} records of the {VALIDATED} ranges have no feature event: left out, as "
            "the offline store leaves them out"
        )

    return notes


def registered_model(platform: PlatformSettings, version: dict[str, Any]) -> Any:
    ref = ArtifactRef.model_validate(version["artifact"])
    try:
        return load_model(minio_client(platform), ref)
    except ArtifactRefused as refused:
        raise CliError(f"the registered artifact {ref.uri}: {refused}") from None
    except Exception as error:  # MinIO down or the object gone
        raise Unreachable(f"MinIO: the artifact {ref.uri}: {error}") from None
