"""The published JSON Schema of a job's input (`schema/job_input.schema.json`).

Regenerate after changing `contract.JobInput`:  python -m comfy_runtime.schema
A test fails when the file in the repository is stale.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .contract import JobInput
from .settings import REPO_ROOT

SCHEMA_PATH = REPO_ROOT / "schema" / "job_input.schema.json"


def job_input_schema() -> dict[str, Any]:
    schema = JobInput.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "comfy-worker job input"
    schema["description"] = (
        "The `input` of a RunPod job sent to comfy-worker. Compatible with "
        "runpod-workers/worker-comfyui 5.x; the other fields are optional additions."
    )
    return schema


def render() -> str:
    return json.dumps(job_input_schema(), indent=2, sort_keys=True) + "\n"


def main() -> None:
    SCHEMA_PATH.parent.mkdir(exist_ok=True)
    Path(SCHEMA_PATH).write_text(render())


if __name__ == "__main__":
    main()
