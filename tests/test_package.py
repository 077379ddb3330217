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
