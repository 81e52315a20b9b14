"""Evidently's side of bench-drift; runs in Evidently's own virtualenv
(.local/bench/evidently-*), never in the project's.

    <evidently venv>/bin/python tests/bench/evidently_reference.py --manifest manifest.json

The manifest names Parquet files (one stream each: its feature columns, `prediction` and
`error`, with which columns are categorical: both for classification, neither for
regression, where `error` is the absolute residual), the window and the step. Over each stream, every `step` events, a DataDriftPreset
report compares the latest `window` events (current) with the `window` events before them
(reference). Two flags of each report count as a detection at the last event of the
current window: the preset's dataset drift (the share of drifted columns reached
`drift_share`, 0.5 by default) and the drift test of the `error` column alone. Prints one
JSON line: per stream the detection positions of both flags, the reports run and the CPU
time (time.process_time) of the report loop.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import evidently
import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset

CATEGORICAL = ["prediction", "error"]


def flags(result: dict[str, Any]) -> tuple[bool, bool]:
    """(dataset drift, error column drift) from a report's tests (FAIL means drift)."""
    dataset = error = False
    for test in result["tests"]:
        params = test["metric_config"]["params"]
        failed = test["status"] == "FAIL"
        if params["type"].endswith("DriftedColumnsCount"):
            dataset = failed
        elif params["type"].endswith("ValueDrift") and params.get("column") == "error":
            error = failed
    return dataset, error


def watch(
    frame: pd.DataFrame, window: int, step: int, categorical: list[str] = CATEGORICAL
) -> dict[str, Any]:
    numerical = [column for column in frame.columns if column not in categorical]
    definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)
    report = Report([DataDriftPreset()], include_tests=True)
    dataset_drift: list[int] = []
    error_drift: list[int] = []
    reports = 0
    started = time.process_time()
    for end in range(2 * window, len(frame) + 1, step):
        reference = Dataset.from_pandas(frame.iloc[end - 2 * window : end - window], definition)
        current = Dataset.from_pandas(frame.iloc[end - window : end], definition)
        dataset, error = flags(report.run(current, reference).dict())
        reports += 1
        if dataset:
            dataset_drift.append(end - 1)
        if error:
            error_drift.append(end - 1)
    return {
        "events": len(frame),
        "reports": reports,
        "cpu_s": time.process_time() - started,
        "dataset_drift": dataset_drift,
        "error_drift": error_drift,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--manifest", type=Path, required=True)
    args = parser.parse_args()
    manifest = json.loads(args.manifest.read_text())
    runs = []
    for stream in manifest["streams"]:
        frame = pd.read_parquet(stream["path"])
        runs.append(
            {
                "kind": stream["kind"],
                "seed": stream["seed"],
                **watch(
                    frame,
                    manifest["window"],
                    manifest["step"],
                    stream.get("categorical", CATEGORICAL),
                ),
            }
        )
    print(json.dumps({"evidently": evidently.__version__, "runs": runs}))


if __name__ == "__main__":
    main()
