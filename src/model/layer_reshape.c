// "reshape:CxHxW": an item of a layer list that lays out no layer. It gives the flat output of the
// layer before it the shape channels x height x width, for a deconv after it to take.
#include <stdio.h>
#include <string.h>

#include "layer_kind.h"

// The numbers after the channels, in spec.arg.
enum { HEIGHT, WIDTH };

static int reshape_parse(const char *option, const char *item, const char *numbers,
                         struct layer_spec *spec, struct clvae_error *err)
{
    int v[3] = {0, spec->arg[HEIGHT], spec->arg[WIDTH]};
    const char *x = strchr(numbers, 'x');
    if (!layer_parse_numbers(numbers, 'x', v, 3) || !x || !strchr(x + 1, 'x'))
        return clvae_fail(err, CLVAE_EXIT_USAGE,
                          "%s: '%s' is not a layer (reshape:CxHxW, whole numbers up to 65536)",
                          option, item);
    spec->units = v[0];
    spec->arg[HEIGHT] = v[1], spec->arg[WIDTH] = v[2];
    if (spec->units < 1 || spec->arg[HEIGHT] < 1 || spec->arg[WIDTH] < 1)
        return clvae_fail(err, CLVAE_EXIT_USAGE, "%s: '%s': channels and sizes must be at least 1",
                          option, item);
    return 0;
}

static int reshape_format(const struct layer_spec *s, char *buf, size_t len)
{
    return snprintf(buf, len, "reshape:%dx%dx%d", s->units, s->arg[HEIGHT], s->arg[WIDTH]);
}

static bool reshape_same(const struct layer_spec *a, const struct layer_spec *b)
{
    return a->units == b->units && a->arg[HEIGHT] == b->arg[HEIGHT] &&
           a->arg[WIDTH] == b->arg[WIDTH];
}

// A flat vector of C H W values -> an image C x H x W.
static int reshape_shape(const struct layer_spec *s, struct layer_shape *shape, char *why)
{
    int size = shape->c * shape->h * shape->w;
    int64_t want = (int64_t)s->units * s->arg[HEIGHT] * s->arg[WIDTH]; // each up to 2^16: 64 bits
    if (shape->spatial || want != size)
        return snprintf(why, CLVAE_ERROR_MAX,
                        "reshape:%dx%dx%d needs a flat input of %lld, not %s%dx%dx%d", s->units,
                        s->arg[HEIGHT], s->arg[WIDTH], (long long)want,
                        shape->spatial ? "an image " : "", shape->c, shape->h, shape->w),
               -1;
    *shape = (struct layer_shape){
        .c = s->units, .h = s->arg[HEIGHT], .w = s->arg[WIDTH], .spatial = true};
    return 0;
}

const struct layer_ops reshape_ops = {
    .kind = "reshape",
    .usage = "reshape:CxHxW",
    .gives = LAYER_GIVES_IMAGE,
    .parse = reshape_parse,
    .format = reshape_format,
    .same = reshape_same,
    .shape = reshape_shape,
};
