"""The documentation's links and file names point at files that exist, and the README stays short.

Checked in README.md and every docs/**/*.md: relative Markdown links and images (``[text](path)``,
``![alt](path)``, ``[ref]: path``; #anchors stripped, http(s):// and mailto: left alone), and the
repository paths named in backticks (inline code and fenced blocks) that start with src/, tests/,
configs/, benchmarks/ or docs/, or that are top-level files such as Makefile or pyproject.toml.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

from helpers import REPO

README_MAX_LINES = 300
FORBIDDEN = ("spec.md", "seed 00")  # matched case-insensitively

FENCE = re.compile(r"^(```|~~~)[^\n]*\n.*?^\1[ \t]*$", re.M | re.S)
INLINE_CODE = re.compile(r"(`+)(.+?)\1", re.S)
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^[ \t]{0,3}\[[^\]]+\]:[ \t]*<?(\S+?)>?(?:[ \t]+\"[^\"]*\")?[ \t]*$", re.M)
REPO_PATH = re.compile(r"(?<![\w./$~-])((?:src|tests|configs|benchmarks|docs)/[\w./*-]*)")
TOP_LEVEL_FILES = ("Makefile", "pyproject.toml", "README.md", "LICENSE", "CITATION.cff", ".ci/run", ".gitignore")
TOP_LEVEL = re.compile(r"(?<![\w./-])(" + "|".join(re.escape(n) for n in TOP_LEVEL_FILES) + r")(?![\w.-]*\w)")
EXTERNAL = ("http://", "https://", "mailto:")


def markdown_files() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]


def split_code(text: str) -> tuple[str, list[str]]:
    """The prose of a Markdown text (code blanked out) and its code: fenced blocks and inline spans."""
    code = [m.group(0) for m in FENCE.finditer(text)]
    prose = FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)
    code += [m.group(2) for m in INLINE_CODE.finditer(prose)]
    prose = INLINE_CODE.sub(" ", prose)
    return prose, code


def link_targets(text: str) -> list[str]:
    """Targets of the inline, image and reference links outside code."""
    prose, _ = split_code(text)
    return [m.group(1) for m in INLINE_LINK.finditer(prose)] + [m.group(1) for m in REFERENCE_LINK.finditer(prose)]


def broken_links(md: Path, text: str) -> list[str]:
    broken = []
    for target in link_targets(text):
        if target.startswith(EXTERNAL) or target.startswith("#"):
            continue
        path = unquote(target.split("#", 1)[0].split("?", 1)[0])
        resolved = REPO / path.lstrip("/") if path.startswith("/") else md.parent / path
        if not resolved.exists():
            broken.append(f"{md.relative_to(REPO)}: link ({target}) -> {path} does not exist")
    return broken


def repo_paths(text: str) -> list[str]:
    """Repository paths named in code (inline spans and fenced blocks)."""
    _, code = split_code(text)
    found = []
    for chunk in code:
        found += [m.group(1).rstrip(".") for m in REPO_PATH.finditer(chunk)]
        found += [m.group(1) for m in TOP_LEVEL.finditer(chunk)]
    return found


def missing_paths(md: Path, text: str) -> list[str]:
    missing = []
    for name in repo_paths(text):
        exists = any(REPO.glob(name)) if any(c in name for c in "*?[") else (REPO / name).exists()
        if not exists:
            missing.append(f"{md.relative_to(REPO)}: `{name}` does not exist in the repository")
    return missing


def test_the_checks_find_what_is_broken_in_a_text_built_by_hand():
    md = REPO / "docs" / "example.md"  # never written: only its folder is used to resolve links
    text = (
        "See [design](design.md), ![figure](selectivity_mean_ds_meter_xxs_nyu.png), [gone](nowhere.md#part),\n"
        "[anchor](#local), [web](https://example.org/x.md), [mail](mailto:a@b.c) and [up](../Makefile).\n"
        "[ref]: missing_ref.md\n"
        "Code: `src/seldepth/cli.py`, `src/seldepth/nothing.py`, `configs/experiments/*.yaml`, `Makefile`,\n"
        "`runs/x/config.yaml` (not a repository path), `LICENSE`.\n"
        "```bash\nseldepth train --config configs/missing.yaml\n```\n"
        "A link inside code is not a link: `[x](absent.md)`.\n"
    )
    links = broken_links(md, text)
    assert [line.split(" -> ")[1].split()[0] for line in links] == ["nowhere.md", "missing_ref.md"], links
    paths = missing_paths(md, text)
    names = [line.split("`")[1] for line in paths]
    assert "src/seldepth/nothing.py" in names and "configs/missing.yaml" in names
    assert "src/seldepth/cli.py" not in names and "configs/experiments/*.yaml" not in names and "Makefile" not in names
    assert not any(n.startswith("runs/") for n in names)
    assert ("LICENSE" in names) == (not (REPO / "LICENSE").exists())


def test_the_docs_exist():
    files = markdown_files()
    assert (REPO / "README.md").exists()
    assert len(files) > 5, [str(f) for f in files]


def test_every_relative_link_and_image_points_to_a_file():
    broken = [line for md in markdown_files() for line in broken_links(md, md.read_text(encoding="utf-8"))]
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_every_repository_path_in_backticks_exists():
    missing = [line for md in markdown_files() for line in missing_paths(md, md.read_text(encoding="utf-8"))]
    assert not missing, "paths that do not exist:\n" + "\n".join(missing)


def test_the_readme_is_at_most_300_lines():
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines (at most {README_MAX_LINES})"


def test_no_internal_notes_are_cited():
    hits = []
    for md in markdown_files():
        for number, line in enumerate(md.read_text(encoding="utf-8").splitlines(), 1):
            hits += [f"{md.relative_to(REPO)}:{number}: {word!r} in {line.strip()[:100]!r}"
                     for word in FORBIDDEN if word in line.lower()]
    assert not hits, "cite the paper (docs/references.md) or say what the thing is:\n" + "\n".join(hits)
