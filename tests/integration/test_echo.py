"""C-ECHO and association acceptance policy (called AE check, calling AE allow-list)."""

import pytest

from mifas_helpers import echoscu
from raw_dul import (A_ASSOCIATE_AC, A_ASSOCIATE_RJ, C_ECHO_RSP, IMPLICIT_LE, VERIFICATION,
                     RawAssociation)

# A-ASSOCIATE-RJ fields (PS3.8 9.3.4)
RJ_PERMANENT, RJ_TRANSIENT = 1, 2
SRC_SERVICE_USER = 1
REASON_CALLING_AE_NOT_RECOGNIZED = 3
REASON_CALLED_AE_NOT_RECOGNIZED = 7


def raw_associate(server, called=None, calling="RAWSCU", contexts=None):
    a = RawAssociation(server.host, server.port, timeout=15)
    pdu = a.associate(called=called or server.aet, calling=calling, contexts=contexts)
    return a, pdu


def test_echoscu_succeeds(shared_mifas):
    r = echoscu(shared_mifas.host, shared_mifas.port, "MIFAS")
    assert r.returncode == 0, r.stderr
    assert shared_mifas.aet == "MIFAS"


def test_echo_response_fields(shared_mifas):
    a, pdu = raw_associate(shared_mifas)
    with a:
        assert pdu.type == A_ASSOCIATE_AC, pdu.describe()
        assert a.ac.contexts[1] == (0, IMPLICIT_LE)
        assert a.ac.impl_class_uid, "A-ASSOCIATE-AC without Implementation Class UID"
        for _ in range(3):  # several echoes on one association
            rsp = a.echo()
            assert rsp.command_field == C_ECHO_RSP
            assert rsp.status == 0x0000
            assert rsp.message_id_responded == a._msg_id
            assert rsp.uid(0x0002) == VERIFICATION
        assert a.release().type == 0x06  # A-RELEASE-RP


def test_wrong_called_aet_rejected(shared_mifas):
    r = echoscu(shared_mifas.host, shared_mifas.port, "NOT_MIFAS")
    assert r.returncode != 0, "echoscu to a wrong called AE title succeeded"
    a, pdu = raw_associate(shared_mifas, called="NOT_MIFAS")
    with a:
        assert pdu.type == A_ASSOCIATE_RJ, pdu.describe()
        assert (a.rj.result, a.rj.source, a.rj.reason) == (
            RJ_PERMANENT, SRC_SERVICE_USER, REASON_CALLED_AE_NOT_RECOGNIZED)
    shared_mifas.echo_ok()


def test_called_aet_check_can_be_disabled(mifas):
    s = mifas({"dicom": {"check_called_aet": False}})
    r = echoscu(s.host, s.port, "WHATEVER")
    assert r.returncode == 0, r.stderr


def test_aet_flag_overrides(mifas):
    s = mifas({"dicom": {"aet": "FROMCONFIG"}}, extra_args=["--aet", "ARCHIVE2"])
    assert s.aet == "ARCHIVE2", s.ready_line
    assert echoscu(s.host, s.port, "ARCHIVE2").returncode == 0
    assert echoscu(s.host, s.port, "FROMCONFIG").returncode != 0
    assert echoscu(s.host, s.port, "MIFAS").returncode != 0


def test_aet_from_config(mifas):
    s = mifas({"dicom": {"aet": "FROMCONFIG"}})
    assert s.aet == "FROMCONFIG", s.ready_line
    assert echoscu(s.host, s.port, "FROMCONFIG").returncode == 0


@pytest.fixture
def allow_list_server(mifas):
    return mifas({"dicom": {"allowed_calling": [
        {"aet": "CT1", "hosts": ["127.0.0.1"]},
        {"aet": "ANYHOST"},
        {"aet": "FARAWAY", "hosts": ["10.255.255.1"]},
    ]}})


@pytest.mark.parametrize("calling", ["CT1", "ANYHOST"])
def test_allow_list_accepts_listed(allow_list_server, calling):
    s = allow_list_server
    r = echoscu(s.host, s.port, "MIFAS", calling=calling)
    assert r.returncode == 0, r.stderr
    a, pdu = raw_associate(s, calling=calling)
    with a:
        assert pdu.type == A_ASSOCIATE_AC, pdu.describe()
        assert a.echo().status == 0


@pytest.mark.parametrize("calling", ["INTRUDER", "FARAWAY", "CT"])
def test_allow_list_rejects_others(allow_list_server, calling):
    """Unknown calling AE, a listed AE from a host not in its list, a prefix of a listed AE."""
    s = allow_list_server
    r = echoscu(s.host, s.port, "MIFAS", calling=calling)
    assert r.returncode != 0, f"calling AE {calling} was accepted"
    a, pdu = raw_associate(s, calling=calling)
    with a:
        assert pdu.type == A_ASSOCIATE_RJ, pdu.describe()
        assert (a.rj.result, a.rj.source, a.rj.reason) == (
            RJ_PERMANENT, SRC_SERVICE_USER, REASON_CALLING_AE_NOT_RECOGNIZED)
    r = echoscu(s.host, s.port, "MIFAS", calling="CT1")
    assert r.returncode == 0, "listed AE no longer accepted after a rejection"
