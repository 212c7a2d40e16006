// libFuzzer harness for idx_read_images, idx_read_images_into (training's path: the pixels go
// to a destination the caller provides) and idx_read_labels, raw and gzip. The input is the file
// itself when its first byte is below 0x80 (every real IDX file starts with 0x00, every gzip file
// with 0x1f: the fuzzer mutates the gzip container directly); a first byte from 0x80
// gzip-compresses the rest at level (byte & 0x7f) % 10 before writing it, so the fuzzer also
// mutates the decompressed content. Every return of the readers is fine: only crashes, leaks and
// sanitizer reports are findings.
#include <stdint.h>
#include <stdlib.h>
#include <zlib.h>

#include "fuzz_file.h"
#include "idx.h"

#define GZIP_MODE 0x80

// data (size) -> a gzip member (windowBits 31) in a new buffer of *out_size bytes.
static uint8_t *gzip(const uint8_t *data, size_t size, int level, size_t *out_size)
{
    z_stream zs = {0};
    if (deflateInit2(&zs, level, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        abort();
    uLong bound = deflateBound(&zs, (uLong)size);
    uint8_t *out = malloc(bound);
    if (!out)
        abort();
    zs.next_in = (Bytef *)data;
    zs.avail_in = (uInt)size;
    zs.next_out = out;
    zs.avail_out = (uInt)bound;
    if (deflate(&zs, Z_FINISH) != Z_STREAM_END)
        abort();
    *out_size = zs.total_out;
    deflateEnd(&zs);
    return out;
}

// idx_read_images_into's destination: one exact-size heap block (ASan checks the reader keeps to
// it), freed by the harness whatever the reader returns.
struct dest {
    uint8_t *block;
    int calls;
};

static uint8_t *dest_alloc(void *ctx, size_t bytes, struct clvae_error *err)
{
    struct dest *d = ctx;
    // A second call would leak the first block: LeakSanitizer reports it.
    d->calls++;
    d->block = malloc(bytes ? bytes : 1);
    if (!d->block)
        clvae_fail(err, CLVAE_EXIT_FAILURE, "fuzz_idx: out of memory (%zu bytes)", bytes);
    return d->block;
}

// Reads every pixel, so that AddressSanitizer checks the buffer holds what the header says.
static void touch(const struct idx_images *images)
{
    fuzz_touch(images->pixels, (size_t)images->count * images->rows * images->cols);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path;
    if (size > 0 && data[0] >= GZIP_MODE) {
        size_t gz_size;
        uint8_t *gz = gzip(data + 1, size - 1, (data[0] & 0x7f) % 10, &gz_size);
        path = fuzz_write_file("images-idx3-ubyte", gz, gz_size);
        free(gz);
    } else {
        path = fuzz_write_file("images-idx3-ubyte", data, size);
    }

    struct idx_images images;
    struct clvae_error err;
    int rc = idx_read_images(path, &images, &err);
    fuzz_report("idx_read_images", rc, &err);
    if (rc == 0)
        touch(&images);
    idx_free(&images);

    struct dest d = {0};
    rc = idx_read_images_into(path, &images, dest_alloc, &d, &err);
    fuzz_report("idx_read_images_into", rc, &err);
    if (rc == 0)
        touch(&images);
    free(d.block);

    // The same bytes as a label file (IDX1): the corpus's rank-1 seeds reach it.
    rc = idx_read_labels(path, &images, &err);
    fuzz_report("idx_read_labels", rc, &err);
    if (rc == 0)
        touch(&images);
    idx_free(&images);
    return 0;
}
