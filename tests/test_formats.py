#!/usr/bin/env python3
"""Image folders beyond PNG (include/data/image_decode.h): JPEG, WebP, BMP, GIF, TGA and PNM files
written by an independent encoder (PIL) and decoded by clvae's readers (tests/image_tool.c) equal
PIL's own decoding -- exactly for the lossless formats; for JPEG within 1 per sample, the accuracy
ITU-T T.83 asks of an IDCT (libjpeg-turbo's JDCT_ISLOW, which PIL also uses, gives 0 here); for
lossy WebP within 1 (the same libwebp, 0 here) -- composited over a background as clvae does.
Then --crop center against a reimplementation of torchvision's Resize + CenterCrop on odd aspect
ratios, headers claiming 100000x100000 pixels refused at once, truncated files named, format by
content, a mixed folder that trains, the 72-image folder at the default batch, the decoded-set
cache (hit, stale, damaged, other options, --no-cache) and --flip (resumed bit for bit).

Needs python3-pil and python3-numpy (Debian's, for /usr/bin/python3). Run as
`CLVAE=build/clvae IMAGE_TOOL=build/tests/image_tool /usr/bin/python3 tests/test_formats.py`.
"""
import io
import json
import os
import re
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_cli as cli  # noqa: E402

try:
    import numpy as np
    from PIL import Image
except ImportError as e:  # the test command installs both; say so rather than pass
    print(f"formats: FAIL needs python3-pil and python3-numpy: {e}")
    print("0 passed, 1 failed")
    sys.exit(1)

TOOL = os.path.abspath(os.environ.get("IMAGE_TOOL")
                       or os.path.join(cli.ROOT, "build-cli", "tests", "image_tool"))
BG = (10, 200, 40)
JPEG_TOLERANCE = 1  # per 8-bit sample: an IDCT conforming to ITU-T T.83 (IEEE 1180) accuracy


def tool(*args):
    p = subprocess.run([TOOL] + [str(a) for a in args], capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr


def decode(path, size=None, channels=3, crop="none", bg=BG):
    """clvae's pixels of path at size (default: its own) over bg: (rc, array (h, w, channels) or
    None, stderr)."""
    raw = os.path.join(cli.TMP, "decoded.raw")
    w, h = size if size is not None else Image.open(path).size
    rc, _, err = tool("decode", path, raw, f"{w}x{h}", channels, crop, ",".join(map(str, bg)))
    if rc != 0:
        return rc, None, err
    return rc, np.fromfile(raw, dtype=np.uint8).reshape(h, w, channels), err


def composite(rgba, bg=BG, channels=3):
    """RGBA (h, w, 4) over bg as clvae composites: (c a + bg (255 - a) + 127) // 255, then for one
    channel Rec. 601 luma (299 R + 587 G + 114 B + 500) // 1000."""
    a = rgba[..., 3:4].astype(np.int64)
    c = (rgba[..., :3].astype(np.int64) * a + np.array(bg, np.int64) * (255 - a) + 127) // 255
    if channels == 1:
        c = (299 * c[..., 0:1] + 587 * c[..., 1:2] + 114 * c[..., 2:3] + 500) // 1000
    return c.astype(np.uint8)


def pil_rgba(path):
    """PIL's decoding of path (the first frame), as RGBA."""
    with Image.open(path) as im:
        im.seek(0)
        return np.asarray(im.convert("RGBA"))


def pattern(w, h, alpha=False, seed=0):
    """A PIL image of gradients and edges (JPEG and WebP have something to lose), RGB or RGBA."""
    y, x = np.mgrid[0:h, 0:w]
    r = (x * 255 // max(w - 1, 1) + seed * 37) % 256
    g = (y * 255 // max(h - 1, 1) + seed * 11) % 256
    b = ((x // 4 + y // 4) % 2) * 200 + 20
    planes = [r, g, b] + ([((x * y + seed) * 7) % 256] if alpha else [])
    return Image.fromarray(np.stack(planes, -1).astype(np.uint8), "RGBA" if alpha else "RGB")


def save(im, rel, **kw):
    path = os.path.join(cli.TMP, "img", rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    im.save(path, **kw)
    return path


def write_bytes(rel, blob):
    path = os.path.join(cli.TMP, "img", rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(blob)
    return path


def max_diff(a, b):
    return int(np.abs(a.astype(np.int64) - b.astype(np.int64)).max()) if a.shape == b.shape else 999


# ---- Pixels against PIL ----------------------------------------------------------------------

def lossless_files():
    """(label, path) of every lossless format PIL writes."""
    rgb, rgba = pattern(13, 9), pattern(11, 7, alpha=True)
    pal = rgb.quantize(colors=23)
    gif_t = pal.copy()
    gif_t.info["transparency"] = 3
    frames = [pattern(10, 6, seed=s).quantize(colors=16) for s in range(3)]
    anim = io.BytesIO()
    frames[0].save(anim, "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    return [
        ("PNG RGBA", save(rgba, "ll/a.png")),
        ("BMP 24-bit", save(rgb, "ll/b.bmp")),
        ("BMP 8-bit palette", save(pal, "ll/c.bmp")),
        ("GIF palette", save(pal, "ll/d.gif")),
        ("GIF with a transparent index", save(gif_t, "ll/e.gif", transparency=3)),
        ("GIF animation: its first frame", write_bytes("ll/f.gif", anim.getvalue())),
        ("TGA RGB", save(rgb, "ll/g.tga")),
        ("TGA RGBA, RLE", save(rgba, "ll/h.tga", compression="tga_rle")),
        ("PPM (P6)", save(rgb, "ll/i.ppm")),
        ("PGM (P5)", save(rgb.convert("L"), "ll/j.pgm")),
        ("WebP lossless RGB", save(rgb, "ll/k.webp", lossless=True)),
        ("WebP lossless RGBA", save(rgba, "ll/l.webp", lossless=True)),
    ]


def test_lossless():
    for label, path in lossless_files():
        want = composite(pil_rgba(path))
        rc, got, err = decode(path)
        cli.check(f"{label}: clvae's pixels over {BG} equal PIL's exactly",
                  rc == 0 and max_diff(got, want) == 0,
                  err or f"max diff {max_diff(got, want) if got is not None else '-'}")
    path = os.path.join(cli.TMP, "img", "ll", "l.webp")
    rc, got, err = decode(path, channels=1)
    want = composite(pil_rgba(path), channels=1)
    cli.check("WebP lossless RGBA to one channel: Rec. 601 luma of the composite, exactly",
              rc == 0 and max_diff(got, want) == 0, err)


def test_lossy():
    rgb, rgba = pattern(37, 21), pattern(19, 17, alpha=True)
    cmyk = Image.fromarray(np.asarray(rgb.convert("CMYK")) // 2 + 30, "CMYK")
    cases = [
        ("JPEG baseline 4:2:0", save(rgb, "lossy/a.jpg", quality=90), JPEG_TOLERANCE),
        ("JPEG baseline 4:4:4", save(rgb, "lossy/b.jpg", quality=75, subsampling=0),
         JPEG_TOLERANCE),
        ("JPEG progressive", save(rgb, "lossy/c.jpg", quality=85, progressive=True),
         JPEG_TOLERANCE),
        ("JPEG grey", save(rgb.convert("L"), "lossy/d.jpg", quality=90), JPEG_TOLERANCE),
        ("JPEG CMYK (Adobe, inverted)", save(cmyk, "lossy/e.jpg", quality=90), JPEG_TOLERANCE),
        ("WebP lossy", save(rgb, "lossy/f.webp", quality=80), 1),
        ("WebP lossy with alpha", save(rgba, "lossy/g.webp", quality=80), 1),
    ]
    for label, path, tol in cases:
        want = composite(pil_rgba(path))
        rc, got, err = decode(path)
        d = max_diff(got, want) if got is not None else None
        cli.check(f"{label}: within {tol} of PIL's decoding per sample (max diff {d})",
                  rc == 0 and d is not None and d <= tol, err or f"max diff {d}")
    headers = [("lossy/a.jpg", "JPEG 37 21 1 0"), ("lossy/d.jpg", "JPEG 37 21 0 0"),
               ("lossy/e.jpg", "JPEG 37 21 1 0"), ("lossy/g.webp", "WebP 19 17 1 1"),
               ("ll/j.pgm", "PNM 13 9 0 0"), ("ll/i.ppm", "PNM 13 9 1 0"),
               ("ll/h.tga", "TGA 11 7 1 1"), ("ll/b.bmp", "BMP 13 9 1 0")]
    for rel, want in headers:
        rc, out, err = tool("header", os.path.join(cli.TMP, "img", rel))
        cli.check(f"header of {rel}: {want} (format, size, colour, transparency)",
                  rc == 0 and out.strip() == want, f"{rc} {out!r} {err!r}")


# ---- Format by content, bad files -------------------------------------------------------------

def test_content_and_bad_files():
    rgb = pattern(12, 10)
    jpeg = io.BytesIO()
    rgb.save(jpeg, "JPEG", quality=90)
    png = io.BytesIO()
    rgb.save(png, "PNG")
    for rel, blob, fmt in (("named/jpeg.png", jpeg.getvalue(), "JPEG"),
                           ("named/png.jpg", png.getvalue(), "PNG")):
        path = write_bytes(rel, blob)
        rc, got, err = decode(path)
        rc2, out, _ = tool("header", path)
        cli.check(f"{rel}: read as {fmt} by its bytes, whatever its name",
                  rc == 0 and out.startswith(fmt + " "), err)

    j = jpeg.getvalue()
    webp = open(save(rgb, "bad/src.webp", lossless=True), "rb").read()
    bmp = open(save(rgb, "bad/src.bmp"), "rb").read()
    truncated = [("a JPEG cut in its scan", "bad/cut.jpg", j[:len(j) * 2 // 3], "truncated JPEG"),
                 ("a JPEG without its EOI", "bad/noeoi.jpg", j[:-2], "truncated JPEG"),
                 ("a WebP cut in half", "bad/cut.webp", webp[:len(webp) // 2], "truncated WebP"),
                 ("a BMP cut in its pixels", "bad/cut.bmp", bmp[:len(bmp) - 40], "truncated BMP"),
                 ("a JPEG of garbage after its header", "bad/garbage.jpg",
                  j[:200] + bytes(range(256)) * 4, "JPEG")]
    for label, rel, blob, words in truncated:
        path = write_bytes(rel, blob)
        rc, _, err = decode(path, size=(8, 8))
        cli.check(f"{label}: exit 3, one line naming the file and '{words}'",
                  rc == cli.EXIT_DATA and path in err and words in err and err.count("\n") == 1,
                  f"{rc} {err!r}")
    rc, _, err = decode(size=(8, 8), path=write_bytes("bad/gif.png", b"GIF89a this is not a PNG at all"))
    cli.check("a .png holding a broken GIF: 'not a PNG file (its content is a GIF: ...)'",
              rc == cli.EXIT_DATA and "not a PNG file (its content is a GIF" in err, err)
    rc, _, err = decode(size=(8, 8), path=write_bytes("bad/text.jpg", b"hello, I am not an image at all"))
    cli.check("a .jpg of text: 'not a JPEG file (no JPEG signature)'",
              rc == cli.EXIT_DATA and "not a JPEG file (no JPEG signature)" in err, err)
    rc, _, err = decode(size=(8, 8), path=write_bytes("bad/p3.ppm", b"P3\n2 2\n255\n" + b"0 " * 12))
    cli.check("an ASCII PPM (P3): refused, saying only P5 and P6 are read",
              rc == cli.EXIT_DATA and "only P5 and P6" in err, err)


def huge_headers():
    """Headers claiming more than IMAGE_MAX_PIXELS, each followed by a few bytes."""
    j = io.BytesIO()
    pattern(8, 8).save(j, "JPEG")
    jpeg = bytearray(j.getvalue())
    sof = jpeg.index(b"\xff\xc0")
    jpeg[sof + 5:sof + 9] = struct.pack(">HH", 60000, 60000)  # libjpeg's own limit is 65500
    # VP8X: flags and reserved bytes, then the canvas's width - 1 and height - 1 in 3 bytes each
    # (libwebp refuses a canvas of 2^32 pixels or more itself).
    vp8x = b"VP8X" + struct.pack("<I", 10) + bytes(4) + (49999).to_bytes(3, "little") * 2
    webp = b"RIFF" + struct.pack("<I", 4 + len(vp8x) + 8) + b"WEBP" + vp8x + b"VP8L" + bytes(4)
    bmp = b"BM" + struct.pack("<IHHI", 54 + 30, 0, 0, 54) + struct.pack(
        "<IiiHHIIiiII", 40, 100000, 100000, 1, 24, 0, 0, 0, 0, 0, 0) + bytes(30)
    gif = b"GIF89a" + struct.pack("<HH", 65535, 65535) + b"\x00\x00\x00" + bytes(20)
    tga = struct.pack("<BBBHHBHHHHBB", 0, 0, 2, 0, 0, 0, 0, 0, 65535, 65535, 24, 0) + bytes(30)
    return [("JPEG", "huge/a.jpg", bytes(jpeg), "60000x60000"),
            ("WebP", "huge/b.webp", webp, "50000x50000"),
            ("BMP", "huge/c.bmp", bmp, "100000x100000"),
            ("GIF", "huge/d.gif", gif, "65535x65535"),
            ("PNM", "huge/e.ppm", b"P6\n100000 100000\n255\n" + bytes(30), "100000x100000"),
            ("TGA", "huge/f.tga", tga, "65535x65535")]


def test_huge_headers():
    for fmt, rel, blob, size in huge_headers():
        path = write_bytes(rel, blob)
        t0 = time.monotonic()
        rc, _, err = decode(path, size=(8, 8))
        took = time.monotonic() - t0
        cli.check(f"a {fmt} header of {size}: refused as over the pixel limit in {took:.2f} s",
                  rc == cli.EXIT_DATA and f"{size} is over the limit" in err and path in err
                  and took < 5, f"{rc} {err!r}")


# ---- --crop center ----------------------------------------------------------------------------

def torchvision_box(w, h, W, H):
    """torchvision's Resize + CenterCrop to W x H, reimplemented: the scale that covers W x H
    (Resize(S) resizes the short side to S and the long one to int(S * long / short)), then the
    window at int(round((size - crop) / 2.0)) with Python's round (halves to even)."""
    if W * h >= H * w:
        rw, rh = W, int(W * h / w)
    else:
        rw, rh = int(H * w / h), H
    return rw, rh, int(round((rw - W) / 2.0)), int(round((rh - H) / 2.0))


def test_crop():
    sizes = [(8, 13), (13, 8), (8, 11), (11, 8), (8, 9), (9, 8), (8, 8), (17, 40), (40, 17),
             (100, 3), (3, 100), (1000, 999), (7, 5), (5, 7), (641, 480), (480, 641), (33, 64)]
    targets = [(8, 8), (5, 5), (16, 9), (9, 16), (64, 64), (7, 3)]
    bad = []
    for (w, h) in sizes:
        for (W, H) in targets:
            rc, out, _ = tool("geometry", w, h, f"{W}x{H}")
            got = tuple(int(v) for v in out.split()) if rc == 0 else None
            if got != torchvision_box(w, h, W, H):
                bad.append(f"{w}x{h}->{W}x{H}: {got} vs {torchvision_box(w, h, W, H)}")
    cli.check(f"crop geometry: {len(sizes) * len(targets)} sizes as torchvision's Resize + "
              "CenterCrop (odd margins rounded half to even)", not bad, "; ".join(bad[:5]))

    # The short side already the target's: a copy of the window, exactly where torchvision's is.
    for (w, h) in [(8, 13), (8, 11), (13, 8), (11, 8), (8, 9), (9, 8), (10, 8)]:
        im = pattern(w, h, seed=w + h)
        path = save(im, f"crop/{w}x{h}.png")
        rw, rh, left, top = torchvision_box(w, h, 8, 8)
        want = composite(np.asarray(im.convert("RGBA")))[top:top + 8, left:left + 8]
        rc, got, err = decode(path, size=(8, 8), crop="center")
        cli.check(f"--crop center {w}x{h} -> 8x8: the window at left {left}, top {top}, exactly",
                  rc == 0 and max_diff(got, want) == 0, err or f"max diff {max_diff(got, want)}")
    # Scaled: the window of the image resized to torchvision's size (by clvae's own filter).
    for (w, h, W, H) in [(16, 27, 8, 8), (27, 16, 8, 8), (50, 31, 12, 12), (31, 50, 10, 6)]:
        im = pattern(w, h, seed=3)
        path = save(im, f"crop/s{w}x{h}.png")
        rw, rh, left, top = torchvision_box(w, h, W, H)
        rc1, full, _ = decode(path, size=(rw, rh))
        rc2, got, err = decode(path, size=(W, H), crop="center")
        want = full[top:top + H, left:left + W] if rc1 == 0 else None
        d = max_diff(got, want) if rc2 == 0 and want is not None else None
        cli.check(f"--crop center {w}x{h} -> {W}x{H}: resized to {rw}x{rh}, window at "
                  f"({left}, {top}): within 1 of resizing then cropping (max diff {d})",
                  d is not None and d <= 1, err)


# ---- Through clvae train -------------------------------------------------------------------------

def mixed_folder(name, per_class=12):
    """Three class folders, each image in another format in turn: JPEG, WebP, PNG, BMP, GIF."""
    d = os.path.join(cli.TMP, "data", name)
    kinds = [("jpg", {"quality": 90}), ("webp", {"lossless": True}), ("png", {}), ("bmp", {}),
             ("gif", {})]
    for c, cls in enumerate(["a_one", "b_two", "c_three"]):
        for i in range(per_class):
            ext, kw = kinds[i % len(kinds)]
            im = pattern(8, 8, seed=c * 50 + i)
            if ext == "gif":
                im = im.quantize(colors=32)
            path = os.path.join(d, cls, f"{i:03d}.{ext}")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            im.save(path, **kw)
    return d


def cache_env():
    return {"XDG_CACHE_HOME": os.path.join(cli.TMP, "cache")}


def cache_files():
    d = os.path.join(cli.TMP, "cache", "clvae")
    return sorted(f for f in os.listdir(d) if f.startswith("images-")) if os.path.isdir(d) else []


def test_train_folders():
    d = mixed_folder("mixed")
    base = ["train", "--data", d, "--epochs", "2", "--batch", "8", "--hidden", "16", "--latent",
            "3"]
    out = cli.fresh_out()
    r = cli.run(base + ["--out", out], env=cache_env())
    m = re.search(r"(\d+) training and (\d+) test images", r.out)
    cli.check("a folder of JPEG, WebP, PNG, BMP and GIF files trains: 33 + 3 images, 3 classes",
              r.rc == 0 and m and (m.group(1), m.group(2)) == ("33", "3") and "3 classes" in r.out
              and "from the cache" not in r.out, r.describe())
    _, _, rows = cli.read_metrics(out) if r.rc == 0 else ("", [], [])

    # The cache: the second run takes the decoded sets from it and trains to the same numbers.
    r2 = cli.run(base + ["--out", cli.fresh_out()], env=cache_env())
    out2 = r2.args[r2.args.index("--out") + 1]
    _, _, rows2 = cli.read_metrics(out2) if r2.rc == 0 else ("", [], [])
    files = cache_files()
    cli.check("cache: the second run says it read the decoded images from the cache, one file",
              r2.rc == 0 and "decoded images from the cache" in r2.out and len(files) == 1,
              r2.describe() + f" {files}")
    cli.check("cache: the same metrics from the cache as from decoding",
              rows and cli.without_timing(rows) == cli.without_timing(rows2), f"{rows2}")
    cache = os.path.join(cli.TMP, "cache", "clvae", files[0]) if files else ""

    def run_and_see(label, extra=(), want_hit=False):
        o = cli.fresh_out()
        rr = cli.run(base + list(extra) + ["--out", o], env=cache_env())
        _, _, rws = cli.read_metrics(o) if rr.rc == 0 else ("", [], [])
        hit = "decoded images from the cache" in rr.out
        same = cli.without_timing(rws) == cli.without_timing(rows)
        cli.check(label, rr.rc == 0 and hit == want_hit and (same or extra),
                  rr.describe() + f" hit {hit} same {same}")
        return rr

    # Stale: a file touched (its modification time) is a new key: decoded again, then a hit.
    one = os.path.join(d, "b_two", "002.png")
    st = os.stat(one)
    os.utime(one, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    run_and_see("cache: a file touched: not used (stale), decoded again, same numbers")
    run_and_see("cache: ... and written again: the next run uses it", want_hit=True)
    # Damaged: one byte of the pixels flipped: the checksum refuses it.
    with open(cache, "r+b") as f:
        f.seek(-10, os.SEEK_END)
        b = f.read(1)
        f.seek(-10, os.SEEK_END)
        f.write(bytes([b[0] ^ 0x40]))
    run_and_see("cache: a byte flipped in it: not used (damaged), decoded again, same numbers")
    run_and_see("cache: ... and rewritten whole: the next run uses it", want_hit=True)
    # Cut short, and other options: not used.
    size = os.path.getsize(cache)
    with open(cache, "r+b") as f:
        f.truncate(size - 100)
    run_and_see("cache: cut short: not used, decoded again")
    run_and_see("cache: another --background: another cache, decoded",
                ["--background", "0"])
    cli.check("cache: one file for each set of options", len(cache_files()) == 2,
              f"{cache_files()}")
    before = os.stat(cache).st_mtime_ns
    rr = run_and_see("--no-cache: decoded, the cache not read", ["--no-cache"])
    cli.check("--no-cache: the cache not written either", os.stat(cache).st_mtime_ns == before,
              rr.describe())

    # A cache that cannot be written (a folder stands at its name): one warning, training goes on.
    os.rename(cache, cache + ".kept")
    os.mkdir(cache)
    r3 = cli.run(base + ["--out", cli.fresh_out()], env=cache_env())
    os.rmdir(cache)
    os.rename(cache + ".kept", cache)
    cli.check("a cache that cannot be written: one warning line naming it, training goes on",
              r3.rc == 0 and r3.err.count("\n") == 1 and cache in r3.err
              and "not cached" in r3.err, r3.describe())


def test_small_folder():
    d = os.path.join(cli.TMP, "data", "seventy_two")
    os.makedirs(d)
    for i in range(72):
        pattern(8, 8, seed=i).save(os.path.join(d, f"{i:02d}.jpg"), quality=95)
    out = cli.fresh_out()
    r = cli.run(["train", "--data", d, "--epochs", "2", "--out", out], env=cache_env())
    cli.check("72 JPEG files with the default options (batch 256): trains, one warning line",
              r.rc == 0 and r.err.count("\n") == 1
              and "--batch 256 is larger than the training set (65 images)" in r.err
              and len(re.findall(r"^epoch", r.out, re.M)) == 2, r.describe())
    save = os.path.join(cli.TMP, "seventy.safetensors")
    a = cli.run(["train", "--data", d, "--epochs", "1", "--batch", "256", "--out",
                 cli.fresh_out(), "--save", save, "--quiet"], env=cache_env())
    b_save = os.path.join(cli.TMP, "seventy65.safetensors")
    b = cli.run(["train", "--data", d, "--epochs", "1", "--batch", "65", "--out",
                 cli.fresh_out(), "--save", b_save, "--quiet"], env=cache_env())
    meta = safetensors_meta(save) if a.rc == 0 else {}
    same_params = a.rc == 0 and b.rc == 0 and tensors(save) == tensors(b_save)
    cli.check("--batch 256 on 65 training images: the parameters of --batch 65, the checkpoint "
              "keeps 256", same_params and meta.get("batch") == "256", f"{meta.get('batch')}")
    r = cli.run(["train", "--data", d, "--epochs", "2", "--out", cli.fresh_out(), "--resume",
                 save, "--quiet"], env=cache_env())
    cli.check("... and resumes with its --batch 256", r.rc == 0, r.describe())


def safetensors_meta(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(n))["__metadata__"]


def tensors(path):
    """The tensors' bytes (the data after the header)."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        f.seek(8 + n)
        return f.read()


def test_flip_and_crop():
    d = os.path.join(cli.TMP, "data", "shapes")
    for c, cls in enumerate(["wide", "tall"]):
        for i in range(20):
            w, h = (13, 8) if c == 0 else (8, 11)
            path = os.path.join(d, cls, f"{i:02d}.webp")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            pattern(w, h, seed=i + 7 * c).save(path, lossless=True)
    base = ["train", "--data", d, "--batch", "8", "--hidden", "16", "--latent", "3",
            "--image-size", "8x8", "--crop", "center"]
    full = os.path.join(cli.TMP, "flip_full.safetensors")
    half = os.path.join(cli.TMP, "flip_half.safetensors")
    resumed = os.path.join(cli.TMP, "flip_resumed.safetensors")
    a = cli.run(base + ["--flip", "--epochs", "3", "--out", cli.fresh_out(), "--save", full],
                env=cache_env())
    cli.check("--flip --crop center: trains; the banner says centre-cropped and flipped",
              a.rc == 0 and "centre-cropped, flipped at random" in a.out, a.describe())
    meta = safetensors_meta(full) if a.rc == 0 else {}
    cli.check("the checkpoint keeps crop center and flip",
              meta.get("crop") == "center" and meta.get("flip") == "1", f"{meta}")
    b = cli.run(base + ["--flip", "--epochs", "1", "--out", cli.fresh_out(), "--save", half,
                        "--quiet"], env=cache_env())
    c = cli.run(["train", "--data", d, "--epochs", "3", "--out", cli.fresh_out(), "--resume",
                 half, "--save", resumed, "--quiet"], env=cache_env()) if b.rc == 0 else b
    same = c.rc == 0 and open(full, "rb").read() == open(resumed, "rb").read()
    cli.check("--flip: 1 epoch and a resumed 2 more give the 3-epoch checkpoint byte for byte",
              same, c.describe())
    plain = os.path.join(cli.TMP, "flip_none.safetensors")
    p = cli.run(base + ["--epochs", "3", "--out", cli.fresh_out(), "--save", plain, "--quiet"],
                env=cache_env())
    cli.check("--flip changes training (the same run without it ends elsewhere)",
              p.rc == 0 and tensors(plain) != tensors(full), p.describe())
    meta = safetensors_meta(plain) if p.rc == 0 else {}
    cli.check("without --flip the checkpoint has no flip key", p.rc == 0 and "flip" not in meta,
              f"{meta}")
    cli.expect_error("--resume of a flipped run with --crop none: the option given is blamed",
                     ["train", "--data", d, "--epochs", "3", "--out", cli.fresh_out(),
                      "--resume", half, "--crop", "none"], cli.EXIT_USAGE,
                     ["--crop none", half, "center"], env=cache_env())
    e = cli.run(["eval", "--model", full, "--data", d, "-k", "2"])
    cli.check("eval reads the folder as training did (crop center from the checkpoint)",
              e.rc == 0 and "test images of 8x8" in e.out, e.describe())
    idx = cli.data_dir("idx_flip", cli.TRAIN_GZ, cli.TEST_IMAGES)
    for opt in (["--flip"], ["--crop", "center"]):
        out = cli.fresh_out()
        cli.expect_error(f"{opt[0]} on IDX files: refused, not ignored",
                         ["train", "--data", idx, "--epochs", "1", "--out", out] + opt,
                         cli.EXIT_USAGE, [opt[0], idx], out=out, out_may_exist=False)
    out = cli.fresh_out()
    cli.expect_error("--crop center without --image-size: refused",
                     ["train", "--data", d, "--epochs", "1", "--out", out, "--crop", "center"],
                     cli.EXIT_USAGE, ["--crop center", "--image-size"], out=out,
                     out_may_exist=False, env=cache_env())
    out = cli.fresh_out()
    cli.expect_error("--crop sides: refused naming it",
                     ["train", "--data", d, "--epochs", "1", "--out", out, "--crop", "sides"],
                     cli.EXIT_USAGE, ["--crop", "sides"], out=out, out_may_exist=False)


def test_skip_bad():
    d = mixed_folder("skipping", per_class=10)
    bad = os.path.join(d, "a_one", "000.jpg")
    with open(bad, "r+b") as f:
        f.truncate(os.path.getsize(bad) // 2)
    out = cli.fresh_out()
    cli.expect_error("a truncated JPEG in a folder: exit 3 naming it",
                     ["train", "--data", d, "--epochs", "1", "--out", out], cli.EXIT_DATA,
                     [bad, "truncated JPEG"], out=out, out_may_exist=False, env=cache_env())
    for attempt in ("decoded", "from the cache"):
        r = cli.run(["train", "--data", d, "--epochs", "1", "--batch", "8", "--hidden", "8",
                     "--out", cli.fresh_out(), "--skip-bad-images"], env=cache_env())
        cli.check(f"--skip-bad-images ({attempt}): skipped with one warning naming it, counted",
                  r.rc == 0 and r.err.count("\n") == 1 and bad in r.err and "skipped" in r.err
                  and "1 bad files skipped" in r.out
                  and ("from the cache" in r.out) == (attempt == "from the cache"), r.describe())


def body():
    test_lossless()
    test_lossy()
    test_content_and_bad_files()
    test_huge_headers()
    test_crop()
    test_train_folders()
    test_small_folder()
    test_flip_and_crop()
    test_skip_bad()


if __name__ == "__main__":
    if not os.access(TOOL, os.X_OK):
        print(f"formats: FAIL {TOOL} is not an executable (set IMAGE_TOOL)")
        print("0 passed, 1 failed")
        sys.exit(1)
    sys.exit(cli.run_suite("formats", body))
