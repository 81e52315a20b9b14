"""Benchmark of drift detection, printed side by side with Evidently on the same streams.

    make bench-drift     (or: python -m tests.bench.bench_drift --seeds 1 2 3)

Streams (tests/bench/drift_streams.py): River's Agrawal, SEA and Hyperplane
(classification) and FriedmanDrift (regression), each as concept A, B, A in segments of
`--segment` events (abrupt drifts at the two boundaries), with a model fitted on concept A
before the stream; one stream per seed. Per event the monitoring service's own Monitor
(services/monitoring/domain, in-process, no Kafka) sees the record's features, the model's
prediction and the label right after it, so it runs every detector the service runs: one per
numeric feature, the predicted class rate or predicted value, the 0/1 loss or the absolute
residual, the out-of-range and rejection rates. A DriftDetected on any signal is a detection.
Detector configuration is the value of MLOPS_MONITORING_DETECTORS for a dataset; the bench
runs the service defaults and River's default ADWIN on the raw error stream (0/1 loss, or
the absolute residual in the label's units).

Evidently (its own virtualenv under .local/bench, tests/bench/evidently_reference.py) gets
the same streams, the features plus `prediction` and `error` columns (categorical for
classification; numerical for regression, where `error` is the absolute residual), as Parquet: a
DataDriftPreset report every `--step` events comparing the last `--window` events with the
window before. Its dataset-drift flag counts as a detection, and separately the drift test of
the error column alone (the signal that carries concept drift).

Scores (drift_streams.score_detections): delay in events after each drift point, false
alarms outside `--tolerance` events after a drift, missed drifts; CPU time (process_time)
per 1,000 events of the detection loop only. Targets: no missed drift, no false alarm, lower
mean delay and CPU than Evidently's error-column flag. Exit code 0 either way.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow

from services.monitoring.domain.join import LabelJoin
from services.monitoring.domain.monitor import DatasetDetectors, Monitor, Served
from services.monitoring.settings import DatasetDetectorSettings
from tests.bench.drift_streams import STREAM_KINDS, DriftStream, drift_stream, score_detections
from tests.bench.venvs import ensure_venv

EVIDENTLY_VERSION = "0.7.23"
REPO = Path(__file__).resolve().parents[2]
EVIDENTLY_VENV = REPO / ".local" / "bench" / f"evidently-{EVIDENTLY_VERSION}"
EVIDENTLY_SCRIPT = Path(__file__).resolve().parent / "evidently_reference.py"
DATASET = "bench"
# MLOPS_MONITORING_DETECTORS values for the dataset: {} is the service's defaults.
PLATFORM_CONFIGS: dict[str, dict[str, Any]] = {
    "platform, defaults": {},
    "platform, River's ADWIN default": {
        "error": {"kind": "adwin", "params": {"delta": 0.002}},
        "residual": {"kind": "adwin", "params": {"delta": 0.002}},
    },
}
EVIDENTLY_DATASET = "evidently, dataset drift"
EVIDENTLY_ERROR = "evidently, error column"


@dataclass
class Run:
    """What one detector set found on one stream, and its CPU time."""

    detector: str
    kind: str
    seed: int
    events: int
    cpu_s: float
    detections: list[int]
    signals: Counter[str] = field(default_factory=Counter)


def detectors(config: dict[str, Any]) -> DatasetDetectors:
    """The Monitor's detectors for one MLOPS_MONITORING_DETECTORS dataset entry."""
    return DatasetDetectorSettings.model_validate(config).detectors()


def watch_platform(name: str, stream: DriftStream, config: dict[str, Any], rounds: int = 3) -> Run:
    """The fastest of `rounds` runs, each with fresh detectors (they find the same drifts)."""
    runs = [_watch_platform_once(name, stream, config) for _ in range(rounds)]
    return min(runs, key=lambda run: run.cpu_s)


def _watch_platform_once(name: str, stream: DriftStream, config: dict[str, Any]) -> Run:
    dataset_detectors = detectors(config)
    monitor = Monitor(
        lambda _: dataset_detectors,
        lambda dataset: dataset,
        LabelJoin[Served](3600.0),
        task_for=lambda _: stream.task,
    )
    record_ids = [str(n) for n in range(len(stream))]
    at = datetime.now(UTC)
    detections: list[int] = []
    signals: Counter[str] = Counter()
    gc.collect()
    started = time.process_time()
    for n, record_id in enumerate(record_ids):
        found = monitor.observe_record(DATASET, stream.rows[n], at)
        served = Served(DATASET, DATASET, 1, record_id, stream.predictions[n], False, at)
        found += monitor.observe_prediction(served, float(n))[0]
        found += monitor.observe_label(DATASET, record_id, stream.labels[n], float(n))[0]
        if found:
            detections.append(n)
            signals.update(item.drift.signal_kind for item in found)
    cpu_s = time.process_time() - started
    return Run(name, stream.kind, stream.seed, len(stream), cpu_s, detections, signals)


def ensure_evidently_venv() -> Path:
    # Evidently 0.7 imports a pandas internal that pandas 3 removed.
    return ensure_venv(
        EVIDENTLY_VENV,
        [f"evidently=={EVIDENTLY_VERSION}", "pandas==2.3.3", f"pyarrow=={pyarrow.__version__}"],
    )


def stream_frame(stream: DriftStream) -> pd.DataFrame:
    frame = pd.DataFrame(stream.rows, columns=list(stream.features))
    frame["prediction"] = stream.predictions
    frame["error"] = stream.errors
    return frame


def start_evidently(
    python: Path, streams: list[DriftStream], window: int, step: int, workdir: Path
) -> subprocess.Popen[str]:
    """Evidently's pass over the streams, in its own process while the platform's runs."""
    entries = []
    for stream in streams:
        path = workdir / f"{stream.kind}-{stream.seed}.parquet"
        stream_frame(stream).to_parquet(path)
        categorical = ["prediction", "error"] if stream.task == "classification" else []
        entries.append(
            {
                "kind": stream.kind,
                "seed": stream.seed,
                "path": str(path),
                "categorical": categorical,
            }
        )
    manifest = workdir / "manifest.json"
    manifest.write_text(json.dumps({"window": window, "step": step, "streams": entries}))
    return subprocess.Popen(
        [str(python), str(EVIDENTLY_SCRIPT), "--manifest", str(manifest)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def evidently_runs(process: subprocess.Popen[str]) -> tuple[str, list[Run]]:
    """Evidently's version and its runs: two detector rows per stream from one report pass."""
    output, errors = process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"evidently_reference.py failed ({process.returncode}):\n{errors}")
    answer = json.loads(output.strip().splitlines()[-1])
    runs = []
    for found in answer["runs"]:
        for name, key in ((EVIDENTLY_DATASET, "dataset_drift"), (EVIDENTLY_ERROR, "error_drift")):
            runs.append(
                Run(name, found["kind"], found["seed"], found["events"], found["cpu_s"], found[key])
            )
    return answer["evidently"], runs


@dataclass(frozen=True)
class Row:
    detector: str
    drifts: int
    missed: int
    false_alarms: int
    mean_delay: float | None
    max_delay: int | None
    cpu_ms_per_1000: float
    signals: str


def summarize(
    detector: str, runs: list[Run], streams: dict[tuple[str, int], DriftStream], tolerance: int
) -> Row:
    delays: list[int] = []
    drifts = missed = false_alarms = 0
    signals: Counter[str] = Counter()
    for run in runs:
        stream = streams[(run.kind, run.seed)]
        score = score_detections(run.detections, stream.drifts, len(stream), tolerance)
        drifts += len(score.delays)
        missed += score.missed
        false_alarms += score.false_alarms
        delays.extend(score.detected)
        signals.update(run.signals)
    cpu_ms = 1e6 * sum(run.cpu_s for run in runs) / sum(run.events for run in runs)
    return Row(
        detector,
        drifts,
        missed,
        false_alarms,
        statistics.mean(delays) if delays else None,
        max(delays) if delays else None,
        cpu_ms,
        " ".join(f"{kind} {count}" for kind, count in sorted(signals.items())),
    )


def verdict(row: Row, baseline: Row) -> str:
    checks = {
        "no missed drift": row.missed == 0,
        "no false alarm": row.false_alarms == 0,
        "lower mean delay": row.mean_delay is not None
        and (baseline.mean_delay is None or row.mean_delay < baseline.mean_delay),
        "lower CPU": row.cpu_ms_per_1000 < baseline.cpu_ms_per_1000,
    }
    missed = [name for name, met in checks.items() if not met]
    return "all targets met" if not missed else "MISSED: " + ", ".join(missed)


def _number(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def print_table(kind: str, rows: list[Row]) -> None:
    print(f"\n{STREAM_KINDS[kind].description}")
    header = f"{'detector':<32} {'missed':>9} {'false':>6} {'delay mean':>11} {'max':>5}"
    print(f"{header} {'CPU ms/1000':>12}  signals that fired")
    for row in rows:
        print(
            f"{row.detector:<32} {row.missed:>4} of {row.drifts:<2} {row.false_alarms:>6}"
            f" {_number(row.mean_delay):>11} {_number(row.max_delay):>5}"
            f" {row.cpu_ms_per_1000:>12.1f}  {row.signals}"
        )
    baseline = next(row for row in rows if row.detector == EVIDENTLY_ERROR)
    for row in rows:
        if row.detector in PLATFORM_CONFIGS:
            print(f"  {row.detector} vs {EVIDENTLY_ERROR}: {verdict(row, baseline)}")


def progress(message: str) -> None:
    print(f"bench-drift: {message}", file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--segment", type=int, default=3000, help="events per concept segment")
    parser.add_argument("--training", type=int, default=5000, help="events the model is fit on")
    parser.add_argument("--tolerance", type=int, default=1500, help="events a drift owns")
    parser.add_argument("--window", type=int, default=500, help="Evidently's window")
    parser.add_argument("--step", type=int, default=500, help="events between Evidently reports")
    args = parser.parse_args()

    python = ensure_evidently_venv()
    progress(f"generating {len(STREAM_KINDS) * len(args.seeds)} streams")
    streams = {
        (kind, seed): drift_stream(kind, seed, args.segment, args.training)
        for kind in STREAM_KINDS
        for seed in args.seeds
    }
    with tempfile.TemporaryDirectory(prefix="bench-drift-") as workdir:
        evidently = start_evidently(
            python, list(streams.values()), args.window, args.step, Path(workdir)
        )
        progress("platform detectors (Evidently runs meanwhile, in its own process)")
        runs = [
            watch_platform(name, stream, config)
            for name, config in PLATFORM_CONFIGS.items()
            for stream in streams.values()
        ]
        progress("waiting for Evidently")
        version, found = evidently_runs(evidently)
    runs += found

    length = 3 * args.segment
    print(
        f"bench-drift: seeds {' '.join(map(str, args.seeds))}, {length} events per stream"
        f" (concepts A|B|A, drifts at {args.segment} and {2 * args.segment}),"
        f" a drift owns the {args.tolerance} events after it"
    )
    for name, config in PLATFORM_CONFIGS.items():
        print(f"{name}: MLOPS_MONITORING_DETECTORS entry {json.dumps(config)}")
    print(
        f"Evidently {version} DataDriftPreset every {args.step} events, last {args.window}"
        f" vs the {args.window} before (one report gives both Evidently rows and their CPU)"
    )
    detector_names = [*PLATFORM_CONFIGS, EVIDENTLY_DATASET, EVIDENTLY_ERROR]
    for kind in STREAM_KINDS:
        rows = [
            summarize(
                name,
                [run for run in runs if run.detector == name and run.kind == kind],
                streams,
                args.tolerance,
            )
            for name in detector_names
        ]
        print_table(kind, rows)


if __name__ == "__main__":
    main()
