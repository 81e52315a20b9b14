"""Validation: checks every raw record against its dataset spec (port 8002).

data.raw -> data.validated (typed values) | data.rejected (every failing field and rule),
exactly one output per raw message; streaming data-quality statistics at /stats/{dataset}.
"""
