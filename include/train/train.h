// `clvae train`: the training loop, the per-epoch evaluation, and what it writes.
#ifndef CLVAE_TRAIN_H
#define CLVAE_TRAIN_H

#include <stdbool.h>
#include <stdint.h>

#include "checkpoint.h"
#include "error.h"
#include "image_folder.h"
#include "optimizer.h"
#include "schedule.h"
#include "vae.h"

// An epoch's figures: its line on stdout, its row of metrics.csv, what on_epoch receives.
struct epoch_row {
    int epoch;
    double rec, kl, test_rec, test_kl; // means per image, nats
    double seconds, images_per_second;
    double beta, lr; // in force: the epoch's beta, its last step's learning rate
};

struct train_options {
    const char *platform, *device; // index or name; NULL: $CLVAE_PLATFORM/DEVICE, the default
    const char *data_dir, *out_dir;
    int epochs, batch;
    double lr, beta;
    // The schedules of beta and the learning rate (schedule.h: --kl-warmup, --kl-cycles,
    // --lr-schedule, --lr-warmup); schedule_epochs the epochs the cycles and decays span (0: the
    // run's --epochs, which a checkpoint then records).
    int kl_warmup, kl_cycles, lr_warmup, schedule_epochs;
    enum lr_schedule lr_schedule;
    double free_bits; // --free-bits L: each latent dimension's batch-mean KL counts as >= L nats
    double clip_grad; // --clip-grad X: the gradient's global norm clipped to X; 0: none
    int binarize;     // --binarize: CKPT_BINARIZE_NONE, _DYNAMIC or _STATIC (checkpoint.h)
    struct optimizer_config optimizer; // --optimizer, with --weight-decay applied
    struct vae_config model;  // in_dim is taken from the data; model.likelihood is --likelihood
    const char *model_option; // the option that gave model, for messages (vae_model_option)
    // How a folder of images is read (--channels, --background, --image-size, --crop,
    // --test-split, --skip-bad-images, --no-cache); seed and progress are the run's.
    struct image_folder_options folder;
    bool conditional; // --conditional: model.classes from the data's labels (vae.h)
    bool flip;        // --flip: random horizontal flips of training images (include/data/augment.h)
    uint64_t seed;
    bool quiet;
    bool profile;            // time every kernel and GEMM on the device, print the table at the end
    const char *save_path;   // checkpoint after every epoch and when interrupted; NULL: none
                             // (the best test epoch's goes beside it: train_best_path)
    const char *resume_path; // continue from this training checkpoint; NULL: start afresh
    // The first option given that applies to PNG folders alone, refused for IDX files; NULL: none.
    const char *png_only_option;
    // Called after each epoch's outputs (metrics.csv, images, checkpoint) are written, with the
    // epoch's figures and on_epoch_user; non-zero stops the run there (train_run returns 0).
    // NULL: none (the command line's).
    int (*on_epoch)(const struct epoch_row *row, void *user);
    void *on_epoch_user;
    bool keep_signals; // leave SIGINT and SIGTERM to the caller (libclvae's callers own them)
};

// Where --save FILE keeps the checkpoint of the epoch with the lowest test loss: FILE with
// ".best" before its extension (out/model.safetensors -> out/model.best.safetensors; a name
// without an extension gets ".best" appended). -1 when it does not fit in len.
int train_best_path(const char *save_path, char *buf, size_t len);

// The monotonic clock, in seconds (for the durations commands report).
double train_now_seconds(void);

// Creates dir and the directories above it (mkdir -p); -1 with CLVAE_EXIT_OUTPUT naming the one
// that cannot be made.
int train_make_dirs(const char *dir, struct clvae_error *err);

// Sets the documented defaults.
void train_defaults(struct train_options *opt);

// Trains, evaluates after every epoch, writes OUT/metrics.csv, the image grids and, with
// save_path, a checkpoint (or stops after the epoch on_epoch says to). resume: the checkpoint of
// opt->resume_path, whose options opt holds already (src/cmd/train.c), to carry on from; train_run
// frees it. NULL: a fresh start. SIGINT or SIGTERM finish the current step, write the checkpoint
// and return CLVAE_EXIT_INTERRUPTED; a second signal ends the process at once.
int train_run(const struct train_options *opt, struct ckpt *resume, struct clvae_error *err);

#endif
