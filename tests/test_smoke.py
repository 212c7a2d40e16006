#!/usr/bin/env python3
"""A short real run on whatever device CLVAE_PLATFORM / CLVAE_DEVICE select (the default one
without them): train a dense and a conv model two epochs each on small 8x8 images with --save,
then eval and generate from the checkpoint. CI runs it a second time on Mesa's rusticl.

Run as `CLVAE=path/to/clvae python3 tests/test_smoke.py`.
"""
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_cli as cli  # noqa: E402  (run, check, data_dir, fresh_out)


def smoke(data, name, arch, want):
    """Two epochs of arch with --save, then eval and generate from the checkpoint."""
    model = os.path.join(cli.TMP, name + ".safetensors")
    out = cli.fresh_out()
    r = cli.run(["train", "--data", data, "--out", out, "--epochs", "2", "--batch", "32",
                 "--save", model] + arch)
    device = next((line for line in r.out.splitlines() if line.startswith("clvae: device")),
                  "")
    print(f"smoke: {name}: {device}")
    cli.check(f"{name}: trains 2 epochs on the selected device{' (' + want + ')' if want else ''}",
              r.rc == 0 and (not want or want.lower() in device.lower()), r.describe())
    rows = open(os.path.join(out, "metrics.csv")).read().splitlines()[1:] if r.rc == 0 else []
    test = [float(row.split(",")[4]) for row in rows]
    cli.check(f"{name}: test -ELBO finite and lower after epoch 2 {test}",
              len(test) == 2 and all(math.isfinite(t) for t in test) and test[1] < test[0],
              f"{test}")
    r = cli.run(["eval", "--model", model, "--data", data, "-k", "5"])
    cli.check(f"{name}: eval -k 5", r.rc == 0 and "IWAE" in r.out, r.describe())
    png = os.path.join(cli.TMP, name + ".png")
    r = cli.run(["generate", "--model", model, "-n", "16", "-o", png])
    cli.check(f"{name}: generate", r.rc == 0 and os.path.exists(png), r.describe())


def main():
    want = os.environ.get("CLVAE_PLATFORM", "")

    def body():
        data = cli.data_dir("smoke", train=cli.TRAIN_GZ, test=cli.TEST_IMAGES)
        for name, arch in (("dense", []), ("conv", ["--encoder", "conv:4,conv:8,dense:16"])):
            smoke(data, name, arch, want)
    return cli.run_suite("smoke", body)


if __name__ == "__main__":
    sys.exit(main())
