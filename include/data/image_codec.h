// The image formats' readers (src/data/codec_*.c), each a row of one table, and what they share
// (src/data/image_decode.c): where a file's bytes come from, the memory a read holds, and what
// every decoded image goes through (resizing, cropping, compositing). include/data/image_decode.h
// is the contract the rest of clvae sees; this is the one between the readers and their table.
#ifndef CLVAE_IMAGE_CODEC_H
#define CLVAE_IMAGE_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "error.h"
#include "image_decode.h"

// One read of one file: its bytes (from a FILE or from memory), the memory the read holds by its
// own count, and where its failure goes.
struct image_reader {
    const char *name; // what messages call it
    FILE *fp;         // the source when not NULL, else data
    const uint8_t *data;
    size_t len, pos;   // memory: its length, and how far it was read
    uint64_t size;     // the file's size (len for memory)
    bool ended;        // the source ran out before the reader was done
    int read_errno;    // the FILE's read failed with this
    size_t held, peak; // bytes allocated through image_mem_*: now, and at most
    struct clvae_error *err;
};

// A format's reader. header and decode get their own row, start at the file's first byte and fill
// r->err on failure ("NAME: corrupt JPEG (...)", naming r->name).
struct image_codec {
    const char *name;              // "JPEG", in messages
    const char *const *extensions; // the names the folder scan takes, NULL-ended, lower case
    bool (*sniff)(const uint8_t *head, size_t n); // the signature; NULL: none (TGA)
    // The header: size (checked by image_check_size before anything is allocated for the image),
    // colour, transparency, work_bytes. 0 or -1.
    int (*header)(const struct image_codec *codec, struct image_reader *r, struct image_header *h);
    // The image into out as fmt says, through image_finish or row by row at fmt's size; expect,
    // when not NULL, is what an earlier header read said (image_check_expect). 0 or -1.
    int (*decode)(const struct image_codec *codec, struct image_reader *r,
                  const struct image_header *expect, const struct image_format *fmt, uint8_t *out);
    bool rgba_in_work; // work_bytes holds the image as RGBA (it is decoded whole, at any size)
    void (*version)(char *buf, size_t len); // the library's name and version, for cache keys
    const void *impl;                       // the row's own (stb_image's format)
};

extern const struct image_codec image_codec_png, image_codec_jpeg, image_codec_webp,
    image_codec_gif, image_codec_bmp, image_codec_pnm, image_codec_tga;

// ---- stb_image's formats (src/data/stb_format.h, one copy a format) ----

// Memory read through stb_image's callbacks (stb_source_*), noting when stb_image wanted bytes the
// file does not have: its loaders take a missing byte as 0 and a short read of pixels as done.
struct stb_source {
    const uint8_t *data;
    size_t len, pos;
    bool overrun;
};

int stb_source_read(void *user, char *out, int size);
void stb_source_skip(void *user, int n);
int stb_source_eof(void *user);

// One format's loader: the header (1 when it reads), the image as RGBA (counted; NULL on failure)
// and stb_image's reason for the last failure of this thread.
struct stb_format {
    int (*info)(struct stb_source *src, int *x, int *y, int *comp);
    uint8_t *(*load)(struct stb_source *src, int *x, int *y);
    const char *(*failure)(void);
};

extern const struct stb_format stb_bmp, stb_gif, stb_pnm, stb_tga;

// stb_image's allocator: counted in the reader this thread set (stb_counted_owner), new blocks
// zeroed so that pixels a truncated file never supplied are 0, not stale memory.
void stb_counted_owner(struct image_reader *r);
void *stb_counted_malloc(size_t size);
void *stb_counted_realloc(void *p, size_t size);
void stb_counted_free(void *p);

// ---- The source ----

// Up to n bytes into out; returns how many arrived (fewer at the end or on a read error).
size_t image_source_read(struct image_reader *r, uint8_t *out, size_t n);

// Exactly n bytes into out: 0, or -1 with r->ended or r->read_errno set.
int image_source_need(struct image_reader *r, uint8_t *out, size_t n);

// Skips n bytes: 0, or -1 as image_source_need (a FILE's skip past its end shows at the next read).
int image_source_skip(struct image_reader *r, uint64_t n);

// How far into the source the reader went.
size_t image_source_position(const struct image_reader *r);

// The whole file, from the reader's position at its start: memory's own bytes, or a FILE's read
// into counted memory (free with image_mem_free; *owned says which). Files over
// IMAGE_MAX_FILE_BYTES and files that are not as long as their size are refused. 0 or -1.
int image_read_whole(struct image_reader *r, const char *format, const uint8_t **data, size_t *len,
                     uint8_t **owned);

// The source's failure as r->err: "truncated FORMAT (the file ends early)" or "read error (...)".
int image_fail_source(struct image_reader *r, const char *format);

// errno e's text, thread-safe.
const char *image_errno_text(int e, char *buf, size_t len);

// ---- Counted memory ----

// size bytes counted in r->held and r->peak; NULL when out of memory. image_mem_realloc keeps the
// count too (p NULL: a new block).
void *image_mem_alloc(struct image_reader *r, size_t size);
void *image_mem_realloc(struct image_reader *r, void *p, size_t size);
void image_mem_free(struct image_reader *r, void *p);

// ---- Checks ----

// 0 when w x h is 1x1 to IMAGE_MAX_PIXELS, else -1 naming the file and the limit.
int image_check_size(struct image_reader *r, uint32_t w, uint32_t h);

// 0 when h has expect's size (or expect is NULL), else -1: the file changed while being read.
int image_check_expect(struct image_reader *r, const struct image_header *h,
                       const struct image_header *expect);

// ---- Pixels ----

// Whether an image of w x h is fmt's size (nothing to resize or crop).
bool image_at_size(uint32_t w, uint32_t h, const struct image_format *fmt);

// The image and its resized copy as RGBA (4 bytes a pixel each) when w x h is not fmt's size,
// else 0: what a streaming reader holds to resize.
uint64_t image_resize_bytes(uint32_t w, uint32_t h, const struct image_format *fmt);

// rgba (n pixels, 4) over fmt's background -> every step-th pixel of out (fmt->channels each).
void image_composite(const uint8_t *rgba, size_t n, size_t step, const struct image_format *fmt,
                     uint8_t *out);

// The whole image rgba (w x h, 4) into out as fmt says: composited at its size, else resized or
// cropped (image_decode.h) into counted memory first. 0, or -1 out of memory.
int image_finish(struct image_reader *r, const uint8_t *rgba, uint32_t w, uint32_t h,
                 const struct image_format *fmt, uint8_t *out);

#endif
