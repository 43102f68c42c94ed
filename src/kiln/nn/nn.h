// The nn layer in one include: Module, initialisers, layers, the reference models and sampling.
#pragma once

#include "kiln/nn/activation.h"
#include "kiln/nn/conv.h"
#include "kiln/nn/gpt.h"
#include "kiln/nn/init.h"
#include "kiln/nn/linear.h"
#include "kiln/nn/models.h"
#include "kiln/nn/module.h"
#include "kiln/nn/norm.h"
#include "kiln/nn/pooling.h"
#include "kiln/nn/resnet.h"
#include "kiln/nn/sampling.h"
#include "kiln/nn/sequential.h"
#include "kiln/nn/transformer.h"
