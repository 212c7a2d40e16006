// Random horizontal flips of training images (see include/data/augment.h).
#include "augment.h"

#include <string.h>

#include "philox.h"

bool augment_flipped(uint64_t seed, uint32_t image, int epoch)
{
    uint32_t r[4];
    philox_block(seed, image, (uint64_t)epoch, AUGMENT_FLIP_STREAM, r);
    return r[0] & 1;
}

void augment_mirror(const struct image_set *set, uint8_t *out)
{
    size_t c = set->channels, w = set->width, row = w * c;
    size_t rows = (size_t)set->count * set->height;
    for (size_t y = 0; y < rows; y++) {
        const uint8_t *src = set->pixels + y * row;
        uint8_t *dst = out + y * row;
        for (size_t x = 0; x < w; x++)
            memcpy(dst + x * c, src + (w - 1 - x) * c, c);
    }
}

void augment_flip_order(int *order, int n, uint64_t seed, int epoch)
{
    for (int p = 0; p < n; p++)
        if (augment_flipped(seed, (uint32_t)order[p], epoch))
            order[p] += n;
}
