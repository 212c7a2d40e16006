#!/usr/bin/env python3
"""The Python bindings (python/clvae) against the clvae program, same seed same bits: a model
trained one epoch by clvae.train on a small synthetic set, then sample == `clvae generate --raw`,
encode, elbo and iwae == `clvae encode --elbo`'s columns, reconstruct == decode(encode's means),
errors as clvae.Error with the program's statuses; `pip install ./python` into a venv
(--system-site-packages: Debian's numpy) runs docs/examples/sample.py, whose PNG and raw floats
are `clvae generate`'s.

Run by meson test with CLVAE (the program), CLVAE_LIBRARY (the built libclvae.so) and SOURCE_ROOT.
"""

import os
import shutil
import struct
import subprocess
import sys
import tempfile

import numpy as np

sys.dont_write_bytecode = True  # nothing written into the source tree
SOURCE = os.environ["SOURCE_ROOT"]
sys.path.insert(0, os.path.join(SOURCE, "tests"))
sys.path.insert(0, os.path.join(SOURCE, "python"))
import test_cli as cli  # noqa: E402  (idx3: the synthetic data set)
import clvae  # noqa: E402

passed = failed = 0


def check(label, ok, why=""):
    global passed, failed
    passed, failed = passed + bool(ok), failed + (not ok)
    print(f"python: {'ok  ' if ok else 'FAIL'} {label}{'' if ok else ': ' + str(why)}")
    sys.stdout.flush()
    return ok


def run(args, **kw):
    p = subprocess.run(args, capture_output=True, text=True, timeout=600, **kw)
    if p.returncode != 0:
        sys.exit(f"python: `{' '.join(args)}` exited {p.returncode}: {p.stderr}")
    return p


def expect_error(label, code, fn):
    try:
        fn()
    except clvae.Error as e:
        return check(f"{label}: clvae.Error {e.code} \"{e.message[:70]}\"", e.code == code,
                     f"code {e.code}, want {code}")
    return check(label, False, "no clvae.Error raised")


def main():
    prog = os.environ["CLVAE"]
    tmp = tempfile.mkdtemp(prefix="clvae-python-")
    try:
        data = os.path.join(tmp, "data")
        os.makedirs(data)
        with open(os.path.join(data, "train-images-idx3-ubyte.gz"), "wb") as f:
            f.write(cli.TRAIN_GZ)
        with open(os.path.join(data, "t10k-images-idx3-ubyte"), "wb") as f:
            f.write(cli.TEST_IMAGES)
        n, rows, cols = cli.N_TEST, cli.ROWS, cli.COLS
        x = (np.frombuffer(cli.TEST_IMAGES[16:], np.uint8).astype(np.float32) *
             np.float32(1 / 255)).reshape(n, rows, cols, 1)
        check(f"library_version() {clvae.library_version()}", clvae.library_version() == "0.1.0")

        model_path = os.path.join(tmp, "m.safetensors")
        seen = []
        history = clvae.train(data=data, out_dir=os.path.join(tmp, "out"), checkpoint=model_path,
                              epochs=3, batch=32, hidden="16", latent=2, seed=3,
                              on_epoch=lambda m: seen.append(m) or m["epoch"] == 2)
        check("clvae.train: on_epoch stopped the 3-epoch run after epoch 2, the checkpoint "
              "written", [m["epoch"] for m in history] == [1, 2] and len(seen) == 2 and
              os.path.isfile(model_path) and all(np.isfinite(m["test_rec"]) for m in seen),
              f"{history}")
        same_path = os.path.join(tmp, "same.safetensors")
        clvae.train(data=data, out_dir=os.path.join(tmp, "out1"), checkpoint=same_path, epochs=1,
                    batch=32, hidden="16", latent=2, seed=3, likelihood="logistic")
        cli_path = os.path.join(tmp, "cli.safetensors")
        run([prog, "train", "--data", data, "--out", os.path.join(tmp, "out3"), "--save",
             cli_path, "--epochs", "1", "--batch", "32", "--hidden", "16", "--latent", "2",
             "--seed", "3", "--likelihood", "logistic", "--quiet"])
        check("clvae.train's checkpoint == clvae train's for the same options, byte for byte",
              open(same_path, "rb").read() == open(cli_path, "rb").read())
        expect_error("clvae.train on a missing directory", clvae.STATUS_DATA,
                     lambda: clvae.train(data=os.path.join(tmp, "nothing"), epochs=1,
                                         out_dir=os.path.join(tmp, "out2")))
        expect_error("clvae.train with a bad likelihood", clvae.STATUS_USAGE,
                     lambda: clvae.train(data=data, likelihood="gauss", epochs=1))
        expect_error("Model.load of a missing file", clvae.STATUS_DATA,
                     lambda: clvae.Model.load(os.path.join(tmp, "missing.safetensors")))
        expect_error("Model.load on device 999", clvae.STATUS_DEVICE,
                     lambda: clvae.Model.load(model_path, device=999))

        model = clvae.Model.load(model_path)
        check(f"the model's shape: latent {model.latent}, {model.height}x{model.width}x"
              f"{model.channels}, {model.likelihood}", (model.latent, model.height, model.width,
                                                         model.channels, model.likelihood,
                                                         model.classes) ==
              (2, rows, cols, 1, "bernoulli", 0))
        raw = os.path.join(tmp, "gen.raw")
        run([prog, "generate", "--model", model_path, "-n", "50", "--seed", "9",
             "--temperature", "0.8", "--raw", raw])
        got = model.sample(50, seed=9, temperature=0.8)
        check("sample(50, seed=9, temperature=0.8) == clvae generate --raw, bit for bit",
              got.shape == (50, rows, cols, 1) and got.tobytes() == open(raw, "rb").read())

        npy = os.path.join(tmp, "enc.npy")
        run([prog, "encode", "--model", model_path, "--data", data, "--elbo", "-k", "7",
             "--seed", "4", "-o", npy])
        enc = np.load(npy)
        mean, logvar = model.encode(x)
        check("encode(x) == clvae encode's mu and logvar, bit for bit",
              mean.tobytes() == enc[:, :2].tobytes() and logvar.tobytes() == enc[:, 2:4].tobytes())
        check("elbo(x, seed=4) == clvae encode --elbo's neg_elbo, bit for bit",
              model.elbo(x, seed=4).tobytes() == enc[:, 4].copy().tobytes())
        check("iwae(x, k=7, seed=4) == clvae encode --elbo -k 7's neg_iwae, bit for bit",
              model.iwae(x, k=7, seed=4).tobytes() == enc[:, 5].copy().tobytes())
        check("reconstruct(x) == decode(encode(x)'s means)",
              np.array_equal(model.reconstruct(x), model.decode(mean)))
        expect_error("encode of arrays not of whole images", clvae.STATUS_USAGE,
                     lambda: model.encode(np.zeros(10)))
        expect_error("iwae with k 0", clvae.STATUS_USAGE, lambda: model.iwae(x, k=0))
        expect_error("sample of a class on an unconditional model", clvae.STATUS_USAGE,
                     lambda: model.sample(4, cls=1))
        model.close()
        expect_error("a closed model", clvae.STATUS_USAGE, lambda: model.sample(4))

        # A conditional model: classes through clvae.train, Model, encode and sample.
        cdata = os.path.join(tmp, "cdata")
        os.makedirs(cdata)
        labels = [i % 4 for i in range(n)]
        for name, blob in (("train-images-idx3-ubyte.gz", cli.TRAIN_GZ),
                           ("t10k-images-idx3-ubyte", cli.TEST_IMAGES),
                           ("train-labels-idx1-ubyte",
                            struct.pack(">II", 0x801, cli.N_TRAIN) +
                            bytes(i % 4 for i in range(cli.N_TRAIN))),
                           ("t10k-labels-idx1-ubyte", struct.pack(">II", 0x801, n) +
                            bytes(labels)),
                           ("classes.txt", b"zero\none\ntwo\nthree\n")):
            with open(os.path.join(cdata, name), "wb") as f:
                f.write(blob)
        cpath = os.path.join(tmp, "c.safetensors")
        clvae.train(data=cdata, out_dir=os.path.join(tmp, "cout"), checkpoint=cpath, epochs=1,
                    batch=32, hidden="16", latent=3, conditional=True)
        with clvae.Model.load(cpath) as cm:
            check(f"a conditional model: {cm.classes} classes {cm.class_names}",
                  cm.classes == 4 and cm.class_names == ["zero", "one", "two", "three"])
            for cls, extra in ((None, []), (2, ["--class", "two"])):
                run([prog, "generate", "--model", cpath, "-n", "20", "--seed", "5", "--raw", raw]
                    + extra)
                check(f"conditional sample(20, seed=5, cls={cls}) == clvae generate "
                      f"{' '.join(extra) or '(the classes in turn)'} --raw, bit for bit",
                      cm.sample(20, seed=5, cls=cls).tobytes() == open(raw, "rb").read())
            run([prog, "encode", "--model", cpath, "--data", cdata, "--elbo", "-k", "3",
                 "--seed", "2", "-o", npy])
            enc = np.load(npy)  # mu (3), logvar (3), label, neg_elbo, neg_iwae
            cmean, clogvar = cm.encode(x, cls=labels)
            check("conditional encode(x, cls=labels), iwae(k=3) == clvae encode's columns",
                  cmean.tobytes() == enc[:, :3].tobytes() and
                  clogvar.tobytes() == enc[:, 3:6].tobytes() and
                  cm.iwae(x, k=3, seed=2, cls=labels).tobytes() == enc[:, 8].copy().tobytes())
            expect_error("a conditional model's encode without classes", clvae.STATUS_USAGE,
                         lambda: cm.encode(x))
            expect_error("a class out of range", clvae.STATUS_USAGE,
                         lambda: cm.sample(2, cls=4))

        # pip install ./python into a venv over Debian's numpy, offline; the docs' example there.
        venv = os.path.join(tmp, "venv")
        run([sys.executable, "-m", "venv", "--system-site-packages", venv])
        py = os.path.join(venv, "bin", "python")
        # A copy: the build leaves build/ and clvae.egg-info beside the sources.
        project = os.path.join(tmp, "python")
        shutil.copytree(os.path.join(SOURCE, "python"), project,
                        ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
        p = subprocess.run([py, "-m", "pip", "install", "--no-index", "--no-build-isolation",
                            "--no-deps", project],
                           capture_output=True, text=True, timeout=600)
        if check("pip install ./python into a venv (--system-site-packages)",
                 p.returncode == 0, p.stdout[-1500:] + p.stderr[-1500:]):
            out_png, out_raw = os.path.join(tmp, "py.png"), os.path.join(tmp, "py.raw")
            gen_png, gen_raw = os.path.join(tmp, "gen64.png"), os.path.join(tmp, "gen64.raw")
            p = subprocess.run([py, os.path.join(SOURCE, "docs", "examples", "sample.py"),
                                model_path, "11", out_png, out_raw], capture_output=True,
                               text=True, timeout=600, cwd=tmp)
            run([prog, "generate", "--model", model_path, "-n", "64", "--seed", "11", "-o",
                 gen_png, "--raw", gen_raw])
            check("docs/examples/sample.py from the venv == clvae generate -n 64 --seed 11's "
                  "PNG and --raw, byte for byte",
                  p.returncode == 0 and open(out_png, "rb").read() == open(gen_png, "rb").read()
                  and open(out_raw, "rb").read() == open(gen_raw, "rb").read(),
                  p.stdout + p.stderr)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
