// Group normalisation and the residual block's sum (src/model/layer_res.c). Images are (rows, H, W,
// C) with the channel fastest; G groups of CG = C / G neighbouring channels. Group g of image n is
// its CG channels at every pixel: M = H W CG values, value e at pixel e / CG, channel g CG + e % CG.
// A work-group takes one (image, group), its items striding over the group's values, and adds
// their partial sums with work_group_sum: the same order every run, and rows G work-groups fill
// the device at any batch (1 item a group on a CPU, which runs a group's items one after another).

// The value e of group g of image n: its offset from the image's first value.
size_t gn_at(int e, int g, int CG, int C)
{
    return (size_t)(e / CG) * C + g * CG + e % CG;
}

// Runs the statements for each value of group g that this item takes, in the order of e: at its
// offset from the image's first value, ch its channel. With one item (a CPU) as nested loops over
// pixels and channels, with no division a value: gn_at's two cost more than the adds (3.7 ms for
// the forward of 64 images of 32x32x32, against 0.6 ms without); the same values in the same order.
#define GN_FOR(body)                                                                               \
    if (lsize == 1) {                                                                              \
        for (int px = 0; px < HW; px++)                                                            \
            for (int cc = 0; cc < CG; cc++) {                                                      \
                int ch = g * CG + cc;                                                              \
                size_t at = (size_t)px * C + ch;                                                   \
                body                                                                               \
            }                                                                                      \
    } else {                                                                                       \
        for (int e = lid; e < M; e += lsize) {                                                     \
            int ch = g * CG + e % CG;                                                              \
            size_t at = gn_at(e, g, CG, C);                                                        \
            body                                                                                   \
        }                                                                                          \
    }

// Statistics and output of x (rows, H, W, C): stats[(n G + g) 2] = the group's mean, [.. + 1] =
// 1 / sqrt(var + eps) (the biased variance, by two passes: the mean, then the squares about it);
// y = relu(gamma_c (x - mean) / sqrt(var + eps) + beta_c), gamma and beta (C) at params + gamma,
// params + beta. Range: (rows G local), local a power of two; partial holds local floats.
__kernel void group_norm_forward(__global const float *x, __global float *y,
                                 __global float *stats, __global const float *params, int gamma,
                                 int beta, int HW, int C, int G, float eps,
                                 __local float *partial)
{
    int grp = get_group_id(0), lid = get_local_id(0), lsize = get_local_size(0);
    int n = grp / G, g = grp % G, CG = C / G, M = HW * CG;
    size_t base = (size_t)n * HW * C;
    __global const float *xi = x + base;
    float sum = 0.0f;
    GN_FOR(sum += xi[at];)
    float mean = work_group_sum(partial, sum) / (float)M;
    float sq = 0.0f;
    GN_FOR(float d = xi[at] - mean; sq += d * d;)
    float rstd = 1.0f / sqrt(work_group_sum(partial, sq) / (float)M + eps);
    GN_FOR(float v = (xi[at] - mean) * rstd * params[gamma + ch] + params[beta + ch];
           y[base + at] = fmax(v, 0.0f);)
    if (lid == 0) {
        stats[(size_t)grp * 2] = mean;
        stats[(size_t)grp * 2 + 1] = rstd;
    }
}

// The way back, from dg (rows, H, W, C): the gradient of the normalisation's output, already
// masked by the ReLU after it. With xhat = (x - mean) rstd and dxhat = gamma_c dg, per (image,
// group): dx = rstd (dxhat - mean(dxhat) - xhat mean(dxhat xhat)), written when write_dx to dx,
// plus skip (the gradient of a sum the input also fed) when add_skip, plus what dx held when acc;
// and gx = dg xhat (rows, H, W, C), whose column sums are gamma's gradient. stats as
// group_norm_forward wrote them. Range as group_norm_forward's.
__kernel void group_norm_backward(__global const float *dg, __global const float *x,
                                  __global const float *stats, __global const float *params,
                                  int gamma, __global float *gx, __global float *dx, int write_dx,
                                  __global const float *skip, int add_skip, int acc, int HW, int C,
                                  int G, __local float *partial)
{
    int grp = get_group_id(0), lid = get_local_id(0), lsize = get_local_size(0);
    int n = grp / G, g = grp % G, CG = C / G, M = HW * CG;
    size_t base = (size_t)n * HW * C;
    float mean = stats[(size_t)grp * 2], rstd = stats[(size_t)grp * 2 + 1];
    float s1 = 0.0f, s2 = 0.0f;
    x += base, dg += base, gx += base, dx += base, skip += base;
    GN_FOR(float xhat = (x[at] - mean) * rstd; float d = dg[at];
           float dxhat = params[gamma + ch] * d; s1 += dxhat; s2 += dxhat * xhat;
           gx[at] = d * xhat;)
    float m1 = work_group_sum(partial, s1) / (float)M;
    float m2 = work_group_sum(partial, s2) / (float)M;
    if (!write_dx)
        return;
    GN_FOR(float xhat = (x[at] - mean) * rstd; float dxhat = params[gamma + ch] * dg[at];
           float v = rstd * (dxhat - m1 - xhat * m2); if (add_skip) v += skip[at];
           dx[at] = acc ? dx[at] + v : v;)
}

// y (n) += x (n): the skip connection's sum. Range: (n).
__kernel void res_add(__global float *y, __global const float *x, int n)
{
    size_t i = get_global_id(0);
    if (i < (size_t)n)
        y[i] += x[i];
}
