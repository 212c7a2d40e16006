// Counter-based random numbers: Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as
// 1, 2, 3", SC 2011). Every draw is a pure function of (key, counter), so any work-item can draw
// its own numbers, in any order, and the host can reproduce them (src/philox.c).

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

// out (n) = N(0, 1) draws, element i from counter (i, step, stream).
__kernel void sample_normal(__global float *out, int n, uint seed_lo, uint seed_hi, uint step_lo,
                            uint step_hi, uint stream)
{
    int i = get_global_id(0);
    if (i >= n)
        return;
    out[i] = philox_normal((uint4)((uint)i, step_lo, step_hi, stream), (uint2)(seed_lo, seed_hi));
}
