// A leak of clvae's own, on purpose, in a process that has loaded every OpenCL driver: the
// sanitizer build runs it expecting LeakSanitizer to fail it (meson's should_fail), so that
// tests/lsan.supp can never grow to hide clvae's leaks behind a driver's.
#include <stdio.h>
#include <string.h>

#include "test_util.h"

int main(void)
{
    struct clrt rt;
    tu_open_device(&rt);
    char *lost = xmalloc(4096);
    memset(lost, 1, 4096);
    printf("leak_canary: 4096 bytes from clvae's xmalloc, never freed (%d)\n", lost[7]);
    lost = NULL;
    clrt_close(&rt);
    return 0;
}
