// The define-and-run commands end to end through the real binary: export (from a trained
// checkpoint and from --model), run (.npy and .pb in, both out), compile --report, eval on the
// exported model (same accuracy as the checkpoint), bench infer on a file, and one-line errors
// for bad models and bad inputs that leave no output file behind.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <onnx/onnx_pb.h>

#include "cli/run_kiln.h"
#include "kiln/core/rng.h"
#include "kiln/io/npy.h"
#include "kiln/io/onnx/tensor_proto.h"
#include "kiln/nn/models.h"

using namespace kiln::testing;
namespace fs = std::filesystem;

namespace {

void expect_one_line_error(const RunResult& r, const std::string& needle) {
  EXPECT_NE(r.code, 0);
  EXPECT_EQ(count_lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find(needle), std::string::npos) << "expected '" << needle << "' in: " << r.err;
}

double max_abs_diff(const kiln::Tensor& a, const kiln::Tensor& b) {
  EXPECT_EQ(a.shape(), b.shape());
  auto x = a.to_vector<double>(), y = b.to_vector<double>();
  double m = 0;
  for (size_t i = 0; i < x.size(); ++i) m = std::max(m, std::fabs(x[i] - y[i]));
  return m;
}

// A one-node model (Relu) of the given opset, with the output declared as `out_dims`.
void write_relu_model(const std::string& path, int64_t opset, std::vector<int64_t> in_dims,
                      std::vector<int64_t> out_dims) {
  onnx::ModelProto m;
  m.set_ir_version(8);
  m.add_opset_import()->set_version(opset);
  auto* g = m.mutable_graph();
  g->set_name("relu");
  auto* n = g->add_node();
  n->set_op_type("Relu");
  n->add_input("x");
  n->add_output("y");
  auto declare = [](onnx::ValueInfoProto* vi, const char* name, const std::vector<int64_t>& dims) {
    vi->set_name(name);
    auto* tt = vi->mutable_type()->mutable_tensor_type();
    tt->set_elem_type(onnx::TensorProto::FLOAT);
    for (int64_t d : dims) tt->mutable_shape()->add_dim()->set_dim_value(d);
  };
  declare(g->add_input(), "x", in_dims);
  declare(g->add_output(), "y", out_dims);
  std::string bytes;
  m.SerializeToString(&bytes);
  write_text(path, bytes);
}

}  // namespace

TEST(CliGraph, ExportRunCompileAndBenchAFreshModel) {
  std::string d = temp_dir("graph_cnn");
  RunResult ex = run_kiln("export --model cnn --seed 3 -o " + d + "/cnn.onnx");
  ASSERT_EQ(ex.code, 0) << ex.err;
  EXPECT_EQ(nlohmann::json::parse(ex.out)["opset"], 17);

  // The same weights in process: kiln export --model uses make_model(spec, seed).
  kiln::nn::ModelSpec spec;
  spec.name = "cnn";
  auto model = kiln::nn::make_model(spec, 3);
  model->eval();
  kiln::Generator gen(11);
  kiln::Tensor x = kiln::randn({2, 1, 28, 28}, gen);
  kiln::Tensor want = model->forward(x);
  kiln::io::write_npy(d + "/x.npy", x);
  kiln::io::write_tensor_pb(d + "/x.pb", x, "input");

  for (const char* flags : {"", " --no-optimize"}) {
    std::string out = d + "/out" + (flags[0] ? "_noopt" : "");
    RunResult r = run_kiln("run " + d + "/cnn.onnx --input input=" + d + "/x.npy --output-dir " + out + flags);
    ASSERT_EQ(r.code, 0) << r.err;
    EXPECT_LT(max_abs_diff(kiln::io::read_npy(out + "/output.npy"), want), 1e-5);
    EXPECT_LT(max_abs_diff(kiln::io::read_tensor_pb(out + "/output.pb"), want), 1e-5);
  }
  RunResult pb = run_kiln("run " + d + "/cnn.onnx --input input=" + d + "/x.pb --output-dir " + d + "/out_pb");
  ASSERT_EQ(pb.code, 0) << pb.err;
  EXPECT_LT(max_abs_diff(kiln::io::read_npy(d + "/out_pb/output.npy"), want), 1e-5);

  RunResult c = run_kiln("compile " + d + "/cnn.onnx --report --batch 64");
  ASSERT_EQ(c.code, 0) << c.err;
  EXPECT_NE(c.out.find("pass fold_constants"), std::string::npos) << c.out;
  EXPECT_NE(c.out.find("memory (batch 64): arena"), std::string::npos) << c.out;

  RunResult b = run_kiln("bench infer " + d + "/cnn.onnx --batch 4 --steps 3 --warmup 1 --threads 1");
  ASSERT_EQ(b.code, 0) << b.err;
  auto j = nlohmann::json::parse(b.out);
  EXPECT_EQ(j["batch"], 4);
  EXPECT_GT(j["latency_ms_p50"].get<double>(), 0.0);
}

TEST(CliGraph, ExportedCheckpointEvaluatesLikeTheCheckpoint) {
  std::string d = temp_dir("graph_eval");
  write_text(d + "/cfg.toml", "[model]\nname = \"mlp\"\n[train]\nepochs = 1\nmax_steps = 30\neval_batches = 1\n");
  RunResult t = run_kiln("train " + d + "/cfg.toml --out " + d + "/run");
  ASSERT_EQ(t.code, 0) << t.err;
  std::string ckpt = d + "/run/checkpoint.safetensors";
  RunResult ex = run_kiln("export " + ckpt + " --format onnx -o " + d + "/mlp.onnx");
  ASSERT_EQ(ex.code, 0) << ex.err;
  RunResult e1 = run_kiln("eval " + ckpt + " --data fashion-mnist:test");
  RunResult e2 = run_kiln("eval " + d + "/mlp.onnx --data fashion-mnist:test");
  ASSERT_EQ(e1.code, 0) << e1.err;
  ASSERT_EQ(e2.code, 0) << e2.err;
  auto a = nlohmann::json::parse(e1.out), b = nlohmann::json::parse(e2.out);
  EXPECT_EQ(b["count"], 10000);
  EXPECT_EQ(a["accuracy"], b["accuracy"]);
  EXPECT_NEAR(a["loss"].get<double>(), b["loss"].get<double>(), 1e-5);
  EXPECT_GT(b["accuracy"].get<double>(), 0.5);  // 30 steps of training already beat chance by far
}

TEST(CliGraph, BadModelsAndInputsAreOneLineErrorsWithoutOutputFiles) {
  std::string d = temp_dir("graph_errors");
  ASSERT_EQ(run_kiln("export --model mlp -o " + d + "/mlp.onnx").code, 0);
  std::string good = slurp(d + "/mlp.onnx");
  write_text(d + "/truncated.onnx", good.substr(0, good.size() / 2));
  expect_one_line_error(run_kiln("run " + d + "/truncated.onnx --output-dir " + d + "/o1"), "not a valid ONNX model");
  write_text(d + "/garbage.onnx", "this is not protobuf at all \x01\x02\x03");
  expect_one_line_error(run_kiln("compile " + d + "/garbage.onnx"), "garbage.onnx");

  std::string unsupported = "/usr/share/libonnx-testdata/data/node/test_tfidfvectorizer_tf_only_bigrams_skip0/model.onnx";
  if (fs::exists(unsupported))
    expect_one_line_error(run_kiln("compile " + unsupported), "ONNX operator TfIdfVectorizer (opset");

  write_relu_model(d + "/opset18.onnx", 18, {2, 3}, {2, 3});
  expect_one_line_error(run_kiln("compile " + d + "/opset18.onnx"), "opset 18 is not supported");
  write_relu_model(d + "/contradiction.onnx", 13, {2, 3}, {4, 5});
  expect_one_line_error(run_kiln("compile " + d + "/contradiction.onnx"), "contradict");

  expect_one_line_error(run_kiln("run " + d + "/mlp.onnx --output-dir " + d + "/o2"), "missing graph input 'input'");
  kiln::io::write_npy(d + "/wrong.npy", kiln::Tensor::zeros({2, 3}));
  expect_one_line_error(run_kiln("run " + d + "/mlp.onnx --input input=" + d + "/wrong.npy --output-dir " + d + "/o3"),
                        "input 'input' has shape [2, 3]");
  expect_one_line_error(run_kiln("run " + d + "/mlp.onnx --input input=" + d + "/missing.npy"), "missing.npy");
  expect_one_line_error(run_kiln("run " + d + "/mlp.onnx --input nonsense"), "expected NAME=FILE");
  for (const char* o : {"o1", "o2", "o3"}) EXPECT_FALSE(fs::exists(d + "/" + o + "/output.npy")) << o;
}

// kiln run on a model with a sequence input and output (ONNX backend test data): the sequence is
// read from its SequenceProto file and written element by element, equal to the expected output.
TEST(CliGraph, RunReadsAndWritesSequences) {
  const std::string c = "/usr/share/libonnx-testdata/data/node/test_sequence_insert_at_back";
  if (!fs::exists(c)) GTEST_SKIP() << "libonnx-testdata is not installed";
  std::string d = temp_dir("graph_seq");
  RunResult r = run_kiln("run " + c + "/model.onnx --input sequence=" + c + "/test_data_set_0/input_0.pb --input tensor=" +
                         c + "/test_data_set_0/input_1.pb --output-dir " + d);
  ASSERT_EQ(r.code, 0) << r.err;
  std::vector<kiln::Tensor> want = kiln::io::read_sequence_pb(c + "/test_data_set_0/output_0.pb");
  auto elements = nlohmann::json::parse(r.out)["outputs"][0]["elements"];
  ASSERT_EQ(elements.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    kiln::Tensor got = kiln::io::read_npy(d + "/output_sequence." + std::to_string(i) + ".npy");
    EXPECT_EQ(got.shape(), want[i].shape()) << i;
    EXPECT_EQ(got.to_vector<double>(), want[i].to_vector<double>()) << i;
  }
  expect_one_line_error(run_kiln("run " + c + "/model.onnx --input sequence=" + c + "/test_data_set_0/input_0.pb"),
                        "missing graph input 'tensor'");
  expect_one_line_error(run_kiln("run " + c + "/model.onnx --input sequence=" + c + "/test_data_set_0/input_1.pb"),
                        "sequence of element type");
}
