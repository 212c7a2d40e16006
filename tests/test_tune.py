#!/usr/bin/env python3
"""clvae tune and the per-device tuning file: `clvae devices --verbose` names the file and its
key; a good file is applied (the banner says so) and gives the same training as the built-in
parameters it repeats; a bad one (another device's key, a parameter missing or out of CLBlast's
constraints, a NUL byte, 8 KiB of text) is ignored with one warning line naming it, never a failed
run; `clvae tune` itself on a tiny model with one candidate; its bad options.

Run as `CLVAE=path/to/clvae python3 tests/test_tune.py`.
"""
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_cli as cli  # noqa: E402

# data/clblast-tuning.txt's PoCL entry: a file repeating it must train to the same numbers.
POCL = ("XgemmDirect WGD=32 MDIMCD=4 NDIMCD=8 MDIMAD=4 NDIMBD=8 KWID=2 VWMD=8 VWND=4 PADA=1 "
        "PADB=1")


def tuning_file(env):
    """(path, key) of the tuning file `clvae devices --verbose` names for the default device."""
    r = cli.run(["devices", "--verbose"], env=env)
    m = re.search(r'clvae tune\'s file: (\S+) \((present|none yet)\), key "(.*)"', r.out)
    return (m.group(1), m.group(3)) if m else (None, r.describe())


def train(env, data, out):
    return cli.run(["train", "--data", data, "--epochs", "1", "--batch", "32", "--hidden", "16",
                    "--latent", "4", "--out", out], env=env)


def test_file(data):
    env = {"XDG_CACHE_HOME": os.path.join(cli.TMP, "cache")}
    path, key = tuning_file(env)
    if not cli.check("devices --verbose: names the tuning file under $XDG_CACHE_HOME and its key",
                     path and path.startswith(env["XDG_CACHE_HOME"] + "/clvae/clblast-"),
                     f"{key}"):
        return
    out0 = cli.fresh_out()
    base = train(env, data, out0)
    cli.check("no tuning file: trains, says nothing of one", base.rc == 0 and not base.err
              and "clvae tune" not in base.out, base.describe())
    os.makedirs(os.path.dirname(path), exist_ok=True)
    good = f"# clvae tune: {key}\n# a comment\n{POCL}\nGemmRoutine XGEMM_MIN_INDIRECT_SIZE=1024\n"
    with open(path, "w") as f:
        f.write(good)
    out1 = cli.fresh_out()
    r = train(env, data, out1)
    _, _, rows0 = cli.read_metrics(out0) if base.rc == 0 else ("", [], [])
    _, _, rows1 = cli.read_metrics(out1) if r.rc == 0 else ("", [], [])
    cli.check("a good tuning file: applied (the banner names it), no warning, and with the "
              "built-in parameters the same numbers",
              r.rc == 0 and not r.err and f"from clvae tune: {path}" in r.out
              and cli.without_timing(rows0) == cli.without_timing(rows1), r.describe())
    v = cli.run(["devices", "--verbose"], env=env)
    cli.check("devices --verbose: the file is present", f"{path} (present)" in v.out, v.out)

    bad = {
        "another device's key": good.replace(key, "some other GPU | OpenCL 3.0 | driver 1"),
        "a parameter missing": good.replace(" KWID=2", ""),
        "a value out of CLBlast's constraints": good.replace("WGD=32", "WGD=24"),
        "an unknown kernel": good + "Xgemm MWG=64\n",
        "no GemmRoutine line": good.replace("GemmRoutine XGEMM_MIN_INDIRECT_SIZE=1024\n", ""),
        "a NUL byte": good.replace("# a comment", "# a \0 comment"),
        "more than 8 KiB": good + ("# padding\n" * 1000),
        "an empty file": "",
    }
    for label, text in bad.items():
        with open(path, "w") as f:
            f.write(text)
        out = cli.fresh_out()
        r = train(env, data, out)
        _, _, rows = cli.read_metrics(out) if r.rc == 0 else ("", [], [])
        warn = r.err.count("\n") == 1 and r.err.startswith(f"clvae: warning: {path}: ")
        cli.check(f"a tuning file with {label}: ignored with one warning naming it, the run "
                  "as without it", r.rc == 0 and warn
                  and cli.without_timing(rows) == cli.without_timing(rows0), r.describe())
    os.remove(path)
    test_not_regular(env, data, path, rows0)


def run_briefly(args, env, seconds):
    """clvae args with env, killed after seconds: a cli.Result whose rc is "timeout" if it hung."""
    try:
        p = subprocess.run([cli.CLVAE] + args, capture_output=True, text=True, cwd=cli.TMP,
                           env=dict(os.environ, **env), timeout=seconds)
        return cli.Result(args, p.returncode, p.stdout, p.stderr, 0)
    except subprocess.TimeoutExpired as e:
        return cli.Result(args, "timeout", str(e.stdout or ""), str(e.stderr or ""), seconds)


def test_not_regular(env, data, path, rows0):
    """A FIFO (or a directory) where the tuning file goes: every run once hung in fopen waiting
    for a writer. Now each starts, warns once naming it and runs as without it."""
    for label, make in (("a FIFO", os.mkfifo), ("a directory", os.mkdir)):
        make(path)
        out = cli.fresh_out()
        r = run_briefly(["train", "--data", data, "--epochs", "1", "--batch", "32", "--hidden",
                         "16", "--latent", "4", "--out", out], env, 240)
        _, _, rows = cli.read_metrics(out) if r.rc == 0 else ("", [], [])
        warn = r.err.count("\n") == 1 and r.err.startswith(f"clvae: warning: {path}: ")
        same = cli.without_timing(rows) == cli.without_timing(rows0)
        cli.check(f"the tuning file {label}: train starts, warns once naming it, runs as without "
                  "it", r.rc == 0 and warn and same, r.describe())
        v = run_briefly(["devices", "--verbose"], env, 60)
        cli.check(f"the tuning file {label}: devices --verbose says it is ignored, no hang",
                  v.rc == 0 and f"{path} (not a regular file: ignored)" in v.out, v.describe())
        (os.remove if label == "a FIFO" else os.rmdir)(path)


def test_tune_command():
    env = {"XDG_CACHE_HOME": os.path.join(cli.TMP, "cache2")}
    r = cli.run(["tune", "--hidden", "8", "--latent", "2", "--image", "1x6x6", "--batch", "16",
                 "--candidates", "1"], env=env)
    wrote = re.search(r"kept in (\S+)$", r.out, re.M)
    ok = r.rc == 0 and "as configured now:" in r.out and " 1/1 WGD=" in r.out and (
        wrote or "nothing written" in r.out)
    cli.check("clvae tune with one candidate: measures the configuration in use and the "
              "candidate, keeps the faster", ok, r.describe())
    if ok and wrote:
        t = train(env, cli.data_dir("tune2", cli.TRAIN_GZ, cli.TEST_IMAGES), cli.fresh_out())
        cli.check("the file clvae tune wrote is read back without a warning",
                  t.rc == 0 and not t.err and "from clvae tune" in t.out, t.describe())
    for label, args, mentions in [
            ("--image 2x8x8", ["--image", "2x8x8"], ["--image", "2x8x8"]),
            ("--image 8x8", ["--image", "8x8"], ["--image"]),
            ("--candidates 0", ["--candidates", "0"], ["--candidates"]),
            ("--candidates 65", ["--candidates", "65"], ["--candidates"]),
            ("--hidden x", ["--hidden", "x"], ["--hidden"])]:
        cli.expect_error(f"tune {label}", ["tune"] + args, cli.EXIT_USAGE, mentions, env=env)


def body():
    data = cli.data_dir("tune", cli.TRAIN_GZ, cli.TEST_IMAGES)
    test_file(data)
    test_tune_command()


if __name__ == "__main__":
    sys.exit(cli.run_suite("tune", body))
