// The image readers from the command line, for tests/test_formats.py (which compares them with
// PIL's) and for looking at one file:
//   image_tool header FILE
//     prints "FORMAT WIDTH HEIGHT COLOUR TRANSPARENCY" (image_read_header)
//   image_tool decode FILE OUT [WxH [CHANNELS [CROP [R,G,B]]]]
//     decodes FILE with image_decode to WxH (default: its own size), CHANNELS 1 or 3 (default 3),
//     CROP none or center (default none), over R,G,B (default 255,255,255), and writes the bytes
//     (height, width, channels) to OUT
//   image_tool geometry W H WxH
//     prints image_crop_geometry's "SCALED_W SCALED_H LEFT TOP" for a W x H image to WxH, center
// Errors print "image_tool: <message>" and exit with the reader's status.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image_decode.h"
#include "image_folder.h"

// The whole file at path (malloc'ed), its length in *len; NULL when it cannot be read.
static uint8_t *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = malloc(cap);
    for (size_t got; buf && (got = fread(buf + n, 1, cap - n, f)) > 0;) {
        n += got;
        if (n == cap) {
            uint8_t *grown = realloc(buf, cap *= 2);
            if (!grown)
                free(buf);
            buf = grown;
        }
    }
    fclose(f);
    *len = n;
    return buf;
}

static int fail(const struct clvae_error *err)
{
    fprintf(stderr, "image_tool: %s\n", err->msg);
    return err->status ? err->status : 1;
}

static int usage(void)
{
    fprintf(stderr, "usage: image_tool header FILE | decode FILE OUT [WxH [CHANNELS [CROP "
                    "[R,G,B]]]] | geometry W H WxH\n");
    return 2;
}

static int header(const char *path)
{
    size_t len;
    uint8_t *data = slurp(path, &len);
    struct clvae_error err = {0};
    struct image_header h;
    if (!data)
        return usage();
    int rc = image_read_header(data, len, path, &h, &err);
    free(data);
    if (rc != 0)
        return fail(&err);
    printf("%s %u %u %d %d\n", image_codec_name(h.codec), (unsigned)h.width, (unsigned)h.height,
           h.colour, h.transparency);
    return 0;
}

static int decode(int argc, char **argv)
{
    size_t len;
    uint8_t *data = slurp(argv[2], &len);
    struct clvae_error err = {0};
    struct image_header h;
    if (!data)
        return usage();
    if (image_read_header(data, len, argv[2], &h, &err) != 0) {
        free(data);
        return fail(&err);
    }
    struct image_format fmt = {.channels = 3,
                               .width = (int)h.width,
                               .height = (int)h.height,
                               .background = {255, 255, 255}};
    if ((argc > 4 && image_folder_parse_size("WxH", argv[4], &fmt.width, &fmt.height, &err)) ||
        (argc > 5 && (fmt.channels = atoi(argv[5])) != 1 && fmt.channels != 3) ||
        (argc > 6 && image_folder_parse_crop("CROP", argv[6], &fmt.crop, &err)) ||
        (argc > 7 && image_folder_parse_background("R,G,B", argv[7], fmt.background, &err))) {
        free(data);
        return err.msg[0] ? fail(&err) : usage();
    }
    size_t bytes = (size_t)fmt.width * fmt.height * fmt.channels;
    uint8_t *out = malloc(bytes);
    int rc = out ? image_decode(data, len, argv[2], &fmt, out, NULL, &err) : -1;
    FILE *f = rc == 0 ? fopen(argv[3], "wb") : NULL;
    if (rc == 0 && (!f || fwrite(out, 1, bytes, f) != bytes || fclose(f) != 0)) {
        fprintf(stderr, "image_tool: cannot write %s\n", argv[3]);
        rc = 1;
    }
    free(out);
    free(data);
    return rc == 0 ? 0 : err.msg[0] ? fail(&err) : 1;
}

static int geometry(char **argv)
{
    struct image_format fmt = {.channels = 3, .crop = IMAGE_CROP_CENTER};
    struct clvae_error err;
    if (image_folder_parse_size("WxH", argv[4], &fmt.width, &fmt.height, &err))
        return fail(&err);
    struct image_crop_box box;
    image_crop_geometry((uint32_t)atol(argv[2]), (uint32_t)atol(argv[3]), &fmt, &box);
    printf("%llu %llu %llu %llu\n", (unsigned long long)box.scaled_width,
           (unsigned long long)box.scaled_height, (unsigned long long)box.left,
           (unsigned long long)box.top);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "header") == 0)
        return header(argv[2]);
    if (argc >= 4 && argc <= 8 && strcmp(argv[1], "decode") == 0)
        return decode(argc, argv);
    if (argc == 5 && strcmp(argv[1], "geometry") == 0)
        return geometry(argv);
    return usage();
}
