// The contract between the model and its layer kinds. A kind is a module (src/model/layer_KIND.c,
// its kernels in cl/KIND.cl) with an ops table: parse, format, compare, mirror and describe its
// item of a layer list; lay out, initialise, create, run forward and backward, list the
// checkpoint's tensors of, and release a layer. One registry (src/model/layer.c) lists the kinds;
// the model (vae.c) walks a list of layers through their ops and knows no kind by name. A layer
// sees a small context (struct layer_ctx: the runtime and the shared scratch), never the model.
#ifndef CLVAE_LAYER_H
#define CLVAE_LAYER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cl_runtime.h"
#include "error.h"

// The largest number in an item of a layer list: a width, channels, a kernel, a stride, a side.
#define LAYER_MAX_NUMBER 65536
// The most parameters a model has: the kernels index them with int.
#define LAYER_MAX_PARAMS ((size_t)INT32_MAX)
// Numbers of an item after its first (conv: kernel, stride, padding; reshape: height, width).
#define LAYER_SPEC_ARGS 3
// Items a layer's mirror in the default decoder takes at most (dense back to an image: two).
#define LAYER_MAX_MIRROR 2
// Checkpoint tensors of one layer at most (the Gaussian head has four: a mean's and a
// log-variance's weight and bias; room for a block of two convolutions and two normalisations).
#define LAYER_MAX_TENSORS 8
// A layer's own device buffers beside y and dy (conv: its columns and their gradient), and kernels.
#define LAYER_MAX_BUFFERS 8
#define LAYER_MAX_KERNELS 16

struct layer_ops;

// One item of an architecture description: "dense:128", "conv:32:4:2:1" (output channels,
// kernel, stride, padding), "deconv:32:4:2:1", "reshape:64x7x7" (channels x height x width).
// What units and arg mean is the kind's; an item that lays out no layer (reshape) gives the shape
// after it.
struct layer_spec {
    const struct layer_ops *kind;
    int units;                // the first number: dense's width, the channels of the others
    int arg[LAYER_SPEC_ARGS]; // the numbers after it
};

// The shape of one image's activations: channels x height x width, stored (h, w, c) with the
// channel fastest (NHWC); a flat vector is (n, 1, 1) with spatial false.
struct layer_shape {
    int c, h, w;
    bool spatial;
};

// A checkpoint tensor as a view of the flat parameter buffer: element (i0, i1, ...) of the
// row-major tensor of that shape is flat[base + i0 stride[0] + i1 stride[1] + ...].
struct layer_tensor {
    char name[48];
    int ndim, shape[4];
    size_t stride[4], base;
};

// What the model may ask one layer's backward to fold into the store of its input gradient: the
// sampler's backward (clrt_epilogue's CLRT_EPILOGUE_SAMPLER, into c instead of dx). A kind that
// can sets applied; otherwise the model runs it after.
struct layer_dx_fold {
    struct clrt_epilogue ep;
    struct clrt_mat c;
    bool applied;
};

// What the trainer may ask the first layer's backward, the step's last launch, to fold into its
// weight gradient's launch: the optimizer's step on every parameter (clrt_gemm_tn_colsum_adam). A
// kind that can sets applied; otherwise the trainer runs the step after.
struct layer_step_fold {
    struct clrt_adam adam;
    bool applied;
};

// What the model may ask the Gaussian head's forward to fold into its product's launch: the
// sampler's forward (clrt_gemm_bias_reparameterize), and after it the layers next (dense layers
// without classes, the first's x sample.z, each next's x the y of the one before; NULL after the
// last), then the likelihood lik on the last one's y (where lik.on). A kind that can sets
// applied, next_applied (how many of next) and lik_applied; otherwise the model runs them after.
// With head (the Gaussian head, whose x is the first layer's y), the first layer's gathered
// forward may run the head's launch itself, its own product first in it: then it sets
// first_applied too, and the head's forward is not run.
struct layer_y_fold {
    struct clrt_reparam sample;
    const struct layer *next[CLRT_CHAIN];
    struct clrt_rows_likelihood lik;
    const struct layer *head;
    bool applied, lik_applied, first_applied;
    int next_applied;
};

// What every layer shares on the device (vae_create makes it): the runtime, and the scratch the
// layers take in turn (the queue is in order).
struct layer_ctx {
    struct clrt *rt;
    bool cpu;         // the device is a CPU, where some passes take a form of their own
    cl_mem weights_t; // one layer's weights transposed, for its input gradient (n_weights_t)
    // Each dense layer's weights transposed, at its weight_t (n_weights_kept): kept from its
    // forward product (clrt_gemm_keeps_wt) for its backward, else made there.
    cl_mem weights_kept;
    cl_mem bias_partial; // the bias gradients' partial column sums (layer_bias_parts)
    size_t bias_work;    // work-items a column reduction should fill (rt->reduce_work)
    cl_mem splitk;       // split-K weight gradients' parts (layer_splitk_parts), or NULL
    cl_mem labels;       // (rows) ints: each image's class, for layers with classes (condition.h)
    struct layer_dx_fold *dx_fold; // set by the model for one layer's backward, else NULL
    struct layer_y_fold *y_fold;   // set by the model for the Gaussian head's forward, else NULL
    struct layer_step_fold *step_fold; // set by the model for the first layer's backward, or NULL
};

// What the layout of a model counts as its layers are laid out in turn.
struct layer_plan {
    size_t n_params;       // parameters so far: the next layer's start in the flat buffer
    size_t n_weights_t;    // floats of layer_ctx.weights_t: the most any layer that takes dx needs
    size_t n_weights_kept; // floats of layer_ctx.weights_kept: the next layer's weight_t
};

// A device buffer of the layer's own, (rows, floats): named "<layer> <what>" in messages; created
// and released by the model.
struct layer_buffer {
    const char *what;
    size_t floats; // an image's
    cl_mem mem;
};

// What the model's layout decides for a layer and its kind's layout fills in; the device side
// (dev, x, y, buffers, kernels) comes with vae_create.
struct layer {
    const struct layer_ops *ops;
    struct layer_spec spec;
    char name[24]; // "encoder.0", "mean+logvar", "decoder.1", "output"
    int in, out;   // floats per image of x and of y
    struct layer_shape in_shape, out_shape;
    bool relu;
    bool gaussian_head; // y is [mean | logvar]: the checkpoint names the halves mean and logvar
    bool needs_dx;      // a layer below takes dx
    bool dx_accumulate; // backward adds into dx: x feeds another layer too (a skip connection)
    // A dense layer's one-hot class inputs after its in (--conditional; condition.h): its weight
    // has in + classes rows, the last classes of them picked by ctx->labels. 0: none.
    int classes;
    // The ReLU mask of dy folded into a neighbour's product (vae_create, where both kinds have
    // fold_relu and clvae's products run): mask_dx, the layer above masks its dx by x > 0 as it
    // stores it; dy_masked, this layer's dy arrives so masked and its bias gradient may come
    // from the weight gradient's launch.
    bool mask_dx, dy_masked;
    // The layer's parameters start at weight in the flat buffer (its weight first); bias is its
    // bias's offset there.
    size_t weight, bias;
    size_t weight_t; // its transposed weight's offset in layer_ctx.weights_kept, if it keeps one
    // Where they live on the device: the part of the model's parameters and gradients holding the
    // layer and the offsets within it.
    struct {
        cl_mem params, grads;
        size_t weight, bias;
    } dev;
    // The weight gradient's product: (wgrad_m, wgrad_n) summed over wgrad_k rows an image (the
    // model sizes the products' and split-K's scratch by it).
    size_t wgrad_m, wgrad_n, wgrad_k;
    cl_mem x, dx; // borrowed: the layer below's y and dy (dx NULL if !needs_dx)
    cl_mem y, dy; // (max_rows, out): the model's buffers
    int n_buffers;
    struct layer_buffer buffer[LAYER_MAX_BUFFERS]; // the kind's layout sets what and floats
    cl_kernel kernel[LAYER_MAX_KERNELS];           // the kind's, indexed as its module says
};

// What a kind's output is, for the default decoder and the banner: a flat vector, or an image.
enum layer_gives { LAYER_GIVES_FLAT, LAYER_GIVES_IMAGE };

// A kind. Every function receives the layer or spec of its own kind; an item that lays out no
// layer (reshape) has shape and no layer functions.
struct layer_ops {
    const char *kind;  // the item's name before its first ':'
    const char *usage; // the item's form in messages: "conv:C[:K[:S[:P]]]"
    enum layer_gives gives;
    int defaults[LAYER_SPEC_ARGS]; // the numbers after units that an item leaves out
    // numbers, what follows "kind:" in item -> *spec; -1 with CLVAE_EXIT_USAGE naming option and
    // item for numbers that are not the kind's.
    int (*parse)(const char *option, const char *item, const char *numbers, struct layer_spec *spec,
                 struct clvae_error *err);
    // The item as parse reads it ("conv:32:4:2:1"), as snprintf writes it.
    int (*format)(const struct layer_spec *s, char *buf, size_t len);
    bool (*same)(const struct layer_spec *a, const struct layer_spec *b);
    // The item in the banner ("-conv32(4x4/2)"), as snprintf; NULL: nothing.
    int (*describe)(const struct layer_spec *s, char *buf, size_t len);
    // An item that is no layer: its checks and the shape after it, in place; 0, or -1 with why
    // (CLVAE_ERROR_MAX bytes).
    int (*shape)(const struct layer_spec *s, struct layer_shape *shape, char *why);
    // The items of the default decoder that take l's output shape back to its input shape
    // (LAYER_MAX_MIRROR at most); returns how many. Called on a laid-out layer, and on one whose
    // shapes say only whether they are images (vae_mirror_items counts before a layout).
    int (*mirror)(const struct layer *l, struct layer_spec *items);
    // Checks the spec against the input shape l->in_shape, sets l->out_shape, l->out, the
    // parameter offsets at plan->n_params (advancing it), the weight gradient's product, the
    // layer's buffers and plan->n_weights_t if it needs more; no device work. 0, or -1 with why.
    int (*layout)(struct layer *l, struct layer_plan *plan, char *why);
    // The layer's initial parameters, in place in the host copy of the flat buffer.
    void (*init)(const struct layer *l, uint64_t seed, float *params);
    // The layer's kernels.
    void (*create)(const struct layer_ctx *ctx, struct layer *l);
    // y (rows, out) from x (rows, in).
    void (*forward)(const struct layer_ctx *ctx, const struct layer *l, int rows);
    // The same with x (rows, in) gathered from bytes as g says, written as the product reads it
    // (the first layer); false, with nothing enqueued, where the kind cannot. NULL: never.
    bool (*forward_gathered)(const struct layer_ctx *ctx, const struct layer *l, int rows,
                             const struct clrt_gather *g);
    // dy (rows, out) -> the layer's gradients (added to what is there when accumulate) and dx
    // (rows, in) unless l->dx is NULL (added to it when l->dx_accumulate); masks dy by the layer's
    // own activation first (unless l->dy_masked: it came so).
    void (*backward)(const struct layer_ctx *ctx, const struct layer *l, int rows, bool accumulate);
    // backward honours mask_dx and dy_masked (struct layer).
    bool fold_relu;
    // The layer's tensors in checkpoint order (LAYER_MAX_TENSORS at most); returns how many.
    int (*tensors)(const struct layer *l, struct layer_tensor *t);
    // Releases what create made; safe on a layer create never saw.
    void (*release)(struct layer *l);
    // The images buffer b holds for passes of up to max_rows on rt, fewer where the kind uses it a
    // slice of the batch at a time (0: never used); NULL: max_rows, every buffer.
    size_t (*buffer_images)(const struct layer *l, int b, const struct clrt *rt, int max_rows);
};

// The dense kind: --hidden's shorthand, the Gaussian head and a flat output layer are dense
// layers, and callers build their items as {.kind = LAYER_DENSE, .units = N}.
extern const struct layer_ops dense_ops;
#define LAYER_DENSE (&dense_ops)

// The kind named name ("conv"), or NULL.
const struct layer_ops *layer_kind(const char *name);

// An item of the kind named name with units and the numbers the kind takes when none are given.
struct layer_spec layer_spec_of(const char *name, int units);

// One item of a layer list, "kind:numbers" -> *spec; -1 with CLVAE_EXIT_USAGE naming option.
int layer_parse(const char *option, const char *item, struct layer_spec *spec,
                struct clvae_error *err);

// The items that give a flat vector the shape want: a dense layer, then a reshape when want is an
// image (the default decoder's way back to a shape); returns how many (LAYER_MAX_MIRROR at most).
// Dense's (layer_dense.c).
int layer_dense_to(struct layer_shape want, struct layer_spec *items);

// How many parts a column reduction of rows x n splits the rows into: enough to give
// ctx->bias_work work-items, at least 32 rows a part; 1 below rt->reduce_min elements.
int layer_bias_parts(const struct layer_ctx *ctx, int rows, int n);

// How many parts a weight gradient (m, n) summed over k rows splits into on rt: enough that the
// parts' 32x32 tiles fill rt->splitk_groups work-groups, each part at least rt->splitk_min_k rows,
// at most LAYER_SPLITK_MAX; 1 when the product alone fills the device, or when rt->splitk_groups
// is 0 (clvae's products on a CPU, which split by cache themselves).
#define LAYER_SPLITK_MAX 16
int layer_splitk_parts(const struct clrt *rt, size_t m, size_t n, size_t k);

// Releases the layer's kernels (l->kernel): every kind's release.
void layer_release_kernels(struct layer *l);

#endif
