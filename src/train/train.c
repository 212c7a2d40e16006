#include "train.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "adam.h"
#include "atomic_file.h"
#include "checkpoint.h"
#include "cl_runtime.h"
#include "dataset.h"
#include "dist.h"
#include "idx.h"
#include "image_folder.h"
#include "philox.h"
#include "plot.h"
#include "png_grid.h"

#define GRID_COLS 8
#define GRID_SAMPLES 64     // prior samples in each samples_epochNNN.png
#define GRID_PAIRS 32       // test images beside their reconstructions
#define READ_EVERY 8        // steps between loss read-backs
#define READS_IN_FLIGHT 4   // read-backs the host may run ahead of the device
// On a CPU a step runs in passes of at most this many rows, its gradient summed over them: on
// PoCL here a batch of 16384 in one pass ran at 14 k img/s against 41 k at 1024 (the activations
// stop fitting in the caches). GPUs take the batch whole.
#define MICRO_BATCH_CPU 1024

// Set by SIGINT/SIGTERM; the training loop stops after the step in progress.
static volatile sig_atomic_t stop_requested;

static void request_stop(int sig)
{
    (void)sig;
    stop_requested = 1;
}

void train_defaults(struct train_options *opt)
{
    memset(opt, 0, sizeof *opt);
    opt->data_dir = "/usr/share/datasets/fashion-mnist";
    opt->out_dir = "out";
    opt->epochs = 30;
    opt->batch = 256;
    opt->lr = 1e-3;
    opt->beta = 1.0;
    opt->model.n_encoder = opt->model.n_decoder = 1;
    opt->model.encoder[0] = opt->model.decoder[0] = (struct layer_spec){.kind = LAYER_DENSE,
                                                                         .units = 128};
    opt->model.latent = 10;
    opt->model.likelihood = LIKELIHOOD_BERNOULLI;
    opt->model_option = "--hidden";
    opt->folder = (struct image_folder_options){.background = {255, 255, 255}, .test_split = 0.1};
    opt->seed = 1;
}

int train_best_path(const char *save_path, char *buf, size_t len)
{
    const char *slash = strrchr(save_path, '/');
    const char *base = slash ? slash + 1 : save_path;
    const char *dot = strrchr(base, '.');
    if (!dot || dot == base) // no extension (a leading dot is a hidden name, not one)
        dot = base + strlen(base);
    int n = snprintf(buf, len, "%.*s.best%s", (int)(dot - save_path), save_path, dot);
    return n < 0 || (size_t)n >= len ? -1 : 0;
}

double train_now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int train_make_dirs(const char *dir, struct clvae_error *err)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path)
        return clvae_fail(err, CLVAE_EXIT_OUTPUT, "%s: path too long", dir);
    for (char *p = path + 1;; p++) {
        if (*p != '/' && *p != '\0')
            continue;
        char c = *p;
        *p = '\0';
        if (mkdir(path, 0777) != 0 && errno != EEXIST)
            return clvae_fail(err, CLVAE_EXIT_OUTPUT, "%s: cannot create directory: %s", path,
                              strerror(errno));
        *p = c;
        if (c == '\0')
            break;
    }
    return 0;
}

// Creates dir (and its parents) and proves a file can be written there, before any training.
static int prepare_out_dir(const char *dir, struct clvae_error *err)
{
    char path[4096];
    // (Refused before any directory is made: a name too long for the probe is too long for PATH_MAX.)
    if (snprintf(path, sizeof path, "%s/.clvae-write-test-XXXXXX", dir) >= (int)sizeof path)
        return clvae_fail(err, CLVAE_EXIT_OUTPUT, "%s: path too long", dir);
    if (train_make_dirs(dir, err))
        return -1;
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return clvae_fail(err, CLVAE_EXIT_OUTPUT, "%s: not a directory", dir);
    int fd = mkstemp(path);
    if (fd < 0)
        return clvae_fail(err, CLVAE_EXIT_OUTPUT, "%s: cannot write there: %s", dir,
                          strerror(errno));
    // A short write (a disk with one byte left) must report why, not a stale errno.
    ssize_t w = write(fd, "ok", 2);
    if (w == 1)
        w = write(fd, "k", 1) == 1 ? 2 : -1;
    bool ok = w == 2 && fsync(fd) == 0;
    int saved = w >= 0 && w < 2 ? EIO : errno;
    close(fd);
    unlink(path);
    if (!ok)
        return clvae_fail(err, CLVAE_EXIT_OUTPUT, "%s: cannot write there: %s", dir,
                          strerror(saved));
    return 0;
}

// Everything one run holds on the device besides the model and the optimizer.
struct run {
    struct clrt *rt;
    struct vae *vae;
    int dim, rows, cols, channels, n_train, n_test;
    int n_classes;
    char **class_names; // borrowed: the data's, for the checkpoint
    int micro; // rows one forward/backward pass takes: the batch, or a part of it (MICRO_BATCH_CPU,
               // or fewer where a whole batch's activations would not fit: check_fits)
    struct clrt_parts train_data, test_data; // (count, dim) bytes, in parts of whole images when
                                             // larger than the largest allocation
    cl_mem train_index, test_index; // (count) ints: this epoch's order; the identity
    cl_mem train_rec, train_kl, test_rec, test_kl; // per-image losses of the current epoch
    float *host_rec, *host_kl; // (n_train) read back as the epoch goes
    float *host_test_rec, *host_test_kl;
    // Data-parallel training (dist.h): this process's rank of ranks; the gradient staged through
    // host memory for the sum across ranks, with one more float: the stop flag.
    int rank, ranks;
    float *host_grads;
    bool skip_sum; // $CLVAE_MPI_SKIP_ALLREDUCE=1: no gradient sum, for the tests to show it matters
    double exchange_seconds; // spent summing gradients across ranks (read, MPI, write)
    long exchanges;
};

// Rank rank's rows [*lo, *hi) of a step's rows: contiguous slices, the first ranks one larger.
static void slice(int rows, int rank, int ranks, int *lo, int *hi)
{
    *lo = (int)((int64_t)rows * rank / ranks);
    *hi = (int)((int64_t)rows * (rank + 1) / ranks);
}

// Where idx_read_images_into puts a data set: a device buffer it fills through a mapping, so that
// on a CPU device the file is read straight into the buffer and never held twice; or, when the
// set is larger than the largest allocation, host memory that is then uploaded in parts.
struct device_dest {
    struct clrt *rt;
    const char *name;
    cl_mem mem;
    void *mapped, *staged;
};

static uint8_t *map_device_dest(void *ctx, size_t bytes, struct clvae_error *err)
{
    struct device_dest *d = ctx;
    if (bytes > d->rt->max_alloc) {
        d->staged = malloc(bytes);
        if (!d->staged)
            clvae_fail(err, CLVAE_EXIT_DATA, "%s: %zu bytes of host memory are not available",
                       d->name, bytes);
        return d->staged;
    }
    if (!(d->mem = clrt_buffer(d->rt, bytes, d->name, err)))
        return NULL;
    cl_int status;
    d->mapped = clEnqueueMapBuffer(d->rt->queue, d->mem, CL_TRUE, CL_MAP_WRITE_INVALIDATE_REGION,
                                   0, bytes, 0, NULL, NULL, &status);
    CL_CHECK(status);
    return d->mapped;
}

// Host images (count of image bytes) into new device parts named name, whole images each.
static int upload_parts(struct clrt *rt, const void *host, size_t count, size_t image,
                        const char *name, struct clrt_parts *parts, struct clvae_error *err)
{
    if (clrt_parts_plan(rt, parts, count * image, image, name, err) ||
        clrt_parts_create(rt, parts, name, err))
        return -1;
    if (host)
        clrt_parts_write(rt, parts, host, true);
    return 0;
}

// Reads the IDX file at path into new device parts named name; *parts is set even on failure
// (nothing in it if nothing was allocated) so that the caller releases it.
static int read_to_device(struct clrt *rt, const char *path, const char *name,
                          struct idx_images *images, struct clrt_parts *parts,
                          struct clvae_error *err)
{
    struct device_dest d = {rt, name, NULL, NULL, NULL};
    memset(parts, 0, sizeof *parts);
    int rc = idx_read_images_into(path, images, map_device_dest, &d, err);
    if (d.mapped)
        CL_CHECK(clEnqueueUnmapMemObject(rt->queue, d.mem, d.mapped, 0, NULL, NULL));
    CL_CHECK(clFinish(rt->queue));
    if (d.mem) {
        parts->n = 1;
        parts->start[1] = (size_t)images->count * images->rows * images->cols;
        parts->mem[0] = d.mem;
    } else if (rc == 0 && d.staged) {
        rc = upload_parts(rt, d.staged, images->count, (size_t)images->rows * images->cols, name,
                          parts, err);
    }
    free(d.staged);
    images->pixels = NULL; // the device's (or freed), not ours
    return rc;
}

// What the data set is, whichever form it came in.
struct data_info {
    uint32_t n_train, n_test, height, width, channels;
    int n_classes;
    char **class_names; // owned: a PNG folder's class names
    uint64_t skipped;   // files --skip-bad-images left out
    bool folder, test_folder;
};

// DIR's IDX training and test images, read into device buffers, checked to agree in size.
static int load_idx(struct run *run, const char *dir, struct data_info *info,
                    struct clvae_error *err)
{
    char train_path[4096], test_path[4096];
    struct idx_images train = {0}, test = {0};
    if (idx_find(dir, "train-images-idx3-ubyte", train_path, sizeof train_path, err) ||
        idx_find(dir, "t10k-images-idx3-ubyte", test_path, sizeof test_path, err) ||
        read_to_device(run->rt, train_path, "training set", &train, &run->train_data, err) ||
        read_to_device(run->rt, test_path, "test set", &test, &run->test_data, err))
        return -1;
    if (train.rows != test.rows || train.cols != test.cols)
        return clvae_fail(err, CLVAE_EXIT_DATA,
                          "%s: training images are %ux%u but test images (%s) are %ux%u",
                          train_path, train.rows, train.cols, test_path, test.rows, test.cols);
    if ((uint64_t)train.rows * train.cols > (uint64_t)INT32_MAX / 2 ||
        train.count > (uint32_t)INT32_MAX || test.count > (uint32_t)INT32_MAX)
        return clvae_fail(err, CLVAE_EXIT_DATA, "%s: %u images of %ux%u is more than clvae handles",
                          train_path, train.count, train.rows, train.cols);
    *info = (struct data_info){.n_train = train.count, .n_test = test.count,
                               .height = train.rows, .width = train.cols, .channels = 1};
    return 0;
}

// DIR as a folder of PNG images (image_folder.h), uploaded as bytes.
static int load_folder(struct run *run, const char *dir, const struct train_options *opt,
                       struct data_info *info, struct clvae_error *err)
{
    struct image_folder_options o = opt->folder;
    o.seed = opt->seed;
    o.progress = !opt->quiet && isatty(STDERR_FILENO);
    o.empty_hint = "; nor IDX files (train-images-idx3-ubyte[.gz], t10k-images-idx3-ubyte[.gz])";
    struct image_folder f;
    if (image_folder_read(dir, &o, &f, err))
        return -1;
    const struct image_set *tr = &f.train, *te = &f.test;
    size_t image = (size_t)tr->height * tr->width * tr->channels;
    *info = (struct data_info){.n_train = tr->count, .n_test = te->count, .height = tr->height,
                               .width = tr->width, .channels = tr->channels,
                               .n_classes = f.n_classes, .class_names = f.class_names,
                               .skipped = f.skipped, .folder = true,
                               .test_folder = f.test_folder};
    f.class_names = NULL;
    f.n_classes = 0;
    int rc = 0;
    if (image > (size_t)INT32_MAX / 4 || tr->count > (uint32_t)INT32_MAX ||
        te->count > (uint32_t)INT32_MAX)
        rc = clvae_fail(err, CLVAE_EXIT_DATA, "%s: %u images of %ux%ux%u is more than clvae handles",
                        dir, tr->count, tr->width, tr->height, tr->channels);
    if (rc == 0 &&
        (upload_parts(run->rt, tr->pixels, tr->count, image, "training set", &run->train_data,
                      err) ||
         upload_parts(run->rt, te->pixels, te->count, image, "test set", &run->test_data, err)))
        rc = -1;
    image_folder_free(&f);
    return rc;
}

// The options that only shape a PNG folder, refused for IDX files rather than ignored.
static int check_idx_options(const struct train_options *opt, struct clvae_error *err)
{
    const char *name = opt->set_image_size        ? "--image-size"
                       : opt->set_test_split      ? "--test-split"
                       : opt->set_background      ? "--background"
                       : opt->folder.skip_bad     ? "--skip-bad-images"
                       : opt->set_channels && opt->folder.channels == 3 ? "--channels 3"
                                                   : NULL;
    if (name)
        return clvae_fail(err, CLVAE_EXIT_USAGE,
                          "%s: applies to folders of PNG images; %s holds IDX files (grey images "
                          "and their own test file)",
                          name, opt->data_dir);
    return 0;
}

// DIR's training and test images on the device: IDX files when DIR has them, else PNG images.
static int load_data(struct run *run, const struct train_options *opt, struct data_info *info,
                     struct clvae_error *err)
{
    if (dataset_is_idx(opt->data_dir))
        return check_idx_options(opt, err) || load_idx(run, opt->data_dir, info, err) ? -1 : 0;
    return load_folder(run, opt->data_dir, opt, info, err);
}

static cl_mem upload(struct run *run, const void *host, size_t bytes, const char *name,
                     struct clvae_error *err)
{
    cl_mem mem = clrt_buffer(run->rt, bytes, name, err);
    if (mem && host)
        CL_CHECK(clEnqueueWriteBuffer(run->rt->queue, mem, CL_TRUE, 0, bytes, host, 0, NULL, NULL));
    return mem;
}

static void run_release(struct run *run)
{
    clrt_parts_release(&run->train_data);
    clrt_parts_release(&run->test_data);
    cl_mem mems[] = {run->train_index, run->test_index, run->train_rec, run->train_kl,
                     run->test_rec, run->test_kl};
    for (size_t i = 0; i < sizeof mems / sizeof mems[0]; i++)
        if (mems[i])
            clReleaseMemObject(mems[i]);
    free(run->host_rec);
    free(run->host_kl);
    free(run->host_test_rec);
    free(run->host_test_kl);
    free(run->host_grads);
}

// A device buffer of floats set to zero: the rows other ranks fill stay 0 here, so that the sums
// across ranks of the per-image losses are everyone's.
static void zero_floats(struct run *run, cl_mem mem, size_t n)
{
    float zero = 0.0f;
    CL_CHECK(clEnqueueFillBuffer(run->rt->queue, mem, &zero, sizeof zero, 0, n * sizeof(float), 0,
                                 NULL, NULL));
}

// A fresh order of 0..n-1 for epoch (Fisher-Yates on Philox draws).
static void shuffle(int *order, int n, uint64_t seed, int epoch)
{
    for (int i = 0; i < n; i++)
        order[i] = i;
    for (int i = n - 1; i > 0; i--) {
        uint32_t r[4];
        philox_block(seed, (uint32_t)i, (uint64_t)epoch, PHILOX_STREAM_SHUFFLE, r);
        int j = (int)(((uint64_t)r[0] * (uint64_t)(i + 1)) >> 32);
        int t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
}

// A non-blocking read of the per-image losses of images [from, to) of this epoch.
struct readback {
    cl_event done;
    int from, to, step_end;
};

struct progress {
    bool live; // draw a progress bar (stderr is a terminal and not --quiet)
    bool report_first_step; // print how long the start took, once the first step is done
    double run_started;
    int epoch, epochs, steps, steps_done;
    double started, last_drawn, loss;
};

static void draw_progress(struct progress *p, bool force)
{
    double t = train_now_seconds();
    if (!p->live || (!force && t - p->last_drawn < 0.1))
        return;
    p->last_drawn = t;
    int width = 30, filled = p->steps ? width * p->steps_done / p->steps : 0;
    double eta = p->steps_done ? (t - p->started) * (p->steps - p->steps_done) / p->steps_done : 0;
    fprintf(stderr, "\r  epoch %d/%d [%.*s%*s] step %d/%d  loss %7.2f  ETA %5.1fs ", p->epoch,
            p->epochs, filled, "##############################", width - filled, "",
            p->steps_done, p->steps, p->loss, eta);
    fflush(stderr);
}

// Whether image i of the epoch's order lies in this rank's slice of its step.
static bool owns(const struct run *run, int i, int batch)
{
    if (run->ranks == 1)
        return true;
    int start = i / batch * batch, lo, hi;
    slice(run->n_train - start < batch ? run->n_train - start : batch, run->rank, run->ranks, &lo,
          &hi);
    return i - start >= lo && i - start < hi;
}

// Takes a finished read-back: its mean loss feeds the progress bar; a non-finite loss stops the
// run naming the step where it first appeared.
static int finish_readback(struct run *run, struct readback *rb, struct progress *p, int batch,
                           int64_t epoch_first_step, struct clvae_error *err)
{
    CL_CHECK(clWaitForEvents(1, &rb->done));
    CL_CHECK(clReleaseEvent(rb->done));
    rb->done = NULL;
    double sum = 0;
    int own = 0;
    for (int i = rb->from; i < rb->to; i++) {
        if (!owns(run, i, batch)) // another rank's row: it reads 0 here
            continue;
        own++;
        double loss = (double)run->host_rec[i] + (double)run->host_kl[i];
        if (!isfinite(loss)) {
            int step = i / batch;
            return clvae_fail(err, CLVAE_EXIT_DIVERGED,
                              "the loss became %s at step %lld (epoch %d, batch %d of %d); "
                              "stopping: try a smaller --lr",
                              isnan(loss) ? "NaN" : "infinite",
                              (long long)(epoch_first_step + step + 1), p->epoch, step + 1,
                              p->steps);
        }
        sum += loss;
    }
    p->loss = own ? sum / own : p->loss;
    p->steps_done = rb->step_end;
    draw_progress(p, false);
    return 0;
}

// Sums of the per-image reconstruction and KL losses, in double.
static void sum_losses(const float *rec, const float *kl, int n, double *rec_sum, double *kl_sum)
{
    double r = 0, k = 0;
    for (int i = 0; i < n; i++) {
        r += rec[i];
        k += kl[i];
    }
    *rec_sum = r;
    *kl_sum = k;
}

// Test-set negative ELBO with fresh noise (stream EVAL, counter epoch, each image's noise keyed
// by its number): fills the mean rec, KL. Each rank evaluates its slice of the test set; the
// per-image losses are summed across ranks.
static void evaluate(struct run *run, const struct train_options *opt, int epoch, double *rec,
                     double *kl)
{
    int chunk = run->micro, lo, hi;
    slice(run->n_test, run->rank, run->ranks, &lo, &hi);
    if (run->ranks > 1) {
        zero_floats(run, run->test_rec, (size_t)run->n_test);
        zero_floats(run, run->test_kl, (size_t)run->n_test);
    }
    for (int start = lo; start < hi; start += chunk) {
        int rows = hi - start < chunk ? hi - start : chunk;
        vae_gather(run->vae, &run->test_data, run->test_index, start, rows);
        struct vae_pass pass = {.rows = rows, .seed = opt->seed, .step = (uint64_t)epoch,
                                .stream = PHILOX_STREAM_EVAL, .noise_scale = 1.0f,
                                .rec = run->test_rec, .kl = run->test_kl, .offset = start,
                                .noise_row0 = start};
        vae_forward(run->vae, &pass);
    }
    size_t bytes = (size_t)run->n_test * sizeof(float);
    CL_CHECK(clEnqueueReadBuffer(run->rt->queue, run->test_rec, CL_FALSE, 0, bytes,
                                 run->host_test_rec, 0, NULL, NULL));
    CL_CHECK(clEnqueueReadBuffer(run->rt->queue, run->test_kl, CL_TRUE, 0, bytes,
                                 run->host_test_kl, 0, NULL, NULL));
    dist_sum_floats(run->host_test_rec, (size_t)run->n_test);
    dist_sum_floats(run->host_test_kl, (size_t)run->n_test);
    sum_losses(run->host_test_rec, run->host_test_kl, run->n_test, rec, kl);
    *rec /= run->n_test;
    *kl /= run->n_test;
}

// Means in [0, 1] -> bytes.
static void to_bytes(const float *mean, size_t n, uint8_t *bytes)
{
    for (size_t i = 0; i < n; i++)
        bytes[i] = (uint8_t)lrintf(fminf(fmaxf(mean[i], 0.0f), 1.0f) * 255.0f);
}

// OUT/samples_epochNNN.png (decoded fixed prior draws) and OUT/reconstructions_epochNNN.png
// (test images, each followed by its reconstruction from the posterior mean): each pixel the
// likelihood's mean, grey or RGB as the images are.
static int write_images(struct run *run, const struct train_options *opt, int epoch,
                        struct clvae_error *err)
{
    struct vae *vae = run->vae;
    size_t tile = (size_t)run->dim, out_dim = (size_t)vae->out_dim;
    enum likelihood_kind kind = vae->cfg.likelihood;
    float *out = xmalloc(GRID_SAMPLES * out_dim * sizeof(float));
    float *mean = xmalloc(GRID_SAMPLES * tile * sizeof(float));
    uint8_t *tiles = xmalloc(GRID_SAMPLES * tile);
    char path[4200];
    int status = 0;

    sampler_prior(vae, GRID_SAMPLES, opt->seed, 0, PHILOX_STREAM_GRID);
    vae_decode(vae, GRID_SAMPLES);
    CL_CHECK(clEnqueueReadBuffer(run->rt->queue, vae->logits, CL_TRUE, 0,
                                 GRID_SAMPLES * out_dim * sizeof(float), out, 0, NULL, NULL));
    likelihood_mean(kind, out, GRID_SAMPLES, run->dim, run->channels, mean);
    to_bytes(mean, GRID_SAMPLES * tile, tiles);
    snprintf(path, sizeof path, "%s/samples_epoch%03d.png", opt->out_dir, epoch);
    status = png_write_tiles(path, tiles, GRID_SAMPLES, run->rows, run->cols, run->channels,
                             GRID_COLS, 2, err);

    if (status == 0) {
        // The loss buffers' first rows are free once the evaluation has been read back.
        int pairs = run->n_test < GRID_PAIRS ? run->n_test : GRID_PAIRS;
        vae_gather(run->vae, &run->test_data, run->test_index, 0, pairs);
        struct vae_pass pass = {.rows = pairs, .seed = opt->seed,
                                .stream = PHILOX_STREAM_EVAL, .noise_scale = 0.0f,
                                .rec = run->test_rec, .kl = run->test_kl};
        vae_forward(vae, &pass);
        float *x = xmalloc((size_t)pairs * tile * sizeof(float));
        CL_CHECK(clEnqueueReadBuffer(run->rt->queue, vae->x, CL_FALSE, 0,
                                     (size_t)pairs * tile * sizeof(float), x, 0, NULL, NULL));
        CL_CHECK(clEnqueueReadBuffer(run->rt->queue, vae->logits, CL_TRUE, 0,
                                     (size_t)pairs * out_dim * sizeof(float), out, 0, NULL, NULL));
        likelihood_mean(kind, out, pairs, run->dim, run->channels, mean);
        for (size_t i = 0; i < (size_t)pairs; i++) {
            to_bytes(x + i * tile, tile, tiles + 2 * i * tile);
            to_bytes(mean + i * tile, tile, tiles + (2 * i + 1) * tile);
        }
        free(x);
        snprintf(path, sizeof path, "%s/reconstructions_epoch%03d.png", opt->out_dir, epoch);
        status = png_write_tiles(path, tiles, 2 * pairs, run->rows, run->cols, run->channels,
                                 GRID_COLS, 2, err);
    }
    free(out);
    free(mean);
    free(tiles);
    return status;
}

// Creates the index and loss buffers for the data already on the device.
static int run_setup(struct run *run, const struct data_info *data, struct clvae_error *err)
{
    run->dim = (int)(data->height * data->width * data->channels);
    run->rows = (int)data->height;
    run->cols = (int)data->width;
    run->channels = (int)data->channels;
    run->n_train = (int)data->n_train;
    run->n_test = (int)data->n_test;
    run->n_classes = data->n_classes;
    run->class_names = data->class_names;
    size_t ntr = (size_t)run->n_train, nte = (size_t)run->n_test;
    int *identity = xmalloc(nte * sizeof(int));
    for (size_t i = 0; i < nte; i++)
        identity[i] = (int)i;
    run->train_index = upload(run, NULL, ntr * sizeof(int), "training order", err);
    run->test_index =
        run->train_index ? upload(run, identity, nte * sizeof(int), "test order", err) : NULL;
    free(identity);
    if (!run->test_index ||
        !(run->train_rec = upload(run, NULL, ntr * sizeof(float), "training losses", err)) ||
        !(run->train_kl = upload(run, NULL, ntr * sizeof(float), "training KL terms", err)) ||
        !(run->test_rec = upload(run, NULL, nte * sizeof(float), "test losses", err)) ||
        !(run->test_kl = upload(run, NULL, nte * sizeof(float), "test KL terms", err)))
        return -1;
    run->host_rec = xmalloc(ntr * sizeof(float));
    run->host_kl = xmalloc(ntr * sizeof(float));
    run->host_test_rec = xmalloc(nte * sizeof(float));
    run->host_test_kl = xmalloc(nte * sizeof(float));
    if (run->ranks > 1)
        run->host_grads = xmalloc((run->vae->n_params + 1) * sizeof(float));
    const char *skip = getenv("CLVAE_MPI_SKIP_ALLREDUCE");
    run->skip_sum = skip && strcmp(skip, "1") == 0;
    return 0;
}

// With several ranks: the gradient of the whole batch in every rank, each rank's (its slice's;
// zero when it has none) summed across ranks through host memory, the stop flag riding along.
// Returns whether any rank asked to stop; one rank alone returns stop.
static bool exchange_gradients(struct run *run, bool has_rows, bool stop)
{
    if (run->ranks == 1)
        return stop;
    cl_command_queue queue = run->rt->queue;
    size_t n = run->vae->n_params, bytes = n * sizeof(float);
    CL_CHECK(clFinish(queue)); // the step's compute, so that what follows is the exchange alone
    double t0 = train_now_seconds();
    if (has_rows)
        clrt_parts_read(run->rt, &run->vae->grads, run->host_grads, true);
    else
        memset(run->host_grads, 0, bytes);
    run->host_grads[n] = stop ? 1.0f : 0.0f;
    if (run->skip_sum) { // each rank steps on its own slice (the tests' control run)
        float any_stop = run->host_grads[n];
        dist_sum_floats(&any_stop, 1);
        run->host_grads[n] = any_stop;
    } else {
        dist_sum_floats(run->host_grads, n + 1);
    }
    // In order before the next read into host_grads, which waits for it.
    clrt_parts_write(run->rt, &run->vae->grads, run->host_grads, false);
    run->exchange_seconds += train_now_seconds() - t0;
    run->exchanges++;
    return run->host_grads[n] > 0.0f;
}

// One pass over the shuffled training set from step first_step on; fills the mean rec and KL of
// the images it trained on, and *steps_done (less than the epoch's steps when a stop was requested).
static int train_epoch(struct run *run, const struct train_options *opt, struct adam *adam,
                       int *order, struct progress *prog, int first_step_in_epoch, int *steps_done,
                       double *rec, double *kl, struct clvae_error *err)
{
    cl_command_queue queue = run->rt->queue;
    int n = run->n_train, batch = opt->batch;
    shuffle(order, n, opt->seed, prog->epoch);
    CL_CHECK(clEnqueueWriteBuffer(queue, run->train_index, CL_TRUE, 0, (size_t)n * sizeof(int),
                                  order, 0, NULL, NULL));
    int64_t first_step = adam->step - first_step_in_epoch;
    if (run->ranks > 1) {
        zero_floats(run, run->train_rec, (size_t)n);
        zero_floats(run, run->train_kl, (size_t)n);
    }
    struct readback ring[READS_IN_FLIGHT];
    int head = 0, pending = 0, read_from = first_step_in_epoch * batch, read_upto = read_from;
    prog->steps = (n + batch - 1) / batch;
    prog->steps_done = first_step_in_epoch;
    prog->started = train_now_seconds();
    *steps_done = prog->steps;
    for (int step = first_step_in_epoch; step < prog->steps; step++) {
        int start = step * batch, rows = n - start < batch ? n - start : batch, lo, hi;
        // This rank's slice of the step's rows (all of them on one rank), in micro-batches of
        // at most run->micro rows whose gradients add up; the noise is the batch row's.
        slice(rows, run->rank, run->ranks, &lo, &hi);
        for (int first = lo; first < hi; first += run->micro) {
            int part = hi - first < run->micro ? hi - first : run->micro;
            vae_gather(run->vae, &run->train_data, run->train_index, start + first, part);
            struct vae_pass pass = {.rows = part, .seed = opt->seed, .step = (uint64_t)adam->step,
                                    .stream = PHILOX_STREAM_TRAIN, .noise_scale = 1.0f,
                                    .rec = run->train_rec, .kl = run->train_kl,
                                    .offset = start + first, .grad_scale = 1.0f / (float)rows,
                                    .noise_row0 = first, .accumulate = first > lo};
            vae_forward(run->vae, &pass);
            vae_backward(run->vae, &pass, (float)opt->beta);
        }
        bool stopping = exchange_gradients(run, hi > lo, stop_requested);
        adam_step(adam, &run->vae->params, &run->vae->grads);
        if (prog->report_first_step) {
            // One wait in the whole run, so that the figure includes compiling CLBlast's kernels.
            if (prog->live)
                fprintf(stderr, "clvae: first step: %s compiles its GEMM kernels for this "
                                "device unless a driver cache holds them...",
                        run->rt->own_gemm ? "the OpenCL driver" : "CLBlast");
            CL_CHECK(clFinish(queue));
            if (prog->live)
                fprintf(stderr, "\r%*s\r", 100, "");
            printf("clvae: first training step done %.2f s after start\n",
                   train_now_seconds() - prog->run_started);
            fflush(stdout);
            prog->report_first_step = false;
        }
        if ((step + 1) % READ_EVERY != 0 && step + 1 != prog->steps && !stopping)
            continue;
        if (pending == READS_IN_FLIGHT) {
            struct readback *old = &ring[(head + READS_IN_FLIGHT - pending) % READS_IN_FLIGHT];
            pending--;
            if (finish_readback(run, old, prog, batch, first_step, err))
                return -1;
        }
        struct readback *rb = &ring[head];
        head = (head + 1) % READS_IN_FLIGHT;
        pending++;
        rb->from = read_upto;
        rb->to = start + rows;
        rb->step_end = step + 1;
        size_t off = (size_t)rb->from * sizeof(float), bytes = (size_t)(rb->to - rb->from) * sizeof(float);
        CL_CHECK(clEnqueueReadBuffer(queue, run->train_rec, CL_FALSE, off, bytes,
                                     run->host_rec + rb->from, 0, NULL, NULL));
        CL_CHECK(clEnqueueReadBuffer(queue, run->train_kl, CL_FALSE, off, bytes,
                                     run->host_kl + rb->from, 0, NULL, &rb->done));
        CL_CHECK(clFlush(queue));
        read_upto = rb->to;
        if (stopping) {
            *steps_done = step + 1;
            break;
        }
    }
    while (pending > 0) {
        struct readback *old = &ring[(head + READS_IN_FLIGHT - pending) % READS_IN_FLIGHT];
        pending--;
        if (finish_readback(run, old, prog, batch, first_step, err))
            return -1;
    }
    dist_sum_floats(run->host_rec + read_from, (size_t)(read_upto - read_from));
    dist_sum_floats(run->host_kl + read_from, (size_t)(read_upto - read_from));
    sum_losses(run->host_rec + read_from, run->host_kl + read_from, read_upto - read_from, rec, kl);
    *rec /= read_upto - read_from;
    *kl /= read_upto - read_from;
    return 0;
}

// Writes params and Adam's state after `epoch` whole epochs and epoch_step steps of the next to
// path (--save, or its best-epoch twin).
static int save_checkpoint(struct run *run, const struct train_options *opt, struct adam *adam,
                           const char *path, int epoch, int epoch_step, struct clvae_error *err)
{
    size_t n = run->vae->n_params, bytes = n * sizeof(float);
    float *host = xmalloc(3 * bytes);
    clrt_parts_read(run->rt, &run->vae->params, host, false);
    clrt_parts_read(run->rt, &adam->m, host + n, false);
    clrt_parts_read(run->rt, &adam->v, host + 2 * n, true);
    // The last good checkpoint is worth more than one of a model that has diverged.
    for (size_t i = 0; i < 3 * n; i++) {
        if (!isfinite(host[i])) {
            free(host);
            return clvae_fail(err, CLVAE_EXIT_DIVERGED,
                              "the model's %s hold a non-finite value after step %lld; %s keeps "
                              "the last good checkpoint: try a smaller --lr",
                              i < n ? "parameters" : "Adam moments", (long long)adam->step,
                              path);
        }
    }
    struct ckpt_meta meta = {
        .cfg = run->vae->cfg,
        .image_rows = run->rows,
        .image_cols = run->cols,
        .channels = run->channels,
        .background = {opt->folder.background[0], opt->folder.background[1],
                       opt->folder.background[2]},
        .test_split = opt->folder.test_split,
        .n_classes = run->n_classes,
        .class_names = run->class_names,
        .batch = opt->batch,
        .lr = opt->lr,
        .beta = opt->beta,
        .seed = opt->seed,
        .epoch = epoch,
        .step = adam->step,
        .epoch_step = epoch_step,
        .has_optimizer = true,
    };
    int status = checkpoint_save(path, &meta, host, host + n, host + 2 * n, err);
    free(host);
    return status;
}

// With --resume: the training options the checkpoint fixes, checked against those given.
static int merge_resume(struct train_options *o, const struct ckpt *ck, struct clvae_error *err)
{
    const struct ckpt_meta *m = &ck->meta;
    const char *path = o->resume_path;
    if (!m->has_optimizer)
        return clvae_fail(err, CLVAE_EXIT_DATA,
                          "%s: holds no optimizer state; --resume needs a checkpoint written by "
                          "clvae train --save",
                          path);
    if (o->set_model && !vae_same_layers(&o->model, &m->cfg))
        return clvae_fail(err, CLVAE_EXIT_USAGE,
                          "--resume %s: the checkpoint's architecture differs from "
                          "--hidden/--encoder/--decoder/--latent given (leave them out to take "
                          "the checkpoint's)",
                          path);
    if (o->set_batch && o->batch != m->batch)
        return clvae_fail(err, CLVAE_EXIT_USAGE, "--batch %d: the checkpoint %s was trained with %d",
                          o->batch, path, m->batch);
    if (o->set_lr && o->lr != m->lr)
        return clvae_fail(err, CLVAE_EXIT_USAGE, "--lr %g: the checkpoint %s was trained with %g",
                          o->lr, path, m->lr);
    if (o->set_beta && o->beta != m->beta)
        return clvae_fail(err, CLVAE_EXIT_USAGE, "--beta %g: the checkpoint %s was trained with %g",
                          o->beta, path, m->beta);
    if (o->set_seed && o->seed != m->seed)
        return clvae_fail(err, CLVAE_EXIT_USAGE,
                          "--seed %llu: the checkpoint %s was trained with %llu",
                          (unsigned long long)o->seed, path, (unsigned long long)m->seed);
    if (o->set_likelihood && o->model.likelihood != m->cfg.likelihood)
        return clvae_fail(err, CLVAE_EXIT_USAGE,
                          "--likelihood %s: the checkpoint %s was trained with %s",
                          likelihood_name(o->model.likelihood), path,
                          likelihood_name(m->cfg.likelihood));
    if (o->set_channels && o->folder.channels != m->channels)
        return clvae_fail(err, CLVAE_EXIT_USAGE, "--channels %d: the checkpoint %s was trained with %d",
                          o->folder.channels, path, m->channels);
    if (o->set_image_size && (o->folder.width != m->image_cols || o->folder.height != m->image_rows))
        return clvae_fail(err, CLVAE_EXIT_USAGE,
                          "--image-size %dx%d: the checkpoint %s was trained on %dx%d images",
                          o->folder.width, o->folder.height, path, m->image_cols, m->image_rows);
    if (o->set_background && memcmp(o->folder.background, m->background, 3) != 0)
        return clvae_fail(err, CLVAE_EXIT_USAGE,
                          "--background: the checkpoint %s was trained on %d,%d,%d", path,
                          m->background[0], m->background[1], m->background[2]);
    if (o->set_test_split && o->folder.test_split != m->test_split)
        return clvae_fail(err, CLVAE_EXIT_USAGE,
                          "--test-split %g: the checkpoint %s was trained with %g",
                          o->folder.test_split, path, m->test_split);
    if (m->epoch >= o->epochs)
        return clvae_fail(err, CLVAE_EXIT_USAGE,
                          "--epochs %d: the checkpoint %s has already trained %d epochs", o->epochs,
                          path, m->epoch);
    o->model = m->cfg;
    // A PNG folder is read as it was: its images resized to the model's size if they differ.
    o->folder.channels = m->channels;
    o->folder.width = m->image_cols;
    o->folder.height = m->image_rows;
    memcpy(o->folder.background, m->background, 3);
    o->folder.test_split = m->test_split;
    o->batch = m->batch;
    o->lr = m->lr;
    o->beta = m->beta;
    o->seed = m->seed;
    return 0;
}

// Everything one training run holds, from train_open to train_close; zeroed at the start.
struct trainer {
    struct train_options opt;
    struct ckpt resume;
    struct sigaction old_int, old_term;
    struct data_info data;
    struct clrt rt;
    struct vae vae;
    struct adam adam;
    struct run run;
    struct vae_config cfg; // the architecture, laid out on the data's image size
    FILE *metrics;
    char metrics_path[4200];
    int *order;
    struct progress prog;
    int start_epoch, start_step;
    double loop_start, launches_per_step;
    double best_test;    // the lowest test loss of an epoch so far (a resumed run's metrics too)
    char best_path[4200]; // where --save's best-epoch checkpoint goes
    bool root;            // rank 0 (or the only process): it alone prints and writes
    bool collective;      // the failure met is every rank's (the same step, the same message)
};

// What gave the architecture, named in messages about it: the checkpoint resumed, or the option.
static const char *model_source(const struct train_options *opt)
{
    return opt->resume_path ? opt->resume_path : opt->model_option;
}

// The model's size against the device's limits, refused at once, rather than after building the
// kernels; run.micro and *max_rows set. Parameters larger than the largest allocation go in parts
// (vae_plan_parts; only one layer's own can be too large), and activations that are too large, or
// too many for the device's memory, in smaller micro-batches: halved down to the image grids' rows.
static int check_fits(struct trainer *t, int *max_rows, struct clvae_error *err)
{
    const struct train_options *opt = &t->opt;
    const char *source = model_source(opt);
    struct vae layout;
    if (vae_layout(&layout, &t->cfg, source, err) ||
        vae_plan_parts(&layout, &t->rt, source, err))
        return -1;
    int micro = t->rt.device_type & CL_DEVICE_TYPE_CPU && opt->batch > MICRO_BATCH_CPU
                    ? MICRO_BATCH_CPU
                    : opt->batch;
    for (;;) {
        *max_rows = micro > 2 * GRID_PAIRS ? micro : 2 * GRID_PAIRS;
        size_t largest;
        const char *largest_name;
        size_t need = vae_device_bytes(&layout, &t->rt, *max_rows, &largest, &largest_name) +
                      2 * layout.n_params * sizeof(float); // Adam's moments
        if (largest <= t->rt.max_alloc && t->rt.allocated + need <= t->rt.global_mem)
            break;
        if (micro <= 2 * GRID_PAIRS) {
            char given[64];
            snprintf(given, sizeof given, "%s/--latent/--batch", opt->model_option);
            return clvae_fail(
                err, CLVAE_EXIT_DEVICE,
                "%s: the model needs %zu bytes of device memory at %d rows "
                "a pass (parameters %zu bytes, and as much again for each of their gradients "
                "and Adam's two moments; its largest activations, '%s', %zu bytes) besides the "
                "data's %zu; %s has %llu bytes, and %s is %llu bytes%s",
                opt->resume_path ? source : given, need, *max_rows,
                layout.n_params * sizeof(float), largest_name, largest, t->rt.allocated,
                t->rt.device_name, (unsigned long long)t->rt.global_mem, t->rt.max_alloc_name,
                (unsigned long long)t->rt.max_alloc,
                opt->resume_path ? "" : ": use fewer or narrower layers");
        }
        micro = (micro + 1) / 2;
    }
    t->run.micro = micro;
    return 0;
}

// Proves OUT and --save can be written (directory exists, is writable, the path is not a
// directory) before an epoch's work depends on them; creates OUT.
static int check_outputs(const struct train_options *opt, struct clvae_error *err)
{
    if (prepare_out_dir(opt->out_dir, err))
        return -1;
    if (opt->save_path) {
        struct atomic_file probe;
        if (atomic_file_open(&probe, opt->save_path, err)) {
            char reason[CLVAE_ERROR_MAX];
            snprintf(reason, sizeof reason, "%s", err->msg);
            return clvae_fail(err, CLVAE_EXIT_OUTPUT, "--save: %s", reason);
        }
        atomic_file_abort(&probe);
    }
    return 0;
}

// The parameters and Adam's state: the checkpoint's with --resume, else a fresh start.
static void load_state(struct trainer *t)
{
    size_t param_bytes = t->vae.n_params * sizeof(float);
    t->start_epoch = 1;
    t->start_step = 0;
    if (t->opt.resume_path) {
        clrt_parts_write(&t->rt, &t->vae.params, t->resume.params, false);
        clrt_parts_write(&t->rt, &t->adam.m, t->resume.adam_m, false);
        clrt_parts_write(&t->rt, &t->adam.v, t->resume.adam_v, true);
        t->adam.step = t->resume.meta.step;
        t->start_epoch = t->resume.meta.epoch + 1;
        t->start_step = t->resume.meta.epoch_step;
        checkpoint_free(&t->resume);
    } else {
        float *init = xmalloc(param_bytes);
        vae_init_params_host(&t->vae, t->opt.seed, init);
        clrt_parts_write(&t->rt, &t->vae.params, init, true);
        free(init);
    }
}

// Every rank's "host: device (platform)", one line each, printed by rank 0.
static void print_ranks(const struct trainer *t)
{
    enum { LEN = 352 }; // the longest line: a host name of 63, names of 127, a count of 10 digits
    char host[64] = "?", mine[LEN];
    gethostname(host, sizeof host - 1);
    snprintf(mine, sizeof mine, "%s: %s (%s), %u compute units", host, t->rt.device_name,
             t->rt.platform_name, t->rt.compute_units);
    int ranks = t->run.ranks;
    char *all = xcalloc((size_t)ranks, LEN);
    dist_gather_text(mine, all, LEN);
    if (t->root && !t->opt.quiet) {
        printf("clvae: %d ranks, the batch of %d split across them\n", ranks, t->opt.batch);
        for (int r = 0; r < ranks; r++)
            printf("clvae: rank %d on %s\n", r, all + (size_t)r * LEN);
    }
    free(all);
}

// The start banner: device, model, data, memory, and where a resumed run carries on. With several
// ranks, every rank takes part (their devices are gathered) and rank 0 prints.
static void print_banner(const struct trainer *t)
{
    const struct clrt *rt = &t->rt;
    const struct run *run = &t->run;
    char shape[160];
    vae_describe(&t->cfg, shape, sizeof shape);
    if (run->ranks > 1)
        print_ranks(t);
    if (t->opt.quiet)
        return;
    if (run->ranks == 1)
        printf("clvae: device %s (%s), %u compute units; matrix products by %s\n",
               rt->device_name, rt->platform_name, rt->compute_units, clrt_gemm_engine(rt));
    if (rt->tuning_source[0])
        printf("clvae: CLBlast's GEMM parameters from clvae tune: %s\n", rt->tuning_source);
    const struct data_info *data = &t->data;
    printf("clvae: model %s, %zu parameters, %s likelihood\n", shape, t->vae.n_params,
           likelihood_name(t->cfg.likelihood));
    printf("clvae: data %s: %d training and %d test images%s of %dx%d, %d channel%s", t->opt.data_dir,
           run->n_train, run->n_test,
           data->folder ? (data->test_folder ? " (test/ folder)" : " (seeded split)") : "",
           run->cols, run->rows, run->channels, run->channels == 1 ? "" : "s");
    if (data->n_classes)
        printf(", %d classes", data->n_classes);
    if (data->skipped)
        printf(", %llu bad files skipped", (unsigned long long)data->skipped);
    printf("\n");
    printf("clvae: device memory %.1f MiB (data %.1f, parameters+gradients+Adam %.1f, "
           "activations %.1f)\n",
           (double)rt->allocated / 1048576.0,
           (double)((size_t)(run->n_train + run->n_test) * (size_t)run->dim) / 1048576.0,
           (double)(4 * t->vae.n_params * sizeof(float)) / 1048576.0,
           (double)t->vae.activation_bytes / 1048576.0);
    // What does not fit the device's largest allocation at once: buffers in parts, passes of
    // fewer rows than the batch (a CPU's cache-sized micro-batches are the rule, not news).
    const struct clrt_parts *split[] = {&run->train_data, &run->test_data, &t->vae.params};
    static const char *const split_names[] = {"training set", "test set", "parameters"};
    bool cpu_micro = t->rt.device_type & CL_DEVICE_TYPE_CPU && run->micro == MICRO_BATCH_CPU;
    bool passes = run->micro < t->opt.batch && !cpu_micro, any = passes;
    for (size_t i = 0; i < sizeof split / sizeof split[0]; i++)
        any = any || split[i]->n > 1;
    if (any) {
        printf("clvae: larger than %s's largest allocation (%llu bytes):", rt->device_name,
               (unsigned long long)rt->max_alloc);
        const char *sep = " ";
        for (size_t i = 0; i < sizeof split / sizeof split[0]; i++)
            if (split[i]->n > 1) {
                printf("%s%s in %d buffers", sep, split_names[i], split[i]->n);
                sep = ", ";
            }
        if (passes)
            printf("%sa batch in passes of %d rows", sep, run->micro);
        printf("\n");
    }
    if (t->opt.save_path)
        printf("clvae: checkpoints: %s after every epoch, %s at the best test epoch\n",
               t->opt.save_path, t->best_path);
    if (t->opt.resume_path)
        printf("clvae: resuming %s after epoch %d, step %lld\n", t->opt.resume_path,
               t->start_epoch - 1, (long long)t->adam.step);
    fflush(stdout);
}

// The lowest test loss metrics.csv holds (a resumed run's), else infinity.
static double best_so_far(struct trainer *t)
{
    double best = INFINITY, *rows = NULL;
    int n = 0;
    struct clvae_error ignore;
    if (t->opt.resume_path && plot_read_metrics(t->metrics_path, true, &rows, &n, &ignore) == 0)
        for (int i = 0; i < n; i++)
            best = fmin(best, rows[i * PLOT_METRICS_COLUMNS + 4]);
    free(rows);
    return best;
}

// Everything before the first epoch: signals, the checkpoint to resume, the device, the data,
// the checks, the kernels, the model, its state, metrics.csv.
// OUT/metrics.csv for writing (appending when append): refused unless it is a regular file or
// absent, without blocking (fopen would wait on a FIFO for a reader).
static FILE *open_metrics(const char *path, bool append, struct clvae_error *err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_NONBLOCK | O_CLOEXEC | (append ? O_APPEND : O_TRUNC),
                  0666);
    struct stat st;
    const char *why = fd < 0 ? (errno == ENXIO ? "not a regular file" : strerror(errno))
                      : fstat(fd, &st) != 0 ? strerror(errno)
                      : !S_ISREG(st.st_mode) ? "not a regular file"
                                             : NULL;
    int flags = why ? -1 : fcntl(fd, F_GETFL);
    FILE *fp = NULL;
    // At the end, as fopen's "a" would be: ftell then says whether the header is there.
    if (!why && (flags == -1 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) == -1 ||
                 !(fp = fdopen(fd, append ? "a" : "w")) || fseek(fp, 0, SEEK_END) != 0))
        why = strerror(errno);
    if (!why)
        return fp;
    if (fp)
        fclose(fp);
    else if (fd >= 0)
        close(fd);
    clvae_fail(err, CLVAE_EXIT_OUTPUT, "%s: %s", path, why);
    return NULL;
}

static int train_open(struct trainer *t, const struct train_options *given,
                      struct clvae_error *err)
{
    struct train_options *opt = &t->opt;
    *opt = *given;
    double run_started = train_now_seconds();
    t->run.rank = dist_rank();
    t->run.ranks = dist_size();
    t->root = t->run.rank == 0;
    if (!t->root)
        opt->quiet = true;
    if (t->run.ranks > 1)
        clrt_prefer_gpu(dist_local_rank()); // a node's ranks on its GPUs in turn
    struct sigaction stop = {0};
    stop_requested = 0;
    stop.sa_handler = request_stop;
    stop.sa_flags = SA_RESETHAND; // a second signal takes the default action: exit at once
    sigemptyset(&stop.sa_mask);
    sigaction(SIGINT, &stop, &t->old_int);
    sigaction(SIGTERM, &stop, &t->old_term);

    if (opt->resume_path && (checkpoint_load(opt->resume_path, &t->resume, err) ||
                             merge_resume(opt, &t->resume, err)))
        return -1;
    if (opt->save_path && train_best_path(opt->save_path, t->best_path, sizeof t->best_path))
        return clvae_fail(err, CLVAE_EXIT_USAGE, "--save %s: the path is too long", opt->save_path);
    t->run.rt = &t->rt;
    t->run.vae = &t->vae;
    const struct data_info *data = &t->data;
    if (clrt_open(&t->rt, opt->platform, opt->device, opt->profile, err) ||
        load_data(&t->run, opt, &t->data, err))
        return -1;
    const struct ckpt_meta *rm = &t->resume.meta;
    if (opt->resume_path && ((int)data->height != rm->image_rows ||
                             (int)data->width != rm->image_cols ||
                             (int)data->channels != rm->channels))
        return clvae_fail(err, CLVAE_EXIT_DATA,
                          "%s: the checkpoint is for %dx%dx%d images, but the %s images in %s "
                          "are %ux%ux%u",
                          opt->resume_path, rm->image_cols, rm->image_rows, rm->channels,
                          data->folder ? "PNG" : "IDX", opt->data_dir, data->width, data->height,
                          data->channels);
    if ((uint32_t)opt->batch > data->n_train)
        return clvae_fail(err, CLVAE_EXIT_USAGE,
                          "--batch: %d is larger than the training set (%u images)", opt->batch,
                          data->n_train);
    t->cfg = opt->model;
    t->cfg.in_dim = (int)(data->height * data->width * data->channels);
    t->cfg.channels = (int)data->channels;
    t->cfg.height = (int)data->height;
    t->cfg.width = (int)data->width;
    int max_rows;
    // The output directory is created once the data and the device are known to be good, so a
    // failed start leaves no empty directories behind, and still before any training.
    if (check_fits(t, &max_rows, err) || (t->root && check_outputs(opt, err)))
        return -1;
    bool tty = !opt->quiet && isatty(STDERR_FILENO);
    if (tty)
        fprintf(stderr, "clvae: compiling the OpenCL kernels for %s...", t->rt.device_name);
    if (clrt_build(&t->rt, err))
        return -1;
    if (tty)
        fprintf(stderr, "\r%*s\r", 100, "");
    if (vae_create(&t->vae, &t->rt, &t->cfg, max_rows, model_source(opt), err) ||
        adam_create(&t->adam, &t->rt, &t->vae.params, opt->lr, err) ||
        run_setup(&t->run, &t->data, err))
        return -1;
    load_state(t);
    t->order = xmalloc((size_t)t->run.n_train * sizeof(int));
    t->prog = (struct progress){.live = !opt->quiet && isatty(STDERR_FILENO),
                                .report_first_step = !opt->quiet,
                                .run_started = run_started,
                                .epochs = opt->epochs};
    if (!t->root)
        return 0;
    // A resumed run carries on the metrics of the run it continues.
    snprintf(t->metrics_path, sizeof t->metrics_path, "%s/metrics.csv", opt->out_dir);
    if (!(t->metrics = open_metrics(t->metrics_path, opt->resume_path != NULL, err)))
        return -1;
    if (ftell(t->metrics) == 0)
        fprintf(t->metrics, "epoch,train_neg_elbo,train_rec,train_kl,test_neg_elbo,test_rec,"
                            "test_kl,seconds,images_per_second,test_bits_per_dim\n");
    t->best_test = best_so_far(t);
    return 0;
}

// A stop requested in the middle of epoch after done_steps of its steps: the checkpoint, then
// the message saying where it is; always -1 (CLVAE_EXIT_INTERRUPTED).
static int stop_mid_epoch(struct trainer *t, int epoch, int done_steps, struct clvae_error *err)
{
    const struct train_options *opt = &t->opt;
    if (t->prog.live)
        fprintf(stderr, "\r%*s\r", 90, "");
    // Every rank stops after the same step (exchange_gradients); rank 0 writes.
    t->collective = true;
    if (t->root && opt->save_path &&
        save_checkpoint(&t->run, opt, &t->adam, opt->save_path, epoch - 1, done_steps, err)) {
        t->collective = false;
        return -1;
    }
    if (opt->save_path)
        return clvae_fail(err, CLVAE_EXIT_INTERRUPTED,
                          "interrupted in epoch %d after step %d of %d; checkpoint written to %s "
                          "(carry on with: clvae train --resume %s --save %s)",
                          epoch, done_steps, t->prog.steps, opt->save_path, opt->save_path,
                          opt->save_path);
    return clvae_fail(err, CLVAE_EXIT_INTERRUPTED,
                      "interrupted in epoch %d after step %d of %d; no checkpoint written (train "
                      "with --save FILE to keep one)",
                      epoch, done_steps, t->prog.steps);
}

// Appends epoch's row to metrics.csv, whole or not at all: a failed write is cut back off.
// nats per image -> bits per dimension (pixel and channel).
static double bits_per_dim(const struct trainer *t, double nats)
{
    return nats / (log(2.0) * (double)t->cfg.in_dim);
}

static int write_metrics_row(struct trainer *t, int epoch, double rec, double kl, double test_rec,
                             double test_kl, double seconds, double ips, struct clvae_error *err)
{
    FILE *metrics = t->metrics;
    long row_start = ftell(metrics);
    fprintf(metrics, "%d,%.4f,%.4f,%.4f,%.4f,%.4f,%.4f,%.4f,%.1f,%.5f\n", epoch, rec + kl, rec, kl,
            test_rec + test_kl, test_rec, test_kl, seconds, ips,
            bits_per_dim(t, test_rec + test_kl));
    if (fflush(metrics) != 0) {
        int saved = errno;
        clearerr(metrics);
        if (row_start >= 0 && ftruncate(fileno(metrics), row_start) == 0)
            fseek(metrics, row_start, SEEK_SET);
        return clvae_fail(err, CLVAE_EXIT_OUTPUT, "%s: %s", t->metrics_path, strerror(saved));
    }
    return 0;
}

// One epoch: training, the test set's loss, the line, metrics.csv, the images, the checkpoint.
static int train_one_epoch(struct trainer *t, int epoch, struct clvae_error *err)
{
    const struct train_options *opt = &t->opt;
    double t0 = train_now_seconds(), rec, kl, test_rec, test_kl;
    int first = epoch == t->start_epoch ? t->start_step : 0, done_steps;
    t->prog.epoch = epoch;
    long launches_before = t->rt.launches;
    if (train_epoch(&t->run, opt, &t->adam, t->order, &t->prog, first, &done_steps, &rec, &kl,
                    err))
        return -1;
    if (done_steps < t->prog.steps)
        return stop_mid_epoch(t, epoch, done_steps, err);
    double seconds = train_now_seconds() - t0;
    if (done_steps > first)
        t->launches_per_step =
            (double)(t->rt.launches - launches_before) / (double)(done_steps - first);
    evaluate(&t->run, opt, epoch, &test_rec, &test_kl);
    if (t->prog.live)
        fprintf(stderr, "\r%*s\r", 90, "");
    double ips = t->run.n_train / seconds;
    if (!opt->quiet) {
        printf("epoch %3d  train %.2f (rec %.2f, kl %.2f)  test %.2f (rec %.2f, kl %.2f, %.4f "
               "bits/dim)  %.2f s  %.0f img/s\n",
               epoch, rec + kl, rec, kl, test_rec + test_kl, test_rec, test_kl,
               bits_per_dim(t, test_rec + test_kl), seconds, ips);
        fflush(stdout);
    }
    // Every rank holds the same test loss (summed across ranks) and stops here alike.
    t->collective = !isfinite(test_rec + test_kl);
    if (!isfinite(test_rec + test_kl))
        // The last step's update diverged: its own loss was still finite.
        return clvae_fail(err, CLVAE_EXIT_DIVERGED,
                          "the test loss became %s at step %lld (the end of epoch %d); "
                          "stopping%s%s: try a smaller --lr",
                          isnan(test_rec + test_kl) ? "NaN" : "infinite",
                          (long long)t->adam.step, epoch, opt->save_path ? ", keeping " : "",
                          opt->save_path ? opt->save_path : "");
    char curves[4200];
    snprintf(curves, sizeof curves, "%s/curves.png", opt->out_dir);
    bool best = test_rec + test_kl < t->best_test;
    if (t->root &&
        (write_metrics_row(t, epoch, rec, kl, test_rec, test_kl, seconds, ips, err) ||
         plot_curves(t->metrics_path, curves, true, err) < 0 ||
         write_images(&t->run, opt, epoch, err) ||
         (opt->save_path &&
          (save_checkpoint(&t->run, opt, &t->adam, opt->save_path, epoch, 0, err) ||
           (best && save_checkpoint(&t->run, opt, &t->adam, t->best_path, epoch, 0, err))))))
        return -1;
    if (best)
        t->best_test = test_rec + test_kl;
    // A signal that came while the epoch ended: every rank stops if any saw one.
    t->collective = true;
    if (dist_max_int(stop_requested) && epoch < opt->epochs)
        return clvae_fail(err, CLVAE_EXIT_INTERRUPTED, "interrupted after epoch %d%s%s", epoch,
                          opt->save_path ? "; checkpoint written to " : "",
                          opt->save_path ? opt->save_path : "");
    t->collective = false;
    return 0;
}

// Releases everything train_open made; status is the run's so far, which a failed close of
// metrics.csv turns into an error.
static int train_close(struct trainer *t, int status, struct clvae_error *err)
{
    // An early stop (a NaN, a failed write) leaves commands in flight; a driver still compiling
    // or running them while the process exits can crash in its own threads.
    if (t->rt.queue)
        clFinish(t->rt.queue);
    if (t->metrics && fclose(t->metrics) != 0 && status == 0)
        status = clvae_fail(err, CLVAE_EXIT_OUTPUT, "%s: %s", t->metrics_path, strerror(errno));
    free(t->order);
    run_release(&t->run);
    adam_release(&t->adam);
    vae_release(&t->vae);
    clrt_close(&t->rt);
    for (int i = 0; t->data.class_names && i < t->data.n_classes; i++)
        free(t->data.class_names[i]);
    free(t->data.class_names);
    checkpoint_free(&t->resume);
    sigaction(SIGINT, &t->old_int, NULL);
    sigaction(SIGTERM, &t->old_term, NULL);
    return status;
}

// With several ranks, a failure only this rank met (a NaN in its slice, a write of rank 0's)
// stops them all at once: the others may be waiting for it in a sum.
static void stop_others(const struct trainer *t, const struct clvae_error *err)
{
    if (t->run.ranks == 1 || t->collective)
        return;
    if (t->root)
        clvae_print_error(err);
    else
        fprintf(stderr, "clvae: rank %d: %s\n", t->run.rank, err->msg);
    dist_abort(err->status);
}

// The gradient exchange's share of a step, with several ranks (--profile).
static void print_exchange(const struct trainer *t)
{
    const struct run *run = &t->run;
    if (run->ranks == 1 || run->exchanges == 0)
        return;
    double per = run->exchange_seconds / (double)run->exchanges;
    double step = (train_now_seconds() - t->loop_start) / (double)run->exchanges;
    printf("clvae: per step over %ld steps (all epochs, evaluation included): %.3f ms, of which "
           "%.3f ms summing the gradient across %d ranks (%zu bytes a rank; read, MPI_Allreduce, "
           "write)\n",
           run->exchanges, 1e3 * step, 1e3 * per, run->ranks,
           (t->vae.n_params + 1) * sizeof(float));
}

int train_run(const struct train_options *given, struct clvae_error *err)
{
    struct trainer *t = xcalloc(1, sizeof *t);
    // Every rank meets the same setup failures (options, data, device) or reports its own: all
    // stop together, one message.
    int status = dist_agree(train_open(t, given, err), err);
    t->collective = status != 0;
    if (status == 0) {
        print_banner(t);
        t->loop_start = train_now_seconds();
    }
    for (int epoch = t->start_epoch; status == 0 && epoch <= t->opt.epochs; epoch++)
        status = train_one_epoch(t, epoch, err);
    if (status)
        stop_others(t, err);
    if (status == 0 && t->opt.profile && t->root) {
        print_exchange(t);
        printf("\nclvae: %.1f launches per training step (kernels and CLBlast products enqueued; "
               "a CLBlast product may run more than one kernel)\n",
               t->launches_per_step);
        printf("clvae: device time by kernel and GEMM shape over %d epochs (training, "
               "evaluation, images)\n",
               t->opt.epochs);
        clrt_profile_print(&t->rt, stdout, train_now_seconds() - t->loop_start);
    }
    status = train_close(t, status, err);
    free(t);
    return status;
}
