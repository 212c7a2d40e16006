// MAP_ANONYMOUS and MADV_HUGEPAGE (host_buffer), beyond the POSIX level meson.build sets.
#define _DEFAULT_SOURCE
#include "cl_runtime.h"

#include <ctype.h>
#include <errno.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <clblast_c.h>

#include "regular_file.h"

extern const char *const clvae_cl_sources[];
extern const char *const clvae_cl_names[];
extern const size_t clvae_cl_count;
extern const char *const clvae_tuning_sources[];

const char *clrt_error_name(int status)
{
    switch (status) {
#define NAME(code)                                                                                 \
    case code: return #code
        NAME(CL_SUCCESS);
        NAME(CL_DEVICE_NOT_FOUND);
        NAME(CL_DEVICE_NOT_AVAILABLE);
        NAME(CL_COMPILER_NOT_AVAILABLE);
        NAME(CL_MEM_OBJECT_ALLOCATION_FAILURE);
        NAME(CL_OUT_OF_RESOURCES);
        NAME(CL_OUT_OF_HOST_MEMORY);
        NAME(CL_PROFILING_INFO_NOT_AVAILABLE);
        NAME(CL_MEM_COPY_OVERLAP);
        NAME(CL_IMAGE_FORMAT_MISMATCH);
        NAME(CL_IMAGE_FORMAT_NOT_SUPPORTED);
        NAME(CL_BUILD_PROGRAM_FAILURE);
        NAME(CL_MAP_FAILURE);
        NAME(CL_MISALIGNED_SUB_BUFFER_OFFSET);
        NAME(CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST);
        NAME(CL_COMPILE_PROGRAM_FAILURE);
        NAME(CL_LINKER_NOT_AVAILABLE);
        NAME(CL_LINK_PROGRAM_FAILURE);
        NAME(CL_DEVICE_PARTITION_FAILED);
        NAME(CL_KERNEL_ARG_INFO_NOT_AVAILABLE);
        NAME(CL_INVALID_VALUE);
        NAME(CL_INVALID_DEVICE_TYPE);
        NAME(CL_INVALID_PLATFORM);
        NAME(CL_INVALID_DEVICE);
        NAME(CL_INVALID_CONTEXT);
        NAME(CL_INVALID_QUEUE_PROPERTIES);
        NAME(CL_INVALID_COMMAND_QUEUE);
        NAME(CL_INVALID_HOST_PTR);
        NAME(CL_INVALID_MEM_OBJECT);
        NAME(CL_INVALID_IMAGE_FORMAT_DESCRIPTOR);
        NAME(CL_INVALID_IMAGE_SIZE);
        NAME(CL_INVALID_SAMPLER);
        NAME(CL_INVALID_BINARY);
        NAME(CL_INVALID_BUILD_OPTIONS);
        NAME(CL_INVALID_PROGRAM);
        NAME(CL_INVALID_PROGRAM_EXECUTABLE);
        NAME(CL_INVALID_KERNEL_NAME);
        NAME(CL_INVALID_KERNEL_DEFINITION);
        NAME(CL_INVALID_KERNEL);
        NAME(CL_INVALID_ARG_INDEX);
        NAME(CL_INVALID_ARG_VALUE);
        NAME(CL_INVALID_ARG_SIZE);
        NAME(CL_INVALID_KERNEL_ARGS);
        NAME(CL_INVALID_WORK_DIMENSION);
        NAME(CL_INVALID_WORK_GROUP_SIZE);
        NAME(CL_INVALID_WORK_ITEM_SIZE);
        NAME(CL_INVALID_GLOBAL_OFFSET);
        NAME(CL_INVALID_EVENT_WAIT_LIST);
        NAME(CL_INVALID_EVENT);
        NAME(CL_INVALID_OPERATION);
        NAME(CL_INVALID_GL_OBJECT);
        NAME(CL_INVALID_BUFFER_SIZE);
        NAME(CL_INVALID_MIP_LEVEL);
        NAME(CL_INVALID_GLOBAL_WORK_SIZE);
        NAME(CL_INVALID_PROPERTY);
        NAME(CL_INVALID_IMAGE_DESCRIPTOR);
        NAME(CL_INVALID_COMPILER_OPTIONS);
        NAME(CL_INVALID_LINKER_OPTIONS);
        NAME(CL_INVALID_DEVICE_PARTITION_COUNT);
    case -1001:
        return "CL_PLATFORM_NOT_FOUND_KHR";
        NAME(CLBlastNotImplemented);
        NAME(CLBlastInvalidMatrixA);
        NAME(CLBlastInvalidMatrixB);
        NAME(CLBlastInvalidMatrixC);
        NAME(CLBlastInvalidVectorX);
        NAME(CLBlastInvalidVectorY);
        NAME(CLBlastInvalidDimension);
        NAME(CLBlastInvalidLeadDimA);
        NAME(CLBlastInvalidLeadDimB);
        NAME(CLBlastInvalidLeadDimC);
        NAME(CLBlastInvalidIncrementX);
        NAME(CLBlastInvalidIncrementY);
        NAME(CLBlastInsufficientMemoryA);
        NAME(CLBlastInsufficientMemoryB);
        NAME(CLBlastInsufficientMemoryC);
        NAME(CLBlastInsufficientMemoryX);
        NAME(CLBlastInsufficientMemoryY);
        NAME(CLBlastInsufficientMemoryTemp);
        NAME(CLBlastInvalidBatchCount);
        NAME(CLBlastInvalidOverrideKernel);
        NAME(CLBlastMissingOverrideParameter);
        NAME(CLBlastInvalidLocalMemUsage);
        NAME(CLBlastNoHalfPrecision);
        NAME(CLBlastNoDoublePrecision);
        NAME(CLBlastInvalidVectorScalar);
        NAME(CLBlastInsufficientMemoryScalar);
        NAME(CLBlastDatabaseError);
        NAME(CLBlastUnknownError);
        NAME(CLBlastUnexpectedError);
#undef NAME
    default: return "an unknown OpenCL status";
    }
}

void clrt_check(int status, const char *call, const char *file, int line)
{
    if (status == CL_SUCCESS)
        return;
    // Only the function's name: the argument list is noise in a one-line message.
    int len = (int)strcspn(call, "(");
    clvae_fatal(status == CL_MEM_OBJECT_ALLOCATION_FAILURE || status == CL_OUT_OF_RESOURCES
                    ? CLVAE_EXIT_DEVICE
                    : CLVAE_EXIT_FAILURE,
                "%.*s failed: %s (%d) at %s:%d", len, call, clrt_error_name(status), status, file,
                line);
}

static const char *device_type_name(cl_device_type type)
{
    if (type & CL_DEVICE_TYPE_GPU)
        return "GPU";
    if (type & CL_DEVICE_TYPE_CPU)
        return "CPU";
    if (type & CL_DEVICE_TYPE_ACCELERATOR)
        return "accelerator";
    return "other";
}

// Fills ids with up to max platforms; fails with advice when there are none.
static int get_platforms(cl_platform_id *ids, cl_uint max, cl_uint *count, struct clvae_error *err)
{
    cl_int status = clGetPlatformIDs(max, ids, count);
    if (status == -1001 || (status == CL_SUCCESS && *count == 0))
        return clvae_fail(err, CLVAE_EXIT_DEVICE,
                          "no OpenCL platform found: install pocl-opencl-icd (runs on the CPU) "
                          "or your GPU's OpenCL driver");
    if (status != CL_SUCCESS)
        return clvae_fail(err, CLVAE_EXIT_DEVICE, "clGetPlatformIDs failed: %s",
                          clrt_error_name(status));
    if (*count > max)
        *count = max;
    return 0;
}

// Devices of one platform (any type); 0 when it has none.
static cl_uint get_devices(cl_platform_id platform, cl_device_id *ids, cl_uint max)
{
    cl_uint count = 0;
    cl_int status = clGetDeviceIDs(platform, CL_DEVICE_TYPE_ALL, max, ids, &count);
    if (status == CL_DEVICE_NOT_FOUND)
        return 0;
    CL_CHECK(status);
    return count < max ? count : max;
}

// A string the driver reports, cut to len - 1 bytes however long it is (clGetDeviceInfo and
// clGetPlatformInfo refuse a buffer shorter than the whole string with CL_INVALID_VALUE).
static void info_string(cl_device_id device, cl_platform_id platform, cl_uint what, char *buf,
                        size_t len)
{
    size_t need = 0;
    if (device)
        CL_CHECK(clGetDeviceInfo(device, what, 0, NULL, &need));
    else
        CL_CHECK(clGetPlatformInfo(platform, what, 0, NULL, &need));
    char *full = xmalloc(need + 1);
    if (device)
        CL_CHECK(clGetDeviceInfo(device, what, need, full, NULL));
    else
        CL_CHECK(clGetPlatformInfo(platform, what, need, full, NULL));
    full[need] = '\0';
    snprintf(buf, len, "%s", full);
    free(full);
}

static void device_string(cl_device_id device, cl_device_info what, char *buf, size_t len)
{
    info_string(device, NULL, what, buf, len);
}

static void platform_string(cl_platform_id platform, cl_platform_info what, char *buf, size_t len)
{
    info_string(NULL, platform, what, buf, len);
}

// "platform P device D: name (vendor), type, memory, compute units" for each device.
static int tuning_lines(const char *device_name, cl_device_id device, char *first);

// What clvae reads of a device and what it will use there, for clvae devices --verbose.
static int tuning_key_path(cl_platform_id platform, cl_device_id device, const char *name,
                           char *path, size_t len, char *key, size_t key_len);

// Whether clvae's own products (cl/gemm.cl) run a device's products unless CLVAE_GEMM says: on
// PoCL's CPU device, where they were measured 3-9x faster than CLBlast's. Not on other CPU
// implementations: Mesa's rusticl (llvmpipe) ends every loop after 65535 iterations, and these
// kernels' sums over a k of 2048 or more came out wrong there, without an error.
static bool own_gemm_default(const char *platform_name, bool cpu)
{
    return cpu && strstr(platform_name, "Portable Computing Language") != NULL;
}

static void print_device_details(FILE *out, cl_platform_id platform, cl_device_id device,
                                 const char *name, cl_device_type type, cl_uint units)
{
    char version[128], driver[128], first[64] = "";
    cl_ulong max_alloc, local_mem;
    size_t max_wg;
    cl_uint align, doubles;
    cl_bool images;
    device_string(device, CL_DEVICE_VERSION, version, sizeof version);
    device_string(device, CL_DRIVER_VERSION, driver, sizeof driver);
    CL_CHECK(
        clGetDeviceInfo(device, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof max_alloc, &max_alloc, NULL));
    CL_CHECK(clGetDeviceInfo(device, CL_DEVICE_LOCAL_MEM_SIZE, sizeof local_mem, &local_mem, NULL));
    CL_CHECK(clGetDeviceInfo(device, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof max_wg, &max_wg, NULL));
    CL_CHECK(clGetDeviceInfo(device, CL_DEVICE_MEM_BASE_ADDR_ALIGN, sizeof align, &align, NULL));
    CL_CHECK(clGetDeviceInfo(device, CL_DEVICE_PREFERRED_VECTOR_WIDTH_DOUBLE, sizeof doubles,
                             &doubles, NULL));
    CL_CHECK(clGetDeviceInfo(device, CL_DEVICE_IMAGE_SUPPORT, sizeof images, &images, NULL));
    fprintf(out, "    %s, driver %s\n", version, driver);
    fprintf(out,
            "    largest allocation %.2f GiB, work-groups up to %zu, local memory %llu KiB, "
            "buffer alignment %u bits, doubles %s, images %s\n",
            (double)max_alloc / (1024.0 * 1024.0 * 1024.0), max_wg,
            (unsigned long long)(local_mem / 1024), align, doubles ? "yes" : "no",
            images ? "yes" : "no");
    bool cpu = type & CL_DEVICE_TYPE_CPU;
    const char *kernels_env = getenv("CLVAE_KERNELS"), *plan = "";
    if (kernels_env && (!strcmp(kernels_env, "cpu") || !strcmp(kernels_env, "gpu"))) {
        cpu = !strcmp(kernels_env, "cpu");
        plan = cpu ? " a CPU's kernels and plan (CLVAE_KERNELS=cpu);"
                   : " a GPU's kernels and plan (CLVAE_KERNELS=gpu);";
    }
    char pname[128] = "";
    platform_string(platform, CL_PLATFORM_NAME, pname, sizeof pname);
    int tuned = tuning_lines(name, NULL, first);
    const char *env = getenv("CLVAE_CLBLAST_TUNING");
    bool off = env && !strcmp(env, "off");
    // What runs the products there: CLVAE_GEMM when it is one clrt_open accepts, else the default.
    const char *gemm_env = getenv("CLVAE_GEMM"), *products;
    if (gemm_env && strcmp(gemm_env, "clvae") == 0)
        products = "clvae's kernels (cl/gemm.cl; CLVAE_GEMM=clvae)";
    else if (gemm_env && strcmp(gemm_env, "clblast") == 0)
        products = "CLBlast (CLVAE_GEMM=clblast)";
    else if (own_gemm_default(pname, cpu))
        products = "clvae's kernels (cl/gemm.cl), as on PoCL's CPU device";
    else
        products = "CLBlast, as on every device but PoCL's CPU device";
    const char *limit_env = getenv("CLVAE_MAX_ALLOC");
    fprintf(out,
            "    clvae uses:%s matrix products by %s; bias gradients in %s; row sums in "
            "work-groups of %s; buffers larger than the largest allocation%s in parts; CLBlast "
            "parameters %s%s%s%s\n",
            plan, products,
            cpu ? "parts filling 1024 work-items a compute unit (one pass below 2^18 elements)"
                : "parts filling 256 work-items a compute unit",
            cpu ? "1 (a CPU runs them one after another)" : "up to 256 (a power of two)",
            limit_env && *limit_env ? " (or than CLVAE_MAX_ALLOC, if less)" : "",
            off     ? "from CLBlast's own database (CLVAE_CLBLAST_TUNING=off)"
            : tuned ? "of data/clblast-tuning.txt, entry '"
                    : "from CLBlast's own database (no entry in data/clblast-tuning.txt)",
            !off && tuned ? first : "", !off && tuned ? "'" : "",
            units ? "" : " (no compute units reported)");
    char path[4200], key[512];
    struct stat st;
    if (tuning_key_path(platform, device, name, path, sizeof path, key, sizeof key) == 0)
        fprintf(out, "    clvae tune's file: %s (%s), key \"%s\"\n", path,
                stat(path, &st) != 0  ? "none yet"
                : S_ISREG(st.st_mode) ? "present"
                                      : "not a regular file: ignored",
                key);
}

static void print_device_table(FILE *out, cl_platform_id *platforms, cl_uint n_platforms,
                               bool verbose)
{
    for (cl_uint p = 0; p < n_platforms; p++) {
        char pname[128];
        platform_string(platforms[p], CL_PLATFORM_NAME, pname, sizeof pname);
        pname[sizeof pname - 1] = '\0';
        fprintf(out, "platform %u: %s\n", p, pname);
        cl_device_id devices[16];
        cl_uint n_devices = get_devices(platforms[p], devices, 16);
        if (n_devices == 0)
            fprintf(out, "  (no devices)\n");
        for (cl_uint d = 0; d < n_devices; d++) {
            char name[128], vendor[128];
            cl_device_type type;
            cl_ulong mem;
            cl_uint units;
            device_string(devices[d], CL_DEVICE_NAME, name, sizeof name);
            device_string(devices[d], CL_DEVICE_VENDOR, vendor, sizeof vendor);
            CL_CHECK(clGetDeviceInfo(devices[d], CL_DEVICE_TYPE, sizeof type, &type, NULL));
            CL_CHECK(
                clGetDeviceInfo(devices[d], CL_DEVICE_GLOBAL_MEM_SIZE, sizeof mem, &mem, NULL));
            CL_CHECK(clGetDeviceInfo(devices[d], CL_DEVICE_MAX_COMPUTE_UNITS, sizeof units, &units,
                                     NULL));
            fprintf(out, "  device %u: %s (%s), %s, %.1f GiB, %u compute units\n", d, name, vendor,
                    device_type_name(type), (double)mem / (1024.0 * 1024.0 * 1024.0), units);
            if (verbose)
                print_device_details(out, platforms[p], devices[d], name, type, units);
        }
    }
}

int clrt_list_devices(FILE *out, bool verbose, struct clvae_error *err)
{
    cl_platform_id platforms[16];
    cl_uint n_platforms;
    if (get_platforms(platforms, 16, &n_platforms, err))
        return -1;
    print_device_table(out, platforms, n_platforms, verbose);
    return 0;
}

// Writes the device table into err's message after a one-line reason.
static int fail_listing(struct clvae_error *err, const char *reason, cl_platform_id *platforms,
                        cl_uint n_platforms)
{
    char table[CLVAE_ERROR_MAX - 200];
    FILE *mem = fmemopen(table, sizeof table, "w");
    if (mem) {
        print_device_table(mem, platforms, n_platforms, false);
        fclose(mem);
        table[sizeof table - 1] = '\0';
        size_t len = strlen(table);
        if (len && table[len - 1] == '\n')
            table[len - 1] = '\0';
    } else {
        table[0] = '\0';
    }
    return clvae_fail_listing(err, CLVAE_EXIT_DEVICE, reason, table);
}

// Whether name contains part, ignoring ASCII case.
static bool name_has(const char *name, const char *part)
{
    size_t n = strlen(part);
    for (; *name; name++) {
        size_t i = 0;
        while (i < n && name[i] &&
               tolower((unsigned char)name[i]) == tolower((unsigned char)part[i]))
            i++;
        if (i == n)
            return true;
    }
    return false;
}

static bool all_digits(const char *s)
{
    for (; *s; s++)
        if (!isdigit((unsigned char)*s))
            return false;
    return true;
}

int clrt_parse_selector(const char *source, const char *text, struct clvae_error *err)
{
    if (text[0] == '\0')
        return clvae_fail(err, CLVAE_EXIT_USAGE, "%s: empty (an index or a part of the name)",
                          source);
    if (!isdigit((unsigned char)text[0]))
        return 0;
    if (!all_digits(text))
        return clvae_fail(err, CLVAE_EXIT_USAGE, "%s: '%s' is not an integer", source, text);
    // Digits only, so strtoul reads them all; past ULONG_MAX it says ERANGE.
    errno = 0;
    unsigned long v = strtoul(text, NULL, 10);
    if (errno == ERANGE || v > CLRT_MAX_INDEX)
        return clvae_fail(err, CLVAE_EXIT_USAGE, "%s: %s is out of range (0 to %d)", source, text,
                          CLRT_MAX_INDEX);
    return 0;
}

// Where a platform or a device comes from, as messages name it.
struct choice {
    const char *text;   // the index or part of a name given; NULL: the default
    const char *source; // "--device", "CLVAE_DEVICE" or "the default device"
    int index;          // text as an index, or -1 (a name, or the default)
};

// The option's value, else the variable's (not empty), else the default, checked as an option's
// value is (clrt_parse_selector) and named after where it came from.
static int choose(const char *given, const char *option, const char *variable, const char *fallback,
                  struct choice *c, struct clvae_error *err)
{
    *c = (struct choice){.text = given, .source = option, .index = -1};
    if (!c->text || !*c->text)
        *c = (struct choice){.text = getenv(variable), .source = variable, .index = -1};
    if (!c->text || !*c->text) {
        *c = (struct choice){.source = fallback, .index = -1};
        return 0;
    }
    if (clrt_parse_selector(c->source, c->text, err))
        return -1;
    if (isdigit((unsigned char)c->text[0]))
        c->index = (int)strtol(c->text, NULL, 10);
    return 0;
}

// What the environment sets besides the device, read and checked before any device is looked at.
struct env_settings {
    const char *gemm;             // CLVAE_GEMM: "clblast", "clvae", or NULL (the default)
    const char *kernels;          // CLVAE_KERNELS: "cpu", "gpu", or NULL (the device's type)
    unsigned long long max_alloc; // CLVAE_MAX_ALLOC in bytes, or 0 (unset)
    const char *max_alloc_text;   // as given
};

// $CLVAE_MAX_ALLOC, bytes with an optional K, M or G (powers of 1024): the most clvae allocates at
// once when that is less than the device's largest allocation. What a device with a smaller limit
// does, on this one: the tests split buffers on PoCL with it. 0 when unset.
static int read_max_alloc(unsigned long long *bytes, struct clvae_error *err)
{
    const char *text = getenv("CLVAE_MAX_ALLOC");
    *bytes = 0;
    if (!text || !*text)
        return 0;
    char *end = NULL;
    errno = 0;
    unsigned long long v = isdigit((unsigned char)*text) ? strtoull(text, &end, 10) : 0;
    int shift = 0;
    if (v && *end && !end[1])
        shift = *end == 'K' ? 10 : *end == 'M' ? 20 : *end == 'G' ? 30 : -1;
    else if (v && *end)
        shift = -1;
    if (!v || errno || shift < 0 || v > (ULLONG_MAX >> shift))
        return clvae_fail(err, CLVAE_EXIT_USAGE,
                          "CLVAE_MAX_ALLOC='%.64s': expected a number of bytes above 0 and below "
                          "2^64, with an optional K, M or G",
                          text);
    *bytes = v << shift;
    return 0;
}

// *value = $name when it is a or b, NULL when unset or empty; another value exits 2 naming the
// variable, what it chooses (what) and the two it takes.
static int env_choice(const char *name, const char *a, const char *b, const char *what,
                      const char **value, struct clvae_error *err)
{
    const char *v = getenv(name);
    if (v && *v && strcmp(v, a) != 0 && strcmp(v, b) != 0)
        return clvae_fail(err, CLVAE_EXIT_USAGE, "%s='%.64s': expected %s or %s (%s)", name, v, a,
                          b, what);
    *value = v && *v ? v : NULL;
    return 0;
}

// CLVAE_GEMM, CLVAE_KERNELS, CLVAE_MAX_ALLOC and CLVAE_CLBLAST_TUNING: a value they do not take
// is a usage error naming the variable.
static int read_env_settings(struct env_settings *env, struct clvae_error *err)
{
    *env = (struct env_settings){.max_alloc_text = getenv("CLVAE_MAX_ALLOC")};
    if (env_choice("CLVAE_GEMM", "clblast", "clvae",
                   "which runs the matrix products; unset, clvae on PoCL's CPU device and CLBlast "
                   "elsewhere",
                   &env->gemm, err) ||
        env_choice("CLVAE_KERNELS", "cpu", "gpu",
                   "whose kernel variants and work plan clvae runs; unset, those of the device's "
                   "type",
                   &env->kernels, err))
        return -1;
    const char *tuning = getenv("CLVAE_CLBLAST_TUNING");
    if (tuning && *tuning && strcmp(tuning, "off") != 0)
        return clvae_fail(err, CLVAE_EXIT_USAGE,
                          "CLVAE_CLBLAST_TUNING='%.64s': expected off (CLBlast's own parameters, "
                          "neither data/clblast-tuning.txt's nor clvae tune's) or nothing",
                          tuning);
    return read_max_alloc(&env->max_alloc, err);
}

// Which GPU the default choice takes: the n-th of all the platforms' GPUs, modulo their number.
static int preferred_gpu;

void clrt_prefer_gpu(int n)
{
    preferred_gpu = n < 0 ? 0 : n;
}

// The platform and device of GPU number want % (the GPUs there are), counting every platform's in
// order; false when there is none.
static bool nth_gpu(cl_platform_id *platforms, cl_uint n_platforms, int want, int *platform,
                    int *device)
{
    int count = 0;
    for (int pass = 0; pass < 2; pass++) {
        int seen = 0;
        for (cl_uint p = 0; p < n_platforms; p++) {
            cl_device_id devices[16];
            cl_uint n_devices = get_devices(platforms[p], devices, 16);
            for (cl_uint d = 0; d < n_devices; d++) {
                cl_device_type type;
                CL_CHECK(clGetDeviceInfo(devices[d], CL_DEVICE_TYPE, sizeof type, &type, NULL));
                if (!(type & CL_DEVICE_TYPE_GPU))
                    continue;
                if (pass == 1 && seen == want % count) {
                    *platform = (int)p, *device = (int)d;
                    return true;
                }
                seen++;
            }
        }
        count = seen;
        if (count == 0)
            return false;
    }
    return false;
}

// The platform c names, by index or as the one whose name holds c->text; -1 for the default.
static int find_platform(const struct choice *c, cl_platform_id *platforms, cl_uint n_platforms,
                         int *platform, struct clvae_error *err)
{
    char reason[256], name[128];
    *platform = -1;
    if (!c->text)
        return 0;
    if (c->index >= 0) {
        if ((cl_uint)c->index >= n_platforms) {
            snprintf(reason, sizeof reason, "%s %s: no such platform", c->source, c->text);
            return fail_listing(err, reason, platforms, n_platforms);
        }
        *platform = c->index;
        return 0;
    }
    int found = 0;
    for (cl_uint p = 0; p < n_platforms; p++) {
        platform_string(platforms[p], CL_PLATFORM_NAME, name, sizeof name);
        name[sizeof name - 1] = '\0';
        if (name_has(name, c->text))
            *platform = (int)p, found++;
    }
    if (found == 1)
        return 0;
    snprintf(reason, sizeof reason, "%s %s: matches %s platform's name", c->source, c->text,
             found ? "more than one" : "no");
    return fail_listing(err, reason, platforms, n_platforms);
}

// The one device whose name holds c->text: on *platform unless that is -1, else on any (which
// then sets *platform).
static int find_device_by_name(const struct choice *c, cl_platform_id *platforms,
                               cl_uint n_platforms, int *platform, int *device,
                               struct clvae_error *err)
{
    char reason[256], name[128];
    int found = 0, on = *platform;
    for (cl_uint p = 0; p < n_platforms; p++) {
        if (on >= 0 && (int)p != on)
            continue;
        cl_device_id devices[16];
        cl_uint n_devices = get_devices(platforms[p], devices, 16);
        for (cl_uint d = 0; d < n_devices; d++) {
            device_string(devices[d], CL_DEVICE_NAME, name, sizeof name);
            if (name_has(name, c->text))
                *platform = (int)p, *device = (int)d, found++;
        }
    }
    if (found == 1)
        return 0;
    snprintf(reason, sizeof reason, "%s %s: matches %s device's name", c->source, c->text,
             found ? "more than one" : "no");
    return fail_listing(err, reason, platforms, n_platforms);
}

// Nothing chosen: the preferred GPU (the first unless clrt_prefer_gpu said otherwise), else the
// first device of any platform.
static int find_default(cl_platform_id *platforms, cl_uint n_platforms, int *platform, int *device,
                        struct clvae_error *err)
{
    if (nth_gpu(platforms, n_platforms, preferred_gpu, platform, device))
        return 0;
    for (cl_uint p = 0; p < n_platforms; p++) {
        cl_device_id devices[16];
        if (get_devices(platforms[p], devices, 16) > 0) {
            *platform = (int)p, *device = 0;
            return 0;
        }
    }
    return fail_listing(err, "no OpenCL device found", platforms, n_platforms);
}

// The platform and device pc and dc choose (an index alone means platform 0 or device 0), as
// rt->platform, rt->device and their indices; the message of a failure names where the choice
// came from: the option, its variable, or the default.
static int pick_device(struct clrt *rt, const struct choice *pc, const struct choice *dc,
                       struct clvae_error *err)
{
    cl_platform_id platforms[16];
    cl_uint n_platforms;
    int platform, device = dc->index;
    if (get_platforms(platforms, 16, &n_platforms, err) ||
        find_platform(pc, platforms, n_platforms, &platform, err) ||
        (dc->text && device < 0 &&
         find_device_by_name(dc, platforms, n_platforms, &platform, &device, err)) ||
        (platform < 0 && device < 0 &&
         find_default(platforms, n_platforms, &platform, &device, err)))
        return -1;
    platform = platform < 0 ? 0 : platform;
    device = device < 0 ? 0 : device;
    cl_device_id devices[16];
    if ((cl_uint)device >= get_devices(platforms[platform], devices, 16)) {
        char reason[256];
        if (dc->text)
            snprintf(reason, sizeof reason, "%s %d: no such device on platform %d", dc->source,
                     device, platform);
        else
            snprintf(reason, sizeof reason, "%s %d: no such device on platform %d (%s %s)",
                     dc->source, device, platform, pc->source, pc->text ? pc->text : "");
        return fail_listing(err, reason, platforms, n_platforms);
    }
    rt->platform = platforms[platform];
    rt->device = devices[device];
    rt->platform_index = platform;
    rt->device_index = device;
    return 0;
}

// rt's names, memory and limits from the device; CLVAE_MAX_ALLOC lowers the largest allocation.
static void read_device(struct clrt *rt, const struct env_settings *env)
{
    platform_string(rt->platform, CL_PLATFORM_NAME, rt->platform_name, sizeof rt->platform_name);
    rt->platform_name[sizeof rt->platform_name - 1] = '\0';
    device_string(rt->device, CL_DEVICE_NAME, rt->device_name, sizeof rt->device_name);
    CL_CHECK(clGetDeviceInfo(rt->device, CL_DEVICE_TYPE, sizeof rt->device_type, &rt->device_type,
                             NULL));
    cl_bool unified = CL_FALSE;
    CL_CHECK(
        clGetDeviceInfo(rt->device, CL_DEVICE_HOST_UNIFIED_MEMORY, sizeof unified, &unified, NULL));
    rt->host_memory = (rt->device_type & CL_DEVICE_TYPE_CPU) && unified;
    // CLVAE_KERNELS: a CPU's kernel variants and work plan on a GPU, or a GPU's on a CPU (the
    // tests run a GPU's on PoCL), wherever clvae decides by the device's type.
    if (env->kernels)
        rt->device_type =
            strcmp(env->kernels, "gpu") == 0 ? CL_DEVICE_TYPE_GPU : CL_DEVICE_TYPE_CPU;
    CL_CHECK(clGetDeviceInfo(rt->device, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof rt->global_mem,
                             &rt->global_mem, NULL));
    CL_CHECK(clGetDeviceInfo(rt->device, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof rt->max_alloc,
                             &rt->max_alloc, NULL));
    snprintf(rt->max_alloc_name, sizeof rt->max_alloc_name, "%s's largest allocation",
             rt->device_name);
    if (env->max_alloc && env->max_alloc < rt->max_alloc) {
        rt->max_alloc = env->max_alloc;
        snprintf(rt->max_alloc_name, sizeof rt->max_alloc_name,
                 "the largest allocation CLVAE_MAX_ALLOC=%s allows", env->max_alloc_text);
    }
    CL_CHECK(clGetDeviceInfo(rt->device, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof rt->max_work_group,
                             &rt->max_work_group, NULL));
    CL_CHECK(clGetDeviceInfo(rt->device, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof rt->compute_units,
                             &rt->compute_units, NULL));
}

// How rt's reductions and products divide the work on its device, and which products it runs.
static void plan_work(struct clrt *rt, const struct env_settings *env)
{
    // A GPU wants thousands of work-items: 256 a compute unit. A CPU runs a work-group's items
    // one after another, vectorised across columns, and a work-group on one core: a reduction of
    // a few columns over many rows (a conv layer's bias, 12544 x 64 a batch) ran on one core in
    // 3.9 ms on PoCL on 2 cores. There 1024 work-items a compute unit (short parts balance the
    // cores: 50176 x 32 with its ReLU mask took 5.6 ms in 4 parts, 1.5 in 64; 12544 x 64 4.7 ms
    // in 2, 1.0 in 32), but only for reductions of 2^18 elements or more: smaller ones (the
    // default MLP's) stay one pass.
    bool cpu = rt->device_type & CL_DEVICE_TYPE_CPU;
    rt->reduce_work = (cpu ? 1024 : 256) * (size_t)rt->compute_units;
    rt->reduce_min = cpu ? (size_t)1 << 18 : 0;
    // A CPU runs one work-group a core at a time; a GPU wants several a compute unit to hide
    // memory latency. A part of a split product takes at least 256 rows.
    rt->splitk_groups = (cpu ? 1 : 4) * (size_t)rt->compute_units;
    rt->splitk_min_k = 256;
    rt->own_gemm =
        env->gemm ? strcmp(env->gemm, "clvae") == 0 : own_gemm_default(rt->platform_name, cpu);
    // With clvae's products a CPU splits by what its caches hold instead (own_parts), any
    // product, and a weight gradient's 8 x 32 blocks are enough for its cores: no split by
    // work-groups there.
    rt->splitk_bytes = cpu && rt->own_gemm ? (size_t)1 << 20 : 0;
    if (rt->splitk_bytes)
        rt->splitk_groups = 0;
    // A product that writes (or reads) a conv's columns and col2im (or im2col) over them a slice
    // of the batch at a time, the columns still in the cache (the conv reference's 12544x512x64
    // product with its 25.7 MB of columns: 6.0 ms at once, 5.0 in four slices).
    rt->slice_bytes = cpu && rt->own_gemm ? (size_t)4 << 20 : 0;
}

int clrt_open(struct clrt *rt, const char *platform_sel, const char *device_sel, bool profiling,
              struct clvae_error *err)
{
    memset(rt, 0, sizeof *rt);
    struct choice pc, dc;
    struct env_settings env;
    if (choose(platform_sel, "--platform", "CLVAE_PLATFORM", "the default platform", &pc, err) ||
        choose(device_sel, "--device", "CLVAE_DEVICE", "the default device", &dc, err) ||
        read_env_settings(&env, err) || pick_device(rt, &pc, &dc, err))
        return -1;
    read_device(rt, &env);
    plan_work(rt, &env);
    rt->profiling = profiling;
    cl_int status;
    rt->context = clCreateContext(NULL, 1, &rt->device, NULL, NULL, &status);
    CL_CHECK(status);
    rt->queue = clCreateCommandQueue(rt->context, rt->device,
                                     profiling ? CL_QUEUE_PROFILING_ENABLE : 0, &status);
    CL_CHECK(status);
    clrt_tune_clblast(rt);
    return 0;
}

// The lines of data/clblast-tuning.txt whose pattern matches device_name: applied to device
// unless it is NULL; returns how many matched, and the first one's pattern in first (64 bytes).
static int tuning_lines(const char *device_name, cl_device_id device, char *first)
{
    int tuned = 0;
    const char *text = clvae_tuning_sources[0];
    while (*text) {
        size_t len = strcspn(text, "\n");
        char line[512];
        snprintf(line, sizeof line, "%.*s", (int)(len < sizeof line ? len : sizeof line - 1), text);
        text += len + (text[len] == '\n');
        line[strcspn(line, "#")] = '\0';
        char *save = NULL, *pattern = strtok_r(line, " \t", &save);
        char *kernel = pattern ? strtok_r(NULL, " \t", &save) : NULL;
        if (!kernel || fnmatch(pattern, device_name, 0) != 0)
            continue;
        if (tuned++ == 0 && first)
            snprintf(first, 64, "%s", pattern);
        if (!device)
            continue;
        const char *names[32];
        size_t values[32], n = 0;
        for (char *tok; n < 32 && (tok = strtok_r(NULL, " \t", &save));) {
            char *eq = strchr(tok, '=');
            if (!eq)
                continue;
            *eq = '\0';
            names[n] = tok;
            values[n++] = strtoul(eq + 1, NULL, 10);
        }
        CL_CHECK(
            CLBlastOverrideParameters(device, kernel, CLBlastPrecisionSingle, n, names, values));
    }
    return tuned;
}

bool clrt_gemm_params_valid(const struct clrt_gemm_params *p, size_t max_work_group)
{
    const int v[] = {p->wgd, p->mdimcd, p->ndimcd, p->mdimad, p->ndimbd, p->kwid, p->vwmd, p->vwnd};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        if (v[i] < 1 || v[i] > 256)
            return false;
    if ((p->pada != 0 && p->pada != 1) || (p->padb != 0 && p->padb != 1))
        return false;
    int threads = p->mdimcd * p->ndimcd;
    if ((size_t)threads > max_work_group || threads % p->mdimad || threads % p->ndimbd)
        return false;
    int w = p->wgd;
    return w % p->kwid == 0 && w % (p->mdimcd * p->vwmd) == 0 && w % (p->ndimcd * p->vwnd) == 0 &&
           w % (p->mdimad * p->vwmd) == 0 && w % (p->ndimbd * p->vwnd) == 0 &&
           w % (threads / p->mdimad) == 0 && w % (threads / p->ndimbd) == 0;
}

// XgemmDirect's parameters as CLBlast names them, in the order of struct clrt_gemm_params and
// of a tuning file's line.
static const char *const gemm_param_names[10] = {"WGD",  "MDIMCD", "NDIMCD", "MDIMAD", "NDIMBD",
                                                 "KWID", "VWMD",   "VWND",   "PADA",   "PADB"};

void clrt_apply_gemm_params(struct clrt *rt, const struct clrt_gemm_params *p, size_t min_indirect)
{
    size_t values[] = {(size_t)p->wgd,    (size_t)p->mdimcd, (size_t)p->ndimcd, (size_t)p->mdimad,
                       (size_t)p->ndimbd, (size_t)p->kwid,   (size_t)p->vwmd,   (size_t)p->vwnd,
                       (size_t)p->pada,   (size_t)p->padb};
    const char *names[10];
    memcpy(names, gemm_param_names, sizeof names);
    CL_CHECK(CLBlastOverrideParameters(rt->device, "XgemmDirect", CLBlastPrecisionSingle, 10, names,
                                       values));
    const char *routine[] = {"XGEMM_MIN_INDIRECT_SIZE"};
    CL_CHECK(CLBlastOverrideParameters(rt->device, "GemmRoutine", CLBlastPrecisionSingle, 1,
                                       routine, &min_indirect));
}

// FNV-1a, 64 bits: a short, stable name for a long key.
static uint64_t fnv1a(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

// The tuning file's key (device name, platform version, driver version, CLBlast's version) and
// path; -1 when no cache directory can be named.
static int tuning_key_path(cl_platform_id platform, cl_device_id device, const char *name,
                           char *path, size_t len, char *key, size_t key_len)
{
    char driver[128] = "", version[128] = "";
    device_string(device, CL_DRIVER_VERSION, driver, sizeof driver);
    platform_string(platform, CL_PLATFORM_VERSION, version, sizeof version);
    snprintf(key, key_len, "%s | %s | driver %s | CLBlast %s", name, version, driver,
             CLVAE_CLBLAST_VERSION);
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    int n;
    if (xdg && xdg[0] == '/')
        n = snprintf(path, len, "%s/clvae/clblast-%016llx.txt", xdg,
                     (unsigned long long)fnv1a(key));
    else if (home && home[0] == '/')
        n = snprintf(path, len, "%s/.cache/clvae/clblast-%016llx.txt", home,
                     (unsigned long long)fnv1a(key));
    else
        return -1;
    return n < 0 || (size_t)n >= len ? -1 : 0;
}

int clrt_tuning_path(const struct clrt *rt, char *path, size_t len, char *key, size_t key_len)
{
    return tuning_key_path(rt->platform, rt->device, rt->device_name, path, len, key, key_len);
}

// "NAME=V" -> *v when NAME is name and V a whole number up to 1 << 30.
static bool param(const char *tok, const char *name, size_t *v)
{
    size_t n = strlen(name);
    if (strncmp(tok, name, n) != 0 || tok[n] != '=' || !isdigit((unsigned char)tok[n + 1]))
        return false;
    char *end;
    unsigned long long x = strtoull(tok + n + 1, &end, 10);
    if (*end != '\0' || x > (1ull << 30))
        return false;
    *v = (size_t)x;
    return true;
}

int clrt_parse_tuning(const char *text, const char *key, struct clrt_gemm_params *p,
                      size_t *min_indirect, char *why)
{
    const char *const *names = gemm_param_names;
    int *fields[] = {&p->wgd,  &p->mdimcd, &p->ndimcd, &p->mdimad, &p->ndimbd,
                     &p->kwid, &p->vwmd,   &p->vwnd,   &p->pada,   &p->padb};
    bool have_direct = false, have_routine = false;
    char line[512];
    for (int number = 1; *text; number++) {
        size_t len = strcspn(text, "\n");
        if (len >= sizeof line)
            return snprintf(why, 256, "line %d is longer than %zu bytes", number, sizeof line - 1),
                   -1;
        memcpy(line, text, len);
        line[len] = '\0';
        text += len + (text[len] == '\n');
        if (number == 1) {
            if (strncmp(line, "# clvae tune: ", 14) != 0 || strcmp(line + 14, key) != 0)
                return snprintf(why, 256,
                                "its first line is not \"# clvae tune: \" and this "
                                "device's key"),
                       -1;
            continue;
        }
        if (line[0] == '#' || line[strspn(line, " \t")] == '\0')
            continue;
        char *save = NULL, *kernel = strtok_r(line, " \t", &save);
        if (strcmp(kernel, "XgemmDirect") == 0 && !have_direct) {
            for (int i = 0; i < 10; i++) {
                char *tok = strtok_r(NULL, " \t", &save);
                size_t v;
                if (!tok || !param(tok, names[i], &v) || v > 256)
                    return snprintf(why, 256, "line %d: XgemmDirect needs %s=N (%s in order)",
                                    number, names[i],
                                    "WGD MDIMCD NDIMCD MDIMAD NDIMBD KWID VWMD "
                                    "VWND PADA PADB"),
                           -1;
                *fields[i] = (int)v;
            }
            have_direct = true;
        } else if (strcmp(kernel, "GemmRoutine") == 0 && !have_routine) {
            char *tok = strtok_r(NULL, " \t", &save);
            if (!tok || !param(tok, "XGEMM_MIN_INDIRECT_SIZE", min_indirect))
                return snprintf(why, 256, "line %d: GemmRoutine needs XGEMM_MIN_INDIRECT_SIZE=N",
                                number),
                       -1;
            have_routine = true;
        } else {
            return snprintf(why, 256,
                            "line %d: '%.40s' is not XgemmDirect or GemmRoutine (once "
                            "each)",
                            number, kernel),
                   -1;
        }
        if (strtok_r(NULL, " \t", &save))
            return snprintf(why, 256, "line %d: more than the parameters of %s", number, kernel),
                   -1;
    }
    if (!have_direct || !have_routine)
        return snprintf(why, 256, "it lacks the %s line",
                        have_direct ? "GemmRoutine" : "XgemmDirect"),
               -1;
    if (!clrt_gemm_params_valid(p, SIZE_MAX))
        return snprintf(why, 256, "its XgemmDirect parameters break CLBlast's constraints"), -1;
    return 0;
}

// "clvae: warning: <path>: <why>; ignored ...": one line, whatever the path holds.
static void warn_tuning_file(const char *path, const char *why)
{
    struct clvae_error warning;
    clvae_fail(&warning, 0, "warning: %s: %s; ignored (run clvae tune again, or delete it)", path,
               why);
    clvae_print_error(&warning);
}

// The text of the tuning file at path into text (len bytes, NUL-terminated): 1 when read, 0 when
// there is none, -1 with why (256 bytes) when it is not a regular file (a FIFO would block the
// open until a writer came), cannot be read, is longer than len - 1 bytes or holds a NUL byte.
static int read_tuning_file(const char *path, char *text, size_t len, char *why)
{
    const char *reason;
    struct stat st;
    if (stat(path, &st) != 0 && errno == ENOENT)
        return 0;
    int fd = regular_file_open(path, NULL, &reason);
    FILE *fp = fd < 0 ? NULL : fdopen(fd, "rb");
    if (!fp) {
        snprintf(why, 256, "%s", fd < 0 ? reason : strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    size_t n = fread(text, 1, len - 1, fp);
    bool failed = ferror(fp), too_long = n == len - 1 && fgetc(fp) != EOF;
    fclose(fp);
    text[n] = '\0';
    if (failed || too_long || strlen(text) != n) {
        snprintf(why, 256, "%s",
                 failed     ? "cannot be read"
                 : too_long ? "longer than 8 KiB"
                            : "it holds a NUL byte");
        return -1;
    }
    return 1;
}

// The file `clvae tune` wrote for rt's device, applied when it is good: 1 when applied, 0 when
// there is none, and 0 after one warning line when it is not a regular file, cannot be read or is
// malformed.
static int tune_from_cache(struct clrt *rt)
{
    char path[4200], key[512], why[256], text[8192];
    if (clrt_tuning_path(rt, path, sizeof path, key, sizeof key))
        return 0;
    int got = read_tuning_file(path, text, sizeof text, why);
    if (got == 0)
        return 0;
    struct clrt_gemm_params p;
    size_t min_indirect = 0;
    if (got > 0 && clrt_parse_tuning(text, key, &p, &min_indirect, why) == 0) {
        if (clrt_gemm_params_valid(&p, rt->max_work_group)) {
            clrt_apply_gemm_params(rt, &p, min_indirect);
            snprintf(rt->tuning_source, sizeof rt->tuning_source, "%s", path);
            return 1;
        }
        snprintf(why, sizeof why, "work-groups larger than the device's %zu items",
                 rt->max_work_group);
    }
    warn_tuning_file(path, why);
    return 0;
}

int clrt_tune_clblast(struct clrt *rt)
{
    const char *env = getenv("CLVAE_CLBLAST_TUNING");
    if (env && !strcmp(env, "off"))
        return 0;
    return tuning_lines(rt->device_name, rt->device, NULL) + tune_from_cache(rt);
}

int clrt_build(struct clrt *rt, struct clvae_error *err)
{
    cl_int status;
    rt->program = clCreateProgramWithSource(rt->context, (cl_uint)clvae_cl_count,
                                            (const char **)clvae_cl_sources, NULL, &status);
    CL_CHECK(status);
    // Subnormal floats flushed to zero, as XLA:CPU runs (PyTorch keeps them): Adam's first
    // moments of the weights that only ever see zero pixels decay by 0.9 a step into the subnormal
    // range near step 750, where each operation on them took a microcode assist on a CPU:
    // adam_update16 went from 131 to about 770 us a step in epochs 4-7 of the default model on
    // PoCL (2026-12-04), a third more time an epoch. Values that small move nothing: the same
    // 2-epoch checkpoints as without the flag.
    // On PoCL's CPU device the products' k loops prefetch their operands' rows 16 ahead
    // (cl/gemm.cl). PoCL compiles to the CPU's own code, where __builtin_prefetch is an
    // instruction; rusticl's translation to SPIR-V rejects it (llvm.prefetch), and GPUs run
    // CLBlast's products.
    bool prefetch = rt->host_memory && own_gemm_default(rt->platform_name, true);
    status = clBuildProgram(rt->program, 1, &rt->device,
                            prefetch ? "-cl-std=CL1.2 -cl-denorms-are-zero -DCLVAE_PREFETCH=16"
                                     : "-cl-std=CL1.2 -cl-denorms-are-zero",
                            NULL, NULL);
    if (status == CL_SUCCESS)
        return 0;
    size_t len = 0;
    clGetProgramBuildInfo(rt->program, rt->device, CL_PROGRAM_BUILD_LOG, 0, NULL, &len);
    char *log = xcalloc(len + 1, 1);
    clGetProgramBuildInfo(rt->program, rt->device, CL_PROGRAM_BUILD_LOG, len, log, NULL);
    // The log is the point of the message, so it goes to stderr whole; err gets the summary.
    if (!clvae_quiet())
        fprintf(stderr, "%s\n", log);
    free(log);
    return clvae_fail(err, CLVAE_EXIT_DEVICE,
                      "building the OpenCL kernels (%zu files from cl/) for %s failed: %s; the "
                      "compiler's log is above",
                      (size_t)clvae_cl_count, rt->device_name, clrt_error_name(status));
}

// Host memory that buffers live in (host_buffer): one mapping, released by whoever drops its last
// reference: rt's while it carves buffers from it, and each buffer's until the driver deletes it.
struct host_chunk {
    void *map;
    size_t len;
    char *base;  // the first huge page boundary in map
    size_t used; // bytes carved from base (rt's chunk only)
    atomic_int refs;
};

static void host_chunk_unref(struct host_chunk *c)
{
    if (c && atomic_fetch_sub(&c->refs, 1) == 1) {
        munmap(c->map, c->len);
        free(c);
    }
}

static void CL_CALLBACK host_buffer_deleted(cl_mem mem, void *chunk)
{
    (void)mem;
    host_chunk_unref(chunk);
}

// A mapping of at least bytes from a huge page boundary, advised onto transparent huge pages, with
// one reference; NULL where the host has no memory to give.
static struct host_chunk *host_chunk_new(size_t bytes)
{
#ifdef MADV_HUGEPAGE
    struct host_chunk *c = malloc(sizeof *c);
    size_t len = bytes + CLRT_HUGE_BYTES;
    void *map = c ? mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
                  : MAP_FAILED;
    if (map == MAP_FAILED) {
        free(c);
        return NULL;
    }
    uintptr_t at = ((uintptr_t)map + CLRT_HUGE_BYTES - 1) & ~(uintptr_t)(CLRT_HUGE_BYTES - 1);
    // Advice only: where the kernel gives no huge pages (THP "never"), 4 KiB pages as before.
    (void)madvise((void *)at, bytes, MADV_HUGEPAGE);
    c->map = map, c->len = len, c->base = (char *)at, c->used = 0;
    atomic_init(&c->refs, 1);
    return c;
#else
    (void)bytes;
    return NULL;
#endif
}

// A buffer of bytes whose storage is host memory on transparent huge pages, handed to the driver
// (CL_MEM_USE_HOST_PTR: PoCL's CPU device computes in it, no copy): one of CLRT_HOST_OWN_BYTES or
// more in a mapping of its own, smaller ones side by side in chunks of CLRT_HOST_CHUNK_BYTES, so
// that a model's parameters, moments and activations share a few huge pages. Every 4 KiB page the
// cores touch needs a translation, and in a virtual machine a miss in the TLB walks two page
// tables: the batch's 256 rows gathered from the 47 MB training set took 129 us a step on 4 KiB
// pages against 57 us for 256 rows in order (2-core Xeon, 2026-12-04). NULL with *status where
// the host or the driver has none to give: the caller then asks the driver.
static cl_mem host_buffer(struct clrt *rt, size_t bytes, cl_int *status)
{
    *status = CL_OUT_OF_HOST_MEMORY;
    size_t size = (bytes + 4095) & ~(size_t)4095; // neighbours never share a page
    struct host_chunk *c;
    if (size >= CLRT_HOST_OWN_BYTES) {
        if (!(c = host_chunk_new(size)))
            return NULL;
    } else {
        if (!rt->host_chunk || CLRT_HOST_CHUNK_BYTES - rt->host_chunk->used < size) {
            struct host_chunk *fresh = host_chunk_new(CLRT_HOST_CHUNK_BYTES);
            if (!fresh)
                return NULL;
            host_chunk_unref(rt->host_chunk);
            rt->host_chunk = fresh;
        }
        c = rt->host_chunk;
        atomic_fetch_add(&c->refs, 1);
    }
    char *at = c->base + c->used;
    cl_mem mem =
        clCreateBuffer(rt->context, CL_MEM_READ_WRITE | CL_MEM_USE_HOST_PTR, bytes, at, status);
    if (*status == CL_SUCCESS) {
        *status = clSetMemObjectDestructorCallback(mem, host_buffer_deleted, c);
        if (*status == CL_SUCCESS) {
            c->used += size;
            return mem;
        }
        clReleaseMemObject(mem);
    }
    host_chunk_unref(c);
    return NULL;
}

void clrt_close(struct clrt *rt)
{
    for (size_t i = 0; i < sizeof rt->gemm_kernels / sizeof rt->gemm_kernels[0]; i++)
        if (rt->gemm_kernels[i])
            clReleaseKernel(rt->gemm_kernels[i]);
    if (rt->gemm_sum)
        clReleaseKernel(rt->gemm_sum);
    if (rt->gemm_temp)
        clReleaseMemObject(rt->gemm_temp);
    clrt_release_buffer(rt->zeros);
    for (int i = 0; i < rt->n_pending; i++)
        clReleaseEvent(rt->pending[i]);
    if (rt->program)
        clReleaseProgram(rt->program);
    if (rt->queue)
        clReleaseCommandQueue(rt->queue);
    if (rt->context)
        clReleaseContext(rt->context);
    host_chunk_unref(rt->host_chunk); // unmapped here, or by its last buffer's release
    memset(rt, 0, sizeof *rt);
}

cl_kernel clrt_kernel(struct clrt *rt, const char *name)
{
    cl_int status;
    cl_kernel kernel = clCreateKernel(rt->program, name, &status);
    if (status != CL_SUCCESS)
        clvae_fatal(CLVAE_EXIT_FAILURE, "clCreateKernel(\"%s\") failed: %s", name,
                    clrt_error_name(status));
    return kernel;
}

cl_mem clrt_buffer(struct clrt *rt, size_t bytes, const char *name, struct clvae_error *err)
{
    if (bytes == 0)
        bytes = sizeof(float);
    if (bytes > rt->max_alloc)
        return clvae_fail(err, CLVAE_EXIT_DEVICE,
                          "device buffer '%s' (%zu bytes) is larger than %s (%llu bytes)", name,
                          bytes, rt->max_alloc_name, (unsigned long long)rt->max_alloc),
               NULL;
    if (rt->allocated + bytes > rt->global_mem)
        return clvae_fail(err, CLVAE_EXIT_DEVICE,
                          "device buffer '%s' (%zu bytes) does not fit: %s has %llu bytes and "
                          "clvae already uses %zu",
                          name, bytes, rt->device_name, (unsigned long long)rt->global_mem,
                          rt->allocated),
               NULL;
    cl_int status;
    cl_mem mem = rt->host_memory ? host_buffer(rt, bytes, &status) : NULL;
    if (!mem)
        mem = clCreateBuffer(rt->context, CL_MEM_READ_WRITE, bytes, NULL, &status);
    if (status == CL_SUCCESS) {
        // Drivers allocate lazily; touching the buffer makes a failure show up here, named. Fills
        // of at most 1 GiB reach only the first 2 GiB: NVIDIA's driver (580) fails fills of 2^31
        // bytes or more (pyopencl works around the same), and 1 GiB fills of a 2.25 GB buffer
        // with CL_INVALID_COMMAND_QUEUE; the rest is written from zeros on the host.
        const cl_uchar zero = 0;
        const size_t fill_end = (size_t)1 << 31, fill_chunk = (size_t)1 << 30;
        const size_t chunk = (size_t)1 << 26;
        size_t filled = bytes < fill_end ? bytes : fill_end;
        for (size_t at = 0; at < filled && status == CL_SUCCESS; at += fill_chunk)
            status = clEnqueueFillBuffer(rt->queue, mem, &zero, 1, at,
                                         filled - at < fill_chunk ? filled - at : fill_chunk, 0,
                                         NULL, NULL);
        void *zeros = bytes > filled ? calloc(1, chunk) : NULL;
        if (bytes > filled && !zeros)
            clvae_fatal(CLVAE_EXIT_FAILURE, "out of host memory zeroing device buffer '%s'", name);
        for (size_t at = filled; at < bytes && status == CL_SUCCESS; at += chunk)
            status =
                clEnqueueWriteBuffer(rt->queue, mem, CL_FALSE, at,
                                     bytes - at < chunk ? bytes - at : chunk, zeros, 0, NULL, NULL);
        cl_int finished = clFinish(rt->queue);
        status = status == CL_SUCCESS ? finished : status;
        free(zeros);
        if (status != CL_SUCCESS)
            clReleaseMemObject(mem);
    }
    if (status != CL_SUCCESS)
        return clvae_fail(err, CLVAE_EXIT_DEVICE,
                          "allocating device buffer '%s' (%zu bytes) on %s failed: %s", name, bytes,
                          rt->device_name, clrt_error_name(status)),
               NULL;
    rt->allocated += bytes;
    return mem;
}

int clrt_parts_plan(const struct clrt *rt, struct clrt_parts *p, size_t bytes, size_t unit,
                    const char *name, struct clvae_error *err)
{
    memset(p, 0, sizeof *p);
    unit = unit ? unit : 1;
    if (unit > rt->max_alloc)
        return clvae_fail(err, CLVAE_EXIT_DEVICE,
                          "device buffer '%s': one unit of it (%zu bytes) is larger than %s "
                          "(%llu bytes)",
                          name, unit, rt->max_alloc_name, (unsigned long long)rt->max_alloc);
    size_t per = (size_t)(rt->max_alloc / unit) * unit;
    size_t n = bytes <= per ? 1 : (bytes + per - 1) / per;
    if (n > CLRT_MAX_PARTS)
        return clvae_fail(err, CLVAE_EXIT_DEVICE,
                          "device buffer '%s' (%zu bytes) would take %zu buffers of at most %llu "
                          "bytes (%s); clvae splits one into at most %d",
                          name, bytes, n, (unsigned long long)rt->max_alloc, rt->max_alloc_name,
                          CLRT_MAX_PARTS);
    p->n = (int)n;
    for (size_t i = 0; i < n; i++)
        p->start[i] = i * per;
    p->start[n] = bytes;
    return 0;
}

int clrt_parts_create(struct clrt *rt, struct clrt_parts *p, const char *name,
                      struct clvae_error *err)
{
    for (int i = 0; i < p->n; i++) {
        char label[160];
        if (p->n == 1)
            snprintf(label, sizeof label, "%s", name);
        else
            snprintf(label, sizeof label, "%s (part %d of %d)", name, i + 1, p->n);
        if (!(p->mem[i] = clrt_buffer(rt, p->start[i + 1] - p->start[i], label, err))) {
            clrt_parts_release(p);
            return -1;
        }
    }
    return 0;
}

void clrt_parts_release(struct clrt_parts *p)
{
    for (int i = 0; i < p->n; i++)
        if (p->mem[i])
            clReleaseMemObject(p->mem[i]);
    memset(p->mem, 0, sizeof p->mem);
}

// Every part to (write) or from the host array, enqueued; blocking waits for them all.
static void parts_copy(struct clrt *rt, const struct clrt_parts *p, char *host, bool write,
                       bool blocking)
{
    for (int i = 0; i < p->n; i++) {
        size_t bytes = p->start[i + 1] - p->start[i];
        if (bytes && write)
            CL_CHECK(clEnqueueWriteBuffer(rt->queue, p->mem[i], CL_FALSE, 0, bytes,
                                          host + p->start[i], 0, NULL, NULL));
        else if (bytes)
            CL_CHECK(clEnqueueReadBuffer(rt->queue, p->mem[i], CL_FALSE, 0, bytes,
                                         host + p->start[i], 0, NULL, NULL));
    }
    if (blocking)
        CL_CHECK(clFinish(rt->queue));
}

void clrt_finish(struct clrt *rt)
{
    CL_CHECK(clFinish(rt->queue));
}

void clrt_drain(struct clrt *rt)
{
    if (rt->queue)
        clFinish(rt->queue);
}

void clrt_write(struct clrt *rt, cl_mem mem, size_t offset, size_t bytes, const void *host,
                bool blocking)
{
    CL_CHECK(clEnqueueWriteBuffer(rt->queue, mem, blocking ? CL_TRUE : CL_FALSE, offset, bytes,
                                  host, 0, NULL, NULL));
}

void clrt_read(struct clrt *rt, cl_mem mem, size_t offset, size_t bytes, void *host, bool blocking)
{
    CL_CHECK(clEnqueueReadBuffer(rt->queue, mem, blocking ? CL_TRUE : CL_FALSE, offset, bytes, host,
                                 0, NULL, NULL));
}

cl_event clrt_read_event(struct clrt *rt, cl_mem mem, size_t offset, size_t bytes, void *host)
{
    cl_event done;
    CL_CHECK(clEnqueueReadBuffer(rt->queue, mem, CL_FALSE, offset, bytes, host, 0, NULL, &done));
    CL_CHECK(clFlush(rt->queue));
    return done;
}

void clrt_wait(cl_event ev)
{
    CL_CHECK(clWaitForEvents(1, &ev));
    CL_CHECK(clReleaseEvent(ev));
}

void clrt_fill(struct clrt *rt, cl_mem mem, float value, size_t n)
{
    CL_CHECK(clEnqueueFillBuffer(rt->queue, mem, &value, sizeof value, 0, n * sizeof(float), 0,
                                 NULL, NULL));
}

void *clrt_map_write(struct clrt *rt, cl_mem mem, size_t bytes)
{
    cl_int status;
    void *mapped = clEnqueueMapBuffer(rt->queue, mem, CL_TRUE, CL_MAP_WRITE_INVALIDATE_REGION, 0,
                                      bytes, 0, NULL, NULL, &status);
    CL_CHECK(status);
    return mapped;
}

void clrt_unmap(struct clrt *rt, cl_mem mem, void *mapped)
{
    CL_CHECK(clEnqueueUnmapMemObject(rt->queue, mem, mapped, 0, NULL, NULL));
}

void clrt_release_buffer(cl_mem mem)
{
    if (mem)
        clReleaseMemObject(mem);
}

void clrt_release_kernel(cl_kernel kernel)
{
    if (kernel)
        clReleaseKernel(kernel);
}

void clrt_parts_write(struct clrt *rt, const struct clrt_parts *p, const void *host, bool blocking)
{
    parts_copy(rt, p, (char *)host, true, blocking); // (only read from when writing)
}

void clrt_parts_read(struct clrt *rt, const struct clrt_parts *p, void *host, bool blocking)
{
    parts_copy(rt, p, host, false, blocking);
}

// A monotonic clock in seconds, for the host's enqueue time.
static double host_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// The profile entry for label, created on first use.
static int prof_slot(struct clrt *rt, const char *label, double flops)
{
    for (int i = 0; i < rt->n_prof; i++)
        if (!strcmp(rt->prof[i].label, label))
            return i;
    if (rt->n_prof == CLRT_MAX_PROF)
        return CLRT_MAX_PROF - 1; // the table is full: lump the rest into the last entry
    struct clrt_prof *p = &rt->prof[rt->n_prof];
    snprintf(p->label, sizeof p->label, "%s", label);
    p->flops = flops;
    return rt->n_prof++;
}

// Keeps ev until clrt_profile_collect reads its times.
static void prof_record(struct clrt *rt, cl_event ev, int slot)
{
    if (rt->n_pending == CLRT_MAX_PENDING)
        clrt_profile_collect(rt);
    rt->pending[rt->n_pending] = ev;
    rt->pending_slot[rt->n_pending++] = slot;
}

// Enqueues one of cl/gemm.cl's product kernels over global (and local) in dims dimensions: the
// launch counted, the host's time since t0 (its arguments set) added to enqueue_seconds, and under
// profiling its event recorded under label at flops a call (callers format label only then: the
// step's launches pay no formatting).
// The host's time since t0 to the enqueue time, and the command's event (when profiling) to
// profile entry label.
static void enqueued(struct clrt *rt, double t0, cl_event ev, const char *label, double flops)
{
    rt->enqueue_seconds += host_now() - t0;
    if (ev)
        prof_record(rt, ev, prof_slot(rt, label, flops));
}

static void enqueue_product(struct clrt *rt, cl_kernel kern, cl_uint dims, const size_t *global,
                            const size_t *local, double t0, const char *label, double flops)
{
    cl_event ev = NULL;
    rt->launches++;
    CL_CHECK(clEnqueueNDRangeKernel(rt->queue, kern, dims, NULL, global, local, 0, NULL,
                                    rt->profiling ? &ev : NULL));
    enqueued(rt, t0, ev, label, flops);
}

void clrt_copy_rows(struct clrt *rt, struct clrt_mat src, struct clrt_mat dst, size_t rows,
                    size_t cols)
{
    double t0 = host_now();
    size_t f = sizeof(float), src_origin[3] = {src.offset * f, 0, 0};
    size_t dst_origin[3] = {dst.offset * f, 0, 0}, region[3] = {cols * f, rows, 1};
    cl_event ev = NULL;
    rt->launches++;
    CL_CHECK(clEnqueueCopyBufferRect(rt->queue, src.mem, dst.mem, src_origin, dst_origin, region,
                                     src.ld * f, 0, dst.ld * f, 0, 0, NULL,
                                     rt->profiling ? &ev : NULL));
    enqueued(rt, t0, ev, "copy rows", 0);
}

void clrt_profile_collect(struct clrt *rt)
{
    if (rt->n_pending == 0)
        return;
    CL_CHECK(clWaitForEvents((cl_uint)rt->n_pending, rt->pending));
    for (int i = 0; i < rt->n_pending; i++) {
        cl_ulong start, end;
        CL_CHECK(clGetEventProfilingInfo(rt->pending[i], CL_PROFILING_COMMAND_START, sizeof start,
                                         &start, NULL));
        CL_CHECK(clGetEventProfilingInfo(rt->pending[i], CL_PROFILING_COMMAND_END, sizeof end, &end,
                                         NULL));
        struct clrt_prof *p = &rt->prof[rt->pending_slot[i]];
        p->seconds += 1e-9 * (double)(end - start);
        p->calls++;
        CL_CHECK(clReleaseEvent(rt->pending[i]));
    }
    rt->n_pending = 0;
}

static int compare_prof(const void *a, const void *b)
{
    double x = ((const struct clrt_prof *)a)->seconds, y = ((const struct clrt_prof *)b)->seconds;
    return (x < y) - (x > y);
}

void clrt_profile_print(struct clrt *rt, FILE *out, double wall_seconds)
{
    clrt_profile_collect(rt);
    qsort(rt->prof, (size_t)rt->n_prof, sizeof rt->prof[0], compare_prof);
    double total = 0;
    for (int i = 0; i < rt->n_prof; i++)
        total += rt->prof[i].seconds;
    fprintf(out, "%-34s %8s %10s %9s %7s %9s\n", "kernel or GEMM (m x n x k)", "calls", "total ms",
            "us/call", "share", "GFLOP/s");
    for (int i = 0; i < rt->n_prof; i++) {
        const struct clrt_prof *p = &rt->prof[i];
        fprintf(out, "%-34s %8ld %10.1f %9.1f %6.1f%%", p->label, p->calls, 1e3 * p->seconds,
                p->calls ? 1e6 * p->seconds / (double)p->calls : 0.0,
                wall_seconds > 0 ? 100.0 * p->seconds / wall_seconds : 0.0);
        if (p->flops > 0 && p->seconds > 0)
            fprintf(out, " %9.1f", 1e-9 * p->flops * (double)p->calls / p->seconds);
        fputc('\n', out);
    }
    fprintf(out, "%-34s %8s %10.1f %9s %6.1f%%   (of %.2f s wall)\n", "device total", "",
            1e3 * total, "", wall_seconds > 0 ? 100.0 * total / wall_seconds : 0.0, wall_seconds);
    // The host's share: what enqueueing costs it, beside the device's time (on PoCL the same
    // cores run both).
    fprintf(out, "%-34s %8ld %10.1f %9.1f %6.1f%%   (host share of the wall time)\n",
            "host enqueue calls", rt->launches, 1e3 * rt->enqueue_seconds,
            rt->launches ? 1e6 * rt->enqueue_seconds / (double)rt->launches : 0.0,
            wall_seconds > 0 ? 100.0 * rt->enqueue_seconds / wall_seconds : 0.0);
}

void clrt_launch(struct clrt *rt, cl_kernel kernel, cl_uint dims, const size_t *global,
                 const size_t *local)
{
    size_t rounded[3];
    for (cl_uint i = 0; i < dims; i++) {
        rounded[i] = global[i];
        if (local && local[i] > 0)
            rounded[i] = (global[i] + local[i] - 1) / local[i] * local[i];
    }
    cl_event ev = NULL;
    rt->launches++;
    double t0 = host_now();
    CL_CHECK(clEnqueueNDRangeKernel(rt->queue, kernel, dims, NULL, rounded, local, 0, NULL,
                                    rt->profiling ? &ev : NULL));
    rt->enqueue_seconds += host_now() - t0;
    if (ev) {
        char name[48];
        CL_CHECK(clGetKernelInfo(kernel, CL_KERNEL_FUNCTION_NAME, sizeof name, name, NULL));
        name[sizeof name - 1] = '\0';
        prof_record(rt, ev, prof_slot(rt, name, 0));
    }
}

int clrt_reserve_gemm_temp(struct clrt *rt, size_t bytes, struct clvae_error *err)
{
    bytes = bytes < sizeof(float) ? sizeof(float) : bytes; // clrt_buffer's smallest
    if (rt->gemm_temp && bytes <= rt->gemm_temp_bytes)
        return 0;
    // The queue is in order and a released buffer lives until the commands using it are done.
    if (rt->gemm_temp) {
        clReleaseMemObject(rt->gemm_temp);
        rt->allocated -= rt->gemm_temp_bytes;
        rt->gemm_temp = NULL;
        rt->gemm_temp_bytes = 0;
    }
    if (!(rt->gemm_temp = clrt_buffer(rt, bytes, "matrix product scratch", err)))
        return -1;
    rt->gemm_temp_bytes = bytes;
    return 0;
}

static CLBlastStatusCode gemm_call(struct clrt *rt, bool ta, bool tb, size_t m, size_t n, size_t k,
                                   float alpha, struct clrt_mat a, struct clrt_mat b, float beta,
                                   struct clrt_mat c, cl_event *ev)
{
    return CLBlastSgemmWithTempBuffer(
        CLBlastLayoutRowMajor, ta ? CLBlastTransposeYes : CLBlastTransposeNo,
        tb ? CLBlastTransposeYes : CLBlastTransposeNo, m, n, k, alpha, a.mem, a.offset, a.ld, b.mem,
        b.offset, b.ld, beta, c.mem, c.offset, c.ld, &rt->queue, ev, rt->gemm_temp);
}

const char *clrt_gemm_engine(const struct clrt *rt)
{
    return rt->own_gemm ? "clvae's blocked kernels (cl/gemm.cl)" : "CLBlast";
}

#define GEMM_ROWS 8 // GEMM_R of cl/gemm.cl

static void gemm_label(char *label, size_t len, bool ta, bool tb, size_t m, size_t n, size_t k)
{
    snprintf(label, len, "gemm %c%c %zux%zux%zu", ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k);
}

// Sets the epilogue's arguments (bias buffer, offset, kind) of a cl/gemm.cl kernel from index
// i: none when ep is NULL (any buffer stands for the bias; it is not read).
static void epilogue_args(cl_kernel kern, cl_uint i, const struct clrt_epilogue *ep, cl_mem any)
{
    // cl/gemm.cl's GEMM_BIAS, GEMM_BIAS_RELU, GEMM_MASK, GEMM_COLSUM, GEMM_COLSUM_ADD
    static const cl_int kinds[] = {[CLRT_EPILOGUE_BIAS] = 1,
                                   [CLRT_EPILOGUE_MASK] = 3,
                                   [CLRT_EPILOGUE_COLSUM] = 4,
                                   [CLRT_EPILOGUE_COLSUM_ADD] = 5,
                                   [CLRT_EPILOGUE_SAMPLER] = 6};
    cl_mem mem = ep ? ep->bias.mem : any;
    cl_ulong off = ep ? ep->bias.offset : 0;
    cl_int kind = !ep ? 0 : ep->kind == CLRT_EPILOGUE_BIAS && ep->relu ? 2 : kinds[ep->kind];
    KARG(kern, i++, mem);
    KARG(kern, i++, off);
    KARG(kern, i++, kind);
}

// Sets the arguments of B^T's copy (buffer, offset, leading dimension; 0: none) from index i.
static void wt_args(cl_kernel kern, cl_uint i, const struct clrt_epilogue *ep, cl_mem any)
{
    bool keep = ep && ep->wt.mem;
    cl_mem mem = keep ? ep->wt.mem : any;
    cl_ulong off = keep ? ep->wt.offset : 0;
    cl_int ld = keep ? (cl_int)ep->wt.ld : 0;
    KARG(kern, i++, mem);
    KARG(kern, i++, off);
    KARG(kern, i++, ld);
}

// Sets a matrix's arguments (buffer, offset, leading dimension) from index i; returns the index
// after them.
static cl_uint mat_args(cl_kernel kern, cl_uint i, struct clrt_mat x)
{
    cl_ulong off = x.offset;
    cl_int ld = (cl_int)x.ld;
    KARG(kern, i++, x.mem);
    KARG(kern, i++, off);
    KARG(kern, i++, ld);
    return i;
}

// Sets an operand's arguments (buffer, offset, leading dimension, batch stride) of a cl/gemm.cl
// kernel from index i; returns the index after them.
static cl_uint operand_args(cl_kernel kern, cl_uint i, struct clrt_mat x, size_t stride)
{
    cl_ulong st = stride;
    i = mat_args(kern, i, x);
    KARG(kern, i++, st);
    return i;
}

// Whether a product's block walk takes the packed kernels: the rows a block walks down (B's, and
// A's for A^T) a multiple of 4 KiB apart, sharing their cache sets (see cl/gemm.cl).
static bool gemm_packed(bool ta, size_t n, struct clrt_mat a, struct clrt_mat b)
{
    return n > 16 && (b.ld % 1024 == 0 || (ta && a.ld % 1024 == 0));
}

// One launch of a cl/gemm.cl product kernel: C_i = alpha op(A_i) B_i + beta C_i for i < batch,
// in blocks of 8 x 32 (8 x 16 when n is 16 or less); its time goes to profile entry label. The
// packed kernels where gemm_packed says; the column-summing TN kernels for a COLSUM epilogue.
static void gemm_blocks(struct clrt *rt, bool ta, size_t m, size_t n, size_t k, float alpha,
                        struct clrt_mat a, size_t a_stride, struct clrt_mat b, size_t b_stride,
                        float beta, struct clrt_mat c, size_t c_stride, size_t batch,
                        const struct clrt_epilogue *ep, const char *label, double flops)
{
    static const char *const names[2][4] = {
        {"gemm_nn_32", "gemm_nn_16", "gemm_nn_packed", NULL},
        {"gemm_tn_32", "gemm_tn_16", "gemm_tn_packed", "gemm_tn_32_sum"}};
    double t0 = host_now();
    size_t width = n > 16 ? 32 : 16;
    bool packed = gemm_packed(ta, n, a, b);
    bool sum = ep && ep->kind >= CLRT_EPILOGUE_COLSUM;
    int which = packed ? 2 : width == 16;
    cl_kernel *kern = &rt->gemm_kernels[3 * ta + which];
    const char *name = names[ta][which];
    if (sum) // gemm_tn_32_sum or gemm_tn_16_sum (never packed: clrt_gemm_tn_colsum)
        kern = &rt->gemm_kernels[6 + which], name = which ? "gemm_tn_16_sum" : names[1][3];
    if (!*kern)
        *kern = clrt_kernel(rt, name);
    cl_int im = (cl_int)m, in = (cl_int)n, ik = (cl_int)k;
    cl_uint i = 0;
    KARG(*kern, i++, im);
    KARG(*kern, i++, in);
    KARG(*kern, i++, ik);
    KARG(*kern, i++, alpha);
    KARG(*kern, i++, beta);
    i = operand_args(*kern, i, a, a_stride);
    i = operand_args(*kern, i, b, b_stride);
    i = operand_args(*kern, i, c, c_stride);
    epilogue_args(*kern, i, ep, c.mem);
    wt_args(*kern, i + 3, packed ? NULL : ep, c.mem);
    // A work-group of up to 8 blocks down one column of blocks: on a CPU they run on one core
    // one after another, sharing B's columns in its cache (the packed kernels: exactly 8).
    size_t blocks = (m + GEMM_ROWS - 1) / GEMM_ROWS, group = blocks < 8 && !packed ? blocks : 8;
    size_t global[3] = {(n + width - 1) / width, (blocks + group - 1) / group * group, batch};
    size_t local[3] = {1, group, 1};
    enqueue_product(rt, *kern, 3, global, local, t0, label, flops);
}

// How many parts over k a single product of clvae's kernels takes (1: whole). A small output
// with long operands (the conv reference's 256x256x3136 dense layer: 130 GFLOP/s whole, 285 in
// 7 parts on PoCL on 2 cores) runs faster in parts whose rows of both operands stay in a core's
// cache; the parts' sum costs little when the output is small.
static size_t own_parts(const struct clrt *rt, size_t m, size_t n, size_t k)
{
    size_t bytes = k * (m + n) * sizeof(float);
    if (rt->splitk_bytes == 0 || m * n > ((size_t)1 << 18) || bytes < 4 * rt->splitk_bytes ||
        rt->splitk_min_k == 0)
        return 1;
    size_t parts = bytes / rt->splitk_bytes, most = k / rt->splitk_min_k;
    parts = parts < most ? parts : most;
    parts = parts < 64 ? parts : 64;
    if (parts < 2) // k below 2 splitk_min_k (a conv's 9 C over many rows): whole
        return 1;
    // Up to half as many again, if that divides k: no part of leftover rows, one launch fewer.
    for (size_t q = parts; q <= parts + parts / 2 && q <= most && q <= 64; q++)
        if (k % q == 0)
            return q;
    return parts;
}

static void gemm_split(struct clrt *rt, bool ta, size_t m, size_t n, size_t k, float alpha,
                       struct clrt_mat a, struct clrt_mat b, float beta, struct clrt_mat c,
                       size_t parts, cl_mem scratch, const struct clrt_epilogue *ep,
                       const char *label);

// Makes rt->gemm_temp at least bytes while products are queued, or stops the program naming the
// product m x n x k and why.
static void grow_gemm_temp(struct clrt *rt, size_t bytes, size_t m, size_t n, size_t k)
{
    struct clvae_error err;
    if (clrt_reserve_gemm_temp(rt, bytes, &err)) {
        clFinish(rt->queue);
        clvae_fatal(err.status, "the %zux%zux%zu matrix product: %s", m, n, k, err.msg);
    }
}

// C_i = alpha op(A_i) B_i + beta C_i for i < batch through cl/gemm.cl: one launch, or for a
// single product that own_parts splits, gemm_split with rt->gemm_temp as its scratch.
static void own_gemm(struct clrt *rt, bool ta, size_t m, size_t n, size_t k, float alpha,
                     struct clrt_mat a, size_t a_stride, struct clrt_mat b, size_t b_stride,
                     float beta, struct clrt_mat c, size_t c_stride, size_t batch,
                     const struct clrt_epilogue *ep, const char *label)
{
    if (m > INT_MAX || n > INT_MAX || k > INT_MAX || a.ld > INT_MAX || b.ld > INT_MAX ||
        c.ld > INT_MAX)
        clvae_fatal(CLVAE_EXIT_DEVICE,
                    "the %zux%zux%zu matrix product is too large for clvae's kernels (sizes up "
                    "to 2^31 - 1); CLVAE_GEMM=clblast runs it through CLBlast",
                    m, n, k);
    size_t parts = batch == 1 ? own_parts(rt, m, n, k) : 1;
    if (parts == 1) {
        gemm_blocks(rt, ta, m, n, k, alpha, a, a_stride, b, b_stride, beta, c, c_stride, batch, ep,
                    label, 2.0 * (double)batch * m * n * k);
        return;
    }
    grow_gemm_temp(rt, (parts + 1) * m * n * sizeof(float), m, n, k);
    gemm_split(rt, ta, m, n, k, alpha, a, b, beta, c, parts, rt->gemm_temp, ep, label);
}

void clrt_gemm(struct clrt *rt, bool ta, bool tb, size_t m, size_t n, size_t k, float alpha,
               struct clrt_mat a, struct clrt_mat b, float beta, struct clrt_mat c)
{
    if (rt->own_gemm && !tb) {
        char label[48];
        gemm_label(label, sizeof label, ta, tb, m, n, k);
        own_gemm(rt, ta, m, n, k, alpha, a, 0, b, 0, beta, c, 0, 1, NULL, label);
        return;
    }
    cl_event ev = NULL;
    cl_event *want = rt->profiling ? &ev : NULL;
    rt->launches++;
    double t0 = host_now();
    CLBlastStatusCode status = gemm_call(rt, ta, tb, m, n, k, alpha, a, b, beta, c, want);
    if (status == CLBlastInsufficientMemoryTemp) {
        // Whether CLBlast copies an operand into padded scratch depends on the exact sizes, so a
        // product of a row count the model was not sized for can need more: grow and retry.
        size_t bytes = 0;
        CL_CHECK(CLBlastSGemmTempBufferSize(
            CLBlastLayoutRowMajor, ta ? CLBlastTransposeYes : CLBlastTransposeNo,
            tb ? CLBlastTransposeYes : CLBlastTransposeNo, m, n, k, a.offset, a.ld, b.offset, b.ld,
            c.offset, c.ld, &rt->queue, &bytes));
        grow_gemm_temp(rt, bytes, m, n, k);
        status = gemm_call(rt, ta, tb, m, n, k, alpha, a, b, beta, c, want);
    }
    CL_CHECK(status);
    rt->enqueue_seconds += host_now() - t0;
    if (ev) {
        char label[48];
        gemm_label(label, sizeof label, ta, tb, m, n, k);
        prof_record(rt, ev, prof_slot(rt, label, 2.0 * (double)m * (double)n * (double)k));
    }
}

bool clrt_gemm_bias(struct clrt *rt, size_t m, size_t n, size_t k, struct clrt_mat a,
                    struct clrt_mat b, struct clrt_mat c, const struct clrt_epilogue *ep)
{
    if (!rt->own_gemm) {
        clrt_gemm(rt, false, false, m, n, k, 1.0f, a, b, 0.0f, c);
        return false;
    }
    char label[48];
    gemm_label(label, sizeof label, false, false, m, n, k);
    own_gemm(rt, false, m, n, k, 1.0f, a, 0, b, 0, 0.0f, c, 0, 1, ep, label);
    return true;
}

bool clrt_gemm_unsplit(const struct clrt *rt, size_t m, size_t n, size_t k)
{
    return rt->own_gemm && own_parts(rt, m, n, k) == 1;
}

// Whether one launch of clvae's plain (not packed) kernels runs C (m, n) = op(A) B.
static bool own_one_launch(const struct clrt *rt, bool ta, size_t m, size_t n, size_t k,
                           struct clrt_mat a, struct clrt_mat b, struct clrt_mat c)
{
    return clrt_gemm_unsplit(rt, m, n, k) && m <= INT_MAX && n <= INT_MAX && k <= INT_MAX &&
           a.ld <= INT_MAX && b.ld <= INT_MAX && c.ld <= INT_MAX && !gemm_packed(ta, n, a, b);
}

bool clrt_gemm_tn_colsum_adam(struct clrt *rt, size_t m, size_t n, size_t k, struct clrt_mat a,
                              struct clrt_mat b, struct clrt_mat c, struct clrt_mat colsum,
                              const struct clrt_adam *adam)
{
    size_t lo = c.offset, hi = colsum.offset + n;
    if (!own_one_launch(rt, true, m, n, k, a, b, c) || n <= 16 || c.ld != n ||
        colsum.mem != c.mem || colsum.offset != lo + m * n || hi > adam->count ||
        adam->count > INT_MAX)
        return false;
    double t0 = host_now();
    cl_kernel *kern = &rt->gemm_kernels[12];
    if (!*kern)
        *kern = clrt_kernel(rt, "gemm_tn_sum_adam");
    // gemm_pair's work-groups for the product, then two a compute unit for the other values, in
    // runs: on PoCL (2 cores) the default model's launch took 420 us so, 508 with runs of 64
    // chunks of 16 a work-item (13 groups) and 654 with one chunk (825 groups), against 403 for
    // the product and adam_update16 apart: each work-group of this kernel costs about a
    // microsecond to start.
    size_t cblocks = (n + 31) / 32, rgroups = (m + GEMM_ROWS * 8 - 1) / (GEMM_ROWS * 8);
    size_t groups0 = cblocks * rgroups, groups = groups0 + 2 * (size_t)rt->compute_units;
    cl_int ig = (cl_int)groups0, icb = (cl_int)cblocks, im = (cl_int)m, in = (cl_int)n,
           ik = (cl_int)k, ilo = (cl_int)lo, ihi = (cl_int)hi, icount = (cl_int)adam->count;
    cl_ulong bias_off = colsum.offset;
    cl_uint i = 0;
    KARG(*kern, i++, ig);
    KARG(*kern, i++, icb);
    KARG(*kern, i++, im);
    KARG(*kern, i++, in);
    KARG(*kern, i++, ik);
    i = mat_args(*kern, i, a);
    i = mat_args(*kern, i, b);
    i = mat_args(*kern, i, c);
    KARG(*kern, i++, bias_off);
    KARG(*kern, i++, adam->params);
    KARG(*kern, i++, adam->m);
    KARG(*kern, i++, adam->v);
    KARG(*kern, i++, adam->scalars);
    KARG(*kern, i++, ilo);
    KARG(*kern, i++, ihi);
    KARG(*kern, i++, icount);
    size_t global = groups * 8, local = 8;
    char label[48] = "";
    if (rt->profiling)
        snprintf(label, sizeof label, "gemm TN %zux%zux%zu + Adam", m, n, k);
    enqueue_product(rt, *kern, 1, &global, &local, t0, label, 2.0 * (double)m * n * k);
    return true;
}

bool clrt_gemm_keeps_wt(const struct clrt *rt, size_t m, size_t n, size_t k, struct clrt_mat a,
                        struct clrt_mat b)
{
    return own_one_launch(rt, false, m, n, k, a, b, (struct clrt_mat){0}) && k <= INT_MAX;
}

// Sets the arguments of one product of gemm_pair from index i: m, n, k, beta, the operands
// (buffer, offset, leading dimension) and the epilogue; returns the index after them.
static cl_uint pair_args(cl_kernel kern, cl_uint i, size_t m, size_t n, size_t k, float beta,
                         const struct clrt_mat *x, const struct clrt_epilogue *ep, cl_mem any)
{
    cl_int im = (cl_int)m, in = (cl_int)n, ik = (cl_int)k;
    KARG(kern, i++, im);
    KARG(kern, i++, in);
    KARG(kern, i++, ik);
    KARG(kern, i++, beta);
    for (int j = 0; j < 3; j++)
        i = mat_args(kern, i, x[j]);
    epilogue_args(kern, i, ep, any);
    return i + 3;
}

bool clrt_gemm_pair(struct clrt *rt, const struct clrt_pair *p)
{
    if (!own_one_launch(rt, true, p->m0, p->n0, p->k0, p->a0, p->b0, p->c0) ||
        !own_one_launch(rt, false, p->m1, p->n1, p->k1, p->a1, p->b1, p->c1))
        return false;
    double t0 = host_now();
    cl_kernel *kern = &rt->gemm_kernels[10];
    if (!*kern)
        *kern = clrt_kernel(rt, "gemm_pair");
    size_t cb0 = (p->n0 + 31) / 32, cb1 = (p->n1 + 31) / 32;
    size_t rg0 = (p->m0 + GEMM_ROWS * 8 - 1) / (GEMM_ROWS * 8);
    size_t rg1 = (p->m1 + GEMM_ROWS * 8 - 1) / (GEMM_ROWS * 8);
    cl_int groups0 = (cl_int)(cb0 * rg0), icb0 = (cl_int)cb0, icb1 = (cl_int)cb1;
    struct clrt_epilogue sums = {
        .bias = p->colsum, .kind = p->accumulate ? CLRT_EPILOGUE_COLSUM_ADD : CLRT_EPILOGUE_COLSUM};
    struct clrt_mat x0[3] = {p->a0, p->b0, p->c0}, x1[3] = {p->a1, p->b1, p->c1};
    const struct clrt_epilogue *ep1 = p->ep1;
    bool sampler = ep1 && ep1->kind == CLRT_EPILOGUE_SAMPLER;
    cl_mem eps = sampler ? ep1->eps : p->c1.mem;
    cl_float s_beta = sampler ? ep1->beta_scale : 0.0f, s_noise = sampler ? ep1->noise_scale : 0.0f;
    cl_uint i = 0;
    KARG(*kern, i++, groups0);
    KARG(*kern, i++, icb0);
    KARG(*kern, i++, icb1);
    i = pair_args(*kern, i, p->m0, p->n0, p->k0, p->accumulate ? 1.0f : 0.0f, x0, &sums, p->c0.mem);
    i = pair_args(*kern, i, p->m1, p->n1, p->k1, p->beta1, x1, ep1, p->c1.mem);
    KARG(*kern, i++, eps);
    KARG(*kern, i++, s_beta);
    KARG(*kern, i++, s_noise);
    size_t global = ((size_t)groups0 + cb1 * rg1) * 8, local = 8;
    char label[48] = "";
    if (rt->profiling)
        snprintf(label, sizeof label, "gemm TN %zux%zux%zu+NN %zux%zux%zu", p->m0, p->n0, p->k0,
                 p->m1, p->n1, p->k1);
    enqueue_product(rt, *kern, 1, &global, &local, t0, label,
                    2.0 * ((double)p->m0 * p->n0 * p->k0 + (double)p->m1 * p->n1 * p->k1));
    return true;
}

int clrt_chain_most(const struct clrt *rt)
{
    return rt->host_memory && own_gemm_default(rt->platform_name, true) ? CLRT_CHAIN : 1;
}

// The largest weight (k n floats) the head's launch takes in a product past the decoder's first
// (or the encoder's first layer): a work-item of the chain walks all of it for its 8 rows, where a
// product's own launch has a work-group of 8 row blocks walk a column of blocks together, so
// only weights that stay in a core's cache gain. The default model's 784x128 (401 KB): its
// forward 1.12x as fast in the chain; with --hidden 384 and 512 (1.2 and 1.6 MB) epochs took
// 1.04-1.07x as long (2-core Xeon, 2026-12-05).
#define CHAIN_WEIGHT_BYTES ((size_t)512 << 10)

// How many of s->next, in order, the head's launch runs: each while one launch of clvae's kernels
// runs it alone, reading the rows the one before wrote (z first, latent = n / 2 wide), and past
// the first while its weight is at most CHAIN_WEIGHT_BYTES, up to clrt_chain_most.
static int chain_length(const struct clrt *rt, size_t m, size_t latent,
                        const struct clrt_reparam *s)
{
    struct clrt_mat a = {s->z, 0, latent};
    size_t k = latent;
    int count = 0, most = clrt_chain_most(rt);
    for (; count < most && s->next[count].n > 0; count++) {
        const struct clrt_z_product *p = &s->next[count];
        if (!own_one_launch(rt, false, m, p->n, k, a, p->b, p->c) ||
            (count > 0 && k * p->n * sizeof(float) > CHAIN_WEIGHT_BYTES))
            break;
        a = p->c, k = p->n;
    }
    return count;
}

int clrt_gemm_bias_reparameterize(struct clrt *rt, size_t m, size_t n, size_t k, struct clrt_mat a,
                                  struct clrt_mat b, struct clrt_mat c,
                                  const struct clrt_epilogue *ep, const struct clrt_reparam *s)
{
    const struct clrt_first_product *f = &s->first;
    if (!own_one_launch(rt, false, m, n, k, a, b, c) || n > 32 || n % 2 || c.ld != n)
        return 0;
    if (f->on &&
        (clrt_chain_most(rt) < 2 || f->n != k || f->g.start < 0 ||
         f->k * f->n * sizeof(float) > CHAIN_WEIGHT_BYTES ||
         !own_one_launch(rt, false, m, f->n, f->k, (struct clrt_mat){f->g.x, 0, f->k}, f->b, f->c)))
        return 0;
    int chain = chain_length(rt, m, n / 2, s), asked = 0;
    while (asked < CLRT_CHAIN && s->next[asked].n > 0)
        asked++;
    bool lik = s->lik.on && chain == asked && chain > 0;
    double t0 = host_now();
    cl_kernel *kern = &rt->gemm_kernels[11];
    if (!*kern)
        *kern = clrt_kernel(rt, "gemm_nn_reparameterize");
    cl_int im = (cl_int)m, in = (cl_int)n, ik = (cl_int)k;
    cl_uint i = 0;
    KARG(*kern, i++, im);
    KARG(*kern, i++, in);
    KARG(*kern, i++, ik);
    struct clrt_mat x[3] = {a, b, c};
    for (int j = 0; j < 3; j++)
        i = mat_args(*kern, i, x[j]);
    cl_ulong bias_off = ep->bias.offset;
    KARG(*kern, i++, ep->bias.mem);
    KARG(*kern, i++, bias_off);
    wt_args(*kern, i, ep, c.mem);
    i += 3;
    cl_uint seed_lo = (cl_uint)s->seed, seed_hi = (cl_uint)(s->seed >> 32);
    cl_uint step_lo = (cl_uint)s->step, step_hi = (cl_uint)(s->step >> 32);
    KARG(*kern, i++, s->z);
    KARG(*kern, i++, s->eps);
    KARG(*kern, i++, s->kl);
    KARG(*kern, i++, s->kl_offset);
    KARG(*kern, i++, s->row0);
    KARG(*kern, i++, seed_lo);
    KARG(*kern, i++, seed_hi);
    KARG(*kern, i++, step_lo);
    KARG(*kern, i++, step_hi);
    KARG(*kern, i++, s->stream);
    KARG(*kern, i++, s->noise_scale);
    // Each product of the chain: its n (0: none), B and C (buffer, offset, leading dimension),
    // epilogue, wt; the head's own buffers stand in for those not run.
    char label[96] = "";
    int len = 0;
    if (rt->profiling && f->on)
        len = snprintf(label, sizeof label, "gemm NN %zux%zux%zu gathered + ", m, f->n, f->k);
    if (rt->profiling && len >= 0 && (size_t)len < sizeof label)
        len += snprintf(label + len, sizeof label - (size_t)len, "%s%zux%zux%zu + sample",
                        f->on ? "" : "gemm NN ", m, n, k);
    double flops = 2.0 * (double)m * n * k + (f->on ? 2.0 * (double)m * f->n * f->k : 0.0);
    size_t pk = n / 2;
    for (int q = 0; q < CLRT_CHAIN; q++) {
        const struct clrt_z_product *p = q < chain ? &s->next[q] : NULL;
        cl_int pn = p ? (cl_int)p->n : 0;
        KARG(*kern, i++, pn);
        struct clrt_mat y[2] = {p ? p->b : b, p ? p->c : c};
        for (int j = 0; j < 2; j++)
            i = mat_args(*kern, i, y[j]);
        epilogue_args(*kern, i, p ? &p->ep : NULL, c.mem);
        wt_args(*kern, i + 3, p ? &p->ep : NULL, c.mem);
        i += 6;
        if (!p)
            continue;
        flops += 2.0 * (double)m * p->n * pk;
        if (len > 0 && (size_t)len < sizeof label)
            len += snprintf(label + len, sizeof label - (size_t)len, " + %zux%zux%zu", m, p->n, pk);
        pk = p->n;
    }
    // The likelihood's arguments (the head's C standing in for its buffers when none).
    cl_int kind = lik ? s->lik.kind : -1;
    cl_mem lbuf[4] = {s->lik.x, s->lik.dout, s->lik.terms, s->lik.rec};
    for (int j = 0; j < 4; j++)
        lbuf[j] = lik ? lbuf[j] : c.mem;
    KARG(*kern, i++, kind);
    for (int j = 0; j < 3; j++)
        KARG(*kern, i++, lbuf[j]);
    KARG(*kern, i++, s->lik.dim);
    KARG(*kern, i++, s->lik.channels);
    KARG(*kern, i++, s->lik.scale);
    KARG(*kern, i++, lbuf[3]);
    KARG(*kern, i++, s->lik.rec_offset);
    // The first layer: its n (0: none), B, C, epilogue, no wt; k and the gather.
    cl_int fn = f->on ? (cl_int)f->n : 0, fk = (cl_int)f->k;
    struct clrt_mat fm[2] = {f->on ? f->b : b, f->on ? f->c : c};
    KARG(*kern, i++, fn);
    for (int j = 0; j < 2; j++)
        i = mat_args(*kern, i, fm[j]);
    epilogue_args(*kern, i, f->on ? &f->ep : NULL, c.mem);
    wt_args(*kern, i + 3, NULL, c.mem);
    i += 6;
    cl_mem gbuf[3] = {f->g.data, f->g.index, f->g.x};
    for (int j = 0; j < 3; j++)
        gbuf[j] = f->on ? gbuf[j] : c.mem;
    KARG(*kern, i++, fk);
    KARG(*kern, i++, gbuf[0]);
    KARG(*kern, i++, gbuf[1]);
    KARG(*kern, i++, f->g.start);
    KARG(*kern, i++, gbuf[2]);
    if (lik && len > 0 && (size_t)len < sizeof label)
        snprintf(label + len, sizeof label - (size_t)len, " + likelihood");
    // Work-groups of up to 8 row blocks; one a row block where the chain goes past the decoder's
    // first layer: each then carries a share of the step that a group of 8 would leave unevenly
    // split between 2 cores at a batch of 96 rows (12 blocks).
    size_t blocks = (m + GEMM_ROWS - 1) / GEMM_ROWS, group = blocks < 8 ? blocks : 8;
    if (chain > 1 || f->on)
        group = 1;
    size_t global[2] = {1, (blocks + group - 1) / group * group}, local[2] = {1, group};
    enqueue_product(rt, *kern, 2, global, local, t0, label, flops);
    return 1 + chain;
}

// Enqueues a product kernel of blocks of 8 rows x width columns over C (m, n) through
// enqueue_product: work-groups of up to 8 blocks down one column of blocks.
static void enqueue_row_blocks(struct clrt *rt, cl_kernel kern, size_t m, size_t n, size_t width,
                               double t0, const char *label, double flops)
{
    size_t blocks = (m + GEMM_ROWS - 1) / GEMM_ROWS, group = blocks < 8 ? blocks : 8;
    size_t global[2] = {(n + width - 1) / width, (blocks + group - 1) / group * group};
    size_t local[2] = {1, group};
    enqueue_product(rt, kern, 2, global, local, t0, label, flops);
}

bool clrt_gemm_bias_gathered(struct clrt *rt, size_t m, size_t n, size_t k,
                             const struct clrt_gather *g, struct clrt_mat b, struct clrt_mat c,
                             const struct clrt_epilogue *ep)
{
    struct clrt_mat a = {g->x, 0, k};
    if (!rt->own_gemm || m > INT_MAX || n > INT_MAX || k > INT_MAX || b.ld > INT_MAX ||
        c.ld > INT_MAX || own_parts(rt, m, n, k) > 1 || gemm_packed(false, n, a, b))
        return false;
    double t0 = host_now();
    size_t width = n > 16 ? 32 : 16;
    cl_kernel *kern = &rt->gemm_kernels[8 + (width == 16)];
    if (!*kern)
        *kern = clrt_kernel(rt, width == 16 ? "gemm_nn_16_gather" : "gemm_nn_32_gather");
    cl_int im = (cl_int)m, in = (cl_int)n, ik = (cl_int)k, ldb = (cl_int)b.ld, ldc = (cl_int)c.ld;
    cl_uint i = 0;
    KARG(*kern, i++, im);
    KARG(*kern, i++, in);
    KARG(*kern, i++, ik);
    KARG(*kern, i++, g->data);
    KARG(*kern, i++, g->index);
    KARG(*kern, i++, g->start);
    KARG(*kern, i++, g->x);
    cl_ulong b_off = b.offset, c_off = c.offset;
    KARG(*kern, i++, b.mem);
    KARG(*kern, i++, b_off);
    KARG(*kern, i++, ldb);
    KARG(*kern, i++, c.mem);
    KARG(*kern, i++, c_off);
    KARG(*kern, i++, ldc);
    epilogue_args(*kern, i, ep, c.mem);
    char label[48] = "";
    if (rt->profiling)
        snprintf(label, sizeof label, "gemm NN %zux%zux%zu gathered", m, n, k);
    enqueue_row_blocks(rt, *kern, m, n, width, t0, label, 2.0 * (double)m * n * k);
    return true;
}

void clrt_gemm_masked(struct clrt *rt, size_t m, size_t n, size_t k, struct clrt_mat a,
                      struct clrt_mat b, float beta, struct clrt_mat c, struct clrt_mat mask)
{
    struct clrt_epilogue ep = {.bias = mask, .kind = CLRT_EPILOGUE_MASK};
    char label[48];
    gemm_label(label, sizeof label, false, false, m, n, k);
    own_gemm(rt, false, m, n, k, 1.0f, a, 0, b, 0, beta, c, 0, 1, &ep, label);
}

bool clrt_gemm_tn_colsum(struct clrt *rt, size_t m, size_t n, size_t k, struct clrt_mat a,
                         struct clrt_mat b, float beta, struct clrt_mat c, struct clrt_mat colsum,
                         bool accumulate)
{
    if (!rt->own_gemm || m > INT_MAX || n > INT_MAX || k > INT_MAX || a.ld > INT_MAX ||
        b.ld > INT_MAX || c.ld > INT_MAX || own_parts(rt, m, n, k) > 1 ||
        gemm_packed(true, n, a, b))
        return false;
    struct clrt_epilogue ep = {
        .bias = colsum, .kind = accumulate ? CLRT_EPILOGUE_COLSUM_ADD : CLRT_EPILOGUE_COLSUM};
    char label[48];
    gemm_label(label, sizeof label, true, false, m, n, k);
    gemm_blocks(rt, true, m, n, k, 1.0f, a, 0, b, 0, beta, c, 0, 1, &ep, label,
                2.0 * (double)m * n * k);
    return true;
}

void clrt_gemm_tn_batched(struct clrt *rt, size_t m, size_t n, size_t k, struct clrt_mat a,
                          size_t a_stride, struct clrt_mat b, size_t b_stride, struct clrt_mat c,
                          size_t c_stride, size_t batch)
{
    char label[48];
    snprintf(label, sizeof label, "gemm TN %zux%zux%zu in %zu", m, n, k, batch);
    if (rt->own_gemm) {
        own_gemm(rt, true, m, n, k, 1.0f, a, a_stride, b, b_stride, 0.0f, c, c_stride, batch, NULL,
                 label);
        return;
    }
    cl_event ev = NULL;
    rt->launches++;
    float alpha = 1.0f, beta = 0.0f;
    CL_CHECK(CLBlastSgemmStridedBatched(
        CLBlastLayoutRowMajor, CLBlastTransposeYes, CLBlastTransposeNo, m, n, k, alpha, a.mem,
        a.offset, a.ld, a_stride, b.mem, b.offset, b.ld, b_stride, beta, c.mem, c.offset, c.ld,
        c_stride, batch, &rt->queue, rt->profiling ? &ev : NULL));
    if (ev)
        prof_record(rt, ev, prof_slot(rt, label, 2.0 * (double)batch * m * n * k));
}

static void sum_parts(struct clrt *rt, cl_mem scratch, size_t parts, size_t m, size_t n,
                      float alpha, float beta, struct clrt_mat c, const struct clrt_epilogue *ep);

// C = alpha op(A) B + beta C (then ep) over k in parts: parts products of k / parts rows each
// (a strided batch into scratch), the rows left over as one more, then gemm_sum_parts adds
// them in order. scratch holds parts + 1 products of m x n.
static void gemm_split(struct clrt *rt, bool ta, size_t m, size_t n, size_t k, float alpha,
                       struct clrt_mat a, struct clrt_mat b, float beta, struct clrt_mat c,
                       size_t parts, cl_mem scratch, const struct clrt_epilogue *ep,
                       const char *label)
{
    size_t chunk = k / parts, rest = k - chunk * parts, mn = m * n;
    // Part p's rows of k: columns p chunk.. of A (rows when ta), rows p chunk.. of B.
    size_t a_step = ta ? chunk * a.ld : chunk, b_step = chunk * b.ld;
    struct clrt_mat part = {scratch, 0, n};
    if (rt->own_gemm) {
        char part_label[72];
        snprintf(part_label, sizeof part_label, "%s in %zu", label, parts);
        gemm_blocks(rt, ta, m, n, chunk, 1.0f, a, a_step, b, b_step, 0.0f, part, mn, parts, NULL,
                    part_label, 2.0 * (double)m * n * chunk * parts);
    } else {
        clrt_gemm_tn_batched(rt, m, n, chunk, a, a_step, b, b_step, part, mn, parts);
    }
    if (rest) {
        a.offset += a_step * parts;
        b.offset += b_step * parts;
        part.offset = parts * mn;
        clrt_gemm(rt, ta, false, m, n, rest, 1.0f, a, b, 0.0f, part);
        parts++;
    }
    sum_parts(rt, scratch, parts, m, n, alpha, beta, c, ep);
}

// C (m, n) = alpha (the sum of the parts products of m x n in scratch, in order) + beta C, then
// the epilogue: the second pass of a product split over k.
static void sum_parts(struct clrt *rt, cl_mem scratch, size_t parts, size_t m, size_t n,
                      float alpha, float beta, struct clrt_mat c, const struct clrt_epilogue *ep)
{
    // On a CPU 16 columns a work-item (gemm_sum_parts16: the same bits).
    bool cpu = rt->device_type & CL_DEVICE_TYPE_CPU;
    if (!rt->gemm_sum)
        rt->gemm_sum = clrt_kernel(rt, cpu ? "gemm_sum_parts16" : "gemm_sum_parts");
    cl_int ip = (cl_int)parts, im = (cl_int)m, in = (cl_int)n, ldc = (cl_int)c.ld;
    cl_ulong co = c.offset;
    cl_uint i = 0;
    KARG(rt->gemm_sum, i++, scratch);
    KARG(rt->gemm_sum, i++, ip);
    KARG(rt->gemm_sum, i++, im);
    KARG(rt->gemm_sum, i++, in);
    KARG(rt->gemm_sum, i++, alpha);
    KARG(rt->gemm_sum, i++, beta);
    KARG(rt->gemm_sum, i++, c.mem);
    KARG(rt->gemm_sum, i++, co);
    KARG(rt->gemm_sum, i++, ldc);
    epilogue_args(rt->gemm_sum, i, ep, c.mem);
    size_t global[2] = {cpu ? (n + 15) / 16 : n, m};
    clrt_launch(rt, rt->gemm_sum, 2, global, NULL);
}

void clrt_gemm_split(struct clrt *rt, size_t m, size_t n, size_t k, struct clrt_mat a,
                     struct clrt_mat b, float beta, struct clrt_mat c, size_t parts, cl_mem scratch)
{
    char label[48];
    gemm_label(label, sizeof label, true, false, m, n, k);
    gemm_split(rt, true, m, n, k, 1.0f, a, b, beta, c, parts, scratch, NULL, label);
}

size_t clrt_gemm_temp_size(struct clrt *rt, bool ta, bool tb, size_t m, size_t n, size_t k,
                           size_t lda, size_t ldb, size_t ldc)
{
    if (rt->own_gemm && !tb) {
        size_t parts = own_parts(rt, m, n, k);
        return parts > 1 ? (parts + 1) * m * n * sizeof(float) : 0;
    }
    size_t bytes = 0;
    CL_CHECK(CLBlastSGemmTempBufferSize(CLBlastLayoutRowMajor,
                                        ta ? CLBlastTransposeYes : CLBlastTransposeNo,
                                        tb ? CLBlastTransposeYes : CLBlastTransposeNo, m, n, k, 0,
                                        lda, 0, ldb, 0, ldc, &rt->queue, &bytes));
    return bytes;
}

size_t clrt_kernel_max_group(const struct clrt *rt, cl_kernel k)
{
    size_t most;
    CL_CHECK(clGetKernelWorkGroupInfo(k, rt->device, CL_KERNEL_WORK_GROUP_SIZE, sizeof most, &most,
                                      NULL));
    return most;
}

int clrt_reserve_zeros(struct clrt *rt, size_t floats, struct clvae_error *err)
{
    if (rt->zeros_floats >= floats)
        return 0;
    cl_mem mem = clrt_buffer(rt, floats * sizeof(float), "convolution padding", err);
    if (!mem)
        return -1;
    // (Queued products that read the old buffer keep it until they finish.)
    if (rt->zeros) {
        clReleaseMemObject(rt->zeros);
        rt->allocated -= rt->zeros_floats * sizeof(float);
    }
    rt->zeros = mem, rt->zeros_floats = floats;
    return 0;
}

// rt->zeros, at least floats of them: as reserved (vae_create), or made here for a caller that
// did not reserve them; the program stops, naming the buffer, where the device cannot hold it.
static cl_mem conv_zeros(struct clrt *rt, size_t floats)
{
    struct clvae_error err;
    if (clrt_reserve_zeros(rt, floats, &err)) {
        clFinish(rt->queue);
        clvae_fatal(err.status, "%s", err.msg);
    }
    return rt->zeros;
}

// Sets a conv product's GEMM_CONV_ARGS (cl/gemm.cl) from index i; returns the index after them.
static cl_uint conv_args(struct clrt *rt, cl_kernel kern, cl_uint i, const struct clrt_conv *g)
{
    cl_mem zeros = conv_zeros(rt, (size_t)g->c);
    KARG(kern, i++, g->img);
    KARG(kern, i++, zeros);
    const int *shape[8] = {&g->c, &g->h, &g->w, &g->gh, &g->gw, &g->k, &g->s, &g->p};
    for (int q = 0; q < 8; q++)
        KARG(kern, i++, *shape[q]);
    return i;
}

// The kernel at rt->gemm_kernels[slot], created on first use.
static cl_kernel gemm_kernel(struct clrt *rt, int slot, const char *name)
{
    if (!rt->gemm_kernels[slot])
        rt->gemm_kernels[slot] = clrt_kernel(rt, name);
    return rt->gemm_kernels[slot];
}

bool clrt_conv_direct(const struct clrt *rt, size_t positions, size_t n, size_t kkc, int c)
{
    if (!rt->own_gemm || c % 8 != 0 || positions > INT_MAX || n > INT_MAX || kkc > INT_MAX ||
        own_parts(rt, positions, n, kkc) > 1)
        return false;
    // The weight gradient's parts over the positions, and the rows left over as one product
    // more, which clrt_gemm would split again only were it long (then: not here).
    size_t parts = own_parts(rt, kkc, n, positions), rest = positions % parts;
    return parts == 1 || rest == 0 || own_parts(rt, kkc, n, rest) == 1;
}

void clrt_conv_forward(struct clrt *rt, size_t m, size_t n, const struct clrt_conv *g,
                       struct clrt_mat b, float beta, struct clrt_mat c,
                       const struct clrt_epilogue *ep)
{
    double t0 = host_now();
    size_t width = n > 16 ? 32 : 16, k = (size_t)g->k * g->k * g->c;
    cl_kernel kern =
        gemm_kernel(rt, 13 + (width == 16), width == 16 ? "gemm_nn_conv_16" : "gemm_nn_conv_32");
    cl_int im = (cl_int)m, in = (cl_int)n;
    cl_uint i = 0;
    KARG(kern, i++, im);
    KARG(kern, i++, in);
    i = conv_args(rt, kern, i, g);
    i = mat_args(kern, i, b);
    KARG(kern, i++, beta);
    i = mat_args(kern, i, c);
    epilogue_args(kern, i, ep, c.mem);
    char label[48] = "";
    if (rt->profiling)
        snprintf(label, sizeof label, "gemm NN %zux%zux%zu conv", m, n, k);
    enqueue_row_blocks(rt, kern, m, n, width, t0, label, 2.0 * (double)m * n * k);
}

// count products (dimension 2) of gemm_tn_conv: C_p (m, n) = im2col(img)^T B + beta C_p over k
// positions from pos0 + p step, C_p at c.offset + p c_stride.
static void conv_tn(struct clrt *rt, size_t m, size_t n, size_t k, const struct clrt_conv *g,
                    size_t pos0, size_t step, size_t count, struct clrt_mat b, float beta,
                    struct clrt_mat c, size_t c_stride, const char *label)
{
    double t0 = host_now();
    size_t width = n > 16 ? 32 : 16;
    cl_kernel kern =
        gemm_kernel(rt, 15 + (width == 16), width == 16 ? "gemm_tn_conv_16" : "gemm_tn_conv_32");
    cl_int im = (cl_int)m, in = (cl_int)n, ik = (cl_int)k, p0 = (cl_int)pos0, ps = (cl_int)step;
    cl_uint i = 0;
    KARG(kern, i++, im);
    KARG(kern, i++, in);
    KARG(kern, i++, ik);
    KARG(kern, i++, beta);
    i = conv_args(rt, kern, i, g);
    KARG(kern, i++, p0);
    KARG(kern, i++, ps);
    i = mat_args(kern, i, b);
    i = operand_args(kern, i, c, c_stride);
    size_t blocks = m / GEMM_ROWS, group = blocks < 8 ? blocks : 8;
    size_t global[3] = {(n + width - 1) / width, (blocks + group - 1) / group * group, count};
    size_t local[3] = {1, group, 1};
    enqueue_product(rt, kern, 3, global, local, t0, label, 2.0 * (double)m * n * k * count);
}

void clrt_conv_weight_grad(struct clrt *rt, size_t m, size_t n, size_t k, const struct clrt_conv *g,
                           struct clrt_mat b, float beta, struct clrt_mat c)
{
    char label[48] = "";
    size_t parts = own_parts(rt, m, n, k);
    if (parts == 1) {
        if (rt->profiling)
            snprintf(label, sizeof label, "gemm TN %zux%zux%zu conv", m, n, k);
        conv_tn(rt, m, n, k, g, 0, 0, 1, b, beta, c, 0, label);
        return;
    }
    // As own_gemm splits the product over the columns: parts of k / parts positions into
    // rt->gemm_temp, the positions left over as one more, then their sum.
    grow_gemm_temp(rt, (parts + 1) * m * n * sizeof(float), m, n, k);
    size_t chunk = k / parts, rest = k - chunk * parts, mn = m * n;
    struct clrt_mat part = {rt->gemm_temp, 0, n};
    if (rt->profiling)
        snprintf(label, sizeof label, "gemm TN %zux%zux%zu conv in %zu", m, n, k, parts);
    conv_tn(rt, m, n, chunk, g, 0, chunk, parts, b, 0.0f, part, mn, label);
    if (rest) {
        part.offset = parts * mn;
        if (rt->profiling)
            snprintf(label, sizeof label, "gemm TN %zux%zux%zu conv", m, n, rest);
        conv_tn(rt, m, n, rest, g, parts * chunk, 0, 1, b, 0.0f, part, 0, label);
        parts++;
    }
    sum_parts(rt, rt->gemm_temp, parts, m, n, 1.0f, beta, c, NULL);
}

void clrt_conv_input_grad(struct clrt *rt, size_t m, size_t n, const struct clrt_conv *g,
                          struct clrt_mat wt, cl_mem dx, bool acc)
{
    double t0 = host_now();
    // Blocks of 4 pixels x 32 channels where there are 32 (two vector loads of W^T a step for
    // 8 fused multiply-adds; 8 x 16 takes one for 8), else 8 x 16.
    bool wide = g->c >= 32;
    size_t rows = wide ? 4 : GEMM_ROWS, width = wide ? 32 : 16;
    cl_kernel kern = gemm_kernel(rt, 17 + wide, wide ? "gemm_conv_dx_32" : "gemm_conv_dx");
    cl_int im = (cl_int)m, oc = (cl_int)n, add = acc, ldwt = (cl_int)wt.ld;
    cl_ulong wt_off = wt.offset;
    cl_uint i = 0;
    KARG(kern, i++, im);
    KARG(kern, i++, g->c);
    KARG(kern, i++, g->img);
    KARG(kern, i++, oc);
    const int *shape[7] = {&g->h, &g->w, &g->gh, &g->gw, &g->k, &g->s, &g->p};
    for (int q = 0; q < 7; q++)
        KARG(kern, i++, *shape[q]);
    KARG(kern, i++, wt.mem);
    KARG(kern, i++, wt_off);
    KARG(kern, i++, ldwt);
    KARG(kern, i++, dx);
    KARG(kern, i++, add);
    // A block's pixels are of one class (y mod S, x mod S) of the batch's (the kernel's comment).
    size_t s = (size_t)g->s, images = m / ((size_t)g->h * g->w), blocks = 0;
    for (size_t cy = 0; cy < s; cy++)
        for (size_t cx = 0; cx < s; cx++) {
            size_t hc = ((size_t)g->h - cy + s - 1) / s, wc = ((size_t)g->w - cx + s - 1) / s;
            blocks += (images * hc * wc + rows - 1) / rows;
        }
    size_t global[2] = {((size_t)g->c + width - 1) / width, blocks};
    char label[48] = "";
    size_t k = (size_t)g->k * g->k * g->c;
    if (rt->profiling)
        snprintf(label, sizeof label, "conv dx %zux%zux%zu", m, k, n);
    // The product it stands for: the grid's positions (a pixel's when the stride is 1) x k x n.
    double positions = (double)images * g->gh * g->gw;
    enqueue_product(rt, kern, 2, global, NULL, t0, label, 2.0 * positions * k * n);
}
