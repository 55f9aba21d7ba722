"""An independent C-FIND oracle: the answer a Query/Retrieve SCP must give, computed with pydicom
from the very files stored in the archive.

Written from DICOM PS3.4 C.2.2.2 (matching), C.4.1 (C-FIND SCP, hierarchical search), C.6.1/C.6.2
(Patient Root / Study Root keys) and the MIFAS C-FIND contract (its list of optional keys, its
PN rules, statuses and charset policy) -- never from MIFAS's Rust code.

    archive = Archive(paths)
    answer = archive.find("STUDY_ROOT", identifier, combined_datetime=False)
    problems = compare(answer, responses)   # responses: [(status int, identifier Dataset)]

`answer.failure` is the expected failure status (0xA900 / 0xC000) or None; otherwise
`answer.expected` maps the value of the level's unique key to the expected response
({tag: normalized value}) and `answer.pending` is 0xFF00 or 0xFF01.
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import dataclass, field

import pydicom
from pydicom.datadict import dictionary_VR, keyword_for_tag, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.tag import Tag

PATIENT_ROOT = "PATIENT_ROOT"
STUDY_ROOT = "STUDY_ROOT"
LEVELS = ["PATIENT", "STUDY", "SERIES", "IMAGE"]
MODEL_LEVELS = {PATIENT_ROOT: LEVELS, STUDY_ROOT: LEVELS[1:]}

SPECIFIC_CHARACTER_SET = Tag(0x0008, 0x0005)
QUERY_RETRIEVE_LEVEL = Tag(0x0008, 0x0052)
RETRIEVE_AE_TITLE = Tag(0x0008, 0x0054)
INSTANCE_AVAILABILITY = Tag(0x0008, 0x0056)
SERVICE_KEYS = {SPECIFIC_CHARACTER_SET, QUERY_RETRIEVE_LEVEL}

UNIQUE = {"PATIENT": "PatientID", "STUDY": "StudyInstanceUID", "SERIES": "SeriesInstanceUID",
          "IMAGE": "SOPInstanceUID"}

# Keys per level: PS3.4 C.6.1.1 (Patient Root) plus the optional keys MIFAS's contract supports.
# In the Study Root model the PATIENT keys belong to the STUDY level (C.6.2.1).
_KEY_LEVELS = {
    "PATIENT": ["PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientBirthTime",
                "PatientSex", "OtherPatientIDs", "PatientComments", "NumberOfPatientRelatedStudies",
                "NumberOfPatientRelatedSeries", "NumberOfPatientRelatedInstances"],
    "STUDY": ["StudyDate", "StudyTime", "AccessionNumber", "StudyID", "StudyInstanceUID",
              "ReferringPhysicianName", "StudyDescription", "ModalitiesInStudy", "SOPClassesInStudy",
              "NameOfPhysiciansReadingStudy", "PatientAge", "PatientSize", "PatientWeight",
              "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances"],
    "SERIES": ["Modality", "SeriesNumber", "SeriesInstanceUID", "SeriesDescription", "BodyPartExamined",
               "SeriesDate", "SeriesTime", "PerformedProcedureStepStartDate", "RequestAttributesSequence",
               "NumberOfSeriesRelatedInstances"],
    "IMAGE": ["InstanceNumber", "SOPInstanceUID", "SOPClassUID", "ImageType", "ContentDate", "ContentTime",
              "NumberOfFrames", "Rows", "Columns"],
}
KEY_LEVEL: dict[int, str] = {tag_for_keyword(k): lvl for lvl, ks in _KEY_LEVELS.items() for k in ks}

COUNTS = {"NumberOfPatientRelatedStudies", "NumberOfPatientRelatedSeries", "NumberOfPatientRelatedInstances",
          "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances", "NumberOfSeriesRelatedInstances"}
SETS = {"ModalitiesInStudy", "SOPClassesInStudy"}  # order of values is not significant

# DA/TM pairs that form one date-time under combined date-time matching (PS3.4 C.2.2.2.5.1)
DATE_TIME_PAIRS = [("StudyDate", "StudyTime"), ("SeriesDate", "SeriesTime"), ("ContentDate", "ContentTime"),
                   ("PatientBirthDate", "PatientBirthTime")]

PENDING = 0xFF00
PENDING_UNSUPPORTED = 0xFF01
SUCCESS = 0x0000
CANCELLED = 0xFE00
OUT_OF_RESOURCES = 0xA700
IDENTIFIER_DOES_NOT_MATCH = 0xA900
UNABLE_TO_PROCESS = 0xC000


class QueryFailure(Exception):
    def __init__(self, status: int, why: str):
        super().__init__(why)
        self.status = status
        self.why = why


def effective_level(tag: int, model: str) -> str | None:
    lvl = KEY_LEVEL.get(tag)
    if lvl == "PATIENT" and model == STUDY_ROOT:
        return "STUDY"
    return lvl


def key_vr(tag: int) -> str:
    return dictionary_VR(tag)


# --- value helpers --------------------------------------------------------------------------


def _values(v) -> list:
    """Element value as a list of values ([] when empty)."""
    if v is None:
        return []
    if isinstance(v, (MultiValue, list, tuple)):
        return [x for x in v]
    if isinstance(v, (str, bytes)) and v == "":
        return []
    return [v]


def _is_empty(v) -> bool:
    vals = _values(v)
    return not vals or all(str(x) == "" for x in vals)


def normalize(vr: str, value, keyword: str = ""):
    """Comparable form of an element value (both the corpus side and the response side)."""
    if vr == "SQ":
        return [{int(e.tag): normalize(e.VR, e.value, e.keyword) for e in item} for item in (value or [])]
    vals = _values(value)
    if not vals:
        return frozenset() if keyword in SETS else ""
    if vr in ("IS", "US", "UL", "SS", "SL", "UV", "SV"):
        try:
            out = [int(x) for x in vals]
        except (TypeError, ValueError):
            out = [str(x) for x in vals]
    elif vr in ("DS", "FL", "FD"):
        out = [float(x) for x in vals]
    else:
        out = [str(x) for x in vals]
    if keyword in SETS:
        return frozenset(out)
    return out[0] if len(out) == 1 else tuple(out)


def _wild_regex(pattern: str) -> re.Pattern:
    out = []
    for ch in pattern:
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out), re.DOTALL)


def _str_match(pattern: str, value: str, case_insensitive: bool = False) -> bool:
    if case_insensitive:
        pattern, value = pattern.lower(), value.lower()
    if "*" in pattern or "?" in pattern:
        return _wild_regex(pattern).fullmatch(value) is not None
    return pattern == value


def pn_candidates(name: str, fuzzy: bool = False) -> list[str]:
    """Whole value, each component group, each group without '^' (PS3.4 C.2.2.2.4: a key is
    matched against the value, per component group); with fuzzy semantic matching negotiated
    also each single component (the contract of the Conformance Statement, 4.2.1.7.4)."""
    out = [name]
    groups = name.split("=")
    for g in groups:
        out.append(g)
        out.append(g.replace("^", ""))
        if fuzzy:
            out.extend(g.split("^"))
    return [c for c in out if c != ""]


# --- DA / TM / DT -----------------------------------------------------------------------------

_DA_RE = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
_TM_RE = re.compile(r"^(\d{2})(\d{2})?(\d{2})?(?:\.(\d{1,6}))?$")
_DAY_US = 86_400_000_000


def parse_da(s: str) -> _dt.date:
    m = _DA_RE.match(s.strip())
    if not m:
        raise ValueError(f"not a DA value: {s!r}")
    return _dt.date(int(m[1]), int(m[2]), int(m[3]))


def parse_tm(s: str) -> tuple[int, int]:
    """(first, last) microsecond of the day covered by a TM value at its precision."""
    m = _TM_RE.match(s.strip())
    if not m or (m[4] is not None and m[3] is None):
        raise ValueError(f"not a TM value: {s!r}")
    h = int(m[1])
    mi = int(m[2]) if m[2] else 0
    sec = int(m[3]) if m[3] else 0
    if h > 23 or mi > 59 or sec > 60:
        raise ValueError(f"not a TM value: {s!r}")
    start = ((h * 60 + mi) * 60 + sec) * 1_000_000
    if m[4]:
        frac = m[4]
        start += int(frac.ljust(6, "0"))
        span = 10 ** (6 - len(frac))
    elif m[3]:
        span = 1_000_000
    elif m[2]:
        span = 60_000_000
    else:
        span = 3_600_000_000
    return start, start + span - 1


def _split_range(s: str) -> tuple[str | None, str | None, bool]:
    """'a-b' / 'a-' / '-b' / 'a' -> (low, high, is_range)."""
    s = s.strip()
    if "-" in s:
        lo, hi = s.split("-", 1)
        if "-" in hi or (not lo and not hi):
            raise ValueError(f"bad range {s!r}")
        return (lo or None), (hi or None), True
    return s, s, False


def da_interval(q: str):
    lo, hi, _ = _split_range(q)
    return (parse_da(lo) if lo else None), (parse_da(hi) if hi else None)


def tm_interval(q: str):
    lo, hi, _ = _split_range(q)
    return (parse_tm(lo)[0] if lo else None), (parse_tm(hi)[1] if hi else None)


def _in(v, lo, hi) -> bool:
    return (lo is None or v >= lo) and (hi is None or v <= hi)


def validate_value(vr: str, q: str) -> None:
    """Raise ValueError when a DA/TM query value cannot be parsed (-> 0xC000)."""
    if vr == "DA":
        da_interval(q)
    elif vr == "TM":
        tm_interval(q)


# --- the archive model --------------------------------------------------------------------


@dataclass
class Entity:
    level: str
    uid: str
    rep: Dataset                     # representative instance header
    patient: str = ""
    study: str = ""
    series: str = ""
    instances: list = field(default_factory=list)


@dataclass
class Answer:
    level: str | None
    unique_tag: int | None
    failure: int | None = None
    why: str = ""
    pending: int = PENDING
    expected: dict = field(default_factory=dict)   # unique value -> {tag: normalized}
    asked: list = field(default_factory=list)      # requested tags (incl. QR level)
    upper: dict = field(default_factory=dict)      # unique value -> {unique key tag: value} of every level
    query_charset: str = ""

    @property
    def uids(self) -> set[str]:
        return set(self.expected)


class Archive:
    def __init__(self, paths, server_aet: str = "MIFAS"):
        self.aet = server_aet
        self.instances: dict[str, Dataset] = {}
        for p in paths:
            ds = pydicom.dcmread(p, stop_before_pixels=True)
            self.instances.setdefault(str(ds.SOPInstanceUID), ds)
        self.series: dict[str, list[Dataset]] = {}
        self.studies: dict[str, list[Dataset]] = {}
        self.patients: dict[str, list[Dataset]] = {}
        for ds in self.instances.values():
            self.series.setdefault(str(ds.SeriesInstanceUID), []).append(ds)
            self.studies.setdefault(str(ds.StudyInstanceUID), []).append(ds)
            self.patients.setdefault(str(ds.get("PatientID", "")), []).append(ds)

    # entities of one level
    def entities(self, level: str) -> list[Entity]:
        out = []
        groups = {"PATIENT": self.patients, "STUDY": self.studies, "SERIES": self.series,
                  "IMAGE": {k: [v] for k, v in self.instances.items()}}[level]
        for uid, dss in groups.items():
            rep = dss[0]
            out.append(Entity(level, uid, rep, patient=str(rep.get("PatientID", "")),
                              study=str(rep.StudyInstanceUID), series=str(rep.SeriesInstanceUID),
                              instances=dss))
        return out

    # attribute values of an entity (computed ones included)
    def value(self, ent: Entity, keyword: str):
        if keyword == "NumberOfPatientRelatedStudies":
            return len({str(d.StudyInstanceUID) for d in self.patients[ent.patient]})
        if keyword == "NumberOfPatientRelatedSeries":
            return len({str(d.SeriesInstanceUID) for d in self.patients[ent.patient]})
        if keyword == "NumberOfPatientRelatedInstances":
            return len(self.patients[ent.patient])
        if keyword == "NumberOfStudyRelatedSeries":
            return len({str(d.SeriesInstanceUID) for d in self.studies[ent.study]})
        if keyword == "NumberOfStudyRelatedInstances":
            return len(self.studies[ent.study])
        if keyword == "NumberOfSeriesRelatedInstances":
            return len(self.series[ent.series])
        if keyword == "ModalitiesInStudy":
            return sorted({str(d.Modality) for d in self.studies[ent.study] if d.get("Modality")})
        if keyword == "SOPClassesInStudy":
            return sorted({str(d.SOPClassUID) for d in self.studies[ent.study]})
        if keyword == "RetrieveAETitle":
            return self.aet
        if keyword == "InstanceAvailability":
            return "ONLINE"
        elem = ent.rep.get(keyword)
        if elem is None:
            return None
        return elem  # a DataElement (value read below)

    def raw(self, ent: Entity, keyword: str):
        v = self.value(ent, keyword)
        if isinstance(v, pydicom.DataElement):
            return v.value
        return v

    # --- the query -----------------------------------------------------------------------
    def find(self, model: str, ident: Dataset, combined_datetime: bool = False,
             case_insensitive_names: bool = True, fuzzy_names: bool = False) -> Answer:
        level = ident.get("QueryRetrieveLevel")
        level = str(level).strip() if level is not None else None
        ans = Answer(level=level, unique_tag=None,
                     query_charset=_charset_of(ident))
        try:
            self._check(model, ident, ans)
        except QueryFailure as f:
            ans.failure, ans.why = f.status, f.why
            return ans
        L = LEVELS.index(level)
        keys = [e for e in ident if e.tag not in SERVICE_KEYS]
        ans.asked = [QUERY_RETRIEVE_LEVEL] + [int(e.tag) for e in keys]
        if int(ans.unique_tag) not in ans.asked:
            ans.asked.append(int(ans.unique_tag))

        # combined date-time pairs
        combined = set()
        if combined_datetime:
            for da, tm in DATE_TIME_PAIRS:
                de = ident[da] if da in ident else None
                te = ident[tm] if tm in ident else None
                if de is None or te is None or _is_empty(de.value) or _is_empty(te.value):
                    continue
                if "-" in str(de.value) and "-" in str(te.value):
                    combined.add((da, tm))

        for ent in self.entities(level):
            if self._matches(ent, keys, model, L, combined, case_insensitive_names, fuzzy_names):
                ans.expected[str(ent.uid)] = self._response(ent, ident, keys, level, fuzzy_names)
                ans.upper[str(ent.uid)] = {tag_for_keyword(kw): normalize("LO" if kw == "PatientID" else "UI",
                                                                          self.raw(ent, kw), kw)
                                           for kw in UNIQUE.values()}
        return ans

    def _check(self, model: str, ident: Dataset, ans: Answer) -> None:
        level = ans.level
        if level is None:
            raise QueryFailure(IDENTIFIER_DOES_NOT_MATCH, "no QueryRetrieveLevel")
        if level not in MODEL_LEVELS[model]:
            raise QueryFailure(IDENTIFIER_DOES_NOT_MATCH, f"level {level!r} not in {model}")
        L = LEVELS.index(level)
        ans.unique_tag = tag_for_keyword(UNIQUE[level])
        bad_values = []
        for e in ident:
            if e.tag in SERVICE_KEYS:
                continue
            lvl = effective_level(int(e.tag), model)
            if lvl is None:
                if e.VR == "SQ":
                    items = list(e.value or [])
                    valued = bool(items) and any(not _is_empty(k.value) for k in items[0])
                else:
                    valued = not _is_empty(e.value)
                if valued:
                    ans.pending = PENDING_UNSUPPORTED
                continue
            if e.VR != key_vr(e.tag):
                raise QueryFailure(IDENTIFIER_DOES_NOT_MATCH, f"{e.keyword} has VR {e.VR}")
            if LEVELS.index(lvl) > L:
                raise QueryFailure(IDENTIFIER_DOES_NOT_MATCH, f"{e.keyword} is a key of level {lvl}")
            unique_of = [lv for lv, kw in UNIQUE.items() if kw == e.keyword and lv in MODEL_LEVELS[model]]
            if unique_of and LEVELS.index(unique_of[0]) < L and len(_values(e.value)) > 1:
                raise QueryFailure(IDENTIFIER_DOES_NOT_MATCH, f"upper unique key {e.keyword} is a list")
            if e.VR in ("DA", "TM") and not _is_empty(e.value):
                try:
                    validate_value(e.VR, str(e.value))
                except ValueError as err:
                    bad_values.append(str(err))
        if bad_values:
            raise QueryFailure(UNABLE_TO_PROCESS, "; ".join(bad_values))

    def _matches(self, ent: Entity, keys, model, L, combined, ci_names, fuzzy) -> bool:
        done = set()
        for da, tm in combined:
            d = self.raw(ent, da)
            t = self.raw(ent, tm)
            if _is_empty(d):
                return False
            dlo, dhi = da_interval(str(self_get(keys, da)))
            tlo_s, thi_s, _ = _split_range(str(self_get(keys, tm)))
            lo = None if dlo is None else (dlo, parse_tm(tlo_s)[0] if tlo_s else 0)
            hi = None if dhi is None else (dhi, parse_tm(thi_s)[1] if thi_s else _DAY_US - 1)
            point = (parse_da(str(d)), parse_tm(str(t))[0] if not _is_empty(t) else 0)
            if not _in(point, lo, hi):
                return False
            done.update({da, tm})
        for e in keys:
            if e.keyword in done:
                continue
            lvl = effective_level(int(e.tag), model)
            if lvl is None:
                continue  # not a matching key of MIFAS: never matched (0xFF01)
            if e.VR == "SQ":
                if not self._seq_match(ent, e, fuzzy):
                    return False
                continue
            if _is_empty(e.value):
                continue  # universal
            qvals = [str(v) for v in _values(e.value)]
            if e.VR not in ("DA", "TM", "DT", "UI") and qvals == ["*"]:
                continue  # a lone '*' is universal matching
            ev = self.raw(ent, e.keyword)
            if not match_values(e.VR, qvals, ev, ci_names, fuzzy):
                return False
        return True

    def _seq_match(self, ent: Entity, e, fuzzy: bool) -> bool:
        items = list(e.value or [])
        if not items or len(items[0]) == 0:
            return True
        qitem = items[0]
        stored = self.raw(ent, e.keyword) or []
        for sitem in stored:
            if all(_is_empty(k.value) or match_values(k.VR, [str(v) for v in _values(k.value)],
                                                    sitem[k.keyword].value if k.keyword in sitem else None,
                                                    True, fuzzy)
                   for k in qitem):
                return True
        return False

    def _response(self, ent: Entity, ident: Dataset, keys, level, fuzzy: bool = False) -> dict:
        out = {int(QUERY_RETRIEVE_LEVEL): level}
        for e in keys:
            if e.VR == "SQ" and effective_level(int(e.tag), STUDY_ROOT) is not None:
                qitem = list(e.value or [])
                qkeys = list(qitem[0]) if qitem else []
                stored = self.raw(ent, e.keyword) or []
                proj = [{int(k.tag): normalize(k.VR, s[k.keyword].value if k.keyword in s else None,
                                               k.keyword) for k in qkeys} for s in stored]
                matching = [p for p, s in zip(proj, stored)
                            if all(_is_empty(k.value) or match_values(
                                k.VR, [str(v) for v in _values(k.value)],
                                s[k.keyword].value if k.keyword in s else None, True, fuzzy) for k in qkeys)]
                out[int(e.tag)] = SeqExpect(all_items=proj, matching=matching, keys=[int(k.tag) for k in qkeys])
                continue
            v = self.value(ent, e.keyword)
            if isinstance(v, pydicom.DataElement):
                out[int(e.tag)] = normalize(v.VR, v.value, e.keyword)
            else:
                out[int(e.tag)] = normalize(key_vr(e.tag) if e.tag in KEY_LEVEL or v is None else e.VR, v,
                                            e.keyword)
        uk = UNIQUE[level]
        out[tag_for_keyword(uk)] = normalize("UI" if uk != "PatientID" else "LO", self.raw(ent, uk), uk)
        return out


def self_get(keys, keyword):
    for e in keys:
        if e.keyword == keyword:
            return e.value
    return None


def match_values(vr: str, qvals: list[str], stored, ci_names: bool = True, fuzzy: bool = False) -> bool:
    """Does one key (its query values) match an entity's stored value(s)?"""
    svals = [str(v) for v in _values(stored)]
    svals = [s for s in svals if s != ""]
    if not svals:
        return False
    if vr == "UI":
        return any(s in qvals for s in svals)
    if vr == "DA":
        lo, hi = da_interval(qvals[0])
        return any(_in(parse_da(s), lo, hi) for s in svals if _DA_RE.match(s.strip()))
    if vr == "TM":
        lo, hi = tm_interval(qvals[0])
        return any(_in(parse_tm(s)[0], lo, hi) for s in svals)
    if vr == "PN":
        return any(_str_match(q, c, ci_names) for q in qvals for s in svals for c in pn_candidates(s, fuzzy))
    if vr in ("IS", "US", "UL", "SS", "SL"):
        try:
            return any(int(q) == int(s) for q in qvals for s in svals)
        except ValueError:
            return False
    if vr == "DS":
        return any(float(q) == float(s) for q in qvals for s in svals)
    return any(_str_match(q, s) for q in qvals for s in svals)


@dataclass
class SeqExpect:
    """Expected returned sequence: every returned item is one of the stored items (projected on
    the item keys asked), at least one of them is a matching item; an entity without the
    sequence returns no item (or one item of empty values)."""
    all_items: list
    matching: list
    keys: list

    def check(self, got) -> str | None:
        if not isinstance(got, list):
            return f"expected a sequence, got {got!r}"
        if not self.all_items:
            if not got or all(all(v in ("", None) for v in it.values()) for it in got):
                return None
            return f"entity has no such sequence but {got!r} was returned"
        if not got:
            return f"no item returned; stored items {self.all_items!r}"
        for it in got:
            it2 = {k: it.get(k, "") for k in self.keys}
            if it2 not in self.all_items:
                return f"returned item {it2!r} is not a stored item {self.all_items!r}"
        if not any({k: it.get(k, "") for k in self.keys} in self.matching for it in got):
            return f"no returned item {got!r} is a matching item {self.matching!r}"
        return None


def _charset_of(ds: Dataset) -> str:
    cs = ds.get("SpecificCharacterSet")
    if cs is None:
        return ""
    vals = [str(v) for v in _values(cs)]
    return "\\".join(vals)


# --- comparing MIFAS's responses --------------------------------------------------------------


def response_view(ident: Dataset) -> dict:
    """{tag: normalized value} of a response identifier (SpecificCharacterSet left out)."""
    out = {}
    for e in ident:
        if e.tag == SPECIFIC_CHARACTER_SET:
            continue
        out[int(e.tag)] = normalize(e.VR, e.value, e.keyword)
    return out


def _text_values(expected: dict):
    for tag, v in expected.items():
        if isinstance(v, SeqExpect):
            for it in v.all_items:
                yield from _text_values(it)
            continue
        if isinstance(v, str):
            yield v
        elif isinstance(v, (tuple, frozenset)):
            yield from (x for x in v if isinstance(x, str))


def expected_charset(query_charset: str, expected: dict) -> str | None:
    """The contract: no (0008,0005) when every value is ASCII; else the query's character set
    when it can hold every value (ISO_IR 100, GB18030, ISO_IR 192), else ISO_IR 192."""
    texts = list(_text_values(expected))
    if all(t.isascii() for t in texts):
        return None
    codec = {"ISO_IR 100": "latin-1", "GB18030": "gb18030", "ISO_IR 192": "utf-8"}.get(query_charset)
    if codec:
        try:
            for t in texts:
                t.encode(codec)
            return query_charset
        except UnicodeEncodeError:
            pass
    return "ISO_IR 192"


def name(tag: int) -> str:
    return keyword_for_tag(tag) or f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def compare(ans: Answer, responses, final_status: int | None = None, check_charset: bool = True,
            upper_unique_ok: bool = True) -> list[str]:
    """Differences between MIFAS's C-FIND responses and the oracle's answer (empty = equal).
    responses: [(status, identifier Dataset or None)] for the pending responses; final_status is
    the status of the last response."""
    problems = []
    if ans.failure is not None:
        if responses:
            problems.append(f"{len(responses)} pending responses before a failure was expected")
        if final_status != ans.failure:
            problems.append(f"final status 0x{final_status if final_status is not None else -1:04X}, "
                            f"expected 0x{ans.failure:04X} ({ans.why})")
        return problems
    if final_status is not None and final_status != SUCCESS:
        problems.append(f"final status 0x{final_status:04X}, expected 0x0000")
    got = {}
    uk = ans.unique_tag
    for status, ident in responses:
        if status != ans.pending:
            problems.append(f"pending status 0x{status:04X}, expected 0x{ans.pending:04X}")
        if ident is None:
            problems.append("pending response without identifier")
            continue
        view = response_view(ident)
        key = view.get(uk)
        if key in got:
            problems.append(f"{name(uk)}={key} returned twice")
        got[key] = (view, ident)
    missing = set(ans.expected) - set(got)
    extra = set(got) - set(ans.expected)
    if missing:
        problems.append(f"missing matches ({name(uk)}): {sorted(missing)}")
    if extra:
        problems.append(f"unexpected matches ({name(uk)}): {sorted(map(str, extra))}")
    upper_unique = {tag_for_keyword(k) for k in UNIQUE.values()}
    for key in sorted(set(got) & set(ans.expected)):
        exp = ans.expected[key]
        view, ident = got[key]
        for tag, ev in exp.items():
            if tag not in view:
                problems.append(f"{key}: {name(tag)} not returned")
                continue
            gv = view[tag]
            if isinstance(ev, SeqExpect):
                err = ev.check(gv)
                if err:
                    problems.append(f"{key}: {name(tag)}: {err}")
            elif gv != ev:
                problems.append(f"{key}: {name(tag)} = {gv!r}, expected {ev!r}")
        for tag in set(view) - set(exp):
            if upper_unique_ok and tag in upper_unique:
                # unique keys of upper levels may come back, with the entity's value
                if view[tag] != ans.upper[key][tag]:
                    problems.append(f"{key}: {name(tag)} = {view[tag]!r} returned unasked, "
                                    f"entity has {ans.upper[key][tag]!r}")
                continue
            problems.append(f"{key}: {name(tag)} returned but not asked ({view[tag]!r})")
        if check_charset:
            want = expected_charset(ans.query_charset, exp)
            have = _charset_of(ident) or None
            if have != want:
                problems.append(f"{key}: SpecificCharacterSet {have!r}, expected {want!r}")
    return problems
