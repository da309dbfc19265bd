"""The comparison report as files: one self-contained HTML page (its pictures inlined, no
request leaves the page), the same pictures as PNG, and the numbers as JSON and Markdown."""

from __future__ import annotations

import base64
import html
import json
import math
import re
from pathlib import Path

from ..fileio import write_bytes_atomic, write_text_atomic
from ..render import encode_png
from . import plots
from .comparison import Comparison
from .faithfulness import plot_curves

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 4px 10px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
img { max-width: 100%; }
.swatch { display: inline-block; width: 12px; height: 12px; margin-right: 6px; }
"""


def write_comparison(comparison: Comparison, out: Path) -> list[Path]:
    """Write report.html, report.json, report.md, curves.png and one PNG per image (its
    row of overlays) into `out`, each atomically; the written paths."""
    out.mkdir(parents=True, exist_ok=True)
    pictures: dict[str, bytes] = {}
    if any(r.deletion_curve or r.insertion_curve for r in comparison.evaluation.rows):
        pictures["curves.png"] = encode_png(plot_curves(comparison.evaluation))
    names = _file_names([image.name for image in comparison.images])
    for image, name in zip(comparison.images, names, strict=True):
        pictures[name] = encode_png(image.row)
    written = []
    for name, data in pictures.items():
        write_bytes_atomic(out / name, data)
        written.append(out / name)
    documents = {
        "report.html": page(comparison, pictures, names),
        "report.json": json.dumps(_data(comparison, names), indent=2) + "\n",
        "report.md": markdown(comparison),
    }
    for name, text in documents.items():
        write_text_atomic(out / name, text)
        written.append(out / name)
    return written


def page(comparison: Comparison, pictures: dict[str, bytes], names: list[str]) -> str:
    """The report as one HTML document with its pictures as data URIs."""
    head, rows = _table(comparison)
    swatches = [plots.colour(i) for i in range(len(rows))]
    table = ["<table>", "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"]
    for (r, g, b), cells in zip(swatches, rows, strict=True):
        first = f'<span class="swatch" style="background: rgb({r},{g},{b})"></span>'
        cells_html = [first + html.escape(cells[0]), *(html.escape(c) for c in cells[1:])]
        table.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells_html) + "</tr>")
    table.append("</table>")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<link rel="icon" href="data:,">',  # no request for a favicon
        "<title>Comparison of explanation methods</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>Comparison of explanation methods</h1>",
        f"<p>{len(comparison.images)} image(s), each explained for the class the model "
        "predicts. Per method: the faithfulness metrics, seconds and model forwards per "
        "image"
        + (
            ", and the mean correlation of its map with exact Score-CAM's"
            if comparison.correlations
            else ""
        )
        + ".</p>",
        *table,
    ]
    if "curves.png" in pictures:
        parts += ["<h2>Deletion and insertion curves</h2>", _img(pictures["curves.png"], "curves")]
    parts.append("<h2>Maps</h2>")
    for image, name in zip(comparison.images, names, strict=True):
        title = f"{image.name}: {image.label} ({image.score:.2f})"
        parts += [f"<h3>{html.escape(title)}</h3>", _img(pictures[name], title)]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def markdown(comparison: Comparison) -> str:
    """The report's table as Markdown."""
    head, rows = _table(comparison)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(cells) + " |" for cells in rows]
    return "\n".join(lines) + "\n"


def _table(comparison: Comparison) -> tuple[list[str], list[list[str]]]:
    """`evaluate`'s table, with the correlation with exact Score-CAM when it was measured."""
    head, rows = comparison.evaluation.table()
    if not comparison.correlations:
        return head, rows
    found = comparison.correlations
    corr = [_number(found[cells[0]]) if cells[0] in found else "1" for cells in rows]
    return [*head, "corr. with exact"], [[*cells, c] for cells, c in zip(rows, corr, strict=True)]


def _data(comparison: Comparison, names: list[str]) -> dict[str, object]:
    return {
        **comparison.evaluation.to_dict(),
        "correlation_with_exact": {
            k: None if math.isnan(v) else v for k, v in comparison.correlations.items()
        },
        "pictures": [
            {"image": i.name, "class_id": i.class_id, "label": i.label, "score": i.score, "file": n}
            for i, n in zip(comparison.images, names, strict=True)
        ],
    }


def _img(data: bytes, alt: str) -> str:
    encoded = base64.b64encode(data).decode("ascii")
    return f'<p><img alt="{html.escape(alt)}" src="data:image/png;base64,{encoded}"></p>'


def _file_names(names: list[str]) -> list[str]:
    """A PNG name per image, unique and safe (the index first)."""
    stems = [re.sub(r"[^\w.-]+", "_", Path(name).stem) or "image" for name in names]
    return [f"{n + 1:02d}-{stem}.png" for n, stem in enumerate(stems)]


def _number(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.4f}"
