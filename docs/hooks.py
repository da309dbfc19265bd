"""MkDocs hook: pages that describe the request settings get their table from the settings
themselves, so the site cannot drift from what the surfaces accept."""

from __future__ import annotations

from typing import Any

from scorecam_onnx.request import SETTINGS, Setting

PLACEHOLDER = "<!-- settings-table -->"

KINDS = {
    "int": "integer",
    "bool": "true / false",
    "choice": "one of the values",
    "names": "layer names (comma-separated or a list)",
    "ids": "class id, or a list of ids",
    "mask": "image (a file; base64 PNG in requests)",
    "boxes": "x1,y1,x2,y2[,class], or a list of them",
    "fraction": "number between 0 and 1",
}


def _accepts(setting: Setting) -> str:
    if setting.choices:
        return ", ".join(f"`{c}`" for c in setting.choices)
    accepted = KINDS.get(setting.kind, setting.kind)
    if setting.low is not None:
        accepted += f", at least {setting.low}"
    return accepted


def _row(setting: Setting) -> str:
    default = "–" if setting.default is None else f"`{setting.default}`"
    flag = f"`{setting.flag}`" + (" (repeatable)" if setting.repeat else "")
    text = setting.help.replace("|", "\\|")
    return f"| `{setting.name}` | {flag} | {_accepts(setting)} | {default} | {text} |"


def settings_table() -> str:
    """The request settings as a Markdown table, one row per setting."""
    head = "| parameter | flag | accepts | default | what it does |\n|---|---|---|---|---|"
    return "\n".join([head, *(_row(s) for s in SETTINGS)])


def on_page_markdown(markdown: str, **_: Any) -> str:
    return markdown.replace(PLACEHOLDER, settings_table())


def on_page_content(html: str, **_: Any) -> str:
    # mkdocs-click prints click's marker for "no default" (Sentinel.UNSET) as a default.
    return html.replace("<td><code>Sentinel.UNSET</code></td>", "<td></td>")
