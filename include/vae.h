// The model: an MLP variational autoencoder, its parameters in one flat device buffer, and its
// forward and backward passes as CLBlast products plus the kernels of cl/.
#ifndef CLVAE_VAE_H
#define CLVAE_VAE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cl_runtime.h"

#define VAE_MAX_HIDDEN 8
#define VAE_MAX_LAYERS (2 * VAE_MAX_HIDDEN + 2)

// in_dim -> hidden[0] -> ... -> hidden[n_hidden-1] -> (mean, logvar) of latent size, and back.
struct vae_config {
    int in_dim;
    int n_hidden;
    int hidden[VAE_MAX_HIDDEN];
    int latent;
};

// One dense layer y = x W + b: weight (in, out) row-major, as a Keras Dense layer keeps its kernel
// (the transpose of PyTorch's nn.Linear weight), bias (out), both as float offsets into the flat
// parameter buffer. x (rows, in) -> y (rows, out); dx, dy likewise. The layout makes the forward
// product and the weight gradient the NN and TN products that CLBlast runs fast on every device;
// the input gradient dy W^T uses a transposed copy (out, in) at weight_t in vae->weights_t.
struct vae_dense {
    char name[24]; // "encoder.0", "mean+logvar", "decoder.1", "output"
    int in, out;
    size_t weight, bias, weight_t;
    bool relu;
    cl_mem x, y, dx, dy; // dx is NULL for the first layer: nothing below needs it
};

// Layers in order: encoder.0 .. encoder.{n-1}, the two heads as one layer (rows of the weight:
// mean's then logvar's), decoder.0 .. decoder.{n-1}, output (logits).
struct vae {
    struct vae_config cfg;
    struct clrt *rt;
    int n_layers, head, first_decoder;
    struct vae_dense layer[VAE_MAX_LAYERS];
    size_t n_params;
    int max_rows;
    cl_mem params, grads;
    cl_mem weights_t; // the weights of every layer but the first, transposed
    size_t n_weights_t;
    // Activations for max_rows images: x input, ml = [mu | logvar], z sample, eps its noise,
    // logits and their gradients; hidden layers' outputs live in layer[i].y.
    cl_mem x, ml, dml, z, dz, eps, logits, dlogits;
    cl_mem terms; // (max_rows, in_dim) each pixel's cross-entropy, summed by row_sum
    cl_mem gemm_temp;
    cl_mem owned[4 * VAE_MAX_LAYERS + 16];
    int n_owned;
    size_t activation_bytes;
    size_t reduce_local; // work-group size of row_sum (a power of two)
    cl_kernel k_bias_forward, k_bias_relu_forward, k_bias_grad, k_relu_backward_bias_grad;
    cl_kernel k_reparameterize, k_reparameterize_backward, k_bce_logits_grad, k_sample_normal;
    cl_kernel k_transpose, k_row_sum, k_gather;
};

// Fills the layers' shapes and parameter offsets from cfg, and n_params; no device work.
void vae_layout(struct vae *vae, const struct vae_config *cfg);

// Lays out the model and creates its parameter, gradient and activation buffers for up to
// max_rows images at once. Parameters start at zero: see vae_init_params.
int vae_create(struct vae *vae, struct clrt *rt, const struct vae_config *cfg, int max_rows,
               struct clvae_error *err);
void vae_release(struct vae *vae);

// PyTorch's nn.Linear default: weight and bias uniform in +-1/sqrt(in), drawn from Philox(seed)
// in the order of the flat buffer.
void vae_init_params_host(const struct vae *vae, uint64_t seed, float *params);

// The noise and loss bookkeeping of one forward pass.
struct vae_pass {
    int rows;            // images in vae->x
    uint64_t seed, step; // Philox key and counter: the same pair gives the same noise
    uint32_t stream;
    float noise_scale;   // 1 samples z ~ q(z|x); 0 takes z = mu
    cl_mem rec, kl;      // per-image losses land at rec[offset + r], kl[offset + r]
    int offset;
    float grad_scale;    // dlogits = grad_scale * (sigmoid - x): 1 / batch for training
};

// x (rows, in_dim) -> ml, z, logits, per-image reconstruction and KL losses, and dlogits.
void vae_forward(struct vae *vae, const struct vae_pass *pass);

// dlogits and the saved activations -> gradients of (sum rec + beta sum KL) * grad_scale for every
// parameter, in vae->grads (overwritten).
void vae_backward(struct vae *vae, const struct vae_pass *pass, float beta);

// x (rows, in_dim) = images index[start .. start + rows) of data ((count, in_dim) bytes on the
// device), scaled to [0, 1].
void vae_gather(struct vae *vae, cl_mem data, cl_mem index, int start, int rows);

// "784-128-10": the layer widths of cfg, for messages.
void vae_describe(const struct vae_config *cfg, char *buf, size_t len);

// z (rows, latent) -> logits (rows, in_dim) through the decoder alone.
void vae_decode(struct vae *vae, int rows);

// Fills z (rows, latent) with N(0, I) draws for counter (index, step, stream).
void vae_sample_prior(struct vae *vae, int rows, uint64_t seed, uint64_t step, uint32_t stream);

#endif
