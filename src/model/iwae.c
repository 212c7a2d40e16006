#include "iwae.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "philox.h"

int iwae_create(struct iwae *iw, struct vae *vae, int k, size_t max_log_weights,
                struct clvae_error *err)
{
    memset(iw, 0, sizeof *iw);
    iw->vae = vae;
    iw->k = k;
    if (k < 1 || (uint64_t)k * (uint64_t)vae->cfg.latent > UINT32_MAX)
        return clvae_fail(err, CLVAE_EXIT_USAGE,
                          "-k: %d samples of %d latent dimensions do not fit the noise counter "
                          "(k * latent must be below 2^32)",
                          k, vae->cfg.latent);
    size_t group = max_log_weights / (size_t)k;
    group = group > (size_t)vae->max_rows ? (size_t)vae->max_rows : group;
    group = group < 1 ? 1 : group;
    if (group * (size_t)k > (size_t)INT32_MAX)
        group = (size_t)INT32_MAX / (size_t)k;
    iw->group = (int)group;
    if (!(iw->log_w =
              clrt_buffer(vae->rt, group * (size_t)k * sizeof(float), "IWAE log-weights", err)))
        return -1;
    if (vae->cfg.classes)
        iw->row_labels = xmalloc((size_t)vae->max_rows * sizeof *iw->row_labels);
    iw->k_sample = clrt_kernel(vae->rt, "iwae_sample");
    iw->k_log_likelihood = clrt_kernel(vae->rt, "iwae_log_likelihood");
    iw->k_logsumexp = clrt_kernel(vae->rt, "iwae_logsumexp");
    return 0;
}

void iwae_release(struct iwae *iw)
{
    cl_kernel kernels[] = {iw->k_sample, iw->k_log_likelihood, iw->k_logsumexp};
    for (size_t i = 0; i < sizeof kernels / sizeof kernels[0]; i++)
        clrt_release_kernel(kernels[i]);
    clrt_release_buffer(iw->log_w);
    free(iw->row_labels);
    memset(iw, 0, sizeof *iw);
}

void iwae_log_weights(struct iwae *iw, int image0, int images, uint64_t first_image, uint64_t seed)
{
    struct vae *vae = iw->vae;
    int k = iw->k, latent = vae->cfg.latent, dim = vae->cfg.in_dim;
    int total = images * k;
    uint64_t base = first_image + (uint64_t)image0;
    cl_uint seed_lo = (cl_uint)seed, seed_hi = (cl_uint)(seed >> 32);
    cl_uint base_lo = (cl_uint)base, base_hi = (cl_uint)(base >> 32);
    cl_uint stream = PHILOX_STREAM_IWAE;
    size_t local = vae->likelihood.reduce_local;
    for (int first = 0; first < total; first += vae->max_rows) {
        int rows = total - first < vae->max_rows ? total - first : vae->max_rows;
        cl_kernel kern = iw->k_sample;
        KARG(kern, 0, vae->ml);
        KARG(kern, 1, vae->z);
        KARG(kern, 2, iw->log_w);
        KARG(kern, 3, first);
        KARG(kern, 4, rows);
        KARG(kern, 5, k);
        KARG(kern, 6, image0);
        KARG(kern, 7, latent);
        KARG(kern, 8, seed_lo);
        KARG(kern, 9, seed_hi);
        KARG(kern, 10, base_lo);
        KARG(kern, 11, base_hi);
        KARG(kern, 12, stream);
        size_t global = (size_t)rows;
        clrt_launch(vae->rt, kern, 1, &global, NULL);

        if (iw->row_labels) { // sample first + j is of image image0 + (first + j) / k
            for (int j = 0; j < rows; j++)
                iw->row_labels[j] = iw->labels[base + (uint64_t)((first + j) / k)];
            vae_set_labels(vae, iw->row_labels, rows);
        }
        vae_decode(vae, rows);

        kern = iw->k_log_likelihood;
        KARG(kern, 0, vae->logits);
        KARG(kern, 1, vae->x);
        KARG(kern, 2, iw->log_w);
        KARG(kern, 3, first);
        KARG(kern, 4, k);
        KARG(kern, 5, image0);
        KARG(kern, 6, dim);
        KARG(kern, 7, vae->out_dim);
        cl_int kind = (cl_int)vae->cfg.likelihood;
        KARG(kern, 8, kind);
        KARG(kern, 9, vae->cfg.channels);
        KARG_LOCAL(kern, 10, local * sizeof(float));
        global = (size_t)rows * local;
        clrt_launch(vae->rt, kern, 1, &global, &local);
    }
}

void iwae_logsumexp(struct iwae *iw, int images, cl_mem bound, int offset)
{
    cl_kernel kern = iw->k_logsumexp;
    float log_k = (float)log((double)iw->k);
    size_t local = iw->vae->likelihood.reduce_local, global = (size_t)images * local;
    KARG(kern, 0, iw->log_w);
    KARG(kern, 1, bound);
    KARG(kern, 2, offset);
    KARG(kern, 3, iw->k);
    KARG(kern, 4, log_k);
    KARG_LOCAL(kern, 5, local * sizeof(float));
    clrt_launch(iw->vae->rt, kern, 1, &global, &local);
}

void iwae_bound(struct iwae *iw, int rows, uint64_t first_image, uint64_t seed, cl_mem bound,
                int offset)
{
    for (int image0 = 0; image0 < rows; image0 += iw->group) {
        int images = rows - image0 < iw->group ? rows - image0 : iw->group;
        iwae_log_weights(iw, image0, images, first_image, seed);
        iwae_logsumexp(iw, images, bound, offset + image0);
    }
}
