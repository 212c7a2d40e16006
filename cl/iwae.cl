// The importance-weighted bound (Burda, Grosse and Salakhutdinov, "Importance weighted
// autoencoders", 2015): log p(x) >= log (1/k) sum_j w_j, w_j = p(x|z_j) p(z_j) / q(z_j|x),
// z_j ~ q(z|x). A group of images' k samples each are laid out flat, p = image * k + sample, and
// decoded in chunks of rows p = first .. first + rows - 1. Needs common.cl and likelihood.cl.

#define IWAE_HALF_LOG_2PI 0.91893853320467274f

// ml (images, 2 latent) = [mu | logvar] of the batch; chunk row r is p = first + r, image
// image0 + p / k, sample p % k -> z (rows, latent) = mu + exp(logvar / 2) eps, eps ~ N(0, I) from
// Philox counter (sample * latent + d, image_base + p / k, stream), so every image's noise depends
// on its number in the data set only; log_w[p] = log p(z) - log q(z|x), both diagonal Gaussians
// with their -log(2 pi) / 2 terms. Range: (rows).
__kernel void iwae_sample(__global const float *ml, __global float *z, __global float *log_w,
                          int first, int rows, int k, int image0, int latent, uint seed_lo,
                          uint seed_hi, uint base_lo, uint base_hi, uint stream)
{
    int r = get_global_id(0);
    if (r >= rows)
        return;
    int p = first + r, image = p / k, sample = p % k;
    ulong number = (((ulong)base_hi << 32) | (ulong)base_lo) + (ulong)image;
    uint2 key = (uint2)(seed_lo, seed_hi);
    size_t m = (size_t)(image0 + image) * 2 * latent;
    float log_ratio = 0.0f;
    for (int d = 0; d < latent; d++) {
        float mu = ml[m + d], logvar = ml[m + latent + d];
        uint ctr = (uint)sample * (uint)latent + (uint)d;
        float e = philox_normal((uint4)(ctr, (uint)number, (uint)(number >> 32), stream), key);
        float zd = mu + exp(0.5f * logvar) * e;
        z[(size_t)r * latent + d] = zd;
        // log N(z; 0, 1) - log N(z; mu, exp(logvar)), with (z - mu)^2 / exp(logvar) = e^2.
        log_ratio += (-IWAE_HALF_LOG_2PI - 0.5f * zd * zd) -
                     (-IWAE_HALF_LOG_2PI - 0.5f * logvar - 0.5f * e * e);
    }
    log_w[p] = log_ratio;
}

// out (rows, out_dim) the decoder's output for chunk rows p = first + r; x (images, dim) the
// batch's pixels in [0, 1] -> log_w[p] -= sum over pixels of pixel_nll (as in training) against
// x's row image0 + p / k, so log_w[p] gains log p(x|z). kind, channels: the likelihood's
// (pixel_nll). One work-group a row; partial holds one float per work-item (a power of two, 1 on
// CPUs).
__kernel void iwae_log_likelihood(__global const float *out, __global const float *x,
                                  __global float *log_w, int first, int k, int image0, int dim,
                                  int out_dim, int kind, int channels, __local float *partial)
{
    int r = get_group_id(0), lid = get_local_id(0), lsize = get_local_size(0);
    int p = first + r;
    __global const float *row = out + (size_t)r * out_dim;
    size_t xrow = (size_t)(image0 + p / k) * dim;
    float sum = 0.0f;
    for (int j = lid; j < dim; j += lsize)
        sum += pixel_nll(row, j, x[xrow + j], kind, channels);
    sum = work_group_sum(partial, sum);
    if (lid == 0)
        log_w[p] -= sum;
}

// The larger of a and b, or NaN when either is (fmax would drop a NaN).
float max_or_nan(float a, float b)
{
    return isnan(a) || a > b ? a : b;
}

// log_w (images, k) -> bound[offset + i] = log (1/k) sum_j exp(log_w[i, j]), as m + log sum_j
// exp(log_w[i, j] - m) - log k with m the row's largest entry, so nothing overflows or underflows
// to zero however far the log-weights lie from 0; +-inf when the largest entry is, NaN when any is
// NaN. One work-group an image; partial holds one float per work-item (a power of two).
__kernel void iwae_logsumexp(__global const float *log_w, __global float *bound, int offset, int k,
                             float log_k, __local float *partial)
{
    int i = get_group_id(0), lid = get_local_id(0), lsize = get_local_size(0);
    size_t row = (size_t)i * k;
    float m = -INFINITY;
    for (int j = lid; j < k; j += lsize)
        m = max_or_nan(m, log_w[row + j]);
    partial[lid] = m;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int stride = lsize / 2; stride > 0; stride /= 2) {
        if (lid < stride)
            partial[lid] = max_or_nan(partial[lid], partial[lid + stride]);
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    m = partial[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    float sum = 0.0f;
    if (!isinf(m))
        for (int j = lid; j < k; j += lsize)
            sum += exp(log_w[row + j] - m);
    sum = work_group_sum(partial, sum);
    if (lid == 0)
        bound[offset + i] = isinf(m) ? m : m + log(sum) - log_k;
}
