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
        bool whole = rows == GEMM_R && cols == 16 * NV;                                            \
        float16 acc[GEMM_R][NV];                                                                   \
        _Pragma("unroll") for (int r = 0; r < GEMM_R; r++)                                        \
            _Pragma("unroll") for (int v = 0; v < NV; v++) acc[r][v] = (float16)0.0f;             \
        if (whole) {                                                                               \
            GEMM_LOOP(A_AT, NV, ROW_WHOLE, LOAD_WHOLE)                                             \
        } else {                                                                                   \
            GEMM_LOOP(A_AT, NV, ROW_EDGE, LOAD_EDGE)                                               \
        }                                                                                          \
        _Pragma("unroll") for (int r = 0; r < GEMM_R; r++)                                        \
            _Pragma("unroll") for (int v = 0; v < NV; v++) if (r < rows)                          \
            {                                                                                      \
                __global float *out = c + (size_t)r * ldc;                                         \
                float16 y = alpha * acc[r][v];                                                     \
                if (whole) {                                                                       \
                    if (beta != 0.0f)                                                              \
                        y += beta * vload16(v, out);                                               \
                    if (epilogue)                                                                  \
                        y = GEMM_EPILOGUE(y, vload16(0, bias + bias_off + j0 + 16 * v));           \
                    vstore16(y, v, out);                                                           \
                } else {                                                                           \
                    float part[16];                                                                \
                    vstore16(y, 0, part);                                                          \
                    for (int q = 0; q < 16 && 16 * v + q < cols; q++) {                            \
                        __global float *o = out + 16 * v + q;                                      \
                        float e = beta != 0.0f ? part[q] + beta * *o : part[q];                    \
                        *o = GEMM_EPILOGUE(e, bias[bias_off + j0 + 16 * v + q]);                   \
                    }                                                                              \
                }                                                                                  \
            }                                                                                      \
    }

GEMM_KERNEL(gemm_nn_32, A_NN, 2)
GEMM_KERNEL(gemm_tn_32, A_TN, 2)
GEMM_KERNEL(gemm_nn_16, A_NN, 1)
GEMM_KERNEL(gemm_tn_16, A_TN, 1)

// C (m, n) = alpha (the sum of the parts products P_p (m, n), p < parts, at p m n in partial)
// + beta C, then the epilogue: the second pass of a product split over k (own_gemm in src/cl_runtime.c), the parts
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
