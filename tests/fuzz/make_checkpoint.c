// Writes a tiny checkpoint with checkpoint_save, for make_corpus.py's seed files:
//   make_checkpoint PATH HIDDEN none|adam
// images of 2x3 (in_dim 6), dense hidden widths HIDDEN ("5" or "5,3", the decoder mirroring them),
// latent 2, and made-up values, in the current format version.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"

int main(int argc, char **argv)
{
    if (argc != 4 || (strcmp(argv[3], "none") != 0 && strcmp(argv[3], "adam") != 0)) {
        fprintf(stderr, "usage: make_checkpoint PATH HIDDEN none|adam\n");
        return 2;
    }
    struct ckpt_meta meta = {
        .cfg = {.in_dim = 6, .latent = 2},
        .image_rows = 2,
        .image_cols = 3,
        .channels = 1,
        .background = {255, 255, 255},
        .test_split = 0.1,
        .batch = 4,
        .lr = 1e-3,
        .beta = 1,
        .seed = 7,
        .epoch = 1,
        .step = 3,
        .epoch_step = 0,
    };
    struct clvae_error err;
    struct vae vae;
    if (vae_parse_hidden("HIDDEN", argv[2], &meta.cfg, &err) ||
        vae_layout(&vae, &meta.cfg, "HIDDEN", &err)) {
        clvae_print_error(&err);
        return 2;
    }
    float *arrays[3];
    for (int a = 0; a < 3; a++) {
        arrays[a] = xmalloc(vae.n_params * sizeof(float));
        // Small distinct values, exact in decimal, so a file reads the same everywhere.
        for (size_t k = 0; k < vae.n_params; k++)
            arrays[a][k] = (float)((int)((k * 37 + 11 * (size_t)a) % 64) - 32) / 64.0f;
    }
    bool adam = strcmp(argv[3], "adam") == 0;
    int rc = checkpoint_save(argv[1], &meta, arrays[0], adam ? arrays[1] : NULL,
                             adam ? arrays[2] : NULL, &err);
    if (rc != 0)
        clvae_print_error(&err);
    for (int a = 0; a < 3; a++)
        free(arrays[a]);
    return rc == 0 ? 0 : 1;
}
