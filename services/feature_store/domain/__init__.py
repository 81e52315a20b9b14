"""The feature store's logic, free of I/O: windows, aggregates, feature vectors, offline rows
and point-in-time joins."""
