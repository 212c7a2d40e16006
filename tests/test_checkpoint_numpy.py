#!/usr/bin/env python3
"""clvae checkpoints as numpy reads them: the safetensors file taken apart with the standard
library and numpy alone, and the decoder run on its weights as torch.nn.Linear would (weights
(out, in), y = x @ W.T + b), compared with what the C side computed from clvae's flat layout.

Usage:
  test_checkpoint_numpy.py CHECKPOINT [EXPECTED]
      CHECKPOINT as `test_checkpoint DIR` writes it (DIR/small.safetensors); EXPECTED defaults to
      DIR/small_expected.bin beside it (layout: see read_expected).
  test_checkpoint_numpy.py
      with TEST_CHECKPOINT naming the test_checkpoint binary: runs it into a temporary directory
      and checks what it wrote.

Exits 0 when every check passed, 1 when one failed, 77 (meson's "skipped") without numpy.
"""

import json
import os
import struct
import subprocess
import sys
import tempfile

try:
    import numpy as np
except ImportError:
    np = None

# safetensors' dtype names this script reads; clvae writes F32 only.
DTYPES = {"F32": "<f4", "F64": "<f8", "F16": "<f2"}


def load_safetensors(path):
    """path -> (tensors: name -> np.float32 array in the file's shape, metadata: str -> str).

    Checks what a careful reader should: the header length against the file, a JSON object, and
    every tensor's byte range inside the data section with its size matching dtype and shape.
    """
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        raise ValueError(f"{path}: {len(blob)} bytes, too short for the header length")
    (header_len,) = struct.unpack("<Q", blob[:8])
    if header_len > len(blob) - 8:
        raise ValueError(f"{path}: header length {header_len} past the end of the file")
    header = json.loads(blob[8 : 8 + header_len].decode("utf-8"))
    if not isinstance(header, dict):
        raise ValueError(f"{path}: the header is not a JSON object")
    metadata = header.pop("__metadata__", {})
    data = memoryview(blob)[8 + header_len :]
    tensors = {}
    for name, info in header.items():
        dtype = np.dtype(DTYPES[info["dtype"]])
        shape = tuple(int(d) for d in info["shape"])
        begin, end = (int(x) for x in info["data_offsets"])
        count = int(np.prod(shape, dtype=np.int64))
        if not 0 <= begin <= end <= len(data) or end - begin != count * dtype.itemsize:
            raise ValueError(f"{path}: {name}: data_offsets [{begin}, {end}] do not fit {shape}")
        array = np.frombuffer(data, dtype=dtype, count=count, offset=begin).reshape(shape)
        tensors[name] = array.astype(np.float32)
    return tensors, metadata


def layers(metadata, side):
    """The widths of side's ("encoder" or "decoder") dense layers: format version 2 names them
    ("dense:512,dense:256"); version 1 had "hidden" widths ("512,256"), the decoder mirrored."""
    if metadata["format_version"] == "1":
        widths = [int(w) for w in metadata["hidden"].split(",")]
        return widths if side == "encoder" else widths[::-1]
    items = [item.split(":") for item in metadata[side].split(",")]
    assert all(kind == "dense" for kind, _ in items), metadata[side]
    return [int(width) for _, width in items]


def expected_shapes(metadata):
    """Every tensor name the metadata's architecture implies -> its shape, in the file's order."""
    in_dim, latent = int(metadata["in_dim"]), int(metadata["latent"])
    shapes = {}
    prev = in_dim
    for i, width in enumerate(layers(metadata, "encoder")):
        shapes[f"encoder.{i}.weight"], shapes[f"encoder.{i}.bias"] = (width, prev), (width,)
        prev = width
    for head in ("mean", "logvar"):
        shapes[f"{head}.weight"], shapes[f"{head}.bias"] = (latent, prev), (latent,)
    prev = latent
    for i, width in enumerate(layers(metadata, "decoder")):
        shapes[f"decoder.{i}.weight"], shapes[f"decoder.{i}.bias"] = (width, prev), (width,)
        prev = width
    shapes["output.weight"], shapes["output.bias"] = (in_dim, prev), (in_dim,)
    if metadata.get("optimizer") == "adam":
        params = list(shapes.items())
        for moment in ("m", "v"):
            for name, shape in params:
                shapes[f"optimizer.{moment}.{name}"] = shape
    return shapes


def linear(x, tensors, name):
    """x (n, in) -> x @ W.T + b, as torch.nn.Linear with weight (out, in), in double."""
    w = tensors[name + ".weight"].astype(np.float64)
    b = tensors[name + ".bias"].astype(np.float64)
    return x @ w.T + b


def encode(tensors, metadata, x):
    """x (n, in_dim) -> (mean, logvar), each (n, latent): ReLU hidden layers, linear heads."""
    h = np.asarray(x, dtype=np.float64)
    for i in range(len(layers(metadata, "encoder"))):
        h = np.maximum(linear(h, tensors, f"encoder.{i}"), 0.0)
    return linear(h, tensors, "mean"), linear(h, tensors, "logvar")


def items(metadata, side):
    """side's layer list as (kind, numbers): ("dense", [N]), ("conv", [C, K, S, P]),
    ("deconv", [C, K, S, P]), ("res", [C, G]), ("up", [F]), ("reshape", [C, H, W]); format
    version 1 is all dense."""
    if metadata["format_version"] == "1":
        return [("dense", [w]) for w in layers(metadata, side)]
    out = []
    for item in metadata[side].split(","):
        kind, rest = item.split(":", 1)
        out.append((kind, [int(v) for v in rest.replace("x", ":").split(":")]))
    return out


def deconv(h, w, b, stride, pad):
    """PyTorch's ConvTranspose2d on channel-last h (n, IH, IW, IC) with weight w (IC, OC, K, K):
    each input pixel adds x w[:, :, ky, kx] at (iy S - P + ky, ix S - P + kx)."""
    n, ih, iw, _ = h.shape
    oc, k = w.shape[1], w.shape[2]
    full = np.zeros((n, (ih - 1) * stride + k, (iw - 1) * stride + k, oc))
    for ky in range(k):
        for kx in range(k):
            full[:, ky:ky + (ih - 1) * stride + 1:stride, kx:kx + (iw - 1) * stride + 1:stride] += \
                np.einsum("nyxi,io->nyxo", h, w[:, :, ky, kx].astype(np.float64))
    oh, ow = full.shape[1] - 2 * pad, full.shape[2] - 2 * pad
    return full[:, pad:pad + oh, pad:pad + ow] + b.astype(np.float64)


def conv3(h, w, b):
    """PyTorch's Conv2d 3x3, stride 1, padding 1 on channel-last h (n, H, W, C) with weight w
    (OC, C, 3, 3)."""
    n, ih, iw, _ = h.shape
    padded = np.pad(h, ((0, 0), (1, 1), (1, 1), (0, 0)))
    out = np.zeros((n, ih, iw, w.shape[0]))
    for ky in range(3):
        for kx in range(3):
            out += np.einsum("nyxi,oi->nyxo", padded[:, ky:ky + ih, kx:kx + iw],
                             w[:, :, ky, kx].astype(np.float64))
    return out + b.astype(np.float64)


def group_norm_relu(h, gamma, beta, groups):
    """relu(GroupNorm(groups, C)(h)) on channel-last h (n, H, W, C), eps 1e-5."""
    n, ih, iw, c = h.shape
    g = h.reshape(n, ih * iw, groups, c // groups)
    mean = g.mean(axis=(1, 3), keepdims=True)
    var = ((g - mean) ** 2).mean(axis=(1, 3), keepdims=True)
    x = ((g - mean) / np.sqrt(var + 1e-5)).reshape(n, ih, iw, c)
    return np.maximum(x * gamma.astype(np.float64) + beta.astype(np.float64), 0.0)


def res_block(h, tensors, name, groups):
    """res:C:G: h + conv2(relu(gn2(conv1(relu(gn1(h)))))), PyTorch's tensor names."""
    t = lambda part: tensors[f"{name}.{part}"]  # noqa: E731
    r = conv3(group_norm_relu(h, t("gn1.weight"), t("gn1.bias"), groups), t("conv1.weight"),
              t("conv1.bias"))
    r = conv3(group_norm_relu(r, t("gn2.weight"), t("gn2.bias"), groups), t("conv2.weight"),
              t("conv2.bias"))
    return h + r


def decode_logits(tensors, metadata, z):
    """z (n, latent) -> logits (n, in_dim) through the decoder's layers, images channel-last; the
    output layer is dense from a flat vector, else the transpose of the first encoder layer when
    that is a conv (deconv 4x4/2 padding 1 otherwise) to the image's channels (twice them under
    the logistic likelihood), as clvae lays it out."""
    h = np.asarray(z, dtype=np.float64)
    index = 0
    for kind, v in items(metadata, "decoder"):
        if kind == "reshape":
            h = h.reshape(len(h), v[1], v[2], v[0])
            continue
        name = f"decoder.{index}"
        index += 1
        if kind == "dense":
            h = np.maximum(linear(h.reshape(len(h), -1), tensors, name), 0.0)
        elif kind == "res":
            h = res_block(h, tensors, name, v[1])
        elif kind == "up":
            h = h.repeat(v[0], axis=1).repeat(v[0], axis=2)
        else:
            assert kind == "deconv", kind
            h = np.maximum(deconv(h, tensors[name + ".weight"], tensors[name + ".bias"], v[2], v[3]),
                           0.0)
    if h.ndim == 2:
        return linear(h, tensors, "output")
    first_kind, first = items(metadata, "encoder")[0]
    stride, pad = (first[2], first[3]) if first_kind == "conv" else (2, 1)
    return deconv(h, tensors["output.weight"], tensors["output.bias"], stride, pad).reshape(len(h), -1)


def sigmoid(v):
    # tanh form: no overflow in exp for large |v|.
    return 0.5 * (1.0 + np.tanh(0.5 * v))


def decode(tensors, metadata, z):
    """z (n, latent) -> each pixel's mean (n, in_dim), channel-last: the sigmoid of the logits
    (Bernoulli), or under the discretised logistic (format 3's likelihood "logistic": per pixel
    the channels' means, then their log-scales, clamped to [-7, 15]) sum_k k/255 P(k), that is
    (1/255) sum_{k=1}^{255} sigmoid((mean - (k - 1/2)/255) / scale)."""
    out = decode_logits(tensors, metadata, z)
    if metadata.get("likelihood", "bernoulli") == "bernoulli":
        return sigmoid(out)
    c = int(metadata["channels"])
    pix = out.reshape(len(out), -1, 2 * c)
    mean, scale = pix[:, :, :c], np.exp(np.clip(pix[:, :, c:], -7.0, 15.0))
    edges = (np.arange(1, 256) - 0.5) / 255.0
    above = sigmoid((mean[..., None] - edges) / scale[..., None])
    return (above.sum(axis=-1) / 255.0).reshape(len(out), -1)


def read_expected(path):
    """test_checkpoint's small_expected.bin: little-endian u32 rows, latent, in_dim, 0; then f64
    x (rows, in_dim), mean, logvar, z (rows, latent each), logits (rows, in_dim)."""
    with open(path, "rb") as f:
        blob = f.read()
    rows, latent, in_dim, _ = struct.unpack("<4I", blob[:16])
    sizes = [("x", in_dim), ("mean", latent), ("logvar", latent), ("z", latent),
             ("logits", in_dim)]
    need = 16 + 8 * rows * sum(cols for _, cols in sizes)
    if len(blob) != need:
        raise ValueError(f"{path}: {len(blob)} bytes, expected {need}")
    out, offset = {}, 16
    for name, cols in sizes:
        out[name] = np.frombuffer(blob, dtype="<f8", count=rows * cols, offset=offset)
        out[name] = out[name].reshape(rows, cols).astype(np.float64)
        offset += 8 * rows * cols
    return out


class Checks:
    """Prints one line per check and counts them."""

    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, ok, name, detail=""):
        line = f"{'ok  ' if ok else 'FAIL'} {name}" + (f": {detail}" if detail else "")
        print(line, flush=True)
        if ok:
            self.passed += 1
        else:
            self.failed += 1

    def close(self, tol, name, got, want):
        err = float(np.max(np.abs(got - want))) if got.shape == want.shape else float("inf")
        self.check(err <= tol, name, f"max abs error {err:.3g} (tolerance {tol:g})")


def check_file(checks, path):
    """The file's form and tensors; returns (tensors, metadata) or None when it does not load."""
    try:
        tensors, metadata = load_safetensors(path)
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
        checks.check(False, "load_safetensors", str(e))
        return None
    checks.check(True, "load_safetensors", f"{len(tensors)} tensors")

    with open(path, "rb") as f:
        (header_len,) = struct.unpack("<Q", f.read(8))
        header_text = f.read(header_len)
        data_len = len(f.read())
    checks.check(header_len % 8 == 0 and header_text.startswith(b"{"),
                 "header: a JSON object, length a multiple of 8", f"{header_len} bytes")
    checks.check(metadata.get("format") == "clvae" and metadata.get("format_version") == "3",
                 "metadata format clvae, version 3",
                 f"{metadata.get('format')!r} {metadata.get('format_version')!r}")
    checks.check(all(isinstance(v, str) for v in metadata.values()),
                 "metadata values are strings")
    checks.check(metadata.get("layout") == "weight (out, in) as torch.nn.Linear",
                 "metadata layout", repr(metadata.get("layout")))
    checks.check(int(metadata["in_dim"]) ==
                 int(metadata["image_rows"]) * int(metadata["image_cols"]),
                 "in_dim = image_rows * image_cols")

    shapes = expected_shapes(metadata)
    checks.check(set(tensors) == set(shapes), "tensor names match the architecture",
                 f"extra {sorted(set(tensors) - set(shapes))}, "
                 f"missing {sorted(set(shapes) - set(tensors))}")
    wrong = [n for n, s in shapes.items() if n in tensors and tensors[n].shape != s]
    checks.check(not wrong, "shapes match the architecture (weights (out, in))",
                 ", ".join(f"{n} {tensors[n].shape} != {shapes[n]}" for n in wrong))
    header = json.loads(header_text)
    ranges = sorted(tuple(v["data_offsets"]) for k, v in header.items() if k != "__metadata__")
    tiled = ranges and ranges[0][0] == 0 and ranges[-1][1] == data_len and all(
        a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    checks.check(bool(tiled), "data_offsets tile the data section", f"{data_len} bytes")
    order = [k for k in header if k != "__metadata__"]
    checks.check(order == list(shapes), "tensors in the documented order")
    return tensors, metadata


def check_against_safetensors(checks, path, tensors, metadata):
    """The same file through the safetensors package, when it is installed."""
    try:
        from safetensors import safe_open
    except ImportError:
        print("skip safetensors package: not installed")
        return
    with safe_open(path, framework="numpy") as f:
        same_meta = f.metadata() == metadata
        same = set(f.keys()) == set(tensors) and all(
            np.array_equal(f.get_tensor(k), tensors[k], equal_nan=True) for k in f.keys())
    checks.check(same_meta and same, "the safetensors package reads the same tensors")


def run(checkpoint, expected_path):
    """Every check on one checkpoint and its expected outputs; returns the process status."""
    checks = Checks()
    loaded = check_file(checks, checkpoint)
    if loaded is not None:
        tensors, metadata = loaded
        check_against_safetensors(checks, checkpoint, tensors, metadata)
        try:
            want = read_expected(expected_path)
        except (OSError, ValueError) as e:
            checks.check(False, "read the expected outputs", str(e))
            want = None
        if want is not None:
            mean, logvar = encode(tensors, metadata, want["x"])
            checks.close(1e-5, "encode: mean as the C reference", mean, want["mean"])
            checks.close(1e-5, "encode: logvar as the C reference", logvar, want["logvar"])
            logits = decode_logits(tensors, metadata, want["z"])
            checks.close(1e-5, "decode: logits as the C reference", logits, want["logits"])
            probs = decode(tensors, metadata, want["z"])
            ref = 1.0 / (1.0 + np.exp(-want["logits"]))
            checks.close(1e-5, "decode: probabilities as the C reference", probs, ref)
            checks.check(probs.shape == (want["z"].shape[0], int(metadata["in_dim"])),
                         "decode: shape (n, in_dim)", str(probs.shape))
    print(f"{checks.passed} passed, {checks.failed} failed")
    return 1 if checks.failed else 0


def main(argv):
    if np is None:
        print("numpy is not importable: skipped")
        return 77
    if len(argv) in (2, 3):
        checkpoint = argv[1]
        if len(argv) == 3:
            expected = argv[2]
        else:
            expected = os.path.join(os.path.dirname(checkpoint) or ".", "small_expected.bin")
        return run(checkpoint, expected)
    binary = os.environ.get("TEST_CHECKPOINT")
    if len(argv) == 1 and binary:
        with tempfile.TemporaryDirectory(prefix="test_checkpoint_numpy.") as tmp:
            done = subprocess.run([binary, tmp], check=False)
            if done.returncode != 0:
                print(f"{binary} {tmp}: exit {done.returncode}")
                print("0 passed, 1 failed")
                return 1
            return run(os.path.join(tmp, "small.safetensors"),
                       os.path.join(tmp, "small_expected.bin"))
    print(__doc__.strip(), file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
