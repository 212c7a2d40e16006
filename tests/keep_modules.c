// Linked into every program of a sanitizer build (meson's b_sanitize): dlclose keeps the module
// mapped until the process ends. The OpenCL drivers load and unload modules of their own (Mesa's
// Clover probes gallium-pipe/pipe_swrast.so when the ICD loader opens it, leaks 128 bytes there and
// closes it), and a leak whose code is no longer mapped is reported from "<unknown module>", which
// no suppression can name; whether LeakSanitizer reports it at all then depends on whether a stale
// pointer to the block happens to remain on a stack (so it failed on one machine and passed on
// another). With every module mapped, tests/lsan.supp names the driver's module, and a leak of
// clvae's own still fails (tests/leak_canary.c).
#include <stddef.h>

int dlclose(void *handle);

int dlclose(void *handle)
{
    (void)handle;
    return 0;
}
