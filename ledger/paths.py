"""Paths the user names (options, the config file, the environment), refused when they are not what they
must be: a regular file where a file is read, written or opened as a ledger, a directory where one is
expected. A FIFO, a terminal or a device in a file's place would block the first open() or read() forever;
so nothing here waits: a path is looked at with stat(), and a file read is opened non-blocking and
looked at again with fstat() before the first byte is read."""

import os
import stat

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


class PathError(OSError):
    """A path that is not what it must be. An OSError, so that the callers' own `cannot read (...)` says it;
    `str()` is one line naming the path."""

    def __init__(self, path, reason):
        super().__init__(0, reason, os.fspath(path))

    def __str__(self):
        return f"{self.filename}: {self.strerror}"


def _kind(mode):
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def check_file(path):
    """`path` if it is missing (to be created) or a regular file (a symlink to one too); else PathError."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return path
    except OSError as error:
        raise PathError(path, f"cannot look at it ({error.strerror})") from None
    if not stat.S_ISREG(mode):
        raise PathError(path, f"{_kind(mode)}, not a regular file")
    return path


def check_directory(path):
    """`path` if it is missing (to be created) or a directory; else PathError."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return path
    except OSError as error:
        raise PathError(path, f"cannot look at it ({error.strerror})") from None
    if not stat.S_ISDIR(mode):
        raise PathError(path, f"{_kind(mode)}, not a directory")
    return path


def read_bytes(path, limit):
    """At most `limit` + 1 bytes of the regular file at `path` (more than `limit` read says it is too large).
    OSError (PathError for what is not a regular file) when it cannot be read."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise PathError(path, f"{_kind(mode)}, not a regular file")
        chunks, left = [], limit + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)
