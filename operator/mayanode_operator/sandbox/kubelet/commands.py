"""The commands an exec into a sandbox container understands, with GNU/busybox semantics.

Supported: ``tar`` (c/x/t, ``-f -`` or a file, ``-C``, ``-p``, ``--same-owner``/``--no-same-owner``,
``-m``, ``-z``, ``-v``), ``find``, ``cat``, ``ls``, ``mkdir``, ``rm``, ``test``/``[``, ``true``,
``false``, ``sleep``, ``echo``, ``sha256sum``, ``chmod``, ``chown``, ``sh -c`` (only ``exit N`` and
``true``) and — in the ``mayanode`` container only — ``mayanode tx mayachain …``, ``mayanode
version`` and ``mayanode keys show``. Anything else exits 127 with a message naming the sandbox,
so an unsupported command is obvious in a test.
"""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import json
import posixpath
import re
import shlex
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from . import tarball
from .volumes import ContainerFS, FsError

Writer = Callable[[bytes], Awaitable[None]]


@dataclass
class TxOutcome:
    """What the chain answered to a broadcast transaction."""

    code: int = 0
    txhash: str = ""
    raw_log: str = ""
    height: int = 0
    codespace: str = ""


# Broadcasts `mayanode tx mayachain <cmd> <args…>` (given as [cmd, *args]) for the exec'd pod's signer.
TxSubmitter = Callable[[list[str]], Awaitable[TxOutcome]]


@dataclass
class ExecContext:
    fs: ContainerFS
    stdin: asyncio.StreamReader
    stdout: Writer
    stderr: Writer
    env: dict[str, str] = field(default_factory=dict)
    has_mayanode: bool = False
    mayanode_version: str = ""
    submit_tx: TxSubmitter | None = None
    node_address: str = ""  # the signer's address (derived from SIGNER_SEED_PHRASE)
    chain_id: str = ""
    extra_line_timeout: float = 0.2  # how long a wrong passphrase waits for another attempt line

    async def out(self, text: str) -> None:
        if text:
            await self.stdout(text.encode())

    async def err(self, text: str) -> None:
        if text:
            await self.stderr(text.encode())


class UsageError(Exception):
    pass


async def run_command(argv: list[str], ctx: ExecContext) -> int:
    if not argv:
        await ctx.err("sandbox exec: empty command\n")
        return 127
    program = posixpath.basename(argv[0])
    handler = _COMMANDS.get(program)
    if program == "mayanode" and not ctx.has_mayanode:
        handler = None
    if handler is None:
        await ctx.err(
            f'exec: "{argv[0]}": executable file not found in $PATH '
            f"(sandbox: this container does not simulate `{program}`)\n"
        )
        return 127
    try:
        return await handler(argv, ctx)
    except UsageError as exc:
        await ctx.err(f"{program}: {exc}\n")
        return 2 if program in ("tar", "ls") else 1


# ---------------------------------------------------------------------------------------------
# tar

@dataclass
class TarArgs:
    op: str = ""  # "c" | "x" | "t"
    file: str | None = None
    members: list[tuple[str, str]] = field(default_factory=list)  # (-C dir in effect, path)
    directory: str | None = None  # last -C (extraction target)
    same_owner: bool = True
    same_permissions: bool = True
    touch: bool = False
    gzip: bool = False
    verbose: bool = False


_TAR_FLAG_LETTERS = {
    "c": ("op", "c"), "x": ("op", "x"), "t": ("op", "t"),
    "p": ("same_permissions", True), "m": ("touch", True), "z": ("gzip", True), "v": ("verbose", True),
    "o": ("same_owner", False),
}
_TAR_LONG_FLAGS = {
    "--create": ("op", "c"), "--extract": ("op", "x"), "--get": ("op", "x"), "--list": ("op", "t"),
    "--same-owner": ("same_owner", True), "--no-same-owner": ("same_owner", False),
    "--same-permissions": ("same_permissions", True), "--preserve-permissions": ("same_permissions", True),
    "--no-same-permissions": ("same_permissions", False), "--touch": ("touch", True),
    "--gzip": ("gzip", True), "--gunzip": ("gzip", True), "--verbose": ("verbose", True),
    "--numeric-owner": None, "--overwrite": None, "--unlink-first": None, "--recursive-unlink": None,
    "--no-overwrite-dir": None, "--ignore-failed-read": None,
}


def parse_tar_args(argv: list[str]) -> TarArgs:
    args = TarArgs()
    rest = list(argv[1:])
    cwd = "."

    def take(opt: str) -> str:
        if not rest:
            raise UsageError(f"option requires an argument -- '{opt}'\nTry 'tar --help' for more information.")
        return rest.pop(0)

    def letters(bundle: str, inline_arg_allowed: bool) -> None:
        nonlocal cwd
        i = 0
        while i < len(bundle):
            ch = bundle[i]
            if ch in ("f", "C"):
                value = bundle[i + 1:] if inline_arg_allowed and i + 1 < len(bundle) else None
                if value is None:
                    value = take(ch)
                    i += 1
                else:
                    i = len(bundle)
                if ch == "f":
                    args.file = value
                else:
                    cwd = value if value.startswith("/") else posixpath.join(cwd, value)
                    args.directory = cwd
                continue
            if ch not in _TAR_FLAG_LETTERS:
                raise UsageError(f"invalid option -- '{ch}'\nTry 'tar --help' for more information.")
            attr, value = _TAR_FLAG_LETTERS[ch]
            setattr(args, attr, value)
            i += 1

    if rest and not rest[0].startswith("-"):
        letters(rest.pop(0), inline_arg_allowed=False)  # old style: "cf", "xmf"
    while rest:
        arg = rest.pop(0)
        if arg == "--":
            args.members.extend((cwd, p) for p in rest)
            break
        if arg.startswith("--"):
            name, eq, value = arg.partition("=")
            if name in ("--file", "--directory"):
                value = value if eq else take(name)
                if name == "--file":
                    args.file = value
                else:
                    cwd = value if value.startswith("/") else posixpath.join(cwd, value)
                    args.directory = cwd
            elif name.startswith("--warning") or name.startswith("--exclude") or name.startswith("--owner") \
                    or name.startswith("--group") or name.startswith("--mode"):
                continue
            elif name in _TAR_LONG_FLAGS:
                flag = _TAR_LONG_FLAGS[name]
                if flag is not None:
                    setattr(args, flag[0], flag[1])
            else:
                raise UsageError(f"unrecognized option '{arg}'\nTry 'tar --help' for more information.")
        elif arg.startswith("-") and arg != "-":
            letters(arg[1:], inline_arg_allowed=True)
        else:
            args.members.append((cwd, arg))
    if not args.op:
        raise UsageError("You must specify one of the '-Acdtrux', '--delete' or '--test-label' options\n"
                         "Try 'tar --help' or 'tar --usage' for more information.")
    return args


async def cmd_tar(argv: list[str], ctx: ExecContext) -> int:
    args = parse_tar_args(argv)
    file = args.file if args.file is not None else "-"
    fs = ctx.fs

    async def report(result: tarball.TarResult) -> int:
        for line in result.messages:
            await ctx.err(f"tar: {line}\n")
        return 2 if result.failed else 0

    if args.op == "c":
        if not args.members:
            await ctx.err("tar: Cowardly refusing to create an empty archive\n"
                          "Try 'tar --help' or 'tar --usage' for more information.\n")
            return 2
        members = [(fs.abspath(base), path) for base, path in args.members]
        result = tarball.create_archive(fs, members, compress=args.gzip)
        if args.verbose:
            listing = tarball.list_archive(result.data, compress=args.gzip)
            stream = ctx.stderr if file == "-" else ctx.stdout
            await stream(("\n".join(listing) + "\n").encode() if listing else b"")
        if file == "-":
            view = memoryview(result.data)
            for i in range(0, len(view), 65536):
                await ctx.stdout(bytes(view[i:i + 65536]))
        else:
            try:
                fs.write(file, result.data, 0o644)
            except FsError as exc:
                await ctx.err(f"tar: {file}: Cannot open: {exc.reason}\n"
                              "tar: Error is not recoverable: exiting now\n")
                return 2
        return await report(result)

    # x and t read an archive
    compressed_bytes = args.gzip
    if file == "-":
        try:
            data = await tarball.read_archive_stream(ctx.stdin, gzip=args.gzip)
        except tarball.NotATarArchive as exc:
            await ctx.err(f"tar: {exc}\ntar: Exiting with failure status due to previous errors\n")
            return 2
        compressed_bytes = False
    else:
        try:
            data = fs.read(file)
        except FsError as exc:
            await ctx.err(f"tar: {file}: Cannot open: {exc.reason}\ntar: Error is not recoverable: exiting now\n")
            return 2
    if args.op == "t":
        try:
            listing = tarball.list_archive(data, compress=compressed_bytes, verbose=args.verbose)
        except Exception:
            await ctx.err("tar: This does not look like a tar archive\n")
            return 2
        await ctx.out("".join(line + "\n" for line in listing))
        return 0
    dest = fs.abspath(args.directory or ".")
    only = [p for _, p in args.members] or None
    result = tarball.extract_archive(
        fs, data, dest, same_owner=args.same_owner, same_permissions=args.same_permissions,
        touch=args.touch, compress=compressed_bytes, only=only,
    )
    if args.verbose and not result.failed:
        await ctx.out("".join(line + "\n" for line in tarball.list_archive(data, compress=compressed_bytes)))
    return await report(result)


# ---------------------------------------------------------------------------------------------
# find

@dataclass
class FindArgs:
    paths: list[str]
    maxdepth: int | None = None
    mindepth: int = 0
    type: str | None = None
    names: list[tuple[str, bool]] = field(default_factory=list)  # (glob, case-insensitive)
    print0: bool = False


def parse_find_args(argv: list[str]) -> FindArgs:
    rest = list(argv[1:])
    paths: list[str] = []
    while rest and not (rest[0].startswith("-") and len(rest[0]) > 1) and rest[0] not in ("(", "!"):
        paths.append(rest.pop(0))
    args = FindArgs(paths or ["."])

    def value(opt: str) -> str:
        if not rest:
            raise UsageError(f"missing argument to `{opt}'")
        return rest.pop(0)

    while rest:
        opt = rest.pop(0)
        if opt in ("-maxdepth", "-mindepth"):
            raw = value(opt)
            if not raw.isdigit():
                raise UsageError(f"Expected a positive decimal integer argument to {opt}, but got `{raw}'")
            if opt == "-maxdepth":
                args.maxdepth = int(raw)
            else:
                args.mindepth = int(raw)
        elif opt == "-type":
            t = value(opt)
            if t not in ("f", "d", "l"):
                raise UsageError(f"Unknown argument to -type: {t}")
            args.type = t
        elif opt in ("-name", "-iname"):
            args.names.append((value(opt), opt == "-iname"))
        elif opt == "-print":
            continue
        elif opt == "-print0":
            args.print0 = True
        else:
            raise UsageError(f"unknown predicate `{opt}'")
    return args


async def cmd_find(argv: list[str], ctx: ExecContext) -> int:
    args = parse_find_args(argv)
    status = 0
    out: list[str] = []
    for start in args.paths:
        try:
            walked = list(ctx.fs.walk(start))
        except FsError:
            await ctx.out("".join(out) if out else "")
            out.clear()
            await ctx.err(f"find: '{start}': No such file or directory\n")
            status = 1
            continue
        root_abs = walked[0][0]
        for absolute, entry, depth in walked:
            if args.maxdepth is not None and depth > args.maxdepth:
                continue
            if depth < args.mindepth:
                continue
            if args.type and entry.kind != args.type:
                continue
            base = posixpath.basename(absolute) if depth else posixpath.basename(start.rstrip("/")) or start
            if not all(
                fnmatch.fnmatchcase(base.lower() if ci else base, glob.lower() if ci else glob)
                for glob, ci in args.names
            ):
                continue
            rel = absolute[len(root_abs):].lstrip("/")
            shown = start if not rel else (start + rel if start.endswith("/") else f"{start}/{rel}")
            out.append(shown + ("\0" if args.print0 else "\n"))
    await ctx.out("".join(out))
    return status


# ---------------------------------------------------------------------------------------------
# small utilities

def _split_flags(argv: list[str], allowed: str) -> tuple[set[str], list[str]]:
    flags: set[str] = set()
    operands: list[str] = []
    only_operands = False
    for arg in argv[1:]:
        if only_operands or not arg.startswith("-") or arg == "-":
            operands.append(arg)
        elif arg == "--":
            only_operands = True
        else:
            for ch in arg[1:]:
                if ch not in allowed:
                    raise UsageError(f"invalid option -- '{ch}'")
                flags.add(ch)
    return flags, operands


async def cmd_cat(argv: list[str], ctx: ExecContext) -> int:
    _, files = _split_flags(argv, "")
    status = 0
    if not files:
        files = ["-"]
    for name in files:
        if name == "-":
            await ctx.stdout(await ctx.stdin.read())
            continue
        try:
            await ctx.stdout(ctx.fs.read(name))
        except FsError as exc:
            await ctx.err(f"cat: {name}: {exc.reason}\n")
            status = 1
    return status


async def cmd_ls(argv: list[str], ctx: ExecContext) -> int:
    flags, paths = _split_flags(argv, "1aAl")
    paths = paths or ["."]
    status = 0
    blocks: list[str] = []
    for path in paths:
        entry = ctx.fs.lookup(path)
        if entry is None:
            await ctx.err(f"ls: cannot access '{path}': No such file or directory\n")
            status = 2
            continue
        if not entry.is_dir:
            blocks.append(_ls_line(path, entry, "l" in flags) + "\n")
            continue
        names = ctx.fs.listdir(path)
        if "a" in flags:
            names = [".", ".."] + names
        elif "A" not in flags:
            names = [n for n in names if not n.startswith(".")]
        lines = []
        for n in names:
            child = ctx.fs.lookup(posixpath.join(path, n)) if n not in (".", "..") else entry
            lines.append(_ls_line(n, child, "l" in flags) if child else n)
        header = f"{path}:\n" if len(paths) > 1 else ""
        blocks.append(header + "".join(line + "\n" for line in lines))
    await ctx.out("\n".join(blocks) if len(paths) > 1 else "".join(blocks))
    return status


def _ls_line(name: str, entry, long: bool) -> str:
    if not long:
        return name
    import stat as statmod

    stamp = time.strftime("%b %d %H:%M", time.gmtime(entry.mtime))
    suffix = f" -> {entry.linkname}" if entry.kind == "l" else ""
    return (f"{statmod.filemode(entry.st_mode)} 1 {entry.uid:<4} {entry.gid:<4} {entry.size:>8} "
            f"{stamp} {name}{suffix}")


async def cmd_mkdir(argv: list[str], ctx: ExecContext) -> int:
    rest = list(argv[1:])
    parents = False
    mode = 0o755
    dirs: list[str] = []
    while rest:
        arg = rest.pop(0)
        if arg in ("-p", "--parents"):
            parents = True
        elif arg == "-m" or arg.startswith("--mode="):
            raw = arg.split("=", 1)[1] if "=" in arg else (rest.pop(0) if rest else "")
            try:
                mode = int(raw, 8)
            except ValueError:
                raise UsageError(f"invalid mode '{raw}'") from None
        elif arg.startswith("-") and arg != "-" and set(arg[1:]) <= {"p", "v"}:
            parents = parents or "p" in arg
        elif arg.startswith("-") and arg != "-":
            raise UsageError(f"invalid option -- '{arg[1:2]}'")
        else:
            dirs.append(arg)
    if not dirs:
        raise UsageError("missing operand")
    status = 0
    for d in dirs:
        try:
            ctx.fs.mkdir(d, mode, parents=parents)
            if parents:
                ctx.fs.set_meta(d, mode=mode) if mode != 0o755 else None
        except FsError as exc:
            await ctx.err(f"mkdir: cannot create directory '{d}': {exc.reason}\n")
            status = 1
    return status


async def cmd_rm(argv: list[str], ctx: ExecContext) -> int:
    flags, paths = _split_flags([a for a in argv if a not in ("--force", "--recursive")], "frRvd")
    force = "f" in flags or "--force" in argv
    recursive = bool({"r", "R"} & flags) or "--recursive" in argv
    if not paths and not force:
        raise UsageError("missing operand")
    status = 0
    for p in paths:
        entry = ctx.fs.lookup(p)
        if entry is None:
            if not force:
                await ctx.err(f"rm: cannot remove '{p}': No such file or directory\n")
                status = 1
            continue
        if entry.is_dir and not recursive:
            await ctx.err(f"rm: cannot remove '{p}': Is a directory\n")
            status = 1
            continue
        try:
            ctx.fs.remove(p, recursive=recursive)
        except FsError as exc:
            await ctx.err(f"rm: cannot remove '{p}': {exc.reason}\n")
            status = 1
    return status


async def cmd_test(argv: list[str], ctx: ExecContext) -> int:
    args = list(argv[1:])
    if posixpath.basename(argv[0]) == "[":
        if not args or args[-1] != "]":
            await ctx.err("[: missing ]\n")
            return 2
        args = args[:-1]
    negate = False
    if args and args[0] == "!":
        negate, args = True, args[1:]
    if len(args) == 2 and args[0] in ("-d", "-f", "-e", "-s", "-r", "-w"):
        entry = ctx.fs.lookup(args[1])
        result = entry is not None and {
            "-d": entry.is_dir, "-f": entry.is_file, "-e": True, "-s": entry.size > 0,
            "-r": True, "-w": True,
        }[args[0]]
    elif len(args) == 2 and args[0] in ("-z", "-n"):
        result = (args[1] == "") == (args[0] == "-z")
    elif len(args) == 3 and args[1] in ("=", "!="):
        result = (args[0] == args[2]) == (args[1] == "=")
    elif len(args) == 1:
        result = args[0] != ""
    elif not args:
        result = False
    else:
        await ctx.err(f"test: sandbox supports -d/-f/-e/-s/-z/-n and =, got {shlex.join(args)}\n")
        return 2
    return 0 if result != negate else 1


async def cmd_true(argv: list[str], ctx: ExecContext) -> int:
    return 0


async def cmd_false(argv: list[str], ctx: ExecContext) -> int:
    return 1


def _parse_duration(raw: str) -> float:
    if raw == "infinity":
        return float("inf")
    m = re.fullmatch(r"(\d+(?:\.\d*)?)([smhd]?)", raw)
    if not m:
        raise UsageError(f"invalid time interval '{raw}'")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


async def cmd_sleep(argv: list[str], ctx: ExecContext) -> int:
    if len(argv) < 2:
        raise UsageError("missing operand")
    total = sum(_parse_duration(a) for a in argv[1:])
    if total == float("inf"):
        await asyncio.Event().wait()
    await asyncio.sleep(total)
    return 0


async def cmd_echo(argv: list[str], ctx: ExecContext) -> int:
    args = argv[1:]
    newline = True
    if args and args[0] == "-n":
        newline, args = False, args[1:]
    await ctx.out(" ".join(args) + ("\n" if newline else ""))
    return 0


async def cmd_sha256sum(argv: list[str], ctx: ExecContext) -> int:
    _, files = _split_flags(argv, "b")
    status = 0
    lines = []
    for name in files:
        try:
            lines.append(f"{hashlib.sha256(ctx.fs.read(name)).hexdigest()}  {name}\n")
        except FsError as exc:
            await ctx.err(f"sha256sum: {name}: {exc.reason}\n")
            status = 1
    await ctx.out("".join(lines))
    return status


async def cmd_chmod(argv: list[str], ctx: ExecContext) -> int:
    flags, operands = _split_flags(argv, "R")
    if len(operands) < 2:
        raise UsageError("missing operand")
    try:
        mode = int(operands[0], 8)
    except ValueError:
        raise UsageError(f"sandbox chmod supports octal modes only, got '{operands[0]}'") from None
    status = 0
    for p in operands[1:]:
        try:
            targets = [a for a, _, _ in ctx.fs.walk(p)] if "R" in flags else [p]
            for t in targets:
                ctx.fs.set_meta(t, mode=mode)
        except FsError as exc:
            await ctx.err(f"chmod: cannot access '{p}': {exc.reason}\n")
            status = 1
    return status


async def cmd_chown(argv: list[str], ctx: ExecContext) -> int:
    flags, operands = _split_flags(argv, "R")
    if len(operands) < 2:
        raise UsageError("missing operand")
    owner, _, group = operands[0].partition(":")
    try:
        uid = int(owner) if owner else None
        gid = int(group) if group else (uid if operands[0].endswith(":") else None)
    except ValueError:
        raise UsageError(f"sandbox chown supports numeric ids only, got '{operands[0]}'") from None
    status = 0
    for p in operands[1:]:
        try:
            targets = [a for a, _, _ in ctx.fs.walk(p)] if "R" in flags else [p]
            for t in targets:
                ctx.fs.set_meta(t, uid=uid, gid=gid)
        except FsError as exc:
            await ctx.err(f"chown: cannot access '{p}': {exc.reason}\n")
            status = 1
    return status


async def cmd_sh(argv: list[str], ctx: ExecContext) -> int:
    if len(argv) >= 3 and argv[1] == "-c":
        script = argv[2].strip().rstrip(";").strip()
        if script in ("true", ":", ""):
            return 0
        if script == "false":
            return 1
        m = re.fullmatch(r"exit(?:\s+(\d+))?", script)
        if m:
            return int(m.group(1) or 0) & 0xFF
    await ctx.err(
        f"sandbox: `{shlex.join(argv)}` is not simulated: sh -c supports only 'exit N' and 'true'; "
        "run the command directly (exec argv) instead\n"
    )
    return 127


# ---------------------------------------------------------------------------------------------
# mayanode

_TX_VALUE_FLAGS = {
    "--from", "--keyring-backend", "--chain-id", "--output", "-o", "--node", "--fees", "--gas",
    "--gas-prices", "--gas-adjustment", "--broadcast-mode", "-b", "--home", "--keyring-dir", "--note",
    "--sequence", "--account-number", "--timeout-height", "--log_level", "--log_format",
}
_TX_BOOL_FLAGS = {"--yes", "-y", "--dry-run", "--generate-only", "--offline"}


@dataclass
class MayanodeArgs:
    positionals: list[str]
    flags: dict[str, str]
    yes: bool


def parse_mayanode_args(argv: list[str]) -> MayanodeArgs:
    positionals: list[str] = []
    flags: dict[str, str] = {}
    yes = False
    rest = list(argv[1:])
    while rest:
        arg = rest.pop(0)
        if arg == "--":                      # pflag: everything after `--` is positional
            positionals.extend(rest)
            break
        if arg.startswith("-") and not _looks_negative_number(arg):
            name, eq, value = arg.partition("=")
            if name in _TX_BOOL_FLAGS:
                if name in ("--yes", "-y"):
                    yes = value.lower() != "false" if eq else True
                flags[name.lstrip("-")] = value if eq else "true"
            elif name in _TX_VALUE_FLAGS or name.startswith("--"):
                if not eq:
                    if not rest:
                        raise UsageError(f"Error: flag needs an argument: {name}")
                    value = rest.pop(0)
                key = {"-o": "output", "-b": "broadcast-mode"}.get(name, name.lstrip("-"))
                flags[key] = value
            else:
                raise UsageError(f"Error: unknown shorthand flag: '{name[1:2]}' in {arg}")
        else:
            positionals.append(arg)
    return MayanodeArgs(positionals, flags, yes)


def _looks_negative_number(arg: str) -> bool:
    return bool(re.fullmatch(r"-\d+(\.\d+)?", arg))


async def _read_line(ctx: ExecContext, timeout: float | None) -> str | None:
    try:
        line = await (asyncio.wait_for(ctx.stdin.readline(), timeout) if timeout else ctx.stdin.readline())
    except asyncio.TimeoutError:
        return None
    if not line:
        return None
    return line.decode(errors="replace").rstrip("\r\n")


async def _unlock_keyring(ctx: ExecContext) -> bool:
    """Read up to three passphrase attempts from stdin like the file keyring's prompt."""
    expected = ctx.env.get("SIGNER_PASSWD")
    for attempt in range(1, 4):
        await ctx.err(f"Enter keyring passphrase (attempt {attempt}/3):\n")
        line = await _read_line(ctx, None if attempt == 1 else ctx.extra_line_timeout)
        if line is None:
            if attempt == 1:
                await ctx.err("Error: EOF\n")
                return False
            break
        if expected is not None and line == expected:
            return True
        await ctx.err("incorrect passphrase\n")
    await ctx.err("Error: too many failed passphrase attempts\n")
    return False


async def cmd_mayanode(argv: list[str], ctx: ExecContext) -> int:
    args = parse_mayanode_args(argv)
    pos = args.positionals
    if pos[:1] == ["version"]:
        await ctx.out(ctx.mayanode_version + "\n")
        return 0
    if pos[:2] == ["keys", "show"] and len(pos) >= 3:
        if not await _unlock_keyring(ctx):
            return 1
        if pos[2] != ctx.env.get("SIGNER_NAME"):
            await ctx.err(f"Error: {pos[2]}.info: key not found\n")
            return 1
        await ctx.out(ctx.node_address + "\n")
        return 0
    if pos[:2] != ["tx", "mayachain"] or len(pos) < 3:
        await ctx.err(f"sandbox: `{shlex.join(argv)}` is not simulated; supported: "
                      "mayanode tx mayachain <cmd> …, mayanode keys show NAME -a, mayanode version\n")
        return 127
    signer = args.flags.get("from")
    if not signer:
        await ctx.err("Error: failed to convert address field to address: empty address string is not allowed\n")
        return 1
    backend = args.flags.get("keyring-backend", "os")
    if backend != "file":
        await ctx.err(f"Error: {signer}.info: key not found (sandbox keys live in the 'file' keyring backend)\n")
        return 1
    if not await _unlock_keyring(ctx):
        return 1
    if signer != ctx.env.get("SIGNER_NAME"):
        await ctx.err(f"Error: {signer}.info: key not found\n")
        return 1
    if not args.yes:
        await ctx.err("confirm transaction before signing and broadcasting [y/N]: ")
        answer = await _read_line(ctx, ctx.extra_line_timeout)
        if (answer or "").strip().lower() not in ("y", "yes"):
            await ctx.err("canceled transaction\n")
            return 1
    chain_id = args.flags.get("chain-id", "")
    if ctx.chain_id and chain_id != ctx.chain_id:
        outcome = TxOutcome(code=4, codespace="sdk", raw_log=(
            f"signature verification failed; please verify account number and chain-id "
            f"({chain_id or 'empty'}): unauthorized"))
    elif ctx.submit_tx is None:
        await ctx.err("Error: post failed: connection refused\n")
        return 1
    else:
        # The chain sees the message: `<cmd> <args…>` without the CLI's flags.
        outcome = await ctx.submit_tx(pos[2:])
    if outcome.code != 0 and not outcome.txhash:
        await ctx.err(f"Error: {outcome.raw_log}\n")  # refused by the CLI: nothing was broadcast
        return 1

    body = {
        "height": str(outcome.height), "txhash": outcome.txhash, "codespace": outcome.codespace,
        "code": outcome.code, "data": "", "raw_log": outcome.raw_log, "logs": [], "info": "",
        "gas_wanted": "0", "gas_used": "0", "tx": None, "timestamp": "", "events": [],
    }
    if args.flags.get("output") == "json":
        await ctx.out(json.dumps(body, separators=(",", ":")) + "\n")
    else:
        await ctx.out("".join(f"{k}: {json.dumps(v) if isinstance(v, str) else ('null' if v is None else v)}\n"
                              for k, v in body.items() if not isinstance(v, list)))
    if outcome.code != 0:
        await ctx.err((outcome.raw_log or f"code {outcome.code}") + "\n")
        return 1
    return 0


_COMMANDS: dict[str, Callable[[list[str], ExecContext], Awaitable[int]]] = {
    "tar": cmd_tar, "find": cmd_find, "cat": cmd_cat, "ls": cmd_ls, "mkdir": cmd_mkdir, "rm": cmd_rm,
    "test": cmd_test, "[": cmd_test, "true": cmd_true, "false": cmd_false, "sleep": cmd_sleep,
    "echo": cmd_echo, "sha256sum": cmd_sha256sum, "chmod": cmd_chmod, "chown": cmd_chown,
    "sh": cmd_sh, "ash": cmd_sh, "bash": cmd_sh, "mayanode": cmd_mayanode,
}

SUPPORTED_COMMANDS = tuple(sorted(_COMMANDS))
