// Where a tensor's storage lives. Only CPU has kernels today; a CUDA backend plugs in by adding an
// allocator and kernel table entries, without changing code that takes a Device.
#pragma once

#include <string>

namespace kiln {

enum class DeviceType : uint8_t { cpu, cuda };

struct Device {
  DeviceType type = DeviceType::cpu;
  int index = 0;
  bool operator==(const Device&) const = default;
  std::string str() const { return type == DeviceType::cpu ? "cpu" : "cuda:" + std::to_string(index); }
  static Device cpu() { return {}; }
};

}  // namespace kiln
