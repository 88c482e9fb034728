"""The one exception type whose message is shown to users as a single line, and the guard that shows it."""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import traceback
from typing import Callable


class EdgeliteError(Exception):
    """A problem the user can act on: bad input, missing file, failed check."""


class BrokenModel(EdgeliteError):
    """The model file itself fails (a corrupted file its backend accepted at load): unlike a bad input, it ends
    a batch run instead of being reported per item."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C's KeyboardInterrupt would be (`terminating_like_ctrl_c`), so the same
    clean-up runs."""


def one_line(exc: BaseException, last: bool = False, limit: int = 300) -> str:
    """A library's exception as one short line: its first line (or last, for converters
    whose tracebacks-as-messages end with the cause)."""
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return shortened((lines[-1] if last else lines[0]).strip(), limit) if lines else type(exc).__name__


def shortened(text: str, limit: int = 300) -> str:
    """`text` within `limit` characters, cut at a word boundary and marked as cut, never mid-word."""
    if len(text) <= limit:
        return text
    cut = text[:limit - 6].rsplit(" ", 1)[0].rstrip(" ,;:([{")
    return f"{cut} (...)"


def guarded(run: Callable[[], int | None], prog: str = "edgelite") -> int:
    """Run a command's body and return its exit code: an EdgeliteError is one line and 2, Ctrl-C 130 (SIGTERM
    under `terminating_like_ctrl_c`: 143), anything else (a bug, an unforeseen input) one line and 3, its
    traceback with EDGELITE_DEBUG=1."""
    try:
        return run() or 0
    except EdgeliteError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        if isinstance(exc, Terminated):
            print(f"{prog}: terminated", file=sys.stderr)
            return 128 + signal.SIGTERM
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if os.environ.get("EDGELITE_DEBUG"):
            traceback.print_exc()
        print(f"{prog}: internal error: {type(exc).__name__}: {one_line(exc)} "
              "(set EDGELITE_DEBUG=1 for the traceback)", file=sys.stderr)
        return 3


@contextlib.contextmanager
def terminating_like_ctrl_c():
    """Within `with`, SIGTERM raises Terminated (a KeyboardInterrupt) in the main thread, so a command ended by
    `kill` or `timeout` cleans up as Ctrl-C does (staging folders, partial files) instead of dying on the spot.
    Elsewhere than the main thread (signals go to it only) it changes nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
