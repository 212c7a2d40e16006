// The test images a trained model's commands work on (eval, reconstruct, interpolate, scatter):
// DIR's IDX files, or DIR as a folder of images read as the checkpoint says training read it
// (channels, size, crop, background, and the same seeded split; never from the decoded-set
// cache), with labels and class names where the data has them.
#ifndef CLVAE_DATASET_H
#define CLVAE_DATASET_H

#include <stdbool.h>

#include "checkpoint.h"
#include "error.h"
#include "image_folder.h"

struct dataset {
    struct image_set test; // labels NULL when the data has none
    int n_classes;         // 0: no labels
    char **class_names;    // n_classes names
    char source[4096];     // the file or folder the test images came from, for messages
    bool folder;           // a folder of images, not IDX files
};

// Whether dir holds IDX training images (train-images-idx3-ubyte[.gz]): else it is read as a
// folder of images.
bool dataset_is_idx(const char *dir);

// DIR's test images for the model meta describes, checked against its image size and channels.
// IDX: t10k-images-idx3-ubyte[.gz], labels from t10k-labels-idx1-ubyte[.gz] when present, named
// by DIR/classes.txt (a name a line), else Fashion-MNIST's names when DIR's path says fashion,
// else the numbers. A folder: image_folder_read with the checkpoint's channels, background,
// crop, test split and seed, every image fitted to the model's size; the class names the folder's.
// 0, or -1 with err (CLVAE_EXIT_DATA naming the file or folder) and nothing held.
// model names the checkpoint in messages.
int dataset_read_test(const char *dir, const struct ckpt_meta *meta, const char *model,
                      struct dataset *d, struct clvae_error *err);

// As dataset_read_test, the training images instead when train (IDX train-images-idx3-ubyte[.gz]
// with train-labels-idx1-ubyte[.gz]; a folder's training part), still in d->test.
int dataset_read_split(const char *dir, const struct ckpt_meta *meta, const char *model, bool train,
                       struct dataset *d, struct clvae_error *err);

void dataset_free(struct dataset *d);

// For a model conditional on its classes (meta->cfg.classes): 0 when every image of d has a class
// of the model's, else -1 naming d's source and model (CLVAE_EXIT_DATA). 0 for any other model.
int dataset_check_labels(const struct dataset *d, const struct ckpt_meta *meta, const char *model,
                         struct clvae_error *err);

// Names for the n classes of IDX labels of dir, as dataset_read_test gives them, into *names
// (malloc'd). 0, or -1 with err (CLVAE_EXIT_DATA) when DIR/classes.txt exists but is not a
// regular file or cannot be read.
int dataset_idx_class_names(const char *dir, int n, char ***names, struct clvae_error *err);

#endif
