// WebP files with libwebp (a row of include/data/image_codec.h's table): lossy and lossless, with
// or without alpha, decoded whole as non-premultiplied RGBA into the reader's own buffer. The
// header (WebPGetFeatures on the first HEADER_BYTES) gives the size before anything is allocated;
// the file is then read whole (IMAGE_MAX_FILE_BYTES at most) and decoded. An animation is refused
// (its frames are not one image). WebP says nothing of grey: every WebP counts as colour.
#include "image_codec.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <webp/decode.h>

#define HEADER_BYTES 4096 // what the header needs: RIFF, VP8X and the bitstream's first bytes

// libwebp's status as the file's error.
static int fail_status(struct image_reader *r, VP8StatusCode status)
{
    switch (status) {
    case VP8_STATUS_NOT_ENOUGH_DATA: r->ended = true; return image_fail_source(r, "WebP");
    case VP8_STATUS_OUT_OF_MEMORY:
        return clvae_fail(r->err, CLVAE_EXIT_FAILURE, "%s: out of host memory in libwebp", r->name);
    case VP8_STATUS_UNSUPPORTED_FEATURE:
        return clvae_fail(r->err, CLVAE_EXIT_DATA, "%s: corrupt WebP (a feature libwebp lacks)",
                          r->name);
    default:
        return clvae_fail(r->err, CLVAE_EXIT_DATA, "%s: corrupt WebP (libwebp's status %d)",
                          r->name, (int)status);
    }
}

// The header of data (len bytes, the file's first or all of them): size, alpha; an animation is
// refused.
static int features(struct image_reader *r, const uint8_t *data, size_t len, struct image_header *h)
{
    WebPBitstreamFeatures f;
    VP8StatusCode status = WebPGetFeatures(data, len, &f);
    if (status != VP8_STATUS_OK)
        return fail_status(r, status);
    if (f.width <= 0 || f.height <= 0)
        return clvae_fail(r->err, CLVAE_EXIT_DATA, "%s: corrupt WebP (%dx%d pixels)", r->name,
                          f.width, f.height);
    if (image_check_size(r, (uint32_t)f.width, (uint32_t)f.height) != 0)
        return -1;
    if (f.has_animation)
        return clvae_fail(r->err, CLVAE_EXIT_DATA,
                          "%s: an animated WebP (not read: its frames are not one image)", r->name);
    *h = (struct image_header){.width = (uint32_t)f.width,
                               .height = (uint32_t)f.height,
                               .colour = true,
                               .transparency = f.has_alpha != 0};
    // The file, the image as RGBA, and libwebp's own planes (YUV and alpha, or lossless ARGB).
    h->work_bytes = r->size + 8 * (uint64_t)h->width * h->height;
    return 0;
}

static int webp_header(const struct image_codec *codec, struct image_reader *r,
                       struct image_header *h)
{
    (void)codec;
    uint8_t head[HEADER_BYTES];
    size_t got = image_source_read(r, head, sizeof head);
    if (got < sizeof head && r->fp && ferror(r->fp)) {
        r->read_errno = errno;
        return image_fail_source(r, "WebP");
    }
    return features(r, head, got, h);
}

static int webp_decode(const struct image_codec *codec, struct image_reader *r,
                       const struct image_header *expect, const struct image_format *fmt,
                       uint8_t *out)
{
    (void)codec;
    const uint8_t *data;
    size_t len;
    uint8_t *owned = NULL, *rgba = NULL;
    struct image_header h;
    int rc = -1;
    if (image_read_whole(r, "WebP", &data, &len, &owned) != 0 || features(r, data, len, &h) != 0 ||
        image_check_expect(r, &h, expect) != 0)
        goto done;
    size_t bytes = 4 * (size_t)h.width * h.height;
    WebPDecoderConfig config;
    if (!WebPInitDecoderConfig(&config) || !(rgba = image_mem_alloc(r, bytes))) {
        rc = clvae_fail(r->err, CLVAE_EXIT_FAILURE, "%s: out of host memory for %ux%u pixels",
                        r->name, (unsigned)h.width, (unsigned)h.height);
        goto done;
    }
    config.output.colorspace = MODE_RGBA;
    config.output.is_external_memory = 1;
    config.output.u.RGBA.rgba = rgba;
    config.output.u.RGBA.stride = 4 * (int)h.width;
    config.output.u.RGBA.size = bytes;
    config.options.use_threads = 0; // the folder's passes run a decoder a core
    VP8StatusCode status = WebPDecode(data, len, &config);
    WebPFreeDecBuffer(&config.output);
    if (status != VP8_STATUS_OK)
        rc = fail_status(r, status);
    else
        rc = image_finish(r, rgba, h.width, h.height, fmt, out);
done:
    image_mem_free(r, rgba);
    image_mem_free(r, owned);
    return rc;
}

static bool webp_sniff(const uint8_t *head, size_t n)
{
    return n >= 12 && memcmp(head, "RIFF", 4) == 0 && memcmp(head + 8, "WEBP", 4) == 0;
}

static void webp_version(char *buf, size_t len)
{
    int v = WebPGetDecoderVersion();
    snprintf(buf, len, "libwebp %d.%d.%d", v >> 16, (v >> 8) & 0xff, v & 0xff);
}

static const char *const webp_extensions[] = {".webp", NULL};

const struct image_codec image_codec_webp = {.name = "WebP",
                                             .extensions = webp_extensions,
                                             .sniff = webp_sniff,
                                             .header = webp_header,
                                             .decode = webp_decode,
                                             .rgba_in_work = true,
                                             .version = webp_version};
