// safetensors files (https://huggingface.co/docs/safetensors): an 8-byte little-endian header
// length, a JSON header {name: {dtype, shape, data_offsets}, "__metadata__": {str: str}}, then
// the raw little-endian tensor bytes. Reading validates every rule of the format (header size
// limit, known dtypes, offsets contiguous, in bounds and non-overlapping, sizes matching shapes);
// writing is atomic (temporary file, fsync, rename), so a crash never leaves a half-written file.
#pragma once

#include <map>
#include <string>
#include <string_view>

#include "kiln/core/tensor.h"

namespace kiln::io {

using TensorMap = std::map<std::string, Tensor>;
using Metadata = std::map<std::string, std::string>;

struct SafetensorsContent {
  TensorMap tensors;
  Metadata metadata;
};

void save_safetensors(const std::string& path, const TensorMap& tensors, const Metadata& metadata = {});
SafetensorsContent load_safetensors(const std::string& path);  // throws IoError naming the file and rule
// The same from bytes already in memory; `source` names them in errors.
SafetensorsContent parse_safetensors(std::string_view bytes, const std::string& source);

}  // namespace kiln::io
