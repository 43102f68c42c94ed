// CSV reader: record splitting (quotes, escapes, CRLF, blank lines), typing, label choice, errors.
#include <gtest/gtest.h>

#include "data/test_util.h"
#include "kiln/data/csv.h"

using namespace kiln;
using namespace kiln::data;

namespace {
std::vector<std::vector<std::string>> fields_of(const std::vector<CsvRecord>& rs) {
  std::vector<std::vector<std::string>> out;
  for (const auto& r : rs) out.push_back(r.fields);
  return out;
}

void expect_csv_error(const std::string& text, const std::string& what, CsvOptions o = {}) {
  try {
    parse_csv(text, o, "t.csv");
    FAIL() << "expected an IoError for:\n" << text;
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << "message: " << e.what() << "\nwanted: " << what;
  }
}
}  // namespace

TEST(Csv, SplitsQuotedRecords) {
  const std::string text =
      "a,b,c\n"
      "\"x, y\",\"he said \"\"hi\"\"\",3\r\n"
      "\n"
      "\"multi\nline\",,\"\"\n"
      "last,1,2";  // no final newline
  auto rs = split_csv_records(text, ',', "t.csv");
  EXPECT_EQ(fields_of(rs), (std::vector<std::vector<std::string>>{{"a", "b", "c"},
                                                                   {"x, y", "he said \"hi\"", "3"},
                                                                   {"multi\nline", "", ""},
                                                                   {"last", "1", "2"}}));
  EXPECT_EQ(rs[0].line, 1);
  EXPECT_EQ(rs[1].line, 2);
  EXPECT_EQ(rs[2].line, 4);  // line 3 is blank
  EXPECT_EQ(rs[3].line, 6);  // the quoted newline moved it down
  EXPECT_EQ(fields_of(split_csv_records("1;2\n", ';', "s")), (std::vector<std::vector<std::string>>{{"1", "2"}}));
  EXPECT_EQ(fields_of(split_csv_records(",\n", ',', "s")), (std::vector<std::vector<std::string>>{{"", ""}}));
}

TEST(Csv, ParsesFeaturesAndLabels) {
  CsvData d = parse_csv("x1,x2,label\n1.5,-2,0\n 3e2 ,+4,1\n0.25,\"7\",2\n");
  EXPECT_EQ(d.feature_names, (std::vector<std::string>{"x1", "x2"}));
  EXPECT_EQ(d.label_name, "label");
  EXPECT_EQ(d.features.shape(), (Shape{3, 2}));
  EXPECT_EQ(d.features.to_vector<float>(), (std::vector<float>{1.5f, -2, 300, 4, 0.25f, 7}));
  EXPECT_EQ(d.labels.dtype(), DType::i64);
  EXPECT_EQ(d.labels.to_vector<int64_t>(), (std::vector<int64_t>{0, 1, 2}));
  EXPECT_TRUE(d.classes.empty());
  auto ds = d.dataset();
  EXPECT_EQ(ds->size(), 3);
  EXPECT_EQ(ds->get(1).target.item(), 1);
}

TEST(Csv, HeaderDetectionAndLabelChoice) {
  // No header: all numeric; label defaults to the last column; names are c0, c1, ...
  CsvData d = parse_csv("1,2,3\n4,5,6\n");
  EXPECT_EQ(d.features.shape(), (Shape{2, 2}));
  EXPECT_EQ(d.labels.to_vector<int64_t>(), (std::vector<int64_t>{3, 6}));
  EXPECT_EQ(d.feature_names, (std::vector<std::string>{"c0", "c1"}));
  // Label by index (first column) and by name.
  CsvOptions first;
  first.label_index = 0;
  EXPECT_EQ(parse_csv("1,2,3\n4,5,6\n", first).labels.to_vector<int64_t>(), (std::vector<int64_t>{1, 4}));
  CsvOptions by_name;
  by_name.label_column = "y";
  CsvData n = parse_csv("y,a\n2.0,0.5\n1,1.5\n", by_name);
  EXPECT_EQ(n.labels.to_vector<int64_t>(), (std::vector<int64_t>{2, 1}));  // "2.0" is an integer label
  EXPECT_EQ(n.features.to_vector<float>(), (std::vector<float>{0.5f, 1.5f}));
  // Forced header on numeric first row.
  CsvOptions hdr;
  hdr.header = CsvHeader::present;
  EXPECT_EQ(parse_csv("1,2\n3,4\n", hdr).features.shape(), (Shape{1, 1}));
}

TEST(Csv, CategoryLabels) {
  CsvData d = parse_csv("len,species\n1.4,setosa\n4.7,versicolor\n1.3,setosa\n6.0,virginica\n");
  EXPECT_EQ(d.classes, (std::vector<std::string>{"setosa", "versicolor", "virginica"}));
  EXPECT_EQ(d.labels.to_vector<int64_t>(), (std::vector<int64_t>{0, 1, 0, 2}));
  CsvOptions ints;
  ints.labels = CsvLabels::integer;
  expect_csv_error("len,species\n1.4,setosa\n", "t.csv:2: label column 'species': 'setosa' is not an integer", ints);
}

TEST(Csv, ErrorsNameTheLine) {
  expect_csv_error("", "t.csv: no data");
  expect_csv_error("a,b\n1,2\n3\n", "t.csv:3: expected 2 fields (as on line 1), got 1");
  expect_csv_error("a,b,y\n1,2,0\n1,oops,1\n", "t.csv:3: column 'b' (field 2): 'oops' is not a number");
  expect_csv_error("a,b\n1,\"2\n", "t.csv:2: unterminated quoted field");
  expect_csv_error("a,b\n1,\"2\"x\n", "t.csv:2: unexpected character 'x' after a closing quote");
  expect_csv_error("a,b\n1,2\"3\n", "t.csv:2: a quote inside an unquoted field");
  expect_csv_error("a,b\n1,\n", "t.csv:2: label column 'b': '' is not an integer", [] {
    CsvOptions o;
    o.labels = CsvLabels::integer;
    return o;
  }());
  CsvOptions missing;
  missing.label_column = "nope";
  expect_csv_error("a,b\n1,2\n", "no column named 'nope'", missing);
  CsvOptions bad_index;
  bad_index.label_index = 5;
  expect_csv_error("1,2\n", "label_index 5 is out of range", bad_index);
}

TEST(Csv, ReadsFiles) {
  test::ScratchDir dir;
  test::write_bytes(dir.file("d.csv"), "f,label\r\n0.5,1\r\n1.5,0\r\n");
  CsvData d = read_csv(dir.file("d.csv"));
  EXPECT_EQ(d.features.to_vector<float>(), (std::vector<float>{0.5f, 1.5f}));
  EXPECT_EQ(d.labels.to_vector<int64_t>(), (std::vector<int64_t>{1, 0}));
  EXPECT_THROW(read_csv(dir.file("missing.csv")), IoError);
  EXPECT_THROW(read_csv(dir.path().string()), IoError);  // a directory
}
