"""scripts/pause_corpus.sh: stops and resumes a running corpus build, its pool workers included."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from conftest import SCRIPTS

SCRIPT = SCRIPTS / "pause_corpus.sh"
# Stands in for make_corpus.py: a parent with one worker child, both idle.
FAKE = """import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
print(child.pid, flush=True)
time.sleep(60)
"""


def state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def wait_for(pid: int, wanted: str) -> str:
    for _ in range(100):
        if state(pid) == wanted:
            break
        time.sleep(0.02)
    return state(pid)


def test_stops_and_resumes_the_build_and_its_workers(tmp_path: Path) -> None:
    fake = tmp_path / "scripts" / "make_corpus.py"
    fake.parent.mkdir()
    fake.write_text(FAKE)
    with subprocess.Popen([sys.executable, str(fake)], stdout=subprocess.PIPE, text=True) as parent:
        try:
            check(parent)
        finally:
            subprocess.run(["pkill", "-P", str(parent.pid)])
            parent.kill()


def check(parent: subprocess.Popen[str]) -> None:
    child = int(parent.stdout.readline())  # type: ignore[union-attr]
    done = subprocess.run(["bash", str(SCRIPT), "stop"], capture_output=True, text=True, timeout=30)
    try:
        assert done.returncode == 0, done.stderr
        assert str(parent.pid) in done.stdout
        assert wait_for(parent.pid, "T") == "T" and wait_for(child, "T") == "T"
    finally:  # a real build running beside the tests is resumed too
        resumed = subprocess.run(["bash", str(SCRIPT), "cont"], capture_output=True, text=True, timeout=30)
    assert resumed.returncode == 0 and wait_for(parent.pid, "S") == "S" and wait_for(child, "S") == "S"


def test_bad_argument_says_what_it_takes() -> None:
    done = subprocess.run(["bash", str(SCRIPT), "pause"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "usage:" in done.stderr and "got 'pause'" in done.stderr
