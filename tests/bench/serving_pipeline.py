"""The scikit-learn pipeline the serving tests and benchmark train, on the loans columns.

Self-contained (scikit-learn and pandas only), so the MLflow reference can import it in its
own virtualenv and fit the very same model from the same rows and seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

CATEGORICAL = ("elevel", "car", "zipcode")
NUMERIC = ("salary", "commission", "age", "hvalue", "hyears", "loan")
FEATURE_COLUMNS = (
    "salary",
    "commission",
    "age",
    "elevel",
    "car",
    "zipcode",
    "hvalue",
    "hyears",
    "loan",
)


def loans_pipeline(seed: int, max_iter: int = 50) -> Pipeline:
    encode = ColumnTransformer(
        [
            (
                "categories",
                OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                list(CATEGORICAL),
            ),
            ("numbers", "passthrough", list(NUMERIC)),
        ]
    )
    model = HistGradientBoostingClassifier(max_iter=max_iter, random_state=seed)
    return Pipeline([("encode", encode), ("model", model)])


def training_frame(records: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """The feature columns of loans records, in order, typed as the training service types
    them: numbers as float64, categories as strings in object columns."""
    frame = pd.DataFrame(
        [{c: r[c] for c in FEATURE_COLUMNS} for r in records], columns=list(FEATURE_COLUMNS)
    )
    return frame.astype({**{c: "float64" for c in NUMERIC}, **{c: object for c in CATEGORICAL}})
