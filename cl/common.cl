// Functions every kernel file may use (built first): counter-based random numbers, a work-group
// sum, and exp, log and expm1 from arithmetic that vectorises.
//
// Counter-based random numbers: Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as
// 1, 2, 3", SC 2011). Every draw is a pure function of (key, counter), so any work-item can draw
// its own numbers, in any order, and the host can reproduce them (src/base/philox.c).

// counter (4 x u32), key (2 x u32) -> 4 random u32.
uint4 philox4x32_10(uint4 ctr, uint2 key)
{
    const uint m0 = 0xD2511F53u, m1 = 0xCD9E8D57u;
    for (int round = 0; round < 10; round++) {
        uint hi0 = mul_hi(m0, ctr.x), lo0 = m0 * ctr.x;
        uint hi1 = mul_hi(m1, ctr.z), lo1 = m1 * ctr.z;
        ctr = (uint4)(hi1 ^ ctr.y ^ key.x, lo1, hi0 ^ ctr.w ^ key.y, lo0);
        key += (uint2)(0x9E3779B9u, 0xBB67AE85u);
    }
    return ctr;
}

// One standard normal by Box-Muller from the first two words of a Philox block.
// u1 lies in (0, 1], so the log is finite.
float philox_normal(uint4 ctr, uint2 key)
{
    uint4 r = philox4x32_10(ctr, key);
    float u1 = (float)((r.x >> 8) + 1u) * (1.0f / 16777216.0f);
    float u2 = (float)(r.y >> 8) * (1.0f / 16777216.0f);
    return sqrt(-2.0f * log(u1)) * cos(6.283185307179586f * u2);
}

// philox_normal for 16 counters at once, (ctr + 0 .. 15, c1, c2, c3): the same Philox words (the
// rounds on uint16), then Box-Muller on float16, whose log, cos and sqrt PoCL runs as vector code
// where the float ones are scalar library calls (45 ns a normal on a CPU core, against 1.5 ns).
// A lane may differ from philox_normal's float in its last bits (the builtins' vector and scalar
// forms round differently); each kernel takes one form, so its draws are the same every run.
float16 philox_normal16(uint ctr, uint c1, uint c2, uint c3, uint2 key)
{
    const uint m0 = 0xD2511F53u, m1 = 0xCD9E8D57u;
    uint16 x = (uint16)(ctr) + (uint16)(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    uint16 y = (uint16)(c1), z = (uint16)(c2), w = (uint16)(c3);
    for (int round = 0; round < 10; round++) {
        uint16 hi0 = mul_hi((uint16)(m0), x), lo0 = (uint16)(m0)*x;
        uint16 hi1 = mul_hi((uint16)(m1), z), lo1 = (uint16)(m1)*z;
        uint16 nx = hi1 ^ y ^ (uint16)(key.x), nz = hi0 ^ w ^ (uint16)(key.y);
        x = nx, y = lo1, z = nz, w = lo0;
        key += (uint2)(0x9E3779B9u, 0xBB67AE85u);
    }
    float16 u1 = convert_float16((x >> 8) + 1u) * (1.0f / 16777216.0f);
    float16 u2 = convert_float16(y >> 8) * (1.0f / 16777216.0f);
    return sqrt(-2.0f * log(u1)) * cos(6.283185307179586f * u2);
}

// The sum of value over the work-group, returned to every work-item. partial holds one float per
// work-item (the work-group size a power of two) and may be used again straight after.
float work_group_sum(__local float *partial, float value)
{
    int lid = get_local_id(0), lsize = get_local_size(0);
    partial[lid] = value;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int stride = lsize / 2; stride > 0; stride /= 2) {
        if (lid < stride)
            partial[lid] += partial[lid + stride];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    float total = partial[0];
    barrier(CLK_LOCAL_MEM_FENCE);
    return total;
}

// exp, log and expm1 from arithmetic alone, where PoCL turns exp(), native_exp(), log() and
// expm1() (and rint, floor and fma) into scalar library calls, most of a loss kernel's time; these
// vectorise everywhere, and a float16 of them computes in each lane what the float one does (the
// same operations: each likelihood's vector kernel has its pixel kernel's bits).
//
// exp_arith(v) for v <= 88: v = n ln 2 + r with |r| <= ln 2 / 2, n rounded to the nearest by
// adding and taking away 1.5 2^23, ln 2 in two parts (Cody and Waite: the first's 16 bits times
// |n| <= 127 exact), exp(r) by its series to r^7 (relative error below 1e-8 before rounding), times
// 2^n made in the exponent's bits; 0 below -87, where exp(v) leaves the normal floats.
// log1p_unit(e), log(1 + e) for e in [-0.3, 1], as 2 atanh(s) with s = e / (2 + e), |s| <= 1/3:
// the series in s^2 <= 1/9 stops at s^13, leaving an error below 1e-8.
// log_arith(y) for a normal y > 0: y = 2^k m with m in [sqrt(1/2), sqrt(2)) from the float's
// bits, k ln 2 (in the two parts) + log1p_unit(m - 1), m - 1 exact.
// expm1_arith(v), exp(v) - 1 for v <= 88 without cancellation near 0: the series to v^9 where
// |v| < ln 2 / 2 (relative error below 1e-9), exp_arith(v) - 1 beyond (at most 4 ulp there).
#define DEFINE_ARITH(T, IT, CONVERT_INT, CONVERT_T, AS_FLOAT, AS_INT)                              \
    T exp_arith_##T(T v)                                                                           \
    {                                                                                              \
        T n = (clamp(v, (T)-87.0f, (T)88.0f) * 1.44269504f + 12582912.0f) - 12582912.0f;           \
        T r = (v - n * 0.693145752f) - n * 1.42860677e-6f;                                         \
        T p = 1.0f / 720.0f + r * (1.0f / 5040.0f);                                                \
        p = 1.0f / 120.0f + r * p;                                                                 \
        p = 1.0f / 24.0f + r * p;                                                                  \
        p = 1.0f / 6.0f + r * p;                                                                   \
        p = 0.5f + r * p;                                                                          \
        p = 1.0f + r * p;                                                                          \
        p = 1.0f + r * p;                                                                          \
        T y = p * AS_FLOAT((CONVERT_INT(n) + 127) << 23);                                          \
        return v < -87.0f ? (T)0.0f : y;                                                           \
    }                                                                                              \
    T log1p_unit_##T(T e)                                                                          \
    {                                                                                              \
        T s = e / (2.0f + e), s2 = s * s;                                                          \
        T series = 1.0f / 11.0f + s2 * (1.0f / 13.0f);                                             \
        series = 1.0f / 9.0f + s2 * series;                                                        \
        series = 1.0f / 7.0f + s2 * series;                                                        \
        series = 1.0f / 5.0f + s2 * series;                                                        \
        series = 1.0f / 3.0f + s2 * series;                                                        \
        return 2.0f * s * (1.0f + s2 * series);                                                    \
    }                                                                                              \
    T log_arith_##T(T y)                                                                           \
    {                                                                                              \
        IT bits = AS_INT(y);                                                                       \
        IT k = ((bits >> 23) & 0xff) - 127;                                                        \
        T m = AS_FLOAT((bits & 0x7fffff) | 0x3f800000);                                            \
        IT big = m > 1.41421356f;                                                                  \
        m = big ? m * 0.5f : m;                                                                    \
        T kf = CONVERT_T(big ? k + 1 : k);                                                         \
        return kf * 0.693145752f + (kf * 1.42860677e-6f + log1p_unit_##T(m - 1.0f));               \
    }                                                                                              \
    T expm1_arith_##T(T v)                                                                         \
    {                                                                                              \
        T p = 1.0f / 40320.0f + v * (1.0f / 362880.0f);                                            \
        p = 1.0f / 5040.0f + v * p;                                                                \
        p = 1.0f / 720.0f + v * p;                                                                 \
        p = 1.0f / 120.0f + v * p;                                                                 \
        p = 1.0f / 24.0f + v * p;                                                                  \
        p = 1.0f / 6.0f + v * p;                                                                   \
        p = 0.5f + v * p;                                                                          \
        T series = v + v * (v * p);                                                                \
        return fabs(v) < 0.34657359f ? series : exp_arith_##T(v) - 1.0f;                           \
    }

DEFINE_ARITH(float, int, convert_int, convert_float, as_float, as_int)
DEFINE_ARITH(float16, int16, convert_int16, convert_float16, as_float16, as_int16)
#define exp_arith exp_arith_float
#define log1p_unit log1p_unit_float
#define log_arith log_arith_float
#define expm1_arith expm1_arith_float
