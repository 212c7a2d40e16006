// Helpers shared by the C tests: counting checks and the final summary line, checks built from
// several conditions, comparison of device floats with a double reference, guard cells, host and
// device buffers, and a temporary directory removed with everything in it.
#ifndef CLVAE_TEST_UTIL_H
#define CLVAE_TEST_UTIL_H

#include <stdbool.h>
#include <stddef.h>

#include "cl_runtime.h"
#include "error.h"

#define TU_PATH_MAX 4096     // room for a path built by tu_join or tu_in_tmp
#define TU_SENTINEL 12345.5f // what guard cells hold

// Checks counted so far, and how many of them failed.
extern int tu_checks, tu_failures;

// The test's temporary directory, once tu_make_tmp_dir has made it.
extern char tu_tmp_dir[TU_PATH_MAX];

// Names the test ("test_png") in the summary line and in messages of the helpers below.
void tu_init(const char *name);

// Counts one check and prints "<what>: ok", or "FAIL <what>"; returns ok.
bool tu_check(bool ok, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// Prints "<name>: N checks passed" or "<name>: F of N checks FAILED"; returns the exit status.
int tu_summary(void);

// Starts a check made of several tu_expect conditions.
void tu_begin(void);

// Records a failed condition of the current check; only the first is reported.
void tu_expect(int cond, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// Whether a condition of the current check has failed.
bool tu_failing(void);

// A note the current check's line shows after ": " when it passes.
void tu_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

// Ends the current check: prints "ok   <name>[: note]" or "FAIL <name>: <why>" and counts it.
void tu_end(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

// got (n) against want (n): where want is finite, passes when |got - want| <= atol + rtol * scale,
// scale[i] being the element's magnitude (|want[i]| when scale is NULL); where want is NaN or an
// infinity, got must be the same. Prints the largest absolute and relative (to scale) errors of
// the finite elements and the tolerance, and counts one check.
bool tu_compare(const char *what, const float *got, const double *want, const double *scale,
                size_t n, double atol, double rtol);

// Fills host[from .. to) with TU_SENTINEL.
void tu_fill_guard(float *host, size_t from, size_t to);

// How many of host[from .. to) no longer hold TU_SENTINEL.
int tu_changed(const float *host, size_t from, size_t to);

// A zeroed host array of n elements of size bytes; exits if out of memory.
void *tu_alloc(size_t n, size_t size);

// Prints err and exits when status is non-zero.
void tu_die_on(int status, const struct clvae_error *err);

// Opens and builds the default device, printing "<name>: on <device> (<platform>)"; exits on
// failure.
void tu_open_device(struct clrt *rt);

// A device buffer of bytes; exits on failure.
cl_mem tu_buffer(struct clrt *rt, size_t bytes, const char *name);

// A device buffer of bytes holding host's bytes (zeros when host is NULL).
cl_mem tu_upload(struct clrt *rt, const void *host, size_t bytes, const char *name);

// mem's first bytes = host's, blocking.
void tu_write(struct clrt *rt, cl_mem mem, const void *host, size_t bytes);

// host (bytes) = mem's contents, after everything queued so far.
void tu_download(struct clrt *rt, cl_mem mem, void *host, size_t bytes);

// Makes tu_tmp_dir, a fresh $TMPDIR/<name>.XXXXXX (/tmp without TMPDIR); exits on failure.
void tu_make_tmp_dir(void);

// Removes tu_tmp_dir and everything below it; on failure prints why and returns -1.
int tu_remove_tmp_dir(void);

// dir/name into buf (TU_PATH_MAX bytes); a path that does not fit ends the test.
const char *tu_join(char *buf, const char *dir, const char *name);

// tu_tmp_dir/name into buf (TU_PATH_MAX bytes).
const char *tu_in_tmp(char *buf, const char *name);

// Whether path exists at all.
bool tu_exists(const char *path);

// Writes len bytes to path, replacing it; 0 on success.
int tu_write_file(const char *path, const void *bytes, size_t len);

// Counts entries of dir whose name holds ".tmp" (what a failed atomic write could leave); -1
// when dir cannot be read.
int tu_count_tmp_files(const char *dir);

// A condition of the current check: no temporary file is left in dir.
void tu_expect_no_tmp(const char *dir);

#endif
