"""The pieces every imgclf HTML page is made of: the stylesheet, escaping, number formats,
tables, fact grids, embedded PNG figures and sections. Cells and values passed in are HTML
already; text from users goes through ``e`` (``html.escape``).

Example:
    >>> table(["class", "F1"], [[e("cat"), num(0.91234, 3)]], numeric={1})  # doctest: +ELLIPSIS
    '<table>...'
"""
from __future__ import annotations

import base64
import html
import math
import re
import time
from pathlib import Path
from typing import Any

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
WIDE_PNG, WIDE_SCALE = 2000, 0.6  # wider figures scroll, at this fraction of their pixel size

CSS = """
*{box-sizing:border-box}
body{margin:0;background:#f4f5f7;color:#1f2937;
  font:15px/1.55 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif}
main{max-width:1080px;margin:0 auto;padding:28px 20px 60px}
header h1{margin:0;font-size:1.9rem;letter-spacing:-.01em;word-break:break-word}
.meta{margin:6px 0 4px;color:#4b5563}
.meta span{margin-right:14px;white-space:nowrap}
nav{margin:10px 0 18px}
nav a{color:#2563eb;text-decoration:none;margin-right:14px;font-size:.9rem}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(170px,1fr));gap:14px;margin:18px 0}
.card,section{background:#fff;border-radius:12px;box-shadow:0 1px 3px rgba(0,0,0,.08)}
.card{padding:16px 18px;border-top:4px solid #2563eb}
.card.alt{border-top-color:#ea580c}
.card .v{font-size:1.9rem;font-weight:650;font-variant-numeric:tabular-nums}
.card .k{font-size:.78rem;text-transform:uppercase;letter-spacing:.06em;color:#6b7280}
section{padding:20px 24px;margin:18px 0}
h2{margin:0 0 12px;font-size:1.3rem}
h3{margin:18px 0 8px;font-size:1.02rem;color:#374151}
.facts{display:grid;grid-template-columns:repeat(auto-fit,minmax(220px,1fr));gap:8px 24px}
.facts div{border-bottom:1px solid #eef0f3;padding:4px 0}
.facts b{display:block;font-size:.75rem;text-transform:uppercase;letter-spacing:.05em;
  color:#6b7280;font-weight:600}
table{border-collapse:collapse;width:100%;font-size:.88rem;margin:6px 0}
th,td{padding:5px 10px;text-align:left;border-bottom:1px solid #eceef2}
th{background:#f8fafc;font-weight:600;position:sticky;top:0}
tbody tr:nth-child(even){background:#fafbfc}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
tr.best td{background:#fff7ed;font-weight:600}
.scroll{max-height:520px;overflow:auto;border:1px solid #eceef2;border-radius:8px}
img{max-width:100%;height:auto;display:block;margin:8px auto;border-radius:6px}
.wide{overflow-x:auto}
.wide img{max-width:none}
pre{background:#f6f8fa;border:1px solid #eceef2;border-radius:8px;padding:12px 14px;overflow:auto;
  font:13px/1.45 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
details{margin:8px 0}
summary{cursor:pointer;color:#2563eb}
.note{color:#6b7280;font-style:italic;margin:6px 0}
.ci{color:#6b7280;font-size:.8em;font-weight:400;white-space:nowrap}
.card .v .ci{display:block;font-size:.9rem}
.warn{color:#b45309;font-weight:600}
footer{color:#9ca3af;font-size:.8rem;text-align:center;margin-top:30px}
"""


def e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def to_float(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def num(value: Any, digits: int = 4) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return "–" if math.isnan(to_float(value)) else f"{to_float(value):.{digits}f}"


def pct(value: Any) -> str:
    return "–" if math.isnan(to_float(value)) else f"{100 * to_float(value):.1f}%"


def interval(ci: Any, percent: bool = False, digits: int = 3) -> str:
    """A 95% interval ``[lo, hi]`` shown small after its value; '' when there is none."""
    if not isinstance(ci, (list, tuple)) or len(ci) != 2:
        return ""
    lo, hi = (pct(v) if percent else num(v, digits) for v in ci)
    return f' <span class=ci title="95% bootstrap interval">[{lo}, {hi}]</span>'


def note(text: str) -> str:
    """A note paragraph; `backticked` spans (a command to run) become <code>."""
    return '<p class="note">' + re.sub(r"`([^`]+)`", r"<code>\1</code>", e(text)) + "</p>"


def bar(fraction: float) -> str:
    # A data bar drawn by the cell background: a chart inside the table, no image needed.
    share = max(0.0, min(100.0, 100 * fraction))
    return (f' style="width:28%;background:linear-gradient(90deg,rgba(37,99,235,.16) {share:.1f}%,'
            f'transparent {share:.1f}%)"')


def table(headers: list[str], rows: list[list[str]], numeric: set[int] = frozenset(),
           row_class: list[str] | None = None) -> str:
    """Cells are HTML already (escaped by the caller; a cell may be a whole ``<td ...>``)."""
    def align(i: int) -> str:
        return " class=num" if i in numeric else ""
    head = "".join(f"<th{align(i)}>{e(h)}</th>" for i, h in enumerate(headers))
    body = []
    for r, row in enumerate(rows):
        cls = f' class="{row_class[r]}"' if row_class and row_class[r] else ""
        cells = "".join(cell if cell.startswith("<td") else f"<td{align(i)}>{cell}</td>"
                        for i, cell in enumerate(row))
        body.append(f"<tr{cls}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def facts(items: list[tuple[str, str]]) -> str:
    """Label/value pairs; values are HTML already."""
    cells = "".join(f"<div><b>{e(label)}</b>{value}</div>" for label, value in items)
    return f'<div class="facts">{cells}</div>'


def figure(path: Path | None, alt: str, missing: str) -> str:
    if path is None or not Path(path).is_file():
        return note(missing)
    raw = Path(path).read_bytes()
    img = f'<img alt="{e(alt)}" src="data:image/png;base64,{base64.b64encode(raw).decode()}"'
    width = int.from_bytes(raw[16:20], "big") if raw[:8] == PNG_SIGNATURE else 0
    if width <= WIDE_PNG:
        return img + ">"
    # Shrunk to the column, a 30-class confusion matrix has unreadable labels: show it larger
    # and let it scroll sideways instead.
    return (f'<div class="wide">{img} style="width:{int(width * WIDE_SCALE)}px"></div>'
            + note("A wide figure: scroll sideways to see all of it."))


def section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{e(title)}</h2>{body}</section>'


def duration(seconds: Any) -> str:
    if math.isnan(to_float(seconds)):
        return "–"
    minutes, secs = divmod(int(round(to_float(seconds))), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


def page(title: str, body: str, css: str = "") -> str:
    """A whole self-contained HTML page: ``title`` (text, escaped here) and ``body`` (HTML already)
    inside ``<main>``, the stylesheet (plus ``css``) inline, a footer with the time it was written."""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>{e(title)}</title><style>{CSS}{css}</style></head>"
            f"<body><main>{body}<footer>written by imgclf on {time.strftime('%Y-%m-%d %H:%M')}</footer>"
            "</main></body></html>\n")
