"""The workflow ComfyUI embeds in the images it writes.

PNG: text chunks `prompt` (the API graph that ran) and `workflow` (the editor workflow).
WebP (SaveAnimatedWEBP): EXIF entries whose text starts with `prompt:` or `workflow:`
(ComfyUI stores them in the Make/Model tags and counts down from there for extra entries).
"""

from __future__ import annotations

import io
import json
import logging
from typing import Any

from PIL import Image

log = logging.getLogger(__name__)


def _json_object(text: Any) -> dict[str, Any] | None:
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    if not isinstance(text, str):
        return None
    text = text.strip().rstrip("\x00")
    try:
        value = json.loads(text)
    except ValueError:
        log.debug("embedded metadata is not JSON: %.60s", text)
        return None
    return value if isinstance(value, dict) else None


def _from_exif(image: Image.Image) -> dict[str, dict[str, Any] | None]:
    found: dict[str, dict[str, Any] | None] = {}
    for value in image.getexif().values():
        if isinstance(value, bytes):
            value = value.decode("utf-8", errors="replace")
        if not isinstance(value, str):
            continue
        for key in ("prompt", "workflow"):
            if value.startswith(key + ":") and key not in found:
                found[key] = _json_object(value[len(key) + 1:])
    return found


def read_image_workflow(data: bytes) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(API prompt or None, editor workflow or None) from a ComfyUI-written PNG or WebP."""
    with Image.open(io.BytesIO(data)) as image:
        info = dict(image.info)
        found: dict[str, dict[str, Any] | None] = {
            key: _json_object(info[key]) for key in ("prompt", "workflow") if key in info}
        if not all(found.get(k) for k in ("prompt", "workflow")):
            for key, value in _from_exif(image).items():
                found[key] = found.get(key) or value
    prompt, workflow = found.get("prompt"), found.get("workflow")
    if workflow is not None and "nodes" not in workflow:
        workflow = None  # not an editor workflow; keep only what can be used
    return prompt, workflow
