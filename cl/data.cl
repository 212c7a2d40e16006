// Batches from the data set on the device.

// data: images first .. first + count - 1 of a data set ((count, dim) bytes: the whole set, or one
// part of it when it is larger than the largest allocation); index -> x (rows, dim) = image
// index[start + r] / 255 for the rows whose image is in this part (the others are another part's).
// A work-item converts 16 bytes of a row at once (the last of a row fewer): the default batch took
// 186-193 us on PoCL on 2 cores with a work-item a byte, 133-135 us this way (--profile).
// Range: (ceil(dim / 16), rows).
__kernel void gather_images(__global const uchar *data, int first, int count,
                            __global const int *index, int start, int rows, int dim,
                            __global float *x)
{
    int j = get_global_id(0) * 16, r = get_global_id(1);
    if (j >= dim || r >= rows)
        return;
    int image = index[start + r] - first;
    if (image < 0 || image >= count)
        return;
    __global const uchar *src = data + (size_t)image * (size_t)dim;
    __global float *dst = x + (size_t)r * dim;
    if (j + 16 <= dim) {
        vstore16(convert_float16(vload16(0, src + j)) * (1.0f / 255.0f), 0, dst + j);
    } else {
        for (; j < dim; j++)
            dst[j] = (float)src[j] * (1.0f / 255.0f);
    }
}
