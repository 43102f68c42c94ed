#include "kiln/core/tensor.h"

#include <cstring>

#include "kiln/core/strided_loop.h"
#include "kiln/core/thread_pool.h"

namespace kiln {

namespace {
constexpr int64_t kCopyGrain = 1 << 16;  // below this many elements a copy runs on one thread
}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  for (int64_t d : shape) KILN_CHECK(d >= 0, "empty: negative dimension in shape ", shape_str(shape));
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(static_cast<size_t>(kiln::numel(shape)) * element_size(dtype), device);
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

Tensor Tensor::zeros(const Shape& shape, DType dtype) {
  Tensor t = empty(shape, dtype);
  std::memset(t.raw_data(), 0, static_cast<size_t>(t.numel()) * element_size(dtype));
  return t;
}

Tensor Tensor::ones(const Shape& shape, DType dtype) { return full(shape, 1.0, dtype); }

Tensor Tensor::full(const Shape& shape, double value, DType dtype) {
  Tensor t = empty(shape, dtype);
  fill_raw(t, value);
  return t;
}

Tensor Tensor::scalar(double value, DType dtype) { return full({}, value, dtype); }

Tensor Tensor::arange(int64_t n, DType dtype) {
  Tensor t = empty({n}, dtype);
  dispatch_all(dtype, [&]<typename T>() {
    T* p = t.data<T>();
    for (int64_t i = 0; i < n; ++i) p[i] = from_double<T>(static_cast<double>(i));
  });
  return t;
}

int64_t Tensor::size(int64_t d) const { return shape()[wrap_dim(d, dim(), "size")]; }
int64_t Tensor::stride(int64_t d) const { return strides()[wrap_dim(d, dim(), "stride")]; }

bool Tensor::is_contiguous() const {
  int64_t expected = 1;
  const auto& sh = shape();
  const auto& st = strides();
  for (size_t i = sh.size(); i-- > 0;) {
    if (sh[i] == 1) continue;
    if (st[i] != expected) return false;
    expected *= sh[i];
  }
  return true;
}

std::string Tensor::str() const {
  if (!defined()) return "Tensor(undefined)";
  return detail::concat("Tensor(", dtype_name(dtype()), ", ", shape_str(shape()), ")");
}

double Tensor::item() const {
  KILN_CHECK(numel() == 1, "item: expected a tensor with one element, got shape ", shape_str(shape()));
  return dispatch_all(dtype(), [&]<typename T>() { return to_double(*static_cast<const T*>(raw_data())); });
}

Tensor& Tensor::set_requires_grad(bool r) {
  KILN_CHECK(is_leaf(), "set_requires_grad: only leaf tensors can change requires_grad\n"
             "help: use detach() to get a leaf that shares the data");
  KILN_CHECK_TYPE(!r || is_floating(dtype()), "set_requires_grad: only floating-point tensors can require "
                  "gradients, got dtype ", dtype_name(dtype()));
  impl().requires_grad = r;
  return *this;
}

Tensor Tensor::detach() const {
  auto impl2 = std::make_shared<TensorImpl>();
  impl2->storage = storage();
  impl2->offset = offset();
  impl2->shape = shape();
  impl2->strides = strides();
  impl2->dtype = dtype();
  return Tensor(std::move(impl2));
}

Tensor Tensor::as_strided(const Shape& shape, const Strides& strides, int64_t offset) const {
  KILN_ASSERT(shape.size() == strides.size());
  auto impl2 = std::make_shared<TensorImpl>();
  impl2->storage = storage();
  impl2->offset = offset;
  impl2->shape = shape;
  impl2->strides = strides;
  impl2->dtype = dtype();
  return Tensor(std::move(impl2));
}

void copy_into(const Tensor& dst, const Tensor& src) {
  KILN_CHECK(dst.shape() == src.shape(), "copy: shape mismatch, destination ", shape_str(dst.shape()),
             " vs source ", shape_str(src.shape()));
  int64_t n = dst.numel();
  if (n == 0) return;
  if (dst.dtype() == src.dtype() && dst.is_contiguous() && src.is_contiguous()) {
    size_t es = element_size(dst.dtype());
    char* d = static_cast<char*>(dst.raw_data());
    const char* s = static_cast<const char*>(src.raw_data());
    parallel_for(0, n, kCopyGrain, [&](int64_t lo, int64_t hi) {
      std::memcpy(d + lo * es, s + lo * es, static_cast<size_t>(hi - lo) * es);
    });
    return;
  }
  StridedLayout<2> layout(dst.shape(), {dst.strides(), src.strides()});
  dispatch_all(dst.dtype(), [&]<typename D>() {
    dispatch_all(src.dtype(), [&]<typename S>() {
      D* d = static_cast<D*>(dst.raw_data());
      const S* s = static_cast<const S*>(src.raw_data());
      parallel_for(0, n, kCopyGrain, [&](int64_t lo, int64_t hi) {
        layout.for_each_run(lo, hi, [&](const auto& off, const auto& st, int64_t len) {
          D* dp = d + off[0];
          const S* sp = s + off[1];
          if constexpr (std::is_same_v<D, S>) {
            for (int64_t i = 0; i < len; ++i) dp[i * st[0]] = sp[i * st[1]];
          } else if constexpr (std::is_arithmetic_v<D> && std::is_arithmetic_v<S>) {
            for (int64_t i = 0; i < len; ++i) dp[i * st[0]] = static_cast<D>(sp[i * st[1]]);
          } else {
            for (int64_t i = 0; i < len; ++i) dp[i * st[0]] = from_double<D>(to_double(sp[i * st[1]]));
          }
        });
      });
    });
  });
}

Tensor contiguous_raw(const Tensor& t) {
  if (t.is_contiguous()) return t;
  return clone_raw(t);
}

Tensor to_dtype_raw(const Tensor& t, DType dtype) {
  if (t.dtype() == dtype) return t;
  Tensor out = Tensor::empty(t.shape(), dtype);
  copy_into(out, t);
  return out;
}

Tensor clone_raw(const Tensor& t) {
  Tensor out = Tensor::empty(t.shape(), t.dtype());
  copy_into(out, t);
  return out;
}

void fill_raw(const Tensor& t, double value) {
  Tensor target = t;
  dispatch_all(t.dtype(), [&]<typename T>() {
    T v = from_double<T>(value);
    if (t.is_contiguous()) {
      T* p = t.data<T>();
      int64_t n = t.numel();
      for (int64_t i = 0; i < n; ++i) p[i] = v;
      return;
    }
    StridedLayout<1> layout(t.shape(), {t.strides()});
    T* p = t.data<T>();
    layout.for_each_run(0, t.numel(), [&](const auto& off, const auto& st, int64_t len) {
      for (int64_t i = 0; i < len; ++i) p[off[0] + i * st[0]] = v;
    });
  });
}

}  // namespace kiln
