// The likelihoods p(x|z) of the decoder's output (src/model/likelihood.c): each pixel's negative
// log-probability and its gradient, and the per-image sums. Needs common.cl.
//
// The decoder's output for an image of dim = pixels x channels values: Bernoulli, one logit a
// value, in x's layout; discretised logistic, 2 dim values, pixel p's channels' means at
// [p 2C, p 2C + C) and their log-scales at [p 2C + C, p 2C + 2C) (a deconv's NHWC output of 2C
// channels, and the same order for a dense output layer).

#define LIKELIHOOD_BERNOULLI 0
#define LIKELIHOOD_LOGISTIC 1
// Half a level of an 8-bit pixel scaled to [0, 1]: level k covers k / 255 -+ LOGISTIC_HALF_BIN.
#define LOGISTIC_HALF_BIN (0.5f / 255.0f)
// The log-scale's range: PixelCNN++'s floor of -7 (a scale of 0.0009, a quarter of a level), and
// a ceiling that keeps exp(-u) and the bin's width in the scale's units normal floats. Outside it
// the log-scale is clamped and gets no gradient.
#define LOGISTIC_MIN_LOG_SCALE (-7.0f)
#define LOGISTIC_MAX_LOG_SCALE 15.0f

// -log p(t | l) = max(l, 0) - l t + log(1 + exp(-|l|)) for a Bernoulli with logit l and target t
// in [0, 1] (the binary cross-entropy), stable for every l. Training and eval's IWAE both call it.
// exp_arith and log1p_unit: common.cl's arithmetic, which vectorises, where exp() and log() are
// scalar library calls on PoCL.
float bernoulli_nll(float l, float t)
{
    return fmax(l, 0.0f) - l * t + log1p_unit(exp_arith(-fabs(l)));
}

// -log P(x) of the logistic with location mu and log-scale u (clamped to the range above)
// discretised to 256 levels: with s = exp(u), a = (x - mu + LOGISTIC_HALF_BIN) / s and
// b = (x - mu - LOGISTIC_HALF_BIN) / s, P = sigmoid(a) - sigmoid(b), the edges taking the tails
// (level 0: P = sigmoid(a); level 255: P = 1 - sigmoid(b)). The difference is taken as
// sigmoid(a) sigmoid(-b) (1 - exp(b - a)), so its log is
//   -softplus(-a) - softplus(b) + log(-expm1(-(a - b)))
// with no cancellation however narrow or wide the bin is against s; softplus(v) = max(v, 0) +
// log(1 + exp(-|v|)), sigmoid(v) = 1 / (1 + exp(-v)) from exp(-|v|) either side. *dmu, *du: the
// derivatives. For T float and float16 (logistic_nll_float, logistic_nll_float16): each term is
// added or not by a select, the same operations in each lane, and the exp, log and expm1 are
// common.cl's arithmetic (PoCL's library calls in the pixel kernel took a third of a small conv
// model's epoch), so the vector kernel has the pixel kernel's bits.
#define DEFINE_LOGISTIC_NLL(T, IT)                                                                 \
    T logistic_nll_##T(T mu, T u, T x, T *dmu, T *du)                                              \
    {                                                                                              \
        T uc = clamp(u, (T)LOGISTIC_MIN_LOG_SCALE, (T)LOGISTIC_MAX_LOG_SCALE);                     \
        T inv = exp_arith_##T(-uc), c = x - mu;                                                    \
        T a = inv * (c + LOGISTIC_HALF_BIN), b = inv * (c - LOGISTIC_HALF_BIN);                    \
        T ea = exp_arith_##T(-fabs(a)), eb = exp_arith_##T(-fabs(b));                              \
        T d = 2.0f * LOGISTIC_HALF_BIN * inv;                                                      \
        /* the CDF's upper end below +inf (not level 255): -log sigmoid(a) = softplus(-a) */       \
        T sa = a <= 0.0f ? (T)1.0f / (1.0f + ea) : ea / (1.0f + ea); /* sigmoid(-a) */             \
        T upper = fmax(-a, 0.0f) + log1p_unit_##T(ea);                                             \
        /* the lower end above -inf (not level 0): -log sigmoid(-b) = softplus(b) */               \
        T sb = b >= 0.0f ? (T)1.0f / (1.0f + eb) : eb / (1.0f + eb); /* sigmoid(b) */              \
        T lower = fmax(b, 0.0f) + log1p_unit_##T(eb);                                              \
        /* both: the bin's width, -log(1 - exp(-d)), d = a - b */                                  \
        T width = -log_arith_##T(-expm1_arith_##T(-d)), g_width = d / expm1_arith_##T(d);          \
        IT high = x > 1.0f - LOGISTIC_HALF_BIN, low = x < LOGISTIC_HALF_BIN;                       \
        T nll = high ? (T)0.0f : upper;                                                            \
        T g_mu = high ? (T)0.0f : inv * sa, g_u = high ? (T)0.0f : a * sa;                         \
        nll = low ? nll : nll + lower;                                                             \
        g_mu = low ? g_mu : g_mu - inv * sb;                                                       \
        g_u = low ? g_u : g_u - b * sb;                                                            \
        nll = low || high ? nll : nll + width;                                                     \
        g_u = low || high ? g_u : g_u + g_width;                                                   \
        *dmu = g_mu;                                                                               \
        *du = u < LOGISTIC_MIN_LOG_SCALE || u > LOGISTIC_MAX_LOG_SCALE ? (T)0.0f : g_u;            \
        return nll;                                                                                \
    }

DEFINE_LOGISTIC_NLL(float, int)
DEFINE_LOGISTIC_NLL(float16, int16)
#define logistic_nll logistic_nll_float

// Pixel j's negative log-likelihood of x under the decoder output row out (kind: LIKELIHOOD_*;
// channels: the image's, which the logistic's layout needs).
float pixel_nll(__global const float *out, int j, float x, int kind, int channels)
{
    if (kind == LIKELIHOOD_BERNOULLI)
        return bernoulli_nll(out[j], x);
    int p = j / channels, c = j % channels;
    size_t m = (size_t)p * 2 * channels + c;
    float dmu, du;
    return logistic_nll(out[m], out[m + channels], x, &dmu, &du);
}

// Pixel j of row r of logistic_nll_grad (below).
void logistic_pixel(__global const float *out, __global const float *x, __global float *dout,
                    __global float *terms, size_t r, int j, int dim, int channels, float scale)
{
    int p = j / channels, c = j % channels;
    size_t m = r * 2 * dim + (size_t)p * 2 * channels + c;
    float dmu, du;
    terms[r * dim + j] = logistic_nll(out[m], out[m + channels], x[r * dim + j], &dmu, &du);
    dout[m] = scale * dmu;
    dout[m + channels] = scale * du;
}

// out (rows, 2 dim) the means and log-scales, x (rows, dim) -> terms (rows, dim) = logistic_nll,
// and dout = scale * its gradient. Range: (dim, rows). Every likelihood's kernel takes these
// arguments (src/model/likelihood.c).
__kernel void logistic_nll_grad(__global const float *out, __global const float *x,
                                __global float *dout, __global float *terms, int rows, int dim,
                                int channels, float scale)
{
    int j = get_global_id(0), r = get_global_id(1);
    if (j >= dim || r >= rows)
        return;
    logistic_pixel(out, x, dout, terms, (size_t)r, j, dim, channels, scale);
}

// Pixel j of row r of bce_logits_grad (below). (channels: not needed here.)
void bernoulli_pixel(__global const float *logits, __global const float *x, __global float *dlogits,
                     __global float *terms, size_t r, int j, int dim, int channels, float scale)
{
    size_t i = r * dim + j;
    float l = logits[i], t = x[i];
    float e = exp_arith(-fabs(l));
    terms[i] = fmax(l, 0.0f) - l * t + log1p_unit(e); // bernoulli_nll's
    dlogits[i] = scale * ((l >= 0.0f ? 1.0f : e) / (1.0f + e) - t);
}

// logits, x (rows, dim) -> terms = bernoulli_nll, each pixel's binary cross-entropy, and
// dlogits = scale * (sigmoid(l) - x). Range: (dim, rows). The row sums are row_sum's: summing
// here, in a loop per work-item, kept PoCL from vectorising across pixels (2.4 ms a batch against
// 0.5 ms for the two kernels); the *_rows16 kernels below fuse them another way. (channels: not
// needed here; every likelihood's kernel takes the same arguments.)
__kernel void bce_logits_grad(__global const float *logits, __global const float *x,
                              __global float *dlogits, __global float *terms, int rows, int dim,
                              int channels, float scale)
{
    int j = get_global_id(0), r = get_global_id(1);
    if (j >= dim || r >= rows)
        return;
    bernoulli_pixel(logits, x, dlogits, terms, (size_t)r, j, dim, channels, scale);
}

// The sum of the 16 lanes of a row's running sums (lane u the values at u, u + 16, ...): pairwise,
// 8 + 8, 4 + 4, 2 + 2, 1 + 1. The *_rows16 kernels then add the row's last dim % 16 values in
// order: 16 independent adds a step where a plain loop waits on each add (a row of 784 took a
// quarter of the likelihood's kernel so). tests/test_kernels.c repeats the order on the host.
float sum_lanes16(float16 acc)
{
    float8 h8 = acc.lo + acc.hi;
    float4 h4 = h8.lo + h8.hi;
    float2 h2 = h4.lo + h4.hi;
    return h2.x + h2.y;
}

// The end of a *_rows16 kernel (acc its lanes' sums, q the first value no vector took): the lanes
// added (sum_lanes16), then the values from q on one at a time through PIXEL, in order, the sum
// into rec[rec_offset + r]. The *_rows16 kernels keep the terms of their vectors in registers
// (only the row's sum is wanted): terms holds just these last values (storing every term cost the
// default model's kernel 146 us a step against 131).
#define ROWS16_TAIL(PIXEL, OUT, DOUT)                                                              \
    float sum = sum_lanes16(acc);                                                                  \
    for (; q < dim; q++) {                                                                         \
        PIXEL(OUT, x, DOUT, terms, (size_t)r, q, dim, channels, scale);                            \
        sum += terms[base + q];                                                                    \
    }                                                                                              \
    rec[rec_offset + r] = sum;

// bce_logits_grad and each row's sum in one launch on a CPU: a work-item a row, 16 pixels at once
// as float16 (bernoulli_pixel's operations in each lane, common.cl's exp and log1p in their float16
// form: the same terms and gradient), summed in lanes (sum_lanes16); the pixels past the last 16
// as bernoulli_pixel, added after in order. Nothing here is a library call or a barrier, so the
// whole row runs in vector registers: PoCL ran the pixel kernel's exp as a scalar call a pixel.
// bce_row16 is row r.
void bce_row16(int r, __global const float *logits, __global const float *x,
               __global float *dlogits, __global float *terms, int dim, int channels, float scale,
               __global float *rec, int rec_offset)
{
    size_t base = (size_t)r * dim;
    float16 acc = 0.0f;
    int q = 0;
    for (; q + 16 <= dim; q += 16) {
        size_t i = base + q;
        float16 l = vload16(0, logits + i), t = vload16(0, x + i);
        float16 e = exp_arith_float16(-fabs(l));
        float16 term = fmax(l, 0.0f) - l * t + log1p_unit_float16(e);
        vstore16(scale * ((l >= 0.0f ? (float16)1.0f : e) / (1.0f + e) - t), 0, dlogits + i);
        acc += term;
    }
    ROWS16_TAIL(bernoulli_pixel, logits, dlogits)
}

// logistic_nll_grad and each row's sum in one launch on a CPU: a work-item a row, 16 values at
// once as float16 (their means and log-scales gathered from the pixels' 2C outputs,
// logistic_nll_float16 in each lane: the pixel kernel's terms and gradient), summed as
// bce_logits_grad_rows16 sums. logistic_row16 is row r.
void logistic_row16(int r, __global const float *out, __global const float *x, __global float *dout,
                    __global float *terms, int dim, int channels, float scale, __global float *rec,
                    int rec_offset)
{
    size_t base = (size_t)r * dim;
    __global const float *row = out + 2 * base;
    __global float *drow = dout + 2 * base;
    float16 acc = 0.0f;
    int q = 0, c = 0, m0 = 0; // value q's channel, and its mean's place in the row (2C a pixel)
    for (; q + 16 <= dim; q += 16) {
        int m[16];
        float mu[16], u[16], dmu[16], du[16];
        for (int l = 0; l < 16; l++) {
            m[l] = m0 + c;
            mu[l] = row[m[l]];
            u[l] = row[m[l] + channels];
            if (++c == channels)
                c = 0, m0 += 2 * channels;
        }
        float16 gmu, gu;
        float16 term = logistic_nll_float16(vload16(0, mu), vload16(0, u), vload16(0, x + base + q),
                                            &gmu, &gu);
        vstore16(scale * gmu, 0, dmu);
        vstore16(scale * gu, 0, du);
        for (int l = 0; l < 16; l++) {
            drow[m[l]] = dmu[l];
            drow[m[l] + channels] = du[l];
        }
        acc += term;
    }
    ROWS16_TAIL(logistic_pixel, out, dout)
}

// A *_rows16 kernel: ROW (bce_row16, logistic_row16), a row a work-item. Range: (rows).
#define ROWS16_KERNEL(NAME, ROW)                                                                   \
    __kernel void NAME(__global const float *out, __global const float *x, __global float *dout,   \
                       __global float *terms, int rows, int dim, int channels, float scale,       \
                       __global float *rec, int rec_offset)                                        \
    {                                                                                              \
        int r = get_global_id(0);                                                                  \
        if (r < rows)                                                                              \
            ROW(r, out, x, dout, terms, dim, channels, scale, rec, rec_offset);                    \
    }

ROWS16_KERNEL(bce_logits_grad_rows16, bce_row16)
ROWS16_KERNEL(logistic_nll_grad_rows16, logistic_row16)

// Row r of the *_rows16 kernel of likelihood kind (LIKELIHOOD_*), as that kernel runs it: the
// decoder's chain in the Gaussian head's launch (gemm_nn_reparameterize) ends with its rows.
void likelihood_row16(int kind, int r, __global const float *out, __global const float *x,
                      __global float *dout, __global float *terms, int dim, int channels,
                      float scale, __global float *rec, int rec_offset)
{
    if (kind == LIKELIHOOD_BERNOULLI)
        bce_row16(r, out, x, dout, terms, dim, channels, scale, rec, rec_offset);
    else
        logistic_row16(r, out, x, dout, terms, dim, channels, scale, rec, rec_offset);
}

// terms (rows, dim) -> out[out_offset + r] = the sum of row r. One work-group a row; partial holds
// one float per work-item (a power of two: 1 on CPUs, where a plain loop is fastest).
__kernel void row_sum(__global const float *terms, __global float *out, int out_offset, int dim,
                      __local float *partial)
{
    int r = get_group_id(0), lid = get_local_id(0), lsize = get_local_size(0);
    size_t base = (size_t)r * dim;
    float sum = 0.0f;
    for (int j = lid; j < dim; j += lsize)
        sum += terms[base + j];
    sum = work_group_sum(partial, sum);
    if (lid == 0)
        out[out_offset + r] = sum;
}
