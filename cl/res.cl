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

// The CPU's kernels: a work-item takes GN_CHAINS groups of an image at once, each group's sums in
// GN_FOR's order (so the same bits as the kernels above with one item a group), their chains of
// adds interleaved: a work-item a group waited on each add's latency (a chain of H W C / G adds,
// three passes), 2.1-2.4 ms a call for 64 images of 32x32x32 in 8 groups on 2 cores.
#define GN_CHAINS 8

// Runs body for each value of groups g0 .. g0 + ng - 1 (ng <= GN_CHAINS) of the image, pixel by
// pixel, group by group, channel by channel: q the group's place among them, ch the channel, at
// the value's offset from the image's first.
#define GN_FOR_CHAINS(body)                                                                        \
    for (int px = 0; px < HW; px++)                                                                \
        for (int q = 0; q < ng; q++)                                                               \
            for (int cc = 0; cc < CG; cc++) {                                                      \
                int ch = (g0 + q) * CG + cc;                                                       \
                size_t at = (size_t)px * C + ch;                                                   \
                body                                                                               \
            }

// The image, first group and number of groups of work-item i: GN_CHAINS groups an item, the
// image's last item the groups left. Declares n, g0, ng, CG, M and base.
#define GN_CHAINS_ITEM(i)                                                                          \
    int chunks = (G + GN_CHAINS - 1) / GN_CHAINS, n = (int)((i) / chunks);                         \
    int g0 = (int)((i) % chunks) * GN_CHAINS, ng = min(GN_CHAINS, G - g0);                         \
    int CG = C / G, M = HW * CG;                                                                   \
    size_t base = (size_t)n * HW * C

// group_norm_forward with GN_CHAINS groups a work-item. Range: (rows ceil(G / GN_CHAINS)).
__kernel void group_norm_forward_chains(__global const float *x, __global float *y,
                                        __global float *stats, __global const float *params,
                                        int gamma, int beta, int HW, int C, int G, float eps)
{
    GN_CHAINS_ITEM(get_global_id(0));
    __global const float *xi = x + base;
    float sum[GN_CHAINS], sq[GN_CHAINS], mu[GN_CHAINS], rs[GN_CHAINS];
    for (int q = 0; q < GN_CHAINS; q++)
        sum[q] = 0.0f, sq[q] = 0.0f;
    GN_FOR_CHAINS(sum[q] += xi[at];)
    for (int q = 0; q < ng; q++)
        mu[q] = sum[q] / (float)M;
    GN_FOR_CHAINS(float mean = mu[q]; float d = xi[at] - mean; sq[q] += d * d;)
    for (int q = 0; q < ng; q++)
        rs[q] = 1.0f / sqrt(sq[q] / (float)M + eps);
    GN_FOR_CHAINS(float mean = mu[q]; float rstd = rs[q];
                  float v = (xi[at] - mean) * rstd * params[gamma + ch] + params[beta + ch];
                  y[base + at] = fmax(v, 0.0f);)
    for (int q = 0; q < ng; q++) {
        size_t grp = (size_t)n * G + g0 + q;
        stats[grp * 2] = mu[q];
        stats[grp * 2 + 1] = rs[q];
    }
}

// group_norm_backward with GN_CHAINS groups a work-item. Range: (rows ceil(G / GN_CHAINS)).
__kernel void group_norm_backward_chains(__global const float *dg, __global const float *x,
                                         __global const float *stats,
                                         __global const float *params, int gamma,
                                         __global float *gx, __global float *dx, int write_dx,
                                         __global const float *skip, int add_skip, int acc, int HW,
                                         int C, int G)
{
    GN_CHAINS_ITEM(get_global_id(0));
    float mu[GN_CHAINS], rs[GN_CHAINS], s1[GN_CHAINS], s2[GN_CHAINS];
    for (int q = 0; q < GN_CHAINS; q++)
        s1[q] = 0.0f, s2[q] = 0.0f;
    for (int q = 0; q < ng; q++) {
        size_t grp = (size_t)n * G + g0 + q;
        mu[q] = stats[grp * 2], rs[q] = stats[grp * 2 + 1];
    }
    x += base, dg += base, gx += base, dx += base, skip += base;
    GN_FOR_CHAINS(float mean = mu[q]; float rstd = rs[q]; float xhat = (x[at] - mean) * rstd;
                  float d = dg[at]; float dxhat = params[gamma + ch] * d; s1[q] += dxhat;
                  s2[q] += dxhat * xhat; gx[at] = d * xhat;)
    if (!write_dx)
        return;
    for (int q = 0; q < ng; q++)
        s1[q] = s1[q] / (float)M, s2[q] = s2[q] / (float)M; // m1, m2
    GN_FOR_CHAINS(float mean = mu[q]; float rstd = rs[q]; float m1 = s1[q]; float m2 = s2[q];
                  float xhat = (x[at] - mean) * rstd; float dxhat = params[gamma + ch] * dg[at];
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
