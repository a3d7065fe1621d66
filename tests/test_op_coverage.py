"""Every op is checked. Each name in `mt.ops.OPS` needs a test that checks its forward against an independent
formula and a test that checks its float64 gradient against central differences; each name in
`NON_DIFFERENTIABLE` needs a forward check. Tests say what they check with `tests/factories.covers` (or
`op_test(..., covers=...)`); this file imports the test modules that use it and reads the declarations off
the objects pytest collects (module-level functions named test*), so a declaration on a helper, a renamed
or skipped test, or a misspelt op name does not count."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

import minitransformer as mt

TESTS = Path(__file__).resolve().parent
NEEDED = {**{name: ("forward", "grad") for name in mt.ops.OPS},
          **{name: ("forward",) for name in mt.ops.NON_DIFFERENTIABLE}}


def _skipped(obj: object) -> bool:
    """True when pytest would skip the test before running it (a skip mark, or a skipif whose condition
    holds)."""
    for mark in getattr(obj, "pytestmark", []):
        if mark.name == "skip" or (mark.name == "skipif" and any(bool(c) for c in mark.args)):
            return True
    return False


def collect_declarations() -> tuple[dict[str, dict[str, list[str]]], list[str]]:
    """op -> kind ("forward", "grad") -> the tests that declare it, and the declarations that do not count."""
    found: dict[str, dict[str, list[str]]] = {}
    problems: list[str] = []
    for path in sorted(TESTS.glob("test_*.py")):
        if path.name == Path(__file__).name or "covers" not in path.read_text(encoding="utf-8"):
            continue
        try:
            module = importlib.import_module(f"tests.{path.stem}")
        except pytest.skip.Exception:  # a module-level importorskip: its tests do not run here
            continue
        for name, obj in vars(module).items():
            checks = getattr(obj, "op_checks", None)
            if not isinstance(checks, dict):
                continue
            where = f"{path.name}::{name}"
            if not (name.startswith("test") and callable(obj)):
                problems.append(f"{where} declares checks but pytest does not collect it")
                continue
            if _skipped(obj) or _skipped(module):
                problems.append(f"{where} declares checks but is skipped")
                continue
            for op, kinds in checks.items():
                if op not in NEEDED or not hasattr(mt.ops, op):
                    problems.append(f"{where} declares {op!r}, which is not in mt.ops.OPS or NON_DIFFERENTIABLE")
                elif "grad" in kinds and op in mt.ops.NON_DIFFERENTIABLE:
                    problems.append(f"{where} declares a gradient check of the non-differentiable {op!r}")
                for kind in kinds:
                    found.setdefault(op, {}).setdefault(kind, []).append(where)
    return found, problems


def missing(name: str, found: dict[str, dict[str, list[str]]]) -> list[str]:
    """The kinds of check `name` needs and no test declares."""
    return [kind for kind in NEEDED.get(name, ("forward", "grad")) if not found.get(name, {}).get(kind)]


@pytest.fixture(scope="module")
def declarations() -> dict[str, dict[str, list[str]]]:
    return collect_declarations()[0]


def test_every_declaration_counts():
    _, problems = collect_declarations()
    assert not problems, "\n".join(problems)


WORDS = {"forward": "forward", "grad": "float64 gradient"}


@pytest.mark.parametrize("name", mt.ops.OPS)
def test_differentiable_op_has_forward_and_gradient_checks(name, declarations):
    assert callable(getattr(mt.ops, name, None)), f"mt.ops.OPS lists {name!r}, which mt.ops does not define"
    lacking = [WORDS[kind] for kind in missing(name, declarations)]
    assert not lacking, (f"mt.ops.{name} has no test declaring a {' or a '.join(lacking)} check; write one "
                         f"(tests/factories.op_test, or check_op in a test decorated @covers({name!r}))")


@pytest.mark.parametrize("name", mt.ops.NON_DIFFERENTIABLE)
def test_non_differentiable_op_has_a_forward_check(name, declarations):
    assert callable(getattr(mt.ops, name, None)), f"NON_DIFFERENTIABLE lists {name!r}, which mt.ops does not define"
    assert not missing(name, declarations), (
        f"mt.ops.{name} has no test declaring a forward check; write one decorated @covers({name!r}, grad=False)")


def test_the_check_fails_for_an_op_nobody_declares(declarations):
    # the rule itself: an op that no test declares is reported with both kinds, one with a forward check only
    # lacks the gradient check (removing covers="topk" from tests/test_ops_reduce.py fails
    # test_differentiable_op_has_forward_and_gradient_checks[topk] the same way)
    assert missing("no_such_op", declarations) == ["forward", "grad"]
    assert missing("topk", {"topk": {"forward": ["t"]}}) == ["grad"]
    assert missing("argmax", {"argmax": {"forward": ["t"]}}) == []
