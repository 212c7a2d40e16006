// The one-hot class inputs of a dense layer (--conditional): condition.h.
#include "condition.h"

void condition_create(const struct layer_ctx *ctx, struct layer *l)
{
    l->kernel[CONDITION_K_FORWARD] = clrt_kernel(ctx->rt, "condition_forward");
    l->kernel[CONDITION_K_BACKWARD] = clrt_kernel(ctx->rt, "condition_backward");
}

void condition_forward(const struct layer_ctx *ctx, const struct layer *l, int rows)
{
    cl_kernel k = l->kernel[CONDITION_K_FORWARD];
    int w = (int)(l->dev.weight + (size_t)l->in * (size_t)l->out), n = l->out, relu = l->relu;
    cl_uint a = 0;
    KARG(k, a++, l->y);
    KARG(k, a++, l->dev.params);
    KARG(k, a++, w);
    KARG(k, a++, ctx->labels);
    KARG(k, a++, rows);
    KARG(k, a++, n);
    KARG(k, a++, relu);
    size_t global[2] = {(size_t)n, (size_t)rows};
    clrt_launch(ctx->rt, k, 2, global, NULL);
}

void condition_backward(const struct layer_ctx *ctx, const struct layer *l, int rows,
                        bool accumulate)
{
    cl_kernel k = l->kernel[CONDITION_K_BACKWARD];
    int w = (int)(l->dev.weight + (size_t)l->in * (size_t)l->out), n = l->out, relu = l->relu;
    int acc = accumulate;
    cl_uint a = 0;
    KARG(k, a++, l->dy);
    KARG(k, a++, l->y);
    KARG(k, a++, relu);
    KARG(k, a++, ctx->labels);
    KARG(k, a++, l->dev.grads);
    KARG(k, a++, w);
    KARG(k, a++, acc);
    KARG(k, a++, rows);
    KARG(k, a++, n);
    size_t global[2] = {(size_t)n, (size_t)l->classes};
    clrt_launch(ctx->rt, k, 2, global, NULL);
}
