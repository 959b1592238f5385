"""Have a real ComfyUI write ``tests/ui_format/comfyui_written.png`` with workflow metadata.

The real frontend (headless Chromium on a running ComfyUI that was started *without*
``--disable-metadata``) builds a cheap graph that needs no model weights -- PrimitiveNode ->
EmptyImage.width, a Reroute, a bypassed and a real ImageInvert, a Note, SaveImage -- and queues it
with its own ``app.queuePrompt``, exactly as the Queue button does. The frontend sends the API
graph plus ``extra_data.extra_pnginfo.workflow`` (the editor workflow), so SaveImage writes both
a ``prompt`` (API format) and a ``workflow`` (editor format) text chunk into the PNG. The PNG is
then fetched back through ``/view``.

Usage::

    python tests/ui_format/make_comfyui_png.py --comfyui-url http://127.0.0.1:8188 \\
        [--out tests/ui_format/comfyui_written.png]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record_frontend import open_frontend

log = logging.getLogger("make_comfyui_png")

HERE = Path(__file__).resolve().parent

BUILD_AND_QUEUE_JS = """async () => {
  const g = app.graph; g.clear();
  const add = (type, pos) => { const n = LiteGraph.createNode(type); n.pos = pos; g.add(n);
    return n; };
  const W = (n, name) => n.widgets.find((w) => w.name === name);
  const p = add('PrimitiveNode', [-300, 0]);
  const img = add('EmptyImage', [0, 0]);
  p.connect(0, img, img.findInputSlot('width'));
  p.widgets[0].value = 48;
  W(img, 'height').value = 32; W(img, 'color').value = 16711680;
  const r = add('Reroute', [300, 0]);
  const skip = add('ImageInvert', [400, 0]); skip.mode = 4;
  const inv = add('ImageInvert', [600, 0]);
  const save = add('SaveImage', [800, 0]); W(save, 'filename_prefix').value = 'ui_format_e2e';
  const note = add('Note', [0, 300]); note.widgets[0].value = 'written by make_comfyui_png.py';
  img.connect(0, r, 0); r.connect(0, skip, 0); skip.connect(0, inv, 0);
  inv.connect(0, save, save.findInputSlot('images'));
  await app.queuePrompt(0, 1);
  return true;
}"""


def http_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return json.loads(resp.read().decode("utf-8"))


async def queue(comfyui_url: str) -> str:
    """Build and queue the graph in the frontend; returns the prompt id ComfyUI gave it."""
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser, page = await open_frontend(comfyui_url, pw)
        try:
            async with page.expect_response(
                lambda r: r.url.endswith("/prompt") and r.request.method == "POST"
            ) as info:
                await page.evaluate(BUILD_AND_QUEUE_JS)
            response = await info.value
            body = await response.json()
            return str(body["prompt_id"])
        finally:
            await browser.close()


def wait_for_image(comfyui_url: str, prompt_id: str, timeout_s: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        history = http_json(f"{comfyui_url}/history/{prompt_id}")
        entry = history.get(prompt_id)
        if entry and entry.get("status", {}).get("completed"):
            for output in entry["outputs"].values():
                for image in output.get("images", []):
                    if image.get("type") == "output":
                        return dict(image)
            raise RuntimeError(f"prompt {prompt_id} finished without an output image: {entry}")
        if entry and entry.get("status", {}).get("status_str") == "error":
            raise RuntimeError(f"prompt {prompt_id} failed: {entry['status']}")
        time.sleep(0.5)
    raise TimeoutError(f"prompt {prompt_id} did not finish in {timeout_s} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comfyui-url", default="http://127.0.0.1:8188")
    parser.add_argument("--out", type=Path, default=HERE / "comfyui_written.png")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    url = args.comfyui_url.rstrip("/")

    prompt_id = asyncio.run(queue(url))
    log.info("queued prompt %s", prompt_id)
    image = wait_for_image(url, prompt_id)
    query = urllib.parse.urlencode(
        {"filename": image["filename"], "subfolder": image["subfolder"], "type": image["type"]})
    with urllib.request.urlopen(f"{url}/view?{query}", timeout=30) as resp:
        args.out.write_bytes(resp.read())
    print(f"wrote {args.out} ({image['filename']}, prompt {prompt_id})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
