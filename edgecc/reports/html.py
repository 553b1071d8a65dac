"""report.html: the same document as report.md, as HTML tables, with the plots (PNGs inlined as
base64 so the file stands alone; matplotlib is the optional `plots` extra).

A one-screen summary comes first (latency against ONNX Runtime, correctness, size, energy,
tuning, the three slowest kernels and why), the details below it.
"""

from __future__ import annotations

import html
from pathlib import Path

from edgecc.reports.document import html_blocks, inline_html

_STYLE = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;max-width:1120px;margin:1.5em auto;
padding:0 1em;color:#1d1d1f;line-height:1.45;font-size:15px}
h1{font-size:1.6em;margin:.2em 0 .4em}h2{font-size:1.25em;margin:1.6em 0 .5em;border-bottom:1px solid #ddd;
padding-bottom:.2em}
nav{font-size:.9em;margin-bottom:1em}nav a{margin-right:.9em;color:#0a58ca;text-decoration:none}
section.summary{background:#f4f7fb;border:1px solid #cfdcec;border-radius:8px;padding:.2em 1.2em 1em}
section.summary h2{border:none;margin-top:.8em}
section.summary table td:first-child{font-weight:600;white-space:nowrap;width:7.5em;vertical-align:top}
.table-wrap{overflow-x:auto;margin:.6em 0}
table{border-collapse:collapse;font-size:.92em}th,td{padding:.3em .65em;border-bottom:1px solid #e3e3e3;
text-align:left;vertical-align:top}th{background:#f0f0f0;font-weight:600}td.num,th.num{text-align:right;
font-variant-numeric:tabular-nums;white-space:nowrap}tbody tr:nth-child(even){background:#fafafa}
caption{caption-side:bottom;text-align:left;font-size:.88em;color:#555;padding-top:.3em}
code{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.9em;background:#f2f2f2;padding:0 .25em;
border-radius:3px;overflow-wrap:anywhere}
p.warning{color:#8a4b00;background:#fff4e0;border-left:4px solid #e69500;padding:.4em .7em}
p.note{color:#444;font-size:.92em}
figure{margin:1em 0}img.plot{max-width:100%;height:auto;border:1px solid #ddd}
figcaption{font-size:.88em;color:#555;margin-top:.3em}
"""


def _plots(folder: Path, report: dict) -> dict[str, str | None]:
    from edgecc.reports import plots
    from edgecc.reports.siblings import comparable_points

    if not plots.available():
        return {}
    return {
        "Tuning curve": plots.tuning_curve(report),
        "Per-kernel time": plots.kernel_bars(report),
        "Roofline": plots.roofline(report),
        "Latency / size / accuracy": plots.pareto(comparable_points(folder, report)),
    }


def render_html(folder: Path, report: dict, markdown: str | None = None) -> str:
    """`markdown` is accepted for older callers and ignored: the HTML is built from the same document."""
    from edgecc.reports import plots as plot_module
    from edgecc.reports.markdown import report_sections, title

    sections = report_sections(report, folder)
    figures = _plots(Path(folder), report)
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>{html.escape(title(report))}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title(report))}</h1>",
        "<nav>" + "".join(f"<a href='#{_anchor(s)}'>{html.escape(s.title)}</a>" for s in sections) + "</nav>",
    ]
    if not plot_module.available():
        parts.append(
            "<p class='note'>Plots need matplotlib, which is not installed: "
            "<code>pip install 'edgecc[plots]'</code>.</p>"
        )
    for section in sections:
        parts.append(f"<section id='{_anchor(section)}' class='{section.css}'><h2>{inline_html(section.title)}</h2>")
        parts.append(html_blocks(section.blocks, figures))
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _anchor(section) -> str:
    return section.anchor or "".join(c if c.isalnum() else "-" for c in section.title.lower()).strip("-")
