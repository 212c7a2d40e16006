#include "model_io.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "likelihood.h"
#include "philox.h"
#include "sampler.h"

int model_io_open(struct model_io *m, const char *path, const char *platform, const char *device,
                  int max_rows, struct clvae_error *err)
{
    memset(m, 0, sizeof *m);
    if (checkpoint_load(path, &m->ckpt, err))
        return -1;
    if (clrt_open(&m->rt, platform, device, false, err) || clrt_build(&m->rt, err) ||
        model_io_upload(&m->vae, &m->rt, &m->ckpt, path, max_rows, err)) {
        model_io_close(m);
        return -1;
    }
    return 0;
}

int model_io_upload(struct vae *vae, struct clrt *rt, const struct ckpt *ckpt, const char *path,
                    int max_rows, struct clvae_error *err)
{
    if (vae_create(vae, rt, &ckpt->meta.cfg, max_rows, path, err))
        return -1;
    // The upload reads vae.n_params floats from the checkpoint's array: the same architecture laid
    // out twice, so never different but for a bug, which must not become a read past its end.
    if (vae->n_params != ckpt->n_params) {
        size_t want = vae->n_params, have = ckpt->n_params;
        vae_release(vae);
        return clvae_fail(err, CLVAE_EXIT_FAILURE,
                          "%s: the model takes %zu parameters but the checkpoint holds %zu", path,
                          want, have);
    }
    clrt_parts_write(rt, &vae->params, ckpt->params, true);
    return 0;
}

void model_io_decode(struct vae *vae, const float *z, const int *labels, int rows, float *mean,
                     uint8_t *pixels)
{
    size_t latent = (size_t)vae->cfg.latent, dim = (size_t)vae->cfg.in_dim;
    size_t out_dim = (size_t)vae->out_dim;
    float *out = xmalloc((size_t)MODEL_IO_DECODE_ROWS * out_dim * sizeof(float));
    float *chunk = xmalloc((size_t)MODEL_IO_DECODE_ROWS * dim * sizeof(float));
    for (int start = 0; start < rows; start += MODEL_IO_DECODE_ROWS) {
        int n = rows - start < MODEL_IO_DECODE_ROWS ? rows - start : MODEL_IO_DECODE_ROWS;
        clrt_write(vae->rt, vae->z, 0, (size_t)n * latent * sizeof(float),
                   z + (size_t)start * latent, false);
        if (labels)
            vae_set_labels(vae, labels + start, n);
        vae_decode(vae, n);
        clrt_read(vae->rt, vae->logits, 0, (size_t)n * out_dim * sizeof(float), out, true);
        likelihood_mean(vae->cfg.likelihood, out, n, (int)dim, vae->cfg.channels, chunk);
        size_t first = (size_t)start * dim, count = (size_t)n * dim;
        if (mean)
            memcpy(mean + first, chunk, count * sizeof(float));
        for (size_t i = 0; pixels && i < count; i++)
            pixels[first + i] = (uint8_t)lrintf(fminf(fmaxf(chunk[i], 0.0f), 1.0f) * 255.0f);
    }
    free(out);
    free(chunk);
}

void model_io_prior(float *z, size_t count, uint64_t seed, double temperature)
{
    for (size_t i = 0; i < count; i++)
        z[i] = (float)(temperature * philox_normal(seed, (uint32_t)i, 0, PHILOX_STREAM_GRID));
}

void model_io_binarize(const struct ckpt_meta *meta, struct vae *vae, cl_mem index, int start,
                       int rows)
{
    if (!meta->binarize)
        return;
    vae_gather_now(vae);
    sampler_binarize(&vae->sampler, vae->x, rows, meta->cfg.in_dim, index, start, meta->seed, 0,
                     PHILOX_STREAM_BINARIZE_TEST);
}

void model_io_close(struct model_io *m)
{
    if (m->rt.queue)
        clrt_finish(&m->rt);
    vae_release(&m->vae);
    clrt_close(&m->rt);
    checkpoint_free(&m->ckpt);
    memset(m, 0, sizeof *m);
}
