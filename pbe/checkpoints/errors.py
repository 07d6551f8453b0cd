"""The error every checkpoint reader raises for a file it cannot read, or whose contents are not what was asked for.

It lives in a module of its own so that each reader (`safetensors_io`, `safe_pickle`, `tensor_io`) can raise it
without importing another; `pbe.checkpoints.tensor_io.CheckpointError` is the same class.
"""


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read, or whose contents are not what was asked for."""
