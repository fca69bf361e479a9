"""The one exception type for mistakes a user can fix (bad file, bad flag, bad config key).

The CLI turns a `UserError` into a one-line message and exit code 2, with no traceback; any other
exception is a bug in selfsup and keeps its traceback.
"""


class UserError(Exception):
    """A problem with the user's input: the message names the file, line or field and what was
    expected, in one line."""
