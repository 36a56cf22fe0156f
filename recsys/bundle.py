"""Versioned model bundles on disk: write atomically, verify on load, roll back.

A bundle is a folder ``models/<version>/`` of plain files: ``manifest.json``
(version, created time, data window, config, row counts, library versions,
index recall, sha256 of every file), ``taxonomy.toml``, ``.npy`` arrays
(memory-mappable, loaded with ``allow_pickle=False``), Parquet tables, JSON,
faiss indexes, and one sub-folder per fitted component.

**The component protocol.** A fitted component (the ANN index, the content
embedder, the cold-start models, the ranking signals, the learned ranker)
saves itself with ``save(writer: BundleWriter) -> None`` and comes back with
``load(reader: BundleReader) -> component`` (a classmethod). The writer and
reader speak in names and kinds -- ``array``, ``table``, ``json``, ``text``,
``faiss`` -- and only this module turns a name into a file: components never
see paths, never hash, never write atomically themselves. The bundle writes
everything into one temporary folder, renamed into place, and checks every
file's sha256 once, on load, against the manifest. Each file is hashed once
when it is written (on a pool of threads beside the writes), and a file a
verified bundle already holds unchanged (an array that is still that
bundle's read-only memory map, a table copied from it) becomes a hard link
to it, hashed again from its new name like any other file: no file of a bundle is ever
written in place (a name written twice is unlinked first), so two bundles
sharing a file cannot change each other. A component saved alone
(outside a bundle, e.g. in a test) goes through :func:`write_part` /
:func:`read_part`: the same protocol with its own small checksum manifest.

``models/latest`` is a symbolic link to the current version, moved atomically
(``os.replace`` of a new link) only after the new bundle was written, renamed
into place and verified. The last ``keep`` bundles stay for rollback.
This module knows files, not models: ``recsys.training.model`` decides what goes in.
"""

from __future__ import annotations

import datetime as dt
import json
import mmap
import os
import platform
import re
import shutil
import stat
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from recsys.config import BundleConfig, check_section
from recsys.exceptions import ArtifactError, ConfigError, RecsysError
from recsys.io import (
    DigestsAsWritten,
    _tmp_sibling,
    atomic_dir,
    clean_stale_temps,
    sha256_files,
)

#: Version of the bundle layout; a loader refuses other major versions.
#: 2: learned ranker and ranking signals (popularity levels, co-engagement)
#: 3: components save through the writer/reader protocol: no checksums or format stamps of their own
#: 4: the engagement model's intercept and user bias (expected engagement as a probability)
#: 5: the near-duplicate graph and the user id lookup (components near_duplicates, user_lookup): built at
#:    training, memory-mapped by every load instead of rebuilt per process
#: 6: the item index's default kind "pruned" (exact search; rows in descending norm order, no faiss file)
#: 7: the engagement model's latent taste term (optional component taste: user and item vectors) and the
#:    learned ranker's exposure model (ranker_exposure.txt)
FORMAT_VERSION = "7"
MANIFEST = "manifest.json"
#: a component saved alone (:func:`write_part`) lists its files' sha256 here
PART_MANIFEST = "part.json"
LATEST = "latest"
_VERSION_RE = re.compile(r"^\d{8}T\d{6}Z(-\d+)?$")
_LIBRARIES = ("kepu-recsys", "numpy", "pandas", "pyarrow", "scipy", "scikit-learn", "implicit", "faiss-cpu", "jieba")


def library_versions() -> dict[str, str]:
    """Return the versions of the libraries a bundle depends on."""
    out = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def new_version(now: dt.datetime | None = None, models_dir: Path | None = None) -> str:
    """Return a fresh version name ``YYYYMMDDTHHMMSSZ`` (suffixed if taken)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    base = now.astimezone(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    name, n = base, 1
    while models_dir is not None and (models_dir / name).exists():
        n += 1
        name = f"{base}-{n}"
    return name


#: files of bundles this process verified, by (device, inode): (size, mtime in ns). A new bundle
#: takes such a file, still unchanged, as a hard link (:meth:`BundleWriter.array`), then hashes it
_VERIFIED: dict[tuple[int, int], tuple[int, int]] = {}


def _unchanged_since_verified(path: str | Path) -> bool:
    """Whether a verification in this process checked ``path`` and its inode is unchanged since.

    Unchanged: the same inode with the same size and modification time (any write changes the
    time); else the file is written and hashed as any other.
    """
    try:
        st = os.stat(path)
    except OSError:
        return False
    return _VERIFIED.get((st.st_dev, st.st_ino)) == (st.st_size, st.st_mtime_ns)


def _mapped_npy(values: Any) -> str | None:
    """The ``.npy`` file ``values`` is the whole read-only memory map of (as :func:`load_array` maps it), else None."""
    arr = values
    while isinstance(arr, np.ndarray) and not isinstance(arr, np.memmap):
        arr = arr.base  # an asarray of a memmap is a view of it: only the whole map counts (checked below)
    if not isinstance(arr, np.memmap) or arr.mode != "r" or not isinstance(arr.base, mmap.mmap) or not arr.filename:
        return None
    view = np.asarray(values)
    if (view.dtype, view.shape, view.strides, view.ctypes.data) != (arr.dtype, arr.shape, arr.strides, arr.ctypes.data):
        return None
    try:
        with open(arr.filename, "rb") as fh:
            major, _ = np.lib.format.read_magic(fh)
            if major not in (1, 2):
                return None  # a header this check does not read: written anew
            shape, fortran, dtype = (
                np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            )(fh)
            start = fh.tell()
    except (OSError, ValueError):
        return None
    # the map is the file's whole array (np.memmap can map a part of a file too)
    whole = (shape, dtype, start) == (arr.shape, arr.dtype, arr.offset) and fortran == (
        arr.flags.f_contiguous and not arr.flags.c_contiguous
    )
    return arr.filename if whole else None


@dataclass
class BundleWriter:
    """Collects a bundle's files in a temporary folder.

    Use through :func:`write_bundle` (or :func:`write_part`); a component
    writes its arrays, tables, JSON, text and faiss indexes by name, into its
    own part (``part(name)``: a writer on a sub-folder).
    """

    root: Path
    info: dict[str, Any] = field(default_factory=dict)
    #: the files' digests taken as they are written (:func:`write_bundle`); None: hashed at the end
    digests: DigestsAsWritten | None = field(default=None, repr=False)

    def part(self, name: str) -> "BundleWriter":
        """A writer for a component's own part of the bundle (``""``: the bundle's top level)."""
        if not name:
            return self
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return BundleWriter(path, self.info, self.digests)

    def _target(self, filename: str) -> Path:
        path = self.root / filename
        if os.path.lexists(path):
            # a name written again: a new file, never a write into the old one (it may be a link to
            # another bundle's file)
            path.unlink()
        return path

    def _written(self, path: Path) -> None:
        if self.digests is not None:
            self.digests.written(path)

    def _link(self, source: str | Path, path: Path) -> bool:
        """Hard-link ``source``, a verified file unchanged since, as ``path``; False if it cannot be."""
        if not _unchanged_since_verified(source):
            return False
        try:
            os.link(source, path)
        except OSError:  # another file system, or one without links: written and hashed as usual
            return False
        if not _unchanged_since_verified(path):  # the same inode: still unchanged after the link
            path.unlink()
            return False
        # hashed again from the new name, beside the next writes (~0.1 s for the city's linked files): the
        # cache above only decides what may be linked; the manifest's digest is always of the bytes
        # (a content change that kept size and modification time, or a reused inode, is caught here)
        self._written(path)
        return True

    def component(self, name: str, component: "BundleComponent") -> None:
        """Save ``component`` (its ``save(writer)``) into the part ``name``."""
        component.save(self.part(name))

    def faiss(self, name: str, index: Any) -> None:
        """Save a faiss index as ``name.faiss`` (faiss' own format)."""
        import faiss  # heavy: faiss loads only for a bundle part that is an index

        path = self._target(f"{name}.faiss")
        faiss.write_index(index, str(path))
        self._written(path)

    def array(self, name: str, values: np.ndarray) -> None:
        """Save ``values`` as ``name.npy`` (no pickle: object arrays are refused).

        ``values`` that are still the whole read-only memory map of a verified bundle's file,
        unchanged since its verification, become a hard link to that file (the same bytes).
        """
        arr = np.asarray(values)
        if arr.dtype == object:
            raise ArtifactError(f"{name}.npy: object arrays cannot be stored without pickle")
        path = self._target(f"{name}.npy")
        source = _mapped_npy(values)
        if source is not None and self._link(source, path):
            return
        np.save(path, arr, allow_pickle=False)
        self._written(path)

    def table(self, name: str, frame: pd.DataFrame) -> None:
        """Save ``frame`` as ``name.parquet``."""
        path = self._target(f"{name}.parquet")
        frame.to_parquet(path, index=False)
        self._written(path)

    def copy(self, filename: str, source: Path) -> None:
        """Take ``source`` (a file of another bundle, unchanged) as ``filename``.

        A hard link when ``source`` was verified in this process and is unchanged since; else a
        copy. Either way hashed like any other file.
        """
        path = self._target(filename)
        if self._link(source, path):
            return
        shutil.copyfile(source, path)
        self._written(path)

    def json(self, name: str, obj: Any) -> None:
        """Save ``obj`` as ``name.json``."""
        path = self._target(f"{name}.json")
        path.write_text(json.dumps(obj, ensure_ascii=False, indent=2, default=str), encoding="utf-8")
        self._written(path)

    def text(self, filename: str, text: str) -> None:
        """Save a text file (e.g. ``taxonomy.toml``)."""
        path = self._target(filename)
        path.write_text(text, encoding="utf-8")
        self._written(path)


@dataclass(frozen=True)
class BundleReader:
    """Reads a bundle's (or one part's) files by name; every error names the file.

    Checksums are not checked here: :func:`verify_bundle` (or
    :func:`read_part`) checks every file once before the components load.

    Attributes
    ----------
    root : Path
        The bundle folder, or a component's part of it.
    mmap : bool
        Memory-map arrays and faiss indexes (read-only) instead of reading them.
    """

    root: Path
    mmap: bool = True

    def part(self, name: str) -> "BundleReader":
        """A reader on a component's part (``""``: the bundle's top level)."""
        return self if not name else BundleReader(self.root / name, self.mmap)

    def path(self, filename: str) -> Path:
        """The file's path, for messages."""
        return self.root / filename

    def has(self, filename: str) -> bool:
        """Whether the part holds ``filename`` (e.g. ``"ranker.txt"``: an optional component)."""
        return (self.root / filename).is_file()

    def error(self, filename: str, problem: str) -> ArtifactError:
        """An :class:`ArtifactError` naming the file and what is wrong with it."""
        return ArtifactError(f"{self.root / filename}: {problem}")

    def array(self, name: str, *, mmap: bool | None = None) -> np.ndarray:
        """Load ``name.npy`` (memory-mapped unless ``mmap=False``), without pickle."""
        return load_array(self.root, name, mmap=self.mmap if mmap is None else mmap)

    def table(self, name: str, columns: list[str] | None = None) -> pd.DataFrame:
        """Load ``name.parquet`` (only ``columns``, if given)."""
        return load_table(self.root, name, columns=columns)

    def arrow(self, name: str, columns: list[str] | None = None, *, dictionary: list[str] | None = None) -> Any:
        """Load ``name.parquet`` as a pyarrow Table (no Python object per row).

        ``dictionary`` columns are read dictionary-encoded (each distinct
        value once, an integer per row): a code column of millions of rows
        without decoding millions of strings.
        """
        fpath = self.root / f"{name}.parquet"
        try:
            return pq.read_table(fpath, columns=columns, read_dictionary=dictionary)
        except FileNotFoundError:
            raise ArtifactError(f"{fpath}: missing from the model bundle") from None
        except Exception as exc:  # pyarrow raises several types on corrupt files
            raise ArtifactError(f"{fpath}: unreadable ({type(exc).__name__}: {exc})") from None

    def json(self, name: str) -> Any:
        """Load ``name.json``."""
        return load_json(self.root, name)

    def text(self, filename: str) -> str:
        """Load a text file."""
        fpath = self.root / filename
        try:
            return fpath.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ArtifactError(f"{fpath}: missing from the model bundle") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ArtifactError(f"{fpath}: unreadable ({type(exc).__name__}: {exc})") from None

    def faiss(self, name: str, *, mmap: bool | None = None) -> Any:
        """Load ``name.faiss`` (memory-mapped, read-only, unless ``mmap=False``)."""
        import faiss  # heavy: faiss loads only for a bundle part that is an index

        fpath = self.root / f"{name}.faiss"
        if not fpath.is_file():
            raise ArtifactError(f"{fpath}: missing from the model bundle")
        flags = (faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY) if (self.mmap if mmap is None else mmap) else 0
        try:
            return faiss.read_index(str(fpath), flags)
        except RuntimeError as exc:
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else "unreadable"
            raise ArtifactError(f"{fpath}: cannot read faiss index ({first_line})") from None


class BundleComponent(Protocol):
    """What a fitted component implements to live in a bundle.

    Adding a component to the bundle is its ``save``/``load`` and one line in
    ``recsys.training.model.COMPONENTS``.
    """

    def save(self, writer: BundleWriter) -> None:
        """Write the fitted state through ``writer`` (by name; no paths)."""

    @classmethod
    def load(cls, reader: BundleReader) -> Any:
        """Rebuild the fitted component from what :meth:`save` wrote."""


def write_part(folder: str | Path, component: BundleComponent) -> Path:
    """Save one component alone into ``folder`` (replaced whole, atomically), with its checksums.

    The same protocol as in a bundle; ``part.json`` lists each file's sha256
    so that :func:`read_part` can check them once.
    """
    dest = Path(folder)
    with atomic_dir(dest) as tmp:
        component.save(BundleWriter(tmp))
        files = _checksums(tmp, skip=PART_MANIFEST)
        (tmp / PART_MANIFEST).write_text(
            json.dumps({"format_version": FORMAT_VERSION, "component": type(component).__name__, "files": files},
                       indent=2),
            encoding="utf-8",
        )
    return dest


def read_part(folder: str | Path, kind: type, *, verify: bool = True, mmap: bool = True, **options: Any) -> Any:
    """Load a component saved by :func:`write_part`: checksums checked once, then ``kind.load``.

    Raises
    ------
    ArtifactError
        Naming the folder or the missing, corrupted or unreadable file.
    """
    root = Path(folder)
    if not root.is_dir():
        raise ArtifactError(f"{root}: component folder not found")
    if verify:
        meta = load_json(root, PART_MANIFEST.removesuffix(".json"))
        if not isinstance(meta, dict) or not isinstance(meta.get("files"), dict):
            raise ArtifactError(f"{root / PART_MANIFEST}: not a component manifest (a JSON object with a files table)")
        _verify_files(root, meta["files"])
    return kind.load(BundleReader(root, mmap), **options)


def _checksums(root: Path, skip: str = MANIFEST, digests: DigestsAsWritten | None = None) -> dict[str, str]:
    paths = [p for p in sorted(root.rglob("*")) if p.is_file() and p.relative_to(root).as_posix() != skip]
    # taken as written (a link hashed from its new name); a file the writer did not see is hashed now
    found = sha256_files(paths) if digests is None else digests.digests(paths)
    return {str(p.relative_to(root)): digest for p, digest in zip(paths, found)}


def _check_present(root: Path, files: dict[str, str]) -> dict[str, os.stat_result]:
    stats = {}
    for rel in files:
        fpath = root / rel
        try:
            st = fpath.stat()
        except OSError:
            st = None
        if st is None or not stat.S_ISREG(st.st_mode):  # one stat: is_file() would be a second
            raise ArtifactError(f"{fpath}: missing from the model bundle")
        stats[rel] = st
    return stats


def _verify_files(root: Path, files: dict[str, str]) -> None:
    stats = _check_present(root, files)  # before the hashing: a write during it changes the time seen later
    # every file hashed (on every core), then the first bad one in the manifest's order named
    for (rel, digest), found in zip(files.items(), sha256_files([root / rel for rel in files])):
        if found != digest:
            raise ArtifactError(f"{root / rel}: checksum mismatch (corrupted or modified)")
        st = stats[rel]
        _VERIFIED[(st.st_dev, st.st_ino)] = (st.st_size, st.st_mtime_ns)


def write_bundle(
    models_dir: str | Path,
    fill: Callable[[BundleWriter], None],
    *,
    manifest: dict[str, Any],
    keep: int = 5,
    version: str | None = None,
    verify: Callable[[Path], None] | None = None,
    sanity: Callable[[Path], None] | None = None,
) -> Path:
    """Write a new bundle and move ``latest`` to it.

    Parameters
    ----------
    models_dir : path
        The folder holding versions and the ``latest`` link.
    fill : callable
        Called with a :class:`BundleWriter` on a temporary folder; writes the files.
    manifest : dict
        Extra manifest fields (data window, config, counts, index recall, ...);
        version, created time, format version, library versions and checksums
        are added here.
    keep : int
        How many bundles to keep; older ones are removed after ``latest`` moved.
    version : str, optional
        Version name; default a UTC timestamp.
    verify : callable, optional
        Called on the renamed bundle folder before ``latest`` moves (e.g. a full
        load); an exception removes the bundle and leaves ``latest`` where it was.
    sanity : callable, optional
        Called after ``verify``: whether the bundle is fit to serve (e.g. it has
        warm users and eligible items). An exception leaves ``latest`` where it
        was and keeps the bundle for inspection; the error says both.

    Returns
    -------
    Path
        The new bundle's folder.
    """
    models = Path(models_dir)
    # [bundle] keep's range is the config's (a keep below 1 would delete every bundle)
    check_section(BundleConfig(keep=keep))
    models.mkdir(parents=True, exist_ok=True)
    # a killed earlier write left its temporary folder: remove ours (version or latest names, dead writer)
    clean_stale_temps(models, lambda name: name == LATEST or bool(_VERSION_RE.match(name)))
    version = version or new_version(models_dir=models)
    dest = models / version
    if dest.exists():
        raise ArtifactError(f"{dest}: a bundle of this version already exists")
    with DigestsAsWritten() as digests:
        with atomic_dir(dest) as tmp:
            writer = BundleWriter(tmp, digests=digests)
            fill(writer)
            full = {
                "format_version": FORMAT_VERSION,
                "version": version,
                "created_at": dt.datetime.now(dt.timezone.utc).isoformat(),
                "libraries": library_versions(),
                **manifest,
                "files": _checksums(tmp, digests=writer.digests),
            }
            (tmp / MANIFEST).write_text(json.dumps(full, ensure_ascii=False, indent=2, default=str), encoding="utf-8")
    # every digest was taken from the file as written, read back from disk (a linked file's from its new name):
    # hashing the renamed folder's same files again (~2 GB at the city) would find the same; a load verifies
    _check_present(dest, full["files"])
    if verify is not None:
        try:
            verify(dest)
        except Exception:
            shutil.rmtree(dest, ignore_errors=True)
            raise
    if sanity is not None:
        try:
            sanity(dest)
        except Exception as exc:
            current = latest_version(models)
            kept = f"latest still points to {current}" if current else "no latest was set"
            cls = type(exc) if isinstance(exc, RecsysError) else ArtifactError
            raise cls(f"{dest}: bundle written but not made latest: {exc}; {kept}") from None
    set_latest(models, version)
    prune(models, keep)
    return dest


#: what a model bundle is, for a folder that is none
_WHAT_IS_A_BUNDLE = "give a folder written by `recsys train` (a version folder, or models/latest)"


def read_manifest(path: str | Path) -> dict[str, Any]:
    """Read a bundle's ``manifest.json``.

    Raises
    ------
    ArtifactError
        If the folder or manifest is missing or unreadable, the manifest is not a
        bundle's (no ``format_version``: e.g. a data folder), or of another format version.
    """
    root = Path(path)
    if not root.is_dir():
        raise ArtifactError(f"{root}: model bundle folder not found")
    mpath = root / MANIFEST
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactError(f"{root}: not a model bundle (no {MANIFEST}); {_WHAT_IS_A_BUNDLE}") from None
    except (OSError, ValueError, RecursionError) as exc:
        raise ArtifactError(f"{mpath}: unreadable ({type(exc).__name__}: {exc})") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files", {}), dict):
        raise ArtifactError(f"{mpath}: unreadable (not a bundle manifest: a JSON object with a files table)")
    if "format_version" not in manifest:
        # another tool's manifest (a data folder of `recsys generate`, ...): no bundle at all, not an old one
        what = " (a data folder written by recsys generate)" if manifest.get("generator") == "recsys.synthetic" else ""
        raise ArtifactError(
            f"{root}: not a model bundle{what}: its {MANIFEST} has no format_version; {_WHAT_IS_A_BUNDLE}"
        )
    fmt = str(manifest.get("format_version", ""))
    if fmt.split(".")[0] != FORMAT_VERSION:
        raise ArtifactError(
            f"{mpath}: bundle format version {fmt!r}; this engine reads version {FORMAT_VERSION} "
            "(a bundle of another engine version: retrain with `recsys train`, or use the engine that wrote it)"
        )
    return manifest


def verify_bundle(path: str | Path) -> dict[str, Any]:
    """Check every file listed in the manifest exists and matches its sha256.

    Returns the manifest. Raises :class:`ArtifactError` naming the first bad file.
    """
    root = Path(path)
    manifest = read_manifest(root)
    _verify_files(root, manifest.get("files", {}))
    return manifest


def load_array(root: str | Path, name: str, *, mmap: bool = True) -> np.ndarray:
    """Load ``name.npy`` from a bundle, memory-mapped by default, without pickle."""
    fpath = Path(root) / f"{name}.npy"
    try:
        return np.load(fpath, mmap_mode="r" if mmap else None, allow_pickle=False)
    except FileNotFoundError:
        raise ArtifactError(f"{fpath}: missing from the model bundle") from None
    except (OSError, ValueError, EOFError) as exc:
        raise ArtifactError(f"{fpath}: unreadable ({exc})") from None


def load_table(root: str | Path, name: str, columns: list[str] | None = None) -> pd.DataFrame:
    """Load ``name.parquet`` from a bundle (only ``columns``, if given)."""
    fpath = Path(root) / f"{name}.parquet"
    try:
        return pq.read_table(fpath, columns=columns).to_pandas()
    except FileNotFoundError:
        raise ArtifactError(f"{fpath}: missing from the model bundle") from None
    except Exception as exc:  # pyarrow raises several types on corrupt files
        raise ArtifactError(f"{fpath}: unreadable ({type(exc).__name__}: {exc})") from None


def load_json(root: str | Path, name: str) -> Any:
    """Load ``name.json`` from a bundle."""
    fpath = Path(root) / f"{name}.json"
    try:
        return json.loads(fpath.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactError(f"{fpath}: missing from the model bundle") from None
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{fpath}: unreadable ({exc})") from None


# ---- versions, latest, rollback ---------------------------------------------


def list_versions(models_dir: str | Path) -> list[str]:
    """Return the bundle versions in ``models_dir``, oldest first."""
    models = Path(models_dir)
    if not models.is_dir():
        return []
    return sorted(p.name for p in models.iterdir() if p.is_dir() and not p.is_symlink() and _VERSION_RE.match(p.name))


def latest_version(models_dir: str | Path) -> str | None:
    """Return the version ``latest`` points to, or None."""
    link = Path(models_dir) / LATEST
    if not link.is_symlink():
        return None
    return Path(os.readlink(link)).name


def is_models_dir(path: str | Path) -> bool:
    """Whether ``path`` looks like a models folder: a ``latest`` link or a bundle version folder."""
    p = Path(path)
    if (p / LATEST).is_symlink():
        return True
    return any((p / v / MANIFEST).is_file() for v in list_versions(p))


def check_version_name(version: str, models_dir: str | Path) -> str:
    """Return ``version`` if it names a bundle inside ``models_dir`` (a name, not a path).

    Raises
    ------
    ConfigError
        For a path (``/``, ``..``) or a name that is not a version.
    """
    if not version or "/" in version or "\\" in version or version in (".", "..") or not _VERSION_RE.match(version):
        have = ", ".join(list_versions(models_dir)) or "none"
        raise ConfigError(
            f"{version!r} is not a bundle version of {models_dir}: give a version name such as "
            f"20260630T020000Z (not a path); have: {have}"
        )
    return version


def check_latest_link(models_dir: str | Path) -> Path:
    """The path of ``latest`` in ``models_dir``, which only this engine's link may hold.

    Raises
    ------
    ArtifactError
        If a file or folder holds that name: someone's, never replaced (``train`` checks it before
        its work, ``set_latest`` before moving the link).
    """
    latest = Path(models_dir) / LATEST
    if latest.exists() and not latest.is_symlink():
        kind = "folder" if latest.is_dir() else "file"
        raise ArtifactError(
            f"{latest}: exists and is not the link recsys train moves to the newest bundle (a {kind}, not the "
            "link models rollback points back); nothing was changed: move it away, or choose a new or empty folder"
        )
    return latest


def set_latest(models_dir: str | Path, version: str) -> None:
    """Point ``latest`` at ``version`` atomically (a new link renamed over the old).

    Raises
    ------
    ArtifactError
        If ``version`` is no bundle of the folder, or ``latest`` is a file or
        folder (only the link is ever replaced).
    """
    models = Path(models_dir)
    check_version_name(version, models)
    if not (models / version).is_dir():
        raise ArtifactError(f"{models / version}: no such model version; have: {', '.join(list_versions(models))}")
    current = check_latest_link(models)
    tmp = _tmp_sibling(current)
    tmp.symlink_to(version, target_is_directory=True)
    try:
        os.replace(tmp, models / LATEST)
    finally:
        if tmp.is_symlink():
            tmp.unlink()


def prune(models_dir: str | Path, keep: int) -> list[str]:
    """Remove all but the newest ``keep`` bundles (never the one ``latest`` names; ``keep`` >= 1)."""
    versions = [v for v in list_versions(models_dir) if (Path(models_dir) / v / MANIFEST).exists()]
    current = latest_version(models_dir)
    doomed = [v for v in versions[: max(0, len(versions) - max(keep, 1))] if v != current]
    for v in doomed:
        shutil.rmtree(Path(models_dir) / v, ignore_errors=True)
    return doomed


def rollback(models_dir: str | Path, version: str) -> None:
    """Point ``latest`` back at an older (verified) ``version`` of the same models folder.

    Raises
    ------
    ConfigError
        If ``version`` is a path rather than a version name of ``models_dir``.
    ArtifactError
        If that bundle is missing or fails verification.
    """
    check_version_name(version, models_dir)
    verify_bundle(Path(models_dir) / version)
    set_latest(models_dir, version)


#: where ``make demo`` / ``recsys demo`` writes its bundles (named when no bundle is found)
DEMO_MODELS = Path("out") / "demo" / "models"


def _not_found(p: Path) -> str:
    hint = "train one with `recsys train --data DIR --out models`, or pass --model PATH"
    if (DEMO_MODELS / LATEST).exists() and Path(p).resolve() != (DEMO_MODELS / LATEST).resolve():
        hint = f"`make demo` writes to {DEMO_MODELS}: pass --model {DEMO_MODELS / LATEST}"
    return f"{p}: no model bundle here; {hint}"


def resolve(path: str | Path) -> Path:
    """Resolve a bundle path: a version folder, ``models/latest``, or a models folder.

    Raises
    ------
    ArtifactError
        One line: nothing there (with a hint where bundles may be), a
        ``latest`` link that loops or points to a removed version.
    """
    p = Path(path)
    if p.is_dir() and not (p / MANIFEST).exists() and (p / LATEST).is_symlink():
        p = p / LATEST
    if p.is_symlink():
        target = os.readlink(p)
        try:
            resolved = p.resolve(strict=True)
        except RuntimeError:
            raise ArtifactError(f"{p}: the link loops ({p.name} -> {target}); roll back with `recsys models rollback VERSION`") from None
        except OSError:
            raise ArtifactError(
                f"{p}: the link points to {target}, which does not exist; "
                "see `recsys models list` and roll back with `recsys models rollback VERSION`"
            ) from None
        p = resolved
    if not p.exists():
        raise ArtifactError(_not_found(p))
    if not p.is_dir():
        raise ArtifactError(f"{p}: not a model bundle folder (a file)")
    return p
