"""Record the preview frames a real ComfyUI sends during a txt2img run, with and without the
`supports_preview_metadata` feature flag.

ComfyUI 0.3.64 sends a sampler's previews as binary websocket frames: type 1 (`[u32 1][u32
format][image]`) to a client that declared no feature flags, type 4 (`[u32 4][u32 n][n bytes
of JSON metadata][image]`) to one whose first websocket message was
`{"type": "feature_flags", "data": {"supports_preview_metadata": true}}`. This script runs the
same SD1.5 txt2img graph (64x64, 8 steps; a random-weight checkpoint is enough) once each way,
on a fresh client id, and writes every websocket message in order to
`previews/txt2img_previews.json`: text messages as they came, binary frames whole as base64
(`data_base64`), with their type and length. Also kept: the `/system_stats` argv (the preview
method and size it ran with) and ComfyUI's answer to the feature flags.

    python main.py --cpu --disable-auto-launch --port 8188 --preview-method auto --preview-size 256
    python tests/protocol/record_previews.py --comfyui-url http://127.0.0.1:8188 \\
        --checkpoint random-sd15.safetensors
"""

from __future__ import annotations

import argparse
import base64
import json
import struct
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import websocket

OUT = Path(__file__).resolve().parent / "previews" / "txt2img_previews.json"
FLAGS = {"type": "feature_flags", "data": {"supports_preview_metadata": True}}


def graph(checkpoint: str, steps: int, size: int, seed: int) -> dict[str, Any]:
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a photo of a cat",
                                                         "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
        "5": {"class_type": "EmptyLatentImage",
              "inputs": {"width": size, "height": size, "batch_size": 1}},
        "3": {"class_type": "KSampler", "inputs": {
            "seed": seed, "steps": steps, "cfg": 7.0, "sampler_name": "euler",
            "scheduler": "normal", "denoise": 1.0, "model": ["4", 0], "positive": ["6", 0],
            "negative": ["7", 0], "latent_image": ["5", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0],
                                                     "filename_prefix": "record_previews"}},
    }


def _binary(payload: bytes, received: float) -> dict[str, Any]:
    return {"binary": True, "len": len(payload), "event_type": struct.unpack(">I", payload[:4])[0],
            "data_base64": base64.b64encode(payload).decode(), "_t": round(received, 3)}


def run(http: httpx.Client, ws_url: str, prompt: dict[str, Any], with_flag: bool
        ) -> dict[str, Any]:
    client_id = uuid.uuid4().hex
    ws = websocket.create_connection(f"{ws_url}?clientId={client_id}", timeout=120)
    messages: list[dict[str, Any]] = []
    try:
        if with_flag:
            ws.send(json.dumps(FLAGS))
        prompt_id = str(uuid.uuid4())
        answer = http.post("/prompt", json={"prompt": prompt, "client_id": client_id,
                                            "prompt_id": prompt_id})
        answer.raise_for_status()
        while True:
            opcode, payload = ws.recv_data()
            received = time.time()
            if opcode == websocket.ABNF.OPCODE_BINARY:
                messages.append(_binary(payload, received))
                continue
            message = json.loads(payload)
            message["_t"] = round(received, 3)
            messages.append(message)
            data = message.get("data") or {}
            if (message.get("type") == "executing" and data.get("node") is None
                    and data.get("prompt_id") == prompt_id):
                break
    finally:
        ws.close()
    return {"client_id": client_id, "feature_flags_sent": FLAGS if with_flag else None,
            "prompt_id": prompt_id, "request": {"prompt": prompt}, "ws_messages": messages,
            "binary_types": sorted({m["event_type"] for m in messages if m.get("binary")})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comfyui-url", default="http://127.0.0.1:8188")
    parser.add_argument("--checkpoint", default="random-sd15.safetensors")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--size", type=int, default=64)
    args = parser.parse_args()
    base = args.comfyui_url.rstrip("/")
    ws_url = base.replace("http", "ws", 1) + "/ws"
    with httpx.Client(base_url=base, timeout=120) as http:
        stats = http.get("/system_stats").json()
        prompt = graph(args.checkpoint, args.steps, args.size, seed=7)
        run(http, ws_url, prompt, with_flag=False)  # loads the model: not recorded
        runs = {"without_flag": run(http, ws_url, graph(args.checkpoint, args.steps, args.size, 8),
                                    with_flag=False),
                "with_flag": run(http, ws_url, graph(args.checkpoint, args.steps, args.size, 9),
                                 with_flag=True)}
    recording = {
        "comfyui_version": stats["system"]["comfyui_version"],
        "argv": stats["system"]["argv"],
        "graph": f"SD1.5 txt2img {args.size}x{args.size}, {args.steps} steps, euler/normal "
                 "(random-weight checkpoint)",
        "runs": runs,
    }
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(recording, indent=1) + "\n")
    for name, recorded in runs.items():
        print(name, "binary types", recorded["binary_types"], "messages",
              len(recorded["ws_messages"]))


if __name__ == "__main__":
    main()
