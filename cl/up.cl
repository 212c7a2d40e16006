// Nearest-neighbour upsampling by an integer factor F (src/model/layer_up.c), as
// torch.nn.Upsample(mode='nearest'): images (rows, H, W, C) with the channel fastest, the output
// (rows, H F, W F, C).

// y[n, oy, ox, c] = x[n, oy / F, ox / F, c]. Range: (W F C, rows H F).
__kernel void up_forward(__global const float *x, __global float *y, int rows, int H, int W, int C,
                         int F)
{
    int i = get_global_id(0); // (ox, c)
    size_t r = get_global_id(1); // (n, oy)
    int OW = W * F;
    if (i >= OW * C || r >= (size_t)rows * H * F)
        return;
    int oy = (int)(r % ((size_t)H * F)), ox = i / C, c = i % C;
    size_t n = r / ((size_t)H * F);
    y[r * OW * C + i] = x[((n * H + oy / F) * W + ox / F) * C + c];
}

// The adjoint: dx[n, iy, ix, c] = the sum of dy over the F x F pixels that copy it, row by row
// (the same order every run), or that added to dx when acc. Range: (W C, rows H).
__kernel void up_backward(__global const float *dy, __global float *dx, int rows, int H, int W,
                          int C, int F, int acc)
{
    int i = get_global_id(0); // (ix, c)
    size_t r = get_global_id(1); // (n, iy)
    if (i >= W * C || r >= (size_t)rows * H)
        return;
    int ix = i / C, c = i % C, OW = W * F;
    __global const float *src = dy + (r * F * OW + (size_t)ix * F) * C + c;
    float sum = 0.0f;
    for (int a = 0; a < F; a++)
        for (int b = 0; b < F; b++)
            sum += src[((size_t)a * OW + b) * C];
    size_t at = r * W * C + i;
    dx[at] = acc ? dx[at] + sum : sum;
}
