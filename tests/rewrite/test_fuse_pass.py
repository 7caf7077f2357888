"""The fuse pass (presets, levels, options), the samples end to end, and `graphopt explain`."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

from graphopt.errors import ConfigError, PassError
from graphopt.ir import serde
from graphopt.jit import init
from graphopt.pipeline import build_config
from graphopt.testing import assert_same_outputs, assert_valid, count_ops, from_text, snapshot

from .test_rules_gelu_layernorm import ERF_FORMS, gelu_model
from .util import fuse

SAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "samples")


def fuse_pass(preset: str, **options: object) -> object:
    cfg = build_config(preset=preset, options={"fuse": dict(options)} if options else None, use_pyproject=False)
    ctx = init(None, cfg, plugins=False)
    (p,) = [p for p in ctx.pipeline if p.name == "fuse"]
    return p


def test_presets_set_the_level() -> None:
    assert fuse_pass("O2").level == "portable"
    assert fuse_pass("O3").level == "aggressive"
    # the user's own option beats the preset's
    assert fuse_pass("O3", level="portable").level == "portable"
    assert "fuse" not in [p.name for p in init(None, build_config(preset="O1", use_pyproject=False),
                                               plugins=False).pipeline]


def test_unknown_level_and_rule_names_are_config_errors() -> None:
    m = from_text(gelu_model("y = Relu(x)")[0])
    with pytest.raises(ConfigError, match="unknown level 'fast'"):
        fuse_pass("O2", level="fast")
    # rule names are known only to the context's registry: checked when the pass runs
    with pytest.raises(PassError, match=r"unknown rule 'fuse-conv-bm' \(did you mean 'fuse-conv-bn'"):
        fuse(m, ["fuse-conv-bm"])


def test_skip_rules() -> None:
    text, inits = gelu_model(ERF_FORMS["hf"][0], consts=ERF_FORMS["hf"][1])
    m = from_text(text, inits)
    assert fuse(m, skip_rules=("fuse-gelu-erf",)) == {}
    assert fuse(m) == {"rewrites": 1, "fuse-gelu-erf": 1}


@pytest.mark.parametrize("name,preset,expect", [
    ("cnn", "O2", {"fuse-conv-bn": 3, "fuse-matmul-add": 1}),
    ("transformer", "O2", {"fuse-layer-norm": 2, "fuse-layer-norm-bias": 2}),
    ("transformer", "O3", {"fuse-layer-norm": 2, "fuse-layer-norm-bias": 2, "ort-gelu": 1, "ort-bias-gelu": 1,
                         "ort-fused-matmul": 1}),  # its Transpose input typed through the symbol table
])
def test_samples(name: str, preset: str, expect: dict) -> None:
    m = serde.load(os.path.join(SAMPLES, f"{name}.onnx"))
    before = snapshot(m)
    stats = fuse(m, level=fuse_pass(preset).level)
    stats.pop("rewrites")
    assert stats == expect
    assert_valid(m)
    assert_same_outputs(before, m, bindings=[{"batch": 1, "seq": 3}, {"batch": 2, "seq": 7}], rtol=1e-4, atol=1e-4)
    assert fuse(m, level=fuse_pass(preset).level) == {}


def test_full_pipeline_o2_and_o3_on_the_transformer() -> None:
    """The fuse pass inside the real pipeline (with folding, shapes, cse, dce around it)."""
    from graphopt.api import run

    for preset in ("O2", "O3"):
        m = serde.load(os.path.join(SAMPLES, "transformer.onnx"))
        before = snapshot(m)
        res = run(m, preset=preset)
        fuse_stats = res.record.summary_by_pass()["fuse"]
        assert not fuse_stats["rolled_back"], fuse_stats["error"]
        assert count_ops(m)["LayerNormalization"] == 2
        assert_same_outputs(before, m, bindings=[{"batch": 2, "seq": 5}], rtol=1e-4, atol=1e-4)


# ----------------------------------------------------------------------------------------------------------------
def _cli(args: list[str]) -> object:
    from graphopt.cli.main import main

    return CliRunner().invoke(main, args, catch_exceptions=False)


CONV_BN_SHARED = """
<ir_version: 8, opset_import: ["" : 17]>
g (float[N, 3, 6, 6] x) => (float[N, 4, 6, 6] y, float[N, 4, 6, 6] z, float[N, 4, 6, 6] y2) {
  c = Conv (x, w)
  y = BatchNormalization (c, s, bb, mu, var)
  z = Conv (x, w)
  c2 = Conv (x, w2)
  y2 = BatchNormalization (c2, s, bb, mu, var)
}
"""


def _write(tmp_path: object, rng: np.random.Generator) -> str:
    inits = {"w": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
             "w2": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
             "s": np.ones(4, np.float32), "bb": np.zeros(4, np.float32), "mu": np.zeros(4, np.float32),
             "var": np.ones(4, np.float32)}
    path = os.path.join(str(tmp_path), "m.onnx")
    serde.save(from_text(CONV_BN_SHARED.replace("(x, w)", "<pads = [1, 1, 1, 1]> (x, w)").replace(
        "(x, w2)", "<pads = [1, 1, 1, 1]> (x, w2)"), inits), path)
    return path


def test_explain_command_says_why_a_rule_did_not_fire(tmp_path: object, rng: np.random.Generator) -> None:
    path = _write(tmp_path, rng)
    with open(path, "rb") as f:
        original = f.read()
    r = _cli(["explain", path, "fuse-conv-bn"])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert "1 of 2 candidate node(s) fused" in r.output
    assert any(ln.split()[0] == "no" and "BatchNormalization 'y':" in ln
               and "the conv weight 'w' is shared with Conv" in ln for ln in lines[2:]), r.output
    assert any(ln.split()[0] == "fired" and "BatchNormalization 'y2'" in ln for ln in lines[2:]), r.output
    with open(path, "rb") as f:
        assert f.read() == original  # explain writes nothing


def test_explain_command_json_and_errors(tmp_path: object, rng: np.random.Generator) -> None:
    path = _write(tmp_path, rng)
    r = _cli(["explain", path, "fuse-conv-bn", "--json"])
    data = json.loads(r.output)
    assert data["rule"] == "fuse-conv-bn" and data["fired"] == 1 and data["skipped"] is None
    reasons = [c["reason"] for c in data["candidates"] if not c["fired"]]
    assert len(reasons) == 1 and "is shared with Conv" in reasons[0]
    r = _cli(["explain", path, "fuse-gelu-erf"])
    assert "not applicable: the model's opset 17 is outside the rule's range (>= 20)" in r.output
    r = _cli(["explain", path, "fuse-layer-norm"])
    assert "no candidate: the model has no Mul node" in r.output
    r = _cli(["explain", path, "fuse-conv-bm"])
    assert r.exit_code == 2 and "did you mean 'fuse-conv-bn'" in r.output
    r = _cli(["explain", path, "--list", "--json"])
    names = [x["name"] for x in json.loads(r.output)["rules"]]
    assert "fuse-conv-bn" in names and "ort-fused-matmul" in names
