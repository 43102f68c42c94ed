// CSV: a small state machine splits records (RFC 4180), then columns are typed and copied into
// the feature and label tensors.
#include "kiln/data/csv.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <map>

#include "kiln/data/file_read.h"

namespace kiln::data {

namespace {

template <typename... Args>
[[noreturn]] void fail(const std::string& source, int64_t line, Args&&... args) {
  throw IoError(detail::concat(source, ":", line, ": ", std::forward<Args>(args)...));
}

std::string_view trim(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && (s[b] == ' ' || s[b] == '\t')) ++b;
  while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\t')) --e;
  return s.substr(b, e - b);
}

bool parse_float(std::string_view s, float* out) {
  s = trim(s);
  if (!s.empty() && s[0] == '+') s.remove_prefix(1);
  if (s.empty()) return false;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && ptr == s.data() + s.size();
}

bool parse_int(std::string_view s, int64_t* out) {
  s = trim(s);
  if (!s.empty() && s[0] == '+') s.remove_prefix(1);
  if (s.empty()) return false;
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  if (ec == std::errc() && ptr == s.data() + s.size()) return true;
  // "3.0" is an integer label too (files written by float-only tools).
  double d;
  auto [ptr2, ec2] = std::from_chars(s.data(), s.data() + s.size(), d);
  if (ec2 != std::errc() || ptr2 != s.data() + s.size() || d != std::floor(d) || std::fabs(d) > 9.0e15) return false;
  *out = static_cast<int64_t>(d);
  return true;
}

}  // namespace

std::vector<CsvRecord> split_csv_records(std::string_view text, char delimiter, const std::string& source) {
  KILN_CHECK(delimiter != '"' && delimiter != '\n' && delimiter != '\r', "CSV: delimiter cannot be a quote or newline");
  std::vector<CsvRecord> records;
  CsvRecord rec;
  std::string field;
  bool field_started = false;  // the current field has a character or an opening quote
  bool record_started = false; // the current record has a field or a character
  int64_t line = 1;
  const size_t n = text.size();
  auto end_field = [&]() {
    rec.fields.push_back(std::move(field));
    field.clear();
    field_started = false;
  };
  auto end_record = [&]() {
    end_field();
    records.push_back(std::move(rec));
    rec = CsvRecord{};
    record_started = false;
  };
  for (size_t i = 0; i < n;) {
    if (!record_started && !field_started) rec.line = line;
    const char c = text[i];
    if (c == '"') {
      if (field_started) fail(source, line, "a quote inside an unquoted field (quote the whole field)");
      const int64_t open_line = line;
      field_started = record_started = true;
      bool closed = false;
      for (++i; i < n;) {
        const char q = text[i++];
        if (q != '"') {
          if (q == '\n') ++line;
          field.push_back(q);
        } else if (i < n && text[i] == '"') {  // "" is an escaped quote
          field.push_back('"');
          ++i;
        } else {
          closed = true;
          break;
        }
      }
      if (!closed) fail(source, open_line, "unterminated quoted field (the quote opened here is never closed)");
      const bool at_end = i == n || text[i] == delimiter || text[i] == '\n' ||
                          (text[i] == '\r' && (i + 1 == n || text[i + 1] == '\n'));
      if (!at_end) fail(source, line, "unexpected character '", text[i], "' after a closing quote");
    } else if (c == delimiter) {
      end_field();
      record_started = true;
      ++i;
    } else if (c == '\r' && (i + 1 == n || text[i + 1] == '\n')) {
      ++i;  // CRLF: the LF ends the record
    } else if (c == '\n') {
      // A line holding nothing at all is skipped, not read as a record with one empty field.
      if (record_started || field_started) end_record();
      ++line;
      ++i;
    } else {
      field.push_back(c);
      field_started = record_started = true;
      ++i;
    }
  }
  if (record_started || field_started) end_record();
  return records;
}

CsvData parse_csv(std::string_view text, const CsvOptions& options, const std::string& source) {
  std::vector<CsvRecord> records = split_csv_records(text, options.delimiter, source);
  if (records.empty()) throw IoError(detail::concat(source, ": no data (the file is empty)"));
  const size_t ncols = records[0].fields.size();
  for (const CsvRecord& r : records)
    if (r.fields.size() != ncols)
      fail(source, r.line, "expected ", ncols, " fields (as on line ", records[0].line, "), got ", r.fields.size());

  bool has_header = options.header == CsvHeader::present;
  if (options.header == CsvHeader::auto_detect) {
    float unused;
    for (const std::string& f : records[0].fields) has_header |= !parse_float(f, &unused);
  }
  std::vector<std::string> names;
  for (size_t c = 0; c < ncols; ++c) names.push_back(has_header ? records[0].fields[c] : detail::concat("c", c));
  const size_t first = has_header ? 1 : 0;
  const int64_t nrows = static_cast<int64_t>(records.size() - first);
  if (ncols < 1) throw IoError(detail::concat(source, ": no columns"));

  // Which column is the label.
  size_t label_col;
  if (!options.label_column.empty()) {
    if (!has_header)
      throw IoError(detail::concat(source, ": label column '", options.label_column,
                                   "' is chosen by name but the file has no header row"));
    auto it = std::find(names.begin(), names.end(), options.label_column);
    if (it == names.end()) throw IoError(detail::concat(source, ": no column named '", options.label_column, "'"));
    label_col = static_cast<size_t>(it - names.begin());
  } else {
    int64_t k = options.label_index < 0 ? options.label_index + static_cast<int64_t>(ncols) : options.label_index;
    if (k < 0 || k >= static_cast<int64_t>(ncols))
      throw IoError(detail::concat(source, ": label_index ", options.label_index, " is out of range for ", ncols,
                                   " columns"));
    label_col = static_cast<size_t>(k);
  }

  CsvData out;
  out.label_name = names[label_col];
  for (size_t c = 0; c < ncols; ++c)
    if (c != label_col) out.feature_names.push_back(names[c]);
  const int64_t nfeat = static_cast<int64_t>(ncols) - 1;
  out.features = Tensor::empty({nrows, nfeat}, DType::f32);
  out.labels = Tensor::empty({nrows}, DType::i64);
  float* fp = out.features.data<float>();
  int64_t* lp = out.labels.data<int64_t>();

  for (int64_t r = 0; r < nrows; ++r) {
    const CsvRecord& rec = records[first + static_cast<size_t>(r)];
    int64_t f = 0;
    for (size_t c = 0; c < ncols; ++c) {
      if (c == label_col) continue;
      if (!parse_float(rec.fields[c], &fp[r * nfeat + f]))
        fail(source, rec.line, "column '", names[c], "' (field ", c + 1, "): '", rec.fields[c], "' is not a number");
      ++f;
    }
  }

  bool categorical = options.labels == CsvLabels::category;
  if (options.labels == CsvLabels::auto_detect) {
    int64_t unused;
    for (int64_t r = 0; r < nrows && !categorical; ++r)
      categorical = !parse_int(records[first + static_cast<size_t>(r)].fields[label_col], &unused);
  }
  if (categorical) {
    std::map<std::string, int64_t> ids;
    for (int64_t r = 0; r < nrows; ++r)
      ids.emplace(std::string(trim(records[first + static_cast<size_t>(r)].fields[label_col])), 0);
    int64_t k = 0;
    for (auto& [name, id] : ids) {
      id = k++;
      out.classes.push_back(name);
    }
    for (int64_t r = 0; r < nrows; ++r)
      lp[r] = ids.at(std::string(trim(records[first + static_cast<size_t>(r)].fields[label_col])));
  } else {
    for (int64_t r = 0; r < nrows; ++r) {
      const CsvRecord& rec = records[first + static_cast<size_t>(r)];
      if (!parse_int(rec.fields[label_col], &lp[r]))
        fail(source, rec.line, "label column '", names[label_col], "': '", rec.fields[label_col],
             "' is not an integer");
    }
  }
  return out;
}

CsvData read_csv(const std::string& path, const CsvOptions& options) {
  return parse_csv(read_text_file(path), options, path);
}

}  // namespace kiln::data
