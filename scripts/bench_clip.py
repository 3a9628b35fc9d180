#!/usr/bin/python3
"""Speed benchmark of the CLIP image forward: PyTorch (this script) against the C harness.

  scripts/bench_clip.py [--sizes 224,448] [--threads 2] [--runs 5]
                        [--model-dir /tmp/hx-vitb16] [--harness build/harness] [--strict]

1. If --model-dir does not exist, writes a random-weight ViT-B/16 CLIP there in the Hugging
   Face layout (config.json + F32 model.safetensors; no tokenizer).
2. Per size S: the PyTorch vanilla image forward (pooled embedding + dense tokens) on a
   [1,3,S,S] input with --threads threads: one warm-up, then the median of --runs.
3. Per size S: `HARNESS bench --model DIR --size S --runs N --threads T`, whose output lines
   are key=value pairs (the last one `median_s=... gflops=...`; optional flops, sgemm_gflops,
   bound_s, peak_rss_mb, weights_mb).
4. One table with a verdict per size: PASS needs speed-up (torch/harness) >= 1.25 and
   harness/bound <= 1.2. The exit status is 0 whatever the verdicts unless --strict.
The FLOP count is computed here analytically (2*M*N*K per matmul, attention included).
"""

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time


DEFAULT_THREADS = 2


def _pin_threads():
    """The BLAS under torch (Debian builds it on the system libblas, e.g. OpenBLAS) starts its
    own threads, which torch.set_num_threads does not limit; they read their count from the
    environment when the library loads, so it is set here, before torch is imported."""
    n = str(DEFAULT_THREADS)
    for i, arg in enumerate(sys.argv):
        if arg == "--threads" and i + 1 < len(sys.argv):
            n = sys.argv[i + 1]
        elif arg.startswith("--threads="):
            n = arg.split("=", 1)[1]
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = n


_pin_threads()
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hxref  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPEEDUP_MIN = 1.25
BOUND_MAX = 1.2

VITB16 = {
    "model_type": "clip",
    "projection_dim": 512,
    "text_config": {},
    "vision_config": {"hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12,
                      "num_hidden_layers": 12, "image_size": 224, "patch_size": 16},
}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def make_model(d):
    """Random ViT-B/16 CLIP in d (written to d.tmp, then renamed)."""
    log("writing a random-weight ViT-B/16 CLIP to %s ..." % d)
    tmp = d.rstrip("/") + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    w = hxref.init_weights(VITB16, seed=16, emb_std=0.02)
    names = [n for n, _, _ in hxref.weight_shapes(VITB16)]
    hxref.write_safetensors(os.path.join(tmp, "model.safetensors"), [(n, w[n]) for n in names],
                            metadata={"format": "pt"})
    hxref.write_json(os.path.join(tmp, "config.json"), VITB16, indent=2)
    del w
    os.rename(tmp, d)


def peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def time_torch(w, cfg, size, runs):
    g = torch.Generator().manual_seed(size)
    x = torch.randn(1, 3, size, size, generator=g)
    times, cpu = [], 0.0
    with torch.no_grad():
        r = hxref.vision_forward(w, cfg, x)  # warm-up
        assert r["dense.vanilla"].shape[1] == (size // 16) ** 2
        for _ in range(runs):
            c0, t0 = time.process_time(), time.perf_counter()
            r = hxref.vision_forward(w, cfg, x)
            times.append(time.perf_counter() - t0)
            cpu += time.process_time() - c0
    # CPU seconds per wall second: above the thread count means more threads ran than asked
    return statistics.median(times), cpu / sum(times)


def parse_kv(text):
    """All key=value tokens of all lines; later keys override earlier ones; numbers as float."""
    kv = {}
    for line in text.splitlines():
        for tok in line.split():
            if "=" not in tok:
                continue
            k, v = tok.split("=", 1)
            k = k.strip().strip(",;")
            v = v.strip().strip(",;")
            try:
                kv[k] = float(v)
            except ValueError:
                kv[k] = v
    return kv


def run_harness(harness, model, size, runs, threads):
    cmd = [harness, "bench", "--model", model, "--size", str(size), "--runs", str(runs),
           "--threads", str(threads)]
    log("running: " + " ".join(cmd))
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, "cannot run %s: %s" % (harness, e)
    kv = parse_kv(p.stdout)
    if p.returncode != 0 or not isinstance(kv.get("median_s"), float):
        why = "exit status %d" % p.returncode
        if p.returncode == 0:
            why += ", no median_s in its output"
        return None, "%s: %s\n%s%s" % (" ".join(cmd), why, p.stderr, p.stdout)
    return kv, None


def fmt(v, spec):
    return "-" if v is None else spec % v


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="224,448")
    ap.add_argument("--threads", type=int, default=DEFAULT_THREADS)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--model-dir", default="/tmp/hx-vitb16")
    ap.add_argument("--harness", default="build/harness")
    ap.add_argument("--strict", action="store_true",
                    help="exit 1 unless every size passes")
    ap.add_argument("--write-model-only", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.write_model_only:
        make_model(a.model_dir)
        return 0
    try:
        sizes = [int(s) for s in a.sizes.split(",") if s.strip()]
    except ValueError:
        ap.error("--sizes: a comma-separated list of integers")
    if not sizes or any(s <= 0 or s % 16 for s in sizes):
        ap.error("--sizes: positive multiples of the patch size 16")
    if a.runs < 1 or a.threads < 1:
        ap.error("--runs and --threads must be >= 1")
    harness = a.harness
    if not os.path.isabs(harness) and not os.path.exists(harness):
        alt = os.path.join(ROOT, harness)
        if os.path.exists(alt):
            harness = alt

    if not os.path.isdir(a.model_dir):
        # in a child process, so that generating the weights does not count in the peak RSS
        subprocess.run([sys.executable, os.path.abspath(__file__), "--write-model-only",
                        "--model-dir", a.model_dir], check=True)
    with open(os.path.join(a.model_dir, "config.json")) as f:
        cfg = json.load(f)
    _, vc, E = hxref.full_config(cfg)
    P, D, I, L = (vc["patch_size"], vc["hidden_size"], vc["intermediate_size"],
                  vc["num_hidden_layers"])
    keep = ("vision_model.", "visual_projection.")
    rss0 = peak_rss_mb()
    w = hxref.read_safetensors(os.path.join(a.model_dir, "model.safetensors"),
                               select=lambda n: n.startswith(keep) and "position_ids" not in n)
    w = hxref.weights_to(w, torch.float32)
    wmb = sum(t.numel() * t.element_size() for t in w.values()) / 2**20
    log("loaded %d vision tensors (%.0f MB F32); peak RSS %.0f MB (before load %.0f MB)"
        % (len(w), wmb, peak_rss_mb(), rss0))
    torch.set_num_threads(a.threads)

    rows = []
    harness_err = None
    for S in sizes:
        flops = hxref.vit_flops(S, P, D, I, L, E)
        t, busy = time_torch(w, cfg, S, a.runs)
        row = {"size": S, "flops": flops, "torch_s": t, "torch_gflops": flops / t / 1e9,
               "torch_rss": peak_rss_mb(), "torch_busy": busy}
        log("torch %d: median %.4f s, %.1f GFLOP/s, %.2f cores busy"
            % (S, t, row["torch_gflops"], busy))
        if busy > a.threads * 1.15:
            log("warning: torch kept %.2f cores busy with --threads %d" % (busy, a.threads))
        kv, err = (None, harness_err) if harness_err else run_harness(
            harness, a.model_dir, S, a.runs, a.threads)
        if err:
            if not harness_err:
                print("harness failed:\n" + err.rstrip(), file=sys.stderr)
            harness_err = err  # do not retry a harness that cannot bench
        row["h"] = kv
        rows.append(row)

    print("ViT: patch %d, D %d, MLP %d, %d blocks, E %d; %d thread(s), median of %d run(s)"
          % (P, D, I, L, E, a.threads, a.runs))
    hdr = ("%5s %8s %7s %8s %8s %7s %8s %7s %8s %8s %7s %7s  %s"
           % ("size", "GFLOP", "torch_s", "torch_GF", "harn_s", "speedup", "harn_GF",
              "bound_s", "h/bound", "torch_MB", "harn_MB", "wts_MB", "verdict"))
    print(hdr)
    print("-" * len(hdr))
    all_pass = True
    for r in rows:
        h = r["h"] or {}

        def num(k):
            v = h.get(k)
            return v if isinstance(v, float) else None

        hs, bound = num("median_s"), num("bound_s")
        speed = r["torch_s"] / hs if hs else None
        ratio = hs / bound if hs and bound else None
        checks = []
        if speed is None:
            checks.append("speed-up n/a")
        else:
            checks.append("speed-up %s" % ("ok" if speed >= SPEEDUP_MIN else "FAIL"))
        if ratio is None:
            checks.append("bound n/a")
        else:
            checks.append("bound %s" % ("ok" if ratio <= BOUND_MAX else "FAIL"))
        passed = (speed is not None and speed >= SPEEDUP_MIN
                  and ratio is not None and ratio <= BOUND_MAX)
        all_pass = all_pass and passed
        verdict = ("PASS" if passed else "FAIL") + " (" + ", ".join(checks) + ")"
        print("%5d %8.1f %7.4f %8.1f %8s %7s %8s %7s %8s %8.0f %7s %7s  %s"
              % (r["size"], r["flops"] / 1e9, r["torch_s"], r["torch_gflops"],
                 fmt(hs, "%.4f"), fmt(speed, "%.2fx"), fmt(num("gflops"), "%.1f"),
                 fmt(bound, "%.4f"), fmt(ratio, "%.2f"), r["torch_rss"],
                 fmt(num("peak_rss_mb"), "%.0f"), fmt(num("weights_mb"), "%.0f"), verdict))
        hf = num("flops")
        if hf:
            print("      harness flops %.4g vs analytic %.4g (ratio %.3f)%s"
                  % (hf, r["flops"], hf / r["flops"],
                     "" if num("sgemm_gflops") is None
                     else "; its sgemm rate %.1f GFLOP/s" % num("sgemm_gflops")))
    print("criteria: speed-up >= %.2f and harness/bound <= %.2f; torch_MB is this process's "
          "peak RSS (weights included)" % (SPEEDUP_MIN, BOUND_MAX))
    if harness_err:
        print("harness figures unavailable (see stderr)")
    return 1 if a.strict and not all_pass else 0


if __name__ == "__main__":
    sys.exit(main())
