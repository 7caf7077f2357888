"""The reproducibility record: how graphopt made a model, kept in the model itself.

``graphopt optimize`` (and :func:`graphopt.optimize_file` / :func:`graphopt.optimize`) writes one entry into the
model's ``metadata_props``, under the key :data:`RECORD_KEY` (``"graphopt"``), whose value is compact JSON::

    {"options":{"fold-constants.max-output-bytes":4194304,"skip":["fuse"]},
     "passes_changed":["fold-constants","eliminate-noops","dce"],"preset":"O2","version":"0.1.0"}

- ``version``: graphopt's version; ``preset``: ``"O0"``..``"O3"``, or null when ``--passes`` chose the passes;
- ``passes_changed``: the passes that changed something, in the order they first ran;
- ``options``: only what differs from the preset's defaults: ``passes`` and ``skip`` (pass lists), ``max-rounds``,
  and each pass option as ``"PASS.OPTION"`` (the ``--set`` spelling);
- ``disabled`` (only when not empty): passes that validation found guilty of a mismatch and took out.

No timestamp, no host, no path, sorted keys: the same input and options give the same bytes (house rule 9). A run
that changes nothing keeps the record the model already has, so optimizing an optimized model is a fixed point,
byte for byte. ``--no-metadata`` leaves the record out (and drops one the input had: it would describe another
run).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping
from typing import Any

from .ir.core import Model
from .pipeline import DEFAULT_MAX_ROUNDS, PipelineConfig

RECORD_KEY = "graphopt"


def _preset_key(preset: str) -> str:
    p = preset.upper().lstrip("-")
    return p if p.startswith("O") else "O" + p


def non_default_options(config: PipelineConfig, pipeline: Iterable[Any]) -> dict[str, Any]:
    """What of `config` and the resolved pass instances `pipeline` differs from the preset's defaults."""
    out: dict[str, Any] = {}
    if config.passes is not None:
        out["passes"] = list(config.passes)
    if config.skip:
        out["skip"] = list(config.skip)
    if config.max_rounds != DEFAULT_MAX_ROUNDS:
        out["max-rounds"] = config.max_rounds
    preset = _preset_key(config.preset)
    for p in pipeline:
        implied = dict(getattr(type(p), "preset_options", {}).get(preset, {}))
        for f in dataclasses.fields(p):
            if f.name in implied:
                default = implied[f.name]
            elif f.default is not dataclasses.MISSING:
                default = f.default
            elif f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            else:  # pragma: no cover - every pass option has a default
                continue
            value = getattr(p, f.name)
            if value != default:
                out[f"{p.name}.{f.name.replace('_', '-')}"] = value
    return out


def make_record(*, config: PipelineConfig, pipeline: Iterable[Any], passes_changed: Iterable[str],
                disabled: Iterable[str] = ()) -> dict[str, Any]:
    """The record of one run, as data."""
    from .version import __version__

    rec: dict[str, Any] = {
        "version": __version__,
        "preset": None if config.passes is not None else _preset_key(config.preset),
        "passes_changed": list(dict.fromkeys(passes_changed)),
        "options": non_default_options(config, pipeline),
    }
    disabled = list(disabled)
    if disabled:
        rec["disabled"] = disabled
    return rec


def encode(record: Mapping[str, Any]) -> str:
    """The record's metadata value: compact JSON with sorted keys (deterministic)."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def stamp(model: Model, record: Mapping[str, Any], *, changed: bool) -> None:
    """Write `record` into the model's metadata_props, unless the run changed nothing: then the model is written
    as it came, byte for byte (-O0 is a true round trip), and a record it already has still says how it was made
    (rewriting it would make a re-run change the file)."""
    if not changed:
        return
    model.metadata_props[RECORD_KEY] = encode(record)


def read_record(metadata_props: Mapping[str, str]) -> dict[str, Any] | None:
    """The record in `metadata_props`, as data; None when there is none. A value that is not a JSON object (a
    record from something else) comes back as ``{"raw": value}``."""
    value = metadata_props.get(RECORD_KEY)
    if value is None:
        return None
    try:
        data = json.loads(value)
    except ValueError:
        data = None
    return data if isinstance(data, dict) else {"raw": value}


def describe(record: Mapping[str, Any]) -> str:
    """One line for people: ``graphopt 0.1.0 -O2; changed by fold-constants, dce; options skip=fuse``."""
    if "raw" in record and len(record) == 1:
        return f"(not a graphopt record) {record['raw']}"
    preset = record.get("preset")
    parts = [f"graphopt {record.get('version', '?')} " + (f"-{preset}" if preset else "custom pipeline")]
    changed = record.get("passes_changed") or []
    parts.append("changed by " + ", ".join(map(str, changed)) if changed else "no pass changed anything")
    opts = record.get("options") or {}
    if opts:
        parts.append("options " + " ".join(
            f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in opts.items()))
    if record.get("disabled"):
        parts.append("disabled " + ", ".join(map(str, record["disabled"])))
    return "; ".join(parts)
