// libFuzzer harness for the image folders' BMP, GIF, PNM and TGA readers (stb_image, one copy a
// format: src/data/codec_stb.c): see fuzz_image.h. The input is named input.tga, so that one no
// signature claims is read as a TGA.
#define FUZZ_NAME "input.tga"
#include "fuzz_image.h"
