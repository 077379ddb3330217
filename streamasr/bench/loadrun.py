"""Load test harness: the server process, CPU and memory monitors, and the levels of a sweep.

``streamasr bench server`` starts ``streamasr serve`` in a child process (``serve_process``), then
for each level runs N concurrent streams from ``streamasr.bench.loadtest`` while ``Monitor`` samples the
server's process tree, this process and the machine, and ``/metrics`` gives the worker's counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from streamasr.bench.loadtest import LoadConfig, Program, StreamLog, iter_schedule, run_stream, summarise


def machine() -> dict[str, Any]:
    """What the benchmark ran on."""
    import platform

    import psutil
    import torch

    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    cpu = next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")),
               platform.processor())
    return {"cpu": cpu, "vcpus": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "os": platform.platform(), "python": platform.python_version(), "torch": torch.__version__}


@contextlib.contextmanager
def serve_process(serve_args: list[str], log_path: Path) -> Iterator[tuple[int, str]]:
    """Run ``streamasr serve --port 0 ...`` in a child process; yields (pid, stream URL).

    The server's log goes to ``log_path``; its "serving ws://..." line gives the port. On exit the
    server gets SIGTERM (it finishes its streams), then SIGKILL after 30 s.
    """
    import signal
    import subprocess

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "streamasr", "serve", "--port", "0", *serve_args]
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline, url = time.monotonic() + 120, ""
        while not url:
            text = log_path.read_text()
            url = next((w for line in text.splitlines() if "serving ws://" in line
                        for w in line.split() if w.startswith("ws://")), "")
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"streamasr serve did not start ({' '.join(cmd)}):\n{text[-2000:]}")
            time.sleep(0.1)
        yield proc.pid, url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Monitor:
    """Samples CPU seconds and memory of the server's process tree, this process and the machine."""

    def __init__(self, server_pid: int | None) -> None:
        import psutil  # the ``bench`` extra

        self._psutil = psutil
        self.server = psutil.Process(server_pid) if server_pid else None
        self.me = psutil.Process()
        # (t, {pid: (cpu s, rss bytes)} of the server's processes, own cpu s, machine busy cpu s)
        self.samples: list[tuple[float, dict[int, tuple[float, float]], float, float]] = []

    def _tree(self) -> list[Any]:
        if self.server is None:
            return []
        with contextlib.suppress(self._psutil.Error):
            return [self.server, *self.server.children(recursive=True)]
        return []

    def sample(self) -> None:
        procs: dict[int, tuple[float, float]] = {}
        for proc in self._tree():
            with contextlib.suppress(self._psutil.Error):
                times, mem = proc.cpu_times(), proc.memory_info()
                procs[proc.pid] = (times.user + times.system, float(mem.rss))
        own = self.me.cpu_times()
        total = self._psutil.cpu_times()
        busy = total.user + total.system + total.nice + getattr(total, "irq", 0) + getattr(total, "softirq", 0)
        self.samples.append((time.perf_counter(), procs, own.user + own.system, busy))

    def pss_mb(self) -> float | None:
        """Proportional set size of the server's processes (shared pages counted once; ~40 ms to read)."""
        total = 0.0
        for proc in self._tree():
            with contextlib.suppress(self._psutil.Error, OSError, ValueError):
                text = Path(f"/proc/{proc.pid}/smaps_rollup").read_text()
                total += next(int(line.split()[1]) for line in text.splitlines() if line.startswith("Pss:")) * 1024
        return round(total / 2**20, 1) if total else None

    async def run(self, every: float) -> None:
        while True:
            self.sample()
            await asyncio.sleep(every)

    def window(self, t0: float, t1: float) -> dict[str, Any]:
        """Mean CPU use (cores) between t0 and t1, and the server's resident memory then (MB)."""
        inside = [s for s in self.samples if t0 <= s[0] <= t1]
        if len(inside) < 2:
            return {}
        a, b = inside[0], inside[-1]
        dt = b[0] - a[0]
        per_process = [round((b[1][pid][0] - a[1][pid][0]) / dt, 3) for pid in b[1] if pid in a[1]]
        server, own, busy = sum(per_process), (b[2] - a[2]) / dt, (b[3] - a[3]) / dt
        rss = [sum(m for _, m in s[1].values()) / 2**20 for s in inside]
        return {"window_s": round(dt, 1), "server_cpu": round(server, 3), "server_cpu_per_process": per_process,
                "loadgen_cpu": round(own, 3), "other_cpu": round(max(0.0, busy - server - own), 3),
                "server_rss_mb": round(max(rss), 1),
                "rss_mb": [[round(s[0] - t0, 1), round(m, 1)] for s, m in zip(inside, rss)]}


async def scrape_metrics(url: str) -> dict[str, float]:
    """The server's ``/metrics`` counters (unlabelled ones), {} when it cannot be read."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    try:
        async with asyncio.timeout(5):
            reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
            writer.write(f"GET /metrics HTTP/1.1\r\nHost: {parts.netloc}\r\nConnection: close\r\n\r\n".encode())
            body = (await reader.read()).decode(errors="replace")
            writer.close()
    except (OSError, TimeoutError):
        return {}
    values: dict[str, float] = {}
    for line in body.splitlines():
        name, _, value = line.partition(" ")
        if name.startswith("streamasr_") and "{" not in name:
            with contextlib.suppress(ValueError):
                values[name.removeprefix("streamasr_")] = float(value)
    return values


async def run_level(url: str, programs: Sequence[Program], streams: int, cfg: LoadConfig,
                    monitor: Monitor | None = None) -> dict[str, Any]:
    """``streams`` concurrent streams: one pass each, or repeated passes for ``cfg.duration`` seconds."""
    chunk_s = cfg.chunk_ms / 1000
    begin = time.perf_counter() + 0.5
    end = begin + cfg.duration if cfg.duration else None

    async def lane(i: int, offset: float) -> list[StreamLog]:
        program, start, logs = programs[i % len(programs)], begin + offset, []
        while True:
            logs.append(await run_stream(url, program, chunk_s, start, cfg.lag_limit))
            start = time.perf_counter()
            if end is None or logs[-1].error or start + program.seconds > end:
                return logs

    sampler = asyncio.create_task(monitor.run(cfg.sample_every)) if monitor else None
    steady = (begin + cfg.ramp, end if end else begin + min(p.seconds for p in programs))
    counters: list[dict[str, float]] = []

    async def scrape_at(at: float) -> None:
        await asyncio.sleep(max(0.0, at - time.perf_counter()))
        counters.append(await scrape_metrics(url))

    scrapes = [asyncio.create_task(scrape_at(at)) for at in steady]
    try:
        lanes = await asyncio.gather(*(lane(i, off) for i, off in enumerate(iter_schedule(streams, cfg.ramp))))
    finally:
        for task in [*scrapes, *([sampler] if sampler else [])]:
            task.cancel()
    result: dict[str, Any] = {"streams": streams, **summarise([log for logs in lanes for log in logs], cfg.lag_limit)}
    if monitor:
        result.update(monitor.window(*steady))
        result["server_pss_mb"] = monitor.pss_mb()
    single = not monitor or not monitor.samples or len(monitor.samples[-1][1]) <= 1
    if len(counters) == 2 and all(counters) and single:  # with --workers N, each scrape reaches any one process
        a, b = counters
        calls = b.get("batches_total", 0) - a.get("batches_total", 0)
        result["worker"] = {
            "busy": round((b["compute_seconds_total"] - a["compute_seconds_total"]) / (steady[1] - steady[0]), 3),
            "mean_batch": round((b["batch_streams_total"] - a["batch_streams_total"]) / calls, 1) if calls else None}
    return result


async def sweep(url: str, programs: Sequence[Program], levels: Sequence[int], cfg: LoadConfig,
                server_pid: int | None, stop_when_behind: bool = True,
                progress: Callable[[list[dict[str, Any]]], None] | None = None) -> list[dict[str, Any]]:
    """Run the levels in order, stopping after the first one at which a stream fell behind.

    Args:
        progress: called with the results so far after each level (to save them as they come).
    """
    results: list[dict[str, Any]] = []
    for streams in levels:
        results.append(await run_level(url, programs, streams, cfg, Monitor(server_pid)))
        if progress:
            progress(results)
        if stop_when_behind and not results[-1]["realtime"]:
            break
        await asyncio.sleep(1.0)  # let the last connections close
    return results


SUMMARY_KEYS = ("server_cpu", "loadgen_cpu", "other_cpu", "server_rss_mb", "server_pss_mb")


def summarise_runs(runs: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per level: medians over the runs that reached it."""
    levels = sorted({level["streams"] for run in runs for level in run})
    rows = []
    for n in levels:
        got = [level for run in runs for level in run if level["streams"] == n]
        row: dict[str, Any] = {"streams": n, "runs": len(got), "realtime_runs": sum(g["realtime"] for g in got),
                               "behind_max": max(g["behind"] for g in got),
                               "exact_runs": sum(g["exact"] for g in got),
                               "mismatched": sum(g["mismatched"] for g in got),
                               "missing_words": sum(g["missing"] for g in got),
                               "words": sum(g["words"] + g["missing"] for g in got)}
        for group in ("partial_ms", "final_ms"):
            row[group] = {q: _median([g[group][q] for g in got]) for q in ("p50", "p95", "p99", "max")}
        for key in SUMMARY_KEYS:
            row[key] = _median([g.get(key) for g in got])
        rows.append(row)
    return rows


def _median(values: list[Any]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 3) if present else None


def format_server(summary: list[dict[str, Any]]) -> str:
    """A plain-text table of ``summarise_runs``."""
    def ms(group: dict[str, Any]) -> str:
        return "/".join("-" if group[q] is None else f"{group[q]:.0f}" for q in ("p50", "p95", "p99"))

    def num(value: float | None, width: int) -> str:
        return "-".rjust(width) if value is None else f"{value:>{width}.2f}"

    lines = [f"{'streams':>7} {'real-time':>9} {'texts exact':>11} {'partial p50/p95/p99 ms':>23} "
             f"{'final p50/p95/p99 ms':>21} {'server CPU':>10} {'PSS MB':>7} {'loadgen CPU':>11} {'other CPU':>9}"]
    for row in summary:
        lines.append(" ".join([
            f"{row['streams']:>7}", f"{row['realtime_runs']}/{row['runs']}".rjust(9),
            f"{row['exact_runs']}/{row['runs']}".rjust(11), f"{ms(row['partial_ms']):>23}",
            f"{ms(row['final_ms']):>21}", num(row["server_cpu"], 10), num(row["server_pss_mb"], 7),
            num(row["loadgen_cpu"], 11), num(row["other_cpu"], 9)]))
    return "\n".join(lines) + "\n"


def plot_server(summary: list[dict[str, Any]], path: Path, title: str) -> None:
    """Latency percentiles and CPU / memory against the number of streams (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = [row["streams"] for row in summary]
    fig, (lat, cpu) = plt.subplots(1, 2, figsize=(11, 4.2))
    for q, style in (("p50", "-o"), ("p95", "-s"), ("p99", "-^")):
        lat.plot(n, [row["partial_ms"][q] for row in summary], style, label=f"partial {q}")
    lat.plot(n, [row["final_ms"]["p95"] for row in summary], "--d", label="final p95")
    lat.axhline(300, color="grey", lw=0.8, ls=":", label="300 ms target")
    behind = [row for row in summary if row["realtime_runs"] < row["runs"]]
    lat.plot([r["streams"] for r in behind], [r["partial_ms"]["p95"] for r in behind], "rx", ms=10,
             label="fell behind")
    lat.set(xlabel="concurrent streams", ylabel="latency (ms)", yscale="log", title="latency")
    lat.legend(fontsize=8)
    cpu.plot(n, [row["server_cpu"] for row in summary], "-o", label="server CPU (cores)")
    cpu.plot(n, [row["loadgen_cpu"] for row in summary], "-s", label="load generator CPU (cores)")
    cpu.set(xlabel="concurrent streams", ylabel="cores", title="CPU and memory")
    mem = cpu.twinx()
    mem.plot(n, [row["server_pss_mb"] for row in summary], "--", color="tab:green", label="server PSS (MB)")
    mem.set(ylabel="MB", ylim=(0, max((row["server_pss_mb"] or 0) for row in summary) * 1.15 or None))
    cpu.legend(loc="upper left", fontsize=8)
    mem.legend(loc="lower right", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_memory(level: dict[str, Any], path: Path, title: str) -> None:
    """Server resident memory over a long level (``--duration``, a soak test) (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t, mb = zip(*level["rss_mb"])
    fig, ax = plt.subplots(figsize=(8, 3.6))
    ax.plot([x / 60 for x in t], mb, "-")
    ax.set(xlabel="minutes", ylabel="server RSS, all processes (MB)", ylim=(0, max(mb) * 1.15),
           title=f"{level['streams']} streams, {level['passes']} stream passes")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
