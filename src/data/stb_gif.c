// stb_image's GIF loader alone (see src/data/stb_format.h).
#define STBI_ONLY_GIF
#define STB_FORMAT stb_gif
#include "stb_format.h"
