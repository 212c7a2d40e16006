#include "regular_file.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

int regular_file_open(const char *path, struct stat *st, const char **why)
{
    struct stat own;
    st = st ? st : &own;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        *why = strerror(errno);
        return -1;
    }
    int flags;
    if (fstat(fd, st) != 0) {
        *why = strerror(errno);
    } else if (S_ISDIR(st->st_mode)) {
        *why = strerror(EISDIR);
    } else if (!S_ISREG(st->st_mode)) {
        *why = "not a regular file";
    } else if ((flags = fcntl(fd, F_GETFL)) == -1 ||
               fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) == -1) {
        *why = strerror(errno);
    } else {
        return fd;
    }
    close(fd);
    return -1;
}

FILE *regular_file_fopen(const char *path, const char **why)
{
    int fd = regular_file_open(path, NULL, why);
    if (fd < 0)
        return NULL;
    FILE *fp = fdopen(fd, "rb");
    if (!fp) {
        *why = strerror(errno);
        close(fd);
    }
    return fp;
}
