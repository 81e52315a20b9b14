"""Record generators for the shipped datasets, used by tests, benchmarks and the demo.

Each generator yields ``(record, label)`` pairs: ``record`` holds the columns of the dataset's
spec (shared/datasets/specs/<name>.yaml) exactly as a client would send them to ingestion
(JSON scalars only), ``label`` is the ground truth. Whether the label also sits in the record
follows the spec: loans labels arrive later as feedback (not in the record), breast cancer
diagnoses arrive with the record (also in it).

Both are deterministic: the row at a given index is the same for a given seed, however the
stream is cut into calls (``start_index`` continues a stream). Event times run from ``start``
(the first row yielded) in steps of ``seconds_between``; validation refuses event times more
than the spec's ``future_tolerance_seconds`` past ingestion, so a long stream meant for
ingestion now should start in the past, e.g. ``start=now - timedelta(seconds=count)``.

>>> from datetime import UTC, datetime
>>> record, label = next(agrawal_records(1, seed=7, start=datetime(2024, 1, 1, tzinfo=UTC)))
>>> record["applied_at"], record["application_id"], label in (0, 1)
('2024-01-01T00:00:00+00:00', 'app-7-0', True)
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

Record = dict[str, str | int | float | bool | None]

AGRAWAL_FUNCTIONS = range(10)


def _utc(start: datetime) -> datetime:
    if start.tzinfo is None:
        raise ValueError("start must be timezone-aware (e.g. datetime(..., tzinfo=UTC))")
    return start.astimezone(UTC)


def _check_stream(count: int | None, seconds_between: float, start_index: int) -> None:
    if count is not None and count < 0:
        raise ValueError(f"count must be >= 0, not {count}")
    if seconds_between < 0:
        raise ValueError(f"seconds_between must be >= 0, not {seconds_between}")
    if start_index < 0:
        raise ValueError(f"start_index must be >= 0, not {start_index}")


def _stable_choice(seed: int, index: int, salt: str, size: int) -> int:
    """A number in [0, size) fixed by (seed, index): no state to replay for a given index."""
    digest = hashlib.blake2b(f"{salt}:{seed}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % size


def agrawal_records(
    count: int,
    *,
    seed: int,
    start: datetime,
    seconds_between: float = 1.0,
    entities: int = 1000,
    function_before: int = 0,
    drift_at: int | None = None,
    function_after: int = 2,
    start_index: int = 0,
) -> Iterator[tuple[Record, int]]:
    """Loan applications from River's Agrawal generator, in the columns of the loans spec.

    Yields ``count`` pairs ``(record, approved)`` for the stream indexes ``start_index``,
    ``start_index + 1``, ... Record columns: ``applicant_id`` (one of ``entities``
    applicants, fixed by seed and index), ``applied_at`` (ISO-8601 UTC; ``start`` for the
    first row yielded), ``application_id`` (``app-<seed>-<index>``, unique and
    deterministic), then salary, commission, age, elevel, car, zipcode, hvalue, hyears, loan
    as River draws them (elevel, car and zipcode as strings of their integer codes, age and
    hyears as int, the rest float). ``approved`` (0/1) is River's label for
    ``function_before``, or ``function_after`` from index ``drift_at`` on: a concept drift
    that changes the labels and leaves the feature distribution as it was.
    """
    from river.datasets.synth import Agrawal

    _check_stream(count, seconds_between, start_index)
    if entities < 1:
        raise ValueError(f"entities must be >= 1, not {entities}")
    for function in (function_before, function_after):
        if function not in AGRAWAL_FUNCTIONS:
            raise ValueError(f"Agrawal classification functions are 0..9, not {function}")
    first = _utc(start)
    generator = Agrawal(classification_function=function_before, seed=seed)
    stream = iter(generator)
    for index in range(start_index + count):
        drifted = drift_at is not None and index >= drift_at
        # River reads the attribute when it draws the next row: setting it before next()
        # labels this row (and the following ones) with the new function.
        generator.classification_function = function_after if drifted else function_before
        x, y = next(stream)
        if index < start_index:
            continue
        applicant = _stable_choice(seed, index, "applicant", entities)
        record: Record = {
            "applicant_id": f"applicant-{applicant}",
            "applied_at": (
                first + timedelta(seconds=(index - start_index) * seconds_between)
            ).isoformat(),
            "application_id": f"app-{seed}-{index}",
            "salary": float(x["salary"]),
            "commission": float(x["commission"]),
            "age": int(x["age"]),
            "elevel": str(x["elevel"]),
            "car": str(x["car"]),
            "zipcode": str(x["zipcode"]),
            "hvalue": float(x["hvalue"]),
            "hyears": int(x["hyears"]),
            "loan": float(x["loan"]),
        }
        yield record, int(y)


def snake_case(column: str) -> str:
    """'mean concave points' -> 'mean_concave_points'."""
    return "_".join(column.strip().lower().replace("-", " ").split())


def _breast_cancer_table() -> tuple[list[str], list[list[float]], list[int]]:
    from sklearn.datasets import load_breast_cancer

    bunch: Any = load_breast_cancer()
    columns = [snake_case(name) for name in bunch.feature_names]
    return columns, bunch.data.tolist(), [int(t) for t in bunch.target]


def breast_cancer_records(
    count: int | None = None,
    *,
    seed: int,
    start: datetime,
    seconds_between: float = 1.0,
    start_index: int = 0,
) -> Iterator[tuple[Record, int]]:
    """The Wisconsin diagnostic breast cancer table (scikit-learn), one record per exam.

    Yields ``(record, diagnosis)``; the record holds ``patient_id`` (``patient-<row>``, the
    table row the exam comes from), ``examined_at`` (ISO-8601 UTC; ``start`` for the first
    row yielded), ``sample_id`` (``bc-<seed>-<index>``, unique and deterministic), the 30
    measurements in snake_case (``mean_radius``, ..., ``worst_fractal_dimension``) and
    ``diagnosis`` (0 malignant, 1 benign), since that label arrives with the record.

    The 569 rows come in an order shuffled by ``seed``; ``count=None`` yields each once, a
    larger ``count`` goes round again in a new order (same patients, new sample ids).
    """
    _check_stream(count, seconds_between, start_index)
    columns, rows, targets = _breast_cancer_table()
    total = len(rows) - start_index if count is None else count
    if total < 0:
        raise ValueError(f"start_index {start_index} is past the {len(rows)} rows")
    first = _utc(start)
    orders: dict[int, list[int]] = {}
    for index in range(start_index, start_index + total):
        lap, position = divmod(index, len(rows))
        if lap not in orders:
            order = list(range(len(rows)))
            random.Random(f"breast_cancer:{seed}:{lap}").shuffle(order)
            orders = {lap: order}
        row = orders[lap][position]
        record: Record = {
            "patient_id": f"patient-{row}",
            "examined_at": (
                first + timedelta(seconds=(index - start_index) * seconds_between)
            ).isoformat(),
            "sample_id": f"bc-{seed}-{index}",
            **dict(zip(columns, rows[row], strict=True)),
            "diagnosis": targets[row],
        }
        yield record, targets[row]


PHISHING_SHIFTED = ("empty_server_form_handler", "popup_window")
"""The features `phishing_records` recodes (x -> 1 - x) from `shift_at` on."""


def _phishing_table() -> tuple[list[str], list[list[float]], list[int]]:
    from river.datasets import Phishing

    rows = list(Phishing())
    columns = list(rows[0][0])
    table = [[float(x[column]) for column in columns] for x, _ in rows]
    return columns, table, [int(bool(y)) for _, y in rows]


def phishing_records(
    count: int | None = None,
    *,
    seed: int,
    start: datetime,
    seconds_between: float = 1.0,
    start_index: int = 0,
    shift_at: int | None = None,
    shifted: tuple[str, ...] = PHISHING_SHIFTED,
) -> Iterator[tuple[Record, int]]:
    """Web pages from River's Phishing table (1,250 rows, nine page features in [0, 1]).

    Yields ``(record, is_phishing)``; the record holds ``site_id`` (``site-<row>``),
    ``seen_at`` (ISO-8601 UTC; ``start`` for the first row yielded), ``page_id``
    (``page-<seed>-<index>``), the nine features (floats, most of them 0, 0.5 or 1:
    discrete values) and ``is_phishing`` (0/1): the label arrives with the record.

    From stream index ``shift_at`` on, the ``shifted`` features are recoded ``x -> 1 - x``
    (an upstream change of encoding): a covariate shift that breaks a model fitted before it
    (accuracy falls from about 0.9 to about 0.5), while a model fitted after it does as well
    as before. Rows come in an order shuffled by ``seed``, going round again past 1,250.
    """
    _check_stream(count, seconds_between, start_index)
    columns, rows, targets = _phishing_table()
    unknown = sorted(set(shifted) - set(columns))
    if unknown:
        raise ValueError(f"no phishing feature {unknown}; features: {columns}")
    total = len(rows) - start_index if count is None else count
    if total < 0:
        raise ValueError(f"start_index {start_index} is past the {len(rows)} rows")
    first = _utc(start)
    order: list[int] = []
    lap_of_order = -1
    for index in range(start_index, start_index + total):
        lap, position = divmod(index, len(rows))
        if lap != lap_of_order:
            order = list(range(len(rows)))
            random.Random(f"phishing:{seed}:{lap}").shuffle(order)
            lap_of_order = lap
        row = order[position]
        values = dict(zip(columns, rows[row], strict=True))
        if shift_at is not None and index >= shift_at:
            values.update({name: 1.0 - values[name] for name in shifted})
        record: Record = {
            "site_id": f"site-{row}",
            "seen_at": (
                first + timedelta(seconds=(index - start_index) * seconds_between)
            ).isoformat(),
            "page_id": f"page-{seed}-{index}",
            **values,
            "is_phishing": targets[row],
        }
        yield record, targets[row]


def friedman_records(
    count: int,
    *,
    seed: int,
    start: datetime,
    seconds_between: float = 1.0,
    entities: int = 10**6,
    drift_at: int | None = None,
    start_index: int = 0,
) -> Iterator[tuple[Record, float]]:
    """A regression stream: Friedman's function over ten uniform features (River's
    synth.FriedmanDrift, global abrupt drift), the target arriving later as feedback.

    Yields ``(record, target)``; the record holds ``sensor_id`` (one of ``entities``,
    fixed by seed and index), ``measured_at`` (ISO-8601 UTC), ``reading_id``
    (``reading-<seed>-<index>``) and ``x0`` ... ``x9`` (floats in [0, 1]); the target is not
    in the record. From ``drift_at`` on the target follows River's drifted function (the
    relevant features change places): a concept drift seen in the residuals only.
    """
    from river.datasets.synth import FriedmanDrift

    _check_stream(count, seconds_between, start_index)
    if entities < 1:
        raise ValueError(f"entities must be >= 1, not {entities}")
    first = _utc(start)
    # FriedmanDrift's drift position counts the rows it drew; one far past any stream
    # keeps the first concept.
    position = drift_at if drift_at is not None else 10**12
    generator = FriedmanDrift(drift_type="gra", position=(position, 10**13), seed=seed)
    for index, (x, y) in enumerate(generator.take(start_index + count)):
        if index < start_index:
            continue
        record: Record = {
            "sensor_id": f"sensor-{_stable_choice(seed, index, 'sensor', entities)}",
            "measured_at": (
                first + timedelta(seconds=(index - start_index) * seconds_between)
            ).isoformat(),
            "reading_id": f"reading-{seed}-{index}",
            **{f"x{feature}": float(value) for feature, value in x.items()},
        }
        yield record, float(y)
