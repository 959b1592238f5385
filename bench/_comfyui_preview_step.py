"""No figure of its own: bench/preview_cost.py runs it with ComfyUI's python, in ComfyUI's
folder, to time the work a preview costs ComfyUI at each sampler step, apart from sampling.

With a preview method, each step ComfyUI draws the step's latent as a picture (latent2rgb:
what `auto` means, in `latent_preview.get_previewer`) on the sampling thread, then shrinks it
to --preview-size and encodes it as JPEG (quality 95) on its server's thread before sending
it (`server.send_image_with_metadata`). Both are timed here with ComfyUI's own previewer on a
random SD1.5 latent of the job's size; the shrink and encode repeat the server's calls.
Prints one JSON line: {"draw_ms", "encode_ms", "rounds"} (medians).

    cd $COMFYUI_DIR && $COMFYUI_PYTHON <repo>/bench/_comfyui_preview_step.py --size 64 --max-size 256
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=64, help="image side; the latent is 1/8")
    parser.add_argument("--max-size", type=int, default=256, help="ComfyUI's --preview-size")
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()
    sys.path.insert(0, str(Path.cwd()))
    sys.argv = sys.argv[:1]  # ComfyUI's modules must not read our flags as theirs
    import comfy.cli_args

    comfy.cli_args.args.cpu = True  # no GPU probe: this times the CPU path the bench runs
    comfy.cli_args.args.preview_size = args.max_size
    import torch
    from PIL import Image, ImageOps

    import comfy.latent_formats
    import latent_preview

    fmt = comfy.latent_formats.SD15()
    # as get_previewer builds it; 0.3.64's previewer takes no reshape
    factors = [fmt.latent_rgb_factors, fmt.latent_rgb_factors_bias]
    if getattr(fmt, "latent_rgb_factors_reshape", None) is not None:
        factors.append(fmt.latent_rgb_factors_reshape)
    previewer = latent_preview.Latent2RGBPreviewer(*factors)
    latent = torch.randn(1, 4, args.size // 8, args.size // 8, generator=torch.Generator().manual_seed(0))
    draws: list[float] = []
    encodes: list[float] = []
    for _ in range(args.rounds):
        start = time.perf_counter()
        kind, image, max_size = previewer.decode_latent_to_preview_image("JPEG", latent)
        drawn = time.perf_counter()
        shrunk = ImageOps.contain(image, (max_size, max_size), Image.Resampling.BILINEAR)
        shrunk.save(io.BytesIO(), format=kind, quality=95, compress_level=1)
        encodes.append(time.perf_counter() - drawn)
        draws.append(drawn - start)
    print(json.dumps({"draw_ms": 1000 * statistics.median(draws),
                      "encode_ms": 1000 * statistics.median(encodes), "rounds": args.rounds}))


if __name__ == "__main__":
    main()
