#include "sampler.h"

#include "vae.h"

void sampler_create(struct sampler *s, struct clrt *rt)
{
    s->k_forward = clrt_kernel(rt, "reparameterize");
    s->k_backward = clrt_kernel(rt, "reparameterize_backward");
    s->k_prior = clrt_kernel(rt, "sample_normal");
}

void sampler_release(struct sampler *s)
{
    cl_kernel kernels[] = {s->k_forward, s->k_backward, s->k_prior};
    for (size_t i = 0; i < sizeof kernels / sizeof kernels[0]; i++)
        if (kernels[i])
            clReleaseKernel(kernels[i]);
    *s = (struct sampler){0};
}

void sampler_forward(struct vae *vae, const struct vae_pass *pass)
{
    cl_kernel k = vae->sampler.k_forward;
    cl_uint seed_lo = (cl_uint)pass->seed, seed_hi = (cl_uint)(pass->seed >> 32);
    cl_uint step_lo = (cl_uint)pass->step, step_hi = (cl_uint)(pass->step >> 32);
    cl_uint stream = pass->stream, a = 0;
    KARG(k, a++, vae->ml);
    KARG(k, a++, vae->z);
    KARG(k, a++, vae->eps);
    KARG(k, a++, pass->kl);
    KARG(k, a++, pass->offset);
    KARG(k, a++, pass->noise_row0);
    KARG(k, a++, pass->rows);
    KARG(k, a++, vae->cfg.latent);
    KARG(k, a++, seed_lo);
    KARG(k, a++, seed_hi);
    KARG(k, a++, step_lo);
    KARG(k, a++, step_hi);
    KARG(k, a++, stream);
    KARG(k, a++, pass->noise_scale);
    size_t global = (size_t)pass->rows;
    clrt_launch(vae->rt, k, 1, &global, NULL);
}

void sampler_backward(struct vae *vae, const struct vae_pass *pass, float beta)
{
    cl_kernel k = vae->sampler.k_backward;
    float beta_scale = beta * pass->grad_scale;
    cl_uint a = 0;
    KARG(k, a++, vae->dz);
    KARG(k, a++, vae->ml);
    KARG(k, a++, vae->eps);
    KARG(k, a++, vae->dml);
    KARG(k, a++, pass->rows);
    KARG(k, a++, vae->cfg.latent);
    KARG(k, a++, beta_scale);
    KARG(k, a++, pass->noise_scale);
    size_t global = (size_t)pass->rows;
    clrt_launch(vae->rt, k, 1, &global, NULL);
}

void sampler_prior(struct vae *vae, int rows, uint64_t seed, uint64_t step, uint32_t stream)
{
    cl_kernel k = vae->sampler.k_prior;
    int n = rows * vae->cfg.latent;
    cl_uint seed_lo = (cl_uint)seed, seed_hi = (cl_uint)(seed >> 32);
    cl_uint step_lo = (cl_uint)step, step_hi = (cl_uint)(step >> 32), a = 0;
    KARG(k, a++, vae->z);
    KARG(k, a++, n);
    KARG(k, a++, seed_lo);
    KARG(k, a++, seed_hi);
    KARG(k, a++, step_lo);
    KARG(k, a++, step_hi);
    KARG(k, a++, stream);
    size_t global = (size_t)n;
    clrt_launch(vae->rt, k, 1, &global, NULL);
}
