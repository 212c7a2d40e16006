// libclvae: train variational autoencoders and use trained ones on an OpenCL device, from C.
//
// The names this header declares (clvae_*, CLVAE_*, struct clvae_*) are the library's whole ABI:
// they are exported under the version node CLVAE_0. The shared object exports the engine's other
// symbols too, under CLVAE_PRIVATE_0, for the clvae program alone: they may change in any release.
//
// Errors: every function that can fail returns a status, 0 or one of CLVAE_STATUS_* (the exit
// statuses of the clvae program, README.md "Exit status"), and fills the struct clvae_status its
// caller passes (NULL: none) with that status and a message; the message is empty on success. No
// function exits the process or prints; an unexpected OpenCL failure or exhausted host memory
// inside a call becomes CLVAE_STATUS_FAILURE (or _DEVICE) and marks the device the call used as
// broken: its models and the device then only take clvae_model_close and clvae_device_close, and
// what the failed call had allocated on the host is not reclaimed.
//
// Threads: a handle (a device, or a model with the device it was loaded onto) is used by one thread
// at a time; different devices, and the models of different devices, may be used from different
// threads at once. clvae_train opens its own device and may run beside anything else.
//
// Images are host float arrays of n images, each image height x width x channels values in [0, 1]
// (row by row, channels interleaved: the layout of `clvae generate --raw`); the clvae program's
// images are their bytes b as (float)b * (1.0f / 255.0f).
#ifndef CLVAE_H
#define CLVAE_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CLVAE_VERSION_MAJOR 0
#define CLVAE_VERSION_MINOR 1

enum clvae_status_code {
    CLVAE_STATUS_OK = 0,
    CLVAE_STATUS_FAILURE = 1,  // an unexpected OpenCL or CLBlast failure, out of host memory
    CLVAE_STATUS_USAGE = 2,    // a bad argument
    CLVAE_STATUS_DATA = 3,     // a missing, unreadable or malformed data or checkpoint file
    CLVAE_STATUS_OUTPUT = 4,   // an output directory or file that cannot be written
    CLVAE_STATUS_DEVICE = 5,   // no OpenCL platform, no such device, a device allocation failed
    CLVAE_STATUS_DIVERGED = 6, // training's loss became NaN or infinite
};

// What a call met: its status and a message (one line, but for a bad device, whose message lists
// the devices that exist on the lines after). code 0 and message "" on success.
struct clvae_status {
    int code;
    char message[2048];
};

// The library's version, "0.1.0". Any thread.
const char *clvae_version(void);

// ---- Devices

struct clvae_device;

// Opens an OpenCL device and builds clvae's kernels for it. platform and device select it exactly
// as the program's --platform and --device do: an index ("0") or a part of the name ("pthread",
// "NVIDIA"); NULL takes $CLVAE_PLATFORM and $CLVAE_DEVICE, else the first GPU, else the first
// device. *out (set only on success) is the caller's, released by clvae_device_close. Any thread.
int clvae_device_open(const char *platform, const char *device, struct clvae_device **out,
                      struct clvae_status *status);

// The device's name as the driver gives it; borrowed, valid until the device is closed.
const char *clvae_device_name(const struct clvae_device *dev);

// Releases the device. Its models must be closed first. NULL is ignored.
void clvae_device_close(struct clvae_device *dev);

// ---- Models

struct clvae_model;

enum clvae_likelihood { CLVAE_LIKELIHOOD_BERNOULLI = 0, CLVAE_LIKELIHOOD_LOGISTIC = 1 };

struct clvae_shape {
    int latent; // dimensions of z
    int width, height, channels;
    int pixels;     // width * height * channels: the floats of one image
    int likelihood; // enum clvae_likelihood
    int classes;    // a conditional model's classes; 0: not conditional
    int binarized;  // 1: trained with --binarize (inputs are binarized as eval does)
};

// Loads a checkpoint that `clvae train --save` (or clvae_train) wrote onto dev, which it borrows
// (dev must outlive the model; models of one device share its queue, so one thread at a time uses
// the device and all its models). *out (set only on success) is released by clvae_model_close.
int clvae_model_load(struct clvae_device *dev, const char *path, struct clvae_model **out,
                     struct clvae_status *status);

// Releases the model's device memory. NULL is ignored.
void clvae_model_close(struct clvae_model *model);

// The model's shape into *shape.
int clvae_model_shape(const struct clvae_model *model, struct clvae_shape *shape,
                      struct clvae_status *status);

// A conditional model's class k (0 <= k < classes) by name; borrowed, valid until the model is
// closed. NULL for any other k.
const char *clvae_model_class_name(const struct clvae_model *model, int k);

// In every function below, classes (n ints, each 0 <= c < classes) is each image's class for a
// conditional model and must be NULL for another; n is 1 or more; the caller owns every array,
// which the call reads (inputs) or fills (outputs) and keeps no pointer to. A model trained with
// --binarize sees input image i binarized as `clvae eval` and `clvae encode` binarize test image i.

// The posterior q(z|x) of n images x (n * pixels floats): mean and logvar (n * latent floats each,
// either may be NULL). As `clvae encode` writes them for the same images.
int clvae_encode(struct clvae_model *model, const float *x, int n, const int *classes, float *mean,
                 float *logvar, struct clvae_status *status);

// Decodes n latent vectors z (n * latent floats) into each pixel's mean under the model's
// likelihood, out (n * pixels floats in [0, 1]).
int clvae_decode(struct clvae_model *model, const float *z, int n, const int *classes, float *out,
                 struct clvae_status *status);

// Decodes n draws of z ~ N(0, temperature^2 I) into out (n * pixels floats): bit for bit what
// `clvae generate -n N --seed SEED --temperature T --raw FILE` writes (its z depends on the seed
// and the draw's number alone). A conditional model decodes every draw as class cls
// (`--class cls`), or with cls -1 the classes in turn, 8 draws each (generate's default); an
// unconditional model takes cls -1.
int clvae_sample(struct clvae_model *model, int n, uint64_t seed, double temperature, int cls,
                 float *out, struct clvae_status *status);

// Each image decoded from its posterior mean into out (n * pixels floats): the right-hand images of
// `clvae reconstruct`.
int clvae_reconstruct(struct clvae_model *model, const float *x, int n, const int *classes,
                      float *out, struct clvae_status *status);

// Each image's negative ELBO in nats, estimated with one sample of z (noise from seed and the
// image's number i), into neg_elbo (n floats): the neg_elbo column of `clvae encode --elbo --seed
// seed` and the per-image terms of `clvae eval` for the same images.
int clvae_elbo(struct clvae_model *model, const float *x, int n, const int *classes, uint64_t seed,
               float *neg_elbo, struct clvae_status *status);

// Each image's negative importance-weighted bound (IWAE, k samples, 1 <= k <= 1000000) on
// -log p(x) into neg_iwae (n floats): `clvae encode --elbo -k k --seed seed`'s neg_iwae column.
int clvae_iwae(struct clvae_model *model, const float *x, int n, const int *classes, int k,
               uint64_t seed, float *neg_iwae, struct clvae_status *status);

// ---- Training

// One epoch's figures, means per image in nats: what `clvae train` prints and writes to
// metrics.csv.
struct clvae_epoch {
    int epoch;
    double train_rec, train_kl, test_rec, test_kl;
    double seconds, images_per_second;
    double beta, lr; // in force: the epoch's beta, its last step's learning rate
};

// Called after each epoch's outputs are written; non-zero stops training there (clvae_train then
// returns 0). Runs on clvae_train's thread.
typedef int (*clvae_epoch_fn)(const struct clvae_epoch *epoch, void *user);

// `clvae train`'s options of the same names; strings are borrowed for the call.
struct clvae_train_options {
    const char *data;       // IDX files or a folder of images [/usr/share/datasets/fashion-mnist]
    const char *out_dir;    // metrics.csv and the image grids, created if missing [out]
    const char *checkpoint; // --save FILE after every epoch (and FILE.best); NULL: none
    const char *platform, *device; // as clvae_device_open's; NULL: the default
    int epochs;                    // [30]
    int batch;                     // [256]
    double lr, beta;               // [1e-3, 1]
    uint64_t seed;                 // [1]
    const char *hidden;            // --hidden "128,64"; NULL: the default (when encoder is NULL)
    const char *encoder, *decoder; // --encoder, --decoder ("conv:32,conv:64,dense:256"); NULL
    int latent;                    // [10]
    const char *likelihood;        // "bernoulli" or "logistic"; NULL: bernoulli
    int conditional;               // 1: --conditional
    clvae_epoch_fn on_epoch;       // NULL: none
    void *user;                    // on_epoch's
};

// Fills *options with the defaults above. Any thread.
void clvae_train_defaults(struct clvae_train_options *options);

// Trains as `clvae train` does with these options and --quiet (the same checkpoint bits for the
// same options), on a device of its own. Prints nothing and leaves the caller's signal handlers
// alone.
int clvae_train(const struct clvae_train_options *options, struct clvae_status *status);

// ---- Images

// Writes n images (n * pixels floats in [0, 1] of shape's size) as one PNG grid of cols images a
// row (cols 0: the square root of n), 2 pixels apart, as `clvae generate -o` draws them.
int clvae_write_png_grid(const char *path, const struct clvae_shape *shape, const float *images,
                         int n, int cols, struct clvae_status *status);

#ifdef __cplusplus
}
#endif

#endif
