// A minimal streaming JSON writer for the tools' reports (wac,
// stablefs-stat, stablefs-dump): objects, arrays, strings (escaped),
// integers, doubles and booleans, with commas placed automatically. Enough
// for one report; not a general library.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

namespace stablefs {

// `s` as a JSON string literal: quotes, backslashes and control characters
// escaped (bytes >= 0x80 pass through: the tools' strings are UTF-8 paths
// and labels).
inline std::string json_quoted(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += char(c);
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += char(c);
    }
  }
  return out + '"';
}

class JsonWriter {
 public:
  explicit JsonWriter(FILE* out) : out_(out) {}

  JsonWriter& key(std::string_view k) {
    comma();
    string(k);
    std::fputc(':', out_);
    after_key_ = true;
    return *this;
  }
  JsonWriter& begin_object() { return open('{'); }
  JsonWriter& end_object() { return close('}'); }
  JsonWriter& begin_array() { return open('['); }
  JsonWriter& end_array() { return close(']'); }
  JsonWriter& value(std::string_view s) {
    comma();
    string(s);
    return *this;
  }
  JsonWriter& value(const char* s) { return value(std::string_view(s)); }
  JsonWriter& value(const std::string& s) { return value(std::string_view(s)); }
  JsonWriter& value(uint64_t v) {
    comma();
    std::fprintf(out_, "%llu", (unsigned long long)v);
    return *this;
  }
  JsonWriter& value(unsigned v) { return value(uint64_t(v)); }
  JsonWriter& value(int64_t v) {
    comma();
    std::fprintf(out_, "%lld", (long long)v);
    return *this;
  }
  JsonWriter& value(int v) {
    comma();
    std::fprintf(out_, "%d", v);
    return *this;
  }
  JsonWriter& value(double v) {
    comma();
    std::fprintf(out_, "%.6g", v);
    return *this;
  }
  JsonWriter& value(bool v) {
    comma();
    std::fputs(v ? "true" : "false", out_);
    return *this;
  }
  JsonWriter& null() {
    comma();
    std::fputs("null", out_);
    return *this;
  }
  template <class T>
  JsonWriter& field(std::string_view k, const T& v) {
    key(k);
    return value(v);
  }
  void newline() { std::fputc('\n', out_); }

 private:
  JsonWriter& open(char c) {
    comma();
    std::fputc(c, out_);
    first_.push_back(true);
    return *this;
  }
  JsonWriter& close(char c) {
    std::fputc(c, out_);
    first_.pop_back();
    return *this;
  }
  // A separator before every element but the first of its container, and
  // none between a key and its value.
  void comma() {
    if (after_key_) {
      after_key_ = false;
      return;
    }
    if (!first_.empty()) {
      if (!first_.back()) std::fputc(',', out_);
      first_.back() = false;
    }
  }
  void string(std::string_view s) { std::fputs(json_quoted(s).c_str(), out_); }

  FILE* out_;
  std::vector<bool> first_;
  bool after_key_ = false;
};

}  // namespace stablefs
