// Adam over the model's flat parameters: one kernel launch a part updates every parameter (one
// launch unless the parameters are in parts, vae.h).
#ifndef CLVAE_ADAM_H
#define CLVAE_ADAM_H

#include <stdint.h>

#include "cl_runtime.h"

// PyTorch's defaults, which clvae always uses (checkpoints record them).
#define ADAM_BETA1 0.9
#define ADAM_BETA2 0.999
#define ADAM_EPS 1e-8

struct adam {
    double lr, beta1, beta2, eps;
    int64_t step; // updates done so far
    int n;
    struct clrt_parts m, v; // first and second moments, (n) each in the parameters' parts, zero at
                            // the start
    cl_kernel kernel;
    struct clrt *rt;
};

// Moments for the parameters parted as params is (its n and start), on rt's device, with PyTorch's
// defaults for betas and eps.
int adam_create(struct adam *adam, struct clrt *rt, const struct clrt_parts *params, double lr,
                struct clvae_error *err);
void adam_release(struct adam *adam);

// params (n) -= one bias-corrected Adam step on grads (n), both parted as the moments; enqueued,
// not waited for.
void adam_step(struct adam *adam, const struct clrt_parts *params, const struct clrt_parts *grads);

#endif
