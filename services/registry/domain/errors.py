"""What the registry refuses, and why; http.py maps each kind to its status code."""

from __future__ import annotations


class RegistryError(Exception):
    """A refusal with a reason a person can act on."""


class NotFound(RegistryError):
    """No such model, version, alias or tag."""


class Conflict(RegistryError):
    """The request does not fit the registry's current state (e.g. nothing to roll back)."""


class PublishFailed(RegistryError):
    """Kafka did not confirm a lifecycle event; the change it announced was not kept."""
