"""Samples 64 images from a checkpoint: the draws of `clvae generate -n 64 --seed SEED`, written as
its PNG grid and its --raw floats (docs/library.md).
    python3 sample.py model.safetensors 1 samples.png samples.raw"""
import sys

import clvae

path, seed, png, raw = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
with clvae.Model.load(path) as model:
    images = model.sample(64, seed=seed)  # (64, height, width, channels) float32 in [0, 1]
    model.write_png(png, images)          # the grid `clvae generate -o` draws
    images.tofile(raw)                    # the bytes of `clvae generate --raw`
