#!/usr/bin/env python3
"""Regenerate the generated parts of conformance/conformance-statement.md.

- Annex A (accepted Storage SOP Classes) from dictionaries/storage-sop-classes.tsv, the table the
  code is compiled from (src/dictionary.rs), between
  `<!-- BEGIN ANNEX A (generated) -->` and `<!-- END ANNEX A -->`.
- Annex C (C-FIND query keys per level) from dictionaries/query-keys.tsv, the table the query
  engine is compiled from (src/query/keys.rs), between
  `<!-- BEGIN ANNEX C (generated) -->` and `<!-- END ANNEX C -->`. The "Matching" column follows
  from each key's VR by the rules of src/query/matching.rs (`ValueKind::from_vr`) and the
  date/time pairs of src/index/find.rs (`combined_pairs`); check_conformance.py checks
  that VR_KIND and COMBINED_PAIRS below still agree with those files.
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
QUERY_KEYS_TSV = ROOT / "dictionaries" / "query-keys.tsv"

ANNEX_A = ("<!-- BEGIN ANNEX A (generated) -->", "<!-- END ANNEX A -->")
ANNEX_C = ("<!-- BEGIN ANNEX C (generated) -->", "<!-- END ANNEX C -->")
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


LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")
KEY_TYPES = {"U": "Unique", "R": "Required", "O": "Optional"}

# ValueKind::from_vr of src/query/matching.rs: which matching rules a VR gets. Every VR not
# listed is "Text". SQ keys are handled apart (sequence matching, src/query/identifier.rs).
VR_KIND = {
    "DA": "Date",
    "TM": "Time",
    "DT": "DateTime",
    "PN": "PersonName",
    "UI": "Uid",
    **{vr: "Number" for vr in ("IS", "DS", "US", "SS", "UL", "SL", "FL", "FD", "UV", "SV")},
}
# combined_pairs of src/index/find.rs: date/time keys matched together as one DT range
# when combined date-time matching is negotiated.
COMBINED_PAIRS = (("StudyDate", "StudyTime"), ("SeriesDate", "SeriesTime"), ("ContentDate", "ContentTime"))

MATCHING = {
    "Uid": "single value, list of UIDs, universal",
    "PersonName": "single value, wildcard, universal — PN rules (4.2.1.7.4)",
    "Date": "single value (whole precision), range, universal",
    "Time": "single value (whole precision), range, universal",
    "DateTime": "single value (whole precision), range, universal",
    "Text": "single value (case-sensitive), wildcard, universal",
    "Number": "single value (numeric), wildcard, universal",
    "Sequence": "sequence matching (one item), universal",
}


class QueryKeyRow:
    def __init__(self, level: str, tag: str, keyword: str, vr: str, key_type: str, line: int):
        self.level, self.tag, self.keyword, self.vr, self.key_type, self.line = level, tag, keyword, vr, key_type, line

    @property
    def tag_text(self) -> str:
        return f"({self.tag[:4]},{self.tag[4:]})"

    @property
    def kind(self) -> str:
        return "Sequence" if self.vr == "SQ" else VR_KIND.get(self.vr, "Text")

    def matching(self) -> str:
        text = MATCHING[self.kind]
        if any(self.keyword in pair for pair in COMBINED_PAIRS):
            text += "; combined date-time (when negotiated)"
        if self.key_type == "U" and self.level != LEVELS[-1]:
            text += "; in queries of a lower level: empty or one value only (4.2.1.7.2)"
        return text


def read_query_keys(path: Path = QUERY_KEYS_TSV) -> list[QueryKeyRow]:
    """Rows of the TSV, read like src/query/keys.rs does (comments start with '#'), but
    strictly: a row that the Rust parser would drop or read as something else is an error here."""
    rows, seen = [], {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        cols = line.split("\t")
        if len(cols) < 5:
            raise ValueError(f"{path.name}:{n}: expected 5 tab-separated columns, got {len(cols)}")
        level, tag, keyword, vr, key_type = cols[0], cols[1], cols[2], cols[3], cols[4].strip()
        if level not in LEVELS:
            raise ValueError(f"{path.name}:{n}: level must be one of {', '.join(LEVELS)}, not {level!r}")
        if not re.fullmatch(r"[0-9A-Fa-f]{8}", tag):
            raise ValueError(f"{path.name}:{n}: tag must be 8 hex digits, not {tag!r}")
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", keyword):
            raise ValueError(f"{path.name}:{n}: bad keyword {keyword!r}")
        if not re.fullmatch(r"[A-Z]{2}", vr):
            raise ValueError(f"{path.name}:{n}: bad VR {vr!r}")
        if key_type not in KEY_TYPES:
            raise ValueError(f"{path.name}:{n}: type must be U, R or O, not {key_type!r}")
        tag = tag.upper()
        if tag in seen:
            raise ValueError(f"{path.name}:{n}: tag {tag} already on line {seen[tag]}")
        seen[tag] = n
        rows.append(QueryKeyRow(level, tag, keyword, vr, key_type, n))
    return rows


def render_annex_c(keys: list[QueryKeyRow]) -> str:
    counts = ", ".join(f"{level} {sum(k.level == level for k in keys)}" for level in LEVELS)
    out = [
        f"{len(keys)} keys ({counts}).",
        "Type: U = Unique, R = Required, O = Optional key (PS3.4 C.6.1.1, C.6.2.1).",
        "**In the Study Root model the PATIENT rows are keys of the STUDY level.**",
        "",
        "| # | Level | Keyword | Tag | VR | Type | Matching supported |",
        "|---:|---|---|---|---|---|---|",
    ]
    for i, k in enumerate(keys, start=1):
        out.append(f"| {i} | {k.level} | {k.keyword} | {k.tag_text} | {k.vr} | {k.key_type} | {md_cell(k.matching())} |")
    return "\n".join(out)


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


def regenerate(document: str, classes: list[StorageClass], query_keys: list[QueryKeyRow] | None = None) -> str:
    document = replace_block(document, ANNEX_A, render_annex_a(classes))
    if query_keys is None:
        query_keys = read_query_keys()
    document = replace_block(document, ANNEX_C, render_annex_c(query_keys))
    # Headings do not live inside generated blocks, so the TOC can be built from the new text.
    return replace_block(document, TOC, render_toc(document))


def main(argv: list[str]) -> int:
    check = "--check" in argv
    current = STATEMENT.read_text(encoding="utf-8")
    updated = regenerate(current, read_storage_classes(), read_query_keys())
    if updated == current:
        print(f"{STATEMENT.relative_to(ROOT)}: generated parts are up to date")
        return 0
    if check:
        print(f"{STATEMENT.relative_to(ROOT)}: generated parts are out of date; run python3 conformance/generate_tables.py")
        return 1
    STATEMENT.write_text(updated, encoding="utf-8")
    print(f"{STATEMENT.relative_to(ROOT)}: Annex A, Annex C and table of contents regenerated")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
