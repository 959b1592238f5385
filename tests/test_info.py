"""The info request tells what is true of the running ComfyUI, and no secrets."""

from __future__ import annotations

import json

import pytest
from pydantic import SecretStr

from tests.comfy_double.versions import VERSIONS
from tests.harness import WorkerHarness


@pytest.mark.parametrize("comfy_version", list(VERSIONS))
def test_info_lists_what_comfyui_has(harness: WorkerHarness, comfy_version: str) -> None:
    harness.double.models = {"checkpoints": ["a.safetensors", "b.safetensors"], "loras": ["x.safetensors"]}
    info = harness.run({"info": True})
    assert info["comfyui"]["version"] == comfy_version
    assert info["comfyui"]["frontend_version"] == {"0.3.64": "1.27.10", "0.33.0": "1.48.7"}[
        comfy_version]
    assert info["models"] == {"checkpoints": ["a.safetensors", "b.safetensors"], "loras": ["x.safetensors"]}
    assert "euler" in info["samplers"] and "normal" in info["schedulers"]
    txt2img = info["workflows"]["txt2img"]["params_schema"]
    assert txt2img["properties"]["steps"]["maximum"] == 150
    assert txt2img["properties"]["checkpoint"]["model_folder"] == "checkpoints"
    assert info["limits"]["max_inputs"] == harness.settings.max_inputs
    assert info["output"]["delivery"] == ["auto", "base64"]  # no object store configured
    assert harness.double.prompts == []  # nothing was queued


def test_info_never_shows_secrets(comfy_double) -> None:
    harness = WorkerHarness(comfy_double, comfy_org_api_key=SecretStr("sk-very-secret"),
                            bucket_secret_access_key=SecretStr("bucket-very-secret"))
    text = json.dumps(harness.run({"info": True}))
    assert "very-secret" not in text
    assert '"comfy_org_api_key_configured": true' in text


def test_extra_extensions_setting_is_parsed() -> None:
    from comfy_runtime.settings import Settings

    assert Settings(extra_input_extensions=" .TXT, json ,").extra_input_suffixes == {".txt", ".json"}


def test_info_reports_the_preview_method_comfyui_runs_with(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.comfy_double import ComfyDouble

    for argv, method in ((["main.py"], "none"),
                         (["main.py", "--preview-method", "taesd"], "taesd"),
                         (["main.py", "--preview-method=latent2rgb"], "latent2rgb")):
        double = ComfyDouble(tmp_path / method, argv=argv)
        double.start()
        harness = WorkerHarness(double)
        try:
            info = harness.run({"info": True})
        finally:
            harness.worker.close()
            double.stop()
        assert info["comfyui"]["preview_method"] == method
        assert info["stream_results"] is False
