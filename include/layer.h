// A layer kind is a module with an ops table: layout with shape checks, init, create, forward,
// backward, the checkpoint's tensors, release. The model (vae.c) walks a list of layers and knows
// no kind's insides. Kinds: dense (src/layer_dense.c, cl/dense.cl).
#ifndef CLVAE_LAYER_H
#define CLVAE_LAYER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cl_runtime.h"
#include "error.h"

enum layer_kind { LAYER_DENSE };

// One item of an architecture description ("dense:128").
struct layer_spec {
    enum layer_kind kind;
    int units; // dense: output width
};

struct vae;
struct layer;

// A checkpoint tensor as a view of the flat parameter buffer: element (o, i) of the (out, in)
// row-major tensor is flat[base + i * ld + o]; a bias has ndim 1, in 1.
struct layer_tensor {
    char name[48];
    int ndim, out, in;
    size_t base, ld;
};

#define LAYER_MAX_TENSORS 4

struct layer_ops {
    const char *kind;
    // Checks the shapes against l->in, sets l->out and the parameter offsets at vae->n_params
    // (advancing it); no device work. 0, or -1 with the reason in why (CLVAE_ERROR_MAX bytes).
    int (*layout)(struct vae *vae, struct layer *l, char *why);
    // The layer's initial parameters, in place in the host copy of the flat buffer.
    void (*init)(const struct layer *l, uint64_t seed, float *params);
    // The layer's kernels (its x, y, dx, dy are the model's).
    void (*create)(struct vae *vae, struct layer *l);
    // y (rows, out) from x (rows, in).
    void (*forward)(struct vae *vae, const struct layer *l, int rows);
    // dy (rows, out) -> its share of vae->grads (added to what is there when accumulate) and dx
    // (rows, in) unless l->dx is NULL; masks dy by the layer's own activation first.
    void (*backward)(struct vae *vae, const struct layer *l, int rows, bool accumulate);
    // The layer's tensors in checkpoint order (LAYER_MAX_TENSORS at most); returns how many.
    int (*tensors)(const struct layer *l, struct layer_tensor *t);
    void (*release)(struct layer *l);
};

struct layer {
    const struct layer_ops *ops;
    struct layer_spec spec;
    char name[24]; // "encoder.0", "mean+logvar", "decoder.1", "output"
    int in, out;   // floats per image of x and of y
    bool relu;
    bool gaussian_head; // y is [mean | logvar]: the checkpoint names the halves mean and logvar
    bool needs_dx;      // a layer below takes dx
    size_t weight, bias, weight_t; // offsets: params/grads, and vae->weights_t
    cl_mem x, dx;                  // borrowed: the layer below's y and dy (dx NULL if !needs_dx)
    cl_mem y, dy;                  // (max_rows, out): the model's buffers
    cl_kernel k_forward, k_bias_backward, k_bias_backward_sum, k_transpose;
};

// The ops of a kind.
const struct layer_ops *layer_ops_of(enum layer_kind kind);

extern const struct layer_ops dense_ops;

#endif
