"""The documentation's pages hold together: every relative link between them points at a file
that exists, and every `#anchor` at a heading of the page it names (GitHub's slugs)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from comfy_runtime.settings import REPO_ROOT


def _pages() -> list[Path]:
    named = ["README.md", "examples/README.md", ".runpod/README.md", "CHANGELOG.md"]
    return [REPO_ROOT / name for name in named] + sorted((REPO_ROOT / "docs").glob("*.md"))


def _prose(text: str) -> list[str]:
    """The page's lines outside fenced code blocks (``` or ~~~)."""
    lines, fence = [], ""
    for line in text.splitlines():
        marker = re.match(r"^ {0,3}(`{3,}|~{3,})", line)
        if marker and (not fence or marker.group(1).startswith(fence)):
            fence = "" if fence else marker.group(1)
        elif not fence:
            lines.append(line)
    return lines


def links(text: str) -> list[str]:
    """Every link target in the page's prose: inline `[text](target)` and `[label]: target`."""
    found: list[str] = []
    for line in _prose(text):
        line = re.sub(r"(`+).*?\1", "", line)  # code spans are not links
        found += re.findall(r"\]\(\s*<?([^()\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", line)
        found += re.findall(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", line)
    return found


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup and punctuation dropped (hyphens and underscores
    kept), lower case, spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every anchor a page offers: its headings' slugs (a repeated one gets -1, -2, ...), and
    any `<a name=...>` or `id=...` in its HTML."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for line in _prose(text):
        heading = re.match(r"^ {0,3}#{1,6}\s+(.*?)(?:\s+#+)?\s*$", line)
        if heading:
            base = slug(heading.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
        found.update(re.findall(r"<a\s[^>]*(?:name|id)=\"([^\"]+)\"", line))
    return found


def broken_links(page: Path) -> list[str]:
    """The page's relative links whose file does not exist, or whose anchor is no heading."""
    broken: list[str] = []
    for target in links(page.read_text(encoding="utf-8")):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, flags=re.IGNORECASE):
            continue  # http:, https:, mailto:: not a page of ours
        path_part, _, anchor = target.partition("#")
        linked = (page.parent / path_part).resolve() if path_part else page
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.is_file() and linked.suffix == ".md":
            if anchor not in anchors(linked.read_text(encoding="utf-8")):
                broken.append(f"{target}: no heading with that anchor in {linked.name}")
        elif anchor and not linked.is_file():
            broken.append(f"{target}: an anchor into a folder")
    return broken


@pytest.mark.parametrize("page", _pages(), ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_every_relative_link_reaches_its_file_and_heading(page: Path) -> None:
    assert page.exists(), f"{page} is gone: update the list of pages in this test"
    assert broken_links(page) == []


def test_the_pages_link_to_each_other() -> None:
    # Guards the test above from passing on pages with no links at all.
    readme = links((REPO_ROOT / "README.md").read_text(encoding="utf-8"))
    for page in ("docs/job.md", "docs/configuration.md", "docs/deployment.md",
                 "docs/security.md", "docs/development.md"):
        assert page in readme, f"the README does not link to {page}"
    assert any("#" in target for page in _pages() for target in links(page.read_text()))


def test_the_checker_sees_a_broken_file_and_a_broken_anchor(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other page\n\n## Where, and why?\n\n## Where, and why?\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n## A `code` heading\n\n"
        "[ok](other.md#where-and-why) [ok](other.md#where-and-why-1) [ok](#a-code-heading)\n"
        "[gone](missing.md) [bad](other.md#nowhere) [bad](#where-and-why)\n"
        "`[not a link](missing-too.md)`\n\n```\n[in code](missing-three.md)\n```\n"
    )
    assert broken_links(page) == [
        "missing.md: no such file",
        "other.md#nowhere: no heading with that anchor in other.md",
        "#where-and-why: no heading with that anchor in page.md",
    ]


# A test or benchmark a page names as the check behind a claim: `tests/x/test_y.py`,
# optionally `::test_name` (parametrised ids and `::`-chained neighbours included), or
# `bench/z.py`.
CITATION = re.compile(r"(?<![\w/])((?:tests|bench)/[\w/]+\.py)((?:::[\w]+)*)")


def _citations() -> list[tuple[str, str, str]]:
    pages = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
    return [
        (page.name, match.group(1), match.group(2))
        for page in pages
        for match in CITATION.finditer(page.read_text())
    ]


def test_every_test_and_benchmark_the_pages_cite_exists() -> None:
    citations = _citations()
    assert len(citations) > 50, "the pages should cite the checks behind their claims"
    missing: list[str] = []
    for page, path, names in citations:
        target = REPO_ROOT / path
        if not target.is_file():
            missing.append(f"{page}: {path}")
            continue
        defined = set(re.findall(r"^(?:async )?def (\w+)", target.read_text(), flags=re.M))
        for name in filter(None, names.split("::")):
            if name not in defined:
                missing.append(f"{page}: {path}::{name}")
    assert missing == []
