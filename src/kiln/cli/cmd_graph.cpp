// kiln export, kiln run, kiln compile, and kiln eval on an .onnx file: the define-and-run half.
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "kiln/cli/commands.h"
#include "kiln/cli/config.h"
#include "kiln/cli/evaluate.h"
#include "kiln/cli/graph_util.h"
#include "kiln/cli/task.h"
#include "kiln/core/error.h"
#include "kiln/core/thread_pool.h"
#include "kiln/graph/compiled.h"
#include "kiln/io/checkpoint.h"
#include "kiln/io/model_trace.h"
#include "kiln/io/npy.h"
#include "kiln/io/onnx/onnx_export.h"
#include "kiln/io/onnx/onnx_import.h"
#include "kiln/io/onnx/tensor_proto.h"

namespace kiln::cli {

namespace fs = std::filesystem;

int run_export(const ExportArgs& args) {
  KILN_CHECK(args.format == "onnx", "export: unknown --format '", args.format, "' (supported: onnx)");
  KILN_CHECK(!args.output.empty(), "export: -o FILE is required");
  KILN_CHECK(args.checkpoint.empty() != args.model.empty(), "export: give a checkpoint or --model NAME (not both)");
  nn::ModelSpec spec;
  nn::ModulePtr model;
  if (!args.checkpoint.empty()) {
    io::Checkpoint ckpt = io::load_checkpoint(args.checkpoint);
    TrainConfig config = parse_config(ckpt.state.config_toml, args.checkpoint + " (embedded config)");
    Task task = make_task(config, &ckpt.state.extra);
    spec = task.spec;
    model = nn::make_model(spec, config.seed);
    model->load_state_dict(ckpt.model);
  } else {
    spec.name = args.model;
    if (spec.name == "gpt_char") spec.vocab_size = 65;  // the corpus's character count; weights are fresh
    model = nn::make_model(spec, args.seed);
  }
  graph::Graph g = io::trace(*model, {example_input(spec, 2)});
  io::save_onnx(g, args.output);
  nlohmann::json j = {{"source", args.checkpoint.empty() ? "--model " + args.model : args.checkpoint},
                      {"onnx", args.output},
                      {"model", spec.name},
                      {"opset", io::kExportOpset},
                      {"nodes", g.nodes().size()},
                      {"batch", "symbolic (N)"}};
  std::printf("%s\n", j.dump().c_str());
  return 0;
}

namespace {

Tensor read_input_file(const std::string& path) {
  std::string ext = fs::path(path).extension().string();
  if (ext == ".npy") return io::read_npy(path);
  if (ext == ".pb") return io::read_tensor_pb(path);
  throw ValueError(detail::concat("input file '", path, "': expected a .pb TensorProto or a .npy array"));
}

// Output names may contain characters that are not file names ("logits:0", "a/b").
std::string file_stem(const std::string& name) {
  std::string s = name;
  for (char& c : s)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.')) c = '_';
  return s.empty() || s[0] == '.' ? "_" + s : s;
}

// An input for a graph value of kind `kind`: tensors from .pb/.npy; sequences and optionals from
// the ONNX backend tests' SequenceProto / OptionalProto .pb files.
graph::RtValue read_input_value(const std::string& path, graph::ValueKind kind) {
  if (kind == graph::ValueKind::tensor) return graph::RtValue(read_input_file(path));
  KILN_CHECK(fs::path(path).extension() == ".pb", "input file '", path,
             "': a sequence or optional input is read from a .pb SequenceProto / OptionalProto");
  if (kind == graph::ValueKind::sequence) return graph::RtValue::sequence(io::read_sequence_pb(path));
  io::ProtoValue v = io::read_optional_pb(path);
  if (v.kind == io::ProtoValue::Kind::tensor) return graph::RtValue(v.tensor);
  if (v.kind == io::ProtoValue::Kind::sequence) return graph::RtValue::sequence(v.sequence);
  return graph::RtValue();
}

// Writes one tensor as <stem>.pb and <stem>.npy; returns its JSON description.
nlohmann::json write_output_tensor(const std::string& stem, const Tensor& t, const std::string& name) {
  io::write_tensor_pb(stem + ".pb", t, name);
  io::write_npy(stem + ".npy", t);
  return {{"dtype", dtype_name(t.dtype())}, {"shape", t.shape()}, {"files", {stem + ".pb", stem + ".npy"}}};
}

}  // namespace

int run_model(const RunModelArgs& args) {
  graph::Graph g = io::load_onnx(args.model);
  std::map<std::string, std::string> files;
  for (const std::string& spec : args.inputs) {
    auto eq = spec.find('=');
    KILN_CHECK(eq != std::string::npos && eq > 0 && eq + 1 < spec.size(), "--input '", spec, "': expected NAME=FILE");
    std::string name = spec.substr(0, eq);
    KILN_CHECK(!files.count(name), "--input: '", name, "' given twice");
    files[name] = spec.substr(eq + 1);
  }
  std::vector<graph::RtValue> inputs;
  for (const graph::Value* v : g.inputs()) {
    auto it = files.find(v->name);
    KILN_CHECK(it != files.end(), "missing graph input '", v->name, "'");
    inputs.push_back(read_input_value(it->second, v->kind));
    files.erase(it);
  }
  KILN_CHECK(files.empty(), "--input '", files.empty() ? "" : files.begin()->first, "': the graph has no such input");
  graph::Compiled compiled(std::move(g), graph::CompileOptions{.optimize = !args.no_optimize});
  std::vector<graph::RtValue> outs = compiled.run_values(inputs);
  fs::create_directories(args.output_dir);
  nlohmann::json written = nlohmann::json::array();
  const auto& names = compiled.graph().outputs();
  for (size_t k = 0; k < outs.size(); ++k) {
    const std::string& name = names[k]->name;
    std::string stem = (fs::path(args.output_dir) / file_stem(name)).string();
    nlohmann::json o;
    if (outs[k].is_tensor()) {
      o = write_output_tensor(stem, outs[k].tensor, name);
    } else if (outs[k].is_sequence()) {  // element i as <name>.<i>.pb / .npy
      o["elements"] = nlohmann::json::array();
      for (size_t i = 0; i < outs[k].seq.size(); ++i)
        o["elements"].push_back(write_output_tensor(stem + "." + std::to_string(i), outs[k].seq[i], name));
    } else {
      o["none"] = true;  // an empty optional: no file
    }
    o["name"] = name;
    written.push_back(o);
  }
  std::printf("%s\n", nlohmann::json{{"model", args.model}, {"optimized", !args.no_optimize}, {"outputs", written}}
                          .dump()
                          .c_str());
  return 0;
}

int run_compile(const CompileArgs& args) {
  KILN_CHECK(args.batch > 0, "compile: --batch must be positive");
  graph::Graph g = io::load_onnx(args.model);
  graph::CompileOptions opt;
  opt.passes.print_after = args.print_after;
  graph::Compiled compiled(std::move(g), opt);
  graph::Graph imported = io::load_onnx(args.model);  // the naive baseline of the memory report
  std::printf("%s: %zu nodes imported\n", args.model.c_str(), compiled.nodes_before());
  for (const graph::PassLogEntry& e : compiled.pass_log())
    std::printf("  pass %-18s %4d -> %4d nodes  %-24s %8.2f ms\n", e.pass.c_str(), e.nodes_before, e.nodes_after,
                e.detail.c_str(), e.ms);
  std::printf("%zu nodes after optimisation\n", compiled.graph().nodes().size());
  if (!args.report) return 0;
  print_compile_report(compiled, imported, args.batch);
  return 0;
}

int run_eval_onnx(const EvalArgs& args) {
  auto colon = args.data.find(':');
  std::string source = args.data.substr(0, colon);
  std::string split = colon == std::string::npos ? "test" : args.data.substr(colon + 1);
  KILN_CHECK(source == "fashion-mnist", "--data '", args.data,
             "': ONNX models are evaluated on fashion-mnist (text models need their checkpoint's vocabulary)");
  KILN_CHECK(split == "test" || split == "train", "--data '", args.data, "': split must be 'test' or 'train'");
  TrainConfig config;
  config.data.dataset = "fashion-mnist";
  Task task = make_task(config);
  graph::Compiled compiled(io::load_onnx(args.checkpoint));
  KILN_CHECK(compiled.graph().inputs().size() == 1, args.checkpoint, ": expected one input, the model has ",
             compiled.graph().inputs().size());
  EvalResult r = evaluate([&](const Tensor& x) { return compiled.run({x})[0]; },
                          split == "test" ? task.test : task.train, args.batch_size);
  nlohmann::json j = {{"model", args.checkpoint}, {"data", args.data}, {"accuracy", r.accuracy},
                      {"loss", r.loss},           {"count", r.count}};
  std::printf("%s\n", j.dump().c_str());
  return 0;
}

}  // namespace kiln::cli
