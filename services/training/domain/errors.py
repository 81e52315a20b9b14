"""Why a training run is refused: problems that another attempt would not fix."""

from __future__ import annotations


class TrainingRefused(Exception):
    """A command that cannot be trained as asked (its message says what to change)."""

    reason = "training_refused"


class EstimatorRefused(TrainingRefused):
    """The estimator is not an allowed scikit-learn class, or its parameters are wrong."""

    reason = "estimator_refused"


class BadTrainingSet(TrainingRefused):
    """The training set lacks a column the dataset spec requires, or holds unusable values."""

    reason = "bad_training_set"


class NotEnoughData(TrainingRefused):
    """Too few labelled rows (or classes) to fit and evaluate a model."""

    reason = "not_enough_data"


class DataNotArrived(Exception):
    """The feature store's offline store did not hold every record labelled before the
    command's time within the wait: a later attempt may succeed, this one failed."""

    reason = "data_not_arrived"
