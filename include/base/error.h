// Error reporting shared by every module: a status (the process exit code) and a one-line message.
#ifndef CLVAE_ERROR_H
#define CLVAE_ERROR_H

#include <setjmp.h>
#include <stdbool.h>
#include <stddef.h>

// Exit statuses, documented in README.md ("Exit status").
enum clvae_exit {
    CLVAE_EXIT_OK = 0,
    CLVAE_EXIT_FAILURE = 1,  // an unexpected OpenCL or CLBlast failure, out of host memory
    CLVAE_EXIT_USAGE = 2,    // a bad command line
    CLVAE_EXIT_DATA = 3,     // a missing, unreadable or malformed data file
    CLVAE_EXIT_OUTPUT = 4,   // an output directory or file that cannot be written
    CLVAE_EXIT_DEVICE = 5,   // no OpenCL platform, no such device, a device allocation that fails
    CLVAE_EXIT_DIVERGED = 6, // the loss became NaN or infinite
    CLVAE_EXIT_INTERRUPTED = 130,
};

#define CLVAE_ERROR_MAX 2048 // room for the device table a bad --device lists

// The first failure a call met: what the user sees is "clvae: <msg>".
struct clvae_error {
    int status;
    char msg[CLVAE_ERROR_MAX];
};

// Fills err (if not NULL) with status and a printf-style message, its control characters (a
// newline or escape in a file name) written as C escapes so that it stays one line; always -1.
int clvae_fail(struct clvae_error *err, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

// "<reason>; these exist:" (escaped as clvae_fail's), then listing verbatim on the lines after:
// the device table a bad --device lists, the one message of more than one line.
int clvae_fail_listing(struct clvae_error *err, int status, const char *reason,
                       const char *listing);

// Prints "clvae: <msg>" on stderr.
void clvae_print_error(const struct clvae_error *err);

// A failure that ends the program (an unexpected OpenCL failure, host memory exhausted): with no
// trap set on this thread, prints "clvae: <msg>" on stderr and exits with status; with one
// (clvae_trap_set: libclvae's entry points, src/lib/clvae.c), fills the trap's err as clvae_fail
// would and longjmps to its jump with 1.
_Noreturn void clvae_fatal(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

struct clvae_trap {
    jmp_buf jump;
    struct clvae_error err;
};

// Sets (or with NULL clears) this thread's trap; returns the one it replaces.
struct clvae_trap *clvae_trap_set(struct clvae_trap *trap);

// This thread's quiet flag: set, the engine's own notes on stderr (a kernel build's log, a warning
// that the decoded images are not cached) are left out. Off unless set.
bool clvae_quiet(void);
void clvae_set_quiet(bool quiet);

// Checked host allocation: clvae_fatal with CLVAE_EXIT_FAILURE and the caller's file:line when out
// of memory.
void *clvae_malloc_check(size_t size, const char *file, int line);
void *clvae_calloc_check(size_t count, size_t size, const char *file, int line);
#define xmalloc(size) clvae_malloc_check((size), __FILE__, __LINE__)
#define xcalloc(count, size) clvae_calloc_check((count), (size), __FILE__, __LINE__)

#endif
