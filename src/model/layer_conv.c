// Convolution and its transpose on channel-last images (NHWC), as im2col or col2im around one
// CLBlast product over every kernel position of the batch: a conv is a dense layer applied to the
// im2col matrix, so its bias, ReLU, bias gradient and transposed weight are dense's.
//   conv:   y (rows OH OW, OC) = im2col(x) (rows OH OW, K K C) W (K K C, OC) + b
//   deconv: y = col2im(x (rows IH IW, IC) Wd (IC, K K OC)) + b, the adjoint of a conv from y's
//           grid to x's (PyTorch's ConvTranspose2d, output_padding 0)
// Weights are stored as the products take them; the checkpoint gives PyTorch's shapes, (OC, C, K,
// K) and (IC, OC, K, K), by strides.
#include <stdint.h>
#include <stdio.h>

#include "vae.h"

// Row-major operand views.
static struct clrt_mat mat(cl_mem mem, size_t offset, size_t ld)
{
    return (struct clrt_mat){mem, offset, ld};
}

static const char *geometry(const struct layer *l, char *buf, size_t len)
{
    snprintf(buf, len, "%s:%d:%d:%d:%d on %dx%dx%d", l->ops->kind, l->spec.units, l->spec.kernel,
             l->spec.stride, l->spec.pad, l->in_shape.c, l->in_shape.h, l->in_shape.w);
    return buf;
}

// The checks both kinds share; 0, or -1 with why.
static int check_spec(const struct layer *l, char *why)
{
    char g[96];
    const struct layer_spec *s = &l->spec;
    if (!l->in_shape.spatial)
        return snprintf(why, CLVAE_ERROR_MAX,
                        "%s: %s takes an image, but its input is a flat vector of %d (put it "
                        "before the dense layers, or reshape first)",
                        l->name, l->ops->kind, l->in),
               -1;
    if (s->units < 1 || s->kernel < 1 || s->stride < 1 || s->pad < 0 || s->pad >= s->kernel)
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

// The weight's parameters, a x b x k x k (PyTorch's shape), at most VAE_MAX_PARAMS (refused with
// its true size, computed in 64 bits), and the columns' values an image, grid positions x k k b,
// at most 2^31 - 1 (so that no size vae_create computes from them wraps). 0, or -1 with why.
static int check_sizes(const struct layer *l, uint64_t a, uint64_t b, uint64_t grid, char *why)
{
    char g[96];
    uint64_t k = (uint64_t)l->spec.kernel, kk = k * k, weight = 0;
    bool fits = kk <= UINT64_MAX / b && kk * b <= UINT64_MAX / a;
    if (fits)
        weight = kk * b * a;
    if (!fits || weight > VAE_MAX_PARAMS) {
        char count[32] = "2^64 or more";
        if (fits)
            snprintf(count, sizeof count, "%llu", (unsigned long long)weight);
        return snprintf(why, CLVAE_ERROR_MAX,
                        "%s: %s: its weight would have %llu x %llu x %llu x %llu = %s parameters, "
                        "more than the %zu a model holds",
                        l->name, geometry(l, g, sizeof g), (unsigned long long)a,
                        (unsigned long long)b, (unsigned long long)k, (unsigned long long)k, count,
                        VAE_MAX_PARAMS),
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

// Parameters: weight (wrows, wcols), bias (channels), room for its transpose in vae->weights_t
// when a layer below needs dx; work floats of cols and dcols per image.
static void lay_out_params(struct vae *vae, struct layer *l, size_t wrows, size_t wcols,
                           size_t work)
{
    l->out = l->out_shape.c * l->out_shape.h * l->out_shape.w;
    l->work = work;
    l->weight = vae->n_params;
    l->bias = l->weight + wrows * wcols;
    vae->n_params = l->bias + (size_t)l->out_shape.c;
    if (l->needs_dx && wrows * wcols > vae->n_weights_t)
        vae->n_weights_t = wrows * wcols;
}

static int conv_layout(struct vae *vae, struct layer *l, char *why)
{
    if (check_spec(l, why))
        return -1;
    const struct layer_spec *s = &l->spec;
    const struct layer_shape *in = &l->in_shape;
    // In 64 bits: a deconv's output of up to 2^31 - 1 rows plus the padding passes an int.
    int64_t span_h = (int64_t)in->h + 2 * s->pad - s->kernel;
    int64_t span_w = (int64_t)in->w + 2 * s->pad - s->kernel;
    char g[96];
    if (span_h < 0 || span_w < 0)
        return snprintf(why, CLVAE_ERROR_MAX, "%s: %s: the kernel is larger than the padded input",
                        l->name, geometry(l, g, sizeof g)),
               -1;
    if (span_h % s->stride != 0 || span_w % s->stride != 0)
        return snprintf(why, CLVAE_ERROR_MAX,
                        "%s: %s: the stride does not fit the input (%d + 2 x %d - %d is not a "
                        "multiple of %d, so pixels would be dropped)",
                        l->name, geometry(l, g, sizeof g), span_h % s->stride ? in->h : in->w,
                        s->pad, s->kernel, s->stride),
               -1;
    int64_t oh = span_h / s->stride + 1, ow = span_w / s->stride + 1;
    if (check_output(l, s->units, oh, ow, why) ||
        check_sizes(l, (uint64_t)s->units, (uint64_t)in->c, (uint64_t)(oh * ow), why))
        return -1;
    l->out_shape = (struct layer_shape){.c = s->units, .h = (int)oh, .w = (int)ow, .spatial = true};
    size_t kkc = (size_t)s->kernel * s->kernel * in->c;
    lay_out_params(vae, l, kkc, (size_t)s->units, (size_t)l->out_shape.h * l->out_shape.w * kkc);
    l->wgrad_m = kkc, l->wgrad_n = (size_t)s->units;
    l->wgrad_k = (size_t)l->out_shape.h * l->out_shape.w;
    return 0;
}

static int deconv_layout(struct vae *vae, struct layer *l, char *why)
{
    if (check_spec(l, why))
        return -1;
    const struct layer_spec *s = &l->spec;
    const struct layer_shape *in = &l->in_shape;
    int64_t oh = (int64_t)(in->h - 1) * s->stride - 2 * s->pad + s->kernel;
    int64_t ow = (int64_t)(in->w - 1) * s->stride - 2 * s->pad + s->kernel;
    char g[96];
    if (oh < 1 || ow < 1)
        return snprintf(why, CLVAE_ERROR_MAX, "%s: %s: the output would be empty (%lldx%lld)",
                        l->name, geometry(l, g, sizeof g), (long long)oh, (long long)ow),
               -1;
    if (check_output(l, s->units, oh, ow, why) ||
        check_sizes(l, (uint64_t)in->c, (uint64_t)s->units, (uint64_t)in->h * (uint64_t)in->w, why))
        return -1;
    l->out_shape = (struct layer_shape){.c = s->units, .h = (int)oh, .w = (int)ow, .spatial = true};
    size_t kko = (size_t)s->kernel * s->kernel * s->units;
    lay_out_params(vae, l, (size_t)in->c, kko, (size_t)in->h * in->w * kko);
    l->wgrad_m = (size_t)in->c, l->wgrad_n = kko, l->wgrad_k = (size_t)in->h * in->w;
    return 0;
}

// PyTorch's default for Conv2d and ConvTranspose2d: uniform in +-1/sqrt(fan_in), fan_in = C K K
// for a conv, OC K K for its transpose (torch takes dimension 1 of the weight).
static void conv_init(const struct layer *l, uint64_t seed, float *params)
{
    int kk = l->spec.kernel * l->spec.kernel;
    int fan_in = kk * (l->spec.kind == LAYER_CONV ? l->in_shape.c : l->spec.units);
    dense_init_uniform(l, l->bias + (size_t)l->out_shape.c, fan_in, seed, params);
}

static void conv_create(struct vae *vae, struct layer *l)
{
    dense_ops.create(vae, l);
    l->k_im2col = clrt_kernel(vae->rt, "conv_im2col");
    l->k_col2im = clrt_kernel(vae->rt, "conv_col2im");
}

// im2col (k = l->k_im2col) or col2im (l->k_col2im) between img, an image of shape, and cols over
// the grid of the conv that shape is the input of (for a conv) or the output of (a deconv).
static void columns(struct vae *vae, const struct layer *l, cl_kernel k, cl_mem from, cl_mem to,
                    int rows, struct layer_shape img, struct layer_shape grid)
{
    cl_uint a = 0;
    KARG(k, a++, from);
    KARG(k, a++, to);
    KARG(k, a++, rows);
    KARG(k, a++, img.c);
    KARG(k, a++, img.h);
    KARG(k, a++, img.w);
    KARG(k, a++, grid.h);
    KARG(k, a++, grid.w);
    KARG(k, a++, l->spec.kernel);
    KARG(k, a++, l->spec.stride);
    KARG(k, a++, l->spec.pad);
    // A work-item of conv_im2col writes one grid row; one of conv_col2im sums COL2IM_CHANNELS
    // (16) channels of one image row (cl/conv.cl).
    size_t global[2] = {k == l->k_im2col ? (size_t)rows * grid.h : ((size_t)img.c + 15) / 16,
                        k == l->k_im2col ? 1 : (size_t)rows * img.h};
    clrt_launch(vae->rt, k, 2, global, NULL);
}

static void conv_forward(struct vae *vae, const struct layer *l, int rows)
{
    size_t m = (size_t)rows * l->out_shape.h * l->out_shape.w, n = (size_t)l->out_shape.c;
    size_t kkc = (size_t)l->spec.kernel * l->spec.kernel * l->in_shape.c;
    columns(vae, l, l->k_im2col, l->x, l->cols, rows, l->in_shape, l->out_shape);
    dense_product_bias(vae, l, m, n, kkc, mat(l->cols, 0, kkc));
}

static void conv_backward(struct vae *vae, const struct layer *l, int rows, bool accumulate)
{
    size_t m = (size_t)rows * l->out_shape.h * l->out_shape.w, n = (size_t)l->out_shape.c;
    size_t kkc = (size_t)l->spec.kernel * l->spec.kernel * l->in_shape.c;
    dense_bias_backward(vae, l, (int)m, (int)n, accumulate);
    dense_weight_grad(vae, l, rows, mat(l->cols, 0, kkc), mat(l->dy, 0, n), accumulate);
    if (!l->needs_dx)
        return;
    dense_transpose_weight(vae, l, (int)kkc, (int)n);
    clrt_gemm(vae->rt, false, false, m, kkc, n, 1.0f, mat(l->dy, 0, n),
              mat(vae->weights_t, 0, kkc), 0.0f, mat(l->dcols, 0, kkc));
    columns(vae, l, l->k_col2im, l->dcols, l->dx, rows, l->in_shape, l->out_shape);
}

static void deconv_forward(struct vae *vae, const struct layer *l, int rows)
{
    size_t m = (size_t)rows * l->in_shape.h * l->in_shape.w, ic = (size_t)l->in_shape.c;
    size_t kko = (size_t)l->spec.kernel * l->spec.kernel * l->out_shape.c;
    clrt_gemm(vae->rt, false, false, m, kko, ic, 1.0f, mat(l->x, 0, ic),
              mat(l->dev.params, l->dev.weight, kko), 0.0f, mat(l->cols, 0, kko));
    columns(vae, l, l->k_col2im, l->cols, l->y, rows, l->out_shape, l->in_shape);
    dense_bias_forward(vae, l, rows * l->out_shape.h * l->out_shape.w, l->out_shape.c);
}

static void deconv_backward(struct vae *vae, const struct layer *l, int rows, bool accumulate)
{
    size_t m = (size_t)rows * l->in_shape.h * l->in_shape.w, ic = (size_t)l->in_shape.c;
    size_t kko = (size_t)l->spec.kernel * l->spec.kernel * l->out_shape.c;
    dense_bias_backward(vae, l, rows * l->out_shape.h * l->out_shape.w, l->out_shape.c, accumulate);
    columns(vae, l, l->k_im2col, l->dy, l->dcols, rows, l->out_shape, l->in_shape);
    dense_weight_grad(vae, l, rows, mat(l->x, 0, ic), mat(l->dcols, 0, kko), accumulate);
    if (!l->needs_dx)
        return;
    dense_transpose_weight(vae, l, (int)ic, (int)kko);
    clrt_gemm(vae->rt, false, false, m, ic, kko, 1.0f, mat(l->dcols, 0, kko),
              mat(vae->weights_t, 0, ic), 0.0f, mat(l->dx, 0, ic));
}

// PyTorch's shapes: a conv's weight (OC, C, K, K), element [oc][c][ky][kx] at ((ky K + kx) C +
// c) OC + oc; a deconv's (IC, OC, K, K), element [ic][oc][ky][kx] at ic K K OC + (ky K + kx) OC +
// oc; the bias (channels).
static int conv_tensors(const struct layer *l, struct layer_tensor *t)
{
    size_t k = (size_t)l->spec.kernel, oc = (size_t)l->out_shape.c, c = (size_t)l->in_shape.c;
    if (l->spec.kind == LAYER_CONV)
        t[0] = (struct layer_tensor){.ndim = 4,
                                     .shape = {(int)oc, (int)c, (int)k, (int)k},
                                     .stride = {1, oc, k * c * oc, c * oc},
                                     .base = l->weight};
    else
        t[0] = (struct layer_tensor){.ndim = 4,
                                     .shape = {(int)c, (int)oc, (int)k, (int)k},
                                     .stride = {k * k * oc, 1, k * oc, oc},
                                     .base = l->weight};
    snprintf(t[0].name, sizeof t[0].name, "%s.weight", l->name);
    t[1] = (struct layer_tensor){.ndim = 1, .shape = {(int)oc}, .stride = {1}, .base = l->bias};
    snprintf(t[1].name, sizeof t[1].name, "%s.bias", l->name);
    return 2;
}

// Dense's release frees every kernel a layer can hold.
static void conv_release(struct layer *l)
{
    dense_ops.release(l);
}

const struct layer_ops conv_ops = {
    .kind = "conv",
    .layout = conv_layout,
    .init = conv_init,
    .create = conv_create,
    .forward = conv_forward,
    .backward = conv_backward,
    .tensors = conv_tensors,
    .release = conv_release,
};

const struct layer_ops deconv_ops = {
    .kind = "deconv",
    .layout = deconv_layout,
    .init = conv_init,
    .create = conv_create,
    .forward = deconv_forward,
    .backward = deconv_backward,
    .tensors = conv_tensors,
    .release = conv_release,
};
