// ONNX sequences and optionals: SequenceProto/OptionalProto decoding (the backend tests' data
// files), the sequence/optional backend cases run through the optimisation passes (the
// optimised conformance test skips cases whose data are not plain tensors), and export refusing
// graphs that carry such values.
#include <gtest/gtest.h>

#include <filesystem>

#include "kiln/core/error.h"
#include "kiln/io/onnx/backend_test.h"
#include "kiln/io/onnx/onnx_export.h"
#include "kiln/io/onnx/onnx_import.h"
#include "kiln/io/onnx/tensor_proto.h"

namespace kiln::io {
namespace {

const std::string kRoot = "/usr/share/libonnx-testdata/data";

TEST(OnnxSequenceProto, SequencesAndOptionalsDecode) {
  ::onnx::SequenceProto seq;
  seq.set_elem_type(::onnx::SequenceProto::TENSOR);
  *seq.add_tensor_values() = tensor_to_proto(Tensor::from_vector<float>({1, 2}, {2}), "a");
  *seq.add_tensor_values() = tensor_to_proto(Tensor::from_vector<int64_t>({7}, {1, 1}), "b");
  std::vector<Tensor> got = sequence_from_proto(seq, "test");
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].to_vector<float>(), (std::vector<float>{1, 2}));
  EXPECT_EQ(got[1].shape(), (Shape{1, 1}));
  EXPECT_EQ(got[1].to_vector<int64_t>(), (std::vector<int64_t>{7}));

  ::onnx::OptionalProto empty;
  empty.set_elem_type(::onnx::OptionalProto::TENSOR);
  EXPECT_EQ(optional_from_proto(empty, "test").kind, ProtoValue::Kind::none);
  ::onnx::OptionalProto of_seq;
  of_seq.set_elem_type(::onnx::OptionalProto::SEQUENCE);
  *of_seq.mutable_sequence_value() = seq;
  ProtoValue v = optional_from_proto(of_seq, "test");
  EXPECT_EQ(v.kind, ProtoValue::Kind::sequence);
  EXPECT_EQ(v.sequence.size(), 2u);

  ::onnx::SequenceProto nested;
  nested.set_elem_type(::onnx::SequenceProto::SEQUENCE);
  *nested.add_sequence_values() = seq;
  EXPECT_THROW(sequence_from_proto(nested, "test"), NotImplementedError);
}

TEST(OnnxSequenceConformance, SequenceAndOptionalCasesPassOptimised) {
  if (!std::filesystem::is_directory(kRoot + "/node")) GTEST_SKIP() << "libonnx-testdata is not installed";
  int checked = 0;
  for (const char* suite : {"node", "simple"}) {
    for (const std::string& dir : list_backend_cases(kRoot + "/" + suite, /*skip_expanded=*/false)) {
      std::string name = std::filesystem::path(dir).filename().string();
      bool wanted = name.find("sequence_map") != std::string::npos || name.find("sequence_insert") != std::string::npos ||
                    name.find("sequence_model") != std::string::npos || name.find("optional") != std::string::npos ||
                    name == "test_identity_opt" || name == "test_identity_sequence" || name == "test_if_seq" ||
                    name == "test_if_opt" || name == "test_loop13_seq" || name == "test_loop16_seq_none";
      if (!wanted) continue;
      ++checked;
      for (bool optimize : {false, true}) {
        BackendTestOptions opt;
        opt.optimize = optimize;
        CaseResult r = run_backend_case(dir, opt);
        EXPECT_EQ(r.outcome, CaseOutcome::pass) << suite << "/" << name << (optimize ? " (optimised)" : "") << ": " << r.detail;
      }
    }
  }
  EXPECT_EQ(checked, 32);  // 18 node cases (+ 6 sequence_map _expanded) and 8 simple ones
}

// Export has no form for sequence values: it must refuse, naming the node, rather than write a
// model with tensor types where the values are sequences.
void expect_export_refused(const char* name) {
  const std::string model = kRoot + "/" + name + "/model.onnx";
  if (!std::filesystem::exists(model)) GTEST_SKIP() << "libonnx-testdata is not installed";
  graph::Graph g = load_onnx(model);
  try {
    export_onnx(g);
    ADD_FAILURE() << name << ": exported a graph with a sequence";
  } catch (const NotImplementedError& e) {
    EXPECT_NE(std::string(e.what()).find("ONNX export: node '"), std::string::npos) << e.what();
  }
}

TEST(OnnxSequenceExport, GraphsCarryingSequencesAreRefusedNamingTheNode) {
  expect_export_refused("simple/test_sequence_model4");  // sequence_construct: no ONNX form
  expect_export_refused("node/test_if_seq");             // control flow
}

// Even a plain Identity is refused when its values are sequences (ONNX export writes tensors only).
TEST(OnnxSequenceExport, IdentityOfASequenceIsRefused) { expect_export_refused("node/test_identity_sequence"); }

}  // namespace
}  // namespace kiln::io
