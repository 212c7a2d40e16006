// stb_image's PNM loader alone (see src/data/stb_format.h).
#define STBI_ONLY_PNM
#define STB_FORMAT stb_pnm
#include "stb_format.h"
