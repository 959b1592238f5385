"""ComfyUI's node definitions (`GET /object_info`), fetched once per ComfyUI process.

The answer is large (megabytes on a ComfyUI with custom nodes) and changes only when ComfyUI
starts again, so it is kept: fetched on first use, again when a graph names a class it does
not hold (a node installed since), and forgotten when the worker restarts ComfyUI. The
editor-format converter's per-class layouts (`ui_format.NodeDefinitions`) are kept with it,
so they too are computed once per class and process. They follow the frontend this ComfyUI
pins (`/system_stats` `required_frontend_version`, read with the definitions): the nearest
recorded one (`ui_format.choose_frontend`), which `frontend()` reports.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

from .. import ui_format
from .client import ComfyClient

log = logging.getLogger(__name__)


class DefinitionsCache:
    def __init__(self, client: ComfyClient) -> None:
        self._client = client
        self._editor: ui_format.NodeDefinitions | None = None
        self._outputs: frozenset[str] = frozenset()  # derived from `_editor`, kept with it
        self._frontend = ui_format.choose_frontend(None)
        self._lock = threading.Lock()

    def get(self, needed: Iterable[str] = ()) -> dict[str, Any]:
        """Every class's definition; fetched again if one of `needed` is missing."""
        return self.editor(needed).object_info

    def editor(self, needed: Iterable[str] = ()) -> ui_format.NodeDefinitions:
        """The definitions as the editor-format converter reads them."""
        with self._lock:
            editor = self._editor
            if editor is None or any(name not in editor for name in needed):
                object_info = self._client.object_info()
                self._frontend = ui_format.choose_frontend(self._pinned_frontend())
                editor = ui_format.NodeDefinitions(object_info, self._frontend.follows)
                self._editor = editor
                self._outputs = frozenset(
                    name for name, spec in editor.object_info.items()
                    if isinstance(spec, dict) and spec.get("output_node")
                )
                log.debug("node definitions: %d classes, frontend %s (converting as %s)",
                          len(editor.object_info), self._frontend.asked, self._frontend.follows)
            return editor

    def _pinned_frontend(self) -> str | None:
        """The frontend version ComfyUI pins; None where it names none (before ~0.3.30)."""
        system = self._client.system_stats().get("system")
        version = system.get("required_frontend_version") if isinstance(system, dict) else None
        return version if isinstance(version, str) and version else None

    def frontend(self) -> ui_format.FrontendChoice:
        """The frontend the converter follows for the definitions `editor()` last returned."""
        with self._lock:
            return self._frontend

    def output_nodes(self, needed: Iterable[str] = ()) -> frozenset[str]:
        """Classes ComfyUI treats as outputs (it runs the graph to reach them)."""
        self.editor(needed)
        with self._lock:
            return self._outputs

    def forget(self) -> None:
        """ComfyUI restarted, or a workflow names classes we do not hold: fetch again."""
        with self._lock:
            self._editor = None
