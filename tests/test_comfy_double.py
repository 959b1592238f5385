"""The ComfyUI double against the recordings of a real ComfyUI 0.3.64.

Each test drives the double the way the recorder drove ComfyUI (HTTP plus a real websocket
client) and compares what comes back with the recorded exchange.
"""

from __future__ import annotations

import copy
import io
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import websocket
from PIL import Image

from tests.comfy_double import ComfyDouble, Faults
from tests.comfy_double.fixtures import comfy_double  # noqa: F401 - the fixture under test

RECORDINGS = Path(__file__).resolve().parent / "protocol"
MAIN = Path(__file__).resolve().parent / "comfy_double" / "main.py"

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(not RECORDINGS.is_dir(), reason="the ComfyUI recordings are not here"),
]


# --- helpers ---------------------------------------------------------------------------------

def recording(name: str) -> Any:
    return json.loads((RECORDINGS / name).read_text())


def http(url: str, method: str = "GET", body: Any = None, *, raw: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, str, bytes]:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(url, data=data, method=method, headers={
        "Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Content-Type", ""), error.read()


def http_json(url: str, method: str = "GET", body: Any = None) -> tuple[int, Any]:
    status, _, payload = http(url, method, body)
    return status, json.loads(payload) if payload else None


def multipart(fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    out = io.BytesIO()
    for name, value in fields.items():
        out.write(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n"
                  f"{value}\r\n".encode())
    for name, (filename, data) in files.items():
        out.write(f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; "
                  f"filename=\"{filename}\"\r\nContent-Type: image/png\r\n\r\n".encode())
        out.write(data + b"\r\n")
    out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue(), f"multipart/form-data; boundary={boundary}"


def upload(url: str, filename: str, data: bytes, **fields: str) -> tuple[int, Any]:
    body, content_type = multipart(fields, {"image": (filename, data)})
    status, _, payload = http(url + "/upload/image", "POST", raw=body,
                              headers={"Content-Type": content_type})
    return status, json.loads(payload) if payload else None


class Client:
    """A websocket client like the recorder's: connect first, then queue, then follow."""

    def __init__(self, base_url: str, client_id: str | None = None) -> None:
        self.base_url = base_url
        self.client_id = client_id or uuid.uuid4().hex
        self.ws = websocket.create_connection(
            base_url.replace("http", "ws", 1) + f"/ws?clientId={self.client_id}", timeout=10)
        self.first = json.loads(self.ws.recv())

    def queue(self, prompt: dict[str, Any], **extra: Any) -> tuple[int, Any]:
        return http_json(self.base_url + "/prompt", "POST",
                         {"prompt": prompt, "client_id": self.client_id, **extra})

    def follow(self, prompt_id: str, timeout: float = 15) -> list[dict[str, Any]]:
        """Every message up to and including `executing` {node: null} for the prompt."""
        messages: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.ws.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                opcode, data = self.ws.recv_data()
            except websocket.WebSocketTimeoutException:
                break
            if opcode == websocket.ABNF.OPCODE_BINARY:
                messages.append({"binary": True, "len": len(data),
                                 "event_type": int.from_bytes(data[:4], "big"),
                                 "head_hex": data[:16].hex()})
                continue
            if opcode != websocket.ABNF.OPCODE_TEXT:
                break
            message = json.loads(data)
            messages.append(message)
            if (message["type"] == "executing" and message["data"]["node"] is None
                    and message["data"]["prompt_id"] == prompt_id):
                return messages
        raise AssertionError(f"no end for {prompt_id}: {[kind(m) for m in messages]}")

    def run(self, prompt: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]],
                                                   dict[str, Any]]:
        status, answer = self.queue(prompt)
        assert status == 200, answer
        messages = self.follow(answer["prompt_id"])
        _, history = http_json(f"{self.base_url}/history/{answer['prompt_id']}")
        return answer, messages, history[answer["prompt_id"]]

    def close(self) -> None:
        try:
            self.ws.close(timeout=1)
        except (websocket.WebSocketException, OSError):
            pass  # the server may already have dropped it (faults)
        finally:
            self.ws.shutdown()


def kind(message: dict[str, Any]) -> str:
    return "binary" if message.get("binary") else message["type"]


_TEMP_NAME = re.compile(r"ComfyUI_temp_[a-z]{5}_")


def normalise(value: Any, prompt_id: str) -> Any:
    """Make a recorded and a fresh exchange comparable: prompt ids, timestamps, receive times,
    PreviewImage's random prefix."""
    if isinstance(value, dict):
        return {k: ("<ts>" if k == "timestamp" else normalise(v, prompt_id))
                for k, v in value.items() if k != "_t"}
    if isinstance(value, list):
        return [normalise(v, prompt_id) for v in value]
    if isinstance(value, str) and prompt_id:
        value = value.replace(prompt_id, "<pid>")
    if isinstance(value, str):
        return _TEMP_NAME.sub("ComfyUI_temp_xxxxx_", value)
    return value


def recorded_run(name: str) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    rec = recording(name)
    prompt_id = rec["response"]["prompt_id"]
    history = rec["history"][prompt_id]
    return rec, normalise(rec["ws_messages"], prompt_id), normalise(history, prompt_id)


def compare_history(fresh: dict[str, Any], recorded: dict[str, Any], prompt_id: str,
                    recorded_number: int) -> None:
    fresh = normalise(fresh, prompt_id)
    fresh["prompt"][0] = recorded_number
    fresh["prompt"][3] = recorded["prompt"][3]  # the recorder's client id
    assert fresh == recorded


def peer_png(width: int = 32, height: int = 24) -> bytes:
    image = Image.new("RGB", (width, height), (10, 200, 30))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def client(comfy_double: ComfyDouble) -> Iterator[Client]:  # noqa: F811
    (comfy_double.input_dir / "peer_test.png").write_bytes(peer_png())
    (comfy_double.input_dir / "peer_sub").mkdir()
    (comfy_double.input_dir / "peer_sub" / "sub.png").write_bytes(peer_png())
    (comfy_double.input_dir / "corrupt.png").write_bytes(b"this is not a png at all")
    connected = Client(comfy_double.url)
    yield connected
    connected.close()


# --- full runs compared message by message ---------------------------------------------------

EXACT_RUNS = [
    "prompt_empty.json",
    "prompt_invert.json",
    "prompt_preview.json",
    "prompt_subfolder.json",
    "nonimage_SaveAnimatedWEBP.json",
    "nonimage_SaveAnimatedPNG.json",
    "nonimage_CreateVideo_SaveVideo.json",
    "nonimage_SaveWEBM.json",
    "nonimage_EmptyAudio_SaveAudio.json",
    "nonimage_EmptyAudio_PreviewAudio.json",
    "nonimage_PreviewAny_text.json",
    "nonimage_MaskPreview.json",
    "txt2img_cold.json",
]


@pytest.mark.parametrize("name", EXACT_RUNS)
def test_run_matches_recording(client: Client, name: str) -> None:
    rec, recorded_messages, recorded_history = recorded_run(name)
    answer, messages, history = client.run(rec["request"]["prompt"])
    prompt_id = answer["prompt_id"]
    assert answer["node_errors"] == {}
    assert [kind(m) for m in messages] == rec["ws_types"]
    assert normalise(messages, prompt_id) == recorded_messages
    compare_history(history, recorded_history, prompt_id, rec["response"]["number"])


@pytest.mark.parametrize("name", EXACT_RUNS[:4] + ["nonimage_SaveAnimatedWEBP.json",
                                                   "nonimage_CreateVideo_SaveVideo.json",
                                                   "nonimage_EmptyAudio_SaveAudio.json"])
def test_view_serves_outputs_like_recording(client: Client, name: str) -> None:
    rec = recording(name)
    if "view" not in rec:
        rec["view"] = recording("nonimage_summary.json")[name[9:-5]]["view"]
    _answer, _, history = client.run(rec["request"]["prompt"])
    for recorded_view in rec["view"]:
        item = history["outputs"][recorded_view["node"]][recorded_view["key"]][0]
        query = urllib.parse.urlencode(item)
        status, content_type, data = http(f"{client.base_url}/view?{query}")
        assert status == recorded_view["status"]
        assert content_type == recorded_view["content_type"]
        assert data[:4] == bytes.fromhex(recorded_view["magic"])[:4]
        if "png" in recorded_view:
            image = Image.open(io.BytesIO(data))
            assert [*image.size] == recorded_view["png"]["size"]
            assert image.mode == recorded_view["png"]["mode"]
            assert sorted(image.text) == recorded_view["png"]["text_keys"]


def test_repeated_prompt_is_cached_like_recording(client: Client) -> None:
    first = recording("prompt_invert.json")["request"]["prompt"]
    client.run(first)
    rec, recorded_messages, recorded_history = recorded_run("prompt_invert_cached.json")
    answer, messages, history = client.run(rec["request"]["prompt"])
    assert [kind(m) for m in messages] == rec["ws_types"]
    assert normalise(messages, answer["prompt_id"]) == recorded_messages
    compare_history(history, recorded_history, answer["prompt_id"], rec["response"]["number"])


def test_warm_txt2img_reuses_model_nodes(client: Client) -> None:
    client.run(recording("txt2img_cold.json")["request"]["prompt"])
    rec, recorded_messages, recorded_history = recorded_run("txt2img_warm.json")
    answer, messages, history = client.run(rec["request"]["prompt"])
    assert [kind(m) for m in messages] == rec["ws_types"]
    assert normalise(messages, answer["prompt_id"]) == recorded_messages
    compare_history(history, recorded_history, answer["prompt_id"], rec["response"]["number"])


def test_save_image_websocket_sends_binary_png(client: Client) -> None:
    rec, recorded_messages, _ = recorded_run("nonimage_SaveImageWebsocket.json")
    _answer, messages, history = client.run(rec["request"]["prompt"])
    assert [kind(m) for m in messages] == rec["ws_types"]
    binary = next(m for m in messages if m.get("binary"))
    recorded_binary = next(m for m in recorded_messages if m.get("binary"))
    assert binary["event_type"] == recorded_binary["event_type"]
    assert binary["head_hex"] == recorded_binary["head_hex"]
    assert history["outputs"] == {} and history["status"]["status_str"] == "success"


def test_after_free_nothing_is_cached(client: Client) -> None:
    prompt = recording("prompt_invert.json")["request"]["prompt"]
    client.run(prompt)
    for body in ({"unload_models": True}, {"free_memory": True},
                 {"unload_models": True, "free_memory": True}):
        status, _content_type, payload = http(client.base_url + "/free", "POST", body)
        assert (status, payload) == (200, b"")
    rec = recording("prompt_after_free.json")
    _answer, messages, _ = client.run(prompt)
    assert [kind(m) for m in messages] == rec["ws_types"]
    cached = next(m for m in messages if m["type"] == "execution_cached")
    assert cached["data"]["nodes"] == recording("free.json")["rerun_after_free_execution_cached"][
        0]["nodes"]


# --- runtime failures ------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["runtime_loadimage_corrupt_file.json",
                                  "runtime_partial_success.json"])
def test_runtime_error_matches_recording(client: Client, name: str) -> None:
    rec, recorded_messages, recorded_history = recorded_run(name)
    _answer, messages, history = client.run(rec["request"]["prompt"])
    assert [kind(m) for m in messages] == rec["ws_types"]
    error = next(m["data"] for m in messages if m["type"] == "execution_error")
    recorded = next(m["data"] for m in recorded_messages if m["type"] == "execution_error")
    assert error.keys() == recorded.keys()
    for field in ("node_id", "node_type", "executed", "exception_type", "current_inputs"):
        assert error[field] == recorded[field], field
    assert error["exception_message"].startswith("cannot identify image file '")
    assert error["exception_message"].endswith("corrupt.png'\n")
    assert sorted(error["current_outputs"]) == sorted(recorded["current_outputs"])
    assert all(line.startswith("  File ") for line in error["traceback"])
    assert history["status"]["status_str"] == "error"
    assert history["status"]["completed"] is False
    assert [m[0] for m in history["status"]["messages"]] == [
        m[0] for m in recorded_history["status"]["messages"]]
    assert history["outputs"] == {} and history["meta"] == {}
    assert history["prompt"][4] == recorded_history["prompt"][4]


def test_imagescale_zero_size_passes_like_recording(client: Client) -> None:
    rec, recorded_messages, recorded_history = recorded_run("runtime_imagescale_zero_passes.json")
    answer, messages, history = client.run(rec["request"]["prompt"])
    assert normalise(messages, answer["prompt_id"]) == recorded_messages
    compare_history(history, recorded_history, answer["prompt_id"], rec["response"]["number"])


# --- POST /prompt refusals -------------------------------------------------------------------

def _without_tracebacks(value: Any) -> Any:
    value = copy.deepcopy(value)
    for entry in (value.get("node_errors") or {}).values():
        for error in entry["errors"]:
            error["extra_info"].pop("traceback", None)
    return value


@pytest.mark.parametrize("case", list(recording("invalid_prompts.json")))
def test_invalid_prompt_answers_like_recording(client: Client, case: str) -> None:
    rec = recording("invalid_prompts.json")[case]
    url = client.base_url + "/prompt"
    if case == "invalid_json_body":
        status, _, payload = http(url, "POST", raw=b"{this is not json")
        assert (status, payload.decode()) == (rec["status"], rec["response"])
        return
    body = {"client_id": client.client_id}
    if "prompt" in rec:
        body["prompt"] = rec["prompt"]
    status, answer = http_json(url, "POST", body)
    assert status == rec["status"]
    assert _without_tracebacks(answer) == _without_tracebacks(rec["response"])
    for entry in (answer.get("node_errors") or {}).values():
        for error in entry["errors"]:
            if "traceback" in error["extra_info"]:
                assert isinstance(error["extra_info"]["traceback"], list)
    # A refused prompt leaves no history and sends nothing.
    assert http_json(client.base_url + "/history")[1] == {}


def test_missing_checkpoint_answers_like_recording(comfy_double: ComfyDouble) -> None:  # noqa: F811
    rec = recording("invalid_missing_checkpoint.json")
    status, answer = http_json(comfy_double.url + "/prompt", "POST", {"prompt": rec["prompt"]})
    assert (status, answer) == (rec["status"], rec["response"])
    comfy_double.models = {"checkpoints": ["nope.safetensors"]}
    status, answer = http_json(comfy_double.url + "/prompt", "POST", {"prompt": rec["prompt"]})
    assert status == 200 and answer["node_errors"] == {}


def test_one_good_output_is_enough(client: Client) -> None:
    prompt = {
        "1": {"class_type": "EmptyImage",
              "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "ok"}},
        "3": {"class_type": "LoadImage", "inputs": {"image": "missing.png"}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "no"}},
    }
    status, answer = client.queue(prompt)
    assert status == 200
    assert answer["node_errors"]["3"]["errors"][0]["type"] == "custom_validation_failed"
    assert answer["node_errors"]["3"]["dependent_outputs"] == ["4"]
    messages = client.follow(answer["prompt_id"])
    ran = [m["data"]["node"] for m in messages if m["type"] == "executing"]
    assert ran == ["1", "2", None]


# --- uploads, view, misc ---------------------------------------------------------------------

def test_upload_like_recording(comfy_double: ComfyDouble) -> None:  # noqa: F811
    rec = recording("upload.json")
    url = comfy_double.url
    first, second = peer_png(), peer_png(16, 16)
    assert upload(url, "peer_test.png", first, overwrite="true") == (rec["status"],
                                                                    rec["response"])
    expected = rec["second_same_name_different_content_no_overwrite"]
    assert upload(url, "peer_test.png", second) == (expected["status"], expected["response"])
    expected = rec["third_same_content_no_overwrite"]
    assert upload(url, "peer_test.png", first) == (expected["status"], expected["response"])
    expected = rec["with_subfolder"]
    assert upload(url, "sub.png", first, subfolder="peer_sub") == (expected["status"],
                                                                  expected["response"])
    body, content_type = multipart({"overwrite": "true"}, {})
    status, _, _ = http(url + "/upload/image", "POST", raw=body,
                        headers={"Content-Type": content_type})
    assert status == rec["missing_image_field"]["status"]
    assert (comfy_double.input_dir / "peer_test (1).png").read_bytes() == second
    assert (comfy_double.input_dir / "peer_sub" / "sub.png").read_bytes() == first
    # Any file type is accepted; the uploaded image is then valid for LoadImage.
    assert upload(url, "clip.mp4", b"\x00\x00\x00\x20ftypisom")[0] == 200
    status, answer = http_json(url + "/object_info/LoadImage")
    assert answer["LoadImage"]["input"]["required"]["image"][0] == [
        "peer_test (1).png", "peer_test.png"]


def test_misc_routes_like_recording(comfy_double: ComfyDouble) -> None:  # noqa: F811
    rec = recording("misc.json")
    url = comfy_double.url
    status, content_type, body = http(url + "/")
    assert status == 200 and content_type.startswith("text/html")
    assert body.startswith(b"<!doctype html>")
    assert http_json(url + "/queue") == (200, rec["get_queue_idle"]["body"])
    assert http_json(url + "/prompt") == (200, rec["get_prompt_idle"]["body"])
    assert http_json(url + "/history/nope") == (200, rec["get_history_unknown_id"]["body"])
    for key, query in (("view_missing_file", "filename=nothing.png&type=output"),
                       ("view_path_traversal", "filename=../secret.png&type=output"),
                       ("view_no_filename", "type=output")):
        assert http(url + "/view?" + query)[0] == rec[key]["status"], key
    assert http(url + "/view?filename=a.png&subfolder=../../etc&type=output")[0] == 403
    assert http(url + "/view?filename=a.png&type=elsewhere")[0] == 400
    status, stats = http_json(url + "/system_stats")
    assert status == 200 and stats.keys() == rec["system_stats"].keys()
    assert stats["system"].keys() == rec["system_stats"]["system"].keys()
    assert stats["system"]["comfyui_version"] == "0.3.64"
    assert stats["devices"][0].keys() == rec["system_stats"]["devices"][0].keys()
    assert http_json(url + "/features") == (200, rec["features"]["body"])
    assert http_json(url + "/api/models") == (200, rec["get_models"]["body"])
    assert http_json(url + "/models/checkpoints") == (200, rec["get_models_checkpoints"]["body"])
    assert http_json(url + "/embeddings") == (200, rec["get_embeddings"]["body"])
    assert http(url + "/models/nonsense")[0] == 404
    status, info = http_json(url + "/api/object_info")
    assert status == 200 and len(info) == rec["get_object_info"]["n_nodes"]
    for name in ("CheckpointLoaderSimple", "SaveImage"):
        assert info[name] == rec["get_object_info"][name]
    assert http_json(url + "/object_info/NoSuchNode") == (200, {})


def test_ws_first_message_like_recording(comfy_double: ComfyDouble) -> None:  # noqa: F811
    rec = recording("ws_connect.json")
    connected = Client(comfy_double.url, "my-client")
    try:
        expected = normalise(rec["first_messages"][0], "")
        expected["data"]["sid"] = "my-client"
        assert connected.first == expected
    finally:
        connected.close()


def test_history_listing_and_deletion(client: Client) -> None:
    prompt = recording("prompt_empty.json")["request"]["prompt"]
    ids = [client.run(prompt)[0]["prompt_id"] for _ in range(3)]
    url = client.base_url
    assert list(http_json(url + "/history")[1]) == ids
    assert list(http_json(url + "/history?max_items=2")[1]) == ids[1:]
    assert http(url + "/history", "POST", {"delete": [ids[0]]})[:3:2] == (200, b"")
    assert list(http_json(url + "/history")[1]) == ids[1:]
    http(url + "/history", "POST", {"clear": True})
    assert http_json(url + "/history")[1] == {}


def test_caller_chosen_prompt_id_and_extra_data(client: Client) -> None:
    prompt = recording("prompt_empty.json")["request"]["prompt"]
    status, answer = client.queue(prompt, prompt_id="mine-1",
                                  extra_data={"extra_pnginfo": {"workflow": {"a": 1}},
                                              "api_key_comfy_org": "secret"})
    assert status == 200 and answer["prompt_id"] == "mine-1"
    client.follow("mine-1")
    _, history = http_json(client.base_url + "/history/mine-1")
    assert history["mine-1"]["prompt"][3] == {"extra_pnginfo": {"workflow": {"a": 1}},
                                              "client_id": client.client_id}
    item = history["mine-1"]["outputs"]["2"]["images"][0]
    _, _, data = http(f"{client.base_url}/view?filename={item['filename']}&type=output")
    assert json.loads(Image.open(io.BytesIO(data)).text["workflow"]) == {"a": 1}


# --- queue and interrupt ---------------------------------------------------------------------

BLUR_CHAIN = recording("interrupt.json")["history_first"][
    "da878c98-5baf-4810-bd07-6f7381b2df91"]["prompt"][2]


def _small_blur_chain(color: int) -> dict[str, Any]:
    prompt = copy.deepcopy(BLUR_CHAIN)
    prompt["1"]["inputs"].update(width=32, height=32, color=color)
    return prompt


def test_interrupt_like_recording(comfy_double: ComfyDouble, client: Client) -> None:  # noqa: F811
    rec = recording("interrupt.json")
    comfy_double.faults.node_delay_s = 0.05
    answers = [client.queue(_small_blur_chain(c))[1] for c in (123, 124, 125)]
    assert [a["number"] for a in answers] == [0, 1, 2]
    first, second, third = (a["prompt_id"] for a in answers)
    time.sleep(0.12)
    _status, queue = http_json(client.base_url + "/queue")
    assert [item[1] for item in queue["queue_running"]] == [first]
    assert [item[1] for item in queue["queue_pending"]] == [second, third]
    assert queue["queue_running"][0][3:] == [{"client_id": client.client_id}, ["99"]]
    assert http_json(client.base_url + "/prompt")[1] == rec["get_prompt"]
    assert http(client.base_url + "/queue", "POST", {"delete": [third]})[0] == 200
    assert http(client.base_url + "/interrupt", "POST", raw=b"")[:3:2] == (200, b"")
    messages = client.follow(first)
    interrupted = next(m["data"] for m in messages if m["type"] == "execution_interrupted")
    recorded = next(m["data"] for m in rec["ws_first"] if m["type"] == "execution_interrupted")
    assert interrupted.keys() == recorded.keys() and interrupted["node_type"] == "ImageBlur"
    assert [kind(m) for m in messages[-3:]] == ["execution_interrupted", "status", "executing"]
    history = http_json(f"{client.base_url}/history/{first}")[1][first]
    recorded_history = rec["history_first"]["da878c98-5baf-4810-bd07-6f7381b2df91"]
    assert history["status"]["status_str"] == recorded_history["status"]["status_str"]
    assert history["status"]["completed"] is False and history["outputs"] == {}
    assert [m[0] for m in history["status"]["messages"]] == [
        m[0] for m in recorded_history["status"]["messages"]]
    # Targeted: another id does nothing, the running one stops.
    assert http(client.base_url + "/interrupt", "POST", {"prompt_id": "not-running"})[0] == 200
    time.sleep(0.1)
    assert http(client.base_url + "/interrupt", "POST", {"prompt_id": second})[0] == 200
    messages = client.follow(second)
    assert kind(messages[-3]) == "execution_interrupted"
    assert http_json(f"{client.base_url}/history/{third}")[1] == rec["history_deleted_third"]
    assert comfy_double.interrupts == [{}, {"prompt_id": "not-running"}, {"prompt_id": second}]


def test_queue_clear_like_recording(comfy_double: ComfyDouble, client: Client) -> None:  # noqa: F811
    rec = recording("queue_clear.json")
    comfy_double.faults.hang = True
    ids = [client.queue(_small_blur_chain(c))[1]["prompt_id"] for c in (1, 2, 3)]
    time.sleep(0.1)
    assert http(client.base_url + "/queue", "POST", {"clear": True})[:3:2] == (200, b"")
    _, queue = http_json(client.base_url + "/queue")
    assert [i[1] for i in queue["queue_running"]] == ids[:1] and queue["queue_pending"] == []
    http(client.base_url + "/interrupt", "POST", raw=b"")
    client.follow(ids[0])
    assert http_json(client.base_url + "/queue")[1] == rec["queue_end"]
    lens = {i: len(http_json(f"{client.base_url}/history/{i}")[1]) for i in ids}
    assert list(lens.values()) == list(rec["history_lens"].values())


def test_prompts_run_in_queue_order(comfy_double: ComfyDouble, client: Client) -> None:  # noqa: F811
    comfy_double.faults.node_delay_s = 0.01
    prompt = recording("prompt_empty.json")["request"]["prompt"]
    ids = [client.queue(prompt, prompt_id=f"p{i}")[1]["prompt_id"] for i in range(3)]
    ends = []
    for prompt_id in ids:
        messages = client.follow(prompt_id)
        ends.append(messages[-1]["data"]["prompt_id"])
    assert ends == ids
    assert [body["prompt_id"] for body in comfy_double.prompts] == ids


def test_prompt_without_client_id_broadcasts_only_what_comfyui_broadcasts(
        comfy_double: ComfyDouble, client: Client) -> None:  # noqa: F811
    prompt = recording("txt2img_cold.json")["request"]["prompt"]
    status, answer = http_json(comfy_double.url + "/prompt", "POST", {"prompt": prompt})
    assert status == 200
    deadline = time.monotonic() + 10
    while not http_json(f"{comfy_double.url}/history/{answer['prompt_id']}")[1]:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    client.ws.settimeout(0.3)
    seen = []
    try:
        while True:
            seen.append(json.loads(client.ws.recv())["type"])
    except websocket.WebSocketTimeoutException:
        pass
    assert set(seen) == {"status", "progress_state", "progress"}


# --- faults ----------------------------------------------------------------------------------

def test_fault_http_500_malformed_json_and_delay(comfy_double: ComfyDouble) -> None:  # noqa: F811
    url = comfy_double.url
    comfy_double.faults.http_500 = {"/history"}
    status, _, body = http(url + "/api/history/abc")
    assert status == 500 and body.startswith(b"500 Internal Server Error")
    comfy_double.faults.http_500 = set()
    comfy_double.faults.malformed_json = {"/system_stats"}
    status, content_type, body = http(url + "/system_stats")
    assert status == 200 and content_type.startswith("application/json")
    with pytest.raises(ValueError):
        json.loads(body)
    comfy_double.faults.malformed_json = set()
    comfy_double.faults.response_delay_s = 0.3
    started = time.monotonic()
    assert http(url + "/system_stats")[0] == 200
    assert time.monotonic() - started >= 0.3


def test_fault_view_404(client: Client, comfy_double: ComfyDouble) -> None:  # noqa: F811
    _, _, history = client.run(recording("prompt_empty.json")["request"]["prompt"])
    item = history["outputs"]["2"]["images"][0]
    query = urllib.parse.urlencode(item)
    assert http(f"{client.base_url}/view?{query}")[0] == 200
    comfy_double.faults.view_404 = True
    assert http(f"{client.base_url}/view?{query}")[0] == 404


def test_fault_execution_error(client: Client, comfy_double: ComfyDouble) -> None:  # noqa: F811
    comfy_double.faults.execution_error_class = "ImageInvert"
    _answer, messages, history = client.run(recording("prompt_invert.json")["request"]["prompt"])
    error = next(m["data"] for m in messages if m["type"] == "execution_error")
    assert (error["node_id"], error["node_type"], error["exception_type"]) == (
        "2", "ImageInvert", "RuntimeError")
    assert error["executed"] == ["1"]
    assert error["current_inputs"]["image"][0].startswith("ImageBatch(")
    assert [kind(m) for m in messages[-3:]] == ["execution_error", "status", "executing"]
    assert history["status"]["status_str"] == "error"
    assert history["status"]["messages"][-1][1]["exception_type"] == "RuntimeError"


def test_fault_out_of_memory(client: Client, comfy_double: ComfyDouble) -> None:  # noqa: F811
    comfy_double.faults.out_of_memory_class = "KSampler"
    _, messages, history = client.run(recording("txt2img_cold.json")["request"]["prompt"])
    error = next(m["data"] for m in messages if m["type"] == "execution_error")
    assert error["exception_type"] == "torch.OutOfMemoryError"
    assert error["exception_message"].startswith("CUDA out of memory")
    assert "This error means you ran out of memory on your GPU" in error["exception_message"]
    assert history["status"]["status_str"] == "error"


def test_fault_hang_until_interrupt(client: Client, comfy_double: ComfyDouble) -> None:  # noqa: F811
    comfy_double.faults.hang = True
    _status, answer = client.queue(recording("prompt_empty.json")["request"]["prompt"])
    time.sleep(0.3)
    assert http_json(f"{client.base_url}/history/{answer['prompt_id']}")[1] == {}
    http(client.base_url + "/interrupt", "POST", {"prompt_id": answer["prompt_id"]})
    messages = client.follow(answer["prompt_id"])
    assert [kind(m) for m in messages[-3:]] == ["execution_interrupted", "status", "executing"]


def test_fault_drop_ws_after(client: Client, comfy_double: ComfyDouble) -> None:  # noqa: F811
    comfy_double.faults.drop_ws_after = 3
    _status, answer = client.queue(recording("prompt_empty.json")["request"]["prompt"])
    received = []
    with pytest.raises((websocket.WebSocketConnectionClosedException, ConnectionError)):
        while True:
            opcode, data = client.ws.recv_data()
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                raise websocket.WebSocketConnectionClosedException("closed")
            received.append(json.loads(data)["type"])
    assert received == ["status", "status", "execution_start", "execution_cached",
                        "progress_state"]
    deadline = time.monotonic() + 5
    while not http_json(f"{client.base_url}/history/{answer['prompt_id']}")[1]:
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_fault_no_end(client: Client, comfy_double: ComfyDouble) -> None:  # noqa: F811
    comfy_double.faults.no_end = True
    _status, answer = client.queue(recording("prompt_empty.json")["request"]["prompt"])
    with pytest.raises(AssertionError, match="no end"):
        client.follow(answer["prompt_id"], timeout=1)
    history = http_json(f"{client.base_url}/history/{answer['prompt_id']}")[1]
    assert history[answer["prompt_id"]]["status"]["status_str"] == "success"


def test_fault_node_errors_on_200(client: Client, comfy_double: ComfyDouble) -> None:  # noqa: F811
    comfy_double.faults.node_errors_on_200 = True
    status, answer = client.queue(recording("prompt_preview.json")["request"]["prompt"])
    assert status == 200 and answer["node_errors"]
    dropped = next(iter(answer["node_errors"]))
    messages = client.follow(answer["prompt_id"])
    ran = {m["data"]["node"] for m in messages if m["type"] == "executing"}
    assert dropped not in ran


def test_fault_step_delay_paces_sampler(client: Client, comfy_double: ComfyDouble) -> None:  # noqa: F811
    comfy_double.faults.step_delay_s = 0.1
    prompt = copy.deepcopy(recording("txt2img_cold.json")["request"]["prompt"])
    prompt["3"]["inputs"]["steps"] = 4
    started = time.monotonic()
    _, messages, _ = client.run(prompt)
    assert time.monotonic() - started >= 0.4
    progress = [m["data"] for m in messages if m["type"] == "progress"]
    assert [(p["value"], p["max"], p["node"]) for p in progress] == [(i, 4, "3")
                                                                     for i in range(1, 5)]


def test_fault_crash_in_thread_mode(client: Client, comfy_double: ComfyDouble) -> None:  # noqa: F811
    comfy_double.faults.crash_on_prompt = True
    client.queue(recording("prompt_empty.json")["request"]["prompt"])
    deadline = time.monotonic() + 5
    while True:
        try:
            socket.create_connection(("127.0.0.1", comfy_double.port), timeout=0.5).close()
        except OSError:
            break
        assert time.monotonic() < deadline, "the double kept serving"
        time.sleep(0.05)


def test_faults_from_json() -> None:
    faults = Faults.from_json('{"hang": true, "http_500": ["/prompt"], "drop_ws_after": 2}')
    assert faults.hang and faults.http_500 == {"/prompt"} and faults.drop_ws_after == 2
    with pytest.raises(ValueError):
        Faults.from_json('{"no_such_switch": 1}')


# --- process mode ----------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _launch(tmp_path: Path, *extra: str, env: dict[str, str] | None = None,
            ) -> tuple[subprocess.Popen[str], str]:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, str(MAIN), "--listen", "127.0.0.1", "--port", str(port),
         "--disable-auto-launch", "--cpu", "--lowvram", "--log-stdout", *extra],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **(env or {})})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    while True:
        try:
            if http(url + "/system_stats")[0] == 200:
                return process, url
        except OSError:
            pass
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the double process did not start"
        time.sleep(0.05)


def test_process_mode_runs_prompts(tmp_path: Path) -> None:
    process, url = _launch(tmp_path, "--disable-metadata",
                           env={"COMFY_DOUBLE_BOOT_DELAY_S": "0.3"})
    try:
        assert sorted(p.name for p in tmp_path.iterdir()) == ["input", "output", "temp"]
        client = Client(url)
        _, _, history = client.run(recording("prompt_empty.json")["request"]["prompt"])
        client.close()
        item = history["outputs"]["2"]["images"][0]
        image = Image.open(tmp_path / "output" / item["filename"])
        assert image.text == {}  # --disable-metadata
        assert "--cpu" in http_json(url + "/system_stats")[1]["system"]["argv"]
    finally:
        process.terminate()
        stdout, _ = process.communicate(timeout=10)
    assert "Starting server" in stdout
    assert f"To see the GUI go to: {url}" in stdout


def test_process_mode_crash_fault_and_directories(tmp_path: Path) -> None:
    dirs = {name: tmp_path / name for name in ("in", "out", "tmp")}
    process, url = _launch(
        tmp_path, "--input-directory", str(dirs["in"]), "--output-directory", str(dirs["out"]),
        "--temp-directory", str(dirs["tmp"]),
        env={"COMFY_DOUBLE_FAULTS": json.dumps({"crash_on_prompt": True})})
    try:
        assert all(path.is_dir() for path in dirs.values())
        status, _ = http_json(url + "/prompt", "POST",
                              {"prompt": recording("prompt_empty.json")["request"]["prompt"]})
        assert status == 200
        assert process.wait(timeout=10) == 3
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)


# --- nodes beyond the recordings -------------------------------------------------------------

def test_annotated_names_scaling_and_masks(client: Client) -> None:
    rgba = Image.new("RGBA", (10, 6), (255, 0, 0, 255))
    rgba.putpixel((0, 0), (0, 0, 0, 0))
    buffer = io.BytesIO()
    rgba.save(buffer, format="PNG")
    upload(client.base_url, "alpha.png", buffer.getvalue(), overwrite="true")
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "alpha.png [input]"}},
        "2": {"class_type": "ImageScaleBy",
              "inputs": {"image": ["1", 0], "upscale_method": "nearest-exact", "scale_by": 2.0}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0],
                                                    "filename_prefix": "deep/er/scaled"}},
        "4": {"class_type": "LoadImageMask", "inputs": {"image": "alpha.png", "channel": "alpha"}},
        "5": {"class_type": "MaskPreview", "inputs": {"mask": ["4", 0]}},
        "6": {"class_type": "ImageScale", "inputs": {"image": ["1", 0], "width": 4, "height": 0,
                                                     "upscale_method": "bilinear",
                                                     "crop": "center"}},
        "7": {"class_type": "PreviewImage", "inputs": {"images": ["6", 0]}},
    }
    _, _, history = client.run(prompt)
    assert history["status"]["status_str"] == "success", history["status"]
    saved = history["outputs"]["3"]["images"][0]
    assert (saved["filename"], saved["subfolder"]) == ("scaled_00001_.png", "deep/er")
    _, _, data = http(client.base_url + "/view?" + urllib.parse.urlencode(saved))
    assert Image.open(io.BytesIO(data)).size == (20, 12)
    mask_item = history["outputs"]["5"]["images"][0]
    _, _, data = http(client.base_url + "/view?" + urllib.parse.urlencode(mask_item))
    mask = Image.open(io.BytesIO(data))
    assert mask.getpixel((0, 0)) == (255, 255, 255) and mask.getpixel((1, 1)) == (0, 0, 0)
    preview = history["outputs"]["7"]["images"][0]
    _, _, data = http(client.base_url + "/view?" + urllib.parse.urlencode(preview))
    assert Image.open(io.BytesIO(data)).size == (4, 2)


def test_save_audio_writes_flac(client: Client, comfy_double: ComfyDouble) -> None:  # noqa: F811
    prompt = recording("nonimage_EmptyAudio_SaveAudio.json")["request"]["prompt"]
    _, _, history = client.run(prompt)
    item = history["outputs"]["2"]["audio"][0]
    data = (comfy_double.output_dir / item["subfolder"] / item["filename"]).read_bytes()
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0  # STREAMINFO first
    info = int.from_bytes(data[18:26], "big")
    sample_rate, channels = info >> 44, ((info >> 41) & 0x7) + 1
    bits, samples = ((info >> 36) & 0x1F) + 1, info & ((1 << 36) - 1)
    assert (sample_rate, channels, bits, samples) == (16000, 1, 16, 8000)


def test_reconnecting_client_learns_the_running_node(client: Client,
                                                     comfy_double: ComfyDouble) -> None:  # noqa: F811
    comfy_double.faults.hang = True
    _, answer = client.queue(recording("prompt_empty.json")["request"]["prompt"])
    time.sleep(0.2)
    again = Client(client.base_url, client.client_id)
    try:
        assert again.first["type"] == "status"
        assert json.loads(again.ws.recv()) == {"type": "executing", "data": {"node": "1"}}
        http(client.base_url + "/interrupt", "POST", raw=b"")
        assert kind(again.follow(answer["prompt_id"])[-3]) == "execution_interrupted"
    finally:
        again.close()
