"""Reading a raw message's bytes as JSON, and finding the values no store or output can carry.
Pure: no I/O.

These rules are decided here, before the spec's rules and before any store sees a value:

| rule            | when                                                                          |
|-----------------|-------------------------------------------------------------------------------|
| not_utf8        | the message is not UTF-8 (JSON between systems must be, RFC 8259)             |
| nul_character   | a string (value, column name, id, entity) holds U+0000: PostgreSQL refuses it |
| lone_surrogate  | a string holds an unpaired UTF-16 surrogate ("\\ud800"): no UTF-8 output can carry it |
| number_overflow | a number beyond the float range (1e400), which would otherwise read as infinity |
| number_too_long | a number written with more than MAX_NUMBER_DIGITS digits                      |

The common message has none of these: it is read by the C JSON parser alone. Only a message
whose text holds a NUL or surrogate escape, a long run of digits or a 3-digit exponent is read
value by value.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, replace
from typing import Any, Final

MAX_NUMBER_DIGITS: Final = 100
_SHOWN_NUMBER: Final = 40
# NUL and surrogates reach a JSON text only as \u escapes; overflows need a 3-digit exponent.
_SUSPECT: Final = re.compile(
    rf"\\u(?:0000|[dD][89a-fA-F])|\d{{{MAX_NUMBER_DIGITS + 1},}}|[\d.][eE][+-]?\d{{3,}}"
)
_SURROGATE: Final = re.compile("[\ud800-\udfff]")

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Finding:
    """A value that breaks one of this module's rules, where it sits and how it is shown."""

    path: Path
    rule: str
    message: str
    shown: str | None = None


class Unreadable(ValueError):
    """A message that is not JSON; `rule` says whether it is because it is not UTF-8."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule


@dataclass(frozen=True)
class _BadNumber:
    rule: str
    message: str
    shown: str


def _shown(literal: str) -> str:
    if len(literal) <= _SHOWN_NUMBER:
        return literal
    return f"{literal[:_SHOWN_NUMBER]}... ({len(literal)} characters)"


def _digits(literal: str) -> int:
    return sum(character.isdigit() for character in literal)


def _too_long(literal: str) -> _BadNumber:
    message = (
        f"a number written with {_digits(literal)} digits is past the limit of "
        f"{MAX_NUMBER_DIGITS} digits"
    )
    return _BadNumber("number_too_long", message, _shown(literal))


def _parse_float(literal: str) -> float | _BadNumber:
    if _digits(literal) > MAX_NUMBER_DIGITS:
        return _too_long(literal)
    number = float(literal)
    if math.isinf(number):
        message = f"{_shown(literal)} is beyond the range of a float (about ±1.8e308)"
        return _BadNumber("number_overflow", message, _shown(literal))
    return number


def _parse_int(literal: str) -> int | _BadNumber:
    if _digits(literal) > MAX_NUMBER_DIGITS:
        return _too_long(literal)
    return int(literal)


def _clean_text(text: str, path: Path, findings: list[Finding]) -> str:
    if "\x00" in text:
        text = text.replace("\x00", "\\u0000")
        findings.append(Finding(path, "nul_character", "holds a NUL character (U+0000)", text))
    if _SURROGATE.search(text):
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
        message = "holds a lone surrogate (half of a UTF-16 pair), which is no character"
        findings.append(Finding(path, "lone_surrogate", message, text))
    return text


def _clean(node: Any, path: Path, findings: list[Finding]) -> Any:
    """`node` with every unsafe string escaped and every bad number shown as text."""
    if isinstance(node, str):
        return _clean_text(node, path, findings)
    if isinstance(node, _BadNumber):
        findings.append(Finding(path, node.rule, node.message, node.shown))
        return node.shown
    if isinstance(node, list):
        return [_clean(item, (*path, index), findings) for index, item in enumerate(node)]
    if isinstance(node, dict):
        cleaned = {}
        for key, item in node.items():
            in_key: list[Finding] = []
            safe = _clean_text(key, (), in_key)
            findings.extend(replace(finding, path=(*path, safe)) for finding in in_key)
            cleaned[safe] = _clean(item, (*path, safe), findings)
        return cleaned
    return node


def _text_of(value: bytes, findings: list[Finding]) -> str:
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as problem:
        byte = value[problem.start]
        message = f"the message is not UTF-8: byte {byte:#04x} at position {problem.start}"
        findings.append(Finding((), "not_utf8", message))
        text = value.decode("utf-8", "replace")
    return text.removeprefix("\ufeff")  # a UTF-8 byte order mark may be ignored (RFC 8259)


def read_json(value: bytes) -> tuple[Any, list[Finding]]:
    """The message's JSON document (unsafe values escaped) and what breaks this module's
    rules. Raises Unreadable when it is not JSON, RecursionError when nested too deeply."""
    findings: list[Finding] = []
    text = _text_of(value, findings)
    try:
        if not _SUSPECT.search(text):
            return json.loads(text), findings
        document = json.loads(text, parse_float=_parse_float, parse_int=_parse_int)
    except ValueError as problem:
        if findings:
            raise Unreadable("not_utf8", findings[0].message) from None
        raise Unreadable("malformed", f"not JSON: {problem}") from None
    return _clean(document, (), findings), findings
