"""Milliseconds ComfyUI's own /view and /history answers cost: the floor under a URL-only worker.

    python bench/http_floor.py --comfyui-url http://127.0.0.1:8188 [--rounds 30]

A worker that cannot read ComfyUI's folders gets every output through `GET /view`; worker-
comfyui also reads `GET /history/{id}` first. This uploads four 1024x1024 PNGs into ComfyUI's
input folder (subfolder `bench-http-floor`, overwritten each time; ComfyUI's API cannot delete
them) and times, on one keep-alive connection and with ComfyUI otherwise idle: one `/view`,
four in turn, four at once (four threads), and one `/history/{id}` of an unknown id. Medians
of --rounds rounds, in ms. These are ComfyUI's costs, not the worker's: no worker attached by
URL can take a file out of ComfyUI for less.
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
from PIL import Image

SUBFOLDER = "bench-http-floor"


def _png(shade: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (1024, 1024), (shade, 128, 128)).save(buffer, "PNG", compress_level=4)
    return buffer.getvalue()


def _median_ms(action: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        action()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comfyui-url", required=True)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    client = httpx.Client(base_url=args.comfyui_url, timeout=30)
    names = [f"floor-{index}.png" for index in range(4)]
    for index, name in enumerate(names):
        client.post("/upload/image", files={"image": (name, _png(index), "image/png")},
                    data={"subfolder": SUBFOLDER, "type": "input", "overwrite": "true"}
                    ).raise_for_status()

    def view(name: str) -> int:
        response = client.get("/view", params={"filename": name, "subfolder": SUBFOLDER,
                                               "type": "input"})
        response.raise_for_status()
        return len(response.content)

    pool = ThreadPoolExecutor(4)
    for _ in range(3):
        view(names[0])  # connections open, caches warm
    rows = {
        "GET /view, one 1024x1024 PNG": lambda: view(names[0]),
        "GET /view, four in turn": lambda: [view(name) for name in names],
        "GET /view, four at once": lambda: list(pool.map(view, names)),
        "GET /history/{id} (unknown id)": lambda: client.get("/history/not-a-prompt"),
    }
    print(f"ComfyUI {args.comfyui_url}, idle; medians of {args.rounds} rounds\n")
    for label, action in rows.items():
        print(f"{label:36} {_median_ms(action, args.rounds):7.2f} ms")
    pool.shutdown()


if __name__ == "__main__":
    main()
