"""Workflow JSON text parsed within bounds, so that what it costs is known before it is paid.

Python's parser builds every list and object of a text at once, each costing about 60 bytes
against the 2 or 3 of the text (`[],`): a few MB of text can ask for gigabytes. So before
parsing, the text's size is held to the caller's limit and its lists and objects (its `[` and
`{`, strings included, an overcount that is never an undercount) to `MAX_CONTAINERS`; a text
nested past what the parser's recursion allows is refused, not crashed on.
"""

from __future__ import annotations

import json
from typing import Any

from .errors import TooLarge, UnsupportedStructure, problem

MAX_CONTAINERS = 200_000
"""Lists and objects in one workflow text: 100 times those of the largest template (1,783)."""


def _refuse(text: str) -> UnsupportedStructure:
    return UnsupportedStructure(text, [problem(None, None, text)])


def load_json(text: bytes | str, max_bytes: int, what: str = "the workflow text") -> Any:
    """The JSON value of `text`; `TooLarge` or `UnsupportedStructure` past the bounds, and
    `ValueError` when it is not JSON at all."""
    data = text.encode("utf-8", errors="surrogatepass") if isinstance(text, str) else text
    if len(data) > max_bytes:
        raise TooLarge(what, len(data), max_bytes)
    containers = data.count(b"[") + data.count(b"{")
    if containers > MAX_CONTAINERS:
        raise _refuse(f"{what} holds {containers} lists and objects, more than the "
                      f"{MAX_CONTAINERS} a workflow may")
    try:
        return json.loads(data)
    except RecursionError:
        raise _refuse(f"{what} is nested too deeply to be a workflow") from None
