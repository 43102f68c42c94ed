// Every Kiln operator, in one include.
#pragma once

#include "kiln/ops/elementwise.h"
#include "kiln/ops/linalg.h"
#include "kiln/ops/nn_ops.h"
#include "kiln/ops/reduce.h"
#include "kiln/ops/shape_ops.h"
