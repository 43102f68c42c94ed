// MetricsLog: line-buffered JSON lines; values are serialised by nlohmann::json.
#include "kiln/io/metrics_log.h"

#include <cerrno>
#include <cstring>

#include <nlohmann/json.hpp>

#include "kiln/core/error.h"

namespace kiln::io {

std::string to_json_line(const MetricRecord& record) {
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  for (const auto& [key, value] : record) std::visit([&j, &key = key](const auto& v) { j[key] = v; }, value);
  return j.dump();
}

MetricsLog::MetricsLog(const std::string& path, bool append) : path_(path) {
  file_ = std::fopen(path.c_str(), append ? "ab" : "wb");
  if (file_ == nullptr) throw IoError(detail::concat(path, ": cannot open for writing: ", std::strerror(errno)));
}

MetricsLog::~MetricsLog() {
  if (file_ != nullptr) std::fclose(file_);
}

void MetricsLog::append(const std::string& json_object) {
  KILN_CHECK(json_object.find('\n') == std::string::npos, "MetricsLog: a record must be one line, got: ",
             json_object);
  if (std::fwrite(json_object.data(), 1, json_object.size(), file_) != json_object.size() ||
      std::fputc('\n', file_) == EOF || std::fflush(file_) != 0)
    throw IoError(detail::concat(path_, ": write failed: ", std::strerror(errno)));
}

}  // namespace kiln::io
