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

// The CPU's kernels: a work-item takes GN_CHAINS groups of an image at once, as the lanes of a
// float8 where it sums (each group's sums in GN_FOR's order: the same bits as the kernels above
// with one item a group), 16 channels a vector where it works value by value. With one item a
// group, each add waiting on the one before and a value at a time, a call took 2.1-2.4 ms for 64
// images of 32x32x32 in 8 groups on 2 cores.
#define GN_CHAINS 8

// The image, first group and number of groups of work-item i: GN_CHAINS groups an item, the
// image's last item the groups left. Declares n, g0, ng, CG, M and base.
#define GN_CHAINS_ITEM(i)                                                                          \
    int chunks = (G + GN_CHAINS - 1) / GN_CHAINS, n = (int)((i) / chunks);                         \
    int g0 = (int)((i) % chunks) * GN_CHAINS, ng = min(GN_CHAINS, G - g0);                         \
    int CG = C / G, M = HW * CG;                                                                   \
    size_t base = (size_t)n * HW * C

// Runs body for each pixel of the image over the item's channels (g0 CG .. (g0 + ng) CG - 1) 16 at
// a time, the statements elementwise: with GN_LANE(name, expr) made a float16 of expr at each of
// the 16 channels first (q the channel's group among the item's, ch the channel; past the last
// channel the last again), at the offset of the 16 values from the image's first, w of them the
// item's. An elementwise pass in vectors, each value computed as the one-item kernels compute it.
#define GN_FOR_VECTORS(LANES, body)                                                                \
    for (int c = 0; c < ng * CG; c += 16) {                                                        \
        int w = min(16, ng * CG - c);                                                              \
        LANES                                                                                      \
        for (int px = 0; px < HW; px++) {                                                          \
            size_t at = (size_t)px * C + g0 * CG + c;                                              \
            body                                                                                   \
        }                                                                                          \
    }
#define GN_LANE(name, expr)                                                                        \
    float16 name;                                                                                  \
    {                                                                                              \
        float lanes_[16];                                                                          \
        for (int l = 0; l < 16; l++) {                                                             \
            int cc = c + min(l, w - 1), q = cc / CG, ch = g0 * CG + cc;                            \
            lanes_[l] = (expr);                                                                    \
        }                                                                                          \
        name = vload16(0, lanes_);                                                                 \
    }
// 16 values of p at the offset at (the first w; the others 0 when w is less), and their store.
float16 gn_load(__global const float *p, size_t at, int w)
{
    if (w == 16)
        return vload16(0, p + at);
    float lanes[16];
    for (int l = 0; l < 16; l++)
        lanes[l] = l < w ? p[at + l] : 0.0f;
    return vload16(0, lanes);
}
void gn_store(float16 v, __global float *p, size_t at, int w)
{
    if (w == 16) {
        vstore16(v, 0, p + at);
        return;
    }
    float lanes[16];
    vstore16(v, 0, lanes);
    for (int l = 0; l < w; l++)
        p[at + l] = lanes[l];
}

// Runs body for each pixel and each channel of a group in turn (each group's values in GN_FOR's
// order), the item's groups as the 8 lanes of a float8: at the offset of group g0's value from the
// image's first, lane q's at + o.q (o: the groups' offsets, past the last group the last again).
#define GN_FOR_LANES(body)                                                                         \
    for (int px = 0; px < HW; px++)                                                                \
        for (int cc = 0; cc < CG; cc++) {                                                          \
            size_t at = (size_t)px * C + g0 * CG + cc;                                             \
            body                                                                                   \
        }

// The float8 of p[o.q].
float8 gn_gather(__global const float *p, int8 o)
{
    return (float8)(p[o.s0], p[o.s1], p[o.s2], p[o.s3], p[o.s4], p[o.s5], p[o.s6], p[o.s7]);
}

// The groups' offsets of GN_FOR_LANES, and an array's first ng values as a float8 (the last again
// past them).
int8 gn_offsets(int ng, int CG)
{
    int o[8];
    for (int q = 0; q < 8; q++)
        o[q] = min(q, ng - 1) * CG;
    return vload8(0, o);
}
float8 gn_lanes(const float *v, int ng)
{
    float l[8];
    for (int q = 0; q < 8; q++)
        l[q] = v[min(q, ng - 1)];
    return vload8(0, l);
}

// group_norm_forward with GN_CHAINS groups a work-item. Range: (rows ceil(G / GN_CHAINS)).
__kernel void group_norm_forward_chains(__global const float *x, __global float *y,
                                        __global float *stats, __global const float *params,
                                        int gamma, int beta, int HW, int C, int G, float eps)
{
    GN_CHAINS_ITEM(get_global_id(0));
    __global const float *xi = x + base;
    float sum[GN_CHAINS], sq[GN_CHAINS], mu[GN_CHAINS], rs[GN_CHAINS];
    int8 o = gn_offsets(ng, CG);
    float8 sum8 = 0.0f, sq8 = 0.0f;
    GN_FOR_LANES(sum8 += gn_gather(xi + at, o);)
    vstore8(sum8, 0, sum);
    for (int q = 0; q < ng; q++)
        mu[q] = sum[q] / (float)M;
    float8 mean8 = gn_lanes(mu, ng);
    GN_FOR_LANES(float8 d = gn_gather(xi + at, o) - mean8; sq8 += d * d;)
    vstore8(sq8, 0, sq);
    for (int q = 0; q < ng; q++)
        rs[q] = 1.0f / sqrt(sq[q] / (float)M + eps);
    GN_FOR_VECTORS(GN_LANE(mean, mu[q]) GN_LANE(rstd, rs[q]) GN_LANE(sc, params[gamma + ch])
                       GN_LANE(sh, params[beta + ch]),
                   float16 v = (gn_load(xi, at, w) - mean) * rstd * sc + sh;
                   gn_store(fmax(v, 0.0f), y + base, at, w);)
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
    for (int q = 0; q < ng; q++) {
        size_t grp = (size_t)n * G + g0 + q;
        mu[q] = stats[grp * 2], rs[q] = stats[grp * 2 + 1];
    }
    x += base, dg += base, gx += base, dx += base, skip += base;
    int8 o = gn_offsets(ng, CG);
    float8 mean = gn_lanes(mu, ng), rstd = gn_lanes(rs, ng), s1v = 0.0f, s2v = 0.0f;
    __global const float *sc = params + gamma + g0 * CG;
    GN_FOR_LANES(float8 xhat = (gn_gather(x + at, o) - mean) * rstd;
                 float8 dxhat = gn_gather(sc + cc, o) * gn_gather(dg + at, o); s1v += dxhat;
                 s2v += dxhat * xhat;)
    vstore8(s1v, 0, s1);
    vstore8(s2v, 0, s2);
    for (int q = 0; q < ng; q++)
        s1[q] = s1[q] / (float)M, s2[q] = s2[q] / (float)M; // m1, m2
    // gx, and dx where asked, value by value.
    GN_FOR_VECTORS(GN_LANE(mean, mu[q]) GN_LANE(rstd, rs[q]) GN_LANE(m1, s1[q])
                       GN_LANE(m2, s2[q]) GN_LANE(sc, params[gamma + ch]),
                   float16 xhat = (gn_load(x, at, w) - mean) * rstd; float16 d = gn_load(dg, at, w);
                   gn_store(d * xhat, gx, at, w); if (!write_dx) continue;
                   float16 dxhat = sc * d; float16 v = rstd * (dxhat - m1 - xhat * m2);
                   if (add_skip) v += gn_load(skip, at, w);
                   gn_store(acc ? gn_load(dx, at, w) + v : v, dx, at, w);)
}

// y (n) += x (n): the skip connection's sum. Range: (n).
__kernel void res_add(__global float *y, __global const float *x, int n)
{
    size_t i = get_global_id(0);
    if (i < (size_t)n)
        y[i] += x[i];
}
