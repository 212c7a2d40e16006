// The dense layer y = relu?(x W + b): W (in, out) row-major, as a Keras Dense layer keeps its
// kernel (the transpose of PyTorch's nn.Linear weight), b (out). The layout makes the forward
// product and the weight gradient the NN and TN products that CLBlast runs fast on every device;
// the input gradient dy W^T uses a transposed copy (out, in) in ctx->weights_t, a scratch the
// layers take in turn. Parameters on the device are reached through l->dev: the layer's part of
// them and its offsets there. The bias, ReLU and transpose pieces serve conv and deconv too
// (layer_kind.h). Item: "dense:N", N the width.
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cli_value.h"
#include "condition.h"
#include "layer_kind.h"
#include "philox.h"

static int dense_parse(const char *option, const char *item, const char *numbers,
                       struct layer_spec *spec, struct clvae_error *err)
{
    (void)item;
    return cli_parse_int(option, numbers, 1, LAYER_MAX_NUMBER, &spec->units, err);
}

static int dense_format(const struct layer_spec *s, char *buf, size_t len)
{
    return snprintf(buf, len, "dense:%d", s->units);
}

static bool dense_same(const struct layer_spec *a, const struct layer_spec *b)
{
    return a->units == b->units;
}

static int dense_describe(const struct layer_spec *s, char *buf, size_t len)
{
    return snprintf(buf, len, "-%d", s->units);
}

int layer_dense_to(struct layer_shape want, struct layer_spec *items)
{
    items[0] = (struct layer_spec){.kind = LAYER_DENSE, .units = want.c * want.h * want.w};
    if (!want.spatial)
        return 1;
    items[1] = layer_spec_of("reshape", want.c);
    items[1].arg[0] = want.h, items[1].arg[1] = want.w; // a reshape's height and width
    return 2;
}

// Back to the input: a dense layer to its size, reshaped when it is an image.
static int dense_mirror(const struct layer *l, struct layer_spec *items)
{
    return layer_dense_to(l->in_shape, items);
}

static int dense_layout(struct layer *l, struct layer_plan *plan, char *why)
{
    (void)why;
    l->out = l->spec.units;
    l->out_shape = (struct layer_shape){.c = l->out, .h = 1, .w = 1};
    l->weight = plan->n_params;
    l->bias = l->weight + ((size_t)l->in + (size_t)l->classes) * (size_t)l->out;
    l->wgrad_m = (size_t)l->in, l->wgrad_n = (size_t)l->out, l->wgrad_k = 1;
    plan->n_params = l->bias + (size_t)l->out;
    if (l->needs_dx) { // its own transposed weight, kept from the forward product (or the scratch)
        l->weight_t = plan->n_weights_kept;
        plan->n_weights_kept += (size_t)l->in * (size_t)l->out;
        if ((size_t)l->in * (size_t)l->out > plan->n_weights_t)
            plan->n_weights_t = (size_t)l->in * (size_t)l->out;
    }
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
    dense_init_uniform(l, l->bias + (size_t)l->out, l->in + l->classes, seed, params);
}

void dense_create(const struct layer_ctx *ctx, struct layer *l)
{
    cl_kernel *k = l->kernel;
    // A layer with classes takes its ReLU after their rows (condition_forward).
    bool relu = l->relu && !l->classes;
    k[DENSE_K_FORWARD] = clrt_kernel(ctx->rt, relu ? "bias_relu_forward" : "bias_forward");
    k[DENSE_K_BIAS_BACKWARD] = clrt_kernel(ctx->rt, ctx->cpu ? "bias_backward16" : "bias_backward");
    k[DENSE_K_BIAS_BACKWARD_ROWS] = clrt_kernel(ctx->rt, "bias_backward_rows");
    k[DENSE_K_BIAS_BACKWARD_SUM] = clrt_kernel(ctx->rt, "bias_backward_sum");
    if (l->needs_dx)
        k[DENSE_K_TRANSPOSE] = clrt_kernel(ctx->rt, ctx->cpu ? "transpose_tiles" : "transpose");
    if (l->classes)
        condition_create(ctx, l);
}

void dense_bias_forward(const struct layer_ctx *ctx, const struct layer *l, int rows, int n)
{
    cl_kernel k = l->kernel[DENSE_K_FORWARD];
    int bias = (int)l->dev.bias;
    cl_uint a = 0;
    KARG(k, a++, l->y);
    KARG(k, a++, l->dev.params);
    KARG(k, a++, bias);
    KARG(k, a++, rows);
    KARG(k, a++, n);
    size_t global[2] = {(size_t)n, (size_t)rows};
    clrt_launch(ctx->rt, k, 2, global, NULL);
}

// The epilogue of the layer's forward product: its bias and ReLU, and W^T kept (keep) where the
// product can (clrt_gemm_keeps_wt).
static struct clrt_epilogue dense_epilogue(const struct layer_ctx *ctx, const struct layer *l,
                                           size_t m, size_t n, size_t k, struct clrt_mat a,
                                           bool keep)
{
    struct clrt_epilogue ep = {.bias = {l->dev.params, l->dev.bias, 0}, .relu = l->relu};
    if (keep && ctx->weights_kept &&
        clrt_gemm_keeps_wt(ctx->rt, m, n, k, a, mat(l->dev.params, l->dev.weight, n)))
        ep.wt = mat(ctx->weights_kept, l->weight_t, k);
    return ep;
}

// The Gaussian head l's product over rows m (a its x, ep its epilogue) in the sample's launch,
// fold->next after it as far as their kinds and the device allow and fold->lik where all of them
// ran, and first (where on) before it: fold's applied flags set. False, with nothing enqueued,
// where the launch cannot run (then neither has run).
static bool head_launch(const struct layer_ctx *ctx, const struct layer *l, size_t m,
                        struct clrt_mat a, const struct clrt_epilogue *ep,
                        struct layer_y_fold *fold, const struct clrt_first_product *first)
{
    size_t n = (size_t)l->out, k = (size_t)l->in;
    struct clrt_reparam s = fold->sample;
    cl_mem x = s.z;
    size_t in = n / 2;
    int filled = 0, asked = 0;
    while (asked < CLRT_CHAIN && fold->next[asked])
        asked++;
    for (; filled < asked; filled++) {
        const struct layer *d = fold->next[filled];
        if (d->ops != LAYER_DENSE || d->classes || d->x != x || (size_t)d->in != in)
            break;
        size_t dn = (size_t)d->out;
        s.next[filled] = (struct clrt_z_product){
            .n = dn,
            .b = mat(d->dev.params, d->dev.weight, dn),
            .c = mat(d->y, 0, dn),
            .ep = dense_epilogue(ctx, d, m, dn, in, mat(d->x, 0, in), d->needs_dx)};
        x = d->y, in = dn;
    }
    // The likelihood only on the last of the model's layers.
    s.lik = filled == asked && filled > 0 ? fold->lik : (struct clrt_rows_likelihood){0};
    if (first)
        s.first = *first;
    int done = clrt_gemm_bias_reparameterize(
        ctx->rt, m, n, k, a, mat(l->dev.params, l->dev.weight, n), mat(l->y, 0, n), ep, &s);
    fold->applied = done > 0;
    fold->first_applied = done > 0 && first && first->on;
    fold->next_applied = done > 0 ? done - 1 : 0;
    fold->lik_applied = s.lik.on && done - 1 == filled;
    return done > 0;
}

// y (from row row0) = a W + b (+ ReLU) with the bias in the product where clvae's kernels run it
// (row0 0 elsewhere); keep: W^T stored at l->weight_t in ctx->weights_kept as the product reads W,
// where it can (dense_wt_kept). The Gaussian head folds in ctx->y_fold where it can: the sample,
// and the decoder's layers and the likelihood as head_launch runs them.
static void dense_product(const struct layer_ctx *ctx, const struct layer *l, size_t m, size_t n,
                          size_t k, struct clrt_mat a, bool keep, size_t row0)
{
    struct clrt_epilogue ep = dense_epilogue(ctx, l, m, n, k, a, keep);
    struct clrt_mat w = mat(l->dev.params, l->dev.weight, n);
    struct layer_y_fold *fold = ctx->y_fold;
    if (fold && !fold->applied && !l->relu && !l->classes && row0 == 0 &&
        head_launch(ctx, l, m, a, &ep, fold, NULL))
        return;
    if (!clrt_gemm_bias(ctx->rt, m, n, k, a, w, mat(l->y, row0 * n, n), &ep))
        dense_bias_forward(ctx, l, (int)m, (int)n);
}

void dense_product_bias(const struct layer_ctx *ctx, const struct layer *l, size_t m, size_t n,
                        size_t k, struct clrt_mat a, size_t row0)
{
    dense_product(ctx, l, m, n, k, a, false, row0);
}

// Whether the forward product of rows left W^T in the layer's place (the same test as there).
static bool dense_wt_kept(const struct layer_ctx *ctx, const struct layer *l, int rows)
{
    size_t in = (size_t)l->in, out = (size_t)l->out;
    return ctx->weights_kept && clrt_gemm_keeps_wt(ctx->rt, (size_t)rows, out, in, mat(l->x, 0, in),
                                                   mat(l->dev.params, l->dev.weight, out));
}

// y (rows, out) = x W + b, then ReLU if the layer has it; with classes, the class rows of W
// added before the ReLU (condition_forward).
static void dense_forward(const struct layer_ctx *ctx, const struct layer *l, int rows)
{
    size_t in = (size_t)l->in;
    if (!l->classes) {
        dense_product(ctx, l, (size_t)rows, (size_t)l->out, in, mat(l->x, 0, in), l->needs_dx, 0);
        return;
    }
    struct layer linear = *l;
    linear.relu = false;
    dense_product(ctx, &linear, (size_t)rows, (size_t)l->out, in, mat(l->x, 0, in), l->needs_dx, 0);
    condition_forward(ctx, l, rows);
}

// dense_forward with x gathered in the product (clrt_gemm_bias_gathered), the bias and ReLU
// folded in as there.
static bool dense_forward_gathered(const struct layer_ctx *ctx, const struct layer *l, int rows,
                                   const struct clrt_gather *g)
{
    size_t n = (size_t)l->out;
    if (l->classes) // never the first layer: the model does not lay one out so
        return false;
    struct clrt_epilogue ep = {.bias = {l->dev.params, l->dev.bias, 0}, .relu = l->relu};
    struct clrt_mat w = mat(l->dev.params, l->dev.weight, n), y = mat(l->y, 0, n);
    // The Gaussian head right after this layer (ctx->y_fold's head): both in its launch, where
    // the head's kind is this one and the launch can run them.
    struct layer_y_fold *fold = ctx->y_fold;
    const struct layer *h = fold ? fold->head : NULL;
    if (h && h->ops == LAYER_DENSE && !h->relu && !h->classes && h->x == l->y && h->in == l->out) {
        size_t hn = (size_t)h->out, hk = (size_t)h->in;
        struct clrt_mat ha = mat(h->x, 0, hk);
        struct clrt_epilogue hep = dense_epilogue(ctx, h, (size_t)rows, hn, hk, ha, h->needs_dx);
        struct clrt_first_product first = {
            .on = true, .g = *g, .n = n, .k = (size_t)l->in, .b = w, .c = y, .ep = ep};
        if (head_launch(ctx, h, (size_t)rows, ha, &hep, fold, &first))
            return true;
    }
    return clrt_gemm_bias_gathered(ctx->rt, (size_t)rows, n, (size_t)l->in, g, w, y, &ep);
}

// In layer_bias_parts parts, summed again when there are several: a column reduction that fills a
// GPU at any batch. On a CPU with rows a multiple of 4 KiB apart, each part sweeps its rows instead
// (bias_backward_rows), the same sums.
void dense_bias_backward(const struct layer_ctx *ctx, const struct layer *l, int rows, int n,
                         bool accumulate)
{
    int parts = layer_bias_parts(ctx, rows, n);
    int per_part = (rows + parts - 1) / parts, relu = l->relu, acc = accumulate;
    int dbias = (int)l->dev.bias;
    bool sweep = ctx->cpu && n % 1024 == 0;
    // One part writes the gradient itself (the sweep: only when it need not add to it); the parts
    // otherwise write partial sums from 0 for the second pass.
    bool direct = parts == 1 && !(sweep && accumulate);
    cl_mem y = l->relu ? l->y : l->dy, out = direct ? l->dev.grads : ctx->bias_partial;
    int out_offset = direct ? dbias : 0, out_acc = direct ? acc : 0;
    cl_kernel k = l->kernel[sweep ? DENSE_K_BIAS_BACKWARD_ROWS : DENSE_K_BIAS_BACKWARD];
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
    size_t columns = ctx->cpu ? ((size_t)n + 15) / 16 : (size_t)n; // bias_backward16's 16 a item
    size_t global[2] = {sweep ? (size_t)parts : columns, (size_t)parts};
    clrt_launch(ctx->rt, k, sweep ? 1 : 2, global, NULL);
    if (direct)
        return;
    k = l->kernel[DENSE_K_BIAS_BACKWARD_SUM];
    a = 0;
    KARG(k, a++, ctx->bias_partial);
    KARG(k, a++, parts);
    KARG(k, a++, l->dev.grads);
    KARG(k, a++, dbias);
    KARG(k, a++, acc);
    KARG(k, a++, n);
    columns = (size_t)n;
    clrt_launch(ctx->rt, k, 1, &columns, NULL);
}

void dense_transpose(const struct layer_ctx *ctx, const struct layer *l, struct clrt_mat src,
                     int rows, int cols, struct clrt_mat dst)
{
    cl_kernel k = l->kernel[DENSE_K_TRANSPOSE];
    int src_off = (int)src.offset, dst_off = (int)dst.offset, ldd = (int)dst.ld;
    cl_uint a = 0;
    KARG(k, a++, src.mem);
    KARG(k, a++, src_off);
    KARG(k, a++, dst.mem);
    KARG(k, a++, dst_off);
    KARG(k, a++, rows);
    KARG(k, a++, cols);
    KARG(k, a++, ldd);
    size_t global[2] = {(size_t)cols, (size_t)rows};
    if (ctx->cpu) // transpose_tiles: a work-item a 16 x 16 tile
        global[0] = (global[0] + 15) / 16, global[1] = (global[1] + 15) / 16;
    clrt_launch(ctx->rt, k, 2, global, NULL);
}

void dense_transpose_weight(const struct layer_ctx *ctx, const struct layer *l, int rows, int cols)
{
    dense_transpose(ctx, l, mat(l->dev.params, l->dev.weight, (size_t)cols), rows, cols,
                    mat(ctx->weights_t, 0, (size_t)rows));
}

void dense_weight_grad(const struct layer_ctx *ctx, const struct layer *l, int rows,
                       struct clrt_mat a, struct clrt_mat b, bool accumulate)
{
    size_t m = l->wgrad_m, n = l->wgrad_n, k = (size_t)rows * l->wgrad_k;
    int parts = layer_splitk_parts(ctx->rt, m, n, k);
    struct clrt_mat dw = mat(l->dev.grads, l->dev.weight, n);
    float beta = accumulate ? 1.0f : 0.0f;
    if (parts == 1)
        clrt_gemm(ctx->rt, true, false, m, n, k, 1.0f, a, b, beta, dw);
    else
        clrt_gemm_split(ctx->rt, m, n, k, a, b, beta, dw, (size_t)parts, ctx->splitk);
}

// dW and db in the weight gradient's launch (clrt_gemm_tn_colsum), when dy needs no mask here
// (no ReLU, or masked by the layer above) and the bias gradient would be one sum over the rows
// (layer_bias_parts): the same bits, a launch and a pass over dy fewer; with the optimizer's step
// folded in too where the trainer asks (ctx->step_fold). False when not so.
static bool dense_grads_fused(const struct layer_ctx *ctx, const struct layer *l, int rows,
                              bool accumulate)
{
    size_t in = (size_t)l->in, out = (size_t)l->out;
    if ((l->relu && !l->dy_masked) || layer_bias_parts(ctx, rows, l->out) > 1 ||
        layer_splitk_parts(ctx->rt, l->wgrad_m, l->wgrad_n, (size_t)rows * l->wgrad_k) > 1)
        return false;
    struct clrt_mat x = mat(l->x, 0, in), dy = mat(l->dy, 0, out),
                    dw = mat(l->dev.grads, l->dev.weight, out),
                    db = mat(l->dev.grads, l->dev.bias, 1);
    struct layer_step_fold *fold = ctx->step_fold;
    // Not with classes: their gradient (condition_backward) comes after.
    if (fold && !accumulate && !l->classes &&
        clrt_gemm_tn_colsum_adam(ctx->rt, in, out, (size_t)rows, x, dy, dw, db, &fold->adam)) {
        fold->applied = true;
        return true;
    }
    return clrt_gemm_tn_colsum(ctx->rt, in, out, (size_t)rows, x, dy, accumulate ? 1.0f : 0.0f, dw,
                               db, accumulate);
}

// dy masked by the ReLU, then db, dW (in, out) = x^T dy (added to the gradients when
// accumulate) and, when a layer below needs it, dx (rows, in) = dy W^T (added to dx when
// l->dx_accumulate), dy W^T masked by x > 0 when l->mask_dx (the ReLU of the layer below).
static void dense_backward(const struct layer_ctx *ctx, const struct layer *l, int rows,
                           bool accumulate)
{
    size_t in = (size_t)l->in, out = (size_t)l->out;
    // W^T: the layer's own, kept by the forward or made here, or the shared scratch.
    struct clrt_mat dy = mat(l->dy, 0, out), dx = mat(l->dx, 0, in), x = mat(l->x, 0, in),
                    wt = ctx->weights_kept ? mat(ctx->weights_kept, l->weight_t, in)
                                           : mat(ctx->weights_t, 0, in);
    if (l->needs_dx && !dense_wt_kept(ctx, l, rows))
        dense_transpose(ctx, l, mat(l->dev.params, l->dev.weight, out), l->in, l->out, wt);
    // The gradients and the input gradient in one launch, the model's fold (the sampler's
    // backward) in the latter's store.
    struct layer_dx_fold *fold = ctx->dx_fold;
    struct clrt_epilogue mask = {.bias = x, .kind = CLRT_EPILOGUE_MASK};
    struct clrt_pair pair = {.m0 = in,
                             .n0 = out,
                             .k0 = (size_t)rows,
                             .a0 = x,
                             .b0 = dy,
                             .c0 = mat(l->dev.grads, l->dev.weight, out),
                             .colsum = mat(l->dev.grads, l->dev.bias, 1),
                             .accumulate = accumulate,
                             .m1 = (size_t)rows,
                             .n1 = in,
                             .k1 = out,
                             .a1 = dy,
                             .b1 = wt,
                             .c1 = fold ? fold->c : dx,
                             .beta1 = !fold && l->dx_accumulate ? 1.0f : 0.0f,
                             .ep1 = fold         ? &fold->ep
                                    : l->mask_dx ? &mask
                                                 : NULL};
    if (l->needs_dx && !(l->relu && !l->dy_masked) && layer_bias_parts(ctx, rows, l->out) == 1 &&
        layer_splitk_parts(ctx->rt, l->wgrad_m, l->wgrad_n, (size_t)rows * l->wgrad_k) == 1 &&
        clrt_gemm_pair(ctx->rt, &pair)) {
        if (fold)
            fold->applied = true;
        if (l->classes)
            condition_backward(ctx, l, rows, accumulate);
        return;
    }
    if (!dense_grads_fused(ctx, l, rows, accumulate)) {
        dense_bias_backward(ctx, l, rows, l->out, accumulate);
        dense_weight_grad(ctx, l, rows, mat(l->x, 0, in), mat(l->dy, 0, out), accumulate);
    }
    if (l->classes)
        condition_backward(ctx, l, rows, accumulate);
    if (!l->needs_dx)
        return;
    float beta = l->dx_accumulate ? 1.0f : 0.0f;
    if (l->mask_dx)
        clrt_gemm_masked(ctx->rt, (size_t)rows, in, out, dy, wt, beta, dx, mat(l->x, 0, in));
    else
        clrt_gemm(ctx->rt, false, false, (size_t)rows, in, out, 1.0f, dy, wt, beta, dx);
}

// A weight (out, in) and a bias (out) from columns col0 .. col0 + out - 1 of the layer.
static int dense_pair(const struct layer *l, const char *name, int out, size_t col0,
                      struct layer_tensor *t)
{
    t[0] = (struct layer_tensor){.ndim = 2,
                                 .shape = {out, l->in + l->classes},
                                 .stride = {1, (size_t)l->out},
                                 .base = l->weight + col0};
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
    .usage = "dense:N",
    .gives = LAYER_GIVES_FLAT,
    .parse = dense_parse,
    .format = dense_format,
    .same = dense_same,
    .describe = dense_describe,
    .mirror = dense_mirror,
    .layout = dense_layout,
    .init = dense_init,
    .create = dense_create,
    .forward = dense_forward,
    .forward_gathered = dense_forward_gathered,
    .backward = dense_backward,
    .fold_relu = true,
    .tensors = dense_tensors,
    .release = layer_release_kernels,
};
