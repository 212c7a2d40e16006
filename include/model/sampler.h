// The Gaussian sampler between encoder and decoder: z = mu + exp(logvar / 2) eps with eps ~ N(0, I)
// from Philox (cl/sampler.cl), the KL term to the prior N(0, I), and draws from that prior. It
// reads and writes the activation buffers it is given (the model's), nothing else.
#ifndef CLVAE_SAMPLER_H
#define CLVAE_SAMPLER_H

#include <stdint.h>

#include "cl_runtime.h"

struct sampler {
    struct clrt *rt;
    int latent;
    cl_kernel k_forward, k_backward, k_prior;
    cl_kernel k_backward_free_bits; // sampler_backward with free_bits > 0
    cl_kernel k_binarize;
};

// The buffers the sampler reads and writes, (rows, 2 latent) or (rows, latent).
struct sampler_buffers {
    cl_mem ml, dml; // [mean | log-variance] from the encoder, and its gradient
    cl_mem z, dz;   // the sample the decoder takes, and its gradient
    cl_mem eps;     // the noise of the sample, for the backward pass
};

// The noise of one pass: Philox key seed and counter (row, step, stream), the same for the same
// values; row r of the pass draws the noise of row noise_row0 + r.
struct sampler_noise {
    uint64_t seed, step;
    uint32_t stream;
    float scale; // 1 samples z ~ q(z|x); 0 takes z = mu
    int row0;
};

void sampler_create(struct sampler *s, struct clrt *rt, int latent);
void sampler_release(struct sampler *s);

// b->ml (rows, 2 latent) -> b->z, b->eps, and kl[offset + r] per image.
void sampler_forward(const struct sampler *s, const struct sampler_buffers *b, int rows,
                     const struct sampler_noise *noise, cl_mem kl, int offset);

// b->dz -> b->dml: through the sample (noise_scale as the forward pass's), plus beta_scale times
// the KL term's gradient; with free_bits > 0 (--free-bits), the KL gradient of a latent dimension
// whose KL averaged over the rows is below free_bits is 0.
void sampler_backward(const struct sampler *s, const struct sampler_buffers *b, int rows,
                      float noise_scale, float beta_scale, float free_bits);

// --binarize: x (rows, dim) in [0, 1], the images index[start ..] of a data set, replaced by
// Bernoulli draws of their pixels keyed by (seed, epoch, stream) and the image's number.
void sampler_binarize(const struct sampler *s, cl_mem x, int rows, int dim, cl_mem index, int start,
                      uint64_t seed, uint32_t epoch, uint32_t stream);

// z (rows, latent) = N(0, I) draws for counter (index, step, stream).
void sampler_prior(const struct sampler *s, cl_mem z, int rows, uint64_t seed, uint64_t step,
                   uint32_t stream);

#endif
