"""Inputs and outputs between job classes and JSON; never pickle.

A value is accepted at enqueue only if it survives the round trip
`Inputs -> dict -> JSON -> dict -> Inputs`, so a worker can always rebuild it.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import types
import typing
from typing import Any

from .exceptions import InvalidInputsError


@functools.cache
def _all_field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


def to_dict(value: Any) -> dict:
    """A dataclass or an object with `asdict()` as a plain dict (shallow)."""
    asdict = getattr(value, "asdict", None)
    if callable(asdict):
        data = asdict()
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        data = {name: getattr(value, name) for name in _all_field_names(type(value))}
    else:
        raise TypeError(f"{type(value).__name__} is neither a dataclass nor has asdict()")
    if not isinstance(data, dict):
        raise TypeError(f"{type(value).__name__}.asdict() returned {type(data).__name__}")
    return data


def _json_default(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


# One encoder for every call: json.dumps with options builds a new encoder each time,
# which costs more than encoding a small job's inputs.
_ENCODER = json.JSONEncoder(default=_json_default, separators=(",", ":"), allow_nan=False)


def dumps(data: Any) -> str:
    return _ENCODER.encode(data)


#: A JSON escape of NUL that is not itself an escaped backslash followed by "u0000".
_JSON_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def has_nul(text: str) -> bool:
    """Does this JSON text hold a NUL character? PostgreSQL's jsonb refuses one."""
    # The cheap test first: only text that mentions the escape pays for the exact one.
    return "\\u0000" in text and _JSON_NUL.search(text) is not None


@functools.cache
def _field_names(cls: type) -> frozenset[str] | None:
    # Cached per class: enqueue and execution ask for every job.
    if dataclasses.is_dataclass(cls):
        return frozenset(f.name for f in dataclasses.fields(cls) if f.init)
    return None


def _accepted_types(hint: Any) -> tuple[type, ...] | None:
    """The runtime types a simple annotation accepts; None where we do not judge."""
    if hint in (int, str, bool, dict, list):
        return (hint,)
    if hint is float:
        return (int, float)
    origin = typing.get_origin(hint)
    if origin in (list, dict):
        return (origin,)
    if origin in (typing.Union, types.UnionType):
        accepted: tuple[type, ...] = ()
        for arg in typing.get_args(hint):
            one = (type(None),) if arg is type(None) else _accepted_types(arg)
            if one is None:
                return None
            accepted += one
        return accepted
    return None


@functools.cache
def _field_types(cls: type) -> dict[str, tuple[type, ...]]:
    """{field: accepted types} for the fields of a dataclass with simple annotations."""
    if not dataclasses.is_dataclass(cls):
        return {}
    try:
        hints = typing.get_type_hints(cls)
    except Exception:  # an annotation we cannot resolve: leave the field unjudged
        return {}
    out = {}
    for f in dataclasses.fields(cls):
        accepted = _accepted_types(hints.get(f.name))
        if accepted is not None:
            out[f.name] = accepted
    return out


def _check_types(job_name: str, cls: type, data: dict, what: str) -> None:
    for name, accepted in _field_types(cls).items():
        if name not in data:
            continue
        value = data[name]
        # bool is an int to Python, but a flag where a number belongs is a bug.
        wrong_bool = isinstance(value, bool) and bool not in accepted
        if wrong_bool or not isinstance(value, accepted):
            names = " or ".join("None" if t is type(None) else t.__name__ for t in accepted)
            raise InvalidInputsError(
                f"{job_name}: {what} field {name!r} must be {names}, "
                f"not {type(value).__name__} ({value!r})"
            )


def _bad_field(data: dict) -> str | None:
    for key, value in data.items():
        try:
            dumps(value)
        except (TypeError, ValueError):
            return key
    return None


def _check_field_names(job_name: str, cls: type, data: dict, what: str) -> frozenset[str] | None:
    """Refuse a key that is not a field of the dataclass `cls`; its fields, or None."""
    fields = _field_names(cls)
    if fields is not None:
        unknown = sorted(set(data) - fields)
        if unknown:
            raise InvalidInputsError(
                f"{job_name}: {what} field {unknown[0]!r} is not a field of "
                f"{job_name}.{cls.__name__} (fields: {', '.join(sorted(fields)) or 'none'})"
            )
    return fields


def encode(job_name: str, cls: type, value: Any, what: str = "inputs") -> tuple[dict, str]:
    """Check `value` against `cls`; return it as a dict and as JSON text."""
    if isinstance(value, cls):
        try:
            data = to_dict(value)
        except TypeError as exc:
            raise InvalidInputsError(f"{job_name}: {what} {exc}") from None
    elif isinstance(value, dict):
        data = value
    else:
        raise InvalidInputsError(
            f"{job_name}: {what} must be a {job_name}.{cls.__name__} or a dict, "
            f"not {type(value).__qualname__}"
        )
    fields = _check_field_names(job_name, cls, data, what)
    if fields is not None:
        _check_types(job_name, cls, data, what)
    try:
        text = dumps(data)
    except (TypeError, ValueError) as exc:
        field = _bad_field(data)
        raise InvalidInputsError(
            f"{job_name}: {what} field {field!r} cannot be stored as JSON: {exc}"
        ) from None
    if fields is None or not isinstance(value, cls):
        # Build it once from what JSON gives back: a missing or unknown field shows here.
        decode(job_name, cls, json.loads(text), what)
    return data, text


_SCALARS = frozenset({str, int, float, bool, type(None)})


def as_stored(data: dict, text: str) -> dict:
    """`data` as the database will hand it back: what `json.loads(text)` would give.

    Most inputs are flat (strings, numbers, flags), and a copy of those is already
    that; anything else takes the round trip through JSON (tuples become lists,
    nested dataclasses dicts, and so on).
    """
    scalars = _SCALARS
    for key, value in data.items():
        if type(key) is not str or type(value) not in scalars:
            return json.loads(text)
    return dict(data)


def decode(job_name: str, cls: type, data: Any, what: str = "inputs") -> Any:
    """Build `cls` from a dict read from the database, or say which field is wrong."""
    if not isinstance(data, dict):
        raise InvalidInputsError(
            f"{job_name}: stored {what} are {type(data).__name__}, not an object"
        )
    _check_field_names(job_name, cls, data, what)
    try:
        return cls(**data)
    except TypeError as exc:
        raise InvalidInputsError(
            f"{job_name}: {what} do not fit {job_name}.{cls.__name__}: {exc}"
        ) from None
