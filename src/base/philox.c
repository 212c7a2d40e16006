#include "philox.h"

#include <math.h>

void philox4x32_10(const uint32_t ctr_in[4], const uint32_t key_in[2], uint32_t out[4])
{
    uint32_t c[4] = {ctr_in[0], ctr_in[1], ctr_in[2], ctr_in[3]};
    uint32_t k0 = key_in[0], k1 = key_in[1];
    for (int round = 0; round < 10; round++) {
        uint64_t p0 = (uint64_t)0xD2511F53u * c[0];
        uint64_t p1 = (uint64_t)0xCD9E8D57u * c[2];
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c[1] ^ k0;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c[3] ^ k1;
        c[0] = n0;
        c[1] = (uint32_t)p1;
        c[2] = n2;
        c[3] = (uint32_t)p0;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    for (int i = 0; i < 4; i++)
        out[i] = c[i];
}

void philox_block(uint64_t seed, uint32_t index, uint64_t step, uint32_t stream, uint32_t out[4])
{
    const uint32_t ctr[4] = {index, (uint32_t)step, (uint32_t)(step >> 32), stream};
    const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    philox4x32_10(ctr, key, out);
}

double philox_normal(uint64_t seed, uint32_t index, uint64_t step, uint32_t stream)
{
    uint32_t r[4];
    philox_block(seed, index, step, stream, r);
    double u1 = (double)((r[0] >> 8) + 1u) / 16777216.0;
    double u2 = (double)(r[1] >> 8) / 16777216.0;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

double philox_uniform(uint64_t seed, uint32_t index, uint64_t step, uint32_t stream)
{
    uint32_t r[4];
    philox_block(seed, index, step, stream, r);
    return (double)r[0] / 4294967296.0;
}
