"""Every form in the command-line guide's synopsis is one the commands accept: each flag
exists, a flag shown without a value is a switch, a value shown `…` times is a flag given
once per value (`[--flag X]...`, a repeatable option), and `ARG...` is a variadic argument.
The oracle is click's own definition of each command."""

from __future__ import annotations

import re

import click
import pytest
from conftest import ROOT

from scorecam_onnx.cli import main

GUIDE = (ROOT / "docs" / "guides" / "cli.md").read_text(encoding="utf-8")


def _synopses() -> dict[str, str]:
    block = GUIDE.split("## Synopsis", 1)[1].split("```text", 1)[1].split("```", 1)[0]
    found: dict[str, str] = {}
    current = None
    for line in block.splitlines():
        text = re.split(r"\s#\s", line)[0].rstrip()
        if not text.strip() or text.lstrip().startswith("#"):
            continue
        if text.startswith("scorecam-onnx "):
            current = text.split()[1]
            found[current] = (
                found.get(current, "") + " " + text.split(None, 2)[2:][0]
                if (len(text.split()) > 2)
                else found.get(current, "")
            )
        elif current is not None:
            found[current] += " " + text.strip()
    return found


SYNOPSES = _synopses()
FLAG = re.compile(r"(--[\w-]+)(?:[ =](?![-\[(|])([^\s]+))?(\s+\.\.\.)?")


def test_the_synopsis_lists_every_command():
    assert set(SYNOPSES) == set(main.commands)


@pytest.mark.parametrize("name", sorted(SYNOPSES))
def test_each_synopsis_form_is_accepted(name):
    command = main.commands[name]
    options = {
        opt: p
        for p in command.params
        if isinstance(p, click.Option)
        for opt in (*p.opts, *p.secondary_opts)
    }
    text = SYNOPSES[name]
    for found in FLAG.finditer(text):
        flag, raw, spaced_dots = found.groups()
        assert flag in options, f"{name}: no option {flag}"
        param = options[flag]
        raw = raw or ""
        by_flag = re.search(r"[\])]\.\.\.", raw) or text[found.end() :].startswith(("]...", ")..."))
        several = re.search(r"[\w>]\.\.\.", raw)  # VALUES... (a list is ",...")
        value = re.sub(r"([\])]|\.\.\.)+$", "", raw)
        assert not (spaced_dots or several), (
            f"{name}: {flag} takes one value per flag: write [{flag} X]..."
        )
        if param.is_flag and not param.secondary_opts:
            assert not value, f"{name}: {flag} is a switch, the synopsis gives it a value"
        else:
            assert value, f"{name}: {flag} takes a value, the synopsis shows none"
        if by_flag:
            assert param.multiple, f"{name}: {flag} is shown repeated but is not repeatable"
    for argument in (p for p in command.params if isinstance(p, click.Argument)):
        shown = re.search(rf"\b{re.escape(argument.human_readable_name)}(\.\.\.)?", text)
        if argument.nargs == -1 and shown:
            assert shown.group(1), f"{name}: {argument.human_readable_name} takes several"
