// libFuzzer harness for clrt_parse_tuning, the reader of the per-device file `clvae tune` writes
// under ~/.cache/clvae and every run reads back. The input is the file's text (up to its first NUL
// byte, as the loader refuses a file holding one), parsed against a fixed key. Every return is
// fine: only crashes and sanitizer reports are findings, and a file the parser accepts must obey
// CLBlast's constraints.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cl_runtime.h"
#include "fuzz_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define KEY "pthread-cpu | OpenCL 3.0 PoCL | driver 3.1 | CLBlast 1.5.3"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = fuzz_text(data, size);
    if (!text)
        return 0;
    struct clrt_gemm_params p;
    size_t min_indirect = 0;
    char why[256] = "";
    if (clrt_parse_tuning(text, KEY, &p, &min_indirect, why) == 0 &&
        !clrt_gemm_params_valid(&p, SIZE_MAX))
        abort(); // accepted parameters CLBlast would refuse
    if (why[0] && strlen(why) >= sizeof why)
        abort();
    free(text);
    return 0;
}
