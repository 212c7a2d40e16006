#include "vae.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

const struct layer_ops *layer_ops_of(enum layer_kind kind)
{
    switch (kind) {
    case LAYER_DENSE: return &dense_ops;
    }
    return NULL;
}

// One item of a --hidden list: a width, a dense layer.
static int parse_width(const char *option, const char *item, struct layer_spec *spec,
                       struct clvae_error *err)
{
    spec->kind = LAYER_DENSE;
    return cli_parse_int(option, item, 1, 65536, &spec->units, err);
}

// One item of a layer list: "dense:N".
static int parse_layer(const char *option, const char *item, struct layer_spec *spec,
                       struct clvae_error *err)
{
    if (strncmp(item, "dense:", 6) != 0)
        return clvae_fail(err, CLVAE_EXIT_USAGE, "%s: '%s' is not a layer (dense:N, N the width)",
                          option, item);
    return parse_width(option, item + 6, spec, err);
}

// text split at commas into specs (VAE_MAX_HIDDEN at most), *n, each item read by parse_item;
// an empty list or an empty item is refused as "not a comma-separated list of <what>".
static int parse_list(const char *option, const char *text, const char *what,
                      int (*parse_item)(const char *, const char *, struct layer_spec *,
                                        struct clvae_error *),
                      struct layer_spec *specs, int *n, struct clvae_error *err)
{
    char buf[512], *save = NULL;
    if (snprintf(buf, sizeof buf, "%s", text) >= (int)sizeof buf)
        return clvae_fail(err, CLVAE_EXIT_USAGE, "%s: '%.64s...' is too long", option, text);
    size_t len = strlen(buf);
    if (len == 0 || buf[0] == ',' || buf[len - 1] == ',' || strstr(buf, ",,"))
        return clvae_fail(err, CLVAE_EXIT_USAGE, "%s: '%s' is not a comma-separated list of %s",
                          option, text, what);
    int count = 0;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (count == VAE_MAX_HIDDEN)
            return clvae_fail(err, CLVAE_EXIT_USAGE, "%s: at most %d layers", option,
                              VAE_MAX_HIDDEN);
        if (parse_item(option, tok, &specs[count++], err))
            return -1;
    }
    *n = count;
    return 0;
}

int vae_parse_hidden(const char *option, const char *text, struct vae_config *cfg,
                     struct clvae_error *err)
{
    if (parse_list(option, text, "widths", parse_width, cfg->encoder, &cfg->n_encoder, err))
        return -1;
    cfg->n_decoder = cfg->n_encoder;
    for (int i = 0; i < cfg->n_encoder; i++)
        cfg->decoder[i] = cfg->encoder[cfg->n_encoder - 1 - i];
    return 0;
}

int vae_parse_layers(const char *option, const char *text, struct layer_spec *specs, int *n,
                     struct clvae_error *err)
{
    return parse_list(option, text, "layers (dense:N)", parse_layer, specs, n, err);
}

void vae_format_layers(const struct layer_spec *specs, int n, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < n && used < len; i++) {
        int w = snprintf(buf + used, len - used, "%s%s:%d", i ? "," : "",
                         layer_ops_of(specs[i].kind)->kind, specs[i].units);
        used += w > 0 ? (size_t)w : 0;
    }
}

bool vae_same_layers(const struct vae_config *a, const struct vae_config *b)
{
    if (a->latent != b->latent || a->n_encoder != b->n_encoder || a->n_decoder != b->n_decoder)
        return false;
    for (int i = 0; i < a->n_encoder; i++)
        if (a->encoder[i].kind != b->encoder[i].kind || a->encoder[i].units != b->encoder[i].units)
            return false;
    for (int i = 0; i < a->n_decoder; i++)
        if (a->decoder[i].kind != b->decoder[i].kind || a->decoder[i].units != b->decoder[i].units)
            return false;
    return true;
}

// Appends a layer of spec taking in floats per image, named name, and lays it out.
static int add_layer(struct vae *vae, struct layer_spec spec, const char *name, int in, bool relu,
                     char *why)
{
    struct layer *l = &vae->layer[vae->n_layers];
    *l = (struct layer){.ops = layer_ops_of(spec.kind),
                        .spec = spec,
                        .in = in,
                        .relu = relu,
                        .needs_dx = vae->n_layers > 0};
    snprintf(l->name, sizeof l->name, "%s", name);
    if (l->ops->layout(vae, l, why))
        return -1;
    vae->n_layers++;
    return 0;
}

int vae_layout(struct vae *vae, const struct vae_config *cfg, const char *option,
               struct clvae_error *err)
{
    memset(vae, 0, sizeof *vae);
    vae->cfg = *cfg;
    char name[24], why[CLVAE_ERROR_MAX] = "";
    int prev = cfg->in_dim, rc = 0;
    for (int i = 0; rc == 0 && i < cfg->n_encoder; i++) {
        snprintf(name, sizeof name, "encoder.%d", i);
        rc = add_layer(vae, cfg->encoder[i], name, prev, true, why);
        prev = vae->layer[vae->n_layers - 1].out;
    }
    struct layer_spec head = {.kind = LAYER_DENSE, .units = 2 * cfg->latent};
    if (rc == 0 && (rc = add_layer(vae, head, "mean+logvar", prev, false, why)) == 0)
        vae->layer[vae->n_layers - 1].gaussian_head = true;
    vae->n_encoder = vae->n_layers;
    prev = cfg->latent;
    for (int i = 0; rc == 0 && i < cfg->n_decoder; i++) {
        snprintf(name, sizeof name, "decoder.%d", i);
        rc = add_layer(vae, cfg->decoder[i], name, prev, true, why);
        prev = vae->layer[vae->n_layers - 1].out;
    }
    struct layer_spec output = {.kind = LAYER_DENSE, .units = cfg->in_dim};
    if (rc == 0)
        rc = add_layer(vae, output, "output", prev, false, why);
    if (rc)
        return clvae_fail(err, CLVAE_EXIT_USAGE, "%s: %s", option, why);
    return 0;
}

// A device buffer of rows x cols floats that the model owns and releases.
static cl_mem own(struct vae *vae, size_t rows, size_t cols, const char *name,
                  struct clvae_error *err)
{
    cl_mem mem = clrt_buffer(vae->rt, rows * cols * sizeof(float), name, err);
    if (mem)
        vae->owned[vae->n_owned++] = mem;
    return mem;
}

// Every layer's x, y, dx, dy: the model's x, ml, z and logits at the ends, buffers of its own
// between.
static int wire_layers(struct vae *vae, size_t rows, struct clvae_error *err)
{
    for (int i = 0; i < vae->n_layers; i++) {
        struct layer *l = &vae->layer[i];
        if (i == vae->n_encoder - 1) {
            l->y = vae->ml, l->dy = vae->dml;
        } else if (i == vae->n_layers - 1) {
            l->y = vae->logits, l->dy = vae->dlogits;
        } else {
            char name[64];
            snprintf(name, sizeof name, "%s activations", l->name);
            if (!(l->y = own(vae, rows, (size_t)l->out, name, err)))
                return -1;
            snprintf(name, sizeof name, "%s activation gradient", l->name);
            if (!(l->dy = own(vae, rows, (size_t)l->out, name, err)))
                return -1;
        }
        if (i == 0)
            l->x = vae->x, l->dx = NULL;
        else if (i == vae->n_encoder)
            l->x = vae->z, l->dx = vae->dz;
        else
            l->x = vae->layer[i - 1].y, l->dx = vae->layer[i - 1].dy;
    }
    return 0;
}

size_t vae_device_bytes(const struct vae *layout, const struct clrt *rt, int max_rows,
                        size_t *largest, const char **largest_name)
{
    size_t rows = (size_t)max_rows, d = (size_t)layout->cfg.in_dim, z = (size_t)layout->cfg.latent;
    size_t f = sizeof(float), widest = 0;
    // What vae_create allocates: parameters, gradients, transposed weights; x, logits, dlogits,
    // terms (rows, d); ml, dml (rows, 2 z); z, dz, eps (rows, z); each inner layer's y and dy.
    size_t sizes[4 + 2 * VAE_MAX_LAYERS] = {layout->n_params * f, layout->n_weights_t * f,
                                            rows * d * f, rows * 2 * z * f};
    int n = 4;
    size_t total = 2 * sizes[0] + sizes[1] + 4 * sizes[2] + 2 * sizes[3] + 3 * rows * z * f;
    for (int i = 0; i < layout->n_layers; i++) {
        const struct layer *l = &layout->layer[i];
        widest = (size_t)l->out > widest ? (size_t)l->out : widest;
        if (i != layout->n_encoder - 1 && i != layout->n_layers - 1) {
            sizes[n++] = rows * (size_t)l->out * f;
            total += 2 * rows * (size_t)l->out * f;
        }
    }
    total += (rt->reduce_work + widest) * f; // bias_partial
    static const char *const names[4] = {"parameters", "transposed weights", "input batch",
                                         "mean and log-variance"};
    *largest = 0;
    *largest_name = "activations";
    for (int i = 0; i < n; i++) {
        if (sizes[i] > *largest) {
            *largest = sizes[i];
            *largest_name = i < 4 ? names[i] : "layer activations";
        }
    }
    return total;
}

int vae_create(struct vae *vae, struct clrt *rt, const struct vae_config *cfg, int max_rows,
               struct clvae_error *err)
{
    if (vae_layout(vae, cfg, "--hidden/--latent", err))
        return -1;
    vae->rt = rt;
    vae->max_rows = max_rows;
    if (vae->n_params > (size_t)INT32_MAX)
        return clvae_fail(err, CLVAE_EXIT_USAGE, "the model has %zu parameters; at most %d fit",
                          vae->n_params, INT32_MAX);
    size_t rows = (size_t)max_rows, d = (size_t)cfg->in_dim, z = (size_t)cfg->latent;
    if (!(vae->params = own(vae, vae->n_params, 1, "parameters", err)) ||
        !(vae->grads = own(vae, vae->n_params, 1, "gradients", err)) ||
        !(vae->weights_t = own(vae, vae->n_weights_t, 1, "transposed weights", err)))
        return -1;
    size_t before = rt->allocated;
    if (!(vae->x = own(vae, rows, d, "input batch", err)) ||
        !(vae->ml = own(vae, rows, 2 * z, "mean and log-variance", err)) ||
        !(vae->dml = own(vae, rows, 2 * z, "mean and log-variance gradient", err)) ||
        !(vae->z = own(vae, rows, z, "latent sample", err)) ||
        !(vae->dz = own(vae, rows, z, "latent sample gradient", err)) ||
        !(vae->eps = own(vae, rows, z, "latent noise", err)) ||
        !(vae->logits = own(vae, rows, d, "logits", err)) ||
        !(vae->dlogits = own(vae, rows, d, "logits gradient", err)) ||
        !(vae->terms = own(vae, rows, d, "per-pixel losses", err)) || wire_layers(vae, rows, err))
        return -1;
    // The bias gradients' partial column sums: vae_bias_parts keeps parts * n within
    // bias_work + n.
    vae->bias_work = rt->reduce_work;
    size_t widest = 0;
    for (int i = 0; i < vae->n_layers; i++)
        widest = (size_t)vae->layer[i].out > widest ? (size_t)vae->layer[i].out : widest;
    if (!(vae->bias_partial =
              own(vae, vae->bias_work + widest, 1, "bias gradient partial sums", err)))
        return -1;
    // CLBlast's scratch, reserved for the products of a full batch; clrt_gemm grows it if a
    // product of another row count needs more.
    size_t temp = 0;
    for (int i = 0; i < vae->n_layers; i++) {
        size_t in = (size_t)vae->layer[i].in, out = (size_t)vae->layer[i].out, t;
        t = clrt_gemm_temp_size(rt, false, false, rows, out, in, in, out, out);
        temp = t > temp ? t : temp;
        t = clrt_gemm_temp_size(rt, true, false, in, out, rows, in, out, out);
        temp = t > temp ? t : temp;
        t = clrt_gemm_temp_size(rt, false, false, rows, in, out, out, in, in);
        temp = t > temp ? t : temp;
    }
    if (clrt_reserve_gemm_temp(rt, temp, err))
        return -1;
    vae->activation_bytes = rt->allocated - before;

    for (int i = 0; i < vae->n_layers; i++)
        vae->layer[i].ops->create(vae, &vae->layer[i]);
    sampler_create(&vae->sampler, rt);
    likelihood_create(&vae->likelihood, rt);
    vae->k_gather = clrt_kernel(rt, "gather_images");
    return 0;
}

void vae_release(struct vae *vae)
{
    for (int i = 0; i < vae->n_layers; i++)
        if (vae->layer[i].ops)
            vae->layer[i].ops->release(&vae->layer[i]);
    sampler_release(&vae->sampler);
    likelihood_release(&vae->likelihood);
    if (vae->k_gather)
        clReleaseKernel(vae->k_gather);
    vae->k_gather = NULL;
    for (int i = 0; i < vae->n_owned; i++)
        clReleaseMemObject(vae->owned[i]);
    vae->n_owned = 0;
}

void vae_init_params_host(const struct vae *vae, uint64_t seed, float *params)
{
    for (int i = 0; i < vae->n_layers; i++)
        vae->layer[i].ops->init(&vae->layer[i], seed, params);
}

void vae_forward(struct vae *vae, const struct vae_pass *pass)
{
    for (int i = 0; i < vae->n_encoder; i++)
        vae->layer[i].ops->forward(vae, &vae->layer[i], pass->rows);
    sampler_forward(vae, pass);
    vae_decode(vae, pass->rows);
    likelihood_forward(vae, pass);
}

void vae_backward(struct vae *vae, const struct vae_pass *pass, float beta)
{
    for (int i = vae->n_layers - 1; i >= vae->n_encoder; i--)
        vae->layer[i].ops->backward(vae, &vae->layer[i], pass->rows, pass->accumulate);
    sampler_backward(vae, pass, beta);
    for (int i = vae->n_encoder - 1; i >= 0; i--)
        vae->layer[i].ops->backward(vae, &vae->layer[i], pass->rows, pass->accumulate);
}

int vae_bias_parts(const struct vae *vae, int rows, int n)
{
    if (vae->bias_work == 0)
        return 1;
    size_t want = (vae->bias_work + (size_t)n - 1) / (size_t)n;
    size_t most = ((size_t)rows + 31) / 32;
    size_t parts = want < most ? want : most;
    return parts < 1 ? 1 : (int)parts;
}

void vae_gather(struct vae *vae, cl_mem data, cl_mem index, int start, int rows)
{
    cl_kernel k = vae->k_gather;
    int dim = vae->cfg.in_dim;
    cl_uint a = 0;
    KARG(k, a++, data);
    KARG(k, a++, index);
    KARG(k, a++, start);
    KARG(k, a++, rows);
    KARG(k, a++, dim);
    KARG(k, a++, vae->x);
    size_t global[2] = {(size_t)dim, (size_t)rows};
    clrt_launch(vae->rt, k, 2, global, NULL);
}

void vae_describe(const struct vae_config *cfg, char *buf, size_t len)
{
    int used = snprintf(buf, len, "%d", cfg->in_dim);
    for (int i = 0; i < cfg->n_encoder && used >= 0 && (size_t)used < len; i++)
        used += snprintf(buf + used, len - (size_t)used, "-%d", cfg->encoder[i].units);
    if (used >= 0 && (size_t)used < len)
        snprintf(buf + used, len - (size_t)used, "-%d", cfg->latent);
}

void vae_decode(struct vae *vae, int rows)
{
    for (int i = vae->n_encoder; i < vae->n_layers; i++)
        vae->layer[i].ops->forward(vae, &vae->layer[i], rows);
}
