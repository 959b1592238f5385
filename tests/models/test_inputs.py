"""Which loader inputs name model files, the models list's validation, and graph rewriting."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from comfy_runtime.errors import InvalidInput
from comfy_runtime.models.inputs import (
    FILE_EXTENSIONS,
    LOADER_INPUTS,
    ModelRequest,
    find_graph_models,
    parse_model_list,
    rewrite_graph,
)

# Recorded from real ComfyUIs: the version the data file names, and 0.3.64 (the table's
# entries for nodes 0.3.64 has must hold there too: the worker runs on both).
PROTOCOL = Path(__file__).resolve().parents[1] / "protocol"
OBJECT_INFO = PROTOCOL / "v0.33.0" / "object_info.json"
OLD_OBJECT_INFO = PROTOCOL / "object_info.json"

LORA_URL = "https://huggingface.co/u/r/resolve/main/style%20v2.safetensors?download=true"
CKPT_URL = "https://example.com/models/sd15.ckpt"


def _object_info(path: Path = OBJECT_INFO) -> dict[str, Any]:
    return dict(json.loads(path.read_text()))


# --- the table is ComfyUI's truth ----------------------------------------------------------------


def test_the_table_is_of_the_recorded_version() -> None:
    data = json.loads((Path(__file__).resolve().parents[2] / "comfy_runtime" / "models" / "data"
                       / "comfyui_model_inputs.json").read_text())
    assert OBJECT_INFO.parent.name == "v" + data["comfyui_version"]


@pytest.mark.parametrize("recorded", [OBJECT_INFO, OLD_OBJECT_INFO], ids=["0.33.0", "0.3.64"])
def test_every_table_entry_is_a_model_list_input_of_that_node(recorded: Path) -> None:
    info = _object_info(recorded)
    for class_type, inputs in LOADER_INPUTS.items():
        if recorded == OLD_OBJECT_INFO and class_type not in info:
            continue  # a loader newer than 0.3.64
        assert class_type in info, class_type
        declared = {
            **info[class_type]["input"].get("required", {}),
            **info[class_type]["input"].get("optional", {}),
        }
        for input_name, folder in inputs.items():
            assert input_name in declared, f"{class_type}.{input_name}"
            kind = declared[input_name][0]
            # A file list: the old form is the list itself, the new one a COMBO.
            assert isinstance(kind, list) or kind == "COMBO", f"{class_type}.{input_name}"
            assert folder in FILE_EXTENSIONS


def test_the_core_loaders_named_in_the_issue_are_covered() -> None:
    expected = {
        ("CheckpointLoaderSimple", "ckpt_name"): "checkpoints",
        ("LoraLoader", "lora_name"): "loras",
        ("LoraLoaderModelOnly", "lora_name"): "loras",
        ("VAELoader", "vae_name"): "vae",
        ("CLIPLoader", "clip_name"): "text_encoders",
        ("DualCLIPLoader", "clip_name2"): "text_encoders",
        ("UNETLoader", "unet_name"): "diffusion_models",
        ("ControlNetLoader", "control_net_name"): "controlnet",
        ("UpscaleModelLoader", "model_name"): "upscale_models",
        ("CLIPVisionLoader", "clip_name"): "clip_vision",
        ("StyleModelLoader", "style_model_name"): "style_models",
        ("GLIGENLoader", "gligen_name"): "gligen",
        ("HypernetworkLoader", "hypernetwork_name"): "hypernetworks",
        ("PhotoMakerLoader", "photomaker_model_name"): "photomaker",
    }
    for (class_type, input_name), folder in expected.items():
        assert LOADER_INPUTS[class_type][input_name] == folder


# --- URLs in a graph -------------------------------------------------------------------------


def _graph() -> dict[str, Any]:
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CKPT_URL}},
        "10": {
            "class_type": "LoraLoader",
            "inputs": {"model": ["4", 0], "clip": ["4", 1], "lora_name": LORA_URL,
                       "strength_model": 1.0, "strength_clip": 1.0},
        },
        "11": {
            "class_type": "LoraLoaderModelOnly",
            "inputs": {"model": ["10", 0], "lora_name": LORA_URL, "strength_model": 0.5},
        },
        "12": {"class_type": "VAELoader", "inputs": {"vae_name": "local.safetensors"}},
        "13": {"class_type": "CLIPTextEncode", "inputs": {"text": "https://not-a-model.test/x"}},
    }


def test_urls_in_loader_inputs_become_requests_and_names() -> None:
    graph = _graph()
    before = copy.deepcopy(graph)
    found = find_graph_models(graph)

    assert [(r.url, r.folder) for r in found.requests] == [
        (CKPT_URL, "checkpoints"), (LORA_URL, "loras")
    ]
    ckpt, lora = found.requests
    assert ckpt.file_name.startswith("sd15-") and ckpt.file_name.endswith(".ckpt")
    assert lora.file_name.startswith("style_v2-") and lora.file_name.endswith(".safetensors")
    assert [(u.node_id, u.input_name, u.index) for u in found.uses] == [
        ("4", "ckpt_name", 0), ("10", "lora_name", 1), ("11", "lora_name", 1)
    ]

    rewritten = rewrite_graph(graph, found, [ckpt.file_name, lora.file_name])
    assert rewritten["4"]["inputs"]["ckpt_name"] == ckpt.file_name
    assert rewritten["10"]["inputs"]["lora_name"] == lora.file_name
    assert rewritten["11"]["inputs"]["lora_name"] == lora.file_name
    assert rewritten["10"]["inputs"]["model"] == ["4", 0]
    assert rewritten["12"] == before["12"] and rewritten["13"] == before["13"]
    assert graph == before, "the job's graph was changed in place"


def test_the_same_file_name_from_two_urls_gets_two_names() -> None:
    graph = {
        "1": {"class_type": "LoraLoaderModelOnly",
              "inputs": {"lora_name": "https://a.test/x/model.safetensors"}},
        "2": {"class_type": "LoraLoaderModelOnly",
              "inputs": {"lora_name": "https://b.test/y/model.safetensors"}},
    }
    names = [r.file_name for r in find_graph_models(graph).requests]
    assert len(set(names)) == 2


def test_a_url_without_a_model_file_name_is_invalid_input_naming_the_input() -> None:
    graph = {"7": {"class_type": "LoraLoader",
                   "inputs": {"lora_name": "https://civitai.com/api/download/models/12345"}}}
    with pytest.raises(InvalidInput) as caught:
        find_graph_models(graph)
    assert caught.value.message.startswith("workflow.7.inputs.lora_name: ")
    assert "models list" in caught.value.message


def test_a_graph_without_urls_has_no_requests() -> None:
    graph = {"1": {"class_type": "LoraLoader", "inputs": {"lora_name": "x.safetensors"}},
             "2": "not a node"}
    assert find_graph_models(graph).requests == []


# --- the explicit list -----------------------------------------------------------------------


def test_name_defaults_to_the_urls_file_name_and_sha256_is_lowercased() -> None:
    [request] = parse_model_list(
        [{"url": "https://h.test/a/b/style.safetensors?x=1", "folder": "loras",
          "sha256": "AB" * 32}]
    )
    assert request.name == "style.safetensors"
    assert request.sha256 == "ab" * 32


@pytest.mark.parametrize(
    ("item", "field", "words"),
    [
        ({"url": "https://h.test/a.safetensors", "folder": "lora"}, "models[0].folder",
         "unknown model folder"),
        ({"url": "https://h.test/a.safetensors", "folder": "diffusers"}, "models[0].folder",
         "unknown model folder"),
        ({"url": "https://h.test/a.safetensors", "folder": "loras", "name": "../a.safetensors"},
         "models[0].name", "plain file name"),
        ({"url": "https://h.test/a.safetensors", "folder": "loras", "name": ".hidden.pt"},
         "models[0].name", "plain file name"),
        ({"url": "https://h.test/a.safetensors", "folder": "loras", "name": "a.exe"},
         "models[0].name", "ComfyUI lists only"),
        ({"url": "https://h.test/api/download/1", "folder": "loras"}, "models[0].name",
         "required: the URL's file name does not do (ComfyUI lists only"),
        ({"url": "https://h.test/", "folder": "loras"}, "models[0].name", "required"),
        ({"url": "https://h.test/a.safetensors", "folder": "loras", "sha256": "abc"},
         "models[0].sha256", "64 hexadecimal"),
        ({"url": "file:///etc/passwd", "folder": "loras", "name": "a.pt"}, "models[0].url",
         "http"),
        ({"url": "https://h.test/a.safetensors", "folder": "loras", "extra": 1},
         "models[0].extra", "Extra inputs"),
    ],
)
def test_errors_name_the_field(item: dict[str, Any], field: str, words: str) -> None:
    good = {"url": "https://h.test/ok.safetensors", "folder": "vae"}
    raw = [item] if field.startswith("models[0]") else [good, item]
    with pytest.raises(InvalidInput) as caught:
        parse_model_list(raw)
    assert caught.value.code == "invalid_input"
    [problem] = caught.value.details
    assert problem["field"] == field and words in problem["problem"], problem
    assert caught.value.message.startswith(f"{field}: ")


def test_the_list_inside_a_bigger_model_reports_the_same_paths() -> None:
    class JobInput(BaseModel):
        models: list[ModelRequest] = []

    try:
        JobInput.model_validate({"models": [{"url": "https://h.test/a.pt", "folder": "x"}]})
    except Exception as exc:  # pydantic's ValidationError
        locs = [err["loc"] for err in exc.errors()]  # type: ignore[attr-defined]
        assert locs == [("models", 0, "folder")]
    else:
        pytest.fail("an unknown folder passed")


def test_yaml_configs_have_their_own_extension() -> None:
    [request] = parse_model_list([{"url": "https://h.test/v1.yaml", "folder": "configs"}])
    assert request.name == "v1.yaml"
    with pytest.raises(InvalidInput):
        parse_model_list([{"url": "https://h.test/v1.safetensors", "folder": "configs"}])


# --- property tests: whatever a client sends, a request list or a clear error (issue 22) -----

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                  max_size=4),
    max_leaves=20,
)
_URLISH = st.one_of(
    st.builds(lambda host, path: f"https://{host}/{path}",
              st.sampled_from(["example.com", "xn--zz.example.com", "xn--", "[::1]", "", "a b",
                               "h\u00fcgging.co", "127.0.0.1:99999"]),
              st.sampled_from(["m.safetensors", "x.ckpt", "a/b.pt", "", "..", "%2e%2e/x.pth",
                               "c.yaml", "no_ext", "q.safetensors?sig=1"])),
    st.text(max_size=40),
)
_ITEM = st.one_of(
    st.fixed_dictionaries(
        {"url": _URLISH, "folder": st.sampled_from(["loras", "checkpoints", "configs", "x", ""])},
        optional={"name": st.one_of(st.none(), st.text(max_size=20),
                                    st.sampled_from(["a.safetensors", "../a.pt", ".x.pt"])),
                  "sha256": st.one_of(st.none(), st.text(max_size=70),
                                      st.just("A" * 64), st.just("g" * 64)),
                  "extra": _JSON},
    ),
    _JSON,
)
FUZZ = settings(max_examples=300, deadline=300, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(raw=st.one_of(st.lists(_ITEM, max_size=6), _JSON))
def test_any_models_list_is_requests_or_invalid_input(raw: Any) -> None:
    try:
        requests = parse_model_list(raw)
    except InvalidInput as exc:
        assert exc.details and all(str(d["field"]).startswith("models") for d in exc.details)
        return
    for request in requests:
        assert httpx.URL(request.url).host  # every request can be fetched as it stands
        assert request.file_name and "/" not in request.file_name


@FUZZ
@given(graph=st.dictionaries(
    st.text(max_size=4),
    st.one_of(
        st.fixed_dictionaries({
            "class_type": st.sampled_from(["LoraLoader", "CheckpointLoaderSimple", "VAELoader",
                                           "KSampler"]),
            "inputs": st.one_of(st.dictionaries(
                st.sampled_from(["lora_name", "ckpt_name", "vae_name", "seed"]),
                st.one_of(_URLISH, _JSON), max_size=3), _JSON),
        }),
        _JSON,
    ),
    max_size=6,
))
def test_any_graph_gives_model_requests_named_where_they_are_or_invalid_input(graph: Any) -> None:
    try:
        found = find_graph_models(graph)
    except InvalidInput as exc:
        assert str(exc.details[0]["field"]).startswith("workflow.")
        return
    assert len(found.fields) == len(found.requests)
    assert all(field.startswith("workflow.") for field in found.fields)
    rewritten = rewrite_graph(graph, found, [r.file_name for r in found.requests])
    assert find_graph_models(rewritten).requests == []
