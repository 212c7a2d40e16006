// Files written whole or not at all: output goes to a temporary file beside the destination,
// which is flushed, fsync'd and renamed over it only once complete; a failure, a crash or a full
// disk leaves the old file (or none) in place, never a partial one.
#ifndef CLVAE_ATOMIC_FILE_H
#define CLVAE_ATOMIC_FILE_H

#include <stdio.h>

#include "error.h"

struct atomic_file {
    FILE *fp;       // write the contents here
    char *path;     // the destination
    char *tmp_path; // "<path>.tmpXXXXXX"
};

// Opens the temporary file for path. Refuses a path that exists and is not a regular file
// (rename would replace a device, even /dev/null as root, with a regular file).
// Errors: CLVAE_EXIT_OUTPUT, "<path>: <reason>".
int atomic_file_open(struct atomic_file *f, const char *path, struct clvae_error *err);

// Flushes, fsyncs, closes, renames over path and fsyncs its directory; on any failure removes the
// temporary file. Errors: CLVAE_EXIT_OUTPUT, "<path>: <reason>".
int atomic_file_commit(struct atomic_file *f, struct clvae_error *err);

// Drops the temporary file (after a failed write); path is left as it was.
void atomic_file_abort(struct atomic_file *f);

#endif
