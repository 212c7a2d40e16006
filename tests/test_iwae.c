// Tests of the importance-weighted bound (src/model/iwae.c, cl/iwae.cl) on the OpenCL device:
// (a) the log-weights log p(x|z) + log p(z) - log q(z|x) against a double-precision C reference
//     that draws the same Philox noise, across chunks and image groups, and the stable logsumexp
//     on extreme inputs (spreads of 1e4, values that would overflow or underflow exp, -inf, NaN);
// (b) k = 1: the bound is the one log-weight, and the mean log-weight over many samples is
//     -(rec + analytic KL) within its standard error;
// (c) the mean bound does not get worse as k goes 1, 10, 100, 1000 (paired over images);
// (d) on a model trained here for a few hundred steps on synthetic data, the negative IWAE bound
//     lies below the negative ELBO, and the k = 1 bound agrees with the ELBO in expectation.
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cl_runtime.h"
#include "evaluate.h"
#include "optimizer.h"
#include "philox.h"
#include "ref_model.h"
#include "test_util.h"
#include "vae.h"

#define GUARD 5        // guard cells (TU_SENTINEL) before and after the bounds written
#define LOGW_ATOL 2e-4 // device log-weight against the double reference: abs + rel of |want|
#define LOGW_RTOL 2e-5
#define LSE_ATOL 1e-5 // logsumexp of given float inputs: abs + rel of |want|
#define LSE_RTOL 3e-7
#define STAT_SIGMAS 4.0 // statistical checks: allowed distance in standard errors

static struct clrt rt;

// The model's parameters as the device holds them, in double.
static double *params_of(const struct vae *vae)
{
    float *f = tu_alloc(vae->n_params, sizeof(float));
    double *d = tu_alloc(vae->n_params, sizeof(double));
    clrt_parts_read(&rt, &vae->params, f, true);
    for (size_t i = 0; i < vae->n_params; i++)
        d[i] = f[i];
    free(f);
    return d;
}

// z (latent) -> log p(x|z) = -(sum over pixels of the likelihood's -log p of x given the
// decoder's logits).
static double ref_log_px(const struct vae *vae, const double *params, const double *z,
                         const float *x)
{
    double logits[512];
    ref_decode(vae, params, z, 1, logits, NULL);
    double sum = 0.0;
    for (int j = 0; j < vae->cfg.in_dim; j++)
        sum += ref_bernoulli_nll(logits[j], x[j]);
    return -sum;
}

// The reference log-weights of images image0 .. image0 + images - 1 of a batch: ml (batch, 2
// latent) and x (batch, in_dim) as the device holds them, the batch's first image being number
// first_image -> log_w (images, k), and where not NULL log_px, log_ratio (images, k): log p(x|z)
// and log p(z) - log q(z|x).
static void ref_log_weights(const struct vae *vae, const double *params, const float *ml,
                            const float *x, int image0, int images, int k, uint64_t first_image,
                            uint64_t seed, double *log_w, double *log_px, double *log_ratio)
{
    int latent = vae->cfg.latent, dim = vae->cfg.in_dim;
    const double half_log_2pi = 0.5 * log(2.0 * 3.14159265358979323846);
    double z[64];
    for (int i = 0; i < images; i++) {
        int b = image0 + i;
        uint64_t number = first_image + (uint64_t)b;
        for (int j = 0; j < k; j++) {
            double lp = 0.0, lq = 0.0;
            for (int d = 0; d < latent; d++) {
                double mu = ml[(size_t)b * 2 * latent + d];
                double logvar = ml[(size_t)b * 2 * latent + latent + d];
                double e =
                    philox_normal(seed, (uint32_t)(j * latent + d), number, PHILOX_STREAM_IWAE);
                z[d] = mu + exp(0.5 * logvar) * e;
                lp += -half_log_2pi - 0.5 * z[d] * z[d];
                lq += -half_log_2pi - 0.5 * logvar - 0.5 * (z[d] - mu) * (z[d] - mu) / exp(logvar);
            }
            double px = ref_log_px(vae, params, z, x + (size_t)b * dim);
            size_t at = (size_t)i * k + j;
            log_w[at] = px + lp - lq;
            if (log_px)
                log_px[at] = px;
            if (log_ratio)
                log_ratio[at] = lp - lq;
        }
    }
}

// log (1/k) sum_j exp(v[j]) in double, max-subtracted; NaN if any v is, +-inf if the largest is.
static double ref_logsumexp(const double *v, int k)
{
    double m = -INFINITY;
    for (int j = 0; j < k; j++) {
        if (isnan(v[j]))
            return NAN;
        m = v[j] > m ? v[j] : m;
    }
    if (isinf(m))
        return m;
    double sum = 0.0;
    for (int j = 0; j < k; j++)
        sum += exp(v[j] - m);
    return m + log(sum) - log((double)k);
}

// A model of cfg for max_rows rows with parameters uniform in +-scale (scale 0: PyTorch's init).
static void make_model(struct vae *vae, const struct vae_config *cfg, int max_rows, double scale,
                       uint64_t seed)
{
    struct clvae_error err;
    tu_die_on(vae_create(vae, &rt, cfg, max_rows, "test_iwae", &err), &err);
    float *p = tu_alloc(vae->n_params, sizeof(float));
    if (scale == 0.0)
        vae_init_params_host(vae, seed, p);
    else
        for (size_t i = 0; i < vae->n_params; i++)
            p[i] = (float)(scale * (2.0 * philox_uniform(seed, (uint32_t)i, 1, 99) - 1.0));
    clrt_parts_write(&rt, &vae->params, p, true);
    free(p);
}

// n images of dim pixels uniform in [0, 1], on the 1/255 grid the data's bytes give.
static float *random_images(int n, int dim, uint64_t seed)
{
    float *x = tu_alloc((size_t)n * dim, sizeof(float));
    for (int i = 0; i < n * dim; i++)
        x[i] = (float)floor(256.0 * philox_uniform(seed, (uint32_t)i, 7, 99)) / 255.0f;
    return x;
}

#define LOSS_ROWS 1024
static cl_mem rec_buf, kl_buf; // (LOSS_ROWS) the per-image losses of encode's forward passes

// x (rows, in_dim) -> vae->x, then one noisy forward pass (Philox step `step`) -> vae->ml, and
// rec, kl (rows) the one-sample losses when not NULL.
static void encode(struct vae *vae, const float *x, int rows, uint64_t seed, uint64_t step,
                   float *rec, float *kl)
{
    tu_write(&rt, vae->x, x, (size_t)rows * vae->cfg.in_dim * sizeof(float));
    struct vae_pass pass = {.rows = rows,
                            .seed = seed,
                            .step = step,
                            .stream = PHILOX_STREAM_EVAL,
                            .noise_scale = 1.0f,
                            .rec = rec_buf,
                            .kl = kl_buf};
    vae_forward(vae, &pass);
    if (rec)
        tu_download(&rt, rec_buf, rec, (size_t)rows * sizeof(float));
    if (kl)
        tu_download(&rt, kl_buf, kl, (size_t)rows * sizeof(float));
}

// n images x (n, in_dim) in batches of vae->max_rows, numbered from 0 -> bound (n) the IWAE
// bound on log p(x) with k samples, and neg_elbo (n) the one-sample negative ELBO when not NULL.
static void iwae_bounds(struct vae *vae, const float *x, int n, int k, uint64_t seed, double *bound,
                        double *neg_elbo)
{
    struct clvae_error err;
    struct iwae iw;
    tu_die_on(iwae_create(&iw, vae, k, 1 << 16, &err), &err);
    cl_mem dev = tu_buffer(&rt, (size_t)n * sizeof(float), "bounds");
    float *rec = tu_alloc((size_t)vae->max_rows, sizeof(float));
    float *kl = tu_alloc((size_t)vae->max_rows, sizeof(float));
    float *got = tu_alloc((size_t)n, sizeof(float));
    for (int start = 0; start < n; start += vae->max_rows) {
        int rows = n - start < vae->max_rows ? n - start : vae->max_rows;
        encode(vae, x + (size_t)start * vae->cfg.in_dim, rows, seed, (uint64_t)start, rec, kl);
        iwae_bound(&iw, rows, (uint64_t)start, seed, dev, start);
        for (int i = 0; neg_elbo && i < rows; i++)
            neg_elbo[start + i] = (double)rec[i] + (double)kl[i];
    }
    tu_download(&rt, dev, got, (size_t)n * sizeof(float));
    for (int i = 0; i < n; i++)
        bound[i] = got[i];
    clReleaseMemObject(dev);
    iwae_release(&iw);
    free(rec);
    free(kl);
    free(got);
}

// Mean and standard error of v (n).
static void mean_se(const double *v, int n, double *mean, double *se)
{
    double sum = 0.0, ss = 0.0;
    for (int i = 0; i < n; i++)
        sum += v[i];
    *mean = sum / n;
    for (int i = 0; i < n; i++)
        ss += (v[i] - *mean) * (v[i] - *mean);
    *se = sqrt(ss / (n - 1) / n);
}

// The small model of (a) to (c): two hidden layers, parameters uniform in +-0.5 so that the
// posterior is far from the prior and the log-weights spread.
static const struct vae_config small_cfg = CFG2(20, 16, 12, 4);

// (a) iwae_log_weights and iwae_bound against the reference: 6 images, k = 7, 16 rows a chunk
// (chunks straddle images), groups of 3 images, image numbers past 2^32; the reductions run with
// work-groups of `local` items (0: the device's own choice, vae->reduce_local).
static void test_log_weights(size_t local)
{
    struct clvae_error err;
    struct vae vae;
    make_model(&vae, &small_cfg, 16, 0.5, 5);
    if (local)
        vae.likelihood.reduce_local = local;
    printf("(a) reductions in work-groups of %zu\n", vae.likelihood.reduce_local);
    int images = 6, k = 7, latent = small_cfg.latent, dim = small_cfg.in_dim;
    uint64_t seed = 0x123456789abcull, first = ((uint64_t)1 << 32) + 17;
    float *x = random_images(images, dim, 3);
    encode(&vae, x, images, seed, 0, NULL, NULL);
    float *ml = tu_alloc((size_t)images * 2 * latent, sizeof(float));
    tu_download(&rt, vae.ml, ml, (size_t)images * 2 * latent * sizeof(float));
    double *params = params_of(&vae);

    struct iwae iw;
    tu_die_on(iwae_create(&iw, &vae, k, 3 * (size_t)k, &err), &err);
    tu_check(iw.group == 3,
             "iwae_create: %d log-weights of k = %d hold a group of %d images (want 3)", 3 * k, k,
             iw.group);
    double *want = tu_alloc((size_t)images * k, sizeof(double));
    float *got = tu_alloc((size_t)images * k, sizeof(float));
    iwae_log_weights(&iw, 2, 3, first, seed);
    tu_download(&rt, iw.log_w, got, (size_t)3 * k * sizeof(float));
    ref_log_weights(&vae, params, ml, x, 2, 3, k, first, seed, want, NULL, NULL);
    double lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < 3 * k; i++) {
        lo = want[i] < lo ? want[i] : lo;
        hi = want[i] > hi ? want[i] : hi;
    }
    printf("(a) log-weights of images 2..4 (k %d, image numbers from 2^32 + 19): %.2f to %.2f\n", k,
           lo, hi);
    tu_compare("(a) iwae_log_weights (3 images x 7 samples, chunks of 16 rows) against the double "
               "reference",
               got, want, NULL, (size_t)3 * k, LOGW_ATOL, LOGW_RTOL);

    // The whole batch in two groups, written at offset GUARD of a guarded buffer.
    size_t n_out = (size_t)images + 2 * GUARD;
    float *out = tu_alloc(n_out, sizeof(float));
    tu_fill_guard(out, 0, n_out);
    cl_mem bound = tu_upload(&rt, out, n_out * sizeof(float), "bounds");
    iwae_bound(&iw, images, first, seed, bound, GUARD);
    tu_download(&rt, bound, out, n_out * sizeof(float));
    ref_log_weights(&vae, params, ml, x, 0, images, k, first, seed, want, NULL, NULL);
    double want_bound[16];
    for (int i = 0; i < images; i++)
        want_bound[i] = ref_logsumexp(want + (size_t)i * k, k);
    tu_compare("(a) iwae_bound (6 images in groups of 3, k 7) against the double reference",
               out + GUARD, want_bound, NULL, (size_t)images, LOGW_ATOL, LOGW_RTOL);
    int touched = tu_changed(out, 0, GUARD) + tu_changed(out, GUARD + images, n_out);
    tu_check(touched == 0, "(a) iwae_bound: %d guard cells around the bounds changed (want 0)",
             touched);

    clReleaseMemObject(bound);
    iwae_release(&iw);
    vae_release(&vae);
    free(x);
    free(ml);
    free(params);
    free(want);
    free(got);
    free(out);
}

// (a) iwae_logsumexp on given log-weights: rows of k values with extreme spreads and special
// values, against ref_logsumexp of the same floats; work-groups of `local` items as above.
static void test_logsumexp(int k, size_t local)
{
    enum { ROWS = 9 };
    struct clvae_error err;
    struct vae vae;
    make_model(&vae, &small_cfg, 16, 0.5, 5);
    if (local)
        vae.likelihood.reduce_local = local;
    struct iwae iw;
    tu_die_on(iwae_create(&iw, &vae, k, (size_t)ROWS * k, &err), &err);
    float *lw = tu_alloc((size_t)ROWS * k, sizeof(float));
    double *lw_d = tu_alloc((size_t)ROWS * k, sizeof(double));
    for (int r = 0; r < ROWS; r++) {
        for (int j = 0; j < k; j++) {
            double u = philox_uniform(9, (uint32_t)(r * k + j), 3, 99), v;
            switch (r) {
            case 0: v = -1e4 * u; break;                            // spread over 1e4, max near 0
            case 1: v = -1e4; break;                                // all equal, far below 0
            case 2: v = 150.0 + 100.0 * u; break;                   // exp overflows float
            case 3: v = -1e4 + 5.0 * u; break;                      // exp underflows to 0
            case 4: v = j == k / 2 ? 80.0 : -1e4 * u; break;        // one dominant weight
            case 5: v = j % 3 == 0 ? -INFINITY : -300.0 * u; break; // some zero weights
            case 6: v = -INFINITY; break;                           // every weight zero
            case 7: v = j == k - 1 ? NAN : u; break;                // a NaN propagates
            default: v = -50.0 + 40.0 * u; break;                   // ordinary
            }
            if (k == 1 && r == 5)
                v = -INFINITY;
            lw[r * k + j] = (float)v;
            lw_d[r * k + j] = (double)lw[r * k + j];
        }
    }
    tu_write(&rt, iw.log_w, lw, (size_t)ROWS * k * sizeof(float));
    float out[ROWS + 2 * GUARD];
    tu_fill_guard(out, 0, ROWS + 2 * GUARD);
    cl_mem bound = tu_upload(&rt, out, sizeof out, "bounds");
    iwae_logsumexp(&iw, ROWS, bound, GUARD);
    tu_download(&rt, bound, out, sizeof out);
    double want[ROWS];
    for (int r = 0; r < ROWS; r++)
        want[r] = ref_logsumexp(lw_d + (size_t)r * k, k);
    char what[200];
    snprintf(what, sizeof what,
             "(a) iwae_logsumexp, k %d, work-group %zu: spread 1e4, all -1e4, 150..250, "
             "-1e4..-9995, one at 80, some -inf, all -inf (%g), a NaN (%g), ordinary",
             k, vae.likelihood.reduce_local, (double)out[GUARD + 6], (double)out[GUARD + 7]);
    tu_compare(what, out + GUARD, want, NULL, ROWS, LSE_ATOL, LSE_RTOL);
    int touched = tu_changed(out, 0, GUARD) + tu_changed(out, GUARD + ROWS, ROWS + 2 * GUARD);
    tu_check(touched == 0, "(a) iwae_logsumexp k %d: %d guard cells changed (want 0)", k, touched);
    clReleaseMemObject(bound);
    iwae_release(&iw);
    vae_release(&vae);
    free(lw);
    free(lw_d);
}

// (b) k = 1: each bound is its one log-weight, which is the reference's log p(x|z) + log p(z) -
// log q(z|x); over many samples the mean log-weight is -(E rec + analytic KL).
static void test_one_sample(void)
{
    struct clvae_error err;
    struct vae vae;
    make_model(&vae, &small_cfg, 16, 0.5, 5);
    int images = 4, latent = small_cfg.latent, dim = small_cfg.in_dim;
    uint64_t seed = 77;
    float *x = random_images(images, dim, 4);
    float kl[16];
    encode(&vae, x, images, seed, 0, NULL, kl);
    float *ml = tu_alloc((size_t)images * 2 * latent, sizeof(float));
    tu_download(&rt, vae.ml, ml, (size_t)images * 2 * latent * sizeof(float));
    double *params = params_of(&vae);

    struct iwae iw;
    tu_die_on(iwae_create(&iw, &vae, 1, 1 << 16, &err), &err);
    cl_mem bound = tu_buffer(&rt, (size_t)images * sizeof(float), "bounds");
    iwae_bound(&iw, images, 0, seed, bound, 0);
    float got_bound[16], got_lw[16];
    tu_download(&rt, bound, got_bound, (size_t)images * sizeof(float));
    tu_download(&rt, iw.log_w, got_lw,
                (size_t)images * sizeof(float)); // the last group: all 4 images
    int differ = 0;
    for (int i = 0; i < images; i++)
        differ += got_bound[i] != got_lw[i];
    tu_check(differ == 0, "(b) k = 1: %d of %d bounds differ from their one log-weight (want 0)",
             differ, images);
    double want[16], px[16], ratio[16];
    ref_log_weights(&vae, params, ml, x, 0, images, 1, 0, seed, want, px, ratio);
    tu_compare("(b) k = 1 bound = log p(x|z) + log p(z) - log q(z|x) of the reference, same noise",
               got_bound, want, NULL, (size_t)images, LOGW_ATOL, LOGW_RTOL);
    clReleaseMemObject(bound);
    iwae_release(&iw);

    // E_q[log w] = E_q[log p(x|z)] - KL(q || p): paired on the same samples, the difference
    // log w + rec + KL = log p(z) - log q(z|x) + KL has mean 0.
    int k = 4096;
    tu_die_on(iwae_create(&iw, &vae, k, (size_t)images * k, &err), &err);
    iwae_log_weights(&iw, 0, images, 0, seed);
    float *lw = tu_alloc((size_t)images * k, sizeof(float));
    double *ref_w = tu_alloc((size_t)images * k, sizeof(double));
    double *ref_px = tu_alloc((size_t)images * k, sizeof(double));
    double *diff = tu_alloc((size_t)k, sizeof(double));
    tu_download(&rt, iw.log_w, lw, (size_t)images * k * sizeof(float));
    ref_log_weights(&vae, params, ml, x, 0, images, k, 0, seed, ref_w, ref_px, NULL);
    tu_compare("(b) 4 images x 4096 log-weights against the reference", lw, ref_w, NULL,
               (size_t)images * k, LOGW_ATOL, LOGW_RTOL);
    for (int i = 0; i < images; i++) {
        double mean_w = 0.0, mean_rec = 0.0, mean_d, se_d;
        for (int j = 0; j < k; j++) {
            size_t at = (size_t)i * k + j;
            mean_w += lw[at] / (double)k;
            mean_rec += -ref_px[at] / (double)k;
            diff[j] = (double)lw[at] + (-ref_px[at]) + (double)kl[i];
        }
        mean_se(diff, k, &mean_d, &se_d);
        tu_check(
            fabs(mean_d) <= STAT_SIGMAS * se_d,
            "(b) image %d: mean log w over %d samples %.4f, -(E rec %.4f + analytic KL %.4f) = "
            "%.4f: difference %.4f, %.2f standard errors (allowed %g)",
            i, k, mean_w, mean_rec, (double)kl[i], -(mean_rec + kl[i]), mean_d, mean_d / se_d,
            STAT_SIGMAS);
    }
    iwae_release(&iw);
    vae_release(&vae);
    free(x);
    free(ml);
    free(params);
    free(lw);
    free(ref_w);
    free(ref_px);
    free(diff);
}

// (c) On 64 images, the mean bound over images for k = 1, 10, 100, 1000 (nested samples: the
// first k of image n are the same for every k) does not decrease beyond its paired standard error.
static void test_growing_k(void)
{
    struct vae vae;
    make_model(&vae, &small_cfg, 16, 0.5, 5);
    int images = 64;
    uint64_t seed = 2024;
    float *x = random_images(images, small_cfg.in_dim, 6);
    static const int ks[] = {1, 10, 100, 1000};
    enum { NK = sizeof ks / sizeof ks[0] };
    double *bound[NK], mean[NK], se[NK];
    double *diff = tu_alloc((size_t)images, sizeof(double));
    for (int t = 0; t < NK; t++) {
        bound[t] = tu_alloc((size_t)images, sizeof(double));
        iwae_bounds(&vae, x, images, ks[t], seed, bound[t], NULL);
        mean_se(bound[t], images, &mean[t], &se[t]);
        printf("(c) k %4d: negative IWAE bound %.4f nats/image (std err %.4f)\n", ks[t], -mean[t],
               se[t]);
    }
    for (int t = 1; t < NK; t++) {
        double m, s;
        for (int i = 0; i < images; i++)
            diff[i] = bound[t][i] - bound[t - 1][i];
        mean_se(diff, images, &m, &s);
        tu_check(m >= -3.0 * s,
                 "(c) k %d -> %d: the bound rises by %.4f nats/image (paired std err %.4f; allowed "
                 "drop 3 std err)",
                 ks[t - 1], ks[t], m, s);
    }
    for (int t = 0; t < NK; t++)
        free(bound[t]);
    free(diff);
    free(x);
    vae_release(&vae);
}

// (d) A 36-4-... model trained here on noisy copies of 4 binary prototypes: the negative IWAE
// bound (k 100) lies below the negative ELBO, and the k = 1 bound matches the ELBO in expectation.
static void test_trained(void)
{
    struct clvae_error err;
    const struct vae_config cfg = CFG1(36, 32, 2);
    enum { BATCH = 64, STEPS = 400, TEST = 512, PROTOS = 4 };
    struct vae vae;
    make_model(&vae, &cfg, BATCH, 0.0, 8);
    struct optimizer adam;
    const struct optimizer_config adam_cfg = optimizer_defaults(optimizer_find("adam"));
    tu_die_on(optimizer_create(&adam, &rt, &vae.params, &adam_cfg, &err), &err);
    int dim = cfg.in_dim;
    // Image i: prototype i % PROTOS with each pixel flipped with probability 0.05.
    float *data = tu_alloc((size_t)(STEPS * BATCH + TEST) * dim, sizeof(float));
    for (int i = 0; i < STEPS * BATCH + TEST; i++)
        for (int j = 0; j < dim; j++) {
            int proto = philox_uniform(31, (uint32_t)((i % PROTOS) * dim + j), 0, 99) < 0.5;
            bool flip = philox_uniform(32, (uint32_t)(i * dim + j), 0, 99) < 0.05;
            data[(size_t)i * dim + j] = (float)(proto ^ flip);
        }
    cl_mem rec = tu_buffer(&rt, BATCH * sizeof(float), "rec"),
           kl = tu_buffer(&rt, BATCH * sizeof(float), "kl");
    float first_loss = 0.0f, last_loss = 0.0f, host_rec[BATCH], host_kl[BATCH];
    for (int step = 0; step < STEPS; step++) {
        tu_write(&rt, vae.x, data + (size_t)step * BATCH * dim,
                 (size_t)BATCH * dim * sizeof(float));
        struct vae_pass pass = {.rows = BATCH,
                                .seed = 8,
                                .step = (uint64_t)step,
                                .stream = PHILOX_STREAM_TRAIN,
                                .noise_scale = 1.0f,
                                .rec = rec,
                                .kl = kl,
                                .grad_scale = 1.0f / BATCH};
        vae_forward(&vae, &pass);
        vae_backward(&vae, &pass, 1.0f);
        optimizer_step(&adam, &vae.params, &vae.grads, step + 1, 1e-2);
        if (step == 0 || step == STEPS - 1) {
            tu_download(&rt, rec, host_rec, sizeof host_rec);
            tu_download(&rt, kl, host_kl, sizeof host_kl);
            float sum = 0.0f;
            for (int i = 0; i < BATCH; i++)
                sum += host_rec[i] + host_kl[i];
            *(step == 0 ? &first_loss : &last_loss) = sum / BATCH;
        }
    }
    printf("(d) trained %d steps of %d: training -ELBO %.3f -> %.3f nats/image\n", STEPS, BATCH,
           (double)first_loss, (double)last_loss);
    tu_check(last_loss < 0.5f * first_loss, "(d) training lowered the loss by half or more");

    const float *test = data + (size_t)STEPS * BATCH * dim;
    double *neg_elbo = tu_alloc(TEST, sizeof(double)), *b1 = tu_alloc(TEST, sizeof(double));
    double *b100 = tu_alloc(TEST, sizeof(double)), *diff = tu_alloc(TEST, sizeof(double));
    iwae_bounds(&vae, test, TEST, 1, 5, b1, neg_elbo);
    iwae_bounds(&vae, test, TEST, 100, 5, b100, NULL);
    double elbo_m, elbo_s, m1, s1, m100, s100, dm, ds;
    mean_se(neg_elbo, TEST, &elbo_m, &elbo_s);
    mean_se(b1, TEST, &m1, &s1);
    mean_se(b100, TEST, &m100, &s100);
    printf("(d) %d test images: -ELBO %.4f (se %.4f), -IWAE k 1 %.4f (se %.4f), -IWAE k 100 %.4f "
           "(se %.4f)\n",
           TEST, elbo_m, elbo_s, -m1, s1, -m100, s100);
    for (int i = 0; i < TEST; i++)
        diff[i] = neg_elbo[i] - (-b100[i]);
    mean_se(diff, TEST, &dm, &ds);
    tu_check(
        dm > 0.0 && dm > 3.0 * ds,
        "(d) -IWAE (k 100) below -ELBO by %.4f nats/image (paired std err %.4f; want > 3 std err)",
        dm, ds);
    for (int i = 0; i < TEST; i++)
        diff[i] = neg_elbo[i] - (-b1[i]);
    mean_se(diff, TEST, &dm, &ds);
    tu_check(fabs(dm) <= STAT_SIGMAS * ds,
             "(d) -ELBO minus -IWAE (k 1): %.4f nats/image, %.2f paired std errors (allowed %g): "
             "the one-sample bound is the ELBO in expectation",
             dm, dm / ds, STAT_SIGMAS);

    clReleaseMemObject(rec);
    clReleaseMemObject(kl);
    optimizer_release(&adam);
    vae_release(&vae);
    free(data);
    free(neg_elbo);
    free(b1);
    free(b100);
    free(diff);
}

int main(void)
{
    tu_init("test_iwae");
    tu_open_device(&rt);
    rec_buf = tu_buffer(&rt, LOSS_ROWS * sizeof(float), "rec");
    kl_buf = tu_buffer(&rt, LOSS_ROWS * sizeof(float), "kl");
    // The device's own work-group size for the reductions (1 on CPUs), then 32 items, so that
    // both the plain loop and the tree reduction in local memory are tested on every device.
    static const size_t locals[] = {0, 32};
    for (int i = 0; i < 2; i++) {
        test_log_weights(locals[i]);
        test_logsumexp(1000, locals[i]);
        test_logsumexp(13, locals[i]);
        test_logsumexp(1, locals[i]);
    }
    test_one_sample();
    test_growing_k();
    test_trained();
    clReleaseMemObject(rec_buf);
    clReleaseMemObject(kl_buf);
    clrt_close(&rt);
    return tu_summary();
}
