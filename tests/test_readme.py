"""Every fenced code block of README.md runs, so the README cannot drift from the engine.

The README is parsed at collection time (``tests/readme_snippets.py``); nothing
here knows its snippets. One step per block or shell line, in document order,
all in one temporary workspace that looks like a fresh clone (the repository's
tracked files) plus a model bundle trained once on the committed sample and
reachable as ``models/latest``:

- ``python`` blocks run in order in one shared namespace, with the workspace as
  the working directory; a traceback points at the README line.
- ``bash`` lines starting with ``recsys`` run as subprocesses in the workspace
  and must exit 0; lines with a placeholder (an upper-case word such as ``DIR``
  or ``USER_ID``, or brackets) are counted and skipped; ``make`` lines are not
  run (CI runs ``make test``, ``tests/test_demo.py`` covers the demo) but their
  target must exist in the Makefile; any other command fails the step.
- ``toml`` blocks must parse; one with a section the engine's configuration
  knows must load as a configuration.
- ``<!-- readme-test: skip REASON -->`` on the line right above a fence skips
  that block; a marker without a reason fails.

A failure names the README line, the command or statement, its output, and any
path it references that does not exist (a README bug, not a test bug).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import traceback
from dataclasses import dataclass
from pathlib import Path

import pytest

from readme_snippets import Block, Command, ReadmeError, makefile_targets, parse_markdown, shell_commands

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SAMPLE = Path("data/synthetic/sample")
# The workspace's bundle: trained once, with the README's own training command.
TRAIN_ARGV = ["recsys", "train", "--data", str(SAMPLE), "--out", "models"]
# Guards against a parser that silently finds nothing: the README has 7 concrete
# recsys lines today (2 of them on a public data set that may get a skip marker).
MIN_RECSYS_COMMANDS = 5
MIN_PYTHON_BLOCKS = 2
PYTHON_LANGS = {"python", "py", "python3"}
SHELL_LANGS = {"bash", "sh", "shell", "console"}
TOML_LANGS = {"toml"}
COMMAND_TIMEOUT_S = 600
# Options whose value a command writes rather than reads.
OUTPUT_OPTIONS = {"--out", "--history"}
# Options whose value is a path the command reads.
INPUT_OPTIONS = {"--data", "--model", "--taxonomy", "--config", "--catalog", "--users", "--warm-start"}
_PATHISH = re.compile(r"/|\.(parquet|csv|toml|json|npy|txt|md|html)$")


@dataclass(frozen=True)
class Step:
    """One thing to execute: a whole block, or one shell line of a block."""

    block: Block
    command: Command | None = None

    @property
    def id(self) -> str:
        line = self.command.line if self.command else self.block.fence_line
        what = self.command.source if self.command else self.block.lang
        return f"L{line}-{self.block.lang or 'plain'}-{what[:60]}"


def _collect() -> tuple[list[Block], list[int], list[Step], str]:
    """The README's blocks, stray markers and steps; a parse error is returned, not raised."""
    try:
        parsed = parse_markdown(README.read_text(encoding="utf-8"))
        steps: list[Step] = []
        for block in parsed.blocks:
            if block.lang in SHELL_LANGS and block.skip_reason is None:
                steps.extend(Step(block, c) for c in shell_commands(block))
            elif block.lang in PYTHON_LANGS | SHELL_LANGS | TOML_LANGS:
                steps.append(Step(block))
        return parsed.blocks, parsed.stray_markers, steps, ""
    except (OSError, ReadmeError) as exc:
        return [], [], [], f"README.md: {exc}"


BLOCKS, STRAY_MARKERS, STEPS, PARSE_ERROR = _collect()
# Python blocks share one namespace, as a reader pasting them into one session would.
_NAMESPACE: dict = {"__name__": "readme"}


def _tracked_files() -> list[Path]:
    """The repository's tracked files (what a fresh clone has); empty without git."""
    try:
        proc = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return []
    return [Path(p) for p in proc.stdout.split("\0") if p]


def _make_workspace(dest: Path) -> None:
    """Copy the repository as a clone would have it (never the venv, outputs or bundles)."""
    files = _tracked_files()
    if files:
        for rel in files:
            src = ROOT / rel
            if src.is_file():  # a tracked file someone deleted is not in a clone either
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest / rel)
        return
    ignore = shutil.ignore_patterns(".git", ".venv", "out", "pushes", "__pycache__", "*.egg-info", ".pytest_cache")
    shutil.copytree(ROOT, dest, ignore=ignore, dirs_exist_ok=True, symlinks=True)
    for entry in (dest / "models").iterdir():
        if entry.name != "README.md":
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()


def _recsys() -> str:
    exe = Path(sys.executable).parent / "recsys"
    assert exe.is_file(), f"{exe} not found: install the engine into the test interpreter's environment"
    return str(exe)


def _run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [_recsys(), *argv[1:]], cwd=cwd, capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S
    )


def _tail(text: str, n: int = 20) -> str:
    lines = text.rstrip().splitlines()
    return "\n".join(lines[-n:]) if lines else "(nothing)"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A fresh-clone workspace with a bundle at ``models/latest``; yields (path, training run)."""
    ws = tmp_path_factory.mktemp("readme")
    _make_workspace(ws)
    assert (ws / SAMPLE / "events.parquet").is_file(), f"the committed sample {SAMPLE} is missing from the clone"
    train = _run(TRAIN_ARGV, ws)
    if train.returncode != 0:
        # The README's training line is its own step and fails there with this output; the
        # other snippets still get a bundle to run against.
        retry = _run([*TRAIN_ARGV, "--force"], ws)
        assert retry.returncode == 0, (
            f"{shlex.join(TRAIN_ARGV)} --force failed in the workspace:\n{_tail(retry.stderr)}"
        )
    assert (ws / "models" / "latest" / "manifest.json").is_file()
    return ws, train


def _missing_paths(words: list[str], ws: Path) -> list[str]:
    """Words that look like input paths and exist neither in the workspace nor as an output."""
    missing = []
    for prev, word in zip([""] + words[:-1], words):
        if word.startswith("-") or prev in OUTPUT_OPTIONS or not (prev in INPUT_OPTIONS or _PATHISH.search(word)):
            continue
        if not (ws / word).exists():
            committed = "exists in the working tree but is not committed"
            where = committed if (ROOT / word).exists() else "not in the repository either"
            missing.append(f"{word!r} ({where})")
    return missing


def test_readme_parses_and_every_skip_has_a_reason():
    assert not PARSE_ERROR, PARSE_ERROR
    assert BLOCKS, "README.md has no fenced code blocks"
    assert not STRAY_MARKERS, (
        f"README.md lines {STRAY_MARKERS}: a readme-test marker must sit on the line right above a fence"
    )
    unexplained = [b.label for b in BLOCKS if b.skip_reason is not None and not b.skip_reason]
    assert not unexplained, f"README.md {unexplained}: <!-- readme-test: skip --> needs a reason"


def test_readme_has_enough_runnable_snippets():
    recsys_lines = [s.command for s in STEPS if s.command and s.command.kind == "recsys"]
    python_blocks = [s for s in STEPS if s.block.lang in PYTHON_LANGS and s.block.skip_reason is None]
    placeholders = [s.command.source for s in STEPS if s.command and s.command.kind == "placeholder"]
    assert len(recsys_lines) >= MIN_RECSYS_COMMANDS, (
        f"only {len(recsys_lines)} concrete recsys commands in README.md (want >= {MIN_RECSYS_COMMANDS}); "
        f"{len(placeholders)} placeholder lines not runnable: {placeholders}"
    )
    assert len(python_blocks) >= MIN_PYTHON_BLOCKS, f"only {len(python_blocks)} python blocks run"


@pytest.mark.parametrize("step", STEPS, ids=[s.id for s in STEPS])
def test_readme_snippet(step: Step, request):
    block = step.block
    if block.skip_reason:
        pytest.skip(f"README.md {block.label}: {block.skip_reason}")
    if block.skip_reason is not None:
        pytest.fail(f"README.md {block.label}: skip marker without a reason")
    if step.command is not None:
        _shell_step(step.command, request)
    elif block.lang in PYTHON_LANGS:
        _python_step(block, request.getfixturevalue("workspace")[0])
    elif block.lang in TOML_LANGS:
        _toml_step(block)
    else:  # pragma: no cover - _collect only yields the languages above
        pytest.fail(f"README.md {block.label}: no runner for this language")


def _shell_step(cmd: Command, request) -> None:
    where = f"README.md line {cmd.line} ({cmd.block.label})"
    if cmd.kind == "make":
        targets = [w for w in cmd.argv[1:] if not w.startswith("-") and "=" not in w]
        known = makefile_targets((ROOT / "Makefile").read_text(encoding="utf-8"))
        assert targets, f"{where}: `{cmd.source}` names no target"
        unknown = [t for t in targets if t not in known]
        assert not unknown, f"{where}: `{cmd.source}`: Makefile has no target {unknown}; it has {sorted(known)}"
        return
    if cmd.kind == "placeholder":
        pytest.skip(f"{where}: placeholder {cmd.placeholder!r} in `{cmd.source}`")
    if cmd.kind != "recsys":
        pytest.fail(
            f"{where}: `{cmd.source}` is not a recsys or make command, which the README test cannot run; "
            "mark the block <!-- readme-test: skip REASON --> or teach tests/test_readme.py to run it"
        )
    outside = [
        w for p, w in zip(cmd.argv, cmd.argv[1:])
        if p in OUTPUT_OPTIONS and (Path(w).is_absolute() or ".." in Path(w).parts)
    ]
    assert not outside, f"{where}: `{cmd.source}` writes outside the working folder: {outside}"
    ws, train = request.getfixturevalue("workspace")
    if cmd.argv == TRAIN_ARGV:
        proc = train  # the workspace fixture ran exactly this command, in this folder, once
    else:
        proc = _run(cmd.argv, ws)
    if proc.returncode != 0:
        missing = _missing_paths(cmd.argv[1:], ws)
        hint = f"\nreferenced paths that do not exist: {', '.join(missing)}" if missing else ""
        pytest.fail(
            f"{where}: `{cmd.source}` exited {proc.returncode}{hint}\n"
            f"--- stderr (tail)\n{_tail(proc.stderr)}\n--- stdout (tail)\n{_tail(proc.stdout)}",
            pytrace=False,
        )


def _python_step(block: Block, ws: Path) -> None:
    # padding makes the code's line numbers the README's, so a traceback points at the README
    code = compile("\n" * (block.first_line - 1) + block.text, str(README), "exec")
    cwd = os.getcwd()
    os.chdir(ws)
    try:
        exec(code, _NAMESPACE)
        failure = ""
    except Exception as exc:  # noqa: BLE001 - reported with the README line that raised it
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == str(README)]
        line = frames[-1].lineno if frames else block.first_line
        # the block as collected: the README file may have been edited since
        source = block.text.splitlines()[line - block.first_line].strip()
        literals = re.findall(r"""["']([^"']+)["']""", source.split("#", 1)[0])
        missing = _missing_paths([w for w in literals if _PATHISH.search(w)], ws)
        hint = f"\nreferenced paths that do not exist: {', '.join(missing)}" if missing else ""
        failure = f"README.md line {line} ({block.label}): `{source}` raised {type(exc).__name__}: {exc}{hint}"
    finally:
        os.chdir(cwd)
    if failure:  # outside the except clause, so the report is this one message, not a chained traceback
        pytest.fail(failure, pytrace=False)


def _toml_step(block: Block) -> None:
    from recsys.config import ALL_SECTIONS, config_from_dict
    from recsys.exceptions import ConfigError

    try:
        doc = tomllib.loads(block.text)
    except tomllib.TOMLDecodeError as exc:
        pytest.fail(f"README.md {block.label}: not valid TOML: {exc}", pytrace=False)
    sections = [k for k, v in doc.items() if isinstance(v, dict) and k in ALL_SECTIONS]
    if sections:  # an engine configuration: it must load as one
        try:
            config_from_dict(doc)
        except ConfigError as exc:
            pytest.fail(f"README.md {block.label}: configuration does not load: {exc}", pytrace=False)


# ---- the parser itself, on a small Markdown text ------------------------------------------

_SAMPLE_MD = """
text
```bash
make demo    # comment
recsys push --date 2026-06-30 \\
    --out pushes/   # [--k 5]
recsys tune --data DIR --out x.toml
# a comment line
recsys recommend USER_ID [--k 10]
cp a b
```
<!-- readme-test: skip too slow: trains three models -->
```python
x = 1
```
<!-- readme-test: skip -->
```toml
a = 1
```
<!-- readme-test: skip stray -->

```
layout
```
"""


def test_parser_reads_blocks_lines_placeholders_and_markers():
    parsed = parse_markdown(_SAMPLE_MD)
    assert [(b.lang, b.fence_line) for b in parsed.blocks] == [("bash", 3), ("python", 13), ("toml", 17), ("", 22)]
    assert parsed.blocks[1].skip_reason == "too slow: trains three models"
    assert parsed.blocks[2].skip_reason == ""  # a marker without a reason, which the README test refuses
    assert parsed.blocks[0].skip_reason is None and parsed.stray_markers == [20]
    cmds = shell_commands(parsed.blocks[0])
    assert [(c.line, c.kind) for c in cmds] == [
        (4, "make"), (5, "recsys"), (7, "placeholder"), (9, "placeholder"), (10, "other")
    ]
    assert cmds[1].argv == ["recsys", "push", "--date", "2026-06-30", "--out", "pushes/"]
    assert cmds[2].placeholder == "DIR" and cmds[3].placeholder == "USER_ID"


def test_parser_refuses_an_unclosed_fence_and_an_unknown_marker():
    with pytest.raises(ReadmeError, match="line 2"):
        parse_markdown("x\n```bash\nrecsys demo\n")
    with pytest.raises(ReadmeError, match="unknown readme-test marker"):
        parse_markdown("<!-- readme-test: run -->\n```bash\nrecsys demo\n```\n")


def test_makefile_targets_are_read():
    assert makefile_targets(".PHONY: demo\ndemo: $(X)\n\tcmd\nV := 1\n$(BIN)/python:\n") == {"demo"}
