// Batches from the data set on the device.

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
