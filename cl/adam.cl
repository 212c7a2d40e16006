// Adam (Kingma and Ba, 2015) with bias correction, written as PyTorch's torch.optim.Adam computes
// it, and AdamW with its decoupled weight decay: the step kernels of src/model/optimizer.c's kinds.

// params, grads, m, v (n) -> m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2 (1 - b from the host:
// 1.0f - 0.999f in float is 1.3e-5 off 0.001, and PyTorch's moments use the exact value);
// params -= step_size * m / (sqrt(v) * inv_sqrt_bc2 + eps), where step_size = lr / (1 - b1^t) and
// inv_sqrt_bc2 = 1 / sqrt(1 - b2^t) come from the host. Range: (n).

// One update of the values at i (float or float16 T, through LOAD and STORE) with gradient G: the
// parameter is first multiplied by decay, AdamW's decoupled weight decay 1 - lr weight_decay (1 for
// Adam, exact).
#define ADAM_STEP(T, G, LOAD, STORE)                                                               \
    {                                                                                              \
        T gi = (G);                                                                                \
        T mi = beta1 * LOAD(m) + one_minus_beta1 * gi;                                             \
        T vi = beta2 * LOAD(v) + one_minus_beta2 * gi * gi;                                        \
        STORE(mi, m);                                                                              \
        STORE(vi, v);                                                                              \
        T p = LOAD(params) * decay;                                                                \
        STORE(p - step_size * mi / (sqrt(vi) * inv_sqrt_bc2 + eps), params);                       \
    }
#define LOAD1(x) x[i]
#define STORE1(y, x) x[i] = (y)
#define LOAD16(x) vload16(0, x + i)
#define STORE16(y, x) vstore16((y), 0, x + i)
// The step's scalars from h: beta1, 1 - beta1, beta2, 1 - beta2, eps, step_size, inv_sqrt_bc2,
// decay, as the kernels below take them.
#define ADAM_SCALARS(h)                                                                            \
    float beta1 = (h).s0, one_minus_beta1 = (h).s1, beta2 = (h).s2, one_minus_beta2 = (h).s3;      \
    float eps = (h).s4, step_size = (h).s5, inv_sqrt_bc2 = (h).s6, decay = (h).s7;

// The step on the 16 values at params, m, v with gradient g, and on one: what adam_update16 does
// there (it calls them), which cl/gemm.cl's gemm_tn_sum_adam calls as the gradient is made.
void adam_values16(float16 g, __global float *params, __global float *m, __global float *v,
                   float8 h)
{
    ADAM_SCALARS(h)
    int i = 0;
    ADAM_STEP(float16, g, LOAD16, STORE16)
}

void adam_value(float g, __global float *params, __global float *m, __global float *v, float8 h)
{
    ADAM_SCALARS(h)
    int i = 0;
    ADAM_STEP(float, g, LOAD1, STORE1)
}

// The update of Adam and AdamW (torch.optim.AdamW: params *= decay first, then Adam's step with
// the same arguments; Adam passes decay 1, so AdamW with weight decay 0 runs the very same code
// and gives the same bits on every device; as two kernels, one for each, NVIDIA's compiler gave
// them different bits). adam_update takes a value a work-item, adam_update16 (a CPU's) 16 as one
// float16, the same operations in each lane (on PoCL sqrt and division correctly rounded
// in both: the same bits), which PoCL ran as a scalar loop in adam_update (107 us against 47 for
// the default model's 205,604). Range: (n), and ((n + 15) / 16).
__kernel void adam_update(__global float *params, __global const float *grads, __global float *m,
                          __global float *v, int n, float beta1, float one_minus_beta1, float beta2,
                          float one_minus_beta2, float eps, float step_size, float inv_sqrt_bc2,
                          float decay)
{
    int i = get_global_id(0);
    if (i < n)
        ADAM_STEP(float, grads[i], LOAD1, STORE1)
}

__kernel void adam_update16(__global float *params, __global const float *grads, __global float *m,
                            __global float *v, int n, float beta1, float one_minus_beta1,
                            float beta2, float one_minus_beta2, float eps, float step_size,
                            float inv_sqrt_bc2, float decay)
{
    float8 h = (float8)(beta1, one_minus_beta1, beta2, one_minus_beta2, eps, step_size,
                        inv_sqrt_bc2, decay);
    int i = get_global_id(0) * 16;
    if (i + 16 <= n) {
        adam_values16(vload16(0, grads + i), params + i, m + i, v + i, h);
        return;
    }
    for (; i < n; i++)
        adam_value(grads[i], params + i, m + i, v + i, h);
}

// --clip-grad (src/model/optimizer.c, optimizer_clip): the gradient's global norm over all its
// parts in three launches, no read-back. Sums are in a fixed order, so a run repeats bit for bit.
// grads (n: one part) -> partial[offset + g] = the sum of squares of work-group g's share
// (a grid-stride loop). Range: (groups * local), local a power of two; partial has local floats.
__kernel void grad_sumsq(__global const float *grads, int n, __global float *partial, int offset,
                         __local float *scratch)
{
    float s = 0.0f;
    for (int i = get_global_id(0); i < n; i += get_global_size(0)) {
        float g = grads[i];
        s += g * g;
    }
    float total = work_group_sum(scratch, s);
    if (get_local_id(0) == 0)
        partial[offset + get_group_id(0)] = total;
}

// partial (count) -> scale[0] = min(1, max_norm / norm), scale[1] = norm, the square root of
// their sum. Range: (local), one work-group.
__kernel void grad_clip_scale(__global const float *partial, int count, float max_norm,
                              __global float *scale, __local float *scratch)
{
    float s = 0.0f;
    for (int i = get_local_id(0); i < count; i += get_local_size(0))
        s += partial[i];
    float total = work_group_sum(scratch, s);
    if (get_local_id(0) == 0) {
        float norm = sqrt(total);
        scale[0] = norm > max_norm ? max_norm / norm : 1.0f;
        scale[1] = norm;
    }
}

// grads (n) *= scale[0]. Range: (n).
__kernel void grad_scale(__global float *grads, int n, __global const float *scale)
{
    int i = get_global_id(0);
    if (i < n)
        grads[i] *= scale[0];
}
