"""The training service: trains scikit-learn models on request, data volume or drift."""
