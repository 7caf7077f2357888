"""Pipeline configuration: presets, config files, flags.

Precedence: flags beat the config file, the config file beats the preset. The config file is given with
``--config FILE.toml`` or found as ``[tool.graphopt]`` in the nearest pyproject.toml (searched upward from the
current folder). Keys, in the file's table or at the top level of a graphopt.toml::

    preset = "O2"               # O0, O1, O2, O3
    passes = ["dce", "cse"]     # exactly these, in this order (overrides the preset)
    skip = ["fuse"]             # removed from the preset
    max-rounds = 8              # fixed-point iteration bound
    strict = false
    annotate-shapes = false     # write the inferred shapes into the model's value_info
    [options.fold-constants]    # per-pass options (also `[tool.graphopt.options.fold-constants]`)
    max-output-bytes = 1048576

Unknown pass names and options are usage errors with a did-you-mean hint.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError
from .jit.registry import PassRegistry, did_you_mean

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PRESETS = ("O0", "O1", "O2", "O3")
DEFAULT_PRESET = "O2"
DEFAULT_MAX_ROUNDS = 8

# The order passes run in within a round; passes not listed (plugins) run after these, in registration order.
PIPELINE_ORDER = [
    "optimize-functions",
    "simplify-control-flow",
    "fold-constants",
    "simplify-shapes",
    "eliminate-noops",
    "fuse",
    "cse",
    "dce",
]

_FILE_KEYS = {"preset", "passes", "skip", "max-rounds", "max_rounds", "strict", "options", "annotate-shapes",
              "annotate_shapes"}


@dataclass
class PipelineConfig:
    """Which passes run, in what order, with what options."""

    preset: str = DEFAULT_PRESET
    passes: list[str] | None = None
    skip: list[str] = field(default_factory=list)
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    max_rounds: int = DEFAULT_MAX_ROUNDS
    strict: bool = False
    verify_each: bool = False
    # write the symbol table's inferred types into value_info after the passes (off: the output declares what
    # the input declared, and -O0 writes the input back byte for byte)
    annotate_shapes: bool = False
    sources: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        return d


def _norm(name: str) -> str:
    return name.replace("_", "-")


def preset_passes(preset: str, registry: PassRegistry) -> list[str]:
    """The pass names of a preset, in pipeline order."""
    p = preset.upper().lstrip("-")
    if not p.startswith("O"):
        p = "O" + p
    if p not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}", hint="use one of -O0, -O1, -O2, -O3")
    if p == "O0":
        return []
    members = [n for n in registry.names() if p in getattr(registry.get(n), "presets", ())]
    order = {n: i for i, n in enumerate(PIPELINE_ORDER)}
    return sorted(members, key=lambda n: (order.get(n, len(order)), registry.names().index(n)))


def parse_value(text: str, like: Any) -> Any:
    """Parse a --set value to the type of the option's default `like`."""
    t = text.strip()
    if isinstance(like, bool):
        low = t.lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise ValueError(f"expected true or false, got {text!r}")
    if isinstance(like, int):
        m = re.fullmatch(r"(-?\d+(?:\.\d+)?)\s*([kmg])?(?:i?b)?", t.lower())
        if m is None:
            return int(t, 0)  # also 0x.. literals; raises ValueError on junk
        mult = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}.get(m.group(2) or "", 1)
        return int(float(m.group(1)) * mult)
    if isinstance(like, float):
        return float(t)
    if isinstance(like, (list, tuple)):
        return [x.strip() for x in t.split(",") if x.strip()]
    if like is None:
        for conv in (int, float):
            try:
                return conv(t)
            except ValueError:
                pass
        return t
    return t


def find_pyproject(start: str | None = None) -> str | None:
    """The nearest pyproject.toml with a [tool.graphopt] table, searching upward from `start` (default: cwd)."""
    d = os.path.abspath(start or os.getcwd())
    while True:
        p = os.path.join(d, "pyproject.toml")
        if os.path.isfile(p):
            try:
                with open(p, "rb") as f:
                    data = tomllib.load(f)
            except (OSError, tomllib.TOMLDecodeError):
                data = {}
            if "graphopt" in data.get("tool", {}):
                return p
        parent = os.path.dirname(d)
        if parent == d:
            return None
        d = parent


def read_config_file(path: str) -> dict[str, Any]:
    """The graphopt settings in a TOML file: its [tool.graphopt] table, else its top level."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError as e:
        raise ConfigError(f"config file {path!r} not found", path=path) from e
    except OSError as e:
        raise ConfigError(f"config file {path!r} cannot be read: {e.strerror}", path=path) from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path!r} is not valid TOML: {e}", path=path,
                          hint="fix the TOML syntax") from e
    section = data.get("tool", {}).get("graphopt")
    if section is None:
        section = data.get("graphopt", data if os.path.basename(path) != "pyproject.toml" else {})
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: [tool.graphopt] must be a table", path=path)
    unknown = [k for k in section if k not in _FILE_KEYS]
    if unknown:
        raise ConfigError(f"{path}: unknown setting {unknown[0]!r}", path=path,
                          hint=did_you_mean(unknown[0], sorted(_FILE_KEYS - {"max_rounds", "annotate_shapes"})))
    return section


def build_config(*, preset: str | None = None, passes: list[str] | None = None, skip: list[str] | None = None,
                 sets: list[str] | None = None, options: dict[str, dict[str, Any]] | None = None,
                 max_rounds: int | None = None, strict: bool | None = None, config_path: str | None = None,
                 use_pyproject: bool = True, cwd: str | None = None,
                 annotate_shapes: bool | None = None) -> PipelineConfig:
    """Merge preset defaults, a config file (explicit or the nearest pyproject.toml) and flags."""
    cfg = PipelineConfig()
    path = config_path
    if path is None and use_pyproject:
        path = find_pyproject(cwd)
    if path is not None:
        section = read_config_file(path)
        cfg.sources.append(path)
        if "preset" in section:
            cfg.preset = str(section["preset"])
        if "passes" in section:
            cfg.passes = [_norm(str(x)) for x in _as_list(section["passes"], "passes", path)]
        if "skip" in section:
            cfg.skip = [_norm(str(x)) for x in _as_list(section["skip"], "skip", path)]
        mr = section.get("max-rounds", section.get("max_rounds"))
        if mr is not None:
            cfg.max_rounds = int(mr)
        if "strict" in section:
            cfg.strict = bool(section["strict"])
        ann = section.get("annotate-shapes", section.get("annotate_shapes"))
        if ann is not None:
            cfg.annotate_shapes = bool(ann)
        for pname, opts in (section.get("options") or {}).items():
            if not isinstance(opts, dict):
                raise ConfigError(f"{path}: options.{pname} must be a table", path=path)
            cfg.options.setdefault(_norm(pname), {}).update({_norm(k): v for k, v in opts.items()})
    if preset is not None:
        cfg.preset = preset
        cfg.sources.append("flags")
    if passes is not None:
        cfg.passes = [_norm(p) for p in passes]
    if skip:
        cfg.skip = list(dict.fromkeys(cfg.skip + [_norm(s) for s in skip]))
    if max_rounds is not None:
        cfg.max_rounds = max_rounds
    if strict is not None:
        cfg.strict = strict
    if annotate_shapes is not None:
        cfg.annotate_shapes = annotate_shapes
    for pname, opts in (options or {}).items():
        cfg.options.setdefault(_norm(pname), {}).update({_norm(k): v for k, v in opts.items()})
    for s in sets or []:
        if "=" not in s or "." not in s.split("=", 1)[0]:
            raise ConfigError(f"--set {s!r}: expected PASS.OPTION=VALUE", hint="e.g. --set fold-constants.max-output-bytes=4M")
        key, val = s.split("=", 1)
        pname, oname = key.split(".", 1)
        cfg.options.setdefault(_norm(pname.strip()), {})[_norm(oname.strip())] = _Raw(val)
    if cfg.max_rounds < 1:
        raise ConfigError("max-rounds must be at least 1")
    return cfg


class _Raw(str):
    """A --set value still in text form; parsed against the option's type when the pass is built."""


def _as_list(v: Any, key: str, path: str) -> list[Any]:
    if isinstance(v, str):
        return [x.strip() for x in v.split(",") if x.strip()]
    if isinstance(v, list):
        return v
    raise ConfigError(f"{path}: {key} must be a list of pass names", path=path)


def resolve(cfg: PipelineConfig, registry: PassRegistry) -> list[Any]:
    """Pass instances for `cfg`: validates names and options (did-you-mean hints), applies options."""
    if cfg.passes is not None:
        names = list(cfg.passes)
    else:
        names = preset_passes(cfg.preset, registry)
    for n in names + cfg.skip:
        if n not in registry:
            raise ConfigError(f"unknown pass {n!r}", hint=did_you_mean(n, registry.names()))
    names = [n for n in names if n not in set(cfg.skip)]
    for pname in cfg.options:
        if pname not in registry:
            raise ConfigError(f"options for unknown pass {pname!r}", hint=did_you_mean(pname, registry.names()))
    out = []
    for n in names:
        cls = registry.get(n)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        # options the preset implies (e.g. fuse's level at O3); the config file and flags override them
        preset_key = cfg.preset.upper().lstrip("-")
        preset_key = preset_key if preset_key.startswith("O") else "O" + preset_key
        kw: dict[str, Any] = dict(getattr(cls, "preset_options", {}).get(preset_key, {}))
        for oname, val in cfg.options.get(n, {}).items():
            fname = oname.replace("-", "_")
            if fname not in fields:
                raise ConfigError(f"pass {n!r} has no option {oname!r}",
                                  hint=did_you_mean(oname, [f.replace("_", "-") for f in fields]) or
                                  f"{n!r} takes no options")
            f = fields[fname]
            default = f.default if f.default is not dataclasses.MISSING else None
            if isinstance(val, _Raw):
                try:
                    val = parse_value(str(val), default)
                except ValueError as e:
                    raise ConfigError(f"--set {n}.{oname}: {e}") from e
            kw[fname] = val
        out.append(cls(**kw))
    return out
