#include "model_io.h"

#include <string.h>

int model_io_open(struct model_io *m, const char *path, const char *platform, const char *device,
                  int max_rows, struct clvae_error *err)
{
    memset(m, 0, sizeof *m);
    if (checkpoint_load(path, &m->ckpt, err))
        return -1;
    if (clrt_open(&m->rt, platform, device, false, err) || clrt_build(&m->rt, err) ||
        vae_create(&m->vae, &m->rt, &m->ckpt.meta.cfg, max_rows, path, err)) {
        model_io_close(m);
        return -1;
    }
    // The upload reads vae.n_params floats from the checkpoint's array: the same architecture laid
    // out twice, so never different but for a bug, which must not become a read past its end.
    if (m->vae.n_params != m->ckpt.n_params) {
        size_t want = m->vae.n_params, have = m->ckpt.n_params;
        model_io_close(m);
        return clvae_fail(err, CLVAE_EXIT_FAILURE,
                          "%s: the model takes %zu parameters but the checkpoint holds %zu", path,
                          want, have);
    }
    clrt_parts_write(&m->rt, &m->vae.params, m->ckpt.params, true);
    return 0;
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
