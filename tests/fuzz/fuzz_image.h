// The body of the libFuzzer harnesses of the image readers beside PNG (fuzz_jpeg.c, fuzz_webp.c,
// fuzz_stb.c; include/data/image_decode.h), each defining FUZZ_NAME, the name the input goes by
// (its extension only matters for TGA, which has no signature: fuzz_stb's "input.tga" makes any
// input that no signature claims a TGA). The input is an image file from memory:
// image_read_header reads its header, as the header pass does; image_decode decodes it, at its own
// size (the exact path) when the header reads and the image is at most NATIVE_MAX on each side,
// else to 7x5, stretched or, for inputs of odd length, scaled and centre-cropped, over a colour
// background, with the channels the header suggests. Every return of the reader is fine: the
// findings are crashes, leaks and sanitizer reports, and a decoder that held more memory than
// image_header_bound allows (by the reader's own count, which covers stb_image's allocations but
// not libjpeg's or libwebp's) or kept any after it returned: it aborts then.
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "fuzz_file.h"
#include "image_decode.h"

#define NATIVE_MAX 64                         // the largest side decoded at its own size
#define DECODE_MAX_PIXELS ((uint64_t)1 << 22) // the largest image decoded at all

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct image_header h = {0};
    struct clvae_error err;
    int rc = image_read_header(data, size, FUZZ_NAME, &h, &err);
    fuzz_report("image_read_header", rc, &err);
    bool h_ok = rc == 0;

    struct image_format fmt = {.channels = 1,
                               .width = 7,
                               .height = 5,
                               .background = {255, 0, 128},
                               .crop = size % 2 ? IMAGE_CROP_CENTER : IMAGE_CROP_NONE};
    if (h_ok) {
        fmt.channels = h.colour || h.transparency ? 3 : 1;
        if (h.width <= NATIVE_MAX && h.height <= NATIVE_MAX) {
            fmt.width = (int)h.width;
            fmt.height = (int)h.height;
        }
    }
    // An 8 KiB input cannot hold a valid image much over a million pixels: a header claiming
    // more would only make the decoder allocate what the image would need.
    if (h_ok && (uint64_t)h.width * h.height > DECODE_MAX_PIXELS)
        return 0;
    size_t bytes = (size_t)fmt.width * fmt.height * fmt.channels;
    uint8_t *out = malloc(bytes);
    if (!out)
        abort();
    struct image_decode_stats st;
    rc = image_decode(data, size, FUZZ_NAME, &fmt, out, &st, &err);
    fuzz_report("image_decode", rc, &err);
    // A header that does not read stops the decoder at the same place: the fixed part only.
    uint64_t bound = h_ok ? image_header_bound(&h, &fmt) : IMAGE_DECODE_FIXED_BYTES;
    if (st.peak_bytes > bound || st.held_after != 0) {
        fprintf(stderr,
                "fuzz_image: the decoder held %zu bytes at most (bound %llu for %ux%u), %zu "
                "after it returned\n",
                st.peak_bytes, (unsigned long long)bound, h_ok ? h.width : 0, h_ok ? h.height : 0,
                st.held_after);
        abort();
    }
    if (rc == 0)
        fuzz_touch(out, bytes);
    free(out);
    return 0;
}
