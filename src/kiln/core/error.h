// Kiln's exceptions and the check macros that raise them.
// User errors (bad shapes, bad files, bad configs) throw a subclass of kiln::Error whose message
// names the op and both sides; KILN_ASSERT is for "this is a bug in Kiln" conditions.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace kiln {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};
class ValueError : public Error { using Error::Error; };
class TypeError : public Error { using Error::Error; };
class IndexError : public Error { using Error::Error; };
class NotImplementedError : public Error { using Error::Error; };
class BackendError : public Error { using Error::Error; };
class IoError : public Error { using Error::Error; };
class InternalError : public Error { using Error::Error; };

namespace detail {
template <typename... Args>
std::string concat(Args&&... args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  return os.str();
}
}  // namespace detail

}  // namespace kiln

// The message pieces are only formatted when the check fails, so checks are cheap on hot paths.
#define KILN_CHECK_AS(ErrorType, cond, ...)                      \
  do {                                                           \
    if (!(cond)) [[unlikely]]                                    \
      throw ErrorType(::kiln::detail::concat(__VA_ARGS__));      \
  } while (0)

#define KILN_CHECK(cond, ...) KILN_CHECK_AS(::kiln::ValueError, cond, __VA_ARGS__)
#define KILN_CHECK_TYPE(cond, ...) KILN_CHECK_AS(::kiln::TypeError, cond, __VA_ARGS__)
#define KILN_CHECK_INDEX(cond, ...) KILN_CHECK_AS(::kiln::IndexError, cond, __VA_ARGS__)

#define KILN_ASSERT(cond, ...)                                                                  \
  KILN_CHECK_AS(::kiln::InternalError, cond, "internal error (a bug in Kiln) at ", __FILE__, \
                ":", __LINE__, ": ", #cond, " ", ##__VA_ARGS__)
