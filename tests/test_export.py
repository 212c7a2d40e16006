#!/usr/bin/env python3
"""`clvae export`: the decoder and the encoder of a dense and a conv model, under both likelihoods,
grey IDX images and RGB PNG images, of a decoder that upsamples (up:2) and of a model with
residual blocks (res:8:2, group normalisation) in both parts, written as ONNX files
that onnx.checker passes (Debian's python3-onnx, full check with shape inference) with the
declared opset, names, types and shapes;
run by onnxruntime (PyPI, in a venv made under the build directory, skipped with the reason printed
when pip cannot install it) against clvae itself to 1e-5: the decoder on the z that
`clvae generate` draws for a seed (ported from src/base/philox.c in decode_numpy.py) against
`clvae generate --raw`, the encoder on the test images against `clvae encode`. Bad options and
files, and a model export has no operators for (--conditional): one "clvae: " line, the
documented status, nothing written.

Run as `CLVAE=path/to/clvae ONNX_VENV=DIR /usr/bin/python3 tests/test_export.py`.
"""
import os
import struct
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_cli as cli  # noqa: E402  (run, check, expect_error, data_dir, fresh_out, TMP)
from decode_numpy import normal  # noqa: E402  (clvae's prior draws)
from test_folder import png  # noqa: E402  (a PNG file's bytes)

OPSET, TOL = 13, 1e-5
N_DRAWS, SEED, TEMPERATURE = 10, 7, 0.8
RGB_SIDE, RGB_TRAIN, RGB_TEST = 8, 48, 12
VENV = os.environ.get("ONNX_VENV") or os.path.join(cli.ROOT, "build-export", "onnx-venv")

# Run by the venv's python: MODEL INPUTS.npz OUTPUTS.npz, the outputs by their graph names.
ORT_RUN = r"""
import sys
import numpy as np
import onnxruntime as ort
s = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
outs = s.run(None, dict(np.load(sys.argv[2])))
np.savez(sys.argv[3], **{o.name: v for o, v in zip(s.get_outputs(), outs)})
"""


def runtime():
    """The venv's python with onnxruntime, installed on first use; None (the reason printed)
    when the venv cannot be made or pip cannot install onnxruntime (offline, no wheel)."""
    py = os.path.join(VENV, "bin", "python")
    probe = [py, "-c", "import onnxruntime, numpy"]
    if os.path.exists(py) and subprocess.run(probe, capture_output=True).returncode == 0:
        return py
    r = subprocess.run([sys.executable, "-m", "venv", VENV], capture_output=True, text=True)
    if r.returncode != 0:
        print(f"export: SKIP the onnxruntime checks: cannot make a venv at {VENV}: "
              f"{r.stderr.strip()[-300:]}")
        return None
    try:
        r = subprocess.run([py, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                            "onnxruntime"], capture_output=True, text=True, timeout=900)
        why = r.stderr.strip().splitlines()[-1:] if r.returncode else None
    except subprocess.TimeoutExpired:
        why = ["pip ran for 15 minutes"]
    if why is not None or subprocess.run(probe, capture_output=True).returncode != 0:
        print(f"export: SKIP the onnxruntime checks: pip cannot install onnxruntime into {VENV} "
              f"(offline?): {' '.join(why or ['it does not import'])}")
        return None
    return py


def ort_run(py, model, **inputs):
    """The graph's outputs on inputs, by name; None with the error printed on a failure."""
    npz_in, npz_out = os.path.join(cli.TMP, "in.npz"), os.path.join(cli.TMP, "out.npz")
    np.savez(npz_in, **inputs)
    r = subprocess.run([py, "-c", ORT_RUN, model, npz_in, npz_out], capture_output=True,
                       text=True)
    if r.returncode != 0:
        print(f"export: onnxruntime on {model}: {r.stderr.strip()[-2000:]}")
        return None
    return dict(np.load(npz_out))


def rgb_folder():
    """TMP/data/rgb: train/ and test/ of RGB PNGs (no alpha, so a pixel is its bytes), and the
    test images (n, H, W, 3) bytes in the order clvae reads them (sorted names)."""
    rng = np.random.default_rng(3)
    d = os.path.join(cli.TMP, "data", "rgb")
    test = []
    for split, count in (("train", RGB_TRAIN), ("test", RGB_TEST)):
        os.makedirs(os.path.join(d, split))
        for i in range(count):
            y, x = np.mgrid[0:RGB_SIDE, 0:RGB_SIDE]
            cy, cx = rng.integers(0, RGB_SIDE, 2)
            blob = np.clip(255 - 40 * ((y - cy) ** 2 + (x - cx) ** 2), 0, 255)
            img = np.stack([blob, blob * rng.random(), 255 - blob], -1).astype(np.uint8)
            rows = [list(img[r].reshape(-1)) for r in range(RGB_SIDE)]
            with open(os.path.join(d, split, f"img{i:03d}.png"), "wb") as f:
                f.write(png(RGB_SIDE, RGB_SIDE, rows, color=2))
            if split == "test":
                test.append(img)
    return d, np.stack(test)


def idx_test_images(blob):
    n, rows, cols = struct.unpack(">III", blob[4:16])
    return np.frombuffer(blob[16:], np.uint8).reshape(n, rows, cols, 1)


def dims(value_info):
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def check_graph(label, path, want_in, want_out):
    """onnx.checker's full check, the opset, and every input and output: float32 of its shape."""
    import onnx
    try:
        m = onnx.load(path)
        onnx.checker.check_model(m, full_check=True)
        why = ""
    except Exception as e:  # noqa: BLE001  (any failure of the checker is the test's finding)
        m, why = None, f"{type(e).__name__}: {e}"
    cli.check(f"{label}: onnx.checker passes it (full check)", m is not None, why)
    if m is None:
        return
    opsets = [(o.domain, o.version) for o in m.opset_import]
    ends = {v.name: (v.type.tensor_type.elem_type, dims(v))
            for v in list(m.graph.input) + list(m.graph.output)}
    want = {name: (onnx.TensorProto.FLOAT, shape) for name, shape in {**want_in, **want_out}.items()}
    cli.check(f"{label}: opset {OPSET}, inputs {list(want_in)} and outputs {list(want_out)} "
              f"float32 of their shapes", opsets == [("", OPSET)] and ends == want
              and [v.name for v in m.graph.input] == list(want_in)
              and [v.name for v in m.graph.output] == list(want_out), f"{opsets} {ends}")


def test_model(py, name, data, test_images, train_args):
    """Trains name for an epoch, exports both parts, checks them and runs them against clvae."""
    model = os.path.join(cli.TMP, f"{name}.safetensors")
    r = cli.run(["train", "--data", data, "--epochs", "1", "--batch", "16", "--out",
                 cli.fresh_out(), "--quiet", "--save", model] + train_args)
    if not cli.check(f"{name}: trains", r.rc == 0, r.describe()):
        return
    n, h, w, c = test_images.shape
    latent = int(train_args[train_args.index("--latent") + 1])
    onnx_files = {}
    for part in ("decoder", "encoder"):
        path = os.path.join(cli.TMP, f"{name}.{part}.onnx")
        r = cli.run(["export", "--model", model, "-o", path] + (["--part", part]
                                                               if part == "encoder" else []))
        cli.check(f"{name}: export {'--part encoder' if part == 'encoder' else '(the decoder)'}: "
                  "exit 0, one line naming the file", r.rc == 0 and r.out.count("\n") == 1
                  and path in r.out and not r.err, r.describe())
        onnx_files[part] = path
    check_graph(f"{name} decoder", onnx_files["decoder"], {"z": ["N", latent]},
                {"x_mean": ["N", h, w, c]})
    check_graph(f"{name} encoder", onnx_files["encoder"], {"x": ["N", c, h, w]},
                {"z_mean": ["N", latent], "z_logvar": ["N", latent]})
    if py is None:
        return

    raw = os.path.join(cli.TMP, f"{name}.raw")
    r = cli.run(["generate", "--model", model, "-n", str(N_DRAWS), "--seed", str(SEED),
                 "--temperature", str(TEMPERATURE), "--raw", raw])
    z = np.array([[TEMPERATURE * normal(SEED, i * latent + k, 0, 2) for k in range(latent)]
                  for i in range(N_DRAWS)], np.float32)
    got = ort_run(py, onnx_files["decoder"], z=z) if r.rc == 0 else None
    want = np.fromfile(raw, np.float32).reshape(N_DRAWS, h, w, c) if r.rc == 0 else None
    err = float(np.abs(got["x_mean"] - want).max()) if got is not None else float("inf")
    cli.check(f"{name}: onnxruntime's decoder on generate's z against clvae generate --raw: "
              f"max abs err {err:.1e} (tol {TOL:.0e})", err <= TOL, r.describe())

    npy = os.path.join(cli.TMP, f"{name}.npy")
    r = cli.run(["encode", "--model", model, "--data", data, "-o", npy])
    enc = np.load(npy) if r.rc == 0 else None
    x = (test_images.astype(np.float32) / np.float32(255)).transpose(0, 3, 1, 2).copy()
    got = ort_run(py, onnx_files["encoder"], x=x) if r.rc == 0 else None
    err = (max(float(np.abs(got["z_mean"] - enc[:, :latent]).max()),
               float(np.abs(got["z_logvar"] - enc[:, latent:2 * latent]).max()))
           if got is not None else float("inf"))
    cli.check(f"{name}: onnxruntime's encoder on the {n} test images (NCHW) against clvae "
              f"encode's means and log-variances: max abs err {err:.1e} (tol {TOL:.0e})",
              err <= TOL, r.describe())


def test_errors(model):
    out = os.path.join(cli.TMP, "refused.onnx")
    base = ["export", "--model", model]
    cli.expect_error("export without --model: exit 2", ["export", "-o", out], cli.EXIT_USAGE,
                     ["--model"])
    cli.expect_error("export without -o: exit 2", base, cli.EXIT_USAGE, ["-o"])
    cli.expect_error("export --part middle: exit 2", base + ["-o", out, "--part", "middle"],
                     cli.EXIT_USAGE, ["--part", "middle"])
    cli.expect_error("export --bogus: exit 2", base + ["-o", out, "--bogus"], cli.EXIT_USAGE,
                     ["--bogus"])
    missing = os.path.join(cli.TMP, "no-such.safetensors")
    cli.expect_error("export of a missing model: exit 3 naming it",
                     ["export", "--model", missing, "-o", out], cli.EXIT_DATA, [missing])
    junk = os.path.join(cli.TMP, "junk.safetensors")
    with open(junk, "wb") as f:
        f.write(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}      ")
    cli.expect_error("export of a malformed model: exit 3 naming it",
                     ["export", "--model", junk, "-o", out], cli.EXIT_DATA, [junk])
    nowhere = os.path.join(cli.TMP, "no-dir", "m.onnx")
    cli.expect_error("export -o in a missing directory: exit 4 naming it",
                     base + ["-o", nowhere], cli.EXIT_OUTPUT, [nowhere])
    cli.expect_error("export -o a directory: exit 4 naming it", base + ["-o", cli.TMP],
                     cli.EXIT_OUTPUT, [cli.TMP])
    cli.check("nothing written by the refused exports", not os.path.exists(out), out)
    old = os.path.join(cli.TMP, "old.onnx")
    with open(old, "wb") as f:
        f.write(b"old")
    cli.run(["export", "--model", junk, "-o", old])
    cli.check("a failed export leaves the file it would have replaced as it was",
              open(old, "rb").read() == b"old", "old.onnx changed")
    h = cli.run(["export", "--help"])
    cli.check("export --help: exit 0, the usage on stdout", h.rc == 0 and
              h.out.startswith("usage: clvae export") and "--part" in h.out and not h.err,
              h.describe())


def test_refused_model():
    """A model export has no operators for, one with class inputs (--conditional): exit 2, one
    line naming the model, --conditional and (the encoder's) layer, nothing written. Skipped, with
    the reason, in a build whose train does not take --conditional."""
    out = os.path.join(cli.TMP, "refused-model.onnx")
    labelled = os.path.join(cli.TMP, "data", "labelled")
    os.makedirs(labelled)
    for name, blob, n in (("train-images-idx3-ubyte.gz", cli.TRAIN_GZ, 0),
                          ("t10k-images-idx3-ubyte", cli.TEST_IMAGES, 0),
                          ("train-labels-idx1-ubyte", None, cli.N_TRAIN),
                          ("t10k-labels-idx1-ubyte", None, cli.N_TEST)):
        with open(os.path.join(labelled, name), "wb") as f:
            f.write(blob or struct.pack(">II", 0x00000801, n) + bytes(i % 3 for i in range(n)))
    model = os.path.join(cli.TMP, "conditional.safetensors")
    r = cli.run(["train", "--data", labelled, "--epochs", "1", "--batch", "16", "--latent", "2",
                 "--hidden", "8", "--conditional", "--out", cli.fresh_out(), "--quiet", "--save",
                 model])
    if r.rc != 0:
        print(f"export: SKIP the conditional model's refusal: this clvae does not train it: "
              f"{r.err.strip()}")
        return
    for part in ("encoder", "decoder"):
        cli.expect_error(f"export --part {part} of a conditional model: exit 2 naming the layer",
                         ["export", "--model", model, "-o", out, "--part", part], cli.EXIT_USAGE,
                         [model, "--conditional"] + (["mean+logvar"] if part == "encoder" else []))
    cli.check("nothing written for the refused model", not os.path.exists(out), out)


def body():
    try:
        import onnx  # noqa: F401
    except ImportError as e:
        cli.check("python3-onnx imports (apt-get install python3-onnx)", False, str(e))
        return
    py = runtime()
    idx = cli.data_dir("idx", cli.TRAIN_GZ, cli.TEST_IMAGES)
    grey = idx_test_images(cli.TEST_IMAGES)
    rgb, rgb_test = rgb_folder()
    dense = ["--hidden", "16", "--latent", "3"]
    conv = ["--encoder", "conv:4,conv:8,dense:16", "--latent", "3"]
    test_model(py, "dense-bernoulli", idx, grey, dense)
    test_model(py, "conv-bernoulli", idx, grey, conv)
    test_model(py, "dense-logistic", idx, grey, dense + ["--likelihood", "logistic"])
    test_model(py, "conv-logistic-rgb", rgb, rgb_test,
               ["--encoder", "conv:6,dense:8", "--latent", "2", "--likelihood", "logistic"])
    test_model(py, "dense-bernoulli-rgb", rgb, rgb_test, ["--hidden", "12", "--latent", "2"])
    test_model(py, "up-bernoulli", idx, grey, ["--encoder", "conv:4", "--decoder",
                                                 "dense:16,reshape:4x2x2,up:2,conv:4:3:1:1",
                                                 "--latent", "2"])
    test_model(py, "res-bernoulli", idx, grey, ["--encoder", "conv:8,res:8:2,dense:8",
                                                  "--latent", "2"])
    test_errors(os.path.join(cli.TMP, "dense-bernoulli.safetensors"))
    test_refused_model()


if __name__ == "__main__":
    sys.exit(cli.run_suite("export", body))
