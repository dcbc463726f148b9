// Compiles the precompiled header once; every other target reuses it.
#include "saelab/core/pch.h"
