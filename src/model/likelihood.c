// The likelihoods as rows of one table: name, decoder outputs a pixel takes, whether its
// negative log-likelihoods are code lengths of 8-bit pixels, its per-pixel kernel and its host
// mean. A new likelihood is a row here, its LIKELIHOOD_* number (likelihood.h, cl/likelihood.cl)
// and its kernel.
#include "likelihood.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "error.h"

// The mean of the discretised logistic (cl/likelihood.cl) with location mu and log-scale u:
// sum_k k/255 P(k) = (1/255) sum_{k=1}^{255} P(level >= k) = (1/255) sum_k sigmoid(-(e_k - mu) /
// s), e_k = (k - 1/2) / 255 the edge below level k. Edges more than 30 scales below mu count 1
// (within 1e-13), those above count 0, so a narrow logistic costs a few terms.
static float logistic_mean(float mu, float u)
{
    double s = exp(fmin(fmax(u, -7.0), 15.0)), sum = 0.0;
    double lo = (mu - 30.0 * s) * 255.0 + 0.5, hi = (mu + 30.0 * s) * 255.0 + 0.5;
    int first = lo < 1 ? 1 : lo > 256 ? 256 : (int)ceil(lo);
    int last = hi > 255 ? 255 : hi < 0 ? 0 : (int)floor(hi);
    sum += first - 1; // every edge below the window
    for (int k = first; k <= last; k++)
        sum += 1.0 / (1.0 + exp(((k - 0.5) / 255.0 - mu) / s));
    return (float)(sum / 255.0);
}

// Pixel j's expected value from out, an image's decoder outputs: the sigmoid of its logit.
static float bernoulli_pixel_mean(const float *out, int j, int channels)
{
    (void)channels;
    return 1.0f / (1.0f + expf(-out[j]));
}

// The logistic's: pixel p's channel c has its mean at out[p 2C + c], its log-scale C after.
static float logistic_pixel_mean(const float *out, int j, int channels)
{
    int p = j / channels, c = j % channels;
    const float *px = out + (size_t)p * 2 * (size_t)channels;
    return logistic_mean(px[c], px[channels + c]);
}

static const struct {
    const char *name;
    int outputs;   // decoder outputs a pixel value takes
    bool discrete; // negative log-likelihoods of 8-bit pixels (bits per dimension a code length)
    // (out, x, dout, terms, rows, dim, channels, scale) -> terms (rows, dim) each pixel's
    // negative log-likelihood, and dout = scale * its gradient in out. Range: (dim, rows).
    const char *kernel;
    // The same gradient and each row's sum into rec[rec_offset + r] in one launch, a work-item a
    // row taking 16 values a step (on CPUs: the same bits), terms left unwritten but for each
    // row's last values, or NULL: the kernel and row_sum there too.
    const char *rows16_kernel;
    // Pixel j's expected value in [0, 1] from out, an image's decoder outputs.
    float (*mean)(const float *out, int j, int channels);
} kinds[] = {
    [LIKELIHOOD_BERNOULLI] = {"bernoulli", 1, false, "bce_logits_grad", "bce_logits_grad_rows16",
                              bernoulli_pixel_mean},
    [LIKELIHOOD_LOGISTIC] = {"logistic", 2, true, "logistic_nll_grad", "logistic_nll_grad_rows16",
                             logistic_pixel_mean},
};

#define N_KINDS ((int)(sizeof kinds / sizeof kinds[0]))

int likelihood_outputs(enum likelihood_kind kind)
{
    return kinds[kind].outputs;
}

const char *likelihood_name(enum likelihood_kind kind)
{
    return kinds[kind].name;
}

// "bernoulli or logistic": every kind's name.
static void list_names(char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int k = 0; k < N_KINDS && used < len; k++) {
        const char *sep = k == 0 ? "" : k + 1 == N_KINDS ? " or " : ", ";
        int w = snprintf(buf + used, len - used, "%s%s", sep, kinds[k].name);
        used += w > 0 ? (size_t)w : 0;
    }
}

int likelihood_parse(const char *option, const char *name, enum likelihood_kind *kind,
                     struct clvae_error *err)
{
    for (int k = 0; k < N_KINDS; k++) {
        if (strcmp(name, kinds[k].name) == 0) {
            *kind = (enum likelihood_kind)k;
            return 0;
        }
    }
    char names[256];
    list_names(names, sizeof names);
    return clvae_fail(err, CLVAE_EXIT_USAGE, "%s: '%s' is not a likelihood (%s)", option, name,
                      names);
}

bool likelihood_discrete(enum likelihood_kind kind)
{
    return kinds[kind].discrete;
}

void likelihood_mean(enum likelihood_kind kind, const float *out, int rows, int dim, int channels,
                     float *mean)
{
    size_t row_outputs = (size_t)dim * (size_t)kinds[kind].outputs;
    for (size_t r = 0; r < (size_t)rows; r++)
        for (int j = 0; j < dim; j++)
            mean[r * (size_t)dim + (size_t)j] =
                kinds[kind].mean(out + r * row_outputs, j, channels);
}

// The largest power of two <= limit and <= want.
static size_t pow2_at_most(size_t limit, size_t want)
{
    size_t p = 1;
    while (p * 2 <= limit && p * 2 <= want)
        p *= 2;
    return p;
}

void likelihood_create(struct likelihood *lh, struct clrt *rt, enum likelihood_kind kind, int dim,
                       int channels)
{
    *lh = (struct likelihood){.kind = kind, .rt = rt, .dim = dim, .channels = channels};
    lh->k_forward = clrt_kernel(rt, kinds[kind].kernel);
    lh->k_row_sum = clrt_kernel(rt, "row_sum");
    size_t kernel_max = clrt_kernel_max_group(rt, lh->k_row_sum);
    // A CPU runs a work-group's items one after another: one item a row, no barriers. A GPU
    // wants the row spread over a work-group.
    lh->reduce_local = rt->device_type & CL_DEVICE_TYPE_CPU ? 1 : pow2_at_most(kernel_max, 256);
    // On a CPU, where the row sums are one item's loop, the values and the sums in one launch, a
    // row an item (the same bits: cl/likelihood.cl).
    if (lh->reduce_local == 1 && kinds[kind].rows16_kernel)
        lh->k_rows = clrt_kernel(rt, kinds[kind].rows16_kernel);
}

void likelihood_release(struct likelihood *lh)
{
    clrt_release_kernel(lh->k_forward);
    clrt_release_kernel(lh->k_row_sum);
    clrt_release_kernel(lh->k_rows);
    *lh = (struct likelihood){0};
}

struct clrt_rows_likelihood likelihood_rows_fold(const struct likelihood *lh,
                                                 const struct likelihood_buffers *b, cl_mem rec,
                                                 int offset, float grad_scale)
{
    if (!lh->k_rows)
        return (struct clrt_rows_likelihood){0};
    // cl/likelihood.cl's LIKELIHOOD_* are enum likelihood_kind's values.
    return (struct clrt_rows_likelihood){.on = true,
                                         .kind = (int)lh->kind,
                                         .x = b->x,
                                         .dout = b->dout,
                                         .terms = b->terms,
                                         .rec = rec,
                                         .dim = lh->dim,
                                         .channels = lh->channels,
                                         .rec_offset = offset,
                                         .scale = grad_scale};
}

void likelihood_forward(const struct likelihood *lh, const struct likelihood_buffers *b, int rows,
                        cl_mem rec, int offset, float grad_scale)
{
    int dim = lh->dim, channels = lh->channels;
    cl_kernel k = lh->k_rows ? lh->k_rows : lh->k_forward;
    cl_uint a = 0;
    KARG(k, a++, b->out);
    KARG(k, a++, b->x);
    KARG(k, a++, b->dout);
    KARG(k, a++, b->terms);
    KARG(k, a++, rows);
    KARG(k, a++, dim);
    KARG(k, a++, channels);
    KARG(k, a++, grad_scale);
    if (lh->k_rows) {
        KARG(k, a++, rec);
        KARG(k, a++, offset);
        clrt_launch(lh->rt, k, 1, (size_t[]){(size_t)rows}, NULL);
        return;
    }
    size_t pixels[2] = {(size_t)dim, (size_t)rows};
    clrt_launch(lh->rt, k, 2, pixels, NULL);

    k = lh->k_row_sum;
    size_t local = lh->reduce_local, groups = (size_t)rows * local;
    a = 0;
    KARG(k, a++, b->terms);
    KARG(k, a++, rec);
    KARG(k, a++, offset);
    KARG(k, a++, dim);
    KARG_LOCAL(k, a++, local * sizeof(float));
    clrt_launch(lh->rt, k, 1, &groups, &local);
}
