"""Every ```python block of README.md and docs/**/*.md runs, and prints what the page says it prints.

How a page is run:
- The blocks of one page run in order in one namespace, as the cells of a notebook: a page is read top to
  bottom, so a later block may use what an earlier one defined (docs/interop.md's client, for one). Each block
  is its own test, named by its page and the line of its opening fence (`test_block[docs/interop.md:23]`);
  selected alone, it first runs the blocks above it on its page (but not those run in their own process,
  below). A block after one that failed or skipped skips, naming that block.
- Each page runs in its own temporary working directory, with standard output captured. What a page's prose
  says the reader already has is put there first (`GIVEN` below: docs/interop.md's GPT-2 directory and
  training checkpoint).
- Expected output, two forms: a ```text block right after a python block (blank lines between are allowed)
  is that block's whole standard output; a `# prints X` comment on a line says that X is a line of the
  output (several such lines must come in the order of the comments). In either, `...` matches any text,
  as in doctest.
- What a block needs: a module it imports that is not installed skips it, naming the module. An HTML comment
  on the line above the opening fence, `<!-- test: ... -->`, says the rest, in comma-separated words:
  - `needs X`: X is one of `NEEDS` (no-gpu, dot, server) or a module the block needs without importing it
    (numba for the Numba tier's output, mpi4py for `init_process_group`); the block skips, saying what is
    missing;
  - `env NAME=VALUE ...`: environment variables set while it runs;
  - `own process`: it runs alone in a new Python (`run_alone`);
  - `slow`: seconds of work, as docs/interop.md's block that imports transformers and PyTorch in a new
    process; `make test` still runs it, `-m "not slow"` leaves it out.
"""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import io
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import minitransformer as mt
from minitransformer.backend import available
from minitransformer.deploy.serve import make_server
from minitransformer.io import hf
from minitransformer.tasks.language_model import TrainConfig, train

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

_FENCE = re.compile(r"^```(\S*)\s*$")
_DIRECTIVE = re.compile(r"^<!--\s*test:\s*(.*?)\s*-->\s*$")
_PRINTS = re.compile(r"#\s*prints\s+(.*?)\s*$")


@dataclass
class Block:
    page: str  # relative to the repository root
    line: int  # of the opening fence, counted from 1
    code: str
    shown: str | None = None  # the ```text block that follows, if any
    needs: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    own_process: bool = False
    slow: bool = False

    @property
    def name(self) -> str:
        return f"{self.page}:{self.line}"


def blocks_of(page: Path) -> list[Block]:
    """The python blocks of a page, each with the text block shown after it and its test directives."""
    lines = page.read_text(encoding="utf-8").splitlines()
    fences: list[tuple[str, int, str]] = []  # (tag, line of the opening fence, body)
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if m is None:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        fences.append((m.group(1), i, "\n".join(lines[i + 1:end]) + "\n"))
        i = end + 1
    blocks = []
    for n, (tag, start, body) in enumerate(fences):
        if tag != "python":
            continue
        block = Block(str(page.relative_to(ROOT)), start + 1, body)
        directive = _DIRECTIVE.match(lines[start - 1]) if start else None
        for word in (directive.group(1).split(",") if directive else []):
            word = word.strip()
            if word == "slow":
                block.slow = True
            elif word == "own process":
                block.own_process = True
            elif word.startswith("needs "):
                block.needs.append(word.removeprefix("needs ").strip())
            elif word.startswith("env "):
                block.env.update(pair.split("=", 1) for pair in word.split()[1:])
            else:
                raise ValueError(f"{block.name}: unknown test directive {word!r}")
        if n + 1 < len(fences) and fences[n + 1][0] == "text":
            end = start + body.count("\n") + 1  # the closing fence
            if all(not s.strip() for s in lines[end + 1:fences[n + 1][1]]):
                block.shown = fences[n + 1][2]
        blocks.append(block)
    return blocks


BLOCKS = [b for page in PAGES for b in blocks_of(page)]


@dataclass
class Page:
    """A page being run: its working directory, its blocks' shared namespace, and which blocks have run."""

    cwd: Path
    namespace: dict[str, Any] = field(default_factory=dict)
    done: dict[int, str | None] = field(default_factory=dict)  # line -> None when it ran, else "failed" or why skipped


_pages: dict[str, Page] = {}


# ---- what a block needs beyond its imports: None when present, else what is missing ------------------------------
def _no_gpu(page: Page) -> str | None:
    return "the output shown is a machine's without a GPU, and this one has one" if "cuda" in available() else None


def _dot(page: Page) -> str | None:
    return None if shutil.which("dot") else "Graphviz's dot is not installed (apt-get install graphviz)"


_servers: list[Any] = []


def _server(page: Page) -> str | None:
    """`minitransformer serve --out out --port 8000`, as docs/interop.md starts it: the checkpoint GIVEN made,
    served under the id `out` on 127.0.0.1:8000 in a thread of this process (once, stopped after the tests)."""
    if _servers:
        return None
    try:
        srv = make_server(str(page.cwd / "out" / "run"), "127.0.0.1", 8000, model_name="out")
    except OSError as e:
        return f"port 8000 of 127.0.0.1 is taken ({e})"
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    _servers.append(srv)
    return None


def _module(name: str) -> Callable[[Page], str | None]:
    """A need that is not in NEEDS names a module the block uses without importing it itself."""
    return lambda page: None if importlib.util.find_spec(name) else f"{name} is not installed"


NEEDS: dict[str, Callable[[Page], str | None]] = {"no-gpu": _no_gpu, "dot": _dot, "server": _server}


def missing_imports(code: str) -> list[str]:
    """Top-level modules the block imports that are not installed."""
    names = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return sorted(n for n in names if importlib.util.find_spec(n) is None)


# ---- what a page's prose says the reader already has ------------------------------------------------------------
def _interop(cwd: Path) -> None:
    """A GPT-2 directory at path/to/gpt2 (a small random GPT with GPT-2's vocabulary, written by our own
    exporter) and a training checkpoint at out/run (a character model trained for one step)."""
    mt.manual_seed(0)
    gpt2 = mt.nn.GPT(mt.nn.GPTConfig(n_layer=1, n_head=2, n_embd=8, block_size=16, vocab_size=50257))
    hf.export_gpt2(gpt2, None, cwd / "path" / "to" / "gpt2")
    (cwd / "text.txt").write_text("ROMEO: I will not see thee.\n\n" * 100, encoding="utf-8")
    with contextlib.redirect_stdout(io.StringIO()), pytest.MonkeyPatch.context() as mp:
        mp.setitem(sys.modules, "matplotlib", None)  # the loss picture is not needed (one line on stderr says so)
        train(TrainConfig(data=str(cwd / "text.txt"), out=str(cwd / "out" / "run"), n_layer=1, n_head=2, n_embd=16,
                          block_size=16, max_iters=1, eval_interval=1, eval_iters=1, sample_tokens=0), progress=False)


GIVEN: dict[str, Callable[[Path], None]] = {"docs/interop.md": _interop}


# ---- running a page ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module", autouse=True)
def _stop_servers():
    yield
    for srv in _servers:
        srv.shutdown()
        srv.server_close()
    _servers.clear()


def matches(expected: str, got: str) -> bool:
    """`got` equals `expected`, where `...` in `expected` matches any text (within a line or across lines)."""
    pattern = ".*?".join(re.escape(part) for part in expected.split("..."))
    return re.fullmatch(pattern, got, flags=re.S) is not None


def check_output(block: Block, out: str) -> None:
    if block.shown is not None:
        got = "\n".join(line.rstrip() for line in out.rstrip().splitlines())
        want = "\n".join(line.rstrip() for line in block.shown.rstrip().splitlines())
        assert matches(want, got), f"{block.name} printed\n{out}\nbut the page shows\n{block.shown}"
    rest = out.splitlines()
    for want in _PRINTS.findall(block.code):
        k = next((k for k, line in enumerate(rest) if matches(want, line.rstrip())), None)
        assert k is not None, f"{block.name} says it prints {want!r}, in this order, but printed\n{out}"
        rest = rest[k + 1:]


@contextlib.contextmanager
def _inside(directory: Path) -> Iterator[None]:
    before = os.getcwd()
    os.chdir(directory)
    try:
        yield
    finally:
        os.chdir(before)


def run_alone(block: Block, cwd: Path) -> str:
    """The block's output when run by a new Python in `cwd`, the repository off sys.path (as a user's script
    runs: under pytest the repository's kernels/ folder shadows the `kernels` package transformers imports)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | block.env
    r = subprocess.run([sys.executable, "-c", "\n" * block.line + block.code], cwd=cwd, env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, f"{block.name} failed:\n{r.stderr}"
    return r.stdout


def run(block: Block, page: Page) -> None:
    """Run one block in its page's namespace and directory; record whether it ran (or why not) in page.done."""
    page.done[block.line] = "failed"
    missing = missing_imports(block.code)
    whys = [f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed"] if missing else []
    whys += [why for why in (NEEDS.get(need, _module(need))(page) for need in block.needs) if why is not None]
    if whys:
        page.done[block.line] = f"skipped: {whys[0]}"
        pytest.skip(f"{block.name} {page.done[block.line]}")
    if block.own_process:
        out = run_alone(block, page.cwd)
    else:
        buffer = io.StringIO()
        code = compile("\n" * block.line + block.code, str(ROOT / block.page), "exec")  # tracebacks show page lines
        with _inside(page.cwd), pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(buffer):
            for name, value in block.env.items():
                mp.setenv(name, value)
            exec(code, page.namespace)
        out = buffer.getvalue()
    check_output(block, out)
    page.done[block.line] = None


@pytest.mark.parametrize("block", [pytest.param(b, id=b.name, marks=[pytest.mark.slow] * b.slow) for b in BLOCKS])
def test_block(block: Block, tmp_path_factory: pytest.TempPathFactory) -> None:
    page = _pages.get(block.page)
    if page is None:
        page = _pages[block.page] = Page(tmp_path_factory.mktemp(re.sub(r"\W", "_", block.page)))
        if block.page in GIVEN:
            GIVEN[block.page](page.cwd)
    # the blocks above this one on its page, but not those run in their own process: they share no names
    for before in (b for b in BLOCKS if b.page == block.page and b.line < block.line and not b.own_process):
        if before.line not in page.done:
            with contextlib.suppress(Exception, pytest.skip.Exception):
                run(before, page)
        if page.done[before.line] is not None:
            pytest.skip(f"{block.name} skipped: it comes after {before.name}, which {page.done[before.line]}")
    run(block, page)


def test_every_page_with_code_is_found():
    """The pages this test reads, so that a moved docs folder cannot leave it testing nothing."""
    assert {b.page for b in BLOCKS} >= {"README.md", "docs/training.md", "docs/interop.md"}
