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
