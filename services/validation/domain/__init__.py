"""Validation logic without I/O: decoding, rules, duplicates, statistics."""
