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
    for (int e = lid; e < M; e += lsize)
        sum += xi[gn_at(e, g, CG, C)];
    float mean = work_group_sum(partial, sum) / (float)M;
    float sq = 0.0f;
    for (int e = lid; e < M; e += lsize) {
        float d = xi[gn_at(e, g, CG, C)] - mean;
        sq += d * d;
    }
    float rstd = 1.0f / sqrt(work_group_sum(partial, sq) / (float)M + eps);
    for (int e = lid; e < M; e += lsize) {
        size_t at = gn_at(e, g, CG, C);
        int c = g * CG + e % CG;
        float v = (xi[at] - mean) * rstd * params[gamma + c] + params[beta + c];
        y[base + at] = fmax(v, 0.0f);
    }
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
    for (int e = lid; e < M; e += lsize) {
        size_t at = base + gn_at(e, g, CG, C);
        float xhat = (x[at] - mean) * rstd, d = dg[at];
        float dxhat = params[gamma + g * CG + e % CG] * d;
        s1 += dxhat;
        s2 += dxhat * xhat;
        gx[at] = d * xhat;
    }
    float m1 = work_group_sum(partial, s1) / (float)M;
    float m2 = work_group_sum(partial, s2) / (float)M;
    if (!write_dx)
        return;
    for (int e = lid; e < M; e += lsize) {
        size_t at = base + gn_at(e, g, CG, C);
        float xhat = (x[at] - mean) * rstd;
        float dxhat = params[gamma + g * CG + e % CG] * dg[at];
        float v = rstd * (dxhat - m1 - xhat * m2);
        if (add_skip)
            v += skip[at];
        dx[at] = acc ? dx[at] + v : v;
    }
}

// y (n) += x (n): the skip connection's sum. Range: (n).
__kernel void res_add(__global float *y, __global const float *x, int n)
{
    size_t i = get_global_id(0);
    if (i < (size_t)n)
        y[i] += x[i];
}
