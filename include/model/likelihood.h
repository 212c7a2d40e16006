// The likelihood p(x|z) of the decoder's output: Bernoulli on logits (the seed's), or a logistic
// per pixel and channel discretised to the 256 levels of an 8-bit pixel (PixelCNN++'s, without the
// mixture). Its per-pixel negative log-probability is one OpenCL function (pixel_nll in
// cl/likelihood.cl) that training and eval's IWAE both call. The kinds are rows of one table
// (src/model/likelihood.c); the likelihood reads and writes the activation buffers it is given.
#ifndef CLVAE_LIKELIHOOD_H
#define CLVAE_LIKELIHOOD_H

#include <stdbool.h>
#include <stddef.h>

#include "cl_runtime.h"

struct clvae_error;

// The kinds, numbered as cl/likelihood.cl's LIKELIHOOD_*: the rows of likelihood.c's table.
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
    struct clrt *rt;
    int dim, channels; // values an image, and channels a pixel (interleaved, channel fastest)
    cl_kernel k_forward, k_row_sum;
    cl_kernel k_rows;    // both in one launch, a work-item a row (CPUs), or NULL
    size_t reduce_local; // work-group size of the row sums (a power of two; 1 on CPUs)
};

// The buffers the likelihood reads and writes.
struct likelihood_buffers {
    cl_mem out;   // (rows, dim * outputs) the decoder's output: the likelihood's parameters
    cl_mem x;     // (rows, dim) the images, in [0, 1]
    cl_mem dout;  // (rows, dim * outputs) the gradient it writes
    cl_mem terms; // (rows, dim) each pixel's negative log-likelihood
};

void likelihood_create(struct likelihood *lh, struct clrt *rt, enum likelihood_kind kind, int dim,
                       int channels);
void likelihood_release(struct likelihood *lh);

// b->out, b->x (rows) -> rec[offset + r] = -log p(x_r | z_r), and b->dout = grad_scale * its
// gradient.
void likelihood_forward(const struct likelihood *lh, const struct likelihood_buffers *b, int rows,
                        cl_mem rec, int offset, float grad_scale);

// likelihood_forward's launch as the Gaussian head's launch takes it at the end of the decoder's
// chain (clrt_gemm_bias_reparameterize), the same bits: off where the likelihood runs no *_rows16
// kernel (not a CPU).
struct clrt_rows_likelihood likelihood_rows_fold(const struct likelihood *lh,
                                                 const struct likelihood_buffers *b, cl_mem rec,
                                                 int offset, float grad_scale);

#endif
