"""The project's own docs stay true to the code, and stay inside the repository.

* every column the validator knows (``recsys.schema.CONTRACT``) is named in its table's
  section of ``docs/contract.md``, and so is every code fixed by the contract;
* every link in README.md and ``docs/*.md`` resolves to a file of the repository (a user of
  the package has nothing outside it);
* README.md links each page of the docs;
* every ``recsys/...py`` (tests, benchmarks, pipelines) path and every dotted ``recsys.`` name
  the pages give exists, and docs/bundle.md states the code's format version and component
  registry.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from recsys import columns as C
from recsys.bundle import FORMAT_VERSION
from recsys.schema import CONTRACT
from recsys.training.model import COMPONENTS

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
CONTRACT_DOC = DOCS / "contract.md"
#: [text](target) -- the target up to a space or the closing parenthesis
LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?[^)]*\)")


def _sections(text: str) -> dict[str, str]:
    """``## heading`` -> the text under it (up to the next ``## ``), headings lower-cased, first word only."""
    out: dict[str, str] = {}
    for block in re.split(r"^## ", text, flags=re.MULTILINE)[1:]:
        heading, _, body = block.partition("\n")
        out[heading.strip().split(" ")[0].lower()] = body
    return out


def _undocumented(text: str) -> list[str]:
    sections = _sections(text)
    missing = []
    for table, columns in CONTRACT.items():
        body = sections.get(table)
        if body is None:
            missing.append(f"table {table!r} has no '## {table}' section")
            continue
        missing += [
            f"column {table}.{col.name} is not named (as `{col.name}`) in the '## {table}' section"
            for col in columns
            if f"`{col.name}`" not in body
        ]
    return missing


def test_every_column_the_validator_knows_is_in_the_contract_doc():
    missing = _undocumented(CONTRACT_DOC.read_text(encoding="utf-8"))
    assert not missing, "docs/contract.md is behind recsys/schema.py CONTRACT: " + "; ".join(missing)


def test_the_drift_check_names_the_missing_column():
    # the check itself: a contract page without one column, or one table, says exactly which
    text = CONTRACT_DOC.read_text(encoding="utf-8")
    assert "column events.dwell_seconds is not named" in "; ".join(_undocumented(text.replace("`dwell_seconds`", "")))
    without_users = re.sub(r"^## users\n", "## people\n", text, flags=re.MULTILINE)
    assert "table 'users' has no '## users' section" in _undocumented(without_users)


@pytest.mark.parametrize(
    "kind, codes",
    [
        ("event type", C.EVENT_TYPES),
        ("review status", C.REVIEW_STATUSES),
        ("authority level", C.AUTHORITIES),
        ("age band", C.AGE_BANDS),
        ("quarantine reason", C.QUARANTINE_REASONS),
    ],
)
def test_every_fixed_code_is_in_the_contract_doc(kind, codes):
    text = CONTRACT_DOC.read_text(encoding="utf-8")
    missing = [code for code in codes if f"`{code}`" not in text]
    assert not missing, f"docs/contract.md lacks the {kind}(s) {missing} (recsys/columns.py)"


def _pages() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def test_no_link_points_outside_the_repository():
    bad = []
    for page in _pages():
        text = page.read_text(encoding="utf-8")
        for target in LINK.findall(text):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, flags=re.IGNORECASE):
                if not target.lower().startswith(("http://", "https://", "mailto:")):
                    bad.append(f"{page.relative_to(ROOT)}: {target} (a local URL)")
                continue
            if target.startswith("#"):
                continue
            path = (page.parent / target.split("#")[0]).resolve()
            if not path.is_relative_to(ROOT):
                bad.append(f"{page.relative_to(ROOT)}: {target} (outside the repository)")
            elif not path.exists():
                bad.append(f"{page.relative_to(ROOT)}: {target} (no such file)")
        if "../shared" in text:
            bad.append(f"{page.relative_to(ROOT)}: mentions ../shared (not part of the repository)")
    assert not bad, "links that a user of the repository cannot follow: " + "; ".join(bad)


@pytest.mark.parametrize("page", ["domain.md", "contract.md", "architecture.md", "bundle.md"])
def test_readme_links_the_docs(page):
    targets = {t.split("#")[0] for t in LINK.findall((ROOT / "README.md").read_text(encoding="utf-8"))}
    assert f"docs/{page}" in targets, f"README.md does not link docs/{page}"


# ---- paths and names the docs give a maintainer ---------------------------------------------------

#: a repository path a page names: recsys/push/chunk.py, tests/model_factory.py, ...
PATH = re.compile(r"(?<![\w/.-])((?:recsys|tests|benchmarks|pipelines)/[\w/.-]*\.py)\b")
#: a dotted library name in code style: `recsys.push.nightly.run_nightly`, `recsys.training.train`
DOTTED = re.compile(r"`(recsys(?:\.\w+)+)")


def _resolves(name: str) -> bool:
    """Whether ``name`` is a module of the package or an attribute reached from the longest importable prefix."""
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def stale_names(text: str) -> list[str]:
    """Paths and dotted names in ``text`` that no longer exist in the repository."""
    missing = [f"{p} (no such file)" for p in sorted(set(PATH.findall(text))) if not (ROOT / p).is_file()]
    return missing + [f"{n} (no such module or attribute)" for n in sorted(set(DOTTED.findall(text))) if not _resolves(n)]


def test_the_name_check_finds_a_moved_module():
    # recsys/model.py moved to recsys/training/model.py; the check names the old path and name
    text = "see `recsys/model.py` and `recsys.training.model.TrainedModel`, `recsys.model.TrainedModel`"
    assert stale_names(text) == ["recsys/model.py (no such file)", "recsys.model.TrainedModel (no such module or attribute)"]


def test_every_module_and_name_the_docs_give_exists():
    stale = [f"{page.relative_to(ROOT)}: {s}" for page in _pages() for s in stale_names(page.read_text(encoding="utf-8"))]
    assert not stale, "the docs name code that is not there: " + "; ".join(stale)


def test_the_bundle_page_states_the_code_format_and_registry():
    text = (DOCS / "bundle.md").read_text(encoding="utf-8")
    assert f"(format version {FORMAT_VERSION})" in text and f'`format_version` (`"{FORMAT_VERSION}"`)' in text, (
        f"docs/bundle.md does not state format version {FORMAT_VERSION} (recsys/bundle.py FORMAT_VERSION)"
    )
    block = re.search(r"COMPONENTS: tuple\[Component, \.\.\.\] = \((.*?)\n\)", text, flags=re.DOTALL)
    assert block, "docs/bundle.md lost the COMPONENTS listing"
    listed = re.findall(r'Component\("(\w+)", "(\w*)", "([\w.:]+)"(, optional=True)?\)', block.group(1))
    assert listed == [(c.attribute, c.part, c.kind, ", optional=True" if c.optional else "") for c in COMPONENTS], (
        "docs/bundle.md's COMPONENTS listing differs from recsys/training/model.py"
    )


def test_the_architecture_page_names_every_job_and_component_home():
    # "find every job's library entry point and every component's home in one look"
    from recsys.cli import COMMANDS

    text = (DOCS / "architecture.md").read_text(encoding="utf-8")
    jobs = _sections(text).get("every", "")  # "## Every job's library entry point"
    missing = [f"`recsys {name}` (no row in its entry-point table)" for name in COMMANDS if f"| `recsys {name}" not in jobs]
    for c in COMPONENTS:
        home = "recsys/" + c.kind.split(":")[0].removeprefix("recsys.").replace(".", "/") + ".py"
        if f"`{home}`" not in text:
            missing.append(f"component {c.attribute}'s module {home}")
    assert not missing, "docs/architecture.md lacks: " + "; ".join(missing)
