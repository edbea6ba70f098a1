// What stablefs-dump prints, built once and rendered either as text or as
// JSON, so the two forms cannot say different things.
//
// A Record is an ordered list of named fields. A field holds a number, a
// string, a nested record, or a list of records (rows: directory entries,
// extents). Checksums are strings of 16 hex digits: JSON numbers lose
// precision past 2^53.
#pragma once

#include <cstdint>
#include <cstdio>
#include <deque>
#include <string>
#include <variant>
#include <vector>

namespace stablefs {

class JsonWriter;

class Record {
 public:
  Record& add(std::string key, uint64_t v);
  Record& add(std::string key, int64_t v);
  Record& add(std::string key, std::string v);
  Record& add(std::string key, const char* v) { return add(std::move(key), std::string(v)); }
  Record& add_bool(std::string key, bool v);
  // A nested record, filled in through the returned reference.
  Record& add_record(std::string key);
  // A list of rows; add rows through the returned vector.
  std::vector<Record>& add_list(std::string key);
  // (The references stay valid while this record lives: fields_ is a deque,
  // which never moves its elements when it grows.)

  // Text: "key: value" lines, nested records indented, each list row on
  // one line ("  key=value key=value").
  void print_text(FILE* out, int indent = 0) const;
  // One JSON object.
  void print_json(FILE* out) const;

 private:
  struct Boolean {
    bool v;
  };
  struct Field {
    std::string key;
    std::variant<uint64_t, int64_t, std::string, Boolean, std::vector<Record>> value;
    bool nested = false;  // a one-element list that is a nested record
  };
  void print_row(FILE* out, int indent) const;
  void print_json_into(JsonWriter& j) const;
  std::deque<Field> fields_;
};

// "%016llx": how checksums are shown.
std::string hex64(uint64_t v);

}  // namespace stablefs
