// Private to src/train/: what one training run holds, shared by the files that do its jobs:
// train.c (open, the epochs, close), data.c (the data set on the device), epoch.c (an epoch's
// steps and their read-back, the test set's loss), outputs.c (the banner, metrics.csv, the
// images, checkpoints), resume.c (the state a run starts from, a stop mid-epoch).
#ifndef CLVAE_TRAINER_H
#define CLVAE_TRAINER_H

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "checkpoint.h"
#include "cl_runtime.h"
#include "image_folder.h"
#include "optimizer.h"
#include "schedule.h"
#include "train.h"
#include "vae.h"

#define GRID_COLS 8
#define GRID_SAMPLES 64   // prior samples in each samples_epochNNN.png
#define GRID_PAIRS 32     // test images beside their reconstructions
#define READ_EVERY 8      // steps between loss read-backs
#define READS_IN_FLIGHT 4 // read-backs the host may run ahead of the device
// On a CPU a step runs in passes of at most this many rows, its gradient summed over them: on
// PoCL here a batch of 16384 in one pass ran at 14 k img/s against 41 k at 1024 (the activations
// stop fitting in the caches). GPUs take the batch whole.
#define MICRO_BATCH_CPU 1024

// Set by SIGINT/SIGTERM; the training loop stops after the step in progress.
extern volatile sig_atomic_t train_stop_requested;

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
    cl_mem train_index, test_index;          // (count) ints: this epoch's order; the identity
    cl_mem train_labels, test_labels; // (count) ints: each image's class (--conditional); or NULL
    cl_mem train_rec, train_kl, test_rec, test_kl; // per-image losses of the current epoch
    float *host_rec, *host_kl;                     // (n_train) read back as the epoch goes
    float *host_test_rec, *host_test_kl;
    // Data-parallel training (dist.h): this process's rank of ranks; the gradient staged through
    // host memory for the sum across ranks, with one more float: the stop flag.
    int rank, ranks;
    float *host_grads;
    bool skip_sum; // $CLVAE_MPI_SKIP_ALLREDUCE=1: no gradient sum, for the tests to show it matters
    double exchange_seconds; // spent summing gradients across ranks (read, MPI, write)
    long exchanges;
    // Training steps done in all: the noise's key, the optimizer's t, where a resume carries on.
    int64_t step;
};

// What the data set is, whichever form it came in.
struct data_info {
    uint32_t n_train, n_test, height, width, channels;
    int n_classes;
    char **class_names; // owned: a PNG folder's class names (IDX files' with --conditional)
    // Owned, with --conditional: each image's class, n_train_labels of them (the training set's
    // twice with --flip, as its images are on the device) and n_test.
    int32_t *train_labels, *test_labels;
    size_t n_train_labels;
    uint64_t skipped; // files --skip-bad-images left out
    bool folder, test_folder;
    bool from_cache; // a folder's decoded images came from the cache at cache_path
    char cache_path[IMAGE_FOLDER_CACHE_PATH];
};

struct progress {
    bool live;              // draw a progress bar (stderr is a terminal and not --quiet)
    bool report_first_step; // print how long the start took, once the first step is done
    double run_started;
    int epoch, epochs, steps, steps_done;
    double started, last_drawn, loss;
};

// Everything one training run holds, from train_open to train_close; zeroed at the start.
struct trainer {
    struct train_options opt;
    struct ckpt resume;
    struct sigaction old_int, old_term;
    struct data_info data;
    struct clrt rt;
    struct vae vae;
    struct optimizer optimizer;
    struct run run;
    struct vae_config cfg; // the architecture, laid out on the data's image size
    FILE *metrics;
    char metrics_path[4200];
    int *order;
    struct progress prog;
    struct schedule sched; // beta by epoch, the learning rate by step (schedule.h)
    bool scheduled;        // a schedule is on: the epoch line and metrics.csv show beta and lr
    int start_epoch, start_step;
    double loop_start, launches_per_step;
    double best_test;     // the lowest test loss of an epoch so far (a resumed run's metrics too)
    char best_path[4200]; // where --save's best-epoch checkpoint goes
    bool root;            // rank 0 (or the only process): it alone prints and writes
    bool collective;      // the failure met is every rank's (the same step, the same message)
};

// The losses of an epoch's images and how many of its steps ran.
struct epoch_result {
    int steps_done; // less than the epoch's steps when a stop was requested
    double rec, kl; // the mean reconstruction loss and KL term of the images trained on
};

// One epoch's line of metrics.csv and of the output.
// train.c
const char *model_source(const struct train_options *opt);
int step_rows(const struct train_options *opt, uint32_t n_train);
int schedule_span(const struct train_options *opt);

// data.c
int load_data(struct run *run, const struct train_options *opt, struct data_info *info,
              struct clvae_error *err);
int run_setup(struct run *run, const struct data_info *data, struct clvae_error *err);
void run_release(struct run *run);

// epoch.c
int train_epoch(struct trainer *t, int first_step, struct epoch_result *out,
                struct clvae_error *err);
void evaluate(struct run *run, const struct train_options *opt, int epoch, double *rec, double *kl);

// outputs.c
int check_outputs(const struct train_options *opt, struct clvae_error *err);
int open_metrics(struct trainer *t, struct clvae_error *err);
void print_banner(const struct trainer *t);
void print_epoch(const struct trainer *t, const struct epoch_row *row);
int write_epoch(struct trainer *t, const struct epoch_row *row, bool best, struct clvae_error *err);
int save_checkpoint(struct trainer *t, const char *path, int epoch, int epoch_step,
                    struct clvae_error *err);

// resume.c
void load_state(struct trainer *t);
int stop_mid_epoch(struct trainer *t, int epoch, int done_steps, struct clvae_error *err);

#endif
