"""Reports from real runs (graphopt.runner on the samples and on tiny models on disk, onnxruntime validation on)
for the HTML report's tests, made once per session: a run costs about a second."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import onnx
import onnx.helper as oh
import pytest

from graphopt.pipeline import PipelineConfig
from graphopt.report import ModelReport, Report
from graphopt.runner import Job, run_job
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
    vopts = ValidateOptions(trials=2, bench_runs=3)

    def job(command: str, path: Path, out: Path | None = None) -> ModelReport:
        return run_job(Job(command, str(path), PipelineConfig(), output=None if out is None else str(out),
                           vopts=vopts, graph_diff=True))

    return Runs(d, cnn=job("optimize", d / "cnn.onnx", d / "cnn.opt.onnx"),
                transformer=job("check", ROOT / "samples" / "transformer.onnx"),
                nasty=job("optimize", d / FILE_NAME, d / "nasty.opt.onnx"),
                junk=job("check", d / JUNK_NAME), clean=job("check", d / "clean.onnx"))
