// "res:C[:G]": a pre-activation residual block on C channels with group normalisation, as the
// PyTorch reference's (torch_resvae.py's Layer):
//   r1 = relu(gn1(x)), h = conv1(r1), r2 = relu(gn2(h)), y = x + conv2(r2)
// conv1, conv2 3x3, stride 1, padding 1, C to C with bias; gn1, gn2 GroupNorm(G, C) (G 8 unless
// given, C a multiple of it; eps 1e-5; per-channel scale and shift). No activation after the sum.
// The convolutions are conv's own forward and backward (layer_kind.h) run on copies of the layer
// holding each one's parameters and buffers; the normalisation's statistics are reductions over
// an image's group on the device (cl/res.cl), its scale and shift gradients dense's column sums.
// Images are channel-last; the checkpoint names the tensors as PyTorch's state_dict does.
#include <stdint.h>
#include <stdio.h>

#include "layer_kind.h"

#define GN_EPS 1e-5f

// The numbers of an item after its channels, in spec.arg.
enum { GROUPS };

// The kernels after conv's (conv_ops.create) in l->kernel.
enum { K_GN_FORWARD = CONV_KERNELS, K_GN_BACKWARD, K_ADD, RES_KERNELS };
_Static_assert(RES_KERNELS <= LAYER_MAX_KERNELS, "res's kernels fit a layer");

// The layer's buffers, an image's floats each: r1, h, r2 (H W C), the columns of either
// convolution (9 H W C: im2col, then their gradient, then gn's gx), two gradients of H W C that
// the way back takes in turn, gn1's and gn2's statistics (mean and 1/sigma of each group).
enum { R1, H, R2, COLS, D1, D2, STATS1, STATS2, RES_BUFFERS };
_Static_assert(RES_BUFFERS <= LAYER_MAX_BUFFERS, "res's buffers fit a layer");

// The parameters from l->weight: conv1's weight (9 C, C) and bias (C), conv2's, gn1's scale and
// shift (C each), gn2's.
struct res_params {
    size_t w1, b1, w2, b2, g1, s1, g2, s2; // offsets from the layer's start
};

static struct res_params params_of(int c)
{
    size_t w = (size_t)9 * c * c, n = (size_t)c;
    struct res_params p = {.w1 = 0, .b1 = w};
    p.w2 = p.b1 + n, p.b2 = p.w2 + w;
    p.g1 = p.b2 + n, p.s1 = p.g1 + n, p.g2 = p.s1 + n, p.s2 = p.g2 + n;
    return p;
}

static int res_parse(const char *option, const char *item, const char *numbers,
                     struct layer_spec *spec, struct clvae_error *err)
{
    int v[2] = {0, spec->arg[GROUPS]};
    if (!layer_parse_numbers(numbers, ':', v, 2))
        return clvae_fail(err, CLVAE_EXIT_USAGE,
                          "%s: '%s' is not a layer (res:C[:G], whole numbers up to 65536)", option,
                          item);
    spec->units = v[0], spec->arg[GROUPS] = v[1];
    if (spec->units < 1 || spec->arg[GROUPS] < 1)
        return clvae_fail(err, CLVAE_EXIT_USAGE, "%s: '%s': channels and groups must be at least 1",
                          option, item);
    if (spec->units % spec->arg[GROUPS] != 0)
        return clvae_fail(err, CLVAE_EXIT_USAGE,
                          "%s: '%s': the groups (%d) must divide the channels (%d)", option, item,
                          spec->arg[GROUPS], spec->units);
    return 0;
}

static int res_format(const struct layer_spec *s, char *buf, size_t len)
{
    return snprintf(buf, len, "res:%d:%d", s->units, s->arg[GROUPS]);
}

static bool res_same(const struct layer_spec *a, const struct layer_spec *b)
{
    return a->units == b->units && a->arg[GROUPS] == b->arg[GROUPS];
}

static int res_describe(const struct layer_spec *s, char *buf, size_t len)
{
    return snprintf(buf, len, "-res%d", s->units);
}

// A block keeps its shape: its way back is a block of the same kind.
static int res_mirror(const struct layer *l, struct layer_spec *items)
{
    items[0] = l->spec;
    return 1;
}

static int res_layout(struct layer *l, struct layer_plan *plan, char *why)
{
    const struct layer_spec *s = &l->spec;
    const struct layer_shape *in = &l->in_shape;
    if (!in->spatial)
        return snprintf(why, CLVAE_ERROR_MAX,
                        "%s: res takes an image, but its input is a flat vector of %d (put it "
                        "before the dense layers, or reshape first)",
                        l->name, l->in),
               -1;
    if (s->units < 1 || s->arg[GROUPS] < 1 || s->units % s->arg[GROUPS] != 0)
        return snprintf(why, CLVAE_ERROR_MAX, "%s: res:%d:%d: the groups must divide the channels",
                        l->name, s->units, s->arg[GROUPS]),
               -1;
    if (in->c != s->units)
        return snprintf(why, CLVAE_ERROR_MAX,
                        "%s: res:%d:%d on %dx%dx%d: a residual block keeps its channels (res:%d)",
                        l->name, s->units, s->arg[GROUPS], in->c, in->h, in->w, in->c),
               -1;
    // Each count in 64 bits: C up to 2^16 and H W C below 2^31.
    uint64_t c = (uint64_t)in->c, hw = (uint64_t)in->h * (uint64_t)in->w;
    uint64_t n_params = 2 * (9 * c * c + c) + 4 * c;
    if (n_params > LAYER_MAX_PARAMS)
        return snprintf(why, CLVAE_ERROR_MAX,
                        "%s: res:%d:%d: its convolutions would have %llu parameters, more than "
                        "the %zu a model holds",
                        l->name, s->units, s->arg[GROUPS], (unsigned long long)n_params,
                        LAYER_MAX_PARAMS),
               -1;
    if (9 * hw * c > INT32_MAX)
        return snprintf(why, CLVAE_ERROR_MAX,
                        "%s: res:%d:%d on %dx%dx%d: its columns (%llu pixels of %llu values) would "
                        "be more than 2^31 - 1 values an image",
                        l->name, s->units, s->arg[GROUPS], in->c, in->h, in->w,
                        (unsigned long long)hw, (unsigned long long)(9 * c)),
               -1;
    l->out_shape = *in;
    l->out = l->in;
    l->relu = false; // no activation after the sum
    l->weight = plan->n_params;
    l->bias = l->weight + params_of(in->c).b1;
    plan->n_params += (size_t)n_params;
    // Both convolutions take dx (the way to gn1 and gn2) whether or not a layer below needs it.
    if ((size_t)(9 * c * c) > plan->n_weights_t)
        plan->n_weights_t = (size_t)(9 * c * c);
    l->wgrad_m = (size_t)(9 * c), l->wgrad_n = (size_t)c, l->wgrad_k = (size_t)hw;
    size_t image = (size_t)l->in;
    l->n_buffers = RES_BUFFERS;
    l->buffer[R1] = (struct layer_buffer){.what = "gn1 output", .floats = image};
    l->buffer[H] = (struct layer_buffer){.what = "conv1 output", .floats = image};
    l->buffer[R2] = (struct layer_buffer){.what = "gn2 output", .floats = image};
    l->buffer[COLS] = (struct layer_buffer){.what = "columns", .floats = 9 * image};
    l->buffer[D1] = (struct layer_buffer){.what = "gradient", .floats = image};
    l->buffer[D2] = (struct layer_buffer){.what = "second gradient", .floats = image};
    size_t stats = (size_t)2 * s->arg[GROUPS];
    l->buffer[STATS1] = (struct layer_buffer){.what = "gn1 statistics", .floats = stats};
    l->buffer[STATS2] = (struct layer_buffer){.what = "gn2 statistics", .floats = stats};
    return 0;
}

// torch.nn.Conv2d's weight and bias (uniform in +-1/sqrt(9 C)) for both convolutions;
// GroupNorm's scale 1 and shift 0.
static void res_init(const struct layer *l, uint64_t seed, float *params)
{
    int c = l->in_shape.c;
    struct res_params p = params_of(c);
    struct layer part = *l;
    part.weight = l->weight + p.w1;
    dense_init_uniform(&part, l->weight + p.b1 + (size_t)c, 9 * c, seed, params);
    part.weight = l->weight + p.w2;
    dense_init_uniform(&part, l->weight + p.b2 + (size_t)c, 9 * c, seed, params);
    for (size_t i = 0; i < (size_t)c; i++) {
        params[l->weight + p.g1 + i] = 1.0f, params[l->weight + p.s1 + i] = 0.0f;
        params[l->weight + p.g2 + i] = 1.0f, params[l->weight + p.s2 + i] = 0.0f;
    }
}

static void res_create(const struct layer_ctx *ctx, struct layer *l)
{
    struct layer conv = *l;
    conv.needs_dx = true, conv.relu = false;
    conv_ops.create(ctx, &conv);
    for (int i = 0; i < CONV_KERNELS; i++)
        l->kernel[i] = conv.kernel[i];
    // On a CPU a work-item takes GN_CHAINS groups of an image (cl/res.cl).
    l->kernel[K_GN_FORWARD] =
        clrt_kernel(ctx->rt, ctx->cpu ? "group_norm_forward_chains" : "group_norm_forward");
    l->kernel[K_GN_BACKWARD] =
        clrt_kernel(ctx->rt, ctx->cpu ? "group_norm_backward_chains" : "group_norm_backward");
    l->kernel[K_ADD] = clrt_kernel(ctx->rt, "res_add");
}

// Convolution which (0: conv1, 1: conv2) as a conv layer of its own: 3x3/1/1, C to C, no ReLU,
// its parameters at theirs, x and y, dx and dy as given, the block's columns as its columns and
// their gradient.
static struct layer part_conv(const struct layer *l, int which, cl_mem x, cl_mem y, cl_mem dx,
                              cl_mem dy)
{
    struct res_params p = params_of(l->in_shape.c);
    struct layer c = *l;
    c.ops = &conv_ops;
    c.spec = (struct layer_spec){.kind = &conv_ops, .units = l->in_shape.c, .arg = {3, 1, 1}};
    c.relu = false, c.needs_dx = true, c.dx_accumulate = false;
    c.mask_dx = false, c.dy_masked = false;
    c.dev.weight = l->dev.weight + (which ? p.w2 : p.w1);
    c.dev.bias = l->dev.weight + (which ? p.b2 : p.b1);
    c.x = x, c.y = y, c.dx = dx, c.dy = dy;
    c.n_buffers = 2;
    c.buffer[CONV_COLS] = l->buffer[COLS];
    c.buffer[CONV_DCOLS] = l->buffer[COLS];
    return c;
}

#define GN_CHAINS 8 // cl/res.cl's: the groups a work-item of the CPU's kernels takes

// A GN work-group's items on a GPU: a power of two up to 256.
static size_t gn_local(const struct layer_ctx *ctx, cl_kernel k)
{
    size_t most = clrt_kernel_max_group(ctx->rt, k), local = 1;
    while (local * 2 <= most && local * 2 <= 256)
        local *= 2;
    return local;
}

// Launches a GN kernel whose arguments but the last are set, at a: on a CPU, a work-item for
// each GN_CHAINS groups of an image; elsewhere a work-group of gn_local items each group, the last
// argument their local memory.
static void gn_launch(const struct layer_ctx *ctx, const struct layer *l, cl_kernel k, cl_uint a,
                      int rows)
{
    size_t g = (size_t)l->spec.arg[GROUPS];
    if (ctx->cpu) {
        size_t global = (size_t)rows * ((g + GN_CHAINS - 1) / GN_CHAINS), one = 1;
        clrt_launch(ctx->rt, k, 1, &global, &one);
        return;
    }
    size_t local = gn_local(ctx, k), global = (size_t)rows * g * local;
    KARG_LOCAL(k, a, local * sizeof(float));
    clrt_launch(ctx->rt, k, 1, &global, &local);
}

// The offsets of gn number which (0, 1)'s scale and shift on the device, and its statistics.
static void gn_args(const struct layer *l, int which, int *gamma, int *beta, cl_mem *stats)
{
    struct res_params p = params_of(l->in_shape.c);
    *gamma = (int)(l->dev.weight + (which ? p.g2 : p.g1));
    *beta = (int)(l->dev.weight + (which ? p.s2 : p.s1));
    *stats = l->buffer[which ? STATS2 : STATS1].mem;
}

// y = relu(gn(x)) by gn number which (0, 1), its statistics kept for the way back.
static void gn_forward(const struct layer_ctx *ctx, const struct layer *l, int which, cl_mem x,
                       cl_mem y, int rows)
{
    cl_kernel k = l->kernel[K_GN_FORWARD];
    int gamma, beta, hw = l->in_shape.h * l->in_shape.w, c = l->in_shape.c, g = l->spec.arg[GROUPS];
    cl_mem stats;
    gn_args(l, which, &gamma, &beta, &stats);
    float eps = GN_EPS;
    cl_uint a = 0;
    KARG(k, a++, x);
    KARG(k, a++, y);
    KARG(k, a++, stats);
    KARG(k, a++, l->dev.params);
    KARG(k, a++, gamma);
    KARG(k, a++, beta);
    KARG(k, a++, hw);
    KARG(k, a++, c);
    KARG(k, a++, g);
    KARG(k, a++, eps);
    gn_launch(ctx, l, k, a, rows);
}

// The scale's or shift's gradient (at offset in the gradients) (+)= the column sums of d (rows H
// W, C): dense's bias gradient on a copy of the layer, which first masks d in place by y > 0 when
// y is not NULL (the ReLU after the normalisation).
static void gn_column_sums(const struct layer_ctx *ctx, const struct layer *l, cl_mem d, cl_mem y,
                           size_t offset, int rows, bool accumulate)
{
    struct layer part = *l;
    part.dy = d, part.y = y, part.relu = y != NULL;
    part.dev.bias = l->dev.weight + offset;
    dense_bias_backward(ctx, &part, rows * l->in_shape.h * l->in_shape.w, l->in_shape.c,
                        accumulate);
}

// The way back through y = relu(gn(x)) by gn number which, from dy (masked here in place by y):
// the shift's and scale's gradients, and dx (when dx is not NULL) = gn's input gradient, plus
// skip when not NULL, added to dx when acc. The columns hold gx = dy xhat between the kernel and
// the scale's column sums.
static void gn_backward(const struct layer_ctx *ctx, const struct layer *l, int which, cl_mem x,
                        cl_mem y, cl_mem dy, cl_mem dx, cl_mem skip, bool acc, int rows,
                        bool accumulate)
{
    struct res_params p = params_of(l->in_shape.c);
    gn_column_sums(ctx, l, dy, y, which ? p.s2 : p.s1, rows, accumulate);
    cl_kernel k = l->kernel[K_GN_BACKWARD];
    int gamma, beta, hw = l->in_shape.h * l->in_shape.w, c = l->in_shape.c, g = l->spec.arg[GROUPS];
    cl_mem stats, gx = l->buffer[COLS].mem;
    gn_args(l, which, &gamma, &beta, &stats);
    int write_dx = dx != NULL, add_skip = skip != NULL, add = acc;
    cl_mem dx_arg = write_dx ? dx : gx, skip_arg = add_skip ? skip : gx; // (unread when unused)
    cl_uint a = 0;
    KARG(k, a++, dy);
    KARG(k, a++, x);
    KARG(k, a++, stats);
    KARG(k, a++, l->dev.params);
    KARG(k, a++, gamma);
    KARG(k, a++, gx);
    KARG(k, a++, dx_arg);
    KARG(k, a++, write_dx);
    KARG(k, a++, skip_arg);
    KARG(k, a++, add_skip);
    KARG(k, a++, add);
    KARG(k, a++, hw);
    KARG(k, a++, c);
    KARG(k, a++, g);
    gn_launch(ctx, l, k, a, rows);
    gn_column_sums(ctx, l, gx, NULL, which ? p.g2 : p.g1, rows, accumulate);
}

// The columns buffer holds either convolution's columns and their gradient, and gn's gx (H W C an
// image): only gx where both convolutions' products read the image (conv_direct_always), a ninth
// of its images (the residual benchmark model's device memory 816 -> 690 MiB).
static size_t res_buffer_images(const struct layer *l, int b, const struct clrt *rt, int max_rows)
{
    if (b != COLS)
        return (size_t)max_rows;
    struct layer conv = part_conv(l, 0, NULL, NULL, NULL, NULL);
    return conv_direct_always(rt, &conv, max_rows, true) ? ((size_t)max_rows + 8) / 9
                                                         : (size_t)max_rows;
}

// r1 = relu(gn1(x)), h = conv1(r1), r2 = relu(gn2(h)), y = conv2(r2) + x.
static void res_forward(const struct layer_ctx *ctx, const struct layer *l, int rows)
{
    cl_mem r1 = l->buffer[R1].mem, h = l->buffer[H].mem, r2 = l->buffer[R2].mem;
    gn_forward(ctx, l, 0, l->x, r1, rows);
    // (The backward makes each convolution's columns again: none kept.)
    struct layer conv1 = part_conv(l, 0, r1, h, NULL, NULL);
    conv_forward_unkept(ctx, &conv1, rows);
    gn_forward(ctx, l, 1, h, r2, rows);
    struct layer conv2 = part_conv(l, 1, r2, l->y, NULL, NULL);
    conv_forward_unkept(ctx, &conv2, rows);
    cl_kernel k = l->kernel[K_ADD];
    int n = rows * l->out;
    cl_uint a = 0;
    KARG(k, a++, l->y);
    KARG(k, a++, l->x);
    KARG(k, a++, n);
    size_t global = (size_t)n;
    clrt_launch(ctx->rt, k, 1, &global, NULL);
}

// From dy: conv2's gradients and dr2 (in D1), gn2's and dh (in D2), conv1's and dr1 (in D1),
// gn1's and dx = dy (the skip) + gn1's input gradient. Each convolution's columns are made again
// first: the block's one columns buffer held the other's since the forward pass.
static void res_backward(const struct layer_ctx *ctx, const struct layer *l, int rows,
                         bool accumulate)
{
    cl_mem r1 = l->buffer[R1].mem, h = l->buffer[H].mem, r2 = l->buffer[R2].mem;
    cl_mem d1 = l->buffer[D1].mem, d2 = l->buffer[D2].mem;
    struct layer conv2 = part_conv(l, 1, r2, l->y, d1, l->dy);
    conv_im2col(ctx, &conv2, rows);
    conv_ops.backward(ctx, &conv2, rows, accumulate);
    gn_backward(ctx, l, 1, h, r2, d1, d2, NULL, false, rows, accumulate);
    struct layer conv1 = part_conv(l, 0, r1, h, d1, d2);
    conv_im2col(ctx, &conv1, rows);
    conv_ops.backward(ctx, &conv1, rows, accumulate);
    gn_backward(ctx, l, 0, l->x, r1, d1, l->dx, l->dy, l->dx_accumulate, rows, accumulate);
}

// A scale or shift (C) of the normalisation named name, at offset from the layer's start.
static void vector_tensor(const struct layer *l, const char *name, size_t offset,
                          struct layer_tensor *t)
{
    *t = (struct layer_tensor){
        .ndim = 1, .shape = {l->in_shape.c}, .stride = {1}, .base = l->weight + offset};
    snprintf(t->name, sizeof t->name, "%s.%s", l->name, name);
}

// A convolution's weight (C, C, 3, 3) as conv's (element [oc][c][ky][kx] at ((ky 3 + kx) C + c)
// C + oc) and its bias, named prefix.weight and prefix.bias.
static void conv_tensors(const struct layer *l, const char *prefix, size_t w, size_t b,
                         struct layer_tensor *t)
{
    size_t c = (size_t)l->in_shape.c;
    t[0] = (struct layer_tensor){.ndim = 4,
                                 .shape = {(int)c, (int)c, 3, 3},
                                 .stride = {1, c, 3 * c * c, c * c},
                                 .base = l->weight + w};
    snprintf(t[0].name, sizeof t[0].name, "%s.%s.weight", l->name, prefix);
    char name[16];
    snprintf(name, sizeof name, "%s.bias", prefix);
    vector_tensor(l, name, b, t + 1);
}

// In the order of PyTorch's state_dict: gn1, conv1, gn2, conv2.
static int res_tensors(const struct layer *l, struct layer_tensor *t)
{
    struct res_params p = params_of(l->in_shape.c);
    vector_tensor(l, "gn1.weight", p.g1, &t[0]);
    vector_tensor(l, "gn1.bias", p.s1, &t[1]);
    conv_tensors(l, "conv1", p.w1, p.b1, t + 2);
    vector_tensor(l, "gn2.weight", p.g2, &t[4]);
    vector_tensor(l, "gn2.bias", p.s2, &t[5]);
    conv_tensors(l, "conv2", p.w2, p.b2, t + 6);
    return 8;
}

const struct layer_ops res_ops = {
    .kind = "res",
    .usage = "res:C[:G]",
    .gives = LAYER_GIVES_IMAGE,
    .defaults = {8},
    .parse = res_parse,
    .format = res_format,
    .same = res_same,
    .describe = res_describe,
    .mirror = res_mirror,
    .layout = res_layout,
    .init = res_init,
    .create = res_create,
    .forward = res_forward,
    .backward = res_backward,
    .tensors = res_tensors,
    .release = layer_release_kernels,
    .buffer_images = res_buffer_images,
};
