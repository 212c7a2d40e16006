// mkdtemp is POSIX, not C11.
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include "fuzz_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[4096];
static char path[4096 + 64];

// Says why the harness cannot go on and stops: a crash libFuzzer reports, with the reason above it.
static void die(const char *what, const char *where)
{
    fprintf(stderr, "fuzz_file: %s %s: %s\n", what, where, strerror(errno));
    abort();
}

// Removes the file and the directory at exit (libFuzzer exits normally after -max_total_time).
static void remove_dir(void)
{
    if (path[0])
        unlink(path);
    if (dir[0])
        rmdir(dir);
}

// A directory of our own: in $TMPDIR when set (run.sh points it into its own directory, which it
// removes even after a crash), else /dev/shm, which keeps the per-input writes off the disk.
static void make_dir(void)
{
    const char *tmpdir = getenv("TMPDIR");
    const char *bases[] = {tmpdir && *tmpdir ? tmpdir : "/dev/shm", "/dev/shm", "/tmp"};
    for (size_t k = 0; k < sizeof bases / sizeof *bases; k++) {
        snprintf(dir, sizeof dir, "%s/clvae-fuzz-XXXXXX", bases[k]);
        if (mkdtemp(dir)) {
            atexit(remove_dir);
            return;
        }
    }
    die("cannot make a directory like", dir);
}

const char *fuzz_write_file(const char *name, const uint8_t *data, size_t size)
{
    if (!dir[0])
        make_dir();
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        die("cannot open", path);
    while (size > 0) {
        ssize_t n = write(fd, data, size);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            die("cannot write", path);
        data += n;
        size -= (size_t)n;
    }
    if (close(fd) != 0)
        die("cannot close", path);
    return path;
}

char *fuzz_text(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (text) {
        memcpy(text, data, size);
        text[size] = '\0';
    }
    return text;
}

void fuzz_touch(const void *p, size_t n)
{
    const void *volatile q = p; // keeps the compiler from folding memcmp(p, p, n) to 0
    if (n > 0 && memcmp(p, q, n) != 0)
        abort();
}

void fuzz_report(const char *what, int rc, const struct clvae_error *err)
{
    static int verbose = -1;
    if (verbose < 0) {
        const char *v = getenv("FUZZ_VERBOSE");
        verbose = v && *v && strcmp(v, "0") != 0;
    }
    if (verbose)
        fprintf(stderr, "fuzz: %s: %s\n", what, rc == 0 ? "ok" : err->msg);
}
