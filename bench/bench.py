#!/usr/bin/env python3
"""clvae's benchmark: builds a release binary, trains the default model (or, with --model conv,
the convolutional reference: conv 4x4/2 32, conv 4x4/2 64, dense 256, latent 10) and runs one or
more peers on the same model, batch and data in the same run, alternating clvae with each, and
prints medians and the ratios. The peers (--peer, a comma list; default torch):
  torch     ../shared/reference/torch_vae.py (torch_conv_vae.py), when PyTorch is importable
            (Debian: python3-torch libopenblas0-pthread); --threads 2
  jax       ../shared/reference/jax_vae.py --model mlp|conv --loop scan|python (--jax-loop);
            XLA:CPU uses every core (2 here, as clvae's PoCL device does)
  tinygrad  ../shared/reference/tinygrad_vae.py (the MLP only), DEV=CL (PoCL) or CPU
            (--tinygrad-dev); PoCL uses every core
A peer whose module (jax, tinygrad) no python here imports gets a venv of its own, made once with
`python3 -m venv` and `pip install` from PyPI (bench/.venv-jax: jax jaxlib optax;
bench/.venv-tinygrad: tinygrad numpy); if that fails the bench says what to install and exits 2.

Usage: python3 bench/bench.py [--model mlp|conv|res] [--epochs N] [--rounds R] [--device-args "..."]
                              [--peer torch,jax,tinygrad] [--jax-loop scan|python]
                              [--tinygrad-dev CL|CPU] [--data DIR] [--no-torch] [--exe CLVAE]
       python3 bench/bench.py --gpu-table [--epochs N] [--exe CLVAE] [--device-args "..."]
                              [--icons DIR] [--rows WORDS]
       python3 bench/bench.py --ranks 1,2 [--model mlp|conv] [--epochs N] [--rounds R]
(--gpu-table: the table of issue 8 on an NVIDIA GPU, clvae against PyTorch --device cuda.
 --ranks: data-parallel training under mpirun, each rank count in turn: the step time split into
 compute and the gradient's sum across ranks, and the bytes each rank sends a step.)

Prints: steady-state seconds per epoch (median of the epochs after each run's first, with min and
max), training images per second, the time from launch to the first finished training step with
the PoCL cache cold (an empty POCL_CACHE_DIR) and warm, clvae's kernel launches per training step
(from a one-epoch `clvae train --profile` pass), a peer's compile time where it prints one (jax),
and peak host memory (maximum resident set size, from wait4, as /usr/bin/time -v reports it);
then one table row per engine with the ratio clvae / peer. Figures from a shared, noisy machine:
quote medians measured side by side, never one run.
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
RES_REFERENCE = os.path.join(REFERENCE_DIR, "torch_resvae.py")
JAX_REFERENCE = os.path.join(REFERENCE_DIR, "jax_vae.py")
TINYGRAD_REFERENCE = os.path.join(REFERENCE_DIR, "tinygrad_vae.py")
DATA = "/usr/share/datasets/fashion-mnist"   # clvae's and every reference's default
# The peers --peer takes: the modules their python must import (the first is the engine), what pip
# installs into a venv of their own when no python here has them, and that venv's default folder.
PEERS = {
    "torch": ("torch", None, None),
    "jax": ("jax, optax", ["jax", "jaxlib", "optax"], os.path.join(ROOT, "bench", ".venv-jax")),
    "tinygrad": ("tinygrad, numpy", ["tinygrad", "numpy"],
                 os.path.join(ROOT, "bench", ".venv-tinygrad")),
}
# What each model is, for clvae and for its PyTorch reference (which takes the same options), and
# its batch.
RES_ARGS = ["--encoder", "conv:32:3:1:1,res:32,conv:64,res:64,conv:128,res:128,dense:256",
            "--latent", "32", "--likelihood", "logistic", "--batch", "64"]
MODELS = {
    "mlp": ("default model 784-128-10", [], REFERENCE, 256),
    "conv": ("conv reference 1x28x28-conv32-conv64-256-10",
             ["--encoder", "conv:32,conv:64,dense:256", "--latent", "10"], CONV_REFERENCE, 256),
    "res": ("residual model conv32-res32-conv64-res64-conv128-res128-256-32, logistic (issue 22's "
            "benchmark, for --data icons-11)", RES_ARGS, RES_REFERENCE, 64),
}
N_TRAIN = 60000  # training images an epoch: Fashion-MNIST's until clvae_run reads the data's




def run_measured(cmd, env=None):
    """Like run, with the child's own peak RSS (MiB) from wait4."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as err_file:   # a file: a chatty stderr cannot block it
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err_file, env=env, text=True)
        out = p.stdout.read()
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = 0   # reaped here, by wait4
        seconds = time.perf_counter() - t0
        err_file.seek(0)
        err = err_file.read()
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
    return module_python("torch")


def torch_blas_warning(py):
    """A line saying so when py's PyTorch multiplies on the reference BLAS (Debian's libblas3 with
    no optimised BLAS installed: several times slower than OpenBLAS), else None."""
    code = ("import torch; torch.ones(2, 2) @ torch.ones(2, 2); "
            "print(open('/proc/self/maps').read())")
    p = subprocess.run([py, "-c", code], capture_output=True, text=True)
    return blas_warning(p.stdout) if p.returncode == 0 else None


def blas_warning(maps):
    """torch_blas_warning's judgement on a process's /proc/PID/maps text."""
    libs = sorted(set(re.findall(r"/\S*(?:blas|mkl|blis)\S*", maps)))
    reference = [l for l in libs if re.search(r"/blas/libblas\.so", l)]
    if not reference or any(re.search(r"libopenblas|mkl|blis", os.path.basename(l)) for l in libs):
        return None
    return ("bench: PyTorch's matrix products run on the reference BLAS (%s), several times "
            "slower than OpenBLAS: its times are not PyTorch's usual (Debian: apt-get install "
            "libopenblas0-pthread)" % ", ".join(reference))


def module_python(module, extra=()):
    """The first of this Python, /usr/bin/python3, python3 on PATH and extra that imports
    module, or None."""
    for py in [sys.executable, "/usr/bin/python3", shutil.which("python3"), *extra]:
        if py and os.path.exists(py) and subprocess.run(
                [py, "-c", "import " + module], capture_output=True).returncode == 0:
            return py
    return None


def peer_python(name, venv):
    """A Python for peer name that imports its module: one here, else the venv's, made (python3
    -m venv, pip install from PyPI) when missing. Exits 2 with one line when that fails."""
    module, packages, _ = PEERS[name]
    vpy = os.path.join(venv, "bin", "python")
    py = module_python(module, [vpy])
    if py:
        return py
    print("bench: no python here imports %s: making %s (pip install %s; takes minutes)"
          % (module, venv, " ".join(packages)))
    sys.stdout.flush()
    existed = os.path.exists(venv)
    r = subprocess.run([sys.executable, "-m", "venv", venv], capture_output=True, text=True)
    if r.returncode != 0 or not os.path.exists(vpy):
        if not existed:
            shutil.rmtree(venv, ignore_errors=True)
        why = (r.stderr.strip().splitlines() or ["no %s" % vpy])[-1]
        print("bench: `%s -m venv %s` failed (%s): install Python's venv module (Debian: "
              "apt-get install python3-venv)" % (sys.executable, venv, why), file=sys.stderr)
        sys.exit(2)
    r = subprocess.run([vpy, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
                       + packages, capture_output=True, text=True)
    if r.returncode != 0 or subprocess.run([vpy, "-c", "import " + module],
                                           capture_output=True).returncode != 0:
        last = (r.stderr.strip().splitlines() or ["import %s failed" % module])[-1]
        print("bench: pip install %s into %s failed (%s): it needs PyPI; delete %s to retry"
              % (" ".join(packages), venv, last, venv), file=sys.stderr)
        sys.exit(2)
    return vpy


def module_version(py, modules):
    """The version of the first of modules ("jax, optax") as py sees it."""
    name = modules.split(",")[0]
    r = subprocess.run([py, "-c", "import importlib.metadata as m; print(m.version(%r))" % name],
                       capture_output=True, text=True)
    return r.stdout.strip() or "?"


def clvae_run(exe, epochs, extra, env=None):
    """One clvae training run: (epoch seconds list, first-step seconds, peak RSS MiB)."""
    with tempfile.TemporaryDirectory() as out_dir:
        out, _, rss = run_measured([exe, "train", "--epochs", str(epochs), "--out", out_dir]
                                   + extra, env)
        with open(os.path.join(out_dir, "metrics.csv")) as f:
            rows = list(csv.DictReader(f))
    seconds = [float(row["seconds"]) for row in rows]
    # The data's training images (icons-11: 5,187), for every img/s column, from the banner.
    global N_TRAIN
    n = re.search(r": ([0-9]+) training and [0-9]+ test images", out)
    if n:
        N_TRAIN = int(n.group(1))
    m = re.search(r"first training step done ([0-9.]+) s", out)
    return seconds, float(m.group(1)) if m else float("nan"), rss


def clvae_launches(exe, extra):
    """Kernel launches per training step, from a one-epoch `clvae train --profile` run."""
    with tempfile.TemporaryDirectory() as out_dir:
        out, _, _ = run_measured([exe, "train", "--epochs", "1", "--out", out_dir, "--profile"]
                                 + extra)
    m = re.search(r"clvae: ([0-9.]+) launches per training step", out)
    return float(m.group(1)) if m else None


def peer_command(name, py, model, epochs, a):
    """The command line and environment of one run of peer name."""
    env = dict(os.environ)
    if name == "torch":
        reference = MODELS[model][2]
        extra = MODELS[model][1] + ["--threads", "2"] if model == "res" else []
        return [py, reference, "--epochs", str(epochs), "--data", a.data] + extra, env
    if name == "jax":
        env.setdefault("JAX_PLATFORMS", "cpu")   # no probing for accelerators
        return [py, JAX_REFERENCE, "--epochs", str(epochs), "--data", a.data, "--model", model,
                "--loop", a.jax_loop], env
    env["DEV"] = a.tinygrad_dev
    return [py, TINYGRAD_REFERENCE, "--epochs", str(epochs), "--data", a.data], env


def peer_run(name, py, model, epochs, a):
    """One run of a peer: (epoch seconds list, compile seconds or None, peak RSS MiB)."""
    cmd, env = peer_command(name, py, model, epochs, a)
    out, _, rss = run_measured(cmd, env)
    seconds = [float(m) for m in re.findall(r"^epoch \d+ ([0-9.]+)s", out, re.M)]
    if not seconds:
        sys.exit("bench: %s printed no epoch lines:\n%s" % (" ".join(cmd), out[-2000:]))
    m = re.search(r"^compile ([0-9.]+)s", out, re.M)
    return seconds, float(m.group(1)) if m else None, rss


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


def gpu_table(exe, epochs, device_args, icons=None, only=None):
    """Issue 8's table on a GPU: clvae (on the device device_args picks, default the first GPU)
    and PyTorch with --device cuda, alternating row by row on one machine; prints img/s and the
    ratio. With icons (an icons-11 folder), a last row for issue 22's residual model on it against
    torch_resvae.py. only: words, the rows whose label has one of them (all when None). A row that
    fails prints its error and goes on."""
    py = torch_python()
    print("| workload | clvae img/s | PyTorch img/s | clvae / PyTorch |")
    print("| --- | --- | --- | --- |")
    rows = [(label, ours, theirs, CONV_REFERENCE if theirs is None else REFERENCE)
            for label, ours, theirs in GPU_TABLE]
    if icons:
        rows.append(("residual model, icons-11, batch 64", RES_ARGS + ["--data", icons],
                     RES_ARGS + ["--data", icons], RES_REFERENCE))
    rows = [r for r in rows if not only or any(w in r[0] for w in only)]
    for label, ours, theirs, reference in rows:
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
        cell = lambda v: (f"{v / 1e3:,.0f} k" if v >= 1e5 else f"{v / 1e3:,.2f} k") if v \
            else "failed"  # noqa: E731
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
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds of clvae and peers")
    ap.add_argument("--device-args", default="", help="extra clvae options, e.g. '--device 1'")
    ap.add_argument("--peer", default="torch",
                    help="comma list of peers run alternating with clvae: torch, jax, tinygrad "
                         "[torch]")
    ap.add_argument("--no-torch", action="store_true", help="leave torch out of --peer")
    ap.add_argument("--jax-loop", choices=["scan", "python"], default="scan",
                    help="jax_vae.py --loop: one jitted epoch (lax.scan) or one jitted step in a "
                         "Python loop (jax_vae.py finds that faster for the conv model) [scan]")
    ap.add_argument("--tinygrad-dev", choices=["CL", "CPU"], default="CL",
                    help="tinygrad's device: CL (OpenCL: PoCL here) or CPU (clang) [CL]")
    ap.add_argument("--jax-venv", default=PEERS["jax"][2],
                    help="venv made for jax when no python here imports it [bench/.venv-jax]")
    ap.add_argument("--tinygrad-venv", default=PEERS["tinygrad"][2],
                    help="venv made for tinygrad likewise [bench/.venv-tinygrad]")
    ap.add_argument("--data", default=DATA,
                    help="Fashion-MNIST IDX files, for clvae and every peer [%s]" % DATA)
    ap.add_argument("--no-profile", action="store_true",
                    help="skip the one-epoch --profile pass that counts launches per step")
    ap.add_argument("--icons", default=None,
                    help="--gpu-table: an icons-11 folder (../shared/data/make_icons.py), for a "
                         "row of issue 22's residual model")
    ap.add_argument("--rows", default=None,
                    help="--gpu-table: comma list of words; only the rows whose label has one "
                         "(e.g. 'batch 256,residual')")
    ap.add_argument("--model", choices=sorted(MODELS), default="mlp",
                    help="the default MLP, the conv reference architecture, or issue 22's residual "
                         "model (give --data /tmp/icons-11)")
    ap.add_argument("--gpu-table", action="store_true",
                    help="issue 8's table on a GPU: every batch size and width against PyTorch "
                         "--device cuda (--epochs per run, the first dropped)")
    ap.add_argument("--exe", help="a clvae binary to run instead of building one (on a GPU "
                                  "machine: .gpu/bin/clvae)")
    ap.add_argument("--ranks", help="comma-separated rank counts, e.g. 1,2: data-parallel "
                                    "training under mpirun, compute and communication per step")
    a = ap.parse_args()
    peers = []
    for name in (x.strip() for x in a.peer.split(",")):
        if name not in PEERS:
            ap.error("--peer: %r is none of %s" % (name, ", ".join(PEERS)))
        if name not in peers and not (name == "torch" and a.no_torch):
            peers.append(name)
    if a.epochs < 2 and not a.gpu_table:
        ap.error("--epochs: at least 2 (each run's first epoch is dropped)")
    exe = a.exe or build()
    if a.gpu_table:
        gpu_table(exe, a.epochs, a.device_args.split(), a.icons,
                  a.rows.split(",") if a.rows else None)
        return
    what, model_args, reference, batch = MODELS[a.model]
    if a.ranks:
        print("bench: %s, %s, batch %d, %d rounds of %d epochs; machine: %s, %d cores"
              % (exe, what, batch, a.rounds, a.epochs, platform_cpu(), os.cpu_count()))
        ranks_table(exe, [int(x) for x in a.ranks.split(",")], a.epochs, a.rounds,
                    model_args + a.device_args.split())
        return
    extra = model_args + ["--data", a.data] + a.device_args.split()
    print("bench: %s, %d rounds of %d epochs, %s, batch %d" % (exe, a.rounds, a.epochs, what,
                                                               batch))
    print("bench: machine: %s, %d cores" % (platform_cpu(), os.cpu_count()))

    # Each peer's python (a venv made for jax or tinygrad if none here imports it).
    pythons, labels = {}, {}
    for name in peers:
        if name == "jax" and a.model == "res":
            print("bench: jax_vae.py has no residual model: jax left out of --model res")
            continue
        if name == "tinygrad" and a.model != "mlp":
            print("bench: tinygrad_vae.py has the MLP only: tinygrad left out of --model %s"
                  % a.model)
            continue
        if name == "torch":
            py = torch_python()
            if py is None:
                print("bench: PyTorch is not importable: torch left out (Debian: python3-torch "
                      "libopenblas0-pthread)")
                continue
            warning = torch_blas_warning(py)
            if warning:
                print(warning)
        else:
            py = peer_python(name, a.jax_venv if name == "jax" else a.tinygrad_venv)
        pythons[name] = py
        version = module_version(py, PEERS[name][0])
        how = {"torch": "--threads 2",
               "jax": "--loop %s, XLA:CPU on every core" % a.jax_loop,
               "tinygrad": "DEV=%s" % a.tinygrad_dev}[name]
        labels[name] = "%s %s%s" % (name, version, {"jax": " (%s)" % a.jax_loop, "tinygrad":
                                                    " (DEV=%s)" % a.tinygrad_dev}.get(name, ""))
        print("bench: peer %s %s (%s; %s)" % (name, version, py, how))
    if not pythons:
        print("bench: no peer: clvae alone")

    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, POCL_CACHE_DIR=cache)
        _, cold, _ = clvae_run(exe, 1, extra, env)
    launches = None if a.no_profile else clvae_launches(exe, extra)
    ours, firsts, rss_ours = [], [], []
    theirs = {name: {"epochs": [], "compile": [], "rss": [], "first": []} for name in pythons}
    for r in range(a.rounds):
        seconds, first, rss = clvae_run(exe, a.epochs, extra)
        ours += seconds[1:]
        firsts.append(first)
        rss_ours.append(rss)
        print("bench: round %d clvae epochs %s" % (r + 1, " ".join("%.3f" % s for s in seconds)))
        for name, py in list(pythons.items()):
            try:
                seconds, compile_s, rss = peer_run(name, py, a.model, a.epochs, a)
            except SystemExit as e:   # one peer failing leaves the others running
                print("bench: round %d %s failed, left out from here: %s" % (r + 1, name, e),
                      file=sys.stderr)
                del pythons[name]
                continue
            theirs[name]["epochs"] += seconds[1:]
            theirs[name]["first"].append(seconds[0])
            theirs[name]["rss"].append(rss)
            if compile_s is not None:
                theirs[name]["compile"].append(compile_s)
            print("bench: round %d %s epochs %s%s" % (
                r + 1, name, " ".join("%.3f" % s for s in seconds),
                "" if compile_s is None else " (compile %.3f)" % compile_s))
        sys.stdout.flush()
    print()
    med = summary("clvae", ours)
    print("clvae    start to first step: cold %.2f s (empty PoCL cache), warm median %.2f s" %
          (cold, statistics.median(firsts)))
    print("clvae    peak host memory: %.0f MiB" % max(rss_ours))
    if launches is not None:
        print("clvae    launches per training step: %.1f (clvae train --profile)" % launches)
    rows = [("clvae", med, min(ours), max(ours), len(ours), "first step %.2f s warm, %.2f s cold"
             % (statistics.median(firsts), cold), max(rss_ours),
             "-" if launches is None else "%.1f" % launches, "-")]
    for name, t in theirs.items():
        if not t["epochs"]:
            continue
        label = {"torch": "pytorch"}.get(name, name)
        med_t = summary(label, t["epochs"])
        print("%-8s peak host memory: %.0f MiB" % (label, max(t["rss"])))
        start = "-"
        if t["compile"]:
            start = "compile %.2f s" % statistics.median(t["compile"])
            print("%-8s compile: median %.2f s" % (label, statistics.median(t["compile"])))
        elif name == "tinygrad":   # compiles and captures its kernels in the first epoch
            start = "epoch 1 %.2f s (compiling)" % statistics.median(t["first"])
        print("ratio clvae / %s (median epoch time): %.2f" % (label, med / med_t))
        rows.append((labels[name], med_t, min(t["epochs"]), max(t["epochs"]), len(t["epochs"]),
                     start, max(t["rss"]), "-", "%.2f" % (med / med_t)))
    print()
    print("| engine | median epoch (min-max, n) | img/s | start | peak RSS | launches/step | "
          "clvae / engine |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for label, m, lo, hi, n, start, rss, launch, ratio in rows:
        print("| %s | %.3f s (%.3f-%.3f, %d) | %s | %s | %.0f MiB | %s | %s |"
              % (label, m, lo, hi, n, "{:,.0f}".format(N_TRAIN / m), start, rss, launch, ratio))


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
