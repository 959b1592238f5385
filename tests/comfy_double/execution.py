"""The prompt queue, the history, and the runner that executes one prompt at a time.

Message order per prompt follows the recordings: execution_start, execution_cached, then per
node progress_state / executing / [executed] / progress_state, then execution_success (or
execution_error / execution_interrupted), the history write with a `status` broadcast, and
last `executing` with node null.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from .catalogue import Catalogue
from .faults import Faults
from .files import Dirs
from .graph import DependencyCycle, ExecutionOrder, is_link, signatures
from .hub import Hub
from .media import (
    MALFORMED_FRAMES,
    frame_type1,
    frame_type4,
    huge_png_header,
    png_bytes,
    progress_text_frame,
)
from .nodes import REGISTRY, InterruptProcessing, NodeContext, NodeResult

log = logging.getLogger(__name__)

MAX_HISTORY = 10000
_PREVIEW_METHODS = ("none", "auto", "latent2rgb", "taesd")  # LatentPreviewMethod's values

# Keys ComfyUI strips from extra_data before a prompt reaches the queue listing or history.
SENSITIVE_KEYS = ("auth_token_comfy_org", "api_key_comfy_org")

OOM_TIPS = ("This error means you ran out of memory on your GPU.\n\nTIPS: If the workflow "
            "worked before you might have accidentally set the batch_size to a large number.")


class OutOfMemoryError(RuntimeError):
    """Named like torch's, so the execution_error says exception_type torch.OutOfMemoryError."""


OutOfMemoryError.__module__ = "torch"


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class QueueItem:
    number: float
    prompt_id: str
    prompt: dict[str, Any]
    extra_data: dict[str, Any]
    outputs: list[str]
    sensitive: dict[str, Any] = field(default_factory=dict)

    def public(self) -> list[Any]:
        """The 5-element form /queue and the history show."""
        return [self.number, self.prompt_id, self.prompt, self.extra_data, self.outputs]


class PromptQueue:
    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        self.pending: list[QueueItem] = []
        self.running: QueueItem | None = None
        self.history: dict[str, dict[str, Any]] = {}
        self._arrived = asyncio.Event()

    @property
    def remaining(self) -> int:
        return len(self.pending) + (1 if self.running else 0)

    def status(self) -> dict[str, Any]:
        return {"exec_info": {"queue_remaining": self.remaining}}

    async def broadcast_status(self) -> None:
        await self._hub.send("status", {"status": self.status()}, None)

    async def put(self, item: QueueItem) -> None:
        self.pending.append(item)
        self.pending.sort(key=lambda i: i.number)
        self._arrived.set()
        await self.broadcast_status()

    async def take(self) -> QueueItem:
        while not self.pending:
            self._arrived.clear()
            await self._arrived.wait()
        self.running = self.pending.pop(0)
        await self.broadcast_status()
        return self.running

    async def done(self, item: QueueItem, entry: dict[str, Any]) -> None:
        if len(self.history) > MAX_HISTORY:
            self.history.pop(next(iter(self.history)))
        self.history[item.prompt_id] = entry
        self.running = None
        await self.broadcast_status()

    async def delete(self, prompt_ids: list[str]) -> None:
        before = len(self.pending)
        self.pending = [i for i in self.pending if i.prompt_id not in prompt_ids]
        if len(self.pending) != before:
            await self.broadcast_status()

    async def clear(self) -> None:
        self.pending = []
        await self.broadcast_status()

    def history_slice(self, max_items: int | None, offset: int) -> dict[str, Any]:
        keys = list(self.history)
        if offset < 0 and max_items is not None:
            offset = len(keys) - max_items
        keys = keys[max(offset, 0):]
        if max_items is not None:
            keys = keys[:max_items]
        return {k: self.history[k] for k in keys}


class _Channel:
    """Per-prompt messages to the prompt's client, with the drop_ws_after fault."""

    def __init__(self, hub: Hub, sid: str | None, faults: Faults) -> None:
        self._hub = hub
        self._sid = sid
        self._faults = faults
        self._sent = 0
        self._dropped = False

    async def send(self, event: str, data: dict[str, Any], *, everyone: bool = False) -> None:
        """`everyone`: ComfyUI sends this event to all sockets when the prompt has no
        client_id (progress, progress_state, execution_interrupted); otherwise it is skipped."""
        if self._sid is None and not everyone:
            return
        await self._maybe_drop()
        if self._faults.garbled_ws_text and self._sid is not None:
            await self._hub.send_garbled(self._sid)
        await self._hub.send(event, data, self._sid)
        await self._counted()

    @property
    def sid(self) -> str | None:
        return self._sid

    async def send_bytes(self, payload: bytes) -> None:
        await self._maybe_drop()
        await self._hub.send_bytes(payload, self._sid)
        await self._counted()

    async def _counted(self) -> None:
        if self._sid is not None:
            self._sent += 1
        await self._maybe_drop()

    async def _maybe_drop(self) -> None:
        limit = self._faults.drop_ws_after
        if self._sid is None or self._dropped or limit is None or self._sent < limit:
            return
        self._dropped = True
        log.info("fault: closing websocket %s after %d messages", self._sid, self._sent)
        await self._hub.close(self._sid)


class _ProgressBoard:
    """progress_state: every node started in this prompt, with value, max and state."""

    def __init__(self, prompt_id: str, channel: _Channel) -> None:
        self._prompt_id = prompt_id
        self._channel = channel
        self._nodes: dict[str, dict[str, Any]] = {}

    def _entry(self, node_id: str, value: float, maximum: float, state: str) -> dict[str, Any]:
        return {"value": value, "max": maximum, "state": state, "node_id": node_id,
                "prompt_id": self._prompt_id, "display_node_id": node_id,
                "parent_node_id": None, "real_node_id": node_id}

    async def start(self, node_id: str) -> None:
        self._nodes[node_id] = self._entry(node_id, 0.0, 1.0, "running")
        await self._publish()

    async def update(self, node_id: str, value: int, maximum: int) -> None:
        self._nodes[node_id] = self._entry(node_id, value, maximum, "running")
        await self._publish()

    async def finish(self, node_id: str) -> None:
        entry = self._nodes.get(node_id)
        if entry is None:
            self._nodes[node_id] = self._entry(node_id, 1, 1, "finished")
        else:
            entry.update(value=entry["max"], state="finished")
        await self._publish()

    async def _publish(self) -> None:
        await self._channel.send("progress_state", {
            "prompt_id": self._prompt_id, "nodes": copy.deepcopy(self._nodes)}, everyone=True)


@dataclass
class _Cached:
    outputs: tuple[Any, ...]
    ui: dict[str, Any] | None


@dataclass
class _NodeFailure:
    node_id: str
    interrupted: bool
    details: dict[str, Any] = field(default_factory=dict)


def _format_value(value: Any) -> Any:
    if value is None or isinstance(value, (int, float, bool, str)):
        return value
    return str(value)


def _type_name(exc: BaseException) -> str:
    module, name = type(exc).__module__, type(exc).__qualname__
    return name if module == "builtins" else f"{module}.{name}"


class Runner:
    """Takes prompts off the queue and executes them, one at a time."""

    def __init__(self, queue: PromptQueue, hub: Hub, catalogue: Catalogue, dirs: Dirs,
                 faults: Faults, *, disable_metadata: bool = False) -> None:
        self.queue = queue
        self.hub = hub
        self.catalogue = catalogue
        self.dirs = dirs
        self.faults = faults
        self.disable_metadata = disable_metadata
        self.caching = True
        self.preview_method = "none"  # ComfyUI's --preview-method (its default: none)
        self.prompt_preview_method = False  # a prompt's extra_data may override it (0.33.0)
        self.preview_frames = 0  # sampler previews sent, for tests to count
        self.last_node_id: str | None = None
        self.client_id: str | None = None
        self.on_crash: Callable[[], Awaitable[None]] | None = None
        self._cache: dict[str, _Cached] = {}
        self._interrupt = asyncio.Event()
        self._free_pending = False
        self.pause_ended_at = 0.0  # time.monotonic() when the last pause_after_prompt_s ended

    # --- requests from the HTTP side ---------------------------------------------------------

    def interrupt(self, prompt_id: str | None) -> None:
        running = self.queue.running
        if prompt_id and (running is None or running.prompt_id != prompt_id):
            log.info("Prompt %s is not currently running, skipping interrupt", prompt_id)
            return
        self._interrupt.set()

    def free(self, free_memory: bool) -> None:
        # ComfyUI drops its caches on free_memory between prompts, not in the middle of one.
        if free_memory:
            self._free_pending = True
            if self.queue.running is None:
                self._drop_cache_if_asked()

    def _drop_cache_if_asked(self) -> None:
        if self._free_pending:
            self._cache.clear()
            self._free_pending = False

    # --- the loop ----------------------------------------------------------------------------

    async def run_forever(self) -> None:
        while True:
            item = await self.queue.take()
            try:
                await self._run(item)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("the double failed to run prompt %s", item.prompt_id)
                if self.queue.running is item:
                    await self.queue.done(item, self._history_entry(item, {}, {}, "error", []))
            self._drop_cache_if_asked()
            if self.faults.pause_after_prompt_s > 0:
                time.sleep(self.faults.pause_after_prompt_s)  # blocks the loop, as the lock does
                self.pause_ended_at = time.monotonic()

    async def _run(self, item: QueueItem) -> None:
        if self.faults.crash_on_prompt and self.on_crash is not None:
            log.warning("fault: crashing as prompt %s starts", item.prompt_id)
            await self.on_crash()
            return
        self._drop_cache_if_asked()
        self._interrupt.clear()  # an interrupt that came while idle is forgotten, as in ComfyUI
        prompt, prompt_id = item.prompt, item.prompt_id
        self.client_id = item.extra_data.get("client_id")
        channel = _Channel(self.hub, self.client_id, self.faults)
        messages: list[list[Any]] = []

        async def add_message(event: str, data: dict[str, Any], everyone: bool = False) -> None:
            data = {**data, "timestamp": now_ms()}
            messages.append([event, data])
            await channel.send(event, data, everyone=everyone)

        await add_message("execution_start", {"prompt_id": prompt_id})
        keys = signatures(prompt, lambda n: self._is_changed(prompt[n]))
        if not self.caching:
            self._cache.clear()
        live = set(keys.values())
        self._cache = {k: v for k, v in self._cache.items() if k in live}
        cached_nodes = [n for n in prompt if keys[n] in self._cache]
        await add_message("execution_cached", {"nodes": cached_nodes, "prompt_id": prompt_id})

        board = _ProgressBoard(prompt_id, channel)
        run = _PromptRun(self, item, keys, channel, board)
        failure = await run.execute()
        if failure is None:
            await add_message("execution_success", {"prompt_id": prompt_id})
        elif failure.interrupted:
            await add_message("execution_interrupted", {
                "prompt_id": prompt_id, "node_id": failure.node_id,
                "node_type": prompt[failure.node_id]["class_type"],
                "executed": run.executed[::-1]}, everyone=True)
        else:
            await add_message("execution_error", {
                "prompt_id": prompt_id, "node_id": failure.node_id,
                "node_type": prompt[failure.node_id]["class_type"],
                "executed": run.executed[::-1], **failure.details,
                "current_outputs": list(prompt)[::-1]})

        outputs, meta = run.ui_outputs()
        status = "success" if failure is None else "error"
        self.last_node_id = None
        await self.queue.done(item, self._history_entry(item, outputs, meta, status, messages))
        if not self.faults.no_end:
            await channel.send("executing", {"node": None, "prompt_id": prompt_id})

    @staticmethod
    def _history_entry(item: QueueItem, outputs: dict[str, Any], meta: dict[str, Any],
                       status: str, messages: list[list[Any]]) -> dict[str, Any]:
        return {
            "prompt": copy.deepcopy(item.public()),
            "outputs": outputs,
            "status": {"status_str": status, "completed": status == "success",
                       "messages": messages},
            "meta": meta,
        }

    def _is_changed(self, entry: dict[str, Any]) -> Any:
        impl = REGISTRY.get(entry["class_type"])
        if impl is None:
            return None
        if not impl.cacheable:
            return time.monotonic_ns()
        if impl.is_changed is None:
            return None
        return impl.is_changed(self.dirs, entry.get("inputs", {}))

    # --- used by _PromptRun ------------------------------------------------------------------

    def cached(self, key: str) -> _Cached | None:
        return self._cache.get(key) if self.caching else None

    def remember(self, key: str, outputs: tuple[Any, ...], ui: dict[str, Any] | None) -> None:
        self._cache[key] = _Cached(outputs, ui)

    async def sleep(self, seconds: float) -> None:
        """Stand-in for work: ends early with InterruptProcessing when /interrupt arrives."""
        if seconds <= 0:
            self.check_interrupt()
            return
        try:
            await asyncio.wait_for(self._interrupt.wait(), seconds)
        except TimeoutError:
            return
        raise InterruptProcessing()

    async def wait_for_interrupt(self) -> None:
        await self._interrupt.wait()
        raise InterruptProcessing()

    def check_interrupt(self) -> None:
        if self._interrupt.is_set():
            raise InterruptProcessing()


class _PromptRun:
    """One prompt's execution: the order, the values, the UI outputs, the failure."""

    def __init__(self, runner: Runner, item: QueueItem, keys: dict[str, str], channel: _Channel,
                 board: _ProgressBoard) -> None:
        self.runner = runner
        self.item = item
        self.keys = keys
        self.channel = channel
        self.board = board
        self.values: dict[str, tuple[Any, ...]] = {}
        self.executed: list[str] = []
        self.ui: dict[str, dict[str, Any]] = {}

    async def execute(self) -> _NodeFailure | None:
        prompt = self.item.prompt
        order = ExecutionOrder(prompt, self.runner.catalogue.is_output_node,
                               lambda n: self.runner.cached(self.keys[n]) is not None)
        for output_id in self.item.outputs:
            order.add_output(output_id)
        while not order.is_empty():
            try:
                node_id = order.next_node()
            except DependencyCycle as exc:
                stuck = next(iter(prompt))
                return _NodeFailure(stuck, False, {
                    "exception_message": f"{exc}\n", "exception_type": "DependencyCycleError",
                    "traceback": [], "current_inputs": {}})
            failure = await self._node(node_id)
            if failure is not None:
                return failure
            order.complete(node_id)
        return None

    def ui_outputs(self) -> tuple[dict[str, Any], dict[str, Any]]:
        outputs = {n: ui for n, ui in self.ui.items()}
        # ComfyUI reports every node of the prompt whose UI output sits in its cache.
        for node_id in self.item.prompt:
            if node_id not in outputs:
                cached = self.runner.cached(self.keys[node_id])
                if cached is not None and cached.ui is not None:
                    outputs[node_id] = cached.ui
        meta = {n: {"node_id": n, "display_node": n, "parent_node": None, "real_node_id": n}
                for n in outputs}
        return outputs, meta

    async def _node(self, node_id: str) -> _NodeFailure | None:
        prompt_id = self.item.prompt_id
        entry = self.item.prompt[node_id]
        cached = self.runner.cached(self.keys[node_id])
        if cached is not None:
            self.values[node_id] = cached.outputs
            await self.channel.send("executed", {"node": node_id, "display_node": node_id,
                                                 "output": cached.ui, "prompt_id": prompt_id})
            if cached.ui is not None:
                self.ui[node_id] = cached.ui
            await self.board.finish(node_id)
            return None

        await self.board.start(node_id)
        self.runner.last_node_id = node_id
        await self.channel.send("executing", {"node": node_id, "display_node": node_id,
                                              "prompt_id": prompt_id})
        inputs: dict[str, Any] = {}
        try:
            self.runner.check_interrupt()
            inputs = self._inputs(entry)
            result = await self._call(node_id, entry["class_type"], inputs)
        except InterruptProcessing:
            return _NodeFailure(node_id, True)
        except Exception as exc:  # noqa: BLE001 - every node failure becomes execution_error
            log.error("!!! Exception during processing !!! %s", exc)
            tips = OOM_TIPS if isinstance(exc, OutOfMemoryError) else ""
            return _NodeFailure(node_id, False, {
                "exception_message": f"{exc}\n{tips}",
                "exception_type": _type_name(exc),
                "traceback": traceback.format_tb(exc.__traceback__),
                "current_inputs": {k: [_format_value(v)] for k, v in inputs.items()},
            })

        self.values[node_id] = result.outputs
        self.runner.remember(self.keys[node_id], result.outputs, result.ui)
        if result.ui is not None:
            self.ui[node_id] = result.ui
            await self.channel.send("executed", {"node": node_id, "display_node": node_id,
                                                 "output": result.ui, "prompt_id": prompt_id})
        await self.board.finish(node_id)
        self.executed.append(node_id)
        return None

    def _inputs(self, entry: dict[str, Any]) -> dict[str, Any]:
        resolved: dict[str, Any] = {}
        declared = self.runner.catalogue.declared_inputs(entry["class_type"])
        for name, value in entry.get("inputs", {}).items():
            if declared is not None and name not in declared:
                # ComfyUI hands a node only the inputs it declares; others (still part of the
                # cache key) are ignored (tests/protocol/cached_outputs.json).
                continue
            if is_link(value):
                resolved[name] = self._value_of(value[0])[value[1]]
            elif isinstance(value, dict) and "__value__" in value:
                resolved[name] = value["__value__"]
            else:
                resolved[name] = value
        return resolved

    def _value_of(self, node_id: str) -> tuple[Any, ...]:
        if node_id in self.values:
            return self.values[node_id]
        # Cached upstream nodes never enter the execution order; their values come from the cache.
        cached = self.runner.cached(self.keys[node_id])
        if cached is None:
            raise KeyError(node_id)
        return cached.outputs

    async def _call(self, node_id: str, class_type: str, inputs: dict[str, Any]) -> NodeResult:
        runner, faults = self.runner, self.runner.faults
        impl = REGISTRY.get(class_type)
        await runner.sleep(faults.node_delay_s)
        if impl is None or not impl.own_steps:
            await runner.sleep(faults.step_delay_s)
        if class_type == faults.busy_class:
            await asyncio.sleep(faults.busy_s)  # deaf to /interrupt until done
            runner.check_interrupt()
        if faults.hang:
            log.warning("fault: node %s hangs until interrupted", node_id)
            await runner.wait_for_interrupt()
        if class_type == faults.out_of_memory_class:
            raise OutOfMemoryError(
                "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of "
                "23.55 GiB of which 1.02 GiB is free. Of the allocated memory 20.61 GiB is "
                "allocated by PyTorch, and 1.45 GiB is reserved by PyTorch but unallocated.")
        if class_type == faults.cuda_error_class:
            raise RuntimeError(
                "CUDA error: an illegal memory access was encountered\nCUDA kernel errors might "
                "be asynchronously reported at some other API call, so the stacktrace below "
                "might be incorrect.")
        if class_type == faults.execution_error_class:
            raise RuntimeError(f"Fault injected by the ComfyUI double: {class_type} failed")
        if impl is None:
            raise NotImplementedError(
                f"the ComfyUI double does not implement node class {class_type}")
        ctx = NodeContext(
            node_id=node_id, dirs=runner.dirs, prompt=self.item.prompt,
            extra_data=self.item.extra_data, disable_metadata=runner.disable_metadata,
            progress=lambda value, maximum, preview: self._progress(
                node_id, value, maximum, preview),
            sleep=runner.sleep, step_delay_s=faults.step_delay_s,
            previews=self._preview_method() != "none")
        if asyncio.iscoroutinefunction(impl.run):
            return await impl.run(ctx, **inputs)
        return await asyncio.to_thread(impl.run, ctx, **inputs)

    def _preview_method(self) -> str:
        """The prompt's preview method: --preview-method, or where this ComfyUI reads it, the
        prompt's `extra_data.preview_method` (any method's name; "default" or another value
        keeps --preview-method, as `latent_preview.set_preview_method` does)."""
        method = self.item.extra_data.get("preview_method")
        if self.runner.prompt_preview_method and method in _PREVIEW_METHODS:
            return str(method)
        return self.runner.preview_method

    async def _progress(self, node_id: str, value: int, maximum: int, preview: Any) -> None:
        """ComfyUI's progress hook (main.py): progress_state, then with the client's
        `supports_preview_metadata` a type 4 frame before `progress`, else a type 1 after it.
        `preview`: a Pillow image (sent as PNG, as SaveImageWebsocket's are) or JPEG bytes."""
        self.runner.check_interrupt()
        await self.board.update(node_id, value, maximum)
        image, mime = (preview, "image/jpeg") if isinstance(preview, bytes) else (
            (png_bytes(preview, None, compress_level=1), "image/png") if preview else (b"", ""))
        with_metadata = self.runner.hub.previews_with_metadata(self.channel.sid)
        self.runner.preview_frames += isinstance(preview, bytes)  # a sampler's, not an output
        if self.runner.faults.progress_text is not None:
            await self.channel.send_bytes(progress_text_frame(node_id,
                                                              self.runner.faults.progress_text))
        if image and with_metadata:
            await self.channel.send_bytes(frame_type4(image, mime, self.item.prompt_id, node_id))
            await self._extra_frames(node_id)  # after it: the newest frame when progress comes
        await self.channel.send("progress", {"value": value, "max": maximum,
                                             "prompt_id": self.item.prompt_id, "node": node_id},
                                everyone=True)
        if image and not with_metadata:
            await self.channel.send_bytes(frame_type1(image, mime))

    async def _extra_frames(self, node_id: str) -> None:
        """The extra_frames fault: frames that must never reach this prompt's job as previews."""
        kinds = self.runner.faults.extra_frames
        if "other_prompt" in kinds:
            red = Image.new("RGB", (64, 64), (255, 0, 0))
            await self.channel.send_bytes(frame_type4(png_bytes(red, None, 1), "image/png",
                                                      "another-prompt", node_id))
        if "huge" in kinds:
            await self.channel.send_bytes(frame_type4(huge_png_header(), "image/png",
                                                      self.item.prompt_id, node_id))
        if "not_an_image" in kinds:
            await self.channel.send_bytes(frame_type4(b"not an image at all", "image/jpeg",
                                                      self.item.prompt_id, node_id))
        if "malformed" in kinds:
            for payload in MALFORMED_FRAMES:
                await self.channel.send_bytes(payload)
