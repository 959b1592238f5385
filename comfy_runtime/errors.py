"""Why a job failed, as a small tree of exceptions with stable codes.

Every failure a client can see is a `JobError` carrying an `error_code` that never changes
between releases, a one-line message a person can act on, and `details`: always a list of
objects, whatever the code:

    JobError
    ├── InvalidInput ............ invalid_input        the job input itself is wrong
    ├── InputFetchFailed ........ input_fetch_failed   a URL input could not be downloaded
    ├── WorkflowInvalid ......... workflow_invalid     ComfyUI refused the graph (node_errors)
    │   └── MissingModel ........ missing_model        a loader names a model that is not there
    ├── ExecutionFailed ......... execution_failed     a node raised while running
    ├── JobTimeout .............. timeout              the job ran past its time limit
    ├── JobCancelled ............ cancelled            ends a run the platform cancelled; the SDK
    │                                                   posts no result for it, so no client sees it
    ├── ComfyUIUnavailable ...... comfyui_unavailable  ComfyUI is down, dying or not answering
    ├── OutputTooLarge .......... output_too_large     the result would pass the platform's limit
    ├── UploadFailed ............ upload_failed        the object store refused an output
    └── InternalError ........... internal_error       a bug of ours; the message names its type

Facts the worker acts on after a job are fields set where the error is built (`ExecutionFailed.
out_of_memory` and `.fatal_gpu`, `ComfyUIUnavailable.comfyui_died`), so the worker decides by
type and field, never by reading a message. Turning an error into the client's JSON is the
edge's job (`handler.respond`), done in one place.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

Details = list[dict[str, Any]]


def _as_list(details: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None) -> Details:
    # One shape for every code: a client iterates `details` without asking which code it is.
    if details is None:
        return []
    if isinstance(details, Mapping):
        return [dict(details)]
    return [dict(item) for item in details]


class JobError(Exception):
    """Base class: a failure that is reported to the client as a structured error."""

    code: ClassVar[str] = "internal_error"

    def __init__(
        self,
        message: str,
        details: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details: Details = _as_list(details)


class InvalidInput(JobError):
    code = "invalid_input"


class InputFetchFailed(JobError):
    code = "input_fetch_failed"


class WorkflowInvalid(JobError):
    code = "workflow_invalid"


class MissingModel(WorkflowInvalid):
    code = "missing_model"


class ExecutionFailed(JobError):
    code = "execution_failed"

    def __init__(
        self,
        message: str,
        details: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        *,
        out_of_memory: bool = False,
        fatal_gpu: bool = False,
    ) -> None:
        super().__init__(message, details)
        self.out_of_memory = out_of_memory  # the next job wants ComfyUI's models unloaded
        self.fatal_gpu = fatal_gpu  # the GPU is in a state only a fresh worker recovers from


class JobTimeout(JobError):
    code = "timeout"


class JobCancelled(JobError):
    code = "cancelled"


class ComfyUIUnavailable(JobError):
    code = "comfyui_unavailable"

    def __init__(
        self,
        message: str,
        details: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        *,
        comfyui_died: bool = False,
    ) -> None:
        super().__init__(message, details)
        self.comfyui_died = comfyui_died  # the child process exited: restart before a next job


class OutputTooLarge(JobError):
    code = "output_too_large"


class UploadFailed(JobError):
    code = "upload_failed"


class InternalError(JobError):
    code = "internal_error"
