"""One installable package: the wheel holds bbans alone, its installed copy works from
elsewhere, and the layers import one way."""
import ast
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from bbans.models.zoo import ZOO, weights_path

ROOT = Path(__file__).resolve().parents[1]
# The source files and the modules they install as.
SOURCES = {**{f"bbans.{p.relative_to(ROOT / 'bbans').with_suffix('').as_posix().replace('/', '.')}": p
              for p in (ROOT / "bbans").rglob("*.py")},
           **{f"bbans.models.{p.stem}": p for p in (ROOT / "models").glob("*.py")},
           "bbans.cli": ROOT / "cli.py"}
SOURCES = {name.removesuffix(".__init__"): path for name, path in SOURCES.items()}
# Each layer, and the layers it may import: the codecs (numpy only), the models (torch),
# the file-level API and the benchmarks, the command line; bbans.errors serves all.
LAYERS = {"codecs": {"codecs"}, "models": {"codecs", "models"}, "api": {"codecs", "models", "api"},
          "cli": {"codecs", "models", "api", "cli"}}


def layer(module: str) -> str:
    if module.startswith("bbans.codecs"):
        return "codecs"
    if module.startswith("bbans.models"):
        return "models"
    return "cli" if module == "bbans.cli" else "api"


def imports(path: Path):
    """(module imported, whether inside a function) for each bbans module `path` imports."""
    tree = ast.parse(path.read_text())
    nested = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
              for n in ast.walk(f) if n is not f}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in SOURCES else node.module
                     for a in node.names]
        else:
            continue
        for name in names:
            if name == "torch" or name.startswith("bbans"):
                yield name, id(node) in nested


@pytest.fixture(scope="module")
def graph():
    return {module: list(imports(path)) for module, path in SOURCES.items()}


def test_the_layers_import_only_downwards_and_never_inside_functions(graph):
    for module, found in graph.items():
        if module in ("bbans", "bbans.errors"):
            continue
        for name, nested in found:
            if name == "torch":
                assert layer(module) != "codecs", f"{module} imports torch"
                continue
            if name == "bbans.errors":
                continue
            assert name in SOURCES, f"{module} imports {name}, which is no module of bbans"
            assert layer(name) in LAYERS[layer(module)], f"{module} ({layer(module)}) imports {name} ({layer(name)})"
            # the command line loads the heavy parts when a command runs (fast --help)
            assert not nested or module == "bbans.cli", f"{module} imports {name} inside a function"


def test_the_import_graph_has_no_circle(graph):
    edges = {m: {n for n, nested in found if n in SOURCES and not nested} for m, found in graph.items()}
    state = {}

    def visit(m, path):
        assert state.get(m) != "open", "import circle: " + " -> ".join(path + [m])
        if state.get(m) is None:
            state[m] = "open"
            for n in edges[m]:
                visit(n, path + [m])
            state[m] = "done"

    for m in edges:
        visit(m, [])


def test_the_codecs_load_without_torch():
    code = "import sys, bbans, bbans.codecs, bbans.codecs.vae, bbans.codecs.vq; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"


def test_no_module_is_over_400_lines():
    for module, path in SOURCES.items():
        assert len(path.read_text().splitlines()) <= 400, module


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", out, ROOT],
                   check=True, capture_output=True)
    return next(out.glob("bbans-*.whl"))


def dist_info(wheel: Path) -> str:
    """The wheel's metadata folder: bbans-VERSION.dist-info."""
    return "-".join(wheel.name.split("-")[:2]) + ".dist-info"


def test_the_wheel_holds_bbans_alone_with_its_weights_and_cards(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"bbans", dist_info(wheel)}
    for module in SOURCES:
        assert f"{module.replace('.', '/')}.py" in names or f"{module.replace('.', '/')}/__init__.py" in names, module
    for name in ZOO:
        if weights_path(name).exists():
            assert {f"bbans/models/weights/{name}.pt", f"bbans/models/weights/{name}.json",
                    f"bbans/models/{name}.md"} <= set(names), name
    entry = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "bbans = bbans.cli:main" in entry
    assert not any(n.startswith(("tests/", "benchmarks/", "models/", "cli.py")) for n in names)


def test_the_installed_wheel_works_from_another_directory(wheel, tmp_path):
    """The wheel installed on its own (its dependencies from this environment), used
    from a folder that holds no source: the commands and the Python API."""
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", site, wheel],
                   check=True, capture_output=True)
    assert {p.name for p in site.iterdir()} - {"bin"} == {"bbans", dist_info(wheel)}
    work = tmp_path / "work"
    work.mkdir()
    env = dict(os.environ, PYTHONPATH=str(site))

    def run(*args):
        return subprocess.run([sys.executable, *args], cwd=work, env=env, capture_output=True, text=True, check=True).stdout

    images = np.random.default_rng(0).integers(0, 2, (20, 28, 28), dtype=np.uint8)
    np.save(work / "x.npy", images)
    assert run("-c", "import bbans, bbans.cli; print(bbans.__file__)").startswith(str(site))
    bbans = [sys.executable, "-c", "from bbans.cli import main; main()"]
    assert "compress" in run(*bbans[1:], "--help")
    report = json.loads(run(*bbans[1:], "compress", "x.npy", "--model", "hvae-binary", "--json"))
    assert report["model"] == "hvae-binary"
    (work / "x.npy").rename(work / "original.npy")
    run(*bbans[1:], "decompress", "x.npy.bbans")
    assert (work / "x.npy").read_bytes() == (work / "original.npy").read_bytes()
    assert "hvae-binary" in json.loads(run(*bbans[1:], "models", "--json"))
    code = "import bbans, numpy as np; x = np.load('original.npy'); assert (bbans.decompress(bbans.compress(x)) == x).all()"
    run("-c", code)
