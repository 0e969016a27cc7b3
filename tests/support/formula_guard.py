"""The CSV formula guard spelled out, character by character, as the tests expect it: an
independent reading of the rule in docs/formats.md, not the writer's regular expressions."""

from __future__ import annotations

FORMULA_SIGNS = "=+-@\uff1d\uff0b\uff0d\uff20"


def guarded(text: str) -> str:
    """The formula guard, spelled out: a ``'`` at each place where a spreadsheet may start
    reading a cell (the text's start, after a comma, semicolon, tab, bar, CR or LF) when a
    formula sign follows there, after any whitespace and quotes; and before a leading tab or
    CR."""
    if not text:
        return text
    starts = [0, *(index + 1 for index, char in enumerate(text) if char in ",;\t|\r\n")]
    marked = [start for start in starts if starts_like_formula(text[start:])]
    if text[0] in "\t\r" and 0 not in marked:
        marked.insert(0, 0)
    ends = [*marked, len(text)]
    return "'".join(text[begin:end] for begin, end in zip([0, *marked], ends, strict=True))


def starts_like_formula(text: str) -> bool:
    for char in text:
        if char in FORMULA_SIGNS:
            return True
        if not char.isspace() and char != '"':
            return False
    return False
