"""The wheel installs one namespace, and importing the core stays light."""

import inspect
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import joyvl_agent

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "vllm", "transformers", "faster_whisper", "ctranslate2")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    src = tmp_path_factory.mktemp("src") / "project"  # build a copy: no build/ in the tree
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".venv", ".git", "build", "dist", ".cache", "*.egg-info", "__pycache__", "*.db*",
        ".hypothesis", ".pytest_cache", ".ruff_cache"))
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out),
         str(src)],
        check=True, capture_output=True, cwd=src,
    )
    (found,) = out.glob("joyvl_agent-*.whl")
    return found


def test_wheel_has_one_namespace_and_no_generic_top_level_packages(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert tops == {"joyvl_agent"}
    for sub in ("mcp_server", "graphs", "tools"):
        assert f"joyvl_agent/{sub}/__init__.py" in names
    assert "joyvl_agent/py.typed" in names
    for page in ("index.html", "app.js", "app.css"):  # the web UI ships with the package
        assert f"joyvl_agent/ui/static/{page}" in names
    for pkg in (ROOT / "joyvl_agent").rglob("__init__.py"):
        rel = pkg.relative_to(ROOT).as_posix()
        assert rel in names, f"{rel} missing from the wheel: add it to [tool.setuptools]"
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "joyvl = joyvl_agent.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_import_does_not_pull_heavy_dependencies():
    code = (
        "import sys, joyvl_agent, joyvl_agent.cli, joyvl_agent.tools, joyvl_agent.graphs, "
        "joyvl_agent.mcp_server; print(','.join(m for m in " + repr(HEAVY) +
        " if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_public_names_are_exported():
    public = {n for n, v in vars(joyvl_agent).items()
              if not n.startswith("_") and not inspect.ismodule(v)}
    assert set(joyvl_agent.__all__) - {"__version__"} == public
    assert len(joyvl_agent.__all__) == len(set(joyvl_agent.__all__))  # order: ruff RUF022
