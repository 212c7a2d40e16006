// Data-parallel training across processes: MPI ranks (Open MPI), one OpenCL device each. Built
// without MPI (-Dmpi=disabled), or started without mpirun, clvae is one rank of one and every
// function here does what that rank alone would: the sums are the values themselves.
//
// Every rank holds the same parameters and Adam state. A step's batch is split into one slice a
// rank; each rank's gradient of its slice is summed across ranks (dist_sum_floats, an
// MPI_Allreduce staged through host memory) and every rank takes the same Adam step. Only rank
// 0 prints, writes images, metrics and checkpoints.
#ifndef CLVAE_DIST_H
#define CLVAE_DIST_H

#include <stdbool.h>
#include <stddef.h>

#include "error.h"

// Starts MPI when clvae was built with it (MPI_Init_thread, funneled) and a launcher (mpirun, or
// srun with PMIx or PMI) started the process; otherwise clvae runs as one rank, MPI untouched.
// Call once, first thing in main.
void dist_init(int *argc, char ***argv);

// Ends MPI (MPI_Finalize) after a run every rank finished the same way.
void dist_finalize(void);

// This process's rank, the number of ranks, and its index among the ranks of its node (an MPI-3
// shared-memory split): 0, 1, 0 without MPI.
int dist_rank(void);
int dist_size(void);
int dist_local_rank(void);

// Whether MPI is compiled in.
bool dist_built(void);

// v[0 .. n) = its sum over the ranks, in place, in every rank (MPI_SUM in float / double).
void dist_sum_floats(float *v, size_t n);
void dist_sum_doubles(double *v, size_t n);

// The largest of every rank's v, in every rank.
int dist_max_int(int v);

// Every rank's text (up to len bytes each) into all (size x len bytes) on rank 0.
void dist_gather_text(const char *text, char *all, size_t len);

// Agrees on a step every rank reached with its own status (0, or -1 with err): when any rank
// failed, every rank returns -1 with the lowest failing rank's err (its message and status), so
// that the ranks stop together and one message is printed. 0 when none failed.
int dist_agree(int status, struct clvae_error *err);

// Stops every rank at once with status (MPI_Abort), after a rank's own failure that the others
// cannot know of; without MPI, exit(status).
_Noreturn void dist_abort(int status);

#endif
