// Every Kiln operator, in one include.
#pragma once

#include "kiln/ops/elementwise.h"
#include "kiln/ops/indexing_extra.h"
#include "kiln/ops/inference_extra.h"
#include "kiln/ops/inference_nn.h"
#include "kiln/ops/inference_ops.h"
#include "kiln/ops/linalg.h"
#include "kiln/ops/nn_ops.h"
#include "kiln/ops/quant_ops.h"
#include "kiln/ops/reduce.h"
#include "kiln/ops/shape_ops.h"
