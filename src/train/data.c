// The training run's data on the device: IDX files or a folder of images read into device
// buffers (in parts when larger than the largest allocation), the index and loss buffers.
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "augment.h"
#include "dataset.h"
#include "idx.h"
#include "trainer.h"

// Where idx_read_images_into puts a data set: a device buffer it fills through a mapping, so that
// on a CPU device the file is read straight into the buffer and never held twice; or, when the
// set is larger than the largest allocation, host memory that is then uploaded in parts.
struct device_dest {
    struct clrt *rt;
    const char *name;
    cl_mem mem;
    void *mapped, *staged;
};

static uint8_t *map_device_dest(void *ctx, size_t bytes, struct clvae_error *err)
{
    struct device_dest *d = ctx;
    if (bytes > d->rt->max_alloc) {
        d->staged = malloc(bytes);
        if (!d->staged)
            clvae_fail(err, CLVAE_EXIT_DATA, "%s: %zu bytes of host memory are not available",
                       d->name, bytes);
        return d->staged;
    }
    if (!(d->mem = clrt_buffer(d->rt, bytes, d->name, err)))
        return NULL;
    return d->mapped = clrt_map_write(d->rt, d->mem, bytes);
}

// Host images (count of image bytes) into new device parts named name, whole images each.
static int upload_parts(struct clrt *rt, const void *host, size_t count, size_t image,
                        const char *name, struct clrt_parts *parts, struct clvae_error *err)
{
    if (clrt_parts_plan(rt, parts, count * image, image, name, err) ||
        clrt_parts_create(rt, parts, name, err))
        return -1;
    if (host)
        clrt_parts_write(rt, parts, host, true);
    return 0;
}

// Reads the IDX file at path into new device parts named name; *parts is set even on failure
// (nothing in it if nothing was allocated) so that the caller releases it.
static int read_to_device(struct clrt *rt, const char *path, const char *name,
                          struct idx_images *images, struct clrt_parts *parts,
                          struct clvae_error *err)
{
    struct device_dest d = {rt, name, NULL, NULL, NULL};
    memset(parts, 0, sizeof *parts);
    int rc = idx_read_images_into(path, images, map_device_dest, &d, err);
    if (d.mapped)
        clrt_unmap(rt, d.mem, d.mapped);
    clrt_finish(rt);
    if (d.mem) {
        parts->n = 1;
        parts->start[1] = (size_t)images->count * images->rows * images->cols;
        parts->mem[0] = d.mem;
    } else if (rc == 0 && d.staged) {
        rc = upload_parts(rt, d.staged, images->count, (size_t)images->rows * images->cols, name,
                          parts, err);
    }
    free(d.staged);
    images->pixels = NULL; // the device's (or freed), not ours
    return rc;
}

// DIR's IDX training and test images, read into device buffers, checked to agree in size.
static int load_idx(struct run *run, const char *dir, struct data_info *info,
                    struct clvae_error *err)
{
    char train_path[4096], test_path[4096];
    struct idx_images train = {0}, test = {0};
    if (idx_find(dir, "train-images-idx3-ubyte", train_path, sizeof train_path, err) ||
        idx_find(dir, "t10k-images-idx3-ubyte", test_path, sizeof test_path, err) ||
        read_to_device(run->rt, train_path, "training set", &train, &run->train_data, err) ||
        read_to_device(run->rt, test_path, "test set", &test, &run->test_data, err))
        return -1;
    if (train.rows != test.rows || train.cols != test.cols)
        return clvae_fail(err, CLVAE_EXIT_DATA,
                          "%s: training images are %ux%u but test images (%s) are %ux%u",
                          train_path, train.rows, train.cols, test_path, test.rows, test.cols);
    if ((uint64_t)train.rows * train.cols > (uint64_t)INT32_MAX / 2 ||
        train.count > (uint32_t)INT32_MAX || test.count > (uint32_t)INT32_MAX)
        return clvae_fail(err, CLVAE_EXIT_DATA, "%s: %u images of %ux%u is more than clvae handles",
                          train_path, train.count, train.rows, train.cols);
    *info = (struct data_info){.n_train = train.count,
                               .n_test = test.count,
                               .height = train.rows,
                               .width = train.cols,
                               .channels = 1};
    return 0;
}

// A folder's labels for --conditional (the training set's twice with --flip: its mirror after it),
// refused naming dir when it has no class folders.
static int take_folder_labels(const char *dir, struct image_folder *f, bool flip,
                              struct data_info *info, struct clvae_error *err)
{
    if (f->n_classes == 0)
        return clvae_fail(err, CLVAE_EXIT_DATA,
                          "%s: --conditional needs each image's class, and the images are not "
                          "in class folders (DIR/CLASS/*.png, or DIR/train/CLASS and "
                          "DIR/test/CLASS)",
                          dir);
    size_t n = f->train.count, copies = flip ? 2 : 1;
    info->train_labels = xmalloc(copies * n * sizeof(int32_t));
    for (size_t c = 0; c < copies; c++)
        memcpy(info->train_labels + c * n, f->train.labels, n * sizeof(int32_t));
    info->n_train_labels = copies * n;
    info->test_labels = f->test.labels;
    f->test.labels = NULL;
    return 0;
}

// The IDX label file name beside DIR's images (train or t10k) into labels (count of them, one
// for each of count images), as int32; --conditional's, refused by name when missing.
static int read_idx_labels(const char *dir, const char *name, uint32_t count, int32_t **labels,
                           struct clvae_error *err)
{
    char path[4096];
    struct clvae_error missing;
    if (idx_find(dir, name, path, sizeof path, &missing))
        return clvae_fail(err, CLVAE_EXIT_DATA,
                          "%s: --conditional needs each image's class, and there is no %s[.gz] "
                          "beside the images",
                          dir, name);
    struct idx_images lab;
    if (idx_read_labels(path, &lab, err))
        return -1;
    int rc = 0;
    if (lab.count != count)
        rc =
            clvae_fail(err, CLVAE_EXIT_DATA, "%s: %u labels for %u images", path, lab.count, count);
    else {
        *labels = xmalloc((size_t)count * sizeof **labels);
        for (uint32_t i = 0; i < count; i++)
            (*labels)[i] = lab.pixels[i];
    }
    idx_free(&lab);
    return rc;
}

// --conditional on IDX files: the training and test labels, the classes those of the training
// labels (0 to the largest), named as the commands name them (dataset_idx_class_names).
static int load_idx_labels(const char *dir, struct data_info *info, struct clvae_error *err)
{
    if (read_idx_labels(dir, "train-labels-idx1-ubyte", info->n_train, &info->train_labels, err) ||
        read_idx_labels(dir, "t10k-labels-idx1-ubyte", info->n_test, &info->test_labels, err))
        return -1;
    int n = 0;
    for (uint32_t i = 0; i < info->n_train; i++)
        n = info->train_labels[i] + 1 > n ? info->train_labels[i] + 1 : n;
    for (uint32_t i = 0; i < info->n_test; i++)
        if (info->test_labels[i] >= n)
            return clvae_fail(err, CLVAE_EXIT_DATA,
                              "%s: test image %u has class %d, but the training labels have "
                              "classes 0 to %d",
                              dir, i, info->test_labels[i], n - 1);
    info->n_classes = n;
    info->n_train_labels = info->n_train;
    return dataset_idx_class_names(dir, n, &info->class_names, err);
}

// DIR as a folder of PNG images (image_folder.h), uploaded as bytes.
static int load_folder(struct run *run, const char *dir, const struct train_options *opt,
                       struct data_info *info, struct clvae_error *err)
{
    struct image_folder_options o = opt->folder;
    o.seed = opt->seed;
    o.progress = !opt->quiet && isatty(STDERR_FILENO);
    o.empty_hint = "; nor IDX files (train-images-idx3-ubyte[.gz], t10k-images-idx3-ubyte[.gz])";
    struct image_folder f;
    if (image_folder_read(dir, &o, &f, err))
        return -1;
    const struct image_set *tr = &f.train, *te = &f.test;
    size_t image = (size_t)tr->height * tr->width * tr->channels;
    *info = (struct data_info){.n_train = tr->count,
                               .n_test = te->count,
                               .height = tr->height,
                               .width = tr->width,
                               .channels = tr->channels,
                               .n_classes = f.n_classes,
                               .class_names = f.class_names,
                               .skipped = f.skipped,
                               .folder = true,
                               .test_folder = f.test_folder,
                               .from_cache = f.from_cache};
    memcpy(info->cache_path, f.cache_path, sizeof info->cache_path);
    f.class_names = NULL;
    int rc = opt->conditional ? take_folder_labels(dir, &f, opt->flip, info, err) : 0;
    f.n_classes = 0;
    uint32_t most = opt->flip ? (uint32_t)INT32_MAX / 2 : (uint32_t)INT32_MAX;
    if (rc == 0 &&
        (image > (size_t)INT32_MAX / 4 || tr->count > most || te->count > (uint32_t)INT32_MAX))
        rc =
            clvae_fail(err, CLVAE_EXIT_DATA, "%s: %u images of %ux%ux%u is more than clvae handles",
                       dir, tr->count, tr->width, tr->height, tr->channels);
    // With --flip the training set goes up with its mirror after it (include/data/augment.h).
    uint8_t *both = NULL;
    if (rc == 0 && opt->flip) {
        both = malloc(2 * (size_t)tr->count * image);
        if (!both)
            rc = clvae_fail(err, CLVAE_EXIT_FAILURE, "out of host memory for %zu bytes of pixels",
                            2 * (size_t)tr->count * image);
        else {
            memcpy(both, tr->pixels, (size_t)tr->count * image);
            augment_mirror(tr, both + (size_t)tr->count * image);
        }
    }
    if (rc == 0 &&
        (upload_parts(run->rt, both ? both : tr->pixels, both ? 2 * (size_t)tr->count : tr->count,
                      image, "training set", &run->train_data, err) ||
         upload_parts(run->rt, te->pixels, te->count, image, "test set", &run->test_data, err)))
        rc = -1;
    free(both);
    image_folder_free(&f);
    return rc;
}

// The options that only shape a PNG folder, refused for IDX files rather than ignored.
static int check_idx_options(const struct train_options *opt, struct clvae_error *err)
{
    const char *name = opt->png_only_option;
    if (name)
        return clvae_fail(err, CLVAE_EXIT_USAGE,
                          "%s: applies to folders of PNG images; %s holds IDX files (grey images "
                          "and their own test file)",
                          name, opt->data_dir);
    return 0;
}

// DIR's training and test images on the device: IDX files when DIR has them, else PNG images.
int load_data(struct run *run, const struct train_options *opt, struct data_info *info,
              struct clvae_error *err)
{
    if (dataset_is_idx(opt->data_dir))
        return check_idx_options(opt, err) || load_idx(run, opt->data_dir, info, err) ||
                       (opt->conditional && load_idx_labels(opt->data_dir, info, err))
                   ? -1
                   : 0;
    return load_folder(run, opt->data_dir, opt, info, err);
}

static cl_mem upload(struct run *run, const void *host, size_t bytes, const char *name,
                     struct clvae_error *err)
{
    cl_mem mem = clrt_buffer(run->rt, bytes, name, err);
    if (mem && host)
        clrt_write(run->rt, mem, 0, bytes, host, true);
    return mem;
}

void run_release(struct run *run)
{
    clrt_parts_release(&run->train_data);
    clrt_parts_release(&run->test_data);
    cl_mem mems[] = {run->train_index, run->test_index, run->train_rec,    run->train_kl,
                     run->test_rec,    run->test_kl,    run->train_labels, run->test_labels};
    for (size_t i = 0; i < sizeof mems / sizeof mems[0]; i++)
        clrt_release_buffer(mems[i]);
    free(run->host_rec);
    free(run->host_kl);
    free(run->host_test_rec);
    free(run->host_test_kl);
    free(run->host_grads);
}

// Creates the index and loss buffers for the data already on the device.
int run_setup(struct run *run, const struct data_info *data, struct clvae_error *err)
{
    run->dim = (int)(data->height * data->width * data->channels);
    run->rows = (int)data->height;
    run->cols = (int)data->width;
    run->channels = (int)data->channels;
    run->n_train = (int)data->n_train;
    run->n_test = (int)data->n_test;
    run->n_classes = data->n_classes;
    run->class_names = data->class_names;
    size_t ntr = (size_t)run->n_train, nte = (size_t)run->n_test;
    int *identity = xmalloc(nte * sizeof(int));
    for (size_t i = 0; i < nte; i++)
        identity[i] = (int)i;
    run->train_index = upload(run, NULL, ntr * sizeof(int), "training order", err);
    run->test_index =
        run->train_index ? upload(run, identity, nte * sizeof(int), "test order", err) : NULL;
    free(identity);
    if (data->train_labels && run->test_index) {
        size_t bytes = data->n_train_labels * sizeof(int32_t);
        if (!(run->train_labels = upload(run, data->train_labels, bytes, "training labels", err)) ||
            !(run->test_labels =
                  upload(run, data->test_labels, nte * sizeof(int32_t), "test labels", err)))
            return -1;
    }
    if (!run->test_index ||
        !(run->train_rec = upload(run, NULL, ntr * sizeof(float), "training losses", err)) ||
        !(run->train_kl = upload(run, NULL, ntr * sizeof(float), "training KL terms", err)) ||
        !(run->test_rec = upload(run, NULL, nte * sizeof(float), "test losses", err)) ||
        !(run->test_kl = upload(run, NULL, nte * sizeof(float), "test KL terms", err)))
        return -1;
    run->host_rec = xmalloc(ntr * sizeof(float));
    run->host_kl = xmalloc(ntr * sizeof(float));
    run->host_test_rec = xmalloc(nte * sizeof(float));
    run->host_test_kl = xmalloc(nte * sizeof(float));
    if (run->ranks > 1)
        run->host_grads = xmalloc((run->vae->n_params + 1) * sizeof(float));
    const char *skip = getenv("CLVAE_MPI_SKIP_ALLREDUCE");
    run->skip_sum = skip && strcmp(skip, "1") == 0;
    return 0;
}
