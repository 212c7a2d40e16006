// JPEG files with libjpeg-turbo's libjpeg API (a row of include/data/image_codec.h's table).
//
// libjpeg's error_exit would call exit(): here it formats the message and longjmps back into the
// reader, which reports "FILE: corrupt JPEG (libjpeg's message)"; its warnings (extraneous bytes,
// a damaged restart interval) are not printed and do not stop the image, as in PIL. The bytes come
// from the reader's own source manager, so that a file that ends before EOI is "truncated JPEG"
// rather than padded by libjpeg's fake EOI. A progress monitor stops a file of more than
// IMAGE_JPEG_MAX_SCANS scans. The header's size is checked before libjpeg allocates anything for
// the image; a multi-scan (progressive) file holds its DCT coefficients whole (work_bytes), and
// libjpeg's max_memory_to_use caps them at what the header implies.
//
// Colour: grey stays grey (replicated to RGB); YCbCr and RGB come out as RGBA straight from
// libjpeg; CMYK and YCCK come out as CMYK, inverted when an Adobe APP14 marker is present (Adobe's
// convention, which PIL's writer follows), then converted as PIL 9 converts CMYK to RGB. Rows are
// composited one by one at the output's size; an image to resize or crop is held as RGBA.
#include "image_codec.h"

#include <errno.h>
#include <jpeglib.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jerror.h>

#define FEED_BYTES 4096              // bytes handed to libjpeg at a time
#define POOL_BYTES ((size_t)4 << 20) // libjpeg's own tables and pools, beside its row buffers
#define POOL_ROW_BYTES 256 // libjpeg's row buffers (several rows of each component) a pixel

// One JPEG being read: libjpeg's state, the read it belongs to, and the buffers the reader holds
// (counted; freed by reader_close after a failure too).
struct jpeg_reader {
    struct jpeg_decompress_struct cinfo;
    struct jpeg_error_mgr jerr;
    struct jpeg_source_mgr src;
    struct jpeg_progress_mgr progress;
    jmp_buf jump;
    struct image_reader *in;
    bool created;       // jpeg_create_decompress ran
    bool failed;        // the reader's own failure is in in->err
    bool source_failed; // the source ended or failed (in->ended, in->read_errno)
    char msg[JMSG_LENGTH_MAX];
    struct image_header header;
    const struct image_format *fmt; // decoding, when not NULL
    const struct image_header *expect;
    uint8_t *out;
    uint8_t *row;    // counted: one row as libjpeg writes it
    uint8_t *rgba;   // counted: one row as RGBA (CMYK and grey; RGBA rows are row itself)
    uint8_t *source; // counted: the image as RGBA when it is resized or cropped
    uint8_t feed[FEED_BYTES];
};

static struct jpeg_reader *reader_of(j_common_ptr c)
{
    return c->client_data;
}

// libjpeg's fatal error: its message kept, back to the reader.
static void on_error_exit(j_common_ptr c)
{
    struct jpeg_reader *r = reader_of(c);
    c->err->format_message(c, r->msg);
    longjmp(r->jump, 1);
}

// Warnings and trace messages: never printed (nothing but the progress bar and skips may print).
static void on_emit_message(j_common_ptr c, int level)
{
    (void)c;
    (void)level;
}

static void on_output_message(j_common_ptr c)
{
    (void)c;
}

// Stops a file of more than IMAGE_JPEG_MAX_SCANS scans (libjpeg redoes its work for each).
static void on_progress(j_common_ptr c)
{
    struct jpeg_reader *r = reader_of(c);
    if (c->is_decompressor && r->cinfo.input_scan_number > IMAGE_JPEG_MAX_SCANS) {
        snprintf(r->msg, sizeof r->msg, "more than %d scans", IMAGE_JPEG_MAX_SCANS);
        longjmp(r->jump, 1);
    }
}

// ---- The source manager: the reader's bytes, and the end of the file an error ----

static void on_init_source(j_decompress_ptr c)
{
    (void)c;
}

static boolean on_fill_input_buffer(j_decompress_ptr c)
{
    struct jpeg_reader *r = reader_of((j_common_ptr)c);
    size_t n = image_source_read(r->in, r->feed, sizeof r->feed);
    if (n == 0) {
        r->in->ended = !r->in->fp || !ferror(r->in->fp);
        r->in->read_errno = r->in->ended ? 0 : errno;
        r->source_failed = true;
        longjmp(r->jump, 1);
    }
    r->src.next_input_byte = r->feed;
    r->src.bytes_in_buffer = n;
    return TRUE;
}

static void on_skip_input_data(j_decompress_ptr c, long n)
{
    struct jpeg_reader *r = reader_of((j_common_ptr)c);
    if (n <= 0)
        return;
    if ((size_t)n <= r->src.bytes_in_buffer) {
        r->src.next_input_byte += n;
        r->src.bytes_in_buffer -= (size_t)n;
        return;
    }
    uint64_t rest = (uint64_t)n - r->src.bytes_in_buffer;
    r->src.bytes_in_buffer = 0;
    if (image_source_skip(r->in, rest) != 0) {
        r->source_failed = true;
        longjmp(r->jump, 1);
    }
}

static void on_term_source(j_decompress_ptr c)
{
    (void)c;
}

// ---- Reading ----

// A fault libjpeg does not see itself: the message kept, back to the reader.
static void corrupt(struct jpeg_reader *r, const char *why)
{
    snprintf(r->msg, sizeof r->msg, "%s", why);
    longjmp(r->jump, 1);
}

// libjpeg's decompressor over the reader's source, its errors and progress routed here.
static void reader_start(struct jpeg_reader *r)
{
    j_decompress_ptr c = &r->cinfo;
    c->err = jpeg_std_error(&r->jerr);
    r->jerr.error_exit = on_error_exit;
    r->jerr.emit_message = on_emit_message;
    r->jerr.output_message = on_output_message;
    c->client_data = r;
    jpeg_create_decompress(c);
    r->created = true;
    r->src = (struct jpeg_source_mgr){.init_source = on_init_source,
                                      .fill_input_buffer = on_fill_input_buffer,
                                      .skip_input_data = on_skip_input_data,
                                      .resync_to_restart = jpeg_resync_to_restart,
                                      .term_source = on_term_source};
    c->src = &r->src;
    r->progress.progress_monitor = on_progress;
    c->progress = &r->progress;
}

// The bytes of a multi-scan file's coefficient arrays (64 coefficients of 2 bytes a block, every
// component's blocks padded to its sampling factors), as libjpeg's jdcoefct.c allocates them.
static uint64_t coefficient_bytes(j_decompress_ptr c)
{
    uint64_t n = 0;
    for (int i = 0; i < c->num_components; i++) {
        const jpeg_component_info *ci = &c->comp_info[i];
        n += ((uint64_t)ci->width_in_blocks + (uint64_t)ci->h_samp_factor) *
             ((uint64_t)ci->height_in_blocks + (uint64_t)ci->v_samp_factor) * DCTSIZE2 *
             sizeof(JCOEF);
    }
    return n;
}

// The header, checked: the size, a colour space libjpeg converts. -1 with in->err set.
static int read_header(struct jpeg_reader *r)
{
    j_decompress_ptr c = &r->cinfo;
    jpeg_read_header(c, TRUE);
    struct image_header *h = &r->header;
    h->width = c->image_width;
    h->height = c->image_height;
    h->colour = c->jpeg_color_space != JCS_GRAYSCALE;
    h->transparency = false;
    r->failed = true;
    if (image_check_size(r->in, h->width, h->height) != 0)
        return -1;
    if (c->jpeg_color_space != JCS_GRAYSCALE && c->jpeg_color_space != JCS_YCbCr &&
        c->jpeg_color_space != JCS_RGB && c->jpeg_color_space != JCS_CMYK &&
        c->jpeg_color_space != JCS_YCCK)
        return clvae_fail(r->in->err, CLVAE_EXIT_DATA,
                          "%s: corrupt JPEG (%d components in no colour space libjpeg converts)",
                          r->in->name, c->num_components);
    r->failed = false;
    h->work_bytes = jpeg_has_multiple_scans(c) ? coefficient_bytes(c) : 0;
    return 0;
}

// ink (C, M, Y, K as PIL holds them: 0 no ink) -> R, G, B: (255 - K) - (ink (255 - K)) / 255,
// rounded as PIL's MULDIV255.
static uint8_t from_ink(unsigned ink, unsigned nk)
{
    unsigned t = ink * nk + 128;
    return (uint8_t)(nk - (((t >> 8) + t) >> 8));
}

// A row as libjpeg wrote it (grey, RGBA or CMYK) -> RGBA.
static void to_rgba(const struct jpeg_reader *r, const uint8_t *row, uint8_t *rgba)
{
    const struct jpeg_decompress_struct *c = &r->cinfo;
    size_t n = c->output_width;
    if (c->out_color_space == JCS_GRAYSCALE) {
        for (size_t i = 0; i < n; i++) {
            rgba[4 * i] = rgba[4 * i + 1] = rgba[4 * i + 2] = row[i];
            rgba[4 * i + 3] = 255;
        }
        return;
    }
    unsigned flip = c->saw_Adobe_marker ? 255 : 0; // Adobe's CMYK is stored inverted
    for (size_t i = 0; i < n; i++) {
        const uint8_t *p = row + 4 * i;
        unsigned nk = 255 - (p[3] ^ flip);
        for (int k = 0; k < 3; k++)
            rgba[4 * i + k] = from_ink(p[k] ^ flip, nk);
        rgba[4 * i + 3] = 255;
    }
}

// Allocates n counted bytes for *p, or fails the reader.
static int take(struct jpeg_reader *r, uint8_t **p, size_t n)
{
    if ((*p = image_mem_alloc(r->in, n)))
        return 0;
    r->failed = true;
    return clvae_fail(r->in->err, CLVAE_EXIT_FAILURE, "%s: out of host memory for %zu bytes",
                      r->in->name, n);
}

// The pixels: rows composited into out at fmt's size, else gathered as RGBA for image_finish.
static int read_pixels(struct jpeg_reader *r)
{
    j_decompress_ptr c = &r->cinfo;
    const struct image_header *h = &r->header;
    const struct image_format *fmt = r->fmt;
    r->failed = true;
    if (image_check_expect(r->in, h, r->expect) != 0)
        return -1;
    r->failed = false;
    c->out_color_space = c->jpeg_color_space == JCS_GRAYSCALE ? JCS_GRAYSCALE
                         : c->jpeg_color_space == JCS_CMYK || c->jpeg_color_space == JCS_YCCK
                             ? JCS_CMYK
                             : JCS_EXT_RGBA;
    c->dct_method = JDCT_ISLOW;
    c->do_fancy_upsampling = TRUE;
    c->mem->max_memory_to_use =
        (long)(h->work_bytes + POOL_BYTES + (uint64_t)POOL_ROW_BYTES * h->width);
    jpeg_start_decompress(c);
    size_t w = c->output_width, row_bytes = w * (size_t)c->output_components;
    bool at_size = image_at_size(h->width, h->height, fmt),
         rgba_rows = row_bytes == 4 * w && c->out_color_space == JCS_EXT_RGBA;
    if (c->output_width != h->width || c->output_height != h->height)
        corrupt(r, "the output's size is not the header's");
    if (take(r, &r->row, row_bytes) != 0 || (!rgba_rows && take(r, &r->rgba, 4 * w) != 0) ||
        (!at_size && take(r, &r->source, 4 * w * h->height) != 0))
        return -1;
    while (c->output_scanline < c->output_height) {
        size_t y = c->output_scanline;
        JSAMPROW rows[1] = {r->row};
        if (jpeg_read_scanlines(c, rows, 1) != 1)
            corrupt(r, "a row did not decode");
        uint8_t *rgba = at_size ? (rgba_rows ? r->row : r->rgba) : r->source + y * 4 * w;
        if (rgba_rows && !at_size)
            memcpy(rgba, r->row, 4 * w);
        else if (!rgba_rows)
            to_rgba(r, r->row, rgba);
        if (at_size)
            image_composite(rgba, w, 1, fmt, r->out + y * w * (size_t)fmt->channels);
    }
    jpeg_finish_decompress(c);
    if (!at_size && image_finish(r->in, r->source, h->width, h->height, fmt, r->out) != 0) {
        r->failed = true;
        return -1;
    }
    return 0;
}

// The header and, when decoding, the pixels, under libjpeg's error handling: 0 or -1.
static int run_libjpeg(struct jpeg_reader *r)
{
    if (setjmp(r->jump))
        return -1;
    reader_start(r);
    if (read_header(r) != 0)
        return -1;
    return r->fmt ? read_pixels(r) : 0;
}

// The reader's failure as its error: its own, the source's, out of memory or libjpeg's message.
static int reader_fail(struct jpeg_reader *r)
{
    if (r->failed)
        return -1;
    if (r->source_failed)
        return image_fail_source(r->in, "JPEG");
    if (r->jerr.msg_code == JERR_OUT_OF_MEMORY)
        return clvae_fail(r->in->err, CLVAE_EXIT_FAILURE, "%s: out of host memory in libjpeg",
                          r->in->name);
    if (r->jerr.msg_code == JERR_NO_BACKING_STORE)
        return clvae_fail(r->in->err, CLVAE_EXIT_DATA,
                          "%s: corrupt JPEG (it needs more memory than a %ux%u image)", r->in->name,
                          (unsigned)r->header.width, (unsigned)r->header.height);
    return clvae_fail(r->in->err, CLVAE_EXIT_DATA, "%s: corrupt JPEG (%s)", r->in->name, r->msg);
}

static void reader_close(struct jpeg_reader *r)
{
    if (r->created)
        jpeg_destroy_decompress(&r->cinfo);
    image_mem_free(r->in, r->row);
    image_mem_free(r->in, r->rgba);
    image_mem_free(r->in, r->source);
}

static int read_jpeg(struct image_reader *in, const struct image_header *expect,
                     const struct image_format *fmt, uint8_t *out, struct image_header *h)
{
    struct jpeg_reader *r = image_mem_alloc(in, sizeof *r);
    if (!r)
        return clvae_fail(in->err, CLVAE_EXIT_FAILURE, "%s: out of host memory", in->name);
    *r = (struct jpeg_reader){.in = in, .fmt = fmt, .expect = expect, .out = out};
    int rc = run_libjpeg(r) == 0 ? 0 : reader_fail(r);
    if (rc == 0 && h)
        *h = r->header;
    reader_close(r);
    image_mem_free(in, r);
    return rc;
}

// ---- The row of the table ----

static bool jpeg_sniff(const uint8_t *head, size_t n)
{
    return n >= 3 && head[0] == 0xff && head[1] == 0xd8 && head[2] == 0xff;
}

static int jpeg_header(const struct image_codec *codec, struct image_reader *in,
                       struct image_header *h)
{
    (void)codec;
    return read_jpeg(in, NULL, NULL, NULL, h);
}

static int jpeg_decode(const struct image_codec *codec, struct image_reader *in,
                       const struct image_header *expect, const struct image_format *fmt,
                       uint8_t *out)
{
    (void)codec;
    return read_jpeg(in, expect, fmt, out, NULL);
}

static void jpeg_version(char *buf, size_t len)
{
    int v = LIBJPEG_TURBO_VERSION_NUMBER;
    snprintf(buf, len, "libjpeg-turbo %d.%d.%d", v / 1000000, v / 1000 % 1000, v % 1000);
}

static const char *const jpeg_extensions[] = {".jpg", ".jpeg", ".jpe", ".jfif", NULL};

const struct image_codec image_codec_jpeg = {.name = "JPEG",
                                             .extensions = jpeg_extensions,
                                             .sniff = jpeg_sniff,
                                             .header = jpeg_header,
                                             .decode = jpeg_decode,
                                             .version = jpeg_version};
