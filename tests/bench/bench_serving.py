"""Benchmark of serving, printed side by side with MLflow's `mlflow models serve`.

    make bench-serving   (or: python -m tests.bench.bench_serving --concurrency 1,8,32)

One scikit-learn pipeline (tests/bench/serving_pipeline.py: one-hot categories, then a
HistGradientBoostingClassifier) is fitted on the same Agrawal loans rows with the same seed
twice: here, stored as a skops artifact in MinIO, registered through the registry and served
by this service (python -m services.serving, with the registry, Kafka and the prediction log
live); and in MLflow's own virtualenv (.local/bench/mlflow-<version>), logged with
mlflow.sklearn.log_model and served by `mlflow models serve --env-manager local`, one worker,
answering predict_proba. Both answer the same probabilities (checked on probe records).

The same load generator (tests/bench/serving_load.py: its own process, N keep-alive
connections sending single-record requests back to back) drives each server at each
concurrency; printed: requests/s, p50 and p99 latency. The floor is the bare in-process
predict_proba of the same model on a ready one-row DataFrame, one thread: what one request
costs with no HTTP, no validation and no batching.

Both servers get one native (OpenMP/BLAS) thread per predict call (MLflow through
OMP_NUM_THREADS): on a small machine more threads for single rows only add scheduling stalls.
Serving runs as deployed: tracing exported to Jaeger when the stack configures it, and every
prediction published to Kafka.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas
import sklearn
from confluent_kafka.admin import AdminClient
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from shared.artifacts import store_model
from shared.datasets.sources import agrawal_records
from shared.kafka.config import producer_config
from shared.kafka.producer import EventProducer, OutgoingMessage
from shared.settings import PlatformSettings
from shared.storage import minio_client
from tests.bench.serving_pipeline import FEATURE_COLUMNS, loans_pipeline, training_frame
from tests.bench.serving_stack import loans_trained, register_loans_spec
from tests.bench.venvs import ensure_venv
from tests.services import free_port, namespace_topics, start_service
from tests.waiting import wait_until

MLFLOW_VERSION = "3.17.2"
REPO = Path(__file__).resolve().parents[2]
MLFLOW_VENV = REPO / ".local" / "bench" / f"mlflow-{MLFLOW_VERSION}"
START = datetime(2024, 1, 1, tzinfo=UTC)
Record = dict[str, Any]


def loans_rows(count: int, seed: int) -> tuple[list[Record], list[int]]:
    pairs = list(agrawal_records(count, seed=seed, start=START))
    features = [{c: record[c] for c in FEATURE_COLUMNS} for record, _ in pairs]
    return features, [label for _, label in pairs]


def percentile(samples: list[float], q: float) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[int(q) - 1]


def in_process_floor(model: Pipeline, records: list[Record], rounds: int) -> dict[str, float]:
    """predict_proba of one record at a time on a ready one-row DataFrame, on one thread."""
    frames = [training_frame([record]) for record in records]
    samples = []
    with threadpool_limits(limits=1):
        for n in range(rounds):
            frame = frames[n % len(frames)]
            started = time.perf_counter()
            model.predict_proba(frame)
            samples.append((time.perf_counter() - started) * 1000)
    return {"p50_ms": percentile(samples, 50), "p99_ms": percentile(samples, 99)}


def ensure_mlflow_venv() -> Path:
    """MLflow in its own virtualenv, with this project's scikit-learn, pandas and numpy."""
    return ensure_venv(
        MLFLOW_VENV,
        [
            f"mlflow=={MLFLOW_VERSION}",
            f"scikit-learn=={sklearn.__version__}",
            f"pandas=={pandas.__version__}",
            f"numpy=={np.__version__}",
        ],
    )


def answering(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


@contextmanager
def mlflow_server(
    workdir: Path, training: Path, probes: Path, seed: int, max_iter: int, omp_threads: int
) -> Iterator[tuple[str, list[list[float]]]]:
    """Fits and logs the model in MLflow's venv, serves it; yields the URL and its probe
    probabilities as fitted there."""
    python = ensure_mlflow_venv()
    fitted = subprocess.run(
        [str(python), str(Path(__file__).with_name("mlflow_reference.py")),
         "--training", str(training), "--probes", str(probes), "--seed", str(seed),
         "--max-iter", str(max_iter), "--workdir", str(workdir)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    logged = json.loads(fitted.stdout.strip().splitlines()[-1])
    port = free_port()
    env = {
        **os.environ,
        "PATH": f"{python.parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "OMP_NUM_THREADS": str(omp_threads),
        "OPENBLAS_NUM_THREADS": str(omp_threads),
    }
    with (workdir / "mlflow-serve.log").open("w") as log:
        process = subprocess.Popen(
            [str(python.parent / "mlflow"), "models", "serve", "-m", logged["model_path"],
             "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port)],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: answering(f"{url}/ping"), what="mlflow models serve", timeout_s=180)
        yield url, logged["probabilities"]
    finally:
        os.killpg(process.pid, 15)
        process.wait(30)


@contextmanager
def serving_stack(
    settings: PlatformSettings, workdir: Path, model: Pipeline
) -> Iterator[tuple[str, str]]:
    """This platform's serving on its own namespace, the model registered as champion; yields
    the serving URL and the namespace."""
    namespace = f"bench-serving-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})
    minio = minio_client(settings)
    bucket = f"bench-serving-{uuid.uuid4().hex[:8]}"
    minio.make_bucket(bucket)
    producer = EventProducer(producer_config(settings, "bench-serving"))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    services = []
    try:
        with namespace_topics(admin, namespace) as catalog:
            register_loans_spec(settings, catalog.name("data.specs", namespace), producer)
            artifact = store_model(minio, model, bucket, "loans/v1.skops")
            database = f"sqlite:///{workdir / 'registry.sqlite'}"
            registry = start_service(
                "registry", namespace, {**env, "MLOPS_REGISTRY_DATABASE_URL": database}, workdir
            )
            services.append(registry)
            trained = loans_trained(artifact, "bench", namespace, FEATURE_COLUMNS)
            producer.publish_confirmed(
                [OutgoingMessage.for_event(catalog.name("models.trained", namespace), trained)]
            )
            serving_env = {
                **env,
                "MLOPS_SERVING_MODELS": '["loans"]',
                "MLOPS_SERVING_REGISTRY_URL": registry.url,
            }
            serving = start_service("serving", namespace, serving_env, workdir, timeout_s=120)
            services.append(serving)
            yield serving.url, namespace
    finally:
        for service in reversed(services):
            service.stop()
        for item in minio.list_objects(bucket, recursive=True):
            minio.remove_object(bucket, item.object_name)
        minio.remove_bucket(bucket)


def our_probabilities(url: str, probes: list[Record]) -> list[list[float]]:
    answer = httpx.post(f"{url}/predict", json={"model": "loans", "records": probes}, timeout=30)
    answer.raise_for_status()
    return [
        [p["probabilities"]["0"], p["probabilities"]["1"]] for p in answer.json()["predictions"]
    ]


def mlflow_probabilities(url: str, probes: list[Record]) -> list[list[float]]:
    answer = httpx.post(f"{url}/invocations", json={"dataframe_records": probes}, timeout=30)
    answer.raise_for_status()
    predictions: list[list[float]] = answer.json()["predictions"]
    return predictions


def run_load(
    url: str, bodies: Path, concurrency: int, seconds: float, warmup: float
) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "tests.bench.serving_load", "--url", url, "--bodies", str(bodies),
         "--concurrency", str(concurrency), "--seconds", str(seconds), "--warmup", str(warmup)],
        check=True, capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def row(concurrency: int, server: str, result: dict[str, Any]) -> str:
    return (
        f"{concurrency:>11}  {server:<34}{result['rps']:>8.0f}{result['p50_ms']:>9.1f}"
        f"{result['p99_ms']:>9.1f}{result['errors']:>8}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--train-rows", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--max-iter", type=int, default=50)
    parser.add_argument("--concurrency", default="1,8,32", help="comma-separated levels")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--native-threads", type=int, default=1)
    args = parser.parse_args()
    levels = [int(level) for level in args.concurrency.split(",")]
    settings = PlatformSettings()

    records, labels = loans_rows(args.train_rows, args.seed)
    probes, _ = loans_rows(20, args.seed + 1)
    load_records, _ = loans_rows(500, args.seed + 2)
    model = loans_pipeline(args.seed, args.max_iter).fit(training_frame(records), labels)
    floor = in_process_floor(model, load_records, rounds=2000)

    workdir = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    training = workdir / "training.json"
    training.write_text(json.dumps({"records": records, "labels": labels}))
    (workdir / "probes.json").write_text(json.dumps(probes))
    ours_bodies, mlflow_bodies = workdir / "ours.json", workdir / "mlflow.json"
    ours_bodies.write_text(json.dumps([{"model": "loans", "records": [r]} for r in load_records]))
    mlflow_bodies.write_text(json.dumps([{"dataframe_records": [r]} for r in load_records]))

    results: list[tuple[int, dict[str, Any], dict[str, Any]]] = []
    with (
        serving_stack(settings, workdir, model) as (ours, _),
        mlflow_server(
            workdir, training, workdir / "probes.json", args.seed, args.max_iter,
            args.native_threads,
        ) as (theirs, fitted_there),
    ):  # fmt: skip
        same = np.allclose(our_probabilities(ours, probes), mlflow_probabilities(theirs, probes))
        same_fit = np.allclose(model.predict_proba(training_frame(probes)), fitted_there)
        for level in levels:
            ours_result = run_load(f"{ours}/predict", ours_bodies, level, args.seconds, args.warmup)
            theirs_result = run_load(
                f"{theirs}/invocations", mlflow_bodies, level, args.seconds, args.warmup
            )
            results.append((level, ours_result, theirs_result))

    print(
        f"\nbench-serving: {args.max_iter}-iteration HistGradientBoosting pipeline on "
        f"{len(FEATURE_COLUMNS)} loans features, fitted on {args.train_rows} rows (seed "
        f"{args.seed}); single-record requests, {args.seconds:g} s per run after "
        f"{args.warmup:g} s warm-up; one server process each, {os.cpu_count()} cores shared "
        f"with the load generator, Kafka, MinIO and the registry"
    )
    print(
        f"same model both sides: fitted identically {'yes' if same_fit else 'NO'}, "
        f"answers identical {'yes' if same else 'NO'}; mlflow {MLFLOW_VERSION}, "
        f"scikit-learn {sklearn.__version__}, tracing "
        f"{'on (OTLP to Jaeger)' if settings.otlp_endpoint else 'off'}"
    )
    print(
        f"floor (in-process predict_proba on a one-row DataFrame, one thread): "
        f"p50 {floor['p50_ms']:.2f} ms, "
        f"p99 {floor['p99_ms']:.2f} ms = {1000 / floor['p50_ms']:.0f} predictions/s\n"
    )
    print(f"{'concurrency':>11}  {'server':<34}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}")
    for level, ours_result, theirs_result in results:
        print(row(level, "serving (this platform)", ours_result))
        print(row(level, f"mlflow models serve {MLFLOW_VERSION}", theirs_result))
        ratio = ours_result["rps"] / max(theirs_result["rps"], 1e-9)
        p99 = ours_result["p99_ms"] / theirs_result["p99_ms"]
        print(
            f"{'':>13}throughput {ratio:.1f}x mlflow's, p99 {p99:.2f}x mlflow's (target >= 3x, < 1x)"
        )
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
