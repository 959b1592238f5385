"""Leave nothing of a job behind: its input folder, its output and temp files, its history.

A worker runs thousands of jobs; files left in ComfyUI's folders fill the disk and can leak
one client's data to the next. Files are removed only when ComfyUI's folders are on this
machine (we launched it, or they were named in the settings), and only paths that resolve
inside those folders.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from .client import ComfyClient
from .errors import ComfyUIUnavailable
from .outputs import collect_outputs

log = logging.getLogger(__name__)


class JobCleaner:
    def __init__(self, client: ComfyClient, *, input_dir: Path, output_dir: Path, temp_dir: Path):
        self.client = client
        self._roots = {"input": input_dir, "output": output_dir, "temp": temp_dir}

    def clean(self, *, job_id: str, folder: str, prompt_id: str | None) -> None:
        """Remove everything of one job; failures are logged, never raised."""
        self._remove_tree(self._roots["input"], folder, job_id)
        self._remove_tree(self._roots["output"], folder, job_id)
        if prompt_id is None:
            return
        try:
            # The history lists every file the run wrote, previews and partial outputs of a
            # failed run included, whatever the job chose to return.
            history = self.client.history(prompt_id)
            if history is not None:
                refs, _ = collect_outputs(history, include_previews=True)
                for ref in refs:
                    root = self._roots.get(ref.folder_type)
                    if root is not None:
                        self._remove_file(root, ref.subfolder, ref.filename, job_id)
            self.client.delete_history([prompt_id])
        except ComfyUIUnavailable as exc:
            log.warning("job %s: cleanup could not reach ComfyUI: %s", job_id, exc.message)

    @staticmethod
    def _inside(root: Path, *parts: str) -> Path | None:
        if not root.is_dir():
            return None
        resolved_root = root.resolve()
        target = resolved_root.joinpath(*[p for p in parts if p]).resolve()
        if target == resolved_root or resolved_root not in target.parents:
            return None
        return target

    def _remove_tree(self, root: Path, folder: str, job_id: str) -> None:
        target = self._inside(root, folder)
        if target is not None and target.is_dir():
            shutil.rmtree(target, ignore_errors=True)
            log.debug("job %s: removed %s", job_id, target)

    def _remove_file(self, root: Path, subfolder: str, filename: str, job_id: str) -> None:
        target = self._inside(root, subfolder, filename)
        if target is None:
            return
        try:
            target.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("job %s: could not remove %s: %s", job_id, target, exc)
            return
        # Remove subfolders a SaveImage prefix like "video/x" created, once they are empty.
        parent = target.parent
        resolved_root = root.resolve()
        while parent != resolved_root and resolved_root in parent.parents:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent
