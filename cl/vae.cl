// The VAE's own pieces: batch gathering, the reparameterised sample with its KL term, and the
// Bernoulli reconstruction loss on logits. Needs random.cl.

// data (count, dim) bytes, index (count) -> x (rows, dim) = data[index[start + r]] / 255.
// Range: (dim, rows).
__kernel void gather_images(__global const uchar *data, __global const int *index, int start,
                            int rows, int dim, __global float *x)
{
    int j = get_global_id(0), r = get_global_id(1);
    if (j >= dim || r >= rows)
        return;
    size_t src = (size_t)index[start + r] * (size_t)dim + (size_t)j;
    x[(size_t)r * dim + j] = (float)data[src] * (1.0f / 255.0f);
}

// ml (rows, 2 latent) = [mu | logvar] -> z = mu + noise_scale * exp(logvar / 2) * eps, eps (rows,
// latent) ~ N(0, I) from Philox counter (r * latent + k, step, stream); kl[kl_offset + r] =
// KL(N(mu, exp(logvar)) || N(0, I)) summed over the latent dimensions. Range: (rows).
__kernel void reparameterize(__global const float *ml, __global float *z, __global float *eps,
                             __global float *kl, int kl_offset, int rows, int latent, uint seed_lo,
                             uint seed_hi, uint step_lo, uint step_hi, uint stream,
                             float noise_scale)
{
    int r = get_global_id(0);
    if (r >= rows)
        return;
    uint2 key = (uint2)(seed_lo, seed_hi);
    float sum = 0.0f;
    for (int k = 0; k < latent; k++) {
        float mu = ml[(size_t)r * 2 * latent + k];
        float logvar = ml[(size_t)r * 2 * latent + latent + k];
        uint ctr = (uint)(r * latent + k);
        float e = philox_normal((uint4)(ctr, step_lo, step_hi, stream), key);
        size_t i = (size_t)r * latent + k;
        eps[i] = e;
        z[i] = mu + noise_scale * exp(0.5f * logvar) * e;
        sum += 1.0f + logvar - mu * mu - exp(logvar);
    }
    kl[kl_offset + r] = -0.5f * sum;
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

// log(1 + e) for e in [0, 1], as 2 atanh(s) with s = e / (2 + e) <= 1/3: the series in s^2 <= 1/9
// stops at s^13, leaving an error below 1e-8. PoCL turns log() and native_log() into scalar
// library calls (11 ns an element, half of the loss kernel's time); this vectorises everywhere.
float log1p_unit(float e)
{
    float s = e / (2.0f + e), s2 = s * s;
    float series = 1.0f / 11.0f + s2 * (1.0f / 13.0f);
    series = 1.0f / 9.0f + s2 * series;
    series = 1.0f / 7.0f + s2 * series;
    series = 1.0f / 5.0f + s2 * series;
    series = 1.0f / 3.0f + s2 * series;
    return 2.0f * s * (1.0f + s2 * series);
}

// logits, x (rows, dim) -> terms = max(l, 0) - l x + log(1 + exp(-|l|)), each pixel's binary
// cross-entropy, and dlogits = scale * (sigmoid(l) - x). Range: (dim, rows). The row sums are
// row_sum's: summing here, in a loop per work-item, kept PoCL from vectorising across pixels
// (2.4 ms a batch against 0.5 ms for the two kernels).
__kernel void bce_logits_grad(__global const float *logits, __global const float *x,
                              __global float *dlogits, __global float *terms, int rows, int dim,
                              float scale)
{
    int j = get_global_id(0), r = get_global_id(1);
    if (j >= dim || r >= rows)
        return;
    size_t i = (size_t)r * dim + j;
    float l = logits[i], t = x[i];
    // native_exp: the loss needs absolute accuracy only, and the precise exp is a scalar library
    // call on PoCL.
    float e = native_exp(-fabs(l));
    terms[i] = fmax(l, 0.0f) - l * t + log1p_unit(e);
    dlogits[i] = scale * ((l >= 0.0f ? 1.0f : e) / (1.0f + e) - t);
}

// The sum of value over the work-group, returned to every work-item. partial holds one float per
// work-item (the work-group size a power of two) and may be used again straight after.
float work_group_sum(__local float *partial, float value)
{
    int lid = get_local_id(0), lsize = get_local_size(0);
    partial[lid] = value;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int stride = lsize / 2; stride > 0; stride /= 2) {
        if (lid < stride)
            partial[lid] += partial[lid + stride];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    float total = partial[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    return total;
}

// terms (rows, dim) -> out[out_offset + r] = the sum of row r. One work-group a row; partial holds
// one float per work-item (a power of two: 1 on CPUs, where a plain loop is fastest).
__kernel void row_sum(__global const float *terms, __global float *out, int out_offset, int dim,
                      __local float *partial)
{
    int r = get_group_id(0), lid = get_local_id(0), lsize = get_local_size(0);
    size_t base = (size_t)r * dim;
    float sum = 0.0f;
    for (int j = lid; j < dim; j += lsize)
        sum += terms[base + j];
    sum = work_group_sum(partial, sum);
    if (lid == 0)
        out[out_offset + r] = sum;
}
