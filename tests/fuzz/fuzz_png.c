// libFuzzer harness for the PNG reader of image folders (src/data/image_folder.c): the input is a
// PNG file. image_png_header reads its header, as the header pass does; image_decode_png decodes
// it, at its own size (no resizing: the exact path) when the header reads and the image is at most
// 64x64, and resized by stb_image_resize to 7x5 otherwise, over a colour background, with the
// channels the header suggests. The fuzz build ignores chunk CRCs and zlib's Adler-32 (see
// reader_open), so mutated chunks reach the decoder. Every return of the reader is fine: the
// findings are crashes, leaks and sanitizer reports, and a decoder that held more memory than
// image_decode_bound allows for the image (by the reader's own count) or kept any after it
// returned: it aborts then.
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "fuzz_file.h"
#include "image_folder.h"

#define NATIVE_MAX 64                         // the largest side decoded at its own size
#define DECODE_MAX_PIXELS ((uint64_t)1 << 22) // the largest image decoded at all

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct image_png_header h;
    struct clvae_error err;
    int rc = image_png_header(data, size, "input.png", &h, &err);
    fuzz_report("image_png_header", rc, &err);
    bool h_ok = rc == 0;

    struct image_format fmt = {.channels = 1, .width = 7, .height = 5, .background = {255, 0, 128}};
    if (rc == 0) {
        fmt.channels = h.colour || h.transparency ? 3 : 1;
        if (h.width <= NATIVE_MAX && h.height <= NATIVE_MAX) {
            fmt.width = (int)h.width;
            fmt.height = (int)h.height;
        }
    }
    // An 8 KiB input cannot hold a valid image much over a million pixels (deflate compresses
    // at most about 1000:1): a header claiming more would only make the decoder allocate the
    // RGBA image it resizes (up to 256 MiB) for data that is not there.
    if (rc == 0 && (uint64_t)h.width * h.height > DECODE_MAX_PIXELS)
        return 0;
    size_t bytes = (size_t)fmt.width * fmt.height * fmt.channels;
    uint8_t *out = malloc(bytes);
    if (!out)
        abort();
    struct image_decode_stats st;
    rc = image_decode_png(data, size, "input.png", &fmt, out, &st, &err);
    fuzz_report("image_decode_png", rc, &err);
    // A header that does not read stops the decoder at the same place: the fixed part only.
    uint64_t bound = image_decode_bound(h_ok ? h.width : 0, h_ok ? h.height : 0, &fmt);
    if (st.peak_bytes > bound || st.held_after != 0) {
        fprintf(stderr,
                "fuzz_png: the decoder held %zu bytes at most (bound %llu for %ux%u), %zu "
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
