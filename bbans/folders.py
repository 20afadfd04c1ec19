"""Folders: the .bbans file of a folder holds, for each file below it, its path and its
own container (as `bbans compress` makes of that file alone), so that decompression
restores the folder with its names. Empty folders, links and other special files are
not kept: a folder holding a link or a special file is refused.

    payload      u32 count, then per file: u16 path bytes, u64 container bytes; then
                 the paths (UTF-8, "/" between folders) and containers, in order
"""
import hashlib
import os
import shutil
import struct
import tempfile
from pathlib import Path, PurePosixPath

from bbans import api, container
from bbans.container import Container
from bbans.errors import BbansError
from bbans.files import Discard, open_input

COUNT = struct.Struct(">I")
ENTRY = struct.Struct(">HQ")


def files_below(folder: Path) -> list:
    """(path relative to `folder`, path) of every file below it, in order of path."""
    found = []
    for path in sorted(folder.rglob("*")):
        if path.is_symlink() or not (path.is_file() or path.is_dir()):
            raise BbansError(f"{path} is a link or a special file; a folder is compressed with regular files only")
        if path.is_file():
            found.append((path.relative_to(folder).as_posix(), path))
    if not found:
        raise BbansError(f"{folder} holds no files")
    return found


def compress(folder: Path, **options):
    """(container bytes, report) of a folder: each file coded by bbans.api.compress with
    `options`, as it would be alone."""
    members, reports = [], []
    for name, path in files_below(folder):
        with open_input(path) as data:
            try:
                blob, report = api.compress(data, **options)
            except BbansError as error:  # say which file (a text file, say, given --model)
                raise BbansError(f"{path}: {error}") from None
        members.append((name, blob))
        reports.append(dict(report, name=name))
    blob = pack(members)
    dims = sum(r["n_dims"] for r in reports)
    return blob, dict(method="folder", model=None, layout="folder", n_images=sum(r["n_images"] for r in reports),
                      n_dims=dims, n_files=len(reports), original_bytes=sum(r["original_bytes"] for r in reports),
                      compressed_bytes=len(blob),
                      bits_per_dim=8 * len(blob) / max(dims, 1), seconds=sum(r["seconds"] for r in reports),
                      files=reports, warnings=[f"{r['name']}: {w}" for r in reports for w in r["warnings"]])


def pack(members) -> bytes:
    """The container of a folder of (path, container bytes) of each file."""
    payload = _pack(members)
    return Container("folder", "bytes", sum(container.read(blob).size for _, blob in members),
                     hashlib.sha256(payload).digest(), 0, "", b"", container.method_fingerprint("folder", container.VERSION),
                     b"", payload).to_bytes()


def _pack(members) -> bytes:
    try:
        names = [name.encode() for name, _ in members]
    except UnicodeEncodeError:  # a file name that is not UTF-8, kept by Python as surrogates
        raise BbansError("a file name below the folder is not UTF-8; rename it to compress the folder") from None
    table = b"".join(ENTRY.pack(len(name), len(blob)) for name, (_, blob) in zip(names, members))
    return COUNT.pack(len(members)) + table + b"".join(name + blob for name, (_, blob) in zip(names, members))


def members(box: Container) -> list:
    """(path, container bytes) of each file of a folder's container; BbansError where
    the table does not add up or a path would lead out of the folder."""
    payload = box.payload
    if hashlib.sha256(payload).digest() != box.sha256:
        raise BbansError("checksum mismatch: the folder's table or files are corrupt; nothing written")
    count, = COUNT.unpack_from(payload) if len(payload) >= COUNT.size else (0,)
    start = COUNT.size + count * ENTRY.size
    if count == 0 or start > len(payload):
        raise BbansError("corrupt folder table")
    entries = [ENTRY.unpack_from(payload, COUNT.size + i * ENTRY.size) for i in range(count)]
    if start + sum(a + b for a, b in entries) != len(payload):
        raise BbansError("corrupt folder table (its sizes do not add up)")
    found = []
    for name_bytes, size in entries:
        name = payload[start:start + name_bytes].decode("utf-8", "replace")
        start += name_bytes
        found.append((_safe(name), payload[start:start + size]))
        start += size
    if len({name for name, _ in found}) != count:
        raise BbansError("corrupt folder table (a path given twice)")
    return found


def _safe(name: str) -> str:
    parts = name.split("/")
    if not name or "\0" in name or "\\" in name or any(p in ("", ".", "..") for p in parts) \
            or PurePosixPath(name).is_absolute():
        raise BbansError(f"corrupt folder table (the path {name!r} would lead out of the folder)")
    return name


def restore(blob: bytes, output, force: bool = False, workers: int = 1, scheduler=None, model=None) -> dict:
    """Restores the folder of a folder's container to `output` (None: checks every file
    and writes nothing): every file is decoded and checked into a temporary folder
    beside it, which then takes the output's name, so that a failure leaves nothing. An
    existing output is refused unless `force`. `model`: the model file its files were made
    with, if one was."""
    box = container.read(blob)
    parts = members(box)
    if output is not None and output.exists() and not force:
        raise BbansError(f"{output} exists; use --force (force=True) to overwrite")
    headers = [container.read(member) for _, member in parts]
    if sum(h.size for h in headers) != box.size or any(h.method == "folder" for h in headers):
        raise BbansError("corrupt folder (its files' sizes do not add up, or one is a folder)")
    tmp = None if output is None else Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    try:
        seconds, dims = 0.0, 0
        for name, member in parts:
            if tmp is None:
                report = api.decompress_to(member, Discard(), workers, scheduler, model=model)
            else:
                (tmp / name).parent.mkdir(parents=True, exist_ok=True)
                with open(tmp / name, "wb") as out:
                    report = api.decompress_to(member, out, workers, scheduler, model=model)
            seconds, dims = seconds + report["seconds"], dims + report["n_dims"]
        if tmp is not None:
            if output.is_dir() and not output.is_symlink():
                shutil.rmtree(output)
            elif output.exists() or output.is_symlink():
                output.unlink()
            os.replace(tmp, output)
    except BaseException:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dict(method="folder", model=None, layout="folder", n_files=len(parts), original_bytes=box.size,
                n_dims=dims, n_images=0, seconds=seconds, files=[name for name, _ in parts])


def info(blob: bytes) -> dict:
    """What a folder's container holds: bbans.api.info of each of its files, by path."""
    box = container.read(blob)
    files = [dict(api.info(member), name=name) for name, member in members(box)]
    return dict(method="folder", n_files=len(files), original_bytes=box.size, compressed_bytes=len(blob),
                restores="byte-exact, PNG pixel-exact, by path", files=files, sha256=box.sha256.hex())
