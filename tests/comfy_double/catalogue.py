"""The node catalogue: ComfyUI's recorded /object_info, with the lists that ComfyUI builds from
disk (input images, model files) rebuilt from the double's own directories."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OBJECT_INFO = REPO_ROOT / "tests" / "protocol" / "object_info.json"

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff"}

# ComfyUI's model folders as GET /models lists them (misc.json), in that order.
MODEL_FOLDERS = [
    "checkpoints", "configs", "loras", "vae", "text_encoders", "diffusion_models",
    "clip_vision", "style_models", "embeddings", "diffusers", "vae_approx", "controlnet",
    "gligen", "upscale_models", "custom_nodes", "hypernetworks", "photomaker", "classifiers",
    "model_patches", "audio_encoders",
]

# Which model folder feeds a combo input, by input name; ComfyUI lists the folder's files there.
_MODEL_INPUTS = {
    "ckpt_name": "checkpoints",
    "lora_name": "loras",
    "vae_name": "vae",
    "control_net_name": "controlnet",
    "unet_name": "diffusion_models",
    "clip_name": "text_encoders",
    "clip_name1": "text_encoders",
    "clip_name2": "text_encoders",
    "upscale_model_name": "upscale_models",
}

# Nodes whose image list is the input directory and which validate the file themselves.
IMAGE_LOADERS = {"LoadImage", "LoadImageMask"}


class Catalogue:
    """Input specs per class, as /object_info shows them right now."""

    def __init__(self, object_info_path: Path, input_dir: Path,
                 models: dict[str, list[str]]) -> None:
        self._raw: dict[str, Any] = json.loads(object_info_path.read_text())
        self._input_dir = input_dir
        self.models = models
        # Extra folders per model folder (ComfyUI's --extra-model-paths-config), listed from
        # disk on every request as ComfyUI does, so a file put there is seen at once.
        self.model_dirs: dict[str, list[Path]] = {}

    def model_files(self, folder: str) -> list[str]:
        found = list(self.models.get(folder, []))
        for directory in self.model_dirs.get(folder, []):
            if directory.is_dir():
                found += sorted(p.name for p in directory.iterdir()
                                if p.is_file() and not p.name.startswith("."))
        return found

    def __contains__(self, class_type: object) -> bool:
        return isinstance(class_type, str) and class_type in self._raw

    def spec(self, class_type: str) -> dict[str, Any]:
        """One class's object_info entry with the disk-built lists filled in."""
        entry = copy.deepcopy(self._raw[class_type])
        self._refresh_lists(class_type, entry)
        return entry

    def all_specs(self) -> dict[str, Any]:
        return {name: self.spec(name) for name in self._raw}

    def is_output_node(self, class_type: str) -> bool:
        return bool(self._raw[class_type].get("output_node"))

    def declared_inputs(self, class_type: str) -> set[str] | None:
        """The inputs a class declares; None for a class the catalogue does not know."""
        if class_type not in self._raw:
            return None
        sections = self._raw[class_type].get("input", {})
        return {name for section in ("required", "optional")
                for name in sections.get(section, {})}

    def output_types(self, class_type: str) -> list[str]:
        return list(self._raw[class_type].get("output", []))

    def input_images(self) -> list[str]:
        """Top-level image files of the input directory, sorted, like LoadImage's list."""
        if not self._input_dir.is_dir():
            return []
        return sorted(
            p.name for p in self._input_dir.iterdir()
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )

    def _refresh_lists(self, class_type: str, entry: dict[str, Any]) -> None:
        for section in ("required", "optional"):
            for name, config in entry.get("input", {}).get(section, {}).items():
                if not (isinstance(config, list) and config and isinstance(config[0], list)):
                    continue
                if class_type in IMAGE_LOADERS and name == "image":
                    config[0] = self.input_images()
                elif name in _MODEL_INPUTS and (_MODEL_INPUTS[name] in self.models
                                                or _MODEL_INPUTS[name] in self.model_dirs):
                    config[0] = self.model_files(_MODEL_INPUTS[name])
