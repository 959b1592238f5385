"""Leave nothing of a job behind: its input folder, its output and temp files, its history.

A worker runs thousands of jobs; files left in ComfyUI's folders fill the disk and can leak
one client's data to the next. Files are removed only when ComfyUI's folders are on this
machine (see `folders`), and only paths that resolve inside those folders; the history
entry is removed through ComfyUI's API either way.
"""

from __future__ import annotations

import logging
import shutil

from .client import ComfyClient, HistoryEntry
from .errors import ComfyUIUnavailable
from .folders import ComfyFolders
from .outputs import collect_outputs

log = logging.getLogger(__name__)


class JobCleaner:
    def __init__(self, client: ComfyClient, folders: ComfyFolders | None) -> None:
        self.client = client
        self.folders = folders

    def clean(
        self,
        *,
        job_id: str,
        folder: str,
        prompt_id: str | None,
        history: HistoryEntry | None = None,
    ) -> None:
        """Remove everything of one job; failures are logged, never raised."""
        self._remove_tree("input", folder, job_id)
        self._remove_tree("output", folder, job_id)
        if prompt_id is None:
            return
        try:
            # The history lists every file the run wrote, previews and partial outputs of a
            # failed run included, whatever the job chose to return.
            if history is None:
                history = self.client.history(prompt_id)
            if history is not None:
                refs, _ = collect_outputs(history, include_previews=True)
                for ref in refs:
                    self._remove_file(ref.folder_type, ref.subfolder, ref.filename, job_id)
            self.client.delete_history([prompt_id])
        except ComfyUIUnavailable as exc:
            log.warning("job %s: cleanup could not reach ComfyUI: %s", job_id, exc.message)

    def _remove_tree(self, folder_type: str, folder: str, job_id: str) -> None:
        target = self.folders.inside(folder_type, folder) if self.folders else None
        if target is not None and target.is_dir():
            shutil.rmtree(target, ignore_errors=True)
            log.debug("job %s: removed %s", job_id, target)

    def _remove_file(self, folder_type: str, subfolder: str, filename: str, job_id: str) -> None:
        target = self.folders.inside(folder_type, subfolder, filename) if self.folders else None
        if target is None:
            return
        try:
            target.unlink(missing_ok=True)
        except OSError as exc:
            log.warning("job %s: could not remove %s: %s", job_id, target, exc)
            return
        # Remove subfolders a prefix like "video/x" created, once they are empty.
        root = self.folders.root(folder_type).resolve()  # type: ignore[union-attr]
        parent = target.parent
        while parent != root and root in parent.parents:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent
