"""One exception family for everything a user can get wrong.

The app turns these into ``gr.Error``; the CLI into one line on stderr and exit code 2. Messages are sentences a
user can act on ("audio is 0.05 s long; give at least 0.2 s of speech").
"""


class DiffusionTalkerError(Exception):
    """Base class of every error DiffusionTalker raises on purpose."""


class AudioError(DiffusionTalkerError):
    """The audio input is missing, undecodable, too short/long or holds invalid samples."""


class CheckpointError(DiffusionTalkerError):
    """A checkpoint directory is missing a file, has a bad config, wrong shapes, NaN weights or a pickle."""


class ConfigError(DiffusionTalkerError):
    """A configuration value is out of range or unknown."""


class DataError(DiffusionTalkerError):
    """A dataset file or clip directory is malformed."""


class IdentityError(DiffusionTalkerError):
    """An identity name or mix refers to identities the model does not know."""


class RenderError(DiffusionTalkerError):
    """Rendering or video encoding failed (e.g. no OpenGL backend)."""


class ExportError(DiffusionTalkerError):
    """An export format or path is invalid."""
