// Writes a tiny checkpoint with checkpoint_save, for make_corpus.py's seed files:
//   make_checkpoint PATH LAYERS none|adam [WxHxC]
// LAYERS is dense hidden widths ("5" or "5,3", the decoder mirroring them, as --hidden), or an
// --encoder layer list ("conv:2:2:2:0"), the decoder its mirror, or "ENCODER;DECODER" with a
// decoder of its own; images of W x H with C channels (default 3x2x1, in_dim 6); latent 2, made-up
// values, in the current format version.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"

// "WxHxC" -> the three sizes; false unless W and H are 1 to 99 and C is 1 or 3.
static bool parse_image(const char *text, int *w, int *h, int *c)
{
    int used = 0;
    return sscanf(text, "%2dx%2dx%1d%n", w, h, c, &used) == 3 && text[used] == '\0' && *w >= 1 &&
           *h >= 1 && (*c == 1 || *c == 3);
}

// LAYERS into cfg's layer lists, errors naming LAYERS.
static int parse_layers(const char *text, struct vae_config *cfg, struct clvae_error *err)
{
    if (!strchr(text, ':'))
        return vae_parse_hidden("LAYERS", text, cfg, err);
    char encoder[512];
    snprintf(encoder, sizeof encoder, "%s", text);
    char *decoder = strchr(encoder, ';');
    if (decoder)
        *decoder++ = '\0';
    return vae_parse_model(NULL, encoder, decoder, cfg, err);
}

int main(int argc, char **argv)
{
    int width = 3, height = 2, channels = 1;
    if (argc < 4 || argc > 5 || (strcmp(argv[3], "none") != 0 && strcmp(argv[3], "adam") != 0) ||
        (argc == 5 && !parse_image(argv[4], &width, &height, &channels))) {
        fprintf(stderr, "usage: make_checkpoint PATH LAYERS none|adam [WxHxC]\n");
        return 2;
    }
    struct ckpt_meta meta = {
        .cfg = {.in_dim = width * height * channels,
                .channels = channels,
                .height = height,
                .width = width,
                .latent = 2},
        .image_rows = height,
        .image_cols = width,
        .channels = channels,
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
    if (parse_layers(argv[2], &meta.cfg, &err) || vae_layout(&vae, &meta.cfg, "LAYERS", &err)) {
        clvae_print_error(&err);
        return 2;
    }
    meta.cfg = vae.cfg; // with the mirrored decoder filled in, as training saves it
    float *arrays[3];
    for (int a = 0; a < 3; a++) {
        arrays[a] = xmalloc(vae.n_params * sizeof(float));
        // Small distinct values, exact in decimal, so a file reads the same everywhere.
        for (size_t k = 0; k < vae.n_params; k++)
            arrays[a][k] = (float)((int)((k * 37 + 11 * (size_t)a) % 64) - 32) / 64.0f;
    }
    bool adam = strcmp(argv[3], "adam") == 0;
    if (adam)
        meta.optimizer = optimizer_defaults(optimizer_find("adam"));
    const float *state[] = {arrays[1], arrays[2]};
    int rc = checkpoint_save(argv[1], &meta, arrays[0], adam ? state : NULL, &err);
    if (rc != 0)
        clvae_print_error(&err);
    for (int a = 0; a < 3; a++)
        free(arrays[a]);
    return rc == 0 ? 0 : 1;
}
