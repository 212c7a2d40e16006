// Convolution by im2col and col2im around CLBlast products (src/layer_conv.c). Images are
// (rows, H, W, C) with the channel fastest (NHWC); a grid of GH x GW kernel positions with kernel
// K x K, stride S and padding P is what a convolution of the image computes, GH = (H + 2P - K) / S
// + 1 (a deconv's input grid, for its output image).

// cols (rows GH GW, K K C): row (n, gy, gx), column (ky, kx, c) = img[n, gy S - P + ky,
// gx S - P + kx, c], 0 outside the image. Range: (K K C, rows GH GW).
__kernel void conv_im2col(__global const float *img, __global float *cols, int rows, int C, int H,
                          int W, int GH, int GW, int K, int S, int P)
{
    int j = get_global_id(0);
    size_t r = get_global_id(1);
    int kkc = K * K * C;
    if (j >= kkc || r >= (size_t)rows * GH * GW)
        return;
    int c = j % C, kx = (j / C) % K, ky = j / (C * K);
    int gx = (int)(r % GW), gy = (int)(r / GW % GH);
    size_t n = r / ((size_t)GW * GH);
    int y = gy * S - P + ky, x = gx * S - P + kx;
    float v = 0.0f;
    if (y >= 0 && y < H && x >= 0 && x < W)
        v = img[((n * H + y) * W + x) * C + c];
    cols[r * kkc + j] = v;
}

// The adjoint of conv_im2col: img (rows, H, W, C) = for each pixel the sum of the cols entries
// im2col reads from it (overwritten). Each work-item gathers its own pixel: no atomics, the same
// order every run. Range: (C, rows H W).
__kernel void conv_col2im(__global const float *cols, __global float *img, int rows, int C, int H,
                          int W, int GH, int GW, int K, int S, int P)
{
    int c = get_global_id(0);
    size_t p = get_global_id(1);
    if (c >= C || p >= (size_t)rows * H * W)
        return;
    int kkc = K * K * C, x = (int)(p % W), y = (int)(p / W % H);
    size_t n = p / ((size_t)W * H);
    float sum = 0.0f;
    for (int ky = 0; ky < K; ky++) {
        int t = y + P - ky; // gy S
        if (t < 0 || t % S != 0 || t / S >= GH)
            continue;
        for (int kx = 0; kx < K; kx++) {
            int u = x + P - kx; // gx S
            if (u < 0 || u % S != 0 || u / S >= GW)
                continue;
            sum += cols[((n * GH + t / S) * GW + u / S) * kkc + (ky * K + kx) * C + c];
        }
    }
    img[p * C + c] = sum;
}
