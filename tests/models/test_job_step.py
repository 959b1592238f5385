"""Models on demand through the worker and the ComfyUI double: a model named by URL (in a
loader input or in the `models` list) is downloaded once into the cache ComfyUI lists, the
graph names the cached file, and the result says what was downloaded."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.harness import WorkerHarness

WEIGHTS = bytes(range(256)) * 4096  # 1 MiB of "model"


class _Files:
    """A loopback file server that counts what it serves."""

    def __init__(self, delay_per_chunk_s: float = 0.0) -> None:
        self.requests: list[str] = []
        files = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the stdlib's name)
                files.requests.append(self.path)
                if "missing" in self.path:
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(WEIGHTS)))
                self.end_headers()
                for start in range(0, len(WEIGHTS), 64 * 1024):
                    self.wfile.write(WEIGHTS[start:start + 64 * 1024])
                    threading.Event().wait(delay_per_chunk_s)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"


@pytest.fixture
def files() -> Iterator[_Files]:
    served = _Files()
    yield served
    served.server.shutdown()
    served.server.server_close()


@pytest.fixture
def cached(comfy_double, tmp_path: Path) -> Iterator[WorkerHarness]:
    cache = tmp_path / "model-cache"
    harness = WorkerHarness(comfy_double, allow_private_urls=True, model_cache_dir=cache)
    # As the worker's launch would tell a real ComfyUI (--extra-model-paths-config).
    for folder in ("checkpoints", "loras"):
        comfy_double.model_dirs[folder] = [cache / folder]
    yield harness
    harness.worker.close()


def _txt2img(ckpt: str, lora: str | None = None) -> dict:
    model_source = ["4", 0]
    graph = {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["4", 1]}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "m"}},
    }
    if lora is not None:
        graph["10"] = {"class_type": "LoraLoader", "inputs": {
            "model": ["4", 0], "clip": ["4", 1], "lora_name": lora,
            "strength_model": 1.0, "strength_clip": 1.0}}
        model_source = ["10", 0]
    graph["3"] = {"class_type": "KSampler", "inputs": {
        "seed": 1, "steps": 2, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal",
        "denoise": 1.0, "model": model_source, "positive": ["6", 0], "negative": ["6", 0],
        "latent_image": ["5", 0]}}
    return graph


def test_a_checkpoint_by_url_is_downloaded_once(cached: WorkerHarness, files: _Files) -> None:
    url = files.url("/models/random-sd15.safetensors?token=SIGNED")
    first = cached.run({"workflow": _txt2img(url)}, "first")
    assert "images" in first, first
    (model,) = first["models"]
    assert (model["folder"], model["downloaded"], model["size_bytes"]) == ("checkpoints", True, len(WEIGHTS))
    assert "SIGNED" not in str(first)
    sent = cached.double.prompts[-1]["prompt"]["4"]["inputs"]["ckpt_name"]
    assert sent == model["name"] and sent.endswith(".safetensors") and "://" not in sent
    assert first["timings_ms"]["models"] > 0

    second = cached.run({"workflow": _txt2img(url)}, "second")
    assert "images" in second, second
    assert second["models"][0]["downloaded"] is False
    assert len(files.requests) == 1  # the second job asked the server nothing
    assert cached.leftovers() == []


def test_a_lora_from_the_models_list_is_used_by_name(cached: WorkerHarness, files: _Files) -> None:
    cached.double.models = {"checkpoints": ["random-sd15.safetensors"]}
    job = {"workflow": _txt2img("random-sd15.safetensors", lora="style.safetensors"),
           "models": [{"url": files.url("/lora.safetensors"), "folder": "loras",
                       "name": "style.safetensors"}]}
    result = cached.run(job)
    assert "images" in result, result
    assert result["models"][0]["name"] == "style.safetensors"
    assert cached.double.prompts[-1]["prompt"]["10"]["inputs"]["lora_name"] == "style.safetensors"


def test_a_failed_download_is_model_fetch_failed_and_queues_nothing(
    cached: WorkerHarness, files: _Files
) -> None:
    result = cached.run({"workflow": _txt2img(files.url("/missing.safetensors?sig=SECRET"))})
    assert result["error_code"] == "model_fetch_failed"
    assert "404" in result["error"] and "SECRET" not in str(result)
    assert cached.double.prompts == []


def test_a_bad_folder_names_the_field(cached: WorkerHarness, files: _Files) -> None:
    result = cached.run({"workflow": _txt2img("x.safetensors"),
                         "models": [{"url": files.url("/a.safetensors"), "folder": "nowhere"}]})
    assert result["error_code"] == "invalid_input"
    assert "models[0].folder" in result["error"]
    assert files.requests == []


def test_download_progress_is_reported(comfy_double, tmp_path: Path) -> None:
    slow = _Files(delay_per_chunk_s=0.05)  # about 0.8 s for the file
    harness = WorkerHarness(comfy_double, allow_private_urls=True,
                            model_cache_dir=tmp_path / "cache")
    comfy_double.model_dirs["checkpoints"] = [tmp_path / "cache" / "checkpoints"]
    try:
        assert "images" in harness.run({"workflow": _txt2img(slow.url("/slow.safetensors"))})
    finally:
        harness.worker.close()
        slow.server.shutdown()
    downloading = [p for p in harness.progress if p.get("status") == "downloading model"]
    assert downloading and downloading[0]["folder"] == "checkpoints"
    assert all(p["total"] == len(WEIGHTS) for p in downloading)


def test_info_lists_the_cache(cached: WorkerHarness, files: _Files) -> None:
    cached.run({"workflow": _txt2img(files.url("/m.safetensors"))})
    info = cached.run({"info": True})["model_cache"]
    assert info["max_bytes"] == cached.settings.model_cache_max_bytes
    assert [f["folder"] for f in info["files"]] == ["checkpoints"]
    assert info["size_bytes"] == len(WEIGHTS)


# --- costs counted before they are paid (issue 22) --------------------------------------------


def test_more_models_than_max_models_per_job_are_refused_before_any_download(
    cached: WorkerHarness, files: _Files
) -> None:
    limit = cached.settings.max_models_per_job
    models = [{"url": files.url(f"/m{i}.safetensors"), "folder": "loras"}
              for i in range(limit + 1)]
    result = cached.run({"workflow": _txt2img("x.safetensors"), "models": models})
    assert result["error_code"] == "invalid_input"
    assert "MAX_MODELS_PER_JOB" in result["error"] and str(limit) in result["error"]
    assert files.requests == []


@pytest.mark.parametrize("refused", ["too many nodes", "bad base64"])
def test_a_job_that_will_be_refused_downloads_no_model(
    comfy_double, tmp_path: Path, files: _Files, refused: str
) -> None:
    harness = WorkerHarness(comfy_double, allow_private_urls=True,
                            model_cache_dir=tmp_path / "cache",
                            max_graph_nodes=4 if refused == "too many nodes" else 2000)
    job: dict = {"workflow": _txt2img(files.url("/ckpt.safetensors"))}
    if refused == "bad base64":
        job["images"] = [{"name": "in.png", "image": "this is not base64!"}]
    try:
        result = harness.run(job)
    finally:
        harness.worker.close()
    assert result["error_code"] in ("invalid_input", "workflow_invalid"), result
    assert files.requests == [], "a model was downloaded for a job refused anyway"


def test_a_model_url_in_a_loader_input_is_named_where_it_is(
    cached: WorkerHarness, files: _Files
) -> None:
    result = cached.run({"workflow": _txt2img(files.url("/missing.safetensors"))})
    assert result["error_code"] == "model_fetch_failed"
    assert result["details"][0]["field"] == "workflow.4.inputs.ckpt_name"
    assert "workflow.4.inputs.ckpt_name: downloading" in result["error"]


def test_an_attached_comfyui_that_does_not_list_the_cache_is_explained(
    comfy_double, tmp_path: Path, files: _Files
) -> None:
    # Attached to a ComfyUI started without MODEL_CACHE_DIR in its extra model paths.
    harness = WorkerHarness(comfy_double, allow_private_urls=True,
                            model_cache_dir=tmp_path / "cache")
    try:
        result = harness.run({"workflow": _txt2img(files.url("/ckpt.safetensors"))})
    finally:
        harness.worker.close()
    assert result["error_code"] == "missing_model", result
    assert "model cache" in result["error"] and "--extra-model-paths-config" in result["error"]
    assert "comfy_worker_model_cache" in result["details"][0]["extra_model_paths"]
    assert str(tmp_path / "cache") in result["details"][0]["extra_model_paths"]
