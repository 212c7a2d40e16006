// A folder of PNG images as a data set (see include/data/image_folder.h for the rules): the file list,
// the train/test split, and the two passes that read headers and then decode in parallel.
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include "image_folder.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <png.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <stb_image_resize.h>

#include "idx.h"
#include "philox.h"
#include "regular_file.h"

#define PATH_BYTES 4096          // the longest path built, with its NUL
#define MAX_THREADS 256          // workers of a pass, whatever the host has
#define PROGRESS_NS 100000000L   // the progress bar's period: 10 updates a second
#define PROGRESS_WIDTH 30        // characters between the brackets
#define FEED_BYTES 8192          // bytes handed to libpng at a time (its own reader's IDAT reads)
#define PNG_CHUNK_MAX FEED_BYTES // the longest chunk but IDAT handed to libpng (see feed_chunks)

// libpng 1.6's warning (pngpread.c) when the image data goes on past the last row the header
// implies: it has inflated at most one row more, and inflates nothing after it.
#define PNG_EXTRA_DATA "Extra compressed data in IDAT"

enum { SET_TRAIN = 0, SET_TEST = 1 };

// ---- Reading one PNG with libpng ----
//
// The reader hands the file to libpng's progressive reader chunk by chunk. libpng's sequential
// reader inflates whatever IDAT holds past the last row before it looks (1 GiB from an 8x8 file
// took 3 to 5 s); the progressive one stops one row past it, and says so. Rows arrive one at a
// time, each put in its place at once: the reader holds an image only when it is to be resized.

// One PNG being read: libpng's state, where its bytes come from (a FILE or memory), what has been
// read and where the pixels go.
struct png_reader {
    const char *name; // what messages call it
    FILE *fp;         // the source when not NULL, else data
    const uint8_t *data;
    size_t len, pos;
    png_structp png;
    png_infop info;
    uint8_t sig[8];          // the signature, read before libpng starts
    bool ended;              // the source ran out before libpng was done
    int read_errno;          // the FILE's read failed with this
    bool no_memory;          // an allocation for libpng failed
    char msg[256];           // libpng's last error
    struct clvae_error *err; // the reader's own failures (failed set), from inside libpng's calls
    bool failed;
    struct image_png_header header;
    bool have_header; // the chunks up to the first IDAT are read: header holds them
    bool at_end;      // IEND is read
    // Decoding, when fmt is not NULL.
    const struct image_format *fmt;
    const struct image_png_header *expect; // what an earlier pass read (NULL: nothing)
    uint8_t *out;                          // fmt's image
    uint8_t *source;                       // owned: the image as RGBA when it is resized, else NULL
    bool interlaced;                       // Adam7: rows arrive pass by pass
    uint64_t rows;                         // rows decoded (an interlaced image's: its passes' rows)
    uint64_t rows_due;                     // how many the header implies
    size_t held, peak; // bytes allocated by libpng and the reader: now, and at most
};

// errno e's text: strerror_r, as the passes' workers run in parallel and strerror need not be
// thread-safe.
static const char *errno_text(int e, char *buf, size_t len)
{
    if (strerror_r(e, buf, len) != 0)
        snprintf(buf, len, "error %d", e);
    return buf;
}

// A block of the reader's: its size before it, aligned as malloc's blocks are.
union counted {
    size_t size;
    max_align_t align;
};

// size bytes, counted in r->held and r->peak; NULL when out of memory.
static void *counted_alloc(struct png_reader *r, size_t size)
{
    union counted *c = size <= SIZE_MAX - sizeof *c ? malloc(sizeof *c + size) : NULL;
    if (!c)
        return NULL;
    c->size = size;
    r->held += size;
    if (r->held > r->peak)
        r->peak = r->held;
    return c + 1;
}

static void counted_free(struct png_reader *r, void *p)
{
    if (!p)
        return;
    union counted *c = (union counted *)p - 1;
    r->held -= c->size;
    free(c);
}

// libpng's allocator: everything it takes (its state, row buffers, zlib's window) is counted.
static png_voidp on_png_malloc(png_structp png, png_alloc_size_t size)
{
    struct png_reader *r = png_get_mem_ptr(png);
    void *p = counted_alloc(r, size);
    if (!p)
        r->no_memory = true;
    return p;
}

static void on_png_free(png_structp png, png_voidp p)
{
    counted_free(png_get_mem_ptr(png), p);
}

// The reader's own failure, already in r->err: unwinds out of libpng's call.
static void reader_stop(struct png_reader *r)
{
    r->failed = true;
    png_longjmp(r->png, 1);
}

// libpng's error callback: keeps the message (clvae prints it, named by the file) and unwinds.
static void on_png_error(png_structp png, png_const_charp msg)
{
    struct png_reader *r = png_get_error_ptr(png);
    snprintf(r->msg, sizeof r->msg, "%s", msg);
    png_longjmp(png, 1);
}

// libpng's warning callback: silent, as nothing but the progress bar and skips may print; but
// image data past the last row the header implies is an error, before anything more is inflated.
static void on_png_warning(png_structp png, png_const_charp msg)
{
    struct png_reader *r = png_get_error_ptr(png);
    if (strcmp(msg, PNG_EXTRA_DATA) != 0)
        return;
    clvae_fail(r->err, CLVAE_EXIT_DATA,
               "%s: corrupt PNG (more image data than its %ux%u header implies)", r->name,
               (unsigned)r->header.width, (unsigned)r->header.height);
    reader_stop(r);
}

// Up to n bytes of the source into out; returns how many arrived.
static size_t source_read(struct png_reader *r, uint8_t *out, size_t n)
{
    if (r->fp)
        return fread(out, 1, n, r->fp);
    size_t got = n < r->len - r->pos ? n : r->len - r->pos;
    if (got > 0)
        memcpy(out, r->data + r->pos, got);
    r->pos += got;
    return got;
}

// Exactly n bytes of the source into out, or an error when the source ends or fails.
static void source_need(struct png_reader *r, uint8_t *out, size_t n)
{
    if (source_read(r, out, n) < n) {
        r->ended = !r->fp || !ferror(r->fp);
        r->read_errno = r->ended ? 0 : errno;
        png_error(r->png, r->ended ? "unexpected end of file" : "read error");
    }
}

// Skips n bytes of the source unread. A FILE's short skips are read through: a seek drops stdio's
// buffer, and the oxygen icons' four small chunks a file made a folder read 15% slower. Its long
// skips are sought past, which shows a skip past the end as the end at the next read. Memory's
// skip past the end is the end at once.
static void source_skip(struct png_reader *r, uint64_t n)
{
    if (r->fp && n <= FEED_BYTES) {
        uint8_t buf[FEED_BYTES];
        source_need(r, buf, (size_t)n);
    } else if (r->fp) {
        if (fseeko(r->fp, (off_t)n, SEEK_CUR) != 0) {
            r->read_errno = errno;
            png_error(r->png, "read error");
        }
    } else if (n > r->len - r->pos) {
        r->pos = r->len;
        r->ended = true;
        png_error(r->png, "unexpected end of file");
    } else {
        r->pos += (size_t)n;
    }
}

// How far into the source the reader went.
static size_t source_position(const struct png_reader *r)
{
    if (!r->fp)
        return r->pos;
    off_t at = ftello(r->fp);
    return at < 0 ? 0 : (size_t)at;
}

// Turns the reader's failure into err: truncated, unreadable, out of memory or corrupt.
static int reader_fail(struct png_reader *r, struct clvae_error *err)
{
    if (r->ended)
        return clvae_fail(err, CLVAE_EXIT_DATA, "%s: truncated PNG (the file ends early)", r->name);
    char text[128];
    if (r->read_errno)
        return clvae_fail(err, CLVAE_EXIT_DATA, "%s: read error (%s)", r->name,
                          errno_text(r->read_errno, text, sizeof text));
    if (r->no_memory)
        return clvae_fail(err, CLVAE_EXIT_FAILURE, "%s: out of host memory in libpng", r->name);
    return clvae_fail(err, CLVAE_EXIT_DATA, "%s: corrupt PNG (%s)", r->name, r->msg);
}

// Whether any entry of the image's palette is not grey.
static bool palette_has_colour(png_structp png, png_infop info)
{
    png_colorp palette;
    int n = 0;
    if (png_get_PLTE(png, info, &palette, &n) == 0)
        return false;
    for (int i = 0; i < n; i++)
        if (palette[i].red != palette[i].green || palette[i].green != palette[i].blue)
            return true;
    return false;
}

// ---- Pixels: libpng's callbacks put each row in its place ----

// rgba (n pixels, 4) over bg -> every step-th pixel of out (channels each): (c a + bg (255 - a)
// + 127) / 255 in 8 bits, then for one channel Rec. 601 luma rounded,
// (299 R + 587 G + 114 B + 500) / 1000.
static void composite(const uint8_t *rgba, size_t n, size_t step, const uint8_t bg[3], int channels,
                      uint8_t *out)
{
    for (size_t i = 0; i < n; i++) {
        const uint8_t *p = rgba + 4 * i;
        uint8_t *o = out + i * step * (size_t)channels;
        unsigned a = p[3], c[3];
        for (int k = 0; k < 3; k++)
            c[k] = (p[k] * a + bg[k] * (255 - a) + 127) / 255;
        if (channels == 3) {
            for (int k = 0; k < 3; k++)
                o[k] = (uint8_t)c[k];
        } else {
            o[0] = (uint8_t)((299 * c[0] + 587 * c[1] + 114 * c[2] + 500) / 1000);
        }
    }
}

// rgba (n pixels, 4) -> every step-th pixel of out (RGBA).
static void spread(const uint8_t *rgba, size_t n, size_t step, uint8_t *out)
{
    if (step == 1) {
        memcpy(out, rgba, n * 4);
        return;
    }
    for (size_t i = 0; i < n; i++)
        memcpy(out + i * step * 4, rgba + i * 4, 4);
}

// The bytes a decoder holds beside libpng's for an image of width x height decoded to fmt: none
// at fmt's size, else the source and the resized image as RGBA.
static uint64_t resize_bytes(uint32_t width, uint32_t height, const struct image_format *fmt)
{
    if (width == (uint32_t)fmt->width && height == (uint32_t)fmt->height)
        return 0;
    return 4 * ((uint64_t)width * height + (uint64_t)fmt->width * fmt->height);
}

uint64_t image_decode_bound(uint32_t width, uint32_t height, const struct image_format *fmt)
{
    return IMAGE_DECODE_FIXED_BYTES + IMAGE_DECODE_ROW_BYTES * (uint64_t)width +
           resize_bytes(width, height, fmt);
}

// The rows libpng hands over for an image of h: its height, or for Adam7 the rows of every pass
// that holds pixels.
static uint64_t rows_due(const struct image_png_header *h, bool interlaced)
{
    if (!interlaced)
        return h->height;
    uint64_t n = 0;
    for (int pass = 0; pass < 7; pass++)
        if (PNG_PASS_COLS(h->width, pass) > 0)
            n += PNG_PASS_ROWS(h->height, pass);
    return n;
}

// Before the first row: the header against the earlier pass's, libpng's transforms to 8-bit RGBA
// (palette and tRNS expanded, 16 bits scaled with rounding (scale_16), grey replicated, opaque
// alpha added), and the RGBA buffer of an image to resize. Interlacing is undone by on_row.
static void start_image(struct png_reader *r)
{
    const struct image_png_header *h = &r->header, *expect = r->expect;
    if (expect && (h->width != expect->width || h->height != expect->height)) {
        clvae_fail(r->err, CLVAE_EXIT_DATA, "%s: changed while being read (%ux%u, was %ux%u)",
                   r->name, (unsigned)h->width, (unsigned)h->height, (unsigned)expect->width,
                   (unsigned)expect->height);
        reader_stop(r);
    }
    png_structp png = r->png;
    png_set_expand(png);
    png_set_scale_16(png);
    png_set_gray_to_rgb(png);
    png_set_add_alpha(png, 0xffff, PNG_FILLER_AFTER);
    png_read_update_info(png, r->info);
    if (png_get_rowbytes(png, r->info) != (size_t)h->width * 4)
        png_error(png, "rows are not 8-bit RGBA after libpng's transforms");
    r->interlaced = png_get_interlace_type(png, r->info) == PNG_INTERLACE_ADAM7;
    r->rows_due = rows_due(h, r->interlaced);
    if (resize_bytes(h->width, h->height, r->fmt) == 0)
        return;
    r->source = counted_alloc(r, (size_t)h->width * h->height * 4);
    if (!r->source) {
        clvae_fail(r->err, CLVAE_EXIT_FAILURE, "%s: out of host memory for %ux%u pixels", r->name,
                   (unsigned)h->width, (unsigned)h->height);
        reader_stop(r);
    }
}

// libpng's callback at the first IDAT, the chunks before it read: the header, checked against
// IMAGE_MAX_PIXELS, and when decoding the start of the image.
static void on_info(png_structp png, png_infop info)
{
    struct png_reader *r = png_get_progressive_ptr(png);
    struct image_png_header *h = &r->header;
    int type = png_get_color_type(png, info);
    h->width = png_get_image_width(png, info);
    h->height = png_get_image_height(png, info);
    h->colour = type == PNG_COLOR_TYPE_PALETTE ? palette_has_colour(png, info)
                                               : (type & PNG_COLOR_MASK_COLOR) != 0;
    h->transparency = (type & PNG_COLOR_MASK_ALPHA) || png_get_valid(png, info, PNG_INFO_tRNS);
    r->have_header = true;
    if ((uint64_t)h->width * h->height > IMAGE_MAX_PIXELS) {
        clvae_fail(r->err, CLVAE_EXIT_DATA, "%s: %ux%u is over the limit of %llu pixels", r->name,
                   (unsigned)h->width, (unsigned)h->height, (unsigned long long)IMAGE_MAX_PIXELS);
        reader_stop(r);
    }
    if (r->fmt)
        start_image(r);
}

// libpng's row callback: row row_num of pass (an interlaced image's; else 0) as 8-bit RGBA, put
// in its place: into the RGBA buffer when the image is resized, else composited into the output.
static void on_row(png_structp png, png_bytep row, png_uint_32 row_num, int pass)
{
    struct png_reader *r = png_get_progressive_ptr(png);
    const struct image_png_header *h = &r->header;
    if (!row)
        return;
    uint32_t y = row_num, x0 = 0, step = 1, n = h->width;
    if (r->interlaced) {
        if (pass < 0 || pass > 6)
            png_error(png, "interlace pass out of range");
        y = PNG_ROW_FROM_PASS_ROW(row_num, pass);
        x0 = PNG_PASS_START_COL(pass);
        step = 1u << PNG_PASS_COL_SHIFT(pass);
        n = PNG_PASS_COLS(h->width, pass);
    }
    if (row_num >= h->height || y >= h->height || r->rows >= r->rows_due)
        png_error(png, "a row past the image");
    size_t at = (size_t)y * h->width + x0;
    const struct image_format *fmt = r->fmt;
    if (r->source)
        spread(row, n, step, r->source + at * 4);
    else
        composite(row, n, step, fmt->background, fmt->channels, r->out + at * fmt->channels);
    r->rows++;
}

// libpng's callback after IEND.
static void on_end(png_structp png, png_infop info)
{
    (void)info;
    struct png_reader *r = png_get_progressive_ptr(png);
    r->at_end = true;
}

// ---- Feeding libpng, chunk by chunk ----

// Checks the 8-byte signature and sets libpng up to read the rest.
static int reader_open(struct png_reader *r, struct clvae_error *err)
{
    char text[128];
    size_t got = source_read(r, r->sig, sizeof r->sig);
    if (got == 0 && r->fp && ferror(r->fp))
        return clvae_fail(err, CLVAE_EXIT_DATA, "%s: %s", r->name,
                          errno_text(errno, text, sizeof text));
    if (got == 0)
        return clvae_fail(err, CLVAE_EXIT_DATA, "%s: empty file, not a PNG", r->name);
    if (got < sizeof r->sig || png_sig_cmp(r->sig, 0, sizeof r->sig) != 0)
        return clvae_fail(err, CLVAE_EXIT_DATA, "%s: not a PNG file (no PNG signature)", r->name);
    r->png = png_create_read_struct_2(PNG_LIBPNG_VER_STRING, r, on_png_error, on_png_warning, r,
                                      on_png_malloc, on_png_free);
    if (r->png)
        r->info = png_create_info_struct(r->png);
    if (!r->png || !r->info)
        return clvae_fail(err, CLVAE_EXIT_FAILURE, "%s: out of host memory in libpng", r->name);
    png_set_progressive_read_fn(r->png, r, on_info, on_row, on_end);
    // Only IHDR, PLTE, tRNS, IDAT and IEND are read (feed_chunks skips the ancillary chunks
    // before libpng sees them); this makes libpng ignore the others too.
    png_set_keep_unknown_chunks(r->png, PNG_HANDLE_CHUNK_NEVER, NULL, -1);
    png_set_chunk_malloc_max(r->png, PNG_CHUNK_MAX);
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
    // The fuzz build only: a mutated chunk keeps its old CRC, and checking it would stop nearly
    // every input before the decoder.
    png_set_crc_action(r->png, PNG_CRC_QUIET_USE, PNG_CRC_QUIET_USE);
    png_set_option(r->png, PNG_IGNORE_ADLER32, PNG_OPTION_ON);
#endif
    return 0;
}

// Releases libpng's state and the reader's buffer; safe on a reader that never opened.
static void reader_close(struct png_reader *r)
{
    counted_free(r, r->source);
    r->source = NULL;
    if (r->png)
        png_destroy_read_struct(&r->png, r->info ? &r->info : NULL, NULL);
    r->png = NULL;
    r->info = NULL;
}

// Whether the 4 bytes are a chunk type: letters only, as libpng requires.
static bool chunk_type_ok(const uint8_t *type)
{
    for (int i = 0; i < 4; i++)
        if (!((type[i] >= 'A' && type[i] <= 'Z') || (type[i] >= 'a' && type[i] <= 'z')))
            return false;
    return true;
}

// Whether a chunk is skipped unread: every ancillary one (a lower-case first letter) but tRNS.
// libpng ignores them too, but its progressive reader holds a whole chunk in memory first.
static bool chunk_skipped(const uint8_t *type)
{
    return (type[0] & 0x20) && memcmp(type, "tRNS", 4) != 0;
}

// n bytes of the source, handed to libpng FEED_BYTES at a time.
static void feed_bytes(struct png_reader *r, uint64_t n)
{
    uint8_t buf[FEED_BYTES];
    while (n > 0) {
        size_t part = n < FEED_BYTES ? (size_t)n : FEED_BYTES;
        source_need(r, buf, part);
        png_process_data(r->png, r->info, buf, part);
        n -= part;
    }
}

// The file from the source to libpng, chunk by chunk: up to IEND when decoding, for the header
// up to the first IDAT. Each chunk's 8-byte head goes alone, so that libpng's callback at the
// first IDAT comes before any of its data. Failures unwind through libpng's error callback.
static void feed_chunks(struct png_reader *r)
{
    png_process_data(r->png, r->info, r->sig, sizeof r->sig);
    while (!r->at_end) {
        uint8_t head[8];
        source_need(r, head, sizeof head);
        uint32_t length = png_get_uint_32(head);
        const uint8_t *type = head + 4;
        if (length > PNG_UINT_31_MAX)
            png_error(r->png, "chunk length out of range");
        if (!chunk_type_ok(type))
            png_error(r->png, "invalid chunk type");
        if (chunk_skipped(type)) {
            source_skip(r, (uint64_t)length + 4);
            continue;
        }
        if (length > PNG_CHUNK_MAX && memcmp(type, "IDAT", 4) != 0) {
            char text[64];
            snprintf(text, sizeof text, "%.4s: a chunk of %u bytes", (const char *)type,
                     (unsigned)length);
            png_error(r->png, text);
        }
        png_process_data(r->png, r->info, head, sizeof head);
        if (r->have_header && !r->fmt)
            return;
        feed_bytes(r, (uint64_t)length + 4);
    }
}

// feed_chunks under libpng's error handling: 0, or -1 when it failed.
static int run_libpng(struct png_reader *r)
{
    if (setjmp(png_jmpbuf(r->png)))
        return -1;
    feed_chunks(r);
    return 0;
}

// The resized image: r->source (the header's size) -> fmt's size by stb_image_resize (its
// default filter, edges clamped, sRGB, channel 3 declared alpha so that colour is weighted by
// it), composited into r->out.
static int finish_resized(struct png_reader *r, struct clvae_error *err)
{
    const struct image_format *fmt = r->fmt;
    const struct image_png_header *h = &r->header;
    uint8_t *resized = counted_alloc(r, (size_t)fmt->width * fmt->height * 4);
    bool ok =
        resized && stbir_resize_uint8_generic(r->source, (int)h->width, (int)h->height, 0, resized,
                                              fmt->width, fmt->height, 0, 4, 3, 0, STBIR_EDGE_CLAMP,
                                              STBIR_FILTER_DEFAULT, STBIR_COLORSPACE_SRGB, NULL);
    if (ok)
        composite(resized, (size_t)fmt->width * fmt->height, 1, fmt->background, fmt->channels,
                  r->out);
    counted_free(r, resized);
    if (!ok)
        return clvae_fail(err, CLVAE_EXIT_FAILURE, "%s: out of host memory resizing %ux%u to %dx%d",
                          r->name, (unsigned)h->width, (unsigned)h->height, fmt->width,
                          fmt->height);
    return 0;
}

// Reads the PNG r opened: its header into r->header and, when r->fmt is set, its pixels into
// r->out. 0, or -1 with err filled.
static int reader_run(struct png_reader *r, struct clvae_error *err)
{
    r->err = err;
    if (run_libpng(r) != 0)
        return r->failed ? -1 : reader_fail(r, err);
    if (!r->fmt)
        return 0;
    if (r->rows < r->rows_due)
        return clvae_fail(err, CLVAE_EXIT_DATA, "%s: corrupt PNG (not enough image data)", r->name);
    return r->source ? finish_resized(r, err) : 0;
}

int image_png_header(const uint8_t *data, size_t len, const char *name,
                     struct image_png_header *header, struct clvae_error *err)
{
    struct png_reader r = {.name = name, .data = data, .len = len};
    int rc = reader_open(&r, err) == 0 ? reader_run(&r, err) : -1;
    if (rc == 0)
        *header = r.header;
    reader_close(&r);
    return rc;
}

int image_decode_png(const uint8_t *data, size_t len, const char *name,
                     const struct image_format *fmt, uint8_t *out, struct image_decode_stats *stats,
                     struct clvae_error *err)
{
    if ((fmt->channels != 1 && fmt->channels != 3) || fmt->width < 1 ||
        fmt->width > IMAGE_MAX_SIDE || fmt->height < 1 || fmt->height > IMAGE_MAX_SIDE)
        return clvae_fail(err, CLVAE_EXIT_USAGE, "%s: cannot decode to %dx%d with %d channels",
                          name, fmt->width, fmt->height, fmt->channels);
    struct png_reader r = {.name = name, .data = data, .len = len, .fmt = fmt, .out = out};
    int rc = reader_open(&r, err) == 0 ? reader_run(&r, err) : -1;
    reader_close(&r);
    if (stats)
        *stats = (struct image_decode_stats){
            .peak_bytes = r.peak, .held_after = r.held, .bytes_read = source_position(&r)};
    return rc;
}

// ---- The file list ----

// NUL-terminated strings one after another, addressed by offset: the block moves as it grows.
struct arena {
    char *text;
    size_t len, cap;
};

// One PNG file of the data set.
struct entry {
    size_t name;            // its path's offset in the scan's names
    const char *path;       // the path, once the names have stopped growing
    uint64_t dev, ino;      // its file's identity, for hard links
    int32_t label;          // class index (training's list), -1 unlabelled
    uint32_t width, height; // from the header pass
    uint8_t set;            // SET_TRAIN or SET_TEST
    bool linked;            // st_nlink > 1: another path may reach the same file
    bool colour, transparency, bad;
};

// What the scan of DIR has found so far.
struct scan {
    const char *dir;
    struct arena names;   // the files' paths
    struct arena folders; // folders still to list, a stack: the last pushed ends the text
    size_t *pending;      // their offsets in folders
    size_t n_pending, pending_cap;
    struct entry *files;
    size_t n, cap;
    char **classes; // training's class names, in byte order
    int n_classes;
    bool test_folder; // DIR/train + DIR/test
    uint64_t skipped;
    const char *empty_hint; // opt->empty_hint
};

static int out_of_memory(const char *what, struct clvae_error *err)
{
    return clvae_fail(err, CLVAE_EXIT_FAILURE, "out of host memory for %s", what);
}

// block, grown if it holds fewer than bytes (*cap says how many it holds); NULL when out of
// memory, block unchanged then.
static void *reserve(void *block, size_t *cap, size_t bytes)
{
    if (block && bytes <= *cap)
        return block;
    if (bytes == 0)
        bytes = 1;
    void *grown = realloc(block, bytes);
    if (grown)
        *cap = bytes;
    return grown;
}

// Appends s to a with its NUL; *off is where it starts.
static int arena_add(struct arena *a, const char *s, size_t *off, struct clvae_error *err)
{
    size_t n = strlen(s) + 1;
    if (a->len + n > a->cap) {
        size_t cap = a->cap ? a->cap : 1 << 16;
        while (cap < a->len + n)
            cap *= 2;
        char *text = reserve(a->text, &a->cap, cap);
        if (!text)
            return out_of_memory("the list of file names", err);
        a->text = text;
    }
    memcpy(a->text + a->len, s, n);
    *off = a->len;
    a->len += n;
    return 0;
}

// array, of *cap elements of size bytes, with room for element n: doubled when it has none.
// NULL when out of memory, array unchanged then.
static void *grow(void *array, size_t *cap, size_t n, size_t size)
{
    if (array && n < *cap)
        return array;
    size_t want = *cap ? *cap * 2 : 1024;
    void *grown = realloc(array, want * size);
    if (grown)
        *cap = want;
    return grown;
}

// dir/name into buf (PATH_BYTES); one slash between them even when dir ends in one.
static int join(char *buf, const char *dir, const char *name, struct clvae_error *err)
{
    size_t n = strlen(dir);
    const char *sep = n > 0 && dir[n - 1] == '/' ? "" : "/";
    int len = snprintf(buf, PATH_BYTES, "%s%s%s", dir, sep, name);
    if (len < 0 || len >= PATH_BYTES)
        return clvae_fail(err, CLVAE_EXIT_DATA, "%s/%s: path too long", dir, name);
    return 0;
}

// Whether name ends in ".png", in any case.
static bool is_png_name(const char *name)
{
    size_t n = strlen(name);
    return n > 4 && strcasecmp(name + n - 4, ".png") == 0;
}

// Adds the PNG file at path (lstat'ed as st) to the list.
static int add_file(struct scan *s, const char *path, const struct stat *st, int32_t label,
                    uint8_t set, struct clvae_error *err)
{
    if (s->n >= UINT32_MAX)
        return clvae_fail(err, CLVAE_EXIT_DATA, "%s: more than %u .png files", s->dir,
                          (unsigned)UINT32_MAX);
    struct entry *files = grow(s->files, &s->cap, s->n, sizeof *files);
    if (!files)
        return out_of_memory("the list of files", err);
    s->files = files;
    struct entry *e = &s->files[s->n];
    *e = (struct entry){.dev = (uint64_t)st->st_dev,
                        .ino = (uint64_t)st->st_ino,
                        .label = label,
                        .set = set,
                        .linked = st->st_nlink > 1};
    if (arena_add(&s->names, path, &e->name, err) != 0)
        return -1;
    s->n++;
    return 0;
}

// Pushes the folder path on the stack of folders to list.
static int push_folder(struct scan *s, const char *path, struct clvae_error *err)
{
    size_t *pending = grow(s->pending, &s->pending_cap, s->n_pending, sizeof *pending);
    if (!pending)
        return out_of_memory("the list of folders", err);
    s->pending = pending;
    size_t off = 0;
    if (arena_add(&s->folders, path, &off, err) != 0)
        return -1;
    s->pending[s->n_pending++] = off;
    return 0;
}

// Pops the last folder pushed into buf (PATH_BYTES).
static void pop_folder(struct scan *s, char *buf)
{
    size_t off = s->pending[--s->n_pending];
    memcpy(buf, s->folders.text + off, s->folders.len - off);
    s->folders.len = off;
}

// What one entry of a folder is, by lstat: links, hidden names and special files are skipped.
enum kind { KIND_SKIP, KIND_FOLDER, KIND_PNG };

// The kind of folder/name, with path (PATH_BYTES) set to the joined path and st to its lstat.
static int entry_kind(const char *folder, const char *name, char *path, struct stat *st,
                      enum kind *kind, struct clvae_error *err)
{
    *kind = KIND_SKIP;
    if (name[0] == '.')
        return 0;
    if (join(path, folder, name, err) != 0)
        return -1;
    if (lstat(path, st) != 0)
        return clvae_fail(err, CLVAE_EXIT_DATA, "%s: %s", path, strerror(errno));
    if (S_ISDIR(st->st_mode))
        *kind = KIND_FOLDER;
    else if (S_ISREG(st->st_mode) && is_png_name(name))
        *kind = KIND_PNG;
    return 0;
}

// Calls visit(s, path, st, kind, ctx) on every entry of folder that is not skipped.
typedef int (*visit_fn)(struct scan *s, const char *path, const struct stat *st, enum kind kind,
                        void *ctx, struct clvae_error *err);

static int list_folder(struct scan *s, const char *folder, visit_fn visit, void *ctx,
                       struct clvae_error *err)
{
    DIR *d = opendir(folder);
    if (!d)
        return clvae_fail(err, CLVAE_EXIT_DATA, "%s: %s", folder, strerror(errno));
    int rc = 0;
    char path[PATH_BYTES];
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (!de) {
            if (errno != 0)
                rc = clvae_fail(err, CLVAE_EXIT_DATA, "%s: %s", folder, strerror(errno));
            break;
        }
        struct stat st;
        enum kind kind;
        rc = entry_kind(folder, de->d_name, path, &st, &kind, err);
        if (rc == 0 && kind != KIND_SKIP)
            rc = visit(s, path, &st, kind, ctx, err);
        if (rc != 0)
            break;
    }
    closedir(d);
    return rc;
}

// Where the files of a walk go.
struct walk {
    int32_t label;
    uint8_t set;
};

// A walk's visitor: folders go on the stack, PNG files into the list.
static int walk_visit(struct scan *s, const char *path, const struct stat *st, enum kind kind,
                      void *ctx, struct clvae_error *err)
{
    const struct walk *w = ctx;
    if (kind == KIND_FOLDER)
        return push_folder(s, path, err);
    return add_file(s, path, st, w->label, w->set, err);
}

// Adds every PNG below folder, at any depth, with label and set. The stack keeps one folder open
// at a time, so depth costs no file descriptors.
static int walk_tree(struct scan *s, const char *folder, int32_t label, uint8_t set,
                     struct clvae_error *err)
{
    struct walk w = {.label = label, .set = set};
    char path[PATH_BYTES];
    if (push_folder(s, folder, err) != 0)
        return -1;
    while (s->n_pending > 0) {
        pop_folder(s, path);
        if (list_folder(s, path, walk_visit, &w, err) != 0)
            return -1;
    }
    return 0;
}

// ---- The layout: class folders, loose files, DIR/train and DIR/test ----

// A root's immediate contents: its class folders' names and how many PNG files lie loose in it.
struct root {
    const char *path;
    uint8_t set;
    char **classes;
    size_t n_classes, classes_cap;
    size_t loose; // loose files, already in the list as unlabelled
    size_t first; // the list's length before the root
};

static void root_free(struct root *r)
{
    for (size_t i = 0; i < r->n_classes; i++)
        free(r->classes[i]);
    free(r->classes);
    r->classes = NULL;
    r->n_classes = 0;
}

// A root's visitor: subfolders are classes, PNG files are loose (unlabelled until proven not).
static int root_visit(struct scan *s, const char *path, const struct stat *st, enum kind kind,
                      void *ctx, struct clvae_error *err)
{
    struct root *r = ctx;
    if (kind == KIND_PNG) {
        r->loose++;
        return add_file(s, path, st, -1, r->set, err);
    }
    char **classes = grow(r->classes, &r->classes_cap, r->n_classes, sizeof *classes);
    if (!classes)
        return out_of_memory("class names", err);
    r->classes = classes;
    const char *slash = strrchr(path, '/');
    r->classes[r->n_classes] = strdup(slash ? slash + 1 : path);
    if (!r->classes[r->n_classes])
        return out_of_memory("class names", err);
    r->n_classes++;
    return 0;
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

// The label of the test root's class name: its index in training's classes, or an error.
static int test_label(struct scan *s, const struct root *r, const char *name, int32_t *label,
                      struct clvae_error *err)
{
    char *const *hit = s->n_classes == 0 ? NULL
                                         : bsearch(&name, s->classes, (size_t)s->n_classes,
                                                   sizeof *s->classes, compare_names);
    if (!hit)
        return clvae_fail(err, CLVAE_EXIT_DATA,
                          "%s/%s: no such class in the training folder (each test class folder "
                          "must be named as one of the training set's)",
                          r->path, name);
    *label = (int32_t)(hit - s->classes);
    return 0;
}

// Walks every class folder of the root; each must hold at least one PNG.
static int walk_classes(struct scan *s, struct root *r, struct clvae_error *err)
{
    char path[PATH_BYTES];
    size_t *counts = xcalloc(r->n_classes, sizeof *counts);
    int rc = 0;
    for (size_t k = 0; k < r->n_classes && rc == 0; k++) {
        int32_t label = (int32_t)k;
        size_t before = s->n;
        rc = r->set == SET_TEST ? test_label(s, r, r->classes[k], &label, err) : 0;
        if (rc == 0)
            rc = join(path, r->path, r->classes[k], err);
        if (rc == 0)
            rc = walk_tree(s, path, label, r->set, err);
        counts[k] = s->n - before;
    }
    for (size_t k = 0; k < r->n_classes && rc == 0; k++)
        if (counts[k] == 0 && s->n > r->first)
            rc = clvae_fail(err, CLVAE_EXIT_DATA,
                            "%s/%s: a class folder with no .png images (every subfolder of %s "
                            "is a class: remove it or add images)",
                            r->path, r->classes[k], r->path);
    free(counts);
    return rc;
}

// The labels the root's layout says: loose files beside class folders, or a test layout unlike
// training's, are errors.
static int check_root_layout(struct scan *s, const struct root *r, struct clvae_error *err)
{
    if (r->n_classes > 0 && r->loose > 0)
        return clvae_fail(err, CLVAE_EXIT_DATA,
                          "%s: %zu .png file%s beside class folders; move %s into a class "
                          "folder, or use no subfolders for an unlabelled set",
                          r->path, r->loose, r->loose == 1 ? " lies" : "s lie",
                          r->loose == 1 ? "it" : "them");
    if (r->set == SET_TEST && (r->n_classes > 0) != (s->n_classes > 0))
        return clvae_fail(err, CLVAE_EXIT_DATA,
                          "%s: the test images %s class folders but the training images %s",
                          r->path, r->n_classes > 0 ? "are in" : "are not in",
                          s->n_classes > 0 ? "are" : "are not");
    return 0;
}

// Lists one root (DIR, DIR/train or DIR/test) into the scan, as the header's layout says.
static int scan_root(struct scan *s, const char *path, uint8_t set, struct clvae_error *err)
{
    struct root r = {.path = path, .set = set, .first = s->n};
    int rc = list_folder(s, path, root_visit, &r, err);
    if (rc == 0 && r.n_classes > 1)
        qsort(r.classes, r.n_classes, sizeof *r.classes, compare_names);
    if (rc == 0)
        rc = check_root_layout(s, &r, err);
    if (rc == 0)
        rc = walk_classes(s, &r, err);
    if (rc == 0 && s->n == r.first)
        rc = clvae_fail(err, CLVAE_EXIT_DATA,
                        "%s: no .png files under this folder (hidden files and symbolic links "
                        "are skipped)%s",
                        path, s->empty_hint ? s->empty_hint : "");
    if (rc == 0 && set == SET_TRAIN) {
        s->classes = r.classes;
        s->n_classes = (int)r.n_classes;
        r.classes = NULL;
        r.n_classes = 0;
    }
    root_free(&r);
    return rc;
}

// Whether dir/name is a folder itself (not a link to one).
static bool is_real_folder(const char *dir, const char *name)
{
    char path[PATH_BYTES];
    struct stat st;
    return join(path, dir, name, NULL) == 0 && lstat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

// Lists DIR: DIR/train and DIR/test when both are folders, else DIR itself.
static int scan_layout(struct scan *s, const char *dir, struct clvae_error *err)
{
    struct stat st;
    if (stat(dir, &st) != 0)
        return clvae_fail(err, CLVAE_EXIT_DATA, "%s: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return clvae_fail(err, CLVAE_EXIT_DATA, "%s: not a directory", dir);
    s->dir = dir;
    s->test_folder = is_real_folder(dir, "train") && is_real_folder(dir, "test");
    if (!s->test_folder)
        return scan_root(s, dir, SET_TRAIN, err);
    char path[PATH_BYTES];
    if (join(path, dir, "train", err) != 0 || scan_root(s, path, SET_TRAIN, err) != 0)
        return -1;
    return join(path, dir, "test", err) == 0 ? scan_root(s, path, SET_TEST, err) : -1;
}

// ---- Order, hard links, the split ----

// How many entries of the (sorted) list are training images.
static size_t count_train(const struct scan *s)
{
    size_t n = 0;
    while (n < s->n && s->files[n].set == SET_TRAIN)
        n++;
    return n;
}

// Training before test, then by class, then by path in byte order.
static int compare_entries(const void *pa, const void *pb)
{
    const struct entry *a = pa, *b = pb;
    if (a->set != b->set)
        return a->set < b->set ? -1 : 1;
    if (a->label != b->label)
        return a->label < b->label ? -1 : 1;
    return strcmp(a->path, b->path);
}

static void sort_entries(struct scan *s)
{
    qsort(s->files, s->n, sizeof *s->files, compare_entries);
}

// Gives every entry its path, now that the names no longer move, and sorts the list.
static void settle(struct scan *s)
{
    for (size_t i = 0; i < s->n; i++)
        s->files[i].path = s->names.text + s->files[i].name;
    sort_entries(s);
}

// Keeps the entries not marked bad, in order.
static void drop_bad(struct scan *s)
{
    size_t kept = 0;
    for (size_t i = 0; i < s->n; i++)
        if (!s->files[i].bad)
            s->files[kept++] = s->files[i];
    s->n = kept;
}

// Hard-linked entries by file identity, then by position in the list.
static int compare_links(const void *pa, const void *pb)
{
    const struct entry *const *a = pa, *const *b = pb;
    if ((*a)->dev != (*b)->dev)
        return (*a)->dev < (*b)->dev ? -1 : 1;
    if ((*a)->ino != (*b)->ino)
        return (*a)->ino < (*b)->ino ? -1 : 1;
    return *a < *b ? -1 : *a > *b;
}

// Leaves one entry per file among those with several links: the first in the sorted list.
static void drop_hard_links(struct scan *s)
{
    size_t n = 0;
    for (size_t i = 0; i < s->n; i++)
        n += s->files[i].linked;
    if (n < 2)
        return;
    struct entry **linked = xmalloc(n * sizeof *linked);
    n = 0;
    for (size_t i = 0; i < s->n; i++)
        if (s->files[i].linked)
            linked[n++] = &s->files[i];
    qsort(linked, n, sizeof *linked, compare_links);
    for (size_t i = 1; i < n; i++)
        linked[i]->bad =
            linked[i]->dev == linked[i - 1]->dev && linked[i]->ino == linked[i - 1]->ino;
    free(linked);
    drop_bad(s);
}

// How many of a class's n images a split of f holds out: round(f n), halves up; a labelled class
// keeps at least one training image.
static size_t held_out(double f, size_t n, bool labelled)
{
    size_t hold = (size_t)floor(f * (double)n + 0.5);
    if (labelled && hold >= n)
        hold = n - 1;
    return hold;
}

// The end of the class that starts at entry b.
static size_t class_end(const struct scan *s, size_t b)
{
    size_t e = b + 1;
    while (e < s->n && s->files[e].label == s->files[b].label)
        e++;
    return e;
}

// How many test images a split of f makes.
static size_t split_total(const struct scan *s, double f)
{
    size_t total = 0;
    for (size_t b = 0, e; b < s->n; b = e) {
        e = class_end(s, b);
        total += held_out(f, e - b, s->n_classes > 0);
    }
    return total;
}

// A --test-split that leaves both sets non-empty, or a negative number if none of a few does.
static double working_split(const struct scan *s)
{
    const double tries[] = {0.1, 0.2, 0.3, 0.5};
    for (size_t i = 0; i < sizeof tries / sizeof *tries; i++) {
        size_t hold = split_total(s, tries[i]);
        if (hold > 0 && hold < s->n)
            return tries[i];
    }
    return -1;
}

// The error of a split that leaves one of the sets empty.
static int fail_split(const struct scan *s, double f, size_t hold, struct clvae_error *err)
{
    double good = working_split(s);
    if (good < 0)
        return clvae_fail(err, CLVAE_EXIT_DATA,
                          "%s: %zu images cannot be split into training and test images (each "
                          "class keeps one for training); add images, or DIR/train and DIR/test "
                          "folders",
                          s->dir, s->n);
    return clvae_fail(err, CLVAE_EXIT_DATA,
                      "%s: a --test-split of %g leaves no %s image of the %zu; try --test-split "
                      "%g, or give DIR/train and DIR/test folders",
                      s->dir, f, hold == 0 ? "test" : "training", s->n, good);
}

// Marks the first hold of a seeded Fisher-Yates shuffle of entries [b, b + n) as test images.
static void hold_out(struct scan *s, size_t b, size_t n, size_t hold, uint64_t seed, uint64_t cls,
                     uint32_t *perm)
{
    for (size_t i = 0; i < n; i++)
        perm[i] = (uint32_t)i;
    for (size_t i = n - 1; i > 0; i--) {
        uint32_t r[4];
        philox_block(seed, (uint32_t)i, cls, IMAGE_FOLDER_STREAM, r);
        size_t j = (size_t)((((uint64_t)r[0] << 32) | r[1]) % (i + 1));
        uint32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    for (size_t k = 0; k < hold; k++)
        s->files[b + perm[k]].set = SET_TEST;
}

// The seeded split of the (training) list: stratified by class, then sorted again.
static int split(struct scan *s, const struct image_folder_options *opt, struct clvae_error *err)
{
    size_t hold = split_total(s, opt->test_split);
    if (hold == 0 || hold >= s->n)
        return fail_split(s, opt->test_split, hold, err);
    uint32_t *perm = xmalloc(s->n * sizeof *perm);
    for (size_t b = 0, e; b < s->n; b = e) {
        e = class_end(s, b);
        hold_out(s, b, e - b, held_out(opt->test_split, e - b, s->n_classes > 0), opt->seed,
                 s->n_classes > 0 ? (uint64_t)s->files[b].label : 0, perm);
    }
    free(perm);
    sort_entries(s);
    return 0;
}

// ---- The parallel passes ----

// One file a pass could not read: its message only, as a million of them may be skipped.
struct failure {
    struct failure *next;
    size_t index;
    int status;
    char msg[];
};

// A pass over the list: work on every entry, by workers that each take the next index.
struct pass {
    const char *verb, *noun; // the progress bar's words: "decoding 12/34 images"
    int (*work)(struct pass *p, size_t i, struct clvae_error *err);
    struct scan *scan;
    const struct image_format *fmt; // decoding: what each image becomes
    uint8_t *pixels[2];             // decoding: the sets' pixel buffers
    size_t n_train;                 // decoding: where the test set starts in the list
    size_t budget;                  // decoding: what take_memory lets the workers hold
    bool skip_bad;
    atomic_size_t next, done;
    atomic_int running;
    atomic_bool stop;
    pthread_mutex_t lock; // guards failures and held
    pthread_cond_t freed; // signalled when held goes down
    struct failure *failures;
    size_t held; // decoding: the bytes of images being resized that the workers hold
};

// Keeps a failure; stops the pass unless it is a file that skip_bad leaves out.
static void record_failure(struct pass *p, size_t i, const struct clvae_error *err)
{
    size_t len = strlen(err->msg) + 1;
    struct failure *f = xmalloc(sizeof *f + len);
    f->index = i;
    f->status = err->status;
    memcpy(f->msg, err->msg, len);
    pthread_mutex_lock(&p->lock);
    f->next = p->failures;
    p->failures = f;
    if (!p->skip_bad || err->status != CLVAE_EXIT_DATA)
        atomic_store(&p->stop, true);
    pthread_mutex_unlock(&p->lock);
}

// A worker: takes indices in order until none is left or the pass stops.
static void *worker(void *arg)
{
    struct pass *p = arg;
    struct clvae_error err;
    while (!atomic_load(&p->stop)) {
        size_t i = atomic_fetch_add(&p->next, 1);
        if (i >= p->scan->n)
            break;
        if (p->work(p, i, &err) != 0)
            record_failure(p, i, &err);
        atomic_fetch_add(&p->done, 1);
    }
    atomic_fetch_sub(&p->running, 1);
    return NULL;
}

// "\r<verb> done/n <noun> [=====     ]", and a newline when the pass has ended.
static void draw_progress(const struct pass *p, size_t done, bool end)
{
    char bar[PROGRESS_WIDTH + 1];
    size_t n = p->scan->n, filled = n ? done * PROGRESS_WIDTH / n : PROGRESS_WIDTH;
    memset(bar, '=', filled);
    memset(bar + filled, ' ', PROGRESS_WIDTH - filled);
    bar[PROGRESS_WIDTH] = '\0';
    fprintf(stderr, "\r%s %zu/%zu %s [%s]%s", p->verb, done, n, p->noun, bar, end ? "\n" : "");
    fflush(stderr);
}

// Redraws the bar every PROGRESS_NS until every worker has returned.
static void show_progress(struct pass *p)
{
    size_t shown = (size_t)-1;
    const struct timespec period = {.tv_sec = 0, .tv_nsec = PROGRESS_NS};
    while (atomic_load(&p->running) > 0) {
        size_t done = atomic_load(&p->done);
        if (done != shown)
            draw_progress(p, done, false);
        shown = done;
        nanosleep(&period, NULL);
    }
    draw_progress(p, atomic_load(&p->done), true);
}

// The workers a pass starts: opt->threads, or the online cores, at most one per file.
static int thread_count(const struct image_folder_options *opt, size_t n)
{
    long t = opt->threads > 0 ? opt->threads : sysconf(_SC_NPROCESSORS_ONLN);
    if (t < 1)
        t = 1;
    if (t > MAX_THREADS)
        t = MAX_THREADS;
    return (size_t)t > n ? (int)n : (int)t;
}

// Runs the pass's workers (on this thread when none can be started) and waits for them.
static void run_workers(struct pass *p, const struct image_folder_options *opt)
{
    int want = thread_count(opt, p->scan->n);
    pthread_t threads[MAX_THREADS];
    int started = 0;
    atomic_store(&p->running, want);
    while (started < want && pthread_create(&threads[started], NULL, worker, p) == 0)
        started++;
    atomic_fetch_sub(&p->running, want - started);
    if (started == 0) {
        atomic_store(&p->running, 1);
        worker(p);
    }
    if (opt->progress)
        show_progress(p);
    for (int i = 0; i < started; i++)
        pthread_join(threads[i], NULL);
}

static int compare_failures(const void *pa, const void *pb)
{
    const struct failure *const *a = pa, *const *b = pb;
    return (*a)->index < (*b)->index ? -1 : (*a)->index > (*b)->index;
}

// The failures, recorded as the workers met them -> an array in file order.
static struct failure **sorted_failures(struct failure *list, size_t *n)
{
    *n = 0;
    for (struct failure *f = list; f; f = f->next)
        (*n)++;
    struct failure **all = xmalloc((*n ? *n : 1) * sizeof *all);
    size_t i = 0;
    for (struct failure *f = list; f; f = f->next)
        all[i++] = f;
    qsort(all, *n, sizeof *all, compare_failures);
    return all;
}

// After the workers: the first fatal failure in file order is the pass's error; under skip_bad
// the files that failed are marked bad, counted and named on stderr, one line each.
static int settle_failures(struct pass *p, struct clvae_error *err)
{
    size_t n;
    struct failure **all = sorted_failures(p->failures, &n);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++)
        if (!p->skip_bad || all[i]->status != CLVAE_EXIT_DATA)
            rc = clvae_fail(err, all[i]->status, "%s", all[i]->msg);
    for (size_t i = 0; i < n; i++) {
        if (rc == 0) {
            p->scan->files[all[i]->index].bad = true;
            p->scan->skipped++;
            fprintf(stderr, "clvae: warning: %s; skipped\n", all[i]->msg);
        }
        free(all[i]);
    }
    free(all);
    p->failures = NULL;
    return rc;
}

// Runs work over the list; 0, or -1 with the first failure (in file order) that stops it.
static int run_pass(struct pass *p, const struct image_folder_options *opt, struct clvae_error *err)
{
    atomic_init(&p->next, 0);
    atomic_init(&p->done, 0);
    atomic_init(&p->running, 0);
    atomic_init(&p->stop, false);
    p->skip_bad = opt->skip_bad;
    p->failures = NULL;
    p->held = 0;
    if (pthread_mutex_init(&p->lock, NULL) != 0)
        return clvae_fail(err, CLVAE_EXIT_FAILURE, "cannot create a mutex");
    if (pthread_cond_init(&p->freed, NULL) != 0) {
        pthread_mutex_destroy(&p->lock);
        return clvae_fail(err, CLVAE_EXIT_FAILURE, "cannot create a condition variable");
    }
    run_workers(p, opt);
    pthread_cond_destroy(&p->freed);
    pthread_mutex_destroy(&p->lock);
    return settle_failures(p, err);
}

// Waits until bytes more fit in the pass's budget beside what the other workers hold (one image
// over it waits until they hold nothing), then counts them held.
static void take_memory(struct pass *p, size_t bytes)
{
    if (bytes == 0)
        return;
    pthread_mutex_lock(&p->lock);
    while (p->held > 0 && p->held + bytes > p->budget)
        pthread_cond_wait(&p->freed, &p->lock);
    p->held += bytes;
    pthread_mutex_unlock(&p->lock);
}

static void give_memory(struct pass *p, size_t bytes)
{
    if (bytes == 0)
        return;
    pthread_mutex_lock(&p->lock);
    p->held -= bytes;
    pthread_cond_broadcast(&p->freed);
    pthread_mutex_unlock(&p->lock);
}

// Opens entry i's file for a reader: a regular file, opened without blocking (a FIFO put there
// since the scan would wait for a writer).
static int open_entry(const struct entry *e, struct png_reader *r, struct clvae_error *err)
{
    const char *why = NULL;
    r->name = e->path;
    r->fp = regular_file_fopen(e->path, &why);
    if (!r->fp)
        return clvae_fail(err, CLVAE_EXIT_DATA, "%s: %s", e->path, why);
    return 0;
}

// The header pass's work: entry i's size and colour.
static int header_work(struct pass *p, size_t i, struct clvae_error *err)
{
    struct entry *e = &p->scan->files[i];
    struct png_reader r = {0};
    if (open_entry(e, &r, err) != 0)
        return -1;
    int rc = reader_open(&r, err) == 0 ? reader_run(&r, err) : -1;
    reader_close(&r);
    fclose(r.fp);
    if (rc == 0) {
        e->width = r.header.width;
        e->height = r.header.height;
        e->colour = r.header.colour;
        e->transparency = r.header.transparency;
    }
    return rc;
}

// The decoding pass's work: entry i's pixels, straight into its slot of its set; an image to
// resize waits for room in the pass's budget.
static int decode_work(struct pass *p, size_t i, struct clvae_error *err)
{
    const struct entry *e = &p->scan->files[i];
    const struct image_format *fmt = p->fmt;
    size_t bytes = (size_t)fmt->width * fmt->height * fmt->channels;
    uint8_t *slot = e->set == SET_TRAIN ? p->pixels[SET_TRAIN] + i * bytes
                                        : p->pixels[SET_TEST] + (i - p->n_train) * bytes;
    struct image_png_header expect = {.width = e->width, .height = e->height};
    struct png_reader r = {.fmt = fmt, .expect = &expect, .out = slot};
    size_t held = (size_t)resize_bytes(e->width, e->height, fmt);
    take_memory(p, held);
    int rc = open_entry(e, &r, err);
    if (rc == 0) {
        rc = reader_open(&r, err) == 0 ? reader_run(&r, err) : -1;
        reader_close(&r);
        fclose(r.fp);
    }
    give_memory(p, held);
    return rc;
}

// ---- Putting the sets together ----

// Both sets (the test set alone with test_only) must keep an image after files were skipped.
static int check_sets(const struct scan *s, bool test_only, struct clvae_error *err)
{
    size_t n_train = count_train(s);
    if ((n_train == 0 && !test_only) || n_train == s->n)
        return clvae_fail(err, CLVAE_EXIT_DATA,
                          "%s: no %s image is left after skipping %llu bad file(s)", s->dir,
                          n_train == 0 ? "training" : "test", (unsigned long long)s->skipped);
    return 0;
}

// Pass 1: every file's header, leaving out (under skip_bad) the files that fail.
static int read_headers(struct scan *s, const struct image_folder_options *opt,
                        struct clvae_error *err)
{
    struct pass p = {.verb = "reading", .noun = "headers", .work = header_work, .scan = s};
    if (run_pass(&p, opt, err) != 0)
        return -1;
    drop_bad(s);
    return check_sets(s, opt->test_only, err);
}

// Without --image-size every image must have the first one's size.
static int check_sizes(const struct scan *s, struct clvae_error *err)
{
    const struct entry *first = &s->files[0];
    for (size_t i = 1; i < s->n; i++) {
        const struct entry *e = &s->files[i];
        if (e->width != first->width || e->height != first->height)
            return clvae_fail(err, CLVAE_EXIT_DATA,
                              "%s: the image is %ux%u but %s is %ux%u; all images must have one "
                              "size, or give --image-size WxH to resize them",
                              e->path, (unsigned)e->width, (unsigned)e->height, first->path,
                              (unsigned)first->width, (unsigned)first->height);
    }
    return 0;
}

// What every image becomes: the channels asked for or seen in the headers, the size asked for or
// the first image's.
static int choose_format(const struct scan *s, const struct image_folder_options *opt,
                         struct image_format *fmt, struct clvae_error *err)
{
    const uint8_t *bg = opt->background;
    bool grey_bg = bg[0] == bg[1] && bg[1] == bg[2], colour = false;
    for (size_t i = 0; i < s->n && !colour; i++)
        colour = s->files[i].colour || (s->files[i].transparency && !grey_bg);
    int channels = opt->channels;
    if (channels == 0)
        channels = colour ? 3 : 1;
    *fmt = (struct image_format){.channels = channels,
                                 .width = opt->width,
                                 .height = opt->height,
                                 .background = {bg[0], bg[1], bg[2]}};
    if (opt->width == 0) {
        if (check_sizes(s, err) != 0)
            return -1;
        fmt->width = (int)s->files[0].width;
        fmt->height = (int)s->files[0].height;
    }
    uint64_t image = (uint64_t)fmt->width * fmt->height * fmt->channels;
    if (image > IDX_MAX_BYTES / s->n)
        return clvae_fail(err, CLVAE_EXIT_DATA,
                          "%s: %zu images of %dx%dx%d are over the limit of %llu bytes of "
                          "pixels; give a smaller --image-size",
                          s->dir, s->n, fmt->width, fmt->height, fmt->channels,
                          (unsigned long long)IDX_MAX_BYTES);
    return 0;
}

// A set of count images of fmt, its pixels allocated (labels come after decoding).
static int make_set(struct image_set *set, size_t count, const struct image_format *fmt,
                    struct clvae_error *err)
{
    *set = (struct image_set){.count = (uint32_t)count,
                              .height = (uint32_t)fmt->height,
                              .width = (uint32_t)fmt->width,
                              .channels = (uint32_t)fmt->channels};
    size_t bytes = count * fmt->height * fmt->width * fmt->channels;
    set->pixels = malloc(bytes ? bytes : 1);
    if (!set->pixels)
        return clvae_fail(err, CLVAE_EXIT_FAILURE, "out of host memory for %zu bytes of pixels",
                          bytes);
    return 0;
}

// The entries [b, b + set->count) that decoded: their pixels moved down over those that did not,
// and their labels when labelled.
static void compact_set(const struct scan *s, size_t b, struct image_set *set)
{
    size_t bytes = (size_t)set->height * set->width * set->channels, kept = 0;
    if (s->n_classes > 0)
        set->labels = xmalloc((set->count ? set->count : 1) * sizeof *set->labels);
    for (size_t i = 0; i < set->count; i++) {
        const struct entry *e = &s->files[b + i];
        if (e->bad)
            continue;
        if (kept != i)
            memmove(set->pixels + kept * bytes, set->pixels + i * bytes, bytes);
        if (set->labels)
            set->labels[kept] = e->label;
        kept++;
    }
    set->count = (uint32_t)kept;
}

// Pass 2: every image decoded into out's two sets, the files that fail left out under skip_bad.
static int decode_all(struct scan *s, const struct image_folder_options *opt,
                      const struct image_format *fmt, struct image_folder *out,
                      struct clvae_error *err)
{
    size_t n_train = count_train(s);
    if (make_set(&out->train, n_train, fmt, err) != 0 ||
        make_set(&out->test, s->n - n_train, fmt, err) != 0)
        return -1;
    struct pass p = {.verb = "decoding",
                     .noun = "images",
                     .work = decode_work,
                     .scan = s,
                     .fmt = fmt,
                     .pixels = {out->train.pixels, out->test.pixels},
                     .n_train = n_train,
                     .budget = opt->decode_budget ? opt->decode_budget : IMAGE_DECODE_BUDGET};
    if (run_pass(&p, opt, err) != 0)
        return -1;
    compact_set(s, 0, &out->train);
    compact_set(s, n_train, &out->test);
    drop_bad(s);
    return check_sets(s, opt->test_only, err);
}

// ---- The entry points ----

// Options out of range are the caller's (the command line's) fault.
static int check_options(const struct image_folder_options *opt, struct clvae_error *err)
{
    if (opt->channels != 0 && opt->channels != 1 && opt->channels != 3)
        return clvae_fail(err, CLVAE_EXIT_USAGE, "image channels must be 1 or 3, not %d",
                          opt->channels);
    bool no_size = opt->width == 0 && opt->height == 0;
    if (!no_size && (opt->width < 1 || opt->width > IMAGE_MAX_SIDE || opt->height < 1 ||
                     opt->height > IMAGE_MAX_SIDE))
        return clvae_fail(err, CLVAE_EXIT_USAGE,
                          "--image-size: %dx%d is not a size from 1x1 to %dx%d", opt->width,
                          opt->height, IMAGE_MAX_SIDE, IMAGE_MAX_SIDE);
    if (!(opt->test_split > 0 && opt->test_split < 1))
        return clvae_fail(err, CLVAE_EXIT_USAGE,
                          "--test-split: %g is not a fraction between 0 and 1 (exclusive)",
                          opt->test_split);
    if (opt->threads < 0)
        return clvae_fail(err, CLVAE_EXIT_USAGE, "threads: %d is negative", opt->threads);
    return 0;
}

static void scan_free(struct scan *s)
{
    free(s->names.text);
    free(s->folders.text);
    free(s->pending);
    free(s->files);
    for (int i = 0; i < s->n_classes; i++)
        free(s->classes[i]);
    free(s->classes);
    *s = (struct scan){0};
}

// The list of files: scanned, ordered, hard links dropped, split when there is no DIR/test.
static int list_files(struct scan *s, const char *dir, const struct image_folder_options *opt,
                      struct clvae_error *err)
{
    if (scan_layout(s, dir, err) != 0)
        return -1;
    free(s->folders.text);
    free(s->pending);
    s->folders = (struct arena){0};
    s->pending = NULL;
    s->n_pending = s->pending_cap = 0;
    settle(s);
    drop_hard_links(s);
    if (s->test_folder && count_train(s) == s->n)
        return clvae_fail(err, CLVAE_EXIT_DATA,
                          "%s: every image of test/ is a hard link to one of train/, read once "
                          "as a training image",
                          dir);
    if (!s->test_folder && split(s, opt, err) != 0)
        return -1;
    if (opt->test_only) { // the entries are in order, training's first: drop them
        size_t n_train = count_train(s);
        memmove(s->files, s->files + n_train, (s->n - n_train) * sizeof *s->files);
        s->n -= n_train;
    }
    return 0;
}

int image_folder_read(const char *dir, const struct image_folder_options *opt,
                      struct image_folder *out, struct clvae_error *err)
{
    struct scan s = {.empty_hint = opt->empty_hint};
    struct image_format fmt;
    *out = (struct image_folder){0};
    int rc = -1;
    if (check_options(opt, err) != 0 || list_files(&s, dir, opt, err) != 0 ||
        read_headers(&s, opt, err) != 0 || choose_format(&s, opt, &fmt, err) != 0 ||
        decode_all(&s, opt, &fmt, out, err) != 0)
        goto done;
    out->n_classes = s.n_classes;
    out->class_names = s.classes;
    out->skipped = s.skipped;
    out->test_folder = s.test_folder;
    s.classes = NULL;
    s.n_classes = 0;
    rc = 0;
done:
    scan_free(&s);
    if (rc != 0)
        image_folder_free(out);
    return rc;
}

void image_folder_free(struct image_folder *f)
{
    free(f->train.pixels);
    free(f->train.labels);
    free(f->test.pixels);
    free(f->test.labels);
    for (int i = 0; i < f->n_classes; i++)
        free(f->class_names[i]);
    free(f->class_names);
    *f = (struct image_folder){0};
}

// ---- Option parsing ----

// The value of digit c in base 10 or 16, or -1.
static int digit(char c, int base)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (base == 16 && c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (base == 16 && c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

// A whole number from *p in [lo, hi], digits only; advances *p past it. -1 if there is none.
static long parse_number(const char **p, long lo, long hi, int base)
{
    long v = 0;
    int digits = 0;
    for (const char *c = *p;; c++, digits++) {
        int d = digit(*c, base);
        if (d < 0)
            break;
        v = v * base + d;
        if (v > hi)
            return -1;
    }
    if (digits == 0 || v < lo)
        return -1;
    *p += digits;
    return v;
}

int image_folder_parse_size(const char *option, const char *text, int *width, int *height,
                            struct clvae_error *err)
{
    const char *p = text;
    long w = parse_number(&p, 1, IMAGE_MAX_SIDE, 10);
    long h = -1;
    if (w > 0 && (*p == 'x' || *p == 'X')) {
        p++;
        h = parse_number(&p, 1, IMAGE_MAX_SIDE, 10);
    }
    if (w < 0 || h < 0 || *p != '\0')
        return clvae_fail(err, CLVAE_EXIT_USAGE,
                          "%s: \"%s\" is not WxH, a width and a height from 1 to %d (like 64x64)",
                          option, text, IMAGE_MAX_SIDE);
    *width = (int)w;
    *height = (int)h;
    return 0;
}

// "#rrggbb" -> rgb; -1 if text is not that.
static int parse_hex_colour(const char *text, uint8_t rgb[3])
{
    if (text[0] != '#' || strlen(text) != 7)
        return -1;
    for (int k = 0; k < 3; k++) {
        char pair[3] = {text[1 + 2 * k], text[2 + 2 * k], '\0'};
        const char *p = pair;
        long v = parse_number(&p, 0, 255, 16);
        if (v < 0 || *p != '\0')
            return -1;
        rgb[k] = (uint8_t)v;
    }
    return 0;
}

// "G" or "R,G,B" -> rgb; -1 if text is not that.
static int parse_decimal_colour(const char *text, uint8_t rgb[3])
{
    const char *p = text;
    long v[3];
    int n = 0;
    for (;;) {
        v[n] = parse_number(&p, 0, 255, 10);
        if (v[n++] < 0)
            return -1;
        if (*p != ',' || n == 3)
            break;
        p++;
    }
    if (*p != '\0' || (n != 1 && n != 3))
        return -1;
    for (int k = 0; k < 3; k++)
        rgb[k] = (uint8_t)v[n == 1 ? 0 : k];
    return 0;
}

int image_folder_parse_background(const char *option, const char *text, uint8_t rgb[3],
                                  struct clvae_error *err)
{
    uint8_t got[3];
    if ((text[0] == '#' ? parse_hex_colour(text, got) : parse_decimal_colour(text, got)) != 0)
        return clvae_fail(err, CLVAE_EXIT_USAGE,
                          "%s: \"%s\" is not a colour: a grey level 0..255, R,G,B (each 0..255) "
                          "or #rrggbb",
                          option, text);
    memcpy(rgb, got, sizeof got);
    return 0;
}
