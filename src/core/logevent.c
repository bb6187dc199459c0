/* logevent: PETSc log events for the costly stages (include/cerberus/logevent.h).
 *
 * One PETSc class "Cerberus" and one event per stage, registered lazily on the first
 * logevent_begin once PETSc is up. The names are what -log_view prints. */
#include "cerberus/logevent.h"

#include <petscsys.h>

static const char *const event_names[LOGEVENT_COUNT] = {
    "CbFFT", "CbICNoise",    "CbICFilter", "CbICDelta",    "CbPower",
    "CbLPT", "CbLPTAdjoint", "CbCIC",      "CbCICAdjoint", "CbMigrate"};

static PetscLogEvent events[LOGEVENT_COUNT];
static int registered = 0; /* 0: not yet, 1: done, -1: failed (do nothing) */

static void register_events(void) {
  PetscBool up = PETSC_FALSE;
  if (PetscInitialized(&up) != 0 || !up) return; /* try again later */
  PetscClassId cls;
  if (PetscClassIdRegister("Cerberus", &cls) != 0) {
    registered = -1;
    return;
  }
  for (int i = 0; i < LOGEVENT_COUNT; i++)
    if (PetscLogEventRegister(event_names[i], cls, &events[i]) != 0) {
      registered = -1;
      return;
    }
  registered = 1;
}

void logevent_begin(enum logevent_id id) {
  if (registered == 0) register_events();
  if (registered == 1) (void)PetscLogEventBegin(events[id], 0, 0, 0, 0);
}

void logevent_end(enum logevent_id id) {
  if (registered == 1) (void)PetscLogEventEnd(events[id], 0, 0, 0, 0);
}
