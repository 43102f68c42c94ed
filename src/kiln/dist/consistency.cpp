#include "kiln/dist/consistency.h"

#include <sstream>
#include <vector>

namespace kiln::dist {

namespace {
std::string first_difference(const std::string& mine, const std::string& root) {
  std::istringstream a(mine), b(root);
  std::string la, lb;
  for (int line = 1;; ++line) {
    bool ha = static_cast<bool>(std::getline(a, la)), hb = static_cast<bool>(std::getline(b, lb));
    if (!ha && !hb) return "";
    if (!ha) la = "<end>";
    if (!hb) lb = "<end>";
    if (la != lb) return detail::concat("line ", line, ": '", la, "' here vs '", lb, "' on rank 0");
  }
}

// The ranks where `bad` is true, as "1, 3".
std::string failing_ranks(Communicator& comm, bool bad) {
  Tensor mine = Tensor::full({1}, bad ? 1 : 0, DType::i64), all = Tensor::empty({comm.size()}, DType::i64);
  comm.allgather(mine, all)->wait();
  std::string list;
  for (int r = 0; r < comm.size(); ++r)
    if (all.data<int64_t>()[r]) {
      if (!list.empty()) list += ", ";
      list += std::to_string(r);
    }
  return list;
}
}  // namespace

void check_all(Communicator& comm, bool ok, const std::string& message) {
  if (comm.size() == 1) {
    KILN_CHECK(ok, message);
    return;
  }
  std::string ranks = failing_ranks(comm, !ok);
  if (ranks.empty()) return;
  if (!ok) throw ValueError(message);
  throw ValueError(detail::concat("dist: rank(s) ", ranks, " failed a start-up check (their messages say why)"));
}

void check_same_text(Communicator& comm, const std::string& text, const std::string& what) {
  if (comm.size() == 1) return;
  Tensor len = Tensor::full({1}, static_cast<double>(text.size()), DType::i64);
  comm.broadcast(len, 0)->wait();
  Tensor root_bytes = Tensor::empty({len.data<int64_t>()[0]}, DType::u8);
  if (comm.rank() == 0) std::copy(text.begin(), text.end(), root_bytes.data<uint8_t>());
  comm.broadcast(root_bytes, 0)->wait();
  std::string root(reinterpret_cast<const char*>(root_bytes.data<uint8_t>()), static_cast<size_t>(root_bytes.numel()));
  check_all(comm, root == text,
            detail::concat("dist: this rank's ", what, " differs from rank 0's (", first_difference(text, root),
                           ")\nhelp: start every rank with the same config and --set options"));
}

}  // namespace kiln::dist
