"""Serving's own logic, free of I/O: request checks, scoring, answers, the model swap."""
