"""The log files gce writes, whoever writes them (a manager, a user endpoint): bounded in size.

Each file is rotated at LOG_BYTES and LOG_BACKUPS old ones are kept (``name.log.1`` ...), so
one endpoint's logs never take more than (LOG_BACKUPS + 1) x LOG_BYTES of its disk.

A process may also write to its log file through its stdout and stderr (a user endpoint's
are opened on it by its manager, so a traceback or a print lands there). Those descriptors
would keep writing into the renamed file after a rollover, without bound once it is deleted;
the handler moves them onto the new file with it.

A log tells who was refused and why, which accounts exist, what failed: it is for its owner
(and an admin group the admin chose). Every file here is created 0600, whatever the process's
umask (RotatingFileHandler would create each new file with it: 0644 under root's usual 022);
one found with wider modes is narrowed to 0600, or 0640 when the admin gave it a group of its
own. A log is never opened through a symbolic link, nor when another user owns it or can
replace it: in a directory others can write to, a planted link would make root append to
any file it names.
"""

from __future__ import annotations

import errno
import io
import logging
import logging.handlers
import os
import stat
import sys
from pathlib import Path

from gce.errors import PermissionDenied

LOG_BYTES = 10 * 1024 * 1024
LOG_BACKUPS = 5


def _refuse(path: Path, why: str, hint: str) -> PermissionDenied:
    return PermissionDenied(f"cannot write the log {path}", why, hint=hint)


def check_directory(directory: Path) -> None:
    """Refuse DIRECTORY for logs if a user other than us (or root) owns it or may replace its files."""
    st = os.stat(directory)
    if st.st_uid not in (0, os.geteuid()):
        raise _refuse(directory, f"its directory belongs to uid {st.st_uid}", f"chown {os.geteuid()} {directory}")
    others = 0o002 | (0o020 if st.st_gid != os.getegid() else 0)  # our own group is us
    if st.st_mode & others and not st.st_mode & stat.S_ISVTX:
        raise _refuse(directory, "other users may write to its directory", f"chmod go-w {directory}")


def open_log(path: str | Path, flags: int = os.O_WRONLY | os.O_APPEND) -> int:
    """A descriptor of PATH for appending, created 0600; never through a symlink, never a file
    another user owns; a file found with wider modes is narrowed (see above)."""
    path = Path(path)
    check_directory(path.parent)
    flags |= os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK  # no FIFO may block us
    try:
        try:
            fd = os.open(path, flags | os.O_CREAT, 0o600)
        except PermissionError:  # fs.protected_regular: another user's file in a sticky directory
            fd = os.open(path, flags)
    except OSError as e:
        if e.errno == errno.ELOOP:  # PATH is a symbolic link
            raise _refuse(path, "it is a symbolic link", f"rm {path}") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
            raise _refuse(path, "it is not a regular file of this user", f"rm {path}")
        narrow(fd, st)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def narrow(fd: int, st: os.stat_result) -> None:
    """Take from the file of FD every permission beyond 0600, or 0640 when its group is not ours."""
    keep = 0o640 if st.st_gid != os.getegid() else 0o600
    if stat.S_IMODE(st.st_mode) & ~keep:
        os.fchmod(fd, stat.S_IMODE(st.st_mode) & keep)


def open_append(path: str | Path) -> io.BufferedWriter:
    """PATH opened for appending bytes (a child's stdout and stderr), as `open_log` opens it."""
    return os.fdopen(open_log(path), "ab")  # type: ignore[return-value]


def open_regular(path: str | Path, owner: int | None = None) -> io.BufferedReader:
    """PATH opened for reading bytes, never through a symlink, and only if it is a regular file
    (of uid OWNER when given): root reading a user's logs must not be led into its own files.
    PermissionError otherwise."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    st = os.fstat(fd)
    why = ("not a regular file" if not stat.S_ISREG(st.st_mode) else
           f"not owned by uid {owner}" if owner is not None and st.st_uid != owner else "")
    if why:
        os.close(fd)
        raise PermissionError(errno.EPERM, why)
    return os.fdopen(fd, "rb")  # type: ignore[return-value]


def _narrow_backups(path: Path) -> None:
    """Narrow the rotated files of PATH too (``name.1`` ...), written before they were kept private."""
    for i in range(1, LOG_BACKUPS + 1):
        try:
            fd = os.open(path.with_name(f"{path.name}.{i}"), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            st = os.fstat(fd)
            if stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid():
                narrow(fd, st)
        finally:
            os.close(fd)


class _RotatingHandler(logging.handlers.RotatingFileHandler):
    """A RotatingFileHandler that takes this process's stdout and stderr along when they
    write to the same file. The size check already counts their writes: it looks at the
    file's end, not at what the handler wrote (CPython's shouldRollover seeks to the end).
    Each file it opens, the first and every new one after a rollover, is opened by `open_log`."""

    def _open(self):  # type: ignore[override]
        return os.fdopen(open_log(self.baseFilename), "a", encoding=self.encoding, errors=self.errors)

    def doRollover(self) -> None:
        old = _identity(self.stream.fileno()) if self.stream else None
        followers = [fd for fd in (1, 2) if old is not None and _identity(fd) == old]
        super().doRollover()
        if self.stream is None:  # delay=True keeps the new file closed until the next record
            self.stream = self._open()
        for fd in followers:
            for stream in (sys.stdout, sys.stderr):
                if stream is not None and _fileno(stream) == fd:
                    stream.flush()  # what was buffered belongs to the old file
            os.dup2(self.stream.fileno(), fd)


def _identity(fd: int) -> tuple[int, int] | None:
    try:
        st = os.fstat(fd)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _fileno(stream: object) -> int | None:
    try:
        return stream.fileno()  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        return None


def rotating_handler(path: str | Path, fmt: str) -> logging.Handler:
    """A handler appending to PATH (created 0600 in a 0700 directory), rotated by size; this
    process's stdout and stderr follow it to the new file when they were writing to PATH."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    _narrow_backups(path)
    handler = _RotatingHandler(path, maxBytes=LOG_BYTES, backupCount=LOG_BACKUPS)
    handler.setFormatter(logging.Formatter(fmt))
    return handler


def rotate_if_large(path: str | Path) -> None:
    """Rotate PATH like a log handler would when it has reached LOG_BYTES: for files a process
    writes to directly (a child's stderr), checked each time one is started on it."""
    path = Path(path)
    try:
        if path.stat().st_size < LOG_BYTES:
            return
    except FileNotFoundError:
        return
    for i in range(LOG_BACKUPS - 1, 0, -1):
        older = path.with_name(f"{path.name}.{i}")
        if older.exists():
            os.replace(older, path.with_name(f"{path.name}.{i + 1}"))
    os.replace(path, path.with_name(f"{path.name}.1"))


def tail(path: str | Path, lines: int = 10) -> str:
    """The last LINES lines of the file at PATH (from its last 16 KiB), "" if it cannot be read."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            text = f.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
