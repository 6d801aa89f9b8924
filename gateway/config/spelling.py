"""The closest known name to a misspelt one, for "did you mean" in config messages.

Shared by the plain-words errors (unknown keys and enum values) and the validators that
check names against the file's own (poll groups) or the platform's (text encodings).
"""

from __future__ import annotations

import difflib
import encodings.aliases
from collections.abc import Iterable, Sequence

#: most choices listed after an unknown name
MAX_CHOICES = 20


def closest(given: str, choices: Iterable[str]) -> str | None:
    """The choice ``given`` most likely meant (case, '-' for '_' and small typos
    forgiven), or None when nothing is close or ``given`` is itself a choice."""
    options = list(choices)
    if given in options:
        return None
    folded = {_fold(c): c for c in options}
    key = _fold(given)
    if key in folded:
        return folded[key]
    found = difflib.get_close_matches(key, list(folded), n=1, cutoff=0.6)
    return folded[found[0]] if found else None


def unknown(what: str, given: str, choices: Sequence[str], label: str = "one of") -> str:
    """``unknown table 'inptu'; did you mean 'input'? (one of holding, input, ...)``; the
    choices are left out past :data:`MAX_CHOICES` (and for a key, when one is close)."""
    text = f"unknown {what} {given!r}"
    close = closest(given, choices)
    if close is not None:
        text += f"; did you mean {close!r}?"
    if choices and len(choices) <= MAX_CHOICES and (close is None or what != "key"):
        text += f" ({label} {', '.join(choices)})"
    return text


def closest_encoding(given: str) -> str | None:
    """A text encoding Python knows that is close to ``given`` (``gbkk``: ``gbk``)."""
    names = {*encodings.aliases.aliases.values(), *encodings.aliases.aliases}
    preferred = ("utf-8", "latin-1", "gbk", "gb2312", "gb18030", "ascii", "utf-16",
                 "shift_jis", "big5", "cp1252")
    return closest(given, [*preferred, *sorted(names)])


def _fold(name: str) -> str:
    return name.lower().replace("-", "_")
