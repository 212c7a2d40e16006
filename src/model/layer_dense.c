// The dense layer y = relu?(x W + b): W (in, out) row-major, as a Keras Dense layer keeps its
// kernel (the transpose of PyTorch's nn.Linear weight), b (out). The layout makes the forward
// product and the weight gradient the NN and TN products that CLBlast runs fast on every device;
// the input gradient dy W^T uses a transposed copy (out, in) in vae->weights_t, a scratch the
// layers take in turn. Parameters on the device are reached through l->dev: the layer's part of
// them and its offsets there. The bias, ReLU and transpose pieces serve conv and deconv too
// (layer.h).
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "philox.h"
#include "vae.h"

// Whether the model runs on a CPU device, where some passes take a form of their own.
static bool cpu(const struct vae *vae)
{
    return vae->rt->device_type & CL_DEVICE_TYPE_CPU;
}

static int dense_layout(struct vae *vae, struct layer *l, char *why)
{
    (void)why;
    l->out = l->spec.units;
    l->out_shape = (struct layer_shape){.c = l->out, .h = 1, .w = 1};
    l->weight = vae->n_params;
    l->bias = l->weight + (size_t)l->in * (size_t)l->out;
    l->wgrad_m = (size_t)l->in, l->wgrad_n = (size_t)l->out, l->wgrad_k = 1;
    vae->n_params = l->bias + (size_t)l->out;
    if (l->needs_dx && (size_t)l->in * (size_t)l->out > vae->n_weights_t)
        vae->n_weights_t = (size_t)l->in * (size_t)l->out;
    return 0;
}

void dense_init_uniform(const struct layer *l, size_t end, int fan_in, uint64_t seed, float *params)
{
    double bound = 1.0 / sqrt((double)fan_in);
    for (size_t p = l->weight; p < end; p++) {
        double u = philox_uniform(seed, (uint32_t)p, 0, PHILOX_STREAM_INIT);
        params[p] = (float)((2.0 * u - 1.0) * bound);
    }
}

// PyTorch's nn.Linear default: weight and bias uniform in +-1/sqrt(in).
static void dense_init(const struct layer *l, uint64_t seed, float *params)
{
    dense_init_uniform(l, l->bias + (size_t)l->out, l->in, seed, params);
}

static void dense_create(struct vae *vae, struct layer *l)
{
    l->k_forward = clrt_kernel(vae->rt, l->relu ? "bias_relu_forward" : "bias_forward");
    l->k_bias_backward = clrt_kernel(vae->rt, "bias_backward");
    l->k_bias_backward_rows = clrt_kernel(vae->rt, "bias_backward_rows");
    l->k_bias_backward_sum = clrt_kernel(vae->rt, "bias_backward_sum");
    if (l->needs_dx)
        l->k_transpose = clrt_kernel(vae->rt, cpu(vae) ? "transpose_tiles" : "transpose");
}

// Every kernel any kind holds: dense's, and conv's im2col and col2im.
static void dense_release(struct layer *l)
{
    cl_kernel kernels[] = {l->k_forward,
                           l->k_bias_backward,
                           l->k_bias_backward_rows,
                           l->k_bias_backward_sum,
                           l->k_transpose,
                           l->k_im2col,
                           l->k_col2im};
    for (size_t i = 0; i < sizeof kernels / sizeof kernels[0]; i++)
        if (kernels[i])
            clReleaseKernel(kernels[i]);
    l->k_forward = l->k_bias_backward = l->k_bias_backward_rows = NULL;
    l->k_bias_backward_sum = l->k_transpose = NULL;
    l->k_im2col = l->k_col2im = NULL;
}

// Row-major operand views.
static struct clrt_mat mat(cl_mem mem, size_t offset, int ld)
{
    return (struct clrt_mat){mem, offset, (size_t)ld};
}

void dense_bias_forward(struct vae *vae, const struct layer *l, int rows, int n)
{
    cl_kernel k = l->k_forward;
    int bias = (int)l->dev.bias;
    cl_uint a = 0;
    KARG(k, a++, l->y);
    KARG(k, a++, l->dev.params);
    KARG(k, a++, bias);
    KARG(k, a++, rows);
    KARG(k, a++, n);
    size_t global[2] = {(size_t)n, (size_t)rows};
    clrt_launch(vae->rt, k, 2, global, NULL);
}

void dense_product_bias(struct vae *vae, const struct layer *l, size_t m, size_t n, size_t k,
                        struct clrt_mat a)
{
    struct clrt_epilogue ep = {{l->dev.params, l->dev.bias, 0}, l->relu};
    if (!clrt_gemm_bias(vae->rt, m, n, k, a, (struct clrt_mat){l->dev.params, l->dev.weight, n},
                        (struct clrt_mat){l->y, 0, n}, &ep))
        dense_bias_forward(vae, l, (int)m, (int)n);
}

// y (rows, out) = x W + b, then ReLU if the layer has it.
static void dense_forward(struct vae *vae, const struct layer *l, int rows)
{
    dense_product_bias(vae, l, (size_t)rows, (size_t)l->out, (size_t)l->in, mat(l->x, 0, l->in));
}

// In vae_bias_parts parts, summed again when there are several: a column reduction that fills a
// GPU at any batch. On a CPU with rows a multiple of 4 KiB apart, each part sweeps its rows instead
// (bias_backward_rows), the same sums.
void dense_bias_backward(struct vae *vae, const struct layer *l, int rows, int n, bool accumulate)
{
    int parts = vae_bias_parts(vae, rows, n);
    int per_part = (rows + parts - 1) / parts, relu = l->relu, acc = accumulate;
    int dbias = (int)l->dev.bias;
    bool sweep = cpu(vae) && n % 1024 == 0;
    // One part writes the gradient itself (the sweep: only when it need not add to it); the parts
    // otherwise write partial sums from 0 for the second pass.
    bool direct = parts == 1 && !(sweep && accumulate);
    cl_mem y = l->relu ? l->y : l->dy, out = direct ? l->dev.grads : vae->bias_partial;
    int out_offset = direct ? dbias : 0, out_acc = direct ? acc : 0;
    cl_kernel k = sweep ? l->k_bias_backward_rows : l->k_bias_backward;
    cl_uint a = 0;
    KARG(k, a++, l->dy);
    KARG(k, a++, y);
    KARG(k, a++, relu);
    KARG(k, a++, out);
    KARG(k, a++, out_offset);
    if (!sweep)
        KARG(k, a++, out_acc);
    KARG(k, a++, rows);
    KARG(k, a++, n);
    KARG(k, a++, per_part);
    size_t global[2] = {sweep ? (size_t)parts : (size_t)n, (size_t)parts};
    clrt_launch(vae->rt, k, sweep ? 1 : 2, global, NULL);
    if (direct)
        return;
    k = l->k_bias_backward_sum;
    a = 0;
    KARG(k, a++, vae->bias_partial);
    KARG(k, a++, parts);
    KARG(k, a++, l->dev.grads);
    KARG(k, a++, dbias);
    KARG(k, a++, acc);
    KARG(k, a++, n);
    size_t columns = (size_t)n;
    clrt_launch(vae->rt, k, 1, &columns, NULL);
}

// Refreshed every backward pass, so backward always sees the current parameters however they
// were set.
void dense_transpose_weight(struct vae *vae, const struct layer *l, int rows, int cols)
{
    cl_kernel k = l->k_transpose;
    int src = (int)l->dev.weight, dst = 0;
    cl_uint a = 0;
    KARG(k, a++, l->dev.params);
    KARG(k, a++, src);
    KARG(k, a++, vae->weights_t);
    KARG(k, a++, dst);
    KARG(k, a++, rows);
    KARG(k, a++, cols);
    size_t global[2] = {(size_t)cols, (size_t)rows};
    if (cpu(vae)) // transpose_tiles: a work-item a 16 x 16 tile
        global[0] = (global[0] + 15) / 16, global[1] = (global[1] + 15) / 16;
    clrt_launch(vae->rt, k, 2, global, NULL);
}

// dy masked by the ReLU, then db, dW (in, out) = x^T dy (added to the gradients when
// accumulate) and, when a layer below needs it, dx (rows, in) = dy W^T.
static void dense_backward(struct vae *vae, const struct layer *l, int rows, bool accumulate)
{
    dense_bias_backward(vae, l, rows, l->out, accumulate);
    if (l->needs_dx)
        dense_transpose_weight(vae, l, l->in, l->out);
    dense_weight_grad(vae, l, rows, mat(l->x, 0, l->in), mat(l->dy, 0, l->out), accumulate);
    if (l->needs_dx)
        clrt_gemm(vae->rt, false, false, (size_t)rows, (size_t)l->in, (size_t)l->out, 1.0f,
                  mat(l->dy, 0, l->out), mat(vae->weights_t, 0, l->in), 0.0f, mat(l->dx, 0, l->in));
}

void dense_weight_grad(struct vae *vae, const struct layer *l, int rows, struct clrt_mat a,
                       struct clrt_mat b, bool accumulate)
{
    size_t m = l->wgrad_m, n = l->wgrad_n, k = (size_t)rows * l->wgrad_k;
    int parts = vae_splitk_parts(vae->rt, m, n, k);
    struct clrt_mat dw = {l->dev.grads, l->dev.weight, n};
    float beta = accumulate ? 1.0f : 0.0f;
    if (parts == 1)
        clrt_gemm(vae->rt, true, false, m, n, k, 1.0f, a, b, beta, dw);
    else
        clrt_gemm_split(vae->rt, m, n, k, a, b, beta, dw, (size_t)parts, vae->splitk);
}

// A weight (out, in) and a bias (out) from columns col0 .. col0 + out - 1 of the layer.
static int dense_pair(const struct layer *l, const char *name, int out, size_t col0,
                      struct layer_tensor *t)
{
    t[0] = (struct layer_tensor){
        .ndim = 2, .shape = {out, l->in}, .stride = {1, (size_t)l->out}, .base = l->weight + col0};
    snprintf(t[0].name, sizeof t[0].name, "%s.weight", name);
    t[1] = (struct layer_tensor){.ndim = 1, .shape = {out}, .stride = {1}, .base = l->bias + col0};
    snprintf(t[1].name, sizeof t[1].name, "%s.bias", name);
    return 2;
}

// torch.nn.Linear's tensors; the Gaussian head is two of them, mean's columns first.
static int dense_tensors(const struct layer *l, struct layer_tensor *t)
{
    if (!l->gaussian_head)
        return dense_pair(l, l->name, l->out, 0, t);
    int half = l->out / 2;
    dense_pair(l, "mean", half, 0, t);
    return 2 + dense_pair(l, "logvar", half, (size_t)half, t + 2);
}

const struct layer_ops dense_ops = {
    .kind = "dense",
    .layout = dense_layout,
    .init = dense_init,
    .create = dense_create,
    .forward = dense_forward,
    .backward = dense_backward,
    .tensors = dense_tensors,
    .release = dense_release,
};
