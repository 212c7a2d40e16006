// Tests for cl/*.cl: every kernel against a plain C reference (double where it helps) on random
// inputs of odd sizes, on the real OpenCL device. Each comparison prints the largest absolute and
// relative error it saw and its tolerance; output buffers carry guard cells past the end (and
// before an offset) that must come back untouched.
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cl_runtime.h"
#include "likelihood.h"
#include "optimizer.h"
#include "philox.h"
#include "ref_model.h"
#include "sampler.h"
#include "test_util.h"

#define GUARD 37 // guard cells (holding TU_SENTINEL) after (and before offsets into) every output

static struct clrt rt;
static uint64_t rng_state = 0x2545F4914F6CDD1Dull;

// The next draw of a fixed-seed xorshift64* stream as a double uniform in [0, 1).
static double rng_uniform(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (double)((rng_state * 0x2545F4914F6CDD1Dull) >> 11) / 9007199254740992.0;
}

// A float uniform in [lo, hi).
static float rng_range(double lo, double hi)
{
    return (float)(lo + (hi - lo) * rng_uniform());
}

// A uniform integer in [0, n).
static int rng_int(int n)
{
    return (int)(rng_uniform() * n);
}

// Random123's known-answer vectors for Philox4x32-10 against the host philox4x32_10.
static void test_philox_known_answers(void)
{
    static const struct {
        uint32_t ctr[4], key[2], out[4];
    } kat[] = {
        {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
        {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff},
         {0xffffffff, 0xffffffff},
         {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
        {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344},
         {0xa4093822, 0x299f31d0},
         {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
    };
    for (size_t t = 0; t < sizeof kat / sizeof kat[0]; t++) {
        uint32_t out[4];
        philox4x32_10(kat[t].ctr, kat[t].key, out);
        int wrong = 0;
        for (int i = 0; i < 4; i++)
            wrong += out[i] != kat[t].out[i];
        tu_check(wrong == 0,
                 "philox4x32_10 known answer %zu (counter %08x.., key %08x %08x): %d of 4 words "
                 "differ (got %08x %08x %08x %08x, tol 0)",
                 t, kat[t].ctr[0], kat[t].key[0], kat[t].key[1], wrong, out[0], out[1], out[2],
                 out[3]);
    }
}

// sample_normal's out (n) for (seed, step, stream) against the host philox_normal; returns the
// device's draws (n, caller frees).
static float *test_sample_normal(int n, uint64_t seed, uint64_t step, uint32_t stream)
{
    cl_kernel k = clrt_kernel(&rt, "sample_normal");
    float *got = tu_alloc((size_t)n + GUARD, sizeof(float));
    double *want = tu_alloc((size_t)n, sizeof(double));
    tu_fill_guard(got, 0, (size_t)n + GUARD);
    cl_mem out = tu_upload(&rt, got, ((size_t)n + GUARD) * sizeof(float), "sample_normal out");
    cl_uint seed_lo = (cl_uint)seed, seed_hi = (cl_uint)(seed >> 32);
    cl_uint step_lo = (cl_uint)step, step_hi = (cl_uint)(step >> 32);
    KARG(k, 0, out);
    KARG(k, 1, n);
    KARG(k, 2, seed_lo);
    KARG(k, 3, seed_hi);
    KARG(k, 4, step_lo);
    KARG(k, 5, step_hi);
    KARG(k, 6, stream);
    size_t global = (size_t)n, local = 16;
    clrt_launch(&rt, k, 1, &global, &local);
    tu_download(&rt, out, got, ((size_t)n + GUARD) * sizeof(float));
    for (int i = 0; i < n; i++)
        want[i] = philox_normal(seed, (uint32_t)i, step, stream);
    char what[160];
    snprintf(what, sizeof what,
             "sample_normal vs philox_normal (n %d, seed %#llx, step %#llx, stream %u)", n,
             (unsigned long long)seed, (unsigned long long)step, stream);
    // Float log, sqrt and cos (a few ulp each) on values up to |5.8|.
    tu_compare(what, got, want, NULL, (size_t)n, 1e-5, 0.0);
    tu_check(!tu_changed(got, (size_t)n, (size_t)n + GUARD), "sample_normal (n %d): guard cells",
             n);
    free(want);
    clReleaseMemObject(out);
    clReleaseKernel(k);
    return got;
}

// sample_normal against the host for several seeds, steps and streams, then the mean and
// variance of 100003 draws.
static void test_normals(void)
{
    static const struct {
        uint64_t seed, step;
        uint32_t stream;
    } cases[] = {
        {0, 0, PHILOX_STREAM_TRAIN},
        {42, 7, PHILOX_STREAM_EVAL},
        {0xDEADBEEFCAFEF00Dull, (1ull << 33) + 5, PHILOX_STREAM_GRID},
        {0xFFFFFFFFFFFFFFFFull, 0xFFFFFFFFFFFFFFFFull, PHILOX_STREAM_SHUFFLE},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        free(test_sample_normal(1003, cases[c].seed, cases[c].step, cases[c].stream));
    int n = 100003;
    float *z = test_sample_normal(n, 1234567, 3, PHILOX_STREAM_TRAIN);
    double sum = 0.0, sq = 0.0;
    for (int i = 0; i < n; i++)
        sum += z[i];
    double mean = sum / n;
    for (int i = 0; i < n; i++)
        sq += (z[i] - mean) * (z[i] - mean);
    double var = sq / (n - 1);
    // Standard errors are 1/sqrt(n) = 0.0032 for the mean and sqrt(2/n) = 0.0045 for the
    // variance: 0.02 is more than 4 of them.
    tu_check(fabs(mean) < 0.02, "sample_normal (n %d): mean %.4f (want 0, tol 0.02)", n, mean);
    tu_check(fabs(var - 1.0) < 0.02, "sample_normal (n %d): variance %.4f (want 1, tol 0.02)", n,
             var);
    free(z);
}

// bias_forward or bias_relu_forward on y (rows, n) with the bias at params + offset; launched
// with the given work-group size (NULL: the driver's) so that a rounded-up range reaches the
// kernel's bounds checks. Exact: one float add (and a max) per element.
static void test_bias_forward(bool relu, int rows, int n, int offset, const size_t *local)
{
    const char *name = relu ? "bias_relu_forward" : "bias_forward";
    cl_kernel k = clrt_kernel(&rt, name);
    size_t count = (size_t)rows * n, n_params = (size_t)offset + n + GUARD;
    float *y = tu_alloc(count + GUARD, sizeof(float));
    float *params = tu_alloc(n_params, sizeof(float));
    double *want = tu_alloc(count, sizeof(double));
    for (size_t i = 0; i < count; i++)
        y[i] = rng_range(-1.0, 1.0);
    tu_fill_guard(y, count, count + GUARD);
    for (size_t i = 0; i < n_params; i++)
        params[i] = rng_range(-1.0, 1.0);
    for (int r = 0; r < rows; r++) {
        for (int j = 0; j < n; j++) {
            float v = y[(size_t)r * n + j] + params[offset + j];
            want[(size_t)r * n + j] = relu && v < 0.0f ? 0.0 : v;
        }
    }
    cl_mem dy = tu_upload(&rt, y, (count + GUARD) * sizeof(float), "y");
    cl_mem dparams = tu_upload(&rt, params, n_params * sizeof(float), "params");
    KARG(k, 0, dy);
    KARG(k, 1, dparams);
    KARG(k, 2, offset);
    KARG(k, 3, rows);
    KARG(k, 4, n);
    size_t global[2] = {(size_t)n, (size_t)rows};
    clrt_launch(&rt, k, 2, global, local);
    tu_download(&rt, dy, y, (count + GUARD) * sizeof(float));
    char what[160];
    snprintf(what, sizeof what, "%s (%dx%d, bias offset %d, local %s)", name, rows, n, offset,
             local ? "8x4" : "driver's");
    tu_compare(what, y, want, NULL, count, 0.0, 0.0);
    tu_check(!tu_changed(y, count, count + GUARD), "%s (%dx%d): guard cells", name, rows, n);
    free(y);
    free(params);
    free(want);
    clReleaseMemObject(dy);
    clReleaseMemObject(dparams);
    clReleaseKernel(k);
}

// transpose (an element a work-item) or, tiles, transpose_tiles (a 16 x 16 tile a work-item): src
// (rows, cols) at src_off -> dst (cols, rows; rows + gap apart) at dst_off; exact, and the cells
// of dst before dst_off, between its rows and after the matrix keep their values.
static void test_transpose(bool tiles, int rows, int cols, int src_off, int dst_off, int gap,
                           const size_t *local)
{
    const char *name = tiles ? "transpose_tiles" : "transpose";
    cl_kernel k = clrt_kernel(&rt, name);
    int ldd = rows + gap;
    size_t count = (size_t)rows * cols, n_src = (size_t)src_off + count;
    size_t span = (size_t)cols * ldd, n_dst = (size_t)dst_off + span + GUARD;
    float *src = tu_alloc(n_src, sizeof(float)), *dst = tu_alloc(n_dst, sizeof(float));
    double *want = tu_alloc(count, sizeof(double));
    float *got = tu_alloc(count, sizeof(float));
    for (size_t i = 0; i < n_src; i++)
        src[i] = rng_range(-1.0, 1.0);
    tu_fill_guard(dst, 0, n_dst);
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++)
            want[(size_t)c * rows + r] = src[src_off + (size_t)r * cols + c];
    cl_mem dsrc = tu_upload(&rt, src, n_src * sizeof(float), "src");
    cl_mem ddst = tu_upload(&rt, dst, n_dst * sizeof(float), "dst");
    KARG(k, 0, dsrc);
    KARG(k, 1, src_off);
    KARG(k, 2, ddst);
    KARG(k, 3, dst_off);
    KARG(k, 4, rows);
    KARG(k, 5, cols);
    KARG(k, 6, ldd);
    size_t global[2] = {(size_t)cols, (size_t)rows};
    if (tiles)
        global[0] = (global[0] + 15) / 16, global[1] = (global[1] + 15) / 16;
    clrt_launch(&rt, k, 2, global, local);
    tu_download(&rt, ddst, dst, n_dst * sizeof(float));
    bool gaps_kept =
        !tu_changed(dst, 0, (size_t)dst_off) && !tu_changed(dst, (size_t)dst_off + span, n_dst);
    for (int c = 0; c < cols; c++) {
        const float *row = dst + dst_off + (size_t)c * ldd;
        memcpy(got + (size_t)c * rows, row, (size_t)rows * sizeof(float));
        gaps_kept =
            gaps_kept && !tu_changed(dst, (size_t)(row - dst) + rows, (size_t)(row - dst) + ldd);
    }
    char what[160];
    snprintf(what, sizeof what, "%s (%dx%d, offsets %d -> %d, rows %d apart, local %s)", name, rows,
             cols, src_off, dst_off, ldd, local ? "8x4" : "driver's");
    tu_compare(what, got, want, NULL, count, 0.0, 0.0);
    tu_check(gaps_kept, "%s (%dx%d, rows %d apart): guard cells", name, rows, cols, ldd);
    free(src);
    free(dst);
    free(want);
    free(got);
    clReleaseMemObject(dsrc);
    clReleaseMemObject(ddst);
    clReleaseKernel(k);
}

// One bias gradient pass as dense_bias_backward enqueues it: bias_backward (kind 0, a work-item a
// column), bias_backward_rows (kind 1, the sweep: a work-item a part, row by row) or
// bias_backward16 (kind 2, a CPU's: a work-item 16 columns), in `parts` parts, then
// bias_backward_sum when the parts wrote partial sums (several parts; or the sweep adding to
// grads). dy and grads are updated in place.
static const char *const bias_kernels[3] = {"bias_backward", "bias_backward_rows",
                                            "bias_backward16"};

static void launch_bias_backward(int kind, bool relu, int rows, int n, int offset, int parts,
                                 bool accumulate, float *dy, const float *y, float *grads,
                                 size_t n_grads, float *partial, size_t n_partial)
{
    bool sweep = kind == 1;
    cl_kernel k = clrt_kernel(&rt, bias_kernels[kind]);
    cl_kernel k_sum = clrt_kernel(&rt, "bias_backward_sum");
    size_t count = (size_t)rows * n;
    cl_mem ddy = tu_upload(&rt, dy, (count + GUARD) * sizeof(float), "dy");
    cl_mem dyy = tu_upload(&rt, y, count * sizeof(float), "y");
    cl_mem dgrads = tu_upload(&rt, grads, n_grads * sizeof(float), "grads");
    cl_mem dpartial = tu_upload(&rt, partial, n_partial * sizeof(float), "partial");
    int per_part = (rows + parts - 1) / parts, relu_arg = relu, acc = accumulate;
    bool direct = parts == 1 && !(sweep && accumulate);
    cl_mem out = direct ? dgrads : dpartial, mask = relu ? dyy : ddy;
    int out_offset = direct ? offset : 0, out_acc = direct ? acc : 0;
    cl_uint arg = 0;
    KARG(k, arg++, ddy);
    KARG(k, arg++, mask);
    KARG(k, arg++, relu_arg);
    KARG(k, arg++, out);
    KARG(k, arg++, out_offset);
    if (!sweep)
        KARG(k, arg++, out_acc);
    KARG(k, arg++, rows);
    KARG(k, arg++, n);
    KARG(k, arg++, per_part);
    size_t columns = kind == 2 ? ((size_t)n + 15) / 16 : (size_t)n;
    size_t global[2] = {sweep ? (size_t)parts : columns, (size_t)parts};
    clrt_launch(&rt, k, sweep ? 1 : 2, global, NULL);
    if (!direct) {
        arg = 0;
        KARG(k_sum, arg++, dpartial);
        KARG(k_sum, arg++, parts);
        KARG(k_sum, arg++, dgrads);
        KARG(k_sum, arg++, offset);
        KARG(k_sum, arg++, acc);
        KARG(k_sum, arg++, n);
        columns = (size_t)n;
        clrt_launch(&rt, k_sum, 1, &columns, NULL);
    }
    tu_download(&rt, ddy, dy, (count + GUARD) * sizeof(float));
    tu_download(&rt, dgrads, grads, n_grads * sizeof(float));
    tu_download(&rt, dpartial, partial, n_partial * sizeof(float));
    clReleaseMemObject(ddy);
    clReleaseMemObject(dyy);
    clReleaseMemObject(dgrads);
    clReleaseMemObject(dpartial);
    clReleaseKernel(k);
    clReleaseKernel(k_sum);
}

// The bias gradient on dy (rows, n), with a ReLU output y of which about 40% is zero when relu,
// into grads + offset, by both kernels: the column sums in double (relative to the sums of |dy|),
// added to grads' values when accumulate, and dy masked in place when relu (exact); the row sweep
// equal to the column walk bit for bit. Every other cell of grads and of the partial sums' (parts,
// n) must keep its value. bias_backward16 equal to bias_backward bit for bit too.
static void test_bias_backward(bool relu, int rows, int n, int offset, int parts, bool accumulate)
{
    size_t count = (size_t)rows * n, n_grads = (size_t)offset + n + GUARD;
    size_t n_partial = (size_t)parts * n + GUARD;
    float *dy0 = tu_alloc(count + GUARD, sizeof(float)),
          *dy = tu_alloc(count + GUARD, sizeof(float));
    float *y = tu_alloc(count, sizeof(float));
    float *grads0 = tu_alloc(n_grads, sizeof(float)), *grads = tu_alloc(n_grads, sizeof(float));
    float *partial = tu_alloc(n_partial, sizeof(float));
    float *column = tu_alloc((size_t)n, sizeof(float));
    double *want_dy = tu_alloc(count, sizeof(double));
    double *want = tu_alloc((size_t)n, sizeof(double));
    double *scale = tu_alloc((size_t)n, sizeof(double));
    for (size_t i = 0; i < count; i++) {
        dy0[i] = rng_range(-1.0, 1.0);
        y[i] = rng_uniform() < 0.4 ? 0.0f : rng_range(0.0, 2.0);
        want_dy[i] = !relu || y[i] > 0.0f ? dy0[i] : 0.0;
    }
    tu_fill_guard(dy0, count, count + GUARD);
    tu_fill_guard(grads0, 0, n_grads);
    for (int j = 0; j < n; j++) {
        want[j] = accumulate ? grads0[offset + j] : 0.0;
        scale[j] = fabs(want[j]);
        for (int r = 0; r < rows; r++) {
            want[j] += want_dy[(size_t)r * n + j];
            scale[j] += fabs(want_dy[(size_t)r * n + j]);
        }
    }
    for (int k = 0; k < 3; k++) {
        const char *kind = bias_kernels[k];
        memcpy(dy, dy0, (count + GUARD) * sizeof(float));
        memcpy(grads, grads0, n_grads * sizeof(float));
        tu_fill_guard(partial, 0, n_partial);
        launch_bias_backward(k, relu, rows, n, offset, parts, accumulate, dy, y, grads, n_grads,
                             partial, n_partial);
        char what[160];
        snprintf(what, sizeof what,
                 "%s%s (%dx%d, offset %d, %d parts%s): column sums, rel to sum |dy|", kind,
                 relu ? " relu" : "", rows, n, offset, parts, accumulate ? ", accumulated" : "");
        tu_compare(what, grads + offset, want, scale, (size_t)n, 0.0, 1e-5);
        if (k > 0) {
            double *exact = tu_alloc((size_t)n, sizeof(double));
            for (int j = 0; j < n; j++)
                exact[j] = column[j];
            snprintf(what, sizeof what, "%s (%dx%d, %d parts%s) = bias_backward", kind, rows, n,
                     parts, accumulate ? ", accumulated" : "");
            tu_compare(what, grads + offset, exact, NULL, (size_t)n, 0.0, 0.0);
            free(exact);
        } else {
            memcpy(column, grads + offset, (size_t)n * sizeof(float));
        }
        tu_check(!tu_changed(grads, 0, (size_t)offset) &&
                     !tu_changed(grads, (size_t)offset + n, n_grads),
                 "%s (%dx%d, %d parts): grads outside [offset, offset + n) untouched", kind, rows,
                 n, parts);
        tu_check(!tu_changed(partial, (size_t)parts * n, n_partial),
                 "%s (%dx%d, %d parts): partial sums stay in their (parts, n)", kind, rows, n,
                 parts);
        if (relu) {
            snprintf(what, sizeof what, "%s relu (%dx%d): dy masked by y > 0", kind, rows, n);
            tu_compare(what, dy, want_dy, NULL, count, 0.0, 0.0);
        }
        tu_check(!tu_changed(dy, count, count + GUARD), "%s (%dx%d): dy guard cells", kind, rows,
                 n);
    }
    free(dy0);
    free(dy);
    free(y);
    free(grads0);
    free(grads);
    free(partial);
    free(column);
    free(want_dy);
    free(want);
    free(scale);
}

// The arguments of the im2col and col2im kernels (cl/conv.cl): from, to, shape (rows, C, H, W,
// GH, GW, K, S, P), acc (col2im's; -1 for im2col, which has none), first and base.
static void columns_args(cl_kernel k, cl_mem from, cl_mem to, const int shape[9], int acc,
                         int first, int base)
{
    cl_uint a = 0;
    KARG(k, a++, from);
    KARG(k, a++, to);
    for (int i = 0; i < 9; i++)
        KARG(k, a++, shape[i]);
    if (acc >= 0)
        KARG(k, a++, acc);
    KARG(k, a++, first);
    KARG(k, a++, base);
}

// conv_col2im_items (GPUs) against conv_col2im (CPUs) on the same random columns and image, with
// and without acc: the same kernel positions added in the same order, so the same floats, bit for
// bit (a GPU's conv layers then compute what a CPU's do).
static void test_col2im_same(int rows, int C, int H, int W, int K, int S, int P)
{
    int GH = (H + 2 * P - K) / S + 1, GW = (W + 2 * P - K) / S + 1, kkc = K * K * C;
    size_t n_img = (size_t)rows * H * W * C, n_cols = (size_t)rows * GH * GW * kkc;
    float *img = tu_alloc(n_img, sizeof(float)), *cols = tu_alloc(n_cols, sizeof(float));
    float *got[2] = {tu_alloc(n_img, sizeof(float)), tu_alloc(n_img, sizeof(float))};
    double *want = tu_alloc(n_img, sizeof(double));
    for (size_t i = 0; i < n_cols; i++)
        cols[i] = rng_range(-1.0, 1.0);
    for (size_t i = 0; i < n_img; i++)
        img[i] = rng_range(-1.0, 1.0);
    cl_mem dcols = tu_upload(&rt, cols, n_cols * sizeof(float), "cols");
    for (int acc = 0; acc < 2; acc++) {
        for (int items = 0; items < 2; items++) {
            cl_mem dimg = tu_upload(&rt, img, n_img * sizeof(float), "img");
            cl_kernel k = clrt_kernel(&rt, items ? "conv_col2im_items" : "conv_col2im");
            int shape[9] = {rows, C, H, W, GH, GW, K, S, P};
            columns_args(k, dcols, dimg, shape, acc, 0, 0);
            size_t global[2] = {items ? (size_t)W * C : ((size_t)C + 15) / 16, (size_t)rows * H};
            size_t local[2] = {64, 1};
            clrt_launch(&rt, k, 2, global, items ? local : NULL);
            tu_download(&rt, dimg, got[items], n_img * sizeof(float));
            clReleaseKernel(k);
            clReleaseMemObject(dimg);
        }
        for (size_t i = 0; i < n_img; i++)
            want[i] = got[0][i];
        char what[160];
        snprintf(what, sizeof what,
                 "conv_col2im_items = conv_col2im bit for bit (%d of %dx%dx%d, K %d S %d P %d%s)",
                 rows, C, H, W, K, S, P, acc ? ", adding" : "");
        tu_compare(what, got[1], want, NULL, n_img, 0.0, 0.0);
    }
    clReleaseMemObject(dcols);
    free(img);
    free(cols);
    free(got[0]);
    free(got[1]);
    free(want);
}

// One float array downloaded as doubles (want's form for a bit-for-bit tu_compare).
static double *download_doubles(cl_mem mem, size_t n)
{
    float *f = tu_alloc(n, sizeof(float));
    double *d = tu_alloc(n, sizeof(double));
    tu_download(&rt, mem, f, n * sizeof(float));
    for (size_t i = 0; i < n; i++)
        d[i] = f[i];
    free(f);
    return d;
}

// A device copy of n floats of host, its name what.
static cl_mem upload_floats(const float *host, size_t n, const char *what)
{
    return tu_upload(&rt, host, n * sizeof(float), what);
}

// The conv products that read the image (clrt_conv_forward, clrt_conv_weight_grad and, at stride
// 1, clrt_conv_input_grad) against what they stand for, bit for bit: conv_im2col's columns
// through clrt_gemm_bias (bias, and ReLU when relu), clrt_gemm's TN product (beta 0 and 1: in
// parts where clvae's kernels split it), and the NN product into the columns then conv_col2im
// (overwriting, and adding to dx); the forward also against its definition in double precision.
// rows images of H x W x C, OC output channels, kernel K, stride S, padding P.
static void test_conv_direct(int rows, int C, int H, int W, int K, int S, int P, int OC, bool relu)
{
    int GH = (H + 2 * P - K) / S + 1, GW = (W + 2 * P - K) / S + 1;
    size_t kkc = (size_t)K * K * C, pos = (size_t)rows * GH * GW, n_img = (size_t)rows * H * W * C;
    size_t n_w = kkc * OC, n_y = pos * OC;
    char shape[96];
    snprintf(shape, sizeof shape, "%d of %dx%dx%d, K %d S %d P %d, %d channels out%s", rows, H, W,
             C, K, S, P, OC, relu ? ", ReLU" : "");
    if (!tu_check(clrt_conv_direct(&rt, pos, (size_t)OC, kkc, C),
                  "clrt_conv_direct takes the conv (%s)", shape))
        return;
    float *img = tu_alloc(n_img, sizeof(float)), *params = tu_alloc(n_w + OC, sizeof(float));
    float *dy = tu_alloc(n_y, sizeof(float)), *g0 = tu_alloc(n_w, sizeof(float));
    float *wt = tu_alloc(n_w, sizeof(float)), *x0 = tu_alloc(n_img, sizeof(float));
    for (size_t i = 0; i < n_img; i++)
        img[i] = rng_range(-1.0, 1.0), x0[i] = rng_range(-1.0, 1.0);
    for (size_t i = 0; i < n_w + OC; i++)
        params[i] = rng_range(-0.2, 0.2);
    for (size_t i = 0; i < n_y; i++)
        dy[i] = rng_range(-1.0, 1.0);
    for (size_t i = 0; i < n_w; i++)
        g0[i] = rng_range(-1.0, 1.0);
    for (size_t q = 0; q < kkc; q++)
        for (int o = 0; o < OC; o++)
            wt[(size_t)o * kkc + q] = params[q * OC + o];
    cl_mem dimg = upload_floats(img, n_img, "img"), dparams = upload_floats(params, n_w + OC, "w");
    cl_mem ddy = upload_floats(dy, n_y, "dy"), dwt = upload_floats(wt, n_w, "wt");
    cl_mem dcols = tu_buffer(&rt, pos * kkc * sizeof(float), "cols");
    cl_mem out[2] = {tu_buffer(&rt, n_y * sizeof(float), "y"),
                     tu_buffer(&rt, n_y * sizeof(float), "y direct")};
    int dims[9] = {rows, C, H, W, GH, GW, K, S, P};
    cl_kernel im2col = clrt_kernel(&rt, "conv_im2col");
    columns_args(im2col, dimg, dcols, dims, -1, 0, 0);
    size_t grid_rows = (size_t)rows * GH;
    clrt_launch(&rt, im2col, 1, &grid_rows, NULL);
    clReleaseKernel(im2col);
    struct clrt_conv g = {dimg, C, H, W, GH, GW, K, S, P};
    struct clrt_epilogue ep = {.bias = {dparams, n_w, 0}, .relu = relu};
    struct clrt_mat w = {dparams, 0, (size_t)OC};
    clrt_gemm_bias(&rt, pos, OC, kkc, (struct clrt_mat){dcols, 0, kkc}, w,
                   (struct clrt_mat){out[0], 0, (size_t)OC}, &ep);
    clrt_conv_forward(&rt, pos, OC, &g, w, 0.0f, (struct clrt_mat){out[1], 0, (size_t)OC}, &ep);
    double *want = download_doubles(out[0], n_y);
    float *got = tu_alloc(n_y > n_w ? n_y : n_w, sizeof(float)); // (y, then dw)
    tu_download(&rt, out[1], got, n_y * sizeof(float));
    char what[192];
    snprintf(what, sizeof what, "clrt_conv_forward = im2col, then the product, bit for bit (%s)",
             shape);
    tu_compare(what, got, want, NULL, n_y, 0.0, 0.0);
    // The definition: bias + the sum over the window, padding 0; to 1e-6 of the terms' magnitude.
    double *scale = tu_alloc(n_y, sizeof(double));
    for (size_t p = 0; p < pos; p++) {
        int gx = (int)(p % GW), gy = (int)(p / GW % GH), n = (int)(p / GW / GH);
        for (int o = 0; o < OC; o++) {
            double sum = params[n_w + o], mag = fabs(sum);
            for (int ky = 0; ky < K; ky++)
                for (int kx = 0; kx < K; kx++)
                    for (int c = 0; c < C; c++) {
                        int y = gy * S - P + ky, x = gx * S - P + kx;
                        if (y < 0 || y >= H || x < 0 || x >= W)
                            continue;
                        double t = (double)img[(((size_t)n * H + y) * W + x) * C + c] *
                                   params[((size_t)(ky * K + kx) * C + c) * OC + o];
                        sum += t, mag += fabs(t);
                    }
            want[p * OC + o] = relu && sum < 0.0 ? 0.0 : sum;
            scale[p * OC + o] = mag;
        }
    }
    snprintf(what, sizeof what, "clrt_conv_forward against the definition (%s)", shape);
    tu_compare(what, got, want, scale, n_y, 1e-6, 1e-6);
    free(want);
    // Added to C, no epilogue (a deconv's input gradient, added into dx): as clrt_gemm adds.
    float *c0 = tu_alloc(n_y, sizeof(float));
    for (size_t i = 0; i < n_y; i++)
        c0[i] = rng_range(-1.0, 1.0);
    cl_mem added[2] = {upload_floats(c0, n_y, "C"), upload_floats(c0, n_y, "C direct")};
    clrt_gemm(&rt, false, false, pos, OC, kkc, 1.0f, (struct clrt_mat){dcols, 0, kkc}, w, 1.0f,
              (struct clrt_mat){added[0], 0, (size_t)OC});
    clrt_conv_forward(&rt, pos, OC, &g, w, 1.0f, (struct clrt_mat){added[1], 0, (size_t)OC}, NULL);
    want = download_doubles(added[0], n_y);
    tu_download(&rt, added[1], got, n_y * sizeof(float));
    snprintf(what, sizeof what, "clrt_conv_forward + C = im2col, then the product + C (%s)", shape);
    tu_compare(what, got, want, NULL, n_y, 0.0, 0.0);
    free(want);
    free(c0);
    clReleaseMemObject(added[0]);
    clReleaseMemObject(added[1]);
    for (int beta = 0; beta < 2; beta++) {
        cl_mem grads[2] = {upload_floats(g0, n_w, "dw"), upload_floats(g0, n_w, "dw direct")};
        clrt_gemm(&rt, true, false, kkc, OC, pos, 1.0f, (struct clrt_mat){dcols, 0, kkc},
                  (struct clrt_mat){ddy, 0, (size_t)OC}, (float)beta,
                  (struct clrt_mat){grads[0], 0, (size_t)OC});
        clrt_conv_weight_grad(&rt, kkc, OC, pos, &g, (struct clrt_mat){ddy, 0, (size_t)OC},
                              (float)beta, (struct clrt_mat){grads[1], 0, (size_t)OC});
        want = download_doubles(grads[0], n_w);
        tu_download(&rt, grads[1], got, n_w * sizeof(float));
        snprintf(what, sizeof what, "clrt_conv_weight_grad = im2col^T dy%s, bit for bit (%s; %s)",
                 beta ? " + dw" : "", shape,
                 clrt_gemm_unsplit(&rt, kkc, OC, pos) ? "one product" : "in parts");
        tu_compare(what, got, want, NULL, n_w, 0.0, 0.0);
        free(want);
        clReleaseMemObject(grads[0]);
        clReleaseMemObject(grads[1]);
    }
    for (int acc = 0; acc < 2; acc++) {
        cl_mem dx[2] = {upload_floats(x0, n_img, "dx"), upload_floats(x0, n_img, "dx direct")};
        clrt_gemm(&rt, false, false, pos, kkc, OC, 1.0f, (struct clrt_mat){ddy, 0, (size_t)OC},
                  (struct clrt_mat){dwt, 0, kkc}, 0.0f, (struct clrt_mat){dcols, 0, kkc});
        cl_kernel col2im = clrt_kernel(&rt, "conv_col2im");
        columns_args(col2im, dcols, dx[0], dims, acc, 0, 0);
        size_t global[2] = {((size_t)C + 15) / 16, (size_t)rows * H};
        clrt_launch(&rt, col2im, 2, global, NULL);
        clReleaseKernel(col2im);
        struct clrt_conv gd = {ddy, C, H, W, GH, GW, K, S, P};
        clrt_conv_input_grad(&rt, (size_t)rows * H * W, OC, &gd, (struct clrt_mat){dwt, 0, kkc},
                             dx[1], acc);
        want = download_doubles(dx[0], n_img);
        float *gx = tu_alloc(n_img, sizeof(float));
        tu_download(&rt, dx[1], gx, n_img * sizeof(float));
        snprintf(what, sizeof what, "clrt_conv_input_grad = col2im(dy W^T)%s, bit for bit (%s)",
                 acc ? " added" : "", shape);
        tu_compare(what, gx, want, NULL, n_img, 0.0, 0.0);
        free(gx);
        free(want);
        clReleaseMemObject(dx[0]);
        clReleaseMemObject(dx[1]);
    }
    const cl_mem mems[] = {dimg, dparams, ddy, dwt, dcols, out[0], out[1]};
    for (size_t i = 0; i < sizeof mems / sizeof mems[0]; i++)
        clReleaseMemObject(mems[i]);
    void *hosts[] = {img, params, dy, g0, wt, x0, got, scale};
    for (size_t i = 0; i < sizeof hosts / sizeof hosts[0]; i++)
        free(hosts[i]);
}

// conv_im2col on random images (rows, H, W, C) against the definition, then conv_col2im of random
// columns against its adjoint's definition (each cols entry added to the pixel im2col read it
// from; with acc, added to the image im2col read, as a layer whose input feeds two adds its
// share); im2col exact, col2im to 1e-6 (a float sum of at most K K terms), with guard cells after
// both outputs. grid h x w is the conv's output: (H + 2P - K) / S + 1. In two slices of the
// images; with own, each slice's columns at the start of the buffer (base = first), gathered on
// the host after each slice (im2col) or written there before it (col2im).
static void test_im2col(int rows, int C, int H, int W, int K, int S, int P, int acc, bool own,
                        bool items)
{
    int GH = (H + 2 * P - K) / S + 1, GW = (W + 2 * P - K) / S + 1, kkc = K * K * C;
    size_t n_img = (size_t)rows * H * W * C, n_cols = (size_t)rows * GH * GW * kkc;
    float *img = tu_alloc(n_img + GUARD, sizeof(float));
    float *cols = tu_alloc(n_cols + GUARD, sizeof(float));
    double *want_cols = tu_alloc(n_cols, sizeof(double));
    double *want_img = tu_alloc(n_img, sizeof(double));
    float *seen = tu_alloc(n_cols + GUARD, sizeof(float)); // the buffer after a slice, with own
    size_t most = 0;                                       // floats a slice wrote, with own
    for (size_t i = 0; i < n_img; i++)
        img[i] = rng_range(-1.0, 1.0);
    tu_fill_guard(img, n_img, n_img + GUARD);
    tu_fill_guard(cols, 0, n_cols + GUARD);
    for (int n = 0; n < rows; n++)
        for (int gy = 0; gy < GH; gy++)
            for (int gx = 0; gx < GW; gx++)
                for (int ky = 0; ky < K; ky++)
                    for (int kx = 0; kx < K; kx++)
                        for (int c = 0; c < C; c++) {
                            int y = gy * S - P + ky, x = gx * S - P + kx;
                            size_t r = ((size_t)n * GH + gy) * GW + gx;
                            want_cols[r * kkc + (size_t)(ky * K + kx) * C + c] =
                                y < 0 || y >= H || x < 0 || x >= W
                                    ? 0.0
                                    : img[(((size_t)n * H + y) * W + x) * C + c];
                        }
    cl_mem dimg = tu_upload(&rt, img, (n_img + GUARD) * sizeof(float), "img");
    cl_mem dcols = tu_upload(&rt, cols, (n_cols + GUARD) * sizeof(float), "cols");
    // A work-item a grid row or 16 channels of an image row (CPUs), or a float (items: GPUs).
    const char *names[2] = {items ? "conv_im2col_items" : "conv_im2col",
                            items ? "conv_col2im_items" : "conv_col2im"};
    for (int pass = 0; pass < 2; pass++) {
        cl_kernel k = clrt_kernel(&rt, names[pass]);
        // In two slices of the images (the first rows / 2, then the rest), as a CPU runs them.
        for (int first = 0, count = rows > 1 ? rows / 2 : rows; first < rows;
             first += count, count = rows - first) {
            cl_mem from = pass == 0 ? dimg : dcols, to = pass == 0 ? dcols : dimg;
            size_t per = (size_t)GH * GW * kkc, at = (size_t)first * per, slice = count * per;
            int base = own ? first : 0;
            if (own && pass == 1)
                tu_write(&rt, dcols, cols + at, slice * sizeof(float));
            int shape[9] = {count, C, H, W, GH, GW, K, S, P};
            columns_args(k, from, to, shape, pass == 1 ? acc : -1, first, base);
            size_t global[2] = {pass == 0 ? (size_t)count * GH : ((size_t)C + 15) / 16,
                                pass == 0 ? 1 : (size_t)count * H};
            if (items) {
                global[0] = pass == 0 ? (size_t)GW * kkc : (size_t)W * C;
                global[1] = (size_t)count * (pass == 0 ? GH : H);
            }
            size_t local[2] = {64, 1};
            clrt_launch(&rt, k, 2, global, items ? local : NULL);
            if (own && pass == 0) {
                tu_download(&rt, dcols, seen, (n_cols + GUARD) * sizeof(float));
                memcpy(cols + at, seen, slice * sizeof(float));
                most = slice > most ? slice : most;
            }
        }
        clReleaseKernel(k);
        char what[160];
        if (pass == 0) {
            if (!own)
                tu_download(&rt, dcols, cols, (n_cols + GUARD) * sizeof(float));
            snprintf(what, sizeof what, "%s (%d of %dx%dx%d, K %d S %d P %d%s)", names[0], rows, C,
                     H, W, K, S, P, own ? ", slices at the start" : "");
            tu_compare(what, cols, want_cols, NULL, n_cols, 0.0, 0.0);
            if (own)
                tu_check(!tu_changed(seen, most, n_cols + GUARD), "%s: cells past the slices",
                         what);
            else
                tu_check(!tu_changed(cols, n_cols, n_cols + GUARD), "%s: guard cells", what);
            // Fresh columns for col2im, and its reference: every entry back to its pixel.
            for (size_t i = 0; i < n_cols; i++)
                cols[i] = rng_range(-1.0, 1.0);
            tu_write(&rt, dcols, cols, n_cols * sizeof(float));
            for (size_t i = 0; i < n_img; i++)
                want_img[i] = acc ? img[i] : 0.0;
            for (int n = 0; n < rows; n++)
                for (int gy = 0; gy < GH; gy++)
                    for (int gx = 0; gx < GW; gx++)
                        for (int ky = 0; ky < K; ky++)
                            for (int kx = 0; kx < K; kx++)
                                for (int c = 0; c < C; c++) {
                                    int y = gy * S - P + ky, x = gx * S - P + kx;
                                    if (y < 0 || y >= H || x < 0 || x >= W)
                                        continue;
                                    size_t r = ((size_t)n * GH + gy) * GW + gx;
                                    want_img[(((size_t)n * H + y) * W + x) * C + c] +=
                                        cols[r * kkc + (size_t)(ky * K + kx) * C + c];
                                }
        } else {
            tu_download(&rt, dimg, img, (n_img + GUARD) * sizeof(float));
            snprintf(what, sizeof what, "%s (%d of %dx%dx%d, K %d S %d P %d%s%s)", names[1], rows,
                     C, H, W, K, S, P, acc ? ", adding" : "", own ? ", slices at the start" : "");
            tu_compare(what, img, want_img, NULL, n_img, 1e-6, 0.0);
            tu_check(!tu_changed(img, n_img, n_img + GUARD), "%s: guard cells", what);
        }
    }
    free(img);
    free(cols);
    free(want_cols);
    free(want_img);
    free(seen);
    clReleaseMemObject(dimg);
    clReleaseMemObject(dcols);
}

// The buffers of test_group_norm's launches.
struct gn_buffers {
    cl_mem x, params, y, stats, dg, skip, dx, gx;
};

// Launches GN kernel k (its arguments before a set) over global items, work-groups of local items
// with their local memory the last argument, or (local 0) the CPU's kernels' items; releases it.
static void gn_launch_test(cl_kernel k, cl_uint a, size_t local, size_t global)
{
    if (local)
        KARG_LOCAL(k, a, local * sizeof(float));
    clrt_launch(&rt, k, 1, &global, local ? &local : NULL);
    clReleaseKernel(k);
}

// group_norm_forward then group_norm_backward (dx written, skip added, added to dx when acc) with
// work-groups of local items, or with chains (local 0) their CPU kernels, GN_CHAINS groups an item.
static void gn_run(const struct gn_buffers *b, size_t local, int rows, int hw, int C, int G,
                   int gamma_at, int beta_at, bool acc)
{
    bool chains = local == 0;
    size_t global = chains ? (size_t)rows * ((G + 7) / 8) : (size_t)rows * G * local;
    float eps = 1e-5f;
    cl_kernel k = clrt_kernel(&rt, chains ? "group_norm_forward_chains" : "group_norm_forward");
    cl_uint a = 0;
    KARG(k, a++, b->x);
    KARG(k, a++, b->y);
    KARG(k, a++, b->stats);
    KARG(k, a++, b->params);
    KARG(k, a++, gamma_at);
    KARG(k, a++, beta_at);
    KARG(k, a++, hw);
    KARG(k, a++, C);
    KARG(k, a++, G);
    KARG(k, a++, eps);
    gn_launch_test(k, a, local, global);
    int write_dx = 1, add_skip = 1, add = acc;
    k = clrt_kernel(&rt, chains ? "group_norm_backward_chains" : "group_norm_backward");
    a = 0;
    KARG(k, a++, b->dg);
    KARG(k, a++, b->x);
    KARG(k, a++, b->stats);
    KARG(k, a++, b->params);
    KARG(k, a++, gamma_at);
    KARG(k, a++, b->gx);
    KARG(k, a++, b->dx);
    KARG(k, a++, write_dx);
    KARG(k, a++, b->skip);
    KARG(k, a++, add_skip);
    KARG(k, a++, add);
    KARG(k, a++, hw);
    KARG(k, a++, C);
    KARG(k, a++, G);
    gn_launch_test(k, a, local, global);
}

// group_norm_forward and group_norm_backward (cl/res.cl) on random images (rows, H, W, C) in G
// groups, with work-groups of local items, against ref_group_norm and ref_group_norm_backward:
// y = relu(gn(x)) and the statistics, then from a random dg (masked by y > 0, as the block gives
// it) dx plus skip, added to what dx held when acc, and gx = dg xhat (whose column sums are the
// scale's gradient: the sums of gx against dgamma). The scale and shift sit at offsets in the
// parameters. Guard cells after every output.
static void test_group_norm(int rows, int H, int W, int C, int G, size_t local, bool acc)
{
    int hw = H * W, gamma_at = 5, beta_at = 5 + C + 3;
    size_t n = (size_t)rows * hw * C, n_stats = (size_t)rows * G * 2, n_params = beta_at + C;
    float *x = tu_alloc(n, sizeof(float)), *dg = tu_alloc(n, sizeof(float));
    float *params = tu_alloc(n_params, sizeof(float)), *skip = tu_alloc(n, sizeof(float));
    float *y = tu_alloc(n + GUARD, sizeof(float)),
          *stats = tu_alloc(n_stats + GUARD, sizeof(float));
    float *dx = tu_alloc(n + GUARD, sizeof(float)), *gx = tu_alloc(n + GUARD, sizeof(float));
    double *xd = tu_alloc(n, sizeof(double)), *gamma = tu_alloc((size_t)C, sizeof(double));
    double *beta = tu_alloc((size_t)C, sizeof(double)), *want = tu_alloc(n, sizeof(double));
    double *want_stats = tu_alloc(n_stats, sizeof(double)), *dgd = tu_alloc(n, sizeof(double));
    double *want_dx = tu_alloc(n, sizeof(double)), *want_gx = tu_alloc(n, sizeof(double));
    double *dgamma = tu_alloc((size_t)C, sizeof(double)),
           *dbeta = tu_alloc((size_t)C, sizeof(double));
    // Draws of the case's own, whatever ran before: a group of two values drawn close together
    // is ill-conditioned in float (x - mean over a tiny spread), and a test added above once
    // moved such a draw here.
    rng_state = 0x2545F4914F6CDD1Dull ^ ((uint64_t)rows << 40 | (uint64_t)H << 30 |
                                         (uint64_t)W << 20 | (uint64_t)C << 8 | (uint64_t)G);
    for (size_t i = 0; i < n; i++) // an offset and a spread of their own in each channel
        x[i] = rng_range(-1.0, 1.0) * (1.0f + (float)(i % C)) + 0.3f * (float)(i % C), xd[i] = x[i];
    for (size_t i = 0; i < n_params; i++)
        params[i] = rng_range(-1.5, 1.5);
    for (int k = 0; k < C; k++)
        gamma[k] = params[gamma_at + k], beta[k] = params[beta_at + k];
    ref_group_norm(gamma, beta, xd, rows, hw, C, G, want, want_stats, NULL);
    for (size_t i = 0; i < n; i++) {
        dg[i] = want[i] > 0.0 ? rng_range(-1.0, 1.0) : 0.0f, dgd[i] = dg[i];
        skip[i] = rng_range(-1.0, 1.0);
        dx[i] = rng_range(-1.0, 1.0);
    }
    ref_group_norm_backward(gamma, xd, dgd, rows, hw, C, G, want_dx, dgamma, dbeta);
    for (size_t i = 0; i < n; i++)
        want_dx[i] += skip[i] + (acc ? dx[i] : 0.0);
    tu_fill_guard(y, 0, n + GUARD);
    tu_fill_guard(stats, 0, n_stats + GUARD);
    tu_fill_guard(dx, n, n + GUARD);
    tu_fill_guard(gx, 0, n + GUARD);
    float *dx0 = tu_alloc(n + GUARD, sizeof(float)); // dx before the launches
    memcpy(dx0, dx, (n + GUARD) * sizeof(float));
    struct gn_buffers b = {.x = tu_upload(&rt, x, n * sizeof(float), "x"),
                           .params = tu_upload(&rt, params, n_params * sizeof(float), "params"),
                           .y = tu_upload(&rt, y, (n + GUARD) * sizeof(float), "y"),
                           .stats =
                               tu_upload(&rt, stats, (n_stats + GUARD) * sizeof(float), "stats"),
                           .dg = tu_upload(&rt, dg, n * sizeof(float), "dg"),
                           .skip = tu_upload(&rt, skip, n * sizeof(float), "skip"),
                           .dx = tu_upload(&rt, dx, (n + GUARD) * sizeof(float), "dx"),
                           .gx = tu_upload(&rt, gx, (n + GUARD) * sizeof(float), "gx")};
    cl_mem d_y = b.y, d_stats = b.stats, d_dx = b.dx, d_gx = b.gx;
    gn_run(&b, local, rows, hw, C, G, gamma_at, beta_at, acc);
    tu_download(&rt, d_y, y, (n + GUARD) * sizeof(float));
    tu_download(&rt, d_stats, stats, (n_stats + GUARD) * sizeof(float));
    tu_download(&rt, d_dx, dx, (n + GUARD) * sizeof(float));
    tu_download(&rt, d_gx, gx, (n + GUARD) * sizeof(float));
    char what[160];
    snprintf(what, sizeof what, "group_norm_forward (%d of %dx%dx%d, %d groups, local %zu)", rows,
             C, H, W, G, local);
    tu_compare(what, y, want, NULL, n, 2e-5, 2e-5);
    tu_check(!tu_changed(y, n, n + GUARD), "%s: guard cells", what);
    snprintf(what, sizeof what, "group_norm_forward statistics (%d of %dx%dx%d, %d groups)", rows,
             C, H, W, G);
    tu_compare(what, stats, want_stats, NULL, n_stats, 1e-5, 1e-5);
    tu_check(!tu_changed(stats, n_stats, n_stats + GUARD), "%s: guard cells", what);
    snprintf(what, sizeof what, "group_norm_backward dx (%d of %dx%dx%d, %d groups, local %zu%s)",
             rows, C, H, W, G, local, acc ? ", adding" : "");
    tu_compare(what, dx, want_dx, NULL, n, 2e-5, 2e-5);
    tu_check(!tu_changed(dx, n, n + GUARD), "%s: guard cells", what);
    // gx's column sums against the scale's gradient.
    float *sums = tu_alloc((size_t)C, sizeof(float));
    for (size_t i = 0; i < n; i++)
        sums[i % C] += gx[i];
    snprintf(what, sizeof what, "group_norm_backward gx's column sums (%d of %dx%dx%d)", rows, C, H,
             W);
    tu_compare(what, sums, dgamma, NULL, (size_t)C, 1e-4, 1e-4);
    tu_check(!tu_changed(gx, n, n + GUARD), "%s: guard cells", what);
    free(sums);
    if (local == 1) { // the CPU's kernels: the same sums in the same order, the same bits
        cl_mem outs[4] = {b.y, b.stats, b.dx, b.gx};
        const float *firsts[4] = {y, stats, dx, gx};
        const size_t counts[4] = {n, n_stats, n, n};
        const char *names[4] = {"y", "statistics", "dx", "gx"};
        tu_write(&rt, b.dx, dx0, (n + GUARD) * sizeof(float));
        gn_run(&b, 0, rows, hw, C, G, gamma_at, beta_at, acc);
        for (int i = 0; i < 4; i++) {
            float *got = tu_alloc(counts[i], sizeof(float));
            double *first = tu_alloc(counts[i], sizeof(double));
            tu_download(&rt, outs[i], got, counts[i] * sizeof(float));
            for (size_t j = 0; j < counts[i]; j++)
                first[j] = firsts[i][j];
            snprintf(what, sizeof what,
                     "group_norm_*_chains %s = with one item a group, bit for bit (%d of "
                     "%dx%dx%d, %d groups%s)",
                     names[i], rows, C, H, W, G, acc ? ", adding" : "");
            tu_compare(what, got, first, NULL, counts[i], 0.0, 0.0);
            free(got);
            free(first);
        }
    }
    free(dx0);
    cl_mem mems[] = {b.x, b.params, b.y, b.stats, b.dg, b.skip, b.dx, b.gx};
    for (size_t i = 0; i < sizeof mems / sizeof mems[0]; i++)
        clReleaseMemObject(mems[i]);
    void *host[] = {x,     dg,   params, skip,       y,   stats,   dx,      gx,     xd,
                    gamma, beta, want,   want_stats, dgd, want_dx, want_gx, dgamma, dbeta};
    for (size_t i = 0; i < sizeof host / sizeof host[0]; i++)
        free(host[i]);
}

// up_forward and up_backward (cl/up.cl) on random images (rows, H, W, C) by F: exact copies, and
// the sums over each pixel's F x F copies (added to dx when acc) to 1e-6, guard cells after both.
static void test_up(int rows, int H, int W, int C, int F, int acc)
{
    size_t n = (size_t)rows * H * W * C, m = n * F * F;
    float *x = tu_alloc(n + GUARD, sizeof(float)), *y = tu_alloc(m + GUARD, sizeof(float));
    double *want_y = tu_alloc(m, sizeof(double)), *want_x = tu_alloc(n, sizeof(double));
    double *dyd = tu_alloc(m, sizeof(double));
    for (size_t i = 0; i < n; i++)
        x[i] = rng_range(-1.0, 1.0);
    for (int r = 0; r < rows; r++)
        for (int oy = 0; oy < H * F; oy++)
            for (int ox = 0; ox < W * F; ox++)
                for (int c = 0; c < C; c++)
                    want_y[(((size_t)r * H * F + oy) * W * F + ox) * C + c] =
                        x[(((size_t)r * H + oy / F) * W + ox / F) * C + c];
    tu_fill_guard(x, n, n + GUARD);
    tu_fill_guard(y, 0, m + GUARD);
    cl_mem d_x = tu_upload(&rt, x, (n + GUARD) * sizeof(float), "x");
    cl_mem d_y = tu_upload(&rt, y, (m + GUARD) * sizeof(float), "y");
    cl_kernel k = clrt_kernel(&rt, "up_forward");
    cl_uint a = 0;
    KARG(k, a++, d_x);
    KARG(k, a++, d_y);
    KARG(k, a++, rows);
    KARG(k, a++, H);
    KARG(k, a++, W);
    KARG(k, a++, C);
    KARG(k, a++, F);
    size_t global[2] = {(size_t)W * F * C, (size_t)rows * H * F};
    clrt_launch(&rt, k, 2, global, NULL);
    clReleaseKernel(k);
    tu_download(&rt, d_y, y, (m + GUARD) * sizeof(float));
    char what[160];
    snprintf(what, sizeof what, "up_forward (%d of %dx%dx%d by %d)", rows, C, H, W, F);
    tu_compare(what, y, want_y, NULL, m, 0.0, 0.0);
    tu_check(!tu_changed(y, m, m + GUARD), "%s: guard cells", what);
    for (size_t i = 0; i < m; i++)
        y[i] = rng_range(-1.0, 1.0), dyd[i] = y[i];
    tu_write(&rt, d_y, y, m * sizeof(float));
    ref_up_backward(dyd, rows, H, W, C, F, want_x);
    for (size_t i = 0; i < n; i++)
        want_x[i] += acc ? x[i] : 0.0;
    k = clrt_kernel(&rt, "up_backward");
    a = 0;
    KARG(k, a++, d_y);
    KARG(k, a++, d_x);
    KARG(k, a++, rows);
    KARG(k, a++, H);
    KARG(k, a++, W);
    KARG(k, a++, C);
    KARG(k, a++, F);
    KARG(k, a++, acc);
    size_t back[2] = {(size_t)W * C, (size_t)rows * H};
    clrt_launch(&rt, k, 2, back, NULL);
    clReleaseKernel(k);
    tu_download(&rt, d_x, x, (n + GUARD) * sizeof(float));
    snprintf(what, sizeof what, "up_backward (%d of %dx%dx%d by %d%s)", rows, C, H, W, F,
             acc ? ", adding" : "");
    tu_compare(what, x, want_x, NULL, n, 1e-6, 1e-6);
    tu_check(!tu_changed(x, n, n + GUARD), "%s: guard cells", what);
    clReleaseMemObject(d_x);
    clReleaseMemObject(d_y);
    free(x);
    free(y);
    free(want_y);
    free(want_x);
    free(dyd);
}

// A product of clrt_gemm (batch 1) or clrt_gemm_tn_batched (batch > 1; alpha 1, beta 0) through
// clvae's kernels (own) or CLBlast, against a double reference: C_p (m, n) = alpha op(A_p) B_p +
// beta C_p, operands at offsets with leading dimensions wider than the matrices, and guard cells
// around every C. aliased: A's and B's leading dimensions a multiple of 1024 floats, where clvae's
// kernels copy the operands through local memory (the packed kernels of cl/gemm.cl).
static void test_gemm(bool own, bool ta, int m, int n, int k, float alpha, float beta, int batch,
                      int epilogue, bool aliased)
{
    bool saved = rt.own_gemm;
    rt.own_gemm = own;
    size_t ar = ta ? (size_t)k : (size_t)m, ac = ta ? (size_t)m : (size_t)k;
    size_t lda = ac + 3, ldb = (size_t)n + 5, ldc = (size_t)n + 2, off = 7;
    if (aliased)
        lda = (ac + 1023) / 1024 * 1024, ldb = ((size_t)n + 1023) / 1024 * 1024;
    size_t as = ar * lda + 1, bs = (size_t)k * ldb + 2, cs = (size_t)m * ldc + GUARD;
    size_t na = off + (size_t)batch * as, nb = off + (size_t)batch * bs;
    size_t nc = off + (size_t)batch * cs + GUARD;
    float *a = tu_alloc(na, sizeof(float)), *b = tu_alloc(nb, sizeof(float));
    float *c = tu_alloc(nc, sizeof(float)), *got = tu_alloc((size_t)batch * m * n, sizeof(float));
    double *want = tu_alloc((size_t)batch * m * n, sizeof(double));
    double *scale = tu_alloc((size_t)batch * m * n, sizeof(double));
    for (size_t i = 0; i < na; i++)
        a[i] = rng_range(-1.0, 1.0);
    for (size_t i = 0; i < nb; i++)
        b[i] = rng_range(-1.0, 1.0);
    float *bias = tu_alloc((size_t)n + 3, sizeof(float)); // at offset 3
    for (int j = 0; j < n + 3; j++)
        bias[j] = rng_range(-2.0, 2.0);
    tu_fill_guard(c, 0, nc);
    for (int p = 0; p < batch; p++)
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) {
                float *cij = &c[off + (size_t)p * cs + (size_t)i * ldc + (size_t)j];
                *cij = rng_range(-1.0, 1.0);
                double sum = 0, mag = 0;
                for (int q = 0; q < k; q++) {
                    double x = a[off + (size_t)p * as +
                                 (ta ? (size_t)q * lda + (size_t)i : (size_t)i * lda + (size_t)q)];
                    double y = b[off + (size_t)p * bs + (size_t)q * ldb + (size_t)j];
                    sum += x * y;
                    mag += fabs(x * y);
                }
                size_t w = ((size_t)p * m + (size_t)i) * n + (size_t)j;
                want[w] = alpha * sum + (beta != 0.0f ? beta * (double)*cij : 0.0);
                scale[w] = fabs(alpha) * mag + fabs(beta * (double)*cij) + 1e-3;
                if (epilogue) { // clrt_gemm_bias: + bias, then ReLU when 2
                    want[w] += bias[3 + j];
                    scale[w] += fabs(bias[3 + j]);
                    want[w] = epilogue == 2 && want[w] < 0 ? 0.0 : want[w];
                }
            }
    if (beta == 0.0f) // beta 0 must not read C: NaN there may not show
        for (int p = 0; p < batch; p++)
            for (int i = 0; i < m; i++)
                for (int j = 0; j < n; j++)
                    c[off + (size_t)p * cs + (size_t)i * ldc + (size_t)j] = NAN;
    cl_mem da = tu_upload(&rt, a, na * sizeof(float), "A");
    cl_mem db = tu_upload(&rt, b, nb * sizeof(float), "B");
    cl_mem dc = tu_upload(&rt, c, nc * sizeof(float), "C");
    struct clrt_mat ma = {da, off, lda}, mb = {db, off, ldb}, mc = {dc, off, ldc};
    long launches = rt.launches;
    cl_mem dbias = tu_upload(&rt, bias, ((size_t)n + 3) * sizeof(float), "bias");
    if (epilogue) { // alpha 1, beta 0, NN, clvae's kernels (through CLBlast it is not folded)
        struct clrt_epilogue ep = {.bias = {dbias, 3, 0}, .relu = epilogue == 2};
        bool folded = clrt_gemm_bias(&rt, (size_t)m, (size_t)n, (size_t)k, ma, mb, mc, &ep);
        tu_check(folded, "clrt_gemm_bias through clvae's kernels folds the epilogue in");
    } else if (batch == 1)
        clrt_gemm(&rt, ta, false, (size_t)m, (size_t)n, (size_t)k, alpha, ma, mb, beta, mc);
    else
        clrt_gemm_tn_batched(&rt, (size_t)m, (size_t)n, (size_t)k, ma, as, mb, bs, mc, cs,
                             (size_t)batch);
    float *back = tu_alloc(nc, sizeof(float));
    tu_download(&rt, dc, back, nc * sizeof(float));
    int touched = tu_changed(back, 0, off);
    for (int p = 0; p < batch; p++) {
        size_t base = off + (size_t)p * cs;
        for (int i = 0; i < m; i++) {
            memcpy(&got[((size_t)p * m + (size_t)i) * n], &back[base + (size_t)i * ldc],
                   (size_t)n * sizeof(float));
            touched +=
                tu_changed(back, base + (size_t)i * ldc + (size_t)n, base + (size_t)(i + 1) * ldc);
        }
        touched += tu_changed(back, base + (size_t)m * ldc, base + cs);
    }
    char what[160];
    snprintf(what, sizeof what, "gemm %s %c %dx%dx%d alpha %g beta %g%s%.0d%s%s",
             own ? "clvae" : "CLBlast", ta ? 'T' : 'N', m, n, k, (double)alpha, (double)beta,
             batch > 1 ? " batch " : "", batch > 1 ? batch : 0,
             epilogue == 2 ? " + bias, ReLU"
             : epilogue    ? " + bias"
                           : "",
             aliased ? ", lda and ldb multiples of 1024" : "");
    tu_compare(what, got, want, scale, (size_t)batch * m * n, 0.0, 1e-5);
    tu_check(touched == 0, "%s: %d cells outside C changed", what, touched);
    if (own && k > 10000) // own_parts splits it: the parts, the leftover rows (if any), the sum
        tu_check(rt.launches - launches >= 2, "%s: split over k (%ld launches)", what,
                 rt.launches - launches);
    free(a);
    free(b);
    free(c);
    free(got);
    free(want);
    free(scale);
    free(back);
    free(bias);
    clReleaseMemObject(dbias);
    clReleaseMemObject(da);
    clReleaseMemObject(db);
    clReleaseMemObject(dc);
    rt.own_gemm = saved;
}

// clrt_gemm_bias_gathered: rows images of data (count, k) random bytes picked by a random index
// from start, through the product with a bias (and ReLU), against gather_images then
// clrt_gemm_bias on the same device: x and C bit for bit, both also against double (x = byte /
// 255), guard cells after both.
static void test_gemm_gathered(int count, int k, int start, int rows, int n, bool relu)
{
    size_t nx = (size_t)rows * k + GUARD, nc = (size_t)rows * n + GUARD, nb = (size_t)k * n + 3;
    unsigned char *data = tu_alloc((size_t)count * k, 1);
    int *index = tu_alloc((size_t)start + rows, sizeof(int));
    float *b = tu_alloc(nb + (size_t)n, sizeof(float)), *x0 = tu_alloc(nx, sizeof(float));
    float *x[2], *c[2];
    for (size_t i = 0; i < (size_t)count * k; i++)
        data[i] = (unsigned char)rng_int(256);
    for (int i = 0; i < start + rows; i++)
        index[i] = rng_int(count);
    for (size_t i = 0; i < nb + (size_t)n; i++)
        b[i] = rng_range(-1.0, 1.0);
    tu_fill_guard(x0, 0, nx);
    cl_mem ddata = tu_upload(&rt, data, (size_t)count * k, "data");
    cl_mem dindex = tu_upload(&rt, index, ((size_t)start + rows) * sizeof(int), "index");
    cl_mem db = tu_upload(&rt, b, (nb + (size_t)n) * sizeof(float), "B and bias");
    struct clrt_epilogue ep = {.bias = {db, nb, 0}, .relu = relu};
    struct clrt_mat mb = {db, 3, (size_t)n};
    bool fused = false;
    for (int run = 0; run < 2; run++) { // gather_images then the product; the gathered product
        x[run] = tu_alloc(nx, sizeof(float)), c[run] = tu_alloc(nc, sizeof(float));
        tu_fill_guard(c[run], 0, nc);
        cl_mem dx = tu_upload(&rt, x0, nx * sizeof(float), "x");
        cl_mem dc = tu_upload(&rt, c[run], nc * sizeof(float), "C");
        struct clrt_mat mx = {dx, 0, (size_t)k}, mc = {dc, 0, (size_t)n};
        if (run == 0) {
            cl_kernel kg = clrt_kernel(&rt, "gather_images");
            int first = 0;
            cl_uint a = 0;
            KARG(kg, a++, ddata);
            KARG(kg, a++, first);
            KARG(kg, a++, count);
            KARG(kg, a++, dindex);
            KARG(kg, a++, start);
            KARG(kg, a++, rows);
            KARG(kg, a++, k);
            KARG(kg, a++, dx);
            size_t global[2] = {((size_t)k + 15) / 16, (size_t)rows};
            clrt_launch(&rt, kg, 2, global, NULL);
            clReleaseKernel(kg);
            clrt_gemm_bias(&rt, (size_t)rows, (size_t)n, (size_t)k, mx, mb, mc, &ep);
        } else {
            struct clrt_gather g = {.data = ddata, .index = dindex, .x = dx, .start = start};
            fused =
                clrt_gemm_bias_gathered(&rt, (size_t)rows, (size_t)n, (size_t)k, &g, mb, mc, &ep);
        }
        tu_download(&rt, dx, x[run], nx * sizeof(float));
        tu_download(&rt, dc, c[run], nc * sizeof(float));
        clReleaseMemObject(dx);
        clReleaseMemObject(dc);
    }
    char what[160];
    snprintf(what, sizeof what, "gemm clvae N %dx%dx%d gathered from %d images at %d%s", rows, n, k,
             count, start, relu ? " + bias, ReLU" : " + bias");
    tu_check(fused, "%s: one launch", what);
    double *exact = tu_alloc(nx > nc ? nx : nc, sizeof(double));
    char line[320];
    for (size_t i = 0; i < nx; i++)
        exact[i] = x[0][i];
    snprintf(line, sizeof line, "%s: x = gather_images' bit for bit", what);
    tu_compare(line, x[1], exact, NULL, nx, 0.0, 0.0);
    for (size_t i = 0; i < nc; i++)
        exact[i] = c[0][i];
    snprintf(line, sizeof line, "%s: C = the product of the gathered x bit for bit", what);
    tu_compare(line, c[1], exact, NULL, nc, 0.0, 0.0);
    for (int r = 0; r < rows; r++)
        for (int q = 0; q < k; q++)
            exact[(size_t)r * k + q] = data[(size_t)index[start + r] * k + q] / 255.0;
    snprintf(line, sizeof line, "%s: x against byte / 255", what);
    tu_compare(line, x[1], exact, NULL, (size_t)rows * k, 0.0, 1e-7);
    tu_check(!tu_changed(x[1], nx - GUARD, nx) && !tu_changed(c[1], nc - GUARD, nc),
             "%s: guard cells of x and C", what);
    for (int run = 0; run < 2; run++)
        free(x[run]), free(c[run]);
    free(exact);
    free(data);
    free(index);
    free(b);
    free(x0);
    clReleaseMemObject(ddata);
    clReleaseMemObject(dindex);
    clReleaseMemObject(db);
}

// The products' fused epilogues against the plain product on the same device, bit for bit, and
// against double references: NN with the product masked by a ReLU output before beta C is added
// (clrt_gemm_masked: 0 where mask <= 0, exactly as bias_backward masks), and TN with B's column
// sums (clrt_gemm_tn_colsum: the sums a float at a time in row order, as bias_backward adds them,
// so equal to the host's float loop), into grads at an offset, added to them when accumulate. Guard
// cells after C and around the sums.
static void test_gemm_fused(bool colsum, int m, int n, int k, float beta, bool accumulate)
{
    size_t ar = colsum ? (size_t)k : (size_t)m, ac = colsum ? (size_t)m : (size_t)k;
    size_t lda = ac + 3, ldb = (size_t)n + 5, ldc = (size_t)n + 2, off = 7;
    size_t na = off + ar * lda, nb = off + (size_t)k * ldb, nc = off + (size_t)m * ldc + GUARD;
    size_t nmask = off + (size_t)m * ldc, nsum = 5 + (size_t)n + GUARD;
    float *a = tu_alloc(na, sizeof(float)), *b = tu_alloc(nb, sizeof(float));
    float *c = tu_alloc(nc, sizeof(float)), *mask = tu_alloc(nmask, sizeof(float));
    float *plain = tu_alloc(nc, sizeof(float)), *fused = tu_alloc(nc, sizeof(float));
    float *sums = tu_alloc(nsum, sizeof(float)), *sums0 = tu_alloc(nsum, sizeof(float));
    double *want = tu_alloc((size_t)m * n, sizeof(double));
    float *got = tu_alloc((size_t)m * n, sizeof(float));
    double *scale = tu_alloc((size_t)m * n, sizeof(double));
    for (size_t i = 0; i < na; i++)
        a[i] = rng_range(-1.0, 1.0);
    for (size_t i = 0; i < nb; i++)
        b[i] = rng_range(-1.0, 1.0);
    for (size_t i = 0; i < nmask; i++)
        mask[i] = rng_uniform() < 0.4 ? (rng_uniform() < 0.5 ? 0.0f : -1.0f) : rng_range(0.0, 2.0);
    tu_fill_guard(c, 0, nc);
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++)
            c[off + (size_t)i * ldc + (size_t)j] = rng_range(-1.0, 1.0);
    tu_fill_guard(sums0, 0, nsum);
    cl_mem da = tu_upload(&rt, a, na * sizeof(float), "A");
    cl_mem db = tu_upload(&rt, b, nb * sizeof(float), "B");
    cl_mem dmask = tu_upload(&rt, mask, nmask * sizeof(float), "mask");
    struct clrt_mat ma = {da, off, lda}, mb = {db, off, ldb};
    for (int run = 0; run < 2; run++) { // the plain product, then the fused one
        cl_mem dc = tu_upload(&rt, c, nc * sizeof(float), "C");
        cl_mem dsum = tu_upload(&rt, sums0, nsum * sizeof(float), "sums");
        struct clrt_mat mc = {dc, off, ldc};
        if (run == 0)
            clrt_gemm(&rt, colsum, false, (size_t)m, (size_t)n, (size_t)k, 1.0f, ma, mb, beta, mc);
        else if (colsum)
            tu_check(clrt_gemm_tn_colsum(&rt, (size_t)m, (size_t)n, (size_t)k, ma, mb, beta, mc,
                                         (struct clrt_mat){dsum, 5, 1}, accumulate),
                     "clrt_gemm_tn_colsum %dx%dx%d runs in one launch", m, n, k);
        else
            clrt_gemm_masked(&rt, (size_t)m, (size_t)n, (size_t)k, ma, mb, beta, mc,
                             (struct clrt_mat){dmask, off, ldc});
        tu_download(&rt, dc, run ? fused : plain, nc * sizeof(float));
        if (run)
            tu_download(&rt, dsum, sums, nsum * sizeof(float));
        clReleaseMemObject(dc);
        clReleaseMemObject(dsum);
    }
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            size_t at = off + (size_t)i * ldc + (size_t)j, w = (size_t)i * n + (size_t)j;
            double sum = 0, mag = 0;
            for (int q = 0; q < k; q++) {
                double x =
                    a[off + (colsum ? (size_t)q * lda + (size_t)i : (size_t)i * lda + (size_t)q)];
                double y = b[off + (size_t)q * ldb + (size_t)j];
                sum += x * y;
                mag += fabs(x * y);
            }
            bool keep = colsum || mask[at] > 0.0f;
            double old = beta != 0.0f ? beta * (double)c[at] : 0.0;
            want[w] = keep ? sum + old : old;
            scale[w] = mag + fabs((double)c[at]) + 1e-3;
            got[w] = fused[at];
            if (!keep) // bias_backward's mask on the product, then beta C added
                plain[at] = beta != 0.0f ? beta * c[at] : 0.0f;
        }
    char what[160];
    snprintf(what, sizeof what, "gemm clvae %c %dx%dx%d beta %g%s", colsum ? 'T' : 'N', m, n, k,
             (double)beta, colsum ? " + column sums" : " masked by a ReLU output");
    double *exact = tu_alloc(nc, sizeof(double));
    for (size_t i = 0; i < nc; i++)
        exact[i] = plain[i];
    char bits[320];
    snprintf(bits, sizeof bits, "%s: C equals the plain product's (masked) bit for bit", what);
    tu_compare(bits, fused, exact, NULL, nc, 0.0, 0.0);
    snprintf(bits, sizeof bits, "%s: C against the double product", what);
    tu_compare(bits, got, want, scale, (size_t)m * n, 0.0, 1e-5);
    if (colsum) {
        double *host = tu_alloc((size_t)n, sizeof(double)),
               *ref = tu_alloc((size_t)n, sizeof(double));
        double *mag = tu_alloc((size_t)n, sizeof(double));
        for (int j = 0; j < n; j++) {
            float f = 0.0f; // bias_backward's loop
            double d = 0.0, s = 0.0;
            for (int q = 0; q < k; q++) {
                float y = b[off + (size_t)q * ldb + (size_t)j];
                f += y, d += y, s += fabs(y);
            }
            host[j] = accumulate ? sums0[5 + j] + f : f;
            ref[j] = (accumulate ? sums0[5 + j] : 0.0) + d;
            mag[j] = s + (accumulate ? fabs(sums0[5 + j]) : 0.0);
        }
        snprintf(bits, sizeof bits, "%s%s: sums equal bias_backward's float loop", what,
                 accumulate ? ", accumulated" : "");
        tu_compare(bits, sums + 5, host, NULL, (size_t)n, 0.0, 0.0);
        snprintf(bits, sizeof bits, "%s: sums against double, rel to sum |B|", what);
        tu_compare(bits, sums + 5, ref, mag, (size_t)n, 0.0, 1e-5);
        tu_check(!tu_changed(sums, 0, 5) && !tu_changed(sums, 5 + (size_t)n, nsum),
                 "%s: the sums' guard cells", what);
        free(host);
        free(ref);
        free(mag);
    }
    free(exact);
    free(a);
    free(b);
    free(c);
    free(mask);
    free(plain);
    free(fused);
    free(sums);
    free(sums0);
    free(want);
    free(got);
    free(scale);
    clReleaseMemObject(da);
    clReleaseMemObject(db);
    clReleaseMemObject(dmask);
}

// n random floats in [-1, 1] uploaded (host copy in *host, freed by the caller).
static cl_mem random_buffer(size_t n, float **host, const char *name)
{
    *host = tu_alloc(n, sizeof(float));
    for (size_t i = 0; i < n; i++)
        (*host)[i] = rng_range(-1.0, 1.0);
    return tu_upload(&rt, *host, n * sizeof(float), name);
}

// The device buffer's n floats from offset off equal the other's, bit for bit.
static void same_bits(cl_mem got, cl_mem want, size_t off, size_t n, const char *fmt, ...)
{
    float *g = tu_alloc(off + n, sizeof(float)), *w = tu_alloc(off + n, sizeof(float));
    tu_download(&rt, got, g, (off + n) * sizeof(float));
    tu_download(&rt, want, w, (off + n) * sizeof(float));
    char what[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    size_t i = 0;
    while (i < n && memcmp(g + off + i, w + off + i, sizeof(float)) == 0)
        i++;
    if (i < n) // where it first differs, for the report
        fprintf(stderr, "  float %zu of %zu: %.9g against %.9g\n", i, n, (double)g[off + i],
                (double)w[off + i]);
    tu_check(i == n, "%s", what);
    free(g);
    free(w);
}

// gemm_sum_parts16 (a CPU's sum of a split product's parts) against gemm_sum_parts, bit for bit:
// parts of m x n at p m n, C (rows ldc apart, at an offset) with alpha, beta and each epilogue.
static void test_sum_parts16(int parts, int m, int n, float alpha, float beta, int epilogue)
{
    int ldc = n + 3, c_off = 5, bias_off = 2;
    size_t nc = (size_t)c_off + (size_t)m * ldc, nb = (size_t)bias_off + (size_t)m * ldc;
    float *hp, *hc, *hb;
    cl_mem dp = random_buffer((size_t)parts * m * n, &hp, "parts");
    cl_mem dc = random_buffer(nc, &hc, "C"), dc16 = tu_upload(&rt, hc, nc * sizeof(float), "C16");
    cl_mem db = random_buffer(nb, &hb, "bias");
    const char *names[2] = {"gemm_sum_parts", "gemm_sum_parts16"};
    cl_mem out[2] = {dc, dc16};
    for (int v = 0; v < 2; v++) {
        cl_kernel k = clrt_kernel(&rt, names[v]);
        cl_ulong co = (cl_ulong)c_off, bo = (cl_ulong)bias_off;
        cl_uint a = 0;
        KARG(k, a++, dp);
        KARG(k, a++, parts);
        KARG(k, a++, m);
        KARG(k, a++, n);
        KARG(k, a++, alpha);
        KARG(k, a++, beta);
        KARG(k, a++, out[v]);
        KARG(k, a++, co);
        KARG(k, a++, ldc);
        KARG(k, a++, db);
        KARG(k, a++, bo);
        KARG(k, a++, epilogue);
        size_t global[2] = {v ? ((size_t)n + 15) / 16 : (size_t)n, (size_t)m};
        clrt_launch(&rt, k, 2, global, NULL);
    }
    same_bits(dc16, dc, 0, nc,
              "gemm_sum_parts16 (%d parts of %dx%d, alpha %g beta %g, epilogue %d) = "
              "gemm_sum_parts bit for bit, guard cells too",
              parts, m, n, (double)alpha, (double)beta, epilogue);
    clReleaseMemObject(dp);
    clReleaseMemObject(dc);
    clReleaseMemObject(dc16);
    clReleaseMemObject(db);
    free(hp);
    free(hc);
    free(hb);
}

// The fused step's products (clvae's kernels) against the launches they replace, bit for bit:
// those are checked against double references above. A layer's forward keeping W^T (ep.wt) gives
// the same y and exactly the transpose; gemm_pair gives what clrt_gemm_tn_colsum and then
// clrt_gemm_masked (or plain clrt_gemm with beta) give, or with the sampler's epilogue what the
// dz product then reparameterize_backward give; gemm_nn_reparameterize what the head's product
// then reparameterize give. Odd sizes: edge blocks in every direction.
static void test_fused_step(int rows, int in, int out, bool mask, float beta1, bool accumulate)
{
    bool saved = rt.own_gemm; // clvae's kernels on any device (k here is small: see main)
    rt.own_gemm = true;
    float *hx, *hw, *hb, *hdy, *hm;
    size_t nw = (size_t)in * out + out; // W (in, out) then the bias
    cl_mem x = random_buffer((size_t)rows * in, &hx, "x");
    cl_mem w = random_buffer(nw, &hw, "W");
    cl_mem dy = random_buffer((size_t)rows * out, &hdy, "dy");
    cl_mem m = random_buffer((size_t)rows * in, &hm, "mask");
    cl_mem grads0 = random_buffer(nw, &hb, "grads");
    struct clrt_mat mx = {x, 0, (size_t)in}, mw = {w, 0, (size_t)out};
    // Every buffer below starts from these zeros: the largest is rows x max(out, 2 in, 32) + 3.
    size_t wide = (size_t)(out > 2 * in ? out : 2 * in) + 32 + (size_t)in * out + nw;
    float *zero = tu_alloc((size_t)(rows + 3) * wide, sizeof(float));
    cl_mem y1 = tu_upload(&rt, zero, (size_t)rows * out * sizeof(float), "y1");
    cl_mem y2 = tu_upload(&rt, zero, (size_t)rows * out * sizeof(float), "y2");
    cl_mem wt1 = tu_upload(&rt, zero, (size_t)in * out * sizeof(float), "wt1");
    cl_mem wt2 = tu_upload(&rt, zero, (size_t)in * out * sizeof(float), "wt2");
    // The forward keeping W^T, against the product and transpose_tiles.
    tu_check(clrt_gemm_keeps_wt(&rt, (size_t)rows, (size_t)out, (size_t)in, mx, mw),
             "%dx%dx%d: clvae's kernels keep W^T in the forward launch", rows, out, in);
    struct clrt_epilogue ep = {.bias = {w, (size_t)in * out, 0}, .relu = true};
    clrt_gemm_bias(&rt, (size_t)rows, (size_t)out, (size_t)in, mx, mw,
                   (struct clrt_mat){y1, 0, (size_t)out}, &ep);
    ep.wt = (struct clrt_mat){wt2, 0, (size_t)in};
    clrt_gemm_bias(&rt, (size_t)rows, (size_t)out, (size_t)in, mx, mw,
                   (struct clrt_mat){y2, 0, (size_t)out}, &ep);
    cl_kernel t = clrt_kernel(&rt, "transpose_tiles");
    int src = 0, dst = 0;
    KARG(t, 0, w);
    KARG(t, 1, src);
    KARG(t, 2, wt1);
    KARG(t, 3, dst);
    KARG(t, 4, in);
    KARG(t, 5, out);
    KARG(t, 6, in);
    size_t tg[2] = {((size_t)out + 15) / 16, ((size_t)in + 15) / 16};
    clrt_launch(&rt, t, 2, tg, NULL);
    clReleaseKernel(t);
    same_bits(y2, y1, 0, (size_t)rows * out, "%dx%dx%d forward keeping W^T: y bit for bit", rows,
              out, in);
    same_bits(wt2, wt1, 0, (size_t)in * out,
              "%dx%dx%d forward keeping W^T: W^T equals transpose_tiles'", rows, out, in);

    // gemm_pair: dW, db and dx in one launch against the two launches.
    cl_mem g[2], dx[2];
    for (int run = 0; run < 2; run++) {
        g[run] = tu_upload(&rt, hb, nw * sizeof(float), "grads");
        dx[run] = tu_upload(&rt, hm, (size_t)rows * in * sizeof(float), "dx");
        struct clrt_mat mdy = {dy, 0, (size_t)out}, mg = {g[run], 0, (size_t)out},
                        msum = {g[run], (size_t)in * out, 1}, mdx = {dx[run], 0, (size_t)in},
                        mt = {wt1, 0, (size_t)in}, mmask = {m, 0, (size_t)in};
        struct clrt_epilogue em = {.bias = mmask, .kind = CLRT_EPILOGUE_MASK};
        if (run == 0) {
            tu_check(clrt_gemm_tn_colsum(&rt, (size_t)in, (size_t)out, (size_t)rows, mx, mdy,
                                         accumulate ? 1.0f : 0.0f, mg, msum, accumulate),
                     "%dx%dx%d: the weight gradient in one launch", in, out, rows);
            if (mask)
                clrt_gemm_masked(&rt, (size_t)rows, (size_t)in, (size_t)out, mdy, mt, beta1, mdx,
                                 mmask);
            else
                clrt_gemm(&rt, false, false, (size_t)rows, (size_t)in, (size_t)out, 1.0f, mdy, mt,
                          beta1, mdx);
            continue;
        }
        struct clrt_pair pair = {.m0 = (size_t)in,
                                 .n0 = (size_t)out,
                                 .k0 = (size_t)rows,
                                 .a0 = mx,
                                 .b0 = mdy,
                                 .c0 = mg,
                                 .colsum = msum,
                                 .accumulate = accumulate,
                                 .m1 = (size_t)rows,
                                 .n1 = (size_t)in,
                                 .k1 = (size_t)out,
                                 .a1 = mdy,
                                 .b1 = mt,
                                 .c1 = mdx,
                                 .beta1 = beta1,
                                 .ep1 = mask ? &em : NULL};
        tu_check(clrt_gemm_pair(&rt, &pair), "%dx%dx%d: gemm_pair runs", rows, in, out);
    }
    same_bits(g[1], g[0], 0, nw, "gemm_pair %d rows, %d in, %d out%s: dW and db bit for bit", rows,
              in, out, accumulate ? ", accumulated" : "");
    same_bits(dx[1], dx[0], 0, (size_t)rows * in,
              "gemm_pair %d rows, %d in, %d out, %s, beta %g: dx bit for bit", rows, in, out,
              mask ? "masked" : "plain", (double)beta1);

    // The sampler's epilogue: dz (rows, in = latent) = dy W^T, then dml.
    int latent = in;
    float *hml, *heps;
    cl_mem ml = random_buffer((size_t)rows * 2 * latent, &hml, "ml");
    cl_mem eps = random_buffer((size_t)rows * latent, &heps, "eps");
    cl_mem dz = tu_upload(&rt, zero, (size_t)rows * latent * sizeof(float), "dz");
    cl_mem dml[2];
    for (int run = 0; run < 2; run++)
        dml[run] = tu_upload(&rt, zero, (size_t)rows * 2 * latent * sizeof(float), "dml");
    float bs = 0.37f, ns = 0.9f;
    struct clrt_mat mdy = {dy, 0, (size_t)out}, mt = {wt1, 0, (size_t)in};
    clrt_gemm(&rt, false, false, (size_t)rows, (size_t)in, (size_t)out, 1.0f, mdy, mt, 0.0f,
              (struct clrt_mat){dz, 0, (size_t)latent});
    cl_kernel k = clrt_kernel(&rt, "reparameterize_backward");
    KARG(k, 0, dz);
    KARG(k, 1, ml);
    KARG(k, 2, eps);
    KARG(k, 3, dml[0]);
    KARG(k, 4, rows);
    KARG(k, 5, latent);
    KARG(k, 6, bs);
    KARG(k, 7, ns);
    size_t global = (size_t)rows;
    clrt_launch(&rt, k, 1, &global, NULL);
    clReleaseKernel(k);
    cl_mem g2 = tu_upload(&rt, hb, nw * sizeof(float), "grads");
    struct clrt_epilogue es = {.kind = CLRT_EPILOGUE_SAMPLER,
                               .bias = {ml, 0, (size_t)2 * latent},
                               .eps = eps,
                               .beta_scale = bs,
                               .noise_scale = ns};
    struct clrt_pair ps = {.m0 = (size_t)in,
                           .n0 = (size_t)out,
                           .k0 = (size_t)rows,
                           .a0 = mx,
                           .b0 = mdy,
                           .c0 = {g2, 0, (size_t)out},
                           .colsum = {g2, (size_t)in * out, 1},
                           .m1 = (size_t)rows,
                           .n1 = (size_t)in,
                           .k1 = (size_t)out,
                           .a1 = mdy,
                           .b1 = mt,
                           .c1 = {dml[1], 0, (size_t)2 * latent},
                           .ep1 = &es};
    tu_check(clrt_gemm_pair(&rt, &ps), "gemm_pair with the sampler's epilogue runs");
    same_bits(dml[1], dml[0], 0, (size_t)rows * 2 * latent,
              "gemm_pair %d rows, latent %d: the sampler's epilogue writes "
              "reparameterize_backward's dml bit for bit",
              rows, latent);

    // gemm_nn_reparameterize: the head (n = 2 latent2 <= 32) and the sample.
    int latent2 = out / 2 > 16 ? 16 : (out / 2 > 0 ? out / 2 : 1), n2 = 2 * latent2;
    float *hw2;
    cl_mem w2 = random_buffer((size_t)in * n2 + n2, &hw2, "W head");
    struct clrt_mat mw2 = {w2, 0, (size_t)n2};
    struct clrt_epilogue eh = {.bias = {w2, (size_t)in * n2, 0}};
    cl_mem mlh[2], z[2], e2[2], kl[2],
        wth = tu_upload(&rt, zero, (size_t)in * n2 * sizeof(float), "wt");
    for (int run = 0; run < 2; run++) {
        mlh[run] = tu_upload(&rt, zero, (size_t)rows * n2 * sizeof(float), "ml");
        z[run] = tu_upload(&rt, zero, (size_t)rows * latent2 * sizeof(float), "z");
        e2[run] = tu_upload(&rt, zero, (size_t)rows * latent2 * sizeof(float), "eps");
        kl[run] = tu_upload(&rt, zero, ((size_t)rows + 3) * sizeof(float), "kl");
    }
    struct clrt_reparam rp = {.z = z[1],
                              .eps = e2[1],
                              .kl = kl[1],
                              .kl_offset = 3,
                              .row0 = 5,
                              .seed = 0x123456789ull,
                              .step = 77,
                              .stream = 2,
                              .noise_scale = 0.8f};
    eh.wt = (struct clrt_mat){wth, 0, (size_t)in};
    tu_check(clrt_gemm_bias_reparameterize(&rt, (size_t)rows, (size_t)n2, (size_t)in, mx, mw2,
                                           (struct clrt_mat){mlh[1], 0, (size_t)n2}, &eh, &rp),
             "gemm_nn_reparameterize runs for %d x %d", rows, n2);
    eh.wt = (struct clrt_mat){0};
    clrt_gemm_bias(&rt, (size_t)rows, (size_t)n2, (size_t)in, mx, mw2,
                   (struct clrt_mat){mlh[0], 0, (size_t)n2}, &eh);
    struct sampler sp;
    sampler_create(&sp, &rt, latent2);
    struct sampler_buffers sb = {.ml = mlh[0], .z = z[0], .eps = e2[0]};
    struct sampler_noise noise = {.seed = rp.seed,
                                  .step = rp.step,
                                  .stream = rp.stream,
                                  .scale = rp.noise_scale,
                                  .row0 = rp.row0};
    sampler_forward(&sp, &sb, rows, &noise, kl[0], 3);
    sampler_release(&sp);
    same_bits(mlh[1], mlh[0], 0, (size_t)rows * n2,
              "gemm_nn_reparameterize %dx%dx%d: ml bit for bit", rows, n2, in);
    same_bits(z[1], z[0], 0, (size_t)rows * latent2,
              "gemm_nn_reparameterize %dx%dx%d: z bit for bit", rows, n2, in);
    same_bits(e2[1], e2[0], 0, (size_t)rows * latent2,
              "gemm_nn_reparameterize %dx%dx%d: eps bit for bit", rows, n2, in);
    same_bits(kl[1], kl[0], 3, (size_t)rows, "gemm_nn_reparameterize %dx%dx%d: kl bit for bit",
              rows, n2, in);

    // The same launch with the decoder's first product on z (latent2 -> out, bias and ReLU, W^T
    // kept): what clrt_gemm_bias gives on the z above, and the same z.
    float *hw3;
    cl_mem w3 = random_buffer((size_t)latent2 * out + out, &hw3, "W decoder");
    cl_mem y3[2], wt3[2], z3 = tu_upload(&rt, zero, (size_t)rows * latent2 * sizeof(float), "z");
    for (int run = 0; run < 2; run++) {
        y3[run] = tu_upload(&rt, zero, (size_t)rows * out * sizeof(float), "y");
        wt3[run] = tu_upload(&rt, zero, (size_t)latent2 * out * sizeof(float), "wt");
    }
    struct clrt_epilogue e3 = {.bias = {w3, (size_t)latent2 * out, 0}, .relu = true};
    rp.z = z3;
    rp.next[0] = (struct clrt_z_product){
        .n = (size_t)out, .b = {w3, 0, (size_t)out}, .c = {y3[1], 0, (size_t)out}, .ep = e3};
    rp.next[0].ep.wt = (struct clrt_mat){wt3[1], 0, (size_t)latent2};
    tu_check(clrt_gemm_bias_reparameterize(&rt, (size_t)rows, (size_t)n2, (size_t)in, mx, mw2,
                                           (struct clrt_mat){mlh[1], 0, (size_t)n2}, &eh, &rp) == 2,
             "gemm_nn_reparameterize runs %d x %d with the product %d x %d after it", rows, n2,
             rows, out);
    e3.wt = (struct clrt_mat){wt3[0], 0, (size_t)latent2};
    clrt_gemm_bias(&rt, (size_t)rows, (size_t)out, (size_t)latent2,
                   (struct clrt_mat){z[0], 0, (size_t)latent2},
                   (struct clrt_mat){w3, 0, (size_t)out}, (struct clrt_mat){y3[0], 0, (size_t)out},
                   &e3);
    same_bits(z3, z[0], 0, (size_t)rows * latent2,
              "gemm_nn_reparameterize %dx%dx%d with the next product: z bit for bit", rows, n2, in);
    same_bits(y3[1], y3[0], 0, (size_t)rows * out,
              "gemm_nn_reparameterize %dx%dx%d: the next product %dx%dx%d bit for bit", rows, n2,
              in, rows, out, latent2);
    same_bits(wt3[1], wt3[0], 0, (size_t)latent2 * out,
              "gemm_nn_reparameterize %dx%dx%d: the next product's W^T bit for bit", rows, n2, in);
    cl_mem all[] = {x,     w,     dy,    m,      grads0, y1,     y2,     wt1,    wt2,
                    g[0],  g[1],  dx[0], dx[1],  ml,     eps,    dz,     dml[0], dml[1],
                    g2,    w2,    wth,   mlh[0], mlh[1], z[0],   z[1],   e2[0],  e2[1],
                    kl[0], kl[1], w3,    y3[0],  y3[1],  wt3[0], wt3[1], z3};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        clReleaseMemObject(all[i]);
    float *hosts[] = {hx, hw, hb, hdy, hm, hml, heps, hw2, hw3, zero};
    for (size_t i = 0; i < sizeof hosts / sizeof hosts[0]; i++)
        free(hosts[i]);
    rt.own_gemm = saved;
}

// gemm_nn_reparameterize's chain: the head (in -> 2 latent) and the sample, the decoder's layers
// z -> hidden (bias and ReLU) -> the output (bias; dim x likelihood_outputs values), both keeping
// W^T, and the likelihood's rows (kind LIKELIHOOD_*, channels a pixel) in one launch, against the
// head's launch alone, clrt_gemm_bias for each layer and the likelihood's *_rows16 kernel: every
// buffer bit for bit. Targets k / 255, 0 and 1 among them (the logistic's edge bins). With image
// > 0 the head's input is a first layer's (image bytes -> in, bias and ReLU) on rows gathered
// from a data set of bytes in the same launch, against clrt_gemm_bias_gathered: x and its y too.
static void test_head_chain(int rows, int in, int latent, int hidden, int dim, int channels,
                            int kind, int image)
{
    if (clrt_chain_most(&rt) < 2) {
        printf("the head's chain: the device runs one product after the sample at most, "
               "skipped\n");
        return;
    }
    bool saved = rt.own_gemm;
    rt.own_gemm = true;
    int n2 = 2 * latent, nout = dim * (kind == 1 ? 2 : 1);
    float *hx, *hh, *hd, *ho, *ht = tu_alloc((size_t)rows * dim, sizeof(float));
    cl_mem x = random_buffer((size_t)rows * in, &hx, "x");
    cl_mem wh = random_buffer((size_t)in * n2 + n2, &hh, "W head");
    cl_mem wd = random_buffer((size_t)latent * hidden + hidden, &hd, "W decoder");
    cl_mem wo = random_buffer((size_t)hidden * nout + nout, &ho, "W output");
    for (size_t i = 0; i < (size_t)rows * dim; i++)
        ht[i] = (float)(rng_range(0.0, 256.0) > 255.0 ? 255 : (int)rng_range(0.0, 256.0)) / 255.0f;
    cl_mem t = tu_upload(&rt, ht, (size_t)rows * dim * sizeof(float), "targets");
    // The first layer's data set: 2 rows + 5 images, rows of them from image start on.
    int count = 2 * rows + 5, start = 3, *hidx = tu_alloc((size_t)(start + rows), sizeof(int));
    unsigned char *hdata = tu_alloc((size_t)count * (size_t)(image > 0 ? image : 1), 1);
    for (size_t i = 0; i < (size_t)count * (size_t)image; i++)
        hdata[i] = (unsigned char)rng_range(0.0, 256.0);
    for (int i = 0; i < start + rows; i++)
        hidx[i] = (int)rng_range(0.0, (double)count) % count;
    cl_mem data = tu_upload(&rt, hdata, (size_t)count * (size_t)(image > 0 ? image : 1), "data");
    cl_mem index = tu_upload(&rt, hidx, (size_t)(start + rows) * sizeof(int), "index");
    float *h1;
    cl_mem w1 = random_buffer((size_t)(image > 0 ? image : 1) * in + in, &h1, "W first");
    // Per run: ml, z, eps, kl, W^T of the three layers, the decoder's y, the output, its
    // gradient, the terms, the row sums; the gathered x and the first layer's y.
    enum { ML, Z, EPS, KL, WTH, WTD, WTO, H, OUT, DOUT, TERMS, REC, XF, Y1, NBUF };
    size_t floats[NBUF] = {(size_t)rows * n2,
                           (size_t)rows * latent,
                           (size_t)rows * latent,
                           (size_t)rows + 3,
                           (size_t)in * n2,
                           (size_t)latent * hidden,
                           (size_t)hidden * nout,
                           (size_t)rows * hidden,
                           (size_t)rows * nout,
                           (size_t)rows * nout,
                           (size_t)rows * dim,
                           (size_t)rows + 3,
                           (size_t)rows * (size_t)(image > 0 ? image : 1),
                           (size_t)rows * in};
    size_t most = 0; // every buffer starts from zeros
    for (int j = 0; j < NBUF; j++)
        most = floats[j] > most ? floats[j] : most;
    float *zero = tu_alloc(most, sizeof(float));
    cl_mem b[2][NBUF];
    for (int run = 0; run < 2; run++)
        for (int j = 0; j < NBUF; j++)
            b[run][j] = tu_upload(&rt, zero, floats[j] * sizeof(float), "buffer");
    float scale = 0.75f;
    for (int run = 0; run < 2; run++) {
        cl_mem *o = b[run];
        struct clrt_reparam rp = {.z = o[Z],
                                  .eps = o[EPS],
                                  .kl = o[KL],
                                  .kl_offset = 3,
                                  .row0 = 1,
                                  .seed = 99,
                                  .step = 5,
                                  .stream = 0,
                                  .noise_scale = 1.0f};
        struct clrt_epilogue eh = {.bias = {wh, (size_t)in * n2, 0}, .wt = {o[WTH], 0, (size_t)in}};
        struct clrt_epilogue ed = {.bias = {wd, (size_t)latent * hidden, 0},
                                   .relu = true,
                                   .wt = {o[WTD], 0, (size_t)latent}};
        struct clrt_epilogue eo = {.bias = {wo, (size_t)hidden * nout, 0},
                                   .wt = {o[WTO], 0, (size_t)hidden}};
        struct clrt_mat mh = {o[H], 0, (size_t)hidden}, mo = {o[OUT], 0, (size_t)nout};
        struct clrt_mat mwd = {wd, 0, (size_t)hidden}, mwo = {wo, 0, (size_t)nout};
        struct clrt_mat head_x = {x, 0, (size_t)in}, y1 = {o[Y1], 0, (size_t)in};
        struct clrt_epilogue e1 = {.bias = {w1, (size_t)image * in, 0}, .relu = true};
        struct clrt_gather g = {.data = data, .index = index, .x = o[XF], .start = start};
        if (image > 0) {
            head_x = y1;
            if (run == 0)
                rp.first = (struct clrt_first_product){.on = true,
                                                       .g = g,
                                                       .n = (size_t)in,
                                                       .k = (size_t)image,
                                                       .b = {w1, 0, (size_t)in},
                                                       .c = y1,
                                                       .ep = e1};
            else
                tu_check(clrt_gemm_bias_gathered(&rt, (size_t)rows, (size_t)in, (size_t)image, &g,
                                                 (struct clrt_mat){w1, 0, (size_t)in}, y1, &e1),
                         "the gathered product %dx%dx%d runs", rows, in, image);
        }
        if (run == 0) {
            rp.next[0] = (struct clrt_z_product){.n = (size_t)hidden, .b = mwd, .c = mh, .ep = ed};
            rp.next[1] = (struct clrt_z_product){.n = (size_t)nout, .b = mwo, .c = mo, .ep = eo};
            rp.lik = (struct clrt_rows_likelihood){.on = true,
                                                   .kind = kind,
                                                   .x = t,
                                                   .dout = o[DOUT],
                                                   .terms = o[TERMS],
                                                   .rec = o[REC],
                                                   .dim = dim,
                                                   .channels = channels,
                                                   .rec_offset = 3,
                                                   .scale = scale};
        }
        int done = clrt_gemm_bias_reparameterize(&rt, (size_t)rows, (size_t)n2, (size_t)in, head_x,
                                                 (struct clrt_mat){wh, 0, (size_t)n2},
                                                 (struct clrt_mat){o[ML], 0, (size_t)n2}, &eh, &rp);
        tu_check(done == (run == 0 ? 3 : 1),
                 "the head's launch %dx%dx%d runs %d products after the sample (%d)", rows, n2, in,
                 run == 0 ? 2 : 0, done - 1);
        if (run == 0)
            continue;
        clrt_gemm_bias(&rt, (size_t)rows, (size_t)hidden, (size_t)latent,
                       (struct clrt_mat){o[Z], 0, (size_t)latent}, mwd, mh, &ed);
        clrt_gemm_bias(&rt, (size_t)rows, (size_t)nout, (size_t)hidden, mh, mwo, mo, &eo);
        cl_kernel k =
            clrt_kernel(&rt, kind == 1 ? "logistic_nll_grad_rows16" : "bce_logits_grad_rows16");
        int a = 0, off = 3;
        KARG(k, a++, o[OUT]);
        KARG(k, a++, t);
        KARG(k, a++, o[DOUT]);
        KARG(k, a++, o[TERMS]);
        KARG(k, a++, rows);
        KARG(k, a++, dim);
        KARG(k, a++, channels);
        KARG(k, a++, scale);
        KARG(k, a++, o[REC]);
        KARG(k, a++, off);
        clrt_launch(&rt, k, 1, (size_t[]){(size_t)rows}, NULL);
        clrt_release_kernel(k);
    }
    static const char *const names[NBUF] = {"ml",         "z",
                                            "eps",        "kl",
                                            "head W^T",   "decoder W^T",
                                            "output W^T", "decoder y",
                                            "output",     "its gradient",
                                            "terms",      "row sums",
                                            "gathered x", "first layer's y"};
    for (int j = 0; j < NBUF; j++)
        same_bits(b[0][j], b[1][j], 0, floats[j],
                  "the head's chain (%d rows, %d bytes -> %d -> %d -> %d -> %d, likelihood %d, %d "
                  "channels): %s bit for bit",
                  rows, image, in, latent, hidden, nout, kind, channels, names[j]);
    for (int run = 0; run < 2; run++)
        for (int j = 0; j < NBUF; j++)
            clReleaseMemObject(b[run][j]);
    cl_mem ins[] = {x, wh, wd, wo, t, data, index, w1};
    for (size_t i = 0; i < sizeof ins / sizeof ins[0]; i++)
        clReleaseMemObject(ins[i]);
    float *hosts[] = {hx, hh, hd, ho, ht, zero, h1};
    for (size_t i = 0; i < sizeof hosts / sizeof hosts[0]; i++)
        free(hosts[i]);
    free(hidx);
    free(hdata);
    rt.own_gemm = saved;
}

// gather_images: data (count, dim) random bytes, index a random permutation of count, rows images
// from start -> x (rows, dim); exact against the kernel's own formula, byte * (1 / 255.0f). The
// data in n_parts buffers of whole images (a data set larger than the largest allocation), a launch
// each that fills only its own images' rows.
static void test_gather_images(int count, int dim, int start, int rows, const size_t *local,
                               int n_parts)
{
    cl_kernel k = clrt_kernel(&rt, "gather_images");
    size_t bytes = (size_t)count * dim, n_x = (size_t)rows * dim;
    unsigned char *data = tu_alloc(bytes, 1);
    int *index = tu_alloc((size_t)count, sizeof(int));
    float *x = tu_alloc(n_x + GUARD, sizeof(float));
    double *want = tu_alloc(n_x, sizeof(double));
    double *exact = tu_alloc(n_x, sizeof(double));
    for (size_t i = 0; i < bytes; i++)
        data[i] = (unsigned char)rng_int(256);
    data[0] = 0, data[1] = 255;
    for (int i = 0; i < count; i++)
        index[i] = i;
    for (int i = count - 1; i > 0; i--) {
        int j = rng_int(i + 1), t = index[i];
        index[i] = index[j], index[j] = t;
    }
    for (int r = 0; r < rows; r++) {
        for (int j = 0; j < dim; j++) {
            unsigned char b = data[(size_t)index[start + r] * dim + j];
            want[(size_t)r * dim + j] = (float)b * (1.0f / 255.0f);
            exact[(size_t)r * dim + j] = b / 255.0;
        }
    }
    tu_fill_guard(x, 0, n_x + GUARD);
    cl_mem dindex = tu_upload(&rt, index, (size_t)count * sizeof(int), "index");
    cl_mem dx = tu_upload(&rt, x, (n_x + GUARD) * sizeof(float), "x");
    KARG(k, 3, dindex);
    KARG(k, 4, start);
    KARG(k, 5, rows);
    KARG(k, 6, dim);
    KARG(k, 7, dx);
    cl_mem ddata[4];
    for (int i = 0; i < n_parts; i++) {
        int first = count * i / n_parts, n = count * (i + 1) / n_parts - first;
        ddata[i] = tu_upload(&rt, data + (size_t)first * dim, (size_t)n * dim, "data");
        KARG(k, 0, ddata[i]);
        KARG(k, 1, first);
        KARG(k, 2, n);
        size_t global[2] = {((size_t)dim + 15) / 16, (size_t)rows}; // 16 bytes a work-item
        clrt_launch(&rt, k, 2, global, local);
    }
    tu_download(&rt, dx, x, (n_x + GUARD) * sizeof(float));
    char what[160];
    snprintf(what, sizeof what,
             "gather_images (%d of %d images of %d bytes from %d, local %s, %d parts)", rows, count,
             dim, start, local ? "8x4" : "driver's", n_parts);
    tu_compare(what, x, want, NULL, n_x, 0.0, 0.0);
    snprintf(what, sizeof what, "gather_images (%dx%d) vs byte / 255 in double", rows, dim);
    tu_compare(what, x, exact, NULL, n_x, 0.0, 1.2e-7);
    tu_check(!tu_changed(x, n_x, n_x + GUARD), "gather_images (%dx%d): guard cells", rows, dim);
    free(data);
    free(index);
    free(x);
    free(want);
    free(exact);
    for (int i = 0; i < n_parts; i++)
        clReleaseMemObject(ddata[i]);
    clReleaseMemObject(dindex);
    clReleaseMemObject(dx);
    clReleaseKernel(k);
}

// ml (rows, 2 latent) = [mu | logvar] with mu in +-3 and logvar in [-20, 10], both ends included.
static void random_ml(float *ml, int rows, int latent)
{
    for (int r = 0; r < rows; r++) {
        for (int k = 0; k < latent; k++) {
            ml[(size_t)r * 2 * latent + k] = rng_range(-3.0, 3.0);
            ml[(size_t)r * 2 * latent + latent + k] = rng_range(-20.0, 10.0);
        }
    }
    ml[latent] = -20.0f;
    ml[2 * latent + latent] = 10.0f;
}

// reparameterize on ml (rows, 2 latent) of a pass starting at row row0 of its batch -> eps, z
// (rows, latent) and kl[kl_offset + r] against philox_normal of counter (row0 + r) * latent + j
// and the formulas in double, for noise_scale 1 or 0.
static void test_reparameterize(int rows, int latent, int kl_offset, int row0, uint64_t seed,
                                uint64_t step, uint32_t stream, float noise_scale)
{
    cl_kernel k = clrt_kernel(&rt, "reparameterize");
    size_t n_ml = (size_t)rows * 2 * latent, n_z = (size_t)rows * latent;
    size_t n_kl = (size_t)kl_offset + rows + GUARD;
    float *ml = tu_alloc(n_ml, sizeof(float));
    float *z = tu_alloc(n_z + GUARD, sizeof(float));
    float *eps = tu_alloc(n_z + GUARD, sizeof(float));
    float *kl = tu_alloc(n_kl, sizeof(float));
    double *want_eps = tu_alloc(n_z, sizeof(double));
    double *want_z = tu_alloc(n_z, sizeof(double));
    double *scale_z = tu_alloc(n_z, sizeof(double));
    double *want_kl = tu_alloc((size_t)rows, sizeof(double));
    double *scale_kl = tu_alloc((size_t)rows, sizeof(double));
    random_ml(ml, rows, latent);
    tu_fill_guard(z, 0, n_z + GUARD);
    tu_fill_guard(eps, 0, n_z + GUARD);
    tu_fill_guard(kl, 0, n_kl);
    for (int r = 0; r < rows; r++) {
        for (int j = 0; j < latent; j++) {
            size_t i = (size_t)r * latent + j;
            double mu = ml[(size_t)r * 2 * latent + j];
            double logvar = ml[(size_t)r * 2 * latent + latent + j];
            uint32_t ctr = (uint32_t)(((size_t)row0 + r) * latent + j);
            double e = philox_normal(seed, ctr, step, stream), sd = exp(0.5 * logvar);
            want_eps[i] = e;
            want_z[i] = mu + noise_scale * sd * e;
            // Errors come from eps (absolute, ~1e-6) times sd and from rounding mu and sd * eps.
            scale_z[i] = fabs(mu) + noise_scale * sd * (1.0 + fabs(e));
            want_kl[r] += -0.5 * (1.0 + logvar - mu * mu - exp(logvar));
            scale_kl[r] += 0.5 * (1.0 + fabs(logvar) + mu * mu + exp(logvar));
        }
    }
    cl_mem dml = tu_upload(&rt, ml, n_ml * sizeof(float), "ml");
    cl_mem dz = tu_upload(&rt, z, (n_z + GUARD) * sizeof(float), "z");
    cl_mem deps = tu_upload(&rt, eps, (n_z + GUARD) * sizeof(float), "eps");
    cl_mem dkl = tu_upload(&rt, kl, n_kl * sizeof(float), "kl");
    cl_uint seed_lo = (cl_uint)seed, seed_hi = (cl_uint)(seed >> 32);
    cl_uint step_lo = (cl_uint)step, step_hi = (cl_uint)(step >> 32);
    cl_uint a = 0;
    KARG(k, a++, dml);
    KARG(k, a++, dz);
    KARG(k, a++, deps);
    KARG(k, a++, dkl);
    KARG(k, a++, kl_offset);
    KARG(k, a++, row0);
    KARG(k, a++, rows);
    KARG(k, a++, latent);
    KARG(k, a++, seed_lo);
    KARG(k, a++, seed_hi);
    KARG(k, a++, step_lo);
    KARG(k, a++, step_hi);
    KARG(k, a++, stream);
    KARG(k, a++, noise_scale);
    size_t global = (size_t)rows, local = 8;
    clrt_launch(&rt, k, 1, &global, &local);
    tu_download(&rt, dz, z, (n_z + GUARD) * sizeof(float));
    tu_download(&rt, deps, eps, (n_z + GUARD) * sizeof(float));
    tu_download(&rt, dkl, kl, n_kl * sizeof(float));
    char what[160];
    snprintf(what, sizeof what, "reparameterize (%dx%d, row0 %d, noise %g): eps vs philox_normal",
             rows, latent, row0, noise_scale);
    tu_compare(what, eps, want_eps, NULL, n_z, 1e-5, 0.0);
    if (noise_scale == 0.0f) {
        snprintf(what, sizeof what, "reparameterize (%dx%d, noise 0): z = mu", rows, latent);
        tu_compare(what, z, want_z, NULL, n_z, 0.0, 0.0);
    } else {
        snprintf(what, sizeof what,
                 "reparameterize (%dx%d, noise %g): z, rel to |mu| + sd (1 + |eps|)", rows, latent,
                 noise_scale);
        tu_compare(what, z, want_z, scale_z, n_z, 0.0, 1e-5);
    }
    snprintf(what, sizeof what,
             "reparameterize (%dx%d, noise %g, kl offset %d): kl, rel to its terms' sum of "
             "magnitudes",
             rows, latent, noise_scale, kl_offset);
    tu_compare(what, kl + kl_offset, want_kl, scale_kl, (size_t)rows, 0.0, 1e-5);
    tu_check(!tu_changed(z, n_z, n_z + GUARD) && !tu_changed(eps, n_z, n_z + GUARD) &&
                 !tu_changed(kl, 0, (size_t)kl_offset) &&
                 !tu_changed(kl, (size_t)kl_offset + rows, n_kl),
             "reparameterize (%dx%d): guard cells of z, eps and kl", rows, latent);
    free(ml);
    free(z);
    free(eps);
    free(kl);
    free(want_eps);
    free(want_z);
    free(scale_z);
    free(want_kl);
    free(scale_kl);
    clReleaseMemObject(dml);
    clReleaseMemObject(dz);
    clReleaseMemObject(deps);
    clReleaseMemObject(dkl);
    clReleaseKernel(k);
}

// reparameterize_backward: dz, eps (rows, latent) and ml (rows, 2 latent) -> dml (rows, 2 latent)
// against d/dmu = dz + b mu, d/dlogvar = dz eps s sd / 2 + b (sd^2 - 1) / 2, sd = exp(logvar / 2),
// b = beta_scale, s = noise_scale. With free_bits (reparameterize_backward_free_bits), b is 0 for
// a dimension whose KL averaged over the rows is below free_bits, which is set half way between
// two dimensions' means so that about half of them are cut.
static void test_reparameterize_backward(int rows, int latent, float beta_scale, float noise_scale,
                                         bool free_bits)
{
    cl_kernel k = clrt_kernel(&rt, free_bits ? "reparameterize_backward_free_bits"
                                             : "reparameterize_backward");
    size_t n_ml = (size_t)rows * 2 * latent, n_z = (size_t)rows * latent;
    float *ml = tu_alloc(n_ml, sizeof(float));
    float *dz = tu_alloc(n_z, sizeof(float));
    float *eps = tu_alloc(n_z, sizeof(float));
    float *dml = tu_alloc(n_ml + GUARD, sizeof(float));
    double *want = tu_alloc(n_ml, sizeof(double));
    double *scale = tu_alloc(n_ml, sizeof(double));
    random_ml(ml, rows, latent);
    for (size_t i = 0; i < n_z; i++) {
        dz[i] = rng_range(-1.0, 1.0);
        eps[i] = (float)philox_normal(99, (uint32_t)i, 0, PHILOX_STREAM_EVAL);
    }
    tu_fill_guard(dml, 0, n_ml + GUARD);
    double *kl_mean = tu_alloc((size_t)latent, sizeof(double));
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < latent; j++) {
            double mu = ml[(size_t)r * 2 * latent + j],
                   lv = ml[(size_t)r * 2 * latent + latent + j];
            kl_mean[j] += -0.5 * (1.0 + lv - mu * mu - exp(lv)) / rows;
        }
    double lo = INFINITY, hi = -INFINITY;
    for (int j = 0; j < latent; j++)
        lo = fmin(lo, kl_mean[j]), hi = fmax(hi, kl_mean[j]);
    // The threshold: the mean of two dimensions' means nearest the middle of their range.
    float threshold = 0.0f;
    if (free_bits) {
        double mid = 0.5 * (lo + hi), below = lo, above = hi;
        for (int j = 0; j < latent; j++) {
            if (kl_mean[j] <= mid)
                below = fmax(below, kl_mean[j]);
            else
                above = fmin(above, kl_mean[j]);
        }
        threshold = (float)(0.5 * (below + above));
    }
    double s = noise_scale;
    int cut = 0;
    for (int r = 0; r < rows; r++) {
        for (int j = 0; j < latent; j++) {
            size_t i = (size_t)r * latent + j, m = (size_t)r * 2 * latent + j;
            double b = free_bits && kl_mean[j] < threshold ? 0.0 : beta_scale;
            cut += r == 0 && b == 0.0;
            double mu = ml[m], sd = exp(0.5 * ml[m + latent]);
            want[m] = dz[i] + b * mu;
            scale[m] = fabs(dz[i]) + fabs(b * mu);
            want[m + latent] = dz[i] * eps[i] * s * 0.5 * sd + b * 0.5 * (sd * sd - 1.0);
            scale[m + latent] =
                fabs(dz[i] * eps[i] * s * 0.5 * sd) + fabs(b) * 0.5 * (sd * sd + 1.0);
        }
    }
    cl_mem ddz = tu_upload(&rt, dz, n_z * sizeof(float), "dz");
    cl_mem dml_in = tu_upload(&rt, ml, n_ml * sizeof(float), "ml");
    cl_mem deps = tu_upload(&rt, eps, n_z * sizeof(float), "eps");
    cl_mem ddml = tu_upload(&rt, dml, (n_ml + GUARD) * sizeof(float), "dml");
    KARG(k, 0, ddz);
    KARG(k, 1, dml_in);
    KARG(k, 2, deps);
    KARG(k, 3, ddml);
    KARG(k, 4, rows);
    KARG(k, 5, latent);
    KARG(k, 6, beta_scale);
    KARG(k, 7, noise_scale);
    if (free_bits)
        KARG(k, 8, threshold);
    size_t global = (size_t)(free_bits ? latent : rows), local = free_bits ? 1 : 8;
    clrt_launch(&rt, k, 1, &global, &local);
    tu_download(&rt, ddml, dml, (n_ml + GUARD) * sizeof(float));
    char what[256], cut_text[96] = "";
    if (free_bits)
        snprintf(cut_text, sizeof cut_text, ", %d of %d dimensions below %g", cut, latent,
                 threshold);
    snprintf(what, sizeof what,
             "%s (%dx%d, beta_scale %g, noise %g%s): dml, rel to its terms' magnitudes",
             free_bits ? "reparameterize_backward_free_bits" : "reparameterize_backward", rows,
             latent, beta_scale, noise_scale, cut_text);
    tu_compare(what, dml, want, scale, n_ml, 0.0, 1e-5);
    tu_check(!tu_changed(dml, n_ml, n_ml + GUARD), "reparameterize_backward (%dx%d): guard cells",
             rows, latent);
    free(ml);
    free(dz);
    free(eps);
    free(dml);
    free(want);
    free(scale);
    free(kl_mean);
    clReleaseMemObject(ddz);
    clReleaseMemObject(dml_in);
    clReleaseMemObject(deps);
    clReleaseMemObject(ddml);
    clReleaseKernel(k);
}

// A likelihood's *_rows16 kernel (its values and each row's sum in one launch, a work-item a row:
// the CPUs' kernel) on the inputs the pixel kernel had: dout bit for bit what the pixel kernel
// wrote (want_dout, n_out floats), rec[rec_offset + r] the row's terms (want_terms) added in the
// kernel's order (16 lanes, sum_lanes16, the tail); of terms, only each row's last dim % 16
// written, those bit for bit the pixel kernel's; guard cells after all three.
static void test_likelihood_rows(const char *name, cl_mem out, cl_mem x, int rows, int dim,
                                 int channels, float scale, const float *want_terms,
                                 const float *want_dout, size_t n_out, int rec_offset)
{
    cl_kernel k = clrt_kernel(&rt, name);
    size_t n = (size_t)rows * dim, n_rec = (size_t)rec_offset + rows + GUARD;
    float *dout = tu_alloc(n_out + GUARD, sizeof(float)),
          *terms = tu_alloc(n + GUARD, sizeof(float));
    float *rec = tu_alloc(n_rec, sizeof(float));
    tu_fill_guard(dout, 0, n_out + GUARD);
    tu_fill_guard(terms, 0, n + GUARD);
    tu_fill_guard(rec, 0, n_rec);
    cl_mem d_dout = tu_upload(&rt, dout, (n_out + GUARD) * sizeof(float), "dout");
    cl_mem d_terms = tu_upload(&rt, terms, (n + GUARD) * sizeof(float), "terms");
    cl_mem d_rec = tu_upload(&rt, rec, n_rec * sizeof(float), "rec");
    cl_uint a = 0;
    KARG(k, a++, out);
    KARG(k, a++, x);
    KARG(k, a++, d_dout);
    KARG(k, a++, d_terms);
    KARG(k, a++, rows);
    KARG(k, a++, dim);
    KARG(k, a++, channels);
    KARG(k, a++, scale);
    KARG(k, a++, d_rec);
    KARG(k, a++, rec_offset);
    size_t global = (size_t)rows;
    clrt_launch(&rt, k, 1, &global, NULL);
    tu_download(&rt, d_dout, dout, (n_out + GUARD) * sizeof(float));
    tu_download(&rt, d_terms, terms, (n + GUARD) * sizeof(float));
    tu_download(&rt, d_rec, rec, n_rec * sizeof(float));
    double *exact = tu_alloc(n_out > n ? n_out : n, sizeof(double));
    char what[160];
    int vectors = dim / 16 * 16, untouched = 0;
    for (int r = 0; r < rows; r++) {
        size_t row = (size_t)r * dim;
        untouched += tu_changed(terms, row, row + (size_t)vectors) == 0;
        for (int j = vectors; j < dim; j++)
            exact[row + j] = want_terms[row + j];
    }
    tu_check(untouched == rows, "%s (%dx%d): the terms of the vectors left unwritten", name, rows,
             dim);
    snprintf(what, sizeof what, "%s (%dx%d): the rows' last terms = the pixel kernel's", name, rows,
             dim);
    for (int r = 0; r < rows && vectors < dim; r++) {
        size_t row = (size_t)r * dim;
        tu_compare(what, terms + row + vectors, exact + row + vectors, NULL,
                   (size_t)(dim - vectors), 0.0, 0.0);
    }
    for (size_t i = 0; i < n_out; i++)
        exact[i] = want_dout[i];
    snprintf(what, sizeof what, "%s (%dx%d): gradient = the pixel kernel's", name, rows, dim);
    tu_compare(what, dout, exact, NULL, n_out, 0.0, 0.0);
    double *sums = tu_alloc((size_t)rows, sizeof(double)),
           *mags = tu_alloc((size_t)rows, sizeof(double));
    for (int r = 0; r < rows; r++) {
        const float *row = want_terms + (size_t)r * dim;
        float lane[16] = {0}; // cl/likelihood.cl's order: 16 lanes, sum_lanes16, the tail
        int q = 0;
        for (; q + 16 <= dim; q += 16)
            for (int u = 0; u < 16; u++)
                lane[u] += row[q + u];
        for (int width = 8; width >= 1; width /= 2)
            for (int u = 0; u < width; u++)
                lane[u] = lane[u] + lane[u + width];
        float sum = lane[0];
        for (; q < dim; q++)
            sum += row[q];
        exact[r] = sum;
        for (int j = 0; j < dim; j++)
            sums[r] += row[j], mags[r] += fabs(row[j]);
    }
    snprintf(what, sizeof what,
             "%s (%dx%d, rec offset %d): rec = the terms summed in sum_lanes16's order", name, rows,
             dim, rec_offset);
    tu_compare(what, rec + rec_offset, exact, NULL, (size_t)rows, 0.0, 0.0);
    snprintf(what, sizeof what, "%s (%dx%d): rec against the double sum, rel to the sum of |terms|",
             name, rows, dim);
    tu_compare(what, rec + rec_offset, sums, mags, (size_t)rows, 0.0, 1e-6);
    free(sums);
    free(mags);
    tu_check(!tu_changed(dout, n_out, n_out + GUARD) && !tu_changed(terms, n, n + GUARD) &&
                 !tu_changed(rec, 0, (size_t)rec_offset) &&
                 !tu_changed(rec, (size_t)rec_offset + rows, n_rec),
             "%s (%dx%d): guard cells of the gradient, terms and rec", name, rows, dim);
    free(dout);
    free(terms);
    free(rec);
    free(exact);
    clReleaseMemObject(d_dout);
    clReleaseMemObject(d_terms);
    clReleaseMemObject(d_rec);
    clReleaseKernel(k);
}

// bce_logits_grad on logits, x (rows, dim), then row_sum with one work-group of local items per
// row: each pixel's term against the stable BCE in double, rec (rows, at rec_offset) against their
// sums, and dlogits (rows, dim) against scale * (sigmoid - x). Logits include 0, +-17, +-30, +-80
// and +-1e4; x includes 0 and 1.
static void test_bce(int rows, int dim, size_t local, int rec_offset, float grad_scale)
{
    cl_kernel kb = clrt_kernel(&rt, "bce_logits_grad");
    cl_kernel k = clrt_kernel(&rt, "row_sum");
    size_t kernel_max;
    CL_CHECK(clGetKernelWorkGroupInfo(k, rt.device, CL_KERNEL_WORK_GROUP_SIZE, sizeof kernel_max,
                                      &kernel_max, NULL));
    if (local > kernel_max) {
        printf("row_sum (%dx%d, local %zu): skipped, the kernel allows at most %zu\n", rows, dim,
               local, kernel_max);
        clReleaseKernel(k);
        clReleaseKernel(kb);
        return;
    }
    static const float extremes[] = {80.0f, -80.0f, 1e4f,  -1e4f, 0.0f,
                                     30.0f, -30.0f, 17.0f, -17.0f};
    size_t n = (size_t)rows * dim, n_rec = (size_t)rec_offset + rows + GUARD;
    float *logits = tu_alloc(n, sizeof(float));
    float *x = tu_alloc(n, sizeof(float));
    float *dlogits = tu_alloc(n + GUARD, sizeof(float));
    float *terms = tu_alloc(n + GUARD, sizeof(float));
    float *rec = tu_alloc(n_rec, sizeof(float));
    double *want_t = tu_alloc(n, sizeof(double)), *scale_t = tu_alloc(n, sizeof(double));
    double *want_d = tu_alloc(n, sizeof(double));
    double *scale_d = tu_alloc(n, sizeof(double));
    double *want_rec = tu_alloc((size_t)rows, sizeof(double));
    double *scale_rec = tu_alloc((size_t)rows, sizeof(double));
    for (size_t i = 0; i < n; i++) {
        double u = rng_uniform();
        logits[i] = u < 0.15 ? extremes[rng_int(sizeof extremes / sizeof extremes[0])]
                             : rng_range(-8.0, 8.0);
        u = rng_uniform();
        x[i] = u < 0.1 ? 0.0f : u < 0.2 ? 1.0f : rng_range(0.0, 1.0);
    }
    // A pixel whose whole loss is log(1 + e) with e = exp(-17) = 4e-8: lost in 1 + e in float.
    logits[0] = -17.0f, x[0] = 0.0f;
    tu_fill_guard(dlogits, 0, n + GUARD);
    tu_fill_guard(terms, 0, n + GUARD);
    tu_fill_guard(rec, 0, n_rec);
    for (int r = 0; r < rows; r++) {
        for (int j = 0; j < dim; j++) {
            size_t i = (size_t)r * dim + j;
            double l = logits[i], t = x[i], e = exp(-fabs(l));
            double sig = l >= 0.0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
            want_t[i] = fmax(l, 0.0) - l * t + log1p(e);
            scale_t[i] = fmax(l, 0.0) + fabs(l * t) + log1p(e);
            want_rec[r] += want_t[i];
            scale_rec[r] += scale_t[i];
            want_d[i] = grad_scale * (sig - t);
            scale_d[i] = fabs(grad_scale) * (sig + t);
        }
    }
    cl_mem dl = tu_upload(&rt, logits, n * sizeof(float), "logits");
    cl_mem dx = tu_upload(&rt, x, n * sizeof(float), "x");
    cl_mem ddl = tu_upload(&rt, dlogits, (n + GUARD) * sizeof(float), "dlogits");
    cl_mem drec = tu_upload(&rt, rec, n_rec * sizeof(float), "rec");
    cl_mem dterms = tu_upload(&rt, terms, (n + GUARD) * sizeof(float), "terms");
    KARG(kb, 0, dl);
    KARG(kb, 1, dx);
    KARG(kb, 2, ddl);
    KARG(kb, 3, dterms);
    KARG(kb, 4, rows);
    KARG(kb, 5, dim);
    int channels = 1; // (the logistic's layout; every likelihood's kernel takes it)
    KARG(kb, 6, channels);
    KARG(kb, 7, grad_scale);
    size_t pixels[2] = {(size_t)dim, (size_t)rows}, local2[2] = {8, 4};
    clrt_launch(&rt, kb, 2, pixels, local > 1 ? local2 : NULL);
    KARG(k, 0, dterms);
    KARG(k, 1, drec);
    KARG(k, 2, rec_offset);
    KARG(k, 3, dim);
    CL_CHECK(clSetKernelArg(k, 4, local * sizeof(float), NULL));
    size_t global = (size_t)rows * local;
    clrt_launch(&rt, k, 1, &global, &local);
    tu_download(&rt, ddl, dlogits, (n + GUARD) * sizeof(float));
    tu_download(&rt, dterms, terms, (n + GUARD) * sizeof(float));
    tu_download(&rt, drec, rec, n_rec * sizeof(float));
    char what[160];
    // Each term needs absolute accuracy only: log(1 + e) comes from a series accurate to 1e-8,
    // and native_exp's error is the implementation's. max(l, 0) - l x cancels at large |l| (l 80,
    // x 0.97: 2.76), and how it is rounded is the compiler's (Mesa's rusticl was 2.4e-4 off there):
    // relative to the size of its parts, as the row sum below.
    snprintf(what, sizeof what, "bce_logits_grad (%dx%d): per-pixel terms, rel to their parts",
             rows, dim);
    tu_compare(what, terms, want_t, scale_t, n, 2e-6, 1e-5);
    // The row sum is plain float accumulation: its error grows with dim / local terms per item.
    snprintf(what, sizeof what,
             "bce_logits_grad (%dx%d, local %zu, rec offset %d): rec, rel to sum of |terms|", rows,
             dim, local, rec_offset);
    tu_compare(what, rec + rec_offset, want_rec, scale_rec, (size_t)rows, 2.4e-7 * dim, 1e-5);
    // sigmoid from native_exp, whose accuracy is the implementation's: exp2-based GPU versions
    // are ~3e-6 relative off at |l| = 80, so 1e-5 rather than a few float ulps.
    snprintf(what, sizeof what,
             "bce_logits_grad (%dx%d, local %zu): dlogits, rel to scale (sigmoid + x)", rows, dim,
             local);
    tu_compare(what, dlogits, want_d, scale_d, n, 0.0, 1e-5);
    tu_check(!tu_changed(dlogits, n, n + GUARD) && !tu_changed(terms, n, n + GUARD) &&
                 !tu_changed(rec, 0, (size_t)rec_offset) &&
                 !tu_changed(rec, (size_t)rec_offset + rows, n_rec),
             "bce_logits_grad (%dx%d, local %zu): guard cells of dlogits and rec", rows, dim,
             local);
    if (local == 1) { // the CPU kernels of a launch, against the pixel kernel
        test_likelihood_rows("bce_logits_grad_rows16", dl, dx, rows, dim, channels, grad_scale,
                             terms, dlogits, n, rec_offset);
    }
    free(logits);
    free(x);
    free(dlogits);
    free(terms);
    free(want_t);
    free(scale_t);
    free(rec);
    free(want_d);
    free(scale_d);
    free(want_rec);
    free(scale_rec);
    clReleaseMemObject(dl);
    clReleaseMemObject(dx);
    clReleaseMemObject(ddl);
    clReleaseMemObject(drec);
    clReleaseMemObject(dterms);
    clReleaseKernel(k);
    clReleaseKernel(kb);
}

// logistic_nll_grad on out (rows, 2 dim) and x (rows, dim) of 8-bit levels for images of channels
// channels: each pixel's term and the gradients of both outputs against ref_logistic_nll, with
// guard cells after terms and dout. Levels include 0 and 255 (the tails); locations lie in and
// beside [0, 1]; log-scales span -9 (below the clamp) to 3, and some 10 to 17 (a bin a few
// millionths of the scale, some above the clamp); some pixels sit 40 scales off.
static void test_logistic(int rows, int pixels, int channels, float grad_scale)
{
    cl_kernel k = clrt_kernel(&rt, "logistic_nll_grad");
    int dim = pixels * channels;
    size_t n = (size_t)rows * dim, n_out = 2 * n;
    float *out = tu_alloc(n_out, sizeof(float));
    float *x = tu_alloc(n, sizeof(float));
    float *dout = tu_alloc(n_out + GUARD, sizeof(float));
    float *terms = tu_alloc(n + GUARD, sizeof(float));
    double *want_t = tu_alloc(n, sizeof(double));
    double *want_d = tu_alloc(n_out, sizeof(double));
    double *scale_d = tu_alloc(n_out, sizeof(double));
    for (size_t i = 0; i < n; i++) {
        double v = rng_uniform();
        int level = v < 0.15 ? 0 : v < 0.3 ? 255 : rng_int(256);
        x[i] = (float)level * (1.0f / 255.0f);
    }
    for (int r = 0; r < rows; r++) {
        for (int j = 0; j < dim; j++) {
            int p = j / channels, c = j % channels;
            size_t m = (size_t)r * 2 * dim + (size_t)p * 2 * channels + (size_t)c;
            // Below the clamp, in the range, or wide (some above the clamp).
            double pick = rng_uniform();
            float u = pick < 0.1    ? rng_range(-9.0, -7.0)
                      : pick < 0.15 ? rng_range(10.0, 17.0)
                                    : rng_range(-6.0, 3.0);
            float mu = rng_range(-0.2, 1.2), xi = x[(size_t)r * dim + j];
            if (rng_uniform() < 0.1) // far in a tail
                mu = xi + (rng_uniform() < 0.5 ? -40.0f : 40.0f) * expf(u);
            out[m] = mu, out[m + channels] = u;
            double dmu, du;
            want_t[(size_t)r * dim + j] = ref_logistic_nll(mu, u, xi, &dmu, &du);
            want_d[m] = grad_scale * dmu, want_d[m + channels] = grad_scale * du;
            // The gradient's size: terms of 1 / s (mean) and of a (log-scale) that cancel. At
            // wide scales (a bin a few millionths of s) d mean is the difference of two terms of
            // about inv / 2 each, which float keeps to a few of their ulps.
            double inv = exp(-fmin(fmax(u, -7.0), 15.0));
            scale_d[m] = fabs(grad_scale) * (fabs(dmu) + (u > 9.0f ? 1.0 : 1e-3) * inv);
            scale_d[m + channels] = fabs(grad_scale) * (fabs(du) + 1.0);
        }
    }
    tu_fill_guard(dout, 0, n_out + GUARD);
    tu_fill_guard(terms, 0, n + GUARD);
    cl_mem d_out = tu_upload(&rt, out, n_out * sizeof(float), "out");
    cl_mem d_x = tu_upload(&rt, x, n * sizeof(float), "x");
    cl_mem d_dout = tu_upload(&rt, dout, (n_out + GUARD) * sizeof(float), "dout");
    cl_mem d_terms = tu_upload(&rt, terms, (n + GUARD) * sizeof(float), "terms");
    cl_uint a = 0;
    KARG(k, a++, d_out);
    KARG(k, a++, d_x);
    KARG(k, a++, d_dout);
    KARG(k, a++, d_terms);
    KARG(k, a++, rows);
    KARG(k, a++, dim);
    KARG(k, a++, channels);
    KARG(k, a++, grad_scale);
    size_t global[2] = {(size_t)dim, (size_t)rows};
    clrt_launch(&rt, k, 2, global, NULL);
    tu_download(&rt, d_dout, dout, (n_out + GUARD) * sizeof(float));
    tu_download(&rt, d_terms, terms, (n + GUARD) * sizeof(float));
    char what[160];
    snprintf(what, sizeof what, "logistic_nll_grad (%d images of %dx%d): per-pixel terms", rows,
             pixels, channels);
    tu_compare(what, terms, want_t, NULL, n, 2e-5, 2e-5);
    snprintf(what, sizeof what,
             "logistic_nll_grad (%d images of %dx%d): d mean, d log-scale, rel to their size", rows,
             pixels, channels);
    tu_compare(what, dout, want_d, scale_d, n_out, 0.0, 1e-4);
    tu_check(!tu_changed(dout, n_out, n_out + GUARD) && !tu_changed(terms, n, n + GUARD),
             "logistic_nll_grad (%d images of %dx%d): guard cells", rows, pixels, channels);
    test_likelihood_rows("logistic_nll_grad_rows16", d_out, d_x, rows, dim, channels, grad_scale,
                         terms, dout, n_out, 2);
    free(out);
    free(x);
    free(dout);
    free(terms);
    free(want_t);
    free(want_d);
    free(scale_d);
    clReleaseMemObject(d_out);
    clReleaseMemObject(d_x);
    clReleaseMemObject(d_dout);
    clReleaseMemObject(d_terms);
    clReleaseKernel(k);
}

// likelihood_mean (host) of the discretised logistic against sum_k k/255 P(k) in double, for
// narrow and wide scales and locations in and beside [0, 1]; and the Bernoulli's sigmoid.
static void test_likelihood_mean(void)
{
    enum { N = 400 };
    float out[2 * N], got[N];
    double want[N];
    for (int i = 0; i < N; i++) {
        float mu = rng_range(-0.5, 1.5),
              u = i % 4 == 0 ? rng_range(-9.0, -7.0) : rng_range(-7.0, 2.0);
        out[2 * i] = mu, out[2 * i + 1] = u;
        double s = exp(fmin(fmax(u, -7.0), 15.0)), sum = 0.0;
        for (int level = 0; level < 256; level++) {
            double a = (level + 0.5) / 255.0, b = (level - 0.5) / 255.0;
            double hi = level == 255 ? 1.0 : ref_logistic_cdf((a - mu) / s);
            double lo = level == 0 ? 0.0 : ref_logistic_cdf((b - mu) / s);
            sum += level / 255.0 * (hi - lo);
        }
        want[i] = sum;
    }
    likelihood_mean(LIKELIHOOD_LOGISTIC, out, N, 1, 1, got);
    tu_compare("likelihood_mean: the discretised logistic's mean", got, want, NULL, N, 1e-6, 0.0);
    for (int i = 0; i < N; i++)
        want[i] = 1.0 / (1.0 + exp(-(double)out[i]));
    likelihood_mean(LIKELIHOOD_BERNOULLI, out, N, 1, 1, got);
    tu_compare("likelihood_mean: the Bernoulli's sigmoid", got, want, NULL, N, 1e-7, 1e-6);
}

// optimizer_create/optimizer_step of kind name ("adam", or "adamw" with weight decay wd) over n
// parameters in n_parts device buffers (as a model's parameters are parted when larger than the
// largest allocation) for steps steps of gradients spanning 1e-4 .. 1e2 in magnitude (some exactly
// zero) against PyTorch's Adam or AdamW in double (betas 0.9, 0.999, eps 1e-8; AdamW multiplies
// the parameters by 1 - lr wd first): params after every step, and the moments after the last
// step (the host passes 1 - beta in double precision, so they match PyTorch's exp_avg and
// exp_avg_sq, not a float recurrence). Each part's buffer has guard cells after it that no launch
// may touch.
static void test_optimizer(const char *name, double wd, int n, float lr, int steps, int n_parts)
{
    struct optimizer adam;
    struct clvae_error err;
    struct optimizer_config cfg = optimizer_defaults(optimizer_find(name));
    if (strcmp(name, "adamw") == 0)
        tu_die_on(optimizer_set_option(&cfg, "--weight-decay", wd, &err), &err);
    float *params = tu_alloc((size_t)n, sizeof(float));
    float *part = tu_alloc((size_t)n + GUARD, sizeof(float));
    float *grads = tu_alloc((size_t)n, sizeof(float));
    float *m = tu_alloc((size_t)n, sizeof(float));
    float *v = tu_alloc((size_t)n, sizeof(float));
    double *p_ref = tu_alloc((size_t)n, sizeof(double));
    double *m_ref = tu_alloc((size_t)n, sizeof(double));
    double *m_mag = tu_alloc((size_t)n, sizeof(double));
    double *v_ref = tu_alloc((size_t)n, sizeof(double));
    double *scale = tu_alloc((size_t)n, sizeof(double));
    for (int i = 0; i < n; i++)
        p_ref[i] = params[i] = rng_range(-1.0, 1.0);
    // Uneven parts: part i ends at n (i + 1)^2 / n_parts^2.
    struct clrt_parts dparams = {.n = n_parts}, dgrads;
    for (int i = 1; i <= n_parts; i++)
        dparams.start[i] =
            (size_t)n * (size_t)(i * i) / (size_t)(n_parts * n_parts) * sizeof(float);
    dgrads = dparams;
    for (int i = 0; i < n_parts; i++) {
        size_t count = (dparams.start[i + 1] - dparams.start[i]) / sizeof(float);
        memcpy(part, params + dparams.start[i] / sizeof(float), count * sizeof(float));
        tu_fill_guard(part, count, count + GUARD);
        dparams.mem[i] = tu_upload(&rt, part, (count + GUARD) * sizeof(float), "params");
        dgrads.mem[i] = tu_upload(&rt, NULL, count * sizeof(float), "grads");
    }
    tu_die_on(optimizer_create(&adam, &rt, &dparams, &cfg, &err), &err);
    const double *h = adam.cfg.hyper;
    tu_check(h[0] == 0.9 && h[1] == 0.999 && h[2] == 1e-8 &&
                 (cfg.kind->n_hyper == 3 || h[3] == wd) && adam.n == n &&
                 adam.state[0].n == n_parts && adam.state[1].n == n_parts,
             "optimizer_create %s: betas %g %g, eps %g (want PyTorch's 0.9 0.999 1e-8), %d "
             "parameters in %d parts (want %d in %d)",
             name, h[0], h[1], h[2], adam.n, adam.state[0].n, n, n_parts);
    const double b1 = 0.9, b2 = 0.999, eps = 1e-8;
    char what[160];
    int guards_changed = 0;
    for (int t = 1; t <= steps; t++) {
        for (int i = 0; i < n; i++) {
            double mag = pow(10.0, rng_range(-4.0, 2.0));
            grads[i] = rng_uniform() < 0.05 ? 0.0f : (float)((rng_uniform() < 0.5 ? -1 : 1) * mag);
        }
        clrt_parts_write(&rt, &dgrads, grads, true);
        optimizer_step(&adam, &dparams, &dgrads, t, lr);
        for (int i = 0; i < n_parts; i++) {
            size_t count = (dparams.start[i + 1] - dparams.start[i]) / sizeof(float);
            tu_download(&rt, dparams.mem[i], part, (count + GUARD) * sizeof(float));
            guards_changed += tu_changed(part, count, count + GUARD);
            memcpy(params + dparams.start[i] / sizeof(float), part, count * sizeof(float));
        }
        double bc1 = 1.0 - pow(b1, t), bc2 = 1.0 - pow(b2, t);
        for (int i = 0; i < n; i++) {
            double g = grads[i];
            m_ref[i] = b1 * m_ref[i] + (1.0 - b1) * g;
            m_mag[i] = b1 * m_mag[i] + (1.0 - b1) * fabs(g);
            v_ref[i] = b2 * v_ref[i] + (1.0 - b2) * g * g;
            p_ref[i] *= 1.0 - lr * wd;
            p_ref[i] -= lr / bc1 * m_ref[i] / (sqrt(v_ref[i]) / sqrt(bc2) + eps);
            scale[i] = fabs(p_ref[i]) + lr;
        }
        snprintf(what, sizeof what,
                 "%s (n %d in %d parts, lr %g, wd %g) params after step %d, rel to |p| + lr",
                 cfg.kind->kernel, n, n_parts, lr, wd, t);
        tu_compare(what, params, p_ref, scale, (size_t)n, 0.0, 1e-6);
    }
    clrt_parts_read(&rt, &adam.state[0], m, true);
    clrt_parts_read(&rt, &adam.state[1], v, true);
    snprintf(what, sizeof what,
             "%s (n %d in %d parts) first moment after %d steps vs PyTorch's, rel to its |g| sum",
             cfg.kind->kernel, n, n_parts, steps);
    tu_compare(what, m, m_ref, m_mag, (size_t)n, 0.0, 1e-6);
    snprintf(what, sizeof what, "%s (n %d in %d parts) second moment after %d steps vs PyTorch's",
             cfg.kind->kernel, n, n_parts, steps);
    tu_compare(what, v, v_ref, NULL, (size_t)n, 0.0, 1e-6);
    tu_check(!guards_changed, "%s (n %d in %d parts): guard cells", cfg.kind->kernel, n, n_parts);
    optimizer_release(&adam);
    clrt_parts_release(&dparams);
    clrt_parts_release(&dgrads);
    free(params);
    free(part);
    free(grads);
    free(m);
    free(v);
    free(p_ref);
    free(m_ref);
    free(m_mag);
    free(v_ref);
    free(scale);
}

// One launch of adam_update (wide: adam_update16) on d (params, grads, m, v) of n values with the
// scalars f (beta1, 1 - beta1, beta2, 1 - beta2, eps, step size, inv_sqrt_bc2, decay).
static void launch_adam(bool wide, cl_mem d[4], int n, const float f[8])
{
    cl_kernel k = clrt_kernel(&rt, wide ? "adam_update16" : "adam_update");
    cl_uint a = 0;
    for (int b = 0; b < 4; b++)
        KARG(k, a++, d[b]);
    KARG(k, a++, n);
    for (int j = 0; j < 8; j++)
        KARG(k, a++, f[j]);
    size_t global = wide ? ((size_t)n + 15) / 16 : (size_t)n;
    clrt_launch(&rt, k, 1, &global, NULL);
    clReleaseKernel(k);
}

// adam_update16 (a CPU's: 16 values a work-item) against adam_update (a work-item a value) on the
// same values with the weight decay's factor decay (1: Adam), bit for bit: parameters and both
// moments after one step, n with a tail past the last 16.
static void test_adam16(int n, float decay)
{
    float *h[4];
    for (int b = 0; b < 4; b++) {
        h[b] = tu_alloc((size_t)n, sizeof(float));
        for (int i = 0; i < n; i++)
            h[b][i] = b == 3 ? rng_range(0.0, 1e-2) : rng_range(-1.0, 1.0); // v >= 0
    }
    static float got[2][3][4096]; // n <= 4096
    memset(got, 0, sizeof got);
    for (int wide = 0; wide < 2; wide++) {
        cl_mem d[4];
        for (int b = 0; b < 4; b++)
            d[b] = tu_upload(&rt, h[b], (size_t)n * sizeof(float), "adam operand");
        float f[8] = {0.9f, 0.1f, 0.999f, 0.001f, 1e-8f, 1e-3f, 1.37f, decay};
        launch_adam(wide, d, n, f);
        int which[3] = {0, 2, 3}; // params, m, v
        for (int b = 0; b < 3; b++)
            tu_download(&rt, d[which[b]], got[wide][b], (size_t)n * sizeof(float));
        for (int b = 0; b < 4; b++)
            clReleaseMemObject(d[b]);
    }
    tu_check(memcmp(got[0], got[1], sizeof got[0]) == 0,
             "adam_update16 (n %d, decay %g) equals adam_update bit for bit: parameters and both "
             "moments",
             n, decay);
    for (int b = 0; b < 4; b++)
        free(h[b]);
}

// The first layer's weight gradient with Adam's step folded in (clrt_gemm_tn_colsum_adam) against
// clrt_gemm_tn_colsum and then adam_update16 over every value, bit for bit: parameters and both
// moments of count = before + m n + n + after values, the product's gradients (W at before, rows
// n apart, its bias after it) at the run in the middle, the others' gradients given. The fused
// launch stores no gradient: the gradients after it are those before it.
static void test_gemm_tn_adam(int m, int n, int k, int before, int after, float decay)
{
    size_t lo = (size_t)before, count = lo + (size_t)m * n + (size_t)n + (size_t)after;
    size_t lda = (size_t)m + 3, ldb = (size_t)n + 5, na = 2 + (size_t)k * lda,
           nb = 4 + (size_t)k * ldb;
    float *a = tu_alloc(na, sizeof(float)), *b = tu_alloc(nb, sizeof(float));
    float *h[4], *out[2][4]; // params, grads, m, v; as each run leaves them
    for (size_t i = 0; i < na; i++)
        a[i] = rng_range(-1.0, 1.0);
    for (size_t i = 0; i < nb; i++)
        b[i] = rng_range(-1.0, 1.0);
    for (int q = 0; q < 4; q++) {
        h[q] = tu_alloc(count, sizeof(float));
        for (size_t i = 0; i < count; i++)
            h[q][i] = q == 3 ? rng_range(0.0, 1e-2) : rng_range(-1.0, 1.0); // v >= 0
        for (int run = 0; run < 2; run++)
            out[run][q] = tu_alloc(count, sizeof(float));
    }
    float f[8] = {0.9f, 0.1f, 0.999f, 0.001f, 1e-8f, 1e-3f, 1.37f, decay};
    cl_mem da = tu_upload(&rt, a, na * sizeof(float), "A");
    cl_mem db = tu_upload(&rt, b, nb * sizeof(float), "B");
    struct clrt_mat ma = {da, 2, lda}, mb = {db, 4, ldb};
    bool fused = false;
    for (int run = 0; run < 2; run++) { // the product and adam_update16, then the fused launch
        cl_mem d[4];
        for (int q = 0; q < 4; q++)
            d[q] = tu_upload(&rt, h[q], count * sizeof(float), "Adam operand");
        struct clrt_mat dw = {d[1], lo, (size_t)n}, dbias = {d[1], lo + (size_t)m * n, 1};
        if (run == 0) {
            tu_check(clrt_gemm_tn_colsum(&rt, (size_t)m, (size_t)n, (size_t)k, ma, mb, 0.0f, dw,
                                         dbias, false),
                     "clrt_gemm_tn_colsum %dx%dx%d runs in one launch", m, n, k);
            launch_adam(true, d, (int)count, f);
        } else {
            struct clrt_adam adam = {.params = d[0], .m = d[2], .v = d[3], .count = count};
            memcpy(adam.scalars.s, f, sizeof f);
            fused = clrt_gemm_tn_colsum_adam(&rt, (size_t)m, (size_t)n, (size_t)k, ma, mb, dw,
                                             dbias, &adam);
        }
        for (int q = 0; q < 4; q++) {
            tu_download(&rt, d[q], out[run][q], count * sizeof(float));
            clReleaseMemObject(d[q]);
        }
    }
    tu_check(fused, "clrt_gemm_tn_colsum_adam %dx%dx%d runs in one launch", m, n, k);
    const char *names[4] = {"parameters", "", "first moments", "second moments"};
    for (int q = 0; q < 4; q += q == 0 ? 2 : 1)
        tu_check(memcmp(out[0][q], out[1][q], count * sizeof(float)) == 0,
                 "gemm TN %dx%dx%d + Adam (values %d, %zu, %d; decay %g): %s equal the product "
                 "then adam_update16's bit for bit",
                 m, n, k, before, (size_t)m * n + (size_t)n, after, (double)decay, names[q]);
    tu_check(memcmp(out[1][1], h[1], count * sizeof(float)) == 0,
             "gemm TN %dx%dx%d + Adam: the gradients are left as they were", m, n, k);
    for (int q = 0; q < 4; q++) {
        free(h[q]);
        free(out[0][q]);
        free(out[1][q]);
    }
    clReleaseMemObject(da);
    clReleaseMemObject(db);
    free(a);
    free(b);
}

// AdamW with weight decay 0 and Adam, each from the same parameters on the same gradients for steps
// steps: the same parameters and moments, bit for bit.
static void test_adamw_no_decay(int n, float lr, int steps)
{
    struct clvae_error err;
    const char *names[2] = {"adam", "adamw"};
    struct optimizer o[2];
    struct clrt_parts params[2], grads = {.n = 1, .start = {0, (size_t)n * sizeof(float)}};
    float *init = tu_alloc((size_t)n, sizeof(float)), *g = tu_alloc((size_t)n, sizeof(float));
    float *got[2][3];
    for (int i = 0; i < n; i++)
        init[i] = rng_range(-1.0, 1.0);
    grads.mem[0] = tu_upload(&rt, NULL, (size_t)n * sizeof(float), "grads");
    for (int k = 0; k < 2; k++) {
        struct optimizer_config cfg = optimizer_defaults(optimizer_find(names[k]));
        if (k == 1)
            tu_die_on(optimizer_set_option(&cfg, "--weight-decay", 0.0, &err), &err);
        params[k] = grads;
        params[k].mem[0] = tu_upload(&rt, init, (size_t)n * sizeof(float), "params");
        tu_die_on(optimizer_create(&o[k], &rt, &params[k], &cfg, &err), &err);
    }
    for (int t = 1; t <= steps; t++) {
        for (int i = 0; i < n; i++)
            g[i] = rng_uniform() < 0.05 ? 0.0f : rng_range(-10.0, 10.0);
        clrt_parts_write(&rt, &grads, g, true);
        for (int k = 0; k < 2; k++)
            optimizer_step(&o[k], &params[k], &grads, t, lr);
    }
    int differ = 0;
    for (int k = 0; k < 2; k++)
        for (int a = 0; a < 3; a++) {
            got[k][a] = tu_alloc((size_t)n, sizeof(float));
            clrt_parts_read(&rt, a == 0 ? &params[k] : &o[k].state[a - 1], got[k][a], true);
        }
    for (int a = 0; a < 3; a++)
        differ += memcmp(got[0][a], got[1][a], (size_t)n * sizeof(float)) != 0;
    tu_check(!differ,
             "adamw_update with weight decay 0 equals adam_update bit for bit: parameters and both "
             "moments of %d after %d steps (%d of 3 arrays differ)",
             n, steps, differ);
    for (int k = 0; k < 2; k++) {
        optimizer_release(&o[k]);
        clrt_parts_release(&params[k]);
        for (int a = 0; a < 3; a++)
            free(got[k][a]);
    }
    clrt_parts_release(&grads);
    free(init);
    free(g);
}

// --binarize: binarize_images against the host's Philox: pixel j of image index[start + r] is 1
// exactly when the first word of block (j, image, epoch, stream) under seed, as a 24-bit uniform,
// is below its intensity; guard cells after x.
static void test_binarize(int rows, int dim, int start, uint32_t epoch)
{
    struct sampler s;
    sampler_create(&s, &rt, 4);
    size_t n = (size_t)rows * (size_t)dim;
    float *x = tu_alloc(n + GUARD, sizeof(float));
    double *want = tu_alloc(n, sizeof(double));
    int *index = tu_alloc((size_t)(start + rows), sizeof(int));
    uint64_t seed = 0x123456789ull;
    for (int i = 0; i < start + rows; i++)
        index[i] = rng_int(100000);
    for (int r = 0; r < rows; r++)
        for (int j = 0; j < dim; j++) {
            size_t i = (size_t)r * dim + j;
            x[i] = (float)rng_int(256) * (1.0f / 255.0f);
            uint32_t ctr[4] = {(uint32_t)j, (uint32_t)index[start + r], epoch,
                               PHILOX_STREAM_BINARIZE},
                     key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)}, out[4];
            philox4x32_10(ctr, key, out);
            want[i] = (float)(out[0] >> 8) * (1.0f / 16777216.0f) < x[i] ? 1.0 : 0.0;
        }
    tu_fill_guard(x, n, n + GUARD);
    cl_mem dx = tu_upload(&rt, x, (n + GUARD) * sizeof(float), "x");
    cl_mem dindex = tu_upload(&rt, index, (size_t)(start + rows) * sizeof(int), "index");
    sampler_binarize(&s, dx, rows, dim, dindex, start, seed, epoch, PHILOX_STREAM_BINARIZE);
    tu_download(&rt, dx, x, (n + GUARD) * sizeof(float));
    char what[128];
    snprintf(what, sizeof what, "binarize_images (%dx%d from image %d, epoch %u): exactly", rows,
             dim, start, epoch);
    tu_compare(what, x, want, NULL, n, 0.0, 0.0);
    tu_check(!tu_changed(x, n, n + GUARD), "binarize_images (%dx%d): guard cells", rows, dim);
    clReleaseMemObject(dx);
    clReleaseMemObject(dindex);
    sampler_release(&s);
    free(x);
    free(want);
    free(index);
}

// --clip-grad's norm (grad_sumsq over uneven parts, grad_clip_scale, grad_scale) against a
// double-precision sum of squares: the norm, the scale min(1, max_norm / norm), the gradient
// scaled by it, and the guard cells after every part.
static void test_clip_norm(int n, int n_parts, double max_norm)
{
    struct clvae_error err;
    struct optimizer o;
    struct optimizer_config cfg = optimizer_defaults(optimizer_find("adam"));
    float *grads = tu_alloc((size_t)n, sizeof(float));
    float *part = tu_alloc((size_t)n + GUARD, sizeof(float));
    double *want = tu_alloc((size_t)n, sizeof(double)), sumsq = 0;
    for (int i = 0; i < n; i++) {
        grads[i] = (float)((rng_uniform() < 0.5 ? -1 : 1) * pow(10.0, rng_range(-4.0, 1.0)));
        sumsq += (double)grads[i] * grads[i];
    }
    double norm = sqrt(sumsq), scale = norm > max_norm ? max_norm / norm : 1.0;
    for (int i = 0; i < n; i++)
        want[i] = grads[i] * scale;
    struct clrt_parts dgrads = {.n = n_parts};
    for (int i = 1; i <= n_parts; i++)
        dgrads.start[i] = (size_t)n * (size_t)(i * i) / (size_t)(n_parts * n_parts) * sizeof(float);
    for (int i = 0; i < n_parts; i++) {
        size_t count = (dgrads.start[i + 1] - dgrads.start[i]) / sizeof(float);
        memcpy(part, grads + dgrads.start[i] / sizeof(float), count * sizeof(float));
        tu_fill_guard(part, count, count + GUARD);
        dgrads.mem[i] = tu_upload(&rt, part, (count + GUARD) * sizeof(float), "grads");
    }
    tu_die_on(optimizer_create(&o, &rt, &dgrads, &cfg, &err) ||
                  optimizer_clip_create(&o, max_norm, &err),
              &err);
    optimizer_clip(&o, &dgrads);
    float got[2];
    clrt_read(&rt, o.clip_scale, 0, sizeof got, got, true);
    int guards_changed = 0;
    for (int i = 0; i < n_parts; i++) {
        size_t count = (dgrads.start[i + 1] - dgrads.start[i]) / sizeof(float);
        tu_download(&rt, dgrads.mem[i], part, (count + GUARD) * sizeof(float));
        guards_changed += tu_changed(part, count, count + GUARD);
        memcpy(grads + dgrads.start[i] / sizeof(float), part, count * sizeof(float));
    }
    char what[160];
    snprintf(what, sizeof what, "grad_scale (n %d in %d parts, max norm %g): the scaled gradient",
             n, n_parts, max_norm);
    tu_compare(what, grads, want, NULL, (size_t)n, 0.0, 1e-5);
    double norm_err = fabs(got[1] - norm) / norm, scale_err = fabs(got[0] - scale) / scale;
    tu_check(norm_err <= 1e-5 && scale_err <= 1e-5,
             "grad_sumsq + grad_clip_scale (n %d in %d parts, max norm %g): norm %.7g vs %.7g, "
             "scale %.7g vs %.7g: rel err %.1e, %.1e (tol 1e-5)",
             n, n_parts, max_norm, got[1], norm, got[0], scale, norm_err, scale_err);
    tu_check(!guards_changed, "grad_scale (n %d in %d parts): guard cells", n, n_parts);
    optimizer_release(&o);
    clrt_parts_release(&dgrads);
    free(grads);
    free(part);
    free(want);
}

// clrt_buffer's zeroing of a buffer past 2^31 bytes (fills below, host writes above: NVIDIA's fills
// fail past 2^31), where the device allows one: the buffer comes back zero at the fill's last
// bytes, across the 2^31 boundary and at the end.
static void test_buffer_past_2gib(void)
{
    const size_t bytes = ((size_t)1 << 31) + ((size_t)1 << 26) + 4100;
    if (rt.max_alloc < bytes || rt.global_mem / 2 < bytes) {
        printf("kernels: a buffer of %zu bytes: the device allows no such buffer, skipped\n",
               bytes);
        return;
    }
    struct clvae_error err;
    cl_mem mem = clrt_buffer(&rt, bytes, "past 2 GiB", &err);
    tu_check(mem != NULL, "a buffer of %zu bytes (past 2^31) allocates%s%s", bytes, mem ? "" : ": ",
             mem ? "" : err.msg);
    if (!mem)
        return;
    size_t at[3] = {((size_t)1 << 31) - 4096, ((size_t)1 << 31) + ((size_t)1 << 26) - 4096,
                    bytes - 8192};
    unsigned char got[8192];
    int nonzero = 0;
    for (int i = 0; i < 3; i++) {
        CL_CHECK(
            clEnqueueReadBuffer(rt.queue, mem, CL_TRUE, at[i], sizeof got, got, 0, NULL, NULL));
        for (size_t j = 0; j < sizeof got; j++)
            nonzero += got[j] != 0;
    }
    tu_check(nonzero == 0,
             "a buffer of %zu bytes is zero across 2^31 and at its end (%d bytes not)", bytes,
             nonzero);
    clrt_release_buffer(mem);
    rt.allocated -= bytes;
}

int main(void)
{
    tu_init("test_kernels");
    tu_open_device(&rt);
    const size_t local2[2] = {8, 4};

    test_binarize(37, 61, 5, 3);
    test_binarize(4, 784, 0, 0);

    // One part, uneven parts, fewer values than one work-group's threads; clipped and not.
    test_clip_norm(100003, 1, 1.0);
    test_clip_norm(250000, 5, 1.0);
    test_clip_norm(77, 3, 0.5);
    test_clip_norm(5000, 2, 1e6);

    test_philox_known_answers();
    test_normals();

    // The fused step: odd shapes (edge blocks), one column block, several; masked and not.
    for (int ep = 0; ep <= 3; ep++) // none, bias, bias and ReLU, mask
        test_sum_parts16(7, 13, 45, 0.5f, ep % 2 ? 1.0f : 0.0f, ep);
    test_sum_parts16(28, 64, 512, 1.0f, 0.0f, 0);
    test_sum_parts16(3, 5, 7, 1.0f, 1.0f, 1);
    test_fused_step(37, 13, 45, true, 0.0f, false);
    test_fused_step(9, 10, 128, false, 1.0f, true);
    test_fused_step(256, 20, 33, true, 0.0f, true);
    test_fused_step(5, 3, 7, false, 0.0f, false);
    // W^T's 16-row chunks spread over row blocks and work-groups (whole and partial chunks).
    test_fused_step(200, 100, 70, true, 0.0f, false);
    test_fused_step(9, 128, 40, false, 1.0f, false);
    // The head's launch through the decoder to the likelihood: odd rows and widths (edge blocks,
    // a row's last dim % 16 values), a batch of 256 as the default model's, each likelihood.
    test_head_chain(37, 13, 5, 45, 45, 1, 0, 0);
    test_head_chain(256, 40, 10, 128, 784, 1, 0, 0);
    test_head_chain(19, 24, 16, 33, 75, 3, 1, 0);
    test_head_chain(8, 7, 1, 16, 48, 3, 1, 0);
    // With the first layer on the gathered batch: the default model's shapes, and odd ones (a
    // row's bytes not a multiple of 16, edge blocks).
    test_head_chain(256, 128, 10, 128, 784, 1, 0, 784);
    test_head_chain(37, 45, 5, 33, 75, 3, 1, 75);

    test_bias_forward(false, 37, 53, 101, NULL);
    test_bias_forward(false, 37, 53, 0, local2);
    test_bias_forward(true, 37, 53, 101, NULL);
    test_bias_forward(true, 13, 3, 7, local2);
    // Rows not a multiple of the parts, a last part shorter than the others, one part.
    test_bias_backward(false, 37, 53, 101, 1, false);
    test_bias_backward(false, 129, 7, 5, 4, false);
    test_bias_backward(true, 37, 53, 101, 1, true);
    test_bias_backward(true, 129, 7, 5, 5, false);
    test_bias_backward(true, 1001, 33, 3, 13, true);
    test_bias_backward(true, 300, 32, 7, 1, true); // bias_backward16: whole vectors only
    test_bias_backward(false, 65, 48, 0, 3, false);
    test_bias_backward(true, 70, 1024, 2, 1, false);
    test_bias_backward(true, 70, 1024, 2, 1, true);
    test_bias_backward(false, 301, 2048, 0, 3, true);

    test_transpose(false, 37, 53, 11, 5, 0, NULL);
    test_transpose(false, 13, 3, 0, 17, 0, local2);
    test_transpose(false, 29, 6, 2, 3, 7, NULL);
    // Tiles: whole ones, edges right and below, fewer rows or columns than a tile, 1024 wide; rows
    // of the transpose further apart than its width.
    test_transpose(true, 37, 53, 11, 5, 0, NULL);
    test_transpose(true, 13, 3, 0, 17, 0, local2);
    test_transpose(true, 64, 48, 3, 0, 0, NULL);
    test_transpose(true, 70, 1024, 0, 9, 0, NULL);
    test_transpose(true, 512, 40, 0, 4, 16, NULL); // (a conv's W^T for clrt_conv_input_grad)
    test_transpose(true, 37, 21, 1, 0, 3, NULL);

    // The common 4x4/2 pad 1; odd channels and sizes with a 3x3/1; a kernel wider than the
    // stride with no padding; stride 3; im2col a work-item a row and a work-item a float.
    for (int items = 0; items < 2; items++)
        for (int own = 0; own < 2; own++) {
            test_im2col(3, 1, 8, 8, 4, 2, 1, 0, own, items);
            test_im2col(2, 5, 7, 9, 3, 1, 1, 0, own, items);
            test_im2col(2, 3, 9, 7, 5, 2, 0, 0, own, items);
            test_im2col(1, 2, 10, 7, 4, 3, 2, 0, own, items);
            test_im2col(2, 19, 6, 5, 3, 1, 1, 1, own, items);
            test_im2col(2, 32, 5, 6, 3, 1, 1, 1, own, items); // whole vectors of 16 channels
        }
    // Both col2im kernels: 16 channels as a vector and 3 channels one at a time, 4x4/2 and 3x3/1;
    // one channel (a register's sum), stride 3 with padding 2, and 5x5/1 with padding above S.
    test_col2im_same(3, 35, 7, 6, 4, 2, 1);
    test_col2im_same(2, 3, 9, 8, 3, 1, 1);
    test_col2im_same(2, 1, 10, 7, 4, 3, 2);
    test_col2im_same(1, 17, 6, 9, 5, 1, 2);

    // The conv products on the image (clvae's kernels only): odd images, a partial column block
    // (20, 33, 24 and 17 channels out), 16 wide (16 out), input channels not a multiple of 16 (8,
    // 24) or of 32 (40: the input gradient's edges), 5x5 with padding 2, strides 2 and 3 (the
    // input gradient's blocks of a row's every S-th pixel: odd widths, a row of fewer such pixels
    // than a block, padding above the stride, a stride above the kernel, whose pixels some no
    // kernel position reads), and 61x61 x 32, whose weight gradient clvae's kernels split in 4
    // parts and a position left over.
    if (rt.own_gemm) {
        test_conv_direct(2, 8, 5, 7, 3, 1, 1, 20, true);
        test_conv_direct(3, 16, 6, 5, 3, 1, 1, 16, false);
        test_conv_direct(2, 24, 9, 8, 5, 1, 2, 33, true);
        test_conv_direct(2, 40, 5, 7, 3, 1, 1, 24, false); // 32 channels a block, and 8
        test_conv_direct(2, 32, 7, 9, 4, 2, 1, 40, false);
        test_conv_direct(2, 8, 10, 7, 3, 3, 0, 17, true);
        test_conv_direct(3, 32, 9, 19, 4, 2, 1, 64, false);
        test_conv_direct(2, 16, 11, 13, 5, 2, 3, 24, true);
        test_conv_direct(2, 8, 8, 11, 2, 3, 1, 16, false);
        test_conv_direct(1, 32, 61, 61, 3, 1, 1, 32, false);
    }

    // Group normalisation: groups of one channel (G = C) and one group (G 1), odd sizes and
    // batches, a work-item a group (against the CPU's kernels too) and work-groups of 4 and 64.
    test_group_norm(3, 5, 7, 6, 3, 1, false);
    test_group_norm(5, 3, 3, 6, 6, 4, true);
    test_group_norm(1, 7, 5, 5, 1, 64, false);
    test_group_norm(7, 1, 1, 4, 2, 1, true);
    test_group_norm(2, 9, 11, 32, 8, 64, true);
    // One item a group also against the CPU's kernels (8 groups an item): 10 groups (an item of
    // 8, one of 2), groups of one channel over two items, one group.
    test_group_norm(2, 4, 5, 20, 10, 1, true);
    test_group_norm(3, 3, 6, 16, 16, 1, false);
    test_group_norm(2, 5, 3, 8, 1, 1, false);
    test_up(3, 5, 7, 6, 3, 0);
    test_up(2, 1, 3, 5, 2, 1);
    test_up(1, 4, 4, 1, 1, 1);
    // Rows of whole 16-byte chunks, of fewer than 16 bytes, and with a shorter last chunk.
    test_gather_images(50, 32, 5, 17, NULL, 1);
    test_gather_images(40, 7, 0, 40, local2, 1);
    test_gather_images(97, 61, 13, 29, NULL, 1);
    test_gather_images(97, 61, 68, 29, local2, 1);
    test_gather_images(97, 61, 13, 60, NULL, 3);
    test_gather_images(40, 7, 0, 40, local2, 4);

    // Products through both engines: whole blocks with edges right and below (37 rows, 53 and
    // 75 columns), 16-wide blocks, fewer rows or columns than one block, one row, k = 1, beta 1
    // and 0, split-K's strided batches, and products clvae's kernels split over k themselves.
    struct gemm_case {
        bool ta;
        int m, n, k;
        float alpha, beta;
        int batch;
    };
    static const struct gemm_case gemm[] = {
        {false, 37, 75, 29, 1.0f, 0.0f, 1},
        {true, 37, 75, 29, 1.0f, 1.0f, 1},
        {false, 40, 53, 300, 0.5f, 1.0f, 1},
        {true, 64, 17, 133, 1.0f, 0.0f, 1},
        {false, 5, 10, 7, 2.0f, 0.0f, 1},
        {true, 9, 3, 1, 1.0f, 1.0f, 1},
        {false, 1, 96, 50, 1.0f, 0.0f, 1},
        {true, 24, 64, 8, -1.0f, 0.5f, 1},
        {true, 19, 45, 61, 1.0f, 0.0f, 5},
        {true, 16, 32, 40, 1.0f, 0.0f, 3},
        // Long k, small C: clvae's kernels split these over k (own_parts), a part of
        // leftover rows and the sum with alpha and beta.
        {false, 37, 45, 13001, 0.5f, 1.0f, 1},
        {true, 40, 33, 15000, 1.0f, 0.0f, 1}};
    // Where clvae's kernels are not the device's default (any implementation but PoCL's CPU
    // device) they are checked at k up to 1024 only: Mesa's rusticl ends every loop after 65535
    // iterations, which their loop over k of a few thousand exceeds there.
    bool own_everywhere = rt.own_gemm;
    if (!own_everywhere)
        printf("test_kernels: clvae's products are not the default on %s: their cases with k "
               "over 1024 are left out\n",
               rt.platform_name);
    for (int own = 0; own < 2; own++)
        for (size_t i = 0; i < sizeof gemm / sizeof gemm[0]; i++)
            if (!own || own_everywhere || gemm[i].k <= 1024)
                test_gemm(own, gemm[i].ta, gemm[i].m, gemm[i].n, gemm[i].k, gemm[i].alpha,
                          gemm[i].beta, gemm[i].batch, 0, false);
    // Leading dimensions of 1024 (clvae's packed kernels): edge rows and columns, k under and over
    // a tile of 64 and not a multiple of it, a group of 8 blocks with only some rows (70, 130),
    // A^T's rows copied whole and clamped, a strided batch, alpha and beta.
    static const struct gemm_case aliased[] = {
        {false, 37, 75, 29, 1.0f, 0.0f, 1},  {false, 70, 53, 300, 0.5f, 1.0f, 1},
        {true, 37, 75, 129, 1.0f, 1.0f, 1},  {true, 130, 40, 200, 1.0f, 0.0f, 1},
        {true, 64, 64, 64, -1.0f, 0.5f, 1},  {true, 19, 45, 61, 1.0f, 0.0f, 3},
        {false, 130, 96, 65, 1.0f, 0.0f, 1}, {false, 8, 10, 100, 1.0f, 0.0f, 1}};
    for (int own = 0; own < 2; own++)
        for (size_t i = 0; i < sizeof aliased / sizeof aliased[0]; i++)
            test_gemm(own, aliased[i].ta, aliased[i].m, aliased[i].n, aliased[i].k,
                      aliased[i].alpha, aliased[i].beta, aliased[i].batch, 0, true);
    // clvae's kernels with the bias (and ReLU) folded in: whole and edge blocks, 16 wide, and a
    // product split over k (the epilogue then in the parts' sum).
    test_gemm(true, false, 37, 75, 29, 1.0f, 0.0f, 1, 1, false);
    test_gemm(true, false, 40, 53, 300, 1.0f, 0.0f, 1, 2, false);
    test_gemm(true, false, 21, 16, 9, 1.0f, 0.0f, 1, 2, false);
    test_gemm(true, false, 70, 75, 100, 1.0f, 0.0f, 1, 2, true);
    if (own_everywhere)
        test_gemm(true, false, 37, 45, 13001, 1.0f, 0.0f, 1, 2, false);

    // The fused epilogues (where clvae's kernels run): whole and edge blocks, 16 wide, fewer
    // rows than a block, beta 1, accumulated sums; a product split over k takes the mask in
    // the parts' sum.
    if (own_everywhere) {
        test_gemm_fused(false, 37, 75, 29, 0.0f, false);
        test_gemm_fused(false, 21, 16, 300, 1.0f, false);
        test_gemm_fused(false, 5, 33, 7, 0.0f, false);
        test_gemm_fused(false, 37, 45, 13001, 0.0f, false);
        test_gemm_fused(true, 37, 75, 29, 0.0f, false);
        test_gemm_fused(true, 21, 13, 300, 1.0f, true);
        test_gemm_fused(true, 5, 33, 7, 0.0f, true);
        test_gemm_fused(true, 130, 200, 256, 0.0f, false);
        // The batch gathered in the product: 32 and 16 wide, edge blocks, rows of fewer than 16
        // bytes and with a shorter last chunk, fewer rows than a block.
        test_gemm_gathered(97, 61, 13, 29, 75, true);
        test_gemm_gathered(50, 784, 5, 37, 128, true);
        test_gemm_gathered(40, 7, 0, 40, 16, false);
        test_gemm_gathered(20, 33, 3, 5, 10, true);
        test_gemm_gathered(60, 790, 7, 48, 200, false); // whole blocks, 7 columns of blocks
    }

    test_reparameterize(23, 7, 5, 0, 7, 3, PHILOX_STREAM_TRAIN, 1.0f);
    test_reparameterize(23, 7, 5, 41, 7, 3, PHILOX_STREAM_TRAIN, 1.0f);
    test_reparameterize(23, 7, 5, 0, 0xDEADBEEFCAFEF00Dull, (1ull << 32) + 11, PHILOX_STREAM_EVAL,
                        1.0f);
    test_reparameterize(19, 3, 0, 0, 7, 3, PHILOX_STREAM_TRAIN, 0.0f);
    test_reparameterize_backward(23, 7, 0.7f / 23.0f, 1.0f, false);
    test_reparameterize_backward(19, 5, 1.3f / 19.0f, 0.0f, false);
    test_reparameterize_backward(23, 7, 0.7f / 23.0f, 1.0f, true);
    test_reparameterize_backward(301, 10, 1.0f / 301.0f, 1.0f, true);

    static const struct {
        int dim;
        size_t local;
    } bce[] = {{1, 1}, {37, 1}, {37, 16}, {5, 16}, {129, 64}, {300, 128}, {789, 32}, {789, 256}};
    for (size_t i = 0; i < sizeof bce / sizeof bce[0]; i++)
        test_bce(11, bce[i].dim, bce[i].local, 3, 1.0f / 11.0f);

    test_logistic(7, 13, 3, 1.0f / 7.0f);
    test_logistic(3, 300, 1, 1.0f);
    test_logistic(2, 32, 3, 0.5f); // rows of whole vectors: no tail
    test_likelihood_mean();

    test_optimizer("adam", 0.0, 1001, 1e-3f, 5, 1);
    test_optimizer("adam", 0.0, 77, 0.05f, 5, 1);
    test_optimizer("adam", 0.0, 1001, 1e-3f, 3, 3);
    // AdamW at PyTorch's default decay, at a decay that moves the weights as much as the gradient
    // does, in parts; and with no decay, Adam to the bit.
    test_optimizer("adamw", 0.01, 1001, 1e-3f, 5, 1);
    test_optimizer("adamw", 2.0, 77, 0.05f, 5, 1);
    test_optimizer("adamw", 0.1, 1001, 1e-3f, 3, 3);
    test_adamw_no_decay(1001, 1e-3f, 5);
    test_adam16(1001, 1.0f);
    test_adam16(4096, 0.99f);
    test_adam16(7, 0.99f);
    if (rt.own_gemm) {
        test_gemm_tn_adam(45, 75, 37, 21, 19, 1.0f);    // partial blocks, values on both sides
        test_gemm_tn_adam(784, 128, 64, 0, 1027, 1.0f); // the default model's first layer
        test_gemm_tn_adam(9, 33, 300, 5, 0, 0.99f);     // one column past 32, nothing after
        struct clrt_mat none = {0};
        struct clrt_adam adam = {.count = 1000};
        tu_check(!clrt_gemm_tn_colsum_adam(&rt, 8, 16, 8, none, none, none, none, &adam),
                 "clrt_gemm_tn_colsum_adam declines 16 columns (gemm_tn_16_sum's)");
    }
    test_buffer_past_2gib();

    clrt_close(&rt);
    return tu_summary();
}
