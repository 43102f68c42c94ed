// An in-process Transport: each "rank" is a thread, messages are copied through shared
// mailboxes. It lets the collective algorithms run with any number of ranks in a unit test (and
// under the sanitizers) without MPI; tests/dist/mpi/ runs them again over real MPI processes.
#pragma once

#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <tuple>
#include <vector>

#include "kiln/core/error.h"
#include "kiln/dist/transport.h"

namespace kiln::dist::testing {

class Mailboxes {
 public:
  void put(int src, int dst, int tag, std::vector<char> bytes) {
    std::lock_guard lk(mu_);
    boxes_[{src, dst, tag}].push_back(std::move(bytes));
  }
  bool take(int src, int dst, int tag, void* out, int64_t bytes) {
    std::lock_guard lk(mu_);
    auto& q = boxes_[{src, dst, tag}];
    if (q.empty()) return false;
    KILN_CHECK(static_cast<int64_t>(q.front().size()) == bytes, "mailbox: message of ", q.front().size(),
               " bytes for a receive of ", bytes);
    if (bytes > 0) std::memcpy(out, q.front().data(), static_cast<size_t>(bytes));
    q.pop_front();
    return true;
  }

 private:
  std::mutex mu_;
  std::map<std::tuple<int, int, int>, std::deque<std::vector<char>>> boxes_;
};

class MailboxTransport : public Transport {
 public:
  MailboxTransport(Mailboxes& boxes, int rank, int size) : boxes_(boxes), rank_(rank), size_(size) {}
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string name() const override { return "mailbox"; }
  RequestPtr isend(const void* data, int64_t bytes, int dst, int tag) override {
    const char* p = static_cast<const char*>(data);
    boxes_.put(rank_, dst, tag, std::vector<char>(p, p + bytes));
    bytes_sent += bytes;
    ++messages;
    return std::make_unique<Done>();
  }
  RequestPtr irecv(void* data, int64_t bytes, int src, int tag) override {
    return std::make_unique<Receive>(boxes_, src, rank_, tag, data, bytes);
  }

 private:
  struct Done : Request {
    bool test() override { return true; }
  };
  struct Receive : Request {
    Receive(Mailboxes& b, int s, int d, int t, void* o, int64_t n) : boxes(b), src(s), dst(d), tag(t), out(o), bytes(n) {}
    bool test() override { return done || (done = boxes.take(src, dst, tag, out, bytes)); }
    Mailboxes& boxes;
    int src, dst, tag;
    void* out;
    int64_t bytes;
    bool done = false;
  };
  Mailboxes& boxes_;
  int rank_, size_;
};

// Runs fn(transport) on `size` threads, one per rank.
inline void run_ranks(int size, const std::function<void(Transport&)>& fn) {
  Mailboxes boxes;
  std::vector<std::thread> threads;
  std::vector<std::exception_ptr> errors(static_cast<size_t>(size));
  for (int r = 0; r < size; ++r)
    threads.emplace_back([&, r] {
      MailboxTransport t(boxes, r, size);
      try {
        fn(t);
      } catch (...) {
        errors[static_cast<size_t>(r)] = std::current_exception();
      }
    });
  for (auto& t : threads) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace kiln::dist::testing
