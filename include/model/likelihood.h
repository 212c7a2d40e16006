// The likelihood p(x|z) of the decoder's output: Bernoulli on logits (the seed's), or a logistic
// per pixel and channel discretised to the 256 levels of an 8-bit pixel (PixelCNN++'s, without the
// mixture). Its per-pixel negative log-probability is one OpenCL function (pixel_nll in
// cl/likelihood.cl) that training and eval's IWAE both call.
#ifndef CLVAE_LIKELIHOOD_H
#define CLVAE_LIKELIHOOD_H

#include <stdbool.h>
#include <stddef.h>

#include "cl_runtime.h"

struct vae;
struct vae_pass;
struct clvae_error;

// The kinds, numbered as cl/likelihood.cl's LIKELIHOOD_*.
enum likelihood_kind { LIKELIHOOD_BERNOULLI = 0, LIKELIHOOD_LOGISTIC = 1 };

// Decoder outputs a pixel value takes: 1 logit, or a mean and a log-scale.
int likelihood_outputs(enum likelihood_kind kind);

// "bernoulli" or "logistic".
const char *likelihood_name(enum likelihood_kind kind);

// name -> *kind; -1 with CLVAE_EXIT_USAGE naming option for an unknown name.
int likelihood_parse(const char *option, const char *name, enum likelihood_kind *kind,
                     struct clvae_error *err);

// Whether negative log-likelihoods of the kind are of 8-bit pixels (bits per dimension mean a
// code length): the discretised logistic's; the Bernoulli's are cross-entropies of grey levels.
bool likelihood_discrete(enum likelihood_kind kind);

// out (rows, dim * likelihood_outputs) decoder outputs -> mean (rows, dim) each pixel's expected
// value in [0, 1]: sigmoid(logit), or the discretised logistic's mean, sum_k k/255 P(k).
void likelihood_mean(enum likelihood_kind kind, const float *out, int rows, int dim, int channels,
                     float *mean);

struct likelihood {
    enum likelihood_kind kind;
    cl_kernel k_forward, k_row_sum;
    size_t reduce_local; // work-group size of the row sums (a power of two; 1 on CPUs)
};

void likelihood_create(struct likelihood *lh, struct clrt *rt, enum likelihood_kind kind);
void likelihood_release(struct likelihood *lh);

// vae->logits (rows, out_dim), vae->x (rows, in_dim) -> pass->rec[offset + r] = -log p(x_r | z_r),
// and vae->dlogits = grad_scale * its gradient.
void likelihood_forward(struct vae *vae, const struct vae_pass *pass);

#endif
