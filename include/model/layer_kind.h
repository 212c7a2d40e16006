// What the layer kinds' modules share, and only they include: operand views, the parsing of an
// item's numbers, and the dense pieces (bias, ReLU, transposed weights, weight gradients) that a
// convolution is built from. The model's contract with the kinds is layer.h.
#ifndef CLVAE_LAYER_KIND_H
#define CLVAE_LAYER_KIND_H

#include "layer.h"

// A row-major operand view: buffer, float offset of its first element, leading dimension.
static inline struct clrt_mat mat(cl_mem mem, size_t offset, size_t ld)
{
    return (struct clrt_mat){mem, offset, ld};
}

// "N[:N...]" (sep ':') -> up to max numbers into v (the rest keep their values); false unless
// each is a whole number in [0, LAYER_MAX_NUMBER].
bool layer_parse_numbers(const char *text, char sep, int *v, int max);

// The dense pieces below read the layer's own offsets, buffers and kernels (l->dev, l->y, l->dy,
// l->wgrad_*, l->kernel): a kind made of parts (a block of two convolutions) calls them on a copy
// of its layer holding a part's.

// The dense kernels in l->kernel, which conv and deconv create too (dense_create) and number
// theirs after.
enum {
    DENSE_K_FORWARD, // bias_forward or bias_relu_forward
    DENSE_K_BIAS_BACKWARD,
    DENSE_K_BIAS_BACKWARD_ROWS,
    DENSE_K_BIAS_BACKWARD_SUM,
    DENSE_K_TRANSPOSE, // when the layer takes dx
    DENSE_KERNELS
};

// The dense kernels of l into l->kernel[0 .. DENSE_KERNELS).
void dense_create(const struct layer_ctx *ctx, struct layer *l);

// For a layer whose y and dy are (rows, n) with n = out_shape.c channels a row:
// y += bias, then ReLU when l->relu. Range: rows x n.
void dense_bias_forward(const struct layer_ctx *ctx, const struct layer *l, int rows, int n);
// y (m, n, from row row0) = a (m, k) W + bias, then ReLU when l->relu: one launch where clvae's
// kernels run the product (the bias and ReLU its epilogue), else (row0 0 only) the product and
// dense_bias_forward.
void dense_product_bias(const struct layer_ctx *ctx, const struct layer *l, size_t m, size_t n,
                        size_t k, struct clrt_mat a, size_t row0);
// dy masked by the ReLU in place; db (n) (+)= its column sums.
void dense_bias_backward(const struct layer_ctx *ctx, const struct layer *l, int rows, int n,
                         bool accumulate);
// dst (cols, rows; rows dst.ld apart) = the transpose of src (rows, cols; contiguous), through
// l's transpose kernel (offsets in int).
void dense_transpose(const struct layer_ctx *ctx, const struct layer *l, struct clrt_mat src,
                     int rows, int cols, struct clrt_mat dst);
// ctx->weights_t = W^T (cols, rows) of W (rows, cols) at l->weight: the scratch every layer's
// input gradient uses in turn (the queue is in order). Refreshed every backward pass, so backward
// always sees the current parameters however they were set.
void dense_transpose_weight(const struct layer_ctx *ctx, const struct layer *l, int rows, int cols);
// dW (wgrad_m, wgrad_n) at l->weight in the gradients (+)= a^T b over rows x l->wgrad_k rows of a
// (.., wgrad_m) and b (.., wgrad_n): one product, or, when that alone would leave the device idle
// (layer_splitk_parts), clrt_gemm_split's parts of the rows into ctx->splitk and their sum.
void dense_weight_grad(const struct layer_ctx *ctx, const struct layer *l, int rows,
                       struct clrt_mat a, struct clrt_mat b, bool accumulate);
// PyTorch's default: weight and bias uniform in +-1/sqrt(fan_in), from Philox counter p for
// flat element p in [l->weight, end).
void dense_init_uniform(const struct layer *l, size_t end, int fan_in, uint64_t seed,
                        float *params);

// The conv kind (layer_conv.c), whose forward and backward a block of convolutions (res) runs on
// copies of its layer holding a part's offsets and buffers; its kernels after dense's, and its
// buffers: the columns (its im2col of x) and their gradient, which may be one buffer (backward
// reads the columns for the weight gradient before it writes their gradient).
extern const struct layer_ops conv_ops;
enum { CONV_K_IM2COL = DENSE_KERNELS, CONV_K_COL2IM, CONV_KERNELS };
enum { CONV_COLS, CONV_DCOLS };
// The columns of conv l, buffer[CONV_COLS] = im2col(l->x): what conv's backward reads, for a
// caller whose columns held another's since the forward pass.
void conv_im2col(const struct layer_ctx *ctx, const struct layer *l, int rows);
// conv_ops.forward without keeping the columns for the backward (a caller that makes them again
// with conv_im2col): each slice of the batch reuses the start of the columns buffer.
void conv_forward_unkept(const struct layer_ctx *ctx, const struct layer *l, int rows);
// Whether every pass of conv l over 1 .. max_rows images reads its input itself in its forward and
// weight gradient (and, with dx, in its input gradient too): then it makes no columns and needs no
// buffer for them (clrt_conv_direct).
bool conv_direct_always(const struct clrt *rt, const struct layer *l, int max_rows, bool dx);

#endif
