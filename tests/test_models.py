#!/usr/bin/env python3
"""Trained models that last: checkpoints written by `clvae train --save`, resumed runs that equal
uninterrupted ones bit for bit, Ctrl-C during training, the image subcommands (generate,
reconstruct, interpolate, manifold) with their bad inputs, and a numpy forward pass of the decoder
read from the checkpoint against `clvae generate --raw`.

Run as `CLVAE=path/to/clvae python3 tests/test_models.py` (the helpers are test_cli.py's).
"""
import os
import re
import signal
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_cli as cli  # noqa: E402  (the shared helpers: run, check, expect_error, idx3, ...)

EXIT_INTERRUPTED = 130
FASHION = "/usr/share/datasets/fashion-mnist"


def read(path):
    with open(path, "rb") as f:
        return f.read()


# A conv model for the 8x8 test images: conv 4x4/2 to 4x4x4, conv 4x4/2 to 2x2x8, dense 16; the
# decoder its mirror through deconvs.
CONV = ["--encoder", "conv:4,conv:8,dense:16"]


def train(data, out, *extra):
    return cli.run(["train", "--data", data, "--out", out, "--batch", "32", "--quiet"] + list(extra))


def test_resume_equals_uninterrupted(data, arch=(), name="whole"):
    """2 epochs in one go, and 1 epoch then a resume to 2: the same checkpoint, byte for byte."""
    whole = os.path.join(cli.TMP, name + ".safetensors")
    part = os.path.join(cli.TMP, name + "-part.safetensors")
    print(f"models: resume, architecture {' '.join(arch) or 'the default'}")
    r = train(data, cli.fresh_out(), "--epochs", "2", "--save", whole, *arch)
    cli.check("train --save: exit 0 and a checkpoint", r.rc == 0 and os.path.exists(whole), r.describe())
    out = cli.fresh_out()
    r1 = train(data, out, "--epochs", "1", "--save", part, *arch)
    r2 = train(data, out, "--epochs", "2", "--resume", part, "--save", part)
    cli.check("train --resume: exit 0", r1.rc == 0 and r2.rc == 0, r1.describe() + r2.describe())
    cli.check("resumed checkpoint equals the uninterrupted one byte for byte",
              os.path.exists(part) and read(part) == read(whole), "the files differ")
    with open(os.path.join(out, "metrics.csv")) as f:
        rows = f.read().splitlines()
    cli.check("a resumed run appends to metrics.csv (header, epochs 1 and 2)",
              len(rows) == 3 and rows[1].startswith("1,") and rows[2].startswith("2,"), f"{rows}")
    cli.expect_error("--resume with another --latent", ["train", "--data", data, "--out",
                     cli.fresh_out(), "--epochs", "3", "--resume", part, "--latent", "4"],
                     cli.EXIT_USAGE, ["--latent", part])
    cli.expect_error("--resume with another --lr", ["train", "--data", data, "--out",
                     cli.fresh_out(), "--epochs", "3", "--resume", part, "--lr", "0.5"],
                     cli.EXIT_USAGE, ["--lr", part])
    cli.expect_error("--resume with --epochs already reached", ["train", "--data", data, "--out",
                     cli.fresh_out(), "--epochs", "2", "--resume", part], cli.EXIT_USAGE, ["--epochs"])
    cli.expect_error("--resume of a missing file", ["train", "--data", data, "--out",
                     cli.fresh_out(), "--resume", os.path.join(cli.TMP, "nope.safetensors")],
                     cli.EXIT_DATA, ["nope.safetensors"])
    junk = os.path.join(cli.TMP, "junk.safetensors")
    with open(junk, "wb") as f:
        f.write(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}      ")
    cli.expect_error("--resume of a corrupt file", ["train", "--data", data, "--out",
                     cli.fresh_out(), "--resume", junk], cli.EXIT_DATA, [junk])
    other = os.path.join(cli.TMP, "data", "other-size")
    if not os.path.isdir(other):
        other = cli.data_dir("other-size", train=cli.idx3(300, 6, 6, seed=5),
                             test=cli.idx3(100, 6, 6, seed=6))
    cli.expect_error("--resume on data of another image size", ["train", "--data", other, "--out",
                     cli.fresh_out(), "--epochs", "3", "--resume", part], cli.EXIT_DATA, ["6x6", "8x8"])
    return whole


def test_interrupt():
    """Ctrl-C mid-epoch on Fashion-MNIST: the step finishes, the checkpoint is written, exit 130;
    resuming it reaches the uninterrupted run's checkpoint byte for byte. A second Ctrl-C ends
    the process at once."""
    if not os.path.isdir(FASHION):
        cli.check("Fashion-MNIST for the interrupt test", False, "install dataset-fashion-mnist")
        return
    ckpt = os.path.join(cli.TMP, "interrupted.safetensors")
    # Many epochs: however fast the device, the signal lands while it trains (a GPU finishes an
    # epoch of the default model in a fraction of a second).
    args = [cli.CLVAE, "train", "--epochs", "1000", "--out", cli.fresh_out(), "--save", ckpt]
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    while line and "first training step done" not in line:
        line = p.stdout.readline()
    time.sleep(0.5)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    where = re.search(r"interrupted (in|after) epoch (\d+)", err)
    cli.check("SIGINT during training: exit 130, says where the checkpoint is",
              p.returncode == EXIT_INTERRUPTED and ckpt in err and where is not None
              and err.count("\n") == 1, f"exit {p.returncode}, stderr {err!r}")
    # Resumed to the end of the epoch after the one interrupted, against a whole run as long.
    epochs = str(int(where.group(2)) + 1) if where else "2"
    resumed_out = cli.fresh_out()
    r = cli.run(["train", "--epochs", epochs, "--out", resumed_out, "--resume", ckpt, "--save",
                 ckpt, "--quiet"])
    whole = os.path.join(cli.TMP, "whole-fashion.safetensors")
    r2 = cli.run(["train", "--epochs", epochs, "--out", cli.fresh_out(), "--save", whole,
                  "--quiet"])
    cli.check("interrupted and resumed equals uninterrupted, byte for byte",
              r.rc == 0 and r2.rc == 0 and read(ckpt) == read(whole), r.describe() + r2.describe())

    p = subprocess.Popen(args[:-2], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    while line and "first training step done" not in line:
        line = p.stdout.readline()
    p.send_signal(signal.SIGINT)
    p.send_signal(signal.SIGINT)
    t0 = time.monotonic()
    p.communicate(timeout=120)
    cli.check("a second SIGINT ends the process at once",
              p.returncode in (-signal.SIGINT, EXIT_INTERRUPTED) and time.monotonic() - t0 < 10,
              f"exit {p.returncode}")


def test_subcommands(model, data):
    """generate, reconstruct, interpolate, manifold: pictures of the right size, and their errors."""
    tile = cli.ROWS
    side = lambda n_cols, pad=2: n_cols * tile + (n_cols + 1) * pad  # noqa: E731
    g = os.path.join(cli.TMP, "g.png")
    r = cli.run(["generate", "--model", model, "-n", "12", "--cols", "4", "-o", g])
    cli.check("generate: a 4 x 3 grid", r.rc == 0 and cli.png_size(g) == (side(4), 3 * tile + 4 * 2),
              r.describe())
    each = os.path.join(cli.TMP, "each")
    r = cli.run(["generate", "--model", model, "-n", "5", "--each", each])
    cli.check("generate --each: one PNG per image", r.rc == 0 and sorted(os.listdir(each)) ==
              [f"image_{i:05d}.png" for i in range(5)], r.describe())
    rec = os.path.join(cli.TMP, "rec.png")
    r = cli.run(["reconstruct", "--model", model, "--data", data, "-n", "8", "-o", rec])
    cli.check("reconstruct: 8 pairs, 8 tiles a row", r.rc == 0 and cli.png_size(rec) ==
              (side(8), 2 * tile + 3 * 2), r.describe())
    walk = os.path.join(cli.TMP, "walk.png")
    r = cli.run(["interpolate", "--model", model, "--data", data, "--from", "3", "--to", "7",
                 "--steps", "6", "-o", walk])
    cli.check("interpolate: one row of 8 tiles", r.rc == 0 and cli.png_size(walk) ==
              (side(8), tile + 4), r.describe())
    man = os.path.join(cli.TMP, "man.png")
    r = cli.run(["manifold", "--model", model, "-n", "5", "-o", man])
    cli.check("manifold (latent 10): 10 rows of 5", r.rc == 0 and cli.png_size(man) ==
              (side(5), 10 * tile + 11 * 2), r.describe())
    m2 = os.path.join(cli.TMP, "m2.safetensors")
    r = train(data, cli.fresh_out(), "--epochs", "1", "--latent", "2", "--save", m2)
    r = cli.run(["manifold", "--model", m2, "-n", "6", "-o", man])
    cli.check("manifold (latent 2): a 6 x 6 grid, no padding", r.rc == 0 and cli.png_size(man) ==
              (6 * tile, 6 * tile), r.describe())

    csv1, csv2 = os.path.join(cli.TMP, "e1.csv"), os.path.join(cli.TMP, "e2.csv")
    r = cli.run(["eval", "--model", model, "--data", data, "-k", "20", "--csv", csv1])
    r2 = cli.run(["eval", "--model", model, "--data", data, "-k", "20", "--csv", csv2])
    rows = open(csv1).read().splitlines() if os.path.exists(csv1) else []
    ok = (r.rc == 0 and len(rows) == 2 and rows[0].startswith("images,k,neg_elbo,neg_iwae")
          and rows[1].startswith("100,20,"))
    cli.check("eval -k 20 --csv: both bounds printed and written", ok and "IWAE" in r.out,
              r.describe() + f" csv {rows}")
    cli.check("eval: the same seed gives the same CSV", ok and read(csv1) == read(csv2),
              r2.describe())
    cli.expect_error("eval -k 0", ["eval", "--model", model, "-k", "0"], cli.EXIT_USAGE, ["-k"])
    cli.expect_error("eval on data of another image size", ["eval", "--model", model, "--data",
                     os.path.join(cli.TMP, "data", "other-size")], cli.EXIT_DATA, [model])
    cli.expect_error("eval --csv into a missing directory", ["eval", "--model", model, "--data",
                     data, "--csv", os.path.join(cli.TMP, "no", "such", "e.csv")],
                     cli.EXIT_OUTPUT, ["no/such"])

    missing = os.path.join(cli.TMP, "missing.safetensors")
    for sub in ("generate", "reconstruct", "interpolate", "manifold", "eval"):
        out = [] if sub == "eval" else ["-o", g]
        ends = ["--from", "0", "--to", "1"] if sub == "interpolate" else []
        cli.expect_error(f"{sub} without --model", [sub] + out, cli.EXIT_USAGE, ["--model"])
        cli.expect_error(f"{sub} with a missing model", [sub, "--model", missing] + out + ends,
                         cli.EXIT_DATA, [missing])
        cli.expect_error(f"{sub} with an unknown option", [sub, "--model", model, "--bogus"],
                         cli.EXIT_USAGE, ["--bogus"])
    cli.expect_error("generate without -o", ["generate", "--model", model], cli.EXIT_USAGE, ["-o"])
    cli.expect_error("generate -n 0", ["generate", "--model", model, "-n", "0", "-o", g],
                     cli.EXIT_USAGE, ["-n"])
    cli.expect_error("generate --temperature x", ["generate", "--model", model, "--temperature",
                     "x", "-o", g], cli.EXIT_USAGE, ["--temperature"])
    cli.expect_error("interpolate without --to", ["interpolate", "--model", model, "--from", "1",
                     "-o", g], cli.EXIT_USAGE, ["--to"])
    cli.expect_error("interpolate past the test set", ["interpolate", "--model", model, "--data",
                     data, "--from", "1", "--to", "100000", "-o", g], cli.EXIT_USAGE, ["100000"])
    other = os.path.join(cli.TMP, "data", "other-size")
    cli.expect_error("reconstruct on data of another image size", ["reconstruct", "--model", model,
                     "--data", other, "-o", g], cli.EXIT_DATA, ["6x6", "8x8"])
    cli.expect_error("generate into a missing directory", ["generate", "--model", model, "-o",
                     os.path.join(cli.TMP, "no", "such", "g.png")], cli.EXIT_OUTPUT, ["no/such"])


def test_image_counts(model, data):
    """-n of eval, reconstruct and scatter: one rule (past the test set is an error naming -n and
    the set's size, before any output), a default takes what there is, and one image has no
    standard error (n/a, not nan)."""
    csv1 = os.path.join(cli.TMP, "one.csv")
    r = cli.run(["eval", "--model", model, "--data", data, "-n", "1", "-k", "5", "--csv", csv1])
    rows = open(csv1).read().splitlines() if os.path.exists(csv1) else []
    fields = rows[1].split(",") if len(rows) == 2 else []
    cli.check("eval -n 1: std err n/a for both bounds, no nan",
              r.rc == 0 and r.out.count("std err n/a") == 2 and "nan" not in r.out.lower(),
              r.describe())
    cli.check("eval -n 1 --csv: the standard errors are empty fields",
              len(fields) == 11 and fields[:2] == ["1", "5"] and fields[4:6] == ["", ""] and
              "nan" not in rows[1], f"{rows}")
    r = cli.run(["eval", "--model", model, "--data", data, "-n", "2", "-k", "5"])
    cli.check("eval -n 2: standard errors are numbers",
              r.rc == 0 and "std err n/a" not in r.out and
              len(re.findall(r"std err \d+\.\d{4} ", r.out)) == 2, r.describe())
    past = str(cli.N_TEST + 1)
    csv2 = os.path.join(cli.TMP, "past.csv")
    png = os.path.join(cli.TMP, "past.png")
    for sub, out in (("eval", ["--csv", csv2]), ("reconstruct", ["-o", png]),
                     ("scatter", ["-o", png])):
        cli.expect_error(f"{sub} -n past the test set: exit 2 naming -n and the set's size",
                         [sub, "--model", model, "--data", data, "-n", past] + out,
                         cli.EXIT_USAGE, [f"-n {past}", f"holds only {cli.N_TEST} test images"])
        cli.check(f"{sub} -n past the test set: no output", not os.path.exists(csv2) and
                  not os.path.exists(png), "an output file was written")

    small = cli.data_dir("five-test-images", train=cli.TRAIN_GZ,
                         test=cli.idx3(5, cli.ROWS, cli.COLS, seed=3))
    rec = os.path.join(cli.TMP, "rec5.png")
    r = cli.run(["reconstruct", "--model", model, "--data", small, "-o", rec])
    side = 8 * cli.ROWS + 9 * 2
    cli.check("reconstruct without -n on 5 test images: the 5 (the default 32 is at most 32)",
              r.rc == 0 and cli.png_size(rec) == (side, 2 * cli.ROWS + 3 * 2), r.describe())
    cli.expect_error("reconstruct -n 6 on 5 test images", ["reconstruct", "--model", model,
                     "--data", small, "-n", "6", "-o", rec], cli.EXIT_USAGE,
                     ["-n 6", "holds only 5 test images"])


def test_numpy_decoder(model):
    """The checkpoint read with numpy, the decoder run in numpy on clvae's own prior draws
    (Philox, ported below), against `clvae generate --raw`."""
    raw = os.path.join(cli.TMP, "g.raw")
    r = cli.run(["generate", "--model", model, "-n", "6", "--seed", "9", "--temperature", "0.7",
                 "--raw", raw])
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "decode_numpy.py")
    pythons = [sys.executable, "/usr/bin/python3"]
    py = next((p for p in pythons if subprocess.run([p, "-c", "import numpy"],
                                                    capture_output=True).returncode == 0), None)
    if py is None:
        cli.check("numpy decoder", False, "no Python with numpy (Debian: python3-numpy)")
        return
    p = subprocess.run([py, script, model, raw, "6", "9", "0.7"], capture_output=True, text=True)
    cli.check("numpy's decoder on the checkpoint matches clvae generate --raw",
              r.rc == 0 and p.returncode == 0, r.describe() + p.stdout + p.stderr)
    print(p.stdout.strip())


def main():
    def body():
        data = cli.data_dir("good", train=cli.TRAIN_GZ, test=cli.TEST_IMAGES)
        model = test_resume_equals_uninterrupted(data)
        test_subcommands(model, data)
        test_image_counts(model, data)
        test_numpy_decoder(model)
        conv = test_resume_equals_uninterrupted(data, CONV, "conv")
        test_subcommands(conv, data)
        test_numpy_decoder(conv)
        test_interrupt()
    return cli.run_suite("models", body)


if __name__ == "__main__":
    sys.exit(main())
