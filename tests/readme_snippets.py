"""Reading the fenced code blocks of a Markdown file, for ``tests/test_readme.py``.

The README is edited by hand, so nothing here knows its snippets: a block is
found by its fence, a shell line is classified by its words, and an opt-out is
an explicit HTML comment with a reason right above the fence::

    <!-- readme-test: skip trains three models, 4 minutes -->
    ```bash
    recsys evaluate ... --tune
    ```
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field

# An opening fence: up to three spaces, three or more backticks or tildes, an info string.
_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
_MARKER = re.compile(r"^\s*<!--\s*readme-test:(?P<body>.*?)-->\s*$")
_ANY_MARKER = re.compile(r"<!--\s*readme-test", re.IGNORECASE)
# A placeholder word: an upper-case name standing for a value (DIR, PATH, USER_ID, T, N, ...).
_PLACEHOLDER_WORD = re.compile(r"^[A-Z][A-Z0-9_]*(…|\.\.\.)?$")
_PLACEHOLDER_CHARS = set("[]()<>|{}…")


class ReadmeError(ValueError):
    """The Markdown file cannot be read as blocks (an unclosed fence, a malformed marker)."""


@dataclass(frozen=True)
class Block:
    """One fenced code block.

    Attributes
    ----------
    index : int
        1-based position among the file's fenced blocks.
    lang : str
        The info string's first word, lower-cased ("" for a bare fence).
    fence_line : int
        1-based line of the opening fence.
    first_line : int
        1-based line of the block's first line of code.
    text : str
        The code, without the fences.
    skip_reason : str or None
        None when no opt-out marker precedes the fence; otherwise the marker's
        reason ("" when the marker gives none, which the test refuses).
    """

    index: int
    lang: str
    fence_line: int
    first_line: int
    text: str
    skip_reason: str | None = None

    @property
    def label(self) -> str:
        """How a message names this block: ``README.md block 3 (bash, line 57)``."""
        return f"block {self.index} ({self.lang or 'no language'}, line {self.fence_line})"


@dataclass(frozen=True)
class Command:
    """One logical line of a shell block (continuations joined, comment stripped).

    Attributes
    ----------
    block : Block
        The block the line belongs to.
    line : int
        1-based README line the command starts on.
    source : str
        The command as written, continuations joined, trailing comment removed.
    argv : list of str
        The shell words.
    kind : str
        ``"recsys"`` (run it), ``"make"`` (check the Makefile target),
        ``"placeholder"`` (a recsys line with a placeholder, not runnable) or
        ``"other"`` (a command the README test does not know how to run).
    placeholder : str
        The word that made the line a placeholder ("" otherwise).
    """

    block: Block
    line: int
    source: str
    argv: list[str] = field(default_factory=list)
    kind: str = "other"
    placeholder: str = ""


@dataclass(frozen=True)
class Parsed:
    """Everything read from one Markdown file."""

    blocks: list[Block]
    stray_markers: list[int]  # lines of markers that are not right above a fence


def parse_markdown(text: str) -> Parsed:
    """Split Markdown text into its fenced code blocks.

    Parameters
    ----------
    text : str
        The Markdown source.

    Returns
    -------
    Parsed
        The blocks in document order and the lines of opt-out markers that do
        not sit on the line right above an opening fence.

    Raises
    ------
    ReadmeError
        An opening fence without its closing fence.
    """
    lines = text.splitlines()
    blocks: list[Block] = []
    marker_lines: list[int] = []
    used_markers: set[int] = set()
    i = 0
    while i < len(lines):
        line = lines[i]
        if _ANY_MARKER.search(line):
            marker_lines.append(i + 1)
        m = _FENCE.match(line)
        if not m:
            i += 1
            continue
        fence = m.group("fence")
        info = m.group("info").strip()
        close = re.compile(rf"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        j = i + 1
        while j < len(lines) and not close.match(lines[j]):
            j += 1
        if j >= len(lines):
            raise ReadmeError(f"line {i + 1}: the fence {fence}{info} is never closed")
        skip_reason = None
        if i > 0:
            mk = _MARKER.match(lines[i - 1])
            if mk:
                body = mk.group("body").strip()
                verb, _, reason = body.partition(" ")
                if verb != "skip":
                    raise ReadmeError(
                        f"line {i}: unknown readme-test marker {body!r}; valid: <!-- readme-test: skip REASON -->"
                    )
                skip_reason = reason.strip()
                used_markers.add(i)
        blocks.append(
            Block(
                index=len(blocks) + 1,
                lang=(info.split() or [""])[0].lower(),
                fence_line=i + 1,
                first_line=i + 2,
                text="\n".join(lines[i + 1 : j]),
                skip_reason=skip_reason,
            )
        )
        i = j + 1
    stray = [n for n in marker_lines if n not in used_markers]
    return Parsed(blocks=blocks, stray_markers=stray)


def _placeholder(argv: list[str]) -> str:
    """The first shell word that stands for a value rather than being one ("" if none)."""
    for word in argv:
        value = word.split("=", 1)[1] if word.startswith("--") and "=" in word else word
        if _PLACEHOLDER_WORD.match(value) or _PLACEHOLDER_CHARS & set(value) or "..." in value:
            return word
    return ""


def shell_commands(block: Block) -> list[Command]:
    """The logical command lines of a shell block.

    Backslash continuations are joined, blank lines and comment lines dropped,
    trailing ``# comments`` removed (shell quoting respected), and a leading
    ``$ `` prompt removed.

    Parameters
    ----------
    block : Block
        A ``bash``/``sh``/``shell``/``console`` block.

    Returns
    -------
    list of Command
        One per logical line, in order.
    """
    out: list[Command] = []
    pending: list[str] = []
    start = 0
    for offset, raw in enumerate(block.text.splitlines()):
        if not pending:
            start = block.first_line + offset
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending.append(stripped[:-1])
            continue
        pending.append(stripped)
        source = " ".join(p.strip() for p in pending)
        pending = []
        if source.startswith("$ "):
            source = source[2:]
        try:
            argv = shlex.split(source, comments=True)
        except ValueError as exc:
            raise ReadmeError(f"line {start}: cannot split {source!r} into shell words: {exc}") from exc
        if not argv:
            continue
        # the source as shown in messages: without its trailing comment
        shown = shlex.join(argv)
        if argv[0] == "recsys":
            word = _placeholder(argv[1:])
            kind = "placeholder" if word else "recsys"
            out.append(Command(block, start, shown, argv, kind, word))
        elif argv[0] == "make":
            out.append(Command(block, start, shown, argv, "make"))
        else:
            out.append(Command(block, start, shown, argv, "other"))
    if pending:
        raise ReadmeError(f"line {start}: a shell line ends with a continuation backslash and nothing follows")
    return out


def makefile_targets(text: str) -> set[str]:
    """The explicit target names a Makefile defines (``name:`` rules and ``.PHONY``).

    Parameters
    ----------
    text : str
        The Makefile source.

    Returns
    -------
    set of str
        Target names, pattern and variable targets excluded.
    """
    targets: set[str] = set()
    for line in text.splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-/ ]+?)\s*::?(?!=)", line)
        if m and not line.startswith("\t"):
            for name in m.group(1).split():
                if not name.startswith("."):
                    targets.add(name)
    return targets
