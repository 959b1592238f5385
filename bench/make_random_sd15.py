"""No figure: writes an SD1.5 checkpoint with seeded random weights, for benchmarks on a CPU.

    /work/comfyui-venv/bin/python bench/make_random_sd15.py --comfyui-dir /work/comfyui \\
        --out /work/models/checkpoints/random-sd15.safetensors [--seed 0]

Run it with ComfyUI's own interpreter: it builds ComfyUI's SD1.5 UNet, CLIP-L text model and
VAE classes on the meta device (no memory, no weights) to learn every tensor's name and
shape, then fills each with seeded random values and saves one fp16 safetensors file with
the standard prefixes (`model.diffusion_model.`, `cond_stage_model.transformer.text_model.`,
`first_stage_model.`), so ComfyUI detects it as SD1.5. The images it makes are noise; the
compute per step is that of a real SD1.5 model. Never commit the file it writes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

# The UNet configuration ComfyUI's model detection gives an SD1.5 checkpoint
# (comfy/model_detection.py, the SD15 entry).
SD15_UNET: dict[str, Any] = {
    "use_checkpoint": False, "image_size": 32, "out_channels": 4, "use_spatial_transformer": True,
    "legacy": False, "adm_in_channels": None, "in_channels": 4, "model_channels": 320,
    "num_res_blocks": [2, 2, 2, 2], "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0],
    "channel_mult": [1, 2, 4, 4], "transformer_depth_middle": 1, "use_linear_in_transformer": False,
    "context_dim": 768, "num_heads": 8,
    "transformer_depth_output": [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0],
    "use_temporal_attention": False, "use_temporal_resblock": False,
}
# The SD1.x VAE (comfy/sd.py's default AutoencoderKL parameters).
SD15_VAE: dict[str, Any] = {
    "double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3,
    "ch": 128, "ch_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_resolutions": [],
    "dropout": 0.0,
}


def shapes(comfyui_dir: Path) -> dict[str, tuple[int, ...]]:
    """Every tensor of an SD1.5 checkpoint, by its name in the file, from ComfyUI's classes."""
    sys.path.insert(0, str(comfyui_dir))
    import torch
    from comfy.cli_args import args as comfy_args

    comfy_args.cpu = True  # before comfy.model_management looks for a GPU
    import comfy.ops
    from comfy.ldm.models.autoencoder import AutoencoderKL
    from comfy.ldm.modules.diffusionmodules.openaimodel import UNetModel
    from comfy.sd1_clip import SDClipModel

    found: dict[str, tuple[int, ...]] = {}
    with torch.device("meta"):
        unet = UNetModel(**SD15_UNET, dtype=torch.float16, device="meta",
                         operations=comfy.ops.disable_weight_init)
        clip = SDClipModel(device="meta", dtype=torch.float16)
        vae = AutoencoderKL(ddconfig=SD15_VAE, embed_dim=4)
    for prefix, module in (("model.diffusion_model.", unet), ("cond_stage_model.", clip),
                           ("first_stage_model.", vae)):
        for name, tensor in module.state_dict().items():
            if prefix == "cond_stage_model." and not name.startswith("transformer.text_model."):
                continue  # the projection and scale CLIP-L has beyond SD1.5's text model
            found[prefix + name] = tuple(tensor.shape)
    return found


def fill(name: str, shape: tuple[int, ...], generator: Any) -> Any:
    """Seeded values of a plausible scale: norms at 1, biases at 0, weights ~N(0, 1/fan_in)."""
    import torch

    leaf = name.rsplit(".", 1)[-1]
    if "norm" in name and leaf == "weight":
        return torch.ones(shape, dtype=torch.float16)
    if leaf == "bias" or len(shape) == 0:
        return torch.zeros(shape, dtype=torch.float16)
    fan_in = 1
    for size in shape[1:]:
        fan_in *= size
    if len(shape) == 1:
        fan_in = shape[0]
    values = torch.randn(shape, generator=generator, dtype=torch.float32)
    return values.mul_(fan_in ** -0.5).to(torch.float16)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comfyui-dir", type=Path, default=Path("/work/comfyui"))
    parser.add_argument("--out", type=Path,
                        default=Path("/work/models/checkpoints/random-sd15.safetensors"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import torch
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(args.seed)
    tensors = {name: fill(name, shape, generator)
               for name, shape in sorted(shapes(args.comfyui_dir.resolve()).items())}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(args.out))
    count = sum(t.numel() for t in tensors.values())
    print(f"{args.out}: {len(tensors)} tensors, {count / 1e6:.0f} M parameters, seed {args.seed}")


if __name__ == "__main__":
    main()
