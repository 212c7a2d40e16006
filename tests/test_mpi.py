#!/usr/bin/env python3
"""Data-parallel training over MPI: `mpirun -np 2 clvae train` against one process with the same
global batch and seed (the same parameters within float tolerance, and far from them when the
gradients are not summed), checkpoints resumed across rank counts both ways, Ctrl-C on a 2-rank
job (one checkpoint, written once), a rank killed mid-run (mpirun ends within seconds, the last
checkpoint intact), and the commands that refuse to run under mpirun.

Skipped (exit 77) when clvae was built without MPI or mpirun is missing. Run as
`CLVAE=path/to/clvae MPIRUN=mpirun python3 tests/test_mpi.py`.
"""
import array
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_cli as cli  # noqa: E402

MPIRUN = os.environ.get("MPIRUN") or shutil.which("mpirun")
# Root in CI containers; two ranks on however many cores the machine has.
# In the sanitizer build the ranks run without LeakSanitizer: MPI_Init loads Open MPI's
# components and closes those it does not select, and what they allocated is then reported at
# addresses that later libraries (CLBlast) occupy, so no suppression can name it. AddressSanitizer
# and UBSan stay on; the single-process tests check clvae's own allocations for leaks.
MPI_ENV = {"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
           "OMPI_MCA_rmaps_base_oversubscribe": "1",
           "ASAN_OPTIONS": os.environ.get("ASAN_OPTIONS", "") + ":detect_leaks=0"}
# Gradients summed in another order (two halves, then the two sums) differ in the last bits, and
# Adam, dividing by the root of the squared gradients' average, carries that to the parameters a
# step at a time. Measured here (PoCL, 2 cores): 7.5e-8 after 297 steps; without the sum, 0.095.
# (On Fashion-MNIST, batch 256, 470 steps: 0.024, the halves' products reducing in other orders.)
PARAM_TOL = 1e-3


def mpirun(args, n=2, env=None, timeout=300):
    """clvae args on n ranks; the result as cli.run gives it."""
    full = dict(os.environ, **MPI_ENV, **(env or {}))
    t0 = time.monotonic()
    p = subprocess.run([MPIRUN, "--oversubscribe", "--allow-run-as-root", "-np", str(n),
                        cli.CLVAE] + args, capture_output=True, text=True, env=full,
                       cwd=cli.TMP, timeout=timeout)
    return cli.Result(["mpirun", "-np", str(n)] + args, p.returncode, p.stdout, p.stderr,
                      time.monotonic() - t0)


def params(path):
    """name -> array of float32 of a checkpoint's parameters (no optimizer state)."""
    with open(path, "rb") as f:
        blob = f.read()
    n = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8:8 + n])
    header.pop("__metadata__")
    out = {}
    for name, v in header.items():
        if name.startswith("optimizer."):
            continue
        a = array.array("f")
        a.frombytes(blob[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]])
        out[name] = a
    return out


def max_diff(a, b):
    return max(abs(x - y) for k in a for x, y in zip(a[k], b[k]))


def built_with_mpi():
    r = cli.run(["train", "--help"], cwd="/")
    return MPIRUN is not None and r.rc == 0 and "mpirun" in r.out


def train_args(data, out, epochs, *more):
    return ["train", "--data", data, "--out", out, "--epochs", str(epochs), "--batch", "30",
            "--hidden", "16", "--latent", "4", "--seed", "5", "--quiet"] + list(more)


def test_same_as_one_rank(data):
    # 270 training images, batch 30: 9 steps an epoch, 297 steps in 33 epochs.
    out1, out2, out3 = cli.fresh_out(), cli.fresh_out(), cli.fresh_out()
    one = cli.run(train_args(data, out1, 33, "--save", os.path.join(out1, "m.safetensors")))
    two = mpirun(train_args(data, out2, 33, "--save", os.path.join(out2, "m.safetensors")))
    skip = mpirun(train_args(data, out3, 33, "--save", os.path.join(out3, "m.safetensors")),
                  env={"CLVAE_MPI_SKIP_ALLREDUCE": "1"})
    ok = one.rc == 0 and two.rc == 0 and skip.rc == 0
    cli.check("1 rank, 2 ranks, 2 ranks without the sum: all train", ok,
              "; ".join(r.describe() for r in (one, two, skip) if r.rc != 0))
    if not ok:
        return
    p1 = params(os.path.join(out1, "m.safetensors"))
    d2 = max_diff(p1, params(os.path.join(out2, "m.safetensors")))
    d3 = max_diff(p1, params(os.path.join(out3, "m.safetensors")))
    cli.check(f"2 ranks = 1 rank after 297 steps: parameters within {PARAM_TOL} (max diff "
              f"{d2:.2g})", d2 <= PARAM_TOL, f"max |difference| {d2}")
    cli.check(f"without the gradient sum the parameters are far off (max diff {d3:.2g} > "
              f"{PARAM_TOL} and 10x the summed run's)", d3 > PARAM_TOL and d3 > 10 * d2,
              f"{d3} against {d2}")
    _, _, m1 = cli.read_metrics(out1)
    _, _, m2 = cli.read_metrics(out2)
    same = all(abs(float(a[k]) - float(b[k])) <= 1e-3 * abs(float(a[k])) + 1e-3
               for a, b in zip(m1, m2) for k in ("train_neg_elbo", "test_neg_elbo"))
    cli.check("2 ranks: metrics.csv written once (rank 0), the same losses as 1 rank within 0.1%",
              len(m1) == len(m2) == 33 and same, f"{m1[-1]} vs {m2[-1]}")


def test_resume_across(data):
    straight, a, b = cli.fresh_out(), cli.fresh_out(), cli.fresh_out()
    r = cli.run(train_args(data, straight, 20, "--save", os.path.join(straight, "m.safetensors")))
    ca, cb = os.path.join(a, "m.safetensors"), os.path.join(b, "m.safetensors")
    runs = [mpirun(train_args(data, a, 10, "--save", ca)),
            cli.run(train_args(data, a, 20, "--resume", ca, "--save", ca)),
            cli.run(train_args(data, b, 10, "--save", cb)),
            mpirun(train_args(data, b, 20, "--resume", cb, "--save", cb))]
    bad = [x.describe() for x in [r] + runs if x.rc != 0]
    if not cli.check("resume: 2 ranks then 1, 1 then 2: every run exits 0", not bad,
                     "; ".join(bad)):
        return
    p = params(os.path.join(straight, "m.safetensors"))
    da, db = max_diff(p, params(ca)), max_diff(p, params(cb))
    cli.check(f"resume: a 2-rank checkpoint on 1 rank, and a 1-rank one on 2, end within "
              f"{PARAM_TOL} of 20 epochs on 1 (max diffs {da:.2g}, {db:.2g})",
              da <= PARAM_TOL and db <= PARAM_TOL, f"{da}, {db}")


def spawn_mpirun(args):
    env = dict(os.environ, **MPI_ENV)
    return subprocess.Popen([MPIRUN, "--oversubscribe", "--allow-run-as-root", "-np", "2",
                             cli.CLVAE] + args, cwd=cli.TMP, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def wait_for(path, p, seconds=120):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and p.poll() is None and not os.path.exists(path):
        time.sleep(0.05)
    return os.path.exists(path)


def loads(ckpt):
    png = ckpt + ".png"
    r = cli.run(["generate", "--model", ckpt, "-n", "1", "-o", png])
    return r.rc == 0 and os.path.exists(png), r


def test_ctrl_c(data):
    out = cli.fresh_out()
    ckpt = os.path.join(out, "m.safetensors")
    args = [a for a in train_args(data, out, 100000, "--save", ckpt) if a != "--quiet"]
    p = spawn_mpirun(args)
    started = wait_for(ckpt, p)
    time.sleep(0.3)
    p.send_signal(signal.SIGINT)
    try:
        stdout, stderr = p.communicate(timeout=60)
        rc = p.returncode
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        stdout, stderr = p.communicate()
        rc = "timeout"
    ok, r = loads(ckpt) if started else (False, None)
    # The ranks exit 130; mpirun, asked to stop a job, exits with a status of its own (1).
    cli.check("Ctrl-C on 2 ranks: mpirun ends non-zero, one 'checkpoint written' line (rank 0's), "
              "and the checkpoint loads",
              started and rc not in (0, "timeout") and
              stderr.count("checkpoint written to") == 1 and ok,
              f"rc {rc}; stdout {stdout[-400:]!r}; stderr {stderr!r}")


def test_rank_killed(data):
    out = cli.fresh_out()
    ckpt = os.path.join(out, "m.safetensors")
    p = spawn_mpirun(train_args(data, out, 100000, "--save", ckpt))
    started = wait_for(ckpt, p)
    time.sleep(0.3)
    # The ranks are mpirun's children; kill the one that is not rank 0 (either will do).
    children = subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True,
                              text=True).stdout.split()
    victim = int(children[-1]) if children else None
    t0 = time.monotonic()
    if victim:
        os.kill(victim, signal.SIGKILL)
    try:
        p.communicate(timeout=30)
        rc, took = p.returncode, time.monotonic() - t0
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        rc, took = "hung", time.monotonic() - t0
    ok, r = loads(ckpt) if started else (False, None)
    cli.check(f"a rank killed mid-run: mpirun exits non-zero within 10 s ({took:.1f} s), the "
              "last checkpoint loads",
              started and victim and rc not in (0, "hung") and took < 10 and ok,
              f"rc {rc}, started {started}, children {children}; "
              f"{r.describe() if r else ''}")


def test_refusals(data):
    r = mpirun(["generate", "--model", "x.safetensors", "-o", "x.png"])
    cli.check("generate under mpirun -np 2: refused (exit 2), one line from rank 0",
              r.rc == cli.EXIT_USAGE and r.err.count("clvae: ") == 1 and "mpirun" in r.err,
              r.describe())
    out = cli.fresh_out()
    r = mpirun(["train", "--data", os.path.join(cli.TMP, "missing"), "--out", out])
    cli.check("a bad --data under mpirun -np 2: exit 3, one line (every rank agrees), no OUT",
              r.rc == cli.EXIT_DATA and r.err.count("clvae: ") == 1 and not os.path.exists(out),
              r.describe())


def body():
    data = cli.data_dir("mpi", cli.idx3(270, cli.ROWS, cli.COLS, seed=11), cli.TEST_IMAGES)
    test_same_as_one_rank(data)
    test_resume_across(data)
    test_ctrl_c(data)
    test_rank_killed(data)
    test_refusals(data)


if __name__ == "__main__":
    if os.access(cli.CLVAE, os.X_OK) and not built_with_mpi():
        print("mpi: skipped: clvae built without MPI, or no mpirun")
        sys.exit(77)
    sys.exit(cli.run_suite("mpi", body))
