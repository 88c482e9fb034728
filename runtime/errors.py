"""The one exception type whose message is shown to users as a single line."""


class EdgeliteError(Exception):
    """A problem the user can act on: bad input, missing file, failed check."""


def one_line(exc: BaseException, last: bool = False, limit: int = 300) -> str:
    """A library's exception as one short line: its first line (or last, for converters
    whose tracebacks-as-messages end with the cause)."""
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return (lines[-1] if last else lines[0])[:limit] if lines else type(exc).__name__
