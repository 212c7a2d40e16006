// libFuzzer harness for checkpoint_load: the input is the checkpoint file. Every return of the
// reader is fine: only crashes, leaks and sanitizer reports are findings.
#include <stdint.h>

#include "checkpoint.h"
#include "fuzz_file.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_write_file("model.safetensors", data, size);
    struct ckpt ckpt;
    struct clvae_error err;
    int rc = checkpoint_load(path, &ckpt, &err);
    fuzz_report("checkpoint_load", rc, &err);
    if (rc == 0) {
        // Reading every value lets AddressSanitizer check the arrays hold n_params each.
        size_t bytes = ckpt.n_params * sizeof(float);
        fuzz_touch(ckpt.params, bytes);
        for (int s = 0; s < OPTIMIZER_MAX_STATE; s++)
            if (ckpt.state[s])
                fuzz_touch(ckpt.state[s], bytes);
    }
    checkpoint_free(&ckpt);
    return 0;
}
