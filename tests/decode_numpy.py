#!/usr/bin/env python3
"""Reads a clvae checkpoint with numpy alone and runs the decoder on clvae's prior draws.

Usage: decode_numpy.py MODEL.safetensors RAW N SEED TEMPERATURE
RAW is `clvae generate --raw` output for the same N, --seed and --temperature: N images of each
pixel's mean under the likelihood (Bernoulli or discretised logistic), channel-last, float32. The draws are clvae's: z[i] = T * Philox4x32-10 Box-Muller normal of
counter (i, 0, 0, stream 2) under the seed (src/base/philox.c), ported here.
"""
import math
import sys

import numpy as np

from test_checkpoint_numpy import decode, load_safetensors

M32 = 0xFFFFFFFF


def philox(ctr, key):
    c0, c1, c2, c3 = ctr
    k0, k1 = key
    for _ in range(10):
        p0, p1 = 0xD2511F53 * c0, 0xCD9E8D57 * c2
        c0, c1, c2, c3 = ((p1 >> 32) ^ c1 ^ k0) & M32, p1 & M32, ((p0 >> 32) ^ c3 ^ k1) & M32, p0 & M32
        k0, k1 = (k0 + 0x9E3779B9) & M32, (k1 + 0xBB67AE85) & M32
    return c0, c1, c2, c3


def normal(seed, index, step, stream):
    r = philox((index, step & M32, step >> 32, stream), (seed & M32, seed >> 32))
    u1 = ((r[0] >> 8) + 1) / 16777216.0
    u2 = (r[1] >> 8) / 16777216.0
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(6.283185307179586 * u2)


def main():
    model, raw, n, seed, temperature = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
    tensors, meta = load_safetensors(model)  # the decoder's layers from the file's architecture
    latent, dim = int(meta["latent"]), int(meta["in_dim"])
    z = np.array([[temperature * normal(seed, i * latent + k, 0, 2) for k in range(latent)]
                  for i in range(n)])
    want = decode(tensors, meta, z)
    got = np.fromfile(raw, dtype="<f4").reshape(n, dim)
    err = float(np.max(np.abs(got - want)))
    # The logistic's mean sums 255 sigmoids of outputs that float rounding moves: a looser bound.
    tol = 1e-5 if meta.get("likelihood", "bernoulli") == "bernoulli" else 1e-4
    print(f"numpy decoder vs clvae generate --raw: {n} images of {dim} values "
          f"({meta.get('likelihood', 'bernoulli')}), max abs err {err:.2e} (tol {tol:g})")
    return 0 if err <= tol else 1


if __name__ == "__main__":
    sys.exit(main())
