"""The worker against the ComfyUI double: every outcome a client can meet, and its recovery."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
import uuid

import pytest

from comfy_runtime.settings import Settings
from comfy_runtime.worker import Worker
from handler import respond
from tests.comfy_double import ComfyDouble
from tests.comfy_double.versions import VERSIONS
from tests.harness import WorkerHarness
from tests.images import open_image, png_b64, png_bytes
from tests.slow_server import slow_server

EMPTY_512 = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 512, "height": 512, "batch_size": 1, "color": 0x3366FF}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "w"}},
}
INVERT = {
    "1": {"class_type": "LoadImage", "inputs": {"image": "photo.png"}},
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "inv"}},
}
TXT2IMG_STEPS = 4
# The key tests run against the double speaking each ComfyUI version the worker supports.
BOTH_VERSIONS = pytest.mark.parametrize("comfy_version", list(VERSIONS))


def _stop_requests(double: ComfyDouble) -> list:
    """What the worker sent to stop prompts: its cancels where ComfyUI has the jobs routes,
    else its interrupts; never an interrupt on a ComfyUI that can cancel one prompt."""
    if double.version.jobs_api:
        assert double.interrupts == [], "an /interrupt was sent where a cancel was possible"
        return double.cancels
    return double.interrupts


def _txt2img(ckpt: str = "random-sd15.safetensors") -> dict:
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "3": {"class_type": "KSampler", "inputs": {"seed": 1, "steps": TXT2IMG_STEPS, "cfg": 7.0,
              "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0, "model": ["4", 0],
              "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "t2i"}},
    }


def _image(item: dict):
    return open_image(base64.b64decode(item["data"]))


@BOTH_VERSIONS
def test_empty_image_job_returns_a_decodable_png(harness: WorkerHarness) -> None:
    result = harness.run({"workflow": EMPTY_512})
    (item,) = result["images"]
    assert (item["type"], item["node_id"], item["mime_type"]) == ("base64", "2", "image/png")
    image = _image(item)
    assert image.size == (512, 512)
    assert image.convert("RGB").getpixel((0, 0)) == (0x33, 0x66, 0xFF)
    assert set(result["timings_ms"]) >= {"inputs", "queued", "execution", "outputs", "total", "nodes"}
    assert harness.leftovers() == []
    # ComfyUI 0.33 takes a client's prompt id only as a lowercase hyphenated UUID.
    sent = harness.double.prompts[-1]["prompt_id"]
    assert sent == result["prompt_id"] == str(uuid.UUID(sent))


def test_base64_input_is_inverted(harness: WorkerHarness) -> None:
    result = harness.run({"workflow": INVERT, "images": [{"name": "photo.png", "image": png_b64(color=(10, 200, 30))}]})
    assert _image(result["images"][0]).convert("RGB").getpixel((3, 3)) == (245, 54, 225)
    (prompt,) = harness.double.prompts
    folder, name = prompt["prompt"]["1"]["inputs"]["image"].split("/")
    assert (folder.startswith("job-job-1-"), name) == (True, "photo.png")  # the job's own folder
    assert prompt["prompt"]["3"]["inputs"]["filename_prefix"] == f"{folder}/inv"
    assert result["images"][0]["subfolder"] == ""  # as the client's graph would have it
    assert harness.leftovers() == []


def test_two_jobs_with_the_same_input_name_keep_apart(harness: WorkerHarness) -> None:
    first = harness.run({"workflow": INVERT, "images": [{"name": "photo.png", "image": png_b64(color=(0, 0, 0))}]}, "a")
    second = harness.run({"workflow": INVERT, "images": [{"name": "photo.png", "image": png_b64(color=(255, 255, 255))}]}, "b")
    assert _image(first["images"][0]).convert("RGB").getpixel((0, 0)) == (255, 255, 255)
    assert _image(second["images"][0]).convert("RGB").getpixel((0, 0)) == (0, 0, 0)


@BOTH_VERSIONS
def test_unknown_node_is_workflow_invalid_and_the_next_job_runs(harness: WorkerHarness) -> None:
    bad = harness.run({"workflow": {"1": {"class_type": "NoSuchNode", "inputs": {}},
                                    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0]}}}})
    assert bad["error_code"] == "workflow_invalid"
    assert "NoSuchNode" in bad["error"]
    assert "images" in harness.run({"workflow": EMPTY_512})


def test_invalid_input_never_reaches_comfyui(harness: WorkerHarness) -> None:
    result = harness.run({"workflow": "not-a-workflow-name"})
    assert result["error_code"] == "invalid_input"
    assert "not-a-workflow-name" in result["error"]
    result = harness.run({"workflow": EMPTY_512, "images": [{"name": "a.png", "image": "%%%"}]})
    assert result["error_code"] == "invalid_input"
    assert result["error"].startswith("invalid_input: images[0].image")
    assert harness.double.prompts == []


@BOTH_VERSIONS
def test_missing_checkpoint_lists_what_is_there(harness: WorkerHarness) -> None:
    result = harness.run({"workflow": _txt2img("nope.safetensors")})
    assert result["error_code"] == "missing_model"
    assert "random-sd15.safetensors" in result["error"]


def test_200_with_node_errors_is_an_error(harness: WorkerHarness) -> None:
    harness.double.faults.node_errors_on_200 = True
    result = harness.run({"workflow": EMPTY_512})
    assert result["error_code"] == "workflow_invalid"
    harness.double.faults.node_errors_on_200 = False
    assert "images" in harness.run({"workflow": EMPTY_512})


@BOTH_VERSIONS
def test_execution_error_names_node_and_exception(harness: WorkerHarness) -> None:
    harness.double.faults.execution_error_class = "ImageInvert"
    result = harness.run({"workflow": INVERT, "images": [{"name": "photo.png", "image": png_b64()}]})
    assert result["error_code"] == "execution_failed"
    assert result["error"].startswith("execution_failed: node 2 (ImageInvert) failed: RuntimeError")
    assert result["details"][0]["traceback"]
    assert harness.leftovers() == []


@BOTH_VERSIONS
def test_timeout_stops_the_prompt_and_the_next_job_runs(harness: WorkerHarness) -> None:
    # A first job takes the worker's one-off costs (node definitions, the websocket), so that
    # on a loaded machine the time limit still falls while ComfyUI runs the prompt.
    assert "images" in harness.run({"workflow": EMPTY_512})
    harness.double.faults.hang = True
    started = time.monotonic()
    result = harness.run({"workflow": EMPTY_512, "timeout_s": 2})
    assert result["error_code"] == "timeout"
    assert time.monotonic() - started < 6
    assert "time limit of 2 s" in result["error"]
    assert _stop_requests(harness.double), f"the prompt was not stopped: {result['error']}"
    harness.double.faults.hang = False
    started = time.monotonic()
    assert "images" in harness.run({"workflow": EMPTY_512})
    assert time.monotonic() - started < 2


def test_progress_is_reported_during_sampling(harness: WorkerHarness) -> None:
    harness.double.faults.step_delay_s = 0.3
    result = harness.run({"workflow": _txt2img()})
    assert "images" in result
    steps = [p for p in harness.progress if p.get("class_type") == "KSampler" and "step" in p]
    assert steps, harness.progress
    assert steps[-1]["step"] == TXT2IMG_STEPS and steps[-1]["max"] == TXT2IMG_STEPS
    percents = [p["percent"] for p in harness.progress]
    assert percents == sorted(percents) and percents[-1] == 100.0
    assert result["timings_ms"]["nodes"]["3"] >= TXT2IMG_STEPS * 300 * 0.8


def test_dropped_websocket_still_returns_the_result(harness: WorkerHarness) -> None:
    harness.double.faults.drop_ws_after = 3
    result = harness.run({"workflow": EMPTY_512})
    assert _image(result["images"][0]).size == (512, 512)


def test_a_frame_that_is_not_utf8_is_skipped_without_reconnecting(
        harness: WorkerHarness, caplog: pytest.LogCaptureFixture) -> None:
    harness.double.faults.garbled_ws_text = True
    caplog.set_level(logging.INFO)
    result = harness.run({"workflow": EMPTY_512})
    assert _image(result["images"][0]).size == (512, 512)
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("comfy_runtime")]
    assert any("not ComfyUI's JSON shape" in m for m in messages), messages
    # The socket stays up: the bad frame is dropped, not treated as a broken connection.
    assert not any("websocket broke" in m or "reconnecting" in m for m in messages), messages


def test_missing_end_message_is_recovered_from_history(harness: WorkerHarness) -> None:
    harness.double.faults.no_end = True
    result = harness.run({"workflow": EMPTY_512})
    assert "images" in result


def test_unreachable_comfyui_is_comfyui_unavailable(comfy_double) -> None:
    harness = WorkerHarness(comfy_double)  # pointed at the double's URL...
    comfy_double.stop()  # ...where nothing answers any more
    assert harness.worker.client.base_url == comfy_double.url
    result = harness.run({"workflow": EMPTY_512})
    assert result["error_code"] == "comfyui_unavailable"


def test_a_broken_history_route_does_not_fail_a_run_whose_events_arrived(harness: WorkerHarness) -> None:
    harness.double.faults.http_500 = {"/history"}
    assert _image(harness.run({"workflow": EMPTY_512})["images"][0]).size == (512, 512)


@pytest.fixture
def http_only(comfy_double) -> WorkerHarness:
    """A worker that moves files through ComfyUI's HTTP API, as with a remote ComfyUI."""
    return WorkerHarness(comfy_double, comfyui_local_files=False)


def test_files_travel_over_http_when_the_folders_are_not_ours(http_only: WorkerHarness) -> None:
    result = http_only.run({"workflow": INVERT, "images": [{"name": "photo.png", "image": png_b64(color=(0, 0, 0))}]})
    assert _image(result["images"][0]).convert("RGB").getpixel((0, 0)) == (255, 255, 255)
    assert http_only.leftovers() == []


# Two outputs: "early" is saved first, then a slow blur runs before "late" is saved.
EARLY_AND_LATE = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0x3366FF}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "early"}},
    "3": {"class_type": "ImageBlur", "inputs": {"image": ["1", 0], "blur_radius": 3, "sigma": 1.0}},
    "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "late"}},
}


def test_over_http_an_output_is_downloaded_while_later_nodes_still_run(http_only: WorkerHarness) -> None:
    http_only.double.faults.busy_class, http_only.double.faults.busy_s = "ImageBlur", 0.5
    result = http_only.run({"workflow": EARLY_AND_LATE})
    assert sorted(item["filename"] for item in result["images"]) == ["early_00001_.png", "late_00001_.png"]
    assert {_image(item).size for item in result["images"]} == {(64, 64)}
    assert ("early_00001_.png", True) in http_only.double.views  # fetched mid-run
    assert [name for name, _ in http_only.double.views].count("early_00001_.png") == 1


def test_early_downloads_of_a_run_that_then_fails_are_dropped(http_only: WorkerHarness) -> None:
    http_only.double.faults.execution_error_class = "ImageBlur"
    result = http_only.run({"workflow": EARLY_AND_LATE})
    assert result["error_code"] == "execution_failed"
    http_only.double.faults.execution_error_class = None
    assert len(http_only.run({"workflow": EARLY_AND_LATE})["images"]) == 2
    assert http_only.leftovers() == []


def test_with_the_folders_here_outputs_are_read_not_downloaded(harness: WorkerHarness) -> None:
    assert len(harness.run({"workflow": EARLY_AND_LATE})["images"]) == 2
    assert harness.double.views == []


@pytest.mark.parametrize("route", ["/prompt", "/view", "/upload/image"])
def test_server_errors_are_comfyui_unavailable(http_only: WorkerHarness, route: str) -> None:
    harness = http_only
    harness.double.faults.http_500 = {route}
    job = {"workflow": INVERT, "images": [{"name": "photo.png", "image": png_b64()}]}
    result = harness.run(job)
    assert result["error_code"] == "comfyui_unavailable"
    assert route in result["error"] or "output 'inv_00001_.png'" in result["error"]
    harness.double.faults.http_500 = set()
    assert "images" in harness.run(job)


def test_malformed_json_is_comfyui_unavailable(harness: WorkerHarness) -> None:
    harness.double.faults.malformed_json = {"/prompt"}
    result = harness.run({"workflow": EMPTY_512})
    assert result["error_code"] == "comfyui_unavailable"
    assert "not JSON" in result["error"]


def test_view_404_names_the_output(http_only: WorkerHarness) -> None:
    harness = http_only
    harness.double.faults.view_404 = True
    result = harness.run({"workflow": EMPTY_512})
    assert result["error_code"] == "comfyui_unavailable"
    assert "w_00001_.png" in result["error"]


def test_previews_format_and_api_key(harness: WorkerHarness) -> None:
    graph = {**EMPTY_512, "3": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}
    result = harness.run({"workflow": graph, "output": {"include_previews": True, "format": "jpeg"},
                          "comfy_org_api_key": "sk-job-key"})
    assert sorted(i["node_id"] for i in result["images"]) == ["2", "3"]
    assert all(i["mime_type"] == "image/jpeg" and i["filename"].endswith(".jpg") for i in result["images"])
    assert _image(result["images"][0]).format == "JPEG"
    assert harness.double.prompts[-1]["extra_data"] == {"api_key_comfy_org": "sk-job-key",
                                                        "preview_method": "none"}
    assert "sk-job-key" not in str(result)
    assert harness.leftovers() == []


def test_animated_webp_is_returned_untouched(harness: WorkerHarness) -> None:
    graph = {"1": {"class_type": "EmptyImage", "inputs": {"width": 32, "height": 32, "batch_size": 3, "color": 0}},
             "2": {"class_type": "SaveAnimatedWEBP", "inputs": {"images": ["1", 0], "filename_prefix": "anim",
                   "fps": 6.0, "lossless": False, "quality": 80, "method": "default"}}}
    result = harness.run({"workflow": graph, "output": {"format": "jpeg"}})
    (item,) = result["images"]
    assert (item["mime_type"], item["filename"]) == ("image/webp", "anim_00001_.webp")
    data = base64.b64decode(item["data"])
    assert data[:4] == b"RIFF" and data[8:12] == b"WEBP"  # not re-encoded as JPEG


def test_bundled_txt2img_uses_comfyuis_checkpoint(harness: WorkerHarness) -> None:
    result = harness.run({"workflow": "txt2img", "params": {"prompt": "a cat", "steps": 2, "width": 64, "height": 64}})
    assert "images" in result, result
    sent = harness.double.prompts[-1]["prompt"]
    assert sent["4"]["inputs"]["ckpt_name"] == "random-sd15.safetensors"
    assert sent["6"]["inputs"]["text"] == "a cat"


@BOTH_VERSIONS
def test_cancelling_the_job_interrupts_comfyui(harness: WorkerHarness) -> None:
    harness.double.faults.hang = True

    async def cancel_soon() -> None:
        task = asyncio.ensure_future(harness.handle({"id": "c", "input": {"workflow": EMPTY_512}}))
        # Cancelled while ComfyUI runs it (not while still queued, which needs no interrupt).
        for _ in range(500):
            if harness.double.running is not None:
                break
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(cancel_soon())
    assert _stop_requests(harness.double)
    harness.double.faults.hang = False
    assert "images" in harness.run({"workflow": EMPTY_512})
    assert harness.leftovers() == []


def test_refresh_worker_setting_is_returned(comfy_double) -> None:
    harness = WorkerHarness(comfy_double, refresh_worker=True)
    assert harness.run({"workflow": EMPTY_512})["refresh_worker"] is True


def _ran(result: dict) -> set[str]:
    """Nodes ComfyUI ran for a job (cached ones send no `executing`, so have no timing)."""
    return set(result["timings_ms"]["nodes"])


def test_out_of_memory_says_what_to_do_and_frees_the_gpu(harness: WorkerHarness) -> None:
    harness.double.faults.out_of_memory_class = "ImageInvert"
    graph = {**EMPTY_512, "3": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
             "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "i"}}}
    result = harness.run({"workflow": graph})
    assert result["error_code"] == "execution_failed"
    assert "ran out of memory" in result["error"] and "--lowvram" in result["error"]
    assert "refresh_worker" not in result
    harness.double.faults.out_of_memory_class = None
    # ComfyUI was asked to free memory (/free), which also empties its cache: the earlier
    # identical EmptyImage node runs again.
    assert _ran(harness.run({"workflow": EMPTY_512})) == {"1", "2"}


def test_unchanged_nodes_are_served_from_comfyuis_cache(harness: WorkerHarness) -> None:
    # The control for the test above: without /free, the identical EmptyImage is reused.
    assert _ran(harness.run({"workflow": EMPTY_512})) == {"1", "2"}
    assert _ran(harness.run({"workflow": EMPTY_512})) == {"2"}  # the save node always runs


def test_jobs_in_flight_together_keep_their_events_and_files_apart(harness: WorkerHarness) -> None:
    harness.double.faults.node_delay_s = 0.1

    def job(color: int) -> dict:
        return {"workflow": {
            "1": {"class_type": "EmptyImage", "inputs": {"width": 16, "height": 16, "batch_size": 1, "color": color}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "same"}}}}

    async def both() -> list[dict]:
        return await asyncio.gather(*(
            harness.handle({"id": f"j{i}", "input": job(color)})
            for i, color in enumerate((0xFF0000, 0x0000FF, 0x00FF00))))

    results = asyncio.run(both())
    harness.worker.drain_cleanups()
    colors = [_image(r["images"][0]).convert("RGB").getpixel((0, 0)) for r in results]
    assert colors == [(255, 0, 0), (0, 0, 255), (0, 255, 0)]
    assert len({r["prompt_id"] for r in results}) == 3
    assert harness.leftovers() == []


def test_websocket_only_images_are_returned(harness: WorkerHarness) -> None:
    graph = {"1": {"class_type": "EmptyImage", "inputs": {"width": 16, "height": 16, "batch_size": 1, "color": 0xFF00FF}},
             "2": {"class_type": "SaveImageWebsocket", "inputs": {"images": ["1", 0]}}}
    (item,) = harness.run({"workflow": graph})["images"]
    assert (item["node_id"], item["mime_type"]) == ("2", "image/png")
    assert _image(item).convert("RGB").getpixel((1, 1)) == (255, 0, 255)


@BOTH_VERSIONS
def test_a_queued_job_past_its_time_is_taken_off_the_queue(harness: WorkerHarness) -> None:
    assert "images" in harness.run({"workflow": EMPTY_512})  # the worker's one-off costs, paid
    harness.double.faults.hang = True

    async def both() -> list[dict]:
        running = asyncio.ensure_future(
            harness.handle({"id": "running", "input": {"workflow": EMPTY_512, "timeout_s": 3}}))
        await asyncio.sleep(0.3)
        waiting = await harness.handle({"id": "waiting", "input": {"workflow": INVERT, "timeout_s": 1,
                                               "images": [{"name": "photo.png", "image": png_b64()}]}})
        return [await running, waiting]

    running, waiting = asyncio.run(both())
    harness.worker.drain_cleanups()
    assert waiting["error_code"] == "timeout"
    assert "had not started" in waiting["error"]
    assert running["error_code"] == "timeout"
    # The waiting prompt never ran: only the running one was interrupted (on 0.33, the
    # waiting one is cancelled too, by its id, which leaves the running one alone).
    stops = _stop_requests(harness.double)
    assert len(stops) == (2 if harness.double.version.jobs_api else 1), stops
    harness.double.faults.hang = False
    assert "images" in harness.run({"workflow": EMPTY_512})
    assert harness.leftovers() == []


@BOTH_VERSIONS
def test_auto_warmup_loads_the_default_checkpoint(harness: WorkerHarness) -> None:
    result = harness.warm_up()
    assert "images" in result
    (prompt,) = harness.double.prompts
    assert prompt["prompt"]["4"]["inputs"]["ckpt_name"] == "random-sd15.safetensors"
    assert prompt["prompt"]["3"]["inputs"]["steps"] == 1
    assert harness.worker.warmup_ms is not None


def test_the_worker_is_ready_only_once_comfyui_is_done_with_the_warmup(harness: WorkerHarness) -> None:
    # ComfyUI answers nothing while it collects garbage right after a prompt; the job that
    # woke the worker must not be the one that waits for it.
    harness.double.faults.pause_after_prompt_s = 0.5
    assert "images" in harness.warm_up()
    ready_at = time.monotonic()
    assert harness.double.pause_ended_at > 0
    assert ready_at >= harness.double.pause_ended_at


@BOTH_VERSIONS
def test_auto_warmup_still_warms_up_when_the_checkpoint_is_not_sd_style(
        harness: WorkerHarness, caplog: pytest.LogCaptureFixture) -> None:
    # Newer models ship checkpoints without a text encoder inside: CLIPTextEncode then fails
    # in ComfyUI ("clip input is invalid: None"), as this fault makes it fail.
    harness.double.models = {"checkpoints": ["z_image_turbo_bf16.safetensors"]}
    harness.double.faults.execution_error_class = "CLIPTextEncode"
    with caplog.at_level(logging.WARNING, logger="comfy_runtime.worker"):
        result = harness.warm_up()
    assert "images" in result, result
    first, second = harness.double.prompts
    assert first["prompt"]["4"]["inputs"]["ckpt_name"] == "z_image_turbo_bf16.safetensors"
    assert {n["class_type"] for n in second["prompt"].values()} == {"EmptyImage", "PreviewImage"}
    assert "running the model-free warmup instead" in caplog.text


@BOTH_VERSIONS
def test_auto_warmup_without_models_is_model_free(harness: WorkerHarness) -> None:
    harness.double.models = {"checkpoints": []}
    assert "images" in harness.warm_up()
    (prompt,) = harness.double.prompts
    assert {n["class_type"] for n in prompt["prompt"].values()} == {"EmptyImage", "PreviewImage"}


def test_every_error_code_has_list_details(harness: WorkerHarness) -> None:
    harness.double.faults.execution_error_class = "ImageInvert"
    jobs = {
        "invalid_input": {"workflow": EMPTY_512, "images": [{"name": "x.png", "image": "@@"}]},
        "workflow_invalid": {"workflow": {"1": {"class_type": "NoSuchNode", "inputs": {}}}},
        "missing_model": {"workflow": _txt2img("absent.safetensors")},
        "execution_failed": {"workflow": INVERT,
                             "images": [{"name": "photo.png", "image": png_b64()}]},
    }
    for code, job in jobs.items():
        result = harness.run(job)
        assert result["error_code"] == code, result
        details = result["details"]
        assert isinstance(details, list) and details, (code, details)
        assert all(isinstance(item, dict) for item in details), (code, details)


LINKED_PREFIX = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 32, "height": 32, "batch_size": 1, "color": 0x224466}},
    "2": {"class_type": "PrimitiveString", "inputs": {"value": "linked"}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": ["2", 0]}},
}
PREVIEW_ONLY = {
    "1": {"class_type": "EmptyImage", "inputs": {"width": 32, "height": 32, "batch_size": 1, "color": 0x224466}},
    "3": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
}


@pytest.mark.parametrize("graph", [LINKED_PREFIX, PREVIEW_ONLY], ids=["linked_prefix", "preview"])
def test_an_identical_job_again_gets_its_own_outputs(harness: WorkerHarness, graph: dict) -> None:
    # ComfyUI reports a cached output node's earlier file (tests/protocol/cached_outputs.json);
    # the first job's cleanup removed it, so the second job must make its own.
    job = {"workflow": graph, "output": {"include_previews": True}}
    first, second = harness.run(job, "a"), harness.run(job, "b")
    for result in (first, second):
        (item,) = result["images"]
        assert _image(item).size == (32, 32), result
        assert item["subfolder"] == ""
    sent = harness.double.prompts[-1]["prompt"]
    assert sent["3"]["inputs"]["comfy_worker_job"].startswith("job-b-")
    assert harness.leftovers() == []


def test_a_linked_prefix_saves_into_the_jobs_folder(harness: WorkerHarness) -> None:
    seen: list[list[str]] = []
    original = harness.worker.ctx.cleaner.clean

    def clean(**kwargs):  # look at the folder before cleanup empties it
        seen.append(sorted(str(p.relative_to(harness.double.output_dir))
                           for p in harness.double.output_dir.rglob("*.png")))
        original(**kwargs)

    harness.worker.ctx.cleaner.clean = clean  # type: ignore[method-assign]
    harness.run({"workflow": LINKED_PREFIX})
    (files,) = seen
    (path,) = files
    assert path.startswith("job-job-1-") and path.endswith("/linked_00001_.png")


def test_many_quick_nodes_send_few_progress_updates(harness: WorkerHarness) -> None:
    graph = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}}}
    for index in range(2, 22):
        graph[str(index)] = {"class_type": "ImageInvert", "inputs": {"image": [str(index - 1), 0]}}
    graph["99"] = {"class_type": "SaveImage", "inputs": {"images": ["21", 0], "filename_prefix": "q"}}
    started = time.monotonic()
    assert "images" in harness.run({"workflow": graph})
    elapsed = time.monotonic() - started
    # At most one update per quarter second, plus the final state.
    assert len(harness.progress) <= 2 + int(elapsed / 0.25), harness.progress
    assert harness.progress[-1]["percent"] == 100.0


@BOTH_VERSIONS
def test_a_prompt_that_will_not_stop_is_said_and_cleaned_once_it_ends(comfy_double) -> None:
    # ComfyUI looks for interrupts only between steps and nodes: a long model load outlasts
    # the stop grace.
    harness = WorkerHarness(comfy_double, stop_grace_s=0.5)
    # A first job pays the worker's one-off costs, which a loaded machine can stretch past
    # the 0.5 s below before the prompt is even queued.
    warm = {"1": {**EMPTY_512["1"], "inputs": {**EMPTY_512["1"]["inputs"], "color": 7}},
            "2": EMPTY_512["2"]}  # another value, so ComfyUI's cache leaves the next job be
    assert "images" in harness.run({"workflow": warm})
    harness.double.faults.busy_class, harness.double.faults.busy_s = "EmptyImage", 2.5
    started = time.monotonic()
    result = harness.run({"workflow": EMPTY_512, "timeout_s": 0.5}, job_id="job-2")
    assert result["error_code"] == "timeout"
    assert "did not stop it" in result["error"]
    assert result["details"][0]["stopped"] is False
    # Attached by URL, the worker cannot restart ComfyUI: it asks for a fresh worker.
    assert result["refresh_worker"] is True
    assert time.monotonic() - started >= 2.0  # cleanup waited for the prompt to end
    assert harness.leftovers() == []
    harness.double.faults.busy_class = None
    assert "images" in harness.run({"workflow": EMPTY_512})
    harness.worker.close()


def test_cancelling_while_inputs_download_leaves_no_files(comfy_double) -> None:
    harness = WorkerHarness(comfy_double, allow_private_urls=True)
    with slow_server(png_bytes(16, 16), delay_s=1.5) as base:
        job = {"id": "c", "input": {"workflow": INVERT,
                                    "images": [{"name": "photo.png", "image": f"{base}/p.png"}]}}

        async def cancel_soon() -> None:
            task = asyncio.ensure_future(harness.handle(job))
            await asyncio.sleep(0.3)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(cancel_soon())
        time.sleep(1.6)  # the download finishes and would write its file
        harness.worker.drain_cleanups()
    assert harness.leftovers() == []
    assert harness.double.prompts == []
    harness.worker.close()


def test_timeout_covers_input_downloads(comfy_double) -> None:
    harness = WorkerHarness(comfy_double, allow_private_urls=True)
    with slow_server(png_bytes(16, 16), delay_s=3.0) as base:
        started = time.monotonic()
        result = harness.run({"workflow": INVERT, "timeout_s": 1,
                              "images": [{"name": "photo.png", "image": f"{base}/p.png"}]})
    assert time.monotonic() - started < 2.5
    assert result["error_code"] == "timeout"
    assert "while preparing its inputs" in result["error"]
    assert harness.double.prompts == []
    harness.worker.close()


def test_delivery_s3_without_a_store_is_refused_before_queueing(harness: WorkerHarness) -> None:
    result = harness.run({"workflow": EMPTY_512, "output": {"delivery": "s3"}})
    assert result["error_code"] == "invalid_input"
    assert result["error"].startswith("invalid_input: output.delivery")
    assert harness.double.prompts == []


def test_a_cuda_error_asks_for_a_fresh_worker(harness: WorkerHarness) -> None:
    harness.double.faults.cuda_error_class = "ImageInvert"
    result = harness.run({"workflow": INVERT, "images": [{"name": "photo.png", "image": png_b64()}]})
    assert result["error_code"] == "execution_failed"
    assert "illegal memory access" in result["error"]
    assert result["refresh_worker"] is True
    harness.double.faults.cuda_error_class = None
    assert "refresh_worker" not in harness.run({"workflow": EMPTY_512})


def test_the_websocket_is_reconnected_after_it_drops(harness: WorkerHarness) -> None:
    harness.double.faults.step_delay_s = 0.3
    harness.double.faults.drop_ws_after = 4  # during the first steps of the sampler
    assert "images" in harness.run({"workflow": _txt2img()})
    # Progress comes only from websocket events: the steps after the drop arrived on a new
    # connection.
    steps = [p["step"] for p in harness.progress if p.get("class_type") == "KSampler" and "step" in p]
    assert steps and steps[-1] == TXT2IMG_STEPS, harness.progress


def test_an_unexpected_exception_is_internal_error_and_the_worker_goes_on(
    harness: WorkerHarness, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import handler

    monkeypatch.setattr(handler, "_worker", harness.worker)
    wide = {"1": {"class_type": "EmptyImage", "inputs": {"width": 16384, "height": 2, "batch_size": 1, "color": 0}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "wide"}}}
    job = {"id": "wide-job", "input": {"workflow": wide, "output": {"format": "webp"}}}
    with caplog.at_level("ERROR"):
        result = asyncio.run(handler.handler(job))
    assert result["error_code"] == "internal_error"
    assert result["error"].startswith("internal_error: the worker hit an unexpected")
    assert "Traceback" not in result["error"] and "File " not in str(result["details"])
    logged = [r for r in caplog.records if "wide-job" in r.getMessage()]
    assert logged and logged[0].exc_info is not None  # the traceback is in the log
    harness.worker.drain_cleanups()
    assert harness.leftovers() == []
    assert "images" in asyncio.run(handler.handler({"id": "next", "input": {"workflow": EMPTY_512}}))


def test_attached_with_only_comfyui_dir_cleans_the_jobs_files(comfy_double) -> None:
    # docs/deployment.md says COMFYUI_DIR is enough for the worker to find ComfyUI's folders.
    settings = Settings(comfyui_url=comfy_double.url, comfyui_dir=comfy_double.root)
    worker = Worker(settings)
    try:
        result = respond(asyncio.run(worker.handle(
            {"id": "d", "input": {"workflow": INVERT,
                                  "images": [{"name": "photo.png", "image": png_b64()}]}})))
        assert "images" in result, result
        worker.drain_cleanups()
    finally:
        worker.close()
    left = [p for d in (comfy_double.input_dir, comfy_double.output_dir) for p in d.rglob("*")]
    assert left == []
