#!/usr/bin/env python3
"""The real job: one epoch of `clvae train` on Fashion-MNIST (the default --data) must reach a test
negative ELBO below 285 nats (the PyTorch reference gets about 276 after one epoch) and write the
two image grids of 28x28 tiles.

Run as `CLVAE=path/to/clvae python3 tests/test_train.py`; CLVAE defaults to build-cli/clvae.
Exits 77 (meson's "skipped") when the data set is not installed.
"""
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLVAE = os.path.abspath(os.environ.get("CLVAE") or os.path.join(ROOT, "build-cli", "clvae"))
DATA = "/usr/share/datasets/fashion-mnist"  # clvae's default --data
NEG_ELBO_LIMIT = 285.0
TILE, GRID_COLS, GRID_PAD, GRID_TILES = 28, 8, 2, 64  # src/train.c
SIDE = GRID_COLS * TILE + (GRID_COLS + 1) * GRID_PAD  # 64 tiles: 8 rows of 8, a square grid

passed = failed = 0


def check(label, ok, why=""):
    """Records one check: prints "train: <label> ok", or a FAIL line with the reason."""
    global passed, failed
    if ok:
        passed += 1
        print(f"train: {label} ok")
    else:
        failed += 1
        print(f"train: FAIL {label}: {why}")
    sys.stdout.flush()
    return ok


def png_size(path):
    """(width, height) of an 8-bit grayscale PNG, after checking its signature, IHDR (and CRC),
    and that the IDAT stream inflates to height rows of 1 + width bytes; raises ValueError."""
    with open(path, "rb") as f:
        blob = f.read()
    if blob[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"no PNG signature (starts {blob[:8]!r})")
    length, kind = struct.unpack(">I4s", blob[8:16])
    if kind != b"IHDR" or length != 13:
        raise ValueError(f"first chunk is {kind!r} of {length} bytes, not a 13-byte IHDR")
    ihdr = blob[16:29]
    if struct.unpack(">I", blob[29:33])[0] != zlib.crc32(b"IHDR" + ihdr):
        raise ValueError("IHDR CRC does not match")
    width, height, depth, color = struct.unpack(">IIBB", ihdr[:10])
    if (depth, color) != (8, 0):
        raise ValueError(f"bit depth {depth}, colour type {color}: not 8-bit grayscale")
    pos, idat, seen_end = 8, b"", False
    while pos + 8 <= len(blob):
        length, kind = struct.unpack(">I4s", blob[pos:pos + 8])
        if kind == b"IDAT":
            idat += blob[pos + 8:pos + 8 + length]
        seen_end = kind == b"IEND"
        pos += 12 + length
    if not seen_end:
        raise ValueError("no IEND chunk at the end")
    raw = zlib.decompress(idat)
    if len(raw) != height * (width + 1):
        raise ValueError(f"IDAT inflates to {len(raw)} bytes, not {height} rows of {width + 1}")
    return width, height


def main():
    if not os.access(CLVAE, os.X_OK):
        print(f"train: FAIL {CLVAE} is not an executable (set CLVAE)")
        print("0 passed, 1 failed")
        return 1
    if not os.path.isdir(DATA):
        print(f"train: skipped: {DATA} (Fashion-MNIST, clvae's default --data) is not installed")
        return 77
    tmp = tempfile.mkdtemp(prefix="clvae-train-")
    try:
        out = os.path.join(tmp, "out")
        args = [CLVAE, "train", "--epochs", "1", "--out", out, "--quiet"]
        t0 = time.monotonic()
        p = subprocess.run(args, capture_output=True, text=True, cwd=tmp, timeout=600)
        seconds = time.monotonic() - t0
        print(f"train: `clvae train --epochs 1 --out {out} --quiet` took {seconds:.1f} s")
        what = f"exit {p.returncode}; stdout {p.stdout!r}; stderr {p.stderr!r}"
        check("exit 0", p.returncode == 0, what)
        check("--quiet: nothing on stdout or stderr", not p.stdout and not p.stderr, what)

        metrics = os.path.join(out, "metrics.csv")
        rows = []
        if os.path.exists(metrics):
            with open(metrics) as f:
                lines = f.read().splitlines()
            header = lines[0].split(",") if lines else []
            rows = [dict(zip(header, line.split(","))) for line in lines[1:]]
        check("metrics.csv: one row, for epoch 1",
              len(rows) == 1 and rows[0].get("epoch") == "1", f"{rows}")
        row = rows[0] if rows else {}

        def number(name):
            text = row.get(name, "")
            return float(text) if re.fullmatch(r"-?\d+(\.\d+)?", text) else None

        test_neg_elbo, train_neg_elbo = number("test_neg_elbo"), number("train_neg_elbo")
        print(f"train: epoch 1: train_neg_elbo {train_neg_elbo}, test_neg_elbo {test_neg_elbo} "
              f"(limit {NEG_ELBO_LIMIT}, PyTorch reference about 276), "
              f"{row.get('images_per_second')} images/s")
        check(f"test_neg_elbo {test_neg_elbo} below {NEG_ELBO_LIMIT}",
              test_neg_elbo is not None and test_neg_elbo < NEG_ELBO_LIMIT, f"{row}")
        check("test_neg_elbo = test_rec + test_kl (to the printed precision)",
              test_neg_elbo is not None and number("test_rec") is not None
              and number("test_kl") is not None
              and abs(number("test_rec") + number("test_kl") - test_neg_elbo) < 2e-4, f"{row}")

        for name in ("samples_epoch001.png", "reconstructions_epoch001.png"):
            try:
                size = png_size(os.path.join(out, name))
                why = f"{size[0]}x{size[1]}"
            except (OSError, ValueError, zlib.error) as e:
                size, why = None, str(e)
            check(f"{name}: PNG of {SIDE}x{SIDE} ({GRID_TILES} tiles of {TILE}x{TILE}, "
                  f"{GRID_COLS} a row, {GRID_PAD} px padding)", size == (SIDE, SIDE), why)
        names = sorted(os.listdir(out)) if os.path.isdir(out) else []
        check("OUT holds metrics.csv and the two PNGs, no temporary files",
              names == ["metrics.csv", "reconstructions_epoch001.png", "samples_epoch001.png"],
              f"{names}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
