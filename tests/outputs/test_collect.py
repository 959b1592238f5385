"""Every recorded output shape lands in the right group."""

from __future__ import annotations

from typing import Any

import pytest

from comfy_runtime.comfyui.wire import HistoryEntry
from comfy_runtime.outputs.collect import collect_outputs, guess_mime
from tests.recordings import history_entry, recording


def _summary_history(case: str) -> dict[str, dict[str, Any]]:
    return HistoryEntry(outputs=recording("nonimage_summary.json")[case]["outputs"]).outputs


@pytest.mark.parametrize(
    ("case", "kind", "animated"),
    [
        ("SaveAnimatedWEBP", "images", True),
        ("SaveAnimatedPNG", "images", True),
        ("CreateVideo_SaveVideo", "videos", True),
        ("SaveWEBM", "videos", True),
        ("EmptyAudio_SaveAudio", "audio", False),
        ("EmptyAudio_SaveAudioMP3", "audio", False),
        ("SaveLatent", "files", False),
    ],
)
def test_recorded_file_outputs_are_grouped_by_what_they_are(case: str, kind: str, animated: bool) -> None:
    refs, texts = collect_outputs(_summary_history(case), include_previews=False)
    (ref,) = refs
    assert (ref.kind, ref.animated, texts) == (kind, animated, [])
    view = recording("nonimage_summary.json")[case]["view"][0]
    assert f"filename={ref.filename}&subfolder={ref.subfolder}&type={ref.folder_type}" == view["query"]


def test_recorded_mime_types_match_our_guess() -> None:
    for case, data in recording("nonimage_summary.json").items():
        for view in data.get("view", []):
            filename = view["query"].split("&")[0].removeprefix("filename=")
            if view["content_type"] != "application/octet-stream":
                assert guess_mime(filename) == view["content_type"], case


def test_text_outputs() -> None:
    refs, texts = collect_outputs(_summary_history("PreviewAny_text"), include_previews=False)
    assert refs == []
    assert [(t.node_id, t.text) for t in texts] == [("3", "hello world")]


def test_previews_only_when_asked() -> None:
    history = HistoryEntry.model_validate(history_entry("prompt_preview.json"))
    without, _ = collect_outputs(history.outputs, include_previews=False)
    with_previews, _ = collect_outputs(history.outputs, include_previews=True)
    assert [r.folder_type for r in without] == ["output"]
    assert sorted(r.folder_type for r in with_previews) == ["output", "temp"]


def test_subfolder_is_kept() -> None:
    history = HistoryEntry.model_validate(history_entry("prompt_subfolder.json"))
    (ref,), _ = collect_outputs(history.outputs, include_previews=False)
    assert (ref.filename, ref.subfolder) == ("peer_sub_00001_.png", "sub")
