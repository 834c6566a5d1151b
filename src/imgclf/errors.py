"""The one exception a user can cause, turned into a one-line message by the CLI."""


class ImgclfError(Exception):
    """A problem with the user's input (a path, a config value, a file), not a bug.

    The CLI prints ``imgclf: error: <message>`` and exits with status 2; the message must
    name the file or option at fault and what is wrong with it, on one line.

    Example:
        >>> raise ImgclfError("data/cats: no such folder")
    """
