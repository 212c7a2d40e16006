// The model: the layer list built from an architecture description (vae_layout), its buffers
// (vae_create), and the passes that walk it. Every kind-specific step is the kind's (layer.h):
// nothing here names a kind but through the registry.
#include "vae.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

// One item of a --hidden list: a width, a dense layer.
static int parse_width(const char *option, const char *item, struct layer_spec *spec,
                       struct clvae_error *err)
{
    *spec = layer_spec_of("dense", 0);
    return spec->kind->parse(option, item, item, spec, err);
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
    return parse_list(option, text, "layers", layer_parse, specs, n, err);
}

// A layer of spec whose shapes say only whether they are images: what vae_mirror_items asks the
// kinds' mirror before anything is laid out.
static struct layer shapeless_layer(const struct layer_spec *spec, bool image_in, bool image_out)
{
    struct layer l = {.ops = spec->kind, .spec = *spec};
    l.in_shape = (struct layer_shape){.c = 1, .h = 1, .w = 1, .spatial = image_in};
    l.out_shape = (struct layer_shape){.c = 1, .h = 1, .w = 1, .spatial = image_out};
    return l;
}

int vae_mirror_items(const struct layer_spec *specs, int n)
{
    struct layer_spec items[LAYER_MAX_MIRROR];
    int count = 0, layers = 0;
    bool image = false, top_image = false; // the next layer's input is an image; the top's output
    for (int i = 0; i < n; i++) {
        const struct layer_ops *kind = specs[i].kind;
        bool image_out = kind->gives == LAYER_GIVES_IMAGE;
        if (!kind->layout) { // an item that is no layer
            image = image_out;
            continue;
        }
        if (layers++ > 0) { // the first layer's transpose is the output layer, not an item
            struct layer l = shapeless_layer(&specs[i], image, image_out);
            count += kind->mirror(&l, items);
        }
        image = top_image = image_out;
    }
    struct layer_shape top = {.c = 1, .h = 1, .w = 1, .spatial = top_image};
    return layers ? count + layer_dense_to(top, items) : 0;
}

int vae_parse_model(const char *hidden, const char *encoder, const char *decoder,
                    struct vae_config *cfg, struct clvae_error *err)
{
    if (hidden && (encoder || decoder))
        return clvae_fail(err, CLVAE_EXIT_USAGE,
                          "--hidden is the dense shorthand of --encoder (and its mirror as "
                          "--decoder): give one or the other");
    if (hidden && vae_parse_hidden("--hidden", hidden, cfg, err))
        return -1;
    if (encoder) {
        if (vae_parse_layers("--encoder", encoder, cfg->encoder, &cfg->n_encoder, err))
            return -1;
        cfg->n_decoder = 0; // the mirror, unless --decoder says otherwise
        int mirror = vae_mirror_items(cfg->encoder, cfg->n_encoder);
        if (!decoder && mirror > VAE_MAX_HIDDEN)
            return clvae_fail(err, CLVAE_EXIT_USAGE,
                              "--encoder: the decoder mirroring these layers would take %d items, "
                              "more than the %d a list holds (a dense layer back to a conv's "
                              "output takes two, dense and reshape): give --decoder, or fewer "
                              "layers",
                              mirror, VAE_MAX_HIDDEN);
    }
    if (decoder && vae_parse_layers("--decoder", decoder, cfg->decoder, &cfg->n_decoder, err))
        return -1;
    return 0;
}

const char *vae_model_option(const char *hidden, const char *encoder, const char *decoder)
{
    if (hidden || (!encoder && !decoder))
        return "--hidden";
    return encoder && decoder ? "--encoder/--decoder" : encoder ? "--encoder" : "--decoder";
}

size_t vae_format_layers(const struct layer_spec *specs, int n, char *buf, size_t len)
{
    size_t used = 0;
    if (len)
        buf[0] = '\0';
    for (int i = 0; i < n; i++) {
        const struct layer_spec *s = &specs[i];
        const char *sep = i ? "," : "";
        char *at = used < len ? buf + used : NULL;
        size_t room = used < len ? len - used : 0;
        int w = snprintf(at, room, "%s", sep);
        used += w > 0 ? (size_t)w : 0;
        at = used < len ? buf + used : NULL;
        room = used < len ? len - used : 0;
        w = s->kind->format(s, at, room);
        used += w > 0 ? (size_t)w : 0;
    }
    return used;
}

static bool same_spec(const struct layer_spec *a, const struct layer_spec *b)
{
    return a->kind == b->kind && a->kind->same(a, b);
}

bool vae_same_layers(const struct vae_config *a, const struct vae_config *b)
{
    if (a->latent != b->latent || a->n_encoder != b->n_encoder)
        return false;
    for (int i = 0; i < a->n_encoder; i++)
        if (!same_spec(&a->encoder[i], &b->encoder[i]))
            return false;
    // No decoder given is the encoder's mirror, whatever it came to.
    if (a->n_decoder == 0 || b->n_decoder == 0)
        return true;
    if (a->n_decoder != b->n_decoder)
        return false;
    for (int i = 0; i < a->n_decoder; i++)
        if (!same_spec(&a->decoder[i], &b->decoder[i]))
            return false;
    return true;
}

// More parameters than any layer adds (a dense layer's are below 2^31 x 2^31 + 2^31, a conv's
// below VAE_MAX_PARAMS): the layout stops past it, so that the sum never wraps.
#define PARAMS_CEILING ((size_t)1 << 62)

// Appends a layer of spec taking input of shape in (and classes one-hot inputs beside it: a dense
// layer of a conditional model), named name, and lays it out.
static int add_layer(struct vae *vae, struct layer_spec spec, const char *name,
                     struct layer_shape in, bool relu, int classes, char *why)
{
    if (vae->n_layers == VAE_MAX_LAYERS)
        return snprintf(why, CLVAE_ERROR_MAX, "more than %d layers", VAE_MAX_LAYERS), -1;
    if (vae->n_params > PARAMS_CEILING)
        return snprintf(why, CLVAE_ERROR_MAX,
                        "the model has more than %zu parameters before %s; at most %zu fit",
                        PARAMS_CEILING, name, VAE_MAX_PARAMS),
               -1;
    struct layer *l = &vae->layer[vae->n_layers];
    *l = (struct layer){.ops = spec.kind,
                        .spec = spec,
                        .in = in.c * in.h * in.w,
                        .in_shape = in,
                        .relu = relu,
                        .classes = classes,
                        .needs_dx = vae->n_layers > 0};
    snprintf(l->name, sizeof l->name, "%s", name);
    struct layer_plan plan = {.n_params = vae->n_params,
                              .n_weights_t = vae->n_weights_t,
                              .n_weights_kept = vae->n_weights_kept};
    if (l->ops->layout(l, &plan, why))
        return -1;
    vae->n_params = plan.n_params;
    vae->n_weights_t = plan.n_weights_t;
    vae->n_weights_kept = plan.n_weights_kept;
    vae->n_layers++;
    return 0;
}

// The output shape of the last layer laid out.
static struct layer_shape last_shape(const struct vae *vae)
{
    return vae->layer[vae->n_layers - 1].out_shape;
}

// Lays out specs[0 .. n) from shape *shape (updated), naming the layers prefix.i, the first of
// them taking classes one-hot inputs too; an item that is no layer (a reshape) gives the shape
// after it.
static int add_layers(struct vae *vae, const struct layer_spec *specs, int n, const char *prefix,
                      struct layer_shape *shape, int classes, char *why)
{
    char name[24];
    for (int i = 0, index = 0; i < n; i++) {
        const struct layer_spec *s = &specs[i];
        if (s->kind->shape) {
            if (s->kind->shape(s, shape, why))
                return -1;
            continue;
        }
        snprintf(name, sizeof name, "%s.%d", prefix, index);
        if (add_layer(vae, *s, name, *shape, true, index++ == 0 ? classes : 0, why))
            return -1;
        *shape = last_shape(vae);
    }
    return 0;
}

// The decoder mirroring the laid-out encoder layers: a dense layer to the last encoder layer's
// output shape (reshaped when that is an image), then for each encoder layer but the first, from
// the top, its kind's way back to its input shape (a deconv for a conv, a dense layer for a dense
// one); the output layer mirrors the first. Built apart (LAYER_MAX_MIRROR items a layer at most,
// n_enc <= VAE_MAX_HIDDEN) and refused, with why, when it is not a list vae_parse_layers reads
// back (a checkpoint keeps it as text): more items than a list holds (vae_mirror_items counts the
// same before the layout), or a dense layer wider than VAE_MAX_UNITS (the flattened output of a
// wide conv).
static int mirror_decoder(struct vae *vae, int n_enc, char *why)
{
    struct layer_spec items[LAYER_MAX_MIRROR * VAE_MAX_HIDDEN];
    int n = layer_dense_to(vae->layer[n_enc - 1].out_shape, items);
    for (int i = n_enc - 1; i >= 1; i--)
        n += vae->layer[i].ops->mirror(&vae->layer[i], items + n);
    if (n > VAE_MAX_HIDDEN)
        return snprintf(why, CLVAE_ERROR_MAX,
                        "the decoder mirroring the encoder would take %d items, more than the %d "
                        "a list holds: give the decoder's layers, or fewer encoder layers",
                        n, VAE_MAX_HIDDEN),
               -1;
    for (int i = 0; i < n; i++)
        if (items[i].units > VAE_MAX_UNITS) // a dense layer's width: a conv's output flattened
            return snprintf(why, CLVAE_ERROR_MAX,
                            "the decoder mirroring the encoder would take a dense layer of %d "
                            "(a conv's output flattened), wider than %d: give the decoder's "
                            "layers, or fewer channels or pixels there",
                            items[i].units, VAE_MAX_UNITS),
                   -1;
    memcpy(vae->cfg.decoder, items, (size_t)n * sizeof items[0]);
    vae->cfg.n_decoder = n;
    return 0;
}

// The sizes vae_layout takes from cfg rather than from a parser, checked: list lengths (they
// index fixed arrays), every item's kind, and the image. 0, or -1 with why.
static int check_config(const struct vae_config *cfg, char *why)
{
    if (cfg->n_encoder < 0 || cfg->n_encoder > VAE_MAX_HIDDEN || cfg->n_decoder < 0 ||
        cfg->n_decoder > VAE_MAX_HIDDEN)
        return snprintf(why, CLVAE_ERROR_MAX,
                        "%d encoder and %d decoder items: a list holds 0 to %d", cfg->n_encoder,
                        cfg->n_decoder, VAE_MAX_HIDDEN),
               -1;
    for (int i = 0; i < cfg->n_encoder + cfg->n_decoder; i++) {
        const struct layer_spec *s =
            i < cfg->n_encoder ? &cfg->encoder[i] : &cfg->decoder[i - cfg->n_encoder];
        if (!s->kind) // a caller's bug: a list not made by the parser nor with LAYER_DENSE
            return snprintf(why, CLVAE_ERROR_MAX, "layer list item %d has no kind", i), -1;
    }
    int64_t values =
        cfg->height == 0 ? cfg->in_dim : (int64_t)cfg->channels * cfg->height * cfg->width;
    if (cfg->in_dim < 1 || cfg->channels < 0 || cfg->height < 0 || cfg->width < 0 ||
        values != cfg->in_dim ||
        (int64_t)cfg->in_dim * likelihood_outputs(cfg->likelihood) > INT32_MAX)
        return snprintf(why, CLVAE_ERROR_MAX,
                        "images of %dx%dx%d (%d values) are not a shape clvae takes", cfg->channels,
                        cfg->height, cfg->width, cfg->in_dim),
               -1;
    if (cfg->latent < 1 || cfg->latent > INT32_MAX / 2)
        return snprintf(why, CLVAE_ERROR_MAX, "latent %d is out of range", cfg->latent), -1;
    if (cfg->classes < 0 || cfg->classes > VAE_MAX_CLASSES)
        return snprintf(why, CLVAE_ERROR_MAX, "%d classes: a conditional model takes 1 to %d",
                        cfg->classes, VAE_MAX_CLASSES),
               -1;
    return 0;
}

// The output layer from a decoder whose output is an image: the first encoder layer's way back to
// the image when the first item laid it out and that is one layer giving an image of another kind
// (a conv's transpose; a kind that mirrors to its own, res, keeps its channels and cannot give
// the output's), else a deconv of the kind's defaults (4x4, stride 2, padding 1). Its units are
// the caller's.
static struct layer_spec output_from_image(const struct vae *vae, const struct vae_config *cfg,
                                           int n_enc)
{
    struct layer_spec items[LAYER_MAX_MIRROR];
    if (n_enc > 0 && cfg->encoder[0].kind->layout &&
        vae->layer[0].ops->mirror(&vae->layer[0], items) == 1 && items[0].kind->layout &&
        items[0].kind->gives == LAYER_GIVES_IMAGE && items[0].kind != vae->layer[0].ops)
        return items[0];
    return layer_spec_of("deconv", 0);
}

// "1x28x28 images" (channels x height x width) or "inputs of 784 values", for messages.
static void describe_input(const struct vae_config *cfg, char *buf, size_t len)
{
    if (cfg->height)
        snprintf(buf, len, "%dx%dx%d images", cfg->channels, cfg->height, cfg->width);
    else
        snprintf(buf, len, "inputs of %d values", cfg->in_dim);
}

int vae_layout(struct vae *vae, const struct vae_config *cfg, const char *option,
               struct clvae_error *err)
{
    memset(vae, 0, sizeof *vae);
    vae->cfg = *cfg;
    char why[CLVAE_ERROR_MAX] = "";
    if (check_config(cfg, why))
        return clvae_fail(err, CLVAE_EXIT_USAGE, "%s: %s", option, why);
    vae->out_dim = cfg->in_dim * likelihood_outputs(cfg->likelihood);
    struct layer_shape image = {
        .c = cfg->channels, .h = cfg->height, .w = cfg->width, .spatial = true};
    if (cfg->height == 0) { // no image shape given: a flat vector
        image = (struct layer_shape){.c = cfg->in_dim, .h = 1, .w = 1};
        vae->cfg.channels = cfg->in_dim;
    }
    struct layer_shape shape = image;
    int rc = add_layers(vae, cfg->encoder, cfg->n_encoder, "encoder", &shape, 0, why);
    int n_enc = vae->n_layers;
    struct layer_spec head = layer_spec_of("dense", 2 * cfg->latent);
    if (rc == 0 && (rc = add_layer(vae, head, "mean+logvar", shape, false, cfg->classes, why)) == 0)
        vae->layer[vae->n_layers - 1].gaussian_head = true;
    vae->n_encoder = vae->n_layers;
    if (rc == 0 && cfg->n_decoder == 0) {
        if (n_enc == 0) {
            snprintf(why, CLVAE_ERROR_MAX, "no encoder layers to mirror");
            rc = -1;
        } else
            rc = mirror_decoder(vae, n_enc, why);
    }
    shape = (struct layer_shape){.c = cfg->latent, .h = 1, .w = 1};
    if (rc == 0 && cfg->classes && vae->cfg.n_decoder > 0 &&
        vae->cfg.decoder[0].kind != LAYER_DENSE) {
        char item[64];
        vae->cfg.decoder[0].kind->format(&vae->cfg.decoder[0], item, sizeof item);
        snprintf(why, CLVAE_ERROR_MAX,
                 "--conditional concatenates the class to z at the decoder's input, whose first "
                 "layer must then be dense, not %s",
                 item);
        rc = -1;
    }
    if (rc == 0)
        rc = add_layers(vae, vae->cfg.decoder, vae->cfg.n_decoder, "decoder", &shape, cfg->classes,
                        why);
    // The output layer: dense to the image, or, from an image, the transpose of the first encoder
    // layer (else deconv:C:4:2:1), which must land on the image's size.
    if (rc == 0) {
        int per_value = likelihood_outputs(cfg->likelihood);
        struct layer_spec out = layer_spec_of("dense", vae->out_dim);
        if (shape.spatial) {
            out = output_from_image(vae, cfg, n_enc);
            out.units = image.c * per_value;
        }
        rc = add_layer(vae, out, "output", shape, false, 0, why);
        struct layer_shape got = rc == 0 ? last_shape(vae) : image;
        if (rc == 0 && shape.spatial && (!image.spatial || got.h != image.h || got.w != image.w)) {
            snprintf(why, CLVAE_ERROR_MAX,
                     "the decoder cannot reach the image size: its output deconv gives %dx%dx%d, "
                     "the images are %dx%dx%d",
                     got.c / per_value, got.h, got.w, image.c, image.h, image.w);
            rc = -1;
        }
    }
    if (rc)
        return clvae_fail(err, CLVAE_EXIT_USAGE, "%s: %s", option, why);
    if (vae->n_params > VAE_MAX_PARAMS) {
        char input[64];
        describe_input(cfg, input, sizeof input);
        return clvae_fail(err, CLVAE_EXIT_USAGE,
                          "%s: the model has %zu parameters for %s; at most %zu fit", option,
                          vae->n_params, input, VAE_MAX_PARAMS);
    }
    return 0;
}

// Whether the model can own n more buffers; a failure (CLVAE_EXIT_FAILURE: a bug) if not.
static bool room_to_own(struct vae *vae, int n, const char *name, struct clvae_error *err)
{
    if (n <= VAE_MAX_OWNED - vae->n_owned)
        return true;
    clvae_fail(err, CLVAE_EXIT_FAILURE, "%s: the model would own more than %d device buffers", name,
               VAE_MAX_OWNED);
    return false;
}

// n, or 1 for a buffer the model creates whether or not a layer uses it.
static size_t one_at_least(size_t n)
{
    return n ? n : 1;
}

// Floats of the layers' kept transposed weights (layer_ctx.weights_kept): none when they would
// not fit one allocation (the layers then transpose into the shared scratch in their backward).
static size_t kept_floats(const struct vae *vae, const struct clrt *rt)
{
    return vae->n_weights_kept * sizeof(float) <= rt->max_alloc ? vae->n_weights_kept : 0;
}

// A device buffer of rows x cols floats that the model owns and releases.
static cl_mem own(struct vae *vae, size_t rows, size_t cols, const char *name,
                  struct clvae_error *err)
{
    if (!room_to_own(vae, 1, name, err))
        return NULL;
    cl_mem mem = clrt_buffer(vae->rt, rows * cols * sizeof(float), name, err);
    if (mem)
        vae->owned[vae->n_owned++] = mem;
    return mem;
}

// p's buffers (planned), owned by the model.
static int own_parts(struct vae *vae, struct clrt_parts *p, const char *name,
                     struct clvae_error *err)
{
    if (!room_to_own(vae, p->n, name, err) || clrt_parts_create(vae->rt, p, name, err))
        return -1;
    for (int i = 0; i < p->n; i++)
        vae->owned[vae->n_owned++] = p->mem[i];
    return 0;
}

// The images buffer b of l holds for passes of up to rows (its kind's buffer_images).
static size_t buffer_images(const struct layer *l, int b, const struct clrt *rt, size_t rows)
{
    return l->ops->buffer_images ? l->ops->buffer_images(l, b, rt, (int)rows) : rows;
}

// Every layer's x, y, dx, dy: the model's x, ml, z and logits at the ends, buffers of its own
// between; and the buffers its kind laid out. Each layer's x is the y of the one before (no layer
// takes another's dy twice, so none adds into its dx).
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
        for (int b = 0; b < l->n_buffers; b++) {
            struct layer_buffer *buf = &l->buffer[b];
            size_t images = buffer_images(l, b, vae->rt, rows);
            char name[64];
            snprintf(name, sizeof name, "%s %s", l->name, buf->what);
            if (buf->floats && images && !(buf->mem = own(vae, images, buf->floats, name, err)))
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

// Floats of the split-K scratch for max_rows rows: the largest weight gradient's parts, one more
// for the rows left over (dense_weight_grad); 0 when no product splits.
static size_t splitk_floats(const struct vae *vae, const struct clrt *rt, int max_rows)
{
    size_t most = 0;
    for (int i = 0; i < vae->n_layers; i++) {
        const struct layer *l = &vae->layer[i];
        size_t k = (size_t)max_rows * l->wgrad_k;
        int parts = layer_splitk_parts(rt, l->wgrad_m, l->wgrad_n, k);
        size_t floats = parts > 1 ? (size_t)(parts + 1) * l->wgrad_m * l->wgrad_n : 0;
        most = floats > most ? floats : most;
    }
    return most;
}

// "DEVICE's largest allocation (N bytes)", or CLVAE_MAX_ALLOC's when that set it.
static const char *alloc_limit(const struct clrt *rt, char *buf, size_t len)
{
    snprintf(buf, len, "%s (%llu bytes)", rt->max_alloc_name, (unsigned long long)rt->max_alloc);
    return buf;
}

// A new part starts at a layer that would take the current one past the largest allocation. (The
// transposed weights' scratch holds one layer's, so it fits one allocation when they do.)
int vae_plan_parts(struct vae *vae, const struct clrt *rt, const char *source,
                   struct clvae_error *err)
{
    size_t limit = (size_t)(rt->max_alloc / sizeof(float)), part_start = 0;
    struct clrt_parts *p = &vae->params;
    char most[256];
    memset(p, 0, sizeof *p);
    for (int i = 0; i < vae->n_layers; i++) {
        size_t begin = vae->layer[i].weight;
        size_t end = i + 1 < vae->n_layers ? vae->layer[i + 1].weight : vae->n_params;
        if (end - begin > limit)
            return clvae_fail(err, CLVAE_EXIT_DEVICE,
                              "%s: the model's layer %s has %zu bytes of parameters, more than "
                              "%s, and a layer's parameters are one buffer",
                              source, vae->layer[i].name, (end - begin) * sizeof(float),
                              alloc_limit(rt, most, sizeof most));
        if (end - part_start > limit) {
            if (p->n + 1 >= CLRT_MAX_PARTS)
                return clvae_fail(err, CLVAE_EXIT_DEVICE,
                                  "%s: the model's parameters would take more than %d buffers of "
                                  "at most %s",
                                  source, CLRT_MAX_PARTS, alloc_limit(rt, most, sizeof most));
            p->start[++p->n] = begin * sizeof(float);
            part_start = begin;
        }
    }
    p->n++;
    p->start[p->n] = vae->n_params * sizeof(float);
    vae->grads = vae->params;
    return 0;
}

// The part of p holding float offset at, and at's offset within it.
static int part_of(const struct clrt_parts *p, size_t at, size_t *within)
{
    int i = 0;
    while (i + 1 < p->n && p->start[i + 1] <= at * sizeof(float))
        i++;
    *within = at - p->start[i] / sizeof(float);
    return i;
}

// Each layer's dev: its parts' buffers and offsets within them.
static void place_layers(struct vae *vae)
{
    for (int i = 0; i < vae->n_layers; i++) {
        struct layer *l = &vae->layer[i];
        int part = part_of(&vae->params, l->weight, &l->dev.weight);
        l->dev.params = vae->params.mem[part];
        l->dev.grads = vae->grads.mem[part];
        l->dev.bias = l->dev.weight + (l->bias - l->weight);
    }
}

// Floats of the zeros a conv product reads for the padding (clrt_reserve_zeros): the most channels
// an image layer takes in or gives out (a deconv's backward reads dy so), where clvae's kernels run
// the products; none elsewhere. The runtime's, as its products' scratch is: not in
// vae_device_bytes (a few KiB).
static size_t conv_zero_floats(const struct vae *layout, const struct clrt *rt)
{
    size_t most = 0;
    for (int i = 0; rt->own_gemm && i < layout->n_layers; i++) {
        const struct layer_shape *in = &layout->layer[i].in_shape,
                                 *out = &layout->layer[i].out_shape;
        most = in->spatial && (size_t)in->c > most ? (size_t)in->c : most;
        most = out->spatial && (size_t)out->c > most ? (size_t)out->c : most;
    }
    return most;
}

size_t vae_device_bytes(const struct vae *layout, const struct clrt *rt, int max_rows,
                        size_t *largest, const char **largest_name)
{
    size_t rows = (size_t)max_rows, d = (size_t)layout->cfg.in_dim, z = (size_t)layout->cfg.latent;
    size_t f = sizeof(float), widest = 0;
    // What vae_create allocates: parameters, gradients, transposed weights (in parts if need be:
    // vae_plan_parts); x, terms (rows, d); ml, dml (rows, 2 z); logits, dlogits (rows, out_dim);
    // z, dz, eps (rows, z); each inner layer's y and dy, and each layer's own buffers.
    size_t out = rows * (size_t)layout->out_dim * f;
    size_t sizes[3 + (1 + LAYER_MAX_BUFFERS) * VAE_MAX_LAYERS] = {rows * d * f, rows * 2 * z * f,
                                                                  out};
    int n = 3;
    size_t total = 2 * layout->n_params * f +
                   (one_at_least(layout->n_weights_t) + kept_floats(layout, rt)) * f +
                   2 * sizes[0] + 2 * sizes[1] + 2 * out + 3 * rows * z * f;
    for (int i = 0; i < layout->n_layers; i++) {
        const struct layer *l = &layout->layer[i];
        widest = (size_t)l->out > widest ? (size_t)l->out : widest;
        if (i != layout->n_encoder - 1 && i != layout->n_layers - 1) {
            sizes[n++] = rows * (size_t)l->out * f;
            total += 2 * rows * (size_t)l->out * f;
        }
        for (int b = 0; b < l->n_buffers; b++) {
            sizes[n++] = buffer_images(l, b, rt, rows) * l->buffer[b].floats * f;
            total += sizes[n - 1];
        }
    }
    total += (rt->reduce_work + widest) * f; // bias_partial
    if (layout->cfg.classes)
        total += rows * sizeof(int); // labels
    total += splitk_floats(layout, rt, max_rows) * f;
    static const char *const names[3] = {"input batch", "mean and log-variance", "decoder output"};
    *largest = 0;
    *largest_name = "activations";
    for (int i = 0; i < n; i++) {
        if (sizes[i] > *largest) {
            *largest = sizes[i];
            *largest_name = i < 3 ? names[i] : "layer activations or conv columns";
        }
    }
    return total;
}

// Where a layer with a ReLU sits under one whose x is its y and both kinds fold the mask, the
// upper layer masks its dx as its product stores it (clvae's products only) and the lower one's
// backward need not: it can take its bias gradient from its weight gradient's launch.
static void plan_relu_folds(struct vae *vae)
{
    for (int i = 1; i < vae->n_layers; i++) {
        struct layer *upper = &vae->layer[i], *lower = &vae->layer[i - 1];
        bool fold = vae->rt->own_gemm && i != vae->n_encoder && lower->relu &&
                    upper->ops->fold_relu && lower->ops->fold_relu && upper->needs_dx &&
                    !upper->dx_accumulate;
        upper->mask_dx = lower->dy_masked = fold;
    }
}

int vae_create(struct vae *vae, struct clrt *rt, const struct vae_config *cfg, int max_rows,
               const char *source, struct clvae_error *err)
{
    if (vae_layout(vae, cfg, source, err))
        return -1;
    vae->rt = rt;
    vae->max_rows = max_rows;
    size_t rows = (size_t)max_rows, d = (size_t)cfg->in_dim, z = (size_t)cfg->latent;
    if (vae_plan_parts(vae, rt, source, err) || own_parts(vae, &vae->params, "parameters", err) ||
        own_parts(vae, &vae->grads, "gradients", err) ||
        !(vae->ctx.weights_t =
              own(vae, one_at_least(vae->n_weights_t), 1, "transposed weights", err)) ||
        (kept_floats(vae, rt) && !(vae->ctx.weights_kept = own(vae, kept_floats(vae, rt), 1,
                                                               "layers' transposed weights", err))))
        return -1;
    place_layers(vae);
    size_t before = rt->allocated;
    if (!(vae->x = own(vae, rows, d, "input batch", err)) ||
        !(vae->ml = own(vae, rows, 2 * z, "mean and log-variance", err)) ||
        !(vae->dml = own(vae, rows, 2 * z, "mean and log-variance gradient", err)) ||
        !(vae->z = own(vae, rows, z, "latent sample", err)) ||
        !(vae->dz = own(vae, rows, z, "latent sample gradient", err)) ||
        !(vae->eps = own(vae, rows, z, "latent noise", err)) ||
        !(vae->logits = own(vae, rows, (size_t)vae->out_dim, "decoder output", err)) ||
        !(vae->dlogits = own(vae, rows, (size_t)vae->out_dim, "decoder output gradient", err)) ||
        !(vae->terms = own(vae, rows, d, "per-pixel losses", err)) || wire_layers(vae, rows, err))
        return -1;
    // int and float are both 4 bytes on every OpenCL device, so own() sizes the labels too.
    if (cfg->classes && !(vae->labels = own(vae, rows, 1, "class labels", err)))
        return -1;
    // The bias gradients' partial column sums: layer_bias_parts keeps parts * n within
    // bias_work + n.
    struct layer_ctx *ctx = &vae->ctx;
    ctx->rt = rt;
    ctx->cpu = rt->device_type & CL_DEVICE_TYPE_CPU;
    ctx->bias_work = rt->reduce_work;
    ctx->labels = vae->labels;
    size_t widest = 0;
    for (int i = 0; i < vae->n_layers; i++)
        widest = (size_t)vae->layer[i].out > widest ? (size_t)vae->layer[i].out : widest;
    if (!(ctx->bias_partial =
              own(vae, ctx->bias_work + widest, 1, "bias gradient partial sums", err)))
        return -1;
    size_t splitk = splitk_floats(vae, rt, max_rows);
    if (splitk && !(ctx->splitk = own(vae, splitk, 1, "split-K weight gradient parts", err)))
        return -1;
    // The products' scratch (CLBlast's, or the parts of clvae's split products), reserved for
    // the products of a full batch and the weight gradients; clrt_gemm grows it if a product of
    // another row count needs more.
    size_t temp = 0;
    for (int i = 0; i < vae->n_layers; i++) {
        const struct layer *l = &vae->layer[i];
        size_t in = (size_t)l->in, out = (size_t)l->out, t;
        t = clrt_gemm_temp_size(rt, false, false, rows, out, in, in, out, out);
        temp = t > temp ? t : temp;
        t = clrt_gemm_temp_size(rt, true, false, l->wgrad_m, l->wgrad_n, rows * l->wgrad_k,
                                l->wgrad_m, l->wgrad_n, l->wgrad_n);
        temp = t > temp ? t : temp;
        t = clrt_gemm_temp_size(rt, false, false, rows, in, out, out, in, in);
        temp = t > temp ? t : temp;
    }
    if (clrt_reserve_gemm_temp(rt, temp, err) ||
        clrt_reserve_zeros(rt, conv_zero_floats(vae, rt), err))
        return -1;
    vae->activation_bytes = rt->allocated - before;

    plan_relu_folds(vae);
    for (int i = 0; i < vae->n_layers; i++)
        vae->layer[i].ops->create(ctx, &vae->layer[i]);
    sampler_create(&vae->sampler, rt, cfg->latent);
    likelihood_create(&vae->likelihood, rt, cfg->likelihood, vae->cfg.in_dim, vae->cfg.channels);
    vae->k_gather = clrt_kernel(rt, "gather_images");
    if (cfg->classes)
        vae->k_gather_labels = clrt_kernel(rt, "condition_gather");
    return 0;
}

void vae_release(struct vae *vae)
{
    for (int i = 0; i < vae->n_layers; i++)
        if (vae->layer[i].ops)
            vae->layer[i].ops->release(&vae->layer[i]);
    sampler_release(&vae->sampler);
    likelihood_release(&vae->likelihood);
    clrt_release_kernel(vae->k_gather);
    vae->k_gather = NULL;
    clrt_release_kernel(vae->k_gather_labels);
    vae->k_gather_labels = NULL;
    for (int i = 0; i < vae->n_owned; i++)
        clrt_release_buffer(vae->owned[i]);
    vae->n_owned = 0;
}

void vae_init_params_host(const struct vae *vae, uint64_t seed, float *params)
{
    for (int i = 0; i < vae->n_layers; i++)
        vae->layer[i].ops->init(&vae->layer[i], seed, params);
}

// The model's buffers the sampler reads and writes.
static struct sampler_buffers sampler_buffers_of(const struct vae *vae)
{
    return (struct sampler_buffers){
        .ml = vae->ml, .dml = vae->dml, .z = vae->z, .dz = vae->dz, .eps = vae->eps};
}

// The decoder's layers from layer first on, forward.
static void decode_from(struct vae *vae, int first, int rows)
{
    for (int i = first; i < vae->n_layers; i++)
        vae->layer[i].ops->forward(&vae->ctx, &vae->layer[i], rows);
}

// The batch vae_gather left (if any): into x by gather_images, a launch a part of the data set,
// or, when the data set is one buffer and the first layer's kind can, in its forward product
// (and with it the Gaussian head's launch, with fold, where the kinds can). Returns the first
// layer still to run forward.
static int gather_batch(struct vae *vae, int rows, struct layer_y_fold *fold)
{
    const struct clrt_parts *data = vae->gather.data;
    if (!data)
        return 0;
    vae->gather.data = NULL;
    const struct layer *l = &vae->layer[0];
    struct clrt_gather g = {
        .data = data->mem[0], .index = vae->gather.index, .x = vae->x, .start = vae->gather.start};
    vae->ctx.y_fold = fold; // (its head: the first layer's kind may run the head's launch here)
    bool done = data->n == 1 && rows == vae->gather.rows && l->ops->forward_gathered &&
                l->ops->forward_gathered(&vae->ctx, l, rows, &g);
    vae->ctx.y_fold = NULL;
    if (done)
        return fold && fold->first_applied ? 2 : 1;
    cl_kernel k = vae->k_gather;
    int dim = vae->cfg.in_dim, n = vae->gather.rows;
    KARG(k, 3, vae->gather.index);
    KARG(k, 4, vae->gather.start);
    KARG(k, 5, n);
    KARG(k, 6, dim);
    KARG(k, 7, vae->x);
    for (int i = 0; i < data->n; i++) {
        int first = (int)(data->start[i] / (size_t)dim);
        int count = (int)((data->start[i + 1] - data->start[i]) / (size_t)dim);
        KARG(k, 0, data->mem[i]);
        KARG(k, 1, first);
        KARG(k, 2, count);
        size_t global[2] = {((size_t)dim + 15) / 16, (size_t)n}; // 16 bytes a work-item
        clrt_launch(vae->rt, k, 2, global, NULL);
    }
    return 0;
}

void vae_forward(struct vae *vae, const struct vae_pass *pass)
{
    // The sample taken in the Gaussian head's launch where its kind can, and the decoder's layers
    // (up to CLRT_CHAIN) there too as far as their kinds can, then the likelihood where they all
    // did.
    struct likelihood_buffers lb = {
        .out = vae->logits, .x = vae->x, .dout = vae->dlogits, .terms = vae->terms};
    struct layer_y_fold fold = {.sample = {.z = vae->z,
                                           .eps = vae->eps,
                                           .kl = pass->kl,
                                           .kl_offset = pass->offset,
                                           .row0 = pass->noise_row0,
                                           .seed = pass->seed,
                                           .step = pass->step,
                                           .stream = pass->stream,
                                           .noise_scale = pass->noise_scale}};
    // The head right after the first layer: the first layer's kind may run the head's launch.
    fold.head = vae->n_encoder == 2 ? &vae->layer[1] : NULL;
    int decoder = vae->n_layers - vae->n_encoder;
    for (int i = 0; i < CLRT_CHAIN && i < decoder; i++)
        fold.next[i] = &vae->layer[vae->n_encoder + i];
    if (decoder <= CLRT_CHAIN)
        fold.lik =
            likelihood_rows_fold(&vae->likelihood, &lb, pass->rec, pass->offset, pass->grad_scale);
    for (int i = gather_batch(vae, pass->rows, &fold); i < vae->n_encoder; i++) {
        vae->ctx.y_fold = i == vae->n_encoder - 1 ? &fold : NULL;
        vae->layer[i].ops->forward(&vae->ctx, &vae->layer[i], pass->rows);
    }
    vae->ctx.y_fold = NULL;
    struct sampler_buffers sb = sampler_buffers_of(vae);
    struct sampler_noise noise = {.seed = pass->seed,
                                  .step = pass->step,
                                  .stream = pass->stream,
                                  .scale = pass->noise_scale,
                                  .row0 = pass->noise_row0};
    if (!fold.applied)
        sampler_forward(&vae->sampler, &sb, pass->rows, &noise, pass->kl, pass->offset);
    decode_from(vae, vae->n_encoder + fold.next_applied, pass->rows);
    if (!fold.lik_applied)
        likelihood_forward(&vae->likelihood, &lb, pass->rows, pass->rec, pass->offset,
                           pass->grad_scale);
}

void vae_backward(struct vae *vae, const struct vae_pass *pass, float beta)
{
    // The sampler's backward folded into the store of dz by the decoder's first layer, where its
    // kind can (not with --free-bits: its means are over all the rows).
    int z = vae->cfg.latent;
    struct layer_dx_fold fold = {.ep = {.kind = CLRT_EPILOGUE_SAMPLER,
                                        .bias = {vae->ml, 0, (size_t)2 * z},
                                        .eps = vae->eps,
                                        .beta_scale = beta * pass->grad_scale,
                                        .noise_scale = pass->noise_scale},
                                 .c = {vae->dml, 0, (size_t)2 * z}};
    for (int i = vae->n_layers - 1; i >= vae->n_encoder; i--) {
        vae->ctx.dx_fold = i == vae->n_encoder && pass->free_bits <= 0 ? &fold : NULL;
        vae->layer[i].ops->backward(&vae->ctx, &vae->layer[i], pass->rows, pass->accumulate);
    }
    vae->ctx.dx_fold = NULL;
    struct sampler_buffers sb = sampler_buffers_of(vae);
    if (!fold.applied)
        sampler_backward(&vae->sampler, &sb, pass->rows, pass->noise_scale, beta * pass->grad_scale,
                         pass->free_bits);
    for (int i = vae->n_encoder - 1; i >= 0; i--) {
        vae->ctx.step_fold = i == 0 ? pass->step_fold : NULL; // the pass's last launch
        vae->layer[i].ops->backward(&vae->ctx, &vae->layer[i], pass->rows, pass->accumulate);
    }
    vae->ctx.step_fold = NULL;
}

void vae_gather_now(struct vae *vae)
{
    gather_batch(vae, -1, NULL); // no pass of -1 rows: never folded into the first layer
}

void vae_gather_labels(struct vae *vae, cl_mem labels, cl_mem index, int start, int rows)
{
    if (!vae->cfg.classes || rows < 1)
        return;
    cl_kernel k = vae->k_gather_labels;
    cl_uint a = 0;
    KARG(k, a++, labels);
    KARG(k, a++, index);
    KARG(k, a++, start);
    KARG(k, a++, vae->labels);
    size_t global = (size_t)rows;
    clrt_launch(vae->rt, k, 1, &global, NULL);
}

void vae_set_labels(struct vae *vae, const int *labels, int rows)
{
    if (vae->cfg.classes && rows > 0)
        clrt_write(vae->rt, vae->labels, 0, (size_t)rows * sizeof(int), labels, true);
}

void vae_gather(struct vae *vae, const struct clrt_parts *data, cl_mem index, int start, int rows)
{
    vae->gather.data = data;
    vae->gather.index = index;
    vae->gather.start = start;
    vae->gather.rows = rows;
}

// The input is shown as a width when every encoder item gives a flat vector (784-128-10), else
// as the image (1x28x28-conv32(4x4/2)-...).
void vae_describe(const struct vae_config *cfg, char *buf, size_t len)
{
    bool flat = true;
    for (int i = 0; i < cfg->n_encoder; i++)
        flat = flat && cfg->encoder[i].kind->gives == LAYER_GIVES_FLAT;
    int used = flat || cfg->height == 0
                   ? snprintf(buf, len, "%d", cfg->in_dim)
                   : snprintf(buf, len, "%dx%dx%d", cfg->channels, cfg->height, cfg->width);
    for (int i = 0; i < cfg->n_encoder && used >= 0 && (size_t)used < len; i++) {
        const struct layer_spec *s = &cfg->encoder[i];
        if (s->kind->describe)
            used += s->kind->describe(s, buf + used, len - (size_t)used);
    }
    if (used >= 0 && (size_t)used < len)
        snprintf(buf + used, len - (size_t)used, "-%d", cfg->latent);
}

void vae_decode(struct vae *vae, int rows)
{
    decode_from(vae, vae->n_encoder, rows);
}

void vae_sample_prior(struct vae *vae, int rows, uint64_t seed, uint64_t step, uint32_t stream)
{
    sampler_prior(&vae->sampler, vae->z, rows, seed, step, stream);
}
