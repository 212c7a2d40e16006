// Tests for src/data/idx.c: good raw and gzip files, every malformed case the reader refuses,
// idx_find, and the real Fashion-MNIST files.
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include "idx.h"
#include "test_util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define DEFAULT_DATA_DIR "/usr/share/datasets/fashion-mnist"
#define MAX_CREATED 128

static char *created[MAX_CREATED];
static int n_created;

// Records one check: prints "idx: <label> ok", or a FAIL line with the reason.
static bool check(bool ok, const char *label, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static bool check(bool ok, const char *label, const char *fmt, ...)
{
    tu_checks++;
    if (ok) {
        printf("idx: %s ok\n", label);
        return true;
    }
    tu_failures++;
    printf("idx: FAIL %s: ", label);
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    return false;
}

// Returns tu_tmp_dir/name (malloc'ed, freed at cleanup).
static const char *tmp_path(const char *name)
{
    size_t n = strlen(tu_tmp_dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (!p || n_created == MAX_CREATED) {
        fprintf(stderr, "test_idx: out of memory or too many files\n");
        exit(1);
    }
    snprintf(p, n, "%s/%s", tu_tmp_dir, name);
    created[n_created++] = p;
    return p;
}

// Removes the temporary directory with everything in it, and frees what tmp_path handed out.
static void cleanup(void)
{
    for (int i = 0; i < n_created; i++)
        free(created[i]);
    n_created = 0;
    tu_remove_tmp_dir();
}

// Dies on a failure of the test's own set-up (not of the code under test).
static void setup_fail(const char *what, const char *path)
{
    fprintf(stderr, "test_idx: %s %s: %s\n", what, path, strerror(errno));
    cleanup();
    exit(1);
}

// Writes n bytes to path as a plain file.
static void write_raw(const char *path, const uint8_t *data, size_t n)
{
    if (tu_write_file(path, data, n) != 0)
        setup_fail("cannot write", path);
}

// Writes n bytes to path gzip-compressed, in a few pieces so zlib sees more than one write.
static void write_gz(const char *path, const uint8_t *data, size_t n)
{
    gzFile gz = gzopen(path, "wb6");
    if (!gz)
        setup_fail("cannot gzopen", path);
    size_t done = 0;
    while (done < n) {
        size_t part = n - done > 100000 ? 100000 : n - done;
        if (gzwrite(gz, data + done, (unsigned)part) != (int)part)
            setup_fail("cannot gzwrite", path);
        done += part;
    }
    if (gzclose(gz) != Z_OK)
        setup_fail("cannot gzclose", path);
}

// Reads a whole file into a malloc'ed buffer.
static uint8_t *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        setup_fail("cannot open", path);
    size_t cap = 1 << 16, len = 0;
    uint8_t *buf = malloc(cap);
    for (;;) {
        if (!buf)
            setup_fail("out of memory reading", path);
        len += fread(buf + len, 1, cap - len, f);
        if (len < cap)
            break;
        cap *= 2;
        uint8_t *grown = realloc(buf, cap);
        if (!grown)
            free(buf);
        buf = grown;
    }
    fclose(f);
    *n = len;
    return buf;
}

// Stores v big-endian.
static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

// Builds an IDX3 file image: a 16-byte header with the given magic and dims, then n pixel bytes.
static uint8_t *make_idx3(uint32_t magic, uint32_t count, uint32_t rows, uint32_t cols,
                          const uint8_t *pixels, size_t n, size_t *total)
{
    *total = 16 + n;
    uint8_t *buf = malloc(*total);
    if (!buf)
        setup_fail("out of memory building", "an IDX file");
    put_be32(buf, magic);
    put_be32(buf + 4, count);
    put_be32(buf + 8, rows);
    put_be32(buf + 12, cols);
    if (n > 0)
        memcpy(buf + 16, pixels, n);
    return buf;
}

// Writes an IDX3 file (raw or gzip) with the given header and pixel bytes.
static void write_idx3(const char *path, bool gzip, uint32_t magic, uint32_t count, uint32_t rows,
                       uint32_t cols, const uint8_t *pixels, size_t n)
{
    size_t total;
    uint8_t *buf = make_idx3(magic, count, rows, cols, pixels, n, &total);
    if (gzip)
        write_gz(path, buf, total);
    else
        write_raw(path, buf, total);
    free(buf);
}

// Deterministic, moderately compressible test pixels.
static uint8_t *pattern(size_t n, uint32_t seed)
{
    uint8_t *p = malloc(n ? n : 1);
    if (!p)
        setup_fail("out of memory building", "pixels");
    uint32_t x = seed;
    for (size_t i = 0; i < n; i++) {
        x = x * 1664525u + 1013904223u;
        p[i] = (uint8_t)((i % 7 == 0) ? (x >> 24) : (i * 37 + 11));
    }
    return p;
}

// Seconds on the monotonic clock.
static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

// Reads path and checks it gives count images of rows x cols equal to want.
static void expect_ok(const char *label, const char *path, uint32_t count, uint32_t rows,
                      uint32_t cols, const uint8_t *want)
{
    struct idx_images im;
    struct clvae_error err = {0};
    if (idx_read_images(path, &im, &err) != 0) {
        check(false, label, "unexpected error: %s", err.msg);
        return;
    }
    size_t n = (size_t)count * rows * cols;
    bool dims = im.count == count && im.rows == rows && im.cols == cols;
    check(dims && im.pixels && memcmp(im.pixels, want, n) == 0, label,
          "got %u images of %ux%u (want %u of %ux%u) or different pixels", (unsigned)im.count,
          (unsigned)im.rows, (unsigned)im.cols, (unsigned)count, (unsigned)rows, (unsigned)cols);
    idx_free(&im);
}

// Whether err holds a data error whose message starts with "<path>: " and contains word.
static bool is_data_error(const struct clvae_error *err, const char *path, const char *word)
{
    size_t pl = strlen(path);
    return err->status == CLVAE_EXIT_DATA && strncmp(err->msg, path, pl) == 0 &&
           strncmp(err->msg + pl, ": ", 2) == 0 && strstr(err->msg, word) != NULL;
}

// One check that a call returned rc == -1 with a data error naming path and containing word.
static void check_error(const char *label, int rc, const struct clvae_error *err, const char *path,
                        const char *word)
{
    bool ok = rc == -1 && is_data_error(err, path, word);
    char shown[CLVAE_ERROR_MAX + 300];
    snprintf(shown, sizeof shown, "%s: '%s'", label, err->msg);
    check(ok, ok ? shown : label,
          "returned %d, status %d, message '%s' (want -1, status %d, "
          "'%s: ...%s...')",
          rc, err->status, err->msg, CLVAE_EXIT_DATA, path, word);
}

// Reads path and checks it fails with a data error naming path and containing word.
static void expect_fail(const char *label, const char *path, const char *word)
{
    struct idx_images im = {.count = 7, .pixels = (uint8_t *)&im};
    struct clvae_error err = {0};
    int rc = idx_read_images(path, &im, &err);
    if (rc == 0) {
        check(false, label, "read %u images of %ux%u, want an error", (unsigned)im.count,
              (unsigned)im.rows, (unsigned)im.cols);
        idx_free(&im);
        return;
    }
    if (im.pixels != NULL) {
        check(false, label, "failed but left pixels %p", (void *)im.pixels);
        return;
    }
    check_error(label, rc, &err, path, word);
}

// Good files: raw and gzip, odd sizes, and a gzip file big enough to grow the read buffer.
static void test_good(void)
{
    uint8_t *small = pattern(3 * 5 * 4, 1);
    const char *raw = tmp_path("good.idx");
    const char *gz = tmp_path("good.idx.gz");
    write_idx3(raw, false, 0x803, 3, 5, 4, small, 60);
    write_idx3(gz, true, 0x803, 3, 5, 4, small, 60);
    expect_ok("raw 3x5x4", raw, 3, 5, 4, small);
    expect_ok("gzip 3x5x4", gz, 3, 5, 4, small);

    // A raw file whose name ends in .gz is still told apart by content.
    const char *misnamed = tmp_path("raw-named.gz");
    write_idx3(misnamed, false, 0x803, 3, 5, 4, small, 60);
    expect_ok("raw file named .gz", misnamed, 3, 5, 4, small);

    // 7,000,000 bytes: more than the reader's first chunk and not a power-of-two multiple of it.
    size_t big_n = (size_t)7 * 1000 * 1000;
    uint8_t *big = pattern(big_n, 2);
    const char *biggz = tmp_path("big.idx.gz");
    write_idx3(biggz, true, 0x803, 7, 1000, 1000, big, big_n);
    expect_ok("gzip 7x1000x1000 (buffer growth)", biggz, 7, 1000, 1000, big);
    free(big);

    struct idx_images zero = {0};
    idx_free(&zero);
    idx_free(&zero);
    idx_free(NULL);
    check(zero.pixels == NULL, "idx_free on a zeroed struct, twice, and on NULL", "pixels %p",
          (void *)zero.pixels);
    free(small);
}

// Headers the reader must refuse: wrong magic, type or rank, zero or oversized dims, short files.
static void test_bad_headers(void)
{
    uint8_t *px = pattern(60, 3);
    const char *p;

    p = tmp_path("bad-magic.idx");
    write_idx3(p, false, 0x12345678, 3, 5, 4, px, 60);
    expect_fail("bad magic", p, "magic 0x12345678");

    // An idx1 (labels) file: 00 00 08 01, one dimension, then the bytes.
    p = tmp_path("labels.idx1");
    uint8_t labels[8 + 3] = {0, 0, 8, 1, 0, 0, 0, 3, 1, 2, 3};
    write_raw(p, labels, sizeof labels);
    expect_fail("idx1 (rank 1) file", p, "rank 1");

    p = tmp_path("float.idx");
    write_idx3(p, false, 0x0d03, 3, 5, 4, px, 60);
    expect_fail("wrong type byte (0x0d, float)", p, "type 0x0d");

    p = tmp_path("zero-rows.idx");
    write_idx3(p, false, 0x803, 3, 0, 4, px, 0);
    expect_fail("zero dimension", p, "zero");

    p = tmp_path("zero-count.idx.gz");
    write_idx3(p, true, 0x803, 0, 5, 4, px, 0);
    expect_fail("zero count (gzip)", p, "zero");

    p = tmp_path("overflow.idx");
    write_idx3(p, false, 0x803, 0xffffffffu, 0xffffffffu, 0xffffffffu, px, 60);
    expect_fail("dims whose product overflows 64 bits", p, "limit");

    p = tmp_path("over-limit.idx");
    write_idx3(p, false, 0x803, 4097, 1024, 1024, px, 60);
    expect_fail("dims just over IDX_MAX_BYTES", p, "limit");

    // Exactly IDX_MAX_BYTES passes the limit but not the size check, without allocating 4 GiB.
    p = tmp_path("at-limit.idx");
    write_idx3(p, false, 0x803, 4096, 1024, 1024, px, 60);
    expect_fail("dims exactly at IDX_MAX_BYTES, raw file far too short", p, "truncated");

    p = tmp_path("empty.idx");
    write_raw(p, NULL, 0);
    expect_fail("empty file", p, "empty");

    p = tmp_path("empty.idx.gz");
    write_gz(p, NULL, 0);
    expect_fail("empty gzip file", p, "empty");

    uint8_t header[16] = {0, 0, 8, 3, 0, 0, 0, 3, 0, 0};
    p = tmp_path("short-header.idx");
    write_raw(p, header, 10);
    expect_fail("header cut at 10 bytes", p, "truncated IDX header");

    p = tmp_path("short-magic.idx");
    write_raw(p, header, 3);
    expect_fail("header cut at 3 bytes", p, "truncated IDX header");

    p = tmp_path("missing.idx");
    expect_fail("missing file", p, strerror(ENOENT));

    p = tmp_path("a-directory");
    if (mkdir(p, 0700) != 0)
        setup_fail("cannot mkdir", p);
    expect_fail("directory given as file", p, strerror(EISDIR));
    free(px);
}

// Raw payloads that disagree with the header.
static void test_bad_raw(void)
{
    uint8_t *px = pattern(80, 4);
    const char *p;

    p = tmp_path("short.idx");
    write_idx3(p, false, 0x803, 3, 5, 4, px, 59);
    expect_fail("truncated raw payload (59 of 60 bytes)", p, "truncated: header says 3 images");

    p = tmp_path("long.idx");
    write_idx3(p, false, 0x803, 3, 5, 4, px, 65);
    expect_fail("raw file with 5 trailing bytes", p, "5 bytes of trailing data");
    free(px);
}

// Gzip streams that are cut, damaged, lying about their size, or longer than their header says.
static void test_bad_gzip(void)
{
    size_t n = 40 * 28 * 28;
    uint8_t *px = pattern(n, 5);
    const char *good = tmp_path("good40.idx.gz");
    write_idx3(good, true, 0x803, 40, 28, 28, px, n);
    expect_ok("gzip 40x28x28", good, 40, 28, 28, px);
    size_t gz_n;
    uint8_t *gz = slurp(good, &gz_n);
    const char *p;

    p = tmp_path("cut.idx.gz");
    write_raw(p, gz, gz_n / 2);
    expect_fail("gzip cut in the middle", p, "truncated gzip data");

    p = tmp_path("cut-early.idx.gz");
    write_raw(p, gz, 12);
    expect_fail("gzip cut 2 bytes into the deflate stream", p, "truncated gzip data");

    p = tmp_path("cut-trailer.idx.gz");
    write_raw(p, gz, gz_n - 4);
    expect_fail("gzip without the end of its trailer", p, "truncated gzip data");

    // The 10-byte gzip header stays intact, so the file is still recognised as gzip.
    uint8_t *bad = malloc(gz_n);
    if (!bad)
        setup_fail("out of memory copying", good);
    memcpy(bad, gz, gz_n);
    for (size_t i = gz_n / 3; i < gz_n / 3 + 8; i++)
        bad[i] ^= 0xa5;
    p = tmp_path("corrupt.idx.gz");
    write_raw(p, bad, gz_n);
    expect_fail("gzip with flipped bytes in the deflate stream", p, "corrupt gzip data (");

    memcpy(bad, gz, gz_n);
    bad[gz_n - 8] ^= 0x01;
    p = tmp_path("bad-crc.idx.gz");
    write_raw(p, bad, gz_n);
    expect_fail("gzip with a wrong CRC", p, "corrupt gzip data (");
    free(bad);
    free(gz);

    p = tmp_path("gz-short.idx.gz");
    write_idx3(p, true, 0x803, 41, 28, 28, px, n);
    expect_fail("valid gzip, header says one image more than it holds", p,
                "truncated: header says 41 images of 28x28 (32144 bytes) but the decompressed "
                "data holds 31360");

    p = tmp_path("gz-long.idx.gz");
    write_idx3(p, true, 0x803, 39, 28, 28, px, n);
    expect_fail("valid gzip with one image of trailing data", p, "784 bytes of trailing data");

    // 2^31 images of 28x28 (1.7 TB): refused from the header alone.
    p = tmp_path("huge.idx.gz");
    write_idx3(p, true, 0x803, 1u << 31, 28, 28, px, 2 * 784);
    double t0 = now();
    expect_fail("gzip claiming 2^31 images of 28x28", p, "limit");
    check(now() - t0 < 1.0, "gzip claiming 2^31 images fails quickly", "took %.2f s", now() - t0);

    // 5,000,000 images of 28x28 (3.9 GB) is under the limit: it must fail at the real end of the
    // data, having grown the buffer only as far as the data went.
    p = tmp_path("lying.idx.gz");
    write_idx3(p, true, 0x803, 5000000, 28, 28, px, 2 * 784);
    t0 = now();
    expect_fail("gzip claiming 5,000,000 images of 28x28 but holding 2", p,
                "decompressed data holds 1568");
    check(now() - t0 < 1.0, "lying gzip header fails quickly", "took %.2f s", now() - t0);
    free(px);
}

// idx_find: missing directory, a file as directory, raw only, both, neither, a too-small buffer.
static void test_find(void)
{
    char path[1024];
    struct clvae_error err = {0};
    uint8_t *px = pattern(60, 6);
    const char *p;

    p = tmp_path("no-such-dir");
    int rc = idx_find(p, "imgs", path, sizeof path, &err);
    check_error("idx_find on a missing directory", rc, &err, p, "no such directory");

    p = tmp_path("plain-file");
    write_raw(p, px, 60);
    err = (struct clvae_error){0};
    rc = idx_find(p, "imgs", path, sizeof path, &err);
    check_error("idx_find on a file", rc, &err, p, "not a directory");

    const char *empty_dir = tmp_path("empty-dir");
    if (mkdir(empty_dir, 0700) != 0)
        setup_fail("cannot mkdir", empty_dir);
    err = (struct clvae_error){0};
    rc = idx_find(empty_dir, "imgs", path, sizeof path, &err);
    check_error("idx_find on a directory with neither file", rc, &err, empty_dir,
                "neither imgs.gz nor imgs");

    const char *raw_dir = tmp_path("raw-only");
    if (mkdir(raw_dir, 0700) != 0)
        setup_fail("cannot mkdir", raw_dir);
    const char *raw = tmp_path("raw-only/imgs");
    write_idx3(raw, false, 0x803, 3, 5, 4, px, 60);
    rc = idx_find(raw_dir, "imgs", path, sizeof path, &err);
    check(rc == 0 && strcmp(path, raw) == 0, "idx_find with only the raw file",
          "returned %d, '%s' (%s)", rc, path, rc ? err.msg : "");
    if (rc == 0)
        expect_ok("idx_find's raw file reads back", path, 3, 5, 4, px);

    const char *both_dir = tmp_path("both");
    if (mkdir(both_dir, 0700) != 0)
        setup_fail("cannot mkdir", both_dir);
    write_idx3(tmp_path("both/imgs"), false, 0x803, 3, 5, 4, px, 60);
    const char *gz = tmp_path("both/imgs.gz");
    write_idx3(gz, true, 0x803, 3, 5, 4, px, 60);
    rc = idx_find(both_dir, "imgs", path, sizeof path, &err);
    check(rc == 0 && strcmp(path, gz) == 0, "idx_find with both prefers .gz",
          "returned %d, '%s' (%s)", rc, path, rc ? err.msg : "");

    // A trailing slash on the directory does not double up.
    char slashed[1024];
    snprintf(slashed, sizeof slashed, "%s/", both_dir);
    rc = idx_find(slashed, "imgs", path, sizeof path, &err);
    check(rc == 0 && strcmp(path, gz) == 0, "idx_find with a trailing slash",
          "returned %d, '%s' (%s)", rc, path, rc ? err.msg : "");

    char tiny[8];
    err = (struct clvae_error){0};
    rc = idx_find(both_dir, "imgs", tiny, sizeof tiny, &err);
    check_error("idx_find with a too-small path buffer", rc, &err, both_dir, "too long");
    free(px);
}

// The real Fashion-MNIST images: counts, sizes and the training set's mean pixel value.
static void test_fashion_mnist(void)
{
    const char *dir = getenv("CLVAE_DATA");
    if (!dir || !*dir)
        dir = DEFAULT_DATA_DIR;
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        check(false, "Fashion-MNIST",
              "no directory %s: install dataset-fashion-mnist (or set "
              "CLVAE_DATA to a directory holding the Fashion-MNIST files)",
              dir);
        return;
    }
    static const struct {
        const char *stem;
        uint32_t count;
        bool mean;
    } sets[] = {
        {"train-images-idx3-ubyte", 60000, true},
        {"t10k-images-idx3-ubyte", 10000, false},
    };
    for (size_t s = 0; s < sizeof sets / sizeof sets[0]; s++) {
        char path[4096], label[4400];
        struct clvae_error err = {0};
        snprintf(label, sizeof label, "Fashion-MNIST %s", sets[s].stem);
        if (idx_find(dir, sets[s].stem, path, sizeof path, &err) != 0) {
            check(false, label, "%s (install dataset-fashion-mnist)", err.msg);
            continue;
        }
        struct idx_images im;
        if (idx_read_images(path, &im, &err) != 0) {
            check(false, label, "%s", err.msg);
            continue;
        }
        snprintf(label, sizeof label, "Fashion-MNIST %s: %u images of %ux%u", path,
                 (unsigned)im.count, (unsigned)im.rows, (unsigned)im.cols);
        check(im.count == sets[s].count && im.rows == 28 && im.cols == 28, label,
              "%u images of %ux%u, want %u of 28x28", (unsigned)im.count, (unsigned)im.rows,
              (unsigned)im.cols, (unsigned)sets[s].count);
        if (sets[s].mean) {
            size_t n = (size_t)im.count * im.rows * im.cols;
            uint64_t sum = 0;
            for (size_t i = 0; i < n; i++)
                sum += im.pixels[i];
            double mean = (double)sum / (double)n;
            snprintf(label, sizeof label, "Fashion-MNIST training mean pixel %.3f", mean);
            check(mean >= 72.5 && mean <= 73.5, label, "want 72.5..73.5 (about 72.94)");
        }
        idx_free(&im);
    }
}

// IDX1 label files: Fashion-MNIST's test labels (10000, each class 1000 times), raw and gzip
// files of our own, and the errors: an image file read as labels, labels as images, a truncated
// and an over-long label file.
static void test_labels(void)
{
    const char *dir = getenv("CLVAE_DATA");
    if (!dir || !*dir)
        dir = DEFAULT_DATA_DIR;
    char path[4096];
    struct clvae_error err = {0};
    struct idx_images lab;
    if (idx_find(dir, "t10k-labels-idx1-ubyte", path, sizeof path, &err) != 0 ||
        idx_read_labels(path, &lab, &err) != 0) {
        check(false, "Fashion-MNIST test labels", "%s (install dataset-fashion-mnist)", err.msg);
    } else {
        int per_class[256] = {0};
        for (uint32_t i = 0; i < lab.count; i++)
            per_class[lab.pixels[i]]++;
        bool even = lab.count == 10000;
        for (int c = 0; c < 256; c++)
            even = even && per_class[c] == (c < 10 ? 1000 : 0);
        check(even, "Fashion-MNIST test labels: 10000, classes 0-9 1000 each",
              "%u labels; class 0 %d times, class 10 %d", (unsigned)lab.count, per_class[0],
              per_class[10]);
        idx_free(&lab);
    }

    uint8_t file[8 + 7] = {0, 0, 8, 1, 0, 0, 0, 7, 3, 1, 4, 1, 5, 9, 2};
    for (int gz = 0; gz < 2; gz++) {
        const char *name = tmp_path(gz ? "labels.gz" : "labels");
        if (gz)
            write_gz(name, file, sizeof file);
        else
            write_raw(name, file, sizeof file);
        int rc = idx_read_labels(name, &lab, &err);
        check(rc == 0 && lab.count == 7 && lab.rows == 1 && lab.cols == 1 &&
                  memcmp(lab.pixels, file + 8, 7) == 0,
              gz ? "7 labels, gzip" : "7 labels, raw", "rc %d: %s", rc, rc ? err.msg : "");
        if (rc == 0)
            idx_free(&lab);
        if (!gz) {
            int rc2 = idx_read_images(name, &lab, &err);
            check_error("a label file read as images", rc2, &err, name, "rank 1");
        }
    }
    const char *cut = tmp_path("labels-cut");
    write_raw(cut, file, sizeof file - 2);
    check_error("a truncated label file", idx_read_labels(cut, &lab, &err), &err, cut,
                "header says 7 labels");
    uint8_t longer[8 + 9] = {0, 0, 8, 1, 0, 0, 0, 7, 3, 1, 4, 1, 5, 9, 2, 6, 5};
    const char *extra = tmp_path("labels-long");
    write_raw(extra, longer, sizeof longer);
    check_error("a label file with trailing bytes", idx_read_labels(extra, &lab, &err), &err, extra,
                "trailing data");
    const char *images = tmp_path("images-as-labels");
    const uint8_t pixels[18] = {0};
    write_idx3(images, false, 0x00000803u, 2, 3, 3, pixels, sizeof pixels);
    check_error("an image file read as labels", idx_read_labels(images, &lab, &err), &err, images,
                "not an IDX label file");
}

// What idx_read_images_into's destination saw: how often it was asked, for how much, and a buffer
// the size the test expects (a request for more is refused, as a device that cannot fit it would).
struct dest_log {
    int calls;
    size_t bytes, capacity;
    uint8_t *buf;
};

static uint8_t *log_dest(void *ctx, size_t bytes, struct clvae_error *err)
{
    struct dest_log *d = ctx;
    d->calls++;
    d->bytes = bytes;
    if (bytes > d->capacity) {
        clvae_fail(err, CLVAE_EXIT_DEVICE, "test destination: %zu bytes asked, %zu held", bytes,
                   d->capacity);
        return NULL;
    }
    return d->buf;
}

// Concatenates two gzip members of the halves of an IDX file: its trailer's ISIZE covers only the
// second half, so the reader must stage the data instead of trusting the header.
static void write_two_member_gz(const char *path, const uint8_t *data, size_t n)
{
    const char *a = tmp_path("member_a.gz"), *b = tmp_path("member_b.gz");
    write_gz(a, data, n / 2);
    write_gz(b, data + n / 2, n - n / 2);
    size_t na, nb;
    uint8_t *ba = slurp(a, &na), *bb = slurp(b, &nb);
    uint8_t *both = malloc(na + nb);
    if (!both)
        setup_fail("out of memory building", path);
    memcpy(both, ba, na);
    memcpy(both + na, bb, nb);
    write_raw(path, both, na + nb);
    free(ba);
    free(bb);
    free(both);
}

// idx_read_images_into: raw and single-member gzip files ask the destination once for exactly the
// payload and fill it; a two-member gzip file (trailer disagrees) is staged and still arrives
// whole; a gzip header that lies about the count is refused without asking the destination for
// the claimed size; a destination that fails makes the read fail with its error.
static void test_read_into(void)
{
    const uint32_t count = 5, rows = 7, cols = 9;
    size_t n = (size_t)count * rows * cols;
    uint8_t *want = pattern(n, 99);
    struct dest_log d = {.capacity = n, .buf = malloc(n)};
    if (!d.buf)
        setup_fail("out of memory building", "a destination");
    static const struct {
        const char *name;
        int kind; // 0 raw, 1 gzip, 2 two gzip members
    } files[] = {{"into.idx", 0}, {"into.idx.gz", 1}, {"into2.idx.gz", 2}};
    for (size_t f = 0; f < sizeof files / sizeof files[0]; f++) {
        const char *path = tmp_path(files[f].name);
        size_t total;
        uint8_t *file = make_idx3(0x803, count, rows, cols, want, n, &total);
        if (files[f].kind == 0)
            write_raw(path, file, total);
        else if (files[f].kind == 1)
            write_gz(path, file, total);
        else
            write_two_member_gz(path, file, total);
        free(file);
        memset(d.buf, 0, n);
        d.calls = 0;
        struct idx_images im;
        struct clvae_error err = {0};
        int rc = idx_read_images_into(path, &im, log_dest, &d, &err);
        check(rc == 0 && d.calls == 1 && d.bytes == n && im.pixels == d.buf && im.count == count &&
                  im.rows == rows && im.cols == cols && memcmp(d.buf, want, n) == 0,
              files[f].kind == 0   ? "read_into: raw file, destination asked once, filled"
              : files[f].kind == 1 ? "read_into: gzip file, destination asked once, filled"
                                   : "read_into: two gzip members (staged), filled",
              "rc %d (%s), %d calls for %zu bytes (want 1 for %zu)", rc, err.msg, d.calls, d.bytes,
              n);
    }

    const char *liar = tmp_path("into_liar.idx.gz");
    write_idx3(liar, true, 0x803, 1000000, rows, cols, want, n);
    d.calls = 0;
    struct idx_images im;
    struct clvae_error err = {0};
    int rc = idx_read_images_into(liar, &im, log_dest, &d, &err);
    check(rc == -1 && d.calls == 0 && is_data_error(&err, liar, "truncated"),
          "read_into: gzip header claiming 1000000 images refused before the destination",
          "rc %d, %d destination calls, '%s'", rc, d.calls, err.msg);

    const char *raw = tmp_path("into.idx");
    d.capacity = n - 1;
    err = (struct clvae_error){0};
    rc = idx_read_images_into(raw, &im, log_dest, &d, &err);
    check(rc == -1 && err.status == CLVAE_EXIT_DEVICE,
          "read_into: a destination that fails fails the read with its error",
          "rc %d, status %d '%s'", rc, err.status, err.msg);
    free(d.buf);
    free(want);
}

// A FIFO and a device where a data file should be: refused at once, never waited on (open() of a
// FIFO without a writer blocks, and a device reads as an empty or endless stream).
static void test_special_files(void)
{
    const char *dir = tmp_path("special");
    if (mkdir(dir, 0700) != 0)
        setup_fail("cannot mkdir", dir);
    const char *fifo = tmp_path("special/imgs.gz");
    if (mkfifo(fifo, 0600) != 0)
        setup_fail("cannot make a FIFO", fifo);
    alarm(60); // a hang ends the test
    expect_fail("a FIFO as the image file is refused", fifo, "not a regular file");
    struct idx_images labels = {0};
    struct clvae_error err = {0};
    int rc = idx_read_labels(fifo, &labels, &err);
    check_error("a FIFO as the label file is refused", rc, &err, fifo, "not a regular file");
    char path[1024];
    rc = idx_find(dir, "imgs", path, sizeof path, &err);
    check(rc == 0 && strcmp(path, fifo) == 0, "idx_find names the FIFO (reading it says why)",
          "returned %d, '%s' (%s)", rc, path, rc ? err.msg : "");
    expect_fail("/dev/null as the image file is refused", "/dev/null", "not a regular file");
    alarm(0);
}

int main(void)
{
    tu_init("test_idx");
    tu_make_tmp_dir();

    test_good();
    test_bad_headers();
    test_bad_raw();
    test_bad_gzip();
    test_find();
    test_special_files();
    test_read_into();
    test_fashion_mnist();
    test_labels();
    cleanup();
    return tu_summary();
}
