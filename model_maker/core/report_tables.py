"""Tables of the Evaluators' reports: Markdown (report.md) and HTML (report.html).

Cells are text: :func:`html_table` escapes them; :func:`md_cell` makes a value
safe in a Markdown cell (no HTML, no column break, one line).
"""

from __future__ import annotations

import html


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def md_cell(text: str) -> str:
    """``text`` safe in a Markdown table cell: no HTML, no column break, one line."""
    text = html.escape(" ".join(text.split()), quote=False)
    return text.replace("\\", "\\\\").replace("|", "\\|")
