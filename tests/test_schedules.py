#!/usr/bin/env python3
"""The training schedules and the gradient's treatment of `clvae train` on small synthetic IDX
data: --kl-warmup, --kl-cycles, --lr-schedule, --lr-warmup (metrics.csv's beta and lr per epoch
against their formulas, include/train/schedule.h), --free-bits, --clip-grad and --binarize; with
each on, 4
epochs straight and 2 epochs then --resume to 4 write the same checkpoint byte for byte; a resume
refuses another value; the metadata records each option, and a run without them writes none.

Run as `CLVAE=path/to/clvae python3 tests/test_schedules.py`; CLVAE defaults to build-cli/clvae.
"""
import filecmp
import math
import re
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_cli as cli  # noqa: E402  (the synthetic data, run, check)
from test_train import safetensors  # noqa: E402

EPOCHS, BATCH = 4, 32
STEPS = (cli.N_TRAIN + BATCH - 1) // BATCH  # steps an epoch: 10
LR, BETA = 1e-3, 1.0


def beta_of(epoch, warmup=0, cycles=0, epochs=EPOCHS):
    """schedule_beta: the KL weight of epoch (1-based)."""
    e = epoch - 1
    if cycles:
        period = epochs / cycles
        return BETA * min(1.0, 2.0 * math.fmod(e, period) / period)
    if warmup:
        return BETA * min(1.0, epoch / warmup)
    return BETA


def lr_of(step, kind="constant", warmup=0, epochs=EPOCHS):
    """schedule_lr: the learning rate of step (0-based)."""
    if step < warmup:
        return LR * (step + 1) / warmup
    t, total = step - warmup, epochs * STEPS - warmup
    if kind == "cosine":
        return LR * 0.5 * (1 + math.cos(math.pi * min(1.0, t / total)))
    if kind == "step":
        epoch = step // STEPS
        return LR * (0.01 if 4 * epoch >= 3 * epochs else 0.1 if 2 * epoch >= epochs else 1)
    return LR


# label, options, beta(epoch), lr(step), the metadata they write
CASES = [
    ("--kl-warmup 2", ["--kl-warmup", "2"], lambda e: beta_of(e, warmup=2), lr_of,
     {"kl_warmup": "2"}),
    ("--kl-cycles 2", ["--kl-cycles", "2"], lambda e: beta_of(e, cycles=2), lr_of,
     {"kl_cycles": "2", "schedule_epochs": "4"}),
    ("--lr-schedule cosine --lr-warmup 5", ["--lr-schedule", "cosine", "--lr-warmup", "5"],
     beta_of, lambda s: lr_of(s, "cosine", 5),
     {"lr_schedule": "cosine", "lr_warmup": "5", "schedule_epochs": "4"}),
    ("--lr-schedule step", ["--lr-schedule", "step"], beta_of, lambda s: lr_of(s, "step"),
     {"lr_schedule": "step", "schedule_epochs": "4"}),
    ("--clip-grad 1", ["--clip-grad", "1"], None, None, {"clip_grad": "1"}),
    ("--free-bits 0.5", ["--free-bits", "0.5"], None, None, {"free_bits": "0.5"}),
    ("--binarize dynamic", ["--binarize", "dynamic"], None, None, {"binarize": "dynamic"}),
]


def train(data, out, *extra):
    return cli.run(["train", "--data", data, "--batch", str(BATCH), "--hidden", "16", "--latent",
                    "3", "--out", out, "--quiet"] + list(extra))


def test_resume(data, label, options, meta_want, beta):
    """4 epochs straight, and 2 (spanning 4) then --resume to 4: the same checkpoint."""
    whole, part = os.path.join(cli.TMP, "whole.safetensors"), os.path.join(cli.TMP, "part.st")
    out = cli.fresh_out()
    runs = [train(data, cli.fresh_out(), "--epochs", str(EPOCHS), "--save", whole, *options),
            train(data, out, "--epochs", "2", "--schedule-epochs", str(EPOCHS), "--save", part,
                  *options)]
    runs.append(train(data, out, "--epochs", str(EPOCHS), "--resume", part, "--save", part))
    cli.check(f"{label}: 4 epochs, and 2 then --resume to 4: exit 0",
              all(r.rc == cli.EXIT_OK for r in runs), "; ".join(r.describe() for r in runs))
    cli.check(f"{label}: the resumed checkpoint equals the uninterrupted one byte for byte",
              os.path.exists(part) and os.path.exists(whole)
              and filecmp.cmp(whole, part, shallow=False), "the files differ")
    meta = safetensors(whole)[0]
    got = {k: meta.get(k) for k in meta_want}
    cli.check(f"{label}: the metadata records it {meta_want}", got == meta_want, f"{meta}")
    _, header, rows = cli.read_metrics(out)
    scheduled = beta is not None
    cli.check(f"{label}: the resumed run's metrics.csv carries on (4 rows, one header)",
              [r.get("epoch") for r in rows] == ["1", "2", "3", "4"]
              and (header[-2:] == ["beta", "lr"]) == scheduled, f"{header} {rows}")
    return part


def test_metrics(data, label, options, beta, lr):
    """metrics.csv: beta of each epoch, lr of its last step; the test -ELBO the true one."""
    out = cli.fresh_out()
    r = train(data, out, "--epochs", str(EPOCHS), *options)
    _, header, rows = cli.read_metrics(out) if r.rc == 0 else ("", [], [])
    cli.check(f"{label}: metrics.csv ends with the columns beta, lr", header[-2:] == ["beta", "lr"],
              f"{header}; {r.describe()}")
    worst_b = worst_lr = 0.0
    ok = len(rows) == EPOCHS
    for row in rows:
        e = int(row["epoch"])
        worst_b = max(worst_b, abs(float(row["beta"]) - beta(e)))
        worst_lr = max(worst_lr, abs(float(row["lr"]) - lr(e * STEPS - 1)) / LR)
        ok = ok and abs(float(row["test_neg_elbo"]) - float(row["test_rec"]) -
                        float(row["test_kl"])) < 2e-4
    cli.check(f"{label}: beta and lr per epoch as their formulas: max err {worst_b:.1e} (beta), "
              f"{worst_lr:.1e} (lr / --lr), tol 1e-12; test -ELBO = rec + KL",
              ok and worst_b <= 1e-12 and worst_lr <= 1e-12, f"{rows}")
    printed = [line for line in cli.run(["train", "--data", data, "--batch", str(BATCH), "--hidden",
                                         "16", "--latent", "3", "--out", cli.fresh_out(),
                                         "--epochs", "1", "--schedule-epochs", str(EPOCHS)]
                                        + options).out.splitlines()
               if line.startswith("epoch ")]
    cli.check(f"{label}: the epoch line shows beta and lr",
              len(printed) == 1 and " beta " in printed[0] and " lr " in printed[0], f"{printed}")


def test_clip(data):
    """--clip-grad: a bound above every norm trains the parameters of no clipping bit for bit; a
    bound of 1 changes them."""
    runs, paths = [], {}
    for name, extra in (("plain", []), ("huge", ["--clip-grad", "1e9"]),
                        ("one", ["--clip-grad", "1"])):
        paths[name] = os.path.join(cli.TMP, f"clip-{name}.safetensors")
        runs.append(train(data, cli.fresh_out(), "--epochs", "1", "--save", paths[name], *extra))
    cli.check("--clip-grad: 3 runs, exit 0", all(r.rc == 0 for r in runs),
              "; ".join(r.describe() for r in runs))
    plain, huge, one = (safetensors(paths[k])[1] for k in ("plain", "huge", "one"))
    cli.check("--clip-grad 1e9 (never reached): the parameters and moments of no clipping, bit "
              "for bit", plain and plain == huge, "they differ")
    cli.check("--clip-grad 1: other parameters than no clipping", one and one != plain, "the same")


def test_free_bits(data):
    """--free-bits: a floor above every dimension's KL leaves the KL term no gradient, which is
    --beta 0's training bit for bit; a floor of 0.5 nats trains other parameters than none; the
    test loss is the true one."""
    runs, paths, outs = [], {}, {}
    for name, extra in (("beta0", ["--beta", "0"]), ("floor", ["--free-bits", "1000"]),
                        ("half", ["--free-bits", "0.5"]), ("plain", [])):
        paths[name] = os.path.join(cli.TMP, f"fb-{name}.safetensors")
        outs[name] = cli.fresh_out()
        runs.append(train(data, outs[name], "--epochs", "1", "--save", paths[name], *extra))
    cli.check("--free-bits: 4 runs, exit 0", all(r.rc == 0 for r in runs),
              "; ".join(r.describe() for r in runs))
    got = {k: safetensors(p)[1] for k, p in paths.items()}
    cli.check("--free-bits 1000: the parameters and moments of --beta 0, bit for bit",
              got["beta0"] and got["beta0"] == got["floor"], "they differ")
    cli.check("--free-bits 0.5: other parameters than none", got["half"] != got["plain"], "same")
    rows = cli.read_metrics(outs["floor"])[2]
    cli.check("--free-bits: the test loss is the true negative ELBO (rec + KL)",
              rows and abs(float(rows[0]["test_neg_elbo"]) - float(rows[0]["test_rec"])
                           - float(rows[0]["test_kl"])) < 2e-4, f"{rows}")


def test_binarize(data):
    """--binarize: static and dynamic train other parameters than none and than each other;
    eval and encode read the mode from the checkpoint and binarize the test images alike."""
    paths = {}
    runs = []
    for name in ("static", "dynamic"):
        paths[name] = os.path.join(cli.TMP, f"bin-{name}.safetensors")
        runs.append(train(data, cli.fresh_out(), "--epochs", "2", "--save", paths[name],
                          "--binarize", name))
    cli.check("--binarize static, dynamic: exit 0", all(r.rc == 0 for r in runs),
              "; ".join(r.describe() for r in runs))
    cli.check("--binarize static and dynamic train different parameters",
              safetensors(paths["static"])[1] != safetensors(paths["dynamic"])[1], "the same")
    ev = cli.run(["eval", "--model", paths["dynamic"], "--data", data, "-k", "4"])
    npy = os.path.join(cli.TMP, "bin.csv")
    en = cli.run(["encode", "--model", paths["dynamic"], "--data", data, "-k", "4", "--elbo",
                  "-o", npy])

    m = re.search(r"negative ELBO +([\d.]+)", ev.out)
    rows = open(npy).read().splitlines()[1:] if en.rc == 0 else []
    mean = sum(float(r.split(",")[-2]) for r in rows) / max(1, len(rows))
    cli.check("--binarize: eval and encode --elbo agree on the binarized test images "
              f"({mean:.4f} vs {m.group(1) if m else None})",
              ev.rc == 0 and m and rows and abs(mean - float(m.group(1))) < 1.5e-4,
              f"{ev.describe()} {en.describe()}")


def test_refusals(data, part):
    for label, extra, want in (
            ("another --kl-warmup", ["--kl-warmup", "3"], "--kl-warmup 3"),
            ("another --lr-schedule", ["--lr-schedule", "cosine"], "--lr-schedule cosine"),
            ("another --schedule-epochs", ["--schedule-epochs", "9"], "--schedule-epochs 9")):
        r = train(data, cli.fresh_out(), "--epochs", "9", "--resume", part, *extra)
        cli.check(f"--resume of a scheduled checkpoint with {label}: exit 2, one line naming it",
                  r.rc == cli.EXIT_USAGE and r.err.count("\n") == 1 and want in r.err,
                  r.describe())
    for label, extra, want in (
            ("--kl-warmup with --kl-cycles", ["--kl-warmup", "2", "--kl-cycles", "2"],
             "--kl-cycles"),
            ("--kl-cycles above the epochs", ["--kl-cycles", "5"], "--kl-cycles 5"),
            ("--lr-schedule linear", ["--lr-schedule", "linear"], "--lr-schedule"),
            ("--clip-grad 0", ["--clip-grad", "0"], "--clip-grad"),
            ("--free-bits -1", ["--free-bits", "-1"], "--free-bits"),
            ("--binarize with --likelihood logistic",
             ["--binarize", "static", "--likelihood", "logistic"], "--binarize"),
            ("--binarize sometimes", ["--binarize", "sometimes"], "--binarize")):
        r = train(data, cli.fresh_out(), "--epochs", "4", *extra)
        cli.check(f"{label}: exit 2, one line naming it",
                  r.rc == cli.EXIT_USAGE and r.err.count("\n") == 1 and want in r.err,
                  r.describe())
    plain = os.path.join(cli.TMP, "plain.safetensors")
    out = cli.fresh_out()
    r = train(data, out, "--epochs", "1", "--save", plain)
    meta = safetensors(plain)[0]
    keys = ("kl_warmup", "kl_cycles", "lr_schedule", "lr_warmup", "schedule_epochs", "free_bits",
            "clip_grad", "binarize")
    cli.check("no schedule option: no schedule key in the metadata, no beta or lr column",
              r.rc == 0 and not [k for k in keys if k in meta]
              and cli.read_metrics(out)[1][-1] == "test_bits_per_dim", f"{meta}; {r.describe()}")


def body():
    data = cli.data_dir("schedules", cli.TRAIN_GZ, cli.TEST_IMAGES)
    part = None
    for label, options, beta, lr, meta in CASES:
        if beta is not None:
            test_metrics(data, label, options, beta, lr)
        p = test_resume(data, label, options, meta, beta)
        if "--kl-warmup" in options:
            part = os.path.join(cli.TMP, "warm.safetensors")
            os.replace(p, part)
    test_clip(data)
    test_free_bits(data)
    test_binarize(data)
    test_refusals(data, part)


if __name__ == "__main__":
    sys.exit(cli.run_suite("schedules", body))
