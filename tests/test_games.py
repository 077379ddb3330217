"""The games importer end to end on fixture packages, its text rules, the role split, and the real packages."""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import pytest
import soundfile as sf

from streamasr.corpus import games, queen
from tests.conftest import load_script
from tests.game_fixtures import bass_files, build_deb, fotaq_files

needs_dpkg = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")


@pytest.mark.parametrize("raw, text", [
    ("It's WELL smart!", "it's well smart"),
    ("Flashing LIGHTS like these can be HYPNOTIC...", "flashing lights like these can be hypnotic"),
    ("I`ll take the 30 millimetre -- no, Room 512.", "i'll take the thirty millimetre no room five hundred twelve"),
    ("m'lord, \"the\" ~end~", "m'lord the end"),
    ("Phoenix at 96% now.", "phoenix at ninety six percent now"),
])
def test_clean_text(raw: str, text: str) -> None:
    assert games.clean_text(raw) == text


@pytest.mark.parametrize("text, expected", [
    ("hmm", True), ("ungh", True), ("ummm", True), ("oh oh", True), ("aaah", True), ("huh", True),
    ("oh no", False), ("hmm interesting", False), ("", False), ("um", True), ("ah ha", True),
])
def test_interjections(text: str, expected: bool) -> None:
    assert games.is_interjection(text) is expected


def test_role_split_keeps_each_role_in_one_set() -> None:
    rng = random.Random(3)
    durations = {f"r{i}": rng.uniform(10, 400) for i in range(40)}
    durations |= {"joe": 4000.0, games.UNLABELLED: 3000.0}
    split = games.split_roles(durations, "joe", seed=5, dev_share=0.1, test_share=0.1)
    assert set(split) == set(durations)  # every role exactly once (a dict cannot hold a role twice)
    assert split["joe"] == split[games.UNLABELLED] == "train"
    total = sum(durations.values())
    for name in ("dev", "test"):
        share = sum(s for r, s in durations.items() if split[r] == name) / total
        assert 0.08 <= share <= 0.15, (name, share)
    assert split == games.split_roles(durations, "joe", seed=5, dev_share=0.1, test_share=0.1)
    assert split != games.split_roles(durations, "joe", seed=6, dev_share=0.1, test_share=0.1)


def test_config_errors_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="games: unknown game 'doom'"):
        games.ImportConfig(out=tmp_path, games=("doom",))
    with pytest.raises(ValueError, match=r"dev_share must be in \[0, 0.4\], got 0.5"):
        games.ImportConfig(out=tmp_path, dev_share=0.5)


@needs_dpkg
def test_import_from_packages(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fotaq, fotaq_expected = fotaq_files()
    bass, scummvm, bass_expected = bass_files()
    debs = tmp_path / "debs"
    build_deb(tmp_path, "flight-of-the-amazon-queen", fotaq, debs)
    build_deb(tmp_path, "beneath-a-steel-sky", bass, debs)
    build_deb(tmp_path, "scummvm", scummvm, debs)
    out = tmp_path / "games"
    script = load_script("import_games")
    args = ["--out", str(out), "--debs", str(debs)]
    assert script.main(args) == 0
    report = capsys.readouterr()
    assert "fotaq: train" in report.out and "bass: train" in report.out

    rows = {}
    for game in games.GAMES:
        for name in ("train", "dev", "test", "interjections"):
            for line in (out / game / f"{name}.jsonl").read_text().splitlines():
                row = json.loads(line)
                rows[row["audio"].split("/")[-1][:-4]] = (name, row)
        assert (out / game / "licence" / "copyright").read_text() == "(c) test fixture\n"
    # Every clip with words is paired with its line; the damaged one is reported by name.
    expected = {**{k: v for k, v in fotaq_expected.items() if k != "060009J2"},
                **{k: text for k, (text, _) in bass_expected.items()}}
    assert {clip: row["raw"] for clip, (_, row) in rows.items()} == expected
    summary = json.loads((out / "fotaq" / "summary.json").read_text())
    assert any(s.startswith("060009J2:") for s in summary["skipped"])
    assert rows["JOE00421"][0] == rows["s1-0001"][0] == "interjections"  # "Ummm...", "Hmm."
    assert rows["s0-0002"][1]["voice"] == "bass:foster"
    for clip, (_, row) in rows.items():
        game = "bass" if clip.startswith("s") and "-" in clip else "fotaq"
        audio, rate = sf.read(out / game / row["audio"])
        assert rate == 16000 and audio.ndim == 1
        assert abs(len(audio) / rate - row["duration"]) < 1e-3
    # 16 kHz at the right speed: FOTAQ plays its 11,025 Hz-labelled MP3s at 11,840 Hz, so the
    # 0.6 s first clip lasts 0.6 * 11025 / 11840 s, plus the 0.2 s of silence kept at each end.
    first = sf.info(str(out / "fotaq/audio/06SSSSJ1.wav")).duration
    assert first == pytest.approx(0.6 * 11025 / queen.PLAY_RATE + 0.4, abs=0.08)

    # A second run resumes: nothing is written again, the manifests come out the same.
    before = {p: p.stat().st_mtime_ns for p in (out / "fotaq/audio").iterdir()}
    manifests = (out / "fotaq/train.jsonl").read_text()
    assert script.main(args) == 0
    assert {p: p.stat().st_mtime_ns for p in (out / "fotaq/audio").iterdir()} == before
    assert (out / "fotaq/train.jsonl").read_text() == manifests


def test_missing_package_fails_that_game_only(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no apt-get to download with
    script = load_script("import_games")
    assert script.main(["--out", str(tmp_path), "--games", "fotaq", "--debs", str(tmp_path / "none")]) == 1
    assert "no flight-of-the-amazon-queen_*.deb" in capsys.readouterr().err


# The real packages, when an earlier `scripts/import_games.py --out DIR` left them unpacked in
# DIR/packages (STREAMASR_GAMES, default data/games).
PACKAGES = Path(os.environ.get("STREAMASR_GAMES", "data/games")) / "packages"


@pytest.mark.skipif(not (PACKAGES / "flight-of-the-amazon-queen/usr").is_dir(), reason="FOTAQ not unpacked")
def test_real_fotaq_pairs_every_clip() -> None:
    archive = queen.Archive(PACKAGES / "flight-of-the-amazon-queen" / queen.ARCHIVE)
    lines = list(queen.archive_lines(archive))
    clips = {line.clip for line in lines}
    assert len(clips) == 6587  # GAME_SPEECH.md: 3,983 dialogue, 2,040 cutaway and 564 Joe clips
    assert len(archive.speech() - clips) == 158  # sound effects and odd names
    assert all(line.text.strip() for line in lines)


@pytest.mark.slow
@pytest.mark.skipif(not (PACKAGES / "beneath-a-steel-sky/usr").is_dir() or not (PACKAGES / "scummvm/usr").is_dir(),
                    reason="BASS or scummvm not unpacked")
def test_real_bass_text_decodes() -> None:
    from streamasr.corpus import sky

    disk = sky.Disk(PACKAGES / "beneath-a-steel-sky" / sky.GAME_DIR)
    sections = sky.text_sections(disk, sky.LANGUAGES["us"])
    tree = sky.find_text_tree((PACKAGES / "scummvm" / sky.SCUMMVM).read_bytes(), sections)
    assert sky.decode_line(sections[7], tree, 0) == "(c)Revolution 1993"
    assert sum(sky.section_lines(s) for s in sections) == 5169
