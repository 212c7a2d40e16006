// Helpers shared by the C tests (see test_util.h).
#include "test_util.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int tu_checks, tu_failures;
char tu_tmp_dir[TU_PATH_MAX];

static const char *test_name = "test";

// The check tu_begin started: whether it failed, why (its first failure), and its note.
static bool cur_failed;
static char cur_why[1024];
static char cur_note[CLVAE_ERROR_MAX];

void tu_init(const char *name)
{
    test_name = name;
}

bool tu_check(bool ok, const char *fmt, ...)
{
    tu_checks++;
    if (!ok)
        tu_failures++;
    printf("%s", ok ? "" : "FAIL ");
    va_list ap;
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("%s\n", ok ? ": ok" : "");
    return ok;
}

int tu_summary(void)
{
    if (tu_failures) {
        printf("%s: %d of %d checks FAILED\n", test_name, tu_failures, tu_checks);
        return 1;
    }
    printf("%s: %d checks passed\n", test_name, tu_checks);
    return 0;
}

void tu_begin(void)
{
    cur_failed = false;
    cur_why[0] = '\0';
    cur_note[0] = '\0';
}

void tu_expect(int cond, const char *fmt, ...)
{
    if (cond || cur_failed) {
        cur_failed |= !cond;
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cur_why, sizeof cur_why, fmt, ap);
    va_end(ap);
    cur_failed = true;
}

bool tu_failing(void)
{
    return cur_failed;
}

void tu_note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cur_note, sizeof cur_note, fmt, ap);
    va_end(ap);
}

void tu_end(const char *fmt, ...)
{
    char name[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    tu_checks++;
    if (cur_failed) {
        printf("FAIL %s: %s\n", name, cur_why);
        tu_failures++;
    } else {
        printf("ok   %s%s%s\n", name, cur_note[0] ? ": " : "", cur_note);
    }
    fflush(stdout);
}

bool tu_compare(const char *what, const float *got, const double *want, const double *scale,
                size_t n, double atol, double rtol)
{
    double max_abs = 0.0, max_rel = 0.0;
    size_t bad = 0, first_bad = 0;
    for (size_t i = 0; i < n; i++) {
        double g = got[i], w = want[i];
        bool ok;
        if (!isfinite(w)) {
            ok = isnan(w) ? isnan(g) : g == w;
        } else {
            double s = scale ? scale[i] : fabs(w);
            double d = g == w ? 0.0 : fabs(g - w);
            double rel = s > 0.0 ? d / s : (d > 0.0 ? INFINITY : 0.0);
            ok = d <= atol + rtol * s;
            if (!(d <= max_abs))
                max_abs = d;
            if (!(rel <= max_rel))
                max_rel = rel;
        }
        if (!ok && bad++ == 0)
            first_bad = i;
    }
    char tol[64];
    if (rtol == 0.0)
        snprintf(tol, sizeof tol, "tol %g", atol);
    else if (atol == 0.0)
        snprintf(tol, sizeof tol, "tol %g rel", rtol);
    else
        snprintf(tol, sizeof tol, "tol %g + %g rel", atol, rtol);
    tu_checks++;
    if (bad == 0) {
        printf("%s: max abs err %.3g, max rel err %.3g (%s)\n", what, max_abs, max_rel, tol);
        return true;
    }
    tu_failures++;
    printf("FAIL %s: max abs err %.3g, max rel err %.3g (%s); %zu of %zu elements out of "
           "tolerance, first [%zu]: got %.9g, want %.9g\n",
           what, max_abs, max_rel, tol, bad, n, first_bad, (double)got[first_bad], want[first_bad]);
    return false;
}

void tu_fill_guard(float *host, size_t from, size_t to)
{
    for (size_t i = from; i < to; i++)
        host[i] = TU_SENTINEL;
}

int tu_changed(const float *host, size_t from, size_t to)
{
    int changed = 0;
    for (size_t i = from; i < to; i++)
        changed += host[i] != TU_SENTINEL;
    return changed;
}

void *tu_alloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    if (!p) {
        fprintf(stderr, "%s: out of host memory\n", test_name);
        exit(1);
    }
    return p;
}

void tu_die_on(int status, const struct clvae_error *err)
{
    if (status) {
        clvae_print_error(err);
        exit(1);
    }
}

void tu_open_device(struct clrt *rt)
{
    struct clvae_error err;
    tu_die_on(clrt_open(rt, NULL, NULL, false, &err) || clrt_build(rt, &err), &err);
    printf("%s: on %s (%s), matrix products by %s\n", test_name, rt->device_name, rt->platform_name,
           clrt_gemm_engine(rt));
}

cl_mem tu_buffer(struct clrt *rt, size_t bytes, const char *name)
{
    struct clvae_error err;
    cl_mem mem = clrt_buffer(rt, bytes, name, &err);
    tu_die_on(mem == NULL, &err);
    return mem;
}

cl_mem tu_upload(struct clrt *rt, const void *host, size_t bytes, const char *name)
{
    cl_mem mem = tu_buffer(rt, bytes, name);
    if (host)
        tu_write(rt, mem, host, bytes);
    return mem;
}

void tu_write(struct clrt *rt, cl_mem mem, const void *host, size_t bytes)
{
    CL_CHECK(clEnqueueWriteBuffer(rt->queue, mem, CL_TRUE, 0, bytes, host, 0, NULL, NULL));
}

void tu_download(struct clrt *rt, cl_mem mem, void *host, size_t bytes)
{
    CL_CHECK(clEnqueueReadBuffer(rt->queue, mem, CL_TRUE, 0, bytes, host, 0, NULL, NULL));
}

void tu_make_tmp_dir(void)
{
    const char *base = getenv("TMPDIR");
    if (!base || !*base)
        base = "/tmp";
    snprintf(tu_tmp_dir, sizeof tu_tmp_dir, "%s/%s.XXXXXX", base, test_name);
    if (!mkdtemp(tu_tmp_dir)) {
        fprintf(stderr, "%s: mkdtemp %s: %s\n", test_name, tu_tmp_dir, strerror(errno));
        exit(1);
    }
}

// Removes path and, when it is a directory (not a link to one), everything below it.
static int remove_tree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) != 0)
        return -1;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        if (!d)
            return -1;
        struct dirent *e;
        char child[TU_PATH_MAX];
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
                remove_tree(tu_join(child, path, e->d_name));
        }
        closedir(d);
        return rmdir(path);
    }
    return unlink(path);
}

int tu_remove_tmp_dir(void)
{
    if (remove_tree(tu_tmp_dir) != 0) {
        fprintf(stderr, "%s: cannot remove %s: %s\n", test_name, tu_tmp_dir, strerror(errno));
        return -1;
    }
    return 0;
}

const char *tu_join(char *buf, const char *dir, const char *name)
{
    int len = snprintf(buf, TU_PATH_MAX, "%s/%s", dir, name);
    if (len < 0 || len >= TU_PATH_MAX) {
        fprintf(stderr, "%s: path %s/%s is too long\n", test_name, dir, name);
        exit(1);
    }
    return buf;
}

const char *tu_in_tmp(char *buf, const char *name)
{
    return tu_join(buf, tu_tmp_dir, name);
}

bool tu_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

int tu_write_file(const char *path, const void *bytes, size_t len)
{
    FILE *fp = fopen(path, "wb");
    if (!fp)
        return -1;
    bool ok = len == 0 || fwrite(bytes, 1, len, fp) == len;
    return fclose(fp) == 0 && ok ? 0 : -1;
}

int tu_count_tmp_files(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int count = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        count += strstr(e->d_name, ".tmp") != NULL;
    closedir(d);
    return count;
}

void tu_expect_no_tmp(const char *dir)
{
    int count = tu_count_tmp_files(dir);
    tu_expect(count == 0, "%d temporary file(s) left in %s (or unreadable: -1)", count, dir);
}
