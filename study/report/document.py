"""A report as blocks (headings, paragraphs, tables, figures), rendered to Markdown and to HTML."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

import numpy as np

BOLD = re.compile(r"[*][*](.+?)[*][*]")  # Markdown's **bold** in a paragraph
NUMERIC = re.compile(r"^[-+–\d.,%e\[\] ]+$|^(yes|no|inf|nan)$")  # a table cell drawn right-aligned


MARKUP = str.maketrans({"<": "&lt;", ">": "&gt;", "[": "\\[", "]": "\\]"})


def md(text: str, inline: bool = False) -> str:
    """`text` as Markdown shows it, never as markup: no raw HTML (``<`` and ``>`` as entities), no link
    or image (brackets escaped); `inline` (a heading, caption or table cell) on one line, its ``|``
    escaped. The report's own **bold** stays. Every string of a report passes here, the folder's own
    (names, keys) and the report's alike."""
    text = str(text).translate(MARKUP)
    return " ".join(text.replace("|", "\\|").split()) if inline else text


def fmt(value, digits=3) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def pct_ci(mean, low, high) -> str:
    if mean is None:
        return "–"
    if low is None or high is None:
        return f"{100 * mean:.2f}"
    return f"{100 * mean:.2f} [{100 * low:.2f}, {100 * high:.2f}]"


class Document:
    """A report as blocks, rendered to both Markdown and HTML."""

    def __init__(self):
        self.blocks: list[tuple] = []

    def heading(self, text, level=2):
        self.blocks.append(("h", level, text))

    def para(self, text):
        self.blocks.append(("p", text))

    def table(self, header, rows):
        self.blocks.append(("table", header, [[fmt(v) for v in row] for row in rows]))

    def figure(self, path: Path, caption: str):
        self.blocks.append(("img", path, caption))

    def insert(self, name: str):
        """A place for HTML only the web page has (`html`'s `inserts`); nothing in Markdown."""
        self.blocks.append(("insert", name))

    def markdown(self) -> str:
        out = []
        for block in self.blocks:
            if block[0] == "insert":
                continue
            if block[0] == "h":
                out.append(f"{'#' * block[1]} {md(block[2], inline=True)}")
            elif block[0] == "p":
                out.append(md(block[1]))
            elif block[0] == "table":
                cells = [[md(cell, inline=True) for cell in row] for row in [block[1], *block[2]]]
                out.append("| " + " | ".join(cells[0]) + " |\n|" + "---|" * len(block[1]))
                out[-1] += "".join("\n| " + " | ".join(row) + " |" for row in cells[1:])
            else:
                caption = md(block[2], inline=True)
                out.append(f"![{caption}]({block[1].as_posix()})\n\n*{caption}*")
        return "\n\n".join(out) + "\n"

    def html(self, title: str, folder: Path | None = None, inserts: dict[str, str] | None = None,
             style: str = "") -> str:  # fmt: skip
        """One self-contained page: figures embedded as data URIs (read from `folder`, where their paths
        are relative), each `insert` block replaced by its HTML from `inserts`."""
        out = [
            f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
            "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
            "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}"
            f"td.n{{text-align:right}}img{{max-width:100%}}{style}</style></head><body>",
        ]
        for block in self.blocks:
            if block[0] == "insert":
                out.append((inserts or {}).get(block[1], ""))
            elif block[0] == "h":
                out.append(f"<h{block[1]}>{html.escape(block[2])}</h{block[1]}>")
            elif block[0] == "p":
                out.append("<p>" + BOLD.sub(r"<b>\1</b>", html.escape(block[1])) + "</p>")
            elif block[0] == "table":
                head = "".join(f"<th>{html.escape(h)}</th>" for h in block[1])
                body = "".join(
                    "<tr>"
                    + "".join(f"<td{' class=n' * bool(NUMERIC.match(c))}>{html.escape(c)}</td>" for c in row)
                    + "</tr>"
                    for row in block[2]
                )
                out.append(f"<table><tr>{head}</tr>{body}</table>")
            else:
                out.append(
                    f"<figure><img src='{_image_source(block[1], folder)}' alt='{html.escape(block[2])}'>"
                    f"<figcaption>{html.escape(block[2])}</figcaption></figure>"
                )
        return "\n".join(out) + "\n</body></html>\n"


def _image_source(path: Path, folder: Path | None) -> str:
    """A PNG as a data URI where `folder` is given (the page stands alone), else its relative path."""
    if folder is None:
        return html.escape(path.as_posix())
    return "data:image/png;base64," + base64.b64encode((Path(folder) / path).read_bytes()).decode("ascii")
