#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

int clvae_fail(struct clvae_error *err, int status, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->status = status;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return -1;
}

void clvae_print_error(const struct clvae_error *err)
{
    fprintf(stderr, "clvae: %s\n", err->msg);
}

void *clvae_malloc_check(size_t size, const char *file, int line)
{
    void *p = malloc(size ? size : 1);
    if (!p) {
        fprintf(stderr, "clvae: out of host memory allocating %zu bytes (%s:%d)\n", size, file, line);
        exit(CLVAE_EXIT_FAILURE);
    }
    return p;
}

void *clvae_calloc_check(size_t count, size_t size, const char *file, int line)
{
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) {
        fprintf(stderr, "clvae: out of host memory allocating %zu x %zu bytes (%s:%d)\n", count, size,
                file, line);
        exit(CLVAE_EXIT_FAILURE);
    }
    return p;
}
