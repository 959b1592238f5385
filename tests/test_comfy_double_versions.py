"""The ComfyUI double speaking 0.33.0, against the recordings of a real ComfyUI 0.33.0
(tests/protocol/v0.33.0/, made by tests/protocol/record_protocol.py).

test_comfy_double.py checks the 0.3.64 protocol in depth; here are the runs both versions share,
and what 0.33.0 changed: client prompt ids, error words, /system_stats and /features, the
feature flags answer, the /api/jobs routes and coloured log lines.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websocket

from tests.comfy_double import ComfyDouble
from tests.test_comfy_double import (
    MAIN,
    Client,
    _free_port,
    _without_tracebacks,
    compare_history,
    http_json,
    kind,
    normalise,
    peer_png,
)

V33 = Path(__file__).resolve().parent / "protocol" / "v0.33.0"

pytestmark = pytest.mark.timeout(60)


def recording(name: str) -> Any:
    return json.loads((V33 / name).read_text())


@pytest.fixture
def double(tmp_path: Path) -> Iterator[ComfyDouble]:
    speaking = ComfyDouble(tmp_path / "comfy", version="0.33.0")
    speaking.start()
    (speaking.input_dir / "peer_test.png").write_bytes(peer_png())
    try:
        yield speaking
    finally:
        speaking.stop()


@pytest.fixture
def client(double: ComfyDouble) -> Iterator[Client]:
    connected = Client(double.url)
    yield connected
    connected.close()


@pytest.mark.parametrize("name", ["prompt_empty.json", "prompt_invert.json",
                                  "prompt_preview.json"])
def test_run_matches_the_0_33_recording(client: Client, name: str) -> None:
    rec = recording(name)
    answer, messages, history = client.run(rec["request"]["prompt"])
    recorded_id = rec["response"]["prompt_id"]
    assert [kind(m) for m in messages] == rec["ws_types"]
    if name == "prompt_preview.json":
        # Two output nodes run in the order of a Python set of their ids, which varies from
        # one ComfyUI process to the next (this recording has 2 before 3; 0.3.64's, 3 before 2).
        recorded = normalise(rec["history"][recorded_id], recorded_id)
        fresh = normalise(history, answer["prompt_id"])
        assert sorted(fresh["prompt"][4]) == sorted(recorded["prompt"][4])
        assert _without_temp_names(fresh["outputs"]) == _without_temp_names(recorded["outputs"])
        return
    assert normalise(messages, answer["prompt_id"]) == normalise(rec["ws_messages"], recorded_id)
    compare_history(history, normalise(rec["history"][recorded_id], recorded_id),
                    answer["prompt_id"], rec["response"]["number"])


@pytest.mark.parametrize("case", list(recording("invalid_prompts.json")))
def test_invalid_prompt_answers_like_the_0_33_recording(double: ComfyDouble, client: Client,
                                                        case: str) -> None:
    rec = recording("invalid_prompts.json")[case]
    if "raw_body" in rec:
        pytest.skip("the body that is not JSON is answered as on 0.3.64 (test_comfy_double)")
    extra = {"prompt_id": rec["prompt_id"]} if "prompt_id" in rec else {}
    if "prompt" in rec:
        status, answer = client.queue(rec["prompt"], **extra)
    else:
        status, answer = http_json(double.url + "/prompt", "POST", {"client_id": "x"})
    assert (status, _without_tracebacks(answer)) == (rec["status"],
                                                      _without_tracebacks(rec["response"]))


def _without_temp_names(outputs: dict[str, Any]) -> dict[str, Any]:
    return json.loads(re.sub(r"ComfyUI_temp_[a-z]{5}_", "ComfyUI_temp_", json.dumps(outputs)))


def test_a_lowercase_uuid_prompt_id_is_taken(client: Client) -> None:
    prompt_id = str(uuid.uuid4())
    status, answer = client.queue(recording("prompt_empty.json")["request"]["prompt"],
                                  prompt_id=prompt_id)
    assert status == 200 and answer["prompt_id"] == prompt_id


def test_stats_features_and_feature_flags_like_the_recording(double: ComfyDouble) -> None:
    misc = recording("misc.json")
    _, stats = http_json(double.url + "/system_stats")
    recorded = misc["system_stats"]["system"]
    assert set(stats["system"]) == set(recorded)
    for key in ("comfyui_version", "required_frontend_version", "comfy_package_versions",
                "required_templates_version", "deploy_environment"):
        assert stats["system"][key] == recorded[key]
    assert http_json(double.url + "/features") == (200, misc["features"]["body"])
    flags = recording("ws_connect.json")["feature_flags"]
    ws = websocket.create_connection(double.url.replace("http", "ws", 1) + "/ws?clientId=f",
                                     timeout=10)
    try:
        assert json.loads(ws.recv())["type"] == "status"
        ws.send(json.dumps(flags["sent"]))
        assert json.loads(ws.recv()) == flags["answer"]
    finally:
        ws.close()


def _job_shape(job: dict[str, Any]) -> tuple[str, list[str]]:
    return job["status"], sorted(job)


def test_jobs_routes_like_the_recording(double: ComfyDouble, client: Client) -> None:
    rec = recording("jobs.json")
    done_answer, _, _ = client.run(recording("prompt_empty.json")["request"]["prompt"])
    done = done_answer["prompt_id"]
    status, job = http_json(f"{double.url}/api/jobs/{done}")
    assert status == 200
    recorded = json.loads(json.dumps(rec["get_job_done"]["body"])
                          .replace("peer_empty_00003_", "peer_empty_00001_")
                          .replace("peer_empty_00004_", "peer_empty_00002_"))
    assert _job_shape(job) == _job_shape(recorded)
    for key in ("outputs", "preview_output", "outputs_count", "previewable_outputs_count"):
        assert job[key] == recorded[key], key
    assert job["workflow"]["prompt"] == recorded["workflow"]["prompt"]
    assert job["execution_end_time"] >= job["execution_start_time"] >= job["create_time"]
    for route, key in [(f"/api/jobs/{uuid.uuid4()}", "get_job_unknown"),
                       ("/api/jobs?status=nope", "get_jobs_bad_status")]:
        assert http_json(double.url + route) == (rec[key]["status"], rec[key]["body"])
    for route, key in [(f"/api/jobs/{uuid.uuid4()}/cancel", "cancel_unknown"),
                       (f"/api/jobs/{done}/cancel", "cancel_done")]:
        assert http_json(double.url + route, "POST", {}) == (rec[key]["status"], rec[key]["body"])
    assert http_json(double.url + "/api/jobs/cancel", "POST", {"job_ids": ["x"]}) == (
        rec["cancel_batch_malformed"]["status"], rec["cancel_batch_malformed"]["body"])


def test_cancel_stops_only_the_job_named(double: ComfyDouble, client: Client) -> None:
    rec = recording("jobs.json")
    double.faults.node_delay_s = 0.2
    prompt = recording("prompt_empty.json")["request"]["prompt"]
    running = client.queue(prompt)[1]["prompt_id"]
    pending = client.queue({**prompt, "2": {**prompt["2"], "inputs": {
        **prompt["2"]["inputs"], "filename_prefix": "other"}}})[1]["prompt_id"]
    deadline = time.monotonic() + 5
    while double.running != running and time.monotonic() < deadline:
        time.sleep(0.01)
    states = {http_json(f"{double.url}/api/jobs/{i}")[1]["status"] for i in (running, pending)}
    assert states == {rec["get_job_running"]["body"]["status"],
                      rec["get_job_pending"]["body"]["status"]}
    live = http_json(double.url + "/api/jobs?status=pending,in_progress")[1]["jobs"]
    assert [j["status"] for j in live] == [
        j["status"] for j in rec["get_jobs_live"]["body"]["jobs"]]

    assert http_json(f"{double.url}/api/jobs/{pending}/cancel", "POST", {})[1] == rec[
        "cancel_pending"]["body"]
    assert http_json(f"{double.url}/api/jobs/{pending}") == (
        rec["get_job_pending_after_cancel"]["status"], rec["get_job_pending_after_cancel"]["body"])
    assert double.running == running, "cancelling the pending job touched the running one"
    assert http_json(f"{double.url}/api/jobs/{running}/cancel", "POST", {})[1] == rec[
        "cancel_running"]["body"]
    messages = client.follow(running)
    assert "execution_interrupted" in [kind(m) for m in messages]
    _, after = http_json(f"{double.url}/api/jobs/{running}")
    assert after["status"] == rec["get_job_running_after_cancel"]["body"]["status"] == "cancelled"
    assert double.cancels == [pending, running]


def test_process_mode_colours_its_log_lines(tmp_path: Path) -> None:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, str(MAIN), "--port", str(port), "--log-stdout",
         "--base-directory", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "COMFY_DOUBLE_VERSION": "0.33.0"})
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(3)]
    finally:
        proc.terminate()
        proc.wait(10)
    recorded_prefix = recording("log_lines.json")[0].split("]", 1)[0] + "]"
    assert lines[0].startswith(recorded_prefix), (lines, recorded_prefix)
    assert any("ComfyUI version: 0.33.0" in line for line in lines), lines
