"""Text that uploads control (object keys, error messages quoting a file) shown to a person."""

from __future__ import annotations

import unicodedata

# control, format (bidi overrides), line and paragraph separators
_HIDDEN = ("Cc", "Cf", "Zl", "Zp")


def printable(text: str) -> str:
    """``text`` with control, format and line-breaking characters written as escapes
    (``\\n``, ``\\x1b``, ``\\u2028``): an object key holding an ANSI sequence, a carriage
    return or a newline cannot recolour, overwrite or forge the lines an operator reads."""
    return "".join(
        c.encode("unicode_escape").decode() if unicodedata.category(c) in _HIDDEN else c for c in text
    )
