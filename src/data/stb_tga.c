// stb_image's TGA loader alone (see src/data/stb_format.h).
#define STBI_ONLY_TGA
#define STB_FORMAT stb_tga
#include "stb_format.h"
