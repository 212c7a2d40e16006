// The optimizers that update the model's flat parameters from their gradients. A kind is a row of
// optimizer_kinds (src/model/optimizer.c): its name, its hyper-parameters, its state buffers (one
// value a parameter each, parted as the parameters are; also the checkpoint's tensors), and its
// step kernel. One launch a part updates every parameter (one launch unless the parameters are in
// parts, vae.h), or, where optimizer_fold says so, the step's last launch does (layer.h's
// layer_step_fold). The step counter and the learning rate are the trainer's: a step is told both.
#ifndef CLVAE_OPTIMIZER_H
#define CLVAE_OPTIMIZER_H

#include <stddef.h>
#include <stdint.h>

#include "cl_runtime.h"
#include "error.h"

#define OPTIMIZER_MAX_STATE 2 // state buffers a kind keeps (Adam's two moments)
#define OPTIMIZER_MAX_HYPER 4
#define OPTIMIZER_MAX_SCALARS 16 // a step kernel's scalar arguments

struct optimizer;

// A hyper-parameter: in the checkpoint's metadata as "<kind>_<name>" (adam_beta1). Fixed ones
// (option NULL) are always value, PyTorch's default, and a checkpoint must say so; an option sets
// the others within [min, max].
struct optimizer_hyper {
    const char *name;
    double value;       // the default
    const char *option; // "--weight-decay", or NULL: fixed
    double min, max;
};

struct optimizer_kind {
    const char *name;  // --optimizer, and the checkpoint's "optimizer"
    const char *title; // in messages and buffer names: "Adam"
    int n_hyper;
    struct optimizer_hyper hyper[OPTIMIZER_MAX_HYPER];
    int n_state;
    const char *state[OPTIMIZER_MAX_STATE];       // "m": checkpoint tensors optimizer.m.<name>
    const char *state_title[OPTIMIZER_MAX_STATE]; // "first moments": buffer names, messages
    const char *state_summary;                    // all of them: "two moments"
    // The step kernel, taking (params, grads, state..., n, then the scalars); scalars writes
    // those of update t (1, 2, ...) at learning rate lr into out and returns how many.
    const char *kernel;
    int (*scalars)(const struct optimizer *o, int64_t t, double lr, float *out);
    // Its step also folds into the first layer's weight gradient (clrt_gemm_tn_colsum_adam:
    // Adam's, state m and v, 8 scalars).
    bool foldable;
};

// The kinds clvae has, NULL-terminated; the first is the default.
extern const struct optimizer_kind *const optimizer_kinds[];

// Which optimizer, with its hyper-parameters in the kind's order: what --optimizer and its options
// say, and what a checkpoint records.
struct optimizer_config {
    const struct optimizer_kind *kind;
    double hyper[OPTIMIZER_MAX_HYPER];
};

// The kind called name, or NULL.
const struct optimizer_kind *optimizer_find(const char *name);

// kind with its default hyper-parameters.
struct optimizer_config optimizer_defaults(const struct optimizer_kind *kind);

// --optimizer NAME -> *cfg with the kind's defaults; -1 with CLVAE_EXIT_USAGE naming option and
// the kinds there are.
int optimizer_parse(const char *option, const char *name, struct optimizer_config *cfg,
                    struct clvae_error *err);

// The index in kind's hyper-parameters of the one option (e.g. "--weight-decay") sets, or -1.
int optimizer_option_index(const struct optimizer_kind *kind, const char *option);

// The hyper-parameter that option (e.g. "--weight-decay") sets, to value: -1 with
// CLVAE_EXIT_USAGE when cfg's kind has no such option (naming the kinds that do) or value is out
// of its range.
int optimizer_set_option(struct optimizer_config *cfg, const char *option, double value,
                         struct clvae_error *err);

// Device memory a parameter's state takes, in bytes.
size_t optimizer_state_bytes(const struct optimizer_kind *kind);

struct optimizer {
    struct optimizer_config cfg;
    int n;                                        // parameters
    struct clrt_parts state[OPTIMIZER_MAX_STATE]; // cfg.kind->n_state, parted as the parameters,
                                                  // zero at the start
    cl_kernel kernel;
    int values_per_item; // the kernel's: 16 on a CPU (adam_update16), else 1
    struct clrt *rt;
    // --clip-grad (optimizer_clip_create): the norm's bound, 0 for none; the work-groups' sums of
    // squares (CLIP_GROUPS a part) and [scale, norm].
    double clip;
    cl_mem clip_partial, clip_scale;
    cl_kernel k_sumsq, k_clip_scale, k_grad_scale;
};

#define CLIP_GROUPS 64 // work-groups of CLIP_LOCAL that sum a part's squares
#define CLIP_LOCAL 256

// State for the parameters parted as params is (its n and start), on rt's device; -1 with err
// when a buffer cannot be made. The kernels must be built (clrt_build).
int optimizer_create(struct optimizer *o, struct clrt *rt, const struct clrt_parts *params,
                     const struct optimizer_config *cfg, struct clvae_error *err);

// Safe on a zeroed struct.
void optimizer_release(struct optimizer *o);

// From now on each step first scales the gradient by min(1, max_norm / its global norm), computed
// on the device (torch.nn.utils.clip_grad_norm_); -1 with err when its buffers cannot be made.
int optimizer_clip_create(struct optimizer *o, double max_norm, struct clvae_error *err);

// The global norm of grads (its parts as the state's) into o->clip_scale: [min(1, o->clip /
// norm), norm], and grads scaled by the first; enqueued. optimizer_step calls it when o->clip.
void optimizer_clip(struct optimizer *o, const struct clrt_parts *grads);

// params (n) -= update t (1 for the first) on grads (n) at learning rate lr, both parted as the
// state; enqueued, not waited for.
void optimizer_step(struct optimizer *o, const struct clrt_parts *params,
                    const struct clrt_parts *grads, int64_t t, double lr);

// Update t at learning rate lr as a fold into the step's last launch (layer.h's layer_step_fold)
// rather than optimizer_step: true with *adam filled where the kind can (Adam's step), without
// --clip-grad (its norm needs the whole gradient first) and with the parameters in one buffer;
// false otherwise (then optimizer_step).
bool optimizer_fold(const struct optimizer *o, const struct clrt_parts *params, int64_t t,
                    double lr, struct clrt_adam *adam);

#endif
