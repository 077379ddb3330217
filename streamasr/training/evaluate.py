"""Evaluation: WER and CER (jiwer) and real-time factor of the streaming engine on a manifest."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jiwer
import numpy as np
from tqdm import tqdm

from streamasr.engine.adapt import AdaptConfig, Speaker
from streamasr.engine.beam import DecoderConfig
from streamasr.options import add_dataclass_options, dataclass_from_args
from streamasr.training.data import read_pcm
from streamasr.manifest import Utterance, read_manifest
from streamasr.errors import StreamAsrError
from streamasr.engine.run import pieces, run
from streamasr.engine.hotwords import Grammar, Hotwords
from streamasr.engine.hotwords import add_options as add_list_options
from streamasr.engine.hotwords import from_options as lists_from_options
from streamasr.engine.stream import Recognizer, keep_speaker


@dataclass(frozen=True)
class Hypothesis:
    audio: str
    voice: str
    ref: str
    hyp: str
    duration: float  # seconds of audio
    seconds: float  # wall seconds the engine took


def recognise(rec: Recognizer, audio: np.ndarray, chunk_samples: int = 0, speaker: Speaker | None = None,
              hotwords: Hotwords | None = None, grammar: Grammar | None = None) -> str:
    """Text of ``audio`` (16 kHz float32) through the streaming engine; finals joined by spaces.

    With ``speaker``, the stream starts from what the speaker's earlier streams taught and leaves
    what it learnt itself in ``speaker.adapt``.
    """
    state = rec.initial_state(adapt=speaker.adapt if speaker is not None else None, hotwords=hotwords,
                              grammar=grammar)
    state, results = run(rec, state, pieces(audio, chunk_samples))
    if speaker is not None:
        keep_speaker(rec, state, speaker)
    return " ".join(r.text for r in results if r.is_final and r.text)


def score(hyps: list[Hypothesis]) -> dict[str, float]:
    """WER, CER and real-time factor over ``hyps`` (utterances with empty references are skipped)."""
    pairs = [h for h in hyps if h.ref]
    if not pairs:
        return {"utterances": 0, "wer": float("nan"), "cer": float("nan"), "rtf": float("nan")}
    refs, outs = [h.ref for h in pairs], [h.hyp for h in pairs]
    return {
        "utterances": len(pairs),
        "hours": round(sum(h.duration for h in pairs) / 3600, 3),
        "wer": round(float(jiwer.wer(refs, outs)), 4),
        "cer": round(float(jiwer.cer(refs, outs)), 4),
        "rtf": round(sum(h.seconds for h in pairs) / max(1e-9, sum(h.duration for h in pairs)), 4),
        "sentences_right": round(sum(h.hyp == h.ref for h in pairs) / len(pairs), 4),
    }


def hotword_counts(hyps: list[Hypothesis], phrases: list[str]) -> dict[str, dict[str, int]]:
    """Per hotword phrase: how often the references say it, how many of those the hypotheses
    have (per utterance, at most as many as its reference), and how many times the hypotheses
    have it beyond their references' count (false alarms)."""
    def count(text: str, phrase: str) -> int:
        return f" {text} ".count(f" {phrase} ")

    out: dict[str, dict[str, int]] = {}
    for phrase in phrases:
        said = found = extra = 0
        for h in hyps:
            ref, hyp = count(h.ref, phrase), count(h.hyp, phrase)
            said, found, extra = said + ref, found + min(ref, hyp), extra + max(0, hyp - ref)
        out[phrase] = {"said": said, "found": found, "false_alarms": extra}
    return out


def evaluate(rec: Recognizer, items: list[Utterance], chunk_ms: int = 0, progress: bool = False,
             adapt: AdaptConfig | None = None, passes: int = 1, hotwords: Hotwords | None = None,
             grammar: Grammar | None = None) -> tuple[dict[str, Any], list[Hypothesis]]:
    """Run the engine over every utterance; returns overall and per-voice scores and the hypotheses.

    With ``adapt`` enabled, each voice is a speaker: its utterances, in manifest order, are each
    recognised with what the earlier ones taught, and with what its own earlier segments taught
    (``streamasr.engine.adapt``); the time includes learning. With ``passes`` N > 1 (adaptation only),
    the utterances are heard N times and the last pass is scored (its time alone).
    """
    cfg = adapt or AdaptConfig()
    cfg.check_passes(passes)
    chunk = chunk_ms * rec.feature_cfg.sample_rate // 1000
    speakers: dict[str, Speaker] = {}
    hyps: list[Hypothesis] = []
    for n in range(1, passes + 1):  # the passes before the last only teach the voices
        desc = "eval" if n == passes else f"eval, learning pass {n} of {passes}"
        for utt in tqdm(items, desc=desc, file=sys.stderr, disable=not progress, unit="utt"):
            audio = read_pcm(utt.audio)
            began = time.perf_counter()
            speaker = speakers.setdefault(utt.voice, Speaker(cfg)) if cfg.enabled else None
            text = recognise(rec, audio, chunk, speaker, hotwords, grammar)
            if n == passes:
                hyps.append(Hypothesis(utt.audio, utt.voice, utt.text, text, len(audio) / rec.feature_cfg.sample_rate,
                                       time.perf_counter() - began))
    report: dict[str, Any] = {"model": rec.name, "decoder": rec.decoder.to_dict(), "all": score(hyps)}
    if cfg.enabled:
        report["adapt"] = {**cfg.for_decoder(rec.decoder.method).to_dict(), "passes": passes}
    if hotwords is not None:
        counts = hotword_counts(hyps, [p for p, _ in hotwords.phrases])
        total = {k: sum(c[k] for c in counts.values()) for k in ("said", "found", "false_alarms")}
        report["hotwords"] = {"all": total, "phrases": counts}
    voices = sorted({h.voice for h in hyps if h.voice})
    if len(voices) > 1:
        report["voices"] = {v: score([h for h in hyps if h.voice == v]) for v in voices}
    return report, hyps


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("eval", help="WER, CER and real-time factor on a manifest")
    p.add_argument("--manifest", required=True, action="append", help="JSON-lines manifest (repeatable)")
    p.add_argument("--model", action="append", default=None,
                   help="checkpoint (default: the bundled model); repeat it to score models side by side "
                        "(\"bundled\" names the bundled model)")
    p.add_argument("--quantize", action="store_true", help="int8 dynamic quantisation of the model")
    p.add_argument("--chunk-ms", type=int, default=100, help="feed the engine in chunks of this size (0: whole file)")
    p.add_argument("--limit", type=int, default=0, help="evaluate only the first N utterances of each manifest")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as one server worker)")
    p.add_argument("--hyps", default=None, help="write per-utterance hypotheses (JSON lines) to this file")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--plot", default=None, metavar="PNG",
                   help="also draw WER and CER per manifest and voice to this PNG (needs matplotlib)")
    add_dataclass_options(p, DecoderConfig)  # --method, --beam-size, --lm-weight, ...
    add_dataclass_options(p, AdaptConfig, prefix="adapt_")  # --adapt-lr, --adapt-steps, --adapt-max-seconds, ...
    p.add_argument("--adapt-passes", type=int, default=1, metavar="N",
                   help="with --adapt-lr: hear each manifest N times, score the last pass (default: 1)")
    add_list_options(p)  # --hotwords (reported per phrase: said, recognised, false alarms), --grammar
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    import torch

    decoder = dataclass_from_args(DecoderConfig, args)
    adapt = dataclass_from_args(AdaptConfig, args, prefix="adapt_")
    if args.plot and importlib.util.find_spec("matplotlib") is None:
        raise StreamAsrError("streamasr eval --plot needs matplotlib; install it with: pip install 'streamasr[plot]'")
    adapt.check_float(args.quantize)  # before loading the model and LM
    adapt.check_passes(args.adapt_passes)
    torch.set_num_threads(args.threads)
    models = [None if m in (None, "bundled") else m for m in (args.model or [None])]
    by_model: dict[str, dict[str, Any]] = {}
    all_hyps: list[dict[str, Any]] = []
    for model in models:
        rec = Recognizer.load(model, args.quantize, decoder)
        hotwords, grammar = lists_from_options(args, rec.tokenizer)
        label = model or "bundled"
        by_model[label] = {}
        for manifest in args.manifest:
            items = read_manifest(manifest)
            items = items[: args.limit] if args.limit > 0 else items
            report, hyps = evaluate(rec, items, args.chunk_ms, progress=True, adapt=adapt, passes=args.adapt_passes,
                                    hotwords=hotwords, grammar=grammar)
            by_model[label][manifest] = report
            all_hyps += [{**h.__dict__, "model": label} if len(models) > 1 else h.__dict__ for h in hyps]
    if args.hyps:
        Path(args.hyps).write_text("".join(json.dumps(h) + "\n" for h in all_hyps))
    title = f"{decoder.method} · chunks {args.chunk_ms} ms"
    if len(by_model) == 1:
        (label, reports), = by_model.items()
        if args.plot:
            plot_reports(reports, Path(args.plot), f"{rec.name} · {title}")
        if args.json:
            print(json.dumps(reports, indent=2))
            return 0
        print(f"{'manifest / voice':<40} {'utts':>6} {'WER':>7} {'CER':>7} {'RTF':>7}")
        for manifest, report in reports.items():
            rows = [(Path(manifest).name, report["all"])] + [("  " + v, s) for v, s in report.get("voices", {}).items()]
            for name, s in rows:
                print(f"{name:<40} {s['utterances']:>6} {s['wer']:>7.3f} {s['cer']:>7.3f} {s['rtf']:>7.4f}")
            if "hotwords" in report:
                h = report["hotwords"]["all"]
                print(f"  hotwords: {h['found']} of {h['said']} said recognised, {h['false_alarms']} false alarms")
        return 0
    if args.plot:
        plot_comparison(by_model, Path(args.plot), title)
    if args.json:
        print(json.dumps(by_model, indent=2))
        return 0
    print(compare_table(by_model))
    return 0


def compare_table(by_model: dict[str, dict[str, Any]]) -> str:
    """Text table: a row per manifest (and voice), WER / CER columns per model, side by side."""
    labels = list(by_model)
    first = by_model[labels[0]]
    lines = [f"{'manifest / voice':<36} {'utts':>6} " + " ".join(f"{'WER / CER ' + str(i + 1):>16}" for i in range(len(labels)))]
    for manifest, report in first.items():
        keys = [(Path(manifest).name, None)] + [("  " + v, v) for v in report.get("voices", {})]
        for name, voice in keys:
            cells = []
            for label in labels:
                r = by_model[label][manifest]
                s = r["all"] if voice is None else r.get("voices", {}).get(voice)
                cells.append(f"{100 * s['wer']:7.1f} / {100 * s['cer']:5.1f}" if s else f"{'-':>16}")
            n = (report["all"] if voice is None else report["voices"][voice])["utterances"]
            lines.append(f"{name:<36} {n:>6} " + " ".join(f"{c:>16}" for c in cells))
    lines += [f"model {i + 1}: {label}" for i, label in enumerate(labels)]
    return "\n".join(lines)


def plot_comparison(by_model: dict[str, dict[str, Any]], path: Path, title: str) -> None:
    """WER per manifest, one bar per model, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(by_model)
    manifests = list(by_model[labels[0]])
    y = np.arange(len(manifests))
    height = 0.8 / len(labels)
    fig, ax = plt.subplots(figsize=(8, 1.5 + 0.5 * len(manifests) * max(1, len(labels) / 2)))
    for i, label in enumerate(labels):
        wer = [100 * by_model[label][m]["all"]["wer"] for m in manifests]
        offset = y - 0.4 + height * (i + 0.5)
        ax.barh(offset, wer, height=height, label=label)
        for yi, w in zip(offset, wer):
            ax.text(w + 0.5, yi, f"{w:.1f}", va="center", fontsize=7)
    ax.set_yticks(y, [str(Path(Path(m).parent.name) / Path(m).name) for m in manifests], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("WER (%)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_reports(reports: dict[str, dict[str, Any]], path: Path, title: str) -> None:
    """Horizontal WER/CER bars: one group per manifest (its overall score first, then each voice)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, wer, cer = [], [], []
    for manifest, report in reports.items():
        rows = [(Path(manifest).name, report["all"])]
        rows += [(f"  {voice}", s) for voice, s in report.get("voices", {}).items()]
        for name, s in rows:
            labels.append(f"{name} ({s['utterances']})")
            wer.append(100 * s["wer"])
            cer.append(100 * s["cer"])
    y = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(8, 1.2 + 0.28 * len(labels)))
    ax.barh(y - 0.2, wer, height=0.4, label="WER %")
    ax.barh(y + 0.2, cer, height=0.4, label="CER %")
    for yi, w in zip(y, wer):
        ax.text(w + 0.5, yi - 0.2, f"{w:.1f}", va="center", fontsize=7)
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("error rate (%)")
    ax.set_xlim(0, max(wer + cer) * 1.12 + 1)  # room for the value labels
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
