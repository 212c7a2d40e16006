// libFuzzer harness for the decoded-set cache's reader (image_cache_read, src/data/image_cache.c):
// the input is a cache file, written to a file and read with the key its own header holds (bytes
// 16 to 31), so that inputs get past the key to the payload; the fuzz build ignores the
// checksums (FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION). Every return is fine: the findings are
// crashes, leaks and sanitizer reports, and a cache taken whose sets do not hold what their
// counts say (every pixel and label is read back) or whose labels are out of range: it aborts
// then.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_file.h"
#include "image_cache.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

// Reads every byte the set claims and checks its labels.
static void check_set(const struct image_set *set, int n_classes)
{
    fuzz_touch(set->pixels, (size_t)set->count * set->height * set->width * set->channels);
    for (uint32_t i = 0; set->labels && i < set->count; i++)
        if (set->labels[i] < 0 || set->labels[i] >= n_classes) {
            fprintf(stderr, "fuzz_cache: label %d of %d classes taken\n", set->labels[i],
                    n_classes);
            abort();
        }
    if (!set->labels && n_classes > 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t key[IMAGE_CACHE_KEY_BYTES] = {0};
    if (size >= 16 + IMAGE_CACHE_KEY_BYTES)
        memcpy(key, data + 16, IMAGE_CACHE_KEY_BYTES);
    const char *path = fuzz_write_file("images.cache", data, size);
    struct image_folder f;
    char *warnings;
    const char *why = "";
    int rc = image_cache_read(path, key, &f, &warnings, &why);
    struct clvae_error err = {.status = rc ? 3 : 0};
    snprintf(err.msg, sizeof err.msg, "%s", rc ? why : "");
    fuzz_report("image_cache_read", rc, &err);
    if (rc == 0) {
        check_set(&f.train, f.n_classes);
        check_set(&f.test, f.n_classes);
        for (int c = 0; c < f.n_classes; c++)
            fuzz_touch(f.class_names[c], strlen(f.class_names[c]) + 1);
        fuzz_touch(warnings, strlen(warnings) + 1);
        free(warnings);
        image_folder_free(&f);
    }
    return 0;
}
