"""Widget values as the frontend writes them into the API graph.

Two things change a value between the saved workflow and the queued graph:
- JavaScript numbers: every number is a double, so `1.0` is written `1` and an integer past
  2**53 loses its low digits; the API graph must carry the same numbers the browser would send.
- Dynamic prompts: text widgets that declare `dynamicPrompts` drop `//` and `/* */` comments
  and pick one option of each `{a|b}` group at random when queued. A random pick cannot be
  reproduced, so a prompt with a real choice is refused rather than guessed.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import Any

# JavaScript prints integral doubles below 1e21 as plain digits, above in exponent form.
_JS_PLAIN_LIMIT = 1e21
_SAFE_INT = 2**53

# The frontend's comment pattern; JavaScript's `.` stops at any line terminator, not only \n.
_COMMENTS = re.compile(r"/\*[\s\S]*?\*/|//[^\n\r\u2028\u2029]*")
_UNESCAPE = re.compile(r"\\([{}|])")


def same_json(a: Any, b: Any) -> bool:
    """Equality as the queued JSON tells values apart: 1 is not 1.0, True is not 1."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b))
    return bool(a == b)


class _Undefined:
    """JavaScript's `undefined`: an input holding it is left out of the API graph."""

    def __repr__(self) -> str:
        return "undefined"


UNDEFINED = _Undefined()


class RandomChoice(Exception):
    """A dynamic prompt offers a real choice; the frontend would pick one at random."""


def js_number(value: int | float) -> int | float | None:
    """The number JSON.stringify would write for `value` once it has been a double."""
    if isinstance(value, int):
        if -_SAFE_INT <= value <= _SAFE_INT:
            return value
        try:
            value = float(value)
        except OverflowError:
            return None
    if math.isnan(value) or math.isinf(value):
        return None  # JSON.stringify writes NaN and Infinity as null
    if value.is_integer() and abs(value) < _JS_PLAIN_LIMIT:
        # repr gives the shortest round-trip digits, as JavaScript does; the rest are zeros.
        return int(Decimal(repr(value)))
    return value


def js_value(value: Any) -> Any:
    """Apply the double round trip to every number inside a JSON value."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return js_number(value)
    if isinstance(value, list):
        return [js_value(v) for v in value]
    if isinstance(value, dict):
        return {k: js_value(v) for k, v in value.items()}
    return value


def api_value(value: Any) -> Any:
    """A widget value as an API input: lists are boxed so they are not read as links."""
    value = js_value(value)
    if isinstance(value, list):
        return {"__value__": value}
    return value


def dynamic_prompt(text: str) -> str:
    """Resolve a dynamic prompt the frontend's way; raise RandomChoice on a real choice."""
    return _UNESCAPE.sub(r"\1", _expand(_COMMENTS.sub("", text)))


def _escape_at(text: str, i: int) -> tuple[str, int]:
    # The frontend keeps the backslash and the next character; past the end it reads
    # `undefined`, which string concatenation spells out.
    nxt = text[i] if i < len(text) else "undefined"
    return "\\" + nxt, i + 1


def _choice_block(text: str, i: int) -> tuple[str, int]:
    options: list[str] = []
    choice = ""
    depth = 0
    while i < len(text):
        char = text[i]
        i += 1
        if char == "\\":
            piece, i = _escape_at(text, i)
            choice += piece
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            if not depth:
                break
            depth -= 1
        elif char == "|" and not depth:
            options.append(choice)
            choice = ""
            continue
        choice += char
    options.append(choice)
    # The picked option goes through the whole procedure again, unescaping included.
    resolved = {dynamic_prompt(option) for option in options}
    if len(resolved) != 1:
        raise RandomChoice(f"dynamic prompt choice {{{'|'.join(options)}}} is picked at random")
    return resolved.pop(), i


def _expand(text: str) -> str:
    result = ""
    i = 0
    while i < len(text):
        char = text[i]
        i += 1
        if char == "\\":
            piece, i = _escape_at(text, i)
            result += piece
        elif char == "{":
            piece, i = _choice_block(text, i)
            result += piece
        else:
            result += char
    return result
