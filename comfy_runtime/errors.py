"""Why a job failed, as a small tree of exceptions with stable codes.

Every failure a client can see is a `JobError` carrying an `error_code` that never changes
between releases, a one-line message a person can act on, and structured `details`:

    JobError
    ├── InvalidInput ............ invalid_input        the job input itself is wrong
    ├── InputFetchFailed ........ input_fetch_failed   a URL input could not be downloaded
    ├── WorkflowInvalid ......... workflow_invalid     ComfyUI refused the graph (node_errors)
    │   └── MissingModel ........ missing_model        a loader names a model that is not there
    ├── ExecutionFailed ......... execution_failed     a node raised while running
    ├── JobTimeout .............. timeout              the job ran past its time limit
    ├── JobCancelled ............ cancelled            the platform cancelled the job
    ├── ComfyUIUnavailable ...... comfyui_unavailable  ComfyUI is down, dying or not answering
    ├── OutputTooLarge .......... output_too_large     the result would pass the platform's limit
    └── UploadFailed ............ upload_failed        the object store refused an output

The handler turns any of them into `{"error", "error_code", "details"}`; anything else that
escapes is a bug and is reported as `internal_error` with the exception's type.
"""

from __future__ import annotations

from typing import Any, ClassVar


class JobError(Exception):
    """Base class: a failure that is reported to the client as a structured error."""

    code: ClassVar[str] = "internal_error"

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details if details is not None else []

    def to_output(self) -> dict[str, Any]:
        return {"error": self.message, "error_code": self.code, "details": self.details}


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


class JobTimeout(JobError):
    code = "timeout"


class JobCancelled(JobError):
    code = "cancelled"


class ComfyUIUnavailable(JobError):
    code = "comfyui_unavailable"


class OutputTooLarge(JobError):
    code = "output_too_large"


class UploadFailed(JobError):
    code = "upload_failed"
