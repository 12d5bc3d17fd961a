"""Inputs and outputs between job classes and JSON; never pickle.

A value is accepted at enqueue only if it survives the round trip
`Inputs -> dict -> JSON -> dict -> Inputs`, so a worker can always rebuild it.
"""

from __future__ import annotations

import dataclasses
import functools
import json
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


@functools.cache
def _field_names(cls: type) -> frozenset[str] | None:
    # Cached per class: enqueue and execution ask for every job.
    if dataclasses.is_dataclass(cls):
        return frozenset(f.name for f in dataclasses.fields(cls) if f.init)
    return None


def _bad_field(data: dict) -> str | None:
    for key, value in data.items():
        try:
            dumps(value)
        except (TypeError, ValueError):
            return key
    return None


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
            f"not {type(value).__name__}"
        )
    fields = _field_names(cls)
    if fields is not None:
        unknown = sorted(set(data) - fields)
        if unknown:
            raise InvalidInputsError(
                f"{job_name}: {what} field {unknown[0]!r} is not a field of "
                f"{job_name}.{cls.__name__} (fields: {', '.join(sorted(fields)) or 'none'})"
            )
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


def decode(job_name: str, cls: type, data: Any, what: str = "inputs") -> Any:
    """Build `cls` from a dict read from the database, or say which field is wrong."""
    if not isinstance(data, dict):
        raise InvalidInputsError(
            f"{job_name}: stored {what} are {type(data).__name__}, not an object"
        )
    fields = _field_names(cls)
    if fields is not None:
        unknown = sorted(set(data) - fields)
        if unknown:
            raise InvalidInputsError(
                f"{job_name}: {what} field {unknown[0]!r} is not a field of "
                f"{job_name}.{cls.__name__}"
            )
    try:
        return cls(**data)
    except TypeError as exc:
        raise InvalidInputsError(
            f"{job_name}: {what} do not fit {job_name}.{cls.__name__}: {exc}"
        ) from None
