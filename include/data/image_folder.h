// A folder of images as a data set, like PyTorch's ImageFolder: class subfolders are labels, a
// DIR/train and DIR/test pair (or a seeded split) gives the test set. Host only, no OpenCL.
//
// What is read:
// - Every regular file under DIR, recursively, whose name ends in an image extension (any case):
//   .png; .jpg .jpeg .jpe .jfif; .webp; .gif; .bmp; .pgm .ppm .pnm; .tga. Other files are
//   ignored. Each is read as the format its bytes name, whatever its extension, by the readers of
//   include/data/image_decode.h (PNG by libpng, JPEG by libjpeg-turbo, WebP by libwebp, BMP, GIF's
//   first frame, PNM and TGA by stb_image); formats mix freely in one folder.
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
//   order as ImageFolder sorts them; every image anywhere below a class folder has its label. A
//   class folder holding no image is an error naming it (as in ImageFolder).
// - Unlabelled: image files directly in DIR and no subfolders: labels NULL, n_classes 0.
// - Image files directly in DIR beside class folders are an error naming DIR.
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
// Pixels (see include/data/image_decode.h for the decoding, resizing, cropping and compositing):
// - channels 0 chooses 3 when any image is colour, else 1. A file counts as colour when its
//   header says so (a PNG of colour type RGB or RGBA, even if every pixel happens to be grey, or
//   with a palette entry that is not grey; a JPEG of three or four components; every WebP and
//   GIF; a BMP, TGA or PNM of three or four channels), or when it may be transparent and the
//   background is not grey. Only headers are read to decide, so it is known before any decoding.
// - Size: without width and height, all images must share the first image's size; another size
//   is an error naming the file, both sizes and --image-size. With them, every image of another
//   size is resized (crop none) or scaled and centre-cropped (crop center) to width x height.
//   A source image over IMAGE_MAX_PIXELS is refused.
// - The pixels of both sets together are at most IDX_MAX_BYTES (4 GiB), checked before any
//   pixel memory is allocated.
//
// Reading happens in two passes over the file list: the first reads only each file's header (size,
// colour) to choose the channels and check sizes; the second decodes, with opt->threads workers,
// each image straight into its place in the final pixel buffer (PNG and sequential JPEG row by
// row). Memory: a decoder holds its library's state and a few rows (image_header_bound); what
// grows with the image (an image to resize and its resized copy as RGBA, a progressive JPEG's
// coefficients, a file read whole) counts against opt->decode_budget, which the workers together
// stay within (or one image over it alone), however many threads there are. With skip_bad a file
// that fails either pass (unreadable, no known image, corrupt, truncated) is left out, counted in
// skipped, and named by one line on stderr after the pass ("clvae: warning: FILE: ...; skipped",
// in file order); without it the first such file in order is the error. Nothing else is printed
// but the progress bar (with opt->progress), rewritten at most 10 times a second on one line.
//
// The decoded-set cache (opt->cache; include/data/image_cache.h): the sets read, their labels,
// class names and skip warnings are kept in a file under $XDG_CACHE_HOME/clvae/ (else
// ~/.cache/clvae/) named by DIR's real path and the options that change pixels; its header holds a
// hash of everything the sets depend on (every file's path, size, modification time and inode,
// its set and label, the options, clvae's and the decoders' versions) and a checksum of the rest.
// A later read of the same folder lists the files (no file is opened) and, when the cache's key
// and checksum agree, takes the sets from it (out->from_cache; the skip warnings printed again)
// instead of both passes. A cache that is missing, stale, damaged or for other options is read
// as no cache: the folder is decoded and the cache written again, whole or not at all (a failure
// to write it is one warning line, and the read goes on). test_only reads never use it.
#ifndef CLVAE_IMAGE_FOLDER_H
#define CLVAE_IMAGE_FOLDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "error.h"
#include "image_decode.h"

// The Philox stream (the counter's fourth word) of the train/test split: "SPLT", far from
// philox.h's small stream numbers.
#define IMAGE_FOLDER_STREAM 0x53504c54u

// The longest cache path image_folder_read reports.
#define IMAGE_FOLDER_CACHE_PATH 4200

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
    int crop;               // enum image_crop: how an image of another size fits (--crop)
    double test_split;      // fraction held out when there is no DIR/train + DIR/test (0 < F < 1)
    uint64_t seed;          // the split's seed
    bool skip_bad;          // --skip-bad-images: leave out unreadable files, warning and counting
    bool progress;          // a progress bar on stderr (the caller passes isatty(2))
    bool cache;             // use and keep the decoded-set cache (see above; --no-cache clears it)
    int threads;            // decoding threads; 0: the host's online cores
    size_t decode_budget;   // bytes of images being resized held at once; 0: IMAGE_DECODE_BUDGET
    const char *empty_hint; // appended to the error for a folder without images; NULL: none
    bool test_only; // the test set alone: training's files are listed (the split needs them) but
                    // their headers and pixels are not read, and out->train holds none
};

struct image_folder {
    struct image_set train, test;
    int n_classes;      // 0: unlabelled
    char **class_names; // owned: n_classes names, in byte order
    uint64_t skipped;   // files left out under skip_bad
    bool test_folder;   // the test set came from DIR/test
    bool from_cache;    // the sets came from the cache at cache_path
    bool cache_written; // they were decoded and written to the cache at cache_path
    char cache_path[IMAGE_FOLDER_CACHE_PATH]; // "" when there is no cache
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

// --crop: "none" or "center" (also "centre") -> enum image_crop; -1 with CLVAE_EXIT_USAGE
// otherwise. image_folder_crop_name gives the name back ("none", "center").
int image_folder_parse_crop(const char *option, const char *text, int *crop,
                            struct clvae_error *err);
const char *image_folder_crop_name(int crop);

#endif
