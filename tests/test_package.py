"""The default model, the LM and the web page load from an installed wheel, not only a checkout."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_wheel_ships_and_loads_the_runtime_files(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "dist"), str(ROOT)], check=True, capture_output=True)
    wheel = next((tmp_path / "dist").glob("streamasr-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for required in ("streamasr/models/default.pt", "streamasr/models/lm.npz", "streamasr/models/words.npz",
                     "streamasr/service/web/index.html", "streamasr/corpus/games.py"):
        assert required in names, f"{required} missing from {wheel.name}"
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True)
    code = (
        "import streamasr, numpy as np\n"
        "import streamasr.service.server, streamasr.training.train, streamasr.bench, streamasr.client.mic\n"
        "from streamasr import Recognizer, step, finish\n"
        "assert streamasr.__file__.startswith(%r), streamasr.__file__\n"
        "rec = Recognizer.load()\n"
        "state, _ = step(rec, rec.initial_state(), np.zeros(16000, np.float32))\n"
        "finish(rec, state)\n"
        "print('ok', rec.name)\n" % str(target)
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok")


def _import_graph() -> dict[str, set[str]]:
    """streamasr module -> the streamasr modules it imports (at any depth in its code)."""
    import ast

    mods = {}
    for path in (ROOT / "streamasr").rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        mods[name] = path
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("streamasr"):
                deps |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in mods else node.module
                         for a in node.names}
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.startswith("streamasr")}
        graph[name] = {d for d in deps if d in mods and d != name}
    return graph


def test_imports_point_one_way() -> None:
    graph = _import_graph()
    assert "streamasr.engine.stream" in graph and graph["streamasr.engine.stream"]
    # The engine stands alone: it imports only itself and the shared result and error types.
    shared = {"streamasr.errors", "streamasr.results", "streamasr.atomic"}
    for name, deps in graph.items():
        if name.startswith("streamasr.engine"):
            assert {d for d in deps if not d.startswith("streamasr.engine")} <= shared, name
    # No module imports one that imports it back, however long the way round.
    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            node = todo.pop()
            if node == goal:
                return True
            if node not in seen:
                seen.add(node)
                todo += graph.get(node, ())
        return False
    cycles = sorted(f"{a} <-> {b}" for a in graph for b in graph[a] if reaches(b, a))
    assert cycles == []
    # Only the command line configures logging; no library module imports it.
    assert not [name for name, deps in graph.items() if "streamasr.cli" in deps and name != "streamasr.__main__"]
