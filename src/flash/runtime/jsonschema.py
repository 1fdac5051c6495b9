"""Check JSON values against the JSON Schemas ``flash build`` records for typed functions.

Covers the dialect pydantic's ``TypeAdapter(...).json_schema()`` writes: ``type``, ``const``,
``enum``, ``$ref`` into ``$defs``, ``anyOf``/``oneOf`` (with pydantic's ``discriminator``)
/``allOf``, object, array, string and number keywords, and a few ``format`` values (unknown
formats pass). ``pattern`` runs on pydantic-core's linear-time regex engine, when loaded (see
:func:`_pattern_test`), never on Python's backtracking ``re``. Every problem is reported as
an :class:`Issue` naming where it is, up to :data:`MAX_ISSUES`. Never raises for any JSON value.

Standard library only: this module runs inside every worker.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import math
import re
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple, TypeGuard

__all__ = [
    "FORMAT_EXAMPLES",
    "INVALID_JSON",
    "KEY_PATTERNS",
    "MAX_ISSUES",
    "MAX_NESTING",
    "TOO_DEEP",
    "TOO_LARGE",
    "UNIX_TIME_TEXT",
    "Issue",
    "JsonInputError",
    "check_depth",
    "format_path",
    "is_number",
    "issues_text",
    "parse_json",
    "parse_json_member",
    "validate",
]

MAX_ISSUES = 50
# Nested checks (value levels plus $ref/anyOf hops) before validation gives up on a branch:
# keeps the call stack far below the interpreter's recursion limit.
MAX_NESTING = 200

# JsonInputError.reason values.
TOO_LARGE = "too_large"
TOO_DEEP = "too_deep"
INVALID_JSON = "invalid_json"


class Issue(NamedTuple):
    """One problem with one value: ``path`` like ``kwargs.items[2].name``."""

    path: str
    message: str


class JsonInputError(ValueError):
    """A JSON document that is too large, too deep or not JSON; ``reason`` says which."""

    def __init__(self, reason: str, message: str, path: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.path = path  # where in the document, when known (how deep it got too deep)


# A path is built as a chain of (parent, key) tuples ending in the root string, and only
# turned into text when an issue needs it: most values have no issue.
_Path = Any


def validate(
    value: Any, schema: Any, *, path: str = "", max_issues: int = MAX_ISSUES
) -> list[Issue]:
    """Every way ``value`` breaks ``schema`` (at most ``max_issues``); empty when it is valid.

    ``path`` names the value in issue paths (``"kwargs"`` gives ``kwargs.name``).
    """
    validator = _Validator(schema, max(1, max_issues), _Budget(value))
    try:
        validator.check(value, schema, path, 0)
    except _TooComplex:
        return [
            Issue(
                format_path(path),
                "too complex to validate against this schema (the check gave up before "
                "it finished); refused",
            )
        ]
    return validator.issues


def issues_text(problems: Sequence[str], *, shown: int, cut: bool) -> str:
    """The first ``shown`` of ``problems`` joined, and how many more there are. ``cut``: the
    list stopped at MAX_ISSUES (the worker's checks stop there), so it may not hold every
    problem; the text says so rather than count the list as the total."""
    text = "; ".join(problems[:shown])
    more = len(problems) - shown
    stops = f"listing stops at {MAX_ISSUES} problems: there may be others"
    if cut:
        return f"{text} (and {more} more listed, but {stops})" if more > 0 else f"{text} ({stops})"
    return f"{text} (and {more} more)" if more > 0 else text


# How many levels of a path an error shows: the first ones name the field well enough.
_PATH_LEVELS_SHOWN = 8


def check_depth(value: Any, max_depth: int, *, path: str = "") -> None:
    """Raise JsonInputError (TOO_DEEP) when arrays/objects nest deeper than ``max_depth``.

    Iterative, so any depth is measured without touching the recursion limit.
    """
    stack: list[tuple[Any, int, _Path]] = [(value, 0, path)]
    while stack:
        current, depth, where = stack.pop()
        if isinstance(current, dict):
            items: Any = current.items()
        elif isinstance(current, (list, tuple)):
            items = enumerate(current)
        else:
            continue
        if depth >= max_depth:
            where_text = format_path(where)
            raise JsonInputError(
                TOO_DEEP,
                f"{where_text or 'the value'}: JSON nested deeper than {max_depth} levels",
                where_text,
            )
        for key, child in items:
            if isinstance(child, (dict, list, tuple)):
                stack.append((child, depth + 1, (where, key)))


def parse_json(text: str | bytes, max_bytes: int, max_depth: int) -> Any:
    """``json.loads`` with a size limit, a depth limit, and no NaN/Infinity.

    Raises JsonInputError with reason TOO_LARGE, TOO_DEEP or INVALID_JSON; the message
    never quotes the document.
    """
    return parse_json_member(text, max_bytes, max_depth, None)[0]


def parse_json_member(
    text: str | bytes, max_bytes: int, max_depth: int, member: str | None
) -> tuple[Any, str | None]:
    """``parse_json``, and the JSON text of ``member`` of the top-level object as it was
    sent: whoever passes that value on can send the text instead of encoding it again.

    The text is None when the document is not an object with that member, or when the
    member's text is not ASCII (``json.dumps`` output is; anything else could hold a lone
    surrogate that UTF-8 cannot carry): then encode the value.
    """
    if isinstance(text, (bytes, bytearray)):
        size = len(text)
    elif len(text) > max_bytes or text.isascii():
        size = len(text)  # a character is at least a byte: already over, or exact
    else:
        size = len(text.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise JsonInputError(
            TOO_LARGE, f"the JSON body is {size} bytes, over the limit of {max_bytes} bytes"
        )
    try:
        if member is None:
            value, member_text = _DECODER.decode(_json_str(text)), None
        else:
            value, member_text = _loads_keeping_member(_json_str(text), member)
    except RecursionError:
        raise JsonInputError(TOO_DEEP, f"JSON nested deeper than {max_depth} levels") from None
    except (ValueError, UnicodeDecodeError) as exc:
        if isinstance(exc, ValueError) and "integer string conversion" in str(exc):
            _refuse_long_integers(_json_str(text))  # names where, which the decoder does not
        raise JsonInputError(INVALID_JSON, f"not valid JSON: {exc}") from None
    # Nesting can be no deeper than the number of brackets: a count at C speed spares the
    # walk for flat documents, however big.
    if isinstance(text, str):
        brackets = text.count("[") + text.count("{")
    else:
        brackets = text.count(b"[") + text.count(b"{")
    if brackets > max_depth:
        check_depth(value, max_depth)
    # A number literal too big for a float (1e400) parses to an infinity, which no JSON
    # value is.
    _refuse_infinities(value)
    if member_text is not None and not member_text.isascii():
        member_text = None
    return value, member_text


def _refuse_infinities(value: Any) -> None:
    """JsonInputError (INVALID_JSON) naming where ``value`` holds an infinity. Strings are
    not looked into, and a list of numbers is summed at C speed (an infinity or a NaN
    stays one in a sum): a pickled job's body costs nothing, a megabyte of floats about a
    millisecond."""
    for item, where in _leaves(value, _finite_numbers):
        if type(item) is float and item - item != 0:
            raise JsonInputError(
                INVALID_JSON,
                f"{format_path(where) or 'the value'}: {item} is not a JSON number (a number "
                "this large, such as 1e400, is beyond the range of a 64-bit float)",
                format_path(where),
            )


def _finite_numbers(items: list[Any]) -> bool:
    """Whether ``items`` are all numbers, none an infinity (a sum at C speed tells)."""
    if not items or not set(map(type, items)) <= _NUMBER_TYPES:
        return False
    try:
        return math.isfinite(sum(items))
    except OverflowError:  # an integer beyond a float's range: look at each
        return False


def _leaves(
    value: Any, skipped: Callable[[list[Any]], bool] | None = None
) -> Iterator[tuple[Any, _Path]]:
    """Each value in JSON data ``value`` that is no object or array, with its path; lists
    for which ``skipped`` says so are not looked into."""
    stack: list[tuple[Any, _Path]] = [(value, "")]
    while stack:
        item, where = stack.pop()
        if isinstance(item, dict):
            stack.extend((child, (where, key)) for key, child in item.items())
        elif isinstance(item, list):
            if skipped is None or not skipped(item):
                stack.extend((child, (where, index)) for index, child in enumerate(item))
        else:
            yield item, where


class _LongInteger(int):
    """Stands for an integer literal of more digits than Python converts (see
    _refuse_long_integers): its value is its number of digits."""


def _refuse_long_integers(text: str) -> None:
    """JsonInputError (INVALID_JSON) naming where ``text`` holds an integer literal longer
    than Python converts (``sys.get_int_max_str_digits``); read again only once the fast
    decoder failed on one, which says neither where nor why in terms a client can act on."""
    limit = sys.get_int_max_str_digits() if hasattr(sys, "get_int_max_str_digits") else 0

    def parse_int(digits: str) -> int:
        length = len(digits.lstrip("-"))
        return _LongInteger(length) if limit and length > limit else int(digits)

    try:
        value = json.JSONDecoder(parse_constant=_reject_constant, parse_int=parse_int).decode(text)
    except (ValueError, RecursionError):
        return  # another problem first (nested too deep, say): the caller reports it
    for item, where in _leaves(value):
        if type(item) is _LongInteger:
            raise JsonInputError(
                INVALID_JSON,
                f"{format_path(where) or 'the value'}: an integer of {int(item)} digits, over "
                f"the {limit} digits a JSON integer may have here (send it as a string)",
                format_path(where),
            )


_NUMBER_TYPES = frozenset({int, float})


def _json_str(text: str | bytes | bytearray) -> str:
    if isinstance(text, str):
        return text
    return text.decode(json.detect_encoding(text), "surrogatepass")  # as json.loads does


_JSON_WHITESPACE = re.compile(r"[ \t\n\r]*")


def _loads_keeping_member(text: str, member: str) -> tuple[Any, str | None]:
    """``json.loads(text)`` and the text of the top-level object's ``member``: the object's
    own punctuation is read here, its keys and values by json's C scanner."""
    at = _skip_space(text, 0)
    if not text.startswith("{", at):
        return _DECODER.decode(text), None
    obj: dict[str, Any] = {}
    member_text = None
    at = _skip_space(text, at + 1)
    if text.startswith("}", at):
        _check_end(text, at + 1)
        return obj, None
    while True:
        if not text.startswith('"', at):
            raise json.JSONDecodeError(
                "Expecting property name enclosed in double quotes", text, at
            )
        key, at = _scan(text, at)
        at = _skip_space(text, at)
        if not text.startswith(":", at):
            raise json.JSONDecodeError("Expecting ':' delimiter", text, at)
        start = _skip_space(text, at + 1)
        obj[key], at = _scan(text, start)
        if key == member:  # the last one counts, as in json.loads
            member_text = text[start:at]
        at = _skip_space(text, at)
        if text.startswith("}", at):
            break
        if not text.startswith(",", at):
            raise json.JSONDecodeError("Expecting ',' delimiter", text, at)
        at = _skip_space(text, at + 1)
    _check_end(text, at + 1)
    return obj, member_text


def _scan(text: str, at: int) -> tuple[Any, int]:
    """The JSON value at ``at`` and where it ends."""
    try:
        return _DECODER.scan_once(text, at)  # type: ignore[attr-defined]
    except StopIteration as err:
        raise json.JSONDecodeError("Expecting value", text, err.value) from None


def _skip_space(text: str, at: int) -> int:
    return _JSON_WHITESPACE.match(text, at).end()  # type: ignore[union-attr]


def _check_end(text: str, at: int) -> None:
    at = _skip_space(text, at)
    if at != len(text):
        raise json.JSONDecodeError("Extra data", text, at)


def format_path(path: _Path) -> str:
    """Text of a path chain: ``kwargs.items[2]["odd key"]``; a chain of more than 8 keys
    shows its first 8 and how many there are: ``output[0][0]... (300 levels)``."""
    keys: list[Any] = []
    while isinstance(path, tuple):
        path, key = path
        keys.append(key)
    text = path if isinstance(path, str) else ""
    shown = keys[::-1][:_PATH_LEVELS_SHOWN]
    for key in shown:
        if isinstance(key, int) and not isinstance(key, bool):
            text += f"[{key}]"
        elif isinstance(key, str) and _IDENTIFIER.fullmatch(key):
            text = f"{text}.{key}" if text else key
        elif isinstance(key, str):
            text += f"[{json.dumps(key)}]"
        else:
            text += f"[{key!r}]"
    if len(shown) < len(keys):
        text += f"... ({len(keys)} levels)"
    return text


_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_KINDS: dict[type, str] = {
    type(None): "null",
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    list: "array",
    tuple: "array",
    dict: "object",
}
# Keywords that never affect validity: a schema of only these and "type" is a plain type check.
_ANNOTATIONS = frozenset(
    {"title", "description", "default", "examples", "deprecated", "readOnly", "writeOnly"}
)
_UNRESOLVED = object()


class _TooDeep(Exception):
    pass


# Validation work is bounded: unions of recursive schemas can check one value exponentially
# many times. A validation gets _BASE_STEPS checks; past that, _STEPS_PER_VALUE for each
# value in the input (counted only then), and past that the input is refused.
_BASE_STEPS = 100_000
_STEPS_PER_VALUE = 64


class _TooComplex(Exception):
    pass


class _Budget:
    """Checks left for one validation, shared by the trial validators of unions."""

    __slots__ = ("extended", "left", "value")

    def __init__(self, value: Any) -> None:
        self.left = _BASE_STEPS
        self.value = value
        self.extended = False

    def spend(self) -> None:
        """Called when ``left`` drops below zero: allow more for a big input, or refuse."""
        if self.extended:
            raise _TooComplex
        self.extended = True
        self.left = _STEPS_PER_VALUE * _count_values(self.value) - _BASE_STEPS
        if self.left < 0:
            raise _TooComplex


def _count_values(value: Any) -> int:
    count = 0
    stack = [value]
    while stack:
        current = stack.pop()
        count += 1
        if isinstance(current, dict):
            stack.extend(current.values())
        elif isinstance(current, (list, tuple)):
            stack.extend(current)
    return count


class _Validator:
    def __init__(self, root: Any, limit: int, budget: _Budget) -> None:
        self.root = root
        self.limit = limit
        self.budget = budget
        self.issues: list[Issue] = []

    def fork(self) -> _Validator:
        return _Validator(self.root, self.limit, self.budget)

    def add(self, path: _Path, message: str) -> None:
        if len(self.issues) < self.limit:
            self.issues.append(Issue(format_path(path), message))

    def full(self) -> bool:
        return len(self.issues) >= self.limit

    def check(self, value: Any, schema: Any, path: _Path, depth: int) -> None:
        if schema is True or self.full():
            return
        budget = self.budget
        budget.left -= 1
        if budget.left < 0:
            budget.spend()
        if schema is False:
            self.add(path, "no value is allowed here")
            return
        if not isinstance(schema, dict):
            return  # not a schema: nothing to check against
        if depth > MAX_NESTING:
            self.add(path, f"nested too deeply to validate (over {MAX_NESTING} levels)")
            return
        kind = _kind(value)
        if kind is None:
            self.add(path, f"not a JSON value (a Python {type(value).__name__})")
            return
        if kind == "number" and not math.isfinite(value):
            self.add(path, _non_finite(value))
            return
        ref = schema.get("$ref")
        if isinstance(ref, str):
            target = self.resolve(ref)
            if target is _UNRESOLVED:
                self.add(path, f"schema error: cannot resolve $ref {ref!r}")
            else:
                self.check(value, target, path, depth + 1)
            if len(schema) == 1:
                return
        expected = schema.get("type")
        if expected is not None and not _type_ok(value, kind, expected):
            wanted = _describe_type(expected) + _format_note(schema)
            self.add(path, f"expected {wanted}, got {_describe(value, kind)}")
            return  # further keywords would only repeat the mismatch
        if "const" in schema and not _equal(value, schema["const"], MAX_NESTING - depth):
            self.add(path, f"must be {_preview(schema['const'])}")
            return
        choices = schema.get("enum")
        if isinstance(choices, list) and choices:
            frozen = _freeze_or_none(value, MAX_NESTING - depth)
            if frozen is None or not any(
                _freeze_or_none(c, MAX_NESTING - depth) == frozen for c in choices
            ):
                self.add(path, f"must be one of {_list_preview(choices)}")
                return
        if kind == "string":
            self.check_string(value, schema, path)
        elif kind == "integer" or kind == "number":
            self.check_number(value, schema, path)
        elif kind == "array":
            self.check_array(value, schema, path, depth)
        elif kind == "object":
            self.check_object(value, schema, path, depth)
        all_of = schema.get("allOf")
        if isinstance(all_of, list):
            for sub in all_of:
                self.check(value, sub, path, depth + 1)
        any_of = schema.get("anyOf")
        if isinstance(any_of, list) and any_of:
            self.check_any_of(value, kind, any_of, path, depth)
        one_of = schema.get("oneOf")
        if isinstance(one_of, list) and one_of:
            self.check_one_of(value, kind, one_of, schema.get("discriminator"), path, depth)

    def resolve(self, ref: str) -> Any:
        if ref == "#":
            return self.root
        if not ref.startswith("#/"):
            return _UNRESOLVED
        node = self.root
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            else:
                return _UNRESOLVED
        return node

    def check_size(
        self, size: int, schema: dict[str, Any], keyword: str, verb: str, unit: str, path: _Path
    ) -> None:
        """``min<keyword>``/``max<keyword>``: "must be at least 3 characters long, got 1"."""
        low = schema.get(f"min{keyword}")
        if _is_int(low) and size < low:
            self.add(path, f"must {verb} at least {low} {unit}, got {size}")
        high = schema.get(f"max{keyword}")
        if _is_int(high) and size > high:
            self.add(path, f"must {verb} at most {high} {unit}, got {size}")

    def check_string(self, value: str, schema: dict[str, Any], path: _Path) -> None:
        self.check_size(len(value), schema, "Length", "be", "characters long", path)
        pattern = schema.get("pattern")
        if isinstance(pattern, str):
            matches = _pattern_test(pattern)
            if matches is not None and not matches(value):
                self.add(path, _pattern_message(pattern, value))
        fmt = schema.get("format")
        if isinstance(fmt, str):
            checker = _FORMATS.get(fmt)
            if checker is not None and not checker(value):
                message = f"must be a valid {fmt} ({_FORMAT_EXAMPLES[fmt]})"
                if fmt in ("date", "date-time") and UNIX_TIME_TEXT.fullmatch(value):
                    message += "; digits alone are not read as a date or a Unix time"
                self.add(path, message)

    def check_number(self, value: float, schema: dict[str, Any], path: _Path) -> None:
        low = schema.get("minimum")
        high = schema.get("maximum")
        ex_low = schema.get("exclusiveMinimum")
        ex_high = schema.get("exclusiveMaximum")
        if ex_low is True and is_number(low):  # draft 4: a flag on minimum
            ex_low, low = low, None
        if ex_high is True and is_number(high):
            ex_high, high = high, None
        if is_number(low) and value < low:
            self.add(path, f"must be >= {low}, got {value}")
        if is_number(high) and value > high:
            self.add(path, f"must be <= {high}, got {value}")
        if is_number(ex_low) and value <= ex_low:
            self.add(path, f"must be > {ex_low}, got {value}")
        if is_number(ex_high) and value >= ex_high:
            self.add(path, f"must be < {ex_high}, got {value}")
        step = schema.get("multipleOf")
        if is_number(step) and step > 0 and not _is_multiple(value, step):
            self.add(path, f"must be a multiple of {step}, got {value}")

    def check_array(self, value: Any, schema: dict[str, Any], path: _Path, depth: int) -> None:
        count = len(value)
        self.check_size(count, schema, "Items", "have", "items", path)
        if schema.get("uniqueItems") is True and count > 1:
            self.check_unique(value, path, depth)
        prefix = schema.get("prefixItems")
        items = schema.get("items")
        if prefix is None and isinstance(items, list):  # the older tuple form
            prefix, items = items, schema.get("additionalItems")
        start = 0
        if isinstance(prefix, list):
            for i, (item, sub) in enumerate(zip(value, prefix, strict=False)):
                self.check(item, sub, (path, i), depth + 1)
                if self.full():
                    return
            start = len(prefix)
        if items is None or items is True or count <= start:
            return
        if items is False:
            self.add(path, f"must have at most {start} items, got {count}")
            return
        quick = _plain_type_test(items)
        if quick is not None and start == 0 and _plain_kinds(items, value):
            return
        for i in range(start, count):
            item = value[i]
            if quick is not None and quick(item):
                continue
            self.check(item, items, (path, i), depth + 1)
            if self.full():
                return

    def check_unique(self, value: Any, path: _Path, depth: int) -> None:
        seen: dict[Any, int] = {}
        for i, item in enumerate(value):
            frozen = _freeze_or_none(item, MAX_NESTING - depth)
            if frozen is None:
                self.add(path, f"nested too deeply to validate (over {MAX_NESTING} levels)")
                return
            first = seen.setdefault(frozen, i)
            if first != i:
                self.add((path, i), f"duplicates item {first}; items must be unique")
                return

    def check_object(
        self, value: dict[Any, Any], schema: dict[str, Any], path: _Path, depth: int
    ) -> None:
        properties = schema.get("properties")
        if not isinstance(properties, dict):
            properties = {}
        required = schema.get("required")
        if isinstance(required, list):
            for name in required:
                if isinstance(name, str) and name not in value:
                    self.add((path, name), "field required")
        patterns = schema.get("patternProperties")
        if not isinstance(patterns, dict):
            patterns = {}
        extra = schema.get("additionalProperties")
        names = schema.get("propertyNames")
        for key, item in value.items():
            if self.full():
                return
            where = (path, key)
            if names is not None and isinstance(key, str):
                self.check_name(key, names, where, depth + 1)
            sub = properties.get(key, _UNRESOLVED) if isinstance(key, str) else _UNRESOLVED
            if sub is not _UNRESOLVED:
                self.check(item, sub, where, depth + 1)
                continue
            matched = False
            for pattern, pattern_schema in patterns.items():
                matches = _pattern_test(pattern) if isinstance(pattern, str) else None
                if matches is not None and isinstance(key, str) and matches(key):
                    matched = True
                    self.check(item, pattern_schema, where, depth + 1)
            if matched or extra is None or extra is True:
                continue
            if extra is False:
                allowed = ", ".join(sorted(k for k in properties if isinstance(k, str))[:20])
                self.add(where, f"unexpected field (allowed: {allowed or 'none'})")
            else:
                self.check(item, extra, where, depth + 1)
        self.check_size(len(value), schema, "Properties", "have", "fields", path)

    def check_name(self, key: str, names: Any, path: _Path, depth: int) -> None:
        """Check an object key against ``propertyNames``. JSON keys are always text, so a
        number-looking key also counts as that number: the schema of ``dict[IntEnum, ...]``
        says ``{"type": "integer", "enum": [1, 2]}`` of keys that arrive as ``"1"``."""
        as_text = self.fork()
        as_text.check(key, names, path, depth)
        number = _key_number(key)
        # Only a schema that takes numbers reads the key as one: a number would pass a
        # pattern meant for the text (``dict[int, ...]``'s) unchecked.
        numeric = number is not None and self.admits(names, _kind(number) or "number", depth)
        if not as_text.issues or not numeric:
            self.add_key_issues(as_text.issues)
            return
        as_number = self.fork()
        as_number.check(number, names, path, depth)
        self.add_key_issues(as_number.issues)

    def add_key_issues(self, issues: list[Issue]) -> None:
        """The problems of a key, said to be the key's: its path is also its value's."""
        for issue in issues:
            if self.full():
                return
            said = issue.message
            self.issues.append(
                issue._replace(message=f"key {said}" if said.startswith("must") else f"key: {said}")
            )

    def check_any_of(
        self, value: Any, kind: str, branches: list[Any], path: _Path, depth: int
    ) -> None:
        failures = []
        for branch in branches:
            trial = self.fork()
            trial.check(value, branch, path, depth + 1)
            if not trial.issues:
                return
            failures.append((branch, trial.issues))
        self.report_union(value, kind, failures, path, depth)

    def check_one_of(
        self,
        value: Any,
        kind: str,
        branches: list[Any],
        discriminator: Any,
        path: _Path,
        depth: int,
    ) -> None:
        if kind == "object" and isinstance(discriminator, dict):
            prop = discriminator.get("propertyName")
            mapping = discriminator.get("mapping")
            if isinstance(prop, str) and isinstance(mapping, dict) and mapping:
                tags = _list_preview(sorted(k for k in mapping if isinstance(k, str)))
                if prop not in value:
                    self.add((path, prop), f"field required (one of {tags}, picks the variant)")
                    return
                tag = value[prop]
                target = mapping.get(tag) if isinstance(tag, str) else None
                if not isinstance(target, str):
                    self.add((path, prop), f"must be one of {tags}, got {_preview(tag)}")
                    return
                self.check(value, {"$ref": target}, path, depth + 1)
                return
        failures = []
        matches = 0
        for branch in branches:
            trial = self.fork()
            trial.check(value, branch, path, depth + 1)
            if trial.issues:
                failures.append((branch, trial.issues))
            else:
                matches += 1
        if matches == 1:
            return
        if matches > 1:
            self.add(path, "matches more than one of the allowed variants; it must match one")
            return
        self.report_union(value, kind, failures, path, depth)

    def report_union(
        self,
        value: Any,
        kind: str,
        failures: list[tuple[Any, list[Issue]]],
        path: _Path,
        depth: int,
    ) -> None:
        # The variants of the value's own type say what is wrong inside it; the fewest
        # problems is the closest match. When no variant has its type, list what would do.
        fitting = [f for f in failures if self.admits(f[0], kind, depth) is not False]
        if fitting:
            best = min(fitting, key=lambda f: len(f[1]))[1]
            for issue in best:
                if self.full():
                    return
                self.issues.append(issue)
            return
        wanted = []
        for branch, _ in failures:
            text = self.describe_schema(branch)
            if text not in wanted:
                wanted.append(text)
        self.add(path, f"expected {' or '.join(wanted)}, got {_describe(value, kind)}")

    def admits(self, schema: Any, kind: str, depth: int) -> bool | None:
        """Whether ``schema`` takes values of ``kind`` at all; None when it cannot tell."""
        if depth > MAX_NESTING or not isinstance(schema, dict):
            return schema is not False
        expected = schema.get("type")
        if expected is not None:
            names = [expected] if isinstance(expected, str) else expected
            if isinstance(names, list):
                numeric = kind in ("integer", "number")
                return any(n == kind or (numeric and n in ("integer", "number")) for n in names)
        if "const" in schema:
            return _kind(schema["const"]) == kind or (
                kind in ("integer", "number") and _kind(schema["const"]) in ("integer", "number")
            )
        ref = schema.get("$ref")
        if isinstance(ref, str):
            target = self.resolve(ref)
            return None if target is _UNRESOLVED else self.admits(target, kind, depth + 1)
        for key in ("anyOf", "oneOf"):
            branches = schema.get(key)
            if isinstance(branches, list) and branches:
                answers = [self.admits(b, kind, depth + 1) for b in branches]
                return True if True in answers else (None if None in answers else False)
        return None

    def describe_schema(self, schema: Any, depth: int = 0) -> str:
        if not isinstance(schema, dict) or depth > 8:
            return "a value of another shape"
        ref = schema.get("$ref")
        if isinstance(ref, str):
            name = ref.rsplit("/", 1)[-1]
            target = self.resolve(ref)
            inner = self.describe_schema(target, depth + 1) if target is not _UNRESOLVED else ""
            return f"{name} ({inner})" if inner and inner != name else name
        if "const" in schema:
            return _preview(schema["const"])
        choices = schema.get("enum")
        if isinstance(choices, list) and choices:
            return f"one of {_list_preview(choices)}"
        expected = schema.get("type")
        if expected is not None:
            return _describe_type(expected)
        for key in ("anyOf", "oneOf"):
            branches = schema.get(key)
            if isinstance(branches, list) and branches:
                return " or ".join(self.describe_schema(b, depth + 1) for b in branches)
        return "a value of another shape"


def _kind(value: Any) -> str | None:
    kind = _KINDS.get(type(value))
    if kind is not None:
        return kind
    for base, name in (
        (bool, "boolean"),
        (int, "integer"),
        (float, "number"),
        (str, "string"),
        (list, "array"),
        (tuple, "array"),
        (dict, "object"),
    ):
        if isinstance(value, base):
            return name
    return None


def _type_ok(value: Any, kind: str, expected: Any) -> bool:
    if isinstance(expected, str):
        return _one_type_ok(value, kind, expected)
    if isinstance(expected, list):
        names = [n for n in expected if isinstance(n, str)]
        return not names or any(_one_type_ok(value, kind, n) for n in names)
    return True


def _one_type_ok(value: Any, kind: str, name: str) -> bool:
    if name == kind:
        return True
    if name == "number":
        return kind == "integer"
    if name == "integer":  # JSON Schema: 1.0 is an integer
        return kind == "number" and float(value).is_integer()
    return False


def _plain_type_test(schema: Any) -> Callable[[Any], bool] | None:
    """A fast yes-test for item schemas that only state a type (most lists are such)."""
    if not isinstance(schema, dict) or not isinstance(schema.get("type"), str):
        return None
    if any(key != "type" and key not in _ANNOTATIONS for key in schema):
        return None
    return _PLAIN_TESTS.get(schema["type"])


def _plain_kinds(schema: dict[str, Any], value: Any) -> bool:
    """Whether every item's exact type fits the plain type schema (one pass at C speed)."""
    allowed = _PLAIN_KINDS.get(schema["type"])
    if allowed is None:
        return False
    kinds = set(map(type, value))
    if not kinds <= allowed:
        return False
    if float not in kinds:
        return True
    # A finite sum proves every float finite (NaN and inf survive addition); otherwise, an
    # overflow included, the item by item check names the offending one.
    try:
        return math.isfinite(sum(value))
    except OverflowError:
        return False


def _non_finite(value: float) -> str:
    if math.isnan(value):
        return "NaN is not a JSON number"
    return (
        f"{'-' if value < 0 else ''}Infinity is not a JSON number (a number this large, "
        "such as 1e400, is beyond the range of a 64-bit float)"
    )


_PLAIN_KINDS: dict[str, frozenset[type]] = {
    "number": frozenset({int, float}),
    "integer": frozenset({int}),
    "string": frozenset({str}),
    "boolean": frozenset({bool}),
    "null": frozenset({type(None)}),
}
_PLAIN_TESTS: dict[str, Callable[[Any], bool]] = {
    "number": lambda x: (type(x) is float and x - x == 0) or type(x) is int,
    "integer": lambda x: type(x) is int,
    "string": lambda x: type(x) is str,
    "boolean": lambda x: type(x) is bool,
    "null": lambda x: x is None,
}


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


_KEY_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


def _key_number(key: str) -> int | float | None:
    """The number a JSON object key spells (as JSON would write it), or None."""
    if len(key) > 400 or not _KEY_NUMBER.fullmatch(key):
        return None
    if key.lstrip("-").isdigit():
        return int(key)
    number = float(key)
    return number if math.isfinite(number) else None


def is_number(value: Any) -> TypeGuard[float]:
    """A JSON number: an int or a float, not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_multiple(value: float, step: float) -> bool:
    if isinstance(value, int) and isinstance(step, int):
        return value % step == 0
    try:
        quotient = value / step
    except (OverflowError, ZeroDivisionError):
        return True  # beyond float range: no honest answer, so no complaint
    if not math.isfinite(quotient):
        return True
    return abs(quotient - round(quotient)) <= 1e-9 * max(1.0, abs(quotient))


def _freeze(value: Any, budget: int) -> Any:
    """A hashable form where JSON-equal values are equal (1 == 1.0, True != 1)."""
    if budget < 0:
        raise _TooDeep
    kind = type(value)
    if kind is bool:
        return ("b", value)
    if kind is int or kind is float:
        return ("n", value)
    if kind is str:
        return ("s", value)
    if value is None:
        return ("z",)
    if isinstance(value, (list, tuple)):
        return ("a", tuple([_freeze(item, budget - 1) for item in value]))
    if isinstance(value, dict):
        return (
            "o",
            frozenset([(str(k), _freeze(v, budget - 1)) for k, v in value.items()]),
        )
    if isinstance(value, bool):
        return ("b", bool(value))
    if isinstance(value, (int, float)):
        return ("n", value)
    if isinstance(value, str):
        return ("s", str(value))
    return ("?", id(value))


def _freeze_or_none(value: Any, budget: int) -> Any:
    try:
        return _freeze(value, budget)
    except _TooDeep:
        return None


def _equal(value: Any, expected: Any, budget: int) -> bool:
    frozen = _freeze_or_none(value, budget)
    return frozen is not None and frozen == _freeze_or_none(expected, budget)


# A schema's ``pattern`` is run by a linear-time engine, never by Python's backtracking
# ``re``: a pattern such as ``^(\w+\s?)*$`` takes time exponential in the value's length there,
# and one call would pin the worker. The engine is pydantic's own (pydantic-core's Rust regex,
# without backtracking), which pydantic also checks the pattern of a constrained field with:
# the schema's patterns come from pydantic, and whatever carries one (``Field(pattern=...)``,
# a ``json_schema_extra``) imported pydantic into this worker. The build's patterns for
# number-keyed dicts are ours, checked by ``re`` (anchored, no nested repetition: linear).
# A pattern that engine refuses (a lookaround, a backreference: what only ``regex_engine=
# "python-re"`` lets pydantic take, and then pydantic checks it itself) or any pattern with
# no such engine loaded is not ours to reject values for: unchecked rather than unbounded.
_PATTERNS: dict[tuple[str, bool], Callable[[str], bool] | None] = {}


def _pattern_test(pattern: str) -> Callable[[str], bool] | None:
    """Whether a text matches ``pattern`` anywhere (JSON Schema's sense), in time linear in
    the text's length; None when no such test is at hand."""
    known = _KEY_PATTERN_TESTS.get(pattern)
    if known is not None:
        return known
    core = sys.modules.get("pydantic_core")  # as for conversion: only when already loaded
    cache_key = (pattern, core is not None)
    if cache_key not in _PATTERNS:
        _PATTERNS[cache_key] = None if core is None else _linear_test(core, pattern)
        if len(_PATTERNS) > 1024:
            _PATTERNS.clear()
    return _PATTERNS.get(cache_key)


def _search_test(compiled: re.Pattern[str]) -> Callable[[str], bool]:
    return lambda text: compiled.search(text) is not None


def _linear_test(core: Any, pattern: str) -> Callable[[str], bool] | None:
    try:
        validator = core.SchemaValidator(
            {"type": "str", "pattern": pattern, "regex_engine": "rust-regex"}
        )
    except Exception:  # pydantic-core's SchemaError: not a pattern its engine takes
        return None

    def matches(text: str) -> bool:
        try:
            return bool(validator.isinstance_python(text))
        except Exception:  # text the engine cannot read (a lone surrogate) matches nothing
            return False

    return matches


def _format_note(schema: dict[str, Any]) -> str:
    """`` (duration, for example PT1S)`` for a schema with a format we have an example of:
    a type mismatch then says what text to send (a number is no duration)."""
    fmt = schema.get("format")
    return f" ({fmt}, {_FORMAT_EXAMPLES[fmt]})" if fmt in _FORMAT_EXAMPLES else ""


def _pattern_message(pattern: str, value: str) -> str:
    known = KEY_PATTERNS.get(pattern)
    if known is None:
        return f"must match the pattern {pattern!r}"
    return f"must be {known[0]} (for example {known[1]}), got {_preview(value)}"


def _describe_type(expected: Any) -> str:
    if isinstance(expected, list):
        names = [n for n in expected if isinstance(n, str)]
        return " or ".join(names) if names else "a value"
    return str(expected)


def _describe(value: Any, kind: str) -> str:
    if kind in ("array", "object", "null"):  # "null", not "null null"
        return kind
    return f"{kind} {_preview(value)}"


def _preview(value: Any, limit: int = 40) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _list_preview(values: list[Any], limit: int = 10) -> str:
    shown = ", ".join(_preview(v) for v in values[:limit])
    return shown + (f", ... ({len(values)} in all)" if len(values) > limit else "")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


# Formats are checked loosely: never stricter than pydantic, which converts the value after.
_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_TIME = re.compile(r"(\d{2}):(\d{2})(?::(\d{2})(?:[.,]\d{1,9})?)?(?:[Zz]|[+-]\d{2}(?::?\d{2})?)?")
# Numeric text, which pydantic would read as Unix time where a date or date-time is expected:
# the RFC 3339 formats the schema publishes refuse it ("20240102" is not 1970-08-23).
UNIX_TIME_TEXT = re.compile(r"[+-]?\d+(?:\.\d+)?")
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:\S*")
_SPACE = re.compile(r"\s")


def _is_email(text: str) -> bool:
    """The rule ``[^@\\s]+@[^@\\s]+\\.[^@\\s]+`` (whole text), tested in linear time: as a
    regex it backtracks quadratically ("a@" then many dots then "@": 28 s at 100,000).
    No whitespace, one "@" with text before it, and a "." inside what follows it (neither
    its first nor its last character)."""
    local, at, domain = text.partition("@")
    return (
        bool(local and at)
        and "@" not in domain
        and "." in domain[1:-1]
        and _SPACE.search(text) is None
    )


def _is_date(text: str) -> bool:
    match = _DATE.fullmatch(text)
    if match is None:
        return False
    try:
        datetime.date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:
        return False
    return True


def _is_time(text: str) -> bool:
    match = _TIME.fullmatch(text)
    return (
        match is not None
        and int(match[1]) < 24
        and int(match[2]) < 60
        and (match[3] is None or int(match[3]) <= 60)  # 60: a leap second
    )


def _is_datetime(text: str) -> bool:
    if len(text) == 10:
        return _is_date(text)
    return len(text) > 11 and text[10] in "Tt " and _is_date(text[:10]) and _is_time(text[11:])


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def _is_ip(version: int) -> Callable[[str], bool]:
    def check(text: str) -> bool:
        try:
            return ipaddress.ip_address(text).version == version
        except ValueError:
            return False

    return check


_FORMATS: dict[str, Callable[[str], bool]] = {
    "date-time": _is_datetime,
    "date": _is_date,
    "time": _is_time,
    "uuid": _is_uuid,
    "email": _is_email,
    "ipv4": _is_ip(4),
    "ipv6": _is_ip(6),
    "uri": lambda text: bool(_URI.fullmatch(text)),
}
# A valid value of each format, for error messages and for the examples of /docs.
FORMAT_EXAMPLES = {
    "date-time": "2024-05-01T12:00:00Z",
    "date": "2024-05-01",
    "time": "12:00:00",
    "uuid": "123e4567-e89b-12d3-a456-426614174000",
    "email": "ada@example.com",
    "ipv4": "192.0.2.1",
    "ipv6": "2001:db8::1",
    "uri": "https://example.com/path",
    "duration": "PT1S",  # not checked here; pydantic reads it (a timedelta)
}
_FORMAT_EXAMPLES = {name: f"for example {value}" for name, value in FORMAT_EXAMPLES.items()}

# The patterns the build gives the keys of a dict keyed by integers, floats or decimals (JSON
# keys are text; pydantic's schema says nothing of them), with what they are called and a
# key each takes. flash.sdk.json_rule writes the same patterns (it cannot import this).
_DIGITS = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
KEY_PATTERNS: dict[str, tuple[str, str]] = {
    r"^[+-]?[0-9]+$": ("an integer", "0"),
    # As Python writes a float key (inf, nan), and JavaScript (Infinity, NaN).
    rf"^[+-]?(?:{_DIGITS}|inf|Infinity|nan|NaN)$": ("a number", "0.5"),
    rf"^[+-]?{_DIGITS}$": ("a decimal number", "0.5"),
}
# Anchored, and each repetition over characters the part after it cannot start with: linear
# under ``re``, so checked as before on a worker without pydantic.
_KEY_PATTERN_TESTS: dict[str, Callable[[str], bool]] = {
    pattern: _search_test(re.compile(pattern)) for pattern in KEY_PATTERNS
}
