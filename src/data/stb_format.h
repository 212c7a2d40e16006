// One stb_image format compiled on its own (included by src/data/stb_bmp.c, stb_gif.c, stb_pnm.c
// and stb_tga.c, each defining STBI_ONLY_<format> and STB_FORMAT, the struct stb_format it
// defines): a file is read as the format its bytes name and no other, as stb_image with every
// format in one copy would try each loader in turn. stb_image's allocations go through
// image_codec.h's counted memory (stb_counted_*), its failures are its own thread-local reason,
// and it reads memory through callbacks (stb_source_*, see codec_stb.c). Debian's libstb carries
// stb_image too; this copy is static (STB_IMAGE_STATIC), built with clvae's flags and sanitizers
// and fuzzed with it.
#ifndef STB_FORMAT
#error "define STB_FORMAT and STBI_ONLY_<format> before including stb_format.h"
#endif

#include "image_codec.h"

#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#define STBI_NO_STDIO
#define STBI_NO_LINEAR
#define STBI_NO_HDR
#define STBI_FAILURE_USERMSG
// Beside the header check before decoding (image_check_size: IMAGE_MAX_PIXELS), stb_image's own
// limit on a side, as a second fence.
#define STBI_MAX_DIMENSIONS (1 << 16)
#define STBI_MALLOC(size) stb_counted_malloc(size)
#define STBI_REALLOC(p, size) stb_counted_realloc((p), (size))
#define STBI_FREE(p) stb_counted_free(p)

// stb_image's own code warns of what this file does not use; the warnings of the unused static
// functions come at the end of the file, so they stay off to its end.
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#include <stb_image.h>

static const stbi_io_callbacks io = {
    .read = stb_source_read, .skip = stb_source_skip, .eof = stb_source_eof};

// stb_image's reason is thread-local and kept until the next failure: cleared before each call, so
// that a loader that fails without one does not show an earlier file's.
static int format_info(struct stb_source *src, int *x, int *y, int *comp)
{
    stbi__g_failure_reason = NULL;
    return stbi_info_from_callbacks(&io, src, x, y, comp);
}

static uint8_t *format_load(struct stb_source *src, int *x, int *y)
{
    int comp;
    stbi__g_failure_reason = NULL;
    return stbi_load_from_callbacks(&io, src, x, y, &comp, 4);
}

static const char *format_failure(void)
{
    return stbi_failure_reason();
}

const struct stb_format STB_FORMAT = {
    .info = format_info, .load = format_load, .failure = format_failure};
