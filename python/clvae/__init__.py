"""Python bindings of libclvae (include/clvae.h) over ctypes, numpy arrays in and out.

    import clvae
    model = clvae.Model.load("model.safetensors")          # device=None, platform=None: the default
    images = model.sample(64, seed=1)                      # (64, H, W, C) float32 in [0, 1]
    model.write_png("samples.png", images)

Images are float32 arrays of shape (n, height, width, channels) with values in [0, 1] (any shape
of n * pixels values is taken); the clvae program's images are bytes / 255. Every failure raises
clvae.Error(code, message), code one of the STATUS_* constants (the program's exit statuses).
A Model, and its device, is used by one thread at a time. The library is CLVAE_LIBRARY (a path),
else what ctypes.util.find_library("clvae") finds.
"""

import ctypes
import ctypes.util
import os

import numpy as np

__all__ = ["Error", "Model", "train", "library_version", "STATUS_FAILURE", "STATUS_USAGE",
           "STATUS_DATA", "STATUS_OUTPUT", "STATUS_DEVICE", "STATUS_DIVERGED"]

STATUS_FAILURE, STATUS_USAGE, STATUS_DATA, STATUS_OUTPUT, STATUS_DEVICE, STATUS_DIVERGED = \
    1, 2, 3, 4, 5, 6
LIKELIHOODS = ("bernoulli", "logistic")


class Error(Exception):
    """A libclvae call failed: code (STATUS_*) and the library's message."""

    def __init__(self, code, message):
        super().__init__(f"{message} (status {code})")
        self.code, self.message = code, message


class _Status(ctypes.Structure):
    _fields_ = [("code", ctypes.c_int), ("message", ctypes.c_char * 2048)]


class _Shape(ctypes.Structure):
    _fields_ = [(name, ctypes.c_int) for name in
                ("latent", "width", "height", "channels", "pixels", "likelihood", "classes",
                 "binarized")]


class _Epoch(ctypes.Structure):
    _fields_ = [("epoch", ctypes.c_int)] + [
        (name, ctypes.c_double) for name in
        ("train_rec", "train_kl", "test_rec", "test_kl", "seconds", "images_per_second", "beta",
         "lr")]


_EPOCH_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(_Epoch), ctypes.c_void_p)


class _TrainOptions(ctypes.Structure):
    _fields_ = [("data", ctypes.c_char_p), ("out_dir", ctypes.c_char_p),
                ("checkpoint", ctypes.c_char_p), ("platform", ctypes.c_char_p),
                ("device", ctypes.c_char_p), ("epochs", ctypes.c_int), ("batch", ctypes.c_int),
                ("lr", ctypes.c_double), ("beta", ctypes.c_double), ("seed", ctypes.c_uint64),
                ("hidden", ctypes.c_char_p), ("encoder", ctypes.c_char_p),
                ("decoder", ctypes.c_char_p), ("latent", ctypes.c_int),
                ("likelihood", ctypes.c_char_p), ("conditional", ctypes.c_int),
                ("on_epoch", _EPOCH_FN), ("user", ctypes.c_void_p)]


def _load_library():
    path = os.environ.get("CLVAE_LIBRARY") or ctypes.util.find_library("clvae")
    if not path:
        raise ImportError("libclvae not found: install it (meson install) or set CLVAE_LIBRARY "
                          "to the path of libclvae.so.0")
    lib = ctypes.CDLL(path)
    P, I, F, U64, D = ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_float), \
        ctypes.c_uint64, ctypes.c_double
    S, IP = ctypes.POINTER(_Status), ctypes.POINTER(ctypes.c_int)
    sigs = {
        "clvae_version": (ctypes.c_char_p, []),
        "clvae_device_open": (I, [ctypes.c_char_p, ctypes.c_char_p, ctypes.POINTER(P), S]),
        "clvae_device_name": (ctypes.c_char_p, [P]),
        "clvae_device_close": (None, [P]),
        "clvae_model_load": (I, [P, ctypes.c_char_p, ctypes.POINTER(P), S]),
        "clvae_model_close": (None, [P]),
        "clvae_model_shape": (I, [P, ctypes.POINTER(_Shape), S]),
        "clvae_model_class_name": (ctypes.c_char_p, [P, I]),
        "clvae_encode": (I, [P, F, I, IP, F, F, S]),
        "clvae_decode": (I, [P, F, I, IP, F, S]),
        "clvae_sample": (I, [P, I, U64, D, I, F, S]),
        "clvae_reconstruct": (I, [P, F, I, IP, F, S]),
        "clvae_elbo": (I, [P, F, I, IP, U64, F, S]),
        "clvae_iwae": (I, [P, F, I, IP, I, U64, F, S]),
        "clvae_train_defaults": (None, [ctypes.POINTER(_TrainOptions)]),
        "clvae_train": (I, [ctypes.POINTER(_TrainOptions), S]),
        "clvae_write_png_grid": (I, [ctypes.c_char_p, ctypes.POINTER(_Shape), F, I, I, S]),
    }
    for name, (restype, argtypes) in sigs.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes
    return lib


_lib = _load_library()


def library_version():
    """libclvae's version, "0.1.0"."""
    return _lib.clvae_version().decode()


def _call(fn, *args):
    status = _Status()
    if fn(*args, ctypes.byref(status)) != 0:
        raise Error(status.code, status.message.decode(errors="replace"))


def _text(value):
    return None if value is None else os.fsencode(value)


def _floats(array):
    return array.ctypes.data_as(ctypes.POINTER(ctypes.c_float))


class Model:
    """A checkpoint's model on an OpenCL device of its own. Close it (or use `with`) to free the
    device's memory at once; otherwise it is freed when the object is collected."""

    def __init__(self, device, model):
        self._device, self._model = device, model
        shape = _Shape()
        _call(_lib.clvae_model_shape, self._model, ctypes.byref(shape))
        self._shape = shape
        self.latent, self.width, self.height = shape.latent, shape.width, shape.height
        self.channels, self.pixels, self.classes = shape.channels, shape.pixels, shape.classes
        self.likelihood = LIKELIHOODS[shape.likelihood]
        self.binarized = bool(shape.binarized)
        self.class_names = [_lib.clvae_model_class_name(self._model, k).decode()
                            for k in range(shape.classes)]

    @classmethod
    def load(cls, path, device=None, platform=None):
        """Loads a checkpoint of `clvae train --save` onto the device that platform and device
        select (an index or a part of the name, as --platform and --device; None: the default)."""
        dev, model = ctypes.c_void_p(), ctypes.c_void_p()
        _call(_lib.clvae_device_open, _text(None if platform is None else str(platform)),
              _text(None if device is None else str(device)), ctypes.byref(dev))
        try:
            _call(_lib.clvae_model_load, dev, os.fsencode(path), ctypes.byref(model))
        except Error:
            _lib.clvae_device_close(dev)
            raise
        return cls(dev, model)

    @property
    def device_name(self):
        return _lib.clvae_device_name(self._device).decode()

    def close(self):
        if self._model:
            _lib.clvae_model_close(self._model)
            _lib.clvae_device_close(self._device)
            self._model = self._device = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        if getattr(self, "_model", None):
            self.close()

    def _handle(self):
        if not self._model:
            raise Error(STATUS_USAGE, "the model is closed")
        return self._model

    def _images(self, x):
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.size == 0 or x.size % self.pixels:
            raise Error(STATUS_USAGE, f"{x.shape}: not n images of {self.pixels} values "
                                      f"({self.height}x{self.width}x{self.channels})")
        return x.reshape(-1, self.pixels)

    def _classes(self, cls, n):
        if cls is None:
            return None, None
        c = np.ascontiguousarray(np.broadcast_to(np.asarray(cls, dtype=np.int32), (n,)))
        return c, c.ctypes.data_as(ctypes.POINTER(ctypes.c_int))

    def _out(self, n):
        return np.empty((n, self.height, self.width, self.channels), dtype=np.float32)

    def encode(self, x, cls=None):
        """The posterior q(z|x) of images x: (mean, logvar), each (n, latent). A conditional
        model takes each image's class in cls (one int for all, or n)."""
        x = self._images(x)
        n = len(x)
        keep, c = self._classes(cls, n)
        mean = np.empty((n, self.latent), np.float32)
        logvar = np.empty((n, self.latent), np.float32)
        _call(_lib.clvae_encode, self._handle(), _floats(x), n, c, _floats(mean), _floats(logvar))
        return mean, logvar

    def decode(self, z, cls=None):
        """Each pixel's mean under the likelihood for latent vectors z (n, latent)."""
        z = np.ascontiguousarray(z, dtype=np.float32).reshape(-1, self.latent)
        n = len(z)
        keep, c = self._classes(cls, n)
        out = self._out(n)
        _call(_lib.clvae_decode, self._handle(), _floats(z), n, c, _floats(out))
        return out

    def sample(self, n, seed=1, cls=None, temperature=1.0):
        """n draws from the prior, decoded: bit for bit `clvae generate -n n --seed seed --raw`.
        A conditional model decodes them as class cls, or the classes in turn, 8 each."""
        out = self._out(n)
        _call(_lib.clvae_sample, self._handle(), int(n), int(seed), float(temperature),
              -1 if cls is None else int(cls), _floats(out))
        return out

    def reconstruct(self, x, cls=None):
        """Each image decoded from its posterior mean."""
        x = self._images(x)
        n = len(x)
        keep, c = self._classes(cls, n)
        out = self._out(n)
        _call(_lib.clvae_reconstruct, self._handle(), _floats(x), n, c, _floats(out))
        return out

    def elbo(self, x, seed=1, cls=None):
        """Each image's negative ELBO in nats, (n,): `clvae encode --elbo`'s neg_elbo column."""
        x = self._images(x)
        n = len(x)
        keep, c = self._classes(cls, n)
        out = np.empty(n, np.float32)
        _call(_lib.clvae_elbo, self._handle(), _floats(x), n, c, int(seed), _floats(out))
        return out

    def iwae(self, x, k=1000, seed=1, cls=None):
        """Each image's negative IWAE bound (k samples) in nats, (n,): `clvae encode --elbo -k`'s
        neg_iwae column."""
        x = self._images(x)
        n = len(x)
        keep, c = self._classes(cls, n)
        out = np.empty(n, np.float32)
        _call(_lib.clvae_iwae, self._handle(), _floats(x), n, c, int(k), int(seed), _floats(out))
        return out

    def write_png(self, path, images, cols=0):
        """images of the model's size as one PNG grid, cols a row (0: the square root of n), the
        grid `clvae generate -o` draws."""
        x = self._images(images)
        _call(_lib.clvae_write_png_grid, os.fsencode(path), ctypes.byref(self._shape),
              _floats(x), len(x), int(cols))


def train(data=None, out_dir=None, checkpoint=None, epochs=None, batch=None, lr=None, beta=None,
          seed=None, hidden=None, encoder=None, decoder=None, latent=None, likelihood=None,
          conditional=False, platform=None, device=None, on_epoch=None):
    """Trains as `clvae train --quiet` with the options of the same names (None: its default),
    writing out_dir's metrics.csv and images and the checkpoint. on_epoch(metrics) is called
    after each epoch with a dict (epoch, train_rec, train_kl, test_rec, test_kl, seconds,
    images_per_second, beta, lr); a true return stops training there. Returns the list of those
    dicts."""
    opt = _TrainOptions()
    _lib.clvae_train_defaults(ctypes.byref(opt))
    given = dict(data=data, out_dir=out_dir, checkpoint=checkpoint, platform=platform,
                 device=device, hidden=hidden, encoder=encoder, decoder=decoder,
                 likelihood=likelihood)
    keep = []
    for name, value in given.items():
        if value is not None:
            keep.append(os.fsencode(str(value)))
            setattr(opt, name, keep[-1])
    for name, value in dict(epochs=epochs, batch=batch, latent=latent, seed=seed).items():
        if value is not None:
            setattr(opt, name, int(value))
    for name, value in dict(lr=lr, beta=beta).items():
        if value is not None:
            setattr(opt, name, float(value))
    opt.conditional = 1 if conditional else 0
    history, raised = [], []

    def epoch_done(epoch, user):
        e = epoch.contents
        row = {name: getattr(e, name) for name, _ in _Epoch._fields_}
        history.append(row)
        try:
            return 1 if on_epoch and on_epoch(row) else 0
        except BaseException as exc:  # stop, and raise it once clvae_train has returned
            raised.append(exc)
            return 1

    opt.on_epoch = _EPOCH_FN(epoch_done)
    _call(_lib.clvae_train, ctypes.byref(opt))
    if raised:
        raise raised[0]
    return history
