// IDX image files (the MNIST family's format): gzip-compressed or raw, any image size.
#ifndef CLVAE_IDX_H
#define CLVAE_IDX_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

// The largest pixel payload clvae accepts (count * rows * cols bytes); larger headers are refused
// before anything is allocated.
#define IDX_MAX_BYTES ((uint64_t)4 << 30)

// count images of rows x cols unsigned bytes, row-major, image after image.
struct idx_images {
    uint32_t count, rows, cols;
    uint8_t *pixels;
};

// Reads an IDX3 unsigned-byte file (magic 0x00000803), gzip or raw (told apart by content); path
// must be a regular file (a FIFO or a device is refused, never waited on). On failure returns -1
// with err->status CLVAE_EXIT_DATA and a message naming path.
int idx_read_images(const char *path, struct idx_images *out, struct clvae_error *err);

// Where idx_read_images_into puts the pixels: called once with the payload's size in bytes, after
// the header (and whatever the file can tell of its length) has been checked; returns the
// destination, or NULL with err filled.
typedef uint8_t *(*idx_dest_fn)(void *ctx, size_t bytes, struct clvae_error *err);

// idx_read_images into memory the caller provides (a mapped device buffer, so that the data set
// is not held twice); out->pixels points there and is not the reader's to free. A gzip file goes
// straight to the destination when its trailer's length agrees with the header; otherwise it is
// staged in host memory that grows only as data arrives, as idx_read_images does.
int idx_read_images_into(const char *path, struct idx_images *out, idx_dest_fn dest, void *ctx,
                         struct clvae_error *err);

// Finds DIR/STEM.gz, else DIR/STEM; writes the path found into path (size len).
// Reads an IDX1 unsigned-byte label file, gzip or raw, into memory of its own: labels->count
// labels at labels->pixels (rows and cols 1). Errors as idx_read_images'.
int idx_read_labels(const char *path, struct idx_images *labels, struct clvae_error *err);

int idx_find(const char *dir, const char *stem, char *path, size_t len, struct clvae_error *err);

void idx_free(struct idx_images *images);

#endif
