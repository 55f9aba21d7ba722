"""C-FIND SCP (issue 3): every answer is compared exactly with the independent oracle
(find_oracle.py, pydicom over the very files imported): the set of returned unique keys, the
values of every asked key, the pending status (0xFF00/0xFF01), the final status and the
response's (0008,0005). Each query runs through pynetdicom and through DCMTK findscu.

One server for the module, filled by `mifas import` with the find corpus (find_corpus.py)."""

from __future__ import annotations

import pytest
from pydicom.dataelem import DataElement

import find_corpus as C
import find_oracle as O
from find_clients import findscu, identifier, pyn_find
from find_oracle import PATIENT_ROOT as PR, STUDY_ROOT as SR


st, se, sop = C.st, C.se, C.sop  # the corpus' UIDs, from find_corpus


CT, MR, US = C.SOP["CT"], C.SOP["MR"], C.SOP["US"]

STUDY_KEYS = dict(QueryRetrieveLevel="STUDY", StudyInstanceUID="", StudyDate="", StudyTime="",
                  AccessionNumber="", StudyID="", PatientName="", PatientID="", PatientBirthDate="",
                  PatientSex="", ReferringPhysicianName="", StudyDescription="", ModalitiesInStudy="",
                  SOPClassesInStudy="", NumberOfStudyRelatedSeries="", NumberOfStudyRelatedInstances="",
                  NumberOfPatientRelatedStudies="")
SERIES_KEYS = dict(QueryRetrieveLevel="SERIES", SeriesInstanceUID="", Modality="", SeriesNumber="",
                   SeriesDescription="", BodyPartExamined="", SeriesDate="", SeriesTime="",
                   NumberOfSeriesRelatedInstances="")
IMAGE_KEYS = dict(QueryRetrieveLevel="IMAGE", SOPInstanceUID="", SOPClassUID="", InstanceNumber="",
                  ImageType="", ContentDate="", ContentTime="", Rows="", Columns="", NumberOfFrames="")
PATIENT_KEYS = dict(QueryRetrieveLevel="PATIENT", PatientName="", PatientID="", PatientBirthDate="",
                    PatientSex="", IssuerOfPatientID="", OtherPatientIDs="", PatientComments="",
                    NumberOfPatientRelatedStudies="", NumberOfPatientRelatedSeries="",
                    NumberOfPatientRelatedInstances="")


def study(**kw):
    return {**STUDY_KEYS, **kw}


def series(**kw):
    return {**SERIES_KEYS, **kw}


def image(**kw):
    return {**IMAGE_KEYS, **kw}


def patient(**kw):
    return {**PATIENT_KEYS, **kw}


# (id, model, keys, expected number of matches). The number is a hand check of the oracle
# itself on this corpus (a vacuous oracle would not pass it); the exact answer is the oracle's.
CASES = [
    # --- levels (universal matching on every key) ---
    ("patient_all", PR, patient(), 15),
    ("study_all", SR, study(), 20),
    ("study_of_patient_pr", PR, dict(QueryRetrieveLevel="STUDY", PatientID="FIND-P5", StudyInstanceUID="",
                                     StudyDate="", AccessionNumber="", ModalitiesInStudy="",
                                     NumberOfStudyRelatedSeries="", NumberOfStudyRelatedInstances=""), 3),
    ("series_of_study", SR, series(StudyInstanceUID=st(0), RequestAttributesSequence=[]), 2),
    ("series_all", SR, series(), 25),
    ("series_pr", PR, dict(QueryRetrieveLevel="SERIES", PatientID="FIND-P1", StudyInstanceUID=st(1),
                           SeriesInstanceUID="", Modality="", NumberOfSeriesRelatedInstances=""), 3),
    ("image_of_series", SR, image(StudyInstanceUID=st(0), SeriesInstanceUID=se(0, 1)), 2),
    ("image_all", SR, image(), 42),
    ("image_pr", PR, dict(QueryRetrieveLevel="IMAGE", PatientID="FIND-P2", StudyInstanceUID=st(2),
                          SeriesInstanceUID=se(2, 0), SOPInstanceUID="", InstanceNumber="",
                          NumberOfFrames=""), 3),
    ("no_match", SR, study(PatientID="NOBODY"), 0),
    # --- single value matching ---
    ("single_patient_id", SR, study(PatientID="FIND-P5"), 3),
    ("single_accession", SR, study(AccessionNumber="ACC3001"), 1),
    ("single_description", SR, study(StudyDescription="CT HEAD"), 1),
    ("single_case_sensitive", SR, study(StudyDescription="ct head"), 0),
    ("single_modality", SR, series(Modality="MR"), 6),
    ("single_body_part", SR, series(BodyPartExamined="CHEST"), 5),
    ("single_instance_number", SR, image(InstanceNumber="2"), 12),
    ("single_sop_class", SR, image(SOPClassUID=MR), 11),
    ("single_rows", SR, image(Rows=4), 33),
    ("single_sex", PR, patient(PatientSex="F"), 4),
    ("single_study_id", SR, study(StudyID="4MR1"), 1),
    # --- universal matching with '*' ---
    ("universal_star", SR, study(AccessionNumber="*"), 20),
    # --- wildcard matching ---
    ("wild_prefix", SR, study(AccessionNumber="ACC1*"), 2),
    ("wild_suffix", SR, study(StudyDescription="*HEAD"), 2),
    ("wild_question", SR, study(StudyDescription="MR ?NEE"), 1),
    ("wild_inner", SR, study(StudyDescription="C*T*"), 6),
    ("wild_patient_id", PR, patient(PatientID="FIND-P?"), 8),
    ("wild_series_description", SR, series(SeriesDescription="T? SAG"), 3),
    ("wild_no_match", SR, study(AccessionNumber="ACC?"), 0),
    # --- person names: case-insensitive, whole value / groups / components ---
    ("pn_prefix_ci", SR, study(PatientName="müller*"), 4),
    ("pn_whole_value", SR, study(PatientName="MÜLLER^JÜRGEN"), 3),
    # Per component group (PS3.4 C.2.2.2.4): a given name or a single component alone is not the
    # value of a group, so without fuzzy matching it finds nothing (see FUZZY_CASES).
    ("pn_component", SR, study(PatientName="jürgen"), 0),
    ("pn_ideographic_prefix", SR, study(PatientName="郭*"), 5),
    ("pn_group_without_caret", SR, study(PatientName="郭政達"), 4),
    ("pn_family_component", SR, study(PatientName="KUO"), 0),
    ("pn_alphabetic_group", SR, study(PatientName="wang^xiaodong"), 2),
    ("pn_ideographic_group", SR, study(PatientName="王^小东"), 1),
    ("pn_exact_component", SR, study(PatientName="smith"), 0),
    ("pn_given_name_prefix", SR, study(PatientName="ann*"), 0),
    ("pn_ideographic_given_name", SR, study(PatientName="政*"), 0),
    ("pn_component_prefix", SR, study(PatientName="smith*"), 4),
    ("pn_whole_wildcard", SR, study(PatientName="Smi?h^J*"), 3),
    ("pn_patient_level", PR, patient(PatientName="*ller*"), 3),
    ("pn_whole_with_groups", SR, study(PatientName="kuo^cheng-ta=郭^政達"), 2),
    ("pn_group_wildcard", SR, study(PatientName="*^政達"), 2),
    ("pn_ideographic_component_wildcard", SR, study(PatientName="郭^*"), 3),
    ("pn_prefix_of_whole", SR, study(PatientName="郭政達*"), 4),
    ("pn_referring", SR, study(ReferringPhysicianName="HOUSE^GREGORY"), 1),
    ("pn_referring_latin1", SR, study(ReferringPhysicianName="günther*"), 1),
    # --- dates ---
    ("da_single", SR, study(StudyDate="20240305"), 2),
    ("da_range", SR, study(StudyDate="20240301-20240331"), 5),
    ("da_open_low", SR, study(StudyDate="20240401-"), 4),
    ("da_open_high", SR, study(StudyDate="-20231231"), 5),
    ("da_one_day_range", SR, study(StudyDate="20240229-20240229"), 1),
    ("da_birth_range", PR, patient(PatientBirthDate="19600101-19691231"), 2),
    ("da_series_date", SR, series(SeriesDate="20240305-20240306"), 6),
    ("da_content_date", SR, image(ContentDate="-20240115"), 12),
    # --- times ---
    ("tm_range", SR, study(StudyTime="080000-120000"), 8),
    ("tm_open_high", SR, study(StudyTime="-0830"), 4),
    ("tm_open_low", SR, study(StudyTime="20-"), 2),
    ("tm_hour_precision", SR, study(StudyTime="10"), 1),
    ("tm_second_precision", SR, study(StudyTime="101010"), 1),
    ("tm_fraction_range", SR, study(StudyTime="101010.1-101010.2"), 1),
    ("tm_open_low_minutes", SR, study(StudyTime="2359-"), 1),
    ("tm_absent_attribute", PR, patient(PatientBirthTime="0000-2359"), 0),
    ("tm_content_time", SR, image(ContentTime="083001-083002"), 3),
    ("da_tm_independent", SR, study(StudyDate="20240305-20240307", StudyTime="1000-1800"), 1),
    # --- UID lists ---
    ("uid_list_study", SR, study(StudyInstanceUID=[st(0), st(3), "1.2.3.4.5"]), 2),
    ("uid_list_series", SR, series(SeriesInstanceUID=[se(1, 0), se(1, 2), se(9, 1)]), 3),
    ("uid_list_image", SR, image(SOPInstanceUID=[sop(0, 0, 0), sop(0, 0, 2), sop(7, 0, 3)]), 3),
    ("uid_list_sop_class", SR, image(SOPClassUID=[US, C.SOP["SR"]]), 5),
    ("uid_single_study", PR, dict(QueryRetrieveLevel="STUDY", PatientID="FIND-P3", StudyInstanceUID=st(5),
                                  StudyDescription=""), 1),
    # --- multi-valued attributes ---
    ("mv_other_patient_ids", PR, patient(OtherPatientIDs="ALT-5"), 1),
    ("mv_image_type", SR, image(ImageType="REFORMATTED"), 2),
    ("mv_modalities_single", SR, study(ModalitiesInStudy="PR"), 1),
    ("mv_modalities_list", SR, study(ModalitiesInStudy=["SR", "US"]), 3),
    ("mv_modalities_wildcard", SR, study(ModalitiesInStudy="C*"), 9),
    # --- sequence matching (one item in the key) ---
    ("seq_requested_procedure", SR, series(RequestAttributesSequence=[
        {"RequestedProcedureID": "RP-1001", "ScheduledProcedureStepID": ""}]), 2),
    ("seq_wildcard_item_key", SR, series(RequestAttributesSequence=[
        {"RequestedProcedureID": "", "ScheduledProcedureStepID": "SPS-1009*"}]), 1),
    ("seq_one_item_must_match_all", SR, series(RequestAttributesSequence=[
        {"RequestedProcedureID": "RP-1001", "ScheduledProcedureStepID": "SPS-1009A"}]), 0),
    ("seq_other_study", SR, series(RequestAttributesSequence=[
        {"RequestedProcedureID": "RP-5001", "ScheduledProcedureStepID": ""}]), 1),
    # --- several keys together (all must match) and more optional keys ---
    ("and_of_keys", SR, study(PatientName="smith*", StudyDate="20240101-20240331", ModalitiesInStudy="US"), 1),
    ("sop_classes_in_study", SR, study(SOPClassesInStudy=C.SOP["SR"]), 1),
    ("number_of_frames", SR, image(NumberOfFrames="1"), 5),
    ("issuer_of_patient_id", PR, patient(IssuerOfPatientID="HOSP-B"), 1),
    ("patient_comments_wildcard", PR, patient(PatientComments="*contrast*"), 1),
    ("birth_date_at_study_level", SR, study(PatientBirthDate="19751120"), 2),
    ("series_number", SR, series(SeriesNumber="3"), 1),
    # --- counts (each level) ---
    ("counts_patient", PR, dict(QueryRetrieveLevel="PATIENT", PatientID="FIND-P1",
                                NumberOfPatientRelatedStudies="", NumberOfPatientRelatedSeries="",
                                NumberOfPatientRelatedInstances=""), 1),
    ("counts_study", SR, dict(QueryRetrieveLevel="STUDY", PatientID="FIND-P1", StudyInstanceUID="",
                              NumberOfStudyRelatedSeries="", NumberOfStudyRelatedInstances="",
                              ModalitiesInStudy="", SOPClassesInStudy=""), 2),
    ("counts_series", SR, dict(QueryRetrieveLevel="SERIES", StudyInstanceUID=st(9), SeriesInstanceUID="",
                               NumberOfSeriesRelatedInstances=""), 2),
    # --- other attributes: returned from the header, never matched (0xFF01 when valued) ---
    ("other_return_keys_patient", PR, patient(EthnicGroup="", PatientAddress=""), 15),
    ("other_return_keys_study", SR, study(InstitutionName="", Manufacturer="", PerformingPhysicianName=""), 20),
    ("other_return_keys_series", SR, series(StudyInstanceUID=st(0), StationName="", Manufacturer=""), 2),
    ("other_return_keys_image", SR, image(SeriesInstanceUID=se(1, 0), PhotometricInterpretation="",
                                          BitsStored="", SliceThickness=""), 2),
    ("other_matching_key_ff01", SR, study(PatientID="FIND-P1", InstitutionName="Nowhere*"), 2),
    ("other_matching_key_ff01_image", SR, image(SeriesInstanceUID=se(0, 0), Manufacturer="NONE"), 3),
    ("other_sequence_key_ff01", SR, study(PatientID="FIND-P6", ReferencedStudySequence=[
        {"ReferencedSOPClassUID": "", "ReferencedSOPInstanceUID": "1.2.3.4"}]), 1),
    ("retrieve_ae_and_availability", SR, study(PatientID="FIND-P3", RetrieveAETitle="", InstanceAvailability=""), 2),
    # --- keys of upper levels asked as return keys ---
    ("upper_return_keys_image", SR, dict(QueryRetrieveLevel="IMAGE", SeriesInstanceUID=se(1, 0), SOPInstanceUID="",
                                         PatientName="", PatientID="", StudyDate="", Modality=""), 2),
    ("upper_unique_keys", PR, dict(QueryRetrieveLevel="IMAGE", PatientID="FIND-P5", StudyInstanceUID=st(7),
                                   SeriesInstanceUID=se(7, 0), SOPInstanceUID="", InstanceNumber=""), 4),
]


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    d = tmp_path_factory.mktemp("find")
    files = C.generate_find_corpus(d / "files")
    served = C.ServedArchive(d / "server", files)
    oracle = O.Archive(files, server_aet=served.server.aet)
    yield served.server, oracle
    served.close()


def check(oracle, model, ds, res, combined=False, expect_n=None, fuzzy=False):
    ans = oracle.find(model, ds, combined_datetime=combined, fuzzy_names=fuzzy)
    if expect_n is not None:
        assert len(ans.expected) == expect_n, (
            f"oracle self-check: {len(ans.expected)} matches, the case says {expect_n}")
    problems = O.compare(ans, res.pending, res.final)
    assert not problems, (f"query {ds!r}\nMIFAS: {res.describe()}\n" + "\n".join(problems[:30]))
    return ans


@pytest.mark.parametrize("client", ["pynetdicom", "findscu"])
@pytest.mark.parametrize("case_id,model,keys,n", CASES, ids=[c[0] for c in CASES])
def test_query(archive, tmp_path, client, case_id, model, keys, n):
    server, oracle = archive
    ds = identifier(keys)
    if client == "pynetdicom":
        res = pyn_find(server, model, ds)
    else:
        res = findscu(server, model, ds, tmp_path)
    check(oracle, model, ds, res, expect_n=n)


# --- character sets ----------------------------------------------------------------------------

# (query character set or None, PatientName key, number of studies) -- the names stored in
# ISO_IR 100, ISO_IR 192 and GB18030 must be found from a query in any of them; the response
# is in the query's charset when it can hold every value, else ISO_IR 192 (compare() checks it).
CHARSET_CASES = [
    ("ISO_IR 100", "müller*", 4),
    ("ISO_IR 100", "Buc^jérôme", 1),
    ("ISO_IR 100", "äneas*", 1),
    ("ISO_IR 100", "wang*", 2),        # CJK names: answered in ISO_IR 192
    ("ISO_IR 100", "guo*", 1),         # a GB18030-stored name
    ("ISO_IR 192", "郭*", 5),
    ("ISO_IR 192", "MÜLLER^JÜRGEN", 3),
    ("ISO_IR 192", "*^jürgen", 3),
    ("ISO_IR 192", "王*", 2),
    ("GB18030", "郭*", 5),
    ("GB18030", "müller*", 4),
    ("GB18030", "王^小東", 1),
    ("GB18030", "王^小东", 1),
    ("GB18030", "郭^政達", 2),
    ("ISO_IR 100", "m?ller*", 4),      # '?' is one character, whatever its byte length
    ("ISO_IR 192", "m?ller*", 4),
    ("GB18030", "m?ller*", 4),
    ("GB18030", "郭?達", 4),
    ("ISO_IR 192", "?政達", 4),
    (None, "kuo*", 2),                 # ASCII query, non-ASCII answer: ISO_IR 192
    (None, "smith*", 4),               # ASCII answer: no (0008,0005)
]


@pytest.mark.parametrize("client", ["pynetdicom", "findscu"])
@pytest.mark.parametrize("charset,name,n", CHARSET_CASES,
                         ids=[f"{c[0] or 'default'}-{c[1]}" for c in CHARSET_CASES])
def test_charset(archive, tmp_path, client, charset, name, n):
    server, oracle = archive
    keys = dict(QueryRetrieveLevel="STUDY", StudyInstanceUID="", PatientName=name, PatientID="",
                StudyDescription="", ReferringPhysicianName="")
    if charset:
        keys = {"SpecificCharacterSet": charset, **keys}
    ds = identifier(keys)
    res = pyn_find(server, SR, ds) if client == "pynetdicom" else findscu(server, SR, ds, tmp_path)
    ans = check(oracle, SR, ds, res, expect_n=n)
    # the decoded name of each response is the stored one (also checked by compare())
    for _, ident in res.pending:
        uid = str(ident.StudyInstanceUID)
        assert str(ident.PatientName) == ans.expected[uid][0x00100010]


@pytest.mark.parametrize("charset,name,n", [("ISO_IR 100", "müller*", 3), ("GB18030", "郭*", 3),
                                            ("ISO_IR 192", "*小*", 3)])
def test_charset_patient_level(archive, charset, name, n):
    server, oracle = archive
    ds = identifier({"SpecificCharacterSet": charset, **patient(PatientName=name)})
    check(oracle, PR, ds, pyn_find(server, PR, ds), expect_n=n)


# --- malformed identifiers -----------------------------------------------------------------------

A900, C000 = O.IDENTIFIER_DOES_NOT_MATCH, O.UNABLE_TO_PROCESS

# (id, model, keys, expected failure, clients)
ERROR_CASES = [
    ("no_level", SR, dict(PatientID="FIND-P1", StudyInstanceUID=""), A900),
    ("unknown_level", SR, dict(QueryRetrieveLevel="FOO", StudyInstanceUID=""), A900),
    ("patient_level_in_study_root", SR, dict(QueryRetrieveLevel="PATIENT", PatientID=""), A900),
    ("lower_level_key_study", SR, study(SeriesDescription=""), A900),
    ("lower_level_key_patient", PR, patient(StudyDate=""), A900),
    ("lower_level_key_series", SR, series(SOPInstanceUID=""), A900),
    ("lower_level_key_valued", SR, study(Modality="CT"), A900),
    ("upper_unique_key_list", SR, series(StudyInstanceUID=[st(0), st(1)]), A900),
    ("upper_unique_key_list_pr", PR, dict(QueryRetrieveLevel="STUDY", PatientID=["FIND-P1", "FIND-P2"],
                                          StudyInstanceUID=""), A900),
    ("unparsable_date", SR, study(StudyDate="2024x101"), C000),
    ("unparsable_date_range", SR, study(StudyDate="20240101-2024"), C000),
    ("unparsable_time", SR, study(StudyTime="25ab"), C000),
]
# wrong VRs only reach the server intact in an explicit VR transfer syntax
WRONG_VR_CASES = [
    ("wrong_vr_date", SR, study(StudyDate=DataElement(0x00080020, "LO", "20240305")), A900),
    ("wrong_vr_patient_id", SR, study(PatientID=DataElement(0x00100020, "US", 5)), A900),
    ("wrong_vr_uid", SR, series(SeriesInstanceUID=DataElement(0x0020000E, "LO", "1.2.3")), A900),
]


def _assert_failure(oracle, model, ds, res, expected):
    ans = oracle.find(model, ds)
    assert ans.failure == expected, f"oracle self-check: {ans.failure} {ans.why}"
    problems = O.compare(ans, res.pending, res.final)
    assert not problems, f"query {ds!r}\nMIFAS: {res.describe()}\n" + "\n".join(problems)
    assert res.comment and res.comment.strip(), f"failure 0x{res.final:04X} without an ErrorComment"


@pytest.mark.parametrize("case_id,model,keys,expected", ERROR_CASES + WRONG_VR_CASES,
                         ids=[c[0] for c in ERROR_CASES + WRONG_VR_CASES])
def test_malformed_pynetdicom(archive, case_id, model, keys, expected):
    """Failure status + ErrorComment; the association stays usable and the server answers C-ECHO."""
    from find_clients import pyn_associate, pyn_echo_on, pyn_find_on
    from pydicom.uid import ExplicitVRLittleEndian
    server, oracle = archive
    ds = identifier(keys)
    assoc = pyn_associate(server, ts=(ExplicitVRLittleEndian,))
    try:
        res = pyn_find_on(assoc, model, ds)
        _assert_failure(oracle, model, ds, res, expected)
        ok = identifier(study(PatientID="FIND-P2"))
        after = pyn_find_on(assoc, SR, ok, msg_id=2)
        assert not O.compare(oracle.find(SR, ok), after.pending, after.final), "association unusable after the failure"
        assert pyn_echo_on(assoc) == 0
    finally:
        if assoc.is_established:
            assoc.release()
    server.echo_ok()


@pytest.mark.parametrize("case_id,model,keys,expected", ERROR_CASES, ids=[c[0] for c in ERROR_CASES])
def test_malformed_findscu(archive, tmp_path, case_id, model, keys, expected):
    server, oracle = archive
    ds = identifier(keys)
    _assert_failure(oracle, model, ds, findscu(server, model, ds, tmp_path), expected)
    server.echo_ok()


def test_undecodable_identifier(archive):
    """An identifier whose last element runs past the end of the data set: 0xC000 with an
    ErrorComment (not an abort); the association and the server keep working."""
    from find_clients import RawFind, c_find_rq, encode_explicit
    import raw_dul as R
    server, oracle = archive
    good = encode_explicit(identifier(dict(QueryRetrieveLevel="STUDY", StudyInstanceUID="")))
    # (0010,0010) PN, length 100, only 6 bytes of value follow
    bad = good + b"\x10\x00\x10\x00PN\x64\x00" + b"ABCDEF"
    a = RawFind(server.host, server.port, timeout=15).open(server.aet)
    try:
        a.send_message(1, c_find_rq(1, SR), bad)
        res = a.find_responses()
        assert res.final == C000 and not res.pending, f"MIFAS: {res.describe()} (expected 0xC000)"
        assert res.comment, "0xC000 without ErrorComment"
        a.send_message(1, c_find_rq(2, SR), good)
        res2 = a.find_responses()
        assert res2.final == 0 and len(res2.pending) == len(oracle.studies), res2.describe()
        assert a.echo(cid=5).status == 0
        assert a.release().type == R.A_RELEASE_RP
    finally:
        a.close()
    server.echo_ok()


# --- extended negotiation: relational declined, combined date-time accepted ----------------------


@pytest.mark.parametrize("model", [SR, PR])
def test_extended_negotiation_answer(archive, model):
    """Relational (byte 1) declined, combined date-time (byte 2) and fuzzy semantic matching of
    person names (3) accepted, timezone adjustment (4) declined."""
    from find_clients import FIND_UID, pyn_associate
    server, _ = archive
    assoc = pyn_associate(server, ext_info=b"\x01\x01\x01\x01", models=(model,))
    try:
        info = assoc.acceptor.sop_class_extended.get(FIND_UID[model])
    finally:
        assoc.release()
    assert info is not None, "no SOP Class Extended Negotiation item in the A-ASSOCIATE-AC"
    assert len(info) == 4 and info[0] == 0 and info[1] == 1 and info[2] == 1, f"got {info!r}"
    assert info[3] == 0, f"timezone adjustment accepted: {info!r}"


# --- fuzzy semantic matching of person names (extended negotiation byte 3) ---------------------

# (id, keys, number of matches with fuzzy matching negotiated, number without)
FUZZY_CASES = [
    ("given_name", study(PatientName="jürgen"), 3, 0),
    ("family_component", study(PatientName="KUO"), 2, 0),
    ("exact_component", study(PatientName="smith"), 3, 0),
    ("given_name_prefix", study(PatientName="ann*"), 1, 0),
    ("ideographic_given_name", study(PatientName="政*"), 2, 0),
    # Group matching holds either way.
    ("family_prefix", study(PatientName="müller*"), 4, 4),
    ("ideographic_prefix", study(PatientName="郭*"), 5, 5),
]


@pytest.mark.parametrize("case_id,keys,n_fuzzy,n_plain", FUZZY_CASES, ids=[c[0] for c in FUZZY_CASES])
def test_fuzzy_person_names(archive, case_id, keys, n_fuzzy, n_plain):
    """With fuzzy semantic matching negotiated a PN key is also matched against single name
    components; without it, per component group only (PS3.4 C.2.2.2.4, C.5.1.1)."""
    server, oracle = archive
    ds = identifier(keys)
    check(oracle, SR, ds, pyn_find(server, SR, ds, ext_info=b"\x00\x00\x01"), fuzzy=True, expect_n=n_fuzzy)
    check(oracle, SR, ds, pyn_find(server, SR, ds, ext_info=b"\x00\x00\x00"), fuzzy=False, expect_n=n_plain)


# (id, keys, number of matches with combined matching, number without)
COMBINED_CASES = [
    ("closed", study(StudyDate="20240305-20240307", StudyTime="1000-1800"), 3, 1),
    ("open_low", study(StudyDate="20240306-", StudyTime="1000-"), 6, 5),
    ("open_high", study(StudyDate="-20240305", StudyTime="-0900"), 8, 4),
    ("series", series(SeriesDate="20240305-20240307", SeriesTime="1000-1800"), 4, 1),
    ("image_overnight", image(ContentDate="20231115-20240115", ContentTime="1000-0800"), 2, None),
]


@pytest.mark.parametrize("case_id,keys,n_combined,n_independent", COMBINED_CASES,
                         ids=[c[0] for c in COMBINED_CASES])
def test_combined_datetime(archive, case_id, keys, n_combined, n_independent):
    """With combined date-time matching negotiated, a DA range and a TM range form one DT range
    (PS3.4 C.2.2.2.5.1); without it they are matched independently."""
    server, oracle = archive
    ds = identifier(keys)
    check(oracle, SR, ds, pyn_find(server, SR, ds, ext_info=b"\x00\x01"), combined=True, expect_n=n_combined)
    if n_independent is not None:
        check(oracle, SR, ds, pyn_find(server, SR, ds), combined=False, expect_n=n_independent)
        # the same query with the option proposed as 0 (not wanted): independent matching
        check(oracle, SR, ds, pyn_find(server, SR, ds, ext_info=b"\x00\x00"), combined=False,
              expect_n=n_independent)


# --- transfer syntaxes and PDU sizes ---------------------------------------------------------------

TS_VARIANTS = [
    ("findscu", "implicit", ["-xi"]),
    ("findscu", "big_endian", ["-xb"]),
    ("findscu", "deflated", ["-xd"]),
    ("findscu", "max_pdu_4096", ["-pdu", "4096"]),
    ("pynetdicom", "implicit", "1.2.840.10008.1.2"),
    ("pynetdicom", "big_endian", "1.2.840.10008.1.2.2"),
    ("pynetdicom", "deflated", "1.2.840.10008.1.2.1.99"),
]


@pytest.mark.parametrize("client,variant,opt", TS_VARIANTS, ids=[f"{c}-{v}" for c, v, _ in TS_VARIANTS])
def test_transfer_syntax(archive, tmp_path, client, variant, opt):
    """Every transfer syntax MIFAS accepts for a FIND context carries a full answer (non-ASCII
    names included) to DCMTK and pynetdicom."""
    server, oracle = archive
    ds = identifier(study(PatientName="*"))
    if client == "findscu":
        res = findscu(server, SR, ds, tmp_path, extra=opt)
    else:
        res = pyn_find(server, SR, ds, ts=(opt,))
    check(oracle, SR, ds, res, expect_n=20)


@pytest.mark.parametrize("ts", ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.1.99"])
def test_pdv_fragments_even(archive, ts):
    """PS3.8 E.1: every PDV fragment MIFAS sends (commands and identifiers) has an even length."""
    import struct
    import zlib
    import raw_dul as R
    from find_clients import FIND_UID, c_find_rq
    import dicom_fixtures as Fx
    server, oracle = archive
    ds = identifier(study(PatientName="*"))
    data = Fx.encode_dataset(ds, implicit=(ts == "1.2.840.10008.1.2"))
    if ts.endswith(".99"):
        c = zlib.compressobj(6, zlib.DEFLATED, -15)
        data = c.compress(data) + c.flush()
        data += b"\0" * (len(data) % 2)
    a = R.RawAssociation(server.host, server.port, timeout=15)
    try:
        a.associate(called=server.aet, calling="RAWFIND", contexts=[(1, FIND_UID[SR], [ts])])
        assert a.accepted_context(1), f"FIND context with {ts} refused"
        a.send_fragments(1, c_find_rq(1, SR), True, a.default_frag())
        a.send_fragments(1, data, False, a.default_frag())
        odd, pdvs, final = [], 0, None
        while final is None:
            pdu = a.recv_pdu()
            assert pdu.type == R.P_DATA_TF, f"unexpected PDU {pdu.describe()}"
            for mch, frag in R.iter_pdvs(pdu.body):
                pdvs += 1
                if len(frag) % 2:
                    odd.append(("command" if mch & 1 else "data", len(frag)))
                if mch & 0x03 == 0x03:
                    st = struct.unpack("<H", R.parse_command(frag)[0x0900])[0]
                    if st not in (0xFF00, 0xFF01):
                        final = st
        assert final == 0, f"final status 0x{final:04X}"
        assert not odd, f"{len(odd)} of {pdvs} PDV fragments have an odd length: {odd[:8]}"
        a.release()
    finally:
        a.close()
