// A folder of PNG images as a data set, like PyTorch's ImageFolder: class subfolders are labels,
// a DIR/train and DIR/test pair (or a seeded split) gives the test set. Host only, no OpenCL.
//
// What is read:
// - Every regular file under DIR, recursively, whose name ends in ".png" (any case), with libpng:
//   any bit depth, grey, grey+alpha, palette (with tRNS), RGB, RGBA, 16-bit, interlaced. Other
//   files are ignored. Only the IHDR, PLTE, tRNS, IDAT and IEND chunks are read (any but IDAT
//   over 8 KiB is corrupt); the others are skipped unread (the bytes are taken as stored: gAMA,
//   cHRM, sRGB and iCCP are not applied, and a text chunk claiming gigabytes costs nothing). A file
//   must reach IEND: one cut after its pixels is truncated too. Image data past the last row its
//   header implies (rows x (1 + row bytes), each Adam7 pass's for an interlaced image) is an error
//   ("more image data than its header implies"), met at most one row past the end: nothing more is
//   inflated.
// - Skipped: hidden files and folders (a name starting with '.'); symbolic links, both to files
//   (an alias of another image) and to folders (which could loop); files that are not regular (a
//   FIFO would block; one that becomes a FIFO after the scan is a bad file, opened without
//   blocking). A file reached twice through hard links (one st_dev and st_ino) is read
//   once, where it comes first (training before test, then the order below); a DIR/test holding
//   nothing but links to DIR/train's files is an error.
// - Order: images sorted by class, then by path in byte order (strcmp); the same on every run.
//
// Layout:
// - Class folders: each subfolder of DIR is a class, named by the folder, classes sorted in byte
//   order as ImageFolder sorts them; every PNG anywhere below a class folder has its label. A
//   class folder holding no PNG image is an error naming it (as in ImageFolder).
// - Unlabelled: PNG files directly in DIR and no subfolders: labels NULL, n_classes 0.
// - PNG files directly in DIR beside class folders are an error naming DIR.
// - DIR/train and DIR/test, both real folders (not links): the training set comes from
//   DIR/train, the test set from DIR/test, each laid out as above (anything else in DIR is
//   ignored). Each class folder of DIR/test must name a class of DIR/train (test labels index
//   training's class list), and both are labelled or both are not. With only one of the two, it
//   is an ordinary class folder.
// - Otherwise a seeded split holds out test_split (0 < F < 1) of the images, on the file list,
//   before anything is decoded: the same files on every run with the same seed and files.
//   Labelled: stratified, each class holding out round(F n_class) (halves up) but never all of a
//   class (at most n_class - 1, so a class of one image is training only); unlabelled:
//   round(F n) of all n. The held-out images of a class are the first of a Fisher-Yates shuffle
//   of the class's sorted file list, drawing index i's swap from Philox (philox_block(seed, i,
//   class, IMAGE_FOLDER_STREAM)); unlabelled sets shuffle as class 0. A split leaving no
//   training or no test image is an error giving the count and a --test-split that works.
//
// Pixels:
// - Every image is decoded to 8-bit RGBA (libpng's expand, 16-bit scaled with rounding (scale_16),
//   grey replicated to RGB, opaque alpha added), resized if asked, then composited over the
//   background in 8 bits: out = (c a + bg (255 - a) + 127) / 255.
// - Grey from colour is Rec. 601 luma computed here, Y = (299 R + 587 G + 114 B + 500) / 1000
//   (0.299 R + 0.587 G + 0.114 B rounded halves up; exact for grey pixels), never libpng's
//   rgb_to_gray.
// - channels 0 chooses 3 when any image is colour, else 1. A file counts as colour when its PNG
//   colour type is RGB or RGBA (even if every pixel happens to be grey), when its palette has an
//   entry that is not grey, or when it has transparency (alpha or tRNS) and the background is
//   not grey. Only headers are read to decide, so it is known before any decoding.
// - Size: without width and height, all images must share the first image's size; another size
//   is an error naming the file, both sizes and --image-size. With them, every image of another
//   size is resized with stb_image_resize (its default filter, edge clamp, sRGB colour space),
//   the RGBA image with its alpha channel declared (colour weighted by alpha), before compositing.
//   A source image over IMAGE_MAX_PIXELS is refused.
// - The pixels of both sets together are at most IDX_MAX_BYTES (4 GiB), checked before any
//   pixel memory is allocated.
//
// Reading happens in two passes over the file list: the first reads only each PNG's header (size,
// colour type, palette) to choose the channels and check sizes; the second decodes, with opt->
// threads workers, each image straight into its place in the final pixel buffer, row by row as
// libpng hands them over. Memory: a decoder holds libpng's state and a few rows
// (image_decode_bound); an image to resize also needs itself and its resized copy as RGBA, and
// the workers together hold at most opt->decode_budget of those (or one image over it), however
// many threads there are. With skip_bad a file that fails either pass (unreadable, not a PNG,
// corrupt, truncated) is left out, counted in skipped, and named by one line on stderr after the
// pass ("clvae: warning: FILE: ...; skipped", in file order); without it the first such file in
// order is the error. Nothing else is printed but the progress bar (with opt->progress),
// rewritten at most 10 times a second on one line.
#ifndef CLVAE_IMAGE_FOLDER_H
#define CLVAE_IMAGE_FOLDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"

// The largest source image decoded, in pixels (8192 x 8192: 256 MiB as RGBA when resized).
#define IMAGE_MAX_PIXELS ((uint64_t)1 << 26)

// The largest side --image-size accepts.
#define IMAGE_MAX_SIDE 4096

// What one decoder holds besides the images it resizes (see image_decode_bound): libpng's state,
// zlib's window and a chunk being read, and libpng's row buffers per pixel of a row.
#define IMAGE_DECODE_FIXED_BYTES ((uint64_t)128 << 10)
#define IMAGE_DECODE_ROW_BYTES 32

// The bytes of images being resized (each as RGBA, with its resized copy) that a decoding pass's
// workers hold at once: what the largest source and the largest output need together.
#define IMAGE_DECODE_BUDGET ((size_t)(IMAGE_MAX_PIXELS + IMAGE_MAX_SIDE * IMAGE_MAX_SIDE) * 4)

// The Philox stream (the counter's fourth word) of the train/test split: "SPLT", far from
// philox.h's small stream numbers.
#define IMAGE_FOLDER_STREAM 0x53504c54u

// count images of (height, width, channels) bytes, interleaved, image after image.
struct image_set {
    uint32_t count, height, width, channels; // channels 1 or 3
    uint8_t *pixels;                         // owned: count * height * width * channels
    int32_t *labels; // owned: (count) indices into class_names; NULL when unlabelled
};

struct image_folder_options {
    int channels;           // 1 or 3; 0: chosen from the headers (see above)
    uint8_t background[3];  // RGB composited under transparent pixels (the caller's default white)
    int width, height;      // resize every image to this (--image-size); 0, 0: one size for all
    double test_split;      // fraction held out when there is no DIR/train + DIR/test (0 < F < 1)
    uint64_t seed;          // the split's seed
    bool skip_bad;          // --skip-bad-images: leave out unreadable files, warning and counting
    bool progress;          // a progress bar on stderr (the caller passes isatty(2))
    int threads;            // decoding threads; 0: the host's online cores
    size_t decode_budget;   // bytes of images being resized held at once; 0: IMAGE_DECODE_BUDGET
    const char *empty_hint; // appended to the error for a folder without PNG files; NULL: none
    bool test_only; // the test set alone: training's files are listed (the split needs them) but
                    // their headers and pixels are not read, and out->train holds none
};

struct image_folder {
    struct image_set train, test;
    int n_classes;      // 0: unlabelled
    char **class_names; // owned: n_classes names, in byte order
    uint64_t skipped;   // files left out under skip_bad
    bool test_folder;   // the test set came from DIR/test
};

// Reads the folder dir into out (zeroed first). Returns 0, or -1 with err filled
// (CLVAE_EXIT_DATA for the data's faults, naming the file or folder; CLVAE_EXIT_USAGE for options
// out of range; CLVAE_EXIT_FAILURE when out of host memory) and nothing left allocated.
int image_folder_read(const char *dir, const struct image_folder_options *opt,
                      struct image_folder *out, struct clvae_error *err);

// Frees what image_folder_read allocated and zeroes f; safe on a zeroed struct.
void image_folder_free(struct image_folder *f);

// "WxH" (or "WXH") -> width, height for --image-size: whole numbers from 1 to IMAGE_MAX_SIDE.
// -1 with CLVAE_EXIT_USAGE and a message naming option otherwise.
int image_folder_parse_size(const char *option, const char *text, int *width, int *height,
                            struct clvae_error *err);

// --background: a grey level "0".."255", a colour "R,G,B" (each 0..255) or "#rrggbb" -> rgb.
// -1 with CLVAE_EXIT_USAGE and a message naming option otherwise.
int image_folder_parse_background(const char *option, const char *text, uint8_t rgb[3],
                                  struct clvae_error *err);

// What a PNG's header says: its size, and whether it counts as colour (see above; background is
// the one composited under it).
struct image_png_header {
    uint32_t width, height;
    bool colour;       // RGB or RGBA colour type, or a palette with a colour entry
    bool transparency; // an alpha channel or a tRNS chunk
};

// What a decoded image becomes.
struct image_format {
    int channels;          // 1 or 3
    int width, height;     // 1 .. IMAGE_MAX_SIDE; a source of another size is resized
    uint8_t background[3]; // composited under transparent pixels
};

// Reads the header of the PNG file held in data (len bytes); name is what messages call it.
// Returns 0, or -1 with CLVAE_EXIT_DATA naming it (not a PNG, corrupt, truncated, too large).
int image_png_header(const uint8_t *data, size_t len, const char *name,
                     struct image_png_header *header, struct clvae_error *err);

// What one image_decode_png call held and read, by the reader's own count.
struct image_decode_stats {
    size_t peak_bytes; // the most memory held at once: libpng's allocations and the reader's
                       // (stb_image_resize's working memory, a few rows, is not counted)
    size_t held_after; // what was still held when it returned: 0
    size_t bytes_read; // how far into data it read
};

// The most memory image_decode_png holds for an image of width x height decoded to fmt:
// IMAGE_DECODE_FIXED_BYTES, IMAGE_DECODE_ROW_BYTES a pixel of a row, and when the image is of
// another size than fmt's, the image and its resized copy as RGBA (4 bytes a pixel each).
uint64_t image_decode_bound(uint32_t width, uint32_t height, const struct image_format *fmt);

// Decodes the PNG file in data (len bytes) into out (fmt->height * fmt->width * fmt->channels
// bytes), as image_folder_read decodes each file; stats, when not NULL, says what it cost. Returns
// 0, or -1 with err filled (out may then hold part of the image): CLVAE_EXIT_DATA for the file's
// faults, CLVAE_EXIT_USAGE for a bad fmt, CLVAE_EXIT_FAILURE out of memory.
int image_decode_png(const uint8_t *data, size_t len, const char *name,
                     const struct image_format *fmt, uint8_t *out, struct image_decode_stats *stats,
                     struct clvae_error *err);

#endif
