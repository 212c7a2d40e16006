// The model: a list of layers (encoder, the Gaussian head, decoder, output) built from one
// architecture description, the Gaussian sampler between them and the likelihood after,
// its parameters one flat array (on the device in parts at layer boundaries when it is larger than
// the largest allocation). Forward and backward walk the list; what a layer does is its kind's
// (layer.h), and the model names no kind.
#ifndef CLVAE_VAE_H
#define CLVAE_VAE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cl_runtime.h"
#include "layer.h"
#include "likelihood.h"
#include "sampler.h"

// Items a layer list holds (layers and reshapes), --hidden's, --encoder's, --decoder's and a
// checkpoint's alike; the decoder mirroring an encoder too.
#define VAE_MAX_HIDDEN 8
// The largest number in a layer list: a width, channels, a kernel, a stride, a padding, a side.
#define VAE_MAX_UNITS LAYER_MAX_NUMBER
#define VAE_MAX_LAYERS (2 * VAE_MAX_HIDDEN + 2)
// The longest text vae_format_layers writes for a list (8 of "deconv:65536:65536:65536:65536,").
#define VAE_LAYERS_TEXT_MAX 256
// The most classes a conditional model takes (vae_config.classes).
#define VAE_MAX_CLASSES LAYER_MAX_NUMBER
// The most parameters a model has: the kernels index them with int.
#define VAE_MAX_PARAMS LAYER_MAX_PARAMS

// The architecture: in_dim -> encoder layers -> (mean, logvar) of latent size; latent -> decoder
// layers -> in_dim x likelihood_outputs values. The one description the layout, the banner, the
// checkpoint and the tests read.
struct vae_config {
    int in_dim;                  // channels x height x width
    int channels, height, width; // the image (pixels interleaved: height, width, channels); height
                                 // 0: a flat vector of in_dim, in_dim channels of 1 x 1
    enum likelihood_kind likelihood;
    // n_decoder 0: the mirror of the encoder, which vae_layout fills in (vae->cfg).
    int n_encoder, n_decoder;
    struct layer_spec encoder[VAE_MAX_HIDDEN], decoder[VAE_MAX_HIDDEN];
    int latent;
    // --conditional: the number of classes whose one-hot is concatenated to the encoder's flat
    // features before the Gaussian head and to z at the decoder's input, whose first layer must
    // be dense (condition.h); 0: an unconditional model.
    int classes;
};

// "512,256" (--hidden, the dense shorthand) -> the encoder's dense layers and the decoder their
// mirror. option names the source in errors ("--hidden", "FILE: __metadata__ hidden").
int vae_parse_hidden(const char *option, const char *text, struct vae_config *cfg,
                     struct clvae_error *err);

// The command line's architecture options (each NULL when not given) into cfg's layer lists:
// --hidden (dense widths, mirrored), or --encoder (the decoder its mirror unless --decoder).
// --hidden with --encoder or --decoder is refused, and so is an encoder whose mirror would take
// more than VAE_MAX_HIDDEN items; errors name the option (CLVAE_EXIT_USAGE).
int vae_parse_model(const char *hidden, const char *encoder, const char *decoder,
                    struct vae_config *cfg, struct clvae_error *err);

// Which of those options gave the architecture, for messages: "--hidden", "--encoder",
// "--decoder" or "--encoder/--decoder"; "--hidden" (its default) when none did.
const char *vae_model_option(const char *hidden, const char *encoder, const char *decoder);

// How many items the decoder mirroring encoder specs[0 .. n) takes (vae_layout's mirror): a
// dense layer and a reshape back to the top layer's output, then for each layer below it the
// items of its kind's mirror (a deconv for a conv, a dense layer to its input and a reshape when
// that is an image for a dense layer).
int vae_mirror_items(const struct layer_spec *specs, int n);

// "dense:512,dense:256" -> specs (VAE_MAX_HIDDEN at most), *n. Errors name option.
int vae_parse_layers(const char *option, const char *text, struct layer_spec *specs, int *n,
                     struct clvae_error *err);

// specs -> "dense:512,dense:256", the form vae_parse_layers reads, cut short to fit len (a
// list's text fits VAE_LAYERS_TEXT_MAX). Returns the length of the whole text, as snprintf.
size_t vae_format_layers(const struct layer_spec *specs, int n, char *buf, size_t len);

// Whether two descriptions are the same layers (in_dim and classes aside).
bool vae_same_layers(const struct vae_config *a, const struct vae_config *b);

#define VAE_MAX_OWNED (2 * CLRT_MAX_PARTS + 14 + (2 + LAYER_MAX_BUFFERS) * VAE_MAX_LAYERS)

struct vae {
    struct vae_config cfg;
    struct clrt *rt;
    int n_layers;
    int out_dim;   // the decoder's output a row: in_dim x likelihood_outputs
    int n_encoder; // layer[0 .. n_encoder) encode x to [mean | logvar] (the last is the head)
    struct layer layer[VAE_MAX_LAYERS];
    size_t n_params;
    int max_rows;
    // The flat parameters and their gradients: each one device buffer, or parts that keep every
    // layer whole (each layer's l->dev says where its own are).
    struct clrt_parts params, grads;
    // What the layers share on the device: the runtime and the scratch (layer.h). Its weights_t
    // holds n_weights_t floats, the most any layer below the top takes.
    struct layer_ctx ctx;
    size_t n_weights_t, n_weights_kept;
    // Activations for max_rows images: x input, ml = [mu | logvar], z sample, eps its noise,
    // logits (rows, out_dim: the likelihood's parameters) and their gradients; hidden layers'
    // outputs live in layer[i].y.
    cl_mem x, ml, dml, z, dz, eps, logits, dlogits;
    cl_mem terms; // (max_rows, in_dim) each pixel's negative log-likelihood, summed by row_sum
    // Every buffer vae_create makes: the parameters' and gradients' parts, 12 of the model's own
    // (own()'s calls in vae_create: the shared scratch among them) and a layer's y, dy and
    // buffers at most.
    cl_mem owned[VAE_MAX_OWNED];
    int n_owned;
    size_t activation_bytes;
    struct sampler sampler;
    struct likelihood likelihood;
    cl_kernel k_gather;
    // With cfg.classes: each row's class (max_rows ints, ctx.labels) and its gather kernel.
    cl_mem labels;
    cl_kernel k_gather_labels;
    // vae_gather's batch, gathered by the next vae_forward (in the first layer's product where
    // its kind can: layer_ops.forward_gathered); data NULL when none waits.
    struct {
        const struct clrt_parts *data;
        cl_mem index;
        int start, rows;
    } gather;
};

// Builds the layer list of cfg with shapes and parameter offsets, and n_params; no device work.
// 0, or -1 with CLVAE_EXIT_USAGE naming option (what gave the architecture: "--encoder", or
// "FILE: __metadata__") when a shape is refused, a layer list is longer than VAE_MAX_HIDDEN (the
// mirrored decoder included), a layer's sizes pass 2^31 - 1 or the model has more than
// VAE_MAX_PARAMS parameters.
int vae_layout(struct vae *vae, const struct vae_config *cfg, const char *option,
               struct clvae_error *err);

// Bytes of device memory vae_create allocates on rt for a laid-out model and max_rows rows
// (CLBlast's scratch aside), and in *largest and *largest_name the largest activation buffer (the
// parameters' buffers are vae_plan_parts' business).
size_t vae_device_bytes(const struct vae *layout, const struct clrt *rt, int max_rows,
                        size_t *largest, const char **largest_name);

// Lays out the model and creates its parameter, gradient and activation buffers for up to
// max_rows images at once. Parameters start at zero: see vae_init_params. source names where
// the architecture came from in errors: the option ("--hidden"), or the checkpoint's path.
int vae_create(struct vae *vae, struct clrt *rt, const struct vae_config *cfg, int max_rows,
               const char *source, struct clvae_error *err);
void vae_release(struct vae *vae);

// Splits a laid-out model's parameters (and gradients) into parts of at most rt->max_alloc bytes
// that keep each layer whole: vae->params and grads' n and start, no buffers. -1 with
// CLVAE_EXIT_DEVICE naming source (as vae_create's), the layer whose parameters alone are larger
// and the limit (CLVAE_MAX_ALLOC when that set it).
int vae_plan_parts(struct vae *vae, const struct clrt *rt, const char *source,
                   struct clvae_error *err);

// Every layer's initial parameters (PyTorch's nn.Linear default for dense layers), drawn from
// Philox(seed) in the order of the flat buffer.
void vae_init_params_host(const struct vae *vae, uint64_t seed, float *params);

// The noise and loss bookkeeping of one forward pass.
struct vae_pass {
    int rows;            // images in vae->x
    uint64_t seed, step; // Philox key and counter: the same pair gives the same noise
    uint32_t stream;
    float noise_scale; // 1 samples z ~ q(z|x); 0 takes z = mu
    cl_mem rec, kl;    // per-image losses land at rec[offset + r], kl[offset + r]
    int offset;
    float grad_scale; // dlogits = grad_scale * (sigmoid - x): 1 / batch for training
    int noise_row0;   // row r's noise is that of row noise_row0 + r of the step's batch
    bool accumulate;  // vae_backward adds to vae->grads: a later micro-batch of one step
    float free_bits;  // --free-bits: no KL gradient for a latent dimension whose mean KL over the
                      // pass's rows is below it (sampler_backward); 0: none
    // The optimizer's step, for vae_backward to fold into the first layer's weight gradient where
    // its kind can (it then sets applied); NULL: none.
    struct layer_step_fold *step_fold;
};

// x (rows, in_dim) -> ml, z, logits, per-image reconstruction and KL losses, and dlogits.
void vae_forward(struct vae *vae, const struct vae_pass *pass);

// dlogits and the saved activations -> gradients of (sum rec + beta sum KL) * grad_scale for every
// parameter, in vae->grads (overwritten, or added to when pass->accumulate).
void vae_backward(struct vae *vae, const struct vae_pass *pass, float beta);

// x (rows, in_dim) = images index[start .. start + rows) of data ((count, in_dim) bytes on the
// device, in parts of whole images: a launch a part), scaled to [0, 1], by the time the next
// vae_forward has run: it gathers the batch, in the first layer's product when the data set is
// one buffer and the layer's kind folds it in (one launch and one pass fewer, the same bits).
void vae_gather(struct vae *vae, const struct clrt_parts *data, cl_mem index, int start, int rows);

// The batch vae_gather left, into x now by gather_images (not folded into the first layer), for a
// caller that changes x before vae_forward (--binarize); nothing when none waits.
void vae_gather_now(struct vae *vae);

// A conditional model's (cfg.classes) labels of the rows vae_gather takes: labels[index[start + r]]
// for r < rows, from labels (count) ints on the device. Nothing for an unconditional model.
void vae_gather_labels(struct vae *vae, cl_mem labels, cl_mem index, int start, int rows);

// A conditional model's labels of rows 0 .. rows - 1 from the host (each below cfg.classes): for
// images or draws of given classes. Nothing for an unconditional model.
void vae_set_labels(struct vae *vae, const int *labels, int rows);

// "784-128-10": the layer widths of cfg, for messages.
void vae_describe(const struct vae_config *cfg, char *buf, size_t len);

// z (rows, latent) -> logits (rows, out_dim) through the decoder alone.
void vae_decode(struct vae *vae, int rows);

// vae->z (rows, latent) = N(0, I) draws for counter (index, step, stream).
void vae_sample_prior(struct vae *vae, int rows, uint64_t seed, uint64_t step, uint32_t stream);

#endif
