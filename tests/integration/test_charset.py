"""Character sets (issue 15, defect 2): pydicom's chrH31, chrH32 (Japanese, ISO 2022 code
extensions), chrI2 (Korean, ISO 2022 IR 149), chrX1 (UTF-8) and chrX2 (GB18030) are stored with
DCMTK storescu into the real binary, then found with pynetdicom and DCMTK findscu by their
Japanese, Korean and Chinese names, in several character sets. The oracle is pydicom: the names
it decodes from the original files. Each answer must decode to that Unicode name, and come in the
requester's character set when that set holds the name, else in ISO_IR 192 (Conformance
Statement 4.2.1.7.10). The stored objects stay byte for byte what was sent."""

from __future__ import annotations

import shutil

import pydicom
import pytest
from pydicom.data import get_charset_files

from find_clients import findscu, identifier, pyn_find
from find_oracle import STUDY_ROOT
from mifas_helpers import check_stored_object, file_dataset_bytes, storescu

FIXTURES = ["chrH31", "chrH32", "chrI2", "chrX1", "chrX2"]
UTF8 = ["ISO_IR 192"]
JP = ["", "ISO 2022 IR 87"]
JP_KANA = ["ISO 2022 IR 13", "ISO 2022 IR 87"]
KR = ["", "ISO 2022 IR 149"]
CN = ["", "ISO 2022 IR 58"]


def _path(name: str) -> str:
    found = get_charset_files(f"{name}.dcm")
    assert found, f"pydicom's test file {name}.dcm is missing (pydicom.data.get_charset_files)"
    return found[0]


# Oracle: fixture → (PatientID, PatientName as pydicom decodes the original file).
ORACLE = {}
for _n in FIXTURES:
    _ds = pydicom.dcmread(_path(_n))
    ORACLE[_n] = (_ds.PatientID, str(_ds.PatientName))
BY_ID = {pid: name for name, (pid, _) in ORACLE.items()}


def _name(ds) -> str:
    """The PatientName of an answer as Unicode. pydicom 3.0 reads ISO 2022 IR 58 text with its
    escape sequences left in (and writes it without them); for that set the raw bytes are read
    here instead: with only G1 designations (`ESC $ ) A`) and ASCII in G0, dropping the escapes
    leaves EUC-CN, which is GB 2312."""
    if _charset(ds) == CN:
        return ds["PatientName"].value.original_string.replace(b"\x1b$)A", b"").decode("gb2312").rstrip(" ")
    return str(ds.PatientName)


def _charset(ds) -> list[str]:
    v = ds.get("SpecificCharacterSet")
    if v is None:
        return []
    return [v] if isinstance(v, str) else list(v)


@pytest.fixture(scope="module")
def archive(shared_mifas, tmp_path_factory):
    d = tmp_path_factory.mktemp("charset_files")
    files = [shutil.copy(_path(n), d / f"{n}.dcm") for n in FIXTURES]
    r = storescu(shared_mifas.host, shared_mifas.port, files, called=shared_mifas.aet)
    assert r.returncode == 0, f"storescu failed:\n{r.stdout}\n{r.stderr}"
    return shared_mifas, files


def test_stored_objects_keep_their_bytes(archive):
    server, files = archive
    for f in files:
        ds = pydicom.dcmread(f)
        check_stored_object(server.data_dir, ds.SOPClassUID, ds.SOPInstanceUID,
                            ds.file_meta.TransferSyntaxUID, dataset=file_dataset_bytes(f))


def _query(server, client, charset, name, workdir):
    keys = dict(QueryRetrieveLevel="STUDY", StudyInstanceUID="", PatientID="", PatientName=name)
    ds = identifier(keys)
    ds.SpecificCharacterSet = charset if len(charset) > 1 else charset[0]
    if client == "pynetdicom":
        res = pyn_find(server, STUDY_ROOT, ds)
    else:
        res = findscu(server, STUDY_ROOT, ds, workdir)
    assert res.final == 0x0000, res.describe() + (res.log[-3000:] if res.log else "")
    return {str(ident.PatientID): (_name(ident), _charset(ident)) for _, ident in res.pending}


# (query character set, PatientName key, {fixture: character set of its answer}).
CASES = [
    # Kanji of the ideographic group, asked in UTF-8: answered in UTF-8.
    (UTF8, "山田*", {"chrH31": UTF8, "chrH32": UTF8}),
    # Asked in ISO 2022 IR 87: chrH31 fits it; chrH32's half-width katakana (JIS X 0201) do not.
    (JP, "山田*", {"chrH31": JP, "chrH32": UTF8}),
    # With ISO 2022 IR 13 as first value both fit.
    (JP_KANA, "山田*", {"chrH31": JP_KANA, "chrH32": JP_KANA}),
    # Half-width katakana of chrH32's alphabetic group.
    (JP_KANA, "ﾔﾏﾀﾞ*", {"chrH32": JP_KANA}),
    # Hiragana of the phonetic group.
    (JP, "やまだ*", {"chrH31": JP, "chrH32": UTF8}),
    # Korean: hanja of the ideographic group, hangul of the phonetic one.
    (KR, "洪*", {"chrI2": KR}),
    (UTF8, "홍*", {"chrI2": UTF8}),
    (KR, "Hong*", {"chrI2": KR}),
    # Chinese stored in UTF-8 (王^小東) and in GB18030 (王^小东): asked in GB 2312 with code
    # extensions, only the simplified name fits it (東 is not in GB 2312). pydicom sends this
    # query without `ESC $ ) A` (see _name), which MIFAS tolerates (Conformance Statement 6).
    (CN, "王*", {"chrX1": UTF8, "chrX2": CN}),
    (["GB18030"], "王*", {"chrX1": ["GB18030"], "chrX2": ["GB18030"]}),
]


@pytest.mark.parametrize("client", ["pynetdicom", "findscu"])
@pytest.mark.parametrize("charset,name,expected", CASES,
                         ids=[f"{'|'.join(c)}-{n}" for c, n, _ in CASES])
def test_found_by_name_in_its_character_set(archive, tmp_path, client, charset, name, expected):
    server, _ = archive
    got = _query(server, client, charset, name, tmp_path)
    want_ids = {ORACLE[f][0] for f in expected}
    assert set(got) == want_ids, f"{name!r} in {charset}: found {sorted(got)}, expected {sorted(want_ids)}"
    for fixture, answer_charset in expected.items():
        pid, oracle_name = ORACLE[fixture]
        got_name, got_charset = got[pid]
        assert got_name == oracle_name, f"{fixture}: answered {got_name!r}, pydicom reads {oracle_name!r}"
        assert got_charset == answer_charset, f"{fixture}: answered in {got_charset}, expected {answer_charset}"


# (query character set, key, fixture, raw PatientName expected in the answer; None = the
# original file's bytes, which use the same code extensions).
RAW_CASES = [
    (KR, "洪*", "chrI2", None),
    (JP, "山田*", "chrH31", None),
    (JP_KANA, "ﾔﾏﾀﾞ*", "chrH32", None),
    # chrX2 is stored in GB18030; in ISO 2022 IR 58 it reads as in PS3.5 Annex K.
    (CN, "王*", "chrX2", b"Wang^XiaoDong=\x1b$)A\xcd\xf5^\x1b$)A\xd0\xa1\xb6\xab"),
]


@pytest.mark.parametrize("charset,name,fixture,raw", RAW_CASES, ids=[c[2] for c in RAW_CASES])
def test_answers_to_iso_2022_queries_carry_escape_sequences(archive, charset, name, fixture, raw):
    """The answer really is in ISO 2022 (not UTF-8 declared as such): its raw PatientName bytes
    are those of PS3.5's examples."""
    server, _ = archive
    ds = identifier(dict(QueryRetrieveLevel="STUDY", PatientID=ORACLE[fixture][0], PatientName=name))
    ds.SpecificCharacterSet = charset
    res = pyn_find(server, STUDY_ROOT, ds)
    assert res.final == 0 and len(res.pending) == 1, res.describe()
    answered = res.pending[0][1]
    assert _charset(answered) == charset
    if raw is None:
        raw = pydicom.dcmread(_path(fixture))["PatientName"].value.original_string
    got = answered["PatientName"].value.original_string
    assert got.rstrip(b" ") == raw.rstrip(b" ")
