// Dense-layer epilogues. CLBlast computes y = x W^T; these add the bias, apply ReLU, and on the
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

// grads[dbias .. dbias + n) = column sums of dy (rows, n). Range: (n).
__kernel void bias_grad(__global const float *dy, __global float *grads, int dbias, int rows, int n)
{
    int j = get_global_id(0);
    if (j >= n)
        return;
    float sum = 0.0f;
    for (int r = 0; r < rows; r++)
        sum += dy[(size_t)r * n + j];
    grads[dbias + j] = sum;
}

// dy (rows, n) *= (y > 0) in place, where y = relu(...) is the layer's output; dbias (n) = column
// sums of the masked dy, at grads + dbias. Range: (n).
__kernel void relu_backward_bias_grad(__global float *dy, __global const float *y,
                                      __global float *grads, int dbias, int rows,
                                      int n)
{
    int j = get_global_id(0);
    if (j >= n)
        return;
    float sum = 0.0f;
    for (int r = 0; r < rows; r++) {
        size_t i = (size_t)r * n + j;
        float g = y[i] > 0.0f ? dy[i] : 0.0f;
        dy[i] = g;
        sum += g;
    }
    grads[dbias + j] = sum;
}

// dst (cols, rows) at dst_off = the transpose of src (rows, cols) at src_off. Range: (cols, rows).
__kernel void transpose(__global const float *src, int src_off, __global float *dst, int dst_off,
                        int rows, int cols)
{
    int c = get_global_id(0), r = get_global_id(1);
    if (c >= cols || r >= rows)
        return;
    dst[dst_off + (size_t)c * rows + r] = src[src_off + (size_t)r * cols + c];
}
