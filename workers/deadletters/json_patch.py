"""JSON Patch (RFC 6902) for repairing a dead letter's data: add, remove, replace and test, with RFC 6901 pointers.

Four operations are all a repair needs, and they fit in a page, so no dependency is taken for them.
`move` and `copy` are refused with a hint (remove + add does the same). The patch never changes the
document it is given: it works on a copy and returns it, or raises PatchError naming the operation.
"""

from __future__ import annotations

import copy
from typing import Any

SUPPORTED = ("add", "remove", "replace", "test")


class PatchError(ValueError):
    """The patch is malformed, or an operation cannot apply to this document."""


def apply_patch(document: Any, operations: Any) -> Any:
    """`document` with every operation applied in order (a copy), or PatchError for the first that fails."""
    if not isinstance(operations, list):
        raise PatchError("a JSON Patch is a JSON array of operations")
    result = copy.deepcopy(document)
    for number, operation in enumerate(operations, start=1):
        if not isinstance(operation, dict) or not isinstance(operation.get("op"), str):
            raise PatchError(f"operation {number} is not an object with an `op`")
        kind, path = operation["op"], operation.get("path")
        if not isinstance(path, str):
            raise PatchError(f"operation {number} ({kind}) has no `path`")
        where = f"operation {number} ({kind} {path or '/'})"
        if kind not in SUPPORTED:
            raise PatchError(f"{where}: `{kind}` is not supported here (use remove and add); supported: {SUPPORTED}")
        if kind in ("add", "replace", "test") and "value" not in operation:
            raise PatchError(f"{where}: needs a `value`")
        tokens = parse_pointer(path, where)
        try:
            if kind == "add":
                result = _add(result, tokens, copy.deepcopy(operation["value"]))
            elif kind == "remove":
                _remove(result, tokens)
            elif kind == "replace":
                result = _replace(result, tokens, copy.deepcopy(operation["value"]))
            elif not json_equal(_get(result, tokens), operation["value"]):
                raise PatchError("the value there is not the one the test expects")
        except PatchError as error:
            raise PatchError(f"{where}: {error}") from None
    return result


def parse_pointer(pointer: str, where: str = "pointer") -> list[str]:
    """RFC 6901: "" is the whole document; "/a/0/b~1c" is ["a", "0", "b/c"]."""
    if pointer == "":
        return []
    if not pointer.startswith("/"):
        raise PatchError(f"{where}: a path starts with '/' (got {pointer!r})")
    return [token.replace("~1", "/").replace("~0", "~") for token in pointer[1:].split("/")]


def json_equal(left: Any, right: Any) -> bool:
    """Equality as JSON means it: true is not 1, 1 is 1.0, objects ignore key order."""
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    if isinstance(left, int | float) and isinstance(right, int | float):
        return left == right
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(json_equal(left[k], right[k]) for k in left)
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(json_equal(a, b) for a, b in zip(left, right, strict=True))
    return type(left) is type(right) and bool(left == right)


def _get(document: Any, tokens: list[str]) -> Any:
    current = document
    for depth, token in enumerate(tokens):
        if isinstance(current, dict):
            if token not in current:
                raise PatchError(f"no member {token!r} at /{'/'.join(tokens[:depth])}")
            current = current[token]
        elif isinstance(current, list):
            current = current[_index(token, len(current))]
        else:
            raise PatchError(f"/{'/'.join(tokens[:depth])} is a {type(current).__name__}, not an object or array")
    return current


def _add(document: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return value
    parent, last = _get(document, tokens[:-1]), tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(len(parent) if last == "-" else _index(last, len(parent), allow_end=True), value)
    else:
        raise PatchError(f"cannot add into a {type(parent).__name__}")
    return document


def _remove(document: Any, tokens: list[str]) -> None:
    if not tokens:
        raise PatchError("cannot remove the whole document")
    parent, last = _get(document, tokens[:-1]), tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"no member {last!r} to remove")
        del parent[last]
    elif isinstance(parent, list):
        parent.pop(_index(last, len(parent)))
    else:
        raise PatchError(f"cannot remove from a {type(parent).__name__}")


def _replace(document: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return value
    parent, last = _get(document, tokens[:-1]), tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"no member {last!r} to replace (use add)")
        parent[last] = value
    elif isinstance(parent, list):
        parent[_index(last, len(parent))] = value
    else:
        raise PatchError(f"cannot replace inside a {type(parent).__name__}")
    return document


def _index(token: str, length: int, *, allow_end: bool = False) -> int:
    """An array index: digits without a leading zero, inside the array (or just past its end, to add)."""
    if not token.isascii() or not token.isdigit() or (len(token) > 1 and token.startswith("0")):
        raise PatchError(f"{token!r} is not an array index")
    index = int(token)
    if index > length or (index == length and not allow_end):
        raise PatchError(f"index {index} is out of range: the array has {length} item(s)")
    return index
