"""The worker's release version: the one place it is written by hand.

pyproject.toml repeats it (tests/test_hub.py checks they agree), CHANGELOG.md has a section per
release, and images are tagged `<version>-<model set>` (e.g. `0.1.0-sd15`) and `<version>-base`.
"""

__version__ = "0.1.0"
