"""Failures of training's dependencies, as the handlers see them."""

from __future__ import annotations


class DependencyUnavailable(Exception):
    """A service or store did not answer, or failed: another attempt may succeed."""

    reason = "dependency_unavailable"


class DependencyRefused(Exception):
    """A service answered with a refusal or an answer training cannot use."""

    reason = "dependency_refused"
