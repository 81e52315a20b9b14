"""The scikit-learn Pipeline of a run: a ColumnTransformer over the feature columns, then the
estimator.

- numeric: passed through to tree ensembles, standardized for every other estimator; missing
  values imputed (median) unless the estimator handles them itself;
- categorical: missing values become "missing", then OneHotEncoder(handle_unknown="ignore");
- boolean (0/1 after frames.prepare): passed through, imputed (most frequent) when needed.

Every step is a scikit-learn class, so the fitted pipeline stores as a skops artifact that
loads with the platform's type allowlist (shared.artifacts).
"""

from __future__ import annotations

from sklearn.base import BaseEstimator
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.utils import get_tags

from services.training.domain.frames import ColumnKind

TREE_MODULES = ("sklearn.ensemble.", "sklearn.tree.")
MISSING_CATEGORY = "missing"


def build_pipeline(estimator: BaseEstimator, kinds: dict[str, ColumnKind], seed: int) -> Pipeline:
    """The unfitted pipeline; every random_state in it (the estimator's) is `seed`."""
    by_kind = {
        kind: [name for name, k in kinds.items() if k == kind] for kind in set(kinds.values())
    }
    transformers = []
    if by_kind.get("numeric"):
        transformers.append(("numeric", _numeric(estimator), by_kind["numeric"]))
    if by_kind.get("boolean"):
        transformers.append(("boolean", _boolean(estimator), by_kind["boolean"]))
    if by_kind.get("categorical"):
        transformers.append(("categorical", _categorical(), by_kind["categorical"]))
    features = ColumnTransformer(transformers, remainder="drop", sparse_threshold=0.0)
    pipeline = Pipeline([("features", features), ("model", estimator)])
    seeded = {k: seed for k in pipeline.get_params(deep=True) if k.endswith("random_state")}
    return pipeline.set_params(**seeded)


def is_tree_based(estimator: BaseEstimator) -> bool:
    return type(estimator).__module__.startswith(TREE_MODULES)


def handles_missing(estimator: BaseEstimator) -> bool:
    return bool(get_tags(estimator).input_tags.allow_nan)


def _numeric(estimator: BaseEstimator) -> Pipeline | str:
    steps = []
    if not handles_missing(estimator):
        steps.append(("impute", SimpleImputer(strategy="median")))
    if not is_tree_based(estimator):
        steps.append(("scale", StandardScaler()))
    return Pipeline(steps) if steps else "passthrough"


def _boolean(estimator: BaseEstimator) -> Pipeline | str:
    if handles_missing(estimator):
        return "passthrough"
    return Pipeline([("impute", SimpleImputer(strategy="most_frequent"))])


def _categorical() -> Pipeline:
    return Pipeline(
        [
            ("impute", SimpleImputer(strategy="constant", fill_value=MISSING_CATEGORY)),
            ("encode", OneHotEncoder(handle_unknown="ignore", sparse_output=False)),
        ]
    )
