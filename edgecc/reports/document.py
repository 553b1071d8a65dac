"""The report as a small document (sections of paragraphs, lists, tables and plot slots), built once
from report.json and written out twice: as markdown (report.md) and as HTML (report.html).

Inline text may use **bold** and `code`; both writers understand exactly these two.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field


@dataclass
class Paragraph:
    text: str
    kind: str = ""  # "warning" / "note": styled in HTML, prefixed in markdown


@dataclass
class Bullets:
    items: list[str]
    ordered: bool = False


@dataclass
class Table:
    header: list[str]
    rows: list[list]
    numeric: list[bool] | None = None  # right-aligned columns; by default the columns whose cells are numbers
    caption: str = ""

    def aligned(self) -> list[bool]:
        if self.numeric is not None:
            return self.numeric
        return [
            bool(self.rows) and all(_looks_numeric(row[i]) for row in self.rows if row[i] not in ("", "-"))
            for i in range(len(self.header))
        ]


@dataclass
class Plot:
    key: str  # which figure html.py draws here (markdown leaves it out)
    caption: str = ""


@dataclass
class Section:
    title: str
    blocks: list = field(default_factory=list)
    anchor: str = ""
    css: str = ""  # e.g. "summary": the HTML gives it its own box

    def add(self, *blocks) -> Section:
        self.blocks.extend(b for b in blocks if b is not None)
        return self


def _looks_numeric(cell) -> bool:
    if isinstance(cell, (int, float)):
        return True
    return bool(re.fullmatch(r"[-+]?[\d,.]+(e[-+]?\d+)?\s*(%|x|ms|us|s|MB|GB/s|GFLOP/s|J|W)?", str(cell).strip()))


LIST_ITEMS = 8  # a list in a cell shows this many items, then how many more


def cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        shown = ", ".join(cell(v) for v in value[:LIST_ITEMS])
        return (shown + f", ... ({len(value)} in all)") if len(value) > LIST_ITEMS else (shown or "-")
    if isinstance(value, dict):
        return "; ".join(f"{k}: {cell(v)}" for k, v in value.items()) or "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


# --- markdown ---------------------------------------------------------------------------------


def _md_cell(value) -> str:
    return cell(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(table: Table) -> list[str]:
    lines = [
        "| " + " | ".join(_md_cell(h) for h in table.header) + " |",
        "|" + "|".join("---:" if right else "---" for right in table.aligned()) + "|",
    ]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in table.rows]
    if table.caption:
        lines += ["", table.caption]
    return lines


def to_markdown(title: str, sections: list[Section]) -> str:
    lines = [f"# {title}", ""]
    for section in sections:
        lines += [f"## {section.title}", ""]
        for block in section.blocks:
            if isinstance(block, Paragraph):
                prefix = {"warning": "**Warning:** ", "note": "Note: "}.get(block.kind, "")
                lines += [prefix + block.text, ""]
            elif isinstance(block, Bullets):
                lines += [(f"{i}. " if block.ordered else "- ") + item for i, item in enumerate(block.items, 1)]
                lines.append("")
            elif isinstance(block, Table):
                lines += markdown_table(block) + [""]
    return "\n".join(lines).rstrip() + "\n"


# --- HTML ---------------------------------------------------------------------------------------


def inline_html(text: str) -> str:
    """Escape, then turn **bold** and `code` into tags."""
    out = html.escape(str(text), quote=True)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)


def html_table(table: Table) -> str:
    right = table.aligned()
    head = "".join(f"<th class='{'num' if r else ''}'>{inline_html(cell(h))}</th>" for h, r in zip(table.header, right))
    body = "".join(
        "<tr>"
        + "".join(f"<td class='{'num' if r else ''}'>{inline_html(cell(c))}</td>" for c, r in zip(row, right))
        + "</tr>"
        for row in table.rows
    )
    caption = f"<caption>{inline_html(table.caption)}</caption>" if table.caption else ""
    thead = f"<thead><tr>{head}</tr></thead>" if any(str(h) for h in table.header) else ""  # key/value tables
    return f"<div class='table-wrap'><table>{caption}{thead}<tbody>{body}</tbody></table></div>"


def html_blocks(blocks: list, plots: dict[str, str | None]) -> str:
    parts = []
    for block in blocks:
        if isinstance(block, Paragraph):
            parts.append(f"<p class='{block.kind}'>{inline_html(block.text)}</p>")
        elif isinstance(block, Bullets):
            tag = "ol" if block.ordered else "ul"
            parts.append(f"<{tag}>" + "".join(f"<li>{inline_html(i)}</li>" for i in block.items) + f"</{tag}>")
        elif isinstance(block, Table):
            parts.append(html_table(block))
        elif isinstance(block, Plot) and plots.get(block.key):
            caption = f"<figcaption>{inline_html(block.caption)}</figcaption>" if block.caption else ""
            parts.append(
                f"<figure><img class='plot' alt='{html.escape(block.key)}' "
                f"src='data:image/png;base64,{plots[block.key]}'>{caption}</figure>"
            )
    return "\n".join(parts)
