"""Write a small random-weight LoRA for Stable Diffusion 1.5 (issue 13's real-ComfyUI check).

    python tests/make_random_lora.py OUT.safetensors [--rank 4] [--delta-std 0.04] [--seed 0]
                                     [--layers attn1,attn2]

The file has kohya-style keys, the names ComfyUI's LoRA loader maps for an SD1.5 UNet
(comfy/lora.py `model_lora_keys_unet`, through comfy/utils.py `unet_to_diffusers`):

    lora_unet_<diffusers module, dots as underscores>.lora_down.weight   [rank, in]
    lora_unet_<diffusers module, dots as underscores>.lora_up.weight     [out, rank]
    lora_unet_<diffusers module, dots as underscores>.alpha              []

for the query, key, value and output projections of the self-attention (attn1) and the
cross-attention (attn2) of each of the UNet's 16 transformer blocks, e.g.
`lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k` (in 768, the text
encoder's width; out 320). Weights are float16 normal noise scaled so that the change each
module gets, alpha / rank * up @ down, has a standard deviation of `--delta-std` per element:
0.04 is about the size of the weights themselves, which changes the image plainly at strength 1
(and still yields an image, not noise). Alpha is the rank (scale 1). Deterministic for a seed.
About 1.6 MB at rank 4.

Pure Python (struct, json, random), so it runs under any interpreter, the worker's or
ComfyUI's, with neither numpy nor torch; the safetensors layout is: 8-byte little-endian header
length, a JSON header naming each tensor's dtype, shape and byte range, then the bytes.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import struct
from pathlib import Path

# (diffusers block, channels) of SD1.5's 16 transformer blocks: 320/640/1280 channels at the
# three attention levels down and up, 1280 in the middle. Context (text embeddings): 768.
_BLOCKS = (
    [(f"down_blocks_{level}_attentions_{i}", width)
     for level, width in enumerate((320, 640, 1280)) for i in range(2)]
    + [("mid_block_attentions_0", 1280)]
    + [(f"up_blocks_{level}_attentions_{i}", width)
       for level, width in ((1, 1280), (2, 640), (3, 320)) for i in range(3)]
)
_CONTEXT_DIM = 768
_PROJECTIONS = ("to_q", "to_k", "to_v", "to_out_0")


def modules(layers: tuple[str, ...] = ("attn1", "attn2")) -> list[tuple[str, int, int]]:
    """(kohya module name, in features, out features) of every module the LoRA touches."""
    found = []
    for block, width in _BLOCKS:
        for attn in layers:
            for proj in _PROJECTIONS:
                cross_input = attn == "attn2" and proj in ("to_k", "to_v")
                fan_in = _CONTEXT_DIM if cross_input else width
                name = f"lora_unet_{block}_transformer_blocks_0_{attn}_{proj}"
                found.append((name, fan_in, width))
    return found


def lora_tensors(
    rank: int, delta_std: float, seed: int, layers: tuple[str, ...]
) -> dict[str, tuple[list[int], list[float]]]:
    """name -> (shape, values). With up and down entries N(0, s^2), each entry of up @ down
    has variance rank * s^4; alpha = rank makes the scale 1, so s = sqrt(delta_std / sqrt(rank))."""
    rng = random.Random(seed)
    s = math.sqrt(delta_std / math.sqrt(rank))
    tensors: dict[str, tuple[list[int], list[float]]] = {}
    for name, fan_in, fan_out in modules(layers):
        tensors[f"{name}.lora_down.weight"] = (
            [rank, fan_in], [rng.gauss(0.0, s) for _ in range(rank * fan_in)])
        tensors[f"{name}.lora_up.weight"] = (
            [fan_out, rank], [rng.gauss(0.0, s) for _ in range(fan_out * rank)])
        tensors[f"{name}.alpha"] = ([], [float(rank)])
    return tensors


def write_safetensors(path: Path, tensors: dict[str, tuple[list[int], list[float]]]) -> None:
    """float16 tensors in the safetensors format."""
    header: dict[str, object] = {"__metadata__": {"format": "pt", "ss_network_module":
                                                  "networks.lora", "generator":
                                                  "comfy-worker tests/make_random_lora.py"}}
    blobs, offset = [], 0
    for name in sorted(tensors):
        shape, values = tensors[name]
        blob = struct.pack(f"<{len(values)}e", *values)
        header[name] = {"dtype": "F16", "shape": shape,
                        "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)  # the data starts 8-byte aligned
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as file:
        file.write(struct.pack("<Q", len(encoded)))
        file.write(encoded)
        for blob in blobs:
            file.write(blob)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="where to write the .safetensors file")
    parser.add_argument("--rank", type=int, default=4)
    parser.add_argument("--delta-std", type=float, default=0.04,
                        help="standard deviation of each weight change at strength 1")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layers", default="attn1,attn2",
                        help="which attentions of each transformer block: attn1, attn2 or both")
    args = parser.parse_args()
    layers = tuple(part.strip() for part in args.layers.split(",") if part.strip())
    if not layers or set(layers) - {"attn1", "attn2"} or args.rank < 1:
        parser.error("--layers takes attn1 and/or attn2; --rank is at least 1")
    tensors = lora_tensors(args.rank, args.delta_std, args.seed, layers)
    write_safetensors(args.out, tensors)
    print(f"{args.out}: {len(modules(layers))} modules, rank {args.rank}, "
          f"{args.out.stat().st_size} bytes")


if __name__ == "__main__":
    main()
