#include "kiln/dist/threaded_communicator.h"

#include <cstring>
#include <future>

#include "kiln/dist/collectives.h"

namespace kiln::dist {

namespace {
void check_buffer(const char* op, const Tensor& t, bool reduce) {
  KILN_CHECK(t.defined() && t.device().type == DeviceType::cpu, "dist: ", op, " takes a CPU tensor");
  KILN_CHECK(t.is_contiguous(), "dist: ", op, " takes a contiguous tensor, got strides of ", t.str());
  if (reduce)
    KILN_CHECK_TYPE(t.dtype() == DType::f32 || t.dtype() == DType::f64 || t.dtype() == DType::i64, "dist: ", op,
                    " reduces f32, f64 or i64 tensors, got ", dtype_name(t.dtype()));
}
int64_t nbytes(const Tensor& t) { return t.numel() * static_cast<int64_t>(element_size(t.dtype())); }
}  // namespace

ThreadedCommunicator::ThreadedCommunicator(std::function<std::unique_ptr<Transport>()> make_transport) {
  std::promise<void> ready;
  auto started = ready.get_future();
  thread_ = std::thread([this, make = std::move(make_transport), &ready]() mutable {
    try {
      transport_ = make();
      rank_ = transport_->rank();
      size_ = transport_->size();
      backend_ = transport_->name();
      ready.set_value();
    } catch (...) {
      ready.set_exception(std::current_exception());
      return;
    }
    loop();
  });
  try {
    started.get();
  } catch (...) {
    thread_.join();
    throw;
  }
}

ThreadedCommunicator::~ThreadedCommunicator() {
  {
    std::lock_guard lk(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

WorkHandle ThreadedCommunicator::post(const char* op, const Tensor& t, std::function<void(Transport&)> run,
                                      std::function<Transport::RequestPtr(Transport&)> start) {
  WorkHandle work;
  {
    std::lock_guard lk(mu_);
    KILN_ASSERT(!stopping_, "operation posted to a communicator being destroyed");
    ++posted_;
    work = std::make_shared<Work>(detail::concat(op, " #", posted_, " (", t.numel(), " x ", dtype_name(t.dtype()),
                                                 ") on rank ", rank_, " of ", size_));
    queue_.push_back({work, std::move(run), std::move(start)});
  }
  cv_.notify_all();
  return work;
}

bool ThreadedCommunicator::poll_in_flight() {
  for (size_t i = 0; i < in_flight_.size();) {
    InFlight& f = in_flight_[i];
    std::exception_ptr error;
    bool done = false;
    try {
      done = f.request->test();
    } catch (const std::exception& e) {
      error = std::make_exception_ptr(BackendError(detail::concat("dist: ", f.work->what(), ": ", e.what())));
      done = true;
    }
    if (!done) {
      ++i;
      continue;
    }
    f.work->finish(error, std::chrono::duration<double>(std::chrono::steady_clock::now() - f.started).count());
    in_flight_.erase(in_flight_.begin() + static_cast<std::ptrdiff_t>(i));
  }
  return !in_flight_.empty();
}

void ThreadedCommunicator::loop() {
  auto nap = std::chrono::microseconds(2);
  for (;;) {
    Task task;
    {
      std::unique_lock lk(mu_);
      if (queue_.empty() && in_flight_.empty()) cv_.wait(lk, [&] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) {
        if (stopping_ && in_flight_.empty()) break;
        lk.unlock();
        // Messages in flight and nothing new: test them, sleeping a little between rounds.
        if (poll_in_flight()) {
          std::this_thread::sleep_for(nap);
          if (nap < std::chrono::microseconds(50)) nap *= 2;
        }
        continue;
      }
      task = std::move(queue_.front());
      queue_.pop_front();
    }
    nap = std::chrono::microseconds(2);
    auto t0 = std::chrono::steady_clock::now();
    std::exception_ptr error;
    try {
      if (task.start) {
        in_flight_.push_back({task.work, task.start(*transport_), t0});
      } else {
        task.run(*transport_);
      }
    } catch (const std::exception& e) {
      error = std::make_exception_ptr(BackendError(detail::concat("dist: ", task.work->what(), ": ", e.what())));
    }
    double busy = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    bytes_sent_ = transport_->bytes_sent;
    messages_ = transport_->messages;
    busy_ = busy_ + busy;
    if (!task.start || error) task.work->finish(error, busy);
    poll_in_flight();
  }
  transport_.reset();  // MPI_Finalize on the thread that initialised MPI
}

WorkHandle ThreadedCommunicator::allreduce(Tensor t, ReduceOp op) {
  check_buffer("allreduce", t, true);
  return post("allreduce", t, [t, op](Transport& tr) { tree_allreduce(tr, t.raw_data(), t.numel(), t.dtype(), op); });
}

WorkHandle ThreadedCommunicator::reduce_scatter(Tensor in, Tensor out, ReduceOp op) {
  check_buffer("reduce_scatter", in, true);
  check_buffer("reduce_scatter", out, true);
  KILN_CHECK(in.dtype() == out.dtype() && in.numel() == out.numel() * size_, "dist: reduce_scatter: input ",
             in.str(), " must hold ", size_, " blocks the size of output ", out.str());
  return post("reduce_scatter", in, [in, out, op](Transport& tr) {
    tree_reduce_scatter(tr, in.raw_data(), out.raw_data(), out.numel(), in.dtype(), op);
  });
}

WorkHandle ThreadedCommunicator::allgather(Tensor in, Tensor out) {
  check_buffer("allgather", in, false);
  check_buffer("allgather", out, false);
  KILN_CHECK(in.dtype() == out.dtype() && out.numel() == in.numel() * size_, "dist: allgather: output ", out.str(),
             " must hold ", size_, " copies of input ", in.str());
  return post("allgather", in,
              [in, out](Transport& tr) { ring_allgather(tr, in.raw_data(), out.raw_data(), nbytes(in)); });
}

WorkHandle ThreadedCommunicator::broadcast(Tensor t, int root) {
  check_buffer("broadcast", t, false);
  KILN_CHECK_INDEX(root >= 0 && root < size_, "dist: broadcast: root ", root, " is not a rank of ", size_);
  return post("broadcast", t, [t, root](Transport& tr) { tree_broadcast(tr, t.raw_data(), nbytes(t), root); });
}

WorkHandle ThreadedCommunicator::send(Tensor t, int dst, int tag) {
  check_buffer("send", t, false);
  KILN_CHECK_INDEX(dst >= 0 && dst < size_ && dst != rank_, "dist: send: destination ", dst,
                   " is not another rank of ", size_);
  KILN_CHECK(tag >= 0 && tag < kReservedTagBase, "dist: send: tag must be in [0, ", kReservedTagBase, "), got ", tag);
  return post("send", t, nullptr,
              [t, dst, tag](Transport& tr) { return tr.isend(t.raw_data(), nbytes(t), dst, tag); });
}

WorkHandle ThreadedCommunicator::recv(Tensor t, int src, int tag) {
  check_buffer("recv", t, false);
  KILN_CHECK_INDEX(src >= 0 && src < size_ && src != rank_, "dist: recv: source ", src, " is not another rank of ",
                   size_);
  KILN_CHECK(tag >= 0 && tag < kReservedTagBase, "dist: recv: tag must be in [0, ", kReservedTagBase, "), got ", tag);
  return post("recv", t, nullptr,
              [t, src, tag](Transport& tr) { return tr.irecv(t.raw_data(), nbytes(t), src, tag); });
}

WorkHandle ThreadedCommunicator::barrier() {
  return post("barrier", Tensor::scalar(0, DType::i64), [](Transport& tr) { dist::barrier(tr); });
}

CommStats ThreadedCommunicator::stats() const { return {bytes_sent_.load(), messages_.load(), busy_.load()}; }

}  // namespace kiln::dist
