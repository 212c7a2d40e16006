// `clvae train`: the training loop, the per-epoch evaluation, and what it writes.
#ifndef CLVAE_TRAIN_H
#define CLVAE_TRAIN_H

#include <stdbool.h>
#include <stdint.h>

#include "error.h"
#include "image_folder.h"
#include "vae.h"

struct train_options {
    const char *platform, *device; // index or name; NULL: $CLVAE_PLATFORM/DEVICE, the default
    const char *data_dir, *out_dir;
    int epochs, batch;
    double lr, beta;
    struct vae_config model; // in_dim is taken from the data; model.likelihood is --likelihood
    const char *model_option; // the option that gave model, for messages (vae_model_option)
    // How a PNG folder is read (--channels, --background, --image-size, --test-split,
    // --skip-bad-images); seed and progress are the run's.
    struct image_folder_options folder;
    uint64_t seed;
    bool quiet;
    bool profile; // time every kernel and GEMM on the device, print the table at the end
    const char *save_path;   // checkpoint after every epoch and when interrupted; NULL: none
                             // (the best test epoch's goes beside it: train_best_path)
    const char *resume_path; // continue from this training checkpoint; NULL: start afresh
    // Which options the command line set: with --resume the others come from the checkpoint,
    // and these must agree with it.
    bool set_model, set_batch, set_lr, set_beta, set_seed;
    bool set_likelihood, set_channels, set_background, set_image_size, set_test_split;
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
// save_path, a checkpoint. SIGINT or SIGTERM finish the current step, write the checkpoint and
// return CLVAE_EXIT_INTERRUPTED; a second signal ends the process at once.
int train_run(const struct train_options *opt, struct clvae_error *err);

#endif
