// The Gaussian sampler (src/model/sampler.c): the reparameterised sample with its KL term, its gradient,
// and draws from the prior. Needs common.cl.

// ml (rows, 2 latent) = [mu | logvar] -> z = mu + noise_scale * exp(logvar / 2) * eps, eps (rows,
// latent) ~ N(0, I) from Philox counter ((row0 + r) * latent + k, step, stream), row0 the pass's
// first row within its step's batch (micro-batches draw the batch's noise); kl[kl_offset + r] =
// KL(N(mu, exp(logvar)) || N(0, I)) summed over the latent dimensions. Range: (rows). Row r is
// reparameterize_row, which cl/gemm.cl's gemm_nn_reparameterize also calls.
void reparameterize_row(int r, __global const float *ml, __global float *z, __global float *eps,
                        __global float *kl, int kl_offset, int row0, int latent, uint seed_lo,
                        uint seed_hi, uint step_lo, uint step_hi, uint stream, float noise_scale)
{
    uint2 key = (uint2)(seed_lo, seed_hi);
    __global const float *mrow = ml + (size_t)r * 2 * latent;
    float sum = 0.0f;
    for (int k0 = 0; k0 < latent; k0 += 16) { // 16 dimensions at once (philox_normal16)
        int n = min(16, latent - k0);
        float a[16], b[16];
        for (int q = 0; q < 16; q++) {
            a[q] = q < n ? mrow[k0 + q] : 0.0f;
            b[q] = q < n ? mrow[latent + k0 + q] : 0.0f;
        }
        float16 mu = vload16(0, a), logvar = vload16(0, b);
        float16 e = philox_normal16((uint)((row0 + r) * latent + k0), step_lo, step_hi, stream, key);
        float16 zz = mu + noise_scale * exp(0.5f * logvar) * e;
        float16 t = 1.0f + logvar - mu * mu - exp(logvar);
        float ze[16], ee[16], te[16];
        vstore16(zz, 0, ze);
        vstore16(e, 0, ee);
        vstore16(t, 0, te);
        size_t i = (size_t)r * latent + k0;
        for (int q = 0; q < n; q++) {
            eps[i + q] = ee[q];
            z[i + q] = ze[q];
            sum += te[q]; // in the order of the dimensions
        }
    }
    kl[kl_offset + r] = -0.5f * sum;
}

__kernel void reparameterize(__global const float *ml, __global float *z, __global float *eps,
                             __global float *kl, int kl_offset, int row0, int rows, int latent,
                             uint seed_lo, uint seed_hi, uint step_lo, uint step_hi, uint stream,
                             float noise_scale)
{
    int r = get_global_id(0);
    if (r < rows)
        reparameterize_row(r, ml, z, eps, kl, kl_offset, row0, latent, seed_lo, seed_hi, step_lo,
                           step_hi, stream, noise_scale);
}

// dz (rows, latent), ml, eps -> dml (rows, 2 latent): the gradient through the sample plus
// beta_scale times the KL term's own gradient (beta_scale = beta / batch). Range: (rows).
__kernel void reparameterize_backward(__global const float *dz, __global const float *ml,
                                      __global const float *eps, __global float *dml, int rows,
                                      int latent, float beta_scale, float noise_scale)
{
    int r = get_global_id(0);
    if (r >= rows)
        return;
    for (int k = 0; k < latent; k++) {
        size_t i = (size_t)r * latent + k;
        size_t m = (size_t)r * 2 * latent + k;
        float mu = ml[m], logvar = ml[m + latent];
        float sd = exp(0.5f * logvar);
        dml[m] = dz[i] + beta_scale * mu;
        dml[m + latent] =
            dz[i] * eps[i] * noise_scale * 0.5f * sd + beta_scale * 0.5f * (sd * sd - 1.0f);
    }
}

// out (n) = N(0, 1) draws, element i from counter (i, step, stream).
__kernel void sample_normal(__global float *out, int n, uint seed_lo, uint seed_hi, uint step_lo,
                            uint step_hi, uint stream)
{
    int i = get_global_id(0);
    if (i >= n)
        return;
    out[i] = philox_normal((uint4)((uint)i, step_lo, step_hi, stream), (uint2)(seed_lo, seed_hi));
}

// --free-bits (Kingma et al. 2016): reparameterize_backward's dml, but the KL term counts as
// max(free_bits, mean_r KL_k) for each latent dimension k, its mean over the pass's rows: a
// dimension whose mean is below free_bits gets no gradient from it. One work-item a dimension,
// which first takes the mean over the rows and then writes the dimension's column of dml: the
// same work as reparameterize_backward, no buffer for the means. Range: (latent).
__kernel void reparameterize_backward_free_bits(__global const float *dz, __global const float *ml,
                                                __global const float *eps, __global float *dml,
                                                int rows, int latent, float beta_scale,
                                                float noise_scale, float free_bits)
{
    int k = get_global_id(0);
    if (k >= latent)
        return;
    float sum = 0.0f;
    for (int r = 0; r < rows; r++) {
        size_t m = (size_t)r * 2 * latent + k;
        float mu = ml[m], logvar = ml[m + latent];
        sum += -0.5f * (1.0f + logvar - mu * mu - exp(logvar));
    }
    float keep = sum / (float)rows >= free_bits ? beta_scale : 0.0f;
    for (int r = 0; r < rows; r++) {
        size_t i = (size_t)r * latent + k;
        size_t m = (size_t)r * 2 * latent + k;
        float mu = ml[m], logvar = ml[m + latent];
        float sd = exp(0.5f * logvar);
        dml[m] = dz[i] + keep * mu;
        dml[m + latent] = dz[i] * eps[i] * noise_scale * 0.5f * sd + keep * 0.5f * (sd * sd - 1.0f);
    }
}

// --binarize: x (rows, dim) in [0, 1] -> 1 with probability x, else 0, in place; the uniform of
// pixel j of data-set image index[start + r] from Philox counter (j, image, epoch, stream), so
// that an image's pixels are drawn the same in any batch. Range: (dim, rows).
__kernel void binarize_images(__global float *x, int rows, int dim, __global const int *index,
                              int start, uint seed_lo, uint seed_hi, uint epoch, uint stream)
{
    int j = get_global_id(0), r = get_global_id(1);
    if (j >= dim || r >= rows)
        return;
    uint image = (uint)index[start + r];
    uint4 bits = philox4x32_10((uint4)((uint)j, image, epoch, stream), (uint2)(seed_lo, seed_hi));
    float u = (float)(bits.x >> 8) * (1.0f / 16777216.0f);
    size_t i = (size_t)r * dim + j;
    x[i] = u < x[i] ? 1.0f : 0.0f;
}
