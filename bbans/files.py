"""Reading inputs a block at a time, and writing outputs whole or not at all."""
import contextlib
import hashlib
import mmap
import os
import tempfile
from pathlib import Path

from bbans.errors import BbansError

@contextlib.contextmanager
def open_input(path: Path):
    """The file's bytes as a read-only memory map (an empty file as b"")."""
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            yield b""
            return
        data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        yield data
    finally:
        try:
            data.close()
        except BufferError:  # arrays on it are still referenced (by an error's traceback): they free it
            pass


def release(data, start: int, stop: int):
    """Lets the pages of data[start:stop] of a memory map go from memory (they are read
    back from the file if needed again), so that reading a large input once through keeps
    only a window of it resident."""
    if isinstance(data, mmap.mmap):
        start -= start % mmap.PAGESIZE
        if stop > start:
            data.madvise(mmap.MADV_DONTNEED, start, stop - start)


class Discard:
    """A binary file that forgets what is written to it."""

    def write(self, data):
        return len(data)


class HashingWriter:
    """A binary file's `write` that also hashes what passes through it."""

    def __init__(self, f):
        self.file, self.hash = f, hashlib.sha256()

    def write(self, data):
        self.hash.update(data)
        return self.file.write(data)


@contextlib.contextmanager
def atomic_output(path: Path):
    """A writer for `path`: the bytes go to a temporary file beside it, which is synced,
    read back against what was written and only then renamed over `path`. On any error
    the temporary file goes and `path` is left as it was."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            writer = HashingWriter(f)
            yield writer
            f.flush()
            os.fsync(f.fileno())
        with open(tmp, "rb") as f:
            if hashlib.file_digest(f, "sha256").digest() != writer.hash.digest():
                raise BbansError(f"{path}: the written file does not read back; nothing written")
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_atomic(path: Path, data: bytes):
    with atomic_output(path) as out:
        out.write(data)
