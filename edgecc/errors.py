"""User-facing failures: each becomes one clear line and a non-zero exit in the CLI."""


def error_line(exc: BaseException, *, last: bool = False, limit: int = 300) -> str:
    """One line of an exception's message for a user-facing error: the first line, or the last
    (`last=True`: TVM's errors end with the message after a stack), else the exception's type."""
    lines = str(exc).strip().splitlines()
    return (lines[-1 if last else 0] if lines else type(exc).__name__)[:limit]


class EdgeccError(Exception):
    """A failure the user can act on. The message is the whole story: no traceback is shown."""

    exit_code = 2


class ModelError(EdgeccError):
    """The model file or built-in name cannot be used (missing, corrupt, unsupported ops)."""


class InputSpecError(EdgeccError):
    """Input names, shapes or dtypes do not match the model."""


class TargetError(EdgeccError):
    """Unknown target, or a target file that does not validate."""


class ArtifactError(EdgeccError):
    """An artifact folder that is incomplete, changed after its compile, or names files outside itself."""


class ToolchainError(EdgeccError):
    """A compiler or tool the target needs is not installed."""


class VerificationError(EdgeccError):
    """The compiled artifact does not compute what the reference computes."""

    exit_code = 3


class RemoteError(EdgeccError):
    """An RPC board or tracker refused, timed out or vanished."""
