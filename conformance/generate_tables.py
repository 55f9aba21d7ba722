#!/usr/bin/env python3
"""Regenerate the generated parts of conformance/conformance-statement.md.

- Annex A (accepted Storage SOP Classes) from dictionaries/storage-sop-classes.tsv, the table the
  code is compiled from (src/dictionary.rs), between
  `<!-- BEGIN ANNEX A (generated) -->` and `<!-- END ANNEX A -->`.
- The table of contents from the statement's headings, between
  `<!-- BEGIN TOC (generated) -->` and `<!-- END TOC -->`.

Annex B (transfer syntaxes) stays hand-written: check_conformance.py checks it against the
dicom-transfer-syntax-registry source that MIFAS is built with.

Usage (from anywhere):  python3 conformance/generate_tables.py [--check]
  --check  change nothing; exit 1 if a generated part is out of date.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STATEMENT = ROOT / "conformance" / "conformance-statement.md"
TSV = ROOT / "dictionaries" / "storage-sop-classes.tsv"

ANNEX_A = ("<!-- BEGIN ANNEX A (generated) -->", "<!-- END ANNEX A -->")
TOC = ("<!-- BEGIN TOC (generated) -->", "<!-- END TOC -->")
TOC_LEVELS = range(2, 7)  # "##" to "######"


class StorageClass:
    def __init__(self, uid: str, keyword: str, name: str, retired: bool, line: int):
        self.uid, self.keyword, self.name, self.retired, self.line = uid, keyword, name, retired, line


def read_storage_classes(path: Path = TSV) -> list[StorageClass]:
    """Rows of the TSV, parsed like src/dictionary.rs does (comments start with '#')."""
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        cols = line.split("\t")
        if len(cols) < 4:
            raise ValueError(f"{path.name}:{n}: expected 4 tab-separated columns, got {len(cols)}")
        uid, keyword, name, status = (c.strip() for c in cols[:4])
        if status not in ("current", "retired"):
            raise ValueError(f"{path.name}:{n}: status must be current or retired, not {status!r}")
        rows.append(StorageClass(uid, keyword, name, status == "retired", n))
    return rows


def md_cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_annex_a(classes: list[StorageClass]) -> str:
    retired = sum(c.retired for c in classes)
    out = [
        f"{len(classes)} Storage SOP Classes: {len(classes) - retired} current, {retired} retired.",
        "",
        "| # | SOP Class Name | SOP Class UID | Retired |",
        "|---:|---|---|---|",
    ]
    for i, c in enumerate(classes, start=1):
        out.append(f"| {i} | {md_cell(c.name)} | {c.uid} | {'Yes' if c.retired else 'No'} |")
    return "\n".join(out)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def render_toc(document: str) -> str:
    out, seen = [], {}
    in_fence = False
    for line in document.splitlines():
        if line.startswith("```"):
            in_fence = not in_fence
            continue
        m = re.match(r"^(#{1,6}) (.+?)\s*$", line)
        if in_fence or not m:
            continue
        level, title = len(m.group(1)), m.group(2)
        anchor = slug(title)
        count = seen.get(anchor, 0)
        seen[anchor] = count + 1
        if count:
            anchor = f"{anchor}-{count}"
        if level not in TOC_LEVELS or title.startswith("2 Table of Contents"):
            continue
        out.append(f"{'  ' * (level - 2)}- [{title.replace('`', '')}](#{anchor})")
    return "\n".join(out)


def replace_block(document: str, markers: tuple[str, str], body: str) -> str:
    begin, end = markers
    if document.count(begin) != 1 or document.count(end) != 1:
        raise ValueError(f"the statement must contain {begin!r} and {end!r} exactly once")
    head, rest = document.split(begin, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{begin}\n{body}\n{end}{tail}"


def block(document: str, markers: tuple[str, str]) -> str:
    begin, end = markers
    if document.count(begin) != 1 or document.count(end) != 1:
        raise ValueError(f"the statement must contain {begin!r} and {end!r} exactly once")
    return document.split(begin, 1)[1].split(end, 1)[0]


def regenerate(document: str, classes: list[StorageClass]) -> str:
    document = replace_block(document, ANNEX_A, render_annex_a(classes))
    # Headings do not live inside generated blocks, so the TOC can be built from the new text.
    return replace_block(document, TOC, render_toc(document))


def main(argv: list[str]) -> int:
    check = "--check" in argv
    current = STATEMENT.read_text(encoding="utf-8")
    updated = regenerate(current, read_storage_classes())
    if updated == current:
        print(f"{STATEMENT.relative_to(ROOT)}: generated parts are up to date")
        return 0
    if check:
        print(f"{STATEMENT.relative_to(ROOT)}: generated parts are out of date; run python3 conformance/generate_tables.py")
        return 1
    STATEMENT.write_text(updated, encoding="utf-8")
    print(f"{STATEMENT.relative_to(ROOT)}: Annex A and table of contents regenerated")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
