// Files clvae reads: opened without blocking (a FIFO would wait for a writer, a tty for a line)
// and checked to be regular files before a byte is read.
#ifndef CLVAE_REGULAR_FILE_H
#define CLVAE_REGULAR_FILE_H

#include <stdio.h>
#include <sys/stat.h>

// Opens path read-only (O_CLOEXEC, blocking again once checked) when it is a regular file: the
// descriptor, with *st filled when st is not NULL; or -1 with *why set to the reason ("not a
// regular file", or strerror's text for a missing file, a directory, no permission).
int regular_file_open(const char *path, struct stat *st, const char **why);

// The same as a stdio stream for reading ("rb"): NULL with *why set on failure.
FILE *regular_file_fopen(const char *path, const char **why);

#endif
