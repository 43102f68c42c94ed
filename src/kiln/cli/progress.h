// Training progress on stderr: a live one-line bar (loss, throughput, ETA) when stderr is a
// terminal, plain periodic lines otherwise (logs, CI).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace kiln::cli {

class Progress {
 public:
  // A disabled Progress counts but prints nothing (ranks other than 0 of a distributed run).
  Progress(int64_t log_every, std::string unit, bool enabled = true);
  void start_epoch(int64_t epoch, int64_t epochs, int64_t batches, int64_t first_batch);
  // Called after each batch with the number of samples (images or tokens) it held.
  void update(int64_t batch, double loss, int64_t samples);
  void end_epoch();
  void message(const std::string& line);  // a full line that does not disturb the bar
  double epoch_rate() const;              // samples per second of training in this epoch
  double epoch_seconds() const;

 private:
  using Clock = std::chrono::steady_clock;
  bool tty_;
  bool enabled_;
  int64_t log_every_;
  std::string unit_;
  int64_t epoch_ = 0, epochs_ = 0, batches_ = 0, first_batch_ = 0, samples_ = 0;
  double last_loss_ = 0.0;
  Clock::time_point epoch_start_, last_draw_;
  bool bar_visible_ = false;
};

}  // namespace kiln::cli
