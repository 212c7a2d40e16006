#include "dist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef CLVAE_MPI
#include <mpi.h>

static int rank_, size_ = 1, local_rank_;
static bool started;

// Whether a launcher started this process as a rank: mpirun (Open MPI), or a PMIx/PMI launcher
// such as Slurm's srun. Started any other way clvae runs alone and leaves MPI uninitialised.
static bool launched(void)
{
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        if (getenv(vars[i]))
            return true;
    return false;
}

void dist_init(int *argc, char ***argv)
{
    if (!launched())
        return;
    started = true;
    int provided;
    MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    // The rank among the node's, from MPI itself (what OMPI_COMM_WORLD_LOCAL_RANK says under
    // mpirun, but from any launcher, and no number from the environment to trust).
    MPI_Comm node;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &node);
    MPI_Comm_rank(node, &local_rank_);
    MPI_Comm_free(&node);
}

void dist_finalize(void)
{
    if (started)
        MPI_Finalize();
}

bool dist_built(void)
{
    return true;
}

// MPI counts are ints: sums of more than INT_MAX values go in pieces.
#define DIST_PIECE ((size_t)1 << 30)

void dist_sum_floats(float *v, size_t n)
{
    for (size_t i = 0; size_ > 1 && i < n; i += DIST_PIECE) {
        size_t m = n - i < DIST_PIECE ? n - i : DIST_PIECE;
        MPI_Allreduce(MPI_IN_PLACE, v + i, (int)m, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    }
}

void dist_sum_doubles(double *v, size_t n)
{
    for (size_t i = 0; size_ > 1 && i < n; i += DIST_PIECE) {
        size_t m = n - i < DIST_PIECE ? n - i : DIST_PIECE;
        MPI_Allreduce(MPI_IN_PLACE, v + i, (int)m, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    }
}

int dist_max_int(int v)
{
    if (size_ > 1)
        MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    return v;
}

void dist_gather_text(const char *text, char *all, size_t len)
{
    char *mine = calloc(1, len);
    if (!mine)
        dist_abort(CLVAE_EXIT_FAILURE);
    snprintf(mine, len, "%s", text);
    if (size_ > 1)
        MPI_Gather(mine, (int)len, MPI_CHAR, all, (int)len, MPI_CHAR, 0, MPI_COMM_WORLD);
    else
        memcpy(all, mine, len);
    free(mine);
}

int dist_agree(int status, struct clvae_error *err)
{
    if (size_ == 1)
        return status;
    // The lowest failing rank, or size_ when none failed.
    int failing = status ? rank_ : size_;
    MPI_Allreduce(MPI_IN_PLACE, &failing, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (failing == size_)
        return 0;
    MPI_Bcast(&err->status, 1, MPI_INT, failing, MPI_COMM_WORLD);
    MPI_Bcast(err->msg, (int)sizeof err->msg, MPI_CHAR, failing, MPI_COMM_WORLD);
    return -1;
}

_Noreturn void dist_abort(int status)
{
    fflush(stdout);
    fflush(stderr);
    if (size_ > 1)
        MPI_Abort(MPI_COMM_WORLD, status);
    exit(status);
}

#else // without MPI: one rank

void dist_init(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
}

void dist_finalize(void)
{
}

bool dist_built(void)
{
    return false;
}

void dist_sum_floats(float *v, size_t n)
{
    (void)v;
    (void)n;
}

void dist_sum_doubles(double *v, size_t n)
{
    (void)v;
    (void)n;
}

int dist_max_int(int v)
{
    return v;
}

void dist_gather_text(const char *text, char *all, size_t len)
{
    snprintf(all, len, "%s", text);
}

int dist_agree(int status, struct clvae_error *err)
{
    (void)err;
    return status;
}

_Noreturn void dist_abort(int status)
{
    fflush(stdout);
    fflush(stderr);
    exit(status);
}

static const int rank_ = 0, size_ = 1, local_rank_ = 0;

#endif

int dist_rank(void)
{
    return rank_;
}

int dist_size(void)
{
    return size_;
}

int dist_local_rank(void)
{
    return local_rank_;
}
