// Dense-layer epilogues. CLBlast computes y = x W; these add the bias, apply ReLU, and on the
// way back mask the gradient and reduce it to the bias gradient. Matrices are row-major.

// y (rows, n) += bias (n, at params + bias), in place. Range: (n, rows).
__kernel void bias_forward(__global float *y, __global const float *params, int bias,
                           int rows, int n)
{
    int j = get_global_id(0), r = get_global_id(1);
    if (j >= n || r >= rows)
        return;
    y[(size_t)r * n + j] += params[bias + j];
}

// y (rows, n) = relu(y + bias (n, at params + bias)), in place. Range: (n, rows).
__kernel void bias_relu_forward(__global float *y, __global const float *params, int bias,
                           int rows, int n)
{
    int j = get_global_id(0), r = get_global_id(1);
    if (j >= n || r >= rows)
        return;
    size_t i = (size_t)r * n + j;
    y[i] = fmax(y[i] + params[bias + j], 0.0f);
}

// Column j of dy's rows [first, last) summed in row order into o[j] (added to it when accumulate),
// dy masked by the ReLU in place first when relu: a work-item of bias_backward, and the columns of
// bias_backward16 past its last whole 16.
void bias_column(__global float *dy, __global const float *y, int relu, __global float *o,
                 int accumulate, int first, int last, int n, int j)
{
    float sum = 0.0f;
    for (int r = first; r < last; r++) {
        size_t i = (size_t)r * n + j;
        float g = dy[i];
        if (relu) {
            g = y[i] > 0.0f ? g : 0.0f;
            dy[i] = g;
        }
        sum += g;
    }
    o[j] = accumulate ? o[j] + sum : sum;
}

// The bias gradient as a two-pass column reduction that uses the whole device. Pass one: part p
// of `parts` sums rows [p R, min((p + 1) R, rows)) of column j of dy (rows, n), R = rows_per_part,
// masking dy by the ReLU in place first when relu (y (rows, n) the layer's output); neighbouring
// work-items read neighbouring columns, so every row is read coalesced. The sum goes to
// out[out_offset + p n + j], added to what is there when accumulate. With one part, out is the
// gradient itself and no second pass runs (on CPUs, where a work-item a column is fastest).
// Range: (n, parts).
__kernel void bias_backward(__global float *dy, __global const float *y, int relu,
                            __global float *out, int out_offset, int accumulate, int rows, int n,
                            int rows_per_part)
{
    int j = get_global_id(0), p = get_global_id(1);
    if (j >= n)
        return;
    int first = p * rows_per_part, last = min(rows, first + rows_per_part);
    bias_column(dy, y, relu, out + (size_t)out_offset + (size_t)p * n, accumulate, first, last, n,
                j);
}

// bias_backward on a CPU: a work-item takes 16 neighbouring columns as one float16, each lane the
// same adds in the same order as bias_backward's work-item of its column (the same bits), so 16
// chains of adds are in flight where PoCL ran bias_backward as one scalar loop a column (1-2 ms for
// 65,536 rows of 32 columns, a conv layer's bias on a batch of 64 32x32 images; 5-7 ms with the
// ReLU's mask). Columns past the last whole 16 as bias_backward. Range: ((n + 15) / 16, parts).
__kernel void bias_backward16(__global float *dy, __global const float *y, int relu,
                              __global float *out, int out_offset, int accumulate, int rows, int n,
                              int rows_per_part)
{
    int j0 = get_global_id(0) * 16, p = get_global_id(1);
    if (j0 >= n)
        return;
    int first = p * rows_per_part, last = min(rows, first + rows_per_part);
    __global float *o = out + (size_t)out_offset + (size_t)p * n;
    if (j0 + 16 <= n) {
        float16 sum = 0.0f;
        for (int r = first; r < last; r++) {
            size_t i = (size_t)r * n + j0;
            float16 g = vload16(0, dy + i);
            if (relu) {
                g = select((float16)0.0f, g, vload16(0, y + i) > 0.0f);
                vstore16(g, 0, dy + i);
            }
            sum += g;
        }
        vstore16(accumulate ? vload16(0, o + j0) + sum : sum, 0, o + j0);
        return;
    }
    for (int j = j0; j < n; j++)
        bias_column(dy, y, relu, o, accumulate, first, last, n, j);
}

// Pass one on a CPU when dy's rows are a multiple of 4 KiB apart (n a multiple of 1024): the
// column walk above then reads every row's line from the same cache sets and runs 4x slower than at
// n = 1000. Here work-item p sweeps its rows front to back instead, adding each (masked) row to its
// partial row out[out_offset + p n ..] (zeroed first), which stays in cache: the same sums in the
// same order. Range: (parts).
__kernel void bias_backward_rows(__global float *dy, __global const float *y, int relu,
                                 __global float *out, int out_offset, int rows, int n,
                                 int rows_per_part)
{
    int p = get_global_id(0);
    int first = p * rows_per_part, last = min(rows, first + rows_per_part);
    __global float *acc = out + out_offset + (size_t)p * n;
    for (int j = 0; j < n; j++)
        acc[j] = 0.0f;
    for (int r = first; r < last; r++) {
        __global float *d = dy + (size_t)r * n;
        __global const float *o = y + (size_t)r * n;
        int j = 0;
        for (; j + 16 <= n; j += 16) {
            float16 g = vload16(0, d + j);
            if (relu) {
                g = select((float16)0.0f, g, vload16(0, o + j) > 0.0f);
                vstore16(g, 0, d + j);
            }
            vstore16(vload16(0, acc + j) + g, 0, acc + j);
        }
        for (; j < n; j++) {
            float g = d[j];
            if (relu) {
                g = o[j] > 0.0f ? g : 0.0f;
                d[j] = g;
            }
            acc[j] += g;
        }
    }
}

// Pass two: grads[dbias + j] (+)= the sum over parts of partial[p n + j]. Range: (n).
__kernel void bias_backward_sum(__global const float *partial, int parts, __global float *grads,
                                int dbias, int accumulate, int n)
{
    int j = get_global_id(0);
    if (j >= n)
        return;
    float sum = partial[j];
    for (int p = 1; p < parts; p++)
        sum += partial[(size_t)p * n + j];
    grads[dbias + j] = accumulate ? grads[dbias + j] + sum : sum;
}

// dst (cols, rows; its rows ldd apart) at dst_off = the transpose of src (rows, cols) at src_off:
// an element a work-item, which a GPU reads coalesced. Range: (cols, rows).
__kernel void transpose(__global const float *src, int src_off, __global float *dst, int dst_off,
                        int rows, int cols, int ldd)
{
    int c = get_global_id(0), r = get_global_id(1);
    if (c >= cols || r >= rows)
        return;
    dst[dst_off + (size_t)c * ldd + r] = src[src_off + (size_t)r * cols + c];
}

// The same on a CPU: a work-item a 16 x 16 tile, read as 16 rows of 16 and written as 16 rows of
// 16 (the edges element by element). The element-a-work-item kernel writes 16 rows apart at once,
// which thrashes the cache when they are 4 KiB apart: 1024x1024 took 1.89 ms that way and 0.49
// ms in tiles, and 784x128 55 against 19 us, on PoCL on 2 cores. Range: (ceil(cols / 16),
// ceil(rows / 16)).
__kernel void transpose_tiles(__global const float *src, int src_off, __global float *dst,
                              int dst_off, int rows, int cols, int ldd)
{
    int c0 = get_global_id(0) * 16, r0 = get_global_id(1) * 16;
    if (c0 >= cols || r0 >= rows)
        return;
    src += src_off;
    dst += dst_off;
    if (c0 + 16 <= cols && r0 + 16 <= rows) {
        float tile[16][16];
        for (int i = 0; i < 16; i++)
            vstore16(vload16(0, src + (size_t)(r0 + i) * cols + c0), 0, tile[i]);
        for (int j = 0; j < 16; j++) {
            float16 v = (float16)(tile[0][j], tile[1][j], tile[2][j], tile[3][j], tile[4][j],
                                  tile[5][j], tile[6][j], tile[7][j], tile[8][j], tile[9][j],
                                  tile[10][j], tile[11][j], tile[12][j], tile[13][j],
                                  tile[14][j], tile[15][j]);
            vstore16(v, 0, dst + (size_t)(c0 + j) * ldd + r0);
        }
    } else {
        for (int i = r0; i < min(rows, r0 + 16); i++)
            for (int j = c0; j < min(cols, c0 + 16); j++)
                dst[(size_t)j * ldd + i] = src[(size_t)i * cols + j];
    }
}
