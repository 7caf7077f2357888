"""Pipeline configuration: presets, config files, pyproject.toml, flags, and their precedence."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from graphopt.errors import ConfigError
from graphopt.jit.registry import PassRegistry
from graphopt.passes.base import Pass, PassResult, option
from graphopt.pipeline import PIPELINE_ORDER, PipelineConfig, build_config, parse_value, preset_passes, resolve


def _pass(pname: str, presets: set[str]) -> type[Pass]:
    @dataclass(frozen=True)
    class P(Pass):
        name = pname
        kind = "cleanup"
        summary = f"test pass {pname}"
        limit: int = option(10, "a limit")
        enabled: bool = option(True, "a switch")
        ratio: float = option(0.5, "a ratio")

        def run(self, model, ctx):  # type: ignore[no-untyped-def]
            return PassResult()

    P.presets = frozenset(presets)
    P.__name__ = P.__qualname__ = "P_" + pname.replace("-", "_")
    return P


@pytest.fixture
def registry() -> PassRegistry:
    r = PassRegistry()
    # registered out of pipeline order on purpose: presets follow PIPELINE_ORDER, plugins go last
    r.register(_pass("dce", {"O1", "O2", "O3"}))
    r.register(_pass("plugin-x", {"O2"}), origin="plugin:x")
    r.register(_pass("fold-constants", {"O2", "O3"}))
    r.register(_pass("fuse", {"O3"}))
    r.register(_pass("cse", {"O1", "O2", "O3"}))
    return r


def test_presets_membership_and_order(registry: PassRegistry) -> None:
    assert preset_passes("O0", registry) == []
    assert preset_passes("O1", registry) == ["cse", "dce"]
    assert preset_passes("O2", registry) == ["fold-constants", "cse", "dce", "plugin-x"]
    assert preset_passes("-O3", registry) == ["fold-constants", "fuse", "cse", "dce"]
    assert PIPELINE_ORDER.index("cse") < PIPELINE_ORDER.index("dce")
    with pytest.raises(ConfigError, match="unknown preset"):
        preset_passes("O9", registry)


def test_flags_passes_skip_and_set(registry: PassRegistry, tmp_path: Path) -> None:
    cfg = build_config(preset="O2", skip=["cse"], sets=["dce.limit=4k", "dce.enabled=false", "dce.ratio=0.25"],
                       cwd=str(tmp_path))
    ps = resolve(cfg, registry)
    assert [p.name for p in ps] == ["fold-constants", "dce", "plugin-x"]
    dce = ps[1]
    assert (dce.limit, dce.enabled, dce.ratio) == (4096, False, 0.25)
    cfg = build_config(passes=["cse", "dce", "cse"], cwd=str(tmp_path))
    assert [p.name for p in resolve(cfg, registry)] == ["cse", "dce", "cse"]


def test_unknown_names_are_usage_errors_with_hints(registry: PassRegistry, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        resolve(build_config(passes=["dcee"], cwd=str(tmp_path)), registry)
    assert e.value.exit_code == 2 and "dce" in e.value.hint
    with pytest.raises(ConfigError) as e:
        resolve(build_config(skip=["fold-constant"], cwd=str(tmp_path)), registry)
    assert "fold-constants" in e.value.hint
    with pytest.raises(ConfigError) as e:
        resolve(build_config(sets=["dce.limt=3"], cwd=str(tmp_path)), registry)
    assert "limit" in e.value.hint
    with pytest.raises(ConfigError):
        resolve(build_config(sets=["dce.limit=many"], cwd=str(tmp_path)), registry)
    with pytest.raises(ConfigError, match="PASS.OPTION=VALUE"):
        build_config(sets=["limit=3"], cwd=str(tmp_path))


def test_pyproject_is_found_upward_and_flags_beat_it(registry: PassRegistry, tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\n[tool.graphopt]\npreset = "O1"\nmax-rounds = 3\nskip = ["cse"]\n'
        '[tool.graphopt.options.dce]\nlimit = 7\n')
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    cfg = build_config(cwd=str(sub))
    assert cfg.sources == [str(tmp_path / "pyproject.toml")]
    ps = resolve(cfg, registry)
    assert [p.name for p in ps] == ["dce"] and ps[0].limit == 7 and cfg.max_rounds == 3
    cfg = build_config(preset="O2", max_rounds=5, sets=["dce.limit=9"], cwd=str(sub))
    ps = resolve(cfg, registry)
    assert [p.name for p in ps] == ["fold-constants", "dce", "plugin-x"]  # the file's skip still applies
    assert ps[1].limit == 9 and cfg.max_rounds == 5


def test_explicit_config_file_beats_pyproject(registry: PassRegistry, tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.graphopt]\npreset = "O1"\n')
    cfg_file = tmp_path / "graphopt.toml"
    cfg_file.write_text('passes = ["fuse", "dce"]\nstrict = true\n[options.fuse]\nratio = 0.75\n')
    cfg = build_config(config_path=str(cfg_file), cwd=str(tmp_path))
    ps = resolve(cfg, registry)
    assert [p.name for p in ps] == ["fuse", "dce"] and ps[0].ratio == 0.75 and cfg.strict
    assert cfg.sources == [str(cfg_file)]


def test_bad_config_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("preset = [unclosed\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        build_config(config_path=str(bad), cwd=str(tmp_path))
    typo = tmp_path / "typo.toml"
    typo.write_text('presett = "O1"\n')
    with pytest.raises(ConfigError) as e:
        build_config(config_path=str(typo), cwd=str(tmp_path))
    assert "preset" in e.value.hint
    with pytest.raises(ConfigError, match="not found"):
        build_config(config_path=str(tmp_path / "missing.toml"), cwd=str(tmp_path))


def test_no_pyproject_means_defaults(tmp_path: Path) -> None:
    cfg = build_config(cwd=str(tmp_path))
    assert cfg == PipelineConfig() or (cfg.preset, cfg.passes, cfg.skip) == ("O2", None, [])
    assert os.path.isdir(tmp_path)


@pytest.mark.parametrize("text,like,want", [
    ("1M", 1, 1 << 20), ("64k", 1, 65536), ("12", 1, 12), ("0x20", 1, 32), ("yes", True, True),
    ("off", True, False), ("1.5", 1.0, 1.5), ("a,b", [], ["a", "b"]), ("7", None, 7), ("x", "", "x"),
])
def test_parse_value(text: str, like: object, want: object) -> None:
    assert parse_value(text, like) == want
