// Philox4x32-10 on the host: the same numbers cl/common.cl (philox4x32_10, philox_normal) draws on
// the device, for parameter initialisation, shuffling, and the tests' reference computations.
#ifndef CLVAE_PHILOX_H
#define CLVAE_PHILOX_H

#include <stdint.h>

// Random streams: the fourth counter word, so no two uses of one seed share numbers.
enum philox_stream {
    PHILOX_STREAM_TRAIN = 0, // the reparameterisation noise of training step `step`
    PHILOX_STREAM_EVAL = 1,  // the noise of the test-set evaluation after epoch `step`
    PHILOX_STREAM_GRID = 2,  // the fixed prior samples drawn into every epoch's sample grid
    PHILOX_STREAM_INIT = 3,  // parameter initialisation
    PHILOX_STREAM_SHUFFLE = 4,
    PHILOX_STREAM_IWAE = 5, // importance samples of clvae eval: counter (sample*latent+d, image)
    PHILOX_STREAM_BINARIZE = 6,      // --binarize's training pixels: counter (pixel, image, epoch)
    PHILOX_STREAM_BINARIZE_TEST = 7, // --binarize's test pixels, fixed: (pixel, image, 0)
};

// counter (4 words), key (2 words) -> out (4 words).
void philox4x32_10(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

// The block for counter (index, step, stream) under seed.
void philox_block(uint64_t seed, uint32_t index, uint64_t step, uint32_t stream, uint32_t out[4]);

// The standard normal the device's philox_normal draws for the same counter, in double.
double philox_normal(uint64_t seed, uint32_t index, uint64_t step, uint32_t stream);

// A uniform double in [0, 1) from the block's first word.
double philox_uniform(uint64_t seed, uint32_t index, uint64_t step, uint32_t stream);

#endif
