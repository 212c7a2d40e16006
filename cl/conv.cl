// Convolution by im2col and col2im around CLBlast products (src/model/layer_conv.c). Images are
// (rows, H, W, C) with the channel fastest (NHWC); a grid of GH x GW kernel positions with kernel
// K x K, stride S and padding P is what a convolution of the image computes, GH = (H + 2P - K) / S
// + 1 (a deconv's input grid, for its output image).

// cols (rows GH GW, K K C): row (n, gy, gx), column (ky, kx, c) = img[n, gy S - P + ky,
// gx S - P + kx, c], 0 outside the image. A work-item writes the GW rows of one grid row (n, gy):
// the index arithmetic, integer divisions that PoCL does not vectorise, is paid once per GW K K C
// floats, and a one-channel image costs no more work-items than a wide one (with a work-item
// per kernel position and row, the conv reference's 28x28x1 input took 2.57 ms a batch on PoCL
// on 2 cores, 0.67 ms this way; its 14x14x32 layer 0.9-1.6 ms, 0.67). Images first .. first +
// rows - 1 of img (a slice of the batch), their rows of cols, which holds the columns of images
// base on: 0 (the batch's, each image's at its place) or first (the slice's own, from the start:
// a buffer every slice reuses, which holds one slice). A kernel row wholly inside the image is
// one run of K C floats in img and in cols, copied as one (1,087-1,158 against 1,200-1,255 us a
// call for the conv reference, three alternating pairs on a 2-core Xeon, 2026-12-04). Range:
// (rows GH).
__kernel void conv_im2col(__global const float *img, __global float *cols, int rows, int C, int H,
                          int W, int GH, int GW, int K, int S, int P, int first, int base)
{
    size_t r = get_global_id(0); // (n, gy) of the images first .. first + rows - 1
    if (r >= (size_t)rows * GH)
        return;
    r += (size_t)first * GH;
    int gy = (int)(r % GH);
    size_t n = r / GH;
    int kkc = K * K * C;
    __global float *dst = cols + (r - (size_t)base * GH) * GW * (size_t)kkc;
    for (int gx = 0; gx < GW; gx++)
        for (int ky = 0; ky < K; ky++) {
            int y = gy * S - P + ky, x0 = gx * S - P;
            if (y >= 0 && y < H && x0 >= 0 && x0 + K <= W) {
                // The kernel row inside the image: its K pixels' K C floats are one run in img.
                __global const float *src = img + ((n * H + y) * W + x0) * C;
                int q = 0, run = K * C;
                for (; q + 16 <= run; q += 16)
                    vstore16(vload16(0, src + q), 0, dst + q);
                for (; q + 4 <= run; q += 4)
                    vstore4(vload4(0, src + q), 0, dst + q);
                for (; q < run; q++)
                    dst[q] = src[q];
                dst += run;
                continue;
            }
            for (int kx = 0; kx < K; kx++, dst += C) {
                int x = gx * S - P + kx;
                int c = 0; // 16 channels a copy where there are
                if (y >= 0 && y < H && x >= 0 && x < W) {
                    __global const float *src = img + ((n * H + y) * W + x) * C;
                    for (; c + 16 <= C; c += 16)
                        vstore16(vload16(0, src + c), 0, dst + c);
                    for (; c < C; c++)
                        dst[c] = src[c];
                } else {
                    for (; c + 16 <= C; c += 16)
                        vstore16((float16)0.0f, 0, dst + c);
                    for (; c < C; c++)
                        dst[c] = 0.0f;
                }
            }
        }
}

// conv_im2col for GPUs: a work-item a float of cols, so that neighbouring work-items write
// neighbouring floats (and read neighbouring channels). conv_im2col's work-item a grid row wrote
// from addresses GW K K C floats apart: on an NVIDIA H200 the residual model's 32x32x32 3x3 layers
// took 3.0 ms a call that way, 83% of its step. Range: (GW K K C, rows GH); the same arguments
// and the same values as conv_im2col.
__kernel void conv_im2col_items(__global const float *img, __global float *cols, int rows, int C,
                                int H, int W, int GH, int GW, int K, int S, int P, int first,
                                int base)
{
    size_t i = get_global_id(0), r = get_global_id(1);
    int kkc = K * K * C;
    if (i >= (size_t)GW * kkc || r >= (size_t)rows * GH)
        return;
    r += (size_t)first * GH;
    int gy = (int)(r % GH), gx = (int)(i / kkc), q = (int)(i % kkc);
    size_t n = r / GH;
    int c = q % C, kx = q / C % K, ky = q / (C * K);
    int y = gy * S - P + ky, x = gx * S - P + kx;
    cols[(r - (size_t)base * GH) * GW * kkc + i] =
        y >= 0 && y < H && x >= 0 && x < W ? img[((n * H + y) * W + x) * C + c] : 0.0f;
}

#define COL2IM_CHANNELS 16 // channels a work-item of conv_col2im sums

// The kernel positions that read pixel (y, x) of image n, in a fixed order: body with src at
// their entries of channel c0 in cols (which starts at image base's). Only every S-th kernel row
// and column can reach a pixel, from the first that does, ky0 = (y + P) mod S (kx0 likewise), whose
// grid row is gy0 = (y + P) / S; each later one's is one less (y + P - ky is a multiple of S).
#define COL2IM_WALK(body)                                                                          \
    for (int ky = ky0, gy = gy0; ky < K; ky += S, gy--) {                                          \
        if (gy < 0 || gy >= GH)                                                                    \
            continue;                                                                              \
        for (int kx = kx0, gx = gx0; kx < K; kx += S, gx--) {                                      \
            if (gx < 0 || gx >= GW)                                                                \
                continue;                                                                          \
            __global const float *src =                                                            \
                cols + (((n - base) * GH + gy) * GW + gx) * kkc + (ky * K + kx) * C + c0;          \
            body                                                                                   \
        }                                                                                          \
    }

// The adjoint of conv_im2col: img (rows, H, W, C) = for each pixel the sum of the cols entries
// im2col reads from it (overwritten, or added to when acc: a layer whose input feeds two). Each
// work-item gathers COL2IM_CHANNELS channels of the W pixels of one image row (n, y), each over
// the kernel positions that read it, in a fixed order: no atomics, the same result every run.
// The conv reference's 14x14x32 image took 1.14 ms a batch this way on PoCL on 2 cores (1.6 with
// a work-item a pixel), its 28x28x1 output 1.45 (2.9). Counting the walk's grid positions down
// instead of dividing each by S (an integer division is tens of cycles), and one channel summed
// in a register, took the conv reference's col2im time of an epoch from 2.42-2.58 to 1.63-1.74 s
// (`--profile`, two pairs of runs alternating, 2-core Xeon, 2026-12-05). Range: (ceil(C /
// COL2IM_CHANNELS), rows H), for images first .. first + rows - 1, cols from image base on, as
// im2col's.
__kernel void conv_col2im(__global const float *cols, __global float *img, int rows, int C, int H,
                          int W, int GH, int GW, int K, int S, int P, int acc, int first, int base)
{
    int c0 = get_global_id(0) * COL2IM_CHANNELS;
    size_t py = get_global_id(1); // (n, y) of the images first .. first + rows - 1
    if (c0 >= C || py >= (size_t)rows * H)
        return;
    py += (size_t)first * H;
    int nc = min(COL2IM_CHANNELS, C - c0), kkc = K * K * C, y = (int)(py % H);
    size_t n = py / H;
    int ky0 = (y + P) % S, gy0 = (y + P) / S;
    // kx0 and gx0 of pixel x, stepped along the row: (x + P) mod S and (x + P) / S.
    for (int x = 0, kx0 = P % S, gx0 = P / S; x < W; x++) {
        __global float *out = img + (py * W + x) * C + c0;
        if (nc == 16) { // the same adds, the 16 channels as one vector
            float16 sum = 0.0f;
            COL2IM_WALK(sum += vload16(0, src);)
            vstore16(acc ? vload16(0, out) + sum : sum, 0, out);
        } else if (nc == 1) {
            float sum = 0.0f;
            COL2IM_WALK(sum += src[0];)
            out[0] = acc ? out[0] + sum : sum;
        } else {
            float sum[COL2IM_CHANNELS];
            for (int c = 0; c < COL2IM_CHANNELS; c++)
                sum[c] = 0.0f;
            COL2IM_WALK(for (int c = 0; c < nc; c++) sum[c] += src[c];)
            for (int c = 0; c < nc; c++)
                out[c] = acc ? out[c] + sum[c] : sum[c];
        }
        if (++kx0 == S)
            kx0 = 0, gx0++;
    }
}

// conv_col2im for GPUs: a work-item a float of img, (n, y) from dimension 1 and (x, c) from
// dimension 0, over the same kernel positions in the same order as conv_col2im (the same sums),
// so that neighbouring work-items read neighbouring channels and a batch fills the device:
// conv_col2im's work-item of 16 channels and a whole image row gave the residual model's
// 32x32x32 layers 4,096 work-items a batch of 64 on an NVIDIA H200, 91 us a call. Range: (W C,
// rows H); the same arguments as conv_col2im.
__kernel void conv_col2im_items(__global const float *cols, __global float *img, int rows, int C,
                                int H, int W, int GH, int GW, int K, int S, int P, int acc,
                                int first, int base)
{
    size_t i = get_global_id(0), py = get_global_id(1);
    if (i >= (size_t)W * C || py >= (size_t)rows * H)
        return;
    py += (size_t)first * H;
    int x = (int)(i / C), c0 = (int)(i % C), kkc = K * K * C, y = (int)(py % H);
    size_t n = py / H;
    int ky0 = (y + P) % S, kx0 = (x + P) % S, gy0 = (y + P) / S, gx0 = (x + P) / S;
    float sum = 0.0f;
    COL2IM_WALK(sum += src[0];)
    __global float *out = img + py * W * C + i;
    *out = acc ? *out + sum : sum;
}
