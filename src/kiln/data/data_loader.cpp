// DataLoader: the consumer's position (epoch, batch) is the only state that matters; workers take
// batch numbers from a window ahead of it, build them, and park them in a map keyed by batch
// number, so next() hands batches out in order however the workers race. A generation counter
// lets set_state (or an epoch change) discard work in flight without waiting for it.
#include "kiln/data/data_loader.h"

#include <condition_variable>
#include <exception>
#include <map>
#include <mutex>
#include <thread>

#include "kiln/core/rng.h"

namespace kiln::data {

namespace {

uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

uint64_t epoch_seed(uint64_t seed, int64_t epoch) {
  return splitmix64(seed ^ splitmix64(static_cast<uint64_t>(epoch) + 0x6a09e667f3bcc908ull));
}

// Uniform in [0, range) without modulo bias (Lemire's multiply-and-reject).
uint64_t bounded(Generator& gen, uint64_t range) {
  unsigned __int128 m = static_cast<unsigned __int128>(gen.next_u64()) * range;
  uint64_t low = static_cast<uint64_t>(m);
  if (low < range) {
    const uint64_t threshold = (0 - range) % range;
    while (low < threshold) {
      m = static_cast<unsigned __int128>(gen.next_u64()) * range;
      low = static_cast<uint64_t>(m);
    }
  }
  return static_cast<uint64_t>(m >> 64);
}

}  // namespace

std::vector<int64_t> epoch_order(int64_t n, uint64_t seed, int64_t epoch, bool shuffle) {
  std::vector<int64_t> order(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) order[static_cast<size_t>(i)] = i;
  if (!shuffle) return order;
  Generator gen(epoch_seed(seed, epoch));
  for (int64_t i = n - 1; i > 0; --i) {
    auto j = static_cast<int64_t>(bounded(gen, static_cast<uint64_t>(i) + 1));
    std::swap(order[static_cast<size_t>(i)], order[static_cast<size_t>(j)]);
  }
  return order;
}

uint64_t batch_seed(uint64_t seed, int64_t epoch, int64_t batch) {
  return splitmix64(epoch_seed(seed, epoch) ^ splitmix64(static_cast<uint64_t>(batch) + 0xbb67ae8584caa73bull));
}

struct DataLoader::Impl {
  struct Slot {
    std::optional<Batch> batch;
    std::exception_ptr error;
  };

  DatasetPtr dataset;
  LoaderOptions opt;
  int64_t n = 0;
  int64_t batches = 0;  // per epoch
  int64_t window = 1;   // how many batches may be prepared ahead of the consumer

  std::mutex mu;
  std::condition_variable work_cv;   // workers wait for a batch number to take
  std::condition_variable ready_cv;  // next() waits for its batch
  int64_t epoch = 0;
  int64_t batch = 0;      // next batch next() hands out
  int64_t scheduled = 0;  // next batch number a worker takes
  uint64_t generation = 0;
  std::vector<int64_t> order;
  std::map<int64_t, Slot> ready;
  bool stop = false;
  bool paused = false;  // after a failed batch, until the next next() call asks for it again
  std::vector<std::thread> workers;

  // The examples of batch b this loader hands out: all of it, or its shards when sharded.
  struct Selection {
    std::vector<int64_t> indices, positions, shard_sizes;
  };
  Selection indices_of(int64_t b) const {
    const int64_t lo = b * opt.batch_size, hi = std::min(n, lo + opt.batch_size), count = hi - lo;
    Selection sel;
    if (opt.shards.empty()) {
      sel.indices.assign(order.begin() + lo, order.begin() + hi);
      return sel;
    }
    for (int64_t s : opt.shards) {
      const int64_t first = s * count / opt.shard_count, last = (s + 1) * count / opt.shard_count;
      for (int64_t p = first; p < last; ++p) {
        sel.indices.push_back(order[static_cast<size_t>(lo + p)]);
        sel.positions.push_back(p);
      }
      sel.shard_sizes.push_back(last - first);
    }
    return sel;
  }

  Batch make(int64_t e, int64_t b, const Selection& sel) const {
    Batch out = sel.indices.empty() ? Batch{} : dataset->get_batch(sel.indices);
    out.positions = sel.positions;
    out.shard_sizes = sel.shard_sizes;
    if (opt.transform && !sel.indices.empty()) opt.transform(out, batch_seed(opt.seed, e, b));
    return out;
  }

  // Moves the consumer to (e, b) and drops everything prepared or in flight. Caller holds mu.
  void reposition(int64_t e, int64_t b) {
    if (e != epoch || order.size() != static_cast<size_t>(n)) order = epoch_order(n, opt.seed, e, opt.shuffle);
    epoch = e;
    batch = b;
    scheduled = b;
    ready.clear();
    ++generation;
    paused = false;
    work_cv.notify_all();
  }

  void worker_loop() {
    std::unique_lock lk(mu);
    for (;;) {
      work_cv.wait(lk, [&] { return stop || (!paused && scheduled < batches && scheduled < batch + window); });
      if (stop) return;
      const int64_t b = scheduled++;
      const int64_t e = epoch;
      const uint64_t gen = generation;
      Selection indices = indices_of(b);
      lk.unlock();
      Slot slot;
      try {
        slot.batch = make(e, b, indices);
      } catch (...) {
        slot.error = std::current_exception();
      }
      lk.lock();
      if (gen == generation) {
        ready.emplace(b, std::move(slot));
        ready_cv.notify_all();
      }
    }
  }
};

DataLoader::DataLoader(DatasetPtr dataset, LoaderOptions options) : dataset_(std::move(dataset)) {
  KILN_CHECK(dataset_ != nullptr, "DataLoader: null dataset");
  KILN_CHECK(options.batch_size >= 1, "DataLoader: batch_size must be >= 1, got ", options.batch_size);
  KILN_CHECK(options.num_workers >= 0, "DataLoader: num_workers must be >= 0, got ", options.num_workers);
  KILN_CHECK(options.prefetch >= 1, "DataLoader: prefetch must be >= 1, got ", options.prefetch);
  KILN_CHECK(options.shard_count >= 1, "DataLoader: shard_count must be >= 1, got ", options.shard_count);
  for (int64_t s : options.shards)
    KILN_CHECK_INDEX(s >= 0 && s < options.shard_count, "DataLoader: shard ", s, " is outside [0, ",
                     options.shard_count, ")");
  impl_ = std::make_unique<Impl>();
  Impl& m = *impl_;
  m.dataset = dataset_;
  m.n = dataset_->size();
  m.batches = options.drop_last ? m.n / options.batch_size : (m.n + options.batch_size - 1) / options.batch_size;
  m.window = std::max<int64_t>(1, int64_t{options.num_workers} * options.prefetch);
  m.opt = std::move(options);
  m.order = epoch_order(m.n, m.opt.seed, 0, m.opt.shuffle);
  for (int w = 0; w < m.opt.num_workers; ++w) m.workers.emplace_back([&m] { m.worker_loop(); });
}

DataLoader::~DataLoader() {
  {
    std::lock_guard lk(impl_->mu);
    impl_->stop = true;
  }
  impl_->work_cv.notify_all();
  // A worker in the middle of a batch finishes it, sees `stop` and exits.
  for (std::thread& t : impl_->workers) t.join();
}

void DataLoader::set_state(LoaderState s) {
  KILN_CHECK(s.epoch >= 0, "DataLoader::set_state: epoch must be >= 0, got ", s.epoch);
  KILN_CHECK(s.batch >= 0 && s.batch <= impl_->batches, "DataLoader::set_state: batch ", s.batch,
             " is outside [0, ", impl_->batches, "] for this dataset and batch size");
  std::lock_guard lk(impl_->mu);
  impl_->reposition(s.epoch, s.batch);
}

LoaderState DataLoader::state() const {
  std::lock_guard lk(impl_->mu);
  return {impl_->epoch, impl_->batch};
}

int64_t DataLoader::batches_per_epoch() const { return impl_->batches; }

std::optional<Batch> DataLoader::next() {
  Impl& m = *impl_;
  std::unique_lock lk(m.mu);
  if (m.batch >= m.batches) {
    m.reposition(m.epoch + 1, 0);  // workers start on the next epoch right away
    return std::nullopt;
  }
  if (m.workers.empty()) {
    Batch out = m.make(m.epoch, m.batch, m.indices_of(m.batch));  // on a throw the position stays
    ++m.batch;
    return out;
  }
  if (m.paused) {
    m.paused = false;
    m.work_cv.notify_all();
  }
  m.ready_cv.wait(lk, [&] { return m.ready.count(m.batch) != 0; });
  auto it = m.ready.find(m.batch);
  Impl::Slot slot = std::move(it->second);
  m.ready.erase(it);
  if (slot.error) {
    // Stay at the failed batch: drop the work ahead and idle until a later next() asks for the
    // batch again, so the retry sees whatever the caller fixed in between.
    m.reposition(m.epoch, m.batch);
    m.paused = true;
    std::rethrow_exception(slot.error);
  }
  ++m.batch;
  m.work_cv.notify_all();
  return std::move(slot.batch);
}

}  // namespace kiln::data
