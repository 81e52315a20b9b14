"""Serving: answers predictions with each served model's champion, swaps to a new champion
the moment the registry promotes it (models.lifecycle), and logs every prediction it makes
(PredictionServed on serving.predictions) for monitoring, without waiting for Kafka.

Models are skops artifacts from MinIO, checked by sha256 and loaded without unpickling
(shared.artifacts); a tampered or unloadable artifact is refused and the old model keeps
serving.
"""
