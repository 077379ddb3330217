#!/usr/bin/env bash
# Install streamasr and the system packages it uses (Debian/Ubuntu).
#
#   scripts/install.sh            # runtime: ffmpeg (mp3, m4a...), PortAudio (microphone)
#   scripts/install.sh --test     # plus what the tests use: TTS engines, sox, Chromium
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/python.sh

packages=(ffmpeg libportaudio2)
if [ -n "${NEEDS_VENV:-}" ]; then packages+=(python3-venv); fi
extras="serve,mic"
if [ "${1:-}" = "--test" ]; then
    packages+=(espeak-ng flite sox chromium)
    extras="all,dev"
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
missing=()
for p in "${packages[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing system packages: ${missing[*]}" >&2
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ -n "${NEEDS_VENV:-}" ]; then
    echo "the system Python is externally managed (PEP 668): installing into .venv/" >&2
    python3 -m venv .venv
fi
"$PY" -m pip install -q --disable-pip-version-check -e ".[${extras}]"
