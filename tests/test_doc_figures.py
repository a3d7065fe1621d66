"""Every measured figure in README.md and docs/ names the results file it comes from, and agrees with it.

The convention (docs/testing.md, "Figures and their results files"): an HTML comment on its own line,

    <!-- figures: benchmarks/results/serve-cpu.md -->

says that the figures of the lines after it, up to the next blank line or the next tag (one paragraph,
list or table), come from that results file (several files: separated by commas). Right above a code fence
it covers the comments of that block. In the span:

- A number with a unit (ms, s, min, h, us, ns; KB, MB, GB, KiB, MiB, GiB; GB/s, GFLOP/s, tokens/s, tok/s,
  sentences/s, requests/s; %; a ratio written 1.91x) must be a number of the cited files, with the same
  unit or one it converts to, rounded to the precision it is quoted at: 72 s may be quoted as 1.2 min, not
  as 1.5 min; 172 MB as 172 MB, not 173. A table cell that holds only numbers is checked the same way, with
  the unit its column's header names (bare numbers match bare numbers).
- Two numbers joined as a range or a comparison (`a-b`, `a to b`, `a -> b`, `a against b`, `a vs b`), with or
  without a unit, must both be recorded: a range quoted where the file holds one run fails.
- A figure computed from recorded ones is declared in the tag after a semicolon, with its arithmetic:
  `<!-- figures: benchmarks/results/compress-cpu.md; 6% = 0.300 / 0.283 - 1 -->` (a range's two ends:
  `a and b`). Each number of the arithmetic must be written in the cited files as it is in the tag (a `%`
  one counts as a hundredth), or be one of CONSTANTS; the result must round to the figure (a `%` figure is
  100 times it). `39 ms = 39.4` gives a recorded number the unit its file states only in prose.

The check finds a figure anywhere in the cited files, not in a given cell: it catches a figure that is not
recorded at the precision quoted, not one copied from the wrong row.

A guard fails for any paragraph, list, table or code comment of README.md and docs/ that quotes a time, a
size in bytes, a rate or an `x` speed-up without a tag (program output, in ```text and indented blocks, is
left alone). Figures that are not measurements (settings, limits, sizes of data, a model's arithmetic on
assumed inputs) are listed in NOT_MEASURED, each with its reason. Measured figures that fail, because no
results file holds them yet or because their text is being rewritten, are listed one by one in KNOWN_GAPS:
each is an expected failure of its own (strict: one that passes must leave the list), and the rest of its
page is checked as usual. Pages in PENDING are checked and expected to fail as a whole until their figures
are tagged; deleting a page from that set turns its check on.
"""

from __future__ import annotations

import ast
import bisect
import operator
import re
from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

# Pages whose figures are not tagged yet; their checks run and are expected to fail.
# To turn a page's check on, delete it from this set.
PENDING: set[str] = set()

# (page, phrase, reason): figures inside the phrase (whitespace as in the page does not matter) are not
# measurements, so they need no results file
NOT_MEASURED = [
    ("docs/training.md", "up to about 1 MB, found", "the size of the demo's data, a setting"),
    ("docs/training.md", "read in 1 MB pieces", "the reader's piece size, a setting"),
    ("docs/training.md", "learned on the first 4 MB", "the BPE sample size, a setting"),
    ("docs/training.md", "on 1 MB of Python source", "the size of the demo's data"),
    ("docs/training.md", "a 64 MiB copy or sum", "the size of the profiler's bandwidth probe, a setting"),
    ("docs/training.md", "A step at 85% of the floor", "a target, not a measurement"),
    ("README.md", "about 1 MB of the Python standard library", "the size of the demo's data"),
    ("docs/deployment.md", "(1 MiB by default)", "a default setting"),
    ("docs/distributed.md", "then SIGTERM follows after 3 s", "a setting of `minitransformer run`"),
    ("docs/distributed.md", "10.7M parameters = 43 MB", "arithmetic: 4 bytes per float32 parameter"),
    ("docs/distributed.md", "the all-reduce of 43 MB", "arithmetic: 4 bytes per float32 parameter"),
    ("docs/distributed.md", "(M = 43 MB)", "arithmetic: 4 bytes per float32 parameter"),
    ("docs/distributed.md", "(b = 1.25 GB/s, a = 50 us)", "an assumed link of the scaling model"),
    ("docs/distributed.md", "2 x 43 / 1.25 = 69 ms", "the scaling model's arithmetic"),
    ("docs/distributed.md", "it costs 690 ms", "the scaling model's arithmetic"),
    ("docs/distributed.md", "InfiniBand (10 GB/s)", "an assumed link of the scaling model"),
    ("docs/distributed.md", "(3.2 MB,", "arithmetic: 4 bytes per float32 parameter"),
    ("docs/distributed.md", "1 Gb/s gives 51 ms", "the scaling model's arithmetic"),
    ("docs/explore.md", "a body over 64 KiB", "a limit of the server"),
    ("docs/interop.md", "The gain is below 16x", "the ideal gain of 16 rows per step, not a measurement"),
    ("docs/interop.md", "(about 40 ms on Linux", "Linux's delayed-ACK timer, a constant of the kernel"),
    ("docs/interop.md", "1.4-1.8x slower: pip install", "the text of the program's message"),
    ("docs/interop.md", "(about 10 s)", "what the test costs to run, not a result of the library"),
    ("docs/reliability.md", "about 9 s", "what the tests cost to run, not a result of the library"),
    ("docs/reliability.md", "with a 1 s socket timeout", "the tests' setting"),
    ("docs/reliability.md", "30 s by default", "a default setting"),
    ("docs/reliability.md", "closed after about 1 s", "the tests' timeout setting, checked as a bound"),
    ("docs/reliability.md", "one byte every 0.25 s: cut off within 3 s", "the test's input and bound"),
    ("docs/reliability.md", "gets its status within 3 s", "the test's bound"),
    ("docs/reliability.md", "half-open for 1 s", "a setting"),
    ("docs/reliability.md", "503 in under 0.5 s", "the test's bound"),
    ("docs/reliability.md", "a sparse 2 GB file", "the test's input"),
    ("docs/reliability.md", "reads under 1 MB", "the test's bound"),
    ("docs/reliability.md", "over 64 KiB", "the standard library's limit"),
    ("docs/reliability.md", "with a 5 s socket timeout", "the load run's setting"),
    ("docs/reliability.md", "dropped at the 5 s timeout", "the load run's setting"),
    ("docs/tasks/speech.md", "25 ms frames every 10 ms", "the features' settings"),
    ("docs/tasks/speech.md", "turns 10 ms frames into 40 ms positions", "the model's settings"),
    ("docs/tasks/vit.md", "in under 15 minutes", "a target, not a measurement"),
    ("docs/testing.md", "take about 10 s together", "what the tests cost to run, not a result of the library"),
    ("docs/testing.md", "plus about 10 s for the one", "what the test costs to run, not a result of the library"),
    ("docs/testing.md", "a speed-up written 1.91x", "an example of the convention"),
    ("docs/testing.md", "72 s may be quoted as 1.2 min, never as 1.5 min", "an example of the convention"),
]

# (page, phrase, reason): measured figures that fail the check today; each is an expected failure of its own
KNOWN_GAPS = [
]

CONSTANTS = {Decimal(c) for c in ("1", "2", "60", "100", "1000")}

# units as written -> (canonical unit, factor to it); a time may carry a per-what suffix (ms/token, s/step)
UNITS = {
    "ns": ("s", Decimal("1e-9")), "us": ("s", Decimal("1e-6")), "ms": ("s", Decimal("1e-3")),
    "s": ("s", Decimal(1)), "seconds": ("s", Decimal(1)), "min": ("s", Decimal(60)),
    "minutes": ("s", Decimal(60)), "h": ("s", Decimal(3600)), "hours": ("s", Decimal(3600)),
    "KB": ("B", Decimal(10**3)), "MB": ("B", Decimal(10**6)), "GB": ("B", Decimal(10**9)),
    "KiB": ("B", Decimal(2**10)), "MiB": ("B", Decimal(2**20)), "GiB": ("B", Decimal(2**30)),
    "GB/s": ("GB/s", Decimal(1)), "GFLOP/s": ("GFLOP/s", Decimal(1)), "tokens/s": ("tokens/s", Decimal(1)),
    "tok/s": ("tokens/s", Decimal(1)), "sentences/s": ("sentences/s", Decimal(1)),
    "requests/s": ("requests/s", Decimal(1)), "%": ("%", Decimal(1)), "x": ("x", Decimal(1)),
}

_NUM = r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?"
_PER = r"(?:/(?:token|step|iter|element))?"
# "s", "h" and the word units follow the number after a space ("72 s"; "two 3s" is not a time); "x" follows
# it directly ("1.91x"; "4 x 128" is a shape); the others either way
_UNIT = (
    rf"(?:\s?(?P<u1>GFLOP/s|GB/s|tokens/s|tok/s|sentences/s|requests/s|ns|us|ms|min|KiB|MiB|GiB|KB|MB|GB){_PER}"
    rf"|\s(?P<u2>s|h|seconds|minutes|hours){_PER}|(?P<u3>%|x))(?![\w/])"
)
FIGURE = re.compile(
    rf"(?<![\w.+-])(?P<a>{_NUM})(?:\s*(?:-|–|to|->|→|against|vs\.?)\s*(?P<b>{_NUM}))?(?:{_UNIT})?(?![\w.]*\d|-\d)"
)
HEADER_UNIT = re.compile(
    r"(?<![\w/-])(?P<u>GFLOP/s|GB/s|tokens/s|tok/s|sentences/s|requests/s|ns|us|ms|s|min|seconds|KiB|MiB|GiB"
    rf"|KB|MB|GB|%){_PER}(?![\w/])"
)
TAG = re.compile(r"^<!--\s*figures:\s*(?P<body>.*?)\s*-->\s*$")
_FENCE = re.compile(r"^\s*(?:```|~~~)(\S*)")
_COMMENT = re.compile(r"^\s*<!--.*-->\s*$")


_PLAIN = re.compile(r"(?<![\w.])\d[\d,]*(?:\.\d+)?%?")
_ARITHMETIC = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


@dataclass(frozen=True)
class Number:
    value: Decimal  # as written, sign included, thousands separators dropped
    places: int  # digits after the decimal point, as written
    unit: str | None = None  # canonical (s, B, %, x, GB/s, ...); None for a bare number
    scale: Decimal = Decimal(1)  # the written unit in the canonical one (ms: 0.001)

    @classmethod
    def parse(cls, text: str, written_unit: str | None = None) -> Number:
        text = text.replace(",", "")
        places = len(text.split(".")[1]) if "." in text else 0
        unit, scale = UNITS[written_unit] if written_unit else (None, Decimal(1))
        return cls(Decimal(text), places, unit, scale)

    def rounds_from(self, record: Number) -> bool:
        """This quoted number is `record` rounded to the quoted precision, in the same unit or one that
        converts (ms, s, min; MB, GB), and no more precise than the record. Bare numbers match bare ones."""
        if self.unit != record.unit:
            return False
        ratio = record.scale / self.scale
        step = Decimal(1).scaleb(-self.places)
        record_step = Decimal(1).scaleb(-record.places) * ratio
        return abs(self.value - record.value * ratio) <= step / 2 and step >= record_step * Decimal("0.999")


@dataclass(frozen=True)
class Figure:
    text: str
    numbers: tuple[Number, ...]  # one, or a range's two ends
    start: int  # offsets in the text it was found in
    end: int


def figures_in(text: str, column_unit: str | None = None) -> list[Figure]:
    """The figures of a piece of text, each with its unit: written after it, else `column_unit`."""
    found = []
    for m in FIGURE.finditer(text):
        written = m.group("u1") or m.group("u2") or m.group("u3") or column_unit
        numbers = tuple(Number.parse(m.group(end), written) for end in "ab" if m.group(end))
        found.append(Figure(m.group(0), numbers, m.start(), m.end()))
    return found


def header_unit(header: str) -> str | None:
    m = HEADER_UNIT.search(header)
    return m.group("u") if m else None


def cells(row: str) -> list[str]:
    return [c.strip() for c in row.strip().strip("|").split("|")]


def is_number_cell(cell: str) -> bool:
    """A cell that is only figures (`1.91x`, `**2.79%**`, `45 / 93`, `-0.39%`): a reported value."""
    bare = cell.replace("*", "").strip()
    one = re.sub(r"\?P<\w+>", "", FIGURE.pattern)
    return bool(bare) and re.fullmatch(rf"{one}(?:\s*/\s*{one})*", bare) is not None


@dataclass
class Piece:
    """What is checked as one text: a paragraph's lines (joined) or one table cell."""

    text: str  # whitespace collapsed
    line: int
    column_unit: str | None = None
    number_cell: bool = False  # a table cell holding only figures: its bare numbers are checked too
    starts: tuple[int, ...] = (0,)  # where each of a paragraph's lines starts in `text`
    row: str = ""  # a table cell's whole row, whitespace collapsed

    def line_of(self, figure: Figure) -> int:
        return self.line + bisect.bisect_right(self.starts, figure.start) - 1


def pieces_of(lines: list[str], first_line: int) -> list[Piece]:
    """A span's prose joined into one text, and each table cell on its own with its column's unit."""
    out: list[Piece] = []
    prose: list[str] = []
    header: list[str] | None = None

    def paragraph(last: int) -> None:
        starts = [0]
        for line in prose[:-1]:
            starts.append(starts[-1] + len(line) + 1)
        out.append(Piece(" ".join(prose), last - len(prose) + 1, starts=tuple(starts)))
        prose.clear()

    for number, line in enumerate(lines, first_line):
        if not line.lstrip().startswith("|"):
            header = None
            prose.append(_collapse(line))
            continue
        if prose:
            paragraph(number - 1)
        if header is None:
            header = cells(line)
        elif not re.fullmatch(r"[\s:|-]+", line):  # the |---| row
            for i, cell in enumerate(cells(line)):
                unit = header_unit(header[i]) if i < len(header) else None
                out.append(Piece(_collapse(cell), number, unit, is_number_cell(cell), row=_collapse(line)))
    if prose:
        paragraph(first_line + len(lines) - 1)
    return out


@dataclass
class Span:
    """Consecutive lines of a page: a tag's span (its files and derived figures) or lines no tag covers."""

    page: str
    line: int  # the first line's number
    lines: list[str]
    files: list[str] | None = None  # None: untagged
    derived: dict[str, str] | None = None  # figure as written -> its arithmetic


def spans_of(page: Path) -> list[Span]:
    return spans_of_text(page.read_text(encoding="utf-8").splitlines(), page.relative_to(ROOT).as_posix())


def spans_of_text(lines: list[str], name: str = "example.md") -> list[Span]:
    """A page's paragraphs, lists and tables, split where a tag starts a span, and the comments of its code
    blocks (a tag right above the fence covers them). Program output (a ```text block, an indented block)
    is not a claim and is left out."""
    spans: list[Span] = []
    current: Span | None = None
    code: Span | None = None  # the code block being read
    for number, line in enumerate(lines, 1):
        if fence := _FENCE.match(line):
            if code is not None:
                code = current = None
                continue
            if current is None or current.files is None or current.lines:  # no tag right above it
                current = Span(name, number + 1, [])
                spans.append(current)
            current.line, code = number + 1, current
            if fence.group(1) in ("", "text"):  # program output: read, but not checked
                spans.pop()
        elif code is not None:
            code.lines.append(line.split("#", 1)[1] if "#" in line else "")
        elif not line.strip():
            current = None
        elif tag := TAG.match(line):
            files, *rules = tag.group("body").split(";")
            derived = dict(tuple(part.strip() for part in rule.split("=", 1)) for rule in rules)
            current = Span(name, number + 1, [], [f.strip() for f in files.split(",") if f.strip()], derived)
            spans.append(current)
        elif _COMMENT.match(line):
            continue  # another directive (docs/testing.md's `<!-- test: ... -->`)
        elif current is None and line.startswith(("    ", "\t")):
            current = Span(name, number, [])  # an indented code block: not in `spans`
        else:
            if current is None:
                current = Span(name, number, [])
                spans.append(current)
            current.lines.append(line)
    return spans


@cache
def recorded(path: str) -> tuple[Number, ...]:
    """Every number of a results file, with its unit (written after it, or named by its table column)."""
    lines = (ROOT / path).read_text(encoding="utf-8").splitlines()
    return tuple(n for piece in pieces_of(lines, 1) for f in figures_in(piece.text, piece.column_unit)
                 for n in f.numbers)


def derive(arithmetic: str, files: list[str]) -> Decimal:
    """The value of a tag's arithmetic; each number in it must be written so in a cited file (a `%` one as
    a percentage) or be one of CONSTANTS."""
    values: dict[str, Decimal] = {}

    def name(m: re.Match) -> str:
        text = m.group(0)
        number = Number.parse(text.rstrip("%"), "%" if text.endswith("%") else None)
        found = any(number.value == r.value and number.places == r.places and (number.unit in (None, r.unit))
                    for path in files for r in recorded(path))
        assert found or (number.unit is None and number.value in CONSTANTS), f"{text} is not in {files}"
        values[f"n{len(values)}"] = number.value / 100 if number.unit == "%" else number.value
        return f"n{len(values) - 1}"

    def value(node: ast.AST) -> Decimal:
        if isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
            return _ARITHMETIC[type(node.op)](value(node.left), value(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -value(node.operand)
        if isinstance(node, ast.Name):
            return values[node.id]
        raise AssertionError(f"not arithmetic: {arithmetic}")

    return value(ast.parse(_PLAIN.sub(name, arithmetic), mode="eval").body)


@dataclass(frozen=True)
class Problem:
    page: str
    line: int
    figure: str
    why: str
    gap: str | None = None  # the KNOWN_GAPS phrase it falls in, if any

    def __str__(self) -> str:
        return f"{self.page}:{self.line}: {self.figure}: {self.why}"


def _collapse(text: str) -> str:
    return " ".join(text.split())


def _within(figure: Figure, piece: Piece, phrases: list[str]) -> str | None:
    """The phrase (one of `phrases`) that this figure of `piece` is part of, if any; a phrase that starts
    with `|` covers each table row it is found in."""
    for phrase in phrases:
        if phrase.startswith("|") and phrase in piece.row:
            return phrase
        for m in re.finditer(re.escape(phrase), piece.text):
            if m.start() <= figure.start and figure.end <= m.end():
                return phrase
    return None


def _phrases(table: list[tuple[str, str, str]], page: str) -> list[str]:
    return [_collapse(phrase) for p, phrase, _ in table if p == page]


def check_span(span: Span) -> list[Problem]:
    """A tagged span's figures against its files; an untagged span's measured figures (it needs a tag)."""
    exempt, gaps = _phrases(NOT_MEASURED, span.page), _phrases(KNOWN_GAPS, span.page)
    problems: list[Problem] = []
    for path in span.files or []:
        if not (ROOT / path).is_file():
            problems.append(Problem(span.page, span.line - 1, path, "the tag cites a file that does not exist"))
    if problems:
        return problems
    unused = dict(span.derived or {})
    for piece in pieces_of(span.lines, span.line):
        for figure in figures_in(piece.text, piece.column_unit):
            unit = figure.numbers[0].unit
            if _within(figure, piece, exempt):
                continue
            gap = _within(figure, piece, gaps)
            if span.files is None:
                if unit not in (None, "%"):  # a percentage alone is often not a measurement
                    problems.append(Problem(span.page, piece.line_of(figure), figure.text, "a measured figure with no "
                                            "<!-- figures: ... --> tag naming its results file", gap))
                continue
            if not (unit or len(figure.numbers) == 2 or piece.number_cell):
                continue  # a bare number in prose (a count, a size of the model): not a quoted figure
            why = _disagrees(figure, span, unused)
            if why:
                problems.append(Problem(span.page, piece.line_of(figure), figure.text, why, gap))
    problems += [Problem(span.page, span.line - 1, k, "declared in the tag but not in its span") for k in unused]
    return problems


def _disagrees(figure: Figure, span: Span, unused: dict[str, str]) -> str | None:
    """Why this figure of a tagged span does not agree with the span's files (None: it agrees)."""
    files = span.files or []
    if figure.text in (span.derived or {}):
        unused.pop(figure.text, None)
        arithmetic = span.derived[figure.text]
        parts = arithmetic.split(" and ")  # a range: one arithmetic per end
        if len(parts) != len(figure.numbers):
            return f"{len(figure.numbers)} numbers, {len(parts)} arithmetic"
        for quoted, part in zip(figure.numbers, parts, strict=True):
            try:
                result = derive(part, files)
            except AssertionError as e:
                return f"its arithmetic {part!r}: {e}"
            result = result * 100 if quoted.unit == "%" else result
            if abs(quoted.value - result) > Decimal(1).scaleb(-quoted.places) / 2:
                return f"{part} is {result:.4g}"
        return None
    missing = [n for n in figure.numbers if not any(n.rounds_from(r) for p in files for r in recorded(p))]
    if not missing:
        return None
    what = "the ends of a range must both be recorded values; " if len(figure.numbers) == 2 else ""
    return f"{what}not in {', '.join(files)} at this precision"


def problems_of(page: Path) -> list[Problem]:
    return [problem for span in spans_of(page) for problem in check_span(span)]


def _name(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_figures_agree_with_their_results_files(page: Path) -> None:
    """Each figure of a tagged span is in its cited files; each measured figure outside one is an error."""
    found = [p for p in problems_of(page) if p.gap is None]
    message = "\n".join(map(str, found))
    if _name(page) in PENDING:
        if found:
            pytest.xfail(f"{len(found)} figures not tagged or not recorded yet:\n{message}")
        pytest.fail(f"{_name(page)} passes: take it out of PENDING")
    assert not found, message


def _known_gap(page: str, phrase: str, reason: str) -> None:
    """Each known gap is still there and still fails (strict: a gap that passes must leave KNOWN_GAPS)."""
    assert _collapse(phrase) in _collapse((ROOT / page).read_text(encoding="utf-8")), f"{phrase!r} is gone"
    found = [p for p in problems_of(ROOT / page) if p.gap == _collapse(phrase)]
    if found:
        pytest.xfail(f"{reason}:\n" + "\n".join(map(str, found)))
    pytest.fail(f"{page}: {phrase!r} passes now: take it out of KNOWN_GAPS")


if KNOWN_GAPS:  # none today; a parametrized test over an empty list would only report a skip
    test_known_gaps = pytest.mark.parametrize(
        "page, phrase, reason", KNOWN_GAPS, ids=[f"{g[0]}:{g[1][:30]}" for g in KNOWN_GAPS])(_known_gap)


def test_every_exemption_names_text_on_its_page() -> None:
    stale = [(page, phrase) for page, phrase, _ in NOT_MEASURED
             if _collapse(phrase) not in _collapse((ROOT / page).read_text(encoding="utf-8"))]
    assert not stale, stale


# Drift the check must catch, as pages had it, with the text each was corrected to
DRIFTS = [
    ("benchmarks/results/compress-cpu.md", "of which 173 MB is the process without any model",
     "of which 172 MB is the process without any model"),
    ("benchmarks/results/speech-cpu.md", "synthesises the corpus once (~1.5 min), then trains",
     "synthesises the corpus once (72 s), then trains"),
    ("benchmarks/results/train-step-cpu.md",
     "takes 54-56 ms on one thread and 35-39 ms on two, against PyTorch eager's 59-62 and 37-39",
     "takes 55.3 ms on one thread and 36.4 ms on two"),
]


def _check(tag: str, text: str) -> list[Problem]:
    (span,) = spans_of_text([f"<!-- figures: {tag} -->", text])
    return check_span(span)


@pytest.mark.parametrize("cited, drifted, corrected", DRIFTS, ids=[d[1][:30] for d in DRIFTS])
def test_drift_fails_and_its_correction_passes(cited: str, drifted: str, corrected: str) -> None:
    assert _check(cited, drifted), f"{drifted!r} passed against {cited}"
    assert not _check(cited, corrected), _check(cited, corrected)


def test_a_derived_figure_is_checked_by_its_arithmetic() -> None:
    compress = "benchmarks/results/compress-cpu.md"
    assert _check(f"{compress}; 50% = 0.448 / 0.300 - 1", "It is 50% slower to generate")  # 49.3%
    assert not _check(f"{compress}; 49% = 0.448 / 0.300 - 1", "It is 49% slower to generate")
    assert _check(f"{compress}; 49% = 0.449 / 0.300 - 1", "It is 49% slower to generate")  # 0.449: not recorded


def test_a_measured_figure_without_a_tag_fails() -> None:
    (span,) = spans_of_text(["The explorer answers in 84 ms, 3.3x faster."])
    assert [p.figure for p in check_span(span)] == ["84 ms", "3.3x"]
