"""Values callers wrote, made safe to show people: shown as text, never interpreted.

A deal's title, an actor, a reason: any of them may hold an ANSI or OSC escape (which
recolours, hides text, plants a hyperlink or retitles the terminal), a newline or
carriage return (which forges a line of output or overwrites one), a bidi override
(which reorders what is read), or Rich markup such as `[/bold]` (which Rich would
interpret, or crash on). Every human-readable output (the CLI, alert text) passes them
through here; JSON outputs need nothing more, `json.dumps` escapes control characters.
"""

from __future__ import annotations

import json
import unicodedata
from typing import Any

from rich.text import Text

# Invisible characters that change the order or direction of the text around them.
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _unsafe(char: str) -> bool:
    # Cc: C0 and C1 controls, DEL, ESC (which starts ANSI and OSC sequences); Zl/Zp: line and paragraph separators.
    return char in _BIDI or unicodedata.category(char) in ("Cc", "Zl", "Zp")


def _visible(char: str) -> str:
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def printable(value: object) -> str:
    """The value as one line of plain text: each control, separator or bidi character as a visible escape (`\\x1b`, `\\n`)."""
    text = str(value)
    if not any(_unsafe(ch) for ch in text):
        return text
    return "".join(_visible(ch) if _unsafe(ch) else ch for ch in text)


def rich_text(value: object) -> Text:
    """For Rich tables and consoles: a Text is never read as markup or emoji codes, nor highlighted."""
    return Text(printable(value))


def plain_number(value: Any) -> Any:
    """Integral floats as integers, within lists and dicts too: a term of 60 days reads `60` in every view.

    Term values are stored as JSON numbers (floats in events); 60.0 and 60 are the same number."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: plain_number(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain_number(v) for v in value]
    return value


def value_text(value: Any) -> str:
    """A value as people read it in a listing: strings as they are, anything else as compact JSON
    (`null`, `false`, `{"term": ...}`, never a Python repr), numbers without a trailing `.0`; made printable."""
    if isinstance(value, str):
        return printable(value)
    return printable(json.dumps(plain_number(value), separators=(", ", ": "), ensure_ascii=False, default=str))
