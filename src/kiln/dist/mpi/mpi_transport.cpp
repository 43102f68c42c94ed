// The MPI transport (Open MPI from libopenmpi-dev). Only byte messages are used: reductions run
// in Kiln's own tree (tree_reduce.h), so MPI's choice of algorithm never changes results.
#include <mpi.h>

#include <climits>

#include "kiln/core/error.h"
#include "kiln/dist/mpi/mpi_transport.h"

namespace kiln::dist {

namespace {
std::string mpi_error_text(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(code, text, &len);
  return std::string(text, static_cast<size_t>(len));
}

class MpiRequest : public Transport::Request {
 public:
  MpiRequest(const char* verb, int peer) : verb_(verb), peer_(peer) {}
  bool test() override {
    if (done_) return true;
    int flag = 0;
    MPI_Status status;
    int rc = MPI_Test(&req_, &flag, &status);
    if (rc != MPI_SUCCESS)
      throw BackendError(detail::concat("MPI ", verb_, " rank ", peer_, " failed (", mpi_error_text(rc),
                                        "): the rank may have died"));
    done_ = flag != 0;
    return done_;
  }
  MPI_Request req_ = MPI_REQUEST_NULL;

 private:
  const char* verb_;
  int peer_;
  bool done_ = false;
};

class MpiTransport : public Transport {
 public:
  MpiTransport() {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (!initialized) {
      int provided = 0;
      // FUNNELED: every MPI call comes from the communication thread that runs this constructor.
      int rc = MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
      KILN_CHECK_AS(BackendError, rc == MPI_SUCCESS, "dist: MPI_Init_thread failed: ", mpi_error_text(rc));
    }
    MPI_Comm_dup(MPI_COMM_WORLD, &comm_);
    // Errors come back as codes (then Kiln errors naming the peer) instead of aborting the job.
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
  }
  ~MpiTransport() override {
    MPI_Comm_free(&comm_);
    MPI_Finalize();
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string name() const override { return "mpi"; }

  RequestPtr isend(const void* data, int64_t bytes, int dst, int tag) override {
    check_size(bytes);
    auto r = std::make_unique<MpiRequest>("send to", dst);
    int rc = MPI_Isend(data, static_cast<int>(bytes), MPI_BYTE, dst, tag, comm_, &r->req_);
    KILN_CHECK_AS(BackendError, rc == MPI_SUCCESS, "MPI send to rank ", dst, " failed: ", mpi_error_text(rc));
    bytes_sent += bytes;
    ++messages;
    return r;
  }
  RequestPtr irecv(void* data, int64_t bytes, int src, int tag) override {
    check_size(bytes);
    auto r = std::make_unique<MpiRequest>("receive from", src);
    int rc = MPI_Irecv(data, static_cast<int>(bytes), MPI_BYTE, src, tag, comm_, &r->req_);
    KILN_CHECK_AS(BackendError, rc == MPI_SUCCESS, "MPI receive from rank ", src, " failed: ", mpi_error_text(rc));
    return r;
  }

 private:
  static void check_size(int64_t bytes) {
    KILN_CHECK(bytes >= 0 && bytes <= INT_MAX, "dist: a single message is limited to 2 GiB, got ", bytes, " bytes");
  }
  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0, size_ = 1;
};
}  // namespace

std::unique_ptr<Transport> make_mpi_transport() { return std::make_unique<MpiTransport>(); }

}  // namespace kiln::dist
