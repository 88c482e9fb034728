"""The one exception type whose message is shown to users as a single line, and the guard that shows it."""
from __future__ import annotations

import os
import sys
import traceback
from typing import Callable


class EdgeliteError(Exception):
    """A problem the user can act on: bad input, missing file, failed check."""


def one_line(exc: BaseException, last: bool = False, limit: int = 300) -> str:
    """A library's exception as one short line: its first line (or last, for converters
    whose tracebacks-as-messages end with the cause)."""
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return (lines[-1] if last else lines[0])[:limit] if lines else type(exc).__name__


def guarded(run: Callable[[], int | None], prog: str = "edgelite") -> int:
    """Run a command's body and return its exit code: an EdgeliteError is one line and 2, Ctrl-C 130,
    anything else (a bug, an unforeseen input) one line and 3, its traceback with EDGELITE_DEBUG=1."""
    try:
        return run() or 0
    except EdgeliteError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if os.environ.get("EDGELITE_DEBUG"):
            traceback.print_exc()
        print(f"{prog}: internal error: {type(exc).__name__}: {one_line(exc)} "
              "(set EDGELITE_DEBUG=1 for the traceback)", file=sys.stderr)
        return 3
