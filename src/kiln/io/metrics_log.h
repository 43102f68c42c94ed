// metrics.jsonl: one JSON object per line, appended and flushed line by line so that a run that
// dies keeps every line written before, and tools can tail the file while training runs.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace kiln::io {

using MetricValue = std::variant<int64_t, double, std::string, bool>;
using MetricRecord = std::vector<std::pair<std::string, MetricValue>>;  // keys keep their order

std::string to_json_line(const MetricRecord& record);  // one line, no newline; NaN/inf become null

class MetricsLog {
 public:
  // append = false truncates an existing file (a new run); true continues it (a resumed run).
  MetricsLog(const std::string& path, bool append);
  ~MetricsLog();
  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;

  void append(const std::string& json_object);  // must be one line; a newline is added
  void write(const MetricRecord& record) { append(to_json_line(record)); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::FILE* file_ = nullptr;
};

}  // namespace kiln::io
