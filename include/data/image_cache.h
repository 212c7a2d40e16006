// The decoded-set cache of image folders (see include/data/image_folder.h): a folder's decoded
// training and test sets in one file, so that a later run on the same files with the same options
// reads bytes instead of decoding every image again.
//
// The file (little-endian):
//   header, IMAGE_CACHE_HEADER_BYTES: "CLVAEIMG", format version (u32), header size (u32), the key
//     (IMAGE_CACHE_KEY_BYTES), the payload's size (u64) and CRC-32 (u32), zeros, and the CRC-32
//     of the header's bytes before it (u32, the last 4)
//   payload: training and test counts, height, width, channels, classes (u32 each), files skipped
//     (u64), whether the test set is DIR/test (u32), the skip warnings' length (u64); each class
//     name (u32 length, bytes); the skip warnings (text); the labels (i32, training's then test's)
//     when there are classes; training's pixels, then test's.
// A file is taken only whole: the magic, version and header checksum right, the key the caller's,
// the payload exactly the file's rest, every count and size in range and consistent with it
// before anything is allocated by it (so a file allocates at most its own size), every label a
// class, and the payload's checksum right at the end. Anything else is a miss, never an error:
// the caller decodes the folder and writes the cache again. Writes go through atomic_file (whole
// or not at all); reads through regular_file (no FIFO is waited on).
#ifndef CLVAE_IMAGE_CACHE_H
#define CLVAE_IMAGE_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "image_folder.h"

#define IMAGE_CACHE_VERSION 1
#define IMAGE_CACHE_HEADER_BYTES 64
#define IMAGE_CACHE_KEY_BYTES 16
#define IMAGE_CACHE_MAX_NAME 4096 // bytes of a class name

// A 128-bit hash being built (two 64-bit lanes of multiply-rotate mixing over 8-byte words, with
// the length folded in): for telling inputs apart, not against an adversary (the cache is the
// user's own).
struct image_hash {
    uint64_t lane[2];
    uint64_t word, length;
};

void image_hash_init(struct image_hash *h);
void image_hash_bytes(struct image_hash *h, const void *data, size_t n);
void image_hash_u64(struct image_hash *h, uint64_t v);
// s with its length first, so that "ab","c" and "a","bc" differ.
void image_hash_text(struct image_hash *h, const char *s);
void image_hash_final(const struct image_hash *h, uint8_t out[IMAGE_CACHE_KEY_BYTES]);

// The cache folder, $XDG_CACHE_HOME/clvae (else $HOME/.cache/clvae), into buf; -1 when neither
// variable holds an absolute path or it does not fit in len.
int image_cache_dir(char *buf, size_t len);

// The cache file at path into out's sets, classes, skipped and test_folder (out zeroed first) and
// *warnings (malloc'ed, NUL-ended, the skip warnings' lines) when it holds key's data whole and
// checksummed. 0, or -1 with *why saying why it is not used ("no such file", "made for other
// files or options", "damaged: ...") and nothing allocated.
int image_cache_read(const char *path, const uint8_t key[IMAGE_CACHE_KEY_BYTES],
                     struct image_folder *out, char **warnings, const char **why);

// Writes f's sets under key to path, whole or not at all, making its folder (mode 0700) first.
// warnings (NULL: none) are the skip warnings' lines. -1 with CLVAE_EXIT_OUTPUT naming the file
// or folder that cannot be written.
int image_cache_write(const char *path, const uint8_t key[IMAGE_CACHE_KEY_BYTES],
                      const struct image_folder *f, const char *warnings, struct clvae_error *err);

#endif
