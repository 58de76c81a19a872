"""The two kinds of failure.

A ``UserError`` is bad input: the CLI prints its one line and exits 1, no traceback.
Anything else is a bug in tritongen and keeps its traceback.
"""

import re


class UserError(Exception):
    """Bad input. The message is one line naming the field or file and the fix."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


# ONNX Runtime's "/onnxruntime_src/...reshape_helper.h:91 onnxruntime::ReshapeHelper::ReshapeHelper(const ...&, bool) ":
# where in its C++ the check sits, not what went wrong (that follows)
_NATIVE_SOURCE = re.compile(r"/\S*onnxruntime_src/\S+:\d+ [^\s(]+\([^)]*\)\s*")


def one_line(e: BaseException, limit: int = 300) -> str:
    """An exception's text on one line (its lines joined: ONNX Runtime puts the offending index on the second),
    cut at ``limit`` characters; the exception's type when it has no text."""
    s = _NATIVE_SOURCE.sub("", " ".join(str(e).split()))
    return (s or type(e).__name__)[:limit]


class VariantFailed(Exception):
    """One variant could not be built or did not verify; the other variants go on."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM during a command (``on_signal``): a stage that catches broad exceptions re-raises it."""


_SIGNALLED: list[int] = []


def on_signal(signum, frame) -> None:
    """SIGINT/SIGTERM handler for long commands: remember it and raise, so staging is discarded and locks freed."""
    _SIGNALLED.append(signum)
    raise Interrupted()


def reraise_if_interrupted(e: BaseException | None = None) -> None:
    """Raise ``Interrupted`` if a signal came, or ``e``'s cause chain holds a KeyboardInterrupt (torch.export wraps
    the exception raised inside it)."""
    seen = 0
    while e is not None and seen < 20:
        if isinstance(e, KeyboardInterrupt):
            raise Interrupted() from None
        e, seen = e.__cause__ or e.__context__, seen + 1
    if _SIGNALLED:
        raise Interrupted()


class signals_raise:
    """``with signals_raise():`` SIGINT and SIGTERM raise ``Interrupted`` (see ``on_signal``) inside the block."""

    def __enter__(self):
        import signal

        self.old = {}
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.old[sig] = signal.signal(sig, on_signal)
        except ValueError:  # not the main thread (the library called from a thread): leave the handlers alone
            pass
        return self

    def __exit__(self, *exc):
        import signal

        for sig, handler in self.old.items():
            signal.signal(sig, handler)
