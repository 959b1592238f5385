"""ComfyUI's HTTP answers as pydantic models: what an upload, a prompt, the queue and the
history look like on the wire (recorded in `tests/protocol/`).

A module of its own so that the job's files, outputs and records can name these types
without depending on the HTTP client that fetches them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, field_validator


class UploadedFile(BaseModel):
    """`POST /upload/image`'s answer: where ComfyUI actually stored the file."""

    name: str
    subfolder: str = ""
    type: str = "input"

    @property
    def graph_path(self) -> str:
        """How a LoadImage-style input refers to this file."""
        return f"{self.subfolder}/{self.name}" if self.subfolder else self.name


class QueuedPrompt(BaseModel):
    """`POST /prompt`'s 200 answer; `node_errors` is not empty when some outputs were dropped."""

    prompt_id: str
    number: int = 0
    node_errors: dict[str, Any] = Field(default_factory=dict)


class QueueState(BaseModel):
    """`GET /queue`: the prompt ids running and waiting.

    ComfyUI lists each item as `[number, prompt_id, prompt, extra_data, outputs]`; only the id
    is ours to read.
    """

    running: list[str] = Field(default_factory=list, alias="queue_running")
    pending: list[str] = Field(default_factory=list, alias="queue_pending")

    @field_validator("running", "pending", mode="before")
    @classmethod
    def _ids(cls, items: Any) -> list[str]:
        if not isinstance(items, list):
            return []
        return [
            str(item[1]) for item in items if isinstance(item, list) and len(item) > 1
        ]


class HistoryStatus(BaseModel):
    status_str: str = ""
    completed: bool = False
    messages: list[tuple[str, dict[str, Any]]] = Field(default_factory=list)


class HistoryEntry(BaseModel):
    """One prompt's entry in `GET /history/{id}`, written when the run has ended."""

    outputs: dict[str, dict[str, Any]] = Field(default_factory=dict)
    status: HistoryStatus = Field(default_factory=HistoryStatus)
    meta: dict[str, Any] = Field(default_factory=dict)


def preview_method(system_stats: Any) -> str:
    """The `--preview-method` ComfyUI runs with, from `GET /system_stats`'s `system.argv`:
    `none` when it was not given (ComfyUI's default: no previews)."""
    system = system_stats.get("system") if isinstance(system_stats, dict) else None
    argv = system.get("argv") if isinstance(system, dict) else None
    if not isinstance(argv, list):
        return "none"
    method = "none"
    for flag, value in zip(argv, [*argv[1:], None]):
        if flag == "--preview-method" and value is not None:
            method = str(value)
        elif isinstance(flag, str) and flag.startswith("--preview-method="):
            method = flag.split("=", 1)[1]
    return method
