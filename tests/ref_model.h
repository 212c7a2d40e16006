// The model in double precision on the host, walking the same layer list as the device: one
// reference per layer kind, so a new kind is checked by adding its reference here.
#ifndef CLVAE_TEST_REF_MODEL_H
#define CLVAE_TEST_REF_MODEL_H

#include "vae.h"

// y (rows, l->out) = the layer applied to x (rows, l->in) with the flat parameters params; lowers
// *margin (when not NULL) to the smallest |pre-activation| any ReLU saw.
void ref_layer_forward(const struct layer *l, const double *params, const double *x, int rows,
                       double *y, double *margin);

// The classes of the rows the passes below take (a conditional model's; rows of a batch from 0),
// borrowed until the next call; NULL: none.
void ref_set_labels(const int *labels);

// x (rows, in_dim) -> ml (rows, 2 latent) = [mean | logvar] through the encoder.
void ref_encode(const struct vae *vae, const double *params, const double *x, int rows, double *ml,
                double *margin);

// z (rows, latent) -> logits (rows, in_dim) through the decoder.
void ref_decode(const struct vae *vae, const double *params, const double *z, int rows,
                double *logits, double *margin);

// Group normalisation with groups groups of c / groups channels, then ReLU, by its definition:
// per image and group (its channels at every pixel of x (rows, hw, c)) the mean and the biased
// variance; y = relu(gamma_k (x - mean) / sqrt(var + 1e-5) + beta_k); stats (rows, groups, 2) =
// mean and 1 / sqrt(var + 1e-5) when not NULL; *margin lowered as ref_layer_forward's.
void ref_group_norm(const double *gamma, const double *beta, const double *x, int rows, int hw,
                    int c, int groups, double *y, double *stats, double *margin);

// Its way back before the ReLU, from dg (rows, hw, c), the gradient of gamma xhat + beta: dx =
// rstd (dxhat - mean(dxhat) - xhat mean(dxhat xhat)) per image and group with dxhat = gamma dg;
// dgamma (c) = the sums of dg xhat, dbeta (c) those of dg.
void ref_group_norm_backward(const double *gamma, const double *x, const double *dg, int rows,
                             int hw, int c, int groups, double *dx, double *dgamma, double *dbeta);

// Nearest-neighbour upsampling's way back: dx (rows, h, w, c) = the sums of dy (rows, h f, w f, c)
// over each pixel's f x f copies.
void ref_up_backward(const double *dy, int rows, int h, int w, int c, int f, double *dx);

// -log p(t | logit l) of the Bernoulli likelihood: the binary cross-entropy on a logit.
double ref_bernoulli_nll(double l, double t);

// The logistic's CDF, by sigmoid with the tail taken from the side where it is small.
double ref_logistic_cdf(double v);

// -log P(x) of the logistic with location mu and log-scale u discretised to 256 levels (as
// cl/likelihood.cl's logistic_nll: u clamped to [-7, 15]), by its definition P = CDF(a) - CDF(b)
// in logs; *dmu, *du its derivatives (du 0 where u is clamped).
double ref_logistic_nll(double mu, double u, double x, double *dmu, double *du);

// Pixel j's -log p(x | the decoder output row out) under vae's likelihood.
double ref_pixel_nll(const struct vae *vae, const double *out, int j, double x);

// The flat parameters (n) as doubles, malloc'd.
double *ref_params(const float *params, size_t n);

// Dense models: in -> h -> latent, and in -> h1 -> h2 -> latent, the decoder mirroring.
#define DENSE(n)                                                                                   \
    {                                                                                              \
        .kind = LAYER_DENSE, .units = (n)                                                          \
    }
#define CFG1(in, h, z)                                                                             \
    {                                                                                              \
        .in_dim = (in), .n_encoder = 1, .n_decoder = 1, .encoder = {DENSE(h)},                     \
        .decoder = {DENSE(h)}, .latent = (z)                                                       \
    }
#define CFG2(in, h1, h2, z)                                                                        \
    {                                                                                              \
        .in_dim = (in), .n_encoder = 2, .n_decoder = 2, .encoder = {DENSE(h1), DENSE(h2)},         \
        .decoder = {DENSE(h2), DENSE(h1)}, .latent = (z)                                           \
    }

#endif
