"""MLflow's side of bench-serving; runs in MLflow's own virtualenv (.local/bench/mlflow-*),
never in the project's.

    <mlflow venv>/bin/python tests/bench/mlflow_reference.py --training training.json \
        --seed 7 --max-iter 50 --workdir DIR --probes probes.json

Fits the same pipeline (tests/bench/serving_pipeline.py, imported from this folder) on the
same rows with the same seed as the project side, logs it with mlflow.sklearn.log_model
(signature inferred from the training frame) into a local tracking store under DIR, downloads
the logged model to DIR/model for `mlflow models serve`, and prints one JSON line with that
path and the model's probabilities on the probe records (to check both sides hold the same
model).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import mlflow
import mlflow.sklearn
from mlflow.models import infer_signature
from serving_pipeline import loans_pipeline, training_frame

TREE_PREDICTOR = "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--training", type=Path, required=True)
    parser.add_argument("--probes", type=Path, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--max-iter", type=int, required=True)
    parser.add_argument("--workdir", type=Path, required=True)
    args = parser.parse_args()

    training = json.loads(args.training.read_text())
    frame = training_frame(training["records"])
    model = loans_pipeline(args.seed, args.max_iter).fit(frame, training["labels"])

    mlflow.set_tracking_uri(f"sqlite:///{args.workdir / 'mlflow.db'}")
    experiment = mlflow.create_experiment(
        "bench-serving", artifact_location=(args.workdir / "artifacts").as_uri()
    )
    with mlflow.start_run(experiment_id=experiment):
        signature = infer_signature(frame, model.predict_proba(frame))
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=signature,
            input_example=frame.head(2),
            # MLflow stores sklearn models with skops too, and asks which types to trust.
            skops_trusted_types=[TREE_PREDICTOR],
            pyfunc_predict_fn="predict_proba",  # probabilities, as serving answers
        )
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=info.model_uri, dst_path=str(args.workdir / "download")
    )
    probes = training_frame(json.loads(args.probes.read_text()))
    print(
        json.dumps(
            {
                "model_path": local,
                "model_uri": info.model_uri,
                "mlflow": mlflow.__version__,
                "probabilities": model.predict_proba(probes).tolist(),
            }
        )
    )


if __name__ == "__main__":
    main()
