"""The bundle's container: a plain POSIX tar (ustar), read by a strict reader of our own.

Only what :func:`pack` writes is read back: regular files with flat names (no folders,
links, devices, pax or GNU extension headers), each header's checksum right, sizes in
octal, then zero blocks to the end. ``tar tvf`` and ``tar xf`` on any machine show and
unpack a bundle; GNU tar's ``--format=ustar`` and most libraries' ustar writers make one
this reader accepts.

Why not :mod:`tarfile`: it reads every tar dialect, so a refusal would depend on which
dialect a hostile file claims; it reads headers lazily from a stream with offsets of its
own (CPython 3.11.7, the boxes' Python, loops forever on some negative offsets:
CVE-2025-8194). A bundle is small and held in memory, so this reader checks it whole,
before anything looks at a file's bytes. Every problem raises
:class:`~gateway.errors.BundleRefused` with reason ``malformed``; nothing else escapes.
"""

from __future__ import annotations

import re

from gateway.errors import BundleRefused

BLOCK = 512
#: tar's record: GNU tar pads an archive to a multiple of this (20 blocks)
RECORD = 20 * BLOCK
#: a file name in a bundle: flat, ASCII, no leading dot, at most 100 bytes (the ustar field)
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+\-]{0,99}$")
MAX_ENTRIES = 64
_REGULAR = (b"0", b"\0")
_MAGICS = (b"ustar\x0000", b"ustar  \x00")  # POSIX ustar; GNU tar's old magic and version


def _malformed(detail: str) -> BundleRefused:
    return BundleRefused("malformed", f"not a bundle: {detail}")


def looks_like_tar(data: bytes) -> bool:
    """The ustar magic at its place in the first header: a bundle, not a raw image."""
    return len(data) >= BLOCK and data[257:265] in _MAGICS


def _octal(field: bytes, what: str, name: str) -> int:
    text = field.rstrip(b"\0 ").lstrip(b" ")
    if not text:
        return 0
    if not all(0x30 <= c <= 0x37 for c in text):
        raise _malformed(f"entry {name!r}: {what} is not an octal number")
    return int(text, 8)


def _checksum(header: bytes) -> int:
    return sum(header[:148]) + 8 * 0x20 + sum(header[156:])


def unpack(data: bytes, max_bytes: int) -> list[tuple[str, bytes]]:
    """The (name, bytes) entries of a bundle in archive order; raise
    :class:`BundleRefused` (``malformed``) for anything else than a strict ustar archive of
    at most ``max_bytes`` bytes and :data:`MAX_ENTRIES` flat regular files."""
    if len(data) > max_bytes:
        raise _malformed(f"{len(data)} bytes, more than the {max_bytes} allowed")
    if not looks_like_tar(data):
        raise _malformed("no tar (ustar) header at its start")
    entries: list[tuple[str, bytes]] = []
    names: set[str] = set()
    offset = 0
    while offset + BLOCK <= len(data):
        header = data[offset:offset + BLOCK]
        if not any(header):
            break  # the end-of-archive blocks
        raw_name = header[:100].split(b"\0", 1)[0]
        try:
            name = raw_name.decode("ascii")
        except UnicodeDecodeError:
            raise _malformed(f"a file name that is not ASCII: {raw_name[:40]!r}") from None
        if _octal(header[148:156], "the checksum", name) != _checksum(header):
            raise _malformed(f"entry {name!r}: header checksum does not match")
        if header[257:265] not in _MAGICS:
            raise _malformed(f"entry {name!r}: not a ustar header")
        if header[156:157] not in _REGULAR:
            kind = header[156:157].decode("latin-1")
            raise _malformed(f"entry {name!r}: type {kind!r}; a bundle holds regular files only")
        if header[345:500].strip(b"\0") or not NAME_RE.match(name):
            raise _malformed(f"entry {name!r}: a bundle's file names are flat "
                             "(letters, digits, . _ + -; no folders)")
        if name in names:
            raise _malformed(f"entry {name!r} appears twice")
        if len(entries) == MAX_ENTRIES:
            raise _malformed(f"more than {MAX_ENTRIES} files")
        size = _octal(header[124:136], "the size", name)
        start = offset + BLOCK
        if start + size > len(data):
            raise _malformed(f"entry {name!r}: {size} bytes announced, the archive ends first")
        entries.append((name, data[start:start + size]))
        names.add(name)
        offset = start + -(-size // BLOCK) * BLOCK
    if offset + BLOCK > len(data) and offset != len(data):
        raise _malformed("the archive ends inside a header")
    if any(data[offset:]):
        raise _malformed("bytes after the end of the archive")
    if not entries:
        raise _malformed("an empty archive")
    return entries


def pack(entries: list[tuple[str, bytes]], mtime: int) -> bytes:
    """A ustar archive of ``entries`` (name, bytes), in that order: mode 0644, owner 0,
    modification time ``mtime`` (seconds), padded to a whole tar record."""
    out = bytearray()
    for name, body in entries:
        if not NAME_RE.match(name):
            raise ValueError(f"{name!r}: a bundle's file names are flat (letters, digits, . _ + -)")
        header = bytearray(BLOCK)
        header[:len(name)] = name.encode("ascii")
        header[100:108] = b"0000644\0"
        header[108:116] = b"0000000\0"
        header[116:124] = b"0000000\0"
        header[124:136] = b"%011o\0" % len(body)
        header[136:148] = b"%011o\0" % mtime
        header[156:157] = b"0"
        header[257:265] = b"ustar\x0000"
        header[265:269] = b"root"
        header[297:301] = b"root"
        header[148:156] = b"%06o\0 " % _checksum(bytes(header))
        out += header + body + bytes(-len(body) % BLOCK)
    out += bytes(2 * BLOCK)
    return bytes(out + bytes(-len(out) % RECORD))
