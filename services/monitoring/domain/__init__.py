"""Monitoring logic free of I/O: detectors, the prediction-label join, the retraining policy."""
