#!/usr/bin/env python3
"""Fault tests for clvae: device allocations that cannot succeed, outputs on a full or read-only
file system, SIGKILL during checkpoint writes, truncated checkpoints, NaN losses, and data files
that claim (or inflate to) far more than they hold. Each failure must be the documented exit
status with one "clvae: " line naming the buffer, file or option, and must leave the last good
checkpoint and no temporary files behind.

Run as `CLVAE=path/to/clvae python3 tests/test_faults.py` (the helpers are test_cli.py's).
"""
import concurrent.futures
import filecmp
import gzip
import json
import math
import os
import random
import re
import resource
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_cli as cli  # noqa: E402  (the shared helpers: idx3, data_dir, fresh_out, ...)

EXIT_DIVERGED = cli.EXIT_DIVERGED
MIB = 1 << 20

passed = failed = 0


def check(label, ok, why=""):
    """Records one check: prints "faults: <label> ok", or a FAIL line with the reason."""
    global passed, failed
    if ok:
        passed += 1
        print(f"faults: {label} ok")
    else:
        failed += 1
        print(f"faults: FAIL {label}: {why}")
    sys.stdout.flush()
    return ok


def note(text):
    print(f"faults:   {text}")
    sys.stdout.flush()


def read(path):
    with open(path, "rb") as f:
        return f.read()


def write(path, blob):
    with open(path, "wb") as f:
        f.write(blob)


# ---- running clvae ----------------------------------------------------------------------------

def spawn(args, preexec_fn=None, timeout=120, on_line=None):
    """Runs clvae with args and returns a cli.Result with .rss_mb, the child's peak resident memory
    (ru_maxrss from wait4). on_line(proc, line) sees stdout line by line as it arrives. Output goes
    through pipes: a file size limit on the child must not cut its own messages short."""
    t0 = time.monotonic()
    p = subprocess.Popen([cli.CLVAE] + args, cwd=cli.TMP, preexec_fn=preexec_fn,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    timer = threading.Timer(timeout, p.kill)
    timer.start()
    err = []
    reader = threading.Thread(target=lambda: err.append(p.stderr.read()))
    reader.start()
    out = []
    try:
        for line in p.stdout:
            out.append(line)
            if on_line:
                on_line(p, line.decode(errors="replace"))
        reader.join()
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
    finally:
        timer.cancel()
        p.stdout.close()
        p.stderr.close()
    r = cli.Result(args, p.returncode, b"".join(out).decode(errors="replace"),
                   b"".join(err).decode(errors="replace"), time.monotonic() - t0)
    r.rss_mb = usage.ru_maxrss / 1024.0
    return r


def error_problems(r, status, mentions, stdout_empty=True):
    """What is wrong with r as a refusal: the exit status, stderr one "clvae: " line holding every
    string in mentions, and (when stdout_empty) nothing on stdout."""
    problems = []
    if r.rc != status:
        problems.append(f"exit status {r.rc}, expected {status}")
    if stdout_empty and r.out:
        problems.append("something on stdout")
    if not r.err.startswith("clvae: ") or r.err.count("\n") != 1 or not r.err.endswith("\n"):
        problems.append("stderr is not one 'clvae: ' line")
    problems += [f"stderr does not mention {m!r}" for m in mentions if m not in r.err]
    return problems


def expect(label, r, status, mentions, out=None, stdout_empty=True):
    """Checks r with error_problems; with out, also that it holds no file."""
    problems = error_problems(r, status, mentions, stdout_empty)
    if out is not None and cli.files_under(out):
        problems.append(f"left files in OUT: {cli.files_under(out)}")
    return check(label, not problems, "; ".join(problems) + " -- " + r.describe())


def ignore_sigxfsz():
    """preexec_fn: SIGXFSZ ignored, so that a write past RLIMIT_FSIZE fails with EFBIG instead of
    killing the process (an ignored disposition survives exec)."""
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def file_size_limit(limit):
    """preexec_fn: SIGXFSZ ignored and no file written past limit bytes, from exec on."""
    def apply():
        ignore_sigxfsz()
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


# ---- checkpoints ------------------------------------------------------------------------------

def st_header(blob):
    """(header length, header dict) of a safetensors file's bytes."""
    n = struct.unpack("<Q", blob[:8])[0]
    return n, json.loads(blob[8:8 + n])


def set_float(src, dst, tensor, value, index=0):
    """Copies checkpoint src to dst with element index of tensor set to value (float32)."""
    blob = bytearray(read(src))
    n, header = st_header(blob)
    at = 8 + n + header[tensor]["data_offsets"][0] + 4 * index
    blob[at:at + 4] = struct.pack("<f", value)
    write(dst, bytes(blob))


def non_finite(path):
    """How many of the checkpoint's float32 values are NaN or infinite."""
    blob = read(path)
    n, _ = st_header(blob)
    data = blob[8 + n:]
    return sum(1 for (v,) in struct.iter_unpack("<f", data) if not math.isfinite(v))


def n_params(in_dim, hidden, latent):
    """src/model/vae.c vae_layout: the encoder, the mean and log-variance heads, the mirrored decoder."""
    widths = [in_dim] + hidden
    layers = list(zip(widths[:-1], widths[1:])) + [(hidden[-1], 2 * latent)]
    back = [latent] + hidden[::-1] + [in_dim]
    layers += list(zip(back[:-1], back[1:]))
    return sum(i * o + o for i, o in layers)


def train_args(data, out, *extra):
    return ["train", "--data", data, "--out", out, "--quiet"] + list(extra)


# ---- 1. device allocations --------------------------------------------------------------------

def test_allocations(small):
    hidden = [30000, 30000]
    out = cli.fresh_out()
    r = spawn(train_args(small, out, "--batch", "32", "--hidden", "30000,30000"))
    size = 4 * n_params(cli.ROWS * cli.COLS, hidden, 10)
    expect(f"--hidden 30000,30000 ({size} bytes of parameters): exit 5 naming the buffer and "
           "its size, nothing written", r, cli.EXIT_DEVICE, ["parameters", str(size)], out=out)
    check("--hidden 30000,30000: refused before training, fast", r.seconds < 10,
          f"{r.seconds:.1f} s")
    note(f"--hidden 30000,30000: {r.seconds:.2f} s, {r.rss_mb:.0f} MB RSS: {r.err.strip()}")

    # Buffers larger than the largest allocation are split, not refused. CLVAE_MAX_ALLOC makes the
    # device's limit smaller, so that small models and data show it here.
    test_split_buffers(small)

    out = cli.fresh_out()
    r = spawn(train_args(small, out, "--batch", "32", "--hidden", "65536,65536"))
    count = n_params(cli.ROWS * cli.COLS, [65536, 65536], 10)
    expect(f"--hidden 65536,65536 ({count} parameters, over 2^31-1): exit 2, nothing written", r,
           cli.EXIT_USAGE, [str(count)], out=out)
    # README: every error names the file or option at fault.
    check("--hidden 65536,65536: the message names the option (--hidden)", "--hidden" in r.err,
          r.describe())


def split_run(data, out, limit, *extra):
    """One epoch with --save out/m.safetensors, CLVAE_MAX_ALLOC=limit unless None."""
    env = {"CLVAE_MAX_ALLOC": limit} if limit else {}
    args = ["train", "--data", data, "--out", out, "--epochs", "1", "--save",
            os.path.join(out, "m.safetensors")] + list(extra)
    return cli.run(args, env=env)


def same_checkpoints(a, b):
    """Compared in chunks: a run's peak memory (ru_maxrss, checked below) starts from what this
    process holds when it forks."""
    try:
        return filecmp.cmp(os.path.join(a, "m.safetensors"), os.path.join(b, "m.safetensors"),
                           shallow=False)
    except OSError:
        return False


def test_split_buffers(small):
    # The wide model: --hidden 4096,4096 trains an epoch on 8x8 images, and with the
    # largest allocation at 80 MiB its parameters (a 64 MiB weight a layer) go in two buffers, with
    # the same checkpoint byte for byte.
    wide = ("--hidden", "4096,4096", "--batch", "64", "--latent", "4")
    whole, parted = cli.fresh_out(), cli.fresh_out()
    a = split_run(small, whole, None, *wide)
    b = split_run(small, parted, "80M", *wide)
    check("--hidden 4096,4096: trains an epoch on 8x8 images (exit 0, metrics.csv)",
          a.rc == 0 and os.path.exists(os.path.join(whole, "metrics.csv")), a.describe())
    check("--hidden 4096,4096 under CLVAE_MAX_ALLOC=80M: parameters in 2 buffers, said in the "
          "banner", b.rc == 0 and "larger than the largest allocation CLVAE_MAX_ALLOC=80M allows "
          "(83886080 bytes): parameters in 2 buffers\n"
          in b.out,
          b.describe())
    check("--hidden 4096,4096 in 2 buffers: the checkpoint equals the one-buffer run's",
          same_checkpoints(whole, parted), "the checkpoints differ")

    # 3000 images of 8x8 (192,000 bytes) under a 40 KB limit: the training set in 5 buffers of
    # whole images, the test set in 1; the default model's 82,256 parameter bytes in 3. At
    # --batch 64 the activations fit: the same checkpoint as without the limit.
    long_data = cli.data_dir("split", train=cli.idx3(3000, cli.ROWS, cli.COLS, seed=9),
                             test=cli.TEST_IMAGES)
    whole, parted = cli.fresh_out(), cli.fresh_out()
    a = split_run(long_data, whole, None, "--batch", "64")
    b = split_run(long_data, parted, "40K", "--batch", "64")
    check("CLVAE_MAX_ALLOC=40K: training set in 5 buffers, parameters in 3",
          a.rc == 0 and b.rc == 0 and "training set in 5 buffers, parameters in 3 buffers" in b.out,
          a.describe() + b.describe())
    check("data and parameters in parts: the checkpoint equals the one-buffer run's",
          same_checkpoints(whole, parted), "the checkpoints differ")
    # At --batch 256 a 256-row pass's activations (131,072 bytes a hidden layer) would not fit:
    # passes of 64 rows whose gradients add up, the same model to float rounding.
    whole, parted = cli.fresh_out(), cli.fresh_out()
    a = split_run(long_data, whole, None, "--batch", "256")
    b = split_run(long_data, parted, "40K", "--batch", "256")
    check("CLVAE_MAX_ALLOC=40K, --batch 256: a batch in passes of 64 rows",
          b.rc == 0 and "a batch in passes of 64 rows" in b.out, b.describe())
    _, _, rows_a = cli.read_metrics(whole) if a.rc == 0 else ("", [], [])
    _, _, rows_b = cli.read_metrics(parted) if b.rc == 0 else ("", [], [])
    losses = ("train_neg_elbo", "train_rec", "train_kl", "test_neg_elbo", "test_rec", "test_kl")
    close = (len(rows_a) == 1 and len(rows_b) == 1 and
             all(abs(float(rows_a[0][k]) - float(rows_b[0][k])) <= 1e-3 * abs(float(rows_a[0][k]))
                 for k in losses))
    check("passes of 64 rows: the epoch's losses equal the whole batch's to 1e-3",
          close, f"{rows_a} against {rows_b}")

    # Refused, naming what: a layer larger than the limit on its own, and a data set that would
    # take more than 64 buffers.
    out = cli.fresh_out()
    r = cli.run(train_args(small, out, "--hidden", "1024,1024"), env={"CLVAE_MAX_ALLOC": "1M"})
    expect("CLVAE_MAX_ALLOC=1M, --hidden 1024,1024: exit 5 naming the layer too large for one "
           "buffer", r, cli.EXIT_DEVICE, ["encoder.1", "4198400", "1048576"], out=out)
    out = cli.fresh_out()
    r = cli.run(train_args(long_data, out), env={"CLVAE_MAX_ALLOC": "2K"})
    expect("CLVAE_MAX_ALLOC=2K: exit 5, the training set would take more than 64 buffers", r,
           cli.EXIT_DEVICE, ["training set", "192000", "64"], out=out)
    for bad in ("0", "12Q", "-5", "1MB", "K"):
        out = cli.fresh_out()
        r = cli.run(train_args(small, out), env={"CLVAE_MAX_ALLOC": bad})
        expect(f"CLVAE_MAX_ALLOC={bad}: exit 2 naming the variable", r, cli.EXIT_USAGE,
               ["CLVAE_MAX_ALLOC", bad], out=out)


# ---- 1b. numbers and names from the environment -------------------------------------------------

def devices_listing():
    """`clvae devices`: (its lines, the index of a platform with no devices or None)."""
    r = cli.run(["devices"])
    lines = r.out.splitlines()
    empty = None
    for i, line in enumerate(lines):
        m = re.match(r"platform (\d+): ", line)
        if m and i + 1 < len(lines) and lines[i + 1].strip() == "(no devices)" and empty is None:
            empty = m.group(1)
    return lines, empty


def test_environment(small):
    """CLVAE_PLATFORM and CLVAE_DEVICE follow --platform's and --device's rules (an index from 0
    to 1000, or a part of a name): numbers that atoi wrapped to 0 (2^31, 2^32, 10^20) are refused
    naming the variable, as are bad CLVAE_MAX_ALLOC, CLVAE_GEMM, CLVAE_CLBLAST_TUNING and
    CLVAE_KERNELS values;
    a device nobody chose is called the default device, never CLVAE_DEVICE."""
    for var in ("CLVAE_PLATFORM", "CLVAE_DEVICE"):
        for bad, says in (("2147483648", "out of range"), ("4294967296", "out of range"),
                          ("100000000000000000000", "out of range"), ("1001", "out of range"),
                          ("3x", "not an integer"), ("0 ", "not an integer")):
            out = cli.fresh_out()
            r = cli.run(train_args(small, out), env={var: bad})
            expect(f"{var}={bad!r}: exit 2 naming the variable and the value, nothing written", r,
                   cli.EXIT_USAGE, [f"{var}: ", bad.strip(), says], out=out)
    # (test_split_buffers has 0, 12Q, -5, 1MB and K.)
    for bad in ("18446744073709551616", "16E", "1G ", " 1G", "0x10", "1e6"):
        out = cli.fresh_out()
        r = cli.run(train_args(small, out), env={"CLVAE_MAX_ALLOC": bad})
        expect(f"CLVAE_MAX_ALLOC={bad!r}: exit 2 naming the variable", r, cli.EXIT_USAGE,
               ["CLVAE_MAX_ALLOC", bad], out=out)
    for var, bad in (("CLVAE_GEMM", "CLBLAST"), ("CLVAE_CLBLAST_TUNING", "on"),
                     ("CLVAE_CLBLAST_TUNING", "0"), ("CLVAE_KERNELS", "GPU"),
                     ("CLVAE_KERNELS", "fpga")):
        out = cli.fresh_out()
        r = cli.run(train_args(small, out), env={var: bad})
        expect(f"{var}={bad}: exit 2 naming the variable", r, cli.EXIT_USAGE, [var, bad], out=out)
    # Checked before any device is looked at: a bad variable is exit 2 even beside a bad device.
    out = cli.fresh_out()
    r = cli.run(train_args(small, out, "--device", "7"), env={"CLVAE_MAX_ALLOC": "12Q"})
    expect("CLVAE_MAX_ALLOC=12Q with --device 7: the variable, exit 2, before the device", r,
           cli.EXIT_USAGE, ["CLVAE_MAX_ALLOC"], out=out)
    out = cli.fresh_out()
    r = cli.run(train_args(small, out, "--epochs", "1", "--hidden", "1024,1024"),
              env={"CLVAE_MAX_ALLOC": "1M"})
    expect("CLVAE_MAX_ALLOC=1M too small for a layer: the message names CLVAE_MAX_ALLOC, not the "
           "device's limit", r, cli.EXIT_DEVICE, ["CLVAE_MAX_ALLOC=1M", "1048576"], out=out)
    # Empty is unset: the default device, a run like any other.
    out = cli.fresh_out()
    r = cli.run(train_args(small, out, "--epochs", "1"), env={"CLVAE_PLATFORM": "",
                                                            "CLVAE_DEVICE": ""})
    check("CLVAE_PLATFORM and CLVAE_DEVICE empty: as unset, exit 0", r.rc == 0, r.describe())

    lines, empty = devices_listing()
    if empty is None:
        note("no platform without devices here (Mesa's rusticl or Clover without a device): the "
             "default-device messages are not checked")
        return
    for option, env, named in (("--platform", {}, f"--platform {empty}"),
                               (None, {"CLVAE_PLATFORM": empty}, f"CLVAE_PLATFORM {empty}")):
        out = cli.fresh_out()
        extra = [option, empty] if option else []
        r = cli.run(train_args(small, out, *extra), env=env)
        first = r.err.splitlines()[0] if r.err else ""
        ok = (r.rc == cli.EXIT_DEVICE and first.startswith("clvae: the default device 0: ")
              and named in first and "CLVAE_DEVICE" not in r.err and not cli.files_under(out))
        check(f"{named} (a platform without devices), no device chosen: exit 5 blaming the "
              "default device and naming where the platform came from, not CLVAE_DEVICE", ok,
              r.describe())
    out = cli.fresh_out()
    r = cli.run(train_args(small, out, "--platform", empty), env={"CLVAE_DEVICE": "0"})
    check(f"--platform {empty} with CLVAE_DEVICE=0: the message names CLVAE_DEVICE, which was set",
          r.rc == cli.EXIT_DEVICE and r.err.startswith("clvae: CLVAE_DEVICE 0: no such device"),
          r.describe())


def test_metrics_fifo(small):
    """OUT/metrics.csv that is a FIFO (or a directory): refused at once (exit 4), for a new run
    (fopen's "w" waited for a reader) and for a resumed one (its "a" too)."""
    out = cli.fresh_out()
    os.makedirs(out)
    os.mkfifo(os.path.join(out, "metrics.csv"))
    r = spawn(train_args(small, out, "--epochs", "1"), timeout=120)
    expect("OUT/metrics.csv a FIFO: exit 4 naming it, no hang", r, cli.EXIT_OUTPUT,
           ["metrics.csv", "not a regular file"])
    model = os.path.join(cli.TMP, "fifo-resume.safetensors")
    first = cli.fresh_out()
    r = spawn(train_args(small, first, "--epochs", "1", "--save", model))
    out = cli.fresh_out()
    os.makedirs(out)
    os.mkfifo(os.path.join(out, "metrics.csv"))
    r = spawn(train_args(small, out, "--epochs", "2", "--resume", model), timeout=120)
    expect("--resume into an OUT whose metrics.csv is a FIFO: exit 4 naming it, no hang", r,
           cli.EXIT_OUTPUT, ["metrics.csv", "not a regular file"])
    out = cli.fresh_out()
    os.makedirs(os.path.join(out, "metrics.csv"))
    r = spawn(train_args(small, out, "--epochs", "1"), timeout=120)
    expect("OUT/metrics.csv a directory: exit 4 naming it", r, cli.EXIT_OUTPUT, ["metrics.csv"])


# ---- 2. outputs that cannot be written --------------------------------------------------------

def run_limited_after_start(data, out, limit, *extra):
    """Trains with SIGXFSZ ignored and, once the first step is done (PoCL and CLBlast have written
    their cache files by then), RLIMIT_FSIZE set to limit bytes on the running process."""
    applied = []

    def on_line(p, line):
        if "first training step done" in line and not applied:
            resource.prlimit(p.pid, resource.RLIMIT_FSIZE, (limit, limit))
            applied.append(True)

    r = spawn(["train", "--data", data, "--out", out, "--batch", "32"] + list(extra),
              preexec_fn=ignore_sigxfsz, on_line=on_line)
    r.limit_applied = bool(applied)
    return r


def test_outputs(small, long_data, good_ckpt):
    # RLIMIT_FSIZE from exec on: only the 2-byte write test of the output directory gets past a
    # 1-byte limit. (Larger limits set from exec on trip PoCL first: it writes source and binary
    # files into its kernel cache at every build, so the build fails, exit 5, or LLVM aborts,
    # exit 1 -- hence the limits set on the running process below.)
    out = cli.fresh_out()
    r = spawn(train_args(small, out, "--epochs", "1", "--batch", "32"),
              preexec_fn=file_size_limit(1))
    expect("RLIMIT_FSIZE 1 byte: exit 4 naming --out before training, no metrics.csv", r,
           cli.EXIT_OUTPUT, [out], out=out)
    check("RLIMIT_FSIZE 1 byte: the reason given is the real one (File too large)",
          "File too large" in r.err or "short write" in r.err, r.describe())

    # The header and the first epoch's line take 159 bytes, each PNG a few KB: at 120 bytes the
    # first metrics.csv write is the one that fails, part of it written -- if the limit comes
    # before the first epoch ends. So that it does however fast the device, an epoch of 3000
    # steps of one image (94 of 32 ended in 20 ms, before this process had set the limit).
    out = cli.fresh_out()
    r = run_limited_after_start(long_data, out, 120, "--epochs", "3", "--batch", "1")
    metrics = os.path.join(out, "metrics.csv")
    expect("full disk while writing metrics.csv (RLIMIT_FSIZE 120 bytes): exit 4 naming it",
           r, cli.EXIT_OUTPUT, [metrics], stdout_empty=False)
    text = read(metrics).decode() if os.path.exists(metrics) else ""
    # README: "Images and metrics are written whole or not at all".
    check("metrics.csv after the failed write holds whole lines only", text.endswith("\n"),
          f"metrics.csv ends {text[-40:]!r}")

    out = cli.fresh_out()
    os.makedirs(out)
    os.symlink("/dev/full", os.path.join(out, "metrics.csv"))
    r = spawn(train_args(long_data, out, "--epochs", "1", "--batch", "32"))
    # A device is no metrics.csv (train reads it back for curves.png): refused before training,
    # as a FIFO is (test_metrics_fifo). The full disk itself is the RLIMIT_FSIZE case above.
    expect("metrics.csv a symlink to a device (/dev/full): exit 4 naming it, before training", r,
           cli.EXIT_OUTPUT, [os.path.join(out, "metrics.csv"), "not a regular file"])
    check("metrics.csv a device: nothing but it in OUT",
          sorted(os.listdir(out)) == ["metrics.csv"], f"{os.listdir(out)}")

    out = cli.fresh_out()
    r = run_limited_after_start(long_data, out, 1000, "--epochs", "3", "--batch", "1")
    # Whichever grid the limit meets first: it is set once training runs, and on a fast device
    # the first epoch's samples (under 1000 bytes on 8x8 images) may already be written. (Steps
    # of one image, as above: the limit lands before the last epoch's grids however fast.)
    png = re.search(re.escape(out) + r"/(samples|reconstructions)_epoch\d{3}\.png", r.err)
    expect("full disk while writing a PNG (RLIMIT_FSIZE 1000 bytes): exit 4 naming it", r,
           cli.EXIT_OUTPUT, [png.group(0) if png else out + "/samples_epochNNN.png"],
           stdout_empty=False)
    check("failed PNG write: no partial PNG and no temporary file left",
          png and not os.path.exists(png.group(0)) and not cli.stray_temporaries(out),
          f"{cli.files_under(out)}")

    ckpt_dir = os.path.join(cli.TMP, "fsize-ckpt")
    os.makedirs(ckpt_dir)
    ckpt = os.path.join(ckpt_dir, "model.safetensors")
    shutil.copy(good_ckpt, ckpt)
    out = cli.fresh_out()
    r = run_limited_after_start(long_data, out, 10000, "--epochs", "3", "--batch", "1", "--save",
                                ckpt)
    expect("full disk while saving the checkpoint (RLIMIT_FSIZE 10000 bytes): exit 4 naming it",
           r, cli.EXIT_OUTPUT, [ckpt], stdout_empty=False)
    check("failed checkpoint write: the previous checkpoint is byte for byte the same",
          read(ckpt) == read(good_ckpt), "it changed")
    check("failed checkpoint write: no temporary file left",
          sorted(os.listdir(ckpt_dir)) == ["model.safetensors"] and not cli.stray_temporaries(out),
          f"{os.listdir(ckpt_dir)}, OUT {cli.files_under(out)}")
    note(f"limits set after the first step: {r.limit_applied}; the checkpoint run took "
         f"{r.seconds:.2f} s")

    # A directory nothing can be written in: chmod does not stop root, so as root an existing
    # directory of /proc, where nothing can be created.
    if os.geteuid() == 0:
        read_only, how = "/proc/self", "root: /proc/self, an existing directory of /proc"
    else:
        read_only, how = os.path.join(cli.TMP, "read-only"), "chmod 0555"
        os.makedirs(read_only)
        os.chmod(read_only, stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP
                 | stat.S_IROTH | stat.S_IXOTH)
    r = spawn(train_args(small, read_only, "--epochs", "1", "--batch", "32"))
    expect(f"--out read-only ({how}): exit 4 naming it, before training", r, cli.EXIT_OUTPUT,
           [read_only])
    if os.geteuid() != 0:
        check("--out read-only: nothing written", not cli.files_under(read_only),
              f"{cli.files_under(read_only)}")

    # --save where no file can be created: the README checks output directories before training.
    blocker = os.path.join(cli.TMP, "a-regular-file")
    write(blocker, b"not a directory\n")
    ckpt = os.path.join(blocker, "model.safetensors")
    out = cli.fresh_out()
    r = spawn(train_args(small, out, "--epochs", "2", "--batch", "32", "--save", ckpt))
    expect("--save under a regular file: exit 4 naming it", r, cli.EXIT_OUTPUT, [ckpt])
    check("--save under a regular file: refused before training (no metrics.csv, no PNGs)",
          not cli.files_under(out), f"OUT holds {cli.files_under(out)} after {r.seconds:.2f} s")


# ---- 3. SIGKILL during checkpoint writes ------------------------------------------------------

def loads(ckpt, png):
    r = spawn(["generate", "--model", ckpt, "-n", "1", "-o", png])
    return r.rc == 0 and os.path.exists(png), r


def test_sigkill(small):
    rnd = random.Random(20240611)
    base, best = "model.safetensors", "model.best.safetensors"
    n_random, n_targeted = 24, 8
    seen = {"absent": 0, "loaded": 0, "finished": 0, "temp left": 0, "mid-write": 0,
            "png temp left": 0, "temp kept": 0}
    bad, strays, resumes = [], [], []
    # Dozens of saves a second: 3 steps an epoch on 300 images, each epoch saved.
    args = ["train", "--data", small, "--batch", "100", "--epochs", "100000", "--quiet"]
    for trial in range(n_random + n_targeted):
        tdir = os.path.join(cli.TMP, "kill", str(trial))
        os.makedirs(tdir)
        ckpt = os.path.join(tdir, base)
        p = subprocess.Popen([cli.CLVAE] + args + ["--out", os.path.join(tdir, "out"),
                                                  "--save", ckpt],
                             cwd=cli.TMP, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if trial < n_random:
            # Spread over the start (no checkpoint yet) and the first couple of dozen saves.
            time.sleep(rnd.uniform(0.0, 1.2))
        else:
            # Aimed at a write: half of them once a checkpoint exists, so that one is replaced.
            deadline = time.monotonic() + 20
            while trial % 2 and not os.path.exists(ckpt) and time.monotonic() < deadline:
                time.sleep(0.001)
            while time.monotonic() < deadline and p.poll() is None:
                if any(n.startswith(base + ".tmp") for n in os.listdir(tdir)):
                    break
            time.sleep(rnd.uniform(0.0, 0.002))
        p.kill()
        p.wait()
        if p.returncode != -signal.SIGKILL:
            seen["finished"] += 1
        names = sorted(os.listdir(tdir))
        # The two checkpoints are written one after the other: one write at most is cut short.
        temps = [n for n in names if n.startswith(base + ".tmp") or n.startswith(best + ".tmp")]
        others = [n for n in names if n not in temps and n not in (base, best, "out")]
        png_temps = cli.stray_temporaries(os.path.join(tdir, "out"))
        seen["temp left"] += bool(temps)
        seen["png temp left"] += bool(png_temps)
        if len(temps) > 1 or others:
            strays.append(f"trial {trial}: {names}")
        if not os.path.exists(ckpt):
            seen["absent"] += 1
        else:
            ok, r = loads(ckpt, os.path.join(tdir, "x.png"))
            seen["loaded"] += ok
            if not ok:
                bad.append(f"trial {trial}: {r.describe()}")
        if os.path.exists(os.path.join(tdir, best)):
            ok, r = loads(os.path.join(tdir, best), os.path.join(tdir, "b.png"))
            if not ok:
                bad.append(f"trial {trial}, the best epoch's: {r.describe()}")
        if trial >= n_random and temps:
            seen["mid-write"] += 1
        # After a leftover temporary file, and after the last trial, the next save has to work.
        if temps or trial == n_random + n_targeted - 1:
            if os.path.exists(ckpt):
                _, header = st_header(read(ckpt))
                epochs = int(header["__metadata__"]["epoch"]) + 1
                more = ["--resume", ckpt, "--epochs", str(epochs)]
            else:
                more = ["--batch", "100", "--epochs", "1"]
            r = spawn(["train", "--data", small, "--out", os.path.join(tdir, "out2"), "--quiet",
                       "--save", ckpt] + more)
            ok, _ = loads(ckpt, os.path.join(tdir, "y.png"))
            resumes.append((trial, r.rc == 0 and ok, r))
            seen["temp kept"] += bool(temps) and all(os.path.exists(os.path.join(tdir, n))
                                                     for n in temps)
    total = n_random + n_targeted
    check(f"SIGKILL at {total} moments (seed 20240611): the checkpoint and the best epoch's are "
          "absent or load every time", not bad, "; ".join(bad))
    check("SIGKILL: nothing left beside the two checkpoints but at most one temporary file",
          not strays, "; ".join(strays))
    failed_saves = [f"trial {t}: {r.describe()}" for t, ok, r in resumes if not ok]
    check(f"SIGKILL: the next save works ({len(resumes)} tried, after every leftover temporary "
          "file)", resumes and not failed_saves, "; ".join(failed_saves))
    note(f"SIGKILL trials: {seen['absent']} before the first save, {seen['loaded']} loaded, "
         f"{seen['finished']} ended before the kill; a model.safetensors.tmp* was left by "
         f"{seen['temp left']} ({seen['mid-write']} of the {n_targeted} aimed at a write), a PNG "
         f"temporary by {seen['png temp left']}; {seen['temp kept']} of the leftover "
         "model.safetensors.tmp* were still there after the next save")


# ---- 4. truncated checkpoints -----------------------------------------------------------------

def test_truncated(small):
    ckpt = os.path.join(cli.TMP, "small.safetensors")
    r = spawn(train_args(small, cli.fresh_out(), "--batch", "100", "--epochs", "1", "--hidden",
                         "4", "--latent", "2", "--save", ckpt))
    if not check("a small checkpoint to cut (--hidden 4 --latent 2)", r.rc == 0, r.describe()):
        return
    blob = read(ckpt)
    size = len(blob)
    offsets = sorted(set(range(0, 17)) | set(range(0, size, 7)) | set(range(size - 16, size)))
    tdir = os.path.join(cli.TMP, "trunc")
    os.makedirs(tdir)

    def attempt(n):
        path = os.path.join(tdir, f"cut{n}.safetensors")
        write(path, blob[:n])
        r = cli.run(["generate", "--model", path, "-o", os.path.join(tdir, f"x{n}.png")])
        problems = error_problems(r, cli.EXIT_DATA, [path])
        os.remove(path)
        return n, r, problems

    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        results = list(pool.map(attempt, offsets))
    seconds = time.monotonic() - t0
    crashes = [f"{n} bytes: {r.describe()}" for n, r, _ in results
               if not isinstance(r.rc, int) or r.rc < 0]
    wrong = [f"{n} bytes: {'; '.join(p)} -- {r.describe()}" for n, r, p in results if p]
    check(f"checkpoint of {size} bytes cut at {len(offsets)} lengths: generate never crashes",
          not crashes, "; ".join(crashes[:5]))
    check("every cut checkpoint: exit 3 with one line naming the file", not wrong,
          f"{len(wrong)} wrong, e.g. " + "; ".join(wrong[:5]))
    check("no PNG written from a cut checkpoint",
          not [n for n in os.listdir(tdir) if n.endswith(".png")], f"{os.listdir(tdir)}")
    whole = cli.run(["generate", "--model", ckpt, "-o", os.path.join(tdir, "whole.png")])
    check("the whole checkpoint loads (exit 0)", whole.rc == 0, whole.describe())
    reasons = {re.sub(r"\d+", "N", r.err.split(": ", 2)[-1]) for _, r, _ in results}
    note(f"truncation: {len(offsets)} runs in {seconds:.1f} s, {len(reasons)} distinct messages")


# ---- 5. NaN and infinite losses ---------------------------------------------------------------

def test_nan(small, good_ckpt):
    poisoned = os.path.join(cli.TMP, "nan-weight.safetensors")
    set_float(good_ckpt, poisoned, "output.bias", float("nan"))
    before = read(poisoned)
    step = int(st_header(before)[1]["__metadata__"]["step"]) + 1
    out = cli.fresh_out()
    r = spawn(train_args(small, out, "--epochs", "3", "--resume", poisoned, "--save", poisoned))
    expect(f"a NaN weight (output.bias): exit 6 naming the step ({step})", r, EXIT_DIVERGED,
           [f"at step {step} "])
    check("a NaN weight: the checkpoint is byte for byte the one resumed", read(poisoned) == before,
          "it was overwritten")
    check("a NaN weight: no temporary file left",
          not [n for n in os.listdir(cli.TMP) if n.startswith("nan-weight.safetensors.tmp")],
          f"{os.listdir(cli.TMP)}")

    # With one step an epoch the NaN that Adam's moment puts into the weights shows in the loss
    # only at the next epoch's step: the checkpoint of the epoch in between must not replace the
    # good one (the test loss it evaluates is already NaN).
    whole_batch = os.path.join(cli.TMP, "one-step-epochs.safetensors")
    r = spawn(train_args(small, cli.fresh_out(), "--batch", str(cli.N_TRAIN), "--epochs", "1",
                         "--save", whole_batch))
    if not check(f"a checkpoint of one-step epochs (--batch {cli.N_TRAIN})", r.rc == 0,
                 r.describe()):
        return
    poisoned = os.path.join(cli.TMP, "nan-moment.safetensors")
    set_float(whole_batch, poisoned, "optimizer.m.output.bias", float("nan"))
    before = read(poisoned)
    out = cli.fresh_out()
    r = spawn(train_args(small, out, "--epochs", "3", "--resume", poisoned, "--save", poisoned))
    expect("a NaN in Adam's moment, one step an epoch: exit 6 naming the step", r, EXIT_DIVERGED,
           ["at step "])
    after = read(poisoned)
    check("a NaN in Adam's moment: the last good checkpoint is kept (not one with NaN weights)",
          after == before, f"overwritten: it now holds {non_finite(poisoned)} non-finite values "
          f"(the one resumed held 1); metrics.csv: "
          f"{read(os.path.join(out, 'metrics.csv')).decode().splitlines()[1:]!r}")

    ckpt = os.path.join(cli.TMP, "diverged.safetensors")
    out = cli.fresh_out()
    r = spawn(train_args(small, out, "--epochs", "3", "--batch", "32", "--lr", "10", "--save",
                         ckpt))
    expect("--lr 10 --batch 32 --save: exit 6 naming the step", r, EXIT_DIVERGED,
           ["at step ", "epoch 1"])
    check("--lr 10 --save, diverged in epoch 1: no checkpoint and no temporary file",
          not [n for n in os.listdir(cli.TMP) if n.startswith("diverged.safetensors")],
          f"{os.listdir(cli.TMP)}")


# ---- 6. data files that lie about their size --------------------------------------------------

def gzip_of_zeros(header, total):
    """A valid gzip file of header followed by zeros, total bytes uncompressed (a multiple of
    1 MiB): one compressed MiB of zeros repeated after full flushes, about 1 KB per MiB."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    first_mib = header + bytes(MIB - len(header))
    first = c.compress(first_mib) + c.flush(zlib.Z_FULL_FLUSH)
    again = c.compress(bytes(MIB)) + c.flush(zlib.Z_FULL_FLUSH)
    n = total // MIB
    crc, zeros = zlib.crc32(first_mib), bytes(MIB)
    for _ in range(n - 1):
        crc = zlib.crc32(zeros, crc)
    return (b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + first + again * (n - 1) + c.flush()
            + struct.pack("<II", crc, (n * MIB) & 0xFFFFFFFF))


def test_data_limits():
    header = struct.pack(">IIII", 0x803, 4294967295, 28, 28)
    # 2,000,000 images of 28x28 (1.57 GB, under the 4 GiB limit and a device's 2 GiB allocation),
    # 1 MiB of them present, and a gzip trailer whose length field agrees with the header's claim.
    claim = struct.pack(">IIII", 0x803, 2000000, 28, 28)
    lying = bytearray(gzip.compress(claim + random.Random(7).randbytes(MIB), mtime=0))
    lying[-4:] = struct.pack("<I", (16 + 2000000 * 784) & 0xFFFFFFFF)
    # 16 images of 65536x4096: exactly 4 GiB, whose length mod 2^32 is the 16 bytes really there.
    wraps = gzip.compress(struct.pack(">IIII", 0x803, 16, 65536, 4096), mtime=0)
    raw, gz = "train-images-idx3-ubyte", "train-images-idx3-ubyte.gz"
    cases = [
        ("raw IDX header claiming 4294967295 images of 28x28", header, raw, ["4294967295"]),
        ("gzip IDX header claiming 4294967295 images of 28x28", gzip.compress(header, mtime=0),
         gz, ["4294967295"]),
        ("1 MiB gzip whose trailer's length agrees with a header claiming 1.57 GB",
         bytes(lying), gz, []),
        ("gzip of a 16-byte header claiming 4 GiB (its length field wraps to 16)", wraps, gz, []),
    ]
    for i, (label, blob, name, mentions) in enumerate(cases):
        d = cli.data_dir(f"limits{i}", train=blob, test=cli.TEST_IMAGES, train_name=name)
        out = cli.fresh_out()
        r = spawn(["train", "--data", d, "--out", out])
        expect(f"{label}: exit 3 naming the file", r, cli.EXIT_DATA,
               [os.path.join(d, name)] + mentions, out=out)
        check(f"{label}: refused within 2 s and 200 MB", r.seconds < 2 and r.rss_mb < 200,
              f"{r.seconds:.2f} s, {r.rss_mb:.0f} MB RSS")
        note(f"{label}: {r.seconds:.2f} s, {r.rss_mb:.0f} MB RSS")

    t0 = time.monotonic()
    bomb = gzip_of_zeros(struct.pack(">IIII", 0x803, 60000, 28, 28), 1100 * MIB)
    built = time.monotonic() - t0
    d = cli.data_dir("bomb", train=bomb, test=cli.TEST_IMAGES, train_name=gz)
    out = cli.fresh_out()
    r = spawn(["train", "--data", d, "--out", out])
    label = f"gzip bomb ({len(bomb) // 1024} KB inflating to 1100 MiB, header 60000x28x28)"
    expect(f"{label}: exit 3, trailing data", r, cli.EXIT_DATA, [os.path.join(d, gz), "trailing"],
           out=out)
    # 450 MB: the inflated bomb is 1100 MiB; the process itself takes about 170 MB on PoCL alone
    # and 320 MB under AddressSanitizer with Mesa's OpenCL drivers (and their LLVM) loaded too.
    check(f"{label}: refused within 20 s and 450 MB", r.seconds < 20 and r.rss_mb < 450,
          f"{r.seconds:.2f} s, {r.rss_mb:.0f} MB RSS")
    note(f"gzip bomb: built in {built:.1f} s; refused in {r.seconds:.2f} s, {r.rss_mb:.0f} MB RSS")


def main():
    if not os.access(cli.CLVAE, os.X_OK):
        print(f"faults: FAIL {cli.CLVAE} is not an executable (set CLVAE)")
        print("0 passed, 1 failed")
        return 1
    cli.TMP = tempfile.mkdtemp(prefix="clvae-faults-")
    try:
        t0 = time.monotonic()
        small = cli.data_dir("small", train=cli.TRAIN_GZ, test=cli.TEST_IMAGES)
        # 94 steps an epoch: time to set a file size limit between the first step and the writes.
        long_data = cli.data_dir("long", train=cli.idx3(3000, cli.ROWS, cli.COLS, seed=3),
                                 test=cli.TEST_IMAGES, train_name="train-images-idx3-ubyte")
        # Both also fill PoCL's kernel cache for the launch sizes of the runs under a file size
        # limit: a kernel PoCL has to compile then fails to be cached and PoCL aborts.
        good = os.path.join(cli.TMP, "good.safetensors")
        r = spawn(train_args(small, cli.fresh_out(), "--batch", "32", "--epochs", "1", "--save",
                             good))
        r2 = spawn(train_args(long_data, cli.fresh_out(), "--batch", "32", "--epochs", "1"))
        if not check("a good checkpoint to start from (train --epochs 1 --save)",
                     r.rc == 0 and os.path.exists(good) and r2.rc == 0,
                     r.describe() + " " + r2.describe()):
            raise SystemExit
        for test in (lambda: test_environment(small),
                     lambda: test_metrics_fifo(small),
                     lambda: test_allocations(small),
                     lambda: test_outputs(small, long_data, good),
                     lambda: test_sigkill(small),
                     lambda: test_truncated(small),
                     lambda: test_nan(small, good),
                     test_data_limits):
            t = time.monotonic()
            test()
            note(f"({time.monotonic() - t:.1f} s)")
        stray = [p for p in cli.stray_temporaries(cli.TMP)
                 if not p.startswith("kill" + os.sep)]
        check("no stray .tmp files outside the SIGKILL trials", not stray, f"{stray}")
        print(f"faults: all checks took {time.monotonic() - t0:.1f} s")
    except SystemExit:
        pass
    finally:
        shutil.rmtree(cli.TMP, ignore_errors=True)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
