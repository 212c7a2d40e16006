// Adam (Kingma and Ba, 2015) with bias correction, written as PyTorch's torch.optim.Adam computes it.

// params, grads, m, v (n) -> m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2 (1 - b from the host:
// 1.0f - 0.999f in float is 1.3e-5 off 0.001, and PyTorch's moments use the exact value);
// params -= step_size * m / (sqrt(v) * inv_sqrt_bc2 + eps), where step_size = lr / (1 - b1^t) and
// inv_sqrt_bc2 = 1 / sqrt(1 - b2^t) come from the host. Range: (n).
__kernel void adam_update(__global float *params, __global const float *grads, __global float *m,
                          __global float *v, int n, float beta1, float one_minus_beta1,
                          float beta2, float one_minus_beta2, float eps, float step_size,
                          float inv_sqrt_bc2)
{
    int i = get_global_id(0);
    if (i >= n)
        return;
    float g = grads[i];
    float mi = beta1 * m[i] + one_minus_beta1 * g;
    float vi = beta2 * v[i] + one_minus_beta2 * g * g;
    m[i] = mi;
    v[i] = vi;
    params[i] -= step_size * mi / (sqrt(vi) * inv_sqrt_bc2 + eps);
}
