"""The one exception a user can cause, turned into a one-line message by the CLI."""


class ImgclfError(Exception):
    """A problem with the user's input (a path, a config value, a file), not a bug.

    The CLI prints ``imgclf: error: <message>`` and exits with status 2; the message must
    name the file or option at fault and what is wrong with it, on one line.

    Example:
        >>> raise ImgclfError("data/cats: no such folder")
    """


def first_line(exc: BaseException, limit: int = 300) -> str:
    """``"TypeName: first line of the message"``, at most ``limit`` characters: how a foreign
    exception (a converter's, a loader's) is quoted inside one of our one-line errors.

    Example:
        >>> first_line(ValueError("bad shape\\nlong trace..."))
        'ValueError: bad shape'
    """
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else 'no detail'}"[:limit]
