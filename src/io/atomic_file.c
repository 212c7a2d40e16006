#include "atomic_file.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

// Frees the names and forgets the file.
static void reset(struct atomic_file *f)
{
    free(f->path);
    free(f->tmp_path);
    f->fp = NULL;
    f->path = f->tmp_path = NULL;
}

int atomic_file_open(struct atomic_file *f, const char *path, struct clvae_error *err)
{
    memset(f, 0, sizeof *f);
    struct stat st;
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode))
        return clvae_fail(err, CLVAE_EXIT_OUTPUT, "%s: %s", path,
                          S_ISDIR(st.st_mode) ? strerror(EISDIR) : "not a regular file");
    size_t len = strlen(path);
    f->path = xmalloc(len + 1);
    memcpy(f->path, path, len + 1);
    f->tmp_path = xmalloc(len + sizeof ".tmpXXXXXX");
    memcpy(f->tmp_path, path, len);
    memcpy(f->tmp_path + len, ".tmpXXXXXX", sizeof ".tmpXXXXXX");
    int fd = mkstemp(f->tmp_path);
    if (fd < 0) {
        int saved = errno;
        reset(f);
        return clvae_fail(err, CLVAE_EXIT_OUTPUT, "%s: %s", path, strerror(saved));
    }
    // mkstemp's 0600 would survive the rename: give the file the mode fopen would have.
    mode_t mask = umask(0);
    umask(mask);
    if (fchmod(fd, 0666 & ~mask) != 0 || !(f->fp = fdopen(fd, "wb"))) {
        int saved = errno;
        close(fd);
        unlink(f->tmp_path);
        reset(f);
        return clvae_fail(err, CLVAE_EXIT_OUTPUT, "%s: %s", path, strerror(saved));
    }
    return 0;
}

// fsync on the directory holding path, so that the rename itself survives a power cut. Some file
// systems cannot sync a directory (EINVAL): nothing more can be done there.
static int sync_parent_dir(const char *path)
{
    char *copy = xmalloc(strlen(path) + 1);
    strcpy(copy, path);
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(copy);
    if (fd < 0)
        return -1;
    int rc = fsync(fd) != 0 && errno != EINVAL ? -1 : 0;
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

int atomic_file_commit(struct atomic_file *f, struct clvae_error *err)
{
    int failed = 0;
    // stdio may still hold the tail of the file: a full disk often shows only at the flush.
    if (fflush(f->fp) != 0 || fsync(fileno(f->fp)) != 0)
        failed = errno;
    if (fclose(f->fp) != 0 && !failed)
        failed = errno;
    f->fp = NULL;
    if (!failed && rename(f->tmp_path, f->path) != 0)
        failed = errno;
    if (failed) {
        unlink(f->tmp_path);
        clvae_fail(err, CLVAE_EXIT_OUTPUT, "%s: %s", f->path, strerror(failed));
        reset(f);
        return -1;
    }
    int status = 0;
    if (sync_parent_dir(f->path) != 0)
        status = clvae_fail(err, CLVAE_EXIT_OUTPUT, "%s: syncing its directory: %s", f->path,
                            strerror(errno));
    reset(f);
    return status;
}

void atomic_file_abort(struct atomic_file *f)
{
    if (f->fp)
        fclose(f->fp);
    if (f->tmp_path)
        unlink(f->tmp_path);
    reset(f);
}
