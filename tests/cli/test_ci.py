"""CI everywhere: --shard K/N, check --junit-xml, the reproducibility record (metadata_props), user text that looks
like rich markup, and inspect on a directory."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import onnx
import pytest

from graphopt.files import select_shard, shard_key
from graphopt.provenance import RECORD_KEY, read_record
from graphopt.report import load_schema
from graphopt.version import __version__

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "samples"
JUNIT_XSD = ROOT / "tests" / "schemas" / "junit.xsd"


# ================================================================================================================
# --shard K/N
# ================================================================================================================
def _names(n: int) -> list[str]:
    dirs = ["", "models/", "models/vision/", "z/"]
    return [f"{dirs[i % len(dirs)]}m{i:02d}.onnx" for i in range(n)]


@pytest.mark.parametrize("n_shards", [1, 2, 3, 4, 7, 16])
@pytest.mark.parametrize("n_models", [0, 1, 5, 13])
def test_shards_cover_every_model_exactly_once(n_shards: int, n_models: int) -> None:
    paths = _names(n_models)
    shards = [select_shard(paths, k, n_shards) for k in range(1, n_shards + 1)]
    flat = [p for s in shards for p in s]
    assert sorted(flat) == sorted(paths)          # every model, none twice
    sizes = [len(s) for s in shards]
    assert max(sizes) - min(sizes) <= 1            # balanced: at most one model apart
    for s in shards:                               # each shard keeps the order given
        assert s == [p for p in paths if p in s]


def test_shards_do_not_depend_on_the_order_or_the_spelling_of_the_paths(tmp_path: Path) -> None:
    paths = _names(11)
    rng = random.Random(0)
    shuffled = paths[:]
    rng.shuffle(shuffled)
    spelled = [("./" + p) if i % 2 else str(tmp_path / p) for i, p in enumerate(shuffled)]
    for k in (1, 2, 3):
        a = set(select_shard(paths, k, 3, cwd=str(tmp_path)))
        b = {shard_key(p, str(tmp_path)) for p in select_shard(spelled, k, 3, cwd=str(tmp_path))}
        assert a == b


def test_the_split_is_fixed_by_the_relative_paths_alone(tmp_path: Path) -> None:
    # two CI machines check the repository out in different folders: the same relative paths, the same split,
    # and it is pinned here so that a change of the rule (which would reshuffle users' matrices) is deliberate
    paths = ["b.onnx", "a.onnx", "sub/c.onnx", "d.onnx", "sub/a.onnx"]
    for base in (tmp_path / "one", tmp_path / "two" / "deeper"):
        got = [select_shard(paths, k, 2, cwd=str(base)) for k in (1, 2)]
        # by path: a, b, d, sub/a, sub/c dealt out in turn; each shard lists its models in the order given
        assert got == [["a.onnx", "sub/c.onnx", "d.onnx"], ["b.onnx", "sub/a.onnx"]]


def test_a_model_named_twice_is_one_model() -> None:
    paths = ["a.onnx", "./a.onnx", "b.onnx"]
    shards = [select_shard(paths, k, 2) for k in (1, 2)]
    assert sorted(shard_key(p) for s in shards for p in s) == ["a.onnx", "b.onnx"]


@pytest.mark.parametrize("command", ["check", "optimize"])
@pytest.mark.parametrize("bad", ["0/4", "5/4", "2", "a/b", "1/0", "-1/3", "1/2/3", ""])
def test_a_bad_shard_is_a_usage_error(cli, clean_model: Path, command: str, bad: str) -> None:
    r = cli(command, str(clean_model), "--shard", bad)
    assert r.exit_code == 2, r.stdout + r.stderr
    assert r.stderr.startswith("error: --shard") and "K/N" in r.stderr and "Traceback" not in r.stderr


def test_shard_refuses_stdin_and_one_output(cli, clean_model: Path) -> None:
    r = cli("check", "-", "--shard", "1/2", input=clean_model.read_bytes())
    assert r.exit_code == 2 and "stdin" in r.stderr
    r = cli("optimize", str(clean_model), "-o", "out.onnx", "--shard", "1/2")
    assert r.exit_code == 2 and "--out-dir" in r.stderr


def _many_models(tmp_path: Path, n: int, add_model: Path, clean_model: Path) -> list[str]:
    (tmp_path / "models" / "deep").mkdir(parents=True)
    out = []
    for i in range(n):
        p = tmp_path / "models" / ("deep" if i % 2 else "") / f"m{i}.onnx"
        p.write_bytes((clean_model if i % 3 else add_model).read_bytes())
        out.append(str(p.relative_to(tmp_path)))
    return out


def test_check_shards_over_the_cli_cover_each_model_once(cli, tmp_path: Path, add_model: Path,
                                                         clean_model: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    models = _many_models(tmp_path, 5, add_model, clean_model)
    seen: list[str] = []
    for k in (1, 2, 3):
        r = cli("check", *models, "--shard", f"{k}/3", "--bench-runs", "0", "--trials", "1",
                "--report-json", f"r{k}.json", "--report-md", f"s{k}.md")
        assert r.exit_code == 0, r.stdout + r.stderr
        rep = json.loads((tmp_path / f"r{k}.json").read_text())
        jsonschema.validate(rep, load_schema())
        got = [m["input"] for m in rep["models"]]
        assert rep["shard"] == {"index": k, "count": 3, "models": len(got), "of": 5}
        assert f"shard {k}/3: {len(got)} of 5 model(s)" in r.stdout  # the summary table's title
        assert (tmp_path / f"s{k}.md").read_text().startswith(f"### graphopt check (shard {k}/3: {len(got)} of 5")
        seen.extend(got)
    assert sorted(seen) == sorted(models)
    r = cli("check", *models, "--bench-runs", "0", "--trials", "1", "--report-json", "all.json")
    assert json.loads((tmp_path / "all.json").read_text())["shard"] is None


def test_optimize_shard_writes_only_its_models(cli, tmp_path: Path, add_model: Path, clean_model: Path) -> None:
    models = _many_models(tmp_path, 4, add_model, clean_model)
    written: list[str] = []
    for k in (1, 2):
        out = tmp_path / f"out{k}"
        r = cli("optimize", *models, "--out-dir", str(out), "--shard", f"{k}/2", "--no-validate")
        assert r.exit_code == 0, r.stdout + r.stderr
        assert f"shard {k}/2: 2 of 4 model(s)" in r.stderr
        written.extend(p.name for p in out.iterdir())
    assert sorted(written) == sorted(os.path.basename(m) for m in models)


def test_an_empty_shard_is_not_an_error(cli, clean_model: Path) -> None:
    # a CI matrix wider than the list of models: the extra jobs have nothing to do, and say so
    r = cli("check", str(clean_model), "--shard", "2/2", "--junit-xml", "j.xml")
    assert r.exit_code == 0, r.stdout + r.stderr
    assert "shard 2/2: 0 of 1 model(s)" in r.stdout and "all models ok" in r.stdout
    assert 'tests="0"' in Path("j.xml").read_text()


# ================================================================================================================
# check --junit-xml
# ================================================================================================================
def _junit(path: Path) -> tuple[object, list[dict[str, object]]]:
    """Validate against tests/schemas/junit.xsd; the root element and the test cases as dicts."""
    import xml.etree.ElementTree as ET

    xmlschema = pytest.importorskip("xmlschema")
    xmlschema.XMLSchema(str(JUNIT_XSD)).validate(str(path))
    root = ET.parse(path).getroot()
    cases = []
    for c in root.iter("testcase"):
        d: dict[str, object] = dict(c.attrib)
        for kind in ("failure", "error", "skipped"):
            el = c.find(kind)
            if el is not None:
                d["result"], d["message"], d["text"] = kind, el.get("message"), el.text or ""
                d["type"] = el.get("type")
        d.setdefault("result", "passed")
        out = c.find("system-out")
        d["out"] = None if out is None else out.text
        cases.append(d)
    return root, cases


def test_junit_xml_one_case_per_model_and_valid_against_the_schema(cli, tmp_path: Path, clean_model: Path,
                                                                   add_model: Path, invalid_model: Path,
                                                                   custom_op_model: Path) -> None:
    models = [clean_model, add_model, invalid_model, custom_op_model]
    r = cli("check", *map(str, models), "--passes", "test-drop-identity", "--fail-if-optimizable",
            "--bench-runs", "0", "--junit-xml", "junit.xml")
    assert r.exit_code == 3  # the worst: invalid
    root, cases = _junit(tmp_path / "junit.xml")
    assert [c["name"] for c in cases] == [str(m) for m in models]
    assert all(c["classname"] == "graphopt.check" and float(str(c["time"])) >= 0 for c in cases)
    assert [c["result"] for c in cases] == ["passed", "failure", "failure", "skipped"]
    clean, add, invalid, custom = cases
    assert "already optimized" in str(clean["out"])
    assert add["type"] == "OptimizableError" and "would still change the model" in str(add["message"])
    assert "exit code 8" in str(add["text"])
    assert invalid["type"] == "InvalidModelError" and "\n" not in str(invalid["message"])
    assert "exit code 3" in str(invalid["text"]) and "hint: " in str(invalid["text"])
    assert str(custom["message"]).startswith("validation skipped: ") and "Frobnicate" in str(custom["message"])
    suite = root.find("testsuite")  # type: ignore[attr-defined]
    assert suite.get("tests") == "4" and suite.get("failures") == "2" and suite.get("skipped") == "1"
    assert suite.get("errors") == "0"
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props == {"graphopt.version": __version__, "graphopt.exit_code": "3"}


def test_junit_xml_a_run_that_could_not_judge_the_model_is_an_error(cli, tmp_path: Path, add_model: Path) -> None:
    # test-corrupt breaks the model in a way graphopt itself must catch: an internal error, not the model's fault
    r = cli("check", str(add_model), "--passes", "test-corrupt", "--junit-xml", "j.xml", "--shard", "1/1")
    assert r.exit_code == 5, r.stdout + r.stderr
    root, cases = _junit(tmp_path / "j.xml")
    assert cases[0]["result"] == "error" and "exit code 5" in str(cases[0]["text"])
    suite = root.find("testsuite")  # type: ignore[attr-defined]
    assert suite.get("errors") == "1" and suite.get("name") == "graphopt check (shard 1/1)"


def test_junit_xml_survives_hostile_names(cli, tmp_path: Path, clean_model: Path) -> None:
    weird = tmp_path / 'we<i>rd & "q" [bold]x.onnx'
    weird.write_bytes(clean_model.read_bytes())
    gone = tmp_path / "gone\x01\x1b[red].onnx"  # control characters XML 1.0 cannot hold
    r = cli("check", str(weird), str(gone), "--junit-xml", "j.xml", "--bench-runs", "0")
    assert r.exit_code == 3
    _root, cases = _junit(tmp_path / "j.xml")
    assert cases[0]["name"] == str(weird) and cases[0]["result"] == "passed"
    assert cases[1]["result"] == "failure" and "\\x01\\x1b[red].onnx" in str(cases[1]["name"])


def test_junit_xml_unwritable_is_an_output_error(cli, clean_model: Path, tmp_path: Path) -> None:
    r = cli("check", str(clean_model), "--junit-xml", str(tmp_path / "no" / "such" / "dir.xml"))
    assert r.exit_code == 6 and "cannot write the report" in r.stderr


# ================================================================================================================
# The reproducibility record
# ================================================================================================================
def _record(path: Path) -> dict[str, object] | None:
    m = onnx.load(str(path), load_external_data=False)
    return read_record({p.key: p.value for p in m.metadata_props})


def test_the_record_says_how_the_model_was_made(cli, tmp_path: Path) -> None:
    src = tmp_path / "cnn.onnx"
    src.write_bytes((SAMPLES / "cnn.onnx").read_bytes())
    r = cli("optimize", str(src), "--report-json", "r.json", "--bench-runs", "0")
    assert r.exit_code == 0, r.stdout + r.stderr
    rec = _record(tmp_path / "cnn.opt.onnx")
    rep = json.loads((tmp_path / "r.json").read_text())["models"][0]
    changed = [p["name"] for p in rep["passes"] if p["removed"] or p["added"] or p["rewritten"]]
    assert rec == {"version": __version__, "preset": "O2", "passes_changed": rec["passes_changed"], "options": {}}
    assert set(changed) <= set(rec["passes_changed"]) and rec["passes_changed"]  # type: ignore[arg-type]
    assert set(rec["passes_changed"]) <= set(rep["pipeline"]["passes"])  # type: ignore[arg-type]
    # compact, sorted JSON: the same bytes every time
    m = onnx.load(str(tmp_path / "cnn.opt.onnx"))
    assert [p.key for p in m.metadata_props] == [RECORD_KEY]
    value = m.metadata_props[0].value
    assert value == json.dumps(rec, sort_keys=True, separators=(",", ":"))


def test_the_record_keeps_only_options_that_differ_from_the_defaults(cli, tmp_path: Path) -> None:
    src = tmp_path / "cnn.onnx"
    src.write_bytes((SAMPLES / "cnn.onnx").read_bytes())
    r = cli("optimize", str(src), "-o", "a.onnx", "-O3", "--skip", "cse", "--set",
            "fold-constants.max-output-bytes=4M", "--max-rounds", "3", "--no-validate")
    assert r.exit_code == 0, r.stdout + r.stderr
    rec = _record(tmp_path / "a.onnx")
    assert rec is not None and rec["preset"] == "O3"
    # fuse's aggressive level is what -O3 implies: not an option that differs
    assert rec["options"] == {"skip": ["cse"], "max-rounds": 3, "fold-constants.max-output-bytes": 4 << 20}
    r = cli("optimize", str(src), "-o", "b.onnx", "--passes", "dce,eliminate-noops", "--no-validate")
    rec = _record(tmp_path / "b.onnx")
    assert rec is not None and rec["preset"] is None and rec["options"] == {"passes": ["dce", "eliminate-noops"]}
    assert rec["passes_changed"] == ["dce", "eliminate-noops"]  # in the order they first ran


def test_reoptimizing_is_a_fixed_point_and_check_says_already_optimized(cli, tmp_path: Path) -> None:
    src = tmp_path / "cnn.onnx"
    src.write_bytes((SAMPLES / "cnn.onnx").read_bytes())
    assert cli("optimize", str(src), "-o", "once.onnx", "--bench-runs", "0").exit_code == 0
    assert cli("optimize", str(src), "-o", "again.onnx", "--bench-runs", "0").exit_code == 0
    assert (tmp_path / "once.onnx").read_bytes() == (tmp_path / "again.onnx").read_bytes()  # deterministic
    r = cli("optimize", "once.onnx", "-o", "twice.onnx", "--bench-runs", "0", "--report-json", "r.json")
    assert r.exit_code == 0 and not json.loads(Path("r.json").read_text())["models"][0]["changed"]
    assert (tmp_path / "twice.onnx").read_bytes() == (tmp_path / "once.onnx").read_bytes()
    r = cli("check", "once.onnx", "--fail-if-optimizable", "--bench-runs", "0")
    assert r.exit_code == 0, r.stdout
    assert "already optimized" in r.stdout


def test_a_run_that_changes_nothing_writes_the_model_as_it_came(cli, clean_model: Path, tmp_path: Path) -> None:
    # graphopt made nothing: no record is added, the output is the input byte for byte (-O0 is a true round trip)
    r = cli("optimize", str(clean_model), "-o", "a.onnx", "--no-validate")
    assert r.exit_code == 0
    assert _record(tmp_path / "a.onnx") is None
    assert (tmp_path / "a.onnx").read_bytes() == clean_model.read_bytes()
    cli("optimize", "a.onnx", "-o", "b.onnx", "--no-validate", "-O1")
    assert (tmp_path / "b.onnx").read_bytes() == (tmp_path / "a.onnx").read_bytes()


def test_no_metadata_leaves_the_record_out(cli, tmp_path: Path) -> None:
    src = tmp_path / "cnn.onnx"
    src.write_bytes((SAMPLES / "cnn.onnx").read_bytes())
    assert cli("optimize", str(src), "-o", "a.onnx", "--no-metadata", "--no-validate").exit_code == 0
    assert _record(tmp_path / "a.onnx") is None
    assert not onnx.load(str(tmp_path / "a.onnx")).metadata_props
    # an input that carries an older record: optimized again without a record, it loses it (a stale record
    # would describe another run)
    assert cli("optimize", str(src), "-o", "b.onnx", "-O1", "--no-validate").exit_code == 0
    assert _record(tmp_path / "b.onnx") is not None
    assert cli("optimize", "b.onnx", "-o", "c.onnx", "--no-metadata", "--no-validate").exit_code == 0
    assert _record(tmp_path / "c.onnx") is None


def test_the_record_names_passes_validation_disabled(cli, add_model: Path, tmp_path: Path) -> None:
    r = cli("optimize", str(add_model), "-o", "out.onnx", "--passes", "test-drop-identity,test-break-add",
            "--bench-runs", "0")
    assert r.exit_code == 0, r.stdout + r.stderr
    rec = _record(tmp_path / "out.onnx")
    assert rec is not None
    assert rec["disabled"] == ["test-break-add"] and rec["passes_changed"] == ["test-drop-identity"]


def test_check_writes_nothing_and_the_api_stamps_like_the_cli(tmp_path: Path) -> None:
    import graphopt

    src = tmp_path / "cnn.onnx"
    src.write_bytes((SAMPLES / "cnn.onnx").read_bytes())
    rep = graphopt.optimize_file(src, tmp_path / "a.onnx", validate=False)
    assert rep.exit_code == 0 and _record(tmp_path / "a.onnx") is not None
    graphopt.optimize_file(src, tmp_path / "b.onnx", validate=False, metadata=False)
    assert _record(tmp_path / "b.onnx") is None
    proto = graphopt.optimize(onnx.load(str(src)))
    assert read_record({p.key: p.value for p in proto.metadata_props}) == _record(tmp_path / "a.onnx")
    assert not graphopt.optimize(onnx.load(str(src)), metadata=False).metadata_props


def test_inspect_shows_the_record(cli, tmp_path: Path) -> None:
    src = tmp_path / "cnn.onnx"
    src.write_bytes((SAMPLES / "cnn.onnx").read_bytes())
    assert cli("optimize", str(src), "--skip", "cse", "--no-validate").exit_code == 0
    rec = _record(tmp_path / "cnn.opt.onnx")
    r = cli("inspect", "cnn.opt.onnx")
    assert r.exit_code == 0
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("made by "))
    assert line.startswith(f"made by graphopt {__version__} -O2; changed by fold-constants")
    assert "options skip=cse" in line
    r = cli("inspect", "cnn.opt.onnx", "--json")
    assert json.loads(r.stdout)["graphopt"] == rec
    r = cli("inspect", str(src), "--json")
    assert json.loads(r.stdout)["graphopt"] is None
    assert "made by" not in cli("inspect", str(src)).stdout


# ================================================================================================================
# User text that looks like rich markup is shown as written
# ================================================================================================================
BRACKETS = """
<ir_version: 8, opset_import: ["": 17]>
g (float["[batch]", "[/]"] x, float["[bold]b", 4] y) => (float["[batch]", "[/]"] out) {
    t = Identity(x)
    out = Relu(t)
}
"""


def _bracket_model(tmp_path: Path) -> Path:
    mp = onnx.parser.parse_model(BRACKETS.replace(" x,", " in1,").replace("Identity(x)", "Identity(in1)"))
    mp.graph.input[0].name = "[red]in"
    mp.graph.node[0].input[0] = "[red]in"
    mp.graph.output[0].name = "[/]out"
    mp.graph.node[1].output[0] = "[/]out"
    mp.graph.node[0].name = "[bold]node"
    onnx.checker.check_model(mp, full_check=True)
    p = tmp_path / "m[bold]x.onnx"
    onnx.save(mp, str(p))
    return p


def test_names_with_brackets_are_shown_as_written(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    p = _bracket_model(tmp_path)
    r = cli("inspect", str(p))
    assert r.exit_code == 0, r.stdout + r.stderr
    assert f"{p}" in r.stdout
    assert "[red]in" in r.stdout and "[/]out" in r.stdout
    assert "[[batch], [/]]" in r.stdout and "[[bold]b, 4]" in r.stdout  # the shape column, dims named with brackets
    r = cli("optimize", str(p), "-o", "o[i].onnx", "--bench-runs", "0")
    assert r.exit_code == 0, r.stdout + r.stderr
    assert f"{p} -> o[i].onnx" in r.stdout and "[/]out" in r.stdout
    r = cli("check", str(p), "--bench-runs", "0")
    assert r.exit_code == 0 and f"✓ {p}: valid" in r.stdout
    r = cli("check", str(p), "-v", "--bench-runs", "0")
    assert r.exit_code == 0 and "[/]out" in r.stdout
    r = cli("optimize", "[bold]missing[/].onnx")
    assert r.exit_code == 3 and r.stderr.startswith("error: [bold]missing[/].onnx: ")


def test_inspect_a_directory_says_so(cli, tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    r = cli("inspect", "models")
    assert r.exit_code == 3 and r.stdout == ""
    assert r.stderr.startswith("error: models: is a directory") and "Traceback" not in r.stderr
