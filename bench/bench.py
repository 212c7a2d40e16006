#!/usr/bin/env python3
"""clvae's benchmark: builds a release binary, trains the default model (or, with --model conv,
the convolutional reference: conv 4x4/2 32, conv 4x4/2 64, dense 256, latent 10) and, when
PyTorch is importable, runs ../shared/reference/torch_vae.py (torch_conv_vae.py) on the same
model, batch and data in the same run, alternating the two, and prints medians and the ratio.

Usage: python3 bench/bench.py [--model mlp|conv] [--epochs N] [--rounds R] [--device-args "..."]
                              [--no-torch] [--exe CLVAE]
       python3 bench/bench.py --gpu-table [--epochs N] [--exe CLVAE] [--device-args "..."]
       python3 bench/bench.py --ranks 1,2 [--model mlp|conv] [--epochs N] [--rounds R]
(--gpu-table: the table of issue 8 on an NVIDIA GPU, clvae against PyTorch --device cuda.
 --ranks: data-parallel training under mpirun, each rank count in turn: the step time split into
 compute and the gradient's sum across ranks, and the bytes each rank sends a step.)

Prints: steady-state seconds per epoch (median of the epochs after each run's first, with min and
max), training images per second, the time from launch to the first finished training step with
the PoCL cache cold (an empty POCL_CACHE_DIR) and warm, and peak host memory (maximum resident set
size, from wait4, as /usr/bin/time -v reports it). Figures from a shared, noisy machine: quote
medians measured side by side, never one run.
"""
import argparse
import csv
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The PyTorch references: ../shared/reference beside the checkout, shared/ inside it, or the
# copies in .gpu/reference that bench/gpu_bundle.sh packs for a GPU machine.
REFERENCE_DIR = next((d for d in (os.path.join(os.path.dirname(ROOT), "shared", "reference"),
                                  os.path.join(ROOT, "shared", "reference"),
                                  os.path.join(ROOT, ".gpu", "reference")) if os.path.isdir(d)),
                     os.path.join(os.path.dirname(ROOT), "shared", "reference"))
REFERENCE = os.path.join(REFERENCE_DIR, "torch_vae.py")
CONV_REFERENCE = os.path.join(REFERENCE_DIR, "torch_conv_vae.py")
# What each model is, for clvae and for its PyTorch reference.
MODELS = {
    "mlp": ("default model 784-128-10", [], REFERENCE),
    "conv": ("conv reference 1x28x28-conv32-conv64-256-10",
             ["--encoder", "conv:32,conv:64,dense:256", "--latent", "10"], CONV_REFERENCE),
}
N_TRAIN = 60000


def run_measured(cmd, env=None):
    """Like run, with the child's own peak RSS (MiB) from wait4."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    out = p.stdout.read()
    err = p.stderr.read()
    _, status, usage = os.wait4(p.pid, 0)
    seconds = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        sys.exit("bench: %s failed (%d):\n%s" % (" ".join(cmd), code, err))
    return out, seconds, usage.ru_maxrss / 1024.0


def build():
    build_dir = os.path.join(ROOT, "build-bench")
    if not os.path.isdir(build_dir):
        subprocess.run(["meson", "setup", build_dir, "--buildtype=release", "-Doptimization=3"],
                       cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["ninja", "-C", build_dir], check=True, stdout=subprocess.DEVNULL)
    return os.path.join(build_dir, "clvae")


def torch_python():
    """A Python that imports torch (Debian's python3-torch lives under /usr/bin/python3), or None."""
    for py in [sys.executable, "/usr/bin/python3", shutil.which("python3")]:
        if py and subprocess.run([py, "-c", "import torch"], capture_output=True).returncode == 0:
            return py
    return None


def clvae_run(exe, epochs, extra, env=None):
    """One clvae training run: (epoch seconds list, first-step seconds, peak RSS MiB)."""
    with tempfile.TemporaryDirectory() as out_dir:
        out, _, rss = run_measured([exe, "train", "--epochs", str(epochs), "--out", out_dir]
                                   + extra, env)
        with open(os.path.join(out_dir, "metrics.csv")) as f:
            seconds = [float(row["seconds"]) for row in csv.DictReader(f)]
    m = re.search(r"first training step done ([0-9.]+) s", out)
    return seconds, float(m.group(1)) if m else float("nan"), rss


def torch_run(py, reference, epochs):
    out, _, rss = run_measured([py, reference, "--epochs", str(epochs)])
    return [float(m) for m in re.findall(r"epoch \d+ ([0-9.]+)s", out)], rss


# The GPU table of issue 8: (label, clvae options, torch_vae.py / torch_conv_vae.py options).
GPU_TABLE = [
    ("seed model, batch 256", ["--batch", "256"], ["--batch", "256"]),
    ("batch 1024", ["--batch", "1024"], ["--batch", "1024"]),
    ("batch 4096", ["--batch", "4096"], ["--batch", "4096"]),
    ("batch 16384", ["--batch", "16384"], ["--batch", "16384"]),
    ("--hidden 1024,1024, batch 1024", ["--hidden", "1024,1024", "--batch", "1024"],
     ["--hidden", "1024,1024", "--batch", "1024"]),
    ("--hidden 8192,8192, batch 1024", ["--hidden", "8192,8192", "--batch", "1024"],
     ["--hidden", "8192,8192", "--batch", "1024"]),
    ("conv reference, batch 256", ["--encoder", "conv:32,conv:64,dense:256", "--latent", "10"],
     None),
]


def gpu_table(exe, epochs, device_args):
    """Issue 8's table on a GPU: clvae (on the device device_args picks, default the first GPU)
    and PyTorch with --device cuda, alternating row by row on one machine; prints img/s and the
    ratio. A row that fails prints its error and goes on."""
    py = torch_python()
    print("| workload | clvae img/s | PyTorch img/s | clvae / PyTorch |")
    print("| --- | --- | --- | --- |")
    for label, ours, theirs in GPU_TABLE:
        reference = CONV_REFERENCE if theirs is None else REFERENCE
        try:
            seconds, _, _ = clvae_run(exe, epochs, ours + device_args)
            ips = N_TRAIN / statistics.median(seconds[1:] or seconds)
        except SystemExit as e:
            ips = None
            print(f"bench: clvae {label}: {e}", file=sys.stderr)
        tips = None
        if py:
            try:
                out, _, _ = run_measured([py, reference, "--device", "cuda", "--epochs",
                                          str(epochs)] + (theirs or []))
                t = [float(m) for m in re.findall(r"epoch \d+ ([0-9.]+)s", out)]
                tips = N_TRAIN / statistics.median(t[1:] or t)
            except SystemExit as e:
                print(f"bench: torch {label}: {e}", file=sys.stderr)
        cell = lambda v: f"{v / 1e3:,.0f} k" if v else "failed"  # noqa: E731
        ratio = f"{ips / tips:.2f}" if ips and tips else "-"
        print(f"| {label} | {cell(ips)} | {cell(tips) if py else 'no torch'} | {ratio} |")
        sys.stdout.flush()


def ranks_table(exe, ranks, epochs, rounds, extra):
    """Per-step time on 1, 2, ... ranks (mpirun, rank counts alternating round by round): the
    median step, the part of it spent summing the gradient across ranks, and img/s."""
    mpirun = shutil.which("mpirun")
    if not mpirun:
        sys.exit("bench: --ranks needs mpirun (Debian: openmpi-bin)")
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    results = {n: {"step": [], "exchange": [], "epoch": []} for n in ranks}
    pattern = re.compile(r"per step over \d+ steps .*?: ([0-9.]+) ms, of which ([0-9.]+) ms "
                         r"summing the gradient across \d+ ranks \((\d+) bytes")
    grad_bytes = 0
    for r in range(rounds):
        for n in ranks:
            with tempfile.TemporaryDirectory() as out_dir:
                cmd = ([mpirun, "--oversubscribe", "--allow-run-as-root", "-np", str(n)]
                       if n > 1 else []) + [exe, "train", "--epochs", str(epochs), "--out",
                                            out_dir, "--profile"] + extra
                out, _, _ = run_measured(cmd, env)
                with open(os.path.join(out_dir, "metrics.csv")) as f:
                    seconds = [float(row["seconds"]) for row in csv.DictReader(f)]
            steps = (N_TRAIN + 255) // 256
            results[n]["epoch"] += seconds[1:]
            m = pattern.search(out)
            step = statistics.median(seconds[1:]) / steps * 1e3
            results[n]["step"].append(step)
            results[n]["exchange"].append(float(m.group(2)) if m else 0.0)
            grad_bytes = int(m.group(3)) if m else grad_bytes
            print(f"bench: round {r + 1}, {n} rank(s): epochs "
                  + " ".join(f"{x:.3f}" for x in seconds))
    print()
    print(f"gradient a rank sends and receives each step: {grad_bytes} bytes")
    print("| ranks | step (ms, median) | of which summing the gradient (ms) | compute (ms) | "
          "img/s |")
    print("| --- | --- | --- | --- | --- |")
    for n in ranks:
        step = statistics.median(results[n]["step"])
        ex = statistics.median(results[n]["exchange"])
        ips = N_TRAIN / statistics.median(results[n]["epoch"])
        print(f"| {n} | {step:.2f} | {ex:.2f} | {step - ex:.2f} | {ips:,.0f} |")


def summary(name, steady):
    med = statistics.median(steady)
    print("%-8s steady-state epoch: median %.3f s (min %.3f, max %.3f, %d epochs); %.0f images/s"
          % (name, med, min(steady), max(steady), len(steady), N_TRAIN / med))
    return med


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=4, help="epochs per run (the first is dropped)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds of clvae and torch")
    ap.add_argument("--device-args", default="", help="extra clvae options, e.g. '--device 1'")
    ap.add_argument("--no-torch", action="store_true", help="skip the PyTorch reference")
    ap.add_argument("--model", choices=sorted(MODELS), default="mlp",
                    help="the default MLP or the conv reference architecture")
    ap.add_argument("--gpu-table", action="store_true",
                    help="issue 8's table on a GPU: every batch size and width against PyTorch "
                         "--device cuda (--epochs per run, the first dropped)")
    ap.add_argument("--exe", help="a clvae binary to run instead of building one (on a GPU "
                                  "machine: .gpu/bin/clvae)")
    ap.add_argument("--ranks", help="comma-separated rank counts, e.g. 1,2: data-parallel "
                                    "training under mpirun, compute and communication per step")
    a = ap.parse_args()
    exe = a.exe or build()
    if a.gpu_table:
        gpu_table(exe, a.epochs, a.device_args.split())
        return
    what, model_args, reference = MODELS[a.model]
    if a.ranks:
        print("bench: %s, %s, batch 256, %d rounds of %d epochs; machine: %s, %d cores"
              % (exe, what, a.rounds, a.epochs, platform_cpu(), os.cpu_count()))
        ranks_table(exe, [int(x) for x in a.ranks.split(",")], a.epochs, a.rounds,
                    model_args + a.device_args.split())
        return
    extra = model_args + a.device_args.split()
    print("bench: %s, %d rounds of %d epochs, %s, batch 256" % (exe, a.rounds, a.epochs, what))
    print("bench: machine: %s, %d cores" % (platform_cpu(), os.cpu_count()))

    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, POCL_CACHE_DIR=cache)
        _, cold, _ = clvae_run(exe, 1, extra, env)
    py = None if a.no_torch else torch_python()
    if not a.no_torch and py is None:
        print("bench: PyTorch is not importable: clvae alone (Debian: python3-torch "
              "libopenblas0-pthread)")
    ours, theirs, firsts, rss_ours, rss_theirs = [], [], [], [], []
    for r in range(a.rounds):
        seconds, first, rss = clvae_run(exe, a.epochs, extra)
        ours += seconds[1:]
        firsts.append(first)
        rss_ours.append(rss)
        print("bench: round %d clvae epochs %s" % (r + 1, " ".join("%.3f" % s for s in seconds)))
        if py:
            seconds, rss = torch_run(py, reference, a.epochs)
            theirs += seconds[1:]
            rss_theirs.append(rss)
            print("bench: round %d torch epochs %s" % (r + 1, " ".join("%.3f" % s for s in seconds)))
    print()
    med = summary("clvae", ours)
    print("clvae    start to first step: cold %.2f s (empty PoCL cache), warm median %.2f s" %
          (cold, statistics.median(firsts)))
    print("clvae    peak host memory: %.0f MiB" % max(rss_ours))
    if theirs:
        med_t = summary("pytorch", theirs)
        print("pytorch  peak host memory: %.0f MiB" % max(rss_theirs))
        print("ratio clvae / pytorch (median epoch time): %.2f" % (med / med_t))


def platform_cpu():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


if __name__ == "__main__":
    main()
