"""The documentation: every relative link in README.md, docs/ and bench/ Markdown resolves (the file exists
and, for a ``#anchor`` into a Markdown file, a heading gives that anchor), the README stays a front door,
and the documents say what was measured rather than which goal it was held against."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = sorted([REPO / "README.md", *(REPO / "docs").glob("*.md"), *(REPO / "bench").glob("*.md")])
#: [text](target) and ![alt](target), not inside code spans or fences (removed first)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
CODE = re.compile(r"`[^`\n]*`")


def _text(path: Path) -> str:
    return CODE.sub("", FENCE.sub("", path.read_text()))


def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes, repeats numbered."""
    seen: dict[str, int] = {}
    out = set()
    for line in FENCE.sub("", path.read_text()).splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        slug = re.sub(r"[^\w\- ]", "", m.group(1).lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def _links(path: Path) -> list[str]:
    return [t for t in LINK.findall(_text(path)) if not re.match(r"^[a-z][a-z0-9+.-]*:", t)]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(doc: Path) -> None:
    broken = []
    for target in _links(doc):
        file_part, _, anchor = target.partition("#")
        dest = (doc.parent / file_part).resolve() if file_part else doc
        if not dest.exists():
            broken.append(f"{target}: no {dest.relative_to(REPO) if dest.is_relative_to(REPO) else dest}")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target}: no heading gives #{anchor}")
    assert not broken, f"{doc.relative_to(REPO)}: " + "; ".join(broken)


def test_the_checker_finds_a_broken_link_and_anchor(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text("# Title here\n\n## Second: part (2)\n")
    assert _anchors(tmp_path / "a.md") == {"title-here", "second-part-2"}
    (tmp_path / "b.md").write_text("[x](a.md#second-part-2) `[y](nowhere.md)` [z](https://example.com)\n")
    assert _links(tmp_path / "b.md") == ["a.md#second-part-2"]


def test_readme_is_a_front_door() -> None:
    """Short, the quick start and the layout on the first screen, and `make test` (what .ci/run runs)."""
    text = (REPO / "README.md").read_text()
    lines = text.splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines"
    first_screen = "\n".join(lines[:60])
    assert "make demo" in first_screen and "make test" in first_screen and "## Layout" in first_screen
    assert "make test" in (REPO / ".ci" / "run").read_text()
    linked = {Path(t.partition("#")[0]).name for t in _links(REPO / "README.md")}
    missing = sorted(p.name for p in (REPO / "docs").glob("*.md") if p.name not in linked)
    assert not missing, f"docs the README does not link: {missing}"


#: words of a work log, not of documentation; AWS's own terms (target tracking, PutTargets, ...) and
#: code (``target=``, pip's --target) are not meant
WORK_LOG = re.compile(r"\b(?:issues?|stretch(?: goals?)?|targets?)\b", re.I)
AWS_TERMS = re.compile(r"target tracking|target account|access-log target|per-container target|"
                       r"targets?[-_=]|\w[Tt]argets\b|target 300", re.I)


@pytest.mark.parametrize("doc", [*DOCS, *sorted((REPO / "bench").glob("*.py"))],
                         ids=lambda p: str(p.relative_to(REPO)))
def test_documents_say_what_was_measured_not_against_which_goal(doc: Path) -> None:
    hits = [f"{i}: {line.strip()[:80]}" for i, line in enumerate(doc.read_text().splitlines(), 1)
            if WORK_LOG.search(AWS_TERMS.sub("", CODE.sub("", line)))]
    assert not hits, f"{doc.relative_to(REPO)}: " + "; ".join(hits)
