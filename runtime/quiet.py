"""Silence chatter (Python prints and C++ logs on the file descriptors: LiteRT's delegate
notice, TensorFlow's and the converters' logs) unless EDGELITE_DEBUG is set."""
from __future__ import annotations

import contextlib
import os
import sys


@contextlib.contextmanager
def quiet():
    if os.environ.get("EDGELITE_DEBUG"):
        yield
        return
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

