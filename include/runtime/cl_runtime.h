// The OpenCL side of clvae: picking a device, building the embedded kernels, checked calls,
// device buffers, and the CLBlast matrix product every layer uses.
#ifndef CLVAE_CL_RUNTIME_H
#define CLVAE_CL_RUNTIME_H

#include <stdbool.h>
#include <stdio.h>

#include <CL/cl.h>

#include "error.h"

// Device time of one kernel or one GEMM shape, summed over a run (clvae train --profile).
struct clrt_prof {
    char label[96];
    double seconds, flops; // flops: per call, 0 for kernels that are not products
    long calls;
};

#define CLRT_MAX_PROF 64
#define CLRT_MAX_PENDING 4096

#define CLRT_HUGE_BYTES ((size_t)2 << 20)       // a huge page (x86-64, arm64 with 4 KiB pages)
#define CLRT_HOST_OWN_BYTES ((size_t)4 << 20)   // host buffers this large get a mapping each
#define CLRT_HOST_CHUNK_BYTES ((size_t)8 << 20) // the chunks smaller host buffers share

struct host_chunk;

// One context, one in-order queue, one program holding every kernel of cl/.
struct clrt {
    cl_platform_id platform;
    cl_device_id device;
    cl_context context;
    cl_command_queue queue;
    cl_program program;
    int platform_index, device_index;
    char platform_name[128], device_name[128];
    char tuning_source[4200];   // the `clvae tune` file applied, or ""
    cl_device_type device_type; // what clvae plans for: the device's, or $CLVAE_KERNELS's type
    cl_ulong global_mem;
    cl_ulong max_alloc; // the device's largest allocation, or $CLVAE_MAX_ALLOC when that is less
    // What limits max_alloc, for messages: "<device>'s largest allocation", or "the largest
    // allocation CLVAE_MAX_ALLOC=<value> allows".
    char max_alloc_name[192];
    size_t max_work_group;
    cl_uint compute_units;
    size_t reduce_work; // work-items a reduction over rows should fill
    size_t reduce_min;  // elements below which a reduction over rows runs in one pass
    // Split-K weight gradients (vae_splitk_parts): the work-groups a product should fill (0: no
    // split by work-groups), and the fewest rows a part takes.
    size_t splitk_groups, splitk_min_k;
    size_t splitk_bytes; // and the most bytes of both operands' rows a part takes (0: no limit)
    // The columns of a slice of a conv layer's batch (layer_conv.c: about 4 MiB on a CPU, where
    // clvae's kernels run the products; 0: the batch at once).
    size_t slice_bytes;
    size_t allocated; // bytes of device memory created through clrt_buffer
    // The device's memory is the host's (a CPU device with unified memory: PoCL's): clrt_buffer
    // puts buffers in host memory on transparent huge pages, the smaller ones side by side in
    // host_chunk (the one being filled).
    bool host_memory;
    struct host_chunk *host_chunk;
    cl_mem gemm_temp; // products' scratch (CLBlast's, or clvae's parts over k), shared by every
                      // product (the queue is in order)
    size_t gemm_temp_bytes;
    // Products run clvae's own kernels (cl/gemm.cl) rather than CLBlast's: on PoCL's CPU device,
    // where they are several times faster, unless CLVAE_GEMM says clblast (or clvae, anywhere).
    bool own_gemm;
    cl_kernel gemm_kernels[19], gemm_sum; // created on first use
    cl_mem zeros; // zeros_floats of 0: the padding the conv products read (clrt_conv_forward)
    size_t zeros_floats;
    bool profiling; // the queue records events; launches and products are timed
    long launches;  // kernels and CLBlast products enqueued through clrt_launch and clrt_gemm
    // Seconds the host spent in those enqueue calls (a product's arguments and enqueue, a
    // kernel's enqueue; when profiling, clrt_profile_print's share of the wall time).
    double enqueue_seconds;
    struct clrt_prof prof[CLRT_MAX_PROF];
    int n_prof;
    cl_event pending[CLRT_MAX_PENDING]; // events not yet added into prof
    int pending_slot[CLRT_MAX_PENDING], n_pending;
};

// "CL_OUT_OF_RESOURCES" for -5, and so on; CLBlast's own codes too.
const char *clrt_error_name(int status);

// Stops the program with "clvae: <call> failed: <NAME> (file:line)" when status is not success.
void clrt_check(int status, const char *call, const char *file, int line);
#define CL_CHECK(call) clrt_check((int)(call), #call, __FILE__, __LINE__)

// Prints every platform and device with index, name, vendor, type, memory and compute units;
// verbose adds each device's version, driver and limits and what clvae will use there.
int clrt_list_devices(FILE *out, bool verbose, struct clvae_error *err);

// Makes the default device (no --platform, --device or their variables) the n-th GPU of all the
// platforms' GPUs, modulo their number, rather than the first: an MPI rank's local index spreads
// the ranks of a node over its GPUs. Set once, before clrt_open.
void clrt_prefer_gpu(int n);

// The most a platform or device index may be.
#define CLRT_MAX_INDEX 1000

// Checks text as a platform or device selector given by source (an option or a variable, named in
// the message): an index (digits, 0 to CLRT_MAX_INDEX) or a part of a name (anything else not
// empty; what starts with a digit is an index). 0, or -1 with err (CLVAE_EXIT_USAGE).
int clrt_parse_selector(const char *source, const char *text, struct clvae_error *err);

// Opens the device platform and device select: each an index or a part of the name (any case); a
// device name alone is looked for on every platform. NULL takes $CLVAE_PLATFORM / $CLVAE_DEVICE
// (when not empty; checked as the options are, by clrt_parse_selector), and without those the
// default: the first GPU (clrt_prefer_gpu), else the first device. Applies the device's CLBlast
// tuning. A bad selector, CLVAE_GEMM, CLVAE_MAX_ALLOC or CLVAE_CLBLAST_TUNING fails first
// (CLVAE_EXIT_USAGE, naming the option or variable); an index out of range, or a name that
// matches nothing or more than one, fails (CLVAE_EXIT_DEVICE) naming where the choice came from
// (the option, its variable or the default) with a message listing what exists.
int clrt_open(struct clrt *rt, const char *platform, const char *device, bool profiling,
              struct clvae_error *err);

// What runs rt's matrix products, for banners: "clvae's blocked kernels (cl/gemm.cl)" or
// "CLBlast".
const char *clrt_gemm_engine(const struct clrt *rt);

// Applies the CLBlast parameters of data/clblast-tuning.txt whose pattern matches the device's
// name, then those `clvae tune` measured for this device, driver and CLBlast (the file of
// clrt_tuning_path), unless CLVAE_CLBLAST_TUNING=off; returns how many kernels it tuned. A tuning
// file that is unreadable or malformed is ignored with one warning line on stderr.
int clrt_tune_clblast(struct clrt *rt);

// The parameters of one GEMM kernel configuration clvae tunes: CLBlast's XgemmDirect.
struct clrt_gemm_params {
    int wgd, mdimcd, ndimcd, mdimad, ndimbd, kwid, vwmd, vwnd, pada, padb;
};

// Whether p is a configuration CLBlast's XgemmDirect accepts (its tuner's constraints: WGD a
// multiple of KWID, of MDIMCD VWMD, NDIMCD VWND, MDIMAD VWMD, NDIMBD VWND and of the K extents)
// with work-groups of at most max_work_group items.
bool clrt_gemm_params_valid(const struct clrt_gemm_params *p, size_t max_work_group);

// Applies p to rt's device (CLBlastOverrideParameters), and XGEMM_MIN_INDIRECT_SIZE as given.
void clrt_apply_gemm_params(struct clrt *rt, const struct clrt_gemm_params *p, size_t min_indirect);

// Where `clvae tune` keeps the parameters for rt's device: $XDG_CACHE_HOME/clvae (else
// ~/.cache/clvae) / clblast-<hash of the device, driver and CLBlast version>.txt; the key itself
// (what the file's first line must say) into key. -1 when no cache directory can be named.
int clrt_tuning_path(const struct clrt *rt, char *path, size_t len, char *key, size_t key_len);

// A tuning file's text -> its parameters: the first line "# clvae tune: KEY" must match key, then
// "XgemmDirect WGD=.. MDIMCD=.. NDIMCD=.. MDIMAD=.. NDIMBD=.. KWID=.. VWMD=.. VWND=.. PADA=..
// PADB=.." and "GemmRoutine XGEMM_MIN_INDIRECT_SIZE=N"; '#' lines are comments. 0, or -1 with
// why (256 bytes) for anything else.
int clrt_parse_tuning(const char *text, const char *key, struct clrt_gemm_params *p,
                      size_t *min_indirect, char *why);

// Builds the kernels embedded from cl/; on failure the message holds the compiler's log.
int clrt_build(struct clrt *rt, struct clvae_error *err);

void clrt_close(struct clrt *rt);

// A kernel of the program by name; stops the program if it is missing.
cl_kernel clrt_kernel(struct clrt *rt, const char *name);

// The most work-items a work-group of kernel k may have on rt's device.
size_t clrt_kernel_max_group(const struct clrt *rt, cl_kernel k);

// Creates a device buffer of bytes, named in any error ("training set (47040000 bytes)"); checks
// the device's limits first and forces the allocation so that a failure shows up here. Where the
// device's memory is the host's (rt->host_memory), it lives in host memory on transparent huge
// pages.
cl_mem clrt_buffer(struct clrt *rt, size_t bytes, const char *name, struct clvae_error *err);

// One array stored as several device buffers, each within the largest allocation: part i holds
// bytes [start[i], start[i + 1]) of the whole. The parameters, their gradients and Adam's moments
// split at layer boundaries (vae_plan_parts), a data set at whole images.
#define CLRT_MAX_PARTS 64
struct clrt_parts {
    int n;
    size_t start[CLRT_MAX_PARTS + 1];
    cl_mem mem[CLRT_MAX_PARTS];
};

// Creates p's buffers (clrt_buffer: zero-filled), n and start already set, named "name" or, with
// several, "name (part i of n)"; on failure releases those made.
int clrt_parts_create(struct clrt *rt, struct clrt_parts *p, const char *name,
                      struct clvae_error *err);
void clrt_parts_release(struct clrt_parts *p);

// Cuts bytes into parts of whole units of unit bytes, each at most rt->max_alloc: p->n and
// p->start, no buffers. -1 with CLVAE_EXIT_DEVICE naming name when one unit is over the limit or
// more than CLRT_MAX_PARTS parts would be needed.
int clrt_parts_plan(const struct clrt *rt, struct clrt_parts *p, size_t bytes, size_t unit,
                    const char *name, struct clvae_error *err);

// The whole array from or to host memory, part by part; blocking waits for the last.
void clrt_parts_write(struct clrt *rt, const struct clrt_parts *p, const void *host, bool blocking);
void clrt_parts_read(struct clrt *rt, const struct clrt_parts *p, void *host, bool blocking);

// Waits for everything enqueued on rt's queue.
void clrt_finish(struct clrt *rt);

// Waits for rt's queue, if it is open, ignoring a failure: for closing after an error, when
// commands may still be in flight (a driver compiling or running them while the process exits can
// crash in its own threads).
void clrt_drain(struct clrt *rt);

// bytes of host memory to or from mem at byte offset; blocking waits for the copy, else it is
// enqueued and host must stay as it is until the queue has passed it.
void clrt_write(struct clrt *rt, cl_mem mem, size_t offset, size_t bytes, const void *host,
                bool blocking);
void clrt_read(struct clrt *rt, cl_mem mem, size_t offset, size_t bytes, void *host, bool blocking);

// clrt_read without waiting, the queue flushed so that it starts: the event marks its end, for
// clrt_wait.
cl_event clrt_read_event(struct clrt *rt, cl_mem mem, size_t offset, size_t bytes, void *host);

// Waits for ev and releases it.
void clrt_wait(cl_event ev);

// The first n floats of mem set to value, enqueued.
void clrt_fill(struct clrt *rt, cl_mem mem, float value, size_t n);

// mem's first bytes mapped into host memory for writing, their contents discarded (waited for);
// clrt_unmap hands them back to the device.
void *clrt_map_write(struct clrt *rt, cl_mem mem, size_t bytes);
void clrt_unmap(struct clrt *rt, cl_mem mem, void *mapped);

// Release a buffer or a kernel; NULL is ignored.
void clrt_release_buffer(cl_mem mem);
void clrt_release_kernel(cl_kernel kernel);

// Enqueues kernel over global work items (rounded up to a multiple of local when local is given).
void clrt_launch(struct clrt *rt, cl_kernel kernel, cl_uint dims, const size_t *global,
                 const size_t *local);

// Sets argument index of kernel from a value of any type: KARG(k, 0, buffer).
#define KARG(kernel, index, value)                                                                 \
    CL_CHECK(clSetKernelArg((kernel), (index), sizeof(value), &(value)))

// Sets argument index of kernel to bytes of local memory: KARG_LOCAL(k, 5, 256 * sizeof(float)).
#define KARG_LOCAL(kernel, index, bytes) CL_CHECK(clSetKernelArg((kernel), (index), (bytes), NULL))

// A row-major matrix operand of a product: buffer, float offset of its first element, and
// leading dimension (floats from one row to the next).
struct clrt_mat {
    cl_mem mem;
    size_t offset, ld;
};

// C (m, n) = alpha op(A) op(B) + beta C on rt's queue, without waiting; op transposes when ta/tb.
// Through clvae's kernels when rt->own_gemm (but op(B) = B^T), else CLBlast, whose scratch is
// rt's, grown when a product needs more than was reserved (a failure to grow it stops the program
// naming the product and the size).
void clrt_gemm(struct clrt *rt, bool ta, bool tb, size_t m, size_t n, size_t k, float alpha,
               struct clrt_mat a, struct clrt_mat b, float beta, struct clrt_mat c);

// Whether clvae's kernels run C (m, n, k) = op(A) B as one product, not split over k (own_parts):
// then its rows in slices give the same bits as all of them at once.
bool clrt_gemm_unsplit(const struct clrt *rt, size_t m, size_t n, size_t k);

// What follows a product in the same kernel (cl/gemm.cl): column j gets bias[bias.offset + j]
// added, then max(0, .) when relu (CLRT_EPILOGUE_BIAS); or the product is zeroed where bias (m, n,
// rows c.ld apart) is not above 0, before beta C is added (CLRT_EPILOGUE_MASK, a ReLU's mask); or,
// for clrt_gemm_tn_colsum, bias[bias.offset + j] is set to (or, COLSUM_ADD, added) B's column sum
// over k; or (CLRT_EPILOGUE_SAMPLER, clrt_gemm_pair's input gradient) the product is the sampler's
// dz and C receives its dml as cl/sampler.cl's reparameterize_backward writes it, bias being ml
// (rows c.ld apart) and eps, beta_scale and noise_scale that kernel's operands.
enum clrt_epilogue_kind {
    CLRT_EPILOGUE_BIAS,
    CLRT_EPILOGUE_MASK,
    CLRT_EPILOGUE_COLSUM,
    CLRT_EPILOGUE_COLSUM_ADD,
    CLRT_EPILOGUE_SAMPLER
};
struct clrt_epilogue {
    struct clrt_mat bias; // its ld is not used
    bool relu;
    enum clrt_epilogue_kind kind;
    // B^T (n, k), rows wt.ld apart, stored by the product as it reads B (mem NULL: not), where
    // clrt_gemm_keeps_wt says it can.
    struct clrt_mat wt;
    cl_mem eps; // CLRT_EPILOGUE_SAMPLER's
    float beta_scale, noise_scale;
};

// Whether clrt_gemm_bias of these operands runs one launch of clvae's kernels that can store B^T
// (the epilogue's wt) as it reads B: a layer's forward then keeps its transposed weight for its
// backward, with no launch of its own. The same answer for the same arguments.
bool clrt_gemm_keeps_wt(const struct clrt *rt, size_t m, size_t n, size_t k, struct clrt_mat a,
                        struct clrt_mat b);

// C (m, n) = A B, and with clvae's kernels (rt->own_gemm) the epilogue ep folded into the same
// launch: then true. Through CLBlast the product alone: false, and the caller applies ep.
bool clrt_gemm_bias(struct clrt *rt, size_t m, size_t n, size_t k, struct clrt_mat a,
                    struct clrt_mat b, struct clrt_mat c, const struct clrt_epilogue *ep);

// Rows of bytes gathered by index: row i of the batch is row index[start + i] of data ((count,
// cols) bytes) / 255, stored as floats into x (rows, cols) as a product reads them.
struct clrt_gather {
    cl_mem data, index, x;
    int start;
};

// C (m, n) = A B with the epilogue ep (as clrt_gemm_bias), A (m, k) the rows g gathers, and x
// written as gather_images writes it, in one launch of clvae's kernels: true (the same bits as
// the gather then the product). False, with nothing enqueued, where one launch cannot do it
// (CLBlast, a product in parts, the packed kernels).
bool clrt_gemm_bias_gathered(struct clrt *rt, size_t m, size_t n, size_t k,
                             const struct clrt_gather *g, struct clrt_mat b, struct clrt_mat c,
                             const struct clrt_epilogue *ep);

// C (m, n) = A B, zeroed where mask (m, n at mask.offset, rows c.ld apart) is not above 0, + beta
// C: a gradient masked by the ReLU of the layer that gave A's rows their input, in the product's
// launch. Only with clvae's kernels (rt->own_gemm).
void clrt_gemm_masked(struct clrt *rt, size_t m, size_t n, size_t k, struct clrt_mat a,
                      struct clrt_mat b, float beta, struct clrt_mat c, struct clrt_mat mask);

// C (m, n) = A^T B + beta C (A (k, m), B (k, n)) and colsum[colsum.offset + j] = (accumulate:
// += ) the sum of B's column j over its k rows, added in row order as bias_backward adds them
// (the same bits): a weight and a bias gradient in one launch of clvae's kernels. True when so;
// false, with nothing enqueued, where one launch cannot do it (CLBlast, a product clvae's kernels
// split over k, or one that takes the packed kernels).
bool clrt_gemm_tn_colsum(struct clrt *rt, size_t m, size_t n, size_t k, struct clrt_mat a,
                         struct clrt_mat b, float beta, struct clrt_mat c, struct clrt_mat colsum,
                         bool accumulate);

// Adam's step to fold into a weight gradient's launch (clrt_gemm_tn_colsum_adam): the parameters
// and both moments, one buffer each laid out as the gradients, count values; the step's scalars
// as cl/adam.cl's adam_values16 takes them (beta1, 1 - beta1, beta2, 1 - beta2, eps, step size,
// 1 / sqrt(1 - beta2^t), decay).
struct clrt_adam {
    cl_mem params, m, v;
    cl_float8 scalars;
    size_t count;
};

// clrt_gemm_tn_colsum's product (not accumulating) and Adam's step in one launch of clvae's
// kernels (cl/gemm.cl's gemm_tn_sum_adam), the step of a training step: the gradients of C (m, n)
// and of colsum (n), which must be one run of values ([c.offset, colsum.offset + n), rows n
// apart), are not stored but stepped on as they are made; every other value of the gradients
// (its gradient finished by the launches before) is stepped on in the same launch. The same bits
// as the product and then the optimizer's kernel. True when so; false, with nothing enqueued,
// where one launch cannot do it (as clrt_gemm_tn_colsum, or n of 16 or less).
bool clrt_gemm_tn_colsum_adam(struct clrt *rt, size_t m, size_t n, size_t k, struct clrt_mat a,
                              struct clrt_mat b, struct clrt_mat c, struct clrt_mat colsum,
                              const struct clrt_adam *adam);

// Products the Gaussian head's launch may run after the sample (clrt_reparam's next).
#define CLRT_CHAIN 3

// A product C (m, n) = A B with its epilogue (bias, ReLU, wt as clrt_gemm_bias keeps it) on the
// rows the Gaussian head's launch has just written: A the sample z (m, latent, rows latent apart)
// for the first (the decoder's first layer), the C of the one before for the others; n 0: none.
struct clrt_z_product {
    size_t n;
    struct clrt_mat b, c;
    struct clrt_epilogue ep;
};

// A likelihood's *_rows16 kernel (cl/likelihood.cl) on the rows of the last product of a
// clrt_reparam's chain, its out, where on: kind cl/likelihood.cl's LIKELIHOOD_*, x the targets
// (rows, dim), dout the gradient (out's layout), terms its scratch, rec[rec_offset + r] each row's
// sum; the kernel's arguments (src/model/likelihood.c).
struct clrt_rows_likelihood {
    bool on;
    int kind;
    cl_mem x, dout, terms, rec;
    int dim, channels, rec_offset;
    float scale;
};

// The encoder's first layer ahead of the Gaussian head in its launch, where on: the rows g
// gathers (k bytes an image) into g.x as clrt_gemm_bias_gathered stores them, then C (m, n) = x B
// with ep (bias, ReLU; no wt) as it computes them: the head's A (the head's a is then c, and its
// k n).
struct clrt_first_product {
    bool on;
    struct clrt_gather g;
    size_t n, k;
    struct clrt_mat b, c;
    struct clrt_epilogue ep;
};

// The Gaussian sampler's forward (cl/sampler.cl's reparameterize) on the product's rows: z, eps
// (rows, n / 2) and kl[kl_offset + r], Philox keyed as there; then the products next, in order,
// up to the first of n 0, and then lik; first before the head's product.
struct clrt_reparam {
    cl_mem z, eps, kl;
    int kl_offset, row0;
    uint64_t seed, step;
    uint32_t stream;
    float noise_scale;
    struct clrt_z_product next[CLRT_CHAIN];
    struct clrt_rows_likelihood lik;
    struct clrt_first_product first;
};
// How many products after the sample the Gaussian head's launch runs at most on the device:
// CLRT_CHAIN on PoCL's CPU device, 1 elsewhere. A work-item of the chain walks every column of
// its rows' products one after another, and Mesa's rusticl (llvmpipe) ends a kernel's loops after
// 65535 iterations without an error (see own_gemm_default): the default model's output product
// in the chain came out wrong there from its 14th column block on.
int clrt_chain_most(const struct clrt *rt);

// The Gaussian head: ml (m, n = 2 latent, c.ld = n) = A B + bias (ep: its bias, and wt as
// clrt_gemm_bias keeps it), then the sample from it, in one launch of clvae's kernels; then in
// that launch the products s->next in order, as far as one launch of clvae's kernels runs each
// alone (the same bits as clrt_gemm_bias), clrt_chain_most allows and, past the first, their
// weights stay in a core's cache (512 KiB at most), and s->lik where every one of them ran (on
// the last one's C, which must then be its whole rows: offset 0, ld n); and s->first before the
// head, where on. 1 + the products of s->next that ran; 0, with nothing enqueued, where one launch
// cannot run the head, or s->first where on (CLBlast, parts, packed, n over 32, clrt_chain_most
// under 2, a first weight over 512 KiB).
int clrt_gemm_bias_reparameterize(struct clrt *rt, size_t m, size_t n, size_t k, struct clrt_mat a,
                                  struct clrt_mat b, struct clrt_mat c,
                                  const struct clrt_epilogue *ep, const struct clrt_reparam *s);

// A layer's backward as one launch of clvae's kernels (cl/gemm.cl's gemm_pair): its weight and bias
// gradients, c0 = a0^T b0 + (accumulate: c0) (m0, n0 over k0 rows) with colsum = (+=) b0's column
// sums, as clrt_gemm_tn_colsum; and its input gradient c1 = a1 b1 + beta1 c1 (m1, n1, k1) with the
// epilogue ep1 (NULL, CLRT_EPILOGUE_MASK or CLRT_EPILOGUE_SAMPLER). Neither reads what the other
// writes. The same bits as the two products apart.
struct clrt_pair {
    size_t m0, n0, k0;
    struct clrt_mat a0, b0, c0, colsum;
    bool accumulate;
    size_t m1, n1, k1;
    struct clrt_mat a1, b1, c1;
    float beta1;
    const struct clrt_epilogue *ep1;
};
// True when so; false, with nothing enqueued, where one launch cannot do it (CLBlast, a product
// clvae's kernels split over k or run packed).
bool clrt_gemm_pair(struct clrt *rt, const struct clrt_pair *p);

// C_i (m, n) = A_i^T B_i for i < batch: A_i (k, m) at a.offset + i a_stride, B_i (k, n) at
// b.offset + i b_stride, C_i at c.offset + i c_stride (beta 0; CLBlastSgemmStridedBatched unless
// rt->own_gemm).
void clrt_gemm_tn_batched(struct clrt *rt, size_t m, size_t n, size_t k, struct clrt_mat a,
                          size_t a_stride, struct clrt_mat b, size_t b_stride, struct clrt_mat c,
                          size_t c_stride, size_t batch);

// C (m, n) = A^T B + beta C over the k rows of A (k, m) and B (k, n) in parts (split-K): a strided
// batch of products over parts runs of k / parts rows into scratch (parts + 1 products of m x n:
// the rows left over are one more), then their sum, in order.
void clrt_gemm_split(struct clrt *rt, size_t m, size_t n, size_t k, struct clrt_mat a,
                     struct clrt_mat b, float beta, struct clrt_mat c, size_t parts,
                     cl_mem scratch);

// A convolution for the products that read its image in place of its im2col columns (cl/gemm.cl's
// gemm_*_conv*, clvae's kernels only): img (rows, h, w, c), channel-last, and a grid of gh x gw
// positions of a k x k kernel with stride s and padding p over it (for clrt_conv_input_grad, img
// is dy over the grid and c the channels of the conv's input).
struct clrt_conv {
    cl_mem img;
    int c, h, w, gh, gw, k, s, p;
};

// Whether the three below run a conv of positions grid positions (its batch's), n output
// channels and kkc = k k c values a column with the same bits as the products over its columns:
// clvae's kernels, c a multiple of 8, and every product clrt_gemm would run over the columns one
// that these run alike (a forward unsplit over k, a weight gradient as clrt_gemm splits it).
bool clrt_conv_direct(const struct clrt *rt, size_t positions, size_t n, size_t kkc, int c);

// C (m positions, n) = im2col(img) B + beta C with the epilogue ep (bias and ReLU, or NULL; no wt),
// as clrt_gemm_bias (clrt_gemm) runs it over the columns, where clrt_conv_direct says so.
void clrt_conv_forward(struct clrt *rt, size_t m, size_t n, const struct clrt_conv *g,
                       struct clrt_mat b, float beta, struct clrt_mat c,
                       const struct clrt_epilogue *ep);

// C (m = k k c, n) = im2col(img)^T B + beta C over k positions (B: dy, k rows), as clrt_gemm runs
// it over the columns (in parts where it splits it), where clrt_conv_direct says so.
void clrt_conv_weight_grad(struct clrt *rt, size_t m, size_t n, size_t k, const struct clrt_conv *g,
                           struct clrt_mat b, float beta, struct clrt_mat c);

// Makes rt->zeros at least floats of 0 (the padding the conv products read: the channels of the
// image they read, a conv's input or a deconv's dy), up front. 0, or -1 with err
// (CLVAE_EXIT_DEVICE) naming the buffer and its size.
int clrt_reserve_zeros(struct clrt *rt, size_t floats, struct clvae_error *err);

// dst = src, rows of cols floats each (the matrices' own leading dimensions): one enqueue, counted
// and profiled as a launch.
void clrt_copy_rows(struct clrt *rt, struct clrt_mat src, struct clrt_mat dst, size_t rows,
                    size_t cols);

// A conv's input gradient: dx (m pixels, c) = (acc: +=) col2im(dy W^T), g->img being dy (its rows
// gh gw positions, n channels) and wt W^T (n, k k c): the same bits as clrt_gemm's product into
// the columns (unsplit) and cl/conv.cl's conv_col2im, in one launch, no columns (clvae's kernels
// only; m in int). A transposed conv's forward too: g->img its input, wt its weight.
void clrt_conv_input_grad(struct clrt *rt, size_t m, size_t n, const struct clrt_conv *g,
                          struct clrt_mat wt, cl_mem dx, bool acc);

// Makes rt's CLBlast scratch at least bytes, up front, so that a device too small says so before
// any work. 0, or -1 with err (CLVAE_EXIT_DEVICE) naming the buffer and its size.
int clrt_reserve_gemm_temp(struct clrt *rt, size_t bytes, struct clvae_error *err);

// Bytes of scratch CLBlast needs for that product (0 when none, and when clvae's kernels run it).
size_t clrt_gemm_temp_size(struct clrt *rt, bool ta, bool tb, size_t m, size_t n, size_t k,
                           size_t lda, size_t ldb, size_t ldc);

// Adds the device time of every finished profiled command into rt->prof (waits for the queue).
void clrt_profile_collect(struct clrt *rt);

// The profile as a table, slowest first, with each entry's share of wall_seconds.
void clrt_profile_print(struct clrt *rt, FILE *out, double wall_seconds);

#endif
