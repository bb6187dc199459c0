/* imnn_train: training an information maximising neural network on simulations spread over
 * rank groups (MODEL.md section 9).
 *
 * A set of simulations holds n_fid fiducial ones (theta*) and, for each parameter a, n_pairs
 * seed-matched pairs at theta* +- dtheta_a / 2 e_a; pair j of every parameter has the seed of
 * fiducial simulation j (so n_pairs <= n_fid), and seeds come from groups_task_seed(campaign
 * seed, key), keys apart for the training set (renewed every few epochs if asked), the
 * validation set and the test set. The simulations of a set are cut into blocks of a fixed
 * number of consecutive simulations; block b runs on group b mod G. Per-simulation summaries
 * are gathered into fixed slots, and each block's weight gradient is summed in simulation
 * order and the blocks' sums are added in block order, so that the history does not depend on
 * the number of groups (only, through the reductions inside a group, on its size, at the
 * rounding level).
 *
 * The identity and band-power front ends do not depend on the weights: their features are
 * computed once per set (one simulation each) and kept. The convolutional front end keeps the
 * simulated fields instead: each rank keeps its slab of every simulation its group runs in a
 * training batch or in the validation set (n_local doubles each: 256 KiB for a 32^3 field on
 * one rank), made at the first pass and forgotten when the training set is renewed; other
 * passes (the standardisation, the linear start, the test set) re-run what they need (every
 * simulation is fixed by its parameters and seed).
 *
 * Each epoch, for each of n_batches batches (a share of the fiducial simulations and of the
 * pairs): summaries, the loss and its gradient (imnn_stats_compute), the reverse pass, an Adam
 * step; then the validation set's det F at the new weights. The best
 * weights by validation det F are kept; training stops after `patience` epochs without a
 * better one, or at max_epochs. A progress line per epoch (log_info). */
#ifndef CERBERUS_IMNN_TRAIN_H
#define CERBERUS_IMNN_TRAIN_H

#include "cerberus/groups.h"
#include "cerberus/imnn.h"
#include "cerberus/simulator.h"

#include <stdint.h>

typedef struct imnn_train_config {
  int n_s, n_d;       /* training: fiducial simulations and pairs per parameter */
  int n_val, n_d_val; /* validation set, the same */
  int n_test;         /* test simulations (estimates against truth) after training */
  int max_epochs, patience, renew_every; /* renew_every 0: one training set */
  double lr;                             /* Adam's learning rate */
  int n_batches;           /* Adam steps an epoch: the training set cut in as many batches (0: 1) */
  uint64_t seed;           /* campaign seed */
  unsigned long init_seed; /* initial weights */
  int block;               /* simulations a block (0: 8) */
  imnn_reg reg;
} imnn_train_config;

/* History columns: epoch, loss, ln det F (train), det F (train), det F (validation),
 * regulariser r L2, L2. */
#define IMNN_HISTORY_COLS 7

typedef struct imnn_train_result {
  int n_epochs, best_epoch;
  double *history;    /* n_epochs x IMNN_HISTORY_COLS (malloc) */
  double *test_theta; /* n_test x p: the truth */
  double *test_est;   /* n_test x p: the quasi-ML estimates */
  long n_sims;        /* simulations run (with re-runs) */
  double wall;        /* s */
} imnn_train_result;

/* Train m (its arch set; w, shift, scale and stats are filled: stats are the validation set's
 * at the best weights, with theta_fid and dtheta from m->stats on entry). sim runs on g->comm
 * (a field simulator's field is the network's). CB_ERR_INPUT for n_d > n_s, a zero dtheta, too
 * few simulations. Collective on g->world. */
int imnn_train(groups *g, simulator *sim, imnn_model *m, const imnn_train_config *cfg,
               imnn_train_result *res);
void imnn_train_result_free(imnn_train_result *res);

#endif
