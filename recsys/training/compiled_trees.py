"""A LightGBM model's trees compiled to native code (``lleaves``, LLVM), for the ranker's predictions.

``Booster.predict`` walks its trees through a generic interpreter: about
6-15 us per row plus a fixed cost per call, and a serving call scores a few
hundred rows. ``lleaves`` turns the model text into one machine-code function
(every split a compare and a branch) through ``llvmlite``, whose wheels carry
LLVM itself, so no C compiler is needed on a serving machine. Its scores are
LightGBM's own (the same float64 thresholds and missing-value rules; the
tests assert it).

Compiling takes seconds (about 40 ms per tree of 15-31 leaves), so the
machine code is kept in a **cache outside the bundle** (bundles are
read-only at serving): ``$RECSYS_CACHE_DIR/compiled-trees`` when that
variable is set (``off`` turns the cache off), else the user's cache folder
(``$XDG_CACHE_HOME`` or ``~/.cache``, then ``recsys/compiled-trees``). A
cached object is derived data, named by a key over everything that decides
its bytes -- the model text's SHA-256, the lleaves, llvmlite and LLVM
versions, the compile options and the host CPU -- and written atomically
beside a JSON sidecar holding that key and the object's own SHA-256. It is
loaded only when the sidecar's key equals the one computed now and the
object's checksum matches; anything else is compiled afresh. A cache folder
that cannot be written only costs the compile.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import tempfile
import threading
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from recsys.io import atomic_path, write_json

if TYPE_CHECKING:
    import lleaves  # heavy: LLVM loads only to compile or load a ranker's trees

#: environment variable naming the cache folder's parent (``off``: no cache)
CACHE_ENV = "RECSYS_CACHE_DIR"
#: bump when the cache's layout or key changes
_CACHE_FORMAT = 1
#: lleaves' own defaults, written into the key: its cache-blocked trees were as fast as one block
#: of all trees on the 100k city's ranker (100-4,000 rows) and compile faster than ``fcodemodel="small"``
_OPTIONS: dict[str, Any] = {"fblocksize": 34, "fcodemodel": "large", "finline": True, "use_fp64": True}
#: lleaves' entry point: void forest_root(double *rows, double *out, int start, int end); the GIL is
#: released during the call (ctypes' CFUNCTYPE), as lleaves' own wrapper does
_ENTRY = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int32, ctypes.c_int32)
#: one compile at a time per process: threads of ``recommend_many`` may ask for the same model at once
_LOCK = threading.Lock()


def cache_dir() -> Path | None:
    """The folder of compiled trees, or ``None`` when caching is turned off.

    ``$RECSYS_CACHE_DIR/compiled-trees`` if the variable is set (``off``,
    ``none`` or empty: no cache), else ``$XDG_CACHE_HOME/recsys/compiled-trees``
    or ``~/.cache/recsys/compiled-trees``.
    """
    env = os.environ.get(CACHE_ENV)
    if env is not None:
        if env.strip().lower() in ("", "off", "none"):
            return None
        return Path(env).expanduser() / "compiled-trees"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "recsys" / "compiled-trees"


def _toolchain(options: dict[str, Any]) -> dict[str, str]:
    """What besides the model text decides the machine code: versions, ``options``, target CPU."""
    import llvmlite  # heavy: LLVM loads only to compile or load a ranker's trees
    import llvmlite.binding as llvm  # heavy: as above

    llvm.initialize_native_target()
    try:
        features = llvm.get_host_cpu_features().flatten()
    except RuntimeError:  # LLVM cannot read this CPU's features; lleaves then compiles without them
        features = ""
    return {
        "format": str(_CACHE_FORMAT),
        "lleaves": metadata.version("lleaves"),
        "llvmlite": llvmlite.__version__,
        "llvm": ".".join(str(v) for v in llvm.llvm_version_info),
        "triple": llvm.get_process_triple(),
        "cpu": llvm.get_host_cpu_name(),
        "cpu_features": features,
        "options": json.dumps(options, sort_keys=True),
    }


def _options(raw_score: bool) -> dict[str, Any]:
    """The compile options: :data:`_OPTIONS`, plus ``raw_score`` for a model of several outputs: lleaves'
    objective step keeps only the first output of an identity objective (``custom``, ``lambdarank``) and
    then fails to compile, so such a model is compiled as raw sums; the ranker's own keys are unchanged."""
    return {**_OPTIONS, "raw_score": True} if raw_score else _OPTIONS


def cache_key(model_text: str, raw_score: bool = False) -> dict[str, str]:
    """The cache key of a model text: its SHA-256 and :func:`_toolchain`; ``key["id"]`` names the files."""
    key = {"model_sha256": hashlib.sha256(model_text.encode("utf-8")).hexdigest(), **_toolchain(_options(raw_score))}
    key["id"] = hashlib.sha256(json.dumps(key, sort_keys=True).encode("utf-8")).hexdigest()
    return key


def _verified(folder: Path, key: dict[str, str]) -> bytes | None:
    """The cached object of ``key`` if its sidecar holds exactly this key and its checksum matches."""
    try:
        meta = json.loads((folder / f"{key['id']}.json").read_text(encoding="utf-8"))
        data = (folder / f"{key['id']}.o").read_bytes()
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or meta.get("key") != key:
        return None
    if meta.get("object_sha256") != hashlib.sha256(data).hexdigest():
        return None
    return data


class CompiledTrees:
    """A model's trees as one native function; :meth:`predict` equals ``Booster.predict``.

    Parameters
    ----------
    model : lleaves.Model
        Compiled.
    n_features : int
    cached : bool
        Whether the machine code came from the cache (the compile was skipped).
    """

    def __init__(self, model: lleaves.Model, n_features: int, cached: bool) -> None:
        self._model = model  # holds the machine code (its execution engine) alive
        self.n_features = n_features
        self.cached = cached
        #: scores per row: 1, or a model's classes (each the sum of its own trees)
        self.n_outputs = int(model.num_model_per_iteration())
        # the compiled entry point, called directly: lleaves' own ``predict`` wraps it in per-call
        # checks and ctypes pointer objects that cost ~20 us, as much as 10 rows of trees
        address = model._execution_engine.get_function_address("forest_root")
        self._entry = _ENTRY(address)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Scores of the rows of ``x`` (n, n_features), float64 (n,) -- (n, n_outputs) for a model of
        several outputs -- on the calling thread."""
        # float64 and C order: LightGBM compares the float32 features with float64 thresholds, as
        # the compiled code does
        x = np.ascontiguousarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"compiled trees need (n, {self.n_features}) rows, got shape {x.shape}")
        out = np.zeros(len(x) if self.n_outputs == 1 else (len(x), self.n_outputs), np.float64)
        if len(x):
            # (rows, out, start, end): the function reads rows start..end-1 and writes their scores
            self._entry(x.ctypes.data, out.ctypes.data, 0, len(x))
        return out


def compile_trees(model_text: str, folder: Path | None | str = "default", *, raw_score: bool = False) -> CompiledTrees:
    """Compile a LightGBM text model (every tree in it), through the cache.

    Parameters
    ----------
    model_text : str
        LightGBM's text format (``Booster.model_to_string``), already cut to
        the iterations that are to be evaluated.
    folder : path or None, optional
        The cache folder; ``"default"``: :func:`cache_dir`; ``None``: no cache.
    raw_score : bool, optional
        Return each output's sum of trees without the objective's transform
        (for a model of several outputs that are not classes:
        :mod:`recsys.training.tree_paths`' leaf numbers).

    Returns
    -------
    CompiledTrees
    """
    import lleaves  # heavy: LLVM loads only to compile or load a ranker's trees

    folder = cache_dir() if folder == "default" else (None if folder is None else Path(folder))
    with _LOCK, tempfile.TemporaryDirectory(prefix="recsys-trees-") as tmp:
        source = Path(tmp) / "model.txt"  # lleaves parses a file, not a string
        source.write_text(model_text, encoding="utf-8")
        model = lleaves.Model(model_file=str(source))
        options = _options(raw_score)
        key = cache_key(model_text, raw_score) if folder is not None else None
        hit = _verified(folder, key) if key is not None else None
        if hit is not None:
            # lleaves loads the very bytes that were checked, from a private copy
            loaded = Path(tmp) / "model.o"
            loaded.write_bytes(hit)
            model.compile(cache=str(loaded), **options)
            return CompiledTrees(model, model.num_feature(), cached=True)
        compiled = False
        if key is not None:
            try:
                with atomic_path(folder / f"{key['id']}.o") as part:
                    model.compile(cache=str(part), **options)  # lleaves writes the object to ``part``
                    compiled = True
                    digest = hashlib.sha256(part.read_bytes()).hexdigest()
                write_json({"key": key, "object_sha256": digest}, folder / f"{key['id']}.json")
            except OSError:
                pass  # an unwritable cache costs only the compile: the model is used without it
        if not compiled:
            model.compile(cache=None, **options)
        return CompiledTrees(model, model.num_feature(), cached=False)
