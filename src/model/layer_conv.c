// Convolution and its transpose on channel-last images (NHWC), as im2col or col2im around one
// CLBlast product over every kernel position of the batch: a conv is a dense layer applied to the
// im2col matrix, so its bias, ReLU, bias gradient and transposed weight are dense's.
//   conv:   y (rows OH OW, OC) = im2col(x) (rows OH OW, K K C) W (K K C, OC) + b
//   deconv: y = col2im(x (rows IH IW, IC) Wd (IC, K K OC)) + b, the adjoint of a conv from y's
//           grid to x's (PyTorch's ConvTranspose2d, output_padding 0)
// Weights are stored as the products take them; the checkpoint gives PyTorch's shapes, (OC, C, K,
// K) and (IC, OC, K, K), by strides. Items: "conv:C[:K[:S[:P]]]", "deconv:C[:K[:S[:P]]]" (output
// channels, kernel, stride, padding; 4, 2, 1 unless given).
#include <stdint.h>
#include <stdio.h>

#include "layer_kind.h"

// The numbers of an item after its channels, in spec.arg.
enum { KERNEL, STRIDE, PAD };

// The kernels after dense's (dense_create) in l->kernel, and the columns and their gradient in
// l->buffer: layer_kind.h's, for res.
enum { K_IM2COL = CONV_K_IM2COL, K_COL2IM = CONV_K_COL2IM };
_Static_assert(CONV_KERNELS <= LAYER_MAX_KERNELS, "conv's kernels fit a layer");
enum { COLS = CONV_COLS, DCOLS = CONV_DCOLS };

extern const struct layer_ops deconv_ops;

// Both kinds' items. A bad deconv item is refused in conv's words, as it always was.
static int conv_parse(const char *option, const char *item, const char *numbers,
                      struct layer_spec *spec, struct clvae_error *err)
{
    int v[4] = {0, spec->arg[KERNEL], spec->arg[STRIDE], spec->arg[PAD]};
    if (!layer_parse_numbers(numbers, ':', v, 4))
        return clvae_fail(err, CLVAE_EXIT_USAGE,
                          "%s: '%s' is not a layer (%s, whole numbers up to 65536)", option, item,
                          conv_ops.usage);
    spec->units = v[0];
    spec->arg[KERNEL] = v[1], spec->arg[STRIDE] = v[2], spec->arg[PAD] = v[3];
    if (spec->units < 1)
        return clvae_fail(err, CLVAE_EXIT_USAGE, "%s: '%s': channels and sizes must be at least 1",
                          option, item);
    return 0;
}

static int conv_format(const struct layer_spec *s, char *buf, size_t len)
{
    return snprintf(buf, len, "%s:%d:%d:%d:%d", s->kind->kind, s->units, s->arg[KERNEL],
                    s->arg[STRIDE], s->arg[PAD]);
}

static bool conv_same(const struct layer_spec *a, const struct layer_spec *b)
{
    return a->units == b->units && a->arg[KERNEL] == b->arg[KERNEL] &&
           a->arg[STRIDE] == b->arg[STRIDE] && a->arg[PAD] == b->arg[PAD];
}

static int conv_describe(const struct layer_spec *s, char *buf, size_t len)
{
    return snprintf(buf, len, "-conv%d(%dx%d/%d)", s->units, s->arg[KERNEL], s->arg[KERNEL],
                    s->arg[STRIDE]);
}

// A conv's way back is its transpose to its input's channels.
static int conv_mirror(const struct layer *l, struct layer_spec *items)
{
    items[0] = l->spec;
    items[0].kind = &deconv_ops;
    items[0].units = l->in_shape.c;
    return 1;
}

// A deconv in an encoder mirrors as a dense layer back to its input.
static int deconv_mirror(const struct layer *l, struct layer_spec *items)
{
    return layer_dense_to(l->in_shape, items);
}

static const char *geometry(const struct layer *l, char *buf, size_t len)
{
    const int *a = l->spec.arg;
    snprintf(buf, len, "%s:%d:%d:%d:%d on %dx%dx%d", l->ops->kind, l->spec.units, a[KERNEL],
             a[STRIDE], a[PAD], l->in_shape.c, l->in_shape.h, l->in_shape.w);
    return buf;
}

// The checks both kinds share; 0, or -1 with why.
static int check_spec(const struct layer *l, char *why)
{
    char g[96];
    const struct layer_spec *s = &l->spec;
    int kernel = s->arg[KERNEL], stride = s->arg[STRIDE], pad = s->arg[PAD];
    if (!l->in_shape.spatial)
        return snprintf(why, CLVAE_ERROR_MAX,
                        "%s: %s takes an image, but its input is a flat vector of %d (put it "
                        "before the dense layers, or reshape first)",
                        l->name, l->ops->kind, l->in),
               -1;
    if (s->units < 1 || kernel < 1 || stride < 1 || pad < 0 || pad >= kernel)
        return snprintf(why, CLVAE_ERROR_MAX,
                        "%s: %s needs channels, kernel and stride of at least 1 and a padding "
                        "below the kernel",
                        l->name, geometry(l, g, sizeof g)),
               -1;
    return 0;
}

// An output of channels x h x w values an image, checked before it is laid out: the kernels index
// an image's values with int. 0, or -1 with why.
static int check_output(const struct layer *l, int64_t channels, int64_t h, int64_t w, char *why)
{
    char g[96];
    if (h * w > INT32_MAX || channels * h * w > INT32_MAX)
        return snprintf(why, CLVAE_ERROR_MAX,
                        "%s: %s: the output would be %lldx%lldx%lld, more than 2^31 - 1 values "
                        "an image",
                        l->name, geometry(l, g, sizeof g), (long long)channels, (long long)h,
                        (long long)w),
               -1;
    return 0;
}

// The weight's parameters, a x b x k x k (PyTorch's shape), at most LAYER_MAX_PARAMS (refused
// with its true size, computed in 64 bits), and the columns' values an image, grid positions x k k
// b, at most 2^31 - 1 (so that no size the model computes from them wraps). 0, or -1 with why.
static int check_sizes(const struct layer *l, uint64_t a, uint64_t b, uint64_t grid, char *why)
{
    char g[96];
    uint64_t k = (uint64_t)l->spec.arg[KERNEL], kk = k * k, weight = 0;
    bool fits = kk <= UINT64_MAX / b && kk * b <= UINT64_MAX / a;
    if (fits)
        weight = kk * b * a;
    if (!fits || weight > LAYER_MAX_PARAMS) {
        char count[32] = "2^64 or more";
        if (fits)
            snprintf(count, sizeof count, "%llu", (unsigned long long)weight);
        return snprintf(why, CLVAE_ERROR_MAX,
                        "%s: %s: its weight would have %llu x %llu x %llu x %llu = %s parameters, "
                        "more than the %zu a model holds",
                        l->name, geometry(l, g, sizeof g), (unsigned long long)a,
                        (unsigned long long)b, (unsigned long long)k, (unsigned long long)k, count,
                        LAYER_MAX_PARAMS),
               -1;
    }
    if (grid * kk * b > INT32_MAX) // each factor below 2^31 here
        return snprintf(why, CLVAE_ERROR_MAX,
                        "%s: %s: its columns (%llu grid positions of %llu values) would be more "
                        "than 2^31 - 1 values an image",
                        l->name, geometry(l, g, sizeof g), (unsigned long long)grid,
                        (unsigned long long)(kk * b)),
               -1;
    return 0;
}

// The leading dimension of the weight matrix (cols wide) that clrt_conv_input_grad reads, W^T
// (OC, K K C) for a conv's input gradient, W (IC, K K OC) for a deconv's forward: its rows, one
// position's 16 or 32 floats of each in turn, fall in the same few cache sets when they are a
// multiple of 1 KiB apart (K K C = 512 or 1024 for 4x4 kernels over 32 or 64 channels), so such
// a matrix is copied 16 floats wider. The conv reference's 14x14x32 input gradient (K K C 512):
// 4.1-4.2 ms a batch so, 4.4-6.1 at 512 (clvae's kernels on PoCL, 2-core Xeon, 2026-12-05).
static size_t direct_ld(size_t cols)
{
    return cols % 256 == 0 ? cols + 16 : cols;
}

// Room for floats in the model's transposed weights (the scratch they share).
static void reserve_weights_t(struct layer_plan *plan, size_t floats)
{
    if (floats > plan->n_weights_t)
        plan->n_weights_t = floats;
}

// Parameters: weight (wrows, wcols), bias (channels), room for its transpose in the model's
// transposed weights when a layer below needs dx; the columns and their gradient, work floats an
// image each.
static void lay_out_params(struct layer *l, struct layer_plan *plan, size_t wrows, size_t wcols,
                           size_t work)
{
    l->out = l->out_shape.c * l->out_shape.h * l->out_shape.w;
    l->n_buffers = 2;
    l->buffer[COLS] = (struct layer_buffer){.what = "columns", .floats = work};
    l->buffer[DCOLS] = (struct layer_buffer){.what = "column gradient", .floats = work};
    l->weight = plan->n_params;
    l->bias = l->weight + wrows * wcols;
    plan->n_params = l->bias + (size_t)l->out_shape.c;
    if (l->needs_dx)
        reserve_weights_t(plan, wrows * wcols);
}

static int conv_layout(struct layer *l, struct layer_plan *plan, char *why)
{
    if (check_spec(l, why))
        return -1;
    const struct layer_spec *s = &l->spec;
    const struct layer_shape *in = &l->in_shape;
    int kernel = s->arg[KERNEL], stride = s->arg[STRIDE], pad = s->arg[PAD];
    // In 64 bits: a deconv's output of up to 2^31 - 1 rows plus the padding passes an int.
    int64_t span_h = (int64_t)in->h + 2 * pad - kernel;
    int64_t span_w = (int64_t)in->w + 2 * pad - kernel;
    char g[96];
    if (span_h < 0 || span_w < 0)
        return snprintf(why, CLVAE_ERROR_MAX, "%s: %s: the kernel is larger than the padded input",
                        l->name, geometry(l, g, sizeof g)),
               -1;
    if (span_h % stride != 0 || span_w % stride != 0)
        return snprintf(why, CLVAE_ERROR_MAX,
                        "%s: %s: the stride does not fit the input (%d + 2 x %d - %d is not a "
                        "multiple of %d, so pixels would be dropped)",
                        l->name, geometry(l, g, sizeof g), span_h % stride ? in->h : in->w, pad,
                        kernel, stride),
               -1;
    int64_t oh = span_h / stride + 1, ow = span_w / stride + 1;
    if (check_output(l, s->units, oh, ow, why) ||
        check_sizes(l, (uint64_t)s->units, (uint64_t)in->c, (uint64_t)(oh * ow), why))
        return -1;
    l->out_shape = (struct layer_shape){.c = s->units, .h = (int)oh, .w = (int)ow, .spatial = true};
    size_t kkc = (size_t)kernel * kernel * in->c;
    lay_out_params(l, plan, kkc, (size_t)s->units, (size_t)l->out_shape.h * l->out_shape.w * kkc);
    if (l->needs_dx) // (W^T with its rows direct_ld(kkc) apart, for clrt_conv_input_grad)
        reserve_weights_t(plan, (size_t)s->units * direct_ld(kkc));
    l->wgrad_m = kkc, l->wgrad_n = (size_t)s->units;
    l->wgrad_k = (size_t)l->out_shape.h * l->out_shape.w;
    return 0;
}

static int deconv_layout(struct layer *l, struct layer_plan *plan, char *why)
{
    if (check_spec(l, why))
        return -1;
    const struct layer_spec *s = &l->spec;
    const struct layer_shape *in = &l->in_shape;
    int kernel = s->arg[KERNEL], stride = s->arg[STRIDE], pad = s->arg[PAD];
    int64_t oh = (int64_t)(in->h - 1) * stride - 2 * pad + kernel;
    int64_t ow = (int64_t)(in->w - 1) * stride - 2 * pad + kernel;
    char g[96];
    if (oh < 1 || ow < 1)
        return snprintf(why, CLVAE_ERROR_MAX, "%s: %s: the output would be empty (%lldx%lld)",
                        l->name, geometry(l, g, sizeof g), (long long)oh, (long long)ow),
               -1;
    if (check_output(l, s->units, oh, ow, why) ||
        check_sizes(l, (uint64_t)in->c, (uint64_t)s->units, (uint64_t)in->h * (uint64_t)in->w, why))
        return -1;
    l->out_shape = (struct layer_shape){.c = s->units, .h = (int)oh, .w = (int)ow, .spatial = true};
    size_t kko = (size_t)kernel * kernel * s->units;
    lay_out_params(l, plan, (size_t)in->c, kko, (size_t)in->h * in->w * kko);
    // The forward's copy of W for clrt_conv_input_grad; the backward's dW^T.
    reserve_weights_t(plan, (size_t)in->c * direct_ld(kko));
    l->wgrad_m = (size_t)in->c, l->wgrad_n = kko, l->wgrad_k = (size_t)in->h * in->w;
    return 0;
}

// PyTorch's default for Conv2d and ConvTranspose2d: uniform in +-1/sqrt(fan_in), fan_in = C K K
// for a conv, OC K K for its transpose (torch takes dimension 1 of the weight).
static void init_fan_in(const struct layer *l, int channels, uint64_t seed, float *params)
{
    int kk = l->spec.arg[KERNEL] * l->spec.arg[KERNEL];
    dense_init_uniform(l, l->bias + (size_t)l->out_shape.c, kk * channels, seed, params);
}

static void conv_init(const struct layer *l, uint64_t seed, float *params)
{
    init_fan_in(l, l->in_shape.c, seed, params);
}

static void deconv_init(const struct layer *l, uint64_t seed, float *params)
{
    init_fan_in(l, l->spec.units, seed, params);
}

static void conv_create(const struct layer_ctx *ctx, struct layer *l)
{
    dense_create(ctx, l);
    // A work-item a grid row on CPUs, a float on GPUs (cl/conv.cl).
    l->kernel[K_IM2COL] = clrt_kernel(ctx->rt, ctx->cpu ? "conv_im2col" : "conv_im2col_items");
    l->kernel[K_COL2IM] = clrt_kernel(ctx->rt, ctx->cpu ? "conv_col2im" : "conv_col2im_items");
}

// im2col (which K_IM2COL) or col2im (K_COL2IM) between images first .. first + count - 1 of img,
// an image of shape, and their rows of cols over the grid of the conv that shape is the input of
// (for a conv) or the output of (a deconv); col2im adds to what img holds when acc. cols holds
// the batch's columns, each image's at its place (own false), or the slice's own from its start
// (own: a buffer every slice reuses, which then holds one slice, buffer_images: the conv
// reference's device memory 258 -> 214 MiB; its epoch time did not change measurably).
static void columns(const struct layer_ctx *ctx, const struct layer *l, int which, cl_mem from,
                    cl_mem to, int first, int count, bool own, struct layer_shape img,
                    struct layer_shape grid, bool acc)
{
    cl_kernel k = l->kernel[which];
    cl_uint a = 0;
    KARG(k, a++, from);
    KARG(k, a++, to);
    KARG(k, a++, count);
    KARG(k, a++, img.c);
    KARG(k, a++, img.h);
    KARG(k, a++, img.w);
    KARG(k, a++, grid.h);
    KARG(k, a++, grid.w);
    KARG(k, a++, l->spec.arg[KERNEL]);
    KARG(k, a++, l->spec.arg[STRIDE]);
    KARG(k, a++, l->spec.arg[PAD]);
    bool im2col = which == K_IM2COL;
    if (!im2col) {
        int add = acc;
        KARG(k, a++, add);
    }
    KARG(k, a++, first);
    int base = own ? first : 0;
    KARG(k, a++, base);
    // On a CPU a work-item of conv_im2col writes one grid row, one of conv_col2im sums
    // COL2IM_CHANNELS (16) channels of one image row; on a GPU a work-item of conv_im2col_items
    // or conv_col2im_items writes one float, of the columns or of the image (cl/conv.cl).
    size_t rows = (size_t)count * (im2col ? grid.h : img.h); // grid rows or image rows
    if (ctx->cpu) {
        size_t global[2] = {im2col ? rows : ((size_t)img.c + 15) / 16, im2col ? 1 : rows};
        clrt_launch(ctx->rt, k, 2, global, NULL);
    } else {
        size_t kkc = (size_t)l->spec.arg[KERNEL] * l->spec.arg[KERNEL] * img.c;
        size_t global[2] = {im2col ? grid.w * kkc : (size_t)img.w * img.c, rows};
        size_t local[2] = {64, 1};
        clrt_launch(ctx->rt, k, 2, global, local);
    }
}

// Images a slice of the batch takes through a product that writes or reads columns and the pass
// over them that reads or wrote them (col2im, im2col), so that the second finds the columns in the
// cache (rt->slice_bytes of them, about): the product over the batch's positions has m rows (m /
// rows an image) of n columns over k, and an image cols floats of columns (more, up to the batch,
// where a slice of fewer, or the last slice, would split the product). The whole batch where
// rt->slice_bytes is 0 (devices other than CPUs), or where clvae's kernels would not run each
// slice's product as one, unsplit, as they run the whole one (so that slices give the same bits).
static int slice_images(const struct clrt *rt, int rows, size_t m, size_t n, size_t k, size_t cols)
{
    size_t per = cols * sizeof(float), bytes = rt->slice_bytes;
    size_t images = per ? bytes / per : (size_t)rows;
    images = images < 1 ? 1 : images;
    if (bytes == 0 || images >= (size_t)rows || !clrt_gemm_unsplit(rt, m, n, k))
        return rows;
    // More images where a slice's product, or the last slice's (the images left over), would be
    // split over k (a narrow one over a long k).
    size_t grid = m / (size_t)rows;
    for (; images < (size_t)rows; images++) {
        size_t last = (size_t)rows % images;
        if (clrt_gemm_unsplit(rt, grid * images, n, k) &&
            (last == 0 || clrt_gemm_unsplit(rt, grid * last, n, k)))
            break;
    }
    return (int)images;
}

// The most images a slice_images slice takes over batches of 1 .. max_rows images (grid rows of
// the product an image): what a buffer that holds one slice at a time needs.
static size_t most_slice_images(const struct clrt *rt, int max_rows, size_t grid, size_t n,
                                size_t k, size_t cols)
{
    size_t most = 1;
    for (int rows = 1; rows <= max_rows && most < (size_t)max_rows; rows++) {
        size_t images = (size_t)slice_images(rt, rows, (size_t)rows * grid, n, k, cols);
        most = images > most ? images : most;
    }
    return most;
}

// K K C: a column's values for a conv of l's input.
static size_t conv_kkc(const struct layer *l)
{
    return (size_t)l->spec.arg[KERNEL] * l->spec.arg[KERNEL] * l->in_shape.c;
}

// The conv of l's kernel from image to grid (a conv's input and output; a deconv's output and
// input) as the products that read an image in place of its columns see it: img x, or for an
// input gradient (a deconv's forward) dy (x), whose channels are then the grid's.
static struct clrt_conv conv_geometry(const struct layer *l, cl_mem img, struct layer_shape image,
                                      struct layer_shape grid)
{
    const int *a = l->spec.arg;
    return (struct clrt_conv){.img = img,
                              .c = image.c,
                              .h = image.h,
                              .w = image.w,
                              .gh = grid.h,
                              .gw = grid.w,
                              .k = a[KERNEL],
                              .s = a[STRIDE],
                              .p = a[PAD]};
}

// Whether conv l's forward and weight gradient over rows images read its input itself
// (clrt_conv_direct; dense_weight_grad's product one, as clrt_gemm runs it): then no columns are
// made or kept, and the same bits. The residual model's 3x3 layers wrote 75 MB of columns a
// batch of 64 (32x32x32): 48 s an epoch that way on PoCL on 2 cores, 32.5 s so (2026-12-05).
static bool conv_direct(const struct clrt *rt, const struct layer *l, int rows)
{
    size_t positions = (size_t)rows * l->out_shape.h * l->out_shape.w;
    return layer_splitk_parts(rt, l->wgrad_m, l->wgrad_n, (size_t)rows * l->wgrad_k) == 1 &&
           clrt_conv_direct(rt, positions, (size_t)l->out_shape.c, l->wgrad_m, l->in_shape.c);
}

// Whether col2im(A B) over rows images of a grid of the conv that image (of C channels) is the
// input of, A (positions, k) and B (k, K K C), runs on the image (clrt_conv_input_grad): a product
// into the columns that clvae's kernels run unsplit (so that col2im's sums are theirs) and pixels
// in int (the kernel counts them so).
static bool col2im_direct(const struct clrt *rt, int rows, struct layer_shape image,
                          struct layer_shape grid, size_t k, size_t kkc)
{
    size_t positions = (size_t)rows * grid.h * grid.w, pixels = (size_t)rows * image.h * image.w;
    return pixels <= INT32_MAX && clrt_gemm_unsplit(rt, positions, kkc, k);
}

// Whether conv l's input gradient over rows images does (its forward and weight gradient too).
static bool conv_direct_dx(const struct clrt *rt, const struct layer *l, int rows)
{
    return conv_direct(rt, l, rows) &&
           col2im_direct(rt, rows, l->in_shape, l->out_shape, (size_t)l->out_shape.c, l->wgrad_m);
}

// The most images of a pass over 1 .. max_rows images that conv l (dx: its input gradient too)
// runs through columns rather than on the image: what its columns buffers need hold (0: none).
// The conv reference's second conv runs passes of 41-83 images through columns, 84-256 on the
// image (its forward product over the columns would be split).
static int conv_columns_rows(const struct clrt *rt, const struct layer *l, int max_rows, bool dx)
{
    for (int rows = max_rows; rows > 0; rows--)
        if (!(dx ? conv_direct_dx(rt, l, rows) : conv_direct(rt, l, rows)))
            return rows;
    return 0;
}

bool conv_direct_always(const struct clrt *rt, const struct layer *l, int max_rows, bool dx)
{
    return max_rows > 0 && conv_columns_rows(rt, l, max_rows, dx) == 0;
}

void conv_im2col(const struct layer_ctx *ctx, const struct layer *l, int rows)
{
    if (conv_direct(ctx->rt, l, rows))
        return; // (the backward reads the image)
    columns(ctx, l, K_IM2COL, l->x, l->buffer[COLS].mem, 0, rows, false, l->in_shape, l->out_shape,
            false);
}

// y = im2col(x) W + b a slice at a time, the columns kept for the backward (each slice's at its
// place in the batch's) or not (every slice's at the buffer's start).
static void forward_slices(const struct layer_ctx *ctx, const struct layer *l, int rows, bool keep)
{
    size_t grid = (size_t)l->out_shape.h * l->out_shape.w, n = (size_t)l->out_shape.c;
    size_t kkc = conv_kkc(l);
    cl_mem cols = l->buffer[COLS].mem;
    if (conv_direct(ctx->rt, l, rows)) {
        struct clrt_conv g = conv_geometry(l, l->x, l->in_shape, l->out_shape);
        struct clrt_epilogue ep = {.bias = {l->dev.params, l->dev.bias, 0}, .relu = l->relu};
        clrt_conv_forward(ctx->rt, (size_t)rows * grid, n, &g, mat(l->dev.params, l->dev.weight, n),
                          0.0f, mat(l->y, 0, n), &ep);
        return;
    }
    int step = slice_images(ctx->rt, rows, (size_t)rows * grid, n, kkc, grid * kkc);
    for (int first = 0; first < rows; first += step) {
        int count = rows - first < step ? rows - first : step;
        size_t row0 = (size_t)first * grid;
        columns(ctx, l, K_IM2COL, l->x, cols, first, count, !keep, l->in_shape, l->out_shape,
                false);
        dense_product_bias(ctx, l, (size_t)count * grid, n, kkc,
                           mat(cols, keep ? row0 * kkc : 0, kkc), row0);
    }
}

static void conv_forward(const struct layer_ctx *ctx, const struct layer *l, int rows)
{
    forward_slices(ctx, l, rows, true);
}

void conv_forward_unkept(const struct layer_ctx *ctx, const struct layer *l, int rows)
{
    forward_slices(ctx, l, rows, false);
}

static void conv_backward(const struct layer_ctx *ctx, const struct layer *l, int rows,
                          bool accumulate)
{
    size_t grid = (size_t)l->out_shape.h * l->out_shape.w, n = (size_t)l->out_shape.c;
    size_t m = (size_t)rows * grid, kkc = conv_kkc(l);
    cl_mem cols = l->buffer[COLS].mem, dcols = l->buffer[DCOLS].mem;
    dense_bias_backward(ctx, l, (int)m, (int)n, accumulate);
    if (conv_direct(ctx->rt, l, rows)) {
        struct clrt_conv g = conv_geometry(l, l->x, l->in_shape, l->out_shape);
        clrt_conv_weight_grad(ctx->rt, kkc, n, m, &g, mat(l->dy, 0, n), accumulate ? 1.0f : 0.0f,
                              mat(l->dev.grads, l->dev.weight, n));
    } else {
        dense_weight_grad(ctx, l, rows, mat(cols, 0, kkc), mat(l->dy, 0, n), accumulate);
    }
    if (!l->needs_dx)
        return;
    if (conv_direct_dx(ctx->rt, l, rows)) {
        struct clrt_mat wt = mat(ctx->weights_t, 0, direct_ld(kkc));
        dense_transpose(ctx, l, mat(l->dev.params, l->dev.weight, n), (int)kkc, (int)n, wt);
        struct clrt_conv g = conv_geometry(l, l->dy, l->in_shape, l->out_shape);
        clrt_conv_input_grad(ctx->rt, (size_t)rows * l->in_shape.h * l->in_shape.w, n, &g, wt,
                             l->dx, l->dx_accumulate);
        return;
    }
    dense_transpose_weight(ctx, l, (int)kkc, (int)n);
    int step = slice_images(ctx->rt, rows, m, kkc, n, grid * kkc);
    for (int first = 0; first < rows; first += step) {
        int count = rows - first < step ? rows - first : step;
        size_t row0 = (size_t)first * grid;
        clrt_gemm(ctx->rt, false, false, (size_t)count * grid, kkc, n, 1.0f,
                  mat(l->dy, row0 * n, n), mat(ctx->weights_t, 0, kkc), 0.0f, mat(dcols, 0, kkc));
        columns(ctx, l, K_COL2IM, dcols, l->dx, first, count, true, l->in_shape, l->out_shape,
                l->dx_accumulate);
    }
}

// K K OC: a column's values for a deconv to l's output.
static size_t deconv_kko(const struct layer *l)
{
    return (size_t)l->spec.arg[KERNEL] * l->spec.arg[KERNEL] * l->out_shape.c;
}

// Whether deconv l's forward over rows images reads its input in place of writing columns
// (clrt_conv_input_grad): col2im_direct, and 16 output channels or more (the kernel's blocks are
// 16 channels wide: a deconv to 1 or 6 channels leaves most of their lanes idle).
static bool deconv_direct(const struct clrt *rt, const struct layer *l, int rows)
{
    return l->out_shape.c >= 16 &&
           col2im_direct(rt, rows, l->out_shape, l->in_shape, (size_t)l->in_shape.c, deconv_kko(l));
}

static void deconv_forward(const struct layer_ctx *ctx, const struct layer *l, int rows)
{
    size_t grid = (size_t)l->in_shape.h * l->in_shape.w, ic = (size_t)l->in_shape.c;
    size_t kko = deconv_kko(l);
    cl_mem cols = l->buffer[COLS].mem;
    if (deconv_direct(ctx->rt, l, rows)) {
        // The conv whose adjoint this is: its input is y, its grid x; W as its W^T, rows
        // direct_ld(kko) apart (in the transposed weights' scratch where that is not kko).
        struct clrt_conv g = conv_geometry(l, l->x, l->out_shape, l->in_shape);
        struct clrt_mat w = mat(l->dev.params, l->dev.weight, kko);
        if (direct_ld(kko) != kko) {
            struct clrt_mat copy = mat(ctx->weights_t, 0, direct_ld(kko));
            clrt_copy_rows(ctx->rt, w, copy, ic, kko);
            w = copy;
        }
        clrt_conv_input_grad(ctx->rt, (size_t)rows * l->out_shape.h * l->out_shape.w, ic, &g, w,
                             l->y, false);
        dense_bias_forward(ctx, l, rows * l->out_shape.h * l->out_shape.w, l->out_shape.c);
        return;
    }
    int step = slice_images(ctx->rt, rows, (size_t)rows * grid, kko, ic, grid * kko);
    for (int first = 0; first < rows; first += step) {
        int count = rows - first < step ? rows - first : step;
        size_t row0 = (size_t)first * grid;
        clrt_gemm(ctx->rt, false, false, (size_t)count * grid, kko, ic, 1.0f,
                  mat(l->x, row0 * ic, ic), mat(l->dev.params, l->dev.weight, kko), 0.0f,
                  mat(cols, 0, kko));
        columns(ctx, l, K_COL2IM, cols, l->y, first, count, true, l->out_shape, l->in_shape, false);
    }
    dense_bias_forward(ctx, l, rows * l->out_shape.h * l->out_shape.w, l->out_shape.c);
}

// Whether deconv l's backward over rows images reads dy in place of its columns, im2col(dy): its
// input gradient im2col(dy) W^T as a conv's forward over dy (clrt_conv_forward: dy's channels a
// multiple of 8, the product unsplit), its weight gradient x^T im2col(dy)
// as the transpose of a conv's weight gradient, im2col(dy)^T x (clrt_conv_weight_grad: the parts
// clrt_gemm would split it in, each value's multiply-adds in the same order): the same bits.
static bool deconv_direct_back(const struct clrt *rt, const struct layer *l, int rows)
{
    size_t positions = (size_t)rows * l->in_shape.h * l->in_shape.w;
    return layer_splitk_parts(rt, l->wgrad_m, l->wgrad_n, (size_t)rows * l->wgrad_k) == 1 &&
           clrt_conv_direct(rt, positions, (size_t)l->in_shape.c, deconv_kko(l), l->out_shape.c);
}

// The most images of a pass over 1 .. max_rows images whose forward (back: backward) deconv l runs
// through columns (of dy) rather than on its input (dy): what its buffers need hold (0: none).
static int deconv_columns_rows(const struct clrt *rt, const struct layer *l, int max_rows,
                               bool back)
{
    for (int rows = max_rows; rows > 0; rows--)
        if (!(back ? deconv_direct_back(rt, l, rows) : deconv_direct(rt, l, rows)))
            return rows;
    return 0;
}

// deconv_backward where deconv_direct_back says so; dW^T in the transposed weights' scratch (with
// dW's transpose first when adding to it: the sum's last add, as clrt_gemm adds, C + the sum).
static void deconv_backward_direct(const struct layer_ctx *ctx, const struct layer *l, int rows,
                                   bool accumulate)
{
    size_t ic = (size_t)l->in_shape.c, kko = deconv_kko(l);
    size_t m = (size_t)rows * l->in_shape.h * l->in_shape.w;
    struct clrt_conv g = conv_geometry(l, l->dy, l->out_shape, l->in_shape);
    struct clrt_mat wt = mat(ctx->weights_t, 0, ic), dw = mat(l->dev.grads, l->dev.weight, kko);
    if (l->needs_dx) {
        dense_transpose_weight(ctx, l, (int)ic, (int)kko);
        clrt_conv_forward(ctx->rt, m, ic, &g, wt, l->dx_accumulate ? 1.0f : 0.0f, mat(l->dx, 0, ic),
                          NULL);
    }
    if (accumulate)
        dense_transpose(ctx, l, dw, (int)ic, (int)kko, wt);
    clrt_conv_weight_grad(ctx->rt, kko, ic, m, &g, mat(l->x, 0, ic), accumulate ? 1.0f : 0.0f, wt);
    dense_transpose(ctx, l, wt, (int)kko, (int)ic, dw);
}

static void deconv_backward(const struct layer_ctx *ctx, const struct layer *l, int rows,
                            bool accumulate)
{
    size_t grid = (size_t)l->in_shape.h * l->in_shape.w, ic = (size_t)l->in_shape.c;
    size_t kko = deconv_kko(l);
    cl_mem dcols = l->buffer[DCOLS].mem;
    dense_bias_backward(ctx, l, rows * l->out_shape.h * l->out_shape.w, l->out_shape.c, accumulate);
    if (deconv_direct_back(ctx->rt, l, rows)) {
        deconv_backward_direct(ctx, l, rows, accumulate);
        return;
    }
    // The columns of dy and, when the layer has one, the input gradient from them a slice at a
    // time; then the weight gradient (it reads x and the columns, which neither writes).
    bool dx = l->needs_dx;
    if (dx)
        dense_transpose_weight(ctx, l, (int)ic, (int)kko);
    int step = dx ? slice_images(ctx->rt, rows, (size_t)rows * grid, ic, kko, grid * kko) : rows;
    for (int first = 0; first < rows; first += step) {
        int count = rows - first < step ? rows - first : step;
        size_t row0 = (size_t)first * grid;
        columns(ctx, l, K_IM2COL, l->dy, dcols, first, count, false, l->out_shape, l->in_shape,
                false);
        if (dx)
            clrt_gemm(ctx->rt, false, false, (size_t)count * grid, ic, kko, 1.0f,
                      mat(dcols, row0 * kko, kko), mat(ctx->weights_t, 0, ic),
                      l->dx_accumulate ? 1.0f : 0.0f, mat(l->dx, row0 * ic, ic));
    }
    dense_weight_grad(ctx, l, rows, mat(l->x, 0, ic), mat(dcols, 0, kko), accumulate);
}

// A conv's column gradient holds a slice of the batch at a time (conv_backward), and nothing
// without an input gradient; its columns the batch's, for the weight gradient; each only for the
// passes that do not read the image (conv_columns_rows).
static size_t conv_buffer_images(const struct layer *l, int b, const struct clrt *rt, int max_rows)
{
    if (b != DCOLS)
        return (size_t)conv_columns_rows(rt, l, max_rows, false);
    int rows = l->needs_dx ? conv_columns_rows(rt, l, max_rows, true) : 0;
    if (rows == 0)
        return 0; // (no input gradient, or the products read the image: no columns)
    size_t grid = (size_t)l->out_shape.h * l->out_shape.w, kkc = conv_kkc(l);
    return most_slice_images(rt, rows, grid, kkc, (size_t)l->out_shape.c, grid * kkc);
}

// A deconv's columns hold a slice of the batch at a time (deconv_forward), their gradient
// (im2col(dy)) the batch's, for the weight gradient; each only for the passes that do not read
// the input or dy (deconv_columns_rows).
static size_t deconv_buffer_images(const struct layer *l, int b, const struct clrt *rt,
                                   int max_rows)
{
    if (b != COLS)
        return (size_t)deconv_columns_rows(rt, l, max_rows, true);
    int rows = deconv_columns_rows(rt, l, max_rows, false);
    if (rows == 0)
        return 0; // (the forward reads its input: no columns)
    size_t grid = (size_t)l->in_shape.h * l->in_shape.w, kko = deconv_kko(l);
    return most_slice_images(rt, rows, grid, kko, (size_t)l->in_shape.c, grid * kko);
}

// The bias (channels), after the weight.
static int bias_tensor(const struct layer *l, struct layer_tensor *t)
{
    *t =
        (struct layer_tensor){.ndim = 1, .shape = {l->out_shape.c}, .stride = {1}, .base = l->bias};
    snprintf(t->name, sizeof t->name, "%s.bias", l->name);
    return 1;
}

// PyTorch's shapes: a conv's weight (OC, C, K, K), element [oc][c][ky][kx] at ((ky K + kx) C +
// c) OC + oc; the bias (OC).
static int conv_tensors(const struct layer *l, struct layer_tensor *t)
{
    size_t k = (size_t)l->spec.arg[KERNEL], oc = (size_t)l->out_shape.c, c = (size_t)l->in_shape.c;
    t[0] = (struct layer_tensor){.ndim = 4,
                                 .shape = {(int)oc, (int)c, (int)k, (int)k},
                                 .stride = {1, oc, k * c * oc, c * oc},
                                 .base = l->weight};
    snprintf(t[0].name, sizeof t[0].name, "%s.weight", l->name);
    return 1 + bias_tensor(l, t + 1);
}

// A deconv's weight (IC, OC, K, K), element [ic][oc][ky][kx] at ic K K OC + (ky K + kx) OC + oc;
// the bias (OC).
static int deconv_tensors(const struct layer *l, struct layer_tensor *t)
{
    size_t k = (size_t)l->spec.arg[KERNEL], oc = (size_t)l->out_shape.c, c = (size_t)l->in_shape.c;
    t[0] = (struct layer_tensor){.ndim = 4,
                                 .shape = {(int)c, (int)oc, (int)k, (int)k},
                                 .stride = {k * k * oc, 1, k * oc, oc},
                                 .base = l->weight};
    snprintf(t[0].name, sizeof t[0].name, "%s.weight", l->name);
    return 1 + bias_tensor(l, t + 1);
}

const struct layer_ops conv_ops = {
    .kind = "conv",
    .usage = "conv:C[:K[:S[:P]]]",
    .gives = LAYER_GIVES_IMAGE,
    .defaults = {4, 2, 1},
    .parse = conv_parse,
    .format = conv_format,
    .same = conv_same,
    .describe = conv_describe,
    .mirror = conv_mirror,
    .layout = conv_layout,
    .init = conv_init,
    .create = conv_create,
    .forward = conv_forward,
    .backward = conv_backward,
    .tensors = conv_tensors,
    .release = layer_release_kernels,
    .buffer_images = conv_buffer_images,
};

// (No describe: the banner has always left a deconv of an encoder out.)
const struct layer_ops deconv_ops = {
    .kind = "deconv",
    .usage = "deconv:C[:K[:S[:P]]]",
    .gives = LAYER_GIVES_IMAGE,
    .defaults = {4, 2, 1},
    .parse = conv_parse,
    .format = conv_format,
    .same = conv_same,
    .mirror = deconv_mirror,
    .layout = deconv_layout,
    .init = deconv_init,
    .create = conv_create,
    .forward = deconv_forward,
    .backward = deconv_backward,
    .tensors = deconv_tensors,
    .release = layer_release_kernels,
    .buffer_images = deconv_buffer_images,
};
