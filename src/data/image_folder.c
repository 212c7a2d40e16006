// A folder of images as a data set (see include/data/image_folder.h for the rules): the file list,
// the train/test split, the decoded-set cache, and the two passes that read headers and then
// decode in parallel (each file by include/data/image_decode.h's readers).
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#define _XOPEN_SOURCE 700 // realpath

#include "image_folder.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "idx.h"
#include "image_cache.h"
#include "philox.h"
#include "regular_file.h"

#define PATH_BYTES 4096        // the longest path built, with its NUL
#define MAX_THREADS 256        // workers of a pass, whatever the host has
#define PROGRESS_NS 100000000L // the progress bar's period: 10 updates a second
#define PROGRESS_WIDTH 30      // characters between the brackets
#define VERSION_BYTES 512      // the decoders' versions, for the cache's key

// The image extensions the scan takes besides .png, for messages.
#define IMAGE_NAMES ".jpg, .jpeg, .jpe, .jfif, .webp, .gif, .bmp, .pgm, .ppm, .pnm, .tga"

enum { SET_TRAIN = 0, SET_TEST = 1 };

// ---- The file list ----

// NUL-terminated strings one after another, addressed by offset: the block moves as it grows.
struct arena {
    char *text;
    size_t len, cap;
};

// One image file of the data set.
struct entry {
    size_t name;                   // its path's offset in the scan's names
    const char *path;              // the path, once the names have stopped growing
    uint64_t dev, ino;             // its file's identity, for hard links
    uint64_t size;                 // its size and modification time as the scan saw them
    int64_t mtime_sec, mtime_nsec; // (the cache's key)
    int32_t label;                 // class index (training's list), -1 unlabelled
    struct image_header header;    // from the header pass
    uint8_t set;                   // SET_TRAIN or SET_TEST
    bool linked;                   // st_nlink > 1: another path may reach the same file
    bool bad;
};

// What the scan of DIR has found so far.
struct scan {
    const char *dir;
    struct arena names;   // the files' paths
    struct arena folders; // folders still to list, a stack: the last pushed ends the text
    size_t *pending;      // their offsets in folders
    size_t n_pending, pending_cap;
    struct entry *files;
    size_t n, cap;
    char **classes; // training's class names, in byte order
    int n_classes;
    bool test_folder; // DIR/train + DIR/test
    uint64_t skipped;
    const char *empty_hint; // opt->empty_hint
    char *warnings;         // the skip warnings printed, for the cache (malloc'ed, NUL-ended)
    size_t warnings_len;
};

static int out_of_memory(const char *what, struct clvae_error *err)
{
    return clvae_fail(err, CLVAE_EXIT_FAILURE, "out of host memory for %s", what);
}

// block, grown if it holds fewer than bytes (*cap says how many it holds); NULL when out of
// memory, block unchanged then.
static void *reserve(void *block, size_t *cap, size_t bytes)
{
    if (block && bytes <= *cap)
        return block;
    if (bytes == 0)
        bytes = 1;
    void *grown = realloc(block, bytes);
    if (grown)
        *cap = bytes;
    return grown;
}

// Appends s to a with its NUL; *off is where it starts.
static int arena_add(struct arena *a, const char *s, size_t *off, struct clvae_error *err)
{
    size_t n = strlen(s) + 1;
    if (a->len + n > a->cap) {
        size_t cap = a->cap ? a->cap : 1 << 16;
        while (cap < a->len + n)
            cap *= 2;
        char *text = reserve(a->text, &a->cap, cap);
        if (!text)
            return out_of_memory("the list of file names", err);
        a->text = text;
    }
    memcpy(a->text + a->len, s, n);
    *off = a->len;
    a->len += n;
    return 0;
}

// array, of *cap elements of size bytes, with room for element n: doubled when it has none.
// NULL when out of memory, array unchanged then.
static void *grow(void *array, size_t *cap, size_t n, size_t size)
{
    if (array && n < *cap)
        return array;
    size_t want = *cap ? *cap * 2 : 1024;
    void *grown = realloc(array, want * size);
    if (grown)
        *cap = want;
    return grown;
}

// dir/name into buf (PATH_BYTES); one slash between them even when dir ends in one.
static int join(char *buf, const char *dir, const char *name, struct clvae_error *err)
{
    size_t n = strlen(dir);
    const char *sep = n > 0 && dir[n - 1] == '/' ? "" : "/";
    int len = snprintf(buf, PATH_BYTES, "%s%s%s", dir, sep, name);
    if (len < 0 || len >= PATH_BYTES)
        return clvae_fail(err, CLVAE_EXIT_DATA, "%s/%s: path too long", dir, name);
    return 0;
}

// Adds the image file at path (lstat'ed as st) to the list.
static int add_file(struct scan *s, const char *path, const struct stat *st, int32_t label,
                    uint8_t set, struct clvae_error *err)
{
    if (s->n >= UINT32_MAX)
        return clvae_fail(err, CLVAE_EXIT_DATA, "%s: more than %u image files", s->dir,
                          (unsigned)UINT32_MAX);
    struct entry *files = grow(s->files, &s->cap, s->n, sizeof *files);
    if (!files)
        return out_of_memory("the list of files", err);
    s->files = files;
    struct entry *e = &s->files[s->n];
    *e = (struct entry){.dev = (uint64_t)st->st_dev,
                        .ino = (uint64_t)st->st_ino,
                        .size = (uint64_t)st->st_size,
                        .mtime_sec = (int64_t)st->st_mtim.tv_sec,
                        .mtime_nsec = (int64_t)st->st_mtim.tv_nsec,
                        .label = label,
                        .set = set,
                        .linked = st->st_nlink > 1};
    if (arena_add(&s->names, path, &e->name, err) != 0)
        return -1;
    s->n++;
    return 0;
}

// Pushes the folder path on the stack of folders to list.
static int push_folder(struct scan *s, const char *path, struct clvae_error *err)
{
    size_t *pending = grow(s->pending, &s->pending_cap, s->n_pending, sizeof *pending);
    if (!pending)
        return out_of_memory("the list of folders", err);
    s->pending = pending;
    size_t off = 0;
    if (arena_add(&s->folders, path, &off, err) != 0)
        return -1;
    s->pending[s->n_pending++] = off;
    return 0;
}

// Pops the last folder pushed into buf (PATH_BYTES).
static void pop_folder(struct scan *s, char *buf)
{
    size_t off = s->pending[--s->n_pending];
    memcpy(buf, s->folders.text + off, s->folders.len - off);
    s->folders.len = off;
}

// What one entry of a folder is, by lstat: links, hidden names and special files are skipped.
enum kind { KIND_SKIP, KIND_FOLDER, KIND_IMAGE };

// The kind of folder/name, with path (PATH_BYTES) set to the joined path and st to its lstat.
static int entry_kind(const char *folder, const char *name, char *path, struct stat *st,
                      enum kind *kind, struct clvae_error *err)
{
    *kind = KIND_SKIP;
    if (name[0] == '.')
        return 0;
    if (join(path, folder, name, err) != 0)
        return -1;
    if (lstat(path, st) != 0)
        return clvae_fail(err, CLVAE_EXIT_DATA, "%s: %s", path, strerror(errno));
    if (S_ISDIR(st->st_mode))
        *kind = KIND_FOLDER;
    else if (S_ISREG(st->st_mode) && image_name_codec(name) >= 0)
        *kind = KIND_IMAGE;
    return 0;
}

// Calls visit(s, path, st, kind, ctx) on every entry of folder that is not skipped.
typedef int (*visit_fn)(struct scan *s, const char *path, const struct stat *st, enum kind kind,
                        void *ctx, struct clvae_error *err);

static int list_folder(struct scan *s, const char *folder, visit_fn visit, void *ctx,
                       struct clvae_error *err)
{
    DIR *d = opendir(folder);
    if (!d)
        return clvae_fail(err, CLVAE_EXIT_DATA, "%s: %s", folder, strerror(errno));
    int rc = 0;
    char path[PATH_BYTES];
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (!de) {
            if (errno != 0)
                rc = clvae_fail(err, CLVAE_EXIT_DATA, "%s: %s", folder, strerror(errno));
            break;
        }
        struct stat st;
        enum kind kind;
        rc = entry_kind(folder, de->d_name, path, &st, &kind, err);
        if (rc == 0 && kind != KIND_SKIP)
            rc = visit(s, path, &st, kind, ctx, err);
        if (rc != 0)
            break;
    }
    closedir(d);
    return rc;
}

// Where the files of a walk go.
struct walk {
    int32_t label;
    uint8_t set;
};

// A walk's visitor: folders go on the stack, image files into the list.
static int walk_visit(struct scan *s, const char *path, const struct stat *st, enum kind kind,
                      void *ctx, struct clvae_error *err)
{
    const struct walk *w = ctx;
    if (kind == KIND_FOLDER)
        return push_folder(s, path, err);
    return add_file(s, path, st, w->label, w->set, err);
}

// Adds every image below folder, at any depth, with label and set. The stack keeps one folder open
// at a time, so depth costs no file descriptors.
static int walk_tree(struct scan *s, const char *folder, int32_t label, uint8_t set,
                     struct clvae_error *err)
{
    struct walk w = {.label = label, .set = set};
    char path[PATH_BYTES];
    if (push_folder(s, folder, err) != 0)
        return -1;
    while (s->n_pending > 0) {
        pop_folder(s, path);
        if (list_folder(s, path, walk_visit, &w, err) != 0)
            return -1;
    }
    return 0;
}

// ---- The layout: class folders, loose files, DIR/train and DIR/test ----

// A root's immediate contents: its class folders' names and how many images lie loose in it.
struct root {
    const char *path;
    uint8_t set;
    char **classes;
    size_t n_classes, classes_cap;
    size_t loose; // loose files, already in the list as unlabelled
    size_t first; // the list's length before the root
};

static void root_free(struct root *r)
{
    for (size_t i = 0; i < r->n_classes; i++)
        free(r->classes[i]);
    free(r->classes);
    r->classes = NULL;
    r->n_classes = 0;
}

// A root's visitor: subfolders are classes, image files are loose (unlabelled until proven not).
static int root_visit(struct scan *s, const char *path, const struct stat *st, enum kind kind,
                      void *ctx, struct clvae_error *err)
{
    struct root *r = ctx;
    if (kind == KIND_IMAGE) {
        r->loose++;
        return add_file(s, path, st, -1, r->set, err);
    }
    char **classes = grow(r->classes, &r->classes_cap, r->n_classes, sizeof *classes);
    if (!classes)
        return out_of_memory("class names", err);
    r->classes = classes;
    const char *slash = strrchr(path, '/');
    r->classes[r->n_classes] = strdup(slash ? slash + 1 : path);
    if (!r->classes[r->n_classes])
        return out_of_memory("class names", err);
    r->n_classes++;
    return 0;
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

// The label of the test root's class name: its index in training's classes, or an error.
static int test_label(struct scan *s, const struct root *r, const char *name, int32_t *label,
                      struct clvae_error *err)
{
    char *const *hit = s->n_classes == 0 ? NULL
                                         : bsearch(&name, s->classes, (size_t)s->n_classes,
                                                   sizeof *s->classes, compare_names);
    if (!hit)
        return clvae_fail(err, CLVAE_EXIT_DATA,
                          "%s/%s: no such class in the training folder (each test class folder "
                          "must be named as one of the training set's)",
                          r->path, name);
    *label = (int32_t)(hit - s->classes);
    return 0;
}

// Walks every class folder of the root; each must hold at least one image.
static int walk_classes(struct scan *s, struct root *r, struct clvae_error *err)
{
    char path[PATH_BYTES];
    size_t *counts = xcalloc(r->n_classes, sizeof *counts);
    int rc = 0;
    for (size_t k = 0; k < r->n_classes && rc == 0; k++) {
        int32_t label = (int32_t)k;
        size_t before = s->n;
        rc = r->set == SET_TEST ? test_label(s, r, r->classes[k], &label, err) : 0;
        if (rc == 0)
            rc = join(path, r->path, r->classes[k], err);
        if (rc == 0)
            rc = walk_tree(s, path, label, r->set, err);
        counts[k] = s->n - before;
    }
    for (size_t k = 0; k < r->n_classes && rc == 0; k++)
        if (counts[k] == 0 && s->n > r->first)
            rc = clvae_fail(err, CLVAE_EXIT_DATA,
                            "%s/%s: a class folder with no .png or other images (every "
                            "subfolder of %s is a class: remove it or add images)",
                            r->path, r->classes[k], r->path);
    free(counts);
    return rc;
}

// The labels the root's layout says: loose files beside class folders, or a test layout unlike
// training's, are errors.
static int check_root_layout(struct scan *s, const struct root *r, struct clvae_error *err)
{
    if (r->n_classes > 0 && r->loose > 0)
        return clvae_fail(err, CLVAE_EXIT_DATA,
                          "%s: %zu image file%s beside class folders; move %s into a class "
                          "folder, or use no subfolders for an unlabelled set",
                          r->path, r->loose, r->loose == 1 ? " lies" : "s lie",
                          r->loose == 1 ? "it" : "them");
    if (r->set == SET_TEST && (r->n_classes > 0) != (s->n_classes > 0))
        return clvae_fail(err, CLVAE_EXIT_DATA,
                          "%s: the test images %s class folders but the training images %s",
                          r->path, r->n_classes > 0 ? "are in" : "are not in",
                          s->n_classes > 0 ? "are" : "are not");
    return 0;
}

// Lists one root (DIR, DIR/train or DIR/test) into the scan, as the header's layout says.
static int scan_root(struct scan *s, const char *path, uint8_t set, struct clvae_error *err)
{
    struct root r = {.path = path, .set = set, .first = s->n};
    int rc = list_folder(s, path, root_visit, &r, err);
    if (rc == 0 && r.n_classes > 1)
        qsort(r.classes, r.n_classes, sizeof *r.classes, compare_names);
    if (rc == 0)
        rc = check_root_layout(s, &r, err);
    if (rc == 0)
        rc = walk_classes(s, &r, err);
    if (rc == 0 && s->n == r.first)
        rc = clvae_fail(err, CLVAE_EXIT_DATA,
                        "%s: no .png files under this folder, nor other images (" IMAGE_NAMES
                        "; hidden files and symbolic links are skipped)%s",
                        path, s->empty_hint ? s->empty_hint : "");
    if (rc == 0 && set == SET_TRAIN) {
        s->classes = r.classes;
        s->n_classes = (int)r.n_classes;
        r.classes = NULL;
        r.n_classes = 0;
    }
    root_free(&r);
    return rc;
}

// Whether dir/name is a folder itself (not a link to one).
static bool is_real_folder(const char *dir, const char *name)
{
    char path[PATH_BYTES];
    struct stat st;
    return join(path, dir, name, NULL) == 0 && lstat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

// Lists DIR: DIR/train and DIR/test when both are folders, else DIR itself.
static int scan_layout(struct scan *s, const char *dir, struct clvae_error *err)
{
    struct stat st;
    if (stat(dir, &st) != 0)
        return clvae_fail(err, CLVAE_EXIT_DATA, "%s: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return clvae_fail(err, CLVAE_EXIT_DATA, "%s: not a directory", dir);
    s->dir = dir;
    s->test_folder = is_real_folder(dir, "train") && is_real_folder(dir, "test");
    if (!s->test_folder)
        return scan_root(s, dir, SET_TRAIN, err);
    char path[PATH_BYTES];
    if (join(path, dir, "train", err) != 0 || scan_root(s, path, SET_TRAIN, err) != 0)
        return -1;
    return join(path, dir, "test", err) == 0 ? scan_root(s, path, SET_TEST, err) : -1;
}

// ---- Order, hard links, the split ----

// How many entries of the (sorted) list are training images.
static size_t count_train(const struct scan *s)
{
    size_t n = 0;
    while (n < s->n && s->files[n].set == SET_TRAIN)
        n++;
    return n;
}

// Training before test, then by class, then by path in byte order.
static int compare_entries(const void *pa, const void *pb)
{
    const struct entry *a = pa, *b = pb;
    if (a->set != b->set)
        return a->set < b->set ? -1 : 1;
    if (a->label != b->label)
        return a->label < b->label ? -1 : 1;
    return strcmp(a->path, b->path);
}

static void sort_entries(struct scan *s)
{
    qsort(s->files, s->n, sizeof *s->files, compare_entries);
}

// Gives every entry its path, now that the names no longer move, and sorts the list.
static void settle(struct scan *s)
{
    for (size_t i = 0; i < s->n; i++)
        s->files[i].path = s->names.text + s->files[i].name;
    sort_entries(s);
}

// Keeps the entries not marked bad, in order.
static void drop_bad(struct scan *s)
{
    size_t kept = 0;
    for (size_t i = 0; i < s->n; i++)
        if (!s->files[i].bad)
            s->files[kept++] = s->files[i];
    s->n = kept;
}

// Hard-linked entries by file identity, then by position in the list.
static int compare_links(const void *pa, const void *pb)
{
    const struct entry *const *a = pa, *const *b = pb;
    if ((*a)->dev != (*b)->dev)
        return (*a)->dev < (*b)->dev ? -1 : 1;
    if ((*a)->ino != (*b)->ino)
        return (*a)->ino < (*b)->ino ? -1 : 1;
    return *a < *b ? -1 : *a > *b;
}

// Leaves one entry per file among those with several links: the first in the sorted list.
static void drop_hard_links(struct scan *s)
{
    size_t n = 0;
    for (size_t i = 0; i < s->n; i++)
        n += s->files[i].linked;
    if (n < 2)
        return;
    struct entry **linked = xmalloc(n * sizeof *linked);
    n = 0;
    for (size_t i = 0; i < s->n; i++)
        if (s->files[i].linked)
            linked[n++] = &s->files[i];
    qsort(linked, n, sizeof *linked, compare_links);
    for (size_t i = 1; i < n; i++)
        linked[i]->bad =
            linked[i]->dev == linked[i - 1]->dev && linked[i]->ino == linked[i - 1]->ino;
    free(linked);
    drop_bad(s);
}

// How many of a class's n images a split of f holds out: round(f n), halves up; a labelled class
// keeps at least one training image.
static size_t held_out(double f, size_t n, bool labelled)
{
    size_t hold = (size_t)floor(f * (double)n + 0.5);
    if (labelled && hold >= n)
        hold = n - 1;
    return hold;
}

// The end of the class that starts at entry b.
static size_t class_end(const struct scan *s, size_t b)
{
    size_t e = b + 1;
    while (e < s->n && s->files[e].label == s->files[b].label)
        e++;
    return e;
}

// How many test images a split of f makes.
static size_t split_total(const struct scan *s, double f)
{
    size_t total = 0;
    for (size_t b = 0, e; b < s->n; b = e) {
        e = class_end(s, b);
        total += held_out(f, e - b, s->n_classes > 0);
    }
    return total;
}

// A --test-split that leaves both sets non-empty, or a negative number if none of a few does.
static double working_split(const struct scan *s)
{
    const double tries[] = {0.1, 0.2, 0.3, 0.5};
    for (size_t i = 0; i < sizeof tries / sizeof *tries; i++) {
        size_t hold = split_total(s, tries[i]);
        if (hold > 0 && hold < s->n)
            return tries[i];
    }
    return -1;
}

// The error of a split that leaves one of the sets empty.
static int fail_split(const struct scan *s, double f, size_t hold, struct clvae_error *err)
{
    double good = working_split(s);
    if (good < 0)
        return clvae_fail(err, CLVAE_EXIT_DATA,
                          "%s: %zu images cannot be split into training and test images (each "
                          "class keeps one for training); add images, or DIR/train and DIR/test "
                          "folders",
                          s->dir, s->n);
    return clvae_fail(err, CLVAE_EXIT_DATA,
                      "%s: a --test-split of %g leaves no %s image of the %zu; try --test-split "
                      "%g, or give DIR/train and DIR/test folders",
                      s->dir, f, hold == 0 ? "test" : "training", s->n, good);
}

// Marks the first hold of a seeded Fisher-Yates shuffle of entries [b, b + n) as test images.
static void hold_out(struct scan *s, size_t b, size_t n, size_t hold, uint64_t seed, uint64_t cls,
                     uint32_t *perm)
{
    for (size_t i = 0; i < n; i++)
        perm[i] = (uint32_t)i;
    for (size_t i = n - 1; i > 0; i--) {
        uint32_t r[4];
        philox_block(seed, (uint32_t)i, cls, IMAGE_FOLDER_STREAM, r);
        size_t j = (size_t)((((uint64_t)r[0] << 32) | r[1]) % (i + 1));
        uint32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    for (size_t k = 0; k < hold; k++)
        s->files[b + perm[k]].set = SET_TEST;
}

// The seeded split of the (training) list: stratified by class, then sorted again.
static int split(struct scan *s, const struct image_folder_options *opt, struct clvae_error *err)
{
    size_t hold = split_total(s, opt->test_split);
    if (hold == 0 || hold >= s->n)
        return fail_split(s, opt->test_split, hold, err);
    uint32_t *perm = xmalloc(s->n * sizeof *perm);
    for (size_t b = 0, e; b < s->n; b = e) {
        e = class_end(s, b);
        hold_out(s, b, e - b, held_out(opt->test_split, e - b, s->n_classes > 0), opt->seed,
                 s->n_classes > 0 ? (uint64_t)s->files[b].label : 0, perm);
    }
    free(perm);
    sort_entries(s);
    return 0;
}

// ---- The parallel passes ----

// One file a pass could not read: its message only, as a million of them may be skipped.
struct failure {
    struct failure *next;
    size_t index;
    int status;
    char msg[];
};

// A pass over the list: work on every entry, by workers that each take the next index.
struct pass {
    const char *verb, *noun; // the progress bar's words: "decoding 12/34 images"
    int (*work)(struct pass *p, size_t i, struct clvae_error *err);
    struct scan *scan;
    const struct image_format *fmt; // decoding: what each image becomes
    uint8_t *pixels[2];             // decoding: the sets' pixel buffers
    size_t n_train;                 // decoding: where the test set starts in the list
    size_t budget;                  // decoding: what take_memory lets the workers hold
    bool skip_bad;
    atomic_size_t next, done;
    atomic_int running;
    atomic_bool stop;
    pthread_mutex_t lock; // guards failures and held
    pthread_cond_t freed; // signalled when held goes down
    struct failure *failures;
    size_t held; // decoding: the bytes of images being resized that the workers hold
};

// Keeps a failure; stops the pass unless it is a file that skip_bad leaves out.
static void record_failure(struct pass *p, size_t i, const struct clvae_error *err)
{
    size_t len = strlen(err->msg) + 1;
    struct failure *f = xmalloc(sizeof *f + len);
    f->index = i;
    f->status = err->status;
    memcpy(f->msg, err->msg, len);
    pthread_mutex_lock(&p->lock);
    f->next = p->failures;
    p->failures = f;
    if (!p->skip_bad || err->status != CLVAE_EXIT_DATA)
        atomic_store(&p->stop, true);
    pthread_mutex_unlock(&p->lock);
}

// A worker: takes indices in order until none is left or the pass stops.
static void *worker(void *arg)
{
    struct pass *p = arg;
    struct clvae_error err;
    while (!atomic_load(&p->stop)) {
        size_t i = atomic_fetch_add(&p->next, 1);
        if (i >= p->scan->n)
            break;
        if (p->work(p, i, &err) != 0)
            record_failure(p, i, &err);
        atomic_fetch_add(&p->done, 1);
    }
    atomic_fetch_sub(&p->running, 1);
    return NULL;
}

// "\r<verb> done/n <noun> [=====     ]", and a newline when the pass has ended.
static void draw_progress(const struct pass *p, size_t done, bool end)
{
    char bar[PROGRESS_WIDTH + 1];
    size_t n = p->scan->n, filled = n ? done * PROGRESS_WIDTH / n : PROGRESS_WIDTH;
    memset(bar, '=', filled);
    memset(bar + filled, ' ', PROGRESS_WIDTH - filled);
    bar[PROGRESS_WIDTH] = '\0';
    fprintf(stderr, "\r%s %zu/%zu %s [%s]%s", p->verb, done, n, p->noun, bar, end ? "\n" : "");
    fflush(stderr);
}

// Redraws the bar every PROGRESS_NS until every worker has returned.
static void show_progress(struct pass *p)
{
    size_t shown = (size_t)-1;
    const struct timespec period = {.tv_sec = 0, .tv_nsec = PROGRESS_NS};
    while (atomic_load(&p->running) > 0) {
        size_t done = atomic_load(&p->done);
        if (done != shown)
            draw_progress(p, done, false);
        shown = done;
        nanosleep(&period, NULL);
    }
    draw_progress(p, atomic_load(&p->done), true);
}

// The workers a pass starts: opt->threads, or the online cores, at most one per file.
static int thread_count(const struct image_folder_options *opt, size_t n)
{
    long t = opt->threads > 0 ? opt->threads : sysconf(_SC_NPROCESSORS_ONLN);
    if (t < 1)
        t = 1;
    if (t > MAX_THREADS)
        t = MAX_THREADS;
    return (size_t)t > n ? (int)n : (int)t;
}

// Runs the pass's workers (on this thread when none can be started) and waits for them.
static void run_workers(struct pass *p, const struct image_folder_options *opt)
{
    int want = thread_count(opt, p->scan->n);
    pthread_t threads[MAX_THREADS];
    int started = 0;
    atomic_store(&p->running, want);
    while (started < want && pthread_create(&threads[started], NULL, worker, p) == 0)
        started++;
    atomic_fetch_sub(&p->running, want - started);
    if (started == 0) {
        atomic_store(&p->running, 1);
        worker(p);
    }
    if (opt->progress)
        show_progress(p);
    for (int i = 0; i < started; i++)
        pthread_join(threads[i], NULL);
}

static int compare_failures(const void *pa, const void *pb)
{
    const struct failure *const *a = pa, *const *b = pb;
    return (*a)->index < (*b)->index ? -1 : (*a)->index > (*b)->index;
}

// The failures, recorded as the workers met them -> an array in file order.
static struct failure **sorted_failures(struct failure *list, size_t *n)
{
    *n = 0;
    for (struct failure *f = list; f; f = f->next)
        (*n)++;
    struct failure **all = xmalloc((*n ? *n : 1) * sizeof *all);
    size_t i = 0;
    for (struct failure *f = list; f; f = f->next)
        all[i++] = f;
    qsort(all, *n, sizeof *all, compare_failures);
    return all;
}

// Appends a skip warning's line to the scan's (what a cache hit prints again).
static void keep_warning(struct scan *s, const char *line)
{
    size_t n = strlen(line);
    char *grown = realloc(s->warnings, s->warnings_len + n + 1);
    if (!grown)
        return; // the cache then lacks a line: not worth failing the read for
    memcpy(grown + s->warnings_len, line, n + 1);
    s->warnings = grown;
    s->warnings_len += n;
}

// After the workers: the first fatal failure in file order is the pass's error; under skip_bad
// the files that failed are marked bad, counted and named on stderr, one line each.
static int settle_failures(struct pass *p, struct clvae_error *err)
{
    size_t n;
    struct failure **all = sorted_failures(p->failures, &n);
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++)
        if (!p->skip_bad || all[i]->status != CLVAE_EXIT_DATA)
            rc = clvae_fail(err, all[i]->status, "%s", all[i]->msg);
    for (size_t i = 0; i < n; i++) {
        if (rc == 0) {
            p->scan->files[all[i]->index].bad = true;
            p->scan->skipped++;
            char line[CLVAE_ERROR_MAX + 64];
            snprintf(line, sizeof line, "clvae: warning: %s; skipped\n", all[i]->msg);
            fputs(line, stderr);
            keep_warning(p->scan, line);
        }
        free(all[i]);
    }
    free(all);
    p->failures = NULL;
    return rc;
}

// Runs work over the list; 0, or -1 with the first failure (in file order) that stops it.
static int run_pass(struct pass *p, const struct image_folder_options *opt, struct clvae_error *err)
{
    atomic_init(&p->next, 0);
    atomic_init(&p->done, 0);
    atomic_init(&p->running, 0);
    atomic_init(&p->stop, false);
    p->skip_bad = opt->skip_bad;
    p->failures = NULL;
    p->held = 0;
    if (pthread_mutex_init(&p->lock, NULL) != 0)
        return clvae_fail(err, CLVAE_EXIT_FAILURE, "cannot create a mutex");
    if (pthread_cond_init(&p->freed, NULL) != 0) {
        pthread_mutex_destroy(&p->lock);
        return clvae_fail(err, CLVAE_EXIT_FAILURE, "cannot create a condition variable");
    }
    run_workers(p, opt);
    pthread_cond_destroy(&p->freed);
    pthread_mutex_destroy(&p->lock);
    return settle_failures(p, err);
}

// Waits until bytes more fit in the pass's budget beside what the other workers hold (one image
// over it waits until they hold nothing), then counts them held.
static void take_memory(struct pass *p, size_t bytes)
{
    if (bytes == 0)
        return;
    pthread_mutex_lock(&p->lock);
    while (p->held > 0 && p->held + bytes > p->budget)
        pthread_cond_wait(&p->freed, &p->lock);
    p->held += bytes;
    pthread_mutex_unlock(&p->lock);
}

static void give_memory(struct pass *p, size_t bytes)
{
    if (bytes == 0)
        return;
    pthread_mutex_lock(&p->lock);
    p->held -= bytes;
    pthread_cond_broadcast(&p->freed);
    pthread_mutex_unlock(&p->lock);
}

// Opens entry i's file: a regular file, opened without blocking (a FIFO put there since the scan
// would wait for a writer); *size its size now.
static FILE *open_entry(const struct entry *e, uint64_t *size, struct clvae_error *err)
{
    const char *why = NULL;
    struct stat st;
    int fd = regular_file_open(e->path, &st, &why);
    FILE *fp = fd >= 0 ? fdopen(fd, "rb") : NULL;
    if (!fp && fd >= 0) {
        why = strerror(errno);
        close(fd);
    }
    if (!fp) {
        clvae_fail(err, CLVAE_EXIT_DATA, "%s: %s", e->path, why);
        return NULL;
    }
    *size = (uint64_t)st.st_size;
    return fp;
}

// The header pass's work: entry i's size, colour and format.
static int header_work(struct pass *p, size_t i, struct clvae_error *err)
{
    struct entry *e = &p->scan->files[i];
    uint64_t size;
    FILE *fp = open_entry(e, &size, err);
    if (!fp)
        return -1;
    int rc = image_file_header(fp, size, e->path, &e->header, err);
    fclose(fp);
    return rc;
}

// The decoding pass's work: entry i's pixels, straight into its slot of its set; what grows with
// the image waits for room in the pass's budget.
static int decode_work(struct pass *p, size_t i, struct clvae_error *err)
{
    const struct entry *e = &p->scan->files[i];
    const struct image_format *fmt = p->fmt;
    size_t bytes = (size_t)fmt->width * fmt->height * fmt->channels;
    uint8_t *slot = e->set == SET_TRAIN ? p->pixels[SET_TRAIN] + i * bytes
                                        : p->pixels[SET_TEST] + (i - p->n_train) * bytes;
    uint64_t want = image_header_image_bytes(&e->header, fmt), size;
    size_t held = want > SIZE_MAX ? SIZE_MAX : (size_t)want;
    take_memory(p, held);
    FILE *fp = open_entry(e, &size, err);
    int rc = -1;
    if (fp) {
        rc = image_file_decode(fp, size, e->path, &e->header, fmt, slot, err);
        fclose(fp);
    }
    give_memory(p, held);
    return rc;
}

// ---- Putting the sets together ----

// Both sets (the test set alone with test_only) must keep an image after files were skipped.
static int check_sets(const struct scan *s, bool test_only, struct clvae_error *err)
{
    size_t n_train = count_train(s);
    if ((n_train == 0 && !test_only) || n_train == s->n)
        return clvae_fail(err, CLVAE_EXIT_DATA,
                          "%s: no %s image is left after skipping %llu bad file(s)", s->dir,
                          n_train == 0 ? "training" : "test", (unsigned long long)s->skipped);
    return 0;
}

// Pass 1: every file's header, leaving out (under skip_bad) the files that fail.
static int read_headers(struct scan *s, const struct image_folder_options *opt,
                        struct clvae_error *err)
{
    struct pass p = {.verb = "reading", .noun = "headers", .work = header_work, .scan = s};
    if (run_pass(&p, opt, err) != 0)
        return -1;
    drop_bad(s);
    return check_sets(s, opt->test_only, err);
}

// Without --image-size every image must have the first one's size.
static int check_sizes(const struct scan *s, struct clvae_error *err)
{
    const struct entry *first = &s->files[0];
    for (size_t i = 1; i < s->n; i++) {
        const struct entry *e = &s->files[i];
        if (e->header.width != first->header.width || e->header.height != first->header.height)
            return clvae_fail(err, CLVAE_EXIT_DATA,
                              "%s: the image is %ux%u but %s is %ux%u; all images must have one "
                              "size, or give --image-size WxH to resize them",
                              e->path, (unsigned)e->header.width, (unsigned)e->header.height,
                              first->path, (unsigned)first->header.width,
                              (unsigned)first->header.height);
    }
    return 0;
}

// What every image becomes: the channels asked for or seen in the headers, the size asked for or
// the first image's.
static int choose_format(const struct scan *s, const struct image_folder_options *opt,
                         struct image_format *fmt, struct clvae_error *err)
{
    const uint8_t *bg = opt->background;
    bool grey_bg = bg[0] == bg[1] && bg[1] == bg[2], colour = false;
    for (size_t i = 0; i < s->n && !colour; i++)
        colour = s->files[i].header.colour || (s->files[i].header.transparency && !grey_bg);
    int channels = opt->channels;
    if (channels == 0)
        channels = colour ? 3 : 1;
    *fmt = (struct image_format){.channels = channels,
                                 .width = opt->width,
                                 .height = opt->height,
                                 .background = {bg[0], bg[1], bg[2]},
                                 .crop = opt->crop};
    if (opt->width == 0) {
        if (check_sizes(s, err) != 0)
            return -1;
        fmt->width = (int)s->files[0].header.width;
        fmt->height = (int)s->files[0].header.height;
    }
    uint64_t image = (uint64_t)fmt->width * fmt->height * fmt->channels;
    if (image > IDX_MAX_BYTES / s->n)
        return clvae_fail(err, CLVAE_EXIT_DATA,
                          "%s: %zu images of %dx%dx%d are over the limit of %llu bytes of "
                          "pixels; give a smaller --image-size",
                          s->dir, s->n, fmt->width, fmt->height, fmt->channels,
                          (unsigned long long)IDX_MAX_BYTES);
    return 0;
}

// A set of count images of fmt, its pixels allocated (labels come after decoding).
static int make_set(struct image_set *set, size_t count, const struct image_format *fmt,
                    struct clvae_error *err)
{
    *set = (struct image_set){.count = (uint32_t)count,
                              .height = (uint32_t)fmt->height,
                              .width = (uint32_t)fmt->width,
                              .channels = (uint32_t)fmt->channels};
    size_t bytes = count * fmt->height * fmt->width * fmt->channels;
    set->pixels = malloc(bytes ? bytes : 1);
    if (!set->pixels)
        return clvae_fail(err, CLVAE_EXIT_FAILURE, "out of host memory for %zu bytes of pixels",
                          bytes);
    return 0;
}

// The entries [b, b + set->count) that decoded: their pixels moved down over those that did not,
// and their labels when labelled.
static void compact_set(const struct scan *s, size_t b, struct image_set *set)
{
    size_t bytes = (size_t)set->height * set->width * set->channels, kept = 0;
    if (s->n_classes > 0)
        set->labels = xmalloc((set->count ? set->count : 1) * sizeof *set->labels);
    for (size_t i = 0; i < set->count; i++) {
        const struct entry *e = &s->files[b + i];
        if (e->bad)
            continue;
        if (kept != i)
            memmove(set->pixels + kept * bytes, set->pixels + i * bytes, bytes);
        if (set->labels)
            set->labels[kept] = e->label;
        kept++;
    }
    set->count = (uint32_t)kept;
}

// Pass 2: every image decoded into out's two sets, the files that fail left out under skip_bad.
static int decode_all(struct scan *s, const struct image_folder_options *opt,
                      const struct image_format *fmt, struct image_folder *out,
                      struct clvae_error *err)
{
    size_t n_train = count_train(s);
    if (make_set(&out->train, n_train, fmt, err) != 0 ||
        make_set(&out->test, s->n - n_train, fmt, err) != 0)
        return -1;
    struct pass p = {.verb = "decoding",
                     .noun = "images",
                     .work = decode_work,
                     .scan = s,
                     .fmt = fmt,
                     .pixels = {out->train.pixels, out->test.pixels},
                     .n_train = n_train,
                     .budget = opt->decode_budget ? opt->decode_budget : IMAGE_DECODE_BUDGET};
    if (run_pass(&p, opt, err) != 0)
        return -1;
    compact_set(s, 0, &out->train);
    compact_set(s, n_train, &out->test);
    drop_bad(s);
    return check_sets(s, opt->test_only, err);
}

// ---- The entry points ----

// Options out of range are the caller's (the command line's) fault.
static int check_options(const struct image_folder_options *opt, struct clvae_error *err)
{
    if (opt->channels != 0 && opt->channels != 1 && opt->channels != 3)
        return clvae_fail(err, CLVAE_EXIT_USAGE, "image channels must be 1 or 3, not %d",
                          opt->channels);
    bool no_size = opt->width == 0 && opt->height == 0;
    if (!no_size && (opt->width < 1 || opt->width > IMAGE_MAX_SIDE || opt->height < 1 ||
                     opt->height > IMAGE_MAX_SIDE))
        return clvae_fail(err, CLVAE_EXIT_USAGE,
                          "--image-size: %dx%d is not a size from 1x1 to %dx%d", opt->width,
                          opt->height, IMAGE_MAX_SIDE, IMAGE_MAX_SIDE);
    if (!(opt->test_split > 0 && opt->test_split < 1))
        return clvae_fail(err, CLVAE_EXIT_USAGE,
                          "--test-split: %g is not a fraction between 0 and 1 (exclusive)",
                          opt->test_split);
    if (opt->threads < 0)
        return clvae_fail(err, CLVAE_EXIT_USAGE, "threads: %d is negative", opt->threads);
    if (opt->crop != IMAGE_CROP_NONE && opt->crop != IMAGE_CROP_CENTER)
        return clvae_fail(err, CLVAE_EXIT_USAGE, "--crop: %d is neither none nor center",
                          opt->crop);
    if (opt->crop == IMAGE_CROP_CENTER && no_size)
        return clvae_fail(err, CLVAE_EXIT_USAGE,
                          "--crop center: needs --image-size WxH, the size to crop to");
    return 0;
}

static void scan_free(struct scan *s)
{
    free(s->names.text);
    free(s->folders.text);
    free(s->pending);
    free(s->files);
    for (int i = 0; i < s->n_classes; i++)
        free(s->classes[i]);
    free(s->classes);
    free(s->warnings);
    *s = (struct scan){0};
}

// The list of files: scanned, ordered, hard links dropped, split when there is no DIR/test.
static int list_files(struct scan *s, const char *dir, const struct image_folder_options *opt,
                      struct clvae_error *err)
{
    if (scan_layout(s, dir, err) != 0)
        return -1;
    free(s->folders.text);
    free(s->pending);
    s->folders = (struct arena){0};
    s->pending = NULL;
    s->n_pending = s->pending_cap = 0;
    settle(s);
    drop_hard_links(s);
    if (s->test_folder && count_train(s) == s->n)
        return clvae_fail(err, CLVAE_EXIT_DATA,
                          "%s: every image of test/ is a hard link to one of train/, read once "
                          "as a training image",
                          dir);
    if (!s->test_folder && split(s, opt, err) != 0)
        return -1;
    if (opt->test_only) { // the entries are in order, training's first: drop them
        size_t n_train = count_train(s);
        memmove(s->files, s->files + n_train, (s->n - n_train) * sizeof *s->files);
        s->n -= n_train;
    }
    return 0;
}

// ---- The decoded-set cache ----

// The cache file for dir read with opt, into path (IMAGE_FOLDER_CACHE_PATH): named by a hash of
// DIR's real path and the options that shape the sets, which *base (the key's start) holds too.
// -1 when there is no cache folder or DIR has no real path.
static int cache_name(const char *dir, const struct image_folder_options *opt, char *path,
                      struct image_hash *base)
{
    char real[PATH_MAX], folder[IMAGE_FOLDER_CACHE_PATH], options[256];
    if (!realpath(dir, real) || image_cache_dir(folder, sizeof folder) != 0)
        return -1;
    snprintf(options, sizeof options,
             "channels %d background %d,%d,%d size %dx%d crop %d test_split %.17g seed %llu "
             "skip_bad %d",
             opt->channels, opt->background[0], opt->background[1], opt->background[2], opt->width,
             opt->height, opt->crop, opt->test_split, (unsigned long long)opt->seed, opt->skip_bad);
    image_hash_init(base);
    image_hash_text(base, "clvae " CLVAE_VERSION " image cache");
    image_hash_text(base, real);
    image_hash_text(base, options);
    uint8_t name[IMAGE_CACHE_KEY_BYTES];
    image_hash_final(base, name);
    char hex[2 * IMAGE_CACHE_KEY_BYTES + 1];
    for (int i = 0; i < IMAGE_CACHE_KEY_BYTES; i++)
        snprintf(hex + 2 * i, 3, "%02x", name[i]);
    int n = snprintf(path, IMAGE_FOLDER_CACHE_PATH, "%s/images-%s.cache", folder, hex);
    if (n < 0 || n >= IMAGE_FOLDER_CACHE_PATH) {
        path[0] = '\0';
        return -1;
    }
    return 0;
}

// The cache's key: base, the decoders' versions, and every file of the list (its path below DIR,
// size, modification time, inode, set and label), in order.
static void cache_key(const struct scan *s, const struct image_hash *base,
                      uint8_t key[IMAGE_CACHE_KEY_BYTES])
{
    struct image_hash h = *base;
    char versions[VERSION_BYTES];
    image_decoder_versions(versions, sizeof versions);
    image_hash_text(&h, versions);
    size_t skip = strlen(s->dir);
    image_hash_u64(&h, s->n);
    for (size_t i = 0; i < s->n; i++) {
        const struct entry *e = &s->files[i];
        image_hash_text(&h, e->path + skip);
        image_hash_u64(&h, e->size);
        image_hash_u64(&h, (uint64_t)e->mtime_sec);
        image_hash_u64(&h, (uint64_t)e->mtime_nsec);
        image_hash_u64(&h, e->ino);
        image_hash_u64(&h, e->set);
        image_hash_u64(&h, (uint64_t)(int64_t)e->label);
    }
    image_hash_final(&h, key);
}

// The sets from the cache when it holds this list's (out filled, its skip warnings printed
// again): 0; else -1, with out->cache_path set where there is a cache and key its key.
static int cache_lookup(const struct scan *s, const char *dir,
                        const struct image_folder_options *opt, struct image_folder *out,
                        uint8_t key[IMAGE_CACHE_KEY_BYTES])
{
    struct image_hash base;
    if (cache_name(dir, opt, out->cache_path, &base) != 0)
        return -1;
    cache_key(s, &base, key);
    struct image_folder cached;
    char *warnings;
    const char *why;
    if (image_cache_read(out->cache_path, key, &cached, &warnings, &why) != 0)
        return -1;
    memcpy(cached.cache_path, out->cache_path, sizeof cached.cache_path);
    cached.from_cache = true;
    *out = cached;
    fputs(warnings, stderr);
    free(warnings);
    return 0;
}

// Keeps out's sets in the cache; a failure is a warning, the sets being good.
static void cache_store(const struct scan *s, struct image_folder *out,
                        const uint8_t key[IMAGE_CACHE_KEY_BYTES])
{
    struct clvae_error err;
    if (image_cache_write(out->cache_path, key, out, s->warnings, &err) == 0)
        out->cache_written = true;
    else if (!clvae_quiet())
        fprintf(stderr, "clvae: warning: %s; the decoded images are not cached\n", err.msg);
}

int image_folder_read(const char *dir, const struct image_folder_options *opt,
                      struct image_folder *out, struct clvae_error *err)
{
    struct scan s = {.empty_hint = opt->empty_hint};
    struct image_format fmt;
    uint8_t key[IMAGE_CACHE_KEY_BYTES];
    *out = (struct image_folder){0};
    int rc = -1;
    bool cache = opt->cache && !opt->test_only;
    if (check_options(opt, err) != 0 || list_files(&s, dir, opt, err) != 0)
        goto done;
    if (cache && cache_lookup(&s, dir, opt, out, key) == 0) {
        rc = 0;
        goto done;
    }
    if (read_headers(&s, opt, err) != 0 || choose_format(&s, opt, &fmt, err) != 0 ||
        decode_all(&s, opt, &fmt, out, err) != 0)
        goto done;
    out->n_classes = s.n_classes;
    out->class_names = s.classes;
    out->skipped = s.skipped;
    out->test_folder = s.test_folder;
    s.classes = NULL;
    s.n_classes = 0;
    if (cache && out->cache_path[0])
        cache_store(&s, out, key);
    rc = 0;
done:
    scan_free(&s);
    if (rc != 0)
        image_folder_free(out);
    return rc;
}

void image_folder_free(struct image_folder *f)
{
    free(f->train.pixels);
    free(f->train.labels);
    free(f->test.pixels);
    free(f->test.labels);
    for (int i = 0; i < f->n_classes; i++)
        free(f->class_names[i]);
    free(f->class_names);
    *f = (struct image_folder){0};
}

// ---- Option parsing ----

// The value of digit c in base 10 or 16, or -1.
static int digit(char c, int base)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (base == 16 && c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (base == 16 && c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

// A whole number from *p in [lo, hi], digits only; advances *p past it. -1 if there is none.
static long parse_number(const char **p, long lo, long hi, int base)
{
    long v = 0;
    int digits = 0;
    for (const char *c = *p;; c++, digits++) {
        int d = digit(*c, base);
        if (d < 0)
            break;
        v = v * base + d;
        if (v > hi)
            return -1;
    }
    if (digits == 0 || v < lo)
        return -1;
    *p += digits;
    return v;
}

int image_folder_parse_size(const char *option, const char *text, int *width, int *height,
                            struct clvae_error *err)
{
    const char *p = text;
    long w = parse_number(&p, 1, IMAGE_MAX_SIDE, 10);
    long h = -1;
    if (w > 0 && (*p == 'x' || *p == 'X')) {
        p++;
        h = parse_number(&p, 1, IMAGE_MAX_SIDE, 10);
    }
    if (w < 0 || h < 0 || *p != '\0')
        return clvae_fail(err, CLVAE_EXIT_USAGE,
                          "%s: \"%s\" is not WxH, a width and a height from 1 to %d (like 64x64)",
                          option, text, IMAGE_MAX_SIDE);
    *width = (int)w;
    *height = (int)h;
    return 0;
}

// "#rrggbb" -> rgb; -1 if text is not that.
static int parse_hex_colour(const char *text, uint8_t rgb[3])
{
    if (text[0] != '#' || strlen(text) != 7)
        return -1;
    for (int k = 0; k < 3; k++) {
        char pair[3] = {text[1 + 2 * k], text[2 + 2 * k], '\0'};
        const char *p = pair;
        long v = parse_number(&p, 0, 255, 16);
        if (v < 0 || *p != '\0')
            return -1;
        rgb[k] = (uint8_t)v;
    }
    return 0;
}

// "G" or "R,G,B" -> rgb; -1 if text is not that.
static int parse_decimal_colour(const char *text, uint8_t rgb[3])
{
    const char *p = text;
    long v[3];
    int n = 0;
    for (;;) {
        v[n] = parse_number(&p, 0, 255, 10);
        if (v[n++] < 0)
            return -1;
        if (*p != ',' || n == 3)
            break;
        p++;
    }
    if (*p != '\0' || (n != 1 && n != 3))
        return -1;
    for (int k = 0; k < 3; k++)
        rgb[k] = (uint8_t)v[n == 1 ? 0 : k];
    return 0;
}

int image_folder_parse_crop(const char *option, const char *text, int *crop,
                            struct clvae_error *err)
{
    if (strcmp(text, "none") == 0)
        *crop = IMAGE_CROP_NONE;
    else if (strcmp(text, "center") == 0 || strcmp(text, "centre") == 0)
        *crop = IMAGE_CROP_CENTER;
    else
        return clvae_fail(err, CLVAE_EXIT_USAGE,
                          "%s: \"%s\" is neither none (stretch to --image-size) nor center "
                          "(scale to cover it, keep the centre)",
                          option, text);
    return 0;
}

const char *image_folder_crop_name(int crop)
{
    return crop == IMAGE_CROP_CENTER ? "center" : "none";
}

int image_folder_parse_background(const char *option, const char *text, uint8_t rgb[3],
                                  struct clvae_error *err)
{
    uint8_t got[3];
    if ((text[0] == '#' ? parse_hex_colour(text, got) : parse_decimal_colour(text, got)) != 0)
        return clvae_fail(err, CLVAE_EXIT_USAGE,
                          "%s: \"%s\" is not a colour: a grey level 0..255, R,G,B (each 0..255) "
                          "or #rrggbb",
                          option, text);
    memcpy(rgb, got, sizeof got);
    return 0;
}
