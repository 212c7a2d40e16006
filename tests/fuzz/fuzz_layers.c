// libFuzzer harness for the layer-list parser and the layout behind --hidden, --encoder and
// --decoder (src/model/vae.c, src/layer_*.c). The input is the options' texts, one a line:
// --encoder,
// --decoder, --hidden, --latent (an empty or missing line: the option not given). Whatever
// vae_parse_model accepts is laid out (vae_layout) on three image shapes (784 values flat, 28x28x1,
// 32x32x3) with each likelihood, and planned into parts and sized (vae_plan_parts,
// vae_device_bytes) as on a small device. No OpenCL. Beyond the sanitizers it aborts when:
//   - a refusal's message is not one line;
//   - a list formatted by vae_format_layers (as a checkpoint keeps it) is longer than
//     VAE_LAYERS_TEXT_MAX or does not parse back to the same layers, or a mirrored decoder the
//     layout built does not;
//   - vae_mirror_items disagrees with the decoder the layout mirrored, or the layout accepts an
//     encoder whose mirror would take more than VAE_MAX_HIDDEN items;
//   - a laid-out model breaks its own limits: more than VAE_MAX_LAYERS layers or VAE_MAX_PARAMS
//     parameters, a layer whose output or columns pass 2^31 - 1 values an image, or checkpoint
//     tensors that do not cover the parameters exactly;
//   - the parts vae_plan_parts plans are not whole layers within the limit.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_file.h"
#include "vae.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { ENCODER, DECODER, HIDDEN, LATENT, FIELDS };

static void check_message(const struct clvae_error *err)
{
    if (strchr(err->msg, '\n') || strlen(err->msg) >= sizeof err->msg)
        abort();
    if (getenv("FUZZ_VERBOSE"))
        fprintf(stderr, "fuzz_layers: %s\n", err->msg);
}

// specs -> text -> specs again: the same layers, in a text that fits VAE_LAYERS_TEXT_MAX.
static void round_trip(const struct layer_spec *specs, int n, const struct vae_config *cfg)
{
    char text[VAE_LAYERS_TEXT_MAX];
    size_t len = vae_format_layers(specs, n, text, sizeof text);
    if (len >= sizeof text || strlen(text) != len)
        abort();
    struct vae_config a = *cfg, b = *cfg;
    struct clvae_error err;
    memcpy(a.encoder, specs, (size_t)n * sizeof *specs);
    a.n_encoder = n, a.n_decoder = 0;
    b.n_decoder = 0;
    if (vae_parse_layers("round trip", text, b.encoder, &b.n_encoder, &err) != 0) {
        fprintf(stderr, "fuzz_layers: '%s' does not parse back: %s\n", text, err.msg);
        abort();
    }
    if (!vae_same_layers(&a, &b)) {
        fprintf(stderr, "fuzz_layers: '%s' parses back to other layers\n", text);
        abort();
    }
}

// The checks on a laid-out model; the tensors' elements must add up to its parameters.
static void check_model(const struct vae *vae)
{
    if (vae->n_layers < 2 || vae->n_layers > VAE_MAX_LAYERS || vae->n_params > VAE_MAX_PARAMS)
        abort();
    size_t covered = 0;
    for (int i = 0; i < vae->n_layers; i++) {
        const struct layer *l = &vae->layer[i];
        const struct layer_shape *o = &l->out_shape;
        if ((int64_t)o->c * o->h * o->w != l->out || l->out < 1 || l->n_buffers > LAYER_MAX_BUFFERS)
            abort();
        for (int b = 0; b < l->n_buffers; b++)
            if (l->buffer[b].floats > INT32_MAX)
                abort();
        struct layer_tensor t[LAYER_MAX_TENSORS];
        int n = l->ops->tensors(l, t); // none for a kind without parameters (up:F)
        if (n < 0 || n > LAYER_MAX_TENSORS)
            abort();
        for (int k = 0; k < n; k++) {
            size_t elements = 1;
            for (int d = 0; d < t[k].ndim; d++) {
                if (t[k].shape[d] < 1)
                    abort();
                elements *= (size_t)t[k].shape[d];
            }
            covered += elements;
        }
    }
    if (covered != vae->n_params)
        abort();
    char text[160];
    vae_describe(&vae->cfg, text, sizeof text);
}

// Parts on a device whose largest allocation is max_alloc: whole layers, each part within it.
static void check_parts(struct vae *vae, cl_ulong max_alloc)
{
    struct clrt rt;
    memset(&rt, 0, sizeof rt);
    rt.max_alloc = max_alloc;
    rt.global_mem = (cl_ulong)1 << 34;
    rt.reduce_work = 4096;
    rt.splitk_groups = 1024, rt.splitk_min_k = 64;
    snprintf(rt.device_name, sizeof rt.device_name, "fuzz device");
    snprintf(rt.max_alloc_name, sizeof rt.max_alloc_name, "the fuzz device's largest allocation");
    struct clvae_error err;
    if (vae_plan_parts(vae, &rt, "fuzz", &err) != 0) {
        check_message(&err);
        return;
    }
    const struct clrt_parts *p = &vae->params;
    if (p->n < 1 || p->n > CLRT_MAX_PARTS || p->start[0] != 0 ||
        p->start[p->n] != vae->n_params * sizeof(float))
        abort();
    for (int i = 0; i < p->n; i++)
        if (p->start[i + 1] <= p->start[i] || p->start[i + 1] - p->start[i] > max_alloc)
            abort();
    size_t largest;
    const char *name;
    size_t bytes = vae_device_bytes(vae, &rt, 256, &largest, &name);
    if (bytes < 2 * vae->n_params * sizeof(float) || largest > bytes)
        abort();
}

static void lay_out(const struct vae_config *parsed, bool mirrored)
{
    static const struct {
        int in_dim, channels, height, width;
    } images[] = {{784, 784, 0, 0}, {784, 1, 28, 28}, {3072, 3, 32, 32}};
    static struct vae vae; // some 10 KB: off the stack
    for (size_t i = 0; i < sizeof images / sizeof images[0]; i++)
        for (int lh = LIKELIHOOD_BERNOULLI; lh <= LIKELIHOOD_LOGISTIC; lh++) {
            struct vae_config cfg = *parsed;
            cfg.in_dim = images[i].in_dim;
            cfg.channels = images[i].channels;
            cfg.height = images[i].height;
            cfg.width = images[i].width;
            cfg.likelihood = (enum likelihood_kind)lh;
            struct clvae_error err;
            if (vae_layout(&vae, &cfg, "fuzz", &err) != 0) {
                check_message(&err);
                continue;
            }
            check_model(&vae);
            if (mirrored) {
                // The decoder the layout mirrored: the count vae_parse_model refused by, and a
                // list a checkpoint can keep.
                if (vae.cfg.n_decoder != vae_mirror_items(cfg.encoder, cfg.n_encoder))
                    abort();
                round_trip(vae.cfg.decoder, vae.cfg.n_decoder, &cfg);
            }
            check_parts(&vae, (cl_ulong)1 << 20); // a layer too large, or many parts
            check_parts(&vae, (cl_ulong)1 << 28);
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fuzz_text(data, size);
    if (!text)
        return 0;
    const char *field[FIELDS] = {NULL};
    char *line = text;
    for (int f = 0; f < FIELDS && line; f++) {
        char *end = strchr(line, '\n');
        if (end)
            *end = '\0';
        field[f] = *line ? line : NULL;
        line = end ? end + 1 : NULL;
    }
    // train's defaults: dense:128 mirrored, latent 10.
    struct vae_config cfg = {.n_encoder = 1, .n_decoder = 1, .latent = 10};
    cfg.encoder[0] = cfg.decoder[0] = (struct layer_spec){.kind = LAYER_DENSE, .units = 128};
    struct clvae_error err;
    if (field[LATENT])
        cfg.latent = 1 + (int)(strtoul(field[LATENT], NULL, 10) % 4096);
    if (vae_parse_model(field[HIDDEN], field[ENCODER], field[DECODER], &cfg, &err) != 0) {
        check_message(&err);
        // An encoder refused for its mirror alone must be one the layout refuses too.
        struct vae_config raw = cfg;
        if (field[ENCODER] && !field[DECODER] && !field[HIDDEN] &&
            vae_parse_layers("--encoder", field[ENCODER], raw.encoder, &raw.n_encoder, &err) == 0) {
            raw.n_decoder = 0;
            if (vae_mirror_items(raw.encoder, raw.n_encoder) <= VAE_MAX_HIDDEN)
                abort(); // refused for something else than the parser says
            static struct vae vae;
            raw.in_dim = 784, raw.channels = 1, raw.height = 28, raw.width = 28;
            if (vae_layout(&vae, &raw, "fuzz", &err) == 0)
                abort();
            check_message(&err);
        }
        free(text);
        return 0;
    }
    round_trip(cfg.encoder, cfg.n_encoder, &cfg);
    if (cfg.n_decoder > 0)
        round_trip(cfg.decoder, cfg.n_decoder, &cfg);
    lay_out(&cfg, cfg.n_decoder == 0);
    free(text);
    return 0;
}
