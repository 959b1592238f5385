"""Which recorded frontend the converter follows for the frontend a ComfyUI pins.

ComfyUI serves its own frontend (`comfyui-frontend-package`) and `/system_stats` names the
version it requires (`system.required_frontend_version`; ComfyUIs older than that field ship
1.27-era frontends). What an editor workflow means is what that frontend queues, and
frontends differ: the converter reproduces each version in `RECORDED`, checked against that
version's own conversions (`tests/ui_format/recordings*`): 1.27.10 (ComfyUI 0.3.64), 1.48.7
(ComfyUI 0.33.0's release) and 1.49.6 (what ComfyUI's master pins after it), the last two alike. Any other version is converted as
the nearest recorded one, and the caller is told it was not recorded.

    choose(version)        -> FrontendChoice(version followed, version asked for, recorded?)
    widget_types(follows)  -> (input types that are widgets, those the browser fills in)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

LEGACY = "1.27.10"
"""The frontend of ComfyUI 0.3.64, and what a ComfyUI that names none is taken to serve."""
RECORDED = (LEGACY, "1.48.7", "1.49.6")
"""Frontend versions the converter was recorded against, oldest first."""

_VERSION = re.compile(r"^\s*v?(\d{1,6})\.(\d{1,6})\.(\d{1,6})")


@dataclass(frozen=True)
class FrontendChoice:
    """The frontend behaviour followed (`follows`), for the one asked for (`asked`)."""

    follows: str
    asked: str | None
    recorded: bool

    def note(self) -> str | None:
        """What to tell the user when the asked version was never recorded, else None."""
        if self.recorded:
            return None
        asked = f"frontend {self.asked}" if self.asked else "a frontend of unknown version"
        return (f"ComfyUI serves {asked}, which the editor-format converter was never "
                f"recorded against; converted as frontend {self.follows} does, the nearest "
                "recorded version")


def version_key(version: str) -> tuple[int, int, int] | None:
    """(major, minor, patch) of a version text, or None when it is not one."""
    found = _VERSION.match(version)
    return None if found is None else (int(found[1]), int(found[2]), int(found[3]))


def choose(version: str | None) -> FrontendChoice:
    """The recorded frontend to follow for `version` (None: a ComfyUI that names none, so
    the frontend it ships is the legacy one's generation)."""
    if version is None:
        return FrontendChoice(LEGACY, None, True)
    version = version.strip()
    if version in RECORDED:
        return FrontendChoice(version, version, True)
    key = version_key(version)
    if key is None:
        return FrontendChoice(RECORDED[-1], version, False)
    # Nearest by (major, minor) distance, then patch; ties go to the older behaviour.
    recorded = [(v, version_key(v)) for v in RECORDED]
    best = min(recorded, key=lambda item: (
        abs((item[1][0] - key[0]) * 1000 + item[1][1] - key[1]), abs(item[1][2] - key[2]),
        item[1]) if item[1] else (10**9, 0, (0, 0, 0)))
    return FrontendChoice(best[0], version, False)


_VALUE_WIDGETS = frozenset({"INT", "FLOAT", "BOOLEAN", "STRING", "COMBO"})
_UPLOAD_WIDGETS = frozenset({"IMAGEUPLOAD", "AUDIOUPLOAD"})
# Widget types whose value the frontend computes in the browser (canvas, camera, 3D scene,
# microphone, DOM editors): the converter cannot know it, so nodes using them are refused.
_LEGACY_BROWSER_WIDGETS = frozenset({
    "MARKDOWN", "FILEUPLOAD", "COLOR", "IMAGECOMPARE", "TREESELECT", "MULTISELECT", "CHART",
    "GALLERIA", "SELECTBUTTON", "TEXTAREA", "LOAD_3D", "LOAD_3D_ANIMATION",
    "WEBCAM",
})
_LEGACY_WIDGETS = _LEGACY_BROWSER_WIDGETS | _VALUE_WIDGETS | _UPLOAD_WIDGETS | {
    "AUDIO_UI", "AUDIO_RECORD", "PREVIEW_3D", "PREVIEW_3D_ANIMATION"}
# 1.48.7's widget registry (`app.widgets` in its page); every other input type is a socket.
_NEWER_BROWSER_WIDGETS = frozenset({
    "WEBCAM", "LOAD_3D", "LOAD_3D_ADVANCED", "MARKDOWN", "BOUNDING_BOX", "CHART", "GALLERIA",
    "TEXTAREA", "RANGE",
})
SAVED_VALUE_WIDGETS = frozenset({
    "COLOR", "CURVE", "COMPOSITOR", "PAINTER", "BOUNDING_BOXES", "COLORS"})
"""Editor widgets of 1.48.7 that queue the value saved with the workflow, as recorded."""
_NEWER_WIDGETS = _NEWER_BROWSER_WIDGETS | _VALUE_WIDGETS | _UPLOAD_WIDGETS \
    | SAVED_VALUE_WIDGETS | {"AUDIO_UI", "AUDIO_RECORD", "PREVIEW_3D", "IMAGECOMPARE"}


def widget_types(follows: str) -> tuple[frozenset[str], frozenset[str]]:
    """(input types the frontend makes widgets of, those whose value the browser computes)."""
    if is_legacy(follows):
        return _LEGACY_WIDGETS, _LEGACY_BROWSER_WIDGETS
    return _NEWER_WIDGETS, _NEWER_BROWSER_WIDGETS


def is_legacy(follows: str) -> bool:
    """Whether `follows` is the 1.27 generation (widgets as 0.3.64's frontend made them)."""
    return follows == LEGACY
