"""The one exception type whose message is shown to users as a single line."""


class EdgeliteError(Exception):
    """A problem the user can act on: bad input, missing file, failed check."""
