// The Bernoulli likelihood on logits (src/likelihood.c): each pixel's negative log-probability and
// its gradient, and the per-image sums. Needs common.cl.

// -log p(t | l) = max(l, 0) - l t + log(1 + exp(-|l|)) for a Bernoulli with logit l and target t
// in [0, 1] (the binary cross-entropy), stable for every l. Training and eval's IWAE both call it.
// native_exp: the loss needs absolute accuracy only, and the precise exp is a scalar library call
// on PoCL.
float bernoulli_nll(float l, float t)
{
    return fmax(l, 0.0f) - l * t + log1p_unit(native_exp(-fabs(l)));
}

// logits, x (rows, dim) -> terms = bernoulli_nll, each pixel's binary cross-entropy, and
// dlogits = scale * (sigmoid(l) - x). Range: (dim, rows). The row sums are row_sum's: summing
// here, in a loop per work-item, kept PoCL from vectorising across pixels (2.4 ms a batch against
// 0.5 ms for the two kernels).
__kernel void bce_logits_grad(__global const float *logits, __global const float *x,
                              __global float *dlogits, __global float *terms, int rows, int dim,
                              float scale)
{
    int j = get_global_id(0), r = get_global_id(1);
    if (j >= dim || r >= rows)
        return;
    size_t i = (size_t)r * dim + j;
    float l = logits[i], t = x[i];
    float e = native_exp(-fabs(l));
    terms[i] = bernoulli_nll(l, t);
    dlogits[i] = scale * ((l >= 0.0f ? 1.0f : e) / (1.0f + e) - t);
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
