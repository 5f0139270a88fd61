"""Strings from a run (outputs, errors, logs, ids, names) made safe to show on a terminal.

A node, a workflow file or a command line supplies these strings; the terminal view must show them
as they are, never act on them. Two things would: rich markup (``[/]`` or ``[bold]`` makes rich
raise or restyle) and control characters (``\\x1b[31m`` recolours the terminal, ``\\x1b]0;...\\x07``
retitles it). ``visible`` writes every control character (and lone surrogate) as a visible escape;
``shown`` also escapes markup, for strings printed where markup is on (tables, titles, styled lines). The
``--json`` object is not touched: it carries the values exactly.
"""
from __future__ import annotations

from rich.markup import escape

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# C0 controls, DEL and C1 controls: every character a terminal may act on instead of printing. And
# lone surrogates (a JSON "\\ud800", bytes of an argument that are not UTF-8): no terminal encoding
# can write them, and printing one raised UnicodeEncodeError after the run was stored.
_VISIBLE = {c: _NAMED.get(chr(c), f"\\x{c:02x}") for c in (*range(0x20), *range(0x7F, 0xA0))}
_VISIBLE.update({c: f"\\u{c:04x}" for c in range(0xD800, 0xE000)})
_VISIBLE_KEEPING_LINES = {**_VISIBLE, ord("\n"): "\n"}


def visible(text, *, lines: bool = False) -> str:
    """``text`` with every control character written as its escape (``\\x1b``, ``\\n``...).

    ``lines=True`` keeps newlines as they are, for a message made of several lines."""
    return str(text).translate(_VISIBLE_KEEPING_LINES if lines else _VISIBLE)


def shown(text, *, lines: bool = False) -> str:
    """``visible(text)`` with rich markup escaped: prints literally where markup is on."""
    return escape(visible(text, lines=lines))
