// Opening a trained model for use: its checkpoint loaded, the device opened, the kernels built, the
// model created and its parameters uploaded.
#ifndef CLVAE_MODEL_IO_H
#define CLVAE_MODEL_IO_H

#include "checkpoint.h"
#include "cl_runtime.h"
#include "vae.h"

struct model_io {
    struct ckpt ckpt;
    struct clrt rt;
    struct vae vae;
};

// Loads path, opens platform/device (as clrt_open selects them), builds, creates the model for up
// to max_rows images at once and uploads its parameters. On failure everything is released.
int model_io_open(struct model_io *m, const char *path, const char *platform, const char *device,
                  int max_rows, struct clvae_error *err);
void model_io_close(struct model_io *m);

#endif
