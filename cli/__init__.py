"""The `edgelite` command: one module per subcommand, each owning its parser (`add`) and its body (`run`).

The heavy sides (TensorFlow) are imported only by the subcommands that need them, inside `run`;
`predict`, `verify`, `inspect`, `serve`, `bench`, `bundle` and `tune` run on the device with numpy, Pillow and
one backend. The device library (runtime/, `edgelite`) never imports this package.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from edgelite.errors import EdgeliteError, guarded, terminating_like_ctrl_c

from .extras import missing_message

DESCRIPTION = "Keras image classifiers to small devices: convert, run, benchmark, train."
EXIT_CODES = ("exit codes: 0 all good; 1 some inputs failed, or an artifact is below its gate (convert, verify); "
              "2 usage or input error (a bad flag, file, model or folder); 3 internal error (a bug: "
              "EDGELITE_DEBUG=1 shows the traceback); 130 interrupted (143: terminated by SIGTERM, cleaned up "
              "as on Ctrl-C)")
COMMANDS = ("demo", "convert", "verify", "inspect", "predict", "serve", "bench", "bundle", "tune", "train")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    # the named command's module only (cold start: each module and parser costs ~2 ms); all for --help
    parser = build_parser([argv[0]] if argv and argv[0] in COMMANDS else COMMANDS)
    args = parser.parse_args(argv)
    if not getattr(args, "run", None):
        parser.print_help()
        return 2
    _show_library_messages()
    with terminating_like_ctrl_c():  # SIGTERM cleans up as Ctrl-C does
        return guarded(lambda: _run(args, argv[0]))


def _run(args, command: str) -> int | None:
    """The command's body; a package its extra would have installed, missing, is one line naming the extra."""
    try:
        return args.run(args)
    except ImportError as exc:
        message = missing_message(exc, command)
        if message is None:
            raise
        raise EdgeliteError(message) from None


def build_parser(commands=COMMANDS) -> argparse.ArgumentParser:
    from edgelite import __version__

    parser = argparse.ArgumentParser(prog="edgelite", description=DESCRIPTION, epilog=EXIT_CODES)
    parser.add_argument("--version", action="version", version=f"edgelite {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name in commands:
        importlib.import_module(f"edgelite.cli.{name}").add(sub)
    return parser


class _Stderr(logging.Handler):
    """Plain lines on whatever sys.stderr is at the time (a test's capture included)."""

    def emit(self, record: logging.LogRecord) -> None:
        print(record.getMessage(), file=sys.stderr, flush=True)


def _show_library_messages() -> None:
    """The library reports through `logging` (logger "edgelite"); the command shows INFO and up on
    stderr as plain lines, once."""
    logger = logging.getLogger("edgelite")
    if not any(isinstance(h, _Stderr) for h in logger.handlers):
        logger.addHandler(_Stderr())
    logger.setLevel(logging.INFO)
    logger.propagate = False
