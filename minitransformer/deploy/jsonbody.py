"""A request body parsed as JSON, strictly: what json.loads would accept, less what a server should not.

Refused, each with a ValueError saying why: bytes that are not UTF-8; NaN, Infinity and -Infinity (not JSON,
though Python writes and reads them); nesting deeper than MAX_DEPTH (json.loads recurses, so a body of a few
thousand brackets would otherwise end in RecursionError); a number written with more than MAX_NUMBER
characters, or one whose float is not finite (1e999). The depth is measured on the bytes, before parsing.
The HTTP layer turns the ValueError into its endpoint's 400 answer.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import numpy as np

MAX_DEPTH = 32
MAX_NUMBER = 100

# a string literal; its closing quote is optional so that an unterminated one is consumed once, to the end,
# and the scan stays linear in the length of the body
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"?', re.S)
_OPEN, _CLOSE = np.frombuffer(b"[{", np.uint8), np.frombuffer(b"]}", np.uint8)


def depth(body: bytes) -> int:
    """How deeply the arrays and objects of a JSON text nest (brackets inside strings do not count)."""
    b = np.frombuffer(_STRING.sub(b'""', body), np.uint8)
    step = np.isin(b, _OPEN).astype(np.int64) - np.isin(b, _CLOSE)
    return int(np.cumsum(step).max(initial=0))


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _int(text: str) -> int:
    if len(text) > MAX_NUMBER:
        raise ValueError(f"a number of {len(text)} characters is longer than this server reads ({MAX_NUMBER})")
    return int(text)


def _float(text: str) -> float:
    if len(text) > MAX_NUMBER:
        raise ValueError(f"a number of {len(text)} characters is longer than this server reads ({MAX_NUMBER})")
    x = float(text)
    if not math.isfinite(x):
        raise ValueError(f"the number {text} is out of range")
    return x


def loads(body: bytes) -> Any:
    """The body's JSON value, or ValueError (json.JSONDecodeError for a syntax error) saying what is wrong."""
    text = body.decode("utf-8")  # UnicodeDecodeError is a ValueError
    d = depth(body)
    if d > MAX_DEPTH:
        raise ValueError(f"the JSON nests {d} levels deep; at most {MAX_DEPTH} are allowed")
    return json.loads(text, parse_constant=_constant, parse_int=_int, parse_float=_float)


def fields_object(body: bytes, fields: dict[str, Any]) -> dict[str, Any]:
    """A request body -> its JSON object, each field one of `fields` (name -> a type or a tuple of types) and
    of its type; a bool is not taken for a number. ValueError with one line saying what is wrong."""
    try:
        req = loads(body)
    except ValueError as e:  # a syntax error, bytes not UTF-8, NaN, too deep, a number too long
        raise ValueError(f"malformed JSON: {e}") from None
    if not isinstance(req, dict):
        raise ValueError("the body must be a JSON object")
    unknown = sorted(set(req) - set(fields))
    if unknown:
        raise ValueError(f"unknown field(s): {', '.join(unknown)}; allowed: {', '.join(fields)}")
    for k, v in req.items():
        allowed = fields[k] if isinstance(fields[k], tuple) else (fields[k],)
        if not isinstance(v, allowed) or (isinstance(v, bool) and bool not in allowed):
            raise ValueError(f"field {k!r} has the wrong type ({type(v).__name__})")
    return req
