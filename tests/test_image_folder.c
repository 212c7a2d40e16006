// Tests for src/data/image_folder.c: PNGs of every format written by libpng and decoded to exact
// values computed here, class folders, unlabelled and train/test layouts, hidden files and links,
// the seeded split, resizing, every bad input and option text, and Debian's oxygen icons; for the
// other formats (tests/test_formats.py compares their pixels with PIL's): --crop center's geometry
// against torchvision's definition, headers of 100000x100000 pixels refused at no cost, the
// decoders' memory against image_header_bound, and the decoded-set cache (hit, stale, damaged,
// other options, cut at every byte).
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include "image_folder.h"
#include "test_util.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <jpeglib.h>
#include <webp/encode.h>

#include "image_cache.h"

#define OXYGEN_DIR "/usr/share/icons/oxygen/base/32x32"
#define MAX_SAMPLES 4096 // per test image: width * height * channels

// ---- Writing PNGs ----

// What write_png writes: samples (h, w, png channels) at the PNG's own bit depth; for a palette,
// indices into palette, with trans the entries' alpha; trans_grey/trans_rgb the tRNS colour of a
// grey or RGB image (-1: none).
struct png_spec {
    const char *what;
    int width, height, color_type, bit_depth, interlace;
    uint16_t samples[MAX_SAMPLES];
    png_color palette[16];
    int n_palette;
    uint8_t trans[16];
    int n_trans;
    int trans_grey;   // -1: none
    int trans_rgb[3]; // {-1}: none
};

// Dies on a failure of the test's own set-up.
static void setup_fail(const char *what, const char *path)
{
    fprintf(stderr, "test_image_folder: %s %s: %s\n", what, path, strerror(errno));
    tu_remove_tmp_dir();
    exit(1);
}

// Makes every folder above path (the file itself is not made).
static void make_parents(const char *path)
{
    char buf[TU_PATH_MAX];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + strlen(tu_tmp_dir) + 1; (p = strchr(p, '/')) != NULL; p++) {
        *p = '\0';
        if (mkdir(buf, 0700) != 0 && errno != EEXIST)
            setup_fail("cannot mkdir", buf);
        *p = '/';
    }
}

// tu_tmp_dir/rel into buf (which may hold rel), its folders made.
static const char *in_tmp(char *buf, const char *rel)
{
    char copy[TU_PATH_MAX];
    snprintf(copy, sizeof copy, "%s", rel);
    tu_in_tmp(buf, copy);
    make_parents(buf);
    return buf;
}

// Makes the folder tu_tmp_dir/rel (and those above it); returns its path in buf.
static const char *make_folder(char *buf, const char *rel)
{
    char file[TU_PATH_MAX];
    snprintf(file, sizeof file, "%s/x", rel);
    in_tmp(buf, file);
    buf[strlen(buf) - 2] = '\0';
    return buf;
}

static int png_channels(int color_type)
{
    switch (color_type) {
    case PNG_COLOR_TYPE_GRAY: return 1;
    case PNG_COLOR_TYPE_GRAY_ALPHA: return 2;
    case PNG_COLOR_TYPE_RGB: return 3;
    case PNG_COLOR_TYPE_RGB_ALPHA: return 4;
    default: return 1; // palette indices
    }
}

// Row y of s packed as the PNG stores it: bit depths below 8 most significant bits first,
// 16 bits big-endian.
static void pack_row(const struct png_spec *s, int y, uint8_t *row)
{
    int ch = png_channels(s->color_type), n = s->width * ch, d = s->bit_depth;
    const uint16_t *v = s->samples + (size_t)y * n;
    memset(row, 0, (size_t)n * 2);
    for (int i = 0; i < n; i++) {
        if (d == 16) {
            row[2 * i] = (uint8_t)(v[i] >> 8);
            row[2 * i + 1] = (uint8_t)v[i];
        } else if (d == 8) {
            row[i] = (uint8_t)v[i];
        } else {
            int bit = i * d;
            row[bit / 8] |= (uint8_t)(v[i] << (8 - d - bit % 8));
        }
    }
}

// The tRNS chunk and palette of s, when it has them.
static void set_extras(png_structp png, png_infop info, const struct png_spec *s)
{
    if (s->color_type == PNG_COLOR_TYPE_PALETTE) {
        png_set_PLTE(png, info, s->palette, s->n_palette);
        if (s->n_trans > 0)
            png_set_tRNS(png, info, s->trans, s->n_trans, NULL);
    } else if (s->trans_grey >= 0 || s->trans_rgb[0] >= 0) {
        png_color_16 c = {.gray = (png_uint_16)(s->trans_grey >= 0 ? s->trans_grey : 0)};
        if (s->trans_rgb[0] >= 0) {
            c.red = (png_uint_16)s->trans_rgb[0];
            c.green = (png_uint_16)s->trans_rgb[1];
            c.blue = (png_uint_16)s->trans_rgb[2];
        }
        png_set_tRNS(png, info, NULL, 0, &c);
    }
}

// Writes s to path with libpng.
static void write_png(const char *path, const struct png_spec *s)
{
    make_parents(path);
    FILE *fp = fopen(path, "wb");
    if (!fp)
        setup_fail("cannot create", path);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info || setjmp(png_jmpbuf(png)))
        setup_fail("libpng failed writing", path);
    png_init_io(png, fp);
    png_set_IHDR(png, info, (png_uint_32)s->width, (png_uint_32)s->height, s->bit_depth,
                 s->color_type, s->interlace, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    set_extras(png, info, s);
    png_write_info(png, info);
    int passes = png_set_interlace_handling(png);
    uint8_t row[MAX_SAMPLES * 2];
    for (int pass = 0; pass < passes; pass++)
        for (int y = 0; y < s->height; y++) {
            pack_row(s, y, row);
            png_write_row(png, row);
        }
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    if (fclose(fp) != 0)
        setup_fail("cannot close", path);
}

// A spec with no tRNS, the rest zero.
static struct png_spec spec(const char *what, int w, int h, int color_type, int depth)
{
    return (struct png_spec){.what = what,
                             .width = w,
                             .height = h,
                             .color_type = color_type,
                             .bit_depth = depth,
                             .interlace = PNG_INTERLACE_NONE,
                             .trans_grey = -1,
                             .trans_rgb = {-1, -1, -1}};
}

// An 8-bit RGBA image of one colour.
static void write_uniform(const char *path, int w, int h, uint8_t r, uint8_t g, uint8_t b,
                          uint8_t a)
{
    static struct png_spec s;
    s = spec("uniform", w, h, PNG_COLOR_TYPE_RGB_ALPHA, 8);
    for (int i = 0; i < w * h; i++) {
        s.samples[4 * i] = r;
        s.samples[4 * i + 1] = g;
        s.samples[4 * i + 2] = b;
        s.samples[4 * i + 3] = a;
    }
    write_png(path, &s);
}

// An 8-bit grey image of one level (v tells images apart).
static void write_grey(const char *path, int w, int h, uint8_t v)
{
    static struct png_spec s;
    s = spec("grey", w, h, PNG_COLOR_TYPE_GRAY, 8);
    for (int i = 0; i < w * h; i++)
        s.samples[i] = v;
    write_png(path, &s);
}

// ---- What the pixels should be, by the PNG specification and the header's rules ----

// A sample of bit depth d as 8 bits: low depths replicate their bits (v * 255 / (2^d - 1)),
// 16 bits rounds v * 255 / 65535.
static uint8_t to8(unsigned v, int d)
{
    if (d == 16)
        return (uint8_t)lround(v * 255.0 / 65535.0);
    return (uint8_t)(v * 255 / ((1u << d) - 1));
}

// Pixel i of s as 8-bit RGBA.
static void spec_rgba(const struct png_spec *s, int i, uint8_t rgba[4])
{
    int ch = png_channels(s->color_type), d = s->bit_depth;
    const uint16_t *v = s->samples + (size_t)i * ch;
    if (s->color_type == PNG_COLOR_TYPE_PALETTE) {
        png_color c = s->palette[v[0]];
        rgba[0] = c.red, rgba[1] = c.green, rgba[2] = c.blue;
        rgba[3] = v[0] < s->n_trans ? s->trans[v[0]] : 255;
        return;
    }
    bool colour = s->color_type & PNG_COLOR_MASK_COLOR;
    for (int k = 0; k < 3; k++)
        rgba[k] = to8(v[colour ? k : 0], d);
    rgba[3] = 255;
    if (s->color_type & PNG_COLOR_MASK_ALPHA)
        rgba[3] = to8(v[ch - 1], d);
    else if (!colour && s->trans_grey == v[0])
        rgba[3] = 0;
    else if (colour && s->trans_rgb[0] == v[0] && s->trans_rgb[1] == v[1] &&
             s->trans_rgb[2] == v[2])
        rgba[3] = 0;
}

// s over bg as channels: (c a + bg (255 - a) + 127) / 255, luma (299 R + 587 G + 114 B + 500)
// / 1000.
static void expected(const struct png_spec *s, const uint8_t bg[3], int channels, uint8_t *out)
{
    for (int i = 0; i < s->width * s->height; i++) {
        uint8_t p[4];
        unsigned c[3];
        spec_rgba(s, i, p);
        for (int k = 0; k < 3; k++)
            c[k] = (p[k] * p[3] + bg[k] * (255u - p[3]) + 127) / 255;
        if (channels == 3)
            for (int k = 0; k < 3; k++)
                out[3 * i + k] = (uint8_t)c[k];
        else
            out[i] = (uint8_t)((299 * c[0] + 587 * c[1] + 114 * c[2] + 500) / 1000);
    }
}

// ---- The formats ----

#define FW 5 // the format images' size
#define FH 4
#define N_FORMATS 11

static struct png_spec formats[N_FORMATS];

// A number in [0, n) from the pixel index and a salt: varied, and the same on every run.
static unsigned pick(int i, int salt, unsigned n)
{
    return (unsigned)(i * 7919 + salt * 104729 + (i * i) % 13) % n;
}

// Fills samples with varied values of s's bit depth (palette: indices).
static void fill_samples(struct png_spec *s, int salt)
{
    int n = s->width * s->height * png_channels(s->color_type);
    unsigned top =
        s->color_type == PNG_COLOR_TYPE_PALETTE ? (unsigned)s->n_palette : 1u << s->bit_depth;
    for (int i = 0; i < n; i++)
        s->samples[i] = (uint16_t)pick(i, salt, top);
}

// A palette of n entries, colour or grey, with the first n_trans of them partly transparent.
static void set_palette(struct png_spec *s, int n, bool colour, int n_trans)
{
    s->n_palette = n;
    for (int i = 0; i < n; i++) {
        uint8_t g = (uint8_t)(i * 255 / (n - 1));
        s->palette[i] =
            colour ? (png_color){g, (uint8_t)(255 - g), (uint8_t)(i * 37)} : (png_color){g, g, g};
    }
    s->n_trans = n_trans;
    for (int i = 0; i < n_trans; i++)
        s->trans[i] = (uint8_t)(i * 255 / (n_trans > 1 ? n_trans - 1 : 1));
}

// Every format of the PNG specification worth telling apart, FW x FH.
static void make_formats(void)
{
    int k = 0;
    formats[k] = spec("palette 8-bit with tRNS", FW, FH, PNG_COLOR_TYPE_PALETTE, 8);
    set_palette(&formats[k], 12, true, 5);
    formats[++k] = spec("palette 2-bit grey", FW, FH, PNG_COLOR_TYPE_PALETTE, 2);
    set_palette(&formats[k], 4, false, 0);
    formats[++k] = spec("RGB 16-bit", FW, FH, PNG_COLOR_TYPE_RGB, 16);
    formats[++k] = spec("RGBA 16-bit", FW, FH, PNG_COLOR_TYPE_RGB_ALPHA, 16);
    formats[++k] = spec("grey+alpha 8-bit", FW, FH, PNG_COLOR_TYPE_GRAY_ALPHA, 8);
    formats[++k] = spec("grey 1-bit", FW, FH, PNG_COLOR_TYPE_GRAY, 1);
    formats[++k] = spec("grey 2-bit with tRNS", FW, FH, PNG_COLOR_TYPE_GRAY, 2);
    formats[k].trans_grey = 1;
    formats[++k] = spec("grey 16-bit with tRNS", FW, FH, PNG_COLOR_TYPE_GRAY, 16);
    formats[++k] = spec("RGBA 8-bit", FW, FH, PNG_COLOR_TYPE_RGB_ALPHA, 8);
    formats[++k] = spec("RGB 8-bit interlaced", FW, FH, PNG_COLOR_TYPE_RGB, 8);
    formats[k].interlace = PNG_INTERLACE_ADAM7;
    formats[++k] = spec("grey+alpha 16-bit interlaced", FW, FH, PNG_COLOR_TYPE_GRAY_ALPHA, 16);
    formats[k].interlace = PNG_INTERLACE_ADAM7;
    for (int i = 0; i < N_FORMATS; i++)
        fill_samples(&formats[i], i);
    // The tRNS colours must occur: pixel 3 of the 16-bit grey image, pixel 0 of the interlaced RGB.
    formats[7].trans_grey = formats[7].samples[3];
    for (int c = 0; c < 3; c++)
        formats[9].trans_rgb[c] = formats[9].samples[c];
}

// Reads a whole file into a malloc'ed buffer.
static uint8_t *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        setup_fail("cannot open", path);
    uint8_t *buf = tu_alloc(1 << 20, 1);
    *n = fread(buf, 1, 1 << 20, f);
    fclose(f);
    return buf;
}

// The first byte where got and want differ, or -1.
static long first_diff(const uint8_t *got, const uint8_t *want, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (got[i] != want[i])
            return (long)i;
    return -1;
}

// Each format through image_decode_png, from memory, against the expected values.
static void test_decode_formats(const char *dir)
{
    const uint8_t bg[3] = {10, 200, 40};
    for (int channels = 1; channels <= 3; channels += 2) {
        for (int k = 0; k < N_FORMATS; k++) {
            char path[TU_PATH_MAX], name[64];
            snprintf(name, sizeof name, "f%02d.png", k);
            size_t len;
            uint8_t *data = slurp(tu_join(path, dir, name), &len);
            uint8_t got[FW * FH * 3], want[FW * FH * 3];
            struct image_format fmt = {.channels = channels,
                                       .width = FW,
                                       .height = FH,
                                       .background = {bg[0], bg[1], bg[2]}};
            struct clvae_error err = {0};
            tu_begin();
            int rc = image_decode_png(data, len, path, &fmt, got, NULL, &err);
            tu_expect(rc == 0, "image_decode_png failed: %s", err.msg);
            expected(&formats[k], bg, channels, want);
            long at = rc == 0 ? first_diff(got, want, (size_t)FW * FH * channels) : -1;
            tu_expect(at < 0, "byte %ld is %d, expected %d", at, at < 0 ? 0 : got[at],
                      at < 0 ? 0 : want[at]);
            tu_end("decode %s to %d channel(s) over (10,200,40): exact", formats[k].what, channels);
            free(data);
        }
    }
}

// ---- Reading folders ----

// Options for the tests: channels from the data, white, no resize, a 0.1 split, two threads.
static struct image_folder_options options(void)
{
    return (struct image_folder_options){
        .channels = 0, .background = {255, 255, 255}, .test_split = 0.1, .seed = 1, .threads = 2};
}

// Whether s (the module's message) contains every one of the NULL-ended words.
static bool contains_all(const char *s, ...)
{
    va_list ap;
    va_start(ap, s);
    bool ok = true;
    for (const char *w; (w = va_arg(ap, const char *)) != NULL;)
        ok = ok && strstr(s, w) != NULL;
    va_end(ap);
    return ok;
}

// The folder of formats as DIR/train (every format) + DIR/test (one): exact pixels in file order.
static void test_folder_formats(void)
{
    char dir[TU_PATH_MAX], path[TU_PATH_MAX];
    make_folder(dir, "formats");
    for (int k = 0; k < N_FORMATS; k++) {
        snprintf(path, sizeof path, "formats/train/f%02d.png", k);
        write_png(in_tmp(path, path), &formats[k]);
    }
    write_png(in_tmp(path, "formats/test/t.png"), &formats[0]);
    for (int channels = 1; channels <= 3; channels += 2) {
        struct image_folder_options opt = options();
        opt.channels = channels;
        memcpy(opt.background, (uint8_t[3]){10, 200, 40}, 3);
        struct image_folder f;
        struct clvae_error err = {0};
        tu_begin();
        int rc = image_folder_read(dir, &opt, &f, &err);
        tu_expect(rc == 0, "image_folder_read failed: %s", err.msg);
        tu_expect(rc != 0 || (f.train.count == N_FORMATS && f.test.count == 1 && f.test_folder &&
                              f.n_classes == 0 && !f.train.labels && !f.test.labels),
                  "counts %u + %u, test_folder %d, classes %d", f.train.count, f.test.count,
                  f.test_folder, f.n_classes);
        for (int k = 0; k < N_FORMATS && rc == 0 && !tu_failing(); k++) {
            uint8_t want[FW * FH * 3];
            size_t bytes = (size_t)FW * FH * channels;
            expected(&formats[k], opt.background, channels, want);
            long at = first_diff(f.train.pixels + k * bytes, want, bytes);
            tu_expect(at < 0, "%s: byte %ld differs", formats[k].what, at);
        }
        tu_end("folder of %d formats, train/ and test/ folders, %d channel(s): exact", N_FORMATS,
               channels);
        image_folder_free(&f);
    }
    tu_in_tmp(path, "formats/train");
    char decode_dir[TU_PATH_MAX];
    snprintf(decode_dir, sizeof decode_dir, "%s", path);
    test_decode_formats(decode_dir);
}

// Reads dir with opt, expecting success; the caller frees f.
static bool read_ok(const char *dir, const struct image_folder_options *opt, struct image_folder *f)
{
    struct clvae_error err = {0};
    int rc = image_folder_read(dir, opt, f, &err);
    tu_expect(rc == 0, "image_folder_read(%s) failed: %s", dir, err.msg);
    return rc == 0;
}

// Reads dir with opt, expecting failure with status and a message holding every word given.
static void read_fails(const char *label, const char *dir, const struct image_folder_options *opt,
                       int status, const char *w1, const char *w2, const char *w3)
{
    struct image_folder f;
    struct clvae_error err = {0};
    tu_begin();
    int rc = image_folder_read(dir, opt, &f, &err);
    tu_expect(rc == -1, "expected failure, got success (%u + %u images)", f.train.count,
              f.test.count);
    tu_expect(rc != -1 || err.status == status, "status %d, expected %d (%s)", err.status, status,
              err.msg);
    tu_expect(rc != -1 || contains_all(err.msg, w1, w2 ? w2 : "", w3 ? w3 : "", (char *)NULL),
              "message \"%s\" lacks \"%s\" / \"%s\" / \"%s\"", err.msg, w1, w2 ? w2 : "",
              w3 ? w3 : "");
    tu_expect(f.train.pixels == NULL && f.class_names == NULL, "left allocated after failure");
    tu_note("%s", err.msg);
    tu_end("%s", label);
    if (rc == 0)
        image_folder_free(&f);
}

// Colour detection from headers: grey files give 1 channel, a colour palette or RGB 3, grey with
// alpha 3 only over a colour background.
static void test_channels(void)
{
    char dir[TU_PATH_MAX], path[TU_PATH_MAX];
    struct {
        const char *name;
        int k;
    } cases[] = {{"grey", 5}, {"greypal", 1}, {"greyalpha", 4}, {"pal", 0}, {"rgb", 9}};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        for (int i = 0; i < 3; i++) {
            snprintf(path, sizeof path, "channels/%s/train/%d.png", cases[c].name, i);
            write_png(in_tmp(path, path), &formats[i == 1 ? cases[c].k : 5]);
            snprintf(path, sizeof path, "channels/%s/test/%d.png", cases[c].name, i);
            write_png(in_tmp(path, path), &formats[5]);
        }
    }
    const int want[] = {1, 1, 1, 3, 3};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        struct image_folder_options opt = options();
        struct image_folder f;
        snprintf(path, sizeof path, "channels/%s", cases[c].name);
        tu_begin();
        if (read_ok(tu_in_tmp(dir, path), &opt, &f))
            tu_expect((int)f.train.channels == want[c] && f.test.channels == f.train.channels,
                      "%u channels, expected %d", f.train.channels, want[c]);
        image_folder_free(&f);
        tu_end("channels chosen from headers: %s with grey images -> %d", cases[c].name, want[c]);
    }
    struct image_folder_options opt = options();
    memcpy(opt.background, (uint8_t[3]){255, 0, 0}, 3);
    struct image_folder f;
    tu_begin();
    if (read_ok(tu_in_tmp(dir, "channels/greyalpha"), &opt, &f))
        tu_expect(f.train.channels == 3, "%u channels, expected 3", f.train.channels);
    image_folder_free(&f);
    tu_end("channels: grey+alpha over a red background -> 3");
}

// The label of every image in a set, counted by class.
static void count_labels(const struct image_set *set, int *counts, int n_classes)
{
    for (int k = 0; k < n_classes; k++)
        counts[k] = 0;
    for (uint32_t i = 0; i < set->count; i++)
        counts[set->labels[i]]++;
}

// Class folders (nested below too), their names sorted, the stratified split's counts.
static void test_labels_and_strata(void)
{
    char dir[TU_PATH_MAX], path[TU_PATH_MAX];
    // Classes of 10, 7, 3 and 1 images; "b" has some in a subfolder. Names in byte order:
    // "B" < "a" < "b" < "c".
    const char *names[] = {"B", "a", "b", "c"};
    const int sizes[] = {1, 10, 7, 3};
    int v = 0;
    for (int k = 0; k < 4; k++)
        for (int i = 0; i < sizes[k]; i++) {
            snprintf(path, sizeof path, "strata/%s/%s%d.png", names[k], i % 2 ? "deep/" : "", i);
            write_grey(in_tmp(path, path), 3, 2, (uint8_t)(v++ * 10));
        }
    struct image_folder_options opt = options();
    opt.test_split = 0.3; // round(0.3 n): 1 -> 0, 10 -> 3, 7 -> 2 (2.1), 3 -> 1 (0.9)
    struct image_folder f;
    tu_begin();
    if (read_ok(tu_in_tmp(dir, "strata"), &opt, &f)) {
        int train[4], test[4];
        tu_expect(f.n_classes == 4 && strcmp(f.class_names[0], "B") == 0 &&
                      strcmp(f.class_names[1], "a") == 0 && strcmp(f.class_names[3], "c") == 0,
                  "classes %d: %s %s ...", f.n_classes, f.class_names[0], f.class_names[1]);
        count_labels(&f.train, train, 4);
        count_labels(&f.test, test, 4);
        tu_expect(test[0] == 0 && test[1] == 3 && test[2] == 2 && test[3] == 1,
                  "test per class %d %d %d %d, expected 0 3 2 1", test[0], test[1], test[2],
                  test[3]);
        tu_expect(train[0] == 1 && train[1] == 7 && train[2] == 5 && train[3] == 2,
                  "train per class %d %d %d %d, expected 1 7 5 2", train[0], train[1], train[2],
                  train[3]);
        // Each image's grey level says its class: levels 0, 10..100, 110..170, 180..200.
        for (int s = 0; s < 2; s++) {
            const struct image_set *set = s ? &f.test : &f.train;
            for (uint32_t i = 0; i < set->count; i++) {
                int level = set->pixels[(size_t)i * 6] / 10;
                int cls = level < 1 ? 0 : level < 11 ? 1 : level < 18 ? 2 : 3;
                tu_expect(cls == set->labels[i], "image %u of level %d has label %d", i, level * 10,
                          set->labels[i]);
            }
        }
        tu_expect(f.train.channels == 1 && f.train.width == 3 && f.train.height == 2,
                  "shape %ux%ux%u", f.train.width, f.train.height, f.train.channels);
    }
    image_folder_free(&f);
    tu_end("class folders B a b c (nested images), sorted; 0.3 stratified: test 0 3 2 1");
}

// The grey levels of a set's images (first pixel of each), as a bitmask over levels / 10.
static uint64_t level_mask(const struct image_set *set)
{
    uint64_t mask = 0;
    for (uint32_t i = 0; i < set->count; i++)
        mask |= (uint64_t)1 << (set->pixels[(size_t)i * set->width * set->height] / 10);
    return mask;
}

// Reads the unlabelled folder with seed and split, returning the test set's levels.
static uint64_t split_levels(const char *dir, uint64_t seed, int threads, uint64_t *train)
{
    struct image_folder_options opt = options();
    opt.seed = seed;
    opt.test_split = 0.25;
    opt.threads = threads;
    struct image_folder f;
    uint64_t mask = 0;
    *train = 0;
    if (read_ok(dir, &opt, &f)) {
        tu_expect(f.test.count == 5 && f.train.count == 15 && !f.train.labels && !f.test.labels &&
                      f.n_classes == 0 && !f.test_folder,
                  "%u + %u images, labels %p, %d classes", f.train.count, f.test.count,
                  (void *)f.train.labels, f.n_classes);
        mask = level_mask(&f.test);
        *train = level_mask(&f.train);
    }
    image_folder_free(&f);
    return mask;
}

// An unlabelled flat folder of 20: round(0.25 * 20) = 5 held out, the same files for one seed
// (whatever the threads), others for another, and every file in one set or the other.
static void test_split_determinism(void)
{
    char dir[TU_PATH_MAX], path[TU_PATH_MAX];
    for (int i = 0; i < 20; i++) {
        snprintf(path, sizeof path, "flat/img%02d.png", i);
        write_grey(in_tmp(path, path), 4, 4, (uint8_t)(i * 10));
    }
    tu_in_tmp(dir, "flat");
    uint64_t train1, train2, train3;
    tu_begin();
    uint64_t a = split_levels(dir, 1, 2, &train1), b = split_levels(dir, 1, 1, &train2);
    uint64_t c = split_levels(dir, 2, 4, &train3);
    tu_expect(a == b && train1 == train2, "seed 1 held out %#llx, then %#llx",
              (unsigned long long)a, (unsigned long long)b);
    tu_expect(a != c, "seeds 1 and 2 held out the same files %#llx", (unsigned long long)a);
    tu_expect((a | train1) == 0xfffff && (a & train1) == 0, "train %#llx, test %#llx",
              (unsigned long long)train1, (unsigned long long)a);
    tu_note("seed 1 test levels mask %#llx, seed 2 %#llx", (unsigned long long)a,
            (unsigned long long)c);
    tu_end("unlabelled split 0.25 of 20: 5 test, same for a seed, different for another");

    // test_only (what eval and the image commands read): the same test images, in order, and
    // no training images decoded.
    struct image_folder_options o = {.test_split = 0.25, .seed = 1, .threads = 1};
    struct image_folder whole, test;
    struct clvae_error err;
    tu_begin();
    int rc = image_folder_read(dir, &o, &whole, &err);
    o.test_only = true;
    int rc2 = rc == 0 ? image_folder_read(dir, &o, &test, &err) : -1;
    tu_expect(rc == 0 && rc2 == 0, "reading %s: %s", dir, err.msg);
    if (rc == 0 && rc2 == 0) {
        tu_expect(test.train.count == 0 && test.test.count == whole.test.count &&
                      memcmp(test.test.pixels, whole.test.pixels, whole.test.count * 16) == 0,
                  "test_only: %u training and %u test images, against %u test images read whole",
                  test.train.count, test.test.count, whole.test.count);
        image_folder_free(&test);
    }
    if (rc == 0)
        image_folder_free(&whole);
    tu_end("test_only: the same 5 test images, none of training's read");
}

// Class folders in DIR/train and DIR/test: test labels index training's classes.
static void test_train_test_folders(void)
{
    char dir[TU_PATH_MAX], path[TU_PATH_MAX];
    write_grey(in_tmp(path, "tt/train/ant/1.png"), 2, 2, 10);
    write_grey(in_tmp(path, "tt/train/bee/1.png"), 2, 2, 20);
    write_grey(in_tmp(path, "tt/train/cat/1.png"), 2, 2, 30);
    write_grey(in_tmp(path, "tt/train/cat/2.png"), 2, 2, 30);
    write_grey(in_tmp(path, "tt/test/cat/1.png"), 2, 2, 30);
    write_grey(in_tmp(path, "tt/test/bee/x/1.png"), 2, 2, 20);
    write_grey(in_tmp(path, "tt/README.png"), 2, 2, 99); // beside train/ and test/: ignored
    struct image_folder_options opt = options();
    struct image_folder f;
    tu_begin();
    if (read_ok(tu_in_tmp(dir, "tt"), &opt, &f)) {
        tu_expect(f.test_folder && f.n_classes == 3 && f.train.count == 4 && f.test.count == 2,
                  "test_folder %d, %d classes, %u + %u", f.test_folder, f.n_classes, f.train.count,
                  f.test.count);
        tu_expect(f.test.count == 2 && f.test.labels[0] == 1 && f.test.labels[1] == 2 &&
                      f.test.pixels[0] == 20 && f.test.pixels[4] == 30,
                  "test labels %d %d, levels %d %d", f.test.labels[0], f.test.labels[1],
                  f.test.pixels[0], f.test.pixels[4]);
    }
    image_folder_free(&f);
    tu_end("DIR/train + DIR/test: test labels are training's indices (bee 1, cat 2)");

    write_grey(in_tmp(path, "ttbad/train/ant/1.png"), 2, 2, 10);
    write_grey(in_tmp(path, "ttbad/test/dog/1.png"), 2, 2, 10);
    char want[TU_PATH_MAX];
    read_fails("a test class that training lacks: error naming its folder", tu_in_tmp(dir, "ttbad"),
               &opt, CLVAE_EXIT_DATA, tu_in_tmp(want, "ttbad/test/dog"), "training", NULL);
    write_grey(in_tmp(path, "ttlink/train/ant/1.png"), 2, 2, 10);
    write_grey(in_tmp(path, "ttlink/train/ant/2.png"), 2, 2, 10);
    if (link(tu_in_tmp(want, "ttlink/train/ant/2.png"), in_tmp(path, "ttlink/test/ant/2.png")))
        setup_fail("cannot link", path);
    read_fails("a test folder of hard links to training files", tu_in_tmp(dir, "ttlink"), &opt,
               CLVAE_EXIT_DATA, dir, "hard link", NULL);
    write_grey(in_tmp(path, "ttflat/train/ant/1.png"), 2, 2, 10);
    write_grey(in_tmp(path, "ttflat/test/1.png"), 2, 2, 10);
    read_fails("test images not in class folders when training's are", tu_in_tmp(dir, "ttflat"),
               &opt, CLVAE_EXIT_DATA, tu_in_tmp(want, "ttflat/test"), "class folders", NULL);
}

// Hidden files and folders, links to files and folders skipped; a hard link read once.
static void test_hidden_and_links(void)
{
    char dir[TU_PATH_MAX], path[TU_PATH_MAX], target[TU_PATH_MAX];
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "links/a/%d.png", i);
        write_grey(in_tmp(path, path), 2, 2, (uint8_t)(10 * i));
        snprintf(path, sizeof path, "links/b/%d.PNG", i);
        write_grey(in_tmp(path, path), 2, 2, (uint8_t)(100 + 10 * i));
    }
    write_grey(in_tmp(path, "links/a/.hidden.png"), 2, 2, 250);
    write_grey(in_tmp(path, "links/.git/c.png"), 2, 2, 250); // a hidden folder, not a class
    write_grey(in_tmp(path, "links/a/.cache/d.png"), 2, 2, 250);
    write_grey(in_tmp(path, "links/a/notes.txt"), 2, 2, 250); // not .png: ignored
    if (symlink(tu_in_tmp(target, "links/a/0.png"), in_tmp(path, "links/b/alias.png")) != 0 ||
        symlink(tu_in_tmp(target, "links/a"), in_tmp(path, "links/c")) != 0 ||
        symlink(tu_in_tmp(target, "links/a"), in_tmp(path, "links/b/loop")) != 0 ||
        link(tu_in_tmp(target, "links/a/1.png"), in_tmp(path, "links/b/hard.png")) != 0 ||
        link(tu_in_tmp(target, "links/a/2.png"), in_tmp(path, "links/a/hard2.png")) != 0)
        setup_fail("cannot link in", tu_tmp_dir);
    struct image_folder_options opt = options();
    opt.test_split = 0.3; // 4 -> round(1.2) = 1 of each class
    struct image_folder f;
    tu_begin();
    if (read_ok(tu_in_tmp(dir, "links"), &opt, &f)) {
        tu_expect(f.n_classes == 2 && f.train.count + f.test.count == 8 && f.test.count == 2,
                  "%d classes, %u + %u images (expected 2 classes, 6 + 2)", f.n_classes,
                  f.train.count, f.test.count);
        uint64_t mask = level_mask(&f.train) | level_mask(&f.test);
        tu_expect(mask == 0x3c0f, "grey levels mask %#llx, expected 0x3c0f",
                  (unsigned long long)mask);
    }
    image_folder_free(&f);
    tu_end("hidden files/folders, .txt, links to a file and folders skipped; hard links once");
}

// Images of 7x5, 16x12, 3x3 and 8x8 resized to 8x8: the size, and uniform colour kept.
static void test_resize(void)
{
    char dir[TU_PATH_MAX], path[TU_PATH_MAX];
    const int sizes[][2] = {{7, 5}, {16, 12}, {3, 3}, {8, 8}, {1, 1}, {40, 2}};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        snprintf(path, sizeof path, "resize/train/%zu.png", i);
        write_uniform(in_tmp(path, path), sizes[i][0], sizes[i][1], 30, 60, 90, 255);
        snprintf(path, sizeof path, "resize/test/%zu.png", i);
        write_uniform(in_tmp(path, path), sizes[i][0], sizes[i][1], 200, 100, 0, 128);
    }
    struct image_folder_options opt = options();
    opt.width = 8;
    opt.height = 8;
    memcpy(opt.background, (uint8_t[3]){0, 0, 255}, 3);
    struct image_folder f;
    // The half-transparent colour over blue: (c 128 + bg 127 + 127) / 255.
    const uint8_t over[3] = {(200 * 128 + 127) / 255, (100 * 128 + 127) / 255,
                             (255 * 127 + 127) / 255};
    tu_begin();
    int worst = 0;
    if (read_ok(tu_in_tmp(dir, "resize"), &opt, &f)) {
        tu_expect(f.train.width == 8 && f.train.height == 8 && f.train.channels == 3 &&
                      f.train.count == 6 && f.test.count == 6,
                  "%u images of %ux%ux%u", f.train.count, f.train.width, f.train.height,
                  f.train.channels);
        for (size_t i = 0; i < 6 * 64 && !tu_failing(); i++)
            for (int k = 0; k < 3; k++) {
                int d1 = abs(f.train.pixels[3 * i + k] - (int[]){30, 60, 90}[k]);
                int d2 = abs(f.test.pixels[3 * i + k] - over[k]);
                worst = d1 > worst ? d1 : worst;
                worst = d2 > worst ? d2 : worst;
            }
        tu_expect(worst == 0, "a pixel differs from the uniform colour by %d", worst);
    }
    image_folder_free(&f);
    tu_end("resize 7x5 16x12 3x3 8x8 1x1 40x2 to 8x8, opaque and alpha 128 over blue: uniform, "
           "max diff %d",
           worst);
}

// ---- Bad input ----

// Truncates path to its first n bytes.
static void truncate_to(const char *path, off_t n)
{
    if (truncate(path, n) != 0)
        setup_fail("cannot truncate", path);
}

// Size of path.
static off_t file_size(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0)
        setup_fail("cannot stat", path);
    return st.st_size;
}

// stderr into a file while a call runs, so that the skip warnings can be checked.
static int saved_stderr = -1;

static void capture_stderr(const char *path)
{
    fflush(stderr);
    saved_stderr = dup(2);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (saved_stderr < 0 || fd < 0 || dup2(fd, 2) < 0)
        setup_fail("cannot redirect stderr to", path);
    close(fd);
}

static void restore_stderr(void)
{
    fflush(stderr);
    dup2(saved_stderr, 2);
    close(saved_stderr);
}

// A folder with a file that is not a PNG and a truncated one, read without and with skip_bad.
static void test_bad_files(void)
{
    char dir[TU_PATH_MAX], path[TU_PATH_MAX], bad1[TU_PATH_MAX], bad2[TU_PATH_MAX];
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < 5; i++) {
            snprintf(path, sizeof path, "bad/%c/%d.png", 'a' + k, i);
            write_grey(in_tmp(path, path), 16, 16, (uint8_t)(k * 100 + i * 10));
        }
    tu_in_tmp(dir, "bad");
    in_tmp(bad1, "bad/a/2.png");
    truncate_to(bad1, file_size(bad1) - 20); // inside IDAT: found by the decoding pass
    struct image_folder_options opt = options();
    opt.test_split = 0.2;
    read_fails("a truncated PNG: error naming the file", dir, &opt, CLVAE_EXIT_DATA, bad1,
               "truncated", NULL);
    tu_write_file(in_tmp(bad2, "bad/b/1.png"), "GIF89a not a png", 16);
    read_fails("a file that is not a PNG: error naming it (found by the header pass)", dir, &opt,
               CLVAE_EXIT_DATA, bad2, "not a PNG", NULL);

    opt.skip_bad = true;
    struct image_folder f;
    char log[TU_PATH_MAX];
    tu_in_tmp(log, "stderr.txt");
    capture_stderr(log);
    int rc = image_folder_read(dir, &opt, &f, &(struct clvae_error){0});
    restore_stderr();
    size_t len;
    uint8_t *text = slurp(log, &len);
    text[len] = '\0';
    tu_begin();
    tu_expect(rc == 0, "image_folder_read failed with skip_bad");
    tu_expect(rc != 0 || (f.skipped == 2 && f.train.count + f.test.count == 8),
              "skipped %llu, %u + %u images", (unsigned long long)f.skipped, f.train.count,
              f.test.count);
    for (int s = 0; s < 2 && rc == 0; s++) {
        const struct image_set *set = s ? &f.test : &f.train;
        for (uint32_t i = 0; i < set->count; i++)
            tu_expect(set->pixels[(size_t)i * 256] / 100 == set->labels[i],
                      "image %u of level %d has label %d", i, set->pixels[(size_t)i * 256],
                      set->labels[i]);
    }
    char w1[TU_PATH_MAX + 32], w2[TU_PATH_MAX + 32];
    snprintf(w1, sizeof w1, "clvae: warning: %s: truncated", bad1);
    snprintf(w2, sizeof w2, "clvae: warning: %s: not a PNG", bad2);
    tu_expect(strstr((char *)text, w1) && strstr((char *)text, w2) &&
                  strstr((char *)text, "skipped\n"),
              "stderr: %s", (char *)text);
    tu_end("skip_bad: both bad files skipped, counted, warned about; labels still aligned");
    free(text);
    image_folder_free(&f);

    truncate_to(bad1, 30); // inside the header: found by the header pass
    opt.skip_bad = false;
    unlink(bad2);
    read_fails("a PNG truncated in its header: error naming it", dir, &opt, CLVAE_EXIT_DATA, bad1,
               "truncated", NULL);
}

// Reads the flat folder with stderr captured; returns what was printed (malloc'ed).
static char *stderr_of_read(bool progress)
{
    char dir[TU_PATH_MAX], log[TU_PATH_MAX];
    struct image_folder_options opt = options();
    opt.progress = progress;
    struct image_folder f;
    capture_stderr(tu_in_tmp(log, "progress.txt"));
    int rc = image_folder_read(tu_in_tmp(dir, "flat"), &opt, &f, &(struct clvae_error){0});
    restore_stderr();
    tu_expect(rc == 0, "image_folder_read failed");
    image_folder_free(&f);
    size_t len;
    char *text = (char *)slurp(log, &len);
    text[len] = '\0';
    return text;
}

// The progress bar: both passes' lines, ended by a newline; nothing at all without it.
static void test_progress(void)
{
    tu_begin();
    char *quiet = stderr_of_read(false), *bar = stderr_of_read(true);
    tu_expect(quiet[0] == '\0', "printed without progress: \"%s\"", quiet);
    tu_expect(strstr(bar, "\rreading 20/20 headers [==============================]\n") &&
                  strstr(bar, "\rdecoding 20/20 images [==============================]\n"),
              "progress output \"%s\"", bar);
    free(quiet);
    free(bar);
    tu_end("progress bar: \\r-rewritten lines ending in a newline; silent without it");
}

// Layouts that are errors, each naming the folder or file at fault.
static void test_bad_layouts(void)
{
    char dir[TU_PATH_MAX], path[TU_PATH_MAX], want[TU_PATH_MAX];
    struct image_folder_options opt = options();
    read_fails("an empty folder: no .png files", make_folder(dir, "empty"), &opt, CLVAE_EXIT_DATA,
               dir, "no .png files", NULL);
    write_grey(in_tmp(path, "onlytext/a/readme.png.txt"), 2, 2, 1);
    read_fails("only non-PNG files: no .png files", tu_in_tmp(dir, "onlytext"), &opt,
               CLVAE_EXIT_DATA, dir, "no .png files", NULL);
    read_fails("a missing folder", tu_in_tmp(dir, "missing"), &opt, CLVAE_EXIT_DATA, dir,
               "No such file", NULL);
    read_fails("a file, not a folder", tu_in_tmp(dir, "stderr.txt"), &opt, CLVAE_EXIT_DATA, dir,
               "not a directory", NULL);

    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "sizes/%d.png", i);
        write_grey(in_tmp(path, path), 8, 8, 1);
    }
    write_grey(in_tmp(path, "sizes/2b.png"), 9, 7, 1);
    read_fails("mixed sizes: the file, both sizes and --image-size", tu_in_tmp(dir, "sizes"), &opt,
               CLVAE_EXIT_DATA, tu_in_tmp(want, "sizes/2b.png"), "9x7", "8x8");
    read_fails("mixed sizes: suggests --image-size", dir, &opt, CLVAE_EXIT_DATA, "--image-size",
               NULL, NULL);

    write_grey(in_tmp(path, "emptyclass/a/1.png"), 2, 2, 1);
    write_grey(in_tmp(path, "emptyclass/a/2.png"), 2, 2, 1);
    write_grey(in_tmp(path, "emptyclass/b/notes.txt"), 2, 2, 1);
    read_fails("a class folder with no images: error naming it", tu_in_tmp(dir, "emptyclass"), &opt,
               CLVAE_EXIT_DATA, tu_in_tmp(want, "emptyclass/b"), "no .png", NULL);

    write_grey(in_tmp(path, "loose/a/1.png"), 2, 2, 1);
    write_grey(in_tmp(path, "loose/a/2.png"), 2, 2, 1);
    write_grey(in_tmp(path, "loose/stray.png"), 2, 2, 1);
    read_fails("loose files beside class folders: error naming DIR", tu_in_tmp(dir, "loose"), &opt,
               CLVAE_EXIT_DATA, dir, "beside class folders", NULL);

    write_grey(in_tmp(path, "two/1.png"), 2, 2, 1);
    write_grey(in_tmp(path, "two/2.png"), 2, 2, 2);
    opt.test_split = 0.9;
    read_fails("a split leaving no training image: count and a --test-split", tu_in_tmp(dir, "two"),
               &opt, CLVAE_EXIT_DATA, "no training image of the 2", "--test-split 0.3", NULL);
    opt.test_split = 0.1;
    read_fails("a split leaving no test image: count and a --test-split", dir, &opt,
               CLVAE_EXIT_DATA, "no test image of the 2", "--test-split 0.3", NULL);
    write_grey(in_tmp(path, "singles/a/1.png"), 2, 2, 1);
    write_grey(in_tmp(path, "singles/b/1.png"), 2, 2, 1);
    read_fails("classes of one image each cannot be split", tu_in_tmp(dir, "singles"), &opt,
               CLVAE_EXIT_DATA, "cannot be split", "DIR/test", NULL);
}

// Options out of range: CLVAE_EXIT_USAGE.
static void test_bad_options(void)
{
    char dir[TU_PATH_MAX];
    tu_in_tmp(dir, "flat");
    struct image_folder_options opt = options();
    opt.test_split = 1;
    read_fails("--test-split 1 is a usage error", dir, &opt, CLVAE_EXIT_USAGE, "--test-split", NULL,
               NULL);
    opt.test_split = 0;
    read_fails("--test-split 0 is a usage error", dir, &opt, CLVAE_EXIT_USAGE, "--test-split", NULL,
               NULL);
    opt = options();
    opt.channels = 2;
    read_fails("2 channels is a usage error", dir, &opt, CLVAE_EXIT_USAGE, "channels", NULL, NULL);
    opt = options();
    opt.width = 5000;
    opt.height = 5;
    read_fails("a 5000x5 size is a usage error", dir, &opt, CLVAE_EXIT_USAGE, "--image-size", NULL,
               NULL);
}

// --image-size and --background texts, good and bad.
static void test_parsers(void)
{
    struct {
        const char *text;
        int w, h;
    } sizes[] = {{"64x32", 64, 32}, {"1x1", 1, 1}, {"4096X7", 4096, 7}, {"028x28", 28, 28}};
    const char *bad_sizes[] = {"0x32", "32x",  "x",       "100000x100000", "abc",
                               "",     "32",   "32x32x3", "-4x4",          "4097x4",
                               " 8x8", "8x8 ", "8*8",     "4096x4097"};
    struct clvae_error err;
    tu_begin();
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        int w = 0, h = 0;
        int rc = image_folder_parse_size("--image-size", sizes[i].text, &w, &h, &err);
        tu_expect(rc == 0 && w == sizes[i].w && h == sizes[i].h, "\"%s\" -> %d, %dx%d",
                  sizes[i].text, rc, w, h);
    }
    for (size_t i = 0; i < sizeof bad_sizes / sizeof *bad_sizes; i++) {
        int w = -7, h = -7;
        int rc = image_folder_parse_size("--image-size", bad_sizes[i], &w, &h, &err);
        tu_expect(rc == -1 && err.status == CLVAE_EXIT_USAGE && w == -7 &&
                      strstr(err.msg, "--image-size") && strstr(err.msg, bad_sizes[i]),
                  "\"%s\" -> %d (%s)", bad_sizes[i], rc, err.msg);
    }
    tu_end("--image-size: 4 good texts, 14 bad ones refused naming the option");

    struct {
        const char *text;
        uint8_t rgb[3];
    } colours[] = {
        {"0", {0, 0, 0}},          {"255", {255, 255, 255}},     {"12,34,56", {12, 34, 56}},
        {"#0a0B0c", {10, 11, 12}}, {"#ffffff", {255, 255, 255}}, {"007", {7, 7, 7}}};
    const char *bad_colours[] = {"256", "-1", "1,2",  "1,2,3,4", "#12345",   "#gggggg", "",
                                 "red", " 1", "1,,2", "1,2,300", "#1234567", "1, 2, 3", "0x10"};
    tu_begin();
    for (size_t i = 0; i < sizeof colours / sizeof *colours; i++) {
        uint8_t rgb[3] = {1, 1, 1};
        int rc = image_folder_parse_background("--background", colours[i].text, rgb, &err);
        tu_expect(rc == 0 && memcmp(rgb, colours[i].rgb, 3) == 0, "\"%s\" -> %d, %d,%d,%d",
                  colours[i].text, rc, rgb[0], rgb[1], rgb[2]);
    }
    for (size_t i = 0; i < sizeof bad_colours / sizeof *bad_colours; i++) {
        uint8_t rgb[3] = {1, 2, 3};
        int rc = image_folder_parse_background("--background", bad_colours[i], rgb, &err);
        tu_expect(rc == -1 && err.status == CLVAE_EXIT_USAGE && rgb[0] == 1 && rgb[2] == 3 &&
                      strstr(err.msg, "--background"),
                  "\"%s\" -> %d (%s)", bad_colours[i], rc, err.msg);
    }
    tu_end("--background: 6 good texts, 14 bad ones refused naming the option");
}

// image_png_header and image_decode_png on broken bytes: errors naming the input, no crash.
static void test_memory_errors(void)
{
    char path[TU_PATH_MAX];
    size_t len;
    uint8_t *data = slurp(tu_in_tmp(path, "formats/train/f00.png"), &len);
    struct image_png_header h = {0};
    struct image_format fmt = {.channels = 3, .width = FW, .height = FH};
    uint8_t out[FW * FH * 3];
    struct clvae_error err;
    tu_begin();
    int rc = image_png_header(data, len, "mem.png", &h, &err);
    tu_expect(rc == 0 && h.width == FW && h.height == FH && h.colour && h.transparency,
              "header of the palette image: %ux%u colour %d transparency %d", h.width, h.height,
              h.colour, h.transparency);
    const size_t cuts[] = {0, 5, 8, 20, 40, len / 2, len - 13};
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
        rc = image_decode_png(data, cuts[i], "mem.png", &fmt, out, NULL, &err);
        tu_expect(rc == -1 && err.status == CLVAE_EXIT_DATA && strstr(err.msg, "mem.png"),
                  "cut at %zu: %d (%s)", cuts[i], rc, err.msg);
    }
    // A tEXt chunk claiming 1.7 GB after IHDR: skipped, not allocated (libpng would).
    uint8_t text[128];
    memcpy(text, data, 33);
    memcpy(text + 33, "\x69\x71\x18\xdbtEXt", 8);
    memcpy(text + 41, data + 33, 64);
    struct rusage before, after;
    getrusage(RUSAGE_SELF, &before);
    rc = image_decode_png(text, sizeof text - 23, "text.png", &fmt, out, NULL, &err);
    getrusage(RUSAGE_SELF, &after);
    tu_expect(rc == -1 && strstr(err.msg, "text.png: truncated"), "huge tEXt: %d (%s)", rc,
              err.msg);
    tu_expect(after.ru_maxrss - before.ru_maxrss < 256 * 1024,
              "a tEXt chunk claiming 1.7 GB grew the peak RSS by %ld KiB",
              after.ru_maxrss - before.ru_maxrss);
    // IHDR's bit depth, 3: an error even in the fuzz build, which ignores CRCs.
    data[24] = 3;
    rc = image_decode_png(data, len, "mem.png", &fmt, out, NULL, &err);
    tu_expect(rc == -1 && strstr(err.msg, "mem.png: corrupt PNG"), "bit depth 3: %d (%s)", rc,
              err.msg);
    fmt.channels = 2;
    rc = image_decode_png(data, len, "mem.png", &fmt, out, NULL, &err);
    tu_expect(rc == -1 && err.status == CLVAE_EXIT_USAGE, "2 channels: %d (%s)", rc, err.msg);
    tu_end("memory decoder: cut and corrupt inputs fail naming the input, a huge tEXt unread");
    free(data);
}

// ---- Memory: image data past the header, large images ----

// A PNG built in memory.
struct png_buf {
    uint8_t *data;
    size_t len, cap;
};

static void buf_put(struct png_buf *b, const void *p, size_t n)
{
    if (n == 0)
        return;
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2;
        b->data = realloc(b->data, b->cap);
        if (!b->data)
            setup_fail("out of memory building", "a PNG");
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

// One chunk: length, type, data, CRC of type and data.
static void put_chunk(struct png_buf *b, const char *type, const uint8_t *data, size_t n)
{
    uint8_t word[4];
    put_be32(word, (uint32_t)n);
    buf_put(b, word, 4);
    buf_put(b, type, 4);
    buf_put(b, data, n);
    uLong crc = crc32(0L, (const Bytef *)type, 4);
    if (n > 0) // crc32 of a NULL buffer is its initial value, not crc unchanged
        crc = crc32(crc, data, (uInt)n);
    put_be32(word, (uint32_t)crc);
    buf_put(b, word, 4);
}

// What a test PNG's IDAT stream inflates to: 8-bit grey scanlines of width pixels, (x * 7 + y *
// 13) mod 256 when patterned (an interlaced image's are zeros), then extra zero bytes.
struct raw_image {
    uint32_t width, height;
    bool interlaced, patterned;
    uint64_t extra;
};

// The bytes the header implies: rows x (1 + row bytes), each Adam7 pass's when interlaced.
static uint64_t raw_bytes(const struct raw_image *im)
{
    if (!im->interlaced)
        return (uint64_t)im->height * (1 + im->width);
    uint64_t n = 0;
    for (int pass = 0; pass < 7; pass++) {
        uint64_t cols = PNG_PASS_COLS(im->width, pass);
        if (cols > 0)
            n += PNG_PASS_ROWS(im->height, pass) * (1 + cols);
    }
    return n;
}

// Raw bytes [at, at + n) of im into out.
static void raw_fill(const struct raw_image *im, uint64_t at, uint8_t *out, size_t n)
{
    memset(out, 0, n);
    if (!im->patterned)
        return;
    uint64_t row = 1 + (uint64_t)im->width, end = (uint64_t)im->height * row;
    for (size_t i = 0; i < n && at + i < end; i++) {
        uint64_t y = (at + i) / row, x = (at + i) % row;
        if (x > 0)
            out[i] = (uint8_t)((x - 1) * 7 + y * 13);
    }
}

// A grey 8-bit PNG of im, its IDAT stream deflated at level in IDAT chunks of 64 KiB.
static struct png_buf make_raw_png(const struct raw_image *im, int level)
{
    struct png_buf b = {0};
    buf_put(&b, "\x89PNG\r\n\x1a\n", 8);
    uint8_t ihdr[13] = {0};
    put_be32(ihdr, im->width);
    put_be32(ihdr + 4, im->height);
    ihdr[8] = 8; // bit depth; colour type 0, grey
    ihdr[12] = im->interlaced;
    put_chunk(&b, "IHDR", ihdr, sizeof ihdr);
    z_stream z = {0};
    if (deflateInit(&z, level) != Z_OK)
        setup_fail("deflateInit failed for", "a PNG");
    static uint8_t in[1 << 16], out[1 << 16];
    uint64_t total = raw_bytes(im) + im->extra, at = 0;
    int rc = Z_OK;
    while (rc != Z_STREAM_END) {
        size_t n = total - at < sizeof in ? (size_t)(total - at) : sizeof in;
        raw_fill(im, at, in, n);
        at += n;
        z.next_in = in;
        z.avail_in = (uInt)n;
        do {
            z.next_out = out;
            z.avail_out = sizeof out;
            rc = deflate(&z, at == total ? Z_FINISH : Z_NO_FLUSH);
            if (sizeof out > z.avail_out)
                put_chunk(&b, "IDAT", out, sizeof out - z.avail_out);
        } while (z.avail_out == 0 || (at == total && rc != Z_STREAM_END));
    }
    deflateEnd(&z);
    put_chunk(&b, "IEND", NULL, 0);
    return b;
}

// Writes b to tu_tmp_dir/rel.
static void write_buf(const char *rel, const struct png_buf *b)
{
    char path[TU_PATH_MAX];
    FILE *f = fopen(in_tmp(path, rel), "wb");
    if (!f || fwrite(b->data, 1, b->len, f) != b->len || fclose(f) != 0)
        setup_fail("cannot write", path);
}

// 8x8 images whose IDAT inflates to 64 MiB past the image (and one byte past it): refused at the
// first byte past the last row, having read a piece of the file, plain and interlaced, from
// memory and through a folder; the same images without the excess decode.
static void test_extra_image_data(void)
{
    for (int interlaced = 0; interlaced <= 1; interlaced++) {
        const uint64_t extras[] = {64 << 20, 1, 0};
        for (size_t k = 0; k < 3; k++) {
            struct raw_image im = {
                .width = 8, .height = 8, .interlaced = interlaced, .extra = extras[k]};
            struct png_buf b = make_raw_png(&im, 9);
            struct image_format fmt = {.channels = 1, .width = 8, .height = 8};
            uint8_t out[64];
            struct image_decode_stats st;
            struct clvae_error err = {0};
            tu_begin();
            int rc = image_decode_png(b.data, b.len, "x.png", &fmt, out, &st, &err);
            if (extras[k] > 0) {
                tu_expect(rc == -1 && err.status == CLVAE_EXIT_DATA &&
                              strstr(err.msg, "x.png: corrupt PNG (more image data than its 8x8 "
                                              "header implies)"),
                          "%d: %s", rc, err.msg);
                // Signature, IHDR, IDAT's head and at most one piece of its data.
                tu_expect(st.bytes_read <= 8 + 25 + 8 + 8192, "read %zu of %zu bytes",
                          st.bytes_read, b.len);
            } else {
                tu_expect(rc == 0 && first_diff(out, (uint8_t[64]){0}, 64) < 0, "%d: %s", rc,
                          err.msg);
            }
            tu_expect(st.peak_bytes <= image_decode_bound(8, 8, &fmt) && st.held_after == 0,
                      "peak %zu bytes (bound %llu), %zu held after", st.peak_bytes,
                      (unsigned long long)image_decode_bound(8, 8, &fmt), st.held_after);
            tu_note("%zu-byte file, %zu read, peak %zu bytes", b.len, st.bytes_read, st.peak_bytes);
            tu_end("8x8%s PNG with %llu bytes of image data past its rows: %s",
                   interlaced ? " interlaced" : "", (unsigned long long)extras[k],
                   extras[k] ? "refused naming it" : "decodes");
            if (k == 0) {
                char rel[64];
                snprintf(rel, sizeof rel, "extra/%d/x.png", interlaced);
                write_buf(rel, &b);
            }
            free(b.data);
        }
    }
    // A 9000-byte PLTE before IDAT: libpng's progressive reader would hold all of it first.
    struct raw_image im = {.width = 8, .height = 8};
    struct png_buf b = make_raw_png(&im, 9), big = {0};
    uint8_t *plte = tu_alloc(9000, 1);
    buf_put(&big, b.data, 33); // the signature and IHDR
    put_chunk(&big, "PLTE", plte, 9000);
    buf_put(&big, b.data + 33, b.len - 33);
    struct image_format fmt = {.channels = 1, .width = 8, .height = 8};
    uint8_t out[64];
    struct clvae_error err = {0};
    int rc = image_decode_png(big.data, big.len, "plte.png", &fmt, out, NULL, &err);
    tu_check(rc == -1 && err.status == CLVAE_EXIT_DATA &&
                 strstr(err.msg, "plte.png: corrupt PNG (PLTE: a chunk of 9000 bytes)"),
             "a 9000-byte PLTE chunk (over 8 KiB, not IDAT): refused: %s", err.msg);
    free(plte);
    free(big.data);
    free(b.data);

    char dir[TU_PATH_MAX];
    write_grey(in_tmp(dir, "extra/0/a.png"), 8, 8, 10);
    write_grey(in_tmp(dir, "extra/0/b.png"), 8, 8, 20);
    struct image_folder_options opt = options();
    opt.test_split = 0.5;
    read_fails("a folder holding an 8x8 PNG with 64 MiB of excess image data: refused",
               tu_in_tmp(dir, "extra/0"), &opt, CLVAE_EXIT_DATA, "x.png",
               "more image data than its 8x8 header implies", NULL);
    char log[TU_PATH_MAX];
    opt.skip_bad = true;
    struct image_folder f;
    tu_begin();
    capture_stderr(tu_in_tmp(log, "extra.log"));
    bool ok = read_ok(tu_in_tmp(dir, "extra/0"), &opt, &f);
    restore_stderr();
    tu_expect(!ok || (f.skipped == 1 && f.train.count + f.test.count == 2), "skipped %llu, %u + %u",
              (unsigned long long)f.skipped, f.train.count, f.test.count);
    image_folder_free(&f);
    tu_end("the same with skip_bad: skipped, counted");
}

// A grey 4096x4096 image decoded at its size holds a few rows, not the image (64 MiB as RGBA);
// resized to 64x64, the image as RGBA; a 1000x1000 interlaced one decodes exactly row by row.
static void test_decode_memory(void)
{
    struct raw_image big = {.width = 4096, .height = 4096, .patterned = true};
    struct png_buf b = make_raw_png(&big, 1);
    struct image_format fmt = {.channels = 1, .width = 4096, .height = 4096};
    uint8_t *out = tu_alloc((size_t)4096 * 4096, 1);
    struct image_decode_stats st;
    struct clvae_error err = {0};
    tu_begin();
    int rc = image_decode_png(b.data, b.len, "big.png", &fmt, out, &st, &err);
    tu_expect(rc == 0, "%s", err.msg);
    long bad = -1;
    for (size_t i = 0; rc == 0 && i < (size_t)4096 * 4096 && bad < 0; i++)
        if (out[i] != (uint8_t)((i % 4096) * 7 + (i / 4096) * 13))
            bad = (long)i;
    tu_expect(bad < 0, "pixel %ld is %d", bad, bad < 0 ? 0 : out[bad]);
    uint64_t bound = image_decode_bound(4096, 4096, &fmt);
    tu_expect(st.peak_bytes <= bound && bound < (1 << 20) && st.held_after == 0,
              "peak %zu bytes, bound %llu, %zu held after", st.peak_bytes,
              (unsigned long long)bound, st.held_after);
    tu_end("4096x4096 at its size: exact, peak %zu bytes (<= %llu; the image as RGBA is 64 MiB)",
           st.peak_bytes, (unsigned long long)bound);

    fmt.width = fmt.height = 64;
    tu_begin();
    rc = image_decode_png(b.data, b.len, "big.png", &fmt, out, &st, &err);
    bound = image_decode_bound(4096, 4096, &fmt);
    tu_expect(rc == 0, "%s", err.msg);
    tu_expect(st.peak_bytes >= (size_t)4096 * 4096 * 4 && st.peak_bytes <= bound &&
                  st.held_after == 0,
              "peak %zu bytes, bound %llu, %zu held after", st.peak_bytes,
              (unsigned long long)bound, st.held_after);
    tu_end("4096x4096 resized to 64x64: peak %zu bytes, the source as RGBA (<= %llu)",
           st.peak_bytes, (unsigned long long)bound);
    free(b.data);

    struct raw_image laced = {.width = 1000, .height = 1000, .interlaced = true};
    b = make_raw_png(&laced, 6);
    fmt.width = fmt.height = 1000;
    fmt.background[0] = 99;
    memset(out, 7, (size_t)1000 * 1000);
    tu_begin();
    rc = image_decode_png(b.data, b.len, "laced.png", &fmt, out, &st, &err);
    bound = image_decode_bound(1000, 1000, &fmt);
    tu_expect(rc == 0 && first_diff(out, (uint8_t[1000]){0}, 1000) < 0 &&
                  first_diff(out + 999 * 1000, (uint8_t[1000]){0}, 1000) < 0 &&
                  memchr(out, 7, (size_t)1000 * 1000) == NULL,
              "%d: %s", rc, err.msg);
    tu_expect(st.peak_bytes <= bound && st.held_after == 0, "peak %zu bytes, bound %llu",
              st.peak_bytes, (unsigned long long)bound);
    tu_end("1000x1000 interlaced at its size: every pixel written, peak %zu bytes (<= %llu)",
           st.peak_bytes, (unsigned long long)bound);
    free(b.data);
    free(out);
}

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

#ifdef UNDER_ASAN
// The peak memory of the decoding budget is not measured under AddressSanitizer: its quarantine
// keeps freed blocks resident.
static void test_decode_budget(void)
{
    printf("test_image_folder: note: the decoding budget's peak memory is not measured under "
           "AddressSanitizer\n");
}
#else
// The peak resident memory, in KiB, of the largest child so far, after one that runs
// image_folder_read(dir, opt) (or, with dir NULL, nothing); -1 if the child failed.
static long child_peak_kib(const char *dir, const struct image_folder_options *opt)
{
    pid_t pid = fork();
    if (pid < 0)
        setup_fail("cannot fork for", "a memory check");
    if (pid == 0) {
        struct image_folder f;
        struct clvae_error err;
        int rc = dir ? image_folder_read(dir, opt, &f, &err) : 0;
        if (rc != 0)
            fprintf(stderr, "test_image_folder: child: %s\n", err.msg);
        _exit(rc == 0 ? 0 : 1);
    }
    int status;
    struct rusage ru;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0 ||
        getrusage(RUSAGE_CHILDREN, &ru) != 0)
        return -1;
    return ru.ru_maxrss;
}

// Two 4096x2100 images (33 MiB each as RGBA) resized by two threads under a budget that fits
// one: one at a time, where each thread held its own. Measured in a child; blocks over 32 MiB
// are glibc's own mappings, returned to the system when freed.
static void test_decode_budget(void)
{
    struct raw_image im = {.width = 4096, .height = 2100};
    struct png_buf b = make_raw_png(&im, 9);
    write_buf("budget/0.png", &b);
    write_buf("budget/1.png", &b);
    free(b.data);
    char dir[TU_PATH_MAX];
    struct image_folder_options opt = options();
    opt.width = opt.height = 8;
    opt.threads = 2;
    opt.test_split = 0.5;
    long image = (long)(4 * (uint64_t)im.width * im.height >> 10);
    opt.decode_budget = ((size_t)image << 10) + ((size_t)1 << 20);
    long base = child_peak_kib(NULL, &opt);
    long peak = child_peak_kib(tu_in_tmp(dir, "budget"), &opt);
    tu_check(base >= 0 && peak >= 0 && peak - base <= image * 3 / 2,
             "two 4096x2100 images resized by 2 threads, a budget of one: peak %ld MiB over the "
             "process's %ld MiB (one image of %ld MiB at a time; both without the budget)",
             (peak - base) >> 10, base >> 10, image >> 10);
}
#endif

// A FIFO named like a PNG beside PNG files: skipped, not waited on.
static void test_fifo(void)
{
    char dir[TU_PATH_MAX], path[TU_PATH_MAX];
    write_grey(in_tmp(path, "fifo/a.png"), 4, 4, 10);
    write_grey(in_tmp(path, "fifo/b.png"), 4, 4, 20);
    if (mkfifo(in_tmp(path, "fifo/x.png"), 0600) != 0)
        setup_fail("cannot make a FIFO", path);
    struct image_folder_options opt = options();
    opt.test_split = 0.5;
    struct image_folder f;
    tu_begin();
    alarm(60); // a hang ends the test
    if (read_ok(tu_in_tmp(dir, "fifo"), &opt, &f))
        tu_expect(f.train.count + f.test.count == 2 && f.skipped == 0, "%u + %u images",
                  f.train.count, f.test.count);
    alarm(0);
    image_folder_free(&f);
    tu_end("a FIFO named x.png in the folder: skipped without blocking");
}

// ---- Real data ----

// Debian's oxygen icons, 32x32: 10 class folders, 1204 PNG files and 324 links (skipped).
// A 0.1 split rounds per class: 63 0 16 3 6 2 1 16 5 8 = 120 held out.
static void test_oxygen(void)
{
    struct stat st;
    if (stat(OXYGEN_DIR, &st) != 0) {
        printf("test_image_folder: note: %s is missing (Debian's oxygen-icon-theme); skipping "
               "the real-data checks\n",
               OXYGEN_DIR);
        return;
    }
    struct image_folder_options opt = options();
    opt.width = opt.height = 32;
    opt.threads = 0;
    struct image_folder f;
    tu_begin();
    if (read_ok(OXYGEN_DIR, &opt, &f)) {
        tu_expect(f.n_classes == 10 && strcmp(f.class_names[0], "actions") == 0 &&
                      strcmp(f.class_names[9], "status") == 0,
                  "%d classes", f.n_classes);
        tu_expect(f.train.count + f.test.count == 1204 && f.test.count == 120 &&
                      f.train.channels == 3 && f.train.width == 32 && f.skipped == 0,
                  "%u + %u images, %u channels, skipped %llu", f.train.count, f.test.count,
                  f.train.channels, (unsigned long long)f.skipped);
        int test[10];
        count_labels(&f.test, test, 10);
        const int want[10] = {63, 0, 16, 3, 6, 2, 1, 16, 5, 8};
        for (int k = 0; k < 10; k++)
            tu_expect(test[k] == want[k], "class %s: %d test images, expected %d", f.class_names[k],
                      test[k], want[k]);
        tu_note("%u train + %u test, 3 channels", f.train.count, f.test.count);
    }
    image_folder_free(&f);
    tu_end("oxygen 32x32 icons at 32x32: 10 classes, 1204 images, 0.1 split holds out 120");
    opt.width = opt.height = 0;
    read_fails("oxygen without --image-size: the 32x480 animation", OXYGEN_DIR, &opt,
               CLVAE_EXIT_DATA, "animations/process-working-kde.png", "32x480", "--image-size");
}

// ---- The other formats ----

// A JPEG of w x h written by libjpeg (a pattern; grey or RGB, progressive or not): malloc'ed.
static uint8_t *make_jpeg(int w, int h, bool grey, bool progressive, size_t *len)
{
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr e;
    c.err = jpeg_std_error(&e);
    jpeg_create_compress(&c);
    unsigned char *buf = NULL;
    unsigned long size = 0;
    jpeg_mem_dest(&c, &buf, &size);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = grey ? 1 : 3;
    c.in_color_space = grey ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, 85, TRUE);
    if (progressive)
        jpeg_simple_progression(&c);
    jpeg_start_compress(&c, TRUE);
    uint8_t *row = tu_alloc((size_t)w * 3, 1);
    for (int y = 0; y < h; y++) {
        for (int i = 0; i < w * c.input_components; i++)
            row[i] = (uint8_t)(i * 7 + y * 13 + (i / 3) * (y % 5));
        JSAMPROW rows[1] = {row};
        jpeg_write_scanlines(&c, rows, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    free(row);
    *len = size;
    return buf;
}

// A lossless WebP of w x h RGBA written by libwebp: WebPFree it.
static uint8_t *make_webp(int w, int h, size_t *len)
{
    uint8_t *rgba = tu_alloc((size_t)w * h * 4, 1), *out = NULL;
    for (size_t i = 0; i < (size_t)w * h * 4; i++)
        rgba[i] = (uint8_t)(i * 11 + i / 1000);
    *len = WebPEncodeLosslessRGBA(rgba, w, h, w * 4, &out);
    free(rgba);
    if (*len == 0)
        setup_fail("libwebp could not encode", "a test image");
    return out;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

// An uncompressed 24-bit BMP of w x h: malloc'ed.
static uint8_t *make_bmp(int w, int h, size_t *len)
{
    size_t row = ((size_t)w * 3 + 3) / 4 * 4, n = 54 + row * (size_t)h;
    uint8_t *b = tu_alloc(n, 1);
    b[0] = 'B', b[1] = 'M';
    put_le32(b + 2, (uint32_t)n);
    put_le32(b + 10, 54);
    put_le32(b + 14, 40);
    put_le32(b + 18, (uint32_t)w);
    put_le32(b + 22, (uint32_t)h);
    b[26] = 1;  // planes
    b[28] = 24; // bits a pixel
    for (size_t i = 54; i < n; i++)
        b[i] = (uint8_t)(i * 5);
    *len = n;
    return b;
}

// torchvision's Resize(short side) + CenterCrop, reimplemented in doubles: the covering scale
// (the long side int(S * long / short)), the window at rint((scaled - crop) / 2), halves to even
// as Python's round().
static void torchvision_box(long w, long h, long W, long H, long box[4])
{
    if (W * h >= H * w) {
        box[0] = W;
        box[1] = (long)((double)W * (double)h / (double)w);
    } else {
        box[0] = (long)((double)H * (double)w / (double)h);
        box[1] = H;
    }
    box[2] = (long)rint((double)(box[0] - W) / 2.0);
    box[3] = (long)rint((double)(box[1] - H) / 2.0);
}

static void test_crop_geometry(void)
{
    const int targets[][2] = {{1, 1}, {8, 8}, {5, 5}, {16, 9}, {9, 16}, {7, 3}, {64, 64}};
    int n = 0, bad = 0;
    char first[160] = "";
    for (size_t t = 0; t < sizeof targets / sizeof *targets; t++)
        for (long w = 1; w <= 70; w++)
            for (long h = 1; h <= 70; h++) {
                struct image_format fmt = {.channels = 3,
                                           .width = targets[t][0],
                                           .height = targets[t][1],
                                           .crop = IMAGE_CROP_CENTER};
                struct image_crop_box box;
                long want[4];
                image_crop_geometry((uint32_t)w, (uint32_t)h, &fmt, &box);
                torchvision_box(w, h, fmt.width, fmt.height, want);
                n++;
                if ((long)box.scaled_width != want[0] || (long)box.scaled_height != want[1] ||
                    (long)box.left != want[2] || (long)box.top != want[3]) {
                    if (!bad++)
                        snprintf(first, sizeof first,
                                 "%ldx%ld to %dx%d: %llu %llu %llu %llu, torchvision's %ld %ld %ld "
                                 "%ld",
                                 w, h, fmt.width, fmt.height, (unsigned long long)box.scaled_width,
                                 (unsigned long long)box.scaled_height,
                                 (unsigned long long)box.left, (unsigned long long)box.top, want[0],
                                 want[1], want[2], want[3]);
                }
            }
    tu_check(bad == 0,
             "crop center's geometry of %d sizes as torchvision's Resize + CenterCrop "
             "(odd margins rounded half to even): %d differ %s",
             n, bad, first);
    struct image_format fmt = {.channels = 3, .width = 4096, .height = 4096, .crop = 1};
    struct image_crop_box box;
    image_crop_geometry(1u << 26, 1, &fmt, &box);
    tu_check(box.scaled_width == (uint64_t)4096 << 26 && box.scaled_height == 4096 &&
                 box.left == ((uint64_t)4096 << 26) / 2 - 2048,
             "a 67108864x1 image to 4096x4096: scaled to 2^38 x 4096 without wrapping");
}

// Headers claiming more than IMAGE_MAX_PIXELS, in every format: refused before the image costs
// anything (the reader's count stays at its fixed part).
static void test_huge_headers(void)
{
    size_t jlen;
    uint8_t *jpeg = make_jpeg(8, 8, false, false, &jlen);
    for (size_t i = 0; i + 8 < jlen; i++)
        if (jpeg[i] == 0xff && jpeg[i + 1] == 0xc0) { // SOF0: length, precision, height, width
            put_be32(jpeg + i + 5, (60000u << 16) | 60000u);
            break;
        }
    uint8_t webp[38] = "RIFF\x1e\0\0\0WEBPVP8X\x0a\0\0\0\0\0\0\0\x4f\xc3\0\x4f\xc3\0VP8L";
    uint8_t bmp[84] = "BM";
    put_le32(bmp + 10, 54);
    put_le32(bmp + 14, 40);
    put_le32(bmp + 18, 100000);
    put_le32(bmp + 22, 100000);
    bmp[26] = 1;
    bmp[28] = 24;
    uint8_t gif[32] = "GIF89a\xff\xff\xff\xff";
    uint8_t tga[48] = {0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 24, 0};
    const char ppm[] = "P6\n100000 100000\n255\n0000000000";
    struct {
        const char *name, *size;
        const uint8_t *data;
        size_t len;
    } cases[] = {{"huge.jpg", "60000x60000", jpeg, jlen},
                 {"huge.webp", "50000x50000", webp, sizeof webp},
                 {"huge.bmp", "100000x100000", bmp, sizeof bmp},
                 {"huge.gif", "65535x65535", gif, sizeof gif},
                 {"huge.tga", "65535x65535", tga, sizeof tga},
                 {"huge.ppm", "100000x100000", (const uint8_t *)ppm, sizeof ppm - 1}};
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        struct image_format fmt = {.channels = 3, .width = 8, .height = 8};
        uint8_t out[8 * 8 * 3];
        struct image_decode_stats st;
        struct clvae_error err = {0};
        char words[64];
        snprintf(words, sizeof words, "%s is over the limit", cases[k].size);
        tu_begin();
        int rc = image_decode(cases[k].data, cases[k].len, cases[k].name, &fmt, out, &st, &err);
        tu_expect(rc == -1 && err.status == CLVAE_EXIT_DATA && strstr(err.msg, cases[k].name) &&
                      strstr(err.msg, words),
                  "%d: %s", rc, err.msg);
        tu_expect(st.peak_bytes <= IMAGE_DECODE_FIXED_BYTES && st.held_after == 0,
                  "peak %zu bytes, %zu held after", st.peak_bytes, st.held_after);
        tu_end("a %s header of %s: refused, %zu bytes held at most", cases[k].name + 5,
               cases[k].size, st.peak_bytes);
    }
    free(jpeg);
}

// Decoding within image_header_bound: a progressive JPEG (its coefficients whole), a sequential
// one at its size (rows only), a lossless WebP and a BMP, resized and centre-cropped.
// A file decoded by test_format_memory, and to what.
struct memory_case {
    const char *name;
    uint8_t *data;
    size_t len;
    int width, height, crop;
    bool rows_only; // decoded row by row: it holds less than the image as RGBA
};

static void test_format_memory(void)
{
    struct memory_case cases[] = {{"p.jpg", NULL, 0, 64, 64, IMAGE_CROP_CENTER, false},
                                  {"s.jpg", NULL, 0, 300, 200, IMAGE_CROP_NONE, true},
                                  {"g.jpg", NULL, 0, 300, 200, IMAGE_CROP_NONE, false},
                                  {"w.webp", NULL, 0, 40, 30, IMAGE_CROP_CENTER, false},
                                  {"b.bmp", NULL, 0, 33, 9, IMAGE_CROP_NONE, false}};
    size_t n = sizeof cases / sizeof *cases;
    cases[0].data = make_jpeg(300, 200, false, true, &cases[0].len);
    cases[1].data = make_jpeg(300, 200, false, false, &cases[1].len);
    cases[2].data = make_jpeg(300, 200, true, true, &cases[2].len);
    cases[3].data = make_webp(300, 200, &cases[3].len);
    cases[4].data = make_bmp(300, 200, &cases[4].len);
    for (size_t k = 0; k < n; k++) {
        struct image_format fmt = {.channels = 3,
                                   .width = cases[k].width,
                                   .height = cases[k].height,
                                   .background = {1, 2, 3},
                                   .crop = cases[k].crop};
        uint8_t *out = tu_alloc((size_t)fmt.width * fmt.height * 3, 1);
        struct image_header h;
        struct image_decode_stats st;
        struct clvae_error err = {0};
        tu_begin();
        int rc = image_read_header(cases[k].data, cases[k].len, cases[k].name, &h, &err);
        if (rc == 0)
            rc = image_decode(cases[k].data, cases[k].len, cases[k].name, &fmt, out, &st, &err);
        tu_expect(rc == 0, "%s", err.msg);
        uint64_t bound = rc == 0 ? image_header_bound(&h, &fmt) : 0;
        tu_expect(rc != 0 || (st.peak_bytes <= bound && st.held_after == 0),
                  "peak %zu bytes, bound %llu, %zu held after", st.peak_bytes,
                  (unsigned long long)bound, st.held_after);
        tu_expect(rc != 0 || !cases[k].rows_only || st.peak_bytes < 300 * 200 * 4,
                  "peak %zu bytes: holds the image", st.peak_bytes);
        tu_end("%s (300x200) to %dx%d: peak %zu bytes <= image_header_bound's %llu", cases[k].name,
               fmt.width, fmt.height, rc == 0 ? st.peak_bytes : 0, (unsigned long long)bound);
        free(out);
        if (strstr(cases[k].name, ".webp"))
            WebPFree(cases[k].data);
        else
            free(cases[k].data);
    }
}

// ---- The decoded-set cache ----

// Sets the modification time of path a second later.
static void touch_later(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0)
        setup_fail("cannot stat", path);
    struct timespec times[2] = {st.st_atim, st.st_mtim};
    times[1].tv_sec += 1;
    if (utimensat(AT_FDCWD, path, times, 0) != 0)
        setup_fail("cannot touch", path);
}

// Whether a and b hold the same sets, classes and counts.
static bool same_folder(const struct image_folder *a, const struct image_folder *b)
{
    size_t image = (size_t)a->train.height * a->train.width * a->train.channels;
    bool same = a->train.count == b->train.count && a->test.count == b->test.count &&
                a->train.height == b->train.height && a->train.width == b->train.width &&
                a->train.channels == b->train.channels && a->n_classes == b->n_classes &&
                a->skipped == b->skipped && a->test_folder == b->test_folder;
    for (int s = 0; s < 2 && same; s++) {
        const struct image_set *x = s ? &a->test : &a->train, *y = s ? &b->test : &b->train;
        same = memcmp(x->pixels, y->pixels, x->count * image) == 0 &&
               (!x->labels || memcmp(x->labels, y->labels, x->count * sizeof *x->labels) == 0);
    }
    for (int c = 0; c < a->n_classes && same; c++)
        same = strcmp(a->class_names[c], b->class_names[c]) == 0;
    return same;
}

// One read of dir with opt, stderr kept in *text (malloc'ed): 0 or -1.
static int read_logged(const char *dir, const struct image_folder_options *opt,
                       struct image_folder *f, char **text)
{
    char log[TU_PATH_MAX];
    struct clvae_error err = {0};
    capture_stderr(tu_in_tmp(log, "cache.log"));
    int rc = image_folder_read(dir, opt, f, &err);
    restore_stderr();
    size_t len;
    *text = (char *)slurp(log, &len);
    (*text)[len] = '\0';
    if (rc != 0)
        tu_expect(0, "image_folder_read failed: %s", err.msg);
    return rc;
}

static void test_cache(void)
{
    char dir[TU_PATH_MAX], path[TU_PATH_MAX], xdg[TU_PATH_MAX];
    setenv("XDG_CACHE_HOME", make_folder(xdg, "xdg"), 1);
    for (int i = 0; i < 6; i++) {
        snprintf(path, sizeof path, "cached/%c/%d.png", 'a' + i % 2, i);
        write_grey(in_tmp(path, path), 5, 4, (uint8_t)(40 * i));
        size_t len;
        uint8_t *jpeg = make_jpeg(5, 4, false, false, &len);
        snprintf(path, sizeof path, "cached/%c/%dj.jpg", 'a' + i % 2, i);
        tu_write_file(in_tmp(path, path), (const char *)jpeg, len);
        free(jpeg);
    }
    tu_write_file(in_tmp(path, "cached/a/zz.jpg"), "\xff\xd8\xff not really", 14);
    tu_in_tmp(dir, "cached");
    struct image_folder_options opt = options();
    opt.cache = true;
    opt.skip_bad = true;
    opt.test_split = 0.3;
    struct image_folder first, f;
    char *log1 = NULL, *log = NULL;
    tu_begin();
    bool ok = read_logged(dir, &opt, &first, &log1) == 0;
    tu_expect(!ok || (first.cache_written && !first.from_cache && first.skipped == 1 &&
                      strstr(log1, "zz.jpg") && strstr(first.cache_path, xdg)),
              "written %d, from cache %d, skipped %llu, path %s, stderr %s", first.cache_written,
              first.from_cache, (unsigned long long)first.skipped, first.cache_path, log1);
    tu_end("cache: the first read decodes and writes the cache under $XDG_CACHE_HOME/clvae");
    char cache[IMAGE_FOLDER_CACHE_PATH];
    snprintf(cache, sizeof cache, "%s", first.cache_path);

    tu_begin();
    ok = ok && read_logged(dir, &opt, &f, &log) == 0;
    tu_expect(ok && f.from_cache && !f.cache_written && same_folder(&first, &f) &&
                  strcmp(log, log1) == 0,
              "from cache %d, same %d, stderr \"%s\" (was \"%s\")", f.from_cache,
              ok && same_folder(&first, &f), log, log1);
    tu_end("cache: the second read takes the same sets, labels, classes and skip warning from it");
    image_folder_free(&f);
    free(log);

    touch_later(tu_in_tmp(path, "cached/b/3.png"));
    for (int round = 0; round < 2; round++) {
        tu_begin();
        read_logged(dir, &opt, &f, &log);
        bool want_hit = round == 1;
        tu_expect(f.from_cache == want_hit && same_folder(&first, &f), "from cache %d",
                  f.from_cache);
        tu_end("cache: a file touched: %s",
               want_hit ? "written again, then used" : "stale, decoded again, the same sets");
        image_folder_free(&f);
        free(log);
    }
    FILE *c = fopen(cache, "r+b");
    if (!c || fseek(c, -3, SEEK_END) != 0 || fputc(0x5a, c) == EOF || fclose(c) != 0)
        setup_fail("cannot damage", cache);
    for (int round = 0; round < 2; round++) {
        tu_begin();
        read_logged(dir, &opt, &f, &log);
        tu_expect(f.from_cache == (round == 1) && same_folder(&first, &f), "from cache %d",
                  f.from_cache);
        tu_end("cache: a byte of its pixels changed: %s",
               round ? "rewritten, then used" : "damaged (checksum), decoded again");
        image_folder_free(&f);
        free(log);
    }
    struct image_folder_options other = opt;
    other.background[1] = 7;
    tu_begin();
    read_logged(dir, &other, &f, &log);
    tu_expect(!f.from_cache && f.cache_written && strcmp(f.cache_path, cache) != 0,
              "from cache %d, path %s", f.from_cache, f.cache_path);
    tu_end("cache: another background: another cache file, decoded");
    image_folder_free(&f);
    free(log);
    other = opt;
    other.test_only = true;
    tu_begin();
    read_logged(dir, &other, &f, &log);
    tu_expect(!f.from_cache && !f.cache_written && !f.cache_path[0], "from cache %d, path %s",
              f.from_cache, f.cache_path);
    tu_end("cache: a test-only read neither reads nor writes it");
    image_folder_free(&f);
    free(log);

    // Cut at every length, and with the wrong key: a miss, never an error, nothing held.
    size_t len;
    uint8_t *whole = slurp(cache, &len), key[IMAGE_CACHE_KEY_BYTES];
    memcpy(key, whole + 16, sizeof key);
    char cut[TU_PATH_MAX], *warnings;
    tu_in_tmp(cut, "cut.cache");
    int taken = 0;
    for (size_t n = 0; n <= len; n++) {
        tu_write_file(cut, (const char *)whole, n);
        const char *why;
        if (image_cache_read(cut, key, &f, &warnings, &why) == 0) {
            taken += n == len ? 1 : 100;
            image_folder_free(&f);
            free(warnings);
        }
    }
    key[0] ^= 1;
    const char *why = "";
    int other_key = image_cache_read(cache, key, &f, &warnings, &why);
    tu_check(taken == 1 && other_key == -1 && strstr(why, "other files or options"),
             "cache: cut at each of its %zu bytes: refused but whole; another key: \"%s\"", len,
             why);
    free(whole);
    image_folder_free(&first);
    free(log1);
    unsetenv("XDG_CACHE_HOME");
}

int main(void)
{
    tu_init("test_image_folder");
    tu_make_tmp_dir();
    make_formats();
    test_folder_formats();
    test_channels();
    test_labels_and_strata();
    test_split_determinism();
    test_train_test_folders();
    test_hidden_and_links();
    test_resize();
    test_bad_files();
    test_progress();
    test_bad_layouts();
    test_bad_options();
    test_parsers();
    test_memory_errors();
    test_extra_image_data();
    test_decode_memory();
    test_decode_budget();
    test_fifo();
    test_crop_geometry();
    test_huge_headers();
    test_format_memory();
    test_cache();
    test_oxygen();
    tu_remove_tmp_dir();
    return tu_summary();
}
