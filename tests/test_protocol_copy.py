"""tests/protocol/ is a copy of the shared recordings; where both exist they must agree.

Recordings this project made since (with a recorder script beside them) live only here, and
each is listed in tests/protocol/README.md."""

from __future__ import annotations

import pytest

from tests.recordings import RECORDINGS, SHARED_ORIGINAL


def test_the_copy_matches_the_shared_recordings() -> None:
    if not SHARED_ORIGINAL.is_dir():
        pytest.skip(f"no shared recordings beside the repository ({SHARED_ORIGINAL})")
    originals = {p.relative_to(SHARED_ORIGINAL): p for p in SHARED_ORIGINAL.rglob("*.json")}
    copies = {p.relative_to(RECORDINGS): p for p in RECORDINGS.rglob("*.json")}
    missing = sorted(str(name) for name in set(originals) - set(copies))
    assert not missing, f"copy the shared recordings into tests/protocol/: {missing}"
    readme = (RECORDINGS / "README.md").read_text()
    unlisted = sorted(str(n) for n in set(copies) - set(originals) if f"`{n}`" not in readme)
    assert not unlisted, f"list the project's own recordings in tests/protocol/README.md: {unlisted}"
    stale = [str(name) for name, path in originals.items() if path.read_bytes() != copies[name].read_bytes()]
    assert not stale, f"tests/protocol/ is stale: {stale}"
