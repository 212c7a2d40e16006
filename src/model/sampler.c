// The Gaussian sampler's launches on the buffers it is given (sampler.h).
#include "sampler.h"

void sampler_create(struct sampler *s, struct clrt *rt, int latent)
{
    s->rt = rt;
    s->latent = latent;
    s->k_forward = clrt_kernel(rt, "reparameterize");
    s->k_backward = clrt_kernel(rt, "reparameterize_backward");
    s->k_prior = clrt_kernel(rt, "sample_normal");
    s->k_backward_free_bits = clrt_kernel(rt, "reparameterize_backward_free_bits");
    s->k_binarize = clrt_kernel(rt, "binarize_images");
}

void sampler_release(struct sampler *s)
{
    cl_kernel kernels[] = {s->k_forward, s->k_backward, s->k_prior, s->k_backward_free_bits,
                           s->k_binarize};
    for (size_t i = 0; i < sizeof kernels / sizeof kernels[0]; i++)
        clrt_release_kernel(kernels[i]);
    *s = (struct sampler){0};
}

void sampler_forward(const struct sampler *s, const struct sampler_buffers *b, int rows,
                     const struct sampler_noise *noise, cl_mem kl, int offset)
{
    cl_kernel k = s->k_forward;
    cl_uint seed_lo = (cl_uint)noise->seed, seed_hi = (cl_uint)(noise->seed >> 32);
    cl_uint step_lo = (cl_uint)noise->step, step_hi = (cl_uint)(noise->step >> 32);
    cl_uint stream = noise->stream, a = 0;
    KARG(k, a++, b->ml);
    KARG(k, a++, b->z);
    KARG(k, a++, b->eps);
    KARG(k, a++, kl);
    KARG(k, a++, offset);
    KARG(k, a++, noise->row0);
    KARG(k, a++, rows);
    KARG(k, a++, s->latent);
    KARG(k, a++, seed_lo);
    KARG(k, a++, seed_hi);
    KARG(k, a++, step_lo);
    KARG(k, a++, step_hi);
    KARG(k, a++, stream);
    KARG(k, a++, noise->scale);
    size_t global = (size_t)rows;
    clrt_launch(s->rt, k, 1, &global, NULL);
}

void sampler_backward(const struct sampler *s, const struct sampler_buffers *b, int rows,
                      float noise_scale, float beta_scale, float free_bits)
{
    cl_kernel k = free_bits > 0 ? s->k_backward_free_bits : s->k_backward;
    cl_uint a = 0;
    KARG(k, a++, b->dz);
    KARG(k, a++, b->ml);
    KARG(k, a++, b->eps);
    KARG(k, a++, b->dml);
    KARG(k, a++, rows);
    KARG(k, a++, s->latent);
    KARG(k, a++, beta_scale);
    KARG(k, a++, noise_scale);
    if (free_bits > 0)
        KARG(k, a++, free_bits);
    // The free-bits kernel takes a dimension a work-item (its mean is over all the rows).
    size_t global = free_bits > 0 ? (size_t)s->latent : (size_t)rows;
    clrt_launch(s->rt, k, 1, &global, NULL);
}

void sampler_prior(const struct sampler *s, cl_mem z, int rows, uint64_t seed, uint64_t step,
                   uint32_t stream)
{
    cl_kernel k = s->k_prior;
    int n = rows * s->latent;
    cl_uint seed_lo = (cl_uint)seed, seed_hi = (cl_uint)(seed >> 32);
    cl_uint step_lo = (cl_uint)step, step_hi = (cl_uint)(step >> 32), a = 0;
    KARG(k, a++, z);
    KARG(k, a++, n);
    KARG(k, a++, seed_lo);
    KARG(k, a++, seed_hi);
    KARG(k, a++, step_lo);
    KARG(k, a++, step_hi);
    KARG(k, a++, stream);
    size_t global = (size_t)n;
    clrt_launch(s->rt, k, 1, &global, NULL);
}

void sampler_binarize(const struct sampler *s, cl_mem x, int rows, int dim, cl_mem index, int start,
                      uint64_t seed, uint32_t epoch, uint32_t stream)
{
    cl_kernel k = s->k_binarize;
    cl_uint seed_lo = (cl_uint)seed, seed_hi = (cl_uint)(seed >> 32), a = 0;
    KARG(k, a++, x);
    KARG(k, a++, rows);
    KARG(k, a++, dim);
    KARG(k, a++, index);
    KARG(k, a++, start);
    KARG(k, a++, seed_lo);
    KARG(k, a++, seed_hi);
    KARG(k, a++, epoch);
    KARG(k, a++, stream);
    size_t global[2] = {(size_t)dim, (size_t)rows};
    clrt_launch(s->rt, k, 2, global, NULL);
}
