// Checkpoints in the safetensors format (8-byte little-endian header length, a JSON header, raw
// little-endian tensors), so that Python's safetensors, numpy or PyTorch read the weights as they
// are. Tensors are stored as torch.nn.Linear keeps them: weight (out, in), bias (out), named
//   encoder.{i}.weight/bias, mean.weight/bias, logvar.weight/bias, decoder.{i}.weight/bias,
//   output.weight/bias
// and, in a training checkpoint, the optimizer's state of each by the state's name (optimizer.h):
// Adam's moments as optimizer.m.<name>, optimizer.v.<name>. The header's __metadata__ holds the
// architecture, hyper-parameters (the optimizer's as "<optimizer>_<name>"), data shape, progress,
// seed and the format version (all values are strings, as safetensors requires).
#ifndef CLVAE_CHECKPOINT_H
#define CLVAE_CHECKPOINT_H

#include <stdbool.h>
#include <stdint.h>

#include "error.h"
#include "optimizer.h"
#include "schedule.h"
#include "vae.h"

#define CKPT_FORMAT_VERSION 3
#define CKPT_MAX_CLASSES 100000 // class names a checkpoint may list

// --binarize: the Bernoulli likelihood's pixels drawn from their intensities, every epoch anew
// (dynamic) or once (static); the test images always once, with a fixed key.
enum ckpt_binarize { CKPT_BINARIZE_NONE, CKPT_BINARIZE_DYNAMIC, CKPT_BINARIZE_STATIC };

// "dynamic" or "static" -> *mode; -1 with CLVAE_EXIT_USAGE naming option otherwise.
int checkpoint_parse_binarize(const char *option, const char *name, int *mode,
                              struct clvae_error *err);
const char *checkpoint_binarize_name(int mode);

// Everything a checkpoint says besides its tensors. Format version 3 added the channels, the
// likelihood, and how a PNG folder was read (background, test split, class names); versions 1 and
// 2 load as one channel, the Bernoulli likelihood, white, 0.1 and no classes.
struct ckpt_meta {
    struct vae_config cfg; // in_dim == image_rows * image_cols * channels; cfg.likelihood;
                           // cfg.classes n_classes for a conditional model ("conditional": "1")
    int image_rows, image_cols, channels;
    uint8_t background[3]; // under transparent pixels of PNG images
    double test_split;     // the fraction a PNG folder without test/ held out
    int crop;      // how a folder's images of another size were fitted: 0 stretched, 1 scaled and
                   // centre-cropped (enum image_crop; "crop" in the metadata when not 0)
    bool flip;     // training flipped images at random (--flip; "flip" in the metadata when on)
    int n_classes; // 0: no labels
    char **class_names; // n_classes names: borrowed when saving, owned by struct ckpt once loaded
    int batch;
    double lr, beta;
    // The training schedules and the gradient's treatment (train.h), each in the metadata only
    // when not its default (0, constant), so that a checkpoint of the default options is what it
    // always was: "kl_warmup", "kl_cycles", "lr_schedule", "lr_warmup", "schedule_epochs",
    // "free_bits", "clip_grad".
    int kl_warmup, kl_cycles, lr_warmup, schedule_epochs;
    enum lr_schedule lr_schedule;
    double free_bits, clip_grad;
    int binarize; // enum ckpt_binarize; "binarize" in the metadata when not none
    uint64_t seed;
    int epoch;      // epochs completed
    int64_t step;   // training steps done in all (the trainer's: the noise key, the optimizer's t)
    int epoch_step; // steps of epoch + 1 already done (an interrupted epoch); 0 at a boundary
    // The optimizer whose state the file holds, with its hyper-parameters; kind NULL: none (the
    // metadata's "optimizer": "none", the parameters alone).
    struct optimizer_config optimizer;
};

// A loaded checkpoint: host arrays in clvae's flat parameter layout (vae_layout's order and
// offsets, weights (in, out)); state[s] the optimizer kind's state s, NULL beyond its n_state or
// without an optimizer.
struct ckpt {
    struct ckpt_meta meta;
    size_t n_params;
    float *params;
    float *state[OPTIMIZER_MAX_STATE];
};

// Writes params (and, when meta->optimizer.kind is set, its kind's n_state arrays of state) in
// clvae's flat layout for meta->cfg to path: through a temporary file in the same directory,
// fsync'd and renamed over path, so path holds the old checkpoint or the new one, never a partial
// file. Errors: CLVAE_EXIT_OUTPUT naming path; CLVAE_EXIT_FAILURE for invalid arguments or
// metadata (a caller's bug).
int checkpoint_save(const char *path, const struct ckpt_meta *meta, const float *params,
                    const float *const *state, struct clvae_error *err);

// Reads and checks path: header length against the file size, the JSON, the format version, every
// tensor's dtype (F32), shape and byte range against the metadata's architecture, no tensor missing
// or left over; limits: header at most 100 MiB, dimensions at most 2^24, at most INT32_MAX
// parameters, 1 to VAE_MAX_HIDDEN hidden layers. Every size the metadata implies is counted
// without wrapping and checked before anything is allocated by it. Errors: CLVAE_EXIT_DATA,
// naming path and what is wrong.
int checkpoint_load(const char *path, struct ckpt *out, struct clvae_error *err);

void checkpoint_free(struct ckpt *ckpt);

#endif
