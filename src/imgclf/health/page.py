"""The check's HTML page: one self-contained file, thumbnails inline as data URIs, no scripts.

Each duplicate group is shown side by side with its split and label under every image and the
suggested action above; then the likely label errors (with the suggested label), the outliers,
the facts and the skipped files. Every path and label goes through ``html.escape``.

Example:
    >>> write_page(report, "health.html")
    PosixPath('health.html')
"""
from __future__ import annotations

import base64
import io
import time
from html import escape
from pathlib import Path

from imgclf.files import write_text_atomic
from imgclf.health.findings import KINDS, HealthReport

SHOWN = 60  # findings of one kind on the page at most; the JSON has them all
THUMB = 112

_CSS = """body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#222}
main{max-width:1100px;margin:auto;padding:1em 2em}h1{margin:.3em 0}h2{margin-top:1.6em}
table{border-collapse:collapse}td,th{padding:.2em .8em;text-align:left;border-bottom:1px solid #ddd}
.group{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.6em;margin:.6em 0}
.group.leak{border-color:#d33}.row{display:flex;flex-wrap:wrap;gap:.6em}
figure{margin:0;width:120px;font-size:11px;word-break:break-all}img{width:112px;height:112px;object-fit:contain;
background:#eee;image-rendering:pixelated}.tag{display:inline-block;padding:0 .5em;border-radius:3px;
background:#eee;margin-right:.3em}.tag.leak{background:#fbb}.tag.conflict{background:#fd8}.action{color:#555}"""


def _thumb(path: str) -> str:
    from PIL import Image

    from imgclf.data import BadImage, read_image
    try:
        img = read_image(path)
    except BadImage:
        return ""
    img.thumbnail((THUMB, THUMB), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, "PNG" if max(img.size) <= 64 else "JPEG", quality=85)
    kind = "png" if max(img.size) <= 64 else "jpeg"
    return f"data:image/{kind};base64,{base64.b64encode(buf.getvalue()).decode()}"


def _figure(report: HealthReport, i: int, extra: str = "") -> str:
    src = _thumb(report.paths[i])
    img = f'<img src="{src}" alt="">' if src else "<div>(unreadable)</div>"
    return (f"<figure>{img}<figcaption><b>{escape(report.splits[i])}</b> · {escape(report.labels[i])}"
            f"{extra}<br>{escape(Path(report.paths[i]).name)}</figcaption></figure>")


def _groups(report: HealthReport) -> str:
    shown = sorted(report.groups, key=lambda g: (not g.leak, not g.conflict, -len(g.members)))[:SHOWN]
    out = []
    for g in shown:
        tags = [f'<span class="tag">{escape(g.kind)}</span>', f'<span class="tag">{escape(g.scope)}</span>']
        tags += ['<span class="tag leak">leak</span>'] * g.leak + ['<span class="tag conflict">conflicting labels'
                                                                   '</span>'] * g.conflict
        action = KINDS["leak" if g.leak else "conflict" if g.conflict else "exact"][1]
        figures = "".join(_figure(report, i) for i in g.members[:12])
        more = f"<p>... and {len(g.members) - 12} more</p>" if len(g.members) > 12 else ""
        out.append(f'<div class="group{" leak" if g.leak else ""}">{"".join(tags)} '
                   f'<span class="action">{escape(", ".join(g.evidence))} · suggested: {escape(action)}</span>'
                   f'<div class="row">{figures}</div>{more}</div>')
    return "".join(out) or "<p>No duplicates found.</p>"


def _suspects(report: HealthReport, items, label: bool) -> str:
    if not items:
        return "<p>None found.</p>"
    figures = "".join(_figure(report, s.index, f"<br>→ {escape(s.suggested)} ({s.score:.2f})" if label
                              else f"<br>distance {s.score:.2f}") for s in items[:SHOWN])
    return f'<div class="row">{figures}</div>'


def write_page(report: HealthReport, path: str | Path) -> Path:
    """Write the page atomically; returns its path.

    Example:
        >>> write_page(check_dataset(ds, backbone=None), "out/health.html").name
        'health.html'
    """
    counts = report.counts()
    summary = "".join(f"<tr><td>{escape(k)}</td><td>{counts[k]}</td><td>{escape(m)}</td>"
                      f"<td>{escape(a) if counts[k] else ''}</td></tr>" for k, (m, a) in KINDS.items())
    facts = "".join(f"<tr><td>{escape(f.what)}</td><td>{escape(f.detail)}</td>"
                    f"<td>{escape(report.paths[f.index]) if f.index >= 0 else ''}</td></tr>"
                    for f in report.facts[:SHOWN * 4])
    skipped = "".join(f"<tr><td>{escape(p)}</td><td>{escape(r)}</td></tr>" for p, r in report.skipped)
    body = (f"<h1>Data health: {escape(report.root)}</h1><p>{len(report.paths)} images; checks: "
            f"{escape(', '.join(report.checks))}</p><table><tr><th>kind</th><th>found</th><th>meaning</th>"
            f"<th>suggested action</th></tr>{summary}</table>"
            f"<h2>Duplicate groups</h2>{_groups(report)}"
            f"<h2>Likely label errors</h2><p class=action>labelled class above, suggested class and "
            f"label quality below; {escape(KINDS['label'][1])}</p>{_suspects(report, report.label_issues, True)}"
            f"<h2>Outliers</h2>{_suspects(report, report.outliers, False)}"
            f"<h2>Facts</h2>{'<table>' + facts + '</table>' if facts else '<p>None.</p>'}"
            f"<h2>Skipped files</h2>{'<table>' + skipped + '</table>' if skipped else '<p>None.</p>'}")
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>data health · imgclf'
            f"</title><style>{_CSS}</style></head><body><main>{body}<footer>written by imgclf check on "
            f"{time.strftime('%Y-%m-%d %H:%M')}</footer></main></body></html>\n")
    write_text_atomic(path, page)
    return Path(path)
