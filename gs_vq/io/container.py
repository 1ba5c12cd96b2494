"""The byte layout of compressed.ply version 2: a valid binary PLY with a checksummed header.

::

    ply
    format binary_little_endian 1.0
    obj_info {JSON header: format, version, count, sections, ...}
    obj_info gs_vq.crc32 <8 hex digits>
    element <section> 1                 one element per section, in the header's order
    property list uint uchar data
    ...
    end_header
    <per section: uint32 byte count, then the bytes>

The CRC32 covers every byte of the file except its own line, so any damage (a flipped bit
anywhere, a truncation, appended bytes) is detected before a single header field is used. Any
PLY reader (plyfile, ...) reads the file as elements of one byte list each.
"""

import json
import re
import struct
import zlib
from typing import Any, Dict, List, Tuple

from ..errors import GsVqError

from ..files import atomic_path

CRC_TAG = b"obj_info gs_vq.crc32 "
_END = b"end_header\n"
_SECTION = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")


def write_container(path: str, header: Dict[str, Any], sections: List[Tuple[str, bytes]]) -> int:
    """Write ``header`` (JSON-able, no newlines after dumping) and the named section payloads to
    ``path`` atomically. Returns the file size in bytes."""
    for name, _ in sections:
        if not _SECTION.match(name):
            raise GsVqError(f"compressed ply: bad section name {name!r}")
    text = json.dumps(header, separators=(",", ":"), allow_nan=False)
    lines = [b"ply", b"format binary_little_endian 1.0", b"obj_info " + text.encode("ascii")]
    for name, _ in sections:
        lines += [f"element {name} 1".encode(), b"property list uint uchar data"]
    head = b"\n".join(lines) + b"\n" + _END
    body = b"".join(struct.pack("<I", len(p)) + p for _, p in sections)
    crc = zlib.crc32(body, zlib.crc32(head))
    at = head.index(b"\nelement ") + 1 if sections else head.index(_END)
    data = head[:at] + CRC_TAG + b"%08x\n" % crc + head[at:] + body
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
    return len(data)


def split_header(data: bytes, what: str) -> Tuple[bytes, bytes]:
    """-> (header bytes up to and including ``end_header\\n``, body). GsVqError if none."""
    if not data.startswith(b"ply\n"):
        raise GsVqError(f"{what}: not a ply file")
    end = data.find(b"\n" + _END)
    if end < 0:
        raise GsVqError(f"{what}: corrupt or truncated ply (no end_header)")
    return data[: end + 1 + len(_END)], data[end + 1 + len(_END):]


def header_json(head: bytes, what: str) -> Dict[str, Any]:
    """The JSON object of the first ``obj_info {`` line (GsVqError if there is none or it is bad)."""
    for line in head.split(b"\n"):
        if line.startswith(b"obj_info {"):
            try:
                meta = json.loads(line[len(b"obj_info "):].decode("ascii"))
            except (UnicodeDecodeError, ValueError) as e:
                raise GsVqError(f"{what}: corrupt compressed ply header ({str(e).splitlines()[0]})") from None
            if not isinstance(meta, dict):
                break
            return meta
    raise GsVqError(f"{what}: not a gs-vq compressed ply (no JSON header)")


def has_checksum(head: bytes) -> bool:
    return (b"\n" + CRC_TAG) in head


def read_container(data: bytes, what: str) -> Tuple[Dict[str, Any], Dict[str, bytes]]:
    """Verify the checksum of a version-2 file's bytes, then split it into (JSON header,
    {section name: payload}). Any damage -> one-line GsVqError."""
    head, body = split_header(data, what)
    at = head.find(b"\n" + CRC_TAG)
    if at < 0:
        raise GsVqError(f"{what}: corrupt compressed ply (no header checksum)")
    line_end = head.find(b"\n", at + 1)
    hexdigits = head[at + 1 + len(CRC_TAG):line_end]
    if not re.fullmatch(rb"[0-9a-f]{8}", hexdigits):
        raise GsVqError(f"{what}: corrupt compressed ply (malformed header checksum)")
    rest = head[: at + 1] + head[line_end + 1:]
    if zlib.crc32(body, zlib.crc32(rest)) != int(hexdigits, 16):
        raise GsVqError(f"{what}: corrupt or truncated compressed ply (checksum mismatch)")
    meta = header_json(head, what)
    names = re.findall(rb"^element (\S+) 1\nproperty list uint uchar data$", head, flags=re.M)
    sections, pos = {}, 0
    for raw_name in names:
        name = raw_name.decode("ascii", "replace")
        if pos + 4 > len(body):
            raise GsVqError(f"{what}: corrupt compressed ply (section {name} truncated)")
        (size,) = struct.unpack_from("<I", body, pos)
        if pos + 4 + size > len(body) or name in sections:
            raise GsVqError(f"{what}: corrupt compressed ply (section {name} malformed)")
        sections[name] = body[pos + 4: pos + 4 + size]
        pos += 4 + size
    if pos != len(body) or head.count(b"\nelement ") != len(names):
        raise GsVqError(f"{what}: corrupt compressed ply (sections do not match the body)")
    return meta, sections
