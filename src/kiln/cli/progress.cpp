#include "kiln/cli/progress.h"

#include <unistd.h>

#include <cstdio>

#include "kiln/dist/communicator.h"

namespace kiln::cli {

namespace {
std::string format_duration(double s) {
  int64_t t = static_cast<int64_t>(s + 0.5);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%lld:%02lld", static_cast<long long>(t / 60), static_cast<long long>(t % 60));
  return buf;
}
}  // namespace

Progress::Progress(int64_t log_every, std::string unit, bool enabled)
    : tty_(isatty(STDERR_FILENO) != 0), enabled_(enabled), log_every_(log_every), unit_(std::move(unit)) {}

void Progress::start_epoch(int64_t epoch, int64_t epochs, int64_t batches, int64_t first_batch) {
  epoch_ = epoch;
  epochs_ = epochs;
  batches_ = batches;
  first_batch_ = first_batch;
  samples_ = 0;
  epoch_start_ = last_draw_ = Clock::now();
}

double Progress::epoch_seconds() const {
  return std::chrono::duration<double>(Clock::now() - epoch_start_).count();
}

double Progress::epoch_rate() const {
  double s = epoch_seconds();
  return s > 0 ? static_cast<double>(samples_) / s : 0.0;
}

void Progress::update(int64_t batch, double loss, int64_t samples) {
  samples_ += samples;
  last_loss_ = loss;
  int64_t done = batch + 1;
  double rate = epoch_rate();
  double per_batch = (done - first_batch_) > 0 ? epoch_seconds() / static_cast<double>(done - first_batch_) : 0.0;
  double eta = per_batch * static_cast<double>(batches_ - done);
  if (!enabled_) return;
  if (tty_) {
    auto now = Clock::now();
    if (done != batches_ && std::chrono::duration<double>(now - last_draw_).count() < 0.1) return;
    last_draw_ = now;
    constexpr int kWidth = 24;
    int filled = batches_ > 0 ? static_cast<int>(kWidth * done / batches_) : 0;
    std::string bar(static_cast<size_t>(filled), '#');
    bar.resize(kWidth, '.');
    std::fprintf(stderr, "\r\033[K%sepoch %lld/%lld [%s] %lld/%lld loss %.4f %.0f %s/s ETA %s",
                 dist::log_prefix().c_str(), static_cast<long long>(epoch_ + 1), static_cast<long long>(epochs_), bar.c_str(),
                 static_cast<long long>(done), static_cast<long long>(batches_), loss, rate, unit_.c_str(),
                 format_duration(eta).c_str());
    bar_visible_ = true;
  } else if (done % log_every_ == 0 || done == batches_) {
    std::fprintf(stderr, "%sepoch %lld/%lld batch %lld/%lld loss %.4f %.0f %s/s eta %s\n",
                 dist::log_prefix().c_str(), static_cast<long long>(epoch_ + 1), static_cast<long long>(epochs_), static_cast<long long>(done),
                 static_cast<long long>(batches_), loss, rate, unit_.c_str(), format_duration(eta).c_str());
  }
}

void Progress::end_epoch() {
  if (bar_visible_) std::fputc('\n', stderr);
  bar_visible_ = false;
}

void Progress::message(const std::string& line) {
  if (!enabled_) return;
  if (bar_visible_) std::fputs("\r\033[K", stderr);
  std::fprintf(stderr, "%s%s\n", dist::log_prefix().c_str(), line.c_str());
  bar_visible_ = false;
}

}  // namespace kiln::cli
