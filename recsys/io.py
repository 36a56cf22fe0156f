"""File helpers shared by every writer: atomic files and folders, JSON, hashes, output folders.

Nothing the engine writes is ever half-written: files go to a temporary path
beside the destination and are renamed into place; folders likewise.

An output folder given on the command line (``--out``) is checked once, by
:func:`prepare_output_dir`, before any work: a command writes into a new or
empty folder, or one it wrote before (its marker file, or its own manifest),
and never replaces or deletes a file it did not create.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import re
import shutil
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from recsys.exceptions import ConfigError

#: temporary siblings are ``.<name>.tmp-<pid>-<8 hex>``: the pid tells a later run whether the
#: writer is still alive (older engines wrote ``.<name>.tmp-<8 hex>``)
_TMP_RE = re.compile(r"^\.(?P<name>.+)\.(?:tmp|old)-(?:(?P<pid>\d+)-)?[0-9a-f]{8}$")
#: a temporary folder without a pid is stale after this many seconds
_STALE_AFTER_S = 6 * 3600


def _tmp_sibling(path: Path, kind: str = "tmp") -> Path:
    return path.with_name(f".{path.name}.{kind}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def is_temporary(name: str) -> bool:
    """Whether ``name`` is one of this module's temporaries (``.<name>.tmp-<pid>-<hex>``, or ``.old-``): a
    write in progress or a killed one's leftover, not a file of the folder."""
    return _TMP_RE.match(name) is not None


def missing_folders(path: Path) -> list[Path]:
    """``path`` and its parents that do not exist yet, nearest first (a run about to create them)."""
    return [p for p in (path, *path.parents) if not p.exists() and not p.is_symlink()]


def remove_empty_folders(folders: list[Path]) -> None:
    """Remove the folders a refused run created, nearest first, as long as each is empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # not empty (another run's files) or gone: leave it
            return


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def clean_stale_temps(folder: str | Path, names: Callable[[str], bool]) -> list[Path]:
    """Remove temporary siblings a killed writer left in ``folder``; return them.

    Only entries named like this module's temporaries (``.<name>.tmp-<pid>-<hex>``)
    whose ``<name>`` passes ``names`` are considered, and only those whose
    writer is dead (its pid is gone) or, for names without a pid, older than
    six hours. Anything else, another writer's live temporary included, is left.
    """
    root = Path(folder)
    removed: list[Path] = []
    if not root.is_dir():
        return removed
    for entry in root.iterdir():
        m = _TMP_RE.match(entry.name)
        if m is None or not names(m.group("name")):
            continue
        pid = m.group("pid")
        try:
            age = time.time() - entry.lstat().st_mtime
        except OSError:
            continue
        stale = not _pid_alive(int(pid)) if pid else age > _STALE_AFTER_S
        if not stale:
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary file path; on success rename it onto ``path``.

    On an exception the temporary file is removed and ``path`` is untouched.
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(dest)
    try:
        yield tmp
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder; on success it replaces the folder ``path``.

    The previous folder (if any) is moved aside and removed only after the new
    one is in place, so a crash at any point leaves a complete folder at
    ``path`` (old or new), never a half-written one.
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(dest)
    tmp.mkdir()
    try:
        yield tmp
        old = None
        if dest.exists():
            old = _tmp_sibling(dest)
            os.replace(dest, old)
        os.replace(tmp, dest)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_parquet(frame: pd.DataFrame | pa.Table, path: str | Path) -> Path:
    """Write a table as Parquet atomically; return the path."""
    table = frame if isinstance(frame, pa.Table) else pa.Table.from_pandas(frame, preserve_index=False)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return Path(path)


def write_json(obj: Any, path: str | Path) -> Path:
    """Write ``obj`` as pretty UTF-8 JSON atomically; return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, ensure_ascii=False, indent=2, default=str) + "\n", encoding="utf-8")
    return Path(path)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Return the hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


#: threads that hash files at once (:func:`sha256_files`)
HASH_THREADS = min(4, os.cpu_count() or 1)


def sha256_files(paths: Sequence[str | Path], threads: int = HASH_THREADS) -> list[str]:
    """Return the hex sha256 of each file of ``paths``, in their order, hashed on ``threads`` threads.

    hashlib lets go of the GIL while it hashes a block (and so does the read), so
    the files of a bundle or a history state (~2 GB at the city) are hashed on
    every core instead of one; the largest start first, so one big file does not
    come last. The digests are :func:`sha256_file`'s.
    """
    paths = [Path(p) for p in paths]
    if threads <= 1 or len(paths) < 2:
        return [sha256_file(p) for p in paths]
    first = sorted(range(len(paths)), key=lambda i: -paths[i].stat().st_size)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        done = {i: pool.submit(sha256_file, paths[i]) for i in first}
        return [done[i].result() for i in range(len(paths))]


class DigestsAsWritten:
    """The sha256 of files taken as each one is written: hashed on a pool of threads beside the next writes.

    A writer of many large files (a bundle, a history state: ~2 GB and ~1.2 GB at the city)
    calls :meth:`written` after each file is complete and :meth:`digest` at the end; the
    hashing of one file then overlaps the writing of the next instead of following them all.
    Use as a context manager: leaving it cancels what is not hashed yet.
    """

    def __init__(self, threads: int = HASH_THREADS) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max(threads, 1), thread_name_prefix="recsys-hash")
        self._found: dict[Path, Future] = {}

    def __enter__(self) -> "DigestsAsWritten":
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(cancel_futures=True)

    def written(self, path: str | Path) -> None:
        """``path`` is complete: hash it now, beside whatever is written next (written again: hashed again)."""
        self._found[Path(path)] = self._pool.submit(sha256_file, path)

    def digest(self, path: str | Path) -> str | None:
        """The digest of ``path`` (waiting for its hashing), or None for a file never named here."""
        found = self._found.get(Path(path))
        return None if found is None else found.result()

    def digests(self, paths: Sequence[str | Path]) -> list[str]:
        """The digests of ``paths`` in order: taken as written, or hashed now (on every core) for the others."""
        taken = [self.digest(p) for p in paths]
        rest = iter(sha256_files([p for p, d in zip(paths, taken) if d is None]))
        return [d if d is not None else next(rest) for d in taken]


# ---- output folders ------------------------------------------------------------------------

#: the file an output folder's writer leaves in it: kind, and the entries it wrote
OUTPUT_MARKER = ".recsys-output.json"


def _repo_root(start: Path) -> Path | None:
    for folder in (start, *start.parents):
        if (folder / ".git").exists():
            return folder
    return None


def _never_targets() -> dict[Path, str]:
    """Folders no command may write into (or replace), with the reason to show."""
    cwd = Path.cwd().resolve()
    out = {Path("/"): "the file system root", Path.home().resolve(): "your home folder", cwd: "the current folder"}
    for root in (_repo_root(cwd), Path(__file__).resolve().parents[1]):
        if root is not None and ((root / "pyproject.toml").exists() or (root / ".git").exists()):
            out.setdefault(root.resolve(), "a repository root")
    return out


def _read_marker(folder: Path) -> dict[str, Any] | None:
    try:
        marker = json.loads((folder / OUTPUT_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


@dataclass(frozen=True)
class OutputDir:
    """An output folder checked by :func:`prepare_output_dir`; write it with :meth:`staging`."""

    path: Path
    kind: str
    force: bool = False
    #: the folder had no marker of this kind but ``recognise`` knew it (an older engine's output):
    #: its entries of the names written now are this kind's own
    recognised: bool = False

    @contextlib.contextmanager
    def staging(self) -> Iterator[Path]:
        """Yield a path (not yet created) to write the whole output under; publish it on success.

        The writer creates the yielded folder (e.g. with :func:`atomic_dir`).
        Publishing replaces the entries this command wrote there before,
        records the marker, and leaves every other entry alone; an entry of
        the same name as one written that this command did not write refuses
        the publication (see :func:`publish_dir`). On an exception nothing in
        ``path`` changes.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # a killed earlier run of this output left its staging folder beside it: remove it (dead writer only)
        clean_stale_temps(self.path.parent, lambda name: name == self.path.name or name.startswith(f".{self.path.name}."))
        staged = _tmp_sibling(self.path)
        try:
            yield staged
            if not staged.is_dir():
                raise ConfigError(f"{self.path}: the {self.kind} output was not written")
            publish_dir(staged, self.path, self.kind, recognised=self.recognised)
        finally:
            if staged.exists():
                shutil.rmtree(staged, ignore_errors=True)

    def mark(self, entries: list[str]) -> None:
        """Record ``entries`` (top-level names) as this command's own, beside what was recorded."""
        previous = _read_marker(self.path) or {}
        owned = sorted(set(previous.get("entries", [])) | set(entries)) if previous.get("kind") == self.kind else entries
        _write_marker(self.path, self.kind, owned)


def _write_marker(folder: Path, kind: str, entries: list[str]) -> None:
    write_json(
        {"kind": kind, "entries": sorted(entries), "written_at": dt.datetime.now(dt.timezone.utc).isoformat()},
        folder / OUTPUT_MARKER,
    )


#: files that do not make an output folder "not empty": docs and keep-files checked in beside outputs
PLACEHOLDER_FILES = frozenset({"README.md", ".gitkeep"})


def prepare_output_dir(
    path: str | Path,
    kind: str,
    *,
    force: bool = False,
    recognise: Callable[[Path], bool] | None = None,
    option: str = "--out",
    writes: Sequence[str] = (),
    label: str | None = None,
    hint: str | None = None,
) -> OutputDir:
    """Check that command ``kind`` may write into the folder ``path``, before any work.

    Allowed: a new folder, an empty one (or holding only a ``README.md`` or
    ``.gitkeep``, which are never touched), or one this kind of command wrote
    before (its :data:`OUTPUT_MARKER`, or ``recognise(path)``: e.g. its own
    manifest from an older engine). A folder another command marked is
    refused even with ``force``. Anything else needs ``force`` (the
    command then writes beside the files already there and never replaces
    or deletes one of them: an entry of the same name as one it writes
    refuses the run, here when ``writes`` names it, else when publishing).
    ``/``, the home folder, the current folder and a repository root are
    refused even with ``force``.

    Parameters
    ----------
    path : path
        The folder.
    kind : str
        The command (``generate``, ``evaluate``, ``demo``, ``models``, ...).
    force : bool
        Write into a folder holding other files.
    recognise : callable, optional
        Recognises a folder this command wrote before without the marker.
    option : str
        The option's name, for messages.
    writes : sequence of str
        Top-level names the command will write, when known: one held by a
        file it did not write is refused now rather than after the work.
    label : str, optional
        What writes such folders, for messages (default ``recsys <kind>``).
    hint : str, optional
        What to do about a refused folder (default: choose a new or empty
        folder, or pass ``--force``); for a command without ``--force``.

    Returns
    -------
    OutputDir
        The checked folder; write it with :meth:`OutputDir.staging` or
        record what was written with :meth:`OutputDir.mark`.

    Raises
    ------
    ConfigError
        One line naming the folder and why it is refused.
    """
    p = Path(path)
    label = label or f"recsys {kind}"
    try:
        resolved = p.resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop
        raise ConfigError(f"{option} {p}: cannot be resolved ({exc})") from None
    reason = _never_targets().get(resolved)
    if reason is not None:
        raise ConfigError(f"{option} {p}: refusing to write into {reason}; give a folder of its own, e.g. out/{kind}")
    if p.exists() and not p.is_dir():
        raise ConfigError(f"{option} {p}: is a file, not a folder")
    probe = p
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise ConfigError(f"{option} {p}: {probe} is a file, not a folder")
    if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"{option} {p}: {probe} is not writable")
    recognised = False
    if p.is_dir():
        # documentation checked in beside outputs (the repository's models/README.md) does not make
        # a folder someone else's; it is never touched
        entries = sorted(e.name for e in p.iterdir() if e.name not in PLACEHOLDER_FILES)
        marker = _read_marker(p)
        marked = marker is not None and marker.get("kind") == kind
        other = marker.get("kind") if marker is not None and not marked else None
        if other:
            # the folder's marker is another command's: writing here would make its outputs this
            # command's (or lock that command out of its own folder); --force does not change it
            raise ConfigError(
                f"{option} {p}: written by recsys {other} ({OUTPUT_MARKER}); {label} never writes into "
                f"another command's output folder, even with --force; choose a new or empty folder"
            )
        recognised = not marked and recognise is not None and recognise(p)
        if entries and not (marked or recognised) and not force:
            raise ConfigError(
                f"{option} {p}: folder is not empty ({_some(entries)}) and was not written by {label}; "
                + (hint or "choose a new or empty folder, or pass --force to write beside those files "
                   "(none is replaced or deleted)")
            )
        # --force writes beside others' files, never over one: refuse now when the names are known
        owned = set(marker.get("entries", [])) if marked and marker is not None else set()
        clashes = [] if recognised else _clashes(p, writes, owned)
        if clashes:
            raise ConfigError(_clash_message(p, clashes, kind))
    return OutputDir(p, kind, force, recognised)


def _some(names: Sequence[str]) -> str:
    """The first three names and how many more, for a one-line message."""
    names = list(names)
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def _clashes(dest: Path, names: Sequence[str], owned: set[str]) -> list[str]:
    """The entries of ``names`` that exist in ``dest`` and are not among ``owned``, sorted."""
    return sorted(n for n in set(names) - owned if (dest / n).exists() or (dest / n).is_symlink())


def _clash_message(dest: Path, clashes: Sequence[str], kind: str) -> str:
    """One line: the entries in the way, that nothing changed and what to do."""
    if len(clashes) == 1:
        return (
            f"{dest / clashes[0]}: exists and was not written by recsys {kind}, which writes an entry of that "
            "name and never replaces one it did not write; nothing was changed: move it away, or choose a new "
            "or empty folder"
        )
    return (
        f"{dest}: {_some(clashes)} exist and were not written by recsys {kind}, which writes entries of those "
        "names and never replaces ones it did not write; nothing was changed: move them away, or choose a new "
        "or empty folder"
    )


def publish_dir(staged: str | Path, dest: str | Path, kind: str, *, recognised: bool = False) -> Path:
    """Move a finished output folder ``staged`` to ``dest`` without losing anything else there.

    A new ``dest`` (or one holding only what this kind wrote before) is
    replaced whole and atomically. Otherwise each entry is renamed into place
    one by one: the entries the previous run of this kind recorded in its
    marker are replaced (or removed when not written again); every other
    file stays. An entry of the same name as one written that the marker
    does not record is someone else's: the publication is refused before
    anything in ``dest`` changes. The marker (:data:`OUTPUT_MARKER`)
    records the entries written.

    Parameters
    ----------
    staged : path
        The finished output folder (moved away on success).
    dest : path
        The output folder.
    kind : str
        The command writing it.
    recognised : bool
        ``dest`` has no marker of ``kind`` but the command recognised it as
        its own (an older engine's output, see :func:`prepare_output_dir`):
        its entries of the names written are taken as this kind's.

    Returns
    -------
    Path
        ``dest``.

    Raises
    ------
    ConfigError
        If an entry of ``dest`` this kind did not write has the name of one
        being written (nothing in ``dest`` changes).
    """
    staged, dest = Path(staged), Path(dest)
    new = sorted(e.name for e in staged.iterdir() if e.name != OUTPUT_MARKER)
    if not dest.exists():
        _write_marker(staged, kind, new)
        os.replace(staged, dest)
        return dest
    marker = _read_marker(dest)
    owned = set(marker.get("entries", [])) if marker is not None and marker.get("kind") == kind else set()
    existing = {e.name for e in dest.iterdir()} - {OUTPUT_MARKER}
    if recognised and not owned:
        owned = existing & set(new)
    # a same-named entry this kind did not write is never replaced: the user's report.md stays
    clashes = _clashes(dest, new, owned)
    if clashes:
        raise ConfigError(_clash_message(dest, clashes, kind))
    foreign = existing - owned - set(new)
    if not foreign and not dest.is_symlink():
        _write_marker(staged, kind, new)
        old = _tmp_sibling(dest, "old")
        os.replace(dest, old)
        os.replace(staged, dest)
        shutil.rmtree(old, ignore_errors=True)
        return dest
    trash = _tmp_sibling(dest, "old")
    trash.mkdir()
    try:
        for name in sorted((owned - set(new)) & existing):
            os.replace(dest / name, trash / name)
        for name in new:
            # only an entry this kind wrote (checked above) can be in the way
            if (dest / name).exists() or (dest / name).is_symlink():
                os.replace(dest / name, trash / name)
            os.replace(staged / name, dest / name)
        _write_marker(dest, kind, new)
    finally:
        shutil.rmtree(trash, ignore_errors=True)
    return dest


def prepare_output_file(path: str | Path, kind: str, *, option: str = "--out") -> Path:
    """Check that command ``kind`` may write the file ``path``: new, or written by it before.

    A file this command wrote starts with the line ``# written by recsys <kind>``
    (:func:`is_written_by`); any other existing file is refused: nothing a
    command did not write is replaced.

    Raises
    ------
    ConfigError
        If ``path`` is a folder, its folder is not writable, or it holds another file.
    """
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{option} {p}: is a folder; give a file path, e.g. {p / 'recsys.toml'}")
    probe = p.parent
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise ConfigError(f"{option} {p}: {probe} is a file, not a folder")
    if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"{option} {p}: {probe} is not writable")
    if (p.exists() or p.is_symlink()) and not is_written_by(p, kind):
        raise ConfigError(
            f"{option} {p}: exists and was not written by recsys {kind} (its first line is not "
            f"'{written_by_header(kind)} ...'), which never replaces a file it did not write; "
            "choose another path, or move the file away"
        )
    return p


def is_written_by(path: str | Path, kind: str) -> bool:
    """Whether the text file ``path`` was written by command ``kind`` (its first line, :func:`written_by_header`)."""
    header = written_by_header(kind)
    try:
        with open(path, encoding="utf-8") as fh:
            first = fh.readline(400).rstrip("\n")
    except (OSError, UnicodeDecodeError):
        return False
    return first == header or first.startswith(header + " ")


def written_by_header(kind: str) -> str:
    """The first line of a text file written by command ``kind`` (how it recognises its own files)."""
    return f"# written by recsys {kind}"

