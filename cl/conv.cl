// Convolution by im2col and col2im around CLBlast products (src/layer_conv.c). Images are
// (rows, H, W, C) with the channel fastest (NHWC); a grid of GH x GW kernel positions with kernel
// K x K, stride S and padding P is what a convolution of the image computes, GH = (H + 2P - K) / S
// + 1 (a deconv's input grid, for its output image).

// cols (rows GH GW, K K C): row (n, gy, gx), column (ky, kx, c) = img[n, gy S - P + ky,
// gx S - P + kx, c], 0 outside the image. A work-item copies the C channels of one kernel position
// of one row: they lie contiguous in both (channel-last), and the index arithmetic, integer
// divisions that PoCL does not vectorise, is paid once per C floats rather than per float (17.9
// ms a call for the conv reference's 12544x512 matrices with one work-item a float, on PoCL on 2
// cores). Range: (K K, rows GH GW).
__kernel void conv_im2col(__global const float *img, __global float *cols, int rows, int C, int H,
                          int W, int GH, int GW, int K, int S, int P)
{
    int q = get_global_id(0);
    size_t r = get_global_id(1);
    if (q >= K * K || r >= (size_t)rows * GH * GW)
        return;
    int kx = q % K, ky = q / K;
    int gx = (int)(r % GW), gy = (int)(r / GW % GH);
    size_t n = r / ((size_t)GW * GH);
    int y = gy * S - P + ky, x = gx * S - P + kx;
    __global float *dst = cols + r * (size_t)(K * K * C) + (size_t)q * C;
    if (y >= 0 && y < H && x >= 0 && x < W) {
        __global const float *src = img + ((n * H + y) * W + x) * C;
        for (int c = 0; c < C; c++)
            dst[c] = src[c];
    } else {
        for (int c = 0; c < C; c++)
            dst[c] = 0.0f;
    }
}

#define COL2IM_CHANNELS 16 // channels a work-item of conv_col2im sums

// The adjoint of conv_im2col: img (rows, H, W, C) = for each pixel the sum of the cols entries
// im2col reads from it (overwritten). Each work-item gathers COL2IM_CHANNELS channels of one
// pixel over the kernel positions that read it, in a fixed order: no atomics, the same result
// every run; the channels are contiguous in cols and img alike, and the index arithmetic is paid
// once per kernel position (14.4 ms a call for the conv reference's deconv with one work-item a
// float, on PoCL on 2 cores). Range: (ceil(C / COL2IM_CHANNELS), rows H W).
__kernel void conv_col2im(__global const float *cols, __global float *img, int rows, int C, int H,
                          int W, int GH, int GW, int K, int S, int P)
{
    int c0 = get_global_id(0) * COL2IM_CHANNELS;
    size_t p = get_global_id(1);
    if (c0 >= C || p >= (size_t)rows * H * W)
        return;
    int nc = min(COL2IM_CHANNELS, C - c0), kkc = K * K * C, x = (int)(p % W), y = (int)(p / W % H);
    size_t n = p / ((size_t)W * H);
    float sum[COL2IM_CHANNELS];
    for (int c = 0; c < COL2IM_CHANNELS; c++)
        sum[c] = 0.0f;
    for (int ky = 0; ky < K; ky++) {
        int t = y + P - ky; // gy S
        if (t < 0 || t % S != 0 || t / S >= GH)
            continue;
        for (int kx = 0; kx < K; kx++) {
            int u = x + P - kx; // gx S
            if (u < 0 || u % S != 0 || u / S >= GW)
                continue;
            __global const float *src =
                cols + ((n * GH + t / S) * GW + u / S) * kkc + (ky * K + kx) * C + c0;
            for (int c = 0; c < nc; c++)
                sum[c] += src[c];
        }
    }
    for (int c = 0; c < nc; c++)
        img[p * C + c0 + c] = sum[c];
}
