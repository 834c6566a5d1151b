"""What users type, into config terms: short keyword names for the Python API, and durations.

Example:
    >>> resolve_config("photos", epochs=2).train.epochs
    2
    >>> parse_duration("1h30m")
    5400.0
"""
from __future__ import annotations

import dataclasses
import re
import typing
from pathlib import Path
from typing import Any

from imgclf.config import RunConfig, load_config
from imgclf.errors import ImgclfError


def _short_keys() -> dict[str, str]:
    """Map each config leaf's own name (``epochs``) to its dotted key (``train.epochs``)."""
    keys: dict[str, str] = {}

    def walk(cls, prefix):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if dataclasses.is_dataclass(hints[f.name]):
                walk(hints[f.name], f"{prefix}{f.name}.")
            else:
                keys.setdefault(f.name, f"{prefix}{f.name}")
    walk(RunConfig, "")
    return keys


def resolve_config(data: str | Path | None = None, config: str | Path | None = None,
                   **overrides: Any) -> RunConfig:
    """Defaults <- YAML file <- keyword overrides (short names like ``epochs`` or dotted keys).

    Example:
        >>> resolve_config("photos", epochs=2).train.epochs
        2
    """
    short = _short_keys()
    dotted = {}
    for key, value in overrides.items():
        key = key.replace("__", ".")
        if "." not in key and key not in short:
            raise ImgclfError(f"unknown option '{key}' (valid: {', '.join(sorted(short))})")
        dotted[short.get(key, key)] = value
    if data is not None:
        dotted["data.path"] = str(data)
    return load_config(config, dotted)


_UNITS = {"s": 1, "m": 60, "h": 3600}


def parse_duration(text: str | float | int, what: str = "--budget") -> float:
    """Seconds from ``90s``, ``10m``, ``1h``, ``1h30m``, ``2.5m`` or a bare number of seconds.

    Example:
        >>> parse_duration("1h30m"), parse_duration("90")
        (5400.0, 90.0)
    """
    raw = str(text).strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", raw):
        seconds = float(raw)
    elif raw and re.fullmatch(r"(\d+(\.\d+)?[hms])+", raw):
        seconds = sum(float(n) * _UNITS[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)([hms])", raw))
    else:
        raise ImgclfError(f"{what} {text}: expected a duration such as 90s, 10m or 1h")
    if seconds <= 0:
        raise ImgclfError(f"{what} {text}: must be more than 0 seconds")
    return seconds
