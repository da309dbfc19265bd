"""The documentation site: it builds strictly and offline, its references list every public
name, command, flag, setting and manifest key, and in a real Chromium no page asks anything of
another machine."""

from __future__ import annotations

import functools
import http.server
import os
import re
import subprocess
import sys
import threading
from dataclasses import fields
from html.parser import HTMLParser
from pathlib import Path

import click
import pytest
from chromium import chromium, requested_urls
from conftest import DEFAULT_BUNDLE, ROOT

import scorecam_onnx
from scorecam_onnx.bundle import Bundle
from scorecam_onnx.bundle.manifest import ActivationSpec, DecoderSpec, InputSpec, OutputSpec
from scorecam_onnx.cli import main
from scorecam_onnx.request import SETTINGS


class _Page(HTMLParser):
    """A page's element ids, text and links."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.links: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        found = dict(attrs)
        if "id" in found:
            self.ids.add(found["id"])
        for key in ("href", "src"):
            if found.get(key):
                self.links.append(found[key])

    def handle_data(self, data):
        self.text.append(data)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return out


def _page(site: Path, name: str) -> _Page:
    page = _Page()
    page.feed((site / name / "index.html").read_text(encoding="utf-8"))
    return page


def _words(text: str) -> str:
    """Text as its words alone (tables escape and wrap some characters)."""
    return " ".join(re.findall(r"[\w.,:;'()-]+", text))


def _commands(group: click.Group, prefix: str = "") -> dict[str, click.Command]:
    found = {}
    for name, command in group.commands.items():
        found[prefix + name] = command
        if isinstance(command, click.Group):
            found.update(_commands(command, f"{prefix}{name} "))
    return found


def test_the_api_reference_documents_every_public_name(site):
    page = _page(site, "reference/api")
    missing = [n for n in scorecam_onnx.__all__ if f"scorecam_onnx.{n}" not in page.ids]
    assert not missing
    # Methods of the main class are documented too.
    assert {"scorecam_onnx.Explainer.explain", "scorecam_onnx.Explainer.detect"} <= page.ids


def test_the_cli_reference_lists_every_command_and_flag(site):
    text = " ".join(_page(site, "reference/cli").text)
    commands = _commands(main)
    assert len(commands) >= 12 and "UNSET" not in text  # no click internals shown as defaults
    for name, command in commands.items():
        assert f"scorecam-onnx {name}" in text, name
        for param in command.params:
            for opt in (*param.opts, *param.secondary_opts):
                if opt.startswith("-"):
                    assert opt in text, f"{name}: {opt}"
            if param.help:
                assert _words(param.help)[:60] in _words(text), f"{name}: {param.help}"


def test_the_service_reference_lists_every_setting(site):
    text = " ".join(" ".join(_page(site, "reference/service").text).split())
    for setting in SETTINGS:
        assert setting.name in text and setting.flag in text, setting.name
        assert " ".join(setting.help.split())[:50] in text, setting.name


def test_the_manifest_reference_names_every_key(site):
    text = " ".join(_page(site, "reference/manifest").text)
    keys = set(Bundle.load(DEFAULT_BUNDLE).manifest.to_dict())
    for spec in (InputSpec, ActivationSpec, OutputSpec, DecoderSpec):
        keys |= {f.name for f in fields(spec)}
    assert not [k for k in keys if k not in text]


def test_every_page_links_only_to_its_own_files(site):
    pages = sorted(site.rglob("*.html"))
    assert len(pages) >= 20
    for path in pages:
        page = _Page()
        page.feed(path.read_text(encoding="utf-8"))
        for link in page.links:
            if re.match(r"^(https?:)?//", link):
                continue  # links the reader may follow; nothing is loaded from them
            local = link.split("#")[0].split("?")[0]
            target = site / local.lstrip("/") if local.startswith("/") else path.parent / local
            assert not link.split("#")[0] or target.exists(), f"{path}: {link}"


@pytest.mark.browser
def test_the_site_opens_offline_in_chromium(site, tmp_path):
    """Every page, and a search, load nothing but the site's own files."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    shots = os.environ.get("SITE_SCREENSHOTS")
    try:
        driver = next(browser := chromium())
        pages = sorted(p.parent.relative_to(site) for p in site.rglob("index.html"))
        seen = []
        for page in pages:
            url = base + ("" if str(page) == "." else f"{page}/")
            driver.get(url)
            assert driver.execute_script("return document.readyState") == "complete"
            assert "404" not in driver.title, url
            if shots:
                shot = "home" if str(page) == "." else str(page).replace("/", "_")
                driver.save_screenshot(f"{shots}/{shot}.png")
            seen += requested_urls(driver)
        driver.get(base + "?q=faster")  # the search: its worker and index
        driver.execute_script(
            "document.querySelector('.md-search__input').value = 'faster';"
            "document.querySelector('.md-search__input')"
            ".dispatchEvent(new Event('input', {bubbles: true}));"
        )
        from selenium.webdriver.support.ui import WebDriverWait

        WebDriverWait(driver, 30).until(
            lambda d: d.find_elements("css selector", ".md-search-result__item")
        )
        seen += requested_urls(driver)
        # chrome: and about: are the browser's own pages (its new tab), not the network.
        outside = [
            u for u in seen if not u.startswith((base, "data:", "blob:", "chrome:", "about:"))
        ]
        assert not outside
        assert any("search_index.json" in u for u in seen)
        assert len(seen) > len(pages)
    finally:
        server.shutdown()
        next(browser, None)
