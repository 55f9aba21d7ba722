"""Read MIFAS pack files the way an operator's script would: from the bytes on the site.

A pack is a sequence of records: magic b"MIFASOB1", u32 header length, u64 generation, u64 size,
32-byte SHA-256, u16 UID length, the SOP Instance UID, then `size` bytes of the Part-10 object.
These helpers parse that layout independently of the Rust code, so the tests check what is
really on each site (a local directory here; HDFS through WebHDFS in the HDFS tests).
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path

MAGIC = b"MIFASOB1"
FIXED = 8 + 4 + 8 + 8 + 32 + 2


@dataclass
class Record:
    pack: str
    header_offset: int
    offset: int  # of the object bytes
    uid: str
    generation: int
    size: int
    sha256: bytes

    def intact(self, data: bytes) -> bool:
        return hashlib.sha256(data[self.offset:self.offset + self.size]).digest() == self.sha256


def parse_pack(name: str, data: bytes) -> list[Record]:
    """Every complete record of one pack (an unsynced tail after a crash ends the list)."""
    out, off = [], 0
    while off + FIXED <= len(data) and data[off:off + 8] == MAGIC:
        hlen, gen, size = struct.unpack_from("<IQQ", data, off + 8)
        sha = data[off + 28:off + 60]
        (ulen,) = struct.unpack_from("<H", data, off + 60)
        uid = data[off + 62:off + 62 + ulen].decode("ascii")
        assert hlen == FIXED + ulen, f"{name}@{off}: header length {hlen}"
        start = off + hlen
        if start + size > len(data):
            break
        out.append(Record(name, off, start, uid, gen, size, sha))
        off = start + size
    return out


def local_site_packs(site_dir: Path, root: str = "mifas") -> dict[str, bytes]:
    d = Path(site_dir) / root / "packs"
    return {p.name: p.read_bytes() for p in sorted(d.glob("*.pack"))} if d.exists() else {}


def records(packs: dict[str, bytes]) -> list[Record]:
    return [r for name, data in packs.items() for r in parse_pack(name, data)]


def intact_uids(packs: dict[str, bytes]) -> set[str]:
    """SOP Instance UIDs with at least one intact copy in these packs."""
    return {r.uid for name, data in packs.items() for r in parse_pack(name, data) if r.intact(data)}
