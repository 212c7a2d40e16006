// Samples 64 images from a checkpoint: the draws of `clvae generate -n 64 --seed SEED`, written as
// its PNG grid and its --raw floats. Build and run (docs/library.md):
//   cc sample.c $(pkg-config --cflags --libs clvae) -o sample
//   ./sample model.safetensors 1 samples.png samples.raw
#include <clvae.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    struct clvae_status st = {0, "usage: sample MODEL SEED OUT.png OUT.raw"};
    struct clvae_device *dev;
    struct clvae_model *model;
    struct clvae_shape shape;
    if (argc != 5 || clvae_device_open(NULL, NULL, &dev, &st) ||
        clvae_model_load(dev, argv[1], &model, &st) || clvae_model_shape(model, &shape, &st))
        return fprintf(stderr, "sample: %s\n", st.message), 1;
    size_t count = 64 * (size_t)shape.pixels;
    float *images = malloc(count * sizeof(float));
    FILE *raw = NULL;
    if (!images || clvae_sample(model, 64, strtoull(argv[2], NULL, 10), 1.0, -1, images, &st) ||
        clvae_write_png_grid(argv[3], &shape, images, 64, 0, &st) ||
        !(raw = fopen(argv[4], "wb")) || fwrite(images, sizeof(float), count, raw) != count ||
        fclose(raw) != 0)
        return fprintf(stderr, "sample: %s\n", st.message[0] ? st.message : argv[4]), 1;
    free(images);
    clvae_model_close(model);
    clvae_device_close(dev);
    return 0;
}
