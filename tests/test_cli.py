#!/usr/bin/env python3
"""Command-line tests for clvae: every bad input fails with one "clvae: " line naming the option or
file, the documented exit status (include/base/error.h) and nothing left in the output directory; a good
run on small synthetic IDX data writes metrics.csv and the PNG grids, reproducibly for a seed.

Run as `CLVAE=path/to/clvae python3 tests/test_cli.py`; CLVAE defaults to build-cli/clvae.
"""
import gzip
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

# include/base/error.h
EXIT_OK, EXIT_USAGE, EXIT_DATA, EXIT_OUTPUT, EXIT_DEVICE, EXIT_DIVERGED = 0, 2, 3, 4, 5, 6

# The synthetic data set: small enough that a whole run is build time plus a few milliseconds.
ROWS, COLS, N_TRAIN, N_TEST = 8, 8, 300, 100
GRID_COLS, GRID_PAD = 8, 2  # src/train/train.c: 8 tiles a row, 2 px of padding
METRICS_HEADER = ("epoch,train_neg_elbo,train_rec,train_kl,test_neg_elbo,test_rec,test_kl,"
                  "seconds,images_per_second,test_bits_per_dim")
TIMING_COLUMNS = ("seconds", "images_per_second")  # the only columns allowed to differ between runs

passed = failed = 0


def check(label, ok, why=""):
    """Records one check: prints "cli: <label> ok", or a FAIL line with the reason."""
    global passed, failed
    if ok:
        passed += 1
        print(f"cli: {label} ok")
    else:
        failed += 1
        print(f"cli: FAIL {label}: {why}")
    sys.stdout.flush()
    return ok


class Result:
    def __init__(self, args, rc, out, err, seconds):
        self.args, self.rc, self.out, self.err, self.seconds = args, rc, out, err, seconds

    def describe(self):
        """The command and everything it printed, for a FAIL line."""
        cmd = " ".join(repr(a) if (not a or " " in a) else a for a in ["clvae"] + self.args)
        return (f"`{cmd}` exited {self.rc} after {self.seconds:.2f} s; "
                f"stdout {self.out!r}; stderr {self.err!r}")


def run(args, env=None, cwd=None):
    full_env = dict(os.environ)
    full_env.update(env or {})
    t0 = time.monotonic()
    try:
        p = subprocess.run([CLVAE] + args, capture_output=True, text=True, env=full_env,
                           cwd=cwd or TMP, timeout=300)
        rc, out, err = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as e:
        rc, out, err = "timeout", str(e.stdout or ""), str(e.stderr or "")
    return Result(args, rc, out, err, time.monotonic() - t0)


def files_under(path):
    """Every file (not directory) below path, relative to it; [] when path does not exist."""
    found = []
    for dirpath, _, names in os.walk(path):
        found += [os.path.relpath(os.path.join(dirpath, n), path) for n in names]
    return sorted(found)


def stray_temporaries(path):
    """Leftovers of png_write_gray (NAME.tmpXXXXXX) or of the output-directory write test."""
    return [f for f in files_under(path)
            if ".tmp" in os.path.basename(f) or ".clvae-write-test" in os.path.basename(f)]


# ---- data -----------------------------------------------------------------------------------

def idx3(count, rows, cols, seed, magic=0x00000803):
    """An IDX3 unsigned-byte image file: soft blobs on black, different for every image."""
    state = seed * 2654435761 + 12345
    pixels = bytearray()
    for _ in range(count):
        state = (state * 6364136223846793005 + 1442695040888963407) % 2**64
        cy, cx = (state >> 20) % rows, (state >> 30) % cols
        for y in range(rows):
            for x in range(cols):
                d = (y - cy) ** 2 + (x - cx) ** 2
                pixels.append(max(0, 255 - 40 * d))
    return struct.pack(">IIII", magic, count, rows, cols) + bytes(pixels)


TRAIN_IMAGES = idx3(N_TRAIN, ROWS, COLS, seed=1)
TEST_IMAGES = idx3(N_TEST, ROWS, COLS, seed=2)
TRAIN_GZ = gzip.compress(TRAIN_IMAGES, mtime=0)


def data_dir(name, train=None, test=None, train_name="train-images-idx3-ubyte.gz",
             test_name="t10k-images-idx3-ubyte"):
    """TMP/data/name holding the given bytes under the given names (None: no such file)."""
    d = os.path.join(TMP, "data", name)
    os.makedirs(d)
    for fname, blob in ((train_name, train), (test_name, test)):
        if blob is not None:
            with open(os.path.join(d, fname), "wb") as f:
                f.write(blob)
    return d


_outs = 0


def fresh_out():
    """A path for --out that does not exist yet."""
    global _outs
    _outs += 1
    return os.path.join(TMP, "outs", str(_outs))


# ---- PNG --------------------------------------------------------------------------------------

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


def grid_side(tile, n_tiles=64):
    rows = (n_tiles + GRID_COLS - 1) // GRID_COLS
    return GRID_COLS * tile + (GRID_COLS + 1) * GRID_PAD, rows * tile + (rows + 1) * GRID_PAD


# ---- error cases ------------------------------------------------------------------------------

def expect_error(label, args, status, mentions, out=None, env=None, one_line=True,
                 out_may_exist=True):
    """Runs args and checks: exit status, nothing on stdout, stderr one "clvae: " line (or, with
    one_line False, starting with one) that contains every string in mentions, and no file left
    in out (which, with out_may_exist False, must not even have been created)."""
    r = run(args, env=env)
    problems = []
    allowed = status if isinstance(status, tuple) else (status,)
    if r.rc not in allowed:
        problems.append(f"exit status {r.rc}, expected {' or '.join(map(str, allowed))}")
    if r.out:
        problems.append("something on stdout")
    if not r.err.startswith("clvae: "):
        problems.append("stderr does not start with 'clvae: '")
    if one_line and (r.err.count("\n") != 1 or not r.err.endswith("\n") or "\r" in r.err):
        problems.append("stderr is not exactly one line")
    for m in mentions:
        if m not in r.err:
            problems.append(f"stderr does not mention {m!r}")
    if out is not None:
        if files_under(out):
            problems.append(f"left files in OUT: {files_under(out)}")
        if not out_may_exist and os.path.exists(out):
            problems.append("created OUT")
    check(label, not problems, "; ".join(problems) + " -- " + r.describe())
    return r


def test_usage():
    r = run([])
    check("no arguments: usage on stderr, exit 2",
          r.rc == EXIT_USAGE and not r.out and "usage: clvae" in r.err, r.describe())
    expect_error("unknown command", ["frobnicate"], EXIT_USAGE, ["frobnicate"])
    expect_error("devices with an argument", ["devices", "extra"], EXIT_USAGE, ["extra"])

    good = data_dir("usage", TRAIN_GZ, TEST_IMAGES)

    def usage_error(label, extra, mentions):
        out = fresh_out()
        # --epochs 1 first: a later --epochs wins, and a bad value let through trains only briefly.
        expect_error(label, ["train", "--data", good, "--out", out, "--epochs", "1"] + extra,
                     EXIT_USAGE, mentions, out=out, out_may_exist=False)

    usage_error("unknown long option", ["--bogus"], ["--bogus"])
    usage_error("unknown short option", ["-x"], ["-x"])
    # getopt leaves optind on the group while it is not finished: argv[optind - 1] is the one before.
    usage_error("unknown short option in a group (-xq)", ["-xq"], ["-x"])
    usage_error("unexpected argument", ["stray"], ["stray"])
    usage_error("--epochs without a value", ["--epochs"], ["--epochs"])
    usage_error("-e without a value", ["-e"], ["-e"])

    bad_values = {
        "--epochs": ["a", "", "0", "-1", "1.5", "3x", "1000001", "99999999999999999999"],
        "--batch": ["a", "", "0", "-1", "1048577"],
        "--latent": ["a", "", "0", "-1", "4097"],
        "--lr": ["a", "", "0", "-1", "11", "nan", "inf", "1e-400"],
        "--beta": ["-1", "a", "", "1e7", "nan"],
        "--hidden": ["0", "", "12,,3", "a", ",3", "3,", "3,a", "-4", "65537",
                     ",".join(["4"] * 9), ",".join(["4"] * 40)],
        "--seed": ["-1", "abc", "", "18446744073709551616", " -1"],
        "--platform": ["", "1001", "99999999999"],
        "--device": ["", "1001", "99999999999"],
        "--optimizer": ["sgd", "", "Adam"],
    }
    for option, values in bad_values.items():
        for v in values:
            usage_error(f"{option} {v!r}", [option, v], [option])
    for v in ["-0.1", "a", "", "101", "nan"]:
        usage_error(f"--optimizer adamw --weight-decay {v!r}",
                    ["--optimizer", "adamw", "--weight-decay", v], ["--weight-decay"])
    # Weight decay is AdamW's (decoupled); Adam has none, whichever order the options come in.
    usage_error("--weight-decay with Adam (the default)", ["--weight-decay", "0.01"],
                ["--weight-decay", "adamw", "not adam"])
    usage_error("--weight-decay before --optimizer adam",
                ["--weight-decay", "0.01", "--optimizer", "adam"], ["--weight-decay", "not adam"])
    usage_error("--beta given as --beta=-1", ["--beta=-1"], ["--beta"])

    # Architectures: bad items, and shapes refused when the model is laid out on the 8x8 images,
    # before anything is written.
    bad_layers = ["conv:0", "conv:8:0", "conv:8:4:0", "conv", "conv:", "conv:8:4:2:1:9", "pool:3",
                  "conv:a", "conv:-8", "dense:0", "", "conv:8,,dense:4", "reshape:4x4",
                  ",".join(["conv:2:3:1:1"] * 9), "conv:6,res:6:4", "conv:8,res:8:2:1", "up:0"]
    for v in bad_layers:
        usage_error(f"--encoder {v!r}", ["--encoder", v], ["--encoder"])
    for v in ["deconv:0", "reshape:0x4x4", "reshape:4x4x", "dense:4,"]:
        usage_error(f"--decoder {v!r}", ["--decoder", v], ["--decoder"])
    shapes = [
        (["--encoder", "conv:4:3:2:0"], ["--encoder", "stride", "not a multiple of 2"]),
        (["--encoder", "conv:4:12:1:1"], ["--encoder", "kernel is larger"]),
        (["--encoder", "conv:4:3:1:3"], ["--encoder", "padding below the kernel"]),
        (["--encoder", "dense:16,conv:4"], ["--encoder", "encoder.1", "takes an image"]),
        (["--encoder", "conv:4", "--decoder", "dense:36,reshape:4x3x3"],
         ["--decoder", "cannot reach the image size", "6x6", "8x8"]),
        (["--encoder", "conv:4", "--decoder", "dense:10,reshape:4x2x2"],
         ["--decoder", "reshape:4x2x2 needs a flat input of 16"]),
        (["--encoder", "conv:4", "--decoder", "deconv:4"], ["--decoder", "takes an image"]),
        (["--hidden", "16", "--encoder", "conv:4"], ["--hidden", "--encoder"]),
        # Sizes past 32 bits (each number up to 65536): refused, not wrapped.
        (["--encoder", "conv:4", "--decoder", "dense:16,reshape:65536x65536x65536"],
         ["--decoder", "281474976710656"]),
        (["--encoder", "conv:4", "--decoder", "dense:16,reshape:1x4x4,deconv:65536:65536:65536:0"],
         ["--decoder", "decoder.1", "more than 2^31 - 1 values"]),
        (["--encoder", "conv:4,res:8"], ["--encoder", "encoder.1", "keeps its channels"]),
        (["--encoder", "conv:4,up:2,conv:4,dense:4"], ["--encoder", "up:2", "give --decoder"]),
        (["--encoder", "conv:4", "--decoder", "dense:16,reshape:1x4x4,up:65536"],
         ["--decoder", "decoder.1", "more than 2^31 - 1 values"]),
        (["--encoder", "conv:4", "--decoder", "dense:16,reshape:16x1x1,res:16,up:4096,res:16"],
         ["--decoder", "decoder.3", "columns", "more than 2^31 - 1 values"]),
    ]
    for extra, mentions in shapes:
        usage_error(" ".join(extra), extra, mentions)
    # An empty path names nothing: the message has to name the option (2, or the path's own status).
    out = fresh_out()
    expect_error("--data ''", ["train", "--out", out, "--data", ""], (EXIT_USAGE, EXIT_DATA),
                 ["--data"], out=out)
    expect_error("--out ''", ["train", "--data", good, "--out", ""], (EXIT_USAGE, EXIT_OUTPUT),
                 ["--out"])

    # More images per step than the training set holds: the whole set is one batch an epoch, with
    # one warning line (issue 21; it was refused before).
    r = run(["train", "--data", good, "--out", fresh_out(), "--epochs", "1", "--batch",
             str(N_TRAIN + 1)])
    check(f"--batch {N_TRAIN + 1} with {N_TRAIN} training images: one batch an epoch, one warning",
          r.rc == EXIT_OK and r.err.count("\n") == 1 and f"--batch {N_TRAIN + 1} is larger than "
          f"the training set ({N_TRAIN} images)" in r.err, r.describe())


def test_layer_limits():
    """Issue 19: layer lists past the fixed limits (8 items a list, the mirrored decoder counted;
    2^31 - 1 parameters, computed without wrapping) are refused with one line naming the option,
    exit 2, before the device or the data are touched and before OUT or a checkpoint is written;
    the same lists in clvae tune (on images of the same size), which writes nothing either."""
    good = data_dir("layer-limits", TRAIN_GZ, TEST_IMAGES)
    nine = ",".join(["dense:8"] * 9)
    conv_seven_dense = ",".join(["conv:32"] + ["dense:8"] * 7)  # mirrors to 9 items
    eight_convs = ",".join(["conv:2:3:1:1"] * 8)  # mirrors to 9 items
    cases = [
        ("--encoder of 9 items", ["--encoder", nine], ["--encoder", "at most 8"]),
        ("--decoder of 9 items", ["--encoder", "dense:8", "--decoder", nine],
         ["--decoder", "at most 8"]),
        ("--encoder conv + 7 dense (the mirror takes 9 items)", ["--encoder", conv_seven_dense],
         ["--encoder", "9 items", "--decoder"]),
        ("--encoder of 8 convs (the mirror takes 9 items)", ["--encoder", eight_convs],
         ["--encoder", "9 items", "--decoder"]),
        # 65536 x 65536 x 4 x 4 = 2^36 parameters in the second conv's weight.
        ("--encoder conv:65536,conv:65536 (a weight of 2^36 parameters)",
         ["--encoder", "conv:65536,conv:65536"],
         ["--encoder", "encoder.1", "65536 x 65536 x 4 x 4 = 68719476736 parameters"]),
        # 65536^4 = 2^64: wrapped to 0 in 64 bits before.
        ("--encoder with a conv weight of 2^64 parameters",
         ["--encoder", "conv:65536:7:1:0,conv:65536:65536:65536:65535"],
         ["--encoder", "encoder.1", "65536 x 65536 x 65536 x 65536 = 2^64 or more"]),
        # IC x OC x K x K = 65536 x 65536 x 8 x 8 = 2^38.
        ("--decoder with a deconv weight of 2^38 parameters",
         ["--encoder", "conv:4", "--decoder", "dense:65536,reshape:65536x1x1,deconv:65536:8:1:0"],
         ["--decoder", "decoder.1", "274877906944 parameters"]),
        # The mirror's dense layer back to a 2048x8x8 conv output would not parse back from a
        # checkpoint (widths up to 65536).
        ("--encoder conv:2048:3:1:1 (a mirrored dense layer of 131072)",
         ["--encoder", "conv:2048:3:1:1"], ["--encoder", "131072", "65536"]),
    ]
    for label, extra, mentions in cases:
        out = fresh_out()
        r = expect_error(f"train {label}: exit 2, one line, nothing written",
                         ["train", "--data", good, "--out", out, "--epochs", "1", "--save",
                          os.path.join(out, "m.safetensors")] + extra,
                         EXIT_USAGE, mentions, out=out, out_may_exist=False)
        check(f"train {label}: no metrics.csv or checkpoint",
              not os.path.exists(os.path.join(out, "metrics.csv"))
              and not os.path.exists(os.path.join(out, "m.safetensors")), r.describe())
        cache = os.path.join(TMP, "layer-limits-cache")
        expect_error(f"tune {label}: exit 2, one line", ["tune", "--image", f"1x{ROWS}x{COLS}"]
                     + extra, EXIT_USAGE, mentions, env={"XDG_CACHE_HOME": cache})
        tuning = os.path.join(cache, "clvae")
        check(f"tune {label}: no tuning file written", not files_under(tuning),
              f"{files_under(tuning)}")
    # The same encoder with a decoder given trains: the limit is the list's, not the encoder's.
    out = fresh_out()
    r = run(["train", "--data", good, "--out", out, "--epochs", "1", "--batch", "32", "--quiet",
             "--encoder", conv_seven_dense, "--decoder", "dense:8,dense:512,reshape:32x4x4"])
    check("--encoder conv + 7 dense with --decoder given: trains (exit 0, metrics.csv)",
          r.rc == EXIT_OK and os.path.exists(os.path.join(out, "metrics.csv")), r.describe())


def test_help():
    for args in (["--help"], ["-h"], ["help"]):
        r = run(args)
        check(f"clvae {args[0]}: usage on stdout, exit 0",
              r.rc == EXIT_OK and "usage: clvae" in r.out and "train" in r.out and not r.err,
              r.describe())
    r = run(["--version"])
    check("clvae --version: 'clvae VERSION' on stdout, exit 0",
          r.rc == EXIT_OK and re.fullmatch(r"clvae \S+\n", r.out) is not None and not r.err,
          r.describe())
    r = run(["devices", "--help"])
    check("clvae devices --help: exit 0", r.rc == EXIT_OK and "usage" in r.out and not r.err,
          r.describe())

    r = run(["train", "--help"])
    check("clvae train --help: exit 0, on stdout", r.rc == EXIT_OK and r.out and not r.err,
          r.describe())
    # src/train/train.c train_defaults: every option and the default its line shows.
    defaults = {
        "--platform": "else the first with a GPU", "--device": "else the first GPU, else 0",
        "--data": "[/usr/share/datasets/fashion-mnist]", "--out": "[out]", "--epochs": "[30]",
        "--batch": "[256]", "--lr": "[0.001]", "--hidden": "[128]", "--latent": "[10]",
        "--beta": "[1]", "--seed": "[1]", "--quiet": "", "--help": "", "--optimizer": "[adam]",
        "--weight-decay": "[0.01]",
    }
    lines = r.out.splitlines()
    for option, default in defaults.items():
        at = [i for i, line in enumerate(lines) if re.search(re.escape(option) + r"\b", line)]
        # A default may sit on the option's line or on the continuation line below it.
        text = " ".join(lines[at[0]:at[0] + 2]) if at else ""
        check(f"train --help shows {option} {default}".rstrip(), at and default in text,
              f"not found in: {r.out!r}")


def test_data():
    g = TRAIN_GZ
    short_gz = gzip.compress(TRAIN_IMAGES[:-5], mtime=0)
    long_gz = gzip.compress(TRAIN_IMAGES + b"xx", mtime=0)
    bad_crc = bytearray(g)
    bad_crc[-8] ^= 0xFF  # the gzip trailer's CRC-32
    bad_deflate = bytearray(g)
    bad_deflate[10] = 0xFF  # the first deflate block header: BTYPE 11, reserved
    idx1 = struct.pack(">II", 0x00000801, N_TRAIN) + bytes(N_TRAIN)
    tr_gz, tr_raw = "train-images-idx3-ubyte.gz", "train-images-idx3-ubyte"

    # label, files (train bytes, test bytes, train name), the words the message must hold
    cases = [
        ("directory without the files", (None, None, tr_gz), ["train-images-idx3-ubyte"]),
        ("test images missing", (g, None, tr_gz), ["t10k-images-idx3-ubyte"]),
        ("empty file", (b"", TEST_IMAGES, tr_raw), [tr_raw, "empty"]),
        ("bad magic (gzip)", (gzip.compress(b"\x12\x34" + TRAIN_IMAGES[2:]), TEST_IMAGES, tr_gz),
         [tr_gz, "magic"]),
        ("bad magic (raw)", (b"\x12\x34" + TRAIN_IMAGES[2:], TEST_IMAGES, tr_raw),
         [tr_raw, "magic"]),
        ("float IDX (type 0x0d)", (struct.pack(">I", 0x0D03) + TRAIN_IMAGES[4:], TEST_IMAGES,
                                   tr_raw), [tr_raw, "0x0d"]),
        ("idx1 labels file (rank 1, gzip)", (gzip.compress(idx1), TEST_IMAGES, tr_gz),
         [tr_gz, "rank 1"]),
        ("idx1 labels file (rank 1, raw)", (idx1, TEST_IMAGES, tr_raw), [tr_raw, "rank 1"]),
        ("truncated header", (TRAIN_IMAGES[:10], TEST_IMAGES, tr_raw), [tr_raw, "truncated"]),
        ("zero images in header", (struct.pack(">IIII", 0x803, 0, ROWS, COLS), TEST_IMAGES,
                                   tr_raw), [tr_raw, "0 images"]),
        ("raw file shorter than its header says", (TRAIN_IMAGES[:-5], TEST_IMAGES, tr_raw),
         [tr_raw, "truncated"]),
        ("raw file longer than its header says", (TRAIN_IMAGES + b"xx", TEST_IMAGES, tr_raw),
         [tr_raw, "trailing"]),
        ("gzip data shorter than its header says", (short_gz, TEST_IMAGES, tr_gz),
         [tr_gz, "truncated"]),
        ("gzip data longer than its header says", (long_gz, TEST_IMAGES, tr_gz),
         [tr_gz, "trailing"]),
        ("header asking for 100 GB", (struct.pack(">IIII", 0x803, 100000, 1000, 1000),
                                      TEST_IMAGES, tr_raw), [tr_raw, "100000 images"]),
        ("truncated gzip (half)", (g[:len(g) // 2], TEST_IMAGES, tr_gz), [tr_gz, "truncated"]),
        ("truncated gzip (no trailer)", (g[:-8], TEST_IMAGES, tr_gz), [tr_gz, "truncated"]),
        ("corrupt gzip (CRC)", (bytes(bad_crc), TEST_IMAGES, tr_gz), [tr_gz, "corrupt"]),
        ("corrupt gzip (deflate block type)", (bytes(bad_deflate), TEST_IMAGES, tr_gz),
         [tr_gz, "corrupt"]),
        ("training 8x8, test 7x8", (g, idx3(N_TEST, 7, COLS, seed=3), tr_gz),
         [tr_gz, "t10k-images-idx3-ubyte", "8x8", "7x8"]),
    ]
    for i, (label, (train, test, train_name), mentions) in enumerate(cases):
        d = data_dir(f"case{i}", train, test, train_name=train_name)
        out = fresh_out()
        expect_error(f"data: {label}", ["train", "--data", d, "--out", out], EXIT_DATA,
                     [d] + mentions, out=out)

    missing = os.path.join(TMP, "data", "no-such-directory")
    out = fresh_out()
    expect_error("data: missing directory", ["train", "--data", missing, "--out", out], EXIT_DATA,
                 [missing], out=out)
    a_file = os.path.join(TMP, "data", "case0", "not-a-directory")
    open(a_file, "wb").close()
    out = fresh_out()
    expect_error("data: --data is a regular file", ["train", "--data", a_file, "--out", out],
                 EXIT_DATA, [a_file], out=out)


def test_output():
    good = data_dir("output", TRAIN_GZ, TEST_IMAGES)
    blocker = os.path.join(TMP, "x", "file")
    os.makedirs(os.path.dirname(blocker))
    with open(blocker, "w") as f:
        f.write("a regular file\n")
    for label, out in (("--out under a regular file", os.path.join(blocker, "sub")),
                       ("--out is a regular file", blocker),
                       ("--out /proc/x", "/proc/x"),
                       ("--out /dev/null", "/dev/null")):
        r = expect_error(label, ["train", "--data", good, "--out", out], EXIT_OUTPUT, [out])
        # Before the data and the device: no "clvae: device" line, no kernel build.
        check(f"{label}: refused before training starts", r.seconds < 1.0 and not r.out,
              r.describe())
    with open(blocker) as f:
        check("--out under a regular file leaves that file alone",
              f.read() == "a regular file\n", "its content changed")
    leftovers = [p for p in files_under(TMP)
                 if os.path.basename(p) == "metrics.csv" and not p.startswith("outs" + os.sep)]
    check("no metrics.csv written by the refused runs", not leftovers, f"found {leftovers}")


def list_devices():
    r = run(["devices"])
    check("clvae devices: exit 0, lists platform 0",
          r.rc == EXIT_OK and r.out.startswith("platform 0:") and not r.err, r.describe())
    v = run(["devices", "--verbose"])
    devices = sum(1 for line in r.out.splitlines() if line.startswith("  device "))
    check("clvae devices --verbose: the version, limits and what clvae uses, for every device",
          v.rc == EXIT_OK and v.out.count("clvae uses:") == devices
          and v.out.count("    largest allocation") == devices and "CLBlast parameters" in v.out,
          v.describe())
    expect_error("devices --bogus", ["devices", "--bogus"], EXIT_USAGE, ["--bogus"])
    return [line for line in r.out.splitlines() if line.strip()]


def test_device(listing):
    good = data_dir("device", TRAIN_GZ, TEST_IMAGES)
    for option in ("--device", "--platform"):
        out = fresh_out()
        # The message goes on with the table of what exists, one line per platform and device.
        expect_error(f"{option} 7: no such {option[2:]}",
                     ["train", "--data", good, "--out", out, option, "7"], EXIT_DEVICE,
                     [f"{option} 7"] + listing, out=out, one_line=False)
    # Names: a part of the name, any case; one that matches nothing lists what exists; the
    # environment's CLVAE_PLATFORM / CLVAE_DEVICE stand in for the options, which win over them.
    for option in ("--device", "--platform"):
        out = fresh_out()
        expect_error(f"{option} nosuchname: matches no name", ["train", "--data", good, "--out",
                     out, option, "nosuchname"], EXIT_DEVICE, [f"{option} nosuchname", "no"]
                     + listing, out=out, one_line=False)
    for env_name in ("CLVAE_PLATFORM", "CLVAE_DEVICE"):
        out = fresh_out()
        expect_error(f"{env_name}=nosuchname", ["train", "--data", good, "--out", out],
                     EXIT_DEVICE, [env_name, "nosuchname"] + listing, out=out, one_line=False,
                     env={env_name: "nosuchname"})
    out = fresh_out()
    expect_error("CLVAE_GEMM=fast: not clblast or clvae", ["train", "--data", good, "--out", out],
                 EXIT_USAGE, ["CLVAE_GEMM", "fast", "clblast", "clvae"], out=out,
                 env={"CLVAE_GEMM": "fast"})
    first_platform = listing[0].split(": ", 1)[1] if listing else ""
    part = first_platform.split()[0].upper() if first_platform else "x"
    out = fresh_out()
    r = run(["train", "--data", good, "--out", out, "--epochs", "1", "--platform", part,
             "--device", "0"], env={"CLVAE_PLATFORM": "nosuchname"})
    check(f"--platform {part} (a part of '{first_platform}', other case) selects it, over "
          "CLVAE_PLATFORM", r.rc == 0 and first_platform in r.out, r.describe())
    empty_vendors = os.path.join(TMP, "no-icd-vendors")
    os.makedirs(empty_vendors)
    env = {"OCL_ICD_VENDORS": empty_vendors, "OCL_ICD_FILENAMES": ""}
    out = fresh_out()
    expect_error("no OpenCL platform: train", ["train", "--data", good, "--out", out], EXIT_DEVICE,
                 ["pocl-opencl-icd"], out=out, env=env)
    expect_error("no OpenCL platform: devices", ["devices"], EXIT_DEVICE, ["pocl-opencl-icd"],
                 env=env)


def test_diverges():
    good = data_dir("diverge", TRAIN_GZ, TEST_IMAGES)
    out = fresh_out()
    # Adam's first steps move every weight by about lr: at lr 10 the logits overflow at once.
    r = run(["train", "--data", good, "--out", out, "--epochs", "3", "--batch", "32",
             "--lr", "10"])
    last = r.err.rstrip("\n").split("\r")[-1].split("\n")[-1]
    check("diverging run (--lr 10): exit 6 naming the step",
          r.rc == EXIT_DIVERGED and re.match(
              r"clvae: the loss became (NaN|infinite) at step \d+ \(epoch \d+", last) is not None,
          r.describe())
    check("diverging run: stderr is that one line (no progress or build text in a log)",
          r.err.count("\n") == 1 and "\r" not in r.err and r.err.startswith("clvae: the loss"),
          r.describe())
    check("diverging run: no temporary files left", not stray_temporaries(out),
          f"{stray_temporaries(out)}")


def read_metrics(out):
    with open(os.path.join(out, "metrics.csv")) as f:
        text = f.read()
    lines = text.splitlines()
    header = lines[0].split(",") if lines else []
    return text, header, [dict(zip(header, line.split(","))) for line in lines[1:]]


def without_timing(rows):
    return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in rows]


def test_good_runs():
    good = data_dir("good", TRAIN_GZ, TEST_IMAGES)
    base = ["train", "--data", good, "--epochs", "2", "--batch", "32"]
    out_a, out_b, out_c = fresh_out(), fresh_out(), fresh_out()
    a = run(base + ["--out", out_a, "--seed", "7"])
    check("good run: exit 0", a.rc == EXIT_OK, a.describe())
    check("good run: nothing on stderr when it is not a terminal", not a.err, a.describe())
    epochs_printed = re.findall(r"^epoch +(\d+) ", a.out, re.M)
    check("good run: prints a line per epoch on stdout", epochs_printed == ["1", "2"],
          a.describe())

    text, header, rows = read_metrics(out_a) if a.rc == EXIT_OK else ("", [], [])
    check("metrics.csv: header", text.startswith(METRICS_HEADER + "\n"), f"{text!r}")
    finite = all(re.fullmatch(r"-?\d+(\.\d+)?", v or "") for row in rows for v in row.values())
    check("metrics.csv: 2 rows, epochs 1 and 2, every field a number",
          [r_.get("epoch") for r_ in rows] == ["1", "2"] and finite
          and all(len(r_) == len(header) for r_ in rows) and text.endswith("\n"), f"{text!r}")
    tile_w, tile_h = grid_side(COLS)[0], grid_side(ROWS)[1]
    for name in ("samples_epoch001.png", "samples_epoch002.png",
                 "reconstructions_epoch001.png", "reconstructions_epoch002.png"):
        path = os.path.join(out_a, name)
        try:
            size = png_size(path)
            why = f"{size[0]}x{size[1]}, expected {tile_w}x{tile_h}"
        except (OSError, ValueError, zlib.error) as e:
            size, why = None, str(e)
        check(f"{name}: PNG of {tile_w}x{tile_h} (8 tiles of {COLS}x{ROWS} a row, 2 px padding)",
              size == (tile_w, tile_h), why)
    expected = sorted(["metrics.csv", "samples_epoch001.png", "samples_epoch002.png",
                       "reconstructions_epoch001.png", "reconstructions_epoch002.png",
                       "curves.png"])
    check("good run: OUT holds exactly metrics.csv, the four grids and curves.png",
          files_under(out_a) == expected, f"{files_under(out_a)}")

    b = run(base + ["--out", out_b, "--seed", "7", "--quiet"])
    check("--quiet: exit 0, nothing on stdout or stderr", b.rc == EXIT_OK and not b.out
          and not b.err, b.describe())
    _, _, rows_b = read_metrics(out_b) if b.rc == EXIT_OK else ("", [], [])
    check("same --seed: identical metrics.csv but for seconds and images_per_second",
          rows and without_timing(rows) == without_timing(rows_b),
          f"{without_timing(rows)} vs {without_timing(rows_b)}")
    same_png = all(open(os.path.join(out_a, n), "rb").read()
                   == open(os.path.join(out_b, n), "rb").read()
                   for n in expected if n.endswith(".png") and os.path.exists(os.path.join(out_b, n)))
    check("same --seed: identical PNGs", b.rc == EXIT_OK and same_png, "images differ")

    c = run(base + ["--out", out_c, "--seed", "8", "--quiet"])
    _, _, rows_c = read_metrics(out_c) if c.rc == EXIT_OK else ("", [], [])
    check("different --seed: exit 0, different numbers",
          c.rc == EXIT_OK and rows_c and without_timing(rows) != without_timing(rows_c),
          c.describe() + f"; {without_timing(rows_c)}")


def run_suite(name, body):
    """The main of a test script: CLVAE must be an executable; body() runs with a fresh TMP,
    checked for stray temporary files and removed after; prints the summary line and returns the
    exit status."""
    global TMP
    if not os.access(CLVAE, os.X_OK):
        print(f"{name}: FAIL {CLVAE} is not an executable (set CLVAE)")
        print("0 passed, 1 failed")
        return 1
    TMP = tempfile.mkdtemp(prefix=f"clvae-{name}-")
    try:
        body()
        stray = stray_temporaries(TMP)
        check("no stray .tmp files after all runs", not stray, f"{stray}")
    finally:
        shutil.rmtree(TMP, ignore_errors=True)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


def main():
    global TMP
    if not os.access(CLVAE, os.X_OK):
        print(f"cli: FAIL {CLVAE} is not an executable (set CLVAE)")
        print("0 passed, 1 failed")
        return 1
    TMP = tempfile.mkdtemp(prefix="clvae-cli-")
    try:
        t0 = time.monotonic()
        test_usage()
        test_layer_limits()
        test_help()
        test_data()
        test_output()
        test_device(list_devices())
        test_diverges()
        test_good_runs()
        stray = stray_temporaries(TMP)
        check("no stray .tmp files anywhere after all runs", not stray, f"{stray}")
        check("nothing written to the default --out (out/ in the working directory)",
              not os.path.exists(os.path.join(TMP, "out")), f"{files_under(os.path.join(TMP, 'out'))}")
        print(f"cli: all checks took {time.monotonic() - t0:.1f} s")
    finally:
        shutil.rmtree(TMP, ignore_errors=True)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
