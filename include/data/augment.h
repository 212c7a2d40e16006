// Random horizontal flips of training images (--flip), keyed so that a resumed run flips the same
// images in the same epochs: image i of the training set is flipped in epoch e when the low bit
// of philox_block(seed, i, e, AUGMENT_FLIP_STREAM)'s first word is 1, whatever the order, the
// batch or the ranks. The training set is held twice on the device, as read and mirrored
// (augment_mirror), and a flipped image's index in the epoch's order points at its mirror
// (augment_flip_order): the batch gather reads whichever the index says, and with --flip off
// nothing of this runs. The test set is never flipped.
#ifndef CLVAE_AUGMENT_H
#define CLVAE_AUGMENT_H

#include <stdbool.h>
#include <stdint.h>

#include "image_folder.h"

// The Philox stream of the flips: "FLIP", far from philox.h's small stream numbers.
#define AUGMENT_FLIP_STREAM 0x464c4950u

// Whether image i is flipped in epoch (epochs count from 1).
bool augment_flipped(uint64_t seed, uint32_t image, int epoch);

// set's images mirrored left to right into out (set->count images of set's size): pixel (y, x)
// of an image is pixel (y, width - 1 - x) of its mirror, every channel moved together.
void augment_mirror(const struct image_set *set, uint8_t *out);

// order (n indices into the training set) -> the same with each image flipped this epoch moved
// to its mirror, index + n.
void augment_flip_order(int *order, int n, uint64_t seed, int epoch);

#endif
