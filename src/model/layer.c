// The registry of layer kinds, and what the model and the kinds share about them: looking a kind
// up by name, reading an item, sizing the shared scratch.
#include "layer.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layer_kind.h"

// Every kind, in the order an item's name is tried and messages list them. A new kind is its
// module (src/model/layer_KIND.c, defining KIND_ops) and its name in this line.
#define LAYER_KINDS(X) X(dense) X(conv) X(deconv) X(res) X(up) X(reshape)

#define DECLARE(name) extern const struct layer_ops name##_ops;
#define ROW(name) &name##_ops,
LAYER_KINDS(DECLARE)
static const struct layer_ops *const kinds[] = {LAYER_KINDS(ROW)};

#define N_KINDS (sizeof kinds / sizeof kinds[0])

const struct layer_ops *layer_kind(const char *name)
{
    for (size_t k = 0; k < N_KINDS; k++)
        if (strcmp(kinds[k]->kind, name) == 0)
            return kinds[k];
    return NULL;
}

struct layer_spec layer_spec_of(const char *name, int units)
{
    struct layer_spec s = {.kind = layer_kind(name), .units = units};
    memcpy(s.arg, s.kind->defaults, sizeof s.arg);
    return s;
}

bool layer_parse_numbers(const char *text, char sep, int *v, int max)
{
    for (int i = 0; i < max; i++) {
        char *end;
        if (!isdigit((unsigned char)*text))
            return false;
        long x = strtol(text, &end, 10);
        if (x > LAYER_MAX_NUMBER)
            return false;
        v[i] = (int)x;
        if (*end == '\0')
            return true;
        if (*end != sep)
            return false;
        text = end + 1;
    }
    return false;
}

// "dense:N, conv:C[:K[:S[:P]]], ... or reshape:CxHxW": every kind's usage.
static void usages(char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t k = 0; k < N_KINDS && used < len; k++) {
        const char *sep = k == 0 ? "" : k + 1 == N_KINDS ? " or " : ", ";
        int w = snprintf(buf + used, len - used, "%s%s", sep, kinds[k]->usage);
        used += w > 0 ? (size_t)w : 0;
    }
}

int layer_parse(const char *option, const char *item, struct layer_spec *spec,
                struct clvae_error *err)
{
    for (size_t k = 0; k < N_KINDS; k++) {
        size_t len = strlen(kinds[k]->kind);
        if (strncmp(item, kinds[k]->kind, len) != 0 || item[len] != ':')
            continue;
        *spec = layer_spec_of(kinds[k]->kind, 0);
        return kinds[k]->parse(option, item, item + len + 1, spec, err);
    }
    char forms[256];
    usages(forms, sizeof forms);
    return clvae_fail(err, CLVAE_EXIT_USAGE, "%s: '%s' is not a layer (%s)", option, item, forms);
}

int layer_bias_parts(const struct layer_ctx *ctx, int rows, int n)
{
    if (ctx->bias_work == 0 || (size_t)rows * (size_t)n < ctx->rt->reduce_min)
        return 1;
    size_t want = (ctx->bias_work + (size_t)n - 1) / (size_t)n;
    size_t most = ((size_t)rows + 31) / 32;
    size_t parts = want < most ? want : most;
    return parts < 1 ? 1 : (int)parts;
}

int layer_splitk_parts(const struct clrt *rt, size_t m, size_t n, size_t k)
{
    size_t tiles = ((m + 31) / 32) * ((n + 31) / 32);
    // (clvae's products on a CPU set no work-groups to fill: they split by cache themselves; a
    // layer without weights, up, has no product.)
    if (rt->splitk_min_k == 0 || tiles == 0 || tiles >= rt->splitk_groups)
        return 1;
    size_t want = (rt->splitk_groups + tiles - 1) / tiles, most = k / rt->splitk_min_k;
    size_t parts = want < most ? want : most;
    parts = parts < LAYER_SPLITK_MAX ? parts : LAYER_SPLITK_MAX;
    return parts < 2 ? 1 : (int)parts;
}

void layer_release_kernels(struct layer *l)
{
    for (int i = 0; i < LAYER_MAX_KERNELS; i++) {
        clrt_release_kernel(l->kernel[i]);
        l->kernel[i] = NULL;
    }
}
