// One image file decoded to the bytes a data set holds: the formats a folder of pictures holds,
// told apart by their first bytes, each read by a well-kept library, and what every decoded image
// becomes (size, crop, channels, background). Host only, no OpenCL.
//
// Formats (content decides, not the name; a name's extension only chooses which files a folder
// scan takes, and TGA, which has no signature):
// - PNG (89 'PNG' 0d 0a 1a 0a): libpng's progressive reader, as src/data/codec_png.c describes.
// - JPEG (ff d8 ff): libjpeg-turbo; baseline, progressive and multi-scan, grey, YCbCr, RGB, CMYK
//   and YCCK (Adobe's inverted CMYK when the Adobe marker says so, as PIL reads it), converted to
//   RGB as PIL 9 does: R = (255 - K) - (C (255 - K) + 128 + ((C (255 - K) + 128) >> 8)) >> 8.
//   The accurate integer IDCT (JDCT_ISLOW) with fancy upsampling, libjpeg's and PIL's defaults.
//   A file must reach EOI; at most IMAGE_JPEG_MAX_SCANS scans; libjpeg's warnings are ignored.
// - WebP ("RIFF" size "WEBP"): libwebp, lossy and lossless, with alpha; an animation is refused.
// - BMP ("BM"), GIF ("GIF87a", "GIF89a": the first frame), PNM ("P5", "P6": binary greymaps and
//   pixmaps) and TGA (no signature: a file named .tga that nothing else claims): stb_image,
//   compiled in clvae with one format a copy (src/data/stb_*.c), so a file is read as the format
//   its bytes name and no other.
// Every reader checks the header's size against IMAGE_MAX_PIXELS before it allocates anything for
// the image: a 100000x100000 header costs nothing. Errors name the file: "FILE: corrupt JPEG
// (...)", "FILE: truncated WebP (the file ends early)"; a file whose extension names another
// format than its bytes and that does not read says so: "FILE: not a PNG file (its content is a
// GIF: ...)".
//
// Pixels: every image is decoded to 8-bit RGBA (grey replicated, opaque alpha added), resized and
// cropped if asked (below), then composited over the background in 8 bits:
// out = (c a + bg (255 - a) + 127) / 255; one channel is Rec. 601 luma,
// Y = (299 R + 587 G + 114 B + 500) / 1000 (exact for grey pixels).
//
// Size (an image of w x h to fmt's W x H):
// - w x h already: no resampling at all.
// - crop none (--crop none, the default): stretched to W x H by stb_image_resize (its default
//   filter, edges clamped, sRGB colour space, alpha declared so that colour is weighted by it).
// - crop center (--crop center): torchvision's Resize + CenterCrop. The scale is the one that makes
//   the image cover W x H: when W h >= H w the width binds and the image is resized to
//   W x floor(h W / w), else to floor(w H / h) x H (torchvision's int(size * long / short) for a
//   square size); the W x H window then starts at left = round((rw - W) / 2), top =
//   round((rh - H) / 2) of that rw x rh image, rounded half to even as Python's round() (so an odd
//   margin of 5 leaves 2 before and 3 after, of 3 leaves 2 before and 1 after). The window is
//   resampled straight from the source by stb_image_resize's region call (the same filter, scale
//   rw / w and rh / h, shifted by left and top): the pixels of resizing to rw x rh and cropping,
//   without holding the larger image. When rw x rh is w x h it is a copy of the window.
#ifndef CLVAE_IMAGE_DECODE_H
#define CLVAE_IMAGE_DECODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "error.h"

// The largest source image decoded, in pixels (8192 x 8192: 256 MiB as RGBA when resized).
#define IMAGE_MAX_PIXELS ((uint64_t)1 << 26)

// The largest side --image-size accepts.
#define IMAGE_MAX_SIDE 4096

// The largest file read whole into memory (WebP, BMP, GIF, TGA, PNM; PNG and JPEG stream).
#define IMAGE_MAX_FILE_BYTES ((uint64_t)256 << 20)

// The most scans a JPEG may have (a progressive file has about 10; a crafted one with thousands
// makes the decoder redo its work for each).
#define IMAGE_JPEG_MAX_SCANS 256

// What one decoder holds besides the images it resizes (see image_decode_bound): libpng's state,
// zlib's window and a chunk being read, and libpng's row buffers per pixel of a row.
#define IMAGE_DECODE_FIXED_BYTES ((uint64_t)128 << 10)
#define IMAGE_DECODE_ROW_BYTES 32

// The bytes of images being resized (each as RGBA, with its resized copy) that a decoding pass's
// workers hold at once: what the largest source and the largest output need together.
#define IMAGE_DECODE_BUDGET ((size_t)(IMAGE_MAX_PIXELS + IMAGE_MAX_SIDE * IMAGE_MAX_SIDE) * 4)

// How an image of another size than the output's is fitted (see above).
enum image_crop {
    IMAGE_CROP_NONE = 0,   // stretched
    IMAGE_CROP_CENTER = 1, // scaled to cover, the centre kept
};

// The formats, in the order their signatures are tried.
enum image_codec_id {
    IMAGE_PNG,
    IMAGE_JPEG,
    IMAGE_WEBP,
    IMAGE_GIF,
    IMAGE_BMP,
    IMAGE_PNM,
    IMAGE_TGA, // no signature: last
    IMAGE_N_CODECS,
};

// What a decoded image becomes.
struct image_format {
    int channels;          // 1 or 3
    int width, height;     // 1 .. IMAGE_MAX_SIDE; a source of another size is resized
    uint8_t background[3]; // composited under transparent pixels
    int crop;              // enum image_crop
};

// What a file's header says, read without decoding the image.
struct image_header {
    uint32_t width, height;
    bool colour;         // counts as colour for choosing channels (see image_folder.h)
    bool transparency;   // may have transparent pixels
    int codec;           // enum image_codec_id
    uint64_t file_bytes; // the file's size (the input's length from memory)
    uint64_t work_bytes; // what its decoder holds at most besides the rows, for any fmt: JPEG's
                         // coefficients of a multi-scan file, the file read whole and the image
                         // as RGBA (with libwebp's own copy for WebP)
};

// What a PNG's header says: its size, and whether it counts as colour (see image_folder.h;
// background is the one composited under it).
struct image_png_header {
    uint32_t width, height;
    bool colour;       // RGB or RGBA colour type, or a palette with a colour entry
    bool transparency; // an alpha channel or a tRNS chunk
};

// What one decode call held and read, by the reader's own count.
struct image_decode_stats {
    size_t peak_bytes; // the most memory held at once: the reader's allocations and libpng's and
                       // stb_image's (stb_image_resize's working memory, a few rows, libjpeg's and
                       // libwebp's own are not counted)
    size_t held_after; // what was still held when it returned: 0
    size_t bytes_read; // how far into data it read
};

// The crop of an image of w x h to W x H (see above): the size it is scaled to and the window's
// top-left corner in that scaled image (0, 0 for crop none, where it is W x H).
struct image_crop_box {
    uint64_t scaled_width, scaled_height; // up to w x IMAGE_MAX_SIDE for a long thin image
    uint64_t left, top;
};

void image_crop_geometry(uint32_t w, uint32_t h, const struct image_format *fmt,
                         struct image_crop_box *box);

// The format a file's first bytes (n of them; 16 suffice) name, or -1 (TGA is never named).
int image_sniff(const uint8_t *head, size_t n);

// The format a file name's extension (any case) names, or -1: .png; .jpg .jpeg .jpe .jfif;
// .webp; .gif; .bmp; .pgm .ppm .pnm; .tga. The folder scan takes these files.
int image_name_codec(const char *name);

// "PNG", "JPEG", "WebP", "GIF", "BMP", "PNM", "TGA".
const char *image_codec_name(int codec);

// Reads the header of the image file held in data (len bytes); name is what messages call it
// (and, for a TGA, what tells it). Returns 0, or -1 with CLVAE_EXIT_DATA naming it.
int image_read_header(const uint8_t *data, size_t len, const char *name,
                      struct image_header *header, struct clvae_error *err);

// The most memory decoding an image of header h to fmt holds by image_decode's count: the fixed
// part, rows, h's work_bytes, and the image and its resized copy as RGBA where it needs them.
uint64_t image_header_bound(const struct image_header *h, const struct image_format *fmt);

// The part of image_header_bound that grows with the image (what a decoding pass's budget
// governs): 0 for a PNG or a sequential JPEG decoded at fmt's size.
uint64_t image_header_image_bytes(const struct image_header *h, const struct image_format *fmt);

// Decodes the image file in data (len bytes) into out (fmt->height * fmt->width * fmt->channels
// bytes), as image_folder_read decodes each file; stats, when not NULL, says what it cost.
// Returns 0, or -1 with err filled (out may then hold part of the image): CLVAE_EXIT_DATA for the
// file's faults, CLVAE_EXIT_USAGE for a bad fmt, CLVAE_EXIT_FAILURE out of memory.
int image_decode(const uint8_t *data, size_t len, const char *name, const struct image_format *fmt,
                 uint8_t *out, struct image_decode_stats *stats, struct clvae_error *err);

// The same for a file opened for reading (at its start; size bytes long, as fstat says): the
// header, then the image, checked to have the size and format expect says (a file changed
// between the two is an error).
int image_file_header(FILE *fp, uint64_t size, const char *name, struct image_header *header,
                      struct clvae_error *err);
int image_file_decode(FILE *fp, uint64_t size, const char *name, const struct image_header *expect,
                      const struct image_format *fmt, uint8_t *out, struct clvae_error *err);

// The PNG reader alone (tests and fuzz_png): the header, its memory bound at w x h for fmt
// (IMAGE_DECODE_FIXED_BYTES, IMAGE_DECODE_ROW_BYTES a pixel of a row, and when the image is of
// another size than fmt's, the image and its resized copy as RGBA), and the decoding. Errors as
// image_read_header's and image_decode's; a file that is not a PNG is "not a PNG file".
int image_png_header(const uint8_t *data, size_t len, const char *name,
                     struct image_png_header *header, struct clvae_error *err);
uint64_t image_decode_bound(uint32_t width, uint32_t height, const struct image_format *fmt);
int image_decode_png(const uint8_t *data, size_t len, const char *name,
                     const struct image_format *fmt, uint8_t *out, struct image_decode_stats *stats,
                     struct clvae_error *err);

// The decoders' versions, for the decoded-set cache's key: "libpng 1.6.39, libjpeg-turbo 2.1.5,
// libwebp 1.2.4, stb_image 2.27".
void image_decoder_versions(char *buf, size_t len);

#endif
