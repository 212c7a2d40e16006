// clvae's own matrix products, the default on PoCL's CPU device: C (m, n) = alpha op(A) B +
// beta C, row-major, op(A) = A (gemm_nn_*) or A^T with A stored (k, m) (gemm_tn_*); dimension 2
// of the range is a batch of such products, strides in floats. An epilogue may follow, folded
// into the store: GEMM_BIAS adds bias[bias_off + j] to column j, GEMM_BIAS_RELU then takes
// max(0, .) (what bias_forward and bias_relu_forward of dense.cl do in a second pass, to the same
// bits). Range: (column blocks, row blocks, batch).
//
// Each work-item keeps a GEMM_R x (16 NV) block of C in float16 registers and walks k: a step
// loads NV rows of 16 from B, broadcasts GEMM_R values of A and does GEMM_R NV vector
// multiply-adds, the register-blocked loop of a CPU BLAS. No local memory and no barrier: PoCL runs
// a work-group's items as a loop, and a barrier splits that loop and spills what each item holds,
// which is why CLBlast's kernels reach 30-70 GFLOP/s there and these 120-300 (2 cores with
// AVX-512). A block that reaches past the last row reads that row again and stores only its own
// rows; one that reaches past the last column reads B element by element, zeros beyond.
//
// Rows of an operand a multiple of 4 KiB apart (a leading dimension a multiple of 1024 floats:
// widths 1024, 2048, 4096) all fall in the same cache sets, so a block's walk down B's 32 columns
// (and, for A^T, down A's) keeps missing the cache: 1024x1024x1024 ran at 130 GFLOP/s (NN) and 90
// (TN), 4096-wide products at 57 and 81, against 200 and 150 at width 1000. The *_packed kernels
// serve those: a work-group of GEMM_G blocks down one column of blocks copies each GEMM_KT rows of
// B's columns (and of A^T's rows) into local memory, contiguous, between two barriers, and the
// blocks read them there: 200 and 157 GFLOP/s at 1024, 151 and 150 at 4096. Elsewhere the copy and
// the barriers cost more than they save (256x128x784: 191 GFLOP/s against 253), so the host picks
// them by leading dimension (gemm_blocks in src/runtime/cl_runtime.c). The same multiply-adds in the same
// order: the same bits either way.
#define GEMM_R 8
#define GEMM_BIAS 1
#define GEMM_BIAS_RELU 2

// y with the epilogue applied; b the bias of y's column(s).
#define GEMM_EPILOGUE(y, b)                                                                        \
    ((epilogue) == GEMM_BIAS_RELU ? fmax((y) + (b), 0.0f) : (epilogue) ? (y) + (b) : (y))

// A's element (row i, column kk) of op(A).
#define A_NN(i, kk) a[(size_t)(i) * lda + (kk)]
#define A_TN(i, kk) a[(size_t)(kk) * lda + (i)]

// The k loop of one block: ROW(r) the row of op(A) that block row r reads, LOAD_B(v, bk) the
// v-th 16 floats of B's row bk.
#define GEMM_LOOP(A_AT, NV, ROW, LOAD_B)                                                           \
    for (int kk = 0; kk < k; kk++) {                                                               \
        const __global float *bk = b + (size_t)kk * ldb;                                           \
        float16 brow[NV];                                                                          \
        _Pragma("unroll") for (int v = 0; v < NV; v++) brow[v] = LOAD_B(v, bk);                   \
        _Pragma("unroll") for (int r = 0; r < GEMM_R; r++)                                        \
        {                                                                                          \
            float16 x = (float16)A_AT(ROW(r), kk);                                                 \
            _Pragma("unroll") for (int v = 0; v < NV; v++) acc[r][v] =                            \
                fma(x, brow[v], acc[r][v]);                                                        \
        }                                                                                          \
    }

#define ROW_WHOLE(r) (i0 + (r))
#define ROW_EDGE(r) (i0 + min((r), rows - 1))
#define LOAD_WHOLE(v, bk) vload16((v), (bk))
#define LOAD_EDGE(v, bk) edge_row16((bk), 16 * (v), cols)

// 16 floats of row from q0 on, zeros from cols on.
float16 edge_row16(const __global float *row, int q0, int cols)
{
    float part[16];
    for (int q = 0; q < 16; q++)
        part[q] = q0 + q < cols ? row[q0 + q] : 0.0f;
    return vload16(0, part);
}

// Stores a block's acc (GEMM_R x NV float16) to C: alpha acc (+ beta C) and the epilogue, rows
// up to rows and columns up to cols, whole vectors when the block is whole.
#define GEMM_STORE(NV)                                                                             \
    bool whole = rows == GEMM_R && cols == 16 * NV;                                                \
    _Pragma("unroll") for (int r = 0; r < GEMM_R; r++)                                             \
        _Pragma("unroll") for (int v = 0; v < NV; v++) if (r < rows)                               \
        {                                                                                          \
            __global float *out = c + (size_t)r * ldc;                                             \
            float16 y = alpha * acc[r][v];                                                         \
            if (whole) {                                                                           \
                if (beta != 0.0f)                                                                  \
                    y += beta * vload16(v, out);                                                   \
                if (epilogue)                                                                      \
                    y = GEMM_EPILOGUE(y, vload16(0, bias + bias_off + j0 + 16 * v));               \
                vstore16(y, v, out);                                                               \
            } else {                                                                               \
                float part[16];                                                                    \
                vstore16(y, 0, part);                                                              \
                for (int q = 0; q < 16 && 16 * v + q < cols; q++) {                                \
                    __global float *o = out + 16 * v + q;                                          \
                    float e = beta != 0.0f ? part[q] + beta * *o : part[q];                        \
                    *o = GEMM_EPILOGUE(e, bias[bias_off + j0 + 16 * v + q]);                       \
                }                                                                                  \
            }                                                                                      \
        }

#define GEMM_KERNEL(NAME, A_AT, NV)                                                                \
    __kernel void NAME(int m, int n, int k, float alpha, float beta,                               \
                       __global const float *restrict a, ulong a_off, int lda, ulong a_stride,     \
                       __global const float *restrict b, ulong b_off, int ldb, ulong b_stride,     \
                       __global float *restrict c, ulong c_off, int ldc, ulong c_stride,           \
                       __global const float *restrict bias, ulong bias_off, int epilogue)          \
    {                                                                                              \
        int j0 = (int)get_global_id(0) * 16 * NV, i0 = (int)get_global_id(1) * GEMM_R;            \
        if (i0 >= m || j0 >= n)                                                                    \
            return;                                                                                \
        size_t p = get_global_id(2);                                                               \
        a += a_off + p * a_stride;                                                                 \
        b += b_off + p * b_stride + j0;                                                            \
        c += c_off + p * c_stride + (size_t)i0 * ldc + j0;                                         \
        int rows = min(GEMM_R, m - i0), cols = min(16 * NV, n - j0);                               \
        bool whole_block = rows == GEMM_R && cols == 16 * NV;                                      \
        float16 acc[GEMM_R][NV];                                                                   \
        _Pragma("unroll") for (int r = 0; r < GEMM_R; r++)                                        \
            _Pragma("unroll") for (int v = 0; v < NV; v++) acc[r][v] = (float16)0.0f;             \
        if (whole_block) {                                                                         \
            GEMM_LOOP(A_AT, NV, ROW_WHOLE, LOAD_WHOLE)                                             \
        } else {                                                                                   \
            GEMM_LOOP(A_AT, NV, ROW_EDGE, LOAD_EDGE)                                               \
        }                                                                                          \
        GEMM_STORE(NV)                                                                             \
    }

GEMM_KERNEL(gemm_nn_32, A_NN, 2)
GEMM_KERNEL(gemm_tn_32, A_TN, 2)
GEMM_KERNEL(gemm_nn_16, A_NN, 1)
GEMM_KERNEL(gemm_tn_16, A_TN, 1)

// The packed products (see the top): a work-group of GEMM_G blocks, all 32 columns wide, down one
// column of blocks; every GEMM_KT rows of k its items copy B's rows (zeros past the last column)
// and, for A^T, A's rows for the group's GEMM_G x GEMM_R rows of C (the last row again past m)
// into local memory, then multiply from there. Items past the last row copy and wait, and store
// nothing. Range: (column blocks, row blocks rounded up to GEMM_G, batch), work-groups (1, GEMM_G,
// 1).
#define GEMM_KT 64
#define GEMM_G 8
#define GEMM_GROWS (GEMM_G * GEMM_R)
#define A_PACKED_NN(r, kk) a[(size_t)(i0 + min((r), rows - 1)) * lda + k0 + (kk)]
#define A_PACKED_TN(r, kk) at[(kk) * GEMM_GROWS + lid * GEMM_R + (r)]

#define GEMM_PACKED_KERNEL(NAME, TA, A_AT)                                                         \
    __kernel __attribute__((reqd_work_group_size(1, GEMM_G, 1))) void NAME(                       \
        int m, int n, int k, float alpha, float beta, __global const float *restrict a,            \
        ulong a_off, int lda, ulong a_stride, __global const float *restrict b, ulong b_off,       \
        int ldb, ulong b_stride, __global float *restrict c, ulong c_off, int ldc,                 \
        ulong c_stride, __global const float *restrict bias, ulong bias_off, int epilogue)         \
    {                                                                                              \
        __local float16 bt[GEMM_KT * 2];                                                           \
        __local float at[TA ? GEMM_KT * GEMM_GROWS : 1];                                           \
        int lid = (int)get_local_id(1);                                                            \
        int j0 = (int)get_global_id(0) * 32, i0 = (int)get_global_id(1) * GEMM_R;                 \
        int g0 = (int)get_group_id(1) * GEMM_GROWS;                                                \
        size_t p = get_global_id(2);                                                               \
        a += a_off + p * a_stride;                                                                 \
        b += b_off + p * b_stride + j0;                                                            \
        c += c_off + p * c_stride + (size_t)i0 * ldc + j0;                                         \
        int rows = clamp(m - i0, 0, GEMM_R), cols = min(32, n - j0);                               \
        int span = min(GEMM_GROWS, m - g0);                                                        \
        float16 acc[GEMM_R][2];                                                                    \
        _Pragma("unroll") for (int r = 0; r < GEMM_R; r++) acc[r][0] = acc[r][1] = 0.0f;          \
        for (int k0 = 0; k0 < k; k0 += GEMM_KT) {                                                  \
            int kt = min(GEMM_KT, k - k0);                                                         \
            barrier(CLK_LOCAL_MEM_FENCE);                                                          \
            for (int kk = lid; kk < kt; kk += GEMM_G) {                                            \
                const __global float *bk = b + (size_t)(k0 + kk) * ldb;                            \
                bt[2 * kk] = cols == 32 ? vload16(0, bk) : edge_row16(bk, 0, cols);               \
                bt[2 * kk + 1] = cols == 32 ? vload16(1, bk) : edge_row16(bk, 16, cols);          \
                if (TA) {                                                                          \
                    const __global float *ak = a + (size_t)(k0 + kk) * lda + g0;                   \
                    __local float *dst = at + kk * GEMM_GROWS;                                     \
                    if (span == GEMM_GROWS) {                                                      \
                        _Pragma("unroll") for (int q = 0; q < GEMM_GROWS / 16; q++)               \
                            vstore16(vload16(q, ak), q, dst);                                      \
                    } else {                                                                       \
                        for (int q = 0; q < GEMM_GROWS; q++)                                       \
                            dst[q] = ak[min(q, span - 1)];                                         \
                    }                                                                              \
                }                                                                                  \
            }                                                                                      \
            barrier(CLK_LOCAL_MEM_FENCE);                                                          \
            if (rows > 0) {                                                                        \
                for (int kk = 0; kk < kt; kk++) {                                                  \
                    float16 b0 = bt[2 * kk], b1 = bt[2 * kk + 1];                                  \
                    _Pragma("unroll") for (int r = 0; r < GEMM_R; r++)                            \
                    {                                                                              \
                        float16 x = (float16)A_AT(r, kk);                                          \
                        acc[r][0] = fma(x, b0, acc[r][0]);                                         \
                        acc[r][1] = fma(x, b1, acc[r][1]);                                         \
                    }                                                                              \
                }                                                                                  \
            }                                                                                      \
        }                                                                                          \
        if (rows == 0)                                                                             \
            return;                                                                                \
        GEMM_STORE(2)                                                                              \
    }

GEMM_PACKED_KERNEL(gemm_nn_packed, 0, A_PACKED_NN)
GEMM_PACKED_KERNEL(gemm_tn_packed, 1, A_PACKED_TN)

// C (m, n) = alpha (the sum of the parts products P_p (m, n), p < parts, at p m n in partial)
// + beta C, then the epilogue: the second pass of a product split over k (own_gemm in src/runtime/cl_runtime.c), the parts
// added in order. Range: (n, m).
__kernel void gemm_sum_parts(__global const float *partial, int parts, int m, int n, float alpha,
                             float beta, __global float *c, ulong c_off, int ldc,
                             __global const float *bias, ulong bias_off, int epilogue)
{
    int j = get_global_id(0), i = get_global_id(1);
    if (j >= n || i >= m)
        return;
    size_t at = (size_t)i * n + j, mn = (size_t)m * n;
    float sum = partial[at];
    for (int p = 1; p < parts; p++)
        sum += partial[p * mn + at];
    __global float *out = c + c_off + (size_t)i * ldc + j;
    float y = beta != 0.0f ? alpha * sum + beta * *out : alpha * sum;
    *out = GEMM_EPILOGUE(y, bias[bias_off + j]);
}
