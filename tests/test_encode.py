#!/usr/bin/env python3
"""`clvae encode` on small synthetic labelled IDX data: the .npy file loads with numpy.load
(no pickle) as float32 (images, columns); the .csv holds the same numbers under its header; the
posterior means and log-variances equal the checkpoint's encoder run in numpy (float64); the labels
are the label file's; --elbo's columns average to `clvae eval`'s figures with the same -k and
seed; --split train encodes the training images; bad options are refused and nothing is written.

Run as `CLVAE=path/to/clvae /usr/bin/python3 tests/test_encode.py`.
"""
import os
import re
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_cli as cli  # noqa: E402  (the synthetic data, run, check)
from test_checkpoint_numpy import load_safetensors  # noqa: E402

HIDDEN, LATENT = 16, 3


def idx1(labels):
    return struct.pack(">II", 0x00000801, len(labels)) + bytes(labels)


def reference(model, data_file):
    """The encoder of a one-hidden-layer dense model in float64: mu, logvar (images, latent)."""
    w, _ = load_safetensors(model)
    blob = open(data_file, "rb").read()
    n, rows, cols = struct.unpack(">III", blob[4:16])
    x = np.frombuffer(blob[16:], np.uint8).reshape(n, rows * cols).astype(np.float64) / 255.0
    f64 = {k: v.astype(np.float64) for k, v in w.items()}
    h = np.maximum(x @ f64["encoder.0.weight"].T + f64["encoder.0.bias"], 0)
    return (h @ f64["mean.weight"].T + f64["mean.bias"],
            h @ f64["logvar.weight"].T + f64["logvar.bias"])


def body():
    test_labels = [i % 7 for i in range(cli.N_TEST)]
    train_labels = [i % 5 for i in range(cli.N_TRAIN)]
    data = cli.data_dir("encode", cli.TRAIN_IMAGES, cli.TEST_IMAGES,
                        train_name="train-images-idx3-ubyte")
    for name, labels in (("t10k-labels-idx1-ubyte", test_labels),
                         ("train-labels-idx1-ubyte", train_labels)):
        with open(os.path.join(data, name), "wb") as f:
            f.write(idx1(labels))
    model = os.path.join(cli.TMP, "model.safetensors")
    r = cli.run(["train", "--data", data, "--epochs", "2", "--batch", "32", "--hidden",
                 str(HIDDEN), "--latent", str(LATENT), "--out", cli.fresh_out(), "--quiet",
                 "--save", model])
    cli.check("a model to encode with: exit 0", r.rc == cli.EXIT_OK, r.describe())

    npy, csv = os.path.join(cli.TMP, "z.npy"), os.path.join(cli.TMP, "z.csv")
    base = ["encode", "--model", model, "--data", data]
    r = cli.run(base + ["-o", npy, "--elbo", "-k", "5", "--seed", "3"])
    cli.check("encode --elbo -o z.npy: exit 0", r.rc == cli.EXIT_OK, r.describe())
    try:
        a = np.load(npy, allow_pickle=False)
    except (OSError, ValueError) as e:
        a = None
        why = str(e)
    cols = 2 * LATENT + 1 + 2
    cli.check(f"numpy.load reads z.npy as float32 ({cli.N_TEST}, {cols})",
              a is not None and a.dtype == np.float32 and a.shape == (cli.N_TEST, cols),
              why if a is None else f"{a.dtype} {a.shape}")
    if a is None:
        return
    with open(npy, "rb") as f:
        head = f.read(10)
    cli.check("z.npy: format version 1.0, header padded to 64 bytes",
              head[:8] == b"\x93NUMPY\x01\x00" and (10 + struct.unpack("<H", head[8:])[0]) % 64 == 0,
              f"{head!r}")

    mu, logvar = reference(model, os.path.join(data, "t10k-images-idx3-ubyte"))
    err = max(np.abs(a[:, :LATENT] - mu).max(), np.abs(a[:, LATENT:2 * LATENT] - logvar).max())
    cli.check(f"mu and logvar against numpy's float64 encoder: max abs err {err:.1e} (tol 1e-4)",
              err <= 1e-4, f"{err}")
    cli.check("the label column is the label file's",
              a[:, 2 * LATENT].astype(int).tolist() == test_labels, f"{a[:5, 2 * LATENT]}")

    ev = cli.run(["eval", "--model", model, "--data", data, "-k", "5", "--seed", "3"])
    m_elbo = re.search(r"negative ELBO +([\d.]+)", ev.out)
    m_iwae = re.search(r"negative IWAE +([\d.]+)", ev.out)
    got = (a[:, -2].astype(np.float64).mean(), a[:, -1].astype(np.float64).mean())
    ok = ev.rc == 0 and m_elbo and m_iwae
    d = (abs(got[0] - float(m_elbo.group(1))), abs(got[1] - float(m_iwae.group(1)))) if ok else ()
    cli.check(f"neg_elbo and neg_iwae average to clvae eval's figures (k 5, seed 3): "
              f"{got[0]:.4f}, {got[1]:.4f}; err {max(d) if d else 'n/a'} (tol 1e-4 + print)",
              ok and max(d) <= 1.5e-4, f"{ev.describe()}")
    cli.check("neg_iwae <= neg_elbo on average (the tighter bound)", got[1] <= got[0], f"{got}")

    r = cli.run(base + ["-o", csv])
    lines = open(csv).read().splitlines() if r.rc == 0 else []
    names = [f"mu_{i}" for i in range(LATENT)] + [f"logvar_{i}" for i in range(LATENT)] + ["label"]
    cli.check("encode -o z.csv: exit 0, a header of the column names",
              r.rc == 0 and lines and lines[0].split(",") == names, r.describe())
    c = np.array([[float(v) for v in line.split(",")] for line in lines[1:]], np.float32)
    cli.check("z.csv holds z.npy's numbers exactly (without --elbo's columns)",
              c.shape == (cli.N_TEST, len(names)) and (c == a[:, :len(names)]).all(), f"{c.shape}")

    r = cli.run(base + ["-o", npy, "--split", "train"])
    t = np.load(npy) if r.rc == 0 else np.zeros((0, 0))
    mu, _ = reference(model, os.path.join(data, "train-images-idx3-ubyte"))
    cli.check("--split train: the training images, with their labels",
              t.shape == (cli.N_TRAIN, 2 * LATENT + 1)
              and np.abs(t[:, :LATENT] - mu).max() <= 1e-4
              and t[:, -1].astype(int).tolist() == train_labels, f"{t.shape}; {r.describe()}")

    for label, extra, status, want in (
            ("-o z.txt", ["-o", os.path.join(cli.TMP, "z.txt")], cli.EXIT_USAGE, ".npy or .csv"),
            ("no -o", [], cli.EXIT_USAGE, "-o"),
            ("--split val", ["-o", npy, "--split", "val"], cli.EXIT_USAGE, "--split"),
            ("-o in a missing directory", ["-o", os.path.join(cli.TMP, "no", "z.npy")],
             cli.EXIT_OUTPUT, "z.npy")):
        r = cli.run(base + extra)
        cli.check(f"encode {label}: exit {status}, one line naming it",
                  r.rc == status and r.err.count("\n") == 1 and want in r.err, r.describe())
    cli.check("nothing written by the refused runs",
              not os.path.exists(os.path.join(cli.TMP, "z.txt")), "z.txt exists")


if __name__ == "__main__":
    sys.exit(cli.run_suite("encode", body))
