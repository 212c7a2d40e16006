// "up:F": nearest-neighbour upsampling of an image by a whole factor F, as
// torch.nn.Upsample(scale_factor=F, mode='nearest'), for decoders written as
// "up:2,conv:64:3:1:1". No parameters, no activation after it. It has no way back in a default
// decoder (the PyTorch reference has none either): its mirror is an item that the layout refuses,
// asking for --decoder. Kernels: cl/up.cl.
#include <stdint.h>
#include <stdio.h>

#include "layer_kind.h"

enum { K_FORWARD, K_BACKWARD, UP_KERNELS };

// The mirror's mark: an up item of factor 0 (which the parser never gives), the factor it stands
// for in arg[0].
enum { MIRRORED };

static int up_parse(const char *option, const char *item, const char *numbers,
                    struct layer_spec *spec, struct clvae_error *err)
{
    if (!layer_parse_numbers(numbers, ':', &spec->units, 1))
        return clvae_fail(err, CLVAE_EXIT_USAGE,
                          "%s: '%s' is not a layer (up:F, a whole number up to 65536)", option,
                          item);
    if (spec->units < 1)
        return clvae_fail(err, CLVAE_EXIT_USAGE, "%s: '%s': the factor must be at least 1", option,
                          item);
    return 0;
}

static int up_format(const struct layer_spec *s, char *buf, size_t len)
{
    return snprintf(buf, len, "up:%d", s->units);
}

static bool up_same(const struct layer_spec *a, const struct layer_spec *b)
{
    return a->units == b->units;
}

static int up_describe(const struct layer_spec *s, char *buf, size_t len)
{
    return snprintf(buf, len, "-up%d", s->units);
}

// No way back: the mark that up_layout refuses.
static int up_mirror(const struct layer *l, struct layer_spec *items)
{
    items[0] = (struct layer_spec){.kind = l->ops, .units = 0, .arg = {l->spec.units}};
    return 1;
}

static int up_layout(struct layer *l, struct layer_plan *plan, char *why)
{
    const struct layer_spec *s = &l->spec;
    const struct layer_shape *in = &l->in_shape;
    if (s->units == 0)
        return snprintf(why, CLVAE_ERROR_MAX,
                        "up:%d in the encoder has no mirror in a default decoder: give --decoder",
                        s->arg[MIRRORED]),
               -1;
    if (!in->spatial)
        return snprintf(why, CLVAE_ERROR_MAX,
                        "%s: up takes an image, but its input is a flat vector of %d (reshape "
                        "first)",
                        l->name, l->in),
               -1;
    int64_t f = s->units, oh = in->h * f, ow = in->w * f;
    if (oh * ow > INT32_MAX || oh * ow * in->c > INT32_MAX)
        return snprintf(why, CLVAE_ERROR_MAX,
                        "%s: up:%d on %dx%dx%d: the output would be %dx%lldx%lld, more than 2^31 "
                        "- 1 values an image",
                        l->name, s->units, in->c, in->h, in->w, in->c, (long long)oh,
                        (long long)ow),
               -1;
    l->out_shape = (struct layer_shape){.c = in->c, .h = (int)oh, .w = (int)ow, .spatial = true};
    l->out = (int)(oh * ow * in->c);
    l->relu = false;
    l->weight = l->bias = plan->n_params; // no parameters
    l->wgrad_m = l->wgrad_n = l->wgrad_k = 0;
    return 0;
}

static void up_init(const struct layer *l, uint64_t seed, float *params)
{
    (void)l, (void)seed, (void)params;
}

static void up_create(const struct layer_ctx *ctx, struct layer *l)
{
    l->kernel[K_FORWARD] = clrt_kernel(ctx->rt, "up_forward");
    l->kernel[K_BACKWARD] = clrt_kernel(ctx->rt, "up_backward");
}

// The arguments both kernels share, from a = 0; returns the next.
static cl_uint shape_args(cl_kernel k, const struct layer *l, cl_mem from, cl_mem to, int rows)
{
    cl_uint a = 0;
    KARG(k, a++, from);
    KARG(k, a++, to);
    KARG(k, a++, rows);
    KARG(k, a++, l->in_shape.h);
    KARG(k, a++, l->in_shape.w);
    KARG(k, a++, l->in_shape.c);
    KARG(k, a++, l->spec.units);
    return a;
}

static void up_forward(const struct layer_ctx *ctx, const struct layer *l, int rows)
{
    cl_kernel k = l->kernel[K_FORWARD];
    shape_args(k, l, l->x, l->y, rows);
    size_t global[2] = {(size_t)l->out_shape.w * l->out_shape.c, (size_t)rows * l->out_shape.h};
    clrt_launch(ctx->rt, k, 2, global, NULL);
}

// dx = each pixel's F x F block of dy summed (added to dx when dx_accumulate).
static void up_backward(const struct layer_ctx *ctx, const struct layer *l, int rows,
                        bool accumulate)
{
    (void)accumulate; // no parameters
    if (!l->dx)
        return;
    cl_kernel k = l->kernel[K_BACKWARD];
    cl_uint a = shape_args(k, l, l->dy, l->dx, rows);
    int acc = l->dx_accumulate;
    KARG(k, a++, acc);
    size_t global[2] = {(size_t)l->in_shape.w * l->in_shape.c, (size_t)rows * l->in_shape.h};
    clrt_launch(ctx->rt, k, 2, global, NULL);
}

static int up_tensors(const struct layer *l, struct layer_tensor *t)
{
    (void)l, (void)t;
    return 0;
}

const struct layer_ops up_ops = {
    .kind = "up",
    .usage = "up:F",
    .gives = LAYER_GIVES_IMAGE,
    .parse = up_parse,
    .format = up_format,
    .same = up_same,
    .describe = up_describe,
    .mirror = up_mirror,
    .layout = up_layout,
    .init = up_init,
    .create = up_create,
    .forward = up_forward,
    .backward = up_backward,
    .tensors = up_tensors,
    .release = layer_release_kernels,
};
