#!/usr/bin/env python3
"""`clvae train --conditional` (a class-conditional VAE) on small synthetic labelled data: the
checkpoint keeps the class names and PyTorch's shapes (mean.weight (latent, hidden + classes),
decoder.0.weight (hidden, latent + classes)), and `clvae encode`'s means are the numpy encoder's
with each image's one-hot class concatenated after its features; 2 epochs straight and 1 then
--resume write the same checkpoint byte for byte; every subcommand runs on the model (generate
with --class and by default the classes in turn, reconstruct, interpolate, manifold --class,
eval, encode, scatter); and the refusals are one line with the documented status: data without
labels, a folder without class folders, --class unknown, out of range or on an unconditional
model, manifold without --class, --resume changing --conditional, a decoder not starting dense.

Run as `CLVAE=path/to/clvae /usr/bin/python3 tests/test_conditional.py`.
"""
import json
import os
import struct
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_cli as cli  # noqa: E402  (the synthetic data, run, check, expect_error)
from test_checkpoint_numpy import load_safetensors  # noqa: E402
from test_folder import png  # noqa: E402

HIDDEN, LATENT, CLASSES = 16, 3, 4
NAMES = ["zero", "one", "two", "three"]


def idx1(labels):
    return struct.pack(">II", 0x00000801, len(labels)) + bytes(labels)


def labelled_data(name, classes_txt=True):
    """Synthetic IDX images with label files (class i % CLASSES) and, optionally, classes.txt."""
    data = cli.data_dir(name, cli.TRAIN_IMAGES, cli.TEST_IMAGES,
                        train_name="train-images-idx3-ubyte")
    for fname, n in (("train-labels-idx1-ubyte", cli.N_TRAIN), ("t10k-labels-idx1-ubyte",
                                                                 cli.N_TEST)):
        with open(os.path.join(data, fname), "wb") as f:
            f.write(idx1([i % CLASSES for i in range(n)]))
    if classes_txt:
        with open(os.path.join(data, "classes.txt"), "w") as f:
            f.write("\n".join(NAMES) + "\n")
    return data


def train(data, save, *extra):
    return cli.run(["train", "--data", data, "--batch", "32", "--hidden", str(HIDDEN), "--latent",
                    str(LATENT), "--out", cli.fresh_out(), "--quiet", "--save", save]
                   + list(extra))


def encoder_reference(model, data):
    """mu (images, latent) of the test images by the checkpoint's encoder in float64, the one-hot
    class concatenated after the hidden features as torch.cat([h, one_hot], 1) would."""
    w, _ = load_safetensors(model)
    blob = open(os.path.join(data, "t10k-images-idx3-ubyte"), "rb").read()
    n, rows, cols = struct.unpack(">III", blob[4:16])
    x = np.frombuffer(blob[16:], np.uint8).reshape(n, rows * cols).astype(np.float64) / 255.0
    f64 = {k: v.astype(np.float64) for k, v in w.items()}
    h = np.maximum(x @ f64["encoder.0.weight"].T + f64["encoder.0.bias"], 0)
    one_hot = np.eye(CLASSES)[[i % CLASSES for i in range(n)]]
    return np.concatenate([h, one_hot], 1) @ f64["mean.weight"].T + f64["mean.bias"]


def test_model(data):
    """Training, the checkpoint, encode against numpy, resume; returns the 2-epoch model."""
    whole = os.path.join(cli.TMP, "cond.safetensors")
    part = os.path.join(cli.TMP, "cond-part.safetensors")
    runs = [train(data, whole, "--epochs", "2", "--conditional"),
            train(data, part, "--epochs", "1", "--conditional")]
    runs.append(cli.run(["train", "--data", data, "--epochs", "2", "--resume", part, "--save",
                         part, "--out", cli.fresh_out(), "--quiet"]))
    cli.check("train --conditional: 2 epochs, and 1 then --resume to 2: exit 0",
              all(r.rc == cli.EXIT_OK for r in runs), "; ".join(r.describe() for r in runs))
    same = (os.path.exists(whole) and os.path.exists(part)
            and open(whole, "rb").read() == open(part, "rb").read())
    cli.check("--conditional: the resumed checkpoint equals the uninterrupted one byte for byte",
              same, "the files differ")
    try:
        w, meta = load_safetensors(whole)
    except (OSError, ValueError) as e:
        cli.check("the conditional checkpoint loads", False, str(e))
        return whole
    shapes = {k: w[k].shape for k in ("mean.weight", "logvar.weight", "decoder.0.weight",
                                      "encoder.0.weight", "output.weight")}
    cli.check("the checkpoint: PyTorch's shapes with the one-hot inputs "
              "(mean/logvar (latent, hidden + classes), decoder.0 (hidden, latent + classes))",
              shapes == {"mean.weight": (LATENT, HIDDEN + CLASSES),
                         "logvar.weight": (LATENT, HIDDEN + CLASSES),
                         "decoder.0.weight": (HIDDEN, LATENT + CLASSES),
                         "encoder.0.weight": (HIDDEN, 64), "output.weight": (64, HIDDEN)},
              f"{shapes}")
    cli.check("the metadata: conditional 1 and the class names",
              meta.get("conditional") == "1" and meta.get("classes") == '["' + '","'.join(NAMES)
              + '"]', f"{meta}")

    npy = os.path.join(cli.TMP, "z.npy")
    r = cli.run(["encode", "--model", whole, "--data", data, "-o", npy])
    got = np.load(npy) if r.rc == cli.EXIT_OK and os.path.exists(npy) else None
    want = encoder_reference(whole, data)
    err = np.abs(got[:, :LATENT] - want).max() if got is not None else None
    cli.check(f"encode: the means are the numpy encoder's with the one-hot class "
              f"(max abs err {err}, tol 1e-4)", err is not None and err <= 1e-4, r.describe())
    # The class matters: the same images with another class give other means.
    w_mean = w["mean.weight"].astype(np.float64)
    shift = np.abs(w_mean[:, HIDDEN:] - w_mean[:, HIDDEN:HIDDEN + 1]).max()
    cli.check("the class rows of mean.weight differ between classes (the class was learnt)",
              shift > 1e-3, f"largest difference {shift}")
    return whole


def test_commands(model, data, plain):
    out = lambda name: os.path.join(cli.TMP, name)  # noqa: E731
    base = ["--model", model, "--data", data]
    for label, args, files in (
            ("generate (the classes in turn, a row each)", ["generate", "--model", model, "-o",
                                                            out("g.png")], ["g.png"]),
            ("generate --class two --raw", ["generate", "--model", model, "--class", "two", "-n",
                                            "5", "--raw", out("g.raw")], ["g.raw"]),
            ("generate --class 3", ["generate", "--model", model, "--class", "3", "-o",
                                    out("g3.png")], ["g3.png"]),
            ("reconstruct", ["reconstruct"] + base + ["-o", out("r.png")], ["r.png"]),
            ("interpolate", ["interpolate"] + base + ["--from", "0", "--to", "1", "-o",
                                                      out("i.png")], ["i.png"]),
            ("interpolate --class one", ["interpolate"] + base + ["--from", "0", "--to", "1",
                                                                  "--class", "one", "-o",
                                                                  out("i1.png")], ["i1.png"]),
            ("manifold --class one", ["manifold", "--model", model, "--class", "one", "-o",
                                      out("m.png")], ["m.png"]),
            ("eval", ["eval"] + base + ["-k", "5"], []),
            ("encode --elbo", ["encode"] + base + ["--elbo", "-k", "3", "-o", out("e.csv")],
             ["e.csv"]),
            ("scatter", ["scatter"] + base + ["-o", out("s.png")], ["s.png"])):
        r = cli.run(args)
        cli.check(f"{label} on a conditional model: exit 0, writes {files}",
                  r.rc == cli.EXIT_OK and all(os.path.exists(out(f)) for f in files),
                  r.describe())
    raw = out("g.raw")
    cli.check("generate --class two --raw: 5 images of 8x8 float32",
              os.path.exists(raw) and os.path.getsize(raw) == 5 * 64 * 4, "size")
    r = cli.run(["eval"] + base + ["-k", "5"])
    cli.check("eval says its bound is of log p(x | y)", "log p(x | y)" in r.out, r.describe())
    # The default grid: a row of 8 for each of the 4 classes.
    size = cli.png_size(out("g.png")) if os.path.exists(out("g.png")) else None
    cli.check("generate's default grid: 4 rows of 8 (one row a class)",
              size == (8 * 8 + 9 * 2, 4 * 8 + 5 * 2), f"{size}")

    nolabels = cli.data_dir("nolabels", cli.TRAIN_IMAGES, cli.TEST_IMAGES,
                            train_name="train-images-idx3-ubyte")
    o = cli.fresh_out()
    cli.expect_error("train --conditional on IDX files without labels: one line naming the folder",
                     ["train", "--data", nolabels, "--conditional", "--out", o, "--quiet"],
                     cli.EXIT_DATA, [nolabels, "train-labels-idx1-ubyte", "--conditional"], out=o,
                     out_may_exist=False)
    folder = os.path.join(cli.TMP, "data", "flat")
    os.makedirs(folder)
    for i in range(20):  # grey 8x8 PNGs straight in the folder: unlabelled
        with open(os.path.join(folder, f"{i}.png"), "wb") as f:
            f.write(png(8, 8, [[(i * 13 + y * 8 + x) % 256 for x in range(8)]
                               for y in range(8)], color=0))
    o = cli.fresh_out()
    cli.expect_error("train --conditional on a folder without class folders: one line naming it",
                     ["train", "--data", folder, "--conditional", "--out", o, "--quiet",
                      "--no-cache"], cli.EXIT_DATA, [folder, "class folders"], out=o,
                     out_may_exist=False)
    cli.expect_error("eval of a conditional model on images without labels",
                     ["eval", "--model", model, "--data", nolabels], cli.EXIT_DATA,
                     [nolabels, "labels"])
    cli.expect_error("generate --class unknown: names it and the classes",
                     ["generate", "--model", model, "--class", "seven", "-o", out("x.png")],
                     cli.EXIT_USAGE, ["--class seven", "0 'zero'", "3 'three'"])
    cli.expect_error("generate --class 4 (out of range): names it and the classes",
                     ["generate", "--model", model, "--class", "4", "-o", out("x.png")],
                     cli.EXIT_USAGE, ["--class 4", "4 classes"])
    cli.expect_error("generate --class on an unconditional model",
                     ["generate", "--model", plain, "--class", "1", "-o", out("x.png")],
                     cli.EXIT_USAGE, ["--class 1", "not conditional"])
    cli.expect_error("manifold of a conditional model without --class",
                     ["manifold", "--model", model, "-o", out("x.png")], cli.EXIT_USAGE,
                     ["--class"])
    cli.check("nothing written by the refused commands", not os.path.exists(out("x.png")),
              "x.png exists")
    o = cli.fresh_out()
    cli.expect_error("--resume with --conditional of an unconditional checkpoint",
                     ["train", "--data", data, "--epochs", "3", "--resume", plain,
                      "--conditional", "--out", o, "--quiet"], cli.EXIT_USAGE,
                     ["--conditional", plain], out=o)
    o = cli.fresh_out()
    cli.expect_error("--conditional with a decoder that does not start dense",
                     ["train", "--data", data, "--conditional", "--encoder",
                      "conv:4:3:1:1,dense:8", "--decoder", "reshape:1x8x8,conv:4:3:1:1",
                      "--out", o, "--quiet"], cli.EXIT_USAGE, ["--conditional", "dense"], out=o)


def with_metadata(src, dst, change):
    """src's checkpoint with its __metadata__ changed by change(dict) into dst."""
    blob = open(src, "rb").read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    change(header["__metadata__"])
    text = json.dumps(header).encode()
    with open(dst, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + blob[8 + n:])


def test_metadata(model):
    """A checkpoint whose conditional key is not 0 or 1, or that lists no classes, is refused."""
    bad = os.path.join(cli.TMP, "bad.safetensors")
    for label, change, want in (
            ("conditional '2'", lambda m: m.update(conditional="2"), "conditional '2'"),
            ("conditional 1 without classes", lambda m: m.pop("classes"), "no classes")):
        with_metadata(model, bad, change)
        cli.expect_error(f"a checkpoint with {label}: refused naming it",
                         ["generate", "--model", bad, "-o", os.path.join(cli.TMP, "x.png")],
                         cli.EXIT_DATA, [bad, want])


def body():
    data = labelled_data("cond")
    model = test_model(data)
    plain = os.path.join(cli.TMP, "plain.safetensors")
    r = train(data, plain, "--epochs", "1")
    cli.check("an unconditional model of the same data: exit 0", r.rc == cli.EXIT_OK,
              r.describe())
    w, meta = load_safetensors(plain)
    cli.check("the unconditional checkpoint has no conditional key and mean.weight (latent, "
              "hidden)", "conditional" not in meta and w["mean.weight"].shape == (LATENT, HIDDEN),
              f"{meta}")
    test_commands(model, data, plain)
    test_metadata(model)


if __name__ == "__main__":
    sys.exit(cli.run_suite("conditional", body))
