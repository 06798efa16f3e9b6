"""Files that hold personal data: created readable by the owner only, whatever the umask.

Every place that writes state under ``$CAMPAIGN_HOME`` or a file with contact data in it
(outbox, simulation, built mails, preview pages, the database, settings) goes through here.
Modes are given to ``os.open``/``os.mkdir`` when a file or folder is made, so there is no
moment in which another user could open it; what older versions left readable is tightened
when the tool opens it again.
"""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700

# OWASP "CSV injection": a cell that starts with one of these is run as a formula by Excel,
# LibreOffice and Google Sheets (=HYPERLINK(...) leaks, DDE runs programs).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def tighten(path: Path, mode: int) -> None:
    """Take group and other permissions away from an existing file or folder (older versions
    made them 0644/0755); a missing path is left alone."""
    try:
        current = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return
    if current & 0o077:
        try:
            os.chmod(path, mode)
        except PermissionError:
            pass  # another user's file (a shared, read-only state folder): theirs to protect


def private_dir(path: Path, *, tighten_existing: bool = True) -> Path:
    """Make ``path`` (and any missing parents) with mode 0700; tighten it when it exists already.

    ``tighten_existing=False`` is for a folder a person chose that may hold other things
    (``build --out ~/Desktop``): the files written into it are private, the folder keeps its mode.
    """
    missing = []
    current = path
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, DIR_MODE)
        except FileExistsError:
            pass  # made meanwhile by another process
    if tighten_existing and not missing:
        tighten(path, DIR_MODE)
    return path


def _open_private(path: Path, flags: int) -> int:
    fd = os.open(path, flags | os.O_CLOEXEC, FILE_MODE)
    if stat.S_IMODE(os.fstat(fd).st_mode) & 0o077:
        try:
            os.fchmod(fd, FILE_MODE)  # a file left by an older version (or a crash) is tightened
        except PermissionError:
            pass  # another user's file: theirs to protect
    return fd


def write_private(path: Path, data: bytes | str, *, atomic: bool = True, unique_tmp: bool = False) -> Path:
    """Write ``data`` to ``path`` with mode 0600; by default through a temporary file and a rename,
    so that a reader (or a crash) never sees half a file.

    The temporary file is ``NAME.tmp`` beside it, a name erasure can derive from ``path``;
    ``unique_tmp`` adds the process id for files several processes may write at once (the
    render cache, which holds no personal data).
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    if not atomic:
        fd = _open_private(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        return path
    tmp = tmp_path(path, unique=unique_tmp)
    fd = _open_private(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def tmp_path(path: Path, *, unique: bool = False) -> Path:
    """Where :func:`write_private` writes ``path`` before renaming it."""
    return path.with_name(f"{path.name}.{os.getpid()}.tmp" if unique else f"{path.name}.tmp")


def touch_private(path: Path) -> Path:
    """Make sure ``path`` exists with mode 0600 (an existing file keeps its contents, loses group and other access)."""
    os.close(_open_private(path, os.O_RDWR | os.O_CREAT))
    return path


def open_private_text(path: Path, *, newline: str | None = None, encoding: str = "utf-8") -> io.TextIOWrapper:
    """``path`` opened for writing text (truncated), mode 0600: for files written as a stream."""
    fd = _open_private(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    return open(fd, "w", newline=newline, encoding=encoding)


def open_private_append(path: Path) -> io.TextIOWrapper:
    """``path`` opened like ``open(path, "a+")``, created with mode 0600 (the worker's lock file)."""
    fd = _open_private(path, os.O_RDWR | os.O_CREAT | os.O_APPEND)
    return open(fd, "a+")


def spreadsheet_safe(value: object) -> object:
    """A CSV cell that a spreadsheet shows as text: a leading ``'`` before ``= + - @``, tab or CR.

    Only text is changed; numbers stay numbers.
    """
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def spreadsheet_row(values: list[object] | tuple[object, ...]) -> list[object]:
    """Every cell of a CSV row through :func:`spreadsheet_safe`: for every CSV the tool writes."""
    return [spreadsheet_safe(v) for v in values]
