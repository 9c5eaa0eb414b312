"""Ours and upstream on the shared workload in one sitting, interleaved: like for like on this machine.

Runs, ``--rounds`` times, one fresh process of upstream's harness (/work/shared/tools/upstream-bench/bench_upstream.py
``run``) and one fresh process of ours (bench/bench_engine.py, one repeat), alternating which goes first, with the
same thread count; then prints the medians side by side with the ratios and the per-round ratios (their spread
shows how much the machine's load moved the figures), and the CPU's instruction sets. Upstream needs its own venv
and source tree (see the tool's README).

    .venv/bin/python bench/compare_upstream.py --upstream-python /path/venv/bin/python --upstream-tree /path/GPT-SoVITS
        [--rounds 3] [--threads 2] [--out folder] [-- extra bench_engine.py arguments]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT.parent / "shared" / "tools" / "upstream-bench" / "bench_upstream.py"
UPSTREAM_COMMIT = "48b1a0169a28582a8984402f82cf438d3bfa6aca"

#: (label, our summary key, upstream run-JSON path, lower is better)
ROWS = [
    ("s1 tokens/s, per sentence", "s1_tokens_per_s", ("naive", "summary", "s1_tokens_per_s"), False),
    ("s1 tokens/s, batched (5)", "batched_s1_tokens_per_s", ("batched", "summary", "s1_tokens_per_s"), False),
    ("s2 audio s/s, per sentence", "s2_audio_s_per_s", ("naive", "summary", "s2_audio_s_per_s"), False),
    ("RTF per sentence, ref uncached", "rtf_uncached_ref", ("naive", "summary", "rtf_uncached_ref"), True),
    ("RTF per sentence, ref cached", "rtf_cached_ref", ("naive", "summary", "rtf_cached_ref"), True),
    ("RTF batched (cold, like upstream)", "batched_rtf", ("batched", "summary", "rtf"), True),
    ("peak RSS MiB", "peak_rss_mib", ("peak_rss_inference_mib",), True),
]


def _get(data: dict, path: tuple):
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def run_upstream(args, out: Path) -> dict:
    cmd = [args.upstream_python, str(TOOL), "run", "--upstream", args.upstream_tree, "--commit", UPSTREAM_COMMIT,
           "--threads", str(args.threads), "--out", str(out)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())


def run_ours(args, out: Path, extra: list[str]) -> dict:
    cmd = [sys.executable, str(ROOT / "bench" / "bench_engine.py"), "--repeats", "1", "--threads", str(args.threads),
           "--json", str(out), *extra]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
    return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--upstream-python", required=True, help="python of the venv upstream-bench runs in")
    ap.add_argument("--upstream-tree", required=True, help="upstream GPT-SoVITS tree at commit 48b1a01")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / time.strftime("compare-%Y%m%d-%H%M")))
    args, extra = ap.parse_known_args(argv)
    extra = [e for e in extra if e != "--"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ours_runs, up_runs = [], []
    for r in range(args.rounds):
        order = ("upstream", "ours") if r % 2 == 0 else ("ours", "upstream")
        for who in order:
            t0 = time.perf_counter()
            if who == "upstream":
                up_runs.append(run_upstream(args, out / f"upstream{r + 1}.json"))
            else:
                ours_runs.append(run_ours(args, out / f"ours{r + 1}.json", extra))
            print(f"round {r + 1}: {who} done in {time.perf_counter() - t0:.0f} s", flush=True)
    meta = ours_runs[-1]["meta"]
    cpu = meta["cpu"]
    lines = [f"{meta['date']}: ours ({meta['dtype']}, GPT {meta['gpt_variant']}) vs upstream {UPSTREAM_COMMIT[:7]} "
             f"(fp32), {args.rounds} interleaved rounds, {args.threads} threads, fresh process each",
             f"CPU {cpu['model']} ({cpu['cores']} cores), torch capability {cpu['capability']}, flags "
             f"{' '.join(cpu['flags'])}; load averages "
             + ", ".join(str(r['meta']['load_before']) for r in ours_runs),
             f"{'metric':36s} {'ours':>9s} {'upstream':>9s} {'ratio':>7s}   per-round ratios"]
    summary = {"meta": meta, "rounds": args.rounds, "rows": {}}
    for label, key, path, lower in ROWS:
        mine = [r["ours"].get(key) for r in ours_runs]
        theirs = [_get(r, path) for r in up_runs]
        if any(v is None for v in mine + theirs):
            continue
        ratios = [(t / m if lower else m / t) for m, t in zip(mine, theirs)]
        m, t = statistics.median(mine), statistics.median(theirs)
        ratio = t / m if lower else m / t
        summary["rows"][key] = {"ours": m, "upstream": t, "ratio": ratio, "round_ratios": ratios}
        fmt = lambda v: f"{v:.3f}" if v < 100 else f"{v:.0f}"  # noqa: E731
        lines.append(f"{label:36s} {fmt(m):>9s} {fmt(t):>9s} {ratio:6.2f}x   "
                     + " ".join(f"{x:.2f}" for x in ratios))
    step_up = [_get(r, ("naive", "summary", "s1_decode_step_ms_mean")) for r in up_runs]
    if all(v is not None for v in step_up):
        lines.append(f"upstream s1 decode step (mean of sentences): {statistics.median(step_up):.1f} ms")
    print("\n".join(lines))
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    (out / "summary.txt").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
