// einsum (inference_ops.h): parses the equation into per-operand dimension labels, takes
// diagonals for repeated labels, sums labels no one else needs, then contracts the operands
// pairwise, each pair as one batched matmul (batch, free-left, contracted) @ (batch, contracted,
// free-right) after a permute and reshape. Forward only.
#include <algorithm>
#include <cctype>
#include <string>

#include "kiln/core/grad_mode.h"
#include "kiln/core/thread_pool.h"
#include "kiln/ops/elementwise.h"
#include "kiln/ops/inference_ops.h"
#include "kiln/ops/linalg.h"
#include "kiln/ops/reduce.h"
#include "kiln/ops/shape_ops.h"

namespace kiln::ops {

namespace {

// Labels: letters are their ASCII codes; the dims an ellipsis stands for are kEllipsis + j,
// j counting the broadcast ellipsis dims from the left (operands with fewer take the last ones).
constexpr int kEllipsis = 256;
using Labels = std::vector<int>;

struct Term {
  std::string letters;  // in order, with '.' marking where the ellipsis sits
  bool has_ellipsis = false;
};

struct Parsed {
  std::vector<Term> inputs;
  bool explicit_output = false;
  Term output;
};

[[noreturn]] void bad_equation(std::string_view eq, std::string_view why) {
  throw ValueError(detail::concat("einsum: bad equation '", eq, "': ", why));
}

Term parse_term(std::string_view eq, std::string_view s) {
  Term t;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (std::isalpha(static_cast<unsigned char>(c))) {
      t.letters.push_back(c);
    } else if (c == '.') {
      if (s.substr(i, 3) != "..." || t.has_ellipsis) bad_equation(eq, "'.' only as one '...' per term");
      t.has_ellipsis = true;
      t.letters.push_back('.');
      i += 2;
    } else {
      bad_equation(eq, detail::concat("unexpected character '", c, "' (labels are letters)"));
    }
  }
  return t;
}

Parsed parse(std::string_view eq) {
  std::string s;
  for (char c : eq)
    if (!std::isspace(static_cast<unsigned char>(c))) s.push_back(c);
  Parsed p;
  size_t arrow = s.find("->");
  std::string lhs = s.substr(0, arrow);
  if (arrow != std::string::npos) {
    p.explicit_output = true;
    p.output = parse_term(eq, std::string_view(s).substr(arrow + 2));
  }
  size_t pos = 0;
  for (;;) {
    size_t comma = lhs.find(',', pos);
    p.inputs.push_back(parse_term(eq, std::string_view(lhs).substr(pos, comma - pos)));
    if (comma == std::string::npos) break;
    pos = comma + 1;
  }
  return p;
}

// An operand with one label per dim.
struct Labeled {
  Tensor t;
  Labels labels;
};

bool contains(const Labels& ls, int l) { return std::find(ls.begin(), ls.end(), l) != ls.end(); }

// Merges repeated labels into one dim (the diagonal: a strided view) and sums the labels in
// `drop`.
Labeled simplify(Labeled x, const std::vector<bool>& drop) {
  Labels uniq;
  Shape shape;
  Strides strides;
  for (size_t d = 0; d < x.labels.size(); ++d) {
    auto it = std::find(uniq.begin(), uniq.end(), x.labels[d]);
    if (it == uniq.end()) {
      uniq.push_back(x.labels[d]);
      shape.push_back(x.t.shape()[d]);
      strides.push_back(x.t.strides()[d]);
    } else {
      strides[it - uniq.begin()] += x.t.strides()[d];  // a step along every copy of the label
    }
  }
  if (uniq.size() != x.labels.size()) x.t = x.t.as_strided(shape, strides, x.t.offset());
  x.labels = uniq;
  std::vector<int64_t> dims;
  Labels kept;
  for (size_t d = 0; d < x.labels.size(); ++d) {
    if (drop[x.labels[d]]) dims.push_back(static_cast<int64_t>(d));
    else kept.push_back(x.labels[d]);
  }
  if (!dims.empty()) {
    DType dt = x.t.dtype();
    x.t = to_dtype_raw(sum(x.t, dims), dt);  // integer sums come back as i64
    x.labels = kept;
  }
  return x;
}

// (B, M, K) @ (B, K, N) for the integer dtypes, which the GEMM does not cover.
Tensor bmm_integer(const Tensor& a, const Tensor& b) {
  int64_t B = a.shape()[0], M = a.shape()[1], K = a.shape()[2], N = b.shape()[2];
  Tensor ac = contiguous_raw(a), bc = contiguous_raw(b);
  Tensor out = Tensor::zeros({B, M, N}, a.dtype());
  dispatch_numeric(a.dtype(), "einsum", [&]<typename T>() {
    const T* pa = ac.data<T>();
    const T* pb = bc.data<T>();
    T* po = out.data<T>();
    parallel_for(0, B * M, std::max<int64_t>(1, 4096 / std::max<int64_t>(1, K * N)), [&](int64_t lo, int64_t hi) {
      for (int64_t bm = lo; bm < hi; ++bm) {
        const T* arow = pa + bm * K;
        const T* bmat = pb + (bm / M) * K * N;
        T* orow = po + bm * N;
        for (int64_t k = 0; k < K; ++k)
          for (int64_t n = 0; n < N; ++n) orow[n] = static_cast<T>(orow[n] + arow[k] * bmat[k * N + n]);
      }
    });
  });
  return out;
}

Shape sizes_of(const Labels& ls, const std::vector<int64_t>& size) {
  Shape s;
  for (int l : ls) s.push_back(size[l]);
  return s;
}

// The dims of x reordered as `order` (labels all present in x).
Tensor permute_to(const Labeled& x, const Labels& order) {
  std::vector<int64_t> perm;
  for (int l : order) perm.push_back(std::find(x.labels.begin(), x.labels.end(), l) - x.labels.begin());
  return permute(x.t, perm);
}

// Contracts a and b over their shared labels not in `keep`; labels in only one operand and not
// in `keep` are already summed away by simplify().
Labeled contract(const Labeled& a, const Labeled& b, const std::vector<bool>& keep, const std::vector<int64_t>& size) {
  Labels batch, left, right, inner;
  for (int l : a.labels) {
    if (!contains(b.labels, l)) left.push_back(l);
    else if (keep[l]) batch.push_back(l);
    else inner.push_back(l);
  }
  for (int l : b.labels)
    if (!contains(a.labels, l)) right.push_back(l);
  // A size-1 dim against a size-n one broadcasts (ellipsis dims mostly).
  auto widen = [&](const Labeled& x) {
    Shape full = sizes_of(x.labels, size);
    return full == x.t.shape() ? x : Labeled{expand(x.t, full), x.labels};
  };
  Labeled aw = widen(a), bw = widen(b);
  Labels a_order = batch, b_order = batch;
  a_order.insert(a_order.end(), left.begin(), left.end());
  a_order.insert(a_order.end(), inner.begin(), inner.end());
  b_order.insert(b_order.end(), inner.begin(), inner.end());
  b_order.insert(b_order.end(), right.begin(), right.end());
  int64_t B = kiln::numel(sizes_of(batch, size)), M = kiln::numel(sizes_of(left, size));
  int64_t K = kiln::numel(sizes_of(inner, size)), N = kiln::numel(sizes_of(right, size));
  Labels out_labels = batch;
  out_labels.insert(out_labels.end(), left.begin(), left.end());
  out_labels.insert(out_labels.end(), right.begin(), right.end());
  Shape out_shape = sizes_of(out_labels, size);
  DType dt = a.t.dtype();
  if (B * M * N == 0 || K == 0) return {Tensor::zeros(out_shape, dt), out_labels};
  Tensor am = reshape(permute_to(aw, a_order), {B, M, K});
  Tensor bm = reshape(permute_to(bw, b_order), {B, K, N});
  Tensor prod = is_floating(dt) ? matmul(am, bm) : bmm_integer(am, bm);
  return {reshape(prod, out_shape), out_labels};
}

}  // namespace

Tensor einsum(std::string_view equation, const std::vector<Tensor>& operands) {
  NoGradGuard no_grad;  // forward only, like every inference op
  Parsed p = parse(equation);
  KILN_CHECK(p.inputs.size() == operands.size(), "einsum: equation '", equation, "' has ", p.inputs.size(),
             " input terms but ", operands.size(), " operands were given");
  DType in_dtype = operands[0].dtype();
  for (const Tensor& t : operands)
    KILN_CHECK_TYPE(t.dtype() == in_dtype, "einsum '", equation, "': operands must share one dtype, got ",
                    dtype_name(in_dtype), " and ", dtype_name(t.dtype()));
  KILN_CHECK_TYPE(in_dtype != DType::b8, "einsum: not defined for bool tensors");
  DType dt = (in_dtype == DType::f16 || in_dtype == DType::bf16) ? DType::f32 : in_dtype;

  // Label every dim; the ellipsis dims of all operands broadcast together, right-aligned.
  int64_t ell_rank = 0;
  for (size_t i = 0; i < operands.size(); ++i) {
    const Term& t = p.inputs[i];
    int64_t named = static_cast<int64_t>(t.letters.size()) - (t.has_ellipsis ? 1 : 0);
    KILN_CHECK(t.has_ellipsis ? operands[i].dim() >= named : operands[i].dim() == named, "einsum '", equation,
               "': term '", t.letters, "' names ", named, " dims but operand ", i, " has shape ",
               shape_str(operands[i].shape()));
    if (t.has_ellipsis) ell_rank = std::max(ell_rank, operands[i].dim() - named);
  }
  std::vector<Labeled> xs;
  std::vector<int64_t> size(kEllipsis + ell_rank, -1);
  for (size_t i = 0; i < operands.size(); ++i) {
    const Term& t = p.inputs[i];
    Labeled x{to_dtype_raw(operands[i], dt), {}};
    int64_t named = static_cast<int64_t>(t.letters.size()) - (t.has_ellipsis ? 1 : 0);
    for (char c : t.letters) {
      if (c != '.') {
        x.labels.push_back(static_cast<unsigned char>(c));
        continue;
      }
      int64_t e = x.t.dim() - named;
      for (int64_t j = ell_rank - e; j < ell_rank; ++j) x.labels.push_back(kEllipsis + static_cast<int>(j));
    }
    Labels seen;
    for (size_t d = 0; d < x.labels.size(); ++d) {
      int l = x.labels[d];
      int64_t n = x.t.shape()[d];
      int64_t& s = size[l];
      bool repeated = contains(seen, l);
      KILN_CHECK(s < 0 || s == n || (!repeated && (s == 1 || n == 1)), "einsum '", equation, "': ",
                 l >= kEllipsis ? std::string("an ellipsis dim") : detail::concat("label '", char(l), "'"),
                 " has sizes ", s, " and ", n, " (operand ", i, " has shape ", shape_str(operands[i].shape()), ")");
      if (s < 0 || s == 1) s = n;
      if (!repeated) seen.push_back(l);
    }
    xs.push_back(std::move(x));
  }

  // The output labels: as written, or (implicit form) the ellipsis dims then every letter used
  // once, in alphabetical (ASCII) order.
  Labels out;
  if (p.explicit_output) {
    for (char c : p.output.letters) {
      if (c == '.') {
        for (int64_t j = 0; j < ell_rank; ++j) out.push_back(kEllipsis + static_cast<int>(j));
        continue;
      }
      int l = static_cast<unsigned char>(c);
      if (size[l] < 0) bad_equation(equation, detail::concat("output label '", c, "' is in no input"));
      if (contains(out, l)) bad_equation(equation, detail::concat("output label '", c, "' appears twice"));
      out.push_back(l);
    }
  } else {
    for (int64_t j = 0; j < ell_rank; ++j) out.push_back(kEllipsis + static_cast<int>(j));
    for (int l = 0; l < kEllipsis; ++l) {
      if (!std::isalpha(l)) continue;
      int uses = 0;
      for (const Term& t : p.inputs) uses += static_cast<int>(std::count(t.letters.begin(), t.letters.end(), char(l)));
      if (uses == 1) out.push_back(l);
    }
  }

  // Contract left to right. Before each step, a label that neither the output nor any later
  // operand needs is summed out of the operand that alone holds it.
  std::vector<bool> in_out(size.size(), false);
  for (int l : out) in_out[l] = true;
  auto needed_later = [&](size_t from) {  // labels the output or operands [from, end) use
    std::vector<bool> need = in_out;
    for (size_t i = from; i < xs.size(); ++i)
      for (int l : xs[i].labels) need[l] = true;
    return need;
  };
  auto drop_for = [&](const Labeled& x, const std::vector<bool>& need, const Labeled* partner) {
    std::vector<bool> drop(size.size(), false);
    for (int l : x.labels) drop[l] = !need[l] && !(partner && contains(partner->labels, l));
    return drop;
  };
  Labeled acc = xs[0];
  {
    std::vector<bool> need = needed_later(1);
    acc = simplify(acc, drop_for(acc, need, xs.size() > 1 ? &xs[1] : nullptr));
  }
  for (size_t i = 1; i < xs.size(); ++i) {
    std::vector<bool> keep = needed_later(i + 1);
    Labeled rhs = simplify(xs[i], drop_for(xs[i], keep, &acc));
    acc = simplify(acc, drop_for(acc, keep, &rhs));
    acc = contract(acc, rhs, keep, size);
  }
  // Labels left that the output does not name (the one-operand case, or ellipsis dims the
  // explicit output leaves out) are summed; then the dims take the output's order.
  acc = simplify(acc, drop_for(acc, in_out, nullptr));
  Tensor result = contiguous_raw(permute_to(acc, out));
  // "ij->ij" leaves the operand itself: results are always fresh tensors (graph values own theirs).
  for (const Tensor& t : operands)
    if (result.storage() == t.storage()) result = clone_raw(result);
  return dt == in_dtype ? result : to_dtype_raw(result, in_dtype);
}

}  // namespace kiln::ops
