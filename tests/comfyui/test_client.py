"""The ComfyUI client on both versions: /api/jobs where ComfyUI has it, /queue and /interrupt
where it does not, chosen from ComfyUI's own answers (the double speaks each recorded version)."""

from __future__ import annotations

import time
import uuid

import pytest

from comfy_runtime.comfyui.client import ComfyClient
from tests.comfy_double import ComfyDouble
from tests.comfy_double.versions import VERSIONS

EMPTY = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1,
                                                     "color": 0}},
         "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "c"}}}


def _queue_two(double: ComfyDouble, client: ComfyClient) -> tuple[str, str]:
    """A hanging prompt that runs and one that waits behind it."""
    double.faults.hang = True
    running, waiting = str(uuid.uuid4()), str(uuid.uuid4())
    for prompt_id in (running, waiting):
        client.queue_prompt(EMPTY, client_id="test", prompt_id=prompt_id)
    deadline = time.monotonic() + 5
    while double.running != running and time.monotonic() < deadline:
        time.sleep(0.01)
    return running, waiting


def _until_ended(client: ComfyClient, prompt_id: str) -> None:
    deadline = time.monotonic() + 5
    while client.prompt_state(prompt_id) != "ended":
        assert time.monotonic() < deadline, f"{prompt_id} did not end"
        time.sleep(0.02)


@pytest.mark.parametrize("comfy_version", ["0.33.0"])
def test_cancel_uses_the_jobs_route_when_there(comfy_double: ComfyDouble) -> None:
    client = ComfyClient(comfy_double.url)
    running, waiting = _queue_two(comfy_double, client)
    assert (client.prompt_state(running), client.prompt_state(waiting)) == ("running", "pending")
    assert client.jobs_api is True

    assert client.cancel(waiting) is True
    assert client.prompt_state(waiting) == "ended"
    assert comfy_double.running == running, "cancelling the waiting prompt stopped the running one"
    assert client.cancel(running) is True
    _until_ended(client, running)
    assert comfy_double.cancels == [waiting, running]
    assert comfy_double.interrupts == []
    assert client.cancel(running) is False  # ended: nothing to cancel
    assert client.prompt_state(str(uuid.uuid4())) == "ended"
    client.close()


@pytest.mark.parametrize("comfy_version", ["0.3.64"])
def test_cancel_falls_back_on_an_older_comfyui(comfy_double: ComfyDouble) -> None:
    client = ComfyClient(comfy_double.url)
    running, waiting = _queue_two(comfy_double, client)
    assert client.cancel(running) is None, "0.3.64 has no jobs routes: the caller falls back"
    assert client.jobs_api is False
    # The queue answers instead, and the routes are not asked for again.
    assert (client.prompt_state(running), client.prompt_state(waiting)) == ("running", "pending")
    assert client.cancel(waiting) is None
    assert comfy_double.running == running
    client.delete_from_queue([waiting])
    client.interrupt(running)
    _until_ended(client, running)
    assert client.prompt_state(waiting) == "ended"
    assert comfy_double.cancels == []
    client.close()


@pytest.mark.parametrize("comfy_version", list(VERSIONS))
def test_prompt_state_follows_a_run_to_its_end(comfy_double: ComfyDouble) -> None:
    client = ComfyClient(comfy_double.url)
    prompt_id = str(uuid.uuid4())
    assert client.prompt_state(prompt_id) == "ended"  # unknown
    client.queue_prompt(EMPTY, client_id="test", prompt_id=prompt_id)
    _until_ended(client, prompt_id)
    assert client.history(prompt_id) is not None
    assert client.jobs_api is comfy_double.version.jobs_api
    client.close()
