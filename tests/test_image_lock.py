"""docker/requirements.lock: the image's whole Python stack, pinned, for the image's Python.

The lock is made by `uv pip compile` (the command is in the Dockerfile's comment) from three
inputs: the worker's requirements.txt, ComfyUI 0.3.64's requirements (a verbatim copy in
docker/) and docker/torch-requirements.txt. These tests read files only: they check that the
lock still satisfies all three for Python 3.12 on linux x86_64 (so editing an input without
remaking the lock fails here), and that the Dockerfile installs from it.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.test_container import STAGE_BY_NAME, _all_args

REPO = Path(__file__).resolve().parent.parent
DOCKER = REPO / "docker"
LOCK = DOCKER / "requirements.lock"
WORKER_REQUIREMENTS = REPO / "requirements.txt"
TORCH_REQUIREMENTS = DOCKER / "torch-requirements.txt"
COMFYUI_VERSION = _all_args()["COMFYUI_VERSION"]
COMFYUI_REQUIREMENTS = DOCKER / f"comfyui-{COMFYUI_VERSION}-requirements.txt"
IN_IMAGE_LOCK = "/opt/docker/requirements.lock"
# Read at import: conftest clears the worker's settings (COMFYUI_DIR) before each test.
CHECKOUT = os.environ.get("COMFYUI_DIR", "/nonexistent")

# The image's interpreter: Ubuntu 24.04's python3.12 (3.12.3) on linux/amd64. Markers in the
# inputs are evaluated for it, not for whatever runs the tests.
IMAGE_ENV: dict[str, str] = {
    **{key: str(value) for key, value in default_environment().items()},
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "python_version": "3.12",
    "python_full_version": "3.12.3",
    "implementation_version": "3.12.3",
    "os_name": "posix",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
}


def _requirements(path: Path) -> list[Requirement]:
    """A requirements file's requirements; comments, blanks and options are not requirements."""
    found = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split(" #", 1)[0].strip()
        if not line or line.startswith(("#", "-")):
            continue
        found.append(Requirement(line))
    return found


def _lock() -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for raw in LOCK.read_text(encoding="utf-8").splitlines():
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", raw.strip())
        assert match, f"requirements.lock: not an exact pin: {raw!r}"
        name = canonicalize_name(match.group(1))
        assert name not in pins, f"requirements.lock pins {name} twice"
        pins[name] = Version(match.group(2))
    return pins


def _unsatisfied(path: Path) -> list[str]:
    pins = _lock()
    problems = []
    for req in _requirements(path):
        if req.marker is not None and not req.marker.evaluate(IMAGE_ENV):
            continue  # not for the image's Python or platform
        pinned = pins.get(canonicalize_name(req.name))
        if pinned is None:
            problems.append(f"{req} is not in the lock")
        elif not req.specifier.contains(pinned, prereleases=True):
            problems.append(f"{req}: the lock pins {pinned}")
    return problems


def test_lock_pins_every_package_exactly() -> None:
    pins = _lock()
    # The image's whole stack: ComfyUI's direct requirements alone are two dozen.
    assert len(pins) > 50
    for name in ("torch", "numpy", "transformers", "av", "pillow", "pydantic", "runpod"):
        assert name in pins


@pytest.mark.parametrize(
    "inputs",
    [WORKER_REQUIREMENTS, COMFYUI_REQUIREMENTS, TORCH_REQUIREMENTS],
    ids=["worker", "comfyui", "torch"],
)
def test_lock_satisfies_its_inputs(inputs: Path) -> None:
    assert inputs.is_file(), f"{inputs.relative_to(REPO)} is missing"
    assert _requirements(inputs), f"{inputs.relative_to(REPO)} lists nothing"
    assert _unsatisfied(inputs) == [], f"remake docker/requirements.lock ({inputs.name})"


def test_torch_pins_are_exact() -> None:
    # The lock's torch must be the very build the torch layer installs, so the pins are ==.
    pins = {req.name: req for req in _requirements(TORCH_REQUIREMENTS)}
    assert set(pins) == {"torch", "torchvision", "torchaudio"}
    for req in pins.values():
        (spec,) = req.specifier
        assert spec.operator == "==", req


def test_lock_was_made_for_the_image_python_from_the_three_inputs() -> None:
    header = LOCK.read_text(encoding="utf-8").splitlines()[:3]
    command = next(line for line in header if "uv pip compile" in line)
    words = shlex.split(command.lstrip("# "))
    assert words[words.index("--python-version") + 1] == "3.12"
    assert words[words.index("--python-platform") + 1] == "x86_64-unknown-linux-gnu"
    for path in (WORKER_REQUIREMENTS, COMFYUI_REQUIREMENTS, TORCH_REQUIREMENTS):
        assert path.relative_to(REPO).as_posix() in words, f"{path.name} is not an input"
    # ... and the image's interpreter is that Python.
    text = (REPO / "Dockerfile").read_text(encoding="utf-8")
    assert "uv venv --seed --python /usr/bin/python3.12 /opt/venv" in text


def test_comfyui_requirements_copy_is_of_the_cloned_version() -> None:
    # The Dockerfile clones COMFYUI_VERSION and compares its requirements.txt with this copy,
    # so the copy's name and that comparison must follow the build argument.
    assert COMFYUI_REQUIREMENTS.is_file(), f"no docker/{COMFYUI_REQUIREMENTS.name}"
    names = {req.name.lower() for req in _requirements(COMFYUI_REQUIREMENTS)}
    assert {"comfyui-frontend-package", "torch", "transformers", "av"} <= names
    builder = "\n".join(
        rest for keyword, rest in STAGE_BY_NAME["builder"].instructions if keyword == "RUN"
    )
    assert f"cmp -s /comfyui/requirements.txt /opt/docker/{COMFYUI_REQUIREMENTS.name}" in builder


def _builder_runs() -> list[str]:
    return [rest for keyword, rest in STAGE_BY_NAME["builder"].instructions if keyword == "RUN"]


def test_dockerfile_installs_everything_from_the_lock() -> None:
    copies = " ".join(
        rest for keyword, rest in STAGE_BY_NAME["builder"].instructions if keyword == "COPY"
    )
    assert "docker/requirements.lock" in copies
    installs = [run for run in _builder_runs() if f"-r {IN_IMAGE_LOCK}" in run]
    assert len(installs) == 1, "one step installs the lock"
    # Nothing unpinned is installed besides it: the torch layer installs the torch pins (which
    # the lock satisfies), and no step installs ComfyUI's or the worker's lists directly.
    for run in _builder_runs():
        assert "-r /comfyui/requirements.txt" not in run
        assert "worker-requirements" not in run
    assert "uv pip check" in installs[0]


def test_the_torch_step_is_held_to_the_lock_too() -> None:
    """Torch's own dependencies are pinned when torch is installed, not swapped afterwards."""
    (step,) = [run for run in _builder_runs() if "torch-requirements.txt" in run]
    words = step.split()
    constraints = [words[i + 1] for i, word in enumerate(words) if word in ("-c", "--constraint")]
    assert IN_IMAGE_LOCK in constraints
    # The torch index stays the source of torch's own wheels; PyPI only adds versions.
    assert '--index-url "${TORCH_INDEX_URL}"' in step


def test_custom_nodes_are_constrained_by_the_whole_lock() -> None:
    """Item 1: the custom nodes' installer is given the lock, not only the torch pins."""
    (step,) = [run for run in _builder_runs() if "install_custom_nodes.sh" in run]
    pip_install = re.search(r'PIP_INSTALL="([^"]*)"', step)
    assert pip_install, "the custom nodes step sets PIP_INSTALL"
    words = pip_install.group(1).split()
    constraints = [words[i + 1] for i, word in enumerate(words) if word in ("-c", "--constraint")]
    assert IN_IMAGE_LOCK in constraints
    # and the installed set is checked for consistency afterwards
    assert "uv pip check" in step


def test_the_builder_steps_are_found() -> None:
    # The tests above read the builder's RUN steps through test_container's Dockerfile reader;
    # an empty list would make them pass vacuously.
    assert len(_builder_runs()) >= 4


def test_comfyui_requirements_copy_matches_a_real_checkout() -> None:
    """Opt-in: COMFYUI_DIR names a ComfyUI checkout of the pinned version to compare with."""
    comfy_dir = Path(CHECKOUT)
    version_file = comfy_dir / "comfyui_version.py"
    if not version_file.is_file():
        pytest.skip("set COMFYUI_DIR to a ComfyUI checkout")
    if f'"{COMFYUI_VERSION.lstrip("v")}"' not in version_file.read_text(encoding="utf-8"):
        pytest.skip(f"COMFYUI_DIR is not ComfyUI {COMFYUI_VERSION}")
    # Byte for byte, as the Dockerfile's cmp compares them.
    assert (comfy_dir / "requirements.txt").read_bytes() == COMFYUI_REQUIREMENTS.read_bytes()
