"""A griffe extension for the API reference: doctests outside an ``Examples:`` section render as code.

Google-style docstrings here keep doctests in the running text (``>>> f(1)`` then its output). Markdown
would read them as prose, and output such as ``[-1.0, 1.0]`` as a link; this wraps each doctest (its
``>>>`` and ``...`` lines and the output up to the next blank line) in a ``pycon`` code fence. The
``Examples:`` sections are left alone: griffe renders those as code already.
"""

from __future__ import annotations

import re

import griffe

_SECTION = re.compile(r"^(\s*)Examples:\s*$")  # griffe reads "Example:" as an admonition, i.e. prose


def fence_doctests(text: str) -> str:
    r"""``text`` with each doctest outside an ``Examples:`` section inside a ``pycon`` fence.

    >>> fence_doctests("Adds.\n\n>>> 1 + 1\n2\n\nDone.").splitlines()
    ['Adds.', '', '```pycon', '>>> 1 + 1', '2', '```', '', 'Done.']
    """
    out: list[str] = []
    section_indent: int | None = None  # the indent of an open Examples: header
    fence_indent: str | None = None  # the indent of an open fence
    for line in text.splitlines():
        indent = len(line) - len(line.lstrip())
        if fence_indent is not None and not line.strip():
            out.append(f"{fence_indent}```")
            fence_indent = None
        if line.strip() and section_indent is not None and indent <= section_indent:
            section_indent = None
        if match := _SECTION.match(line):
            section_indent = len(match.group(1))
        elif section_indent is None and fence_indent is None and line.lstrip().startswith(">>>"):
            fence_indent = line[:indent]
            out.append(f"{fence_indent}```pycon")
        out.append(line)
    if fence_indent is not None:
        out.append(f"{fence_indent}```")
    return "\n".join(out)


class DoctestFences(griffe.Extension):
    """Fences the doctests of every docstring griffe loads (see :func:`fence_doctests`)."""

    def on_object(self, *, obj: griffe.Object, **kwargs: object) -> None:
        """Rewrite ``obj``'s docstring, if it has one."""
        if obj.docstring is not None:
            obj.docstring.value = fence_doctests(obj.docstring.value)
