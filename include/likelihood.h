// The likelihood p(x|z) of the decoder's output: Bernoulli on logits. Its per-pixel negative
// log-probability is one OpenCL function (bernoulli_nll in cl/likelihood.cl) that training and
// eval's IWAE both call.
#ifndef CLVAE_LIKELIHOOD_H
#define CLVAE_LIKELIHOOD_H

#include <stddef.h>

#include "cl_runtime.h"

struct vae;
struct vae_pass;

struct likelihood {
    cl_kernel k_forward, k_row_sum;
    size_t reduce_local; // work-group size of the row sums (a power of two; 1 on CPUs)
};

void likelihood_create(struct likelihood *lh, struct clrt *rt);
void likelihood_release(struct likelihood *lh);

// vae->logits, vae->x (rows, in_dim) -> pass->rec[offset + r] = -log p(x_r | z_r), and
// vae->dlogits = grad_scale * its gradient.
void likelihood_forward(struct vae *vae, const struct vae_pass *pass);

#endif
