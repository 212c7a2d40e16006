#!/usr/bin/env python3
"""Residual blocks (res:C[:G]) and upsampling (up:F) from the command line, on the small synthetic
IDX data of test_cli: a res model trains, resumes bit for bit, and every command of a trained
model runs on it; a decoder written with up trains; bad items and shapes are refused with one line;
the checkpoint's tensors carry PyTorch's names and shapes, and, where torch is importable, load by
name into ../shared/reference/torch_resvae.py's model (strict) whose encoder then gives clvae's
posterior means and log-variances.

Run as `CLVAE=path/to/clvae python3 tests/test_res.py`; CLVAE defaults to build-cli/clvae.
"""
import importlib.util
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_cli as cli  # noqa: E402
from test_cli import check, expect_error, run  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFERENCE = os.path.join(ROOT, "..", "shared", "reference", "torch_resvae.py")
ENCODER = "conv:8:3:1:1,res:8:4,conv:16,res:16,dense:16"
LATENT = "4"


def tensors(path):
    """A safetensors file's header (name -> dtype, shape, offsets), its metadata and data."""
    with open(path, "rb") as f:
        blob = f.read()
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8:8 + n])
    meta = header.pop("__metadata__", {})
    return header, meta, blob[8 + n:]


def train(data, out, *extra):
    return run(["train", "--data", data, "--out", out, "--quiet", "--latent", LATENT,
                "--encoder", ENCODER, "--batch", "32", "--seed", "3"] + list(extra))


def test_train_and_resume(data):
    """2 epochs straight against 1 and a resume to 2: the same checkpoint, byte for byte."""
    whole, part = os.path.join(cli.TMP, "whole.safetensors"), os.path.join(cli.TMP, "part.safetensors")
    runs = [train(data, cli.fresh_out(), "--epochs", "2", "--save", whole),
            train(data, cli.fresh_out(), "--epochs", "1", "--save", part)]
    runs.append(run(["train", "--data", data, "--out", cli.fresh_out(), "--quiet", "--epochs", "2",
                     "--resume", part, "--save", part]))
    check("res model: 2 epochs, and 1 epoch then --resume to 2: exit 0",
          all(r.rc == 0 for r in runs), "; ".join(r.describe() for r in runs if r.rc))
    same = os.path.exists(whole) and os.path.exists(part) and tensors(whole) == tensors(part)
    check("res model: the resumed checkpoint equals the uninterrupted one byte for byte", same,
          "the files differ")
    return whole


def test_names(ckpt):
    """PyTorch's state_dict names and shapes for the blocks (gn1, conv1, gn2, conv2)."""
    header, meta, _ = tensors(ckpt)
    want = {}
    for layer, c in (("encoder.1", 8), ("encoder.3", 16), ("decoder.2", 16), ("decoder.4", 8)):
        for gn in ("gn1", "gn2"):
            want[f"{layer}.{gn}.weight"] = (c,)
            want[f"{layer}.{gn}.bias"] = (c,)
        for conv in ("conv1", "conv2"):
            want[f"{layer}.{conv}.weight"] = (c, c, 3, 3)
            want[f"{layer}.{conv}.bias"] = (c,)
    got = {k: tuple(v["shape"]) for k, v in header.items() if k in want}
    check("res checkpoint: the blocks' tensors by PyTorch's names and shapes", got == want,
          f"missing or other: {sorted(set(want.items()) ^ set(got.items()), key=str)[:6]}")
    check("res checkpoint: the decoder mirrors res as res (metadata)",
          "res:16:8" in meta.get("decoder", "") and "res:8:4" in meta.get("decoder", ""),
          f"{meta.get('decoder')!r}")


def test_commands(data, ckpt):
    """Every command that reads a trained model runs on the res model."""
    outs = os.path.join(cli.TMP, "commands")
    os.makedirs(outs)
    png = lambda name: os.path.join(outs, name + ".png")  # noqa: E731
    commands = [
        ["generate", "--model", ckpt, "--out", png("generate")],
        ["reconstruct", "--model", ckpt, "--data", data, "--out", png("reconstruct")],
        ["interpolate", "--model", ckpt, "--data", data, "--from", "0", "--to", "1", "--out",
         png("interpolate")],
        ["manifold", "--model", ckpt, "--out", png("manifold")],
        ["eval", "--model", ckpt, "--data", data, "-k", "8"],
        ["encode", "--model", ckpt, "--data", data, "-o", os.path.join(outs, "z.csv"), "--elbo",
         "-k", "4"],
        ["scatter", "--model", ckpt, "--data", data, "--out", png("scatter")],
    ]
    for args in commands:
        r = run(args)
        check(f"res model: clvae {args[0]} exits 0", r.rc == 0, r.describe())


def test_up_decoder(data):
    """A decoder that upsamples: dense to 16x1x1, up:2, res, up:2, deconv 3x3/1 (to 4x4, the
    output deconv's 4x4/2 to the images' 8x8); numpy's decoder of it against clvae's."""
    out = cli.fresh_out()
    r = run(["train", "--data", data, "--out", out, "--quiet", "--epochs", "1", "--latent", "3",
             "--encoder", "conv:8,conv:16,dense:16",
             "--decoder", "dense:16,reshape:16x1x1,up:2,res:16:4,up:2,deconv:8:3:1:1",
             "--save", os.path.join(out, "up.safetensors")])
    rows = cli.read_metrics(out)[2] if r.rc == 0 else []
    check("--decoder with up:2 and res: trains (exit 0, a finite test loss)",
          r.rc == 0 and rows and rows[-1]["test_neg_elbo"] not in ("nan", "inf"), r.describe())
    numpy_decoder("up decoder", os.path.join(out, "up.safetensors"))


def numpy_decoder(label, model):
    """tests/decode_numpy.py (the checkpoint read and its decoder run in numpy, res and up
    included) on clvae's prior draws against `clvae generate --raw`."""
    raw = os.path.join(cli.TMP, "g.raw")
    r = run(["generate", "--model", model, "-n", "6", "--seed", "9", "--temperature", "0.7",
             "--raw", raw])
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "decode_numpy.py")
    p = subprocess.run([sys.executable, script, model, raw, "6", "9", "0.7"], capture_output=True,
                       text=True)
    check(f"{label}: numpy's decoder of the checkpoint matches clvae generate --raw",
          r.rc == 0 and p.returncode == 0, r.describe() + p.stdout + p.stderr)
    print(p.stdout.strip())


def test_refusals(data):
    """Bad items, and shapes the layout refuses, with one line naming the option."""
    cases = [
        ("res:6:4: groups that do not divide the channels", ["--encoder", "conv:6,res:6:4"],
         ["--encoder", "res:6:4", "the groups (4) must divide the channels (6)"]),
        ("res:6: the default 8 groups do not divide 6", ["--encoder", "conv:6,res:6"],
         ["--encoder", "res:6"]),
        ("res:0", ["--encoder", "conv:8,res:0"], ["--encoder", "res:0"]),
        ("res:8:2:1: too many numbers", ["--encoder", "conv:8,res:8:2:1"], ["res:C[:G]"]),
        ("up:0", ["--encoder", "conv:8,up:0"], ["--encoder", "up:0"]),
        ("res on other channels than its input's", ["--encoder", "conv:8,res:16"],
         ["encoder.1", "a residual block keeps its channels (res:8)"]),
        ("res after a dense layer", ["--encoder", "dense:8,res:8:1"],
         ["encoder.1", "takes an image"]),
        ("up in the encoder without --decoder", ["--encoder", "conv:8,up:2,conv:8,dense:8"],
         ["--encoder", "up:2", "give --decoder"]),
        ("up after a dense layer", ["--encoder", "dense:8", "--decoder", "dense:8,up:2"],
         ["decoder.1", "takes an image"]),
    ]
    for label, extra, mentions in cases:
        out = cli.fresh_out()
        expect_error(f"{label}: exit 2, one line", ["train", "--data", data, "--out", out,
                                                    "--epochs", "1"] + extra,
                     cli.EXIT_USAGE, mentions, out=out)


def load_reference():
    """torch_resvae.py as a module, or None (no torch, or no reference beside the tree)."""
    try:
        import numpy  # noqa: F401
        import torch  # noqa: F401
    except ImportError:
        return None
    if not os.path.exists(REFERENCE):
        return None
    spec = importlib.util.spec_from_file_location("torch_resvae", REFERENCE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def torch_name(name, res_layers):
    """clvae's tensor name -> torch_resvae's: mean/logvar are its mu/lv, and its other layers
    wrap their module as .op (a block's gn1, conv1, ... keep their names)."""
    parts = name.split(".")
    if parts[0] in ("mean", "logvar"):
        return {"mean": "mu", "logvar": "lv"}[parts[0]] + "." + parts[1]
    if parts[0] == "output":
        return "output.op." + parts[1]
    if ".".join(parts[:2]) in res_layers:
        return name
    return ".".join(parts[:2]) + ".op." + parts[2]


def test_torch(data, ckpt):
    """The checkpoint into torch_resvae's model by name (strict: every tensor, no other), and its
    encoder's mean and log-variance of the test images against clvae encode's (the encoder's dense
    layer on an image permuted from clvae's channel-last order to torch's)."""
    ref = load_reference()
    if ref is None:
        print("res: torch or the reference is not available: the PyTorch load is skipped")
        return
    import numpy as np
    import torch
    header, meta, blob = tensors(ckpt)
    res_layers = {k.rsplit(".", 2)[0] for k in header if ".gn1." in k}
    state = {}
    for name, t in header.items():
        if name.startswith("optimizer."):  # Adam's moments, one per parameter
            continue
        a, b = t["data_offsets"]
        v = np.frombuffer(blob[a:b], dtype="<f4").reshape(t["shape"])
        state[torch_name(name, res_layers)] = torch.from_numpy(v.copy())
    enc = ref.parse_layers("--encoder", meta["encoder"])
    image = (1, cli.ROWS, cli.COLS, True)
    # A dense layer on an image takes it channel-last in clvae, (c, h, w) after torch's flatten.
    for name, spec, (c, h, w, spatial), _ in ref.lay_out(enc, image, "encoder")[0]:
        key = name + ".op.weight"
        if spec["kind"] == "dense" and spatial:
            v = state[key]
            state[key] = v.reshape(-1, h, w, c).permute(0, 3, 1, 2).reshape(v.shape).contiguous()
    model = ref.VAE(image, enc, None, int(meta["latent"]), 1)
    try:
        model.load_state_dict(state, strict=True)
        loaded = True
    except RuntimeError as e:
        loaded = False
        why = " ".join(str(e).split())[:600]
    check("res checkpoint: loads by name into torch_resvae's model (strict)", loaded,
          why if not loaded else "")
    if not loaded:
        return
    z = os.path.join(cli.TMP, "z.npy")
    r = run(["encode", "--model", ckpt, "--data", data, "-o", z])
    if not check("res model: clvae encode exits 0", r.rc == 0, r.describe()):
        return
    got = np.load(z)
    images = np.frombuffer(cli.TEST_IMAGES, np.uint8, offset=16).reshape(-1, 1, cli.ROWS, cli.COLS)
    with torch.no_grad():
        mu, lv = model.encode(torch.from_numpy(images.astype(np.float32) / 255.0))
    want = torch.cat([mu, lv], 1).numpy()
    err = float(np.max(np.abs(got[:, :want.shape[1]] - want) / (1e-3 + np.abs(want))))
    check(f"res model: torch_resvae's encoder gives clvae's means and log-variances "
          f"(max rel err {err:.2g}, tol 1e-3)", err < 1e-3, f"max rel err {err}")


def body():
    data = cli.data_dir("res", train=cli.TRAIN_GZ, test=cli.TEST_IMAGES)
    ckpt = test_train_and_resume(data)
    if os.path.exists(ckpt):
        test_names(ckpt)
        test_commands(data, ckpt)
        numpy_decoder("res model", ckpt)
        test_torch(data, ckpt)
    test_up_decoder(data)
    test_refusals(data)


if __name__ == "__main__":
    sys.exit(cli.run_suite("res", body))
