// Convolution workbench: each conv layer of the cnn model (and resnet_small's 3x3 layers) at batch
// 128, forward, backward-data and backward-weights (+bias), for every Kiln algorithm, Kiln's
// automatic choice and oneDNN's convolution primitives (plain nchw/oihw, and format_tag::any with
// oneDNN's own blocked layout, its reorders excluded), at 1 and 2 threads. Calls are interleaved
// (one of each per round) and the median per figure is reported. Prints one JSON object per
// figure, then one summary line per layer and thread count with the Kiln/oneDNN ratios.
// Usage: conv_bench [rounds=25] [layers=cnn|resnet|all|<layer name>] [threads=0 (1 and 2)|1|2] [impl filter]
#include <dnnl.hpp>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "kiln/core/rng.h"
#include "kiln/core/thread_pool.h"
#include "kiln/ops/cpu/conv_algo.h"

using namespace kiln;
namespace cpu = kiln::ops::cpu;

namespace {

struct Layer {
  std::string name;
  int64_t N, C, H, W, O, K, stride, pad;
  bool bias, input_grad;  // input_grad: false for a first layer (its input needs no gradient)
};

std::vector<Layer> layers(const std::string& which) {
  std::vector<Layer> cnn = {{"cnn.conv1", 128, 1, 28, 28, 32, 3, 1, 0, true, false},
                            {"cnn.conv2", 128, 32, 13, 13, 64, 3, 1, 0, true, true}};
  std::vector<Layer> resnet = {{"resnet.conv1", 128, 1, 28, 28, 32, 3, 1, 1, false, false},
                               {"resnet.layer1", 128, 32, 28, 28, 32, 3, 1, 1, false, true},
                               {"resnet.layer2a", 128, 32, 28, 28, 64, 3, 2, 1, false, true},
                               {"resnet.layer2b", 128, 64, 14, 14, 64, 3, 1, 1, false, true},
                               {"resnet.layer3a", 128, 64, 14, 14, 128, 3, 2, 1, false, true},
                               {"resnet.layer3b", 128, 128, 7, 7, 128, 3, 1, 1, false, true}};
  std::vector<Layer> out;
  for (const auto& l : cnn)
    if (l.name == which) out.push_back(l);
  for (const auto& l : resnet)
    if (l.name == which) out.push_back(l);
  if (which == "cnn" || which == "all") out.insert(out.end(), cnn.begin(), cnn.end());
  if (which == "resnet" || which == "all") out.insert(out.end(), resnet.begin(), resnet.end());
  return out;
}

double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

// One timed thing: a name ("kiln.winograd4", "onednn.any"), a pass ("fwd", "bwd_data",
// "bwd_weights") and the call.
struct Case {
  std::string impl, pass;
  std::function<void()> fn;
  std::vector<double> ms;
};

// ---------------------------------------------------------------- oneDNN

struct DnnlConv {
  dnnl::engine eng{dnnl::engine::kind::cpu, 0};
  dnnl::stream strm{eng};
  dnnl::convolution_forward fwd;
  dnnl::convolution_backward_data bwd_d;
  dnnl::convolution_backward_weights bwd_w;
  std::unordered_map<int, dnnl::memory> fwd_args, bwd_d_args, bwd_w_args;
  bool ok = false;
};

// Builds oneDNN's three primitives for a layer. `any`: let oneDNN choose the tensor layouts (its
// blocked nChw8c/nChw16c formats); the buffers are then allocated in those layouts and filled
// once, so the timed calls exclude any reorder from or to Kiln's NCHW.
std::unique_ptr<DnnlConv> make_dnnl(const Layer& l, bool any, const float* x, const float* w, const float* b,
                                    const float* gy) {
  using tag = dnnl::memory::format_tag;
  using dt = dnnl::memory::data_type;
  auto d = std::make_unique<DnnlConv>();
  const int64_t OH = (l.H + 2 * l.pad - l.K) / l.stride + 1, OW = (l.W + 2 * l.pad - l.K) / l.stride + 1;
  dnnl::memory::dims xs{l.N, l.C, l.H, l.W}, ws{l.O, l.C, l.K, l.K}, bs{l.O}, ys{l.N, l.O, OH, OW};
  dnnl::memory::dims st{l.stride, l.stride}, pd{l.pad, l.pad};
  auto md = [&](const dnnl::memory::dims& s, tag plain) { return dnnl::memory::desc(s, dt::f32, any ? tag::any : plain); };
  dnnl::memory::desc x_md = md(xs, tag::nchw), w_md = md(ws, tag::oihw), y_md = md(ys, tag::nchw);
  dnnl::memory::desc b_md(bs, dt::f32, tag::x);
  try {
    auto alg = dnnl::algorithm::convolution_direct;
    auto fdesc = l.bias ? dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training, alg, x_md, w_md, b_md,
                                                          y_md, st, pd, pd)
                        : dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training, alg, x_md, w_md, y_md,
                                                          st, pd, pd);
    dnnl::convolution_forward::primitive_desc fpd(fdesc, d->eng);
    dnnl::convolution_backward_data::primitive_desc dpd(
        dnnl::convolution_backward_data::desc(alg, x_md, w_md, y_md, st, pd, pd), d->eng, fpd);
    auto wdesc = l.bias ? dnnl::convolution_backward_weights::desc(alg, x_md, w_md, b_md, y_md, st, pd, pd)
                        : dnnl::convolution_backward_weights::desc(alg, x_md, w_md, y_md, st, pd, pd);
    dnnl::convolution_backward_weights::primitive_desc wpd(wdesc, d->eng, fpd);
    d->fwd = dnnl::convolution_forward(fpd);
    d->bwd_d = dnnl::convolution_backward_data(dpd);
    d->bwd_w = dnnl::convolution_backward_weights(wpd);
    // Fill each buffer in the layout its primitive wants, from the plain NCHW data (untimed).
    auto filled = [&](const dnnl::memory::desc& want, const dnnl::memory::dims& dims, tag plain, const float* src) {
      dnnl::memory m(want, d->eng);
      dnnl::memory p({dims, dt::f32, plain}, d->eng, const_cast<float*>(src));
      dnnl::reorder(p, m).execute(d->strm, p, m);
      return m;
    };
    dnnl::memory xm = filled(fpd.src_desc(), xs, tag::nchw, x), wm = filled(fpd.weights_desc(), ws, tag::oihw, w);
    dnnl::memory bm(b_md, d->eng, const_cast<float*>(b));
    dnnl::memory ym(fpd.dst_desc(), d->eng);
    d->fwd_args = {{DNNL_ARG_SRC, xm}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_DST, ym}};
    if (l.bias) d->fwd_args.emplace(DNNL_ARG_BIAS, bm);
    dnnl::memory gym_d = filled(dpd.diff_dst_desc(), ys, tag::nchw, gy);
    dnnl::memory wm_d = filled(dpd.weights_desc(), ws, tag::oihw, w);
    d->bwd_d_args = {{DNNL_ARG_DIFF_DST, gym_d}, {DNNL_ARG_WEIGHTS, wm_d},
                     {DNNL_ARG_DIFF_SRC, dnnl::memory(dpd.diff_src_desc(), d->eng)}};
    dnnl::memory xm_w = filled(wpd.src_desc(), xs, tag::nchw, x);
    dnnl::memory gym_w = filled(wpd.diff_dst_desc(), ys, tag::nchw, gy);
    d->bwd_w_args = {{DNNL_ARG_SRC, xm_w}, {DNNL_ARG_DIFF_DST, gym_w},
                     {DNNL_ARG_DIFF_WEIGHTS, dnnl::memory(wpd.diff_weights_desc(), d->eng)}};
    if (l.bias) d->bwd_w_args.emplace(DNNL_ARG_DIFF_BIAS, dnnl::memory(b_md, d->eng));
    d->strm.wait();
    d->ok = true;
  } catch (const dnnl::error& e) {
    std::fprintf(stderr, "oneDNN %s: %s\n", l.name.c_str(), e.what());
  }
  return d;
}

// ---------------------------------------------------------------- Kiln

struct KilnBufs {
  std::vector<float> x, w, b, y, gy, gx, gw, gb;
};

cpu::ConvShape shape_of(const Layer& l) {
  cpu::ConvShape s;
  s.N = l.N, s.C = l.C, s.H = l.H, s.W = l.W, s.O = l.O, s.KH = l.K, s.KW = l.K;
  s.sh = s.sw = l.stride, s.ph = s.pw = l.pad;
  s.bias = l.bias;
  return s;
}

void print_json(const Layer& l, int threads, const Case& c) {
  std::printf("{\"bench\": \"conv\", \"layer\": \"%s\", \"threads\": %d, \"impl\": \"%s\", \"pass\": \"%s\", "
              "\"ms\": %.4f}\n",
              l.name.c_str(), threads, c.impl.c_str(), c.pass.c_str(), median(c.ms));
}

void run_layer(const Layer& l, int threads, int rounds, const std::string& filter) {
  set_num_threads(threads);
  omp_set_num_threads(threads);
  const cpu::ConvShape s = shape_of(l);
  Generator g(7);
  auto rnd = [&](int64_t n, float scale) {
    std::vector<float> v(static_cast<size_t>(n));
    Tensor t = randn({n}, g);
    for (int64_t i = 0; i < n; ++i) v[i] = t.data<float>()[i] * scale;
    return v;
  };
  KilnBufs k;
  k.x = rnd(s.N * s.C * s.H * s.W, 1.0f);
  k.w = rnd(s.O * s.C * s.KH * s.KW, 0.1f);
  k.b = rnd(s.O, 0.1f);
  k.gy = rnd(s.N * s.O * s.OH() * s.OW(), 1.0f);
  k.y.resize(k.gy.size());
  k.gx.resize(k.x.size());
  k.gw.resize(k.w.size());
  k.gb.resize(k.b.size());
  const float* bias = l.bias ? k.b.data() : nullptr;
  float* gb = l.bias ? k.gb.data() : nullptr;

  std::vector<Case> cases;
  std::vector<std::pair<std::string, cpu::ConvAlgo>> algos;
  for (cpu::ConvAlgo a : cpu::all_conv_algos())
    if (cpu::conv_algo_applicable(a, s)) algos.emplace_back("kiln." + std::string(cpu::conv_algo_name(a)), a);
  using cpu::ConvPass;
  algos.emplace_back("kiln.auto", cpu::ConvAlgo::automatic);
  for (auto& [name, a] : algos) {
    const cpu::ConvAlgo algo = a;
    cases.push_back({name, "fwd", [&, algo] { cpu::conv_forward_f32(algo, s, k.x.data(), k.w.data(), bias, k.y.data()); }, {}});
    if (l.input_grad)
      cases.push_back({name, "bwd_data", [&, algo] { cpu::conv_backward_data_f32(algo, s, k.gy.data(), k.w.data(), k.gx.data()); }, {}});
    cases.push_back({name, "bwd_weights", [&, algo] {
                       cpu::conv_backward_weights_f32(algo, s, k.x.data(), k.gy.data(), k.gw.data(), gb);
                     }, {}});
  }
  std::vector<std::unique_ptr<DnnlConv>> dn;
  for (bool any : {false, true}) {
    dn.push_back(make_dnnl(l, any, k.x.data(), k.w.data(), k.b.data(), k.gy.data()));
    DnnlConv* d = dn.back().get();
    if (!d->ok) continue;
    const std::string name = any ? "onednn.any" : "onednn.nchw";
    cases.push_back({name, "fwd", [d] { d->fwd.execute(d->strm, d->fwd_args); d->strm.wait(); }, {}});
    if (l.input_grad)
      cases.push_back({name, "bwd_data", [d] { d->bwd_d.execute(d->strm, d->bwd_d_args); d->strm.wait(); }, {}});
    cases.push_back({name, "bwd_weights", [d] { d->bwd_w.execute(d->strm, d->bwd_w_args); d->strm.wait(); }, {}});
  }
  if (!filter.empty())
    std::erase_if(cases, [&](const Case& c) { return (c.impl + "." + c.pass).find(filter) == std::string::npos; });
  for (auto& c : cases) c.fn();  // warm up (first-use tuning, allocation, JIT)
  for (int r = 0; r < rounds; ++r)
    for (auto& c : cases) {
      const double t0 = now_ms();
      c.fn();
      c.ms.push_back(now_ms() - t0);
    }
  std::map<std::string, double> total;  // impl -> fwd + backward passes the model needs
  for (auto& c : cases) {
    print_json(l, threads, c);
    total[c.impl] += median(c.ms);
  }
  double dn_best = 1e30;
  for (auto& [impl, t] : total)
    if (impl.rfind("onednn", 0) == 0) dn_best = std::min(dn_best, t);
  const double kiln = total["kiln.auto"];
  std::printf("{\"bench\": \"conv\", \"layer\": \"%s\", \"threads\": %d, \"summary\": \"fwd+bwd\", \"kiln_auto_ms\": %.4f, "
              "\"onednn_nchw_ms\": %.4f, \"onednn_any_ms\": %.4f, \"kiln_vs_onednn_nchw\": %.3f, "
              "\"kiln_vs_onednn_any\": %.3f, \"kiln_vs_onednn_best\": %.3f}\n",
              l.name.c_str(), threads, kiln, total["onednn.nchw"], total["onednn.any"],
              total["onednn.nchw"] / kiln, total["onednn.any"] / kiln, dn_best / kiln);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  const int rounds = argc > 1 ? std::atoi(argv[1]) : 25;
  const std::string which = argc > 2 ? argv[2] : "cnn";
  std::vector<int> threads = {1, 2};
  if (argc > 3 && std::atoi(argv[3]) > 0) threads = {std::atoi(argv[3])};
  const std::string filter = argc > 4 ? argv[4] : "";
  for (const Layer& l : layers(which))
    for (int t : threads) run_layer(l, t, rounds, filter);
  return 0;
}
