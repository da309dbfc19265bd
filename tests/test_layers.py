"""The package's layers: every import points down (or sideways within a layer), never up, and
no two modules import each other in a cycle. Read from the source, so the rule holds as code
is added."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import ROOT

PACKAGE = ROOT / "scorecam_onnx"

# Bottom first. A module belongs to the first entry naming it or its folder.
LAYERS: list[tuple[str, ...]] = [
    ("errors", "quiet", "fileio", "metrics", "render"),  # shared ground
    ("runners",),  # ONNX Runtime, remote
    ("bundle", "cam", "detection"),  # bundles; the CAM family and detections on arrays
    ("targets", "methods", "options"),  # what to explain, and how
    ("images", "formats", "pictures", "request"),  # images, their files; settings → a request
    ("forwards", "runtime"),  # a bundle's graphs as runners
    ("segmentation", "detectors", "attribution", "explainer"),  # the public API
    ("batch", "evaluation"),
    ("quantize",),
    ("protocol",),  # one request, any transport
    ("serve", "distributed", "triton", "mlserver", "scorecam_onnx_export"),  # extras
    ("cli", "__main__", "__init__"),
]


def layer_of(module: str) -> int:
    """The layer index of a dotted module name inside the package (or the export package)."""
    parts = module.split(".")
    key = parts[0] if parts[0] != "scorecam_onnx" else (parts[1] if len(parts) > 1 else "__init__")
    for index, names in enumerate(LAYERS):
        if key in names:
            return index
    raise AssertionError(f"{module}: in no layer; add it to LAYERS")


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[0] == "export":
        parts[0] = "scorecam_onnx_export"
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def imports(path: Path, name: str | None = None) -> set[str]:
    """Every module of the package that `path` (the module `name`, by default read off its
    place) imports, at the top or inside a function."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    here = (name or module_name(path)).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join([*base, *([node.module] if node.module else [])])
            # `from . import graphs` imports a module; `from .graphs import dims`, a name
            modules = {f"{target}.{a.name}" for a in node.names if _is_module(f"{target}.{a.name}")}
            found.update(modules if len(modules) == len(node.names) else {target, *modules})
    return {m for m in found if m.split(".")[0] in ("scorecam_onnx", "scorecam_onnx_export")}


def _is_module(dotted: str) -> bool:
    parts = dotted.split(".")
    root = ROOT / ("export" if parts[0] == "scorecam_onnx_export" else "scorecam_onnx")
    path = root.joinpath(*parts[1:])
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


SOURCES = sorted([*PACKAGE.rglob("*.py"), *(ROOT / "export").rglob("*.py")])


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_down(path):
    upward = upward_imports(path)
    assert not upward, f"{module_name(path)} imports a higher layer: {upward}"


def upward_imports(path: Path, name: str | None = None) -> list[str]:
    mine = layer_of(name or module_name(path))
    return sorted(m for m in imports(path, name) if layer_of(m) > mine)


REACH = ("serve", "distributed", "triton")


def reach_package(module: str) -> str | None:
    """The reach package (service, Ray, Triton) a module belongs to, if any."""
    parts = module.split(".")
    return (
        parts[1] if parts[0] == "scorecam_onnx" and len(parts) > 1 and (parts[1] in REACH) else None
    )


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_reach_packages_meet_only_through_protocol(path):
    """The service, Ray and Triton packages share code only through `protocol` and the
    layers below, never by importing each other."""
    mine = reach_package(module_name(path))
    if mine is None:
        return
    others = sorted(m for m in imports(path) if reach_package(m) not in (None, mine))
    assert not others, f"{module_name(path)} imports another reach package: {others}"


def test_the_reach_rule_catches_a_crossing(tmp_path):
    source = tmp_path / "probe.py"
    source.write_text("def f():\n    from ..serve import create_app\n")
    crossing = [
        m
        for m in imports(source, "scorecam_onnx.distributed.probe")
        if reach_package(m) not in (None, "distributed")
    ]
    assert crossing == ["scorecam_onnx.serve"]


def test_no_import_cycles():
    graph = {module_name(p): {m for m in imports(p) if m != module_name(p)} for p in SOURCES}
    # a package's __init__ re-exports its modules; importing the package means its __init__
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if nxt not in graph:
                continue
            # a module may import its own package's __init__ names (they are defined below it)
            if node.startswith(nxt + "."):
                continue
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join([*trail, node, nxt]))
            if nxt not in state:
                visit(nxt, [*trail, node])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [])


def test_every_folder_says_what_lives_there():
    for init in PACKAGE.rglob("__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8")))
        assert doc, f"{init.relative_to(ROOT)} has no docstring"


def test_the_rule_catches_an_upward_import(tmp_path):
    """The checker itself, on a module written for it: the engine importing the service, a
    lazy import inside a function, and a module imported from its package, are all seen."""
    source = tmp_path / "probe.py"
    source.write_text(
        "from ..serve import create_app\n"
        "from . import engine\n"
        "def f():\n    from ..explainer import Explainer\n"
    )
    found = upward_imports(source, "scorecam_onnx.cam.probe")
    assert found == ["scorecam_onnx.explainer", "scorecam_onnx.serve"]
    assert "scorecam_onnx.cam.engine" in imports(source, "scorecam_onnx.cam.probe")
