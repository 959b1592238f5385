"""ComfyDouble: the double's lifecycle, in a background thread (tests) or in a process."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Self

from aiohttp import web

from .catalogue import Catalogue
from .execution import PromptQueue, Runner
from .faults import Faults
from .files import Dirs
from .hub import Hub
from .server import ServerState, build_app
from .versions import DEFAULT, Version
from .versions import version as named_version

log = logging.getLogger(__name__)

DEFAULT_MODELS = {"checkpoints": ["random-sd15.safetensors"]}


class ComfyDouble:
    """A fake ComfyUI on loopback that speaks the recorded protocol of `version` ("0.3.64",
    the default, or "0.33.0": versions.py says what differs).

    `faults`, `models` and `caching` may be changed while it runs; `prompts`, `interrupts` and
    `cancels` record what clients sent, `views` each /view asked for: (filename, whether a
    prompt was running at that moment).
    """

    def __init__(self, root: Path, *, port: int = 0, object_info_path: Path | None = None,
                 input_dir: Path | None = None, output_dir: Path | None = None,
                 temp_dir: Path | None = None, host: str = "127.0.0.1",
                 disable_metadata: bool = False, argv: list[str] | None = None,
                 version: str | Version = DEFAULT) -> None:
        self.version = named_version(version) if isinstance(version, str) else version
        self.root = Path(root)
        self.input_dir = Path(input_dir) if input_dir else self.root / "input"
        self.output_dir = Path(output_dir) if output_dir else self.root / "output"
        self.temp_dir = Path(temp_dir) if temp_dir else self.root / "temp"
        for folder in (self.input_dir, self.output_dir, self.temp_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.port = port
        self.url = ""
        self.faults = Faults()
        self.prompts: list[dict[str, Any]] = []
        self.interrupts: list[dict[str, Any]] = []
        self.cancels: list[str] = []
        """Prompt ids clients cancelled with POST /api/jobs/{id}/cancel (0.33.0)."""
        self.views: list[tuple[str, bool]] = []
        self.disable_metadata = disable_metadata
        self.argv = argv if argv is not None else ["main.py"]
        self.on_crash: Callable[[], Awaitable[None]] | None = None
        """Process mode sets this to exit; thread mode stops the server."""
        self._catalogue = Catalogue(object_info_path or self.version.object_info, self.input_dir,
                                    {k: list(v) for k, v in DEFAULT_MODELS.items()})
        self._caching = True
        self._state: ServerState | None = None
        self._site_runner: web.AppRunner | None = None
        self._worker: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # --- settings that may change at any time ------------------------------------------------

    @property
    def dirs(self) -> Dirs:
        return Dirs(self.input_dir, self.output_dir, self.temp_dir)

    @property
    def models(self) -> dict[str, list[str]]:
        """Files per model folder, e.g. {"checkpoints": ["random-sd15.safetensors"]}."""
        return self._catalogue.models

    @models.setter
    def models(self, value: dict[str, list[str]]) -> None:
        self._catalogue.models = value

    @property
    def model_dirs(self) -> dict[str, list[Path]]:
        """Extra folders listed per model folder, as --extra-model-paths-config adds them."""
        return self._catalogue.model_dirs

    @property
    def caching(self) -> bool:
        """Off: every prompt runs every node (ComfyUI's --cache-none)."""
        return self._caching

    @caching.setter
    def caching(self, value: bool) -> None:
        self._caching = value
        if self._state is not None:
            self._state.runner.caching = value

    @property
    def pause_ended_at(self) -> float:
        """time.monotonic() when the last `faults.pause_after_prompt_s` pause ended (0: none)."""
        return self._state.runner.pause_ended_at if self._state else 0.0

    @property
    def running(self) -> str | None:
        """The prompt id it is executing now, if any."""
        item = self._state.queue.running if self._state else None
        return item.prompt_id if item is not None else None

    @property
    def feature_flags(self) -> dict[str, dict[str, Any]]:
        """The feature flags each connected client declared, by client id."""
        return dict(self._state.hub.flags) if self._state else {}

    @property
    def preview_frames(self) -> int:
        """Sampler preview frames sent so far, to any client."""
        return self._state.runner.preview_frames if self._state else 0

    @property
    def history(self) -> dict[str, Any]:
        return self._state.queue.history if self._state else {}

    # --- async lifecycle (used directly by main.py) ------------------------------------------

    async def open(self) -> str:
        """Listen and start the prompt worker; returns the base URL."""
        hub = Hub()
        queue = PromptQueue(hub)
        runner = Runner(queue, hub, self._catalogue, self.dirs, self.faults,
                        disable_metadata=self.disable_metadata)
        runner.caching = self._caching
        runner.preview_method = preview_method(self.argv)
        runner.prompt_preview_method = self.version.prompt_preview_method
        runner.on_crash = self._crash
        self._state = ServerState(dirs=self.dirs, catalogue=self._catalogue, faults=self.faults,
                                  hub=hub, queue=queue, runner=runner, argv=self.argv,
                                  prompts=self.prompts, interrupts=self.interrupts,
                                  views=self.views, cancels=self.cancels, version=self.version)
        self._site_runner = web.AppRunner(build_app(self._state), handle_signals=False,
                                          access_log=None)
        await self._site_runner.setup()
        site = web.TCPSite(self._site_runner, self.host, self.port)
        await site.start()
        sockets = self._site_runner.addresses
        self.port = int(sockets[0][1])
        self.url = f"http://{self.host}:{self.port}"
        self._worker = asyncio.get_running_loop().create_task(runner.run_forever())
        return self.url

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass  # the expected end of the worker
            except Exception:
                log.exception("the prompt worker failed while shutting down")
            self._worker = None
        if self._state is not None:
            await self._state.hub.close_all()
        if self._site_runner is not None:
            await self._site_runner.cleanup()
            self._site_runner = None

    async def _crash(self) -> None:
        if self.on_crash is not None:
            await self.on_crash()
            return
        # Thread mode: drop every connection and stop listening, like a dead process would.
        loop = asyncio.get_running_loop()
        loop.create_task(self._stop_listening())
        await asyncio.Event().wait()  # the runner never comes back, as after a crash

    async def _stop_listening(self) -> None:
        log.warning("fault: the double crashes (stops serving)")
        if self._state is not None:
            for ws in list(self._state.hub.sockets.values()):
                transport = ws._req.transport if ws._req is not None else None
                if transport is not None:
                    transport.abort()
        await self.close()

    # --- thread mode -------------------------------------------------------------------------

    def start(self) -> str:
        """Serve from a background thread with its own event loop; returns the base URL."""
        if self._thread is not None:
            raise RuntimeError("already started")
        ready = threading.Event()
        failure: list[BaseException] = []
        loop = asyncio.new_event_loop()
        self._loop = loop

        def serve() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.open())
            except BaseException as exc:  # noqa: BLE001 - handed to the starting thread
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self.close())
            loop.close()

        self._thread = threading.Thread(target=serve, name="comfy-double", daemon=True)
        self._thread.start()
        ready.wait(30)
        if failure:
            self._thread = None
            raise failure[0]
        return self.url

    def stop(self) -> None:
        if self._thread is None or self._loop is None:
            return
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)
        self._thread = None

    def run_coroutine(self, coro: Awaitable[Any]) -> Any:
        """Run a coroutine on the double's loop from a test thread and wait for its result."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(30)  # type: ignore[arg-type]

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def preview_method(argv: list[str]) -> str:
    """The --preview-method in a command line, as ComfyUI's argparse reads it (default none)."""
    method = "none"
    for index, arg in enumerate(argv):
        if arg == "--preview-method" and index + 1 < len(argv):
            method = argv[index + 1]
        elif arg.startswith("--preview-method="):
            method = arg.split("=", 1)[1]
    return method
