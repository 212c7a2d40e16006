// An epoch of training: the shuffled order, the steps (micro-batches, the gradient summed across
// ranks, the optimizer's update), the losses read back without blocking as it goes; and the test
// set's loss after it.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "augment.h"
#include "dist.h"
#include "philox.h"
#include "trainer.h"

// A non-blocking read of the per-image losses of images [from, to) of this epoch.
struct readback {
    cl_event done;
    int from, to, step_end;
};

// Rank rank's rows [*lo, *hi) of a step's rows: contiguous slices, the first ranks one larger.
static void slice(int rows, int rank, int ranks, int *lo, int *hi)
{
    *lo = (int)((int64_t)rows * rank / ranks);
    *hi = (int)((int64_t)rows * (rank + 1) / ranks);
}

// A device buffer of floats set to zero: the rows other ranks fill stay 0 here, so that the sums
// across ranks of the per-image losses are everyone's.
static void zero_floats(struct run *run, cl_mem mem, size_t n)
{
    clrt_fill(run->rt, mem, 0.0f, n);
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

static void draw_progress(struct progress *p, bool force)
{
    double t = train_now_seconds();
    if (!p->live || (!force && t - p->last_drawn < 0.1))
        return;
    p->last_drawn = t;
    int width = 30, filled = p->steps ? width * p->steps_done / p->steps : 0;
    double eta = p->steps_done ? (t - p->started) * (p->steps - p->steps_done) / p->steps_done : 0;
    fprintf(stderr, "\r  epoch %d/%d [%.*s%*s] step %d/%d  loss %7.2f  ETA %5.1fs ", p->epoch,
            p->epochs, filled, "##############################", width - filled, "", p->steps_done,
            p->steps, p->loss, eta);
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
    clrt_wait(rb->done);
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
void evaluate(struct run *run, const struct train_options *opt, int epoch, double *rec, double *kl)
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
        vae_gather_labels(run->vae, run->test_labels, run->test_index, start, rows);
        if (opt->binarize) { // once, with a fixed key: the same test images every epoch
            vae_gather_now(run->vae);
            sampler_binarize(&run->vae->sampler, run->vae->x, rows, run->dim, run->test_index,
                             start, opt->seed, 0, PHILOX_STREAM_BINARIZE_TEST);
        }
        struct vae_pass pass = {.rows = rows,
                                .seed = opt->seed,
                                .step = (uint64_t)epoch,
                                .stream = PHILOX_STREAM_EVAL,
                                .noise_scale = 1.0f,
                                .rec = run->test_rec,
                                .kl = run->test_kl,
                                .offset = start,
                                .noise_row0 = start};
        vae_forward(run->vae, &pass);
    }
    size_t bytes = (size_t)run->n_test * sizeof(float);
    clrt_read(run->rt, run->test_rec, 0, bytes, run->host_test_rec, false);
    clrt_read(run->rt, run->test_kl, 0, bytes, run->host_test_kl, true);
    dist_sum_floats(run->host_test_rec, (size_t)run->n_test);
    dist_sum_floats(run->host_test_kl, (size_t)run->n_test);
    sum_losses(run->host_test_rec, run->host_test_kl, run->n_test, rec, kl);
    *rec /= run->n_test;
    *kl /= run->n_test;
}

// With several ranks: the gradient of the whole batch in every rank, each rank's (its slice's;
// zero when it has none) summed across ranks through host memory, the stop flag riding along.
// Returns whether any rank asked to stop; one rank alone returns stop.
static bool exchange_gradients(struct run *run, bool has_rows, bool stop)
{
    if (run->ranks == 1)
        return stop;
    size_t n = run->vae->n_params, bytes = n * sizeof(float);
    clrt_finish(run->rt); // the step's compute, so that what follows is the exchange alone
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

// The read-backs of an epoch's losses in flight: a ring of at most READS_IN_FLIGHT, covering the
// images [from, upto) of the epoch's order so far.
struct readbacks {
    struct readback slot[READS_IN_FLIGHT];
    int head, pending;
    int from, upto;
    int64_t first_step; // the run's number of the epoch's first step, for messages
};

// Waits for the oldest read-back in flight and takes it (finish_readback).
static int readbacks_pop(struct trainer *t, struct readbacks *rbs, struct clvae_error *err)
{
    int oldest = (rbs->head + READS_IN_FLIGHT - rbs->pending) % READS_IN_FLIGHT;
    rbs->pending--;
    return finish_readback(&t->run, &rbs->slot[oldest], &t->prog,
                           step_rows(&t->opt, (uint32_t)t->run.n_train), rbs->first_step, err);
}

// Enqueues the read-back of the losses of images [upto, to), which the steps up to step_end
// wrote; with the ring full, first waits for its oldest.
static int readbacks_push(struct trainer *t, struct readbacks *rbs, int to, int step_end,
                          struct clvae_error *err)
{
    struct run *run = &t->run;
    if (rbs->pending == READS_IN_FLIGHT && readbacks_pop(t, rbs, err))
        return -1;
    struct readback *rb = &rbs->slot[rbs->head];
    rbs->head = (rbs->head + 1) % READS_IN_FLIGHT;
    rbs->pending++;
    *rb = (struct readback){.from = rbs->upto, .to = to, .step_end = step_end};
    size_t off = (size_t)rb->from * sizeof(float);
    size_t bytes = (size_t)(rb->to - rb->from) * sizeof(float);
    clrt_read(run->rt, run->train_rec, off, bytes, run->host_rec + rb->from, false);
    rb->done = clrt_read_event(run->rt, run->train_kl, off, bytes, run->host_kl + rb->from);
    rbs->upto = to;
    return 0;
}

// The epoch's order on the device (shuffled, and with --flip which images are mirrored), the
// per-image losses zeroed where other ranks fill them, the progress bar from first_step on.
static void start_epoch(struct trainer *t, int first_step)
{
    struct run *run = &t->run;
    const struct train_options *opt = &t->opt;
    struct progress *prog = &t->prog;
    int n = run->n_train, batch = step_rows(opt, (uint32_t)n);
    shuffle(t->order, n, opt->seed, prog->epoch);
    if (opt->flip)
        augment_flip_order(t->order, n, opt->seed, prog->epoch);
    clrt_write(run->rt, run->train_index, 0, (size_t)n * sizeof(int), t->order, true);
    if (run->ranks > 1) {
        zero_floats(run, run->train_rec, (size_t)n);
        zero_floats(run, run->train_kl, (size_t)n);
    }
    prog->steps = (n + batch - 1) / batch;
    prog->steps_done = first_step;
    prog->started = train_now_seconds();
}

// One step on images [start, start + rows) of the epoch's order: this rank's slice of them (all
// of them on one rank) in micro-batches of at most run->micro rows whose gradients add up (the
// noise is the batch row's) at the epoch's beta, the gradient summed across ranks, the
// optimizer's update at the step's learning rate (schedule.h). Returns whether any rank asked to
// stop.
static bool train_step(struct trainer *t, int start, int rows)
{
    struct run *run = &t->run;
    const struct train_options *opt = &t->opt;
    int lo, hi;
    slice(rows, run->rank, run->ranks, &lo, &hi);
    float beta = (float)schedule_beta(&t->sched, t->prog.epoch);
    double lr = schedule_lr(&t->sched, run->step);
    // One pass and one rank: the optimizer's step in the pass's last launch where it can.
    struct layer_step_fold fold = {0};
    bool folding = run->ranks == 1 && hi - lo <= run->micro &&
                   optimizer_fold(&t->optimizer, &run->vae->params, run->step + 1, lr, &fold.adam);
    for (int first = lo; first < hi; first += run->micro) {
        int part = hi - first < run->micro ? hi - first : run->micro;
        vae_gather(run->vae, &run->train_data, run->train_index, start + first, part);
        vae_gather_labels(run->vae, run->train_labels, run->train_index, start + first, part);
        if (opt->binarize) {
            vae_gather_now(run->vae);
            sampler_binarize(&run->vae->sampler, run->vae->x, part, run->dim, run->train_index,
                             start + first, opt->seed,
                             opt->binarize == CKPT_BINARIZE_DYNAMIC ? (uint32_t)t->prog.epoch : 0,
                             PHILOX_STREAM_BINARIZE);
        }
        struct vae_pass pass = {.rows = part,
                                .seed = opt->seed,
                                .step = (uint64_t)run->step,
                                .stream = PHILOX_STREAM_TRAIN,
                                .noise_scale = 1.0f,
                                .rec = run->train_rec,
                                .kl = run->train_kl,
                                .offset = start + first,
                                .grad_scale = 1.0f / (float)rows,
                                .noise_row0 = first,
                                .accumulate = first > lo,
                                .free_bits = (float)opt->free_bits,
                                .step_fold = folding ? &fold : NULL};
        vae_forward(run->vae, &pass);
        vae_backward(run->vae, &pass, beta);
    }
    bool stopping = exchange_gradients(run, hi > lo, train_stop_requested);
    run->step++;
    if (!fold.applied)
        optimizer_step(&t->optimizer, &run->vae->params, &run->vae->grads, run->step, lr);
    return stopping;
}

// After the run's first step: how long the start took. The one wait of the whole run, so that the
// figure includes compiling the GEMM kernels.
static void report_first_step(struct trainer *t)
{
    struct progress *prog = &t->prog;
    if (prog->live)
        fprintf(stderr,
                "clvae: first step: %s compiles its GEMM kernels for this "
                "device unless a driver cache holds them...",
                t->rt.own_gemm ? "the OpenCL driver" : "CLBlast");
    clrt_finish(&t->rt);
    if (prog->live)
        fprintf(stderr, "\r%*s\r", 100, "");
    printf("clvae: first training step done %.2f s after start\n",
           train_now_seconds() - prog->run_started);
    fflush(stdout);
    prog->report_first_step = false;
}

// The mean losses of the images [from, upto) read back, summed across ranks.
static void epoch_means(struct run *run, int from, int upto, double *rec, double *kl)
{
    dist_sum_floats(run->host_rec + from, (size_t)(upto - from));
    dist_sum_floats(run->host_kl + from, (size_t)(upto - from));
    sum_losses(run->host_rec + from, run->host_kl + from, upto - from, rec, kl);
    *rec /= upto - from;
    *kl /= upto - from;
}

// One pass over the shuffled training set from step first_step on: its steps, their losses read
// back every READ_EVERY steps (and at a stop); out's means are of the images trained on.
int train_epoch(struct trainer *t, int first_step, struct epoch_result *out,
                struct clvae_error *err)
{
    struct run *run = &t->run;
    struct progress *prog = &t->prog;
    int n = run->n_train, batch = step_rows(&t->opt, (uint32_t)n);
    start_epoch(t, first_step);
    struct readbacks rbs = {.from = first_step * batch,
                            .upto = first_step * batch,
                            .first_step = run->step - first_step};
    out->steps_done = prog->steps;
    for (int step = first_step; step < prog->steps; step++) {
        int start = step * batch, rows = n - start < batch ? n - start : batch;
        bool stopping = train_step(t, start, rows);
        if (prog->report_first_step)
            report_first_step(t);
        if ((step + 1) % READ_EVERY != 0 && step + 1 != prog->steps && !stopping)
            continue;
        if (readbacks_push(t, &rbs, start + rows, step + 1, err))
            return -1;
        if (stopping) {
            out->steps_done = step + 1;
            break;
        }
    }
    while (rbs.pending > 0)
        if (readbacks_pop(t, &rbs, err))
            return -1;
    epoch_means(run, rbs.from, rbs.upto, &out->rec, &out->kl);
    return 0;
}
