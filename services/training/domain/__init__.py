"""Training's own logic, free of I/O: estimators, pipelines, training frames, the time split,
metrics and lineage."""
