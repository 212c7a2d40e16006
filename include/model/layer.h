// A layer kind is a module with an ops table: layout with shape checks, init, create, forward,
// backward, the checkpoint's tensors, release. The model (vae.c) walks a list of layers and knows
// no kind's insides. Kinds: dense (src/model/layer_dense.c, cl/dense.cl); conv and its transpose deconv
// (src/model/layer_conv.c, cl/conv.cl).
#ifndef CLVAE_LAYER_H
#define CLVAE_LAYER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cl_runtime.h"
#include "error.h"

// LAYER_RESHAPE is an item of a description, not a layer: it gives the flat output of the dense
// layer before it the shape (units, h, w) that a deconv after it takes.
enum layer_kind { LAYER_DENSE, LAYER_CONV, LAYER_DECONV, LAYER_RESHAPE };

// One item of an architecture description: "dense:128", "conv:32:4:2:1" (output channels,
// kernel, stride, padding), "deconv:32:4:2:1", "reshape:64x7x7" (channels x height x width).
struct layer_spec {
    enum layer_kind kind;
    int units;               // dense: output width; conv, deconv, reshape: output channels
    int kernel, stride, pad; // conv, deconv
    int h, w;                // reshape
};

// The shape of one image's activations: channels x height x width, stored (h, w, c) with the
// channel fastest (NHWC); a flat vector is (n, 1, 1) with spatial false.
struct layer_shape {
    int c, h, w;
    bool spatial;
};

struct vae;
struct layer;

// A checkpoint tensor as a view of the flat parameter buffer: element (i0, i1, ...) of the
// row-major tensor of that shape is flat[base + i0 stride[0] + i1 stride[1] + ...].
struct layer_tensor {
    char name[48];
    int ndim, shape[4];
    size_t stride[4], base;
};

#define LAYER_MAX_TENSORS 4

struct layer_ops {
    const char *kind;
    // Checks the spec against the input shape l->in_shape, sets l->out_shape, l->out, l->work
    // and the parameter offsets at vae->n_params (advancing it); no device work. 0, or -1 with
    // the reason in why (CLVAE_ERROR_MAX bytes).
    int (*layout)(struct vae *vae, struct layer *l, char *why);
    // The layer's initial parameters, in place in the host copy of the flat buffer.
    void (*init)(const struct layer *l, uint64_t seed, float *params);
    // The layer's kernels (its x, y, dx, dy, cols and dcols are the model's).
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
    struct layer_shape in_shape, out_shape;
    size_t work; // floats per image of each of cols and dcols (conv's im2col matrices), or 0
    bool relu;
    bool gaussian_head; // y is [mean | logvar]: the checkpoint names the halves mean and logvar
    bool needs_dx;      // a layer below takes dx
    size_t weight, bias; // offsets in floats of the flat parameters
    // Where they live on the device (vae_create): the part of vae->params and ->grads holding the
    // layer and the offsets within it.
    struct {
        cl_mem params, grads;
        size_t weight, bias;
    } dev;
    // The weight gradient's product: (wgrad_m, wgrad_n) summed over wgrad_k rows an image.
    size_t wgrad_m, wgrad_n, wgrad_k;
    cl_mem x, dx;                  // borrowed: the layer below's y and dy (dx NULL if !needs_dx)
    cl_mem y, dy;                  // (max_rows, out): the model's buffers
    cl_mem cols, dcols;            // (max_rows, work) when work > 0: the model's buffers
    cl_kernel k_forward, k_bias_backward, k_bias_backward_rows, k_bias_backward_sum, k_transpose;
    cl_kernel k_im2col, k_col2im;
};

// The ops of a kind.
const struct layer_ops *layer_ops_of(enum layer_kind kind);

extern const struct layer_ops dense_ops, conv_ops, deconv_ops;

// Dense pieces that conv and deconv share (layer_dense.c), for a layer whose y and dy are
// (rows, n) with n = out_shape.c channels a row:
// y += bias, then ReLU when l->relu. Range: rows x n.
void dense_bias_forward(struct vae *vae, const struct layer *l, int rows, int n);
// y (m, n) = a (m, k) W + bias, then ReLU when l->relu: one launch where clvae's kernels run the
// product (the bias and ReLU its epilogue), else the product and dense_bias_forward.
void dense_product_bias(struct vae *vae, const struct layer *l, size_t m, size_t n, size_t k,
                        struct clrt_mat a);
// dy masked by the ReLU in place; db (n) (+)= its column sums.
void dense_bias_backward(struct vae *vae, const struct layer *l, int rows, int n, bool accumulate);
// vae->weights_t = W^T (cols, rows) of W (rows, cols) at l->weight: the scratch every layer's
// input gradient uses in turn (the queue is in order).
void dense_transpose_weight(struct vae *vae, const struct layer *l, int rows, int cols);
// dW (wgrad_m, wgrad_n) at l->weight in vae->grads (+)= a^T b over rows x l->wgrad_k rows of a
// (.., wgrad_m) and b (.., wgrad_n): one product, or, when that alone would leave the device idle
// (vae_splitk_parts), clrt_gemm_split's parts of the rows into vae->splitk and their sum.
void dense_weight_grad(struct vae *vae, const struct layer *l, int rows, struct clrt_mat a,
                       struct clrt_mat b, bool accumulate);
// PyTorch's default: weight and bias uniform in +-1/sqrt(fan_in), from Philox counter p for
// flat element p.
void dense_init_uniform(const struct layer *l, size_t end, int fan_in, uint64_t seed,
                        float *params);

#endif
