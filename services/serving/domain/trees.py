"""A structural check of histogram gradient boosting trees before they take traffic.

skops rebuilds a HistGradientBoosting model's TreePredictor objects from the node arrays in
the file, and scikit-learn's predict walks those arrays without bounds checks: a crafted
artifact (with a matching sha256, so from a compromised registry or training run) could make
predict read outside them or never stop. Every split node must point to children after
itself and inside the tree, read a feature the model has, and name a category bitset that
exists; otherwise the model is refused before its warm-up runs it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from services.serving.domain.served import ModelUnusable


def _estimators(estimator: Any) -> Iterator[Any]:
    """The estimator and those nested in it (pipeline steps, column transformers)."""
    yield estimator
    for _, step in getattr(estimator, "steps", []):
        yield from _estimators(step)
    for entry in getattr(estimator, "transformers_", []):
        yield from _estimators(entry[1])


def check_tree(nodes: np.ndarray, features: int, bitsets: int) -> str | None:
    """Why a tree's node array is unsafe to walk, or None."""
    size = len(nodes)
    if size == 0:
        return "a tree without nodes"
    splits = np.flatnonzero(nodes["is_leaf"] == 0)
    left, right = nodes["left"][splits].astype(np.int64), nodes["right"][splits].astype(np.int64)
    if np.any(left <= splits) or np.any(right <= splits):
        return "a split node points back to itself or an earlier node"
    if np.any(left >= size) or np.any(right >= size):
        return "a split node points past the end of its tree"
    feature = nodes["feature_idx"][splits]
    if np.any(feature < 0) or np.any(feature >= features):
        return f"a split node reads a feature outside the model's {features}"
    categorical = splits[nodes["is_categorical"][splits] != 0]
    if np.any(nodes["bitset_idx"][categorical].astype(np.int64) >= bitsets):
        return "a categorical split names a bitset that does not exist"
    return None


def check_tree_predictors(estimator: Any) -> None:
    """Raises ModelUnusable if any HistGradientBoosting tree inside `estimator` is unsafe."""
    for found in _estimators(estimator):
        predictors = getattr(found, "_predictors", None)
        if predictors is None:
            continue
        features = int(getattr(found, "n_features_in_", 0))
        for iteration, trees in enumerate(predictors):
            for tree in trees:
                bitsets = len(getattr(tree, "raw_left_cat_bitsets", ()))
                problem = check_tree(np.asarray(tree.nodes), features, bitsets)
                if problem is not None:
                    name = type(found).__name__
                    raise ModelUnusable(f"{name} tree of iteration {iteration}: {problem}")
