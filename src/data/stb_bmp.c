// stb_image's BMP loader alone (see src/data/stb_format.h).
#define STBI_ONLY_BMP
#define STB_FORMAT stb_bmp
#include "stb_format.h"
