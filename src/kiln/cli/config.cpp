// The config schema is one table: key, type, and where the value goes. Parsing walks the TOML
// document and looks every key up in that table, so unknown keys cannot slip through.
#include "kiln/cli/config.h"

#include <functional>
#include <sstream>
#include <toml++/toml.h>
#include <variant>

#include "kiln/core/error.h"
#include "kiln/io/atomic_file.h"
#include "kiln/nn/models.h"

namespace kiln::cli {

namespace {

using FieldRef = std::variant<int64_t*, uint64_t*, double*, bool*, std::string*>;

struct Field {
  std::string key;
  FieldRef ref;
};

std::vector<Field> schema(TrainConfig& c) {
  return {
      {"seed", &c.seed},
      {"threads", &c.threads},
      {"model.name", &c.model.name},
      {"model.dropout", &c.model.dropout},
      {"data.dataset", &c.data.dataset},
      {"data.path", &c.data.path},
      {"data.batch_size", &c.data.batch_size},
      {"data.shuffle", &c.data.shuffle},
      {"data.drop_last", &c.data.drop_last},
      {"data.workers", &c.data.workers},
      {"data.augment", &c.data.augment},
      {"data.context", &c.data.context},
      {"data.val_fraction", &c.data.val_fraction},
      {"optim.name", &c.optim.name},
      {"optim.lr", &c.optim.lr},
      {"optim.momentum", &c.optim.momentum},
      {"optim.nesterov", &c.optim.nesterov},
      {"optim.beta1", &c.optim.beta1},
      {"optim.beta2", &c.optim.beta2},
      {"optim.eps", &c.optim.eps},
      {"optim.weight_decay", &c.optim.weight_decay},
      {"optim.grad_clip", &c.optim.grad_clip},
      {"optim.grad_accum", &c.optim.grad_accum},
      {"schedule.name", &c.schedule.name},
      {"schedule.warmup_steps", &c.schedule.warmup_steps},
      {"schedule.step_size", &c.schedule.step_size},
      {"schedule.gamma", &c.schedule.gamma},
      {"schedule.min_lr", &c.schedule.min_lr},
      {"train.epochs", &c.train.epochs},
      {"train.max_steps", &c.train.max_steps},
      {"train.log_every", &c.train.log_every},
      {"train.checkpoint_every", &c.train.checkpoint_every},
      {"train.eval_batches", &c.train.eval_batches},
      {"dist.strategy", &c.dist.strategy},
      {"dist.shards", &c.dist.shards},
      {"dist.bucket_mb", &c.dist.bucket_mb},
      {"dist.overlap", &c.dist.overlap},
      {"dist.compression", &c.dist.compression},
      {"dist.topk_ratio", &c.dist.topk_ratio},
      {"dist.topk_warmup_steps", &c.dist.topk_warmup_steps},
      {"dist.zero", &c.dist.zero},
      {"dist.timeout_s", &c.dist.timeout_s},
      {"dist.timeline", &c.dist.timeline},
      {"dist.micro_batches", &c.dist.micro_batches},
      {"dist.schedule", &c.dist.schedule},
      {"dist.split", &c.dist.split},
      {"dist.servers", &c.dist.servers},
      {"dist.ps_mode", &c.dist.ps_mode},
      {"dist.staleness", &c.dist.staleness},
      {"dist.rounds", &c.dist.rounds},
      {"dist.local_epochs", &c.dist.local_epochs},
      {"dist.partition", &c.dist.partition},
      {"dist.noniid_fraction", &c.dist.noniid_fraction},
      {"sample.tokens", &c.sample.tokens},
      {"sample.temperature", &c.sample.temperature},
      {"sample.top_k", &c.sample.top_k},
      {"sample.prompt", &c.sample.prompt},
  };
}

const char* type_name(const FieldRef& ref) {
  switch (ref.index()) {
    case 0:
    case 1: return "an integer";
    case 2: return "a number";
    case 3: return "a boolean (true or false)";
    default: return "a string";
  }
}

std::string node_kind(const toml::node& n) {
  if (n.is_string()) return "string";
  if (n.is_integer()) return "integer";
  if (n.is_floating_point()) return "float";
  if (n.is_boolean()) return "boolean";
  if (n.is_table()) return "table";
  if (n.is_array()) return "array";
  return "value";
}

void assign(const Field& f, const toml::node& n, const std::string& origin) {
  auto wrong = [&] {
    return ValueError(detail::concat(origin, ": config key '", f.key, "': expected ", type_name(f.ref), ", got ",
                                     node_kind(n)));
  };
  std::visit(
      [&](auto* p) {
        using T = std::remove_pointer_t<decltype(p)>;
        if constexpr (std::is_same_v<T, std::string>) {
          if (!n.is_string()) throw wrong();
          *p = n.as_string()->get();
        } else if constexpr (std::is_same_v<T, bool>) {
          if (!n.is_boolean()) throw wrong();
          *p = n.as_boolean()->get();
        } else if constexpr (std::is_same_v<T, double>) {
          if (n.is_integer())
            *p = static_cast<double>(n.as_integer()->get());
          else if (n.is_floating_point())
            *p = n.as_floating_point()->get();
          else
            throw wrong();
        } else {
          if (!n.is_integer()) throw wrong();
          int64_t v = n.as_integer()->get();
          if constexpr (std::is_same_v<T, uint64_t>) {
            KILN_CHECK(v >= 0, origin, ": config key '", f.key, "': expected a non-negative integer, got ", v);
          }
          *p = static_cast<T>(v);
        }
      },
      f.ref);
}

std::string known_keys(const std::vector<Field>& fields) {
  std::string s;
  for (const auto& f : fields) s += (s.empty() ? "" : ", ") + f.key;
  return s;
}

void apply_table(const toml::table& table, const std::string& prefix, std::vector<Field>& fields,
                 const std::string& origin) {
  for (const auto& [k, node] : table) {
    std::string key = prefix.empty() ? std::string(k.str()) : prefix + "." + std::string(k.str());
    if (node.is_table()) {
      apply_table(*node.as_table(), key, fields, origin);
      continue;
    }
    auto it = std::find_if(fields.begin(), fields.end(), [&](const Field& f) { return f.key == key; });
    if (it == fields.end())
      throw ValueError(detail::concat(origin, ": unknown config key '", key, "'\nhelp: known keys are ",
                                      known_keys(fields)));
    assign(*it, node, origin);
  }
}

void validate(const TrainConfig& c, const std::string& origin) {
  auto check_positive = [&](int64_t v, const char* key) {
    KILN_CHECK(v > 0, origin, ": config key '", key, "' must be positive, got ", v);
  };
  check_positive(c.threads, "threads");
  check_positive(c.data.batch_size, "data.batch_size");
  check_positive(c.data.context, "data.context");
  check_positive(c.optim.grad_accum, "optim.grad_accum");
  check_positive(c.train.log_every, "train.log_every");
  KILN_CHECK(c.train.epochs >= 0, origin, ": config key 'train.epochs' must be >= 0, got ", c.train.epochs);
  KILN_CHECK(c.data.workers >= 0, origin, ": config key 'data.workers' must be >= 0, got ", c.data.workers);
  KILN_CHECK(c.optim.lr > 0, origin, ": config key 'optim.lr' must be positive, got ", c.optim.lr);
  KILN_CHECK(c.model.dropout >= 0 && c.model.dropout < 1, origin,
             ": config key 'model.dropout' must be in [0, 1), got ", c.model.dropout);
  KILN_CHECK(c.data.val_fraction > 0 && c.data.val_fraction < 1, origin,
             ": config key 'data.val_fraction' must be in (0, 1), got ", c.data.val_fraction);
  auto one_of = [&](const std::string& v, std::initializer_list<const char*> allowed, const char* key) {
    std::string list;
    for (const char* a : allowed) {
      if (v == a) return;
      list += (list.empty() ? "" : ", ") + std::string(a);
    }
    throw ValueError(detail::concat(origin, ": config key '", key, "': unknown value '", v, "' (expected one of ",
                                    list, ")"));
  };
  one_of(c.data.dataset, {"fashion-mnist", "text"}, "data.dataset");
  auto models = nn::model_names();
  if (std::find(models.begin(), models.end(), c.model.name) == models.end()) {
    std::string list;
    for (const auto& m : models) list += (list.empty() ? "" : ", ") + m;
    throw ValueError(detail::concat(origin, ": config key 'model.name': unknown model '", c.model.name,
                                    "' (expected one of ", list, ")"));
  }
  one_of(c.optim.name, {"sgd", "adam", "adamw"}, "optim.name");
  one_of(c.dist.strategy, {"none", "ddp", "ps", "pipeline", "tensor", "fedavg"}, "dist.strategy");
  one_of(c.dist.ps_mode, {"bsp", "asp", "ssp"}, "dist.ps_mode");
  check_positive(c.dist.servers, "dist.servers");
  KILN_CHECK(c.dist.staleness >= 0, origin, ": config key 'dist.staleness' must be >= 0, got ", c.dist.staleness);
  one_of(c.dist.schedule, {"gpipe", "1f1b"}, "dist.schedule");
  check_positive(c.dist.micro_batches, "dist.micro_batches");
  one_of(c.dist.partition, {"iid", "noniid"}, "dist.partition");
  check_positive(c.dist.rounds, "dist.rounds");
  check_positive(c.dist.local_epochs, "dist.local_epochs");
  KILN_CHECK(c.dist.noniid_fraction >= 0 && c.dist.noniid_fraction <= 1, origin,
             ": config key 'dist.noniid_fraction' must be in [0, 1], got ", c.dist.noniid_fraction);
  one_of(c.dist.compression, {"none", "topk", "int8"}, "dist.compression");
  KILN_CHECK(c.dist.topk_ratio > 0 && c.dist.topk_ratio <= 1, origin,
             ": config key 'dist.topk_ratio' must be in (0, 1], got ", c.dist.topk_ratio);
  KILN_CHECK(c.dist.topk_warmup_steps >= 0, origin, ": config key 'dist.topk_warmup_steps' must be >= 0, got ",
             c.dist.topk_warmup_steps);
  KILN_CHECK(c.dist.shards >= 0, origin, ": config key 'dist.shards' must be >= 0, got ", c.dist.shards);
  KILN_CHECK(c.dist.shards <= c.data.batch_size, origin, ": config key 'dist.shards' (", c.dist.shards,
             ") must not exceed data.batch_size (", c.data.batch_size, "): every shard needs examples");
  KILN_CHECK(c.dist.bucket_mb > 0, origin, ": config key 'dist.bucket_mb' must be positive, got ", c.dist.bucket_mb);
  KILN_CHECK(c.dist.timeout_s > 0, origin, ": config key 'dist.timeout_s' must be positive, got ", c.dist.timeout_s);
  one_of(c.schedule.name, {"constant", "step", "cosine"}, "schedule.name");
  bool text_model = c.model.name == "gpt_char";
  KILN_CHECK(text_model == (c.data.dataset == "text"), origin, ": model '", c.model.name,
             "' does not fit dataset '", c.data.dataset, "' (gpt_char trains on text, the image models on "
             "fashion-mnist)");
}

toml::table parse_toml(const std::string& text, const std::string& origin) {
  try {
    return toml::parse(text, origin);
  } catch (const toml::parse_error& e) {
    const auto& src = e.source();
    throw ValueError(detail::concat(origin, ":", src.begin.line, ":", src.begin.column, ": invalid TOML: ",
                                    e.description()));
  }
}

}  // namespace

TrainConfig parse_config(const std::string& toml_text, const std::string& origin,
                         const std::vector<std::string>& overrides) {
  TrainConfig c;
  auto fields = schema(c);
  apply_table(parse_toml(toml_text, origin), "", fields, origin);
  for (const auto& o : overrides) {
    auto eq = o.find('=');
    KILN_CHECK(eq != std::string::npos && eq > 0, "--set '", o, "': expected key=value");
    std::string key = o.substr(0, eq), value = o.substr(eq + 1);
    // The value is TOML (numbers, booleans, quoted strings); a bare word is taken as a string.
    toml::table t;
    try {
      t = toml::parse("v = " + value);
    } catch (const toml::parse_error&) {
      t = toml::table{{"v", value}};
    }
    auto it = std::find_if(fields.begin(), fields.end(), [&](const Field& f) { return f.key == key; });
    if (it == fields.end())
      throw ValueError(detail::concat("--set: unknown config key '", key, "'\nhelp: known keys are ",
                                      known_keys(fields)));
    assign(*it, *t.get("v"), "--set");
  }
  validate(c, origin);
  return c;
}

TrainConfig load_config(const std::string& path, const std::vector<std::string>& overrides) {
  return parse_config(io::read_file(path), path, overrides);
}

std::string to_toml(const TrainConfig& config) {
  TrainConfig c = config;
  toml::table root;
  for (const auto& f : schema(c)) {
    auto dot = f.key.find('.');
    toml::table* target = &root;
    std::string leaf = f.key;
    if (dot != std::string::npos) {
      std::string section = f.key.substr(0, dot);
      leaf = f.key.substr(dot + 1);
      if (!root.contains(section)) root.insert(section, toml::table{});
      target = root.get(section)->as_table();
    }
    std::visit(
        [&](auto* p) {
          using T = std::remove_pointer_t<decltype(p)>;
          if constexpr (std::is_same_v<T, uint64_t>)
            target->insert(leaf, static_cast<int64_t>(*p));
          else
            target->insert(leaf, *p);
        },
        f.ref);
  }
  std::ostringstream os;
  os << root;
  return os.str();
}

}  // namespace kiln::cli
