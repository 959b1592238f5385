"""A job's files: safe names, its own folder, and the graph rewritten to use it."""

from __future__ import annotations

import pytest

from comfy_runtime.comfyui.wire import UploadedFile
from comfy_runtime.job_files import isolate, job_folder, public_subfolder, safe_filename


@pytest.mark.parametrize(
    ("name", "safe"),
    [
        ("photo.png", "photo.png"),
        ("../../etc/passwd", "passwd"),
        ("..\\..\\win.ini", "win.ini"),
        ("/abs/path/x.png", "x.png"),
        ("a\x00b.png", "a_b.png"),
        ("..", "input"),
        ("we ird;name$.png", "we ird_name_.png"),
    ],
)
def test_safe_filename(name: str, safe: str) -> None:
    assert safe_filename(name) == safe


def test_job_folder_is_one_safe_segment() -> None:
    assert job_folder("../../x").startswith("job-x-")
    assert job_folder("x") != job_folder("x")  # a retried job gets a fresh folder
    assert "/" not in job_folder("a/b/c")


def test_inputs_and_outputs_go_to_the_jobs_folder() -> None:
    graph = {"1": {"class_type": "LoadImage", "inputs": {"image": "photo.png", "upload": "image"}},
             "2": {"class_type": "X", "inputs": {"other": "photo.png.bak", "link": ["1", 0]}},
             "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "video/out"}}}
    uploaded = {"photo.png": UploadedFile(name="photo.png", subfolder="job-1", type="input")}
    rewritten = isolate(graph, "job-1", uploaded)
    assert rewritten["1"]["inputs"]["image"] == "job-1/photo.png"
    assert rewritten["2"]["inputs"] == graph["2"]["inputs"]
    assert rewritten["3"]["inputs"]["filename_prefix"] == "job-1/video/out"
    assert graph["1"]["inputs"]["image"] == "photo.png"  # the caller's graph is not changed
    assert public_subfolder("job-1/video", "job-1") == "video"
    assert public_subfolder("job-1", "job-1") == ""
