// 8-bit grey or RGB PNG output through libpng, written atomically.
#ifndef CLVAE_PNG_GRID_H
#define CLVAE_PNG_GRID_H

#include <stdint.h>

#include "error.h"

// The most pixels a side of an image these write: far beyond any grid clvae draws; keeps height *
// width (and every offset) inside an int.
#define PNG_GRID_MAX_SIDE (1 << 15)

// Writes an 8-bit grayscale image (height, width), row-major, to path: written to a temporary file
// in the same directory, flushed, then renamed, so path never holds a partial image.
int png_write_gray(const char *path, const uint8_t *pixels, int height, int width,
                   struct clvae_error *err);

// The same for an image of 1 (grey) or 3 (RGB, interleaved) channels.
int png_write_pixels(const char *path, const uint8_t *pixels, int height, int width, int channels,
                     struct clvae_error *err);

// tiles (n, tile_h, tile_w, channels) -> a grey or RGB grid laid out as png_write_grid's.
int png_write_tiles(const char *path, const uint8_t *tiles, int n, int tile_h, int tile_w,
                    int channels, int cols, int pad, struct clvae_error *err);

// The height and width of a grid of rows x cols tiles as png_write_tiles lays them out (each
// argument positive, pad not negative): 0, or -1 when a side is over PNG_GRID_MAX_SIDE.
int png_grid_size(int rows, int cols, int tile_h, int tile_w, int pad, int64_t *height,
                  int64_t *width);

// tiles (n, tile_h, tile_w) -> a grid of `cols` tiles a row (ceil(n / cols) rows) with `pad` pixels
// of black border around and between tiles; missing tiles in the last row stay black.
int png_write_grid(const char *path, const uint8_t *tiles, int n, int tile_h, int tile_w, int cols,
                   int pad, struct clvae_error *err);

#endif
