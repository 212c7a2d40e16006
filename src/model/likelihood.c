#include "likelihood.h"

#include <math.h>
#include <string.h>

#include "vae.h"

static const char *const names[] = {
    [LIKELIHOOD_BERNOULLI] = "bernoulli", [LIKELIHOOD_LOGISTIC] = "logistic"};

int likelihood_outputs(enum likelihood_kind kind)
{
    return kind == LIKELIHOOD_LOGISTIC ? 2 : 1;
}

const char *likelihood_name(enum likelihood_kind kind)
{
    return names[kind];
}

int likelihood_parse(const char *option, const char *name, enum likelihood_kind *kind,
                     struct clvae_error *err)
{
    for (int k = 0; k < (int)(sizeof names / sizeof names[0]); k++) {
        if (strcmp(name, names[k]) == 0) {
            *kind = (enum likelihood_kind)k;
            return 0;
        }
    }
    return clvae_fail(err, CLVAE_EXIT_USAGE, "%s: '%s' is not a likelihood (bernoulli or logistic)",
                      option, name);
}

bool likelihood_discrete(enum likelihood_kind kind)
{
    return kind == LIKELIHOOD_LOGISTIC;
}

// The mean of the discretised logistic (cl/likelihood.cl) with location mu and log-scale u:
// sum_k k/255 P(k) = (1/255) sum_{k=1}^{255} P(level >= k) = (1/255) sum_k sigmoid(-(e_k - mu) /
// s), e_k = (k - 1/2) / 255 the edge below level k. Edges more than 30 scales below mu count 1
// (within 1e-13), those above count 0, so a narrow logistic costs a few terms.
static float logistic_mean(float mu, float u)
{
    double s = exp(fmin(fmax(u, -7.0), 15.0)), sum = 0.0;
    double lo = (mu - 30.0 * s) * 255.0 + 0.5, hi = (mu + 30.0 * s) * 255.0 + 0.5;
    int first = lo < 1 ? 1 : lo > 256 ? 256 : (int)ceil(lo);
    int last = hi > 255 ? 255 : hi < 0 ? 0 : (int)floor(hi);
    sum += first - 1; // every edge below the window
    for (int k = first; k <= last; k++)
        sum += 1.0 / (1.0 + exp(((k - 0.5) / 255.0 - mu) / s));
    return (float)(sum / 255.0);
}

void likelihood_mean(enum likelihood_kind kind, const float *out, int rows, int dim, int channels,
                     float *mean)
{
    for (size_t r = 0; r < (size_t)rows; r++) {
        for (int j = 0; j < dim; j++) {
            size_t i = r * (size_t)dim + (size_t)j;
            if (kind == LIKELIHOOD_BERNOULLI) {
                mean[i] = 1.0f / (1.0f + expf(-out[i]));
                continue;
            }
            int p = j / channels, c = j % channels;
            const float *px = out + r * 2 * (size_t)dim + (size_t)p * 2 * (size_t)channels;
            mean[i] = logistic_mean(px[c], px[channels + c]);
        }
    }
}

// The largest power of two <= limit and <= want.
static size_t pow2_at_most(size_t limit, size_t want)
{
    size_t p = 1;
    while (p * 2 <= limit && p * 2 <= want)
        p *= 2;
    return p;
}

void likelihood_create(struct likelihood *lh, struct clrt *rt, enum likelihood_kind kind)
{
    lh->kind = kind;
    lh->k_forward =
        clrt_kernel(rt, kind == LIKELIHOOD_LOGISTIC ? "logistic_nll_grad" : "bce_logits_grad");
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
    if (vae->likelihood.kind == LIKELIHOOD_LOGISTIC)
        KARG(k, a++, vae->cfg.channels);
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
