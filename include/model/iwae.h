// The importance-weighted bound (IWAE, Burda et al. 2015) on -log p(x) of a model's images,
// computed on the device by the kernels of cl/iwae.cl: what `clvae eval` and `clvae encode --elbo`
// report, and libclvae's clvae_iwae.
#ifndef CLVAE_IWAE_H
#define CLVAE_IWAE_H

#include <stddef.h>
#include <stdint.h>

#include "cl_runtime.h"
#include "error.h"
#include "vae.h"

#define EVAL_ROWS 4096             // images encoded, and samples decoded, at once
#define EVAL_LOG_WEIGHTS (1 << 22) // log-weights held on the device at once (16 MiB)
#define EVAL_MAX_K 1000000

// The importance-weighted bound's device state for one model: k samples per image, log-weights
// for up to `group` images at once.
struct iwae {
    struct vae *vae;
    int k, group;
    cl_mem log_w; // (group, k): log p(x|z) + log p(z) - log q(z|x) of each image's samples
    cl_kernel k_sample, k_log_likelihood, k_logsumexp;
    // A conditional model's: each image's class by its number in the data set (first_image + i),
    // borrowed, set by the caller after iwae_create; the samples decode as their image's class.
    const int32_t *labels;
    int *row_labels; // (vae->max_rows) the classes of the samples decoded at once
};

// Sizes group to max(1, min(vae->max_rows, max_log_weights / k)) images and creates log_w.
int iwae_create(struct iwae *iw, struct vae *vae, int k, size_t max_log_weights,
                struct clvae_error *err);
void iwae_release(struct iwae *iw);

// log_w (images, k) = the log-weights of images image0 .. image0 + images - 1 (images <= group) of
// the batch in vae->x, whose [mu | logvar] vae->ml holds (vae_forward ran on the batch). The
// batch's first image is image number first_image of the data set: the noise depends on
// (seed, image number, sample) alone. Decodes up to vae->max_rows samples at a time; enqueued.
void iwae_log_weights(struct iwae *iw, int image0, int images, uint64_t first_image, uint64_t seed);

// bound[offset + i] = log (1/k) sum_j exp(log_w[i, j]) for i < images, stably; enqueued.
void iwae_logsumexp(struct iwae *iw, int images, cl_mem bound, int offset);

// bound[offset + i] = the IWAE lower bound on log p(x) of image i of the batch in vae->x, for
// i < rows, in groups of iw->group images; as iwae_log_weights, vae_forward must have run on it.
void iwae_bound(struct iwae *iw, int rows, uint64_t first_image, uint64_t seed, cl_mem bound,
                int offset);

#endif
