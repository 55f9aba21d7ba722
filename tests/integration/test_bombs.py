"""Depth and length bombs at every entry point where peer bytes reach a DICOM parser (issue 15,
defect 1): C-STORE data sets, command sets, C-FIND / C-MOVE / C-GET identifiers, `mifas import`
and start-up reconciliation. Each must be refused (failure status with ErrorComment, A-ABORT for
a command, `rejected` for import, quarantine at start) while the server stays up.

Before the fix, one 20,000-deep C-STORE killed the whole process with a stack overflow."""

import struct

import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.filewriter import write_file_meta_info

import dicom_fixtures as F
from mifas_helpers import list_objects, object_path, parse_kv, run_mifas, wait_spool_empty
from raw_dul import (A_ABORT, A_ASSOCIATE_AC, EXPLICIT_LE, IMPLICIT_LE, VERIFICATION, RawAssociation,
                     _pad_uid, _us, encode_command)

CT = F.CT_IMAGE_STORAGE
STUDY_FIND = "1.2.840.10008.5.1.4.1.2.2.1"
STUDY_MOVE = "1.2.840.10008.5.1.4.1.2.2.2"
STUDY_GET = "1.2.840.10008.5.1.4.1.2.2.3"
DEPTH = 20_000  # the bomb: ~700 KB
UNDEF = 0xFFFFFFFF


def el(group, elem, vr, value: bytes) -> bytes:
    """Explicit VR Little Endian element."""
    if vr in (b"OB", b"OW", b"SQ", b"UN", b"UT", b"UC", b"UR"):
        return struct.pack("<HH2sHI", group, elem, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", group, elem, vr, len(value)) + value


def uid(v: str) -> bytes:
    return _pad_uid(v)


def nested_sequences(depth: int, explicit=True) -> bytes:
    """(0008,1115) holding one item holding (0008,1115)... `depth` levels, undefined lengths."""
    if explicit:
        open_sq = struct.pack("<HH2sHI", 0x0008, 0x1115, b"SQ", 0, UNDEF)
    else:
        open_sq = struct.pack("<HHI", 0x0008, 0x1115, UNDEF)
    open_item = struct.pack("<HHI", 0xFFFE, 0xE000, UNDEF)
    close = struct.pack("<HHI", 0xFFFE, 0xE00D, 0) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    return (open_sq + open_item) * depth + close * depth


def defined_nested(depth: int) -> bytes:
    inner = el(0x0010, 0x0010, b"PN", b"DEEP")
    for _ in range(depth):
        item = struct.pack("<HHI", 0xFFFE, 0xE000, len(inner)) + inner
        inner = el(0x0008, 0x1115, b"SQ", item)
    return inner


def bomb_dataset(sop_instance: str, nesting: bytes) -> bytes:
    return b"".join([
        el(0x0008, 0x0016, b"UI", uid(CT)),
        el(0x0008, 0x0018, b"UI", uid(sop_instance)),
        nesting,
        el(0x0010, 0x0010, b"PN", b"BOMB^DEPTH"),
        el(0x0020, 0x000D, b"UI", uid("1.2.3.4.5.1")),
        el(0x0020, 0x000E, b"UI", uid("1.2.3.4.5.2")),
    ])


@pytest.fixture(scope="module")
def server(shared_mifas):
    return shared_mifas


def assert_up(server):
    server.assert_alive("after a bomb")
    server.echo_ok()


def associate(server, contexts) -> RawAssociation:
    a = RawAssociation(server.host, server.port, timeout=30)
    pdu = a.associate(called=server.aet, contexts=contexts)
    assert pdu.type == A_ASSOCIATE_AC, pdu.describe()
    return a


@pytest.mark.parametrize("form", ["undefined-20000", "defined-200", "undefined-65"])
def test_store_depth_bomb_is_refused_and_server_survives(server, form):
    sop = f"1.2.3.4.99.{len(form)}.{form.split('-')[1]}"
    nesting = {"undefined-20000": lambda: nested_sequences(DEPTH),
               "defined-200": lambda: defined_nested(200),
               "undefined-65": lambda: nested_sequences(65)}[form]()
    data = bomb_dataset(sop, nesting)
    a = associate(server, [(1, CT, [EXPLICIT_LE]), (3, VERIFICATION, [IMPLICIT_LE])])
    with a:
        rsp = a.store(1, CT, sop, data)
        assert 0xC000 <= rsp.status <= 0xCFFF, f"status 0x{rsp.status:04X}"
        assert "sequences nested" in (rsp.error_comment or ""), rsp.error_comment
        assert a.echo(3).status == 0, "association unusable after the refused store"
        a.release()
    assert_up(server)
    wait_spool_empty(server.data_dir)
    assert not object_path(server.data_dir, sop).exists()


def test_store_within_the_limit_is_stored(server):
    sop = "1.2.3.4.99.64"
    data = bomb_dataset(sop, nested_sequences(64))
    a = associate(server, [(1, CT, [EXPLICIT_LE])])
    with a:
        rsp = a.store(1, CT, sop, data)
        assert rsp.status == 0, f"0x{rsp.status:04X} {rsp.error_comment}"
        a.release()
    assert object_path(server.data_dir, sop).exists()


def test_store_length_bomb_inside_an_item(server):
    """An element declaring 4 GB inside an item of 20 bytes: refused, nothing allocated."""
    sop = "1.2.3.4.99.4"
    inner = struct.pack("<HH2sHI", 0x0008, 0x1150, b"UN", 0, 0xFFFFFFF0)
    item = struct.pack("<HHI", 0xFFFE, 0xE000, 20) + inner + b"\0" * 8
    data = bomb_dataset(sop, el(0x0008, 0x1115, b"SQ", item))
    hwm = server.vm_hwm_kb()
    a = associate(server, [(1, CT, [EXPLICIT_LE])])
    with a:
        rsp = a.store(1, CT, sop, data)
        assert 0xC000 <= rsp.status <= 0xCFFF, f"status 0x{rsp.status:04X}"
        # the comment (LO, 64 chars) names the element; the log has the whole reason
        assert "(0008,1150)" in (rsp.error_comment or ""), rsp.error_comment
        a.release()
    assert server.vm_hwm_kb() - hwm < 64 * 1024
    assert_up(server)


def test_command_set_bomb_aborts_the_association_only(server):
    cmd = encode_command([
        (0x0002, _pad_uid(VERIFICATION)),
        (0x0100, _us(0x0030)),
        (0x0110, _us(1)),
        (0x0800, _us(0x0101)),
    ])
    # implicit VR: (0000,0901) of undefined length is read as a sequence, 3,000 deep (48 KB)
    level = struct.pack("<HHI", 0x0000, 0x0901, UNDEF) + struct.pack("<HHI", 0xFFFE, 0xE000, UNDEF)
    bomb = cmd + level * 3000
    a = associate(server, [(1, VERIFICATION, [IMPLICIT_LE])])
    with a:
        a.send_fragments(1, bomb, True, a.default_frag())
        pdus = a.wait_closed(15)
        assert pdus and pdus[-1].type == A_ABORT, [p.describe() for p in pdus]
    assert_up(server)


def qr_rq(command_field: int, sop_class: str, msg_id: int, destination: str | None = None) -> bytes:
    elements = [
        (0x0002, _pad_uid(sop_class)),
        (0x0100, _us(command_field)),
        (0x0110, _us(msg_id)),
        (0x0700, _us(0)),
        (0x0800, _us(0x0000)),
    ]
    if destination is not None:
        elements.append((0x0600, destination.ljust(16).encode()))
    return encode_command(elements)


def identifier(nesting: bytes) -> bytes:
    return b"".join([
        el(0x0008, 0x0052, b"CS", b"STUDY "),
        nesting,
        el(0x0020, 0x000D, b"UI", uid("1.2.3.4.5.1")),
    ])


@pytest.mark.parametrize("service", ["find", "move", "get"])
@pytest.mark.parametrize("bomb", ["depth", "length", "stray-delimiter"])
def test_identifier_bombs_get_a_failure_status(server, service, bomb):
    sop_class, field = {"find": (STUDY_FIND, 0x0020), "move": (STUDY_MOVE, 0x0021),
                        "get": (STUDY_GET, 0x0010)}[service]
    if bomb == "depth":
        ident = identifier(nested_sequences(DEPTH))
    elif bomb == "length":
        # a sequence declaring 4 GB in a 1 KB identifier
        ident = identifier(struct.pack("<HH2sHI", 0x0008, 0x1115, b"SQ", 0, 0xFFFFFFF0) + b"\0" * 1024)
    else:
        # a sequence delimiter outside any sequence declaring 3.9 GB (fuzzer find: dicom-parser
        # reads it as an element and allocates that much)
        ident = identifier(struct.pack("<HHI", 0xFFFE, 0xE0DD, 0xE8010008))
    a = associate(server, [(1, sop_class, [EXPLICIT_LE]), (3, VERIFICATION, [IMPLICIT_LE])])
    with a:
        cmd = qr_rq(field, sop_class, 7, "NOWHERE" if service == "move" else None)
        a.send_fragments(1, cmd, True, a.default_frag())
        a.send_fragments(1, ident, False, a.default_frag())
        rsp = a.read_response(timeout=30)
        assert rsp.message_id_responded == 7
        assert 0xC000 <= rsp.status <= 0xCFFF, f"status 0x{rsp.status:04X} {rsp.error_comment}"
        assert "identifier refused" in (rsp.error_comment or ""), rsp.error_comment
        assert a.echo(3).status == 0
        a.release()
    assert_up(server)


def write_part10(path, sop: str, dataset: bytes):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CT
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = EXPLICIT_LE
    meta.ImplementationClassUID = "1.2.3.4"
    with open(path, "wb") as f:
        f.write(b"\0" * 128 + b"DICM")
        write_file_meta_info(f, meta, enforce_standard=True)
        f.write(dataset)


def test_import_refuses_a_bomb_file(tmp_path):
    sop = "1.2.3.4.98.1"
    p = tmp_path / "bomb.dcm"
    write_part10(p, sop, bomb_dataset(sop, nested_sequences(DEPTH)))
    r = run_mifas("import", "--data-dir", tmp_path / "data", p, timeout=120)
    kv = parse_kv(r.stdout)
    assert r.returncode == 1 and kv.get("rejected") == "1", r.stdout + r.stderr
    assert "nested deeper" in r.stdout, r.stdout


def test_reconciliation_quarantines_a_bomb_found_on_disk(mifas, tmp_path):
    """An object file that never came through ingest (copied in while the server was down):
    start-up reconciliation walks it and quarantines it instead of crashing."""
    s = mifas()
    s.stop_ok()
    sop = "1.2.3.4.98.2"
    target = object_path(s.data_dir, sop)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_part10(target, sop, bomb_dataset(sop, nested_sequences(DEPTH)))
    s.start()
    assert_up(s)
    assert not target.exists(), "the bomb is still among the objects"
    s.stop_ok()
    assert s.stats()["instances"] == 0
    assert not list_objects(s.data_dir)
