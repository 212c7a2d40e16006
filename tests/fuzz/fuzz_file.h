// The file a libFuzzer harness hands to a reader that takes a path: one per process, rewritten for
// every input.
#ifndef CLVAE_FUZZ_FILE_H
#define CLVAE_FUZZ_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "error.h"

// Writes size bytes of data to <dir>/name and returns that path. dir is made on the first call
// (under $TMPDIR when set, else /dev/shm, else /tmp) and removed at a normal exit; the file is
// truncated, written and closed each time, so the reader sees a plain regular file. Aborts, with
// the reason, when the file cannot be written: the harness, not the reader, is broken then.
const char *fuzz_write_file(const char *name, const uint8_t *data, size_t size);

// The input as a NUL-terminated copy (free it), for the text readers; NULL when out of memory.
char *fuzz_text(const uint8_t *data, size_t size);

// Reads the n bytes at p in one call that AddressSanitizer checks whole (its memcmp interceptor
// reads both ranges in full): a buffer shorter than a reader promised is reported, at no per-byte
// cost, and without the per-byte coverage callbacks a loop would make.
void fuzz_touch(const void *p, size_t n);

// With FUZZ_VERBOSE=1 in the environment, prints what the reader (named by what) said, "ok" or
// its message, on stderr: for looking at single inputs (./fuzz_idx FILE...), not for fuzzing.
void fuzz_report(const char *what, int rc, const struct clvae_error *err);

#endif
