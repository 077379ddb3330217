# Sourced by the install, test and quick-start scripts: sets PY to the Python that runs streamasr.
#
# A Debian/Ubuntu system Python refuses `pip install` (PEP 668, "externally managed"): there the
# project lives in a virtual environment, .venv/ in the checkout, made by scripts/install.sh.
# Anywhere else (a venv already active, pyenv, conda) the Python on PATH is used as it is.
if [ -x .venv/bin/python ]; then
    PY=.venv/bin/python
elif [ -z "${VIRTUAL_ENV:-}" ] && python3 - <<'PYEOF'
import os, sys, sysconfig
managed = os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED"))
sys.exit(0 if managed and sys.prefix == sys.base_prefix else 1)
PYEOF
then
    PY=.venv/bin/python
    NEEDS_VENV=1
else
    PY=python3
fi
# Commands the tests and scripts start by name (python, streamasr) come from the venv too.
if [ "$PY" = .venv/bin/python ]; then export PATH="$PWD/.venv/bin:$PATH"; fi
