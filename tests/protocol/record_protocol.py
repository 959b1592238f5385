"""Record a real ComfyUI's protocol into a folder of recordings, for a version the double speaks.

    python tests/protocol/record_protocol.py --comfyui-url http://127.0.0.1:8191 \\
        --out tests/protocol/v0.33.0

Run it against a fresh ComfyUI started on the CPU (`--cpu --disable-auto-launch`, its own empty
input/output/temp folders, no models needed) and nothing else talking to it. It writes, in the
formats of the 0.3.64 recordings beside it (tests/protocol/README.md lists what each shows):
`ws_connect.json`, `prompt_empty.json`, `prompt_invert.json`, `prompt_preview.json` (the 0.3.64
files' own graphs, so the two versions can be compared), `invalid_prompts.json` (the same cases
plus client prompt ids), `misc.json`, `jobs.json` (the /api/jobs routes: listing, one job, cancel
of a pending, a running and an unknown prompt; absent on ComfyUIs without them), `log_lines.json`
(the first lines of ComfyUI's log, as it prints them) and `object_info.json` (without the
partner API nodes, which need an account and make up half the file).
docker/update_comfyui.sh runs it with --record.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import websocket
from PIL import Image

HERE = Path(__file__).resolve().parent


def _old(name: str) -> Any:
    return json.loads((HERE / name).read_text())


class Recorder:
    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.client_id = uuid.uuid4().hex
        self.ws = websocket.create_connection(
            self.url.replace("http", "ws", 1) + f"/ws?clientId={self.client_id}", timeout=30)
        self.first = [self._stamp(json.loads(self.ws.recv()))]

    @staticmethod
    def _stamp(message: dict[str, Any]) -> dict[str, Any]:
        return {**message, "_t": round(time.time(), 3)}

    def http(self, method: str, path: str, body: Any = None, raw: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, str, bytes]:
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        request = urllib.request.Request(self.url + path, data=data, method=method, headers={
            "Content-Type": "application/json", **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, response.headers.get("Content-Type", ""), response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.headers.get("Content-Type", ""), error.read()

    def json(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        status, content_type, payload = self.http(method, path, body)
        try:
            parsed: Any = json.loads(payload) if payload else None
        except ValueError:
            parsed = payload.decode("utf-8", "replace")
        return {"status": status, "content_type": content_type.split(";")[0], "body": parsed}

    def queue(self, prompt: dict[str, Any], **extra: Any) -> dict[str, Any]:
        return self.json("POST", "/prompt", {"prompt": prompt, "client_id": self.client_id,
                                             **extra})

    def follow(self, prompt_id: str, timeout: float = 120) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.ws.settimeout(max(0.01, deadline - time.monotonic()))
            opcode, data = self.ws.recv_data()
            if opcode == websocket.ABNF.OPCODE_BINARY:
                messages.append({"binary": True, "len": len(data),
                                 "event_type": int.from_bytes(data[:4], "big"),
                                 "head_hex": data[:16].hex(), "_t": round(time.time(), 3)})
                continue
            message = self._stamp(json.loads(data))
            messages.append(message)
            if (message["type"] == "executing" and message["data"].get("node") is None
                    and message["data"].get("prompt_id") == prompt_id):
                return messages
        raise RuntimeError(f"no end for {prompt_id}")

    def run(self, prompt: dict[str, Any]) -> dict[str, Any]:
        started = time.monotonic()
        answer = self.queue(prompt)
        elapsed = round(time.monotonic() - started, 3)
        prompt_id = answer["body"]["prompt_id"]
        messages = self.follow(prompt_id)
        history = self.json("GET", f"/history/{prompt_id}")
        views = []
        for node, output in history["body"][prompt_id]["outputs"].items():
            for key, items in output.items():
                for item in items if isinstance(items, list) else []:
                    if isinstance(item, dict) and "filename" in item:
                        views.append(self._view(node, key, item))
        return {"request": {"prompt": prompt, "client_id": self.client_id},
                "status": answer["status"], "response": answer["body"], "elapsed_s": elapsed,
                "ws_messages": messages,
                "ws_types": ["binary" if m.get("binary") else m["type"] for m in messages],
                "history_status": history["status"], "history": history["body"], "view": views}

    def _view(self, node: str, key: str, item: dict[str, Any]) -> dict[str, Any]:
        query = (f"filename={item['filename']}&subfolder={item.get('subfolder', '')}"
                 f"&type={item.get('type', 'output')}")
        status, content_type, payload = self.http("GET", "/view?" + query)
        return {"node": node, "key": key, "query": query, "status": status,
                "content_type": content_type, "len": len(payload), "magic": payload[:12].hex()}

    def upload_png(self, name: str) -> dict[str, Any]:
        buffer = io.BytesIO()
        Image.new("RGB", (32, 24), (10, 200, 30)).save(buffer, format="PNG")
        boundary = uuid.uuid4().hex
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; "
                f"filename=\"{name}\"\r\nContent-Type: image/png\r\n\r\n").encode()
        body += buffer.getvalue() + f"\r\n--{boundary}--\r\n".encode()
        status, _, payload = self.http("POST", "/upload/image", raw=body, headers={
            "Content-Type": f"multipart/form-data; boundary={boundary}"})
        return {"status": status, "body": json.loads(payload)}


def record_ws_connect(rec: Recorder) -> dict[str, Any]:
    """The first message, and the feature flags a client that sends its own gets back."""
    other = uuid.uuid4().hex
    ws = websocket.create_connection(rec.url.replace("http", "ws", 1) + f"/ws?clientId={other}",
                                     timeout=10)
    first = json.loads(ws.recv())
    flags = {"type": "feature_flags", "data": {"supports_preview_metadata": True}}
    ws.send(json.dumps(flags))
    ws.settimeout(3)
    try:
        answer: Any = json.loads(ws.recv())
    except websocket.WebSocketTimeoutException:
        answer = None  # a ComfyUI without feature flags says nothing
    ws.close()
    return {"client_id": rec.client_id, "first_messages": rec.first,
            "feature_flags": {"client_id": other, "first": first, "sent": flags,
                              "answer": answer}}


def record_invalid(rec: Recorder) -> dict[str, Any]:
    cases: dict[str, Any] = {}
    for name, case in _old("invalid_prompts.json").items():
        if name == "invalid_json_body":
            status, _, payload = rec.http("POST", "/prompt", raw=b"{not json")
            cases[name] = {"raw_body": "{not json", "status": status,
                           "response": payload.decode("utf-8", "replace")}
        elif name == "no_prompt_key":
            answer = rec.json("POST", "/prompt", {"client_id": rec.client_id})
            cases[name] = {"body": {"client_id": "<client>"}, "status": answer["status"],
                           "response": answer["body"]}
        else:
            answer = rec.queue(case["prompt"])
            cases[name] = {"prompt": case["prompt"], "status": answer["status"],
                           "response": answer["body"]}
    good = _old("prompt_empty.json")["request"]["prompt"]
    for name, prompt_id in [("prompt_id_upper_case", str(uuid.uuid4()).upper()),
                            ("prompt_id_not_a_uuid", "job-42"),
                            ("prompt_id_without_hyphens", uuid.uuid4().hex),
                            ("prompt_id_a_number", 42)]:
        answer = rec.queue(good, prompt_id=prompt_id)
        cases[name] = {"prompt": good, "prompt_id": prompt_id, "status": answer["status"],
                       "response": answer["body"]}
    return cases


def record_misc(rec: Recorder) -> dict[str, Any]:
    status, content_type, payload = rec.http("GET", "/")
    return {
        "get_root": {"status": status, "content_type": content_type.split(";")[0],
                     "len": len(payload), "head": payload[:64].decode("utf-8", "replace")},
        "system_stats": rec.json("GET", "/system_stats")["body"],
        "features": rec.json("GET", "/features"),
        "get_queue_idle": rec.json("GET", "/queue"),
        "get_prompt_idle": rec.json("GET", "/prompt"),
        "get_history_unknown_id": rec.json("GET", f"/history/{uuid.uuid4()}"),
        "view_missing_file": rec.json("GET", "/view?filename=nope.png&type=output"),
        "view_path_traversal": rec.json("GET", "/view?filename=../x.png&type=output"),
        "view_no_filename": rec.json("GET", "/view?type=output"),
        "models": rec.json("GET", "/models"),
    }


def _blur_chain(color: int, size: int) -> dict[str, Any]:
    prompt = copy.deepcopy(_old("interrupt.json")["history_first"][
        "da878c98-5baf-4810-bd07-6f7381b2df91"]["prompt"][2])
    prompt["1"]["inputs"].update(width=size, height=size, color=color)
    return prompt


def record_jobs(rec: Recorder) -> dict[str, Any]:
    """The /api/jobs routes around one finished run and two cancels (pending, then running)."""
    out: dict[str, Any] = {"get_jobs_first": rec.json("GET", "/api/jobs")}
    if out["get_jobs_first"]["status"] != 200:
        return out  # a ComfyUI without the routes: that answer is the recording
    done = rec.run(_old("prompt_empty.json")["request"]["prompt"])
    done_id = done["response"]["prompt_id"]
    out["done_id"] = done_id
    out["get_job_done"] = rec.json("GET", f"/api/jobs/{done_id}")
    out["get_jobs_after_run"] = rec.json("GET", "/api/jobs")
    out["get_jobs_bad_status"] = rec.json("GET", "/api/jobs?status=nope")
    out["get_job_unknown"] = rec.json("GET", f"/api/jobs/{uuid.uuid4()}")
    out["cancel_unknown"] = rec.json("POST", f"/api/jobs/{uuid.uuid4()}/cancel")
    out["cancel_done"] = rec.json("POST", f"/api/jobs/{done_id}/cancel")
    running = rec.queue(_blur_chain(201, 1024))["body"]["prompt_id"]
    pending = rec.queue(_blur_chain(202, 1024))["body"]["prompt_id"]
    time.sleep(0.5)
    out["ids"] = {"running": running, "pending": pending}
    out["get_job_running"] = rec.json("GET", f"/api/jobs/{running}")
    out["get_job_pending"] = rec.json("GET", f"/api/jobs/{pending}")
    out["get_jobs_live"] = rec.json("GET", "/api/jobs?status=pending,in_progress")
    out["cancel_pending"] = rec.json("POST", f"/api/jobs/{pending}/cancel")
    out["get_job_pending_after_cancel"] = rec.json("GET", f"/api/jobs/{pending}")
    out["cancel_running"] = rec.json("POST", f"/api/jobs/{running}/cancel")
    messages = rec.follow(running)
    out["ws_types_running_cancelled"] = [m["type"] for m in messages]
    out["ws_interrupted"] = [m for m in messages if m["type"] == "execution_interrupted"]
    out["get_job_running_after_cancel"] = rec.json("GET", f"/api/jobs/{running}")
    out["history_running_after_cancel"] = rec.json("GET", f"/history/{running}")
    out["cancel_batch_malformed"] = rec.json("POST", "/api/jobs/cancel", {"job_ids": ["x"]})
    return out


def record_object_info(rec: Recorder) -> dict[str, Any]:
    every = rec.json("GET", "/object_info")["body"]
    return {name: spec for name, spec in every.items()
            if not str(spec.get("python_module", "")).startswith("comfy_api_nodes")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comfyui-url", required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rec = Recorder(args.comfyui_url)

    def write(name: str, value: Any, indent: int | None = 1) -> None:
        (args.out / name).write_text(json.dumps(value, indent=indent) + "\n")
        print("wrote", args.out / name)

    write("ws_connect.json", record_ws_connect(rec))
    rec.upload_png("peer_test.png")
    for name in ("prompt_empty.json", "prompt_invert.json", "prompt_preview.json"):
        write(name, rec.run(_old(name)["request"]["prompt"]))
    write("invalid_prompts.json", record_invalid(rec))
    write("misc.json", record_misc(rec))
    write("jobs.json", record_jobs(rec))
    logs = rec.json("GET", "/internal/logs/raw")["body"]
    entries = logs.get("entries", []) if isinstance(logs, dict) else []
    write("log_lines.json", [entry["m"] for entry in entries[:40]])
    write("object_info.json", record_object_info(rec), indent=None)


if __name__ == "__main__":
    main()
