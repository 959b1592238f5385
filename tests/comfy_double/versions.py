"""The ComfyUI versions the double speaks, each as recorded (tests/protocol/ for 0.3.64,
tests/protocol/v0.33.0/ for 0.33.0): what differs between them, in one place."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RECORDINGS = Path(__file__).resolve().parents[1] / "protocol"
MAX_UPLOAD_SIZE = 100 * 1024 * 1024


@dataclass(frozen=True)
class Version:
    """One ComfyUI release as the double plays it."""

    name: str
    recordings: Path
    system: dict[str, Any]
    """/system_stats "system" fields besides the machine's own (os, memory, python, argv)."""
    features: dict[str, Any]
    """GET /features, and the answer to a client's feature_flags message."""
    jobs_api: bool = False
    """/api/jobs, /api/jobs/{id}, POST /api/jobs/{id}/cancel and /api/jobs/cancel."""
    strict_prompt_id: bool = False
    """A client's prompt_id must be a lowercase hyphenated UUID (else 400 invalid_prompt_id)."""
    coloured_logs: bool = False
    """Log lines start with an ANSI-coloured level tag: "\\x1b[32m[INFO]\\x1b[0m ..."."""
    missing_node_error: str = "invalid_prompt"
    """The error type of a prompt naming an unknown node class."""
    prompt_preview_method: bool = False
    """A prompt's `extra_data.preview_method` overrides --preview-method for that prompt
    (execution.py's `set_preview_method` at the start of each prompt)."""
    extra_stats: dict[str, Any] = field(default_factory=dict)

    @property
    def object_info(self) -> Path:
        return self.recordings / "object_info.json"


V0_3_64 = Version(
    name="0.3.64",
    recordings=RECORDINGS,
    system={"comfyui_version": "0.3.64", "required_frontend_version": "1.27.10",
            "installed_templates_version": "0.1.95", "required_templates_version": "0.1.95"},
    features={"supports_preview_metadata": True, "max_upload_size": MAX_UPLOAD_SIZE},
)

V0_33_0 = Version(
    name="0.33.0",
    recordings=RECORDINGS / "v0.33.0",
    system={"comfyui_version": "0.33.0", "required_frontend_version": "1.48.7",
            "installed_templates_version": "0.11.41", "required_templates_version": "0.11.41",
            "comfy_package_versions": [
                {"name": "comfyui-frontend-package", "installed": "1.48.7", "required": "1.48.7"},
                {"name": "comfyui-workflow-templates", "installed": "0.11.41",
                 "required": "0.11.41"},
                {"name": "comfyui-embedded-docs", "installed": "0.5.9", "required": "0.5.9"},
                {"name": "comfy-kitchen", "installed": "0.2.31", "required": "0.2.31"},
                {"name": "comfy-aimdo", "installed": "0.4.13", "required": "0.4.13"}]},
    features={"supports_preview_metadata": True, "supports_model_type_tags": True,
              "max_upload_size": MAX_UPLOAD_SIZE, "extension": {"manager": {"supports_v4": True}},
              "node_replacements": True, "assets": False},
    jobs_api=True,
    strict_prompt_id=True,
    coloured_logs=True,
    missing_node_error="missing_node_type",
    prompt_preview_method=True,
    extra_stats={"deploy_environment": "local-git"},
)

VERSIONS = {version.name: version for version in (V0_3_64, V0_33_0)}
DEFAULT = V0_3_64


def version(name: str) -> Version:
    try:
        return VERSIONS[name]
    except KeyError:
        raise ValueError(f"the double speaks ComfyUI {', '.join(VERSIONS)}, not {name}") from None
