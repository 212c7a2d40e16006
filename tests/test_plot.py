#!/usr/bin/env python3
"""The pictures: OUT/curves.png after training, clvae plot on any metrics.csv and on broken ones,
clvae scatter coloured by class (and with one colour when the data has no labels), with --images;
PNGs decoded here (RGB, every PNG filter) for pixel checks that fail when nothing is drawn.

Run as `CLVAE=path/to/clvae python3 tests/test_plot.py`.
"""
import os
import struct
import subprocess
import sys
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_cli as cli  # noqa: E402  (run, check, expect_error, data_dir, idx3, fresh_out)

CURVES = (1500, 480)   # include/io/plot.h
SCATTER = (1000, 800)
TEST_RGB = (0xD5, 0x5E, 0x00)   # plot_test_colour, Okabe-Ito vermilion
TRAIN_RGB = (0x00, 0x72, 0xB2)  # plot_train_colour, Okabe-Ito blue
TABLEAU10 = [0x4E79A7, 0xF28E2B, 0xE15759, 0x76B7B2, 0x59A14F, 0xEDC948, 0xB07AA1, 0xFF9DA7,
             0x9C755F, 0xBAB0AC]
SCATTER_PLOT_AREA = (95, 765)  # x range of the plot area beside the legend


def read_png_rgb(path):
    """(width, height, rows of (r, g, b) tuples) of an 8-bit RGB or RGBA PNG."""
    with open(path, "rb") as f:
        blob = f.read()
    if blob[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("no PNG signature")
    pos, idat, ihdr = 8, b"", None
    while pos + 8 <= len(blob):
        length, kind = struct.unpack(">I4s", blob[pos:pos + 8])
        data = blob[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            ihdr = data
        elif kind == b"IDAT":
            idat += data
        pos += 12 + length
    width, height, depth, color = struct.unpack(">IIBB", ihdr[:10])
    if depth != 8 or color not in (2, 6):
        raise ValueError(f"bit depth {depth}, colour type {color}: not 8-bit RGB(A)")
    bpp = 3 if color == 2 else 4
    raw, stride, rows, prev = zlib.decompress(idat), width * bpp, [], bytearray(width * bpp)
    for y in range(height):
        line = raw[y * (stride + 1):(y + 1) * (stride + 1)]
        f, cur = line[0], bytearray(line[1:])
        for i in range(stride):
            a = cur[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if f == 1:
                cur[i] = (cur[i] + a) & 255
            elif f == 2:
                cur[i] = (cur[i] + b) & 255
            elif f == 3:
                cur[i] = (cur[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                cur[i] = (cur[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append([tuple(cur[x * bpp:x * bpp + 3]) for x in range(width)])
        prev = cur
    return width, height, rows


def png_dimensions(path):
    """(width, height) from a PNG's IHDR, or None when path is no PNG."""
    with open(path, "rb") as f:
        head = f.read(24)
    if head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", head[16:24])


def count_near(rows, rgb, tol=6, x_range=None):
    lo, hi = x_range or (0, len(rows[0]))
    return sum(1 for row in rows for p in row[lo:hi] if all(abs(p[k] - rgb[k]) <= tol for k in range(3)))


def labels_file(labels):
    return struct.pack(">II", 0x00000801, len(labels)) + bytes(labels)


def test_curves():
    data = cli.data_dir("curves", train=cli.TRAIN_GZ, test=cli.TEST_IMAGES)
    out = cli.fresh_out()
    r = cli.run(["train", "--data", data, "--out", out, "--epochs", "1", "--batch", "32", "--quiet"])
    cli.check("train --epochs 1: no curves.png yet (a curve needs two epochs)",
              r.rc == 0 and not os.path.exists(os.path.join(out, "curves.png")), r.describe())
    out = cli.fresh_out()
    r = cli.run(["train", "--data", data, "--out", out, "--epochs", "3", "--batch", "32", "--quiet"])
    png = os.path.join(out, "curves.png")
    ok = r.rc == 0 and os.path.exists(png)
    cli.check("train --epochs 3 leaves OUT/curves.png", ok, r.describe())
    if not ok:
        return
    w, h, rows = read_png_rgb(png)
    cli.check(f"curves.png is {CURVES[0]}x{CURVES[1]}", (w, h) == CURVES, f"{w}x{h}")
    for name, rgb in (("test", TEST_RGB), ("train", TRAIN_RGB)):
        per_panel = [count_near(rows, rgb, 6, (p * 500 + 80, p * 500 + 480)) for p in range(3)]
        cli.check(f"curves.png: the {name} curve's colour is drawn in all three panels {per_panel}",
                  all(n > 200 for n in per_panel), f"{per_panel} pixels")

    # clvae plot on the same metrics.csv (and on one a resume appended to).
    again = os.path.join(cli.TMP, "again.png")
    r = cli.run(["plot", "--metrics", os.path.join(out, "metrics.csv"), "-o", again])
    cli.check("clvae plot --metrics out/metrics.csv: the same picture as train's",
              r.rc == 0 and open(again, "rb").read() == open(png, "rb").read(), r.describe())

    metrics = open(os.path.join(out, "metrics.csv")).read().splitlines()
    header, row = metrics[0], metrics[1]

    def bad(label, text, mentions, status=cli.EXIT_DATA):
        path = os.path.join(cli.TMP, label.replace(" ", "-") + ".csv")
        with open(path, "w") as f:
            f.write(text)
        target = os.path.join(cli.TMP, "bad.png")
        cli.expect_error(f"plot: {label}", ["plot", "--metrics", path, "-o", target], status,
                         [path] + mentions)
        cli.check(f"plot: {label}: nothing written", not os.path.exists(target), "bad.png exists")

    bad("an empty metrics.csv", "", ["empty"])
    bad("a metrics.csv of one row", header + "\n" + row + "\n", ["1 epoch row", "two epochs"])
    nan_row = row.split(",")
    nan_row[4] = "nan"
    bad("a NaN", "\n".join([header, row, ",".join(nan_row)]) + "\n", ["line 3", "nan"])
    cols = header.split(",")
    keep = [i for i, c in enumerate(cols) if c != "train_kl"]
    cut = lambda line: ",".join(line.split(",")[i] for i in keep)  # noqa: E731
    bad("a missing column", "\n".join([cut(header), cut(row), cut(metrics[2])]) + "\n",
        ["train_kl"])
    cli.expect_error("plot: a missing metrics.csv", ["plot", "--metrics",
                     os.path.join(cli.TMP, "nope.csv"), "-o", again], cli.EXIT_DATA, ["nope.csv"])
    cli.expect_error("plot: an unwritable output", ["plot", "--metrics",
                     os.path.join(out, "metrics.csv"), "-o",
                     os.path.join(cli.TMP, "no", "such", "c.png")], cli.EXIT_OUTPUT, ["no/such"])
    cli.expect_error("plot without --metrics", ["plot", "-o", again], cli.EXIT_USAGE,
                     ["--metrics"])


def run_briefly(args, seconds=60):
    """clvae args, killed after seconds: a cli.Result whose rc is "timeout" when it hung."""
    t0 = time.monotonic()
    try:
        p = subprocess.run([cli.CLVAE] + args, capture_output=True, text=True, cwd=cli.TMP,
                           timeout=seconds)
        rc, out, err = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as e:
        rc, out, err = "timeout", str(e.stdout or ""), str(e.stderr or "")
    return cli.Result(args, rc, out, err, time.monotonic() - t0)


METRICS_COLS = "epoch,train_neg_elbo,train_rec,train_kl,test_neg_elbo,test_rec,test_kl"


def test_ranges():
    """Axes over any finite values end: ranges below the values' precision (epochs 1e16 and
    1e16 + 2 have no double between them, so `v += step` never moved on), the whole double
    range, subnormal ranges, a single value; non-finite values, over-long lines and a FIFO as
    metrics.csv are refused at once, naming the file."""
    def csv(label, rows):
        path = os.path.join(cli.TMP, label.replace(" ", "-") + ".csv")
        with open(path, "w") as f:
            f.write(METRICS_COLS + "\n" + "".join(",".join(r) + "\n" for r in rows))
        return path

    big = "1.7976931348623157e308"
    drawable = {
        "epochs and losses below their precision": [
            ["1e16"] + ["1e17"] * 6, ["10000000000000002", "100000000000000016"] + ["1e17"] * 5],
        "one epoch value, losses 2^53 apart by one": [
            ["3", "9007199254740992"] + ["1"] * 5, ["3", "9007199254740993"] + ["1"] * 5],
        "the whole double range": [["1", big, "-" + big, big, "-" + big, "0", "5e-324"],
                                   ["2", "-" + big, big, "0", "1e-300", "-1e308", "1e308"]],
        "epochs at the largest doubles": [["-" + big] + ["1"] * 6, [big] + ["2"] * 6],
        "a subnormal range": [["1"] + ["0"] * 6, ["2"] + ["5e-324"] * 6],
        "every value the same": [["4"] + ["5"] * 6, ["4"] + ["5"] * 6],
    }
    for label, rows in drawable.items():
        png = os.path.join(cli.TMP, "range.png")
        if os.path.exists(png):
            os.remove(png)
        r = run_briefly(["plot", "--metrics", csv(label, rows), "-o", png])
        ok = r.rc == 0 and not r.err and png_dimensions(png) == CURVES
        cli.check(f"plot, {label}: drawn within a minute (exit 0, {CURVES[0]}x{CURVES[1]})", ok,
                  r.describe())

    target = os.path.join(cli.TMP, "refused.png")
    for label, value in (("inf", "inf"), ("-inf", "-inf"), ("1e309 (inf once read)", "1e309"),
                         ("NaN", "NaN")):
        path = csv("value " + value, [["1"] + ["2"] * 6, ["2"] + ["3"] * 5 + [value]])
        cli.expect_error(f"plot: a value of {label}: exit 3 naming the file and line", ["plot",
                         "--metrics", path, "-o", target], cli.EXIT_DATA,
                         [path, "line 3", "test_kl", "not a finite number"])
    path = os.path.join(cli.TMP, "long-line.csv")
    with open(path, "w") as f:
        f.write(METRICS_COLS + "\n1" + ",2" * 6 + "\n2" + ",3" * 6 + " " * 5000 + "\n")
    cli.expect_error("plot: a line of 5000 bytes: exit 3 naming the line", ["plot", "--metrics",
                     path, "-o", target], cli.EXIT_DATA, [path, "line 3", "longer than"])

    fifo = os.path.join(cli.TMP, "fifo-metrics.csv")
    os.mkfifo(fifo)
    r = run_briefly(["plot", "--metrics", fifo, "-o", target], 30)
    cli.check("plot --metrics FIFO: exit 3 at once naming it, nothing written",
              r.rc == cli.EXIT_DATA and r.err == f"clvae: {fifo}: not a regular file\n"
              and not os.path.exists(target), r.describe())
    cli.expect_error("plot --metrics a directory: exit 3 naming it", ["plot", "--metrics",
                     cli.TMP, "-o", target], cli.EXIT_DATA, [cli.TMP])
    cli.check("plot: nothing written by any refusal", not os.path.exists(target), "refused.png")


def test_scatter():
    # Four classes of the test images (cli.TEST_IMAGES has 100).
    labels = [(i * 7) % 4 for i in range(cli.N_TEST)]
    data = cli.data_dir("scatter", train=cli.TRAIN_GZ, test=cli.TEST_IMAGES)
    with open(os.path.join(data, "t10k-labels-idx1-ubyte"), "wb") as f:
        f.write(labels_file(labels))
    with open(os.path.join(data, "classes.txt"), "w") as f:
        f.write("north\neast\nsouth\nwest\n")
    model = os.path.join(cli.TMP, "scatter.safetensors")
    r = cli.run(["train", "--data", data, "--out", cli.fresh_out(), "--epochs", "2", "--batch",
                 "32", "--quiet", "--save", model])
    cli.check("a model to scatter", r.rc == 0, r.describe())
    png = os.path.join(cli.TMP, "latent.png")
    r = cli.run(["scatter", "--model", model, "--data", data, "-o", png])
    ok = r.rc == 0 and os.path.exists(png)
    cli.check("scatter (latent 10, PCA): exit 0 and a PNG", ok, r.describe())
    if ok:
        w, h, rows = read_png_rgb(png)
        cli.check(f"scatter PNG is {SCATTER[0]}x{SCATTER[1]}", (w, h) == SCATTER, f"{w}x{h}")
        for c in range(4):
            rgb = ((TABLEAU10[c] >> 16) & 255, (TABLEAU10[c] >> 8) & 255, TABLEAU10[c] & 255)
            # A dot is drawn at alpha 0.75 over white; the legend's swatches are outside the area.
            dot = tuple(round(0.75 * v + 0.25 * 255) for v in rgb)
            n = count_near(rows, dot, 10, SCATTER_PLOT_AREA) + count_near(rows, rgb, 10,
                                                                           SCATTER_PLOT_AREA)
            cli.check(f"scatter: class {c}'s colour in the plot area ({n} pixels)", n > 20,
                      f"{n} pixels near {dot}")
    r = cli.run(["scatter", "--model", model, "--data", data, "--images", "-n", "40", "-o", png])
    cli.check("scatter --images -n 40: exit 0 and a PNG", r.rc == 0 and
              read_png_rgb(png)[:2] == SCATTER, r.describe())

    two = os.path.join(cli.TMP, "two.safetensors")
    r = cli.run(["train", "--data", data, "--out", cli.fresh_out(), "--epochs", "1", "--batch",
                 "32", "--quiet", "--latent", "2", "--save", two])
    r = cli.run(["scatter", "--model", two, "--data", data, "-o", png])
    cli.check("scatter (latent 2, the latent axes): exit 0", r.rc == 0, r.describe())

    unlabelled = cli.data_dir("unlabelled", train=cli.TRAIN_GZ, test=cli.TEST_IMAGES)
    r = cli.run(["scatter", "--model", model, "--data", unlabelled, "-o", png])
    ok = r.rc == 0 and "no labels" in r.out
    cli.check("scatter on data without labels: exit 0, a note, one colour", ok, r.describe())
    if ok:
        rows = read_png_rgb(png)[2]
        first = (0x4E, 0x79, 0xA7)
        dot = tuple(round(0.75 * v + 0.25 * 255) for v in first)
        others = sum(count_near(rows, tuple(round(0.75 * v + 0.25 * 255) for v in
                                            ((t >> 16) & 255, (t >> 8) & 255, t & 255)), 6,
                                SCATTER_PLOT_AREA) for t in TABLEAU10[1:4])
        n = count_near(rows, dot, 10, SCATTER_PLOT_AREA)
        cli.check(f"scatter without labels: dots in one colour ({n} pixels, {others} of others)",
                  n > 20 and others == 0, f"{n} / {others}")
    broken = cli.data_dir("broken-labels", train=cli.TRAIN_GZ, test=cli.TEST_IMAGES)
    with open(os.path.join(broken, "t10k-labels-idx1-ubyte"), "wb") as f:
        f.write(labels_file(labels[:10]))
    cli.expect_error("scatter with fewer labels than images", ["scatter", "--model", model,
                     "--data", broken, "-o", png], cli.EXIT_DATA, ["10 labels", "100"])
    fifo_data = cli.data_dir("fifo-classes", train=cli.TRAIN_GZ, test=cli.TEST_IMAGES)
    with open(os.path.join(fifo_data, "t10k-labels-idx1-ubyte"), "wb") as f:
        f.write(labels_file(labels))
    os.mkfifo(os.path.join(fifo_data, "classes.txt"))
    r = run_briefly(["scatter", "--model", model, "--data", fifo_data, "-o", png], 120)
    cli.check("scatter with a FIFO as classes.txt: exit 3 naming it, no hang",
              r.rc == cli.EXIT_DATA and r.err.count("\n") == 1
              and "classes.txt: not a regular file" in r.err, r.describe())
    # Grids too large for a PNG are refused before anything is decoded, naming the options (in
    # manifold, 100000 x 100000 images once overflowed an int).
    grid = os.path.join(cli.TMP, "grid.png")
    for label, args, mentions in (
            ("generate -n 100000 --cols 1", ["generate", "-n", "100000", "--cols", "1"],
             ["-n 100000 with --cols 1", "32768"]),
            ("manifold -n 100000 (latent 2)", ["manifold", "-n", "100000"], ["-n 100000"])):
        model_for = two if label.startswith("manifold") else model
        r = run_briefly(args + ["--model", model_for, "-o", grid], 120)
        problems = [] if r.rc == cli.EXIT_USAGE and r.err.count("\n") == 1 else ["not exit 2"]
        problems += [m for m in mentions if m not in r.err]
        problems += ["wrote the PNG"] if os.path.exists(grid) else []
        cli.check(f"{label}: a grid over 32768 pixels a side, refused (exit 2) within 20 s",
                  not problems and r.seconds < 20, f"{problems} {r.describe()}")
    cli.expect_error("scatter into a missing directory", ["scatter", "--model", model, "--data",
                     data, "-o", os.path.join(cli.TMP, "no", "such", "s.png")], cli.EXIT_OUTPUT,
                     ["no/such"])


def main():
    def body():
        test_curves()
        test_ranges()
        test_scatter()
    return cli.run_suite("plot", body)


if __name__ == "__main__":
    sys.exit(main())
