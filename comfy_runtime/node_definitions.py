"""ComfyUI's node definitions (`GET /object_info`), fetched once per ComfyUI process.

The answer is large (megabytes on a ComfyUI with custom nodes) and changes only when ComfyUI
starts again, so it is kept: fetched on first use, again when a graph names a class it does
not hold (a node installed since), and forgotten when the worker restarts ComfyUI.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

from .client import ComfyClient

log = logging.getLogger(__name__)


class NodeDefinitions:
    def __init__(self, client: ComfyClient) -> None:
        self._client = client
        self._definitions: dict[str, Any] | None = None
        self._lock = threading.Lock()

    def get(self, needed: Iterable[str] = ()) -> dict[str, Any]:
        """Every class's definition; fetched again if one of `needed` is missing."""
        with self._lock:
            definitions = self._definitions
            if definitions is None or any(name not in definitions for name in needed):
                definitions = self._client.object_info()
                self._definitions = definitions
                log.debug("node definitions: %d classes", len(definitions))
            return definitions

    def output_nodes(self, needed: Iterable[str] = ()) -> frozenset[str]:
        """Classes ComfyUI treats as outputs (it runs the graph to reach them)."""
        return frozenset(
            name for name, spec in self.get(needed).items()
            if isinstance(spec, dict) and spec.get("output_node")
        )

    def forget(self) -> None:
        """ComfyUI restarted: its classes may differ now."""
        with self._lock:
            self._definitions = None
