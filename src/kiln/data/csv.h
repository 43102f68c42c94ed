// CSV reader for tabular data: RFC 4180 records (quoted fields, "" escapes, newlines inside
// quotes, CRLF), an optional header row, numeric feature columns -> f32 (N, F), one column chosen
// as the i64 label (N). Errors name the file and the line.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "kiln/data/tensor_dataset.h"

namespace kiln::data {

enum class CsvHeader { auto_detect, present, absent };  // auto: a header if any field of row 1 is not a number
enum class CsvLabels { auto_detect, integer, category };  // auto: integers if every label is one

struct CsvOptions {
  char delimiter = ',';
  CsvHeader header = CsvHeader::auto_detect;
  std::string label_column;   // by header name; when empty, label_index is used
  int64_t label_index = -1;   // negative counts from the end (-1 = last column)
  CsvLabels labels = CsvLabels::auto_detect;
};

struct CsvRecord {
  int64_t line = 0;  // 1-based line on which the record starts
  std::vector<std::string> fields;
};

struct CsvData {
  Tensor features;                         // (N, F) f32
  Tensor labels;                           // (N) i64
  std::vector<std::string> feature_names;  // from the header, or "c0", "c1", ... by column number
  std::string label_name;
  std::vector<std::string> classes;        // category labels: class k is classes[k] (sorted)
  std::shared_ptr<TensorDataset> dataset() const {
    return std::make_shared<TensorDataset>(features, labels);
  }
};

// Splits text into records; blank lines are skipped. `source` names the text in errors.
std::vector<CsvRecord> split_csv_records(std::string_view text, char delimiter, const std::string& source);

CsvData parse_csv(std::string_view text, const CsvOptions& options = {}, const std::string& source = "<csv>");
CsvData read_csv(const std::string& path, const CsvOptions& options = {});

}  // namespace kiln::data
