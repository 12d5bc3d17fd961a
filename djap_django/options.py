"""Checks of the flow-control options: on a job class when it is defined, on `create()`.

A wrong option fails where it is written, with the job and the attribute named: a
class option when the module that defines the job is imported (so at startup), an
option of `create()` before anything is written.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from . import periodic
from .exceptions import InvalidJobOptionError, JobDefinitionError
from .models import UNIQUE_KEY_MAX_LENGTH


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_unique_key(name: str, key: Any) -> str | None:
    if key is None:
        return None
    if isinstance(key, str) and 0 < len(key) <= UNIQUE_KEY_MAX_LENGTH:
        return key
    shown = repr(key) if len(repr(key)) <= 60 else repr(key)[:57] + "..."
    raise InvalidJobOptionError(
        f"{name}: unique_key must be a string of 1 to {UNIQUE_KEY_MAX_LENGTH} characters, "
        f"not {shown}"
    )


def check_max_attempts(name: str, value: Any) -> int | None:
    if value is None or (_is_int(value) and value >= 1):
        return value
    raise InvalidJobOptionError(f"{name}: max_attempts must be a whole number >= 1, not {value!r}")


def check_timeout(name: str, value: Any) -> float | None:
    if value is None or (_is_number(value) and value > 0):
        return value
    raise InvalidJobOptionError(f"{name}: timeout must be seconds > 0 or None, not {value!r}")


def _input_field_names(cls: Any) -> set[str] | None:
    inputs = cls.Inputs
    if inputs is not None and dataclasses.is_dataclass(inputs):
        return {f.name for f in dataclasses.fields(inputs)}
    return None  # an asdict() class: its keys are known only per value


def _check_unique_fields(cls: Any) -> None:
    fields = cls.unique_fields
    where = f"{cls.__module__}.{cls.__qualname__}.unique_fields"
    if isinstance(fields, str) or not isinstance(fields, tuple | list):
        raise JobDefinitionError(f"{where} must be a tuple of Inputs field names, not {fields!r}")
    if not fields:
        return
    if cls.Inputs is None:
        raise JobDefinitionError(f"{where} names fields, but {cls.__name__} declares no Inputs")
    known = _input_field_names(cls)
    unknown = [f for f in fields if not isinstance(f, str) or (known and f not in known)]
    if unknown:
        raise JobDefinitionError(
            f"{where} names {unknown!r}, which are not fields of {cls.__name__}.Inputs "
            f"({', '.join(sorted(known or ()))})"
        )


def check_class(cls: Any) -> None:
    """Raise JobDefinitionError for a wrong flow-control class option of `cls`."""
    _check_unique_fields(cls)
    periodic.check_class(cls)


def key_from_inputs(cls: Any, inputs: Any) -> str:
    """The unique key of `unique_fields`: their values as JSON, hashed if too long."""
    data = inputs if isinstance(inputs, dict) else {}
    parts = {f: data.get(f) for f in cls.unique_fields}
    key = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    if len(key) > UNIQUE_KEY_MAX_LENGTH:
        key = "sha256:" + hashlib.sha256(key.encode()).hexdigest()
    return key
