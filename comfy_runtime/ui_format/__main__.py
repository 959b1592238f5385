"""Command line: print the API graph for an editor workflow (or a ComfyUI-written image).

    python -m comfy_runtime.ui_format workflow.json [--comfyui-url URL | --object-info FILE]

Node definitions come from a running ComfyUI (`/object_info`) or from a saved copy. A PNG or
WebP that ComfyUI wrote is accepted too: its embedded API prompt is printed as it is, else (or
with --from-workflow) its embedded editor workflow is converted. Exit status 1, with the
reasons on stderr, when the workflow is refused; 2 for usage and input errors.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import urllib.request
from pathlib import Path
from typing import Any

from .convert import to_api
from .errors import ConversionError
from .image_meta import read_image_workflow

log = logging.getLogger("comfy_runtime.ui_format")

_IMAGE_MAGIC = (b"\x89PNG", b"RIFF")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m comfy_runtime.ui_format",
        description="Convert an editor-format ComfyUI workflow to the API graph the "
                    "frontend would queue.")
    parser.add_argument("workflow", type=Path, help="editor workflow JSON, or a ComfyUI PNG/WebP")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--comfyui-url", default="http://127.0.0.1:8188",
                        help="ComfyUI to read /object_info from (default: %(default)s)")
    source.add_argument("--object-info", type=Path, help="a saved /object_info JSON file")
    parser.add_argument("--from-workflow", action="store_true",
                        help="for an image: convert its editor workflow even when it also "
                             "holds the API prompt")
    parser.add_argument("--indent", type=int, default=2, help="JSON indent (default 2)")
    return parser


def _object_info(args: argparse.Namespace) -> dict[str, Any]:
    if args.object_info is not None:
        return dict(json.loads(args.object_info.read_text(encoding="utf-8")))
    url = args.comfyui_url.rstrip("/") + "/object_info"
    with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 (user-given URL)
        return dict(json.loads(response.read()))


def _load(path: Path) -> tuple[dict[str, Any] | None, Any]:
    """(API prompt already in the file, editor workflow to convert)."""
    data = path.read_bytes()
    if data[:4] in _IMAGE_MAGIC:
        prompt, workflow = read_image_workflow(data)
        if prompt is None and workflow is None:
            raise ValueError(f"{path} holds no ComfyUI workflow metadata")
        return prompt, workflow
    return None, json.loads(data)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        prompt, workflow = _load(args.workflow)
        if args.from_workflow and workflow is not None:
            prompt = None
        if prompt is None:
            prompt = to_api(workflow, _object_info(args))
    except ConversionError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        print(json.dumps(prompt, indent=args.indent or None, ensure_ascii=False))
    except BrokenPipeError:  # e.g. piped into `head`
        sys.stderr.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
