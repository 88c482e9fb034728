"""Silence chatter (Python prints and C++ logs on the file descriptors: LiteRT's delegate
notice, TensorFlow's and the converters' logs) unless EDGELITE_DEBUG is set."""
from __future__ import annotations

import contextlib
import os
import sys
import threading

_LOCK = threading.Lock()


@contextlib.contextmanager
def quiet():
    """Point file descriptors 1 and 2 at /dev/null for the duration, only while this is the process's
    only thread: they belong to the whole process, so with other threads running (a server) nothing
    is silenced rather than their output lost."""
    if os.environ.get("EDGELITE_DEBUG") or _others_running() or not _LOCK.acquire(blocking=False):
        yield
        return
    try:
        with _silenced():
            yield
    finally:
        _LOCK.release()


def _others_running() -> bool:
    """Another thread that may write (tqdm's progress-bar monitor only sleeps and refreshes bars)."""
    monitor = getattr(sys.modules.get("tqdm._monitor"), "TMonitor", ())
    return any(t is not threading.current_thread() and not isinstance(t, monitor) for t in threading.enumerate())


@contextlib.contextmanager
def _silenced():
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(os.devnull, "wb") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            with contextlib.redirect_stdout(open(os.devnull, "w")) as devnull:
                with devnull:
                    yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])

