// Opening a trained model for use: its checkpoint loaded, the device opened, the kernels built, the
// model created and its parameters uploaded.
#ifndef CLVAE_MODEL_IO_H
#define CLVAE_MODEL_IO_H

#include <stddef.h>
#include <stdint.h>

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

// What model_io_open does once the device is open and built: creates vae on rt for ckpt's model,
// up to max_rows images at once, and uploads the checkpoint's parameters (path names the
// checkpoint in messages). On failure vae is released. libclvae loads models onto a device it
// opened with it.
int model_io_upload(struct vae *vae, struct clrt *rt, const struct ckpt *ckpt, const char *path,
                    int max_rows, struct clvae_error *err);

#define MODEL_IO_DECODE_ROWS 1024 // images decoded at once; vae->max_rows must be at least this

// z (rows, latent) on the host -> the decoded images' pixel means (rows, in_dim) in [0, 1] into
// mean (unless NULL) and as bytes into pixels (unless NULL), MODEL_IO_DECODE_ROWS at a time; a
// conditional model's as the classes labels (rows) say. Waits for the device.
void model_io_decode(struct vae *vae, const float *z, const int *labels, int rows, float *mean,
                     uint8_t *pixels);

// The draws of z ~ N(0, T^2 I) that `clvae generate` decodes: z[i] = temperature times Philox's
// normal number i of seed's grid stream, for i < count.
void model_io_prior(float *z, size_t count, uint64_t seed, double temperature);

// A model trained with --binarize (meta->binarize): the images [start, start + rows) of vae->x,
// numbered by index, drawn as training's evaluation draws the test images (once, with a fixed key;
// the training seed); nothing otherwise. Enqueued.
void model_io_binarize(const struct ckpt_meta *meta, struct vae *vae, cl_mem index, int start,
                       int rows);

#endif
