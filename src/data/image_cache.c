// The decoded-set cache's file (see include/data/image_cache.h): its hash, its folder, and the
// reader and writer of its format.
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include "image_cache.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "atomic_file.h"
#include "regular_file.h"

#define MAGIC "CLVAEIMG"
#define FIXED_BYTES 44       // the payload's counts before the class names
#define MAX_CLASSES 1000000  // classes a cache may list
#define COPY_BYTES (1 << 20) // a piece of pixels read or written at a time

// ---- The hash ----

static uint64_t rotl(uint64_t x, int r)
{
    return (x << r) | (x >> (64 - r));
}

// splitmix64's finaliser: every input bit reaches every output bit.
static uint64_t fmix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static void absorb(struct image_hash *h, uint64_t w)
{
    h->lane[0] = rotl(h->lane[0] ^ fmix(w ^ 0x9e3779b97f4a7c15ull), 29) * 0x9fb21c651e98df25ull +
                 0x243f6a8885a308d3ull;
    h->lane[1] = (rotl(h->lane[1] + fmix(w + 0x13198a2e03707344ull), 31) * 0xc2b2ae3d27d4eb4full) ^
                 0xa4093822299f31d0ull;
}

void image_hash_init(struct image_hash *h)
{
    *h = (struct image_hash){.lane = {0x082efa98ec4e6c89ull, 0x452821e638d01377ull}};
}

void image_hash_bytes(struct image_hash *h, const void *data, size_t n)
{
    const uint8_t *p = data;
    for (size_t i = 0; i < n; i++) {
        h->word |= (uint64_t)p[i] << (8 * (h->length % 8));
        if (++h->length % 8 == 0) {
            absorb(h, h->word);
            h->word = 0;
        }
    }
}

void image_hash_u64(struct image_hash *h, uint64_t v)
{
    uint8_t b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    image_hash_bytes(h, b, sizeof b);
}

void image_hash_text(struct image_hash *h, const char *s)
{
    size_t n = strlen(s);
    image_hash_u64(h, n);
    image_hash_bytes(h, s, n);
}

void image_hash_final(const struct image_hash *h, uint8_t out[IMAGE_CACHE_KEY_BYTES])
{
    struct image_hash t = *h;
    absorb(&t, t.word ^ (t.length << 3));
    uint64_t a = fmix(t.lane[0] ^ rotl(t.lane[1], 17) ^ t.length),
             b = fmix(t.lane[1] + rotl(t.lane[0], 41) + 0x9e3779b97f4a7c15ull * t.length);
    for (int i = 0; i < 8; i++) {
        out[i] = (uint8_t)(a >> (8 * i));
        out[8 + i] = (uint8_t)(b >> (8 * i));
    }
}

// ---- The folder ----

int image_cache_dir(char *buf, size_t len)
{
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    int n;
    if (xdg && xdg[0] == '/')
        n = snprintf(buf, len, "%s/clvae", xdg);
    else if (home && home[0] == '/')
        n = snprintf(buf, len, "%s/.cache/clvae", home);
    else
        return -1;
    return n < 0 || (size_t)n >= len ? -1 : 0;
}

// Makes the folders above path (mkdir -p of its directory), each new one mode 0700.
static int make_parents(const char *path, struct clvae_error *err)
{
    char buf[IMAGE_FOLDER_CACHE_PATH];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return clvae_fail(err, CLVAE_EXIT_OUTPUT, "%s: path too long", path);
    for (char *p = buf + 1; (p = strchr(p, '/')) != NULL; p++) {
        *p = '\0';
        if (mkdir(buf, 0700) != 0 && errno != EEXIST)
            return clvae_fail(err, CLVAE_EXIT_OUTPUT, "%s: %s", buf, strerror(errno));
        *p = '/';
    }
    return 0;
}

// ---- Little-endian fields ----

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
    return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

// The checksums are ignored in the fuzz build only, so that mutated files reach the parser.
static bool checksum_ok(uint32_t want, uint32_t got)
{
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
    (void)want;
    (void)got;
    return true;
#else
    return want == got;
#endif
}

// ---- Reading ----

// The payload being read: what is left of it and its running CRC-32.
struct source {
    FILE *fp;
    uint64_t left;
    uLong crc;
    const char *why; // the first reason it went wrong
};

// n bytes of the payload into out; false (why set) past its end or on a read error.
static bool take(struct source *s, void *out, size_t n)
{
    if (s->why)
        return false;
    if (n > s->left) {
        s->why = "damaged: the payload is shorter than its counts say";
        return false;
    }
    if (fread(out, 1, n, s->fp) != n) {
        s->why = "damaged: it ends early";
        return false;
    }
    s->left -= n;
    s->crc = crc32_z(s->crc, out, n);
    return true;
}

// Whether n items of size bytes fit in what is left of the payload.
static bool fits(struct source *s, uint64_t n, uint64_t size)
{
    if (s->why || (size && n > s->left / size)) {
        s->why = s->why ? s->why : "damaged: a count larger than the file";
        return false;
    }
    return true;
}

// The header of fp: magic, version, its checksum, the key, and the payload's size against the
// file's (size bytes); *crc the payload's CRC-32.
static const char *read_header(FILE *fp, uint64_t size, const uint8_t key[IMAGE_CACHE_KEY_BYTES],
                               uint64_t *payload, uint32_t *crc)
{
    uint8_t h[IMAGE_CACHE_HEADER_BYTES];
    if (size < sizeof h || fread(h, 1, sizeof h, fp) != sizeof h)
        return "damaged: shorter than its header";
    if (memcmp(h, MAGIC, 8) != 0)
        return "not a clvae image cache";
    if (get32(h + 8) != IMAGE_CACHE_VERSION || get32(h + 12) != sizeof h)
        return "written by another version of clvae";
    if (!checksum_ok(get32(h + 60), (uint32_t)crc32_z(0, h, 60)))
        return "damaged: its header's checksum is wrong";
    if (memcmp(h + 16, key, IMAGE_CACHE_KEY_BYTES) != 0)
        return "made for other files or options";
    *payload = get64(h + 32);
    *crc = get32(h + 40);
    if (*payload != size - sizeof h)
        return "damaged: not as long as its header says";
    return NULL;
}

// A set's pixels (count images of image bytes), read in pieces.
static bool read_pixels(struct source *s, struct image_set *set, uint64_t image)
{
    uint64_t bytes = (uint64_t)set->count * image;
    if (!fits(s, bytes, 1))
        return false;
    set->pixels = malloc(bytes ? (size_t)bytes : 1);
    if (!set->pixels) {
        s->why = "out of host memory for its pixels";
        return false;
    }
    for (uint64_t at = 0; at < bytes; at += COPY_BYTES)
        if (!take(s, set->pixels + at, bytes - at < COPY_BYTES ? (size_t)(bytes - at) : COPY_BYTES))
            return false;
    return true;
}

// A set's labels, each a class.
static bool read_labels(struct source *s, struct image_set *set, int n_classes)
{
    if (n_classes == 0)
        return true;
    if (!fits(s, set->count, 4))
        return false;
    set->labels = malloc(set->count ? (size_t)set->count * sizeof *set->labels : 1);
    if (!set->labels) {
        s->why = "out of host memory for its labels";
        return false;
    }
    for (uint32_t i = 0; i < set->count; i++) {
        uint8_t b[4];
        if (!take(s, b, 4))
            return false;
        set->labels[i] = (int32_t)get32(b);
        if (set->labels[i] < 0 || set->labels[i] >= n_classes) {
            s->why = "damaged: a label out of range";
            return false;
        }
    }
    return true;
}

// The class names: each 1 to IMAGE_CACHE_MAX_NAME bytes without a NUL.
static bool read_classes(struct source *s, struct image_folder *out, uint32_t n)
{
    if (n > MAX_CLASSES || !fits(s, n, 5)) {
        s->why = s->why ? s->why : "damaged: too many classes";
        return false;
    }
    out->class_names = calloc(n ? n : 1, sizeof *out->class_names);
    if (!out->class_names) {
        s->why = "out of host memory for its class names";
        return false;
    }
    out->n_classes = (int)n;
    for (uint32_t k = 0; k < n; k++) {
        uint8_t b[4];
        if (!take(s, b, 4))
            return false;
        uint32_t len = get32(b);
        if (len == 0 || len > IMAGE_CACHE_MAX_NAME || !fits(s, len, 1)) {
            s->why = s->why ? s->why : "damaged: a class name's length";
            return false;
        }
        char *name = malloc(len + 1);
        out->class_names[k] = name;
        if (!name || !take(s, name, len)) {
            s->why = s->why ? s->why : "out of host memory for its class names";
            return false;
        }
        name[len] = '\0';
        if (strlen(name) != len) {
            s->why = "damaged: a class name holds a NUL";
            return false;
        }
    }
    return true;
}

// The payload after the header into out and *warnings.
static void read_payload(struct source *s, struct image_folder *out, char **warnings)
{
    uint8_t f[FIXED_BYTES];
    if (!take(s, f, sizeof f))
        return;
    uint32_t n_train = get32(f), n_test = get32(f + 4), height = get32(f + 8),
             width = get32(f + 12), channels = get32(f + 16), n_classes = get32(f + 20);
    uint64_t warn_len = get64(f + 36);
    out->skipped = get64(f + 24);
    out->test_folder = get32(f + 32) != 0;
    if (n_train == 0 || n_test == 0 || height == 0 || height > IMAGE_MAX_SIDE || width == 0 ||
        width > IMAGE_MAX_SIDE || (channels != 1 && channels != 3) || get32(f + 32) > 1) {
        s->why = "damaged: its sizes are out of range";
        return;
    }
    for (int k = 0; k < 2; k++)
        *(k ? &out->test : &out->train) = (struct image_set){
            .count = k ? n_test : n_train, .height = height, .width = width, .channels = channels};
    if (!read_classes(s, out, n_classes) || !fits(s, warn_len, 1))
        return;
    *warnings = malloc((size_t)warn_len + 1);
    if (!*warnings) {
        s->why = "out of host memory for its warnings";
        return;
    }
    (*warnings)[warn_len] = '\0';
    uint64_t image = (uint64_t)height * width * channels;
    if (take(s, *warnings, (size_t)warn_len) && read_labels(s, &out->train, out->n_classes) &&
        read_labels(s, &out->test, out->n_classes) && read_pixels(s, &out->train, image) &&
        read_pixels(s, &out->test, image) && s->left != 0)
        s->why = "damaged: longer than its counts say";
}

int image_cache_read(const char *path, const uint8_t key[IMAGE_CACHE_KEY_BYTES],
                     struct image_folder *out, char **warnings, const char **why)
{
    struct stat st;
    *out = (struct image_folder){0};
    *warnings = NULL;
    int fd = regular_file_open(path, &st, why);
    FILE *fp = fd >= 0 ? fdopen(fd, "rb") : NULL;
    if (!fp) {
        if (fd >= 0) {
            *why = strerror(errno);
            close(fd);
        }
        return -1;
    }
    uint64_t payload = 0;
    uint32_t crc = 0;
    struct source s = {.fp = fp};
    s.why = read_header(fp, (uint64_t)st.st_size, key, &payload, &crc);
    if (!s.why) {
        s.left = payload;
        s.crc = crc32_z(0, NULL, 0);
        read_payload(&s, out, warnings);
    }
    if (!s.why && !checksum_ok(crc, (uint32_t)s.crc))
        s.why = "damaged: its checksum is wrong";
    fclose(fp);
    if (!s.why)
        return 0;
    *why = s.why;
    image_folder_free(out);
    free(*warnings);
    *warnings = NULL;
    return -1;
}

// ---- Writing ----

// The payload being written: its running CRC-32 and size.
struct sink {
    FILE *fp;
    uLong crc;
    uint64_t bytes;
    bool failed;
};

static void put(struct sink *k, const void *data, size_t n)
{
    if (k->failed || n == 0)
        return;
    k->failed = fwrite(data, 1, n, k->fp) != n;
    k->crc = crc32_z(k->crc, data, n);
    k->bytes += n;
}

static void put_labels(struct sink *k, const struct image_set *set)
{
    uint8_t b[4];
    for (uint32_t i = 0; set->labels && i < set->count; i++) {
        put32(b, (uint32_t)set->labels[i]);
        put(k, b, 4);
    }
}

static void write_payload(struct sink *k, const struct image_folder *f, const char *warnings)
{
    uint8_t fixed[FIXED_BYTES];
    size_t warn_len = warnings ? strlen(warnings) : 0;
    put32(fixed, f->train.count);
    put32(fixed + 4, f->test.count);
    put32(fixed + 8, f->train.height);
    put32(fixed + 12, f->train.width);
    put32(fixed + 16, f->train.channels);
    put32(fixed + 20, (uint32_t)f->n_classes);
    put64(fixed + 24, f->skipped);
    put32(fixed + 32, f->test_folder ? 1 : 0);
    put64(fixed + 36, warn_len);
    put(k, fixed, sizeof fixed);
    for (int c = 0; c < f->n_classes; c++) {
        uint8_t b[4];
        put32(b, (uint32_t)strlen(f->class_names[c]));
        put(k, b, 4);
        put(k, f->class_names[c], strlen(f->class_names[c]));
    }
    put(k, warnings, warn_len);
    put_labels(k, &f->train);
    put_labels(k, &f->test);
    size_t image = (size_t)f->train.height * f->train.width * f->train.channels;
    for (int s = 0; s < 2; s++) {
        const struct image_set *set = s ? &f->test : &f->train;
        size_t bytes = (size_t)set->count * image;
        for (size_t at = 0; at < bytes; at += COPY_BYTES)
            put(k, set->pixels + at, bytes - at < COPY_BYTES ? bytes - at : COPY_BYTES);
    }
}

int image_cache_write(const char *path, const uint8_t key[IMAGE_CACHE_KEY_BYTES],
                      const struct image_folder *f, const char *warnings, struct clvae_error *err)
{
    struct atomic_file af;
    if (make_parents(path, err) != 0 || atomic_file_open(&af, path, err) != 0)
        return -1;
    uint8_t h[IMAGE_CACHE_HEADER_BYTES] = {0};
    struct sink k = {.fp = af.fp, .crc = crc32_z(0, NULL, 0)};
    k.failed = fwrite(h, 1, sizeof h, af.fp) != sizeof h;
    write_payload(&k, f, warnings);
    memcpy(h, MAGIC, 8);
    put32(h + 8, IMAGE_CACHE_VERSION);
    put32(h + 12, sizeof h);
    memcpy(h + 16, key, IMAGE_CACHE_KEY_BYTES);
    put64(h + 32, k.bytes);
    put32(h + 40, (uint32_t)k.crc);
    put32(h + 60, (uint32_t)crc32_z(0, h, 60));
    if (k.failed || fseeko(af.fp, 0, SEEK_SET) != 0 || fwrite(h, 1, sizeof h, af.fp) != sizeof h) {
        int e = errno;
        atomic_file_abort(&af);
        return clvae_fail(err, CLVAE_EXIT_OUTPUT, "%s: %s", path, strerror(e ? e : EIO));
    }
    return atomic_file_commit(&af, err);
}
