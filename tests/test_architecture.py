"""Import direction: the arrows of docs/architecture.md, enforced.

* ``import recsys`` loads nothing from ``pipelines``;
* no module of ``recsys/`` or ``tests/`` imports ``pipelines`` (scripts for people and
  schedulers, imported by nothing);
* no module under ``recsys/ranking`` imports ``recsys.push``, ``recsys.evaluation`` or
  ``recsys.cli`` (serving does not know who calls it).

The scans read the source with :mod:`ast`, so an import inside a function counts as much as
one at the top of a module.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(path: Path, package: str) -> set[str]:
    """Every module ``path`` imports (absolute names; relative imports resolved against ``package``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            out.add(module)
            # ``from recsys import push`` imports the module recsys.push
            out.update(f"{module}.{alias.name}" for alias in node.names)
    return out


def _package_of(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] != "__init__" else parts[:-1])


def _offenders(folder: Path, forbidden: tuple[str, ...]) -> list[str]:
    found = []
    for path in sorted(folder.rglob("*.py")):
        for module in imported_modules(path, _package_of(path)):
            if any(module == f or module.startswith(f + ".") for f in forbidden):
                found.append(f"{path.relative_to(ROOT)} imports {module}")
    return found


def test_the_scan_sees_function_level_and_relative_imports(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from recsys import push\n    from ..evaluation import run\n", encoding="utf-8")
    found = imported_modules(src, "recsys.ranking")
    assert {"recsys.push", "recsys.evaluation", "recsys.evaluation.run"} <= found


def test_import_recsys_loads_nothing_from_pipelines():
    code = "import sys, recsys, recsys.cli; print(sorted(m for m in sys.modules if m.split('.')[0] == 'pipelines'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("folder", ["recsys", "tests"])
def test_nothing_imports_the_pipelines_scripts(folder):
    offenders = _offenders(ROOT / folder, ("pipelines",))
    assert not offenders, "pipelines/* are scripts imported by nothing: " + "; ".join(offenders)


def test_serving_does_not_import_its_callers():
    offenders = _offenders(ROOT / "recsys" / "ranking", ("recsys.push", "recsys.evaluation", "recsys.cli"))
    assert not offenders, "recsys/ranking must not know who calls it: " + "; ".join(offenders)


#: "is it a number and not a bool" written out by hand (bool is an int subclass); recsys.config's
#: is_int / is_number say it once
_BOOL_IDIOM = re.compile(
    r"isinstance\([\w.\[\]'\"]+, bool\)\s+or\s+not\s+isinstance"
    r"|or\s+isinstance\([\w.\[\]'\"]+, bool\)"
    r"|and\s+not\s+isinstance\([\w.\[\]'\"]+, bool\)"
)


def test_numbers_are_checked_with_the_one_helper():
    # the pattern finds each form of the idiom, and not a plain bool check
    for form in ("isinstance(v, bool) or not isinstance(v, int)", "not isinstance(k, int) or isinstance(k, bool)",
                 "isinstance(x.n, (int, float)) and not isinstance(x.n, bool)"):
        assert _BOOL_IDIOM.search(form), form
    assert not _BOOL_IDIOM.search("if not isinstance(flag, bool):")
    offenders = []
    for path in sorted((ROOT / "recsys").rglob("*.py")):
        if path == ROOT / "recsys" / "config.py":
            continue  # where the helpers live
        text = path.read_text(encoding="utf-8")
        for m in _BOOL_IDIOM.finditer(text):
            offenders.append(f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, m.start()) + 1}")
    assert not offenders, "use recsys.config.is_int / is_number instead of the bool-or-not-isinstance idiom: " + ", ".join(offenders)


#: packages that serve what training made (the Recommender, the push and its neighbours)
_SERVING = ("ranking", "push", "broadcast", "lift", "monitor", "demand")


@pytest.mark.parametrize("package", _SERVING)
def test_serving_reads_training_only_through_its_interface(package):
    found = [
        line for line in _offenders(ROOT / "recsys" / package, ("recsys.training",))
        if not line.endswith(("imports recsys.training", "imports recsys.training.serving"))
        and ".serving." not in line.rsplit(" imports ", 1)[1]
    ]
    assert not found, "serving imports training only through recsys.training.serving: " + "; ".join(found)


def test_the_serving_interface_does_not_load_the_training_job():
    code = ("import sys, recsys.training.serving, recsys.ranking, recsys.push; "
            "print(sorted(m for m in sys.modules if m in ('recsys.training.job', 'recsys.training.ranker_training', "
            "'recsys.training.collaborative', 'recsys.training.interactions')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"


# ---- imports inside functions, and the domain types of parameters ------------------------------

#: why an import may sit inside a function: it breaks an import cycle, or defers a heavy optional
#: dependency (faiss, LightGBM, matplotlib, duckdb, dask, ...) on a path that often does not need it
_WHY = re.compile(r"#\s*(cycle|heavy)\b")


def _parents(tree: ast.AST) -> dict[ast.AST, ast.AST]:
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def unexplained_imports(source: str, name: str = "<src>") -> list[str]:
    """Function-level imports with no ``# cycle`` / ``# heavy`` comment on their line or just above it.

    Once per function: an import is explained when it carries the comment or an earlier import of
    the same function does (the comment says why the function imports late, not each name).
    """
    tree = ast.parse(source, filename=name)
    lines = source.splitlines()
    parents = _parents(tree)
    explained: set[ast.AST] = set()
    found = []
    for node in sorted(
        (n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))), key=lambda n: n.lineno
    ):
        owner = parents.get(node)
        while owner is not None and not isinstance(owner, (ast.FunctionDef, ast.AsyncFunctionDef)):
            owner = parents.get(owner)
        if owner is None:
            continue  # module level (including `if TYPE_CHECKING:` blocks)
        # the import's own line, the line above it and the comment lines above that
        above = node.lineno - 3
        while above >= 0 and lines[above].lstrip().startswith("#"):
            above -= 1
        near = "\n".join(lines[max(above + 1, 0) : node.lineno])
        if _WHY.search(near):
            explained.add(owner)
        elif owner not in explained:
            found.append(f"{name}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_the_import_scan_finds_an_unexplained_function_level_import():
    src = (
        "import os\n"
        "if TYPE_CHECKING:\n    import faiss\n"
        "def ok():\n    # heavy: faiss only here,\n    # not at import\n    import faiss\n    import numpy\n"
        "def also_ok():\n    from recsys import training  # cycle: the job imports us\n"
        "def bad():\n    x = 1\n    from recsys.push import lock\n"
        "def nested():\n    import json  # heavy: not really\n    def inner():\n        import csv\n"
    )
    assert unexplained_imports(src) == ["<src>:13: from recsys.push import lock", "<src>:17: import csv"]


def test_every_function_level_import_says_why():
    # recsys/cli/* keep their imports inside run() so `recsys --help` stays fast: not scanned
    offenders = []
    for path in sorted((ROOT / "recsys").rglob("*.py")):
        if (ROOT / "recsys" / "cli") in path.parents:
            continue
        offenders += unexplained_imports(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    assert not offenders, (
        "import at the top of the module, or say why not with a `# cycle: ...` or `# heavy: ...` comment "
        "on the import or in the comment right above it: " + "; ".join(offenders)
    )


#: parameters and attributes with these names hold domain objects (TrainedModel, Taxonomy,
#: GroundTruth, Recommender, RankingState, EngineConfig or a section, settings, UserPlan, users,
#: Catalog, LearnedRanker, and a component's BundleWriter / BundleReader): they get their real
#: type, never ``Any``
_DOMAIN_NAMES = re.compile(
    r"^(model|taxonomy|truth|recommender|state|config|settings|plan|users|catalog|ranker|writer|reader)$"
)
_ANY = {"Any", "Any | None", "None | Any", "Optional[Any]", "typing.Any"}


def any_typed_domain_names(source: str, name: str = "<src>") -> list[str]:
    """Parameters (and class attributes) named like a domain object but annotated ``Any``."""
    found = []
    for node in ast.walk(ast.parse(source, filename=name)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            a = node.args
            for arg in [*a.posonlyargs, *a.args, *a.kwonlyargs]:
                if _DOMAIN_NAMES.match(arg.arg) and arg.annotation is not None and ast.unparse(arg.annotation) in _ANY:
                    found.append(f"{name}:{arg.lineno}: {node.name}({arg.arg}: Any)")
        elif isinstance(node, ast.ClassDef):
            for stmt in node.body:
                if (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
                        and _DOMAIN_NAMES.match(stmt.target.id) and ast.unparse(stmt.annotation) in _ANY):
                    found.append(f"{name}:{stmt.lineno}: {node.name}.{stmt.target.id}: Any")
    return found


def test_the_any_scan_finds_domain_parameters_and_attributes():
    src = (
        "def f(model: Any, k: Any, *, truth: Any | None = None, users: 'Users' = None):\n    pass\n"
        "class C:\n    state: Any\n    extra: Any\n    config: EngineConfig\n"
        "    def save(self, writer: Any) -> None:\n        pass\n"
    )
    assert any_typed_domain_names(src) == [
        "<src>:1: f(model: Any)", "<src>:1: f(truth: Any)", "<src>:4: C.state: Any", "<src>:7: save(writer: Any)"
    ]


def test_domain_parameters_have_their_real_types():
    offenders = []
    for path in sorted((ROOT / "recsys").rglob("*.py")):
        offenders += any_typed_domain_names(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
    assert not offenders, "give these their real type (a TYPE_CHECKING import where a cycle would appear): " + "; ".join(offenders)


#: the bottom layer of docs/architecture.md: codes, contract, config, bundle files, io, times
_FOUNDATION = ("taxonomy", "schema", "columns", "config", "bundle", "io", "timeutil", "exceptions", "idmap", "seeds")


def test_the_foundation_imports_only_the_foundation():
    allowed = {"recsys", *(f"recsys.{name}" for name in _FOUNDATION)}
    offenders = [
        f"recsys/{name}.py imports {module}"
        for name in _FOUNDATION
        for module in imported_modules(ROOT / "recsys" / f"{name}.py", "recsys")
        if module.split(".")[0] == "recsys" and module not in allowed
        and not (module.startswith("recsys.") and module.split(".")[1] in _FOUNDATION)
    ]
    assert not offenders, "the foundation sits below training and serving: " + "; ".join(offenders)
