// `clvae train`'s run: open (the device, the data, the model and its state, the outputs), the
// epochs, close. The jobs it is made of are in the files trainer.h names.
#include "train.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cl_runtime.h"
#include "dist.h"
#include "optimizer.h"
#include "trainer.h"

volatile sig_atomic_t train_stop_requested;

static void request_stop(int sig)
{
    (void)sig;
    train_stop_requested = 1;
}

void train_defaults(struct train_options *opt)
{
    memset(opt, 0, sizeof *opt);
    opt->data_dir = "/usr/share/datasets/fashion-mnist";
    opt->out_dir = "out";
    opt->epochs = 30;
    opt->batch = 256;
    opt->lr = 1e-3;
    opt->optimizer = optimizer_defaults(optimizer_kinds[0]);
    opt->beta = 1.0;
    opt->model.n_encoder = opt->model.n_decoder = 1;
    opt->model.encoder[0] = opt->model.decoder[0] =
        (struct layer_spec){.kind = LAYER_DENSE, .units = 128};
    opt->model.latent = 10;
    opt->model.likelihood = LIKELIHOOD_BERNOULLI;
    opt->model_option = "--hidden";
    opt->folder = (struct image_folder_options){
        .background = {255, 255, 255}, .test_split = 0.1, .cache = true};
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

// The rows of a training step: --batch, or the whole training set when it holds fewer images
// (one batch an epoch; the checkpoint keeps --batch as given).
int step_rows(const struct train_options *opt, uint32_t n_train)
{
    return (uint32_t)opt->batch < n_train ? opt->batch : (int)n_train;
}

// The epochs the length-dependent schedules span: --schedule-epochs, else the run's --epochs (a
// resumed run's is its checkpoint's).
int schedule_span(const struct train_options *opt)
{
    return opt->schedule_epochs ? opt->schedule_epochs : opt->epochs;
}

// The run's schedules, once the training set's size is known: beta by epoch, lr by step.
static void open_schedule(struct trainer *t)
{
    const struct train_options *opt = &t->opt;
    int batch = step_rows(opt, (uint32_t)t->run.n_train);
    t->sched = (struct schedule){.beta = opt->beta,
                                 .kl_warmup = opt->kl_warmup,
                                 .kl_cycles = opt->kl_cycles,
                                 .lr = opt->lr,
                                 .lr_schedule = opt->lr_schedule,
                                 .lr_warmup = opt->lr_warmup,
                                 .epochs = schedule_span(opt),
                                 .steps_per_epoch = (t->run.n_train + batch - 1) / batch};
    t->scheduled =
        opt->kl_warmup || opt->kl_cycles || opt->lr_warmup || opt->lr_schedule != LR_CONSTANT;
}

// What gave the architecture, named in messages about it: the checkpoint resumed, or the option.
const char *model_source(const struct train_options *opt)
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
    if (vae_layout(&layout, &t->cfg, source, err) || vae_plan_parts(&layout, &t->rt, source, err))
        return -1;
    int batch = step_rows(opt, t->data.n_train);
    int micro =
        t->rt.device_type & CL_DEVICE_TYPE_CPU && batch > MICRO_BATCH_CPU ? MICRO_BATCH_CPU : batch;
    const struct optimizer_kind *kind = opt->optimizer.kind;
    for (;;) {
        *max_rows = micro > 2 * GRID_PAIRS ? micro : 2 * GRID_PAIRS;
        size_t largest;
        const char *largest_name;
        size_t need = vae_device_bytes(&layout, &t->rt, *max_rows, &largest, &largest_name) +
                      layout.n_params * optimizer_state_bytes(kind);
        if (largest <= t->rt.max_alloc && t->rt.allocated + need <= t->rt.global_mem)
            break;
        if (micro <= 2 * GRID_PAIRS) {
            char given[64];
            snprintf(given, sizeof given, "%s/--latent/--batch", opt->model_option);
            return clvae_fail(
                err, CLVAE_EXIT_DEVICE,
                "%s: the model needs %zu bytes of device memory at %d rows "
                "a pass (parameters %zu bytes, and as much again for each of their gradients "
                "and %s's %s; its largest activations, '%s', %zu bytes) besides the "
                "data's %zu; %s has %llu bytes, and %s is %llu bytes%s",
                opt->resume_path ? source : given, need, *max_rows, layout.n_params * sizeof(float),
                kind->title, kind->state_summary, largest_name, largest, t->rt.allocated,
                t->rt.device_name, (unsigned long long)t->rt.global_mem, t->rt.max_alloc_name,
                (unsigned long long)t->rt.max_alloc,
                opt->resume_path ? "" : ": use fewer or narrower layers");
        }
        micro = (micro + 1) / 2;
    }
    t->run.micro = micro;
    return 0;
}

// SIGINT and SIGTERM ask the loop to stop after its step; a second one ends the process.
static void catch_signals(struct trainer *t)
{
    struct sigaction stop = {0};
    train_stop_requested = 0;
    stop.sa_handler = request_stop;
    stop.sa_flags = SA_RESETHAND; // a second signal takes the default action: exit at once
    sigemptyset(&stop.sa_mask);
    sigaction(SIGINT, &stop, &t->old_int);
    sigaction(SIGTERM, &stop, &t->old_term);
}

// --conditional's classes: at most VAE_MAX_CLASSES, and a resumed model's, by name.
static int check_classes(const struct trainer *t, struct clvae_error *err)
{
    const struct train_options *opt = &t->opt;
    const struct data_info *data = &t->data;
    const struct ckpt_meta *rm = &t->resume.meta;
    if (data->n_classes > VAE_MAX_CLASSES)
        return clvae_fail(err, CLVAE_EXIT_DATA, "%s: %d classes; --conditional takes at most %d",
                          opt->data_dir, data->n_classes, VAE_MAX_CLASSES);
    if (!opt->resume_path)
        return 0;
    bool same = rm->n_classes == data->n_classes;
    for (int i = 0; same && i < data->n_classes; i++)
        same = strcmp(rm->class_names[i], data->class_names[i]) == 0;
    if (!same)
        return clvae_fail(err, CLVAE_EXIT_DATA,
                          "%s: the checkpoint's model is conditional on %d classes that are not "
                          "the %d classes of %s",
                          opt->resume_path, rm->n_classes, data->n_classes, opt->data_dir);
    return 0;
}

// The device and the data on it, checked against the checkpoint resumed; t->cfg, the
// architecture laid out on the data's image size.
static int open_data(struct trainer *t, struct clvae_error *err)
{
    const struct train_options *opt = &t->opt;
    const struct data_info *data = &t->data;
    if (clrt_open(&t->rt, opt->platform, opt->device, opt->profile, err) ||
        load_data(&t->run, opt, &t->data, err))
        return -1;
    const struct ckpt_meta *rm = &t->resume.meta;
    if (opt->resume_path &&
        ((int)data->height != rm->image_rows || (int)data->width != rm->image_cols ||
         (int)data->channels != rm->channels))
        return clvae_fail(err, CLVAE_EXIT_DATA,
                          "%s: the checkpoint is for %dx%dx%d images, but the %s images in %s "
                          "are %ux%ux%u",
                          opt->resume_path, rm->image_cols, rm->image_rows, rm->channels,
                          data->folder ? "PNG" : "IDX", opt->data_dir, data->width, data->height,
                          data->channels);
    if ((uint32_t)opt->batch > data->n_train && !opt->quiet)
        fprintf(stderr,
                "clvae: warning: --batch %d is larger than the training set (%u images): the "
                "whole set is one batch an epoch\n",
                opt->batch, data->n_train);
    if (opt->conditional && check_classes(t, err))
        return -1;
    t->cfg = opt->model;
    t->cfg.classes = opt->conditional ? data->n_classes : 0;
    t->cfg.in_dim = (int)(data->height * data->width * data->channels);
    t->cfg.channels = (int)data->channels;
    t->cfg.height = (int)data->height;
    t->cfg.width = (int)data->width;
    return 0;
}

// The kernels, the model, its optimizer and the run's buffers, once the model is known to fit and
// OUT to be writable (made here, so that a failed start leaves no empty directories behind); the
// state the run starts from.
static int open_model(struct trainer *t, struct clvae_error *err)
{
    const struct train_options *opt = &t->opt;
    int max_rows;
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
        optimizer_create(&t->optimizer, &t->rt, &t->vae.params, &opt->optimizer, err) ||
        (opt->clip_grad > 0 && optimizer_clip_create(&t->optimizer, opt->clip_grad, err)) ||
        run_setup(&t->run, &t->data, err))
        return -1;
    load_state(t);
    return 0;
}

// Everything before the first epoch: the ranks, the signals, the device and the data, the model
// and its state, metrics.csv. resume (the checkpoint --resume loaded, or NULL) is t's from here.
static int train_open(struct trainer *t, const struct train_options *given, struct ckpt *resume,
                      struct clvae_error *err)
{
    struct train_options *opt = &t->opt;
    *opt = *given;
    if (resume) {
        t->resume = *resume;
        memset(resume, 0, sizeof *resume);
    }
    double run_started = train_now_seconds();
    t->run.rank = dist_rank();
    t->run.ranks = dist_size();
    t->root = t->run.rank == 0;
    if (!t->root)
        opt->quiet = true;
    if (t->run.ranks > 1)
        clrt_prefer_gpu(dist_local_rank()); // a node's ranks on its GPUs in turn
    if (!opt->keep_signals)
        catch_signals(t);
    if (opt->save_path && train_best_path(opt->save_path, t->best_path, sizeof t->best_path))
        return clvae_fail(err, CLVAE_EXIT_USAGE, "--save %s: the path is too long", opt->save_path);
    t->run.rt = &t->rt;
    t->run.vae = &t->vae;
    if (open_data(t, err) || open_model(t, err))
        return -1;
    open_schedule(t);
    t->order = xmalloc((size_t)t->run.n_train * sizeof(int));
    t->prog = (struct progress){.live = !opt->quiet && isatty(STDERR_FILENO),
                                .report_first_step = !opt->quiet,
                                .run_started = run_started,
                                .epochs = opt->epochs};
    return t->root ? open_metrics(t, err) : 0;
}

// The end of an epoch whose test loss is not finite: the last step's update diverged (its own
// loss was still finite). Always -1 (CLVAE_EXIT_DIVERGED).
static int diverged(struct trainer *t, int epoch, double test_loss, struct clvae_error *err)
{
    const char *save = t->opt.save_path;
    return clvae_fail(err, CLVAE_EXIT_DIVERGED,
                      "the test loss became %s at step %lld (the end of epoch %d); "
                      "stopping%s%s: try a smaller --lr",
                      isnan(test_loss) ? "NaN" : "infinite", (long long)t->run.step, epoch,
                      save ? ", keeping " : "", save ? save : "");
}

// One epoch: training, the test set's loss, the line, metrics.csv, the images, the checkpoint;
// then on_epoch. 0, 1 when on_epoch stops the run, or -1 with err.
static int train_one_epoch(struct trainer *t, int epoch, struct clvae_error *err)
{
    const struct train_options *opt = &t->opt;
    double t0 = train_now_seconds();
    int first = epoch == t->start_epoch ? t->start_step : 0;
    t->prog.epoch = epoch;
    long launches_before = t->rt.launches;
    struct epoch_result done;
    if (train_epoch(t, first, &done, err))
        return -1;
    if (done.steps_done < t->prog.steps)
        return stop_mid_epoch(t, epoch, done.steps_done, err);
    struct epoch_row row = {.epoch = epoch,
                            .rec = done.rec,
                            .kl = done.kl,
                            .seconds = train_now_seconds() - t0,
                            .beta = schedule_beta(&t->sched, epoch),
                            .lr = schedule_lr(&t->sched, t->run.step - 1)};
    if (done.steps_done > first)
        t->launches_per_step =
            (double)(t->rt.launches - launches_before) / (double)(done.steps_done - first);
    evaluate(&t->run, opt, epoch, &row.test_rec, &row.test_kl);
    if (t->prog.live)
        fprintf(stderr, "\r%*s\r", 90, "");
    row.images_per_second = t->run.n_train / row.seconds;
    print_epoch(t, &row);
    double test = row.test_rec + row.test_kl;
    // Every rank holds the same test loss (summed across ranks) and stops here alike.
    t->collective = !isfinite(test);
    if (!isfinite(test))
        return diverged(t, epoch, test, err);
    bool best = test < t->best_test;
    if (t->root && write_epoch(t, &row, best, err))
        return -1;
    if (best)
        t->best_test = test;
    // A signal that came while the epoch ended: every rank stops if any saw one.
    t->collective = true;
    if (dist_max_int(train_stop_requested) && epoch < opt->epochs)
        return clvae_fail(err, CLVAE_EXIT_INTERRUPTED, "interrupted after epoch %d%s%s", epoch,
                          opt->save_path ? "; checkpoint written to " : "",
                          opt->save_path ? opt->save_path : "");
    t->collective = false;
    if (opt->on_epoch && opt->on_epoch(&row, opt->on_epoch_user))
        return 1; // stopped by the caller: the run ends well
    return 0;
}

// Releases everything train_open made; status is the run's so far, which a failed close of
// metrics.csv turns into an error.
static int train_close(struct trainer *t, int status, struct clvae_error *err)
{
    // An early stop (a NaN, a failed write) leaves commands in flight; a driver still compiling
    // or running them while the process exits can crash in its own threads.
    clrt_drain(&t->rt);
    if (t->metrics && fclose(t->metrics) != 0 && status == 0)
        status = clvae_fail(err, CLVAE_EXIT_OUTPUT, "%s: %s", t->metrics_path, strerror(errno));
    free(t->order);
    run_release(&t->run);
    optimizer_release(&t->optimizer);
    vae_release(&t->vae);
    clrt_close(&t->rt);
    for (int i = 0; t->data.class_names && i < t->data.n_classes; i++)
        free(t->data.class_names[i]);
    free(t->data.class_names);
    free(t->data.train_labels);
    free(t->data.test_labels);
    checkpoint_free(&t->resume);
    if (!t->opt.keep_signals) {
        sigaction(SIGINT, &t->old_int, NULL);
        sigaction(SIGTERM, &t->old_term, NULL);
    }
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

int train_run(const struct train_options *given, struct ckpt *resume, struct clvae_error *err)
{
    struct trainer *t = xcalloc(1, sizeof *t);
    // Every rank meets the same setup failures (options, data, device) or reports its own: all
    // stop together, one message.
    int status = dist_agree(train_open(t, given, resume, err), err);
    t->collective = status != 0;
    if (status == 0) {
        print_banner(t);
        t->loop_start = train_now_seconds();
    }
    for (int epoch = t->start_epoch; status == 0 && epoch <= t->opt.epochs; epoch++)
        status = train_one_epoch(t, epoch, err);
    if (status > 0) // on_epoch stopped the run
        status = 0;
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
