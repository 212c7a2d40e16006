// The Gaussian sampler between encoder and decoder: z = mu + exp(logvar / 2) eps with eps ~ N(0, I)
// from Philox (cl/sampler.cl), the KL term to the prior N(0, I), and draws from that prior.
#ifndef CLVAE_SAMPLER_H
#define CLVAE_SAMPLER_H

#include <stdint.h>

#include "cl_runtime.h"

struct vae;
struct vae_pass;

struct sampler {
    cl_kernel k_forward, k_backward, k_prior;
};

void sampler_create(struct sampler *s, struct clrt *rt);
void sampler_release(struct sampler *s);

// vae->ml (rows, 2 latent) -> vae->z, vae->eps, and pass->kl[offset + r] per image.
void sampler_forward(struct vae *vae, const struct vae_pass *pass);

// vae->dz -> vae->dml: through the sample, plus beta * grad_scale times the KL term's gradient.
void sampler_backward(struct vae *vae, const struct vae_pass *pass, float beta);

// vae->z (rows, latent) = N(0, I) draws for counter (index, step, stream).
void sampler_prior(struct vae *vae, int rows, uint64_t seed, uint64_t step, uint32_t stream);

#endif
