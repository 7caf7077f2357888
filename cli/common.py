"""Shared CLI plumbing: consoles, logging, error handling and exit codes.

This is the only place in graphopt that catches exceptions broadly: a GraphoptError becomes one line on stderr
(plus its hint) and its exit code; anything else is translated by the context's translators (internal error,
exit 5). A Python traceback is shown only with --debug.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from rich.console import Console  # imported where used: `graphopt --version` needs no rich

from graphopt.errors import (
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    GraphoptError,
    Interrupted,
    UsageError,
)

F = TypeVar("F", bound=Callable[..., Any])


class State:
    """Per-invocation CLI state (no globals: each command builds its own)."""

    def __init__(self, verbose: int = 0, quiet: bool = False, debug: bool = False, model_to_stdout: bool = False):
        self.verbose = verbose
        self.quiet = quiet
        self.debug = debug
        self.model_to_stdout = model_to_stdout
        from rich.console import Console

        self.err: Console = Console(stderr=True, highlight=False, soft_wrap=False)
        self.out = Console(highlight=False, soft_wrap=True) if not model_to_stdout else self.err

    def info(self, msg: str) -> None:
        if not self.quiet:
            self.err.print(msg)


def setup_logging(verbose: int, quiet: bool) -> None:
    level = logging.WARNING
    if verbose >= 2:
        level = logging.DEBUG
    elif verbose == 1:
        level = logging.INFO
    if quiet:
        level = logging.ERROR
    logger = logging.getLogger("graphopt")
    for h in list(logger.handlers):
        if getattr(h, "_graphopt_cli", False):
            logger.removeHandler(h)
    h = logging.StreamHandler(sys.stderr)
    h._graphopt_cli = True  # type: ignore[attr-defined]
    h.setFormatter(logging.Formatter("graphopt: %(message)s" if verbose < 2 else
                                     "graphopt %(name)s: %(message)s"))
    logger.addHandler(h)
    logger.setLevel(level)
    logger.propagate = False


def print_error(err: GraphoptError, *, debug: bool = False) -> None:
    from rich.console import Console

    console = Console(stderr=True, highlight=False, soft_wrap=True)
    console.print(f"[bold red]error:[/] {escape(err.one_line())}")
    if err.hint:
        console.print(f"[dim]hint: {escape(err.hint)}[/]")
    if debug:
        import traceback

        cause = err.__cause__ or err
        console.print("".join(traceback.format_exception(type(cause), cause, cause.__traceback__)), markup=False)


def escape(s: str) -> str:
    from rich.markup import escape as _e

    return _e(s)


def handle_errors(fn: F) -> F:
    """Run a command; turn errors into one stderr line, a hint, and the documented exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        debug = bool(kwargs.get("debug")) or os.environ.get("GRAPHOPT_DEBUG") == "1"
        install_signal_handlers()
        try:
            return fn(*args, **kwargs)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except GraphoptError as e:
            print_error(e, debug=debug)
            sys.exit(e.exit_code)
        except KeyboardInterrupt as e:
            from rich.console import Console

            code = e.exit_code if isinstance(e, Interrupted) else EXIT_INTERRUPTED
            what = "terminated" if code == EXIT_TERMINATED else "interrupted"
            Console(stderr=True, highlight=False).print(
                f"[bold red]error:[/] {what}: graphopt stopped; no partial output or temporary file was left, the "
                "input is untouched")
            sys.exit(code)
        except BrokenPipeError:
            # a closed pipe downstream (e.g. `graphopt ... | head`): quiet exit, as Unix tools do
            try:
                sys.stdout = open(os.devnull, "w")  # noqa: SIM115
            except OSError:
                pass
            sys.exit(1)
        except Exception as e:  # noqa: BLE001 - the CLI boundary: nothing escapes as a traceback
            from graphopt.jit.translators import TranslatorRegistry, install_defaults  # not at start-up

            reg = TranslatorRegistry()
            install_defaults(reg)
            err = reg.translate(e, stage="cli")
            if err.exit_code == EXIT_INTERNAL and not debug:
                err.hint = (err.hint + "; " if err.hint else "") + "rerun with --debug for the traceback"
            print_error(err, debug=debug)
            sys.exit(err.exit_code)

    return wrapper  # type: ignore[return-value]


def install_signal_handlers() -> None:
    """SIGTERM (what CI systems, timeouts and service managers send) stops graphopt as Ctrl-C does: the running
    pass is rolled back, temporary files are deleted, the input is untouched, and the exit code says which signal
    (130 for SIGINT, 143 for SIGTERM)."""

    def stop(signum: int, _frame: Any) -> None:
        raise Interrupted(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


def usage(msg: str, hint: str = "") -> UsageError:
    return UsageError(msg, hint=hint)


def common_options(fn: F) -> F:
    """-v/-q/--debug on every command."""
    fn = click.option("--debug", is_flag=True, help="Show Python tracebacks on errors.")(fn)
    fn = click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")(fn)
    fn = click.option("-v", "--verbose", count=True,
                      help="More detail: -v shows the JIT context's init steps and per-pass details.")(fn)
    return fn
