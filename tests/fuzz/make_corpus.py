#!/usr/bin/env python3
"""Writes the seed corpora of tests/fuzz: corpus/idx for fuzz_idx, corpus/checkpoint for
fuzz_checkpoint, corpus/png for fuzz_png, corpus/jpeg, corpus/webp and corpus/stb (BMP, GIF, PNM,
TGA) for the other image readers' harnesses, corpus/cache for fuzz_cache; small real files and
broken ones, each named for what it holds.

    tests/fuzz/make_corpus.py [MAKE_CHECKPOINT [CORPUS...]]

MAKE_CHECKPOINT is the make_checkpoint program of a -Dfuzzers=true build (default
build-fuzz/tests/fuzz/make_checkpoint): the valid checkpoints are checkpoint_save's own output,
the broken ones edits of them. The JPEG, WebP, BMP, GIF, TGA and PNM files are PIL's (python3-pil:
run it with /usr/bin/python3). CORPUS names the corpora to write (default: all). The output is
the same on every run (with the same PIL); the directories are emptied first.
"""
import json
import math
import os
import struct
import subprocess
import sys
import tempfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
GZIP_MODE = 0x80  # fuzz_idx: a first byte from 0x80 gzip-compresses the rest


def idx3(count, rows, cols, pixels=None, magic=0x00000803):
    """An IDX3 unsigned-byte file; made-up pixels unless given."""
    if pixels is None:
        pixels = bytes((k * 37 + 11) % 256 for k in range(count * rows * cols))
    return struct.pack(">IIII", magic, count, rows, cols) + pixels


def gzip(data):
    """One gzip member as zlib writes it (mtime 0): the same bytes on every run."""
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    return z.compress(data) + z.flush()


def idx_corpus():
    small = idx3(3, 4, 5)
    gz = gzip(small)
    crc_off = len(gz) - 8
    bad_crc = gz[:crc_off] + bytes([gz[crc_off] ^ 0xFF]) + gz[crc_off + 1:]
    # The deflate data starts after the 10-byte gzip header: block type 3 is reserved.
    corrupt = gz[:10] + bytes([gz[10] | 0x06]) + gz[11:]
    short = gzip(small[:-20])
    forged_isize = short[:-4] + struct.pack("<I", len(small))
    return {
        # Valid.
        "raw-3x4x5": small,
        "gz-3x4x5": gz,
        "gzmode-3x4x5": bytes([GZIP_MODE | 9]) + small,
        "gz-2x28x28": gzip(idx3(2, 28, 28, bytes((r * 9 + c * 5) % 256
                                                 for _ in range(2) for r in range(28)
                                                 for c in range(28)))),
        "gz-two-members-3x4x5": gzip(small[:40]) + gzip(small[40:]),
        # Broken raw files.
        "raw-labels-magic": struct.pack(">II", 0x00000801, 3) + bytes([1, 2, 3]),
        "gz-labels-10": gzip(struct.pack(">II", 0x00000801, 10) + bytes(range(10))),
        "raw-truncated-pixels": small[:-7],
        "raw-trailing-bytes": small + b"\x00\x01\x02",
        "raw-over-limit": idx3(65536, 65536, 2, b""),
        # Broken gzip files.
        "gz-truncated": gz[:len(gz) // 2],
        "gz-bad-crc": bad_crc,
        "gz-corrupt-deflate": corrupt,
        "gz-trailing-garbage": gz + b"garbage",
        "gz-lying-header": gzip(idx3(100, 28, 28, bytes(3 * 28 * 28))),
        # A trailer (ISIZE) that agrees with the header over a stream 20 bytes short.
        "gz-forged-isize": forged_isize,
    }


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Adam7's passes: (first column, first row, column step, row step).
ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2),
         (0, 1, 1, 2)]
PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # by colour type; a palette image holds indices


def chunk(kind, data):
    """One PNG chunk: length, type, data, CRC over type and data."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def scanlines(rows, depth):
    """Rows of samples -> filter type 0 scanlines, packed at depth (16: big-endian)."""
    out = b""
    for row in rows:
        if depth == 16:
            packed = b"".join(struct.pack(">H", v) for v in row)
        elif depth == 8:
            packed = bytes(row)
        else:
            bits = "".join(format(v, "0%db" % depth) for v in row)
            bits += "0" * (-len(bits) % 8)
            packed = bytes(int(bits[i:i + 8], 2) for i in range(0, len(bits), 8))
        out += b"\x00" + packed
    return out


def png(width, height, colour_type, depth, extra=b"", interlace=False, excess=0):
    """A PNG of made-up samples; extra chunks (PLTE, tRNS) go before IDAT; excess zero bytes of
    image data follow the rows the header implies."""
    ch = PNG_CHANNELS[colour_type]
    top = 16 if colour_type == 3 else 1 << depth  # a palette of 16 entries at most

    def pixel(x, y):
        return [(x * 7 + y * 13 + c * 5 + x * y) % top for c in range(ch)]

    if interlace:
        raw = b""
        for x0, y0, dx, dy in ADAM7:
            xs, ys = range(x0, width, dx), range(y0, height, dy)
            if len(xs) and len(ys):
                raw += scanlines([sum((pixel(x, y) for x in xs), []) for y in ys], depth)
    else:
        raw = scanlines([sum((pixel(x, y) for x in range(width)), []) for y in range(height)],
                        depth)
    raw += bytes(excess)
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, int(interlace))
    return (PNG_SIGNATURE + chunk(b"IHDR", ihdr) + extra + chunk(b"IDAT", zlib.compress(raw, 9))
            + chunk(b"IEND", b""))


def png_corpus():
    palette = chunk(b"PLTE", bytes((i * 16, 255 - i * 16, i * 5 % 256)[c]
                                   for i in range(16) for c in range(3)))
    grey_palette = chunk(b"PLTE", bytes(i * 17 for i in range(16) for _ in range(3)))
    palette_trns = palette + chunk(b"tRNS", bytes([0, 64, 128, 200]))
    rgba = png(6, 5, 6, 8)
    rgb16 = png(5, 4, 2, 16)
    idat = rgba.index(b"IDAT")
    after_ihdr = 8 + 25  # the signature and IHDR's chunk

    def header(width, height, depth, colour_type):
        """A signature and an IHDR, its CRC right whatever the values."""
        return PNG_SIGNATURE + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth,
                                                         colour_type, 0, 0, 0))

    return {
        # Valid, every colour type and the bit depths that matter.
        "grey-1bit": png(9, 3, 0, 1),
        "grey-4bit-trns": png(5, 4, 0, 4, chunk(b"tRNS", struct.pack(">H", 3))),
        "grey-16bit": png(3, 3, 0, 16),
        "greyalpha-8bit": png(4, 4, 4, 8),
        "greyalpha-16bit-interlaced": png(9, 9, 4, 16, interlace=True),
        "palette-8bit-trns": png(5, 5, 3, 8, palette_trns),
        "palette-4bit-grey": png(7, 2, 3, 4, grey_palette),
        "rgb-8bit-trns": png(4, 3, 2, 8, chunk(b"tRNS", struct.pack(">HHH", 7, 13, 5))),
        "rgb-16bit": rgb16,
        "rgba-8bit": rgba,
        "rgba-8bit-interlaced": png(10, 7, 6, 8, interlace=True),
        "rgb-8bit-100x3-resized": png(100, 3, 2, 8),
        # Broken.
        "truncated-idat": rgba[:idat + 20],
        "truncated-header": rgba[:30],
        "no-iend": rgba[:-12],
        "bad-signature": b"\x89PNX" + rgba[4:],
        "bad-ihdr-crc": rgba[:29] + bytes([rgba[29] ^ 0xFF]) + rgba[30:],
        "bad-bit-depth": header(5, 4, 3, 2) + rgb16[after_ihdr:],
        "zero-width": header(0, 4, 8, 0) + rgb16[after_ihdr:],
        "over-pixel-limit": header(10000, 10000, 8, 0) + rgb16[after_ihdr:],
        "palette-missing": png(4, 4, 3, 8),
        # A tEXt chunk claiming 1.7 GB: libpng allocated all of it before the reader skipped text.
        "text-claims-1.7gb": header(44, 1, 1, 0) + struct.pack(">I", 0x697118DB) + b"tEXt"
        + rgba[idat - 4:idat + 30],
        "idat-short": header(64, 64, 8, 2) + chunk(b"IDAT", zlib.compress(b"\x00" * 50))
        + chunk(b"IEND", b""),
        # Image data past the rows: 6 MiB of zeros after an 8x8 image (libpng's sequential reader
        # inflated all of it before it looked), and a single byte.
        "idat-excess-6mib": png(8, 8, 0, 8, excess=6 << 20),
        "idat-excess-6mib-interlaced": png(8, 8, 6, 8, interlace=True, excess=6 << 20),
        "idat-excess-one-byte": png(8, 8, 2, 8, excess=1),
    }


def split(blob):
    """A safetensors file -> (header dict, data bytes)."""
    (n,) = struct.unpack("<Q", blob[:8])
    return json.loads(blob[8:8 + n]), blob[8 + n:]


def join(header, data, extra=""):
    """(header, data) -> a safetensors file, the JSON padded with spaces to a multiple of 8."""
    text = (json.dumps(header, separators=(",", ":")) + extra).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def edit(blob, change):
    """blob with change(header, data) applied to its header; new data if change returns bytes."""
    header, data = split(blob)
    new_data = change(header, data)
    return join(header, new_data if isinstance(new_data, bytes) else data)


def crafted(base, meta, tensors):
    """A checkpoint of base's metadata updated with meta and the tensors [(name, shape)], each
    data_offsets 4 x the shape's product modulo 2^64, as a writer in 64 bits would put it (a
    weight of 2^63 elements takes 0 bytes), and no data: the whole of these takes a megabyte
    (tests/test_checkpoint.c writes them so)."""
    header = {"__metadata__": dict(split(base)[0]["__metadata__"], **meta)}
    offset = 0
    for name, shape in tensors:
        size = 4 * math.prod(shape) % 2**64
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    return join(header, b"")


def checkpoint_corpus(make_checkpoint):
    valid = {}
    with tempfile.TemporaryDirectory() as tmp:
        # Format version 3 as checkpoint_save writes it: dense, a conv model (the decoder its
        # mirror: dense, reshape, deconv) with Adam's moments, two convs on colour images.
        for name, layers, optimizer, image in [("none-h5", "5", "none", "3x2x1"),
                                               ("adam-h5", "5", "adam", "3x2x1"),
                                               ("none-h5-3", "5,3", "none", "3x2x1"),
                                               ("adam-conv", "conv:2:2:2:0", "adam", "4x4x1"),
                                               ("none-conv-rgb", "conv:2:2:2:0,conv:4:2:1:0",
                                                "none", "4x4x3")]:
            path = os.path.join(tmp, name)
            subprocess.run([make_checkpoint, path, layers, optimizer, image], check=True)
            with open(path, "rb") as f:
                valid[name] = f.read()
    none, adam, conv = valid["none-h5"], valid["adam-h5"], valid["adam-conv"]
    n = struct.unpack("<Q", none[:8])[0]

    def md(key, value):
        return lambda h, d: h["__metadata__"].__setitem__(key, value)

    def version(number, hidden=None):
        """Format version 2 (no channels, likelihood or folder keys) or 1 (also the architecture
        as "hidden" widths, the decoder mirroring them)."""
        def change(h, d):
            for key in ("channels", "likelihood", "background", "test_split"):
                h["__metadata__"].pop(key)
            h["__metadata__"]["format_version"] = str(number)
            if number == 1:
                h["__metadata__"]["hidden"] = hidden
                h["__metadata__"].pop("encoder")
                h["__metadata__"].pop("decoder")
        return change

    for name in ("none-h5", "adam-h5", "none-h5-3"):
        hidden = "5,3" if name.endswith("-3") else "5"
        valid[name + "-v1"] = edit(valid[name], version(1, hidden))
    valid["none-h5-v2"] = edit(none, version(2))
    valid["adam-conv-v2"] = edit(conv, version(2))

    def tensor(name, key, value):
        return lambda h, d: h[name].__setitem__(key, value)

    def overlap(h, d):
        h["logvar.bias"]["data_offsets"] = h["mean.bias"]["data_offsets"]

    def extra(h, d):
        h["optimizer.m.output.bias"] = dict(h["output.bias"])
        end = len(d)
        h["optimizer.m.output.bias"]["data_offsets"] = [end, end + 24]
        return d + bytes(24)

    def too_many(h, d):
        h["__metadata__"].update(encoder="dense:65536", decoder="dense:65536", latent="4096",
                                 image_rows="16777216", in_dim="16777216", image_cols="1")

    def huge_deconv(h, d):
        """What the fuzzer found: a deconv on a 16777216x1 image whose output (5536 channels of
        a grid of 2^25) overflowed the int of an image's value count."""
        h["__metadata__"].update(encoder="deconv:5536", decoder="dense:65536", latent="4096",
                                 image_rows="16777216", in_dim="16777216", image_cols="1")

    def gap(h, d):
        begin, end = h["output.bias"]["data_offsets"]
        h["output.bias"]["data_offsets"] = [begin + 4, end + 4]
        return d[:begin] + bytes(4) + d[begin:]

    def zero_byte_shape(name, shape):
        """name's shape replaced by one of 2^64 elements or more, at 0 bytes (4 x its product
        modulo 2^64) where its own bytes were, the bytes after it moved down."""
        def change(h, d):
            begin, end = h[name]["data_offsets"]
            h[name].update(shape=shape, data_offsets=[begin, begin])
            for entry in h.values():
                if "data_offsets" in entry and entry["data_offsets"][0] >= end:
                    entry["data_offsets"] = [o - (end - begin) for o in entry["data_offsets"]]
            return d[:begin] + d[end:]
        return change

    # The architectures of issue 19: weights whose element counts pass 2^64 (the data sections
    # left out), and a conv whose padding takes a deconv's output past an int.
    two_2p63 = crafted(none, {
        "encoder": "conv:32768:1:1:0,conv:65536:65536:1:32768,conv:32768:65536:1:32767",
        "decoder": "dense:4", "image_rows": "1", "image_cols": "1", "in_dim": "1"}, [
        ("encoder.0.weight", [32768, 1, 1, 1]), ("encoder.0.bias", [32768]),
        ("encoder.1.weight", [65536, 32768, 65536, 65536]), ("encoder.1.bias", [65536]),
        ("encoder.2.weight", [32768, 65536, 65536, 65536]), ("encoder.2.bias", [32768]),
        ("mean.weight", [2, 32768]), ("mean.bias", [2]), ("logvar.weight", [2, 32768]),
        ("logvar.bias", [2]), ("decoder.0.weight", [4, 2]), ("decoder.0.bias", [4]),
        ("output.weight", [1, 4]), ("output.bias", [1])])
    conv_2p64 = crafted(none, {
        "encoder": "conv:65536:1:1:0,conv:65536:65536:1:32767", "decoder": "dense:4",
        "image_rows": "2", "image_cols": "2", "in_dim": "4"}, [
        ("encoder.0.weight", [65536, 1, 1, 1]), ("encoder.0.bias", [65536]),
        ("encoder.1.weight", [65536] * 4), ("encoder.1.bias", [65536]),
        ("mean.weight", [2, 65536]), ("mean.bias", [2]), ("logvar.weight", [2, 65536]),
        ("logvar.bias", [2]), ("decoder.0.weight", [4, 2]), ("decoder.0.bias", [4]),
        ("output.weight", [4, 4]), ("output.bias", [4])])
    deconv_2p64 = crafted(none, {
        "encoder": "conv:1:1:1:0", "decoder": "dense:65536,reshape:65536x1x1,"
        "deconv:65536:65536:1:32767", "image_rows": "2", "image_cols": "2", "in_dim": "4"}, [
        ("encoder.0.weight", [1, 1, 1, 1]), ("encoder.0.bias", [1]), ("mean.weight", [2, 4]),
        ("mean.bias", [2]), ("logvar.weight", [2, 4]), ("logvar.bias", [2]),
        ("decoder.0.weight", [65536, 2]), ("decoder.0.bias", [65536]),
        ("decoder.1.weight", [65536] * 4), ("decoder.1.bias", [65536]),
        ("output.weight", [65536, 1, 1, 1]), ("output.bias", [1])])
    pad_past_int = crafted(none, {
        "encoder": "deconv:1:1:65535:0,conv:1:16385:1:16384", "decoder": "dense:4",
        "image_rows": "32769", "image_cols": "1", "in_dim": "32769"}, [
        ("encoder.0.weight", [1, 1, 1, 1]), ("encoder.0.bias", [1]),
        ("encoder.1.weight", [1, 1, 16385, 16385]), ("encoder.1.bias", [1])])

    broken = {
        "header-len-huge": struct.pack("<Q", 1 << 40) + none[8:],
        "header-len-past-end": struct.pack("<Q", len(none) - 8 + 1) + none[8:],
        "truncated-data": none[:-4],
        "bad-json": none[:8] + none[8:8 + n].replace(b":", b";", 1) + none[8 + n:],
        "trailing-after-object": join(*split(none), extra="x"),
        "missing-metadata": edit(none, lambda h, d: h.pop("__metadata__")),
        "wrong-shape": edit(none, tensor("encoder.0.weight", "shape", [5, 7])),
        "wrong-dtype": edit(none, tensor("output.bias", "dtype", "F16")),
        "missing-tensor": edit(none, lambda h, d: h.pop("output.bias")),
        "extra-tensor": edit(none, extra),
        "overlapping-offsets": edit(none, overlap),
        "offsets-gap": edit(none, gap),
        "shape-five-dims": edit(none, tensor("encoder.0.weight", "shape", [5, "6", 1, 1, 1])),
        "tensor-not-object": edit(none, lambda h, d: h.__setitem__("encoder.0.bias", 3)),
        "metadata-not-object": edit(none, lambda h, d: h.__setitem__("__metadata__", "clvae")),
        "nine-hidden-layers-v1": edit(valid["none-h5-v1"], md("hidden", ",".join(["5"] * 9))),
        "nine-encoder-layers": edit(none, md("encoder", ",".join(["dense:5"] * 9))),
        "unknown-layer-kind": edit(none, md("decoder", "conv:5")),
        "v3-without-channels": edit(none, lambda h, d: h["__metadata__"].pop("channels")),
        "adam-wrong-beta1": edit(adam, md("adam_beta1", "0.8")),
        "too-many-params": edit(none, too_many),
        "deconv-output-overflow": edit(none, huge_deconv),
        "conv-two-weights-2p63": two_2p63,
        "conv-weight-65536p4": conv_2p64,
        "deconv-weight-65536p4": deconv_2p64,
        "conv-pad-past-int": pad_past_int,
        "adam-conv-shape-65536p4": edit(conv, zero_byte_shape("encoder.0.weight", [65536] * 4)),
        "adam-conv-moment-2p64": edit(conv, zero_byte_shape("optimizer.v.output.weight",
                                                            [2**62, 2, 1, 2])),
    }
    return {**valid, **broken}


def write(directory, files):
    os.makedirs(directory, exist_ok=True)
    for old in os.listdir(directory):
        os.remove(os.path.join(directory, old))
    for name, blob in files.items():
        assert len(blob) < 8192, (name, len(blob))
        with open(os.path.join(directory, name), "wb") as f:
            f.write(blob)
    print("%s: %d files, %d bytes" % (os.path.relpath(directory, ROOT), len(files),
                                       sum(map(len, files.values()))))


# ---- The other image formats (PIL writes them: python3-pil, for /usr/bin/python3) ----

def pil():
    """PIL's Image and numpy, which the image corpora need."""
    try:
        import numpy
        from PIL import Image
    except ImportError:
        sys.exit("make_corpus.py: the jpeg, webp and stb corpora need PIL and numpy "
                 "(python3-pil, python3-numpy): run it with /usr/bin/python3")
    return Image, numpy


def picture(w, h, mode="RGB", seed=0):
    """A small PIL image of gradients and edges in mode."""
    Image, np = pil()
    y, x = np.mgrid[0:h, 0:w]
    planes = [(x * 37 + seed) % 256, (y * 53 + seed * 3) % 256, ((x // 2 + y // 2) % 2) * 180 + 30,
              (x * y * 11 + 40) % 256]
    im = Image.fromarray(np.stack(planes, -1).astype(np.uint8), "RGBA")
    return im if mode == "RGBA" else im.convert(mode)


def encode(im, fmt, **kw):
    import io
    out = io.BytesIO()
    im.save(out, fmt, **kw)
    return out.getvalue()


def jpeg_corpus():
    rgb = picture(16, 12)
    baseline = encode(rgb, "JPEG", quality=80)
    huge = bytearray(baseline)
    sof = huge.index(b"\xff\xc0")
    huge[sof + 5:sof + 9] = struct.pack(">HH", 60000, 60000)
    cmyk = encode(picture(8, 8, "CMYK"), "JPEG", quality=70)
    return {
        # Valid: baseline 4:2:0 and 4:4:4, progressive, grey, CMYK (Adobe), other tables, odd
        # sizes.
        "rgb-16x12-420": baseline,
        "rgb-9x7-444": encode(picture(9, 7), "JPEG", quality=90, subsampling=0),
        "rgb-16x16-progressive": encode(picture(16, 16, seed=5), "JPEG", quality=75,
                                        progressive=True),
        "grey-11x5": encode(picture(11, 5, "L"), "JPEG", quality=85),
        "cmyk-8x8-adobe": cmyk,
        "rgb-24x8-web-low-tables": encode(picture(24, 8), "JPEG", qtables="web_low"),
        # Broken.
        "truncated-scan": baseline[:len(baseline) * 2 // 3],
        "no-eoi": baseline[:-2],
        "sof-60000x60000": bytes(huge),
        "soi-only": b"\xff\xd8\xff",
        "cmyk-truncated": cmyk[:len(cmyk) // 2],
    }


def webp_corpus():
    Image, _ = pil()
    rgb, rgba = picture(12, 9), picture(10, 7, "RGBA")
    lossless = encode(rgb, "WEBP", lossless=True)
    vp8x = b"VP8X" + struct.pack("<I", 10) + bytes(4) + (49999).to_bytes(3, "little") * 2
    frames = [picture(6, 4, seed=s) for s in range(3)]
    anim = encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True)
    return {
        "lossless-12x9": lossless,
        "lossless-alpha-10x7": encode(rgba, "WEBP", lossless=True),
        "lossy-12x9": encode(rgb, "WEBP", quality=60),
        "lossy-alpha-10x7": encode(rgba, "WEBP", quality=60),
        "animated-6x4": anim,
        "vp8x-50000x50000": b"RIFF" + struct.pack("<I", 4 + len(vp8x) + 8) + b"WEBP" + vp8x
        + b"VP8L" + bytes(4),
        "truncated": lossless[:len(lossless) // 2],
        "riff-size-lies": lossless[:4] + struct.pack("<I", 1 << 30) + lossless[8:],
    }


def stb_corpus():
    rgb = picture(9, 6)
    pal = rgb.quantize(colors=12)
    frames = [picture(5, 4, seed=s).quantize(colors=8) for s in range(3)]
    gif_anim = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=40)
    bmp = encode(rgb, "BMP")
    return {
        # Valid, each format stb_image reads here (TGA has no signature: input.tga).
        "bmp-24bit-9x6": bmp,
        "bmp-8bit-palette": encode(pal, "BMP"),
        "bmp-32bit-alpha": encode(picture(4, 3, "RGBA"), "BMP"),
        "gif-palette-9x6": encode(pal, "GIF"),
        "gif-transparent": encode(pal, "GIF", transparency=2),
        "gif-animated": gif_anim,
        "tga-rgb": encode(rgb, "TGA"),
        "tga-rgba-rle": encode(picture(7, 5, "RGBA"), "TGA", compression="tga_rle"),
        "tga-grey": encode(picture(6, 6, "L"), "TGA"),
        "ppm-p6": encode(rgb, "PPM"),
        "pgm-p5": encode(picture(7, 3, "L"), "PPM"),
        # Broken.
        "bmp-truncated": bmp[:len(bmp) - 20],
        "bmp-100000x100000": b"BM" + struct.pack("<IHHI", 84, 0, 0, 54)
        + struct.pack("<IiiHHIIiiII", 40, 100000, 100000, 1, 24, 0, 0, 0, 0, 0, 0) + bytes(30),
        "gif-65535x65535": b"GIF89a" + struct.pack("<HH", 65535, 65535) + bytes(23),
        "ppm-100000x100000": b"P6\n100000 100000\n255\n" + bytes(30),
        "ppm-maxval-15": b"P6\n2 2\n15\n" + bytes(12),
        # What fuzz_jpeg found: a 20-digit PNM width overflowed stb_image's int.
        "pgm-width-20-digits": b"P5\n18446744073709551615 1\n255\n" + bytes(8),
        "pgm-p2-ascii": b"P2\n2 2\n255\n1 2 3 4\n",
        "tga-65535x65535": struct.pack("<BBBHHBHHHHBB", 0, 0, 2, 0, 0, 0, 0, 0, 65535, 65535,
                                       24, 0) + bytes(30),
    }


def cache_file(key, n_train, n_test, h, w, c, classes=(), warnings=b"", labels=None, skipped=0,
               test_folder=0, version=1):
    """A decoded-set cache as src/data/image_cache.c writes it (see include/data/image_cache.h),
    its checksums right; made-up pixels."""
    payload = struct.pack("<6IQIQ", n_train, n_test, h, w, c, len(classes), skipped, test_folder,
                          len(warnings))
    for name in classes:
        payload += struct.pack("<I", len(name)) + name
    payload += warnings
    if classes:
        labels = labels if labels is not None else [i % len(classes)
                                                    for i in range(n_train + n_test)]
        payload += b"".join(struct.pack("<i", v) for v in labels)
    payload += bytes((k * 29 + 7) % 256 for k in range((n_train + n_test) * h * w * c))
    header = b"CLVAEIMG" + struct.pack("<II", version, 64) + key + struct.pack(
        "<QI", len(payload), zlib.crc32(payload)) + bytes(16)
    return header + struct.pack("<I", zlib.crc32(header)) + payload


def cache_corpus():
    key = bytes(range(16))
    good = cache_file(key, 3, 2, 4, 3, 3, [b"cats", b"dogs"],
                      b"clvae: warning: x.jpg: truncated JPEG (the file ends early); skipped\n",
                      skipped=1)
    return {
        "classes-3+2-4x3x3": good,
        "unlabelled-2+1-2x2x1": cache_file(key, 2, 1, 2, 2, 1, test_folder=1),
        "truncated": good[:len(good) - 9],
        "longer": good + b"\x00",
        "label-out-of-range": cache_file(key, 1, 1, 1, 1, 1, [b"a"], labels=[0, 5]),
        "count-huge": cache_file(key, 1, 1, 1, 1, 1)[:64] + struct.pack("<I", 0x7fffffff)
        + cache_file(key, 1, 1, 1, 1, 1)[68:],
        "version-2": cache_file(key, 1, 1, 1, 1, 1, version=2),
        "name-with-nul": cache_file(key, 1, 1, 1, 1, 1, [b"a\x00b"]),
    }


CORPORA = ["idx", "checkpoint", "png", "jpeg", "webp", "stb", "cache"]


def main():
    make_checkpoint = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        ROOT, "build-fuzz", "tests", "fuzz", "make_checkpoint")
    only = sys.argv[2:] or CORPORA
    makers = {"idx": idx_corpus, "checkpoint": lambda: checkpoint_corpus(make_checkpoint),
              "png": png_corpus, "jpeg": jpeg_corpus, "webp": webp_corpus, "stb": stb_corpus,
              "cache": cache_corpus}
    for name in only:
        write(os.path.join(HERE, "corpus", name), makers[name]())


if __name__ == "__main__":
    main()
