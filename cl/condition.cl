// The one-hot class inputs of --conditional (src/model/condition.c): a dense layer's last classes
// weight rows, picked by each image's label; and the labels of a batch gathered by its order.

// y (rows, n) += params[w + labels[r] n + j] (the class's weight row), then ReLU when relu.
// Range: (n, rows).
__kernel void condition_forward(__global float *y, __global const float *params, int w,
                                __global const int *labels, int rows, int n, int relu)
{
    int j = get_global_id(0), r = get_global_id(1);
    size_t i = (size_t)r * n + j;
    float v = y[i] + params[(size_t)w + (size_t)labels[r] * n + j];
    y[i] = relu ? fmax(v, 0.0f) : v;
}

// grads[w + c n + j] (+)= the sum over rows r of class c, in row order, of dy (rows, n) (zero
// where relu and y is not above 0). Range: (n, classes).
__kernel void condition_backward(__global const float *dy, __global const float *y, int relu,
                                 __global const int *labels, __global float *grads, int w,
                                 int accumulate, int rows, int n)
{
    int j = get_global_id(0), c = get_global_id(1);
    float sum = 0.0f;
    for (int r = 0; r < rows; r++) {
        size_t i = (size_t)r * n + j;
        if (labels[r] == c && (!relu || y[i] > 0.0f))
            sum += dy[i];
    }
    size_t at = (size_t)w + (size_t)c * n + j;
    grads[at] = accumulate ? grads[at] + sum : sum;
}

// out[r] = labels[index[start + r]]: the classes of a batch in the order its images were
// gathered. Range: (rows).
__kernel void condition_gather(__global const int *labels, __global const int *index, int start,
                               __global int *out)
{
    int r = get_global_id(0);
    out[r] = labels[index[start + r]];
}
