#include "likelihood.h"

#include "vae.h"

// The largest power of two <= limit and <= want.
static size_t pow2_at_most(size_t limit, size_t want)
{
    size_t p = 1;
    while (p * 2 <= limit && p * 2 <= want)
        p *= 2;
    return p;
}

void likelihood_create(struct likelihood *lh, struct clrt *rt)
{
    lh->k_forward = clrt_kernel(rt, "bce_logits_grad");
    lh->k_row_sum = clrt_kernel(rt, "row_sum");
    size_t kernel_max;
    CL_CHECK(clGetKernelWorkGroupInfo(lh->k_row_sum, rt->device, CL_KERNEL_WORK_GROUP_SIZE,
                                      sizeof kernel_max, &kernel_max, NULL));
    // A CPU runs a work-group's items one after another: one item a row, no barriers. A GPU
    // wants the row spread over a work-group.
    lh->reduce_local = rt->device_type & CL_DEVICE_TYPE_CPU ? 1 : pow2_at_most(kernel_max, 256);
}

void likelihood_release(struct likelihood *lh)
{
    if (lh->k_forward)
        clReleaseKernel(lh->k_forward);
    if (lh->k_row_sum)
        clReleaseKernel(lh->k_row_sum);
    *lh = (struct likelihood){0};
}

void likelihood_forward(struct vae *vae, const struct vae_pass *pass)
{
    int rows = pass->rows, dim = vae->cfg.in_dim;
    cl_kernel k = vae->likelihood.k_forward;
    cl_uint a = 0;
    KARG(k, a++, vae->logits);
    KARG(k, a++, vae->x);
    KARG(k, a++, vae->dlogits);
    KARG(k, a++, vae->terms);
    KARG(k, a++, rows);
    KARG(k, a++, dim);
    KARG(k, a++, pass->grad_scale);
    size_t pixels[2] = {(size_t)dim, (size_t)rows};
    clrt_launch(vae->rt, k, 2, pixels, NULL);

    k = vae->likelihood.k_row_sum;
    size_t local = vae->likelihood.reduce_local, groups = (size_t)rows * local;
    a = 0;
    KARG(k, a++, vae->terms);
    KARG(k, a++, pass->rec);
    KARG(k, a++, pass->offset);
    KARG(k, a++, dim);
    CL_CHECK(clSetKernelArg(k, a++, local * sizeof(float), NULL));
    clrt_launch(vae->rt, k, 1, &groups, &local);
}
