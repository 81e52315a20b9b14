"""Monitoring: River drift detectors on features, predictions and errors; drift-triggered retraining."""
