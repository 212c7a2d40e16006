// PNG files with libpng (a row of include/data/image_codec.h's table):
// - Any bit depth, grey, grey+alpha, palette (with tRNS), RGB, RGBA, 16-bit, interlaced, decoded
//   to 8-bit RGBA by libpng's expand, 16 bits scaled with rounding (scale_16), grey replicated to
//   RGB, opaque alpha added.
// - Only the IHDR, PLTE, tRNS, IDAT and IEND chunks are read (any but IDAT over 8 KiB is corrupt);
//   the others are skipped unread (the bytes are taken as stored: gAMA, cHRM, sRGB and iCCP are not
//   applied, and a text chunk claiming gigabytes costs nothing). A file must reach IEND: one cut
//   after its pixels is truncated too. Image data past the last row its header implies (rows x
//   (1 + row bytes), each Adam7 pass's for an interlaced image) is an error ("more image data than
//   its header implies"), met at most one row past the end: nothing more is inflated.
// - Colour: the colour type is RGB or RGBA (even if every pixel happens to be grey), or the
//   palette has an entry that is not grey; transparency: an alpha channel or tRNS.
//
// The reader hands the file to libpng's progressive reader chunk by chunk. libpng's sequential
// reader inflates whatever IDAT holds past the last row before it looks (1 GiB from an 8x8 file
// took 3 to 5 s); the progressive one stops one row past it, and says so. Rows arrive one at a
// time, each put in its place at once: the reader holds an image only when it is to be resized.
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include "image_codec.h"

#include <errno.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FEED_BYTES 8192          // bytes handed to libpng at a time (its own reader's IDAT reads)
#define PNG_CHUNK_MAX FEED_BYTES // the longest chunk but IDAT handed to libpng (see feed_chunks)

// libpng 1.6's warning (pngpread.c) when the image data goes on past the last row the header
// implies: it has inflated at most one row more, and inflates nothing after it.
#define PNG_EXTRA_DATA "Extra compressed data in IDAT"

// One PNG being read: libpng's state, the read it belongs to (source, memory count, error), what
// has been read and where the pixels go.
struct png_reader {
    struct image_reader *in;
    png_structp png;
    png_infop info;
    uint8_t sig[8]; // the signature, read before libpng starts
    bool no_memory; // an allocation for libpng failed
    char msg[256];  // libpng's last error
    bool failed;    // the reader's own failure is in in->err, from inside libpng's calls
    struct image_header header;
    bool have_header; // the chunks up to the first IDAT are read: header holds them
    bool at_end;      // IEND is read
    // Decoding, when fmt is not NULL.
    const struct image_format *fmt;
    const struct image_header *expect; // what an earlier pass read (NULL: nothing)
    uint8_t *out;                      // fmt's image
    uint8_t *source;                   // counted: the image as RGBA when it is resized, else NULL
    bool interlaced;                   // Adam7: rows arrive pass by pass
    uint64_t rows;                     // rows decoded (an interlaced image's: its passes' rows)
    uint64_t rows_due;                 // how many the header implies
};

// libpng's allocator: everything it takes (its state, row buffers, zlib's window) is counted.
static png_voidp on_png_malloc(png_structp png, png_alloc_size_t size)
{
    struct png_reader *r = png_get_mem_ptr(png);
    void *p = image_mem_alloc(r->in, size);
    if (!p)
        r->no_memory = true;
    return p;
}

static void on_png_free(png_structp png, png_voidp p)
{
    struct png_reader *r = png_get_mem_ptr(png);
    image_mem_free(r->in, p);
}

// The reader's own failure, already in r->in->err: unwinds out of libpng's call.
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
    clvae_fail(r->in->err, CLVAE_EXIT_DATA,
               "%s: corrupt PNG (more image data than its %ux%u header implies)", r->in->name,
               (unsigned)r->header.width, (unsigned)r->header.height);
    reader_stop(r);
}

// Exactly n bytes of the source into out, or libpng's error when the source ends or fails.
static void source_need(struct png_reader *r, uint8_t *out, size_t n)
{
    if (image_source_need(r->in, out, n) != 0)
        png_error(r->png, r->in->ended ? "unexpected end of file" : "read error");
}

// Skips n bytes of the source unread, or libpng's error.
static void source_skip(struct png_reader *r, uint64_t n)
{
    if (image_source_skip(r->in, n) != 0)
        png_error(r->png, r->in->ended ? "unexpected end of file" : "read error");
}

// Turns the reader's failure into err: truncated, unreadable, out of memory or corrupt.
static int reader_fail(struct png_reader *r)
{
    if (r->in->ended || r->in->read_errno)
        return image_fail_source(r->in, "PNG");
    if (r->no_memory)
        return clvae_fail(r->in->err, CLVAE_EXIT_FAILURE, "%s: out of host memory in libpng",
                          r->in->name);
    return clvae_fail(r->in->err, CLVAE_EXIT_DATA, "%s: corrupt PNG (%s)", r->in->name, r->msg);
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

uint64_t image_decode_bound(uint32_t width, uint32_t height, const struct image_format *fmt)
{
    return IMAGE_DECODE_FIXED_BYTES + IMAGE_DECODE_ROW_BYTES * (uint64_t)width +
           image_resize_bytes(width, height, fmt);
}

// The rows libpng hands over for an image of h: its height, or for Adam7 the rows of every pass
// that holds pixels.
static uint64_t rows_due(const struct image_header *h, bool interlaced)
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
    const struct image_header *h = &r->header;
    if (image_check_expect(r->in, h, r->expect) != 0)
        reader_stop(r);
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
    if (image_at_size(h->width, h->height, r->fmt))
        return;
    r->source = image_mem_alloc(r->in, (size_t)h->width * h->height * 4);
    if (!r->source) {
        clvae_fail(r->in->err, CLVAE_EXIT_FAILURE, "%s: out of host memory for %ux%u pixels",
                   r->in->name, (unsigned)h->width, (unsigned)h->height);
        reader_stop(r);
    }
}

// libpng's callback at the first IDAT, the chunks before it read: the header, checked against
// IMAGE_MAX_PIXELS, and when decoding the start of the image.
static void on_info(png_structp png, png_infop info)
{
    struct png_reader *r = png_get_progressive_ptr(png);
    struct image_header *h = &r->header;
    int type = png_get_color_type(png, info);
    h->width = png_get_image_width(png, info);
    h->height = png_get_image_height(png, info);
    h->colour = type == PNG_COLOR_TYPE_PALETTE ? palette_has_colour(png, info)
                                               : (type & PNG_COLOR_MASK_COLOR) != 0;
    h->transparency = (type & PNG_COLOR_MASK_ALPHA) || png_get_valid(png, info, PNG_INFO_tRNS);
    r->have_header = true;
    if ((uint64_t)h->width * h->height > IMAGE_MAX_PIXELS) {
        image_check_size(r->in, h->width, h->height);
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
    const struct image_header *h = &r->header;
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
        image_composite(row, n, step, fmt, r->out + at * fmt->channels);
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
static int reader_open(struct png_reader *r)
{
    struct image_reader *in = r->in;
    char text[128];
    size_t got = image_source_read(in, r->sig, sizeof r->sig);
    if (got == 0 && in->fp && ferror(in->fp))
        return clvae_fail(in->err, CLVAE_EXIT_DATA, "%s: %s", in->name,
                          image_errno_text(errno, text, sizeof text));
    if (got == 0)
        return clvae_fail(in->err, CLVAE_EXIT_DATA, "%s: empty file, not a PNG", in->name);
    if (got < sizeof r->sig || png_sig_cmp(r->sig, 0, sizeof r->sig) != 0)
        return clvae_fail(in->err, CLVAE_EXIT_DATA, "%s: not a PNG file (no PNG signature)",
                          in->name);
    r->png = png_create_read_struct_2(PNG_LIBPNG_VER_STRING, r, on_png_error, on_png_warning, r,
                                      on_png_malloc, on_png_free);
    if (r->png)
        r->info = png_create_info_struct(r->png);
    if (!r->png || !r->info)
        return clvae_fail(in->err, CLVAE_EXIT_FAILURE, "%s: out of host memory in libpng",
                          in->name);
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
    image_mem_free(r->in, r->source);
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

// Reads the PNG r opened: its header into r->header and, when r->fmt is set, its pixels into
// r->out (resized through image_finish when r->source holds them). 0, or -1 with the error.
static int reader_run(struct png_reader *r)
{
    if (run_libpng(r) != 0)
        return r->failed ? -1 : reader_fail(r);
    if (!r->fmt)
        return 0;
    if (r->rows < r->rows_due)
        return clvae_fail(r->in->err, CLVAE_EXIT_DATA, "%s: corrupt PNG (not enough image data)",
                          r->in->name);
    if (!r->source)
        return 0;
    return image_finish(r->in, r->source, r->header.width, r->header.height, r->fmt, r->out);
}

// ---- The row of the table ----

static bool png_sniff(const uint8_t *head, size_t n)
{
    return n >= 8 && png_sig_cmp(head, 0, 8) == 0;
}

static int png_header(const struct image_codec *codec, struct image_reader *in,
                      struct image_header *h)
{
    (void)codec;
    struct png_reader r = {.in = in};
    int rc = reader_open(&r) == 0 ? reader_run(&r) : -1;
    if (rc == 0)
        *h = r.header;
    reader_close(&r);
    return rc;
}

static int png_decode(const struct image_codec *codec, struct image_reader *in,
                      const struct image_header *expect, const struct image_format *fmt,
                      uint8_t *out)
{
    (void)codec;
    struct png_reader r = {.in = in, .fmt = fmt, .expect = expect, .out = out};
    int rc = reader_open(&r) == 0 ? reader_run(&r) : -1;
    reader_close(&r);
    return rc;
}

static void png_version(char *buf, size_t len)
{
    snprintf(buf, len, "libpng %s", png_get_libpng_ver(NULL));
}

static const char *const png_extensions[] = {".png", NULL};

const struct image_codec image_codec_png = {.name = "PNG",
                                            .extensions = png_extensions,
                                            .sniff = png_sniff,
                                            .header = png_header,
                                            .decode = png_decode,
                                            .version = png_version};

// ---- The PNG reader alone ----

int image_png_header(const uint8_t *data, size_t len, const char *name,
                     struct image_png_header *header, struct clvae_error *err)
{
    struct image_reader in = {.name = name, .data = data, .len = len, .size = len, .err = err};
    struct image_header h = {0};
    if (png_header(&image_codec_png, &in, &h) != 0)
        return -1;
    *header = (struct image_png_header){
        .width = h.width, .height = h.height, .colour = h.colour, .transparency = h.transparency};
    return 0;
}

int image_decode_png(const uint8_t *data, size_t len, const char *name,
                     const struct image_format *fmt, uint8_t *out, struct image_decode_stats *stats,
                     struct clvae_error *err)
{
    if ((fmt->channels != 1 && fmt->channels != 3) || fmt->width < 1 ||
        fmt->width > IMAGE_MAX_SIDE || fmt->height < 1 || fmt->height > IMAGE_MAX_SIDE)
        return clvae_fail(err, CLVAE_EXIT_USAGE, "%s: cannot decode to %dx%d with %d channels",
                          name, fmt->width, fmt->height, fmt->channels);
    struct image_reader in = {.name = name, .data = data, .len = len, .size = len, .err = err};
    int rc = png_decode(&image_codec_png, &in, NULL, fmt, out);
    if (stats)
        *stats = (struct image_decode_stats){
            .peak_bytes = in.peak, .held_after = in.held, .bytes_read = image_source_position(&in)};
    return rc;
}
