// What a training run writes and prints: the start banner and each epoch's line, OUT (checked
// writable before training), metrics.csv, the image grids, the curves and checkpoints.
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atomic_file.h"
#include "dist.h"
#include "philox.h"
#include "plot.h"
#include "png_grid.h"
#include "trainer.h"

// Creates dir (and its parents) and proves a file can be written there, before any training.
static int prepare_out_dir(const char *dir, struct clvae_error *err)
{
    char path[4096];
    // (Refused before any directory is made: a name too long for the probe is too long for
    // PATH_MAX.)
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

// Proves OUT and --save can be written (directory exists, is writable, the path is not a
// directory) before an epoch's work depends on them; creates OUT.
int check_outputs(const struct train_options *opt, struct clvae_error *err)
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

// Means in [0, 1] -> bytes.
static void to_bytes(const float *mean, size_t n, uint8_t *bytes)
{
    for (size_t i = 0; i < n; i++)
        bytes[i] = (uint8_t)lrintf(fminf(fmaxf(mean[i], 0.0f), 1.0f) * 255.0f);
}

// OUT/samples_epochNNN.png (decoded fixed prior draws; a conditional model's of the classes in
// turn, a row each) and OUT/reconstructions_epochNNN.png (test images, each followed by its
// reconstruction from the posterior mean): each pixel the likelihood's mean, grey or RGB as the
// images are.
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

    if (vae->cfg.classes) {
        int labels[GRID_SAMPLES];
        for (int i = 0; i < GRID_SAMPLES; i++)
            labels[i] = i / GRID_COLS % vae->cfg.classes;
        vae_set_labels(vae, labels, GRID_SAMPLES);
    }
    vae_sample_prior(vae, GRID_SAMPLES, opt->seed, 0, PHILOX_STREAM_GRID);
    vae_decode(vae, GRID_SAMPLES);
    clrt_read(run->rt, vae->logits, 0, GRID_SAMPLES * out_dim * sizeof(float), out, true);
    likelihood_mean(kind, out, GRID_SAMPLES, run->dim, run->channels, mean);
    to_bytes(mean, GRID_SAMPLES * tile, tiles);
    snprintf(path, sizeof path, "%s/samples_epoch%03d.png", opt->out_dir, epoch);
    status = png_write_tiles(path, tiles, GRID_SAMPLES, run->rows, run->cols, run->channels,
                             GRID_COLS, 2, err);

    if (status == 0) {
        // The loss buffers' first rows are free once the evaluation has been read back.
        int pairs = run->n_test < GRID_PAIRS ? run->n_test : GRID_PAIRS;
        vae_gather(run->vae, &run->test_data, run->test_index, 0, pairs);
        vae_gather_labels(run->vae, run->test_labels, run->test_index, 0, pairs);
        struct vae_pass pass = {.rows = pairs,
                                .seed = opt->seed,
                                .stream = PHILOX_STREAM_EVAL,
                                .noise_scale = 0.0f,
                                .rec = run->test_rec,
                                .kl = run->test_kl};
        vae_forward(vae, &pass);
        float *x = xmalloc((size_t)pairs * tile * sizeof(float));
        clrt_read(run->rt, vae->x, 0, (size_t)pairs * tile * sizeof(float), x, false);
        clrt_read(run->rt, vae->logits, 0, (size_t)pairs * out_dim * sizeof(float), out, true);
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

// Writes the parameters and the optimizer's state after `epoch` whole epochs and epoch_step
// steps of the next to path (--save, or its best-epoch twin).
int save_checkpoint(struct trainer *t, const char *path, int epoch, int epoch_step,
                    struct clvae_error *err)
{
    struct run *run = &t->run;
    const struct train_options *opt = &t->opt;
    const struct optimizer *optimizer = &t->optimizer;
    const struct optimizer_kind *kind = optimizer->cfg.kind;
    size_t n = run->vae->n_params, arrays = 1 + (size_t)kind->n_state;
    float *host = xmalloc(arrays * n * sizeof(float));
    const float *state[OPTIMIZER_MAX_STATE];
    clrt_parts_read(run->rt, &run->vae->params, host, false);
    for (int s = 0; s < kind->n_state; s++) {
        state[s] = host + (size_t)(1 + s) * n;
        clrt_parts_read(run->rt, &optimizer->state[s], host + (size_t)(1 + s) * n, false);
    }
    clrt_finish(run->rt);
    // The last good checkpoint is worth more than one of a model that has diverged.
    for (size_t i = 0; i < arrays * n; i++) {
        if (!isfinite(host[i])) {
            char what[96] = "parameters";
            if (i >= n)
                snprintf(what, sizeof what, "%s %s", kind->title, kind->state_title[i / n - 1]);
            free(host);
            return clvae_fail(err, CLVAE_EXIT_DIVERGED,
                              "the model's %s hold a non-finite value after step %lld; %s keeps "
                              "the last good checkpoint: try a smaller --lr",
                              what, (long long)run->step, path);
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
        .crop = opt->folder.crop,
        .flip = opt->flip,
        .n_classes = run->n_classes,
        .class_names = run->class_names,
        .batch = opt->batch,
        .lr = opt->lr,
        .beta = opt->beta,
        .kl_warmup = opt->kl_warmup,
        .kl_cycles = opt->kl_cycles,
        .lr_schedule = opt->lr_schedule,
        .lr_warmup = opt->lr_warmup,
        // Recorded where it matters, so that a resume spans the same epochs.
        .schedule_epochs =
            opt->kl_cycles || opt->lr_schedule != LR_CONSTANT ? schedule_span(opt) : 0,
        .free_bits = opt->free_bits,
        .clip_grad = opt->clip_grad,
        .binarize = opt->binarize,
        .seed = opt->seed,
        .epoch = epoch,
        .step = run->step,
        .epoch_step = epoch_step,
        .optimizer = optimizer->cfg,
    };
    int status = checkpoint_save(path, &meta, host, state, err);
    free(host);
    return status;
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
        printf("clvae: %d ranks, the batch of %d split across them\n", ranks,
               step_rows(&t->opt, t->data.n_train));
        for (int r = 0; r < ranks; r++)
            printf("clvae: rank %d on %s\n", r, all + (size_t)r * LEN);
    }
    free(all);
}

// The start banner: device, model, data, memory, and where a resumed run carries on. With several
// ranks, every rank takes part (their devices are gathered) and rank 0 prints.
void print_banner(const struct trainer *t)
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
        printf("clvae: device %s (%s), %u compute units; matrix products by %s\n", rt->device_name,
               rt->platform_name, rt->compute_units, clrt_gemm_engine(rt));
    if (rt->tuning_source[0])
        printf("clvae: CLBlast's GEMM parameters from clvae tune: %s\n", rt->tuning_source);
    const struct data_info *data = &t->data;
    printf("clvae: model %s, %zu parameters, %s likelihood", shape, t->vae.n_params,
           likelihood_name(t->cfg.likelihood));
    if (t->cfg.classes)
        printf(", conditional on %d classes", t->cfg.classes);
    printf("\n");
    printf("clvae: data %s: %d training and %d test images%s of %dx%d, %d channel%s",
           t->opt.data_dir, run->n_train, run->n_test,
           data->folder ? (data->test_folder ? " (test/ folder)" : " (seeded split)") : "",
           run->cols, run->rows, run->channels, run->channels == 1 ? "" : "s");
    if (data->n_classes)
        printf(", %d classes", data->n_classes);
    if (data->skipped)
        printf(", %llu bad files skipped", (unsigned long long)data->skipped);
    if (t->opt.folder.crop == IMAGE_CROP_CENTER)
        printf(", centre-cropped");
    if (t->opt.flip)
        printf(", flipped at random");
    if (t->opt.binarize)
        printf(", binarized (%s)", checkpoint_binarize_name(t->opt.binarize));
    printf("\n");
    if (data->from_cache)
        printf("clvae: decoded images from the cache %s\n", data->cache_path);
    printf("clvae: device memory %.1f MiB (data %.1f, parameters+gradients+%s %.1f, "
           "activations %.1f)\n",
           (double)rt->allocated / 1048576.0,
           (double)((size_t)(run->n_train + run->n_test) * (size_t)run->dim) / 1048576.0,
           t->optimizer.cfg.kind->title,
           (double)(t->vae.n_params *
                    (2 * sizeof(float) + optimizer_state_bytes(t->optimizer.cfg.kind))) /
               1048576.0,
           (double)t->vae.activation_bytes / 1048576.0);
    // What does not fit the device's largest allocation at once: buffers in parts, passes of
    // fewer rows than the batch (a CPU's cache-sized micro-batches are the rule, not news).
    const struct clrt_parts *split[] = {&run->train_data, &run->test_data, &t->vae.params};
    static const char *const split_names[] = {"training set", "test set", "parameters"};
    bool cpu_micro = t->rt.device_type & CL_DEVICE_TYPE_CPU && run->micro == MICRO_BATCH_CPU;
    bool passes = run->micro < step_rows(&t->opt, t->data.n_train) && !cpu_micro, any = passes;
    for (size_t i = 0; i < sizeof split / sizeof split[0]; i++)
        any = any || split[i]->n > 1;
    if (any) {
        printf("clvae: larger than %s (%llu bytes):", rt->max_alloc_name,
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
               t->start_epoch - 1, (long long)t->run.step);
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

// OUT/metrics.csv for writing (appending when append): refused unless it is a regular file or
// absent, without blocking (fopen would wait on a FIFO for a reader).
static FILE *open_metrics_file(const char *path, bool append, struct clvae_error *err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_NONBLOCK | O_CLOEXEC | (append ? O_APPEND : O_TRUNC),
                  0666);
    struct stat st;
    const char *why = fd < 0 ? (errno == ENXIO ? "not a regular file" : strerror(errno))
                      : fstat(fd, &st) != 0  ? strerror(errno)
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

// OUT/metrics.csv, appended to by a resumed run (which carries on the metrics of the run it
// continues), with its header when new; the lowest test loss it holds.
int open_metrics(struct trainer *t, struct clvae_error *err)
{
    const struct train_options *opt = &t->opt;
    snprintf(t->metrics_path, sizeof t->metrics_path, "%s/metrics.csv", opt->out_dir);
    if (!(t->metrics = open_metrics_file(t->metrics_path, opt->resume_path != NULL, err)))
        return -1;
    if (ftell(t->metrics) == 0)
        fprintf(t->metrics,
                "epoch,train_neg_elbo,train_rec,train_kl,test_neg_elbo,test_rec,"
                "test_kl,seconds,images_per_second,test_bits_per_dim%s\n",
                t->scheduled ? ",beta,lr" : "");
    t->best_test = best_so_far(t);
    return 0;
}

// nats per image -> bits per dimension (pixel and channel).
static double bits_per_dim(const struct trainer *t, double nats)
{
    return nats / (log(2.0) * (double)t->cfg.in_dim);
}

// The epoch's line on stdout (unless --quiet).
void print_epoch(const struct trainer *t, const struct epoch_row *r)
{
    if (t->opt.quiet)
        return;
    printf("epoch %3d  train %.2f (rec %.2f, kl %.2f)  test %.2f (rec %.2f, kl %.2f, %.4f "
           "bits/dim)  %.2f s  %.0f img/s",
           r->epoch, r->rec + r->kl, r->rec, r->kl, r->test_rec + r->test_kl, r->test_rec,
           r->test_kl, bits_per_dim(t, r->test_rec + r->test_kl), r->seconds, r->images_per_second);
    if (t->scheduled)
        printf("  beta %.4g  lr %.4g", r->beta, r->lr);
    printf("\n");
    fflush(stdout);
}

// Appends the epoch's row to metrics.csv, whole or not at all: a failed write is cut back off.
static int write_metrics_row(struct trainer *t, const struct epoch_row *r, struct clvae_error *err)
{
    FILE *metrics = t->metrics;
    long row_start = ftell(metrics);
    fprintf(metrics, "%d,%.4f,%.4f,%.4f,%.4f,%.4f,%.4f,%.4f,%.1f,%.5f", r->epoch, r->rec + r->kl,
            r->rec, r->kl, r->test_rec + r->test_kl, r->test_rec, r->test_kl, r->seconds,
            r->images_per_second, bits_per_dim(t, r->test_rec + r->test_kl));
    // At the end, so that readers of the columns before them keep working.
    if (t->scheduled)
        fprintf(metrics, ",%.17g,%.17g", r->beta, r->lr);
    fputc('\n', metrics);
    if (fflush(metrics) != 0) {
        int saved = errno;
        clearerr(metrics);
        if (row_start >= 0 && ftruncate(fileno(metrics), row_start) == 0)
            fseek(metrics, row_start, SEEK_SET);
        return clvae_fail(err, CLVAE_EXIT_OUTPUT, "%s: %s", t->metrics_path, strerror(saved));
    }
    return 0;
}

// The epoch's outputs (rank 0's): its row of metrics.csv, the curves, the image grids and, with
// --save, the checkpoint, and the best epoch's too when best.
int write_epoch(struct trainer *t, const struct epoch_row *row, bool best, struct clvae_error *err)
{
    const struct train_options *opt = &t->opt;
    char curves[4200];
    snprintf(curves, sizeof curves, "%s/curves.png", opt->out_dir);
    return write_metrics_row(t, row, err) || plot_curves(t->metrics_path, curves, true, err) < 0 ||
                   write_images(&t->run, opt, row->epoch, err) ||
                   (opt->save_path &&
                    (save_checkpoint(t, opt->save_path, row->epoch, 0, err) ||
                     (best && save_checkpoint(t, t->best_path, row->epoch, 0, err))))
               ? -1
               : 0;
}
