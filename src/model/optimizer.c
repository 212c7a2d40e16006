// The optimizer kinds (Adam, AdamW) and the state and step they share: see optimizer.h.
#include "optimizer.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

enum { HYPER_BETA1, HYPER_BETA2, HYPER_EPS, HYPER_WEIGHT_DECAY };

// Adam's scalars (cl/adam.cl) but the last: betas, 1 - betas, eps, and the bias corrections,
// computed in double on the host (beta^t for large t underflows gracefully; 1.0f - 0.999f in float
// is 1.3e-5 off 0.001, and PyTorch's moments use the exact value).
static void adam_common(const struct optimizer *o, int64_t t, double lr, float *out)
{
    const double *h = o->cfg.hyper;
    double bc1 = 1.0 - pow(h[HYPER_BETA1], (double)t);
    double bc2 = 1.0 - pow(h[HYPER_BETA2], (double)t);
    out[0] = (float)h[HYPER_BETA1];
    out[1] = (float)(1.0 - h[HYPER_BETA1]);
    out[2] = (float)h[HYPER_BETA2];
    out[3] = (float)(1.0 - h[HYPER_BETA2]);
    out[4] = (float)h[HYPER_EPS];
    out[5] = (float)(lr / bc1);        // the step size
    out[6] = (float)(1.0 / sqrt(bc2)); // 1 / sqrt of the second moment's correction
}

// Adam's, then the decay 1 (cl/adam.cl's one kernel serves both kinds).
static int adam_scalars(const struct optimizer *o, int64_t t, double lr, float *out)
{
    adam_common(o, t, lr, out);
    out[7] = 1.0f;
    return 8;
}

// Adam's, then the decoupled decay's factor 1 - lr weight_decay, in double and then rounded to a
// float, as PyTorch's param.mul_(1 - lr * weight_decay) computes it.
static int adamw_scalars(const struct optimizer *o, int64_t t, double lr, float *out)
{
    adam_common(o, t, lr, out);
    out[7] = (float)(1.0 - lr * o->cfg.hyper[HYPER_WEIGHT_DECAY]);
    return 8;
}

// Kingma and Ba (2015), as torch.optim.Adam: PyTorch's defaults for the betas and eps, which clvae
// always uses (checkpoints record them).
static const struct optimizer_kind adam = {
    .name = "adam",
    .title = "Adam",
    .n_hyper = 3,
    .hyper = {{"beta1", 0.9, NULL, 0, 0}, {"beta2", 0.999, NULL, 0, 0}, {"eps", 1e-8, NULL, 0, 0}},
    .n_state = 2,
    .state = {"m", "v"},
    .state_title = {"first moments", "second moments"},
    .state_summary = "two moments",
    .kernel = "adam_update",
    .scalars = adam_scalars,
    .foldable = true,
};

// Decoupled weight decay (Loshchilov and Hutter, 2019), as torch.optim.AdamW with its default
// decay: Adam's hyper-parameters and state, and the decay.
static const struct optimizer_kind adamw = {
    .name = "adamw",
    .title = "AdamW",
    .n_hyper = 4,
    .hyper = {{"beta1", 0.9, NULL, 0, 0},
              {"beta2", 0.999, NULL, 0, 0},
              {"eps", 1e-8, NULL, 0, 0},
              {"weight_decay", 0.01, "--weight-decay", 0, 100}},
    .n_state = 2,
    .state = {"m", "v"},
    .state_title = {"first moments", "second moments"},
    .state_summary = "two moments",
    .kernel = "adam_update",
    .scalars = adamw_scalars,
    .foldable = true,
};

const struct optimizer_kind *const optimizer_kinds[] = {&adam, &adamw, NULL};

const struct optimizer_kind *optimizer_find(const char *name)
{
    for (int k = 0; optimizer_kinds[k]; k++)
        if (strcmp(name, optimizer_kinds[k]->name) == 0)
            return optimizer_kinds[k];
    return NULL;
}

struct optimizer_config optimizer_defaults(const struct optimizer_kind *kind)
{
    struct optimizer_config cfg = {.kind = kind};
    for (int i = 0; i < kind->n_hyper; i++)
        cfg.hyper[i] = kind->hyper[i].value;
    return cfg;
}

// The names of the kinds that take option (all kinds when NULL) as "a, b or c", into buf.
static const char *kind_list(const char *option, char *buf, size_t len)
{
    const char *names[8];
    int n = 0;
    for (int k = 0; optimizer_kinds[k] && n < 8; k++)
        if (!option || optimizer_option_index(optimizer_kinds[k], option) >= 0)
            names[n++] = optimizer_kinds[k]->name;
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < n && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, "%s%s",
                                 i == 0      ? ""
                                 : i + 1 < n ? ", "
                                             : " or ",
                                 names[i]);
    return buf;
}

int optimizer_parse(const char *option, const char *name, struct optimizer_config *cfg,
                    struct clvae_error *err)
{
    const struct optimizer_kind *kind = optimizer_find(name);
    char names[128];
    if (!kind)
        return clvae_fail(err, CLVAE_EXIT_USAGE, "%s: '%s' is not an optimizer (%s)", option, name,
                          kind_list(NULL, names, sizeof names));
    *cfg = optimizer_defaults(kind);
    return 0;
}

int optimizer_option_index(const struct optimizer_kind *kind, const char *option)
{
    for (int i = 0; i < kind->n_hyper; i++)
        if (kind->hyper[i].option && strcmp(kind->hyper[i].option, option) == 0)
            return i;
    return -1;
}

int optimizer_set_option(struct optimizer_config *cfg, const char *option, double value,
                         struct clvae_error *err)
{
    const struct optimizer_kind *kind = cfg->kind;
    int i = optimizer_option_index(kind, option);
    char names[128];
    if (i < 0)
        return clvae_fail(err, CLVAE_EXIT_USAGE, "%s: applies to --optimizer %s, not %s", option,
                          kind_list(option, names, sizeof names), kind->name);
    const struct optimizer_hyper *h = &kind->hyper[i];
    if (!(value >= h->min && value <= h->max))
        return clvae_fail(err, CLVAE_EXIT_USAGE, "%s: %g is out of range (%g to %g)", option, value,
                          h->min, h->max);
    cfg->hyper[i] = value;
    return 0;
}

size_t optimizer_state_bytes(const struct optimizer_kind *kind)
{
    return (size_t)kind->n_state * sizeof(float);
}

int optimizer_create(struct optimizer *o, struct clrt *rt, const struct clrt_parts *params,
                     const struct optimizer_config *cfg, struct clvae_error *err)
{
    memset(o, 0, sizeof *o);
    o->rt = rt;
    o->cfg = *cfg;
    o->n = (int)(params->start[params->n] / sizeof(float));
    const struct optimizer_kind *kind = cfg->kind;
    for (int s = 0; s < kind->n_state; s++) {
        char name[96];
        snprintf(name, sizeof name, "%s %s", kind->title, kind->state_title[s]);
        // clrt_buffer zero-fills, which is where the state starts.
        o->state[s] = *params;
        if (clrt_parts_create(rt, &o->state[s], name, err))
            return -1;
    }
    // A CPU's kernel takes 16 values a work-item (the same bits: cl/adam.cl).
    o->values_per_item = rt->device_type & CL_DEVICE_TYPE_CPU ? 16 : 1;
    char name[64];
    snprintf(name, sizeof name, "%s%s", kind->kernel, o->values_per_item == 16 ? "16" : "");
    o->kernel = clrt_kernel(rt, name);
    return 0;
}

int optimizer_clip_create(struct optimizer *o, double max_norm, struct clvae_error *err)
{
    size_t partials = (size_t)o->state[0].n * CLIP_GROUPS;
    o->clip = max_norm;
    if (!(o->clip_partial = clrt_buffer(o->rt, partials * sizeof(float),
                                        "the gradient norm's partial sums", err)) ||
        !(o->clip_scale = clrt_buffer(o->rt, 2 * sizeof(float), "the gradient's clip scale", err)))
        return -1;
    o->k_sumsq = clrt_kernel(o->rt, "grad_sumsq");
    o->k_clip_scale = clrt_kernel(o->rt, "grad_clip_scale");
    o->k_grad_scale = clrt_kernel(o->rt, "grad_scale");
    return 0;
}

void optimizer_clip(struct optimizer *o, const struct clrt_parts *grads)
{
    const size_t local = CLIP_LOCAL, groups = (size_t)CLIP_GROUPS * CLIP_LOCAL;
    for (int i = 0; i < grads->n; i++) {
        int n = (int)((grads->start[i + 1] - grads->start[i]) / sizeof(float));
        int offset = i * CLIP_GROUPS;
        cl_uint a = 0;
        KARG(o->k_sumsq, a++, grads->mem[i]);
        KARG(o->k_sumsq, a++, n);
        KARG(o->k_sumsq, a++, o->clip_partial);
        KARG(o->k_sumsq, a++, offset);
        KARG_LOCAL(o->k_sumsq, a++, local * sizeof(float));
        clrt_launch(o->rt, o->k_sumsq, 1, &groups, &local);
    }
    int count = grads->n * CLIP_GROUPS;
    float max_norm = (float)o->clip;
    cl_uint a = 0;
    KARG(o->k_clip_scale, a++, o->clip_partial);
    KARG(o->k_clip_scale, a++, count);
    KARG(o->k_clip_scale, a++, max_norm);
    KARG(o->k_clip_scale, a++, o->clip_scale);
    KARG_LOCAL(o->k_clip_scale, a++, local * sizeof(float));
    clrt_launch(o->rt, o->k_clip_scale, 1, &local, &local);
    for (int i = 0; i < grads->n; i++) {
        int n = (int)((grads->start[i + 1] - grads->start[i]) / sizeof(float));
        size_t global = (size_t)n;
        a = 0;
        KARG(o->k_grad_scale, a++, grads->mem[i]);
        KARG(o->k_grad_scale, a++, n);
        KARG(o->k_grad_scale, a++, o->clip_scale);
        clrt_launch(o->rt, o->k_grad_scale, 1, &global, NULL);
    }
}

void optimizer_release(struct optimizer *o)
{
    cl_kernel clip_kernels[] = {o->k_sumsq, o->k_clip_scale, o->k_grad_scale};
    for (size_t i = 0; i < sizeof clip_kernels / sizeof clip_kernels[0]; i++)
        clrt_release_kernel(clip_kernels[i]);
    clrt_release_buffer(o->clip_partial);
    clrt_release_buffer(o->clip_scale);
    clrt_release_kernel(o->kernel);
    for (int s = 0; s < OPTIMIZER_MAX_STATE; s++)
        clrt_parts_release(&o->state[s]);
    memset(o, 0, sizeof *o);
}

void optimizer_step(struct optimizer *o, const struct clrt_parts *params,
                    const struct clrt_parts *grads, int64_t t, double lr)
{
    if (o->clip > 0)
        optimizer_clip(o, grads);
    cl_kernel k = o->kernel;
    int n_state = o->cfg.kind->n_state;
    float scalars[OPTIMIZER_MAX_SCALARS];
    int n_scalars = o->cfg.kind->scalars(o, t, lr, scalars);
    for (int s = 0; s < n_scalars; s++)
        KARG(k, (cl_uint)(3 + n_state + s), scalars[s]);
    for (int i = 0; i < params->n; i++) {
        int n = (int)((params->start[i + 1] - params->start[i]) / sizeof(float));
        cl_uint a = 0;
        KARG(k, a++, params->mem[i]);
        KARG(k, a++, grads->mem[i]);
        for (int s = 0; s < n_state; s++)
            KARG(k, a++, o->state[s].mem[i]);
        KARG(k, a++, n);
        size_t global = ((size_t)n + (size_t)o->values_per_item - 1) / (size_t)o->values_per_item;
        clrt_launch(o->rt, k, 1, &global, NULL);
    }
}

bool optimizer_fold(const struct optimizer *o, const struct clrt_parts *params, int64_t t,
                    double lr, struct clrt_adam *adam)
{
    if (!o->cfg.kind->foldable || o->clip > 0 || params->n != 1)
        return false;
    float scalars[OPTIMIZER_MAX_SCALARS];
    if (o->cfg.kind->scalars(o, t, lr, scalars) != 8)
        return false;
    *adam = (struct clrt_adam){.params = params->mem[0],
                               .m = o->state[0].mem[0],
                               .v = o->state[1].mem[0],
                               .count = (size_t)o->n};
    memcpy(adam->scalars.s, scalars, sizeof adam->scalars.s);
    return true;
}
