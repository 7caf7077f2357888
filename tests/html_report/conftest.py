"""Reports from real runs (graphopt.runner on the samples and on tiny models on disk, onnxruntime validation on)
for the HTML report's tests, made once per session: a run costs about a second."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnx.helper as oh
import pytest

from graphopt.pipeline import PipelineConfig
from graphopt.report import ModelReport, Report
from graphopt.runner import Job, run_job
from graphopt.testing import from_text, snapshot
from graphopt.validate import ValidateOptions

ROOT = Path(__file__).resolve().parents[2]

# user text that must come out as text: markup, entities, both quotes, and Graphviz's escapes (\N is a node's name)
NODE_NAME = '<b>id</b> & "q" \'s\' \\N'
VALUE_NAME = 'v<i>&"\'\\G'
FILE_NAME = 'we<ird> & "x".onnx'
JUNK_NAME = 'bad <script>&"junk".onnx'


@dataclass
class Runs:
    folder: Path
    cnn: ModelReport             # optimize samples/cnn.onnx: fusions, folding, validation with latency
    transformer: ModelReport     # check samples/transformer.onnx: repeated changes, LayerNormalization fusion
    nasty: ModelReport           # optimize a model whose names are full of markup
    junk: ModelReport            # check a file that is not a model
    clean: ModelReport           # check a model graphopt does not change
    demo: ModelReport            # optimize DEMO: the README's picture

    def optimize(self) -> Report:
        return Report("optimize", [self.cnn])

    def check(self) -> Report:
        return Report("check", [self.transformer, self.junk, self.clean])


def nasty_model() -> onnx.ModelProto:
    x = oh.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 4])
    y = oh.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 4])
    nodes = [oh.make_node("Relu", ["x"], [VALUE_NAME], name="relu \\N"),
             oh.make_node("Identity", [VALUE_NAME], ["t"], name=NODE_NAME),
             oh.make_node("Neg", ["t"], ["y"], name="neg")]
    return oh.make_model(oh.make_graph(nodes, "g <&>", [x], [y]), opset_imports=[oh.make_opsetid("", 17)])


# the README's picture: a small CNN head whose every change fits in one screen
DEMO = """<ir_version: 8, opset_import: ["" : 17]>
demo (float[batch, 3, 16, 16] image) => (float[batch, 10] logits) {
  conv = Conv <pads = [1, 1, 1, 1]> (image, conv_w)
  bn = BatchNormalization (conv, bn_scale, bn_bias, bn_mean, bn_var)
  act = Relu(bn)
  pool = GlobalAveragePool(act)
  drop = Dropout(pool)
  flat = Flatten(drop)
  fc = MatMul(flat, fc_w)
  logits = Add(fc, fc_b)
}"""


def demo_inits() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(20261126)
    return {"conv_w": rng.standard_normal((8, 3, 3, 3)).astype(np.float32),
            "bn_scale": rng.uniform(0.5, 1.5, 8).astype(np.float32),
            "bn_bias": rng.standard_normal(8).astype(np.float32),
            "bn_mean": rng.standard_normal(8).astype(np.float32), "bn_var": rng.uniform(0.5, 2, 8).astype(np.float32),
            "fc_w": rng.standard_normal((8, 10)).astype(np.float32), "fc_b": rng.standard_normal(10).astype(np.float32)}


CLEAN = oh.make_model(oh.make_graph([oh.make_node("Relu", ["x"], ["y"], name="relu")], "clean",
                                    [oh.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["N", 4])],
                                    [oh.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 4])]),
                      opset_imports=[oh.make_opsetid("", 17)])


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    d = tmp_path_factory.mktemp("html")
    shutil.copy(ROOT / "samples" / "cnn.onnx", d / "cnn.onnx")
    onnx.save(nasty_model(), str(d / FILE_NAME))
    onnx.save(CLEAN, str(d / "clean.onnx"))
    (d / JUNK_NAME).write_bytes(b"not a model")
    (d / "demo.onnx").write_bytes(snapshot(from_text(DEMO, demo_inits())))
    vopts = ValidateOptions(trials=2, bench_runs=3)

    def job(command: str, path: Path, out: Path | None = None) -> ModelReport:
        return run_job(Job(command, str(path), PipelineConfig(), output=None if out is None else str(out),
                           vopts=vopts, graph_diff=True))

    cwd = os.getcwd()
    os.chdir(d)   # the README's picture shows the paths as a user types them
    try:
        demo = job("optimize", Path("demo.onnx"), Path("demo.opt.onnx"))
    finally:
        os.chdir(cwd)
    return Runs(d, cnn=job("optimize", d / "cnn.onnx", d / "cnn.opt.onnx"),
                transformer=job("check", ROOT / "samples" / "transformer.onnx"),
                nasty=job("optimize", d / FILE_NAME, d / "nasty.opt.onnx"),
                junk=job("check", d / JUNK_NAME), clean=job("check", d / "clean.onnx"), demo=demo)
