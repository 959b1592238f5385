"""Every knob of the worker, read once from the environment.

The settings table of docs/configuration.md is this class's field list: each field's
environment variable is its name in upper case, and its description is the table's text.
Secrets are `SecretStr`, so they print as `**********` wherever a settings object is logged or
returned.
"""

from __future__ import annotations

import shlex
import sys
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    # --- ComfyUI, the child process -------------------------------------------------------
    comfyui_url: str | None = Field(
        None,
        description="Attach to this already running ComfyUI (e.g. http://127.0.0.1:8188) "
        "instead of launching one.",
    )
    comfyui_dir: Path = Field(Path("/comfyui"), description="Where ComfyUI's main.py lives.")
    comfyui_python: str = Field(
        default_factory=lambda: sys.executable,
        description="Interpreter that runs ComfyUI's main.py (default: the worker's own).",
    )
    comfyui_port: int = Field(8188, ge=1, le=65535, description="Port ComfyUI listens on.")
    comfyui_args: str = Field(
        "",
        description="Extra flags for ComfyUI's main.py, shell-quoted (e.g. '--lowvram'). When "
        "they choose no device and no GPU is visible, --cpu is added.",
    )
    comfyui_boot_timeout_s: float = Field(
        300.0, gt=0, description="How long ComfyUI may take to answer after launch."
    )
    comfyui_http_timeout_s: float = Field(
        30.0, gt=0, description="Bound on any single HTTP request to ComfyUI."
    )
    comfyui_input_dir: Path | None = Field(
        None, description="ComfyUI's input directory (default: COMFYUI_DIR/input)."
    )
    comfyui_output_dir: Path | None = Field(
        None, description="ComfyUI's output directory (default: COMFYUI_DIR/output)."
    )
    comfyui_temp_dir: Path | None = Field(
        None, description="ComfyUI's temp directory (default: COMFYUI_DIR/temp)."
    )
    comfyui_local_files: bool = Field(
        True,
        description="Write inputs to and read outputs from ComfyUI's folders directly when "
        "they are on this machine (faster than HTTP for large files).",
    )
    network_volume_dir: Path = Field(
        Path("/runpod-volume"),
        description="Where a network volume is mounted; its models/ folder is added to "
        "ComfyUI's model paths.",
    )
    comfy_log_level: str = Field(
        "INFO", description="ComfyUI's own log level (its --verbose flag)."
    )
    worker_log_level: str = Field("INFO", description="The worker's log level.")

    # --- jobs ----------------------------------------------------------------------------
    job_timeout_s: float = Field(
        600.0, gt=0, description="Default time limit of a job; a job's timeout_s overrides it."
    )
    stop_grace_s: float = Field(
        15.0,
        gt=0,
        description="How long an interrupted prompt may take to stop before ComfyUI counts as "
        "stuck (cleanup then waits for it, and a ComfyUI still stuck at the next job is "
        "restarted).",
    )
    warmup_workflow: str = Field(
        "auto",
        description="Run once at start: 'auto' (one txt2img step with the default checkpoint "
        "if ComfyUI has one and txt2img can drive it, else the model-free 'warmup'), a bundled "
        "workflow name, a graph file, or 'none'.",
    )
    warmup_required: bool = Field(
        False, description="Stop the worker when the warmup fails (else log and go on)."
    )
    workflows_dir: Path = Field(
        REPO_ROOT / "workflows", description="Where bundled workflows are found."
    )
    comfy_org_api_key: SecretStr | None = Field(
        None, description="Key for ComfyUI's API nodes, used when a job brings none."
    )
    refresh_worker: bool = Field(
        False, description="Ask the platform for a fresh worker after every job."
    )
    max_concurrency: int = Field(
        1, ge=1, le=16,
        description="Jobs in flight at once (input and output work overlaps). Above 1, a "
        "ComfyUI launched on the CPU gets OMP_WAIT_POLICY=PASSIVE unless it is set.",
    )

    # --- previews and streaming (issue 21) -------------------------------------------------
    preview_method: Literal["auto", "latent2rgb", "taesd", "none"] = Field(
        "auto",
        description="How a ComfyUI the worker launches draws sampler previews (its "
        "--preview-method); jobs get them with `previews`. 'none' turns them off.",
    )
    preview_max_size: int = Field(
        256, ge=16, le=2048,
        description="Longest side of the previews a launched ComfyUI draws (its "
        "--preview-size), so the largest a job's `previews.max_size` can get.",
    )
    stream_results: bool = Field(
        False,
        description="Stream each job on /stream/{id}: progress, each output as soon as its "
        "node finished, then the result (a generator handler; /runsync then returns the list).",
    )

    # --- limits --------------------------------------------------------------------------
    max_input_bytes: int = Field(
        100 * 1024 * 1024, gt=0, description="Largest single input, decoded or downloaded."
    )
    max_inputs: int = Field(32, gt=0, description="Most input files in one job.")
    max_graph_nodes: int = Field(
        2000, gt=0, description="Most nodes in one graph; an editor workflow's subgraphs and "
        "group nodes count once per use, checked before they are expanded.",
    )
    max_workflow_file_bytes: int = Field(
        8 * 1024 * 1024, gt=0,
        description="Largest workflow file (PNG, WebP or JSON, inline or by URL), and the "
        "longest workflow text inside one; refused before it is parsed.",
    )
    extra_input_extensions: str = Field(
        "",
        description="More input file types to accept besides images, video and audio, "
        "comma-separated (e.g. '.txt,.json,.npy'); their content is not checked.",
    )
    max_pixels: int = Field(
        8192 * 8192,
        gt=0,
        description="Largest input image, in pixels: width x height summed over every frame "
        "(an APNG, GIF, animated WebP or multi-page TIFF counts frames x width x height).",
    )
    max_response_bytes: int = Field(
        19_500_000,
        gt=0,
        description="Largest JSON result returned inline; past it outputs go to the object "
        "store (RunPod refuses results over 20 MB). A streamed job's items count together.",
    )
    allow_private_urls: bool = Field(
        False,
        description="Let URL inputs reach loopback and private networks (local testing only).",
    )
    input_fetch_timeout_s: float = Field(
        60.0, gt=0, description="Bound on downloading one URL input."
    )

    # --- object store (worker-comfyui's names) --------------------------------------------
    bucket_endpoint_url: str | None = Field(
        None, description="S3-compatible endpoint; setting it enables the object store."
    )
    bucket_access_key_id: SecretStr | None = Field(None, description="Object store key id.")
    bucket_secret_access_key: SecretStr | None = Field(
        None, description="Object store secret key."
    )
    bucket_name: str | None = Field(
        None, description="Bucket for outputs (default: the endpoint URL's first path part)."
    )
    bucket_prefix: str = Field("", description="Key prefix before {job_id}/{filename}.")
    bucket_region: str = Field("auto", description="Region used for SigV4 signing.")
    bucket_url_expiry_s: int = Field(
        7 * 24 * 3600, gt=0, le=7 * 24 * 3600, description="Lifetime of presigned output URLs."
    )

    # --- models on demand (issue 13; comfy_runtime/model_cache.py) ---------------------------
    model_cache_dir: Path | None = Field(
        None,
        description="Where models downloaded by URL are cached, one subfolder per model "
        "folder (default: NETWORK_VOLUME_DIR/model-cache when a volume is mounted, else a "
        "local folder).",
    )
    model_cache_max_bytes: int = Field(
        50 * 1024**3,
        gt=0,
        description="Disk budget of the model cache; least recently used files that no "
        "running job uses are evicted to stay under it.",
    )
    max_model_bytes: int = Field(
        32 * 1024**3, gt=0, description="Largest single model file a job may download."
    )
    max_models_per_job: int = Field(
        16,
        gt=0,
        description="Most model files one job may name by URL (its models list and the URLs "
        "in its loader inputs together).",
    )
    model_fetch_timeout_s: float = Field(
        30.0,
        gt=0,
        description="Bound on connecting to a model's server and on each wait for its data "
        "(the whole download is bounded by the job's time limit).",
    )
    hf_token: SecretStr | None = Field(
        None, description="Hugging Face token, sent only to huggingface.co over https."
    )
    civitai_token: SecretStr | None = Field(
        None, description="Civitai token, sent only to civitai.com over https."
    )

    @field_validator("model_cache_dir", mode="before")
    @classmethod
    def _empty_dir_is_unset(cls, value: object) -> object:
        # The Hub sets an unset field to "", which would otherwise be Path("."): the cwd.
        return None if value == "" else value

    @property
    def model_cache_root(self) -> Path:
        if self.model_cache_dir is not None:
            return self.model_cache_dir
        if self.network_volume_dir.is_dir():
            return self.network_volume_dir / "model-cache"
        # Not /tmp: a tmpfs there would hold gigabytes in memory.
        return Path.home() / ".cache" / "comfy-worker" / "model-cache"

    @cached_property
    def comfyui_base_url(self) -> str:
        return (self.comfyui_url or f"http://127.0.0.1:{self.comfyui_port}").rstrip("/")

    @property
    def comfyui_extra_args(self) -> list[str]:
        return shlex.split(self.comfyui_args)

    @property
    def input_dir(self) -> Path:
        return self.comfyui_input_dir or self.comfyui_dir / "input"

    @property
    def output_dir(self) -> Path:
        return self.comfyui_output_dir or self.comfyui_dir / "output"

    @property
    def temp_dir(self) -> Path:
        return self.comfyui_temp_dir or self.comfyui_dir / "temp"

    @property
    def extra_input_suffixes(self) -> frozenset[str]:
        parts = (p.strip().lower() for p in self.extra_input_extensions.split(","))
        return frozenset(p if p.startswith(".") else f".{p}" for p in parts if p)

    @property
    def object_store_configured(self) -> bool:
        return bool(self.bucket_endpoint_url)


def markdown_table() -> str:
    """The settings table, from the fields above (a test keeps the configuration page current)."""
    rows = ["| Variable | Default | What it does |", "| --- | --- | --- |"]
    for name, field in Settings.model_fields.items():
        if field.default_factory is not None:
            default = "the worker's Python" if name == "comfyui_python" else "(computed)"
        elif field.default is None:
            default = "unset"
        elif isinstance(field.default, bool):
            default = f"`{str(field.default).lower()}`"
        else:
            default = f"`{str(field.default).replace(str(REPO_ROOT), '<repo>')}`"
            if default == "``":
                default = "empty"
        rows.append(f"| `{name.upper()}` | {default} | {field.description} |")
    return "\n".join(rows)


CONFIGURATION_PAGE = REPO_ROOT / "docs" / "configuration.md"
TABLE_MARKERS = ("<!-- settings:start -->", "<!-- settings:end -->")


def page_with_table(page: str) -> str:
    """`page` with the text between the settings markers replaced by the current table."""
    start, end = TABLE_MARKERS
    head, rest = page.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{markdown_table()}\n{end}{tail}"


if __name__ == "__main__":
    # Rewrites the configuration page's settings table from the class above.
    CONFIGURATION_PAGE.write_text(page_with_table(CONFIGURATION_PAGE.read_text()))
