// Tensor = a handle to a TensorImpl; TensorImpl = a view (offset, shape, strides, dtype) onto a
// shared Storage, plus the autograd fields. Many TensorImpls may share one Storage: transpose,
// slice, expand and reshape-of-contiguous are new TensorImpls over the same bytes, not copies.
// A default-constructed Tensor is "undefined" (used for absent gradients and optional inputs).
//
// Core knows nothing of how ops compute: the members here only read or re-describe metadata.
// Differentiable operations (including views) are free functions in kiln::ops.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "kiln/core/device.h"
#include "kiln/core/dtype.h"
#include "kiln/core/shape.h"
#include "kiln/core/storage.h"

namespace kiln {

class Node;  // an autograd graph node, see core/autograd_node.h

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  int64_t offset = 0;  // in elements
  Shape shape;
  Strides strides;     // in elements
  DType dtype = DType::f32;

  // Autograd. A leaf has no grad_fn; its gradient accumulates into `grad`. A non-leaf records
  // the node that produced it and which of that node's outputs it is.
  bool requires_grad = false;
  std::shared_ptr<Node> grad_fn;
  uint32_t output_nr = 0;
  std::shared_ptr<TensorImpl> grad;
  std::weak_ptr<Node> grad_accumulator;  // cached so every use of a leaf feeds one node
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // ---- factories (no autograd history) ----
  static Tensor empty(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
  static Tensor zeros(const Shape& shape, DType dtype = DType::f32);
  static Tensor ones(const Shape& shape, DType dtype = DType::f32);
  static Tensor full(const Shape& shape, double value, DType dtype = DType::f32);
  static Tensor scalar(double value, DType dtype = DType::f32);  // a 0-d tensor
  static Tensor arange(int64_t n, DType dtype = DType::i64);
  template <typename T>
  static Tensor from_vector(const std::vector<T>& values, const Shape& shape);
  template <typename T>
  static Tensor from_vector(const std::vector<T>& values) {
    return from_vector(values, Shape{static_cast<int64_t>(values.size())});
  }

  // ---- metadata ----
  bool defined() const { return impl_ != nullptr; }
  const Shape& shape() const { return impl().shape; }
  const Strides& strides() const { return impl().strides; }
  int64_t dim() const { return static_cast<int64_t>(impl().shape.size()); }
  int64_t size(int64_t d) const;    // negative d counts from the end
  int64_t stride(int64_t d) const;
  int64_t numel() const { return kiln::numel(impl().shape); }
  DType dtype() const { return impl().dtype; }
  Device device() const { return impl().storage->device(); }
  int64_t offset() const { return impl().offset; }
  bool is_contiguous() const;
  const std::shared_ptr<Storage>& storage() const { return impl().storage; }
  std::string str() const;  // "Tensor(f32, [2, 3])"

  // Raw pointer to element [0, 0, ...]; checks that T matches the dtype.
  template <typename T>
  T* data() const {
    KILN_CHECK_TYPE(DTypeOf<T>::value == dtype(), "data<", dtype_name(DTypeOf<T>::value),
                    ">: tensor has dtype ", dtype_name(dtype()));
    return static_cast<T*>(storage()->data()) + impl().offset;
  }
  void* raw_data() const {
    return static_cast<char*>(storage()->data()) + impl().offset * element_size(dtype());
  }
  double item() const;  // the value of a one-element tensor, as double
  template <typename T>
  std::vector<T> to_vector() const;  // elements in row-major order, converted to T

  // ---- autograd fields ----
  bool requires_grad() const { return defined() && impl().requires_grad; }
  Tensor& set_requires_grad(bool r);  // leaves only; floating dtypes only
  bool is_leaf() const { return impl().grad_fn == nullptr; }
  Tensor grad() const { return Tensor(impl().grad); }
  void set_grad(const Tensor& g) { impl().grad = g.impl_; }
  const std::shared_ptr<Node>& grad_fn() const { return impl().grad_fn; }
  uint32_t output_nr() const { return impl().output_nr; }
  uint64_t version() const { return storage()->version(); }
  void bump_version() const { storage()->bump_version(); }

  // A new tensor sharing this one's data with no autograd history.
  Tensor detach() const;
  // A raw view onto the same storage (no autograd): the building block of the view ops.
  Tensor as_strided(const Shape& shape, const Strides& strides, int64_t offset) const;

  TensorImpl& impl() const {
    KILN_CHECK(impl_ != nullptr, "use of an undefined tensor");
    return *impl_;
  }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool same(const Tensor& other) const { return impl_ == other.impl_; }

 private:
  std::shared_ptr<TensorImpl> impl_;
};

// Raw (non-differentiable) helpers used by kernels and by the ops layer.
// copy_into: dst[...] = src[...] elementwise with dtype conversion; shapes must match exactly
// (broadcasting is done by the caller through expand). Threaded for large tensors.
void copy_into(const Tensor& dst, const Tensor& src);
Tensor contiguous_raw(const Tensor& t);             // t itself when already contiguous
Tensor to_dtype_raw(const Tensor& t, DType dtype);  // t itself when dtype already matches
Tensor clone_raw(const Tensor& t);                  // always a fresh contiguous copy
void fill_raw(const Tensor& t, double value);

template <typename T>
Tensor Tensor::from_vector(const std::vector<T>& values, const Shape& shape) {
  KILN_CHECK(static_cast<int64_t>(values.size()) == kiln::numel(shape), "from_vector: ", values.size(),
             " values do not fill shape ", shape_str(shape));
  Tensor t = empty(shape, DTypeOf<T>::value);
  T* p = t.data<T>();
  for (size_t i = 0; i < values.size(); ++i) p[i] = values[i];
  return t;
}

template <typename T>
std::vector<T> Tensor::to_vector() const {
  Tensor c = contiguous_raw(*this);
  std::vector<T> out(static_cast<size_t>(c.numel()));
  dispatch_all(c.dtype(), [&]<typename S>() {
    const S* p = static_cast<const S*>(c.raw_data());
    for (size_t i = 0; i < out.size(); ++i) out[i] = from_double<T>(to_double(p[i]));
  });
  return out;
}

}  // namespace kiln
