"""Pass and rule registries. Instances live in a JitContext, never at module level, so that two contexts with
different registries can coexist in one process."""

from __future__ import annotations

import difflib
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .manager import Pass

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "graphopt.passes"


@dataclass(frozen=True)
class PassEntry:
    cls: type
    origin: str  # "builtin" or "plugin:<entry point name>"


class PassRegistry:
    """Pass classes by name, in registration order."""

    def __init__(self) -> None:
        self._entries: dict[str, PassEntry] = {}

    def register(self, cls: type[Pass], *, origin: str = "builtin", replace: bool = False) -> None:
        name = getattr(cls, "name", "")
        if not name:
            raise ValueError(f"{cls.__name__} has no pass name")
        if name in self._entries and not replace:
            raise ValueError(f"a pass named {name!r} is already registered ({self._entries[name].origin})")
        self._entries[name] = PassEntry(cls, origin)

    def unregister(self, name: str) -> None:
        self._entries.pop(name, None)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def names(self) -> list[str]:
        return list(self._entries)

    def get(self, name: str) -> type[Pass]:
        e = self._entries.get(name)
        if e is None:
            from ..errors import ConfigError

            raise ConfigError(f"unknown pass {name!r}", hint=did_you_mean(name, self._entries))
        return e.cls  # type: ignore[return-value]

    def origin(self, name: str) -> str:
        return self._entries[name].origin

    def create(self, name: str, **options: Any) -> Pass:
        cls = self.get(name)
        return cls(**options)

    def entries(self) -> list[tuple[str, PassEntry]]:
        return list(self._entries.items())


class RuleRegistry:
    """Rewrite rules, indexed by the op type of their pattern's root."""

    def __init__(self) -> None:
        self._rules: dict[str, Any] = {}
        self._by_op: dict[str, list[Any]] = {}
        self._origin: dict[str, str] = {}

    def register(self, rule: Any, *, origin: str = "builtin", replace: bool = False) -> None:
        name = rule.name
        if name in self._rules and not replace:
            raise ValueError(f"a rule named {name!r} is already registered")
        if name in self._rules:
            self.unregister(name)
        self._rules[name] = rule
        self._origin[name] = origin
        for op in rule.root_ops():
            self._by_op.setdefault(op, []).append(rule)

    def unregister(self, name: str) -> None:
        rule = self._rules.pop(name, None)
        if rule is None:
            return
        for op in rule.root_ops():
            lst = self._by_op.get(op, [])
            if rule in lst:
                lst.remove(rule)

    def for_op(self, op_type: str) -> list[Any]:
        return self._by_op.get(op_type, [])

    def __len__(self) -> int:
        return len(self._rules)

    def __contains__(self, name: object) -> bool:
        return name in self._rules

    def get(self, name: str) -> Any:
        r = self._rules.get(name)
        if r is None:
            from ..errors import ConfigError

            raise ConfigError(f"unknown rule {name!r}", hint=did_you_mean(name, self._rules))
        return r

    def all(self) -> list[Any]:
        return list(self._rules.values())

    def names(self) -> list[str]:
        return list(self._rules)


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    choices = list(choices)
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.5)
    if close:
        return "did you mean " + " or ".join(repr(c) for c in close) + "?"
    return "known: " + ", ".join(sorted(choices)) if choices else ""


def load_plugins(ctx: Any, entry_points: Iterable[Any] | None = None) -> tuple[list[str], list[str]]:
    """Register the passes that installed packages declare in the ``graphopt.passes`` entry-point group.

    An entry point may name a Pass subclass, a list of them, or a callable ``register(ctx)``. A plugin that fails to
    import or to register is reported as a warning naming it; the others still load. Returns (loaded, warnings).
    """
    from .manager import Pass

    if entry_points is None:
        from importlib.metadata import entry_points as _eps

        entry_points = _eps(group=ENTRY_POINT_GROUP)
    loaded: list[str] = []
    warnings: list[str] = []
    for ep in sorted(entry_points, key=lambda e: e.name):
        try:
            obj = ep.load()
            origin = f"plugin:{ep.name}"
            if isinstance(obj, type) and issubclass(obj, Pass):
                ctx.passes.register(obj, origin=origin)
            elif isinstance(obj, (list, tuple)):
                for cls in obj:
                    ctx.passes.register(cls, origin=origin)
            elif callable(obj):
                obj(ctx)
            else:
                raise TypeError(f"entry point gives {type(obj).__name__}, not a Pass class or register(ctx)")
            loaded.append(ep.name)
        except Exception as e:  # noqa: BLE001 - a broken plugin must not stop the run
            msg = f"plugin {ep.name!r} ({getattr(ep, 'value', '?')}) failed to load: {type(e).__name__}: {e}"
            warnings.append(msg)
            log.warning(msg)
    return loaded, warnings


def resolve_ref(ref: str) -> Any:
    """The object a ``"package.module:attr"`` reference names (the form entry points use)."""
    import importlib

    mod_name, _, attr = ref.partition(":")
    obj: Any = importlib.import_module(mod_name)
    for part in attr.split(".") if attr else ():
        obj = getattr(obj, part)
    return obj
