"""The ``evolve`` command line: a thin typer layer over the library, one module per command group.

This is the only place that prints and picks exit codes: a user error (:class:`evolve.errors.EvolveError`)
becomes one line on stderr and exit code 2; ``--debug`` (anywhere on the line, or ``EVOLVE_DEBUG=1``) shows
the traceback instead.
"""

from __future__ import annotations

import os
import sys

import typer

from evolve import __version__

__all__ = ["app", "main"]

app = typer.Typer(
    name="evolve",
    help="A self-tuning experiment loop for retrieval pipelines.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool):
    if value:
        typer.echo(f"evolve {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version and exit."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="More log output on stderr."),
):
    from evolve.cli._common import setup_logging

    if debug:
        os.environ["EVOLVE_DEBUG"] = "1"
    setup_logging(verbose)


def _register() -> None:
    from evolve.cli import cache
    from evolve.cli import eval as eval_cmd

    eval_cmd.register(app)
    cache.register(app)
    for name in ("run", "worker", "status", "promote", "search", "dashboard", "gold", "serve", "feedback", "dataset",
                 "doctor", "answer"):
        try:
            module = __import__(f"evolve.cli.{name}", fromlist=["register"])
        except ModuleNotFoundError as err:
            if err.name != f"evolve.cli.{name}":
                raise
            continue
        module.register(app)


_register()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("EVOLVE_DEBUG") == "1"
    if debug and "--debug" in argv and argv.index("--debug") > 0:
        argv.remove("--debug")
        argv.insert(0, "--debug")
    from evolve.errors import EvolveError

    try:
        rv = app(args=argv, prog_name="evolve", standalone_mode=False)
    except EvolveError as err:
        if debug:
            raise
        from evolve.cli._common import err_console

        err_console.print(f"error: {err}", highlight=False, markup=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        from evolve.cli._common import err_console

        err_console.print("interrupted", highlight=False)
        return 130
    except SystemExit as exc:  # typer.Exit inside commands
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except Exception as exc:
        kind = _framework_error(exc)
        if kind == "exit":
            return exc.exit_code
        if kind == "abort":
            return 130
        if kind == "help":  # a group called without a command: its help, as the framework shows it
            exc.show()
            return exc.exit_code
        if kind == "usage":
            from evolve.cli._common import err_console

            err_console.print(f"error: {_usage_line(exc)}", highlight=False, markup=False, soft_wrap=True)
            return 2
        if debug:
            raise
        from evolve.cli._common import err_console

        msg = " ".join(str(exc).split())
        err_console.print(f"internal error: {type(exc).__name__}: {msg} (run with --debug for the traceback)",
                          highlight=False, markup=False, soft_wrap=True)
        return 1
    return rv if isinstance(rv, int) else 0


def _framework_classes() -> dict[str, tuple[type, ...]]:
    """The command-line framework's exception classes, by role. typer >= 0.20 vendors its own click
    (``typer._click``), whose classes are not ``click``'s: both are collected, whichever exist."""
    import importlib

    roles: dict[str, list[type]] = {"exit": [], "abort": [], "help": [], "usage": []}
    names = {"exit": "Exit", "abort": "Abort", "help": "NoArgsIsHelpError", "usage": "ClickException"}
    for module in ("click.exceptions", "typer._click.exceptions", "typer.exceptions"):
        try:
            mod = importlib.import_module(module)
        except ImportError:
            continue
        for role, name in names.items():
            cls = getattr(mod, name, None)
            if isinstance(cls, type):
                roles[role].append(cls)
    for cls in (typer.Exit, typer.Abort):
        roles["exit" if cls is typer.Exit else "abort"].append(cls)
    return {role: tuple(classes) for role, classes in roles.items()}


def _framework_error(exc: BaseException) -> str | None:
    """``exit``, ``abort``, ``help`` (a group without its command), ``usage`` (a mistyped option, a bad value,
    an unknown command) or None for anything else."""
    classes = _framework_classes()
    for role in ("exit", "abort", "help", "usage"):  # help before usage: it is a usage error that shows help
        if classes[role] and isinstance(exc, classes[role]):
            return role
    return None


def _usage_line(exc) -> str:
    """The framework's own message (with its "Possible options" / "Did you mean") on one line, after the command
    it is about: ``evolve status: No such option: --nope``."""
    message = " ".join(exc.format_message().split())
    ctx = getattr(exc, "ctx", None)
    path = getattr(ctx, "command_path", None)
    return f"{path}: {message}" if path else message


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
