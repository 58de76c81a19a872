"""The two kinds of failure.

A ``UserError`` is bad input: the CLI prints its one line and exits 1, no traceback.
Anything else is a bug in tritongen and keeps its traceback.
"""


class UserError(Exception):
    """Bad input. The message is one line naming the field or file and the fix."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class VariantFailed(Exception):
    """One variant could not be built or did not verify; the other variants go on."""
