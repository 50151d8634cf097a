"""Real tar archives in and out of a ``ContainerFS`` (GNU tar semantics, ``tarfile`` bytes).

Reading from an exec stdin never waits for EOF: the stream is parsed header by header and stops at
the end-of-archive marker, because over the v4 exec protocol the client cannot close stdin.
"""

from __future__ import annotations

import asyncio
import io
import posixpath
import tarfile
import time
import zlib
from dataclasses import dataclass, field

from .volumes import ContainerFS, Entry, FsError, norm

BLOCK = tarfile.BLOCKSIZE


@dataclass
class TarResult:
    data: bytes = b""
    messages: list[str] = field(default_factory=list)  # stderr lines, without the "tar: " prefix
    failed: bool = False  # exit status 2 (GNU: "Exiting with failure status due to previous errors")


def _tarinfo(name: str, entry: Entry) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode = entry.mode
    info.uid, info.gid = entry.uid, entry.gid
    info.uname = "root" if entry.uid == 0 else ""
    info.gname = "root" if entry.gid == 0 else ""
    info.mtime = int(entry.mtime)
    if entry.is_dir:
        info.type = tarfile.DIRTYPE
    elif entry.kind == "l":
        info.type = tarfile.SYMTYPE
        info.linkname = entry.linkname
    else:
        info.type = tarfile.REGTYPE
        info.size = entry.size
    return info


def create_archive(fs: ContainerFS, members: list[tuple[str, str]], *, compress: bool = False) -> TarResult:
    """Archive ``members``: (directory it is relative to, path as given on the command line).

    Like GNU tar: a leading ``/`` is stripped from member names (with a warning once), a missing
    path prints ``Cannot stat`` and makes the exit status 2 while everything else is still archived.
    """
    result = TarResult()
    buf = io.BytesIO()
    warned_abs = False
    with tarfile.open(fileobj=buf, mode="w:gz" if compress else "w", format=tarfile.GNU_FORMAT) as archive:
        for base, given in members:
            target = given if given.startswith("/") else posixpath.join(base, given)
            name = given
            if name.startswith("/"):
                if not warned_abs:
                    result.messages.append("Removing leading `/' from member names")
                    warned_abs = True
                name = name.lstrip("/") or "."
            name = name.rstrip("/") if name not in ("/", "./") else name
            try:
                walked = list(fs.walk(target))
            except FsError:
                result.messages.append(f"{given}: Cannot stat: No such file or directory")
                result.failed = True
                continue
            root_abs = walked[0][0]
            for absolute, entry, _depth in walked:
                rel = absolute[len(root_abs):].lstrip("/")
                member = posixpath.join(name, rel) if rel else name
                info = _tarinfo(member, entry)
                if entry.is_file:
                    archive.addfile(info, io.BytesIO(entry.data))
                else:
                    archive.addfile(info)
    result.data = buf.getvalue()
    if result.failed:
        result.messages.append("Exiting with failure status due to previous errors")
    return result


class _Source:
    """Exact-size reads from an asyncio stream, optionally through a gzip decompressor."""

    def __init__(self, reader: asyncio.StreamReader, gzip: bool) -> None:
        self.reader = reader
        self.decomp = zlib.decompressobj(wbits=31) if gzip else None
        self.pending = b""
        self.eof = False

    async def read(self, n: int) -> bytes:
        while len(self.pending) < n and not self.eof:
            chunk = await self.reader.read(65536)
            if not chunk:
                self.eof = True
                if self.decomp is not None:
                    self.pending += self.decomp.flush()
                break
            self.pending += self.decomp.decompress(chunk) if self.decomp is not None else chunk
        out, self.pending = self.pending[:n], self.pending[n:]
        return out


class NotATarArchive(Exception):
    pass


async def read_archive_stream(reader: asyncio.StreamReader, *, gzip: bool = False) -> bytes:
    """Read one tar archive from ``reader``, stopping at the end-of-archive marker (or EOF)."""
    src = _Source(reader, gzip)
    out = bytearray()
    first = True
    while True:
        header = await src.read(BLOCK)
        if len(header) < BLOCK:
            if first and not header:
                raise NotATarArchive("This does not look like a tar archive")
            if header.strip(b"\0"):
                raise NotATarArchive("Unexpected EOF in archive")
            break  # EOF without a marker: tar accepts it (with a warning we omit)
        if header == b"\0" * BLOCK:
            # End-of-archive: two zero blocks. The second may already be buffered; do not wait for it.
            out += header
            if len(src.pending) >= BLOCK:
                out += await src.read(BLOCK)
            break
        try:
            info = tarfile.TarInfo.frombuf(header, tarfile.ENCODING, "surrogateescape")
        except tarfile.HeaderError as exc:
            if first:
                raise NotATarArchive("This does not look like a tar archive") from exc
            raise NotATarArchive("Skipping to next header") from exc
        first = False
        out += header
        payload = 0 if info.type in (tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE) else info.size
        padded = -(-payload // BLOCK) * BLOCK
        if padded:
            data = await src.read(padded)
            if len(data) < padded:
                raise NotATarArchive("Unexpected EOF in archive")
            out += data
    out += b"\0" * (2 * BLOCK)
    return bytes(out)


def _safe_member_name(name: str) -> str | None:
    stripped = name.lstrip("/")
    parts = [p for p in stripped.split("/") if p not in ("", ".")]
    if ".." in parts:
        return None
    return "/".join(parts)


def extract_archive(fs: ContainerFS, data: bytes, dest: str, *, same_owner: bool = True,
                    same_permissions: bool = True, touch: bool = False, compress: bool = False,
                    only: list[str] | None = None) -> TarResult:
    """Extract ``data`` under ``dest`` the way GNU tar does as root.

    Modes and owners are preserved by default (root's defaults: ``--same-permissions``,
    ``--same-owner``), missing parent directories are created, existing files replaced.
    """
    result = TarResult()
    if not fs.is_dir(dest):
        result.messages.append(f"{dest}: Cannot open: No such file or directory")
        result.messages.append("Error is not recoverable: exiting now")
        result.failed = True
        return result
    try:
        archive = tarfile.open(fileobj=io.BytesIO(data), mode="r:gz" if compress else "r:")
    except (tarfile.TarError, EOFError, zlib.error):
        result.messages.append("This does not look like a tar archive")
        result.messages.append("Exiting with failure status due to previous errors")
        result.failed = True
        return result
    now = time.time()
    wanted = {norm(p) for p in only} if only else None
    seen: set[str] = set()
    with archive:
        for info in archive:
            name = _safe_member_name(info.name)
            if name is None:
                result.messages.append(f"{info.name}: Member name contains '..'")
                result.failed = True
                continue
            if wanted is not None and not any(name == w or name.startswith(w + "/") for w in wanted):
                continue
            if wanted is not None:
                seen.update(w for w in wanted if name == w or name.startswith(w + "/"))
            target = posixpath.join(dest, name) if name else dest
            uid = info.uid if same_owner else 0
            gid = info.gid if same_owner else 0
            mode = info.mode & 0o7777 if same_permissions else info.mode & 0o777 & ~0o022
            mtime = now if touch else float(info.mtime)
            try:
                _ensure_parents(fs, target)
                if info.isdir():
                    if fs.is_dir(target):
                        fs.set_meta(target, mode=mode, uid=uid, gid=gid, mtime=mtime)
                    else:
                        if fs.exists(target):
                            fs.remove(target)
                        fs.mkdir(target, mode, uid, gid, mtime=mtime)
                elif info.isreg():
                    existing = fs.lookup(target)
                    if existing is not None and existing.is_dir:
                        raise FsError(target, "Cannot open: Is a directory")
                    extracted = archive.extractfile(info)
                    payload = extracted.read() if extracted is not None else b""
                    fs.write(target, payload, mode, uid, gid, mtime=mtime)
                elif info.issym():
                    if fs.exists(target):
                        fs.remove(target)
                    fs.symlink(target, info.linkname, uid, gid, mtime)
                else:
                    result.messages.append(f"{info.name}: Unsupported member type (sandbox)")
                    result.failed = True
            except FsError as exc:
                reason = exc.reason if exc.reason.startswith("Cannot") else f"Cannot open: {exc.reason}"
                result.messages.append(f"{name}: {reason}")
                result.failed = True
    if wanted is not None:
        for w in sorted(wanted - seen):
            result.messages.append(f"{w}: Not found in archive")
            result.failed = True
    if result.failed:
        result.messages.append("Exiting with failure status due to previous errors")
    return result


def _ensure_parents(fs: ContainerFS, target: str) -> None:
    parent = posixpath.dirname(fs.abspath(target))
    if parent and not fs.is_dir(parent):
        fs.mkdir(parent, 0o755, parents=True)


def list_archive(data: bytes, *, compress: bool = False, verbose: bool = False) -> list[str]:
    lines = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz" if compress else "r:") as archive:
        for info in archive:
            name = info.name + ("/" if info.isdir() and not info.name.endswith("/") else "")
            if verbose:
                lines.append(f"{tarfile.filemode(info.mode | (0o040000 if info.isdir() else 0o100000))} "
                             f"{info.uid}/{info.gid} {info.size:>8} {name}")
            else:
                lines.append(name)
    return lines
