// The model in double precision on the host, walking the same layer list as the device: one
// reference per layer kind, so a new kind is checked by adding its reference here.
#ifndef CLVAE_TEST_REF_MODEL_H
#define CLVAE_TEST_REF_MODEL_H

#include "vae.h"

// y (rows, l->out) = the layer applied to x (rows, l->in) with the flat parameters params; lowers
// *margin (when not NULL) to the smallest |pre-activation| any ReLU saw.
void ref_layer_forward(const struct layer *l, const double *params, const double *x, int rows,
                       double *y, double *margin);

// x (rows, in_dim) -> ml (rows, 2 latent) = [mean | logvar] through the encoder.
void ref_encode(const struct vae *vae, const double *params, const double *x, int rows, double *ml,
                double *margin);

// z (rows, latent) -> logits (rows, in_dim) through the decoder.
void ref_decode(const struct vae *vae, const double *params, const double *z, int rows,
                double *logits, double *margin);

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
