"""In-memory volume trees and the per-container view of them.

A ``VolumeTree`` holds one volume (a PVC, an emptyDir, a projected Secret or a container's
scratch filesystem): normalised relative paths (``"a/b"``; ``""`` is the root) mapped to entries
with bytes, mode, owner and mtime. ``ContainerFS`` maps absolute container paths onto trees
through the container's ``volumeMounts`` (``mountPath`` + ``subPath``), the way the kubelet
bind-mounts them; paths not on a volume live in the container's scratch tree.
"""

from __future__ import annotations

import posixpath
import stat as statmod
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Iterator

FILE, DIR, SYMLINK = "f", "d", "l"


class FsError(Exception):
    """A filesystem error with the errno-style text coreutils print (``No such file or directory``)."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


ENOENT = "No such file or directory"
ENOTDIR = "Not a directory"
EISDIR = "Is a directory"
EEXIST = "File exists"
ENOTEMPTY = "Directory not empty"


@dataclass(frozen=True)
class Entry:
    kind: str  # FILE | DIR | SYMLINK
    mode: int  # permission bits only (0o7777)
    uid: int = 0
    gid: int = 0
    mtime: float = 0.0
    data: bytes = b""
    linkname: str = ""

    @property
    def is_dir(self) -> bool:
        return self.kind == DIR

    @property
    def is_file(self) -> bool:
        return self.kind == FILE

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def st_mode(self) -> int:
        kind_bits = {FILE: statmod.S_IFREG, DIR: statmod.S_IFDIR, SYMLINK: statmod.S_IFLNK}[self.kind]
        return kind_bits | self.mode


def norm(path: str) -> str:
    """Normalise a path relative to a tree root: no leading/trailing slash, no ``.``; ``..`` clamps at the root."""
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    return "/".join(parts)


def _parent(rel: str) -> str:
    return rel.rpartition("/")[0] if "/" in rel else ""


@dataclass
class VolumeTree:
    """One volume's contents. Thread-safe: tests read it from outside the sandbox's event loop."""

    name: str = ""
    root_mode: int = 0o755
    _entries: dict[str, Entry] = field(default_factory=dict, repr=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    def __post_init__(self) -> None:
        if "" not in self._entries:
            self._entries[""] = Entry(DIR, self.root_mode, mtime=time.time())

    # ---- queries -------------------------------------------------------------------------
    def stat(self, path: str) -> Entry:
        rel = norm(path)
        with self._lock:
            entry = self._entries.get(rel)
        if entry is None:
            raise FsError(path, ENOENT)
        return entry

    def lookup(self, path: str) -> Entry | None:
        with self._lock:
            return self._entries.get(norm(path))

    def exists(self, path: str) -> bool:
        return self.lookup(path) is not None

    def is_dir(self, path: str) -> bool:
        entry = self.lookup(path)
        return entry is not None and entry.is_dir

    def read(self, path: str) -> bytes:
        entry = self.stat(path)
        if entry.is_dir:
            raise FsError(path, EISDIR)
        return entry.data

    def read_text(self, path: str) -> str:
        return self.read(path).decode()

    def listdir(self, path: str = "") -> list[str]:
        rel = norm(path)
        with self._lock:
            entry = self._entries.get(rel)
            if entry is None:
                raise FsError(path, ENOENT)
            if not entry.is_dir:
                raise FsError(path, ENOTDIR)
            prefix = rel + "/" if rel else ""
            names = {
                key[len(prefix):] for key in self._entries
                if key and key.startswith(prefix) and "/" not in key[len(prefix):]
            }
        return sorted(names)

    def walk(self, path: str = "") -> Iterator[tuple[str, Entry]]:
        """Every entry under ``path`` (inclusive), parents before children, names sorted."""
        rel = norm(path)
        with self._lock:
            entry = self._entries.get(rel)
            if entry is None:
                raise FsError(path, ENOENT)
            prefix = rel + "/" if rel else ""
            items = sorted(
                (key, value) for key, value in self._entries.items()
                if key == rel or (key.startswith(prefix) and key != "")
            ) if rel else sorted(self._entries.items())
        yield from items

    def files(self) -> dict[str, bytes]:
        """All regular files, path → bytes (for assertions)."""
        with self._lock:
            return {k: v.data for k, v in self._entries.items() if v.is_file}

    # ---- mutations -----------------------------------------------------------------------
    def _require_parent_dir(self, rel: str, path: str) -> None:
        parent = self._entries.get(_parent(rel))
        if parent is None:
            raise FsError(path, ENOENT)
        if not parent.is_dir:
            raise FsError(path, ENOTDIR)

    def mkdir(self, path: str, mode: int = 0o755, uid: int = 0, gid: int = 0, *, parents: bool = True,
              exist_ok: bool = True, mtime: float | None = None) -> None:
        rel = norm(path)
        now = time.time() if mtime is None else mtime
        with self._lock:
            existing = self._entries.get(rel)
            if existing is not None:
                if not existing.is_dir:
                    raise FsError(path, EEXIST)
                if not exist_ok:
                    raise FsError(path, EEXIST)
                return
            if parents:
                parts = rel.split("/")
                for i in range(1, len(parts)):
                    sub = "/".join(parts[:i])
                    e = self._entries.get(sub)
                    if e is None:
                        self._entries[sub] = Entry(DIR, 0o755, uid, gid, now)
                    elif not e.is_dir:
                        raise FsError(path, ENOTDIR)
            else:
                self._require_parent_dir(rel, path)
            self._entries[rel] = Entry(DIR, mode & 0o7777, uid, gid, now)

    def write(self, path: str, data: bytes | str, mode: int = 0o600, uid: int = 0, gid: int = 0, *,
              mtime: float | None = None, parents: bool = True) -> None:
        """Create or replace a regular file; missing parent directories are created (0755) unless ``parents=False``."""
        rel = norm(path)
        if not rel:
            raise FsError(path, EISDIR)
        payload = data.encode() if isinstance(data, str) else bytes(data)
        with self._lock:
            existing = self._entries.get(rel)
            if existing is not None and existing.is_dir:
                raise FsError(path, EISDIR)
            if parents:
                self.mkdir(_parent(rel), uid=uid, gid=gid) if _parent(rel) else None
            else:
                self._require_parent_dir(rel, path)
            self._entries[rel] = Entry(FILE, mode & 0o7777, uid, gid,
                                       time.time() if mtime is None else mtime, payload)

    def update(self, path: str, data: bytes | str) -> None:
        """Replace a file's content keeping its mode and owner (creating it 0600 if missing)."""
        entry = self.lookup(path)
        if entry is None or not entry.is_file:
            self.write(path, data)
        else:
            self.write(path, data, entry.mode, entry.uid, entry.gid)

    def symlink(self, path: str, target: str, uid: int = 0, gid: int = 0, mtime: float | None = None) -> None:
        rel = norm(path)
        with self._lock:
            self._require_parent_dir(rel, path)
            self._entries[rel] = Entry(SYMLINK, 0o777, uid, gid, time.time() if mtime is None else mtime,
                                       linkname=target)

    def set_meta(self, path: str, *, mode: int | None = None, uid: int | None = None, gid: int | None = None,
                 mtime: float | None = None) -> None:
        rel = norm(path)
        with self._lock:
            entry = self._entries.get(rel)
            if entry is None:
                raise FsError(path, ENOENT)
            self._entries[rel] = replace(
                entry,
                mode=entry.mode if mode is None else mode & 0o7777,
                uid=entry.uid if uid is None else uid,
                gid=entry.gid if gid is None else gid,
                mtime=entry.mtime if mtime is None else mtime,
            )

    def remove(self, path: str, *, recursive: bool = False) -> None:
        rel = norm(path)
        with self._lock:
            entry = self._entries.get(rel)
            if entry is None:
                raise FsError(path, ENOENT)
            if entry.is_dir:
                if not recursive:
                    raise FsError(path, EISDIR)
                children = [k for k in self._entries if k and (rel == "" or k.startswith(rel + "/"))]
                for key in children:
                    del self._entries[key]
            if rel:
                del self._entries[rel]

    def wipe(self) -> None:
        """Empty the volume (like a freshly provisioned PVC)."""
        with self._lock:
            self._entries.clear()
            self._entries[""] = Entry(DIR, self.root_mode, mtime=time.time())

    def copy_from(self, other: "VolumeTree") -> None:
        with other._lock:
            snapshot = dict(other._entries)
        with self._lock:
            self._entries.clear()
            self._entries.update(snapshot)


@dataclass(frozen=True)
class Mount:
    path: str  # absolute mount path, normalised, e.g. "/root/.mayanode"
    tree: VolumeTree
    sub: str = ""  # subPath inside the tree
    read_only: bool = False


class ContainerFS:
    """A container's view: absolute paths → (tree, relative path) through its mounts."""

    def __init__(self, mounts: list[Mount], scratch: VolumeTree | None = None, cwd: str = "/") -> None:
        if scratch is None:
            scratch = VolumeTree("rootfs")
            for d in ("bin", "etc", "tmp", "root", "var", "usr"):
                scratch.mkdir(d, 0o1777 if d == "tmp" else (0o700 if d == "root" else 0o755))
        self.scratch = scratch
        # Longest mount path first so nested mounts win.
        self.mounts = sorted(mounts, key=lambda m: len(m.path), reverse=True)
        self.cwd = cwd
        for mount in self.mounts:
            if mount.sub:
                mount.tree.mkdir(mount.sub)  # the kubelet creates a missing subPath directory
            parent = posixpath.dirname(mount.path)
            self._scratch_mkdir(parent)

    def _scratch_mkdir(self, abs_dir: str) -> None:
        # Mount points' parents exist in the container image.
        tree, rel = self._resolve_no_mkdir(abs_dir)
        if tree is self.scratch and not tree.exists(rel):
            tree.mkdir(rel)

    def abspath(self, path: str) -> str:
        joined = path if path.startswith("/") else posixpath.join(self.cwd, path)
        return "/" + norm(joined)

    def _resolve_no_mkdir(self, path: str) -> tuple[VolumeTree, str]:
        absolute = self.abspath(path)
        for mount in self.mounts:
            if absolute == mount.path or absolute.startswith(mount.path.rstrip("/") + "/") or mount.path == "/":
                rest = absolute[len(mount.path):].lstrip("/") if mount.path != "/" else absolute.lstrip("/")
                return mount.tree, norm(posixpath.join(mount.sub, rest)) if mount.sub else norm(rest)
        return self.scratch, norm(absolute)

    def resolve(self, path: str) -> tuple[VolumeTree, str]:
        return self._resolve_no_mkdir(path)

    def mount_for(self, path: str) -> Mount | None:
        absolute = self.abspath(path)
        for mount in self.mounts:
            if absolute == mount.path or absolute.startswith(mount.path.rstrip("/") + "/"):
                return mount
        return None

    # ---- file operations over the merged view -------------------------------------------
    def stat(self, path: str) -> Entry:
        tree, rel = self.resolve(path)
        entry = tree.lookup(rel)
        if entry is None:
            raise FsError(path, ENOENT)
        return entry

    def lookup(self, path: str) -> Entry | None:
        tree, rel = self.resolve(path)
        return tree.lookup(rel)

    def exists(self, path: str) -> bool:
        return self.lookup(path) is not None

    def is_dir(self, path: str) -> bool:
        entry = self.lookup(path)
        return entry is not None and entry.is_dir

    def listdir(self, path: str) -> list[str]:
        tree, rel = self.resolve(path)
        names = set(tree.listdir(rel))
        absolute = self.abspath(path).rstrip("/") or "/"
        for mount in self.mounts:
            if mount.path != "/" and posixpath.dirname(mount.path) == absolute:
                names.add(posixpath.basename(mount.path))
        return sorted(names)

    def read(self, path: str) -> bytes:
        entry = self.stat(path)
        if entry.is_dir:
            raise FsError(path, EISDIR)
        return entry.data

    def _check_writable(self, path: str) -> None:
        mount = self.mount_for(path)
        if mount is not None and mount.read_only:
            raise FsError(path, "Read-only file system")

    def write(self, path: str, data: bytes, mode: int = 0o644, uid: int = 0, gid: int = 0, *,
              mtime: float | None = None) -> None:
        self._check_writable(path)
        tree, rel = self.resolve(path)
        tree.write(rel, data, mode, uid, gid, mtime=mtime, parents=False)

    def mkdir(self, path: str, mode: int = 0o755, uid: int = 0, gid: int = 0, *, parents: bool = False,
              mtime: float | None = None) -> None:
        self._check_writable(path)
        absolute = self.abspath(path)
        if parents:
            # Walk component by component so intermediate dirs land on the right mount.
            parts = [p for p in absolute.split("/") if p]
            for i in range(1, len(parts)):
                sub = "/" + "/".join(parts[:i])
                entry = self.lookup(sub)
                if entry is None:
                    tree, rel = self.resolve(sub)
                    tree.mkdir(rel, 0o755, uid, gid, parents=False)
                elif not entry.is_dir:
                    raise FsError(path, ENOTDIR)
            existing = self.lookup(absolute)
            if existing is not None:
                if not existing.is_dir:
                    raise FsError(path, EEXIST)
                return
        elif self.lookup(absolute) is not None:
            raise FsError(path, EEXIST)
        tree, rel = self.resolve(absolute)
        tree.mkdir(rel, mode, uid, gid, parents=False, exist_ok=False, mtime=mtime)

    def set_meta(self, path: str, **kwargs) -> None:
        tree, rel = self.resolve(path)
        tree.set_meta(rel, **kwargs)

    def symlink(self, path: str, target: str, uid: int = 0, gid: int = 0, mtime: float | None = None) -> None:
        self._check_writable(path)
        tree, rel = self.resolve(path)
        tree.symlink(rel, target, uid, gid, mtime)

    def remove(self, path: str, *, recursive: bool = False) -> None:
        self._check_writable(path)
        absolute = self.abspath(path)
        if any(m.path == absolute for m in self.mounts):
            raise FsError(path, "Device or resource busy")
        tree, rel = self.resolve(absolute)
        tree.remove(rel, recursive=recursive)

    def walk(self, path: str) -> Iterator[tuple[str, Entry, int]]:
        """Depth-first (parents first, names sorted) over the merged view: (absolute path, entry, depth)."""
        absolute = self.abspath(path)
        entry = self.stat(absolute)
        yield from self._walk(absolute, entry, 0)

    def _walk(self, absolute: str, entry: Entry, depth: int) -> Iterator[tuple[str, Entry, int]]:
        yield absolute, entry, depth
        if entry.is_dir:
            for name in self.listdir(absolute):
                child = posixpath.join(absolute, name)
                child_entry = self.lookup(child)
                if child_entry is not None:
                    yield from self._walk(child, child_entry, depth + 1)
