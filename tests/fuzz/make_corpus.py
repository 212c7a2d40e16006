#!/usr/bin/env python3
"""Writes the seed corpora of tests/fuzz: corpus/idx for fuzz_idx, corpus/checkpoint for
fuzz_checkpoint; small real files and broken ones, each named for what it holds.

    tests/fuzz/make_corpus.py [MAKE_CHECKPOINT]

MAKE_CHECKPOINT is the make_checkpoint program of a -Dfuzzers=true build (default
build-fuzz/tests/fuzz/make_checkpoint): the valid checkpoints are checkpoint_save's own output,
the broken ones edits of them. The output is the same on every run; the directories are emptied
first.
"""
import json
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


def checkpoint_corpus(make_checkpoint):
    valid = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, hidden, optimizer in [("none-h5", "5", "none"), ("adam-h5", "5", "adam"),
                                        ("none-h5-3", "5,3", "none")]:
            path = os.path.join(tmp, name)
            subprocess.run([make_checkpoint, path, hidden, optimizer], check=True)
            with open(path, "rb") as f:
                valid[name] = f.read()
    none, adam = valid["none-h5"], valid["adam-h5"]
    n = struct.unpack("<Q", none[:8])[0]

    def md(key, value):
        return lambda h, d: h["__metadata__"].__setitem__(key, value)

    def version1(hidden):
        """Format version 1: the architecture as "hidden" widths, the decoder mirroring them."""
        def change(h, d):
            h["__metadata__"].update(format_version="1", hidden=hidden)
            h["__metadata__"].pop("encoder")
            h["__metadata__"].pop("decoder")
        return change

    for name in list(valid):
        hidden = "5,3" if name.endswith("-3") else "5"
        valid[name + "-v1"] = edit(valid[name], version1(hidden))

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

    def gap(h, d):
        begin, end = h["output.bias"]["data_offsets"]
        h["output.bias"]["data_offsets"] = [begin + 4, end + 4]
        return d[:begin] + bytes(4) + d[begin:]

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
        "format-version-3": edit(none, md("format_version", "3")),
        "adam-wrong-beta1": edit(adam, md("adam_beta1", "0.8")),
        "too-many-params": edit(none, too_many),
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


def main():
    make_checkpoint = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        ROOT, "build-fuzz", "tests", "fuzz", "make_checkpoint")
    write(os.path.join(HERE, "corpus", "idx"), idx_corpus())
    write(os.path.join(HERE, "corpus", "checkpoint"), checkpoint_corpus(make_checkpoint))


if __name__ == "__main__":
    main()
