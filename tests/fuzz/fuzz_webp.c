// libFuzzer harness for the image folders' WebP reader (libwebp, src/data/codec_webp.c): see
// fuzz_image.h.
#define FUZZ_NAME "input.webp"
#include "fuzz_image.h"
