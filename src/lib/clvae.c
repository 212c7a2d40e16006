// libclvae's public API (include/clvae.h) over the engine: each entry point runs its work under a
// trap (error.h: clvae_fatal longjmps back here rather than exiting) with the engine's notes
// silenced, and turns the engine's struct clvae_error into the caller's struct clvae_status.
#include "clvae.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "cl_runtime.h"
#include "error.h"
#include "iwae.h"
#include "likelihood.h"
#include "model_io.h"
#include "philox.h"
#include "png_grid.h"
#include "train.h"
#include "vae.h"

_Static_assert((int)CLVAE_STATUS_FAILURE == (int)CLVAE_EXIT_FAILURE &&
                   (int)CLVAE_STATUS_USAGE == (int)CLVAE_EXIT_USAGE &&
                   (int)CLVAE_STATUS_DATA == (int)CLVAE_EXIT_DATA &&
                   (int)CLVAE_STATUS_OUTPUT == (int)CLVAE_EXIT_OUTPUT &&
                   (int)CLVAE_STATUS_DEVICE == (int)CLVAE_EXIT_DEVICE &&
                   (int)CLVAE_STATUS_DIVERGED == (int)CLVAE_EXIT_DIVERGED,
               "clvae.h's statuses are error.h's exit statuses");
_Static_assert(sizeof(((struct clvae_status *)0)->message) == CLVAE_ERROR_MAX,
               "a status holds an error's message");
_Static_assert((int)CLVAE_LIKELIHOOD_LOGISTIC == (int)LIKELIHOOD_LOGISTIC &&
                   (int)CLVAE_LIKELIHOOD_BERNOULLI == (int)LIKELIHOOD_BERNOULLI,
               "clvae.h's likelihoods are likelihood.h's");
_Static_assert(sizeof(int) == sizeof(int32_t), "classes arrays are the engine's int32 labels");

// An open device with clvae's kernels built: the models loaded onto it borrow rt.
struct clvae_device {
    struct clrt rt;
    bool broken; // a call met a failure that ended it half-way (clvae_fatal): only close is safe
};

// A checkpoint's model on a device, for up to EVAL_ROWS images at once (eval's and encode's
// batch, which fixes the ELBO's noise).
struct clvae_model {
    struct clvae_device *dev;
    struct ckpt ckpt;
    struct vae vae;
    cl_mem rec, kl, bound; // (EVAL_ROWS) a batch's per-image terms
};

// Runs fn(args, err) under a trap with the engine quiet; the status into *st. A trapped failure
// marks *broken.
static int call(int (*fn)(void *args, struct clvae_error *err), void *args, bool *broken,
                struct clvae_status *st)
{
    struct clvae_trap trap;
    memset(&trap.err, 0, sizeof trap.err);
    struct clvae_trap *volatile outer = clvae_trap_set(&trap);
    volatile bool was_quiet = clvae_quiet();
    volatile int code = 0;
    clvae_set_quiet(true);
    if (setjmp(trap.jump) == 0) {
        if (fn(args, &trap.err))
            code = trap.err.status ? trap.err.status : CLVAE_STATUS_FAILURE;
    } else {
        code = trap.err.status ? trap.err.status : CLVAE_STATUS_FAILURE;
        if (broken)
            *broken = true;
    }
    clvae_trap_set(outer);
    clvae_set_quiet(was_quiet);
    if (st) {
        st->code = code;
        snprintf(st->message, sizeof st->message, "%s", code ? trap.err.msg : "");
    }
    return code;
}

// A status of the library's own (a bad argument) without running anything.
static int refuse(struct clvae_status *st, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int refuse(struct clvae_status *st, int code, const char *fmt, ...)
{
    if (st) {
        va_list ap;
        va_start(ap, fmt);
        st->code = code;
        vsnprintf(st->message, sizeof st->message, fmt, ap);
        va_end(ap);
    }
    return code;
}

const char *clvae_version(void)
{
    return CLVAE_VERSION;
}

// ---- Devices

struct open_args {
    const char *platform, *device;
    struct clvae_device *dev;
};

static int open_device(void *p, struct clvae_error *err)
{
    struct open_args *a = p;
    if ((a->platform && clrt_parse_selector("--platform", a->platform, err)) ||
        (a->device && clrt_parse_selector("--device", a->device, err)))
        return -1;
    if (clrt_open(&a->dev->rt, a->platform, a->device, false, err) ||
        clrt_build(&a->dev->rt, err)) {
        clrt_close(&a->dev->rt);
        return -1;
    }
    return 0;
}

int clvae_device_open(const char *platform, const char *device, struct clvae_device **out,
                      struct clvae_status *status)
{
    if (!out)
        return refuse(status, CLVAE_STATUS_USAGE, "clvae_device_open: out is NULL");
    struct clvae_device *dev = calloc(1, sizeof *dev);
    if (!dev)
        return refuse(status, CLVAE_STATUS_FAILURE, "out of host memory opening a device");
    struct open_args a = {platform, device, dev};
    int code = call(open_device, &a, NULL, status);
    if (code) {
        free(dev);
        return code;
    }
    *out = dev;
    return 0;
}

const char *clvae_device_name(const struct clvae_device *dev)
{
    return dev ? dev->rt.device_name : NULL;
}

void clvae_device_close(struct clvae_device *dev)
{
    if (!dev)
        return;
    struct clvae_trap trap;
    struct clvae_trap *outer = clvae_trap_set(&trap);
    if (setjmp(trap.jump) == 0)
        clrt_close(&dev->rt);
    clvae_trap_set(outer);
    free(dev);
}

// ---- Models

// Fails when model is NULL or its device broken.
static int usable(const struct clvae_model *model, const char *fn, struct clvae_status *st)
{
    if (!model)
        return refuse(st, CLVAE_STATUS_USAGE, "%s: model is NULL", fn);
    if (model->dev->broken)
        return refuse(st, CLVAE_STATUS_FAILURE,
                      "%s: an earlier call on the device %s failed part-way; close its models and "
                      "the device",
                      fn, model->dev->rt.device_name);
    return 0;
}

static void release_model(struct clvae_model *m)
{
    cl_mem mems[] = {m->rec, m->kl, m->bound};
    for (size_t i = 0; i < sizeof mems / sizeof mems[0]; i++)
        clrt_release_buffer(mems[i]);
    vae_release(&m->vae);
    checkpoint_free(&m->ckpt);
}

struct load_args {
    const char *path;
    struct clvae_model *m;
};

static int load_model(void *p, struct clvae_error *err)
{
    struct load_args *a = p;
    struct clvae_model *m = a->m;
    struct clrt *rt = &m->dev->rt;
    size_t bytes = EVAL_ROWS * sizeof(float);
    if (checkpoint_load(a->path, &m->ckpt, err))
        return -1;
    if (model_io_upload(&m->vae, rt, &m->ckpt, a->path, EVAL_ROWS, err) ||
        !(m->rec = clrt_buffer(rt, bytes, "losses", err)) ||
        !(m->kl = clrt_buffer(rt, bytes, "KL terms", err)) ||
        !(m->bound = clrt_buffer(rt, bytes, "IWAE bounds", err))) {
        release_model(m);
        return -1;
    }
    return 0;
}

int clvae_model_load(struct clvae_device *dev, const char *path, struct clvae_model **out,
                     struct clvae_status *status)
{
    if (!dev || !path || !out)
        return refuse(status, CLVAE_STATUS_USAGE, "clvae_model_load: %s is NULL",
                      !dev    ? "dev"
                      : !path ? "path"
                              : "out");
    if (dev->broken)
        return refuse(status, CLVAE_STATUS_FAILURE,
                      "clvae_model_load: an earlier call on the device %s failed part-way; close "
                      "it",
                      dev->rt.device_name);
    struct clvae_model *m = calloc(1, sizeof *m);
    if (!m)
        return refuse(status, CLVAE_STATUS_FAILURE, "out of host memory loading %s", path);
    m->dev = dev;
    struct load_args a = {path, m};
    int code = call(load_model, &a, &dev->broken, status);
    if (code) {
        free(m);
        return code;
    }
    *out = m;
    return 0;
}

void clvae_model_close(struct clvae_model *model)
{
    if (!model)
        return;
    struct clvae_trap trap;
    struct clvae_trap *outer = clvae_trap_set(&trap);
    if (setjmp(trap.jump) == 0) {
        if (!model->dev->broken)
            clrt_finish(&model->dev->rt);
        release_model(model);
    }
    clvae_trap_set(outer);
    free(model);
}

int clvae_model_shape(const struct clvae_model *model, struct clvae_shape *shape,
                      struct clvae_status *status)
{
    if (!model || !shape)
        return refuse(status, CLVAE_STATUS_USAGE, "clvae_model_shape: %s is NULL",
                      !model ? "model" : "shape");
    const struct ckpt_meta *meta = &model->ckpt.meta;
    *shape = (struct clvae_shape){.latent = meta->cfg.latent,
                                  .width = meta->image_cols,
                                  .height = meta->image_rows,
                                  .channels = meta->channels,
                                  .pixels = meta->cfg.in_dim,
                                  .likelihood = (int)meta->cfg.likelihood,
                                  .classes = meta->cfg.classes,
                                  .binarized = meta->binarize != 0};
    if (status)
        *status = (struct clvae_status){0};
    return 0;
}

const char *clvae_model_class_name(const struct clvae_model *model, int k)
{
    if (!model || k < 0 || k >= model->ckpt.meta.n_classes || !model->ckpt.meta.cfg.classes)
        return NULL;
    return model->ckpt.meta.class_names[k];
}

// Checks n and classes against the model: 0, or a status naming fn.
static int check_batch(const struct clvae_model *m, const char *fn, int n, const void *in,
                       const int *classes, struct clvae_status *st)
{
    int code = usable(m, fn, st);
    if (code)
        return code;
    if (n < 1)
        return refuse(st, CLVAE_STATUS_USAGE, "%s: n is %d; give 1 or more images", fn, n);
    if (!in)
        return refuse(st, CLVAE_STATUS_USAGE, "%s: the input array is NULL", fn);
    int k = m->vae.cfg.classes;
    if (!k && classes)
        return refuse(st, CLVAE_STATUS_USAGE,
                      "%s: classes given, but the model is not conditional; pass NULL", fn);
    if (k && !classes)
        return refuse(st, CLVAE_STATUS_USAGE,
                      "%s: the model is conditional on %d classes: give each image's class", fn, k);
    for (int i = 0; classes && i < n; i++)
        if (classes[i] < 0 || classes[i] >= k)
            return refuse(st, CLVAE_STATUS_USAGE,
                          "%s: classes[%d] is %d; the model's classes are 0 to %d", fn, i,
                          classes[i], k - 1);
    return 0;
}

// What a pass over host images computes, batch by batch.
struct pass_args {
    struct clvae_model *m;
    const float *x;
    int n;
    const int *classes;
    uint64_t seed;
    int k;                  // IWAE samples; 0: no bound
    float *mean, *logvar;   // (n, latent) each, or NULL
    float *neg_elbo, *iwae; // (n) each, or NULL
    float *recon;           // (n, pixels): decoded from the means, or NULL
};

// The images x, EVAL_ROWS at a time as `clvae encode` takes them: uploaded, binarized for a model
// trained so (by their numbers in x), forward with eval's noise, then what a asks for.
static int run_pass(void *p, struct clvae_error *err)
{
    struct pass_args *a = p;
    struct clvae_model *m = a->m;
    struct vae *vae = &m->vae;
    struct clrt *rt = vae->rt;
    const struct ckpt_meta *meta = &m->ckpt.meta;
    size_t dim = (size_t)vae->cfg.in_dim, latent = (size_t)vae->cfg.latent;
    struct iwae iw = {0};
    cl_mem index = NULL;
    int chunk = vae->max_rows;
    if (a->k && iwae_create(&iw, vae, a->k, EVAL_LOG_WEIGHTS, err))
        return -1;
    if (meta->binarize) {
        if (!(index = clrt_buffer(rt, (size_t)a->n * sizeof(int), "image order", err))) {
            iwae_release(&iw);
            return -1;
        }
        int *identity = xmalloc((size_t)a->n * sizeof(int));
        for (int i = 0; i < a->n; i++)
            identity[i] = i;
        clrt_write(rt, index, 0, (size_t)a->n * sizeof(int), identity, true);
        free(identity);
    }
    iw.labels = (const int32_t *)a->classes;
    float *ml = xmalloc((size_t)chunk * 2 * latent * sizeof(float));
    float *rec = xmalloc((size_t)chunk * 3 * sizeof(float)), *kl = rec + chunk, *bound = kl + chunk;
    float *mu = a->recon ? xmalloc((size_t)a->n * latent * sizeof(float)) : NULL;
    for (int start = 0; start < a->n; start += chunk) {
        int rows = a->n - start < chunk ? a->n - start : chunk;
        clrt_write(rt, vae->x, 0, (size_t)rows * dim * sizeof(float), a->x + (size_t)start * dim,
                   false);
        if (a->classes)
            vae_set_labels(vae, a->classes + start, rows);
        model_io_binarize(meta, vae, index, start, rows);
        // eval's noise: stream EVAL, the batch's first image as the step (src/cmd/encode.c).
        struct vae_pass pass = {.rows = rows,
                                .seed = a->seed,
                                .step = (uint64_t)start,
                                .stream = PHILOX_STREAM_EVAL,
                                .noise_scale = 1.0f,
                                .rec = m->rec,
                                .kl = m->kl};
        vae_forward(vae, &pass);
        if (a->k)
            iwae_bound(&iw, rows, (uint64_t)start, a->seed, m->bound, 0);
        size_t bytes = (size_t)rows * sizeof(float);
        clrt_read(rt, vae->ml, 0, (size_t)rows * 2 * latent * sizeof(float), ml, false);
        clrt_read(rt, m->rec, 0, bytes, rec, false);
        clrt_read(rt, m->kl, 0, bytes, kl, false);
        if (a->k)
            clrt_read(rt, m->bound, 0, bytes, bound, false);
        clrt_finish(rt);
        for (int r = 0; r < rows; r++) {
            size_t i = (size_t)(start + r);
            const float *row = ml + (size_t)r * 2 * latent;
            if (a->mean)
                memcpy(a->mean + i * latent, row, latent * sizeof(float));
            if (a->logvar)
                memcpy(a->logvar + i * latent, row + latent, latent * sizeof(float));
            if (mu)
                memcpy(mu + i * latent, row, latent * sizeof(float));
            if (a->neg_elbo)
                a->neg_elbo[i] = rec[r] + kl[r];
            if (a->iwae)
                a->iwae[i] = -bound[r];
        }
    }
    if (mu)
        model_io_decode(vae, mu, a->classes, a->n, a->recon, NULL);
    free(mu);
    free(ml);
    free(rec);
    clrt_release_buffer(index);
    iwae_release(&iw);
    return 0;
}

static int pass(struct pass_args *a, const char *fn, struct clvae_status *st)
{
    int code = check_batch(a->m, fn, a->n, a->x, a->classes, st);
    return code ? code : call(run_pass, a, &a->m->dev->broken, st);
}

int clvae_encode(struct clvae_model *model, const float *x, int n, const int *classes, float *mean,
                 float *logvar, struct clvae_status *status)
{
    struct pass_args a = {
        .m = model, .x = x, .n = n, .classes = classes, .seed = 1, .mean = mean, .logvar = logvar};
    return pass(&a, "clvae_encode", status);
}

int clvae_reconstruct(struct clvae_model *model, const float *x, int n, const int *classes,
                      float *out, struct clvae_status *status)
{
    if (!out)
        return refuse(status, CLVAE_STATUS_USAGE, "clvae_reconstruct: out is NULL");
    struct pass_args a = {.m = model, .x = x, .n = n, .classes = classes, .seed = 1, .recon = out};
    return pass(&a, "clvae_reconstruct", status);
}

int clvae_elbo(struct clvae_model *model, const float *x, int n, const int *classes, uint64_t seed,
               float *neg_elbo, struct clvae_status *status)
{
    if (!neg_elbo)
        return refuse(status, CLVAE_STATUS_USAGE, "clvae_elbo: neg_elbo is NULL");
    struct pass_args a = {
        .m = model, .x = x, .n = n, .classes = classes, .seed = seed, .neg_elbo = neg_elbo};
    return pass(&a, "clvae_elbo", status);
}

int clvae_iwae(struct clvae_model *model, const float *x, int n, const int *classes, int k,
               uint64_t seed, float *neg_iwae, struct clvae_status *status)
{
    if (!neg_iwae)
        return refuse(status, CLVAE_STATUS_USAGE, "clvae_iwae: neg_iwae is NULL");
    if (k < 1 || k > EVAL_MAX_K)
        return refuse(status, CLVAE_STATUS_USAGE, "clvae_iwae: k is %d; give 1 to %d", k,
                      EVAL_MAX_K);
    struct pass_args a = {
        .m = model, .x = x, .n = n, .classes = classes, .seed = seed, .k = k, .iwae = neg_iwae};
    return pass(&a, "clvae_iwae", status);
}

struct decode_args {
    struct clvae_model *m;
    const float *z; // NULL: draw from the prior
    int n, cls;
    const int *classes;
    uint64_t seed;
    double temperature;
    float *out;
};

static int run_decode(void *p, struct clvae_error *err)
{
    (void)err;
    struct decode_args *a = p;
    struct vae *vae = &a->m->vae;
    size_t latent = (size_t)vae->cfg.latent;
    float *drawn = NULL;
    int *labels = NULL;
    if (!a->z) { // `clvae generate`'s draws and classes
        drawn = xmalloc((size_t)a->n * latent * sizeof(float));
        model_io_prior(drawn, (size_t)a->n * latent, a->seed, a->temperature);
        if (vae->cfg.classes) {
            labels = xmalloc((size_t)a->n * sizeof *labels);
            for (int i = 0; i < a->n; i++)
                labels[i] = a->cls >= 0 ? a->cls : i / 8 % vae->cfg.classes;
        }
    }
    model_io_decode(vae, a->z ? a->z : drawn, a->z ? a->classes : labels, a->n, a->out, NULL);
    free(drawn);
    free(labels);
    return 0;
}

int clvae_decode(struct clvae_model *model, const float *z, int n, const int *classes, float *out,
                 struct clvae_status *status)
{
    int code = check_batch(model, "clvae_decode", n, z, classes, status);
    if (code)
        return code;
    if (!out)
        return refuse(status, CLVAE_STATUS_USAGE, "clvae_decode: out is NULL");
    struct decode_args a = {.m = model, .z = z, .n = n, .classes = classes, .out = out};
    return call(run_decode, &a, &model->dev->broken, status);
}

int clvae_sample(struct clvae_model *model, int n, uint64_t seed, double temperature, int cls,
                 float *out, struct clvae_status *status)
{
    int code = usable(model, "clvae_sample", status);
    if (code)
        return code;
    int classes = model->vae.cfg.classes;
    if (n < 1 || !out)
        return refuse(status, CLVAE_STATUS_USAGE, "clvae_sample: %s",
                      n < 1 ? "n is below 1" : "out is NULL");
    if (!(temperature > 0.0 && temperature <= 100.0))
        return refuse(status, CLVAE_STATUS_USAGE,
                      "clvae_sample: temperature %g is not in (0, 100] (generate's --temperature)",
                      temperature);
    if (cls < -1 || cls >= (classes ? classes : 0))
        return refuse(status, CLVAE_STATUS_USAGE, "clvae_sample: cls %d: %s", cls,
                      classes ? "not one of the model's classes (or -1: in turn)"
                              : "the model is not conditional; pass -1");
    struct decode_args a = {
        .m = model, .n = n, .cls = cls, .seed = seed, .temperature = temperature, .out = out};
    return call(run_decode, &a, &model->dev->broken, status);
}

// ---- Training

void clvae_train_defaults(struct clvae_train_options *o)
{
    struct train_options d;
    train_defaults(&d);
    *o = (struct clvae_train_options){.data = d.data_dir,
                                      .out_dir = d.out_dir,
                                      .epochs = d.epochs,
                                      .batch = d.batch,
                                      .lr = d.lr,
                                      .beta = d.beta,
                                      .seed = d.seed,
                                      .latent = d.model.latent};
}

struct train_args {
    const struct clvae_train_options *o;
};

// The engine's epoch row to the caller's callback.
static int on_epoch(const struct epoch_row *row, void *user)
{
    const struct clvae_train_options *o = user;
    struct clvae_epoch e = {.epoch = row->epoch,
                            .train_rec = row->rec,
                            .train_kl = row->kl,
                            .test_rec = row->test_rec,
                            .test_kl = row->test_kl,
                            .seconds = row->seconds,
                            .images_per_second = row->images_per_second,
                            .beta = row->beta,
                            .lr = row->lr};
    return o->on_epoch(&e, o->user);
}

// The checks the command line's option table makes (src/cmd/train.c), then train_run.
static int run_train(void *p, struct clvae_error *err)
{
    const struct clvae_train_options *o = ((struct train_args *)p)->o;
    struct train_options opt;
    train_defaults(&opt);
    if (o->epochs < 1 || o->epochs > 1000000)
        return clvae_fail(err, CLVAE_EXIT_USAGE, "epochs %d: give 1 to 1000000", o->epochs);
    if (o->batch < 1 || o->batch > (1 << 20))
        return clvae_fail(err, CLVAE_EXIT_USAGE, "batch %d: give 1 to %d", o->batch, 1 << 20);
    if (!(o->lr > 0.0 && o->lr <= 10.0))
        return clvae_fail(err, CLVAE_EXIT_USAGE, "lr %g: give more than 0, up to 10", o->lr);
    if (!(o->beta >= 0.0 && o->beta <= 1e6))
        return clvae_fail(err, CLVAE_EXIT_USAGE, "beta %g: give 0 to 1e6", o->beta);
    if (o->latent < 1 || o->latent > 4096)
        return clvae_fail(err, CLVAE_EXIT_USAGE, "latent %d: give 1 to 4096", o->latent);
    if (!o->data || !o->data[0] || !o->out_dir || !o->out_dir[0])
        return clvae_fail(err, CLVAE_EXIT_USAGE, "%s: empty path",
                          !o->data || !o->data[0] ? "data" : "out_dir");
    if ((o->platform && clrt_parse_selector("--platform", o->platform, err)) ||
        (o->device && clrt_parse_selector("--device", o->device, err)))
        return -1;
    if (o->likelihood && likelihood_parse("likelihood", o->likelihood, &opt.model.likelihood, err))
        return -1;
    opt.model.latent = o->latent;
    if (vae_parse_model(o->hidden, o->encoder, o->decoder, &opt.model, err))
        return -1;
    opt.model_option = vae_model_option(o->hidden, o->encoder, o->decoder);
    opt.platform = o->platform;
    opt.device = o->device;
    opt.data_dir = o->data;
    opt.out_dir = o->out_dir;
    opt.save_path = o->checkpoint;
    opt.epochs = o->epochs;
    opt.batch = o->batch;
    opt.lr = o->lr;
    opt.beta = o->beta;
    opt.seed = o->seed;
    opt.conditional = o->conditional != 0;
    opt.quiet = true;
    opt.keep_signals = true;
    if (o->on_epoch) {
        opt.on_epoch = on_epoch;
        opt.on_epoch_user = (void *)o;
    }
    return train_run(&opt, NULL, err);
}

int clvae_train(const struct clvae_train_options *options, struct clvae_status *status)
{
    if (!options)
        return refuse(status, CLVAE_STATUS_USAGE, "clvae_train: options is NULL");
    struct train_args a = {options};
    return call(run_train, &a, NULL, status);
}

// ---- Images

struct grid_args {
    const char *path;
    const struct clvae_shape *shape;
    const float *images;
    int n, cols;
};

static int write_grid(void *p, struct clvae_error *err)
{
    struct grid_args *a = p;
    const struct clvae_shape *s = a->shape;
    int cols = a->cols ? a->cols : (int)ceil(sqrt((double)a->n));
    int64_t height, width;
    if (png_grid_size((a->n + cols - 1) / cols, cols, s->height, s->width, 2, &height, &width))
        return clvae_fail(err, CLVAE_EXIT_USAGE,
                          "%s: %d images of %dx%d, %d a row, make a grid more than %d pixels a "
                          "side: ask for fewer",
                          a->path, a->n, s->width, s->height, cols, PNG_GRID_MAX_SIDE);
    size_t count = (size_t)a->n * (size_t)s->pixels;
    uint8_t *pixels = xmalloc(count);
    for (size_t i = 0; i < count; i++) // as model_io_decode makes the program's bytes
        pixels[i] = (uint8_t)lrintf(fminf(fmaxf(a->images[i], 0.0f), 1.0f) * 255.0f);
    int rc = png_write_tiles(a->path, pixels, a->n, s->height, s->width, s->channels, cols, 2, err);
    free(pixels);
    return rc;
}

int clvae_write_png_grid(const char *path, const struct clvae_shape *shape, const float *images,
                         int n, int cols, struct clvae_status *status)
{
    if (!path || !shape || !images || n < 1 || cols < 0)
        return refuse(status, CLVAE_STATUS_USAGE,
                      "clvae_write_png_grid: needs a path, a shape, images, n >= 1 and cols >= 0");
    if (shape->width < 1 || shape->height < 1 || (shape->channels != 1 && shape->channels != 3) ||
        shape->pixels != shape->width * shape->height * shape->channels)
        return refuse(status, CLVAE_STATUS_USAGE,
                      "clvae_write_png_grid: the shape is not of grey or RGB images");
    struct grid_args a = {path, shape, images, n, cols};
    return call(write_grid, &a, NULL, status);
}
