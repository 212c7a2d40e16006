#include "adam.h"

#include <math.h>
#include <string.h>

int adam_create(struct adam *adam, struct clrt *rt, const struct clrt_parts *params, double lr,
                struct clvae_error *err)
{
    memset(adam, 0, sizeof *adam);
    adam->rt = rt;
    adam->n = (int)(params->start[params->n] / sizeof(float));
    adam->lr = lr;
    adam->beta1 = ADAM_BETA1;
    adam->beta2 = ADAM_BETA2;
    adam->eps = ADAM_EPS;
    // clrt_buffer zero-fills, which is where Adam's moments start.
    adam->m = adam->v = *params;
    if (clrt_parts_create(rt, &adam->m, "Adam first moments", err) ||
        clrt_parts_create(rt, &adam->v, "Adam second moments", err))
        return -1;
    adam->kernel = clrt_kernel(rt, "adam_update");
    return 0;
}

void adam_release(struct adam *adam)
{
    if (adam->kernel)
        clReleaseKernel(adam->kernel);
    clrt_parts_release(&adam->m);
    clrt_parts_release(&adam->v);
    memset(adam, 0, sizeof *adam);
}

void adam_step(struct adam *adam, const struct clrt_parts *params, const struct clrt_parts *grads)
{
    adam->step++;
    // The bias corrections in double on the host: beta^t for large t underflows gracefully.
    double bc1 = 1.0 - pow(adam->beta1, (double)adam->step);
    double bc2 = 1.0 - pow(adam->beta2, (double)adam->step);
    float step_size = (float)(adam->lr / bc1);
    float inv_sqrt_bc2 = (float)(1.0 / sqrt(bc2));
    float b1 = (float)adam->beta1, b2 = (float)adam->beta2, eps = (float)adam->eps;
    float one_minus_b1 = (float)(1.0 - adam->beta1), one_minus_b2 = (float)(1.0 - adam->beta2);
    cl_kernel k = adam->kernel;
    KARG(k, 5, b1);
    KARG(k, 6, one_minus_b1);
    KARG(k, 7, b2);
    KARG(k, 8, one_minus_b2);
    KARG(k, 9, eps);
    KARG(k, 10, step_size);
    KARG(k, 11, inv_sqrt_bc2);
    for (int i = 0; i < adam->m.n; i++) {
        int n = (int)((adam->m.start[i + 1] - adam->m.start[i]) / sizeof(float));
        KARG(k, 0, params->mem[i]);
        KARG(k, 1, grads->mem[i]);
        KARG(k, 2, adam->m.mem[i]);
        KARG(k, 3, adam->v.mem[i]);
        KARG(k, 4, n);
        size_t global = (size_t)n;
        clrt_launch(adam->rt, k, 1, &global, NULL);
    }
}
