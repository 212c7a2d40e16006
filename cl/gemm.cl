// clvae's own matrix products, the default on PoCL's CPU device: C (m, n) = alpha op(A) B +
// beta C, row-major, op(A) = A (gemm_nn_*) or A^T with A stored (k, m) (gemm_tn_*); dimension 2
// of the range is a batch of such products, strides in floats. An epilogue may follow, folded
// into the store: GEMM_BIAS adds bias[bias_off + j] to column j, GEMM_BIAS_RELU then takes
// max(0, .) (what bias_forward and bias_relu_forward of dense.cl do in a second pass, to the same
// bits); GEMM_MASK zeroes the product where bias (m, n, at bias_off, rows ldc apart) is not above
// 0 before beta C is added (a ReLU layer's output masking its gradient, bias_backward's mask). The
// *_sum kernels also sum B's columns over k into bias[bias_off + j] (GEMM_COLSUM; GEMM_COLSUM_ADD
// adds to it): a layer's bias gradient beside its weight gradient, the rows in order as
// bias_backward adds them, so the same bits in the launch that already reads dy. Range: (column
// blocks, row blocks, batch).
//
// Each work-item keeps a GEMM_R x (16 NV) block of C in float16 registers and walks k: a step
// loads NV rows of 16 from B, broadcasts GEMM_R values of A and does GEMM_R NV vector
// multiply-adds, the register-blocked loop of a CPU BLAS. No local memory and no barrier: PoCL runs
// a work-group's items as a loop, and a barrier splits that loop and spills what each item holds,
// which is why CLBlast's kernels reach 30-70 GFLOP/s there and these 120-300 (2 cores with
// AVX-512). A block that reaches past the last row reads that row again and stores only its own
// rows, reading B element by element, zeros past the last column; a block of whole rows that
// reaches past the last column loads B's rows whole all the same, running on into the next row
// (lanes past the last column are never stored), up to the rows where that would leave B, which
// it too reads element by element (every row so, the head's 256x20x128 ran at 45-48 us against
// 30-31; the same bits).
//
// Rows of an operand a multiple of 4 KiB apart (a leading dimension a multiple of 1024 floats:
// widths 1024, 2048, 4096) all fall in the same cache sets, so a block's walk down B's 32 columns
// (and, for A^T, down A's) keeps missing the cache: 1024x1024x1024 ran at 130 GFLOP/s (NN) and 90
// (TN), 4096-wide products at 57 and 81, against 200 and 150 at width 1000. The *_packed kernels
// serve those: a work-group of GEMM_G blocks down one column of blocks copies each GEMM_KT rows of
// B's columns (and of A^T's rows) into local memory, contiguous, between two barriers, and the
// blocks read them there: 200 and 157 GFLOP/s at 1024, 151 and 150 at 4096. Elsewhere the copy and
// the barriers cost more than they save (256x128x784: 191 GFLOP/s against 253), so the host picks
// them by leading dimension (gemm_blocks in src/runtime/cl_runtime.c). The same multiply-adds in
// the same order: the same bits either way.
#define GEMM_R 8
#define GEMM_KT 64 // the packed kernels' rows of k in local memory
#define GEMM_G 8   // blocks a work-group of the packed and pair kernels
#define GEMM_BIAS 1
#define GEMM_BIAS_RELU 2
#define GEMM_MASK 3
#define GEMM_COLSUM 4
#define GEMM_COLSUM_ADD 5
#define GEMM_SAMPLER 6
#define GEMM_COLSUM_ADAM 7 // the *_sum blocks: Adam's step on the gradient and the column sums

// y with the epilogue applied; b the bias of y's column(s), or the mask of y's element(s).
#define GEMM_EPILOGUE(y, b)                                                                        \
    ((epilogue) == GEMM_BIAS_RELU                              ? fmax((y) + (b), 0.0f)             \
     : (epilogue) == GEMM_BIAS || (epilogue) == GEMM_BIAS_RELU ? (y) + (b)                         \
                                                               : (y))
#define GEMM_MASKED16(y, b) select((float16)0.0f, (y), (b) > 0.0f)
#define GEMM_MASKED(y, b) ((b) > 0.0f ? (y) : 0.0f)
// Where row r of the block finds its epilogue's operand: the bias row, or the mask's row.
#define GEMM_EP_ROW(row)                                                                           \
    (bias + bias_off + (epilogue == GEMM_MASK || epilogue == GEMM_SAMPLER ? (size_t)(row)*ldc : 0))

// A's element (row i, column kk) of op(A).
#define A_NN(i, kk) a[(size_t)(i)*lda + (kk)]
#define A_TN(i, kk) a[(size_t)(kk)*lda + (i)]

// Software prefetch on PoCL's CPU device (clrt_build defines CLVAE_PREFETCH there, a distance in
// rows of k; other compilers may reject __builtin_prefetch): each step of a block's k loop asks for
// the rows of B, and of A^T, CLVAE_PREFETCH rows ahead. The hardware's prefetchers follow A's rows
// in an NN product (each row read in order), not a walk down 32 or 128 bytes of each of k rows
// kilobytes apart (B's, and A^T's), each of which missed the cache: the TN products of the default
// model's step took 13-15% less time with it, its NN products the same (2-core Xeon, PoCL 3.1,
// 2026-12-05); 16 rows ran as 32, 64 slower. A prefetch never faults, so one past an operand's end
// is harmless; the results are the same bits.
#ifdef CLVAE_PREFETCH
#define GEMM_PREFETCH(p) __builtin_prefetch(p)
#else
#define CLVAE_PREFETCH 0
#define GEMM_PREFETCH(p)
#endif
#define A_NN_PREFETCH(kk)
#define A_TN_PREFETCH(kk) GEMM_PREFETCH(a + (size_t)(kk)*lda + i0)
#define A_GATHER_PREFETCH(kk)

// For every row r of the block, op(A)'s value VALUE (an expression of r) times B's row brow
// (NV vectors of 16) added to the row's sums.
#define GEMM_FMA_ROWS(NV, brow, VALUE)                                                             \
    _Pragma("unroll") for (int r = 0; r < GEMM_R; r++)                                             \
    {                                                                                              \
        float16 x = (float16)(VALUE);                                                              \
        _Pragma("unroll") for (int v = 0; v < NV; v++) acc[r][v] = fma(x, brow[v], acc[r][v]);     \
    }

// Which row of blocks of a product of m rows stores the transposed copy of B's rows 16 chunk ..
// 16 chunk + 15 (see GEMM_BLOCK): chunks spread over the work-groups of GEMM_G row blocks first,
// so that no group does more than its share.
int gemm_bt_owner(int chunk, int m)
{
    int blocks = (m + GEMM_R - 1) / GEMM_R, groups = (blocks + GEMM_G - 1) / GEMM_G;
    return (chunk % groups * GEMM_G + chunk / groups % GEMM_G) % blocks;
}

// Whether row block rb of a product of m rows stores any chunk of B^T (k rows of B).
bool gemm_bt_owns(int rb, int m, int k)
{
    for (int chunk = 0; chunk < (k + 15) / 16; chunk++)
        if (gemm_bt_owner(chunk, m) == rb)
            return true;
    return false;
}

// One stage of transpose16: for each pair of rows i, i + d (i & d clear), the block of lanes
// with bit d set in row i swapped with the block with bit d clear in row i + d.
#define TRANSPOSE_STAGE(t, d, lo, hi)                                                              \
    _Pragma("unroll") for (int i = 0; i < 16; i++) if (!(i & (d)))                                 \
    {                                                                                              \
        float16 a = t[i], b = t[i + (d)];                                                          \
        t[i] = shuffle2(a, b, lo);                                                                 \
        t[i + (d)] = shuffle2(a, b, hi);                                                           \
    }

// t (16 rows of 16) transposed in place: four stages of 16 two-vector shuffles.
void transpose16(float16 *t)
{
    TRANSPOSE_STAGE(t, 8, ((uint16)(0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23)),
                    ((uint16)(8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31)))
    TRANSPOSE_STAGE(t, 4, ((uint16)(0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27)),
                    ((uint16)(4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31)))
    TRANSPOSE_STAGE(t, 2, ((uint16)(0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29)),
                    ((uint16)(2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31)))
    TRANSPOSE_STAGE(t, 1, ((uint16)(0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30)),
                    ((uint16)(1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31)))
}

// Rows kb .. kb + count - 1 of a block's columns of B (tile[v][q]: the v-th 16 columns of row kb
// + q) stored as columns of B^T (bt at the block's first column, rows ldbt apart): whole 16 x 16
// tiles transposed in registers and stored 16 floats at once, a partial tile a float at a time.
void gemm_store_bt(float16 (*tile)[16], __global float *bt, int ldbt, int kb, int count, int cols)
{
    for (int v = 0; v * 16 < cols; v++) {
        __global float *dst = bt + (size_t)(16 * v) * ldbt + kb;
        int width = min(16, cols - 16 * v);
        if (count == 16) {
            float16 t[16];
            _Pragma("unroll") for (int q = 0; q < 16; q++) t[q] = tile[v][q];
            transpose16(t);
            for (int j = 0; j < width; j++)
                vstore16(t[j], 0, dst + (size_t)j * ldbt);
        } else {
            for (int q = 0; q < count; q++) {
                float part[16];
                vstore16(tile[v][q], 0, part);
                for (int j = 0; j < width; j++)
                    dst[(size_t)j * ldbt + q] = part[j];
            }
        }
    }
}

// The k loop of one block over rows K0 .. K1 - 1 of B: ROW(r) the row of op(A) that block row r
// reads, LOAD_B(v, bk) the v-th 16 floats of B's row bk; with STORE, those rows (16 at most) kept
// in tile for gemm_store_bt.
#define GEMM_LOOP(A_AT, NV, ROW, LOAD_B, SUM, STORE, K0, K1)                                       \
    for (int kk = (K0); kk < (K1); kk++) {                                                         \
        const __global float *bk = b + (size_t)kk * ldb;                                           \
        GEMM_PREFETCH(bk + (size_t)CLVAE_PREFETCH * ldb);                                          \
        if (NV == 2)                                                                               \
            GEMM_PREFETCH(bk + (size_t)CLVAE_PREFETCH * ldb + 16);                                 \
        A_AT##_PREFETCH(kk + CLVAE_PREFETCH);                                                      \
        float16 brow[NV];                                                                          \
        _Pragma("unroll") for (int v = 0; v < NV; v++) brow[v] = LOAD_B(v, bk);                    \
        if (STORE)                                                                                 \
            _Pragma("unroll") for (int v = 0; v < NV; v++) tile[v][kk - (K0)] = brow[v];           \
        if (SUM)                                                                                   \
            _Pragma("unroll") for (int v = 0; v < NV; v++) colsum[v] += brow[v];                   \
        GEMM_FMA_ROWS(NV, brow, A_AT(ROW(r), kk))                                                  \
    }

// The k loop of a block that stores chunks of B^T: 16 rows of k at a time, those gemm_bt_owner
// gives it through the storing loop and then gemm_store_bt, the others through the plain one (the
// storing loop over the whole of k ran the 256x3136x256 product at 2.4 ms against 2.0 without
// the copy).
#define GEMM_LOOP_STORING(A_AT, NV, ROW, LOAD_B, SUM)                                              \
    for (int k0 = 0; k0 < k; k0 += 16) {                                                           \
        int k1 = min(k, k0 + 16);                                                                  \
        if (gemm_bt_owner(k0 / 16, m) == i0 / GEMM_R) {                                            \
            GEMM_LOOP(A_AT, NV, ROW, LOAD_B, SUM, 1, k0, k1)                                       \
            gemm_store_bt(tile, bt, ldbt, k0, k1 - k0, cols);                                      \
        } else {                                                                                   \
            GEMM_LOOP(A_AT, NV, ROW, LOAD_B, SUM, 0, k0, k1)                                       \
        }                                                                                          \
    }

#define ROW_WHOLE(r) (i0 + (r))
#define ROW_EDGE(r) (i0 + min((r), rows - 1))
#define LOAD_WHOLE(v, bk) vload16((v), (bk))
#define LOAD_EDGE(v, bk) edge_row16((bk), 16 * (v), cols)

// The first left (0 to 3) floats of row, zeros after.
float4 edge_row4(const __global float *row, int left)
{
    return (float4)(left > 0 ? row[0] : 0.0f, left > 1 ? row[1] : 0.0f, left > 2 ? row[2] : 0.0f,
                    0.0f);
}

// The first left (0 to 7) floats of row, zeros after.
float8 edge_row8(const __global float *row, int left)
{
    return left >= 4 ? (float8)(vload4(0, row), edge_row4(row + 4, left - 4))
                     : (float8)(edge_row4(row, left), (float4)0.0f);
}

// 16 floats of row from q0 on, zeros from cols on: vector loads of 8 and 4 where they fit (a
// float at a time, into an array, ran the 256x20x128 product at 18 GFLOP/s against 35).
float16 edge_row16(const __global float *row, int q0, int cols)
{
    int left = cols - q0;
    row += q0;
    if (left >= 16)
        return vload16(0, row);
    if (left >= 8)
        return (float16)(vload8(0, row), edge_row8(row + 8, left - 8));
    return (float16)(edge_row8(row, max(left, 0)), (float8)0.0f);
}

// GEMM_SAMPLER: the product is dz (rows, latent = n), the gradient of the sample z = mu +
// noise exp(logvar / 2) eps, and the store writes what reparameterize_backward (sampler.cl) would
// from it, to the same bits: dml (rows, 2 latent, C's place) = [dz + beta mu | dz eps noise sd / 2
// + beta (sd^2 - 1) / 2], sd = exp(logvar / 2), from ml (the bias operand, rows ldc apart) and eps
// (rows, latent). y: 16 values of a row from column j on; out, ml: that row's column j; eps: its
// row's column j; cols: the columns left from j.
void gemm_store_sampler(float16 y, __global float *out, __global const float *ml,
                        __global const float *eps, int cols, int latent, float beta_scale,
                        float noise_scale)
{
    float part[16];
    vstore16(y, 0, part);
    for (int q = 0; q < 16 && q < cols; q++) {
        float dz = part[q], mu = ml[q], logvar = ml[q + latent];
        float sd = exp(0.5f * logvar);
        out[q] = dz + beta_scale * mu;
        out[q + latent] =
            dz * eps[q] * noise_scale * 0.5f * sd + beta_scale * 0.5f * (sd * sd - 1.0f);
    }
}

// Stores a block's acc (GEMM_R x NV float16) to C: alpha acc (+ beta C) and the epilogue, rows
// up to rows and columns up to cols, whole vectors when the block is whole.
#define GEMM_STORE(NV)                                                                             \
    bool whole = rows == GEMM_R && cols == 16 * NV && epilogue != GEMM_SAMPLER;                    \
    _Pragma("unroll") for (int r = 0; r < GEMM_R; r++)                                             \
        _Pragma("unroll") for (int v = 0; v < NV; v++) if (r < rows)                               \
    {                                                                                              \
        __global float *out = c + (size_t)r * ldc;                                                 \
        float16 y = alpha * acc[r][v];                                                             \
        __global const float *ep = GEMM_EP_ROW(i0 + r) + j0 + 16 * v;                              \
        if (whole) {                                                                               \
            if (epilogue == GEMM_MASK)                                                             \
                y = GEMM_MASKED16(y, vload16(0, ep));                                              \
            if (beta != 0.0f)                                                                      \
                y += beta * vload16(v, out);                                                       \
            if (epilogue == GEMM_BIAS || epilogue == GEMM_BIAS_RELU)                               \
                y = GEMM_EPILOGUE(y, vload16(0, ep));                                              \
            vstore16(y, v, out);                                                                   \
        } else if (epilogue == GEMM_SAMPLER) {                                                     \
            gemm_store_sampler(y, out + 16 * v, ep, eps + (size_t)(i0 + r) * n + j0 + 16 * v,      \
                               cols - 16 * v, n, s_beta, s_noise);                                 \
        } else {                                                                                   \
            float part[16];                                                                        \
            vstore16(y, 0, part);                                                                  \
            for (int q = 0; q < 16 && 16 * v + q < cols; q++) {                                    \
                __global float *o = out + 16 * v + q;                                              \
                float p = epilogue == GEMM_MASK ? GEMM_MASKED(part[q], ep[q]) : part[q];           \
                float e = beta != 0.0f ? p + beta * *o : p;                                        \
                *o = epilogue && epilogue != GEMM_MASK ? GEMM_EPILOGUE(e, ep[q]) : e;              \
            }                                                                                      \
        }                                                                                          \
    }

// Stores the column sums of a *_sum kernel's block (blocks of the first row only) to
// bias[bias_off + j], added to what is there for GEMM_COLSUM_ADD; for GEMM_COLSUM_ADAM, Adam's
// step on the parameter there (ap, am, av the parameters and moments, laid out as the gradients).
#define GEMM_STORE_COLSUM(NV)                                                                      \
    if (i0 == 0)                                                                                   \
        _Pragma("unroll") for (int v = 0; v < NV; v++)                                             \
        {                                                                                          \
            float part[16];                                                                        \
            vstore16(colsum[v], 0, part);                                                          \
            for (int q = 0; q < 16 && 16 * v + q < cols; q++) {                                    \
                size_t at = bias_off + j0 + 16 * v + q;                                            \
                __global float *o = bias + at;                                                     \
                if (epilogue == GEMM_COLSUM_ADAM)                                                  \
                    adam_value(part[q], ap + at, am + at, av + at, h);                             \
                else                                                                               \
                    *o = epilogue == GEMM_COLSUM_ADD ? *o + part[q] : part[q];                     \
            }                                                                                      \
        }

// GEMM_COLSUM_ADAM's store of a block: Adam's step (adam_values16, adam_value of cl/adam.cl, with
// its scalars h) on the parameters and moments at the block's gradients (ap, am, av laid out as
// the gradients, C at c_index), each gradient as GEMM_STORE would store it (alpha 1, beta 0),
// rather than the gradient itself: the step that adam_update16 takes after the product, to the
// same bits.
#define GEMM_STORE_ADAM(NV)                                                                        \
    _Pragma("unroll") for (int r = 0; r < GEMM_R; r++)                                             \
        _Pragma("unroll") for (int v = 0; v < NV; v++) if (r < rows)                               \
    {                                                                                              \
        size_t at = c_index + (size_t)(i0 + r) * ldc + j0 + 16 * v;                                \
        if (cols == 16 * NV) {                                                                     \
            adam_values16(acc[r][v], ap + at, am + at, av + at, h);                                \
        } else {                                                                                   \
            float part[16];                                                                        \
            vstore16(acc[r][v], 0, part);                                                          \
            for (int q = 0; q < 16 && 16 * v + q < cols; q++)                                      \
                adam_value(part[q], ap + at + q, am + at + q, av + at + q, h);                     \
        }                                                                                          \
    }

// One block of C at row i0 and column j0: the body of every product kernel. a, b and c are at
// their product's start; bt, when ldbt > 0 (NN only, CAN_STORE), receives B's columns j0.. as
// rows, B^T (n, k) with rows ldbt apart: the transposed copy of a layer's weight that its
// backward's input gradient reads, made as the forward product reads the weight (the same floats:
// the same bits as transpose_tiles), each 16 rows of k by the block gemm_bt_owner names (the
// first row of blocks alone, a float at a time: 394 us against 350 for 256x784x128). eps, s_beta,
// s_noise: GEMM_SAMPLER's operands; ap, am, av, h, c_index: GEMM_COLSUM_ADAM's (the *_sum blocks).
#define GEMM_BLOCK(NAME, A_AT, NV, SUM, CAN_STORE)                                                 \
    void NAME(int j0, int i0, int m, int n, int k, float alpha, float beta,                        \
              __global const float *restrict a, int lda, __global const float *restrict b,         \
              int ldb, __global float *restrict c, int ldc, __global float *bias, ulong bias_off,  \
              int epilogue, __global float *bt, int ldbt, __global const float *eps, float s_beta, \
              float s_noise, __global float *ap, __global float *am, __global float *av, float8 h, \
              ulong c_index)                                                                       \
    {                                                                                              \
        b += j0;                                                                                   \
        c += (size_t)i0 * ldc + j0;                                                                \
        int rows = min(GEMM_R, m - i0), cols = min(16 * NV, n - j0);                               \
        bool whole_block = rows == GEMM_R && cols == 16 * NV;                                      \
        bool store = CAN_STORE && ldbt > 0 && gemm_bt_owns(i0 / GEMM_R, m, k);                     \
        float16 tile[2][16];                                                                       \
        if (store)                                                                                 \
            bt += (size_t)j0 * ldbt;                                                               \
        float16 acc[GEMM_R][NV], colsum[NV];                                                       \
        _Pragma("unroll") for (int r = 0; r < GEMM_R; r++)                                         \
            _Pragma("unroll") for (int v = 0; v < NV; v++) acc[r][v] = (float16)0.0f;              \
        _Pragma("unroll") for (int v = 0; v < NV; v++) colsum[v] = (float16)0.0f;                  \
        /* A block of whole rows loads B's rows kk < kw whole even where it ends before 16 NV */   \
        /* columns: the loads run on into row kk + 1, inside B, and fill lanes no store reads. */  \
        int kw = rows < GEMM_R     ? 0                                                             \
                 : cols == 16 * NV ? k                                                             \
                                   : max(0, k - (16 * NV - cols + ldb - 1) / ldb);                 \
        if (!store) {                                                                              \
            GEMM_LOOP(A_AT, NV, ROW_WHOLE, LOAD_WHOLE, SUM, 0, 0, kw)                              \
            GEMM_LOOP(A_AT, NV, ROW_EDGE, LOAD_EDGE, SUM, 0, kw, k)                                \
        } else if (whole_block) {                                                                  \
            GEMM_LOOP_STORING(A_AT, NV, ROW_WHOLE, LOAD_WHOLE, SUM)                                \
        } else {                                                                                   \
            GEMM_LOOP_STORING(A_AT, NV, ROW_EDGE, LOAD_EDGE, SUM)                                  \
        }                                                                                          \
        if (SUM && epilogue == GEMM_COLSUM_ADAM) {                                                 \
            GEMM_STORE_ADAM(NV)                                                                    \
        } else {                                                                                   \
            GEMM_STORE(NV)                                                                         \
        }                                                                                          \
        if (SUM) {                                                                                 \
            GEMM_STORE_COLSUM(NV)                                                                  \
        }                                                                                          \
    }

GEMM_BLOCK(gemm_block_nn_32, A_NN, 2, 0, 1)
GEMM_BLOCK(gemm_block_nn_16, A_NN, 1, 0, 1)
GEMM_BLOCK(gemm_block_tn_32, A_TN, 2, 0, 0)
GEMM_BLOCK(gemm_block_tn_16, A_TN, 1, 0, 0)
GEMM_BLOCK(gemm_block_tn_32_sum, A_TN, 2, 1, 0)
GEMM_BLOCK(gemm_block_tn_16_sum, A_TN, 1, 1, 0)

#define GEMM_KERNEL(NAME, BLOCK, NV)                                                               \
    __kernel void NAME(int m, int n, int k, float alpha, float beta,                               \
                       __global const float *restrict a, ulong a_off, int lda, ulong a_stride,     \
                       __global const float *restrict b, ulong b_off, int ldb, ulong b_stride,     \
                       __global float *restrict c, ulong c_off, int ldc, ulong c_stride,           \
                       __global float *bias, ulong bias_off, int epilogue, __global float *bt,     \
                       ulong bt_off, int ldbt)                                                     \
    {                                                                                              \
        int j0 = (int)get_global_id(0) * 16 * NV, i0 = (int)get_global_id(1) * GEMM_R;             \
        if (i0 >= m || j0 >= n)                                                                    \
            return;                                                                                \
        size_t p = get_global_id(2);                                                               \
        BLOCK(j0, i0, m, n, k, alpha, beta, a + a_off + p * a_stride, lda,                         \
              b + b_off + p * b_stride, ldb, c + c_off + p * c_stride, ldc, bias, bias_off,        \
              epilogue, bt + bt_off, ldbt, 0, 0.0f, 0.0f, 0, 0, 0, (float8)0.0f, 0);               \
    }

GEMM_KERNEL(gemm_nn_32, gemm_block_nn_32, 2)
GEMM_KERNEL(gemm_tn_32, gemm_block_tn_32, 2)
GEMM_KERNEL(gemm_nn_16, gemm_block_nn_16, 1)
GEMM_KERNEL(gemm_tn_16, gemm_block_tn_16, 1)
GEMM_KERNEL(gemm_tn_32_sum, gemm_block_tn_32_sum, 2)
GEMM_KERNEL(gemm_tn_16_sum, gemm_block_tn_16_sum, 1)

// Bytes from .. to - 1 of an image's row src as floats / 255 into dst, 16 at once where they fit
// (see gemm_nn_32_gather): the gathered products' x, the floats gather_images (data.cl) writes.
void gather_floats(__global const uchar *src, __global float *dst, int from, int to)
{
    int q = from;
    for (; q + 16 <= to; q += 16)
        vstore16(convert_float16(vload16(0, src + q)) * (1.0f / 255.0f), 0, dst + q);
    for (; q < to; q++)
        dst[q] = (float)src[q] * (1.0f / 255.0f);
}

// One product of the chain after the Gaussian head's sample in gemm_nn_reparameterize: C (m, n) =
// A B with the epilogue, B^T kept at bt when ldbt > 0, A the rows of the product before (z for
// the first). n 0: none, and none after it.
#define GEMM_CHAIN_ARGS(i)                                                                         \
    int n##i, __global const float *restrict b##i, ulong b##i##_off, int ldb##i,                   \
        __global float *restrict c##i, ulong c##i##_off, int ldc##i, __global float *bias##i,      \
        ulong bias##i##_off, int epilogue##i, __global float *bt##i, ulong bt##i##_off, int ldbt##i

// The Gaussian head's product and the sample in one launch: C (m, n) = A B + bias (ml, n = 2
// latent <= 32, one column of blocks; B^T kept as the product kernels keep it), then each block's
// rows through reparameterize_row (sampler.cl), which reads the ml its block just stored: z, eps
// and the KL as the reparameterize kernel writes them. Then up to three products on the same
// rows, each reading what the one before just wrote (the decoder's dense layers, z first: C2 =
// z B2, C3 = C2 B3, C4 = C3 B4, GEMM_CHAIN_ARGS), their blocks of 32 columns in turn, each as
// gemm_nn_32 runs it; and with lik a LIKELIHOOD_* kind (-1: none), the last product's rows (the
// decoder's output) through that likelihood's *_rows16 row (likelihood_row16: its gradient into
// ldout, each row's sum into lrec[lrec_offset + r]), as the kernel of it runs them. With n1 > 0,
// first the encoder's first layer on the gathered batch: each block's rows, images
// gindex[gstart + i] of gdata ((count, gk) bytes) / 255, into gx (m, gk) as gemm_nn_32_gather
// stores them, and C1 (m, n1) = gx B1 with epilogue1 as that kernel computes it (the same floats
// in the same order): the head's A (k = n1; a and lda unused). The same bits as the launches of
// each; a block's rows stay in its core's cache from one product to the next (the default
// model's head, decoder, output and likelihood: one launch for four, 457-467 against 511-550 us
// for the output product and the likelihood alone). Range: (1, row blocks).
__kernel void gemm_nn_reparameterize(
    int m, int n, int k, __global const float *restrict a, ulong a_off, int lda,
    __global const float *restrict b, ulong b_off, int ldb, __global float *restrict c, ulong c_off,
    int ldc, __global float *bias, ulong bias_off, __global float *bt, ulong bt_off, int ldbt,
    __global float *z, __global float *eps, __global float *kl, int kl_offset, int row0,
    uint seed_lo, uint seed_hi, uint step_lo, uint step_hi, uint stream, float noise_scale,
    GEMM_CHAIN_ARGS(2), GEMM_CHAIN_ARGS(3), GEMM_CHAIN_ARGS(4), int lik,
    __global const float *restrict lx, __global float *ldout, __global float *lterms, int ldim,
    int lchannels, float lscale, __global float *lrec, int lrec_offset, GEMM_CHAIN_ARGS(1), int gk,
    __global const uchar *restrict gdata, __global const int *restrict gindex, int gstart,
    __global float *gx)
{
    int i0 = (int)get_global_id(1) * GEMM_R;
    if (i0 >= m)
        return;
    for (int r = i0; n1 > 0 && r < min(i0 + GEMM_R, m); r++)
        gather_floats(gdata + (size_t)gindex[gstart + r] * (size_t)gk, gx + (size_t)r * gk, 0, gk);
    // Each stage's operands, the first layer's first: stage 0 the head (then the sample of its
    // rows), stages 1-3 the chain. One call of the block for every product (compilers that
    // inline it, llvmpipe's, take minutes a copy).
    __global const float *sb[5] = {b1 + b1_off, b + b_off, b2 + b2_off, b3 + b3_off, b4 + b4_off};
    __global float *sc[5] = {c1 + c1_off, c + c_off, c2 + c2_off, c3 + c3_off, c4 + c4_off};
    __global float *sbias[5] = {bias1, bias, bias2, bias3, bias4};
    __global float *sbt[5] = {bt1 + bt1_off, bt + bt_off, bt2 + bt2_off, bt3 + bt3_off,
                              bt4 + bt4_off};
    ulong sbias_off[5] = {bias1_off, bias_off, bias2_off, bias3_off, bias4_off};
    int sn[5] = {n1, n, n2, n3, n4}, sldb[5] = {ldb1, ldb, ldb2, ldb3, ldb4};
    int sldc[5] = {ldc1, ldc, ldc2, ldc3, ldc4}, sldbt[5] = {ldbt1, ldbt, ldbt2, ldbt3, ldbt4};
    int sep[5] = {epilogue1, GEMM_BIAS, epilogue2, epilogue3, epilogue4};
    __global const float *sa = n1 > 0 ? gx : a + a_off;
    int sk = n1 > 0 ? gk : k, slda = n1 > 0 ? gk : lda, s = n1 > 0 ? 0 : 1;
    for (; s < 5 && sn[s] > 0; s++) {
        for (int j0 = 0; j0 < sn[s]; j0 += 32)
            gemm_block_nn_32(j0, i0, m, sn[s], sk, 1.0f, 0.0f, sa, slda, sb[s], sldb[s], sc[s],
                             sldc[s], sbias[s], sbias_off[s], sep[s], sbt[s], sldbt[s], 0, 0.0f,
                             0.0f, 0, 0, 0, (float8)0.0f, 0);
        for (int r = i0; s == 1 && r < min(i0 + GEMM_R, m); r++)
            reparameterize_row(r, c + c_off, z, eps, kl, kl_offset, row0, n / 2, seed_lo, seed_hi,
                               step_lo, step_hi, stream, noise_scale);
        // The next product reads these rows (z after the head).
        sa = s == 1 ? z : sc[s];
        slda = s == 1 ? n / 2 : sldc[s];
        sk = s == 1 ? n / 2 : sn[s];
    }
    __global float *last = sc[s - 1]; // the last product's C: the decoder's output
    for (int r = i0; lik >= 0 && r < min(i0 + GEMM_R, m); r++)
        likelihood_row16(lik, r, last, lx, ldout, lterms, ldim, lchannels, lscale, lrec,
                         lrec_offset);
}

// A layer's backward in one launch: product 0, its weight and bias gradients C0 (m0, n0) = A0^T
// B0 + beta0 C0 with B0's column sums (gemm_tn_32_sum's), and product 1, its input gradient C1
// (m1, n1) = A1 B1 + beta1 C1 with epilogue1 (none, GEMM_MASK, or GEMM_SAMPLER with eps, s_beta,
// s_noise). Both read dy, neither what the other writes. The same blocks as the kernels of each,
// so the same bits. Range: (groups0 + the groups of product 1) x GEMM_G, work-groups of GEMM_G
// blocks down one column of blocks; cblocks0 and cblocks1 each product's columns of blocks.
__kernel __attribute__((reqd_work_group_size(GEMM_G, 1, 1))) void
gemm_pair(int groups0, int cblocks0, int cblocks1, int m0, int n0, int k0, float beta0,
          __global const float *restrict a0, ulong a0_off, int lda0,
          __global const float *restrict b0, ulong b0_off, int ldb0, __global float *restrict c0,
          ulong c0_off, int ldc0, __global float *bias0, ulong bias0_off, int epilogue0, int m1,
          int n1, int k1, float beta1, __global const float *restrict a1, ulong a1_off, int lda1,
          __global const float *restrict b1, ulong b1_off, int ldb1, __global float *restrict c1,
          ulong c1_off, int ldc1, __global float *bias1, ulong bias1_off, int epilogue1,
          __global const float *eps, float s_beta, float s_noise)
{
    int g = (int)get_group_id(0), lid = (int)get_local_id(0);
    if (g < groups0) {
        int j0 = g % cblocks0 * 32, i0 = (g / cblocks0 * GEMM_G + lid) * GEMM_R;
        if (i0 < m0)
            gemm_block_tn_32_sum(j0, i0, m0, n0, k0, 1.0f, beta0, a0 + a0_off, lda0, b0 + b0_off,
                                 ldb0, c0 + c0_off, ldc0, bias0, bias0_off, epilogue0, 0, 0, 0,
                                 0.0f, 0.0f, 0, 0, 0, (float8)0.0f, 0);
        return;
    }
    g -= groups0;
    int j0 = g % cblocks1 * 32, i0 = (g / cblocks1 * GEMM_G + lid) * GEMM_R;
    if (i0 < m1)
        gemm_block_nn_32(j0, i0, m1, n1, k1, 1.0f, beta1, a1 + a1_off, lda1, b1 + b1_off, ldb1,
                         c1 + c1_off, ldc1, bias1, bias1_off, epilogue1, 0, 0, eps, s_beta,
                         s_noise, 0, 0, 0, (float8)0.0f, 0);
}

// The last launch of a training step with Adam: the first layer's weight and bias gradients,
// C (m, n) = A^T B and B's column sums (n > 16: gemm_tn_32_sum's blocks, work-groups of GEMM_G
// blocks down one column of blocks, groups0 of them), taking Adam's step on their parameters as
// each block finishes them (GEMM_COLSUM_ADAM) rather than storing them, and, in the work-groups
// past those, adam_update16's step, 16 values at a time, a run of them a work-item, on every other
// parameter, values [0, lo) and [hi, count), whose gradients the launches before finished. C is
// the gradients at c_off (the bias's at bias_off); params, m1, m2 the parameters and moments laid
// out as they are; h the step's scalars (adam_values16). The gradient of those two is never
// stored: the same bits as the product, then adam_update16, in one launch and one pass over the
// parameters fewer.
// Range: (groups0 + the Adam groups) x GEMM_G.
__kernel __attribute__((reqd_work_group_size(GEMM_G, 1, 1))) void
gemm_tn_sum_adam(int groups0, int cblocks, int m, int n, int k, __global const float *restrict a,
                 ulong a_off, int lda, __global const float *restrict b, ulong b_off, int ldb,
                 __global float *restrict grads, ulong c_off, int ldc, ulong bias_off,
                 __global float *params, __global float *m1, __global float *m2, float8 h, int lo,
                 int hi, int count)
{
    int g = (int)get_group_id(0), lid = (int)get_local_id(0);
    if (g < groups0) {
        int j0 = g % cblocks * 32, i0 = (g / cblocks * GEMM_G + lid) * GEMM_R;
        if (i0 < m)
            gemm_block_tn_32_sum(j0, i0, m, n, k, 1.0f, 0.0f, a + a_off, lda, b + b_off, ldb,
                                 grads + c_off, ldc, grads, bias_off, GEMM_COLSUM_ADAM, 0, 0, 0,
                                 0.0f, 0.0f, params, m1, m2, h, c_off);
        return;
    }
    // Chunks of 16 values (the last of each run shorter), a run of them an item.
    int items = ((int)get_num_groups(0) - groups0) * GEMM_G;
    int item = (g - groups0) * GEMM_G + lid, before = (lo + 15) / 16;
    int chunks = before + (count - hi + 15) / 16, per = (chunks + items - 1) / items;
    for (int q = item * per; q < min(chunks, (item + 1) * per); q++) {
        int i = q < before ? 16 * q : hi + 16 * (q - before), end = q < before ? lo : count;
        if (i + 16 <= end) {
            adam_values16(vload16(0, grads + i), params + i, m1 + i, m2 + i, h);
            continue;
        }
        for (; i < end; i++)
            adam_value(grads[i], params + i, m1 + i, m2 + i, h);
    }
}

// C (m, n) = A B with the epilogue, A's rows gathered from a data set of bytes: row i is image
// index[start + i] of data ((count, k) bytes) / 255, the batch gather_images (data.cl) would
// write; the blocks also store those rows into x (m, k), each column of blocks its share of k, so
// the gather's launch and its pass over the batch join the first layer's product, to the same bits
// (the same floats, multiplied in the same order). Whole blocks convert 16 bytes of each row at
// once (a byte at a time: 440-500 us for 256x128x784, 340-400 so) into local memory (abuf, a
// work-item's share of a work-group of at most 8 items down the rows), from which each product
// broadcasts its value by a load: from the lanes of a register the broadcasts are permutes, which
// run on the port of one of an Intel core's two FMA units (410-421 against 324-337 us a step on a
// Sapphire Rapids Xeon, 2026-12-04; the same on an AMD EPYC). Range: (column blocks, row
// blocks), work-groups of at most 8 row blocks.
#define A_GATHER(i, kk) ((float)arow[(i)-i0][kk] * (1.0f / 255.0f))

#define GEMM_GATHER_KERNEL(NAME, NV)                                                               \
    __kernel void NAME(int m, int n, int k, __global const uchar *restrict data,                   \
                       __global const int *restrict index, int start, __global float *restrict x,  \
                       __global const float *restrict b, ulong b_off, int ldb,                     \
                       __global float *restrict c, ulong c_off, int ldc, __global float *bias,     \
                       ulong bias_off, int epilogue)                                               \
    {                                                                                              \
        __local float abuf[8][GEMM_R][16];                                                         \
        int j0 = (int)get_global_id(0) * 16 * NV, i0 = (int)get_global_id(1) * GEMM_R;             \
        if (i0 >= m || j0 >= n)                                                                    \
            return;                                                                                \
        float alpha = 1.0f, beta = 0.0f, s_beta = 0.0f, s_noise = 0.0f;                            \
        __global const float *eps = 0;                                                             \
        __global float *bt = 0;                                                                    \
        int ldbt = 0;                                                                              \
        /* GEMM_LOOP's transposed store, unused here */                                            \
        float16(*tile)[16] = 0;                                                                    \
        int rows = min(GEMM_R, m - i0), cols = min(16 * NV, n - j0);                               \
        bool whole_block = rows == GEMM_R && cols == 16 * NV;                                      \
        __global const uchar *arow[GEMM_R];                                                        \
        _Pragma("unroll") for (int r = 0; r < GEMM_R; r++) arow[r] =                               \
            data + (size_t)index[start + i0 + min(r, rows - 1)] * (size_t)k;                       \
        {                                                                                          \
            int blocks = (n + 16 * NV - 1) / (16 * NV),                                            \
                span = ((k + blocks - 1) / blocks + 15) & ~15;                                     \
            int from = min(k, j0 / (16 * NV) * span), to = min(k, from + span);                    \
            for (int r = 0; r < rows; r++)                                                         \
                gather_floats(arow[r], x + (size_t)(i0 + r) * k, from, to);                        \
        }                                                                                          \
        b += b_off + j0;                                                                           \
        c += c_off + (size_t)i0 * ldc + j0;                                                        \
        float16 acc[GEMM_R][NV], colsum[NV];                                                       \
        _Pragma("unroll") for (int r = 0; r < GEMM_R; r++)                                         \
            _Pragma("unroll") for (int v = 0; v < NV; v++) acc[r][v] = (float16)0.0f;              \
        __local float(*av)[16] = abuf[get_local_id(1) % 8];                                        \
        if (whole_block) {                                                                         \
            for (int kq = 0; kq + 16 <= k; kq += 16) {                                             \
                _Pragma("unroll") for (int r = 0; r < GEMM_R; r++) vstore16(                       \
                    convert_float16(vload16(0, arow[r] + kq)) * (1.0f / 255.0f), 0, av[r]);       \
                _Pragma("unroll") for (int q = 0; q < 16; q++)                                     \
                {                                                                                  \
                    const __global float *bk = b + (size_t)(kq + q) * ldb;                         \
                    float16 brow[NV];                                                              \
                    _Pragma("unroll") for (int v = 0; v < NV; v++) brow[v] = vload16(v, bk);       \
                    GEMM_FMA_ROWS(NV, brow, av[r][q])                                              \
                }                                                                                  \
            }                                                                                      \
            GEMM_LOOP(A_GATHER, NV, ROW_WHOLE, LOAD_WHOLE, 0, 0, k & ~15, k)                       \
        } else {                                                                                   \
            GEMM_LOOP(A_GATHER, NV, ROW_EDGE, LOAD_EDGE, 0, 0, 0, k)                               \
        }                                                                                          \
        GEMM_STORE(NV)                                                                             \
    }

GEMM_GATHER_KERNEL(gemm_nn_32_gather, 2)
GEMM_GATHER_KERNEL(gemm_nn_16_gather, 1)

// Convolution products on the image itself (src/model/layer_conv.c, where clvae's kernels run the
// products): op(A)'s row or column i is row i of conv_im2col's columns (cl/conv.cl: grid position
// (n, gy, gx), column (ky, kx, c) = img[n, gy S - P + ky, gx S - P + kx, c]), read from img (rows,
// H, W, C) where it lies and from zeros (at least C floats of 0) where it is padding, as
// conv_im2col writes it. The same multiply-adds in the same order as the product over the
// columns: the same bits, without the columns' pass over memory or their buffer (the residual
// model's 3x3 convolutions wrote 75 MB of columns a batch of 64). GEMM_CONV_ARGS: the image and
// the convolution.
#define GEMM_CONV_ARGS                                                                             \
    __global const float *restrict img, __global const float *restrict zeros, int C, int H, int W, \
        int GH, int GW, int K, int S, int P

// The k loop of a gemm_nn_conv block over one kernel position's C columns: arow[r] the pixel's
// C values that row r reads, bs B's first row of that position.
#define GEMM_CONV_LOOP(NV, LOAD_B)                                                                 \
    for (int q = 0; q < C; q++) {                                                                  \
        const __global float *bk = bs + (size_t)q * ldb;                                           \
        float16 brow[NV];                                                                          \
        _Pragma("unroll") for (int v = 0; v < NV; v++) brow[v] = LOAD_B(v, bk);                    \
        GEMM_FMA_ROWS(NV, brow, arow[r][q])                                                        \
    }

// A conv's forward: C (m grid positions, n) = im2col(img) B + beta C with the epilogue (GEMM_BIAS,
// GEMM_BIAS_RELU or none), k = K K C, as gemm_nn_32 (_16) runs it over the columns (a transposed
// conv's input gradient too: img its dy, B its W^T). Range: (column blocks, row blocks).
#define GEMM_CONV_KERNEL(NAME, NV)                                                                 \
    __kernel void NAME(int m, int n, GEMM_CONV_ARGS, __global const float *restrict b,             \
                       ulong b_off, int ldb, float beta, __global float *restrict c, ulong c_off,  \
                       int ldc, __global float *bias, ulong bias_off, int epilogue)                \
    {                                                                                              \
        int j0 = (int)get_global_id(0) * 16 * NV, i0 = (int)get_global_id(1) * GEMM_R;             \
        if (i0 >= m || j0 >= n)                                                                    \
            return;                                                                                \
        float alpha = 1.0f, s_beta = 0.0f, s_noise = 0.0f;                                         \
        __global const float *eps = 0;                                                             \
        int rows = min(GEMM_R, m - i0), cols = min(16 * NV, n - j0);                               \
        b += b_off + j0;                                                                           \
        c += c_off + (size_t)i0 * ldc + j0;                                                        \
        /* Each row's grid position: its image's first row (n H), and its window's corner. */     \
        size_t first[GEMM_R];                                                                      \
        int top[GEMM_R], left[GEMM_R];                                                             \
        _Pragma("unroll") for (int r = 0; r < GEMM_R; r++)                                         \
        {                                                                                          \
            int pos = i0 + min(r, rows - 1), cell = pos / GW;                                      \
            left[r] = pos % GW * S - P, top[r] = cell % GH * S - P;                                \
            first[r] = (size_t)(cell / GH) * H;                                                    \
        }                                                                                          \
        float16 acc[GEMM_R][NV];                                                                   \
        _Pragma("unroll") for (int r = 0; r < GEMM_R; r++)                                         \
            _Pragma("unroll") for (int v = 0; v < NV; v++) acc[r][v] = (float16)0.0f;              \
        for (int ky = 0; ky < K; ky++)                                                             \
            for (int kx = 0; kx < K; kx++) {                                                       \
                const __global float *arow[GEMM_R];                                                \
                _Pragma("unroll") for (int r = 0; r < GEMM_R; r++)                                 \
                {                                                                                  \
                    int y = top[r] + ky, x = left[r] + kx;                                         \
                    arow[r] = y >= 0 && y < H && x >= 0 && x < W                                   \
                                  ? img + ((first[r] + y) * W + x) * C                             \
                                  : zeros;                                                         \
                }                                                                                  \
                const __global float *bs = b + (size_t)((ky * K + kx) * C) * ldb;                  \
                if (cols == 16 * NV) {                                                             \
                    GEMM_CONV_LOOP(NV, LOAD_WHOLE)                                                 \
                } else {                                                                           \
                    GEMM_CONV_LOOP(NV, LOAD_EDGE)                                                  \
                }                                                                                  \
            }                                                                                      \
        GEMM_STORE(NV)                                                                             \
    }

GEMM_CONV_KERNEL(gemm_nn_conv_32, 2)
GEMM_CONV_KERNEL(gemm_nn_conv_16, 1)

// The k loop of a gemm_tn_conv block: positions pos .. end - 1, the block's 8 columns of each
// (kernel position ky, kx; channels c0 ..) from img, or from zeros where padding.
#define GEMM_CONV_TN_LOOP(NV, LOAD_B)                                                              \
    for (int gx = pos % GW, cell = pos / GW, gy = cell % GH, image = cell / GH; pos < end;) {      \
        int run = min(GW - gx, end - pos), y = gy * S - P + ky;                                    \
        bool inside = y >= 0 && y < H;                                                             \
        const __global float *line = img + (((size_t)image * H + (inside ? y : 0)) * W) * C + c0; \
        for (int stop = pos + run; pos < stop; pos++, gx++) {                                      \
            int x = gx * S - P + kx;                                                               \
            const __global float *av = inside && x >= 0 && x < W ? line + (size_t)x * C : zeros;   \
            const __global float *bk = b + (size_t)pos * ldb;                                      \
            float16 brow[NV];                                                                      \
            _Pragma("unroll") for (int v = 0; v < NV; v++) brow[v] = LOAD_B(v, bk);                \
            GEMM_FMA_ROWS(NV, brow, av[r])                                                         \
        }                                                                                          \
        gx = 0;                                                                                    \
        if (++gy == GH)                                                                            \
            gy = 0, image++;                                                                       \
    }

// A conv's weight gradient: C (m = K K C, n) = im2col(img)^T B + beta C over k grid positions,
// product p of the batch (dimension 2) over positions pos0 + p pos_step .., B's rows the same
// positions (dy's, rows ldb apart, its position 0 at b_off), C at c_off + p c_stride: as gemm_tn_32
// (_16) runs it over the columns, a product or a part of one split over k. C a multiple of 8, so
// that a block's 8 rows are channels of one kernel position. Range: (column blocks, m / 8,
// products).
#define GEMM_CONV_TN_KERNEL(NAME, NV)                                                              \
    __kernel void NAME(int m, int n, int k, float beta, GEMM_CONV_ARGS, int pos0, int pos_step,    \
                       __global const float *restrict b, ulong b_off, int ldb,                     \
                       __global float *restrict c, ulong c_off, int ldc, ulong c_stride)           \
    {                                                                                              \
        int j0 = (int)get_global_id(0) * 16 * NV, i0 = (int)get_global_id(1) * GEMM_R;             \
        if (i0 >= m || j0 >= n)                                                                    \
            return;                                                                                \
        float alpha = 1.0f, s_beta = 0.0f, s_noise = 0.0f;                                         \
        __global const float *eps = 0;                                                             \
        __global float *bias = 0;                                                                  \
        ulong bias_off = 0;                                                                        \
        int epilogue = 0, rows = GEMM_R, cols = min(16 * NV, n - j0);                              \
        int seg = i0 / C, c0 = i0 % C, ky = seg / K, kx = seg % K;                                 \
        size_t p = get_global_id(2);                                                               \
        int pos = pos0 + (int)p * pos_step, end = pos + k;                                         \
        b += b_off + j0;                                                                           \
        c += c_off + p * c_stride + (size_t)i0 * ldc + j0;                                         \
        float16 acc[GEMM_R][NV];                                                                   \
        _Pragma("unroll") for (int r = 0; r < GEMM_R; r++)                                         \
            _Pragma("unroll") for (int v = 0; v < NV; v++) acc[r][v] = (float16)0.0f;              \
        if (cols == 16 * NV) {                                                                     \
            GEMM_CONV_TN_LOOP(NV, LOAD_WHOLE)                                                      \
        } else {                                                                                   \
            GEMM_CONV_TN_LOOP(NV, LOAD_EDGE)                                                       \
        }                                                                                          \
        GEMM_STORE(NV)                                                                             \
    }

GEMM_CONV_TN_KERNEL(gemm_tn_conv_32, 2)
GEMM_CONV_TN_KERNEL(gemm_tn_conv_16, 1)

// A conv's input gradient on the image: dx (m pixels of rows H W, C) (+)= col2im(dy W^T), dy (rows
// GH GW, OC) and W^T (OC, K K C; rows ldwt apart, at wt_off): for each pixel the kernel positions
// that read it in conv_col2im's order, each position's column of dy W^T summed over OC as
// gemm_nn_32 sums it (from 0, in order) and then added to the pixel's sum as col2im adds it: the
// same bits as that product and col2im, without the product's columns (K K / S S times the
// image). A transposed conv's forward is the same sum (dy its input, W^T its weight). A block: R
// pixels, 16 NV channels (R NV 16-float sums and as many partial ones in registers). Its pixels
// are R of one class (y mod S, x mod S) of the batch's pixels, in order (at stride 1 the one class
// is every pixel): read by the same kernel positions, the walk's from ky0, kx0 on. The classes'
// blocks one after another. A pixel's position outside the grid is worked and not added (its
// rows of dy: the first). Range: (ceil(C / (16 NV)), the classes' ceil(pixels / R) summed).
#define GEMM_CONV_DX_KERNEL(NAME, R, NV)                                                           \
    __kernel void NAME(int m, int C, __global const float *restrict dy, int OC, int H, int W,      \
                       int GH, int GW, int K, int S, int P, __global const float *restrict wt,     \
                       ulong wt_off, int ldwt, __global float *restrict dx, int acc)               \
    {                                                                                              \
        int c0 = (int)get_global_id(0) * 16 * NV;                                                  \
        if (c0 >= C)                                                                               \
            return;                                                                                \
        /* The block's class (cy, cx): hc x wc pixels an image, count in the batch. */            \
        int images = m / (H * W), cy = 0, cx = 0, hc = 0, wc = 0, count = 0;                       \
        size_t block = get_global_id(1);                                                           \
        for (int q = 0; q < S * S; q++) {                                                          \
            cy = q / S, cx = q % S;                                                                \
            hc = (H - cy + S - 1) / S, wc = (W - cx + S - 1) / S, count = images * hc * wc;        \
            size_t blocks = ((size_t)count + R - 1) / R;                                           \
            if (block < blocks)                                                                    \
                break;                                                                             \
            block -= blocks, count = 0;                                                            \
        }                                                                                          \
        int j0 = (int)block * R;                                                                   \
        if (j0 >= count)                                                                           \
            return;                                                                                \
        int rows = min(R, count - j0), ky0 = (cy + P) % S, kx0 = (cx + P) % S;                     \
        /* Each pixel's place in dx, its image's first grid row (n GH) and the grid position */   \
        /* of the walk's first kernel position (ky0, kx0); a position ty, tx steps on is ty, tx */ \
        /* grid rows and columns before it (y + P - ky is a multiple of S). */                    \
        int at[R], first[R], gy0[R], gx0[R];                                                       \
        _Pragma("unroll") for (int r = 0; r < R; r++)                                              \
        {                                                                                          \
            int j = j0 + min(r, rows - 1), n = j / (hc * wc), t = j % (hc * wc);                   \
            int y = cy + S * (t / wc), x = cx + S * (t % wc);                                      \
            at[r] = (n * H + y) * W + x, first[r] = n * GH;                                        \
            gy0[r] = (y + P - ky0) / S, gx0[r] = (x + P - kx0) / S;                                \
        }                                                                                          \
        float16 sum[R][NV];                                                                        \
        _Pragma("unroll") for (int r = 0; r < R; r++)                                              \
            _Pragma("unroll") for (int v = 0; v < NV; v++) sum[r][v] = (float16)0.0f;              \
        wt += wt_off + c0;                                                                         \
        int cols = min(16 * NV, C - c0);                                                           \
        for (int ky = ky0, ty = 0; ky < K; ky += S, ty++)                                          \
            for (int kx = kx0, tx = 0; kx < K; kx += S, tx++) {                                    \
                const __global float *arow[R];                                                     \
                bool valid[R];                                                                     \
                _Pragma("unroll") for (int r = 0; r < R; r++)                                      \
                {                                                                                  \
                    int gy = gy0[r] - ty, gx = gx0[r] - tx;                                        \
                    valid[r] = gy >= 0 && gy < GH && gx >= 0 && gx < GW;                           \
                    arow[r] = dy + (valid[r] ? ((size_t)(first[r] + gy) * GW + gx) * OC : 0);      \
                }                                                                                  \
                const __global float *bs = wt + (ky * K + kx) * C;                                 \
                float16 part[R][NV];                                                               \
                _Pragma("unroll") for (int r = 0; r < R; r++)                                      \
                    _Pragma("unroll") for (int v = 0; v < NV; v++) part[r][v] = (float16)0.0f;     \
                for (int o = 0; o < OC; o++) {                                                     \
                    const __global float *bk = bs + (size_t)o * ldwt;                              \
                    float16 brow[NV];                                                              \
                    _Pragma("unroll") for (int v = 0; v < NV; v++) brow[v] =                       \
                        cols == 16 * NV ? vload16(v, bk) : edge_row16(bk, 16 * v, cols);           \
                    _Pragma("unroll") for (int r = 0; r < R; r++)                                  \
                    {                                                                              \
                        float16 a = (float16)arow[r][o];                                           \
                        _Pragma("unroll") for (int v = 0; v < NV; v++) part[r][v] =                \
                            fma(a, brow[v], part[r][v]);                                           \
                    }                                                                              \
                }                                                                                  \
                _Pragma("unroll") for (int r = 0; r < R; r++) if (valid[r])                        \
                    _Pragma("unroll") for (int v = 0; v < NV; v++) sum[r][v] += part[r][v];        \
            }                                                                                      \
        for (int r = 0; r < rows; r++)                                                             \
            for (int v = 0; v < NV; v++) {                                                         \
                __global float *out = dx + (size_t)at[r] * C + c0 + 16 * v;                        \
                if (cols == 16 * NV) {                                                             \
                    vstore16(acc ? vload16(0, out) + sum[r][v] : sum[r][v], 0, out);               \
                    continue;                                                                      \
                }                                                                                  \
                float lane[16];                                                                    \
                vstore16(sum[r][v], 0, lane);                                                      \
                for (int q = 0; q < 16 && 16 * v + q < cols; q++)                                  \
                    out[q] = acc ? out[q] + lane[q] : lane[q];                                     \
            }                                                                                      \
    }

GEMM_CONV_DX_KERNEL(gemm_conv_dx, 8, 1)
GEMM_CONV_DX_KERNEL(gemm_conv_dx_32, 4, 2)

// The packed products (see the top): a work-group of GEMM_G blocks, all 32 columns wide, down one
// column of blocks; every GEMM_KT rows of k its items copy B's rows (zeros past the last column)
// and, for A^T, A's rows for the group's GEMM_G x GEMM_R rows of C (the last row again past m)
// into local memory, then multiply from there. Items past the last row copy and wait, and store
// nothing. Range: (column blocks, row blocks rounded up to GEMM_G, batch), work-groups (1, GEMM_G,
// 1).
#define GEMM_GROWS (GEMM_G * GEMM_R)
#define A_PACKED_NN(r, kk) a[(size_t)(i0 + min((r), rows - 1)) * lda + k0 + (kk)]
#define A_PACKED_TN(r, kk) at[(kk)*GEMM_GROWS + lid * GEMM_R + (r)]

#define GEMM_PACKED_KERNEL(NAME, TA, A_AT)                                                         \
    __kernel __attribute__((reqd_work_group_size(1, GEMM_G, 1))) void NAME(                        \
        int m, int n, int k, float alpha, float beta, __global const float *restrict a,            \
        ulong a_off, int lda, ulong a_stride, __global const float *restrict b, ulong b_off,       \
        int ldb, ulong b_stride, __global float *restrict c, ulong c_off, int ldc, ulong c_stride, \
        __global float *bias, ulong bias_off, int epilogue, __global float *bt_, ulong bt_off,     \
        int ldbt)                                                                                  \
    {                                                                                              \
        __global const float *eps = 0;                                                             \
        float s_beta = 0.0f, s_noise = 0.0f;                                                       \
        __local float16 bt[GEMM_KT * 2];                                                           \
        __local float at[TA ? GEMM_KT * GEMM_GROWS : 1];                                           \
        int lid = (int)get_local_id(1);                                                            \
        int j0 = (int)get_global_id(0) * 32, i0 = (int)get_global_id(1) * GEMM_R;                  \
        int g0 = (int)get_group_id(1) * GEMM_GROWS;                                                \
        size_t p = get_global_id(2);                                                               \
        a += a_off + p * a_stride;                                                                 \
        b += b_off + p * b_stride + j0;                                                            \
        c += c_off + p * c_stride + (size_t)i0 * ldc + j0;                                         \
        int rows = clamp(m - i0, 0, GEMM_R), cols = min(32, n - j0);                               \
        int span = min(GEMM_GROWS, m - g0);                                                        \
        float16 acc[GEMM_R][2];                                                                    \
        _Pragma("unroll") for (int r = 0; r < GEMM_R; r++) acc[r][0] = acc[r][1] = 0.0f;           \
        for (int k0 = 0; k0 < k; k0 += GEMM_KT) {                                                  \
            int kt = min(GEMM_KT, k - k0);                                                         \
            barrier(CLK_LOCAL_MEM_FENCE);                                                          \
            for (int kk = lid; kk < kt; kk += GEMM_G) {                                            \
                const __global float *bk = b + (size_t)(k0 + kk) * ldb;                            \
                bt[2 * kk] = cols == 32 ? vload16(0, bk) : edge_row16(bk, 0, cols);                \
                bt[2 * kk + 1] = cols == 32 ? vload16(1, bk) : edge_row16(bk, 16, cols);           \
                if (TA) {                                                                          \
                    const __global float *ak = a + (size_t)(k0 + kk) * lda + g0;                   \
                    __local float *dst = at + kk * GEMM_GROWS;                                     \
                    if (span == GEMM_GROWS) {                                                      \
                        _Pragma("unroll") for (int q = 0; q < GEMM_GROWS / 16; q++)                \
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
                    _Pragma("unroll") for (int r = 0; r < GEMM_R; r++)                             \
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
// + beta C, then the epilogue: the second pass of a product split over k (own_gemm in
// src/runtime/cl_runtime.c), the parts added in order. One element, (i, j), of it.
void gemm_sum_one(__global const float *partial, int parts, int m, int n, float alpha, float beta,
                  __global float *c, ulong c_off, int ldc, __global const float *bias,
                  ulong bias_off, int epilogue, int i, int j)
{
    size_t row = epilogue == GEMM_MASK ? (size_t)i * ldc : 0;
    size_t at = (size_t)i * n + j, mn = (size_t)m * n;
    float sum = partial[at];
    for (int p = 1; p < parts; p++)
        sum += partial[p * mn + at];
    __global float *out = c + c_off + (size_t)i * ldc + j;
    float y = beta != 0.0f ? alpha * sum + beta * *out : alpha * sum;
    float e = bias[bias_off + row + j];
    if (epilogue == GEMM_MASK) {
        sum = alpha * sum;
        *out = beta != 0.0f ? GEMM_MASKED(sum, e) + beta * *out : GEMM_MASKED(sum, e);
        return;
    }
    *out = GEMM_EPILOGUE(y, e);
}

// Range: (n, m).
__kernel void gemm_sum_parts(__global const float *partial, int parts, int m, int n, float alpha,
                             float beta, __global float *c, ulong c_off, int ldc,
                             __global const float *bias, ulong bias_off, int epilogue)
{
    int j = get_global_id(0), i = get_global_id(1);
    if (j < n && i < m)
        gemm_sum_one(partial, parts, m, n, alpha, beta, c, c_off, ldc, bias, bias_off, epilogue, i,
                     j);
}

// gemm_sum_parts on a CPU: 16 columns a work-item as float16, gemm_sum_one's operations in each
// lane (the same bits), the columns past the last 16 one at a time (PoCL ran the scalar kernel's
// loop over the parts a column at a time: 743 us a call for the conv reference's 28 parts of
// 64x512). Range: ((n + 15) / 16, m).
__kernel void gemm_sum_parts16(__global const float *partial, int parts, int m, int n, float alpha,
                               float beta, __global float *c, ulong c_off, int ldc,
                               __global const float *bias, ulong bias_off, int epilogue)
{
    int j0 = (int)get_global_id(0) * 16, i = get_global_id(1);
    if (j0 >= n || i >= m)
        return;
    if (j0 + 16 > n) {
        for (int j = j0; j < n; j++)
            gemm_sum_one(partial, parts, m, n, alpha, beta, c, c_off, ldc, bias, bias_off, epilogue,
                         i, j);
        return;
    }
    size_t row = epilogue == GEMM_MASK ? (size_t)i * ldc : 0;
    size_t at = (size_t)i * n + j0, mn = (size_t)m * n;
    float16 sum = vload16(0, partial + at);
    for (int p = 1; p < parts; p++)
        sum += vload16(0, partial + p * mn + at);
    __global float *out = c + c_off + (size_t)i * ldc + j0;
    float16 e = vload16(0, bias + bias_off + row + j0);
    if (epilogue == GEMM_MASK) {
        sum = alpha * sum;
        vstore16(beta != 0.0f ? GEMM_MASKED16(sum, e) + beta * vload16(0, out)
                              : GEMM_MASKED16(sum, e),
                 0, out);
        return;
    }
    float16 y = beta != 0.0f ? alpha * sum + beta * vload16(0, out) : alpha * sum;
    vstore16(GEMM_EPILOGUE(y, e), 0, out);
}
