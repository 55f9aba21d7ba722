"""Presentation context negotiation: SOP class table, transfer syntaxes, max PDU."""

from pathlib import Path

import pytest

import dicom_fixtures as F
from mifas_helpers import REPO
from raw_dul import (A_ASSOCIATE_AC, EXPLICIT_BE, EXPLICIT_LE, IMPLICIT_LE, VERIFICATION,
                     PeerClosed, RawAssociation)

CT = F.CT_IMAGE_STORAGE
PRIVATE_CLASS = "1.2.826.0.1.3680043.9.7777.99.1"

# PS3.8 Table 9-18 result/reason of a presentation context
ACCEPTANCE = 0
ABSTRACT_SYNTAX_NOT_SUPPORTED = 3
TRANSFER_SYNTAXES_NOT_SUPPORTED = 4

# transfer syntaxes the contract says are accepted (stored as received, no transcoding)
ACCEPTED_TS = {
    "1.2.840.10008.1.2": "implicit VR LE",
    "1.2.840.10008.1.2.1": "explicit VR LE",
    "1.2.840.10008.1.2.2": "explicit VR BE",
    "1.2.840.10008.1.2.1.99": "deflated explicit VR LE",
    "1.2.840.10008.1.2.4.50": "JPEG baseline",
    "1.2.840.10008.1.2.4.51": "JPEG extended",
    "1.2.840.10008.1.2.4.57": "JPEG lossless",
    "1.2.840.10008.1.2.4.70": "JPEG lossless SV1",
    "1.2.840.10008.1.2.4.80": "JPEG-LS lossless",
    "1.2.840.10008.1.2.4.81": "JPEG-LS near-lossless",
    "1.2.840.10008.1.2.4.90": "JPEG 2000 lossless",
    "1.2.840.10008.1.2.4.91": "JPEG 2000",
    "1.2.840.10008.1.2.4.201": "HTJ2K lossless",
    "1.2.840.10008.1.2.4.202": "HTJ2K lossless RPCL",
    "1.2.840.10008.1.2.4.203": "HTJ2K",
    "1.2.840.10008.1.2.5": "RLE lossless",
    "1.2.840.10008.1.2.4.100": "MPEG2 MP@ML",
    "1.2.840.10008.1.2.4.102": "MPEG-4 AVC/H.264 HP@L4.1",
    "1.2.840.10008.1.2.4.107": "HEVC/H.265 Main",
}


def sop_table() -> list[tuple[str, str]]:
    path = REPO / "dictionaries" / "storage-sop-classes.tsv"
    rows = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        cols = line.split("\t")
        rows.append((cols[0].strip(), cols[1].strip()))
    return rows


def negotiate(server, contexts, **kw) -> RawAssociation:
    a = RawAssociation(server.host, server.port, timeout=15)
    pdu = a.associate(called=server.aet, contexts=contexts, **kw)
    assert pdu.type == A_ASSOCIATE_AC, pdu.describe()
    return a


def test_table_is_not_trivial():
    rows = sop_table()
    uids = [u for u, _ in rows]
    assert len(rows) > 150, "dictionaries/storage-sop-classes.tsv looks incomplete"
    assert len(set(uids)) == len(uids), "duplicate UIDs in the SOP class table"
    for needed in (CT, "1.2.840.10008.5.1.4.1.1.4", "1.2.840.10008.5.1.4.1.1.7",
                   "1.2.840.10008.5.1.4.1.1.3.1", "1.2.840.10008.5.1.4.1.1.88.11",
                   "1.2.840.10008.5.1.4.1.1.104.1", "1.2.840.10008.5.1.4.1.1.2.1"):
        assert needed in uids, f"{needed} missing from the storage SOP class table"


def test_every_table_sop_class_is_accepted(shared_mifas):
    uids = [u for u, _ in sop_table()]
    batch = 127  # context ids are odd numbers 1..255: at most 128 per association
    for start in range(0, len(uids), batch):
        chunk = uids[start:start + batch]
        contexts = [(2 * i + 1, uid, [EXPLICIT_LE, IMPLICIT_LE]) for i, uid in enumerate(chunk)]
        a = negotiate(shared_mifas, contexts)
        with a:
            refused = [(uid, a.ac.contexts.get(2 * i + 1)) for i, uid in enumerate(chunk)
                       if a.ac.contexts.get(2 * i + 1, (None,))[0] != ACCEPTANCE]
            assert not refused, f"storage SOP classes from the table not accepted: {refused[:10]}"
            for i, _ in enumerate(chunk):
                assert a.ac.contexts[2 * i + 1][1] == EXPLICIT_LE
            a.release()


def test_verification_and_storage_in_one_association(shared_mifas):
    a = negotiate(shared_mifas, [(1, VERIFICATION, [IMPLICIT_LE]), (3, CT, [EXPLICIT_LE])])
    with a:
        assert a.ac.contexts[1] == (ACCEPTANCE, IMPLICIT_LE)
        assert a.ac.contexts[3] == (ACCEPTANCE, EXPLICIT_LE)
        assert a.echo(1).status == 0


@pytest.mark.parametrize("ts", sorted(ACCEPTED_TS), ids=lambda t: ACCEPTED_TS[t].replace(" ", "_"))
def test_transfer_syntax_accepted(shared_mifas, ts):
    a = negotiate(shared_mifas, [(1, CT, [ts])])
    with a:
        assert a.ac.contexts[1] == (ACCEPTANCE, ts), f"{ACCEPTED_TS[ts]} not accepted: {a.ac.contexts}"


def test_first_supported_transfer_syntax_wins(shared_mifas):
    a = negotiate(shared_mifas, [
        (1, CT, ["1.2.3.4.5.999", EXPLICIT_BE, EXPLICIT_LE]),
        (3, CT, [IMPLICIT_LE, EXPLICIT_LE]),
        (5, CT, ["1.2.840.10008.1.2.4.90", IMPLICIT_LE]),
    ])
    with a:
        assert a.ac.contexts[1] == (ACCEPTANCE, EXPLICIT_BE)
        assert a.ac.contexts[3] == (ACCEPTANCE, IMPLICIT_LE)
        assert a.ac.contexts[5] == (ACCEPTANCE, "1.2.840.10008.1.2.4.90")


def test_unknown_transfer_syntax_only_is_refused(shared_mifas):
    a = negotiate(shared_mifas, [(1, CT, ["1.2.3.4.5.999"]), (3, VERIFICATION, [IMPLICIT_LE])])
    with a:
        assert a.ac.contexts[1][0] == TRANSFER_SYNTAXES_NOT_SUPPORTED, a.ac.contexts
        assert a.ac.contexts[3][0] == ACCEPTANCE
        assert a.echo(3).status == 0


def test_only_unknown_abstract_syntax(shared_mifas):
    """No acceptable context at all: A-ASSOCIATE-AC with every context rejected (contract); the
    server may then wait for the release or abort the now useless association."""
    a = negotiate(shared_mifas, [(1, "1.2.3.4.5.6.7.8.9", [IMPLICIT_LE]),
                                 (3, PRIVATE_CLASS, [EXPLICIT_LE])])
    with a:
        assert a.ac.contexts[1][0] == ABSTRACT_SYNTAX_NOT_SUPPORTED, a.ac.contexts
        assert a.ac.contexts[3][0] == ABSTRACT_SYNTAX_NOT_SUPPORTED, a.ac.contexts
        try:
            answer = a.release().type
        except PeerClosed:
            answer = "closed"
        assert answer in (0x06, 0x07, "closed"), answer
    shared_mifas.echo_ok()


def test_unknown_storage_class_switch(mifas):
    s = mifas({"dicom": {"accept_unknown_storage": True}})
    a = negotiate(s, [(1, PRIVATE_CLASS, [EXPLICIT_LE]), (3, CT, [EXPLICIT_LE])])
    with a:
        assert a.ac.contexts[1] == (ACCEPTANCE, EXPLICIT_LE), a.ac.contexts
        assert a.ac.contexts[3] == (ACCEPTANCE, EXPLICIT_LE)


def test_default_max_pdu_advertised(shared_mifas):
    a = negotiate(shared_mifas, [(1, VERIFICATION, [IMPLICIT_LE])])
    with a:
        assert a.ac.max_pdu == 65536, f"A-ASSOCIATE-AC max PDU {a.ac.max_pdu}, documented default 65536"


@pytest.mark.parametrize("max_pdu", [4097, 1024, 131072])
def test_configured_max_pdu_advertised(mifas, max_pdu):
    s = mifas({"dicom": {"max_pdu": max_pdu}})
    a = negotiate(s, [(1, VERIFICATION, [IMPLICIT_LE])])
    with a:
        assert a.ac.max_pdu == max_pdu
        assert a.echo().status == 0


def test_response_respects_requestor_max_pdu(shared_mifas):
    """The requestor announces a small max PDU; every PDU the server sends must fit."""
    a = negotiate(shared_mifas, [(1, VERIFICATION, [IMPLICIT_LE])], max_pdu=64)
    with a:
        from raw_dul import build_pdata, c_echo_rq
        a.send(build_pdata([(1, 0x03, c_echo_rq(1))]))
        got = b""
        while True:
            pdu = a.recv_pdu()
            assert pdu.type == 0x04, pdu.describe()
            assert len(pdu.body) <= 64, f"server sent a {len(pdu.body)}-byte PDU, requestor max is 64"
            off = 0
            last = False
            while off < len(pdu.body):
                ilen = int.from_bytes(pdu.body[off:off + 4], "big")
                got += pdu.body[off + 6: off + 4 + ilen]
                last = bool(pdu.body[off + 5] & 0x02)
                off += 4 + ilen
            if last:
                break
        from raw_dul import Response, parse_command
        assert Response(parse_command(got)).status == 0
