#!/usr/bin/env python3
"""Check conformance/conformance-statement.md against the tables and constants the code uses.

Run from the repository root:  python3 conformance/check_conformance.py
Exit code 0 when everything agrees, 1 when something differs (each difference is printed).

Checks:
  1. The generated parts (Annex A, Annex C, table of contents) are up to date
     (generate_tables.py --check).
  2. Annex A holds exactly the SOP Class UIDs of dictionaries/storage-sop-classes.tsv, with the
     same names and retired flags.
  3. The C-STORE status table holds exactly the `Status(0x....)` constants of src/dimse/status.rs.
  4. The configuration table lists every key of mifas.example.toml with its value there as the
     default (among them dicom.*, query.*, retrieve.*), and every "`value` by default (`key`)" /
     "`key` (`value` by default" phrase agrees with mifas.example.toml. Keys the example cannot
     show (fields of [[dicom.allowed_calling]] / [[remote_ae]] entries) must be fields of
     src/config/*.rs; their default is '—', or the literal their `#[serde(default = "f")]` returns.
  5. MIFAS's Implementation Class UID and Version Name (src/archive/spool.rs, Cargo.toml) appear.
  6. docker/mifas.toml parses and sets only keys of mifas.example.toml, with values of the same type.
  7. With cargo and the dicom-rs sources available (`cargo metadata`): the Implementation Class
     UID / Version Name that dicom-ul puts in the A-ASSOCIATE-AC appear, and Annex B lists exactly
     the transfer syntaxes whose data sets dicom-transfer-syntax-registry can read with the Cargo
     features MIFAS is built with. Without cargo these two checks are skipped (reported as SKIP).
  8. Annex C lists exactly the rows of dictionaries/query-keys.tsv (level, keyword, tag, VR, type,
     in order), and the VR -> matching rules and combined date-time pairs that generate_tables.py
     uses for its "Matching supported" column agree with src/query/matching.rs
     (`ValueKind::from_vr`) and src/index/find.rs (`combined_pairs`).
  9. The C-FIND status table holds exactly the `Status(0x....)` constants of src/dimse/c_find.rs plus
     the `Status::NAME` constants of src/dimse/status.rs that the C-FIND handler (`handle` in
     src/dimse/c_find.rs) uses (Success, SOP Class not supported); the 0xA700 Error Comment
     quoted in the statement is the one the handler formats, for the default query.max_results.
 10. The SOP class table lists every SOP class of `FIND_SOP_CLASSES` (src/dimse/c_find.rs) and of
     `MOVE_SOP_CLASSES` and `GET_SOP_CLASSES` (src/dimse/retrieve.rs) as SCP "Yes", and no other
     Query/Retrieve SOP class (1.2.840.10008.5.1.4.1.2.*) as SCP "Yes". The UIDs behind `uids::NAME`
     come from dicom-dictionary-std when cargo is available, else from a short built-in list
     (reported).
 12. The N-ACTION status table (Storage Commitment) holds exactly the `Status(0x....)` constants of
     src/dimse/stgcmt/n_action.rs plus the `Status::NAME` constants it uses outside its tests, and
     the Failure Reason table holds exactly the `failure_reason` constants of
     src/archive/commitment.rs.
 13. DICOMweb: the resource table of section 4.5.1 (`| Method | Resource | Section |`, resources
     relative to /dicom-web) lists exactly the routes registered in src/web/dicomweb/*.rs
     (`.route("/path", get(..).post(..))`; path parameters compare by position, not by name), and
     each row's section is a 4.5.x heading of the statement; the STOW-RS Failure Reason table of
     section 4.5.6 holds exactly the `pub const NAME: u16 = 0x....;` constants of
     src/web/dicomweb/stow_response.rs.
 11. The C-MOVE/C-GET status table holds exactly the `Status(0x....)` constants of
     src/dimse/retrieve.rs plus the `Status::NAME` constants of src/dimse/status.rs that the retrieve
     code uses: src/dimse/retrieve.rs outside its tests (Success, and its shared request checks) and
     the C-MOVE/C-GET handlers (`handle` in src/dimse/c_move.rs and src/dimse/c_get.rs; SOP Class
     not supported).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ in conformance/
sys.path.insert(0, str(Path(__file__).resolve().parent))
import generate_tables as gen  # noqa: E402

ROOT = gen.ROOT
STATUS_RS = ROOT / "src" / "dimse" / "status.rs"
C_FIND_RS = ROOT / "src" / "dimse" / "c_find.rs"
RETRIEVE_RS = ROOT / "src" / "dimse" / "retrieve.rs"
C_MOVE_RS = ROOT / "src" / "dimse" / "c_move.rs"
C_GET_RS = ROOT / "src" / "dimse" / "c_get.rs"
MATCHING_RS = ROOT / "src" / "query" / "matching.rs"
EXECUTE_RS = ROOT / "src" / "index" / "find.rs"
SPOOL_RS = ROOT / "src" / "archive" / "spool.rs"
CONFIG_RS = ROOT / "src" / "config" / "mod.rs"
N_ACTION_RS = ROOT / "src" / "dimse" / "stgcmt" / "n_action.rs"
COMMITMENT_RS = ROOT / "src" / "archive" / "commitment.rs"
EXAMPLE_TOML = ROOT / "mifas.example.toml"
DOCKER_TOML = ROOT / "docker" / "mifas.toml"
CARGO_TOML = ROOT / "Cargo.toml"
DICOMWEB_DIR = ROOT / "src" / "web" / "dicomweb"
STOW_RS = DICOMWEB_DIR / "stow_response.rs"

STATUS_TABLE = ("<!-- BEGIN STATUS TABLE (checked against src/dimse/status.rs) -->", "<!-- END STATUS TABLE -->")
CONFIG_TABLE = ("<!-- BEGIN CONFIG TABLE (checked against mifas.example.toml) -->", "<!-- END CONFIG TABLE -->")
ANNEX_B = ("<!-- BEGIN ANNEX B (checked against dicom-transfer-syntax-registry) -->", "<!-- END ANNEX B -->")
FIND_STATUS_TABLE = ("<!-- BEGIN C-FIND STATUS TABLE (checked against src/dimse/c_find.rs) -->", "<!-- END C-FIND STATUS TABLE -->")
RETRIEVE_STATUS_TABLE = ("<!-- BEGIN C-MOVE/C-GET STATUS TABLE (checked against src/dimse/retrieve.rs) -->", "<!-- END C-MOVE/C-GET STATUS TABLE -->")
N_ACTION_STATUS_TABLE = ("<!-- BEGIN N-ACTION STATUS TABLE (checked against src/dimse/stgcmt/n_action.rs) -->", "<!-- END N-ACTION STATUS TABLE -->")
FAILURE_REASON_TABLE = ("<!-- BEGIN FAILURE REASON TABLE (checked against src/archive/commitment.rs) -->", "<!-- END FAILURE REASON TABLE -->")
DICOMWEB_TABLE = ("<!-- BEGIN DICOMWEB RESOURCE TABLE (checked against src/web/dicomweb/*.rs) -->", "<!-- END DICOMWEB RESOURCE TABLE -->")
STOW_REASON_TABLE = ("<!-- BEGIN STOW FAILURE REASON TABLE (checked against src/web/dicomweb/stow_response.rs) -->", "<!-- END STOW FAILURE REASON TABLE -->")
SOP_CLASS_TABLE = ("<!-- BEGIN SOP CLASS TABLE (Query/Retrieve rows checked against src/dimse/c_find.rs and src/dimse/retrieve.rs) -->", "<!-- END SOP CLASS TABLE -->")
# The functions of src/dimse/association.rs that answer C-MOVE and C-GET requests.
RETRIEVE_HANDLERS = ((C_MOVE_RS, "pub(crate) async fn handle("),
                     (C_GET_RS, "pub(crate) async fn handle("))
QR_UID_PREFIX = "1.2.840.10008.5.1.4.1.2."

# Used only when cargo (and so dicom-dictionary-std's uids.rs) is not available.
KNOWN_UIDS = {
    "PATIENT_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_FIND": "1.2.840.10008.5.1.4.1.2.1.1",
    "STUDY_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_FIND": "1.2.840.10008.5.1.4.1.2.2.1",
    "PATIENT_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_MOVE": "1.2.840.10008.5.1.4.1.2.1.2",
    "STUDY_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_MOVE": "1.2.840.10008.5.1.4.1.2.2.2",
    "PATIENT_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_GET": "1.2.840.10008.5.1.4.1.2.1.3",
    "STUDY_ROOT_QUERY_RETRIEVE_INFORMATION_MODEL_GET": "1.2.840.10008.5.1.4.1.2.2.3",
}

UID_RE = r"[0-9]+(?:\.[0-9]+)+"
KEY_RE = r"[a-z_]+(?:\.[a-z0-9_]+)+"


class Report:
    def __init__(self) -> None:
        self.failures = 0

    def ok(self, what: str) -> None:
        print(f"OK    {what}")

    def fail(self, what: str, details: list[str] | None = None) -> None:
        self.failures += 1
        print(f"FAIL  {what}")
        for line in details or []:
            print(f"        {line}")

    def skip(self, what: str) -> None:
        print(f"SKIP  {what}")


def table_rows(text: str) -> list[list[str]]:
    """Cells of the body rows of the Markdown tables in `text` (header and rule rows dropped)."""
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("|"):
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip("|"))]
        if all(re.fullmatch(r":?-+:?", c) for c in cells):
            rows.pop()  # the header row precedes the rule
        else:
            rows.append(cells)
    return rows


def without_comments(text: str) -> str:
    """`text` with HTML comments blanked out, keeping line numbers."""
    return re.sub(r"<!--.*?-->", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)


# 1 + 2 ------------------------------------------------------------------------------------------

def check_generated(doc: str, classes: list[gen.StorageClass], keys: list[gen.QueryKeyRow], report: Report) -> None:
    if gen.regenerate(doc, classes, keys) == doc:
        report.ok("generated parts (Annex A, Annex C, table of contents) are up to date")
    else:
        report.fail("generated parts are out of date", ["run: python3 conformance/generate_tables.py"])


def check_annex_a(doc: str, classes: list[gen.StorageClass], report: Report) -> None:
    rows = table_rows(gen.block(doc, gen.ANNEX_A))
    in_doc = {}
    for cells in rows:
        if len(cells) == 4 and re.fullmatch(UID_RE, cells[2]):
            in_doc[cells[2]] = (cells[1].replace("\\|", "|"), cells[3] == "Yes")
    in_tsv = {c.uid: (c.name, c.retired) for c in classes}
    problems = [f"in the TSV, not in Annex A: {u}" for u in sorted(in_tsv.keys() - in_doc.keys())]
    problems += [f"in Annex A, not in the TSV: {u}" for u in sorted(in_doc.keys() - in_tsv.keys())]
    problems += [
        f"{u}: Annex A says {in_doc[u]}, the TSV says {in_tsv[u]}"
        for u in sorted(in_doc.keys() & in_tsv.keys())
        if in_doc[u] != in_tsv[u]
    ]
    if len(rows) != len(in_doc):
        problems.append(f"Annex A has {len(rows)} rows but {len(in_doc)} distinct UIDs")
    if problems:
        report.fail("Annex A differs from dictionaries/storage-sop-classes.tsv", problems)
    else:
        report.ok(f"Annex A lists the {len(in_tsv)} SOP classes of dictionaries/storage-sop-classes.tsv")


# 3 ----------------------------------------------------------------------------------------------

def status_constants(path: Path) -> dict[int, str]:
    """code -> name of the `pub const NAME: Status = Status(0x....);` lines of a Rust file."""
    source = path.read_text(encoding="utf-8")
    return {
        int(code, 16): name
        for name, code in re.findall(r"pub const (\w+): Status = Status\((0x[0-9A-Fa-f]{1,4})\);", source)
    }


def check_statuses(doc: str, report: Report) -> None:
    constants = status_constants(STATUS_RS)
    documented = []
    for cells in table_rows(gen.block(doc, STATUS_TABLE)):
        m = re.fullmatch(r"0x([0-9A-Fa-f]{4})", cells[0])
        if not m:
            report.fail("status table row without a 0xNNNN code", [" | ".join(cells)])
            continue
        documented.append(int(m.group(1), 16))
    problems = [
        f"0x{c:04X} ({constants[c]}) is a constant in src/dimse/status.rs but not in the status table"
        for c in sorted(constants.keys() - set(documented))
    ]
    problems += [
        f"0x{c:04X} is in the status table but not a Status constant in src/dimse/status.rs"
        for c in sorted(set(documented) - constants.keys())
    ]
    problems += [f"0x{c:04X} appears twice in the status table" for c in sorted({c for c in documented if documented.count(c) > 1})]
    if not constants:
        problems.append("no `Status(0x....)` constants found in src/dimse/status.rs")
    if problems:
        report.fail("C-STORE status table differs from src/dimse/status.rs", problems)
    else:
        codes = ", ".join(f"0x{c:04X}" for c in documented)
        report.ok(f"status table = the {len(constants)} Status constants of src/dimse/status.rs ({codes})")


# 4 ----------------------------------------------------------------------------------------------

def flatten(table: dict, prefix: str = "") -> dict[str, object]:
    out = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def toml_value(literal: str) -> object:
    return tomllib.loads(f"v = {literal}")["v"]


def config_field_default(config_rs: str, key: str) -> object:
    """The serde default of the config field `section.field` (src/config/*.rs), for keys that
    mifas.example.toml cannot show (fields of array-of-tables entries such as [[remote_ae]]).
    Returns the literal value of `#[serde(default = "f")]` when f's body is a bool, integer or
    string literal, None when the field has no such default (required, or a type default).
    Raises ValueError when there is no such field."""
    # `a.b.c`: field c of the struct that field b of the struct of field a has (tables nest:
    # dicom.tls.cert is DicomConfig.tls: DicomTlsConfig, field cert).
    *path, field = key.split(".")
    config = re.search(r"pub struct Config \{(.*?)\n\}", config_rs, re.S)
    body, struct = config, "Config"
    for segment in path:
        sec = body and re.search(rf"\bpub {re.escape(segment)}:\s*(?:Vec<|Option<)?(\w+)>?,", body.group(1))
        if not sec:
            raise ValueError(f"{segment!r} is not a field of `struct {struct}` in src/config/")
        struct = sec.group(1)
        body = re.search(rf"pub struct {struct} \{{(.*?)\n\}}", config_rs, re.S)
        if not body:
            raise ValueError(f"`struct {struct}` not found in src/config/")
    m = re.search(rf"((?:\s*(?:///[^\n]*|#\[[^\n]*\]))*)\s*pub {re.escape(field)}:", body.group(1))
    if not m:
        raise ValueError(f"no field {field!r} in `struct {struct}` of src/config/")
    fn = re.search(r'#\[serde\([^\]]*default\s*=\s*"(\w+)"', m.group(1))
    if not fn:
        return None
    f = re.search(rf"fn {fn.group(1)}\(\)\s*->\s*\w+\s*\{{\s*([^{{}};]+?)\s*\}}", config_rs)
    if not f:
        return None
    try:
        return toml_value(f.group(1).replace(".to_string()", "").replace(".into()", ""))
    except tomllib.TOMLDecodeError:
        return None


def check_defaults(doc: str, report: Report) -> None:
    example = flatten(tomllib.loads(EXAMPLE_TOML.read_text(encoding="utf-8")))
    config_rs = "\n".join(p.read_text(encoding="utf-8") for p in sorted(CONFIG_RS.parent.glob("*.rs")))
    problems, seen = [], set()
    for cells in table_rows(gen.block(doc, CONFIG_TABLE)):
        m = re.fullmatch(rf"`({KEY_RE})`", cells[0])
        if not m or len(cells) < 3:
            problems.append(f"config table row not of the form | `section.key` | `default` | meaning |: {' | '.join(cells)}")
            continue
        key, default = m.group(1), cells[1]
        seen.add(key)
        if key not in example:
            # Documented keys without a value in the example (the allow-list, the fields of
            # [[remote_ae]] entries) must be fields of structs in src/config/. Their default cell is '—',
            # or, for a field with `#[serde(default = "f")]` where f returns a literal, that literal.
            try:
                code_default = config_field_default(config_rs, key)
            except ValueError as e:
                problems.append(f"{key}: not in mifas.example.toml and {e}")
                continue
            if code_default is None:
                if default not in ("—", "-"):
                    problems.append(f"{key}: not set in mifas.example.toml and without a literal serde default "
                                    "in src/config/, so the table's default must be '—'")
                continue
            lit = re.fullmatch(r"`([^`]+)`", default)
            try:
                value = toml_value(lit.group(1)) if lit else None
            except tomllib.TOMLDecodeError:
                value = None
            if value != code_default:
                problems.append(f"{key}: the statement's default is {default!r}, src/config/'s serde default is {code_default!r}")
            continue
        lit = re.fullmatch(r"`([^`]+)`", default)
        try:
            value = toml_value(lit.group(1)) if lit else None
        except tomllib.TOMLDecodeError:
            value = None
        if not lit or value is None:
            problems.append(f"{key}: default cell {default!r} is not a TOML literal in backticks")
        elif value != example[key]:
            problems.append(f"{key}: the statement says {lit.group(1)}, mifas.example.toml says {example[key]!r}")
    problems += [f"{key} (= {example[key]!r}) is in mifas.example.toml but not in the config table" for key in sorted(example.keys() - seen)]
    for required in ("dicom.aet", "dicom.port", "dicom.max_pdu", "dicom.max_associations",
                     "query.case_insensitive_names", "query.max_results"):
        if required not in seen:
            problems.append(f"{required} is missing from the config table")
    if problems:
        report.fail("configuration table differs from mifas.example.toml", problems)
    else:
        report.ok(f"configuration table: {len(seen)} keys, defaults = mifas.example.toml")

    # Defaults quoted in the prose.
    prose = without_comments(doc)
    patterns = [
        (re.compile(rf"`([^`\n]+)` by default \(`({KEY_RE})`\)"), 2, 1),
        (re.compile(rf"`({KEY_RE})`\s*\(`([^`\n]+)` by default"), 1, 2),
    ]
    covered, problems, count = set(), [], 0
    for pattern, key_group, value_group in patterns:
        for m in pattern.finditer(prose):
            count += 1
            phrase = m.group(0)
            key, literal = m.group(key_group), m.group(value_group)
            covered.add(m.start() + phrase.index("by default"))
            if key in example:
                expected, source = example[key], "mifas.example.toml"
            else:
                try:
                    expected, source = config_field_default(config_rs, key), "src/config/ (serde default)"
                except ValueError:
                    expected = None
                if expected is None:
                    problems.append(f"{phrase!r}: {key} is neither a key of mifas.example.toml nor a field of "
                                    "src/config/ with a literal serde default")
                    continue
            try:
                value = toml_value(literal)
            except tomllib.TOMLDecodeError:
                problems.append(f"{phrase!r}: {literal} is not a TOML literal")
                continue
            if value != expected:
                problems.append(f"{phrase!r}: {source} says {key} = {expected!r}")
    for m in re.finditer(r"by default", prose):
        if m.start() not in covered:
            line = prose.count("\n", 0, m.start()) + 1
            problems.append(
                f"line {line}: a default is stated in a form this checker cannot verify; "
                "write it as `value` by default (`key`) or as `key` (`value` by default"
            )
    if problems:
        report.fail("defaults quoted in the text differ from mifas.example.toml", problems)
    else:
        report.ok(f"{count} defaults quoted in the text agree with mifas.example.toml")


# 5 ----------------------------------------------------------------------------------------------

def check_mifas_identifiers(doc: str, report: Report) -> None:
    spool = SPOOL_RS.read_text(encoding="utf-8")
    uid = re.search(r'IMPLEMENTATION_CLASS_UID: &str = "([^"]+)"', spool)
    version = tomllib.loads(CARGO_TOML.read_text(encoding="utf-8"))["package"]["version"]
    name_prefix = re.search(r'IMPLEMENTATION_VERSION_NAME: &str = concat!\("([^"]*)", env!\("CARGO_PKG_VERSION"\)\)', spool)
    problems = []
    if not uid:
        problems.append("IMPLEMENTATION_CLASS_UID not found in src/archive/spool.rs")
    elif uid.group(1) not in doc:
        problems.append(f"Implementation Class UID {uid.group(1)} (src/archive/spool.rs) not in the statement")
    if not name_prefix:
        problems.append("IMPLEMENTATION_VERSION_NAME not of the form concat!(\"PREFIX\", env!(\"CARGO_PKG_VERSION\")) in src/archive/spool.rs")
    elif f"{name_prefix.group(1)}{version}" not in doc:
        problems.append(f"Implementation Version Name {name_prefix.group(1)}{version} not in the statement")
    if problems:
        report.fail("MIFAS implementation identifiers", problems)
    else:
        report.ok(f"MIFAS implementation identifiers: {uid.group(1)}, {name_prefix.group(1)}{version}")


# 6 ----------------------------------------------------------------------------------------------

def check_docker_config(report: Report) -> None:
    if not DOCKER_TOML.exists():
        report.skip("docker/mifas.toml does not exist")
        return
    example = flatten(tomllib.loads(EXAMPLE_TOML.read_text(encoding="utf-8")))
    try:
        docker = flatten(tomllib.loads(DOCKER_TOML.read_text(encoding="utf-8")))
    except tomllib.TOMLDecodeError as e:
        report.fail("docker/mifas.toml is not valid TOML", [str(e)])
        return
    problems = [f"{k}: not a key of mifas.example.toml" for k in sorted(docker.keys() - example.keys())]
    problems += [
        f"{k}: {type(docker[k]).__name__} here, {type(example[k]).__name__} in mifas.example.toml"
        for k in sorted(docker.keys() & example.keys())
        if type(docker[k]) is not type(example[k])
    ]
    if problems:
        report.fail("docker/mifas.toml does not fit mifas.example.toml", problems)
    else:
        report.ok(f"docker/mifas.toml: {len(docker)} keys, all in mifas.example.toml")


# 7 ----------------------------------------------------------------------------------------------

_CARGO_PACKAGES: dict | str | None = None


def cargo_packages() -> dict[str, tuple[Path, set[str]]] | str:
    """name -> (source directory, enabled features), from `cargo metadata`; or why not (cached)."""
    global _CARGO_PACKAGES
    if _CARGO_PACKAGES is None:
        _CARGO_PACKAGES = _cargo_packages()
    return _CARGO_PACKAGES


def _cargo_packages() -> dict[str, tuple[Path, set[str]]] | str:
    commands = [
        ["cargo", "metadata", "--format-version", "1", "--locked", "--offline"],
        ["cargo", "metadata", "--format-version", "1", "--locked"],
    ]
    why = "cargo metadata failed"
    for command in commands:
        try:
            run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
        except FileNotFoundError:
            return "cargo is not installed"
        except subprocess.TimeoutExpired:
            why = "cargo metadata timed out"
            continue
        if run.returncode == 0:
            meta = json.loads(run.stdout)
            by_id = {p["id"]: p for p in meta["packages"]}
            return {
                by_id[node["id"]]["name"]: (Path(by_id[node["id"]]["manifest_path"]).parent, set(node["features"]))
                for node in meta["resolve"]["nodes"]
            }
        why = f"cargo metadata failed: {run.stderr.strip().splitlines()[-1] if run.stderr.strip() else run.returncode}"
    return why


def eval_cfg(expr: str, features: set[str]) -> bool:
    """Evaluate a Rust cfg predicate that uses only feature = "...", not(), any(), all()."""
    tokens = re.findall(r'feature\s*=\s*"[^"]*"|not|any|all|\(|\)|,', expr)
    if re.sub(r"\s+", "", "".join(tokens)) != re.sub(r"\s+", "", expr):
        raise ValueError(f"unsupported cfg predicate: {expr}")
    pos = 0

    def parse() -> bool:
        nonlocal pos
        token = tokens[pos]
        pos += 1
        if token.startswith("feature"):
            return token.split('"')[1] in features
        if token in ("not", "any", "all"):
            assert tokens[pos] == "("
            pos += 1
            args = []
            while tokens[pos] != ")":
                args.append(parse())
                if tokens[pos] == ",":
                    pos += 1
            pos += 1
            if token == "not":
                return not args[0]
            return any(args) if token == "any" else all(args)
        raise ValueError(f"unexpected token {token!r} in cfg predicate {expr}")

    value = parse()
    if pos != len(tokens):
        raise ValueError(f"trailing tokens in cfg predicate {expr}")
    return value


def readable_transfer_syntaxes(src: Path, features: set[str]) -> dict[str, str]:
    """UID -> name of the built-in transfer syntaxes of dicom-transfer-syntax-registry whose data
    sets can be read (everything registered except `Codec::Dataset(None)`), for `features`."""
    lib = (src / "lib.rs").read_text(encoding="utf-8")
    entries = (src / "entries.rs").read_text(encoding="utf-8")
    m = re.search(r"let built_in_ts: \[TransferSyntax; \d+\] = \[(.*?)\];", lib, re.S)
    if not m:
        raise ValueError("built_in_ts list not found in lib.rs")
    built_in = re.findall(r"([A-Z0-9_]+)\.erased\(\)", m.group(1))

    definitions: dict[str, list[tuple[list[str], str]]] = {}
    cfgs: list[str] = []
    lines = entries.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("#[cfg("):
            cfgs.append(re.fullmatch(r"#\[cfg\((.*)\)\]\s*", line).group(1))
        elif line.startswith("pub const "):
            body = [line]
            while not body[-1].rstrip().endswith(";"):
                i += 1
                body.append(lines[i])
            name = re.match(r"pub const ([A-Z0-9_]+)", line).group(1)
            definitions.setdefault(name, []).append((cfgs, "\n".join(body)))
            cfgs = []
        elif line and not line.startswith("//"):
            cfgs = []  # any other item (use, type, const fn, closing brace) ends pending attributes
        i += 1

    readable = {}
    for name in built_in:
        active = [body for cfg, body in definitions.get(name, []) if all(eval_cfg(c, features) for c in cfg)]
        if len(active) != 1:
            raise ValueError(f"{name}: {len(active)} active definitions in entries.rs for features {sorted(features)}")
        body = active[0]
        literals = re.findall(r'"([^"]*)"', body)
        uid = next((s for s in literals if re.fullmatch(UID_RE, s)), None)
        if uid is None:
            raise ValueError(f"{name}: no UID literal in its definition")
        if "Codec::Dataset(None)" in body:
            continue
        readable[uid] = literals[literals.index(uid) + 1] if literals.index(uid) + 1 < len(literals) else name
    return readable


def check_dicom_rs(doc: str, report: Report) -> None:
    packages = cargo_packages()
    if isinstance(packages, str):
        report.skip(f"dicom-ul identifiers and Annex B not checked: {packages}")
        return

    if "dicom-ul" in packages:
        ul_src, _ = packages["dicom-ul"]
        lib = (ul_src / "src" / "lib.rs").read_text(encoding="utf-8")
        values = [
            re.search(rf'pub const {const}: &str = "([^"]+)"', lib)
            for const in ("IMPLEMENTATION_CLASS_UID", "IMPLEMENTATION_VERSION_NAME")
        ]
        missing = [v.group(1) for v in values if v and v.group(1) not in doc]
        if None in values:
            report.fail("dicom-ul identifiers", [f"constants not found in {ul_src / 'src' / 'lib.rs'}"])
        elif missing:
            report.fail("the A-ASSOCIATE-AC identifiers of dicom-ul are not in the statement", missing)
        else:
            report.ok(f"A-ASSOCIATE-AC identifiers of dicom-ul in the statement: {values[0].group(1)}, {values[1].group(1)}")
    else:
        report.fail("dicom-ul is not a dependency according to cargo metadata")

    if "dicom-transfer-syntax-registry" not in packages:
        report.fail("dicom-transfer-syntax-registry is not a dependency according to cargo metadata")
        return
    ts_src, features = packages["dicom-transfer-syntax-registry"]
    if "inventory-registry" in features:
        report.fail("dicom-transfer-syntax-registry is built with inventory-registry: other crates may "
                    "register transfer syntaxes at run time, so Annex B cannot be checked from the sources")
        return
    try:
        readable = readable_transfer_syntaxes(ts_src / "src", features)
    except (OSError, ValueError) as e:
        report.fail("cannot read the transfer syntax registry source", [str(e)])
        return
    documented = {}
    for cells in table_rows(gen.block(doc, ANNEX_B)):
        if len(cells) >= 2 and re.fullmatch(UID_RE, cells[1]):
            documented[cells[1]] = cells[0]
    problems = [f"readable by dicom-rs but not in Annex B: {u} ({readable[u]})" for u in sorted(readable.keys() - documented.keys())]
    problems += [f"in Annex B but not readable by dicom-rs: {u} ({documented[u]})" for u in sorted(documented.keys() - readable.keys())]
    if problems:
        report.fail("Annex B differs from dicom-transfer-syntax-registry", problems)
    else:
        feats = ", ".join(sorted(features))
        report.ok(f"Annex B = the {len(readable)} transfer syntaxes dicom-transfer-syntax-registry can read (features: {feats})")


# 8 ----------------------------------------------------------------------------------------------

def check_annex_c(doc: str, keys: list[gen.QueryKeyRow], report: Report) -> None:
    rows = table_rows(gen.block(doc, gen.ANNEX_C))
    in_doc = [tuple(cells[1:6]) for cells in rows if len(cells) == 7]
    in_tsv = [(k.level, k.keyword, k.tag_text, k.vr, k.key_type) for k in keys]
    problems = []
    if len(in_doc) != len(rows):
        problems.append(f"Annex C has {len(rows) - len(in_doc)} row(s) without 7 cells")
    problems += [f"in the TSV, not in Annex C: {' '.join(r)}" for r in in_tsv if r not in in_doc]
    problems += [f"in Annex C, not in the TSV: {' '.join(r)}" for r in in_doc if r not in in_tsv]
    if not problems and in_doc != in_tsv:
        problems.append("Annex C lists the rows of the TSV in another order")
    for cells, key in zip(rows, keys):
        if len(cells) == 7 and cells[6].replace("\\|", "|") != key.matching():
            problems.append(f"{key.keyword}: matching column {cells[6]!r}, expected {key.matching()!r}")
    if problems:
        report.fail("Annex C differs from dictionaries/query-keys.tsv", problems)
    else:
        levels = ", ".join(f"{lvl} {sum(k.level == lvl for k in keys)}" for lvl in gen.LEVELS)
        report.ok(f"Annex C lists the {len(keys)} query keys of dictionaries/query-keys.tsv ({levels})")


def rust_fn_body(source: str, signature: str) -> str:
    """The text of the Rust function whose header contains `signature`, up to its closing brace."""
    start = source.find(signature)
    if start < 0:
        raise ValueError(f"{signature!r} not found")
    depth, i = 0, source.index("{", start)
    for j in range(i, len(source)):
        if source[j] == "{":
            depth += 1
        elif source[j] == "}":
            depth -= 1
            if depth == 0:
                return source[i:j + 1]
    raise ValueError(f"unbalanced braces after {signature!r}")


def screaming_snake(keyword: str) -> str:
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", keyword).upper()


def check_matching_rules(report: Report) -> None:
    problems = []
    body = rust_fn_body(MATCHING_RS.read_text(encoding="utf-8"), "pub fn from_vr(")
    code_kinds: dict[str, str] = {}
    fallback = None
    for lhs, kind in re.findall(r"([A-Z_ |]+?)\s*=>\s*ValueKind::(\w+)", body):
        for vr in (v.strip() for v in lhs.split("|")):
            if vr == "_":
                fallback = kind
            elif vr:
                code_kinds[vr] = kind
    if fallback != "Text":
        problems.append(f"ValueKind::from_vr: the fallback arm is {fallback!r}, generate_tables.py assumes 'Text'")
    for vr in sorted(code_kinds.keys() | gen.VR_KIND.keys()):
        if code_kinds.get(vr, "Text") != gen.VR_KIND.get(vr, "Text"):
            problems.append(f"VR {vr}: matching.rs says {code_kinds.get(vr, 'Text')}, generate_tables.py says {gen.VR_KIND.get(vr, 'Text')}")
    missing = set(gen.MATCHING) - set(code_kinds.values()) - {"Text", "Sequence"}
    problems += [f"generate_tables.py describes ValueKind::{k}, which from_vr no longer produces" for k in sorted(missing)]

    body = rust_fn_body(EXECUTE_RS.read_text(encoding="utf-8"), "fn combined_pairs(")
    code_pairs = re.findall(r"\(tags::(\w+),\s*tags::(\w+)\)", body)
    doc_pairs = [(screaming_snake(d), screaming_snake(t)) for d, t in gen.COMBINED_PAIRS]
    if sorted(code_pairs) != sorted(doc_pairs):
        problems.append(f"combined date-time pairs: find.rs {code_pairs}, generate_tables.py {doc_pairs}")
    if problems:
        report.fail("the matching rules of Annex C differ from src/query and src/index/find.rs", problems)
    else:
        report.ok(f"Annex C matching column follows ValueKind::from_vr ({len(code_kinds)} VRs) and the "
                  f"{len(code_pairs)} combined date-time pairs of find.rs")


# 9 ----------------------------------------------------------------------------------------------

def compare_status_table(doc: str, table: str, service: str, constants: dict[int, str],
                         sources: dict[str, str], origin: str) -> tuple[list[str], list[int]]:
    """Compare a status table of the statement with the codes a service returns: `constants`
    (code -> name) plus every `Status::NAME` of src/dimse/status.rs used in `sources` (where ->
    code text). Returns the problems and the documented codes."""
    problems = []
    general = {name: code for code, name in status_constants(STATUS_RS).items()}
    for where, text in sources.items():
        for name in sorted(set(re.findall(r"\bStatus::([A-Z][A-Z0-9_]+)\b", text))):
            if name not in general:
                problems.append(f"{where} uses Status::{name}, which is not a constant of src/dimse/status.rs")
            else:
                constants.setdefault(general[name], f"Status::{name}")
    documented = []
    for cells in table_rows(gen.block(doc, table)):
        m = re.fullmatch(r"0x([0-9A-Fa-f]{4})", cells[0])
        if not m:
            problems.append(f"{service} status table row without a 0xNNNN code: {' | '.join(cells)}")
            continue
        documented.append(int(m.group(1), 16))
    problems += [
        f"0x{c:04X} ({constants[c]}) is returned by {service} but not in the {service} status table"
        for c in sorted(constants.keys() - set(documented))
    ]
    problems += [
        f"0x{c:04X} is in the {service} status table but neither {origin}"
        for c in sorted(set(documented) - constants.keys())
    ]
    problems += [f"0x{c:04X} appears twice in the {service} status table"
                 for c in sorted({c for c in documented if documented.count(c) > 1})]
    return problems, documented

def check_find_statuses(doc: str, report: Report) -> None:
    constants = {code: f"c_find::{name}" for code, name in status_constants(C_FIND_RS).items()}
    run_find = rust_fn_body(C_FIND_RS.read_text(encoding="utf-8"), "pub(crate) async fn handle(")
    problems, documented = compare_status_table(
        doc, FIND_STATUS_TABLE, "C-FIND", constants, {"run_find": run_find},
        "a constant of src/dimse/c_find.rs nor used by run_find")
    if not status_constants(C_FIND_RS):
        problems.append("no `Status(0x....)` constants found in src/dimse/c_find.rs")

    # The Error Comment of the max_results refusal, quoted with the default limit.
    example = flatten(tomllib.loads(EXAMPLE_TOML.read_text(encoding="utf-8")))
    m = re.search(r'format!\(\s*"(more than \{max_results\}[^"]*)"', run_find)
    if not m:
        problems.append('the "more than {max_results} …" Error Comment was not found in run_find')
    elif "query.max_results" in example:
        quoted = m.group(1).replace("{max_results}", str(example["query.max_results"]))
        if quoted not in without_comments(doc):
            problems.append(f"the statement does not quote the 0xA700 Error Comment {quoted!r}")
    if problems:
        report.fail("C-FIND status table differs from src/dimse/c_find.rs / run_find", problems)
    else:
        codes = ", ".join(f"0x{c:04X}" for c in documented)
        report.ok(f"C-FIND status table = the {len(constants)} statuses of c_find.rs and run_find ({codes}); 0xA700 comment quoted")


# 10 ---------------------------------------------------------------------------------------------

def uid_constants() -> tuple[dict[str, str], str]:
    """NAME -> UID of dicom-dictionary-std's uids.rs, and where they came from."""
    packages = cargo_packages()
    if isinstance(packages, dict) and "dicom-dictionary-std" in packages:
        src, _ = packages["dicom-dictionary-std"]
        text = (src / "src" / "uids.rs").read_text(encoding="utf-8")
        return dict(re.findall(r'pub const (\w+): &str = "([0-9.]+)";', text)), "dicom-dictionary-std"
    return dict(KNOWN_UIDS), f"built-in list ({packages if isinstance(packages, str) else 'no dicom-dictionary-std'})"


def sop_class_list(path: Path, const: str, uids: dict[str, str], origin: str, problems: list[str]) -> dict[str, str]:
    """UID -> name of the items of `pub const CONST: [&str; N] = [...]` in a Rust file."""
    source = path.read_text(encoding="utf-8")
    m = re.search(rf"pub const {const}: \[&str; \d+\] = \[(.*?)\];", source, re.S)
    if not m:
        problems.append(f"{const} not found in {path.relative_to(ROOT)}")
        return {}
    out = {}
    for item in (i.strip() for i in m.group(1).split(",")):
        if not item:
            continue
        lit = re.fullmatch(r'"([0-9.]+)"', item)
        ref = re.fullmatch(r"(?:dicom_dictionary_std::)?uids::(\w+)", item)
        if lit:
            out[lit.group(1)] = f"{const} {item}"
        elif ref and ref.group(1) in uids:
            out[uids[ref.group(1)]] = ref.group(1)
        else:
            problems.append(f"cannot resolve {item} of {const} (UIDs from {origin})")
    return out


def check_qr_sop_classes(doc: str, report: Report) -> None:
    uids, origin = uid_constants()
    problems: list[str] = []
    lists = {
        "FIND_SOP_CLASSES": sop_class_list(C_FIND_RS, "FIND_SOP_CLASSES", uids, origin, problems),
        "MOVE_SOP_CLASSES": sop_class_list(RETRIEVE_RS, "MOVE_SOP_CLASSES", uids, origin, problems),
        "GET_SOP_CLASSES": sop_class_list(RETRIEVE_RS, "GET_SOP_CLASSES", uids, origin, problems),
    }
    served = {uid: (const, name) for const, classes in lists.items() for uid, name in classes.items()}
    scp_yes = {}
    for cells in table_rows(gen.block(doc, SOP_CLASS_TABLE)):
        if len(cells) == 4 and re.fullmatch(UID_RE, cells[1]):
            scp_yes[cells[1]] = cells[3].startswith("Yes")
    for uid, (const, name) in sorted(served.items()):
        if uid not in scp_yes:
            problems.append(f"{uid} ({name}) is in {const} but not in the SOP class table")
        elif not scp_yes[uid]:
            problems.append(f"{uid} ({name}) is in {const} but the SOP class table does not say SCP Yes")
    for uid, yes in sorted(scp_yes.items()):
        if yes and uid.startswith(QR_UID_PREFIX) and uid not in served:
            problems.append(f"the SOP class table claims SCP support for {uid}, which is in none of "
                            "FIND_SOP_CLASSES, MOVE_SOP_CLASSES, GET_SOP_CLASSES")
    if problems:
        report.fail("Query/Retrieve SOP classes differ from src/dimse/c_find.rs / src/dimse/retrieve.rs", problems)
    else:
        counts = ", ".join(f"{len(v)} {k.split('_')[0]}" for k, v in lists.items())
        report.ok(f"SOP class table: SCP for exactly the Query/Retrieve SOP classes of c_find.rs and retrieve.rs "
                  f"({counts}; UIDs from {origin})")


# 11 ---------------------------------------------------------------------------------------------

def without_rust_tests(source: str) -> str:
    """`source` up to its `#[cfg(test)]` module."""
    return source.split("#[cfg(test)]", 1)[0]


def check_retrieve_statuses(doc: str, report: Report) -> None:
    problems = []
    constants = {code: f"retrieve::{name}" for code, name in status_constants(RETRIEVE_RS).items()}
    if not constants:
        problems.append("no `Status(0x....)` constants found in src/dimse/retrieve.rs")
    sources = {"src/dimse/retrieve.rs": without_rust_tests(RETRIEVE_RS.read_text(encoding="utf-8"))}
    for path, signature in RETRIEVE_HANDLERS:
        try:
            sources[f"handle ({path.name})"] = rust_fn_body(path.read_text(encoding="utf-8"), signature)
        except ValueError as e:
            problems.append(f"src/dimse/{path.name}: {e}")
    table_problems, documented = compare_status_table(
        doc, RETRIEVE_STATUS_TABLE, "C-MOVE/C-GET", constants, sources,
        "a constant of src/dimse/retrieve.rs nor a Status:: constant the retrieve code uses")
    problems += table_problems
    if problems:
        report.fail("C-MOVE/C-GET status table differs from src/dimse/retrieve.rs and the retrieve handlers", problems)
    else:
        codes = ", ".join(f"0x{c:04X}" for c in documented)
        report.ok(f"C-MOVE/C-GET status table = the {len(constants)} statuses of retrieve.rs and the retrieve handlers ({codes})")


# 12 ---------------------------------------------------------------------------------------------

def check_commitment_statuses(doc: str, report: Report) -> None:
    source = without_rust_tests(N_ACTION_RS.read_text(encoding="utf-8"))
    constants = {code: f"n_action::{name}" for code, name in status_constants(N_ACTION_RS).items()}
    problems, documented = compare_status_table(
        doc, N_ACTION_STATUS_TABLE, "N-ACTION", constants, {"src/dimse/stgcmt/n_action.rs": source},
        "a constant of src/dimse/stgcmt/n_action.rs nor a Status:: constant it uses")
    text = COMMITMENT_RS.read_text(encoding="utf-8")
    reasons = {int(code, 16): name for name, code in
               re.findall(r"pub const (\w+): u16 = (0x[0-9A-Fa-f]{4});", text)}
    listed = []
    for cells in table_rows(gen.block(doc, FAILURE_REASON_TABLE)):
        m = re.fullmatch(r"0x([0-9A-Fa-f]{4})", cells[0])
        if m:
            listed.append(int(m.group(1), 16))
        else:
            problems.append(f"failure reason row without a 0xNNNN code: {' | '.join(cells)}")
    problems += [f"failure reason 0x{c:04X} ({reasons[c]}) is not in the Failure Reason table"
                 for c in sorted(reasons.keys() - set(listed))]
    problems += [f"failure reason 0x{c:04X} is in the table but not a constant of src/archive/commitment.rs"
                 for c in sorted(set(listed) - reasons.keys())]
    if not reasons:
        problems.append("no failure_reason constants found in src/archive/commitment.rs")
    if problems:
        report.fail("Storage Commitment status / failure reason tables differ from the code", problems)
    else:
        report.ok(f"N-ACTION status table = {len(documented)} statuses of n_action.rs; "
                  f"failure reasons = {', '.join(f'0x{c:04X}' for c in sorted(reasons))}")


# 13 ---------------------------------------------------------------------------------------------

HTTP_METHODS = ("get", "post", "put", "delete", "patch", "head", "options")


def route_calls(source: str) -> list[tuple[str, set[str]]]:
    """(path, methods) of every `.route("path", method_router)` call in Rust source."""
    routes = []
    for m in re.finditer(r"\.route\(", source):
        depth, i = 1, m.end()
        while i < len(source) and depth:
            depth += {"(": 1, ")": -1}.get(source[i], 0)
            i += 1
        call = source[m.end():i - 1]
        path = re.match(r'\s*"([^"]*)"\s*,', call)
        if not path:
            continue
        methods = {meth.upper() for meth in re.findall(
            r"(?<![\w])(?:routing::)?(" + "|".join(HTTP_METHODS) + r")\(", call[path.end():])}
        routes.append((path.group(1), methods))
    return routes


def route_shape(path: str) -> str:
    """Path parameters compare by position: `/studies/{study}` and `/studies/{uid}` are one route."""
    return re.sub(r"\{[^}]*\}", "{}", path.rstrip("/") or "/")


def check_dicomweb_resources(doc: str, report: Report) -> None:
    problems = []
    code: dict[tuple[str, str], str] = {}
    for rs in sorted(DICOMWEB_DIR.glob("*.rs")):
        if rs.name.endswith("_tests.rs"):
            continue
        for path, methods in route_calls(without_rust_tests(rs.read_text(encoding="utf-8"))):
            if not methods:
                problems.append(f"{rs.name}: route {path} has no method router the check understands")
            for method in methods:
                code[(method, route_shape(path))] = f"{path} ({rs.name})"
    sections = set(re.findall(r"^#### (4\.5\.\d+) ", doc, flags=re.M))
    documented: dict[tuple[str, str], str] = {}
    for cells in table_rows(gen.block(doc, DICOMWEB_TABLE)):
        if len(cells) != 3 or not cells[1].startswith("`/"):
            problems.append(f"resource table row is not | METHOD | `/resource` | 4.5.x |: {' | '.join(cells)}")
            continue
        method, resource, section = cells[0].upper(), cells[1].strip("`"), cells[2]
        if section not in sections:
            problems.append(f"{method} {resource}: section {section} is not a 4.5.x heading of the statement")
        key = (method, route_shape(resource))
        if key in documented:
            problems.append(f"{method} {resource} is listed twice")
        documented[key] = resource
    problems += [f"{m} {documented[(m, p)]} is in the resource table but no route in src/web/dicomweb/*.rs"
                 for m, p in sorted(documented.keys() - code.keys())]
    problems += [f"{m} {code[(m, p)]} is a route in src/web/dicomweb/ but not in the resource table"
                 for m, p in sorted(code.keys() - documented.keys())]
    text = without_rust_tests(STOW_RS.read_text(encoding="utf-8"))
    reasons = {int(code_, 16): name for name, code_ in
               re.findall(r"pub const (\w+): u16 = (0x[0-9A-Fa-f]{4});", text)}
    listed = []
    for cells in table_rows(gen.block(doc, STOW_REASON_TABLE)):
        m = re.fullmatch(r"0x([0-9A-Fa-f]{4})", cells[0])
        if m:
            listed.append(int(m.group(1), 16))
        else:
            problems.append(f"STOW failure reason row without a 0xNNNN code: {' | '.join(cells)}")
    problems += [f"STOW-RS failure reason 0x{c:04X} ({reasons[c]}) is not in the table of 4.5.6"
                 for c in sorted(reasons.keys() - set(listed))]
    problems += [f"STOW-RS failure reason 0x{c:04X} is in the table of 4.5.6 but not a constant of stow_response.rs"
                 for c in sorted(set(listed) - reasons.keys())]
    if not reasons:
        problems.append("no Failure Reason constants found in src/web/dicomweb/stow_response.rs")
    if problems:
        report.fail("DICOMweb resource table / STOW-RS failure reasons differ from src/web/dicomweb", problems)
    else:
        report.ok(f"DICOMweb resource table = the {len(code)} routes of src/web/dicomweb/*.rs; "
                  f"STOW-RS failure reasons = {', '.join(f'0x{c:04X}' for c in sorted(reasons))}")


def main() -> int:
    report = Report()
    doc = gen.STATEMENT.read_text(encoding="utf-8")
    try:
        classes = gen.read_storage_classes()
    except ValueError as e:
        report.fail("dictionaries/storage-sop-classes.tsv cannot be read", [str(e)])
        classes = None
    try:
        keys = gen.read_query_keys()
    except ValueError as e:
        report.fail("dictionaries/query-keys.tsv cannot be read", [str(e)])
        keys = None
    checks = [
        lambda: classes is not None and keys is not None and check_generated(doc, classes, keys, report),
        lambda: classes is not None and check_annex_a(doc, classes, report),
        lambda: keys is not None and check_annex_c(doc, keys, report),
        lambda: check_matching_rules(report),
        lambda: check_statuses(doc, report),
        lambda: check_find_statuses(doc, report),
        lambda: check_qr_sop_classes(doc, report),
        lambda: check_retrieve_statuses(doc, report),
        lambda: check_commitment_statuses(doc, report),
        lambda: check_dicomweb_resources(doc, report),
        lambda: check_defaults(doc, report),
        lambda: check_mifas_identifiers(doc, report),
        lambda: check_docker_config(report),
        lambda: check_dicom_rs(doc, report),
    ]
    for check in checks:
        try:
            check()
        except (OSError, ValueError, KeyError) as e:
            report.fail(f"check could not run: {e}")
    if report.failures:
        print(f"\n{report.failures} check(s) failed: conformance/conformance-statement.md is out of step with the code")
        return 1
    print("\nconformance statement agrees with the code")
    return 0


if __name__ == "__main__":
    sys.exit(main())
