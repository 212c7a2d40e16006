// libFuzzer harness for the image folders' JPEG reader (libjpeg-turbo, src/data/codec_jpeg.c):
// see fuzz_image.h.
#define FUZZ_NAME "input.jpg"
#include "fuzz_image.h"
