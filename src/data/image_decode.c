// One image file decoded (see include/data/image_decode.h): the table of formats, the choice by
// signature, and what the readers share (include/data/image_codec.h): the source, counted memory,
// the checks, and resizing, cropping and compositing.
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include "image_codec.h"

#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>

#include <stb_image_resize.h>

#define SNIFF_BYTES 16    // the longest signature looked at (WebP's 12)
#define SKIP_READ 8192    // a FILE's skips up to this are read through, longer ones sought past
#define VERSION_BYTES 256 // a format's version text

// The formats, by enum image_codec_id.
static const struct image_codec *const codecs[IMAGE_N_CODECS] = {
    [IMAGE_PNG] = &image_codec_png,   [IMAGE_JPEG] = &image_codec_jpeg,
    [IMAGE_WEBP] = &image_codec_webp, [IMAGE_GIF] = &image_codec_gif,
    [IMAGE_BMP] = &image_codec_bmp,   [IMAGE_PNM] = &image_codec_pnm,
    [IMAGE_TGA] = &image_codec_tga};

// ---- The source ----

const char *image_errno_text(int e, char *buf, size_t len)
{
    if (strerror_r(e, buf, len) != 0)
        snprintf(buf, len, "error %d", e);
    return buf;
}

size_t image_source_read(struct image_reader *r, uint8_t *out, size_t n)
{
    if (r->fp)
        return fread(out, 1, n, r->fp);
    size_t got = n < r->len - r->pos ? n : r->len - r->pos;
    if (got > 0)
        memcpy(out, r->data + r->pos, got);
    r->pos += got;
    return got;
}

int image_source_need(struct image_reader *r, uint8_t *out, size_t n)
{
    if (image_source_read(r, out, n) == n)
        return 0;
    r->ended = !r->fp || !ferror(r->fp);
    r->read_errno = r->ended ? 0 : errno;
    return -1;
}

// A FILE's short skips are read through (a seek drops stdio's buffer); long ones are sought past,
// which shows a skip past the end as the end at the next read. Memory's skip past the end is the
// end at once.
int image_source_skip(struct image_reader *r, uint64_t n)
{
    if (r->fp && n <= SKIP_READ) {
        uint8_t buf[SKIP_READ];
        return image_source_need(r, buf, (size_t)n);
    }
    if (r->fp) {
        if (fseeko(r->fp, (off_t)n, SEEK_CUR) == 0)
            return 0;
        r->read_errno = errno;
        return -1;
    }
    if (n > r->len - r->pos) {
        r->pos = r->len;
        r->ended = true;
        return -1;
    }
    r->pos += (size_t)n;
    return 0;
}

size_t image_source_position(const struct image_reader *r)
{
    if (!r->fp)
        return r->pos;
    off_t at = ftello(r->fp);
    return at < 0 ? 0 : (size_t)at;
}

int image_fail_source(struct image_reader *r, const char *format)
{
    char text[128];
    if (r->read_errno)
        return clvae_fail(r->err, CLVAE_EXIT_DATA, "%s: read error (%s)", r->name,
                          image_errno_text(r->read_errno, text, sizeof text));
    return clvae_fail(r->err, CLVAE_EXIT_DATA, "%s: truncated %s (the file ends early)", r->name,
                      format);
}

int image_read_whole(struct image_reader *r, const char *format, const uint8_t **data, size_t *len,
                     uint8_t **owned)
{
    *owned = NULL;
    if (!r->fp) {
        *data = r->data;
        *len = r->len;
        return 0;
    }
    if (r->size > IMAGE_MAX_FILE_BYTES)
        return clvae_fail(
            r->err, CLVAE_EXIT_DATA, "%s: a %s file of %llu bytes is over the limit of %llu bytes",
            r->name, format, (unsigned long long)r->size, (unsigned long long)IMAGE_MAX_FILE_BYTES);
    size_t n = (size_t)r->size;
    uint8_t *buf = image_mem_alloc(r, n ? n : 1);
    if (!buf)
        return clvae_fail(r->err, CLVAE_EXIT_FAILURE, "%s: out of host memory for %zu bytes",
                          r->name, n);
    uint8_t more;
    if (image_source_need(r, buf, n) != 0 || image_source_read(r, &more, 1) != 0) {
        image_mem_free(r, buf);
        if (!r->ended && !r->read_errno)
            return clvae_fail(r->err, CLVAE_EXIT_DATA,
                              "%s: changed while being read (longer "
                              "than its size)",
                              r->name);
        return image_fail_source(r, format);
    }
    *data = *owned = buf;
    *len = n;
    return 0;
}

// ---- Counted memory ----

// A counted block: its size before it, aligned as malloc's blocks are.
union counted {
    size_t size;
    max_align_t align;
};

void *image_mem_alloc(struct image_reader *r, size_t size)
{
    return image_mem_realloc(r, NULL, size);
}

void *image_mem_realloc(struct image_reader *r, void *p, size_t size)
{
    union counted *old = p ? (union counted *)p - 1 : NULL;
    size_t was = old ? old->size : 0;
    union counted *c = size <= SIZE_MAX - sizeof *c ? realloc(old, sizeof *c + size) : NULL;
    if (!c)
        return NULL;
    c->size = size;
    r->held = r->held - was + size;
    if (r->held > r->peak)
        r->peak = r->held;
    return c + 1;
}

void image_mem_free(struct image_reader *r, void *p)
{
    if (!p)
        return;
    union counted *c = (union counted *)p - 1;
    r->held -= c->size;
    free(c);
}

// ---- Checks ----

int image_check_size(struct image_reader *r, uint32_t w, uint32_t h)
{
    if (w == 0 || h == 0)
        return clvae_fail(r->err, CLVAE_EXIT_DATA, "%s: corrupt image (%ux%u pixels)", r->name,
                          (unsigned)w, (unsigned)h);
    if ((uint64_t)w * h > IMAGE_MAX_PIXELS)
        return clvae_fail(r->err, CLVAE_EXIT_DATA, "%s: %ux%u is over the limit of %llu pixels",
                          r->name, (unsigned)w, (unsigned)h, (unsigned long long)IMAGE_MAX_PIXELS);
    return 0;
}

int image_check_expect(struct image_reader *r, const struct image_header *h,
                       const struct image_header *expect)
{
    if (!expect || (h->width == expect->width && h->height == expect->height))
        return 0;
    return clvae_fail(r->err, CLVAE_EXIT_DATA, "%s: changed while being read (%ux%u, was %ux%u)",
                      r->name, (unsigned)h->width, (unsigned)h->height, (unsigned)expect->width,
                      (unsigned)expect->height);
}

// ---- Pixels ----

bool image_at_size(uint32_t w, uint32_t h, const struct image_format *fmt)
{
    return w == (uint32_t)fmt->width && h == (uint32_t)fmt->height;
}

uint64_t image_resize_bytes(uint32_t w, uint32_t h, const struct image_format *fmt)
{
    if (image_at_size(w, h, fmt))
        return 0;
    return 4 * ((uint64_t)w * h + (uint64_t)fmt->width * fmt->height);
}

// (c a + bg (255 - a) + 127) / 255 in 8 bits, then for one channel Rec. 601 luma rounded,
// (299 R + 587 G + 114 B + 500) / 1000.
void image_composite(const uint8_t *rgba, size_t n, size_t step, const struct image_format *fmt,
                     uint8_t *out)
{
    const uint8_t *bg = fmt->background;
    int channels = fmt->channels;
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

// d / 2 rounded half to even, as Python's round() (torchvision's CenterCrop).
static uint64_t half_even(uint64_t d)
{
    uint64_t q = d / 2;
    return d % 2 && q % 2 ? q + 1 : q;
}

void image_crop_geometry(uint32_t w, uint32_t h, const struct image_format *fmt,
                         struct image_crop_box *box)
{
    uint64_t W = (uint64_t)fmt->width, H = (uint64_t)fmt->height, rw = W, rh = H;
    if (fmt->crop == IMAGE_CROP_CENTER && W * h >= H * w)
        rh = (uint64_t)h * W / w;
    else if (fmt->crop == IMAGE_CROP_CENTER)
        rw = (uint64_t)w * H / h;
    *box = (struct image_crop_box){.scaled_width = rw,
                                   .scaled_height = rh,
                                   .left = half_even(rw - W),
                                   .top = half_even(rh - H)};
}

// The source's span [*lo, *hi) that the output's n pixels from first (of scaled, the whole
// source's src pixels scaled) draw on: their place in the source and a margin past the filter's
// reach (2 output pixels when shrinking, 2 source pixels when enlarging), clamped to the source;
// *s0, *s1 the window's ends in the span's texture coordinates (stb_image_resize's region).
static void span(uint64_t src, uint64_t scaled, uint64_t first, uint64_t n, uint64_t *lo,
                 uint64_t *hi, float *s0, float *s1)
{
    double scale = (double)scaled / (double)src, a = (double)first / scale,
           b = (double)(first + n) / scale;
    double margin = ceil(2.0 / (scale < 1.0 ? scale : 1.0)) + 3.0;
    double from = floor(a) - margin, to = ceil(b) + margin;
    *lo = from < 0 ? 0 : (uint64_t)from;
    *hi = to > (double)src ? src : (uint64_t)to;
    double width = (double)(*hi - *lo);
    *s0 = (float)((a - (double)*lo) / width);
    *s1 = (float)((b - (double)*lo) / width);
}

// stb_image_resize over rgba (w x h) into resized (fmt's size, RGBA): the whole image stretched
// (crop none), or the centre window of the scaled image (crop center) from the part of the source
// it draws on, so that the region's coordinates stay exact in floats however long the image.
static bool resample(const uint8_t *rgba, uint32_t w, uint32_t h, const struct image_format *fmt,
                     const struct image_crop_box *box, uint8_t *resized)
{
    if (fmt->crop != IMAGE_CROP_CENTER)
        return stbir_resize_uint8_generic(rgba, (int)w, (int)h, 0, resized, fmt->width, fmt->height,
                                          0, 4, 3, 0, STBIR_EDGE_CLAMP, STBIR_FILTER_DEFAULT,
                                          STBIR_COLORSPACE_SRGB, NULL);
    uint64_t x0, x1, y0, y1;
    float s0, s1, t0, t1;
    span(w, box->scaled_width, box->left, (uint64_t)fmt->width, &x0, &x1, &s0, &s1);
    span(h, box->scaled_height, box->top, (uint64_t)fmt->height, &y0, &y1, &t0, &t1);
    const uint8_t *part = rgba + ((size_t)y0 * w + x0) * 4;
    return stbir_resize_region(part, (int)(x1 - x0), (int)(y1 - y0), (int)w * 4, resized,
                               fmt->width, fmt->height, 0, STBIR_TYPE_UINT8, 4, 3, 0,
                               STBIR_EDGE_CLAMP, STBIR_EDGE_CLAMP, STBIR_FILTER_DEFAULT,
                               STBIR_FILTER_DEFAULT, STBIR_COLORSPACE_SRGB, NULL, s0, t0, s1, t1);
}

int image_finish(struct image_reader *r, const uint8_t *rgba, uint32_t w, uint32_t h,
                 const struct image_format *fmt, uint8_t *out)
{
    if (image_at_size(w, h, fmt)) {
        image_composite(rgba, (size_t)w * h, 1, fmt, out);
        return 0;
    }
    struct image_crop_box box;
    image_crop_geometry(w, h, fmt, &box);
    if (fmt->crop == IMAGE_CROP_CENTER && box.scaled_width == w && box.scaled_height == h) {
        size_t W = (size_t)fmt->width, row = W * (size_t)fmt->channels;
        for (size_t y = 0; y < (size_t)fmt->height; y++)
            image_composite(rgba + (((size_t)box.top + y) * w + box.left) * 4, W, 1, fmt,
                            out + y * row);
        return 0;
    }
    uint8_t *resized = image_mem_alloc(r, (size_t)fmt->width * fmt->height * 4);
    bool ok = resized && resample(rgba, w, h, fmt, &box, resized);
    if (ok)
        image_composite(resized, (size_t)fmt->width * fmt->height, 1, fmt, out);
    image_mem_free(r, resized);
    if (!ok)
        return clvae_fail(r->err, CLVAE_EXIT_FAILURE,
                          "%s: out of host memory resizing %ux%u to %dx%d", r->name, (unsigned)w,
                          (unsigned)h, fmt->width, fmt->height);
    return 0;
}

// ---- The table ----

int image_sniff(const uint8_t *head, size_t n)
{
    for (int k = 0; k < IMAGE_N_CODECS; k++)
        if (codecs[k]->sniff && codecs[k]->sniff(head, n))
            return k;
    return -1;
}

int image_name_codec(const char *name)
{
    const char *dot = strrchr(name, '.');
    if (!dot || dot == name || dot[-1] == '/')
        return -1;
    for (int k = 0; k < IMAGE_N_CODECS; k++)
        for (const char *const *e = codecs[k]->extensions; *e; e++)
            if (strcasecmp(dot, *e) == 0)
                return k;
    return -1;
}

const char *image_codec_name(int codec)
{
    return codec >= 0 && codec < IMAGE_N_CODECS ? codecs[codec]->name : "image";
}

void image_decoder_versions(char *buf, size_t len)
{
    buf[0] = '\0';
    void (*last)(char *, size_t) = NULL; // the stb_image formats share one
    for (int k = 0; k < IMAGE_N_CODECS; k++) {
        if (codecs[k]->version == last)
            continue;
        last = codecs[k]->version;
        char one[VERSION_BYTES];
        last(one, sizeof one);
        size_t used = strlen(buf);
        snprintf(buf + used, len - used, "%s%s", used ? ", " : "", one);
    }
}

// ---- One read: the format, then its reader ----

// The reader for r's file: the format its first bytes name (a .tga file's bytes name none), r
// back at the start. 0, or -1 naming the file (empty, unreadable, no known signature).
static int choose(struct image_reader *r, const struct image_codec **codec)
{
    uint8_t head[SNIFF_BYTES];
    char text[128];
    size_t got = image_source_read(r, head, sizeof head);
    if (r->fp && ferror(r->fp))
        return clvae_fail(r->err, CLVAE_EXIT_DATA, "%s: %s", r->name,
                          image_errno_text(errno, text, sizeof text));
    r->pos = 0;
    if (r->fp && fseeko(r->fp, 0, SEEK_SET) != 0)
        return clvae_fail(r->err, CLVAE_EXIT_DATA, "%s: %s", r->name,
                          image_errno_text(errno, text, sizeof text));
    int named = image_name_codec(r->name), id = image_sniff(head, got);
    if (id < 0 && named == IMAGE_TGA && got > 0)
        id = IMAGE_TGA;
    if (got == 0 && named >= 0)
        return clvae_fail(r->err, CLVAE_EXIT_DATA, "%s: empty file, not a %s", r->name,
                          codecs[named]->name);
    if (got == 0)
        return clvae_fail(r->err, CLVAE_EXIT_DATA, "%s: empty file, not an image", r->name);
    if (id < 0 && named >= 0)
        return clvae_fail(r->err, CLVAE_EXIT_DATA, "%s: not a %s file (no %s signature)", r->name,
                          codecs[named]->name, codecs[named]->name);
    if (id < 0)
        return clvae_fail(r->err, CLVAE_EXIT_DATA,
                          "%s: not an image (no PNG, JPEG, WebP, GIF, BMP or PNM signature)",
                          r->name);
    *codec = codecs[id];
    return 0;
}

// A failed read of a file whose name says another format than its bytes: "NAME: not a PNG file
// (its content is a GIF: what went wrong)".
static int mismatch(struct image_reader *r, const struct image_codec *codec)
{
    int named = image_name_codec(r->name);
    if (named < 0 || codecs[named] == codec || r->err->status != CLVAE_EXIT_DATA)
        return -1;
    char rest[CLVAE_ERROR_MAX];
    size_t n = strlen(r->name);
    const char *msg = r->err->msg;
    snprintf(rest, sizeof rest, "%s",
             strncmp(msg, r->name, n) == 0 && strncmp(msg + n, ": ", 2) == 0 ? msg + n + 2 : msg);
    return clvae_fail(r->err, CLVAE_EXIT_DATA, "%s: not a %s file (its content is a %s: %s)",
                      r->name, codecs[named]->name, codec->name, rest);
}

static int read_header(struct image_reader *r, struct image_header *h)
{
    const struct image_codec *codec;
    memset(h, 0, sizeof *h);
    if (choose(r, &codec) != 0)
        return -1;
    if (codec->header(codec, r, h) != 0)
        return mismatch(r, codec);
    for (int k = 0; k < IMAGE_N_CODECS; k++)
        if (codecs[k] == codec)
            h->codec = k;
    h->file_bytes = r->size;
    return 0;
}

static int read_image(struct image_reader *r, const struct image_header *expect,
                      const struct image_format *fmt, uint8_t *out)
{
    const struct image_codec *codec;
    if (choose(r, &codec) != 0)
        return -1;
    if (expect && codec != codecs[expect->codec])
        return clvae_fail(r->err, CLVAE_EXIT_DATA, "%s: changed while being read (a %s, was a %s)",
                          r->name, codec->name, codecs[expect->codec]->name);
    return codec->decode(codec, r, expect, fmt, out) == 0 ? 0 : mismatch(r, codec);
}

static int check_format(const char *name, const struct image_format *fmt, struct clvae_error *err)
{
    if ((fmt->channels != 1 && fmt->channels != 3) || fmt->width < 1 ||
        fmt->width > IMAGE_MAX_SIDE || fmt->height < 1 || fmt->height > IMAGE_MAX_SIDE ||
        (fmt->crop != IMAGE_CROP_NONE && fmt->crop != IMAGE_CROP_CENTER))
        return clvae_fail(err, CLVAE_EXIT_USAGE, "%s: cannot decode to %dx%d with %d channels",
                          name, fmt->width, fmt->height, fmt->channels);
    return 0;
}

int image_read_header(const uint8_t *data, size_t len, const char *name,
                      struct image_header *header, struct clvae_error *err)
{
    struct image_reader r = {.name = name, .data = data, .len = len, .size = len, .err = err};
    return read_header(&r, header);
}

int image_decode(const uint8_t *data, size_t len, const char *name, const struct image_format *fmt,
                 uint8_t *out, struct image_decode_stats *stats, struct clvae_error *err)
{
    if (stats)
        *stats = (struct image_decode_stats){0};
    if (check_format(name, fmt, err) != 0)
        return -1;
    struct image_reader r = {.name = name, .data = data, .len = len, .size = len, .err = err};
    int rc = read_image(&r, NULL, fmt, out);
    if (stats)
        *stats = (struct image_decode_stats){
            .peak_bytes = r.peak, .held_after = r.held, .bytes_read = image_source_position(&r)};
    return rc;
}

int image_file_header(FILE *fp, uint64_t size, const char *name, struct image_header *header,
                      struct clvae_error *err)
{
    struct image_reader r = {.name = name, .fp = fp, .size = size, .err = err};
    return read_header(&r, header);
}

int image_file_decode(FILE *fp, uint64_t size, const char *name, const struct image_header *expect,
                      const struct image_format *fmt, uint8_t *out, struct clvae_error *err)
{
    if (check_format(name, fmt, err) != 0)
        return -1;
    struct image_reader r = {.name = name, .fp = fp, .size = size, .err = err};
    return read_image(&r, expect, fmt, out);
}

// ---- Memory bounds ----

uint64_t image_header_image_bytes(const struct image_header *h, const struct image_format *fmt)
{
    uint64_t bytes = h->work_bytes;
    if (!image_at_size(h->width, h->height, fmt))
        bytes += 4 * (uint64_t)fmt->width * fmt->height +
                 (codecs[h->codec]->rgba_in_work ? 0 : 4 * (uint64_t)h->width * h->height);
    return bytes;
}

uint64_t image_header_bound(const struct image_header *h, const struct image_format *fmt)
{
    return IMAGE_DECODE_FIXED_BYTES + IMAGE_DECODE_ROW_BYTES * (uint64_t)h->width +
           image_header_image_bytes(h, fmt);
}
