// The core's headers compile as C++ (the CANN adapter links the core): every
// header at once, with the adapter's warnings. Compiled only, never run.
#include "core/clock.h"
#include "core/copy.h"
#include "core/error.h"
#include "core/guard.h"
#include "core/handles.h"
#include "core/job.h"
#include "core/options.h"
#include "core/sha256.h"
#include "core/workers.h"

int32_t core_cxx_probe(const core_guard *g) { return core_guard_check(g); }
