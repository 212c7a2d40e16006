#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// text with its control characters written as C escapes (\n, \t, \r, \xNN) into out (len bytes,
// cut short rather than overrun): a file name holding a newline stays on the message's one line.
static void escape_controls(const char *text, char *out, size_t len)
{
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        char one[5] = {(char)*p, '\0'};
        if (*p < 0x20 || *p == 0x7f) {
            const char *named = *p == '\n' ? "\\n" : *p == '\t' ? "\\t" : *p == '\r' ? "\\r" : NULL;
            if (named)
                memcpy(one, named, 3);
            else
                snprintf(one, sizeof one, "\\x%02x", *p);
        }
        size_t n = strlen(one);
        if (o + n >= len)
            break;
        memcpy(out + o, one, n);
        o += n;
    }
    out[o] = '\0';
}

int clvae_fail(struct clvae_error *err, int status, const char *fmt, ...)
{
    if (err) {
        char raw[CLVAE_ERROR_MAX];
        va_list ap;
        va_start(ap, fmt);
        err->status = status;
        vsnprintf(raw, sizeof raw, fmt, ap);
        va_end(ap);
        escape_controls(raw, err->msg, sizeof err->msg);
    }
    return -1;
}

int clvae_fail_listing(struct clvae_error *err, int status, const char *reason, const char *listing)
{
    clvae_fail(err, status, "%s; these exist:", reason);
    if (err) {
        size_t used = strlen(err->msg);
        snprintf(err->msg + used, sizeof err->msg - used, "\n%s", listing);
    }
    return -1;
}

void clvae_print_error(const struct clvae_error *err)
{
    fprintf(stderr, "clvae: %s\n", err->msg);
}

static _Thread_local struct clvae_trap *trap_;
static _Thread_local bool quiet_;

_Noreturn void clvae_fatal(int status, const char *fmt, ...)
{
    char msg[CLVAE_ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (trap_) {
        clvae_fail(&trap_->err, status, "%s", msg);
        longjmp(trap_->jump, 1);
    }
    fprintf(stderr, "clvae: %s\n", msg);
    exit(status);
}

struct clvae_trap *clvae_trap_set(struct clvae_trap *trap)
{
    struct clvae_trap *old = trap_;
    trap_ = trap;
    return old;
}

bool clvae_quiet(void)
{
    return quiet_;
}

void clvae_set_quiet(bool quiet)
{
    quiet_ = quiet;
}

void *clvae_malloc_check(size_t size, const char *file, int line)
{
    void *p = malloc(size ? size : 1);
    if (!p)
        clvae_fatal(CLVAE_EXIT_FAILURE, "out of host memory allocating %zu bytes (%s:%d)", size,
                    file, line);
    return p;
}

void *clvae_calloc_check(size_t count, size_t size, const char *file, int line)
{
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p)
        clvae_fatal(CLVAE_EXIT_FAILURE, "out of host memory allocating %zu x %zu bytes (%s:%d)",
                    count, size, file, line);
    return p;
}
