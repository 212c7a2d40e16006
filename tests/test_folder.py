#!/usr/bin/env python3
"""Your own images: clvae train on folders of PNG files (colour, labels from class folders, a
seeded split or a test/ folder, every PNG format), the discretised logistic likelihood and bits
per dimension, the best-epoch checkpoint, eval/reconstruct/scatter/generate on such models, and
every bad folder and option: one "clvae: " line, the documented status, nothing written.

PNG files are written here by a small encoder of their own (zlib and struct), so the test needs
nothing but Python. Run as `CLVAE=path/to/clvae python3 tests/test_folder.py`.
"""
import filecmp
import math
import os
import re
import struct
import sys
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_cli as cli  # noqa: E402
from test_plot import read_png_rgb  # noqa: E402

SIDE = 8  # the images' side
GRID_COLS, GRID_PAD = 8, 2


def png(width, height, rows, color=6, depth=8, palette=None, trns=None):
    """A PNG file's bytes: rows are lists of samples (ints) in the colour type's order."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))
    raw = bytearray()
    for row in rows:
        raw.append(0)
        if depth == 16:
            for v in row:
                raw += struct.pack(">H", v)
        else:
            raw += bytes(row)
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth,
                                                             color, 0, 0, 0))
    if palette is not None:
        out += chunk(b"PLTE", bytes(v for rgb in palette for v in rgb))
    if trns is not None:
        out += chunk(b"tRNS", bytes(trns))
    return out + chunk(b"IDAT", zlib.compress(bytes(raw))) + chunk(b"IEND", b"")


def blob_rgba(seed, side=SIDE, hue=(255, 0, 0)):
    """An RGBA image: a soft blob of colour hue on a transparent background."""
    cy, cx = seed % side, (seed * 7) % side
    rows = []
    for y in range(side):
        row = []
        for x in range(side):
            a = max(0, 255 - 50 * ((y - cy) ** 2 + (x - cx) ** 2))
            row += [hue[0], hue[1], hue[2], a]
        rows.append(row)
    return png(side, side, rows, color=6)


def write(path, blob):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(blob)


def labelled_folder(name, per_class=30, side=SIDE):
    """TMP/data/name: three class folders of RGBA blobs (red, green, blue), plus in each class one
    image of another format: a palette with transparency, 16-bit RGB, grey+alpha."""
    d = os.path.join(cli.TMP, "data", name)
    hues = {"a_red": (255, 0, 0), "b_green": (0, 160, 0), "c_blue": (0, 0, 255)}
    for k, (cls, hue) in enumerate(sorted(hues.items())):
        for i in range(per_class):
            write(os.path.join(d, cls, f"img{i:03d}.png"), blob_rgba(i + 31 * k, side, hue))
    pal = [(0, 0, 0), (255, 0, 0), (0, 255, 0)]
    idx = [[(x + y) % 3 for x in range(side)] for y in range(side)]
    write(os.path.join(d, "a_red", "palette.png"),
          png(side, side, idx, color=3, palette=pal, trns=[0, 255, 128]))
    rgb16 = [[v for x in range(side) for v in (x * 8000, y * 8000, 65535)] for y in range(side)]
    write(os.path.join(d, "b_green", "deep.png"), png(side, side, rgb16, color=2, depth=16))
    ga = [[v for x in range(side) for v in (x * 30, 255 - y * 30)] for y in range(side)]
    write(os.path.join(d, "c_blue", "greyalpha.png"), png(side, side, ga, color=4))
    return d


def banner_counts(out):
    m = re.search(r"(\d+) training and (\d+) test images", out)
    return (int(m.group(1)), int(m.group(2))) if m else None


def test_good_folder():
    d = labelled_folder("good")
    out = cli.fresh_out()
    save = os.path.join(out, "model.safetensors")
    base = ["train", "--data", d, "--epochs", "3", "--batch", "16", "--hidden", "32",
            "--latent", "4"]
    r = cli.run(base + ["--out", out, "--save", save])
    cli.check("folder: trains, exit 0", r.rc == cli.EXIT_OK, r.describe())
    # 93 images: classes of 31, each holding out round(0.1 * 31) = 3.
    cli.check("folder: banner says 84 training and 9 test images, 8x8, 3 channels, 3 classes",
              banner_counts(r.out) == (84, 9) and "8x8, 3 channels, 3 classes" in r.out, r.out)
    cli.check("folder: the epoch line reports bits/dim",
              re.search(r"^epoch +1 .*\d\.\d+ bits/dim", r.out, re.M) is not None, r.out)
    _, header, rows = cli.read_metrics(out) if r.rc == 0 else ("", [], [])
    ok = "test_bits_per_dim" in header and rows and all(
        abs(float(row["test_bits_per_dim"]) - float(row["test_neg_elbo"])
            / (math.log(2) * SIDE * SIDE * 3)) < 1e-3 for row in rows)
    cli.check("metrics.csv: test_bits_per_dim = test_neg_elbo / (8 x 8 x 3 ln 2)", ok, f"{rows}")
    try:
        w, h, pixels = read_png_rgb(os.path.join(out, "samples_epoch003.png"))
        colourful = any(p[0] != p[1] or p[1] != p[2] for row in pixels for p in row)
        why = f"{w}x{h}"
    except (OSError, ValueError) as e:
        w = h = 0
        colourful, why = False, str(e)
    side = GRID_COLS * SIDE + (GRID_COLS + 1) * GRID_PAD
    cli.check("folder: samples_epoch003.png is an RGB grid of 8x8 tiles with colour in it",
              (w, h) == (side, side) and colourful, why)
    best = os.path.join(out, "model.best.safetensors")
    cli.check("--save: the best test epoch's checkpoint beside the last, named in the banner",
              os.path.exists(save) and os.path.exists(best) and best in r.out, r.out)

    # The split depends on the seed and the files alone: the same run twice is the same.
    out2 = cli.fresh_out()
    r2 = cli.run(base + ["--out", out2])
    _, _, rows2 = cli.read_metrics(out2) if r2.rc == 0 else ("", [], [])
    cli.check("folder: the same seed gives the same split and the same numbers",
              r2.rc == 0 and cli.without_timing(rows) == cli.without_timing(rows2),
              r2.describe())
    out3 = cli.fresh_out()
    r3 = cli.run(base + ["--out", out3, "--test-split", "0.3", "--channels", "1",
                         "--background", "0"])
    cli.check("--test-split 0.3 --channels 1 --background 0: 66 + 27 grey images",
              r3.rc == 0 and banner_counts(r3.out) == (66, 27) and "1 channel," in r3.out,
              r3.describe())

    # The model's commands read the folder as training did: the same 9 test images.
    e = cli.run(["eval", "--model", save, "--data", d, "-k", "5"])
    cli.check("eval on the folder: 9 test images, bits/dim reported",
              e.rc == 0 and "9 test images of 8x8, 3 channel(s)" in e.out
              and e.out.count("bits/dim") == 2, e.describe())
    png_out = os.path.join(out, "recon.png")
    rc = cli.run(["reconstruct", "--model", save, "--data", d, "-n", "4", "-o", png_out])
    cli.check("reconstruct on the folder: an RGB grid", rc.rc == 0 and
              read_png_rgb(png_out)[0] == GRID_COLS * SIDE + (GRID_COLS + 1) * GRID_PAD,
              rc.describe())
    sc = cli.run(["scatter", "--model", save, "--data", d, "-o", os.path.join(out, "sc.png"),
                  "--images"])
    cli.check("scatter on the folder: coloured by the class folders (no 'no labels' note)",
              sc.rc == 0 and "no labels" not in sc.out, sc.describe())
    raw = os.path.join(out, "gen.raw")
    g = cli.run(["generate", "--model", save, "-n", "3", "--raw", raw])
    values = struct.unpack(f"<{3 * SIDE * SIDE * 3}f", open(raw, "rb").read()) if g.rc == 0 else []
    cli.check("generate --raw: 3 images of 8x8x3 means in [0, 1]",
              len(values) == 3 * SIDE * SIDE * 3 and all(0 <= v <= 1 for v in values),
              g.describe())


def test_layouts():
    # DIR/train and DIR/test: the test set is the test folder, whole.
    d = os.path.join(cli.TMP, "data", "split_folders")
    for part, n in (("train", 20), ("test", 6)):
        for cls in ("x", "y"):
            for i in range(n):
                write(os.path.join(d, part, cls, f"{i}.png"), blob_rgba(i))
    r = cli.run(["train", "--data", d, "--epochs", "1", "--batch", "8", "--hidden", "16",
                 "--out", cli.fresh_out()])
    cli.check("train/ and test/ folders: 40 training and 12 test images, 2 classes",
              r.rc == 0 and banner_counts(r.out) == (40, 12) and "2 classes" in r.out
              and "(test/ folder)" in r.out, r.describe())
    # Unlabelled: the PNG files directly in DIR; grey images give one channel.
    d = os.path.join(cli.TMP, "data", "flat")
    for i in range(30):
        write(os.path.join(d, f"{i:02d}.png"),
              png(SIDE, SIDE, [[(x * y + i) % 256 for x in range(SIDE)] for y in range(SIDE)],
                  color=0))
    write(os.path.join(d, ".hidden.png"), b"not even a PNG")
    r = cli.run(["train", "--data", d, "--epochs", "1", "--batch", "8", "--hidden", "16",
                 "--out", cli.fresh_out()])
    cli.check("a flat folder of grey PNGs (a hidden non-PNG ignored): 27 + 3, 1 channel, "
              "no classes", r.rc == 0 and banner_counts(r.out) == (27, 3)
              and "1 channel\n" in r.out, r.describe())


def test_likelihood():
    good = cli.data_dir("idx_logistic", cli.TRAIN_GZ, cli.TEST_IMAGES)
    out = cli.fresh_out()
    save = os.path.join(out, "m.safetensors")
    r = cli.run(["train", "--data", good, "--epochs", "2", "--batch", "32", "--likelihood",
                 "logistic", "--out", out, "--save", save])
    _, _, rows = cli.read_metrics(out) if r.rc == 0 else ("", [], [])
    cli.check("--likelihood logistic: trains, the test loss falls, bits/dim between 0 and 8",
              r.rc == 0 and "logistic likelihood" in r.out and len(rows) == 2
              and float(rows[1]["test_neg_elbo"]) < float(rows[0]["test_neg_elbo"])
              and 0 < float(rows[1]["test_bits_per_dim"]) < 8, r.describe())
    e = cli.run(["eval", "--model", save, "--data", good, "-k", "10"])
    m = re.search(r"negative IWAE +([\d.]+) nats/image.*?([\d.]+) bits/dim", e.out)
    cli.check("eval of a logistic model: the IWAE bound in nats and bits/dim",
              e.rc == 0 and m and abs(float(m.group(2)) - float(m.group(1))
                                      / (math.log(2) * cli.ROWS * cli.COLS)) < 1e-4,
              e.describe())
    raw = os.path.join(out, "g.raw")
    g = cli.run(["generate", "--model", save, "-n", "2", "--raw", raw])
    n = 2 * cli.ROWS * cli.COLS
    values = struct.unpack(f"<{n}f", open(raw, "rb").read()) if g.rc == 0 else []
    cli.check("generate --raw of a logistic model: the means, in [0, 1]",
              len(values) == n and all(0 <= v <= 1 for v in values), g.describe())
    cli.expect_error("--resume with another --likelihood",
                     ["train", "--data", good, "--epochs", "3", "--resume", save,
                      "--likelihood", "bernoulli", "--out", cli.fresh_out()],
                     cli.EXIT_USAGE, ["--likelihood bernoulli", save, "logistic"])


def test_numpy_decoder():
    """A colour conv model under the logistic likelihood, read and decoded with numpy alone
    (tests/decode_numpy.py) against clvae generate --raw."""
    import subprocess
    d = labelled_folder("numpy", per_class=12)
    out = cli.fresh_out()
    model = os.path.join(out, "m.safetensors")
    r = cli.run(["train", "--data", d, "--epochs", "1", "--batch", "8", "--encoder",
                 "conv:4,dense:8", "--latent", "3", "--likelihood", "logistic", "--out", out,
                 "--save", model])
    raw = os.path.join(out, "g.raw")
    g = cli.run(["generate", "--model", model, "-n", "5", "--seed", "9", "--temperature", "0.7",
                 "--raw", raw]) if r.rc == 0 else r
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "decode_numpy.py")
    py = next((p for p in (sys.executable, "/usr/bin/python3") if subprocess.run(
        [p, "-c", "import numpy"], capture_output=True).returncode == 0), None)
    p = subprocess.run([py, script, model, raw, "5", "9", "0.7"], capture_output=True,
                       text=True) if py and g.rc == 0 else None
    cli.check("numpy decodes a colour conv logistic checkpoint as clvae generate --raw does",
              p is not None and p.returncode == 0,
              (p.stdout + p.stderr) if p else g.describe())


def test_bad_folders():
    bad = lambda name: os.path.join(cli.TMP, "data", name)  # noqa: E731
    base = lambda d, out: ["train", "--data", d, "--epochs", "1", "--batch", "8",  # noqa: E731
                           "--hidden", "16", "--out", out]
    os.makedirs(bad("empty"))
    write(os.path.join(bad("empty"), "notes.txt"), b"no images here")
    out = cli.fresh_out()
    cli.expect_error("folder: no PNG files", base(bad("empty"), out), cli.EXIT_DATA,
                     [bad("empty")], out=out, out_may_exist=False)

    def folder_with(name, extra_name, extra):
        d = bad(name)
        for i in range(12):
            write(os.path.join(d, f"{i:02d}.png"), blob_rgba(i))
        write(os.path.join(d, extra_name), extra)
        return d

    d = folder_with("notpng", "zz.png", b"GIF89a this is not a PNG at all")
    out = cli.fresh_out()
    cli.expect_error("folder: a .png that is not a PNG", base(d, out), cli.EXIT_DATA, ["zz.png"],
                     out=out, out_may_exist=False)
    d = folder_with("truncated", "zz.png", blob_rgba(5)[:60])
    out = cli.fresh_out()
    cli.expect_error("folder: a truncated PNG", base(d, out), cli.EXIT_DATA, ["zz.png"], out=out,
                     out_may_exist=False)
    r = cli.run(base(d, cli.fresh_out()) + ["--skip-bad-images"])
    cli.check("--skip-bad-images: the truncated file skipped with a warning naming it, counted",
              r.rc == 0 and "zz.png" in r.err and "warning" in r.err
              and "1 bad files skipped" in r.out, r.describe())
    d = folder_with("mixed", "zz.png", blob_rgba(3, side=SIDE + 2))
    out = cli.fresh_out()
    cli.expect_error("folder: images of two sizes without --image-size", base(d, out),
                     cli.EXIT_DATA, ["zz.png", "10x10", "8x8", "--image-size"], out=out,
                     out_may_exist=False)
    r = cli.run(base(d, cli.fresh_out()) + ["--image-size", "8x8"])
    cli.check("--image-size 8x8 resizes the odd one: trains", r.rc == 0, r.describe())
    d = bad("emptyclass")
    for i in range(10):
        write(os.path.join(d, "a", f"{i}.png"), blob_rgba(i))
    os.makedirs(os.path.join(d, "b"))
    out = cli.fresh_out()
    cli.expect_error("folder: a class folder with no images", base(d, out), cli.EXIT_DATA,
                     [os.path.join(d, "b")], out=out, out_may_exist=False)
    d = folder_with("tiny", "zz.png", blob_rgba(7))
    out = cli.fresh_out()
    cli.expect_error("--test-split 0.99 leaves no training image", base(d, out) +
                     ["--test-split", "0.99"], (cli.EXIT_DATA, cli.EXIT_USAGE), ["--test-split"],
                     out=out, out_may_exist=False)
    usage = [("--image-size 0x8", ["--image-size", "0x8"], ["--image-size"]),
             ("--image-size 100000x100000", ["--image-size", "100000x100000"], ["--image-size"]),
             ("--image-size abc", ["--image-size", "abc"], ["--image-size", "abc"]),
             ("--channels 2", ["--channels", "2"], ["--channels"]),
             ("--background 300", ["--background", "300"], ["--background"]),
             ("--background red", ["--background", "red"], ["--background"]),
             ("--test-split 1", ["--test-split", "1"], ["--test-split"]),
             ("--test-split 0", ["--test-split", "0"], ["--test-split"]),
             ("--likelihood gaussian", ["--likelihood", "gaussian"], ["--likelihood", "gaussian"])]
    for label, extra, mentions in usage:
        out = cli.fresh_out()
        cli.expect_error(f"usage: {label}", base(d, out) + extra, cli.EXIT_USAGE, mentions,
                         out=out, out_may_exist=False)
    idx = cli.data_dir("idx_options", cli.TRAIN_GZ, cli.TEST_IMAGES)
    out = cli.fresh_out()
    cli.expect_error("--image-size on IDX files: refused, not ignored",
                     base(idx, out) + ["--image-size", "8x8"], cli.EXIT_USAGE,
                     ["--image-size", "PNG"], out=out, out_may_exist=False)


def test_split_folder():
    """900 RGB images of 8x8 (172,800 bytes) under CLVAE_MAX_ALLOC=64K: the training set in 3
    buffers of whole images, the same checkpoint byte for byte as in one."""
    d = labelled_folder("split", per_class=300)
    saved = []
    for env in ({}, {"CLVAE_MAX_ALLOC": "64K"}):
        path = os.path.join(cli.TMP, f"split{len(env)}.safetensors")
        r = cli.run(["train", "--data", d, "--out", cli.fresh_out(), "--epochs", "2", "--hidden",
                     "32", "--batch", "64", "--save", path], env=env)
        cli.check(f"PNG folder{' under CLVAE_MAX_ALLOC=64K' if env else ''}: exit 0",
                  r.rc == 0, r.describe())
        saved.append(path)
        if env:
            cli.check("CLVAE_MAX_ALLOC=64K: the banner says the training set is in 3 buffers",
                      "training set in 3 buffers" in r.out, r.describe())
    same = all(os.path.exists(p) for p in saved) and filecmp.cmp(saved[0], saved[1], shallow=False)
    cli.check("PNG folder in 3 buffers: the checkpoint equals the one-buffer run's", same,
              "the checkpoints differ")


def test_resume_on_other_data():
    """A checkpoint of colour 6x6 PNG images resumed on grey 8x8 IDX files: one line naming the
    checkpoint, both sizes and the data, exit 3, no --channels that nobody gave, nothing written;
    an explicit --channels 3 is the option blamed."""
    d = labelled_folder("resume_colour", per_class=10, side=6)
    save = os.path.join(cli.TMP, "colour6.safetensors")
    r = cli.run(["train", "--data", d, "--epochs", "1", "--batch", "8", "--hidden", "16",
                 "--out", cli.fresh_out(), "--save", save])
    cli.check("a colour 6x6 PNG folder's checkpoint for the resume case", r.rc == 0,
              r.describe())
    idx = cli.data_dir("resume_idx", cli.TRAIN_GZ, cli.TEST_IMAGES)
    base = ["train", "--data", idx, "--epochs", "3", "--batch", "8", "--resume", save]
    out = cli.fresh_out()
    r = cli.expect_error("--resume of a colour PNG checkpoint on IDX files: names both sizes",
                         base + ["--out", out], cli.EXIT_DATA,
                         [save + ": ", "6x6x3", "8x8x1", idx, "IDX"], out=out,
                         out_may_exist=False)
    cli.check("... and blames no option that was not given", "--channels" not in r.err,
              r.describe())
    out = cli.fresh_out()
    cli.expect_error("--resume with --channels 3 on IDX files: the option given is blamed",
                     base + ["--out", out, "--channels", "3"], cli.EXIT_USAGE,
                     ["--channels 3", idx], out=out, out_may_exist=False)


def body():
    test_good_folder()
    test_split_folder()
    test_layouts()
    test_likelihood()
    test_numpy_decoder()
    test_bad_folders()
    test_resume_on_other_data()


if __name__ == "__main__":
    sys.exit(cli.run_suite("folder", body))
