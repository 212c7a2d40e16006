// BMP, GIF (its first frame), PNM (P5 and P6 with a maxval of 255) and TGA through stb_image (four
// rows of include/data/image_codec.h's table sharing these functions; each row's impl is its
// format's own copy of stb_image, src/data/stb_format.h).
//
// The header pass reads the file's first HEADER_BYTES and asks stb_image for the size before
// anything is allocated for the image; decoding reads the file whole (so that the header checked
// and the pixels decoded are the same bytes) and decodes it as RGBA in stb_image's counted memory
// (work_bytes: the file and WORK_PER_PIXEL bytes a pixel: a GIF's image, background and history).
// stb_image takes a byte past the end of its input as 0 and a short read of pixels as done: reading
// through callbacks, a file it wanted more bytes of is "truncated", never padded.
#include "image_codec.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HEADER_BYTES 65536   // what the header pass reads: a PNM's comments may be long
#define STB_REFILL_BYTES 128 // stb_image's buffer: a short refill at the end is no overrun
#define WORK_PER_PIXEL 9     // the most stb_image holds a pixel: a GIF's 4 + 4 + 1

// ---- stb_image's callbacks and allocator ----

int stb_source_read(void *user, char *out, int size)
{
    struct stb_source *s = user;
    size_t want = size > 0 ? (size_t)size : 0, n = want < s->len - s->pos ? want : s->len - s->pos;
    if (n > 0)
        memcpy(out, s->data + s->pos, n);
    s->pos += n;
    if (n == 0 || (n < want && want != STB_REFILL_BYTES))
        s->overrun = true;
    return (int)n;
}

void stb_source_skip(void *user, int n)
{
    struct stb_source *s = user;
    size_t step = n > 0 ? (size_t)n : 0;
    s->pos = step < s->len - s->pos ? s->pos + step : s->len;
}

int stb_source_eof(void *user)
{
    const struct stb_source *s = user;
    return s->pos >= s->len;
}

static _Thread_local struct image_reader *owner;

void stb_counted_owner(struct image_reader *r)
{
    owner = r;
}

void *stb_counted_malloc(size_t size)
{
    void *p = image_mem_alloc(owner, size);
    if (p)
        memset(p, 0, size);
    return p;
}

void *stb_counted_realloc(void *p, size_t size)
{
    return image_mem_realloc(owner, p, size);
}

void stb_counted_free(void *p)
{
    image_mem_free(owner, p);
}

// ---- Reading ----

// stb_image's failure as the file's error: truncated when it wanted more than the file holds.
static int fail(const struct image_codec *codec, struct image_reader *r,
                const struct stb_source *src)
{
    const struct stb_format *f = codec->impl;
    if (src->overrun) {
        r->ended = true;
        return image_fail_source(r, codec->name);
    }
    const char *why = f->failure();
    if (why && strcmp(why, "Out of memory") == 0)
        return clvae_fail(r->err, CLVAE_EXIT_FAILURE, "%s: out of host memory in stb_image",
                          r->name);
    return clvae_fail(r->err, CLVAE_EXIT_DATA, "%s: corrupt %s (%s)", r->name, codec->name,
                      why ? why : "stb_image cannot read it");
}

// A PNM header's three numbers after "P5"/"P6" (width, height, maxval; '#' comments and
// whitespace between them as stb_image skips them) into v: 0, or -1 when one is missing or has more
// than 9 digits (stb_image 2.27 accumulates them in an int unchecked: a 20-digit width overflowed
// it under the fuzzers).
static int pnm_fields(const uint8_t *p, size_t n, long v[3])
{
    size_t i = 2;
    for (int field = 0; field < 3; field++) {
        for (;;) {
            while (i < n && (p[i] == ' ' || (p[i] >= '\t' && p[i] <= '\r')))
                i++;
            if (i < n && p[i] == '#') {
                while (i < n && p[i] != '\n' && p[i] != '\r')
                    i++;
                continue;
            }
            break;
        }
        size_t start = i;
        v[field] = 0;
        while (i < n && p[i] >= '0' && p[i] <= '9' && i - start < 10)
            v[field] = v[field] * 10 + (p[i++] - '0');
        if (i == start || i - start > 9)
            return -1;
    }
    return 0;
}

// PNM's own checks before stb_image reads the header: P5 or P6, numbers it parses safely, and a
// maxval of 255 (stb_image does not scale other maxvals). 0, or -1 with r->err.
static int pnm_check(struct image_reader *r, const struct stb_source *src)
{
    long v[3];
    if (src->len > 1 && src->data[1] != '5' && src->data[1] != '6')
        return clvae_fail(r->err, CLVAE_EXIT_DATA,
                          "%s: a P%c PNM (only P5 and P6, binary greymaps and pixmaps, are read)",
                          r->name, src->data[1]);
    if (pnm_fields(src->data, src->len, v) != 0)
        return clvae_fail(r->err, CLVAE_EXIT_DATA,
                          "%s: corrupt PNM (its header's width, height and maxval are not "
                          "numbers of at most 9 digits)",
                          r->name);
    if (v[2] != 255)
        return clvae_fail(r->err, CLVAE_EXIT_DATA,
                          "%s: a PNM of maxval %ld (only 8-bit files, maxval 255, are read)",
                          r->name, v[2]);
    return 0;
}

// The header of src: size (checked), colour and transparency from stb_image's component count.
static int info(const struct image_codec *codec, struct image_reader *r, struct stb_source *src,
                struct image_header *h)
{
    const struct stb_format *f = codec->impl;
    int x = 0, y = 0, comp = 0;
    stb_counted_owner(r);
    if (f == &stb_pnm && pnm_check(r, src) != 0)
        return -1;
    if (!f->info(src, &x, &y, &comp))
        return fail(codec, r, src);
    if (x <= 0 || y <= 0)
        return clvae_fail(r->err, CLVAE_EXIT_DATA, "%s: corrupt %s (%dx%d pixels)", r->name,
                          codec->name, x, y);
    if (image_check_size(r, (uint32_t)x, (uint32_t)y) != 0)
        return -1;
    *h = (struct image_header){.width = (uint32_t)x,
                               .height = (uint32_t)y,
                               .colour = comp >= 3,
                               .transparency = comp == 2 || comp == 4,
                               .work_bytes = r->size + WORK_PER_PIXEL * (uint64_t)x * (uint64_t)y};
    return 0;
}

static int stb_header(const struct image_codec *codec, struct image_reader *r,
                      struct image_header *h)
{
    uint8_t *head = image_mem_alloc(r, HEADER_BYTES);
    if (!head)
        return clvae_fail(r->err, CLVAE_EXIT_FAILURE, "%s: out of host memory", r->name);
    size_t got = image_source_read(r, head, HEADER_BYTES);
    int rc;
    if (got < HEADER_BYTES && r->fp && ferror(r->fp)) {
        r->read_errno = errno;
        rc = image_fail_source(r, codec->name);
    } else {
        struct stb_source src = {.data = head, .len = got};
        rc = info(codec, r, &src, h);
    }
    image_mem_free(r, head);
    return rc;
}

static int stb_decode(const struct image_codec *codec, struct image_reader *r,
                      const struct image_header *expect, const struct image_format *fmt,
                      uint8_t *out)
{
    const struct stb_format *f = codec->impl;
    const uint8_t *data;
    size_t len;
    uint8_t *owned = NULL, *rgba = NULL;
    struct image_header h;
    int rc = -1;
    if (image_read_whole(r, codec->name, &data, &len, &owned) != 0)
        return -1;
    struct stb_source src = {.data = data, .len = len};
    if (len > (size_t)0x7fffffff)
        rc = clvae_fail(r->err, CLVAE_EXIT_DATA, "%s: too large for stb_image", r->name);
    else if (info(codec, r, &src, &h) == 0 && image_check_expect(r, &h, expect) == 0) {
        int x = 0, y = 0;
        src = (struct stb_source){.data = data, .len = len};
        stb_counted_owner(r);
        rgba = f->load(&src, &x, &y);
        if (!rgba || src.overrun)
            rc = fail(codec, r, &src);
        else if ((uint32_t)x != h.width || (uint32_t)y != h.height)
            rc =
                clvae_fail(r->err, CLVAE_EXIT_DATA, "%s: corrupt %s (%dx%d, its header says %ux%u)",
                           r->name, codec->name, x, y, (unsigned)h.width, (unsigned)h.height);
        else
            rc = image_finish(r, rgba, h.width, h.height, fmt, out);
    }
    image_mem_free(r, rgba);
    image_mem_free(r, owned);
    return rc;
}

// ---- The rows ----

static bool gif_sniff(const uint8_t *head, size_t n)
{
    return n >= 6 && (memcmp(head, "GIF87a", 6) == 0 || memcmp(head, "GIF89a", 6) == 0);
}

static bool bmp_sniff(const uint8_t *head, size_t n)
{
    return n >= 2 && head[0] == 'B' && head[1] == 'M';
}

// "P1" to "P7" and a space: every PNM variant is named PNM, and those stb_image lacks say so.
static bool pnm_sniff(const uint8_t *head, size_t n)
{
    return n >= 3 && head[0] == 'P' && head[1] >= '1' && head[1] <= '7' &&
           (head[2] == ' ' || (head[2] >= '\t' && head[2] <= '\r'));
}

static void stb_version(char *buf, size_t len)
{
    snprintf(buf, len, "stb_image (libstb-dev)");
}

static const char *const gif_extensions[] = {".gif", NULL};
static const char *const bmp_extensions[] = {".bmp", NULL};
static const char *const pnm_extensions[] = {".pgm", ".ppm", ".pnm", NULL};
static const char *const tga_extensions[] = {".tga", NULL};

#define STB_ROW(NAME, EXTENSIONS, SNIFF, FORMAT)                                                   \
    {                                                                                              \
        .name = NAME, .extensions = EXTENSIONS, .sniff = SNIFF, .header = stb_header,              \
        .decode = stb_decode, .rgba_in_work = true, .version = stb_version, .impl = &FORMAT        \
    }

const struct image_codec image_codec_gif = STB_ROW("GIF", gif_extensions, gif_sniff, stb_gif);
const struct image_codec image_codec_bmp = STB_ROW("BMP", bmp_extensions, bmp_sniff, stb_bmp);
const struct image_codec image_codec_pnm = STB_ROW("PNM", pnm_extensions, pnm_sniff, stb_pnm);
const struct image_codec image_codec_tga = STB_ROW("TGA", tga_extensions, NULL, stb_tga);
