// ONNX export (onnx_export.h). The checkpoint's architecture is laid out as the model lays it out
// (vae_layout: the layer list with shapes and parameter offsets, no device), and each layer of the
// part becomes the standard operators of its kind (a row of exporters[]), its weights the
// checkpoint's tensors in PyTorch's shapes (the kind's tensors()), which are ONNX's shapes too:
// Gemm's B (out, in) with transB, Conv's (OC, C, K, K), ConvTranspose's (IC, OC, K, K).
// clvae keeps an image's activations channel-last, (H, W, C) flattened; the graph keeps images
// NCHW, as ONNX's Conv takes them, and goes through (N, H, W, C) wherever clvae reads them flat (a
// dense layer after a conv, a reshape between two convs, the likelihood's outputs).
// The kinds' operators are a table here rather than a function of each kind's ops (layer.h): the
// export is the only reader of ONNX, and its test (tests/test_export.py) runs every row against
// the kind's own forward pass, so a kind that changes shows up there.
#include "onnx_export.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "atomic_file.h"
#include "onnx.pb-c.h"
#include "vae.h"

#ifndef CLVAE_VERSION
#define CLVAE_VERSION "unknown"
#endif

// The IR version of opset 13 (ONNX 1.8), which every runtime that runs opset 13 reads.
#define IR_VERSION 7
// The discretised logistic's mean (likelihood.c's logistic_mean): the log-scale clamped to
// [-7, 15], the sum of sigmoid((mu - e_k) / s) over the edges e_k = (k - 1/2) / 255 of the 255
// levels above the lowest, divided by 255.
#define LOGISTIC_MIN_LOG_SCALE (-7.0f)
#define LOGISTIC_MAX_LOG_SCALE 15.0f
#define LEVELS 255
// Attributes a node takes at most (Conv: kernel_shape, strides, pads; Resize: three).
#define MAX_ATTRIBUTES 4
// A part's weights at most: protobuf's 2 GiB a message, less room for the graph.
#define MAX_WEIGHT_BYTES (((size_t)1 << 31) - ((size_t)1 << 24))

// A graph being built: its nodes and initializers, and every allocation its messages point to,
// freed together by graph_free.
struct graph {
    Onnx__NodeProto **node;
    size_t n_node, cap_node;
    Onnx__TensorProto **init;
    size_t n_init, cap_init;
    void **owned;
    size_t n_owned, cap_owned;
    int n_values; // values named so far: the suffix that keeps names unique
};

// array (n used of cap) with room for one more.
static void *grow(void *array, size_t n, size_t *cap, size_t size)
{
    if (n < *cap)
        return array;
    *cap = *cap ? 2 * *cap : 64;
    void *bigger = xcalloc(*cap, size);
    if (n)
        memcpy(bigger, array, n * size);
    free(array);
    return bigger;
}

// size bytes, zeroed, freed with the graph.
static void *gnew(struct graph *g, size_t size)
{
    void *p = xcalloc(1, size ? size : 1);
    g->owned = grow(g->owned, g->n_owned, &g->cap_owned, sizeof *g->owned);
    g->owned[g->n_owned++] = p;
    return p;
}

static char *gprintf(struct graph *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// A printf-formatted string freed with the graph.
static char *gprintf(struct graph *g, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *s = gnew(g, (size_t)len + 1);
    va_start(ap, fmt);
    vsnprintf(s, (size_t)len + 1, fmt, ap);
    va_end(ap);
    return s;
}

static void graph_free(struct graph *g)
{
    for (size_t i = 0; i < g->n_owned; i++)
        free(g->owned[i]);
    free(g->owned);
    free(g->node);
    free(g->init);
    memset(g, 0, sizeof *g);
}

// A node of type on inputs in[0 .. n_in) with one output: out, or "<hint>_<n>" when out is NULL.
static Onnx__NodeProto *node(struct graph *g, const char *type, size_t n_in, const char *const *in,
                             const char *out, const char *hint)
{
    Onnx__NodeProto *n = gnew(g, sizeof *n);
    onnx__node_proto__init(n);
    n->op_type = gprintf(g, "%s", type);
    n->n_input = n_in;
    n->input = gnew(g, n_in * sizeof *n->input);
    for (size_t i = 0; i < n_in; i++)
        n->input[i] = gprintf(g, "%s", in[i]);
    n->n_output = 1;
    n->output = gnew(g, sizeof *n->output);
    n->output[0] = out ? gprintf(g, "%s", out) : gprintf(g, "%s_%d", hint, g->n_values++);
    n->name = n->output[0];
    n->attribute = gnew(g, MAX_ATTRIBUTES * sizeof *n->attribute);
    g->node = grow(g->node, g->n_node, &g->cap_node, sizeof *g->node);
    g->node[g->n_node++] = n;
    return n;
}

// A node of one or two inputs; its output's name.
static const char *op1(struct graph *g, const char *type, const char *x, const char *out,
                       const char *hint)
{
    return node(g, type, 1, &x, out, hint)->output[0];
}

static const char *op2(struct graph *g, const char *type, const char *a, const char *b,
                       const char *out, const char *hint)
{
    return node(g, type, 2, (const char *[]){a, b}, out, hint)->output[0];
}

// Attribute name of n: one integer, or count of them.
static Onnx__AttributeProto *attribute(struct graph *g, Onnx__NodeProto *n, const char *name)
{
    Onnx__AttributeProto *a = gnew(g, sizeof *a);
    onnx__attribute_proto__init(a);
    a->name = gprintf(g, "%s", name);
    a->has_type = 1;
    n->attribute[n->n_attribute++] = a;
    return a;
}

static void attr_int(struct graph *g, Onnx__NodeProto *n, const char *name, int64_t v)
{
    Onnx__AttributeProto *a = attribute(g, n, name);
    a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT;
    a->has_i = 1;
    a->i = v;
}

static void attr_ints(struct graph *g, Onnx__NodeProto *n, const char *name, const int64_t *v,
                      size_t count)
{
    Onnx__AttributeProto *a = attribute(g, n, name);
    a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS;
    a->n_ints = count;
    a->ints = gnew(g, count * sizeof *a->ints);
    memcpy(a->ints, v, count * sizeof *v);
}

static void attr_string(struct graph *g, Onnx__NodeProto *n, const char *name, const char *v)
{
    Onnx__AttributeProto *a = attribute(g, n, name);
    a->type = ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING;
    a->has_s = 1;
    a->s.data = (uint8_t *)gprintf(g, "%s", v);
    a->s.len = strlen(v);
}

// An initializer of ndim dims: name, or "const_<n>" when NULL; data (owned by the graph) is
// float32 or int64 as type says. Its name.
static const char *initializer(struct graph *g, const char *name, int type, int ndim,
                               const int64_t *dims, void *data, size_t count)
{
    Onnx__TensorProto *t = gnew(g, sizeof *t);
    onnx__tensor_proto__init(t);
    t->name = name ? gprintf(g, "%s", name) : gprintf(g, "const_%d", g->n_values++);
    t->n_dims = (size_t)ndim;
    t->dims = gnew(g, (size_t)ndim * sizeof *t->dims);
    for (int d = 0; d < ndim; d++)
        t->dims[d] = dims[d];
    t->has_data_type = 1;
    t->data_type = type;
    if (type == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT)
        t->n_float_data = count, t->float_data = data;
    else
        t->n_int64_data = count, t->int64_data = data;
    g->init = grow(g->init, g->n_init, &g->cap_init, sizeof *g->init);
    g->init[g->n_init++] = t;
    return t->name;
}

// int64 constants: a vector of count (a shape, axes), or a scalar (count 0: one value).
static const char *ints(struct graph *g, const int64_t *v, int count)
{
    size_t n = count ? (size_t)count : 1;
    int64_t *data = gnew(g, n * sizeof *data), dims[1] = {count};
    memcpy(data, v, n * sizeof *v);
    return initializer(g, NULL, ONNX__TENSOR_PROTO__DATA_TYPE__INT64, count ? 1 : 0, dims, data, n);
}

static const char *scalar(struct graph *g, float v)
{
    float *data = gnew(g, sizeof *data);
    *data = v;
    return initializer(g, NULL, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, 0, NULL, data, 1);
}

// The checkpoint tensor t of params (clvae's flat layout), gathered into its row-major shape, as an
// initializer named as the checkpoint names it.
static const char *weights(struct graph *g, const float *params, const struct layer_tensor *t)
{
    size_t count = 1, idx[4] = {0};
    int64_t dims[4];
    for (int d = 0; d < t->ndim; d++)
        count *= (size_t)t->shape[d], dims[d] = t->shape[d];
    float *data = gnew(g, count * sizeof *data);
    for (size_t i = 0; i < count; i++) {
        size_t at = t->base;
        for (int d = 0; d < t->ndim; d++)
            at += idx[d] * t->stride[d];
        data[i] = params[at];
        for (int d = t->ndim - 1; d >= 0 && ++idx[d] == (size_t)t->shape[d]; d--)
            idx[d] = 0;
    }
    return initializer(g, t->name, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, t->ndim, dims, data,
                       count);
}

static const char *reshape(struct graph *g, const char *x, const int64_t *shape, int ndim,
                           const char *out)
{
    return op2(g, "Reshape", x, ints(g, shape, ndim), out, "reshape");
}

static const char *transpose(struct graph *g, const char *x, const int64_t *perm)
{
    Onnx__NodeProto *n = node(g, "Transpose", 1, &x, NULL, "transpose");
    attr_ints(g, n, "perm", perm, 4);
    return n->output[0];
}

// A value of the graph, per image: an image (N, C, H, W), or a vector (N, values) in clvae's order,
// an image's (h, w, c) flattened.
struct value {
    const char *name;
    bool image;
    struct layer_shape shape; // an image's
};

// Whether an image's NCHW and NHWC orders are the same.
static bool one_order(struct layer_shape s)
{
    return s.c == 1 || s.h * s.w == 1;
}

// (N, H, W, C) of v read as an image of shape s (v's own when v is an image).
static const char *nhwc(struct graph *g, struct value v, struct layer_shape s)
{
    if (v.image && !one_order(s))
        return transpose(g, v.name, (const int64_t[]){0, 2, 3, 1});
    return reshape(g, v.name, (const int64_t[]){0, s.h, s.w, s.c}, 4, NULL);
}

// v as a vector in clvae's order.
static struct value flat(struct graph *g, struct value v)
{
    if (!v.image)
        return v;
    const char *x = one_order(v.shape) ? v.name : nhwc(g, v, v.shape);
    int64_t n = (int64_t)v.shape.c * v.shape.h * v.shape.w;
    return (struct value){.name = reshape(g, x, (const int64_t[]){0, n}, 2, NULL)};
}

// v as an image of shape s (clvae's flat values read as (h, w, c)).
static struct value image(struct graph *g, struct value v, struct layer_shape s)
{
    if (v.image && v.shape.c == s.c && v.shape.h == s.h && v.shape.w == s.w)
        return v;
    v = flat(g, v);
    const char *x;
    if (one_order(s))
        x = reshape(g, v.name, (const int64_t[]){0, s.c, s.h, s.w}, 4, NULL);
    else
        x = transpose(g, reshape(g, v.name, (const int64_t[]){0, s.h, s.w, s.c}, 4, NULL),
                      (const int64_t[]){0, 3, 1, 2});
    return (struct value){.name = x, .image = true, .shape = s};
}

// y = relu?(x W^T + b), (weight, bias) = t[0], t[1] in torch.nn.Linear's shapes; named out (NULL:
// a fresh name).
static const char *gemm(struct graph *g, const char *x, const float *params,
                        const struct layer_tensor *t, bool relu, const char *out, const char *hint)
{
    Onnx__NodeProto *n = node(
        g, "Gemm", 3, (const char *[]){x, weights(g, params, &t[0]), weights(g, params, &t[1])},
        relu ? NULL : out, hint);
    attr_int(g, n, "transB", 1);
    return relu ? op1(g, "Relu", n->output[0], out, "relu") : n->output[0];
}

static struct value dense(struct graph *g, const struct layer *l, const float *params,
                          struct value v)
{
    struct layer_tensor t[LAYER_MAX_TENSORS];
    l->ops->tensors(l, t);
    return (struct value){.name = gemm(g, flat(g, v).name, params, t, l->relu, NULL, l->name)};
}

// A convolution or its transpose (type), as layer_conv.c's items give them: channels, then
// kernel, stride, padding in spec.arg.
static struct value convolution(struct graph *g, const struct layer *l, const float *params,
                                struct value v, const char *type)
{
    enum { KERNEL, STRIDE, PAD };
    struct layer_tensor t[LAYER_MAX_TENSORS];
    l->ops->tensors(l, t);
    v = image(g, v, l->in_shape);
    Onnx__NodeProto *n = node(
        g, type, 3, (const char *[]){v.name, weights(g, params, &t[0]), weights(g, params, &t[1])},
        NULL, l->name);
    int64_t k = l->spec.arg[KERNEL], s = l->spec.arg[STRIDE], p = l->spec.arg[PAD];
    attr_ints(g, n, "kernel_shape", (const int64_t[]){k, k}, 2);
    attr_ints(g, n, "strides", (const int64_t[]){s, s}, 2);
    attr_ints(g, n, "pads", (const int64_t[]){p, p, p, p}, 4);
    const char *y = l->relu ? op1(g, "Relu", n->output[0], NULL, "relu") : n->output[0];
    return (struct value){.name = y, .image = true, .shape = l->out_shape};
}

static struct value conv(struct graph *g, const struct layer *l, const float *params,
                         struct value v)
{
    return convolution(g, l, params, v, "Conv");
}

static struct value deconv(struct graph *g, const struct layer *l, const float *params,
                           struct value v)
{
    return convolution(g, l, params, v, "ConvTranspose");
}

// Nearest-neighbour upsampling by a whole factor, as torch.nn.Upsample(mode='nearest'): output
// pixel (y, x) is input pixel (floor(y / F), floor(x / F)), the factor the shapes' ratio.
static struct value up(struct graph *g, const struct layer *l, const float *params, struct value v)
{
    (void)params;
    v = image(g, v, l->in_shape);
    float f = (float)l->out_shape.h / (float)l->in_shape.h;
    float *scales = gnew(g, 4 * sizeof *scales);
    scales[0] = scales[1] = 1.0f, scales[2] = scales[3] = f;
    const char *s = initializer(g, NULL, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, 1,
                                (const int64_t[]){4}, scales, 4);
    Onnx__NodeProto *n = node(g, "Resize", 3, (const char *[]){v.name, "", s}, NULL, l->name);
    attr_string(g, n, "mode", "nearest");
    attr_string(g, n, "coordinate_transformation_mode", "asymmetric");
    attr_string(g, n, "nearest_mode", "floor");
    return (struct value){.name = n->output[0], .image = true, .shape = l->out_shape};
}

// relu(GroupNorm(x) * scale + shift) on x, an NCHW image of shape s: each image's group of
// C / groups consecutive channels normalised by its mean and biased variance over every pixel
// (eps 1e-5), as layer_res.c's gn1 and gn2 (cl/res.cl); scale and shift (C) the tensors t[0],
// t[1], taken as (C, 1, 1) to broadcast over the pixels.
static const char *group_norm_relu(struct graph *g, const char *x, struct layer_shape s, int groups,
                                   const float *params, const struct layer_tensor *t,
                                   const char *hint)
{
    const char *r = reshape(g, x, (const int64_t[]){0, groups, -1}, 3, NULL);
    Onnx__NodeProto *mean = node(g, "ReduceMean", 1, &r, NULL, hint);
    attr_ints(g, mean, "axes", (const int64_t[]){2}, 1);
    const char *d = op2(g, "Sub", r, mean->output[0], NULL, hint);
    const char *sq = op2(g, "Mul", d, d, NULL, hint);
    Onnx__NodeProto *var = node(g, "ReduceMean", 1, &sq, NULL, hint);
    attr_ints(g, var, "axes", (const int64_t[]){2}, 1);
    const char *sd =
        op1(g, "Sqrt", op2(g, "Add", var->output[0], scalar(g, 1e-5f), NULL, hint), NULL, hint);
    const char *n =
        reshape(g, op2(g, "Div", d, sd, NULL, hint), (const int64_t[]){0, s.c, s.h, s.w}, 4, NULL);
    struct layer_tensor scale = t[0], shift = t[1];
    scale.ndim = shift.ndim = 3;
    scale.shape[1] = scale.shape[2] = shift.shape[1] = shift.shape[2] = 1;
    const char *y = op2(g, "Add", op2(g, "Mul", n, weights(g, params, &scale), NULL, hint),
                        weights(g, params, &shift), NULL, hint);
    return op1(g, "Relu", y, NULL, hint);
}

// A 3x3 convolution of stride 1 and padding 1, weight and bias t[0], t[1].
static const char *conv3x3(struct graph *g, const char *x, const float *params,
                           const struct layer_tensor *t, const char *hint)
{
    Onnx__NodeProto *n =
        node(g, "Conv", 3,
             (const char *[]){x, weights(g, params, &t[0]), weights(g, params, &t[1])}, NULL, hint);
    attr_ints(g, n, "kernel_shape", (const int64_t[]){3, 3}, 2);
    attr_ints(g, n, "pads", (const int64_t[]){1, 1, 1, 1}, 4);
    return n->output[0];
}

// The pre-activation residual block of layer_res.c, its item "res:C[:G]" (G in spec.arg[0]):
// y = x + conv2(relu(gn2(conv1(relu(gn1(x)))))), the tensors gn1's scale and shift, conv1's
// weight and bias, then gn2's and conv2's.
static struct value res(struct graph *g, const struct layer *l, const float *params, struct value v)
{
    struct layer_tensor t[LAYER_MAX_TENSORS];
    l->ops->tensors(l, t);
    v = image(g, v, l->in_shape);
    int groups = l->spec.arg[0];
    const char *r1 = group_norm_relu(g, v.name, l->in_shape, groups, params, &t[0], l->name);
    const char *h = conv3x3(g, r1, params, &t[2], l->name);
    const char *r2 = group_norm_relu(g, h, l->in_shape, groups, params, &t[4], l->name);
    const char *y = op2(g, "Add", v.name, conv3x3(g, r2, params, &t[6], l->name), NULL, l->name);
    return (struct value){.name = y, .image = true, .shape = l->out_shape};
}

// The layer kinds the export writes, by their item's name: y from x.
static const struct {
    const char *kind;
    struct value (*emit)(struct graph *g, const struct layer *l, const float *params,
                         struct value x);
} exporters[] = {
    {"dense", dense}, {"conv", conv}, {"deconv", deconv}, {"up", up}, {"res", res},
};

#define N_EXPORTERS (sizeof exporters / sizeof exporters[0])

// Layers [first, last) of vae, each of a kind the export writes; -1 naming model and the first
// layer that is not (CLVAE_EXIT_USAGE).
static int check_kinds(const struct vae *vae, int first, int last, const char *model,
                       struct clvae_error *err)
{
    for (int i = first; i < last; i++) {
        const struct layer *l = &vae->layer[i];
        bool known = false;
        for (size_t k = 0; k < N_EXPORTERS; k++)
            known = known || strcmp(exporters[k].kind, l->ops->kind) == 0;
        if (!known)
            return clvae_fail(err, CLVAE_EXIT_USAGE,
                              "%s: layer %s is a %s layer, which clvae export has no ONNX "
                              "operators for (it writes dense, conv, deconv, up and res layers)",
                              model, l->name, l->ops->kind);
        if (l->classes)
            return clvae_fail(err, CLVAE_EXIT_USAGE,
                              "%s: layer %s takes the class of each image (--conditional), which "
                              "clvae export does not write",
                              model, l->name);
    }
    return 0;
}

static struct value emit_layer(struct graph *g, const struct layer *l, const float *params,
                               struct value x)
{
    for (size_t k = 0; k < N_EXPORTERS; k++)
        if (strcmp(exporters[k].kind, l->ops->kind) == 0)
            return exporters[k].emit(g, l, params, x);
    return x; // not reached: check_kinds refused it
}

// Each pixel's mean under the likelihood from out, the output layer's values: (N, H, W, C) of the
// model's image img, or (N, values) for a model of flat vectors; named name.
static void pixel_means(struct graph *g, const struct vae_config *cfg, struct layer_shape img,
                        struct value out, const char *name)
{
    bool flat_model = cfg->height == 0;
    if (cfg->likelihood == LIKELIHOOD_BERNOULLI) { // sigmoid of the logits
        const char *x = flat_model ? flat(g, out).name : nhwc(g, out, img);
        op1(g, "Sigmoid", x, name, "sigmoid");
        return;
    }
    // The logistic: pixel p's C means, then its C log-scales; (N, H, W, 2, C), split at axis 3.
    struct layer_shape both = img;
    both.c *= 2;
    const char *x =
        reshape(g, nhwc(g, out, both), (const int64_t[]){0, img.h, img.w, 2, img.c}, 5, NULL);
    Onnx__NodeProto *mu =
        node(g, "Gather", 2, (const char *[]){x, ints(g, (int64_t[]){0}, 0)}, NULL, "mu");
    attr_int(g, mu, "axis", 3);
    Onnx__NodeProto *u =
        node(g, "Gather", 2, (const char *[]){x, ints(g, (int64_t[]){1}, 0)}, NULL, "log_scale");
    attr_int(g, u, "axis", 3);
    // 1 / s = exp(-clamp(u)), and the levels' edges along a new last axis.
    const char *clamped = node(g, "Clip", 3,
                               (const char *[]){u->output[0], scalar(g, LOGISTIC_MIN_LOG_SCALE),
                                                scalar(g, LOGISTIC_MAX_LOG_SCALE)},
                               NULL, "clip")
                              ->output[0];
    const char *inv_s = op1(g, "Exp", op1(g, "Neg", clamped, NULL, "neg"), NULL, "inv_scale");
    const char *last = ints(g, (int64_t[]){-1}, 1);
    float *edge = gnew(g, LEVELS * sizeof *edge);
    for (int k = 1; k <= LEVELS; k++)
        edge[k - 1] = (float)((k - 0.5) / 255.0);
    const char *edges = initializer(g, "logistic_edges", ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, 1,
                                    (const int64_t[]){LEVELS}, edge, LEVELS);
    const char *d =
        op2(g, "Sub", op2(g, "Unsqueeze", mu->output[0], last, NULL, "mu"), edges, NULL, "sub");
    const char *a =
        op2(g, "Mul", d, op2(g, "Unsqueeze", inv_s, last, NULL, "inv_scale"), NULL, "mul");
    Onnx__NodeProto *sum =
        node(g, "ReduceSum", 2, (const char *[]){op1(g, "Sigmoid", a, NULL, "sigmoid"), last}, NULL,
             "sum");
    attr_int(g, sum, "keepdims", 0);
    const char *mean =
        op2(g, "Mul", sum->output[0], scalar(g, 1.0f / LEVELS), flat_model ? NULL : name, "mean");
    if (flat_model)
        reshape(g, mean, (const int64_t[]){0, cfg->in_dim}, 2, name);
}

// A graph input or output: float32 of dims, dims[0] the batch, 'N'.
static Onnx__ValueInfoProto *value_info(struct graph *g, const char *name, const int64_t *dims,
                                        int ndim, const char *doc)
{
    Onnx__ValueInfoProto *v = gnew(g, sizeof *v);
    onnx__value_info_proto__init(v);
    v->name = gprintf(g, "%s", name);
    v->doc_string = gprintf(g, "%s", doc);
    Onnx__TypeProto *type = gnew(g, sizeof *type);
    onnx__type_proto__init(type);
    Onnx__TypeProto__Tensor *tensor = gnew(g, sizeof *tensor);
    onnx__type_proto__tensor__init(tensor);
    tensor->has_elem_type = 1;
    tensor->elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    Onnx__TensorShapeProto *shape = gnew(g, sizeof *shape);
    onnx__tensor_shape_proto__init(shape);
    shape->n_dim = (size_t)ndim;
    shape->dim = gnew(g, (size_t)ndim * sizeof *shape->dim);
    for (int i = 0; i < ndim; i++) {
        Onnx__TensorShapeProto__Dimension *d = gnew(g, sizeof *d);
        onnx__tensor_shape_proto__dimension__init(d);
        if (i == 0) {
            d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            d->dim_param = gprintf(g, "N");
        } else {
            d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            d->dim_value = dims[i];
        }
        shape->dim[i] = d;
    }
    tensor->shape = shape;
    type->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    type->tensor_type = tensor;
    v->type = type;
    return v;
}

// The graph's inputs and outputs, as onnx_export.h gives them.
struct ends {
    Onnx__ValueInfoProto *in[1], *out[2];
    size_t n_out;
};

// The model's image as a layer shape: (C, H, W), or (in_dim, 1, 1) for flat vectors.
static struct layer_shape image_of(const struct vae_config *cfg)
{
    if (cfg->height == 0)
        return (struct layer_shape){.c = cfg->in_dim, .h = 1, .w = 1};
    return (struct layer_shape){
        .c = cfg->channels, .h = cfg->height, .w = cfg->width, .spatial = 1};
}

static void build_decoder(struct graph *g, const struct vae *vae, const float *params,
                          struct ends *e)
{
    const struct vae_config *cfg = &vae->cfg;
    struct layer_shape img = image_of(cfg);
    struct value v = {.name = "z"};
    for (int i = vae->n_encoder; i < vae->n_layers; i++)
        v = emit_layer(g, &vae->layer[i], params, v);
    pixel_means(g, cfg, img, v, "x_mean");
    char doc[160];
    snprintf(doc, sizeof doc, "each pixel's mean under the %s likelihood, in [0, 1]%s",
             likelihood_name(cfg->likelihood),
             cfg->height ? ", channel-last (N, H, W, C) as clvae generate --raw writes it" : "");
    e->in[0] = value_info(g, "z", (const int64_t[]){0, cfg->latent}, 2, "latent vectors");
    e->out[0] = cfg->height
                    ? value_info(g, "x_mean", (const int64_t[]){0, img.h, img.w, img.c}, 4, doc)
                    : value_info(g, "x_mean", (const int64_t[]){0, cfg->in_dim}, 2, doc);
    e->n_out = 1;
}

static void build_encoder(struct graph *g, const struct vae *vae, const float *params,
                          struct ends *e)
{
    const struct vae_config *cfg = &vae->cfg;
    struct layer_shape img = image_of(cfg);
    struct value v = {.name = "x", .image = cfg->height > 0, .shape = img};
    for (int i = 0; i < vae->n_encoder - 1; i++)
        v = emit_layer(g, &vae->layer[i], params, v);
    // The Gaussian head (a dense layer): mean's weight and bias, then log-variance's.
    const struct layer *head = &vae->layer[vae->n_encoder - 1];
    struct layer_tensor t[LAYER_MAX_TENSORS];
    head->ops->tensors(head, t);
    const char *x = flat(g, v).name;
    gemm(g, x, params, t, false, "z_mean", NULL);
    gemm(g, x, params, t + 2, false, "z_logvar", NULL);
    const char *doc = cfg->height ? "images (N, C, H, W), pixels in [0, 1]"
                                  : "input vectors (N, values), in [0, 1]";
    e->in[0] = cfg->height ? value_info(g, "x", (const int64_t[]){0, img.c, img.h, img.w}, 4, doc)
                           : value_info(g, "x", (const int64_t[]){0, cfg->in_dim}, 2, doc);
    e->out[0] =
        value_info(g, "z_mean", (const int64_t[]){0, cfg->latent}, 2, "the posterior's mean");
    e->out[1] = value_info(g, "z_logvar", (const int64_t[]){0, cfg->latent}, 2,
                           "the posterior's log-variance");
    e->n_out = 2;
}

// Bytes of the weights of layers [first, last).
static size_t weight_bytes(const struct vae *vae, int first, int last)
{
    size_t bytes = 0;
    for (int i = first; i < last; i++) {
        struct layer_tensor t[LAYER_MAX_TENSORS];
        int n = vae->layer[i].ops->tensors(&vae->layer[i], t);
        for (int j = 0; j < n; j++) {
            size_t count = sizeof(float);
            for (int d = 0; d < t[j].ndim; d++)
                count *= (size_t)t[j].shape[d];
            bytes += count;
        }
    }
    return bytes;
}

static Onnx__StringStringEntryProto *entry(struct graph *g, const char *key, const char *value)
{
    Onnx__StringStringEntryProto *p = gnew(g, sizeof *p);
    onnx__string_string_entry_proto__init(p);
    p->key = gprintf(g, "%s", key);
    p->value = gprintf(g, "%s", value);
    return p;
}

// The model proto around g's nodes and e, packed into *buf (*len bytes).
static void pack(struct graph *g, const struct vae_config *cfg, enum onnx_part part, struct ends *e,
                 uint8_t **buf, size_t *len)
{
    const char *name = part == ONNX_PART_DECODER ? "decoder" : "encoder";
    Onnx__GraphProto graph;
    onnx__graph_proto__init(&graph);
    graph.name = gprintf(g, "clvae_%s", name);
    graph.n_node = g->n_node, graph.node = g->node;
    graph.n_initializer = g->n_init, graph.initializer = g->init;
    graph.n_input = 1, graph.input = e->in;
    graph.n_output = e->n_out, graph.output = e->out;
    Onnx__OperatorSetIdProto opset;
    onnx__operator_set_id_proto__init(&opset);
    opset.domain = gprintf(g, "%s", "");
    opset.has_version = 1;
    opset.version = ONNX_EXPORT_OPSET;
    Onnx__OperatorSetIdProto *opsets[1] = {&opset};
    Onnx__StringStringEntryProto *meta[4] = {
        entry(g, "clvae_part", name),
        entry(g, "clvae_likelihood", likelihood_name(cfg->likelihood)),
        entry(g, "clvae_latent", gprintf(g, "%d", cfg->latent)),
        entry(g, "clvae_image",
              cfg->height ? gprintf(g, "%dx%dx%d", cfg->channels, cfg->height, cfg->width)
                          : gprintf(g, "%d", cfg->in_dim))};
    Onnx__ModelProto model;
    onnx__model_proto__init(&model);
    model.has_ir_version = 1;
    model.ir_version = IR_VERSION;
    model.n_opset_import = 1, model.opset_import = opsets;
    model.producer_name = gprintf(g, "clvae");
    model.producer_version = gprintf(g, "%s", CLVAE_VERSION);
    model.doc_string = gprintf(g, "the %s of a clvae variational autoencoder", name);
    model.graph = &graph;
    model.n_metadata_props = 4, model.metadata_props = meta;
    *len = onnx__model_proto__get_packed_size(&model);
    *buf = xmalloc(*len ? *len : 1);
    onnx__model_proto__pack(&model, *buf);
}

static int write_whole(const char *path, const uint8_t *buf, size_t len, struct clvae_error *err)
{
    struct atomic_file out;
    if (atomic_file_open(&out, path, err))
        return -1;
    if (fwrite(buf, 1, len, out.fp) != len) {
        int saved = errno;
        atomic_file_abort(&out);
        return clvae_fail(err, CLVAE_EXIT_OUTPUT, "%s: %s", path, strerror(saved));
    }
    return atomic_file_commit(&out, err);
}

int onnx_export(const struct ckpt *ckpt, const char *model, enum onnx_part part, const char *path,
                size_t *bytes, struct clvae_error *err)
{
    struct vae *vae = xcalloc(1, sizeof *vae);
    struct graph g = {0};
    struct ends e = {0};
    uint8_t *buf = NULL;
    size_t len = 0;
    int status = -1;
    bool decoder = part == ONNX_PART_DECODER;
    if (vae_layout(vae, &ckpt->meta.cfg, model, err))
        goto done;
    if (vae->n_params != ckpt->n_params) { // the same architecture laid out twice: a bug
        clvae_fail(err, CLVAE_EXIT_FAILURE,
                   "%s: the model takes %zu parameters but the checkpoint holds %zu", model,
                   vae->n_params, ckpt->n_params);
        goto done;
    }
    int first = decoder ? vae->n_encoder : 0, last = decoder ? vae->n_layers : vae->n_encoder;
    if (check_kinds(vae, first, last, model, err))
        goto done;
    size_t need = weight_bytes(vae, first, last);
    if (need > MAX_WEIGHT_BYTES) {
        clvae_fail(err, CLVAE_EXIT_USAGE,
                   "%s: the %s's weights take %zu bytes, more than the 2 GiB an ONNX file holds "
                   "without external data (which clvae export does not write)",
                   model, decoder ? "decoder" : "encoder", need);
        goto done;
    }
    if (decoder)
        build_decoder(&g, vae, ckpt->params, &e);
    else
        build_encoder(&g, vae, ckpt->params, &e);
    pack(&g, &vae->cfg, part, &e, &buf, &len);
    if (write_whole(path, buf, len, err))
        goto done;
    if (bytes)
        *bytes = len;
    status = 0;
done:
    free(buf);
    graph_free(&g);
    free(vae);
    return status;
}
