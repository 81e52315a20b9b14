"""Strings as the platform can keep and show them: no lone surrogate (UTF-8 cannot encode it,
so no topic, table or JSON answer can hold it), no NUL (PostgreSQL text refuses it), and cut
short before they go into a message."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

MAX_TEXT_CHARS = 200
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def shown(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    """`text` fit for an answer: lone surrogates escaped (they cannot be encoded), at most
    `limit` characters."""
    safe = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return safe if len(safe) <= limit else safe[: limit - 1] + "…"


def text_problem(text: str) -> str | None:
    """Why a string cannot be taken as text, or None."""
    surrogate = _LONE_SURROGATE.search(text)
    if surrogate:
        return f"a lone surrogate ({shown(surrogate.group())}): text must be valid Unicode"
    if "\x00" in text:
        return "a NUL character (\\u0000), which text fields do not accept"
    return None


def strings(value: Any, where: str) -> Iterator[tuple[str, str]]:
    """Every string of a JSON document (object keys too) with where it is."""
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from strings(item, f"{where}[{index}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            yield f"{where} (a key)", key
            yield from strings(item, f"{where}.{shown(key, 60)}")


def first_text_problem(document: Any, where: str) -> tuple[str, str] | None:
    """The first string of a decoded document (keys too) that cannot be text, as (where,
    why), or None."""
    for place, text in strings(document, where):
        problem = text_problem(text)
        if problem:
            return place, problem
    return None
