#include "dataset.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "idx.h"
#include "regular_file.h"

// Fashion-MNIST's class names, in label order.
static const char *const fashion_names[10] = {"T-shirt/top", "Trouser",   "Pullover", "Dress",
                                              "Coat",        "Sandal",    "Shirt",    "Sneaker",
                                              "Bag",         "Ankle boot"};

// Whether text contains word, ignoring ASCII case.
static bool contains_word(const char *text, const char *word)
{
    size_t n = strlen(word);
    for (; *text; text++) {
        size_t i = 0;
        while (i < n && text[i] && tolower((unsigned char)text[i]) == word[i])
            i++;
        if (i == n)
            return true;
    }
    return false;
}

static char *copy_string(const char *s)
{
    char *c = xmalloc(strlen(s) + 1);
    strcpy(c, s);
    return c;
}

// The next line of fp without its line end into line (len bytes; the rest of a longer line is
// skipped); false at the end of the file.
static bool read_line(FILE *fp, char *line, size_t len)
{
    if (!fgets(line, (int)len, fp))
        return false;
    bool whole = strchr(line, '\n') || feof(fp);
    line[strcspn(line, "\r\n")] = '\0';
    for (int c; !whole && (c = fgetc(fp)) != EOF && c != '\n';)
        ;
    return true;
}

int dataset_idx_class_names(const char *dir, int n, char ***out, struct clvae_error *err)
{
    char path[4200], line[256];
    snprintf(path, sizeof path, "%s/classes.txt", dir);
    // Absent: names of their own. Present, it must be a regular file (a FIFO would block).
    FILE *fp = NULL;
    struct stat st;
    const char *why;
    if (stat(path, &st) == 0 && !(fp = regular_file_fopen(path, &why)))
        return clvae_fail(err, CLVAE_EXIT_DATA, "%s: %s", path, why);
    char **names = xcalloc((size_t)(n > 0 ? n : 1), sizeof *names);
    for (int c = 0; c < n; c++) {
        if (fp && read_line(fp, line, sizeof line)) {
            names[c] = copy_string(line);
        } else if (n <= 10 && contains_word(dir, "fashion")) {
            names[c] = copy_string(fashion_names[c]);
        } else {
            snprintf(line, sizeof line, "%d", c);
            names[c] = copy_string(line);
        }
    }
    if (fp)
        fclose(fp);
    *out = names;
    return 0;
}

bool dataset_is_idx(const char *dir)
{
    char path[4096];
    struct clvae_error ignore;
    return idx_find(dir, "train-images-idx3-ubyte", path, sizeof path, &ignore) == 0 ||
           idx_find(dir, "t10k-images-idx3-ubyte", path, sizeof path, &ignore) == 0;
}

// The IDX labels of dir's test (or training) images into d, when dir has a label file.
static int read_idx_labels(const char *dir, bool train, struct dataset *d, struct clvae_error *err)
{
    char path[4096];
    struct clvae_error missing;
    if (idx_find(dir, train ? "train-labels-idx1-ubyte" : "t10k-labels-idx1-ubyte", path,
                 sizeof path, &missing))
        return 0;
    struct idx_images lab;
    if (idx_read_labels(path, &lab, err))
        return -1;
    if (lab.count != d->test.count) {
        clvae_fail(err, CLVAE_EXIT_DATA, "%s: %u labels for %u test images", path, lab.count,
                   d->test.count);
        idx_free(&lab);
        return -1;
    }
    d->test.labels = xmalloc((size_t)lab.count * sizeof *d->test.labels);
    for (uint32_t i = 0; i < lab.count; i++) {
        d->test.labels[i] = lab.pixels[i];
        d->n_classes = lab.pixels[i] + 1 > d->n_classes ? lab.pixels[i] + 1 : d->n_classes;
    }
    idx_free(&lab);
    return dataset_idx_class_names(dir, d->n_classes, &d->class_names, err);
}

static int read_idx(const char *dir, bool train, struct dataset *d, struct clvae_error *err)
{
    struct idx_images test;
    if (idx_find(dir, train ? "train-images-idx3-ubyte" : "t10k-images-idx3-ubyte", d->source,
                 sizeof d->source, err) ||
        idx_read_images(d->source, &test, err))
        return -1;
    d->test = (struct image_set){.count = test.count,
                                 .height = test.rows,
                                 .width = test.cols,
                                 .channels = 1,
                                 .pixels = test.pixels};
    return read_idx_labels(dir, train, d, err);
}

static int read_folder(const char *dir, const struct ckpt_meta *meta, bool train, struct dataset *d,
                       struct clvae_error *err)
{
    struct image_folder_options o = {.channels = meta->channels,
                                     .width = meta->image_cols,
                                     .height = meta->image_rows,
                                     .crop = meta->crop,
                                     .test_split = meta->test_split,
                                     .seed = meta->seed,
                                     .progress = isatty(STDERR_FILENO),
                                     .empty_hint = "; nor IDX test images "
                                                   "(t10k-images-idx3-ubyte[.gz])",
                                     .test_only = !train};
    memcpy(o.background, meta->background, 3);
    struct image_folder f;
    if (image_folder_read(dir, &o, &f, err))
        return -1;
    snprintf(d->source, sizeof d->source, "%s%s", dir,
             f.test_folder ? (train ? "/train" : "/test") : "");
    d->folder = true;
    d->test = train ? f.train : f.test;
    d->n_classes = f.n_classes;
    d->class_names = f.class_names;
    *(train ? &f.train : &f.test) = (struct image_set){0};
    f.class_names = NULL;
    f.n_classes = 0;
    image_folder_free(&f);
    return 0;
}

int dataset_read_test(const char *dir, const struct ckpt_meta *meta, const char *model,
                      struct dataset *d, struct clvae_error *err)
{
    return dataset_read_split(dir, meta, model, false, d, err);
}

int dataset_read_split(const char *dir, const struct ckpt_meta *meta, const char *model, bool train,
                       struct dataset *d, struct clvae_error *err)
{
    memset(d, 0, sizeof *d);
    int rc =
        dataset_is_idx(dir) ? read_idx(dir, train, d, err) : read_folder(dir, meta, train, d, err);
    if (rc == 0 &&
        ((int)d->test.height != meta->image_rows || (int)d->test.width != meta->image_cols ||
         (int)d->test.channels != meta->channels))
        rc = clvae_fail(err, CLVAE_EXIT_DATA,
                        "%s: images are %ux%u with %u channel%s but the model %s takes %dx%d with "
                        "%d",
                        d->source, d->test.width, d->test.height, d->test.channels,
                        d->test.channels == 1 ? "" : "s", model, meta->image_cols, meta->image_rows,
                        meta->channels);
    if (rc == 0 && d->test.count == 0)
        rc = clvae_fail(err, CLVAE_EXIT_DATA, "%s: holds no %s images", d->source,
                        train ? "training" : "test");
    if (rc)
        dataset_free(d);
    return rc;
}

// A conditional model's test images need their classes, each one of the model's: -1 naming
// the data (CLVAE_EXIT_DATA) when not so.
int dataset_check_labels(const struct dataset *data, const struct ckpt_meta *meta,
                         const char *model, struct clvae_error *err)
{
    if (!meta->cfg.classes)
        return 0;
    if (!data->test.labels)
        return clvae_fail(err, CLVAE_EXIT_DATA,
                          "%s: the model %s is conditional and takes each image's class, but "
                          "these images have no labels (IDX t10k-labels-idx1-ubyte[.gz], or class "
                          "folders)",
                          data->source, model);
    for (uint32_t i = 0; i < data->test.count; i++)
        if (data->test.labels[i] < 0 || data->test.labels[i] >= meta->cfg.classes)
            return clvae_fail(err, CLVAE_EXIT_DATA,
                              "%s: image %u has class %d, and the model %s has %d classes",
                              data->source, i, data->test.labels[i], model, meta->cfg.classes);
    return 0;
}

void dataset_free(struct dataset *d)
{
    free(d->test.pixels);
    free(d->test.labels);
    for (int i = 0; d->class_names && i < d->n_classes; i++)
        free(d->class_names[i]);
    free(d->class_names);
    memset(d, 0, sizeof *d);
}
