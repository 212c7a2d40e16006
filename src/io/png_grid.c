#include "png_grid.h"

#include "atomic_file.h"

#include <errno.h>
#include <fcntl.h>
#include <png.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

// The output stream and the first failure met while libpng wrote to it.
struct png_sink {
    FILE *fp;
    int failed;
    char msg[CLVAE_ERROR_MAX];
};

// Records msg unless a failure was already recorded: the first one is the cause, later ones follow.
static void sink_note(struct png_sink *sink, const char *msg)
{
    if (!sink->failed) {
        snprintf(sink->msg, sizeof sink->msg, "%s", msg);
        sink->failed = 1;
    }
}

// libpng error callback: keeps the message (the module never prints) and unwinds to the setjmp.
static void on_png_error(png_structp png, png_const_charp msg)
{
    sink_note(png_get_error_ptr(png), msg);
    png_longjmp(png, 1);
}

// libpng warning callback: a warning does not make the image wrong, and the module never prints.
static void on_png_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;
}

// libpng write callback: goes through stdio, keeping errno's text so a full disk reads as such.
static void on_png_write(png_structp png, png_bytep data, size_t len)
{
    struct png_sink *sink = png_get_io_ptr(png);
    if (fwrite(data, 1, len, sink->fp) != len) {
        sink_note(sink, strerror(errno));
        png_error(png, "write failed");
    }
}

// libpng flush callback: flushes stdio, keeping errno's text on failure.
static void on_png_flush(png_structp png)
{
    struct png_sink *sink = png_get_io_ptr(png);
    if (fflush(sink->fp) != 0) {
        sink_note(sink, strerror(errno));
        png_error(png, "flush failed");
    }
}

// Hands the rows (row bytes each) to libpng; kept out of png_write_stream so no local changes
// after its setjmp.
static void write_rows(png_structp png, const uint8_t *pixels, int height, size_t row)
{
    for (int y = 0; y < height; y++) {
        png_write_row(png, pixels + (size_t)y * row);
    }
}

// Encodes the image (grey for 1 channel, RGB for 3) into sink->fp; returns -1 with sink->msg set
// when libpng or the stream fails.
static int png_write_stream(struct png_sink *sink, const uint8_t *pixels, int height, int width,
                            int channels)
{
    png_structp png =
        png_create_write_struct(PNG_LIBPNG_VER_STRING, sink, on_png_error, on_png_warning);
    if (!png) {
        sink_note(sink, "cannot create the libpng write structure");
        return -1;
    }
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        sink_note(sink, "cannot create the libpng info structure");
        return -1;
    }
    // png and info are not modified past this point until the destroy, so they survive a longjmp.
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        return -1;
    }
    png_set_write_fn(png, sink, on_png_write, on_png_flush);
    png_set_IHDR(png, info, (png_uint_32)width, (png_uint_32)height, 8,
                 channels == 3 ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    write_rows(png, pixels, height, (size_t)width * (size_t)channels);
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    return 0;
}

// Validates, then writes path atomically (include/io/atomic_file.h).
int png_write_pixels(const char *path, const uint8_t *pixels, int height, int width, int channels,
                     struct clvae_error *err)
{
    if (!path || !*path) {
        return clvae_fail(err, CLVAE_EXIT_FAILURE, "png_write_gray: empty output path");
    }
    if (!pixels) {
        return clvae_fail(err, CLVAE_EXIT_FAILURE, "%s: png_write_gray: no pixels", path);
    }
    if (channels != 1 && channels != 3) {
        return clvae_fail(err, CLVAE_EXIT_FAILURE, "%s: png_write_pixels: %d channels, not 1 or 3",
                          path, channels);
    }
    if (height <= 0 || width <= 0 || height > PNG_GRID_MAX_SIDE || width > PNG_GRID_MAX_SIDE) {
        return clvae_fail(err, CLVAE_EXIT_FAILURE,
                          "%s: png_write_gray: image size %dx%d outside 1..%d per side", path,
                          height, width, PNG_GRID_MAX_SIDE);
    }

    struct atomic_file out;
    if (atomic_file_open(&out, path, err))
        return -1;
    struct png_sink sink = {.fp = out.fp};
    png_write_stream(&sink, pixels, height, width, channels);
    if (sink.failed) {
        atomic_file_abort(&out);
        return clvae_fail(err, CLVAE_EXIT_OUTPUT, "%s: %s", path, sink.msg);
    }
    return atomic_file_commit(&out, err);
}

int png_write_gray(const char *path, const uint8_t *pixels, int height, int width,
                   struct clvae_error *err)
{
    return png_write_pixels(path, pixels, height, width, 1, err);
}

int png_write_grid(const char *path, const uint8_t *tiles, int n, int tile_h, int tile_w, int cols,
                   int pad, struct clvae_error *err)
{
    return png_write_tiles(path, tiles, n, tile_h, tile_w, 1, cols, pad, err);
}

int png_grid_size(int rows, int cols, int tile_h, int tile_w, int pad, int64_t *height,
                  int64_t *width)
{
    // In 64 bits: each factor is below 2^31, so no product or sum here can overflow.
    *height = (int64_t)rows * tile_h + ((int64_t)rows + 1) * pad;
    *width = (int64_t)cols * tile_w + ((int64_t)cols + 1) * pad;
    return *height > PNG_GRID_MAX_SIDE || *width > PNG_GRID_MAX_SIDE ? -1 : 0;
}

// Lays the tiles out on a black canvas in memory and writes it with png_write_image.
int png_write_tiles(const char *path, const uint8_t *tiles, int n, int tile_h, int tile_w,
                    int channels, int cols, int pad, struct clvae_error *err)
{
    const char *name = path ? path : "(null)";
    if (!tiles) {
        return clvae_fail(err, CLVAE_EXIT_FAILURE, "%s: png_write_grid: no tiles", name);
    }
    if (n <= 0 || tile_h <= 0 || tile_w <= 0 || cols <= 0 || pad < 0 ||
        (channels != 1 && channels != 3)) {
        return clvae_fail(err, CLVAE_EXIT_FAILURE,
                          "%s: png_write_grid: invalid grid (n %d, tile %dx%dx%d, cols %d, pad %d)",
                          name, n, tile_h, tile_w, channels, cols, pad);
    }
    int64_t grid_h, grid_w;
    if (png_grid_size((int)(((int64_t)n + cols - 1) / cols), cols, tile_h, tile_w, pad, &grid_h,
                      &grid_w)) {
        return clvae_fail(err, CLVAE_EXIT_FAILURE,
                          "%s: png_write_grid: grid of %lldx%lld pixels exceeds %d per side", name,
                          (long long)grid_h, (long long)grid_w, PNG_GRID_MAX_SIDE);
    }

    int height = (int)grid_h;
    int width = (int)grid_w;
    size_t c = (size_t)channels, row = (size_t)width * c, tile_row = (size_t)tile_w * c;
    uint8_t *grid = xcalloc((size_t)height * row, 1);
    size_t tile_size = (size_t)tile_h * tile_row;
    for (int t = 0; t < n; t++) {
        int top = pad + (t / cols) * (tile_h + pad);
        int left = pad + (t % cols) * (tile_w + pad);
        const uint8_t *tile = tiles + (size_t)t * tile_size;
        for (int y = 0; y < tile_h; y++) {
            memcpy(grid + (size_t)(top + y) * row + (size_t)left * c, tile + (size_t)y * tile_row,
                   tile_row);
        }
    }
    int rc = png_write_pixels(path, grid, height, width, channels, err);
    free(grid);
    return rc;
}
