"""The plugin's exceptions, in one module that every other one may import.

Each names a mistake of the user's (a config value, a file, a sample, a
checkpoint) in its message; the tools print that message as one line
(:mod:`msnet_plugin.cli`), the Python API raises the exception itself.
One stays beside its code: ``compat.TorchvisionUnavailableError``, because
msnet_plugin/compat.py imports nothing of the plugin (the tests load it
alone, to see upstream's defects before its workarounds apply).
"""


class ConfigError(ValueError):
    """A config value the run cannot use: a path that does not exist, a
    work directory that cannot be written, generated data beyond what the
    decoder or the model handles. The message names the key and the fix."""


class SegmentCountError(ValueError):
    """The segment counts of a model config disagree."""


class CheckpointFileError(ValueError):
    """A checkpoint file cannot be used: empty, truncated, not a checkpoint,
    unsafe to load, or in a layout the run cannot take. The message names
    the file and what to do."""


class AuthorsCheckpointError(CheckpointFileError):
    """The file is not a checkpoint of the MotionSqueeze authors' TSN in a
    layout the converter knows (a :class:`CheckpointFileError`, so the tools
    report it in one line)."""


class ConfigMismatchError(AuthorsCheckpointError):
    """The authors' checkpoint's network differs from the config's model."""


class CheckpointMismatchError(RuntimeError):
    """The checkpoint's weights do not fit the model's."""


class AnnotationError(ValueError):
    """The annotation list is missing, empty or malformed, or holds a label
    the run cannot use; the message names the file and line."""


class BadSampleError(RuntimeError):
    """A sample could not be loaded; the message names its file and line."""


class InvalidLossError(FloatingPointError):
    """The training loss became NaN or infinite."""
