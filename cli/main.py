"""The `graphopt` command."""

from __future__ import annotations

import click

from graphopt import __version__

from .inspect_cmd import inspect_cmd
from .optimize import optimize_cmd
from .passes_cmd import passes_cmd

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "-V", "--version", prog_name="graphopt",
                      message="%(prog)s %(version)s")
def main() -> None:
    """graphopt: optimize ONNX models, and prove the result still computes the same thing.

    \b
    Examples:
      graphopt optimize model.onnx                 # writes model.opt.onnx beside it, validated
      graphopt optimize model.onnx -o out.onnx -O3 --report-json report.json
      cat model.onnx | graphopt optimize - -o - > out.onnx
      graphopt check models/*.onnx --fail-if-optimizable   # a CI step
      graphopt inspect model.onnx --json
      graphopt passes
      graphopt explain model.onnx fuse-conv-bn     # why a fusion rule did (not) fire
    """


main.add_command(optimize_cmd)
main.add_command(inspect_cmd)
main.add_command(passes_cmd)

try:  # the CI check command lands with the validation work
    from .check import check_cmd

    main.add_command(check_cmd)
except ImportError as _e:  # pragma: no cover
    if _e.name != "graphopt.cli.check":
        raise

try:  # `graphopt explain`: why a fusion rule did (not) fire
    from .explain_cmd import explain_cmd

    main.add_command(explain_cmd)
except ImportError as _e:  # pragma: no cover
    if _e.name != "graphopt.cli.explain_cmd":
        raise


if __name__ == "__main__":  # pragma: no cover
    main()
