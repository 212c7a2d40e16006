// stat, pread and friends are POSIX, not C11.
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include "idx.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "regular_file.h"

#define IDX_HEADER_BYTES 16 // the longest: rank 3

// Gzip data grows the buffer from this size, so a header that lies costs at most what really
// arrives.
#define IDX_GZIP_FIRST_CHUNK ((size_t)4 << 20)

// gzread takes an unsigned count and returns an int: stay well inside both.
#define IDX_READ_MAX ((size_t)1 << 30)

// Trailing data is counted up to here, so a decompression bomb after the images is not read in
// full.
#define IDX_TRAILING_COUNT_MAX ((uint64_t)64 << 20)

// One open data file: the zlib handle and what was learnt about it when it was opened.
struct idx_file {
    const char *path;
    gzFile gz;
    int fd;          // gz's descriptor, for pread of a gzip trailer
    bool gzip;       // compressed: the payload size is only known once it has been decompressed
    bool known_size; // raw: size holds its length
    uint64_t size, file_size; // file_size: the file's length (it is a regular file)
    int rank;                 // 3: images (count, rows, cols); 1: labels (count)
    size_t header_bytes;      // 4 + 4 rank
};

// Reads a big-endian 32-bit value.
static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

// Strips the "<fd:N>: " prefix zlib puts before its messages for gzdopen'ed files.
static const char *zlib_text(const char *msg)
{
    if (!msg || !*msg)
        return "unknown zlib error";
    if (strncmp(msg, "<fd:", 4) == 0) {
        const char *colon = strstr(msg, ": ");
        if (colon)
            return colon + 2;
    }
    return msg;
}

// Turns zlib's pending error (if any) into a clvae error; returns 0 when there is none.
static int check_gz_error(struct idx_file *f, struct clvae_error *err)
{
    int errnum = Z_OK;
    const char *msg = gzerror(f->gz, &errnum);
    switch (errnum) {
    case Z_OK: return 0;
    case Z_BUF_ERROR:
        // zlib's "unexpected end of file": the compressed stream stops mid-way.
        if (f->gzip)
            return clvae_fail(err, CLVAE_EXIT_DATA, "%s: truncated gzip data", f->path);
        return clvae_fail(err, CLVAE_EXIT_DATA, "%s: truncated (%s)", f->path, zlib_text(msg));
    case Z_ERRNO: return clvae_fail(err, CLVAE_EXIT_DATA, "%s: %s", f->path, zlib_text(msg));
    case Z_MEM_ERROR:
        return clvae_fail(err, CLVAE_EXIT_FAILURE, "%s: out of host memory in zlib", f->path);
    default:
        return clvae_fail(err, CLVAE_EXIT_DATA, "%s: corrupt gzip data (%s)", f->path,
                          zlib_text(msg));
    }
}

// Reads up to len bytes, looping over short reads; sets *got to what arrived before the end of
// data.
static int read_fully(struct idx_file *f, uint8_t *buf, size_t len, size_t *got,
                      struct clvae_error *err)
{
    *got = 0;
    while (*got < len) {
        size_t want = len - *got;
        if (want > IDX_READ_MAX)
            want = IDX_READ_MAX;
        int n = gzread(f->gz, buf + *got, (unsigned)want);
        if (n < 0) {
            if (check_gz_error(f, err) != 0)
                return -1;
            return clvae_fail(err, CLVAE_EXIT_DATA, "%s: read error", f->path);
        }
        if (n == 0)
            break;
        *got += (size_t)n;
    }
    // A truncated gzip stream returns short reads with only a pending Z_BUF_ERROR to show for it.
    return check_gz_error(f, err);
}

// Opens path, a regular file (a FIFO or a device is refused without waiting on it), and finds
// out whether it is gzip and how long it is.
static int open_file(const char *path, struct idx_file *f, struct clvae_error *err)
{
    *f = (struct idx_file){.path = path};
    struct stat st;
    const char *why = NULL;
    int fd = regular_file_open(path, &st, &why);
    if (fd < 0)
        return clvae_fail(err, CLVAE_EXIT_DATA, "%s: %s", path, why);
    f->gz = gzdopen(fd, "rb");
    if (!f->gz) {
        close(fd);
        return clvae_fail(err, CLVAE_EXIT_FAILURE, "%s: out of host memory opening the file", path);
    }
    // gzdirect looks at the first bytes (0x1f 0x8b) without consuming them.
    f->gzip = !gzdirect(f->gz);
    if (check_gz_error(f, err) != 0) {
        gzclose(f->gz);
        f->gz = NULL;
        return -1;
    }
    f->fd = fd;
    f->file_size = (uint64_t)st.st_size;
    f->known_size = !f->gzip;
    f->size = f->known_size ? (uint64_t)st.st_size : 0;
    return 0;
}

// Reads and checks the 16-byte header; on success fills the dims and the payload size in bytes.
static int read_header(struct idx_file *f, struct idx_images *out, uint64_t *payload,
                       struct clvae_error *err)
{
    uint8_t h[IDX_HEADER_BYTES];
    size_t got, header = f->header_bytes;
    if (read_fully(f, h, 4, &got, err) != 0)
        return -1;
    if (got == 0)
        return clvae_fail(err, CLVAE_EXIT_DATA, "%s: empty file", f->path);
    if (got < 4)
        return clvae_fail(err, CLVAE_EXIT_DATA, "%s: truncated IDX header (%zu of %zu bytes)",
                          f->path, got, header);
    uint32_t magic = be32(h), want_magic = 0x00000800u | (uint32_t)f->rank;
    if (h[0] != 0 || h[1] != 0)
        return clvae_fail(err, CLVAE_EXIT_DATA,
                          "%s: not an IDX file (magic 0x%08x, expected 0x%08x)", f->path,
                          (unsigned)magic, (unsigned)want_magic);
    if (h[2] != 0x08)
        return clvae_fail(err, CLVAE_EXIT_DATA,
                          "%s: not an unsigned-byte IDX file (magic 0x%08x: data type 0x%02x, "
                          "expected 0x08)",
                          f->path, (unsigned)magic, (unsigned)h[2]);
    if (h[3] != f->rank)
        return clvae_fail(err, CLVAE_EXIT_DATA,
                          "%s: not an IDX %s file (magic 0x%08x: rank %u, expected 0x%08x: "
                          "rank %d)",
                          f->path, f->rank == 3 ? "image" : "label", (unsigned)magic,
                          (unsigned)h[3], (unsigned)want_magic, f->rank);
    if (read_fully(f, h + 4, header - 4, &got, err) != 0)
        return -1;
    if (got < header - 4)
        return clvae_fail(err, CLVAE_EXIT_DATA, "%s: truncated IDX header (%zu of %zu bytes)",
                          f->path, got + 4, header);

    uint32_t count = be32(h + 4);
    uint32_t rows = f->rank == 3 ? be32(h + 8) : 1, cols = f->rank == 3 ? be32(h + 12) : 1;
    if (count == 0 || rows == 0 || cols == 0)
        return clvae_fail(err, CLVAE_EXIT_DATA, "%s: zero dimension in header (%u images of %ux%u)",
                          f->path, (unsigned)count, (unsigned)rows, (unsigned)cols);
    // rows * cols cannot overflow 64 bits; checking it against the limit first keeps the next
    // product from overflowing either.
    uint64_t image = (uint64_t)rows * cols;
    bool too_big = image > IDX_MAX_BYTES || count > IDX_MAX_BYTES / image;
#if SIZE_MAX <= 0xffffffffu
    too_big = too_big || count * image > SIZE_MAX;
#endif
    if (too_big)
        return clvae_fail(err, CLVAE_EXIT_DATA,
                          "%s: header says %u images of %ux%u, over the limit of %llu bytes",
                          f->path, (unsigned)count, (unsigned)rows, (unsigned)cols,
                          (unsigned long long)IDX_MAX_BYTES);
    out->count = count;
    out->rows = rows;
    out->cols = cols;
    *payload = count * image;
    return 0;
}

// Describes what the header promised, for the "truncated" messages.
static int fail_truncated(struct idx_file *f, const struct idx_images *im, uint64_t payload,
                          uint64_t held, struct clvae_error *err)
{
    if (f->rank == 1)
        return clvae_fail(err, CLVAE_EXIT_DATA,
                          "%s: truncated: header says %u labels but the %s holds %llu", f->path,
                          (unsigned)im->count, f->gzip ? "decompressed data" : "file",
                          (unsigned long long)held);
    return clvae_fail(err, CLVAE_EXIT_DATA,
                      "%s: truncated: header says %u images of %ux%u (%llu bytes) but the %s "
                      "holds %llu",
                      f->path, (unsigned)im->count, (unsigned)im->rows, (unsigned)im->cols,
                      (unsigned long long)payload, f->gzip ? "decompressed data" : "file",
                      (unsigned long long)held);
}

// Reads the pixels of a raw regular file, whose length was already checked against the header.
static int read_known(struct idx_file *f, const struct idx_images *im, uint8_t *pixels,
                      uint64_t payload, struct clvae_error *err)
{
    size_t got;
    if (read_fully(f, pixels, (size_t)payload, &got, err) != 0)
        return -1;
    if (got < payload) // the file shrank since it was measured
        return fail_truncated(f, im, payload, got, err);
    return 0;
}

// Reads the pixels of a stream of unknown length, growing the buffer only as data arrives.
static int read_growing(struct idx_file *f, const struct idx_images *im, uint8_t **pixels,
                        uint64_t payload, struct clvae_error *err)
{
    size_t cap = payload < IDX_GZIP_FIRST_CHUNK ? (size_t)payload : IDX_GZIP_FIRST_CHUNK;
    size_t filled = 0;
    uint8_t *buf = malloc(cap);
    if (!buf)
        return clvae_fail(err, CLVAE_EXIT_FAILURE, "%s: out of host memory (%zu bytes)", f->path,
                          cap);
    for (;;) {
        size_t got;
        if (read_fully(f, buf + filled, cap - filled, &got, err) != 0) {
            free(buf);
            return -1;
        }
        filled += got;
        if (filled < cap) {
            free(buf);
            return fail_truncated(f, im, payload, filled, err);
        }
        if (filled == payload)
            break;
        size_t next = cap > payload / 2 ? (size_t)payload : cap * 2;
        uint8_t *grown = realloc(buf, next);
        if (!grown) {
            free(buf);
            return clvae_fail(err, CLVAE_EXIT_FAILURE, "%s: out of host memory (%zu bytes)",
                              f->path, next);
        }
        buf = grown;
        cap = next;
    }
    *pixels = buf;
    return 0;
}

// Reads to the end of the data: refuses anything after the images and lets zlib check the CRC.
static int check_end(struct idx_file *f, struct clvae_error *err)
{
    uint8_t scratch[65536];
    uint64_t extra = 0;
    for (;;) {
        size_t got;
        if (read_fully(f, scratch, sizeof scratch, &got, err) != 0)
            return -1;
        extra += got;
        if (got < sizeof scratch)
            break;
        if (extra > IDX_TRAILING_COUNT_MAX)
            return clvae_fail(err, CLVAE_EXIT_DATA,
                              "%s: more than %llu bytes of trailing data after the images", f->path,
                              (unsigned long long)IDX_TRAILING_COUNT_MAX);
    }
    if (extra > 0)
        return clvae_fail(err, CLVAE_EXIT_DATA, "%s: %llu bytes of trailing data after the images",
                          f->path, (unsigned long long)extra);
    return 0;
}

// For a raw regular file: the file's length against the header's, before anything is allocated.
static int check_raw_length(struct idx_file *f, const struct idx_images *im, uint64_t payload,
                            struct clvae_error *err)
{
    uint64_t held = f->size > f->header_bytes ? f->size - f->header_bytes : 0;
    if (held < payload)
        return fail_truncated(f, im, payload, held, err);
    if (held > payload)
        return clvae_fail(err, CLVAE_EXIT_DATA, "%s: %llu bytes of trailing data after the images",
                          f->path, (unsigned long long)(held - payload));
    return 0;
}

// Deflate never packs more than 1032 bytes into one (zlib's documented limit): a header whose
// payload would need a better ratio than this file allows is lying.
#define DEFLATE_MAX_RATIO 1032

// Whether a gzip file's trailer (ISIZE: the uncompressed length mod 2^32) agrees with the
// header's promise, for a payload that this file could really hold: then the payload can be
// allocated before it is decompressed. Anything else (a multi-member file, a forged trailer) is
// staged as it arrives.
static bool gzip_trailer_agrees(const struct idx_file *f, uint64_t payload)
{
    uint8_t t[4];
    uint64_t total = payload + f->header_bytes;
    if (!f->gzip || f->file_size < 18 || total >= ((uint64_t)1 << 32) ||
        total / DEFLATE_MAX_RATIO > f->file_size ||
        pread(f->fd, t, 4, (off_t)(f->file_size - 4)) != 4)
        return false;
    uint32_t isize =
        (uint32_t)t[0] | (uint32_t)t[1] << 8 | (uint32_t)t[2] << 16 | (uint32_t)t[3] << 24;
    return isize == (uint32_t)(payload + f->header_bytes);
}

// Reads an IDX file of rank 3 (images) or 1 (labels: count x 1 x 1) into dest.
static int read_rank(const char *path, int rank, struct idx_images *out, idx_dest_fn dest,
                     void *ctx, struct clvae_error *err)
{
    *out = (struct idx_images){0};
    struct idx_file f;
    if (open_file(path, &f, err) != 0)
        return -1;
    f.rank = rank;
    f.header_bytes = 4 + 4 * (size_t)rank;
    struct idx_images im = {0};
    uint64_t payload = 0;
    uint8_t *pixels = NULL, *staged = NULL;
    int rc = read_header(&f, &im, &payload, err);
    if (rc == 0 && f.known_size)
        rc = check_raw_length(&f, &im, payload, err);
    if (rc == 0 && (f.known_size || gzip_trailer_agrees(&f, payload))) {
        if (!(pixels = dest(ctx, (size_t)payload, err)))
            rc = -1;
        else
            rc = read_known(&f, &im, pixels, payload, err);
    } else if (rc == 0) {
        // Nothing vouches for the header: read what really arrives, then hand it over.
        rc = read_growing(&f, &im, &staged, payload, err);
        if (rc == 0 && !(pixels = dest(ctx, (size_t)payload, err)))
            rc = -1;
        if (rc == 0)
            memcpy(pixels, staged, (size_t)payload);
        free(staged);
    }
    if (rc == 0)
        rc = check_end(&f, err);
    int close_rc = gzclose(f.gz);
    if (rc == 0 && close_rc != Z_OK)
        rc = clvae_fail(err, CLVAE_EXIT_DATA, "%s: error closing the file (zlib %d)", path,
                        close_rc);
    if (rc != 0)
        return -1;
    im.pixels = pixels;
    *out = im;
    return 0;
}

int idx_read_images_into(const char *path, struct idx_images *out, idx_dest_fn dest, void *ctx,
                         struct clvae_error *err)
{
    return read_rank(path, 3, out, dest, ctx, err);
}

// idx_read_images' destination: host memory of its own (ctx: where to keep the pointer).
static uint8_t *malloc_dest(void *ctx, size_t bytes, struct clvae_error *err)
{
    uint8_t **owned = ctx;
    if (!(*owned = malloc(bytes ? bytes : 1)))
        clvae_fail(err, CLVAE_EXIT_FAILURE, "out of host memory reading an IDX file (%zu bytes)",
                   bytes);
    return *owned;
}

// Reads an IDX3 unsigned-byte image file, gzip or raw, into memory of its own.
int idx_read_images(const char *path, struct idx_images *out, struct clvae_error *err)
{
    uint8_t *owned = NULL;
    if (idx_read_images_into(path, out, malloc_dest, &owned, err) != 0) {
        free(owned);
        return -1;
    }
    return 0;
}

int idx_read_labels(const char *path, struct idx_images *out, struct clvae_error *err)
{
    uint8_t *owned = NULL;
    if (read_rank(path, 1, out, malloc_dest, &owned, err) != 0) {
        free(owned);
        return -1;
    }
    return 0;
}

// Writes dir/name into path, adding a '/' only when dir does not already end with one.
static int join_path(const char *dir, const char *name, char *path, size_t len,
                     struct clvae_error *err)
{
    size_t dl = strlen(dir);
    const char *sep = dl > 0 && dir[dl - 1] == '/' ? "" : "/";
    int n = snprintf(path, len, "%s%s%s", dir, sep, name);
    if (n < 0 || (size_t)n >= len)
        return clvae_fail(err, CLVAE_EXIT_DATA, "%s: path to %s is too long (limit %zu bytes)", dir,
                          name, len > 0 ? len - 1 : 0);
    return 0;
}

// Finds DIR/STEM.gz, else DIR/STEM, and writes the one found into path.
int idx_find(const char *dir, const char *stem, char *path, size_t len, struct clvae_error *err)
{
    struct stat st;
    if (stat(dir, &st) != 0) {
        if (errno == ENOENT)
            return clvae_fail(err, CLVAE_EXIT_DATA, "%s: no such directory", dir);
        return clvae_fail(err, CLVAE_EXIT_DATA, "%s: %s", dir, strerror(errno));
    }
    if (!S_ISDIR(st.st_mode))
        return clvae_fail(err, CLVAE_EXIT_DATA, "%s: not a directory", dir);

    size_t sl = strlen(stem);
    char *gz_name = xmalloc(sl + 4);
    memcpy(gz_name, stem, sl);
    memcpy(gz_name + sl, ".gz", 4);
    const char *names[2] = {gz_name, stem};
    int rc = -1;
    for (int i = 0; i < 2; i++) {
        if (join_path(dir, names[i], path, len, err) != 0)
            break;
        if (stat(path, &st) == 0) {
            // A present but unreadable file is taken anyway: reading it then says why it fails,
            // which beats silently falling back to the other file.
            if (!S_ISDIR(st.st_mode)) {
                rc = 0;
                break;
            }
        } else if (errno != ENOENT && errno != ENOTDIR) {
            clvae_fail(err, CLVAE_EXIT_DATA, "%s: %s", path, strerror(errno));
            break;
        }
        if (i == 1)
            clvae_fail(err, CLVAE_EXIT_DATA, "%s: neither %s nor %s found", dir, gz_name, stem);
    }
    free(gz_name);
    if (rc != 0 && len > 0)
        path[0] = '\0';
    return rc;
}

// Frees the pixels; safe on a zeroed struct and on one already freed.
void idx_free(struct idx_images *images)
{
    if (!images)
        return;
    free(images->pixels);
    *images = (struct idx_images){0};
}
